//! HTTP header rules: framing ambiguity, headers that must appear at most once, what crosses to
//! the upstream and what comes back.

use http::{HeaderMap, HeaderName, HeaderValue, header};

use super::refusal::Refusal;
use crate::mcp::{
    Message, Revision, Target,
    param_headers::{self, Declarations},
};

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

/// Response headers copied back to the agent, each at most once. Everything else stays behind:
/// hop-by-hop and framing headers (the gateway redoes framing), cookies, and anything about the
/// upstream's own authentication or whereabouts (`WWW-Authenticate` would send an MCP client
/// into an OAuth flow against the upstream, for a credential only the gateway may hold;
/// `Location` would send it around the gateway).
static RETURNED: [&HeaderName; 6] = [
    &header::CONTENT_TYPE,
    &header::CACHE_CONTROL,
    &header::RETRY_AFTER,
    &header::ALLOW,
    &MCP_SESSION_ID,
    &MCP_PROTOCOL_VERSION,
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

/// The `charset` parameter of a `Content-Type`, when it has one (quotes removed).
pub fn charset(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    value.split(';').skip(1).find_map(|p| {
        let (name, value) = p.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches('"').trim())
    })
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

/// The name a request was addressed to (its Host header, else the URI's authority, as HTTP/2
/// sends it) must be an IP address, `localhost`, one of `allowed`, or `own` (an intercepted
/// connection's server's own name): a browser that DNS rebinding pointed at the listener, or at
/// an intercepted server's address, sends the attacker's name, and its GET requests carry no
/// Origin. A request without either is no browser's.
pub fn check_host(
    headers: &HeaderMap,
    uri: &http::Uri,
    allowed: &[String],
    own: Option<&str>,
) -> Result<(), Refusal> {
    let authority = match headers.get(header::HOST) {
        Some(v) => v
            .to_str()
            .map_err(|_| Refusal::Host(String::from_utf8_lossy(v.as_bytes()).into_owned()))?,
        None => match uri.authority() {
            Some(a) => a.as_str(),
            None => return Ok(()),
        },
    };
    let bad = || Refusal::Host(authority.chars().take(255).collect());
    // An IPv6 literal is bracketed; anything else may end in a port.
    if let Some(rest) = authority.strip_prefix('[') {
        return match rest.split_once(']') {
            Some((ip, port))
                if ip.parse::<std::net::Ipv6Addr>().is_ok()
                    && (port.is_empty() || port.strip_prefix(':').is_some_and(is_port)) =>
            {
                Ok(())
            }
            _ => Err(bad()),
        };
    }
    let name = match authority.rsplit_once(':') {
        Some((name, port)) if is_port(port) => name,
        Some(_) => return Err(bad()),
        None => authority,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.parse::<std::net::Ipv4Addr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
        || own.is_some_and(|own| {
            own.strip_suffix('.')
                .unwrap_or(own)
                .eq_ignore_ascii_case(name)
        })
    {
        Ok(())
    } else {
        Err(bad())
    }
}

fn is_port(text: &str) -> bool {
    (1..=5).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())
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
    let decoded = name.map(param_headers::decode);
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

/// `Mcp-Param-*` headers mirror tool call arguments: on any other request (a GET, a DELETE,
/// another method) they describe nothing the gateway could check.
pub fn check_no_param_headers(headers: &HeaderMap) -> Result<(), Refusal> {
    match headers
        .keys()
        .find(|n| n.as_str().starts_with(param_headers::PREFIX))
    {
        Some(h) => Err(Refusal::ParamHeader {
            header: h.as_str().to_owned(),
            problem: "belongs to tools/call requests only".into(),
        }),
        None => Ok(()),
    }
}

/// 2026-07-28's `Mcp-Param-*` headers against the body. An intermediary may route on them
/// without reading the body, so they must say what the body says. `declared` gives what the
/// tool's pinned definition, as seen in a tools/list result, declares (`x-mcp-header`); `None`
/// while it has not been seen: headers for such a tool are refused.
pub fn check_param_headers(
    headers: &HeaderMap,
    messages: &[Message],
    revision: Revision,
    declared: impl FnOnce(&str) -> Option<std::sync::Arc<Declarations>>,
) -> Result<(), Refusal> {
    let sent = || {
        headers
            .keys()
            .filter(|n| n.as_str().starts_with(param_headers::PREFIX))
    };
    let any_sent = sent().next().is_some();
    if !any_sent && !revision.requires_method_headers() {
        return Ok(());
    }
    let refuse = |header: &str, problem: String| {
        Err(Refusal::ParamHeader {
            header: header.to_owned(),
            problem,
        })
    };
    let (name, arguments) = match messages {
        [message] => match &message.target {
            Target::Tool { name, arguments } => (name, arguments),
            _ => return check_no_param_headers(headers),
        },
        _ => {
            return match sent().next() {
                Some(h) => refuse(h.as_str(), "cannot describe a batch".into()),
                None => Ok(()),
            };
        }
    };
    let Some(declarations) = declared(name) else {
        // Nothing to check them against (after a restart, say). Refused with the code whose
        // recovery the specification gives clients: list the tools again (through the gateway,
        // which then learns the definition) and resend once. Without headers there is nothing
        // an intermediary could route on, and the upstream checks for missing ones itself.
        return match sent().next() {
            Some(h) => refuse(
                h.as_str(),
                format!(
                    "cannot be checked: the gateway has not seen a definition of tool {name:?} yet; list the tools (tools/list) and retry"
                ),
            ),
            None => Ok(()),
        };
    };
    if let Some(h) = sent().find(|h| declarations.get(h.as_str()).is_none()) {
        let why = match &declarations.invalid {
            Some(why) => format!(" (its x-mcp-header declarations are invalid: {why})"),
            None => String::new(),
        };
        return refuse(
            h.as_str(),
            format!("is not one that tool {name:?} declares{why}"),
        );
    }
    let raw = arguments.as_ref().and_then(|a| a.raw());
    for d in &declarations.headers {
        let value = raw
            .and_then(|raw| {
                d.path.iter().try_fold(raw, |at, key| {
                    crate::mcp::message::raw_member(at, key).map(|v| v.get())
                })
            })
            .and_then(|text| serde_json::from_str::<serde_json::Value>(text).ok())
            .filter(|v| !v.is_null());
        let argument = d.argument();
        match (headers.get(d.key.as_str()), value) {
            (None, None) => {}
            (Some(_), None) => {
                return refuse(
                    &d.header,
                    format!("is present, but argument {argument:?} is absent or null in the body"),
                );
            }
            (None, Some(v)) => {
                if param_headers::mirrored(&v) && revision.requires_method_headers() {
                    return refuse(
                        &d.header,
                        format!("is missing, but argument {argument:?} is in the body"),
                    );
                }
            }
            (Some(h), Some(v)) => {
                let Some(text) = h.to_str().ok().and_then(param_headers::decode) else {
                    return refuse(
                        &d.header,
                        "is neither plain ASCII nor a well-formed =?base64?...?= value".into(),
                    );
                };
                if !param_headers::agrees(&text, &v, d) {
                    return refuse(
                        &d.header,
                        format!("says {text:?} but argument {argument:?} in the body is {v}"),
                    );
                }
            }
        }
    }
    Ok(())
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

/// The upstream's response headers the agent gets: the first copy of each of [`RETURNED`],
/// unless the upstream's `Connection` header names it, which makes it hop-by-hop (RFC 9110
/// §7.6.1), meant for the gateway alone. A value holding a configured secret stays behind (an
/// upstream could make its session id of the credential it was given), and so does a session
/// id that is not visible ASCII, as MCP requires: the agent sends it back on every request.
pub fn agent_response(upstream: &HeaderMap, secrets: &crate::credentials::Scrubber) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(RETURNED.len());
    let hop = |name: &HeaderName| {
        upstream
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case(name.as_str()))
    };
    let named = upstream.contains_key(header::CONNECTION);
    for name in RETURNED {
        if let Some(value) = upstream.get(name)
            && !(named && hop(name))
        {
            if secrets.found_in(value.as_bytes()) {
                tracing::warn!(header = %name, "Withheld an upstream response header that holds a configured secret.");
                continue;
            }
            if *name == MCP_SESSION_ID && !visible_ascii(value.as_bytes()) {
                tracing::warn!("Withheld an upstream session id that is not visible ASCII.");
                continue;
            }
            out.insert(name.clone(), value.clone());
        }
    }
    out
}

/// Whether `bytes` are all visible ASCII (0x21 to 0x7E), as MCP session ids must be.
pub fn visible_ascii(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| (0x21..=0x7e).contains(b))
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
    fn only_addresses_localhost_and_allowed_names_are_served() {
        let allowed = ["gateway.internal".to_owned()];
        let uri: http::Uri = "/servers/a/mcp".parse().unwrap();
        let ok = |host: &'static str| check_host(&h(&[("host", host)]), &uri, &allowed, None);
        for good in [
            "127.0.0.1:15001",
            "127.0.0.1",
            "10.1.2.3:80",
            "[::1]:15001",
            "[::1]",
            "localhost:15001",
            "LOCALHOST",
            "localhost.:15001",
            "gateway.internal:15001",
            "Gateway.Internal",
        ] {
            assert!(ok(good).is_ok(), "{good}");
        }
        for bad in [
            "attacker.example:15001",
            "attacker.example",
            "localhost.attacker.example",
            "127.0.0.1.nip.io",
            "gateway.internal.attacker.example",
            "[::1]x",
            "[not-an-ip]:1",
            "127.0.0.1:port",
            "localhost:123456",
            "",
        ] {
            assert!(matches!(ok(bad), Err(Refusal::Host(_))), "{bad}");
        }
        // HTTP/2 sends the name in the URI's authority instead.
        let h2: http::Uri = "http://attacker.example:15001/servers/a/mcp"
            .parse()
            .unwrap();
        assert!(check_host(&HeaderMap::new(), &h2, &allowed, None).is_err());
        let h2: http::Uri = "http://127.0.0.1:15001/servers/a/mcp".parse().unwrap();
        assert!(check_host(&HeaderMap::new(), &h2, &allowed, None).is_ok());
        // Neither: no browser sent it.
        assert!(check_host(&HeaderMap::new(), &uri, &[], None).is_ok());
        // An intercepted connection's server is reached by its own name too, and only that.
        let own =
            |host: &'static str| check_host(&h(&[("host", host)]), &uri, &[], Some("mcp.internal"));
        for good in [
            "mcp.internal:8080",
            "MCP.internal",
            "mcp.internal.",
            "10.0.0.5:8080",
        ] {
            assert!(own(good).is_ok(), "{good}");
        }
        for bad in [
            "attacker.example:8080",
            "mcp.internal.attacker.example",
            "internal",
        ] {
            assert!(matches!(own(bad), Err(Refusal::Host(_))), "{bad}");
        }
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
        assert_eq!(param_headers::decode("echo").as_deref(), Some("echo"));
        // "café" and a name with a leading space, as the Python SDK wraps them.
        assert_eq!(
            param_headers::decode("=?base64?Y2Fmw6k=?=").as_deref(),
            Some("café")
        );
        assert_eq!(
            param_headers::decode("=?base64?IHg=?=").as_deref(),
            Some(" x")
        );
        for bad in ["=?base64?!!?=", "=?base64?Y2Fmw6l=?=", "=?base64?/w==?="] {
            assert_eq!(param_headers::decode(bad), None, "{bad}");
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
        let out = agent_response(
            &h(&[
                ("connection", "keep-alive, X-Internal-Token"),
                ("x-internal-token", "secret"),
                ("content-type", "application/json"),
                ("mcp-session-id", "s1"),
            ]),
            &Default::default(),
        );
        assert!(out.get("x-internal-token").is_none());
        assert!(out.get("connection").is_none());
        assert_eq!(out.get("mcp-session-id").unwrap(), "s1");
        assert_eq!(out.get("content-type").unwrap(), "application/json");
    }

    /// An upstream that makes its session id (or another returned header) of the credential
    /// the gateway gave it would hand that credential to the agent.
    #[test]
    fn returned_headers_holding_a_secret_or_an_odd_session_id_stay_behind() {
        let secrets = crate::credentials::Scrubber::of(&["sk-live-123456"]);
        let out = agent_response(
            &h(&[
                ("mcp-session-id", "Bearer sk-live-123456"),
                ("cache-control", "no-store, sk-live-123456"),
                ("content-type", "application/json"),
            ]),
            &secrets,
        );
        assert!(out.get("mcp-session-id").is_none() && out.get("cache-control").is_none());
        assert_eq!(out.get("content-type").unwrap(), "application/json");
        let out = agent_response(&h(&[("mcp-session-id", "a b")]), &secrets);
        assert!(out.get("mcp-session-id").is_none());
        let out = agent_response(&h(&[("mcp-session-id", "a-b_c.1")]), &secrets);
        assert_eq!(out.get("mcp-session-id").unwrap(), "a-b_c.1");
    }

    #[test]
    fn only_mcp_and_content_headers_come_back_once_each() {
        let out = agent_response(
            &h(&[
                ("content-type", "text/event-stream"),
                ("cache-control", "no-store"),
                ("mcp-session-id", "s1"),
                ("mcp-session-id", "s2"),
                ("retry-after", "5"),
                (
                    "www-authenticate",
                    r#"Bearer resource_metadata="https://up/.well-known/oauth-protected-resource""#,
                ),
                ("location", "http://elsewhere/"),
                ("set-cookie", "sid=1"),
                ("access-control-allow-origin", "*"),
                ("alt-svc", "h3=\":443\""),
                ("content-length", "12"),
                ("transfer-encoding", "chunked"),
                ("content-encoding", "gzip"),
                ("x-upstream-debug", "internal"),
            ]),
            &Default::default(),
        );
        let mut names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "cache-control",
                "content-type",
                "mcp-session-id",
                "retry-after"
            ]
        );
        let sessions: Vec<_> = out.get_all("mcp-session-id").iter().collect();
        assert_eq!(
            sessions,
            ["s1"],
            "the first copy, as the gateway's own session check reads it"
        );
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
    fn param_headers_must_say_what_the_arguments_say() {
        use std::sync::Arc;

        let declarations = Arc::new(Declarations::of(Some(&serde_json::json!({
            "type": "object",
            "properties": {
                "region": {"type": "string", "x-mcp-header": "Region"},
                "target": {"type": "object", "properties": {
                    "shard": {"type": "integer", "x-mcp-header": "Shard"}
                }},
                "force": {"type": "boolean", "x-mcp-header": "Force"},
                "query": {"type": "string"}
            }
        }))));
        let check_in = |args: &str, pairs: &[(&'static str, &'static str)], rev| {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"route","arguments":{args}}}}}"#
            );
            let body = parse_body(&bytes::Bytes::from(body), false, "2026-07-28").unwrap();
            check_param_headers(&h(pairs), body.messages(), rev, |tool| {
                assert_eq!(tool, "route");
                Some(declarations.clone())
            })
        };
        let check = |args: &str, pairs: &[(&'static str, &'static str)]| {
            check_in(args, pairs, Revision::V2026_07_28)
        };
        let problem = |r: Result<(), Refusal>| match r {
            Err(Refusal::ParamHeader { header, problem }) => format!("{header} {problem}"),
            other => format!("not refused: {other:?}"),
        };
        let args = r#"{"region":"eu","target":{"shard":3},"force":false,"query":"q"}"#;
        let all = [
            ("mcp-param-region", "eu"),
            ("mcp-param-shard", "3"),
            ("mcp-param-force", "false"),
        ];
        assert!(check(args, &all).is_ok());
        // Null and absent arguments take no header; wrapped values are read unwrapped.
        assert!(check(r#"{"region":null}"#, &[]).is_ok());
        assert!(
            check(
                r#"{"region":"Z\u00fcrich"}"#,
                &[("mcp-param-region", "=?base64?WsO8cmljaA==?=")]
            )
            .is_ok()
        );
        assert!(check(r#"{"target":{"shard":3.0}}"#, &[("mcp-param-shard", "3")]).is_ok());
        // A value a client cannot mirror takes no header (the server's own validation refuses
        // it), and a header claiming one matches nothing.
        assert!(check(r#"{"region":["eu"]}"#, &[]).is_ok());
        assert!(
            problem(check(r#"{"region":["eu"]}"#, &[("mcp-param-region", "eu")]))
                .contains("says \"eu\"")
        );
        for (args, pairs, want) in [
            (
                args,
                &all[1..],
                "Mcp-Param-Region is missing, but argument \"region\" is in the body",
            ),
            (
                r#"{"region":"us","target":{"shard":3},"force":false}"#,
                &all[..],
                "Mcp-Param-Region says \"eu\" but argument \"region\" in the body is \"us\"",
            ),
            (
                r#"{"region":"eu","target":{"shard":4},"force":false}"#,
                &all[..],
                "Mcp-Param-Shard says \"3\" but argument \"target.shard\" in the body is 4",
            ),
            (
                r#"{"region":"eu","target":{"shard":3},"force":true}"#,
                &all[..],
                "Mcp-Param-Force says \"false\"",
            ),
            (
                r#"{"target":{"shard":3},"force":false}"#,
                &all[..],
                "Mcp-Param-Region is present, but argument \"region\" is absent or null",
            ),
            (
                r#"{"region":null,"target":{"shard":3},"force":false}"#,
                &all[..],
                "Mcp-Param-Region is present, but argument \"region\" is absent or null",
            ),
            (
                r#"{"region":"eu","target":[3],"force":false}"#,
                &all[..],
                "Mcp-Param-Shard is present, but argument \"target.shard\" is absent",
            ),
            (
                r#"{"region":"eu"}"#,
                &[("mcp-param-region", "eu"), ("mcp-param-tenant", "acme")][..],
                "mcp-param-tenant is not one that tool \"route\" declares",
            ),
            (
                r#"{"region":"eu"}"#,
                &[("mcp-param-region", "=?base64?ZXU?=")][..],
                "well-formed =?base64?...?= value",
            ),
        ] {
            let got = problem(check(args, pairs));
            assert!(got.contains(want), "{args} {pairs:?}: {got}");
        }
        // Before 2026-07-28 clients mirror nothing: a missing header is no mismatch, a present
        // one still has to match.
        let old = Revision::V2025_11_25;
        assert!(check_in(args, &[], old).is_ok());
        assert!(check_in(r#"{"region":"us"}"#, &[("mcp-param-region", "eu")], old).is_err());
        // Errors carry the header-mismatch code and a 400.
        let e = check(r#"{"region":"us"}"#, &[("mcp-param-region", "eu")]).unwrap_err();
        assert_eq!(
            (e.status(), e.code()),
            (http::StatusCode::BAD_REQUEST, -32020)
        );
    }

    #[test]
    fn param_headers_outside_a_known_tool_call() {
        let parse = |body: &str| {
            parse_body(&bytes::Bytes::from(body.to_owned()), true, "2025-03-26").unwrap()
        };
        let region = [("mcp-param-region", "eu")];
        let call = parse(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"region":"us"}}}"#,
        );
        // No definition of the tool seen yet: nothing to check them against.
        let unseen = |pairs| {
            check_param_headers(&h(pairs), call.messages(), Revision::V2026_07_28, |_| None)
        };
        let e = unseen(&region).unwrap_err().to_string();
        assert!(e.contains("has not seen a definition of tool \"t\""), "{e}");
        assert!(unseen(&[]).is_ok());
        // A tool whose declarations are invalid declares none, and says why.
        let invalid = std::sync::Arc::new(Declarations::of(Some(&serde_json::json!(
            {"properties": {"region": {"type": "object", "x-mcp-header": "Region"}}}
        ))));
        let e = check_param_headers(&h(&region), call.messages(), Revision::V2026_07_28, |_| {
            Some(invalid.clone())
        });
        assert!(
            e.unwrap_err()
                .to_string()
                .contains("declarations are invalid")
        );
        let list = parse(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
        let e = check_param_headers(&h(&region), list.messages(), Revision::V2026_07_28, |_| {
            None
        });
        assert!(
            e.unwrap_err()
                .to_string()
                .contains("tools/call requests only")
        );
        assert!(
            check_param_headers(&h(&[]), list.messages(), Revision::V2026_07_28, |_| None).is_ok()
        );
        let batch = parse(
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"ping"}]"#,
        );
        let e = check_param_headers(&h(&region), batch.messages(), Revision::V2025_03_26, |_| {
            None
        });
        assert!(e.unwrap_err().to_string().contains("batch"));
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
