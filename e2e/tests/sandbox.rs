//! The sandbox on the real local cluster: every example's stack runs (the local stack image standing in for
//! images that cannot be pulled here, and saying so) and becomes Ready, the gateway pod routes each token to a pod
//! of its own namespace only, hostile requests are refused, and from inside the stacks another Tenant's stack
//! resolves (DNS is allowed) but cannot be reached, and PostgreSQL only with a database; `verify` finds the
//! isolation contract holding and predicts every cell of the matrix probed from the stacks. However the sandbox
//! ends (`--once`, Ctrl-C, its standard output going away), nothing it started is left: no process, network
//! namespace, mount, cgroup or temp dir, and no Kubernetes rule in the host's iptables.
//!
//! Needs the images of `make images` (`make test` builds them first).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail the test by panicking

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use bulkhead_e2e::local_images;

/// One sandbox at a time: the cluster harness serializes them anyway, and each test's deadlines assume so.
static SERIAL: Mutex<()> = Mutex::new(());

/// How long a run may wait for another local cluster on the machine to stop (one runs at a time).
const LOCK_GUARD: Duration = Duration::from_secs(3600);
/// A bound that makes a broken run fail instead of hanging, once its cluster is up.
const HANG_GUARD: Duration = Duration::from_secs(600);
/// How long a stop may take: the cluster and PostgreSQL stop in a few seconds.
const STOP_GUARD: Duration = Duration::from_secs(120);

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn sandbox() -> Command {
    let images = local_images::default_dir();
    for name in local_images::PRODUCTS {
        let archive = images.join(format!("{name}.tar"));
        assert!(
            archive.is_file(),
            "{} is missing: run `make images` first (`make test` does)",
            archive.display()
        );
    }
    Command::new(env!("CARGO_BIN_EXE_sandbox"))
}

/// The examples: kind, name, namespace, whether it has a database, the Tenant whose identity it carries.
const EXAMPLES: [(&str, &str, &str, bool, &str); 5] = [
    ("Tenant", "acme", "bk-acme", true, "acme"),
    ("Tenant", "globex", "bk-globex", true, "globex"),
    ("Customer", "acme-dental", "bk-acme-acme-dental", true, "acme"),
    ("Customer", "acme-lawfirm", "bk-acme-acme-lawfirm", true, "acme"),
    (
        "Customer",
        "globex-bakery",
        "bk-globex-globex-bakery",
        false,
        "globex",
    ),
];

/// The cells of a table line (columns are separated by at least two spaces; cells have single spaces only).
fn cells(line: &str) -> Vec<&str> {
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

/// The rows of the table whose header starts with `header`, up to the next empty line.
fn table<'a>(output: &'a str, header: &str) -> Vec<Vec<&'a str>> {
    let lines: Vec<&str> = output.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with(header))
        .unwrap_or_else(|| panic!("no table {header:?} in\n{output}"));
    lines[start + 1..]
        .iter()
        .take_while(|l| !l.is_empty())
        .map(|l| cells(l))
        .collect()
}

fn value_after<'a>(output: &'a str, prefix: &str) -> &'a str {
    output
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in\n{output}"))
        .trim()
}

/// The sandbox's temp dirs, from its `files:` line.
fn files(output: &str) -> Vec<PathBuf> {
    value_after(output, "files:")
        .split(", ")
        .filter_map(|part| part.split_whitespace().last())
        .map(PathBuf::from)
        .collect()
}

