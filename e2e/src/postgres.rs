//! A real PostgreSQL 15 server on loopback, owned by one process.
//!
//! [`Postgres::start`] finds the PostgreSQL 15 binaries (`$BULKHEAD_PG_BIN`, else Debian's
//! `/usr/lib/postgresql/15/bin`), runs `initdb` as the `postgres` OS user in a temp dir (local connections trust,
//! TCP connections need a SCRAM password; the superuser gets a random one), starts the server on a free
//! 127.0.0.1 port and waits until the superuser can log in over TCP. [`Postgres::start_reachable`] also listens
//! on one more address of this machine and lets given client ranges log in there (pods of the local cluster).
//! Several servers may run at once, also from one test binary: each has its own temp dir and port. Dropping it
//! stops the server by pid, also while a test panics, and removes the temp dir; a small watchdog process stops
//! the server and removes the temp dir too if the owning process dies without unwinding.
//!
//! Postgres refuses to run as root. `initdb` runs under `runuser -u postgres`; the server itself is spawned
//! with the `postgres` uid and gid set directly (`CommandExt::uid`/`gid`), so the pid we hold is the
//! postmaster's own. `runuser` would stay in between as a parent, and killing it would orphan the server.

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
/// Where Debian's `postgresql-15` package installs the binaries.
pub const DEFAULT_BIN: &str = "/usr/lib/postgresql/15/bin";
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

/// What can go wrong while starting or using the server.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    /// `initdb` or `postgres` is not where we looked.
    #[error(
        "PostgreSQL 15 binaries not found: {missing} does not exist (install them with \
         `apt-get install postgresql-15`, or point ${BIN_ENV} at the directory holding initdb and postgres)"
    )]
    Binaries {
        /// The missing file.
        missing: String,
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
    dir: tempfile::TempDir,
}

impl fmt::Debug for Postgres {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Postgres")
            .field("pid", &self.server.as_ref().map(Child::id))
            .field("port", &self.port)
            .field("dir", &self.dir.path())
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

/// The directory holding `initdb` and `postgres`: `$BULKHEAD_PG_BIN`, else Debian's default.
pub fn bin_dir() -> Result<PathBuf, PostgresError> {
    let dir = std::env::var_os(BIN_ENV)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_BIN), PathBuf::from);
    for name in ["initdb", "postgres"] {
        let path = dir.join(name);
        if !path.is_file() {
            return Err(PostgresError::Binaries {
                missing: path.display().to_string(),
            });
        }
    }
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
    use super::percent_encode;

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
