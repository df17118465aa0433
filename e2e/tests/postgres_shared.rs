//! What one tenant can still see or affect of another on the same PostgreSQL server, using nothing but the login role
//! Bulkhead hands out: every row of the "What each isolation mode still shares" table in docs/postgres.md, observed on
//! a real server, once with both tenants in Schema mode and once with both in Database mode. Tenant B creates what a
//! stack would (a table with defaults, a CHECK constraint, a partial index and a comment, a view, a function, an enum,
//! a sequence, rows), and tenant A looks for it. Leaks are asserted as they are, so a change in PostgreSQL or in
//! Bulkhead's hardening is noticed and the table updated. The server is hardened and the tenants provisioned by the
//! operator's admin of `BULKHEAD_PG_ADMIN` (the superuser, or a CREATEROLE CREATEDB role as on managed services), on
//! the major of `BULKHEAD_PG_VERSION`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail the test by panicking

use std::time::Duration;

use bulkhead_e2e::postgres::Postgres;
use bulkhead_operator::postgres::naming::{Names, names};
use bulkhead_operator::postgres::provision;
use postgres_protocol::password::scram_sha_256;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

/// The shared database of Schema mode.
const DB: &str = "app";
const LIMIT: i32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Schema,
    Database,
}

struct Tenant {
    names: Names,
    password: String,
    /// The database its credentials connect to: the shared one, or its own.
    database: String,
}

/// B's objects, by OID (what A can pass to catalog functions without naming B's schema).
struct Objects {
    table: u32,
    view: u32,
    /// The view's rewrite rule.
    rule: u32,
    function: u32,
    database: u32,
}

struct World {
    pg: Postgres,
    mode: Mode,
    /// `server_version_num`, for the rows whose behaviour differs by major.
    version: i32,
    a: Tenant,
    b: Tenant,
    b_objects: Objects,
    /// A session of each, for the rows that need no session of their own.
    a_client: Client,
    b_client: Client,
}

impl World {
    async fn connect(&self, who: &Tenant) -> Client {
        self.pg
            .connect_as(&who.names.login, &who.password, &who.database)
            .await
            .unwrap()
    }

    async fn b(&self) -> Client {
        self.connect(&self.b).await
    }

    fn schema(&self) -> bool {
        self.mode == Mode::Schema
    }
}

/// What B's stack creates, unqualified: its search_path is pinned to its own schema.
const B_OBJECTS: &str = "
CREATE TABLE b_invoices (
    id serial PRIMARY KEY,
    amount int DEFAULT 4242 CHECK (amount < 999999),
    note text DEFAULT 'b-default-secret');
CREATE INDEX b_invoices_note ON b_invoices (note) WHERE note <> 'b-index-secret';
INSERT INTO b_invoices (amount, note) SELECT g, 'row ' || g FROM generate_series(1, 5000) g;
ANALYZE b_invoices;
CREATE VIEW b_big_invoices AS SELECT id, amount FROM b_invoices WHERE amount > 31337;
CREATE FUNCTION b_secret_fn() RETURNS int LANGUAGE sql AS $$ SELECT 271828 $$;
COMMENT ON TABLE b_invoices IS 'b-comment-secret';
CREATE TYPE b_mood AS ENUM ('b-enum-secret');
CREATE SEQUENCE b_seq;
SELECT setval('b_seq', 777);
";

