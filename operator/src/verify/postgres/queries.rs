//! The catalog reads of the Postgres inspection, each covering every subject at once, and their rows decoded
//! into [`classify`](super::classify)'s facts. Nothing here judges, and nothing writes: the statements run
//! inside the caller's read-only transaction, and every name travels as a bound parameter.

use std::collections::BTreeMap;

use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::{Row, Transaction};

use super::classify::{
    DatabaseFacts, DatabaseReach, FunctionReach, LargeObjectGrant, Membership, ObjectKind, PublicGrant,
    RelationReach, SchemaReach, Scope, Via,
};
use crate::postgres::connect::{Failure, describe};
use crate::postgres::lockdown;
use crate::postgres::provision::RoleRow;
use crate::postgres::sql;

/// Why the server could not be inspected. Messages never carry the DSN or a password.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The admin could not connect to a database.
    #[error("connecting as the admin to database {database}: {message}")]
    Connect {
        /// The database.
        database: String,
        /// How it failed.
        failure: Failure,
        /// The error text (from the server or the connection).
        message: String,
    },
    /// A catalog read failed, or returned a value of an unexpected type.
    #[error("{what} in database {database}: {message}")]
    Query {
        /// The database.
        database: String,
        /// What was being read.
        what: &'static str,
        /// The error text.
        message: String,
    },
}

impl InspectError {
    /// A fixed category for logs and metrics labels.
    pub fn category(&self) -> &'static str {
        match self {
            InspectError::Connect { .. } => "connect",
            InspectError::Query { .. } => "query",
        }
    }
}

/// The subjects' login roles (`l`: with their owner roles and places; `$1`, `$2`, `$3` are parallel arrays),
/// every role each login role reaches through memberships, itself included (`reach`, and `lr` with the login
/// role's columns), and Bulkhead's roles (`bk`: the subjects' and any other carrying Bulkhead's comment, whose
/// prefix is `$4`). Every query below but the server-wide ones starts with it.
const SUBJECTS: &str = "\
WITH RECURSIVE
l(login, login_name, owner, place) AS (
  SELECT r.oid, s.login_name, o.oid, s.place
    FROM unnest($1::text[], $2::text[], $3::text[]) AS s(login_name, owner_name, place)
    JOIN pg_roles r ON r.rolname = s.login_name
    LEFT JOIN pg_roles o ON o.rolname = s.owner_name),
reach(login, role) AS (
  SELECT login, login FROM l
  UNION
  SELECT reach.login, m.roleid FROM reach JOIN pg_auth_members m ON m.member = reach.role),
lr(login, login_name, owner, place, role) AS (
  SELECT l.login, l.login_name, l.owner, l.place, reach.role FROM reach JOIN l ON l.login = reach.login),
bk(role) AS (
  SELECT login FROM l
  UNION SELECT owner FROM l WHERE owner IS NOT NULL
  UNION SELECT d.objoid FROM pg_shdescription d
         WHERE d.classoid = 'pg_authid'::regclass AND starts_with(d.description, $4::text))";

/// An ACL entry `e` as the report shows it: `PRIVILEGE[ (column)] to GRANTEE by GRANTOR`.
const ENTRY_TEXT: &str = "e.privilege || coalesce(' (' || e.col || ')', '') || ' to ' \
     || CASE WHEN e.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(e.grantee)::text END \
     || ' by ' || pg_get_userbyid(e.grantor)::text";

