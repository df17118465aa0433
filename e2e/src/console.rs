//! Output for long-running tools (the sandbox) that never panics and notices when nobody reads it any more.
//!
//! `println!` panics once standard output is gone (the reader of a pipe exited, as `tee` does on Ctrl-C; the
//! terminal closed), and a panic in the middle of start-up or clean-up is the worst moment to stop. [`line`]
//! writes and flushes one line and reports failure instead, [`stdout_gone`] remembers the first failure, and
//! [`stdout_closed`] resolves as soon as the reader of a piped standard output goes away, even while nothing
//! is being written.

use std::fmt::Display;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static STDOUT_GONE: AtomicBool = AtomicBool::new(false);

/// Writes `text` and a newline to standard output and flushes. Returns false (and [`stdout_gone`] is true from
/// then on) when the write fails.
pub fn line(text: impl Display) -> bool {
    let mut out = std::io::stdout().lock();
    let written = writeln!(out, "{text}").and_then(|()| out.flush()).is_ok();
    if !written {
        STDOUT_GONE.store(true, Ordering::Relaxed);
    }
    written
}

/// Writes `text` and a newline to standard error; a failure is ignored (there is nowhere left to report it).
pub fn error(text: impl Display) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}").and_then(|()| err.flush());
}

/// Whether a write to standard output has failed.
pub fn stdout_gone() -> bool {
    STDOUT_GONE.load(Ordering::Relaxed)
}

/// Resolves when standard output is gone: at once when it is a pipe whose reader exited (the kernel reports an
/// error condition on the writing end), otherwise when a write through [`line`] failed.
pub async fn stdout_closed() {
    tokio::select! {
        () = pipe_reader_gone() => {}
        () = failed_write() => {}
    }
    STDOUT_GONE.store(true, Ordering::Relaxed);
}

async fn failed_write() {
    while !stdout_gone() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits for the error condition a pipe's writing end gets when its last reader closes (or the hang-up of a
/// terminal). Never resolves when standard output cannot be watched that way (a file, `/dev/null`).
async fn pipe_reader_gone() {
    let (gone, watched) = tokio::sync::oneshot::channel::<()>();
    // A blocking poll for no event at all: it returns only on an error or a hang-up. The thread is detached;
    // it ends with the process.
    let spawned = std::thread::Builder::new()
        .name("stdout-watch".into())
        .spawn(move || {
            use rustix::event::{PollFd, PollFlags, poll};
            let stdout = std::io::stdout();
            loop {
                let mut fds = [PollFd::new(&stdout, PollFlags::empty())];
                match poll(&mut fds, None) {
                    Ok(_)
                        if fds[0]
                            .revents()
                            .intersects(PollFlags::ERR | PollFlags::HUP | PollFlags::NVAL) =>
                    {
                        let _ = gone.send(());
                        return;
                    }
                    Ok(_) | Err(rustix::io::Errno::INTR) => {}
                    // Cannot watch: dropping the sender leaves the wait pending forever.
                    Err(_) => return,
                }
            }
        });
    if spawned.is_err() || watched.await.is_err() {
        std::future::pending::<()>().await;
    }
}
