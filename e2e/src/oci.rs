//! Registry-free OCI images: one linux/amd64 image with one layer, written as an uncompressed tar archive that
//! holds an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`) and Docker's `manifest.json`, so
//! `ctr images import`, `kind load image-archive` and `docker load` all accept the same file.
//!
//! Archives are deterministic: every timestamp is the epoch, every owner is 0:0, entries are sorted, and the
//! JSON documents have a fixed field order. The same files and settings give a byte-identical archive and so the
//! same manifest digest.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest as _, Sha256};

/// The user images run as unless told otherwise: the conventional non-root "nonroot" of distroless images.
pub const DEFAULT_USER: &str = "65532:65532";
/// The creation time of every image, so that it does not depend on when it was built.
pub const CREATED: &str = "1970-01-01T00:00:00Z";
/// The annotation containerd names imported images by.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// The OCI annotation for the reference's tag.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_TYPE_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

const ARCHITECTURE: &str = "amd64";
const OS: &str = "linux";
const DIRECTORY_MODE: u32 = 0o755;
const DOCUMENT_MODE: u32 = 0o644;

/// Why an image could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: &'static str },
    #[error("invalid path in the image {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("the image has no entrypoint")]
    NoEntrypoint,
    #[error("cannot encode the image {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("{}: not an image archive: {reason}", path.display())]
    NotAnArchive { path: PathBuf, reason: String },
}

/// A file copied into the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageFile {
    /// Where the content comes from on this machine.
    pub source: PathBuf,
    /// The absolute path in the image, e.g. `/bulkhead-stack`; missing parent directories are added.
    pub path_in_image: String,
    /// Permission bits, e.g. `0o755` for a binary, `0o644` for a configuration file.
    pub mode: u32,
}

impl ImageFile {
    /// A binary anyone may read and run.
    pub fn executable(source: impl Into<PathBuf>, path_in_image: impl Into<String>) -> Self {
        Self {
            source: source.into(),
            path_in_image: path_in_image.into(),
            mode: 0o755,
        }
    }
}

/// What goes into an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    /// The full reference with a tag, e.g. `bulkhead.dev/stack:0.1.0`.
    pub reference: String,
    pub files: Vec<ImageFile>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `NAME=value` entries.
    pub env: Vec<String>,
    /// `uid:gid`; empty runs as root.
    pub user: String,
    /// Empty leaves it unset (`/`).
    pub working_dir: String,
    /// `port/protocol`, e.g. `8080/tcp`.
    pub exposed_ports: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

impl ImageSpec {
    /// An image with the given reference and entrypoint, no files yet, running as [`DEFAULT_USER`].
    pub fn new(reference: impl Into<String>, entrypoint: Vec<String>) -> Self {
        Self {
            reference: reference.into(),
            files: Vec::new(),
            entrypoint,
            cmd: Vec::new(),
            env: Vec::new(),
            user: DEFAULT_USER.to_owned(),
            working_dir: String::new(),
            exposed_ports: Vec::new(),
            labels: BTreeMap::new(),
        }
    }
}

/// The digests (`sha256:<hex>`) of a written image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenImage {
    /// The manifest digest: the image's identity (what `ctr images ls` shows).
    pub manifest: String,
    pub config: String,
    /// The layer digest, which is also its diff id (the layer is not compressed).
    pub layer: String,
}

/// Splits `name:tag` (the name may contain a registry port: `localhost:5000/x:1`). Digests are not accepted.
pub fn split_reference(reference: &str) -> Result<(&str, &str), OciError> {
    let invalid = |reason| OciError::InvalidReference {
        reference: reference.to_owned(),
        reason,
    };
    if reference.contains('@') {
        return Err(invalid("a digest reference cannot name a new image"));
    }
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    let Some(colon) = reference[last_slash..].rfind(':').map(|i| i + last_slash) else {
        return Err(invalid("it needs a tag (name:tag)"));
    };
    let (name, tag) = (&reference[..colon], &reference[colon + 1..]);
    let name_ok = !name.is_empty()
        && !name.starts_with('/')
        && !name.ends_with('/')
        && !name.contains("//")
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/:".contains(c));
    if !name_ok {
        return Err(invalid(
            "the name must be lowercase letters, digits and . _ - / :",
        ));
    }
    let tag_ok = tag.len() <= 128
        && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !tag_ok {
        return Err(invalid(
            "the tag must be 1 to 128 of letters, digits and . _ - (not starting with . or -)",
        ));
    }
    Ok((name, tag))
}

