//! HTTP header rules: framing ambiguity, headers that must appear at most once, what crosses to
//! the upstream and what comes back.

use http::{HeaderMap, HeaderName, HeaderValue, header};

use super::refusal::Refusal;
use crate::mcp::{Message, Revision};

// Header names as `HeaderName`s: looking a header up by `&str` parses and validates the name
// on every call, which showed in request-path profiles.
pub static MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
pub static MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
pub static MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
pub static MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");
pub static LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// Headers an agent may send at most once: two copies would let two readers pick differently.
static SINGLE: [&HeaderName; 9] = [
    &header::AUTHORIZATION,
    &header::CONTENT_TYPE,
    &header::CONTENT_LENGTH,
    &header::HOST,
    &MCP_SESSION_ID,
    &MCP_PROTOCOL_VERSION,
    &MCP_METHOD,
    &MCP_NAME,
    &LAST_EVENT_ID,
];

/// Request headers copied to the upstream. Everything else (hop-by-hop headers, the agent's
/// credentials, cookies, forwarding headers) stays behind.
static FORWARDED: [&HeaderName; 6] = [
    &header::ACCEPT,
    &MCP_SESSION_ID,
    &MCP_PROTOCOL_VERSION,
    &MCP_METHOD,
    &MCP_NAME,
    &LAST_EVENT_ID,
];

/// Response headers never copied back to the agent: hop-by-hop, and framing the gateway redoes.
const NOT_RETURNED: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    "content-encoding",
    "set-cookie",
];

/// Rejects requests whose framing or headers two HTTP implementations could read differently.
pub fn check_request(headers: &HeaderMap) -> Result<(), Refusal> {
    if headers.contains_key(header::TRANSFER_ENCODING)
        && headers.contains_key(header::CONTENT_LENGTH)
    {
        return Err(Refusal::Framing(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    if headers.get_all(header::CONTENT_LENGTH).iter().count() > 1 {
        return Err(Refusal::Framing("more than one Content-Length"));
    }
    // keys_len counts distinct names: equal to len, no name repeats and the loop has nothing to find.
    for name in SINGLE
        .iter()
        .filter(|_| headers.keys_len() != headers.len())
    {
        if headers.get_all(*name).iter().count() > 1 {
            return Err(Refusal::BadHeader(format!("{name} appears more than once")));
        }
    }
    // 2026-07-28's argument mirrors: a server may route or decide on them, and two copies
    // could be read two ways.
    if headers.keys_len() != headers.len()
        && let Some(name) = headers.keys().find(|n| {
            n.as_str().starts_with("mcp-param-") && headers.get_all(*n).iter().count() > 1
        })
    {
        return Err(Refusal::BadHeader(format!("{name} appears more than once")));
    }
    if let Some(name) = headers.keys().find(|n| n.as_str().contains('_')) {
        // Some servers fold '_' into '-' (CGI style): a header could then mean two things.
        return Err(Refusal::BadHeader(format!(
            "header name {:?} contains an underscore",
            name.as_str()
        )));
    }
    if let Some(enc) = headers.get(header::CONTENT_ENCODING) {
        let enc = String::from_utf8_lossy(enc.as_bytes()).into_owned();
        if !enc.eq_ignore_ascii_case("identity") {
            return Err(Refusal::ContentEncoding(enc));
        }
    }
    Ok(())
}

/// A header's value as visible ASCII text, or a refusal naming it.
pub fn text<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>, Refusal> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(Some)
            .map_err(|_| Refusal::BadHeader(format!("{name} is not visible ASCII"))),
    }
}

/// The POST body must be JSON, in UTF-8: the gateway checks it as UTF-8, and an upstream that
/// honoured another charset (UTF-7, say) would read other JSON from the same bytes. The only
/// parameter accepted is `charset=utf-8`.
pub fn check_json_content_type(headers: &HeaderMap) -> Result<(), Refusal> {
    let ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let mut parts = v.split(';');
            parts
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
                && parts.all(|p| match p.split_once('=') {
                    Some((name, value)) => {
                        name.trim().eq_ignore_ascii_case("charset")
                            && value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
                    }
                    None => p.trim().is_empty(),
                })
        });
    if ok {
        Ok(())
    } else {
        Err(Refusal::ContentType)
    }
}

