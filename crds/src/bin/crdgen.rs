//! Writes the generated CRD YAML into `crds/generated/` and `charts/bulkhead/crds/`.
//!
//! `crdgen` writes the files; `crdgen --check` only compares and exits 1 when they differ.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let check = std::env::args().skip(1).any(|a| a == "--check");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let files = match bulkhead_crds::generate::crd_files() {
        Ok(files) => files,
        Err(err) => {
            eprintln!("crdgen: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut stale = Vec::new();
    for dir in bulkhead_crds::generate::OUTPUT_DIRS {
        for (name, text) in &files {
            let path = root.join(dir).join(name);
            let current = std::fs::read_to_string(&path).unwrap_or_default();
            if current == *text {
                continue;
            }
            if check {
                stale.push(path);
            } else if let Err(err) = write(&path, text) {
                eprintln!("crdgen: writing {}: {err}", path.display());
                return ExitCode::FAILURE;
            } else {
                println!("wrote {}", path.display());
            }
        }
    }
    if stale.is_empty() {
        ExitCode::SUCCESS
    } else {
        for path in stale {
            eprintln!("crdgen: {} is out of date; run `make generate`", path.display());
        }
        ExitCode::FAILURE
    }
}

fn write(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text)
}
