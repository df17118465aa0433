//! Pure builders of the SQL Bulkhead runs against the shared server. Every identifier goes through
//! `postgres_protocol::escape::escape_identifier` and every literal through `escape_literal`; nothing is
//! `format!`-ed raw. Identifiers longer than Postgres' limit are refused, never truncated.

use postgres_protocol::escape::{escape_identifier, escape_literal};

use super::naming::MAX_IDENTIFIER_BYTES;

/// Why a statement could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    /// An identifier is empty or longer than Postgres keeps (it would be silently truncated).
    #[error("identifier {0:?} must be 1 to 63 bytes")]
    IdentifierLength(String),
    /// An identifier uses a prefix Postgres reserves.
    #[error("identifier {0:?} starts with the reserved prefix pg_")]
    Reserved(String),
    /// A connection limit out of range.
    #[error("connection limit {0} must be between 1 and 1000")]
    ConnectionLimit(i32),
}

impl SqlError {
    /// A fixed category for metrics labels and events.
    pub fn category(&self) -> &'static str {
        "sql_build"
    }
}

/// A checked, quoted identifier.
fn ident(name: &str) -> Result<String, SqlError> {
    if name.is_empty() || name.len() > MAX_IDENTIFIER_BYTES {
        return Err(SqlError::IdentifierLength(name.to_owned()));
    }
    if name.to_ascii_lowercase().starts_with("pg_") {
        return Err(SqlError::Reserved(name.to_owned()));
    }
    Ok(escape_identifier(name))
}

/// Removes PUBLIC's default rights on the shared database, `postgres` and `template1`, and CREATE on schema
/// `public` (which databases upgraded from before 15 still grant).
pub fn harden_server(shared_database: &str) -> Result<Vec<String>, SqlError> {
    let mut out = Vec::new();
    for db in [shared_database, "postgres", "template1"] {
        out.push(format!(
            "REVOKE ALL ON DATABASE {} FROM PUBLIC",
            escape_identifier(db)
        ));
    }
    out.push("REVOKE CREATE ON SCHEMA public FROM PUBLIC".to_owned());
    // The shared database name comes from configuration; check it like any other identifier.
    ident(shared_database)?;
    Ok(out)
}

/// Creates the NOLOGIN role that owns a tenant's objects.
pub fn create_owner_role(owner: &str) -> Result<String, SqlError> {
    Ok(format!(
        "CREATE ROLE {} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT",
        ident(owner)?
    ))
}

/// The attributes of a login role, with its password as a SCRAM verifier (never the password itself).
fn login_attributes(verifier: &str, connection_limit: i32) -> Result<String, SqlError> {
    if !(1..=1000).contains(&connection_limit) {
        return Err(SqlError::ConnectionLimit(connection_limit));
    }
    Ok(format!(
        "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT CONNECTION LIMIT {connection_limit} PASSWORD {}",
        escape_literal(verifier)
    ))
}

/// Creates the LOGIN role a stack connects as.
pub fn create_login_role(login: &str, verifier: &str, connection_limit: i32) -> Result<String, SqlError> {
    Ok(format!(
        "CREATE ROLE {} {}",
        ident(login)?,
        login_attributes(verifier, connection_limit)?
    ))
}

/// Resets a login role's attributes and password (drift repair, rotation).
pub fn alter_login_role(login: &str, verifier: &str, connection_limit: i32) -> Result<String, SqlError> {
    Ok(format!(
        "ALTER ROLE {} {}",
        ident(login)?,
        login_attributes(verifier, connection_limit)?
    ))
}

/// The login role's attributes without touching its password (drift repair of the attributes).
pub fn reset_login_attributes(login: &str, connection_limit: i32) -> Result<String, SqlError> {
    if !(1..=1000).contains(&connection_limit) {
        return Err(SqlError::ConnectionLimit(connection_limit));
    }
    Ok(format!(
        "ALTER ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT CONNECTION LIMIT {connection_limit} VALID UNTIL 'infinity'",
        ident(login)?
    ))
}

/// The owner role's attributes (drift repair).
pub fn reset_owner_attributes(owner: &str) -> Result<String, SqlError> {
    Ok(format!(
        "ALTER ROLE {} NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT",
        ident(owner)?
    ))
}

/// Sets a login role's password, as a SCRAM verifier.
pub fn set_password(login: &str, verifier: &str) -> Result<String, SqlError> {
    Ok(format!(
        "ALTER ROLE {} PASSWORD {}",
        ident(login)?,
        escape_literal(verifier)
    ))
}

