//! Running a command in a pod through the API server and the kubelet (the path `kubectl exec` takes).

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, AttachParams};
use tokio::io::AsyncReadExt;

use crate::HarnessError;

/// Runs `command` in the first container of `pod` and returns its exit code and stdout. An exec that cannot
/// be started is an error; a command that fails is a non-zero code.
pub async fn exec(
    client: &Client,
    namespace: &str,
    pod: &str,
    command: &[&str],
) -> Result<(i32, String), HarnessError> {
    exec_in(client, namespace, pod, None, command).await
}

/// Like [`exec`], in the named container of the pod (an ephemeral one too).
pub async fn exec_in(
    client: &Client,
    namespace: &str,
    pod: &str,
    container: Option<&str>,
    command: &[&str],
) -> Result<(i32, String), HarnessError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut params = AttachParams::default().stdin(false).stdout(true).stderr(false);
    if let Some(container) = container {
        params = params.container(container);
    }
    let mut attached = pods
        .exec(pod, command.iter().copied(), &params)
        .await
        .map_err(|source| HarnessError::Api {
            what: format!("exec in {namespace}/{pod}"),
            source,
        })?;
    let mut stdout = String::new();
    if let Some(mut out) = attached.stdout() {
        out.read_to_string(&mut stdout)
            .await
            .map_err(|source| HarnessError::Io {
                what: format!("reading the output of an exec in {namespace}/{pod}"),
                source,
            })?;
    }
    let status = match attached.take_status() {
        Some(status) => status.await,
        None => None,
    };
    let _ = attached.join().await;
    let code = match status {
        Some(s) if s.status.as_deref() == Some("Success") => 0,
        Some(s) => s
            .details
            .and_then(|d| d.causes)
            .and_then(|causes| {
                causes
                    .into_iter()
                    .find(|c| c.reason.as_deref() == Some("ExitCode"))
                    .and_then(|c| c.message)
            })
            .and_then(|m| m.parse().ok())
            .ok_or_else(|| {
                HarnessError::Manifest(format!(
                    "exec in {namespace}/{pod} failed without an exit code: {}",
                    s.message.unwrap_or_default()
                ))
            })?,
        None => {
            return Err(HarnessError::Manifest(format!(
                "exec in {namespace}/{pod} ended without a status"
            )));
        }
    };
    Ok((code, stdout))
}
