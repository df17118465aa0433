//! The evaluator against the cases of the Kubernetes NetworkPolicy documentation and of the upstream
//! `[sig-network] Netpol` conformance suite, restated on its model: namespaces x, y and z, each with pods a,
//! b and c serving TCP, UDP and SCTP on ports 80 and 81 (named `serve-80-tcp` and so on). Every case checks
//! the full 9×9 truth table of who may connect to whom, starting from "everything allowed" and setting the
//! cells the case changes, as the upstream suite does.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::{Value, json};

use super::*;

const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const PODS: [&str; 3] = ["a", "b", "c"];
const CELLS: usize = 9;

const TCP: Protocol = Protocol::Tcp;
const UDP: Protocol = Protocol::Udp;
const SCTP: Protocol = Protocol::Sctp;

const METADATA_NAME: &str = "kubernetes.io/metadata.name";

/// A NetworkPolicy from its spec, written as the YAML would be.
fn np(namespace: &str, name: &str, spec: Value) -> NetworkPolicy {
    serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"namespace": namespace, "name": name},
        "spec": spec,
    }))
    .expect("a valid NetworkPolicy")
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

fn namespace(name: &str, pairs: &[(&str, &str)]) -> NamespaceInfo {
    NamespaceInfo {
        name: name.to_owned(),
        labels: labels(pairs),
    }
}

fn pod(namespace: &str, pairs: &[(&str, &str)], ip: Option<IpAddr>) -> Pod {
    Pod {
        namespace: namespace.to_owned(),
        labels: labels(pairs),
        ip,
        ports: Vec::new(),
    }
}

fn reference(namespace: &str, name: &str) -> PolicyRef {
    PolicyRef {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
    }
}

fn v4(text: &str) -> IpAddr {
    text.parse().expect("an address")
}

/// The upstream model: three namespaces of three pods each.
#[derive(Debug, Clone)]
struct Model {
    namespaces: Vec<NamespaceInfo>,
    /// In the order x/a, x/b, x/c, y/a, …
    pods: Vec<Pod>,
}

impl Model {
    fn v4() -> Model {
        Model::with_addresses(|ns, pod| IpAddr::V4(Ipv4Addr::new(10, ns + 1, 0, pod + 1)))
    }

    fn v6() -> Model {
        Model::with_addresses(|ns, pod| {
            IpAddr::V6(Ipv6Addr::new(
                0xfd00,
                u16::from(ns) + 1,
                0,
                0,
                0,
                0,
                0,
                u16::from(pod) + 1,
            ))
        })
    }

    fn with_addresses(address: impl Fn(u8, u8) -> IpAddr) -> Model {
        let namespaces = NAMESPACES
            .iter()
            .map(|name| namespace(name, &[("ns", name), (METADATA_NAME, name)]))
            .collect();
        let mut pods = Vec::new();
        for (ns, namespace) in (0..).zip(NAMESPACES) {
            for (index, name) in (0..).zip(PODS) {
                let mut pod = pod(namespace, &[("pod", name)], Some(address(ns, index)));
                for port in [80, 81] {
                    for protocol in [TCP, UDP, SCTP] {
                        pod.ports.push(NamedPort {
                            name: Some(format!("serve-{port}-{}", protocol.as_str().to_lowercase())),
                            port,
                            protocol,
                        });
                    }
                }
                pods.push(pod);
            }
        }
        Model { namespaces, pods }
    }

    fn index(name: &str) -> usize {
        let (namespace, pod) = name.split_once('/').expect("namespace/pod");
        let namespace = NAMESPACES
            .iter()
            .position(|&n| n == namespace)
            .expect("x, y or z");
        let pod = PODS.iter().position(|&p| p == pod).expect("a, b or c");
        namespace * 3 + pod
    }

    fn name(index: usize) -> String {
        format!("{}/{}", NAMESPACES[index / 3], PODS[index % 3])
    }

    fn ip(&self, name: &str) -> IpAddr {
        self.pods[Model::index(name)]
            .ip
            .expect("model pods have addresses")
    }

    /// `ip/32` or `ip/128`.
    fn host_cidr(&self, name: &str) -> String {
        let ip = self.ip(name);
        format!("{ip}/{}", if ip.is_ipv4() { 32 } else { 128 })
    }

    /// A block around every model pod, as upstream widens the pod IP to a large prefix.
    fn large_cidr(&self) -> &'static str {
        if self.ip("x/a").is_ipv4() {
            "10.0.0.0/8"
        } else {
            "fd00::/16"
        }
    }

    fn label_namespace(&mut self, name: &str, key: &str, value: &str) {
        let namespace = self
            .namespaces
            .iter_mut()
            .find(|n| n.name == name)
            .expect("a model namespace");
        namespace.labels.insert(key.to_owned(), value.to_owned());
    }

    fn label_pod(&mut self, name: &str, key: &str, value: &str) {
        self.pods[Model::index(name)]
            .labels
            .insert(key.to_owned(), value.to_owned());
    }
}

/// The expected truth table: `cells[from][to]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reachability {
    cells: [[bool; CELLS]; CELLS],
}

/// Whether model pod `index` fits `pattern`: `*` (any pod), `x` (any pod of x) or `x/a`.
fn fits(pattern: &str, index: usize) -> bool {
    match pattern.split_once('/') {
        _ if pattern == "*" => true,
        None => NAMESPACES[index / 3] == pattern,
        Some(_) => Model::index(pattern) == index,
    }
}

impl Reachability {
    fn all(allowed: bool) -> Reachability {
        Reachability {
            cells: [[allowed; CELLS]; CELLS],
        }
    }

    /// Sets every cell from a pod fitting `from` to a pod fitting `to`.
    fn set(mut self, from: &str, to: &str, allowed: bool) -> Reachability {
        for (source, row) in self.cells.iter_mut().enumerate() {
            for (destination, cell) in row.iter_mut().enumerate() {
                if fits(from, source) && fits(to, destination) {
                    *cell = allowed;
                }
            }
        }
        self
    }

    fn render(&self) -> String {
        let mut out = String::from("from\\to");
        for to in 0..CELLS {
            let _ = write!(out, " {}", Model::name(to));
        }
        for (from, row) in self.cells.iter().enumerate() {
            let _ = write!(out, "\n{:>7}", Model::name(from));
            for &cell in row {
                out.push_str(if cell { "   ." } else { "   X" });
            }
        }
        out
    }
}

/// Evaluates all 81 connections of the model on `protocol`/`port` and compares them with `expected`.
#[track_caller]
fn check(model: &Model, policies: &[NetworkPolicy], protocol: Protocol, port: u16, expected: &Reachability) {
    let evaluator = Policies::new(&model.namespaces, policies).expect("the policies compile");
    let mut actual = Reachability::all(false);
    for (from, row) in actual.cells.iter_mut().enumerate() {
        for (to, cell) in row.iter_mut().enumerate() {
            let source = Endpoint::Pod(&model.pods[from]);
            let destination = Endpoint::Pod(&model.pods[to]);
            *cell = evaluator.allowed(&source, &destination, port, protocol);
            let decision = evaluator.connection(&source, &destination, port, protocol);
            assert_eq!(
                decision.allowed,
                *cell,
                "connection() and allowed() disagree on {} -> {}: {decision:?}",
                Model::name(from),
                Model::name(to),
            );
            assert_eq!(
                decision.allowed,
                decision.egress.allows() && decision.ingress.allows()
            );
        }
    }
    if actual != *expected {
        let mut wrong = String::new();
        for from in 0..CELLS {
            for to in 0..CELLS {
                if actual.cells[from][to] != expected.cells[from][to] {
                    let _ = writeln!(
                        wrong,
                        "  {} -> {}: expected {}",
                        Model::name(from),
                        Model::name(to),
                        if expected.cells[from][to] {
                            "allowed"
                        } else {
                            "denied"
                        },
                    );
                }
            }
        }
        panic!(
            "{protocol}/{port}: wrong cells\n{wrong}expected:\n{}\nactual:\n{}",
            expected.render(),
            actual.render()
        );
    }
}

fn both_families() -> [Model; 2] {
    [Model::v4(), Model::v6()]
}

// ---------------------------------------------------------------------------------------------------------
// Upstream `[sig-network] Netpol`: "NetworkPolicy between server and client".
// ---------------------------------------------------------------------------------------------------------

fn deny_ingress_x() -> NetworkPolicy {
    np(
        "x",
        "deny-ingress",
        json!({"podSelector": {}, "policyTypes": ["Ingress"], "ingress": []}),
    )
}

fn deny_all_x() -> NetworkPolicy {
    np(
        "x",
        "deny-all",
        json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": [], "egress": []}),
    )
}

/// "should support a 'default-deny-ingress' policy", on TCP, UDP and SCTP.
#[test]
fn upstream_default_deny_ingress() {
    let model = Model::v4();
    for protocol in [TCP, UDP, SCTP] {
        check(
            &model,
            &[deny_ingress_x()],
            protocol,
            80,
            &Reachability::all(true).set("*", "x", false),
        );
    }
}