/// A reach query: which objects (`objects`, a query whose columns are `columns`, starting with `oid` and
/// `owner`, and `acl`) each login role may hold privileges on. Candidates are the pairs of login role and object
/// that an ACL entry (from `acls`, rows `(col, acl)` of object `o`) for PUBLIC or for a role the login role
/// reaches, or the ownership of such a role, connects; every join is on equality, so the work grows with the
/// entries there are, never with login roles times objects. `held` groups them by login role and object, with
/// the entries that give them (`via`), whether one names a role rather than PUBLIC (`through_role`) and whether
/// the login role reaches the owner (`through_owner`), after `exclude` (over the login role's `login`,
/// `own_owner`, `place`, `login_name` and the object's columns) drops its own objects. `judge` reads `held` and
/// confirms each pair with `has_*_privilege`.
fn reach_query(objects: &str, columns: &[&str], acls: &str, exclude: &str, judge: &str) -> String {
    let plain = columns.join(", ");
    let of = |alias: &str| {
        columns
            .iter()
            .map(|c| format!("{alias}.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (e, o) = (of("e"), of("o"));
    format!(
        "{SUBJECTS},
obj AS ({objects}),
entry AS (
  SELECT {o}, x.col, a.grantor, a.grantee, a.privilege_type AS privilege
    FROM obj o CROSS JOIN LATERAL ({acls}) x(col, acl) CROSS JOIN LATERAL aclexplode(x.acl) a),
cand AS (
  SELECT l.login, l.login_name, l.owner AS own_owner, l.place, {e}, {ENTRY_TEXT} AS via,
         false AS through_role, false AS through_owner
    FROM entry e CROSS JOIN l WHERE e.grantee = 0
  UNION ALL
  SELECT r.login, r.login_name, r.owner, r.place, {e}, {ENTRY_TEXT}, true, false
    FROM entry e JOIN lr r ON r.role = e.grantee
  UNION ALL
  SELECT r.login, r.login_name, r.owner, r.place, {o}, NULL, false, true
    FROM obj o JOIN lr r ON r.role = o.owner),
held AS MATERIALIZED (
  SELECT login, login_name, {plain},
         coalesce(array_agg(DISTINCT via ORDER BY via) FILTER (WHERE via IS NOT NULL), '{{}}') AS via,
         bool_or(through_role) AS through_role, bool_or(through_owner) AS through_owner
    FROM cand WHERE {exclude}
   GROUP BY login, login_name, {plain}),
{judge}"
    )
}

/// Databases (that accept connections) each login role may connect to or create temporary objects in.
fn database_reach_query() -> String {
    reach_query(
        "SELECT d.oid, d.datdba AS owner, d.datname::text AS name, coalesce(d.datacl, acldefault('d', d.datdba)) AS acl
           FROM pg_database d WHERE d.datallowconn",
        &["oid", "owner", "name"],
        "SELECT NULL::text, o.acl",
        "true",
        "judged AS MATERIALIZED (
  SELECT h.*, has_database_privilege(h.login, h.oid, 'CONNECT') AS may_connect,
         has_database_privilege(h.login, h.oid, 'TEMPORARY') AS may_temp
    FROM held h)
SELECT login_name, name, may_connect, may_temp, via, through_role, through_owner
  FROM judged WHERE may_connect OR may_temp
 ORDER BY 1, 2",
    )
}

/// Schemas of the connected database other than the system ones and the login role's own where it has USAGE
/// or CREATE. `$5`: the login role whose database this is (none in the shared database), left out.
fn schema_reach_query() -> String {
    reach_query(
        "SELECT n.oid, n.nspowner AS owner, n.nspname::text AS name,
                coalesce(n.nspacl, acldefault('n', n.nspowner)) AS acl
           FROM pg_namespace n
          WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'",
        &["oid", "owner", "name"],
        "SELECT NULL::text, o.acl",
        "name <> place AND owner NOT IN (login, coalesce(own_owner, '0'::oid))
     AND login_name IS DISTINCT FROM $5::text",
        "judged AS MATERIALIZED (
  SELECT h.*, has_schema_privilege(h.login, h.oid, 'USAGE') AS may_use,
         has_schema_privilege(h.login, h.oid, 'CREATE') AS may_create
    FROM held h)
SELECT login_name, name, pg_get_userbyid(owner)::text, owner IN (SELECT role FROM bk), may_use, may_create, via,
       through_role, through_owner
  FROM judged WHERE may_use OR may_create
 ORDER BY 1, 2",
    )
}

/// Tables, views, materialized views, foreign tables and sequences of the subjects in the connected database
/// (in their places, owned by Bulkhead's roles, or anywhere outside the system schemas when `$5`: the database
/// is a subject's own) that a login role other than their own holds privileges on: `$7` are the table
/// privileges this server knows; column privileges count. `$6`: the login role whose database this is.
fn relation_reach_query() -> String {
    reach_query(
        "SELECT c.oid, c.relowner AS owner, n.nspname::text AS schema, c.relname::text AS name,
                c.relkind::text AS kind, c.relacl AS acl
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
            AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'
            AND ($5::bool OR n.nspname IN (SELECT place FROM l) OR c.relowner IN (SELECT role FROM bk))",
        &["oid", "owner", "schema", "name", "kind"],
        "SELECT NULL::text, o.acl
         UNION ALL
         SELECT a.attname::text, a.attacl FROM pg_attribute a WHERE a.attrelid = o.oid AND a.attacl IS NOT NULL",
        "schema <> place AND owner NOT IN (login, coalesce(own_owner, '0'::oid))
     AND login_name IS DISTINCT FROM $6::text",
        "judged AS MATERIALIZED (
  SELECT h.*,
         ARRAY(SELECT p FROM unnest(CASE WHEN h.kind = 'S' THEN ARRAY['USAGE', 'SELECT', 'UPDATE']
                                         ELSE $7::text[] END) AS p
                WHERE CASE WHEN h.kind = 'S' THEN has_sequence_privilege(h.login, h.oid, p)
                           ELSE has_table_privilege(h.login, h.oid, p) END)
         || ARRAY(SELECT p || ' (columns)' FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'REFERENCES']) AS p
                   WHERE h.kind <> 'S' AND NOT has_table_privilege(h.login, h.oid, p)
                     AND has_any_column_privilege(h.login, h.oid, p)) AS privileges
    FROM held h)
