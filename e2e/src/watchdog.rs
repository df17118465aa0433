//! A detached shell that outlives the test process by a moment: it waits until the owner is gone, then stops
//! the servers the owner started, so a test killed without unwinding leaves nothing running.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

/// Starts `sh -c "while kill -0 OWNER; do sleep 1; done; <stop>"` in its own process group, where OWNER is this
/// process and `stop` the shell commands that stop what it started.
pub(crate) fn spawn(stop: &str) -> std::io::Result<Child> {
    let script = format!(
        "while kill -0 {} 2>/dev/null; do sleep 1; done; {stop}",
        std::process::id()
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
}
