//! The rules a Tenant or Customer spec must follow, stated once: their limits, the words of each refusal, and
//! the CEL form in which the API server enforces them at admission (`x-kubernetes-validations` in the generated
//! CRDs, so `kubectl apply` of a bad spec is refused at once, with no webhook).
//!
//! The operator checks every spec again itself ([`crate::validate`]): for API servers that ignore CEL and for
//! objects stored before a rule existed. It uses the same limits and the same texts, so both refuse a spec on
//! the same fields with the same words; the operator adds the offending value in front.
//!
//! A rule the schema states without CEL (a `maxLength`, a `maxItems`, a list keyed by name) keeps the API
//! server's standard message. Every string and list that a rule reads has such a bound: the API server refuses a
//! CRD whose rules could cost more than its budget on the largest object it would accept. For the same reason
//! the messages are fixed texts, not CEL expressions. What CEL cannot see stays with the operator alone: the history of a spec (its identity is compared
//! with the one first accepted, where CEL compares with the previous version) and anything across objects.
//!
//! A leaf: imports nothing from this crate.

#[cfg(test)]
use kube::core::Message;
use kube::core::Rule;

/// Longest accepted `orgId`.
pub const MAX_ORG_ID_LEN: usize = 128;
/// Longest accepted `displayName`, in characters.
pub const MAX_DISPLAY_NAME_LEN: usize = 256;
/// Longest accepted resource name: one DNS label, so it fits a namespace name and, mapped, a Postgres name.
pub const MAX_NAME_LEN: usize = 63;
/// Longest image reference: a 255-character name, a 128-character tag and a sha512 digest.
pub const MAX_IMAGE_LEN: usize = 255 + 1 + 128 + 1 + 7 + 128;
/// Longest name part of an image reference (before its tag and digest).
pub const MAX_IMAGE_NAME_LEN: usize = 255;
/// Longest environment variable name.
pub const MAX_ENV_NAME_LEN: usize = 256;
/// Largest environment variable value, in characters.
pub const MAX_ENV_VALUE_LEN: usize = 32 * 1024;
/// Most environment variables of a stack.
pub const MAX_ENV: usize = 256;
/// Most egress destinations of a spec.
pub const MAX_EGRESS_RULES: usize = 128;
/// Most ports of one egress destination.
pub const MAX_EGRESS_PORTS: usize = 32;
/// Longest text of an egress CIDR (an IPv6 address and prefix fit in 43).
pub const MAX_CIDR_LEN: usize = 64;
/// Most replicas a stack may ask for.
pub const MAX_REPLICAS: i32 = 100;
/// Most pods a quota may allow.
pub const MAX_PODS: i32 = 1000;
/// Highest connection limit a login role may get.
pub const MAX_CONNECTION_LIMIT: i32 = 1000;
/// Lowest port a stack may listen on.
pub const MIN_STACK_PORT: i32 = 1024;
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

