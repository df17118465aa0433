//! A real one-node Kubernetes cluster on this machine, owned by one process.
//!
//! [`Cluster::start`] runs the control plane of [`ControlPlane`] plus a node: containerd (Debian's) with runc
//! and the bridge CNI plugin, the kubelet (cgroupfs driver, no systemd), kube-proxy in iptables mode,
//! kube-router enforcing NetworkPolicy (firewall only) and CoreDNS as a pod. Images are never pulled: the ones
//! the node needs (pause, CoreDNS, agnhost) are packaged from the cached binaries and imported into containerd.
//!
//! Everything the cluster changes lives in places it made itself, so teardown removes it whole:
//! - its own network namespace (`bulkhead-<pid>`), holding every iptables rule, ipset, bridge, veth, route and
//!   network sysctl the node's components make; the host gets one veth into it, and routes to the pod and
//!   Service ranges through that veth, which disappear with it;
//! - its own cgroup (`/bulkhead-<pid>` in every v1 hierarchy) holding every pod and containerd's shims;
//! - its own temp dir, holding etcd's data, containerd's root and state (pod network namespaces included),
//!   the kubelet's root dir and pod logs, and every mount under them.
//!
//! Addresses come from 198.18.0.0/15 (set aside for test networks by RFC 2544): pods from [`POD_CIDR`],
//! Services from [`crate::control_plane::SERVICE_CIDR`], the node at [`NODE_IP`]. The node has no default
//! route, so no packet of the cluster can leave the machine.
//!
//! The kubelet sets six kernel settings machine-wide unless told to protect them, and with
//! `protectKernelDefaults` it refuses to start unless they already have its values (one is
//! `kernel.panic_on_oops=1`). The harness runs it with `protectKernelDefaults` in a mount namespace of its own
//! where those six files read as the values it checks for, so the machine's settings never change. The only
//! settings the cluster needs (IP forwarding, bridged traffic through iptables) are set inside its network
//! namespace.
//!
//! One cluster runs at a time on a machine (a lock file serializes [`Cluster::start`] across processes).
//! Dropping the cluster, a panic, or the death of the owning process (a watchdog notices within a second)
//! stops every process by pid and removes the namespace, mounts, cgroups and files.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams};
use kube::{Client, Config};

use crate::control_plane::{self, ControlPlane, Layout};
use crate::{HarnessError, versions};

/// The node's name.
pub const NODE_NAME: &str = "bulkhead-node";
/// The node's address, on its link to the host.
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 255, 2);
/// The host's address on that link.
pub const HOST_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 255, 1);
/// Every pod address of the cluster.
pub const POD_CIDR: &str = "198.18.0.0/17";
/// The node's pod subnet (the bridge holds its first address).
pub const NODE_POD_SUBNET: &str = "198.18.0.0/24";
/// The cluster DNS Service's address.
pub const DNS_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 10);
/// Addresses tests may give the network namespaces they create as hosts outside the cluster.
pub const TEST_HOST_CIDR: &str = "198.18.128.0/18";

/// The lock file that lets one cluster run at a time on a machine.
pub const LOCK_FILE: &str = "/run/lock/bulkhead-cluster.lock";
/// Set to `none` to start the cluster without its NetworkPolicy enforcer: the way to see the traffic suites
/// fail when nothing enforces policies (anything else, or unset, starts kube-router).
pub const ENFORCER_ENV: &str = "BULKHEAD_CLUSTER_ENFORCER";
/// The kernel settings the kubelet checks, with the values it wants.
const KUBELET_SYSCTLS: [(&str, &str); 6] = [
    ("vm/overcommit_memory", "1"),
    ("vm/panic_on_oom", "0"),
    ("kernel/panic", "10"),
    ("kernel/panic_on_oops", "1"),
    ("kernel/keys/root_maxkeys", "1000000"),
    ("kernel/keys/root_maxbytes", "25000000"),
];
/// Machine-wide places containerd 1.6 and the CNI plugins write to whatever they are configured with; entries
/// that appear there during the run are removed at teardown.
const SHARED_STATE_DIRS: [&str; 2] = ["/run/containerd/s", "/var/lib/cni/results"];

