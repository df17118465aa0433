//! Pure validation of Tenant and Customer specs. The API server enforces the same rules at admission (the CEL
//! rules of [`crate::rules`] in the CRD schema); the operator runs these checks again on every reconcile, for API
//! servers that ignore CEL and objects stored before a rule existed, and refuses a spec that fails any of them.
//!
//! Every rejection names the field and says why, in the words of [`crate::rules::text`] with the offending value
//! in front, so `kubectl describe` tells the user what to fix.

use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;

use crate::image_ref;
use crate::quantity;
use crate::rules::{self, text};
use crate::v1alpha1::{
    AcceptedIdentity, CpuMemory, CustomerSpec, DatabaseSpec, NetworkSpec, QuotaSpec, StackSpec, TenantSpec,
};

pub use crate::rules::{
    MAX_CONNECTION_LIMIT, MAX_DISPLAY_NAME_LEN, MAX_NAME_LEN, MAX_ORG_ID_LEN, MAX_PODS, MAX_REPLICAS,
    RESERVED_ENV, RESERVED_ENV_PREFIX,
};

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
        database_identity(&mut errs, accepted, &spec.database);
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
        database_identity(&mut errs, accepted, &spec.database);
    }
    errs.finish()
}

/// The identity a valid Tenant spec establishes, to be recorded in its status.
pub fn tenant_identity(spec: &TenantSpec) -> AcceptedIdentity {
    AcceptedIdentity {
        org_id: spec.org_id.clone(),
        tenant_ref: None,
        database_isolation: spec.database.enabled.then_some(spec.database.isolation),
        database_server: spec
            .database
            .enabled
            .then(|| spec.database.server.clone())
            .flatten(),
    }
}

/// The identity a valid Customer spec establishes, to be recorded in its status.
pub fn customer_identity(spec: &CustomerSpec) -> AcceptedIdentity {
    AcceptedIdentity {
        org_id: spec.org_id.clone(),
        tenant_ref: Some(spec.tenant_ref.clone()),
        database_isolation: spec.database.enabled.then_some(spec.database.isolation),
        database_server: spec
            .database
            .enabled
            .then(|| spec.database.server.clone())
            .flatten(),
    }
}

/// Once the database has been enabled, its isolation and server (absent: the default) keep their values.
fn database_identity(errs: &mut Errors, accepted: &AcceptedIdentity, db: &DatabaseSpec) {
    if let Some(isolation) = accepted.database_isolation {
        immutable(errs, "spec.database.isolation", &isolation, &db.isolation);
        immutable(
            errs,
            "spec.database.server",
            &accepted.database_server,
            &db.server,
        );
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
        errs.add(
            field,
            format!("{} (it was {accepted:?}, now {now:?})", text::IMMUTABLE),
        );
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
        errs.add(field, format!("{} {}", shown(name), text::DNS_LABEL));
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
        errs.add("spec.orgId", format!("{} {}", shown(org), text::ORG_ID));
    }
}

fn display_name(errs: &mut Errors, name: Option<&str>) {
    let Some(name) = name else { return };
    if name.chars().count() > MAX_DISPLAY_NAME_LEN {
        errs.add("spec.displayName", text::DISPLAY_NAME_TOO_LONG);
    }
    if name.chars().any(char::is_control) {
        errs.add("spec.displayName", text::CONTROL_CHARACTERS);
    }
}

