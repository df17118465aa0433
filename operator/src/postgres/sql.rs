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
    // The planner statistics views check column privileges only: a table a tenant granted to PUBLIC would show
    // its most common values to every other tenant, although its schema is closed to them. Closed for PUBLIC in
    // the shared database; the planner reads `pg_statistic` directly and is unaffected.
    out.push(format!("REVOKE SELECT ON {STATISTICS_VIEWS} FROM PUBLIC"));
    // The shared database name comes from configuration; check it like any other identifier.
    ident(shared_database)?;
    Ok(out)
}

/// The statistics views closed to PUBLIC in the shared database.
pub const STATISTICS_VIEWS: &str =
    "pg_catalog.pg_stats, pg_catalog.pg_stats_ext, pg_catalog.pg_stats_ext_exprs";

/// What PUBLIC can still do after [`harden_server`], in the connected (shared) database and on the databases
/// `$1`: each row one right the hardening meant to take away. A superuser admin leaves none; an admin that is not
/// one (CREATEROLE and CREATEDB, as on managed services) owns neither `postgres`, `template1` and the catalog, nor,
/// before PostgreSQL 15, schema `public`, so its REVOKEs there only warn.
pub const HARDENING_GAPS_QUERY: &str = "\
SELECT 'PUBLIC may connect to database ' || d.datname FROM pg_database d
  WHERE d.datname = ANY($1::text[]) AND has_database_privilege('public', d.oid, 'CONNECT')
UNION ALL
SELECT 'PUBLIC may create in schema public' FROM pg_namespace n
  WHERE n.nspname = 'public' AND has_schema_privilege('public', n.oid, 'CREATE')
UNION ALL
SELECT 'PUBLIC may read ' || c.relname FROM pg_class c
  WHERE c.oid IN ('pg_catalog.pg_stats'::regclass, 'pg_catalog.pg_stats_ext'::regclass,
                  'pg_catalog.pg_stats_ext_exprs'::regclass)
    AND has_table_privilege('public', c.oid, 'SELECT')
ORDER BY 1";

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

/// The attributes only a superuser may name in ALTER ROLE (since PostgreSQL 16 even to turn them off).
const SUPERUSER_ATTRIBUTES: &str = " NOSUPERUSER NOREPLICATION NOBYPASSRLS";

/// The login role's attributes without touching its password (drift repair of the attributes). `superuser`:
/// whether the admin is one and may reset SUPERUSER, REPLICATION and BYPASSRLS too.
pub fn reset_login_attributes(
    login: &str,
    connection_limit: i32,
    superuser: bool,
) -> Result<String, SqlError> {
    if !(1..=1000).contains(&connection_limit) {
        return Err(SqlError::ConnectionLimit(connection_limit));
    }
    let privileged = if superuser { SUPERUSER_ATTRIBUTES } else { "" };
    Ok(format!(
        "ALTER ROLE {} LOGIN NOCREATEDB NOCREATEROLE NOINHERIT{privileged} CONNECTION LIMIT {connection_limit} VALID UNTIL 'infinity'",
        ident(login)?
    ))
}

/// The owner role's attributes (drift repair); `superuser` as for [`reset_login_attributes`].
pub fn reset_owner_attributes(owner: &str, superuser: bool) -> Result<String, SqlError> {
    let privileged = if superuser { SUPERUSER_ATTRIBUTES } else { "" };
    Ok(format!(
        "ALTER ROLE {} NOLOGIN NOCREATEDB NOCREATEROLE NOINHERIT{privileged}",
        ident(owner)?
    ))
}

/// Makes the (non-superuser) administrator a member of a tenant role, with INHERIT and SET where the server
/// distinguishes them (PostgreSQL 16 and later).
pub fn grant_to_admin(role: &str, with_options: bool) -> Result<String, SqlError> {
    let options = if with_options {
        " WITH INHERIT TRUE, SET TRUE"
    } else {
        ""
    };
    Ok(format!("GRANT {} TO CURRENT_USER{options}", ident(role)?))
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
WITH r AS (SELECT oid, rolname FROM pg_roles WHERE rolname = ANY($1::text[])),
-- Where the roles appear in an ACL of this database, from the role-indexed pg_shdepend rather than a scan of
-- every relation's ACL.
mentioned AS (
  SELECT s.classid, s.objid FROM pg_shdepend s
   WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid IN (SELECT oid FROM r) AND s.deptype = 'a'
     AND s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database()))
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
  CROSS JOIN LATERAL (SELECT c.relacl
                      UNION ALL
                      SELECT a.attacl FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attacl IS NOT NULL) x(acl)
  CROSS JOIN LATERAL aclexplode(x.acl) a JOIN r ON a.grantee = r.oid
  WHERE c.oid IN (SELECT objid FROM mentioned WHERE classid = 'pg_class'::regclass) AND n.nspname <> $3::text";

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