/// A running one-node cluster. Dropping it tears everything down.
#[derive(Debug)]
pub struct Cluster {
    // Field order is drop order: the control plane (which runs the teardown) before the lock is released.
    plane: ControlPlane,
    assets: PathBuf,
    netns: String,
    containerd_socket: PathBuf,
    _lock: File,
    timings: Vec<(String, Duration)>,
}

impl Cluster {
    /// Starts the cluster and waits until the node is Ready and cluster DNS answers.
    pub async fn start() -> Result<Self, HarnessError> {
        let started = Instant::now();
        let mut timings = Vec::new();
        let assets = control_plane::assets().await?;
        check_tools()?;
        let lock = tokio::task::spawn_blocking(take_lock)
            .await
            .map_err(|e| HarnessError::Assets(e.to_string()))??;
        let dir = tempfile::Builder::new()
            .prefix("bulkhead-cluster-")
            .tempdir()
            .map_err(io("temp dir"))?;
        let d = dir.path().to_path_buf();
        let id = std::process::id();
        let netns = format!("bulkhead-{id}");
        let host_veth = format!("bkh{id}");
        let cgroup = format!("bulkhead-{id}");

        // The teardown exists before anything it undoes; until the control plane owns it, a guard runs it.
        let teardown = teardown_script(&d, &netns, &cgroup)?;
        let mut guard = TeardownGuard::new(teardown.clone())?;
        make_network(&netns, &host_veth)?;
        make_cgroups(&cgroup)?;
        timings.push(("network namespace and cgroups".into(), started.elapsed()));

        let layout = Layout {
            address: NODE_IP,
            netns: Some(PathBuf::from(format!("/run/netns/{netns}"))),
            node: Some(NODE_NAME.into()),
            audit: false,
        };
        let mut plane = ControlPlane::boot_in(dir, &assets, &layout).await?;
        plane.set_teardown(teardown)?;
        guard.disarm();
        timings.push(("control plane ready".into(), started.elapsed()));

        let containerd_socket = d.join("containerd.sock");
        let mut cluster = Cluster {
            plane,
            assets,
            netns,
            containerd_socket,
            _lock: lock,
            timings,
        };
        cluster.start_containerd(&cgroup).await?;
        cluster.import_node_images().await?;
        cluster.mark("containerd ready, images imported", started);
        cluster.start_kubelet(&cgroup)?;
        cluster.start_kube_proxy()?;
        cluster.plane.start_watchdog()?;
        cluster.wait_node_ready().await?;
        cluster.mark("node Ready", started);
        // kube-router reads its Node at start, so it starts once the node is registered.
        if enforcer_wanted()? {
            cluster.start_kube_router()?;
            cluster.plane.start_watchdog()?;
        } else {
            eprintln!(
                "cluster: {ENFORCER_ENV}=none: kube-router is not started, NetworkPolicies are NOT enforced"
            );
        }
        crate::cluster_dns::install(&cluster.admin().await?).await?;
        cluster.wait_dns_ready().await?;
        cluster.mark("cluster DNS ready", started);
        if let Some((name, status)) = cluster.plane.exited() {
            return Err(cluster.with_logs(
                HarnessError::Manifest(format!("{name} exited during start-up ({status})")),
                &[&name],
            ));
        }
        Ok(cluster)
    }

    fn mark(&mut self, what: &str, started: Instant) {
        self.timings.push((what.into(), started.elapsed()));
    }

    /// How long each step of the start took, cumulatively.
    pub fn timings(&self) -> &[(String, Duration)] {
        &self.timings
    }

    /// The control plane (kubeconfig, clients, logs).
    pub fn plane(&self) -> &ControlPlane {
        &self.plane
    }

    /// A client authenticated as the cluster admin.
    pub async fn admin(&self) -> Result<Client, HarnessError> {
        self.plane.admin().await
    }

    /// A kube `Config` for one of the kubeconfig's contexts.
    pub async fn config_for(&self, context: &str) -> Result<Config, HarnessError> {
        self.plane.config_for(context).await
    }

