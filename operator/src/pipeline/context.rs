//! What every step of the pipeline shares: the controllers' context and how soon an object is looked at again.

use std::sync::Arc;
use std::time::Duration;

use bulkhead_crds::v1alpha1::{Customer, ResourceStatus, Tenant};
use kube::Client;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::Store;

use crate::cluster::echo::{Echoes, Superseded};
use crate::cluster::index::Resources;
use crate::cluster::observe::{Owner, Stores};
use crate::cluster::pace::Pacer;
use crate::metrics::Metrics;
use crate::pipeline::database::handle::Database;
use crate::settings::Settings;

/// How often a converged object is looked at again even without a change (a safety net, not the trigger).
pub const RESYNC: Duration = Duration::from_secs(300);
/// How soon a resource that waits on something outside itself (its Tenant, a conflict) is looked at again.
pub const WAIT: Duration = Duration::from_secs(10);

/// Shared state of the controllers.
pub struct Context {
    /// The API client, under the operator's own identity.
    pub client: Client,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
    /// Where the gateway, DNS and Postgres are.
    pub settings: Settings,
    /// Caches of the managed objects.
    pub stores: Stores,
    /// Cache of all Tenants.
    pub tenants: Store<Tenant>,
    /// Cache of all Customers.
    pub customers: Store<Customer>,
    /// Who claims which org id, and each Tenant's Customers.
    pub resources: Resources,
    /// Publishes Events.
    pub recorder: Recorder,
    /// The shared PostgreSQL server, when database provisioning is configured.
    pub database: Option<Database>,
    /// The paced full pass, told when each reconcile ends.
    pub pass: Arc<Pacer<Owner>>,
    /// The versions of Tenants and Customers (by uid) that the operator's own writes produced.
    pub echoes: Echoes,
    /// The status last written over a version of a Tenant or Customer (by uid), until the watch brings it.
    pub statuses: Superseded<ResourceStatus>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}
