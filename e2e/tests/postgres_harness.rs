//! The local PostgreSQL 15 harness itself: it starts a real server that is not run by root, logs in with
//! passwords over TCP (and refuses wrong ones), runs several servers side by side, and stops its server when
//! dropped.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail the test by panicking

use std::path::Path;
use std::time::Instant;

use bulkhead_e2e::postgres::{Postgres, PostgresError};
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

#[tokio::test]
async fn starts_postgres_15_not_as_root() {
    let pg = start().await;
    assert_eq!(pg.host(), "127.0.0.1");
    assert!(pg.admin_dsn().starts_with(&format!(
        "postgres://postgres:{}@127.0.0.1:",
        pg.superuser_password()
    )));

    let admin = pg.admin().await.unwrap();
    let version: String = admin.query_one("SELECT version()", &[]).await.unwrap().get(0);
    assert!(version.contains("PostgreSQL 15"), "{version}");
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
