//! The admin listener: `/healthz`, Prometheus `/metrics`, `/connections` (the live
//! intercepted connections with their identities), `POST /policy/reload`, and the audit log's
//! `/audit/query`, `/audit/export` and `/audit/public-key`, and the token service's
//! `/.well-known/jwks.json`. It never decides. What shows records or identities, or reloads
//! the policy, is served to root and the gateway's own user only.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::{
    drain::Drain,
    proxy::{Body, BoxError, Gateway, lock},
};

/// Connections the admin API serves at once. Any local process can connect: without a cap, one
/// that holds thousands open would take the descriptors the agents' listener needs.
const MAX_ADMIN_CONNECTIONS: usize = 64;
/// The largest body an admin request may have (a token request's JSON).
const MAX_BODY: usize = 64 << 10;

/// Wrong admin secrets one caller may present within [`WINDOW`] before `POST /tokens` refuses
/// it without looking (429) until the window ends.
const MAX_FAILURES: u32 = 5;
/// Refusals recorded in the audit log per caller within [`WINDOW`]: a caller looping on refused
/// requests must not fill the log (and, with retention, push real records out).
const MAX_RECORDED: u32 = 10;
const WINDOW: Duration = Duration::from_secs(60);
/// Callers counted at once; beyond them, callers share one count (the uids of a host are few,
/// the addresses a remote peer can use are not).
const MAX_TRACKED: usize = 1024;

/// Who is refused: the local user where the kernel tells, else the address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Caller {
    Uid(u32),
    Addr(std::net::IpAddr),
    Others,
}

impl Caller {
    fn of(uid: Option<u32>, peer: SocketAddr) -> Self {
        uid.map_or(Caller::Addr(peer.ip().to_canonical()), Caller::Uid)
    }
}

/// Events per caller within [`WINDOW`] of the first.
#[derive(Default)]
struct Counts(Mutex<HashMap<Caller, (u32, Instant)>>);

impl Counts {
    /// Counts one event of `caller`; returns how many it has had in the window (this one
    /// included) and when the window ends.
    fn add(&self, caller: Caller) -> (u32, Instant) {
        let now = Instant::now();
        let mut map = lock(&self.0);
        let caller = Self::key(&mut map, caller, now);
        let entry = map.entry(caller).or_insert((0, now));
        if now >= entry.1 + WINDOW {
            *entry = (0, now);
        }
        entry.0 = entry.0.saturating_add(1);
        (entry.0, entry.1 + WINDOW)
    }

    /// Checks an attempt of `caller` with `check`, unless it has failed [`MAX_FAILURES`]
    /// times in the window (`Err`: when the window ends). A failure counts, a success clears
    /// the count; under one lock, so attempts at once cannot all slip under the limit, nor
    /// right ones at once be refused.
    fn attempt(&self, caller: Caller, check: impl FnOnce() -> bool) -> Result<bool, Instant> {
        let now = Instant::now();
        let mut map = lock(&self.0);
        let key = Self::key(&mut map, caller, now);
        if let Some(&(count, since)) = map.get(&key)
            && count >= MAX_FAILURES
            && now < since + WINDOW
        {
            return Err(since + WINDOW);
        }
        if check() {
            if key == caller {
                map.remove(&caller);
            }
            return Ok(true);
        }
        let entry = map.entry(key).or_insert((0, now));
        if now >= entry.1 + WINDOW {
            *entry = (0, now);
        }
        entry.0 = entry.0.saturating_add(1);
        Ok(false)
    }

    /// Where `caller` is counted: under its own key, or, for an address when the map is full,
    /// with the others (never uncounted). A local user always has its own: the users of a host
    /// are few, and root must not share a count an attacker filled.
    fn key(map: &mut HashMap<Caller, (u32, Instant)>, caller: Caller, now: Instant) -> Caller {
        if map.contains_key(&caller) || matches!(caller, Caller::Uid(_)) {
            return caller;
        }
        if map.len() >= MAX_TRACKED {
            map.retain(|_, (_, since)| now < *since + WINDOW);
        }
        if map.len() >= MAX_TRACKED {
            Caller::Others
        } else {
            caller
        }
    }
}

