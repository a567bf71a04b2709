//! One agent HTTP request through the stages: route, check headers, read and parse the body,
//! decide, apply credentials, forward, relay the response, record.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body as _, Incoming};

use super::{
    Body, Gateway, audit_trail,
    framing::Verdicts,
    headers::{self, MCP_PROTOCOL_VERSION, MCP_SESSION_ID},
    refusal::{self, Cause, Refusal},
    relay,
    stages::{Decision, Identity},
    upstream::Upstream,
};
use crate::{
    audit::{self, Recorder},
    config::Transport,
    mcp::{self, Message, Revision, rpc_error},
    metrics::{ErrorLabels, MethodLabel},
};

/// A redirected connection: the server its original destination belongs to, and that server's
/// endpoint path (what the unmodified agent asks for).
#[derive(Debug)]
pub struct Pinned {
    pub server: String,
    pub path: String,
}

/// What the route names.
enum Route<'a> {
    /// `/servers/<name>/mcp`
    Mcp(&'a str),
    /// `/servers/<name>/sse`
    Sse(&'a str),
    /// `/servers/<name>/message?endpoint=...` (legacy POSTs)
    Message(&'a str),
}

/// Where routing leaves a request: answered already, or to be served by an upstream.
enum Next<'a> {
    /// (Boxed: refusals are the rare path, and the big variant.)
    Answered(Box<Outcome>),
    Dispatch(Arc<Upstream>, Route<'a>),
}

/// How long a refused request's unread body may take to arrive before the connection is
/// closed instead (its bytes are normally already in flight).
const DISCARD_WAIT: Duration = Duration::from_secs(1);

fn route(path: &str) -> Option<Route<'_>> {
    let rest = path.strip_prefix("/servers/")?;
    let (name, tail) = rest.split_once('/')?;
    match tail {
        "mcp" => Some(Route::Mcp(name)),
        "sse" => Some(Route::Sse(name)),
        "message" => Some(Route::Message(name)),
        _ => None,
    }
}

/// The outcome of one request, for metrics and audit.
struct Outcome {
    response: Response<Body>,
    messages: Vec<Message>,
    /// One per message once decided; empty when refused before the decision.
    decisions: Vec<Decision>,
    error: Option<Refusal>,
    /// Audit records written before forwarding (their sequence numbers); empty when nothing
    /// was forwarded, and the request is recorded once its outcome is known.
    recorded: Vec<u64>,
    /// The request body, when one was read (for the audit record of a refused request).
    body: Option<Bytes>,
    /// Whether `messages` came as a batch.
    batch: bool,
    /// Who the request turned out to be, when that is more than the connection says (a
    /// verified token).
    identity: Option<Identity>,
    /// The gateway's own JSON-RPC answer (the response's body), when it refused or denied.
    reply: Option<Bytes>,
    /// Whether `reply` went on the agent's legacy stream.
    on_stream: bool,
    /// The session the request belongs to, for its audit record: its `Mcp-Session-Id`, or on
    /// the legacy transport the endpoint it posted to (which names the session there).
    session: Option<String>,
}

impl Outcome {
    /// A request answered without a refusal (by the gateway itself, or relayed), with no
    /// message in it yet.
    fn answered(response: Response<Body>) -> Self {
        Self {
            response,
            reply: None,
            on_stream: false,
            messages: Vec::new(),
            decisions: Vec::new(),
            error: None,
            recorded: Vec::new(),
            body: None,
            batch: false,
            identity: None,
            session: None,
        }
    }

    fn refused(error: Refusal, messages: Vec<Message>) -> Self {
        let id = messages.first().and_then(|m| m.id.as_ref());
        let reply = error.body(id);
        Self {
            response: error.response_with(reply.clone()),
            reply: Some(reply),
            on_stream: false,
            messages,
            decisions: Vec::new(),
            error: Some(error),
            recorded: Vec::new(),
            body: None,
            batch: false,
            identity: None,
            session: None,
        }
    }

    /// Keeps the body for the audit record.
    fn with_body(mut self, body: &Bytes, batch: bool) -> Self {
        self.body = Some(body.clone());
        self.batch = batch;
        self
    }

    /// The policy denied at least one message: nothing is forwarded. Requests get JSON-RPC
    /// errors (HTTP 200, like any other JSON-RPC error); a lone notification or response,
    /// which cannot be answered in JSON-RPC, gets 403 with the error.
    fn denied(messages: Vec<Message>, decisions: Vec<Decision>, batch: bool) -> Self {
        let first = decisions
            .iter()
            .position(|d| matches!(d, Decision::Deny { .. }));
        let (rule, reason) = match first.map(|i| &decisions[i]) {
            Some(Decision::Deny { rule, reason }) => (rule.clone(), reason.clone()),
            _ => (std::sync::Arc::from("-"), String::new()),
        };
        let error_for = |m: &Message, d: &Decision| match d {
            Decision::Deny { rule, reason } => rpc_error::denied(m.id.as_ref(), reason, rule),
            _ => rpc_error::denied(
                m.id.as_ref(),
                &format!("not forwarded: another message in the batch was denied ({reason})"),
                &rule,
            ),
        };
        let (status, body) = if batch {
            let errors: Vec<serde_json::Value> = messages
                .iter()
                .zip(&decisions)
                .filter(|(m, _)| m.kind == mcp::Kind::Request)
                .map(|(m, d)| error_for(m, d))
                .collect();
            (StatusCode::OK, serde_json::Value::Array(errors))
        } else {
            let status = if messages[0].kind == mcp::Kind::Request {
                StatusCode::OK
            } else {
                StatusCode::FORBIDDEN
            };
            (status, error_for(&messages[0], &decisions[0]))
        };
        let reply = Bytes::from(body.to_string());
        let mut response = Response::new(refusal::full(reply.clone()));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        Self {
            response,
            messages,
            decisions,
            error: Some(Refusal::Denied(reason)),
            recorded: Vec::new(),
            body: None,
            batch,
            identity: None,
            reply: Some(reply),
            on_stream: false,
            session: None,
        }
    }

    /// A legacy (HTTP+SSE) agent reads answers only from its stream and ignores POST bodies:
    /// the gateway's answer to a request it refused goes on the stream that announced
    /// `endpoint`, or the agent would wait for it until it gives up.
    fn answer_on_stream(
        &mut self,
        gateway: &Gateway,
        poster: &Identity,
        server: &str,
        endpoint: &str,
    ) {
        let Some(reply) = &self.reply else {
            return;
        };
        let answers_a_request = self
            .messages
            .iter()
            .any(|m| m.kind == mcp::Kind::Request && m.id.is_some());
        if !answers_a_request {
            return;
        }
        let poster = super::policy_stage::principal(poster);
        self.on_stream = gateway
            .legacy
            .answer(server, endpoint, &poster, reply.clone());
        if !self.on_stream {
            tracing::debug!(
                server,
                "A refused legacy request's answer found no stream to take it."
            );
        }
    }
}

/// Handles one request. Never fails: every problem becomes an HTTP status and a JSON-RPC error.
pub async fn handle(
    gateway: Arc<Gateway>,
    identity: Identity,
    framing: Verdicts,
    pinned: Option<Arc<Pinned>>,
    req: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let http_method = req.method().clone();
    // A shared copy: the route borrows names from the path while the request moves on.
    let uri = req.uri().clone();
    let path = uri.path();
    let routed = match &pinned {
        None => route(path),
        Some(p) => match route(path) {
            // Through an intercepted destination only that destination's server is reachable.
            Some(Route::Mcp(n) | Route::Sse(n) | Route::Message(n)) if n != p.server => None,
            Some(r) => Some(r),
            None if path == p.path => Some(Route::Mcp(p.server.as_str())),
            None => None,
        },
    };
    // Plain HTTP on the explicit listener (over TLS a rebound name fails the certificate check
    // first), and every intercepted connection, whose server's own name is allowed too: a
    // browser in an agent's cgroup rebound to an intercepted server's address sends another.
    let host = match &pinned {
        None if gateway.agent_tls.is_some() => None,
        None => headers::check_host(
            req.headers(),
            &uri,
            &gateway.config.listener.allowed_hosts,
            None,
        )
        .err(),
        Some(p) => headers::check_host(
            req.headers(),
            &uri,
            &gateway.config.listener.allowed_hosts,
            gateway
                .config
                .server(&p.server)
                .and_then(|s| s.url.host_str()),
        )
        .err(),
    };
    // Published to explicit-mode agents only: an intercepted one asks the server it thinks it
    // reaches, whose URL the metadata does not name.
    let explicit_metadata = gateway
        .resource_metadata
        .as_ref()
        .filter(|_| pinned.is_none());
    let metadata = explicit_metadata.filter(|m| routed.is_none() && m.serves(path));
    let next = match routed {
        // Checked before routing: the connection is closed whatever the path.
        _ if let Some(problem) = framing.next() => Next::Answered(Box::new(Outcome::refused(
            Refusal::Framing(problem),
            Vec::new(),
        ))),
        _ if let Some(refusal) = host => {
            Next::Answered(Box::new(Outcome::refused(refusal, Vec::new())))
        }
        // Not through an intercepted destination: there the agent asks the server's own.
        None if let Some(m) = metadata => {
            Next::Answered(Box::new(Outcome::answered(m.response(&http_method))))
        }
        None => Next::Answered(Box::new(Outcome::refused(Refusal::NotFound, Vec::new()))),
        Some(r) => {
            let name = match r {
                Route::Mcp(n) | Route::Sse(n) | Route::Message(n) => n,
            };
            match gateway.upstreams.get(name).cloned() {
                // Where tokens are required, who may not call tells no name apart: 401 for an
                // unknown server as for a known one.
                None if let Some(tokens) = &gateway.tokens
                    && tokens.config().require
                    && let Err(e) = authenticate(&gateway, &identity, req.headers()).await =>
                {
                    Next::Answered(Box::new(Outcome::refused(e, Vec::new())))
                }
                None => Next::Answered(Box::new(Outcome::refused(
                    Refusal::UnknownServer(name.to_owned()),
                    Vec::new(),
                ))),
                Some(upstream) => Next::Dispatch(upstream, r),
            }
        }
    };
    let expects_continue = req
        .headers()
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let (upstream, mut outcome, unread) = match next {
        Next::Answered(outcome) => (None, *outcome, Some(req.into_body())),
        Next::Dispatch(upstream, r) => {
            let (outcome, unread) =
                dispatch(&gateway, &identity, &framing, upstream.clone(), r, req).await;
            (Some(upstream), outcome, unread)
        }
    };
    // Public metadata, no MCP interaction: counted apart, and not audited (as /healthz is not).
    let answered_metadata = metadata.is_some() && outcome.error.is_none();
    // Unknown names are agent input: keep them out of metric labels.
    let server_name = upstream.as_ref().map_or("-", |u| u.server.name.as_str());
    let latency = started.elapsed();
    let method = MethodLabel::of(match (&http_method, outcome.messages.as_slice()) {
        _ if answered_metadata => "resource_metadata",
        (&Method::GET, _) => "stream",
        (&Method::DELETE, _) => "session/delete",
        (_, [one]) => one.method.as_deref().unwrap_or("response"),
        (_, []) => "invalid",
        _ => "batch",
    });
    gateway.metrics.request(
        upstream.as_deref().map(|u| &u.series),
        server_name,
        method,
        latency.as_secs_f64(),
    );
    if let Some(error) = &outcome.error {
        gateway
            .metrics
            .errors
            .get_or_create(&ErrorLabels {
                server: server_name.to_owned(),
                method: method.as_str(),
                kind: error.kind(),
            })
            .inc();
        match error.cause() {
            Cause::Client => {
                tracing::debug!(%error, server = %server_name, %identity, "Refused an agent request.")
            }
            Cause::Upstream => {
                tracing::warn!(%error, server = %server_name, "Upstream failed a request.")
            }
            Cause::Gateway => {
                tracing::debug!(%error, "Refused a request: the gateway cannot serve it now.")
            }
        }
    }
    if let Some(audit) = &gateway.audit
        && !answered_metadata
    {
        record_outcome(
            audit,
            outcome.identity.as_ref().unwrap_or(&identity),
            server_name,
            &http_method,
            &outcome,
            started,
        );
    }
    // Answered without reading the body (a refusal): read and drop it (after the latency was
    // taken), or the connection cannot serve another request. One that closes the connection
    // anyway is left alone, and so is one while draining.
    if let Some(body) = unread
        && !outcome
            .error
            .as_ref()
            .is_some_and(Refusal::closes_connection)
        && !(!gateway.drain.is_draining()
            && discard_unread(
                body,
                expects_continue,
                gateway.config.limits.max_request_bytes,
                gateway.config.limits.body_read_timeout.min(DISCARD_WAIT),
            )
            .await
            // A chunked body hyper took that the framing tracker did not: the next request
            // on this connection is refused anyway.
            && framing.body_problem().is_none())
    {
        outcome
            .response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    // Never for a refusal that must close the connection (none carries an answer today).
    if outcome.on_stream
        && !outcome
            .error
            .as_ref()
            .is_some_and(Refusal::closes_connection)
    {
        // The answer is on the stream, where the agent reads it. The POST gets what servers of
        // this transport send, 202: a client may stop posting after an error status (the
        // Python SDK's does), which would end its session over one refused request.
        let mut accepted = Response::new(refusal::empty());
        *accepted.status_mut() = StatusCode::ACCEPTED;
        return accepted;
    }
    if let Some(m) = explicit_metadata {
        m.point_to(&mut outcome.response);
    }
    outcome.response
}

/// Writes what the request path has not recorded yet: a refused or denied request (with its
/// status and why), or the failure of one that was forwarded. Nothing waits for these: what
/// they describe was not served.
fn record_outcome(
    audit: &Recorder,
    identity: &Identity,
    server: &str,
    http_method: &Method,
    outcome: &Outcome,
    started: Instant,
) {
    let status = outcome.response.status().as_u16();
    let error = outcome.error.as_ref().map(|e| audit.text(&e.to_string()));
    let finish = |mut r: audit::Record| {
        r.status = Some(status);
        r.error.clone_from(&error);
        r.latency_us = Some(audit_trail::micros(started));
        let _ = audit.record(r);
    };
    if !outcome.recorded.is_empty() {
        // A forwarded request that failed, or that the upstream answered with an error status
        // and no message (its messages are recorded as the relay passes them on).
        if error.is_some() || !outcome.response.status().is_success() {
            // One record per forwarded message, in order (GET and DELETE have no message).
            let mut messages = outcome.messages.iter();
            for seq in &outcome.recorded {
                let mut r = audit_trail::base(identity, server, audit::Event::Response);
                r.request_seq = Some(*seq);
                if let Some(m) = messages.next() {
                    r.method = m.method.as_deref().map(str::to_owned);
                    r.target = m.target.subject().map(str::to_owned);
                    r.request_id = m.id.as_ref().map(|id| id.to_json());
                }
                finish(r);
            }
        }
        return;
    }
    if outcome.messages.is_empty() {
        let mut r = audit_trail::base(identity, server, audit::Event::Request);
        let mut detail = match &outcome.body {
            Some(b) => audit_trail::body_excerpt(audit, b),
            None => serde_json::json!({}),
        };
        detail["http_method"] = serde_json::Value::from(http_method.as_str());
        r.detail = Some(detail);
        r.session.clone_from(&outcome.session);
        finish(r);
        return;
    }
    let texts = outcome
        .body
        .as_ref()
        .map(|b| audit_trail::message_texts(b, outcome.batch))
        .unwrap_or_default();
    for (i, m) in outcome.messages.iter().enumerate() {
        let r = audit_trail::request(
            audit,
            &audit_trail::RequestFacts {
                identity,
                server,
                session: outcome.session.as_deref(),
                message: m,
                text: text_of(&texts, i),
                decision: outcome.decisions.get(i),
            },
        );
        finish(r);
    }
}

/// Serves a request routed to `upstream`. Also gives back the body when the request was
/// answered without reading it.
async fn dispatch(
    gateway: &Arc<Gateway>,
    identity: &Identity,
    framing: &Verdicts,
    upstream: Arc<Upstream>,
    route: Route<'_>,
    req: Request<Incoming>,
) -> (Outcome, Option<Incoming>) {
    match admit(gateway, identity, &upstream, &req).await {
        Ok(admitted) => serve(gateway, admitted, framing, upstream, route, req).await,
        Err(outcome) => (outcome, Some(req.into_body())),
    }
}

/// Who is asking, once the request may be served at all: not while draining, not with bad
/// headers, an unverified token, a token for other servers, or another caller's session.
async fn admit(
    gateway: &Arc<Gateway>,
    identity: &Identity,
    upstream: &Upstream,
    req: &Request<Incoming>,
) -> Result<Identity, Outcome> {
    if gateway.drain.is_draining() {
        return Err(Outcome::refused(Refusal::Draining, Vec::new()));
    }
    if let Err(e) =
        headers::check_request(req.headers()).and_then(|()| headers::check_origin(req.headers()))
    {
        return Err(Outcome::refused(e, Vec::new()));
    }
    let authenticated = match authenticate(gateway, identity, req.headers()).await {
        Ok(i) => i,
        Err(e) => return Err(Outcome::refused(e, Vec::new())),
    };
    // A token scoped to other servers reaches nothing here: not the POST path (where the
    // policy stage would say so too), nor streams or DELETE.
    if let Some(token) = authenticated.token()
        && !token.covers_server(upstream.server.name.as_str())
    {
        let mut o = Outcome::refused(
            Refusal::OutOfScope(format!(
                "your token does not cover server {:?}",
                upstream.server.name.as_str()
            )),
            Vec::new(),
        );
        o.identity = Some(authenticated);
        return Err(o);
    }
    // Sessions on HTTP upstreams are bound to the caller the upstream gave them to (launched
    // servers bind their own): another caller's id, or one the gateway forgot, is unknown.
    if upstream.server.transport != Transport::Sse && upstream.launched.is_none() {
        let server = upstream.server.name.as_str();
        let refusal = match headers::text(req.headers(), &MCP_SESSION_ID) {
            Err(e) => Some(e),
            Ok(Some(id))
                if !gateway.sessions.owned_by(
                    server,
                    id,
                    &super::policy_stage::principal(&authenticated),
                ) =>
            {
                Some(Refusal::UnknownSession)
            }
            Ok(_) => None,
        };
        if let Some(refusal) = refusal {
            let mut o = Outcome::refused(refusal, Vec::new());
            o.identity = authenticated.token().is_some().then_some(authenticated);
            return Err(o);
        }
    }
    Ok(authenticated)
}

/// What `dispatch` does with an admitted request: by method and transport.
async fn serve(
    gateway: &Arc<Gateway>,
    authenticated: Identity,
    framing: &Verdicts,
    upstream: Arc<Upstream>,
    route: Route<'_>,
    req: Request<Incoming>,
) -> (Outcome, Option<Incoming>) {
    let identity = &authenticated;
    let legacy = upstream.server.transport == Transport::Sse;
    // Recorded only where its owner was checked in `admit`: a legacy server has no such header
    // (its session is the endpoint, named below), and a launched server checks its own later.
    // (A cheap copy of the header: text only if a refusal is recorded with it.)
    let sent_session = (!legacy && upstream.launched.is_none())
        .then(|| req.headers().get(&MCP_SESSION_ID).cloned())
        .flatten();
    let refused = |e: Refusal, req: Request<Incoming>| {
        (Outcome::refused(e, Vec::new()), Some(req.into_body()))
    };
    let (mut outcome, unread) = match (route, req.method().clone(), legacy) {
        (Route::Mcp(_), Method::POST, false) => {
            match headers::check_json_content_type(req.headers()) {
                Err(e) => refused(e, req),
                Ok(()) => (
                    post(gateway, identity, framing, upstream, req, None).await,
                    None,
                ),
            }
        }
        // Bodiless: a body sent anyway is read and dropped like a refused request's.
        (Route::Mcp(_), Method::GET, false) => (
            stream(gateway, identity, upstream, &req, false).await,
            Some(req.into_body()),
        ),
        (Route::Mcp(_), Method::DELETE, false) => (
            delete(gateway, identity, upstream, &req).await,
            Some(req.into_body()),
        ),
        (Route::Sse(_) | Route::Mcp(_), Method::GET, true) => (
            stream(gateway, identity, upstream, &req, true).await,
            Some(req.into_body()),
        ),
        (Route::Message(_), Method::POST, true) => {
            let endpoint = req.uri().query().and_then(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == "endpoint")
                    .map(|(_, v)| v.into_owned())
            });
            match endpoint {
                Some(e)
                    if e.starts_with('/')
                        && gateway.legacy.is_held_by(
                            upstream.server.name.as_str(),
                            &e,
                            &super::policy_stage::principal(identity),
                        ) =>
                {
                    if let Err(refusal) = headers::check_json_content_type(req.headers()) {
                        let (mut o, unread) = refused(refusal, req);
                        o.session = Some(e);
                        return (o, unread);
                    }
                    let mut outcome = post(
                        gateway,
                        identity,
                        framing,
                        upstream.clone(),
                        req,
                        Some(e.clone()),
                    )
                    .await;
                    outcome.answer_on_stream(gateway, identity, upstream.server.name.as_str(), &e);
                    outcome.session = Some(e);
                    (outcome, None)
                }
                _ => refused(Refusal::UnknownEndpoint, req),
            }
        }
        (Route::Mcp(_), _, false)
        | (Route::Message(_), _, true)
        | (Route::Sse(_) | Route::Mcp(_), _, true) => refused(Refusal::MethodNotAllowed, req),
        _ => refused(Refusal::NotFound, req),
    };
    if identity.token().is_some() {
        outcome.identity = Some(authenticated.clone());
    }
    if outcome.session.is_none() && outcome.error.is_some() {
        outcome.session = sent_session.and_then(|v| v.to_str().ok().map(str::to_owned));
    }
    (outcome, unread)
}

