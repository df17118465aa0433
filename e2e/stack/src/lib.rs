//! The stack of Bulkhead's cluster suites, one static binary for every end of a traffic test:
//!
//! - [`server`]: an HTTP server that answers with the namespace and pod it runs in and the request it saw
//!   (credentials left out);
//! - [`probe`]: whether TCP connections (and optionally HTTP requests) to one or many targets succeed, once or
//!   repeatedly until the outcome switches, one JSON line per attempt;
//! - [`db`]: what the pod's `DATABASE_URL` can do in its own schema and is refused in other tenants' schemas and
//!   databases, one JSON line per check;
//! - [`load`]: closed-loop HTTP/1.1 load over keep-alive connections, throughput and latency percentiles in one
//!   JSON line (a benchmark compares requests through the gateway with the same requests sent to a stack
//!   directly).
//!
//! The suites run the probes with `kubectl exec`-style calls into a pod (the image has no shell), so one call
//! does many checks. Credentials handed to the stack (bearer tokens, the database password) never appear in
//! what it prints: see [`redact`].

pub mod db;
pub mod load;
pub mod probe;
pub mod redact;
pub mod server;
