//! NetworkPolicy evaluation: whether one endpoint may open a connection to another under the
//! `networking.k8s.io/v1` NetworkPolicies of the cluster.
//!
//! The evaluator is pure: it takes the namespaces (for their labels), the policies and the two endpoints, and
//! answers with a [`Decision`] that names the policies behind it. [`Policies::new`] compiles everything once
//! (selectors, CIDRs, ports, and which namespaces each distinct namespace selector matches), so a single
//! question costs a few label look-ups and no allocation through [`Policies::allowed`].
//!
//! The rules are those of Kubernetes:
//!
//! * A pod is isolated for ingress (egress) when a policy of its own namespace selects it through
//!   `spec.podSelector` and lists `Ingress` (`Egress`) in `spec.policyTypes`. Without `policyTypes` a policy
//!   is an ingress policy, and also an egress policy when `spec.egress` holds at least one rule, as the API
//!   server defaults it.
//! * Policies add up. A direction admits the connection when the pod is not isolated in it, or when some rule
//!   of a policy selecting the pod for that direction matches both the peer and the port. A connection needs
//!   the egress side of its source and the ingress side of its destination. An address without a pod
//!   ([`Endpoint::External`]) has no policies of its own: its side always admits.
//! * A rule without peers matches every peer; without ports, every port. A `podSelector` peer matches pods of
//!   the policy's namespace; a `namespaceSelector` peer matches pods of the namespaces it selects; both in one
//!   peer match the pods selected by the first in the namespaces selected by the second. An empty selector
//!   matches everything in its scope. Selectors never match an address without a pod, nor a pod whose
//!   namespace is unknown (for a `namespaceSelector`).
//! * An `ipBlock` peer matches an address inside `cidr` and outside every `except`. Implementations differ on
//!   whether an `ipBlock` applies to pod traffic; Bulkhead evaluates it as kube-router does, against the pod
//!   IP when it is known, so a pod without a known IP never matches one. IPv4 and IPv6 never match each other.
//! * A port without `protocol` means TCP; without `port`, every port of the protocol; a number with `endPort`,
//!   the inclusive range. A named port is resolved against the destination pod's declared ports (name,
//!   protocol and number must all agree) and never matches an address without a pod. A port given as a
//!   string is a name even when it is made of digits.
//! * A connection from a pod to itself is evaluated like any other; it gets no exemption.
//!
//! Inputs the API server would reject (an unknown selector operator, `In` without values, a peer with no
//! field, an invalid CIDR, protocol or port) are refused with a [`PolicyError`] naming the policy and the
//! field, rather than guessed at.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;

#[cfg(test)]
mod tests;

/// A namespace as the evaluator needs it: its name and its labels (for `namespaceSelector`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceInfo {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.labels`, as stored (the API server adds `kubernetes.io/metadata.name` itself).
    pub labels: BTreeMap<String, String>,
}

/// A transport protocol of a NetworkPolicy port or a container port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    /// `TCP`, the default.
    Tcp,
    /// `UDP`.
    Udp,
    /// `SCTP`.
    Sctp,
}

impl Protocol {
    /// The protocol as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }

    /// The protocol of an optional API field: absent means TCP.
    pub fn from_api(value: Option<&str>) -> Result<Protocol, UnknownProtocol> {
        value.map_or(Ok(Protocol::Tcp), str::parse)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Protocol {
    type Err = UnknownProtocol;

    /// `TCP`, `UDP` or `SCTP`, spelled exactly as the API does.
    fn from_str(value: &str) -> Result<Protocol, UnknownProtocol> {
        match value {
            "TCP" => Ok(Protocol::Tcp),
            "UDP" => Ok(Protocol::Udp),
            "SCTP" => Ok(Protocol::Sctp),
            other => Err(UnknownProtocol(other.to_owned())),
        }
    }
}

/// A protocol name other than `TCP`, `UDP` and `SCTP`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown protocol {0:?} (expected TCP, UDP or SCTP)")]
pub struct UnknownProtocol(pub String);

/// A port a pod declares in its containers, the target of named NetworkPolicy ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPort {
    /// `ports[].name`, when the container names the port.
    pub name: Option<String>,
    /// `ports[].containerPort`.
    pub port: u16,
    /// `ports[].protocol`.
    pub protocol: Protocol,
}

/// A pod as the evaluator needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    /// The namespace the pod lives in.
    pub namespace: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `status.podIP`, once assigned; `ipBlock` peers match against it.
    pub ip: Option<IpAddr>,
    /// The ports its containers declare, for named NetworkPolicy ports.
    pub ports: Vec<NamedPort>,
}

