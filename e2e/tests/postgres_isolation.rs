//! Schema isolation against a real PostgreSQL (15 unless `BULKHEAD_PG_VERSION` says otherwise), provisioned by
//! the operator's admin of `BULKHEAD_PG_ADMIN` (the superuser, or a CREATEROLE CREATEDB role as on managed
//! services): Tenant A's login role tries what an attacker (or a bug) would try against Tenant B, and every
//! attempt must be refused, while a superuser control succeeds. The leaks that schema mode cannot prevent are
//! pinned as they are today, so any change is noticed; `isolation: Database` exists for tenants that cannot
//! accept them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail the test by panicking

use bulkhead_e2e::postgres::{AdminKind, Postgres};
use bulkhead_operator::postgres::naming::{Names, names};
use bulkhead_operator::postgres::provision;
use postgres_protocol::password::scram_sha_256;
use tokio_postgres::Client;

const DB: &str = "app";
const LIMIT: i32 = 3;

struct Tenant {
    names: Names,
    password: String,
}

/// The server with the shared database `app` (owned by the operator's admin) hardened, and a connection of the
/// operator's admin to it: what the provisioning code gets in the operator.
async fn server() -> (Postgres, Client) {
    let pg = Postgres::start().await.expect("postgres");
    pg.create_database_for_admin(DB).await.unwrap();
    let admin = pg.connect_operator_admin(DB).await.unwrap();
    let hardening = provision::harden(&admin, DB).await.unwrap();
    // The operator knows, and says, what its admin could not take from PUBLIC.
    assert_eq!(hardening.gaps, expected_gaps(&pg).await, "{hardening:?}");
    assert_eq!(
        hardening.lockdown.is_complete(),
        pg.admin_kind() == AdminKind::Superuser,
        "{hardening:?}"
    );
    (pg, admin)
}

/// What the hardening leaves PUBLIC: nothing with a superuser admin. An admin that is not one owns neither
/// `postgres`, `template1` and the catalog, nor, before PostgreSQL 15, schema `public` of the shared database.
async fn expected_gaps(pg: &Postgres) -> Vec<String> {
    if pg.admin_kind() == AdminKind::Superuser {
        return Vec::new();
    }
    let mut gaps = vec![
        "PUBLIC may connect to database postgres".to_owned(),
        "PUBLIC may connect to database template1".to_owned(),
    ];
    if pg.major_version().await.unwrap() < 15 {
        gaps.push("PUBLIC may create in schema public".to_owned());
    }
    gaps.extend(["pg_stats", "pg_stats_ext", "pg_stats_ext_exprs"].map(|v| format!("PUBLIC may read {v}")));
    gaps
}

/// Whether the hardening of the shared database could take `gap` from PUBLIC with this admin.
async fn left_open(pg: &Postgres, gap: &str) -> bool {
    expected_gaps(pg).await.iter().any(|g| g == gap)
}

/// A superuser connection to the shared database: the trusted observer for controls and catalog reads.
async fn superuser(pg: &Postgres) -> Client {
    pg.connect_as("postgres", pg.superuser_password(), DB)
        .await
        .unwrap()
}

async fn provision(admin: &Client, tenant: &str, customer: Option<&str>, password: &str) -> Tenant {
    let n = names(tenant, customer);
    provision::provision_schema(admin, DB, &n, &scram_sha_256(password.as_bytes()), LIMIT)
        .await
        .unwrap();
    Tenant {
        names: n,
        password: password.into(),
    }
}

async fn setup() -> (Postgres, Client, Tenant, Tenant) {
    let (pg, admin) = server().await;
    let a = provision(&admin, "tenant-a", None, "pw-a-1f8e").await;
    let b = provision(&admin, "tenant-b", None, "pw-b-77c2").await;
    (pg, admin, a, b)
}

/// Runs `sql` and returns the server's error message, failing the test unless it was refused for lack of
/// privilege (SQLSTATE 42501), so a typo or syntax error cannot pass for a denial.
async fn denied(client: &Client, sql: &str) -> String {
    match client.batch_execute(sql).await {
        Ok(()) => panic!("tenant A was allowed to run: {sql}"),
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
            db.message().to_owned()
        }
    }
}

/// A connection of `who` to `database` listening on `channel`, and the payloads it receives, in order.
async fn listen(
    pg: &Postgres,
    who: &Tenant,
    database: &str,
    channel: &str,
) -> (Client, tokio::sync::mpsc::UnboundedReceiver<String>) {
    pg.listen(&who.names.login, &who.password, database, channel)
        .await
        .unwrap()
}