async fn world(mode: Mode, settings: &[&str]) -> World {
    let pg = Postgres::start_with_settings(settings).await.expect("postgres");
    // The shared database belongs to the operator's admin, which hardens the server and provisions both tenants.
    pg.create_database_for_admin(DB).await.unwrap();
    let admin = pg.connect_operator_admin(DB).await.unwrap();
    provision::harden(&admin, DB).await.unwrap();
    let admin_config: tokio_postgres::Config = pg.operator_admin_dsn(DB).await.unwrap().parse().unwrap();
    let mut tenants = Vec::new();
    for (name, password) in [("tenant-a", "pw-a-3b1d"), ("tenant-b", "pw-b-9e40")] {
        let n = names(name, None);
        let verifier = scram_sha_256(password.as_bytes());
        let database = match mode {
            Mode::Schema => {
                provision::provision_schema(&admin, DB, &n, &verifier, LIMIT)
                    .await
                    .unwrap();
                DB.to_owned()
            }
            Mode::Database => {
                provision::provision_database(&admin, &admin_config, &n, &verifier, LIMIT)
                    .await
                    .unwrap();
                n.place.clone()
            }
        };
        tenants.push(Tenant {
            names: n,
            password: password.into(),
            database,
        });
    }
    let b = tenants.pop().unwrap();
    let a = tenants.pop().unwrap();

    // B's objects, from a session that then ends: its exit flushes its activity statistics.
    let b_client = pg
        .connect_as(&b.names.login, &b.password, &b.database)
        .await
        .unwrap();
    b_client.batch_execute(B_OBJECTS).await.unwrap();
    let row = b_client
        .query_one(
            "SELECT 'b_invoices'::regclass::oid, 'b_big_invoices'::regclass::oid, 'b_secret_fn'::regproc::oid, \
             (SELECT oid FROM pg_database WHERE datname = current_database()), \
             (SELECT oid FROM pg_rewrite WHERE ev_class = 'b_big_invoices'::regclass)",
            &[],
        )
        .await
        .unwrap();
    let b_objects = Objects {
        table: row.get(0),
        view: row.get(1),
        function: row.get(2),
        database: row.get(3),
        rule: row.get(4),
    };
    drop(b_client);

    let version: i32 = admin
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .unwrap()
        .get(0);
    eprintln!(
        "{mode:?} mode on PostgreSQL server_version_num {version}, {} admin",
        pg.admin_kind()
    );
    let a_client = pg
        .connect_as(&a.names.login, &a.password, &a.database)
        .await
        .unwrap();
    let b_client = pg
        .connect_as(&b.names.login, &b.password, &b.database)
        .await
        .unwrap();
    World {
        pg,
        mode,
        version,
        a,
        b,
        b_objects,
        a_client,
        b_client,
    }
}

/// The SQLSTATE `sql` fails with; fails the test if it succeeds.
async fn sqlstate(client: &Client, sql: &str) -> SqlState {
    let err = client
        .batch_execute(sql)
        .await
        .err()
        .unwrap_or_else(|| panic!("expected an error from: {sql}"));
    err.as_db_error()
        .unwrap_or_else(|| panic!("{sql}: not a server error: {err}"))
        .code()
        .clone()
}

/// Polls a query returning one bigint until it reaches `at_least` (statistics are flushed asynchronously);
/// returns the last value either way.
async fn poll_at_least(client: &Client, sql: &str, params: &[&(dyn ToSql + Sync)], at_least: i64) -> i64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let value: i64 = client.query_one(sql, params).await.unwrap().get(0);
        if value >= at_least || tokio::time::Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A session of `who` listening on `channel`, and the payloads it receives, in order.
