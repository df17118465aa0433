//! Deterministic names of the objects Bulkhead creates for a Tenant or Customer.
//!
//! A Tenant `acme` lives in namespace `bk-acme`; its Customer `dental` in `bk-acme-dental`. Names longer than
//! 63 characters are cut and end in a short hash of the full name, so they stay unique and valid. Two resources
//! whose names still map to one namespace (Tenant `acme-dental` and Customer `dental` of Tenant `acme`) never
//! share it: the namespace carries its owner's labels, and the second resource reports `NamespaceConflict`.

use sha2::{Digest, Sha256};

/// Prefix of every namespace Bulkhead creates.
pub const NAMESPACE_PREFIX: &str = "bk-";
/// Longest name of a namespace (a DNS label).
pub const MAX_NAMESPACE_LEN: usize = 63;
/// Hex digits of the hash that ends a shortened name.
const HASH_LEN: usize = 8;

/// The namespace of a Tenant.
pub fn tenant_namespace(tenant: &str) -> String {
    bounded(format!("{NAMESPACE_PREFIX}{tenant}"), MAX_NAMESPACE_LEN)
}

/// The namespace of a Customer of `tenant`.
pub fn customer_namespace(tenant: &str, customer: &str) -> String {
    bounded(
        format!("{NAMESPACE_PREFIX}{tenant}-{customer}"),
        MAX_NAMESPACE_LEN,
    )
}

/// The namespace of a Tenant (`customer` = None) or of one of its Customers.
pub fn namespace(tenant: &str, customer: Option<&str>) -> String {
    match customer {
        Some(customer) => customer_namespace(tenant, customer),
        None => tenant_namespace(tenant),
    }
}

/// `name` if it fits in `max` bytes; else its first bytes, `-`, and the first hex digits of its SHA-256.
pub fn bounded(name: String, max: usize) -> String {
    if name.len() <= max {
        return name;
    }
    let digest = Sha256::digest(name.as_bytes());
    let hash: String = digest.iter().map(|b| format!("{b:02x}")).collect::<String>()[..HASH_LEN].to_owned();
    let mut keep = max - 1 - HASH_LEN;
    while !name.is_char_boundary(keep) {
        keep -= 1;
    }
    let head = name[..keep].trim_end_matches(['-', '_']);
    format!("{head}-{hash}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_kept() {
        assert_eq!(tenant_namespace("acme"), "bk-acme");
        assert_eq!(customer_namespace("acme", "dental"), "bk-acme-dental");
    }

    #[test]
    fn long_names_are_cut_with_a_hash_and_stay_unique() {
        let tenant = "t".repeat(63);
        let a = customer_namespace(&tenant, &"a".repeat(63));
        let b = customer_namespace(&tenant, &format!("{}b", "a".repeat(62)));
        assert_eq!(a.len(), 63);
        assert_eq!(b.len(), 63);
        assert_ne!(a, b);
        assert!(a.starts_with("bk-ttt"));
        assert_eq!(a, customer_namespace(&tenant, &"a".repeat(63)), "deterministic");
        let long_tenant = tenant_namespace(&"x".repeat(62));
        assert_eq!(long_tenant.len(), 63);
        assert!(long_tenant.ends_with(&long_tenant[55..]));
    }

    #[test]
    fn a_cut_never_leaves_a_dash_before_the_hash() {
        let name = bounded(format!("{}-{}", "a".repeat(53), "b".repeat(20)), 63);
        assert!(!name.contains("--"), "{name}");
        assert!(name.len() <= 63);
    }
}