    /// The node's network namespace (a name under /run/netns).
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// The node's containerd socket (for `ctr --address`).
    pub fn containerd_socket(&self) -> &Path {
        &self.containerd_socket
    }

    /// The directory holding the cluster's binaries.
    pub fn assets(&self) -> &Path {
        &self.assets
    }

    /// The temp dir holding logs, certificates and state.
    pub fn dir(&self) -> &Path {
        self.plane.dir()
    }

    /// Imports an image archive (OCI layout or docker-archive tar) into the node's containerd.
    pub async fn import_image(&self, archive: &Path) -> Result<(), HarnessError> {
        run(
            "ctr",
            &[
                "--address",
                &self.containerd_socket.display().to_string(),
                "-n",
                "k8s.io",
                "images",
                "import",
                "--no-unpack=false",
                &archive.display().to_string(),
            ],
        )
        .await
    }

    /// Runs `command` in `pod` (its first container) through the API server and the kubelet, and returns its
    /// exit code and stdout. A command that cannot be started is an error; one that fails is a non-zero code.
    pub async fn exec(
        &self,
        namespace: &str,
        pod: &str,
        command: &[&str],
    ) -> Result<(i32, String), HarnessError> {
        crate::exec::exec(&self.admin().await?, namespace, pod, command).await
    }

