//! Pure construction of every object a Tenant or Customer needs. [`Desired`] lists them all in one struct, and
//! `apply` destructures it without `..`, so an object added here cannot be forgotten there.

use std::collections::BTreeMap;

use bulkhead_crds::labels;
use bulkhead_crds::naming;
use bulkhead_crds::quantity;
use bulkhead_crds::v1alpha1::{
    DEFAULT_QUOTA_CPU, DEFAULT_QUOTA_MEMORY, DEFAULT_QUOTA_PODS, EgressRule, QuotaSpec, StackSpec,
};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, LimitRange,
    LimitRangeItem, LimitRangeSpec, Namespace, PodSecurityContext, PodSpec, PodTemplateSpec, ResourceQuota,
    ResourceQuotaSpec, ResourceRequirements, SeccompProfile, SecretKeySelector, SecurityContext, Service,
    ServiceAccount, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::postgres::credentials;
use crate::settings::{PeerPods, Settings};

/// Name of the stack's Deployment, Service and container.
pub const STACK: &str = "stack";
/// Name of the stack's ServiceAccount.
pub const STACK_SERVICE_ACCOUNT: &str = "bulkhead-stack";
/// Name of the ResourceQuota.
pub const QUOTA: &str = "bulkhead-quota";
/// Name of the LimitRange.
pub const LIMITS: &str = "bulkhead-limits";
/// Names of the NetworkPolicies.
pub mod policy {
    /// Denies all ingress and egress for every pod in the namespace.
    pub const DEFAULT_DENY: &str = "bulkhead-default-deny";
    /// Lets the gateway's pods reach the stack port.
    pub const ALLOW_GATEWAY: &str = "bulkhead-allow-gateway";
    /// Lets pods query cluster DNS.
    pub const ALLOW_DNS: &str = "bulkhead-allow-dns";
    /// Lets pods of the namespace talk to each other.
    pub const ALLOW_SAME_NAMESPACE: &str = "bulkhead-allow-same-namespace";
    /// Lets pods reach the Postgres server.
    pub const ALLOW_POSTGRES: &str = "bulkhead-allow-postgres";
    /// Lets pods reach the spec's extra egress destinations.
    pub const ALLOW_EGRESS: &str = "bulkhead-allow-egress";
}
/// The label every namespace carries with its own name (set by the API server from Kubernetes 1.21 on).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The Tenant or Customer being built, with everything resolved (a Customer's stack template and egress come
/// from its Tenant).
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    /// The Tenant's name (for a Customer: its Tenant's).
    pub tenant: &'a str,
    /// The Customer's name, for a Customer.
    pub customer: Option<&'a str>,
    /// The resource's UID, recorded on the namespace.
    pub uid: &'a str,
    /// The stack to run.
    pub stack: &'a StackSpec,
    /// The namespace's quota.
    pub quota: &'a QuotaSpec,
    /// Extra egress destinations.
    pub egress: &'a [EgressRule],
    /// Whether the database is enabled (opens egress to Postgres, injects the credentials Secret).
    pub database_enabled: bool,
    /// The password rotation last carried out, recorded on the pod template so a rotation rolls the stack.
    pub credentials_revision: Option<&'a str>,
    /// Deleted with `Retain`: stack scaled to zero, namespace marked orphaned, network policies kept.
    pub retired: bool,
}

impl Subject<'_> {
    /// The namespace this subject lives in.
    pub fn namespace(&self) -> String {
        naming::namespace(self.tenant, self.customer)
    }

    /// The labels that tie an object to this subject.
    pub fn owner_labels(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::from([
            (labels::MANAGED_BY.to_owned(), labels::MANAGED_BY_VALUE.to_owned()),
            (labels::PART_OF.to_owned(), "bulkhead".to_owned()),
            (labels::TENANT.to_owned(), self.tenant.to_owned()),
        ]);
        if let Some(customer) = self.customer {
            out.insert(labels::CUSTOMER.to_owned(), customer.to_owned());
        }
        out
    }

    fn pod_labels(&self) -> BTreeMap<String, String> {
        let mut out = self.owner_labels();
        out.insert(labels::COMPONENT.to_owned(), STACK.to_owned());
        out
    }

    fn selector_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(labels::COMPONENT.to_owned(), STACK.to_owned())])
    }

    fn meta(&self, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(self.namespace()),
            labels: Some(self.owner_labels()),
            ..ObjectMeta::default()
        }
    }
}

