//! `verify`'s Postgres inspection against a real PostgreSQL (15 unless `BULKHEAD_PG_VERSION` says otherwise),
//! with the operator's admin of `BULKHEAD_PG_ADMIN` (the superuser, or a CREATEROLE CREATEDB role as on managed
//! services) hardening the server, provisioning tenants A and B (Schema isolation) and C (Database isolation)
//! with the operator's own functions, and inspecting. A clean server has no failing check; then, each on a
//! server of its own, one breach of the isolation contract is made as a tenant or an administrator would make
//! it, and the inspection must fail the right check, naming the object. The inspection only reads: the breach
//! is still there afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail the test by panicking

use bulkhead_crds::v1alpha1::DatabaseIsolation;
use bulkhead_e2e::postgres::{AdminKind, Postgres};
use bulkhead_operator::postgres::connect::Server;
use bulkhead_operator::postgres::naming::Names;
use bulkhead_operator::postgres::provision;
use bulkhead_operator::verify::postgres::{
    self as verify, DATABASES, LARGE_OBJECTS, LOCK_FUNCTIONS, MEMBERSHIPS, PUBLIC_GRANTS, RELATIONS, Subject,
};
use bulkhead_operator::verify::{Check, Verdict};
use postgres_protocol::password::scram_sha_256;
use tokio_postgres::Client;

const DB: &str = "app";
const LIMIT: i32 = 3;

struct Tenant {
    names: Names,
    password: String,
}

struct Setup {
    pg: Postgres,
    /// A superuser connection to the shared database: a trusted administrator making the out-of-band changes.
    observer: Client,
    /// The operator's admin connection settings, as `verify` gets them.
    server: Server,
    subjects: Vec<Subject>,
    a: Tenant,
    b: Tenant,
    c: Tenant,
}

/// The shared database `app` (owned by the operator's admin), hardened by that admin, with tenants A and B in
/// Schema isolation and C in Database isolation.
async fn setup() -> Setup {
    let pg = Postgres::start().await.expect("postgres");
    pg.create_database_for_admin(DB).await.unwrap();
    let admin = pg.connect_operator_admin(DB).await.unwrap();
    provision::harden(&admin, DB).await.unwrap();
    let dsn = pg.operator_admin_dsn(DB).await.unwrap();
    let admin_config: tokio_postgres::Config = dsn.parse().unwrap();
    let mut subjects = Vec::new();
    let mut tenants = Vec::new();
    for (name, password, isolation) in [
        ("tenant-a", "pw-a-4c1e", DatabaseIsolation::Schema),
        ("tenant-b", "pw-b-93d7", DatabaseIsolation::Schema),
        ("tenant-c", "pw-c-0b52", DatabaseIsolation::Database),
    ] {
        let subject = Subject {
            tenant: name.into(),
            customer: None,
            isolation,
        };
        let names = subject.names();
        let verifier = scram_sha_256(password.as_bytes());
        match isolation {
            DatabaseIsolation::Schema => provision::provision_schema(&admin, DB, &names, &verifier, LIMIT)
                .await
                .unwrap(),
            DatabaseIsolation::Database => {
                provision::provision_database(&admin, &admin_config, &names, &verifier, LIMIT)
                    .await
                    .unwrap()
            }
        }
        subjects.push(subject);
        tenants.push(Tenant {
            names,
            password: password.into(),
        });
    }
    let observer = pg
        .connect_as("postgres", pg.superuser_password(), DB)
        .await
        .unwrap();
    let server = Server::new(&format!("{dsn}?sslmode=disable"), None).unwrap();
    let c = tenants.pop().unwrap();
    let b = tenants.pop().unwrap();
    let a = tenants.pop().unwrap();
    Setup {
        pg,
        observer,
        server,
        subjects,
        a,
        b,
        c,
    }
}

async fn inspect(s: &Setup) -> Vec<Check> {
    verify::inspect(&s.server, &s.subjects).await.unwrap()
}

