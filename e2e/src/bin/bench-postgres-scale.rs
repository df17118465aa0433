//! `bench-postgres-scale`: Bulkhead's PostgreSQL provisioning at the size of a large MSP platform, on a real
//! PostgreSQL (Debian's 15 by default): N tenants with Schema isolation in one shared database, and M tenants with
//! Database isolation on one server, each on a fresh server of its own.
//!
//! Every tenant goes through the operator's database step as `pipeline::database::provision` runs it, built
//! from the same `postgres::` functions in the same order and under the same locks: the per-database DDL lock
//! (held for the whole step), a pooled admin connection from `connect::Server` (the operator's pool of 4), the
//! name-conflict check, the connection-capacity check and role creation under the capacity lock, the schema
//! grants (or the database, a connection into it, its hardening and lockdown), the two grant scans, and on a
//! resync the login check with the tenant's own password. Up to 16 tenants at a time, the operator's reconcile
//! concurrency. Left out: the Kubernetes side (the credentials Secret, Events, status).
//!
//! Measured: provisioning (total and per tenant), one resync of every tenant (the drift check each Tenant gets
//! every resync interval), the periodic sweep's two queries over every Bulkhead role, the queries that read
//! every role, and the catalog and disk before and after.
//!
//! Prints one Markdown table and notes; `--write FILE` stores them between the `scale-postgres-{N}` markers.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bulkhead_crds::v1alpha1::DEFAULT_CONNECTION_LIMIT;
use bulkhead_e2e::bench::{self, err};
use bulkhead_e2e::postgres::Postgres;
use bulkhead_operator::postgres::capacity;
use bulkhead_operator::postgres::connect::Server;
use bulkhead_operator::postgres::credentials;
use bulkhead_operator::postgres::naming::{Names, names};
use bulkhead_operator::postgres::provision::{self, DdlLocks, Place};
use bulkhead_operator::postgres::sql;
use bulkhead_operator::settings::{DEFAULT_CONNECTION_RESERVE, DEFAULT_GRANT_SWEEP};
use clap::Parser;
use futures::StreamExt;
use postgres_protocol::password::scram_sha_256;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

#[derive(Debug, Parser)]
#[command(
    name = "bench-postgres-scale",
    about = "Provisioning, resync and catalog growth at N schemas and M databases on one PostgreSQL server"
)]
struct Args {
    /// Tenants with Schema isolation, in one shared database.
    #[arg(long, default_value_t = 1000)]
    schemas: usize,
    /// Tenants with Database isolation, on one server.
    #[arg(long, default_value_t = 100)]
    databases: usize,
    /// Each login role's CONNECTION LIMIT; the server's max_connections is raised so that the operator's
    /// capacity accounting admits every tenant at this limit.
    #[arg(long, default_value_t = 1)]
    connection_limit: i32,
    /// Also write the table into this Markdown file, replacing the section for this N.
    #[arg(long)]
    write: Option<PathBuf>,
}

/// The shared database (Schema isolation), as the admin DSN names it.
const SHARED: &str = "app";
/// How many resources each of the operator's controllers reconciles at once (`process::run::CONCURRENCY`).
const CONCURRENCY: usize = 16;
/// The operator's default database resync interval (`DatabaseSettings::resync`).
const RESYNC: Duration = Duration::from_secs(60);
/// PostgreSQL's default `superuser_reserved_connections`.
const SUPERUSER_RESERVED: usize = 3;
/// Connections kept above the accounting, for the bench's own sessions.
const SLACK: usize = 20;
/// Runs of each sweep query (the median is reported).
const RUNS: usize = 5;

/// The catalogs whose growth is reported (shared ones are cluster-wide).
const CATALOGS: [&str; 9] = [
    "pg_class",
    "pg_namespace",
    "pg_authid",
    "pg_auth_members",
    "pg_shdepend",
    "pg_shdescription",
    "pg_depend",
    "pg_default_acl",
    "pg_database",
];

#[tokio::main]
async fn main() -> ExitCode {
    bench::exit("bench-postgres-scale", run(Args::parse()).await)
}