/// An object a tenant's roles own, as named in a grant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Owned {
    /// A table, view, materialized view, foreign or partitioned table (column grants are taken back with it).
    Table {
        /// Its schema.
        schema: String,
        /// Its name.
        name: String,
    },
    /// A sequence.
    Sequence {
        /// Its schema.
        schema: String,
        /// Its name.
        name: String,
    },
    /// A schema.
    Schema {
        /// Its name.
        name: String,
    },
    /// A database.
    Database {
        /// Its name.
        name: String,
    },
    /// A function, procedure or aggregate.
    Routine {
        /// Its schema.
        schema: String,
        /// Its name.
        name: String,
        /// Its argument types, as `pg_get_function_identity_arguments` prints them.
        args: String,
    },
    /// A type, domain, enum, range or standalone composite type.
    Type {
        /// Its schema.
        schema: String,
        /// Its name.
        name: String,
    },
    /// A large object.
    LargeObject {
        /// Its OID.
        oid: u32,
    },
    /// The default privileges of a role for new objects of one kind, everywhere or in one schema.
    Defaults {
        /// The role whose new objects they apply to.
        role: String,
        /// The schema, or none for the role's defaults everywhere.
        schema: Option<String>,
        /// The kind of objects: `TABLES`, `SEQUENCES`, `FUNCTIONS`, `TYPES`, `SCHEMAS` or `LARGE OBJECTS`.
        objects: &'static str,
    },
}

/// A grant on an object a tenant's roles own, to PUBLIC or to a role outside the tenant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ForeignGrant {
    /// What was granted on.
    pub object: Owned,
    /// The role that made the grant; only it can take it back.
    pub grantor: String,
    /// Who received it; none for PUBLIC.
    pub grantee: Option<String>,
}

/// The keyword of a `pg_default_acl.defaclobjtype`.
fn default_objects(objtype: &str) -> Option<&'static str> {
    Some(match objtype {
        "r" => "TABLES",
        "S" => "SEQUENCES",
        "f" => "FUNCTIONS",
        "T" => "TYPES",
        "n" => "SCHEMAS",
        "L" => "LARGE OBJECTS",
        _ => return None,
    })
}

impl ForeignGrant {
    /// The statement that takes it back: run as the grantor (the only role whose grant it is), with CASCADE
    /// so that whatever the grantee passed on with a grant option goes too. Default privileges are changed for
    /// their role directly.
    pub fn revoke(&self) -> Result<String, SqlError> {
        let q = |n: &str| escape_identifier(n);
        let grantee = self.grantee.as_deref().map_or_else(|| "PUBLIC".to_owned(), q);
        let on = match &self.object {
            Owned::Defaults {
                role,
                schema,
                objects,
            } => {
                let within = schema
                    .as_deref()
                    .map(|s| format!(" IN SCHEMA {}", q(s)))
                    .unwrap_or_default();
                return Ok(format!(
                    "ALTER DEFAULT PRIVILEGES FOR ROLE {}{within} REVOKE ALL ON {objects} FROM {grantee}",
                    ident(role)?
                ));
            }
            Owned::Table { schema, name } => format!("TABLE {}.{}", q(schema), q(name)),
            Owned::Sequence { schema, name } => format!("SEQUENCE {}.{}", q(schema), q(name)),
            Owned::Schema { name } => format!("SCHEMA {}", q(name)),
            Owned::Database { name } => format!("DATABASE {}", q(name)),
            // The argument list comes from the server's own formatting of the catalog, not from a tenant string.
            Owned::Routine { schema, name, args } => format!("ROUTINE {}.{}({args})", q(schema), q(name)),
            Owned::Type { schema, name } => format!("TYPE {}.{}", q(schema), q(name)),
            Owned::LargeObject { oid } => format!("LARGE OBJECT {oid}"),
        };
        Ok(format!(
            "SET ROLE {}; REVOKE ALL ON {on} FROM {grantee} CASCADE; RESET ROLE",
            ident(&self.grantor)?
        ))
    }
}

