//! Bulkhead installed into the local cluster from its images: the operator and the gateway as Deployments in
//! `bulkhead-system`, each under its own ServiceAccount with only the rights it needs.
//!
//! - The operator runs under the chart's RBAC (`charts/bulkhead/templates/operator-rbac.yaml`, rendered for its
//!   namespace), and is told where the gateway's pods, cluster DNS and PostgreSQL are, so that the
//!   NetworkPolicies it writes open exactly those flows.
//! - The gateway may get, list and watch Tenants and Customers and nothing else; its configuration (issuer,
//!   public key, routes from the cluster) is a ConfigMap. Its pods carry exactly the labels the operator's
//!   `bulkhead-allow-gateway` policies admit, and a Service puts them behind one ClusterIP.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bulkhead_operator::process::rbac;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding, Subject};
use kube::api::{Api, ListParams, LogParams};
use kube::{Client, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::HarnessError;
use crate::control_plane::FIELD_MANAGER;

/// Bulkhead's namespace: the operator, the gateway and the database admin Secret.
pub const NAMESPACE: &str = "bulkhead-system";
/// The operator's Deployment and ServiceAccount.
pub const OPERATOR: &str = "bulkhead-operator";
/// The gateway's Deployment, Service, ServiceAccount, ClusterRole and ConfigMap.
pub const GATEWAY: &str = "bulkhead-gateway";
/// The gateway's proxy port (pod and Service).
pub const GATEWAY_PORT: u16 = 8443;
/// The gateway's admin port: `/livez`, `/readyz`, `/metrics`.
pub const GATEWAY_ADMIN_PORT: u16 = 9090;
/// The operator's admin port: `/livez`, `/readyz`, `/metrics`.
pub const OPERATOR_ADMIN_PORT: u16 = 8080;
/// The Secret holding the database admin DSN, in [`NAMESPACE`].
pub const POSTGRES_ADMIN_SECRET: &str = "postgres-admin";
/// Where the gateway's ConfigMap is mounted.
pub const GATEWAY_CONFIG_DIR: &str = "/etc/bulkhead";

const CHART_RBAC: &str = include_str!("../../charts/bulkhead/templates/operator-rbac.yaml");
const RELEASE_NAMESPACE: &str = "{{ .Release.Namespace }}";

/// Where stacks reach PostgreSQL, and the admin DSN the operator provisions with.
#[derive(Clone)]
pub struct Database {
    /// The server's address as pods reach it.
    pub host: Ipv4Addr,
    /// Its port.
    pub port: u16,
    /// The admin DSN (a secret: never printed).
    pub admin_dsn: String,
}

impl Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("admin_dsn", &"<redacted>")
            .finish()
    }
}

/// The pods the operator's policies name: the gateway's (from the operator's defaults, which are also what the
/// gateway's Deployment here labels its pods with) and cluster DNS's.
fn peers() -> bulkhead_operator::settings::Settings {
    bulkhead_operator::settings::Settings::default()
}

