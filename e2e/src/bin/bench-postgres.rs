//! `bench-postgres`: provisioning N tenants' schemas and roles (Schema isolation) on a real PostgreSQL 15, by
//! Bulkhead's provisioning code, against the floor: the very same SQL sent by `psql` in one session.
//! Prints one Markdown table; `--write FILE` also stores it (docs/benchmarks.md).

use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;

use bulkhead_e2e::postgres::Postgres;
use bulkhead_operator::postgres::naming::names;
use bulkhead_operator::postgres::{provision, sql};
use clap::Parser;
use postgres_protocol::password::scram_sha_256;

#[derive(Debug, Parser)]
#[command(
    name = "bench-postgres",
    about = "Benchmark tenant provisioning against psql running the same SQL"
)]
struct Args {
    /// How many tenants.
    #[arg(long, default_value_t = 500)]
    tenants: usize,
    /// Also write the results table into this Markdown file, replacing the section for this N.
    #[arg(long)]
    write: Option<PathBuf>,
}

const DB: &str = "app";
const LIMIT: i32 = 20;

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-postgres: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn fresh() -> Result<Postgres, String> {
    let pg = Postgres::start().await.map_err(|e| e.to_string())?;
    let admin = pg.admin().await.map_err(|e| e.to_string())?;
    admin
        .batch_execute("CREATE DATABASE app")
        .await
        .map_err(|e| e.to_string())?;
    let app = pg
        .connect_as("postgres", pg.superuser_password(), DB)
        .await
        .map_err(|e| e.to_string())?;
    provision::harden(&app, DB).await.map_err(|e| e.to_string())?;
    Ok(pg)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

async fn run(args: Args) -> Result<(), String> {
    let n = args.tenants;
    let verifiers: Vec<String> = (0..n)
        .map(|i| scram_sha_256(format!("pw-{i}").as_bytes()))
        .collect();

    // Floor: the same statements, one psql session, no round trips between them.
    eprintln!("floor: psql runs the SQL for {n} tenants in one session...");
    let pg = fresh().await?;
    let mut script = String::from("\\set ON_ERROR_STOP on\n");
    for (i, verifier) in verifiers.iter().enumerate() {
        let nm = names(&format!("tenant-{i}"), None);
        let mut statements = vec![
            sql::create_owner_role(&nm.owner).map_err(|e| e.to_string())?,
            sql::create_login_role(&nm.login, verifier, LIMIT).map_err(|e| e.to_string())?,
            sql::comment_role(&nm.owner, &sql::role_marker(&nm.place)).map_err(|e| e.to_string())?,
            sql::comment_role(&nm.login, &sql::role_marker(&nm.place)).map_err(|e| e.to_string())?,
            sql::connect_grant(DB, &nm.login).map_err(|e| e.to_string())?,
        ];
        statements
            .extend(sql::schema_grants(DB, &nm.place, &nm.owner, &nm.login).map_err(|e| e.to_string())?);
        for s in statements {
            script.push_str(&s);
            script.push_str(";\n");
        }
    }
    let file = pg.dir().join("floor.sql");
    std::fs::write(&file, script).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let status = Command::new("psql")
        .args([
            "-q",
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port().to_string(),
            "-U",
            "postgres",
            "-d",
            DB,
            "-f",
        ])
        .arg(&file)
        .env("PGPASSWORD", pg.superuser_password())
        .status()
        .map_err(|e| format!("running psql (apt-get install postgresql-client-15): {e}"))?;
    let floor = start.elapsed().as_secs_f64();
    if !status.success() {
        return Err(format!("psql failed: {status}"));
    }
    drop(pg);

    // Bulkhead: provision_schema per tenant, as the operator calls it (existence checks, idempotent forms).
    eprintln!("bulkhead: provisioning {n} tenants...");
    let pg = fresh().await?;
    let app = pg
        .connect_as("postgres", pg.superuser_password(), DB)
        .await
        .map_err(|e| e.to_string())?;
    let locks = provision::DdlLocks::default();
    let mut per_tenant = Vec::with_capacity(n);
    let start = Instant::now();
    for (i, verifier) in verifiers.iter().enumerate() {
        let nm = names(&format!("tenant-{i}"), None);
        let t = Instant::now();
        let _guard = locks.lock(DB).await;
        provision::provision_schema(&app, DB, &nm, verifier, LIMIT)
            .await
            .map_err(|e| e.to_string())?;
        per_tenant.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let total = start.elapsed().as_secs_f64();
    per_tenant.sort_by(f64::total_cmp);
    let ratio = total / floor;
    let table = format!(
        "### Provisioning {n} tenants (Schema isolation, PostgreSQL 15 on loopback)\n\n\
| measure | Bulkhead | floor: same SQL in one psql session | target |\n\
| --- | ---: | ---: | --- |\n\
| total | {total:.2} s | {floor:.2} s | ≤ 2× floor: **{ratio:.2}×** |\n\
| per tenant p50 / p99 | {:.1} ms / {:.1} ms | {:.1} ms (mean) | |\n",
        percentile(&per_tenant, 50.0),
        percentile(&per_tenant, 99.0),
        floor * 1000.0 / n as f64,
    );
    println!("{table}");
    if let Some(path) = args.write {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let heading = format!("### Provisioning {n} tenants");
        let kept: String = match text.find(&heading) {
            Some(start) => {
                let rest = &text[start + heading.len()..];
                let end = rest
                    .find("\n### ")
                    .or_else(|| rest.find("\n## "))
                    .map_or(text.len(), |e| start + heading.len() + e + 1);
                format!("{}{table}\n{}", &text[..start], &text[end..])
            }
            None => format!(
                "{text}\n## Postgres provisioning\n\n`make bench-postgres` (N=500): a fresh server per run; the floor is `psql -f` with every statement for N tenants; Bulkhead runs `provision_schema` per tenant on one connection (role lookups, the ownership comments, the password statement with logging off, per-database DDL lock). The operator's full database step adds, per reconcile, a name-conflict check and one catalog scan for extra grants, and the Kubernetes write of the credentials Secret.\n\n{table}"
            ),
        };
        std::fs::write(&path, kept).map_err(|e| e.to_string())?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