impl std::fmt::Display for Owned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owned::Table { schema, name } => write!(f, "table {schema}.{name}"),
            Owned::Sequence { schema, name } => write!(f, "sequence {schema}.{name}"),
            Owned::Schema { name } => write!(f, "schema {name}"),
            Owned::Database { name } => write!(f, "database {name}"),
            Owned::Routine { schema, name, args } => write!(f, "function {schema}.{name}({args})"),
            Owned::Type { schema, name } => write!(f, "type {schema}.{name}"),
            Owned::LargeObject { oid } => write!(f, "large object {oid}"),
            Owned::Defaults {
                role,
                schema,
                objects,
            } => {
                write!(f, "default privileges of {role} on {}", objects.to_lowercase())?;
                match schema {
                    Some(s) => write!(f, " in schema {s}"),
                    None => Ok(()),
                }
            }
        }
    }
}

impl std::fmt::Display for ForeignGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} to {}",
            self.object,
            self.grantee.as_deref().unwrap_or("PUBLIC")
        )
    }
}

/// Finds, in the connected database, every grant on an object owned by one of `$1` (a tenant's role names) to
/// PUBLIC or to a role not in `$1`: tables, views and sequences (and their columns), schemas, databases,
/// functions, types, large objects and default privileges. Implicit grants count: a function's or type's
/// default ACL (no explicit one yet) gives PUBLIC EXECUTE or USAGE, a database's gives PUBLIC CONNECT and TEMP,
/// and a role without its own function or type defaults hands PUBLIC those rights on every new object.
/// Array types and table row types are left out (their privileges are their element's or table's).
/// Columns: kind, schema, name, argument types, grantor, grantee (NULL for PUBLIC), the object's owner.
pub const FOREIGN_GRANTS_QUERY: &str = "\
WITH t AS (SELECT oid FROM pg_roles WHERE rolname = ANY($1::text[])),
-- What the roles own, from the role-indexed pg_shdepend (this database's objects and the shared databases);
-- it lists exactly the objects that carry their own ACL, not indexes, TOAST tables, row or array types.
owned AS (
  SELECT s.classid, s.objid FROM pg_shdepend s
   WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid IN (SELECT oid FROM t) AND s.deptype = 'o'
     AND s.dbid IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))),