fn labels_flag(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The gateway pods' labels, as `key=value,…`: what `--gateway-pod-labels` tells the operator.
pub fn gateway_pod_labels() -> String {
    labels_flag(&peers().gateway.pod_labels)
}

/// The operator's command line in its pod.
pub fn operator_args(database: Option<&Database>) -> Vec<String> {
    let peers = peers();
    let mut args: Vec<String> = vec![
        "run".into(),
        "--log-format".into(),
        "plain".into(),
        "--admin-addr".into(),
        format!("0.0.0.0:{OPERATOR_ADMIN_PORT}"),
        "--gateway-namespace".into(),
        NAMESPACE.into(),
        "--gateway-pod-labels".into(),
        gateway_pod_labels(),
        "--dns-namespace".into(),
        peers.dns.namespace.clone(),
        "--dns-pod-labels".into(),
        labels_flag(&peers.dns.pod_labels),
    ];
    if let Some(db) = database {
        args.extend([
            "--postgres-admin-secret".into(),
            format!("{NAMESPACE}/{POSTGRES_ADMIN_SECRET}"),
            "--postgres-cidr".into(),
            format!("{}/32", db.host),
            "--postgres-host".into(),
            db.host.to_string(),
            "--postgres-port".into(),
            db.port.to_string(),
            "--postgres-connection-reserve".into(),
            bulkhead_operator::settings::DEFAULT_CONNECTION_RESERVE.to_string(),
        ]);
    }
    args
}

async fn apply<K>(api: &Api<K>, value: serde_json::Value) -> Result<(), HarnessError>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + Debug,
{
    crate::apply::value_as(api, value, FIELD_MANAGER).await.map(drop)
}

fn component_labels(component: &str) -> serde_json::Value {
    json!({"app.kubernetes.io/name": "bulkhead", "app.kubernetes.io/component": component})
}

/// The security context of both containers: what Pod Security `restricted` asks for.
fn restricted() -> serde_json::Value {
    json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

/// Creates Bulkhead's namespace, where Pod Security `restricted` is enforced like in the tenants' namespaces.
pub async fn namespace(client: &Client) -> Result<(), HarnessError> {
    apply(
        &Api::<Namespace>::all(client.clone()),
        json!({"metadata": {
            "name": NAMESPACE,
            "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/warn": "restricted",
            },
        }}),
    )
    .await
}

/// Stores the database admin DSN in the Secret the operator is pointed at, and lets the operator's ServiceAccount
/// read it by name (the chart's Role `bulkhead-operator-postgres-admin`).
pub async fn postgres_admin_secret(client: &Client, database: &Database) -> Result<(), HarnessError> {
    apply(
        &Api::<Secret>::namespaced(client.clone(), NAMESPACE),
        json!({
            "metadata": {"name": POSTGRES_ADMIN_SECRET, "namespace": NAMESPACE},
            "stringData": {"dsn": database.admin_dsn},
        }),
    )
    .await?;
    let encode = |e: serde_json::Error| HarnessError::Manifest(e.to_string());
    let account = Subject {
        kind: "ServiceAccount".into(),
        name: OPERATOR.into(),
        namespace: Some(NAMESPACE.into()),
        api_group: None,
    };
    apply(
        &Api::<Role>::namespaced(client.clone(), NAMESPACE),
        serde_json::to_value(rbac::admin_secret_role(NAMESPACE, POSTGRES_ADMIN_SECRET)).map_err(encode)?,
    )
    .await?;
    apply(
        &Api::<RoleBinding>::namespaced(client.clone(), NAMESPACE),
        serde_json::to_value(rbac::admin_secret_binding(NAMESPACE, account)).map_err(encode)?,
    )
    .await
}

/// The chart's operator RBAC with the release namespace filled in.
pub fn operator_rbac_yaml() -> Result<String, HarnessError> {
    let rendered = CHART_RBAC.replace(RELEASE_NAMESPACE, NAMESPACE);
    if rendered.contains("{{") {
        return Err(HarnessError::Manifest(
            "charts/bulkhead/templates/operator-rbac.yaml has template expressions besides the release namespace"
                .into(),
        ));
    }
    Ok(rendered)
}

/// The operator's ServiceAccount, the chart's RBAC bound to it, and its Deployment running `image`.
pub async fn operator(client: &Client, image: &str, database: Option<&Database>) -> Result<(), HarnessError> {
    apply(
        &Api::<ServiceAccount>::namespaced(client.clone(), NAMESPACE),
        json!({"metadata": {"name": OPERATOR, "namespace": NAMESPACE, "labels": component_labels("operator")}}),
    )
    .await?;
    crate::apply::apply_texts(
        client,
        &[(
            "charts/bulkhead/templates/operator-rbac.yaml".into(),
            operator_rbac_yaml()?,
        )],
    )
    .await?;
    let labels = component_labels("operator");
    apply(
        &Api::<Deployment>::namespaced(client.clone(), NAMESPACE),
        json!({
            "metadata": {"name": OPERATOR, "namespace": NAMESPACE, "labels": labels},
            "spec": {
                "replicas": 1,
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": OPERATOR,
                        "enableServiceLinks": false,
                        "terminationGracePeriodSeconds": 10,
                        "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                        "containers": [{
                            "name": "operator",
                            "image": image,
                            "imagePullPolicy": "Never",
                            "args": operator_args(database),
                            "env": [
                                {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                            ],
                            "ports": [{"name": "admin", "containerPort": OPERATOR_ADMIN_PORT}],
                            "readinessProbe": {
                                "httpGet": {"path": "/readyz", "port": "admin"},
                                "periodSeconds": 2,
                            },
                            "resources": {
                                "requests": {"cpu": "50m", "memory": "64Mi"},
                                "limits": {"memory": "256Mi"},
                            },
                            "securityContext": restricted(),
                        }],
                    },
                },
            },
        }),
    )
    .await
}

