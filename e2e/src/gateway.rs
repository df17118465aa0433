//! The gateway in the sandbox: two example upstreams that echo the identity they were given, the
//! `bulkhead-gateway` binary in front of them with a throwaway ES256 key, and a few requests that show who
//! reaches what.
//!
//! The sandbox cannot run stacks (no kubelet), so its Tenants never become Ready and the gateway, which routes
//! Ready resources only, would route nothing from the cluster. Here it routes from a static routes file
//! instead: the Tenants' org ids to the two local upstreams.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::HarnessError;

fn io(what: &str) -> impl FnOnce(std::io::Error) -> HarnessError + use<> {
    let what = what.to_owned();
    move |source| HarnessError::Io { what, source }
}

/// A stand-in stack: answers every request with its name and the `x-bulkhead-*` headers it received, one
/// `name: value` line each, so a reader sees exactly which identity arrived (and that it arrived once).
#[derive(Debug)]
pub struct EchoUpstream {
    /// Its address.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl EchoUpstream {
    /// Starts one on a free loopback port.
    pub async fn start(name: &str) -> Result<EchoUpstream, HarnessError> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(io("binding an upstream"))?;
        let addr = listener.local_addr().map_err(io("upstream address"))?;
        let name = name.to_owned();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(echo(stream, name.clone()));
            }
        });
        Ok(EchoUpstream { addr, task })
    }
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves HTTP/1.1 requests without bodies on one connection (keep-alive), which is all the gateway sends here.
async fn echo(stream: TcpStream, name: String) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    loop {
        let mut identity = Vec::new();
        let mut line = String::new();
        match lines.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        loop {
            line.clear();
            match lines.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if header.to_ascii_lowercase().starts_with("x-bulkhead-") {
                identity.push(header.to_owned());
            }
        }
        identity.sort();
        let body = format!("upstream: {name}\n{}\n", identity.join("\n"));
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if write.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// A `bulkhead-gateway` process, stopped (SIGTERM, then SIGKILL) on drop.
#[derive(Debug)]
pub struct GatewayProcess {
    child: Child,
    /// The proxy listener.
    pub addr: SocketAddr,
    /// The admin listener.
    pub admin: SocketAddr,
    binary: PathBuf,
    key: PathBuf,
    /// The issuer its tokens must carry.
    pub issuer: String,
    /// The kid of the sandbox key.
    pub kid: String,
}

fn free_port() -> Result<u16, HarnessError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(io("choosing a port"))
}

impl GatewayProcess {
    /// Writes a key pair, the routes (`(org, tenant, upstream)`) and the config into `dir`, starts `binary` and
    /// waits until `/readyz` answers 200. Audit lines go to `dir/gateway-audit.log`, logs to `dir/gateway.log`.
    pub async fn start(
        binary: &Path,
        dir: &Path,
        routes: &[(&str, &str, SocketAddr)],
    ) -> Result<GatewayProcess, HarnessError> {
        let key = rcgen::KeyPair::generate()?;
        let (private, public) = (dir.join("sandbox-key.pem"), dir.join("sandbox-key.pub.pem"));
        std::fs::write(&private, key.serialize_pem()).map_err(io("writing the sandbox key"))?;
        std::fs::write(&public, key.public_key_pem()).map_err(io("writing the sandbox public key"))?;
        let mut file = String::from("routes:\n");
        for (org, tenant, upstream) in routes {
            file.push_str(&format!(
                "  - {{org: {org}, tenant: {tenant}, upstream: \"{upstream}\"}}\n"
            ));
        }
        let routes_path = dir.join("gateway-routes.yaml");
        std::fs::write(&routes_path, file).map_err(io("writing the routes"))?;
        let (issuer, kid) = (
            "https://sandbox.bulkhead.local".to_owned(),
            "sandbox-1".to_owned(),
        );
        let (port, admin_port) = (free_port()?, free_port()?);
        let config = format!(
            "listen: 127.0.0.1:{port}\nadmin: 127.0.0.1:{admin_port}\n\
             issuers:\n  - issuer: {issuer}\n    algorithms: [ES256]\n    org_claim: clerk\n\
             \x20   pem_keys: [{{kid: {kid}, algorithm: ES256, path: \"{}\"}}]\n\
             routes:\n  source: file\n  file: \"{}\"\n",
            public.display(),
            routes_path.display()
        );
        let config_path = dir.join("gateway.yaml");
        std::fs::write(&config_path, config).map_err(io("writing the gateway config"))?;
        let audit = std::fs::File::create(dir.join("gateway-audit.log")).map_err(io("audit log"))?;
        let log = std::fs::File::create(dir.join("gateway.log")).map_err(io("gateway log"))?;
        let child = Command::new(binary)
            .args(["run", "--log-format", "plain", "--config"])
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(audit)
            .stderr(log)
            .spawn()
            .map_err(io("starting bulkhead-gateway"))?;
        let gateway = GatewayProcess {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            admin: SocketAddr::from(([127, 0, 0, 1], admin_port)),
            binary: binary.to_owned(),
            key: private,
            issuer,
            kid,
        };
        crate::wait::until(Duration::from_secs(20), "the gateway's /readyz", || async {
            let (status, _) = crate::operator::http_get(gateway.admin, "/readyz").await.ok()?;
            (status == 200).then_some(())
        })
        .await?;
        Ok(gateway)
    }

    /// Mints a token for `org` with the gateway's own `token` subcommand.
    pub fn token(&self, org: &str, subject: &str) -> Result<String, HarnessError> {
        let output = Command::new(&self.binary)
            .args([
                "token",
                "--alg",
                "ES256",
                "--kid",
                &self.kid,
                "--iss",
                &self.issuer,
                "--org",
                org,
            ])
            .args(["--sub", subject, "--key"])
            .arg(&self.key)
            .output()
            .map_err(io("running bulkhead-gateway token"))?;
        if !output.status.success() {
            return Err(HarnessError::Io {
                what: format!(
                    "bulkhead-gateway token: {}",
                    String::from_utf8_lossy(&output.stderr)
                ),
                source: std::io::Error::other("token minting failed"),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// The command line that mints a token for `org`, for people to copy.
    pub fn token_command(&self, org: &str) -> String {
        format!(
            "{} token --alg ES256 --kid {} --iss {} --org {org} --key {}",
            self.binary.display(),
            self.kid,
            self.issuer,
            self.key.display()
        )
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one GET with optional bearer token and extra headers; returns the status and body.
pub async fn get(
    addr: SocketAddr,
    token: Option<&str>,
    extra: &[(&str, &str)],
) -> Result<(u16, String), HarnessError> {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = bearer.iter().map(|b| ("Authorization", b.as_str())).collect();
    headers.extend_from_slice(extra);
    crate::http::get(addr, "/hello", &headers).await
}