/// Writes the image described by `spec` to `out` (replacing it atomically) and returns its digests.
pub fn write_archive(spec: &ImageSpec, out: &Path) -> Result<WrittenImage, OciError> {
    let (_, tag) = split_reference(&spec.reference)?;
    if spec.entrypoint.is_empty() {
        return Err(OciError::NoEntrypoint);
    }
    let entries = layer_entries(&spec.files)?;
    let dir = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let io_at = |path: &Path| {
        let path = path.to_owned();
        move |source| OciError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io_at(dir))?;

    // The layer goes to a temporary file first: its digest and size are needed before it enters the archive.
    let mut layer_file = tempfile::tempfile_in(dir).map_err(io_at(dir))?;
    let (layer_digest, layer_size) = write_layer(&entries, &layer_file, out)?;
    let layer_digest = format!("sha256:{layer_digest}");

    let config = ImageConfig {
        created: CREATED,
        architecture: ARCHITECTURE,
        os: OS,
        config: ExecConfig {
            user: &spec.user,
            exposed_ports: spec
                .exposed_ports
                .iter()
                .map(|port| (port.as_str(), Empty {}))
                .collect(),
            env: &spec.env,
            entrypoint: &spec.entrypoint,
            cmd: &spec.cmd,
            working_dir: &spec.working_dir,
            labels: &spec.labels,
        },
        rootfs: RootFs {
            kind: "layers",
            diff_ids: vec![layer_digest.clone()],
        },
        history: vec![History {
            created: CREATED,
            created_by: "bulkhead images",
        }],
    };
    let config = encode("config", &config)?;
    let config_digest = sha256(&config);
    let manifest = Manifest {
        schema_version: 2,
        media_type: MEDIA_TYPE_MANIFEST,
        config: Descriptor::new(MEDIA_TYPE_CONFIG, &config_digest, config.len() as u64),
        layers: vec![Descriptor::new(MEDIA_TYPE_LAYER, &layer_digest, layer_size)],
    };
    let manifest = encode("manifest", &manifest)?;
    let manifest_digest = sha256(&manifest);
    let mut manifest_descriptor =
        Descriptor::new(MEDIA_TYPE_MANIFEST, &manifest_digest, manifest.len() as u64);
    manifest_descriptor.annotations = BTreeMap::from([
        (ANNOTATION_IMAGE_NAME, spec.reference.clone()),
        (ANNOTATION_REF_NAME, tag.to_owned()),
    ]);
    manifest_descriptor.platform = Some(Platform {
        architecture: ARCHITECTURE,
        os: OS,
    });
    let index = Index {
        schema_version: 2,
        media_type: MEDIA_TYPE_INDEX,
        manifests: vec![manifest_descriptor],
    };
    let index = encode("index", &index)?;
    let docker_manifest = [DockerManifest {
        config: blob_path(&config_digest),
        repo_tags: vec![spec.reference.as_str()],
        layers: vec![blob_path(&layer_digest)],
    }];
    let docker_manifest = encode("manifest.json", &docker_manifest)?;

    let archive = tempfile::NamedTempFile::new_in(dir).map_err(io_at(dir))?;
    let mut builder = tar::Builder::new(BufWriter::new(archive));
    let add = |builder: &mut tar::Builder<_>, path: &str, data: &[u8]| {
        append(
            builder,
            path,
            tar::EntryType::Regular,
            DOCUMENT_MODE,
            data.len() as u64,
            data,
        )
    };
    add(&mut builder, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io_at(out))?;
    add(&mut builder, "index.json", &index).map_err(io_at(out))?;
    add(&mut builder, "manifest.json", &docker_manifest).map_err(io_at(out))?;
    for directory in ["blobs/", "blobs/sha256/"] {
        append(
            &mut builder,
            directory,
            tar::EntryType::Directory,
            DIRECTORY_MODE,
            0,
            io::empty(),
        )
        .map_err(io_at(out))?;
    }
    // Blobs sorted by digest, so that their order depends on their content only.
    let mut blobs = [
        (config_digest.as_str(), Blob::Bytes(&config)),
        (layer_digest.as_str(), Blob::Layer(layer_size)),
        (manifest_digest.as_str(), Blob::Bytes(&manifest)),
    ];
    blobs.sort_by_key(|(digest, _)| *digest);
    for (digest, blob) in blobs {
        let path = blob_path(digest);
        let appended = match blob {
            Blob::Bytes(bytes) => add(&mut builder, &path, bytes),
            Blob::Layer(size) => io::Seek::rewind(&mut layer_file).and_then(|()| {
                append(
                    &mut builder,
                    &path,
                    tar::EntryType::Regular,
                    DOCUMENT_MODE,
                    size,
                    (&mut layer_file).take(size),
                )
            }),
        };
        appended.map_err(io_at(out))?;
    }
    let archive = builder
        .into_inner()
        .and_then(|writer| writer.into_inner().map_err(io::IntoInnerError::into_error))
        .map_err(io_at(out))?;
    // Temporary files are private (0600); the archive is for other tools and users to read.
    let file = archive.as_file();
    file.set_permissions(std::fs::Permissions::from_mode(DOCUMENT_MODE))
        .and_then(|()| file.sync_all())
        .map_err(io_at(out))?;
    archive.persist(out).map_err(|err| OciError::Io {
        path: out.to_owned(),
        source: err.error,
    })?;
    Ok(WrittenImage {
        manifest: manifest_digest,
        config: config_digest,
        layer: layer_digest,
    })
}

