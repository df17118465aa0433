//! The operator's least-privilege RBAC, as the chart ships it (`make generate` writes it to
//! `charts/bulkhead/templates/operator-rbac.yaml`) and as the integration tests install it.
//!
//! Cluster-wide: the two CRDs (read, by name), Tenants and Customers, and exactly the kinds the operator manages.
//! Secrets only as the credentials Secret `bulkhead-database`, by name (get, patch) and create; no list or watch,
//! no Pods, no RoleBindings, no escalation. The leader Lease is a Role in the operator's namespace, and so is the
//! Postgres admin Secret, by name ([`admin_secret_role`]; the chart renders it when one is configured).
//!
//! RBAC cannot narrow a `create` by name (a create request names no object the authorizer could check), nor a
//! cluster-wide rule to the namespaces the operator made. The chart's ValidatingAdmissionPolicy
//! `bulkhead-operator-scope` (`charts/bulkhead/templates/admission-policies.yaml`) does: the operator's
//! ServiceAccount may write only in namespaces labelled `app.kubernetes.io/managed-by=bulkhead` (and its Lease and
//! Events), and the only Secret it may create is `bulkhead-database`.

use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::postgres::credentials;

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
    // Secrets by name only, never list or watch: the credentials Secret in each tenant namespace. The operator
    // cannot enumerate, stream, read or change any other Secret of the cluster.
    let mut credentials_secret = rule(&[""], &["secrets"], &["get", "patch"]);
    credentials_secret.resource_names = Some(vec![credentials::SECRET_NAME.to_owned()]);
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
            credentials_secret,
            // Creating the credentials Secret. A create cannot be limited by name in RBAC; the admission policy
            // `bulkhead-operator-scope` refuses every Secret the operator creates but `bulkhead-database`, and
            // any write outside Bulkhead's namespaces.
            rule(&[""], &["secrets"], &["create"]),
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

/// The name of the Role (and RoleBinding) that lets the operator read the Postgres admin Secret.
pub const POSTGRES_ADMIN: &str = "bulkhead-operator-postgres-admin";

/// In the operator's namespace: read the Postgres admin Secret `secret`, by name, and nothing else. Not part of
/// the generated template (its name is a chart value): the chart's `operator.yaml` holds the same rule, rendered
/// with `postgres.adminSecret.name`.
pub fn admin_secret_role(namespace: &str, secret: &str) -> Role {
    let mut by_name = rule(&[""], &["secrets"], &["get"]);
    by_name.resource_names = Some(vec![secret.to_owned()]);
    Role {
        metadata: meta(POSTGRES_ADMIN, Some(namespace)),
        rules: Some(vec![by_name]),
    }
}

/// Binds [`admin_secret_role`] to `subject`.
pub fn admin_secret_binding(namespace: &str, subject: Subject) -> RoleBinding {
    RoleBinding {
        metadata: meta(POSTGRES_ADMIN, Some(namespace)),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: POSTGRES_ADMIN.into(),
        },
        subjects: Some(vec![subject]),
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
        "# Generated by `make generate` from operator/src/process/rbac.rs. Do not edit.\n\
         #\n\
         # Secrets: get and patch only `{secret}`, by name. A create cannot be limited by name in RBAC (the\n\
         # request names no object the authorizer could check), so the ValidatingAdmissionPolicy\n\
         # `bulkhead-operator-scope` (admission-policies.yaml, on unless admissionPolicies.enabled=false) refuses\n\
         # every Secret the operator creates but `{secret}`, and every write outside namespaces labelled\n\
         # app.kubernetes.io/managed-by=bulkhead (its Lease and Events excepted). The Postgres admin Secret is read\n\
         # through the Role `{admin}` in operator.yaml.\n{}",
        docs.iter().map(|d| format!("---\n{d}")).collect::<String>(),
        secret = credentials::SECRET_NAME,
        admin = POSTGRES_ADMIN,
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
    fn the_operator_reads_and_patches_only_the_credentials_secret_by_name_and_never_lists_secrets() {
        let secrets: Vec<(Vec<String>, Option<Vec<String>>)> = cluster_role()
            .rules
            .iter()
            .flatten()
            .filter(|r| r.resources.iter().flatten().any(|x| x == "secrets"))
            .map(|r| (r.verbs.clone(), r.resource_names.clone()))
            .collect();
        assert_eq!(
            secrets,
            [
                (
                    vec!["get".to_owned(), "patch".to_owned()],
                    Some(vec!["bulkhead-database".to_owned()])
                ),
                (vec!["create".to_owned()], None),
            ]
        );
        let admin = admin_secret_role("bulkhead-system", "pg-admin");
        assert_eq!(admin.metadata.namespace.as_deref(), Some("bulkhead-system"));
        let rules = admin.rules.unwrap_or_default();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].verbs, ["get"]);
        assert_eq!(rules[0].resource_names, Some(vec!["pg-admin".to_owned()]));
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
