//! The local PostgreSQL harness itself: it starts a real server of the selected major (`BULKHEAD_PG_VERSION`,
//! default 15) that is not run by root, logs in with passwords over TCP (and refuses wrong ones), provides the
//! operator's admin of either kind (`BULKHEAD_PG_ADMIN`), runs several servers side by side, and stops its server
//! when dropped.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail the test by panicking

use std::path::Path;
use std::time::Instant;

use bulkhead_e2e::postgres::{AdminKind, CREATEROLE_ADMIN, Postgres, PostgresError, SUPERUSER};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

async fn start() -> Postgres {
    let started = Instant::now();
    // Display, not Debug: the message says what to install, or ends in the server log's last lines.
    let pg = Postgres::start()
        .await
        .unwrap_or_else(|e| panic!("starting postgres ({}): {e}", e.category()));
    eprintln!("postgres ready on port {} in {:?}", pg.port(), started.elapsed());
    pg
}

fn assert_refused(result: Result<tokio_postgres::Client, PostgresError>) {
    match result {
        Ok(_) => panic!("login succeeded but should have been refused"),
        Err(PostgresError::Connect { ref source, .. }) => {
            assert_eq!(source.code(), Some(&SqlState::INVALID_PASSWORD), "{source}");
        }
        Err(other) => panic!("unexpected error ({}): {other}", other.category()),
    }
}

fn assert_denied(result: Result<(), tokio_postgres::Error>, what: &str) {
    let err = result
        .err()
        .unwrap_or_else(|| panic!("{what} succeeded but should have been refused"));
    let db = err
        .as_db_error()
        .unwrap_or_else(|| panic!("{what}: not a server error: {err}"));
    assert_eq!(
        db.code(),
        &SqlState::INSUFFICIENT_PRIVILEGE,
        "{what}: {}",
        db.message()
    );
}

#[tokio::test]
async fn starts_the_selected_postgres_not_as_root() {
    let pg = start().await;
    assert_eq!(pg.host(), "127.0.0.1");
    assert!(pg.admin_dsn().starts_with(&format!(
        "postgres://postgres:{}@127.0.0.1:",
        pg.superuser_password()
    )));

    let admin = pg.admin().await.unwrap();
    let major = bulkhead_e2e::postgres::selected_major().unwrap();
    let version: String = admin.query_one("SELECT version()", &[]).await.unwrap().get(0);
    assert!(version.contains(&format!("PostgreSQL {major}.")), "{version}");
    let is_super: bool = admin
        .query_one("SELECT rolsuper FROM pg_roles WHERE rolname = current_user", &[])
        .await
        .unwrap()
        .get(0);
    assert!(is_super);

    // The pid is the postmaster itself, running as a non-root user.
    let status = std::fs::read_to_string(format!("/proc/{}/status", pg.pid())).unwrap();
    assert!(status.lines().any(|l| l == "Name:\tpostgres"), "{status}");
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).unwrap();
    assert!(
        uid.split_whitespace().all(|u| u != "0"),
        "server runs as root: Uid {uid}"
    );

    // The admin DSN works with a plain tokio-postgres connect, too.
    let (client, connection) = tokio_postgres::connect(&pg.admin_dsn(), NoTls).await.unwrap();
    tokio::spawn(connection);
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);

    // TCP logins need the password, the superuser's too.
    assert_refused(pg.connect_as("postgres", "not-the-password", "postgres").await);
}

#[tokio::test]
async fn login_roles_connect_with_their_password_only() {
    let pg = start().await;
    let admin = pg.admin().await.unwrap();
    let password = "p@ss:w/rd %é?#"; // needs percent-encoding in a DSN
    admin
        .batch_execute(&format!("CREATE ROLE tenant_a LOGIN PASSWORD '{password}'"))
        .await
        .unwrap();
    // On its own: CREATE DATABASE cannot run in the implicit transaction of a multi-statement query.
    admin
        .batch_execute("CREATE DATABASE tenant_a OWNER tenant_a")
        .await
        .unwrap();

    let tenant = pg.connect_as("tenant_a", password, "tenant_a").await.unwrap();
    let row = tenant
        .query_one("SELECT current_user::text, current_database()::text", &[])
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("tenant_a".into(), "tenant_a".into())
    );

    // The same credentials through the DSN, percent-encoding and all.
    let dsn = pg.dsn("tenant_a", password, "tenant_a");
    assert!(dsn.contains("p%40ss%3Aw%2Frd%20%25%C3%A9%3F%23"), "{dsn}");
    let (client, connection) = tokio_postgres::connect(&dsn, NoTls).await.unwrap();
    tokio::spawn(connection);
    let user: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, "tenant_a");

    assert_refused(pg.connect_as("tenant_a", "p@ss:w/rd", "tenant_a").await);
    // No password at all fails too (the client may give up before the server answers).
    assert!(pg.connect_as("tenant_a", "", "tenant_a").await.is_err());
    assert_refused(pg.connect_as("nobody", password, "tenant_a").await);
}

