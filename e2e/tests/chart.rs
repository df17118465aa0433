//! The Helm chart (`charts/bulkhead`), rendered by the pinned helm: it lints clean, renders what the isolation
//! contract needs (restricted pods, least-privilege RBAC, one source of truth for the gateway's pod labels, a
//! gateway configuration the gateway itself accepts), refuses wrong values by name, and every object it renders
//! is accepted by a real API server, whose Pod Security admission admits its pods under `restricted`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail the test by panicking

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bulkhead_e2e::ControlPlane;
use bulkhead_e2e::apply::{dry_run_objects, parse_manifests};
use bulkhead_e2e::helm::{Helm, chart_dir};
use bulkhead_e2e::install;
use bulkhead_gateway::config::{
    CacheFile, FileConfig, KeysFile, ProxyFile, RouteSource, Settings as GatewaySettings, TokenFile,
};
use bulkhead_gateway::keys::KeySource;
use bulkhead_operator::process::crd_apply::Outcome;
use bulkhead_operator::settings::{Settings, parse_labels};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PodSpec, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyEgressRule};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const RELEASE: &str = "bulkhead";
const NAMESPACE: &str = "bulkhead-system";

fn helm() -> Helm {
    Helm::new(None).expect("helm")
}

fn ci_values(name: &str) -> PathBuf {
    chart_dir().join("ci").join(name)
}

fn minimal() -> PathBuf {
    ci_values("minimal-values.yaml")
}

fn full() -> PathBuf {
    ci_values("full-values.yaml")
}

/// The Kubernetes version the local cluster runs, for the chart's capabilities.
fn kube_version() -> String {
    bulkhead_e2e::versions::get("KUBERNETES_VERSION").unwrap()
}

/// Values files for one render: the given files, then `overlay` (JSON is YAML) when not null.
struct Values {
    files: Vec<PathBuf>,
    _dir: tempfile::TempDir,
}

impl Values {
    fn new(files: &[PathBuf], overlay: Value) -> Values {
        let dir = tempfile::tempdir().unwrap();
        let mut files = files.to_vec();
        if !overlay.is_null() {
            let path = dir.path().join("overlay.json");
            std::fs::write(&path, overlay.to_string()).unwrap();
            files.push(path);
        }
        Values { files, _dir: dir }
    }

    fn args(&self) -> Vec<String> {
        self.files
            .iter()
            .flat_map(|f| ["--values".to_owned(), f.display().to_string()])
            .collect()
    }
}

/// `helm template` of the chart with `values`, as the process output.
fn template_output(helm: &Helm, values: &Values, extra: &[&str]) -> std::process::Output {
    let chart = chart_dir().display().to_string();
    let version = kube_version();
    let mut args = vec!["template", RELEASE, &chart, "--namespace", NAMESPACE];
    let value_args = values.args();
    args.extend(value_args.iter().map(String::as_str));
    if !extra.contains(&"--dry-run=server") {
        args.extend(["--kube-version", &version]);
    }
    args.extend(extra);
    helm.run(&args).unwrap()
}

/// The rendered objects.
#[derive(Debug)]
struct Rendered {
    objects: Vec<DynamicObject>,
}

impl Rendered {
    fn of(helm: &Helm, files: &[PathBuf], overlay: Value, extra: &[&str]) -> Rendered {
        let values = Values::new(files, overlay);
        let output = template_output(helm, &values, extra);
        assert!(
            output.status.success(),
            "helm template failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8(output.stdout).unwrap();
        Rendered {
            objects: parse_manifests(&text, "helm template").unwrap(),
        }
    }

    fn render(files: &[PathBuf], overlay: Value) -> Rendered {
        Rendered::of(&helm(), files, overlay, &[])
    }

    fn kind_of(object: &DynamicObject) -> &str {
        object.types.as_ref().map(|t| t.kind.as_str()).unwrap_or_default()
    }

    fn find(&self, kind: &str, name: &str) -> Option<&DynamicObject> {
        self.objects
            .iter()
            .find(|o| Rendered::kind_of(o) == kind && o.metadata.name.as_deref() == Some(name))
    }

    fn has(&self, kind: &str, name: &str) -> bool {
        self.find(kind, name).is_some()
    }

    fn get<K: DeserializeOwned>(&self, kind: &str, name: &str) -> K {
        let object = self
            .find(kind, name)
            .unwrap_or_else(|| panic!("no {kind} {name} in {:?}", self.names()));
        serde_json::from_value(serde_json::to_value(object).unwrap()).unwrap()
    }

    fn count(&self, kind: &str) -> usize {
        self.objects
            .iter()
            .filter(|o| Rendered::kind_of(o) == kind)
            .count()
    }

    fn names(&self) -> Vec<String> {
        self.objects
            .iter()
            .map(|o| {
                format!(
                    "{}/{}",
                    Rendered::kind_of(o),
                    o.metadata.name.clone().unwrap_or_default()
                )
            })
            .collect()
    }

    fn gateway_config_text(&self) -> String {
        let config: ConfigMap = self.get("ConfigMap", "bulkhead-gateway");
        config.data.unwrap()["gateway.yaml"].clone()
    }

    fn gateway_config(&self) -> GatewaySettings {
        let text = self.gateway_config_text();
        let file = FileConfig::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        GatewaySettings::from_file(file).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    fn operator_args(&self) -> Vec<String> {
        let deployment: Deployment = self.get("Deployment", "bulkhead-operator");
        pod_spec(&deployment).containers[0].args.clone().unwrap()
    }
}

fn pod_spec(deployment: &Deployment) -> &PodSpec {
    deployment.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
}

fn pod_labels(deployment: &Deployment) -> BTreeMap<String, String> {
    let spec = deployment.spec.as_ref().unwrap();
    spec.template.metadata.as_ref().unwrap().labels.clone().unwrap()
}

fn selector(deployment: &Deployment) -> BTreeMap<String, String> {
    deployment
        .spec
        .as_ref()
        .unwrap()
        .selector
        .match_labels
        .clone()
        .unwrap()
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1).map(String::as_str)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// What Pod Security `restricted` asks of a pod, checked on the rendered spec.
fn assert_restricted(what: &str, spec: &PodSpec) {
    let pod = spec.security_context.as_ref().expect(what);
    assert_eq!(pod.run_as_non_root, Some(true), "{what}");
    assert_eq!(
        pod.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault",
        "{what}"
    );
    assert_eq!(spec.enable_service_links, Some(false), "{what}");
    assert!(
        spec.host_network.is_none() && spec.host_pid.is_none() && spec.host_ipc.is_none(),
        "{what}"
    );
    for container in &spec.containers {
        let sc = container.security_context.as_ref().expect(what);
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{what}");
        assert_eq!(sc.read_only_root_filesystem, Some(true), "{what}");
        assert_eq!(sc.run_as_non_root, Some(true), "{what}");
        assert_ne!(sc.privileged, Some(true), "{what}");
        assert_eq!(
            sc.capabilities.as_ref().unwrap().drop,
            Some(strings(&["ALL"])),
            "{what}"
        );
        assert!(sc.capabilities.as_ref().unwrap().add.is_none(), "{what}");
        assert_eq!(
            sc.seccomp_profile.as_ref().unwrap().type_,
            "RuntimeDefault",
            "{what}"
        );
        let resources = container.resources.as_ref().expect(what);
        assert!(
            resources
                .requests
                .as_ref()
                .is_some_and(|r| r.contains_key("memory")),
            "{what}"
        );
        assert!(
            resources
                .limits
                .as_ref()
                .is_some_and(|r| r.contains_key("memory")),
            "{what}"
        );
    }
}

/// The TCP ports of an egress rule and the CIDRs it is limited to (empty: any address).
fn egress_shape(rule: &NetworkPolicyEgressRule) -> (BTreeSet<String>, BTreeSet<i32>) {
    let cidrs = rule
        .to
        .iter()
        .flatten()
        .filter_map(|peer| peer.ip_block.as_ref().map(|b| b.cidr.clone()))
        .collect();
    let ports = rule
        .ports
        .iter()
        .flatten()
        .filter(|p| p.protocol.as_deref() == Some("TCP"))
        .filter_map(|p| match &p.port {
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n)) => Some(*n),
            _ => None,
        })
        .collect();
    (cidrs, ports)
}