/// Verifies a presented gateway token (before anything else looks at the request) and makes
/// it part of the identity. Without `[tokens]`, an `Authorization` header is only ever stripped.
async fn authenticate(
    gateway: &Gateway,
    identity: &Identity,
    headers: &HeaderMap,
) -> Result<Identity, Refusal> {
    let Some(tokens) = &gateway.tokens else {
        return Ok(identity.clone());
    };
    let presented = match headers.get(header::AUTHORIZATION) {
        None => None,
        Some(v) => {
            let text = v.to_str().map_err(|_| {
                Refusal::Unauthorized("the Authorization header is not text".into())
            })?;
            let (scheme, token) = text
                .trim()
                .split_once([' ', '\t'])
                .unwrap_or((text.trim(), ""));
            if !scheme.eq_ignore_ascii_case("bearer") {
                return Err(Refusal::UnsupportedScheme);
            }
            // A Bearer attempt without its token is a bad token, not another scheme.
            Some(token.trim())
        }
    };
    match presented {
        None if tokens.config().require => Err(Refusal::TokenRequired),
        None => Ok(identity.clone()),
        Some(token) => match tokens.verify(token).await {
            Ok(verified) => Ok(Identity::Token {
                token: Arc::new(verified),
                connection: Arc::new(identity.clone()),
            }),
            Err(rejection) if rejection.is_unavailable() => {
                Err(Refusal::TokenUncheckable(rejection.to_string()))
            }
            Err(rejection) => Err(Refusal::Unauthorized(rejection.to_string())),
        },
    }
}