SELECT login_name, schema, name, kind, pg_get_userbyid(owner)::text, owner IN (SELECT role FROM bk), privileges,
       via, through_role, through_owner
  FROM judged WHERE cardinality(privileges) > 0
 ORDER BY 1, 2, 3",
    )
}

/// Grants on large objects of the connected database owned by a subject's role, to anyone but their owner.
fn large_objects_query() -> String {
    format!(
        "{SUBJECTS}
SELECT lo.oid, pg_get_userbyid(lo.lomowner)::text,
       CASE WHEN e.grantee = 0 THEN NULL ELSE pg_get_userbyid(e.grantee)::text END,
       e.grantee IN (SELECT role FROM bk), e.privilege_type, pg_get_userbyid(e.grantor)::text
  FROM pg_largeobject_metadata lo CROSS JOIN LATERAL aclexplode(lo.lomacl) e
 WHERE lo.lomowner IN (SELECT login FROM l UNION SELECT owner FROM l WHERE owner IS NOT NULL)
   AND e.grantee <> lo.lomowner
 ORDER BY 1, 3"
    )
}

/// Every role each login role is a member of, directly or through other memberships, with what makes it
/// powerful: predefined (below the first normal OID), attributes, Bulkhead's, or owning or granted anything
/// in any database (`pg_shdepend`).
fn memberships_query() -> String {
    format!(
        "{SUBJECTS}
SELECT l.login_name, g.rolname::text,
       EXISTS (SELECT 1 FROM pg_auth_members a WHERE a.member = l.login AND a.roleid = g.oid),
       g.oid < '16384'::oid, g.rolsuper, g.rolcreaterole, g.rolcreatedb, g.rolreplication, g.rolbypassrls,
       g.rolcanlogin, g.oid IN (SELECT role FROM bk),
       EXISTS (SELECT 1 FROM pg_shdepend s WHERE s.refclassid = 'pg_authid'::regclass AND s.refobjid = g.oid)
  FROM reach r JOIN l ON l.login = r.login JOIN pg_roles g ON g.oid = r.role
 WHERE r.role <> r.login
 ORDER BY 1, 2"
    )
}