/// One end of a connection.
#[derive(Debug, Clone, Copy)]
pub enum Endpoint<'a> {
    /// A pod: policies of its namespace may isolate it, selectors may match it.
    Pod(&'a Pod),
    /// An address with no pod behind it (a database server, the outside world, an API server on the host
    /// network): no policy applies to it, and only `ipBlock` peers match it.
    External(IpAddr),
}

impl Endpoint<'_> {
    /// The address of the endpoint, when known.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Endpoint::Pod(pod) => pod.ip,
            Endpoint::External(ip) => Some(*ip),
        }
    }
}

/// The direction of traffic, seen from the pod a policy selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Traffic into the selected pod.
    Ingress,
    /// Traffic out of the selected pod.
    Egress,
}

/// A NetworkPolicy by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PolicyRef {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl fmt::Display for PolicyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What the policies say about one side of a connection: the egress side of its source or the ingress side
/// of its destination.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Side {
    /// Some policy selects the pod for this direction, so only what a rule admits may pass. Always false for
    /// an address without a pod.
    pub isolated: bool,
    /// The policies with a rule that admits this connection.
    pub allowed_by: Vec<PolicyRef>,
    /// The policies that select the pod for this direction, whether or not they admit the connection.
    pub selecting: Vec<PolicyRef>,
}

impl Side {
    /// Whether this side lets the connection through.
    pub fn allows(&self) -> bool {
        !self.isolated || !self.allowed_by.is_empty()
    }
}

/// The verdict on one connection, with the policies behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Both sides let the connection through.
    pub allowed: bool,
    /// The egress side of the source.
    pub egress: Side,
    /// The ingress side of the destination.
    pub ingress: Side,
}

/// A NetworkPolicy the evaluator refuses, with the policy and the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("NetworkPolicy {policy}: {problem}")]
pub struct PolicyError {
    /// The policy at fault.
    pub policy: PolicyRef,
    /// What is wrong with it (boxed, to keep the error small on the success path).
    pub problem: Box<PolicyProblem>,
}

/// What is wrong with a refused NetworkPolicy. `field` is the path inside the object, such as
/// `spec.ingress[0].from[1].namespaceSelector`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyProblem {
    /// `metadata.name` is absent.
    #[error("metadata.name is missing")]
    MissingName,
    /// `metadata.namespace` is absent.
    #[error("metadata.namespace is missing")]
    MissingNamespace,
    /// A `policyTypes` entry other than `Ingress` and `Egress`.
    #[error("spec.policyTypes: unknown policy type {0:?} (expected Ingress or Egress)")]
    PolicyType(String),
    /// A label selector operator other than `In`, `NotIn`, `Exists` and `DoesNotExist`.
    #[error("{field}: unknown label selector operator {operator:?}")]
    SelectorOperator {
        /// Where the selector is.
        field: String,
        /// The operator found.
        operator: String,
    },
    /// `In` or `NotIn` without values, or `Exists` or `DoesNotExist` with values.
    #[error("{field}: operator {operator} on key {key:?} {}", if *.needs_values { "needs values" } else { "takes no values" })]
    SelectorValues {
        /// Where the selector is.
        field: String,
        /// The label key of the requirement.
        key: String,
        /// The operator of the requirement.
        operator: String,
        /// Whether the operator needs values (it had none) or takes none (it had some).
        needs_values: bool,
    },
    /// A peer with neither `podSelector`, `namespaceSelector` nor `ipBlock`.
    #[error("{field}: a peer needs podSelector, namespaceSelector or ipBlock")]
    EmptyPeer {
        /// Where the peer is.
        field: String,
    },
    /// A peer with `ipBlock` and a selector together.
    #[error("{field}: ipBlock cannot be combined with podSelector or namespaceSelector")]
    IpBlockWithSelector {
        /// Where the peer is.
        field: String,
    },
    /// A `cidr` or `except` entry that is not an IPv4 or IPv6 CIDR.
    #[error("{field}: invalid CIDR {cidr:?}")]
    Cidr {
        /// Where the CIDR is.
        field: String,
        /// The text found.
        cidr: String,
    },
    /// A protocol other than `TCP`, `UDP` and `SCTP`.
    #[error("{field}: unknown protocol {protocol:?} (expected TCP, UDP or SCTP)")]
    Protocol {
        /// Where the protocol is.
        field: String,
        /// The text found.
        protocol: String,
    },
    /// A numeric port outside 1–65535.
    #[error("{field}: port {port} is outside 1-65535")]
    Port {
        /// Where the port is.
        field: String,
        /// The number found.
        port: i32,
    },
    /// A named port that is the empty string.
    #[error("{field}: a named port cannot be empty")]
    EmptyPortName {
        /// Where the port is.
        field: String,
    },
    /// An `endPort` without a numeric `port`, below it, or above 65535.
    #[error("{field}: endPort {end_port} needs a numeric port no greater than it, and at most 65535")]
    EndPort {
        /// Where the port is.
        field: String,
        /// The `endPort` found.
        end_port: i32,
    },
}