/// The revision a request is held to: its `MCP-Protocol-Version` header, else what its session
/// negotiated, else what the transport spec says to assume.
fn revision(
    gateway: &Gateway,
    server: &str,
    headers: &HeaderMap,
    legacy: bool,
) -> Result<Revision, Refusal> {
    if legacy {
        return Ok(Revision::V2024_11_05);
    }
    let negotiated =
        headers::text(headers, &MCP_SESSION_ID)?.and_then(|s| gateway.sessions.get(server, s));
    match headers::text(headers, &MCP_PROTOCOL_VERSION)? {
        Some(v) => {
            let header =
                Revision::parse(v).ok_or_else(|| Refusal::UnsupportedRevision(v.to_owned()))?;
            match negotiated {
                Some(n) if n != header => Err(Refusal::RevisionMismatch {
                    header: v.to_owned(),
                    negotiated: n.as_str(),
                }),
                _ => Ok(header),
            }
        }
        None => Ok(negotiated.unwrap_or(Revision::ASSUMED_WITHOUT_HEADER)),
    }
}

async fn read_body(body: Incoming, max: usize, timeout: Duration) -> Result<Bytes, Refusal> {
    match tokio::time::timeout(timeout, Limited::new(body, max).collect()).await {
        Err(_) => Err(Refusal::BodyTimeout),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(Refusal::BodyTooLarge { max })
        }
        Ok(Err(e)) => Err(Refusal::BodyRead(e.to_string())),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// Reads and drops the body of a request answered without it. hyper otherwise stops reading
/// the connection and closes it after a response that promised to keep it open, and a client
/// that sends its next request on it (as HTTP clients do after a 401) gets a reset. Returns
/// whether the connection can stay open: not past `max` bytes or `wait`, nor when the client
/// waits for `100 Continue` before sending (reading would invite the body).
pub(crate) async fn discard_unread(
    mut body: Incoming,
    expects_continue: bool,
    max: usize,
    wait: Duration,
) -> bool {
    if body.is_end_stream() {
        return true;
    }
    if expects_continue || body.size_hint().lower() > max as u64 {
        return false;
    }
    let drain = async {
        let mut seen = 0usize;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            seen = seen.saturating_add(frame.data_ref().map_or(0, Bytes::len));
            if seen > max {
                return false;
            }
        }
        true
    };
    tokio::time::timeout(wait, drain).await.unwrap_or(false)
}