/// "should support a 'default-deny-all' policy".
#[test]
fn upstream_default_deny_all() {
    let expected = Reachability::all(true).set("*", "x", false).set("x", "*", false);
    check(&Model::v4(), &[deny_all_x()], TCP, 80, &expected);
}

fn x_a_allows(name: &str, pods: Value) -> NetworkPolicy {
    np(
        "x",
        name,
        json!({
            "podSelector": {"matchLabels": {"pod": "a"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": pods}]}],
        }),
    )
}

/// "should enforce policy to allow traffic from pods within server namespace based on PodSelector".
#[test]
fn upstream_pod_selector_within_server_namespace() {
    let policy = x_a_allows("x-a-allows-x-b", json!({"matchLabels": {"pod": "b"}}));
    let expected = Reachability::all(true)
        .set("*", "x/a", false)
        .set("x/b", "x/a", true);
    check(&Model::v4(), &[policy], TCP, 80, &expected);
}

/// "should enforce policy based on PodSelector with MatchExpressions".
#[test]
fn upstream_pod_selector_match_expressions() {
    let policy = x_a_allows(
        "x-a-allows-x-b",
        json!({"matchExpressions": [{"key": "pod", "operator": "In", "values": ["b"]}]}),
    );
    let expected = Reachability::all(true)
        .set("*", "x/a", false)
        .set("x/b", "x/a", true);
    check(&Model::v4(), &[policy], TCP, 80, &expected);
}

/// "should enforce policy to allow ingress traffic for a target": a namespace-wide deny, then everything
/// to x/a through a peer with both selectors empty.
#[test]
fn upstream_allow_ingress_for_a_target() {
    let allow = np(
        "x",
        "allow-all-to-a",
        json!({
            "podSelector": {"matchLabels": {"pod": "a"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {}, "namespaceSelector": {}}]}],
        }),
    );
    let deny = np(
        "x",
        "deny-all",
        json!({"podSelector": {}, "policyTypes": ["Ingress"], "ingress": []}),
    );
    let expected = Reachability::all(true)
        .set("*", "x/b", false)
        .set("*", "x/c", false);
    check(&Model::v4(), &[deny, allow], TCP, 80, &expected);
}

/// "should enforce policy to allow ingress traffic from pods in all namespaces".
#[test]
fn upstream_allow_ingress_from_all_namespaces() {
    let policy = np(
        "x",
        "allow-from-another-ns",
        json!({
            "podSelector": {"matchLabels": {"pod": "a"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {}}}]}],
        }),
    );
    check(&Model::v4(), &[policy], TCP, 80, &Reachability::all(true));
}

fn x_a_allows_namespaces(name: &str, namespaces: Value) -> NetworkPolicy {
    np(
        "x",
        name,
        json!({
            "podSelector": {"matchLabels": {"pod": "a"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"namespaceSelector": namespaces}]}],
        }),
    )
}

/// "should enforce policy to allow traffic only from a different namespace, based on NamespaceSelector".
#[test]
fn upstream_only_from_a_different_namespace() {
    let policy = x_a_allows_namespaces(
        "allow-client-a-via-ns-selector",
        json!({"matchLabels": {"ns": "y"}}),
    );
    let expected = Reachability::all(true)
        .set("x", "x/a", false)
        .set("z", "x/a", false);
    check(&Model::v4(), &[policy], TCP, 80, &expected);
}

/// "should enforce policy based on NamespaceSelector with MatchExpressions".
#[test]
fn upstream_namespace_selector_match_expressions() {
    let policy = x_a_allows_namespaces(
        "allow-ns-y-match-selector",
        json!({"matchExpressions": [{"key": "ns", "operator": "In", "values": ["y"]}]}),
    );
    let expected = Reachability::all(true)
        .set("x", "x/a", false)
        .set("z", "x/a", false);
    check(&Model::v4(), &[policy], TCP, 80, &expected);
}

/// "should enforce policy to allow traffic based on NamespaceSelector with MatchLabels using default ns
/// label".
#[test]
fn upstream_namespace_selector_default_label() {
    let policy = x_a_allows_namespaces(
        "allow-client-a-via-ns-selector-for-immutable-ns-label",
        json!({"matchLabels": {METADATA_NAME: "y"}}),
    );
    let expected = Reachability::all(true)
        .set("x", "x/a", false)
        .set("z", "x/a", false);
    check(&Model::v4(), &[policy], TCP, 80, &expected);
}

/// "should enforce policy based on NamespaceSelector with MatchExpressions using default ns label": an
/// egress policy on x/a to every namespace but y.
#[test]
fn upstream_namespace_selector_expressions_default_label_egress() {
    let policy = np(
        "x",
        "allow-ns-y-match-selector-for-immutable-ns-label",
        json!({
            "podSelector": {"matchLabels": {"pod": "a"}},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"namespaceSelector": {
                "matchExpressions": [{"key": METADATA_NAME, "operator": "NotIn", "values": ["y"]}],
            }}]}],
        }),
    );
    check(
        &Model::v4(),
        &[policy],
        TCP,
        80,
        &Reachability::all(true).set("x/a", "y", false),
    );
}

/// "should enforce policy based on PodSelector or NamespaceSelector": two peers, either may match.
#[test]
fn upstream_pod_selector_or_namespace_selector() {
    let policy = np(
        "x",
        "allow-ns-y-match-selector",
        json!({
            "podSelector": {"matchLabels": {"pod": "a"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [
                {"namespaceSelector": {"matchExpressions": [{"key": "ns", "operator": "NotIn", "values": ["x"]}]}},
                {"podSelector": {"matchLabels": {"pod": "b"}}},
            ]}],
        }),
    );
    let expected = Reachability::all(true)
        .set("x/a", "x/a", false)
        .set("x/c", "x/a", false);
    check(&Model::v4(), &[policy], TCP, 80, &expected);
}

fn x_a_allows_pods_in_namespaces(name: &str, namespaces: Value, pods: Value) -> NetworkPolicy {
    np(
        "x",
        name,
        json!({
            "podSelector": {"matchLabels": {"pod": "a"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"namespaceSelector": namespaces, "podSelector": pods}]}],
        }),
    )
}

/// "should enforce policy based on PodSelector and NamespaceSelector": one peer, both must match.
#[test]
fn upstream_pod_selector_and_namespace_selector() {
    let policy = x_a_allows_pods_in_namespaces(
        "allow-ns-y-podselector-and-nsselector",
        json!({"matchExpressions": [{"key": "ns", "operator": "NotIn", "values": ["x"]}]}),
        json!({"matchLabels": {"pod": "b"}}),
    );
    let expected = Reachability::all(true)
        .set("*", "x/a", false)
        .set("y/b", "x/a", true)
        .set("z/b", "x/a", true);
    check(&Model::v4(), &[policy], TCP, 80, &expected);
}

/// "should enforce policy based on Multiple PodSelectors and NamespaceSelectors".
#[test]
fn upstream_multiple_pod_selectors_and_namespace_selectors() {
    let policy = x_a_allows_pods_in_namespaces(
        "allow-ns-y-z-pod-b-c",
        json!({"matchExpressions": [{"key": "ns", "operator": "NotIn", "values": ["x"]}]}),
        json!({"matchExpressions": [{"key": "pod", "operator": "In", "values": ["b", "c"]}]}),
    );
    let expected = Reachability::all(true)
        .set("x", "x/a", false)
        .set("y/a", "x/a", false)
        .set("z/a", "x/a", false);
    check(&Model::v4(), &[policy], TCP, 80, &expected);
}

/// "should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and
/// NamespaceSelector", on TCP, UDP and SCTP.
#[test]
fn upstream_only_from_a_pod_in_a_different_namespace() {
    let policy = x_a_allows_pods_in_namespaces(
        "allow-ns-y-pod-a-via-namespace-pod-selector",
        json!({"matchLabels": {"ns": "y"}}),
        json!({"matchLabels": {"pod": "a"}}),
    );
    let expected = Reachability::all(true)
        .set("*", "x/a", false)
        .set("y/a", "x/a", true);
    let model = Model::v4();
    for protocol in [TCP, UDP, SCTP] {
        check(&model, std::slice::from_ref(&policy), protocol, 80, &expected);
    }
}

/// "should enforce policy based on any PodSelectors".
#[test]
fn upstream_any_pod_selectors() {
    let policy = np(
        "x",
        "allow-ns-x-pod-b-c",
        json!({
            "podSelector": {"matchLabels": {"pod": "a"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [
                {"podSelector": {"matchLabels": {"pod": "b"}}},
                {"podSelector": {"matchLabels": {"pod": "c"}}},
            ]}],
        }),
    );
    let expected = Reachability::all(true)
        .set("*", "x/a", false)
        .set("x/b", "x/a", true)
        .set("x/c", "x/a", true);
    check(&Model::v4(), &[policy], TCP, 80, &expected);
}

fn allow_port_from_y(name: &str, port: Value, protocol: Protocol) -> NetworkPolicy {
    np(
        "x",
        name,
        json!({
            "podSelector": {"matchLabels": {"pod": "a"}},
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [{"namespaceSelector": {"matchLabels": {METADATA_NAME: "y"}}}],
                "ports": [{"port": port, "protocol": protocol.as_str()}],
            }],
        }),
    )
}