/// The words of each refusal. The operator prints the offending value in front of them.
pub mod text {
    /// A name that is not a DNS label.
    pub const DNS_LABEL: &str = "must be a DNS label: 1 to 63 lowercase letters, digits and `-`, starting and ending with a letter or digit (it names a namespace and Postgres objects)";
    /// An org id of the wrong shape.
    pub const ORG_ID: &str =
        "must be 1 to 128 characters of letters, digits, `_`, `-`, `.`, `:`, starting with a letter or digit";
    /// An identity field that changed.
    pub const IMMUTABLE: &str = "is immutable once set; delete and recreate the resource to change it";
    /// A display name with control characters.
    pub const CONTROL_CHARACTERS: &str = "must not contain control characters";
    /// A display name that is too long.
    pub const DISPLAY_NAME_TOO_LONG: &str = "must be at most 256 characters";
    /// A malformed image reference.
    pub const IMAGE: &str = "is not a valid image reference ([registry[:port]/]path[:tag][@sha256:digest], path components in lowercase)";
    /// The stack port's range, after the value.
    pub const STACK_PORT: &str = "is out of range: must be 1024 to 65535 (the stack runs as non-root without capabilities, so it cannot bind a privileged port)";
    /// The replicas' range, after the value.
    pub const REPLICAS: &str = "is out of range: must be 0 to 100";
    /// A malformed environment variable name.
    pub const ENV_NAME: &str = "must be letters, digits and `_`, not starting with a digit";
    /// A reserved environment variable name.
    pub const ENV_RESERVED: &str = "is reserved: Bulkhead injects the database variables (DATABASE_URL, PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD) and owns the BULKHEAD_ prefix";
    /// An environment variable named twice.
    pub const ENV_DUPLICATE: &str = "is set more than once";
    /// An environment variable value that is too large.
    pub const ENV_VALUE: &str = "must be at most 32768 characters";
    /// Too many environment variables.
    pub const ENV_COUNT: &str = "must have at most 256 variables";
    /// Too many egress destinations.
    pub const EGRESS_COUNT: &str = "must have at most 128 destinations";
    /// Too many ports in one egress destination.
    pub const EGRESS_PORT_COUNT: &str = "must have at most 32 ports";
    /// A quantity that does not parse.
    pub const QUANTITY: &str = "is not a Kubernetes quantity (examples: 500m, 2, 256Mi, 1Gi)";
    /// A negative quantity.
    pub const NEGATIVE: &str = "must not be negative";
    /// A quota of zero.
    pub const ZERO: &str = "must be greater than zero";
    /// A request above its limit, before the limit's path.
    pub const REQUEST_ABOVE_LIMIT: &str = "must not exceed ";
    /// The connection limit's range, after the value.
    pub const CONNECTION_LIMIT: &str = "is out of range: must be 1 to 1000";
    /// The pod quota's range, after the value.
    pub const PODS: &str = "is out of range: must be 1 to 1000";
    /// A port's range, after the value.
    pub const PORT: &str = "is out of range: must be 1 to 65535";
    /// A malformed CIDR.
    pub const CIDR: &str = "is not a CIDR such as 203.0.113.0/24 or 2001:db8::/32";
    /// A CIDR of every address.
    pub const CIDR_EVERYTHING: &str = "would allow egress to every address, including other tenants' pods; list the specific networks the stack needs";
    /// A CIDR with host bits.
    pub const CIDR_HOST_BITS: &str = "has host bits set";

    /// Every text above.
    pub const ALL: [&str; 25] = [
        DNS_LABEL,
        ORG_ID,
        IMMUTABLE,
        CONTROL_CHARACTERS,
        DISPLAY_NAME_TOO_LONG,
        IMAGE,
        STACK_PORT,
        REPLICAS,
        ENV_NAME,
        ENV_RESERVED,
        ENV_DUPLICATE,
        ENV_VALUE,
        ENV_COUNT,
        EGRESS_COUNT,
        EGRESS_PORT_COUNT,
        QUANTITY,
        NEGATIVE,
        ZERO,
        REQUEST_ABOVE_LIMIT,
        CONNECTION_LIMIT,
        PODS,
        PORT,
        CIDR,
        CIDR_EVERYTHING,
        CIDR_HOST_BITS,
    ];
}

/// The path of the stack's resources (a Tenant's and a Customer's stack both sit at `spec.stack`).
pub const STACK_RESOURCES_PATH: &str = "spec.stack.resources";

const DNS_LABEL_RE: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
const ORG_ID_RE: &str = "^[A-Za-z0-9][A-Za-z0-9_.:-]*$";
const ENV_NAME_RE: &str = "^[A-Za-z_][A-Za-z0-9_]*$";

/// An image reference, after the grammar of the distribution project's `reference` package: a registry
/// (a host name or IPv4 address with an optional port) is only recognised in front of a further path component,
/// and a first component without a registry may not contain `.` (else it would be taken for one).
fn image_re() -> String {
    let label = "[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?";
    let registry = format!("{label}([.]{label})*(:[0-9]{{1,5}})?");
    let component = "[a-z0-9]+(([.]|__?|-+)[a-z0-9]+)*";
    let plain = "[a-z0-9]+((__?|-+)[a-z0-9]+)*";
    let tag = "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}";
    let digest = "(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})";
    format!(
        "^({registry}/{component}(/{component})*|{plain}(/{component})+|{component})(:{tag})?(@{digest})?$"
    )
}

/// The name part of an image reference: everything up to its tag or digest.
const IMAGE_NAME_RE: &str = "^([^/@]*/)*[^/:@]*";

fn rule(cel: impl Into<String>, message: &str) -> Rule {
    Rule::new(cel).message(message)
}

/// A CEL string literal (single-quoted) holding `text`.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// An integer range.
fn range(low: i32, high: i32, text: &str) -> Rule {
    rule(format!("self >= {low} && self <= {high}"), text)
}

