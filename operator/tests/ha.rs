//! Several replicas and crashes, with the real binary under its own RBAC: only the Lease holder reconciles, a
//! standby takes over when the leader dies, and an operator killed mid-reconcile converges on restart without
//! duplicates.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail the test by panicking

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bulkhead_crds::v1alpha1::{Customer, Tenant};
use bulkhead_e2e::operator::{OPERATOR_NAMESPACE, install_rbac};
use bulkhead_e2e::{ControlPlane, wait};
use common::{OperatorProcess, metric};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{LimitRange, ResourceQuota, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};

fn tenant(name: &str) -> Tenant {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "bulkhead.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": name},
        "spec": {"orgId": format!("org_{name}"), "stack": {"image": "registry.example.com/p:1", "replicas": 0},
                 "quota": {"cpu": "8", "memory": "16Gi", "pods": 50}}
    }))
    .unwrap()
}

fn customer(name: &str, tenant: &str) -> Customer {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "bulkhead.dev/v1alpha1", "kind": "Customer", "metadata": {"name": name},
        "spec": {"tenantRef": tenant, "orgId": format!("org_{name}"), "quota": {"cpu": "1", "memory": "1Gi", "pods": 5}}
    }))
    .unwrap()
}

async fn holder(client: &Client) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    leases
        .get_opt("bulkhead-operator")
        .await
        .ok()??
        .spec?
        .holder_identity
}

fn reason_of(status: Option<&bulkhead_crds::v1alpha1::ResourceStatus>) -> Option<String> {
    status?
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.reason.clone())
}

