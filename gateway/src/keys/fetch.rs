//! Fetching a JWKS document from an issuer's configured URL: no redirects, no proxy, a timeout and a size cap.
//! The URL comes only from configuration, never from a token.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::StatusCode;

/// How JWKS documents are fetched.
#[derive(Debug, Clone)]
pub struct FetchPolicy {
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Largest accepted body, in bytes.
    pub max_bytes: usize,
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The server answered with a redirect, which is never followed.
    #[error("redirect refused (status {0})")]
    Redirect(StatusCode),
    /// The server answered with another non-success status.
    #[error("status {0}")]
    Status(StatusCode),
    /// The body exceeds the size cap.
    #[error("body larger than the cap")]
    TooLarge,
    /// The request did not finish in time.
    #[error("timed out")]
    Timeout,
    /// Connection or protocol failure.
    #[error("transport: {0}")]
    Transport(#[source] reqwest::Error),
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

impl FetchError {
    /// A fixed reason string for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            FetchError::Redirect(_) => "redirect_refused",
            FetchError::Status(_) => "http_status",
            FetchError::TooLarge => "too_large",
            FetchError::Timeout => "timeout",
            FetchError::Transport(_) => "transport",
            FetchError::Client(_) => "client",
        }
    }
}

/// A JWKS HTTP client.
///
/// The HTTP client (and with it the TLS trust roots it loads) is built on the first fetch, so a gateway whose
/// issuers all use local keys (`pem_keys`, `jwks_file`) never needs them: it runs on an image without a CA
/// bundle. A client that cannot be built fails that fetch, which leaves the issuer unready and is retried.
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: Arc<OnceLock<reqwest::Client>>,
    policy: FetchPolicy,
}

impl Fetcher {
    /// A client that follows no redirect and uses no proxy.
    pub fn new(policy: FetchPolicy) -> Fetcher {
        Fetcher {
            client: Arc::new(OnceLock::new()),
            policy,
        }
    }

    fn client(&self) -> Result<&reqwest::Client, FetchError> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(self.policy.timeout)
            .connect_timeout(self.policy.timeout)
            .user_agent(concat!("bulkhead-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(FetchError::Client)?;
        // Two first fetches at once may both build one; either is fine.
        Ok(self.client.get_or_init(|| client))
    }

    /// GETs `url` and returns its body, at most `max_bytes` of it.
    pub async fn fetch(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let classify = |e: reqwest::Error| {
            if e.is_timeout() {
                FetchError::Timeout
            } else {
                FetchError::Transport(e)
            }
        };
        let mut response = self
            .client()?
            .get(url)
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(classify)?;
        let status = response.status();
        if status.is_redirection() {
            return Err(FetchError::Redirect(status));
        }
        if !status.is_success() {
            return Err(FetchError::Status(status));
        }
        if response
            .content_length()
            .is_some_and(|l| l > self.policy.max_bytes as u64)
        {
            return Err(FetchError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            if body.len() + chunk.len() > self.policy.max_bytes {
                return Err(FetchError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}