/// An Origin header, when present, must be a loopback origin: the listener serves local agents,
/// and anything else is a browser being used for DNS rebinding.
pub fn check_origin(headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let text = origin.to_str().unwrap_or_default();
    let host = url::Url::parse(text)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned));
    match host.as_deref() {
        Some("localhost" | "127.0.0.1" | "[::1]") => Ok(()),
        _ => Err(Refusal::Origin(text.to_owned())),
    }
}

/// 2026-07-28's `Mcp-Method` / `Mcp-Name`: required from that revision on, and in every revision,
/// when present, they must say what the body says (a gateway deciding on headers could
/// otherwise be bypassed).
pub fn check_method_headers(
    headers: &HeaderMap,
    messages: &[Message],
    revision: Revision,
) -> Result<(), Refusal> {
    let method = text(headers, &MCP_METHOD)?;
    let name = text(headers, &MCP_NAME)?;
    if messages.len() != 1 {
        if method.is_some() || name.is_some() {
            return Err(Refusal::BadHeader(
                "Mcp-Method and Mcp-Name cannot describe a batch".into(),
            ));
        }
        return Ok(());
    }
    let message = &messages[0];
    let Some(body_method) = message.method.as_deref() else {
        // Responses to server requests carry no method.
        return match method {
            Some(m) => Err(Refusal::HeaderMismatch {
                header: "Mcp-Method",
                header_value: m.to_owned(),
                body_value: String::new(),
            }),
            None => Ok(()),
        };
    };
    match method {
        Some(m) if m != body_method => {
            return Err(Refusal::HeaderMismatch {
                header: "Mcp-Method",
                header_value: m.to_owned(),
                body_value: body_method.to_owned(),
            });
        }
        None if revision.requires_method_headers() => {
            return Err(Refusal::MissingHeader {
                header: "Mcp-Method",
                revision: revision.as_str(),
            });
        }
        _ => {}
    }
    let decoded = name.map(decode_header_value);
    match (name, message.target.header_name()) {
        (Some(h), Some(b)) if decoded.flatten().as_deref() != Some(b) => {
            Err(Refusal::HeaderMismatch {
                header: "Mcp-Name",
                header_value: h.to_owned(),
                body_value: b.to_owned(),
            })
        }
        (Some(h), None) => Err(Refusal::HeaderMismatch {
            header: "Mcp-Name",
            header_value: h.to_owned(),
            body_value: String::new(),
        }),
        (None, Some(_)) if revision.requires_method_headers() => Err(Refusal::MissingHeader {
            header: "Mcp-Name",
            revision: revision.as_str(),
        }),
        _ => Ok(()),
    }
}

/// A 2026-07-28 header value as the sender meant it. Values that would not survive as a header
/// (non-ASCII, control characters, edge whitespace) travel as `=?base64?<UTF-8 in base64>?=`;
/// anything else is itself. `None` for a malformed wrapper (bad or non-canonical base64, bad
/// UTF-8), which then matches no body value.
fn decode_header_value(value: &str) -> Option<std::borrow::Cow<'_, str>> {
    use base64::Engine;
    let Some(payload) = value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    else {
        return Some(value.into());
    };
    let engine = &base64::engine::general_purpose::STANDARD;
    let bytes = engine.decode(payload).ok()?;
    // Only the one spelling the encoder produces: no second way to write the same name.
    if engine.encode(&bytes) != payload {
        return None;
    }
    String::from_utf8(bytes).ok().map(Into::into)
}