/// The attributes of the roles `$1`, as [`RoleRow`] has them.
const ROLES_QUERY: &str = "\
SELECT rolname::text, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, rolbypassrls,
       rolconnlimit, coalesce(rolvaliduntil <> 'infinity', false), shobj_description(oid, 'pg_authid')
  FROM pg_roles WHERE rolname = ANY($1::text[])";

/// What PUBLIC holds of the server's hardening in the connected database: CONNECT and TEMPORARY on the
/// databases `$1`, CREATE on schema `public`, SELECT on the views `$2` and EXECUTE on the functions `$3`, one
/// row per object and privilege, with the grantors of PUBLIC's entries and whether the admin could revoke every
/// one of them (it is a superuser, or has the privileges of the grantor, as the REVOKE of the hardening needs).
const PUBLIC_GRANTS_QUERY: &str = "\
WITH target(kind, name, privilege, acl) AS (
  SELECT 'database'::text, d.datname::text, p.privilege, coalesce(d.datacl, acldefault('d', d.datdba))
    FROM pg_database d CROSS JOIN (VALUES ('CONNECT'::text), ('TEMPORARY')) AS p(privilege)
   WHERE d.datname = ANY($1::text[])
  UNION ALL
  SELECT 'schema', n.nspname::text, 'CREATE', coalesce(n.nspacl, acldefault('n', n.nspowner))
    FROM pg_namespace n WHERE n.nspname = 'public'
  UNION ALL
  SELECT 'view', v.name, 'SELECT', coalesce(c.relacl, acldefault('r', c.relowner))
    FROM unnest($2::text[]) AS v(name) JOIN pg_class c ON c.oid = to_regclass(v.name)
  UNION ALL
  SELECT 'function', f.signature, 'EXECUTE', coalesce(p.proacl, acldefault('f', p.proowner))
    FROM unnest($3::text[]) AS f(signature) JOIN pg_proc p ON p.oid = to_regprocedure(f.signature))
SELECT t.kind, t.name, t.privilege, g.entries > 0, coalesce(g.grantors, ''), coalesce(g.revocable, true)
  FROM target t
 CROSS JOIN LATERAL (
   SELECT count(*) AS entries, string_agg(DISTINCT pg_get_userbyid(e.grantor)::text, ', ') AS grantors,
          bool_and((SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
                   OR pg_has_role(current_user, e.grantor, 'USAGE')) AS revocable
     FROM aclexplode(t.acl) e WHERE e.grantee = 0 AND e.privilege_type = t.privilege) g
 ORDER BY 1, 2, 3";

/// Whether each login role `$1` can execute each function `$2` (signatures; those missing here are skipped).
const FUNCTION_REACH_QUERY: &str = "\
SELECT x.login, f.signature, has_function_privilege(r.oid, p.oid, 'EXECUTE')
  FROM unnest($1::text[]) AS x(login) JOIN pg_roles r ON r.rolname = x.login
 CROSS JOIN unnest($2::text[]) AS f(signature) JOIN pg_proc p ON p.oid = to_regprocedure(f.signature)
 ORDER BY 1, 2";

/// The admin and the server.
const SERVER_QUERY: &str = "\
SELECT rolsuper, current_setting('server_version_num')::int FROM pg_roles WHERE rolname = current_user";

/// Every database of the server.
const DATABASES_QUERY: &str = "SELECT datname::text FROM pg_database ORDER BY 1";

/// The table privileges of every supported version; PostgreSQL 17 added MAINTAIN.
const TABLE_PRIVILEGES: [&str; 7] = [
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "TRUNCATE",
    "REFERENCES",
    "TRIGGER",
];

/// The error of a read, with the server's message (never a DSN).
pub(super) fn query_error(database: &str, what: &'static str, err: &tokio_postgres::Error) -> InspectError {
    InspectError::Query {
        database: database.to_owned(),
        what,
        message: describe(err),
    }
}

/// The admin and the server, as [`SERVER_QUERY`] reads them.
#[derive(Debug, Clone, Copy)]
pub(super) struct About {
    /// Whether the admin is a superuser.
    pub superuser: bool,
    /// The server's major version.
    pub major: u32,
}

/// The parameters every database's reads share.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    logins: Vec<String>,
    owners: Vec<String>,
    places: Vec<String>,
    marker: String,
    table_privileges: Vec<String>,
    /// The lock-taking functions the hardening revokes on this server: signature and display name.
    functions: BTreeMap<String, String>,
}