#[test]
fn once_runs_every_example_for_real_and_routes_each_token_to_its_own_namespace() {
    let _serial = serial();
    let started = Instant::now();
    let (status, stdout) = Running::start(&["--once"]).finish();
    assert!(
        status.success(),
        "sandbox failed ({status}); its output:\n{stdout}"
    );
    eprintln!("sandbox --once took {:?}", started.elapsed());

    // Every example is Ready: its stack runs, and its database (all but globex-bakery) is provisioned.
    let rows = table(&stdout, "KIND ");
    assert_eq!(rows.len(), EXAMPLES.len(), "{stdout}");
    for (kind, name, namespace, database, _) in EXAMPLES {
        let row = rows
            .iter()
            .find(|r| r[0] == kind && r[1] == name)
            .unwrap_or_else(|| panic!("no row for {kind} {name} in\n{stdout}"));
        let n = row.len();
        assert_eq!(row[n - 4], namespace, "{row:?}");
        assert_eq!(row[n - 3], if database { "Provisioned" } else { "-" }, "{row:?}");
        assert_eq!(&row[n - 2..], ["True", "Provisioned"], "{row:?}");
    }

    // The examples' images cannot be pulled here: the local stack image runs instead, and the sandbox says so.
    for (what, image) in [
        ("Tenant acme", "nginxinc/nginx-unprivileged:1.27"),
        ("Tenant globex", "nginxinc/nginx-unprivileged:1.27"),
        ("Customer acme-lawfirm", "nginxinc/nginx-unprivileged:1.27-alpine"),
    ] {
        let announced = format!("  {what}: {image} is not on the node -> runs bulkhead.dev/stack:");
        assert!(
            stdout.lines().any(|l| l.starts_with(&announced)),
            "no {announced:?} in\n{stdout}"
        );
    }
    assert!(
        stdout.contains(
            "Customers acme-dental, globex-bakery have no stack of their own and run their Tenant's."
        ),
        "{stdout}"
    );

    // Each token is answered by a pod of its own namespace (and so of no other), with its own identity once.
    let requests = table(&stdout, "REQUEST ");
    let request = |label: &str| {
        requests
            .iter()
            .find(|r| r[0] == label)
            .unwrap_or_else(|| panic!("no request {label:?} in\n{stdout}"))
            .clone()
    };
    for (kind, name, namespace, _, tenant) in EXAMPLES {
        let row = request(&format!("{name}'s token"));
        assert_eq!(&row[1..3], ["200", "ok"], "{row:?}");
        let (answered_ns, pod) = row[3].split_once('/').unwrap();
        assert_eq!(answered_ns, namespace, "{row:?}");
        assert!(pod.starts_with("stack-"), "{row:?}");
        let identity: Vec<&str> = row[4].split(", ").collect();
        assert!(
            identity.contains(&format!("x-bulkhead-tenant={tenant}").as_str()),
            "{row:?}"
        );
        assert_eq!(
            identity.contains(&format!("x-bulkhead-customer={name}").as_str()),
            kind == "Customer",
            "{row:?}"
        );
        assert_eq!(
            identity
                .iter()
                .filter(|h| h.starts_with("x-bulkhead-tenant="))
                .count(),
            1
        );
        assert_eq!(
            identity
                .iter()
                .filter(|h| h.starts_with("x-bulkhead-org="))
                .count(),
            1
        );
    }
    // Headers claiming globex change nothing: acme's token still reaches acme only, as acme.
    let spoofed = request("acme's token + X-Bulkhead-Tenant/X-Org-Id of globex");
    assert_eq!(&spoofed[1..3], ["200", "ok"], "{spoofed:?}");
    assert_eq!(spoofed[3].split_once('/').unwrap().0, "bk-acme", "{spoofed:?}");
    assert_eq!(spoofed[4], request("acme's token")[4], "{spoofed:?}");
    assert!(
        !spoofed[4].contains("globex") && !spoofed[4].contains("x-org-id"),
        "{spoofed:?}"
    );
    let missing = request("no token");
    assert_eq!(&missing[1..4], ["401", "ok", "gateway"], "{missing:?}");
    assert!(
        missing[4].contains(r#""gate":"token","reason":"missing""#),
        "{missing:?}"
    );
    let stray = request("a valid token for an unknown org (org_NoSuchTenant)");
    assert_eq!(&stray[1..4], ["403", "ok", "gateway"], "{stray:?}");
    assert!(
        stray[4].contains(r#""gate":"route","reason":"no_route""#),
        "{stray:?}"
    );
    assert_eq!(requests.len(), EXAMPLES.len() + 3, "{stdout}");

    // From inside the stacks: another Tenant's stack resolves (DNS is allowed) but cannot be reached; PostgreSQL
    // can be reached from a stack with a database only. Every probe's CHECK is the policy's expectation.
    let egress = table(&stdout, "FROM A STACK POD IN ");
    assert_eq!(egress.len(), 3, "{stdout}");
    for (row, from, to, reached) in [
        (
            &egress[0],
            "bk-acme/",
            "globex's stack (stack.bk-globex.svc:",
            false,
        ),
        (&egress[1], "bk-acme/", "PostgreSQL (198.18.255.1:", true),
        (
            &egress[2],
            "bk-globex-globex-bakery/",
            "PostgreSQL (198.18.255.1:",
            false,
        ),
    ] {
        assert!(row[0].starts_with(from) && row[1].starts_with(to), "{row:?}");
        assert_eq!(row[2].starts_with("connected"), reached, "{row:?}");
        if !reached {
            assert!(
                row[2].contains(": connecting to "),
                "the name must resolve: {row:?}"
            );
        }
        assert_eq!(row[3], "ok", "{row:?}");
    }

    // verify, run in-process with the operator's settings, finds the contract holding, and its matrix equals
    // the one probed with real connections: from a stack pod of every example to every stack's pod and Service,
    // DNS, the API server, PostgreSQL and the outside.
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("verify: the isolation contract holds (exit 0; ")),
        "{stdout}"
    );
    assert!(!stdout.lines().any(|l| l.starts_with("  FAIL ")), "{stdout}");
    // 5 sources x (5 stack pods + 5 stack Services + DNS + API server + PostgreSQL + the outside).
    assert!(
        stdout
            .lines()
            .any(|l| l == "verify's matrix equals the probed one: 70 cells"),
        "{stdout}"
    );
    let header = stdout
        .lines()
        .find(|l| l.starts_with("SOURCE POD "))
        .map(cells)
        .unwrap_or_else(|| panic!("no probed matrix in\n{stdout}"));
    let mut columns = vec!["SOURCE POD"];
    columns.extend(EXAMPLES.map(|e| e.2));
    columns.extend(["dns", "api-server", "postgres", "outside"]);
    assert_eq!(header, columns, "{stdout}");
    let probed = table(&stdout, "SOURCE POD ");
    assert_eq!(probed.len(), EXAMPLES.len(), "{stdout}");
    for (_, name, namespace, database, _) in EXAMPLES {
        let row = probed
            .iter()
            .find(|r| r[0].starts_with(&format!("{namespace}/stack-")))
            .unwrap_or_else(|| panic!("no probes from {name} in\n{stdout}"));
        assert_eq!(row.len(), header.len(), "{row:?}");
        for (column, mark) in header.iter().zip(row).skip(1) {
            // A stack's column: its pod, then its Service; every other column: one place.
            let wanted = match *column {
                c if c == namespace => "AA",
                c if EXAMPLES.iter().any(|e| e.2 == c) => "..",
                "dns" => "A",
                "postgres" if database => "A",
                "api-server" | "postgres" | "outside" => ".",
                other => panic!("unexpected column {other:?} in\n{stdout}"),
            };
            assert_eq!(*mark, wanted, "{name} to {column}: {row:?}");
        }
    }

    // The operator provisioned the databases in the sandbox's PostgreSQL.
    let schemas = value_after(&stdout, "schemas:");
    for prefix in ["bk_acme_", "bk_acme_acme_dental_"] {
        assert!(
            schemas.split([' ', ',']).any(|s| s.starts_with(prefix)),
            "{schemas}"
        );
    }
    let databases = value_after(&stdout, "databases:");
    for prefix in ["bk_globex_", "bk_acme_acme_lawfirm_"] {
        assert!(
            databases.split([' ', ',']).any(|s| s.starts_with(prefix)),
            "{databases}"
        );
    }

    assert!(
        stdout.contains("Stopped; nothing the sandbox started is left."),
        "{stdout}"
    );
    assert_nothing_left(output_pid(&stdout), &[], &files(&stdout));
}

