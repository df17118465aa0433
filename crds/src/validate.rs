//! Pure validation of Tenant and Customer specs. The CRD schema is only a first line (old API servers ignore
//! CEL rules); the operator runs these checks on every reconcile and refuses a spec that fails any of them.
//!
//! Every rejection names the field and says why, so `kubectl describe` tells the user what to fix.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;

use crate::image_ref;
use crate::quantity;
use crate::v1alpha1::{
    AcceptedIdentity, CpuMemory, CustomerSpec, DatabaseSpec, NetworkSpec, QuotaSpec, StackSpec, TenantSpec,
};

/// Longest accepted `orgId`.
pub const MAX_ORG_ID_LEN: usize = 128;
/// Longest accepted `displayName`, in characters.
pub const MAX_DISPLAY_NAME_LEN: usize = 256;
/// Longest accepted resource name: one DNS label, so it fits a namespace name and, mapped, a Postgres name.
pub const MAX_NAME_LEN: usize = 63;
/// Most replicas a stack may ask for.
pub const MAX_REPLICAS: i32 = 100;
/// Most pods a quota may allow.
pub const MAX_PODS: i32 = 1000;
/// Highest connection limit a login role may get.
pub const MAX_CONNECTION_LIMIT: i32 = 1000;
/// Environment variables that Bulkhead injects into the stack and that a spec may therefore not set.
pub const RESERVED_ENV: [&str; 6] = [
    "DATABASE_URL",
    "PGHOST",
    "PGPORT",
    "PGDATABASE",
    "PGUSER",
    "PGPASSWORD",
];
/// Prefix of environment variables reserved for Bulkhead.
pub const RESERVED_ENV_PREFIX: &str = "BULKHEAD_";

/// One refused field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field's path, e.g. `spec.stack.port`.
    pub field: String,
    /// Why it was refused.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem found in one spec. Its display lists them all, `; `-separated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, err) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{err}")?;
        }
        Ok(())
    }
}

impl ValidationErrors {
    /// A fixed category for metrics labels and events.
    pub fn category(&self) -> &'static str {
        "invalid_spec"
    }

    /// The paths of the refused fields.
    pub fn fields(&self) -> Vec<&str> {
        self.0.iter().map(|e| e.field.as_str()).collect()
    }
}

#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    fn finish(self) -> Result<(), ValidationErrors> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(self.0))
        }
    }
}

/// Validates a Tenant named `name`. `accepted` is the identity recorded in its status, if any.
pub fn tenant(
    name: &str,
    spec: &TenantSpec,
    accepted: Option<&AcceptedIdentity>,
) -> Result<(), ValidationErrors> {
    let mut errs = Errors::default();
    resource_name(&mut errs, "metadata.name", name);
    org_id(&mut errs, &spec.org_id);
    display_name(&mut errs, spec.display_name.as_deref());
    stack(&mut errs, "spec.stack", &spec.stack);
    database(&mut errs, &spec.database);
    quota(&mut errs, &spec.quota);
    network(&mut errs, &spec.network);
    if let Some(accepted) = accepted {
        immutable(&mut errs, "spec.orgId", &accepted.org_id, &spec.org_id);
        if let Some(isolation) = accepted.database_isolation {
            immutable(
                &mut errs,
                "spec.database.isolation",
                &isolation,
                &spec.database.isolation,
            );
        }
    }
    errs.finish()
}

/// Validates a Customer named `name`. `accepted` is the identity recorded in its status, if any.
pub fn customer(
    name: &str,
    spec: &CustomerSpec,
    accepted: Option<&AcceptedIdentity>,
) -> Result<(), ValidationErrors> {
    let mut errs = Errors::default();
    resource_name(&mut errs, "metadata.name", name);
    resource_name(&mut errs, "spec.tenantRef", &spec.tenant_ref);
    org_id(&mut errs, &spec.org_id);
    display_name(&mut errs, spec.display_name.as_deref());
    if let Some(s) = &spec.stack {
        stack(&mut errs, "spec.stack", s);
    }
    database(&mut errs, &spec.database);
    quota(&mut errs, &spec.quota);
    if let Some(accepted) = accepted {
        immutable(&mut errs, "spec.orgId", &accepted.org_id, &spec.org_id);
        if let Some(tenant_ref) = &accepted.tenant_ref {
            immutable(&mut errs, "spec.tenantRef", tenant_ref, &spec.tenant_ref);
        }
        if let Some(isolation) = accepted.database_isolation {
            immutable(
                &mut errs,
                "spec.database.isolation",
                &isolation,
                &spec.database.isolation,
            );
        }
    }
    errs.finish()
}

