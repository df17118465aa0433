//! The chart's ValidatingAdmissionPolicies (`charts/bulkhead/templates/admission-policies.yaml`) on a real API
//! server: rendered with the chart's defaults by the pinned helm and applied with the operator's RBAC, they refuse
//! every change that would weaken a tenant's isolation to anyone but the operator's ServiceAccount (cluster admins
//! included), let the operator do its work and nothing else, let the break-glass group through, and still let a
//! deleted namespace be emptied. Each refusal is asserted by its code and the policy's message; each allowed path
//! by doing it. Last, the operator itself runs under its ServiceAccount and the policies, and provisions, repairs
//! and deletes a Tenant and a Customer.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail the test by panicking

use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

use bulkhead_crds::v1alpha1::{Customer, QuotaSpec, ResourceStatus, StackSpec, Tenant};
use bulkhead_e2e::ControlPlane;
use bulkhead_e2e::admission::{
    BREAK_GLASS_GROUP, MANAGED_OBJECTS, NAMESPACE_LABELS, NETWORK_POLICIES, OPERATOR_SCOPE, POLICIES,
    impersonating, operator_account, refusal,
};
use bulkhead_e2e::apply::{apply_objects, parse_manifests};
use bulkhead_e2e::helm::{Helm, chart_dir};
use bulkhead_e2e::operator::RunningOperator;
use bulkhead_operator::cluster::leader::LeaseConfig;
use bulkhead_operator::pipeline::build::{self, Subject, policy};
use bulkhead_operator::postgres::credentials;
use bulkhead_operator::settings::Settings;
use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicy;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota, Secret, Service, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// The release namespace, as the chart is installed.
const RELEASE_NAMESPACE: &str = "bulkhead-system";
/// How long the API server may take to start enforcing a policy it was just given (about a second here).
const ENFORCED: Duration = Duration::from_secs(30);
/// How long the namespace controller may take to empty and remove a deleted namespace.
const NAMESPACE_GONE: Duration = Duration::from_secs(90);
/// The operator's field manager.
const MANAGER: &str = "bulkhead-operator";

const POLICY_KINDS: [&str; 2] = ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"];

/// `helm template` of the chart with the minimal values and `set` (`--set` arguments); the objects, or helm's
/// error output.
fn template(set: &[&str]) -> Result<Vec<DynamicObject>, String> {
    let helm = Helm::new(None).unwrap();
    let chart = chart_dir().display().to_string();
    let values = chart_dir().join("ci/minimal-values.yaml").display().to_string();
    let version = bulkhead_e2e::versions::get("KUBERNETES_VERSION").unwrap();
    let mut args = vec![
        "template",
        "bulkhead",
        &chart,
        "--namespace",
        RELEASE_NAMESPACE,
        "--values",
        &values,
        "--kube-version",
        &version,
    ];
    for s in set {
        args.extend(["--set", s]);
    }
    let output = helm.run(&args).unwrap();
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(parse_manifests(&String::from_utf8(output.stdout).unwrap(), "helm template").unwrap())
}

fn kind_of(object: &DynamicObject) -> &str {
    object.types.as_ref().map(|t| t.kind.as_str()).unwrap_or_default()
}

fn policy_objects(objects: &[DynamicObject]) -> Vec<&DynamicObject> {
    objects
        .iter()
        .filter(|o| POLICY_KINDS.contains(&kind_of(o)))
        .collect()
}

/// Every CEL expression of a rendered policy, for looking at what the values put there.
fn expressions(object: &DynamicObject) -> String {
    let spec = &object.data["spec"];
    let mut all = Vec::new();
    for list in ["matchConditions", "variables", "validations"] {
        for item in spec[list].as_array().into_iter().flatten() {
            for key in ["expression", "messageExpression"] {
                if let Some(text) = item[key].as_str() {
                    all.push(text.to_owned());
                }
            }
        }
    }
    all.join("\n")
}

fn stack_and_quota() -> (StackSpec, QuotaSpec) {
    let stack = json!({"image": "registry.example.com/acme/portal:1.0", "port": 8080});
    (serde_json::from_value(stack).unwrap(), QuotaSpec::default())
}

/// The Tenant `acme`, with a database, as the operator sees it.
fn subject<'a>(stack: &'a StackSpec, quota: &'a QuotaSpec) -> Subject<'a> {
    Subject {
        tenant: "acme",
        customer: None,
        uid: "uid-acme",
        stack,
        quota,
        egress: &[],
        database_enabled: true,
        database_server: None,
        credentials_revision: None,
        retired: false,
    }
}

