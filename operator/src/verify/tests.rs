//! The judging modules on sample installations: a converged one holds; each kind of violation fails, naming it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::NetworkPolicy;
use serde_json::json;

use super::network::Place;
use super::report::{Identity, Report};
use super::sample::{self, customer, installation, tenant};
use super::snapshot::Snapshot;
use super::{Check, Options, Verdict, judge};

fn options() -> Options {
    Options {
        settings: sample::settings(),
        outside: "198.51.100.10:443".parse().unwrap(),
        context: None,
    }
}

/// Tenants `a` (database) and `b` (database), Customer `a1` of `a` (no database), and a namespace `team` that
/// Bulkhead does not manage, with one pod.
fn converged() -> Snapshot {
    let mut s = installation(
        vec![tenant("a", true).unwrap(), tenant("b", true).unwrap()],
        vec![customer("a1", "a").unwrap()],
        &sample::settings(),
    );
    s.namespaces.push(sample::namespace("team", BTreeMap::new()));
    let labels = BTreeMap::from([("app".to_owned(), "api".to_owned())]);
    s.pods
        .push(sample::pod("team", "api", &labels, sample::pod_ip(900), 8000));
    s
}

fn report(s: &Snapshot) -> Report {
    let (network, routing, mut checks) = judge(s, &options());
    checks.extend(network.checks);
    checks.extend(routing.checks);
    Report::new(
        String::new(),
        Identity::default(),
        network.matrix,
        routing.table,
        checks,
    )
}

fn failing(r: &Report) -> Vec<(&'static str, String)> {
    r.checks
        .iter()
        .filter(|c| c.verdict == Verdict::Fail)
        .map(|c| (c.id, c.subject.clone()))
        .collect()
}

fn check<'a>(r: &'a Report, id: &str, subject: &str) -> &'a Check {
    r.checks
        .iter()
        .find(|c| c.id == id && c.subject == subject)
        .unwrap_or_else(|| panic!("no check {id} {subject}:\n{}", r.render()))
}

fn ns(name: &str) -> Place {
    Place::Bulkhead {
        namespace: name.to_owned(),
    }
}

fn policy(namespace: &str, name: &str, spec: serde_json::Value) -> NetworkPolicy {
    serde_json::from_value(json!({"metadata": {"name": name, "namespace": namespace}, "spec": spec})).unwrap()
}

fn peer(namespace: &str) -> serde_json::Value {
    json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}])
}

#[test]
fn a_converged_installation_holds_with_the_flows_the_contract_names() {
    let r = report(&converged());
    assert_eq!(failing(&r), [], "{}", r.render());
    assert!(r.summary.holds);
    assert_eq!(r.exit_code(), 0);
    let m = &r.matrix;
    let team = Place::Unmanaged {
        namespace: "team".into(),
    };
    for (from, to, allowed) in [
        (ns("bk-a"), ns("bk-a"), true),
        (ns("bk-a"), ns("bk-b"), false),
        (ns("bk-a"), ns("bk-a-a1"), false),
        (ns("bk-a-a1"), ns("bk-a"), false),
        (ns("bk-b"), ns("bk-a"), false),
        (ns("bk-a"), Place::Dns, true),
        (ns("bk-a"), Place::Postgres, true),
        (ns("bk-a-a1"), Place::Postgres, false),
        (ns("bk-a"), Place::ApiServer, false),
        (ns("bk-a"), Place::Outside, false),
        (ns("bk-a"), Place::Gateway, false),
        (ns("bk-a"), team.clone(), false),
        (Place::Gateway, ns("bk-a"), true),
        (Place::Gateway, ns("bk-a-a1"), true),
        (team.clone(), ns("bk-a"), false),
        (team.clone(), Place::Outside, true),
    ] {
        assert_eq!(
            m.cell(&from, &to),
            Some(allowed),
            "{from:?} -> {to:?}\n{}",
            r.render()
        );
    }
    assert_eq!(r.routes.len(), 3);
    assert!(
        r.render()
            .contains("== Routes (org -> stack)\norg_a -> stack.bk-a.svc:8080 (a)")
    );
}

#[test]
fn a_hand_made_opening_between_tenants_fails_naming_both_ends() {
    let mut s = converged();
    s.network_policies.push(policy(
        "bk-a",
        "to-b",
        json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": peer("bk-b")}]}),
    ));
    // One side alone opens nothing: bk-b still refuses ingress.
    let r = report(&s);
    assert_eq!(r.matrix.cell(&ns("bk-a"), &ns("bk-b")), Some(false));
    assert_eq!(
        failing(&r),
        [(
            "contract.foreign_network_policy",
            "bk-a/NetworkPolicy/to-b".to_owned()
        )]
    );
    s.network_policies.push(policy(
        "bk-b",
        "from-a",
        json!({"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": peer("bk-a")}]}),
    ));
    let r = report(&s);
    assert_eq!(r.matrix.cell(&ns("bk-a"), &ns("bk-b")), Some(true));
    assert_eq!(r.matrix.cell(&ns("bk-b"), &ns("bk-a")), Some(false));
    let row = check(&r, "network.reachability", "bk-a");
    assert_eq!(row.verdict, Verdict::Fail);
    assert!(
        row.summary.contains("allowed to bk-b (tenant to other tenant)"),
        "{}",
        row.summary
    );
    let differing = &row.evidence["differing"][0];
    assert_eq!(
        differing["policies"]["ingress"]["allowed_by"][0]["name"], "from-a",
        "{differing}"
    );
    assert_eq!(r.exit_code(), 1);
    let text = r.render();
    assert!(text.find("== Violations").unwrap() < text.find("== Reachability").unwrap());
}

