//! Postgres inspection.