/// "should enforce policy based on Ports", on TCP, UDP and SCTP.
#[test]
fn upstream_ports() {
    let model = Model::v4();
    let expected = Reachability::all(true)
        .set("x", "x/a", false)
        .set("z", "x/a", false);
    for protocol in [TCP, UDP, SCTP] {
        let policy = allow_port_from_y("allow-ingress-on-port-81-ns-x", json!(81), protocol);
        check(&model, &[policy], protocol, 81, &expected);
    }
}

/// "should enforce multiple, stacked policies with overlapping podSelectors".
#[test]
fn upstream_stacked_policies_with_overlapping_pod_selectors() {
    let model = Model::v4();
    let allow_81 = allow_port_from_y("allow-client-a-via-ns-selector", json!(81), TCP);
    let from_y_only = Reachability::all(true)
        .set("x", "x/a", false)
        .set("z", "x/a", false);
    check(&model, std::slice::from_ref(&allow_81), TCP, 81, &from_y_only);
    check(
        &model,
        std::slice::from_ref(&allow_81),
        TCP,
        80,
        &Reachability::all(true).set("*", "x/a", false),
    );

    let allow_80 = allow_port_from_y("allow-client-a-via-ns-selector-80", json!(80), TCP);
    check(&model, &[allow_81, allow_80], TCP, 80, &from_y_only);
}

fn allow_all_ingress_x(name: &str) -> NetworkPolicy {
    np(
        "x",
        name,
        json!({"podSelector": {"matchLabels": {}}, "policyTypes": ["Ingress"], "ingress": [{}]}),
    )
}

/// "should support allow-all policy".
#[test]
fn upstream_allow_all() {
    let model = Model::v4();
    for port in [80, 81] {
        check(
            &model,
            &[allow_all_ingress_x("allow-all")],
            TCP,
            port,
            &Reachability::all(true),
        );
    }
}

/// "should allow ingress access on one named port".
#[test]
fn upstream_ingress_on_one_named_port() {
    let policy = np(
        "x",
        "allow-all",
        json!({
            "podSelector": {"matchLabels": {}},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"port": "serve-81-tcp"}]}],
        }),
    );
    let model = Model::v4();
    check(
        &model,
        std::slice::from_ref(&policy),
        TCP,
        81,
        &Reachability::all(true),
    );
    check(
        &model,
        &[policy],
        TCP,
        80,
        &Reachability::all(true).set("*", "x", false),
    );
}

/// "should allow ingress access from namespace on one named port".
#[test]
fn upstream_ingress_from_namespace_on_one_named_port() {
    let policy = allow_port_from_y("allow-client-a-via-ns-selector-80", json!("serve-80-tcp"), TCP);
    let model = Model::v4();
    let expected = Reachability::all(true)
        .set("x", "x/a", false)
        .set("z", "x/a", false);
    check(&model, std::slice::from_ref(&policy), TCP, 80, &expected);
    check(
        &model,
        &[policy],
        TCP,
        81,
        &Reachability::all(true).set("*", "x/a", false),
    );
}

/// "should allow egress access on one named port".
#[test]
fn upstream_egress_on_one_named_port() {
    let policy = np(
        "x",
        "allow-egress",
        json!({
            "podSelector": {"matchLabels": {}},
            "policyTypes": ["Egress"],
            "egress": [{"ports": [{"port": "serve-80-tcp"}]}],
        }),
    );
    let model = Model::v4();
    check(
        &model,
        std::slice::from_ref(&policy),
        TCP,
        80,
        &Reachability::all(true),
    );
    check(
        &model,
        &[policy],
        TCP,
        81,
        &Reachability::all(true).set("x", "*", false),
    );
}

/// "should enforce updated policy": allow-all, then the same policy with its ingress rules removed.
#[test]
fn upstream_updated_policy() {
    let model = Model::v4();
    check(
        &model,
        &[allow_all_ingress_x("allow-all-mutate-to-deny-all")],
        TCP,
        81,
        &Reachability::all(true),
    );
    let updated = np(
        "x",
        "allow-all-mutate-to-deny-all",
        json!({"podSelector": {"matchLabels": {}}, "policyTypes": ["Ingress"], "ingress": []}),
    );
    check(
        &model,
        &[updated],
        TCP,
        81,
        &Reachability::all(true).set("*", "x", false),
    );
}

/// "should allow ingress access from updated namespace": y gains the label the policy asks for.
#[test]
fn upstream_ingress_from_updated_namespace() {
    let policy = x_a_allows_namespaces(
        "allow-client-a-via-ns-selector",
        json!({"matchLabels": {"ns2": "updated"}}),
    );
    let mut model = Model::v4();
    check(
        &model,
        std::slice::from_ref(&policy),
        TCP,
        80,
        &Reachability::all(true).set("*", "x/a", false),
    );
    model.label_namespace("y", "ns2", "updated");
    let expected = Reachability::all(true).set("*", "x/a", false).set("y", "*", true);
    check(&model, &[policy], TCP, 80, &expected);
}

/// "should allow ingress access from updated pod": x/b gains the label the policy asks for.
#[test]
fn upstream_ingress_from_updated_pod() {
    let policy = x_a_allows(
        "allow-client-a-via-pod-selector",
        json!({"matchLabels": {"pod": "b", "pod2": "updated"}}),
    );
    let mut model = Model::v4();
    check(
        &model,
        std::slice::from_ref(&policy),
        TCP,
        80,
        &Reachability::all(true).set("*", "x/a", false),
    );
    model.label_pod("x/b", "pod2", "updated");
    let expected = Reachability::all(true)
        .set("*", "x/a", false)
        .set("x/b", "x/a", true);
    check(&model, &[policy], TCP, 80, &expected);
}

/// "should deny ingress from pods on other namespaces".
#[test]
fn upstream_deny_ingress_from_other_namespaces() {
    let policy = np(
        "x",
        "deny-empty-policy",
        json!({
            "podSelector": {},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {}}}]}],
        }),
    );
    let expected = Reachability::all(true).set("y", "x", false).set("z", "x", false);
    check(&Model::v4(), &[policy], TCP, 80, &expected);
}

/// "should deny ingress access to updated pod": x/a gains the label a deny policy selects.
#[test]
fn upstream_deny_ingress_to_updated_pod() {
    let policy = np(
        "x",
        "deny-ingress-via-label-selector",
        json!({"podSelector": {"matchLabels": {"target": "isolated"}}, "policyTypes": ["Ingress"], "ingress": []}),
    );
    let mut model = Model::v4();
    check(
        &model,
        std::slice::from_ref(&policy),
        TCP,
        80,
        &Reachability::all(true),
    );
    model.label_pod("x/a", "target", "isolated");
    check(
        &model,
        &[policy],
        TCP,
        80,
        &Reachability::all(true).set("*", "x/a", false),
    );
}

/// "should deny egress from pods based on PodSelector".
#[test]
fn upstream_deny_egress_by_pod_selector() {
    let policy = np(
        "x",
        "deny-egress-pod-a",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"], "egress": []}),
    );
    check(
        &Model::v4(),
        &[policy],
        TCP,
        80,
        &Reachability::all(true).set("x/a", "*", false),
    );
}

/// "should deny egress from all pods in a namespace".
#[test]
fn upstream_deny_egress_from_namespace() {
    let policy = np(
        "x",
        "deny-egress-ns-x",
        json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": []}),
    );
    check(
        &Model::v4(),
        &[policy],
        TCP,
        80,
        &Reachability::all(true).set("x", "*", false),
    );
}

/// "should work with Ingress, Egress specified together".
#[test]
fn upstream_ingress_and_egress_together() {
    let policy = np(
        "x",
        "allow-client-a-via-pod-selector",
        json!({
            "podSelector": {"matchLabels": {"pod": "a"}},
            "policyTypes": ["Egress", "Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}],
            "egress": [{"ports": [{"port": 80}]}],
        }),
    );
    let model = Model::v4();
    let port_80 = Reachability::all(true)
        .set("*", "x/a", false)
        .set("x/b", "x/a", true);
    check(&model, std::slice::from_ref(&policy), TCP, 80, &port_80);
    let port_81 = Reachability::all(true)
        .set("*", "x/a", false)
        .set("x/a", "*", false)
        .set("x/b", "x/a", true);
    check(&model, &[policy], TCP, 81, &port_81);
}

/// "should support denying of egress traffic on the client side (even if the server explicitly allows this
/// traffic)".
#[test]
fn upstream_egress_denied_on_the_client_side() {
    let egress = np(
        "x",
        "allow-to-ns-y-pod-a",
        json!({
            "podSelector": {"matchLabels": {"pod": "a"}},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{
                "namespaceSelector": {"matchLabels": {METADATA_NAME: "y"}},
                "podSelector": {"matchLabels": {"pod": "a"}},
            }]}],
        }),
    );
    let ingress_on = |name: &str, target: &str| {
        np(
            "y",
            name,
            json!({
                "podSelector": {"matchLabels": {"pod": target}},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [{
                    "namespaceSelector": {"matchLabels": {METADATA_NAME: "x"}},
                    "podSelector": {"matchLabels": {"pod": "a"}},
                }]}],
            }),
        )
    };
    let policies = [
        egress,
        ingress_on("allow-from-xa-on-ya-match-selector", "a"),
        ingress_on("allow-from-xa-on-yb-match-selector", "b"),
    ];
    let expected = Reachability::all(true)
        .set("x/a", "*", false)
        .set("*", "y/a", false)
        .set("x/a", "y/a", true)
        .set("*", "y/b", false);
    check(&Model::v4(), &policies, TCP, 80, &expected);
}