async fn listen(
    w: &World,
    who: &Tenant,
    channel: &str,
) -> (Client, tokio::sync::mpsc::UnboundedReceiver<String>) {
    w.pg.listen(&who.names.login, &who.password, &who.database, channel)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_schema_mode_shares() {
    let w = world(Mode::Schema, SETTINGS).await;
    every_row(&w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_database_mode_shares() {
    let w = world(Mode::Database, SETTINGS).await;
    every_row(&w).await;
}

/// Prepared transactions on (PostgreSQL's default is off), to show what an administrator who enables them shares.
const SETTINGS: &[&str] = &["max_prepared_transactions=4"];

/// Every row of that table (docs/postgres.md) that one server can show.
async fn every_row(w: &World) {
    rows_and_values(w).await;
    object_names(w).await;
    definitions(w).await;
    estimates_and_sizes(w).await;
    table_statistics(w).await;
    view_definitions_lock_the_view(w).await;
    definition_reads_hold_locks(w).await;
    advisory_locks(w).await;
    listen_notify(w).await;
    vacuum_horizon(w).await;
    database_counters(w).await;
    sessions(w).await;
    locks(w).await;
    roles(w).await;
    databases_and_disk(w).await;
    temporary_tables(w).await;
    server_settings(w).await;
    prepared_transactions(w).await;
    connections(w).await;
}

/// Rows and sequence values stay hidden in both modes: A holds no privilege on B's schema or its objects.
async fn rows_and_values(w: &World) {
    let a = &w.a_client;
    let table = format!(
        "{}.b_invoices",
        postgres_protocol::escape::escape_identifier(&w.b.names.place)
    );
    let expected = if w.schema() {
        SqlState::INSUFFICIENT_PRIVILEGE
    } else {
        SqlState::UNDEFINED_TABLE
    };
    assert_eq!(sqlstate(a, &format!("SELECT * FROM {table}")).await, expected);
    let last_values = a
        .query(
            "SELECT last_value FROM pg_sequences WHERE sequencename = 'b_seq'",
            &[],
        )
        .await
        .unwrap();
    match w.mode {
        // The sequence is listed (see the names), its value is not.
        Mode::Schema => {
            assert_eq!(last_values.len(), 1);
            assert_eq!(last_values[0].get::<_, Option<i64>>(0), None);
            let seq: u32 = a
                .query_one(
                    "SELECT oid FROM pg_class WHERE relname = 'b_seq' AND relkind = 'S'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            let last_value = format!("SELECT pg_sequence_last_value({seq})");
            if w.version >= 180_000 {
                // PostgreSQL 18 answers NULL where earlier majors refuse.
                let value: Option<i64> = a.query_one(&last_value, &[]).await.unwrap().get(0);
                assert_eq!(value, None);
            } else {
                assert_eq!(sqlstate(a, &last_value).await, SqlState::INSUFFICIENT_PRIVILEGE);
            }
        }
        Mode::Database => assert!(last_values.is_empty()),
    }
}

/// Catalog names: pg_catalog lists B's schema, tables, index, view, sequence, function, type, enum labels and
/// columns in Schema mode; information_schema filters by privilege and does not. Database mode: nothing.
async fn object_names(w: &World) {
    let a = &w.a_client;
    let row = a
        .query_one(
            "SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = $1),
                    (SELECT count(*) FROM pg_class
                      WHERE relname IN ('b_invoices', 'b_invoices_note', 'b_big_invoices', 'b_seq')),
                    (SELECT count(*) FROM pg_proc WHERE proname = 'b_secret_fn'),
                    (SELECT count(*) FROM pg_type WHERE typname = 'b_mood'),
                    (SELECT count(*) FROM pg_enum WHERE enumlabel = 'b-enum-secret'),
                    (SELECT count(*) FROM pg_attribute WHERE attrelid = $2 AND attname = 'note'),
                    (SELECT count(*) FROM information_schema.tables WHERE table_name = 'b_invoices')",
            &[&w.b.names.place, &w.b_objects.table],
        )
        .await
        .unwrap();
    let counts: Vec<i64> = (0..7).map(|i| row.get(i)).collect();
    let expected = match w.mode {
        Mode::Schema => [1, 4, 1, 1, 1, 1, 0],
        Mode::Database => [0; 7],
    };
    assert_eq!(
        counts, expected,
        "schema, relations, function, type, enum label, column, information_schema"
    );
}

/// Definitions, read by OID: function body, column defaults, CHECK constraint, index definition (with its
/// predicate), comment. Database mode: B's OIDs mean nothing in A's database.
async fn definitions(w: &World) {
    let a = &w.a_client;
    let o = &w.b_objects;
    let row = a
        .query_one(
            "SELECT (SELECT prosrc FROM pg_proc WHERE oid = $2),
                    pg_get_functiondef($2),
                    (SELECT string_agg(pg_get_expr(adbin, adrelid), ' ') FROM pg_attrdef WHERE adrelid = $1),
                    (SELECT string_agg(pg_get_constraintdef(oid), ' ') FROM pg_constraint WHERE conrelid = $1),
                    (SELECT string_agg(pg_get_indexdef(indexrelid), ' ') FROM pg_index WHERE indrelid = $1),
                    obj_description($1, 'pg_class')",
            &[&o.table, &o.function],
        )
        .await
        .unwrap();
    let texts: Vec<Option<String>> = (0..6).map(|i| row.get(i)).collect();
    match w.mode {
        Mode::Schema => {
            let wanted = [
                "271828",
                "271828",
                "b-default-secret",
                "999999",
                "b-index-secret",
                "b-comment-secret",
            ];
            for (text, secret) in texts.iter().zip(wanted) {
                assert!(
                    text.as_deref().is_some_and(|t| t.contains(secret)),
                    "{secret} in {text:?}"
                );
            }
        }
        Mode::Database => assert!(texts.iter().all(Option::is_none), "{texts:?}"),
    }
}

/// Row-count estimates and on-disk sizes of B's table.
async fn estimates_and_sizes(w: &World) {
    let a = &w.a_client;
    let row = a
        .query_one(
            "SELECT (SELECT reltuples::float8 FROM pg_class WHERE oid = $1),
                    (SELECT relpages FROM pg_class WHERE oid = $1),
                    pg_relation_size($1), pg_table_size($1), pg_total_relation_size($1)",
            &[&w.b_objects.table],
        )
        .await
        .unwrap();
    let (reltuples, relpages): (Option<f64>, Option<i32>) = (row.get(0), row.get(1));
    let sizes: Vec<Option<i64>> = (2..5).map(|i| row.get(i)).collect();
    match w.mode {
        Mode::Schema => {
            assert_eq!(reltuples, Some(5000.0), "the estimate after ANALYZE");
            assert!(relpages.is_some_and(|p| p > 0), "{relpages:?}");
            assert!(sizes.iter().all(|s| s.is_some_and(|s| s > 0)), "{sizes:?}");
        }
        Mode::Database => {
            assert_eq!((reltuples, relpages), (None, None));
            assert!(sizes.iter().all(Option::is_none), "{sizes:?}");
        }
    }
}

/// Per-table activity counters (pg_stat_user_tables).
async fn table_statistics(w: &World) {
    let a = &w.a_client;
    let t = &w.b_objects.table;
    match w.mode {
        Mode::Schema => {
            let inserted = poll_at_least(
                a,
                "SELECT coalesce((SELECT n_tup_ins FROM pg_stat_user_tables WHERE relid = $1), 0)",
                &[t],
                5000,
            )
            .await;
            assert_eq!(inserted, 5000, "A reads how many rows B inserted");
        }
        Mode::Database => {
            let row = a
                .query_one(
                    "SELECT (SELECT count(*) FROM pg_stat_user_tables WHERE relid = $1), \
                     pg_stat_get_tuples_inserted($1)",
                    &[t],
                )
                .await
                .unwrap();
            assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (0, 0));
        }
    }
}

/// Reading a view's definition (pg_views.definition, pg_get_viewdef) locks the table it reads until the
/// reader's transaction ends: A, idle in a transaction, blocks B's migrations.
async fn view_definitions_lock_the_view(w: &World) {
    let (a, b) = (&w.a_client, &w.b_client);
    b.batch_execute("SET lock_timeout = '500ms'").await.unwrap();
    // Takes an ACCESS EXCLUSIVE lock, as any ALTER TABLE of a migration does.
    let migration = "ALTER TABLE b_invoices ALTER COLUMN note SET DEFAULT 'b-default-secret'";
    a.batch_execute("BEGIN").await.unwrap();
    let row = a
        .query_one(
            "SELECT (SELECT definition FROM pg_views WHERE viewname = 'b_big_invoices'), pg_get_viewdef($1::oid)",
            &[&w.b_objects.view],
        )
        .await
        .unwrap();
    let definitions: [Option<String>; 2] = [row.get(0), row.get(1)];
    match w.mode {
        Mode::Schema => {
            for definition in &definitions {
                assert!(
                    definition.as_deref().is_some_and(|d| d.contains("31337")),
                    "{definition:?}"
                );
            }
            assert_eq!(
                sqlstate(b, migration).await,
                SqlState::LOCK_NOT_AVAILABLE,
                "A's open transaction holds a lock on B's table"
            );
            a.batch_execute("COMMIT").await.unwrap();
            b.batch_execute(migration)
                .await
                .expect("free once A's transaction ends");
        }
        Mode::Database => {
            assert_eq!(definitions, [None, None]);
            b.batch_execute(migration)
                .await
                .expect("A cannot lock B's objects");
            a.batch_execute("COMMIT").await.unwrap();
        }
    }
    b.batch_execute("RESET lock_timeout").await.unwrap();
}

/// Catalog reads that keep a lock on B's relations until A's transaction ends, as above. (The lock-taking
/// functions Bulkhead's hardening revokes from PUBLIC are not pinned here.)
async fn definition_reads_hold_locks(w: &World) {
    let a = &w.a_client;
    let o = &w.b_objects;
    let reads = [
        "SELECT definition FROM pg_views WHERE viewname = 'b_big_invoices'".to_owned(),
        format!("SELECT pg_get_viewdef({}::oid)", o.view),
        format!("SELECT pg_get_ruledef({})", o.rule),
    ];
    let b_relations = vec![o.table, o.view];
    for read in &reads {
        a.batch_execute("BEGIN").await.unwrap();
        a.batch_execute(read).await.unwrap();
        let held: i64 = a
            .query_one(
                "SELECT count(*) FROM pg_locks
                  WHERE pid = pg_backend_pid() AND locktype = 'relation' AND relation = ANY($1)",
                &[&b_relations],
            )
            .await
            .unwrap()
            .get(0);
        a.batch_execute("COMMIT").await.unwrap();
        if w.schema() {
            assert!(held > 0, "{read} holds no lock on B's relations");
        } else {
            assert_eq!(held, 0, "{read}");
        }
    }
}

/// Advisory locks: one key space per database.
async fn advisory_locks(w: &World) {
    let (a, b) = (&w.a_client, &w.b_client);
    a.batch_execute("SELECT pg_advisory_lock(777)").await.unwrap();
    let got: bool = b
        .query_one("SELECT pg_try_advisory_lock(777)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        got,
        !w.schema(),
        "A's advisory lock blocks B only in one database"
    );
    a.batch_execute("SELECT pg_advisory_unlock_all()").await.unwrap();
    b.batch_execute("SELECT pg_advisory_unlock_all()").await.unwrap();
}

/// LISTEN/NOTIFY: one channel namespace per database, without a privilege check.
async fn listen_notify(w: &World) {
    let b = &w.b_client;
    let (a_listener, mut rx) = listen(w, &w.a, "jobs").await;
    b.batch_execute("NOTIFY jobs, 'b-private-payload'").await.unwrap();
    a_listener.batch_execute("NOTIFY jobs, 'a-marker'").await.unwrap();
    if w.schema() {
        assert_eq!(rx.recv().await.as_deref(), Some("b-private-payload"));
    }
    // In Database mode A's own notification, sent after B's, is the first A receives.
    assert_eq!(rx.recv().await.as_deref(), Some("a-marker"));
}

/// A's open snapshot keeps B's deleted rows from being vacuumed, within one database. Everyone also sees that
/// A holds a snapshot (pg_stat_activity.backend_xmin).
async fn vacuum_horizon(w: &World) {
    let (a, b) = (&w.a_client, &w.b_client);
    a.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1")
        .await
        .unwrap();
    let a_snapshots: i64 = b
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = $1 AND backend_xmin IS NOT NULL",
            &[&w.a.names.login],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(a_snapshots, 1, "B sees that A holds a snapshot");
    delete_and_wait_for_statistics(w, b).await;
    match w.mode {
        Mode::Schema => {
            assert_eq!(vacuum_keeps(b).await, 1000, "A's snapshot keeps B's dead rows");
            a.batch_execute("COMMIT").await.unwrap();
            assert_eq!(
                vacuum_until_clean(b).await,
                0,
                "removed once A's snapshot is gone"
            );
        }
        Mode::Database => {
            assert_eq!(
                vacuum_until_clean(b).await,
                0,
                "A's snapshot does not hold back B's database"
            );
            a.batch_execute("COMMIT").await.unwrap();
        }
    }
    // Put the rows back for what follows.
    b.batch_execute(
        "INSERT INTO b_invoices (id, amount, note) SELECT g, g, 'row ' || g FROM generate_series(1, 1000) g",
    )
    .await
    .unwrap();
}

/// B deletes 1000 rows from a session that then ends, and waits until the statistics count them, so that they
/// cannot arrive after (and add to) what a VACUUM reports.
async fn delete_and_wait_for_statistics(w: &World, b: &Client) {
    let deleted = "SELECT n_tup_del FROM pg_stat_user_tables WHERE relname = 'b_invoices'";
    let before: i64 = b.query_one(deleted, &[]).await.unwrap().get(0);
    let session = w.b().await;
    session
        .batch_execute("DELETE FROM b_invoices WHERE id <= 1000")
        .await
        .unwrap();
    drop(session);
    let after = poll_at_least(b, deleted, &[], before + 1000).await;
    assert_eq!(after, before + 1000);
}

/// VACUUMs B's table and returns how many dead rows it had to keep, as it reported them.
async fn vacuum_keeps(b: &Client) -> i64 {
    let stats = "SELECT vacuum_count, n_dead_tup FROM pg_stat_user_tables WHERE relname = 'b_invoices'";
    let before: i64 = b.query_one(stats, &[]).await.unwrap().get(0);
    b.batch_execute("VACUUM b_invoices").await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let row = b.query_one(stats, &[]).await.unwrap();
        if row.get::<_, i64>(0) > before {
            return row.get(1);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the VACUUM never reached the statistics"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// [`vacuum_keeps`] until it keeps nothing, a few times: an autovacuum ANALYZE in the same database holds a
/// snapshot for a moment too.
async fn vacuum_until_clean(b: &Client) -> i64 {
    let mut kept = vacuum_keeps(b).await;
    for _ in 0..10 {
        if kept == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        kept = vacuum_keeps(b).await;
    }
    kept
}

/// Database-wide counters (pg_stat_database) of every database, B's included.
async fn database_counters(w: &World) {
    let a = &w.a_client;
    let inserted = poll_at_least(
        a,
        "SELECT tup_inserted FROM pg_stat_database WHERE datname = $1",
        &[&w.b.database],
        5000,
    )
    .await;
    assert!(
        inserted >= 5000,
        "A reads the activity of B's database: {inserted}"
    );
}

/// Sessions (pg_stat_activity): who is connected, to which database, under which application name; not the
/// query, its state or the client's address.
async fn sessions(w: &World) {
    let (a, b) = (&w.a_client, &w.b_client);
    b.batch_execute("SET application_name = 'b-app-secret'")
        .await
        .unwrap();
    let row = a
        .query_one(
            "SELECT usename::text, datname::text, query, state, client_addr::text
               FROM pg_stat_activity WHERE application_name = 'b-app-secret'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), w.b.names.login);
    assert_eq!(row.get::<_, String>(1), w.b.database);
    assert_eq!(row.get::<_, String>(2), "<insufficient privilege>");
    assert_eq!(row.get::<_, Option<String>>(3), None);
    assert_eq!(row.get::<_, Option<String>>(4), None);
    b.batch_execute("RESET application_name").await.unwrap();
}

/// Locks (pg_locks): every lock on the server, with its database, relation OID, advisory key, mode and pid.
async fn locks(w: &World) {
    let (a, b) = (&w.a_client, &w.b_client);
    let o = &w.b_objects;
    b.batch_execute("BEGIN; LOCK TABLE b_invoices IN SHARE MODE; SELECT pg_advisory_xact_lock(4242)")
        .await
        .unwrap();
    let row = a
        .query_one(
            "SELECT (SELECT count(*) FROM pg_locks
                      WHERE locktype = 'relation' AND database = $1 AND relation = $2 AND mode = 'ShareLock'),
                    (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = $1 AND objid = 4242),
                    (SELECT string_agg(relation::regclass::text, ' ') FROM pg_locks WHERE relation = $2)",
            &[&o.database, &o.table],
        )
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (1, 1));
    let name: String = row.get(2);
    if w.schema() {
        assert!(name.ends_with(".b_invoices"), "{name}");
    } else {
        assert_eq!(name, o.table.to_string(), "only an OID in another database");
    }
    b.batch_execute("COMMIT").await.unwrap();
}

/// Roles: names (which carry the tenant's and customer's names), Bulkhead's comment, connection limits and
/// per-database settings (the search_path names B's schema). Password verifiers stay hidden.
async fn roles(w: &World) {
    let a = &w.a_client;
    let row = a
        .query_one(
            "SELECT r.rolconnlimit, shobj_description(r.oid, 'pg_authid'),
                    (SELECT array_to_string(setconfig, ',') FROM pg_db_role_setting WHERE setrole = r.oid),
                    (SELECT count(*) FROM pg_roles WHERE rolname = $2)
               FROM pg_roles r WHERE r.rolname = $1",
            &[&w.b.names.login, &w.b.names.owner],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), LIMIT);
    assert_eq!(
        row.get::<_, Option<String>>(1),
        Some(format!("managed by bulkhead: {}", w.b.names.place))
    );
    assert_eq!(
        row.get::<_, Option<String>>(2),
        Some(format!("search_path={}", w.b.names.place))
    );
    assert_eq!(row.get::<_, i64>(3), 1, "the owner role too");
    assert!(w.b.names.login.contains("tenant_b"), "{}", w.b.names.login);
    assert_eq!(
        sqlstate(a, "SELECT rolpassword FROM pg_authid").await,
        SqlState::INSUFFICIENT_PRIVILEGE
    );
}

/// Databases and disk: pg_database lists every database; the size of B's database (the shared one in Schema
/// mode) and the server's total disk and WAL position, which grow with B's writes.
async fn databases_and_disk(w: &World) {
    let (a, b) = (&w.a_client, &w.b_client);
    let listed: i64 = a
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&w.b.database],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(listed, 1);
    let size_of_b = format!(
        "SELECT pg_database_size({})",
        postgres_protocol::escape::escape_literal(&w.b.database)
    );
    match w.mode {
        Mode::Schema => {
            let size: i64 = a.query_one(&size_of_b, &[]).await.unwrap().get(0);
            assert!(size > 0);
        }
        Mode::Database => assert_eq!(sqlstate(a, &size_of_b).await, SqlState::INSUFFICIENT_PRIVILEGE),
    }
    let server = "SELECT pg_tablespace_size('pg_default'), pg_current_wal_lsn()::text";
    let before = a.query_one(server, &[]).await.unwrap();
    // About 8 MB from B.
    b.batch_execute(
        "CREATE TABLE b_bulk AS SELECT g, repeat('x', 200) AS filler FROM generate_series(1, 32000) g",
    )
    .await
    .unwrap();
    let after = a.query_one(server, &[]).await.unwrap();
    let grown = after.get::<_, i64>(0) - before.get::<_, i64>(0);
    assert!(grown >= 4 << 20, "A sees the server's disk grow: {grown} bytes");
    let wal: f64 = a
        .query_one(
            "SELECT pg_wal_lsn_diff($1::text::pg_lsn, $2::text::pg_lsn)::float8",
            &[&after.get::<_, String>(1), &before.get::<_, String>(1)],
        )
        .await
        .unwrap()
        .get(0);
    assert!(wal >= f64::from(1 << 20), "A sees the WAL grow: {wal} bytes");
}