/// The policy's egress rule that opens the API server (the one with port 6443).
/// The shape of each of the policy's egress rules, in order.
fn egress_shapes(policy: &NetworkPolicy) -> Vec<(BTreeSet<String>, BTreeSet<i32>)> {
    let rules = policy.spec.as_ref().unwrap().egress.as_deref().unwrap();
    rules.iter().map(egress_shape).collect()
}

fn api_server_rule(policy: &NetworkPolicy) -> NetworkPolicyEgressRule {
    let rules = policy.spec.as_ref().unwrap().egress.clone().unwrap();
    rules
        .into_iter()
        .find(|r| egress_shape(r).1.contains(&6443))
        .expect("an egress rule to the API server")
}

fn ingress_ports(policy: &NetworkPolicy) -> BTreeSet<i32> {
    let rules = policy.spec.as_ref().unwrap().ingress.clone().unwrap_or_default();
    rules
        .iter()
        .flat_map(|r| r.ports.iter().flatten())
        .filter_map(|p| match &p.port {
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(n)) => Some(*n),
            _ => None,
        })
        .collect()
}

fn annotation<'a>(object: &'a DynamicObject, key: &str) -> Option<&'a str> {
    object.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

#[test]
fn lint_is_clean_with_the_minimal_and_the_full_values() {
    let helm = helm();
    let chart = chart_dir().display().to_string();
    let version = kube_version();
    for values in [minimal(), full()] {
        let values = values.display().to_string();
        let out = helm
            .run_ok(&[
                "lint",
                "--strict",
                &chart,
                "--kube-version",
                &version,
                "--values",
                &values,
            ])
            .unwrap();
        assert!(out.contains("0 chart(s) failed"), "{values}: {out}");
        assert!(
            !out.contains("[WARNING]") && !out.contains("[ERROR]"),
            "{values}: {out}"
        );
    }
}

