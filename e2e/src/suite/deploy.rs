//! What the suite puts into the cluster: Bulkhead from its Helm chart (optionally upgraded from a previous chart
//! version), two Tenants with two Customers each, and a pod in a namespace Bulkhead does not manage.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use bulkhead_crds::v1alpha1::{Customer, Tenant};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::matrix::Stack;
use super::{Check, Config, FIELD_MANAGER, say};
use crate::HarnessError;

/// The Secret holding the database admin DSN, in Bulkhead's namespace.
pub const POSTGRES_ADMIN_SECRET: &str = "bulkhead-postgres-admin";
/// The Secret holding the suite issuer's public key, in Bulkhead's namespace.
pub const ISSUER_SECRET: &str = "bulkhead-suite-issuer";
/// The namespace Bulkhead does not manage.
pub const OUTSIDER_NAMESPACE: &str = "bulkhead-suite-outsider";
/// The outsider pod.
pub const OUTSIDER_POD: &str = "outsider";
/// The port every stack (and the outsider) serves on.
pub const STACK_PORT: u16 = 8080;
/// The operator's and the gateway's Deployments (fixed names in the chart).
pub const OPERATOR: &str = "bulkhead-operator";
/// See [`OPERATOR`].
pub const GATEWAY: &str = "bulkhead-gateway";
/// The property the upgrade check removes from the served Tenant schema to stand for an older chart's CRD.
const UPGRADE_PROBE_PROPERTY: &str = "network";

/// How long installs and rollouts may take.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);
/// How long Tenants and Customers may take to become Ready with their stacks running.
const READY_TIMEOUT: Duration = Duration::from_secs(240);

fn api_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Api { what, source }
}

/// Server-side applies `value` as a `K`.
pub async fn apply<K>(api: &Api<K>, value: Value) -> Result<K, HarnessError>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    crate::apply::value_as(api, value, FIELD_MANAGER).await
}

/// A token issuer the gateway trusts (its public key is in [`ISSUER_SECRET`]) and one it does not.
pub struct Issuer {
    /// The `iss` of the trusted issuer.
    pub issuer: String,
    /// The `kid` of its key.
    pub kid: String,
    key: jsonwebtoken::EncodingKey,
    untrusted: jsonwebtoken::EncodingKey,
    public_pem: String,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("issuer", &self.issuer)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// What a token should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// Valid.
    Valid,
    /// Signed by a key the gateway does not trust (same `kid`).
    Forged,
    /// Expired five minutes ago.
    Expired,
    /// From an issuer the gateway does not allow (signed with the trusted key).
    OtherIssuer,
}

impl Issuer {
    fn generate() -> Result<Issuer, HarnessError> {
        let trusted = rcgen::KeyPair::generate()?;
        let untrusted = rcgen::KeyPair::generate()?;
        let encoding = |pair: &rcgen::KeyPair| {
            bulkhead_gateway::mint::encoding_key(
                pair.serialize_pem().as_bytes(),
                jsonwebtoken::Algorithm::ES256,
            )
            .map_err(|e| HarnessError::Manifest(format!("loading a generated key: {e}")))
        };
        Ok(Issuer {
            issuer: "https://suite.bulkhead.local".into(),
            kid: "suite-1".into(),
            key: encoding(&trusted)?,
            untrusted: encoding(&untrusted)?,
            public_pem: trusted.public_key_pem(),
        })
    }

    /// A token of `kind` for `org` (Clerk v2 claims).
    pub fn token(&self, kind: TokenKind, org: &str, subject: &str) -> Result<String, HarnessError> {
        let mint = bulkhead_gateway::mint::Mint {
            algorithm: jsonwebtoken::Algorithm::ES256,
            kid: self.kid.clone(),
            issuer: match kind {
                TokenKind::OtherIssuer => "https://other.bulkhead.local".into(),
                _ => self.issuer.clone(),
            },
            subject: subject.into(),
            org: Some(org.into()),
            placement: bulkhead_gateway::mint::OrgPlacement::ClerkV2,
            expires_in: 120,
            extra: serde_json::Map::new(),
        };
        let key = if kind == TokenKind::Forged {
            &self.untrusted
        } else {
            &self.key
        };
        let token = if kind == TokenKind::Expired {
            let now = bulkhead_gateway::mint::now() - 600;
            let mut claims = bulkhead_gateway::mint::claims(&mint, now);
            claims.insert("exp".into(), json!(now + 300));
            let header = json!({"alg": "ES256", "kid": self.kid, "typ": "JWT"});
            bulkhead_gateway::mint::sign_raw(
                &header.to_string(),
                &Value::Object(claims).to_string(),
                key,
                jsonwebtoken::Algorithm::ES256,
            )
        } else {
            bulkhead_gateway::mint::mint(&mint, key)
        };
        token.map_err(|e| HarnessError::Manifest(format!("minting a token: {e}")))
    }
}