/// The NetworkPolicies of a cluster, compiled for evaluation.
#[derive(Debug, Clone)]
pub struct Policies {
    /// Namespace name to index; the namespaces given with labels come first.
    namespace_index: HashMap<String, usize>,
    /// The number of namespaces in `namespace_index`.
    namespace_count: usize,
    /// For each distinct namespace selector (row) and namespace (column), whether it matches; namespaces
    /// known only from their policies have no labels and match no selector.
    namespace_matches: Vec<bool>,
    /// The compiled policies.
    policies: Vec<Compiled>,
    /// By namespace index, the policies that isolate for ingress.
    ingress: Vec<Vec<usize>>,
    /// By namespace index, the policies that isolate for egress.
    egress: Vec<Vec<usize>>,
}

impl Policies {
    /// Compiles `policies` against `namespaces`. Policies of namespaces missing from `namespaces` still apply
    /// to their pods, but such namespaces match no `namespaceSelector`. When a namespace name repeats, the
    /// first entry counts.
    pub fn new(namespaces: &[NamespaceInfo], policies: &[NetworkPolicy]) -> Result<Policies, PolicyError> {
        let mut namespace_index = HashMap::with_capacity(namespaces.len());
        let mut labelled: Vec<&BTreeMap<String, String>> = Vec::with_capacity(namespaces.len());
        for namespace in namespaces {
            if !namespace_index.contains_key(&namespace.name) {
                namespace_index.insert(namespace.name.clone(), labelled.len());
                labelled.push(&namespace.labels);
            }
        }
        for policy in policies {
            if let Some(namespace) = &policy.metadata.namespace {
                let next = namespace_index.len();
                namespace_index.entry(namespace.clone()).or_insert(next);
            }
        }
        let namespace_count = namespace_index.len();

        let mut compiler = Compiler::default();
        let mut compiled = Vec::with_capacity(policies.len());
        let mut ingress = vec![Vec::new(); namespace_count];
        let mut egress = vec![Vec::new(); namespace_count];
        for policy in policies {
            let policy = compiler.policy(policy, &namespace_index)?;
            if policy.isolates_ingress {
                ingress[policy.namespace].push(compiled.len());
            }
            if policy.isolates_egress {
                egress[policy.namespace].push(compiled.len());
            }
            compiled.push(policy);
        }

        let mut namespace_matches = vec![false; compiler.namespace_selectors.len() * namespace_count];
        for (selector, row) in compiler.namespace_selectors.iter().zip(0..) {
            for (labels, column) in labelled.iter().zip(0..) {
                namespace_matches[row * namespace_count + column] = selector.matches(labels);
            }
        }

        Ok(Policies {
            namespace_index,
            namespace_count,
            namespace_matches,
            policies: compiled,
            ingress,
            egress,
        })
    }

