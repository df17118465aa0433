//! Header sanitation before a request goes to a stack, and after its response comes back.
//!
//! The client's identity headers are removed in every spelling (any case, `_` or `-` or none between words),
//! every header named in `Connection` and every hop-by-hop header goes (RFC 9110 §7.6.1), every header with an
//! `_` in its name goes (CGI-style backends read `x_org_id` as `HTTP_X_ORG_ID`), and then the gateway sets its
//! own identity headers exactly once. The stack routes on nothing the client wrote.

use std::net::IpAddr;

use http::HeaderMap;
use http::header::{AUTHORIZATION, CONNECTION, HOST, HeaderName, HeaderValue};

use crate::routes::Made;

/// The org id the gateway derived from the token.
pub const ORG: &str = "x-bulkhead-org";
/// The Tenant of the route.
pub const TENANT: &str = "x-bulkhead-tenant";
/// The Customer of the route, when the org is a Customer's.
pub const CUSTOMER: &str = "x-bulkhead-customer";
/// The token's `sub`.
pub const SUBJECT: &str = "x-bulkhead-subject";
/// The token's `act.sub`, while impersonating.
pub const IMPERSONATOR: &str = "x-bulkhead-impersonator";
/// The gateway's request id.
pub const REQUEST_ID: &str = "x-bulkhead-request-id";
/// The client's address as the gateway saw it (the client's own `X-Forwarded-For` is dropped).
pub const FORWARDED_FOR: &str = "x-forwarded-for";

// The names the gateway sets, made at compile time so setting them parses nothing.
const ORG_NAME: HeaderName = HeaderName::from_static(ORG);
const TENANT_NAME: HeaderName = HeaderName::from_static(TENANT);
const CUSTOMER_NAME: HeaderName = HeaderName::from_static(CUSTOMER);
const SUBJECT_NAME: HeaderName = HeaderName::from_static(SUBJECT);
const IMPERSONATOR_NAME: HeaderName = HeaderName::from_static(IMPERSONATOR);
/// [`REQUEST_ID`] as a header name.
pub const REQUEST_ID_NAME: HeaderName = HeaderName::from_static(REQUEST_ID);
const FORWARDED_FOR_NAME: HeaderName = HeaderName::from_static(FORWARDED_FOR);

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus the non-standard ones proxies still see); names made at compile
/// time, so removing them parses nothing.
const HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
];

/// Identity header names, compacted (lowercase, `-` and `_` removed).
const IDENTITY_EXACT: [&str; 31] = [
    "xorgid",
    "xorg",
    "xorganizationid",
    "xorganisationid",
    "xorgslug",
    "xtenantid",
    "xtenant",
    "xcustomerid",
    "xcustomer",
    "xuserid",
    "xuser",
    "xsubject",
    "xsub",
    "xremoteuser",
    "remoteuser",
    "xauthuser",
    "xauthenticateduser",
    "xauthenticateduserid",
    "xconsumerid",
    "xconsumerusername",
    "xcredentialidentifier",
    "xuserinfo",
    "ximpersonator",
    "xactor",
    "xrealip",
    "forwarded",
    "xemail",
    "xuseremail",
    "xrole",
    "xroles",
    "xscope",
];

/// Identity header prefixes, compacted.
const IDENTITY_PREFIXES: [&str; 6] = [
    "xbulkhead",
    "xauthrequest",
    "xforwarded",
    "xjwt",
    "xclerk",
    "xpomerium",
];

/// Longest compacted name compared in full; every identity name and prefix is shorter, so a name longer than
/// this can only match a prefix, which its first bytes decide.
const COMPACT_MAX: usize = 32;

/// Whether `name` is an identity header in any spelling.
pub fn is_identity_header(name: &str) -> bool {
    // Compacted on the stack: this runs for every header of every request.
    let mut compact = [0u8; COMPACT_MAX];
    let mut len = 0;
    let mut truncated = false;
    for b in name.bytes().filter(|b| *b != b'-' && *b != b'_') {
        if len == COMPACT_MAX {
            truncated = true;
            break;
        }
        compact[len] = b.to_ascii_lowercase();
        len += 1;
    }
    let compact = &compact[..len];
    (!truncated && IDENTITY_EXACT.iter().any(|e| e.as_bytes() == compact))
        || IDENTITY_PREFIXES
            .iter()
            .any(|p| compact.starts_with(p.as_bytes()))
}