/// "should enforce egress policy allowing traffic to a server in a different namespace based on PodSelector
/// and NamespaceSelector".
#[test]
fn upstream_egress_to_a_server_in_a_different_namespace() {
    let policy = np(
        "x",
        "allow-to-ns-y-pod-a",
        json!({
            "podSelector": {"matchLabels": {"pod": "a"}},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{
                "namespaceSelector": {"matchLabels": {METADATA_NAME: "y"}},
                "podSelector": {"matchLabels": {"pod": "a"}},
            }]}],
        }),
    );
    let expected = Reachability::all(true)
        .set("x/a", "*", false)
        .set("x/a", "y/a", true);
    check(&Model::v4(), &[policy], TCP, 80, &expected);
}

/// "should enforce ingress policy allowing any port traffic to a server on a specific protocol".
#[test]
fn upstream_any_port_on_a_specific_protocol() {
    let policy = np(
        "x",
        "allow-ingress-by-proto",
        json!({
            "podSelector": {"matchLabels": {"pod": "a"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"protocol": "TCP"}]}],
        }),
    );
    let model = Model::v4();
    check(
        &model,
        std::slice::from_ref(&policy),
        TCP,
        80,
        &Reachability::all(true),
    );
    check(
        &model,
        &[policy],
        UDP,
        80,
        &Reachability::all(true).set("*", "x/a", false),
    );
}

/// "should enforce multiple ingress policies with ingress allow-all policy taking precedence".
#[test]
fn upstream_ingress_allow_all_takes_precedence() {
    let only_80 = np(
        "x",
        "allow-ingress-port-80",
        json!({
            "podSelector": {"matchLabels": {}},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"port": 80}]}],
        }),
    );
    let model = Model::v4();
    check(
        &model,
        std::slice::from_ref(&only_80),
        TCP,
        81,
        &Reachability::all(true).set("*", "x", false),
    );
    check(
        &model,
        &[only_80, allow_all_ingress_x("allow-ingress")],
        TCP,
        81,
        &Reachability::all(true),
    );
}

/// "should enforce multiple egress policies with egress allow-all policy taking precedence".
#[test]
fn upstream_egress_allow_all_takes_precedence() {
    let only_80 = np(
        "x",
        "allow-egress-port-80",
        json!({
            "podSelector": {"matchLabels": {}},
            "policyTypes": ["Egress"],
            "egress": [{"ports": [{"port": 80}]}],
        }),
    );
    let allow_all = np(
        "x",
        "allow-egress",
        json!({"podSelector": {"matchLabels": {}}, "policyTypes": ["Egress"], "egress": [{}]}),
    );
    let model = Model::v4();
    check(
        &model,
        std::slice::from_ref(&only_80),
        TCP,
        81,
        &Reachability::all(true).set("x", "*", false),
    );
    check(&model, &[only_80, allow_all], TCP, 81, &Reachability::all(true));
}

/// "should stop enforcing policies after they are deleted".
#[test]
fn upstream_policies_deleted() {
    let model = Model::v4();
    let denied = Reachability::all(true).set("x", "*", false).set("*", "x", false);
    check(&model, &[deny_all_x()], TCP, 80, &denied);
    check(&model, &[], TCP, 80, &Reachability::all(true));
}

fn x_a_egress_to_block(name: &str, block: Value) -> NetworkPolicy {
    np(
        "x",
        name,
        json!({
            "podSelector": {"matchLabels": {"pod": "a"}},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"ipBlock": block}]}],
        }),
    )
}

/// "should allow egress access to server in CIDR block", on IPv4 and IPv6 pod addresses.
#[test]
fn upstream_egress_to_server_in_cidr_block() {
    for model in both_families() {
        let policy = x_a_egress_to_block(
            "allow-client-a-via-cidr-egress-rule",
            json!({"cidr": model.host_cidr("y/b")}),
        );
        let expected = Reachability::all(true)
            .set("x/a", "*", false)
            .set("x/a", "y/b", true);
        check(&model, &[policy], TCP, 80, &expected);
    }
}

/// "should enforce except clause while egress access to server in CIDR block", on IPv4 and IPv6.
#[test]
fn upstream_except_clause_in_cidr_block() {
    for model in both_families() {
        let policy = x_a_egress_to_block(
            "allow-client-a-via-cidr-egress-rule",
            json!({"cidr": model.large_cidr(), "except": [model.host_cidr("x/b")]}),
        );
        check(
            &model,
            &[policy],
            TCP,
            80,
            &Reachability::all(true).set("x/a", "x/b", false),
        );
    }
}

/// "should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except is allowed", on IPv4 and IPv6: the
/// except clause first, then the policy replaced by one allowing only x/b; and, since policies add up, both
/// side by side under different names.
#[test]
fn upstream_ip_in_both_cidr_and_except_is_allowed() {
    for model in both_families() {
        let with_except = x_a_egress_to_block(
            "allow-client-a-via-cidr-egress-rule",
            json!({"cidr": model.large_cidr(), "except": [model.host_cidr("x/b")]}),
        );
        check(
            &model,
            std::slice::from_ref(&with_except),
            TCP,
            80,
            &Reachability::all(true).set("x/a", "x/b", false),
        );

        let replaced = x_a_egress_to_block(
            "allow-client-a-via-cidr-egress-rule",
            json!({"cidr": model.host_cidr("x/b")}),
        );
        let expected = Reachability::all(true)
            .set("x/a", "*", false)
            .set("x/a", "x/b", true);
        check(&model, &[replaced], TCP, 80, &expected);

        let alongside = x_a_egress_to_block("allow-client-a-to-x-b", json!({"cidr": model.host_cidr("x/b")}));
        check(
            &model,
            &[with_except, alongside],
            TCP,
            80,
            &Reachability::all(true),
        );
    }
}

/// "should enforce policies to check ingress and egress policies can be controlled independently based on
/// PodSelector".
#[test]
fn upstream_ingress_and_egress_independent() {
    let allow_egress = np(
        "x",
        "allow-egress-for-target",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Egress"], "egress": [{}]}),
    );
    let model = Model::v4();
    check(
        &model,
        std::slice::from_ref(&allow_egress),
        TCP,
        80,
        &Reachability::all(true),
    );
    let deny_ingress = np(
        "x",
        "deny-ingress-via-label-selector",
        json!({"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"], "ingress": []}),
    );
    check(
        &model,
        &[allow_egress, deny_ingress],
        TCP,
        80,
        &Reachability::all(true).set("*", "x/a", false),
    );
}

/// "should not mistakenly treat 'protocol: SCTP' as 'protocol: TCP', even if the plugin doesn't support
/// SCTP".
#[test]
fn upstream_sctp_is_not_tcp() {
    let sctp_only = np(
        "x",
        "allow-only-sctp-ingress-on-port-81",
        json!({
            "podSelector": {"matchLabels": {"pod": "a"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"port": 81, "protocol": "SCTP"}]}],
        }),
    );
    let model = Model::v4();
    let policies = [deny_ingress_x(), sctp_only];
    check(
        &model,
        &policies,
        TCP,
        81,
        &Reachability::all(true).set("*", "x", false),
    );
    check(
        &model,
        &policies,
        SCTP,
        81,
        &Reachability::all(true).set("*", "x", false).set("*", "x/a", true),
    );
}

/// "should properly isolate pods that are selected by a policy allowing SCTP, even if the plugin doesn't
/// support SCTP".
#[test]
fn upstream_sctp_policy_still_isolates() {
    let policy = np(
        "x",
        "allow-only-sctp-ingress-on-port-80",
        json!({
            "podSelector": {"matchLabels": {"pod": "a"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"port": 80, "protocol": "SCTP"}]}],
        }),
    );
    check(
        &Model::v4(),
        &[policy],
        TCP,
        81,
        &Reachability::all(true).set("*", "x/a", false),
    );
}

/// "should not allow access by TCP when a policy specifies only UDP".
#[test]
fn upstream_udp_policy_does_not_admit_tcp() {
    let policy = np(
        "x",
        "allow-only-udp-ingress-on-port-81",
        json!({
            "podSelector": {"matchLabels": {"pod": "a"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"ports": [{"port": 81, "protocol": "UDP"}]}],
        }),
    );
    let model = Model::v4();
    check(
        &model,
        std::slice::from_ref(&policy),
        TCP,
        81,
        &Reachability::all(true).set("*", "x/a", false),
    );
    check(&model, &[policy], UDP, 81, &Reachability::all(true));
}

// ---------------------------------------------------------------------------------------------------------
// The Kubernetes documentation, concepts/services-networking/network-policies.
// ---------------------------------------------------------------------------------------------------------