    /// Whether a connection from `from` to `to` on `port`/`protocol` is allowed: the egress side of `from`
    /// and the ingress side of `to` must both admit it. Allocates nothing; [`Policies::connection`] gives
    /// the same answer with the policies behind it.
    pub fn allowed(&self, from: &Endpoint<'_>, to: &Endpoint<'_>, port: u16, protocol: Protocol) -> bool {
        let connection = self.resolve(from, to, port, protocol);
        self.side_allows(Direction::Egress, &connection) && self.side_allows(Direction::Ingress, &connection)
    }

    /// Whether a connection from `from` to `to` on `port`/`protocol` is allowed, with the policies that
    /// select each side and those that admit the connection.
    pub fn connection(
        &self,
        from: &Endpoint<'_>,
        to: &Endpoint<'_>,
        port: u16,
        protocol: Protocol,
    ) -> Decision {
        let connection = self.resolve(from, to, port, protocol);
        let egress = self.side(Direction::Egress, &connection);
        let ingress = self.side(Direction::Ingress, &connection);
        Decision {
            allowed: egress.allows() && ingress.allows(),
            egress,
            ingress,
        }
    }

    /// The first port of every numbered port rule of the policies that select `from` for egress or `to` for
    /// ingress, with its protocol: the ports on which a pod that declares none can be judged.
    pub fn ports_named(&self, from: &Endpoint<'_>, to: &Endpoint<'_>) -> Vec<(u16, Protocol)> {
        let mut out = Vec::new();
        for (endpoint, direction) in [(from, Direction::Egress), (to, Direction::Ingress)] {
            let Endpoint::Pod(pod) = endpoint else { continue };
            let Some(namespace) = self.namespace_index.get(&pod.namespace).copied() else {
                continue;
            };
            for &index in &self.by_direction(direction)[namespace] {
                let policy = &self.policies[index];
                if !policy.selector.matches(&pod.labels) {
                    continue;
                }
                let rules = match direction {
                    Direction::Ingress => &policy.ingress_rules,
                    Direction::Egress => &policy.egress_rules,
                };
                for rule in rules {
                    for port in &rule.ports {
                        if let PortSpec::Range { first, .. } = port.port {
                            out.push((first, port.protocol));
                        }
                    }
                }
            }
        }
        out
    }

    /// Whether some policy selects `pod` for `direction`.
    pub fn is_isolated(&self, pod: &Pod, direction: Direction) -> bool {
        let Some(namespace) = self.namespace_index.get(&pod.namespace).copied() else {
            return false;
        };
        self.by_direction(direction)[namespace]
            .iter()
            .any(|&index| self.policies[index].selector.matches(&pod.labels))
    }