/// The identity a valid Tenant spec establishes, to be recorded in its status.
pub fn tenant_identity(spec: &TenantSpec) -> AcceptedIdentity {
    AcceptedIdentity {
        org_id: spec.org_id.clone(),
        tenant_ref: None,
        database_isolation: spec.database.enabled.then_some(spec.database.isolation),
    }
}

/// The identity a valid Customer spec establishes, to be recorded in its status.
pub fn customer_identity(spec: &CustomerSpec) -> AcceptedIdentity {
    AcceptedIdentity {
        org_id: spec.org_id.clone(),
        tenant_ref: Some(spec.tenant_ref.clone()),
        database_isolation: spec.database.enabled.then_some(spec.database.isolation),
    }
}

/// Quotes a user-supplied value for an error message, cut short so a hostile value cannot flood a status.
fn shown(value: &str) -> String {
    const MAX: usize = 64;
    let mut out: String = value.chars().take(MAX).flat_map(char::escape_debug).collect();
    if value.chars().count() > MAX {
        out.push('…');
    }
    format!("\"{out}\"")
}

fn immutable<T: PartialEq + fmt::Debug>(errs: &mut Errors, field: &str, accepted: &T, now: &T) {
    if accepted != now {
        errs.add(field, format!("is immutable once set: it was {accepted:?} and cannot become {now:?}; delete and recreate the resource to change it"));
    }
}

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    let ok_char = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-';
    !b.is_empty()
        && b.len() <= MAX_NAME_LEN
        && b.iter().all(ok_char)
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

fn resource_name(errs: &mut Errors, field: &str, name: &str) {
    if !is_dns_label(name) {
        errs.add(
            field,
            format!(
                "{} must be a DNS label: 1 to {MAX_NAME_LEN} lowercase letters, digits and `-`, starting and ending with a letter or digit (it names a namespace and Postgres objects)",
                shown(name)
            ),
        );
    }
}

fn org_id(errs: &mut Errors, org: &str) {
    let b = org.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= MAX_ORG_ID_LEN
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b':'));
    if !ok {
        errs.add(
            "spec.orgId",
            format!(
                "{} must be 1 to {MAX_ORG_ID_LEN} characters of letters, digits, `_`, `-`, `.`, `:`, starting with a letter or digit",
                shown(org)
            ),
        );
    }
}

fn display_name(errs: &mut Errors, name: Option<&str>) {
    let Some(name) = name else { return };
    if name.chars().count() > MAX_DISPLAY_NAME_LEN {
        errs.add(
            "spec.displayName",
            format!("must be at most {MAX_DISPLAY_NAME_LEN} characters"),
        );
    }
    if name.chars().any(char::is_control) {
        errs.add("spec.displayName", "must not contain control characters");
    }
}

fn stack(errs: &mut Errors, path: &str, stack: &StackSpec) {
    if let Err(e) = image_ref::check(&stack.image) {
        errs.add(
            format!("{path}.image"),
            format!("{} is not a valid image reference: {e}", shown(&stack.image)),
        );
    }
    if !(1024..=65535).contains(&stack.port) {
        errs.add(
            format!("{path}.port"),
            format!(
                "{} is out of range: must be 1024 to 65535 (the stack runs as non-root without capabilities, so it cannot bind a privileged port)",
                stack.port
            ),
        );
    }
    if !(0..=MAX_REPLICAS).contains(&stack.replicas) {
        errs.add(
            format!("{path}.replicas"),
            format!("{} is out of range: must be 0 to {MAX_REPLICAS}", stack.replicas),
        );
    }
    let mut seen = HashSet::new();
    for (i, var) in stack.env.iter().enumerate() {
        let field = format!("{path}.env[{i}].name");
        let b = var.name.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 256
            && (b[0].is_ascii_alphabetic() || b[0] == b'_')
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_');
        if !ok {
            errs.add(
                &field,
                format!(
                    "{} must be letters, digits and `_`, not starting with a digit",
                    shown(&var.name)
                ),
            );
        } else if RESERVED_ENV.contains(&var.name.as_str()) || var.name.starts_with(RESERVED_ENV_PREFIX) {
            errs.add(
                &field,
                format!(
                    "{} is reserved: Bulkhead injects the database variables ({}) and owns the {RESERVED_ENV_PREFIX} prefix",
                    shown(&var.name),
                    RESERVED_ENV.join(", ")
                ),
            );
        } else if !seen.insert(var.name.as_str()) {
            errs.add(&field, format!("{} is set more than once", shown(&var.name)));
        }
        if var.value.as_ref().is_some_and(|v| v.len() > 32 * 1024) {
            errs.add(format!("{path}.env[{i}].value"), "must be at most 32 KiB");
        }
    }
    let requests = cpu_memory(
        errs,
        &format!("{path}.resources.requests"),
        &stack.resources.requests,
    );
    let limits = cpu_memory(errs, &format!("{path}.resources.limits"), &stack.resources.limits);
    for (what, request, limit) in [("cpu", requests.0, limits.0), ("memory", requests.1, limits.1)] {
        if let (Some(request), Some(limit)) = (request, limit)
            && request > limit
        {
            errs.add(
                format!("{path}.resources.requests.{what}"),
                format!("must not exceed {path}.resources.limits.{what}"),
            );
        }
    }
}

