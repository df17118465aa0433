//! What every Bulkhead binary does at the process level: logging to stderr in JSON or plain text, and waiting
//! for SIGTERM or Ctrl-C.

pub mod shutdown;
pub mod telemetry;

use std::future::Future;
use std::process::ExitCode;

/// Runs a binary's `run` command: sets up logging, starts the runtime, runs `main` to completion and turns its
/// outcome into the exit code (errors are logged as `"<program> stopped"`). The runtime is current-thread when
/// the process may use one CPU (affinity or a cgroup CPU limit, as `available_parallelism` reads them), since
/// worker threads sharing one CPU only add wake-ups; multi-threaded otherwise.
pub fn serve<F>(program: &str, format: telemetry::LogFormat, filter: &str, main: F) -> ExitCode
where
    F: Future<Output = Result<(), String>>,
{
    if let Err(err) = telemetry::init(format, filter) {
        eprintln!("{program}: {err}");
        return ExitCode::FAILURE;
    }
    let one_cpu = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    let mut builder = if one_cpu {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            tracing::error!(error = %err, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(main) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!(error = %message, "{program} stopped");
            ExitCode::FAILURE
        }
    }
}
