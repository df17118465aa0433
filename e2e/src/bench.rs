//! What the benchmark binaries share: how they end, where the binary they measure is, how they were built and
//! how loaded the machine was.

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The exit of benchmark `name`: its error, if any, on stderr.
pub fn exit(name: &str, result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prefixes an error with what was being done.
pub fn err<E: Display>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// The binary `name` of `package` a benchmark measures: `explicit` when given, else the one next to the running
/// benchmark (both built by the same `cargo build`). An error says how to build it.
pub fn sibling(explicit: Option<&Path>, name: &str, package: &str) -> Result<PathBuf, String> {
    let bin = match explicit {
        Some(path) => path.to_path_buf(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name(name),
    };
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "{} not found; build it with `cargo build --release -p {package}`",
            bin.display()
        ))
    }
}

/// The profile the running benchmark was built with (`release` or `debug`), for the report.
pub fn profile() -> &'static str {
    let release = std::env::current_exe().is_ok_and(|exe| exe.to_string_lossy().contains("/release/"));
    if release { "release" } else { "debug" }
}

/// The machine's one-minute load average, for the report ("unknown" where /proc does not say).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The machine's cores and CPU model, as "2 cores (AMD EPYC)", for the report.
pub fn cores_and_model() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cores = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU", str::trim);
    format!("{cores} cores ({model})")
}

/// The machine's memory, as "24 GiB", for the report.
pub fn memory() -> String {
    let gib = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    format!("{gib:.0} GiB")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_binary_says_how_to_build_it() {
        let e = sibling(
            Some(Path::new("/nonexistent/bulkhead-operator")),
            "x",
            "bulkhead-operator",
        )
        .unwrap_err();
        assert_eq!(
            e,
            "/nonexistent/bulkhead-operator not found; build it with `cargo build --release -p bulkhead-operator`"
        );
        let here = std::env::current_exe().unwrap();
        let found = sibling(Some(&here), "x", "p").unwrap();
        assert_eq!(found, here);
        assert_eq!(err::<&str>("reading")("gone"), "reading: gone");
    }
}