/// Removes hop-by-hop headers and every header the `Connection` header names.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one pass over their few names is cheaper than nine hashed removals.
    if !headers.keys().any(|n| HOP_BY_HOP.contains(n)) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// What the gateway tells the stack about the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp<'a> {
    /// The route: org, Tenant, Customer and the upstream (`Host`), as made header values.
    pub route: &'a Made,
    /// `sub`.
    pub subject: Option<&'a str>,
    /// `act.sub`.
    pub impersonator: Option<&'a str>,
    /// The request id.
    pub request_id: &'a HeaderValue,
    /// The peer address of the client's connection.
    pub client_ip: IpAddr,
}

/// Prepares a request's headers for the stack: hop-by-hop and `Connection`-named headers, every header with an
/// `_`, every client identity header, `Host` and (unless forwarded by configuration) `Authorization` are
/// removed; then the gateway's identity headers and `Host: upstream` are set once.
pub fn sanitize_request(headers: &mut HeaderMap, stamp: &Stamp<'_>, forward_authorization: bool) {
    remove_hop_by_hop(headers);
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|n| n.as_str().contains('_') || is_identity_header(n.as_str()))
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
    headers.remove(HOST);
    if !forward_authorization {
        headers.remove(AUTHORIZATION);
    }
    // Every value was checked to be printable ASCII by its gate; a value that still is not a header value is
    // left out.
    let route = stamp.route;
    let mut set = |name: HeaderName, value: Option<HeaderValue>| {
        if let Some(v) = value {
            headers.insert(name, v);
        }
    };
    set(ORG_NAME, route.org.clone());
    set(TENANT_NAME, route.tenant.clone());
    set(CUSTOMER_NAME, route.customer.clone());
    let text = |s: Option<&str>| s.and_then(|s| HeaderValue::from_str(s).ok());
    set(SUBJECT_NAME, text(stamp.subject));
    set(IMPERSONATOR_NAME, text(stamp.impersonator));
    set(REQUEST_ID_NAME, Some(stamp.request_id.clone()));
    set(FORWARDED_FOR_NAME, ip_value(stamp.client_ip));
    set(HOST, route.host.clone());
}

/// An IP address as a header value, formatted without a heap string.
fn ip_value(ip: IpAddr) -> Option<HeaderValue> {
    use std::io::Write as _;
    if let IpAddr::V4(v4) = ip {
        // The common case by hand: formatting machinery costs more than the rest of the header work.
        let mut buf = [0u8; 15];
        let mut len = 0;
        for (i, octet) in v4.octets().into_iter().enumerate() {
            if i > 0 {
                buf[len] = b'.';
                len += 1;
            }
            if octet >= 100 {
                buf[len] = b'0' + octet / 100;
                len += 1;
            }
            if octet >= 10 {
                buf[len] = b'0' + octet / 10 % 10;
                len += 1;
            }
            buf[len] = b'0' + octet % 10;
            len += 1;
        }
        return HeaderValue::from_bytes(&buf[..len]).ok();
    }
    let mut buf = [0u8; 64];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    write!(cursor, "{ip}").ok()?;
    let len = usize::try_from(cursor.position()).ok()?;
    HeaderValue::from_bytes(&buf[..len]).ok()
}

/// Whether `name` is in the gateway's own header namespace (`x-bulkhead-*`, in any spelling).
pub fn is_gateway_header(name: &str) -> bool {
    let mut compact = name.bytes().filter(|b| *b != b'-' && *b != b'_');
    b"xbulkhead"
        .iter()
        .all(|p| compact.next().is_some_and(|b| b.to_ascii_lowercase() == *p))
}

