//! CORS for browser clients, when configured (`cors:` in the config file).
//!
//! A browser sends a preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) before a
//! cross-origin request that carries `Authorization`, and the preflight never carries a token. The gateway
//! answers it itself: 204 with the allowed methods and headers when the origin, method and headers are all
//! allowed, 403 with gate `cors` otherwise. A preflight never reaches a stack, so it needs no identity and
//! grants none. On every other answer (forwarded or denied) from an allowed origin the gateway sets
//! `Access-Control-Allow-Origin` itself and drops any `Access-Control-*` header the stack sent, so one policy
//! holds for every tenant and a browser can read the gateway's JSON denials.
//!
//! Without `cors:`, nothing here runs: a preflight is an unauthenticated request and is refused by gate `token`.

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, HeaderName, HeaderValue, ORIGIN, VARY,
};
use http::{HeaderMap, Method, StatusCode};
use serde::Deserialize;

use crate::denial::{Gate, GateError};

/// The `cors:` section of the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsFile {
    /// Exact origins (`https://app.example.com`, with a port when not the default), or `["*"]` for any
    /// origin (only without `allow_credentials`).
    pub allowed_origins: Vec<String>,
    /// Methods a preflight may ask for.
    #[serde(default = "default_methods")]
    pub allowed_methods: Vec<String>,
    /// Request headers a preflight may ask for (any case).
    #[serde(default = "default_headers")]
    pub allowed_headers: Vec<String>,
    /// Response headers a browser may read beyond the CORS-safelisted ones.
    #[serde(default = "default_exposed")]
    pub exposed_headers: Vec<String>,
    /// How long a browser may cache a preflight answer, in seconds.
    #[serde(default = "default_max_age")]
    pub max_age_seconds: u32,
    /// Send `Access-Control-Allow-Credentials: true` (cookies); bearer tokens do not need it.
    #[serde(default)]
    pub allow_credentials: bool,
}

fn default_methods() -> Vec<String> {
    ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
        .map(String::from)
        .to_vec()
}

fn default_headers() -> Vec<String> {
    ["authorization", "content-type"].map(String::from).to_vec()
}

fn default_exposed() -> Vec<String> {
    vec![crate::headers::REQUEST_ID.to_owned()]
}

fn default_max_age() -> u32 {
    600
}

/// Why a preflight was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CorsError {
    /// The origin is not allowed (or there is more than one `Origin`).
    #[error("origin not allowed")]
    OriginNotAllowed,
    /// The requested method is not allowed.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A requested header is not allowed.
    #[error("headers not allowed")]
    HeadersNotAllowed,
}

impl GateError for CorsError {
    const GATE: Gate = Gate::Cors;

    fn reason(&self) -> &'static str {
        match self {
            CorsError::OriginNotAllowed => "origin_not_allowed",
            CorsError::MethodNotAllowed => "method_not_allowed",
            CorsError::HeadersNotAllowed => "headers_not_allowed",
        }
    }

    fn status(&self) -> StatusCode {
        StatusCode::FORBIDDEN
    }
}

/// Why a `cors:` section was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CorsConfigError {
    /// An origin is not `scheme://host[:port]`.
    #[error("allowed_origins: {0:?} is not an origin like https://app.example.com")]
    Origin(String),
    /// `*` together with other origins or with credentials.
    #[error("allowed_origins: \"*\" must be the only entry and cannot be combined with allow_credentials")]
    Wildcard,
    /// No origins.
    #[error("allowed_origins: at least one origin")]
    NoOrigins,
    /// A method is not an HTTP method token.
    #[error("allowed_methods: {0:?} is not a method")]
    Method(String),
    /// A header is not a header name.
    #[error("{0}: {1:?} is not a header name")]
    Header(&'static str, String),
}

