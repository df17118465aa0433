//! The operator's least-privilege RBAC, as the chart ships it (`make generate` writes it to
//! `charts/bulkhead/templates/operator-rbac.yaml`) and as the integration tests install it.
//!
//! Cluster-wide: the two CRDs (read, by name), Tenants and Customers, and exactly the kinds the operator manages.
//! No Secrets, no Pods, no RoleBindings, no escalation. The leader Lease is a Role in the operator's namespace.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The name of the ClusterRole, Role and their bindings.
pub const NAME: &str = "bulkhead-operator";

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let strings = |v: &[&str]| Some(v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
    PolicyRule {
        api_groups: strings(groups),
        resources: strings(resources),
        verbs: verbs.iter().map(|s| (*s).to_owned()).collect(),
        ..PolicyRule::default()
    }
}

fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(BTreeMap::from([
            ("app.kubernetes.io/name".to_owned(), "bulkhead".to_owned()),
            ("app.kubernetes.io/component".to_owned(), "operator".to_owned()),
        ])),
        ..ObjectMeta::default()
    }
}

/// The cluster-wide rules.
pub fn cluster_role() -> ClusterRole {
    let read_write = ["get", "list", "watch", "create", "patch", "delete"];
    let mut crds = rule(
        &["apiextensions.k8s.io"],
        &["customresourcedefinitions"],
        &["get"],
    );
    crds.resource_names = Some(vec![
        "tenants.bulkhead.dev".into(),
        "customers.bulkhead.dev".into(),
    ]);
    ClusterRole {
        metadata: meta(NAME, None),
        rules: Some(vec![
            crds,
            rule(
                &["bulkhead.dev"],
                &["tenants", "customers"],
                &["get", "list", "watch", "patch", "update"],
            ),
            rule(
                &["bulkhead.dev"],
                &["tenants/status", "customers/status"],
                &["get", "patch", "update"],
            ),
            rule(&[""], &["namespaces"], &read_write),
            rule(
                &[""],
                &["serviceaccounts", "services", "resourcequotas", "limitranges"],
                &read_write,
            ),
            rule(
                &["networking.k8s.io"],
                &["networkpolicies"],
                &["get", "list", "watch", "create", "patch", "update", "delete"],
            ),
            rule(&["apps"], &["deployments"], &read_write),
            // Secrets by name only, never list or watch: the credentials Secret in each tenant namespace and
            // the admin Secret. The operator cannot enumerate or stream the cluster's Secrets.
            rule(&[""], &["secrets"], &["get", "create", "patch"]),
            rule(&["events.k8s.io"], &["events"], &["create", "patch"]),
        ]),
        aggregation_rule: None,
    }
}

/// The rules in the operator's own namespace: its leader Lease.
pub fn lease_role(namespace: &str) -> Role {
    let mut named = rule(&["coordination.k8s.io"], &["leases"], &["get", "update"]);
    named.resource_names = Some(vec![NAME.to_owned()]);
    Role {
        metadata: meta(NAME, Some(namespace)),
        rules: Some(vec![
            rule(&["coordination.k8s.io"], &["leases"], &["create"]),
            named,
        ]),
    }
}

/// The name of the ClusterRole that `bulkhead-operator crds apply` needs.
pub const CRD_INSTALLER: &str = "bulkhead-crds";

/// What `bulkhead-operator crds apply` needs, and nothing more: create the two CRDs, and read and patch them by
/// name. It is not part of the operator's ClusterRole; the chart gives it to the short-lived ServiceAccount of
/// its CRD hook Job.
pub fn crd_installer_cluster_role() -> ClusterRole {
    let mut by_name = rule(
        &["apiextensions.k8s.io"],
        &["customresourcedefinitions"],
        &["get", "patch"],
    );
    by_name.resource_names = Some(vec![
        "tenants.bulkhead.dev".into(),
        "customers.bulkhead.dev".into(),
    ]);
    ClusterRole {
        metadata: meta(CRD_INSTALLER, None),
        rules: Some(vec![
            // A create request carries no name the authorizer could check, so it cannot be limited by name.
            rule(
                &["apiextensions.k8s.io"],
                &["customresourcedefinitions"],
                &["create"],
            ),
            by_name,
        ]),
        aggregation_rule: None,
    }
}

/// The name of the ClusterRole that `bulkhead-operator verify` needs.
pub const VERIFIER: &str = "bulkhead-verify";