    async fn start_containerd(&mut self, cgroup: &str) -> Result<(), HarnessError> {
        let d = self.plane.dir().to_path_buf();
        let pause = versions::get("PAUSE_IMAGE")?;
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
[grpc]
  address = "{socket}"
[ttrpc]
  address = "{ttrpc}"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  netns_mounts_under_state_dir = true
  # Never ask for an oom_score_adj below containerd's own: lowering it needs CAP_SYS_RESOURCE, which some
  # machines (this project's VMs among them) do not grant even to root.
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{runc}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni_conf}"
"#,
            root = d.join("containerd/root").display(),
            state = d.join("containerd/state").display(),
            socket = self.containerd_socket.display(),
            ttrpc = d.join("containerd-ttrpc.sock").display(),
            opt = d.join("containerd/opt").display(),
            runc = d.join("runc").display(),
            cni_conf = d.join("cni/net.d").display(),
        );
        write(&d.join("containerd.toml"), &config)?;
        std::fs::create_dir_all(d.join("cni/net.d")).map_err(io("cni config dir"))?;
        let cni = serde_json::json!({
            "cniVersion": "0.4.0",
            "name": "bulkhead",
            "plugins": [{
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": NODE_POD_SUBNET, "gateway": "198.18.0.1"}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": d.join("cni/ipam").display().to_string(),
                },
            }],
        });
        write(&d.join("cni/net.d/10-bulkhead.conflist"), &cni.to_string())?;
        // containerd joins the cluster's cgroup first, so its shims (and their containers' parents) are in it.
        let procs = format!("/sys/fs/cgroup/pids/{cgroup}/runtime/cgroup.procs");
        // spawn_command runs it inside the node's network namespace.
        self.plane.spawn_command(
            "containerd",
            Path::new("sh"),
            &[
                "-c".into(),
                format!(
                    "echo $$ > {procs} && exec containerd --config {}",
                    d.join("containerd.toml").display()
                ),
            ],
        )?;
        let socket = self.containerd_socket.clone();
        crate::wait::until(Duration::from_secs(30), "containerd to answer", || {
            let socket = socket.clone();
            async move {
                let status = tokio::process::Command::new("ctr")
                    .arg("--address")
                    .arg(&socket)
                    .arg("version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .await
                    .ok()?;
                status.success().then_some(())
            }
        })
        .await
    }

    async fn import_node_images(&self) -> Result<(), HarnessError> {
        let d = self.plane.dir().join("images");
        std::fs::create_dir_all(&d).map_err(io("images dir"))?;
        for (key, binary, user) in [
            ("PAUSE_IMAGE", "pause", "65535:65535"),
            ("COREDNS_IMAGE", "coredns", "0:0"),
            ("AGNHOST_IMAGE", "agnhost", "0:0"),
        ] {
            let archive = d.join(format!("{binary}.tar"));
            let mut spec = crate::oci::ImageSpec::new(versions::get(key)?, vec![format!("/{binary}")]);
            spec.files.push(crate::oci::ImageFile::executable(
                self.assets.join(binary),
                format!("/{binary}"),
            ));
            spec.user = user.into();
            crate::oci::write_archive(&spec, &archive).map_err(|e| HarnessError::Assets(e.to_string()))?;
            self.import_image(&archive).await?;
        }
        Ok(())
    }

    fn start_kubelet(&mut self, cgroup: &str) -> Result<(), HarnessError> {
        let d = self.plane.dir().to_path_buf();
        let kubelet_dir = d.join("kubelet");
        std::fs::create_dir_all(&kubelet_dir).map_err(io("kubelet dir"))?;
        write(&d.join("resolv.conf"), "")?;
        let config = serde_json::json!({
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": NODE_IP.to_string(),
            "port": 10250,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": 10248,
            "authentication": {
                "anonymous": {"enabled": false},
                "webhook": {"enabled": true},
                "x509": {"clientCAFile": d.join("ca.crt").display().to_string()},
            },
            "authorization": {"mode": "Webhook"},
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": format!("/{cgroup}"),
            "cgroupsPerQOS": true,
            "enforceNodeAllocatable": ["pods"],
            "containerRuntimeEndpoint": format!("unix://{}", self.containerd_socket.display()),
            "imageServiceEndpoint": format!("unix://{}", self.containerd_socket.display()),
            "failSwapOn": false,
            "protectKernelDefaults": true,
            // Its own oom_score_adj stays as it is (lowering it needs CAP_SYS_RESOURCE).
            "oomScoreAdj": 0,
            "clusterDNS": [DNS_SERVICE_IP.to_string()],
            "clusterDomain": "cluster.local",
            "resolvConf": d.join("resolv.conf").display().to_string(),
            "podLogsDir": d.join("pod-logs").display().to_string(),
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "nodefs.inodesFree": "1%",
                "imagefs.available": "1%",
            },
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "serializeImagePulls": false,
            "nodeStatusUpdateFrequency": "5s",
            "syncFrequency": "10s",
            "shutdownGracePeriod": "0s",
            "rotateCertificates": false,
        });
        write(&d.join("kubelet.yaml"), &config.to_string())?;
        let kubeconfig = self.plane.context_kubeconfig("node")?;

        // The kubelet's root dir is a shared mount, so what the kubelet mounts under it in its own mount
        // namespace (volumes) is seen by containerd in ours.
        let kubelet = kubelet_dir.display().to_string();
        run_blocking("mount", &["--bind", &kubelet, &kubelet])?;
        run_blocking("mount", &["--make-rshared", &kubelet])?;
        let mut script = String::new();
        for (i, (key, want)) in KUBELET_SYSCTLS.iter().enumerate() {
            let shown = d.join(format!("sysctl-{i}"));
            write(&shown, &format!("{want}\n"))?;
            script.push_str(&format!("mount --bind {} /proc/sys/{key} && ", shown.display()));
        }
        let args = [
            format!("--config={}", d.join("kubelet.yaml").display()),
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--root-dir={kubelet}"),
            format!("--hostname-override={NODE_NAME}"),
            format!("--node-ip={NODE_IP}"),
            "--v=0".into(),
        ];
        script.push_str(&format!(
            "exec {} {}",
            self.assets.join("kubelet").display(),
            args.join(" ")
        ));
        self.plane.spawn_command(
            "kubelet",
            Path::new("unshare"),
            &[
                "--mount".into(),
                "--propagation".into(),
                "unchanged".into(),
                "--".into(),
                "sh".into(),
                "-c".into(),
                script,
            ],
        )
    }

    fn start_kube_proxy(&mut self) -> Result<(), HarnessError> {
        let d = self.plane.dir().to_path_buf();
        let kubeconfig = self.plane.context_kubeconfig("kube-proxy")?;
        let config = serde_json::json!({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": kubeconfig.display().to_string()},
            "hostnameOverride": NODE_NAME,
            "mode": "iptables",
            "clusterCIDR": POD_CIDR,
            "detectLocalMode": "ClusterCIDR",
            // Zero leaves the conntrack settings alone (most are machine-wide).
            "conntrack": {
                "maxPerCore": 0,
                "min": 0,
                "tcpEstablishedTimeout": "0s",
                "tcpCloseWaitTimeout": "0s",
                "udpTimeout": "0s",
                "udpStreamTimeout": "0s",
            },
            "oomScoreAdj": 0,
            "metricsBindAddress": "127.0.0.1:10249",
            "healthzBindAddress": "127.0.0.1:10256",
        });
        write(&d.join("kube-proxy.yaml"), &config.to_string())?;
        let assets = self.assets.clone();
        self.plane.spawn(
            &assets,
            "kube-proxy",
            &[
                format!("--config={}", d.join("kube-proxy.yaml").display()),
                "--v=0".into(),
            ],
        )
    }

    fn start_kube_router(&mut self) -> Result<(), HarnessError> {
        let kubeconfig = self.plane.context_kubeconfig("admin")?;
        let assets = self.assets.clone();
        self.plane.spawn(
            &assets,
            "kube-router",
            &[
                format!("--kubeconfig={}", kubeconfig.display()),
                format!("--hostname-override={NODE_NAME}"),
                "--run-firewall=true".into(),
                "--run-router=false".into(),
                "--run-service-proxy=false".into(),
                "--enable-ipv4=true".into(),
                "--enable-ipv6=false".into(),
                "--metrics-port=0".into(),
                "--v=0".into(),
            ],
        )
    }

    async fn wait_node_ready(&mut self) -> Result<(), HarnessError> {
        let nodes: Api<Node> = Api::all(self.admin().await?);
        crate::wait::until(Duration::from_secs(120), "the node to be Ready", || {
            let nodes = nodes.clone();
            async move {
                let node = nodes.get_opt(NODE_NAME).await.ok().flatten()?;
                let ready = node
                    .status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                ready.then_some(())
            }
        })
        .await
        .map_err(|e| self.with_logs(e, &["kubelet", "containerd"]))
    }

    async fn wait_dns_ready(&mut self) -> Result<(), HarnessError> {
        let pods: Api<Pod> = Api::namespaced(self.admin().await?, "kube-system");
        crate::wait::until(Duration::from_secs(120), "CoreDNS to be ready", || {
            let pods = pods.clone();
            async move {
                let list = pods
                    .list(&ListParams::default().labels("k8s-app=kube-dns"))
                    .await
                    .ok()?;
                list.items
                    .iter()
                    .any(|p| {
                        p.status
                            .as_ref()
                            .and_then(|s| s.conditions.as_ref())
                            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                    })
                    .then_some(())
            }
        })
        .await
        .map_err(|e| self.with_logs(e, &["kubelet", "containerd"]))
    }

    /// The last `lines` lines of a component's log (`kubelet`, `containerd`, `kube-router`, ...).
    pub fn log_tail(&self, name: &str, lines: usize) -> String {
        let log = self.plane.dir().join(format!("{name}.log"));
        let content = std::fs::read_to_string(&log).unwrap_or_default();
        let all: Vec<&str> = content.lines().collect();
        format!(
            "--- last lines of {} ---\n{}",
            log.display(),
            all[all.len().saturating_sub(lines)..].join("\n")
        )
    }

    /// Appends the ends of the named components' logs to a start-up error.
    fn with_logs(&self, err: HarnessError, names: &[&str]) -> HarnessError {
        let mut text = err.to_string();
        for name in names {
            text.push('\n');
            text.push_str(&self.log_tail(name, 20));
        }
        HarnessError::Manifest(text)
    }
}

