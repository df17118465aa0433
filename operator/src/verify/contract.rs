//! The contract per namespace (pure): every object the operator would build for a Tenant or Customer is present
//! with the content it would build, and no NetworkPolicy is there that Bulkhead did not make. The desired objects
//! come from the operator's own builder ([`crate::pipeline::build::desired`]), so this module restates nothing.

use std::collections::{BTreeSet, HashMap};

use bulkhead_crds::labels;
use bulkhead_crds::v1alpha1::{Customer, Tenant};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde_json::{Value, json};

use super::check::{Check, Verdict};
use super::snapshot::Snapshot;
use crate::cluster::diff;
use crate::pipeline::build::{self, Desired};
use crate::pipeline::managed::{Plan, customer_plan, tenant_plan};
use crate::postgres::credentials::REVISION_ANNOTATION;
use crate::settings::Settings;

/// The check ids of this module.
pub mod ids {
    /// The namespace.
    pub const NAMESPACE: &str = "contract.namespace";
    /// One required NetworkPolicy.
    pub const NETWORK_POLICY: &str = "contract.network_policy";
    /// A NetworkPolicy Bulkhead did not make, in a namespace it manages.
    pub const FOREIGN_POLICY: &str = "contract.foreign_network_policy";
    /// The quota, limits, service account, Deployment or Service.
    pub const OBJECT: &str = "contract.object";
    /// A Tenant or Customer whose objects cannot be judged (its Tenant is missing).
    pub const UNJUDGED: &str = "contract.unjudged";
}

/// Objects of one kind by (namespace, name); cluster-scoped ones under the namespace "".
type ByName<'a, K> = HashMap<(&'a str, &'a str), &'a K>;

fn by_name<K: Resource>(objects: &[K]) -> ByName<'_, K> {
    objects
        .iter()
        .map(|o| {
            let meta = o.meta();
            (
                (
                    meta.namespace.as_deref().unwrap_or_default(),
                    meta.name.as_deref().unwrap_or_default(),
                ),
                o,
            )
        })
        .collect()
}

/// The live objects, indexed once: the contract looks each one up by name.
struct Live<'a> {
    namespaces: ByName<'a, k8s_openapi::api::core::v1::Namespace>,
    network_policies: ByName<'a, k8s_openapi::api::networking::v1::NetworkPolicy>,
    policies_by_namespace: HashMap<&'a str, Vec<&'a k8s_openapi::api::networking::v1::NetworkPolicy>>,
    resource_quotas: ByName<'a, k8s_openapi::api::core::v1::ResourceQuota>,
    limit_ranges: ByName<'a, k8s_openapi::api::core::v1::LimitRange>,
    service_accounts: ByName<'a, k8s_openapi::api::core::v1::ServiceAccount>,
    deployments: ByName<'a, k8s_openapi::api::apps::v1::Deployment>,
    services: ByName<'a, k8s_openapi::api::core::v1::Service>,
}

impl<'a> Live<'a> {
    fn new(snapshot: &'a Snapshot) -> Live<'a> {
        let mut policies_by_namespace: HashMap<&str, Vec<_>> = HashMap::new();
        for p in &snapshot.network_policies {
            policies_by_namespace
                .entry(p.meta().namespace.as_deref().unwrap_or_default())
                .or_default()
                .push(p);
        }
        Live {
            namespaces: by_name(&snapshot.namespaces),
            network_policies: by_name(&snapshot.network_policies),
            policies_by_namespace,
            resource_quotas: by_name(&snapshot.resource_quotas),
            limit_ranges: by_name(&snapshot.limit_ranges),
            service_accounts: by_name(&snapshot.service_accounts),
            deployments: by_name(&snapshot.deployments),
            services: by_name(&snapshot.services),
        }
    }
}

/// Whether `live` holds every field of `desired` (the operator's own drift test).
fn holds<K: Serialize>(live: &K, desired: &K) -> bool {
    match (serde_json::to_value(live), serde_json::to_value(desired)) {
        (Ok(l), Ok(d)) => diff::contains(&l, &d),
        _ => false,
    }
}

fn object_check<K: Resource<DynamicType = ()> + Serialize>(
    namespace: &str,
    live: &ByName<'_, K>,
    desired: &K,
) -> Check {
    let kind = K::kind(&()).into_owned();
    let name = desired.name_any();
    let subject = format!("{namespace}/{kind}/{name}");
    let id = if kind == "Namespace" {
        ids::NAMESPACE
    } else {
        ids::OBJECT
    };
    let found = if kind == "Namespace" {
        live.get(&("", namespace))
    } else {
        live.get(&(namespace, name.as_str()))
    };
    match found.copied() {
        None => Check::fail(
            id,
            subject,
            format!("{kind} {name} is missing."),
            json!({"kind": kind, "name": name, "namespace": namespace}),
        ),
        Some(l) if holds(l, desired) => Check::pass(id, subject, format!("{kind} {name} is as built.")),
        Some(_) => Check::fail(
            id,
            subject,
            format!("{kind} {name} differs from what the operator builds."),
            json!({"kind": kind, "name": name, "namespace": namespace,
                   "desired": serde_json::to_value(desired).unwrap_or(Value::Null)}),
        ),
    }
}

/// The checks for one Tenant or Customer.
fn subject_checks(live: &Live<'_>, settings: &Settings, plan: &mut Plan, out: &mut Vec<Check>) {
    let namespace = plan.subject(false).namespace();
    // The credentials revision is the operator's record of the last rotation: taken from the live template.
    plan.credentials_revision = live
        .deployments
        .get(&(namespace.as_str(), build::STACK))
        .and_then(|d| d.spec.as_ref())
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(REVISION_ANNOTATION).cloned());
    let Desired {
        namespace: desired_namespace,
        network_policies,
        resource_quota,
        limit_range,
        service_account,
        deployment,
        service,
    } = build::desired(&plan.subject(false), settings);
    out.push(object_check(&namespace, &live.namespaces, &desired_namespace));
    let mut wanted = BTreeSet::new();
    for desired in &network_policies {
        let name = desired.name_any();
        wanted.insert(name.clone());
        let subject = format!("{namespace}/NetworkPolicy/{name}");
        out.push(
            match live.network_policies.get(&(namespace.as_str(), name.as_str())) {
                None => Check::fail(
                    ids::NETWORK_POLICY,
                    subject,
                    format!("NetworkPolicy {name} is missing."),
                    json!({"namespace": namespace, "name": name}),
                ),
                // The operator replaces a policy's spec whole, so only an exact match is the contract.
                Some(live) if live.spec == desired.spec => Check::pass(
                    ids::NETWORK_POLICY,
                    subject,
                    format!("NetworkPolicy {name} is as built."),
                ),
                Some(live) => Check::fail(
                    ids::NETWORK_POLICY,
                    subject,
                    format!("NetworkPolicy {name} differs from what the operator builds."),
                    json!({"namespace": namespace, "name": name, "live": live.spec, "desired": desired.spec}),
                ),
            },
        );
    }
    for live in live
        .policies_by_namespace
        .get(namespace.as_str())
        .into_iter()
        .flatten()
        .filter(|p| !wanted.contains(&p.name_any()))
    {
        let name = live.name_any();
        out.push(Check::fail(
            ids::FOREIGN_POLICY,
            format!("{namespace}/NetworkPolicy/{name}"),
            format!("NetworkPolicy {name} was not made by Bulkhead; in a namespace Bulkhead manages it can only open flows."),
            json!({"namespace": namespace, "name": name, "spec": live.spec}),
        ));
    }
    out.push(object_check(&namespace, &live.resource_quotas, &resource_quota));
    out.push(object_check(&namespace, &live.limit_ranges, &limit_range));
    out.push(object_check(&namespace, &live.service_accounts, &service_account));
    out.push(object_check(&namespace, &live.deployments, &deployment));
    out.push(object_check(&namespace, &live.services, &service));
}