#[test]
fn the_chart_renders_the_policies_by_default_and_nothing_of_them_when_turned_off() {
    let objects = template(&[]).unwrap();
    let rendered = policy_objects(&objects);
    let names = |kind: &str| -> Vec<String> {
        let mut names: Vec<String> = rendered
            .iter()
            .filter(|o| kind_of(o) == kind)
            .map(|o| o.name_any())
            .collect();
        names.sort();
        names
    };
    let mut expected: Vec<String> = POLICIES.iter().map(|p| (*p).to_owned()).collect();
    expected.sort();
    assert_eq!(names("ValidatingAdmissionPolicy"), expected);
    assert_eq!(names("ValidatingAdmissionPolicyBinding"), expected);
    for object in &rendered {
        let spec = &object.data["spec"];
        if kind_of(object) == "ValidatingAdmissionPolicyBinding" {
            assert_eq!(spec["policyName"], object.name_any());
            assert_eq!(spec["validationActions"], json!(["Deny"]));
            continue;
        }
        assert_eq!(spec["failurePolicy"], "Fail", "{}", object.name_any());
        let cel = expressions(object);
        // The operator is told apart by its ServiceAccount in the release namespace, and every refusal names
        // its policy.
        assert!(
            cel.contains(&format!("\"{}\"", operator_account(RELEASE_NAMESPACE))),
            "{cel}"
        );
        for validation in spec["validations"].as_array().unwrap() {
            let message = validation["messageExpression"].as_str().unwrap();
            assert!(
                message.starts_with(&format!("\"{}: ", object.name_any())),
                "{message}"
            );
            assert_eq!(validation["reason"], "Forbidden");
        }
        // The break-glass group lets people through, never the operator's own identity.
        let lets_break_glass = cel.contains(&format!("\"{BREAK_GLASS_GROUP}\" in request.userInfo.groups"));
        assert_eq!(lets_break_glass, object.name_any() != OPERATOR_SCOPE, "{cel}");
    }

    // Every object the operator makes in a namespace, by kind and name, is guarded: NetworkPolicies all of
    // them, the rest each by its name (a new object in `build::Desired` must be added to the policy too).
    let (stack, quota) = stack_and_quota();
    let d = build::desired(&subject(&stack, &quota), &Settings::default());
    let managed = rendered
        .iter()
        .find(|o| o.name_any() == MANAGED_OBJECTS && kind_of(o) == "ValidatingAdmissionPolicy")
        .unwrap();
    let conditions = expressions(managed);
    let rules = managed.data["spec"]["matchConstraints"]["resourceRules"].to_string();
    for (plural, name) in [
        (ResourceQuota::plural(&()), d.resource_quota.name_any()),
        (LimitRange::plural(&()), d.limit_range.name_any()),
        (ServiceAccount::plural(&()), d.service_account.name_any()),
        (Deployment::plural(&()), d.deployment.name_any()),
        (Service::plural(&()), d.service.name_any()),
        (Secret::plural(&()), credentials::SECRET_NAME.to_owned()),
    ] {
        let entry = format!("\"{plural}\": \"{name}\"");
        assert!(conditions.contains(&entry), "{entry} not in {conditions}");
        assert!(
            rules.contains(&format!("\"{plural}\"")),
            "{plural} not in {rules}"
        );
    }
    let network = rendered
        .iter()
        .find(|o| o.name_any() == NETWORK_POLICIES && kind_of(o) == "ValidatingAdmissionPolicy")
        .unwrap();
    assert_eq!(
        network.data["spec"]["matchConstraints"]["resourceRules"][0]["resources"],
        json!([NetworkPolicy::plural(&())])
    );
    assert!(network.data["spec"]["matchConditions"].as_array().unwrap().len() == 1);

    // A group of one's own, and none at all.
    let own = template(&["admissionPolicies.breakGlassGroup=platform:incident"]).unwrap();
    for object in policy_objects(&own) {
        let cel = expressions(object);
        assert!(!cel.contains(BREAK_GLASS_GROUP), "{cel}");
        if kind_of(object) == "ValidatingAdmissionPolicy" && object.name_any() != OPERATOR_SCOPE {
            assert!(
                cel.contains("\"platform:incident\" in request.userInfo.groups"),
                "{cel}"
            );
        }
    }
    let none = template(&["admissionPolicies.breakGlassGroup="]).unwrap();
    for object in policy_objects(&none) {
        let cel = expressions(object);
        assert!(!cel.contains("in request.userInfo.groups"), "{cel}");
        assert!(!cel.contains("break-glass group"), "{cel}");
    }

    // Turned off: not one of them, and everything else as before.
    let off = template(&["admissionPolicies.enabled=false"]).unwrap();
    assert!(policy_objects(&off).is_empty(), "{:?}", policy_objects(&off));
    assert_eq!(off.len(), objects.len() - rendered.len());

    // The schema refuses a group that could break out of the policies' expressions, and unknown keys.
    for (set, path) in [
        (
            r#"admissionPolicies.breakGlassGroup=a"b"#,
            "/admissionPolicies/breakGlassGroup",
        ),
        (
            "admissionPolicies.breakGlassGroup=a b",
            "/admissionPolicies/breakGlassGroup",
        ),
        ("admissionPolicies.exempt=x", "/admissionPolicies"),
        ("admissionPolicies.enabled=maybe", "/admissionPolicies/enabled"),
    ] {
        let error = template(&[set]).expect_err(set);
        assert!(error.contains(path), "{set}: {error}");
    }
}