/// The gateway's ServiceAccount (get, list and watch Tenants and Customers, nothing else), its ConfigMap
/// (`config` as `gateway.yaml`, the issuer's public key), its Deployment running `image` and its Service.
pub async fn gateway(
    client: &Client,
    image: &str,
    config: &str,
    public_key_pem: &str,
) -> Result<(), HarnessError> {
    let labels = component_labels("gateway");
    apply(
        &Api::<ServiceAccount>::namespaced(client.clone(), NAMESPACE),
        json!({"metadata": {"name": GATEWAY, "namespace": NAMESPACE, "labels": labels}}),
    )
    .await?;
    apply(
        &Api::<ClusterRole>::all(client.clone()),
        json!({
            "metadata": {"name": GATEWAY, "labels": labels},
            "rules": [{
                "apiGroups": ["bulkhead.dev"],
                "resources": ["tenants", "customers"],
                "verbs": ["get", "list", "watch"],
            }],
        }),
    )
    .await?;
    apply(
        &Api::<ClusterRoleBinding>::all(client.clone()),
        json!({
            "metadata": {"name": GATEWAY, "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": GATEWAY},
            "subjects": [{"kind": "ServiceAccount", "name": GATEWAY, "namespace": NAMESPACE}],
        }),
    )
    .await?;
    apply(
        &Api::<ConfigMap>::namespaced(client.clone(), NAMESPACE),
        json!({
            "metadata": {"name": GATEWAY, "namespace": NAMESPACE, "labels": labels},
            "data": {"gateway.yaml": config, crate::gateway::PUBLIC_KEY_FILE: public_key_pem},
        }),
    )
    .await?;
    // The pods carry exactly the labels the operator's policies admit (its default, passed to it explicitly).
    let pod_labels = serde_json::to_value(&peers().gateway.pod_labels)
        .map_err(|e| HarnessError::Manifest(e.to_string()))?;
    apply(
        &Api::<Deployment>::namespaced(client.clone(), NAMESPACE),
        json!({
            "metadata": {"name": GATEWAY, "namespace": NAMESPACE, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": pod_labels},
                "template": {
                    "metadata": {"labels": pod_labels},
                    "spec": {
                        "serviceAccountName": GATEWAY,
                        "enableServiceLinks": false,
                        "terminationGracePeriodSeconds": 10,
                        "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                        "containers": [{
                            "name": "gateway",
                            "image": image,
                            "imagePullPolicy": "Never",
                            "args": ["run", "--log-format", "plain", "--config", format!("{GATEWAY_CONFIG_DIR}/gateway.yaml")],
                            "ports": [
                                {"name": "proxy", "containerPort": GATEWAY_PORT},
                                {"name": "admin", "containerPort": GATEWAY_ADMIN_PORT},
                            ],
                            "readinessProbe": {
                                "httpGet": {"path": "/readyz", "port": "admin"},
                                "periodSeconds": 2,
                            },
                            "resources": {
                                "requests": {"cpu": "50m", "memory": "64Mi"},
                                "limits": {"memory": "256Mi"},
                            },
                            "securityContext": restricted(),
                            "volumeMounts": [{"name": "config", "mountPath": GATEWAY_CONFIG_DIR, "readOnly": true}],
                        }],
                        "volumes": [{"name": "config", "configMap": {"name": GATEWAY}}],
                    },
                },
            },
        }),
    )
    .await?;
    apply(
        &Api::<Service>::namespaced(client.clone(), NAMESPACE),
        json!({
            "metadata": {"name": GATEWAY, "namespace": NAMESPACE, "labels": labels},
            "spec": {
                "type": "ClusterIP",
                "selector": pod_labels,
                "ports": [
                    {"name": "proxy", "port": GATEWAY_PORT, "targetPort": "proxy"},
                    {"name": "admin", "port": GATEWAY_ADMIN_PORT, "targetPort": "admin"},
                ],
            },
        }),
    )
    .await
}

