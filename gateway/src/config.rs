//! The gateway's configuration file (YAML), its defaults, and its validation into typed settings. Anything
//! doubtful is refused at start rather than guessed: an HMAC algorithm, an issuer without keys, a non-HTTPS JWKS
//! URL off loopback, a leeway of minutes.

use crate::cors::{CorsFile, CorsPolicy};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::Algorithm;
use serde::Deserialize;

use crate::gates::alg::{is_asymmetric, parse_name};
use crate::gates::audience::{AudPolicy, AudiencePolicy};
use crate::gates::org::{OrgClaim, OrgShape};
use crate::gates::time::TimePolicy;
use crate::gates::typ::TypPolicy;
use crate::keys::{IssuerKeysConfig, KeySource, KeyStorePolicy, PemKey};
use crate::verify::IssuerPolicy;

/// Largest leeway accepted (RFC 8725 asks for small; Clerk tokens live about a minute).
pub const MAX_LEEWAY_SECONDS: i64 = 60;

/// The configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Address of the proxy listener.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Address of the admin listener (`/livez`, `/readyz`, `/metrics`).
    #[serde(default = "default_admin")]
    pub admin: SocketAddr,
    /// The allowed issuers, each with its keys and claim policy.
    pub issuers: Vec<IssuerFile>,
    /// Token limits and time policy.
    #[serde(default)]
    pub tokens: TokenFile,
    /// Key refresh timing and limits.
    #[serde(default)]
    pub keys: KeysFile,
    /// Verified-token cache.
    #[serde(default)]
    pub cache: CacheFile,
    /// Where routes come from.
    pub routes: RoutesFile,
    /// Proxy limits and timeouts.
    #[serde(default)]
    pub proxy: ProxyFile,
    /// Optional per-org rate limit.
    #[serde(default)]
    pub rate_limit: Option<RateLimitFile>,
    /// Optional CORS policy for browser clients (see [`crate::cors`]).
    #[serde(default)]
    pub cors: Option<CorsFile>,
    /// The audit trail's chain (see [`crate::audit`]).
    #[serde(default)]
    pub audit: AuditFile,
}

/// The audit trail's chain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditFile {
    /// This gateway's name in its chain's `instance` (the pod name; a nonce drawn at start is appended):
    /// letters, digits, `.`, `_`, `-`, at most 253.
    pub instance: String,
    /// Seconds between two periodic checkpoints (1 to 3600).
    pub checkpoint_seconds: u64,
}

impl Default for AuditFile {
    fn default() -> Self {
        AuditFile {
            instance: "gateway".into(),
            checkpoint_seconds: 60,
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8443))
}

fn default_admin() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 9090))
}

/// One allowed issuer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerFile {
    /// The exact `iss` value.
    pub issuer: String,
    /// Allowed algorithms (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA).
    pub algorithms: Vec<String>,
    /// The issuer's JWKS URL.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// A JWKS file instead of a URL.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// PEM public key files instead of a JWKS.
    #[serde(default)]
    pub pem_keys: Vec<PemKeyFile>,
    /// `clerk` (by `v`: `o.id` or `org_id`) or a dotted path such as `org.id`.
    #[serde(default = "default_org_claim")]
    pub org_claim: String,
    /// Prefix every org id must carry; defaults to `org_` for `clerk` and none otherwise.
    #[serde(default)]
    pub org_prefix: Option<String>,
    /// Longest org id accepted.
    #[serde(default = "default_org_max_len")]
    pub org_max_len: usize,
    /// Allowed `azp` values (empty: not checked).
    #[serde(default)]
    pub allowed_azp: Vec<String>,
    /// Refuse tokens without `azp` (with a non-empty `allowed_azp`).
    #[serde(default)]
    pub require_azp: bool,
    /// `aud` policy: `{mode: ignore}`, `{mode: forbid}` or `{mode: require, values: [...]}`.
    #[serde(default)]
    pub aud: AudPolicy,
}

fn default_org_claim() -> String {
    "clerk".into()
}

fn default_org_max_len() -> usize {
    64
}

