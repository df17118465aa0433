//! Catalog functions that lock another tenant's relations, against a real PostgreSQL (the harness's major,
//! `BULKHEAD_PG_VERSION`). Tenant A names tenant B's relations by OID and calls every PUBLIC function that takes
//! an OID or `regclass` with them, then looks for locks it still holds on them. The set it finds must be the
//! list in `bulkhead_operator::postgres::lockdown` for this major, so a new PostgreSQL with one more such function
//! fails here and names it. The hardening runs as the operator's admin of `BULKHEAD_PG_ADMIN`. With a superuser
//! admin the revoked ones are refused (42501) afterwards and B's DDL no longer waits for A. An admin that does not
//! own the catalog (a CREATEROLE CREATEDB role, as on managed services) cannot revoke them: they keep locking,
//! the lockdown reports them as still open, and that is pinned too (Database mode is the closure for such an
//! admin). The ones left open on purpose are pinned as they are; and B's own hash-partitioned tables keep
//! working.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail the test by panicking

use std::collections::{BTreeMap, BTreeSet};

use bulkhead_e2e::postgres::{AdminKind, Postgres};
use bulkhead_operator::postgres::lockdown::{self, Disposition, LOCK_FUNCTIONS};
use bulkhead_operator::postgres::naming::{Names, names};
use bulkhead_operator::postgres::provision;
use postgres_protocol::password::scram_sha_256;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, SimpleQueryMessage};

const DB: &str = "app";
const LIMIT: i32 = 5;
/// How long B's DDL may wait for a lock before the test calls it blocked (a guard against hanging, not a
/// timing assertion: without A's lock the statement needs no wait at all).
const LOCK_GUARD: &str = "1s";

/// The functions the probe calls: every plain function with an OID-like argument, except those that sleep,
/// signal, touch large objects, files, replication or advisory locks. Functions that take a relation by name
/// (text) are left out: resolving another tenant's name needs USAGE on its schema, which fails before any lock.
const CANDIDATES: &str = r"SELECT p.oid FROM pg_proc p
 WHERE p.prokind = 'f' AND p.pronargs BETWEEN 1 AND 6
   AND p.proargtypes::oid[] && ARRAY['oid'::regtype, 'regclass'::regtype, 'oid[]'::regtype, 'regclass[]'::regtype,
                                     'oidvector'::regtype]::oid[]
   AND NOT p.proargtypes::oid[] && ARRAY['internal'::regtype, 'refcursor'::regtype]::oid[]
   AND p.proname !~ '^(pg_sleep|pg_terminate_backend|pg_cancel_backend|lo_|pg_advisory|pg_try_advisory|pg_notify|pg_stat_reset|pg_promote|pg_reload_conf|pg_rotate_logfile|pg_switch_wal|pg_create_|pg_drop_replication_slot|pg_replication_|pg_logical_|pg_copy_|pg_file_|pg_read_|pg_ls_|pg_log_|pg_backup|pg_start_backup|pg_stop_backup|pg_wal_replay|pg_import_system_collations|pg_sync_replication_slots|set_config|binary_upgrade_)'
 ORDER BY p.oid";

/// Calls the function `probe.fn` with every relation of schema `probe.victim` (and their TOAST tables and
/// indexes), and with the OIDs of the objects that hang off them (rules, constraints, triggers, column defaults,
/// statistics objects, policies) and of the schema's functions and types, in each of its OID-like argument
/// positions, with integers all 0, all 1, or first 1 and the rest 0,
/// each call in its own subtransaction. A lock on a victim held after the call returned is "keeps"; one that
/// survives the rollback of the subtransaction (a failed call, caught) is "leaks" and ends the probe of this
/// function, since the lock then stays until the transaction ends. The hits go to `probe.hits`, one a line:
/// signature|relkind called with|what is held|the call.
const PROBE: &str = r#"
DO $probe$
DECLARE
  fn oid := current_setting('probe.fn')::oid;
  victim_schema regnamespace := current_setting('probe.victim')::regnamespace;
  ident_types oid[] := ARRAY['oid'::regtype, 'regclass'::regtype, 'oid[]'::regtype, 'regclass[]'::regtype,
    'oidvector'::regtype]::oid[];
  victims oid[];
  hits text[] := '{}';
  f record;
  r record;
  n_ident int;
  target int;
  variant int;
  i int;
  ident_pos int;
  first_int boolean;
  t text;
  val text;
  args text[];
  call text;
  held text;
  leaked text;
