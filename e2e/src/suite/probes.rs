//! Real connections from real pods: the suite execs `bulkhead-stack probe` in a stack pod of every namespace, in
//! the outsider pod, and in an ephemeral container of a gateway pod (which shares the gateway's network
//! identity), one exec per source probing every destination at once.

use futures::future::try_join_all;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};

use super::Config;
use super::deploy::{self, GATEWAY, OUTSIDER_NAMESPACE, OUTSIDER_POD, STACK_PORT, Topology};
use super::matrix::{Cell, Destination, Matrix, Source, Verdict, expect};
use crate::HarnessError;

/// The ephemeral container the suite adds to a gateway pod.
pub const GATEWAY_PROBE_CONTAINER: &str = "suite-probe";
/// The stack image's binary.
pub const STACK_BINARY: &str = "/bulkhead-stack";

const WAIT: std::time::Duration = std::time::Duration::from_secs(120);

fn api_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Api { what, source }
}

/// A pod the suite runs probes in.
#[derive(Debug, Clone)]
pub struct ProbePod {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub pod: String,
    /// The container to exec in (`None`: the first).
    pub container: Option<String>,
    /// Its IP.
    pub ip: String,
}

impl ProbePod {
    /// Runs the stack binary with `args` in this pod; returns the exit code and the JSON lines it printed.
    pub async fn run(&self, client: &Client, args: &[&str]) -> Result<(i32, Vec<Value>), HarnessError> {
        let mut command = vec![STACK_BINARY];
        command.extend_from_slice(args);
        let (code, out) = crate::exec::exec_in(
            client,
            &self.namespace,
            &self.pod,
            self.container.as_deref(),
            &command,
        )
        .await?;
        let lines = out
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).map_err(|e| {
                    HarnessError::Manifest(format!(
                        "{}/{}: `{}` printed a line that is not JSON ({e}): {l}",
                        self.namespace,
                        self.pod,
                        args.first().copied().unwrap_or_default()
                    ))
                })
            })
            .collect::<Result<Vec<Value>, _>>()?;
        Ok((code, lines))
    }
}

/// The pods and addresses of one run.
#[derive(Debug, Clone)]
pub struct Pods {
    /// One pod per stack, in the topology's order.
    pub stacks: Vec<ProbePod>,
    /// The gateway pod (its ephemeral probe container).
    pub gateway: ProbePod,
    /// The outsider pod.
    pub outsider: ProbePod,
    /// Each stack's Service address (`ClusterIP:port`).
    pub stack_services: Vec<String>,
    /// The API server's Service address.
    pub api_server: String,
    /// Cluster DNS's Service address (TCP).
    pub dns: String,
    /// The gateway Service's address.
    pub gateway_service: String,
}