/// A PEM key file entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PemKeyFile {
    /// The kid tokens must carry.
    pub kid: String,
    /// The one algorithm of this key.
    pub algorithm: String,
    /// The PEM public key file.
    pub path: PathBuf,
}

/// Token limits and time policy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenFile {
    /// Largest `Authorization` header value, in bytes.
    pub max_bytes: usize,
    /// Clock skew tolerated, in seconds (at most 60).
    pub leeway_seconds: i64,
    /// Longest token lifetime accepted, in seconds.
    pub max_lifetime_seconds: i64,
    /// Header `typ` values accepted besides `JWT` (tokens without `typ` are accepted too), e.g. `at+jwt`
    /// (RFC 9068 access tokens). Compared case-insensitively, with or without `application/`.
    pub allowed_typ: Vec<String>,
}

impl Default for TokenFile {
    fn default() -> Self {
        TokenFile {
            max_bytes: 8 * 1024,
            leeway_seconds: 30,
            max_lifetime_seconds: 3600,
            allowed_typ: Vec::new(),
        }
    }
}

/// Key refresh timing and limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysFile {
    /// Seconds between JWKS URL refreshes (1 to 3600).
    pub refresh_seconds: u64,
    /// Seconds before retrying a failed refresh; also the file poll interval.
    pub retry_seconds: u64,
    /// Least seconds between two unknown-kid refetches of one issuer.
    pub unknown_kid_refetch_seconds: u64,
    /// JWKS fetch timeout, in milliseconds.
    pub fetch_timeout_ms: u64,
    /// Largest JWKS document, in bytes.
    pub max_jwks_bytes: usize,
    /// Most keys in one document.
    pub max_keys: usize,
}

impl Default for KeysFile {
    fn default() -> Self {
        KeysFile {
            refresh_seconds: 300,
            retry_seconds: 10,
            unknown_kid_refetch_seconds: 30,
            fetch_timeout_ms: 5000,
            max_jwks_bytes: 256 * 1024,
            max_keys: 64,
        }
    }
}

/// Verified-token cache.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheFile {
    /// Most tokens held (0 disables the cache).
    pub max_entries: usize,
}

impl Default for CacheFile {
    fn default() -> Self {
        CacheFile { max_entries: 10_000 }
    }
}

/// Where routes come from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutesFile {
    /// `kubernetes` (Tenant and Customer resources) or `file`.
    pub source: RouteSource,
    /// The static routes file, for `source: file`.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// DNS suffix of in-cluster Services (`stack.<namespace>.<suffix>`).
    #[serde(default = "default_cluster_suffix")]
    pub service_suffix: String,
    /// Namespace → `host:port` overrides of the in-cluster address (tests, sandboxes).
    #[serde(default)]
    pub upstream_overrides: HashMap<String, String>,
}

fn default_cluster_suffix() -> String {
    "svc".into()
}

/// The route source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteSource {
    /// Watch Tenant and Customer resources.
    Kubernetes,
    /// Read a static routes file.
    File,
}

/// Proxy limits and timeouts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyFile {
    /// Forward the client's `Authorization` header to the stack.
    pub forward_authorization: bool,
    /// Largest request body, in bytes.
    pub max_body_bytes: u64,
    /// Largest request head (HTTP/1 buffer, HTTP/2 header list), in bytes.
    pub max_header_bytes: usize,
    /// Time allowed to receive a request head, in milliseconds.
    pub header_read_timeout_ms: u64,
    /// Time allowed for the stack's response head, in milliseconds.
    pub upstream_timeout_ms: u64,
    /// Longest pause allowed between frames of the stack's response body, in milliseconds (see
    /// [`crate::stream`]).
    pub upstream_body_idle_ms: u64,
    /// Time allowed to connect to the stack, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Idle pooled upstream connections are closed after this many seconds.
    pub pool_idle_seconds: u64,
    /// Seconds in-flight requests get to finish on shutdown.
    pub shutdown_grace_seconds: u64,
    /// Most requests being decided or forwarded at once; more are answered 503 `request/overloaded`.
    pub max_in_flight: usize,
    /// Longest a WebSocket tunnel stays open, in seconds, whatever its token's expiry (it closes at the token's
    /// `exp` plus the leeway when that comes first).
    pub max_tunnel_seconds: u64,
    /// Most WebSocket tunnels one org holds open at once; more are answered 429 `rate_limit/org_tunnel_limit`
    /// (0 refuses every WebSocket).
    pub max_tunnels_per_org: usize,
}