#[test]
fn an_edited_policy_that_admits_a_foreign_namespace_fails_twice() {
    let mut s = converged();
    let edited = s
        .network_policies
        .iter_mut()
        .find(|p| {
            p.metadata.namespace.as_deref() == Some("bk-b")
                && p.metadata.name.as_deref() == Some("bulkhead-allow-gateway")
        })
        .unwrap();
    let mut spec = serde_json::to_value(&edited.spec).unwrap();
    spec["ingress"][0]["from"] = json!([{"namespaceSelector": {}}]);
    edited.spec = serde_json::from_value(spec).unwrap();
    let r = report(&s);
    let mut failed = failing(&r);
    failed.sort();
    assert_eq!(
        failed,
        [
            (
                "contract.network_policy",
                "bk-b/NetworkPolicy/bulkhead-allow-gateway".to_owned()
            ),
            ("network.reachability", "team".to_owned()),
        ],
        "{}",
        r.render()
    );
    assert!(
        check(&r, "network.reachability", "team")
            .summary
            .contains("unmanaged namespace to stack")
    );
}

#[test]
fn a_deleted_default_deny_fails_the_contract_even_when_no_flow_changes() {
    let mut s = converged();
    let before = report(&s).matrix.allowed;
    s.network_policies.retain(|p| {
        !(p.metadata.namespace.as_deref() == Some("bk-b")
            && p.metadata.name.as_deref() == Some("bulkhead-default-deny"))
    });
    let r = report(&s);
    assert_eq!(
        r.matrix.allowed, before,
        "the other policies still isolate every pod"
    );
    assert_eq!(
        failing(&r),
        [(
            "contract.network_policy",
            "bk-b/NetworkPolicy/bulkhead-default-deny".to_owned()
        )]
    );
    assert!(
        check(
            &r,
            "contract.network_policy",
            "bk-b/NetworkPolicy/bulkhead-default-deny"
        )
        .summary
        .contains("missing")
    );
}

#[test]
fn other_objects_are_held_against_the_builder() {
    let mut s = converged();
    let deployment = s
        .deployments
        .iter_mut()
        .find(|d| d.metadata.namespace.as_deref() == Some("bk-a"))
        .unwrap();
    let containers = &mut deployment
        .spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .containers;
    containers[0].image = Some("registry.example.com/evil:1".into());
    s.resource_quotas
        .retain(|q| q.metadata.namespace.as_deref() != Some("bk-b"));
    let r = report(&s);
    let mut failed = failing(&r);
    failed.sort();
    assert_eq!(
        failed,
        [
            ("contract.object", "bk-a/Deployment/stack".to_owned()),
            ("contract.object", "bk-b/ResourceQuota/bulkhead-quota".to_owned()),
        ]
    );
}

#[test]
fn a_tenant_and_a_customer_claiming_one_org_fail_and_get_no_route() {
    let mut s = converged();
    let mut twin = customer("a2", "a").unwrap();
    twin.spec.org_id = "org_b".into();
    // Refused with OrgIdConflict: nothing is provisioned for it.
    twin.status = None;
    s.customers.push(twin);
    let r = report(&s);
    assert_eq!(
        failing(&r),
        [("routing.duplicate_org", "org_b".to_owned())],
        "{}",
        r.render()
    );
    let c = check(&r, "routing.duplicate_org", "org_b");
    assert!(c.summary.contains("Tenant b and Customer a2"), "{}", c.summary);
    assert!(r.routes.iter().all(|route| route.org != "org_b"));
}

