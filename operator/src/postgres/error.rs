//! The error of running SQL on the server, shared by every module here that does.

use super::sql::SqlError;

/// Errors of running SQL on the server (provisioning, hardening, lockdown, capacity).
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A statement could not be built.
    #[error(transparent)]
    Build(#[from] SqlError),
    /// A role was given SUPERUSER, REPLICATION or BYPASSRLS out of band, and the admin, not being a superuser,
    /// cannot take it back.
    #[error(
        "role {role} was given {attributes} out of band; only a superuser can take it back \
         (ALTER ROLE {role} NOSUPERUSER NOREPLICATION NOBYPASSRLS)"
    )]
    NeedsSuperuser {
        /// The role.
        role: String,
        /// The attributes it holds.
        attributes: String,
    },
    /// The server refused or failed a statement. The statement is not shown: it may carry a password verifier.
    #[error("{what}: {source}")]
    Server {
        /// What was being done.
        what: &'static str,
        /// The server's error.
        #[source]
        source: tokio_postgres::Error,
    },
}

impl DbError {
    /// A fixed category for metrics labels and events.
    pub fn category(&self) -> &'static str {
        match self {
            DbError::Build(e) => e.category(),
            DbError::NeedsSuperuser { .. } => "permission",
            DbError::Server { .. } => "database",
        }
    }
}
