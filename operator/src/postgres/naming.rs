//! Deterministic Postgres names for a Tenant or Customer.
//!
//! `bk_<tenant>[_<customer>]_<hash>`: readable, with `-` mapped to `_`, cut so that the longest derived name
//! (`…_owner`) fits the 63-byte identifier limit, and ending in 8 hex digits of a hash of the exact
//! `tenant/customer` pair. The hash keeps names unique where the mapping or the cut would not (`a-b` + `c` versus
//! `a` + `b-c`), so Postgres never truncates one name into another.

use sha2::{Digest, Sha256};

/// Postgres' identifier limit in bytes.
pub const MAX_IDENTIFIER_BYTES: usize = 63;
/// Every name Bulkhead derives starts with this (and never with the reserved `pg_`).
pub const PREFIX: &str = "bk_";

/// The names of one Tenant's or Customer's Postgres objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The schema (Schema isolation) or database (Database isolation).
    pub place: String,
    /// The NOLOGIN role that owns the schema or database and every object in it.
    pub owner: String,
    /// The LOGIN role the stack connects as.
    pub login: String,
}

/// Derives the names for a Tenant (`customer` = None) or a Customer.
pub fn names(tenant: &str, customer: Option<&str>) -> Names {
    let identity = match customer {
        Some(c) => format!("{tenant}/{c}"),
        None => tenant.to_owned(),
    };
    let digest = Sha256::digest(identity.as_bytes());
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let readable = match customer {
        Some(c) => format!("{PREFIX}{tenant}_{c}"),
        None => format!("{PREFIX}{tenant}"),
    }
    .replace('-', "_");
    // Longest derived name: "<readable>_<hash>_owner".
    let budget = MAX_IDENTIFIER_BYTES - 1 - hash.len() - "_owner".len();
    let mut cut = readable.len().min(budget);
    while !readable.is_char_boundary(cut) {
        cut -= 1;
    }
    let place = format!("{}_{hash}", readable[..cut].trim_end_matches('_'));
    Names {
        owner: format!("{place}_owner"),
        login: format!("{place}_login"),
        place,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_readable_prefixed_and_hashed() {
        let n = names("acme", None);
        assert!(n.place.starts_with("bk_acme_"), "{n:?}");
        assert_eq!(n.place.len(), "bk_acme_".len() + 8);
        assert_eq!(n.owner, format!("{}_owner", n.place));
        assert_eq!(n.login, format!("{}_login", n.place));
        assert_eq!(names("acme", None), n, "deterministic");
    }

    #[test]
    fn mappings_that_would_collide_stay_distinct() {
        let a = names("a-b", Some("c"));
        let b = names("a", Some("b-c"));
        assert_ne!(a.place, b.place);
        assert_ne!(names("acme", None).place, names("acme", Some("acme")).place);
    }

    #[test]
    fn longest_names_fit_the_identifier_limit() {
        let long = "x".repeat(63);
        for customer in [None, Some(long.as_str())] {
            let n = names(&long, customer);
            for name in [&n.place, &n.owner, &n.login] {
                assert!(
                    name.len() <= MAX_IDENTIFIER_BYTES,
                    "{name} is {} bytes",
                    name.len()
                );
                assert!(name.starts_with(PREFIX));
            }
        }
        assert_ne!(
            names(&long, Some(&"y".repeat(63))).place,
            names(&long, Some(&"z".repeat(63))).place
        );
    }
}