    fn resolve<'c>(
        &self,
        from: &'c Endpoint<'c>,
        to: &'c Endpoint<'c>,
        port: u16,
        protocol: Protocol,
    ) -> Connection<'c> {
        Connection {
            from: self.located(from),
            to: self.located(to),
            port,
            protocol,
        }
    }

    fn located<'c>(&self, endpoint: &'c Endpoint<'c>) -> Located<'c> {
        match endpoint {
            Endpoint::Pod(pod) => Located::Pod {
                pod,
                namespace: self.namespace_index.get(&pod.namespace).copied(),
            },
            Endpoint::External(ip) => Located::External(*ip),
        }
    }

    fn by_direction(&self, direction: Direction) -> &[Vec<usize>] {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }

    /// The pod whose policies decide `direction`, with the index of its namespace, if it has policies at all.
    fn subject<'c>(direction: Direction, connection: &Connection<'c>) -> Option<(&'c Pod, usize)> {
        let subject = match direction {
            Direction::Ingress => &connection.to,
            Direction::Egress => &connection.from,
        };
        match subject {
            Located::Pod {
                pod,
                namespace: Some(namespace),
            } => Some((pod, *namespace)),
            _ => None,
        }
    }

    fn side_allows(&self, direction: Direction, connection: &Connection<'_>) -> bool {
        let Some((pod, namespace)) = Self::subject(direction, connection) else {
            return true;
        };
        let mut isolated = false;
        for &index in &self.by_direction(direction)[namespace] {
            let policy = &self.policies[index];
            if policy.selector.matches(&pod.labels) {
                if self.admits(policy, direction, connection) {
                    return true;
                }
                isolated = true;
            }
        }
        !isolated
    }

    fn side(&self, direction: Direction, connection: &Connection<'_>) -> Side {
        let Some((pod, namespace)) = Self::subject(direction, connection) else {
            return Side::default();
        };
        let mut side = Side::default();
        for &index in &self.by_direction(direction)[namespace] {
            let policy = &self.policies[index];
            if policy.selector.matches(&pod.labels) {
                side.isolated = true;
                side.selecting.push(policy.reference.clone());
                if self.admits(policy, direction, connection) {
                    side.allowed_by.push(policy.reference.clone());
                }
            }
        }
        side
    }

    /// Whether a rule of `policy` for `direction` matches the connection.
    fn admits(&self, policy: &Compiled, direction: Direction, connection: &Connection<'_>) -> bool {
        let (rules, peer) = match direction {
            Direction::Ingress => (&policy.ingress_rules, &connection.from),
            Direction::Egress => (&policy.egress_rules, &connection.to),
        };
        rules.iter().any(|rule| {
            (rule.ports.is_empty() || rule.ports.iter().any(|port| port.matches(connection)))
                && (rule.peers.is_empty()
                    || rule
                        .peers
                        .iter()
                        .any(|candidate| self.peer_matches(candidate, policy.namespace, peer)))
        })
    }

    fn peer_matches(&self, peer: &Peer, policy_namespace: usize, endpoint: &Located<'_>) -> bool {
        match (peer, endpoint) {
            (Peer::Block(block), endpoint) => endpoint.ip().is_some_and(|ip| block.contains(ip)),
            (_, Located::External(_)) => false,
            (Peer::SameNamespace(pods), Located::Pod { pod, namespace }) => {
                *namespace == Some(policy_namespace) && pods.matches(&pod.labels)
            }
            (Peer::Namespaces { namespaces, pods }, Located::Pod { pod, namespace }) => {
                namespace
                    .is_some_and(|column| self.namespace_matches[namespaces * self.namespace_count + column])
                    && pods.as_ref().is_none_or(|pods| pods.matches(&pod.labels))
            }
        }
    }
}

/// A connection with its endpoints' namespaces looked up.
#[derive(Debug)]
struct Connection<'c> {
    from: Located<'c>,
    to: Located<'c>,
    port: u16,
    protocol: Protocol,
}

#[derive(Debug)]
enum Located<'c> {
    Pod {
        pod: &'c Pod,
        /// The index of its namespace, when any namespace or policy names it.
        namespace: Option<usize>,
    },
    External(IpAddr),
}

impl Located<'_> {
    fn ip(&self) -> Option<IpAddr> {
        match self {
            Located::Pod { pod, .. } => pod.ip,
            Located::External(ip) => Some(*ip),
        }
    }
}

/// One policy, compiled.
#[derive(Debug, Clone)]
struct Compiled {
    reference: PolicyRef,
    namespace: usize,
    selector: Selector,
    isolates_ingress: bool,
    isolates_egress: bool,
    /// Empty unless the policy isolates for ingress.
    ingress_rules: Vec<Rule>,
    /// Empty unless the policy isolates for egress.
    egress_rules: Vec<Rule>,
}

/// One ingress or egress rule: it matches when a peer and a port match (an empty list matches all).
#[derive(Debug, Clone)]
struct Rule {
    peers: Vec<Peer>,
    ports: Vec<PortRule>,
}

#[derive(Debug, Clone)]
enum Peer {
    /// `podSelector` alone: pods of the policy's namespace.
    SameNamespace(Selector),
    /// `namespaceSelector`, with an optional `podSelector` (`None` when absent or empty).
    Namespaces {
        /// The row of the selector in `Policies::namespace_matches`.
        namespaces: usize,
        pods: Option<Selector>,
    },
    Block(Block),
}

/// A label selector, compiled: every requirement must hold; no requirement matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Selector {
    requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Requirement {
    /// `matchLabels` entries and `In`.
    In {
        key: String,
        values: Vec<String>,
    },
    /// `NotIn`, which also holds when the key is absent.
    NotIn {
        key: String,
        values: Vec<String>,
    },
    Exists(String),
    DoesNotExist(String),
}