async fn all_provisioned(client: &Client, tenants: &[String], customers: &[String]) {
    let t_api: Api<Tenant> = Api::all(client.clone());
    let c_api: Api<Customer> = Api::all(client.clone());
    wait::until(
        Duration::from_secs(60),
        "every resource to be Provisioned",
        || async {
            for name in tenants {
                (reason_of(t_api.get(name).await.ok()?.status.as_ref())? == "Provisioned").then_some(())?;
            }
            for name in customers {
                (reason_of(c_api.get(name).await.ok()?.status.as_ref())? == "Provisioned").then_some(())?;
            }
            Some(())
        },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_reconciles_and_a_standby_takes_over_when_it_dies() {
    let plane = ControlPlane::start_with_crds().await.expect("control plane");
    install_rbac(&plane).await.unwrap();
    let admin = plane.admin().await.unwrap();
    let lease_args = ["--leader-elect", "--lease-namespace", OPERATOR_NAMESPACE];

    let a = OperatorProcess::start(
        &plane,
        "operator",
        "a",
        &[&lease_args[..], &["--identity", "replica-a"]].concat(),
    );
    wait::until(Duration::from_secs(30), "replica-a to hold the lease", || async {
        (holder(&admin).await? == "replica-a").then_some(())
    })
    .await
    .unwrap();
    let b = OperatorProcess::start(
        &plane,
        "operator",
        "b",
        &[&lease_args[..], &["--identity", "replica-b"]].concat(),
    );

    // The standby is live and ready while it waits: a two-replica Deployment is fully available, and a
    // PodDisruptionBudget counts both replicas.
    wait::until(
        Duration::from_secs(30),
        "the standby's /readyz to answer 200",
        || async { (b.get("/readyz").await.0 == 200).then_some(()) },
    )
    .await
    .unwrap();
    assert_eq!(b.get("/livez").await, (200, "ok\n".to_owned()));
    assert_eq!(
        holder(&admin).await.as_deref(),
        Some("replica-a"),
        "b is a standby"
    );
    // The leader is ready once its caches have synced.
    wait::until(
        Duration::from_secs(30),
        "the leader's /readyz to answer 200",
        || async { (a.get("/readyz").await.0 == 200).then_some(()) },
    )
    .await
    .unwrap();
    assert_eq!(a.get("/livez").await, (200, "ok\n".to_owned()));

    let tenants: Api<Tenant> = Api::all(admin.clone());
    for name in ["one", "two"] {
        tenants
            .create(&PostParams::default(), &tenant(name))
            .await
            .unwrap();
    }
    all_provisioned(&admin, &["one".into(), "two".into()], &[]).await;

    // Only the leader reconciled and wrote; the standby did nothing but wait.
    let (ma, mb) = (a.metrics().await, b.metrics().await);
    assert!(metric(&ma, "bulkhead_operator_reconciles_total") > 0.0, "{ma}");
    assert_eq!(metric(&ma, "bulkhead_operator_leader "), 1.0, "{ma}");
    assert_eq!(metric(&mb, "bulkhead_operator_reconciles_total"), 0.0, "{mb}");
    assert_eq!(
        metric(&mb, "bulkhead_operator_objects_applied_total"),
        0.0,
        "{mb}"
    );
    assert_eq!(metric(&mb, "bulkhead_operator_leader "), 0.0, "{mb}");
    assert!(
        b.logs().contains("waiting to lead") && !b.logs().contains("\"applied\""),
        "{}",
        b.logs()
    );

    // The leader dies without releasing the lease; the standby takes over once it expires.
    let killed = Instant::now();
    a.signal("-KILL");
    wait::until(
        Duration::from_secs(40),
        "replica-b to take the lease over",
        || async { (holder(&admin).await? == "replica-b").then_some(()) },
    )
    .await
    .unwrap();
    let takeover = killed.elapsed();
    eprintln!("replica-b took over {takeover:?} after replica-a was killed (lease 15 s, retry 2 s)");
    tenants
        .create(&PostParams::default(), &tenant("three"))
        .await
        .unwrap();
    all_provisioned(&admin, &["three".into()], &[]).await;
    assert!(metric(&b.metrics().await, "bulkhead_operator_reconciles_total") > 0.0);
    assert_eq!(b.get("/readyz").await.0, 200, "the new leader is ready");
    drop(a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_killed_mid_reconcile_converges_on_restart_without_duplicates() {
    let plane = ControlPlane::start_with_crds().await.expect("control plane");
    install_rbac(&plane).await.unwrap();
    let admin = plane.admin().await.unwrap();
    let first = OperatorProcess::start(&plane, "operator", "first", &[]);

    let tenant_names: Vec<String> = (0..6).map(|i| format!("t{i}")).collect();
    let customer_names: Vec<String> = tenant_names.iter().map(|t| format!("{t}-c")).collect();
    for (t, c) in tenant_names.iter().zip(&customer_names) {
        Api::<Tenant>::all(admin.clone())
            .create(&PostParams::default(), &tenant(t))
            .await
            .unwrap();
        Api::<Customer>::all(admin.clone())
            .create(&PostParams::default(), &customer(c, t))
            .await
            .unwrap();
    }
    // Kill it while it is busy with them.
    wait::until(
        Duration::from_secs(30),
        "the first operator to start applying",
        || async { first.logs().contains("\"applied\"").then_some(()) },
    )
    .await
    .unwrap();
    first.signal("-KILL");
    drop(first);

    let _second = OperatorProcess::start(&plane, "operator", "second", &[]);
    all_provisioned(&admin, &tenant_names, &customer_names).await;

    let expected_policies: BTreeSet<String> = [
        "bulkhead-default-deny",
        "bulkhead-allow-gateway",
        "bulkhead-allow-dns",
        "bulkhead-allow-same-namespace",
    ]
    .map(String::from)
    .into();
    let managed = ListParams::default().labels("app.kubernetes.io/managed-by=bulkhead");
    for (t, c) in tenant_names.iter().zip(&customer_names) {
        for ns in [format!("bk-{t}"), format!("bk-{t}-{c}")] {
            let names = |items: Vec<String>| items.into_iter().collect::<Vec<_>>();
            let policies: Vec<String> = Api::<NetworkPolicy>::namespaced(admin.clone(), &ns)
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .iter()
                .map(|p| p.name_any())
                .collect();
            assert_eq!(policies.len(), expected_policies.len(), "{ns}: {policies:?}");
            assert_eq!(
                policies.into_iter().collect::<BTreeSet<_>>(),
                expected_policies,
                "{ns}"
            );
            let count =
                |n: usize, what: &str, items: Vec<String>| assert_eq!(names(items).len(), n, "{ns}: {what}");
            count(
                1,
                "deployments",
                list::<Deployment>(&admin, &ns, &ListParams::default()).await,
            );
            count(
                1,
                "services",
                list::<Service>(&admin, &ns, &ListParams::default()).await,
            );
            count(
                1,
                "quotas",
                list::<ResourceQuota>(&admin, &ns, &ListParams::default()).await,
            );
            count(
                1,
                "limit ranges",
                list::<LimitRange>(&admin, &ns, &ListParams::default()).await,
            );
            count(
                1,
                "managed service accounts",
                list::<ServiceAccount>(&admin, &ns, &managed).await,
            );
        }
        let t = Api::<Tenant>::all(admin.clone()).get(t).await.unwrap();
        assert_eq!(t.finalizers(), ["bulkhead.dev/cleanup"], "one finalizer, once");
    }
}

async fn list<K>(client: &Client, ns: &str, params: &ListParams) -> Vec<String>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), ns)
        .list(params)
        .await
        .unwrap()
        .items
        .iter()
        .map(|o| o.name_any())
        .collect()
}