/// What `bulkhead-operator verify` reads, and nothing more: get and list on exactly the kinds it judges. No
/// Secrets (the admin DSN is read by name through a Role in the release namespace, when the chart configures
/// one), no watch, no writes.
pub fn verify_cluster_role() -> ClusterRole {
    let read = ["get", "list"];
    ClusterRole {
        metadata: meta(VERIFIER, None),
        rules: Some(vec![
            rule(&["bulkhead.dev"], &["tenants", "customers"], &read),
            rule(
                &[""],
                &[
                    "namespaces",
                    "pods",
                    "services",
                    "serviceaccounts",
                    "resourcequotas",
                    "limitranges",
                ],
                &read,
            ),
            rule(&["networking.k8s.io"], &["networkpolicies"], &read),
            rule(&["apps"], &["deployments"], &read),
            rule(&["discovery.k8s.io"], &["endpointslices"], &read),
        ]),
        aggregation_rule: None,
    }
}

/// What `verify` reads in the release namespace, each by name: the gateway's ConfigMap (its route settings) and,
/// when one is configured, the Postgres admin Secret. The chart's `verify-rbac.yaml` holds the same rules.
pub fn verify_role(namespace: &str, admin_secret: Option<&str>) -> Role {
    let mut config = rule(&[""], &["configmaps"], &["get"]);
    config.resource_names = Some(vec![crate::verify::snapshot::GATEWAY_CONFIG_MAP.to_owned()]);
    let mut rules = vec![config];
    if let Some(secret) = admin_secret {
        let mut by_name = rule(&[""], &["secrets"], &["get"]);
        by_name.resource_names = Some(vec![secret.to_owned()]);
        rules.push(by_name);
    }
    Role {
        metadata: meta(VERIFIER, Some(namespace)),
        rules: Some(rules),
    }
}

/// Binds both roles to `subject`.
pub fn bindings(namespace: &str, subject: Subject) -> (ClusterRoleBinding, RoleBinding) {
    (
        ClusterRoleBinding {
            metadata: meta(NAME, None),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "ClusterRole".into(),
                name: NAME.into(),
            },
            subjects: Some(vec![subject.clone()]),
        },
        RoleBinding {
            metadata: meta(NAME, Some(namespace)),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".into(),
                kind: "Role".into(),
                name: NAME.into(),
            },
            subjects: Some(vec![subject]),
        },
    )
}

/// The chart's RBAC template: every object, bound to the operator's ServiceAccount in the release namespace.
pub fn chart_yaml() -> Result<String, serde_saphyr::ser_error::Error> {
    const NS: &str = "{{ .Release.Namespace }}";
    let account = Subject {
        kind: "ServiceAccount".into(),
        name: NAME.into(),
        namespace: Some(NS.into()),
        api_group: None,
    };
    let (cluster_binding, binding) = bindings(NS, account);
    let docs = [
        serde_saphyr::to_string(&cluster_role())?,
        serde_saphyr::to_string(&cluster_binding)?,
        serde_saphyr::to_string(&lease_role(NS))?,
        serde_saphyr::to_string(&binding)?,
        serde_saphyr::to_string(&verify_cluster_role())?,
    ];
    Ok(format!(
        "# Generated by `make generate` from operator/src/process/rbac.rs. Do not edit.\n{}",
        docs.iter().map(|d| format!("---\n{d}")).collect::<String>()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd_rules(role: &ClusterRole) -> Vec<(Vec<String>, Option<Vec<String>>)> {
        role.rules
            .iter()
            .flatten()
            .filter(|r| {
                r.resources
                    .iter()
                    .flatten()
                    .any(|x| x == "customresourcedefinitions")
            })
            .map(|r| (r.verbs.clone(), r.resource_names.clone()))
            .collect()
    }

    #[test]
    fn the_crd_installer_creates_and_patches_only_bulkheads_crds_and_the_operator_only_reads_them() {
        let names = Some(vec![
            "tenants.bulkhead.dev".to_owned(),
            "customers.bulkhead.dev".to_owned(),
        ]);
        let installer = crd_installer_cluster_role();
        assert_eq!(installer.metadata.name.as_deref(), Some(CRD_INSTALLER));
        assert_eq!(
            crd_rules(&installer),
            [
                (vec!["create".to_owned()], None),
                (vec!["get".to_owned(), "patch".to_owned()], names.clone()),
            ]
        );
        assert_eq!(installer.rules.as_ref().map(Vec::len), Some(2), "nothing else");
        assert_eq!(crd_rules(&cluster_role()), [(vec!["get".to_owned()], names)]);
    }
}
