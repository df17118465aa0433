//! The pinned versions of the local cluster's components, read from `e2e/cluster/versions.env` (the one file
//! that names them; `e2e/scripts/cluster-assets.sh` builds from the same file).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::HarnessError;

/// The versions file.
pub fn path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster/versions.env")
}

/// Every `KEY=VALUE` of the versions file (quotes around a value are dropped).
pub fn read() -> Result<BTreeMap<String, String>, HarnessError> {
    let path = path();
    let text = std::fs::read_to_string(&path).map_err(|source| HarnessError::Io {
        what: path.display().to_string(),
        source,
    })?;
    Ok(parse(&text))
}

/// One value of the versions file, or an error naming the missing key.
pub fn get(key: &str) -> Result<String, HarnessError> {
    read()?
        .remove(key)
        .ok_or_else(|| HarnessError::Assets(format!("{} has no {key}", path().display())))
}

fn parse(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().trim_matches('"').to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_versions_file_names_every_component() {
        let versions = read().unwrap();
        for key in [
            "KUBERNETES_VERSION",
            "ETCD_VERSION",
            "COREDNS_VERSION",
            "KUBE_ROUTER_VERSION",
            "AGNHOST_VERSION",
            "PAUSE_IMAGE",
            "COREDNS_IMAGE",
            "AGNHOST_IMAGE",
        ] {
            assert!(versions.get(key).is_some_and(|v| !v.is_empty()), "{key} missing");
        }
        assert!(versions["KUBERNETES_VERSION"].starts_with("1.34."));
        assert!(versions["AGNHOST_IMAGE"].ends_with(&format!(":{}", versions["AGNHOST_VERSION"])));
        assert!(versions["COREDNS_IMAGE"].ends_with(&format!(":v{}", versions["COREDNS_VERSION"])));
    }

    #[test]
    fn comments_blank_lines_and_quotes_are_handled() {
        let parsed = parse("# c\n\nA=1\nB=\"x y\"\n  C = 3 \n");
        assert_eq!(parsed["A"], "1");
        assert_eq!(parsed["B"], "x y");
        assert_eq!(parsed["C"], "3");
        assert_eq!(parsed.len(), 3);
    }
}