/// The admin API's per-caller limits.
#[derive(Default)]
struct Limits {
    /// Wrong admin secrets.
    attempts: Counts,
    /// Refusals recorded.
    recorded: Counts,
}

/// Serves the admin API on `listener` until draining starts.
pub async fn serve(listener: TcpListener, gateway: Arc<Gateway>, drain: Drain) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_ADMIN_CONNECTIONS));
    let limits = Arc::new(Limits::default());
    loop {
        // Taken before accepting: further clients wait in the kernel's backlog.
        let slot = tokio::select! {
            _ = drain.signaled() => return,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = drain.signaled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    tracing::warn!(%error, "Admin listener failed to accept a connection.");
                    continue;
                }
            },
        };
        let gateway = gateway.clone();
        let limits = limits.clone();
        let conn_drain = drain.clone();
        let local = stream.local_addr().ok();
        drain.spawn(async move {
            let _slot = slot;
            let service = service_fn(move |mut req: Request<Incoming>| {
                let gateway = gateway.clone();
                let limits = limits.clone();
                async move {
                    let expects_continue = req
                        .headers()
                        .get(header::EXPECT)
                        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
                    let mut response = answer(&mut req, &gateway, &limits, peer, local).await;
                    // What was answered without reading the body (everything but a token
                    // request): read and drop it, or close the connection.
                    if !crate::proxy::discard_unread(
                        req.into_body(),
                        expects_continue,
                        MAX_BODY,
                        Duration::from_secs(1),
                    )
                    .await
                    {
                        response.headers_mut().insert(
                            header::CONNECTION,
                            header::HeaderValue::from_static("close"),
                        );
                    }
                    Ok::<_, Infallible>(response)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(5))
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = conn_drain.signaled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

/// One admin request, answered by path. A token request reads the body; nothing else does.
async fn answer(
    req: &mut Request<Incoming>,
    gateway: &Arc<Gateway>,
    limits: &Limits,
    peer: SocketAddr,
    local: Option<SocketAddr>,
) -> Response<Body> {
    // The admin API speaks plain HTTP on loopback: a rebound browser page must
    // not reach it either (its GETs carry no Origin), nor a page of another
    // origin posting a reload (its POSTs do).
    if let Err(refusal) = crate::proxy::headers::check_host(
        req.headers(),
        req.uri(),
        &gateway.config.listener.allowed_hosts,
        None,
    )
    .and_then(|()| crate::proxy::headers::check_origin(req.headers()))
    {
        return boxed(reply(
            StatusCode::FORBIDDEN,
            "text/plain",
            Bytes::from(format!("{refusal}\n")),
        ));
    }
    let uid = if guarded(req.uri().path()) {
        caller_uid(peer, local).await
    } else {
        None
    };
    if guarded(req.uri().path()) && !trusted(uid) {
        tracing::warn!(%peer, path = req.uri().path(), "Refused an admin request from a process that is neither root nor the gateway's user.");
        record_refusal(
            gateway,
            limits,
            peer,
            uid,
            req.uri().path(),
            "only root and the gateway's own user may use it",
        );
        return boxed(reply(
            StatusCode::FORBIDDEN,
            "text/plain",
            Bytes::from(format!(
                "only root and the gateway's own user may use {}\n",
                req.uri().path()
            )),
        ));
    }
    let path = req.uri().path();
    if matches!(path, "/audit/export" | "/audit/query") && req.method() == Method::GET {
        // Reading the log is itself recorded (PCI DSS 10.2.1.3).
        let mut r = crate::audit::Record::new(crate::audit::Event::AuditRead);
        r.peer = Some(peer.to_string());
        r.detail = Some(serde_json::json!({
            "path": path, "query": req.uri().query().unwrap_or(""), "uid": uid,
        }));
        gateway.record(r);
    }
    let response = match path {
        "/audit/export" if req.method() == Method::GET => {
            return export(req, gateway);
        }
        "/audit/query" if req.method() == Method::GET => audit(req, gateway).await,
        "/tokens" if req.method() == Method::POST => issue(req, gateway, limits, peer, local).await,
        "/policy/reload" if req.method() == Method::POST => reload(gateway.clone()).await,
        _ => route(req, gateway),
    };
    boxed(response)
}

/// Endpoints that show what agents did and who they are, or change what the gateway
/// enforces. Agents run on this host too, so loopback alone does not keep them out: these are
/// served to root and the gateway's own user only.
fn guarded(path: &str) -> bool {
    matches!(
        path,
        "/audit/query" | "/audit/export" | "/connections" | "/policy/reload"
    )
}

/// The user of the process at the other end of an admin connection. Only a local peer can be
/// told.
async fn caller_uid(peer: SocketAddr, local: Option<SocketAddr>) -> Option<u32> {
    let local = local?;
    // The kernel's socket table can be large: read it off the runtime's threads.
    tokio::task::spawn_blocking(move || peer_uid(peer, local))
        .await
        .ok()
        .flatten()
}

/// Whether a caller runs as root or as the gateway's user. One that cannot be told is not
/// trusted.
fn trusted(uid: Option<u32>) -> bool {
    uid.is_some_and(|uid| uid == 0 || uid == crate::ebpf::effective_uid())
}

/// Records an admin request refused (the audit trail of invalid access attempts): at most
/// [`MAX_RECORDED`] per caller a minute, the last of them saying so.
fn record_refusal(
    gateway: &Gateway,
    limits: &Limits,
    peer: SocketAddr,
    uid: Option<u32>,
    path: &str,
    why: &str,
) {
    let (count, _) = limits.recorded.add(Caller::of(uid, peer));
    if count > MAX_RECORDED {
        return;
    }
    let mut r = crate::audit::Record::new(crate::audit::Event::AdminRefused);
    r.peer = Some(peer.to_string());
    let mut detail = serde_json::json!({ "path": path, "reason": why, "uid": uid });
    if count == MAX_RECORDED {
        detail["more_not_recorded"] = format!(
            "this caller's further refusals within the minute are not recorded (at most {MAX_RECORDED})"
        )
        .into();
    }
    r.detail = Some(detail);
    gateway.record(r);
}

/// The owner of the local socket `peer` whose connection reached `local`, from the kernel's
/// socket table (/proc/net/tcp or tcp6: addresses in hex, each 32-bit word in host order).
fn peer_uid(peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    // An IPv4 client of a dual-stack listener shows as ::ffff:a.b.c.d here, but its own socket
    // is an IPv4 one, listed in /proc/net/tcp.
    let canonical = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let (peer, local) = (canonical(peer), canonical(local));
    fn hex(addr: SocketAddr) -> String {
        let ip = match addr.ip() {
            std::net::IpAddr::V4(ip) => format!("{:08X}", u32::from_ne_bytes(ip.octets())),
            std::net::IpAddr::V6(ip) => ip
                .octets()
                .chunks_exact(4)
                .map(|w| format!("{:08X}", u32::from_ne_bytes([w[0], w[1], w[2], w[3]])))
                .collect(),
        };
        format!("{ip}:{:04X}", addr.port())
    }
    let table = if peer.is_ipv4() {
        "/proc/net/tcp"
    } else {
        "/proc/net/tcp6"
    };
    let text = std::fs::read_to_string(table).ok()?;
    let (from, to) = (hex(peer), hex(local));
    // Established only: a closed socket lingering in TIME_WAIT is listed as root's.
    text.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        (fields.get(1) == Some(&from.as_str())
            && fields.get(2) == Some(&to.as_str())
            && fields.get(3) == Some(&"01"))
        .then(|| fields.get(7)?.parse().ok())
        .flatten()
    })
}

/// A policy reload, off the runtime's threads: it reads files, and waits for a reload already
/// under way.
async fn reload(gateway: Arc<Gateway>) -> Response<Full<Bytes>> {
    match tokio::task::spawn_blocking(move || gateway.reload_policy()).await {
        Ok(Ok(rules)) => reply(
            StatusCode::OK,
            "text/plain",
            Bytes::from(format!("reloaded: {rules} rules\n")),
        ),
        Ok(Err(e)) => reply(
            StatusCode::BAD_REQUEST,
            "text/plain",
            Bytes::from(format!("refused, the previous policy stays: {e}\n")),
        ),
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            Bytes::from(format!(
                "the reload failed, the previous policy stays: {e}\n"
            )),
        ),
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    resp
}

fn route(req: &Request<Incoming>, gateway: &Gateway) -> Response<Full<Bytes>> {
    let audit_failed = gateway.audit.as_ref().is_some_and(|a| a.failed());
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") if audit_failed => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            Bytes::from_static(b"audit log failed: requests are refused (see the error log)\n"),
        ),
        (&Method::GET, "/healthz") => {
            reply(StatusCode::OK, "text/plain", Bytes::from_static(b"ok\n"))
        }
        (&Method::GET, "/metrics") => {
            gateway.metrics.audit_failed.set(i64::from(audit_failed));
            reply(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                Bytes::from(gateway.metrics.render()),
            )
        }
        (&Method::GET, "/.well-known/jwks.json") => match &gateway.tokens {
            Some(t) => reply(
                StatusCode::OK,
                "application/json",
                Bytes::from(t.jwks().to_string()),
            ),
            None => reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                Bytes::from_static(b"tokens are disabled\n"),
            ),
        },
        (&Method::GET, "/audit/public-key") => match &gateway.audit {
            Some(a) => reply(
                StatusCode::OK,
                "text/plain",
                Bytes::from(format!("{}\n", a.public_key())),
            ),
            None => reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                Bytes::from_static(b"audit is disabled\n"),
            ),
        },
        (&Method::GET, "/connections") => reply(
            StatusCode::OK,
            "application/json",
            Bytes::from(serde_json::to_vec(&gateway.live.list()).unwrap_or_default()),
        ),
        (
            _,
            "/healthz"
            | "/metrics"
            | "/connections"
            | "/policy/reload"
            | "/audit/query"
            | "/audit/export"
            | "/audit/public-key"
            | "/.well-known/jwks.json",
        ) => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            Bytes::from_static(b"method not allowed\n"),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"not found\n"),
        ),
    }
}