#[test]
fn without_an_issuer_the_chart_refuses_to_render() {
    let output = template_output(&helm(), &Values::new(&[], Value::Null), &[]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/gateway/issuers"), "{stderr}");
}

#[test]
fn defaults_are_highly_available_and_restricted() {
    let r = Rendered::render(&[minimal()], Value::Null);

    // Operator: two replicas electing a leader, probed on its admin port.
    let operator: Deployment = r.get("Deployment", "bulkhead-operator");
    assert_eq!(operator.spec.as_ref().unwrap().replicas, Some(2));
    let spec = pod_spec(&operator);
    assert_eq!(spec.service_account_name.as_deref(), Some("bulkhead-operator"));
    let container = &spec.containers[0];
    assert_eq!(container.image.as_deref(), Some("bulkhead.dev/operator:0.1.0"));
    assert_eq!(container.image_pull_policy.as_deref(), Some("IfNotPresent"));
    let args = container.args.clone().unwrap();
    assert_eq!(&args[..2], &strings(&["run", "--leader-elect"]));
    assert_eq!(flag(&args, "--log-format"), Some("json"));
    assert_eq!(flag(&args, "--admin-addr"), Some("0.0.0.0:8080"));
    assert!(flag(&args, "--postgres-admin-secret").is_none(), "{args:?}");
    let env: BTreeMap<_, _> = container
        .env
        .clone()
        .unwrap()
        .into_iter()
        .map(|e| (e.name.clone(), e))
        .collect();
    for (name, path) in [
        ("POD_NAMESPACE", "metadata.namespace"),
        ("POD_NAME", "metadata.name"),
    ] {
        let from = env[name].value_from.as_ref().unwrap().field_ref.as_ref().unwrap();
        assert_eq!(from.field_path, path);
    }
    assert_eq!(env["RUST_LOG"].value.as_deref(), Some("info,kube=warn"));
    let port = &container.ports.as_ref().unwrap()[0];
    assert_eq!((port.name.as_deref(), port.container_port), (Some("admin"), 8080));
    for (probe, path) in [
        (container.liveness_probe.as_ref(), "/livez"),
        (container.readiness_probe.as_ref(), "/readyz"),
    ] {
        let get = probe.unwrap().http_get.as_ref().unwrap();
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(
            get.port,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("admin".into())
        );
    }

    // Gateway: two replicas, its config mounted, probed on its admin port, rolled when the config changes.
    let gateway: Deployment = r.get("Deployment", "bulkhead-gateway");
    assert_eq!(gateway.spec.as_ref().unwrap().replicas, Some(2));
    let spec = pod_spec(&gateway);
    assert_eq!(spec.service_account_name.as_deref(), Some("bulkhead-gateway"));
    let container = &spec.containers[0];
    assert_eq!(container.image.as_deref(), Some("bulkhead.dev/gateway:0.1.0"));
    assert_eq!(
        container.args.clone().unwrap(),
        strings(&[
            "run",
            "--log-format",
            "json",
            "--config",
            "/etc/bulkhead/gateway.yaml"
        ])
    );
    // Every replica's audit chain is named after its pod.
    let instance = container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "BULKHEAD_GATEWAY_INSTANCE")
        .and_then(|e| e.value_from.as_ref()?.field_ref.as_ref())
        .map(|f| f.field_path.as_str());
    assert_eq!(instance, Some("metadata.name"));
    let ports: BTreeMap<_, _> = container
        .ports
        .clone()
        .unwrap()
        .into_iter()
        .map(|p| (p.name.unwrap(), p.container_port))
        .collect();
    assert_eq!(
        ports,
        BTreeMap::from([("proxy".into(), 8443), ("admin".into(), 9090)])
    );
    for (probe, path) in [
        (container.liveness_probe.as_ref(), "/livez"),
        (container.readiness_probe.as_ref(), "/readyz"),
    ] {
        assert_eq!(
            probe.unwrap().http_get.as_ref().unwrap().path.as_deref(),
            Some(path)
        );
    }
    let mount = &container.volume_mounts.as_ref().unwrap()[0];
    assert_eq!(mount.mount_path, "/etc/bulkhead/gateway.yaml");
    assert_eq!(mount.read_only, Some(true));
    let checksum = gateway
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .as_ref()
        .unwrap()["checksum/config"]
        .clone();
    let config = r.gateway_config_text();
    let digest = Sha256::digest(config.strip_suffix('\n').unwrap_or(&config));
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(checksum, hex, "checksum/config is the rendered gateway.yaml's");

    let service: Service = r.get("Service", "bulkhead-gateway");
    let service_spec = service.spec.unwrap();
    assert_eq!(service_spec.type_.as_deref(), Some("ClusterIP"));
    let service_ports: Vec<_> = service_spec
        .ports
        .unwrap()
        .into_iter()
        .map(|p| (p.name.unwrap(), p.port, p.target_port.unwrap()))
        .collect();
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String as Named;
    assert_eq!(
        service_ports,
        vec![
            ("proxy".to_owned(), 8443, Named("proxy".into())),
            ("admin".to_owned(), 9090, Named("admin".into()))
        ]
    );

    // Every pod the chart runs is restricted.
    let job: Job = r.get("Job", "bulkhead-crds");
    for (what, spec) in [
        ("operator", pod_spec(&operator)),
        ("gateway", pod_spec(&gateway)),
        (
            "crds hook",
            job.spec.as_ref().unwrap().template.spec.as_ref().unwrap(),
        ),
    ] {
        assert_restricted(what, spec);
    }

    // Replicas spread over nodes where there are several, each Deployment by its own pods' labels.
    for deployment in [&operator, &gateway] {
        let anti = pod_spec(deployment)
            .affinity
            .as_ref()
            .unwrap()
            .pod_anti_affinity
            .as_ref()
            .unwrap();
        let preferred = anti
            .preferred_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap();
        let term = &preferred[0].pod_affinity_term;
        assert_eq!(term.topology_key, "kubernetes.io/hostname");
        let wanted = term
            .label_selector
            .as_ref()
            .unwrap()
            .match_labels
            .clone()
            .unwrap();
        assert_eq!(wanted, pod_labels(deployment));
        assert!(anti.required_during_scheduling_ignored_during_execution.is_none());
    }

    // Disruption budgets keep one of each up.
    for (name, deployment) in [("bulkhead-operator", &operator), ("bulkhead-gateway", &gateway)] {
        let pdb: PodDisruptionBudget = r.get("PodDisruptionBudget", name);
        let pdb = pdb.spec.unwrap();
        assert_eq!(
            pdb.min_available,
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
        );
        assert_eq!(
            pdb.selector.unwrap().match_labels.unwrap(),
            selector(deployment),
            "{name}"
        );
    }

    // Bulkhead's own NetworkPolicies: the gateway takes its two ports, the operator its admin port; without a
    // cluster to look the API server up in, its ports are open to any address.
    let gateway_policy: NetworkPolicy = r.get("NetworkPolicy", "bulkhead-gateway");
    assert_eq!(ingress_ports(&gateway_policy), BTreeSet::from([8443, 9090]));
    let operator_policy: NetworkPolicy = r.get("NetworkPolicy", "bulkhead-operator");
    assert_eq!(ingress_ports(&operator_policy), BTreeSet::from([8080]));
    assert_eq!(
        operator_policy
            .spec
            .as_ref()
            .unwrap()
            .pod_selector
            .clone()
            .unwrap()
            .match_labels
            .unwrap(),
        pod_labels(&operator)
    );
    for policy in [
        &gateway_policy,
        &operator_policy,
        &r.get("NetworkPolicy", "bulkhead-crds"),
    ] {
        let spec = policy.spec.as_ref().unwrap();
        assert_eq!(spec.policy_types, Some(strings(&["Ingress", "Egress"])));
        let (cidrs, ports) = egress_shape(&api_server_rule(policy));
        assert!(cidrs.is_empty());
        assert_eq!(ports, BTreeSet::from([443, 6443]));
    }
    let stacks = &gateway_policy.spec.as_ref().unwrap().egress.as_ref().unwrap()[0];
    let peer = &stacks.to.as_ref().unwrap()[0];
    assert_eq!(
        peer.namespace_selector
            .as_ref()
            .unwrap()
            .match_labels
            .clone()
            .unwrap(),
        BTreeMap::from([(
            bulkhead_crds::labels::MANAGED_BY.to_owned(),
            bulkhead_crds::labels::MANAGED_BY_VALUE.to_owned()
        )])
    );
    assert!(peer.pod_selector.is_none() && peer.ip_block.is_none());

    // The CRD hook: runs `crds apply` before install and upgrade, after its own ServiceAccount and RBAC.
    let job_spec = job.spec.as_ref().unwrap();
    assert_eq!(
        job_spec.template.spec.as_ref().unwrap().containers[0]
            .args
            .clone()
            .unwrap(),
        strings(&["crds", "apply"])
    );
    assert!(job_spec.active_deadline_seconds.is_some() && job_spec.ttl_seconds_after_finished.is_some());
    assert!(job_spec.backoff_limit.unwrap() <= 3);
    let job_object = r.find("Job", "bulkhead-crds").unwrap();
    let weight =
        |o: &DynamicObject| -> i32 { annotation(o, "helm.sh/hook-weight").unwrap().parse().unwrap() };
    for kind in [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "NetworkPolicy",
        "Job",
    ] {
        let object = r.find(kind, "bulkhead-crds").unwrap();
        assert_eq!(
            annotation(object, "helm.sh/hook"),
            Some("pre-install,pre-upgrade"),
            "{kind}"
        );
        assert_eq!(
            annotation(object, "helm.sh/hook-delete-policy"),
            Some("before-hook-creation,hook-succeeded"),
            "{kind}"
        );
        if kind != "Job" {
            assert!(weight(object) < weight(job_object), "{kind} comes before the Job");
        }
    }
    let hook_role: ClusterRole = r.get("ClusterRole", "bulkhead-crds");
    let rules: Vec<_> = hook_role
        .rules
        .unwrap()
        .into_iter()
        .map(|rule| {
            (
                rule.verbs,
                rule.resource_names,
                rule.resources.unwrap(),
                rule.api_groups.unwrap(),
            )
        })
        .collect();
    let crd = (
        strings(&["customresourcedefinitions"]),
        strings(&["apiextensions.k8s.io"]),
    );
    assert_eq!(
        rules,
        vec![
            (strings(&["create"]), None, crd.0.clone(), crd.1.clone()),
            (
                strings(&["get", "patch"]),
                Some(strings(&["tenants.bulkhead.dev", "customers.bulkhead.dev"])),
                crd.0,
                crd.1
            ),
        ]
    );

    // Nothing optional by default, and everything namespaced lands in the release namespace.
    for (kind, name) in [
        ("HorizontalPodAutoscaler", "bulkhead-gateway"),
        ("ServiceMonitor", "bulkhead-gateway"),
        ("Service", "bulkhead-operator-metrics"),
    ] {
        assert!(!r.has(kind, name), "{kind} {name}");
    }
    for object in &r.objects {
        let kind = Rendered::kind_of(object);
        if !matches!(
            kind,
            "ClusterRole"
                | "ClusterRoleBinding"
                | "ValidatingAdmissionPolicy"
                | "ValidatingAdmissionPolicyBinding"
        ) {
            assert_eq!(object.metadata.namespace.as_deref(), Some(NAMESPACE), "{kind}");
        }
    }
}