fn selector_of(deployment: &Deployment) -> String {
    deployment
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The pod labels of the Deployment `name` in `namespace`.
pub async fn deployment_selector(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<String, HarnessError> {
    let deployment = Api::<Deployment>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .map_err(api_error(format!("reading Deployment {namespace}/{name}")))?;
    Ok(selector_of(&deployment))
}

/// The first ready pod of the Deployment `name` in `namespace`, waiting for one.
pub async fn ready_pod_of(client: &Client, namespace: &str, name: &str) -> Result<Pod, HarnessError> {
    let selector = deployment_selector(client, namespace, name).await?;
    crate::wait::until(WAIT, &format!("a ready pod of {namespace}/{name}"), || {
        let selector = selector.clone();
        async move {
            deploy::ready_pods(client, namespace, &selector)
                .await
                .into_iter()
                .next()
        }
    })
    .await
}

/// `ClusterIP:port` of a Service (its first port, or `port` when given).
pub async fn service_address(
    client: &Client,
    namespace: &str,
    name: &str,
    port: Option<i32>,
) -> Result<String, HarnessError> {
    let service = Api::<Service>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .map_err(api_error(format!("reading Service {namespace}/{name}")))?;
    let spec = service.spec.unwrap_or_default();
    let ip = spec
        .cluster_ip
        .filter(|ip| !ip.is_empty() && ip != "None")
        .ok_or_else(|| HarnessError::Manifest(format!("Service {namespace}/{name} has no ClusterIP")))?;
    let port = port
        .or_else(|| spec.ports.as_ref().and_then(|p| p.first()).map(|p| p.port))
        .ok_or_else(|| HarnessError::Manifest(format!("Service {namespace}/{name} has no port")))?;
    Ok(format!("{ip}:{port}"))
}

/// Adds the probe container to a gateway pod (once) and waits until it runs.
async fn gateway_probe(client: &Client, config: &Config) -> Result<ProbePod, HarnessError> {
    let pod = ready_pod_of(client, &config.namespace, GATEWAY).await?;
    let name = deploy::pod_name(&pod);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &config.namespace);
    let present = pod
        .spec
        .as_ref()
        .and_then(|s| s.ephemeral_containers.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.name == GATEWAY_PROBE_CONTAINER));
    if !present {
        let patch = json!({"spec": {"ephemeralContainers": [{
            "name": GATEWAY_PROBE_CONTAINER,
            "image": config.images.stack,
            "imagePullPolicy": config.images.pull_policy,
            // Serve on a port the gateway does not use, so the container stays up to exec into.
            "args": ["serve", "--port", "18080"],
            "securityContext": deploy::restricted_container(),
        }]}});
        pods.patch_subresource(
            "ephemeralcontainers",
            &name,
            &PatchParams::default(),
            &Patch::Strategic(patch),
        )
        .await
        .map_err(api_error(format!(
            "adding a probe container to {}/{name}",
            config.namespace
        )))?;
    }
    let ip = crate::wait::until(
        WAIT,
        &format!("the probe container in {}/{name} to run", config.namespace),
        || {
            let pods = pods.clone();
            let name = name.clone();
            async move {
                let pod = pods.get_opt(&name).await.ok().flatten()?;
                let status = pod.status?;
                let running = status.ephemeral_container_statuses?.iter().any(|c| {
                    c.name == GATEWAY_PROBE_CONTAINER && c.state.as_ref().is_some_and(|s| s.running.is_some())
                });
                if running { status.pod_ip } else { None }
            }
        },
    )
    .await?;
    Ok(ProbePod {
        namespace: config.namespace.clone(),
        pod: name,
        container: Some(GATEWAY_PROBE_CONTAINER.to_owned()),
        ip,
    })
}

/// The ready stack pod of a namespace.
pub async fn stack_pod(client: &Client, namespace: &str) -> Result<ProbePod, HarnessError> {
    let pod = ready_pod_of(client, namespace, bulkhead_operator::pipeline::build::STACK).await?;
    Ok(ProbePod {
        namespace: namespace.to_owned(),
        pod: deploy::pod_name(&pod),
        container: None,
        ip: deploy::pod_ip(&pod).unwrap_or_default(),
    })
}

impl Pods {
    /// Finds (and where needed prepares) every probing pod and every address.
    pub async fn find(client: &Client, config: &Config, topology: &Topology) -> Result<Pods, HarnessError> {
        let mut stacks = Vec::new();
        let mut stack_services = Vec::new();
        for stack in &topology.stacks {
            stacks.push(stack_pod(client, &stack.namespace).await?);
            stack_services.push(
                service_address(
                    client,
                    &stack.namespace,
                    bulkhead_operator::pipeline::build::STACK,
                    Some(i32::from(STACK_PORT)),
                )
                .await?,
            );
        }
        let outsider_ip = crate::wait::pod_ready_ip(
            &Api::<Pod>::namespaced(client.clone(), OUTSIDER_NAMESPACE),
            OUTSIDER_POD,
            WAIT,
        )
        .await?;
        Ok(Pods {
            stacks,
            gateway: gateway_probe(client, config).await?,
            outsider: ProbePod {
                namespace: OUTSIDER_NAMESPACE.into(),
                pod: OUTSIDER_POD.into(),
                container: None,
                ip: outsider_ip,
            },
            stack_services,
            api_server: service_address(client, "default", "kubernetes", None).await?,
            dns: service_address(client, "kube-system", "kube-dns", Some(53)).await?,
            gateway_service: service_address(client, &config.namespace, GATEWAY, None).await?,
        })
    }

