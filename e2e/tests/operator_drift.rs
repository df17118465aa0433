//! Foreign NetworkPolicies on the real control plane, with the operator running under its own ClusterRole: a
//! Bulkhead namespace holds Bulkhead's policies and nothing else. A policy someone made there by hand (no
//! labels) is deleted and reported, a deleted default-deny comes back, a relabelled namespace gets its labels
//! back, and policies in namespaces Bulkhead does not manage (or no longer manages: a namespace retained after
//! its Tenant's deletion) are left alone.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail the test by panicking

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bulkhead_crds::v1alpha1::{Customer, Tenant};
use bulkhead_e2e::operator::{RunningOperator, install_rbac};
use bulkhead_e2e::{ControlPlane, wait};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

/// A deadline that only a broken run misses (the repair itself takes well under a second).
const TIMEOUT: Duration = Duration::from_secs(30);

fn tenant(name: &str) -> Tenant {
    serde_json::from_value(json!({
        "apiVersion": "bulkhead.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": name},
        "spec": {
            "orgId": format!("org_{name}"),
            "stack": {"image": "registry.example.com/portal:1.0", "port": 8080, "replicas": 0},
            "quota": {"cpu": "4", "memory": "8Gi", "pods": 20},
            "deletionPolicy": "Retain"
        }
    }))
    .unwrap()
}

fn customer(name: &str, tenant: &str) -> Customer {
    serde_json::from_value(json!({
        "apiVersion": "bulkhead.dev/v1alpha1", "kind": "Customer", "metadata": {"name": name},
        "spec": {
            "tenantRef": tenant, "orgId": format!("org_{name}"),
            "quota": {"cpu": "1", "memory": "1Gi", "pods": 5},
            "deletionPolicy": "Retain"
        }
    }))
    .unwrap()
}

/// A policy that opens the pods of its namespace to and from the pods of `peer`, as a hand edit might.
fn opening(name: &str, peer: &str, labels: serde_json::Value) -> NetworkPolicy {
    let peers = json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": peer}}}]);
    serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "podSelector": {},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": peers}],
            "egress": [{"to": peers}]
        }
    }))
    .unwrap()
}

fn reason(status: Option<&bulkhead_crds::v1alpha1::ResourceStatus>) -> Option<String> {
    status?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.reason.clone())
}

async fn provisioned_tenant(admin: &Client, name: &str) {
    let api: Api<Tenant> = Api::all(admin.clone());
    wait::until(TIMEOUT, &format!("Tenant {name} Provisioned"), || async {
        (reason(api.get(name).await.ok()?.status.as_ref())? == "Provisioned").then_some(())
    })
    .await
    .unwrap();
}

async fn provisioned_customer(admin: &Client, name: &str) {
    let api: Api<Customer> = Api::all(admin.clone());
    wait::until(TIMEOUT, &format!("Customer {name} Provisioned"), || async {
        (reason(api.get(name).await.ok()?.status.as_ref())? == "Provisioned").then_some(())
    })
    .await
    .unwrap();
}

async fn policy_names(admin: &Client, ns: &str) -> BTreeSet<String> {
    Api::<NetworkPolicy>::namespaced(admin.clone(), ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| p.name_any())
        .collect()
}

/// Waits until the namespace holds exactly `expected` and returns how long that took.
async fn exactly(admin: &Client, ns: &str, expected: &BTreeSet<String>, what: &str) -> Duration {
    let start = Instant::now();
    let result = wait::until(TIMEOUT, what, || async {
        (policy_names(admin, ns).await == *expected).then_some(())
    })
    .await;
    if let Err(err) = result {
        panic!("{err}: {ns} has {:?}", policy_names(admin, ns).await);
    }
    start.elapsed()
}

