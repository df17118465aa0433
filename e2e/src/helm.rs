//! The Helm CLI for the chart's checks and installs: the build pinned in `e2e/cluster/versions.env`
//! (`HELM_VERSION`), provided by `e2e/scripts/cluster-assets.sh helm`, or the binary `BULKHEAD_HELM` names.
//!
//! Every [`Helm`] runs with its cache, configuration and data directories in a temp dir of its own, so nothing
//! reads or writes the user's `~/.config/helm`, `~/.cache/helm` or repositories.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

use crate::HarnessError;

/// The environment variable that names a helm binary to use instead of the pinned build.
pub const HELM_ENV: &str = "BULKHEAD_HELM";

/// The pinned build's path once found (the script runs once per process, so parallel tests build it once).
static PINNED: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The helm binary: `BULKHEAD_HELM` when set, else the pinned build (built from the Go module proxy and cached
/// on first use).
pub fn binary() -> Result<PathBuf, HarnessError> {
    if let Some(path) = std::env::var_os(HELM_ENV).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let mut pinned = PINNED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(path) = pinned.as_ref() {
        return Ok(path.clone());
    }
    let path = crate::control_plane::assets_dir(&["helm"])?;
    if !path.is_file() {
        return Err(HarnessError::Assets(format!(
            "the asset script named {} as the helm binary, which is not a file",
            path.display()
        )));
    }
    *pinned = Some(path.clone());
    Ok(path)
}

/// The repository's chart, `charts/bulkhead`.
pub fn chart_dir() -> PathBuf {
    let e2e = Path::new(env!("CARGO_MANIFEST_DIR"));
    e2e.parent().unwrap_or(e2e).join("charts/bulkhead")
}

/// A helm binary with private state, optionally pointed at a cluster.
#[derive(Debug)]
pub struct Helm {
    bin: PathBuf,
    kubeconfig: Option<PathBuf>,
    home: tempfile::TempDir,
}

impl Helm {
    /// Helm from [`binary`], talking to the cluster of `kubeconfig` (passed as `--kubeconfig`) when given.
    pub fn new(kubeconfig: Option<&Path>) -> Result<Self, HarnessError> {
        let home = tempfile::Builder::new()
            .prefix("bulkhead-helm-")
            .tempdir()
            .map_err(|source| HarnessError::Io {
                what: "a temp dir for helm's state".into(),
                source,
            })?;
        Ok(Helm {
            bin: binary()?,
            kubeconfig: kubeconfig.map(Path::to_path_buf),
            home,
        })
    }

    /// The binary this runs.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// Runs `helm <args>` (plus `--kubeconfig` when set) and returns its output, whatever its exit status.
    pub fn run(&self, args: &[&str]) -> Result<Output, HarnessError> {
        let mut command = Command::new(&self.bin);
        command
            .args(args)
            .env("HELM_CACHE_HOME", self.home.path().join("cache"))
            .env("HELM_CONFIG_HOME", self.home.path().join("config"))
            .env("HELM_DATA_HOME", self.home.path().join("data"))
            .stdin(Stdio::null());
        if let Some(kubeconfig) = &self.kubeconfig {
            command.arg("--kubeconfig").arg(kubeconfig);
        }
        command.output().map_err(|source| HarnessError::Spawn {
            name: self.bin.display().to_string(),
            source,
        })
    }

    /// Runs `helm <args>` and returns its standard output; a non-zero exit is an error carrying helm's standard
    /// error.
    pub fn run_ok(&self, args: &[&str]) -> Result<String, HarnessError> {
        let output = self.run(args)?;
        if !output.status.success() {
            return Err(HarnessError::Manifest(format!(
                "helm {} failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        String::from_utf8(output.stdout)
            .map_err(|e| HarnessError::Manifest(format!("helm {} printed non-UTF-8: {e}", args.join(" "))))
    }
}
