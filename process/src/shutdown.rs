//! Waiting for the signal to stop.

use std::future::Future;

use tokio::signal::unix::{SignalKind, signal as unix_signal};

/// Completes on SIGTERM or SIGINT (Ctrl-C). The handlers are installed when this is called, not when the future
/// is first polled: call it before the process announces it is up, so a stop request that arrives while it is
/// still starting is kept, not fatal. Must be called inside the Tokio runtime.
pub fn signal() -> impl Future<Output = ()> + Send + 'static {
    let term = unix_signal(SignalKind::terminate());
    let int = unix_signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_sigterm_before_anyone_waits_is_kept() {
        let stop = signal();
        let me = std::process::id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &me])
            .status()
            .unwrap();
        assert!(sent.success());
        // Still alive (the default action would have ended the process), and the future completes.
        tokio::time::timeout(std::time::Duration::from_secs(10), stop)
            .await
            .unwrap();
    }
}