/// The headers sent upstream: an allowlist of the agent's, plus `Accept-Encoding: identity` so
/// the gateway can read what comes back. A body's `Content-Type` is the gateway's own
/// `application/json`: the agent's parameters, checked or not, stay behind.
pub fn upstream_request(agent: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(FORWARDED.len() + 3);
    // One pass over what the agent sent (a handful of headers) rather than a lookup per name.
    for (name, value) in agent {
        if name == header::CONTENT_TYPE {
            out.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        } else if FORWARDED.contains(&name) {
            // The first copy only, as `HeaderMap::get` would read it.
            out.entry(name).or_insert_with(|| value.clone());
        } else if name.as_str().starts_with("mcp-param-") {
            out.append(name.clone(), value.clone());
        }
    }
    out.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    out
}

/// The upstream's response headers the agent gets. Headers the upstream's `Connection` header
/// names are hop-by-hop too (RFC 9110 §7.6.1): they were meant for the gateway alone.
pub fn agent_response(upstream: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(upstream.len());
    let hop = |name: &HeaderName| {
        upstream
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case(name.as_str()))
    };
    let named = upstream.contains_key(header::CONNECTION);
    for (name, value) in upstream {
        let dropped = NOT_RETURNED.contains(&name.as_str()) || (named && hop(name));
        if !dropped {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mcp::message::parse_body;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn framing_and_duplicates_are_refused() {
        assert!(matches!(
            check_request(&h(&[
                ("content-length", "1"),
                ("transfer-encoding", "chunked")
            ])),
            Err(Refusal::Framing(_))
        ));
        assert!(matches!(
            check_request(&h(&[("content-length", "1"), ("content-length", "1")])),
            Err(Refusal::Framing(_))
        ));
        assert!(matches!(
            check_request(&h(&[("mcp-session-id", "a"), ("mcp-session-id", "b")])),
            Err(Refusal::BadHeader(_))
        ));
        assert!(matches!(
            check_request(&h(&[("mcp-param-path", "/a"), ("mcp-param-path", "/b")])),
            Err(Refusal::BadHeader(_))
        ));
        assert!(check_request(&h(&[("mcp-param-path", "/a"), ("mcp-param-mode", "r")])).is_ok());
        assert!(matches!(
            check_request(&h(&[("x_forwarded", "a")])),
            Err(Refusal::BadHeader(_))
        ));
        assert!(matches!(
            check_request(&h(&[("content-encoding", "gzip")])),
            Err(Refusal::ContentEncoding(_))
        ));
        assert!(
            check_request(&h(&[
                ("content-length", "1"),
                ("content-type", "application/json")
            ]))
            .is_ok()
        );
    }

    #[test]
    fn wrapped_header_values_are_read_as_their_sender_meant_them() {
        assert_eq!(decode_header_value("echo").as_deref(), Some("echo"));
        // "café" and a name with a leading space, as the Python SDK wraps them.
        assert_eq!(
            decode_header_value("=?base64?Y2Fmw6k=?=").as_deref(),
            Some("café")
        );
        assert_eq!(
            decode_header_value("=?base64?IHg=?=").as_deref(),
            Some(" x")
        );
        for bad in ["=?base64?!!?=", "=?base64?Y2Fmw6l=?=", "=?base64?/w==?="] {
            assert_eq!(decode_header_value(bad), None, "{bad}");
        }
        let body = parse_body(
            &bytes::Bytes::from(
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"café"}}"#,
            ),
            false,
            "2026-07-28",
        )
        .unwrap();
        let check = |name: &'static str| {
            check_method_headers(
                &h(&[("mcp-method", "tools/call"), ("mcp-name", name)]),
                body.messages(),
                Revision::parse("2026-07-28").unwrap(),
            )
        };
        assert!(check("=?base64?Y2Fmw6k=?=").is_ok());
        assert!(matches!(
            check("=?base64?ZWNobw==?="),
            Err(Refusal::HeaderMismatch { .. })
        ));
        assert!(matches!(check("cafe"), Err(Refusal::HeaderMismatch { .. })));
    }

    #[test]
    fn headers_the_upstreams_connection_header_names_stay_behind() {
        let out = agent_response(&h(&[
            ("connection", "keep-alive, X-Internal-Token"),
            ("x-internal-token", "secret"),
            ("content-type", "application/json"),
            ("mcp-session-id", "s1"),
        ]));
        assert!(out.get("x-internal-token").is_none());
        assert!(out.get("connection").is_none());
        assert_eq!(out.get("mcp-session-id").unwrap(), "s1");
        assert_eq!(out.get("content-type").unwrap(), "application/json");
    }

    #[test]
    fn only_utf8_json_is_accepted_and_the_upstream_gets_plain_application_json() {
        for ok in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=\"UTF-8\"",
        ] {
            assert!(
                check_json_content_type(&h(&[("content-type", ok)])).is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "text/plain",
            "application/json; charset=utf-7",
            "application/json; charset=utf-16le",
            "application/json; boundary=x",
            "application/json; charset",
            "application/jsonx",
        ] {
            assert!(
                matches!(
                    check_json_content_type(&h(&[("content-type", bad)])),
                    Err(Refusal::ContentType)
                ),
                "{bad}"
            );
        }
        assert!(check_json_content_type(&h(&[])).is_err());
        let out = upstream_request(&h(&[
            ("content-type", "application/json; charset=UTF-8"),
            ("accept", "application/json"),
        ]));
        assert_eq!(out.get(header::CONTENT_TYPE).unwrap(), "application/json");
        assert_eq!(out.get(header::ACCEPT).unwrap(), "application/json");
        assert!(
            upstream_request(&h(&[]))
                .get(header::CONTENT_TYPE)
                .is_none()
        );
    }

    #[test]
    fn method_headers_must_match_the_body() {
        let body = parse_body(
            &bytes::Bytes::from_static(
                br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#,
            ),
            false,
            "x",
        )
        .unwrap();
        let body = body.messages();
        let r = Revision::V2026_07_28;
        assert!(
            check_method_headers(
                &h(&[("mcp-method", "tools/call"), ("mcp-name", "echo")]),
                body,
                r
            )
            .is_ok()
        );
        assert!(matches!(
            check_method_headers(
                &h(&[("mcp-method", "tools/call"), ("mcp-name", "other")]),
                body,
                r
            ),
            Err(Refusal::HeaderMismatch {
                header: "Mcp-Name",
                ..
            })
        ));
        assert!(matches!(
            check_method_headers(
                &h(&[("mcp-method", "tools/list"), ("mcp-name", "echo")]),
                body,
                r
            ),
            Err(Refusal::HeaderMismatch {
                header: "Mcp-Method",
                ..
            })
        ));
        assert!(matches!(
            check_method_headers(&h(&[("mcp-method", "tools/call")]), body, r),
            Err(Refusal::MissingHeader { .. })
        ));
        assert!(matches!(
            check_method_headers(&h(&[]), body, r),
            Err(Refusal::MissingHeader { .. })
        ));
        // Older revisions need no headers, but a header that is present must still match.
        assert!(check_method_headers(&h(&[]), body, Revision::V2025_11_25).is_ok());
        assert!(
            check_method_headers(&h(&[("mcp-name", "other")]), body, Revision::V2025_11_25)
                .is_err()
        );
    }

    #[test]
    fn only_allowlisted_headers_go_upstream() {
        let agent = h(&[
            ("authorization", "Bearer agent-token"),
            ("cookie", "a=b"),
            ("mcp-session-id", "s1"),
            ("mcp-param-region", "eu"),
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
        ]);
        let up = upstream_request(&agent);
        assert_eq!(up.get("mcp-session-id").unwrap(), "s1");
        assert_eq!(up.get("mcp-param-region").unwrap(), "eu");
        for gone in ["authorization", "cookie", "connection", "x-secret"] {
            assert!(!up.contains_key(gone), "{gone} was forwarded");
        }
    }

    #[test]
    fn origins_other_than_loopback_are_refused() {
        assert!(check_origin(&h(&[("origin", "http://localhost:3000")])).is_ok());
        assert!(check_origin(&h(&[])).is_ok());
        assert!(check_origin(&h(&[("origin", "http://evil.example")])).is_err());
        assert!(check_origin(&h(&[("origin", "null")])).is_err());
    }
}