/// Runs the teardown script on drop unless disarmed; a watchdog runs it if the process dies first.
struct TeardownGuard {
    script: Option<String>,
    watchdog: Option<std::process::Child>,
}

impl TeardownGuard {
    fn new(script: String) -> Result<Self, HarnessError> {
        let watchdog = crate::watchdog::spawn(&script).map_err(|source| HarnessError::Spawn {
            name: "watchdog".into(),
            source,
        })?;
        Ok(Self {
            script: Some(script),
            watchdog: Some(watchdog),
        })
    }

    fn disarm(&mut self) {
        self.script = None;
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

impl Drop for TeardownGuard {
    fn drop(&mut self) {
        if let Some(script) = self.script.take() {
            let _ = Command::new("sh")
                .arg("-c")
                .arg(script)
                .stdin(Stdio::null())
                .status();
        }
        self.disarm();
    }
}

fn enforcer_wanted() -> Result<bool, HarnessError> {
    match std::env::var(ENFORCER_ENV).as_deref() {
        Err(_) | Ok("kube-router") => Ok(true),
        Ok("none") => Ok(false),
        Ok(other) => Err(HarnessError::Assets(format!(
            "{ENFORCER_ENV}={other}: expected `kube-router` (the default) or `none`"
        ))),
    }
}

fn take_lock() -> Result<File, HarnessError> {
    let _ = std::fs::create_dir_all("/run/lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(LOCK_FILE)
        .map_err(io(LOCK_FILE))?;
    file.lock().map_err(io(format!("locking {LOCK_FILE}")))?;
    Ok(file)
}

fn check_tools() -> Result<(), HarnessError> {
    if !nix_is_root() {
        return Err(HarnessError::Assets(
            "the local cluster needs root (network namespaces, mounts, cgroups)".into(),
        ));
    }
    for tool in [
        "ip",
        "nsenter",
        "unshare",
        "mount",
        "umount",
        "containerd",
        "ctr",
        "runc",
        "iptables",
        "ipset",
    ] {
        let found = std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).any(|p| p.join(tool).is_file()))
            .unwrap_or(false);
        if !found {
            return Err(HarnessError::Assets(format!(
                "`{tool}` is not installed; e2e/scripts/cluster-assets.sh installs it (as root on Debian)"
            )));
        }
    }
    Ok(())
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

/// The node's network namespace and its link to the host.
fn make_network(netns: &str, host_veth: &str) -> Result<(), HarnessError> {
    let node = |args: &[&str]| {
        let mut full = vec!["netns", "exec", netns];
        full.extend_from_slice(args);
        run_blocking("ip", &full)
    };
    run_blocking("ip", &["netns", "add", netns])?;
    run_blocking(
        "ip",
        &[
            "link", "add", host_veth, "type", "veth", "peer", "name", "eth0", "netns", netns,
        ],
    )?;
    run_blocking("ip", &["addr", "add", &format!("{HOST_IP}/30"), "dev", host_veth])?;
    run_blocking("ip", &["link", "set", host_veth, "up"])?;
    node(&["ip", "link", "set", "lo", "up"])?;
    node(&["ip", "addr", "add", &format!("{NODE_IP}/30"), "dev", "eth0"])?;
    node(&["ip", "link", "set", "eth0", "up"])?;
    // The bridge the CNI plugin uses, made up front so locally made Service traffic has a route.
    node(&["ip", "link", "add", "cni0", "type", "bridge"])?;
    node(&["ip", "addr", "add", "198.18.0.1/24", "dev", "cni0"])?;
    node(&["ip", "link", "set", "cni0", "up"])?;
    node(&["ip", "route", "add", control_plane::SERVICE_CIDR, "dev", "cni0"])?;
    node(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    node(&["sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1"])?;
    // The host reaches pods and Services through the node (tests probe them directly).
    let via = NODE_IP.to_string();
    run_blocking("ip", &["route", "add", POD_CIDR, "via", &via, "dev", host_veth])?;
    run_blocking(
        "ip",
        &[
            "route",
            "add",
            control_plane::SERVICE_CIDR,
            "via",
            &via,
            "dev",
            host_veth,
        ],
    )?;
    Ok(())
}

/// `/<cgroup>` in every mounted v1 hierarchy (the kubelet's cgroup root), and `/<cgroup>/runtime` in the pids
/// hierarchy for containerd and its shims.
fn make_cgroups(cgroup: &str) -> Result<(), HarnessError> {
    for hierarchy in v1_hierarchies() {
        let dir = hierarchy.join(cgroup);
        std::fs::create_dir_all(&dir).map_err(io(dir.display().to_string()))?;
        if hierarchy.ends_with("cpuset") {
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let parent = std::fs::read_to_string(hierarchy.join(file)).map_err(io(file))?;
                std::fs::write(dir.join(file), parent.trim()).map_err(io(file))?;
            }
        }
    }
    let runtime = Path::new("/sys/fs/cgroup/pids").join(cgroup).join("runtime");
    std::fs::create_dir_all(&runtime).map_err(io(runtime.display().to_string()))
}

fn v1_hierarchies() -> Vec<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.len() > 2 && fields[2] == "cgroup").then(|| PathBuf::from(fields[1]))
        })
        .collect()
}