/// "Default deny all ingress traffic", with no policyTypes: the API server makes it an ingress policy.
#[test]
fn docs_default_deny_ingress() {
    let policy = np("x", "default-deny-ingress", json!({"podSelector": {}}));
    check(
        &Model::v4(),
        &[policy],
        TCP,
        80,
        &Reachability::all(true).set("*", "x", false),
    );
    let typed = np(
        "x",
        "default-deny-ingress",
        json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
    );
    check(
        &Model::v4(),
        &[typed],
        TCP,
        80,
        &Reachability::all(true).set("*", "x", false),
    );
}

/// "Allow all ingress traffic", next to a default deny.
#[test]
fn docs_allow_all_ingress() {
    let allow = np(
        "x",
        "allow-all-ingress",
        json!({"podSelector": {}, "ingress": [{}], "policyTypes": ["Ingress"]}),
    );
    let deny = np(
        "x",
        "default-deny-ingress",
        json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
    );
    check(&Model::v4(), &[deny, allow], TCP, 80, &Reachability::all(true));
}

/// "Default deny all egress traffic".
#[test]
fn docs_default_deny_egress() {
    let policy = np(
        "x",
        "default-deny-egress",
        json!({"podSelector": {}, "policyTypes": ["Egress"]}),
    );
    check(
        &Model::v4(),
        &[policy],
        TCP,
        80,
        &Reachability::all(true).set("x", "*", false),
    );
}

/// "Allow all egress traffic", next to a default deny.
#[test]
fn docs_allow_all_egress() {
    let allow = np(
        "x",
        "allow-all-egress",
        json!({"podSelector": {}, "egress": [{}], "policyTypes": ["Egress"]}),
    );
    let deny = np(
        "x",
        "default-deny-egress",
        json!({"podSelector": {}, "policyTypes": ["Egress"]}),
    );
    check(&Model::v4(), &[deny, allow], TCP, 80, &Reachability::all(true));
}

/// "Default deny all ingress and all egress traffic".
#[test]
fn docs_default_deny_all() {
    let policy = np(
        "x",
        "default-deny-all",
        json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
    );
    let expected = Reachability::all(true).set("x", "*", false).set("*", "x", false);
    check(&Model::v4(), &[policy], TCP, 80, &expected);
}

/// The documentation's cluster for `test-network-policy`: `default` holds the database and two clients,
/// `myproject` is labelled `project=myproject`, `other` is not.
struct DocsCluster {
    namespaces: Vec<NamespaceInfo>,
    db: Pod,
    frontend: Pod,
    backend: Pod,
    myproject: Pod,
    other_frontend: Pod,
}

fn docs_cluster() -> DocsCluster {
    DocsCluster {
        namespaces: vec![
            namespace("default", &[(METADATA_NAME, "default")]),
            namespace(
                "myproject",
                &[(METADATA_NAME, "myproject"), ("project", "myproject")],
            ),
            namespace("other", &[(METADATA_NAME, "other")]),
        ],
        db: pod("default", &[("role", "db")], Some(v4("192.168.0.10"))),
        frontend: pod("default", &[("role", "frontend")], Some(v4("192.168.0.11"))),
        backend: pod("default", &[("role", "backend")], Some(v4("192.168.0.12"))),
        myproject: pod("myproject", &[("app", "anything")], Some(v4("192.168.1.10"))),
        other_frontend: pod("other", &[("role", "frontend")], Some(v4("192.168.2.10"))),
    }
}