#[test]
fn the_gateway_may_only_read_tenants_and_customers() {
    let r = Rendered::render(&[minimal()], Value::Null);
    let role: ClusterRole = r.get("ClusterRole", "bulkhead-gateway");
    let rules = role.rules.unwrap();
    assert_eq!(rules.len(), 1, "{rules:?}");
    let rule = &rules[0];
    assert_eq!(rule.api_groups, Some(strings(&["bulkhead.dev"])));
    assert_eq!(rule.resources, Some(strings(&["tenants", "customers"])));
    assert_eq!(rule.verbs, strings(&["get", "list", "watch"]));
    assert!(rule.resource_names.is_none() && rule.non_resource_urls.is_none());
    assert!(role.aggregation_rule.is_none());
    let binding: ClusterRoleBinding = r.get("ClusterRoleBinding", "bulkhead-gateway");
    assert_eq!(binding.role_ref.name, "bulkhead-gateway");
    let subjects = binding.subjects.unwrap();
    assert_eq!(subjects.len(), 1);
    assert_eq!(
        (
            subjects[0].kind.as_str(),
            subjects[0].name.as_str(),
            subjects[0].namespace.as_deref()
        ),
        ("ServiceAccount", "bulkhead-gateway", Some(NAMESPACE))
    );
}

#[test]
fn the_operator_reads_the_postgres_admin_secret_by_name_only_when_one_is_configured() {
    use bulkhead_operator::process::rbac;
    let r = Rendered::render(&[minimal()], Value::Null);
    assert!(!r.has("Role", rbac::POSTGRES_ADMIN), "{:?}", r.names());
    assert!(!r.has("RoleBinding", rbac::POSTGRES_ADMIN), "{:?}", r.names());
    let r = Rendered::render(
        &[minimal()],
        json!({"postgres": {"adminSecret": {"name": "pg-admin"},
        "host": "db.example", "cidr": "198.18.9.9/32"}}),
    );
    let role: k8s_openapi::api::rbac::v1::Role = r.get("Role", rbac::POSTGRES_ADMIN);
    assert_eq!(role.rules, rbac::admin_secret_role(NAMESPACE, "pg-admin").rules);
    let binding: k8s_openapi::api::rbac::v1::RoleBinding = r.get("RoleBinding", rbac::POSTGRES_ADMIN);
    let account = k8s_openapi::api::rbac::v1::Subject {
        kind: "ServiceAccount".into(),
        name: "bulkhead-operator".into(),
        namespace: Some(NAMESPACE.into()),
        api_group: None,
    };
    let expected = rbac::admin_secret_binding(NAMESPACE, account);
    assert_eq!(
        (binding.role_ref, binding.subjects),
        (expected.role_ref, expected.subjects)
    );
}

#[test]
fn verify_gets_read_only_rbac_and_the_same_rules_as_its_code() {
    use bulkhead_operator::process::rbac;
    let r = Rendered::render(&[minimal()], Value::Null);
    let role: ClusterRole = r.get("ClusterRole", rbac::VERIFIER);
    assert_eq!(role.rules, rbac::verify_cluster_role().rules);
    for rule in role.rules.iter().flatten() {
        assert_eq!(rule.verbs, strings(&["get", "list"]), "{rule:?}");
        assert!(
            !rule.resources.iter().flatten().any(|r| r == "secrets"),
            "{rule:?}"
        );
    }
    let binding: ClusterRoleBinding = r.get("ClusterRoleBinding", rbac::VERIFIER);
    assert_eq!(binding.role_ref.name, rbac::VERIFIER);
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!(
        (
            subject.kind.as_str(),
            subject.name.as_str(),
            subject.namespace.as_deref()
        ),
        ("ServiceAccount", rbac::VERIFIER, Some(NAMESPACE))
    );
    let namespaced: k8s_openapi::api::rbac::v1::Role = r.get("Role", rbac::VERIFIER);
    assert_eq!(namespaced.rules, rbac::verify_role(NAMESPACE, None).rules);
    // With an admin Secret, that Secret by name and nothing else.
    let r = Rendered::render(
        &[minimal()],
        json!({"postgres": {"adminSecret": {"name": "pg-admin"},
        "host": "db.example", "cidr": "198.18.9.9/32"}}),
    );
    let namespaced: k8s_openapi::api::rbac::v1::Role = r.get("Role", rbac::VERIFIER);
    assert_eq!(
        namespaced.rules,
        rbac::verify_role(NAMESPACE, Some("pg-admin")).rules
    );
}

#[test]
fn the_gateway_pod_labels_have_one_source_of_truth() {
    let default_labels = Settings::default().gateway.pod_labels;
    let custom = BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "edge".to_owned()),
        ("tier".to_owned(), "gateway".to_owned()),
    ]);
    for (overlay, expected) in [
        (Value::Null, default_labels),
        (
            // Helm merges maps with the defaults: a default label is dropped by setting it to null.
            json!({"gateway": {"podLabels": {
                "app.kubernetes.io/name": "edge",
                "app.kubernetes.io/component": null,
                "tier": "gateway",
            }}}),
            custom,
        ),
    ] {
        let r = Rendered::render(&[minimal()], overlay);
        let gateway: Deployment = r.get("Deployment", "bulkhead-gateway");
        assert_eq!(pod_labels(&gateway), expected, "pod labels");
        assert_eq!(selector(&gateway), expected, "Deployment selector");
        let service: Service = r.get("Service", "bulkhead-gateway");
        assert_eq!(
            service.spec.unwrap().selector.unwrap(),
            expected,
            "Service selector"
        );
        let pdb: PodDisruptionBudget = r.get("PodDisruptionBudget", "bulkhead-gateway");
        assert_eq!(
            pdb.spec.unwrap().selector.unwrap().match_labels.unwrap(),
            expected,
            "PDB selector"
        );
        let policy: NetworkPolicy = r.get("NetworkPolicy", "bulkhead-gateway");
        assert_eq!(
            policy.spec.unwrap().pod_selector.unwrap().match_labels.unwrap(),
            expected,
            "policy"
        );
        let args = r.operator_args();
        let flagged = parse_labels(flag(&args, "--gateway-pod-labels").unwrap()).unwrap();
        assert_eq!(flagged, expected, "--gateway-pod-labels");
        assert_eq!(flag(&args, "--gateway-namespace"), Some(NAMESPACE));
        // The operator's pods are not gateway pods.
        let operator: Deployment = r.get("Deployment", "bulkhead-operator");
        let operator_labels = pod_labels(&operator);
        assert!(expected.iter().any(|(k, v)| operator_labels.get(k) != Some(v)));
    }
    // Labels that would also select the operator's pods are refused.
    let output = template_output(
        &helm(),
        &Values::new(
            &[minimal()],
            json!({"gateway": {"podLabels": {
                "app.kubernetes.io/name": "bulkhead",
                "app.kubernetes.io/component": null,
            }}}),
        ),
        &[],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("gateway.podLabels") && stderr.contains("operator"),
        "{stderr}"
    );
}