/// The manifest digest of the (first) image in an archive written by [`write_archive`] or any OCI layout tar.
pub fn manifest_digest(archive: &Path) -> Result<String, OciError> {
    let not_an_archive = |reason: String| OciError::NotAnArchive {
        path: archive.to_owned(),
        reason,
    };
    let index = read_entry(archive, "index.json")?.ok_or_else(|| not_an_archive("no index.json".into()))?;
    let index: serde_json::Value =
        serde_json::from_slice(&index).map_err(|err| not_an_archive(format!("index.json: {err}")))?;
    index["manifests"][0]["digest"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| not_an_archive("index.json lists no manifest".into()))
}

/// The content of the entry `name` of a tar archive, if it has one.
pub fn read_entry(archive: &Path, name: &str) -> Result<Option<Vec<u8>>, OciError> {
    let io_err = |source| OciError::Io {
        path: archive.to_owned(),
        source,
    };
    let file = File::open(archive).map_err(io_err)?;
    let mut tar = tar::Archive::new(io::BufReader::new(file));
    for entry in tar.entries().map_err(io_err)? {
        let mut entry = entry.map_err(io_err)?;
        if entry.path_bytes().as_ref() == name.as_bytes() {
            let mut content = Vec::new();
            entry.read_to_end(&mut content).map_err(io_err)?;
            return Ok(Some(content));
        }
    }
    Ok(None)
}

enum Blob<'a> {
    Bytes(&'a [u8]),
    Layer(u64),
}

/// One entry of the layer: a directory, or a file with its source and mode.
#[derive(Debug)]
enum LayerEntry<'a> {
    Directory,
    File(&'a ImageFile),
}