fn test_network_policy() -> NetworkPolicy {
    np(
        "default",
        "test-network-policy",
        json!({
            "podSelector": {"matchLabels": {"role": "db"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{
                "from": [
                    {"ipBlock": {"cidr": "172.17.0.0/16", "except": ["172.17.1.0/24"]}},
                    {"namespaceSelector": {"matchLabels": {"project": "myproject"}}},
                    {"podSelector": {"matchLabels": {"role": "frontend"}}},
                ],
                "ports": [{"protocol": "TCP", "port": 6379}],
            }],
            "egress": [{
                "to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}],
                "ports": [{"protocol": "TCP", "port": 5978}],
            }],
        }),
    )
}

/// The example `test-network-policy`, ingress side: who may reach the database on TCP 6379.
#[test]
fn docs_test_network_policy_ingress() {
    let cluster = docs_cluster();
    let policies = Policies::new(&cluster.namespaces, &[test_network_policy()]).expect("compiles");
    let db = Endpoint::Pod(&cluster.db);
    let cases: [(&str, Endpoint<'_>, u16, Protocol, bool); 12] = [
        (
            "frontend in default",
            Endpoint::Pod(&cluster.frontend),
            6379,
            TCP,
            true,
        ),
        (
            "backend in default",
            Endpoint::Pod(&cluster.backend),
            6379,
            TCP,
            false,
        ),
        (
            "any pod of myproject",
            Endpoint::Pod(&cluster.myproject),
            6379,
            TCP,
            true,
        ),
        (
            "frontend of another namespace",
            Endpoint::Pod(&cluster.other_frontend),
            6379,
            TCP,
            false,
        ),
        (
            "inside the block",
            Endpoint::External(v4("172.17.0.1")),
            6379,
            TCP,
            true,
        ),
        (
            "top of the block",
            Endpoint::External(v4("172.17.255.255")),
            6379,
            TCP,
            true,
        ),
        (
            "inside the exception",
            Endpoint::External(v4("172.17.1.1")),
            6379,
            TCP,
            false,
        ),
        (
            "top of the exception",
            Endpoint::External(v4("172.17.1.255")),
            6379,
            TCP,
            false,
        ),
        (
            "outside the block",
            Endpoint::External(v4("172.18.0.1")),
            6379,
            TCP,
            false,
        ),
        (
            "frontend on another port",
            Endpoint::Pod(&cluster.frontend),
            6380,
            TCP,
            false,
        ),
        (
            "frontend over UDP",
            Endpoint::Pod(&cluster.frontend),
            6379,
            UDP,
            false,
        ),
        (
            "the database itself",
            Endpoint::Pod(&cluster.db),
            6379,
            TCP,
            false,
        ),
    ];
    for (case, from, port, protocol, allowed) in cases {
        assert_eq!(policies.allowed(&from, &db, port, protocol), allowed, "{case}");
    }
    // The frontend's own egress is open; the database admits it through the example policy.
    let decision = policies.connection(&Endpoint::Pod(&cluster.frontend), &db, 6379, TCP);
    assert!(!decision.egress.isolated);
    assert_eq!(
        decision.ingress.allowed_by,
        [reference("default", "test-network-policy")]
    );
}

/// The example `test-network-policy`, egress side: the database may reach 10.0.0.0/24 on TCP 5978 only.
#[test]
fn docs_test_network_policy_egress() {
    let cluster = docs_cluster();
    let policies = Policies::new(&cluster.namespaces, &[test_network_policy()]).expect("compiles");
    let db = Endpoint::Pod(&cluster.db);
    let cases: [(&str, Endpoint<'_>, u16, Protocol, bool); 7] = [
        (
            "inside the block",
            Endpoint::External(v4("10.0.0.5")),
            5978,
            TCP,
            true,
        ),
        (
            "last address of the block",
            Endpoint::External(v4("10.0.0.255")),
            5978,
            TCP,
            true,
        ),
        (
            "outside the block",
            Endpoint::External(v4("10.0.1.5")),
            5978,
            TCP,
            false,
        ),
        (
            "another port",
            Endpoint::External(v4("10.0.0.5")),
            5979,
            TCP,
            false,
        ),
        ("UDP", Endpoint::External(v4("10.0.0.5")), 5978, UDP, false),
        (
            "a pod outside the block",
            Endpoint::Pod(&cluster.frontend),
            5978,
            TCP,
            false,
        ),
        (
            "an IPv6 address",
            Endpoint::External("::ffff:10.0.0.5".parse().expect("v6")),
            5978,
            TCP,
            false,
        ),
    ];
    for (case, to, port, protocol, allowed) in cases {
        assert_eq!(policies.allowed(&db, &to, port, protocol), allowed, "{case}");
    }
    // Pods the policy does not select keep both directions open.
    let backend = Endpoint::Pod(&cluster.backend);
    assert!(policies.allowed(&backend, &Endpoint::External(v4("8.8.8.8")), 53, UDP));
    assert!(policies.allowed(&Endpoint::Pod(&cluster.other_frontend), &backend, 8080, TCP));
}

/// "Behavior of to and from selectors": `namespaceSelector` and `podSelector` in one element (AND) versus
/// two elements (OR).
#[test]
fn docs_one_element_versus_two() {
    let namespaces = [
        namespace("default", &[]),
        namespace("alice", &[("user", "alice")]),
        namespace("bob", &[]),
    ];
    let server = pod("default", &[("app", "server")], None);
    let alice_client = pod("alice", &[("role", "client")], None);
    let alice_other = pod("alice", &[("role", "other")], None);
    let default_client = pod("default", &[("role", "client")], None);
    let bob_client = pod("bob", &[("role", "client")], None);

    let one = np(
        "default",
        "one-element",
        json!({
            "podSelector": {"matchLabels": {"app": "server"}},
            "ingress": [{"from": [{
                "namespaceSelector": {"matchLabels": {"user": "alice"}},
                "podSelector": {"matchLabels": {"role": "client"}},
            }]}],
        }),
    );
    let two = np(
        "default",
        "two-elements",
        json!({
            "podSelector": {"matchLabels": {"app": "server"}},
            "ingress": [{"from": [
                {"namespaceSelector": {"matchLabels": {"user": "alice"}}},
                {"podSelector": {"matchLabels": {"role": "client"}}},
            ]}],
        }),
    );
    // (client, allowed by the one-element form, allowed by the two-element form)
    let cases = [
        (&alice_client, true, true),
        (&alice_other, false, true),
        (&default_client, false, true),
        (&bob_client, false, false),
    ];
    let one = Policies::new(&namespaces, &[one]).expect("compiles");
    let two = Policies::new(&namespaces, &[two]).expect("compiles");
    let to = Endpoint::Pod(&server);
    for (client, by_one, by_two) in cases {
        let from = Endpoint::Pod(client);
        assert_eq!(
            one.allowed(&from, &to, 80, TCP),
            by_one,
            "one element, client {client:?}"
        );
        assert_eq!(
            two.allowed(&from, &to, 80, TCP),
            by_two,
            "two elements, client {client:?}"
        );
    }
}

/// "Targeting a range of ports": `multi-port-egress`, TCP 32000 through 32768 to 10.0.0.0/24.
#[test]
fn docs_end_port() {
    let namespaces = [namespace("default", &[])];
    let policy = np(
        "default",
        "multi-port-egress",
        json!({
            "podSelector": {"matchLabels": {"role": "db"}},
            "policyTypes": ["Egress"],
            "egress": [{
                "to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}],
                "ports": [{"protocol": "TCP", "port": 32000, "endPort": 32768}],
            }],
        }),
    );
    let policies = Policies::new(&namespaces, &[policy]).expect("compiles");
    let db = pod("default", &[("role", "db")], None);
    let from = Endpoint::Pod(&db);
    let to = Endpoint::External(v4("10.0.0.7"));
    for (port, allowed) in [
        (31999, false),
        (32000, true),
        (32500, true),
        (32768, true),
        (32769, false),
    ] {
        assert_eq!(policies.allowed(&from, &to, port, TCP), allowed, "port {port}");
    }
    assert!(!policies.allowed(&from, &to, 32000, UDP));
}

// ---------------------------------------------------------------------------------------------------------
// Units: selectors, blocks, ports, policy types, endpoints, evidence, refusals.
// ---------------------------------------------------------------------------------------------------------

fn compile_selector(selector: Value) -> Result<Selector, PolicyError> {
    let selector: LabelSelector = serde_json::from_value(selector).expect("a LabelSelector");
    let reference = reference("ns", "policy");
    selector_of(
        &selector,
        "spec.podSelector",
        &Context {
            reference: &reference,
        },
    )
}

#[test]
fn selector_operators() {
    let env_prod = labels(&[("env", "prod"), ("tier", "web")]);
    let env_dev = labels(&[("env", "dev")]);
    let no_env = labels(&[("tier", "web")]);
    // (selector, matches env=prod,tier=web; env=dev; tier=web)
    let cases = [
        (json!({}), [true, true, true]),
        (json!({"matchLabels": {}}), [true, true, true]),
        (json!({"matchLabels": {"env": "prod"}}), [true, false, false]),
        (
            json!({"matchLabels": {"env": "prod", "tier": "web"}}),
            [true, false, false],
        ),
        (
            json!({"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]}]}),
            [true, true, false],
        ),
        (
            json!({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]}),
            [false, true, true],
        ),
        (
            json!({"matchExpressions": [{"key": "env", "operator": "Exists"}]}),
            [true, true, false],
        ),
        (
            json!({"matchExpressions": [{"key": "env", "operator": "Exists", "values": []}]}),
            [true, true, false],
        ),
        (
            json!({"matchExpressions": [{"key": "env", "operator": "DoesNotExist"}]}),
            [false, false, true],
        ),
        (
            json!({
                "matchLabels": {"tier": "web"},
                "matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["dev"]}],
            }),
            [true, false, true],
        ),
        (
            json!({"matchExpressions": [
                {"key": "env", "operator": "Exists"},
                {"key": "env", "operator": "NotIn", "values": ["prod"]},
            ]}),
            [false, true, false],
        ),
    ];
    for (selector, expected) in cases {
        let compiled = compile_selector(selector.clone()).expect("a valid selector");
        let actual = [
            compiled.matches(&env_prod),
            compiled.matches(&env_dev),
            compiled.matches(&no_env),
        ];
        assert_eq!(actual, expected, "{selector}");
    }
}

#[test]
fn selector_refusals() {
    let cases = [
        (
            json!({"matchExpressions": [{"key": "env", "operator": "Equals", "values": ["a"]}]}),
            "unknown label selector operator \"Equals\"",
        ),
        (
            json!({"matchExpressions": [{"key": "env", "operator": "in", "values": ["a"]}]}),
            "unknown label selector operator \"in\"",
        ),
        (
            json!({"matchExpressions": [{"key": "env", "operator": "In"}]}),
            "operator In on key \"env\" needs values",
        ),
        (
            json!({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": []}]}),
            "operator NotIn on key \"env\" needs values",
        ),
        (
            json!({"matchExpressions": [{"key": "env", "operator": "Exists", "values": ["a"]}]}),
            "operator Exists on key \"env\" takes no values",
        ),
        (
            json!({"matchExpressions": [{"key": "env", "operator": "DoesNotExist", "values": ["a"]}]}),
            "operator DoesNotExist on key \"env\" takes no values",
        ),
    ];
    for (selector, message) in cases {
        let error = compile_selector(selector.clone()).expect_err("refused");
        assert_eq!(
            error.to_string(),
            format!("NetworkPolicy ns/policy: spec.podSelector: {message}"),
            "{selector}"
        );
    }
}

#[test]
fn cidr_parsing() {
    let parsed = |text: &str| Cidr::parse(text);
    assert_eq!(
        parsed("10.1.2.3/8"),
        parsed("10.0.0.0/8"),
        "host bits are cleared"
    );
    assert_eq!(parsed("2001:db8::1/32"), parsed("2001:db8::/32"));
    for valid in ["0.0.0.0/0", "10.0.0.1/32", "::/0", "::1/128", "fd00::/8"] {
        assert!(parsed(valid).is_some(), "{valid}");
    }
    for invalid in [
        "10.0.0.0",
        "10.0.0.0/",
        "10.0.0.0/33",
        "::/129",
        "10.0.0/8",
        "10.0.0.0/+8",
        "10.0.0.0/ 8",
        "x/8",
        "/8",
        "10.0.0.0/1000",
        "",
    ] {
        assert!(parsed(invalid).is_none(), "{invalid}");
    }
}

#[test]
fn cidr_containment() {
    let cases = [
        ("10.0.0.0/8", "10.255.255.255", true),
        ("10.0.0.0/8", "11.0.0.0", false),
        ("10.0.0.0/8", "9.255.255.255", false),
        ("10.0.0.7/32", "10.0.0.7", true),
        ("10.0.0.7/32", "10.0.0.6", false),
        ("0.0.0.0/0", "203.0.113.9", true),
        ("0.0.0.0/0", "::1", false),
        ("::/0", "10.0.0.1", false),
        ("::/0", "2001:db8::1", true),
        ("2001:db8::/32", "2001:db8:ffff::1", true),
        ("2001:db8::/32", "2001:db9::1", false),
        ("fd00::1/128", "fd00::1", true),
        ("fd00::1/128", "fd00::2", false),
        ("10.0.0.0/8", "::ffff:10.0.0.1", false),
    ];
    for (cidr, ip, contained) in cases {
        let block = Cidr::parse(cidr).expect("a CIDR");
        assert_eq!(
            block.contains(ip.parse().expect("an address")),
            contained,
            "{ip} in {cidr}"
        );
    }
}

fn egress_to(block: Value) -> Policies {
    let policy = np(
        "ns",
        "egress-block",
        json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"ipBlock": block}]}]}),
    );
    Policies::new(&[namespace("ns", &[])], &[policy]).expect("compiles")
}

#[test]
fn ip_block_except_v4() {
    let policies =
        egress_to(json!({"cidr": "172.16.0.0/12", "except": ["172.16.0.0/16", "172.31.255.0/24"]}));
    let client = pod("ns", &[], Some(v4("192.168.0.1")));
    let from = Endpoint::Pod(&client);
    for (ip, allowed) in [
        ("172.16.0.1", false),
        ("172.16.255.255", false),
        ("172.17.0.0", true),
        ("172.31.254.255", true),
        ("172.31.255.1", false),
        ("172.32.0.0", false),
        ("172.15.255.255", false),
    ] {
        assert_eq!(
            policies.allowed(&from, &Endpoint::External(v4(ip)), 443, TCP),
            allowed,
            "{ip}"
        );
    }
}