impl Plan {
    /// The parameters for these subjects on a server of PostgreSQL `major`.
    pub fn new(scopes: &[Scope], major: u32) -> Plan {
        let mut table_privileges: Vec<String> = TABLE_PRIVILEGES.iter().map(|p| (*p).to_owned()).collect();
        if major >= 17 {
            table_privileges.push("MAINTAIN".to_owned());
        }
        Plan {
            logins: scopes.iter().map(|s| s.names.login.clone()).collect(),
            owners: scopes.iter().map(|s| s.names.owner.clone()).collect(),
            places: scopes.iter().map(|s| s.names.place.clone()).collect(),
            marker: sql::ROLE_MARKER_PREFIX.to_owned(),
            table_privileges,
            functions: lockdown::revoked_in(major)
                .map(|f| {
                    (
                        f.signature(),
                        format!("pg_catalog.{}({})", f.name, f.args.join(", ")),
                    )
                })
                .collect(),
        }
    }

    fn signatures(&self) -> Vec<String> {
        self.functions.keys().cloned().collect()
    }

    fn display(&self, signature: &str) -> String {
        self.functions
            .get(signature)
            .cloned()
            .unwrap_or_else(|| signature.to_owned())
    }
}

/// What to read inside one database.
#[derive(Debug)]
pub(super) struct Inside<'a> {
    /// The login role whose own database this is; none for the shared database.
    pub own_login: Option<&'a String>,
    /// The databases whose PUBLIC CONNECT and TEMPORARY are read from here (the catalog is shared).
    pub hardened: &'a [String],
    /// Whether the statistics views are hardened here (the shared database).
    pub statistics_views: bool,
    /// The login roles whose database this is, for the lock-taking functions.
    pub function_logins: &'a [String],
}

/// The reads of one database, inside its read-only transaction.
pub(super) struct Reader<'a> {
    tx: &'a Transaction<'a>,
    database: &'a str,
}

impl std::fmt::Debug for Reader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

/// One column of a row, or the read's error.
fn col<'r, T: FromSql<'r>>(row: &'r Row, index: usize) -> Result<T, tokio_postgres::Error> {
    row.try_get(index)
}

/// The [`Via`] of a reach row whose last three columns are `via`, `through_role` and `through_owner`.
fn via(row: &Row, first: usize) -> Result<Via, tokio_postgres::Error> {
    Ok(Via {
        grants: col(row, first)?,
        through_role: col(row, first + 1)?,
        through_owner: col(row, first + 2)?,
    })
}

impl<'a> Reader<'a> {
    /// Reads through `tx`, connected to `database`.
    pub fn new(tx: &'a Transaction<'a>, database: &'a str) -> Self {
        Reader { tx, database }
    }