/// Temporary tables: refused in both modes (PUBLIC's TEMPORARY right is revoked everywhere).
async fn temporary_tables(w: &World) {
    let a = &w.a_client;
    assert_eq!(
        sqlstate(a, "CREATE TEMP TABLE t (v int)").await,
        SqlState::INSUFFICIENT_PRIVILEGE
    );
}

/// Server settings: readable by every role, except the superuser-only ones.
async fn server_settings(w: &World) {
    let a = &w.a_client;
    let readable: i64 = a
        .query_one("SELECT count(*) FROM pg_settings", &[])
        .await
        .unwrap()
        .get(0);
    assert!(readable > 200, "{readable}");
    assert_eq!(
        sqlstate(a, "SELECT current_setting('data_directory')").await,
        SqlState::INSUFFICIENT_PRIVILEGE
    );
}

/// Connections: A at its CONNECTION LIMIT does not keep B out.
async fn connections(w: &World) {
    let mut held = Vec::new();
    let refused = loop {
        match w
            .pg
            .connect_as(&w.a.names.login, &w.a.password, &w.a.database)
            .await
        {
            Ok(client) => held.push(client),
            Err(err) => break err,
        }
        assert!(held.len() <= LIMIT as usize, "A got past its limit");
    };
    assert!(
        format!("{refused:?}").contains("too many connections for role"),
        "{refused:?}"
    );
    let b = w.b().await;
    b.batch_execute("SELECT 1").await.expect("B still connects");
}

/// Prepared transactions, once an administrator enables them: every database's are listed with their name,
/// role and database.
async fn prepared_transactions(w: &World) {
    let (a, b) = (&w.a_client, &w.b_client);
    let default: String = a
        .query_one(
            "SELECT boot_val FROM pg_settings WHERE name = 'max_prepared_transactions'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(default, "0", "off unless an administrator enables them");
    b.batch_execute("BEGIN; INSERT INTO b_invoices (amount) VALUES (1); PREPARE TRANSACTION 'b-gid-secret'")
        .await
        .unwrap();
    let row = a
        .query_one(
            "SELECT owner::text, database::text FROM pg_prepared_xacts WHERE gid = 'b-gid-secret'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), w.b.names.login);
    assert_eq!(row.get::<_, String>(1), w.b.database);
    b.batch_execute("ROLLBACK PREPARED 'b-gid-secret'").await.unwrap();
}