#[test]
fn routes_must_go_to_the_stack_service_of_their_own_bulkhead_namespace() {
    let mut s = converged();
    let stack_ip = "198.19.5.5";
    let service = s
        .services
        .iter_mut()
        .find(|svc| svc.metadata.namespace.as_deref() == Some("bk-b"))
        .unwrap();
    service.spec.as_mut().unwrap().cluster_ip = Some(stack_ip.into());
    for (override_to, fails) in [
        (
            "billing.default.svc:8080",
            Some("a namespace Bulkhead does not manage"),
        ),
        ("stack.bk-b.svc:8080", Some("(Service stack in bk-b)")),
        ("203.0.113.7:8080", Some("not a Service of this cluster")),
        ("198.19.5.5:8080", Some("(Service stack in bk-b)")),
        ("stack.bk-a.svc.cluster.local:8080", None),
    ] {
        s.gateway_config = Some(format!(
            "{}  service_suffix: svc.cluster.local\n  upstream_overrides:\n    bk-a: {override_to}\n",
            sample::GATEWAY_CONFIG
        ));
        let r = report(&s);
        match fails {
            Some(reason) => {
                assert_eq!(
                    failing(&r),
                    [("routing.upstream", "org_a".to_owned())],
                    "{override_to}"
                );
                let c = check(&r, "routing.upstream", "org_a");
                assert!(
                    c.summary.contains(override_to) && c.summary.contains(reason),
                    "{}",
                    c.summary
                );
            }
            None => assert_eq!(failing(&r), [], "{override_to}\n{}", r.render()),
        }
    }
}

#[test]
fn a_resource_that_is_not_ready_is_only_a_warning() {
    let mut s = converged();
    s.tenants[1].status = None;
    let r = report(&s);
    assert_eq!(failing(&r), []);
    assert_eq!(check(&r, "routing.not_ready", "org_b").verdict, Verdict::Warn);
    assert!(r.summary.holds);
}

#[test]
fn a_broken_gateway_configuration_fails_and_a_missing_one_warns() {
    let mut s = converged();
    s.gateway_config = Some("routes: [".into());
    assert_eq!(failing(&report(&s)), [("routing.config", "gateway".to_owned())]);
    s.gateway_config = Some("issuers: []\nroutes:\n  source: kubernetes\n".into());
    assert_eq!(failing(&report(&s)), [("routing.config", "gateway".to_owned())]);
    s.gateway_config = None;
    let r = report(&s);
    assert_eq!(failing(&r), []);
    assert_eq!(check(&r, "routing.config", "gateway").verdict, Verdict::Warn);
}

#[test]
fn egress_a_tenant_allows_is_the_contract_and_more_is_not() {
    let mut s = converged();
    let outside = Place::Outside;
    s.tenants[0].spec.network.allow_egress = vec![
        serde_json::from_value(json!({"cidr": "198.51.100.0/24",
        "ports": [{"port": 443}]}))
        .unwrap(),
    ];
    // Rebuild so the Tenant's egress policy exists, as the operator would have made it.
    let mut rebuilt = installation(s.tenants.clone(), s.customers.clone(), &sample::settings());
    let r = report(&rebuilt);
    assert_eq!(failing(&r), [], "{}", r.render());
    assert_eq!(r.matrix.cell(&ns("bk-a"), &outside), Some(true));
    assert_eq!(
        r.matrix.cell(&ns("bk-a-a1"), &outside),
        Some(true),
        "a Customer inherits its Tenant's egress"
    );
    assert_eq!(r.matrix.cell(&ns("bk-b"), &outside), Some(false));
    // The same opening by hand in bk-b is a violation.
    rebuilt.network_policies.push(policy(
        "bk-b",
        "egress",
        json!({"podSelector": {}, "policyTypes": ["Egress"],
               "egress": [{"to": [{"ipBlock": {"cidr": "198.51.100.0/24"}}]}]}),
    ));
    let r = report(&rebuilt);
    let row = check(&r, "network.reachability", "bk-b");
    assert_eq!(row.verdict, Verdict::Fail);
    assert!(
        row.summary.contains("stack to outside the cluster"),
        "{}",
        row.summary
    );
}

#[test]
fn an_invalid_policy_fails_without_judging_flows() {
    let mut s = converged();
    s.network_policies.push(policy(
        "team",
        "bad",
        json!({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}}),
    ));
    let r = report(&s);
    assert!(failing(&r).contains(&("network.policy_invalid", "cluster".to_owned())));
    assert!(r.matrix.allowed.is_empty());
}

#[test]
fn checks_are_sorted_failures_first_and_the_grid_gives_way_to_a_list_when_large() {
    let mut s = converged();
    s.network_policies
        .retain(|p| p.metadata.name.as_deref() != Some("bulkhead-default-deny"));
    let r = report(&s);
    let verdicts: Vec<Verdict> = r.checks.iter().map(|c| c.verdict).collect();
    let mut sorted = verdicts.clone();
    sorted.sort_by_key(|v| std::cmp::Reverse(*v));
    assert_eq!(verdicts, sorted);
    assert_eq!(r.summary.fail, 3);
    let names: Vec<String> = (0..60).map(|i| format!("t{i:02}")).collect();
    let big = installation(
        names.iter().map(|n| tenant(n, false).unwrap()).collect(),
        vec![],
        &sample::settings(),
    );
    let text = report(&big).render();
    assert!(text.contains("too many for a grid"), "{text}");
    assert!(text.contains("gateway -> bk-t00"));
}