/// The single count a query with one text parameter returns.
async fn count(client: &Client, sql: &str, arg: &str) -> i64 {
    client.query_one(sql, &[&arg]).await.unwrap().get(0)
}

fn q(ident: &str) -> String {
    postgres_protocol::escape::escape_identifier(ident)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_a_cannot_reach_tenant_b() {
    let (pg, _admin, a, b) = setup().await;
    attack(&pg, &superuser(&pg).await, &a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_cannot_reach_its_sibling_or_its_tenant() {
    let (pg, admin) = server().await;
    let tenant = provision(&admin, "msp", None, "pw-msp").await;
    let dental = provision(&admin, "msp", Some("dental"), "pw-dental").await;
    let lawfirm = provision(&admin, "msp", Some("lawfirm"), "pw-lawfirm").await;
    let su = superuser(&pg).await;
    attack(&pg, &su, &dental, &lawfirm).await;
    attack(&pg, &su, &lawfirm, &tenant).await;
}

/// Everything `a` tries against `b`, each expected to be refused, with a superuser control through `su`.
async fn attack(pg: &Postgres, su: &Client, a: &Tenant, b: &Tenant) {
    let (bs, as_) = (q(&b.names.place), q(&a.names.place));

    // B's data, as B's stack would create it: a table and a large object.
    let b_client = pg.connect_as(&b.names.login, &b.password, DB).await.unwrap();
    b_client
        .batch_execute(&format!(
            "CREATE TABLE {bs}.secrets (v text); INSERT INTO {bs}.secrets VALUES ('b-secret')"
        ))
        .await
        .unwrap();
    let lo: u32 = b_client
        .query_one("SELECT lo_from_bytea(0, 'b-large-object')::oid", &[])
        .await
        .unwrap()
        .get(0);
    // A long query of B's, to look for in pg_stat_activity.
    let b_busy = pg.connect_as(&b.names.login, &b.password, DB).await.unwrap();
    let b_pid: i32 = b_busy
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let sleeper = tokio::spawn(async move {
        b_busy
            .batch_execute("SELECT pg_sleep(20) -- b-secret-query")
            .await
    });

    let a_client = pg.connect_as(&a.names.login, &a.password, DB).await.unwrap();
    // Positive control for A: its own schema works, including DDL, through nothing but its credentials.
    a_client
        .batch_execute("CREATE TABLE notes (v text); INSERT INTO notes VALUES ('a-data')")
        .await
        .expect("A works in its own schema");
    let own: String = a_client
        .query_one(&format!("SELECT v FROM {as_}.notes"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(own, "a-data");

    let attempts = [
        format!("SELECT * FROM {bs}.secrets"),
        format!("INSERT INTO {bs}.secrets VALUES ('a-was-here')"),
        format!("CREATE TABLE {bs}.planted (v text)"),
        "CREATE SCHEMA evil".to_owned(),
        format!("SET ROLE {}", q(&b.names.login)),
        format!("SET ROLE {}", q(&b.names.owner)),
        format!("SET SESSION AUTHORIZATION {}", q(&b.names.login)),
        "CREATE TEMP TABLE t (v text)".to_owned(),
        format!("SELECT lo_get({lo})"),
        "SELECT * FROM pg_largeobject".to_owned(),
        "CREATE EXTENSION pgcrypto".to_owned(),
        "CREATE EXTENSION dblink".to_owned(),
        "SELECT pg_read_file('/etc/passwd')".to_owned(),
        "COPY (SELECT 1) TO PROGRAM 'true'".to_owned(),
        "SELECT pg_ls_dir('.')".to_owned(),
        format!("SELECT pg_cancel_backend({b_pid})"),
        format!("SELECT pg_terminate_backend({b_pid})"),
        format!("ALTER ROLE {} CONNECTION LIMIT 100", q(&a.names.login)),
        format!("ALTER ROLE {} SUPERUSER", q(&a.names.login)),
        format!("GRANT {} TO {}", q(&b.names.owner), q(&a.names.login)),
    ];
    for sql in &attempts {
        let message = denied(&a_client, sql).await;
        eprintln!("denied: {sql:<70} -> {message}");
    }
    // Schema public: closed, unless the admin cannot close it (PostgreSQL 14 with an admin that is not a
    // superuser), which the operator reports.
    let public = "CREATE TABLE public.planted (v text)";
    if left_open(pg, "PUBLIC may create in schema public").await {
        a_client.batch_execute(public).await.unwrap();
        a_client.batch_execute("DROP TABLE public.planted").await.unwrap();
    } else {
        denied(&a_client, public).await;
    }

    // B's query text is hidden from A, though the session itself is visible (a pinned leak, below).
    let text: String = a_client
        .query_one("SELECT query FROM pg_stat_activity WHERE pid = $1", &[&b_pid])
        .await
        .unwrap()
        .get(0);
    assert_eq!(text, "<insufficient privilege>");

    // Other databases: postgres and template1 refuse A, unless the admin could not take CONNECT from PUBLIC
    // there (it does not own them), which the operator reports.
    for db in ["postgres", "template1"] {
        let result = pg.connect_as(&a.names.login, &a.password, db).await;
        if left_open(pg, &format!("PUBLIC may connect to database {db}")).await {
            assert!(result.is_ok(), "{db}: {:?}", result.err());
        } else {
            let err = result.unwrap_err();
            assert!(
                format!("{err:?}").contains("permission denied for database"),
                "{db}: {err:?}"
            );
        }
    }

    // The connection limit holds: A already has one session; LIMIT allows LIMIT - 1 more, not one beyond.
    let mut extra = Vec::new();
    for _ in 1..LIMIT {
        extra.push(pg.connect_as(&a.names.login, &a.password, DB).await.unwrap());
    }
    let err = pg.connect_as(&a.names.login, &a.password, DB).await.unwrap_err();
    assert!(
        format!("{err:?}").contains("too many connections for role"),
        "{err:?}"
    );

    // Superuser control: everything A was refused is possible for an administrator.
    let secret: String = su
        .query_one(&format!("SELECT v FROM {bs}.secrets"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(secret, "b-secret");
    let bytes: Vec<u8> = su
        .query_one(&format!("SELECT lo_get({lo})"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(bytes, b"b-large-object");
    let full: String = su
        .query_one("SELECT query FROM pg_stat_activity WHERE pid = $1", &[&b_pid])
        .await
        .unwrap()
        .get(0);
    assert!(full.contains("b-secret-query"));
    assert!(
        su.query_one(&format!("SELECT pg_cancel_backend({b_pid})"), &[])
            .await
            .unwrap()
            .get::<_, bool>(0)
    );
    assert!(
        sleeper.await.unwrap().is_err(),
        "B's query was cancelled by the administrator"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaks_schema_mode_cannot_prevent_are_pinned() {
    let (pg, _admin, a, b) = setup().await;
    let bs = q(&b.names.place);
    let b_client = pg.connect_as(&b.names.login, &b.password, DB).await.unwrap();
    b_client
        .batch_execute(&format!("CREATE TABLE {bs}.customer_invoices (amount int)"))
        .await
        .unwrap();
    let a_client = pg.connect_as(&a.names.login, &a.password, DB).await.unwrap();

    // Catalog names: A sees B's schema and table names (not their rows). Use isolation: Database to avoid this.
    let seen: i64 = a_client
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = 'customer_invoices'",
            &[&b.names.place],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        seen, 1,
        "schema mode leaks catalog names; if this changed, update the docs"
    );

    // LISTEN/NOTIFY has no privilege check within a database: A hears B's notifications.
    let (a_listener, mut rx) = listen(&pg, &a, DB, "jobs").await;
    b_client
        .batch_execute("NOTIFY jobs, 'b-private-payload'")
        .await
        .unwrap();
    a_listener.batch_execute("NOTIFY jobs, 'a-marker'").await.unwrap();
    assert_eq!(
        rx.recv().await.as_deref(),
        Some("b-private-payload"),
        "schema mode leaks LISTEN/NOTIFY; use isolation: Database"
    );
    assert_eq!(rx.recv().await.as_deref(), Some("a-marker"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_is_idempotent_and_teardown_leaves_nothing() {
    let (pg, admin, a, _b) = setup().await;
    // Again, with a new password: nothing fails, and the new password is the one that works.
    provision::provision_schema(&admin, DB, &a.names, &scram_sha_256(b"rotated-pw"), LIMIT)
        .await
        .unwrap();
    assert!(
        pg.connect_as(&a.names.login, &a.password, DB).await.is_err(),
        "old password refused"
    );
    let client = pg.connect_as(&a.names.login, "rotated-pw", DB).await.unwrap();
    // Objects that outlive DROP SCHEMA unless DROP OWNED runs: a large object.
    client
        .batch_execute("CREATE TABLE t (v int); SELECT lo_from_bytea(0, 'x')")
        .await
        .unwrap();
    drop(client);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;

    provision::drop_schema(&admin, &a.names).await.unwrap();
    provision::drop_schema(&admin, &a.names)
        .await
        .expect("a second teardown is harmless");
    let su = superuser(&pg).await;
    assert_eq!(
        count(
            &su,
            "SELECT count(*) FROM pg_namespace WHERE nspname = $1",
            &a.names.place
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &su,
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE $1 || '%'",
            &a.names.place
        )
        .await,
        0
    );
    assert_eq!(
        su.query_one("SELECT count(*) FROM pg_largeobject_metadata", &[])
            .await
            .unwrap()
            .get::<_, i64>(0),
        0,
        "the large object went with DROP OWNED"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_mode_closes_the_schema_mode_leaks() {
    let (pg, admin) = server().await;
    let admin_config: tokio_postgres::Config = pg.operator_admin_dsn(DB).await.unwrap().parse().unwrap();
    let mut tenants = Vec::new();
    for (name, password) in [("tenant-a", "pw-a"), ("tenant-b", "pw-b")] {
        let n = names(name, None);
        provision::provision_database(
            &admin,
            &admin_config,
            &n,
            &scram_sha_256(password.as_bytes()),
            LIMIT,
        )
        .await
        .unwrap();
        provision::provision_database(
            &admin,
            &admin_config,
            &n,
            &scram_sha_256(password.as_bytes()),
            LIMIT,
        )
        .await
        .expect("idempotent");
        tenants.push(Tenant {
            names: n,
            password: password.into(),
        });
    }
    let (a, b) = (&tenants[0], &tenants[1]);

    // Each works in its own database, through nothing but its credentials.
    let b_client = pg
        .connect_as(&b.names.login, &b.password, &b.names.place)
        .await
        .unwrap();
    b_client
        .batch_execute(
            "CREATE TABLE customer_invoices (amount int); INSERT INTO customer_invoices VALUES (42)",
        )
        .await
        .unwrap();
    let a_client = pg
        .connect_as(&a.names.login, &a.password, &a.names.place)
        .await
        .unwrap();
    a_client
        .batch_execute("CREATE TABLE notes (v text)")
        .await
        .unwrap();

    // A cannot connect to B's database, nor to the shared one; nor to postgres or template1 where the admin could
    // take CONNECT from PUBLIC.
    for db in [b.names.place.as_str(), DB, "postgres", "template1"] {
        let result = pg.connect_as(&a.names.login, &a.password, db).await;
        if left_open(&pg, &format!("PUBLIC may connect to database {db}")).await {
            assert!(result.is_ok(), "{db}: {:?}", result.err());
            continue;
        }
        let err = result.unwrap_err();
        assert!(
            format!("{err:?}").contains("permission denied for database"),
            "{db}: {err:?}"
        );
    }
    // Nor create anything outside its schema in its own database (where PostgreSQL 14 lets only a superuser
    // close schema public; only A can connect to its database either way).
    if !left_open(&pg, "PUBLIC may create in schema public").await {
        let message = denied(&a_client, "CREATE TABLE public.planted (v text)").await;
        assert!(message.contains("schema public"), "{message}");
    }

    // The schema-mode leaks are closed: B's table names are not in A's catalog, B's notifications do not reach A.
    let seen: i64 = a_client
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname = 'customer_invoices'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(seen, 0);
    let (a_listener, mut rx) = listen(&pg, a, &a.names.place, "jobs").await;
    b_client
        .batch_execute("NOTIFY jobs, 'b-private-payload'")
        .await
        .unwrap();
    // A's own notification, sent after B's, is the first A receives: B's never arrived.
    a_listener.batch_execute("NOTIFY jobs, 'a-marker'").await.unwrap();
    assert_eq!(rx.recv().await.as_deref(), Some("a-marker"));

    // Teardown drops the database (ending B's sessions) and both roles, and may run twice.
    drop(b_client);
    provision::drop_database(&admin, &b.names).await.unwrap();
    provision::drop_database(&admin, &b.names).await.unwrap();
    let su = superuser(&pg).await;
    assert_eq!(
        count(
            &su,
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &b.names.place
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &su,
            "SELECT count(*) FROM pg_roles WHERE rolname LIKE $1 || '%'",
            &b.names.place
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tenants_provisioned_at_once_all_succeed() {
    let (pg, _admin) = server().await;
    let locks = std::sync::Arc::new(provision::DdlLocks::default());
    let mut tasks = Vec::new();
    for i in 0..24 {
        let client = pg.connect_operator_admin(DB).await.unwrap();
        let locks = locks.clone();
        tasks.push(tokio::spawn(async move {
            let n = names(&format!("t{i}"), None);
            let _guard = locks.lock(DB).await;
            provision::provision_schema(&client, DB, &n, &scram_sha_256(b"pw"), LIMIT)
                .await
                .map(|_| n)
        }));
    }
    for task in tasks {
        let n = task.await.unwrap().expect("concurrent provisioning succeeds");
        pg.connect_as(&n.login, "pw", DB)
            .await
            .expect("each tenant can log in");
    }
}