/// Root rule: `metadata.name` is a DNS label.
pub fn resource_name() -> Rule {
    rule(
        format!("size(self.metadata.name) <= {MAX_NAME_LEN} && self.metadata.name.matches('{DNS_LABEL_RE}')"),
        &format!("metadata.name {}", text::DNS_LABEL),
    )
}

/// A reference to another resource by name (a Customer's `tenantRef`).
pub fn resource_ref() -> Rule {
    rule(
        format!("size(self) <= {MAX_NAME_LEN} && self.matches('{DNS_LABEL_RE}')"),
        text::DNS_LABEL,
    )
}

/// The shape of an org id (its length is the schema's `maxLength`).
pub fn org_id() -> Rule {
    rule(format!("self.matches('{ORG_ID_RE}')"), text::ORG_ID)
}

/// An identity field keeps its value.
pub fn immutable() -> Rule {
    rule("self == oldSelf", text::IMMUTABLE)
}

/// On a database spec: the isolation keeps its value once the database has been enabled.
pub fn isolation_immutable() -> Rule {
    rule(
        "!(has(oldSelf.enabled) && oldSelf.enabled) || \
         (has(self.isolation) ? self.isolation : 'Schema') == (has(oldSelf.isolation) ? oldSelf.isolation : 'Schema')",
        text::IMMUTABLE,
    )
    .field_path(".isolation")
}

/// On a database spec: the server (absent meaning the default) keeps its value once the database has been
/// enabled, as the data lives there.
pub fn server_immutable() -> Rule {
    rule(
        "!(has(oldSelf.enabled) && oldSelf.enabled) || \
         (has(self.server) ? self.server : '') == (has(oldSelf.server) ? oldSelf.server : '')",
        text::IMMUTABLE,
    )
    .field_path(".server")
}

/// A display name has no control characters (its length is the schema's `maxLength`).
pub fn display_name() -> Rule {
    rule(r"!self.matches(r'\p{Cc}')", text::CONTROL_CHARACTERS)
}

/// An image reference is well formed.
pub fn image() -> Rule {
    rule(
        format!(
            "self.matches('{}') && size(self.find('{IMAGE_NAME_RE}')) <= {MAX_IMAGE_NAME_LEN}",
            image_re()
        ),
        text::IMAGE,
    )
}

/// The stack's port.
pub fn stack_port() -> Rule {
    range(MIN_STACK_PORT, 65535, text::STACK_PORT)
}

/// The stack's replicas.
pub fn replicas() -> Rule {
    range(0, MAX_REPLICAS, text::REPLICAS)
}

/// An environment variable's name is well formed.
pub fn env_name() -> Rule {
    rule(format!("self.matches('{ENV_NAME_RE}')"), text::ENV_NAME)
}

/// An environment variable's name is not one Bulkhead sets.
pub fn env_name_not_reserved() -> Rule {
    let reserved = RESERVED_ENV
        .iter()
        .map(|name| literal(name))
        .collect::<Vec<_>>()
        .join(", ");
    rule(
        format!(
            "!self.matches('{ENV_NAME_RE}') || !(self in [{reserved}] || self.startsWith({}))",
            literal(RESERVED_ENV_PREFIX)
        ),
        text::ENV_RESERVED,
    )
}

/// A quantity (an integer or a string) parses.
pub fn quantity() -> Rule {
    rule("type(self) == int || isQuantity(self)", text::QUANTITY)
}

/// A quantity that parses is not negative.
pub fn not_negative() -> Rule {
    rule(
        "type(self) == int ? self >= 0 : (!isQuantity(self) || !quantity(self).isLessThan(quantity('0')))",
        text::NEGATIVE,
    )
}

/// A quantity that parses is not zero.
pub fn not_zero() -> Rule {
    rule(
        "type(self) == int ? self != 0 : (!isQuantity(self) || quantity(self).compareTo(quantity('0')) != 0)",
        text::ZERO,
    )
}

