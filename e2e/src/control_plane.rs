//! A real Kubernetes control plane on loopback, owned by one process.
//!
//! [`ControlPlane::start`] finds the binaries (via `e2e/scripts/control-plane-assets.sh`: `$KUBEBUILDER_ASSETS`,
//! the versioned cache, or a build from Debian's source package), starts etcd, kube-apiserver and
//! kube-controller-manager on free 127.0.0.1 ports in a temp dir, waits until the API server is ready and hands
//! out clients. Dropping it kills every process it started, by pid, also while a test panics; a small watchdog
//! process kills them too if the owning process dies without unwinding.

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// The admin user's name (member of `system:masters`).
pub const ADMIN_USER: &str = "bulkhead-admin";
/// A user with no groups and no bindings, for RBAC tests.
pub const RESTRICTED_USER: &str = "bulkhead-restricted";
/// A user with no groups that integration tests bind to the operator's own RBAC.
pub const OPERATOR_USER: &str = "bulkhead-operator";
/// The field manager the harness uses for what it applies.
pub const FIELD_MANAGER: &str = "bulkhead-e2e";

/// What can go wrong while starting or using the control plane.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The asset script could not provide the binaries.
    #[error("control-plane binaries are not available: {0}")]
    Assets(String),
    /// A file in the temp dir could not be written.
    #[error("preparing {what}: {source}")]
    Io {
        /// What was being prepared.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Certificates or keys could not be generated.
    #[error("generating certificates: {0}")]
    Cert(#[from] rcgen::Error),
    /// A process could not be started.
    #[error("starting {name}: {source}")]
    Spawn {
        /// The binary.
        name: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A process exited or did not become ready in time.
    #[error("{name} did not become ready: {reason}\n--- last lines of {log} ---\n{tail}")]
    NotReady {
        /// The binary.
        name: String,
        /// Why we gave up.
        reason: String,
        /// Its log file.
        log: String,
        /// The end of its log.
        tail: String,
    },
    /// The kubeconfig could not be loaded.
    #[error("loading kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    /// A client could not be built.
    #[error("building client: {0}")]
    Client(#[source] kube::Error),
    /// An API call failed.
    #[error("{what}: {source}")]
    Api {
        /// The call.
        what: String,
        /// The underlying error.
        source: kube::Error,
    },
    /// A manifest could not be read or applied.
    #[error("manifest: {0}")]
    Manifest(String),
    /// A condition was not met in time.
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}

/// A running control plane. Dropping it stops every process it started.
#[derive(Debug)]
pub struct ControlPlane {
    dir: tempfile::TempDir,
    processes: Vec<(String, Child)>,
    watchdog: Option<Child>,
    server: String,
    kubeconfig: PathBuf,
}

impl ControlPlane {
    /// Starts etcd, kube-apiserver and kube-controller-manager and waits until the API server is ready.
    pub async fn start() -> Result<Self, HarnessError> {
        Self::start_with(false).await
    }

    /// Like [`ControlPlane::start`]; with `audit`, the API server writes one JSON line per request to
    /// [`ControlPlane::audit_log`] (used by benchmarks to count each identity's writes).
    pub async fn start_with(audit: bool) -> Result<Self, HarnessError> {
        let assets = tokio::task::spawn_blocking(assets_dir)
            .await
            .map_err(|e| HarnessError::Assets(e.to_string()))??;
        let dir = tempfile::Builder::new()
            .prefix("bulkhead-cp-")
            .tempdir()
            .map_err(io("temp dir"))?;
        let mut plane = ControlPlane {
            server: String::new(),
            kubeconfig: dir.path().join("kubeconfig"),
            dir,
            processes: Vec::new(),
            watchdog: None,
        };
        plane.boot(&assets, audit).await?;
        Ok(plane)
    }

    /// The API server's audit log (written only when started with `audit`).
    pub fn audit_log(&self) -> PathBuf {
        self.dir.path().join("audit.log")
    }

    /// Starts the control plane and installs Bulkhead's CRDs, waiting until they are established.
    pub async fn start_with_crds() -> Result<Self, HarnessError> {
        let plane = Self::start().await?;
        plane.install_crds().await?;
        Ok(plane)
    }

    async fn boot(&mut self, assets: &Path, audit: bool) -> Result<(), HarnessError> {
        let d = self.dir.path().to_path_buf();
        let [etcd_port, etcd_peer_port, api_port] = free_ports()?;

        // Serving certificate for the API server, signed by a throwaway CA.
        let ca_key = rcgen::KeyPair::generate()?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "bulkhead-e2e-ca");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key)?;
        let serving_key = rcgen::KeyPair::generate()?;
        let mut serving_params = rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])?;
        serving_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kube-apiserver");
        let serving = serving_params.signed_by(&serving_key, &ca)?;
        write(&d.join("ca.crt"), &ca.pem())?;
        write(&d.join("apiserver.crt"), &serving.pem())?;
        write(&d.join("apiserver.key"), &serving_key.serialize_pem())?;
        // Service-account signing key (ECDSA P-256; kube-apiserver accepts it).
        let sa_key = rcgen::KeyPair::generate()?;
        write(&d.join("sa.key"), &sa_key.serialize_pem())?;
        write(&d.join("sa.pub"), &sa_key.public_key_pem())?;

        let admin_token = random_token();
        let restricted_token = random_token();
        let operator_token = random_token();
        write(
            &d.join("tokens.csv"),
            &format!(
                "{admin_token},{ADMIN_USER},uid-admin,\"system:masters\"\n{restricted_token},{RESTRICTED_USER},uid-restricted\n{operator_token},{OPERATOR_USER},uid-operator\n"
            ),
        )?;
        self.server = format!("https://127.0.0.1:{api_port}");
        write(
            &self.kubeconfig,
            &kubeconfig_yaml(
                &self.server,
                &d.join("ca.crt"),
                &[
                    ("admin", &admin_token),
                    ("restricted", &restricted_token),
                    ("operator", &operator_token),
                ],
            ),
        )?;

        let p = |name: &str| d.join(name).display().to_string();
        self.spawn(
            assets,
            "etcd",
            &[
                format!("--data-dir={}", p("etcd")),
                format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"),
                format!("--advertise-client-urls=http://127.0.0.1:{etcd_port}"),
                format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer_port}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer_port}"),
                format!("--initial-cluster=default=http://127.0.0.1:{etcd_peer_port}"),
                "--unsafe-no-fsync=true".into(),
                "--log-level=warn".into(),
            ],
        )?;
        let mut audit_args = Vec::new();
        if audit {
            write(
                &d.join("audit-policy.yaml"),
                "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n",
            )?;
            audit_args.push(format!("--audit-policy-file={}", p("audit-policy.yaml")));
            audit_args.push(format!("--audit-log-path={}", p("audit.log")));
            audit_args.push("--audit-log-format=json".into());
            audit_args.push("--audit-log-mode=blocking".into());
        }
        self.spawn(
            assets,
            "kube-apiserver",
            &[
                &audit_args[..],
                &[
                    format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
                    format!("--secure-port={api_port}"),
                    "--bind-address=127.0.0.1".into(),
                    "--advertise-address=127.0.0.1".into(),
                    "--insecure-port=0".into(),
                    format!("--cert-dir={}", p("certs")),
                    format!("--tls-cert-file={}", p("apiserver.crt")),
                    format!("--tls-private-key-file={}", p("apiserver.key")),
                    format!("--token-auth-file={}", p("tokens.csv")),
                    "--service-account-issuer=https://kubernetes.default.svc".into(),
                    format!("--service-account-key-file={}", p("sa.pub")),
                    format!("--service-account-signing-key-file={}", p("sa.key")),
                    "--service-cluster-ip-range=10.96.0.0/16".into(),
                    "--authorization-mode=RBAC".into(),
                    "--disable-admission-plugins=ServiceAccount".into(),
                    "--enable-priority-and-fairness=false".into(),
                    "--profiling=false".into(),
                    "--v=0".into(),
                ][..],
            ]
            .concat(),
        )?;
        self.start_watchdog()?;
        self.wait_ready("kube-apiserver", Duration::from_secs(60)).await?;
        self.spawn(
            assets,
            "kube-controller-manager",
            &[
                format!("--kubeconfig={}", self.kubeconfig.display()),
                "--leader-elect=false".into(),
                "--controllers=*,-nodeipam,-nodelifecycle,-csrsigning,-bootstrapsigner,-tokencleaner".into(),
                format!("--service-account-private-key-file={}", p("sa.key")),
                "--use-service-account-credentials=false".into(),
                "--bind-address=127.0.0.1".into(),
                "--secure-port=0".into(),
                "--port=0".into(),
                "--v=0".into(),
            ],
        )?;
        // The watchdog must know every pid; restart it with the full list.
        self.start_watchdog()?;
        Ok(())
    }

    fn spawn(&mut self, assets: &Path, name: &str, args: &[String]) -> Result<(), HarnessError> {
        let log_path = self.log_path(name);
        let log = File::create(&log_path).map_err(io(format!("log file for {name}")))?;
        let log_err = log.try_clone().map_err(io(format!("log file for {name}")))?;
        let child = Command::new(assets.join(name))
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Own process group: a Ctrl-C in the terminal reaches only us, and we stop the children in order.
            .process_group(0)
            .spawn()
            .map_err(|source| HarnessError::Spawn {
                name: name.into(),
                source,
            })?;
        self.processes.push((name.to_owned(), child));
        Ok(())
    }

    /// Starts (or restarts) a watchdog that kills the control plane if this process dies without dropping it.
    fn start_watchdog(&mut self) -> Result<(), HarnessError> {
        if let Some(mut old) = self.watchdog.take() {
            let _ = old.kill();
            let _ = old.wait();
        }
        let pids: Vec<String> = self.processes.iter().map(|(_, c)| c.id().to_string()).collect();
        let child =
            crate::watchdog::spawn(&format!("kill -9 {} 2>/dev/null", pids.join(" "))).map_err(|source| {
                HarnessError::Spawn {
                    name: "watchdog".into(),
                    source,
                }
            })?;
        self.watchdog = Some(child);
        Ok(())
    }

    async fn wait_ready(&mut self, name: &str, timeout: Duration) -> Result<(), HarnessError> {
        let client = self.admin().await?;
        let start = Instant::now();
        let mut last;
        loop {
            for (proc_name, child) in &mut self.processes {
                if let Ok(Some(status)) = child.try_wait() {
                    let proc_name = proc_name.clone();
                    return Err(self.not_ready(&proc_name, format!("exited with {status}")));
                }
            }
            let request = http::Request::get("/readyz")
                .body(Vec::new())
                .map_err(|e| HarnessError::Assets(format!("building readiness request: {e}")))?;
            match client.request_text(request).await {
                Ok(body) if body.trim() == "ok" => return Ok(()),
                Ok(body) => last = body,
                Err(err) => last = err.to_string(),
            }
            if start.elapsed() > timeout {
                return Err(self.not_ready(name, format!("/readyz still failing after {timeout:?}: {last}")));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn not_ready(&self, name: &str, reason: String) -> HarnessError {
        let log = self.log_path(name);
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        HarnessError::NotReady {
            name: name.into(),
            reason,
            log: log.display().to_string(),
            tail,
        }
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    /// The API server's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// A kubeconfig file with three contexts: `admin` (current), `restricted` and `operator`.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The pids of the processes started, in start order.
    pub fn pids(&self) -> Vec<u32> {
        self.processes.iter().map(|(_, c)| c.id()).collect()
    }

    /// The temp dir holding logs, certificates and etcd's data.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A client authenticated as the cluster admin.
    pub async fn admin(&self) -> Result<Client, HarnessError> {
        self.client_for("admin").await
    }

    /// A client authenticated as a user with no groups and no RBAC bindings.
    pub async fn restricted(&self) -> Result<Client, HarnessError> {
        self.client_for("restricted").await
    }

    /// A client authenticated as the operator's user, which has exactly the RBAC the tests bind to it.
    pub async fn operator(&self) -> Result<Client, HarnessError> {
        self.client_for("operator").await
    }

    /// A kube `Config` for one of the kubeconfig's contexts (`admin`, `restricted` or `operator`).
    pub async fn config_for(&self, context: &str) -> Result<Config, HarnessError> {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)?;
        let options = KubeConfigOptions {
            context: Some(context.into()),
            ..Default::default()
        };
        Ok(Config::from_custom_kubeconfig(kubeconfig, &options).await?)
    }

    async fn client_for(&self, context: &str) -> Result<Client, HarnessError> {
        Client::try_from(self.config_for(context).await?).map_err(HarnessError::Client)
    }

    /// Applies Bulkhead's generated CRDs and waits until the API server has established them.
    pub async fn install_crds(&self) -> Result<(), HarnessError> {
        let client = self.admin().await?;
        let api: Api<CustomResourceDefinition> = Api::all(client);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let crds = bulkhead_crds::generate::crds();
        for crd in &crds {
            let name = crd.metadata.name.clone().unwrap_or_default();
            api.patch(&name, &params, &Patch::Apply(crd))
                .await
                .map_err(|source| HarnessError::Api {
                    what: format!("applying CRD {name}"),
                    source,
                })?;
        }
        for crd in &crds {
            let name = crd.metadata.name.clone().unwrap_or_default();
            crate::wait::until(
                Duration::from_secs(30),
                &format!("CRD {name} to be established"),
                || {
                    let api = api.clone();
                    let name = name.clone();
                    async move {
                        let crd = api.get_opt(&name).await.ok().flatten()?;
                        let established = crd
                            .status?
                            .conditions?
                            .iter()
                            .any(|c| c.type_ == "Established" && c.status == "True");
                        established.then_some(())
                    }
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Stops every process now (also done on drop).
    pub fn stop(&mut self) {
        // Reverse order: controller-manager, API server, then etcd.
        while let Some((_, mut child)) = self.processes.pop() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs the asset script and returns the directory holding etcd, kube-apiserver and kube-controller-manager.
pub fn assets_dir() -> Result<PathBuf, HarnessError> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/control-plane-assets.sh");
    let output = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|source| HarnessError::Spawn {
            name: script.display().to_string(),
            source,
        })?;
    if !output.status.success() {
        return Err(HarnessError::Assets(format!(
            "{} failed ({}); see its output above",
            script.display(),
            output.status
        )));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let dir = stdout.lines().last().unwrap_or_default().trim();
    if dir.is_empty() {
        return Err(HarnessError::Assets(format!(
            "{} printed no directory",
            script.display()
        )));
    }
    Ok(PathBuf::from(dir))
}

fn free_ports<const N: usize>() -> Result<[u16; N], HarnessError> {
    // Hold all listeners until every port is chosen, so the kernel hands out distinct ones.
    let listeners = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io("choosing free ports"))?;
    let mut ports = [0u16; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr().map_err(io("choosing free ports"))?.port();
    }
    Ok(ports)
}

fn random_token() -> String {
    use std::hash::{BuildHasher, RandomState};
    // Two independently keyed SipHash outputs: unpredictable enough for a loopback-only test cluster.
    let a = RandomState::new().hash_one(std::process::id());
    let b = RandomState::new().hash_one(Instant::now());
    format!("{a:016x}{b:016x}")
}

fn write(path: &Path, contents: &str) -> Result<(), HarnessError> {
    std::fs::write(path, contents).map_err(io(path.display().to_string()))
}

fn kubeconfig_yaml(server: &str, ca: &Path, users: &[(&str, &str)]) -> String {
    let mut out = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: bulkhead-local\n  cluster:\n    server: {server}\n    certificate-authority: {}\nusers:\n",
        ca.display()
    );
    for (name, token) in users {
        out.push_str(&format!("- name: {name}\n  user:\n    token: {token}\n"));
    }
    out.push_str("contexts:\n");
    for (name, _) in users {
        out.push_str(&format!(
            "- name: {name}\n  context:\n    cluster: bulkhead-local\n    user: {name}\n"
        ));
    }
    out.push_str("current-context: admin\n");
    out
}
