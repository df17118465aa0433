//! Judging what the catalog reads found: facts in, checks out, nothing read or written here.
//!
//! Whose an object is: a database is the subject's whose own database it is; in the shared database, a schema
//! or a relation is the subject's whose place (schema) holds it, else the subject's whose role owns it; an owner
//! carrying Bulkhead's comment but belonging to no listed subject counts as another subject.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bulkhead_crds::v1alpha1::DatabaseIsolation;
use serde_json::{Map, Value, json};

use super::subject::Subject;
use crate::postgres::naming::Names;
use crate::postgres::provision::RoleRow;
use crate::verify::check::{Check, Verdict};

/// The databases a login role may connect to or create temporary objects in.
pub const DATABASES: &str = "postgres.databases";
/// Schemas beyond its own where a login role has USAGE or CREATE.
pub const SCHEMAS: &str = "postgres.schemas";
/// Tables, views and sequences of other subjects a login role holds privileges on.
pub const RELATIONS: &str = "postgres.relations";
/// Large objects of a subject's roles granted to PUBLIC or to roles outside the subject.
pub const LARGE_OBJECTS: &str = "postgres.large_objects";
/// The roles a login role is a member of.
pub const MEMBERSHIPS: &str = "postgres.memberships";
/// What PUBLIC holds of the server's hardening.
pub const PUBLIC_GRANTS: &str = "postgres.public_grants";
/// The lock-taking catalog functions a login role can execute.
pub const LOCK_FUNCTIONS: &str = "postgres.lock_functions";
/// The login role's existence and attributes.
pub const ROLE_ATTRIBUTES: &str = "postgres.role_attributes";
/// The checks every login role gets, one each, in the order they are made.
pub const PER_ROLE: [&str; 7] = [
    ROLE_ATTRIBUTES,
    DATABASES,
    SCHEMAS,
    RELATIONS,
    LARGE_OBJECTS,
    MEMBERSHIPS,
    LOCK_FUNCTIONS,
];

/// How many findings a summary names before it counts the rest.
const NAMED_IN_SUMMARY: usize = 5;

/// The attributes of a login role, in [`RoleRow::flags`] order, and the value provisioning gives each
/// (`LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT`).
const LOGIN_ATTRIBUTES: [(&str, bool); 7] = [
    ("SUPERUSER", false),
    ("INHERIT", false),
    ("CREATEROLE", false),
    ("CREATEDB", false),
    ("LOGIN", true),
    ("REPLICATION", false),
    ("BYPASSRLS", false),
];

/// A subject with its names and the database it lives in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// The Tenant or Customer.
    pub subject: Subject,
    /// Its schema or database and roles.
    pub names: Names,
    /// The shared database (Schema isolation) or its own (Database isolation).
    pub database: String,
}

/// The scopes of `subjects`, each login role once, in the order given.
pub fn scopes(shared_database: &str, subjects: &[Subject]) -> Vec<Scope> {
    let mut seen = BTreeSet::new();
    subjects
        .iter()
        .filter_map(|subject| {
            let names = subject.names();
            if !seen.insert(names.login.clone()) {
                return None;
            }
            let database = match subject.isolation {
                DatabaseIsolation::Schema => shared_database.to_owned(),
                DatabaseIsolation::Database => names.place.clone(),
            };
            Some(Scope {
                subject: subject.clone(),
                names,
                database,
            })
        })
        .collect()
}

/// How a login role comes by a privilege.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Via {
    /// The ACL entries for PUBLIC or for a role it reaches, as `PRIVILEGE[ (column)] to GRANTEE by GRANTOR`.
    pub grants: Vec<String>,
    /// Whether one of them is for a role it reaches rather than PUBLIC.
    pub through_role: bool,
    /// Whether it reaches the object's owner through memberships.
    pub through_owner: bool,
}

impl Via {
    /// Whether PUBLIC's entries are the only way.
    fn only_public(&self) -> bool {
        !self.through_role && !self.through_owner
    }

    fn evidence(&self, owner: Option<&str>) -> Value {
        let mut via = self.grants.clone();
        if self.through_owner
            && let Some(owner) = owner
        {
            via.push(format!("member of the owner {owner}"));
        }
        json!(via)
    }
}

