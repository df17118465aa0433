//! A real Kubernetes control plane on loopback, owned by one process.
//!
//! [`ControlPlane::start`] finds the binaries (via `e2e/scripts/cluster-assets.sh`, which builds the versions
//! pinned in `e2e/cluster/versions.env` once and caches them), starts etcd, kube-apiserver and
//! kube-controller-manager on free 127.0.0.1 ports in a temp dir, waits until the API server is ready and hands
//! out clients. Dropping it kills every process it started, by pid, also while a test panics; a small watchdog
//! process kills them too if the owning process dies without unwinding.
//!
//! The same code boots the control plane of a [`crate::cluster::Cluster`]: there it runs inside the node's
//! network namespace, listens on the node's address, authorizes the kubelet (Node authorizer, its own identity)
//! and adds the scheduler.

use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
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
/// A user with no groups that integration tests bind to `verify`'s read-only RBAC (context `verifier`).
pub const VERIFIER_USER: &str = "bulkhead-verifier";
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

/// Where and how a control plane runs: alone on loopback (the fast tests), or as the control plane of a
/// one-node cluster inside the node's network namespace.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// The address the API server listens on and advertises.
    pub address: Ipv4Addr,
    /// The network namespace (a path under /run/netns) every process runs in; `None` for the caller's.
    pub netns: Option<PathBuf>,
    /// With a node: the Node authorizer and NodeRestriction, ServiceAccount tokens, a kubelet client
    /// certificate, every controller and the scheduler.
    pub node: Option<String>,
    /// Write an audit log (benchmarks count each identity's writes with it).
    pub audit: bool,
}

/// The Service range of every control plane the harness starts (from 198.18.0.0/15, the range RFC 2544 sets
/// aside for test networks; the first address is the `kubernetes` Service).
pub const SERVICE_CIDR: &str = "198.19.0.0/16";
/// The `kubernetes` Service's ClusterIP.
pub const KUBERNETES_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);
/// The port the API server listens on inside a cluster's node (a private network namespace, so no clash).
pub const CLUSTER_API_PORT: u16 = 6443;

