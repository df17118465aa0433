//! The database and the gateway, end to end, from inside the cluster.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Client;
use kube::api::{Api, ListParams, LogParams};
use serde_json::Value;

use super::deploy::{GATEWAY, Issuer, TokenKind, Topology};
use super::probes::{Pods, ProbePod, deployment_selector};
use super::{Check, Config, sha256_hex};
use crate::HarnessError;

/// The credentials Secret the operator writes in every namespace with a database.
const DATABASE_SECRET: &str = "bulkhead-database";

/// Where a stack's data lives, from its credentials Secret (never the password).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Location {
    database: String,
    schema: String,
}

async fn location(client: &Client, namespace: &str) -> Result<Location, HarnessError> {
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get(DATABASE_SECRET)
        .await
        .map_err(|source| HarnessError::Api {
            what: format!("reading Secret {namespace}/{DATABASE_SECRET}"),
            source,
        })?;
    let data = secret.data.unwrap_or_default();
    let text = |key: &str| {
        data.get(key)
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
            .unwrap_or_default()
    };
    Ok(Location {
        database: text("database"),
        schema: text("schema"),
    })
}

/// What one stack tries against another: the other's schema when both share a database, else the other's
/// database.
fn attempts(own: &Location, others: &[(String, Location)]) -> Vec<(String, String, String)> {
    others
        .iter()
        .map(|(label, other)| {
            if other.database == own.database {
                (label.clone(), "--other-schema".to_owned(), other.schema.clone())
            } else {
                (
                    label.clone(),
                    "--other-database".to_owned(),
                    other.database.clone(),
                )
            }
        })
        .collect()
}

/// Each stack's `DATABASE_URL` works from its own pod (a table is created, written and read in its own schema)
/// and fails against every other stack's schema or database.
pub async fn database(client: &Client, topology: &Topology, pods: &Pods) -> Result<Vec<Check>, HarnessError> {
    let mut locations = Vec::new();
    for stack in &topology.stacks {
        locations.push((stack.label.clone(), location(client, &stack.namespace).await?));
    }
    let mut checks = Vec::new();
    for (i, stack) in topology.stacks.iter().enumerate() {
        let own = &locations[i].1;
        let others: Vec<(String, Location)> = locations
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, l)| l.clone())
            .collect();
        let tries = attempts(own, &others);
        let mut args: Vec<String> = vec!["db".into(), "--own".into()];
        for (_, flag, name) in &tries {
            args.push(flag.clone());
            args.push(name.clone());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, lines) = pods.stacks[i].run(client, &args).await?;
        let own_line = lines.iter().find(|l| l["check"] == "own");
        checks.push(Check::new(
            format!("{} uses its own database", stack.label),
            code == 0 && own_line.is_some_and(|l| l["ok"] == true),
            match own_line {
                Some(l) => format!(
                    "database {}, schema {}: {}",
                    own.database,
                    l["schema"].as_str().unwrap_or(&own.schema),
                    if l["ok"] == true {
                        "created, wrote and read a table".to_owned()
                    } else {
                        describe_failure(l)
                    }
                ),
                None => format!("exit {code}, no `own` line"),
            },
        ));
        let mut refused = Vec::new();
        let mut reached = Vec::new();
        for (label, flag, name) in &tries {
            let kind = if flag == "--other-schema" {
                "schema"
            } else {
                "database"
            };
            let line = lines
                .iter()
                .find(|l| l[kind].as_str() == Some(name.as_str()) && l["check"] != "own");
            match line {
                Some(l) if l["ok"] == false => {
                    refused.push(format!("{label} ({kind} {name}: {})", describe_failure(l)))
                }
                Some(_) => reached.push(format!("{label} ({kind} {name})")),
                None => reached.push(format!("{label} ({kind} {name}: not tried)")),
            }
        }
        checks.push(Check::new(
            format!("{} cannot use any other stack's data", stack.label),
            reached.is_empty() && refused.len() == tries.len(),
            if reached.is_empty() {
                format!("refused: {}", refused.join(", "))
            } else {
                format!("REACHED: {}", reached.join(", "))
            },
        ));
    }
    Ok(checks)
}

