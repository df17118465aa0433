//! `bulkhead-stack db` as a process against a real PostgreSQL 15 on loopback, with roles, schemas and databases
//! provisioned by the operator's own code and a `DATABASE_URL` written as the operator writes it: the own schema
//! works, another tenant's schema and database are refused with SQLSTATE 42501, and neither the URL nor the
//! password is ever printed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail the test by panicking

mod common;

use std::process::Output;
use std::str::FromStr as _;

use bulkhead_e2e::postgres::Postgres;
use bulkhead_operator::postgres::credentials::{Location, database_url};
use bulkhead_operator::postgres::naming::{Names, names};
use bulkhead_operator::postgres::provision;
use postgres_protocol::password::scram_sha_256;
use tokio_postgres::Client;

use common::{closed_port, output_lines, stack};

/// The shared database of Schema isolation.
const SHARED: &str = "app";
const LIMIT: i32 = 5;

struct Tenant {
    names: Names,
    url: String,
    password: String,
}

struct Setup {
    pg: Postgres,
    admin: Client,
    /// Schema isolation, in the shared database.
    a: Tenant,
    b: Tenant,
    /// Database isolation: its own database.
    c: Tenant,
}

fn url(pg: &Postgres, user: &str, password: &str, database: &str) -> String {
    let location = Location {
        username: user.into(),
        host: pg.host().into(),
        port: pg.port(),
        database: database.into(),
        schema: String::new(),
        url_params: None,
    };
    database_url(&location, password)
}

async fn setup() -> Setup {
    let pg = Postgres::start().await.expect("postgres");
    pg.admin()
        .await
        .unwrap()
        .batch_execute(&format!("CREATE DATABASE {SHARED}"))
        .await
        .unwrap();
    let admin = pg
        .connect_as("postgres", pg.superuser_password(), SHARED)
        .await
        .unwrap();
    provision::harden(&admin, SHARED).await.unwrap();
    let tenant = |id: &str, password: &str| {
        let names = names(id, None);
        Tenant {
            url: url(&pg, &names.login, password, SHARED),
            names,
            password: password.into(),
        }
    };
    // Passwords as the operator generates them, long enough to be searched for in the output.
    let a = tenant("tenant-a", "Pw4TenantA0000000000000000000000000000001");
    let b = tenant("tenant-b", "Pw4TenantB0000000000000000000000000000002");
    for t in [&a, &b] {
        let verifier = scram_sha_256(t.password.as_bytes());
        provision::provision_schema(&admin, SHARED, &t.names, &verifier, LIMIT)
            .await
            .unwrap();
    }
    let mut c = tenant("tenant-c", "Pw4TenantC0000000000000000000000000000003");
    let admin_config = tokio_postgres::Config::from_str(&pg.admin_dsn()).unwrap();
    let verifier = scram_sha_256(c.password.as_bytes());
    provision::provision_database(&admin, &admin_config, &c.names, &verifier, LIMIT)
        .await
        .unwrap();
    c.url = url(&pg, &c.names.login, &c.password, &c.names.place);
    Setup { pg, admin, a, b, c }
}

/// Runs `bulkhead-stack db ARGS` with `DATABASE_URL` (when given) and returns its output and JSON lines.
async fn db(database_url: Option<&str>, args: &[&str]) -> (Output, Vec<serde_json::Value>) {
    let mut command = stack();
    command.arg("db").args(args).env_remove("DATABASE_URL");
    if let Some(url) = database_url {
        command.env("DATABASE_URL", url);
    }
    output_lines(&mut command).await
}

/// Fails unless neither stdout nor stderr mentions the tenant's password or URL.
fn assert_no_secret(output: &Output, tenant: &Tenant) {
    for stream in [&output.stdout, &output.stderr] {
        let text = String::from_utf8_lossy(stream);
        assert!(
            !text.contains(&tenant.password),
            "the password was printed: {text}"
        );
        assert!(!text.contains(&tenant.url), "the URL was printed: {text}");
    }
}