/// The install's result.
#[derive(Debug)]
pub struct Installed {
    /// What was checked on the way.
    pub checks: Vec<Check>,
    /// The issuer the gateway trusts.
    pub issuer: Issuer,
}

/// The chart values the suite installs with (JSON is YAML). `issuer_key` is the issuer's public key: its digest
/// is a pod annotation of the gateway, so that a new key rolls the gateway's pods.
pub fn values(config: &Config, issuer_key: &str) -> Value {
    let image = |reference: &str| {
        let (repository, tag) = reference.rsplit_once(':').unwrap_or((reference, "latest"));
        json!({"repository": repository, "tag": tag, "pullPolicy": config.images.pull_policy})
    };
    let mut values = json!({
        "operator": {
            "image": image(&config.images.operator),
            "logFormat": "plain",
        },
        "gateway": {
            "image": image(&config.images.gateway),
            "logFormat": "plain",
            "podAnnotations": {"bulkhead.dev/suite-issuer-key": crate::suite::sha256_hex(issuer_key)},
            "issuers": [{
                "issuer": "https://suite.bulkhead.local",
                "algorithms": ["ES256"],
                "orgClaim": "clerk",
                "keySecret": {
                    "name": ISSUER_SECRET,
                    "keys": [{"kid": "suite-1", "algorithm": "ES256", "key": "public.pem"}],
                },
            }],
        },
    });
    // Set only when off: a previous chart version the suite upgrades from does not know the key.
    if !config.admission_policies {
        values["admissionPolicies"] = json!({"enabled": false});
    }
    if let Some(postgres) = &config.postgres {
        values["postgres"] = json!({
            "adminSecret": {"name": POSTGRES_ADMIN_SECRET, "key": "dsn"},
            "host": postgres.host,
            "port": postgres.port,
            "cidr": postgres.cidr,
        });
    }
    values
}

/// Runs helm with `args` against the configured cluster.
fn helm_output(config: &Config, args: &[&str]) -> Result<std::process::Output, HarnessError> {
    let mut command = std::process::Command::new(&config.helm);
    command.args(args).stdin(std::process::Stdio::null());
    if let Some(kubeconfig) = &config.kubeconfig {
        command.arg("--kubeconfig").arg(kubeconfig);
    }
    if let Some(context) = &config.context {
        command.args(["--kube-context", context]);
    }
    command.output().map_err(|source| HarnessError::Io {
        what: format!("running {}", config.helm.display()),
        source,
    })
}