/// A database a login role may connect to or create temporary objects in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseReach {
    /// The login role.
    pub login: String,
    /// The database.
    pub database: String,
    /// CONNECT.
    pub connect: bool,
    /// TEMPORARY.
    pub temporary: bool,
    /// Where it comes from.
    pub via: Via,
}

/// A schema other than the login role's own and the system ones where it has USAGE or CREATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaReach {
    /// The database the schema is in.
    pub database: String,
    /// The login role.
    pub login: String,
    /// The schema.
    pub schema: String,
    /// Its owner.
    pub owner: String,
    /// Whether the owner is one of Bulkhead's roles.
    pub owner_bulkhead: bool,
    /// USAGE.
    pub usage: bool,
    /// CREATE.
    pub create: bool,
    /// Where it comes from.
    pub via: Via,
}

/// A relation of a subject that another subject's login role holds privileges on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationReach {
    /// The database.
    pub database: String,
    /// The login role.
    pub login: String,
    /// The relation's schema.
    pub schema: String,
    /// Its name.
    pub name: String,
    /// Its `relkind`.
    pub kind: String,
    /// Its owner.
    pub owner: String,
    /// Whether the owner is one of Bulkhead's roles.
    pub owner_bulkhead: bool,
    /// The privileges held (`SELECT (columns)` for privileges on some columns only).
    pub privileges: Vec<String>,
    /// Where they come from.
    pub via: Via,
}

/// One ACL entry of a large object owned by a subject's role, for a role other than the owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LargeObjectGrant {
    /// The database.
    pub database: String,
    /// The large object.
    pub oid: u32,
    /// Its owner.
    pub owner: String,
    /// The grantee; none for PUBLIC.
    pub grantee: Option<String>,
    /// Whether the grantee is one of Bulkhead's roles.
    pub grantee_bulkhead: bool,
    /// The privilege.
    pub privilege: String,
    /// Who granted it.
    pub grantor: String,
}

/// A role a login role is a member of, directly or through other memberships.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The login role.
    pub login: String,
    /// The role it is a member of.
    pub role: String,
    /// Whether the membership is granted to the login role itself.
    pub direct: bool,
    /// Whether the role is one of PostgreSQL's predefined roles.
    pub predefined: bool,
    /// The role's attributes among SUPERUSER, CREATEROLE, CREATEDB, REPLICATION, BYPASSRLS and LOGIN.
    pub attributes: Vec<String>,
    /// Whether it is one of Bulkhead's roles.
    pub bulkhead: bool,
    /// Whether it owns objects or holds grants in any database.
    pub holds_objects: bool,
}

/// The kind of a hardened object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    /// A database (CONNECT, TEMPORARY).
    Database,
    /// Schema `public` (CREATE).
    Schema,
    /// A statistics view (SELECT).
    View,
    /// A lock-taking function (EXECUTE).
    Function,
}

impl ObjectKind {
    fn noun(self) -> &'static str {
        match self {
            ObjectKind::Database => "database",
            ObjectKind::Schema => "schema",
            ObjectKind::View => "view",
            ObjectKind::Function => "function",
        }
    }
}

/// One privilege the hardening takes from PUBLIC, as the catalog has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicGrant {
    /// The database the object is in (a database's own name for a database).
    pub database: String,
    /// The kind of object.
    pub kind: ObjectKind,
    /// Its name as read (a function's signature).
    pub name: String,
    /// Its name for the report.
    pub display: String,
    /// The privilege.
    pub privilege: String,
    /// Whether PUBLIC holds it.
    pub held: bool,
    /// The grantors of PUBLIC's entries.
    pub grantors: String,
    /// Whether the admin could revoke every one of them.
    pub revocable: bool,
}

/// Whether a login role can execute a lock-taking function in its own database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionReach {
    /// The database.
    pub database: String,
    /// The login role.
    pub login: String,
    /// The function's signature as read.
    pub signature: String,
    /// Its name for the report.
    pub display: String,
    /// EXECUTE.
    pub executable: bool,
}