#[tokio::test]
async fn the_own_schema_works_and_other_tenants_are_refused() {
    let s = setup().await;
    let (a, b, c) = (&s.a, &s.b, &s.c);

    // B uses its schema first, so A's refusal is about privileges, not a missing table.
    let (output, lines) = db(Some(&b.url), &["--own"]).await;
    assert_eq!(output.status.code(), Some(0), "{lines:?}");
    assert_eq!(lines[0]["ok"], true, "{lines:?}");

    let args = [
        "--own",
        "--other-schema",
        &b.names.place,
        "--other-schema",
        "no_such\"schema",
        "--other-database",
        &c.names.place,
        "--other-database",
        "no_such_database",
        "--other-database",
        SHARED,
    ];
    let (output, lines) = db(Some(&a.url), &args).await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{lines:?} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_no_secret(&output, a);
    let [own, other, missing_schema, other_db, missing_db, shared] = lines.as_slice() else {
        panic!("one line per check: {lines:?}")
    };

    assert_eq!(own["check"], "own");
    assert_eq!(own["ok"], true, "{own}");
    assert_eq!(own["schema"], a.names.place.as_str());
    assert_eq!(own["database"], SHARED);
    assert_eq!(own["user"], a.names.login.as_str());
    assert_eq!(own["rows"], 1);

    assert_eq!(other["check"], "other-schema");
    assert_eq!(other["schema"], b.names.place.as_str());
    assert_eq!(other["ok"], false, "{other}");
    assert_eq!(other["sqlstate"], "42501", "{other}");
    assert_eq!(
        other["message"],
        format!("permission denied for schema {}", b.names.place)
    );
    assert_eq!(other["select"]["ok"], false);
    assert_eq!(other["select"]["sqlstate"], "42501");
    assert_eq!(other["create"]["ok"], false);
    assert_eq!(other["create"]["sqlstate"], "42501", "{other}");
    assert!(other.get("step").is_none());

    assert_eq!(missing_schema["schema"], "no_such\"schema");
    assert_eq!(missing_schema["ok"], false);
    // A select names a missing relation; a create, the missing schema.
    assert_eq!(missing_schema["sqlstate"], "42P01", "{missing_schema}");
    assert_eq!(missing_schema["create"]["sqlstate"], "3F000", "{missing_schema}");

    assert_eq!(other_db["check"], "other-database");
    assert_eq!(other_db["database"], c.names.place.as_str());
    assert_eq!(other_db["ok"], false);
    assert_eq!(other_db["sqlstate"], "42501", "{other_db}");
    assert_eq!(missing_db["sqlstate"], "3D000", "{missing_db}");
    assert_eq!(shared["database"], SHARED);
    assert_eq!(shared["ok"], true, "{shared}");

    // Another run adds a row to the same table.
    let (_, lines) = db(Some(&a.url), &["--own"]).await;
    assert_eq!(lines[0]["rows"], 2, "{lines:?}");

    // Database isolation: C's own schema lives in its own database; the shared one is refused.
    let (output, lines) = db(
        Some(&c.url),
        &[
            "--own",
            "--other-database",
            SHARED,
            "--other-schema",
            &a.names.place,
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{lines:?}");
    assert_no_secret(&output, c);
    assert_eq!(lines[0]["ok"], true, "{lines:?}");
    assert_eq!(lines[0]["schema"], c.names.place.as_str());
    assert_eq!(lines[0]["database"], c.names.place.as_str());
    // A's schema is not in C's database at all.
    assert_eq!(lines[1]["check"], "other-schema");
    assert_eq!(lines[1]["select"]["sqlstate"], "42P01", "{lines:?}");
    assert_eq!(lines[1]["create"]["sqlstate"], "3F000", "{lines:?}");
    assert_eq!(lines[2]["check"], "other-database");
    assert_eq!(lines[2]["sqlstate"], "42501", "{lines:?}");
    drop(s.pg);
}

#[tokio::test]
async fn a_privileged_login_succeeds_and_leaves_nothing_behind() {
    let s = setup().await;
    let admin_url = url(&s.pg, "postgres", s.pg.superuser_password(), SHARED);
    let (output, lines) = db(Some(&admin_url), &["--other-schema", &s.b.names.place]).await;
    assert_eq!(output.status.code(), Some(0), "{lines:?}");
    let line = &lines[0];
    assert_eq!(line["ok"], true, "{line}");
    // No table yet in B's schema, but the create went through.
    assert_eq!(line["select"]["sqlstate"], "42P01", "{line}");
    assert_eq!(line["create"]["ok"], true, "{line}");
    assert!(line["create"].get("sqlstate").is_none());
    let left: i64 = s
        .admin
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = 'bulkhead_probe_intrusion'",
            &[&s.b.names.place],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "the create was rolled back");
}

#[tokio::test]
async fn failures_to_log_in_and_missing_schemas_are_reported() {
    let s = setup().await;
    // A wrong password: the checks cannot run (exit 1), each line says why, and no password is shown.
    let wrong = Tenant {
        url: url(
            &s.pg,
            &s.a.names.login,
            "WrongPassword000000000000000000000000009",
            SHARED,
        ),
        names: s.a.names.clone(),
        password: "WrongPassword000000000000000000000000009".into(),
    };
    let (output, lines) = db(
        Some(&wrong.url),
        &["--own", "--other-schema", "x", "--other-database", "postgres"],
    )
    .await;
    assert_eq!(output.status.code(), Some(1), "{lines:?}");
    assert_no_secret(&output, &wrong);
    assert_eq!(lines.len(), 3, "{lines:?}");
    for line in &lines[..2] {
        assert_eq!(line["ok"], false);
        assert_eq!(line["step"], "connect", "{line}");
        assert_eq!(line["sqlstate"], "28P01", "{line}");
    }
    assert_eq!(lines[2]["check"], "other-database");
    assert_eq!(lines[2]["sqlstate"], "28P01");

    // A login whose search_path names no existing schema: the own check says where it stopped.
    s.admin
        .batch_execute(
            "CREATE ROLE lost LOGIN PASSWORD 'LostPassword00000000000000000000000000008'; \
             GRANT CONNECT ON DATABASE app TO lost; ALTER ROLE lost SET search_path = nowhere",
        )
        .await
        .unwrap();
    let lost = url(&s.pg, "lost", "LostPassword00000000000000000000000000008", SHARED);
    let (output, lines) = db(Some(&lost), &["--own"]).await;
    assert_eq!(output.status.code(), Some(0), "{lines:?}");
    assert_eq!(lines[0]["ok"], false, "{lines:?}");
    assert!(lines[0]["schema"].is_null(), "{lines:?}");
    assert_eq!(lines[0]["step"], "create");
    assert_eq!(lines[0]["sqlstate"], "3F000");

    // Nothing listening: no SQLSTATE, still a line.
    let closed = closed_port().await.port();
    let nowhere = format!("postgres://u:NowherePassword0000000000000000000007@127.0.0.1:{closed}/app");
    let (output, lines) = db(Some(&nowhere), &["--own", "--timeout-ms", "2000"]).await;
    assert_eq!(output.status.code(), Some(1), "{lines:?}");
    assert!(lines[0].get("sqlstate").is_none(), "{lines:?}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("NowherePassword"));
}

#[tokio::test]
async fn usage_errors_exit_2_without_the_url() {
    let (output, lines) = db(None, &["--own"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(lines.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("DATABASE_URL is not set"));

    let (output, _) = db(
        Some("postgres://u:BadUrlPassword00000001@db:notaport/app"),
        &["--own"],
    )
    .await;
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("BadUrlPassword"), "{stderr}");
    assert!(
        stderr.contains("not a valid PostgreSQL connection string"),
        "{stderr}"
    );

    // No check asked for.
    let (output, _) = db(Some("postgres://u@127.0.0.1:1/app"), &[]).await;
    assert_eq!(output.status.code(), Some(2));
}