async fn create_policy(admin: &Client, ns: &str, policy: &NetworkPolicy) {
    Api::<NetworkPolicy>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), policy)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_made_policies_in_bulkhead_namespaces_are_deleted_and_others_are_left_alone() {
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
    let pp = PostParams::default();
    let tenants: Api<Tenant> = Api::all(admin.clone());
    for name in ["acme", "globex"] {
        tenants.create(&pp, &tenant(name)).await.unwrap();
    }
    provisioned_tenant(&admin, "acme").await;
    provisioned_tenant(&admin, "globex").await;
    Api::<Customer>::all(admin.clone())
        .create(&pp, &customer("dental", "acme"))
        .await
        .unwrap();
    provisioned_customer(&admin, "dental").await;
    let desired = policy_names(&admin, "bk-acme").await;
    assert!(desired.contains("bulkhead-default-deny"), "{desired:?}");
    let desired_customer = policy_names(&admin, "bk-acme-dental").await;

    // A namespace Bulkhead does not manage, with a hand-made policy, and one that even carries Bulkhead's
    // labels for acme: neither is acme's to delete.
    Api::<Namespace>::all(admin.clone())
        .create(
            &pp,
            &serde_json::from_value(json!({"metadata": {"name": "team-payments"}})).unwrap(),
        )
        .await
        .unwrap();
    create_policy(
        &admin,
        "team-payments",
        &opening("hand-made", "bk-acme", json!({})),
    )
    .await;
    let acme_labels = json!({"app.kubernetes.io/managed-by": "bulkhead", "bulkhead.dev/tenant": "acme"});
    create_policy(
        &admin,
        "team-payments",
        &opening("labelled-like-acme", "bk-acme", acme_labels),
    )
    .await;

    // Tenant acme's default-deny deleted and a policy opening it to globex made by hand: both repaired.
    let broken = Instant::now();
    Api::<NetworkPolicy>::namespaced(admin.clone(), "bk-acme")
        .delete("bulkhead-default-deny", &DeleteParams::default())
        .await
        .unwrap();
    create_policy(&admin, "bk-acme", &opening("open-to-b", "bk-globex", json!({}))).await;
    exactly(
        &admin,
        "bk-acme",
        &desired,
        "open-to-b to be deleted and default-deny to be back",
    )
    .await;
    eprintln!(
        "hand-made open-to-b deleted and default-deny restored {:?} after the change",
        broken.elapsed()
    );
    let deny = Api::<NetworkPolicy>::namespaced(admin.clone(), "bk-acme")
        .get("bulkhead-default-deny")
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(deny.spec.unwrap()).unwrap(),
        json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})
    );

    // The same in a Customer's namespace, for a policy opening it to its Tenant.
    let broken = Instant::now();
    create_policy(
        &admin,
        "bk-acme-dental",
        &opening("open-to-tenant", "bk-acme", json!({})),
    )
    .await;
    exactly(
        &admin,
        "bk-acme-dental",
        &desired_customer,
        "open-to-tenant to be deleted from the Customer's namespace",
    )
    .await;
    eprintln!(
        "hand-made open-to-tenant deleted {:?} after its creation",
        broken.elapsed()
    );

    // Each removal is reported: an Event naming the policy, and the drift counter.
    let notes = wait::until(TIMEOUT, "DriftRemoved events for both policies", || async {
        let notes = bulkhead_e2e::events::notes(&admin, "DriftRemoved").await.ok()?;
        let both = notes.iter().any(|n| n.contains("NetworkPolicy/open-to-b"))
            && notes.iter().any(|n| n.contains("NetworkPolicy/open-to-tenant"));
        both.then_some(notes)
    })
    .await
    .unwrap();
    assert!(
        notes
            .iter()
            .all(|n| n.contains("was not made by Bulkhead and was deleted")),
        "{notes:?}"
    );
    let (_, metrics) = bulkhead_e2e::operator::http_get(operator.admin_addr, "/metrics")
        .await
        .unwrap();
    for controller in ["tenant", "customer"] {
        assert!(
            metrics.contains(&format!(
                "bulkhead_operator_drift_repairs_total{{controller=\"{controller}\"}}"
            )),
            "{metrics}"
        );
    }

    // Namespaces relabelled by hand: stripped of their owner's labels, given another Tenant's, or lowered from
    // Pod Security `restricted`. The operator knows each as its own by the owner UID it wrote when it made
    // it, and puts the labels back.
    let namespaces = Api::<Namespace>::all(admin.clone());
    let relabellings = [
        ("bk-acme", json!({"bulkhead.dev/tenant": "globex"})),
        (
            "bk-acme",
            json!({"bulkhead.dev/tenant": null, "app.kubernetes.io/managed-by": null}),
        ),
        (
            "bk-acme",
            json!({"pod-security.kubernetes.io/enforce": "privileged"}),
        ),
        ("bk-acme-dental", json!({"bulkhead.dev/customer": null})),
        (
            "bk-acme-dental",
            json!({"bulkhead.dev/customer": "other", "bulkhead.dev/tenant": "globex"}),
        ),
    ];
    for (ns, change) in relabellings {
        let desired_labels = namespaces.get(ns).await.unwrap().metadata.labels.unwrap();
        let broken = Instant::now();
        namespaces
            .patch(
                ns,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": change}})),
            )
            .await
            .unwrap();
        let what = format!("the labels of {ns} to be restored after {change}");
        let restored = wait::until(TIMEOUT, &what, || async {
            let labels = namespaces.get(ns).await.ok()?.metadata.labels?;
            (labels == desired_labels).then_some(())
        })
        .await;
        if let Err(err) = restored {
            panic!("{err}: {:?}", namespaces.get(ns).await.unwrap().metadata.labels);
        }
        eprintln!(
            "{ns} relabelled with {change}: restored {:?} after the change",
            broken.elapsed()
        );
    }
    provisioned_tenant(&admin, "acme").await;
    provisioned_customer(&admin, "dental").await;

    // The namespace Bulkhead does not manage keeps both of its policies.
    assert_eq!(
        policy_names(&admin, "team-payments").await,
        BTreeSet::from(["hand-made".to_owned(), "labelled-like-acme".to_owned()])
    );

    // Tenant acme deleted with Retain (its Customer first): its namespace is kept, and no longer Bulkhead's
    // to police. A policy made there now stays.
    Api::<Customer>::all(admin.clone())
        .delete("dental", &DeleteParams::default())
        .await
        .unwrap();
    tenants.delete("acme", &DeleteParams::default()).await.unwrap();
    wait::until(TIMEOUT, "Tenant acme to be gone", || async {
        tenants.get_opt("acme").await.ok()?.is_none().then_some(())
    })
    .await
    .unwrap();
    create_policy(
        &admin,
        "bk-acme",
        &opening("after-retain", "bk-globex", json!({})),
    )
    .await;
    // A repair in globex's namespace, made after that policy, shows the operator has seen both.
    create_policy(&admin, "bk-globex", &opening("open-to-a", "bk-acme", json!({}))).await;
    let globex = policy_names(&admin, "bk-globex").await;
    let globex_desired: BTreeSet<String> = globex.iter().filter(|n| *n != "open-to-a").cloned().collect();
    exactly(&admin, "bk-globex", &globex_desired, "open-to-a to be deleted").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut retained = desired.clone();
    retained.insert("after-retain".into());
    assert_eq!(policy_names(&admin, "bk-acme").await, retained);
    assert_eq!(policy_names(&admin, "team-payments").await.len(), 2);

    // Recreating the Tenant takes the namespace back into service, with Bulkhead's policies only.
    tenants.create(&pp, &tenant("acme")).await.unwrap();
    provisioned_tenant(&admin, "acme").await;
    exactly(
        &admin,
        "bk-acme",
        &desired,
        "after-retain to be deleted once acme is back",
    )
    .await;

    tokio::time::timeout(TIMEOUT, operator.stop())
        .await
        .expect("operator stops")
        .unwrap();
}
