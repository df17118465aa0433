//! `bench-grants`: how long a grant across a tenant's boundary lives, and what finding it costs.
//!
//! - repair window: the real operator (against a local control plane and PostgreSQL 15) with two Schema-mode
//!   Tenants A and B. A creates a large object and grants SELECT on it to PUBLIC; B reads it with `lo_get` every
//!   10 ms until it is refused (SQLSTATE 42501). The time from the GRANT's return to the first refusal is one
//!   sample; trials are spaced by a random pause so the grant falls at every phase of the sweep timer. Measured
//!   per grant sweep interval, and once with the sweep out of the way (resync only).
//! - catalog scans: a fresh server with N Schema-mode tenants, each with a realistic set of objects made by its
//!   login role; the per-tenant resync check (`extra_grants` + `foreign_grants`) timed for every tenant, and the
//!   sweep's single scan over all Bulkhead roles, without and with one crossing grant.
//!
//! Prints one Markdown section; `--write FILE` also stores it between the `grants-bench` markers.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bulkhead_e2e::ControlPlane;
use bulkhead_e2e::bench::{self, err};
use bulkhead_e2e::operator::{
    OPERATOR_NAMESPACE, RunningOperator, create_schema_tenant, install_rbac, postgres_admin_secret,
    tenant_database_url,
};
use bulkhead_e2e::postgres::Postgres;
use bulkhead_operator::postgres::naming::{Names, names};
use bulkhead_operator::postgres::{provision, sql};
use bulkhead_operator::settings::{DatabaseSettings, Settings};
use clap::Parser;
use postgres_protocol::escape::escape_identifier;
use postgres_protocol::password::scram_sha_256;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

#[derive(Debug, Parser)]
#[command(
    name = "bench-grants",
    about = "Grant repair window with the real operator, and the cost of its catalog scans at N tenants"
)]
struct Args {
    /// Grant → refused trials per sweep interval.
    #[arg(long, default_value_t = 20)]
    trials: usize,
    /// Grant sweep intervals to measure, in seconds.
    #[arg(long, value_delimiter = ',', default_value = "5,1")]
    sweeps: Vec<u64>,
    /// Trials with the sweep out of the way (resync only; each can take up to the 60 s resync interval). With
    /// none, the table states the resync bound instead.
    #[arg(long, default_value_t = 0)]
    resync_trials: usize,
    /// Tenants for the catalog-scan measurements.
    #[arg(long, default_value_t = 1000)]
    tenants: usize,
    /// Runs of the sweep's scan (the median is reported).
    #[arg(long, default_value_t = 9)]
    runs: usize,
    /// Print EXPLAIN ANALYZE of both queries (one tenant) and of the sweep's scan.
    #[arg(long)]
    explain: bool,
    /// Skip the repair window (no control plane needed); the section is then not written.
    #[arg(long)]
    skip_window: bool,
    /// Also write the section into this Markdown file, between the grants-bench markers.
    #[arg(long)]
    write: Option<PathBuf>,
}

const DB: &str = "app";
/// The operator's default database resync interval, left as it is in the repair-window runs.
const RESYNC: Duration = Duration::from_secs(60);
/// The sweep interval of the resync-only runs: its first scan is at start-up, the next one after the run.
const NO_SWEEP: Duration = Duration::from_secs(3600);
const POLL: Duration = Duration::from_millis(10);

#[tokio::main]
async fn main() -> ExitCode {
    bench::exit("bench-grants", run(Args::parse()).await)
}