#[test]
fn ctrl_c_while_running_stops_everything() {
    let _serial = serial();
    let mut run = Running::start(&[]);
    let seen = run.until("Running (sandbox pid ");
    let pid = run.child.id();
    let tree = processes_of(pid);
    assert!(
        tree.len() > 10,
        "the cluster's processes should be running: {tree:?}"
    );
    kill("-INT", pid);
    let (status, output) = run.finish();
    assert!(status.success(), "{status}\n{output}");
    assert!(
        output[seen.len()..].contains("Stopped; nothing the sandbox started is left."),
        "{output}"
    );
    assert_nothing_left(pid, &tree, &files(&seen));
}

#[test]
fn its_output_going_away_stops_everything() {
    let _serial = serial();
    let mut run = Running::start(&[]);
    // Like `sandbox | head -n 4`: the reader goes away while the sandbox is still setting up, with the cluster
    // and PostgreSQL up.
    let seen = run.until("PostgreSQL 15 on ");
    let pid = run.child.id();
    let tree = processes_of(pid);
    let cluster_dir = value_after(&seen, "Cluster ready after ")
        .rsplit_once("files in ")
        .map(|(_, dir)| PathBuf::from(dir.trim_end_matches('.')))
        .unwrap();
    let pg_dir = value_after(&seen, "PostgreSQL 15 on ")
        .rsplit_once("files in ")
        .map(|(_, dir)| PathBuf::from(dir.trim_end_matches('.')))
        .unwrap();
    run.close_stdout();
    // No signal: the sandbox notices that nobody reads its output, stops and cleans up by itself.
    let status = run.wait();
    assert!(!status.success(), "stopped before it was up: {status}");
    assert_nothing_left(pid, &tree, &[cluster_dir, pg_dir]);
}

