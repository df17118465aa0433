//! The CRDs' own validation, on a real API server: every case of the validation tests
//! (`bulkhead_crds::validate::cases`) is sent to the API server, which must refuse exactly the fields the
//! operator's checks refuse, in the same words, and accept what they accept. A change of an identity field is
//! refused at admission; the folder `examples/invalid/` is refused at once, naming its fields.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers fail the test by panicking

use std::collections::BTreeSet;
use std::path::Path;

use bulkhead_crds::rules::text;
use bulkhead_crds::validate::cases::{self, Case};
use bulkhead_e2e::ControlPlane;
use bulkhead_e2e::apply::parse_manifests;
use kube::Client;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use kube::core::Status;

/// One refused field as the API server reports it.
#[derive(Debug, Clone)]
struct Cause {
    field: String,
    reason: String,
    message: String,
}

fn api(client: &Client, plural: &str) -> Api<DynamicObject> {
    let kind = if plural == "tenants" { "Tenant" } else { "Customer" };
    let resource =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("bulkhead.dev", "v1alpha1", kind), plural);
    Api::all_with(client.clone(), &resource)
}

/// The causes of a refusal; none for an accepted request. Any other failure fails the test.
fn causes(what: &str, result: Result<DynamicObject, kube::Error>) -> Vec<Cause> {
    let status: Box<Status> = match result {
        Ok(_) => return vec![],
        Err(kube::Error::Api(status)) => status,
        Err(other) => panic!("{what}: the request failed: {other}"),
    };
    assert_eq!(status.code, 422, "{what}: {status:?}");
    let causes = status
        .details
        .as_ref()
        .map(|d| d.causes.clone())
        .unwrap_or_default();
    assert!(!causes.is_empty(), "{what}: a refusal without causes: {status:?}");
    causes
        .into_iter()
        // Said beside a schema error (a length, a count): the CEL rules then are not evaluated at all.
        .filter(|c| !c.message.contains("some validation rules were not checked"))
        .map(|c| {
            // The root rule (the name) names no field: its message starts with the field's path.
            let field = if c.field.is_empty() || c.field == "<nil>" {
                let rest = c
                    .message
                    .strip_prefix("Invalid value: \"object\": ")
                    .unwrap_or(&c.message);
                rest.split_whitespace().next().unwrap_or_default().to_owned()
            } else {
                c.field
            };
            Cause {
                field,
                reason: c.reason,
                message: c.message,
            }
        })
        .collect()
}

/// Sends a case to the API server: a dry-run create, or for a change a real create of the old spec and a
/// dry-run update to the new one.
async fn admit(client: &Client, case: &Case) -> Vec<Cause> {
    let api = api(client, case.plural());
    let object: DynamicObject = serde_json::from_value(case.object(false).unwrap()).unwrap();
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    if case.before.is_none() {
        return causes(&case.what, api.create(&dry_run, &object).await);
    }
    let before: DynamicObject = serde_json::from_value(case.object(true).unwrap()).unwrap();
    let created = api
        .create(&PostParams::default(), &before)
        .await
        .unwrap_or_else(|e| panic!("{}: creating the old spec: {e}", case.what));
    let mut updated = object;
    updated.metadata.resource_version = created.metadata.resource_version.clone();
    let result = api.replace(&case.name, &dry_run, &updated).await;
    api.delete(&case.name, &DeleteParams::default()).await.unwrap();
    causes(&case.what, result)
}

/// Schema errors the API server words itself (a length, a repeated list key, its own name rules).
fn standard(cause: &Cause) -> bool {
    matches!(
        cause.reason.as_str(),
        "FieldValueTooLong" | "FieldValueTooMany" | "FieldValueDuplicate"
    ) || (cause.field == "metadata.name" && cause.message.contains("RFC 1123"))
}