/// What was read inside one database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DatabaseFacts {
    /// PUBLIC's hardened privileges.
    pub public_grants: Vec<PublicGrant>,
    /// Schemas reached.
    pub schemas: Vec<SchemaReach>,
    /// Relations reached.
    pub relations: Vec<RelationReach>,
    /// Large object grants.
    pub large_objects: Vec<LargeObjectGrant>,
    /// Lock-taking functions.
    pub functions: Vec<FunctionReach>,
}

/// Everything the inspection read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The shared database.
    pub shared_database: String,
    /// Whether the admin is a superuser.
    pub admin_superuser: bool,
    /// The subjects.
    pub scopes: Vec<Scope>,
    /// Every database of the server.
    pub databases: Vec<String>,
    /// The databases read inside.
    pub inspected: Vec<String>,
    /// The login roles that exist, by name.
    pub roles: BTreeMap<String, RoleRow>,
    /// Their memberships.
    pub memberships: Vec<Membership>,
    /// The databases they reach.
    pub database_reach: Vec<DatabaseReach>,
    /// PUBLIC's hardened privileges, of every database read.
    pub public_grants: Vec<PublicGrant>,
    /// Schemas reached, in every database read.
    pub schemas: Vec<SchemaReach>,
    /// Relations reached, in every database read.
    pub relations: Vec<RelationReach>,
    /// Large object grants, in every database read.
    pub large_objects: Vec<LargeObjectGrant>,
    /// Lock-taking functions, per login role in its own database.
    pub functions: Vec<FunctionReach>,
}

impl Facts {
    /// Adds what was read inside one database.
    pub fn absorb(&mut self, found: DatabaseFacts) {
        self.public_grants.extend(found.public_grants);
        self.schemas.extend(found.schemas);
        self.relations.extend(found.relations);
        self.large_objects.extend(found.large_objects);
        self.functions.extend(found.functions);
    }
}

/// Whose an object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Whose {
    /// A listed subject's (index into the scopes).
    Subject(usize),
    /// A Bulkhead role's that belongs to no listed subject.
    Unlisted,
    /// Nobody's in Bulkhead.
    Other,
}

/// Lookups over the facts.
struct Index<'a> {
    facts: &'a Facts,
    by_role: HashMap<&'a str, usize>,
    by_schema: HashMap<&'a str, usize>,
    by_database: HashMap<&'a str, usize>,
    /// PUBLIC's hardened privileges by (kind, database, name, privilege).
    public: HashMap<(ObjectKind, &'a str, &'a str, &'a str), &'a PublicGrant>,
}

impl<'a> Index<'a> {
    fn new(facts: &'a Facts) -> Self {
        let mut by_role = HashMap::new();
        let mut by_schema = HashMap::new();
        let mut by_database = HashMap::new();
        for (i, scope) in facts.scopes.iter().enumerate() {
            by_role.insert(scope.names.login.as_str(), i);
            by_role.insert(scope.names.owner.as_str(), i);
            match scope.subject.isolation {
                DatabaseIsolation::Schema => by_schema.insert(scope.names.place.as_str(), i),
                DatabaseIsolation::Database => by_database.insert(scope.names.place.as_str(), i),
            };
        }
        let public = facts
            .public_grants
            .iter()
            .map(|g| {
                (
                    (g.kind, g.database.as_str(), g.name.as_str(), g.privilege.as_str()),
                    g,
                )
            })
            .collect();
        Index {
            facts,
            by_role,
            by_schema,
            by_database,
            public,
        }
    }

    /// Whose a role is.
    fn role(&self, role: &str, bulkhead: bool) -> Whose {
        match self.by_role.get(role) {
            Some(i) => Whose::Subject(*i),
            None if bulkhead => Whose::Unlisted,
            None => Whose::Other,
        }
    }

    /// Whose a schema, or a relation in it, is.
    fn object(&self, database: &str, schema: &str, owner: &str, owner_bulkhead: bool) -> Whose {
        if let Some(i) = self.by_database.get(database) {
            return Whose::Subject(*i);
        }
        if database == self.facts.shared_database
            && let Some(i) = self.by_schema.get(schema)
        {
            return Whose::Subject(*i);
        }
        self.role(owner, owner_bulkhead)
    }

