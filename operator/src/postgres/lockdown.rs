//! Catalog functions that let one tenant lock another tenant's relations, and taking them away from PUBLIC.
//!
//! A few functions executable by PUBLIC open a relation named by OID (or `regclass`) before, or without, any
//! privilege check, and keep the lock until the transaction ends. Tenant A can name tenant B's relations by
//! OID (`pg_class` is readable by everyone), call such a function in an open transaction and sit on the lock.
//! B's `ALTER TABLE`, `TRUNCATE`, `DROP`, `CREATE INDEX` or `ATTACH PARTITION` then waits for A, and B's own
//! reads queue behind that waiting statement. Locks belong to one database, so Database isolation is immune;
//! in Schema isolation the only lever Bulkhead has is `REVOKE EXECUTE ... FROM PUBLIC`.
//!
//! [`LOCK_FUNCTIONS`] lists every such function found on PostgreSQL 14 to 18 by calling each PUBLIC function
//! with an OID or `regclass` argument, as an unprivileged role, against every kind of relation of another
//! role (the e2e test `postgres_lock_functions` repeats that search and fails when a server has one more).
//! Each entry says whether [`apply`] revokes it or leaves it open, and why: some of them are what PostgreSQL
//! itself calls on the tenant's behalf (sequences, hash partitions), and revoking those would break the tenant's
//! own tables. Those stay open and remain a way to hold locks on another tenant's relations in Schema isolation.
//!
//! Only the function's owner (the bootstrap superuser) can revoke: an administrator with CREATEROLE/CREATEDB
//! only, as on managed services, gets a warning and nothing changes. [`apply`] then still succeeds and reports
//! the functions PUBLIC can still execute.

use postgres_protocol::escape::escape_identifier;
use tokio_postgres::Client;

use super::error::DbError;

/// What [`apply`] does with a lock-taking function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// EXECUTE is revoked from PUBLIC; tenants lose the function (see [`LockFunction::tenant_loses`]).
    Revoke,
    /// Left executable by PUBLIC: revoking it would break the tenant's use of its own objects.
    KeepOpen,
}

/// A catalog function that takes a lock on a relation it is given by OID without checking the caller's
/// privileges on it, and keeps that lock until the end of the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockFunction {
    /// Its name in `pg_catalog`.
    pub name: &'static str,
    /// Its argument types, by their `pg_type` names.
    pub args: &'static [&'static str],
    /// The first PostgreSQL major that has it.
    pub since: u32,
    /// The last major that has it, if it has been removed.
    pub until: Option<u32>,
    /// What it locks and how.
    pub locks: &'static str,
    /// What a tenant loses when EXECUTE is revoked from PUBLIC.
    pub tenant_loses: &'static str,
    /// Whether [`apply`] revokes it.
    pub disposition: Disposition,
}

impl LockFunction {
    /// Whether the function exists in PostgreSQL `major`.
    pub fn exists_in(&self, major: u32) -> bool {
        major >= self.since && self.until.is_none_or(|until| major <= until)
    }

    /// The function's signature, schema-qualified with every name quoted, as `to_regprocedure` and
    /// `REVOKE ... ON FUNCTION` read it.
    pub fn signature(&self) -> String {
        let args: Vec<String> = self.args.iter().map(|a| escape_identifier(a)).collect();
        format!(
            "{}.{}({})",
            escape_identifier("pg_catalog"),
            escape_identifier(self.name),
            args.join(", ")
        )
    }

    /// The statement that takes EXECUTE away from PUBLIC.
    pub fn revoke(&self) -> String {
        format!("REVOKE EXECUTE ON FUNCTION {} FROM PUBLIC", self.signature())
    }
}

