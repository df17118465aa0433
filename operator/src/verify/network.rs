//! Network reachability between the places that matter (pure): every Bulkhead namespace, the gateway, the
//! namespaces Bulkhead does not manage, cluster DNS, the API server, the Postgres endpoint and the outside.
//!
//! A place is stood for by its pods: the live ones, one per distinct label set, or, where none run yet, the pod
//! templates of its Deployments. A cell is allowed when some pod of the source can open a connection to some
//! pod of the destination on a port that pod serves (for the stack: its Service's target port; for DNS: TCP 53,
//! the port the isolation suite probes; for an address outside the pod network: that address's port), with every
//! NetworkPolicy in the cluster applied ([`netpol`]). Each cell is then held against the isolation contract
//! ([`expect`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};

use bulkhead_crds::labels;
use bulkhead_crds::v1alpha1::EgressRule;
use k8s_openapi::api::core::v1::{PodSpec, PodTemplateSpec};
use serde::Serialize;
use serde_json::json;

use super::check::{Check, Verdict};
use super::netpol::{self, Endpoint, NamedPort, NamespaceInfo, Policies, Protocol};
use super::snapshot::Snapshot;
use crate::settings::Settings;

/// The port the DNS cell is judged on (TCP, as the isolation suite probes it).
pub const DNS_PORT: u16 = 53;

/// Where a connection starts or ends.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Place {
    /// A namespace Bulkhead manages (a Tenant's or a Customer's).
    Bulkhead {
        /// The namespace.
        namespace: String,
    },
    /// The gateway's pods.
    Gateway,
    /// A namespace Bulkhead does not manage (the gateway's pods excepted).
    Unmanaged {
        /// The namespace.
        namespace: String,
    },
    /// Cluster DNS.
    Dns,
    /// The Kubernetes API server.
    ApiServer,
    /// The Postgres server the stacks use.
    Postgres,
    /// An address outside the cluster.
    Outside,
}

impl Place {
    /// A short label for the grid and the lists.
    pub fn label(&self) -> String {
        match self {
            Place::Bulkhead { namespace } | Place::Unmanaged { namespace } => namespace.clone(),
            Place::Gateway => "gateway".into(),
            Place::Dns => "dns".into(),
            Place::ApiServer => "api-server".into(),
            Place::Postgres => "postgres".into(),
            Place::Outside => "outside".into(),
        }
    }
}

/// What a Bulkhead namespace is, as far as the contract cares.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Owner {
    /// The Tenant.
    pub tenant: String,
    /// The Customer, for a Customer's namespace.
    pub customer: Option<String>,
    /// Whether the resource has a database (`None`: the resource is gone and the namespace retained).
    pub database: Option<bool>,
    /// The Tenant's extra egress.
    pub egress: Vec<EgressRule>,
}

/// What the contract says about one cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Expectation {
    /// Whether the flow should be allowed.
    pub allowed: bool,
    /// The rule of the contract that says so.
    pub class: &'static str,
    /// The verdict when the cell is otherwise: `Fail` where isolation is broken, `Warn` where only
    /// availability is.
    pub otherwise: Verdict,
}

const fn allow(class: &'static str, otherwise: Verdict) -> Expectation {
    Expectation {
        allowed: true,
        class,
        otherwise,
    }
}

const fn refuse(class: &'static str, otherwise: Verdict) -> Expectation {
    Expectation {
        allowed: false,
        class,
        otherwise,
    }
}

/// Where the fixed destinations are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addresses {
    /// An address outside the cluster, standing for "the outside".
    pub outside: SocketAddr,
}

/// The isolation contract for one cell; `None` where it says nothing (traffic between places that are not
/// Bulkhead's).
pub fn expect(
    owners: &HashMap<String, Owner>,
    addresses: &Addresses,
    postgres: Option<SocketAddr>,
    from: &Place,
    to: &Place,
) -> Option<Expectation> {
    let owner = |p: &Place| match p {
        Place::Bulkhead { namespace } => owners.get(namespace),
        _ => None,
    };
    expect_between(addresses, postgres, (from, owner(from)), (to, owner(to)))
}