/// Every object one Tenant or Customer needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// Its namespace.
    pub namespace: Namespace,
    /// Default deny plus exactly the allowed flows.
    pub network_policies: Vec<NetworkPolicy>,
    /// The namespace's quota.
    pub resource_quota: ResourceQuota,
    /// Default and maximum container resources.
    pub limit_range: LimitRange,
    /// The stack's identity, with no API token mounted.
    pub service_account: ServiceAccount,
    /// The stack.
    pub deployment: Deployment,
    /// The stack's Service, the gateway's upstream.
    pub service: Service,
}

/// Builds every object for `subject` (pure).
pub fn desired(subject: &Subject<'_>, settings: &Settings) -> Desired {
    Desired {
        namespace: namespace(subject),
        network_policies: network_policies(subject, settings),
        resource_quota: resource_quota(subject),
        limit_range: limit_range(subject),
        service_account: ServiceAccount {
            metadata: subject.meta(STACK_SERVICE_ACCOUNT),
            automount_service_account_token: Some(false),
            ..ServiceAccount::default()
        },
        deployment: deployment(subject),
        service: service(subject),
    }
}

fn namespace(subject: &Subject<'_>) -> Namespace {
    let mut ns_labels = subject.owner_labels();
    for mode in ["enforce", "audit", "warn"] {
        ns_labels.insert(
            format!("pod-security.kubernetes.io/{mode}"),
            "restricted".to_owned(),
        );
    }
    if subject.retired {
        ns_labels.insert(labels::ORPHANED.to_owned(), "true".to_owned());
    }
    Namespace {
        metadata: ObjectMeta {
            name: Some(subject.namespace()),
            labels: Some(ns_labels),
            annotations: Some(BTreeMap::from([(
                labels::OWNER_UID.to_owned(),
                subject.uid.to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

fn peer(pods: &PeerPods) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                NAMESPACE_NAME_LABEL.to_owned(),
                pods.namespace.clone(),
            )])),
            ..LabelSelector::default()
        }),
        pod_selector: Some(LabelSelector {
            match_labels: Some(pods.pod_labels.clone()),
            ..LabelSelector::default()
        }),
        ip_block: None,
    }
}

fn port(number: i32, protocol: &str) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(number)),
        protocol: Some(protocol.to_owned()),
        end_port: None,
    }
}

fn policy(subject: &Subject<'_>, name: &str, pods: LabelSelector, spec: NetworkPolicySpec) -> NetworkPolicy {
    NetworkPolicy {
        metadata: subject.meta(name),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(pods),
            ..spec
        }),
    }
}