#[test]
fn ip_block_except_v6() {
    let policies =
        egress_to(json!({"cidr": "2001:db8::/32", "except": ["2001:db8:bad::/48", "2001:db8::1/128"]}));
    let client = pod("ns", &[], Some("fd00::5".parse().expect("v6")));
    let from = Endpoint::Pod(&client);
    for (ip, allowed) in [
        ("2001:db8::2", true),
        ("2001:db8::1", false),
        ("2001:db8:bad::1", false),
        ("2001:db8:bad:ffff:ffff:ffff:ffff:ffff", false),
        ("2001:db8:bae::1", true),
        ("2001:db9::1", false),
        ("32.1.13.184", false),
    ] {
        let to = Endpoint::External(ip.parse().expect("an address"));
        assert_eq!(policies.allowed(&from, &to, 443, TCP), allowed, "{ip}");
    }
}

#[test]
fn ip_block_matches_pods_by_their_address_only() {
    let policies = egress_to(json!({"cidr": "10.0.0.0/8"}));
    let client = pod("ns", &[], None);
    let inside = pod("other", &[], Some(v4("10.1.1.1")));
    let outside = pod("other", &[], Some(v4("192.168.1.1")));
    let unknown = pod("other", &[], None);
    let from = Endpoint::Pod(&client);
    assert!(policies.allowed(&from, &Endpoint::Pod(&inside), 80, TCP));
    assert!(!policies.allowed(&from, &Endpoint::Pod(&outside), 80, TCP));
    assert!(
        !policies.allowed(&from, &Endpoint::Pod(&unknown), 80, TCP),
        "no address, no match"
    );
}

fn ingress_on_ports(ports: Value) -> Policies {
    let policy = np(
        "ns",
        "ports",
        json!({"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"ports": ports}]}),
    );
    Policies::new(&[namespace("ns", &[])], &[policy]).expect("compiles")
}

fn server() -> Pod {
    let mut server = pod("ns", &[], Some(v4("10.0.0.2")));
    server.ports = vec![
        NamedPort {
            name: Some("http".into()),
            port: 8080,
            protocol: TCP,
        },
        NamedPort {
            name: Some("dns".into()),
            port: 53,
            protocol: UDP,
        },
        NamedPort {
            name: Some("8443".into()),
            port: 9443,
            protocol: TCP,
        },
        NamedPort {
            name: None,
            port: 9000,
            protocol: TCP,
        },
    ];
    server
}

#[test]
fn end_port_range() {
    let policies =
        ingress_on_ports(json!([{"port": 1000, "endPort": 1002}, {"port": 65535, "endPort": 65535}]));
    let server = server();
    let to = Endpoint::Pod(&server);
    let from = Endpoint::External(v4("10.9.9.9"));
    for (port, allowed) in [
        (999, false),
        (1000, true),
        (1001, true),
        (1002, true),
        (1003, false),
        (65534, false),
        (65535, true),
    ] {
        assert_eq!(policies.allowed(&from, &to, port, TCP), allowed, "port {port}");
    }
}

#[test]
fn named_ports() {
    let server = server();
    let to = Endpoint::Pod(&server);
    let from = Endpoint::External(v4("10.9.9.9"));
    // (policy port, connection port, protocol, allowed)
    let cases = [
        (json!({"port": "http"}), 8080, TCP, true),
        (json!({"port": "http"}), 8081, TCP, false),
        (json!({"port": "http", "protocol": "UDP"}), 8080, UDP, false),
        (json!({"port": "http"}), 8080, UDP, false),
        (json!({"port": "dns"}), 53, UDP, false),
        (json!({"port": "dns", "protocol": "UDP"}), 53, UDP, true),
        (json!({"port": "dns", "protocol": "UDP"}), 53, TCP, false),
        (json!({"port": "8443"}), 8443, TCP, false),
        (json!({"port": "8443"}), 9443, TCP, true),
        (json!({"port": "missing"}), 9000, TCP, false),
        (json!({"port": 9000}), 9000, TCP, true),
        (json!({"protocol": "UDP"}), 12345, UDP, true),
        (json!({"protocol": "UDP"}), 12345, TCP, false),
    ];
    for (port, number, protocol, allowed) in cases {
        let policies = ingress_on_ports(json!([port.clone()]));
        assert_eq!(
            policies.allowed(&from, &to, number, protocol),
            allowed,
            "{port} on {protocol}/{number}"
        );
    }
}

#[test]
fn named_port_never_matches_an_external_destination() {
    let policy = np(
        "ns",
        "egress-named",
        json!({"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": "https"}]}]}),
    );
    let policies = Policies::new(&[namespace("ns", &[])], &[policy]).expect("compiles");
    let client = pod("ns", &[], None);
    assert!(!policies.allowed(
        &Endpoint::Pod(&client),
        &Endpoint::External(v4("1.1.1.1")),
        443,
        TCP
    ));
}

#[test]
fn policy_types_defaulting() {
    let namespaces = [namespace("ns", &[])];
    let target = pod("ns", &[], None);
    // (spec, isolated for ingress, isolated for egress)
    let cases = [
        (json!({"podSelector": {}}), true, false),
        (json!({"podSelector": {}, "policyTypes": []}), true, false),
        (json!({"podSelector": {}, "egress": []}), true, false),
        (json!({"podSelector": {}, "egress": [{}]}), true, true),
        (
            json!({"podSelector": {}, "ingress": [{}], "egress": [{"ports": [{"port": 53}]}]}),
            true,
            true,
        ),
        (json!({"podSelector": {}, "policyTypes": ["Egress"]}), false, true),
        (
            json!({"podSelector": {}, "policyTypes": ["Egress"], "ingress": [{}]}),
            false,
            true,
        ),
        (
            json!({"podSelector": {}, "policyTypes": ["Ingress"], "egress": [{}]}),
            true,
            false,
        ),
        (
            json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
            true,
            true,
        ),
        (json!({}), true, false),
    ];
    for (spec, ingress, egress) in cases {
        let policies = Policies::new(&namespaces, &[np("ns", "p", spec.clone())]).expect("compiles");
        assert_eq!(
            policies.is_isolated(&target, Direction::Ingress),
            ingress,
            "ingress: {spec}"
        );
        assert_eq!(
            policies.is_isolated(&target, Direction::Egress),
            egress,
            "egress: {spec}"
        );
    }

    // Rules of a direction the policy does not cover are ignored: an Egress-only policy with an allow-all
    // ingress rule does not open ingress past a deny.
    let egress_only = np(
        "ns",
        "egress-only",
        json!({"podSelector": {}, "policyTypes": ["Egress"], "ingress": [{}]}),
    );
    let deny = np(
        "ns",
        "deny",
        json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
    );
    let policies = Policies::new(&namespaces, &[egress_only, deny]).expect("compiles");
    let other = pod("elsewhere", &[], None);
    assert!(!policies.allowed(&Endpoint::Pod(&other), &Endpoint::Pod(&target), 80, TCP));
}

#[test]
fn external_endpoints_have_no_policies_and_match_no_selector() {
    let namespaces = [namespace("ns", &[])];
    let policies = [
        np(
            "ns",
            "from-everyone",
            json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}, {"podSelector": {}}]}]}),
        ),
        np(
            "ns",
            "deny-egress",
            json!({"podSelector": {}, "policyTypes": ["Egress"]}),
        ),
    ];
    let policies = Policies::new(&namespaces, &policies).expect("compiles");
    let target = pod("ns", &[], Some(v4("10.0.0.1")));
    let external = Endpoint::External(v4("10.0.0.9"));

    let inbound = policies.connection(&external, &Endpoint::Pod(&target), 80, TCP);
    assert!(
        !inbound.allowed,
        "selectors do not match an address without a pod"
    );
    assert_eq!(inbound.egress, Side::default());
    assert!(inbound.ingress.isolated);
    assert_eq!(inbound.ingress.selecting, [reference("ns", "from-everyone")]);
    assert!(inbound.ingress.allowed_by.is_empty());

    let between = policies.connection(&external, &Endpoint::External(v4("10.0.0.10")), 80, TCP);
    assert!(between.allowed);
    assert_eq!(between.egress, Side::default());
    assert_eq!(between.ingress, Side::default());
}

#[test]
fn unknown_namespaces() {
    // `ghost` has a policy but no entry among the namespaces; `nowhere` has neither.
    let namespaces = [namespace("ns", &[("team", "a")])];
    let policies = [
        np(
            "ns",
            "from-any-namespace",
            json!({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}),
        ),
        np(
            "ghost",
            "deny",
            json!({"podSelector": {}, "policyTypes": ["Ingress"]}),
        ),
    ];
    let policies = Policies::new(&namespaces, &policies).expect("compiles");
    let target = pod("ns", &[], None);
    let ghost = pod("ghost", &[], None);
    let nowhere = pod("nowhere", &[], None);
    let neighbour = pod("ns", &[("any", "thing")], None);

    assert!(policies.allowed(&Endpoint::Pod(&neighbour), &Endpoint::Pod(&target), 80, TCP));
    assert!(
        !policies.allowed(&Endpoint::Pod(&ghost), &Endpoint::Pod(&target), 80, TCP),
        "no labels, no match"
    );
    assert!(!policies.allowed(&Endpoint::Pod(&nowhere), &Endpoint::Pod(&target), 80, TCP));
    assert!(
        !policies.allowed(&Endpoint::Pod(&target), &Endpoint::Pod(&ghost), 80, TCP),
        "ghost's policy applies"
    );
    assert!(policies.allowed(&Endpoint::Pod(&target), &Endpoint::Pod(&nowhere), 80, TCP));
    assert!(!policies.is_isolated(&nowhere, Direction::Ingress));
}