/// The comment that marks a role as Bulkhead's, naming what it belongs to.
pub fn role_marker(owner_of: &str) -> String {
    format!("{ROLE_MARKER_PREFIX}{owner_of}")
}

/// Every role Bulkhead creates carries a comment starting with this; a role without it is not Bulkhead's.
pub const ROLE_MARKER_PREFIX: &str = "managed by bulkhead: ";

/// Marks a role as Bulkhead's.
pub fn comment_role(role: &str, marker: &str) -> Result<String, SqlError> {
    Ok(format!(
        "COMMENT ON ROLE {} IS {}",
        ident(role)?,
        escape_literal(marker)
    ))
}

/// A privilege a tenant's role holds outside its own place, found in the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtraGrant {
    /// Membership in another role.
    Membership {
        /// The role granted.
        role: String,
        /// The tenant's role holding it.
        member: String,
    },
    /// Rights on another database.
    Database {
        /// The database.
        database: String,
        /// The tenant's role holding them.
        grantee: String,
    },
    /// Rights on another schema.
    Schema {
        /// The schema.
        schema: String,
        /// The tenant's role holding them.
        grantee: String,
    },
    /// Rights on a table, view or sequence in another schema.
    Relation {
        /// Its schema.
        schema: String,
        /// Its name.
        name: String,
        /// The tenant's role holding them.
        grantee: String,
    },
}

impl ExtraGrant {
    /// The statement that takes it back.
    pub fn revoke(&self) -> Result<String, SqlError> {
        // Catalog names of other objects are quoted but not checked against Bulkhead's own naming rules.
        let q = |n: &str| escape_identifier(n);
        Ok(match self {
            ExtraGrant::Membership { role, member } => format!("REVOKE {} FROM {}", q(role), ident(member)?),
            ExtraGrant::Database { database, grantee } => {
                format!("REVOKE ALL ON DATABASE {} FROM {}", q(database), ident(grantee)?)
            }
            ExtraGrant::Schema { schema, grantee } => {
                format!("REVOKE ALL ON SCHEMA {} FROM {}", q(schema), ident(grantee)?)
            }
            ExtraGrant::Relation {
                schema,
                name,
                grantee,
            } => format!(
                "REVOKE ALL ON TABLE {}.{} FROM {}",
                q(schema),
                q(name),
                ident(grantee)?
            ),
        })
    }
}

impl std::fmt::Display for ExtraGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExtraGrant::Membership { role, member } => write!(f, "{member} member of role {role}"),
            ExtraGrant::Database { database, grantee } => write!(f, "{grantee} on database {database}"),
            ExtraGrant::Schema { schema, grantee } => write!(f, "{grantee} on schema {schema}"),
            ExtraGrant::Relation {
                schema,
                name,
                grantee,
            } => write!(f, "{grantee} on {schema}.{name}"),
        }
    }
}

/// Finds privileges of `$1` (the tenant's role names) outside their place: memberships; rights on databases
/// other than `$2`; and, in the database connected to, rights on schemas other than `$3` and on relations in
/// them. Columns: kind, object schema (or database or role), object name, grantee.
pub const EXTRA_GRANTS_QUERY: &str = "\
WITH r AS (SELECT oid, rolname FROM pg_roles WHERE rolname = ANY($1::text[]))
SELECT 'membership', g.rolname::text, ''::text, r.rolname::text
  FROM pg_auth_members m JOIN r ON m.member = r.oid JOIN pg_roles g ON g.oid = m.roleid
UNION ALL
SELECT DISTINCT 'database', d.datname::text, ''::text, r.rolname::text
  FROM pg_database d CROSS JOIN LATERAL aclexplode(d.datacl) a JOIN r ON a.grantee = r.oid
  WHERE d.datname <> $2::text
UNION ALL
SELECT DISTINCT 'schema', n.nspname::text, ''::text, r.rolname::text
  FROM pg_namespace n CROSS JOIN LATERAL aclexplode(n.nspacl) a JOIN r ON a.grantee = r.oid
  WHERE n.nspname <> $3::text
UNION ALL
SELECT DISTINCT 'relation', n.nspname::text, c.relname::text, r.rolname::text
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  CROSS JOIN LATERAL aclexplode(c.relacl) a JOIN r ON a.grantee = r.oid
  WHERE n.nspname <> $3::text";