#[test]
fn the_operator_gets_the_hand_written_installs_flags() {
    // Without a database: exactly the sandbox's install, plus leader election.
    let r = Rendered::render(&[minimal()], json!({"operator": {"logFormat": "plain"}}));
    let mut expected = strings(&["run", "--leader-elect"]);
    expected.extend(install::operator_args(None).into_iter().skip(1));
    assert_eq!(r.operator_args(), expected);
    let policy: NetworkPolicy = r.get("NetworkPolicy", "bulkhead-operator");
    let egress = policy.spec.unwrap().egress.unwrap();
    assert_eq!(egress.len(), 2, "API server and DNS only: {egress:?}");

    // With one: the same flags as the sandbox's, the resync and grant sweep periods, and egress to the server.
    let database = install::Database {
        host: "10.0.5.17".parse().unwrap(),
        port: 5433,
        admin_dsn: String::new(),
    };
    let postgres = json!({"postgres": {
        "adminSecret": {"name": install::POSTGRES_ADMIN_SECRET},
        "host": "10.0.5.17",
        "port": 5433,
        "cidr": "10.0.5.17/32",
    }, "operator": {"logFormat": "plain", "databaseResyncSeconds": 90, "grantSweepSeconds": 2}});
    let r = Rendered::render(&[minimal()], postgres.clone());
    let mut expected = strings(&["run", "--leader-elect"]);
    expected.extend(install::operator_args(Some(&database)).into_iter().skip(1));
    expected.extend(strings(&[
        "--database-resync-seconds",
        "90",
        "--grant-sweep-seconds",
        "2",
    ]));
    assert_eq!(r.operator_args(), expected);
    let policy: NetworkPolicy = r.get("NetworkPolicy", "bulkhead-operator");
    let shapes = egress_shapes(&policy);
    assert!(
        shapes.contains(&(
            BTreeSet::from(["10.0.5.17/32".to_owned()]),
            BTreeSet::from([5433])
        )),
        "{shapes:?}"
    );

    // URL parameters for the stacks.
    let mut with_params = postgres;
    with_params["postgres"]["urlParams"] = json!("sslmode=require");
    let args = Rendered::render(&[minimal()], with_params).operator_args();
    assert_eq!(flag(&args, "--postgres-url-params"), Some("sslmode=require"));
}

#[test]
fn other_postgres_servers_get_a_flag_their_admin_secret_by_name_and_operator_egress() {
    use bulkhead_operator::process::rbac;
    let values = json!({"postgres": {
        "adminSecret": {"name": "pg-admin"},
        "host": "db.example",
        "cidr": "198.18.9.9/32",
        "servers": [
            {"name": "eu-2", "adminSecret": {"name": "pg-eu-admin"}, "host": "db-eu.example", "port": 6432,
             "cidr": "198.18.10.0/24"},
            {"name": "us-1", "adminSecret": {"name": "pg-us-admin"}, "host": "db-us.example",
             "cidr": "198.18.11.1/32"}
        ]
    }});
    let r = Rendered::render(&[minimal()], values.clone());
    let args = r.operator_args();
    let servers: Vec<&str> = args
        .windows(2)
        .filter(|w| w[0] == "--postgres-server")
        .map(|w| w[1].as_str())
        .collect();
    let expected = [
        format!("name=eu-2,secret={NAMESPACE}/pg-eu-admin,host=db-eu.example,port=6432,cidr=198.18.10.0/24"),
        format!("name=us-1,secret={NAMESPACE}/pg-us-admin,host=db-us.example,port=5432,cidr=198.18.11.1/32"),
    ];
    assert_eq!(servers, expected);
    for text in servers {
        bulkhead_operator::settings::parse_server(text).unwrap();
    }
    assert!(flag(&args, "--postgres-default-server").is_none(), "{args:?}");
    let role: k8s_openapi::api::rbac::v1::Role = r.get("Role", rbac::POSTGRES_ADMIN);
    let names = role.rules.unwrap()[0].resource_names.clone().unwrap();
    assert_eq!(names, strings(&["pg-admin", "pg-eu-admin", "pg-us-admin"]));
    let verify: k8s_openapi::api::rbac::v1::Role = r.get("Role", rbac::VERIFIER);
    let secrets = verify
        .rules
        .unwrap()
        .into_iter()
        .find(|rule| rule.resources.iter().flatten().any(|r| r == "secrets"))
        .and_then(|rule| rule.resource_names)
        .unwrap();
    assert_eq!(secrets, strings(&["pg-admin", "pg-eu-admin", "pg-us-admin"]));
    let policy: NetworkPolicy = r.get("NetworkPolicy", "bulkhead-operator");
    let shapes = egress_shapes(&policy);
    for (cidr, port) in [
        ("198.18.9.9/32", 5432),
        ("198.18.10.0/24", 6432),
        ("198.18.11.1/32", 5432),
    ] {
        assert!(
            shapes.contains(&(BTreeSet::from([cidr.to_owned()]), BTreeSet::from([port]))),
            "{cidr}: {shapes:?}"
        );
    }
    // Another name for the default server.
    let mut renamed = values;
    renamed["postgres"]["defaultServerName"] = json!("primary");
    let args = Rendered::render(&[minimal()], renamed).operator_args();
    assert_eq!(flag(&args, "--postgres-default-server"), Some("primary"));
}

#[test]
fn the_rendered_gateway_config_is_accepted_by_the_gateway() {
    // Defaults: the gateway's own defaults, one issuer from its JWKS URL, routes from the cluster.
    let r = Rendered::render(&[minimal()], Value::Null);
    let settings = r.gateway_config();
    let file = &settings.file;
    assert_eq!(file.listen.to_string(), "0.0.0.0:8443");
    assert_eq!(file.admin.to_string(), "0.0.0.0:9090");
    assert_eq!(
        format!("{:?}", file.tokens),
        format!("{:?}", TokenFile::default())
    );
    assert_eq!(format!("{:?}", file.keys), format!("{:?}", KeysFile::default()));
    assert_eq!(format!("{:?}", file.cache), format!("{:?}", CacheFile::default()));
    assert_eq!(format!("{:?}", file.proxy), format!("{:?}", ProxyFile::default()));
    assert_eq!(file.routes.source, RouteSource::Kubernetes);
    assert_eq!(file.routes.service_suffix, "svc");
    assert!(file.rate_limit.is_none() && settings.cors.is_none());
    assert_eq!(file.audit.checkpoint_seconds, 60);
    assert!(matches!(&settings.issuer_keys[0].source, KeySource::JwksUrl(url)
        if url == "https://clerk.example.com/.well-known/jwks.json"));

    // Every feature: three key sources, each file mounted from its Secret's key.
    let r = Rendered::render(&[full()], Value::Null);
    let settings = r.gateway_config();
    assert_eq!(settings.file.admin.port(), 9091);
    assert!(settings.cors.is_some());
    assert_eq!(settings.file.tokens.allowed_typ, ["at+jwt"]);
    let limit = settings.file.rate_limit.unwrap();
    assert_eq!((limit.per_second, limit.burst), (12.5, 40));
    let proxy = &settings.file.proxy;
    assert_eq!((proxy.max_tunnel_seconds, proxy.max_tunnels_per_org), (900, 20));
    let gateway: Deployment = r.get("Deployment", "bulkhead-gateway");
    let spec = pod_spec(&gateway);
    let container = &spec.containers[0];
    let admin = container
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .find(|p| p.name.as_deref() == Some("admin"));
    assert_eq!(admin.unwrap().container_port, 9091);
    // (file, the Secret and key it must come from)
    let mut files = Vec::new();
    match &settings.issuer_keys[0].source {
        KeySource::JwksUrl(_) => {}
        other => panic!("issuer 0: {other:?}"),
    }
    match &settings.issuer_keys[1].source {
        KeySource::Pem(keys) => {
            assert_eq!(keys.len(), 2);
            files.push((keys[0].path.clone(), "idp-keys", "idp-2024.pem"));
            files.push((keys[1].path.clone(), "idp-keys", "idp-2025.pem"));
        }
        other => panic!("issuer 1: {other:?}"),
    }
    match &settings.issuer_keys[2].source {
        KeySource::JwksFile(path) => files.push((path.clone(), "sso-jwks", "jwks.json")),
        other => panic!("issuer 2: {other:?}"),
    }
    let volumes = spec.volumes.clone().unwrap();
    for (path, secret, key) in files {
        let dir = path.parent().unwrap();
        let mount = container
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| Path::new(&m.mount_path) == dir)
            .unwrap_or_else(|| panic!("nothing mounted at {}", dir.display()));
        assert_eq!(mount.read_only, Some(true));
        let volume = volumes.iter().find(|v| v.name == mount.name).unwrap();
        let source = volume.secret.as_ref().unwrap();
        assert_eq!(source.secret_name.as_deref(), Some(secret));
        let item = source.items.iter().flatten().find(|i| i.key == key).unwrap();
        assert_eq!(dir.join(&item.path), path);
    }

    // A whole-number rate is a number to the gateway too.
    let r = Rendered::render(&[minimal()], json!({"gateway": {"rateLimit": {"enabled": true}}}));
    let limit = r.gateway_config().file.rate_limit.unwrap();
    assert_eq!((limit.per_second, limit.burst), (50.0, 100));
}