fn network_policies(subject: &Subject<'_>, settings: &Settings) -> Vec<NetworkPolicy> {
    let all_pods = LabelSelector::default();
    let both = Some(vec!["Ingress".to_owned(), "Egress".to_owned()]);
    let egress_only = Some(vec!["Egress".to_owned()]);
    let mut out = vec![
        policy(
            subject,
            policy::DEFAULT_DENY,
            all_pods.clone(),
            NetworkPolicySpec {
                policy_types: both.clone(),
                ..NetworkPolicySpec::default()
            },
        ),
        policy(
            subject,
            policy::ALLOW_GATEWAY,
            LabelSelector {
                match_labels: Some(subject.selector_labels()),
                ..LabelSelector::default()
            },
            NetworkPolicySpec {
                policy_types: Some(vec!["Ingress".to_owned()]),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(vec![peer(&settings.gateway)]),
                    ports: Some(vec![port(subject.stack.port, "TCP")]),
                }]),
                ..NetworkPolicySpec::default()
            },
        ),
        policy(
            subject,
            policy::ALLOW_DNS,
            all_pods.clone(),
            NetworkPolicySpec {
                policy_types: egress_only.clone(),
                egress: Some(vec![NetworkPolicyEgressRule {
                    to: Some(vec![peer(&settings.dns)]),
                    ports: Some(vec![port(53, "UDP"), port(53, "TCP")]),
                }]),
                ..NetworkPolicySpec::default()
            },
        ),
        policy(
            subject,
            policy::ALLOW_SAME_NAMESPACE,
            all_pods.clone(),
            NetworkPolicySpec {
                policy_types: both,
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(vec![NetworkPolicyPeer {
                        pod_selector: Some(all_pods.clone()),
                        ..NetworkPolicyPeer::default()
                    }]),
                    ports: None,
                }]),
                egress: Some(vec![NetworkPolicyEgressRule {
                    to: Some(vec![NetworkPolicyPeer {
                        pod_selector: Some(all_pods.clone()),
                        ..NetworkPolicyPeer::default()
                    }]),
                    ports: None,
                }]),
                pod_selector: None,
            },
        ),
    ];
    if let (true, Some(postgres)) = (subject.database_enabled, &settings.postgres) {
        out.push(policy(
            subject,
            policy::ALLOW_POSTGRES,
            all_pods.clone(),
            NetworkPolicySpec {
                policy_types: egress_only.clone(),
                egress: Some(vec![NetworkPolicyEgressRule {
                    to: Some(vec![ip_block(&postgres.cidr)]),
                    ports: Some(vec![port(i32::from(postgres.port), "TCP")]),
                }]),
                ..NetworkPolicySpec::default()
            },
        ));
    }
    if !subject.egress.is_empty() {
        let rules = subject
            .egress
            .iter()
            .map(|rule| NetworkPolicyEgressRule {
                to: Some(vec![ip_block(&rule.cidr)]),
                ports: (!rule.ports.is_empty()).then(|| {
                    rule.ports
                        .iter()
                        .map(|p| port(p.port, protocol_name(p.protocol)))
                        .collect()
                }),
            })
            .collect();
        out.push(policy(
            subject,
            policy::ALLOW_EGRESS,
            all_pods,
            NetworkPolicySpec {
                policy_types: egress_only,
                egress: Some(rules),
                ..NetworkPolicySpec::default()
            },
        ));
    }
    out
}

fn protocol_name(protocol: bulkhead_crds::v1alpha1::Protocol) -> &'static str {
    use bulkhead_crds::v1alpha1::Protocol;
    match protocol {
        Protocol::TCP => "TCP",
        Protocol::UDP => "UDP",
        Protocol::SCTP => "SCTP",
    }
}

fn ip_block(cidr: &str) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        ip_block: Some(IPBlock {
            cidr: cidr.to_owned(),
            except: None,
        }),
        ..NetworkPolicyPeer::default()
    }
}

/// The quota's CPU, memory and pods, with defaults applied.
pub fn quota_values(quota: &QuotaSpec) -> (String, String, i32) {
    (
        quota
            .cpu
            .as_ref()
            .map_or(DEFAULT_QUOTA_CPU, |q| q.as_str())
            .to_owned(),
        quota
            .memory
            .as_ref()
            .map_or(DEFAULT_QUOTA_MEMORY, |q| q.as_str())
            .to_owned(),
        quota.pods.unwrap_or(DEFAULT_QUOTA_PODS),
    )
}

fn resource_quota(subject: &Subject<'_>) -> ResourceQuota {
    let (cpu, memory, pods) = quota_values(subject.quota);
    let q = |s: &str| Quantity(s.to_owned());
    ResourceQuota {
        metadata: subject.meta(QUOTA),
        spec: Some(ResourceQuotaSpec {
            hard: Some(BTreeMap::from([
                ("requests.cpu".to_owned(), q(&cpu)),
                ("limits.cpu".to_owned(), q(&cpu)),
                ("requests.memory".to_owned(), q(&memory)),
                ("limits.memory".to_owned(), q(&memory)),
                ("pods".to_owned(), q(&pods.to_string())),
                // Only the gateway may expose a stack: no LoadBalancer or NodePort services.
                ("services.loadbalancers".to_owned(), q("0")),
                ("services.nodeports".to_owned(), q("0")),
            ])),
            ..ResourceQuotaSpec::default()
        }),
        ..ResourceQuota::default()
    }
}