/// Turns a row of [`EXTRA_GRANTS_QUERY`] into an [`ExtraGrant`].
pub fn extra_grant(kind: &str, object: String, name: String, grantee: String) -> Option<ExtraGrant> {
    match kind {
        "membership" => Some(ExtraGrant::Membership {
            role: object,
            member: grantee,
        }),
        "database" => Some(ExtraGrant::Database {
            database: object,
            grantee,
        }),
        "schema" => Some(ExtraGrant::Schema {
            schema: object,
            grantee,
        }),
        "relation" => Some(ExtraGrant::Relation {
            schema: object,
            name,
            grantee,
        }),
        _ => None,
    }
}

/// Schema isolation: the schema, owned by the owner role; the login role gets USAGE and DML on it and on
/// everything the owner creates in it later; its search_path is pinned to it in the shared database.
pub fn schema_grants(
    database: &str,
    schema: &str,
    owner: &str,
    login: &str,
) -> Result<Vec<String>, SqlError> {
    let (db, s, o, l) = (ident(database)?, ident(schema)?, ident(owner)?, ident(login)?);
    Ok(vec![
        format!("CREATE SCHEMA IF NOT EXISTS {s} AUTHORIZATION {o}"),
        format!("REVOKE ALL ON SCHEMA {s} FROM PUBLIC"),
        format!("GRANT CONNECT ON DATABASE {db} TO {l}"),
        // CREATE lets the stack run its own migrations with nothing but its DATABASE_URL.
        format!("GRANT USAGE, CREATE ON SCHEMA {s} TO {l}"),
        format!("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {l}"),
        format!("GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {s} TO {l}"),
        format!(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {l}"
        ),
        format!(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s} GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {l}"
        ),
        format!("ALTER ROLE {l} IN DATABASE {db} SET search_path = {s}"),
    ])
}

/// Database isolation, on the server: the tenant's own database, owned by its owner role, which PUBLIC cannot
/// connect to and its login role can. (Run outside a transaction.) Inside it, [`schema_grants`] sets up the
/// schema as in Schema isolation.
pub fn create_database(database: &str, owner: &str) -> Result<Vec<String>, SqlError> {
    let (db, o) = (ident(database)?, ident(owner)?);
    Ok(vec![
        format!("CREATE DATABASE {db} OWNER {o}"),
        format!("REVOKE ALL ON DATABASE {db} FROM PUBLIC"),
    ])
}

/// Database isolation, inside the tenant's database: nobody but the owner keeps rights on schema `public`.
pub fn harden_tenant_database() -> Vec<String> {
    vec!["REVOKE ALL ON SCHEMA public FROM PUBLIC".to_owned()]
}

/// Database isolation, deletion: the database (ending its sessions), then the roles.
pub fn drop_database_place(database: &str, owner: &str, login: &str) -> Result<Vec<String>, SqlError> {
    let (db, o, l) = (ident(database)?, ident(owner)?, ident(login)?);
    Ok(vec![
        format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
        format!("DROP ROLE IF EXISTS {l}"),
        format!("DROP ROLE IF EXISTS {o}"),
    ])
}