    async fn read<T>(
        &self,
        what: &'static str,
        statement: &str,
        params: &[&(dyn ToSql + Sync)],
        decode: impl Fn(&Row) -> Result<T, tokio_postgres::Error>,
    ) -> Result<Vec<T>, InspectError> {
        let rows = self
            .tx
            .query(statement, params)
            .await
            .map_err(|e| query_error(self.database, what, &e))?;
        rows.iter()
            .map(|row| decode(row).map_err(|e| query_error(self.database, what, &e)))
            .collect()
    }

    /// The admin's superuser flag and the server's major version.
    pub async fn server(&self) -> Result<About, InspectError> {
        let what = "reading the admin's role";
        let rows = self
            .read(what, SERVER_QUERY, &[], |row| {
                Ok((col::<bool>(row, 0)?, col::<i32>(row, 1)?))
            })
            .await?;
        let (superuser, version) = rows.first().copied().ok_or_else(|| InspectError::Query {
            database: self.database.to_owned(),
            what,
            message: "the admin's role is not in pg_roles".to_owned(),
        })?;
        Ok(About {
            superuser,
            major: u32::try_from(version / 10_000).unwrap_or_default(),
        })
    }

    /// Every database's name.
    pub async fn databases(&self) -> Result<Vec<String>, InspectError> {
        self.read("listing databases", DATABASES_QUERY, &[], |row| col(row, 0))
            .await
    }