#[test]
fn optional_features_render_as_configured() {
    // Autoscaling leaves the replicas to the HorizontalPodAutoscaler.
    let r = Rendered::render(&[full()], Value::Null);
    let gateway: Deployment = r.get("Deployment", "bulkhead-gateway");
    assert_eq!(gateway.spec.as_ref().unwrap().replicas, None);
    let hpa: HorizontalPodAutoscaler = r.get("HorizontalPodAutoscaler", "bulkhead-gateway");
    let hpa = hpa.spec.unwrap();
    assert_eq!((hpa.min_replicas, hpa.max_replicas), (Some(3), 12));
    assert_eq!(
        (
            hpa.scale_target_ref.kind.as_str(),
            hpa.scale_target_ref.name.as_str()
        ),
        ("Deployment", "bulkhead-gateway")
    );
    let operator: Deployment = r.get("Deployment", "bulkhead-operator");
    assert_eq!(operator.spec.as_ref().unwrap().replicas, Some(3));

    // ServiceMonitors find the gateway's Service and the operator's metrics Service by their labels.
    let monitors: Vec<&DynamicObject> = r
        .objects
        .iter()
        .filter(|o| Rendered::kind_of(o) == "ServiceMonitor")
        .collect();
    assert_eq!(monitors.len(), 2);
    let metrics: Service = r.get("Service", "bulkhead-operator-metrics");
    assert_eq!(
        metrics.spec.as_ref().unwrap().selector.clone().unwrap(),
        pod_labels(&operator)
    );
    for monitor in monitors {
        assert_eq!(monitor.metadata.labels.as_ref().unwrap()["release"], "prometheus");
        let wanted: BTreeMap<String, String> =
            serde_json::from_value(monitor.data["spec"]["selector"]["matchLabels"].clone()).unwrap();
        let services: Vec<Service> = r
            .objects
            .iter()
            .filter(|o| Rendered::kind_of(o) == "Service")
            .map(|o| serde_json::from_value(serde_json::to_value(o).unwrap()).unwrap())
            .filter(|s: &Service| {
                let labels = s.metadata.labels.clone().unwrap_or_default();
                wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
            })
            .collect();
        assert_eq!(
            services.len(),
            1,
            "{:?} selects {services:?}",
            monitor.metadata.name
        );
        let port = monitor.data["spec"]["endpoints"][0]["port"].as_str().unwrap();
        assert!(
            services[0]
                .spec
                .as_ref()
                .unwrap()
                .ports
                .iter()
                .flatten()
                .any(|p| p.name.as_deref() == Some(port))
        );
    }

    // Explicit API server addresses and JWKS endpoints.
    let policy: NetworkPolicy = r.get("NetworkPolicy", "bulkhead-gateway");
    let (cidrs, ports) = egress_shape(&api_server_rule(&policy));
    assert_eq!(
        cidrs,
        BTreeSet::from(["10.0.0.1/32".to_owned(), "172.18.0.2/32".to_owned()])
    );
    assert_eq!(ports, BTreeSet::from([443, 6443]));
    let shapes = egress_shapes(&policy);
    assert!(shapes.contains(&(
        BTreeSet::from(["203.0.113.10/32".to_owned()]),
        BTreeSet::from([443])
    )));
    assert!(shapes.contains(&(
        BTreeSet::from(["2001:db8::/64".to_owned()]),
        BTreeSet::from([443, 8443])
    )));

    // Off switches.
    let r = Rendered::render(
        &[minimal()],
        json!({"networkPolicy": {"enabled": false}, "crdUpgrade": {"enabled": false},
               "operator": {"replicas": 1}, "gateway": {"replicas": 1}}),
    );
    assert_eq!(r.count("NetworkPolicy"), 0, "{:?}", r.names());
    assert_eq!(r.count("Job"), 0);
    assert!(
        r.objects
            .iter()
            .all(|o| o.metadata.name.as_deref() != Some("bulkhead-crds"))
    );
    assert!(r.objects.iter().all(|o| annotation(o, "helm.sh/hook").is_none()));
    assert_eq!(
        r.count("PodDisruptionBudget"),
        0,
        "one replica: no budget that would block drains"
    );
    let gateway: Deployment = r.get("Deployment", "bulkhead-gateway");
    assert_eq!(gateway.spec.unwrap().replicas, Some(1));
}