/// Schema isolation, deletion: the schema and everything in it, then what the roles still own or were granted
/// in this database (large objects, default privileges), then the roles.
pub fn drop_schema_place(schema: &str, owner: &str, login: &str) -> Result<Vec<String>, SqlError> {
    let (s, o, l) = (ident(schema)?, ident(owner)?, ident(login)?);
    Ok(vec![
        format!("DROP SCHEMA IF EXISTS {s} CASCADE"),
        format!("DROP OWNED BY {o}, {l}"),
        format!("DROP ROLE IF EXISTS {l}"),
        format!("DROP ROLE IF EXISTS {o}"),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_even_when_hostile() {
        let hostile = "a\"; DROP ROLE postgres; --";
        let sql = create_owner_role(hostile).unwrap();
        assert_eq!(
            sql,
            "CREATE ROLE \"a\"\"; DROP ROLE postgres; --\" NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT"
        );
        let unicode = "ténant-ü\u{202e}";
        assert!(
            create_owner_role(unicode)
                .unwrap()
                .starts_with(&format!("CREATE ROLE \"{unicode}\" "))
        );
        let grants = schema_grants("app", "s\"x", "o'x", "l;x").unwrap();
        assert_eq!(
            grants[0],
            "CREATE SCHEMA IF NOT EXISTS \"s\"\"x\" AUTHORIZATION \"o'x\""
        );
        assert!(grants.iter().all(|g| !g.contains("s\"x ")), "{grants:?}");
    }

    #[test]
    fn passwords_travel_as_escaped_scram_verifiers_only() {
        let verifier = postgres_protocol::password::scram_sha_256(b"s3cret'; DROP TABLE x; --");
        assert!(verifier.starts_with("SCRAM-SHA-256$4096:"));
        let sql = create_login_role("bk_acme_login", &verifier, 20).unwrap();
        assert!(!sql.contains("s3cret"), "{sql}");
        assert!(sql.ends_with(&format!("PASSWORD '{verifier}'")), "{sql}");
        assert!(sql.contains("CONNECTION LIMIT 20"));
        for attr in [
            "NOSUPERUSER",
            "NOCREATEDB",
            "NOCREATEROLE",
            "NOREPLICATION",
            "NOBYPASSRLS",
        ] {
            assert!(sql.contains(attr), "{attr} missing in {sql}");
        }
    }

    #[test]
    fn long_empty_and_reserved_names_are_refused_not_truncated() {
        let long = "a".repeat(200);
        assert_eq!(
            create_owner_role(&long),
            Err(SqlError::IdentifierLength(long.clone()))
        );
        assert_eq!(
            create_owner_role(""),
            Err(SqlError::IdentifierLength(String::new()))
        );
        assert_eq!(
            create_owner_role("pg_evil"),
            Err(SqlError::Reserved("pg_evil".into()))
        );
        assert_eq!(
            create_owner_role(&"é".repeat(32)),
            Err(SqlError::IdentifierLength("é".repeat(32))),
            "64 bytes"
        );
        assert!(create_owner_role(&"a".repeat(63)).is_ok());
        assert_eq!(create_login_role("x", "v", 0), Err(SqlError::ConnectionLimit(0)));
    }

    #[test]
    fn teardown_runs_in_the_order_that_works() {
        let sql = drop_schema_place("s", "o", "l").unwrap();
        assert_eq!(
            sql,
            [
                "DROP SCHEMA IF EXISTS \"s\" CASCADE",
                "DROP OWNED BY \"o\", \"l\"",
                "DROP ROLE IF EXISTS \"l\"",
                "DROP ROLE IF EXISTS \"o\""
            ]
        );
    }

    #[test]
    fn drift_repairs_never_carry_a_password_and_revokes_quote_foreign_names() {
        let sql = reset_login_attributes("bk_a_login", 20).unwrap();
        assert!(!sql.contains("PASSWORD"), "{sql}");
        assert!(
            sql.contains("NOSUPERUSER") && sql.contains("CONNECTION LIMIT 20"),
            "{sql}"
        );
        assert_eq!(
            reset_login_attributes("l", 1001),
            Err(SqlError::ConnectionLimit(1001))
        );
        assert_eq!(
            comment_role("bk_a_login", &role_marker("Tenant a'b")).unwrap(),
            "COMMENT ON ROLE \"bk_a_login\" IS 'managed by bulkhead: Tenant a''b'"
        );
        let grant = ExtraGrant::Relation {
            schema: "other\"s".into(),
            name: "t; DROP".into(),
            grantee: "bk_a_login".into(),
        };
        assert_eq!(
            grant.revoke().unwrap(),
            "REVOKE ALL ON TABLE \"other\"\"s\".\"t; DROP\" FROM \"bk_a_login\""
        );
        let member = extra_grant(
            "membership",
            "pg_read_all_data".into(),
            String::new(),
            "bk_a_login".into(),
        );
        assert_eq!(
            member.unwrap().revoke().unwrap(),
            "REVOKE \"pg_read_all_data\" FROM \"bk_a_login\""
        );
        assert_eq!(extra_grant("function", "x".into(), "y".into(), "z".into()), None);
    }

    #[test]
    fn server_hardening_revokes_public_everywhere() {
        let sql = harden_server("app").unwrap();
        assert_eq!(
            sql,
            [
                "REVOKE ALL ON DATABASE \"app\" FROM PUBLIC",
                "REVOKE ALL ON DATABASE \"postgres\" FROM PUBLIC",
                "REVOKE ALL ON DATABASE \"template1\" FROM PUBLIC",
                "REVOKE CREATE ON SCHEMA public FROM PUBLIC"
            ]
        );
    }
}