/// Runs helm with `args`; its standard output, or an error with its standard error.
fn helm(config: &Config, args: &[&str]) -> Result<String, HarnessError> {
    let output = helm_output(config, args)?;
    if !output.status.success() {
        return Err(HarnessError::Manifest(format!(
            "helm {} failed ({}): {}",
            args.first().copied().unwrap_or_default(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn helm_upgrade(config: &Config, chart: &Path, values_file: &Path) -> Result<(), HarnessError> {
    let timeout = format!("{}s", INSTALL_TIMEOUT.as_secs());
    let chart = chart.display().to_string();
    let values = values_file.display().to_string();
    helm(
        config,
        &[
            "upgrade",
            "--install",
            &config.release,
            &chart,
            "--namespace",
            &config.namespace,
            "--values",
            &values,
            "--wait",
            "--timeout",
            &timeout,
        ],
    )
    .map(drop)
}

/// `helm install` with one wrong value fails, naming it, and installs nothing.
fn wrong_value_refused(config: &Config, values_file: &Path) -> Result<Check, HarnessError> {
    let release = format!("{}-wrong-value", config.release);
    let chart = config.chart.display().to_string();
    let values = values_file.display().to_string();
    let output = helm_output(
        config,
        &[
            "install",
            &release,
            &chart,
            "--namespace",
            &config.namespace,
            "--values",
            &values,
            "--set",
            "gateway.replicas=0",
        ],
    )?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let named = stderr
        .lines()
        .find(|l| l.contains("/gateway/replicas"))
        .unwrap_or_default()
        .trim()
        .to_owned();
    let installed = helm(config, &["status", &release, "--namespace", &config.namespace]).is_ok();
    Ok(Check::new(
        "helm install with a wrong value fails naming it",
        !output.status.success() && !named.is_empty() && !installed,
        format!(
            "gateway.replicas=0: {}; release {release} {}",
            if named.is_empty() {
                "not named".to_owned()
            } else {
                named
            },
            if installed { "EXISTS" } else { "not installed" }
        ),
    ))
}

/// The release's chart version, from `helm list`.
fn release_chart(config: &Config) -> Result<String, HarnessError> {
    let out = helm(
        config,
        &[
            "list",
            "--namespace",
            &config.namespace,
            "--filter",
            &format!("^{}$", config.release),
            "--output",
            "json",
        ],
    )?;
    let list: Value =
        serde_json::from_str(&out).map_err(|e| HarnessError::Manifest(format!("helm list: {e}")))?;
    Ok(list[0]["chart"].as_str().unwrap_or_default().to_owned())
}

fn served_tenant_properties(crd: &CustomResourceDefinition) -> Vec<String> {
    crd.spec
        .versions
        .iter()
        .filter(|v| v.served)
        .filter_map(|v| v.schema.as_ref()?.open_api_v3_schema.as_ref())
        .filter_map(|s| s.properties.as_ref()?.get("spec")?.properties.as_ref())
        .flat_map(|p| p.keys().cloned())
        .collect()
}

/// Makes the served Tenant CRD stand for an older chart's: one spec property is taken out of its schema.
async fn age_tenant_crd(client: &Client) -> Result<(), HarnessError> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = "tenants.bulkhead.dev";
    let mut crd = crds
        .get(name)
        .await
        .map_err(api_error(format!("reading CRD {name}")))?;
    for version in &mut crd.spec.versions {
        if let Some(spec) = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|s| s.properties.as_mut())
            .and_then(|p| p.get_mut("spec"))
            .and_then(|s| s.properties.as_mut())
        {
            spec.remove(UPGRADE_PROBE_PROPERTY);
        }
    }
    crd.metadata.managed_fields = None;
    crds.replace(name, &PostParams::default(), &crd)
        .await
        .map_err(api_error(format!("replacing CRD {name}")))?;
    Ok(())
}

/// Installs Bulkhead: its namespace (Pod Security `restricted`), the Postgres admin and issuer Secrets, and the
/// chart (first the previous chart version, when given, then an upgrade to this one).
pub async fn install(client: &Client, config: &Config) -> Result<Installed, HarnessError> {
    let mut checks = Vec::new();
    apply(
        &Api::<Namespace>::all(client.clone()),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": config.namespace, "labels": {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/warn": "restricted",
        }}}),
    )
    .await?;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &config.namespace);
    if let Some(postgres) = &config.postgres {
        apply(
            &secrets,
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": POSTGRES_ADMIN_SECRET, "namespace": config.namespace},
                   "stringData": {"dsn": postgres.admin_dsn}}),
        )
        .await?;
    }
    let issuer = Issuer::generate()?;
    apply(
        &secrets,
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": ISSUER_SECRET, "namespace": config.namespace},
               "stringData": {"public.pem": issuer.public_pem}}),
    )
    .await?;

    let dir = tempfile::tempdir().map_err(|source| HarnessError::Io {
        what: "creating a temp dir".into(),
        source,
    })?;
    let values_file = dir.path().join("values.json");
    std::fs::write(&values_file, values(config, &issuer.public_pem).to_string()).map_err(|source| {
        HarnessError::Io {
            what: "writing the chart values".into(),
            source,
        }
    })?;

    if let Some(previous) = &config.previous_chart {
        let started = Instant::now();
        helm_upgrade(config, previous, &values_file)?;
        let version = release_chart(config)?;
        checks.push(Check::new(
            "helm install of the previous chart version",
            !version.is_empty(),
            format!("{version} deployed in {:.1} s", started.elapsed().as_secs_f64()),
        ));
        age_tenant_crd(client).await?;
        let crd = Api::<CustomResourceDefinition>::all(client.clone())
            .get("tenants.bulkhead.dev")
            .await
            .map_err(api_error("reading CRD tenants.bulkhead.dev"))?;
        checks.push(Check::new(
            "older Tenant schema served before the upgrade",
            !served_tenant_properties(&crd)
                .iter()
                .any(|p| p == UPGRADE_PROBE_PROPERTY),
            format!("spec.{UPGRADE_PROBE_PROPERTY} taken out of the served schema"),
        ));
    }

    checks.push(wrong_value_refused(config, &values_file)?);
    let started = Instant::now();
    helm_upgrade(config, &config.chart, &values_file)?;
    let version = release_chart(config)?;
    checks.push(Check::new(
        if config.previous_chart.is_some() {
            "helm upgrade to this chart"
        } else {
            "helm install of this chart"
        },
        !version.is_empty(),
        format!(
            "{version} deployed (--wait) in {:.1} s",
            started.elapsed().as_secs_f64()
        ),
    ));
    let crd = Api::<CustomResourceDefinition>::all(client.clone())
        .get("tenants.bulkhead.dev")
        .await
        .map_err(api_error("reading CRD tenants.bulkhead.dev"))?;
    let properties = served_tenant_properties(&crd);
    checks.push(Check::new(
        "the chart's Tenant schema is served",
        properties.iter().any(|p| p == UPGRADE_PROBE_PROPERTY),
        format!("served spec properties: {}", properties.join(", ")),
    ));
    for name in [OPERATOR, GATEWAY] {
        let deployment = Api::<Deployment>::namespaced(client.clone(), &config.namespace)
            .get(name)
            .await
            .map_err(api_error(format!("reading Deployment {name}")))?;
        let wanted = deployment.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let available = deployment
            .status
            .as_ref()
            .and_then(|s| s.available_replicas)
            .unwrap_or(0);
        checks.push(Check::new(
            format!("{name} available"),
            available >= wanted && wanted >= 1,
            format!("{available}/{wanted} replicas available"),
        ));
    }
    Ok(Installed { checks, issuer })
}