#[test]
fn wrong_values_are_refused_naming_the_value() {
    let issuer = |extra: Value| {
        let mut issuer = json!({"issuer": "https://a.example", "algorithms": ["RS256"],
                                "jwksUrl": "https://a.example/jwks"});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                issuer.as_object_mut().unwrap().remove(k);
            } else {
                issuer[k] = v.clone();
            }
        }
        json!({"gateway": {"issuers": [issuer]}})
    };
    let cases: Vec<(Value, &[&str])> = vec![
        // The schema.
        (json!({"gateway": {"replicas": 0}}), &["/gateway/replicas"]),
        (json!({"gateway": {"replicas": "two"}}), &["/gateway/replicas"]),
        (json!({"operator": {"replicas": 1.5}}), &["/operator/replicas"]),
        (json!({"gateway": {"surprise": true}}), &["/gateway", "surprise"]),
        (json!({"surprise": {}}), &["surprise"]),
        (
            json!({"operator": {"logFormat": "xml"}}),
            &["/operator/logFormat"],
        ),
        (
            json!({"gateway": {"image": {"pullPolicy": "Sometimes"}}}),
            &["/gateway/image/pullPolicy"],
        ),
        (
            json!({"gateway": {"service": {"type": "External"}}}),
            &["/gateway/service/type"],
        ),
        (json!({"gateway": {"proxyPort": 70000}}), &["/gateway/proxyPort"]),
        (json!({"operator": {"adminPort": 0}}), &["/operator/adminPort"]),
        (
            json!({"postgres": {"adminSecret": {"name": "pg"}, "host": "db", "cidr": "10.0.0.0/33"}}),
            &["/postgres/cidr"],
        ),
        (
            json!({"postgres": {"adminSecret": {"name": "pg"}}}),
            &["/postgres/host", "/postgres/cidr"],
        ),
        (
            json!({"postgres": {"adminSecret": {"name": "pg"}, "host": "db", "cidr": "10.0.0.1/32",
                                "servers": [{"name": "eu-2", "adminSecret": {"name": "pg-eu"},
                                             "host": "db-eu", "cidr": "10.0.1.0/33"}]}}),
            &["/postgres/servers/0/cidr"],
        ),
        (
            json!({"postgres": {"adminSecret": {"name": "pg", "key": "password"}, "host": "db",
                                "cidr": "10.0.0.1/32"}}),
            &["/postgres/adminSecret/key"],
        ),
        (
            json!({"networkPolicy": {"apiServer": {"cidrs": ["10.0.0.1"]}}}),
            &["/networkPolicy/apiServer/cidrs/0"],
        ),
        (
            json!({"networkPolicy": {"apiServer": {"ports": []}}}),
            &["/networkPolicy/apiServer/ports"],
        ),
        (
            json!({"gateway": {"jwksEgress": [{"cidr": "300.0.0.0/8", "ports": [443]}]}}),
            &["/gateway/jwksEgress/0/cidr"],
        ),
        (
            json!({"gateway": {"tokens": {"leewaySeconds": 600}}}),
            &["/gateway/tokens/leewaySeconds"],
        ),
        (
            json!({"gateway": {"tokens": {"allowedTyp": ["at+jwt; charset=utf-8"]}}}),
            &["/gateway/tokens/allowedTyp/0"],
        ),
        (
            json!({"serviceMonitor": {"interval": "soon"}}),
            &["/serviceMonitor/interval"],
        ),
        (
            json!({"gateway": {"cors": {"enabled": true}}}),
            &["/gateway/cors/allowedOrigins"],
        ),
        (
            issuer(json!({"algorithms": ["HS256"]})),
            &["/gateway/issuers/0/algorithms/0"],
        ),
        (
            issuer(json!({"jwksUrl": "http://a.example/jwks"})),
            &["/gateway/issuers/0/jwksUrl"],
        ),
        (
            issuer(json!({"aud": {"mode": "require"}})),
            &["/gateway/issuers/0/aud"],
        ),
        (
            issuer(json!({"aud": {"mode": "sometimes"}})),
            &["/gateway/issuers/0/aud/mode"],
        ),
        // Checks across values.
        (
            issuer(
                json!({"keySecret": {"name": "k", "keys": [{"kid": "a", "algorithm": "RS256", "key": "a.pem"}]}}),
            ),
            &["gateway.issuers[0]: exactly one of jwksUrl, jwksSecret, keySecret"],
        ),
        (
            issuer(json!({"jwksUrl": null})),
            &["gateway.issuers[0]: exactly one of"],
        ),
        (
            issuer(json!({"jwksUrl": null,
                          "keySecret": {"name": "k", "keys": [{"kid": "a", "algorithm": "ES256", "key": "a.pem"}]}})),
            &["gateway.issuers[0].keySecret.keys[0].algorithm"],
        ),
        (
            json!({"gateway": {"issuers": [
                {"issuer": "https://a.example", "algorithms": ["RS256"], "jwksUrl": "https://a.example/1"},
                {"issuer": "https://a.example", "algorithms": ["RS256"], "jwksUrl": "https://a.example/2"}]}}),
            &["gateway.issuers[1].issuer", "listed twice"],
        ),
        (json!({"gateway": {"adminPort": 8443}}), &["gateway.adminPort"]),
        (
            json!({"gateway": {"autoscaling": {"enabled": true, "minReplicas": 5, "maxReplicas": 3}}}),
            &["gateway.autoscaling.minReplicas"],
        ),
        (
            json!({"operator": {"pdb": {"minAvailable": 2}}}),
            &["operator.pdb.minAvailable"],
        ),
        (
            json!({"gateway": {"proxy": {"shutdownGraceSeconds": 30}}}),
            &["gateway.terminationGracePeriodSeconds"],
        ),
    ];
    let helm = helm();
    let mut wrong = Vec::new();
    for (overlay, wanted) in cases {
        let output = template_output(&helm, &Values::new(&[minimal()], overlay.clone()), &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.success() || !wanted.iter().all(|w| stderr.contains(w)) {
            wrong.push(format!("{overlay}: exit {}, stderr: {stderr}", output.status));
        }
    }
    assert!(wrong.is_empty(), "not refused as expected:\n{}", wrong.join("\n"));
}

/// The chart's pods, as Pods the API server's Pod Security admission must admit in a `restricted` namespace.
fn pods_of(r: &Rendered) -> Vec<DynamicObject> {
    let mut templates = Vec::new();
    for name in ["bulkhead-operator", "bulkhead-gateway"] {
        let deployment: Deployment = r.get("Deployment", name);
        templates.push((name, deployment.spec.unwrap().template));
    }
    if r.has("Job", "bulkhead-crds") {
        let job: Job = r.get("Job", "bulkhead-crds");
        templates.push(("bulkhead-crds", job.spec.unwrap().template));
    }
    templates
        .into_iter()
        .map(|(name, template)| {
            let pod = json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": format!("{name}-pod-security"), "namespace": NAMESPACE},
                "spec": template.spec,
            });
            serde_json::from_value(pod).unwrap()
        })
        .collect()
}

async fn dry_run_all(client: &kube::Client, origin: &str, objects: &[DynamicObject]) -> usize {
    let outcomes = dry_run_objects(client, origin, objects).await.unwrap();
    let refused: Vec<String> = outcomes
        .iter()
        .filter_map(|(applied, outcome)| {
            outcome
                .as_ref()
                .err()
                .map(|e| format!("{} {}: {e}", applied.kind, applied.name))
        })
        .collect();
    assert!(refused.is_empty(), "{origin}: refused:\n{}", refused.join("\n"));
    outcomes.len()
}

