//! The sandbox starts from nothing, applies the examples, prints the table with every example resource, shows
//! the gateway routing by token, and cleans up after itself.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail the test by panicking

use std::process::Command;

#[test]
fn sandbox_once_prints_every_example_and_cleans_up() {
    let output = Command::new(env!("CARGO_BIN_EXE_sandbox"))
        .args(["--once", "--settle-seconds", "60"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "sandbox failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );

    let header = stdout
        .lines()
        .position(|l| l.starts_with("KIND "))
        .expect("a table header");
    let rows: Vec<&str> = stdout
        .lines()
        .skip(header + 1)
        .take_while(|l| !l.is_empty())
        .collect();
    for (kind, name) in [
        ("Tenant", "acme"),
        ("Tenant", "globex"),
        ("Customer", "acme-dental"),
        ("Customer", "acme-lawfirm"),
        ("Customer", "globex-bakery"),
    ] {
        let row = rows
            .iter()
            .find(|r| r.split_whitespace().take(2).eq([kind, name]))
            .unwrap_or_else(|| panic!("no row for {kind} {name} in\n{stdout}"));
        // Provisioned, with namespace and policies in place; the stack itself cannot run without a kubelet.
        let namespace = if kind == "Tenant" {
            format!("bk-{name}")
        } else {
            format!("bk-{}-{name}", &name[..name.find('-').unwrap()])
        };
        assert!(row.split_whitespace().any(|cell| cell == namespace), "{row}");
        assert!(row.ends_with("False  StackNotReady"), "{row}");
        // Every example but globex-bakery asks for a database, and gets it from the sandbox's PostgreSQL.
        let database = row.split_whitespace().rev().nth(2).unwrap();
        let wanted = if name == "globex-bakery" {
            "-"
        } else {
            "Provisioned"
        };
        assert_eq!(database, wanted, "{row}");
    }
    assert_eq!(rows.len(), 5, "{stdout}");
    let line = |prefix: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix} line in\n{stdout}"))
            .to_owned()
    };
    let schemas = line("schemas:");
    for tenant in ["bk_acme_", "bk_acme_acme_dental_"] {
        assert!(
            schemas.split([' ', ',']).any(|s| s.starts_with(tenant)),
            "{schemas}"
        );
    }
    let databases = line("databases:");
    for tenant in ["bk_globex_", "bk_acme_acme_lawfirm_"] {
        assert!(
            databases.split([' ', ',']).any(|s| s.starts_with(tenant)),
            "{databases}"
        );
    }

    // The gateway in front of two example upstreams: each token reaches its own Tenant's upstream only, with one
    // set of identity headers; spoofed identity headers change nothing; no token and no route are refused.
    let answer = |request: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(request) && l[request.len()..].starts_with("  "))
            .unwrap_or_else(|| panic!("no gateway row {request:?} in\n{stdout}"))
            .to_owned()
    };
    let acme = answer("acme's token");
    assert!(
        acme.contains(" 200 ") && acme.contains("upstream: acme;"),
        "{acme}"
    );
    assert!(
        acme.contains("x-bulkhead-tenant: acme") && !acme.contains("globex"),
        "{acme}"
    );
    assert_eq!(acme.matches("x-bulkhead-org:").count(), 1, "{acme}");
    let globex = answer("globex's token");
    assert!(
        globex.contains(" 200 ") && globex.contains("upstream: globex;"),
        "{globex}"
    );
    let spoofed = answer("acme's token + X-Bulkhead-Tenant: globex");
    assert!(
        spoofed.contains("upstream: acme;") && spoofed.contains("x-bulkhead-tenant: acme"),
        "{spoofed}"
    );
    assert_eq!(spoofed.matches("x-bulkhead-tenant:").count(), 1, "{spoofed}");
    let missing = answer("no token");
    assert!(
        missing.contains(" 401 ") && missing.contains(r#""gate":"token","reason":"missing""#),
        "{missing}"
    );
    let stray = answer("a valid token for an unknown org");
    assert!(
        stray.contains(" 403 ") && stray.contains(r#""gate":"route","reason":"no_route""#),
        "{stray}"
    );

    let log = stdout
        .lines()
        .find_map(|l| l.strip_prefix("operator logs: "))
        .expect("log path line")
        .trim();
    let dir = std::path::Path::new(log).parent().unwrap();
    assert!(!dir.exists(), "{} was left behind", dir.display());
}
