//! The real `bulkhead-gateway` binary: started on port 0 with a config written into a temp dir, the addresses
//! it announces, and SIGTERM.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};

use serde_json::{Value, json};

use super::{ISS_A, TestKey};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_bulkhead-gateway");

/// Writes a JWKS with `key`, the routes file and a config (plus `extra_config`) into `dir`, and starts the
/// binary on port 0 for both listeners, with `env`, JSON logs on a piped stderr and audit lines on `stdout`.
pub fn spawn_gateway(
    dir: &Path,
    key: &TestKey,
    routes: &str,
    extra_config: &str,
    env: &[(&str, &str)],
    stdout: Stdio,
) -> Child {
    std::fs::write(
        dir.join("jwks.json"),
        json!({"keys": [key.jwk(true)]}).to_string(),
    )
    .unwrap();
    std::fs::write(dir.join("routes.yaml"), routes).unwrap();
    let config = format!(
        "issuers:\n  - issuer: {ISS_A}\n    algorithms: [RS256]\n    jwks_file: {}\nroutes:\n  source: file\n  file: {}\n{extra_config}",
        dir.join("jwks.json").display(),
        dir.join("routes.yaml").display()
    );
    std::fs::write(dir.join("gateway.yaml"), config).unwrap();
    Command::new(BIN)
        .args(["run", "--config"])
        .arg(dir.join("gateway.yaml"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .envs(env.iter().copied())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The proxy and admin addresses the child announces on stderr (both listeners are on port 0). Stderr keeps
/// being drained afterwards: a closed pipe would fail the gateway's log writes.
pub fn announced(child: &mut Child) -> (SocketAddr, SocketAddr) {
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let value = serde_json::from_str::<Value>(&line).unwrap_or(Value::Null);
            if value["message"] == "gateway listening" {
                let _ = tx.send(value);
            }
        }
    });
    let listening = rx.recv().expect("the gateway announces its addresses");
    let addr = |field: &str| listening[field].as_str().unwrap().parse().unwrap();
    (addr("addr"), addr("admin_addr"))
}

/// Sends SIGTERM and waits for the exit.
pub fn terminate(child: &mut Child) -> ExitStatus {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    child.wait().unwrap()
}
