//! Some catalog functions tenants need for their own tables (`nextval` and the other sequence functions,
//! `satisfies_hash_partition`, `pg_get_viewdef`) lock a relation named by OID before checking privileges, so in
//! Schema isolation tenant A can hold a lock on tenant B's table in an open transaction and make B's DDL wait,
//! with B's queries queueing behind it. They cannot be revoked; instead the operator's sweep of the shared
//! database finds a session of one tenant holding a lock on another tenant's relation, terminates it and tells
//! the tenant with an Event. Against the real operator and a real PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail the test by panicking

use std::time::Duration;

use bulkhead_e2e::operator::DatabaseFixture;
use tokio_postgres::Client;

async fn connect(url: &str) -> Client {
    bulkhead_e2e::postgres::connect_url(url).await.unwrap()
}

/// A's session takes the lock through `call` (with `{oid}` for B's relation) and keeps its transaction open;
/// the sweep must end the session and B's DDL must then go through.
async fn lock_is_broken(call: &str, b_relation: &str, b_ddl: &str) {
    bulkhead_e2e::init_test_logging();
    let f = DatabaseFixture::start(|database| {
        // No resync during the test: only the sweep acts.
        database.resync = Duration::from_secs(3600);
        database.grant_sweep = Duration::from_secs(1);
    })
    .await
    .unwrap();
    let a = connect(&f.schema_tenant("alpha").await.unwrap()).await;
    let b = connect(&f.schema_tenant("beta").await.unwrap()).await;
    b.batch_execute(
        "CREATE TABLE orders (id int, k int) PARTITION BY HASH (k); \
         CREATE TABLE orders_0 PARTITION OF orders FOR VALUES WITH (MODULUS 1, REMAINDER 0); \
         CREATE VIEW order_ids AS SELECT id FROM orders",
    )
    .await
    .unwrap();
    // OIDs are in pg_class for every tenant to read.
    let oid: u32 = a
        .query_one(
            "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relname = $1 AND n.nspname LIKE 'bk_beta_%'",
            &[&b_relation],
        )
        .await
        .unwrap()
        .get(0);
    let call = call.replace("{oid}", &oid.to_string());
    // In a savepoint, so that a call that fails after taking the lock (nextval of a table) leaves the
    // transaction, and with it the lock, open.
    a.batch_execute("BEGIN; SAVEPOINT s").await.unwrap();
    let after = match a.batch_execute(&call).await {
        Ok(()) => "RELEASE SAVEPOINT s",
        Err(_) => "ROLLBACK TO SAVEPOINT s",
    };
    a.batch_execute(after).await.unwrap();

    let note = f.event("DatabaseLockAcrossTenants", "Tenant beta").await.unwrap();
    assert!(note.contains("was terminated"), "{note}");
    assert!(note.contains("bk_beta_"), "the Event names the relation: {note}");
    // A's session is gone; B's DDL is not held up (the lock timeout only keeps a failure from hanging).
    assert!(a.batch_execute("SELECT 1").await.is_err(), "A's session survived");
    b.batch_execute(&format!("SET lock_timeout = '10s'; {b_ddl}"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_through_nextval_of_another_tenants_table_is_broken() {
    lock_is_broken(
        "SELECT pg_catalog.nextval({oid}::regclass)",
        "orders_0",
        "TRUNCATE orders",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_through_satisfies_hash_partition_is_broken() {
    lock_is_broken(
        "SELECT pg_catalog.satisfies_hash_partition({oid}::oid, 1, 0, 1)",
        "orders",
        "ALTER TABLE orders ADD COLUMN note text",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_through_a_view_definition_is_broken() {
    lock_is_broken(
        "SELECT pg_catalog.pg_get_viewdef({oid}::oid)",
        "order_ids",
        "ALTER TABLE orders ADD COLUMN note text",
    )
    .await;
}
