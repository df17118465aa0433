//! What the steps of a reconcile concluded: the stack's rollout, the database's state and the outcome that
//! the status is computed from. Shared types of the pipeline, below every step.

use k8s_openapi::api::apps::v1::Deployment;

use crate::pipeline::conditions::reasons;

/// How the stack's rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stack {
    /// Every desired replica is updated and available (or zero replicas are desired).
    Available {
        /// Replicas desired.
        replicas: i32,
    },
    /// The rollout has not finished.
    RollingOut {
        /// Replicas available.
        available: i32,
        /// Replicas desired.
        replicas: i32,
    },
}

impl Stack {
    /// Reads a Deployment's rollout state.
    pub fn of(deployment: &Deployment) -> Stack {
        let replicas = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let status = deployment.status.clone().unwrap_or_default();
        let current = status.observed_generation.unwrap_or(0) >= deployment.metadata.generation.unwrap_or(0);
        let available = status.available_replicas.unwrap_or(0);
        let updated = status.updated_replicas.unwrap_or(0);
        if replicas == 0 || (current && available >= replicas && updated >= replicas) {
            Stack::Available { replicas }
        } else {
            Stack::RollingOut { available, replicas }
        }
    }
}

/// What a reconcile concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The spec was refused; nothing was changed.
    Invalid(String),
    /// Another, older resource holds the org id.
    OrgIdConflict {
        /// `Kind/name` of the holder.
        holder: String,
    },
    /// The namespace exists and is not ours.
    NamespaceConflict {
        /// The namespace.
        namespace: String,
        /// Why it is not ours.
        detail: String,
    },
    /// The namespace is being deleted; provisioning waits.
    NamespaceTerminating {
        /// The namespace.
        namespace: String,
    },
    /// A Customer's Tenant does not exist.
    TenantMissing {
        /// The Tenant's name.
        tenant: String,
    },
    /// A Customer's Tenant is not Ready.
    TenantNotReady {
        /// The Tenant's name.
        tenant: String,
    },
    /// A Customer's quota does not fit its Tenant's remaining quota.
    QuotaExceeded(String),
    /// Everything was applied.
    Provisioned {
        /// The namespace.
        namespace: String,
        /// The NetworkPolicies in force.
        policies: Vec<String>,
        /// The stack's rollout.
        stack: Stack,
        /// The database, when enabled.
        database: Option<DatabaseState>,
    },
    /// The resource is being deleted and cleanup is waiting.
    Deleting(String),
}

impl Outcome {
    /// The `Ready` reason this outcome leads to.
    pub fn reason(&self) -> &'static str {
        match self {
            Outcome::Invalid(_) => reasons::INVALID,
            Outcome::OrgIdConflict { .. } => reasons::ORG_ID_CONFLICT,
            Outcome::NamespaceConflict { .. } => reasons::NAMESPACE_CONFLICT,
            Outcome::NamespaceTerminating { .. } => reasons::NAMESPACE_TERMINATING,
            Outcome::TenantMissing { .. } => reasons::TENANT_MISSING,
            Outcome::TenantNotReady { .. } => reasons::TENANT_NOT_READY,
            Outcome::QuotaExceeded(_) => reasons::QUOTA_EXCEEDED,
            Outcome::Provisioned {
                database: Some(DatabaseState::NotReady { .. }),
                ..
            } => reasons::DATABASE_NOT_READY,
            Outcome::Provisioned {
                stack: Stack::Available { .. },
                ..
            } => reasons::PROVISIONED,
            Outcome::Provisioned { .. } => reasons::STACK_NOT_READY,
            Outcome::Deleting(_) => reasons::DELETING,
        }
    }
}

/// How the database of one resource stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseState {
    /// In place.
    Ready(String),
    /// Not in place, with a `DatabaseReady` reason and an actionable message.
    NotReady {
        /// The condition reason.
        reason: &'static str,
        /// What is wrong and what to do.
        message: String,
    },
}
