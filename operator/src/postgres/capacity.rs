//! Connection capacity: the CONNECTION LIMITs Bulkhead hands out must fit the server's `max_connections`.
//!
//! Capacity is `max_connections - superuser_reserved_connections - reserved_connections` (the last exists from
//! PostgreSQL 16 on; 0 before). A login role may be created, or its limit raised, only when the limits of the
//! other login roles Bulkhead made on the server, plus the one wanted, plus the operator's reserve (connections
//! kept for the admin, the operator itself and maintenance) fit in it. A role whose limit stays as it is, or
//! goes down, is never refused: a tenant already provisioned does not flap when the server gets fuller.
//!
//! A Bulkhead login role always has an explicit limit. One found with `-1` (no limit) was changed out of band;
//! its own reconcile sets it back, and until then it counts as [`DEFAULT_CONNECTION_LIMIT`] rather than as the
//! whole server (which would refuse every other tenant over one drifted role).

use bulkhead_crds::v1alpha1::DEFAULT_CONNECTION_LIMIT;
use tokio_postgres::Client;

use super::error::DbError;
use super::sql::ROLE_MARKER_PREFIX;

/// The server's connection settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// `max_connections`.
    pub max_connections: i64,
    /// `superuser_reserved_connections`.
    pub superuser_reserved: i64,
    /// `reserved_connections` (PostgreSQL 16+; 0 before).
    pub reserved: i64,
}

impl ServerLimits {
    /// The connections ordinary roles may use.
    pub fn capacity(&self) -> i64 {
        (self.max_connections - self.superuser_reserved - self.reserved).max(0)
    }
}

/// A refusal, with the numbers behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    /// Connections ordinary roles may use on the server.
    pub capacity: i64,
    /// Connections the operator keeps free.
    pub reserve: i64,
    /// The sum of the other Bulkhead login roles' limits.
    pub allotted: i64,
    /// The limit asked for.
    pub wanted: i64,
}

impl std::fmt::Display for Exceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a connection limit of {} does not fit: the server allows {} connections to ordinary roles \
             (max_connections minus superuser_reserved_connections and reserved_connections), {} are kept in \
             reserve by the operator and {} are already allotted to other Bulkhead roles, leaving {}",
            self.wanted,
            self.capacity,
            self.reserve,
            self.allotted,
            (self.capacity - self.reserve - self.allotted).max(0)
        )
    }
}

/// Whether setting a login role's limit to `wanted` needs the capacity check: the role is missing
/// (`current` is `None`) or its limit goes up. `-1` (no limit, out-of-band drift) going to a finite limit is a
/// restriction, not a raise.
pub fn needs_check(current: Option<i32>, wanted: i32) -> bool {
    match current {
        None => true,
        Some(limit) => limit >= 0 && wanted > limit,
    }
}

/// How much one other Bulkhead login role counts against the capacity.
fn allotted(limit: i32) -> i64 {
    if limit < 0 {
        i64::from(DEFAULT_CONNECTION_LIMIT)
    } else {
        i64::from(limit)
    }
}

/// Whether a limit of `wanted` fits next to `others` (the limits of the other Bulkhead login roles), keeping
/// `reserve` free. Exactly full fits.
pub fn check(server: &ServerLimits, reserve: u32, others: &[i32], wanted: i32) -> Result<(), Exceeded> {
    let capacity = server.capacity();
    let reserve = i64::from(reserve);
    let allotted: i64 = others.iter().copied().map(allotted).sum();
    let wanted = i64::from(wanted);
    if allotted + wanted + reserve > capacity {
        return Err(Exceeded {
            capacity,
            reserve,
            allotted,
            wanted,
        });
    }
    Ok(())
}

fn query_error(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> DbError {
    move |source| DbError::Server { what, source }
}

/// Reads the server's connection settings.
pub async fn server_limits(client: &Client) -> Result<ServerLimits, DbError> {
    let row = client
        .query_one(
            "SELECT current_setting('max_connections')::bigint, \
             current_setting('superuser_reserved_connections')::bigint, \
             coalesce(current_setting('reserved_connections', true), '0')::bigint",
            &[],
        )
        .await
        .map_err(query_error("reading the connection settings"))?;
    Ok(ServerLimits {
        max_connections: row.get(0),
        superuser_reserved: row.get(1),
        reserved: row.get(2),
    })
}

/// The connection limits of Bulkhead's login roles on the server other than `login`.
pub async fn other_limits(client: &Client, login: &str) -> Result<Vec<i32>, DbError> {
    let rows = client
        .query(
            "SELECT rolconnlimit FROM pg_roles WHERE rolcanlogin AND rolname <> $1 \
             AND starts_with(coalesce(shobj_description(oid, 'pg_authid'), ''), $2)",
            &[&login, &ROLE_MARKER_PREFIX],
        )
        .await
        .map_err(query_error("reading the other roles' connection limits"))?;
    Ok(rows.into_iter().map(|r| r.get(0)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PG15: ServerLimits = ServerLimits {
        max_connections: 20,
        superuser_reserved: 3,
        reserved: 0,
    };

    #[test]
    fn capacity_subtracts_both_reservations() {
        assert_eq!(PG15.capacity(), 17);
        let pg16 = ServerLimits { reserved: 2, ..PG15 };
        assert_eq!(pg16.capacity(), 15);
        let odd = ServerLimits {
            max_connections: 3,
            superuser_reserved: 5,
            reserved: 0,
        };
        assert_eq!(odd.capacity(), 0, "never negative");
    }

    #[test]
    fn exactly_full_passes_and_one_over_fails() {
        // 17 usable, 4 reserved, 5 + 3 allotted: 5 more fills it exactly.
        assert_eq!(check(&PG15, 4, &[5, 3], 5), Ok(()));
        let err = check(&PG15, 4, &[5, 3], 6).unwrap_err();
        assert_eq!(
            err,
            Exceeded {
                capacity: 17,
                reserve: 4,
                allotted: 8,
                wanted: 6
            }
        );
        let message = err.to_string();
        for number in ["of 6", "allows 17", "4 are kept", "8 are already", "leaving 5"] {
            assert!(message.contains(number), "{message} lacks {number}");
        }
    }

    #[test]
    fn a_reserve_larger_than_the_capacity_refuses_everything() {
        let err = check(&PG15, 100, &[], 1).unwrap_err();
        assert_eq!(err.reserve, 100);
        assert!(err.to_string().contains("leaving 0"));
        assert_eq!(check(&PG15, 17, &[], 1).map_err(|e| e.wanted), Err(1));
        assert_eq!(check(&PG15, 16, &[], 1), Ok(()));
    }

    #[test]
    fn unlimited_bulkhead_roles_count_as_the_default_limit() {
        let d = DEFAULT_CONNECTION_LIMIT;
        let big = ServerLimits {
            max_connections: 100,
            superuser_reserved: 0,
            reserved: 0,
        };
        assert_eq!(check(&big, 0, &[-1], 100 - d), Ok(()));
        assert_eq!(
            check(&big, 0, &[-1], 100 - d + 1).unwrap_err().allotted,
            i64::from(d)
        );
    }

    #[test]
    fn only_new_roles_and_raised_limits_are_checked() {
        assert!(needs_check(None, 5), "a new role");
        assert!(needs_check(Some(5), 6), "a raise");
        assert!(!needs_check(Some(5), 5), "unchanged: never refused");
        assert!(!needs_check(Some(5), 3), "lowered: frees connections");
        assert!(!needs_check(Some(-1), 5), "unlimited to limited is a restriction");
        assert!(!needs_check(Some(0), 0));
        assert!(needs_check(Some(0), 1));
    }
}
