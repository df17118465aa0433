//! `bench-gateway-cluster`: request throughput and latency through the gateway's Service to a stack pod, beside
//! the same requests sent to the stack's Service directly, in one run on the local cluster with Bulkhead
//! installed by its Helm chart.
//!
//! Both load generators are `bulkhead-stack load` in a pod with the same limits: one in a namespace Bulkhead does
//! not manage (which may reach only the gateway), one in the Tenant's own namespace (which may reach its stack).
//! Prints a table; `--write FILE` also records it in that Markdown file.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bulkhead_crds::v1alpha1::Tenant;
use bulkhead_e2e::suite::deploy::{self, OUTSIDER_NAMESPACE, STACK_PORT, TokenKind};
use bulkhead_e2e::suite::probes::{ProbePod, service_address};
use bulkhead_e2e::suite::{Config, Images, say};
use bulkhead_e2e::{Cluster, local_images};
use clap::Parser;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::Api;
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(
    name = "bench-gateway-cluster",
    about = "Requests through the gateway Service vs the stack Service directly"
)]
struct Args {
    /// Seconds of measured load per path.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Concurrent keep-alive connections per load generator.
    #[arg(long, default_value_t = 16)]
    connections: u32,
    /// Record the table in this Markdown file (between `gateway-cluster-bench` markers).
    #[arg(long)]
    write: Option<PathBuf>,
}

const TENANT: &str = "bench";
const ORG: &str = "org_benchTenant";
const CLIENT: &str = "bench-client";

/// A client pod with room to generate load (the same in both namespaces).
fn client_pod(config: &Config, namespace: &str) -> Value {
    let mut pod = deploy::probe_pod(
        config,
        namespace,
        CLIENT,
        &[("app".to_owned(), CLIENT.to_owned())].into_iter().collect(),
    );
    pod["spec"]["containers"][0]["resources"] = json!({
        "requests": {"cpu": "100m", "memory": "32Mi"},
        "limits": {"cpu": "1", "memory": "256Mi"},
    });
    pod
}

