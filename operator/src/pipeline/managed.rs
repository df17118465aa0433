//! What differs between Tenants and Customers, so that one reconcile pipeline serves both.

use std::fmt::Debug;

use bulkhead_crds::v1alpha1::{
    AcceptedIdentity, Customer, DatabaseSpec, DeletionPolicy, EgressRule, QuotaSpec, ResourceStatus,
    StackSpec, Tenant,
};
use bulkhead_crds::validate::{self, ValidationErrors};
use kube::core::ClusterResourceScope;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cluster::observe::Owner;
use crate::pipeline::build::Subject;
use crate::pipeline::conditions::{reasons, types};
use crate::pipeline::conflicts::{self, Claim};
use crate::pipeline::context::Context;
use crate::pipeline::outcome::Outcome;

/// Everything needed to build a subject's objects, resolved from the resource (and, for a Customer, its
/// Tenant).
#[derive(Debug, Clone)]
pub struct Plan {
    /// The Tenant's name.
    pub tenant: String,
    /// The Customer's name, for a Customer.
    pub customer: Option<String>,
    /// The resource's UID.
    pub uid: String,
    /// The stack to run.
    pub stack: StackSpec,
    /// The namespace's quota.
    pub quota: QuotaSpec,
    /// Extra egress destinations.
    pub egress: Vec<EgressRule>,
    /// The database wanted.
    pub database: DatabaseSpec,
    /// The password rotation carried out by this reconcile or earlier (see `postgres::credentials`).
    pub credentials_revision: Option<String>,
}

impl Plan {
    /// The builder's view of this plan.
    pub fn subject(&self, retired: bool) -> Subject<'_> {
        Subject {
            tenant: &self.tenant,
            customer: self.customer.as_deref(),
            uid: &self.uid,
            stack: &self.stack,
            quota: &self.quota,
            egress: &self.egress,
            database_enabled: self.database.enabled,
            database_server: self.database.server.as_deref(),
            credentials_revision: self.credentials_revision.as_deref(),
            retired,
        }
    }
}

/// What to build for a Tenant (pure).
pub fn tenant_plan(tenant: &Tenant) -> Plan {
    Plan {
        tenant: tenant.name_any(),
        customer: None,
        uid: tenant.uid().unwrap_or_default(),
        stack: tenant.spec.stack.clone(),
        quota: tenant.spec.quota.clone(),
        egress: tenant.spec.network.allow_egress.clone(),
        database: tenant.spec.database.clone(),
        credentials_revision: None,
    }
}

/// What to build for a Customer of `tenant` (pure): its own stack or else the Tenant's, the Tenant's egress,
/// its own PostgreSQL server or else the Tenant's.
pub fn customer_plan(customer: &Customer, tenant: &Tenant) -> Plan {
    Plan {
        tenant: customer.spec.tenant_ref.clone(),
        customer: Some(customer.name_any()),
        uid: customer.uid().unwrap_or_default(),
        stack: customer
            .spec
            .stack
            .clone()
            .unwrap_or_else(|| tenant.spec.stack.clone()),
        quota: customer.spec.quota.clone(),
        egress: tenant.spec.network.allow_egress.clone(),
        database: DatabaseSpec {
            server: (customer.spec.database.server.clone()).or_else(|| tenant.spec.database.server.clone()),
            ..customer.spec.database.clone()
        },
        credentials_revision: None,
    }
}

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
    /// The kind, for messages.
    const KIND: &'static str;

    /// The current status, if any.
    fn current_status(&self) -> Option<&ResourceStatus>;

    /// The org id the spec claims.
    fn org_id(&self) -> &str;

    /// What to do with the namespace and data on deletion.
    fn deletion_policy(&self) -> DeletionPolicy;

    /// Validates the spec against the identity accepted earlier and returns the identity to record.
    fn validate(&self, accepted: Option<&AcceptedIdentity>) -> Result<AcceptedIdentity, ValidationErrors>;

    /// Resolves what to build, or the reason it cannot be built yet.
    fn plan(&self, ctx: &Context) -> Result<Plan, Outcome>;

    /// The Tenant and Customer names used to derive the namespace, even when `plan` fails.
    fn owner_names(&self) -> (String, Option<String>);

    /// Why deletion must wait, if it must.
    fn deletion_blocker(&self, ctx: &Context) -> Option<String>;

    /// The owner, as the triggers name it.
    fn owner(&self) -> Owner;
}