/// Every lock-taking function found on PostgreSQL 14 to 18, revoked or not.
pub const LOCK_FUNCTIONS: &[LockFunction] = &[
    LockFunction {
        name: "pg_partition_tree",
        args: &["regclass"],
        since: 12,
        until: None,
        locks: "AccessShareLock on every partition (and partition index) below the given relation",
        tenant_loses: "listing a partition tree with pg_partition_tree, and psql's \\dP+ (sizes of partitioned \
                       tables and indexes); pg_partition_ancestors, pg_partition_root, pg_inherits and \\d+ keep \
                       working",
        disposition: Disposition::Revoke,
    },
    LockFunction {
        name: "pg_get_partition_constraintdef",
        args: &["oid"],
        since: 10,
        until: None,
        locks: "AccessShareLock on the partition and its parent (on a partition index: that index and its parent)",
        tenant_loses: "the partition constraint as text, and with it psql's \\d+ on a partition; \
                       pg_get_expr(relpartbound, oid) still shows the partition bound, and pg_dump does not use it",
        disposition: Disposition::Revoke,
    },
    LockFunction {
        name: "table_to_xmlschema",
        args: &["regclass", "bool", "bool", "text"],
        since: 8,
        until: None,
        locks: "AccessShareLock on the given relation, of any kind, before the SELECT privilege is checked",
        tenant_loses: "the XML Schema of a table; table_to_xml and query_to_xmlschema keep working",
        disposition: Disposition::Revoke,
    },
    LockFunction {
        name: "pg_get_viewdef",
        args: &["oid"],
        since: 8,
        until: None,
        locks: "AccessShareLock on the tables a view reads (up to 15 also on the view or materialized view)",
        tenant_loses: "pg_dump of any view, psql's \\d+ on views, information_schema.views.view_definition",
        disposition: Disposition::KeepOpen,
    },
    LockFunction {
        name: "pg_get_viewdef",
        args: &["oid", "bool"],
        since: 8,
        until: None,
        locks: "as pg_get_viewdef(oid)",
        tenant_loses: "pretty-printed view definitions (psql's \\d+ and \\sv on views)",
        disposition: Disposition::KeepOpen,
    },
    LockFunction {
        name: "pg_get_viewdef",
        args: &["oid", "int4"],
        since: 9,
        until: None,
        locks: "as pg_get_viewdef(oid)",
        tenant_loses: "wrapped view definitions",
        disposition: Disposition::KeepOpen,
    },
    LockFunction {
        name: "pg_get_ruledef",
        args: &["oid"],
        since: 8,
        until: None,
        locks: "AccessShareLock on the tables the rule's query reads, given the rule's OID (a view's \
                _RETURN rule, from pg_rewrite)",
        tenant_loses: "the pg_rules view and pg_dump of rules; and nothing gained while pg_get_viewdef, which \
                       takes the same locks, stays open",
        disposition: Disposition::KeepOpen,
    },
    LockFunction {
        name: "pg_get_ruledef",
        args: &["oid", "bool"],
        since: 8,
        until: None,
        locks: "as pg_get_ruledef(oid)",
        tenant_loses: "pretty-printed rule definitions",
        disposition: Disposition::KeepOpen,
    },
    LockFunction {
        name: "satisfies_hash_partition",
        args: &["oid", "int4", "int4", "any"],
        since: 11,
        until: None,
        locks: "AccessShareLock on the given partitioned table",
        tenant_loses: "hash partitioning: it is the partition constraint of every hash partition, checked with the \
                       caller's EXECUTE privilege by every UPDATE of a hash-partitioned table, every INSERT or COPY \
                       straight into a partition and every ATTACH PARTITION",
        disposition: Disposition::KeepOpen,
    },
    LockFunction {
        name: "nextval",
        args: &["regclass"],
        since: 8,
        until: None,
        locks: "RowExclusiveLock on the given relation of any kind, taken before the relation kind and the \
                privilege are checked and held by the transaction, so it survives the error and a ROLLBACK TO \
                SAVEPOINT",
        tenant_loses: "serial columns (their DEFAULT calls nextval) and explicit nextval calls (ORMs)",
        disposition: Disposition::KeepOpen,
    },
    LockFunction {
        name: "currval",
        args: &["regclass"],
        since: 8,
        until: None,
        locks: "as nextval",
        tenant_loses: "currval, used by applications after an INSERT",
        disposition: Disposition::KeepOpen,
    },
    LockFunction {
        name: "setval",
        args: &["regclass", "int8"],
        since: 8,
        until: None,
        locks: "as nextval",
        tenant_loses: "restoring its own pg_dump output (which calls setval) and sequence resets in migrations",
        disposition: Disposition::KeepOpen,
    },
    LockFunction {
        name: "setval",
        args: &["regclass", "int8", "bool"],
        since: 8,
        until: None,
        locks: "as nextval",
        tenant_loses: "restoring its own pg_dump output (which calls setval) and sequence resets in migrations",
        disposition: Disposition::KeepOpen,
    },
    LockFunction {
        name: "pg_sequence_last_value",
        args: &["regclass"],
        since: 10,
        until: None,
        locks: "as nextval",
        tenant_loses: "the pg_sequences view (it calls this function for every row)",
        disposition: Disposition::KeepOpen,
    },
];

/// The functions [`apply`] revokes that exist in PostgreSQL `major`.
pub fn revoked_in(major: u32) -> impl Iterator<Item = &'static LockFunction> {
    LOCK_FUNCTIONS
        .iter()
        .filter(move |f| f.disposition == Disposition::Revoke && f.exists_in(major))
}

/// Which of `signatures` exist on the server (a function missing from this version is skipped, never an
/// error).
const PRESENT_QUERY: &str = "SELECT s FROM unnest($1::text[]) AS s WHERE to_regprocedure(s) IS NOT NULL";

/// Which of `signatures` PUBLIC can still execute. A NULL `proacl` means the default, which grants EXECUTE to
/// PUBLIC.
const PUBLIC_EXECUTE_QUERY: &str = "SELECT s FROM unnest($1::text[]) AS s \
     WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_proc p, \
                   pg_catalog.aclexplode(coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner))) AS a \
                   WHERE p.oid = to_regprocedure(s) AND a.grantee = 0 AND a.privilege_type = 'EXECUTE')";

/// What [`apply`] found after revoking.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lockdown {
    /// Functions to revoke that PUBLIC can no longer execute.
    pub closed: Vec<String>,
    /// Functions to revoke that PUBLIC can still execute: the administrator does not own them, so the REVOKE
    /// only warned. Another tenant can lock relations through these.
    pub still_open: Vec<String>,
    /// Lock-taking functions left open on purpose (see [`Disposition::KeepOpen`]) that exist on this server.
    pub kept_open: Vec<String>,
}

