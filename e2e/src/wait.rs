//! Polling helpers for tests: wait for a condition with a deadline, and say what was awaited when it fails.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::HarnessError;

/// Polls `check` every 100 ms until it returns `Some`, or fails with a timeout naming `what`.
pub async fn until<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<T, HarnessError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if start.elapsed() > timeout {
            return Err(HarnessError::Timeout(timeout, what.to_owned()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the pod is Ready and returns its address.
pub async fn pod_ready_ip(
    pods: &kube::Api<k8s_openapi::api::core::v1::Pod>,
    name: &str,
    timeout: Duration,
) -> Result<String, HarnessError> {
    until(timeout, &format!("pod {name} to be ready"), || async {
        let status = pods.get_opt(name).await.ok().flatten()?.status?;
        let ready = status
            .conditions?
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        if ready { status.pod_ip } else { None }
    })
    .await
}
