//! Tenant and Customer isolation on the real control plane, with the operator running under its own
//! ClusterRole: what it creates (down to the NetworkPolicy rules), drift repair, conflicts, deletion and CRD
//! removal. Stacks use `replicas: 0` where a test needs Ready=True: the local control plane has no kubelet, so
//! pods never run (the kind suite covers running stacks).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail the test by panicking

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bulkhead_crds::v1alpha1::{Customer, ResourceStatus, Tenant};
use bulkhead_e2e::operator::{RunningOperator, install_rbac};
use bulkhead_e2e::{ControlPlane, wait};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(30);

struct Fixture {
    plane: ControlPlane,
    admin: Client,
    operator: Option<RunningOperator>,
}

impl Fixture {
    async fn start() -> Fixture {
        bulkhead_e2e::init_test_logging();
        let plane = ControlPlane::start_with_crds().await.expect("control plane");
        install_rbac(&plane).await.unwrap();
        let operator = RunningOperator::start(
            plane.operator().await.unwrap(),
            bulkhead_operator::Options::default(),
        )
        .await
        .unwrap();
        let admin = plane.admin().await.unwrap();
        Fixture {
            plane,
            admin,
            operator: Some(operator),
        }
    }

    fn tenants(&self) -> Api<Tenant> {
        Api::all(self.admin.clone())
    }

    fn customers(&self) -> Api<Customer> {
        Api::all(self.admin.clone())
    }

    fn in_ns<K>(&self, ns: &str) -> Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.admin.clone(), ns)
    }
}

fn tenant(name: &str, org: &str, replicas: i32, policy: &str) -> Tenant {
    serde_json::from_value(json!({
        "apiVersion": "bulkhead.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": name},
        "spec": {
            "orgId": org,
            "stack": {"image": "registry.example.com/portal:1.0", "port": 8080, "replicas": replicas},
            "quota": {"cpu": "4", "memory": "8Gi", "pods": 20},
            "network": {"allowEgress": [{"cidr": "203.0.113.0/24", "ports": [{"port": 443}]}]},
            "deletionPolicy": policy
        }
    }))
    .unwrap()
}

fn customer(name: &str, tenant: &str, org: &str, policy: &str) -> Customer {
    serde_json::from_value(json!({
        "apiVersion": "bulkhead.dev/v1alpha1", "kind": "Customer", "metadata": {"name": name},
        "spec": {
            "tenantRef": tenant, "orgId": org,
            "stack": {"image": "registry.example.com/client-portal:2.0", "port": 9090, "replicas": 0},
            "quota": {"cpu": "1", "memory": "2Gi", "pods": 5},
            "deletionPolicy": policy
        }
    }))
    .unwrap()
}

fn ready(status: Option<&ResourceStatus>) -> Option<(String, String, String)> {
    let c = status?.conditions.iter().find(|c| c.type_ == "Ready")?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

async fn wait_tenant(f: &Fixture, name: &str, reason: &str) -> Tenant {
    let api = f.tenants();
    wait::until(
        TIMEOUT,
        &format!("Tenant {name} Ready reason {reason}"),
        || async {
            let t = api.get(name).await.ok()?;
            (ready(t.status.as_ref())?.1 == reason).then_some(t)
        },
    )
    .await
    .unwrap()
}

async fn wait_customer(f: &Fixture, name: &str, reason: &str) -> Customer {
    let api = f.customers();
    wait::until(
        TIMEOUT,
        &format!("Customer {name} Ready reason {reason}"),
        || async {
            let c = api.get(name).await.ok()?;
            (ready(c.status.as_ref())?.1 == reason).then_some(c)
        },
    )
    .await
    .unwrap()
}

async fn policy_spec(f: &Fixture, ns: &str, name: &str) -> Value {
    let p: NetworkPolicy = f.in_ns(ns).get(name).await.unwrap();
    serde_json::to_value(p.spec.unwrap()).unwrap()
}

async fn names<K>(api: &Api<K>) -> BTreeSet<String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|o| o.name_any())
        .collect()
}