fn describe_failure(line: &Value) -> String {
    format!(
        "{} {}",
        line["sqlstate"].as_str().unwrap_or("-"),
        line["message"].as_str().unwrap_or_default()
    )
    .trim()
    .to_owned()
}

/// One request to the gateway and what it must come to.
struct Request {
    name: String,
    path: String,
    headers: Vec<String>,
    token_sha256: Option<String>,
    /// The namespace that must answer, or `None` when no pod may answer.
    answered_by: Option<String>,
    /// Identity headers the answering pod must see, with their values.
    identity: Vec<(&'static str, String)>,
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

/// Every org's token is answered by a pod of that org's namespace only; forged, expired and other-issuer tokens,
/// an unknown org and no token never reach a pod; spoofed identity headers never reach a pod; and each of these
/// decisions has its audit line.
pub async fn gateway(
    client: &Client,
    config: &Config,
    topology: &Topology,
    pods: &Pods,
    issuer: &Issuer,
) -> Result<Vec<Check>, HarnessError> {
    let run = std::process::id();
    let mut requests = Vec::new();
    for (stack, subject) in topology.stacks.iter().zip(&topology.subjects) {
        let token = issuer.token(TokenKind::Valid, &subject.org, "suite-user")?;
        requests.push(Request {
            name: format!("{}'s token", subject.org),
            path: format!("/suite/{run}/allow/{}", stack.label),
            headers: vec![bearer(&token)],
            token_sha256: Some(sha256_hex(&token)),
            answered_by: Some(stack.namespace.clone()),
            identity: vec![
                ("x-bulkhead-org", subject.org.clone()),
                ("x-bulkhead-tenant", stack.tenant.clone()),
                ("x-bulkhead-subject", "suite-user".into()),
            ],
        });
    }
    let (a, b) = (&topology.subjects[0], &topology.stacks[topology.stacks.len() / 2]);
    for (kind, label) in [
        (TokenKind::Forged, "forged"),
        (TokenKind::Expired, "expired"),
        (TokenKind::OtherIssuer, "other-issuer"),
    ] {
        let token = issuer.token(kind, &a.org, "suite-user")?;
        requests.push(Request {
            name: format!("a {label} token for {}", a.org),
            path: format!("/suite/{run}/deny/{label}"),
            headers: vec![bearer(&token)],
            token_sha256: Some(sha256_hex(&token)),
            answered_by: None,
            identity: Vec::new(),
        });
    }
    let unknown = issuer.token(TokenKind::Valid, "org_suiteNobody", "suite-user")?;
    requests.push(Request {
        name: "a valid token for an org no Tenant claims".into(),
        path: format!("/suite/{run}/deny/unknown-org"),
        headers: vec![bearer(&unknown)],
        token_sha256: Some(sha256_hex(&unknown)),
        answered_by: None,
        identity: Vec::new(),
    });
    requests.push(Request {
        name: "no token, identity headers naming a Tenant".into(),
        path: format!("/suite/{run}/deny/no-token"),
        headers: vec![
            format!("X-Bulkhead-Org: {}", a.org),
            format!("X-Bulkhead-Tenant: {}", topology.stacks[0].tenant),
        ],
        token_sha256: None,
        answered_by: None,
        identity: Vec::new(),
    });
    let token = issuer.token(TokenKind::Valid, &a.org, "suite-user")?;
    requests.push(Request {
        name: format!(
            "{}'s token with spoofed identity headers naming {}",
            a.org, b.tenant
        ),
        path: format!("/suite/{run}/allow/spoofed"),
        headers: vec![
            bearer(&token),
            format!(
                "X-Bulkhead-Org: {}",
                topology.subjects[topology.stacks.len() / 2].org
            ),
            format!("X-Bulkhead-Tenant: {}", b.tenant),
            format!("x_bulkhead_customer: {}", b.customer.clone().unwrap_or_default()),
            "X-Bulkhead-Subject: admin".into(),
            format!("X-Forwarded-Host: stack.{}.svc", b.namespace),
        ],
        token_sha256: Some(sha256_hex(&token)),
        answered_by: Some(topology.stacks[0].namespace.clone()),
        identity: vec![
            ("x-bulkhead-org", a.org.clone()),
            ("x-bulkhead-tenant", topology.stacks[0].tenant.clone()),
            ("x-bulkhead-subject", "suite-user".into()),
        ],
    });

    let mut checks = Vec::new();
    for request in &requests {
        checks.push(send(client, config, &pods.outsider, &pods.gateway_service, request).await?);
    }
    checks.extend(audit(client, config, &requests).await?);
    Ok(checks)
}

async fn send(
    client: &Client,
    config: &Config,
    from: &ProbePod,
    gateway: &str,
    request: &Request,
) -> Result<Check, HarnessError> {
    let timeout = (config.probe_timeout.as_millis() * 3).to_string();
    let mut args: Vec<&str> = vec![
        "probe",
        "--report-only",
        "--timeout-ms",
        &timeout,
        "--http",
        "--path",
        &request.path,
    ];
    for header in &request.headers {
        args.push("--header");
        args.push(header);
    }
    args.push(gateway);
    let (_, lines) = from.run(client, &args).await?;
    let line = lines.first().cloned().unwrap_or_default();
    let status = line["status"].as_u64().unwrap_or(0);
    let answer = &line["answer"];
    let answered_in = answer["namespace"].as_str();
    let check = match &request.answered_by {
        Some(namespace) => {
            let headers = &answer["headers"];
            let wrong: Vec<String> = request
                .identity
                .iter()
                .filter(|(name, value)| header_value(headers, name).as_deref() != Some(value.as_str()))
                .map(|(name, value)| {
                    format!(
                        "{name} is {:?}, not {value:?}",
                        header_value(headers, name).unwrap_or_default()
                    )
                })
                .collect();
            let spoof_seen = header_value(headers, "x_bulkhead_customer").is_some();
            Check::new(
                format!("{} reaches its own namespace only", request.name),
                status == 200 && answered_in == Some(namespace.as_str()) && wrong.is_empty() && !spoof_seen,
                format!(
                    "{status}, answered by {}/{}{}{}",
                    answered_in.unwrap_or("-"),
                    answer["pod"].as_str().unwrap_or("-"),
                    if wrong.is_empty() {
                        ", identity headers set by the gateway".to_owned()
                    } else {
                        format!("; {}", wrong.join("; "))
                    },
                    if spoof_seen {
                        "; a spoofed header reached the pod"
                    } else {
                        ""
                    }
                ),
            )
        }
        None => Check::new(
            format!("{} never reaches a pod", request.name),
            (400..500).contains(&status) && answered_in.is_none(),
            format!(
                "{status} {} ({})",
                answer["gate"].as_str().unwrap_or("-"),
                answer["reason"].as_str().unwrap_or("-")
            ),
        ),
    };
    Ok(check)
}

fn header_value(headers: &Value, name: &str) -> Option<String> {
    let object = headers.as_object()?;
    object
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| match v {
            Value::String(s) => Some(s.clone()),
            Value::Array(items) => items.first().and_then(Value::as_str).map(str::to_owned),
            _ => None,
        })
}

/// Every request above has exactly one audit line in the gateway pods' output, with the right decision.
async fn audit(client: &Client, config: &Config, requests: &[Request]) -> Result<Vec<Check>, HarnessError> {
    let selector = deployment_selector(client, &config.namespace, GATEWAY).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &config.namespace);
    let mut lines: Vec<Value> = Vec::new();
    // Audit lines are written as the response goes out; give the log a moment to be read by the kubelet.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|source| HarnessError::Api {
            what: "listing the gateway pods".into(),
            source,
        })?;
    for pod in list.items {
        let name = pod.metadata.name.unwrap_or_default();
        let params = LogParams {
            container: Some("gateway".into()),
            ..LogParams::default()
        };
        let text = match pods.logs(&name, &params).await {
            Ok(text) => text,
            Err(_) => pods
                .logs(&name, &LogParams::default())
                .await
                .map_err(|source| HarnessError::Api {
                    what: format!("reading the log of {name}"),
                    source,
                })?,
        };
        lines.extend(
            text.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
                .filter(|v| v.get("decision").is_some()),
        );
    }
    let mut by_path: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for line in &lines {
        if let Some(path) = line["path"].as_str() {
            by_path.entry(path).or_default().push(line);
        }
    }
    let mut missing = Vec::new();
    let mut wrong = Vec::new();
    for request in requests {
        let found = by_path.get(request.path.as_str()).cloned().unwrap_or_default();
        let [line] = found.as_slice() else {
            missing.push(format!("{} ({} lines)", request.path, found.len()));
            continue;
        };
        let decision = line["decision"].as_str().unwrap_or_default();
        let expected = if request.answered_by.is_some() {
            "allow"
        } else {
            "deny"
        };
        let token_matches = line["token_sha256"].as_str() == request.token_sha256.as_deref();
        if decision != expected || !token_matches {
            wrong.push(format!(
                "{}: decision {decision} (gate {}), token hash {}",
                request.path,
                line["gate"].as_str().unwrap_or("-"),
                if token_matches { "matches" } else { "differs" }
            ));
        }
    }
    let leaked = lines.iter().any(|l| {
        let text = l.to_string();
        requests.iter().any(|r| {
            r.headers
                .iter()
                .filter_map(|h| h.strip_prefix("Authorization: Bearer "))
                .any(|token| text.contains(token))
        })
    });
    Ok(vec![
        Check::new(
            "every gateway decision has its audit line",
            missing.is_empty() && wrong.is_empty(),
            if missing.is_empty() && wrong.is_empty() {
                format!(
                    "{} requests, {} audit lines with the expected decision and token hash",
                    requests.len(),
                    requests.len()
                )
            } else {
                format!("missing: {}; wrong: {}", missing.join(", "), wrong.join("; "))
            },
        ),
        Check::new(
            "no token appears in the audit lines",
            !leaked,
            if leaked {
                "a token was written"
            } else {
                "only SHA-256 digests"
            },
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(database: &str, schema: &str) -> Location {
        Location {
            database: database.into(),
            schema: schema.into(),
        }
    }

    #[test]
    fn a_shared_database_is_tried_by_schema_and_an_own_database_by_connecting() {
        let own = at("bulkhead", "bk_a");
        let others = vec![
            ("b".to_owned(), at("bulkhead", "bk_b")),
            ("c".to_owned(), at("bk_c", "public")),
        ];
        assert_eq!(
            attempts(&own, &others),
            vec![
                ("b".into(), "--other-schema".into(), "bk_b".into()),
                ("c".into(), "--other-database".into(), "bk_c".into()),
            ]
        );
        // From an own database, a schema in the shared one is tried by connecting to the shared database.
        assert_eq!(
            attempts(&at("bk_c", "public"), &[("a".to_owned(), own.clone())]),
            vec![("a".into(), "--other-database".into(), "bulkhead".into())]
        );
    }

    #[test]
    fn header_values_are_found_whatever_their_case_or_shape() {
        let headers = serde_json::json!({"X-Bulkhead-Org": "org_a", "x-bulkhead-tenant": ["a", "b"]});
        assert_eq!(header_value(&headers, "x-bulkhead-org").as_deref(), Some("org_a"));
        assert_eq!(header_value(&headers, "X-BULKHEAD-TENANT").as_deref(), Some("a"));
        assert_eq!(header_value(&headers, "x-bulkhead-subject"), None);
    }
}