    /// Whether PUBLIC holds `privilege` on the object and the admin could not take it away: a known gap of the
    /// hardening, not a breach.
    fn gap(&self, kind: ObjectKind, database: &str, name: &str, privilege: &str) -> bool {
        self.public
            .get(&(kind, database, name, privilege))
            .is_some_and(|g| g.held && !g.revocable)
    }

    /// How the report names a subject, or a Bulkhead role's owner.
    fn whose_label(&self, whose: Whose) -> String {
        match whose {
            Whose::Subject(i) => self.facts.scopes[i].subject.label(),
            Whose::Unlisted => "a Bulkhead role of no listed subject".to_owned(),
            Whose::Other => "no subject".to_owned(),
        }
    }

    fn other_subject(whose: Whose, own: usize) -> bool {
        match whose {
            Whose::Subject(i) => i != own,
            Whose::Unlisted => true,
            Whose::Other => false,
        }
    }
}

/// One thing found about a login role and an aspect.
#[derive(Debug)]
struct Finding {
    verdict: Verdict,
    text: String,
    evidence: Value,
}

impl Finding {
    fn new(verdict: Verdict, text: String, evidence: Value) -> Finding {
        Finding {
            verdict,
            text,
            evidence,
        }
    }
}

/// The check of one login role and aspect: pass with `clean` when nothing was found, else the worst finding's
/// verdict with the findings named (failures first).
fn judged(
    id: &'static str,
    scope: &Scope,
    clean: String,
    mut findings: Vec<Finding>,
    mut evidence: Map<String, Value>,
) -> Check {
    findings.sort_by_key(|f| std::cmp::Reverse(f.verdict));
    let verdict = findings.first().map_or(Verdict::Pass, |f| f.verdict);
    let summary = if findings.is_empty() {
        clean
    } else {
        let mut named: Vec<&str> = findings
            .iter()
            .take(NAMED_IN_SUMMARY)
            .map(|f| f.text.as_str())
            .collect();
        let more = findings.len().saturating_sub(NAMED_IN_SUMMARY);
        let rest = format!("and {more} more");
        if more > 0 {
            named.push(&rest);
        }
        format!(
            "{} ({}) {}",
            scope.names.login,
            scope.subject.label(),
            named.join("; ")
        )
    };
    evidence.insert("role".into(), json!(scope.names.login));
    evidence.insert("tenant".into(), json!(scope.subject.tenant));
    evidence.insert("customer".into(), json!(scope.subject.customer));
    evidence.insert(
        "findings".into(),
        Value::Array(findings.into_iter().map(|f| f.evidence).collect()),
    );
    Check::new(id, &scope.names.login, verdict, summary, Value::Object(evidence))
}