/// One Tenant or Customer of the suite.
#[derive(Debug, Clone)]
pub struct Subject {
    /// `Tenant` or `Customer`.
    pub kind: &'static str,
    /// The resource's name.
    pub name: String,
    /// Its org id.
    pub org: String,
    /// Its deletion policy.
    pub retain: bool,
    /// Its database isolation (`Schema` or `Database`).
    pub isolation: &'static str,
}

/// What runs where.
#[derive(Debug, Clone)]
pub struct Topology {
    /// The stacks (the matrix's view).
    pub stacks: Vec<Stack>,
    /// The resources behind them, in the same order.
    pub subjects: Vec<Subject>,
}

impl Topology {
    /// The index of the stack of the Customer to delete with `Retain`.
    pub fn retained(&self) -> Option<usize> {
        self.subjects.iter().position(|s| s.retain)
    }
}

/// The suite's Tenants and Customers: `suite-a` and `suite-b`, each with Customers `one` and `two`. Database
/// isolation is mixed (schemas in the shared database, and own databases), and Customer `suite-a-two` is the
/// one deleted with `Retain`.
pub fn subjects() -> Vec<(Subject, Option<&'static str>)> {
    let subject = |kind, name: &str, org: &str, isolation, retain| Subject {
        kind,
        name: name.into(),
        org: org.into(),
        retain,
        isolation,
    };
    vec![
        (subject("Tenant", "suite-a", "org_suiteA", "Schema", false), None),
        (
            subject("Customer", "suite-a-one", "org_suiteA1", "Schema", false),
            Some("suite-a"),
        ),
        (
            subject("Customer", "suite-a-two", "org_suiteA2", "Database", true),
            Some("suite-a"),
        ),
        (
            subject("Tenant", "suite-b", "org_suiteB", "Database", false),
            None,
        ),
        (
            subject("Customer", "suite-b-one", "org_suiteB1", "Schema", false),
            Some("suite-b"),
        ),
        (
            subject("Customer", "suite-b-two", "org_suiteB2", "Schema", false),
            Some("suite-b"),
        ),
    ]
}

fn stack_spec(config: &Config) -> Value {
    json!({
        "image": config.images.stack,
        "port": STACK_PORT,
        "replicas": 1,
        "resources": {
            "requests": {"cpu": "10m", "memory": "16Mi"},
            "limits": {"cpu": "250m", "memory": "64Mi"},
        },
    })
}

fn resource_value(config: &Config, subject: &Subject, tenant: Option<&str>) -> Value {
    let mut spec = json!({
        "orgId": subject.org,
        "stack": stack_spec(config),
        "database": {"enabled": true, "isolation": subject.isolation},
        "deletionPolicy": if subject.retain { "Retain" } else { "Delete" },
    });
    match tenant {
        None => {
            spec["quota"] = json!({"cpu": "4", "memory": "4Gi", "pods": 12});
        }
        Some(tenant) => {
            spec["tenantRef"] = json!(tenant);
            spec["quota"] = json!({"cpu": "1", "memory": "1Gi", "pods": 4});
        }
    }
    json!({
        "apiVersion": "bulkhead.dev/v1alpha1",
        "kind": subject.kind,
        "metadata": {"name": subject.name, "labels": {"bulkhead.dev/suite": "isolation"}},
        "spec": spec,
    })
}

