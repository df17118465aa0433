//! The stack: its ServiceAccount, Deployment and Service.

use std::collections::BTreeMap;

use bulkhead_crds::v1alpha1::StackSpec;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, PodSecurityContext,
    PodSpec, PodTemplateSpec, ResourceRequirements, SeccompProfile, SecretKeySelector, SecurityContext,
    Service, ServiceAccount, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::subject::{STACK, STACK_SERVICE_ACCOUNT, Subject};
use crate::postgres::credentials;

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

/// The stack's Deployment.
pub fn deployment(subject: &Subject<'_>) -> Deployment {
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

/// The stack's Service, the gateway's upstream.
pub fn service(subject: &Subject<'_>) -> Service {
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

/// The stack's identity, with no API token mounted.
pub fn service_account(subject: &Subject<'_>) -> ServiceAccount {
    ServiceAccount {
        metadata: subject.meta(STACK_SERVICE_ACCOUNT),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}
