//! What the integration tests share: the built binary as a process, its JSON lines, and a closed port.

use std::net::SocketAddr;
use std::process::Output;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::process::Command;

/// A generous bound so a broken test fails instead of hanging; never an expectation on speed.
pub const HANG_GUARD: Duration = Duration::from_secs(60);

/// The built `bulkhead-stack`, killed if the test lets go of it before it ends.
pub fn stack() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bulkhead-stack"));
    command.kill_on_drop(true);
    command
}

/// Runs `command` to its end (within [`HANG_GUARD`]) and returns its output and its stdout as JSON lines;
/// a line that is not JSON fails the test.
pub async fn output_lines(command: &mut Command) -> (Output, Vec<serde_json::Value>) {
    let output = tokio::time::timeout(HANG_GUARD, command.output())
        .await
        .expect("the command ends within its own timeouts")
        .unwrap();
    let stdout = String::from_utf8(output.stdout.clone()).unwrap();
    let lines = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line:?}")))
        .collect();
    (output, lines)
}

/// A port on which nothing listens: bound, then released.
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    address
}