#[tokio::test]
async fn a_real_api_server_accepts_the_chart_and_its_pods() {
    bulkhead_e2e::init_test_logging();
    // No CRDs yet: the hook's own RBAC must be enough to create them.
    let plane = ControlPlane::start().await.unwrap();
    let client = plane.admin().await.unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace = serde_json::from_value(json!({
        "metadata": {"name": NAMESPACE, "labels": {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/warn": "restricted",
        }},
    }))
    .unwrap();
    namespaces
        .patch(
            NAMESPACE,
            &PatchParams::apply("chart-test"),
            &Patch::Apply(&namespace),
        )
        .await
        .unwrap();

    // Installed against a cluster, the API server's address is looked up: its endpoint and the Service's
    // ClusterIP, on the ports given plus the ones found.
    // Installed against a cluster, the API server's address is looked up from the `kubernetes` EndpointSlice.
    // This control plane advertises a loopback address and so publishes none: the chart then opens the API
    // server's ports to any address rather than guess.
    let helm = Helm::new(Some(plane.kubeconfig_path())).unwrap();
    let unknown = Rendered::of(&helm, &[minimal()], Value::Null, &["--dry-run=server"]);
    let policy: NetworkPolicy = unknown.get("NetworkPolicy", "bulkhead-operator");
    let (cidrs, ports) = egress_shape(&api_server_rule(&policy));
    assert!(cidrs.is_empty(), "{cidrs:?}");
    assert_eq!(ports, BTreeSet::from([443, 6443]));

    // The install notes read the cluster too: the namespace's Pod Security label, the API server's addresses.
    let chart = chart_dir().display().to_string();
    let minimal_file = minimal().display().to_string();
    let notes = |namespace: &str, extra: &[&str]| {
        let mut args = vec![
            "install",
            RELEASE,
            &chart,
            "--namespace",
            namespace,
            "--values",
            &minimal_file,
        ];
        args.extend(["--dry-run=server"]);
        args.extend(extra);
        let out = helm.run_ok(&args).unwrap();
        out[out.find("NOTES:").expect("NOTES")..].to_owned()
    };
    let enforced = notes(NAMESPACE, &[]);
    assert!(
        enforced.contains("Pod Security `restricted` is enforced in bulkhead-system"),
        "{enforced}"
    );
    assert!(enforced.contains("ports 443, 6443 on any address"), "{enforced}");
    assert!(
        enforced.contains("postgres.adminSecret.name is not set"),
        "{enforced}"
    );
    assert!(
        enforced.contains(
            "Guard rails: the ValidatingAdmissionPolicies bulkhead-* refuse anyone but the operator"
        ) && enforced.contains("members of the group bulkhead:break-glass may"),
        "{enforced}"
    );
    let unguarded = notes(NAMESPACE, &["--set", "admissionPolicies.enabled=false"]);
    assert!(!unguarded.contains("Guard rails"), "{unguarded}");
    let unlabelled = notes(
        "bulkhead-elsewhere",
        &[
            "--set",
            "postgres.adminSecret.name=pg,postgres.host=db.example,postgres.cidr=192.0.2.20/32",
        ],
    );
    assert!(
        unlabelled.contains("kubectl label namespace bulkhead-elsewhere --overwrite"),
        "{unlabelled}"
    );
    assert!(
        unlabelled.contains("kubectl -n bulkhead-elsewhere create secret generic pg"),
        "{unlabelled}"
    );

    // Published as a cluster's API server publishes it (an address from TEST-NET-1 and a port of its own: the
    // API accepts no loopback endpoint, and nothing is sent there), the endpoint and the Service's ClusterIP are
    // allowed, on the ports given plus the one found.
    let (host, port) = ("192.0.2.10", 16443);
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [host]}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    }))
    .unwrap();
    Api::<EndpointSlice>::namespaced(client.clone(), "default")
        .patch(
            "kubernetes",
            &PatchParams::apply("chart-test"),
            &Patch::Apply(&slice),
        )
        .await
        .unwrap();
    let looked_up = Rendered::of(&helm, &[minimal()], Value::Null, &["--dry-run=server"]);
    let service_ip = format!("{}/32", bulkhead_e2e::control_plane::KUBERNETES_SERVICE_IP);
    for name in ["bulkhead-gateway", "bulkhead-operator", "bulkhead-crds"] {
        let policy: NetworkPolicy = looked_up.get("NetworkPolicy", name);
        let (cidrs, ports) = egress_shape(&api_server_rule(&policy));
        assert_eq!(
            cidrs,
            BTreeSet::from([format!("{host}/32"), service_ip.clone()]),
            "{name}"
        );
        assert_eq!(ports, BTreeSet::from([443, 6443, port]), "{name}");
    }

    // Every object of both renders passes validation and admission; the full values without the
    // ServiceMonitors, whose CRD this server does not have.
    let without_monitors = json!({"serviceMonitor": {"enabled": false}});
    let full = Rendered::render(&[full()], without_monitors);
    let applied = dry_run_all(&client, "full values", &full.objects).await;
    assert_eq!(applied, full.objects.len());
    dry_run_all(&client, "minimal values, looked up", &looked_up.objects).await;

    // Pod Security `restricted` admits every pod the chart runs, and refuses one that is not restricted (so
    // the namespace really enforces it).
    for r in [&full, &looked_up] {
        dry_run_all(&client, "the chart's pods", &pods_of(r)).await;
    }
    let mut loose = pods_of(&full).remove(1);
    loose.data["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = json!(true);
    let outcomes = dry_run_objects(&client, "a loose pod", &[loose]).await.unwrap();
    let refused = outcomes[0]
        .1
        .as_ref()
        .expect_err("a pod allowing privilege escalation is refused");
    assert!(refused.to_string().contains("PodSecurity"), "{refused}");

    // The CRD hook's ClusterRole is all `crds apply` needs: bound to the operator's user (which has no other
    // rights), it creates the CRDs, and runs again (as on every upgrade); unbound, it may do nothing.
    let operator = plane.operator().await.unwrap();
    let denied = bulkhead_operator::process::crd_apply::apply(&operator, Duration::from_secs(30)).await;
    assert!(denied.unwrap_err().to_string().contains("forbidden"));
    let hook_role = looked_up.find("ClusterRole", "bulkhead-crds").unwrap().clone();
    let binding: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": "bulkhead-crds"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "bulkhead-crds"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                      "name": bulkhead_e2e::control_plane::OPERATOR_USER}],
    }))
    .unwrap();
    bulkhead_e2e::apply::apply_objects(&client, vec![("hook RBAC".into(), vec![hook_role, binding])])
        .await
        .unwrap();
    let mut created = None;
    for _ in 0..50 {
        // RBAC changes reach the authorizer's cache within moments.
        match bulkhead_operator::process::crd_apply::apply(&operator, Duration::from_secs(30)).await {
            Ok(applied) => {
                created = Some(applied);
                break;
            }
            Err(e) if e.to_string().contains("forbidden") => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("crds apply under the hook's role: {e}"),
        }
    }
    let created = created.expect("crds apply succeeds under the hook's role");
    assert!(
        created.iter().all(|a| a.outcome == Outcome::Created),
        "{created:?}"
    );

    // An older Tenant schema (one property less, written by another manager) is brought up to date.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let served_properties = |crd: &CustomResourceDefinition| -> BTreeSet<String> {
        let schema = crd.spec.versions[0].schema.as_ref().unwrap();
        let spec = &schema
            .open_api_v3_schema
            .as_ref()
            .unwrap()
            .properties
            .as_ref()
            .unwrap()["spec"];
        spec.properties.as_ref().unwrap().keys().cloned().collect()
    };
    let mut older = crds.get("tenants.bulkhead.dev").await.unwrap();
    for version in &mut older.spec.versions {
        let schema = version
            .schema
            .as_mut()
            .unwrap()
            .open_api_v3_schema
            .as_mut()
            .unwrap();
        let spec = schema.properties.as_mut().unwrap().get_mut("spec").unwrap();
        spec.properties.as_mut().unwrap().remove("network");
    }
    older.metadata.managed_fields = None;
    let older = crds
        .replace("tenants.bulkhead.dev", &PostParams::default(), &older)
        .await
        .unwrap();
    assert!(!served_properties(&older).contains("network"));
    let upgraded = bulkhead_operator::process::crd_apply::apply(&operator, Duration::from_secs(30))
        .await
        .expect("an upgrade under the hook's role");
    let tenants = upgraded
        .iter()
        .find(|a| a.name == "tenants.bulkhead.dev")
        .unwrap();
    assert_eq!(tenants.outcome, Outcome::Updated);
    let served = crds.get("tenants.bulkhead.dev").await.unwrap();
    assert!(served_properties(&served).contains("network"));
}