fn boxed(response: Response<Full<Bytes>>) -> Response<Body> {
    response.map(|b| b.map_err(|never| match never {}).boxed_unsync())
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    reply(status, "text/plain", Bytes::from(body))
}

/// `GET /audit/export`: every record with its chain hash, and every checkpoint, as JSON lines,
/// streamed a segment at a time (a log of many gigabytes is never held in memory whole: a few
/// segments' worth at most), up to
/// what was durable when it was asked for (a record not yet synced could be lost to a power cut
/// and its number reused). A segment that cannot be read ends the body with an error, never
/// cleanly, so that no consumer takes a short export for the whole log.
fn export(req: &Request<Incoming>, gateway: &Gateway) -> Response<Body> {
    let Some(recorder) = &gateway.audit else {
        return boxed(text(StatusCode::NOT_FOUND, "audit is disabled\n".into()));
    };
    if req.uri().query().is_some_and(|q| !q.is_empty()) {
        return boxed(text(
            StatusCode::BAD_REQUEST,
            "/audit/export takes no parameters\n".into(),
        ));
    }
    // HTTP/1.0 has no chunked bodies: a broken export would end like a whole one.
    if req.version() < http::Version::HTTP_11 {
        return boxed(text(
            StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            "/audit/export streams: ask with HTTP/1.1\n".into(),
        ));
    }
    let dir = recorder.config().dir.clone();
    let durable = recorder.durable_mark().get();
    // Two segments in flight at most: the reader waits for a slow consumer.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, String>>(2);
    tokio::task::spawn_blocking(move || {
        use crate::audit::log::Item;
        let read = crate::audit::query::Follower::new(&dir, None).poll_each(|items| {
            let mut chunk = String::new();
            let mut beyond = false;
            for item in &items {
                let seq = match item {
                    Item::Record { record, .. } => record.seq,
                    Item::Checkpoint(cp) => cp.seq,
                };
                if seq >= durable {
                    beyond = true;
                    break;
                }
                if let Some(line) = crate::audit::query::export_line(item) {
                    chunk.push_str(&line);
                    chunk.push('\n');
                }
            }
            // Stops once the consumer has gone, or past the durable mark.
            tx.blocking_send(Ok(Bytes::from(chunk))).is_ok() && !beyond
        });
        if let Err(e) = read {
            tracing::warn!(error = %e, "An audit export stopped at a segment that cannot be read.");
            let _ = tx.blocking_send(Err(e));
        }
    });
    let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((chunk.map(Frame::data).map_err(BoxError::from), rx))
    });
    let mut resp = Response::new(StreamBody::new(chunks).boxed_unsync());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/jsonl"),
    );
    resp
}

