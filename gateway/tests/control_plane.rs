//! The route table fed by kube reflectors from a real kube-apiserver (the local control plane): a Ready Tenant
//! routes, a second claim of its org makes it unroutable until the claim goes, a Ready Customer routes to its own
//! namespace, and a Tenant that stops being Ready stops routing, its Customers with it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bulkhead_crds::naming;
use bulkhead_crds::v1alpha1::{Customer, Tenant};
use bulkhead_e2e::ControlPlane;
use bulkhead_gateway::routes::{RouteError, fixtures};
use common::*;
use jsonwebtoken::Algorithm;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

/// A Tenant to create (the API server ignores the status of a new resource).
fn tenant(name: &str, org: &str) -> Tenant {
    fixtures::tenant(name, org, false)
}

/// A status written as the operator writes it: Ready and Routable both `ready`.
fn status(namespace: &str, ready: bool) -> Patch<serde_json::Value> {
    Patch::Merge(json!({ "status": fixtures::status(namespace, ready) }))
}

/// Waits (bounded) until the gateway's table gives `want` for `org`, and says how long that took (the target is a
/// change routable within 2 s; the bound here is wider so a loaded CI machine does not fail it, and the printed
/// times show the real figure).
async fn until_route(gw: &Gateway, org: &str, want: Result<(), RouteError>) {
    let start = std::time::Instant::now();
    for _ in 0..400 {
        if gw.running.routes.lookup(org).map(|_| ()) == want {
            eprintln!("route of {org} became {want:?} after {:?}", start.elapsed());
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "route of {org} never became {want:?}: {:?}",
        gw.running.routes.lookup(org)
    );
}

#[tokio::test]
async fn routes_follow_tenant_and_customer_resources() {
    bulkhead_gateway::install_crypto_provider();
    let plane = ControlPlane::start_with_crds().await.expect("control plane");
    let client = plane.admin().await.unwrap();
    let tenants: Api<Tenant> = Api::all(client.clone());
    let customers: Api<Customer> = Api::all(client.clone());
    let (a, d) = (Upstream::start("A").await, Upstream::start("D").await);
    let key = TestKey::load("rsa-a.pem", "k1", Algorithm::RS256);
    let config = config_a(&format!(
        r#"routes:
  source: kubernetes
  upstream_overrides:
    {}: "{}"
    {}: "{}"
"#,
        naming::tenant_namespace("acme"),
        a.addr,
        naming::customer_namespace("acme", "dental"),
        d.addr
    ));
    let jwks = json!({"keys": [key.jwk(true)]}).to_string();
    let gw = Gateway::start_with(&config, &[("a.json", jwks)], Some(client.clone())).await;

    tenants
        .create(&PostParams::default(), &tenant("acme", "org_a"))
        .await
        .unwrap();
    until_route(&gw, "org_a", Err(RouteError::NoRoute)).await;
    tenants
        .patch_status("acme", &PatchParams::default(), &status("bk-acme", true))
        .await
        .unwrap();
    until_route(&gw, "org_a", Ok(())).await;
    let token_a = key.sign(&claims_a("org_a"));
    assert_eq!(gw.get_with(&token_a, "/", &[]).await.body, "A");

    // A second claim of org_a, Ready or not, makes it unroutable.
    tenants
        .create(&PostParams::default(), &tenant("copycat", "org_a"))
        .await
        .unwrap();
    until_route(&gw, "org_a", Err(RouteError::Conflict)).await;
    let answer = gw.get_with(&key.sign(&claims_a("org_a")), "/", &[]).await;
    assert_eq!(
        (answer.status, answer.denial()),
        (403, ("route".into(), "org_conflict".into()))
    );
    tenants.delete("copycat", &DeleteParams::default()).await.unwrap();
    until_route(&gw, "org_a", Ok(())).await;

    // Deleting a Ready Tenant makes its org unroutable.
    tenants
        .create(&PostParams::default(), &tenant("initech", "org_i"))
        .await
        .unwrap();
    tenants
        .patch_status("initech", &PatchParams::default(), &status("bk-initech", true))
        .await
        .unwrap();
    until_route(&gw, "org_i", Ok(())).await;
    tenants.delete("initech", &DeleteParams::default()).await.unwrap();
    until_route(&gw, "org_i", Err(RouteError::NoRoute)).await;

    // A Ready Customer routes to its own namespace.
    let customer = fixtures::customer("acme", "dental", "org_d", false, None);
    customers.create(&PostParams::default(), &customer).await.unwrap();
    customers
        .patch_status("dental", &PatchParams::default(), &status("bk-acme-dental", true))
        .await
        .unwrap();
    until_route(&gw, "org_d", Ok(())).await;
    let answer = gw.get_with(&key.sign(&claims_a("org_d")), "/", &[]).await;
    assert_eq!(answer.body, "D");
    assert_eq!(d.last().all("x-bulkhead-customer"), vec!["dental"]);

    // The Tenant stops being Ready: it and its Customer stop routing.
    tenants
        .patch_status("acme", &PatchParams::default(), &status("bk-acme", false))
        .await
        .unwrap();
    until_route(&gw, "org_a", Err(RouteError::NoRoute)).await;
    until_route(&gw, "org_d", Err(RouteError::NoRoute)).await;
    let answer = gw.get_with(&key.sign(&claims_a("org_d")), "/", &[]).await;
    assert_eq!(
        (answer.status, answer.denial()),
        (403, ("route".into(), "no_route".into()))
    );
    assert_eq!((a.count(), d.count()), (1, 1));
    gw.running.shutdown().await;
}