acl(kind, schema, name, args, grantor, grantee, owner) AS (
  SELECT CASE c.relkind WHEN 'S' THEN 'sequence' ELSE 'table' END, n.nspname, c.relname, '', e.grantor, e.grantee,
         c.relowner
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    CROSS JOIN LATERAL (SELECT c.relacl
                        UNION ALL
                        SELECT a.attacl FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attacl IS NOT NULL) x(acl)
    CROSS JOIN LATERAL aclexplode(x.acl) e
    WHERE c.oid IN (SELECT objid FROM owned WHERE classid = 'pg_class'::regclass)
  UNION ALL
  SELECT 'schema', '', n.nspname, '', e.grantor, e.grantee, n.nspowner
    FROM pg_namespace n CROSS JOIN LATERAL aclexplode(n.nspacl) e
    WHERE n.oid IN (SELECT objid FROM owned WHERE classid = 'pg_namespace'::regclass)
  UNION ALL
  SELECT 'database', '', d.datname, '', e.grantor, e.grantee, d.datdba
    FROM pg_database d CROSS JOIN LATERAL aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) e
    WHERE d.oid IN (SELECT objid FROM owned WHERE classid = 'pg_database'::regclass)
  UNION ALL
  SELECT 'routine', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), e.grantor, e.grantee,
         p.proowner
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    CROSS JOIN LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) e
    WHERE p.oid IN (SELECT objid FROM owned WHERE classid = 'pg_proc'::regclass)
  UNION ALL
  SELECT 'type', n.nspname, y.typname, '', e.grantor, e.grantee, y.typowner
    FROM pg_type y JOIN pg_namespace n ON n.oid = y.typnamespace
    LEFT JOIN pg_class r ON r.oid = y.typrelid
    CROSS JOIN LATERAL aclexplode(coalesce(y.typacl, acldefault('T', y.typowner))) e
    WHERE y.oid IN (SELECT objid FROM owned WHERE classid = 'pg_type'::regclass)
      AND y.typtype IN ('c', 'd', 'e', 'r', 'm') AND (y.typrelid = 0 OR r.relkind = 'c')
  UNION ALL
  SELECT 'large object', '', l.oid::text, '', e.grantor, e.grantee, l.lomowner
    FROM pg_largeobject_metadata l CROSS JOIN LATERAL aclexplode(l.lomacl) e
    WHERE l.oid IN (SELECT objid FROM owned WHERE classid = 'pg_largeobject'::regclass)
  UNION ALL
  SELECT 'defaults ' || d.defaclobjtype::text, coalesce(n.nspname, ''), pg_get_userbyid(d.defaclrole), '',
         e.grantor, e.grantee, d.defaclrole
    FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace
    CROSS JOIN LATERAL aclexplode(d.defaclacl) e
    WHERE d.oid IN (SELECT objid FROM owned WHERE classid = 'pg_default_acl'::regclass)
  UNION ALL
  SELECT 'defaults ' || o.objtype, '', r.rolname, '', r.oid, 0::oid, r.oid
    FROM pg_roles r CROSS JOIN (VALUES ('f'), ('T')) o(objtype)
    WHERE r.oid IN (SELECT oid FROM t) AND NOT EXISTS (
      SELECT 1 FROM pg_default_acl d
        WHERE d.defaclrole = r.oid AND d.defaclnamespace = 0 AND d.defaclobjtype::text = o.objtype)
)
SELECT DISTINCT kind, schema::text, name::text, args, pg_get_userbyid(grantor)::text,
       CASE WHEN grantee = 0 THEN NULL ELSE pg_get_userbyid(grantee)::text END, pg_get_userbyid(owner)::text
  FROM acl WHERE grantee = 0 OR grantee NOT IN (SELECT oid FROM t)
  ORDER BY 1, 2, 3, 4";

/// Sessions of one tenant's role holding a lock, in the connected database, on a relation that another tenant's
/// role owns. A tenant has no privilege on another's relations, so no legitimate statement leaves such a lock:
/// it comes from a catalog function that locks a relation named by OID before checking privileges (`nextval`
/// of another tenant's table, `satisfies_hash_partition`, `pg_get_viewdef`, ...), and while the session's
/// transaction stays open the other tenant's DDL waits and its queries queue behind. Tenants are told apart by
/// Bulkhead's role comment (`managed by bulkhead: <place>`). One row per session. Columns: pid, the session's
/// role, the relations as `schema.name, ...`, a role owning one of them.
pub const CROSS_TENANT_LOCKS_QUERY: &str = "\
WITH b AS (
  SELECT r.oid, r.rolname, d.description AS marker FROM pg_roles r
    JOIN pg_shdescription d ON d.objoid = r.oid AND d.classoid = 'pg_authid'::regclass
   WHERE d.description LIKE 'managed by bulkhead: %')
SELECT l.pid, holder.rolname::text,
       string_agg(DISTINCT n.nspname::text || '.' || c.relname::text, ', '), min(owner.rolname)::text
  FROM pg_locks l
  JOIN pg_stat_activity a ON a.pid = l.pid
  JOIN b holder ON holder.oid = a.usesysid
  JOIN pg_class c ON c.oid = l.relation
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN b owner ON owner.oid = c.relowner
 WHERE l.locktype = 'relation' AND l.granted
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND holder.marker <> owner.marker
 GROUP BY l.pid, holder.rolname
 ORDER BY 1";

/// Turns a row of [`FOREIGN_GRANTS_QUERY`] into a [`ForeignGrant`]; `None` for a kind this version of Bulkhead
/// does not know.
pub fn foreign_grant(
    kind: &str,
    schema: String,
    name: String,
    args: String,
    grantor: String,
    grantee: Option<String>,
) -> Option<ForeignGrant> {
    let object = match kind {
        "table" => Owned::Table { schema, name },
        "sequence" => Owned::Sequence { schema, name },
        "schema" => Owned::Schema { name },
        "database" => Owned::Database { name },
        "routine" => Owned::Routine { schema, name, args },
        "type" => Owned::Type { schema, name },
        "large object" => Owned::LargeObject {
            oid: name.parse().ok()?,
        },
        other => Owned::Defaults {
            objects: default_objects(other.strip_prefix("defaults ")?)?,
            schema: (!schema.is_empty()).then_some(schema),
            role: name,
        },
    };
    Some(ForeignGrant {
        object,
        grantor,
        grantee,
    })
}