fn object_map(pairs: impl IntoIterator<Item = (&'static str, Value)>) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// Every check of the facts: PUBLIC's grants first, then each subject's aspects.
pub fn classify(facts: &Facts) -> Vec<Check> {
    let index = Index::new(facts);
    let mut checks = public_grants(facts);
    for (i, scope) in facts.scopes.iter().enumerate() {
        let role = facts.roles.get(&scope.names.login);
        checks.push(role_attributes(scope, role));
        if let Some(role) = role {
            let superuser = role.flags[0];
            checks.push(databases(&index, scope, superuser));
            checks.push(schemas(&index, i, scope, superuser));
            checks.push(relations(&index, i, scope, superuser));
        }
        checks.push(large_objects(&index, i, scope));
        if role.is_some() {
            checks.push(memberships(&index, i, scope));
            checks.push(lock_functions(&index, scope));
        }
    }
    checks
}

/// `postgres.public_grants`: one check per hardened object; a privilege PUBLIC holds fails where the admin
/// could have revoked it and warns where it could not.
fn public_grants(facts: &Facts) -> Vec<Check> {
    let mut objects: BTreeMap<(&str, ObjectKind, &str), Vec<&PublicGrant>> = BTreeMap::new();
    for grant in &facts.public_grants {
        objects
            .entry((grant.database.as_str(), grant.kind, grant.name.as_str()))
            .or_default()
            .push(grant);
    }
    objects
        .into_values()
        .filter_map(|grants| {
            let first = grants.first()?;
            let object = match first.kind {
                ObjectKind::Database => format!("database {}", first.display),
                kind => format!("{} {} in database {}", kind.noun(), first.display, first.database),
            };
            let checked: Vec<&str> = grants.iter().map(|g| g.privilege.as_str()).collect();
            let held: Vec<&&PublicGrant> = grants.iter().filter(|g| g.held).collect();
            let evidence = json!({
                "object": object,
                "kind": first.kind.noun(),
                "database": first.database,
                "checked": checked,
                "public_holds": held.iter().map(|g| json!({
                    "privilege": g.privilege,
                    "grantors": g.grantors,
                    "admin_can_revoke": g.revocable,
                })).collect::<Vec<_>>(),
            });
            let (fail, warn): (Vec<&&PublicGrant>, Vec<&&PublicGrant>) =
                held.iter().partition(|g| g.revocable);
            let privileges = |gs: &[&&PublicGrant]| {
                gs.iter()
                    .map(|g| g.privilege.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let grantors = |gs: &[&&PublicGrant]| {
                let set: BTreeSet<&str> = gs.iter().map(|g| g.grantors.as_str()).collect();
                set.into_iter().collect::<Vec<_>>().join(", ")
            };
            let check = if !fail.is_empty() {
                Check::new(
                    PUBLIC_GRANTS,
                    &object,
                    Verdict::Fail,
                    format!(
                        "PUBLIC holds {} on {object} (granted by {}), which the hardening takes away",
                        privileges(&fail),
                        grantors(&fail)
                    ),
                    evidence,
                )
            } else if !warn.is_empty() {
                Check::new(
                    PUBLIC_GRANTS,
                    &object,
                    Verdict::Warn,
                    format!(
                        "PUBLIC holds {} on {object}: the admin is not a superuser and does not act for {}, so \
                         the hardening cannot take it away",
                        privileges(&warn),
                        grantors(&warn)
                    ),
                    evidence,
                )
            } else {
                Check::new(
                    PUBLIC_GRANTS,
                    &object,
                    Verdict::Pass,
                    format!("PUBLIC holds none of {} on {object}", checked.join(", ")),
                    evidence,
                )
            };
            Some(check)
        })
        .collect()
}

/// `postgres.role_attributes`: the login role exists with provisioning's attributes.
fn role_attributes(scope: &Scope, role: Option<&RoleRow>) -> Check {
    let login = &scope.names.login;
    let Some(role) = role else {
        return Check::fail(
            ROLE_ATTRIBUTES,
            login,
            format!("login role {login} of {} does not exist", scope.subject.label()),
            json!({"role": login, "tenant": scope.subject.tenant, "customer": scope.subject.customer,
                   "exists": false}),
        );
    };
    let mut findings = Vec::new();
    let mut attributes = Map::new();
    for ((name, wanted), held) in LOGIN_ATTRIBUTES.iter().zip(role.flags) {
        attributes.insert(name.to_lowercase(), json!(held));
        if held != *wanted {
            let shown = if held {
                (*name).to_owned()
            } else {
                format!("NO{name}")
            };
            findings.push(Finding::new(
                Verdict::Fail,
                format!("has {shown}, which provisioning never sets"),
                json!({"attribute": name, "held": held, "provisioned": wanted}),
            ));
        }
    }
    if !role.is_bulkheads() {
        findings.push(Finding::new(
            Verdict::Warn,
            "lacks Bulkhead's role comment, so the operator does not take it for its own".to_owned(),
            json!({"comment": role.comment}),
        ));
    }
    judged(
        ROLE_ATTRIBUTES,
        scope,
        format!(
            "{login} exists with LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT"
        ),
        findings,
        object_map([
            ("exists", json!(true)),
            ("attributes", Value::Object(attributes)),
            ("connection_limit", json!(role.connection_limit)),
            ("password_expires", json!(role.expires)),
            ("bulkhead_comment", json!(role.is_bulkheads())),
        ]),
    )
}

fn superuser_finding() -> Finding {
    Finding::new(
        Verdict::Fail,
        "is a superuser: no privilege check applies to it".to_owned(),
        json!({"superuser": true}),
    )
}

/// `postgres.databases`: connecting or creating temporary objects anywhere but its own database fails, unless
/// only PUBLIC's right, which the admin cannot revoke, gives it.
fn databases(index: &Index<'_>, scope: &Scope, superuser: bool) -> Check {
    let login = &scope.names.login;
    let own = &scope.database;
    let reach: Vec<&DatabaseReach> = index
        .facts
        .database_reach
        .iter()
        .filter(|r| &r.login == login)
        .collect();
    let mut findings = Vec::new();
    if superuser {
        findings.push(superuser_finding());
    }
    if !index.facts.databases.contains(own) {
        findings.push(Finding::new(
            Verdict::Fail,
            format!("has no database: {own} does not exist"),
            json!({"database": own, "exists": false}),
        ));
    } else if !reach.iter().any(|r| &r.database == own && r.connect) {
        findings.push(Finding::new(
            Verdict::Warn,
            format!("cannot connect to its own database {own}"),
            json!({"database": own, "connect": false}),
        ));
    }
    for r in reach.iter().filter(|r| &r.database != own) {
        let mut privileges = Vec::new();
        if r.connect {
            privileges.push("CONNECT");
        }
        if r.temporary {
            privileges.push("TEMPORARY");
        }
        let gap = r.via.only_public()
            && privileges
                .iter()
                .all(|p| index.gap(ObjectKind::Database, &r.database, &r.database, p));
        let (verdict, why) = if gap {
            (
                Verdict::Warn,
                " through PUBLIC, which the admin cannot revoke".to_owned(),
            )
        } else {
            (Verdict::Fail, format!(" ({})", r.via.grants.join(", ")))
        };
        findings.push(Finding::new(
            verdict,
            format!("may {} on database {}{why}", privileges.join(", "), r.database),
            json!({"database": r.database, "privileges": privileges, "via": r.via.evidence(None)}),
        ));
    }
    let names = |f: fn(&DatabaseReach) -> bool| {
        reach
            .iter()
            .filter(|r| f(r))
            .map(|r| r.database.clone())
            .collect::<Vec<_>>()
    };
    judged(
        DATABASES,
        scope,
        format!("{login} may connect to its own database {own} only"),
        findings,
        object_map([
            ("own_database", json!(own)),
            ("can_connect", json!(names(|r| r.connect))),
            ("can_create_temp", json!(names(|r| r.temporary))),
        ]),
    )
}

/// `postgres.schemas`: USAGE on `public` is allowed and CREATE there fails (warns when only PUBLIC's right, which
/// the admin cannot revoke, gives it), in any database; USAGE or CREATE on another subject's schema fails; on a
/// schema of no subject warns.
fn schemas(index: &Index<'_>, own: usize, scope: &Scope, superuser: bool) -> Check {
    let login = &scope.names.login;
    let mut findings = Vec::new();
    if superuser {
        findings.push(superuser_finding());
    }
    let mut usable = Vec::new();
    for r in index.facts.schemas.iter().filter(|r| &r.login == login) {
        let mut privileges = Vec::new();
        if r.usage {
            privileges.push("USAGE");
        }
        if r.create {
            privileges.push("CREATE");
        }
        usable.push(json!({"database": r.database, "schema": r.schema, "privileges": privileges}));
        let whose = index.object(&r.database, &r.schema, &r.owner, r.owner_bulkhead);
        let evidence = json!({
            "database": r.database, "schema": r.schema, "owner": r.owner, "privileges": privileges,
            "via": r.via.evidence(Some(&r.owner)),
        });
        let held = privileges.join(", ");
        let at = format!("schema {} in database {}", r.schema, r.database);
        if r.schema == "public" {
            // USAGE on `public` is every role's; CREATE is what the hardening takes from PUBLIC, in the shared
            // database and in each subject's own.
            if !r.create {
                continue;
            }
            let gap = r.via.only_public() && index.gap(ObjectKind::Schema, &r.database, "public", "CREATE");
            let verdict = if gap { Verdict::Warn } else { Verdict::Fail };
            findings.push(Finding::new(
                verdict,
                format!("may CREATE in {at} ({})", r.via.grants.join(", ")),
                evidence,
            ));
        } else if Index::other_subject(whose, own) {
            findings.push(Finding::new(
                Verdict::Fail,
                format!(
                    "may {held} on {at} of {} ({})",
                    index.whose_label(whose),
                    r.via.grants.join(", ")
                ),
                evidence,
            ));
        } else if whose == Whose::Subject(own) {
            continue;
        } else {
            findings.push(Finding::new(
                Verdict::Warn,
                format!("may {held} on {at}, which is no subject's and not provisioned"),
                evidence,
            ));
        }
    }
    judged(
        SCHEMAS,
        scope,
        format!(
            "{login} has USAGE or CREATE on no schema but its own {} (and USAGE on public)",
            scope.names.place
        ),
        findings,
        object_map([
            ("own_schema", json!(scope.names.place)),
            ("usable", Value::Array(usable)),
        ]),
    )
}

fn relation_noun(kind: &str) -> &'static str {
    match kind {
        "S" => "sequence",
        "v" => "view",
        "m" => "materialized view",
        "f" => "foreign table",
        _ => "table",
    }
}

/// `postgres.relations`: any privilege on another subject's table, view or sequence fails.
fn relations(index: &Index<'_>, own: usize, scope: &Scope, superuser: bool) -> Check {
    let login = &scope.names.login;
    let mut findings = Vec::new();
    if superuser {
        findings.push(superuser_finding());
    }
    for r in index.facts.relations.iter().filter(|r| &r.login == login) {
        let whose = index.object(&r.database, &r.schema, &r.owner, r.owner_bulkhead);
        if !Index::other_subject(whose, own) {
            continue;
        }
        let noun = relation_noun(&r.kind);
        let mut via = r.via.grants.clone();
        if r.via.through_owner {
            via.push(format!("member of the owner {}", r.owner));
        }
        findings.push(Finding::new(
            Verdict::Fail,
            format!(
                "holds {} on {noun} {}.{} in database {} of {} ({})",
                r.privileges.join(", "),
                r.schema,
                r.name,
                r.database,
                index.whose_label(whose),
                via.join(", ")
            ),
            json!({
                "database": r.database, "schema": r.schema, "name": r.name, "kind": noun, "owner": r.owner,
                "privileges": r.privileges, "via": r.via.evidence(Some(&r.owner)),
            }),
        ));
    }
    judged(
        RELATIONS,
        scope,
        format!(
            "{login} holds no privilege on another subject's tables, views or sequences (databases read: {})",
            index.facts.inspected.join(", ")
        ),
        findings,
        object_map([("databases_read", json!(index.facts.inspected))]),
    )
}

/// `postgres.large_objects`: a large object of the subject's roles granted to PUBLIC or to another subject's
/// role fails; to a role outside Bulkhead warns.
fn large_objects(index: &Index<'_>, own: usize, scope: &Scope) -> Check {
    let roles = [scope.names.login.as_str(), scope.names.owner.as_str()];
    let mut findings = Vec::new();
    for g in index
        .facts
        .large_objects
        .iter()
        .filter(|g| roles.contains(&g.owner.as_str()))
    {
        let (verdict, grantee) = match &g.grantee {
            None => (Verdict::Fail, "PUBLIC".to_owned()),
            Some(grantee) => match index.role(grantee, g.grantee_bulkhead) {
                Whose::Subject(i) if i == own => continue,
                whose @ (Whose::Subject(_) | Whose::Unlisted) => (
                    Verdict::Fail,
                    format!("{grantee} of {}", index.whose_label(whose)),
                ),
                Whose::Other => (Verdict::Warn, format!("{grantee}, a role outside Bulkhead")),
            },
        };
        findings.push(Finding::new(
            verdict,
            format!(
                "owns large object {} in database {} (owner {}), granted {} to {grantee} by {}",
                g.oid, g.database, g.owner, g.privilege, g.grantor
            ),
            json!({
                "database": g.database, "oid": g.oid, "owner": g.owner,
                "grantee": g.grantee.as_deref().unwrap_or("PUBLIC"), "privilege": g.privilege,
                "grantor": g.grantor,
            }),
        ));
    }
    judged(
        LARGE_OBJECTS,
        scope,
        format!(
            "no large object of {} or {} is granted to PUBLIC or another role",
            scope.names.login, scope.names.owner
        ),
        findings,
        object_map([
            ("owners", json!(roles)),
            ("databases_read", json!(index.facts.inspected)),
        ]),
    )
}

/// `postgres.memberships`: provisioning makes the login role a member of nothing. Membership in another
/// subject's role, a predefined role, a role with attributes or one that owns or is granted anything fails;
/// in its own owner role or an empty role warns.
fn memberships(index: &Index<'_>, own: usize, scope: &Scope) -> Check {
    let login = &scope.names.login;
    let mut findings = Vec::new();
    let mut member_of = Vec::new();
    for m in index.facts.memberships.iter().filter(|m| &m.login == login) {
        member_of.push(m.role.clone());
        let how = if m.direct {
            ""
        } else {
            " (through another membership)"
        };
        let whose = index.role(&m.role, m.bulkhead);
        let (verdict, what) = if Index::other_subject(whose, own) {
            (Verdict::Fail, format!("a role of {}", index.whose_label(whose)))
        } else if whose == Whose::Subject(own) {
            (
                Verdict::Warn,
                "its own subject's role, which provisioning does not make it a member of".to_owned(),
            )
        } else if m.predefined {
            (Verdict::Fail, "a predefined role".to_owned())
        } else if !m.attributes.is_empty() {
            (Verdict::Fail, format!("a role with {}", m.attributes.join(", ")))
        } else if m.holds_objects {
            (
                Verdict::Fail,
                "a role that owns objects or holds privileges".to_owned(),
            )
        } else {
            (
                Verdict::Warn,
                "a role that holds nothing, which provisioning does not make it a member of".to_owned(),
            )
        };
        findings.push(Finding::new(
            verdict,
            format!("is a member of {}{how}: {what}", m.role),
            json!({
                "role": m.role, "direct": m.direct, "predefined": m.predefined, "attributes": m.attributes,
                "bulkhead": m.bulkhead, "holds_objects": m.holds_objects,
            }),
        ));
    }
    judged(
        MEMBERSHIPS,
        scope,
        format!("{login} is a member of no role"),
        findings,
        object_map([("member_of", json!(member_of))]),
    )
}

/// `postgres.lock_functions`: executing a lock-taking function the hardening revokes fails, or warns where
/// PUBLIC keeps it because the admin cannot revoke it.
fn lock_functions(index: &Index<'_>, scope: &Scope) -> Check {
    let login = &scope.names.login;
    let mut findings = Vec::new();
    let mut checked = Vec::new();
    for f in index.facts.functions.iter().filter(|f| &f.login == login) {
        checked.push(json!({"database": f.database, "function": f.display, "executable": f.executable}));
        if !f.executable {
            continue;
        }
        let gap = index.gap(ObjectKind::Function, &f.database, &f.signature, "EXECUTE");
        let (verdict, why) = if gap {
            (
                Verdict::Warn,
                "PUBLIC keeps EXECUTE, which the admin cannot revoke",
            )
        } else {
            (Verdict::Fail, "the hardening revokes it")
        };
        findings.push(Finding::new(
            verdict,
            format!("can execute {} in database {} ({why})", f.display, f.database),
            json!({"database": f.database, "function": f.display, "executable": true}),
        ));
    }
    judged(
        LOCK_FUNCTIONS,
        scope,
        format!(
            "{login} can execute none of the lock-taking functions the hardening revokes ({} checked)",
            checked.len()
        ),
        findings,
        object_map([("functions", Value::Array(checked))]),
    )
}

#[cfg(test)]
mod tests;