    /// The pod a source probes from.
    pub fn source_pod(&self, source: Source) -> &ProbePod {
        match source {
            Source::Stack(i) => &self.stacks[i],
            Source::Gateway => &self.gateway,
            Source::Outsider => &self.outsider,
        }
    }

    /// The address a destination is probed at.
    pub fn target(&self, config: &Config, destination: Destination) -> String {
        match destination {
            Destination::StackService(i) => self.stack_services[i].clone(),
            Destination::StackPod(i) => format!("{}:{STACK_PORT}", self.stacks[i].ip),
            Destination::Outsider => format!("{}:{STACK_PORT}", self.outsider.ip),
            Destination::ApiServer => self.api_server.clone(),
            Destination::Dns => self.dns.clone(),
            Destination::Postgres => config
                .postgres
                .as_ref()
                .map(|p| format!("{}:{}", p.host, p.port))
                .unwrap_or_default(),
            Destination::Outside => config.outside.clone(),
        }
    }
}

/// Probes `targets` from `pod` at once with the suite's probe timeout; returns (result, detail) per target, in
/// order.
pub async fn probe_many(
    client: &Client,
    config: &Config,
    pod: &ProbePod,
    targets: &[String],
) -> Result<Vec<(Verdict, String)>, HarnessError> {
    probe_targets(client, pod, config.probe_timeout, targets).await
}

/// Probes `targets` from `pod` at once, each attempt bounded by `timeout`; returns (result, detail) per target,
/// in order.
pub async fn probe_targets(
    client: &Client,
    pod: &ProbePod,
    timeout: std::time::Duration,
    targets: &[String],
) -> Result<Vec<(Verdict, String)>, HarnessError> {
    let timeout = timeout.as_millis().to_string();
    let mut args = vec!["probe", "--report-only", "--timeout-ms", timeout.as_str()];
    args.extend(targets.iter().map(String::as_str));
    let (_, lines) = pod.run(client, &args).await?;
    if lines.len() != targets.len() {
        return Err(HarnessError::Manifest(format!(
            "probing {} targets from {}/{} printed {} lines",
            targets.len(),
            pod.namespace,
            pod.pod,
            lines.len()
        )));
    }
    let mut out = Vec::new();
    for (line, target) in lines.iter().zip(targets) {
        if let Some(printed) = line["target"].as_str()
            && printed != target
        {
            return Err(HarnessError::Manifest(format!(
                "probe lines out of order: expected {target}, got {printed}"
            )));
        }
        let result = line["result"].as_str().unwrap_or("error");
        let verdict = if result == "connected" {
            Verdict::Allowed
        } else {
            Verdict::Refused
        };
        out.push((
            verdict,
            format!("{result}: {}", line["detail"].as_str().unwrap_or_default()),
        ));
    }
    Ok(out)
}

/// Measures the whole matrix: every source probes every destination, all sources at once.
pub async fn measure(
    client: &Client,
    config: &Config,
    topology: &Topology,
    pods: &Pods,
) -> Result<Matrix, HarnessError> {
    let mut matrix = Matrix {
        stacks: topology.stacks.clone(),
        cells: Vec::new(),
    };
    let sources = matrix.sources();
    let destinations = matrix.destinations();
    let runs = sources.iter().map(|source| {
        let targets: Vec<String> = destinations.iter().map(|d| pods.target(config, *d)).collect();
        let pod = pods.source_pod(*source).clone();
        async move {
            let results = probe_many(client, config, &pod, &targets).await?;
            Ok::<_, HarnessError>((*source, targets, results))
        }
    });
    let mut by_source = try_join_all(runs).await?;
    by_source.sort_by_key(|(source, _, _)| *source);
    for (source, targets, results) in by_source {
        for ((destination, target), (observed, detail)) in destinations.iter().zip(targets).zip(results) {
            matrix.cells.push(Cell {
                source,
                destination: *destination,
                target,
                expected: expect(&topology.stacks, source, *destination),
                observed,
                detail,
            });
        }
    }
    Ok(matrix)
}