/// Whether role `$2` holds CONNECT on database `$1` by the grant [`connect_grant`] makes: its own entry, granted by
/// the database's owner (as every GRANT by the owner or a superuser is). What PUBLIC may do does not count: the
/// hardening takes that away. `aclcontains` reads the access list once; `aclexplode` would read it again for
/// every entry it returns, which at thousands of tenants costs more than the GRANT it saves.
pub const CONNECT_HELD_QUERY: &str = "\
SELECT EXISTS (
  SELECT 1 FROM pg_database d, pg_roles r
   WHERE d.datname = $1 AND r.rolname = $2
     AND aclcontains(d.datacl, makeaclitem(r.oid, d.datdba, 'CONNECT', false)))";

/// The login role's right to connect to the database it works in. Every GRANT rewrites the database's whole
/// access list, which in a shared database holds one entry per tenant; so it runs only when
/// [`CONNECT_HELD_QUERY`] says the grant is missing, and a resync of N tenants does not write N×N entries.
pub fn connect_grant(database: &str, login: &str) -> Result<String, SqlError> {
    Ok(format!(
        "GRANT CONNECT ON DATABASE {} TO {}",
        ident(database)?,
        ident(login)?
    ))
}

/// Schema isolation: the schema, owned by the owner role; the login role gets USAGE and DML on it and on
/// everything the owner creates in it later; its search_path is pinned to it in the shared database. (The right
/// to connect is [`connect_grant`].)
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
        // New functions and types start without PUBLIC's implicit EXECUTE and USAGE (the grant sweep would
        // take them back anyway); the login role keeps the use of what the owner role makes.
        format!("ALTER DEFAULT PRIVILEGES FOR ROLE {o}, {l} REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC"),
        format!("ALTER DEFAULT PRIVILEGES FOR ROLE {o}, {l} REVOKE USAGE ON TYPES FROM PUBLIC"),
        format!("ALTER DEFAULT PRIVILEGES FOR ROLE {o} GRANT EXECUTE ON FUNCTIONS TO {l}"),
        format!("ALTER DEFAULT PRIVILEGES FOR ROLE {o} GRANT USAGE ON TYPES TO {l}"),
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
        assert!(grants.iter().all(|g| !g.contains("CONNECT")), "{grants:?}");
        assert_eq!(
            connect_grant("app", "l;x").unwrap(),
            "GRANT CONNECT ON DATABASE \"app\" TO \"l;x\""
        );
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
        let sql = reset_login_attributes("bk_a_login", 20, true).unwrap();
        assert!(!sql.contains("PASSWORD"), "{sql}");
        assert!(
            sql.contains("NOSUPERUSER") && sql.contains("CONNECTION LIMIT 20"),
            "{sql}"
        );
        // A non-superuser admin may not name SUPERUSER, REPLICATION or BYPASSRLS at all (PostgreSQL 16+).
        for reset in [
            reset_login_attributes("bk_a_login", 20, false).unwrap(),
            reset_owner_attributes("bk_a_owner", false).unwrap(),
        ] {
            assert!(reset.contains("NOCREATEDB NOCREATEROLE NOINHERIT"), "{reset}");
            for attribute in ["SUPERUSER", "REPLICATION", "BYPASSRLS"] {
                assert!(!reset.contains(attribute), "{reset}");
            }
        }
        assert!(
            reset_owner_attributes("bk_a_owner", true)
                .unwrap()
                .contains("NOBYPASSRLS")
        );
        assert_eq!(
            reset_login_attributes("l", 1001, true),
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
                "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
                "REVOKE SELECT ON pg_catalog.pg_stats, pg_catalog.pg_stats_ext, pg_catalog.pg_stats_ext_exprs \
                 FROM PUBLIC"
            ]
        );
    }

    fn row(kind: &str, schema: &str, name: &str, args: &str, grantee: Option<&str>) -> Option<ForeignGrant> {
        foreign_grant(
            kind,
            schema.into(),
            name.into(),
            args.into(),
            "bk_a_login".into(),
            grantee.map(str::to_owned),
        )
    }

    #[test]
    fn foreign_grants_are_revoked_as_their_grantor_with_cascade() {
        let table = row("table", "bk_a", "pa\"tients", "", None).unwrap();
        assert_eq!(table.to_string(), "table bk_a.pa\"tients to PUBLIC");
        assert_eq!(
            table.revoke().unwrap(),
            "SET ROLE \"bk_a_login\"; REVOKE ALL ON TABLE \"bk_a\".\"pa\"\"tients\" FROM PUBLIC CASCADE; RESET ROLE"
        );
        let sequence = row("sequence", "bk_a", "ids", "", Some("bk_b_login")).unwrap();
        assert_eq!(
            sequence.revoke().unwrap(),
            "SET ROLE \"bk_a_login\"; REVOKE ALL ON SEQUENCE \"bk_a\".\"ids\" FROM \"bk_b_login\" CASCADE; RESET ROLE"
        );
        let routine = row("routine", "bk_a", "total", "integer, text", None).unwrap();
        assert_eq!(
            routine.to_string(),
            "function bk_a.total(integer, text) to PUBLIC"
        );
        assert!(
            routine
                .revoke()
                .unwrap()
                .contains("REVOKE ALL ON ROUTINE \"bk_a\".\"total\"(integer, text) FROM PUBLIC CASCADE")
        );
        let large_object = row("large object", "", "16395", "", Some("bk_b_login")).unwrap();
        assert_eq!(large_object.to_string(), "large object 16395 to bk_b_login");
        assert!(
            large_object
                .revoke()
                .unwrap()
                .contains("REVOKE ALL ON LARGE OBJECT 16395 FROM")
        );
        assert_eq!(row("large object", "", "not-an-oid", "", None), None);
        for (kind, on) in [("type", "TYPE"), ("schema", "SCHEMA"), ("database", "DATABASE")] {
            let grant = row(kind, "bk_a", "x", "", None).unwrap();
            assert!(
                grant.revoke().unwrap().contains(&format!("REVOKE ALL ON {on} ")),
                "{kind}"
            );
        }
        assert_eq!(row("publication", "", "x", "", None), None);
    }

    #[test]
    fn foreign_default_privileges_are_revoked_for_their_role() {
        let everywhere = row("defaults f", "", "bk_a_login", "", None).unwrap();
        assert_eq!(
            everywhere.to_string(),
            "default privileges of bk_a_login on functions to PUBLIC"
        );
        assert_eq!(
            everywhere.revoke().unwrap(),
            "ALTER DEFAULT PRIVILEGES FOR ROLE \"bk_a_login\" REVOKE ALL ON FUNCTIONS FROM PUBLIC"
        );
        let in_schema = row("defaults r", "bk_a", "bk_a_login", "", Some("bk_b_login")).unwrap();
        assert_eq!(
            in_schema.revoke().unwrap(),
            "ALTER DEFAULT PRIVILEGES FOR ROLE \"bk_a_login\" IN SCHEMA \"bk_a\" REVOKE ALL ON TABLES FROM \"bk_b_login\""
        );
        for (code, objects) in [
            ("S", "SEQUENCES"),
            ("T", "TYPES"),
            ("n", "SCHEMAS"),
            ("L", "LARGE OBJECTS"),
        ] {
            let grant = row(&format!("defaults {code}"), "", "bk_a_login", "", None).unwrap();
            assert!(
                grant.revoke().unwrap().contains(&format!(" ON {objects} FROM")),
                "{code}"
            );
        }
        assert_eq!(row("defaults x", "", "bk_a_login", "", None), None);
        // Bulkhead's own names are checked: a role over the limit is refused, not truncated.
        let long = "a".repeat(64);
        let bad = row("defaults f", "", &long, "", None).unwrap();
        assert_eq!(bad.revoke(), Err(SqlError::IdentifierLength(long)));
    }

    #[test]
    fn the_admin_is_granted_set_and_inherit_where_the_server_distinguishes_them() {
        assert_eq!(
            grant_to_admin("bk_a_owner", true).unwrap(),
            "GRANT \"bk_a_owner\" TO CURRENT_USER WITH INHERIT TRUE, SET TRUE"
        );
        assert_eq!(
            grant_to_admin("bk_a_owner", false).unwrap(),
            "GRANT \"bk_a_owner\" TO CURRENT_USER"
        );
    }
}
