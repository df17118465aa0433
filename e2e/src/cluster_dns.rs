//! Cluster DNS for the local cluster: `e2e/cluster/coredns.yaml` with the pinned image and the DNS Service
//! address filled in.

use kube::Client;

use crate::{HarnessError, apply, cluster, versions};

const MANIFEST: &str = include_str!("../cluster/coredns.yaml");

/// Applies CoreDNS's ServiceAccount, RBAC, Corefile, Deployment and Service.
pub async fn install(client: &Client) -> Result<(), HarnessError> {
    let text = MANIFEST
        .replace("${COREDNS_IMAGE}", &versions::get("COREDNS_IMAGE")?)
        .replace("${DNS_SERVICE_IP}", &cluster::DNS_SERVICE_IP.to_string());
    apply::apply_texts(client, &[("e2e/cluster/coredns.yaml".into(), text)]).await?;
    Ok(())
}
