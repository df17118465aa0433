use super::*;
use bulkhead_crds::v1alpha1::{EgressPort, EgressRule, Protocol, QuotaSpec, StackResources, StackSpec};
use serde_json::{Value, json};

use crate::settings::PostgresEndpoint;

fn stack() -> StackSpec {
    StackSpec {
        image: "registry.example.com/acme/portal:1.4.2".into(),
        port: 8080,
        replicas: 2,
        env: vec![bulkhead_crds::v1alpha1::EnvVar {
            name: "LOG_LEVEL".into(),
            value: Some("info".into()),
        }],
        resources: StackResources::default(),
    }
}

fn subject<'a>(stack: &'a StackSpec, quota: &'a QuotaSpec, egress: &'a [EgressRule]) -> Subject<'a> {
    Subject {
        tenant: "acme",
        customer: None,
        uid: "uid-1",
        stack,
        quota,
        egress,
        database_enabled: false,
        database_server: None,
        credentials_revision: None,
        retired: false,
    }
}

fn policy_json(d: &Desired, name: &str) -> Option<Value> {
    d.network_policies
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some(name))
        .map(|p| serde_json::to_value(p.spec.as_ref().unwrap()).unwrap())
}

#[test]
fn tenant_namespace_is_labelled_restricted_and_records_its_owner() {
    let (stack, quota) = (stack(), QuotaSpec::default());
    let d = desired(&subject(&stack, &quota, &[]), &Settings::default());
    let ns = serde_json::to_value(&d.namespace).unwrap();
    assert_eq!(ns["metadata"]["name"], "bk-acme");
    let labels = &ns["metadata"]["labels"];
    assert_eq!(labels["bulkhead.dev/tenant"], "acme");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "bulkhead");
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
    assert!(labels.get("bulkhead.dev/customer").is_none());
    assert!(labels.get("bulkhead.dev/orphaned").is_none());
    assert_eq!(ns["metadata"]["annotations"]["bulkhead.dev/owner-uid"], "uid-1");
}

#[test]
fn every_namespaced_object_lives_in_the_subjects_namespace_with_its_labels() {
    let (stack, quota) = (stack(), QuotaSpec::default());
    let mut s = subject(&stack, &quota, &[]);
    s.customer = Some("dental");
    let d = desired(&s, &Settings::default());
    let Desired {
        namespace,
        network_policies,
        resource_quota,
        limit_range,
        service_account,
        deployment,
        service,
    } = d;
    assert_eq!(namespace.metadata.name.as_deref(), Some("bk-acme-dental"));
    let metas = network_policies.iter().map(|p| &p.metadata).chain([
        &resource_quota.metadata,
        &limit_range.metadata,
        &service_account.metadata,
        &deployment.metadata,
        &service.metadata,
    ]);
    for meta in metas {
        assert_eq!(meta.namespace.as_deref(), Some("bk-acme-dental"));
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(
            labels.get("bulkhead.dev/tenant").map(String::as_str),
            Some("acme")
        );
        assert_eq!(
            labels.get("bulkhead.dev/customer").map(String::as_str),
            Some("dental")
        );
        assert!(
            meta.owner_references.is_none(),
            "no ownerReferences: deletion must never cascade"
        );
    }
}

#[test]
fn network_policies_deny_everything_and_open_exactly_the_listed_flows() {
    let (stack, quota) = (stack(), QuotaSpec::default());
    let d = desired(&subject(&stack, &quota, &[]), &Settings::default());
    let names: Vec<_> = d
        .network_policies
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "bulkhead-default-deny",
            "bulkhead-allow-gateway",
            "bulkhead-allow-dns",
            "bulkhead-allow-same-namespace"
        ]
    );

    assert_eq!(
        policy_json(&d, policy::DEFAULT_DENY).unwrap(),
        json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})
    );
    assert_eq!(
        policy_json(&d, policy::ALLOW_GATEWAY).unwrap(),
        json!({
            "podSelector": {"matchLabels": {"app.kubernetes.io/component": "stack"}},
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [{
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "bulkhead-system"}},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/component": "gateway", "app.kubernetes.io/name": "bulkhead"}}
                }],
                "ports": [{"port": 8080, "protocol": "TCP"}]
            }]
        })
    );
    assert_eq!(
        policy_json(&d, policy::ALLOW_DNS).unwrap(),
        json!({
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{
                "to": [{
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}
                }],
                "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
            }]
        })
    );
    assert_eq!(
        policy_json(&d, policy::ALLOW_SAME_NAMESPACE).unwrap(),
        json!({
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [{"podSelector": {}}]}],
            "egress": [{"to": [{"podSelector": {}}]}]
        })
    );
}