impl Selector {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements
            .iter()
            .all(|requirement| requirement.matches(labels))
    }

    fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Requirement::In { key, values } => labels.get(key).is_some_and(|value| values.contains(value)),
            Requirement::NotIn { key, values } => labels.get(key).is_none_or(|value| !values.contains(value)),
            Requirement::Exists(key) => labels.contains_key(key),
            Requirement::DoesNotExist(key) => !labels.contains_key(key),
        }
    }
}

/// An `ipBlock`: inside `cidr` and outside every `except`.
#[derive(Debug, Clone)]
struct Block {
    cidr: Cidr,
    except: Vec<Cidr>,
}

impl Block {
    fn contains(&self, ip: IpAddr) -> bool {
        self.cidr.contains(ip) && !self.except.iter().any(|except| except.contains(ip))
    }
}

/// An IPv4 or IPv6 prefix. Host bits after the prefix are cleared when parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    v6: bool,
    network: u128,
    prefix: u8,
}

impl Cidr {
    fn parse(text: &str) -> Option<Cidr> {
        let (address, prefix) = text.split_once('/')?;
        let address: IpAddr = address.parse().ok()?;
        if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|byte| byte.is_ascii_digit()) {
            return None;
        }
        let prefix: u8 = prefix.parse().ok()?;
        let (v6, bits) = address_bits(address);
        if prefix > width(v6) {
            return None;
        }
        Some(Cidr {
            v6,
            network: masked(bits, v6, prefix),
            prefix,
        })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let (v6, bits) = address_bits(ip);
        v6 == self.v6 && masked(bits, v6, self.prefix) == self.network
    }
}

/// Whether `ip` is inside `cidr` (`false` when `cidr` is not a valid CIDR).
pub fn cidr_contains(cidr: &str, ip: IpAddr) -> bool {
    Cidr::parse(cidr).is_some_and(|c| c.contains(ip))
}

fn width(v6: bool) -> u8 {
    if v6 { 128 } else { 32 }
}

fn address_bits(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(v4) => (false, u128::from(u32::from(v4))),
        IpAddr::V6(v6) => (true, u128::from(v6)),
    }
}

/// `bits` with everything after the first `prefix` bits of the family's width cleared.
fn masked(bits: u128, v6: bool, prefix: u8) -> u128 {
    if prefix == 0 {
        return 0;
    }
    let shift = u32::from(width(v6) - prefix);
    (bits >> shift) << shift
}

/// A NetworkPolicy port, compiled.
#[derive(Debug, Clone)]
struct PortRule {
    protocol: Protocol,
    port: PortSpec,
}

#[derive(Debug, Clone)]
enum PortSpec {
    /// `port` absent: every port of the protocol.
    All,
    /// A number, or a range with `endPort`; both ends included.
    Range { first: u16, last: u16 },
    /// A name, resolved against the destination pod's declared ports.
    Named(String),
}

impl PortRule {
    fn matches(&self, connection: &Connection<'_>) -> bool {
        if self.protocol != connection.protocol {
            return false;
        }
        match &self.port {
            PortSpec::All => true,
            PortSpec::Range { first, last } => (*first..=*last).contains(&connection.port),
            PortSpec::Named(name) => match &connection.to {
                Located::Pod { pod, .. } => pod.ports.iter().any(|declared| {
                    declared.port == connection.port
                        && declared.protocol == connection.protocol
                        && declared.name.as_deref() == Some(name.as_str())
                }),
                Located::External(_) => false,
            },
        }
    }
}

/// Compiles policies one by one, sharing identical namespace selectors.
#[derive(Debug, Default)]
struct Compiler {
    namespace_selectors: Vec<Selector>,
    namespace_selector_rows: HashMap<Selector, usize>,
}

/// The policy being compiled, for error reports.
struct Context<'p> {
    reference: &'p PolicyRef,
}

impl Context<'_> {
    fn error(&self, problem: PolicyProblem) -> PolicyError {
        PolicyError {
            policy: self.reference.clone(),
            problem: Box::new(problem),
        }
    }
}