/// A JSON-RPC POST (Streamable HTTP, or a legacy endpoint when `legacy_endpoint` is set).
async fn post(
    gateway: &Arc<Gateway>,
    identity: &Identity,
    framing: &Verdicts,
    upstream: Arc<Upstream>,
    req: Request<Incoming>,
    legacy_endpoint: Option<String>,
) -> Outcome {
    let started = Instant::now();
    let limits = &gateway.config.limits;
    // (Its Content-Type was checked before: a refusal leaves the body unread.)
    let (parts, body) = req.into_parts();
    if let Some(len) = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > limits.max_request_bytes as u64
    {
        return Outcome::refused(
            Refusal::BodyTooLarge {
                max: limits.max_request_bytes,
            },
            Vec::new(),
        );
    }
    let read = read_body(body, limits.max_request_bytes, limits.body_read_timeout).await;
    if let Some(problem) = framing.body_problem() {
        return Outcome::refused(Refusal::Framing(problem), Vec::new());
    }
    let bytes = match read {
        Ok(b) => b,
        Err(e) => return Outcome::refused(e, Vec::new()),
    };
    let server = upstream.server.name.as_str();
    let revision = match revision(gateway, server, &parts.headers, legacy_endpoint.is_some()) {
        Ok(r) => r,
        Err(e) => return Outcome::refused(e, Vec::new()).with_body(&bytes, false),
    };
    let parsed = match mcp::message::parse_body(&bytes, revision.allows_batch(), revision.as_str())
    {
        Ok(p) => p,
        Err(e) => return Outcome::refused(e.into(), Vec::new()).with_body(&bytes, false),
    };
    let batch = matches!(parsed, mcp::Body::Batch(_));
    if let mcp::Body::Batch(messages) = &parsed
        && messages
            .iter()
            .any(|m| m.method.as_deref() == Some("initialize"))
    {
        return Outcome::refused(
            Refusal::BadHeader("initialize cannot be part of a batch".into()),
            messages.clone(),
        )
        .with_body(&bytes, true);
    }
    let messages = match parsed {
        mcp::Body::Single(m) => vec![m],
        mcp::Body::Batch(v) => v,
    };
    if let Err(e) = headers::check_method_headers(&parts.headers, &messages, revision) {
        return Outcome::refused(e, messages).with_body(&bytes, batch);
    }
    let decisions: Vec<Decision> = messages
        .iter()
        .map(|m| {
            gateway
                .stages
                .decision
                .decide(identity, &upstream.server, m)
        })
        .collect();
    if decisions.iter().any(|d| matches!(d, Decision::Deny { .. })) {
        return Outcome::denied(messages, decisions, batch).with_body(&bytes, batch);
    }
    // After the decision: a refusal here names the tool's declarations, which an agent the
    // policy keeps from the tool has no business learning. It costs the agent no rate-limit
    // token: a client recovers from it by listing the tools and resending.
    if let Err(e) = headers::check_param_headers(&parts.headers, &messages, revision, |tool| {
        gateway.policy.pins().declarations(server, tool)
    }) {
        for d in &decisions {
            gateway.stages.decision.refund(d);
        }
        let mut o = Outcome::refused(e, messages).with_body(&bytes, batch);
        o.decisions = decisions;
        return o;
    }
    // A legacy POST's session is the endpoint it went to: an Mcp-Session-Id it carries means
    // nothing to the server, and would name (and register) a session of the caller's choosing.
    let session_sent = headers::text(&parts.headers, &MCP_SESSION_ID)
        .ok()
        .flatten()
        .filter(|_| legacy_endpoint.is_none())
        .map(str::to_owned);
    let mut seqs: Vec<Option<u64>> = vec![None; messages.len()];
    if let Some(audit) = &gateway.audit {
        match record_forwarded(
            audit,
            identity,
            server,
            session_sent.as_deref().or(legacy_endpoint.as_deref()),
            &messages,
            &decisions,
            &bytes,
            batch,
        )
        .await
        {
            Ok(s) => seqs = s.into_iter().map(Some).collect(),
            Err(e) => {
                gateway.metrics.audit_refused.inc();
                let mut o = Outcome::refused(Refusal::AuditUnavailable(e.to_string()), messages);
                o.decisions = decisions;
                return o;
            }
        }
    }
    let uri: std::borrow::Cow<'_, str> = match &legacy_endpoint {
        Some(path_query) => {
            let mut u = upstream.server.url.clone();
            let (path, query) = path_query.split_once('?').unwrap_or((path_query, ""));
            u.set_path(path);
            u.set_query((!query.is_empty()).then_some(query));
            String::from(u).into()
        }
        None => upstream.server.url.as_str().into(),
    };
    let mut up_headers = headers::upstream_request(&parts.headers);
    gateway
        .stages
        .credentials
        .apply(identity, &upstream.server, &mut up_headers);
    let recorded: Vec<u64> = seqs.iter().flatten().copied().collect();
    // A legacy agent's answers come on its stream, which a draining gateway keeps open while
    // requests sent upstream await theirs: counted before they leave, so that a drain starting
    // while they are on their way cannot miss them.
    let asked: Vec<relay::Asked> = messages
        .iter()
        .zip(&seqs)
        .filter(|(m, _)| m.kind == mcp::Kind::Request)
        .filter_map(|(m, seq)| {
            Some(relay::Asked {
                id: m.id.clone()?,
                method: m.method.clone()?,
                target: m.target.subject().map(Into::into),
                seq: *seq,
                at: Instant::now(),
            })
        })
        .collect();
    let awaited = match legacy_endpoint.as_deref().map(|endpoint| {
        let poster = super::policy_stage::principal(identity);
        gateway
            .legacy
            .forwarded(upstream.server.name.as_str(), endpoint, &poster, &asked)
    }) {
        Some(Err(id)) => {
            // Refused before it went anywhere: it costs no rate-limit token.
            for d in &decisions {
                gateway.stages.decision.refund(d);
            }
            let mut o = Outcome::refused(Refusal::IdInFlight(id.to_string()), messages);
            o.decisions = decisions;
            o.recorded = recorded;
            return o;
        }
        Some(Ok(Some(awaited))) => {
            let ids: Vec<mcp::Id> = asked.iter().map(|a| a.id.clone()).collect();
            let cancelled =
                super::legacy::cancelled_ids(&messages, &audit_trail::message_texts(&bytes, batch));
            Some((awaited, ids, cancelled))
        }
        _ => None,
    };
    // Should this POST end before its requests are sent (the agent hung up), the stream waits
    // for them no more: a drain would hold for answers that may never come.
    let mut unsent = Unsent(awaited.as_ref().map(|(a, ids, _)| (&**a, &ids[..])));
    let sent = send(
        gateway,
        identity,
        &upstream,
        Method::POST,
        &uri,
        up_headers,
        bytes,
    )
    .await;
    unsent.0 = None;
    let response = match sent {
        Ok(r) => r,
        Err(e) => {
            let unsent = matches!(e, Refusal::UpstreamUnreachable { .. });
            if let Some((awaited, ids, _)) = &awaited {
                // Whether or not the server answers them later, the stream waits for them no
                // more: a drain does not hold for requests whose fate is unknown.
                awaited.settle(ids);
            }
            let mut o = Outcome::refused(e, messages);
            o.decisions = decisions;
            o.recorded = recorded;
            // Unless the request certainly never left, the upstream may have acted on it and
            // answer on its stream yet: then no answer of ours.
            if !unsent {
                o.reply = None;
            }
            return o;
        }
    };
    // Delivered and accepted (a launched server's session errors, an upstream's 4xx and 5xx
    // are not).
    if response.status().is_success() {
        for m in &messages {
            gateway
                .stages
                .decision
                .forwarded(identity, &upstream.server, m);
        }
    }
    let issued = response
        .headers()
        .get(&MCP_SESSION_ID)
        .and_then(|v| v.to_str().ok());
    // A session the upstream opens (at initialize) is this caller's alone. Claimed from the
    // response head, before the agent can learn the id from it.
    if let Some(id) = issued
        && session_sent.is_none()
        && upstream.launched.is_none()
    {
        let owner = super::policy_stage::principal(identity);
        gateway
            .sessions
            .claim(upstream.server.name.as_str(), id, &owner);
    }
    // A session id the agent is not given (it holds an injected secret) is not recorded either.
    let issued = issued.filter(|id| !gateway.secrets.found_in(id.as_bytes()));
    let session = issued.map(str::to_owned).or(session_sent);
    let ctx = relay::Context {
        gateway: gateway.clone(),
        upstream: upstream.clone(),
        identity: identity.clone(),
        session,
        legacy_stream: false,
        end_on_drain: false,
        requests: asked,
        legacy_endpoint: legacy_endpoint.clone(),
        announced: None,
        started: Some(started),
    };
    // A batch of one is answered with a batch of one.
    let mut outcome = relay_response(gateway, ctx, response, batch, messages).await;
    if let Some((awaited, ids, cancelled)) = &awaited {
        let status = outcome.response.status();
        // Refused (by the server, or its answer by the gateway), or answered in the POST's own
        // body rather than on the stream: nothing more follows on the stream.
        // 200 only: a 202 keeps the upstream's label without its body (answers still follow).
        let answered_here = status == StatusCode::OK
            && outcome
                .response
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|t| t == "application/json" || t == "text/event-stream");
        if !status.is_success() || answered_here {
            awaited.settle(ids);
        }
        if status.is_success() {
            awaited.settle(cancelled);
        }
    }
    outcome.decisions = decisions;
    outcome.recorded = recorded;
    // Forwarded: whatever the upstream does with it, the answer is its own.
    outcome.reply = None;
    outcome
}