#[test]
fn postgres_egress_only_with_a_database_and_a_configured_server() {
    let (stack, quota) = (stack(), QuotaSpec::default());
    let mut settings = Settings::default();
    let mut s = subject(&stack, &quota, &[]);
    s.database_enabled = true;
    assert!(
        policy_json(&desired(&s, &settings), policy::ALLOW_POSTGRES).is_none(),
        "no server configured"
    );
    settings.postgres = Some(PostgresEndpoint {
        cidr: "10.0.5.17/32".into(),
        port: 5432,
    });
    assert_eq!(
        policy_json(&desired(&s, &settings), policy::ALLOW_POSTGRES).unwrap(),
        json!({
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": {"cidr": "10.0.5.17/32"}}], "ports": [{"port": 5432, "protocol": "TCP"}]}]
        })
    );
    s.database_enabled = false;
    assert!(
        policy_json(&desired(&s, &settings), policy::ALLOW_POSTGRES).is_none(),
        "database disabled"
    );
}

#[test]
fn postgres_egress_opens_exactly_the_server_the_database_is_on() {
    let (stack, quota) = (stack(), QuotaSpec::default());
    let mut database = crate::settings::DatabaseSettings::new("bulkhead-system/pg".parse().unwrap());
    let (name, eu) =
        crate::settings::parse_server("name=eu-2,secret=bulkhead-system/pg-eu,cidr=10.0.6.0/24,port=6432")
            .unwrap();
    database.servers.insert(name, eu);
    let settings = Settings {
        postgres: Some(PostgresEndpoint {
            cidr: "10.0.5.17/32".into(),
            port: 5432,
        }),
        database: Some(database),
        ..Settings::default()
    };
    let egress = |server: Option<&str>| {
        let mut s = subject(&stack, &quota, &[]);
        s.database_enabled = true;
        s.database_server = server;
        policy_json(&desired(&s, &settings), policy::ALLOW_POSTGRES).map(|p| p["egress"].clone())
    };
    let default = json!([{"to": [{"ipBlock": {"cidr": "10.0.5.17/32"}}], "ports": [{"port": 5432, "protocol": "TCP"}]}]);
    assert_eq!(egress(None), Some(default.clone()));
    assert_eq!(egress(Some("default")), Some(default));
    assert_eq!(
        egress(Some("eu-2")),
        Some(
            json!([{"to": [{"ipBlock": {"cidr": "10.0.6.0/24"}}], "ports": [{"port": 6432, "protocol": "TCP"}]}])
        )
    );
    assert_eq!(egress(Some("eu-3")), None, "an unknown server opens nothing");
}

