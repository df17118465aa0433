//! What the reconciler needs to know about each of its kinds, so one pipeline serves Tenants and Customers.

use std::fmt::Debug;

use bulkhead_crds::v1alpha1::{AcceptedIdentity, Customer, ResourceStatus, Tenant};
use bulkhead_crds::validate::{self, ValidationErrors};
use kube::Resource;
use kube::core::ClusterResourceScope;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A cluster-scoped Bulkhead resource with the shared status.
pub trait Managed:
    Resource<DynamicType = (), Scope = ClusterResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// The controller's name in metrics labels and logs.
    const CONTROLLER: &'static str;

    /// The current status, if any.
    fn current_status(&self) -> Option<&ResourceStatus>;

    /// Validates the spec against the identity accepted earlier and returns the identity to record.
    fn validate(&self, accepted: Option<&AcceptedIdentity>) -> Result<AcceptedIdentity, ValidationErrors>;
}

impl Managed for Tenant {
    const CONTROLLER: &'static str = "tenant";

    fn current_status(&self) -> Option<&ResourceStatus> {
        self.status.as_ref()
    }

    fn validate(&self, accepted: Option<&AcceptedIdentity>) -> Result<AcceptedIdentity, ValidationErrors> {
        let name = self.metadata.name.as_deref().unwrap_or_default();
        validate::tenant(name, &self.spec, accepted)?;
        Ok(merge_identity(accepted, validate::tenant_identity(&self.spec)))
    }
}

impl Managed for Customer {
    const CONTROLLER: &'static str = "customer";

    fn current_status(&self) -> Option<&ResourceStatus> {
        self.status.as_ref()
    }

    fn validate(&self, accepted: Option<&AcceptedIdentity>) -> Result<AcceptedIdentity, ValidationErrors> {
        let name = self.metadata.name.as_deref().unwrap_or_default();
        validate::customer(name, &self.spec, accepted)?;
        Ok(merge_identity(accepted, validate::customer_identity(&self.spec)))
    }
}

/// A database isolation, once recorded, stays recorded even while the database is disabled, so that turning
/// the database off and on cannot be used to switch isolation modes.
fn merge_identity(accepted: Option<&AcceptedIdentity>, mut now: AcceptedIdentity) -> AcceptedIdentity {
    if now.database_isolation.is_none() {
        now.database_isolation = accepted.and_then(|a| a.database_isolation);
    }
    now
}