#[test]
fn pod_selector_peers_stay_in_the_policy_namespace() {
    let namespaces = [namespace("a", &[]), namespace("b", &[])];
    let policy = np(
        "a",
        "same-role",
        json!({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}),
    );
    let policies = Policies::new(&namespaces, &[policy]).expect("compiles");
    let target = pod("a", &[], None);
    let same = pod("a", &[("x", "y")], None);
    let foreign = pod("b", &[], None);
    assert!(policies.allowed(&Endpoint::Pod(&same), &Endpoint::Pod(&target), 80, TCP));
    assert!(!policies.allowed(&Endpoint::Pod(&foreign), &Endpoint::Pod(&target), 80, TCP));
}

#[test]
fn evidence_names_the_policies() {
    let namespaces = [namespace("app", &[]), namespace("client", &[("role", "client")])];
    let policies = [
        np(
            "app",
            "deny-all",
            json!({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
        ),
        np(
            "app",
            "allow-clients",
            json!({
                "podSelector": {"matchLabels": {"app": "web"}},
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"role": "client"}}}], "ports": [{"port": 8080}]}],
            }),
        ),
        np(
            "app",
            "unrelated",
            json!({"podSelector": {"matchLabels": {"app": "db"}}}),
        ),
        np(
            "client",
            "deny-egress",
            json!({"podSelector": {}, "policyTypes": ["Egress"]}),
        ),
    ];
    let policies = Policies::new(&namespaces, &policies).expect("compiles");
    let web = pod("app", &[("app", "web")], None);
    let client = pod("client", &[], None);

    let decision = policies.connection(&Endpoint::Pod(&client), &Endpoint::Pod(&web), 8080, TCP);
    let expected = Decision {
        allowed: false,
        egress: Side {
            isolated: true,
            allowed_by: vec![],
            selecting: vec![reference("client", "deny-egress")],
        },
        ingress: Side {
            isolated: true,
            allowed_by: vec![reference("app", "allow-clients")],
            selecting: vec![reference("app", "deny-all"), reference("app", "allow-clients")],
        },
    };
    assert_eq!(decision, expected);
    assert!(!expected.egress.allows());
    assert!(expected.ingress.allows());
    assert_eq!(
        serde_json::to_value(&decision).expect("serializes"),
        json!({
            "allowed": false,
            "egress": {"isolated": true, "allowed_by": [], "selecting": [{"namespace": "client", "name": "deny-egress"}]},
            "ingress": {
                "isolated": true,
                "allowed_by": [{"namespace": "app", "name": "allow-clients"}],
                "selecting": [{"namespace": "app", "name": "deny-all"}, {"namespace": "app", "name": "allow-clients"}],
            },
        })
    );
}

#[test]
fn protocols() {
    assert_eq!(Protocol::from_api(None), Ok(TCP));
    assert_eq!(Protocol::from_api(Some("UDP")), Ok(UDP));
    assert_eq!("SCTP".parse(), Ok(SCTP));
    assert_eq!("tcp".parse::<Protocol>(), Err(UnknownProtocol("tcp".into())));
    assert_eq!(serde_json::to_value(SCTP).expect("serializes"), json!("SCTP"));
    assert_eq!(TCP.to_string(), "TCP");
}

#[test]
fn refusals() {
    let namespaces = [namespace("ns", &[])];
    let refused = |spec: Value| {
        Policies::new(&namespaces, &[np("ns", "bad", spec.clone())]).expect_err(&format!("{spec} is refused"))
    };
    let cases = [
        (
            json!({"policyTypes": ["Ingress", "Sideways"]}),
            PolicyProblem::PolicyType("Sideways".into()),
        ),
        (
            json!({"ingress": [{"from": [{}]}]}),
            PolicyProblem::EmptyPeer {
                field: "spec.ingress[0].from[0]".into(),
            },
        ),
        (
            json!({"policyTypes": ["Egress"], "egress": [{}, {"to": [{"podSelector": {}}, {"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]}),
            PolicyProblem::IpBlockWithSelector {
                field: "spec.egress[1].to[1]".into(),
            },
        ),
        (
            json!({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "namespaceSelector": {}}]}]}),
            PolicyProblem::IpBlockWithSelector {
                field: "spec.ingress[0].from[0]".into(),
            },
        ),
        (
            json!({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0"}}]}]}),
            PolicyProblem::Cidr {
                field: "spec.ingress[0].from[0].ipBlock.cidr".into(),
                cidr: "10.0.0.0".into(),
            },
        ),
        (
            json!({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16", "10.2.0.0/40"]}}]}]}),
            PolicyProblem::Cidr {
                field: "spec.ingress[0].from[0].ipBlock.except[1]".into(),
                cidr: "10.2.0.0/40".into(),
            },
        ),
        (
            json!({"ingress": [{"ports": [{"protocol": "ICMP"}]}]}),
            PolicyProblem::Protocol {
                field: "spec.ingress[0].ports[0].protocol".into(),
                protocol: "ICMP".into(),
            },
        ),
        (
            json!({"ingress": [{"ports": [{"port": 0}]}]}),
            PolicyProblem::Port {
                field: "spec.ingress[0].ports[0].port".into(),
                port: 0,
            },
        ),
        (
            json!({"ingress": [{"ports": [{"port": 80}, {"port": 65536}]}]}),
            PolicyProblem::Port {
                field: "spec.ingress[0].ports[1].port".into(),
                port: 65536,
            },
        ),
        (
            json!({"ingress": [{"ports": [{"port": ""}]}]}),
            PolicyProblem::EmptyPortName {
                field: "spec.ingress[0].ports[0].port".into(),
            },
        ),
        (
            json!({"ingress": [{"ports": [{"port": 100, "endPort": 99}]}]}),
            PolicyProblem::EndPort {
                field: "spec.ingress[0].ports[0].endPort".into(),
                end_port: 99,
            },
        ),
        (
            json!({"ingress": [{"ports": [{"port": 100, "endPort": 65536}]}]}),
            PolicyProblem::EndPort {
                field: "spec.ingress[0].ports[0].endPort".into(),
                end_port: 65536,
            },
        ),
        (
            json!({"ingress": [{"ports": [{"port": "http", "endPort": 100}]}]}),
            PolicyProblem::EndPort {
                field: "spec.ingress[0].ports[0].endPort".into(),
                end_port: 100,
            },
        ),
        (
            json!({"ingress": [{"ports": [{"endPort": 100}]}]}),
            PolicyProblem::EndPort {
                field: "spec.ingress[0].ports[0].endPort".into(),
                end_port: 100,
            },
        ),
        (
            json!({"ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [{"key": "k", "operator": "Exists", "values": ["v"]}]}}]}]}),
            PolicyProblem::SelectorValues {
                field: "spec.ingress[0].from[0].namespaceSelector".into(),
                key: "k".into(),
                operator: "Exists".into(),
                needs_values: false,
            },
        ),
        (
            json!({"ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchExpressions": [{"key": "k", "operator": "Near"}]}}]}]}),
            PolicyProblem::SelectorOperator {
                field: "spec.ingress[0].from[0].podSelector".into(),
                operator: "Near".into(),
            },
        ),
        (
            json!({"podSelector": {"matchExpressions": [{"key": "k", "operator": "In", "values": []}]}}),
            PolicyProblem::SelectorValues {
                field: "spec.podSelector".into(),
                key: "k".into(),
                operator: "In".into(),
                needs_values: true,
            },
        ),
    ];
    for (spec, problem) in cases {
        let error = refused(spec.clone());
        assert_eq!(
            error,
            PolicyError {
                policy: reference("ns", "bad"),
                problem: Box::new(problem),
            },
            "{spec}"
        );
    }

    // Rules of a direction the policy does not cover are not compiled, so they cannot be refused.
    let ignored = json!({"policyTypes": ["Ingress"], "egress": [{"to": [{}]}]});
    assert!(Policies::new(&namespaces, &[np("ns", "ignored", ignored)]).is_ok());

    let mut nameless = np("ns", "x", json!({}));
    nameless.metadata.name = None;
    let error = Policies::new(&namespaces, &[nameless]).expect_err("refused");
    assert_eq!(*error.problem, PolicyProblem::MissingName);
    let mut homeless = np("ns", "x", json!({}));
    homeless.metadata.namespace = None;
    let error = Policies::new(&namespaces, &[homeless]).expect_err("refused");
    assert_eq!(*error.problem, PolicyProblem::MissingNamespace);
    assert_eq!(
        error.to_string(),
        "NetworkPolicy /x: metadata.namespace is missing"
    );

    let error = refused(json!({"ingress": [{"ports": [{"port": 100, "endPort": 99}]}]}));
    assert_eq!(
        error.to_string(),
        "NetworkPolicy ns/bad: spec.ingress[0].ports[0].endPort: endPort 99 needs a numeric port no greater than \
         it, and at most 65535"
    );
}