#[test]
fn the_credentials_secret_is_referenced_never_copied_and_a_rotation_rolls_the_pods() {
    let (stack, quota) = (stack(), QuotaSpec::default());
    let mut s = subject(&stack, &quota, &[]);
    let template = |s: &Subject<'_>| {
        serde_json::to_value(&desired(s, &Settings::default()).deployment).unwrap()["spec"]["template"]
            .clone()
    };
    let names = |t: &serde_json::Value| -> Vec<String> {
        t["spec"]["containers"][0]["env"]
            .as_array()
            .map(|env| {
                env.iter()
                    .map(|e| e["name"].as_str().unwrap().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert!(
        !names(&template(&s))
            .iter()
            .any(|n| n.starts_with("PG") || n == "DATABASE_URL")
    );
    s.database_enabled = true;
    let t = template(&s);
    let env = names(&t);
    for wanted in [
        "DATABASE_URL",
        "PGHOST",
        "PGPORT",
        "PGDATABASE",
        "PGUSER",
        "PGPASSWORD",
    ] {
        assert!(env.iter().any(|n| n == wanted), "{wanted} missing in {env:?}");
    }
    let url = t["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "DATABASE_URL")
        .unwrap()
        .clone();
    assert_eq!(
        url["valueFrom"],
        json!({"secretKeyRef": {"name": "bulkhead-database", "key": "DATABASE_URL", "optional": false}})
    );
    assert!(url.get("value").is_none());
    assert!(t["metadata"].get("annotations").is_none());
    s.credentials_revision = Some("2026-11-26");
    assert_eq!(
        template(&s)["metadata"]["annotations"],
        json!({"bulkhead.dev/credentials-revision": "2026-11-26"})
    );
}

#[test]
fn extra_egress_becomes_one_policy_with_one_rule_per_destination() {
    let (stack, quota) = (stack(), QuotaSpec::default());
    let egress = vec![
        EgressRule {
            cidr: "203.0.113.0/24".into(),
            ports: vec![EgressPort {
                port: 443,
                protocol: Protocol::TCP,
            }],
        },
        EgressRule {
            cidr: "198.51.100.7/32".into(),
            ports: vec![],
        },
    ];
    let d = desired(&subject(&stack, &quota, &egress), &Settings::default());
    assert_eq!(
        policy_json(&d, policy::ALLOW_EGRESS).unwrap(),
        json!({
            "podSelector": {},
            "policyTypes": ["Egress"],
            "egress": [
                {"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}], "ports": [{"port": 443, "protocol": "TCP"}]},
                {"to": [{"ipBlock": {"cidr": "198.51.100.7/32"}}]}
            ]
        })
    );
}

#[test]
fn quota_and_limits_use_defaults_and_never_exceed_the_quota() {
    let stack = stack();
    let d = desired(&subject(&stack, &QuotaSpec::default(), &[]), &Settings::default());
    let hard = serde_json::to_value(&d.resource_quota.spec.as_ref().unwrap().hard).unwrap();
    assert_eq!(
        hard,
        json!({"limits.cpu": "2", "limits.memory": "4Gi", "pods": "20", "requests.cpu": "2", "requests.memory": "4Gi",
               "services.loadbalancers": "0", "services.nodeports": "0"})
    );
    let small = QuotaSpec {
        cpu: Some("250m".into()),
        memory: Some("256Mi".into()),
        pods: Some(3),
    };
    let d = desired(&subject(&stack, &small, &[]), &Settings::default());
    let limits = serde_json::to_value(&d.limit_range.spec.as_ref().unwrap().limits[0]).unwrap();
    assert_eq!(limits["default"], json!({"cpu": "250m", "memory": "256Mi"}));
    assert_eq!(
        limits["defaultRequest"],
        json!({"cpu": "100m", "memory": "128Mi"})
    );
    assert_eq!(limits["type"], "Container");
}

#[test]
fn the_stack_runs_restricted_without_an_api_token() {
    let (stack, quota) = (stack(), QuotaSpec::default());
    let d = desired(&subject(&stack, &quota, &[]), &Settings::default());
    assert_eq!(d.service_account.automount_service_account_token, Some(false));
    let dep = serde_json::to_value(&d.deployment).unwrap();
    let pod = &dep["spec"]["template"]["spec"];
    assert_eq!(dep["spec"]["replicas"], 2);
    assert_eq!(pod["serviceAccountName"], "bulkhead-stack");
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["enableServiceLinks"], false);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let c = &pod["containers"][0];
    assert_eq!(c["image"], "registry.example.com/acme/portal:1.4.2");
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    assert_eq!(c["env"], json!([{"name": "LOG_LEVEL", "value": "info"}]));
    let svc = serde_json::to_value(&d.service).unwrap();
    assert_eq!(
        svc["spec"]["ports"],
        json!([{"name": "http", "port": 8080, "protocol": "TCP", "targetPort": "http"}])
    );
    assert_eq!(
        svc["spec"]["selector"],
        json!({"app.kubernetes.io/component": "stack"})
    );
    assert_eq!(svc["spec"]["type"], "ClusterIP");
}

#[test]
fn a_retired_subject_scales_to_zero_keeps_its_policies_and_marks_the_namespace() {
    let (stack, quota) = (stack(), QuotaSpec::default());
    let mut s = subject(&stack, &quota, &[]);
    s.retired = true;
    let d = desired(&s, &Settings::default());
    assert_eq!(d.deployment.spec.as_ref().unwrap().replicas, Some(0));
    assert_eq!(
        d.namespace
            .metadata
            .labels
            .as_ref()
            .unwrap()
            .get("bulkhead.dev/orphaned")
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(d.network_policies.len(), 4);
}