impl Default for ProxyFile {
    fn default() -> Self {
        ProxyFile {
            forward_authorization: false,
            max_body_bytes: 10 * 1024 * 1024,
            max_header_bytes: 64 * 1024,
            header_read_timeout_ms: 10_000,
            upstream_timeout_ms: 30_000,
            upstream_body_idle_ms: 60_000,
            connect_timeout_ms: 2_000,
            pool_idle_seconds: 60,
            shutdown_grace_seconds: 20,
            max_in_flight: 4096,
            max_tunnel_seconds: 3600,
            max_tunnels_per_org: 100,
        }
    }
}

/// A token bucket per org.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitFile {
    /// Sustained requests per second per org (fractions allowed: 0.5 is one every two seconds).
    pub per_second: f64,
    /// Burst size.
    pub burst: u32,
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid YAML of the expected shape.
    #[error("parsing {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A value is not acceptable.
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: String,
        /// Why.
        message: String,
    },
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The file as read.
    pub file: FileConfig,
    /// Per-issuer key configuration, in issuer order.
    pub issuer_keys: Vec<IssuerKeysConfig>,
    /// Per-issuer claim policy, in issuer order.
    pub issuer_policies: Vec<IssuerPolicy>,
    /// Union of the issuers' algorithms.
    pub algorithms: Vec<Algorithm>,
    /// Time policy.
    pub time: TimePolicy,
    /// Accepted header `typ` values.
    pub typ: TypPolicy,
    /// Key store timing.
    pub key_policy: KeyStorePolicy,
    /// The CORS policy, if any.
    pub cors: Option<CorsPolicy>,
}

