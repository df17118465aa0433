//! The stack of Bulkhead's cluster suites, one static binary for both ends of a traffic test: an HTTP server
//! that answers with the namespace and pod it runs in and the request it saw (credentials left out), and a probe
//! that reports in one JSON line whether a TCP connection (and optionally an HTTP request) to a target succeeds.

pub mod probe;
pub mod server;