/// Whether a resource is provisioned at all: refused resources (invalid, conflicts, no quota left) and deleted
/// ones get nothing, so there is nothing to hold against the contract.
fn provisioned<K: Resource>(object: &K, status: Option<&bulkhead_crds::v1alpha1::ResourceStatus>) -> bool {
    object.meta().deletion_timestamp.is_none()
        && status.is_some_and(|s| {
            s.conditions.iter().any(|c| {
                c.type_ == crate::pipeline::conditions::types::NETWORK_ISOLATED && c.status == "True"
            })
        })
}

/// Every contract check.
pub fn evaluate(snapshot: &Snapshot, settings: &Settings) -> Vec<Check> {
    let mut out = Vec::new();
    let live = Live::new(snapshot);
    let tenants: HashMap<String, &Tenant> = snapshot.tenants.iter().map(|t| (t.name_any(), t)).collect();
    for tenant in &snapshot.tenants {
        if provisioned(tenant, tenant.status.as_ref()) {
            subject_checks(&live, settings, &mut tenant_plan(tenant), &mut out);
        }
    }
    for customer in &snapshot.customers {
        if !provisioned(customer, customer.status.as_ref()) {
            continue;
        }
        match tenants.get(&customer.spec.tenant_ref) {
            Some(tenant) => subject_checks(&live, settings, &mut customer_plan(customer, tenant), &mut out),
            None => out.push(Check::new(
                ids::UNJUDGED,
                customer.name_any(),
                Verdict::Warn,
                format!(
                    "Customer {} is provisioned but its Tenant {} is gone, so its objects cannot be rebuilt to compare.",
                    customer.name_any(),
                    customer.spec.tenant_ref
                ),
                Value::Null,
            )),
        }
    }
    // A namespace Bulkhead retained after its resource was deleted keeps its default deny.
    let live_subjects: BTreeSet<String> =
        snapshot
            .tenants
            .iter()
            .map(|t| bulkhead_crds::naming::tenant_namespace(&t.name_any()))
            .chain(snapshot.customers.iter().map(|c: &Customer| {
                bulkhead_crds::naming::customer_namespace(&c.spec.tenant_ref, &c.name_any())
            }))
            .collect();
    for ns in &snapshot.namespaces {
        let l = ns.labels();
        let name = ns.name_any();
        if l.get(labels::MANAGED_BY).map(String::as_str) != Some(labels::MANAGED_BY_VALUE)
            || live_subjects.contains(&name)
        {
            continue;
        }
        let subject = format!("{name}/NetworkPolicy/{}", build::policy::DEFAULT_DENY);
        let deny = live
            .network_policies
            .get(&(name.as_str(), build::policy::DEFAULT_DENY))
            .copied();
        let intact = deny.is_some_and(|p| {
            p.spec.as_ref().is_some_and(|s| {
                s.ingress.as_ref().is_none_or(Vec::is_empty)
                    && s.egress.as_ref().is_none_or(Vec::is_empty)
                    && s.pod_selector
                        .as_ref()
                        .is_none_or(|p| p.match_labels.is_none() && p.match_expressions.is_none())
                    && s.policy_types.as_ref().is_some_and(|t| t.len() == 2)
            })
        });
        out.push(if intact {
            Check::pass(
                ids::NETWORK_POLICY,
                subject,
                "A retained namespace whose resource is gone keeps its default deny.",
            )
        } else {
            Check::fail(
                ids::NETWORK_POLICY,
                subject,
                "A namespace Bulkhead manages, whose resource is gone, has lost its default deny.",
                json!({"namespace": name}),
            )
        });
    }
    out
}
