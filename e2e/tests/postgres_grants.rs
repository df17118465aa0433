//! A tenant's own grants must not reach past the schema guard. Tenant A (its login role, as its stack or a
//! buggy migration would) grants its objects to PUBLIC or to tenant B's role; each case first shows what B
//! could do with that grant, then runs the operator's grant repair and shows that B is refused and that the
//! repair named the object. Against a real PostgreSQL (15 unless `BULKHEAD_PG_VERSION` says otherwise), with the
//! operator's admin of `BULKHEAD_PG_ADMIN` (the superuser, or a CREATEROLE CREATEDB role as on managed services)
//! running the hardening and the repair; the last test runs the operator itself, whose grant sweep finds such a
//! grant long before the next resync. The operator's own grant of CONNECT on the shared database is written only
//! when it is missing, so a resync of every tenant does not rewrite that database's access list once per tenant.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail the test by panicking

use std::time::Duration;

use bulkhead_e2e::operator::DatabaseFixture;
use bulkhead_e2e::postgres::{AdminKind, Postgres};
use bulkhead_operator::postgres::naming::{Names, names};
use bulkhead_operator::postgres::provision;
use postgres_protocol::password::scram_sha_256;
use tokio_postgres::Client;

const DB: &str = "app";
const LIMIT: i32 = 3;

struct Tenant {
    names: Names,
    client: Client,
}

struct Setup {
    pg: Postgres,
    /// The operator's admin, connected to the shared database: it hardens, provisions and repairs.
    admin: Client,
    /// A superuser connection to the shared database: the trusted observer for catalog reads.
    observer: Client,
    a: Tenant,
    b: Tenant,
}

/// The shared database `app` (owned by the operator's admin), hardened by that admin, with tenants A and B.
async fn setup() -> Setup {
    let pg = Postgres::start().await.expect("postgres");
    pg.create_database_for_admin(DB).await.unwrap();
    let admin = pg.connect_operator_admin(DB).await.unwrap();
    let hardening = provision::harden(&admin, DB).await.unwrap();
    // Only a superuser admin can take the statistics views from PUBLIC; the hardening says when it could not.
    assert_eq!(
        hardening.gaps.iter().any(|g| g == "PUBLIC may read pg_stats"),
        pg.admin_kind() == AdminKind::CreateRole,
        "{hardening:?}"
    );
    let observer = pg
        .connect_as("postgres", pg.superuser_password(), DB)
        .await
        .unwrap();
    let mut tenants = Vec::new();
    for (name, password) in [("tenant-a", "pw-a-51c9"), ("tenant-b", "pw-b-0d3e")] {
        let n = names(name, None);
        provision::provision_schema(&admin, DB, &n, &scram_sha_256(password.as_bytes()), LIMIT)
            .await
            .unwrap();
        let client = pg.connect_as(&n.login, password, DB).await.unwrap();
        tenants.push(Tenant { names: n, client });
    }
    let b = tenants.pop().unwrap();
    let a = tenants.pop().unwrap();
    Setup {
        pg,
        admin,
        observer,
        a,
        b,
    }
}