async fn run(args: Args) -> Result<(), String> {
    let window = if args.skip_window {
        None
    } else {
        Some(repair_window(&args).await?)
    };
    let scans = scan_cost(&args).await?;
    let section = report(&args, window.as_ref(), &scans);
    println!("{section}");
    if let Some(path) = &args.write {
        if window.is_none() {
            return Err("--write needs the repair window: drop --skip-window".into());
        }
        bulkhead_e2e::report::replace_marked(path, "grants-bench", "## Grant repair", &section)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// Repair window

/// The samples of one operator configuration.
struct WindowRun {
    sweep: Option<Duration>,
    samples: Vec<Duration>,
    /// Trials in which B did read the object before the repair (the grant worked).
    read_before: usize,
    /// How long B's TRUNCATE waited behind A's lock on B's table (taken with `nextval(<oid>)`), per trial.
    lock_waits: Vec<Duration>,
}

struct Window {
    runs: Vec<WindowRun>,
    postgres_version: String,
}

async fn repair_window(args: &Args) -> Result<Window, String> {
    eprintln!("repair window: starting a control plane and PostgreSQL...");
    let (plane, pg) = tokio::join!(ControlPlane::start_with_crds(), Postgres::start());
    let plane = plane.map_err(|e| format!("control plane (make assets): {e}"))?;
    let pg = pg.map_err(|e| format!("postgres: {e}"))?;
    let postgres_version = server_version(&pg.admin().await.map_err(|e| e.to_string())?).await?;
    install_rbac(&plane).await.map_err(|e| format!("RBAC: {e}"))?;
    let kube = plane.admin().await.map_err(|e| e.to_string())?;
    postgres_admin_secret(&kube, &pg, "postgres-admin", "bulkhead")
        .await
        .map_err(|e| format!("admin Secret: {e}"))?;

    let mut configs: Vec<(Option<Duration>, usize)> = args
        .sweeps
        .iter()
        .map(|s| (Some(Duration::from_secs((*s).max(1))), args.trials.max(1)))
        .collect();
    if args.resync_trials > 0 {
        configs.push((None, args.resync_trials));
    }
    let mut rng = Rng::seeded();
    let mut runs = Vec::new();
    let mut created = false;
    for (sweep, trials) in configs {
        let mut database = DatabaseSettings::new(
            format!("{OPERATOR_NAMESPACE}/postgres-admin")
                .parse()
                .map_err(err("admin Secret reference"))?,
        );
        database.resync = RESYNC;
        database.grant_sweep = sweep.unwrap_or(NO_SWEEP);
        let settings = Settings {
            database: Some(database),
            ..Settings::default()
        };
        let operator = RunningOperator::with_settings(&plane, settings)
            .await
            .map_err(|e| format!("starting the operator: {e}"))?;
        if !created {
            create_tenants(&kube).await?;
            created = true;
        }
        let a_url = database_url(&kube, "alpha").await?;
        let a = connect(&a_url).await?;
        let b = connect(&database_url(&kube, "beta").await?).await?;
        let label = sweep.map_or_else(
            || "resync only".to_owned(),
            |s| format!("sweep {} s", s.as_secs()),
        );
        let timeout = sweep.map_or(RESYNC * 3, |s| s * 3 + Duration::from_secs(30));
        if sweep.is_some() {
            // Not counted: makes sure the (re)started operator has reconciled both Tenants, so its sweep
            // knows their roles.
            trial(&a, &b, timeout).await?;
        } else {
            // The restarted operator reconciles every Tenant once at start-up: a grant made before that is
            // found by the start-up reconcile, not by a resync.
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
        let mut run = WindowRun {
            sweep,
            samples: Vec::new(),
            read_before: 0,
            lock_waits: Vec::new(),
        };
        for k in 0..trials {
            tokio::time::sleep(sweep.unwrap_or(RESYNC).mul_f64(rng.unit())).await;
            let (window, read) = trial(&a, &b, timeout).await?;
            eprintln!("  {label}: trial {}/{trials}: {} ms", k + 1, window.as_millis());
            run.samples.push(window);
            run.read_before += usize::from(read);
        }
        if let Some(sweep) = sweep {
            for k in 0..trials {
                tokio::time::sleep(sweep.mul_f64(rng.unit())).await;
                let wait = lock_trial(&a_url, &b, timeout).await?;
                eprintln!(
                    "  {label}: lock trial {}/{trials}: {} ms",
                    k + 1,
                    wait.as_millis()
                );
                run.lock_waits.push(wait);
            }
        }
        runs.push(run);
        operator
            .stop()
            .await
            .map_err(|e| format!("stopping the operator: {e}"))?;
    }
    drop(plane);
    drop(pg);
    Ok(Window {
        runs,
        postgres_version,
    })
}

async fn create_tenants(kube: &kube::Client) -> Result<(), String> {
    for name in ["alpha", "beta"] {
        create_schema_tenant(kube, name)
            .await
            .map_err(err("creating a Tenant"))?;
    }
    Ok(())
}

/// The `DATABASE_URL` of a Tenant's credentials Secret, once its database is provisioned.
async fn database_url(kube: &kube::Client, tenant: &str) -> Result<String, String> {
    tenant_database_url(kube, tenant)
        .await
        .map_err(err("waiting for a Tenant's database"))
}

async fn connect(url: &str) -> Result<Client, String> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(err("connecting as a tenant"))?;
    tokio::spawn(connection);
    Ok(client)
}

/// A grants a new large object to PUBLIC; B reads it every 10 ms until refused. Returns the time from the
/// GRANT's return to the refusal, and whether B did read it first.
async fn trial(a: &Client, b: &Client, timeout: Duration) -> Result<(Duration, bool), String> {
    let oid: u32 = a
        .query_one("SELECT lo_from_bytea(0, 'a-private-scan'::bytea)", &[])
        .await
        .map_err(err("A creating a large object"))?
        .get(0);
    a.batch_execute(&format!("GRANT SELECT ON LARGE OBJECT {oid} TO PUBLIC"))
        .await
        .map_err(err("A granting to PUBLIC"))?;
    let granted = Instant::now();
    let read = format!("SELECT lo_get({oid})");
    let mut read_before = false;
    loop {
        match b.query_one(&read, &[]).await {
            Ok(_) => read_before = true,
            Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => break,
            Err(e) => return Err(format!("B reading large object {oid}: {e}")),
        }
        if granted.elapsed() > timeout {
            return Err(format!(
                "B could still read large object {oid} {} s after the grant",
                timeout.as_secs()
            ));
        }
        tokio::time::sleep(POLL).await;
    }
    let window = granted.elapsed();
    a.batch_execute(&format!("SELECT lo_unlink({oid})"))
        .await
        .map_err(err("A removing its large object"))?;
    Ok((window, read_before))
}

/// A (a new session) takes a lock on B's table with `nextval(<B's table OID>)` in a savepoint and keeps its
/// transaction open; B then runs TRUNCATE on that table. Returns how long B's TRUNCATE waited: until the sweep
/// terminated A's session.
async fn lock_trial(a_url: &str, b: &Client, timeout: Duration) -> Result<Duration, String> {
    b.batch_execute("CREATE TABLE IF NOT EXISTS lock_target (id int)")
        .await
        .map_err(err("B creating its table"))?;
    let oid: u32 = b
        .query_one("SELECT 'lock_target'::regclass::oid", &[])
        .await
        .map_err(err("B reading its table's OID"))?
        .get(0);
    let a = connect(a_url).await?;
    a.batch_execute("BEGIN; SAVEPOINT s")
        .await
        .map_err(err("A opening a transaction"))?;
    // Fails (a table is not a sequence), after taking the lock for the whole transaction.
    let _ = a.batch_execute(&format!("SELECT nextval({oid}::regclass)")).await;
    a.batch_execute("ROLLBACK TO SAVEPOINT s")
        .await
        .map_err(err("A rolling back to its savepoint"))?;
    let locked = Instant::now();
    b.batch_execute(&format!(
        "SET lock_timeout = '{}s'; TRUNCATE lock_target; RESET lock_timeout",
        timeout.as_secs()
    ))
    .await
    .map_err(err("B truncating its table behind A's lock"))?;
    Ok(locked.elapsed())
}

// ---------------------------------------------------------------------------------------------------------
// Catalog scans

struct Check {
    extra: Vec<f64>,
    foreign: Vec<f64>,
    both: Vec<f64>,
    found: usize,
}

struct Sweep {
    median_ms: f64,
    rows: usize,
}

struct Scans {
    tenants: usize,
    setup_s: f64,
    catalog: Vec<(&'static str, i64)>,
    clean: (Check, Sweep),
    crossing: (Check, Sweep),
    postgres_version: String,
}

async fn scan_cost(args: &Args) -> Result<Scans, String> {
    let n = args.tenants.max(2);
    eprintln!("catalog scans: {n} tenants on a fresh server...");
    let pg = Postgres::start().await.map_err(|e| format!("postgres: {e}"))?;
    pg.admin()
        .await
        .map_err(|e| e.to_string())?
        .batch_execute(&format!("CREATE DATABASE {DB}"))
        .await
        .map_err(err("creating the shared database"))?;
    let app = pg
        .connect_as("postgres", pg.superuser_password(), DB)
        .await
        .map_err(|e| e.to_string())?;
    let postgres_version = server_version(&app).await?;
    provision::harden(&app, DB).await.map_err(err("hardening"))?;

    let setup = Instant::now();
    let verifier = scram_sha_256(b"bench-grants");
    let tenants: Vec<Names> = (0..n).map(|i| names(&format!("tenant-{i}"), None)).collect();
    for nm in &tenants {
        provision::provision_schema(&app, DB, nm, &verifier, 3)
            .await
            .map_err(err("provisioning"))?;
    }
    eprintln!(
        "  provisioned in {:.1} s; creating the tenants' objects...",
        setup.elapsed().as_secs_f64()
    );
    for chunk in tenants.chunks(25) {
        let mut batch = String::from("BEGIN;\n");
        for nm in chunk {
            batch.push_str(&objects(nm));
        }
        batch.push_str("COMMIT;\n");
        app.batch_execute(&batch).await.map_err(err("creating objects"))?;
    }
    app.batch_execute("VACUUM ANALYZE")
        .await
        .map_err(err("VACUUM ANALYZE"))?;
    let setup_s = setup.elapsed().as_secs_f64();
    eprintln!("  set up in {setup_s:.1} s");

    let mut catalog = Vec::new();
    for table in [
        "pg_class",
        "pg_proc",
        "pg_type",
        "pg_attribute",
        "pg_namespace",
        "pg_roles",
        "pg_largeobject_metadata",
        "pg_default_acl",
    ] {
        let count: i64 = app
            .query_one(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .map_err(err("counting the catalog"))?
            .get(0);
        catalog.push((table, count));
    }

    let roles: Vec<String> = tenants
        .iter()
        .flat_map(|nm| [nm.owner.clone(), nm.login.clone()])
        .collect();
    if args.explain {
        explain(&app, &tenants[n / 2], &roles).await?;
    }
    eprintln!("  per-tenant checks, no crossing grant...");
    let clean = (
        check_all(&app, &tenants).await?,
        sweep(&app, &roles, args.runs).await?,
    );

    // One tenant grants one of its tables to PUBLIC.
    let victim = &tenants[n / 2];
    app.batch_execute(&format!(
        "SET ROLE {}; GRANT SELECT ON {}.items_1 TO PUBLIC; RESET ROLE",
        escape_identifier(&victim.login),
        escape_identifier(&victim.place)
    ))
    .await
    .map_err(err("granting to PUBLIC"))?;
    eprintln!("  per-tenant checks, one crossing grant...");
    let crossing = (
        check_all(&app, &tenants).await?,
        sweep(&app, &roles, args.runs).await?,
    );
    if args.explain {
        explain(&app, victim, &roles).await?;
    }
    drop(app);
    drop(pg);
    Ok(Scans {
        tenants: n,
        setup_s,
        catalog,
        clean,
        crossing,
        postgres_version,
    })
}

/// What a tenant's stack typically makes in its schema, made as its login role: 5 tables with a serial key
/// (each with its sequence, index and TOAST table), a view, a function, an enum type and a large object.
fn objects(nm: &Names) -> String {
    let s = escape_identifier(&nm.place);
    let mut sql = format!("SET ROLE {};\n", escape_identifier(&nm.login));
    for t in 1..=5 {
        sql.push_str(&format!(
            "CREATE TABLE {s}.items_{t} (id serial PRIMARY KEY, name text NOT NULL, state text, \
             created timestamptz NOT NULL DEFAULT now());\n"
        ));
    }
    sql.push_str(&format!(
        "CREATE VIEW {s}.item_names AS SELECT id, name FROM {s}.items_1;\n\
         CREATE FUNCTION {s}.item_count() RETURNS bigint LANGUAGE sql STABLE AS 'SELECT count(*) FROM {s}.items_1';\n\
         CREATE TYPE {s}.item_state AS ENUM ('new', 'open', 'done');\n\
         SELECT lo_from_bytea(0, 'attachment'::bytea);\n\
         RESET ROLE;\n"
    ));
    sql
}

/// The resync's two grant queries for every tenant in turn, each timed.
async fn check_all(app: &Client, tenants: &[Names]) -> Result<Check, String> {
    let mut check = Check {
        extra: Vec::with_capacity(tenants.len()),
        foreign: Vec::with_capacity(tenants.len()),
        both: Vec::with_capacity(tenants.len()),
        found: 0,
    };
    for nm in tenants {
        let start = Instant::now();
        let extra = provision::extra_grants(app, nm, DB)
            .await
            .map_err(err("extra_grants"))?;
        let middle = Instant::now();
        let foreign = provision::foreign_grants(app, nm)
            .await
            .map_err(err("foreign_grants"))?;
        let end = Instant::now();
        check.extra.push(ms(middle - start));
        check.foreign.push(ms(end - middle));
        check.both.push(ms(end - start));
        check.found += extra.len() + foreign.len();
    }
    for v in [&mut check.extra, &mut check.foreign, &mut check.both] {
        v.sort_by(f64::total_cmp);
    }
    Ok(check)
}

/// The sweep's scan over every Bulkhead role, `runs` times; the median.
async fn sweep(app: &Client, roles: &[String], runs: usize) -> Result<Sweep, String> {
    let roles = roles.to_vec();
    let mut times = Vec::new();
    let mut rows = 0;
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        rows = app
            .query(sql::FOREIGN_GRANTS_QUERY, &[&roles])
            .await
            .map_err(err("the sweep's scan"))?
            .len();
        times.push(ms(start.elapsed()));
    }
    times.sort_by(f64::total_cmp);
    Ok(Sweep {
        median_ms: percentile(&times, 50.0),
        rows,
    })
}

async fn explain(app: &Client, nm: &Names, roles: &[String]) -> Result<(), String> {
    let tenant = vec![nm.owner.clone(), nm.login.clone()];
    let all = roles.to_vec();
    let database = DB.to_owned();
    let plans = [
        (
            "EXTRA_GRANTS_QUERY (one tenant)",
            sql::EXTRA_GRANTS_QUERY,
            vec![
                &tenant as &(dyn tokio_postgres::types::ToSql + Sync),
                &database,
                &nm.place,
            ],
        ),
        (
            "FOREIGN_GRANTS_QUERY (one tenant)",
            sql::FOREIGN_GRANTS_QUERY,
            vec![&tenant as &(dyn tokio_postgres::types::ToSql + Sync)],
        ),
        (
            "FOREIGN_GRANTS_QUERY (sweep, every role)",
            sql::FOREIGN_GRANTS_QUERY,
            vec![&all as &(dyn tokio_postgres::types::ToSql + Sync)],
        ),
    ];
    for (what, query, params) in plans {
        let rows = app
            .query(&format!("EXPLAIN (ANALYZE, BUFFERS) {query}"), &params)
            .await
            .map_err(err("EXPLAIN"))?;
        eprintln!("--- {what}");
        for row in rows {
            eprintln!("{}", row.get::<_, String>(0));
        }
    }
    Ok(())
}

async fn server_version(client: &Client) -> Result<String, String> {
    Ok(client
        .query_one("SHOW server_version", &[])
        .await
        .map_err(err("server version"))?
        .get::<_, String>(0)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned())
}

// ---------------------------------------------------------------------------------------------------------
// Report

fn report(args: &Args, window: Option<&Window>, scans: &Scans) -> String {
    let version = window.map_or(scans.postgres_version.as_str(), |w| w.postgres_version.as_str());
    let profile = bench::profile();
    let mut out = format!(
        "### Grant repair: window and catalog-scan cost ({}, `make bench-grants`)\n\n\
         {}, {}; PostgreSQL {version} on loopback, {profile} build.\n\n",
        bulkhead_e2e::report::today(),
        bench::cores_and_model(),
        bench::memory(),
    );
    if let Some(w) = window {
        out.push_str(&format!(
            "**Repair window** (grant to PUBLIC → first refused read by the other tenant, 10 ms polling; \
             operator resync {} s, its default):\n\n\
             | operator setting | p50 | p90 | max | trials | B read the object first |\n\
             |---|---:|---:|---:|---:|---:|\n",
            RESYNC.as_secs()
        ));
        for run in &w.runs {
            let mut sorted: Vec<f64> = run.samples.iter().map(|d| ms(*d)).collect();
            sorted.sort_by(f64::total_cmp);
            let label = match run.sweep {
                Some(s) if s == bulkhead_operator::settings::DEFAULT_GRANT_SWEEP => {
                    format!("grant sweep {} s (default)", s.as_secs())
                }
                Some(s) => format!("grant sweep {} s", s.as_secs()),
                None => format!(
                    "resync only (sweep {} s, measured; bound: the {} s resync)",
                    NO_SWEEP.as_secs(),
                    RESYNC.as_secs()
                ),
            };
            out.push_str(&format!(
                "| {label} | {} | {} | {} | {} | {}/{} |\n",
                duration(percentile(&sorted, 50.0)),
                duration(percentile(&sorted, 90.0)),
                duration(sorted.last().copied().unwrap_or_default()),
                sorted.len(),
                run.read_before,
                sorted.len()
            ));
        }
        if !w.runs.iter().any(|r| r.sweep.is_none()) {
            out.push_str(&format!(
                "| resync only (stated, not measured) | ≈ {} s | ≈ {} s | {} s | | |\n",
                RESYNC.as_secs() / 2,
                RESYNC.as_secs() * 9 / 10,
                RESYNC.as_secs()
            ));
        }
        out.push_str(
            "\n**Lock across tenants** (A holds a lock on B's table through `nextval(<B's table OID>)` in an open \
             transaction; how long B's `TRUNCATE` of it waits until the sweep terminates A's session):\n\n\
             | operator setting | p50 | p90 | max | trials |\n|---|---:|---:|---:|---:|\n",
        );
        for run in w.runs.iter().filter(|r| !r.lock_waits.is_empty()) {
            let mut sorted: Vec<f64> = run.lock_waits.iter().map(|d| ms(*d)).collect();
            sorted.sort_by(f64::total_cmp);
            let sweep = run.sweep.map_or(0, |s| s.as_secs());
            out.push_str(&format!(
                "| sweep {sweep} s | {} | {} | {} | {} |\n",
                duration(percentile(&sorted, 50.0)),
                duration(percentile(&sorted, 90.0)),
                duration(sorted.last().copied().unwrap_or_default()),
                sorted.len()
            ));
        }
        out.push_str("| without the sweep | until A ends its transaction | | | |\n");
        out.push('\n');
    }
    let (clean_check, clean_sweep) = &scans.clean;
    let (cross_check, cross_sweep) = &scans.crossing;
    let n = scans.tenants;
    let sweep_default = bulkhead_operator::settings::DEFAULT_GRANT_SWEEP.as_secs_f64() * 1000.0;
    out.push_str(&format!(
        "**Catalog scans at {n} tenants** (Schema isolation; each tenant's login role made 5 tables with a serial \
         key, a view, a function, an enum type and a large object; set up in {:.0} s). Catalog: {}.\n\n\
         | measure | no crossing grant | one crossing grant |\n|---|---:|---:|\n",
        scans.setup_s,
        scans
            .catalog
            .iter()
            .map(|(t, c)| format!("{t} {c}"))
            .collect::<Vec<_>>()
            .join(", "),
    ));
    let row = |what: &str, f: &dyn Fn(&Check) -> String| {
        format!("| {what} | {} | {} |\n", f(clean_check), f(cross_check))
    };
    out.push_str(&row(
        "resync check per tenant (2 queries), p50 / p90 / mean",
        &|c| {
            format!(
                "{:.1} / {:.1} / {:.1} ms",
                percentile(&c.both, 50.0),
                percentile(&c.both, 90.0),
                mean(&c.both)
            )
        },
    ));
    out.push_str(&row("&nbsp;&nbsp;`extra_grants` p50 / p90", &|c| {
        format!(
            "{:.1} / {:.1} ms",
            percentile(&c.extra, 50.0),
            percentile(&c.extra, 90.0)
        )
    }));
    out.push_str(&row("&nbsp;&nbsp;`foreign_grants` p50 / p90", &|c| {
        format!(
            "{:.1} / {:.1} ms",
            percentile(&c.foreign, 50.0),
            percentile(&c.foreign, 90.0)
        )
    }));
    out.push_str(&row(
        &format!("whole fleet, one resync round ({n} × 2 queries, one after another)"),
        &|c| {
            let total: f64 = c.both.iter().sum();
            format!(
                "{:.2} s = {:.1}% of a core per {} s",
                total / 1000.0,
                total / (RESYNC.as_secs_f64() * 1000.0) * 100.0,
                RESYNC.as_secs()
            )
        },
    ));
    out.push_str(&row("grants found by the resync checks", &|c| {
        c.found.to_string()
    }));
    out.push_str(&format!(
        "| sweep scan, all {} roles (median of {}) | {:.1} ms | {:.1} ms |\n",
        2 * n,
        args.runs.max(1),
        clean_sweep.median_ms,
        cross_sweep.median_ms
    ));
    out.push_str(&format!(
        "| sweep load at the {:.0} s default | {:.2}% of a core | {:.2}% of a core |\n",
        sweep_default / 1000.0,
        clean_sweep.median_ms / sweep_default * 100.0,
        cross_sweep.median_ms / sweep_default * 100.0
    ));
    out.push_str(&format!(
        "| rows the sweep scan returned | {} | {} |\n\n",
        clean_sweep.rows, cross_sweep.rows
    ));
    out.push_str(
        "Method: the repair window runs the operator in-process against a local control plane (etcd + \
         kube-apiserver) and PostgreSQL, with the Tenants' own credentials from their Secrets; each trial makes \
         a new large object, and the pause before it is random within one sweep interval. The catalog scans \
         run on one superuser connection on a separate fresh server: the resync check is the two queries a \
         database resync of one tenant runs for grants (`provision::extra_grants` and \
         `provision::foreign_grants`), timed for every tenant in turn; the sweep scan is \
         `FOREIGN_GRANTS_QUERY` with every Bulkhead role name, as `Database::sweep` runs it. Times are client \
         wall-clock on loopback, so they include the round trip; the load figures divide them by the \
         interval, i.e. they count the PostgreSQL backend as busy for the whole query.\n",
    );
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn duration(ms: f64) -> String {
    if ms >= 10_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{ms:.0} ms")
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// xorshift64*, seeded from the clock: the pauses need only vary, not be unpredictable.
struct Rng(u64);

impl Rng {
    fn seeded() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Rng(nanos | 1)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}