/// The restricted security context of the suite's own pods.
pub fn restricted_container() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

/// A pod running the stack image (serving on [`STACK_PORT`]) in `namespace`, with `labels`.
pub fn probe_pod(config: &Config, namespace: &str, name: &str, labels: &BTreeMap<String, String>) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            "terminationGracePeriodSeconds": 2,
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "stack",
                "image": config.images.stack,
                "imagePullPolicy": config.images.pull_policy,
                "env": [{"name": "PORT", "value": STACK_PORT.to_string()}],
                // Named like the stack's, which its Service targets by name.
                "ports": [{"name": "http", "containerPort": STACK_PORT}],
                "readinessProbe": {"httpGet": {"path": "/healthz", "port": STACK_PORT}, "periodSeconds": 1},
                "resources": {
                    "requests": {"cpu": "10m", "memory": "16Mi"},
                    "limits": {"cpu": "250m", "memory": "64Mi"},
                },
                "securityContext": restricted_container(),
            }],
        },
    })
}

/// Applies the Tenants, the Customers and the outsider, and waits until every one is Ready with its stack pod
/// running.
pub async fn topology(client: &Client, config: &Config) -> Result<Topology, HarnessError> {
    let tenants: Api<Tenant> = Api::all(client.clone());
    let customers: Api<Customer> = Api::all(client.clone());
    let all = subjects();
    for (subject, tenant) in &all {
        let value = resource_value(config, subject, *tenant);
        if tenant.is_none() {
            apply(&tenants, value).await?;
        } else {
            apply(&customers, value).await?;
        }
    }
    apply(
        &Api::<Namespace>::all(client.clone()),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OUTSIDER_NAMESPACE, "labels": {
            "pod-security.kubernetes.io/enforce": "restricted",
        }}}),
    )
    .await?;
    let outsider_labels = BTreeMap::from([("app".to_owned(), "outsider".to_owned())]);
    apply(
        &Api::<Pod>::namespaced(client.clone(), OUTSIDER_NAMESPACE),
        probe_pod(config, OUTSIDER_NAMESPACE, OUTSIDER_POD, &outsider_labels),
    )
    .await?;

    let started = Instant::now();
    let mut stacks = Vec::new();
    let mut subjects = Vec::new();
    for (subject, tenant) in all {
        let name = subject.name.clone();
        let namespace = crate::wait::until(
            READY_TIMEOUT,
            &format!("{} {name} to be Ready", subject.kind),
            || {
                let (tenants, customers, name) = (tenants.clone(), customers.clone(), name.clone());
                async move {
                    let status = if tenant.is_none() {
                        tenants.get_opt(&name).await.ok().flatten()?.status?
                    } else {
                        customers.get_opt(&name).await.ok().flatten()?.status?
                    };
                    let ready = status
                        .conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True");
                    if ready { status.namespace } else { None }
                }
            },
        )
        .await;
        let namespace = match namespace {
            Ok(namespace) => namespace,
            Err(err) => {
                return Err(HarnessError::Manifest(format!(
                    "{err}; statuses:\n{}",
                    crate::table::render(&crate::table::rows(client).await.unwrap_or_default())
                )));
            }
        };
        let label = match tenant {
            None => name.trim_start_matches("suite-").to_owned(),
            Some(t) => format!(
                "{}{}",
                t.trim_start_matches("suite-"),
                if name.ends_with("one") { "1" } else { "2" }
            ),
        };
        stacks.push(Stack {
            label,
            tenant: tenant.unwrap_or(&subject.name).to_owned(),
            customer: tenant.map(|_| subject.name.clone()),
            namespace,
            database: true,
        });
        subjects.push(subject);
    }
    say(format!(
        "{} Tenants and Customers Ready in {:.1} s",
        stacks.len(),
        started.elapsed().as_secs_f64()
    ));
    Ok(Topology { stacks, subjects })
}

/// Lists the ready pods in `namespace` matching `selector`.
pub async fn ready_pods(client: &Client, namespace: &str, selector: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let Ok(list) = pods.list(&ListParams::default().labels(selector)).await else {
        return Vec::new();
    };
    list.items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .collect()
}

/// The pod IP of a pod.
pub fn pod_ip(pod: &Pod) -> Option<String> {
    pod.status.as_ref()?.pod_ip.clone()
}

/// The name of a pod.
pub fn pod_name(pod: &Pod) -> String {
    pod.name_any()
}