/// `GET /audit/query?agent=..&tool=..&since=15m&limit=100`: JSON lines of matching records.
async fn audit(req: &Request<Incoming>, gateway: &Gateway) -> Response<Full<Bytes>> {
    let Some(recorder) = &gateway.audit else {
        return text(StatusCode::NOT_FOUND, "audit is disabled\n".into());
    };
    let dir = recorder.config().dir.clone();
    let query = req.uri().query().unwrap_or("").to_owned();
    let work = tokio::task::spawn_blocking(move || -> Result<String, (StatusCode, String)> {
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let mut out = String::new();
        let (filter, limit) = crate::audit::query::Filter::from_pairs(
            pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("{e}\n")))?;
        let records = crate::audit::query::query(&dir, &filter, limit.or(Some(1000)))
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")))?;
        for r in &records {
            if let Ok(line) = serde_json::to_string(r) {
                out.push_str(&line);
                out.push('\n');
            }
        }
        Ok(out)
    })
    .await;
    match work {
        Ok(Ok(body)) => {
            let mut resp = text(StatusCode::OK, body);
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/jsonl"),
            );
            resp
        }
        Ok(Err((status, message))) => text(status, message),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

/// What `POST /tokens` takes.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct IssueRequest {
    agent: String,
    #[serde(default)]
    servers: Option<Vec<String>>,
    #[serde(default)]
    tools: Option<Vec<String>>,
    #[serde(default)]
    scope: Option<String>,
    /// tool -> JSON pointer -> allowed values
    #[serde(default)]
    args: Option<crate::tokens::ArgConstraints>,
    /// e.g. "15m"
    #[serde(default)]
    ttl: Option<String>,
}