async fn run(args: Args) -> Result<(), String> {
    if args.schemas == 0 || args.databases == 0 {
        return Err("--schemas and --databases must be at least 1".into());
    }
    if args.connection_limit < 1 {
        return Err("--connection-limit must be at least 1 (the login check connects as the tenant)".into());
    }
    let load_before = bench::load_average();
    let schemas = measure(Place::Schema, args.schemas, args.connection_limit).await?;
    let databases = measure(Place::Database, args.databases, args.connection_limit).await?;
    let load_after = bench::load_average();
    let body = report(&args, &schemas, &databases, &load_before, &load_after);
    println!("{body}");
    if let Some(path) = &args.write {
        let (n, m) = (args.schemas, args.databases);
        bulkhead_e2e::report::replace_marked(
            path,
            &format!("scale-postgres-{n}"),
            &format!("### PostgreSQL at {n} schemas and {m} databases"),
            &body,
        )
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// One server, one isolation mode

/// What the operator shares between reconciles: the server (with its admin pool), the DDL locks and the
/// capacity lock.
struct Operator {
    server: Server,
    locks: DdlLocks,
    capacity: tokio::sync::Mutex<()>,
    place: Place,
    limit: i32,
}

struct Tenant {
    names: Names,
    password: String,
}

/// Time spent in each part of one tenant's database step, in ms.
#[derive(Debug, Default, Clone, Copy)]
struct Steps {
    /// Waiting for the DDL lock and a pooled admin connection.
    wait: f64,
    /// The name-conflict check (two role lookups, the place's owner).
    conflicts: f64,
    /// The capacity check and `ensure_roles`, under the capacity lock (SCRAM verifier included).
    roles: f64,
    /// The schema grants, or the database, the connection into it, its hardening and lockdown.
    place: f64,
    /// `extra_grants` + `foreign_grants`.
    scans: f64,
    /// The login check with the tenant's password (resync only).
    login: f64,
    /// Everything after the wait.
    held: f64,
}

struct Round {
    wall: f64,
    /// Per tenant, in tenant order.
    steps: Vec<Steps>,
}

struct Measured {
    count: usize,
    max_connections: usize,
    provision: Round,
    resync: Round,
    /// Median ms of `FOREIGN_GRANTS_QUERY` over every Bulkhead role (Schema isolation only).
    sweep_grants: Option<f64>,
    sweep_rows: usize,
    /// Median ms of `CROSS_TENANT_LOCKS_QUERY`.
    sweep_locks: f64,
    /// Median ms of `capacity::other_limits` for a new role: what every new tenant (or raised limit) reads.
    other_limits: f64,
    /// Median ms of `provision::role_row` for one role.
    role_row: f64,
    /// Bytes before and after, per catalog.
    catalogs: Vec<(&'static str, i64, i64)>,
    /// Rows before and after in pg_class, pg_roles.
    rows: Vec<(&'static str, i64, i64)>,
    /// The shared database's size before and after.
    shared_db: (i64, i64),
    /// Every database together, before and after (`pg_default` tablespace) and the shared catalogs (`pg_global`).
    tablespace: (i64, i64),
    global: (i64, i64),
    /// Size of one tenant database (Database isolation).
    tenant_db: Option<i64>,
    version: String,
}

async fn measure(place: Place, count: usize, limit: i32) -> Result<Measured, String> {
    let label = label(place);
    // The capacity accounting admits a login role only while the limits handed out, the new one and the
    // operator's reserve fit in max_connections minus the superuser reserve.
    let max_connections =
        count * limit as usize + DEFAULT_CONNECTION_RESERVE as usize + SUPERUSER_RESERVED + SLACK;
    eprintln!("{label}: starting PostgreSQL with max_connections={max_connections}...");
    let pg = Postgres::start_with_settings(&[&format!("max_connections={max_connections}")])
        .await
        .map_err(err("postgres"))?;
    let observer = pg.admin().await.map_err(err("connecting as the superuser"))?;
    observer
        .batch_execute(&format!("CREATE DATABASE {SHARED}"))
        .await
        .map_err(err("creating the shared database"))?;
    let version = observer
        .query_one("SHOW server_version", &[])
        .await
        .map_err(err("server version"))?
        .get::<_, String>(0)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    let dsn = format!(
        "{}?sslmode=disable",
        pg.dsn("postgres", pg.superuser_password(), SHARED)
    );
    let server = Server::new(&dsn, None).map_err(err("the admin DSN"))?;
    {
        let admin = server.admin().await.map_err(err("admin connection"))?;
        provision::harden(&admin, SHARED)
            .await
            .map_err(err("hardening the server"))?;
    }
    let inspect = pg
        .connect_as("postgres", pg.superuser_password(), SHARED)
        .await
        .map_err(err("connecting to the shared database"))?;
    inspect
        .batch_execute("VACUUM ANALYZE")
        .await
        .map_err(err("VACUUM ANALYZE"))?;
    let before = Sizes::read(&inspect).await?;

    let prefix = match place {
        Place::Schema => "scale-s",
        Place::Database => "scale-d",
    };
    let mut tenants = Vec::with_capacity(count);
    for i in 0..count {
        tenants.push(Tenant {
            names: names(&format!("{prefix}-{i}"), None),
            password: credentials::generate_password().map_err(err("generating a password"))?,
        });
    }
    let operator = Arc::new(Operator {
        server,
        locks: DdlLocks::default(),
        capacity: tokio::sync::Mutex::new(()),
        place,
        limit,
    });
    let tenants = Arc::new(tenants);

    eprintln!("{label}: provisioning {count} tenants, {CONCURRENCY} at a time...");
    let provision = round(&operator, &tenants, true).await?;
    eprintln!(
        "{label}: provisioned in {:.1} s; one resync of every tenant...",
        provision.wall
    );
    let resync = round(&operator, &tenants, false).await?;
    eprintln!(
        "{label}: resync round in {:.1} s; sweeps and catalog...",
        resync.wall
    );

    let admin = operator.server.admin().await.map_err(err("admin connection"))?;
    let roles: Vec<String> = tenants
        .iter()
        .flat_map(|t| [t.names.owner.clone(), t.names.login.clone()])
        .collect();
    let (sweep_grants, sweep_rows) = match place {
        Place::Schema => {
            let mut times = Vec::with_capacity(RUNS);
            let mut rows = 0;
            for _ in 0..RUNS {
                let t = Instant::now();
                rows = admin
                    .query(sql::FOREIGN_GRANTS_QUERY, &[&roles])
                    .await
                    .map_err(err("the sweep's grant scan"))?
                    .len();
                times.push(ms(t.elapsed()));
            }
            (Some(median(times)), rows)
        }
        // The sweep runs in the shared database, for the roles with a schema there: none in Database mode.
        Place::Database => (None, 0),
    };
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let t = Instant::now();
        admin
            .query(sql::CROSS_TENANT_LOCKS_QUERY, &[])
            .await
            .map_err(err("the sweep's lock scan"))?;
        times.push(ms(t.elapsed()));
    }
    let sweep_locks = median(times);
    let newcomer = names(&format!("{prefix}-new"), None);
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let t = Instant::now();
        capacity::other_limits(&admin, &newcomer.login)
            .await
            .map_err(err("reading the other roles' limits"))?;
        times.push(ms(t.elapsed()));
    }
    let other_limits = median(times);
    let middle = &tenants[count / 2].names;
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let t = Instant::now();
        provision::role_row(&admin, &middle.login)
            .await
            .map_err(err("looking up a role"))?;
        times.push(ms(t.elapsed()));
    }
    let role_row = median(times);
    drop(admin);
    let after = Sizes::read(&inspect).await?;
    let tenant_db = match place {
        Place::Schema => None,
        Place::Database => Some(
            inspect
                .query_one("SELECT pg_database_size($1::text)", &[&middle.place])
                .await
                .map_err(err("a tenant database's size"))?
                .get(0),
        ),
    };
    drop(inspect);
    drop(observer);
    drop(pg);
    Ok(Measured {
        count,
        max_connections,
        provision,
        resync,
        sweep_grants,
        sweep_rows,
        sweep_locks,
        other_limits,
        role_row,
        catalogs: before
            .catalogs
            .iter()
            .zip(&after.catalogs)
            .map(|((name, b), (_, a))| (*name, *b, *a))
            .collect(),
        rows: before
            .rows
            .iter()
            .zip(&after.rows)
            .map(|((name, b), (_, a))| (*name, *b, *a))
            .collect(),
        shared_db: (before.shared_db, after.shared_db),
        tablespace: (before.tablespace, after.tablespace),
        global: (before.global, after.global),
        tenant_db,
        version,
    })
}

/// Runs the database step for every tenant, [`CONCURRENCY`] at a time.
async fn round(operator: &Arc<Operator>, tenants: &Arc<Vec<Tenant>>, fresh: bool) -> Result<Round, String> {
    let start = Instant::now();
    let results: Vec<(usize, Result<Steps, String>)> = futures::stream::iter(0..tenants.len())
        .map(|i| {
            let operator = operator.clone();
            let tenants = tenants.clone();
            async move { (i, step(&operator, &tenants[i], fresh).await) }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    let wall = start.elapsed().as_secs_f64();
    let mut steps = vec![Steps::default(); tenants.len()];
    for (i, result) in results {
        steps[i] = result.map_err(|e| format!("tenant {}: {e}", tenants[i].names.place))?;
    }
    Ok(Round { wall, steps })
}

/// One tenant's database step, in the order and under the locks of `pipeline::database::provision`.
async fn step(operator: &Operator, tenant: &Tenant, fresh: bool) -> Result<Steps, String> {
    let names = &tenant.names;
    let mut steps = Steps::default();
    let start = Instant::now();
    let db_name = match operator.place {
        Place::Schema => SHARED.to_owned(),
        Place::Database => names.place.clone(),
    };
    let _lock = operator.locks.lock(&db_name).await;
    let admin = operator.server.admin().await.map_err(err("admin connection"))?;
    let held = Instant::now();
    steps.wait = ms(held - start);

    let t = Instant::now();
    check_conflicts(&admin, names, operator.place).await?;
    steps.conflicts = ms(t.elapsed());

    let t = Instant::now();
    let verifier = scram_sha_256(tenant.password.as_bytes());
    let roles = {
        let _capacity = operator.capacity.lock().await;
        check_capacity(&admin, names, operator.limit).await?;
        provision::ensure_roles(&admin, names, &verifier, operator.limit)
            .await
            .map_err(err("creating the roles"))?
    };
    if fresh && !roles.login_created {
        provision::set_password(&admin, names, &verifier)
            .await
            .map_err(err("setting the password"))?;
    }
    if !roles.repaired.is_empty() {
        return Err(format!("roles repaired on a clean server: {:?}", roles.repaired));
    }
    steps.roles = ms(t.elapsed());

    let t = Instant::now();
    let inside = match operator.place {
        Place::Schema => {
            provision::grant_schema(&admin, &db_name, names)
                .await
                .map_err(err("granting the schema"))?;
            None
        }
        Place::Database => {
            provision::create_database(&admin, names)
                .await
                .map_err(err("creating the database"))?;
            let inside = operator
                .server
                .connect(&db_name, None)
                .await
                .map_err(err("connecting to the tenant database"))?;
            provision::grant_database(&inside, names)
                .await
                .map_err(err("granting the database"))?;
            Some(inside)
        }
    };
    steps.place = ms(t.elapsed());

    let t = Instant::now();
    let catalog: &Client = inside.as_ref().unwrap_or(&admin);
    let extra = provision::extra_grants(catalog, names, &db_name)
        .await
        .map_err(err("reading grants"))?;
    let foreign = provision::foreign_grants(catalog, names)
        .await
        .map_err(err("reading grants on the tenant's objects"))?;
    if !extra.is_empty() || !foreign.is_empty() {
        return Err(format!(
            "{} crossing grants found on a clean server",
            extra.len() + foreign.len()
        ));
    }
    steps.scans = ms(t.elapsed());

    if !fresh && !roles.login_created {
        let t = Instant::now();
        if !login_works(&operator.server, &db_name, names, &tenant.password).await {
            return Err("the tenant's password was refused".into());
        }
        steps.login = ms(t.elapsed());
    }
    steps.held = ms(held.elapsed());
    Ok(steps)
}

/// `pipeline::database::check_conflicts`: the roles and the place, if they exist, must be Bulkhead's.
async fn check_conflicts(admin: &Client, names: &Names, place: Place) -> Result<(), String> {
    for role in [&names.owner, &names.login] {
        if let Some(row) = provision::role_row(admin, role)
            .await
            .map_err(err("looking up roles"))?
            && !row.is_bulkheads()
        {
            return Err(format!("role {role} exists and is not Bulkhead's"));
        }
    }
    match provision::owner_of(admin, place, &names.place)
        .await
        .map_err(err("looking up the place"))?
    {
        Some(owner) if owner != names.owner => Err(format!("{} is owned by {owner}", names.place)),
        _ => Ok(()),
    }
}

/// `pipeline::database::check_capacity`: a new login role, or a raised limit, must fit the server.
async fn check_capacity(admin: &Client, names: &Names, limit: i32) -> Result<(), String> {
    let current = provision::role_row(admin, &names.login)
        .await
        .map_err(err("looking up roles"))?
        .map(|row| row.connection_limit);
    if !capacity::needs_check(current, limit) {
        return Ok(());
    }
    let server = capacity::server_limits(admin)
        .await
        .map_err(err("reading the connection settings"))?;
    let others = capacity::other_limits(admin, &names.login)
        .await
        .map_err(err("reading the connection limits"))?;
    capacity::check(&server, DEFAULT_CONNECTION_RESERVE, &others, limit)
        .map_err(|e| format!("connection capacity: {e}"))
}

/// `pipeline::database::login_works`: only a refused password counts as drift.
async fn login_works(server: &Server, db_name: &str, names: &Names, password: &str) -> bool {
    match server.connect(db_name, Some((&names.login, password))).await {
        Ok(_) => true,
        Err(err) => !err
            .as_db_error()
            .is_some_and(|db| db.code() == &SqlState::INVALID_PASSWORD),
    }
}

// ---------------------------------------------------------------------------------------------------------
// Catalog and disk

struct Sizes {
    catalogs: Vec<(&'static str, i64)>,
    rows: Vec<(&'static str, i64)>,
    shared_db: i64,
    tablespace: i64,
    global: i64,
}

impl Sizes {
    /// Read from the shared database (its catalogs; the shared catalogs are the same from every database).
    async fn read(client: &Client) -> Result<Sizes, String> {
        let mut catalogs = Vec::new();
        for table in CATALOGS {
            let bytes: i64 = client
                .query_one(
                    &format!("SELECT pg_total_relation_size('pg_catalog.{table}'::regclass)"),
                    &[],
                )
                .await
                .map_err(err("a catalog's size"))?
                .get(0);
            catalogs.push((table, bytes));
        }
        let mut rows = Vec::new();
        for table in ["pg_class", "pg_depend", "pg_shdepend", "pg_authid"] {
            let count: i64 = client
                .query_one(&format!("SELECT count(*) FROM pg_catalog.{table}"), &[])
                .await
                .map_err(err("counting a catalog"))?
                .get(0);
            rows.push((table, count));
        }
        let row = client
            .query_one(
                "SELECT pg_database_size(current_database()), pg_tablespace_size('pg_default'), \
                 pg_tablespace_size('pg_global')",
                &[],
            )
            .await
            .map_err(err("database sizes"))?;
        Ok(Sizes {
            catalogs,
            rows,
            shared_db: row.get(0),
            tablespace: row.get(1),
            global: row.get(2),
        })
    }
}

// ---------------------------------------------------------------------------------------------------------
// Report

fn report(args: &Args, s: &Measured, d: &Measured, load_before: &str, load_after: &str) -> String {
    let (n, m) = (args.schemas, args.databases);
    let profile = bench::profile();
    let mut out = format!(
        "{}; {}; PostgreSQL {} on loopback, {profile} build; load average {load_before} before, {load_after} \
         after. `bench-postgres-scale --schemas {n} --databases {m}`.\n\n\
         | measure | Schema isolation, {n} schemas | Database isolation, {m} databases |\n\
         |---|---:|---:|\n",
        bulkhead_e2e::report::today(),
        bench::cores_and_model(),
        s.version
    );
    let mut row = |what: &str, f: &dyn Fn(&Measured) -> String| {
        out.push_str(&format!("| {what} | {} | {} |\n", f(s), f(d)));
    };
    row("server: max_connections / login-role CONNECTION LIMIT", &|x| {
        format!("{} / {}", x.max_connections, args.connection_limit)
    });
    row(
        &format!("provisioning, all tenants ({CONCURRENCY} reconciles at once)"),
        &|x| {
            format!(
                "{:.1} s ({:.0} tenants/s)",
                x.provision.wall,
                x.count as f64 / x.provision.wall
            )
        },
    );
    row("provisioning per tenant (DDL lock held), p50 / p99", &|x| {
        let held = sorted(&x.provision.steps, |s| s.held);
        format!(
            "{:.1} / {:.1} ms",
            percentile(&held, 50.0),
            percentile(&held, 99.0)
        )
    });
    row("provisioning per tenant, first 10 % / last 10 % (mean)", &|x| {
        let (first, last) = deciles(&x.provision.steps, |s| s.held);
        format!("{first:.1} / {last:.1} ms")
    });
    row(
        "&nbsp;&nbsp;of which capacity check + roles, first 10 % / last 10 %",
        &|x| {
            let (first, last) = deciles(&x.provision.steps, |s| s.roles);
            format!("{first:.1} / {last:.1} ms")
        },
    );
    row("&nbsp;&nbsp;of which the place (schema / database), mean", &|x| {
        format!("{:.1} ms", mean_of(&x.provision.steps, |s| s.place))
    });
    row(
        &format!(
            "one resync of every tenant (wall; share of the {} s resync interval)",
            RESYNC.as_secs()
        ),
        &|x| {
            format!(
                "{:.1} s ({:.0} %)",
                x.resync.wall,
                x.resync.wall / RESYNC.as_secs_f64() * 100.0
            )
        },
    );
    row("resync per tenant (DDL lock held), p50 / p99", &|x| {
        let held = sorted(&x.resync.steps, |s| s.held);
        format!(
            "{:.1} / {:.1} ms",
            percentile(&held, 50.0),
            percentile(&held, 99.0)
        )
    });
    row(
        "&nbsp;&nbsp;conflicts / roles / place / grant scans / login check (mean)",
        &|x| {
            let st = &x.resync.steps;
            format!(
                "{:.1} / {:.1} / {:.1} / {:.1} / {:.1} ms",
                mean_of(st, |s| s.conflicts),
                mean_of(st, |s| s.roles),
                mean_of(st, |s| s.place),
                mean_of(st, |s| s.scans),
                mean_of(st, |s| s.login)
            )
        },
    );
    row(
        "&nbsp;&nbsp;waiting for the DDL lock / a pooled connection (mean)",
        &|x| format!("{:.1} ms", mean_of(&x.resync.steps, |s| s.wait)),
    );
    row(
        &format!(
            "grant sweep `FOREIGN_GRANTS_QUERY`, every role (median; share of the {} s sweep)",
            DEFAULT_GRANT_SWEEP.as_secs()
        ),
        &|x| match x.sweep_grants {
            Some(t) => format!(
                "{t:.1} ms ({:.1} %; {} rows)",
                t / (DEFAULT_GRANT_SWEEP.as_secs_f64() * 1000.0) * 100.0,
                x.sweep_rows
            ),
            None => "not run (no schema in the shared database)".to_owned(),
        },
    );
    row("lock sweep `CROSS_TENANT_LOCKS_QUERY` (median)", &|x| {
        format!("{:.1} ms", x.sweep_locks)
    });
    row(
        "`capacity::other_limits` (reads every role; each new tenant or raised limit)",
        &|x| format!("{:.1} ms", x.other_limits),
    );
    row("`provision::role_row` (one role, by name)", &|x| {
        format!("{:.2} ms", x.role_row)
    });
    row("shared database size before → after (per tenant)", &|x| {
        growth(x.shared_db, x.count)
    });
    row(
        "all databases (`pg_default`) before → after (per tenant)",
        &|x| growth(x.tablespace, x.count),
    );
    row(
        "shared catalogs (`pg_global`) before → after (per tenant)",
        &|x| growth(x.global, x.count),
    );
    row("one tenant database (`pg_database_size`)", &|x| {
        x.tenant_db.map_or_else(|| "–".to_owned(), mib)
    });
    for (i, (name, _, _)) in s.catalogs.iter().enumerate() {
        row(
            &format!("`{name}` with indexes, before → after (per tenant)"),
            &|x| {
                let (_, b, a) = x.catalogs[i];
                growth((b, a), x.count)
            },
        );
    }
    for (i, (name, _, _)) in s.rows.iter().enumerate() {
        row(&format!("`{name}` rows before → after"), &|x| {
            let (_, b, a) = x.rows[i];
            format!("{b} → {a}")
        });
    }
    let limit = DEFAULT_CONNECTION_LIMIT as usize;
    let reserve = DEFAULT_CONNECTION_RESERVE as usize;
    out.push_str(&format!(
        "\nNotes:\n\n\
         - Each tenant runs the operator's database step as `pipeline::database::provision` does (the same \
         `postgres::` functions in order, the per-database DDL lock for the whole step, the capacity lock, the \
         operator's admin pool of 4), {CONCURRENCY} at a time; the Kubernetes side (the credentials Secret, \
         Events, status) is left out. Schema isolation serialises every tenant on the shared database's DDL \
         lock, so its resync round is the sum of the per-tenant times; Database isolation takes one lock per \
         database. Schemas are empty: this is Bulkhead's own footprint (the cost of tenants' objects in the \
         grant scans is in the grant repair section).\n\
         - Connection capacity: at the default CONNECTION LIMIT of {limit} and the default reserve of \
         {reserve}, the accounting admits (max_connections − {SUPERUSER_RESERVED} − {reserve}) / {limit} \
         tenants per server: {} at max_connections 100, {} at 1,000; {n} tenants at {limit} would need \
         max_connections ≥ {}. The bench sets each tenant's `connectionLimit` to {} and max_connections to \
         tenants × limit + {reserve} + {SUPERUSER_RESERVED} + {SLACK}.\n\
         - A resync round that takes longer than the resync interval means the operator cannot check every \
         tenant once per interval: its per-tenant checks queue on the shared database's DDL lock, and new \
         tenants and repairs wait behind them.\n",
        (100 - SUPERUSER_RESERVED - reserve) / limit,
        (1000 - SUPERUSER_RESERVED - reserve) / limit,
        n * limit + reserve + SUPERUSER_RESERVED,
        args.connection_limit,
    ));
    out
}

fn label(place: Place) -> &'static str {
    match place {
        Place::Schema => "schemas",
        Place::Database => "databases",
    }
}

fn growth((before, after): (i64, i64), count: usize) -> String {
    format!(
        "{} → {} ({})",
        mib(before),
        mib(after),
        bytes((after - before) as f64 / count as f64)
    )
}

fn mib(b: i64) -> String {
    format!("{:.1} MiB", b as f64 / 1024.0 / 1024.0)
}

fn bytes(b: f64) -> String {
    if b.abs() >= 1024.0 * 1024.0 {
        format!("{:.2} MiB", b / 1024.0 / 1024.0)
    } else if b.abs() >= 1024.0 {
        format!("{:.1} KiB", b / 1024.0)
    } else {
        format!("{b:.0} B")
    }
}

fn sorted(steps: &[Steps], f: impl Fn(&Steps) -> f64) -> Vec<f64> {
    let mut v: Vec<f64> = steps.iter().map(f).collect();
    v.sort_by(f64::total_cmp);
    v
}

fn mean_of(steps: &[Steps], f: impl Fn(&Steps) -> f64) -> f64 {
    if steps.is_empty() {
        return 0.0;
    }
    steps.iter().map(f).sum::<f64>() / steps.len() as f64
}

/// The mean of the first and of the last tenth, in tenant order (each tenant provisioned after the ones before).
fn deciles(steps: &[Steps], f: impl Fn(&Steps) -> f64 + Copy) -> (f64, f64) {
    let tenth = (steps.len() / 10).max(1);
    (
        mean_of(&steps[..tenth], f),
        mean_of(&steps[steps.len() - tenth..], f),
    )
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The median of some timings.
fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    percentile(&times, 50.0)
}