impl Lockdown {
    /// Whether every function meant to be revoked is closed.
    pub fn is_complete(&self) -> bool {
        self.still_open.is_empty()
    }
}

fn server(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> DbError {
    move |source| DbError::Server { what, source }
}

async fn matching(
    client: &Client,
    query: &str,
    signatures: &[String],
    what: &'static str,
) -> Result<Vec<String>, DbError> {
    let rows = client.query(query, &[&signatures]).await.map_err(server(what))?;
    Ok(rows.into_iter().map(|r| r.get(0)).collect())
}

/// Revokes EXECUTE from PUBLIC on the lock-taking functions that exist in the connected database, then reads
/// back which of them PUBLIC can still execute. Functions are per database: run it in every database tenants
/// connect to.
pub async fn apply(client: &Client) -> Result<Lockdown, DbError> {
    let (revoke, keep): (Vec<&LockFunction>, Vec<&LockFunction>) = LOCK_FUNCTIONS
        .iter()
        .partition(|f| f.disposition == Disposition::Revoke);
    let to_revoke: Vec<String> = revoke.iter().map(|f| f.signature()).collect();
    let to_keep: Vec<String> = keep.iter().map(|f| f.signature()).collect();

    let present = matching(
        client,
        PRESENT_QUERY,
        &to_revoke,
        "looking up lock-taking functions",
    )
    .await?;
    // Only what is still open: a resync of a closed database changes nothing in the catalog.
    let open = matching(
        client,
        PUBLIC_EXECUTE_QUERY,
        &present,
        "reading function privileges",
    )
    .await?;
    for function in revoke.iter().filter(|f| open.contains(&f.signature())) {
        client
            .batch_execute(&function.revoke())
            .await
            .map_err(server("revoking a lock-taking function"))?;
    }
    let still_open = matching(
        client,
        PUBLIC_EXECUTE_QUERY,
        &present,
        "reading function privileges",
    )
    .await?;
    let kept_open = matching(
        client,
        PRESENT_QUERY,
        &to_keep,
        "looking up lock-taking functions",
    )
    .await?;
    Ok(Lockdown {
        closed: present.into_iter().filter(|s| !still_open.contains(s)).collect(),
        still_open,
        kept_open,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(name: &str, args: &[&str]) -> &'static LockFunction {
        LOCK_FUNCTIONS
            .iter()
            .find(|f| f.name == name && f.args == args)
            .unwrap_or_else(|| panic!("{name} missing"))
    }

    #[test]
    fn signatures_quote_every_name() {
        assert_eq!(
            find("pg_partition_tree", &["regclass"]).signature(),
            r#""pg_catalog"."pg_partition_tree"("regclass")"#
        );
        assert_eq!(
            find("satisfies_hash_partition", &["oid", "int4", "int4", "any"]).signature(),
            r#""pg_catalog"."satisfies_hash_partition"("oid", "int4", "int4", "any")"#
        );
    }

    #[test]
    fn revoke_takes_execute_from_public() {
        assert_eq!(
            find("table_to_xmlschema", &["regclass", "bool", "bool", "text"]).revoke(),
            r#"REVOKE EXECUTE ON FUNCTION "pg_catalog"."table_to_xmlschema"("regclass", "bool", "bool", "text") FROM PUBLIC"#
        );
    }

    #[test]
    fn functions_the_tenant_relies_on_stay_open() {
        for (name, args) in [
            ("satisfies_hash_partition", &["oid", "int4", "int4", "any"][..]),
            ("nextval", &["regclass"][..]),
            ("setval", &["regclass", "int8"][..]),
            ("pg_get_viewdef", &["oid"][..]),
        ] {
            assert_eq!(find(name, args).disposition, Disposition::KeepOpen, "{name}");
        }
        let revoked: Vec<&str> = revoked_in(15).map(|f| f.name).collect();
        assert_eq!(
            revoked,
            [
                "pg_partition_tree",
                "pg_get_partition_constraintdef",
                "table_to_xmlschema"
            ]
        );
    }

    #[test]
    fn versions_bound_the_list() {
        let tree = find("pg_partition_tree", &["regclass"]);
        assert!(!tree.exists_in(11));
        assert!(tree.exists_in(12) && tree.exists_in(18));
        let bounded = LockFunction {
            until: Some(16),
            ..*tree
        };
        assert!(bounded.exists_in(16) && !bounded.exists_in(17));
        assert_eq!(revoked_in(11).count(), 2);
    }

    #[test]
    fn every_entry_is_unique_and_explained() {
        for (i, f) in LOCK_FUNCTIONS.iter().enumerate() {
            assert!(!f.locks.is_empty() && !f.tenant_loses.is_empty(), "{}", f.name);
            assert!(
                LOCK_FUNCTIONS[i + 1..]
                    .iter()
                    .all(|g| (g.name, g.args) != (f.name, f.args)),
                "{} listed twice",
                f.name
            );
        }
    }
}
