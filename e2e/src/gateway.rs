//! The sandbox's token issuer for the gateway: a throwaway ES256 key pair whose public half the gateway trusts as
//! a static PEM key, tokens minted with the gateway's own `token` subcommand, and a request helper.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::HarnessError;

/// The `iss` of every sandbox token.
pub const ISSUER: &str = "https://sandbox.bulkhead.local";
/// The `kid` of the sandbox key.
pub const KID: &str = "sandbox-1";
/// The file name of the public key in the gateway's configuration.
pub const PUBLIC_KEY_FILE: &str = "sandbox-key.pub.pem";

fn io(what: &str) -> impl FnOnce(std::io::Error) -> HarnessError + use<> {
    let what = what.to_owned();
    move |source| HarnessError::Io { what, source }
}

/// A key pair: the private half in a file only root can read (for minting), the public half as PEM text (for the
/// gateway's configuration).
#[derive(Debug)]
pub struct Issuer {
    private_key: PathBuf,
    public_pem: String,
}

impl Issuer {
    /// Generates a P-256 key pair and writes the private key to `dir/sandbox-key.pem` (mode 0600).
    pub fn generate(dir: &Path) -> Result<Issuer, HarnessError> {
        let key = rcgen::KeyPair::generate()?;
        let private_key = dir.join("sandbox-key.pem");
        std::fs::write(&private_key, key.serialize_pem()).map_err(io("writing the sandbox key"))?;
        std::fs::set_permissions(&private_key, std::fs::Permissions::from_mode(0o600))
            .map_err(io("restricting the sandbox key"))?;
        Ok(Issuer {
            private_key,
            public_pem: key.public_key_pem(),
        })
    }

    /// The public key in PEM.
    pub fn public_pem(&self) -> &str {
        &self.public_pem
    }

    /// The private key's file.
    pub fn private_key(&self) -> &Path {
        &self.private_key
    }

    /// The gateway's configuration: listeners on `port` and `admin_port`, this issuer with its public key read
    /// from `key_dir/sandbox-key.pub.pem`, Clerk's org claim, and routes from the cluster's Tenants and Customers.
    pub fn gateway_config(&self, port: u16, admin_port: u16, key_dir: &str) -> String {
        format!(
            "listen: 0.0.0.0:{port}\n\
             admin: 0.0.0.0:{admin_port}\n\
             issuers:\n\
             \x20 - issuer: {ISSUER}\n\
             \x20   algorithms: [ES256]\n\
             \x20   org_claim: clerk\n\
             \x20   pem_keys: [{{kid: {KID}, algorithm: ES256, path: \"{key_dir}/{PUBLIC_KEY_FILE}\"}}]\n\
             routes:\n\
             \x20 source: kubernetes\n"
        )
    }

    /// Mints a token for `org` and `subject` with `gateway token` (the gateway binary's own minting).
    pub async fn token(&self, gateway: &Path, org: &str, subject: &str) -> Result<String, HarnessError> {
        let output = tokio::process::Command::new(gateway)
            .args(self.token_args(org))
            .args(["--sub", subject])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(io("running bulkhead-gateway token"))?;
        if !output.status.success() {
            return Err(HarnessError::Manifest(format!(
                "bulkhead-gateway token failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// The command line that mints a token for `org`, for people to copy.
    pub fn token_command(&self, gateway: &Path, org: &str) -> String {
        format!("{} {}", gateway.display(), self.token_args(org).join(" "))
    }

    fn token_args(&self, org: &str) -> Vec<String> {
        [
            "token", "--alg", "ES256", "--kid", KID, "--iss", ISSUER, "--org", org, "--key",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain([self.private_key.display().to_string()])
        .collect()
    }
}

/// Sends one GET with an optional bearer token and extra headers; returns the status and body.
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