impl Compiler {
    fn policy(
        &mut self,
        policy: &NetworkPolicy,
        namespace_index: &HashMap<String, usize>,
    ) -> Result<Compiled, PolicyError> {
        let reference = PolicyRef {
            namespace: policy.metadata.namespace.clone().unwrap_or_default(),
            name: policy.metadata.name.clone().unwrap_or_default(),
        };
        let context = Context {
            reference: &reference,
        };
        let Some(namespace) = policy
            .metadata
            .namespace
            .as_ref()
            .and_then(|name| namespace_index.get(name))
        else {
            return Err(context.error(PolicyProblem::MissingNamespace));
        };
        if policy.metadata.name.is_none() {
            return Err(context.error(PolicyProblem::MissingName));
        }
        let no_spec = NetworkPolicySpec::default();
        let spec = policy.spec.as_ref().unwrap_or(&no_spec);

        let (isolates_ingress, isolates_egress) = match spec.policy_types.as_deref() {
            None | Some([]) => (true, spec.egress.as_ref().is_some_and(|rules| !rules.is_empty())),
            Some(types) => {
                let (mut ingress, mut egress) = (false, false);
                for policy_type in types {
                    match policy_type.as_str() {
                        "Ingress" => ingress = true,
                        "Egress" => egress = true,
                        other => return Err(context.error(PolicyProblem::PolicyType(other.to_owned()))),
                    }
                }
                (ingress, egress)
            }
        };

        let selector = match &spec.pod_selector {
            Some(selector) => selector_of(selector, "spec.podSelector", &context)?,
            None => Selector {
                requirements: Vec::new(),
            },
        };

        let mut ingress_rules = Vec::new();
        if isolates_ingress {
            for (rule, index) in spec.ingress.iter().flatten().zip(0..) {
                let field = format!("spec.ingress[{index}]");
                ingress_rules.push(self.rule(
                    rule.from.as_deref(),
                    rule.ports.as_deref(),
                    &field,
                    "from",
                    &context,
                )?);
            }
        }
        let mut egress_rules = Vec::new();
        if isolates_egress {
            for (rule, index) in spec.egress.iter().flatten().zip(0..) {
                let field = format!("spec.egress[{index}]");
                egress_rules.push(self.rule(
                    rule.to.as_deref(),
                    rule.ports.as_deref(),
                    &field,
                    "to",
                    &context,
                )?);
            }
        }

        Ok(Compiled {
            reference,
            namespace: *namespace,
            selector,
            isolates_ingress,
            isolates_egress,
            ingress_rules,
            egress_rules,
        })
    }

    fn rule(
        &mut self,
        peers: Option<&[NetworkPolicyPeer]>,
        ports: Option<&[NetworkPolicyPort]>,
        field: &str,
        peers_field: &str,
        context: &Context<'_>,
    ) -> Result<Rule, PolicyError> {
        let peers = peers
            .unwrap_or_default()
            .iter()
            .zip(0..)
            .map(|(peer, index)| self.peer(peer, &format!("{field}.{peers_field}[{index}]"), context))
            .collect::<Result<_, _>>()?;
        let ports = ports
            .unwrap_or_default()
            .iter()
            .zip(0..)
            .map(|(port, index)| port_of(port, &format!("{field}.ports[{index}]"), context))
            .collect::<Result<_, _>>()?;
        Ok(Rule { peers, ports })
    }

    fn peer(
        &mut self,
        peer: &NetworkPolicyPeer,
        field: &str,
        context: &Context<'_>,
    ) -> Result<Peer, PolicyError> {
        match (&peer.pod_selector, &peer.namespace_selector, &peer.ip_block) {
            (None, None, None) => Err(context.error(PolicyProblem::EmptyPeer {
                field: field.to_owned(),
            })),
            (None, None, Some(block)) => Ok(Peer::Block(block_of(block, field, context)?)),
            (_, _, Some(_)) => Err(context.error(PolicyProblem::IpBlockWithSelector {
                field: field.to_owned(),
            })),
            (Some(pods), None, None) => Ok(Peer::SameNamespace(selector_of(
                pods,
                &format!("{field}.podSelector"),
                context,
            )?)),
            (pods, Some(namespaces), None) => {
                let namespaces = selector_of(namespaces, &format!("{field}.namespaceSelector"), context)?;
                let pods = pods
                    .as_ref()
                    .map(|pods| selector_of(pods, &format!("{field}.podSelector"), context))
                    .transpose()?
                    .filter(|pods| !pods.is_empty());
                let next = self.namespace_selectors.len();
                let row = *self
                    .namespace_selector_rows
                    .entry(namespaces)
                    .or_insert_with_key(|selector| {
                        self.namespace_selectors.push(selector.clone());
                        next
                    });
                Ok(Peer::Namespaces {
                    namespaces: row,
                    pods,
                })
            }
        }
    }
}