/// On a stack's resources: the request of `what` (`cpu` or `memory`) does not exceed its limit.
pub fn request_within_limit(what: &str) -> Rule {
    let q = |side: &str| format!("self.{side}.{what}");
    let parsed = |side: &str| {
        format!(
            "(type({0}) == int ? quantity(string({0})) : quantity({0}))",
            q(side)
        )
    };
    let present = |side: &str| {
        format!(
            "has(self.{side}) && has(self.{side}.{what}) && (type({0}) == int || isQuantity({0}))",
            q(side)
        )
    };
    rule(
        format!(
            "!({} && {}) || {}.compareTo({}) <= 0",
            present("requests"),
            present("limits"),
            parsed("requests"),
            parsed("limits")
        ),
        &format!(
            "{}{STACK_RESOURCES_PATH}.limits.{what}",
            text::REQUEST_ABOVE_LIMIT
        ),
    )
    .field_path(format!(".requests.{what}"))
}

/// The database role's connection limit.
pub fn connection_limit() -> Rule {
    range(1, MAX_CONNECTION_LIMIT, text::CONNECTION_LIMIT)
}

/// The quota's pods.
pub fn pods() -> Rule {
    range(1, MAX_PODS, text::PODS)
}

/// A port number.
pub fn port() -> Rule {
    range(1, 65535, text::PORT)
}

/// An egress CIDR parses.
pub fn cidr() -> Rule {
    rule("isCIDR(self)", text::CIDR)
}

/// An egress CIDR is not every address.
pub fn cidr_not_everything() -> Rule {
    rule(
        "!isCIDR(self) || cidr(self).prefixLength() != 0",
        text::CIDR_EVERYTHING,
    )
}

/// An egress CIDR has no host bits set.
pub fn cidr_network() -> Rule {
    rule(
        "!isCIDR(self) || cidr(self).prefixLength() == 0 || cidr(self) == cidr(self).masked()",
        text::CIDR_HOST_BITS,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn the_texts_state_the_limits() {
        assert!(text::DNS_LABEL.contains(&format!("1 to {MAX_NAME_LEN} ")));
        assert!(text::ORG_ID.contains(&format!("1 to {MAX_ORG_ID_LEN} ")));
        assert!(text::DISPLAY_NAME_TOO_LONG.contains(&MAX_DISPLAY_NAME_LEN.to_string()));
        assert!(text::STACK_PORT.contains(&format!("must be {MIN_STACK_PORT} to 65535")));
        assert!(text::REPLICAS.contains(&format!("0 to {MAX_REPLICAS}")));
        assert!(text::CONNECTION_LIMIT.contains(&format!("1 to {MAX_CONNECTION_LIMIT}")));
        assert!(text::PODS.contains(&format!("1 to {MAX_PODS}")));
        assert!(text::ENV_VALUE.contains(&format!("{MAX_ENV_VALUE_LEN} ")));
        assert!(text::ENV_COUNT.contains(&format!("{MAX_ENV} ")));
        assert!(text::EGRESS_COUNT.contains(&format!("{MAX_EGRESS_RULES} ")));
        assert!(text::EGRESS_PORT_COUNT.contains(&format!("{MAX_EGRESS_PORTS} ")));
        for name in RESERVED_ENV {
            assert!(text::ENV_RESERVED.contains(name), "{name}");
        }
        assert!(text::ENV_RESERVED.contains(RESERVED_ENV_PREFIX));
    }

    #[test]
    fn literals_escape_quotes_and_backslashes() {
        assert_eq!(literal(r"it's a \ test"), r"'it\'s a \\ test'");
    }

    #[test]
    fn ranges_are_inclusive_and_keep_their_text() {
        let rule = stack_port();
        assert_eq!(rule.rule, "self >= 1024 && self <= 65535");
        assert_eq!(rule.message, Some(Message::Message(text::STACK_PORT.into())));
    }

    #[test]
    fn every_text_is_in_the_list_the_wording_tests_check() {
        let source = include_str!("rules.rs");
        let module = &source[source.find("pub mod text {").unwrap_or(0)..];
        let (texts, all) = module.split_once("pub const ALL").unwrap_or((module, ""));
        let declared: BTreeSet<&str> = texts
            .lines()
            .filter_map(|l| l.trim().strip_prefix("pub const "))
            .filter_map(|l| l.split(':').next())
            .collect();
        let listed: BTreeSet<&str> = all[..all.find("];").unwrap_or(0)]
            .lines()
            .skip(1)
            .map(|l| l.trim().trim_end_matches(','))
            .filter(|l| !l.is_empty())
            .collect();
        assert!(declared.len() >= 20, "{declared:?}");
        assert_eq!(declared, listed, "text::ALL must list every text");
        assert_eq!(listed.len(), text::ALL.len());
    }
}