/// The version of the shared database's catalog row: it changes whenever its access list is rewritten.
async fn database_row_version(observer: &Client) -> String {
    observer
        .query_one("SELECT xmin::text FROM pg_database WHERE datname = $1", &[&DB])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_grants_connect_only_when_the_login_role_lacks_it() {
    bulkhead_e2e::init_test_logging();
    let s = setup().await;
    let before = database_row_version(&s.observer).await;
    for tenant in [&s.a, &s.b] {
        provision::grant_schema(&s.admin, DB, &tenant.names)
            .await
            .unwrap();
    }
    assert_eq!(
        database_row_version(&s.observer).await,
        before,
        "a resync rewrote the shared database's access list"
    );

    // Taken away, the right is back after the next resync, and A's stack can connect again.
    s.admin
        .batch_execute(&format!(
            "REVOKE CONNECT ON DATABASE {} FROM {}",
            q(DB),
            q(&s.a.names.login)
        ))
        .await
        .unwrap();
    let refused = s.pg.connect_as(&s.a.names.login, "pw-a-51c9", DB).await;
    assert!(refused.is_err(), "A connected without CONNECT");
    provision::grant_schema(&s.admin, DB, &s.a.names).await.unwrap();
    assert_ne!(database_row_version(&s.observer).await, before);
    let again = s.pg.connect_as(&s.a.names.login, "pw-a-51c9", DB).await.unwrap();
    let schema: String = again
        .query_one("SELECT current_schema()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(schema, s.a.names.place);
}

/// The operator's grant repair for `tenant`, as a resync runs it; returns what it reported.
async fn repair(admin: &Client, tenant: &Names) -> Vec<String> {
    let found = provision::foreign_grants(admin, tenant).await.unwrap();
    provision::revoke_foreign(admin, &found).await.unwrap();
    found.iter().map(ToString::to_string).collect()
}

fn q(ident: &str) -> String {
    postgres_protocol::escape::escape_identifier(ident)
}

/// Fails the test unless `sql` is refused for lack of privilege (SQLSTATE 42501).
async fn refused(client: &Client, sql: &str) {
    match client.batch_execute(sql).await {
        Ok(()) => panic!("tenant B was allowed to run: {sql}"),
        Err(e) => {
            let db = e
                .as_db_error()
                .unwrap_or_else(|| panic!("{sql}: not a server error: {e}"));
            assert_eq!(
                db.code(),
                &tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE,
                "{sql}: {}",
                db.message()
            );
        }
    }
}

fn mentions(report: &[String], what: &str) {
    assert!(
        report.iter().any(|r| r.contains(what)),
        "the repair did not report {what}: {report:?}"
    );
}

/// What B gets when it looks for A's column `secret` in `pg_stats`.
#[derive(Debug, PartialEq, Eq)]
enum Stats {
    /// The view is closed to B (42501): the hardening took it from PUBLIC.
    Refused,
    /// The view is open, and hides the column: B holds no SELECT on it.
    NoRow,
    /// The column's most common values.
    Seen(Option<String>),
}

/// What B can read of A's table through `pg_stats`.
async fn stats_seen_by_b(s: &Setup) -> Stats {
    let rows = s
        .b
        .client
        .query(
            "SELECT most_common_vals::text FROM pg_stats WHERE schemaname = $1 AND tablename = 'patients' \
             AND attname = 'secret'",
            &[&s.a.names.place],
        )
        .await;
    match rows {
        Ok(rows) => rows.first().map_or(Stats::NoRow, |r| Stats::Seen(r.get(0))),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) => {
            Stats::Refused
        }
        Err(e) => panic!("reading pg_stats: {e}"),
    }
}

/// `pg_stats` as B sees it while A's grant stands (`granted`) or after the repair, by the admin's kind.
fn assert_stats(s: &Setup, seen: &Stats, granted: bool) {
    match s.pg.admin_kind() {
        // The view is closed to B, grant or not.
        AdminKind::Superuser => assert_eq!(seen, &Stats::Refused),
        // The view stays readable by PUBLIC: while A's grant stands, it shows B the column's most common
        // values; the repair is what closes it.
        AdminKind::CreateRole if granted => assert!(
            matches!(seen, Stats::Seen(Some(values)) if values.contains("diagnosis-")),
            "B should read A's most common values while the grant stands: {seen:?}"
        ),
        AdminKind::CreateRole => assert_eq!(
            seen,
            &Stats::NoRow,
            "B reads A's most common values from pg_stats"
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_granted_to_public_does_not_leak_its_statistics() {
    let s = setup().await;
    let a = &s.a.client;
    a.batch_execute(
        "CREATE TABLE patients (id int, secret text); \
         INSERT INTO patients SELECT g, 'diagnosis-' || (g % 3) FROM generate_series(1, 300) g; \
         ANALYZE patients; \
         GRANT SELECT ON patients TO PUBLIC",
    )
    .await
    .unwrap();
    // B cannot read the table itself: A's schema is closed to it.
    let table = format!("{}.patients", q(&s.a.names.place));
    refused(&s.b.client, &format!("SELECT * FROM {table}")).await;
    assert_stats(&s, &stats_seen_by_b(&s).await, true);

    let report = repair(&s.admin, &s.a.names).await;
    mentions(&report, "patients");
    assert_stats(&s, &stats_seen_by_b(&s).await, false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_granted_to_another_tenant_does_not_leak_its_statistics() {
    let s = setup().await;
    s.a.client
        .batch_execute(&format!(
            "CREATE TABLE patients (id int, secret text); \
             INSERT INTO patients SELECT g, 'diagnosis-' || (g % 3) FROM generate_series(1, 300) g; \
             ANALYZE patients; \
             GRANT SELECT (secret) ON patients TO {}",
            q(&s.b.names.login)
        ))
        .await
        .unwrap();
    assert_stats(&s, &stats_seen_by_b(&s).await, true);

    let report = repair(&s.admin, &s.a.names).await;
    mentions(&report, "patients");
    assert_stats(&s, &stats_seen_by_b(&s).await, false);
    let acl: Option<String> = s
        .observer
        .query_one(
            "SELECT attacl::text FROM pg_attribute WHERE attrelid = $1::text::regclass AND attname = 'secret'",
            &[&format!("{}.patients", q(&s.a.names.place))],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        !acl.unwrap_or_default().contains(&s.b.names.login),
        "the column grant to B is still there"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_object_granted_to_public_or_to_another_tenant_is_taken_back() {
    let s = setup().await;
    let mut oids = Vec::new();
    for grantee in ["PUBLIC".to_owned(), q(&s.b.names.login)] {
        let oid: u32 =
            s.a.client
                .query_one("SELECT lo_from_bytea(0, 'a-private-scan'::bytea)", &[])
                .await
                .unwrap()
                .get(0);
        s.a.client
            .batch_execute(&format!("GRANT SELECT ON LARGE OBJECT {oid} TO {grantee}"))
            .await
            .unwrap();
        oids.push(oid);
    }
    // The attack works: large objects belong to no schema.
    for oid in &oids {
        let data: Vec<u8> =
            s.b.client
                .query_one(&format!("SELECT lo_get({oid})"), &[])
                .await
                .unwrap()
                .get(0);
        assert_eq!(data, b"a-private-scan");
    }

    let report = repair(&s.admin, &s.a.names).await;
    for oid in &oids {
        mentions(&report, &format!("large object {oid}"));
        refused(&s.b.client, &format!("SELECT lo_get({oid})")).await;
    }
    // A still reads its own.
    s.a.client
        .query_one(&format!("SELECT lo_get({})", oids[0]), &[])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequence_granted_to_public_cannot_be_advanced_by_another_tenant() {
    let s = setup().await;
    s.a.client
        .batch_execute("CREATE SEQUENCE invoice_numbers; GRANT USAGE ON SEQUENCE invoice_numbers TO PUBLIC")
        .await
        .unwrap();
    let oid: u32 = s
        .observer
        .query_one(
            "SELECT $1::text::regclass::oid",
            &[&format!("{}.invoice_numbers", q(&s.a.names.place))],
        )
        .await
        .unwrap()
        .get(0);
    // The attack works: B names the sequence by OID, which needs no schema lookup.
    let next = format!("SELECT nextval({oid}::regclass)");
    s.b.client.batch_execute(&next).await.unwrap();

    let report = repair(&s.admin, &s.a.names).await;
    mentions(&report, "invoice_numbers");
    refused(&s.b.client, &next).await;
    // A's own use is untouched.
    s.a.client
        .batch_execute("SELECT nextval('invoice_numbers')")
        .await
        .unwrap();
}

/// Every ACL entry of A's objects and default privileges whose grantee is PUBLIC or B's role.
async fn crossing_entries(s: &Setup) -> Vec<String> {
    let sql = "\
        WITH t AS (SELECT oid FROM pg_roles WHERE rolname = ANY($1::text[])),
             x AS (SELECT oid FROM pg_roles WHERE rolname = ANY($2::text[]))
        SELECT 'relation ' || c.relname || ' ' || a.privilege_type
          FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a
          WHERE c.relowner IN (SELECT oid FROM t) AND (a.grantee = 0 OR a.grantee IN (SELECT oid FROM x))
        UNION ALL
        SELECT 'function ' || p.proname || ' ' || a.privilege_type
          FROM pg_proc p CROSS JOIN LATERAL aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
          WHERE p.proowner IN (SELECT oid FROM t) AND (a.grantee = 0 OR a.grantee IN (SELECT oid FROM x))
        UNION ALL
        SELECT 'type ' || y.typname || ' ' || a.privilege_type
          FROM pg_type y CROSS JOIN LATERAL aclexplode(coalesce(y.typacl, acldefault('T', y.typowner))) a
          WHERE y.typowner IN (SELECT oid FROM t) AND y.typtype IN ('d', 'e', 'r', 'm', 'b') AND y.typelem = 0
            AND (a.grantee = 0 OR a.grantee IN (SELECT oid FROM x))
        UNION ALL
        SELECT 'default ' || d.defaclobjtype::text || ' ' || a.privilege_type
          FROM pg_default_acl d CROSS JOIN LATERAL aclexplode(d.defaclacl) a
          WHERE d.defaclrole IN (SELECT oid FROM t) AND (a.grantee = 0 OR a.grantee IN (SELECT oid FROM x))";
    let mine = vec![s.a.names.owner.clone(), s.a.names.login.clone()];
    let theirs = vec![s.b.names.owner.clone(), s.b.names.login.clone()];
    s.observer
        .query(sql, &[&mine, &theirs])
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn views_functions_types_and_default_privileges_keep_no_grant_across_the_boundary() {
    let s = setup().await;
    let b = q(&s.b.names.login);
    s.a.client
        .batch_execute(&format!(
            "CREATE TABLE orders (id int, total int); \
             CREATE VIEW order_totals AS SELECT sum(total) FROM orders; \
             GRANT SELECT ON order_totals TO PUBLIC; \
             CREATE FUNCTION order_count() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM orders'; \
             GRANT EXECUTE ON FUNCTION order_count() TO {b}; \
             CREATE TYPE order_state AS ENUM ('open', 'paid'); \
             GRANT USAGE ON TYPE order_state TO {b}; \
             CREATE DOMAIN amount AS int CHECK (VALUE >= 0); \
             ALTER DEFAULT PRIVILEGES GRANT SELECT ON TABLES TO PUBLIC; \
             ALTER DEFAULT PRIVILEGES GRANT USAGE ON SEQUENCES TO {b}; \
             ALTER DEFAULT PRIVILEGES GRANT EXECUTE ON FUNCTIONS TO PUBLIC; \
             CREATE FUNCTION public_by_default() RETURNS int LANGUAGE sql AS 'SELECT 1'"
        ))
        .await
        .unwrap();
    assert!(!crossing_entries(&s).await.is_empty());
    // Bulkhead's own default privileges kept the domain `amount` from PUBLIC: only A's own grants are found.
    let report = repair(&s.admin, &s.a.names).await;
    for object in [
        "table bk_tenant_a_80a707af.order_totals to PUBLIC",
        "function bk_tenant_a_80a707af.order_count() to bk_tenant_b",
        "type bk_tenant_a_80a707af.order_state to bk_tenant_b",
        "function bk_tenant_a_80a707af.public_by_default() to PUBLIC",
        "default privileges of bk_tenant_a_80a707af_login on tables to PUBLIC",
        "default privileges of bk_tenant_a_80a707af_login on sequences to bk_tenant_b",
        "default privileges of bk_tenant_a_80a707af_login on functions to PUBLIC",
    ] {
        mentions(&report, object);
    }
    assert_eq!(crossing_entries(&s).await, Vec::<String>::new());
    // New objects start without a grant across the boundary.
    s.a.client
        .batch_execute(
            "CREATE TABLE later (id int); CREATE SEQUENCE later_ids; \
             CREATE FUNCTION later_fn() RETURNS int LANGUAGE sql AS 'SELECT 1'; CREATE TYPE later_t AS (x int)",
        )
        .await
        .unwrap();
    assert_eq!(crossing_entries(&s).await, Vec::<String>::new());
    // A repair with nothing to do reports nothing.
    assert_eq!(repair(&s.admin, &s.a.names).await, Vec::<String>::new());
    // A's own use is untouched.
    s.a.client
        .batch_execute(
            "INSERT INTO orders VALUES (1, 5); SELECT * FROM order_totals; SELECT order_count(); \
             SELECT 'open'::order_state; SELECT 3::amount; INSERT INTO later VALUES (1); SELECT later_fn()",
        )
        .await
        .unwrap();
}

async fn connect(url: &str) -> Client {
    bulkhead_e2e::postgres::connect_url(url).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_takes_back_a_tenant_grant_at_its_next_sweep_and_names_the_object() {
    bulkhead_e2e::init_test_logging();
    let f = DatabaseFixture::start(|database| {
        // No resync during the test: only the sweep can find the grant.
        database.resync = Duration::from_secs(3600);
        database.grant_sweep = Duration::from_secs(1);
    })
    .await
    .unwrap();
    let alpha = connect(&f.schema_tenant("alpha").await.unwrap()).await;
    let beta = connect(&f.schema_tenant("beta").await.unwrap()).await;

    let oid: u32 = alpha
        .query_one("SELECT lo_from_bytea(0, 'alpha-contract'::bytea)", &[])
        .await
        .unwrap()
        .get(0);
    alpha
        .batch_execute(&format!("GRANT SELECT ON LARGE OBJECT {oid} TO PUBLIC"))
        .await
        .unwrap();
    let note = f
        .event("DatabaseGrantsRevoked", &format!("large object {oid} to PUBLIC"))
        .await
        .unwrap();
    assert!(note.contains("crossed the tenant's boundary"), "{note}");
    refused(&beta, &format!("SELECT lo_get({oid})")).await;
}
