//! Applying YAML manifests (such as `examples/`) with server-side apply, for the sandbox and the tests.

use std::path::{Path, PathBuf};

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::{Discovery, Scope};
use kube::{Client, ResourceExt};

use crate::HarnessError;
use crate::control_plane::FIELD_MANAGER;

/// Server-side applies `value` (a JSON object of kind `K`) as field manager `manager`, forcing conflicts, and
/// returns the object as stored.
pub async fn value_as<K>(api: &Api<K>, value: serde_json::Value, manager: &str) -> Result<K, HarnessError>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let object: K = serde_json::from_value(value).map_err(|e| HarnessError::Manifest(e.to_string()))?;
    let name = object.meta().name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(&object),
    )
    .await
    .map_err(|source| HarnessError::Api {
        what: format!("applying {} {name}", K::kind(&())),
        source,
    })
}

/// One object that was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Its kind.
    pub kind: String,
    /// Its name.
    pub name: String,
}

/// The `*.yaml` and `*.yml` files directly inside `dir` (not in subfolders), sorted by name.
pub fn manifest_files(dir: &Path) -> Result<Vec<PathBuf>, HarnessError> {
    let read = |e| HarnessError::Io {
        what: format!("reading {}", dir.display()),
        source: e,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    Ok(files)
}

/// Parses a multi-document YAML text into objects, skipping empty documents.
pub fn parse_manifests(text: &str, origin: &str) -> Result<Vec<DynamicObject>, HarnessError> {
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(text).map_err(|e| HarnessError::Manifest(format!("{origin}: {e}")))?;
    docs.into_iter()
        .filter(|d| !d.is_null())
        .map(|d| serde_json::from_value(d).map_err(|e| HarnessError::Manifest(format!("{origin}: {e}"))))
        .collect()
}

/// Applies every object in the files with server-side apply, resolving kinds through API discovery.
pub async fn apply_files(client: &Client, files: &[PathBuf]) -> Result<Vec<Applied>, HarnessError> {
    let mut texts = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).map_err(|source| HarnessError::Io {
            what: format!("reading {}", file.display()),
            source,
        })?;
        texts.push((file.display().to_string(), text));
    }
    apply_texts(client, &texts).await
}

/// Applies every object of each `(origin, YAML text)` with server-side apply, resolving kinds through API
/// discovery; errors name the origin.
pub async fn apply_texts(client: &Client, texts: &[(String, String)]) -> Result<Vec<Applied>, HarnessError> {
    let mut objects = Vec::new();
    for (origin, text) in texts {
        objects.push((origin.clone(), parse_manifests(text, origin)?));
    }
    apply_objects(client, objects).await
}

/// Applies each `(origin, objects)` with server-side apply, resolving kinds through API discovery; errors name the
/// origin.
pub async fn apply_objects(
    client: &Client,
    objects: Vec<(String, Vec<DynamicObject>)>,
) -> Result<Vec<Applied>, HarnessError> {
    let discovery = discover(client).await?;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut applied = Vec::new();
    for (origin, list) in objects {
        for object in list {
            let (api, applied_as) = resolve(client, &discovery, &origin, &object)?;
            api.patch(&applied_as.name, &params, &Patch::Apply(&object))
                .await
                .map_err(|source| HarnessError::Api {
                    what: format!("applying {} {}", applied_as.kind, applied_as.name),
                    source,
                })?;
            applied.push(applied_as);
        }
    }
    Ok(applied)
}

/// Server-side applies each object with `dryRun=All`: the API server validates, defaults and admits it (Pod
/// Security and RBAC escalation checks included) and stores nothing. Returns every object's outcome, so one
/// refusal does not hide the next; an object whose kind the server does not know is an error.
pub async fn dry_run_objects(
    client: &Client,
    origin: &str,
    objects: &[DynamicObject],
) -> Result<Vec<(Applied, Result<(), kube::Error>)>, HarnessError> {
    let discovery = discover(client).await?;
    let params = PatchParams::apply(FIELD_MANAGER).force().dry_run();
    let mut outcomes = Vec::new();
    for object in objects {
        let (api, applied_as) = resolve(client, &discovery, origin, object)?;
        let outcome = api
            .patch(&applied_as.name, &params, &Patch::Apply(object))
            .await
            .map(drop);
        outcomes.push((applied_as, outcome));
    }
    Ok(outcomes)
}

async fn discover(client: &Client) -> Result<Discovery, HarnessError> {
    Discovery::new(client.clone())
        .run()
        .await
        .map_err(|source| HarnessError::Api {
            what: "API discovery".into(),
            source,
        })
}

/// The API for `object`'s kind and scope, and what it is.
fn resolve(
    client: &Client,
    discovery: &Discovery,
    origin: &str,
    object: &DynamicObject,
) -> Result<(Api<DynamicObject>, Applied), HarnessError> {
    let types = object
        .types
        .clone()
        .ok_or_else(|| HarnessError::Manifest(format!("{origin}: an object has no apiVersion/kind")))?;
    let gvk = kube::api::GroupVersionKind::try_from(&types)
        .map_err(|e| HarnessError::Manifest(format!("{origin}: {e}")))?;
    let (resource, capabilities) = discovery.resolve_gvk(&gvk).ok_or_else(|| {
        HarnessError::Manifest(format!("{origin}: the server does not know {}", types.kind))
    })?;
    let api: Api<DynamicObject> = match capabilities.scope {
        Scope::Cluster => Api::all_with(client.clone(), &resource),
        Scope::Namespaced => Api::namespaced_with(
            client.clone(),
            object.metadata.namespace.as_deref().unwrap_or("default"),
            &resource,
        ),
    };
    Ok((
        api,
        Applied {
            kind: types.kind,
            name: object.name_any(),
        },
    ))
}