/// The gateway Service's ClusterIP and proxy port (the host routes the Service range to the node).
pub async fn gateway_address(client: &Client) -> Result<SocketAddr, HarnessError> {
    let service = Api::<Service>::namespaced(client.clone(), NAMESPACE)
        .get(GATEWAY)
        .await
        .map_err(|source| HarnessError::Api {
            what: format!("reading Service {NAMESPACE}/{GATEWAY}"),
            source,
        })?;
    let ip = service
        .spec
        .and_then(|s| s.cluster_ip)
        .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
        .ok_or_else(|| HarnessError::Manifest(format!("Service {NAMESPACE}/{GATEWAY} has no ClusterIP")))?;
    Ok(SocketAddr::from((ip, GATEWAY_PORT)))
}

/// Waits until the Deployment `name` in [`NAMESPACE`] has all its replicas available.
pub async fn wait_available(client: &Client, name: &str, timeout: Duration) -> Result<(), HarnessError> {
    let api = Api::<Deployment>::namespaced(client.clone(), NAMESPACE);
    crate::wait::until(
        timeout,
        &format!("Deployment {NAMESPACE}/{name} to be available"),
        || {
            let api = api.clone();
            async move {
                let deployment = api.get_opt(name).await.ok().flatten()?;
                let wanted = deployment.spec?.replicas.unwrap_or(1);
                let available = deployment.status?.available_replicas.unwrap_or(0);
                (available >= wanted).then_some(())
            }
        },
    )
    .await
}

/// What is wrong with the pods in `namespace` matching `selector`: each one's phase, conditions and container
/// states, and the end of the first one's log (for error messages).
pub async fn diagnose(client: &Client, namespace: &str, selector: &str, lines: i64) -> String {
    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    let list = match pods.list(&ListParams::default().labels(selector)).await {
        Ok(list) => list,
        Err(err) => return format!("(cannot list pods {selector} in {namespace}: {err})"),
    };
    if list.items.is_empty() {
        return format!("(no pod {selector} in {namespace})");
    }
    let mut out = String::new();
    for pod in &list.items {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let status = pod.status.clone().unwrap_or_default();
        out.push_str(&format!(
            "pod {namespace}/{name}: phase {}",
            status.phase.unwrap_or_default()
        ));
        for c in status.conditions.unwrap_or_default() {
            if c.status != "True" {
                out.push_str(&format!(
                    "; {}={} {}",
                    c.type_,
                    c.status,
                    c.message.unwrap_or_default()
                ));
            }
        }
        for c in status.container_statuses.unwrap_or_default() {
            let state = c.state.unwrap_or_default();
            if let Some(waiting) = state.waiting {
                out.push_str(&format!(
                    "; {} waiting: {} {}",
                    c.name,
                    waiting.reason.unwrap_or_default(),
                    waiting.message.unwrap_or_default()
                ));
            }
            if let Some(ended) = c.last_state.and_then(|s| s.terminated) {
                out.push_str(&format!(
                    "; {} last exited {} ({})",
                    c.name,
                    ended.exit_code,
                    ended.reason.unwrap_or_default()
                ));
            }
        }
        out.push('\n');
    }
    if let Some(name) = list.items.first().and_then(|p| p.metadata.name.clone()) {
        let params = LogParams {
            tail_lines: Some(lines),
            ..LogParams::default()
        };
        match pods.logs(&name, &params).await {
            Ok(text) => out.push_str(&format!(
                "--- last lines of {namespace}/{name} ---\n{}",
                text.trim_end()
            )),
            Err(err) => out.push_str(&format!("(no log of {namespace}/{name}: {err})")),
        }
    }
    out
}