async fn login(s: &Setup, tenant: &Tenant, database: &str) -> Client {
    s.pg.connect_as(&tenant.names.login, &tenant.password, database)
        .await
        .unwrap()
}

fn q(ident: &str) -> String {
    postgres_protocol::escape::escape_identifier(ident)
}

fn failing(checks: &[Check]) -> Vec<&Check> {
    checks.iter().filter(|c| c.verdict == Verdict::Fail).collect()
}

/// The failing check `id` about `subject`, which must name `object` in its summary.
fn fails_naming<'c>(checks: &'c [Check], id: &str, subject: &str, object: &str) -> &'c Check {
    let found = checks
        .iter()
        .find(|c| c.id == id && c.subject == subject)
        .unwrap_or_else(|| panic!("no {id} check about {subject}: {checks:#?}"));
    assert_eq!(
        found.verdict,
        Verdict::Fail,
        "{id} about {subject} should fail: {found:#?}"
    );
    assert!(
        found.summary.contains(object),
        "{id} about {subject} should name {object}: {}",
        found.summary
    );
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provisioned_and_hardened_server_has_no_failing_check() {
    let s = setup().await;
    let checks = inspect(&s).await;
    assert!(failing(&checks).is_empty(), "{:#?}", failing(&checks));
    for tenant in [&s.a, &s.b, &s.c] {
        for id in verify::PER_ROLE {
            let n = checks
                .iter()
                .filter(|c| c.id == id && c.subject == tenant.names.login)
                .count();
            assert_eq!(n, 1, "{id} about {}: {checks:#?}", tenant.names.login);
        }
    }
    for database in [DB, "postgres", "template1", s.c.names.place.as_str()] {
        let subject = format!("database {database}");
        assert!(
            checks
                .iter()
                .any(|c| c.id == PUBLIC_GRANTS && c.subject == subject),
            "{subject} was not checked: {checks:#?}"
        );
    }
    let lock = checks
        .iter()
        .find(|c| c.id == LOCK_FUNCTIONS && c.subject == s.a.names.login)
        .unwrap();
    assert!(
        !lock.evidence["functions"].as_array().unwrap().is_empty(),
        "{lock:#?}"
    );
    let c_databases = checks
        .iter()
        .find(|c| c.id == DATABASES && c.subject == s.c.names.login)
        .unwrap();
    assert_eq!(
        c_databases.evidence["own_database"],
        serde_json::json!(s.c.names.place)
    );
    match s.pg.admin_kind() {
        // A superuser admin closes everything it hardens: nothing to warn about.
        AdminKind::Superuser => {
            let warnings: Vec<&Check> = checks.iter().filter(|c| c.verdict == Verdict::Warn).collect();
            assert!(warnings.is_empty(), "{warnings:#?}");
        }
        // The documented gaps of an admin that is not a superuser are warnings: PUBLIC keeps CONNECT on
        // `postgres` and `template1`, the statistics views and the lock-taking functions.
        AdminKind::CreateRole => {
            for subject in [
                "database postgres".to_owned(),
                "database template1".to_owned(),
                format!("view pg_catalog.pg_stats in database {DB}"),
            ] {
                let check = checks
                    .iter()
                    .find(|c| c.id == PUBLIC_GRANTS && c.subject == subject)
                    .unwrap_or_else(|| panic!("{subject}: {checks:#?}"));
                assert_eq!(check.verdict, Verdict::Warn, "{check:#?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_table_granted_to_a_login_role_fails() {
    let s = setup().await;
    let b = login(&s, &s.b, DB).await;
    b.batch_execute(&format!(
        "CREATE TABLE t (secret text); GRANT SELECT ON t TO {}",
        q(&s.a.names.login)
    ))
    .await
    .unwrap();
    let checks = inspect(&s).await;
    let table = format!("{}.t", s.b.names.place);
    let check = fails_naming(&checks, RELATIONS, &s.a.names.login, &table);
    assert!(check.summary.contains("SELECT"), "{}", check.summary);
    assert_eq!(
        check.evidence["findings"][0]["privileges"],
        serde_json::json!(["SELECT"])
    );
    // Nothing else broke, and the inspection left the grant where it was.
    assert_eq!(failing(&checks).len(), 1, "{:#?}", failing(&checks));
    let still: bool = s
        .observer
        .query_one(
            "SELECT has_table_privilege($1, $2::text::regclass, 'SELECT')",
            &[&s.a.names.login, &format!("{}.t", q(&s.b.names.place))],
        )
        .await
        .unwrap()
        .get(0);
    assert!(still, "the inspection must not revoke anything");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_large_object_granted_to_public_fails() {
    let s = setup().await;
    let a = login(&s, &s.a, DB).await;
    let oid: u32 = a
        .query_one("SELECT lo_from_bytea(0, 'a-private-scan'::bytea)", &[])
        .await
        .unwrap()
        .get(0);
    a.batch_execute(&format!("GRANT SELECT ON LARGE OBJECT {oid} TO PUBLIC"))
        .await
        .unwrap();
    let checks = inspect(&s).await;
    let check = fails_naming(
        &checks,
        LARGE_OBJECTS,
        &s.a.names.login,
        &format!("large object {oid}"),
    );
    assert!(
        check.summary.contains(&format!("owner {}", s.a.names.login)) && check.summary.contains("PUBLIC"),
        "{}",
        check.summary
    );
    assert_eq!(failing(&checks).len(), 1, "{:#?}", failing(&checks));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_on_the_shared_database_for_public_fails() {
    let s = setup().await;
    s.observer
        .batch_execute(&format!("GRANT CONNECT ON DATABASE {} TO PUBLIC", q(DB)))
        .await
        .unwrap();
    let checks = inspect(&s).await;
    let subject = format!("database {DB}");
    let check = fails_naming(
        &checks,
        PUBLIC_GRANTS,
        &subject,
        &format!("CONNECT on database {DB}"),
    );
    assert_eq!(check.evidence["public_holds"][0]["privilege"], "CONNECT");
    // Tenant C, in a database of its own, may now connect to the shared one.
    fails_naming(
        &checks,
        DATABASES,
        &s.c.names.login,
        &format!("CONNECT on database {DB}"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_in_another_tenants_owner_role_fails() {
    let s = setup().await;
    s.observer
        .batch_execute(&format!(
            "GRANT {} TO {}",
            q(&s.b.names.owner),
            q(&s.a.names.login)
        ))
        .await
        .unwrap();
    let checks = inspect(&s).await;
    let check = fails_naming(&checks, MEMBERSHIPS, &s.a.names.login, &s.b.names.owner);
    assert!(check.summary.contains("Tenant tenant-b"), "{}", check.summary);
    // B is untouched by A's membership.
    let b = checks
        .iter()
        .find(|c| c.id == MEMBERSHIPS && c.subject == s.b.names.login)
        .unwrap();
    assert_eq!(b.verdict, Verdict::Pass, "{b:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_tenants_table_or_database_granted_to_another_login_role_fails() {
    let s = setup().await;
    let c = login(&s, &s.c, &s.c.names.place).await;
    c.batch_execute(&format!(
        "CREATE TABLE ledger (amount int); GRANT SELECT, UPDATE ON ledger TO {}",
        q(&s.a.names.login)
    ))
    .await
    .unwrap();
    s.observer
        .batch_execute(&format!(
            "GRANT CONNECT ON DATABASE {} TO {}",
            q(&s.c.names.place),
            q(&s.a.names.login)
        ))
        .await
        .unwrap();
    let checks = inspect(&s).await;
    let relations = fails_naming(
        &checks,
        RELATIONS,
        &s.a.names.login,
        &format!("{}.ledger", s.c.names.place),
    );
    assert!(
        relations.summary.contains("SELECT, UPDATE"),
        "{}",
        relations.summary
    );
    fails_naming(
        &checks,
        DATABASES,
        &s.a.names.login,
        &format!("CONNECT on database {}", s.c.names.place),
    );
}