/// `POST /tokens` with `Authorization: Bearer <tokens.admin_secret>` and a JSON body
/// `{"agent": .., "servers": [..], "tools": [..], "scope": "..", "args": {"tool": {"/ptr":
/// ["v"]}}, "ttl": "15m"}`: issues a token.
async fn issue(
    req: &mut Request<Incoming>,
    gateway: &Gateway,
    limits: &Limits,
    peer: SocketAddr,
    local: Option<SocketAddr>,
) -> Response<Full<Bytes>> {
    use http_body_util::BodyExt;
    let json = |status: StatusCode, body: serde_json::Value| {
        let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        resp
    };
    let error = |status: StatusCode, m: &str| json(status, serde_json::json!({ "error": m }));
    let Some(tokens) = gateway.tokens.as_ref().filter(|t| t.admin_enabled()) else {
        return error(
            StatusCode::NOT_FOUND,
            "token issuance over the admin API is off (tokens.admin_secret)",
        );
    };
    let uid = caller_uid(peer, local).await;
    let caller = Caller::of(uid, peer);
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        // The scheme is case-insensitive (RFC 9110 11.1), as on the proxy's listener.
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, secret)| secret.trim());
    match limits
        .attempts
        .attempt(caller, || tokens.admin_allows(presented))
    {
        Ok(true) => {}
        Ok(false) => {
            let why = if presented.is_empty() {
                "no admin secret"
            } else {
                "wrong admin secret"
            };
            record_refusal(gateway, limits, peer, uid, "/tokens", why);
            let mut resp = error(StatusCode::UNAUTHORIZED, "the admin secret is required");
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"agentgate-admin\""),
            );
            return resp;
        }
        Err(until) => {
            record_refusal(
                gateway,
                limits,
                peer,
                uid,
                "/tokens",
                "too many wrong admin secrets; not checked",
            );
            let wait = until.saturating_duration_since(Instant::now()).as_secs() + 1;
            let mut resp = error(
                StatusCode::TOO_MANY_REQUESTS,
                &format!(
                    "too many wrong admin secrets from this caller: try again in {wait} s (at most {MAX_FAILURES} a minute)"
                ),
            );
            if let Ok(v) = header::HeaderValue::from_str(&wait.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return resp;
        }
    }
    let body = match http_body_util::Limited::new(req.body_mut(), MAX_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("cannot read the body: {e}"),
            );
        }
    };
    let ask: IssueRequest = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("bad request body: {e}")),
    };
    if let Some(unknown) = ask
        .servers
        .iter()
        .flatten()
        .find(|s| gateway.config.server(s).is_none())
    {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("no server is named {unknown:?}"),
        );
    }
    let ttl = match ask
        .ttl
        .as_deref()
        .map(humantime::parse_duration)
        .transpose()
    {
        Ok(t) => t,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("ttl: {e}")),
    };
    match tokens.issue_with(&ask.agent, ask.servers, ask.tools, ask.scope, ask.args, ttl) {
        Ok((token, claims)) => {
            gateway.record_event(
                crate::audit::Event::TokenIssued,
                serde_json::json!({
                    "agent": claims.sub, "jti": claims.jti, "exp": claims.exp,
                    "servers": claims.servers, "tools": claims.tools, "via": "admin-api",
                }),
            );
            json(
                StatusCode::OK,
                serde_json::json!({ "token": token, "claims": claims }),
            )
        }
        Err(e) => error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

/// Binds the admin listener.
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts hold per caller and window; once the map is full a new caller is counted with
    /// the others, never left uncounted (and so never refused).
    #[test]
    fn every_caller_is_counted_even_when_the_map_is_full() {
        let counts = Counts::default();
        let uid = Caller::Uid(1000);
        assert_eq!(counts.add(uid).0, 1);
        assert_eq!(counts.add(uid).0, 2);
        assert_eq!(counts.attempt(uid, || true), Ok(true));
        assert_eq!(counts.add(uid).0, 1);
        assert_eq!(counts.attempt(uid, || true), Ok(true));
        for i in 0..MAX_TRACKED as u32 {
            counts.add(Caller::Addr(std::net::IpAddr::from([
                10,
                0,
                (i >> 8) as u8,
                i as u8,
            ])));
        }
        let late = Caller::Addr("192.0.2.1".parse().unwrap());
        let counted: Vec<u32> = (0..MAX_FAILURES + 1).map(|_| counts.add(late).0).collect();
        assert!(
            counted.last().is_some_and(|&n| n > MAX_FAILURES),
            "{counted:?}"
        );
        // Another late caller shares that count: refused at once.
        let other = Caller::Addr("192.0.2.2".parse().unwrap());
        assert!(counts.add(other).0 > MAX_FAILURES);
        assert!(counts.attempt(other, || true).is_err());
        // A local user never shares it: root is not locked out by a full map.
        assert_eq!(counts.attempt(Caller::Uid(0), || true), Ok(true));
        for _ in 0..MAX_FAILURES {
            assert_eq!(counts.attempt(Caller::Uid(0), || false), Ok(false));
        }
        assert!(counts.attempt(Caller::Uid(0), || true).is_err());
    }
}