impl FileConfig {
    /// Reads and parses a YAML file.
    pub fn read(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        FileConfig::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses YAML text.
    pub fn parse(text: &str) -> Result<FileConfig, String> {
        serde_saphyr::from_str(text).map_err(|e| e.to_string())
    }
}

/// Whether `url` is `https://`, or `http://` to a loopback host.
fn acceptable_jwks_url(url: &str) -> bool {
    if url.starts_with("https://") {
        return true;
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.contains('@') {
        return false;
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn algorithms(field: &str, names: &[String]) -> Result<Vec<Algorithm>, ConfigError> {
    if names.is_empty() {
        return Err(invalid(field, "at least one algorithm is required"));
    }
    names
        .iter()
        .map(|name| match parse_name(name) {
            Some(alg) if is_asymmetric(alg) => Ok(alg),
            Some(_) => Err(invalid(
                field,
                format!("{name} is symmetric; only asymmetric algorithms are allowed"),
            )),
            None => Err(invalid(field, format!("{name} is not an algorithm"))),
        })
        .collect()
}

impl Settings {
    /// Validates a parsed file.
    pub fn from_file(file: FileConfig) -> Result<Settings, ConfigError> {
        if file.issuers.is_empty() {
            return Err(invalid("issuers", "at least one issuer is required"));
        }
        let mut issuer_keys = Vec::new();
        let mut issuer_policies = Vec::new();
        let mut all: Vec<Algorithm> = Vec::new();
        for (i, issuer) in file.issuers.iter().enumerate() {
            let field = format!("issuers[{i}]");
            if issuer.issuer.is_empty() {
                return Err(invalid(format!("{field}.issuer"), "must not be empty"));
            }
            if file.issuers[..i]
                .iter()
                .any(|other| other.issuer == issuer.issuer)
            {
                return Err(invalid(format!("{field}.issuer"), "listed twice"));
            }
            let algs = algorithms(&format!("{field}.algorithms"), &issuer.algorithms)?;
            for alg in &algs {
                if !all.contains(alg) {
                    all.push(*alg);
                }
            }
            let sources = usize::from(issuer.jwks_url.is_some())
                + usize::from(issuer.jwks_file.is_some())
                + usize::from(!issuer.pem_keys.is_empty());
            if sources != 1 {
                return Err(invalid(
                    &field,
                    "exactly one of jwks_url, jwks_file, pem_keys is required",
                ));
            }
            let source = if let Some(url) = &issuer.jwks_url {
                if !acceptable_jwks_url(url) {
                    return Err(invalid(
                        format!("{field}.jwks_url"),
                        "must be https:// (http:// only to a loopback address)",
                    ));
                }
                KeySource::JwksUrl(url.clone())
            } else if let Some(path) = &issuer.jwks_file {
                KeySource::JwksFile(path.clone())
            } else {
                let mut keys = Vec::new();
                for (k, pem) in issuer.pem_keys.iter().enumerate() {
                    let alg = algorithms(
                        &format!("{field}.pem_keys[{k}].algorithm"),
                        std::slice::from_ref(&pem.algorithm),
                    )?;
                    if !algs.contains(&alg[0]) {
                        return Err(invalid(
                            format!("{field}.pem_keys[{k}].algorithm"),
                            "not in the issuer's algorithms",
                        ));
                    }
                    keys.push(PemKey {
                        kid: pem.kid.clone(),
                        algorithm: alg[0],
                        path: pem.path.clone(),
                    });
                }
                KeySource::Pem(keys)
            };
            let (org_claim, default_prefix) = if issuer.org_claim == "clerk" {
                (OrgClaim::Clerk, Some("org_".to_owned()))
            } else {
                let path: Vec<String> = issuer.org_claim.split('.').map(str::to_owned).collect();
                if path.iter().any(String::is_empty) {
                    return Err(invalid(
                        format!("{field}.org_claim"),
                        "`clerk` or a dotted path like `org.id`",
                    ));
                }
                (OrgClaim::Path(path), None)
            };
            if issuer.org_max_len == 0 || issuer.org_max_len > 128 {
                return Err(invalid(format!("{field}.org_max_len"), "1 to 128"));
            }
            issuer_keys.push(IssuerKeysConfig {
                issuer: issuer.issuer.clone(),
                algorithms: algs,
                source,
            });
            issuer_policies.push(IssuerPolicy {
                issuer: issuer.issuer.clone(),
                audience: AudiencePolicy {
                    allowed_azp: issuer.allowed_azp.clone(),
                    require_azp: issuer.require_azp,
                    aud: issuer.aud.clone(),
                },
                org_claim,
                org_shape: OrgShape {
                    prefix: issuer
                        .org_prefix
                        .clone()
                        .or(default_prefix)
                        .filter(|p| !p.is_empty()),
                    max_len: issuer.org_max_len,
                },
            });
        }
        let t = &file.tokens;
        if !(0..=MAX_LEEWAY_SECONDS).contains(&t.leeway_seconds) {
            return Err(invalid(
                "tokens.leeway_seconds",
                format!("0 to {MAX_LEEWAY_SECONDS}"),
            ));
        }
        if t.max_lifetime_seconds <= 0 {
            return Err(invalid("tokens.max_lifetime_seconds", "must be positive"));
        }
        if !(256..=65_536).contains(&t.max_bytes) {
            return Err(invalid("tokens.max_bytes", "256 to 65536"));
        }
        let typ = TypPolicy::new(&t.allowed_typ).map_err(|e| invalid("tokens.allowed_typ", e))?;
        let k = &file.keys;
        if !(1..=3600).contains(&k.refresh_seconds) || k.retry_seconds == 0 || k.fetch_timeout_ms == 0 {
            return Err(invalid(
                "keys",
                "refresh_seconds 1 to 3600; retry_seconds and fetch_timeout_ms positive",
            ));
        }
        if file.proxy.max_in_flight == 0 {
            return Err(invalid("proxy.max_in_flight", "must be positive"));
        }
        if file.proxy.upstream_timeout_ms == 0 || file.proxy.upstream_body_idle_ms == 0 {
            return Err(invalid(
                "proxy",
                "upstream_timeout_ms and upstream_body_idle_ms must be positive",
            ));
        }
        if file.proxy.max_tunnel_seconds == 0 {
            return Err(invalid("proxy.max_tunnel_seconds", "must be positive"));
        }
        if file.routes.source == RouteSource::File && file.routes.file.is_none() {
            return Err(invalid("routes.file", "required with source: file"));
        }
        let name = &file.audit.instance;
        if name.is_empty()
            || name.len() > 253
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(invalid(
                "audit.instance",
                "1 to 253 letters, digits, '.', '_' or '-'",
            ));
        }
        if !(1..=3600).contains(&file.audit.checkpoint_seconds) {
            return Err(invalid("audit.checkpoint_seconds", "must be 1 to 3600"));
        }
        if let Some(rl) = file.rate_limit
            && (!(rl.per_second > 0.0 && rl.per_second.is_finite()) || rl.burst == 0)
        {
            return Err(invalid("rate_limit", "per_second and burst must be positive"));
        }
        let cors = file
            .cors
            .as_ref()
            .map(CorsPolicy::new)
            .transpose()
            .map_err(|e| invalid("cors", e.to_string()))?;
        Ok(Settings {
            cors,
            time: TimePolicy {
                leeway: t.leeway_seconds,
                max_lifetime: t.max_lifetime_seconds,
            },
            typ,
            key_policy: KeyStorePolicy {
                refresh: Duration::from_secs(k.refresh_seconds),
                retry: Duration::from_secs(k.retry_seconds),
                unknown_kid_refetch: Duration::from_secs(k.unknown_kid_refetch_seconds),
                max_keys: k.max_keys,
            },
            issuer_keys,
            issuer_policies,
            algorithms: all,
            file,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
issuers:
  - issuer: https://clerk.a.example
    algorithms: [RS256, ES256]
    jwks_url: https://clerk.a.example/.well-known/jwks.json
routes:
  source: kubernetes
"#;

    fn settings(text: &str) -> Result<Settings, String> {
        let file = FileConfig::parse(text)?;
        Settings::from_file(file).map_err(|e| e.to_string())
    }

    #[test]
    fn a_minimal_file_gets_safe_defaults() {
        let s = settings(BASE).unwrap();
        assert_eq!(
            s.time,
            TimePolicy {
                leeway: 30,
                max_lifetime: 3600
            }
        );
        assert_eq!(s.algorithms, vec![Algorithm::RS256, Algorithm::ES256]);
        assert_eq!(s.issuer_policies[0].org_claim, OrgClaim::Clerk);
        assert_eq!(s.issuer_policies[0].org_shape.prefix.as_deref(), Some("org_"));
        assert!(!s.file.proxy.forward_authorization);
        assert_eq!(s.file.tokens.max_bytes, 8192);
        assert_eq!(s.typ, TypPolicy::default(), "JWT (or no typ) only");
        let with_typ = settings(&format!("{BASE}tokens: {{allowed_typ: [at+jwt]}}\n")).unwrap();
        assert_eq!(with_typ.typ, TypPolicy::new(&["at+jwt".into()]).unwrap());
        assert!(s.cors.is_none(), "no CORS unless configured");
        let with_cors = settings(&format!(
            "{BASE}cors: {{allowed_origins: [https://app.example]}}\n"
        ))
        .unwrap();
        assert!(with_cors.cors.is_some());
    }

    #[test]
    fn refuses_doubtful_settings() {
        let cases = [
            (BASE.replace("[RS256, ES256]", "[HS256]"), "symmetric"),
            (BASE.replace("[RS256, ES256]", "[]"), "at least one algorithm"),
            (
                BASE.replace("https://clerk.a.example/.well", "http://clerk.a.example/.well"),
                "https://",
            ),
            (format!("{BASE}tokens: {{leeway_seconds: 600}}\n"), "leeway"),
            (
                format!("{BASE}tokens: {{allowed_typ: ['at+jwt; charset=utf-8']}}\n"),
                "tokens.allowed_typ",
            ),
            (BASE.replace("source: kubernetes", "source: file"), "routes.file"),
            (
                BASE.replace("    jwks_url", "    jwks_file: /x\n    jwks_url"),
                "exactly one",
            ),
            (format!("{BASE}surprise: 1\n"), "unknown field"),
            (
                format!("{BASE}cors: {{allowed_origins: [https://app.example/]}}\n"),
                "cors: allowed_origins",
            ),
            (
                format!("{BASE}cors: {{allowed_origins: ['*'], allow_credentials: true}}\n"),
                "cannot be combined",
            ),
        ];
        for (text, want) in cases {
            let err = settings(&text).unwrap_err();
            assert!(err.contains(want), "{want}: {err}");
        }
    }

    #[test]
    fn loopback_http_jwks_is_allowed_for_tests_only() {
        for url in [
            "http://127.0.0.1:8080/jwks",
            "http://localhost/jwks",
            "http://[::1]:80/x",
        ] {
            assert!(acceptable_jwks_url(url), "{url}");
        }
        for url in [
            "http://10.0.0.1/jwks",
            "http://example.com/jwks",
            "http://127.0.0.1@evil/x",
            "ftp://x",
        ] {
            assert!(!acceptable_jwks_url(url), "{url}");
        }
    }

    #[test]
    fn the_example_config_is_valid_and_shows_the_defaults() {
        let example = include_str!("../examples/gateway.yaml");
        let s = settings(example).unwrap();
        let defaults = settings(BASE).unwrap();
        assert_eq!(s.time, defaults.time);
        assert_eq!(s.key_policy.refresh, defaults.key_policy.refresh);
        assert_eq!(s.file.proxy.max_body_bytes, defaults.file.proxy.max_body_bytes);
        assert_eq!(s.file.cache.max_entries, defaults.file.cache.max_entries);
        assert_eq!(s.file.tokens.max_bytes, defaults.file.tokens.max_bytes);
        assert_eq!(s.typ, defaults.typ);
        assert_eq!(
            s.file.proxy.max_tunnel_seconds,
            defaults.file.proxy.max_tunnel_seconds
        );
        assert_eq!(
            s.file.proxy.max_tunnels_per_org,
            defaults.file.proxy.max_tunnels_per_org
        );
    }

    #[test]
    fn the_audit_chain_is_named_and_timed_within_bounds() {
        let s = settings(BASE).unwrap();
        assert_eq!(
            (s.file.audit.instance.as_str(), s.file.audit.checkpoint_seconds),
            ("gateway", 60)
        );
        let s = settings(&format!(
            "{BASE}audit: {{instance: bulkhead-gateway-7d9f-x2k4q, checkpoint_seconds: 5}}\n"
        ))
        .unwrap();
        assert_eq!(s.file.audit.instance, "bulkhead-gateway-7d9f-x2k4q");
        for (audit, field) in [
            ("{instance: ''}", "audit.instance"),
            ("{instance: 'a b'}", "audit.instance"),
            ("{instance: \"a\\\"b\"}", "audit.instance"),
            ("{checkpoint_seconds: 0}", "audit.checkpoint_seconds"),
            ("{checkpoint_seconds: 3601}", "audit.checkpoint_seconds"),
        ] {
            let err = settings(&format!("{BASE}audit: {audit}\n")).unwrap_err();
            assert!(err.starts_with(field), "{audit}: {err}");
        }
    }

    #[test]
    fn a_path_org_claim_has_no_default_prefix() {
        let text = BASE.replace("    jwks_url", "    org_claim: tenant.org\n    jwks_url");
        let s = settings(&text).unwrap();
        assert_eq!(
            s.issuer_policies[0].org_claim,
            OrgClaim::Path(vec!["tenant".into(), "org".into()])
        );
        assert_eq!(s.issuer_policies[0].org_shape.prefix, None);
    }
}
