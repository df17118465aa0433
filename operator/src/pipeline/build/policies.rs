//! The NetworkPolicies: default deny, then one policy per allowed flow (gateway, DNS, same namespace, the
//! PostgreSQL server the resource's database is on, the spec's extra egress).

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::subject::{NAMESPACE_NAME_LABEL, Subject, policy};
use crate::settings::{PeerPods, Settings};

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

/// Default deny plus exactly the allowed flows.
pub fn network_policies(subject: &Subject<'_>, settings: &Settings) -> Vec<NetworkPolicy> {
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
    let postgres = settings.postgres_endpoint(subject.database_server);
    if let (true, Some(postgres)) = (subject.database_enabled, postgres) {
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