/// Legacy requests noted as on their way upstream, settled if the POST carrying them is
/// dropped before it is sent.
struct Unsent<'a>(Option<(&'a super::legacy::Awaited, &'a [mcp::Id])>);

impl Drop for Unsent<'_> {
    fn drop(&mut self) {
        if let Some((awaited, ids)) = self.0.take() {
            awaited.settle(ids);
        }
    }
}

/// Message `i`'s own text, of `texts` from [`audit_trail::message_texts`].
fn text_of(texts: &[Option<Bytes>], i: usize) -> Option<&str> {
    texts
        .get(i)
        .and_then(Option::as_ref)
        .and_then(|b| std::str::from_utf8(b).ok())
}

/// Records the messages about to be forwarded; in fail-closed mode, waits until the records
/// are durable and fails when they cannot be.
#[allow(clippy::too_many_arguments)]
async fn record_forwarded(
    audit: &Recorder,
    identity: &Identity,
    server: &str,
    session: Option<&str>,
    messages: &[Message],
    decisions: &[Decision],
    body: &Bytes,
    batch: bool,
) -> Result<Vec<u64>, audit::writer::AuditError> {
    let texts = audit_trail::message_texts(body, batch);
    let records = messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            audit_trail::request(
                audit,
                &audit_trail::RequestFacts {
                    identity,
                    server,
                    session,
                    message: m,
                    text: text_of(&texts, i),
                    decision: decisions.get(i),
                },
            )
        })
        .collect();
    audit.admit(records).await
}