/// Checks both quantities and returns their values (in milli-units) where they parsed.
fn cpu_memory(errs: &mut Errors, path: &str, pair: &CpuMemory) -> (Option<i128>, Option<i128>) {
    let cpu = pair
        .cpu
        .as_ref()
        .and_then(|q| non_negative(errs, &format!("{path}.cpu"), q.as_str()));
    let memory = pair
        .memory
        .as_ref()
        .and_then(|q| non_negative(errs, &format!("{path}.memory"), q.as_str()));
    (cpu, memory)
}

fn non_negative(errs: &mut Errors, field: &str, text: &str) -> Option<i128> {
    match quantity::parse_milli(text) {
        Ok(v) if v < 0 => {
            errs.add(field, format!("{} must not be negative", shown(text)));
            None
        }
        Ok(v) => Some(v),
        Err(e) => {
            errs.add(field, e.to_string());
            None
        }
    }
}

fn database(errs: &mut Errors, db: &DatabaseSpec) {
    if let Some(limit) = db.connection_limit
        && !(1..=MAX_CONNECTION_LIMIT).contains(&limit)
    {
        errs.add(
            "spec.database.connectionLimit",
            format!("{limit} is out of range: must be 1 to {MAX_CONNECTION_LIMIT}"),
        );
    }
}

fn quota(errs: &mut Errors, quota: &QuotaSpec) {
    for (field, value) in [
        ("spec.quota.cpu", &quota.cpu),
        ("spec.quota.memory", &quota.memory),
    ] {
        if let Some(q) = value
            && let Some(0) = non_negative(errs, field, q.as_str())
        {
            errs.add(field, "must be greater than zero");
        }
    }
    if let Some(pods) = quota.pods
        && !(1..=MAX_PODS).contains(&pods)
    {
        errs.add(
            "spec.quota.pods",
            format!("{pods} is out of range: must be 1 to {MAX_PODS}"),
        );
    }
}

/// Checks the CIDRs and ports of a network spec on their own (used for operator flags that take a CIDR).
pub fn network_cidr(network: &NetworkSpec) -> Result<(), ValidationErrors> {
    let mut errs = Errors::default();
    self::network(&mut errs, network);
    errs.finish()
}

fn network(errs: &mut Errors, network: &NetworkSpec) {
    for (i, rule) in network.allow_egress.iter().enumerate() {
        let field = format!("spec.network.allowEgress[{i}].cidr");
        if let Err(message) = check_cidr(&rule.cidr) {
            errs.add(field, message);
        }
        for (j, port) in rule.ports.iter().enumerate() {
            if !(1..=65535).contains(&port.port) {
                errs.add(
                    format!("spec.network.allowEgress[{i}].ports[{j}].port"),
                    format!("{} is out of range: must be 1 to 65535", port.port),
                );
            }
        }
    }
}

fn check_cidr(cidr: &str) -> Result<(), String> {
    let bad = || {
        format!(
            "{} is not a CIDR such as 203.0.113.0/24 or 2001:db8::/32",
            shown(cidr)
        )
    };
    let (addr, prefix) = cidr.split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let prefix: u32 = prefix.parse().map_err(|_| bad())?;
    let (bits, value): (u32, u128) = match addr {
        IpAddr::V4(a) => (32, u128::from(u32::from(a))),
        IpAddr::V6(a) => (128, u128::from(a)),
    };
    if prefix > bits {
        return Err(bad());
    }
    if prefix == 0 {
        return Err(format!(
            "{} would allow egress to every address, including other tenants' pods; list the specific networks the stack needs",
            shown(cidr)
        ));
    }
    let host_mask: u128 = if prefix == bits {
        0
    } else {
        (1u128 << (bits - prefix)) - 1
    };
    if value & host_mask != 0 {
        let network = value & !host_mask;
        let network = match addr {
            IpAddr::V4(_) => IpAddr::from(std::net::Ipv4Addr::from(network as u32)),
            IpAddr::V6(_) => IpAddr::from(std::net::Ipv6Addr::from(network)),
        };
        return Err(format!(
            "{} has host bits set; did you mean {network}/{prefix}?",
            shown(cidr)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
