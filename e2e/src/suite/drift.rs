//! Isolation under change: the drift window (a hand-made opening repaired by the operator), the operator down,
//! a Customer deleted with `Retain`, and the sabotage that shows the suite can see a broken contract.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bulkhead_crds::v1alpha1::{Customer, Tenant};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;

use super::agreement;
use super::deploy::{self, Issuer, OPERATOR, STACK_PORT, TokenKind, Topology};
use super::matrix::{Destination, Matrix, Source, Verdict};
use super::probes::{self, Pods, ProbePod, deployment_selector};
use super::{Check, Config, say};
use crate::HarnessError;

/// The operator's default-deny policy.
const DEFAULT_DENY: &str = bulkhead_operator::pipeline::build::policy::DEFAULT_DENY;
/// The hand-made policies the suite adds.
const HAND_MADE: &str = "suite-hand-made-open";
/// The sabotage policy.
const SABOTAGE: &str = "suite-sabotage-open";
/// The hand-made policies that open one Tenant to another while the operator is down.
const HOLE: &str = "suite-hole";
/// A bound that makes a broken repair fail the run rather than hang it.
const REPAIR_BOUND: Duration = Duration::from_secs(60);

fn api_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Api { what, source }
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A policy in `namespace` opening every pod to (egress) or from (ingress) the namespace `peer` (all
/// namespaces when `None`), all ports.
fn opening(
    name: &str,
    namespace: &str,
    peer: Option<&str>,
    ingress: bool,
    egress: bool,
) -> serde_json::Value {
    let peers = match peer {
        Some(peer) => json!([{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": peer}}}]),
        None => json!([]),
    };
    let mut types = Vec::new();
    let mut spec = json!({"podSelector": {}});
    if ingress {
        types.push("Ingress");
        spec["ingress"] = if peer.is_some() {
            json!([{"from": peers}])
        } else {
            json!([{}])
        };
    }
    if egress {
        types.push("Egress");
        spec["egress"] = if peer.is_some() {
            json!([{"to": peers}])
        } else {
            json!([{}])
        };
    }
    spec["policyTypes"] = json!(types);
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    })
}

async fn delete_policy(client: &Client, namespace: &str, name: &str) -> Result<(), HarnessError> {
    match Api::<NetworkPolicy>::namespaced(client.clone(), namespace)
        .delete(name, &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(HarnessError::Api {
            what: format!("deleting NetworkPolicy {namespace}/{name}"),
            source,
        }),
    }
}

async fn policy_exists(client: &Client, namespace: &str, name: &str) -> bool {
    Api::<NetworkPolicy>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .ok()
        .flatten()
        .is_some()
}

/// Repeats the probe from `pod` to `target` until it `until`s (`connected` or `refused`); returns the epoch ms
/// of the first match, or `None` when `max` passed first, and the number of attempts.
async fn repeat_until(
    client: &Client,
    pod: &ProbePod,
    target: &str,
    until: &str,
    max: Duration,
) -> Result<(Option<u64>, u64), HarnessError> {
    let max_ms = max.as_millis().to_string();
    let (_, lines) = pod
        .run(
            client,
            &[
                "probe",
                target,
                "--timeout-ms",
                "200",
                "--repeat-until",
                until,
                "--interval-ms",
                "20",
                "--max-ms",
                &max_ms,
            ],
        )
        .await?;
    let summary = lines.iter().find(|l| l["summary"] == true).ok_or_else(|| {
        HarnessError::Manifest(format!(
            "no summary line from the probe in {}/{}",
            pod.namespace, pod.pod
        ))
    })?;
    Ok((
        summary["first_match_at_ms"].as_u64(),
        summary["attempts"].as_u64().unwrap_or(0),
    ))
}

/// The drift window: `bulkhead-default-deny` deleted in tenant A's namespace and hand-made policies that open A
/// to tenant B added (an ingress one in A's namespace, an egress one in B's), with the operator running. Measured:
/// when the operator has put the policies back, and how long a connection from B's pod to A's stays possible.
/// First, that the chart's admission policy refuses the same change to a cluster admin (`client`); the changes are
/// then made by `hands`, in the break-glass group, as whatever gets past the policies would be. Installed without
/// the policies, the API server must accept the change from the admin, who then makes it: the operator's repair
/// is the only line left, and the window shows it holding alone.
pub async fn window(
    client: &Client,
    hands: &Client,
    config: &Config,
    topology: &Topology,
    pods: &Pods,
) -> Result<Vec<Check>, HarnessError> {
    let a = 0;
    let b = topology
        .stacks
        .iter()
        .position(|s| s.tenant != topology.stacks[a].tenant && s.customer.is_none())
        .ok_or_else(|| HarnessError::Manifest("the topology has no second Tenant".into()))?;
    let (ns_a, ns_b) = (
        topology.stacks[a].namespace.clone(),
        topology.stacks[b].namespace.clone(),
    );
    let target = format!("{}:{STACK_PORT}", pods.stacks[a].ip);
    say(format!(
        "\n== Drift window: {DEFAULT_DENY} deleted in {ns_a}, {ns_a} opened to {ns_b} by hand, the operator running"
    ));

    // The probe loop runs from B's pod while the change is made: it ends at the first connection, if the
    // dataplane ever applies the opening before the operator repairs it.
    let opened = {
        let pod = pods.stacks[b].clone();
        let target = target.clone();
        let client = client.clone();
        tokio::spawn(async move {
            repeat_until(&client, &pod, &target, "connected", Duration::from_secs(6)).await
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;

    // First line: the API server refuses the change to a cluster admin outside the break-glass group.
    let refused = Api::<NetworkPolicy>::namespaced(client.clone(), &ns_a)
        .delete(
            DEFAULT_DENY,
            &DeleteParams {
                dry_run: true,
                ..DeleteParams::default()
            },
        )
        .await;
    let refusal = refused
        .as_ref()
        .err()
        .and_then(|e| crate::admission::refusal(e, crate::admission::NETWORK_POLICIES));
    let admission_check = if config.admission_policies {
        Check::new(
            "the API server refuses a cluster admin's deletion of the default deny",
            refusal.is_some(),
            match (&refusal, &refused) {
                (Some((code, _)), _) => format!(
                    "{code} from {}; the changes below are made in the break-glass group",
                    crate::admission::NETWORK_POLICIES
                ),
                (None, Ok(_)) => "ACCEPTED (dry run)".to_owned(),
                (None, Err(e)) => format!("refused, but not by {}: {e}", crate::admission::NETWORK_POLICIES),
            },
        )
    } else {
        Check::new(
            "without the admission policies, the API server accepts a cluster admin's deletion of the default deny",
            refused.is_ok(),
            match &refused {
                Ok(_) => "accepted (dry run); the changes below are made by the cluster admin".to_owned(),
                Err(e) => format!("REFUSED: {e}"),
            },
        )
    };

    // Second line: made anyway (break-glass, or anyone without the policies), the operator repairs it.
    let policies_a: Api<NetworkPolicy> = Api::namespaced(hands.clone(), &ns_a);
    let policies_b: Api<NetworkPolicy> = Api::namespaced(hands.clone(), &ns_b);
    let changed_at = epoch_ms();
    let started = Instant::now();
    delete_policy(hands, &ns_a, DEFAULT_DENY).await?;
    deploy::apply(&policies_a, opening(HAND_MADE, &ns_a, Some(&ns_b), true, false)).await?;
    deploy::apply(&policies_b, opening(HAND_MADE, &ns_b, Some(&ns_a), false, true)).await?;
    let change_took = started.elapsed();

    // The API view: default deny back, hand-made policies gone.
    let repaired = crate::wait::until(REPAIR_BOUND, "the operator to repair the policies", || async {
        let back = policy_exists(client, &ns_a, DEFAULT_DENY).await;
        let gone =
            !policy_exists(client, &ns_a, HAND_MADE).await && !policy_exists(client, &ns_b, HAND_MADE).await;
        (back && gone).then(Instant::now)
    })
    .await;
    let repaired_after = repaired.as_ref().ok().map(|at| at.duration_since(started));

    let (first_open, open_attempts) = opened
        .await
        .map_err(|e| HarnessError::Manifest(format!("the probe loop failed: {e}")))??;
    // From the first connection (or from the change, when none was made) to the first refusal.
    let (closed_at, _) = repeat_until(
        client,
        &pods.stacks[b],
        &target,
        "refused",
        Duration::from_secs(30),
    )
    .await?;
    let window_ms = closed_at.map(|at| at.saturating_sub(changed_at));

    let mut checks = vec![
        admission_check,
        Check::new(
            "the operator repairs the policies",
            repaired.is_ok(),
            match repaired_after {
                Some(after) => format!(
                    "{DEFAULT_DENY} back and the hand-made policies deleted {} ms after the change (the change itself took {} ms)",
                    after.as_millis(),
                    change_took.as_millis()
                ),
                None => format!("not repaired within {} s", REPAIR_BOUND.as_secs()),
            },
        ),
    ];
    let opened_text = match first_open {
        Some(at) => format!(
            "a connection from {ns_b} to {ns_a} was made {} ms after the change",
            at.saturating_sub(changed_at)
        ),
        None => format!("no connection from {ns_b} to {ns_a} was made ({open_attempts} attempts)"),
    };
    checks.push(Check::new(
        "the cross-tenant connection is refused again",
        window_ms.is_some(),
        match window_ms {
            Some(ms) => format!(
                "{opened_text}; first refused connection {ms} ms after the change (target: under 2000 ms{})",
                if ms < 2000 { ", met" } else { ", MISSED" }
            ),
            None => format!("{opened_text}; still open after 30 s"),
        },
    ));
    Ok(checks)
}

async fn scale(client: &Client, config: &Config, name: &str, replicas: i32) -> Result<(), HarnessError> {
    Api::<Deployment>::namespaced(client.clone(), &config.namespace)
        .patch_scale(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .map(drop)
        .map_err(api_error(format!("scaling {name} to {replicas}")))
}

async fn operator_replicas(client: &Client, config: &Config) -> Result<i32, HarnessError> {
    let deployment = Api::<Deployment>::namespaced(client.clone(), &config.namespace)
        .get(OPERATOR)
        .await
        .map_err(api_error("reading the operator's Deployment"))?;
    Ok(deployment.spec.and_then(|s| s.replicas).unwrap_or(1))
}

/// Scales the operator to zero and waits until none of its pods is left.
async fn stop_operator(client: &Client, config: &Config) -> Result<i32, HarnessError> {
    let replicas = operator_replicas(client, config).await?;
    scale(client, config, OPERATOR, 0).await?;
    let selector = deployment_selector(client, &config.namespace, OPERATOR).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &config.namespace);
    crate::wait::until(REPAIR_BOUND, "the operator's pods to be gone", || async {
        let list = pods
            .list(&kube::api::ListParams::default().labels(&selector))
            .await
            .ok()?;
        list.items.is_empty().then_some(())
    })
    .await?;
    Ok(replicas)
}

async fn start_operator(client: &Client, config: &Config, replicas: i32) -> Result<(), HarnessError> {
    scale(client, config, OPERATOR, replicas.max(1)).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &config.namespace);
    crate::wait::until(REPAIR_BOUND * 2, "the operator to be available again", || async {
        let status = deployments.get(OPERATOR).await.ok()?.status?;
        (status.available_replicas.unwrap_or(0) >= replicas.max(1)).then_some(())
    })
    .await
}

/// The operator stopped: the matrix is measured again, every namespace keeps its default deny, and a Tenant
/// created meanwhile gets nothing (no namespace, and its org is not routed). The operator is started again after.
pub async fn operator_down(
    client: &Client,
    hands: &Client,
    config: &Config,
    topology: &Topology,
    pods: &Pods,
    issuer: &Issuer,
) -> Result<(Vec<Check>, Matrix), HarnessError> {
    let replicas = stop_operator(client, config).await?;
    let mut checks = vec![Check::new(
        "the operator is stopped",
        true,
        format!("scaled from {replicas} to 0"),
    )];
    let matrix = probes::measure(client, config, topology, pods).await?;
    let mut missing = Vec::new();
    for stack in &topology.stacks {
        if !policy_exists(client, &stack.namespace, DEFAULT_DENY).await {
            missing.push(stack.namespace.clone());
        }
    }
    checks.push(Check::new(
        "every namespace keeps its default deny",
        missing.is_empty(),
        if missing.is_empty() {
            format!("{} namespaces", topology.stacks.len())
        } else {
            format!("missing in {}", missing.join(", "))
        },
    ));

    // A Tenant made while nobody provisions it: nothing may open for it.
    let tenants: Api<Tenant> = Api::all(client.clone());
    let late = "suite-late";
    let org = "org_suiteLate";
    deploy::apply(
        &tenants,
        json!({"apiVersion": "bulkhead.dev/v1alpha1", "kind": "Tenant", "metadata": {"name": late},
               "spec": {"orgId": org, "stack": {"image": config.images.stack, "port": STACK_PORT}}}),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let namespace = Api::<Namespace>::all(client.clone())
        .get_opt(&format!("bk-{late}"))
        .await
        .map_err(api_error("reading a namespace"))?;
    let token = issuer.token(TokenKind::Valid, org, "suite-user")?;
    let status = gateway_status(client, config, pods, &token).await?;
    checks.push(Check::new(
        "a Tenant created while the operator is down gets nothing",
        namespace.is_none() && (400..500).contains(&status.0) && status.1.is_none(),
        format!(
            "namespace bk-{late}: {}; its token: {} without reaching a pod",
            if namespace.is_some() { "EXISTS" } else { "none" },
            status.0
        ),
    ));
    tenants
        .delete(late, &DeleteParams::default())
        .await
        .map_err(api_error(format!("deleting Tenant {late}")))?;
    checks.extend(hole(client, hands, config, topology, pods).await?);
    start_operator(client, config, replicas).await?;
    Ok((checks, matrix))
}

/// While nobody repairs it, a hand-made pair of policies lets the second Tenant's stack reach the first's: the
/// probes and `verify` must both show the hole, and agree on every cell; then the hole is closed by hand.
async fn hole(
    client: &Client,
    hands: &Client,
    config: &Config,
    topology: &Topology,
    pods: &Pods,
) -> Result<Vec<Check>, HarnessError> {
    let a = &topology.stacks[0];
    let b_index = topology
        .stacks
        .iter()
        .position(|s| s.tenant != a.tenant)
        .ok_or_else(|| HarnessError::Manifest("the topology has no second Tenant".into()))?;
    let b = &topology.stacks[b_index];
    let api = |ns: &str| Api::<NetworkPolicy>::namespaced(hands.clone(), ns);
    deploy::apply(
        &api(&b.namespace),
        opening(HOLE, &b.namespace, Some(&a.namespace), false, true),
    )
    .await?;
    deploy::apply(
        &api(&a.namespace),
        opening(HOLE, &a.namespace, Some(&b.namespace), true, false),
    )
    .await?;
    let opened = cross_tenant_until(client, topology, pods, "connected")
        .await?
        .is_some();
    let probed = probes::measure(client, config, topology, pods).await?;
    let report = agreement::verify(client, config).await?;
    let seen = probed.cells.iter().any(|c| {
        c.source == Source::Stack(b_index)
            && c.destination == Destination::StackPod(0)
            && c.observed == Verdict::Allowed
    });
    let checks = vec![
        Check::new(
            "the probes see a hand-made hole from one Tenant to another",
            opened && seen,
            format!(
                "{} -> {}: {}",
                b.namespace,
                a.namespace,
                if seen { "connected" } else { "REFUSED" }
            ),
        ),
        agreement::verdict(
            "verify fails, naming the hole",
            &report,
            false,
            &[
                &format!("network.reachability {}", b.namespace),
                "tenant to other tenant",
            ],
        ),
        agreement::agreement(
            "verify's matrix equals the probed one, with the hole",
            &probed,
            &report.matrix,
        ),
    ];
    delete_policy(hands, &b.namespace, HOLE).await?;
    delete_policy(hands, &a.namespace, HOLE).await?;
    cross_tenant_until(client, topology, pods, "refused")
        .await?
        .ok_or_else(|| {
            HarnessError::Manifest("the hole did not close within 30 s of its policies' deletion".into())
        })?;
    Ok(checks)
}

/// Sends one request with `token` to the gateway from the outsider pod; returns its status and the namespace of
/// the pod that answered, if one did.
async fn gateway_status(
    client: &Client,
    config: &Config,
    pods: &Pods,
    token: &str,
) -> Result<(u64, Option<String>), HarnessError> {
    let timeout = (config.probe_timeout.as_millis() * 3).to_string();
    let header = format!("Authorization: Bearer {token}");
    let (_, lines) = pods
        .outsider
        .run(
            client,
            &[
                "probe",
                "--report-only",
                "--timeout-ms",
                &timeout,
                "--http",
                "--header",
                &header,
                &pods.gateway_service,
            ],
        )
        .await?;
    let line = lines.first().cloned().unwrap_or_default();
    Ok((
        line["status"].as_u64().unwrap_or(0),
        line["answer"]["namespace"].as_str().map(str::to_owned),
    ))
}

/// The Customer with `Retain` is deleted: its namespace stays with its policies and its stack scaled to zero; a
/// pod started there stands in for the stack (same labels, so its Service selects it) and the matrix is measured
/// again; its org is no longer routed.
pub async fn retained(
    client: &Client,
    config: &Config,
    topology: &Topology,
    pods: &Pods,
    issuer: &Issuer,
) -> Result<(Vec<Check>, Matrix), HarnessError> {
    let i = topology
        .retained()
        .ok_or_else(|| HarnessError::Manifest("the topology has no Retained Customer".into()))?;
    let subject = &topology.subjects[i];
    let namespace = topology.stacks[i].namespace.clone();
    say(format!(
        "\n== Retained deletion: Customer {} ({namespace})",
        subject.name
    ));
    let customers: Api<Customer> = Api::all(client.clone());
    customers
        .delete(&subject.name, &DeleteParams::default())
        .await
        .map_err(api_error(format!("deleting Customer {}", subject.name)))?;
    crate::wait::until(
        REPAIR_BOUND * 2,
        &format!("Customer {} to be gone", subject.name),
        || async {
            customers
                .get_opt(&subject.name)
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await?;
    let mut checks = Vec::new();
    let ns_left = Api::<Namespace>::all(client.clone())
        .get_opt(&namespace)
        .await
        .map_err(api_error("reading a namespace"))?
        .is_some();
    let deny_left = policy_exists(client, &namespace, DEFAULT_DENY).await;
    checks.push(Check::new(
        "the retained namespace stays, with its policies",
        ns_left && deny_left,
        format!(
            "namespace {namespace}: {}; {DEFAULT_DENY}: {}",
            if ns_left { "kept" } else { "GONE" },
            if deny_left { "kept" } else { "GONE" }
        ),
    ));

    let selector = deployment_selector(client, &namespace, bulkhead_operator::pipeline::build::STACK).await?;
    let labels = selector
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let name = "suite-retained-probe";
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    deploy::apply(&pod_api, deploy::probe_pod(config, &namespace, name, &labels)).await?;
    let ip = crate::wait::pod_ready_ip(&pod_api, name, Duration::from_secs(120)).await?;
    // Ready is not yet routed: wait until the Service sends connections to the new pod.
    let standing_in = ProbePod {
        namespace: namespace.clone(),
        pod: name.into(),
        container: None,
        ip: ip.clone(),
    };
    let (routed, _) = repeat_until(
        client,
        &standing_in,
        &pods.stack_services[i],
        "connected",
        Duration::from_secs(60),
    )
    .await?;
    if routed.is_none() {
        return Err(HarnessError::Manifest(format!(
            "the Service in {namespace} did not route to {name} within 60 s"
        )));
    }
    let mut with_probe = pods.clone();
    with_probe.stacks[i] = ProbePod {
        namespace: namespace.clone(),
        pod: name.into(),
        container: None,
        ip,
    };
    let matrix = probes::measure(client, config, topology, &with_probe).await?;

    let token = issuer.token(TokenKind::Valid, &subject.org, "suite-user")?;
    let (status, answered) = gateway_status(client, config, pods, &token).await?;
    checks.push(Check::new(
        "the retained Customer's org is no longer routed",
        (400..500).contains(&status) && answered.is_none(),
        format!(
            "{status}, {}",
            answered
                .map(|ns| format!("answered by {ns}"))
                .unwrap_or("no pod reached".into())
        ),
    ));
    Ok((checks, matrix))
}

/// Stops the operator, deletes every managed namespace's default deny and adds a policy opening all of it (as
/// `hands`, in the break-glass group the chart's admission policies let through).
pub async fn sabotage(
    client: &Client,
    hands: &Client,
    config: &Config,
    topology: &Topology,
    pods: &Pods,
) -> Result<(), HarnessError> {
    stop_operator(client, config).await?;
    for stack in &topology.stacks {
        delete_policy(hands, &stack.namespace, DEFAULT_DENY).await?;
        let api: Api<NetworkPolicy> = Api::namespaced(hands.clone(), &stack.namespace);
        deploy::apply(&api, opening(SABOTAGE, &stack.namespace, None, true, true)).await?;
    }
    // Wait until the dataplane has opened everywhere: every stack reaches every other stack's pod. The policies
    // of one namespace can take effect a little later than another's, and the matrix measured next must show the
    // whole sabotage, not a moment of it.
    for (t, target) in pods.stacks.iter().enumerate() {
        let address = format!("{}:{STACK_PORT}", target.ip);
        for (s, source) in pods.stacks.iter().enumerate() {
            if s == t {
                continue;
            }
            let (opened, _) =
                repeat_until(client, source, &address, "connected", Duration::from_secs(30)).await?;
            if opened.is_none() {
                return Err(HarnessError::Manifest(format!(
                    "the sabotage did not open {} to {} within 30 s",
                    topology.stacks[t].namespace, topology.stacks[s].namespace
                )));
            }
        }
    }
    Ok(())
}

/// Probes from the second Tenant's stack pod to the first's until the outcome is `until` (at most 30 s).
async fn cross_tenant_until(
    client: &Client,
    topology: &Topology,
    pods: &Pods,
    until: &str,
) -> Result<Option<()>, HarnessError> {
    let b = topology
        .stacks
        .iter()
        .position(|s| s.tenant != topology.stacks[0].tenant)
        .ok_or_else(|| HarnessError::Manifest("the topology has no second Tenant".into()))?;
    let target = format!("{}:{STACK_PORT}", pods.stacks[0].ip);
    let (matched, _) = repeat_until(client, &pods.stacks[b], &target, until, Duration::from_secs(30)).await?;
    Ok(matched.map(drop))
}

/// Starts the operator again and waits until it has removed the sabotage and isolation is back.
pub async fn restore(
    client: &Client,
    config: &Config,
    topology: &Topology,
    pods: &Pods,
) -> Result<(), HarnessError> {
    let replicas = operator_replicas(client, config).await?;
    start_operator(client, config, if replicas == 0 { 2 } else { replicas }).await?;
    for stack in &topology.stacks {
        let namespace = stack.namespace.clone();
        crate::wait::until(
            REPAIR_BOUND,
            &format!("the operator to repair {namespace}"),
            || async {
                (policy_exists(client, &namespace, DEFAULT_DENY).await
                    && !policy_exists(client, &namespace, SABOTAGE).await)
                    .then_some(())
            },
        )
        .await?;
    }
    cross_tenant_until(client, topology, pods, "refused")
        .await?
        .ok_or_else(|| {
            HarnessError::Manifest("isolation did not come back within 30 s of the operator's restart".into())
        })?;
    say("The operator is back and has repaired every namespace; isolation holds again.");
    Ok(())
}