/// The layer's entries by their path in the tar (relative, directories ending in `/`), parents first.
fn layer_entries(files: &[ImageFile]) -> Result<BTreeMap<String, LayerEntry<'_>>, OciError> {
    let mut entries = BTreeMap::new();
    let mut directories = Vec::new();
    for file in files {
        let invalid = |reason| OciError::InvalidPath {
            path: file.path_in_image.clone(),
            reason,
        };
        let Some(relative) = file.path_in_image.strip_prefix('/') else {
            return Err(invalid("it must be absolute"));
        };
        let components: Vec<&str> = relative.split('/').collect();
        if components.iter().any(|c| c.is_empty() || *c == "." || *c == "..") {
            return Err(invalid(
                "it must be a normalized file path (no empty, `.` or `..` parts)",
            ));
        }
        if file.mode > 0o7777 {
            return Err(invalid("the mode has bits beyond 0o7777"));
        }
        for depth in 1..components.len() {
            directories.push(format!("{}/", components[..depth].join("/")));
        }
        if entries
            .insert(relative.to_owned(), LayerEntry::File(file))
            .is_some()
        {
            return Err(invalid("it is given twice"));
        }
    }
    for directory in directories {
        if entries.contains_key(directory.trim_end_matches('/')) {
            return Err(OciError::InvalidPath {
                path: format!("/{directory}"),
                reason: "it is a file and the parent of another",
            });
        }
        entries.insert(directory, LayerEntry::Directory);
    }
    Ok(entries)
}

/// Writes the layer tar to `file` and returns its sha256 (hex) and size.
fn write_layer(
    entries: &BTreeMap<String, LayerEntry<'_>>,
    file: &File,
    out: &Path,
) -> Result<(String, u64), OciError> {
    let mut builder = tar::Builder::new(HashingWriter {
        inner: BufWriter::new(file),
        hasher: Sha256::new(),
        written: 0,
    });
    for (path, entry) in entries {
        match entry {
            LayerEntry::Directory => {
                append(
                    &mut builder,
                    path,
                    tar::EntryType::Directory,
                    DIRECTORY_MODE,
                    0,
                    io::empty(),
                )
                .map_err(|source| OciError::Io {
                    path: out.to_owned(),
                    source,
                })?;
            }
            LayerEntry::File(image_file) => {
                let io_err = |source| OciError::Io {
                    path: image_file.source.clone(),
                    source,
                };
                let source = File::open(&image_file.source).map_err(io_err)?;
                let size = source.metadata().map_err(io_err)?.len();
                append(
                    &mut builder,
                    path,
                    tar::EntryType::Regular,
                    image_file.mode,
                    size,
                    ExactReader {
                        inner: source.take(size),
                        left: size,
                    },
                )
                .map_err(io_err)?;
            }
        }
    }
    let mut writer = builder.into_inner().map_err(|source| OciError::Io {
        path: out.to_owned(),
        source,
    })?;
    writer.inner.flush().map_err(|source| OciError::Io {
        path: out.to_owned(),
        source,
    })?;
    Ok((format!("{:x}", writer.hasher.finalize()), writer.written))
}

/// Appends one entry with a fixed owner (0:0) and time (the epoch).
fn append<W: Write>(
    builder: &mut tar::Builder<W>,
    path: &str,
    kind: tar::EntryType,
    mode: u32,
    size: u64,
    data: impl Read,
) -> io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(size);
    builder.append_data(&mut header, path, data)
}

/// Reads exactly the announced number of bytes, failing if the file shrank while it was read (a grown file is
/// cut by `take`), so the tar entry never disagrees with its header.
struct ExactReader<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was copied into the image",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

fn blob_path(digest: &str) -> String {
    format!("blobs/{}", digest.replacen(':', "/", 1))
}

fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, OciError> {
    serde_json::to_vec(value).map_err(|source| OciError::Encode { what, source })
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct ImageConfig<'a> {
    created: &'static str,
    architecture: &'static str,
    os: &'static str,
    config: ExecConfig<'a>,
    rootfs: RootFs,
    history: Vec<History>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ExecConfig<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    user: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    exposed_ports: BTreeMap<&'a str, Empty>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    env: &'a [String],
    entrypoint: &'a [String],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    cmd: &'a [String],
    #[serde(skip_serializing_if = "str::is_empty")]
    working_dir: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<String>,
}

#[derive(Serialize)]
struct History {
    created: &'static str,
    created_by: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest<'a> {
    schema_version: u32,
    media_type: &'static str,
    config: Descriptor<'a>,
    layers: Vec<Descriptor<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Index<'a> {
    schema_version: u32,
    media_type: &'static str,
    manifests: Vec<Descriptor<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor<'a> {
    media_type: &'static str,
    digest: &'a str,
    size: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<&'static str, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<Platform>,
}

impl<'a> Descriptor<'a> {
    fn new(media_type: &'static str, digest: &'a str, size: u64) -> Self {
        Self {
            media_type,
            digest,
            size,
            annotations: BTreeMap::new(),
            platform: None,
        }
    }
}

#[derive(Serialize)]
struct Platform {
    architecture: &'static str,
    os: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest<'a> {
    config: String,
    repo_tags: Vec<&'a str>,
    layers: Vec<String>,
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    struct Fixture {
        dir: tempfile::TempDir,
        spec: ImageSpec,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("stack-binary");
        std::fs::write(&binary, b"\x7fELF pretend binary").unwrap();
        let hosts = dir.path().join("hosts");
        std::fs::write(&hosts, b"127.0.0.1 localhost\n").unwrap();
        let mut spec = ImageSpec::new("bulkhead.dev/stack:0.1.0", vec!["/bulkhead-stack".into()]);
        spec.files = vec![
            ImageFile::executable(&binary, "/bulkhead-stack"),
            ImageFile {
                source: hosts,
                path_in_image: "/etc/hosts".into(),
                mode: 0o644,
            },
        ];
        spec.cmd = vec!["serve".into()];
        spec.env = vec!["PORT=8080".into()];
        spec.exposed_ports = vec!["8080/tcp".into()];
        spec.labels = BTreeMap::from([("org.opencontainers.image.title".into(), "bulkhead-stack".into())]);
        Fixture { dir, spec }
    }

    /// Every entry of a tar: path → (header, content).
    fn entries(archive: &[u8]) -> Vec<(String, tar::Header, Vec<u8>)> {
        let mut tar = tar::Archive::new(archive);
        tar.entries()
            .unwrap()
            .map(|entry| {
                let mut entry = entry.unwrap();
                let path = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
                let header = entry.header().clone();
                let mut content = Vec::new();
                entry.read_to_end(&mut content).unwrap();
                (path, header, content)
            })
            .collect()
    }

