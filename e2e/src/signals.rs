//! Waiting for the signals that end a long-running tool (sandbox, cluster): Ctrl-C, SIGTERM, or the terminal
//! going away (SIGHUP).

use tokio::signal::unix::{SignalKind, signal};

/// Resolves when the process receives SIGINT, SIGTERM or SIGHUP.
pub async fn shutdown() {
    let (term, hup) = (signal(SignalKind::terminate()), signal(SignalKind::hangup()));
    match (term, hup) {
        (Ok(mut term), Ok(mut hup)) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
                _ = hup.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