/// [`expect`] with each end's owner already looked up.
fn expect_between(
    addresses: &Addresses,
    postgres: Option<SocketAddr>,
    (from, owner): (&Place, Option<&Owner>),
    (to, other): (&Place, Option<&Owner>),
) -> Option<Expectation> {
    use Verdict::{Fail, Warn};
    match from {
        Place::Bulkhead { namespace: src } => Some(match to {
            Place::Bulkhead { namespace: dst } if dst == src => allow("same namespace", Warn),
            Place::Bulkhead { .. } => match (owner, other) {
                (Some(a), Some(b)) if a.tenant == b.tenant => refuse("customer boundary", Fail),
                _ => refuse("tenant to other tenant", Fail),
            },
            Place::Gateway => refuse("stack to gateway", Fail),
            Place::Unmanaged { .. } => refuse("stack to unmanaged namespace", Fail),
            Place::Dns => allow("stack to DNS", Warn),
            Place::ApiServer => refuse("stack to API server", Fail),
            Place::Postgres => match owner.and_then(|o| o.database) {
                Some(true) => allow("stack to its database server", Warn),
                Some(false) => refuse("stack without database to PostgreSQL", Fail),
                None => return None,
            },
            Place::Outside => {
                let covered = owner.is_some_and(|o| egress_covers(&o.egress, addresses.outside));
                let postgres_too =
                    postgres == Some(addresses.outside) && owner.and_then(|o| o.database) == Some(true);
                if covered || postgres_too {
                    allow("stack to its allowed egress", Warn)
                } else {
                    refuse("stack to outside the cluster", Fail)
                }
            }
        }),
        Place::Gateway => Some(match to {
            Place::Bulkhead { .. } => allow("gateway to stack", Warn),
            Place::Gateway => return None,
            Place::Unmanaged { .. } => refuse("gateway to unmanaged namespace", Warn),
            Place::Dns => allow("gateway to DNS", Warn),
            Place::ApiServer => allow("gateway to API server", Warn),
            Place::Postgres => refuse("gateway to PostgreSQL", Warn),
            Place::Outside => refuse("gateway to outside the cluster", Warn),
        }),
        Place::Unmanaged { .. } => match to {
            Place::Bulkhead { .. } => Some(refuse("unmanaged namespace to stack", Fail)),
            _ => None,
        },
        Place::Dns | Place::ApiServer | Place::Postgres | Place::Outside => None,
    }
}

/// Whether a Tenant's `allowEgress` opens `address`.
pub fn egress_covers(rules: &[EgressRule], address: SocketAddr) -> bool {
    rules.iter().any(|rule| {
        netpol::cidr_contains(&rule.cidr, address.ip())
            && (rule.ports.is_empty()
                || rule.ports.iter().any(|p| {
                    i32::from(address.port()) == p.port
                        && matches!(p.protocol, bulkhead_crds::v1alpha1::Protocol::TCP)
                }))
    })
}

/// One representative of a place: a pod (live or from a template) and the ports it serves, or an address.
#[derive(Debug, Clone)]
enum Member {
    Pod {
        pod: netpol::Pod,
        /// Ports a connection to this pod is judged on (empty: the pod declares none).
        serves: Vec<(u16, Protocol)>,
    },
    Address(SocketAddr),
}

/// A place and its representatives.
#[derive(Debug, Clone)]
struct Located {
    place: Place,
    members: Vec<Member>,
}

/// The matrix: every source against every destination.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct Matrix {
    /// Every place, sources and destinations alike; cells index into it.
    pub places: Vec<Place>,
    /// The sources, as indices into `places`.
    pub sources: Vec<usize>,
    /// The destinations, as indices into `places`.
    pub destinations: Vec<usize>,
    /// Every allowed cell, as (source, destination) indices into `places`; every other cell is refused.
    pub allowed: Vec<(usize, usize)>,
    /// Places with nothing to stand for them (no pods, no templates, no address): their cells are absent.
    pub unrepresented: Vec<usize>,
}