/// The validated policy, with its answer headers made once.
#[derive(Debug, Clone)]
pub struct CorsPolicy {
    any_origin: bool,
    origins: Vec<String>,
    methods: Vec<Method>,
    headers: Vec<HeaderName>,
    allow_methods: HeaderValue,
    allow_headers: HeaderValue,
    expose_headers: Option<HeaderValue>,
    max_age: HeaderValue,
    credentials: bool,
}

/// Whether `origin` is a serialized origin: `http(s)://host[:port]`, lowercase, no path, userinfo or query.
fn is_origin(origin: &str) -> bool {
    let Some(rest) = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
    else {
        return false;
    };
    !rest.is_empty()
        && !rest.contains(['/', '?', '#', '@'])
        && rest == rest.to_ascii_lowercase()
        && rest.parse::<http::uri::Authority>().is_ok()
}

fn joined<T: AsRef<str>>(items: &[T]) -> HeaderValue {
    let text = items.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(", ");
    // Built from method tokens and header names only.
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(""))
}

impl CorsPolicy {
    /// Validates a `cors:` section.
    pub fn new(file: &CorsFile) -> Result<CorsPolicy, CorsConfigError> {
        if file.allowed_origins.is_empty() {
            return Err(CorsConfigError::NoOrigins);
        }
        let any_origin = file.allowed_origins.iter().any(|o| o == "*");
        if any_origin && (file.allowed_origins.len() > 1 || file.allow_credentials) {
            return Err(CorsConfigError::Wildcard);
        }
        if !any_origin && let Some(bad) = file.allowed_origins.iter().find(|o| !is_origin(o)) {
            return Err(CorsConfigError::Origin(bad.clone()));
        }
        let methods = file
            .allowed_methods
            .iter()
            .map(|m| Method::from_bytes(m.as_bytes()).map_err(|_| CorsConfigError::Method(m.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        let names = |field: &'static str, list: &[String]| {
            list.iter()
                .map(|h| {
                    HeaderName::from_bytes(h.as_bytes())
                        .map_err(|_| CorsConfigError::Header(field, h.clone()))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let headers = names("allowed_headers", &file.allowed_headers)?;
        let exposed = names("exposed_headers", &file.exposed_headers)?;
        let method_names: Vec<&str> = methods.iter().map(Method::as_str).collect();
        let header_names: Vec<&str> = headers.iter().map(HeaderName::as_str).collect();
        let exposed_names: Vec<&str> = exposed.iter().map(HeaderName::as_str).collect();
        Ok(CorsPolicy {
            any_origin,
            origins: file.allowed_origins.clone(),
            allow_methods: joined(&method_names),
            allow_headers: joined(&header_names),
            expose_headers: (!exposed.is_empty()).then(|| joined(&exposed_names)),
            max_age: HeaderValue::from(file.max_age_seconds),
            credentials: file.allow_credentials,
            methods,
            headers,
        })
    }

    /// Whether a request is a CORS preflight.
    pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
        method == Method::OPTIONS
            && headers.contains_key(ORIGIN)
            && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
    }

    /// The `Access-Control-Allow-Origin` value for the request's origin, if it is allowed: `*` when any origin
    /// is, else the origin itself. A request with more than one `Origin` has none.
    pub fn allowed_origin(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        let mut all = headers.get_all(ORIGIN).iter();
        let origin = all.next()?;
        if all.next().is_some() {
            return None;
        }
        if self.any_origin {
            return Some(HeaderValue::from_static("*"));
        }
        let text = origin.to_str().ok()?;
        self.origins.iter().any(|o| o == text).then(|| origin.clone())
    }

    /// Decides a preflight: the answer's headers, or why not.
    pub fn preflight(&self, headers: &HeaderMap) -> Result<HeaderMap, CorsError> {
        let origin = self.allowed_origin(headers).ok_or(CorsError::OriginNotAllowed)?;
        let method = headers
            .get(ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
            .ok_or(CorsError::MethodNotAllowed)?;
        if !self.methods.contains(&method) {
            return Err(CorsError::MethodNotAllowed);
        }
        for value in headers.get_all(ACCESS_CONTROL_REQUEST_HEADERS) {
            let list = value.to_str().map_err(|_| CorsError::HeadersNotAllowed)?;
            for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                let allowed = self.headers.iter().any(|h| h.as_str().eq_ignore_ascii_case(name));
                if !allowed {
                    return Err(CorsError::HeadersNotAllowed);
                }
            }
        }
        let mut out = HeaderMap::new();
        out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        out.insert(ACCESS_CONTROL_ALLOW_METHODS, self.allow_methods.clone());
        out.insert(ACCESS_CONTROL_ALLOW_HEADERS, self.allow_headers.clone());
        out.insert(ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        if self.credentials {
            out.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
        }
        self.vary(&mut out);
        Ok(out)
    }

    /// Sets the CORS headers of a non-preflight answer: every `Access-Control-*` header from the stack goes,
    /// then `Access-Control-Allow-Origin` (and the rest) for an allowed `origin`, and `Vary: Origin`.
    pub fn decorate(&self, origin: Option<HeaderValue>, headers: &mut HeaderMap) {
        let theirs: Vec<HeaderName> = headers
            .keys()
            .filter(|n| n.as_str().starts_with("access-control-"))
            .cloned()
            .collect();
        for name in theirs {
            headers.remove(name);
        }
        if let Some(origin) = origin {
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            if let Some(exposed) = &self.expose_headers {
                headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, exposed.clone());
            }
            if self.credentials {
                headers.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
            }
        }
        self.vary(headers);
    }

    /// The answer depends on `Origin` unless every origin gets `*`.
    fn vary(&self, headers: &mut HeaderMap) {
        if !self.any_origin {
            headers.append(VARY, HeaderValue::from_static("origin"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers::tests::headers;

    fn file(origins: &[&str]) -> CorsFile {
        CorsFile {
            allowed_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            allowed_methods: default_methods(),
            allowed_headers: default_headers(),
            exposed_headers: default_exposed(),
            max_age_seconds: 600,
            allow_credentials: false,
        }
    }

    const APP: &str = "https://app.example.com";

    fn preflight(extra: &[(&str, &str)]) -> HeaderMap {
        let mut pairs = vec![("origin", APP), ("access-control-request-method", "POST")];
        pairs.extend_from_slice(extra);
        headers(&pairs)
    }

    #[test]
    fn an_allowed_preflight_gets_the_policy_and_varies_on_origin() {
        let p = CorsPolicy::new(&file(&[APP])).unwrap();
        let h = preflight(&[("access-control-request-headers", "Authorization, content-type")]);
        assert!(CorsPolicy::is_preflight(&Method::OPTIONS, &h));
        assert!(!CorsPolicy::is_preflight(&Method::GET, &h));
        assert!(!CorsPolicy::is_preflight(
            &Method::OPTIONS,
            &headers(&[("origin", APP)])
        ));
        let out = p.preflight(&h).unwrap();
        assert_eq!(out[ACCESS_CONTROL_ALLOW_ORIGIN], APP);
        assert_eq!(
            out[ACCESS_CONTROL_ALLOW_METHODS],
            "GET, HEAD, POST, PUT, PATCH, DELETE"
        );
        assert_eq!(out[ACCESS_CONTROL_ALLOW_HEADERS], "authorization, content-type");
        assert_eq!(out[ACCESS_CONTROL_MAX_AGE], "600");
        assert_eq!(out[VARY], "origin");
        assert!(out.get(ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());
    }

    #[test]
    fn each_refusal_has_its_reason() {
        let p = CorsPolicy::new(&file(&[APP])).unwrap();
        let other = headers(&[
            ("origin", "https://evil.example"),
            ("access-control-request-method", "GET"),
        ]);
        assert_eq!(p.preflight(&other), Err(CorsError::OriginNotAllowed));
        // Origins compare exactly: another scheme, port or a suffix is another origin.
        for origin in [
            "http://app.example.com",
            "https://app.example.com:8443",
            "https://app.example.com.evil",
        ] {
            let h = headers(&[("origin", origin), ("access-control-request-method", "GET")]);
            assert_eq!(p.preflight(&h), Err(CorsError::OriginNotAllowed), "{origin}");
        }
        let two = headers(&[
            ("origin", APP),
            ("origin", APP),
            ("access-control-request-method", "GET"),
        ]);
        assert_eq!(p.preflight(&two), Err(CorsError::OriginNotAllowed));
        let connect = headers(&[("origin", APP), ("access-control-request-method", "CONNECT")]);
        assert_eq!(p.preflight(&connect), Err(CorsError::MethodNotAllowed));
        let header = preflight(&[("access-control-request-headers", "authorization, x-org-id")]);
        assert_eq!(p.preflight(&header), Err(CorsError::HeadersNotAllowed));
        assert_eq!(CorsError::HeadersNotAllowed.denial().gate, Gate::Cors);
        assert_eq!(CorsError::OriginNotAllowed.denial().status, StatusCode::FORBIDDEN);
    }

    #[test]
    fn answers_lose_the_stacks_cors_headers_and_get_the_policys() {
        let p = CorsPolicy::new(&file(&[APP])).unwrap();
        let mut h = headers(&[
            ("access-control-allow-origin", "*"),
            ("access-control-allow-credentials", "true"),
            ("content-type", "text/plain"),
        ]);
        p.decorate(p.allowed_origin(&headers(&[("origin", APP)])), &mut h);
        assert_eq!(h[ACCESS_CONTROL_ALLOW_ORIGIN], APP);
        assert_eq!(h[ACCESS_CONTROL_EXPOSE_HEADERS], "x-bulkhead-request-id");
        assert!(h.get(ACCESS_CONTROL_ALLOW_CREDENTIALS).is_none());
        assert_eq!(h["content-type"], "text/plain");
        let mut h = headers(&[("access-control-allow-origin", "*")]);
        p.decorate(
            p.allowed_origin(&headers(&[("origin", "https://evil.example")])),
            &mut h,
        );
        assert!(
            h.get(ACCESS_CONTROL_ALLOW_ORIGIN).is_none(),
            "a foreign origin gets nothing"
        );
        assert_eq!(h[VARY], "origin");
    }

    #[test]
    fn any_origin_and_credentials() {
        let p = CorsPolicy::new(&file(&["*"])).unwrap();
        let out = p.preflight(&headers(&[
            ("origin", "https://x.example"),
            ("access-control-request-method", "GET"),
        ]));
        assert_eq!(out.unwrap()[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        let mut f = file(&[APP]);
        f.allow_credentials = true;
        let out = CorsPolicy::new(&f).unwrap().preflight(&preflight(&[])).unwrap();
        assert_eq!(out[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    }

    #[test]
    fn bad_sections_are_refused() {
        for origins in [
            &["https://app.example.com/"][..],
            &["app.example.com"],
            &["https://App.example.com"],
            &["https://user@app.example.com"],
            &["null"],
            &["*", APP],
        ] {
            assert!(CorsPolicy::new(&file(origins)).is_err(), "{origins:?}");
        }
        assert_eq!(
            CorsPolicy::new(&file(&[])).unwrap_err(),
            CorsConfigError::NoOrigins
        );
        let mut f = file(&["*"]);
        f.allow_credentials = true;
        assert_eq!(CorsPolicy::new(&f).unwrap_err(), CorsConfigError::Wildcard);
        let mut f = file(&[APP]);
        f.allowed_headers = vec!["bad header".into()];
        assert!(matches!(
            CorsPolicy::new(&f),
            Err(CorsConfigError::Header("allowed_headers", _))
        ));
        let mut f = file(&[APP]);
        f.allowed_methods = vec!["GE T".into()];
        assert!(matches!(CorsPolicy::new(&f), Err(CorsConfigError::Method(_))));
        assert!(CorsPolicy::new(&file(&[APP, "http://localhost:3000"])).is_ok());
    }
}