#[tokio::test]
async fn the_api_server_refuses_exactly_what_the_operator_refuses_in_the_same_words() {
    let plane = ControlPlane::start_with_crds().await.expect("control plane");
    let client = plane.admin().await.unwrap();
    let all = cases::all();
    let mut wrong = vec![];
    let mut worded_alike = 0;
    for case in &all {
        let operator = case.validate().err().map(|e| e.0).unwrap_or_default();
        let operator_fields: BTreeSet<&str> = operator.iter().map(|e| e.field.as_str()).collect();
        let expected: BTreeSet<&str> = case.refused.iter().map(String::as_str).collect();
        assert_eq!(operator_fields, expected, "{}: the operator's checks", case.what);

        let admission = admit(&client, case).await;
        let admission_fields: BTreeSet<&str> = admission.iter().map(|c| c.field.as_str()).collect();
        if admission_fields != expected {
            wrong.push(format!(
                "{}: the API server refused {admission_fields:?}, the operator {expected:?}: {admission:?}",
                case.what
            ));
            continue;
        }
        for error in &operator {
            let on_field: Vec<&Cause> = admission.iter().filter(|c| c.field == error.field).collect();
            let alike = on_field.iter().any(|c| {
                text::ALL
                    .iter()
                    .any(|t| c.message.contains(t) && error.message.contains(t))
            });
            if alike {
                worded_alike += 1;
            } else if !on_field.iter().all(|c| standard(c)) {
                wrong.push(format!(
                    "{}: {} is worded differently: the operator says {:?}, the API server {:?}",
                    case.what, error.field, error.message, on_field
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases disagree:\n{}",
        wrong.len(),
        all.len(),
        wrong.join("\n")
    );
    // Most refusals come from the CEL rules, not from the schema's standard checks.
    assert!(worded_alike >= 40, "only {worded_alike} refusals worded alike");
}

#[tokio::test]
async fn the_examples_are_admitted_and_the_invalid_ones_refused_at_once_naming_their_fields() {
    let plane = ControlPlane::start_with_crds().await.expect("control plane");
    let client = plane.admin().await.unwrap();
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut admitted = 0;
    for file in ["tenants.yaml", "customers.yaml"] {
        let path = examples.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        for object in parse_manifests(&text, file).unwrap() {
            let plural = match object.types.as_ref().map(|t| t.kind.as_str()) {
                Some("Tenant") => "tenants",
                _ => "customers",
            };
            let refused = causes(file, api(&client, plural).create(&dry_run, &object).await);
            assert!(refused.is_empty(), "{file}: {refused:?}");
            admitted += 1;
        }
    }
    assert_eq!(admitted, 5, "the examples hold two Tenants and three Customers");

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/invalid");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no examples in {}", dir.display());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let objects = parse_manifests(&text, &file.display().to_string()).unwrap();
        assert!(!objects.is_empty(), "{}", file.display());
        for object in objects {
            let plural = match object.types.as_ref().map(|t| t.kind.as_str()) {
                Some("Tenant") => "tenants",
                Some("Customer") => "customers",
                other => panic!("{}: unexpected kind {other:?}", file.display()),
            };
            let name = object.metadata.name.clone().unwrap_or_default();
            let result = api(&client, plural).create(&PostParams::default(), &object).await;
            let refused = causes(&format!("{} {name}", file.display()), result);
            let fields: BTreeSet<&str> = refused.iter().map(|c| c.field.as_str()).collect();
            // The file states the fields it expects to be refused in its `# refused:` comments.
            let expected = cases::commented_refusals(&text);
            let expected: BTreeSet<&str> = expected.iter().map(String::as_str).collect();
            assert!(!expected.is_empty(), "{} names no refused fields", file.display());
            assert_eq!(fields, expected, "{}: {refused:?}", file.display());
        }
    }
}

#[tokio::test]
async fn kubectl_apply_of_the_invalid_folder_fails_naming_every_refused_field() {
    let plane = ControlPlane::start_with_crds().await.expect("control plane");
    let kubectl = tokio::task::spawn_blocking(|| bulkhead_e2e::control_plane::assets_dir(&[]))
        .await
        .unwrap()
        .expect("cluster binaries")
        .join("kubectl");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/invalid");
    let output = tokio::process::Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(plane.kubeconfig_path())
        .args(["apply", "-f"])
        .arg(&dir)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stderr}");
    assert!(!output.status.success(), "kubectl apply succeeded: {stderr}");
    let mut expected = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        expected.extend(cases::commented_refusals(&text));
    }
    assert!(expected.len() >= 8, "{expected:?}");
    for field in &expected {
        assert!(
            stderr.contains(field.as_str()),
            "kubectl does not name {field}: {stderr}"
        );
    }
    // Nothing was stored.
    let client = plane.admin().await.unwrap();
    for plural in ["tenants", "customers"] {
        let stored = api(&client, plural).list(&Default::default()).await.unwrap();
        assert!(stored.items.is_empty(), "{plural}: {:?}", stored.items);
    }
}