/// The shell commands that undo everything the cluster made, run after its processes are killed.
fn teardown_script(dir: &Path, netns: &str, cgroup: &str) -> Result<String, HarnessError> {
    // What already exists in the machine-wide state dirs is kept; anything new is the cluster's.
    let mut keep = Vec::new();
    for shared in SHARED_STATE_DIRS {
        let existed = Path::new(shared).is_dir();
        let entries: Vec<String> = std::fs::read_dir(shared)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        keep.push((shared, existed, entries));
    }
    let d = dir.display();
    let mut script = format!(
        r#"d='{d}'; ns='{netns}'; cg='{cg}'
for i in $(seq 1 100); do
  pids=$(cat $(find /sys/fs/cgroup/pids/$cg -name cgroup.procs 2>/dev/null) 2>/dev/null)
  [ -z "$pids" ] && break
  kill -9 $pids 2>/dev/null; sleep 0.1
done
awk -v d="$d" '$5 == d || index($5, d "/") == 1 {{print $5}}' /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
for h in /sys/fs/cgroup/*/; do [ -d "$h$cg" ] && find "$h$cg" -depth -type d -exec rmdir {{}} \; 2>/dev/null; done
ip netns del "$ns" 2>/dev/null
rm -rf --one-file-system "$d"
"#,
        cg = cgroup,
    );
    for (shared, existed, entries) in keep {
        if existed {
            let list = entries
                .iter()
                .map(|e| format!("'{e}'"))
                .collect::<Vec<_>>()
                .join(" ");
            script.push_str(&format!(
                "for f in {shared}/*; do [ -e \"$f\" ] || continue; case \" {list} \" in *\" '$(basename \"$f\")' \"*) ;; *) rm -rf \"$f\";; esac; done\n"
            ));
        } else {
            script.push_str(&format!("rm -rf {shared}\n"));
        }
    }
    if !Path::new("/run/containerd").exists() {
        script.push_str("rmdir /run/containerd 2>/dev/null\n");
    }
    if !Path::new("/var/lib/cni").exists() {
        script.push_str("rmdir /var/lib/cni 2>/dev/null\n");
    }
    script.push_str("true\n");
    Ok(script)
}

async fn run(program: &str, args: &[&str]) -> Result<(), HarnessError> {
    let output = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        // A caller that gives up (a signal during start-up) leaves no command running.
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| HarnessError::Spawn {
            name: program.into(),
            source,
        })?;
    check(program, args, &output)
}

fn run_blocking(program: &str, args: &[&str]) -> Result<(), HarnessError> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| HarnessError::Spawn {
            name: program.into(),
            source,
        })?;
    check(program, args, &output)
}

fn check(program: &str, args: &[&str], output: &std::process::Output) -> Result<(), HarnessError> {
    if output.status.success() {
        return Ok(());
    }
    Err(HarnessError::Manifest(format!(
        "`{program} {}` failed ({}): {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    )))
}

fn write(path: &Path, contents: &str) -> Result<(), HarnessError> {
    std::fs::write(path, contents).map_err(io(path.display().to_string()))
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}