async fn events_for(f: &Fixture, reason: &str) -> Vec<String> {
    bulkhead_e2e::events::notes(&f.admin, reason).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tenants_with_two_customers_each_converge_with_exactly_the_specified_objects() {
    let f = Fixture::start().await;
    let pp = PostParams::default();
    for (t, org) in [("acme", "org_acme"), ("globex", "org_globex")] {
        f.tenants()
            .create(&pp, &tenant(t, org, 0, "Retain"))
            .await
            .unwrap();
        for c in ["one", "two"] {
            f.customers()
                .create(
                    &pp,
                    &customer(&format!("{t}-{c}"), t, &format!("{org}_{c}"), "Retain"),
                )
                .await
                .unwrap();
        }
    }
    for t in ["acme", "globex"] {
        let tenant = wait_tenant(&f, t, "Provisioned").await;
        let status = tenant.status.unwrap();
        assert_eq!(status.namespace.as_deref(), Some(format!("bk-{t}").as_str()));
        for c in [
            "NamespaceReady",
            "NetworkIsolated",
            "StackReady",
            "Routable",
            "Ready",
        ] {
            let cond = status.conditions.iter().find(|x| x.type_ == c).unwrap();
            assert_eq!(cond.status, "True", "{t} {c}: {}", cond.message);
        }
        for c in ["one", "two"] {
            let customer = wait_customer(&f, &format!("{t}-{c}"), "Provisioned").await;
            assert_eq!(
                customer.status.unwrap().namespace,
                Some(format!("bk-{t}-{t}-{c}"))
            );
        }
    }

    // Every namespace: labels, restricted Pod Security, no ownerReferences anywhere.
    let ns: Namespace = Api::<Namespace>::all(f.admin.clone())
        .get("bk-acme-acme-one")
        .await
        .unwrap();
    let labels = ns.labels();
    assert_eq!(labels["bulkhead.dev/tenant"], "acme");
    assert_eq!(labels["bulkhead.dev/customer"], "acme-one");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "bulkhead");
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
    assert!(ns.owner_references().is_empty());

    // The NetworkPolicies of a Customer: default deny, and only the listed flows.
    let ns = "bk-acme-acme-one";
    assert_eq!(
        names(&f.in_ns::<NetworkPolicy>(ns)).await,
        BTreeSet::from(
            [
                "bulkhead-default-deny",
                "bulkhead-allow-gateway",
                "bulkhead-allow-dns",
                "bulkhead-allow-same-namespace",
                "bulkhead-allow-egress"
            ]
            .map(String::from)
        )
    );
    assert_eq!(
        policy_spec(&f, ns, "bulkhead-default-deny").await,
        json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})
    );
    assert_eq!(
        policy_spec(&f, ns, "bulkhead-allow-gateway").await,
        json!({
            "podSelector": {"matchLabels": {"app.kubernetes.io/component": "stack"}},
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [{
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "bulkhead-system"}},
                    "podSelector": {"matchLabels": {"app.kubernetes.io/component": "gateway", "app.kubernetes.io/name": "bulkhead"}}
                }],
                "ports": [{"port": 9090, "protocol": "TCP"}]
            }]
        })
    );
    assert_eq!(
        policy_spec(&f, ns, "bulkhead-allow-dns").await["egress"],
        json!([{
            "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
            "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
        }])
    );
    assert_eq!(
        policy_spec(&f, ns, "bulkhead-allow-same-namespace").await,
        json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": [{"from": [{"podSelector": {}}]}], "egress": [{"to": [{"podSelector": {}}]}]})
    );
    assert_eq!(
        policy_spec(&f, ns, "bulkhead-allow-egress").await["egress"],
        json!([{"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}], "ports": [{"port": 443, "protocol": "TCP"}]}]),
        "a Customer inherits its Tenant's extra egress"
    );
    // No policy anywhere mentions another Bulkhead namespace.
    for p in f
        .in_ns::<NetworkPolicy>(ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
    {
        let text = serde_json::to_string(&p.spec).unwrap();
        assert!(
            !text.contains("bk-"),
            "{} names another tenant namespace: {text}",
            p.name_any()
        );
    }

    // Quota, limits, service account, stack.
    let quota: ResourceQuota = f.in_ns(ns).get("bulkhead-quota").await.unwrap();
    let hard = serde_json::to_value(quota.spec.unwrap().hard.unwrap()).unwrap();
    assert_eq!(hard["limits.cpu"], "1");
    assert_eq!(hard["limits.memory"], "2Gi");
    assert_eq!(hard["pods"], "5");
    assert_eq!(hard["services.loadbalancers"], "0");
    let limits: LimitRange = f.in_ns(ns).get("bulkhead-limits").await.unwrap();
    assert_eq!(
        serde_json::to_value(&limits.spec.unwrap().limits[0].default).unwrap(),
        json!({"cpu": "500m", "memory": "512Mi"})
    );
    let sa: ServiceAccount = f.in_ns(ns).get("bulkhead-stack").await.unwrap();
    assert_eq!(sa.automount_service_account_token, Some(false));
    let dep: Deployment = f.in_ns(ns).get("stack").await.unwrap();
    let dep_json = serde_json::to_value(&dep).unwrap();
    let pod = &dep_json["spec"]["template"]["spec"];
    assert_eq!(
        pod["containers"][0]["image"],
        "registry.example.com/client-portal:2.0"
    );
    assert_eq!(
        pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"],
        true
    );
    assert_eq!(
        pod["containers"][0]["securityContext"]["capabilities"]["drop"],
        json!(["ALL"])
    );
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert!(dep.owner_references().is_empty());
    let svc: Service = f.in_ns(ns).get("stack").await.unwrap();
    assert_eq!(svc.spec.unwrap().ports.unwrap()[0].port, 9090);

    // A Tenant whose stack wants replicas is honestly not Ready here (no kubelet), with a message saying why.
    f.tenants()
        .create(&pp, &tenant("initech", "org_initech", 2, "Retain"))
        .await
        .unwrap();
    let t = wait_tenant(&f, "initech", "StackNotReady").await;
    assert!(
        ready(t.status.as_ref())
            .unwrap()
            .2
            .contains("0/2 replicas available")
    );

    // The operator's identity really is limited to its ClusterRole.
    let op = f.plane.operator().await.unwrap();
    for (what, result) in [
        (
            "list secrets",
            Api::<Secret>::all(op.clone())
                .list(&ListParams::default())
                .await
                .map(|_| ()),
        ),
        (
            "delete a CRD",
            Api::<CustomResourceDefinition>::all(op.clone())
                .delete("tenants.bulkhead.dev", &DeleteParams::default())
                .await
                .map(|_| ()),
        ),
        (
            "list pods",
            Api::<k8s_openapi::api::core::v1::Pod>::all(op.clone())
                .list(&ListParams::default())
                .await
                .map(|_| ()),
        ),
    ] {
        match result {
            Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{what}: {s:?}"),
            other => panic!("{what} should be forbidden, got {other:?}"),
        }
    }
    f.operator.unwrap().stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_edits_and_deletions_of_managed_objects_are_repaired() {
    let f = Fixture::start().await;
    f.tenants()
        .create(&PostParams::default(), &tenant("acme", "org_acme", 0, "Retain"))
        .await
        .unwrap();
    wait_tenant(&f, "acme", "Provisioned").await;
    let ns = "bk-acme";
    let policies: Api<NetworkPolicy> = f.in_ns(ns);

    // Deleted by hand: back within 10 s.
    let deleted = Instant::now();
    policies
        .delete("bulkhead-default-deny", &DeleteParams::default())
        .await
        .unwrap();
    wait::until(
        Duration::from_secs(10),
        "the default-deny policy to come back",
        || async {
            policies
                .get_opt("bulkhead-default-deny")
                .await
                .ok()
                .flatten()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
        },
    )
    .await
    .unwrap();
    eprintln!(
        "default-deny policy restored {:?} after its deletion",
        deleted.elapsed()
    );
    assert_eq!(
        policy_spec(&f, ns, "bulkhead-default-deny").await,
        json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})
    );

    // An ingress rule slipped into default-deny by hand (another field manager): removed.
    let open_up = json!({"spec": {"ingress": [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]}]}});
    policies
        .patch(
            "bulkhead-default-deny",
            &PatchParams {
                field_manager: Some("kubectl-edit".into()),
                ..Default::default()
            },
            &Patch::Merge(&open_up),
        )
        .await
        .unwrap();
    wait::until(TIMEOUT, "the hand-added ingress rule to be removed", || async {
        let spec = policies.get("bulkhead-default-deny").await.ok()?.spec?;
        spec.ingress.is_none().then_some(())
    })
    .await
    .unwrap();

    // The stack's image edited by hand: reverted.
    let deployments: Api<Deployment> = f.in_ns(ns);
    let evil = json!({"spec": {"template": {"spec": {"containers": [{"name": "stack", "image": "evil.example.com/miner:1"}]}}}});
    deployments
        .patch(
            "stack",
            &PatchParams {
                field_manager: Some("kubectl-edit".into()),
                ..Default::default()
            },
            &Patch::Strategic(&evil),
        )
        .await
        .unwrap();
    wait::until(TIMEOUT, "the stack image to be reverted", || async {
        let d = deployments.get("stack").await.ok()?;
        let image = d.spec?.template.spec?.containers.first()?.image.clone()?;
        (image == "registry.example.com/portal:1.0").then_some(())
    })
    .await
    .unwrap();

    // Each repair is reported as an Event.
    let recreated = wait::until(TIMEOUT, "a DriftRecreated event", || async {
        let notes = events_for(&f, "DriftRecreated").await;
        (!notes.is_empty()).then_some(notes)
    })
    .await
    .unwrap();
    assert!(
        recreated
            .iter()
            .any(|n| n.contains("NetworkPolicy/bulkhead-default-deny")),
        "{recreated:?}"
    );
    let reverted = wait::until(
        TIMEOUT,
        "DriftReverted events for the policy and the stack",
        || async {
            let notes = events_for(&f, "DriftReverted").await;
            let both = notes.iter().any(|n| n.contains("Deployment/stack"))
                && notes
                    .iter()
                    .any(|n| n.contains("NetworkPolicy/bulkhead-default-deny"));
            both.then_some(notes)
        },
    )
    .await
    .unwrap();
    assert!(!reverted.is_empty());
    let (_, metrics) = bulkhead_e2e::operator::http_get(f.operator.as_ref().unwrap().admin_addr, "/metrics")
        .await
        .unwrap();
    assert!(
        metrics.contains("bulkhead_operator_drift_repairs_total{controller=\"tenant\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_namespaces_and_duplicate_org_ids_are_conflicts_not_adoptions() {
    let f = Fixture::start().await;
    let pp = PostParams::default();

    // A namespace that exists without Bulkhead's labels is never adopted.
    let foreign: Namespace = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bk-hooli", "labels": {"team": "payments"}}
    }))
    .unwrap();
    Api::<Namespace>::all(f.admin.clone())
        .create(&pp, &foreign)
        .await
        .unwrap();
    f.tenants()
        .create(&pp, &tenant("hooli", "org_hooli", 0, "Delete"))
        .await
        .unwrap();
    let t = wait_tenant(&f, "hooli", "NamespaceConflict").await;
    let message = ready(t.status.as_ref()).unwrap().2;
    assert!(
        message.contains("bk-hooli") && message.contains("lacks the label"),
        "{message}"
    );
    let ns = Api::<Namespace>::all(f.admin.clone())
        .get("bk-hooli")
        .await
        .unwrap();
    // Only what it was created with, plus the name label the API server sets on every namespace.
    let labels: Vec<&str> = ns.labels().keys().map(String::as_str).collect();
    assert_eq!(
        labels,
        ["kubernetes.io/metadata.name", "team"],
        "namespace labels untouched: {:?}",
        ns.labels()
    );
    assert!(
        names(&f.in_ns::<NetworkPolicy>("bk-hooli")).await.is_empty(),
        "nothing created in it"
    );
    // Deleting the Tenant (policy Delete) must not delete a namespace that was never its own.
    f.tenants()
        .delete("hooli", &DeleteParams::default())
        .await
        .unwrap();
    wait::until(TIMEOUT, "Tenant hooli to be gone", || async {
        f.tenants().get_opt("hooli").await.ok()?.is_none().then_some(())
    })
    .await
    .unwrap();
    let ns = Api::<Namespace>::all(f.admin.clone())
        .get("bk-hooli")
        .await
        .unwrap();
    assert!(
        ns.metadata.deletion_timestamp.is_none(),
        "the foreign namespace survives"
    );

    // Two resources with one orgId: the older keeps it, the newer is refused and not routable.
    f.tenants()
        .create(&pp, &tenant("first", "org_shared", 0, "Delete"))
        .await
        .unwrap();
    wait_tenant(&f, "first", "Provisioned").await;
    tokio::time::sleep(Duration::from_millis(1100)).await; // creation timestamps have one-second resolution
    f.customers()
        .create(&pp, &customer("second", "first", "org_shared", "Delete"))
        .await
        .unwrap();
    let c = wait_customer(&f, "second", "OrgIdConflict").await;
    let status = c.status.unwrap();
    let routable = status.conditions.iter().find(|c| c.type_ == "Routable").unwrap();
    assert_eq!(
        (routable.status.as_str(), routable.reason.as_str()),
        ("False", "OrgIdConflict")
    );
    assert!(routable.message.contains("Tenant/first"), "{}", routable.message);
    assert!(
        Api::<Namespace>::all(f.admin.clone())
            .get_opt("bk-first-second")
            .await
            .unwrap()
            .is_none(),
        "not provisioned"
    );
    let first = f.tenants().get("first").await.unwrap();
    assert_eq!(
        ready(first.status.as_ref()).unwrap().1,
        "Provisioned",
        "the older one is unaffected"
    );

    // A Customer whose Tenant does not exist waits with a reason.
    f.customers()
        .create(&pp, &customer("orphan", "nobody", "org_orphan", "Delete"))
        .await
        .unwrap();
    let c = wait_customer(&f, "orphan", "TenantMissing").await;
    assert!(ready(c.status.as_ref()).unwrap().2.contains("Tenant nobody"));

    // A Customer whose quota does not fit what its Tenant has left.
    let mut big = customer("greedy", "first", "org_greedy", "Delete");
    big.spec.quota.cpu = Some("5".into());
    f.customers().create(&pp, &big).await.unwrap();
    let c = wait_customer(&f, "greedy", "QuotaExceeded").await;
    assert!(
        ready(c.status.as_ref())
            .unwrap()
            .2
            .contains("cpu 5 exceeds the 4 the Tenant has left")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_keeps_the_namespace_isolated_and_delete_removes_it() {
    let f = Fixture::start().await;
    let pp = PostParams::default();
    f.tenants()
        .create(&pp, &tenant("keep", "org_keep", 0, "Retain"))
        .await
        .unwrap();
    f.tenants()
        .create(&pp, &tenant("drop", "org_drop", 0, "Delete"))
        .await
        .unwrap();
    f.customers()
        .create(&pp, &customer("drop-client", "drop", "org_drop_client", "Delete"))
        .await
        .unwrap();
    wait_tenant(&f, "keep", "Provisioned").await;
    wait_tenant(&f, "drop", "Provisioned").await;
    wait_customer(&f, "drop-client", "Provisioned").await;
    // Scale the kept stack up first, to see Retain scale it down.
    let mut keep = f.tenants().get("keep").await.unwrap();
    keep.spec.stack.replicas = 3;
    f.tenants().replace("keep", &pp, &keep).await.unwrap();
    let deployments: Api<Deployment> = f.in_ns("bk-keep");
    wait::until(TIMEOUT, "the kept stack at 3 replicas", || async {
        (deployments.get("stack").await.ok()?.spec?.replicas? == 3).then_some(())
    })
    .await
    .unwrap();
    let policies_before = names(&f.in_ns::<NetworkPolicy>("bk-keep")).await;

    // Retain: namespace, policies and data stay; stack at zero; namespace marked orphaned.
    f.tenants()
        .delete("keep", &DeleteParams::default())
        .await
        .unwrap();
    wait::until(TIMEOUT, "Tenant keep to be gone", || async {
        f.tenants().get_opt("keep").await.ok()?.is_none().then_some(())
    })
    .await
    .unwrap();
    let ns = Api::<Namespace>::all(f.admin.clone())
        .get("bk-keep")
        .await
        .unwrap();
    assert!(ns.metadata.deletion_timestamp.is_none());
    assert_eq!(
        ns.labels().get("bulkhead.dev/orphaned").map(String::as_str),
        Some("true")
    );
    assert!(ns.annotations().contains_key("bulkhead.dev/orphaned-at"));
    assert_eq!(
        names(&f.in_ns::<NetworkPolicy>("bk-keep")).await,
        policies_before,
        "policies kept"
    );
    assert_eq!(
        deployments.get("stack").await.unwrap().spec.unwrap().replicas,
        Some(0)
    );

    // A Tenant with Customers waits for them.
    f.tenants()
        .delete("drop", &DeleteParams::default())
        .await
        .unwrap();
    let t = wait_tenant(&f, "drop", "Deleting").await;
    assert!(ready(t.status.as_ref()).unwrap().2.contains("drop-client"));
    assert!(
        Api::<Namespace>::all(f.admin.clone())
            .get("bk-drop")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_none()
    );

    // Delete: the Customer's namespace goes, then the Tenant's.
    f.customers()
        .delete("drop-client", &DeleteParams::default())
        .await
        .unwrap();
    for ns in ["bk-drop-drop-client", "bk-drop"] {
        wait::until(
            Duration::from_secs(60),
            &format!("namespace {ns} to be deleted"),
            || async {
                let n = Api::<Namespace>::all(f.admin.clone()).get_opt(ns).await.ok()?;
                n.is_none_or(|n| n.metadata.deletion_timestamp.is_some())
                    .then_some(())
            },
        )
        .await
        .unwrap();
    }
    wait::until(TIMEOUT, "Tenant drop to be gone", || async {
        f.tenants().get_opt("drop").await.ok()?.is_none().then_some(())
    })
    .await
    .unwrap();

    // Recreating the retained Tenant takes its namespace back into service.
    f.tenants()
        .create(&pp, &tenant("keep", "org_keep", 0, "Retain"))
        .await
        .unwrap();
    wait_tenant(&f, "keep", "Provisioned").await;
    let ns = Api::<Namespace>::all(f.admin.clone())
        .get("bk-keep")
        .await
        .unwrap();
    assert!(!ns.labels().contains_key("bulkhead.dev/orphaned"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_crds_leaves_every_namespace_and_its_policies() {
    let f = Fixture::start().await;
    let pp = PostParams::default();
    // Even with deletionPolicy Delete: removing the CRDs is not a request to delete tenant data.
    f.tenants()
        .create(&pp, &tenant("acme", "org_acme", 0, "Delete"))
        .await
        .unwrap();
    f.customers()
        .create(&pp, &customer("acme-one", "acme", "org_acme_one", "Delete"))
        .await
        .unwrap();
    wait_tenant(&f, "acme", "Provisioned").await;
    wait_customer(&f, "acme-one", "Provisioned").await;
    let before: Vec<(String, BTreeSet<String>)> = vec![
        (
            "bk-acme".into(),
            names(&f.in_ns::<NetworkPolicy>("bk-acme")).await,
        ),
        (
            "bk-acme-acme-one".into(),
            names(&f.in_ns::<NetworkPolicy>("bk-acme-acme-one")).await,
        ),
    ];

    let crds: Api<CustomResourceDefinition> = Api::all(f.admin.clone());
    for crd in ["customers.bulkhead.dev", "tenants.bulkhead.dev"] {
        crds.delete(crd, &DeleteParams::default()).await.unwrap();
    }
    wait::until(Duration::from_secs(60), "both CRDs to be gone", || async {
        let left = crds
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .filter(|c| c.name_any().ends_with("bulkhead.dev"))
            .count();
        (left == 0).then_some(())
    })
    .await
    .unwrap();
    // Give the namespace controller a moment, in case anything had asked for a deletion.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (ns, policies) in before {
        let n = Api::<Namespace>::all(f.admin.clone()).get(&ns).await.unwrap();
        assert!(n.metadata.deletion_timestamp.is_none(), "{ns} is being deleted");
        assert_eq!(
            names(&f.in_ns::<NetworkPolicy>(&ns)).await,
            policies,
            "{ns} lost policies"
        );
        assert!(policies.contains("bulkhead-default-deny"));
    }
}