fn selector_of(
    selector: &LabelSelector,
    field: &str,
    context: &Context<'_>,
) -> Result<Selector, PolicyError> {
    let mut requirements: Vec<Requirement> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(key, value)| Requirement::In {
            key: key.clone(),
            values: vec![value.clone()],
        })
        .collect();
    for expression in selector.match_expressions.iter().flatten() {
        let values = expression.values.clone().unwrap_or_default();
        let key = expression.key.clone();
        let needs_values = matches!(expression.operator.as_str(), "In" | "NotIn");
        let requirement = match expression.operator.as_str() {
            "In" if !values.is_empty() => Requirement::In { key, values },
            "NotIn" if !values.is_empty() => Requirement::NotIn { key, values },
            "Exists" if values.is_empty() => Requirement::Exists(key),
            "DoesNotExist" if values.is_empty() => Requirement::DoesNotExist(key),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {
                return Err(context.error(PolicyProblem::SelectorValues {
                    field: field.to_owned(),
                    key,
                    operator: expression.operator.clone(),
                    needs_values,
                }));
            }
            other => {
                return Err(context.error(PolicyProblem::SelectorOperator {
                    field: field.to_owned(),
                    operator: other.to_owned(),
                }));
            }
        };
        requirements.push(requirement);
    }
    Ok(Selector { requirements })
}

fn block_of(block: &IPBlock, field: &str, context: &Context<'_>) -> Result<Block, PolicyError> {
    let parse = |text: &str, field: String| {
        Cidr::parse(text).ok_or_else(|| {
            context.error(PolicyProblem::Cidr {
                field,
                cidr: text.to_owned(),
            })
        })
    };
    let cidr = parse(&block.cidr, format!("{field}.ipBlock.cidr"))?;
    let except = block
        .except
        .iter()
        .flatten()
        .zip(0..)
        .map(|(except, index)| parse(except, format!("{field}.ipBlock.except[{index}]")))
        .collect::<Result<_, _>>()?;
    Ok(Block { cidr, except })
}

fn port_of(port: &NetworkPolicyPort, field: &str, context: &Context<'_>) -> Result<PortRule, PolicyError> {
    let protocol = Protocol::from_api(port.protocol.as_deref()).map_err(|UnknownProtocol(protocol)| {
        context.error(PolicyProblem::Protocol {
            field: format!("{field}.protocol"),
            protocol,
        })
    })?;
    let number = |value: i32, field: String| {
        u16::try_from(value)
            .ok()
            .filter(|&number| number != 0)
            .ok_or_else(|| context.error(PolicyProblem::Port { field, port: value }))
    };
    let end_port_error = |end_port: i32| {
        context.error(PolicyProblem::EndPort {
            field: format!("{field}.endPort"),
            end_port,
        })
    };
    let spec = match (&port.port, port.end_port) {
        (None, None) => PortSpec::All,
        (None | Some(IntOrString::String(_)), Some(end_port)) => return Err(end_port_error(end_port)),
        (Some(IntOrString::String(name)), None) if name.is_empty() => {
            return Err(context.error(PolicyProblem::EmptyPortName {
                field: format!("{field}.port"),
            }));
        }
        (Some(IntOrString::String(name)), None) => PortSpec::Named(name.clone()),
        (Some(IntOrString::Int(value)), end_port) => {
            let first = number(*value, format!("{field}.port"))?;
            let last = match end_port {
                None => first,
                Some(end_port) => u16::try_from(end_port)
                    .ok()
                    .filter(|&last| last >= first)
                    .ok_or_else(|| end_port_error(end_port))?,
            };
            PortSpec::Range { first, last }
        }
    };
    Ok(PortRule { protocol, port: spec })
}
