//! Bulkhead's own images on the local cluster's node: the archives `make images` writes, imported into the
//! node's containerd, and whether an image a manifest names is there (nothing can be pulled on the node, so an
//! image that is not there never starts).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::{Cluster, HarnessError, oci};

/// The archives `make images` writes, by name: `<name>.tar`.
pub const PRODUCTS: [&str; 3] = ["operator", "gateway", "stack"];
/// The containerd namespace the kubelet's images live in.
const CONTAINERD_NAMESPACE: &str = "k8s.io";

/// Where `make images` writes the archives, in this checkout.
pub fn default_dir() -> PathBuf {
    checkout_path("target/images")
}

/// Where `make images` builds the static binaries the images hold, in this checkout.
pub fn static_binaries_dir() -> PathBuf {
    checkout_path("target/x86_64-unknown-linux-gnu/release")
}

fn checkout_path(relative: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    root.canonicalize().unwrap_or(root).join(relative)
}

/// One image archive and the reference it imports as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    /// `operator`, `gateway` or `stack`.
    pub name: &'static str,
    /// The archive.
    pub path: PathBuf,
    /// The reference containerd names it by, e.g. `bulkhead.dev/stack:0.1.0`.
    pub reference: String,
}

/// The operator, gateway and stack archives in `dir`, each with the reference its index names. Fails with the
/// command that writes them when one is missing.
pub fn archives(dir: &Path) -> Result<Vec<Archive>, HarnessError> {
    PRODUCTS
        .iter()
        .map(|name| {
            let path = dir.join(format!("{name}.tar"));
            if !path.is_file() {
                return Err(HarnessError::Assets(format!(
                    "{} does not exist; `make images` writes it",
                    path.display()
                )));
            }
            let reference = reference_of(&path)?;
            Ok(Archive {
                name,
                path,
                reference,
            })
        })
        .collect()
}

/// The `io.containerd.image.name` annotation of the archive's (first) image: the name it imports as.
pub fn reference_of(archive: &Path) -> Result<String, HarnessError> {
    let invalid = |reason: String| HarnessError::Manifest(format!("{}: {reason}", archive.display()));
    let index = oci::read_entry(archive, "index.json")
        .map_err(|e| invalid(e.to_string()))?
        .ok_or_else(|| invalid("not an image archive (no index.json)".into()))?;
    let index: serde_json::Value =
        serde_json::from_slice(&index).map_err(|e| invalid(format!("index.json: {e}")))?;
    index["manifests"][0]["annotations"][oci::ANNOTATION_IMAGE_NAME]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| {
            invalid(format!(
                "index.json names no image ({})",
                oci::ANNOTATION_IMAGE_NAME
            ))
        })
}

/// Imports an archive into the node's containerd, where the kubelet finds it by its reference. The import stops
/// with the caller (the `ctr` client is killed when the future is dropped).
pub async fn import(cluster: &Cluster, archive: &Path) -> Result<(), HarnessError> {
    ctr(
        cluster,
        &[
            "images",
            "import",
            "--no-unpack=false",
            &archive.display().to_string(),
        ],
    )
    .await
    .map(drop)
}

/// Whether the node's containerd holds `reference` (normalized as the kubelet does: `nginx:1` is
/// `docker.io/library/nginx:1`).
pub async fn present(cluster: &Cluster, reference: &str) -> Result<bool, HarnessError> {
    let wanted = normalize(reference);
    let listed = ctr(cluster, &["images", "list", "--quiet"]).await?;
    Ok(listed.lines().any(|line| line.trim() == wanted))
}

/// The fully qualified form of an image reference, as the kubelet asks containerd for it: a registry
/// (`docker.io` when the first component names none), `library/` for Docker Hub's official images, and `:latest`
/// when neither tag nor digest is given.
pub fn normalize(reference: &str) -> String {
    let (name, digest) = match reference.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (reference, None),
    };
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let (repository, tag) = match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
        None => (name, None),
    };
    let first = repository.split('/').next().unwrap_or_default();
    let has_registry = repository.contains('/')
        && (first.contains(['.', ':'])
            || first == "localhost"
            || first.bytes().any(|b| b.is_ascii_uppercase()));
    let mut out = if has_registry {
        repository.to_owned()
    } else if repository.contains('/') {
        format!("docker.io/{repository}")
    } else {
        format!("docker.io/library/{repository}")
    };
    match (tag, digest) {
        (Some(tag), _) => {
            out.push(':');
            out.push_str(tag);
        }
        (None, None) => out.push_str(":latest"),
        (None, Some(_)) => {}
    }
    if let Some(digest) = digest {
        out.push('@');
        out.push_str(digest);
    }
    out
}

async fn ctr(cluster: &Cluster, args: &[&str]) -> Result<String, HarnessError> {
    let output = tokio::process::Command::new("ctr")
        .arg("--address")
        .arg(cluster.containerd_socket())
        .args(["-n", CONTAINERD_NAMESPACE])
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| HarnessError::Spawn {
            name: "ctr".into(),
            source,
        })?;
    if !output.status.success() {
        return Err(HarnessError::Manifest(format!(
            "`ctr {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn references_are_normalized_like_the_kubelet_does() {
        for (given, wanted) in [
            ("nginx", "docker.io/library/nginx:latest"),
            ("nginx:1.27", "docker.io/library/nginx:1.27"),
            (
                "nginxinc/nginx-unprivileged:1.27-alpine",
                "docker.io/nginxinc/nginx-unprivileged:1.27-alpine",
            ),
            ("bulkhead.dev/stack:0.1.0", "bulkhead.dev/stack:0.1.0"),
            ("localhost:5000/app", "localhost:5000/app:latest"),
            ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
            (
                "ghcr.io/acme/portal@sha256:0123",
                "ghcr.io/acme/portal@sha256:0123",
            ),
            ("acme/portal:1@sha256:0123", "docker.io/acme/portal:1@sha256:0123"),
        ] {
            assert_eq!(normalize(given), wanted, "{given}");
        }
    }
}
