//! The isolation suite on the local cluster: the very binary users run on kind, pointed at the local one-node
//! cluster with the images of `make images` imported into its node, PostgreSQL on the host's end of the
//! cluster's link (the major of `BULKHEAD_PG_VERSION`; the operator's admin of `BULKHEAD_PG_ADMIN`, the superuser
//! or a CREATEROLE CREATEDB role as on managed services, owning the shared database), and a TCP listener there
//! standing for an address outside the cluster.
//!
//! It runs twice on one cluster: first with `--sabotage` (the previous chart version installed and upgraded
//! from; the operator stopped, default deny deleted and every managed namespace opened by hand), where it must
//! see the cross-tenant cells differ and then see the operator repair them; then the whole suite, which must
//! pass: every cell as the contract says, databases, the gateway end to end, the drift window, the operator down
//! and a Retained deletion.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail the test by panicking

use std::io::Write as _;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

use bulkhead_e2e::cluster::{HOST_IP, POD_CIDR};
use bulkhead_e2e::postgres::Postgres;
use bulkhead_e2e::{Cluster, local_images};

const SHARED_DB: &str = "bulkhead";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Accepts and closes connections on the host's end of the cluster's link until the test ends.
fn outside_listener() -> String {
    let listener = TcpListener::bind((HOST_IP, 0)).unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            drop(stream);
        }
    });
    address
}

struct Run {
    code: Option<i32>,
    output: String,
}

fn suite(
    kubeconfig: &std::path::Path,
    dsn_file: &std::path::Path,
    pg_port: u16,
    outside: &str,
    extra: &[&str],
) -> Run {
    let helm = bulkhead_e2e::helm::binary().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_isolation-suite"))
        .current_dir(repo())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--helm")
        .arg(&helm)
        .args(["--pull-policy", "Never", "--postgres-host", &HOST_IP.to_string()])
        .args(["--postgres-port", &pg_port.to_string()])
        .arg("--postgres-admin-dsn-file")
        .arg(dsn_file)
        .args(["--outside", outside])
        .args(extra)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // Shown with --nocapture, and on failure.
    println!("{text}");
    let _ = std::io::stdout().flush();
    Run {
        code: output.status.code(),
        output: text,
    }
}

fn counts_line(output: &str, after: &str) -> String {
    output
        .split(after)
        .nth(1)
        .and_then(|rest| rest.lines().find(|l| l.starts_with("cells: ")))
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_suite_proves_isolation_on_the_local_cluster_and_sees_it_broken() {
    bulkhead_e2e::init_test_logging();
    let archives = local_images::archives(&local_images::default_dir())
        .expect("the images of `make images` (make test builds them first)");
    let cluster = Cluster::start().await.unwrap();
    for archive in &archives {
        local_images::import(&cluster, &archive.path).await.unwrap();
    }
    let pg = Postgres::start_reachable(HOST_IP, &[POD_CIDR]).await.unwrap();
    pg.create_database_for_admin(SHARED_DB).await.unwrap();
    let (user, password) = pg.operator_admin().await.unwrap();
    eprintln!("the operator's admin: {user} ({})", pg.admin_kind());
    let dir = tempfile::tempdir().unwrap();
    let dsn_file = dir.path().join("admin-dsn");
    let dsn = pg.dsn_via(&HOST_IP.to_string(), &user, &password, SHARED_DB);
    std::fs::write(&dsn_file, format!("{dsn}?sslmode=disable")).unwrap();
    let outside = outside_listener();
    let kubeconfig = cluster.plane().kubeconfig_path().to_path_buf();
    // `make isolation` records both runs in docs/isolation-suite.md.
    let record: Vec<String> = match std::env::var("BULKHEAD_SUITE_RECORD") {
        Ok(path) if !path.is_empty() => vec!["--record".into(), repo().join(path).display().to_string()],
        _ => Vec::new(),
    };
    let record: Vec<&str> = record.iter().map(String::as_str).collect();
    let previous = repo().join("e2e/fixtures/charts/bulkhead-0.1.0");

    // Broken on purpose: the suite must see it, and the operator must repair it once it is back.
    let sabotaged = suite(
        &kubeconfig,
        &dsn_file,
        pg.port(),
        &outside,
        &[
            &["--previous-chart", &previous.display().to_string(), "--sabotage"],
            record.as_slice(),
        ]
        .concat(),
    );
    assert_eq!(sabotaged.code, Some(0), "the suite did not see the sabotage");
    assert!(sabotaged.output.contains("helm upgrade to this chart"));
    let counts = counts_line(&sabotaged.output, "Traffic matrix with isolation sabotaged");
    assert!(!counts.ends_with("differing: 0"), "{counts}");
    assert!(
        sabotaged.output.contains("tenant to other tenant]"),
        "no cross-tenant cell differed"
    );
    assert!(sabotaged.output.contains("isolation holds again"));

    // The whole suite.
    let run = suite(&kubeconfig, &dsn_file, pg.port(), &outside, &record);
    let counts = counts_line(&run.output, "== Traffic matrix\n");
    assert!(counts.ends_with("differing: 0"), "{counts}");
    assert!(!run.output.contains("FAILED"), "a check failed");
    assert_eq!(run.code, Some(0));
    assert!(run.output.contains("403 from bulkhead-network-policies"));

    // Once more without the admission policies: a cluster admin makes the drift window's changes, and the
    // operator's repair alone closes it.
    let unguarded = suite(
        &kubeconfig,
        &dsn_file,
        pg.port(),
        &outside,
        &["--without-admission-policies"],
    );
    let counts = counts_line(&unguarded.output, "== Traffic matrix\n");
    assert!(counts.ends_with("differing: 0"), "{counts}");
    assert!(!unguarded.output.contains("FAILED"), "a check failed");
    assert!(
        unguarded
            .output
            .contains("ok     without the admission policies, the API server accepts"),
        "the run without policies did not make its changes as a plain admin"
    );
    assert!(
        unguarded
            .output
            .contains("ok     the operator repairs the policies")
    );
    assert_eq!(unguarded.code, Some(0));
    drop(pg);
    drop(cluster);
}