/// The smaller of a default and the quota, so defaulted containers always fit.
fn capped(default: &str, quota: &str) -> String {
    match (quantity::parse_milli(default), quantity::parse_milli(quota)) {
        (Ok(d), Ok(q)) if q < d => quota.to_owned(),
        _ => default.to_owned(),
    }
}

fn limit_range(subject: &Subject<'_>) -> LimitRange {
    let (cpu, memory, _) = quota_values(subject.quota);
    let pair = |c: String, m: String| {
        BTreeMap::from([
            ("cpu".to_owned(), Quantity(c)),
            ("memory".to_owned(), Quantity(m)),
        ])
    };
    LimitRange {
        metadata: subject.meta(LIMITS),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".to_owned(),
                default: Some(pair(capped("500m", &cpu), capped("512Mi", &memory))),
                default_request: Some(pair(capped("100m", &cpu), capped("128Mi", &memory))),
                ..LimitRangeItem::default()
            }],
        }),
    }
}

fn resources(stack: &StackSpec) -> Option<ResourceRequirements> {
    let list = |pair: &bulkhead_crds::v1alpha1::CpuMemory| {
        let mut out = BTreeMap::new();
        if let Some(cpu) = &pair.cpu {
            out.insert("cpu".to_owned(), Quantity(cpu.0.clone()));
        }
        if let Some(memory) = &pair.memory {
            out.insert("memory".to_owned(), Quantity(memory.0.clone()));
        }
        (!out.is_empty()).then_some(out)
    };
    let requests = list(&stack.resources.requests);
    let limits = list(&stack.resources.limits);
    (requests.is_some() || limits.is_some()).then(|| ResourceRequirements {
        requests,
        limits,
        ..ResourceRequirements::default()
    })
}

fn deployment(subject: &Subject<'_>) -> Deployment {
    let stack = subject.stack;
    let env: Vec<EnvVar> = stack
        .env
        .iter()
        .map(|v| EnvVar {
            name: v.name.clone(),
            value: v.value.clone(),
            value_from: None,
        })
        .chain(subject.database_enabled.then(database_env).into_iter().flatten())
        .collect();
    let container = Container {
        name: STACK.to_owned(),
        image: Some(stack.image.clone()),
        ports: Some(vec![ContainerPort {
            name: Some("http".to_owned()),
            container_port: stack.port,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        env: (!env.is_empty()).then_some(env),
        resources: resources(stack),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                add: None,
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                localhost_profile: None,
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![VolumeMount {
            name: "tmp".to_owned(),
            mount_path: "/tmp".to_owned(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    };
    Deployment {
        metadata: subject.meta(STACK),
        spec: Some(DeploymentSpec {
            replicas: Some(if subject.retired { 0 } else { stack.replicas }),
            selector: LabelSelector {
                match_labels: Some(subject.selector_labels()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(subject.pod_labels()),
                    annotations: subject.credentials_revision.map(|r| {
                        BTreeMap::from([(credentials::REVISION_ANNOTATION.to_owned(), r.to_owned())])
                    }),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(STACK_SERVICE_ACCOUNT.to_owned()),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_owned(),
                            localhost_profile: None,
                        }),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![container],
                    volumes: Some(vec![Volume {
                        name: "tmp".to_owned(),
                        empty_dir: Some(EmptyDirVolumeSource::default()),
                        ..Volume::default()
                    }]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// The database variables, each read from the credentials Secret (never copied into the Deployment).
fn database_env() -> Vec<EnvVar> {
    use credentials::keys;
    [
        ("DATABASE_URL", keys::DATABASE_URL),
        ("PGHOST", keys::HOST),
        ("PGPORT", keys::PORT),
        ("PGDATABASE", keys::DATABASE),
        ("PGUSER", keys::USERNAME),
        ("PGPASSWORD", keys::PASSWORD),
    ]
    .into_iter()
    .map(|(name, key)| EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: credentials::SECRET_NAME.to_owned(),
                key: key.to_owned(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
    })
    .collect()
}

fn service(subject: &Subject<'_>) -> Service {
    Service {
        metadata: subject.meta(STACK),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(subject.selector_labels()),
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port: subject.stack.port,
                target_port: Some(IntOrString::String("http".to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

#[cfg(test)]
mod tests;