/// The older resource holding `org`, when it is not `(kind, name)`. Only the resources claiming the same org id
/// are looked at (through the index), so the cost does not grow with the number of resources.
pub fn org_conflict<K: Managed>(ctx: &Context, object: &K) -> Option<String> {
    let name = object.name_any();
    // This object as it is now, not as the cache may still have it.
    let me = Claim {
        kind: K::KIND,
        name: &name,
        org: object.org_id(),
        created: object.meta().creation_timestamp.as_ref(),
    };
    let mut tenants = Vec::new();
    let mut customers = Vec::new();
    for owner in ctx.resources.claims(object.org_id()) {
        match owner {
            Owner::Tenant(n) => tenants.extend(ctx.tenants.get(&ObjectRef::new(&n))),
            Owner::Customer(n) => customers.extend(ctx.customers.get(&ObjectRef::new(&n))),
        }
    }
    let mut all: Vec<Claim<'_>> = vec![me.clone()];
    for t in tenants.iter().filter(|t| t.meta().deletion_timestamp.is_none()) {
        all.push(Claim {
            kind: "Tenant",
            name: t.meta().name.as_deref().unwrap_or_default(),
            org: &t.spec.org_id,
            created: t.meta().creation_timestamp.as_ref(),
        });
    }
    for c in customers.iter().filter(|c| c.meta().deletion_timestamp.is_none()) {
        all.push(Claim {
            kind: "Customer",
            name: c.meta().name.as_deref().unwrap_or_default(),
            org: &c.spec.org_id,
            created: c.meta().creation_timestamp.as_ref(),
        });
    }
    // Drop the cache's copy of this object; `me` stands for it.
    let mut seen_self = false;
    all.retain(|c| {
        let is_self = c.kind == K::KIND && c.name == name;
        let keep = !is_self || !seen_self;
        seen_self |= is_self;
        keep
    });
    conflicts::org_holder(&me, &all).map(Claim::describe)
}

/// The cached Customers of `tenant`, found through the index.
fn customers_of(ctx: &Context, tenant: &str) -> Vec<std::sync::Arc<Customer>> {
    ctx.resources
        .customers_of(tenant)
        .iter()
        .filter_map(|name| ctx.customers.get(&ObjectRef::new(name)))
        .collect()
}

/// Whether a Customer counts against its Tenant's quota: every one that is not being deleted and was not
/// refused (a refused Customer gets nothing provisioned).
fn holds_quota(customer: &Customer) -> bool {
    let refused = [
        reasons::INVALID,
        reasons::ORG_ID_CONFLICT,
        reasons::QUOTA_EXCEEDED,
        reasons::NAMESPACE_CONFLICT,
    ];
    let reason = customer
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == types::READY))
        .map(|c| c.reason.as_str());
    customer.meta().deletion_timestamp.is_none() && !reason.is_some_and(|r| refused.contains(&r))
}

/// A Tenant is ready for its Customers once its own namespace and isolation are in place. Its stack's health
/// does not matter: a Tenant's rollout must never take its Customers offline.
fn is_provisioned(status: Option<&ResourceStatus>) -> bool {
    status.is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == types::NETWORK_ISOLATED && c.status == "True")
    })
}

impl Managed for Tenant {
    const CONTROLLER: &'static str = "tenant";
    const KIND: &'static str = "Tenant";

    fn owner(&self) -> Owner {
        Owner::Tenant(self.name_any())
    }

    fn current_status(&self) -> Option<&ResourceStatus> {
        self.status.as_ref()
    }

    fn org_id(&self) -> &str {
        &self.spec.org_id
    }