fn stack(errs: &mut Errors, path: &str, stack: &StackSpec) {
    if let Err(e) = image_ref::check(&stack.image) {
        errs.add(
            format!("{path}.image"),
            format!("{} {}: {e}", shown(&stack.image), text::IMAGE),
        );
    }
    if !(rules::MIN_STACK_PORT..=65535).contains(&stack.port) {
        errs.add(
            format!("{path}.port"),
            format!("{} {}", stack.port, text::STACK_PORT),
        );
    }
    if !(0..=MAX_REPLICAS).contains(&stack.replicas) {
        errs.add(
            format!("{path}.replicas"),
            format!("{} {}", stack.replicas, text::REPLICAS),
        );
    }
    if stack.env.len() > rules::MAX_ENV {
        errs.add(format!("{path}.env"), text::ENV_COUNT);
    }
    let mut seen = HashSet::new();
    for (i, var) in stack.env.iter().enumerate() {
        let field = format!("{path}.env[{i}].name");
        let b = var.name.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= rules::MAX_ENV_NAME_LEN
            && (b[0].is_ascii_alphabetic() || b[0] == b'_')
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_');
        if !ok {
            errs.add(&field, format!("{} {}", shown(&var.name), text::ENV_NAME));
        } else if RESERVED_ENV.contains(&var.name.as_str()) || var.name.starts_with(RESERVED_ENV_PREFIX) {
            errs.add(&field, format!("{} {}", shown(&var.name), text::ENV_RESERVED));
        }
        // The schema keys the list by name, so a repeated name is an error of the entry, as the API server says.
        if !seen.insert(var.name.as_str()) {
            errs.add(
                format!("{path}.env[{i}]"),
                format!("name {} {}", shown(&var.name), text::ENV_DUPLICATE),
            );
        }
        if var
            .value
            .as_ref()
            .is_some_and(|v| v.chars().count() > rules::MAX_ENV_VALUE_LEN)
        {
            errs.add(format!("{path}.env[{i}].value"), text::ENV_VALUE);
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
                format!("{}{path}.resources.limits.{what}", text::REQUEST_ABOVE_LIMIT),
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

fn non_negative(errs: &mut Errors, field: &str, value: &str) -> Option<i128> {
    match quantity::parse_milli(value) {
        Ok(v) if v < 0 => {
            errs.add(field, format!("{} {}", shown(value), text::NEGATIVE));
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
    if let Some(server) = &db.server {
        resource_name(errs, "spec.database.server", server);
    }
    if let Some(limit) = db.connection_limit
        && !(1..=MAX_CONNECTION_LIMIT).contains(&limit)
    {
        errs.add(
            "spec.database.connectionLimit",
            format!("{limit} {}", text::CONNECTION_LIMIT),
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
            errs.add(field, text::ZERO);
        }
    }
    if let Some(pods) = quota.pods
        && !(1..=MAX_PODS).contains(&pods)
    {
        errs.add("spec.quota.pods", format!("{pods} {}", text::PODS));
    }
}

/// Checks the CIDRs and ports of a network spec on their own (used for operator flags that take a CIDR).
pub fn network_cidr(network: &NetworkSpec) -> Result<(), ValidationErrors> {
    let mut errs = Errors::default();
    self::network(&mut errs, network);
    errs.finish()
}

fn network(errs: &mut Errors, network: &NetworkSpec) {
    if network.allow_egress.len() > rules::MAX_EGRESS_RULES {
        errs.add("spec.network.allowEgress", text::EGRESS_COUNT);
    }
    for (i, rule) in network.allow_egress.iter().enumerate() {
        if rule.ports.len() > rules::MAX_EGRESS_PORTS {
            errs.add(
                format!("spec.network.allowEgress[{i}].ports"),
                text::EGRESS_PORT_COUNT,
            );
        }
        let field = format!("spec.network.allowEgress[{i}].cidr");
        if let Err(message) = check_cidr(&rule.cidr) {
            errs.add(field, message);
        }
        for (j, port) in rule.ports.iter().enumerate() {
            if !(1..=65535).contains(&port.port) {
                errs.add(
                    format!("spec.network.allowEgress[{i}].ports[{j}].port"),
                    format!("{} {}", port.port, text::PORT),
                );
            }
        }
    }
}

fn check_cidr(cidr: &str) -> Result<(), String> {
    let bad = || format!("{} {}", shown(cidr), text::CIDR);
    let (addr, prefix) = cidr.split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    // Digits only, at most three, and no leading zero (`/08`), as Kubernetes parses a prefix.
    if prefix.is_empty()
        || prefix.len() > 3
        || !prefix.bytes().all(|b| b.is_ascii_digit())
        || (prefix.len() > 1 && prefix.starts_with('0'))
    {
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
        return Err(format!("{} {}", shown(cidr), text::CIDR_EVERYTHING));
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
            "{} {}; did you mean {network}/{prefix}?",
            shown(cidr),
            text::CIDR_HOST_BITS
        ));
    }
    Ok(())
}

pub mod cases;

#[cfg(test)]
mod tests;
