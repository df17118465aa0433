//! A converged installation as a [`Snapshot`], built with the operator's own builder: what the API server holds
//! once the operator has provisioned every Tenant and Customer and their stacks run. For the unit tests of the
//! judging modules and for `bench-verify`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use bulkhead_crds::v1alpha1::{Customer, Tenant};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use serde_json::{Value, json};

use super::snapshot::{API_SERVER_SERVICE, SERVICE_NAME_LABEL, Snapshot};
use crate::pipeline::build::{self, NAMESPACE_NAME_LABEL};
use crate::pipeline::managed::{Plan, customer_plan, tenant_plan};
use crate::settings::{PostgresEndpoint, Settings};

/// The gateway configuration the sample's gateway runs with: routes from Tenants and Customers.
pub const GATEWAY_CONFIG: &str = "issuers:\n  - issuer: https://issuer.example\n    algorithms: [RS256]\n    jwks_url: https://issuer.example/jwks.json\nroutes:\n  source: kubernetes\n";

/// The operator's default settings with a Postgres endpoint at 198.18.255.1:5432.
pub fn settings() -> Settings {
    Settings {
        postgres: Some(PostgresEndpoint {
            cidr: "198.18.255.1/32".into(),
            port: 5432,
        }),
        ..Settings::default()
    }
}

/// The API server's address in the sample.
pub const API_SERVER: &str = "198.19.0.1";

/// The `i`th pod address of the sample (198.18.0.0/15, never a private range).
pub fn pod_ip(i: usize) -> IpAddr {
    let i = u32::try_from(i).unwrap_or(u32::MAX);
    IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 1, 1)) + i))
}

/// A Ready status for a resource in `namespace`.
pub fn ready_status(namespace: &str) -> Value {
    let condition = |t: &str| {
        json!({"type": t, "status": "True", "reason": "Provisioned", "message": "",
               "lastTransitionTime": "2026-12-02T00:00:00Z"})
    };
    json!({"namespace": namespace, "conditions": [condition("Ready"), condition("NetworkIsolated"),
        condition("NamespaceReady"), condition("StackReady"), condition("Routable")]})
}

/// A Tenant named `name` with org `org_<name>`, a stack on port 8080 and a Schema database when `database`.
pub fn tenant(name: &str, database: bool) -> Result<Tenant, serde_json::Error> {
    let mut t: Tenant = serde_json::from_value(json!({
        "apiVersion": "bulkhead.dev/v1alpha1", "kind": "Tenant",
        "metadata": {"name": name, "uid": format!("uid-{name}")},
        "spec": {"orgId": format!("org_{name}"),
                 "stack": {"image": "registry.example.com/portal:1.0", "port": 8080, "replicas": 1},
                 "database": {"enabled": database, "isolation": "Schema"}}
    }))?;
    t.status = serde_json::from_value(ready_status(&bulkhead_crds::naming::tenant_namespace(name)))?;
    Ok(t)
}

/// A Customer named `name` of `tenant` with org `org_<name>` and no database.
pub fn customer(name: &str, tenant: &str) -> Result<Customer, serde_json::Error> {
    let mut c: Customer = serde_json::from_value(json!({
        "apiVersion": "bulkhead.dev/v1alpha1", "kind": "Customer",
        "metadata": {"name": name, "uid": format!("uid-{name}")},
        "spec": {"tenantRef": tenant, "orgId": format!("org_{name}"),
                 "quota": {"cpu": "1", "memory": "1Gi", "pods": 5}}
    }))?;
    c.status = serde_json::from_value(ready_status(&bulkhead_crds::naming::customer_namespace(
        tenant, name,
    )))?;
    Ok(c)
}

/// A namespace with the label the API server sets.
pub fn namespace(name: &str, labels: BTreeMap<String, String>) -> Namespace {
    let mut ns = Namespace::default();
    ns.metadata.name = Some(name.to_owned());
    let mut labels = labels;
    labels.insert(NAMESPACE_NAME_LABEL.to_owned(), name.to_owned());
    ns.metadata.labels = Some(labels);
    ns
}

/// A running pod with `labels` at `ip`, declaring `port` (named `http`), as Pod Security `restricted` admits it.
pub fn pod(namespace: &str, name: &str, labels: &BTreeMap<String, String>, ip: IpAddr, port: i32) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                 "containers": [{"name": "c", "image": "registry.example.com/app:1",
                                 "ports": [{"name": "http", "containerPort": port}],
                                 "securityContext": {"allowPrivilegeEscalation": false,
                                                     "capabilities": {"drop": ["ALL"]}}}]},
        "status": {"phase": "Running", "podIP": ip.to_string()}
    }))
    .unwrap_or_default()
}

fn add_subject(s: &mut Snapshot, plan: &Plan, settings: &Settings) {
    let subject = plan.subject(false);
    let desired = build::desired(&subject, settings);
    let name = subject.namespace();
    let mut ns = desired.namespace;
    let mut labels = ns.metadata.labels.take().unwrap_or_default();
    labels.insert(NAMESPACE_NAME_LABEL.to_owned(), name.clone());
    ns.metadata.labels = Some(labels);
    s.namespaces.push(ns);
    s.network_policies.extend(desired.network_policies);
    s.resource_quotas.push(desired.resource_quota);
    s.limit_ranges.push(desired.limit_range);
    s.service_accounts.push(desired.service_account);
    let labels = desired
        .deployment
        .spec
        .as_ref()
        .and_then(|d| d.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let ip = pod_ip(s.pods.len());
    s.pods.push(pod(&name, "stack-0", &labels, ip, plan.stack.port));
    s.deployments.push(desired.deployment);
    s.services.push(desired.service);
}

/// The converged installation of `tenants` and `customers`, with the gateway's and DNS's pods, the API
/// server's EndpointSlice and the gateway's configuration.
pub fn installation(tenants: Vec<Tenant>, customers: Vec<Customer>, settings: &Settings) -> Snapshot {
    let mut s = Snapshot {
        cluster_uid: Some("sample".into()),
        server_version: Some("v1.34.0".into()),
        gateway_config: Some(GATEWAY_CONFIG.into()),
        ..Snapshot::default()
    };
    for t in &tenants {
        add_subject(&mut s, &tenant_plan(t), settings);
    }
    for c in &customers {
        if let Some(t) = tenants
            .iter()
            .find(|t| t.metadata.name.as_deref() == Some(c.spec.tenant_ref.as_str()))
        {
            add_subject(&mut s, &customer_plan(c, t), settings);
        }
    }
    s.tenants = tenants;
    s.customers = customers;
    for (peers, name, port) in [
        (&settings.gateway, "gateway", 8443),
        (&settings.dns, "coredns", 53),
    ] {
        if !s
            .namespaces
            .iter()
            .any(|n| n.metadata.name.as_deref() == Some(peers.namespace.as_str()))
        {
            s.namespaces.push(namespace(&peers.namespace, BTreeMap::new()));
        }
        let ip = pod_ip(s.pods.len());
        s.pods
            .push(pod(&peers.namespace, name, &peers.pod_labels, ip, port));
    }
    s.api_server_endpoints.push(
        serde_json::from_value(json!({
            "metadata": {"name": API_SERVER_SERVICE, "namespace": "default",
                         "labels": {SERVICE_NAME_LABEL: API_SERVER_SERVICE}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [API_SERVER]}],
            "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]
        }))
        .unwrap_or_default(),
    );
    s
}