    fn deletion_policy(&self) -> DeletionPolicy {
        self.spec.deletion_policy
    }

    fn validate(&self, accepted: Option<&AcceptedIdentity>) -> Result<AcceptedIdentity, ValidationErrors> {
        validate::tenant(&self.name_any(), &self.spec, accepted)?;
        Ok(merge_identity(accepted, validate::tenant_identity(&self.spec)))
    }

    fn plan(&self, _ctx: &Context) -> Result<Plan, Outcome> {
        Ok(tenant_plan(self))
    }

    fn owner_names(&self) -> (String, Option<String>) {
        (self.name_any(), None)
    }

    fn deletion_blocker(&self, ctx: &Context) -> Option<String> {
        let name = self.name_any();
        let mut waiting: Vec<String> = customers_of(ctx, &name)
            .iter()
            .filter(|c| c.spec.tenant_ref == name)
            .map(|c| c.name_any())
            .collect();
        if waiting.is_empty() {
            return None;
        }
        waiting.sort();
        Some(format!(
            "Deletion waits until this Tenant's Customers are deleted: {}.",
            waiting.join(", ")
        ))
    }
}

impl Managed for Customer {
    const CONTROLLER: &'static str = "customer";
    const KIND: &'static str = "Customer";

    fn owner(&self) -> Owner {
        Owner::Customer(self.name_any())
    }

    fn current_status(&self) -> Option<&ResourceStatus> {
        self.status.as_ref()
    }

    fn org_id(&self) -> &str {
        &self.spec.org_id
    }

    fn deletion_policy(&self) -> DeletionPolicy {
        self.spec.deletion_policy
    }

    fn validate(&self, accepted: Option<&AcceptedIdentity>) -> Result<AcceptedIdentity, ValidationErrors> {
        validate::customer(&self.name_any(), &self.spec, accepted)?;
        Ok(merge_identity(accepted, validate::customer_identity(&self.spec)))
    }

    fn plan(&self, ctx: &Context) -> Result<Plan, Outcome> {
        let tenant_name = self.spec.tenant_ref.clone();
        let Some(tenant) = ctx
            .tenants
            .get(&kube::runtime::reflector::ObjectRef::new(&tenant_name))
        else {
            return Err(Outcome::TenantMissing { tenant: tenant_name });
        };
        if tenant.meta().deletion_timestamp.is_some() || !is_provisioned(tenant.status.as_ref()) {
            return Err(Outcome::TenantNotReady { tenant: tenant_name });
        }
        // Older siblings claim their share of the Tenant's quota first.
        let me = (
            self.meta().creation_timestamp.as_ref().map(|t| t.0.as_second()),
            self.name_any(),
        );
        let siblings = customers_of(ctx, &tenant_name);
        let older: Vec<&QuotaSpec> = siblings
            .iter()
            .filter(|c| c.spec.tenant_ref == tenant_name && holds_quota(c))
            .filter(|c| {
                (
                    c.meta().creation_timestamp.as_ref().map(|t| t.0.as_second()),
                    c.name_any(),
                ) < me
            })
            .map(|c| &c.spec.quota)
            .collect();
        conflicts::quota_fits(&tenant.spec.quota, &older, &self.spec.quota)
            .map_err(Outcome::QuotaExceeded)?;
        Ok(customer_plan(self, &tenant))
    }

    fn owner_names(&self) -> (String, Option<String>) {
        (self.spec.tenant_ref.clone(), Some(self.name_any()))
    }

    fn deletion_blocker(&self, _ctx: &Context) -> Option<String> {
        None
    }
}

/// A database isolation and server, once recorded, stay recorded even while the database is disabled, so that
/// turning the database off and on cannot be used to switch isolation modes or servers.
fn merge_identity(accepted: Option<&AcceptedIdentity>, mut now: AcceptedIdentity) -> AcceptedIdentity {
    if now.database_isolation.is_none() {
        now.database_isolation = accepted.and_then(|a| a.database_isolation);
        now.database_server = accepted.and_then(|a| a.database_server.clone());
    }
    now
}