    fn subjects<'p>(&self, plan: &'p Plan) -> [&'p (dyn ToSql + Sync); 4] {
        [&plan.logins, &plan.owners, &plan.places, &plan.marker]
    }

    /// The attributes of the subjects' login roles that exist.
    pub async fn roles(&self, plan: &Plan) -> Result<BTreeMap<String, RoleRow>, InspectError> {
        let rows = self
            .read("reading role attributes", ROLES_QUERY, &[&plan.logins], |row| {
                Ok((
                    col::<String>(row, 0)?,
                    RoleRow {
                        flags: [
                            col(row, 1)?,
                            col(row, 2)?,
                            col(row, 3)?,
                            col(row, 4)?,
                            col(row, 5)?,
                            col(row, 6)?,
                            col(row, 7)?,
                        ],
                        connection_limit: col(row, 8)?,
                        expires: col(row, 9)?,
                        comment: col(row, 10)?,
                    },
                ))
            })
            .await?;
        Ok(rows.into_iter().collect())
    }

    /// The login roles' memberships, transitively.
    pub async fn memberships(&self, plan: &Plan) -> Result<Vec<Membership>, InspectError> {
        let attributes = [
            "SUPERUSER",
            "CREATEROLE",
            "CREATEDB",
            "REPLICATION",
            "BYPASSRLS",
            "LOGIN",
        ];
        self.read(
            "reading role memberships",
            &memberships_query(),
            &self.subjects(plan),
            |row| {
                let mut held = Vec::new();
                for (i, name) in attributes.iter().enumerate() {
                    if col::<bool>(row, 4 + i)? {
                        held.push((*name).to_owned());
                    }
                }
                Ok(Membership {
                    login: col(row, 0)?,
                    role: col(row, 1)?,
                    direct: col(row, 2)?,
                    predefined: col(row, 3)?,
                    attributes: held,
                    bulkhead: col(row, 10)?,
                    holds_objects: col(row, 11)?,
                })
            },
        )
        .await
    }

    /// The databases the login roles may connect to or create temporary objects in.
    pub async fn database_reach(&self, plan: &Plan) -> Result<Vec<DatabaseReach>, InspectError> {
        self.read(
            "reading database privileges",
            &database_reach_query(),
            &self.subjects(plan),
            |row| {
                Ok(DatabaseReach {
                    login: col(row, 0)?,
                    database: col(row, 1)?,
                    connect: col(row, 2)?,
                    temporary: col(row, 3)?,
                    via: via(row, 4)?,
                })
            },
        )
        .await
    }

    /// Everything read inside the connected database: PUBLIC's grants, schemas, relations and large objects
    /// reached, and the lock-taking functions.
    pub async fn inside(&self, plan: &Plan, inside: &Inside<'_>) -> Result<DatabaseFacts, InspectError> {
        let database = self.database.to_owned();
        let [logins, owners, places, marker] = self.subjects(plan);
        let own_login: Option<&str> = inside.own_login.map(String::as_str);
        let whole_database = inside.own_login.is_some();
        let views: Vec<String> = if inside.statistics_views {
            sql::STATISTICS_VIEWS
                .split(',')
                .map(|v| v.trim().to_owned())
                .collect()
        } else {
            Vec::new()
        };
        let signatures = plan.signatures();

        let public_grants = self
            .read(
                "reading PUBLIC's grants",
                PUBLIC_GRANTS_QUERY,
                &[&inside.hardened, &views, &signatures],
                |row| {
                    let kind: String = col(row, 0)?;
                    let name: String = col(row, 1)?;
                    let kind = match kind.as_str() {
                        "database" => ObjectKind::Database,
                        "schema" => ObjectKind::Schema,
                        "view" => ObjectKind::View,
                        _ => ObjectKind::Function,
                    };
                    Ok(PublicGrant {
                        database: if kind == ObjectKind::Database {
                            name.clone()
                        } else {
                            database.clone()
                        },
                        display: if kind == ObjectKind::Function {
                            plan.display(&name)
                        } else {
                            name.clone()
                        },
                        kind,
                        name,
                        privilege: col(row, 2)?,
                        held: col(row, 3)?,
                        grantors: col(row, 4)?,
                        revocable: col(row, 5)?,
                    })
                },
            )
            .await?;
        let schemas = self
            .read(
                "reading schema privileges",
                &schema_reach_query(),
                &[logins, owners, places, marker, &own_login],
                |row| {
                    Ok(SchemaReach {
                        database: database.clone(),
                        login: col(row, 0)?,
                        schema: col(row, 1)?,
                        owner: col(row, 2)?,
                        owner_bulkhead: col(row, 3)?,
                        usage: col(row, 4)?,
                        create: col(row, 5)?,
                        via: via(row, 6)?,
                    })
                },
            )
            .await?;
        let relations = self
            .read(
                "reading table and sequence privileges",
                &relation_reach_query(),
                &[
                    logins,
                    owners,
                    places,
                    marker,
                    &whole_database,
                    &own_login,
                    &plan.table_privileges,
                ],
                |row| {
                    Ok(RelationReach {
                        database: database.clone(),
                        login: col(row, 0)?,
                        schema: col(row, 1)?,
                        name: col(row, 2)?,
                        kind: col(row, 3)?,
                        owner: col(row, 4)?,
                        owner_bulkhead: col(row, 5)?,
                        privileges: col(row, 6)?,
                        via: via(row, 7)?,
                    })
                },
            )
            .await?;
        let large_objects = self
            .read(
                "reading large object grants",
                &large_objects_query(),
                &[logins, owners, places, marker],
                |row| {
                    Ok(LargeObjectGrant {
                        database: database.clone(),
                        oid: col(row, 0)?,
                        owner: col(row, 1)?,
                        grantee: col(row, 2)?,
                        grantee_bulkhead: col(row, 3)?,
                        privilege: col(row, 4)?,
                        grantor: col(row, 5)?,
                    })
                },
            )
            .await?;
        let functions = self
            .read(
                "reading function privileges",
                FUNCTION_REACH_QUERY,
                &[&inside.function_logins, &signatures],
                |row| {
                    let signature: String = col(row, 1)?;
                    Ok(FunctionReach {
                        database: database.clone(),
                        login: col(row, 0)?,
                        display: plan.display(&signature),
                        signature,
                        executable: col(row, 2)?,
                    })
                },
            )
            .await?;
        Ok(DatabaseFacts {
            public_grants,
            schemas,
            relations,
            large_objects,
            functions,
        })
    }
}