/// A running control plane. Dropping it stops every process it started.
#[derive(Debug)]
pub struct ControlPlane {
    dir: tempfile::TempDir,
    processes: Vec<(String, Child)>,
    watchdog: Option<Child>,
    /// Shell commands the watchdog runs after killing the processes (a cluster's teardown of what is not a
    /// process: mounts, cgroups, the network namespace).
    teardown: String,
    netns: Option<PathBuf>,
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
        let layout = Layout {
            address: Ipv4Addr::LOCALHOST,
            netns: None,
            node: None,
            audit,
        };
        let assets = assets().await?;
        // Free ports are chosen before the processes bind them, so a test running beside this one may take one
        // in between: try again with new ports.
        let mut attempt = 0;
        loop {
            let dir = tempfile::Builder::new()
                .prefix("bulkhead-cp-")
                .tempdir()
                .map_err(io("temp dir"))?;
            match Self::boot_in(dir, &assets, &layout).await {
                Err(HarnessError::NotReady { tail, .. })
                    if tail.contains("address already in use") && attempt < 3 =>
                {
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// Boots a control plane in `dir` as `layout` says.
    pub(crate) async fn boot_in(
        dir: tempfile::TempDir,
        assets: &Path,
        layout: &Layout,
    ) -> Result<Self, HarnessError> {
        let mut plane = ControlPlane {
            server: String::new(),
            kubeconfig: dir.path().join("kubeconfig"),
            dir,
            processes: Vec::new(),
            watchdog: None,
            teardown: String::new(),
            netns: layout.netns.clone(),
        };
        plane.boot(assets, layout).await?;
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

    /// Like [`ControlPlane::start_with_crds`], but the CRDs lack their CEL rules (`x-kubernetes-validations`),
    /// as on an API server that ignores them or for objects stored before a rule existed: the API server then
    /// stores specs that only the operator's own checks refuse. For tests of those checks.
    pub async fn start_with_crds_without_cel() -> Result<Self, HarnessError> {
        let plane = Self::start().await?;
        plane.install_crds_without_cel().await?;
        Ok(plane)
    }

    async fn boot(&mut self, assets: &Path, layout: &Layout) -> Result<(), HarnessError> {
        let d = self.dir.path().to_path_buf();
        let [etcd_port, etcd_peer_port, loopback_api_port] = free_ports()?;
        let api_port = if layout.node.is_some() {
            CLUSTER_API_PORT
        } else {
            loopback_api_port
        };
        let address = layout.address.to_string();

        // Serving certificate for the API server, signed by a throwaway CA that also signs client certificates.
        let ca_key = rcgen::KeyPair::generate()?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "bulkhead-e2e-ca");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key)?;
        let mut names: Vec<String> = vec!["127.0.0.1".into(), "localhost".into(), address.clone()];
        if layout.node.is_some() {
            names.push(KUBERNETES_SERVICE_IP.to_string());
            for name in ["kubernetes", "kubernetes.default", "kubernetes.default.svc"] {
                names.push(name.into());
            }
            names.push("kubernetes.default.svc.cluster.local".into());
        }
        names.dedup();
        let serving_key = rcgen::KeyPair::generate()?;
        let mut serving_params = rcgen::CertificateParams::new(names)?;
        serving_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kube-apiserver");
        let serving = serving_params.signed_by(&serving_key, &ca)?;
        write(&d.join("ca.crt"), &ca.pem())?;
        write(&d.join("apiserver.crt"), &serving.pem())?;
        write(&d.join("apiserver.key"), &serving_key.serialize_pem())?;
        // The API server's client certificate towards kubelets (exec, logs, port-forward).
        let kubelet_client_key = rcgen::KeyPair::generate()?;
        let mut kubelet_client = rcgen::CertificateParams::new(Vec::<String>::new())?;
        kubelet_client
            .distinguished_name
            .push(rcgen::DnType::CommonName, "kube-apiserver-kubelet-client");
        kubelet_client
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:masters");
        kubelet_client.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let kubelet_client = kubelet_client.signed_by(&kubelet_client_key, &ca)?;
        write(&d.join("kubelet-client.crt"), &kubelet_client.pem())?;
        write(&d.join("kubelet-client.key"), &kubelet_client_key.serialize_pem())?;
        // Service-account signing key (ECDSA P-256; kube-apiserver accepts it).
        let sa_key = rcgen::KeyPair::generate()?;
        write(&d.join("sa.key"), &sa_key.serialize_pem())?;
        write(&d.join("sa.pub"), &sa_key.public_key_pem())?;

        // Identities: (kubeconfig context, user, groups). The node's components get their own.
        let mut identities: Vec<(&str, String, &str)> = vec![
            ("admin", ADMIN_USER.into(), "system:masters"),
            ("restricted", RESTRICTED_USER.into(), ""),
            ("operator", OPERATOR_USER.into(), ""),
            ("verifier", VERIFIER_USER.into(), ""),
        ];
        if let Some(node) = &layout.node {
            identities.push(("node", format!("system:node:{node}"), "system:nodes"));
            identities.push(("kube-proxy", "system:kube-proxy".into(), ""));
            identities.push(("kube-scheduler", "system:kube-scheduler".into(), ""));
        }
        let tokens: Vec<(&str, String)> = identities
            .iter()
            .map(|(ctx, _, _)| (*ctx, random_token()))
            .collect();
        let mut csv = String::new();
        for ((_, user, groups), (_, token)) in identities.iter().zip(&tokens) {
            csv.push_str(&format!("{token},{user},uid-{user}"));
            if !groups.is_empty() {
                csv.push_str(&format!(",\"{groups}\""));
            }
            csv.push('\n');
        }
        write(&d.join("tokens.csv"), &csv)?;
        self.server = format!("https://{address}:{api_port}");
        let contexts: Vec<(&str, &str)> = tokens.iter().map(|(ctx, t)| (*ctx, t.as_str())).collect();
        write(
            &self.kubeconfig,
            &kubeconfig_yaml(&self.server, &d.join("ca.crt"), &contexts),
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
        let mut extra = Vec::new();
        if layout.audit {
            write(
                &d.join("audit-policy.yaml"),
                "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n- level: Metadata\n",
            )?;
            extra.push(format!("--audit-policy-file={}", p("audit-policy.yaml")));
            extra.push(format!("--audit-log-path={}", p("audit.log")));
            extra.push("--audit-log-format=json".into());
            extra.push("--audit-log-mode=blocking".into());
            // Never rotate: the log is read whole, and at 10,000 Tenants it outgrows the default 100 MB.
            extra.push("--audit-log-maxsize=1000000".into());
        }
        if layout.node.is_some() {
            extra.push("--authorization-mode=Node,RBAC".into());
            extra.push("--enable-admission-plugins=NodeRestriction".into());
            extra.push(format!(
                "--kubelet-client-certificate={}",
                p("kubelet-client.crt")
            ));
            extra.push(format!("--kubelet-client-key={}", p("kubelet-client.key")));
            extra.push("--kubelet-preferred-address-types=InternalIP".into());
        } else {
            extra.push("--authorization-mode=RBAC".into());
            // No node, so nothing would ever mount a token: skip waiting for ServiceAccounts.
            extra.push("--disable-admission-plugins=ServiceAccount".into());
        }
        self.spawn(
            assets,
            "kube-apiserver",
            &[
                &extra[..],
                &[
                    format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
                    format!("--secure-port={api_port}"),
                    format!("--bind-address={address}"),
                    format!("--advertise-address={address}"),
                    format!("--cert-dir={}", p("certs")),
                    format!("--tls-cert-file={}", p("apiserver.crt")),
                    format!("--tls-private-key-file={}", p("apiserver.key")),
                    format!("--client-ca-file={}", p("ca.crt")),
                    format!("--token-auth-file={}", p("tokens.csv")),
                    "--service-account-issuer=https://kubernetes.default.svc".into(),
                    format!("--service-account-key-file={}", p("sa.pub")),
                    format!("--service-account-signing-key-file={}", p("sa.key")),
                    format!("--service-cluster-ip-range={SERVICE_CIDR}"),
                    "--enable-priority-and-fairness=false".into(),
                    "--profiling=false".into(),
                    "--v=0".into(),
                ][..],
            ]
            .concat(),
        )?;
        self.start_watchdog()?;
        self.wait_ready("kube-apiserver", Duration::from_secs(60)).await?;
        let controllers = if layout.node.is_some() {
            "*,-nodeipam,-csrsigning,-bootstrapsigner,-tokencleaner"
        } else {
            "*,-nodeipam,-nodelifecycle,-csrsigning,-bootstrapsigner,-tokencleaner"
        };
        self.spawn(
            assets,
            "kube-controller-manager",
            &[
                format!("--kubeconfig={}", self.kubeconfig.display()),
                "--leader-elect=false".into(),
                format!("--controllers={controllers}"),
                format!("--service-account-private-key-file={}", p("sa.key")),
                format!("--root-ca-file={}", p("ca.crt")),
                format!("--service-cluster-ip-range={SERVICE_CIDR}"),
                "--use-service-account-credentials=false".into(),
                "--bind-address=127.0.0.1".into(),
                "--secure-port=0".into(),
                "--v=0".into(),
            ],
        )?;
        if layout.node.is_some() {
            let kubeconfig = self.context_kubeconfig("kube-scheduler")?;
            self.spawn(
                assets,
                "kube-scheduler",
                &[
                    format!("--kubeconfig={}", kubeconfig.display()),
                    "--leader-elect=false".into(),
                    "--bind-address=127.0.0.1".into(),
                    "--secure-port=0".into(),
                    "--v=0".into(),
                ],
            )?;
        }
        // The watchdog must know every pid; restart it with the full list.
        self.start_watchdog()?;
        Ok(())
    }

    /// Writes a kubeconfig whose current context is `context` and returns its path (for a component that
    /// takes no `--context`).
    pub(crate) fn context_kubeconfig(&self, context: &str) -> Result<PathBuf, HarnessError> {
        let text = std::fs::read_to_string(&self.kubeconfig).map_err(io("reading the kubeconfig"))?;
        let path = self.dir.path().join(format!("{context}.kubeconfig"));
        let text = text.replace(
            "current-context: admin\n",
            &format!("current-context: {context}\n"),
        );
        write(&path, &text)?;
        Ok(path)
    }

    /// Starts `assets/name` with `args` in its own process group, inside the layout's network namespace, its
    /// output in `name.log`; it is stopped (in reverse start order) with the control plane.
    pub(crate) fn spawn(&mut self, assets: &Path, name: &str, args: &[String]) -> Result<(), HarnessError> {
        let program = assets.join(name);
        self.spawn_command(name, &program, args)
    }

    /// Like [`ControlPlane::spawn`] for any program.
    pub(crate) fn spawn_command(
        &mut self,
        name: &str,
        program: &Path,
        args: &[String],
    ) -> Result<(), HarnessError> {
        let log_path = self.log_path(name);
        let log = File::create(&log_path).map_err(io(format!("log file for {name}")))?;
        let log_err = log.try_clone().map_err(io(format!("log file for {name}")))?;
        let mut command = match &self.netns {
            // nsenter execs the program: the pid we keep is the program's own.
            Some(netns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", netns.display())).arg("--").arg(program);
                c
            }
            None => Command::new(program),
        };
        let child = command
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

    /// The first process that has exited, with its status.
    pub(crate) fn exited(&mut self) -> Option<(String, std::process::ExitStatus)> {
        self.processes.iter_mut().find_map(|(name, child)| {
            child
                .try_wait()
                .ok()
                .flatten()
                .map(|status| (name.clone(), status))
        })
    }

    /// Sets the shell commands run after every process is killed, on drop and by the watchdog.
    pub(crate) fn set_teardown(&mut self, script: String) -> Result<(), HarnessError> {
        self.teardown = script;
        self.start_watchdog()
    }

    /// Starts (or restarts) a watchdog that kills the control plane if this process dies without dropping it.
    pub(crate) fn start_watchdog(&mut self) -> Result<(), HarnessError> {
        if let Some(mut old) = self.watchdog.take() {
            let _ = old.kill();
            let _ = old.wait();
        }
        let pids: Vec<String> = self.processes.iter().map(|(_, c)| c.id().to_string()).collect();
        let mut stop = format!("kill -9 {} 2>/dev/null", pids.join(" "));
        if !self.teardown.is_empty() {
            stop.push_str("; ");
            stop.push_str(&self.teardown);
        }
        let child = crate::watchdog::spawn(&stop).map_err(|source| HarnessError::Spawn {
            name: "watchdog".into(),
            source,
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
        self.apply_crds(true).await
    }

    /// Installs the CRDs without their CEL validation rules (what a server without CEL would accept, or what the
    /// rules cost).
    pub async fn install_crds_without_cel(&self) -> Result<(), HarnessError> {
        self.apply_crds(false).await
    }

    async fn apply_crds(&self, cel: bool) -> Result<(), HarnessError> {
        let client = self.admin().await?;
        let api: Api<CustomResourceDefinition> = Api::all(client);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let mut crds = bulkhead_crds::generate::crds();
        if !cel {
            crds = crds.into_iter().map(without_cel).collect::<Result<_, _>>()?;
        }
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

    /// Stops every process now, newest first, then runs the teardown (also done on drop).
    pub fn stop(&mut self) {
        while let Some((_, mut child)) = self.processes.pop() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !self.teardown.is_empty() {
            let _ = Command::new("sh")
                .arg("-c")
                .arg(std::mem::take(&mut self.teardown))
                .stdin(Stdio::null())
                .status();
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

/// Runs `e2e/scripts/cluster-assets.sh` (off the async runtime) and returns the directory holding the cluster's
/// binaries.
pub(crate) async fn assets() -> Result<PathBuf, HarnessError> {
    tokio::task::spawn_blocking(|| assets_dir(&[]))
        .await
        .map_err(|e| HarnessError::Assets(e.to_string()))?
}

/// The CRD without any `x-kubernetes-validations` in its schemas.
fn without_cel(crd: CustomResourceDefinition) -> Result<CustomResourceDefinition, HarnessError> {
    fn strip(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                map.remove("x-kubernetes-validations");
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut value =
        serde_json::to_value(&crd).map_err(|e| HarnessError::Manifest(format!("CRD as JSON: {e}")))?;
    strip(&mut value);
    serde_json::from_value(value).map_err(|e| HarnessError::Manifest(format!("CRD from JSON: {e}")))
}

/// Runs the asset script with `args` and returns the directory holding the binaries (its last line).
pub fn assets_dir(args: &[&str]) -> Result<PathBuf, HarnessError> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/cluster-assets.sh");
    let output = Command::new("bash")
        .arg(&script)
        .args(args)
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