/// Prepares a stack's response headers for the client: hop-by-hop headers go, and so does every header in the
/// gateway's namespace (`x-bulkhead-org`, `-tenant`, `-customer`, `-subject`, ... in any spelling): the
/// identity the gateway stamped on the request never travels back to the client, whatever the stack echoes.
/// The gateway sets its own request id afterwards.
pub fn sanitize_response(headers: &mut HeaderMap) {
    remove_hop_by_hop(headers);
    if headers.keys().any(|n| is_gateway_header(n.as_str())) {
        let doomed: Vec<HeaderName> = headers
            .keys()
            .filter(|n| is_gateway_header(n.as_str()))
            .cloned()
            .collect();
        for name in doomed {
            headers.remove(name);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::routes::Route;

    /// Sanitizes `h` for org_a → acme at `upstream`, subject user_1, request r1, from 127.0.0.1.
    fn sanitize(h: &mut HeaderMap, upstream: &str, forward_authorization: bool) {
        let route = Route::new("org_a".into(), "acme".into(), None, None, upstream.into());
        let stamp = Stamp {
            route: &route.made,
            subject: Some("user_1"),
            impersonator: None,
            request_id: &HeaderValue::from_static("r1"),
            client_ip: IpAddr::from([127, 0, 0, 1]),
        };
        sanitize_request(h, &stamp, forward_authorization);
    }

    /// A header map of these pairs, in order.
    pub(crate) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn peer_addresses_are_written_as_std_writes_them() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "198.18.0.9",
            "10.100.255.199",
            "255.255.255.255",
            "::1",
            "2001:db8::42",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_value(ip).unwrap(), ip.to_string().as_str());
        }
    }

    #[test]
    fn a_response_loses_the_gateway_namespace_and_keeps_the_rest() {
        let mut h = headers(&[
            ("x-bulkhead-org", "org_b"),
            ("X-Bulkhead-Tenant", "other"),
            ("x_bulkhead_customer", "c"),
            ("x-bulkhead-request-id", "forged"),
            ("xbulkheadsubject", "user_2"),
            ("x-bulk-head", "the same name, spelt apart"),
            ("x-bulk", "kept"),
            ("x-bulkheads-are-great", "also gateway namespace"),
            ("content-type", "text/plain"),
            ("x-user-id", "the stack's own business"),
            ("connection", "close, x-secret"),
            ("x-secret", "hop"),
        ]);
        sanitize_response(&mut h);
        let mut names: Vec<&str> = h.keys().map(|n| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, vec!["content-type", "x-bulk", "x-user-id"]);
    }

    #[test]
    fn identity_headers_in_every_spelling_are_recognised() {
        for name in [
            "X-Org-Id",
            "x-ORG-id",
            "X_Org_Id",
            "xorgid",
            "X-OrgId",
            "X-Tenant-Id",
            "x_tenant_id",
            "X-Bulkhead-Org",
            "x-bulkhead-anything",
            "X-Forwarded-Host",
            "Forwarded",
            "X-Auth-Request-User",
            "x-jwt-payload",
            "X-Customer-Id",
            "X-Remote-User",
            "Remote-User",
        ] {
            assert!(is_identity_header(name), "{name}");
        }
        for name in ["content-type", "accept", "x-request-id", "cookie", "x-organic"] {
            assert!(!is_identity_header(name), "{name}");
        }
        // Names longer than the compaction buffer: a prefix still counts, an exact name plus a tail does not.
        let long_tail = "-a".repeat(40);
        assert!(is_identity_header(&format!("X-Bulkhead{long_tail}")));
        assert!(is_identity_header(&format!("x_forwarded{long_tail}")));
        assert!(!is_identity_header(&format!("x-org-id{long_tail}")));
        assert!(!is_identity_header(&format!("accept{long_tail}")));
        assert!(is_identity_header("x-authenticated-user-id"));
    }

    #[test]
    fn client_identity_is_replaced_by_exactly_one_gateway_set() {
        let mut h = headers(&[
            ("x-org-id", "org_b"),
            ("X-ORG-ID", "org_c"),
            ("x_org_id", "org_d"),
            ("x-bulkhead-org", "org_b"),
            ("x-bulkhead-tenant", "other"),
            ("x-tenant-id", "other"),
            ("x-forwarded-host", "b.example"),
            ("x-forwarded-for", "6.6.6.6"),
            ("forwarded", "host=b.example"),
            ("host", "b.example"),
            ("authorization", "Bearer t"),
            ("accept", "application/json"),
            ("x_custom", "1"),
        ]);
        sanitize(&mut h, "stack.bk-acme.svc:8080", false);
        assert_eq!(h.get_all(ORG).iter().collect::<Vec<_>>(), vec!["org_a"]);
        assert_eq!(h.get_all(TENANT).iter().collect::<Vec<_>>(), vec!["acme"]);
        assert_eq!(h.get_all(SUBJECT).iter().collect::<Vec<_>>(), vec!["user_1"]);
        assert!(h.get(CUSTOMER).is_none());
        assert_eq!(h.get(HOST).unwrap(), "stack.bk-acme.svc:8080");
        assert_eq!(
            h.get_all(FORWARDED_FOR).iter().collect::<Vec<_>>(),
            vec!["127.0.0.1"]
        );
        assert!(h.get(AUTHORIZATION).is_none());
        assert_eq!(h.get("accept").unwrap(), "application/json");
        let names: Vec<&str> = h.keys().map(|n| n.as_str()).collect();
        for gone in [
            "x-org-id",
            "x-tenant-id",
            "x-forwarded-host",
            "forwarded",
            "x_org_id",
            "x_custom",
        ] {
            assert!(!names.contains(&gone), "{gone} in {names:?}");
        }
    }

    #[test]
    fn connection_named_and_hop_by_hop_headers_go_and_authorization_is_optional() {
        let mut h = headers(&[
            ("connection", "keep-alive, x-keep-me-not, x-org-id"),
            ("x-keep-me-not", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic x"),
            ("authorization", "Bearer t"),
        ]);
        sanitize(&mut h, "u:1", true);
        for gone in [
            "connection",
            "x-keep-me-not",
            "keep-alive",
            "te",
            "transfer-encoding",
            "upgrade",
            "proxy-authorization",
        ] {
            assert!(h.get(gone).is_none(), "{gone}");
        }
        assert_eq!(h.get(AUTHORIZATION).unwrap(), "Bearer t");
        assert_eq!(
            h.get(ORG).unwrap(),
            "org_a",
            "a Connection-listed identity header cannot drop ours"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Whatever the client sends, the stack sees exactly one org, one tenant and no header with `_`.
        #[test]
        fn exactly_one_identity_set_survives(
            pairs in proptest::collection::vec(
                ("[xX][-_][A-Za-z_-]{0,12}|[A-Za-z-]{1,12}|[Xx]-[Bb]ulkhead-[a-z]{1,8}|[Xx][-_][Oo]rg[-_][Ii]d", "[ -~]{0,16}"),
                0..24,
            ),
            connection in "[a-zA-Z_, -]{0,40}",
        ) {
            let mut h = HeaderMap::new();
            for (n, v) in &pairs {
                if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(n.as_bytes()), HeaderValue::from_str(v)) {
                    h.append(n, v);
                }
            }
            if let Ok(v) = HeaderValue::from_str(&connection) {
                h.append(CONNECTION, v);
            }
            sanitize(&mut h, "u:1", false);
            proptest::prop_assert_eq!(h.get_all(ORG).iter().count(), 1);
            proptest::prop_assert_eq!(h.get(ORG).unwrap(), "org_a");
            proptest::prop_assert_eq!(h.get_all(TENANT).iter().count(), 1);
            proptest::prop_assert!(h.get(CUSTOMER).is_none());
            for name in h.keys() {
                proptest::prop_assert!(!name.as_str().contains('_'));
                let ours = [ORG, TENANT, SUBJECT, REQUEST_ID, FORWARDED_FOR].contains(&name.as_str());
                proptest::prop_assert!(ours || !is_identity_header(name.as_str()), "{}", name);
            }
        }
    }
}
