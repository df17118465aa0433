//! What every Bulkhead binary does at the process level: logging to stderr in JSON or plain text, and waiting
//! for SIGTERM or Ctrl-C.

pub mod shutdown;
pub mod telemetry;