/// A running sandbox, its output read line by line. A guard thread stops it (SIGTERM, so it still cleans up)
/// when a run takes too long: [`LOCK_GUARD`] until its cluster is up, [`HANG_GUARD`] from then on.
struct Running {
    child: Child,
    stdout: Option<BufReader<ChildStdout>>,
    guard: mpsc::Sender<Duration>,
    seen: String,
}

impl Running {
    fn start(args: &[&str]) -> Running {
        let mut child = sandbox()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (guard, bounds) = mpsc::channel::<Duration>();
        let pid = child.id();
        std::thread::spawn(move || {
            let mut deadline = Instant::now() + LOCK_GUARD;
            loop {
                match bounds.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(bound) => deadline = Instant::now() + bound,
                    Err(RecvTimeoutError::Disconnected) => return,
                    Err(RecvTimeoutError::Timeout) => {
                        eprintln!("the sandbox (pid {pid}) takes too long: stopping it");
                        let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
                        return;
                    }
                }
            }
        });
        Running {
            child,
            stdout: Some(stdout),
            guard,
            seen: String::new(),
        }
    }

    /// The next line of output, or `None` at its end.
    fn next_line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.stdout.as_mut()?.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => {
                if line.starts_with("Cluster ready after ") {
                    let _ = self.guard.send(HANG_GUARD);
                }
                self.seen.push_str(&line);
                Some(line)
            }
        }
    }

    /// Reads until a line starting with `prefix`; returns all output so far.
    fn until(&mut self, prefix: &str) -> String {
        loop {
            match self.next_line() {
                Some(line) if line.starts_with(prefix) => return self.seen.clone(),
                Some(_) => {}
                None => {
                    let status = self.child.wait().unwrap();
                    panic!(
                        "the sandbox ended ({status}) before a line {prefix:?}:\n{}",
                        self.seen
                    );
                }
            }
        }
    }

    /// Closes the reading end of the sandbox's standard output, as a pipeline's reader that exits does.
    fn close_stdout(&mut self) {
        drop(self.stdout.take());
    }

    /// Reads the output to its end (the sandbox's exit) and returns the exit status and all output.
    fn finish(mut self) -> (std::process::ExitStatus, String) {
        while self.next_line().is_some() {}
        (self.wait(), std::mem::take(&mut self.seen))
    }

    /// Waits (bounded) for the exit.
    fn wait(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + STOP_GUARD;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the sandbox did not stop within {STOP_GUARD:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // A failed test must not leave a sandbox behind: SIGTERM lets it clean up (its watchdogs cover the rest).
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + STOP_GUARD;
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn kill(signal: &str, pid: u32) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

/// The sandbox's pid, from its cluster's network namespace (`bulkhead-<pid>`).
fn output_pid(output: &str) -> u32 {
    let line = value_after(output, "Cluster ready after ");
    let (_, rest) = line.split_once("network namespace bulkhead-").unwrap();
    rest.split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// A process as `/proc/<pid>/stat` names it: pid and start time (which tells a reused pid apart).
type Proc = (u32, u64);

fn stat(pid: u32) -> Option<(u32, u64, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name in parentheses: state (field 3), ppid (4), …, starttime (22).
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some((
        fields[1].parse().ok()?,
        fields[19].parse().ok()?,
        fields[0].chars().next()?,
    ))
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// Every process of the sandbox's tree (children, their children, …) and every process in its cluster's
/// cgroup (containerd's shims and the pods, which are not its descendants).
fn processes_of(root: u32) -> Vec<Proc> {
    let parents: Vec<(u32, u32, u64)> = all_pids()
        .into_iter()
        .filter_map(|pid| stat(pid).map(|(ppid, start, _)| (pid, ppid, start)))
        .collect();
    let mut tree = BTreeSet::from([root]);
    loop {
        let before = tree.len();
        for (pid, ppid, _) in &parents {
            if tree.contains(ppid) {
                tree.insert(*pid);
            }
        }
        if tree.len() == before {
            break;
        }
    }
    let cgroup = PathBuf::from(format!("/sys/fs/cgroup/pids/bulkhead-{root}"));
    for procs in find_files(&cgroup, "cgroup.procs") {
        for pid in std::fs::read_to_string(procs).unwrap_or_default().lines() {
            if let Ok(pid) = pid.trim().parse() {
                tree.insert(pid);
            }
        }
    }
    tree.remove(&root);
    tree.into_iter()
        .filter_map(|pid| stat(pid).map(|(_, start, _)| (pid, start)))
        .collect()
}

fn find_files(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            found.extend(find_files(&path, name));
        } else if path.file_name().is_some_and(|n| n == name) {
            found.push(path);
        }
    }
    found
}

/// No process of `tree` (nor any process naming one of `dirs`), no network namespace, cgroup or mount of the
/// sandbox `pid`, none of `dirs`, and no Kubernetes rule in the host's iptables.
fn assert_nothing_left(pid: u32, tree: &[Proc], dirs: &[PathBuf]) {
    assert!(!dirs.is_empty());
    // The stop is synchronous; a moment for the kernel to reap what was killed last.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let alive: Vec<Proc> = tree
            .iter()
            .copied()
            .filter(|(p, start)| stat(*p).is_some_and(|(_, s, state)| s == *start && state != 'Z'))
            .collect();
        let naming: Vec<u32> = all_pids()
            .into_iter()
            .filter(|p| {
                let cmdline = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(&cmdline);
                dirs.iter().any(|d| cmdline.contains(&*d.to_string_lossy()))
            })
            .collect();
        if alive.is_empty() && naming.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left running: {alive:?} of the sandbox's processes; {naming:?} naming its dirs"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let netns = String::from_utf8_lossy(&netns.stdout);
    let ours = format!("bulkhead-{pid}");
    assert!(
        !netns.split_whitespace().any(|n| n == ours),
        "network namespace {ours} left: {netns}"
    );
    assert!(
        !Path::new(&format!("/sys/fs/cgroup/pids/{ours}")).exists(),
        "cgroup {ours} left"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for dir in dirs {
        let dir = dir.to_string_lossy();
        assert!(
            !mounts.lines().any(|l| l.contains(&*dir)),
            "mounts under {dir} left:\n{mounts}"
        );
        assert!(!Path::new(&*dir).exists(), "{dir} left");
    }
    let rules = Command::new("iptables-save").output().unwrap();
    let rules = String::from_utf8_lossy(&rules.stdout);
    let kube: Vec<&str> = rules.lines().filter(|l| l.contains("KUBE")).collect();
    assert!(
        kube.is_empty(),
        "Kubernetes rules in the host's iptables: {kube:?}"
    );
}