    fn content<'a>(entries: &'a [(String, tar::Header, Vec<u8>)], path: &str) -> &'a [u8] {
        &entries
            .iter()
            .find(|(p, _, _)| p == path)
            .unwrap_or_else(|| panic!("no {path}"))
            .2
    }

    fn json(entries: &[(String, tar::Header, Vec<u8>)], path: &str) -> serde_json::Value {
        serde_json::from_slice(content(entries, path)).unwrap()
    }

    fn blob<'a>(entries: &'a [(String, tar::Header, Vec<u8>)], digest: &serde_json::Value) -> &'a [u8] {
        content(entries, &blob_path(digest.as_str().unwrap()))
    }

    #[test]
    fn the_same_inputs_give_the_same_bytes_and_digest() {
        let Fixture { dir, spec } = fixture();
        let first = dir.path().join("out/first.tar");
        let second = dir.path().join("second.tar");
        let a = write_archive(&spec, &first).unwrap();
        let b = write_archive(&spec, &second).unwrap();
        assert_eq!(a, b);
        assert_eq!(std::fs::read(&first).unwrap(), std::fs::read(&second).unwrap());
        assert_eq!(manifest_digest(&first).unwrap(), a.manifest);
        let mode = std::fs::metadata(&first).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);

        let mut other = spec.clone();
        other.user = "0:0".into();
        let c = write_archive(&other, &second).unwrap();
        assert_eq!(c.layer, a.layer, "the same files give the same layer");
        assert_ne!(c.manifest, a.manifest);
        // Nothing but the archives is left behind.
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["hosts", "out", "second.tar", "stack-binary"]);
    }

    #[test]
    fn the_archive_is_an_oci_layout_and_a_docker_archive() {
        let Fixture { dir, spec } = fixture();
        let out = dir.path().join("stack.tar");
        let written = write_archive(&spec, &out).unwrap();
        let archive = std::fs::read(&out).unwrap();
        let entries = entries(&archive);
        let paths: Vec<&str> = entries.iter().map(|(p, _, _)| p.as_str()).collect();
        let mut blobs = [
            blob_path(&written.config),
            blob_path(&written.layer),
            blob_path(&written.manifest),
        ];
        blobs.sort();
        let mut expected = vec![
            "oci-layout",
            "index.json",
            "manifest.json",
            "blobs/",
            "blobs/sha256/",
        ];
        expected.extend(blobs.iter().map(String::as_str));
        assert_eq!(paths, expected);
        for (path, header, _) in &entries {
            assert_eq!(header.mtime().unwrap(), 0, "{path}");
            assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (0, 0), "{path}");
        }
        assert_eq!(json(&entries, "oci-layout")["imageLayoutVersion"], "1.0.0");

        let index = json(&entries, "index.json");
        assert_eq!(index["schemaVersion"], 2);
        assert_eq!(index["mediaType"], MEDIA_TYPE_INDEX);
        let manifests = index["manifests"].as_array().unwrap();
        assert_eq!(manifests.len(), 1);
        let descriptor = &manifests[0];
        assert_eq!(descriptor["mediaType"], MEDIA_TYPE_MANIFEST);
        assert_eq!(descriptor["digest"], written.manifest.as_str());
        assert_eq!(
            descriptor["annotations"][ANNOTATION_IMAGE_NAME],
            "bulkhead.dev/stack:0.1.0"
        );
        assert_eq!(descriptor["annotations"][ANNOTATION_REF_NAME], "0.1.0");
        assert_eq!(
            descriptor["platform"],
            serde_json::json!({"architecture": "amd64", "os": "linux"})
        );

        // Every descriptor's digest and size match the blob it points to.
        let manifest_bytes = blob(&entries, &descriptor["digest"]);
        assert_eq!(sha256(manifest_bytes), written.manifest);
        assert_eq!(descriptor["size"], manifest_bytes.len());
        let manifest: serde_json::Value = serde_json::from_slice(manifest_bytes).unwrap();
        assert_eq!(manifest["schemaVersion"], 2);
        assert_eq!(manifest["mediaType"], MEDIA_TYPE_MANIFEST);
        assert_eq!(manifest["config"]["mediaType"], MEDIA_TYPE_CONFIG);
        let config_bytes = blob(&entries, &manifest["config"]["digest"]);
        assert_eq!(sha256(config_bytes), written.config);
        assert_eq!(manifest["config"]["size"], config_bytes.len());
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1);
        assert_eq!(layers[0]["mediaType"], MEDIA_TYPE_LAYER);
        let layer_bytes = blob(&entries, &layers[0]["digest"]);
        assert_eq!(sha256(layer_bytes), written.layer);
        assert_eq!(layers[0]["size"], layer_bytes.len());

        let docker = json(&entries, "manifest.json");
        assert_eq!(
            docker,
            serde_json::json!([{
                "Config": blob_path(&written.config),
                "RepoTags": ["bulkhead.dev/stack:0.1.0"],
                "Layers": [blob_path(&written.layer)],
            }])
        );

        let config: serde_json::Value = serde_json::from_slice(config_bytes).unwrap();
        assert_eq!(config["created"], CREATED);
        assert_eq!(config["architecture"], "amd64");
        assert_eq!(config["os"], "linux");
        assert_eq!(config["rootfs"]["type"], "layers");
        assert_eq!(config["rootfs"]["diff_ids"], serde_json::json!([written.layer]));
        assert_eq!(
            config["config"],
            serde_json::json!({
                "User": "65532:65532",
                "ExposedPorts": {"8080/tcp": {}},
                "Env": ["PORT=8080"],
                "Entrypoint": ["/bulkhead-stack"],
                "Cmd": ["serve"],
                "Labels": {"org.opencontainers.image.title": "bulkhead-stack"},
            })
        );
    }

    #[test]
    fn the_layer_holds_the_files_with_their_parents_owned_by_root() {
        let Fixture { dir, spec } = fixture();
        let out = dir.path().join("stack.tar");
        let written = write_archive(&spec, &out).unwrap();
        let archive = std::fs::read(&out).unwrap();
        let outer = entries(&archive);
        let layer = entries(content(&outer, &blob_path(&written.layer)));
        let listing: Vec<(&str, tar::EntryType, u32, &[u8])> = layer
            .iter()
            .map(|(path, header, content)| {
                assert_eq!(header.mtime().unwrap(), 0, "{path}");
                assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (0, 0), "{path}");
                (
                    path.as_str(),
                    header.entry_type(),
                    header.mode().unwrap(),
                    content.as_slice(),
                )
            })
            .collect();
        assert_eq!(
            listing,
            [
                (
                    "bulkhead-stack",
                    tar::EntryType::Regular,
                    0o755,
                    &b"\x7fELF pretend binary"[..]
                ),
                ("etc/", tar::EntryType::Directory, 0o755, &b""[..]),
                (
                    "etc/hosts",
                    tar::EntryType::Regular,
                    0o644,
                    &b"127.0.0.1 localhost\n"[..]
                ),
            ]
        );
    }

    #[test]
    fn bad_references_and_paths_are_refused() {
        assert_eq!(
            split_reference("bulkhead.dev/stack:0.1.0").unwrap(),
            ("bulkhead.dev/stack", "0.1.0")
        );
        assert_eq!(
            split_reference("localhost:5000/pause:3.10").unwrap(),
            ("localhost:5000/pause", "3.10")
        );
        for reference in [
            "bulkhead.dev/stack",
            "localhost:5000/pause",
            "Stack:1",
            "x@sha256:00",
            "x:",
            "x:-1",
        ] {
            assert!(split_reference(reference).is_err(), "{reference}");
        }
        let Fixture { dir, spec } = fixture();
        let out = dir.path().join("bad.tar");
        for path in ["relative", "/a//b", "/a/../b", "/a/", "/"] {
            let mut bad = spec.clone();
            bad.files[0].path_in_image = path.into();
            assert!(
                matches!(write_archive(&bad, &out), Err(OciError::InvalidPath { .. })),
                "{path}"
            );
        }
        let mut twice = spec.clone();
        twice.files.push(twice.files[0].clone());
        assert!(matches!(
            write_archive(&twice, &out),
            Err(OciError::InvalidPath { .. })
        ));
        let mut file_and_parent = spec.clone();
        file_and_parent.files[1].path_in_image = "/bulkhead-stack/hosts".into();
        assert!(matches!(
            write_archive(&file_and_parent, &out),
            Err(OciError::InvalidPath { .. })
        ));
        let mut missing = spec.clone();
        missing.files[0].source = dir.path().join("missing");
        assert!(matches!(write_archive(&missing, &out), Err(OciError::Io { .. })));
        let mut no_entrypoint = spec;
        no_entrypoint.entrypoint.clear();
        assert!(matches!(
            write_archive(&no_entrypoint, &out),
            Err(OciError::NoEntrypoint)
        ));
        assert!(!out.exists());
    }
}
