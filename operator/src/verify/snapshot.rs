//! The live state `verify` judges, read once with list and get calls only. Everything after this module is pure:
//! a [`Snapshot`] can be read from a cluster or built in a test or a benchmark.

use bulkhead_crds::v1alpha1::{Customer, Tenant};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    ConfigMap, LimitRange, Namespace, Pod, ResourceQuota, Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ListParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;

/// The Service in `default` that fronts the API server.
pub const API_SERVER_SERVICE: &str = "kubernetes";
/// The label EndpointSlices carry with their Service's name.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The gateway's ConfigMap (in the gateway's namespace) and its key, as the chart writes them.
pub const GATEWAY_CONFIG_MAP: &str = "bulkhead-gateway";
/// The key of the gateway's configuration in [`GATEWAY_CONFIG_MAP`].
pub const GATEWAY_CONFIG_KEY: &str = "gateway.yaml";

/// Everything `verify` reads from the cluster.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The cluster's identity: the UID of the `kube-system` namespace (stable for a cluster's life).
    pub cluster_uid: Option<String>,
    /// The API server's version (`v1.34.1`).
    pub server_version: Option<String>,
    /// Every Tenant.
    pub tenants: Vec<Tenant>,
    /// Every Customer.
    pub customers: Vec<Customer>,
    /// Every namespace.
    pub namespaces: Vec<Namespace>,
    /// Every NetworkPolicy, in every namespace: Bulkhead's and anyone else's.
    pub network_policies: Vec<NetworkPolicy>,
    /// Every pod.
    pub pods: Vec<Pod>,
    /// Every Service.
    pub services: Vec<Service>,
    /// The EndpointSlices of the API server's Service.
    pub api_server_endpoints: Vec<EndpointSlice>,
    /// Every Deployment.
    pub deployments: Vec<Deployment>,
    /// Every ResourceQuota.
    pub resource_quotas: Vec<ResourceQuota>,
    /// Every LimitRange.
    pub limit_ranges: Vec<LimitRange>,
    /// Every ServiceAccount.
    pub service_accounts: Vec<ServiceAccount>,
    /// The gateway's configuration (`gateway.yaml` of its ConfigMap), when it was found.
    pub gateway_config: Option<String>,
}

/// Why reading the cluster failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A list or get call failed (often: the credentials lack the verify ClusterRole).
    #[error("reading {what}: {source}")]
    Api {
        /// What was being read.
        what: String,
        /// The API's error.
        #[source]
        source: kube::Error,
    },
}

impl ReadError {
    /// The error's fixed category, for metrics and logs.
    pub fn category(&self) -> &'static str {
        match self {
            ReadError::Api { .. } => "kubernetes_read",
        }
    }
}

/// Every object of kind `K` in the cluster, in pages.
pub async fn list_all<K>(client: &Client, what: &str) -> Result<Vec<K>, ReadError>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    let mut out = Vec::new();
    let mut params = ListParams::default().limit(5000);
    loop {
        let page = api.list(&params).await.map_err(|source| ReadError::Api {
            what: what.to_owned(),
            source,
        })?;
        let next = page.metadata.continue_.clone().filter(|c| !c.is_empty());
        out.extend(page.items);
        match next {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(out),
        }
    }
}

/// Reads the live state. `gateway_namespace` is where the gateway's ConfigMap lives.
pub async fn read(client: &Client, gateway_namespace: &str) -> Result<Snapshot, ReadError> {
    let api_error = |what: &str| {
        let what = what.to_owned();
        move |source| ReadError::Api { what, source }
    };
    let (tenants, customers, namespaces, network_policies, pods, services) = futures::try_join!(
        list_all::<Tenant>(client, "Tenants"),
        list_all::<Customer>(client, "Customers"),
        list_all::<Namespace>(client, "Namespaces"),
        list_all::<NetworkPolicy>(client, "NetworkPolicies"),
        list_all::<Pod>(client, "Pods"),
        list_all::<Service>(client, "Services"),
    )?;
    let (deployments, resource_quotas, limit_ranges, service_accounts) = futures::try_join!(
        list_all::<Deployment>(client, "Deployments"),
        list_all::<ResourceQuota>(client, "ResourceQuotas"),
        list_all::<LimitRange>(client, "LimitRanges"),
        list_all::<ServiceAccount>(client, "ServiceAccounts"),
    )?;
    let api_server_endpoints = Api::<EndpointSlice>::namespaced(client.clone(), "default")
        .list(&ListParams::default().labels(&format!("{SERVICE_NAME_LABEL}={API_SERVER_SERVICE}")))
        .await
        .map_err(api_error("the API server's EndpointSlices"))?
        .items;
    let gateway_config = Api::<ConfigMap>::namespaced(client.clone(), gateway_namespace)
        .get_opt(GATEWAY_CONFIG_MAP)
        .await
        .map_err(api_error("the gateway's ConfigMap"))?
        .and_then(|c| c.data)
        .and_then(|mut d| d.remove(GATEWAY_CONFIG_KEY));
    let cluster_uid = namespaces
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some("kube-system"))
        .and_then(|n| n.metadata.uid.clone());
    let server_version = client.apiserver_version().await.ok().map(|v| v.git_version);
    Ok(Snapshot {
        cluster_uid,
        server_version,
        tenants,
        customers,
        namespaces,
        network_policies,
        pods,
        services,
        api_server_endpoints,
        deployments,
        resource_quotas,
        limit_ranges,
        service_accounts,
        gateway_config,
    })
}