#[tokio::test]
async fn two_servers_run_side_by_side() {
    let (a, b) = tokio::join!(Postgres::start(), Postgres::start());
    let (a, b) = (
        a.unwrap_or_else(|e| panic!("first server: {e}")),
        b.unwrap_or_else(|e| panic!("second server: {e}")),
    );
    assert_ne!(a.port(), b.port());
    assert_ne!(a.pid(), b.pid());
    assert_ne!(a.dir(), b.dir());
    assert_ne!(a.superuser_password(), b.superuser_password());

    let (admin_a, admin_b) = (a.admin().await.unwrap(), b.admin().await.unwrap());
    admin_a
        .batch_execute("CREATE TABLE only_in_a (id int)")
        .await
        .unwrap();
    let in_b: bool = admin_b
        .query_one("SELECT to_regclass('public.only_in_a') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!in_b, "a table created on one server shows up on the other");
    // Each password belongs to its own server.
    assert_refused(b.connect_as("postgres", a.superuser_password(), "postgres").await);
}

#[tokio::test]
async fn drop_stops_the_server_and_removes_its_dir() {
    let pg = start().await;
    let admin = pg.admin().await.unwrap();
    let backend: i32 = admin
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let (pid, port, dir) = (pg.pid(), pg.port(), pg.dir().to_path_buf());
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    assert!(Path::new(&format!("/proc/{backend}")).exists());

    drop(pg);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "postmaster {pid} still running"
    );
    assert!(
        !Path::new(&format!("/proc/{backend}")).exists(),
        "backend {backend} still running"
    );
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert!(admin.query_one("SELECT 1", &[]).await.is_err());
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still accepts connections"
    );
}

#[tokio::test]
async fn the_server_is_the_selected_major() {
    let pg = start().await;
    let selected = bulkhead_e2e::postgres::selected_major().unwrap();
    let major = pg.major_version().await.unwrap();
    assert_eq!(
        major, selected,
        "BULKHEAD_PG_VERSION selects {selected}, but the server runs {major} (does BULKHEAD_PG_BIN point elsewhere?)"
    );
    let admin = pg.admin().await.unwrap();
    let version: String = admin
        .query_one("SELECT current_setting('server_version')", &[])
        .await
        .unwrap()
        .get(0);
    assert!(version.starts_with(&format!("{selected}.")), "{version}");
    let num: String = admin
        .query_one("SHOW server_version_num", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(num.len(), 6, "{num}");
    assert!(num.starts_with(&selected.to_string()), "{num}");
}

#[tokio::test]
async fn the_superuser_admin_is_postgres_and_owns_its_database() {
    let mut pg = start().await;
    pg.set_admin_kind(AdminKind::Superuser);
    let (user, password) = pg.operator_admin().await.unwrap();
    assert_eq!(
        (user.as_str(), password.as_str()),
        (SUPERUSER, pg.superuser_password())
    );
    pg.create_database_for_admin("shared").await.unwrap();
    let observer = pg.admin().await.unwrap();
    let owner: String = observer
        .query_one(
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = 'shared'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, SUPERUSER);
    let client = pg.connect_operator_admin("shared").await.unwrap();
    let is_super: String = client.query_one("SHOW is_superuser", &[]).await.unwrap().get(0);
    assert_eq!(is_super, "on");
}

#[tokio::test]
async fn the_createrole_admin_is_no_superuser_but_may_create_roles_and_databases() {
    let mut pg = start().await;
    pg.set_admin_kind(AdminKind::CreateRole);
    let (user, password) = pg.operator_admin().await.unwrap();
    assert_eq!(user, CREATEROLE_ADMIN);
    assert_ne!(password, pg.superuser_password());
    assert!(password.len() >= 32, "a random password");
    // Asking again is harmless and gives the same role and password.
    assert_eq!(
        pg.operator_admin().await.unwrap(),
        (user.clone(), password.clone())
    );

    let observer = pg.admin().await.unwrap();
    let row = observer
        .query_one(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, rolbypassrls \
             FROM pg_roles WHERE rolname = $1",
            &[&user],
        )
        .await
        .unwrap();
    let attributes: [bool; 6] = std::array::from_fn(|i| row.get(i));
    assert_eq!(
        attributes,
        [false, true, true, true, false, false],
        "rolsuper, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, rolbypassrls"
    );

    // Its database is its own, and it logs in there with its password only.
    pg.create_database_for_admin("shared").await.unwrap();
    let owner: String = observer
        .query_one(
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = 'shared'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, CREATEROLE_ADMIN);
    assert_refused(pg.connect_as(&user, "not-the-password", "shared").await);
    let dsn = pg.operator_admin_dsn("shared").await.unwrap();
    let (client, connection) = tokio_postgres::connect(&dsn, NoTls).await.unwrap();
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT current_user::text, current_database()::text, current_setting('is_superuser')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, String>(2)
        ),
        (CREATEROLE_ADMIN.to_owned(), "shared".to_owned(), "off".to_owned())
    );

    // What CREATEROLE and CREATEDB allow, and what they do not.
    client
        .batch_execute("CREATE SCHEMA admin_owned; CREATE ROLE some_tenant NOLOGIN")
        .await
        .unwrap();
    client
        .batch_execute("CREATE DATABASE some_tenant_db")
        .await
        .unwrap();
    assert_denied(
        client.batch_execute("CREATE ROLE would_be_root SUPERUSER").await,
        "CREATE ROLE ... SUPERUSER",
    );
    assert_denied(
        client.batch_execute("ALTER ROLE postgres PASSWORD 'taken'").await,
        "ALTER ROLE postgres",
    );
    assert_denied(
        client.batch_execute("SELECT rolpassword FROM pg_authid").await,
        "reading pg_authid",
    );
}