impl Matrix {
    /// The index of `place`.
    pub fn index(&self, place: &Place) -> Option<usize> {
        self.places.iter().position(|p| p == place)
    }

    /// Whether the cell is allowed (`None` when either end is not in the matrix or has no representative).
    pub fn cell(&self, from: &Place, to: &Place) -> Option<bool> {
        let (f, t) = (self.index(from)?, self.index(to)?);
        if self.unrepresented.contains(&f) || self.unrepresented.contains(&t) {
            return None;
        }
        Some(self.allowed.binary_search(&(f, t)).is_ok())
    }
}

/// The result: the matrix and its checks.
#[derive(Debug, Clone, Default)]
pub struct Network {
    /// Every cell.
    pub matrix: Matrix,
    /// One check per source place (every cell of its row held against the contract), and one per policy
    /// error.
    pub checks: Vec<Check>,
}

fn protocol_of(text: Option<&str>) -> Protocol {
    Protocol::from_api(text).unwrap_or(Protocol::Tcp)
}

fn pod_of(
    namespace: &str,
    labels: BTreeMap<String, String>,
    ip: Option<IpAddr>,
    spec: Option<&PodSpec>,
) -> Member {
    let ports: Vec<NamedPort> = spec
        .map(|s| {
            s.containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .filter_map(|p| {
                    Some(NamedPort {
                        name: p.name.clone(),
                        port: u16::try_from(p.container_port).ok()?,
                        protocol: protocol_of(p.protocol.as_deref()),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let serves = ports.iter().map(|p| (p.port, p.protocol)).collect();
    Member::Pod {
        pod: netpol::Pod {
            namespace: namespace.to_owned(),
            labels,
            ip,
            ports,
        },
        serves,
    }
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The pods of `namespace` accepted by `keep`, one per distinct label set; the templates of its Deployments
/// (accepted by `keep`) when no such pod runs.
/// The pods and Deployments of the cluster by namespace.
#[derive(Default)]
struct Workloads<'a> {
    pods: HashMap<&'a str, Vec<&'a k8s_openapi::api::core::v1::Pod>>,
    deployments: HashMap<&'a str, Vec<&'a k8s_openapi::api::apps::v1::Deployment>>,
}

impl<'a> Workloads<'a> {
    fn new(snapshot: &'a Snapshot) -> Workloads<'a> {
        let mut out = Workloads::default();
        for pod in snapshot.pods.iter().filter(|p| networked(p)) {
            if let Some(ns) = pod.metadata.namespace.as_deref() {
                out.pods.entry(ns).or_default().push(pod);
            }
        }
        for deployment in &snapshot.deployments {
            if let Some(ns) = deployment.metadata.namespace.as_deref() {
                out.deployments.entry(ns).or_default().push(deployment);
            }
        }
        out
    }
}

fn members_of(
    workloads: &Workloads<'_>,
    namespace: &str,
    keep: &dyn Fn(&BTreeMap<String, String>) -> bool,
) -> Vec<Member> {
    let mut seen: BTreeSet<BTreeMap<String, String>> = BTreeSet::new();
    let mut out = Vec::new();
    for pod in workloads.pods.get(namespace).into_iter().flatten() {
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        if !keep(&labels) || !seen.insert(labels.clone()) {
            continue;
        }
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse().ok());
        out.push(pod_of(namespace, labels, ip, pod.spec.as_ref()));
    }
    if out.is_empty() {
        for deployment in workloads.deployments.get(namespace).into_iter().flatten() {
            let template: Option<&PodTemplateSpec> = deployment.spec.as_ref().map(|s| &s.template);
            let labels = template
                .and_then(|t| t.metadata.as_ref())
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            if !keep(&labels) || !seen.insert(labels.clone()) {
                continue;
            }
            out.push(pod_of(
                namespace,
                labels,
                None,
                template.and_then(|t| t.spec.as_ref()),
            ));
        }
    }
    out
}

/// A pod that takes part in pod networking: scheduled, not finished, not on the host's network.
fn networked(pod: &k8s_openapi::api::core::v1::Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    let host = pod.spec.as_ref().and_then(|s| s.host_network).unwrap_or(false);
    !host && !matches!(phase, Some("Succeeded" | "Failed")) && pod.metadata.deletion_timestamp.is_none()
}

/// The first address of a CIDR (or the address itself).
fn first_address(cidr: &str) -> Option<IpAddr> {
    cidr.split('/').next()?.parse().ok()
}

/// The Bulkhead namespaces with their owners, from the namespaces' labels and the resources.
pub fn owners(snapshot: &Snapshot) -> HashMap<String, Owner> {
    use kube::ResourceExt as _;
    let tenants: HashMap<String, &bulkhead_crds::v1alpha1::Tenant> =
        snapshot.tenants.iter().map(|t| (t.name_any(), t)).collect();
    let mut out = HashMap::new();
    for ns in &snapshot.namespaces {
        let labels = ns.metadata.labels.clone().unwrap_or_default();
        if labels.get(labels::MANAGED_BY).map(String::as_str) != Some(labels::MANAGED_BY_VALUE) {
            continue;
        }
        let Some(name) = ns.metadata.name.clone() else {
            continue;
        };
        let tenant = labels.get(labels::TENANT).cloned().unwrap_or_default();
        let customer = labels.get(labels::CUSTOMER).cloned();
        let tenant_resource = tenants.get(&tenant);
        let egress = tenant_resource
            .map(|t| t.spec.network.allow_egress.clone())
            .unwrap_or_default();
        let database = match &customer {
            None => tenant_resource
                .filter(|t| bulkhead_crds::naming::tenant_namespace(&t.name_any()) == name)
                .map(|t| t.spec.database.enabled),
            Some(c) => snapshot
                .customers
                .iter()
                .find(|r| r.name_any() == *c && r.spec.tenant_ref == tenant)
                .map(|r| r.spec.database.enabled),
        };
        out.insert(
            name,
            Owner {
                tenant,
                customer,
                database,
                egress,
            },
        );
    }
    out
}

/// Computes the matrix and its checks.
pub fn evaluate(snapshot: &Snapshot, settings: &Settings, addresses: &Addresses) -> Network {
    let namespaces: Vec<NamespaceInfo> = snapshot
        .namespaces
        .iter()
        .map(|n| NamespaceInfo {
            name: n.metadata.name.clone().unwrap_or_default(),
            labels: n.metadata.labels.clone().unwrap_or_default(),
        })
        .collect();
    let mut checks = Vec::new();
    let policies = match Policies::new(&namespaces, &snapshot.network_policies) {
        Ok(p) => p,
        Err(e) => {
            checks.push(Check::fail(
                "network.policy_invalid",
                "cluster",
                format!("A NetworkPolicy cannot be evaluated, so no flow can be judged: {e}"),
                json!({"error": e.to_string()}),
            ));
            return Network {
                matrix: Matrix::default(),
                checks,
            };
        }
    };
    let owners = owners(snapshot);
    let workloads = Workloads::new(snapshot);
    let gateway = &settings.gateway;
    // The gateway's and DNS's pods are places of their own, not part of their namespaces' places.
    let is_peer = |ns: &str, l: &BTreeMap<String, String>| {
        [&settings.gateway, &settings.dns]
            .iter()
            .any(|p| ns == p.namespace && selects(&p.pod_labels, l))
    };

    let mut located: Vec<Located> = Vec::new();
    let mut bulkhead: Vec<&String> = owners.keys().collect();
    bulkhead.sort();
    for ns in &bulkhead {
        located.push(Located {
            place: Place::Bulkhead {
                namespace: (*ns).clone(),
            },
            members: members_of(&workloads, ns, &|_| true),
        });
    }
    located.push(Located {
        place: Place::Gateway,
        members: members_of(&workloads, &gateway.namespace, &|l| {
            selects(&gateway.pod_labels, l)
        }),
    });
    let mut unmanaged: Vec<&str> = workloads
        .pods
        .keys()
        .copied()
        .filter(|ns| !owners.contains_key(*ns))
        .collect();
    unmanaged.sort_unstable();
    for ns in unmanaged {
        let members = members_of(&workloads, ns, &|l| !is_peer(ns, l));
        if !members.is_empty() {
            located.push(Located {
                place: Place::Unmanaged {
                    namespace: ns.to_owned(),
                },
                members,
            });
        }
    }
    let sources = located.len();
    let dns: Vec<Member> = members_of(&workloads, &settings.dns.namespace, &|l| {
        selects(&settings.dns.pod_labels, l)
    })
    .into_iter()
    .map(|m| match m {
        Member::Pod { pod, .. } => Member::Pod {
            pod,
            serves: vec![(DNS_PORT, Protocol::Tcp)],
        },
        other => other,
    })
    .collect();
    located.push(Located {
        place: Place::Dns,
        members: dns,
    });
    let api: Vec<Member> = snapshot
        .api_server_endpoints
        .iter()
        .flat_map(|slice| {
            let ports: Vec<u16> = slice
                .ports
                .iter()
                .flatten()
                .filter_map(|p| p.port.and_then(|p| u16::try_from(p).ok()))
                .collect();
            slice
                .endpoints
                .iter()
                .flat_map(|e| e.addresses.iter())
                .filter_map(|a| a.parse::<IpAddr>().ok())
                .flat_map(move |ip| {
                    ports
                        .clone()
                        .into_iter()
                        .map(move |p| Member::Address(SocketAddr::new(ip, p)))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    located.push(Located {
        place: Place::ApiServer,
        members: api,
    });
    let postgres = settings
        .postgres
        .as_ref()
        .and_then(|p| Some(SocketAddr::new(first_address(&p.cidr)?, p.port)));
    if let Some(address) = postgres {
        located.push(Located {
            place: Place::Postgres,
            members: vec![Member::Address(address)],
        });
    }
    located.push(Located {
        place: Place::Outside,
        members: vec![Member::Address(addresses.outside)],
    });

    let places: Vec<Place> = located.iter().map(|l| l.place.clone()).collect();
    let unrepresented: Vec<usize> = (0..located.len())
        .filter(|i| located[*i].members.is_empty())
        .collect();
    let mut allowed = Vec::new();
    for (s, source) in located[..sources].iter().enumerate() {
        for (d, destination) in located.iter().enumerate() {
            if reachable(&policies, source, destination) {
                allowed.push((s, d));
            }
        }
    }
    allowed.sort_unstable();
    let matrix = Matrix {
        places,
        sources: (0..sources).collect(),
        destinations: (0..located.len()).collect(),
        allowed,
        unrepresented,
    };
    let owner_at: Vec<Option<&Owner>> = matrix
        .places
        .iter()
        .map(|p| match p {
            Place::Bulkhead { namespace } => owners.get(namespace),
            _ => None,
        })
        .collect();
    let mut unrepresented = vec![false; matrix.places.len()];
    for i in &matrix.unrepresented {
        unrepresented[*i] = true;
    }
    for s in 0..sources {
        checks.push(row_check(
            &matrix,
            &located,
            &policies,
            &owners,
            (&owner_at, &unrepresented),
            addresses,
            postgres,
            s,
        ));
    }
    Network { matrix, checks }
}

fn reachable(policies: &Policies, source: &Located, destination: &Located) -> bool {
    source.members.iter().any(|from| {
        let Member::Pod { pod: from, .. } = from else {
            return false;
        };
        let from = Endpoint::Pod(from);
        destination.members.iter().any(|to| match to {
            Member::Address(address) => policies.allowed(
                &from,
                &Endpoint::External(address.ip()),
                address.port(),
                Protocol::Tcp,
            ),
            Member::Pod { pod, serves } => {
                let to = Endpoint::Pod(pod);
                if serves.is_empty() {
                    // A pod that declares no port: judged on every port some policy names, and on one no policy
                    // names.
                    candidate_ports(policies, &from, &to)
                        .into_iter()
                        .any(|(port, protocol)| policies.allowed(&from, &to, port, protocol))
                } else {
                    serves
                        .iter()
                        .any(|(port, protocol)| policies.allowed(&from, &to, *port, *protocol))
                }
            }
        })
    })
}

fn candidate_ports(policies: &Policies, from: &Endpoint<'_>, to: &Endpoint<'_>) -> Vec<(u16, Protocol)> {
    let mut out = policies.ports_named(from, to);
    out.push((1, Protocol::Tcp));
    out.sort_unstable_by_key(|(port, protocol)| (*port, protocol.as_str()));
    out.dedup();
    out
}

#[allow(clippy::too_many_arguments)]
fn row_check(
    matrix: &Matrix,
    located: &[Located],
    policies: &Policies,
    owners: &HashMap<String, Owner>,
    (owner_at, unrepresented): (&[Option<&Owner>], &[bool]),
    addresses: &Addresses,
    postgres: Option<SocketAddr>,
    s: usize,
) -> Check {
    let from = &matrix.places[s];
    let mut worst = Verdict::Pass;
    let mut differing = Vec::new();
    let mut judged = 0usize;
    let mut row = vec![false; matrix.places.len()];
    let first = matrix.allowed.partition_point(|cell| cell.0 < s);
    for (_, d) in matrix.allowed[first..].iter().take_while(|cell| cell.0 == s) {
        row[*d] = true;
    }
    let owner = |p: &Place| match p {
        Place::Bulkhead { namespace } => owners.get(namespace),
        _ => None,
    };
    let from_owner = owner(from);
    for (d, to) in matrix.places.iter().enumerate() {
        if unrepresented[s] || unrepresented[d] {
            continue;
        }
        let to_owner = match to {
            Place::Bulkhead { .. } => owner_at[d],
            _ => None,
        };
        let Some(expected) = expect_between(addresses, postgres, (from, from_owner), (to, to_owner)) else {
            continue;
        };
        judged += 1;
        let allowed = row[d];
        if allowed != expected.allowed {
            worst = worst.max(expected.otherwise);
            differing.push(json!({
                "to": to,
                "predicted": if allowed { "allowed" } else { "refused" },
                "contract": if expected.allowed { "allowed" } else { "refused" },
                "class": expected.class,
                "verdict": expected.otherwise,
                "policies": evidence(policies, &located[s], &located[d]),
            }));
        }
    }
    let subject = from.label();
    if matrix.unrepresented.contains(&s) {
        return Check::new(
            "network.reachability",
            subject,
            Verdict::Warn,
            "No pod or pod template stands for this place, so its flows were not judged.",
            serde_json::Value::Null,
        );
    }
    let summary = if differing.is_empty() {
        format!("All {judged} flows from here are as the contract says.")
    } else {
        let names: Vec<String> = differing
            .iter()
            .map(|d| {
                format!(
                    "{} to {} ({})",
                    d["predicted"].as_str().unwrap_or_default(),
                    d["to"]["namespace"]
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| d["to"]["kind"].as_str().unwrap_or_default().to_owned()),
                    d["class"].as_str().unwrap_or_default()
                )
            })
            .collect();
        format!(
            "{} of {judged} flows differ from the contract: {}.",
            differing.len(),
            names.join("; ")
        )
    };
    Check::new(
        "network.reachability",
        subject,
        worst,
        summary,
        if differing.is_empty() {
            serde_json::Value::Null
        } else {
            json!({ "differing": differing })
        },
    )
}

/// The policies that decided the first pair of representatives, for a differing cell.
fn evidence(policies: &Policies, source: &Located, destination: &Located) -> serde_json::Value {
    let Some(Member::Pod { pod: from, .. }) = source.members.first() else {
        return serde_json::Value::Null;
    };
    let from = Endpoint::Pod(from);
    let Some(to) = destination.members.first() else {
        return serde_json::Value::Null;
    };
    let decision = match to {
        Member::Address(a) => {
            policies.connection(&from, &Endpoint::External(a.ip()), a.port(), Protocol::Tcp)
        }
        Member::Pod { pod, serves } => {
            let (port, protocol) = serves.first().copied().unwrap_or((1, Protocol::Tcp));
            policies.connection(&from, &Endpoint::Pod(pod), port, protocol)
        }
    };
    serde_json::to_value(decision).unwrap_or_default()
}
