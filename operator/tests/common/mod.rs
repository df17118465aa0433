//! Running the real `bulkhead-operator` binary against a test control plane.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use bulkhead_e2e::ControlPlane;

pub const BIN: &str = env!("CARGO_BIN_EXE_bulkhead-operator");

/// A running operator process; killed when dropped.
pub struct OperatorProcess {
    pub child: Child,
    pub admin_port: u16,
    pub log: PathBuf,
}

impl OperatorProcess {
    /// Starts `bulkhead-operator run` with the kubeconfig `context` and extra arguments, logging JSON to a file in
    /// the control plane's temp dir.
    pub fn start(plane: &ControlPlane, context: &str, name: &str, extra: &[&str]) -> Self {
        let admin_port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = plane.dir().join(format!("operator-{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .args(["run", "--log-format", "json", "--context", context])
            .args(["--admin-addr", &format!("127.0.0.1:{admin_port}")])
            .arg("--kubeconfig")
            .arg(plane.kubeconfig_path())
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        OperatorProcess {
            child,
            admin_port,
            log,
        }
    }

    pub fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Sends a signal (`-TERM`, `-KILL`).
    pub fn signal(&self, signal: &str) {
        assert!(
            Command::new("kill")
                .args([signal, &self.pid()])
                .status()
                .unwrap()
                .success()
        );
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.1
    }

    /// GETs a path from its admin endpoint: the status code (0 when it does not answer) and the body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.admin_port));
        bulkhead_e2e::operator::http_get(addr, path)
            .await
            .unwrap_or_default()
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The value of a metric line that starts with `prefix`, or 0 when absent.
pub fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