/// A GET: the Streamable HTTP standalone stream, or the legacy transport's stream.
async fn stream(
    gateway: &Arc<Gateway>,
    identity: &Identity,
    upstream: Arc<Upstream>,
    req: &Request<Incoming>,
    legacy: bool,
) -> Outcome {
    bodiless(gateway, identity, upstream, req, Method::GET, legacy).await
}

/// A DELETE: ends a session upstream, and here.
async fn delete(
    gateway: &Arc<Gateway>,
    identity: &Identity,
    upstream: Arc<Upstream>,
    req: &Request<Incoming>,
) -> Outcome {
    bodiless(gateway, identity, upstream, req, Method::DELETE, false).await
}

/// Forwards a GET or DELETE (no body to parse) and relays what comes back.
async fn bodiless(
    gateway: &Arc<Gateway>,
    identity: &Identity,
    upstream: Arc<Upstream>,
    req: &Request<Incoming>,
    method: Method,
    legacy: bool,
) -> Outcome {
    if let Err(e) = headers::check_no_param_headers(req.headers()) {
        return Outcome::refused(e, Vec::new());
    }
    // They describe a POST's body: on a request without one, an intermediary routing on them
    // would act on what no body says.
    for name in [&headers::MCP_METHOD, &headers::MCP_NAME] {
        if req.headers().contains_key(name) {
            return Outcome::refused(
                Refusal::BadHeader(format!("{name} describes a POST body; a {method} has none")),
                Vec::new(),
            );
        }
    }
    // The transport spec's 400 for an unsupported or contradicting MCP-Protocol-Version holds
    // for every request, not only POSTs.
    if let Err(e) = revision(
        gateway,
        upstream.server.name.as_str(),
        req.headers(),
        legacy,
    ) {
        return Outcome::refused(e, Vec::new());
    }
    let mut up_headers = headers::upstream_request(req.headers());
    gateway
        .stages
        .credentials
        .apply(identity, &upstream.server, &mut up_headers);
    let session = req
        .headers()
        .get(&MCP_SESSION_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut recorded = Vec::new();
    if let Some(audit) = &gateway.audit {
        // A stream carries server messages to the agent, a DELETE ends a session: both are
        // recorded (and, fail-closed, made durable) before they are forwarded.
        let event = if method == Method::DELETE {
            audit::Event::SessionEnd
        } else {
            audit::Event::Request
        };
        let mut r = audit_trail::base(identity, upstream.server.name.as_str(), event);
        r.session.clone_from(&session);
        r.detail = Some(serde_json::json!({ "http_method": method.as_str() }));
        match audit.admit(vec![r]).await {
            Ok(seqs) => recorded = seqs,
            Err(e) => {
                gateway.metrics.audit_refused.inc();
                return Outcome::refused(Refusal::AuditUnavailable(e.to_string()), Vec::new());
            }
        }
    }
    let response = match send(
        gateway,
        identity,
        &upstream,
        method.clone(),
        upstream.server.url.as_str(),
        up_headers,
        Bytes::new(),
    )
    .await
    {
        Ok(r) => r,
        Err(e) => {
            let mut o = Outcome::refused(e, Vec::new());
            o.recorded = recorded;
            return o;
        }
    };
    if method == Method::DELETE
        && response.status().is_success()
        && let Some(s) = &session
    {
        gateway.sessions.remove(upstream.server.name.as_str(), s);
    }
    // A GET stream is standalone: it ends when draining starts.
    let end_on_drain = method == Method::GET;
    let ctx = relay::Context {
        gateway: gateway.clone(),
        upstream,
        identity: identity.clone(),
        session,
        legacy_stream: legacy,
        end_on_drain,
        requests: Default::default(),
        legacy_endpoint: None,
        announced: None,
        started: None,
    };
    let mut outcome = relay_response(gateway, ctx, response, false, Vec::new()).await;
    outcome.recorded = recorded;
    outcome
}

pub(super) async fn send(
    gateway: &Gateway,
    identity: &Identity,
    upstream: &Upstream,
    method: Method,
    uri: &str,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response<Body>, Refusal> {
    if let Some(launched) = &upstream.launched {
        let owner = super::policy_stage::principal(identity);
        return launched.exchange(owner, &method, &headers, body).await;
    }
    let server = || upstream.server.name.to_string();
    // Everything before the pool sends is a failure to reach the server.
    let unreached = |detail: String| Refusal::UpstreamUnreachable {
        server: server(),
        detail,
    };
    let Some(pool) = &upstream.pool else {
        return Err(unreached("the server has no http(s) URL".to_owned()));
    };
    let path = pool.target(uri).map_err(unreached)?;
    let mut req = Request::builder().method(method).uri(path);
    if let Some(h) = req.headers_mut() {
        *h = headers;
    }
    let req = req
        .body(Full::new(body))
        .map_err(|e| unreached(e.to_string()))?;
    let timeout = gateway.config.limits.upstream_response_timeout;
    match tokio::time::timeout(timeout, pool.send(req)).await {
        Err(_) => Err(Refusal::UpstreamTimeout {
            server: server(),
            seconds: timeout.as_secs(),
        }),
        Ok(Err(e)) if e.maybe_sent() => Err(Refusal::UpstreamUnavailable {
            server: server(),
            detail: error_chain(&e),
        }),
        Ok(Err(e)) => Err(unreached(error_chain(&e))),
        Ok(Ok(r)) => Ok(r.map(|b| b.map_err(|e| Box::new(e) as super::BoxError).boxed_unsync())),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Sends the upstream's response on to the agent, through the response stage.
async fn relay_response(
    gateway: &Arc<Gateway>,
    ctx: relay::Context,
    response: Response<Body>,
    allow_batch: bool,
    messages: Vec<Message>,
) -> Outcome {
    let limits = &gateway.config.limits;
    // Built only when the response is refused: the common path allocates nothing here.
    let invalid = |ctx: &relay::Context, detail: String| Refusal::UpstreamInvalid {
        server: ctx.upstream.server.name.to_string(),
        detail,
    };
    let (parts, body) = response.into_parts();
    let media_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map_or("", str::trim);
    let is = |wanted: &str| media_type.eq_ignore_ascii_case(wanted);
    if parts
        .headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|e| e != "identity")
    {
        let detail = "compressed response despite Accept-Encoding: identity".to_owned();
        return Outcome::refused(invalid(&ctx, detail), messages);
    }
    // MCP messages are UTF-8, and the gateway checks them as such: a body labelled with another
    // charset would be other text to an agent that honours the label. What the agent gets is
    // labelled with the bare media type.
    let foreign_charset = headers::charset(&parts.headers)
        .filter(|c| !c.eq_ignore_ascii_case("utf-8") && !c.eq_ignore_ascii_case("utf8"))
        .map(|c| {
            format!(
                "a response in charset {:?} (MCP messages are UTF-8)",
                c.to_ascii_lowercase()
            )
        });
    let mut out_headers = headers::agent_response(&parts.headers, &gateway.secrets);
    let body = match parts.status {
        StatusCode::ACCEPTED | StatusCode::NO_CONTENT => {
            relay::discard(body).await;
            refusal::empty()
        }
        _ if is("text/event-stream") && foreign_charset.is_some() => {
            let detail = foreign_charset.unwrap_or_default();
            return Outcome::refused(invalid(&ctx, detail), messages);
        }
        _ if is("text/event-stream") => {
            out_headers.insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/event-stream"),
            );
            out_headers.insert(
                header::CACHE_CONTROL,
                http::HeaderValue::from_static("no-cache"),
            );
            relay::sse(ctx, body, limits.max_sse_event_bytes)
        }
        status if is("application/json") && foreign_charset.is_some() => {
            relay::discard(body).await;
            if status.is_success() {
                let detail = foreign_charset.unwrap_or_default();
                return Outcome::refused(invalid(&ctx, detail), messages);
            }
            // An error status keeps its meaning (404 for an expired session, say); its body,
            // which the gateway cannot vouch for, stays behind.
            out_headers.remove(header::CONTENT_TYPE);
            refusal::empty()
        }
        status if is("application/json") => {
            // A JSON body is read whole before the agent gets a byte: one that stalls would
            // hold the request (and an upstream connection) for good.
            let timeout = limits.upstream_response_timeout;
            let read = relay::json(&ctx, body, allow_batch, limits.max_response_bytes);
            match tokio::time::timeout(timeout, read).await {
                Err(_) => {
                    let late = Refusal::UpstreamTimeout {
                        server: ctx.upstream.server.name.to_string(),
                        seconds: timeout.as_secs(),
                    };
                    return Outcome::refused(late, messages);
                }
                Ok(Ok(bytes)) => {
                    out_headers.insert(
                        header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/json"),
                    );
                    refusal::full(bytes)
                }
                Ok(Err(e)) if status.is_success() => {
                    return Outcome::refused(invalid(&ctx, e.to_string()), messages);
                }
                // An error status with a body the gateway cannot vouch for: keep the status, drop the body.
                Ok(Err(_)) => refusal::empty(),
            }
        }
        // A bodiless success (DELETE's 200, say) carries no message: nothing to inspect.
        status if status.is_success() && media_type.is_empty() => {
            let timeout = limits.upstream_response_timeout;
            match tokio::time::timeout(timeout, relay::collect_capped(body, 0)).await {
                Ok(Ok(_)) => refusal::empty(),
                Ok(Err(_)) => {
                    let detail = "a response body without a Content-Type".to_owned();
                    return Outcome::refused(invalid(&ctx, detail), messages);
                }
                // An empty body that never ends would hold the request for good.
                Err(_) => {
                    let late = Refusal::UpstreamTimeout {
                        server: ctx.upstream.server.name.to_string(),
                        seconds: timeout.as_secs(),
                    };
                    return Outcome::refused(late, messages);
                }
            }
        }
        status if status.is_success() => {
            let detail = format!(
                "unexpected Content-Type {:?}",
                media_type.to_ascii_lowercase()
            );
            return Outcome::refused(invalid(&ctx, detail), messages);
        }
        // Error statuses (404 for an expired session, 405 for no GET stream, 400...) keep their
        // meaning; their bodies are not MCP messages and are not forwarded.
        _ => {
            out_headers.remove(header::CONTENT_TYPE);
            relay::discard(body).await;
            refusal::empty()
        }
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = parts.status;
    *resp.headers_mut() = out_headers;
    Outcome {
        messages,
        ..Outcome::answered(resp)
    }
}