BEGIN
  SELECT array_agg(c.oid) INTO victims FROM pg_class c
   WHERE c.relnamespace = victim_schema
      OR c.oid IN (SELECT reltoastrelid FROM pg_class WHERE relnamespace = victim_schema)
      OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid IN
           (SELECT reltoastrelid FROM pg_class WHERE relnamespace = victim_schema));
  SELECT p.oid::regprocedure::text AS sig, p.pronamespace::regnamespace::text AS nsp, p.proname::text AS name,
         p.proargtypes::oid[] AS types, p.proretset AS srf
    INTO f FROM pg_proc p WHERE p.oid = fn;
  SELECT count(*) INTO n_ident FROM unnest(f.types) a WHERE a = ANY (ident_types);
  <<relations>>
  FOR r IN SELECT c.oid, c.relkind::text AS kind FROM pg_class c WHERE c.oid = ANY (victims)
    UNION ALL SELECT oid, 'rule' FROM pg_rewrite WHERE ev_class = ANY (victims)
    UNION ALL SELECT oid, 'constraint' FROM pg_constraint WHERE conrelid = ANY (victims)
    UNION ALL SELECT oid, 'trigger' FROM pg_trigger WHERE tgrelid = ANY (victims)
    UNION ALL SELECT oid, 'default' FROM pg_attrdef WHERE adrelid = ANY (victims)
    UNION ALL SELECT oid, 'statistics' FROM pg_statistic_ext WHERE stxrelid = ANY (victims)
    UNION ALL SELECT oid, 'policy' FROM pg_policy WHERE polrelid = ANY (victims)
    UNION ALL SELECT oid, 'function' FROM pg_proc WHERE pronamespace = victim_schema
    UNION ALL SELECT oid, 'type' FROM pg_type WHERE typnamespace = victim_schema AND typrelid = 0 AND typelem = 0
    ORDER BY 1 LOOP
    -- Objects other than relations only go where a plain OID is taken (a rule's, a constraint's, ...).
    IF length(r.kind) > 1 AND NOT (f.types && ARRAY['oid'::regtype, 'oid[]'::regtype, 'oidvector'::regtype]::oid[])
    THEN
      CONTINUE relations;
    END IF;
      FOR target IN 0..n_ident LOOP
      FOR variant IN 0..2 LOOP
        args := '{}';
        ident_pos := 0;
        first_int := true;
        FOR i IN array_lower(f.types, 1)..array_upper(f.types, 1) LOOP
          t := format_type(f.types[i], NULL);
          IF f.types[i] = ANY (ident_types) THEN
            ident_pos := ident_pos + 1;
            IF target = 0 OR target = ident_pos THEN
              val := CASE t
                WHEN 'oid[]' THEN format('ARRAY[%s]::oid[]', r.oid)
                WHEN 'regclass[]' THEN format('ARRAY[%s]::regclass[]', r.oid)
                WHEN 'oidvector' THEN format('%L::oidvector', r.oid)
                ELSE format('%s::%s', r.oid, t) END;
            ELSE
              val := CASE t
                WHEN 'oid[]' THEN 'ARRAY[1259]::oid[]'
                WHEN 'regclass[]' THEN 'ARRAY[1259]::regclass[]'
                WHEN 'oidvector' THEN '''1259''::oidvector'
                ELSE format('1259::%s', t) END;
            END IF;
          ELSIF t IN ('smallint', 'integer', 'bigint', 'numeric', 'real', 'double precision') THEN
            val := CASE WHEN variant = 1 OR (variant = 2 AND first_int) THEN '1' ELSE '0' END || '::' || t;
            first_int := false;
          ELSIF t IN ('"any"', 'anyelement', 'anynonarray', 'anycompatible', 'anycompatiblenonarray') THEN
            val := CASE WHEN variant = 1 OR (variant = 2 AND first_int) THEN '1' ELSE '0' END;
            first_int := false;
          ELSIF t IN ('anyarray', 'anycompatiblearray') THEN
            val := 'ARRAY[0]';
          ELSIF t IN ('text', 'name', 'character varying') THEN
            val := CASE WHEN variant = 1 THEN '''id''' ELSE '''''' END || '::' || t;
          ELSIF t = 'boolean' THEN
            val := CASE WHEN variant = 1 THEN 'true' ELSE 'false' END;
          ELSE
            val := 'NULL::' || t;
          END IF;
          args := args || val;
        END LOOP;
        IF f.srf THEN
          call := format('SELECT count(*) FROM %I.%I(%s)', f.nsp, f.name, array_to_string(args, ', '));
        ELSE
          call := format('SELECT %I.%I(%s)', f.nsp, f.name, array_to_string(args, ', '));
        END IF;
        held := NULL;
        BEGIN
          EXECUTE call;
          SELECT string_agg(DISTINCT c.relkind::text || ':' || l.mode, ',') INTO held
            FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
           WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.relation = ANY (victims);
          RAISE EXCEPTION 'probe rollback' USING ERRCODE = 'P0001';
        EXCEPTION WHEN OTHERS THEN NULL;
        END;
        SELECT string_agg(DISTINCT c.relkind::text || ':' || l.mode, ',') INTO leaked
          FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
         WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' AND l.relation = ANY (victims);
        IF leaked IS NOT NULL THEN
          hits := hits || format('%s|%s|leaks %s|%s', f.sig, r.kind, leaked, call);
          EXIT relations;
        ELSIF held IS NOT NULL THEN
          hits := hits || format('%s|%s|keeps %s|%s', f.sig, r.kind, held, call);
          CONTINUE relations;
        END IF;
      END LOOP;
    END LOOP;
  END LOOP;
  PERFORM set_config('probe.hits', array_to_string(hits, E'\n'), false);
END
$probe$"#;

struct Tenant {
    names: Names,
    password: String,
}

/// The server with the shared database `app` (owned by the operator's admin), hardened by that admin when
/// `harden`, and a connection of the operator's admin to it.
async fn server(harden: bool) -> (Postgres, Client) {
    let pg = Postgres::start().await.expect("postgres");
    pg.create_database_for_admin(DB).await.unwrap();
    let admin = pg.connect_operator_admin(DB).await.unwrap();
    if harden {
        let hardening = provision::harden(&admin, DB).await.unwrap();
        assert_eq!(
            hardening.lockdown.is_complete(),
            pg.admin_kind() == AdminKind::Superuser,
            "{hardening:?}"
        );
    }
    (pg, admin)
}

/// A superuser connection to the shared database: the trusted observer, and the out-of-band actor.
async fn superuser(pg: &Postgres) -> Client {
    pg.connect_as("postgres", pg.superuser_password(), DB)
        .await
        .unwrap()
}

/// The signatures of the functions the lockdown revokes in `major`, as it reports them.
fn revoked_signatures(major: u32) -> BTreeSet<String> {
    lockdown::revoked_in(major).map(|f| f.signature()).collect()
}

async fn provision(admin: &Client, tenant: &str, password: &str) -> Tenant {
    let n = names(tenant, None);
    provision::provision_schema(admin, DB, &n, &scram_sha_256(password.as_bytes()), LIMIT)
        .await
        .unwrap();
    Tenant {
        names: n,
        password: password.into(),
    }
}

async fn login(pg: &Postgres, who: &Tenant) -> Client {
    pg.connect_as(&who.names.login, &who.password, DB).await.unwrap()
}

fn q(ident: &str) -> String {
    postgres_protocol::escape::escape_identifier(ident)
}

/// B's relations, one of every kind: a table with a primary key, a CHECK constraint, a column default, a
/// trigger, a statistics object, a policy and a TOAST table, a hash-partitioned table with a partition and
/// partitioned index, a list-partitioned table, a sequence, a view, a materialized view; and a function and a
/// type.
async fn b_relations(b: &Client, schema: &str) {
    let s = q(schema);
    b.batch_execute(&format!(
        "CREATE TABLE {s}.t (id int PRIMARY KEY, x text, y int DEFAULT 42 CHECK (y > 0));
         CREATE FUNCTION {s}.touch() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';
         CREATE TRIGGER touch BEFORE UPDATE ON {s}.t FOR EACH ROW EXECUTE FUNCTION {s}.touch();
         CREATE STATISTICS {s}.t_stats ON id, y FROM {s}.t;
         CREATE POLICY own ON {s}.t USING (true);
         CREATE TYPE {s}.mood AS ENUM ('ok');
         CREATE TABLE {s}.p (id int, k int) PARTITION BY HASH (k);
         CREATE TABLE {s}.p0 PARTITION OF {s}.p FOR VALUES WITH (MODULUS 1, REMAINDER 0);
         CREATE INDEX ON {s}.p (k);
         CREATE TABLE {s}.l (k int) PARTITION BY LIST (k);
         CREATE TABLE {s}.l1 PARTITION OF {s}.l FOR VALUES IN (1);
         CREATE SEQUENCE {s}.s;
         CREATE VIEW {s}.vw AS SELECT * FROM {s}.t;
         CREATE MATERIALIZED VIEW {s}.mv AS SELECT 1 AS one;"
    ))
    .await
    .unwrap();
}

/// The probe, run by `attacker` against the relations of `victim_schema`: each function's hits, by its
/// signature as `regprocedure` prints it.
async fn probe(attacker: &Client, victim_schema: &str) -> BTreeMap<String, Vec<String>> {
    attacker
        .query(
            "SELECT set_config('probe.victim', $1, false)",
            &[&q(victim_schema)],
        )
        .await
        .unwrap();
    let oids: Vec<u32> = attacker
        .query(CANDIDATES, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(oids.len() > 100, "only {} candidate functions", oids.len());
    let mut hits: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for oid in oids {
        // One implicit transaction per function: whatever a call leaked is gone before the next function.
        let messages = attacker
            .simple_query(&format!(
                "SELECT set_config('probe.fn', '{oid}', false); {PROBE}; SELECT current_setting('probe.hits')"
            ))
            .await
            .unwrap_or_else(|e| panic!("probing function {oid}: {e:?}"));
        let found = messages
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
                _ => None,
            })
            .last()
            .unwrap_or_default();
        for line in found.lines().filter(|l| !l.is_empty()) {
            let signature = line.split('|').next().unwrap_or_default().to_owned();
            hits.entry(signature).or_default().push(line.to_owned());
        }
    }
    hits
}

/// The functions of the lockdown list that exist in `major`, with `disposition` when given, as `regprocedure`
/// prints them.
async fn listed(client: &Client, major: u32, disposition: Option<Disposition>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for f in LOCK_FUNCTIONS
        .iter()
        .filter(|f| f.exists_in(major) && disposition.is_none_or(|d| f.disposition == d))
    {
        let row = client
            .query_one("SELECT to_regprocedure($1)::text", &[&f.signature()])
            .await
            .unwrap();
        let printed: Option<String> = row.get(0);
        out.insert(printed.unwrap_or_else(|| panic!("{} does not exist in {major}", f.signature())));
    }
    out
}

fn report(hits: &BTreeMap<String, Vec<String>>) -> String {
    hits.values().flatten().cloned().collect::<Vec<_>>().join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_finds_exactly_the_listed_functions_and_none_after_hardening() {
    let (pg, admin) = server(false).await;
    let a = provision(&admin, "tenant-a", "pw-a-9d1c").await;
    let b = provision(&admin, "tenant-b", "pw-b-4e70").await;
    b_relations(&login(&pg, &b).await, &b.names.place).await;
    let major = pg.major_version().await.unwrap();
    let a_client = login(&pg, &a).await;

    let before = probe(&a_client, &b.names.place).await;
    eprintln!("PostgreSQL {major}, without the lockdown:\n{}", report(&before));
    let found: BTreeSet<String> = before.keys().cloned().collect();
    assert_eq!(
        found,
        listed(&admin, major, None).await,
        "lock-taking functions on PostgreSQL {major} differ from lockdown::LOCK_FUNCTIONS:\n{}",
        report(&before)
    );

    let hardening = provision::harden(&admin, DB).await.unwrap();
    let after = probe(&a_client, &b.names.place).await;
    eprintln!(
        "PostgreSQL {major}, with the lockdown by a {} admin:\n{}",
        pg.admin_kind(),
        report(&after)
    );
    let found: BTreeSet<String> = after.keys().cloned().collect();
    let still_open: BTreeSet<String> = hardening.lockdown.still_open.iter().cloned().collect();
    match pg.admin_kind() {
        AdminKind::Superuser => {
            assert!(still_open.is_empty(), "{hardening:?}");
            assert_eq!(
                found,
                listed(&admin, major, Some(Disposition::KeepOpen)).await,
                "after the lockdown only the functions kept open may still lock:\n{}",
                report(&after)
            );
        }
        // The admin does not own the catalog functions: its REVOKEs only warn, every listed function still
        // locks, and the lockdown names the ones it meant to close. Database mode is the closure for such an
        // admin.
        AdminKind::CreateRole => {
            assert_eq!(still_open, revoked_signatures(major), "{hardening:?}");
            assert_eq!(
                found,
                listed(&admin, major, None).await,
                "an admin that does not own the catalog closes nothing:\n{}",
                report(&after)
            );
        }
    }
}

/// A's call, as the login role of another tenant, in a transaction A keeps open.
struct Attack {
    /// The call, with `{rel}` for the OID of B's relation.
    call: &'static str,
    /// B's relation it names.
    target: &'static str,
    /// What B then runs on its own tables.
    b_runs: &'static str,
}

async fn attack_setup() -> (Postgres, Client, Client, Tenant) {
    let (pg, admin) = server(true).await;
    let a = provision(&admin, "tenant-a", "pw-a-9d1c").await;
    let b = provision(&admin, "tenant-b", "pw-b-4e70").await;
    b_relations(&login(&pg, &b).await, &b.names.place).await;
    let a_client = login(&pg, &a).await;
    (pg, admin, a_client, b)
}

/// Runs `attack` as A (inside a savepoint, so a failed call leaves A's transaction open) and then B's DDL with
/// a lock timeout. Returns A's SQLSTATE (None when the call was allowed) and B's outcome.
async fn run_attack(
    pg: &Postgres,
    a: &Client,
    b: &Tenant,
    attack: &Attack,
) -> (Option<SqlState>, Result<(), tokio_postgres::Error>) {
    let s = q(&b.names.place);
    let oid: u32 = a
        .query_one(
            "SELECT c.oid FROM pg_class c WHERE c.relnamespace = $1::text::regnamespace AND c.relname = $2",
            &[&s, &attack.target],
        )
        .await
        .unwrap()
        .get(0);
    a.batch_execute("BEGIN; SAVEPOINT attack").await.unwrap();
    let call = attack.call.replace("{rel}", &oid.to_string());
    let refused = match a.batch_execute(&call).await {
        Ok(()) => None,
        Err(e) => {
            a.batch_execute("ROLLBACK TO SAVEPOINT attack").await.unwrap();
            Some(e.code().cloned().unwrap_or_else(|| panic!("{call}: {e}")))
        }
    };
    let b_client = login(pg, b).await;
    let b_result = b_client
        .batch_execute(&format!(
            "SET lock_timeout = '{LOCK_GUARD}'; {}",
            attack.b_runs.replace("{s}", &s)
        ))
        .await;
    a.batch_execute("ROLLBACK").await.unwrap();
    (refused, b_result)
}

/// A function the lockdown revokes, named `function`. With a superuser admin A's call is refused and B's DDL
/// completes while A's transaction is open. An admin that does not own the function cannot revoke it: A still
/// holds the lock, B's DDL runs into the lock timeout, and the lockdown reports the function as still open
/// (Database mode is the closure for that admin).
async fn revoked_function(function: &str, attack: Attack) {
    let (pg, admin, a, b) = attack_setup().await;
    let signature = LOCK_FUNCTIONS
        .iter()
        .find(|f| f.name == function && f.disposition == Disposition::Revoke)
        .unwrap_or_else(|| panic!("{function} is not revoked by the lockdown"))
        .signature();
    let (refused, b_result) = run_attack(&pg, &a, &b, &attack).await;
    let report = lockdown::apply(&admin).await.unwrap();
    if pg.admin_kind() == AdminKind::CreateRole {
        assert!(report.still_open.contains(&signature), "{report:?}");
        assert_eq!(refused, None, "{}: the admin could not revoke it", attack.call);
        let err = b_result.expect_err(attack.call);
        assert_eq!(
            err.code(),
            Some(&SqlState::LOCK_NOT_AVAILABLE),
            "{}: {err:?}",
            attack.call
        );
        return;
    }
    assert!(report.closed.contains(&signature), "{report:?}");
    assert_eq!(
        refused,
        Some(SqlState::INSUFFICIENT_PRIVILEGE),
        "tenant A was allowed to run {} on B's {}; B's `{}` then: {:?}",
        attack.call,
        attack.target,
        attack.b_runs,
        b_result
            .as_ref()
            .map_err(|e| e.as_db_error().map(|d| d.message().to_owned()))
    );
    b_result.unwrap_or_else(|e| panic!("B's `{}` after A's refused call: {e:?}", attack.b_runs));
}

/// A function left open: A still holds the lock and B's DDL runs into the lock timeout. Pinned so that a change
/// (PostgreSQL checking privileges first, or Bulkhead revoking it) is noticed.
async fn still_blocks(pg: &Postgres, a: &Client, b: &Tenant, attack: Attack) {
    let (_, b_result) = run_attack(pg, a, b, &attack).await;
    let err = b_result.expect_err(attack.call);
    assert_eq!(
        err.code(),
        Some(&SqlState::LOCK_NOT_AVAILABLE),
        "{}: {err:?}",
        attack.call
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_partition_tree_is_refused_or_reported_open() {
    revoked_function(
        "pg_partition_tree",
        Attack {
            call: "SELECT count(*) FROM pg_catalog.pg_partition_tree({rel}::regclass)",
            target: "p",
            b_runs: "TRUNCATE {s}.p; ALTER TABLE {s}.p DETACH PARTITION {s}.p0",
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_get_partition_constraintdef_is_refused_or_reported_open() {
    revoked_function(
        "pg_get_partition_constraintdef",
        Attack {
            call: "SELECT pg_catalog.pg_get_partition_constraintdef({rel}::oid)",
            target: "p0",
            b_runs: "TRUNCATE {s}.p; ALTER TABLE {s}.p ADD COLUMN extra int",
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn table_to_xmlschema_is_refused_or_reported_open() {
    revoked_function(
        "table_to_xmlschema",
        Attack {
            call: "SELECT pg_catalog.table_to_xmlschema({rel}::regclass, false, false, '')",
            target: "t",
            b_runs: "TRUNCATE {s}.t; ALTER TABLE {s}.t ADD COLUMN extra int",
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_open_functions_still_block_b() {
    let (pg, _admin, a, b) = attack_setup().await;
    // Each attack ends with A's ROLLBACK, so one cannot hide behind another.
    for attack in [
        Attack {
            call: "SELECT pg_catalog.satisfies_hash_partition({rel}::oid, 1, 0, 1)",
            target: "p",
            b_runs: "ALTER TABLE {s}.p ADD COLUMN extra int",
        },
        Attack {
            call: "SELECT pg_catalog.pg_get_viewdef({rel}::oid)",
            target: "vw",
            b_runs: "ALTER TABLE {s}.t ADD COLUMN extra int",
        },
        Attack {
            call: "SELECT pg_catalog.nextval({rel}::regclass)",
            target: "t",
            b_runs: "TRUNCATE {s}.t",
        },
        Attack {
            call: "SELECT pg_catalog.currval({rel}::regclass)",
            target: "t",
            b_runs: "TRUNCATE {s}.t",
        },
        Attack {
            call: "SELECT pg_catalog.setval({rel}::regclass, 1)",
            target: "t",
            b_runs: "TRUNCATE {s}.t",
        },
        Attack {
            call: "SELECT pg_catalog.pg_sequence_last_value({rel}::regclass)",
            target: "t",
            b_runs: "TRUNCATE {s}.t",
        },
    ] {
        still_blocks(&pg, &a, &b, attack).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lockdown_reports_what_it_closed() {
    let (pg, admin) = server(true).await;
    let major = pg.major_version().await.unwrap();
    let report = lockdown::apply(&admin).await.unwrap();
    let (closed, still_open) = match pg.admin_kind() {
        AdminKind::Superuser => (revoked_signatures(major), BTreeSet::new()),
        // Not the functions' owner: nothing closes, and the report says which stay open.
        AdminKind::CreateRole => (BTreeSet::new(), revoked_signatures(major)),
    };
    assert_eq!(
        report.closed.iter().cloned().collect::<BTreeSet<_>>(),
        closed,
        "{report:?}"
    );
    assert_eq!(
        report.still_open.iter().cloned().collect::<BTreeSet<_>>(),
        still_open,
        "{report:?}"
    );
    assert_eq!(report.is_complete(), still_open.is_empty());
    assert_eq!(
        report.kept_open.len(),
        LOCK_FUNCTIONS
            .iter()
            .filter(|f| f.disposition == Disposition::KeepOpen && f.exists_in(major))
            .count()
    );
    // A second run changes nothing and still reports the same.
    assert_eq!(lockdown::apply(&admin).await.unwrap(), report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_owner_admin_cannot_revoke_and_is_told() {
    let (pg, _admin) = server(false).await;
    superuser(&pg)
        .await
        .batch_execute("CREATE ROLE managed LOGIN CREATEROLE CREATEDB PASSWORD 'managed-pw'")
        .await
        .unwrap();
    let managed = pg.connect_as("managed", "managed-pw", DB).await.unwrap();
    let report = lockdown::apply(&managed).await.unwrap();
    assert!(!report.is_complete());
    assert!(report.closed.is_empty(), "{report:?}");
    assert_eq!(
        report.still_open.len(),
        lockdown::revoked_in(pg.major_version().await.unwrap()).count(),
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_keeps_using_its_own_hash_partitioned_tables() {
    let (pg, _admin, _a, b) = attack_setup().await;
    let b_client = login(&pg, &b).await;
    let s = q(&b.names.place);
    b_client
        .batch_execute(&format!(
            "CREATE TABLE {s}.h (id serial, k int, v text) PARTITION BY HASH (k);
             CREATE TABLE {s}.h0 PARTITION OF {s}.h FOR VALUES WITH (MODULUS 2, REMAINDER 0);
             CREATE TABLE {s}.h1 PARTITION OF {s}.h FOR VALUES WITH (MODULUS 2, REMAINDER 1);
             INSERT INTO {s}.h (k) SELECT g FROM generate_series(1, 100) g;
             UPDATE {s}.h SET v = 'updated' WHERE k <= 10;
             UPDATE {s}.h SET k = k + 1000 WHERE k = 1;
             DELETE FROM {s}.h WHERE k = 2;"
        ))
        .await
        .unwrap();
    // A row that belongs in h0, straight into h0 (the partition constraint is evaluated), and one that does not.
    let k0: i32 = b_client
        .query_one(&format!("SELECT k FROM {s}.h0 LIMIT 1"), &[])
        .await
        .unwrap()
        .get(0);
    let k1: i32 = b_client
        .query_one(&format!("SELECT k FROM {s}.h1 LIMIT 1"), &[])
        .await
        .unwrap()
        .get(0);
    b_client
        .execute(&format!("INSERT INTO {s}.h0 (k) VALUES ($1)"), &[&k0])
        .await
        .unwrap();
    let wrong = b_client
        .execute(&format!("INSERT INTO {s}.h0 (k) VALUES ($1)"), &[&k1])
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Some(&SqlState::CHECK_VIOLATION), "{wrong:?}");
    // Pruning: a lookup by key scans one partition.
    let plan: Vec<String> = b_client
        .query(
            &format!("EXPLAIN (COSTS OFF) SELECT * FROM {s}.h WHERE k = $1"),
            &[&k1],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let plan = plan.join("\n");
    assert!(plan.contains("h1") && !plan.contains("h0"), "{plan}");
    // Detach, fill, and attach again (ATTACH checks every row against the constraint).
    b_client
        .batch_execute(&format!(
            "ALTER TABLE {s}.h DETACH PARTITION {s}.h1;
             INSERT INTO {s}.h1 (k) VALUES ({k1});
             ALTER TABLE {s}.h ATTACH PARTITION {s}.h1 FOR VALUES WITH (MODULUS 2, REMAINDER 1);"
        ))
        .await
        .unwrap();
    let count: i64 = b_client
        .query_one(&format!("SELECT count(*) FROM {s}.h"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 101);
    // What pg_dump reads of partitions and sequences, and psql's \d of a partition.
    let bound: String = b_client
        .query_one(
            &format!("SELECT pg_catalog.pg_get_expr(c.relpartbound, c.oid) FROM pg_class c WHERE c.oid = '{s}.h0'::regclass"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(bound, "FOR VALUES WITH (modulus 2, remainder 0)");
    b_client
        .batch_execute(&format!(
            "SELECT pg_catalog.pg_get_partkeydef('{s}.h'::regclass);
             SELECT pg_catalog.pg_partition_root('{s}.h0'::regclass);
             SELECT * FROM pg_catalog.pg_partition_ancestors('{s}.h0'::regclass);
             SELECT last_value, is_called FROM {s}.h_id_seq;
             SELECT pg_catalog.setval('{s}.h_id_seq', 500, true);
             SELECT * FROM pg_catalog.pg_sequences;
             SELECT pg_catalog.pg_get_viewdef('{s}.vw'::regclass);"
        ))
        .await
        .unwrap();
    let own = b_client
        .batch_execute(&format!(
            "SELECT * FROM pg_catalog.pg_partition_tree('{s}.h'::regclass)"
        ))
        .await;
    match pg.admin_kind() {
        // The revoked function is gone for B too, on its own table.
        AdminKind::Superuser => {
            let own = own.unwrap_err();
            assert_eq!(own.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{own:?}");
        }
        // An admin that does not own it could not revoke it.
        AdminKind::CreateRole => own.unwrap(),
    }
}

/// Database isolation: locks belong to one database, so B's relation OIDs name nothing in A's database and
/// none of the functions, kept open or not, reaches B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_database_mode_no_function_reaches_the_other_tenants_relations() {
    let (pg, admin) = server(true).await;
    let mut tenants = Vec::new();
    for (tenant, password) in [("tenant-a", "pw-a-9d1c"), ("tenant-b", "pw-b-4e70")] {
        let n = names(tenant, None);
        provision::provision_database(
            &admin,
            &pg.operator_admin_dsn(DB).await.unwrap().parse().unwrap(),
            &n,
            &scram_sha_256(password.as_bytes()),
            LIMIT,
        )
        .await
        .unwrap();
        let client = pg.connect_as(&n.login, password, &n.place).await.unwrap();
        tenants.push((n, client));
    }
    let (b_names, b) = tenants.pop().unwrap();
    let (_, a) = tenants.pop().unwrap();
    b_relations(&b, &b_names.place).await;
    let s = q(&b_names.place);
    let oid = |name: &'static str| {
        let b = &b;
        let s = s.clone();
        async move {
            let row = b
                .query_one(&format!("SELECT '{s}.{name}'::regclass::oid"), &[])
                .await
                .unwrap();
            row.get::<_, u32>(0)
        }
    };
    let (t, p, vw) = (oid("t").await, oid("p").await, oid("vw").await);
    let rule: u32 = b
        .query_one("SELECT oid FROM pg_rewrite WHERE ev_class = $1", &[&vw])
        .await
        .unwrap()
        .get(0);
    a.batch_execute("BEGIN").await.unwrap();
    for call in [
        format!("SELECT pg_catalog.nextval({t}::regclass)"),
        format!("SELECT pg_catalog.setval({t}::regclass, 1)"),
        format!("SELECT pg_catalog.pg_sequence_last_value({t}::regclass)"),
        format!("SELECT pg_catalog.satisfies_hash_partition({p}::oid, 1, 0, 1)"),
        format!("SELECT pg_catalog.pg_get_viewdef({vw}::oid)"),
        format!("SELECT pg_catalog.pg_get_ruledef({rule}::oid)"),
        format!("SELECT pg_catalog.table_to_xmlschema({t}::regclass, false, false, '')"),
    ] {
        a.batch_execute(&format!("SAVEPOINT x; {call}")).await.ok();
        a.batch_execute("ROLLBACK TO SAVEPOINT x").await.unwrap();
    }
    let held: i64 = superuser(&pg)
        .await
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'relation' AND relation = ANY($1::oid[]) \
             AND database = (SELECT oid FROM pg_database WHERE datname = $2)",
            &[&vec![t, p, vw], &b_names.place],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(held, 0, "A holds locks on B's relations across databases");
    b.batch_execute(&format!(
        "SET lock_timeout = '{LOCK_GUARD}'; TRUNCATE {s}.t, {s}.p; ALTER TABLE {s}.t ADD COLUMN extra int"
    ))
    .await
    .unwrap();
    a.batch_execute("ROLLBACK").await.unwrap();
}
