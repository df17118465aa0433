//! `bulkhead-operator verify`: reads the live state with read-only credentials and reports, check by check,
//! whether the isolation contract holds.
//!
//! Reading (`snapshot`, `postgres`) is kept apart from judging: the evaluators (`netpol`, `network`,
//! `routing`, `contract`) are pure and table-tested, and `report` turns their checks into the human report and
//! the JSON document.

pub mod check;
pub mod netpol;
pub mod postgres;

pub use check::{Check, Verdict};