async fn run(args: Args) -> Result<(), String> {
    let err = |e: bulkhead_e2e::HarnessError| e.to_string();
    let archives = local_images::archives(&local_images::default_dir()).map_err(err)?;
    let cluster = Cluster::start().await.map_err(err)?;
    for archive in &archives {
        local_images::import(&cluster, &archive.path).await.map_err(err)?;
    }
    let helm = bulkhead_e2e::helm::binary().map_err(err)?;
    let config = Config {
        kubeconfig: Some(cluster.plane().kubeconfig_path().to_path_buf()),
        context: None,
        helm,
        chart: bulkhead_e2e::helm::chart_dir(),
        previous_chart: None,
        namespace: "bulkhead-system".into(),
        release: "bulkhead".into(),
        images: Images {
            operator: "bulkhead.dev/operator:0.1.0".into(),
            gateway: "bulkhead.dev/gateway:0.1.0".into(),
            stack: "bulkhead.dev/stack:0.1.0".into(),
            pull_policy: "Never".into(),
        },
        postgres: None,
        outside: String::new(),
        probe_timeout: Duration::from_millis(1500),
        sabotage: false,
        admission_policies: true,
    };
    let client = cluster.admin().await.map_err(err)?;
    let installed = deploy::install(&client, &config).await.map_err(err)?;
    for check in &installed.checks {
        say(check.to_string());
    }

    deploy::apply(
        &Api::<Tenant>::all(client.clone()),
        json!({"apiVersion": "bulkhead.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": TENANT},
               "spec": {"orgId": ORG, "quota": {"cpu": "4", "memory": "4Gi", "pods": 10},
                        "stack": {"image": config.images.stack, "port": STACK_PORT, "replicas": 1,
                                  "resources": {"requests": {"cpu": "100m", "memory": "32Mi"},
                                                "limits": {"cpu": "1", "memory": "256Mi"}}}}}),
    )
    .await
    .map_err(err)?;
    deploy::apply(
        &Api::<Namespace>::all(client.clone()),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OUTSIDER_NAMESPACE}}),
    )
    .await
    .map_err(err)?;
    let tenants: Api<Tenant> = Api::all(client.clone());
    let namespace = bulkhead_e2e::wait::until(Duration::from_secs(180), "the Tenant to be Ready", || async {
        let status = tenants.get_opt(TENANT).await.ok().flatten()?.status?;
        let ready = status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        if ready { status.namespace } else { None }
    })
    .await
    .map_err(err)?;
    let mut clients = Vec::new();
    for ns in [OUTSIDER_NAMESPACE, namespace.as_str()] {
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        deploy::apply(&pods, client_pod(&config, ns)).await.map_err(err)?;
        let ip = bulkhead_e2e::wait::pod_ready_ip(&pods, CLIENT, Duration::from_secs(120))
            .await
            .map_err(err)?;
        clients.push(ProbePod {
            namespace: ns.to_owned(),
            pod: CLIENT.into(),
            container: None,
            ip,
        });
    }
    let gateway = service_address(&client, &config.namespace, deploy::GATEWAY, None)
        .await
        .map_err(err)?;
    let direct = service_address(
        &client,
        &namespace,
        bulkhead_operator::pipeline::build::STACK,
        Some(i32::from(STACK_PORT)),
    )
    .await
    .map_err(err)?;
    let token = installed
        .issuer
        .token(TokenKind::Valid, ORG, "bench-user")
        .map_err(err)?;
    let bearer = format!("Authorization: Bearer {token}");
    // The token lives two minutes; a run is far shorter.
    let duration = (args.seconds * 1000).to_string();
    let connections = args.connections.to_string();
    let mut rows = Vec::new();
    for (name, from, target, header) in [
        (
            "through the gateway Service",
            &clients[0],
            gateway.as_str(),
            Some(bearer.as_str()),
        ),
        (
            "to the stack Service directly",
            &clients[1],
            direct.as_str(),
            None,
        ),
    ] {
        let mut load = vec![
            "load",
            target,
            "--connections",
            &connections,
            "--duration-ms",
            &duration,
            "--warmup-ms",
            "1000",
        ];
        if let Some(header) = header {
            load.extend(["--header", header]);
        }
        let (code, lines) = from.run(&client, &load).await.map_err(err)?;
        let line = lines.first().cloned().unwrap_or_default();
        if code != 0 || line["non_2xx"].as_u64() != Some(0) || line["errors"].as_u64() != Some(0) {
            return Err(format!(
                "the load {name} did not go through cleanly (exit {code}): {line}"
            ));
        }
        say(format!("{name}: {line}"));
        rows.push((name, line));
    }

    let mut table = format!(
        "Local one-node cluster (Kubernetes {}), Bulkhead installed by its chart (2 gateway replicas), one Tenant \
         with one stack pod (`bulkhead-stack`, 1 CPU limit). `bulkhead-stack load` in a pod (1 CPU limit) sends \
         `GET /` on {} keep-alive connections for {} s after 1 s of warm-up: from an unmanaged namespace to the \
         gateway's Service with one valid token (so its verification is cached after the first request), then from the Tenant's namespace to its stack's Service. Measured {} \
         on this project's 2-core machine, load generator, gateway and stack sharing the cores.\n\n\
         | path | requests/s | p50 ms | p90 ms | p99 ms | max ms | errors |\n|---|---:|---:|---:|---:|---:|---:|\n",
        bulkhead_e2e::versions::get("KUBERNETES_VERSION").unwrap_or_default(),
        args.connections,
        args.seconds,
        bulkhead_e2e::report::today(),
    );
    for (name, line) in &rows {
        let l = &line["latency_ms"];
        let f = |v: &Value| v.as_f64().map(|x| format!("{x:.2}")).unwrap_or_default();
        table.push_str(&format!(
            "| {name} | {:.0} | {} | {} | {} | {} | {} |\n",
            line["rps"].as_f64().unwrap_or(0.0),
            f(&l["p50"]),
            f(&l["p90"]),
            f(&l["p99"]),
            f(&l["max"]),
            line["errors"].as_u64().unwrap_or(0) + line["non_2xx"].as_u64().unwrap_or(0),
        ));
    }
    println!("\n{table}");
    if let Some(path) = &args.write {
        bulkhead_e2e::report::replace_marked(
            path,
            "gateway-cluster-bench",
            "## Gateway on the local cluster",
            &table,
        )
        .map_err(|e| format!("writing {}: {e}", path.display()))?;
        say(format!("recorded in {}", path.display()));
    }
    drop(cluster);
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bench-gateway-cluster: {err}");
            ExitCode::FAILURE
        }
    }
}