/// Server-side applies `value` (a `K`) through `api` as the operator's field manager.
async fn apply<K>(api: &Api<K>, value: Value) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + Debug,
{
    let object: K = serde_json::from_value(value).unwrap();
    let name = object.meta().name.clone().unwrap();
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&object),
    )
    .await
}

fn to_value<T: Serialize>(object: &T) -> Value {
    serde_json::to_value(object).unwrap()
}

/// `outcome` is a refusal by `policy` with code 403 whose message says `says`; returns the message.
#[track_caller]
fn assert_refused<T: Debug>(outcome: Result<T, kube::Error>, policy: &str, says: &str) -> String {
    let error = match outcome {
        Ok(object) => panic!("accepted, but {policy} should have refused it: {object:?}"),
        Err(e) => e,
    };
    let Some((code, message)) = refusal(&error, policy) else {
        panic!("refused, but not by {policy}: {error}");
    };
    assert_eq!(code, 403, "{message}");
    assert!(
        message.contains(&format!("denied request: {policy}: ")),
        "{message}"
    );
    assert!(message.contains(says), "expected {says:?} in: {message}");
    message
}

/// Retries `attempt` (a dry run) until `policy` refuses it: the API server enforces a policy only once it has
/// loaded it and its binding.
async fn until_enforced<F, Fut, T>(policy: &str, mut attempt: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let start = Instant::now();
    loop {
        let last = match attempt().await {
            Err(e) if refusal(&e, policy).is_some() => return,
            Err(e) => e.to_string(),
            Ok(_) => "accepted".to_owned(),
        };
        assert!(
            start.elapsed() < ENFORCED,
            "{policy} was not enforced within {ENFORCED:?}; last attempt: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Retries `attempt` until it succeeds (RBAC and policy changes reach the API server's caches within moments).
async fn until_accepted<F, Fut, T>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let start = Instant::now();
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(e) => assert!(
                start.elapsed() < ENFORCED,
                "{what}: still refused after {ENFORCED:?}: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn dry_post() -> PostParams {
    PostParams {
        dry_run: true,
        ..PostParams::default()
    }
}

fn network_policy(namespace: &str, name: &str) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": name, "namespace": namespace},
           "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]}})
}

fn named<K: DeserializeOwned>(value: Value) -> K {
    serde_json::from_value(value).unwrap()
}

/// Applies what the chart renders with its defaults for the operator and the policies: the operator's
/// ServiceAccount and RBAC, and the policies with their bindings.
async fn install(admin: &Client) {
    let objects = template(&[]).unwrap();
    let wanted = |o: &&DynamicObject| {
        let (kind, name) = (kind_of(o), o.name_any());
        POLICY_KINDS.contains(&kind)
            || (name == "bulkhead-operator"
                && [
                    "ServiceAccount",
                    "ClusterRole",
                    "ClusterRoleBinding",
                    "Role",
                    "RoleBinding",
                ]
                .contains(&kind))
    };
    let chosen: Vec<DynamicObject> = objects.iter().filter(wanted).cloned().collect();
    assert_eq!(chosen.len(), 8 + 5, "{chosen:?}");
    apply(
        &Api::<Namespace>::all(admin.clone()),
        json!({"metadata": {"name": RELEASE_NAMESPACE}}),
    )
    .await
    .unwrap();
    apply_objects(admin, vec![("the chart".into(), chosen)])
        .await
        .unwrap();
}

/// A dry run of the operator's ServiceAccount creating a Deployment in kube-system, which
/// `bulkhead-operator-scope` refuses once enforced.
async fn operator_in_kube_system(operator: &Client) -> Result<Deployment, kube::Error> {
    Api::<Deployment>::namespaced(operator.clone(), "kube-system")
        .create(
            &dry_post(),
            &named(json!({"metadata": {"name": "probe"}, "spec": {
                "selector": {"matchLabels": {"app": "probe"}},
                "template": {"metadata": {"labels": {"app": "probe"}},
                             "spec": {"containers": [{"name": "c", "image": "probe"}]}}}})),
        )
        .await
}

#[tokio::test]
async fn the_api_server_refuses_what_would_weaken_isolation_to_all_but_the_operator() {
    bulkhead_e2e::init_test_logging();
    // With an audit log (level Metadata), where the break-glass group's use must show.
    let plane = ControlPlane::start_with(true).await.unwrap();
    let admin = plane.admin().await.unwrap();
    let admin_config = plane.config_for("admin").await.unwrap();
    let operator = impersonating(admin_config.clone(), &operator_account(RELEASE_NAMESPACE), &[]).unwrap();
    // A person in the break-glass group whom RBAC allows everything.
    let break_glass = impersonating(
        admin_config,
        "incident-responder",
        &[BREAK_GLASS_GROUP, "system:masters"],
    )
    .unwrap();

    install(&admin).await;

    // The API server type-checks each policy's expressions against the kinds it matches and reports what does
    // not fit (a misspelt field, a wrong type) in its status: nothing may be reported.
    let vaps = Api::<ValidatingAdmissionPolicy>::all(admin.clone());
    for name in POLICIES {
        let checked = bulkhead_e2e::wait::until(ENFORCED, &format!("the type check of {name}"), || async {
            let policy = vaps.get(name).await.ok()?;
            let status = policy.status?;
            (status.observed_generation == policy.metadata.generation)
                .then_some(status.type_checking)
                .flatten()
        })
        .await
        .unwrap();
        assert!(
            checked.expression_warnings.unwrap_or_default().is_empty(),
            "{name}: {:?}",
            vaps.get(name).await.unwrap().status
        );
    }

    // The operator's objects for a Tenant `acme`, as the operator builds them, and its credentials Secret.
    let (stack, quota) = stack_and_quota();
    let subject = subject(&stack, &quota);
    let desired = build::desired(&subject, &Settings::default());
    let ns = subject.namespace();
    assert_eq!(ns, "bk-acme");

    // Wait until the operator may act (its RBAC) and the policy that scopes it is enforced.
    until_enforced(OPERATOR_SCOPE, || operator_in_kube_system(&operator)).await;

    // The operator provisions the namespace and everything in it.
    let namespaces = Api::<Namespace>::all(operator.clone());
    apply(&namespaces, to_value(&desired.namespace)).await.unwrap();
    let in_ns = |client: &Client| {
        (
            Api::<NetworkPolicy>::namespaced(client.clone(), &ns),
            Api::<Secret>::namespaced(client.clone(), &ns),
            Api::<Deployment>::namespaced(client.clone(), &ns),
        )
    };
    let (op_policies, op_secrets, op_deployments) = in_ns(&operator);
    for p in &desired.network_policies {
        apply(&op_policies, to_value(p)).await.unwrap();
    }
    apply(
        &Api::<ResourceQuota>::namespaced(operator.clone(), &ns),
        to_value(&desired.resource_quota),
    )
    .await
    .unwrap();
    apply(
        &Api::<LimitRange>::namespaced(operator.clone(), &ns),
        to_value(&desired.limit_range),
    )
    .await
    .unwrap();
    apply(
        &Api::<ServiceAccount>::namespaced(operator.clone(), &ns),
        to_value(&desired.service_account),
    )
    .await
    .unwrap();
    apply(&op_deployments, to_value(&desired.deployment))
        .await
        .unwrap();
    apply(
        &Api::<Service>::namespaced(operator.clone(), &ns),
        to_value(&desired.service),
    )
    .await
    .unwrap();
    apply(
        &op_secrets,
        json!({"metadata": {"name": credentials::SECRET_NAME, "namespace": ns},
               "data": {"password": "bm90LWEtcmVhbC1vbmU="}}),
    )
    .await
    .unwrap();

    // Wait until the policies on the namespace's objects are enforced too.
    let (admin_policies, admin_secrets, admin_deployments) = in_ns(&admin);
    until_enforced(NETWORK_POLICIES, || async {
        admin_policies
            .create(&dry_post(), &named(network_policy(&ns, "probe")))
            .await
    })
    .await;
    until_enforced(MANAGED_OBJECTS, || async {
        admin_secrets
            .delete(
                credentials::SECRET_NAME,
                &DeleteParams {
                    dry_run: true,
                    ..DeleteParams::default()
                },
            )
            .await
    })
    .await;
    until_enforced(NAMESPACE_LABELS, || async {
        Api::<Namespace>::all(admin.clone())
            .create(
                &dry_post(),
                &named(json!({"metadata": {"name": "probe",
                "labels": {"app.kubernetes.io/managed-by": "bulkhead"}}})),
            )
            .await
    })
    .await;

    // --- NetworkPolicies: nobody but the operator, cluster admins included.
    assert_refused(
        admin_policies
            .delete(policy::DEFAULT_DENY, &DeleteParams::default())
            .await,
        NETWORK_POLICIES,
        &format!(
            "NetworkPolicy {ns}/{} is the Bulkhead operator's",
            policy::DEFAULT_DENY
        ),
    );
    assert_refused(
        admin_policies
            .create(&PostParams::default(), &named(network_policy(&ns, "let-me-in")))
            .await,
        NETWORK_POLICIES,
        &format!("no NetworkPolicy may be added to the Bulkhead namespace {ns} but the operator's"),
    );
    assert_refused(
        admin_policies
            .patch(
                policy::DEFAULT_DENY,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"policyTypes": ["Ingress"]}})),
            )
            .await,
        NETWORK_POLICIES,
        "only its ServiceAccount system:serviceaccount:bulkhead-system:bulkhead-operator may",
    );
    // All at once too (`kubectl delete networkpolicy --all`): refused as a whole, and each one still there.
    assert_refused(
        admin_policies
            .delete_collection(&DeleteParams::default(), &ListParams::default())
            .await,
        NETWORK_POLICIES,
        &format!("NetworkPolicy {ns}/* is the Bulkhead operator's"),
    );
    assert_eq!(
        op_policies
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        desired.network_policies.len()
    );
    // The operator deletes and re-creates it (drift repair does exactly that).
    op_policies
        .delete(policy::DEFAULT_DENY, &DeleteParams::default())
        .await
        .unwrap();
    let default_deny = desired
        .network_policies
        .iter()
        .find(|p| p.name_any() == policy::DEFAULT_DENY)
        .unwrap();
    apply(&op_policies, to_value(default_deny)).await.unwrap();
    assert!(op_policies.get_opt(policy::DEFAULT_DENY).await.unwrap().is_some());

    // --- The other managed objects: nobody but the operator writes them; other objects are not guarded.
    let says = "is managed by the Bulkhead operator: only its ServiceAccount";
    assert_refused(
        admin_secrets
            .delete(credentials::SECRET_NAME, &DeleteParams::default())
            .await,
        MANAGED_OBJECTS,
        &format!("Secret {ns}/{} {says}", credentials::SECRET_NAME),
    );
    assert_refused(
        admin_deployments
            .patch(
                build::STACK,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": 5}})),
            )
            .await,
        MANAGED_OBJECTS,
        &format!("Deployment {ns}/{} {says}", build::STACK),
    );
    assert_refused(
        admin_deployments
            .patch_scale(
                build::STACK,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": 5}})),
            )
            .await,
        MANAGED_OBJECTS,
        says,
    );
    assert_refused(
        Api::<ResourceQuota>::namespaced(admin.clone(), &ns)
            .delete(build::QUOTA, &DeleteParams::default())
            .await,
        MANAGED_OBJECTS,
        &format!("ResourceQuota {ns}/{} {says}", build::QUOTA),
    );
    assert_refused(
        Api::<LimitRange>::namespaced(admin.clone(), &ns)
            .delete(build::LIMITS, &DeleteParams::default())
            .await,
        MANAGED_OBJECTS,
        &format!("LimitRange {ns}/{} {says}", build::LIMITS),
    );
    assert_refused(
        Api::<ServiceAccount>::namespaced(admin.clone(), &ns)
            .patch(
                build::STACK_SERVICE_ACCOUNT,
                &PatchParams::default(),
                &Patch::Merge(json!({"automountServiceAccountToken": true})),
            )
            .await,
        MANAGED_OBJECTS,
        &format!("ServiceAccount {ns}/{} {says}", build::STACK_SERVICE_ACCOUNT),
    );
    assert_refused(
        Api::<Service>::namespaced(admin.clone(), &ns)
            .delete(build::STACK, &DeleteParams::default())
            .await,
        MANAGED_OBJECTS,
        &format!("Service {ns}/{} {says}", build::STACK),
    );
    let note = json!({"metadata": {"name": "team-notes", "namespace": ns}, "stringData": {"a": "b"}});
    admin_secrets
        .create(&PostParams::default(), &named(note))
        .await
        .unwrap();
    let scaled = json!({"spec": {"replicas": 0}});
    op_deployments
        .patch(build::STACK, &PatchParams::default(), &Patch::Merge(&scaled))
        .await
        .unwrap();

    // --- Namespace labels and annotations: Bulkhead's are the operator's, on every namespace; others are anyone's.
    let admin_namespaces = Api::<Namespace>::all(admin.clone());
    let relabel = |labels: Value| Patch::Merge(json!({"metadata": {"labels": labels}}));
    apply(
        &admin_namespaces,
        json!({"metadata": {"name": "team-a", "labels": {"app.kubernetes.io/managed-by": "Helm"}}}),
    )
    .await
    .unwrap();
    let labels_of = |name: &str| {
        format!("the bulkhead.dev/ labels of namespace {name} are set only by the Bulkhead operator")
    };
    let annotations_of = |name: &str| {
        format!("the bulkhead.dev/ annotations of namespace {name} are set only by the Bulkhead operator")
    };
    let managed_by_on = |name: &str| {
        format!(
            "app.kubernetes.io/managed-by=bulkhead on namespace {name} is set only by the Bulkhead operator"
        )
    };
    let owner_uid = bulkhead_crds::labels::OWNER_UID;
    let refused_metadata = [
        (
            ns.as_str(),
            json!({"labels": {"bulkhead.dev/tenant": "globex"}}),
            labels_of(&ns),
        ),
        (
            ns.as_str(),
            json!({"labels": {"bulkhead.dev/tenant": null}}),
            labels_of(&ns),
        ),
        (
            ns.as_str(),
            json!({"labels": {"app.kubernetes.io/managed-by": null}}),
            managed_by_on(&ns),
        ),
        (
            ns.as_str(),
            json!({"annotations": {owner_uid: "another-uid"}}),
            annotations_of(&ns),
        ),
        (
            ns.as_str(),
            json!({"annotations": {owner_uid: null}}),
            annotations_of(&ns),
        ),
        (
            "team-a",
            json!({"labels": {"app.kubernetes.io/managed-by": "bulkhead"}}),
            managed_by_on("team-a"),
        ),
        (
            "team-a",
            json!({"labels": {"bulkhead.dev/tenant": "acme"}}),
            labels_of("team-a"),
        ),
        (
            "team-a",
            json!({"annotations": {owner_uid: "acme-uid"}}),
            annotations_of("team-a"),
        ),
    ];
    for (name, metadata, says) in refused_metadata {
        let patch = Patch::Merge(json!({ "metadata": metadata }));
        assert_refused(
            admin_namespaces
                .patch(name, &PatchParams::default(), &patch)
                .await,
            NAMESPACE_LABELS,
            &says,
        );
    }
    let anyones = json!({"labels": {"team": "payments"}, "annotations": {"team.example/owner": "payments"}});
    admin_namespaces
        .patch(
            &ns,
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": anyones })),
        )
        .await
        .unwrap();
    assert_refused(
        admin_namespaces
            .create(
                &PostParams::default(),
                &named(json!({"metadata": {"name": "bk-fake",
                "labels": {"app.kubernetes.io/managed-by": "bulkhead"}}})),
            )
            .await,
        NAMESPACE_LABELS,
        "app.kubernetes.io/managed-by=bulkhead on namespace bk-fake",
    );

    // --- The operator itself: only in Bulkhead namespaces, its Lease and Events.
    let scope = "the Bulkhead operator writes only in Bulkhead namespaces";
    let deployment_in = |namespace: &str| {
        let mut d = to_value(&desired.deployment);
        d["metadata"]["namespace"] = json!(namespace);
        named::<Deployment>(d)
    };
    for namespace in ["kube-system", RELEASE_NAMESPACE] {
        assert_refused(
            Api::<Deployment>::namespaced(operator.clone(), namespace)
                .create(&PostParams::default(), &deployment_in(namespace))
                .await,
            OPERATOR_SCOPE,
            &format!(
                "{scope} (app.kubernetes.io/managed-by=bulkhead) and its Lease and Events in {RELEASE_NAMESPACE}; refused: CREATE Deployment {namespace}/stack"
            ),
        );
    }
    assert_refused(
        Api::<NetworkPolicy>::namespaced(operator.clone(), "team-a")
            .create(&PostParams::default(), &named(network_policy("team-a", "open")))
            .await,
        OPERATOR_SCOPE,
        scope,
    );
    let lease = json!({"metadata": {"name": "bulkhead-operator", "namespace": RELEASE_NAMESPACE},
                       "spec": {"holderIdentity": "test"}});
    Api::<Lease>::namespaced(operator.clone(), RELEASE_NAMESPACE)
        .create(&PostParams::default(), &named(lease))
        .await
        .unwrap();
    // A Tenant's Events: Tenants are cluster-scoped, so their Events live in `default`.
    let event = json!({"metadata": {"name": "acme.1", "namespace": "default"},
        "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "bulkhead.dev/operator",
        "reportingInstance": "test", "action": "Provision", "reason": "Provisioned", "type": "Normal",
        "regarding": {"apiVersion": "bulkhead.dev/v1alpha1", "kind": "Tenant", "name": "acme"}});
    Api::<Event>::namespaced(operator.clone(), "default")
        .create(&PostParams::default(), &named(event))
        .await
        .unwrap();

    // Secrets: RBAC lets it read and patch only `bulkhead-database`, by name; the policy lets it create no other.
    assert_refused(
        op_secrets
            .create(
                &PostParams::default(),
                &named(json!({"metadata": {"name": "exfil", "namespace": ns}})),
            )
            .await,
        OPERATOR_SCOPE,
        &format!(
            "the Bulkhead operator's only Secret in a namespace is bulkhead-database; refused: CREATE Secret {ns}/exfil"
        ),
    );
    assert!(op_secrets.get(credentials::SECRET_NAME).await.is_ok());
    for outcome in [
        op_secrets.get("team-notes").await.map(drop),
        op_secrets.list(&ListParams::default()).await.map(drop),
    ] {
        let error = outcome.expect_err("refused by RBAC");
        assert!(
            matches!(&error, kube::Error::Api(s) if s.code == 403 && s.message.contains("cannot")),
            "{error}"
        );
    }
    assert_refused(
        Api::<Secret>::namespaced(operator.clone(), "kube-system")
            .create(
                &PostParams::default(),
                &named(json!({"metadata": {"name": credentials::SECRET_NAME}})),
            )
            .await,
        OPERATOR_SCOPE,
        &format!("{scope} (app.kubernetes.io/managed-by=bulkhead)"),
    );

    // Namespaces: only bk-* ones labelled as Bulkhead's.
    let ns_scope = "the Bulkhead operator creates, changes and deletes only namespaces named bk-*";
    for (name, labels) in [
        ("bk-unlabelled", json!({})),
        ("not-bk", json!({"app.kubernetes.io/managed-by": "bulkhead"})),
    ] {
        assert_refused(
            namespaces
                .create(
                    &PostParams::default(),
                    &named(json!({"metadata": {"name": name, "labels": labels}})),
                )
                .await,
            OPERATOR_SCOPE,
            &format!(
                "{ns_scope} labelled app.kubernetes.io/managed-by=bulkhead; refused: CREATE Namespace {name}"
            ),
        );
    }
    assert_refused(
        namespaces
            .patch(
                "team-a",
                &PatchParams::default(),
                &relabel(json!({"app.kubernetes.io/managed-by": "bulkhead"})),
            )
            .await,
        OPERATOR_SCOPE,
        ns_scope,
    );
    assert_refused(
        namespaces.delete("team-a", &DeleteParams::default()).await,
        OPERATOR_SCOPE,
        ns_scope,
    );
    assert_refused(
        namespaces
            .patch(
                &ns,
                &PatchParams::default(),
                &relabel(json!({"app.kubernetes.io/managed-by": null})),
            )
            .await,
        OPERATOR_SCOPE,
        ns_scope,
    );
    // Its own labels on its own namespace (Retain marks it orphaned).
    namespaces
        .patch(
            &ns,
            &PatchParams::default(),
            &relabel(json!({"bulkhead.dev/orphaned": "true"})),
        )
        .await
        .unwrap();

    // --- The break-glass group: an emergency change goes through, and the policies can be taken away.
    let (bg_policies, _, _) = in_ns(&break_glass);
    bg_policies
        .create(
            &PostParams::default(),
            &named(network_policy(&ns, "incident-open")),
        )
        .await
        .unwrap();
    bg_policies
        .delete("incident-open", &DeleteParams::default())
        .await
        .unwrap();
    Api::<Namespace>::all(break_glass.clone())
        .patch(
            "team-a",
            &PatchParams::default(),
            &relabel(json!({"bulkhead.dev/tenant": "acme"})),
        )
        .await
        .unwrap();
    // Each such request is in the audit log with who used the group for what.
    let audit = std::fs::read_to_string(plane.audit_log()).unwrap();
    let noted: Vec<String> = audit
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["stage"] == "ResponseComplete")
        .filter_map(|event| {
            event["annotations"][format!("{NETWORK_POLICIES}/break-glass")]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    for expected in [
        format!("incident-responder used the break-glass group: CREATE NetworkPolicy {ns}/incident-open"),
        format!("incident-responder used the break-glass group: DELETE NetworkPolicy {ns}/incident-open"),
    ] {
        assert!(noted.contains(&expected), "{expected:?} not in {noted:?}");
    }
    assert!(
        audit
            .lines()
            .any(|l| l.contains(&format!("\"{NAMESPACE_LABELS}/break-glass\"")) && l.contains("team-a")),
        "no audit annotation for the relabelling"
    );

    // --- Deleting a Bulkhead namespace still empties it: while it terminates, the namespace controller's
    // deletes of the guarded objects are let through (here the controller manager runs as the admin, so only
    // the terminating namespace lets them through).
    namespaces.delete(&ns, &DeleteParams::default()).await.unwrap();
    let start = Instant::now();
    while let Some(left) = namespaces.get_opt(&ns).await.unwrap() {
        assert!(
            start.elapsed() < NAMESPACE_GONE,
            "{ns} still exists {NAMESPACE_GONE:?} after its deletion: {:?}",
            left.status
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // The break-glass group may remove a policy; then what it refused is accepted (turning the guard rails off
    // is a cluster admin's decision, recorded in the audit log).
    Api::<ValidatingAdmissionPolicy>::all(break_glass.clone())
        .delete(NAMESPACE_LABELS, &DeleteParams::default())
        .await
        .unwrap();
    until_accepted("relabelling team-a without the label policy", || async {
        admin_namespaces
            .patch(
                "team-a",
                &PatchParams {
                    dry_run: true,
                    ..PatchParams::default()
                },
                &relabel(json!({"bulkhead.dev/tenant": "globex"})),
            )
            .await
    })
    .await;
}

fn ready_reason(status: Option<&ResourceStatus>) -> Option<String> {
    let c = status?.conditions.iter().find(|c| c.type_ == "Ready")?;
    Some(c.reason.clone())
}

#[tokio::test]
async fn the_operator_does_all_its_work_under_the_policies() {
    bulkhead_e2e::init_test_logging();
    let plane = ControlPlane::start_with_crds().await.unwrap();
    let admin = plane.admin().await.unwrap();
    let admin_config = plane.config_for("admin").await.unwrap();
    install(&admin).await;
    let operator = impersonating(admin_config.clone(), &operator_account(RELEASE_NAMESPACE), &[]).unwrap();
    let break_glass = impersonating(
        admin_config,
        "incident-responder",
        &[BREAK_GLASS_GROUP, "system:masters"],
    )
    .unwrap();
    until_enforced(OPERATOR_SCOPE, || operator_in_kube_system(&operator)).await;
    until_enforced(NAMESPACE_LABELS, || async {
        Api::<Namespace>::all(admin.clone())
            .create(
                &dry_post(),
                &named(json!({"metadata": {"name": "probe",
                "labels": {"app.kubernetes.io/managed-by": "bulkhead"}}})),
            )
            .await
    })
    .await;

    // The operator as the chart runs it: its ServiceAccount, leader election through its Lease.
    let options = bulkhead_operator::Options {
        leader_election: Some(LeaseConfig::new(RELEASE_NAMESPACE, "operator-0")),
        ..bulkhead_operator::Options::default()
    };
    let running = RunningOperator::start(operator.clone(), options).await.unwrap();

    // A Tenant and its Customer are provisioned completely (Events, namespaces, every object).
    let tenants = Api::<Tenant>::all(admin.clone());
    let customers = Api::<Customer>::all(admin.clone());
    let stack = json!({"image": "registry.example.com/portal:1.0", "port": 8080, "replicas": 0});
    tenants
        .create(
            &PostParams::default(),
            &named(json!({"metadata": {"name": "acme"},
            "spec": {"orgId": "org_acme", "stack": stack, "deletionPolicy": "Delete"}})),
        )
        .await
        .unwrap();
    customers
        .create(&PostParams::default(), &named(json!({"metadata": {"name": "dental"},
            "spec": {"tenantRef": "acme", "orgId": "org_dental", "stack": stack, "deletionPolicy": "Delete"}})))
        .await
        .unwrap();
    bulkhead_e2e::wait::until(ENFORCED, "Tenant acme provisioned", || async {
        let t = tenants.get("acme").await.ok()?;
        (ready_reason(t.status.as_ref())? == "Provisioned").then_some(())
    })
    .await
    .unwrap();
    bulkhead_e2e::wait::until(ENFORCED, "Customer dental provisioned", || async {
        let c = customers.get("dental").await.ok()?;
        (ready_reason(c.status.as_ref())? == "Provisioned").then_some(())
    })
    .await
    .unwrap();
    let events = Api::<Event>::namespaced(admin.clone(), "default")
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(
        events
            .items
            .iter()
            .any(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("acme")),
        "no Event of the Tenant in default: {:?}",
        events.items.iter().map(|e| &e.reason).collect::<Vec<_>>()
    );
    let lease = Api::<Lease>::namespaced(admin.clone(), RELEASE_NAMESPACE)
        .get("bulkhead-operator")
        .await;
    assert!(lease.is_ok(), "{lease:?}");

    // Drift repair under the policies: what got past them (the break-glass group) is set back.
    for ns in ["bk-acme", "bk-acme-dental"] {
        let policies = Api::<NetworkPolicy>::namespaced(break_glass.clone(), ns);
        policies
            .delete(policy::DEFAULT_DENY, &DeleteParams::default())
            .await
            .unwrap();
        policies
            .create(
                &PostParams::default(),
                &named(network_policy(ns, "incident-open")),
            )
            .await
            .unwrap();
        bulkhead_e2e::wait::until(ENFORCED, &format!("the repair of {ns}"), || async {
            let back = policies.get_opt(policy::DEFAULT_DENY).await.ok()?.is_some();
            let gone = policies.get_opt("incident-open").await.ok()?.is_none();
            (back && gone).then_some(())
        })
        .await
        .unwrap();
    }

    // Deletion with `Delete`: the operator deletes its namespaces, the namespace controller empties them.
    customers
        .delete("dental", &DeleteParams::default())
        .await
        .unwrap();
    tenants.delete("acme", &DeleteParams::default()).await.unwrap();
    let namespaces = Api::<Namespace>::all(admin.clone());
    bulkhead_e2e::wait::until(NAMESPACE_GONE, "both namespaces to be gone", || async {
        let left = namespaces.get_opt("bk-acme").await.ok()?.is_some()
            || namespaces.get_opt("bk-acme-dental").await.ok()?.is_some();
        (!left).then_some(())
    })
    .await
    .unwrap();
    assert!(tenants.get_opt("acme").await.unwrap().is_none());
    running.stop().await.unwrap();
}
