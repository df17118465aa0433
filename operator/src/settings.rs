//! The operator's configuration: where the gateway, cluster DNS and Postgres live, so that the NetworkPolicies
//! open exactly those flows and nothing else.

use std::collections::BTreeMap;

/// Pods in one namespace, selected by labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerPods {
    /// The namespace's name (matched through the immutable `kubernetes.io/metadata.name` label).
    pub namespace: String,
    /// The pods' labels.
    pub pod_labels: BTreeMap<String, String>,
}

/// The Postgres server's address, for the egress policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresEndpoint {
    /// The server's address range, e.g. `10.0.5.17/32`.
    pub cidr: String,
    /// Its port.
    pub port: u16,
}

/// Everything the object builders need besides the resource itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The gateway's pods: the only source allowed to reach a stack.
    pub gateway: PeerPods,
    /// Cluster DNS pods: the only DNS servers a stack may query.
    pub dns: PeerPods,
    /// The Postgres server, when database provisioning is configured.
    pub postgres: Option<PostgresEndpoint>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            gateway: PeerPods {
                namespace: "bulkhead-system".into(),
                pod_labels: BTreeMap::from([
                    ("app.kubernetes.io/name".into(), "bulkhead".into()),
                    ("app.kubernetes.io/component".into(), "gateway".into()),
                ]),
            },
            dns: PeerPods {
                namespace: "kube-system".into(),
                pod_labels: BTreeMap::from([("k8s-app".into(), "kube-dns".into())]),
            },
            postgres: None,
        }
    }
}

/// Parses `key=value,key=value` label lists given on the command line.
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("`{pair}` is not key=value"))?;
        if k.is_empty() {
            return Err(format!("`{pair}` has an empty key"));
        }
        out.insert(k.to_owned(), v.to_owned());
    }
    if out.is_empty() {
        return Err("at least one key=value label is needed".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_label_lists() {
        let labels = parse_labels("app=gw, tier=edge").unwrap();
        assert_eq!(labels.get("app").map(String::as_str), Some("gw"));
        assert_eq!(labels.len(), 2);
        assert!(parse_labels("").is_err());
        assert!(parse_labels("novalue").is_err());
        assert!(parse_labels("=x").is_err());
    }
}
