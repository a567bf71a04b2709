//! Responses on their way back to the agent: JSON bodies parsed whole (with a cap), SSE streams
//! parsed event by event and re-emitted as canonical frames, never buffered whole.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use bytes::{Bytes, BytesMut};
use futures_util::stream;
use http_body::{Body as _, Frame};
use http_body_util::{BodyExt, StreamBody};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    Body, BoxError, Gateway, audit_trail,
    stages::{Identity, Inspection, ServerMessage},
    upstream::Upstream,
};
use crate::mcp::{
    self, Message, Revision, rpc_error,
    sse::{self, Event},
};

/// What the relay needs to know about the exchange it belongs to.
#[derive(Clone, Debug)]
pub struct Context {
    pub gateway: Arc<Gateway>,
    pub upstream: Arc<Upstream>,
    pub identity: Identity,
    /// The session id the upstream's response carries (or the request carried).
    pub session: Option<String>,
    /// Legacy HTTP+SSE: `endpoint` events are rewritten.
    pub legacy_stream: bool,
    /// A standalone stream (GET) ends when draining starts; a stream answering a POST runs to
    /// its final response, within the drain deadline.
    pub end_on_drain: bool,
    /// The agent's requests this response answers.
    pub requests: Vec<Asked>,
    /// Legacy HTTP+SSE: where the agent's POST went (answers to the server go there too).
    pub legacy_endpoint: Option<String>,
    /// Legacy HTTP+SSE stream: the endpoint it announced, which names its session there (for
    /// audit records, as a POST to it names it).
    pub announced: Option<String>,
    /// When the agent's request arrived (for the latency in response records).
    pub started: Option<std::time::Instant>,
}

/// One of the agent's requests a response may answer.
#[derive(Clone, Debug)]
pub struct Asked {
    pub id: mcp::Id,
    pub method: Box<str>,
    /// The tool, prompt or resource it names.
    pub target: Option<Box<str>>,
    /// Its audit record.
    pub seq: Option<u64>,
    /// When it was taken to be sent upstream.
    pub at: std::time::Instant,
}

impl Context {
    /// Why the caller's token, checked when the exchange began, no longer admits it.
    fn token_withdrawn(&self) -> Option<crate::tokens::Rejection> {
        let token = self.identity.token()?;
        self.gateway.tokens.as_ref()?.still_honoured(token).err()
    }

    /// Runs the response stage and the session bookkeeping on one server->client message.
    /// Returns what to forward: the message as received, a replacement, or nothing. `answered`
    /// is the request a legacy stream found this message answers, for the audit record (a
    /// POST's own requests are in [`Context::requests`]).
    fn on_message(
        &self,
        message: &Message,
        raw: &[u8],
        endpoint: Option<&str>,
        answered: Option<&Asked>,
    ) -> Relay {
        let own = match (message.kind, &message.id) {
            (mcp::Kind::Response | mcp::Kind::Error, Some(id)) => {
                self.requests.iter().find(|a| &a.id == id)
            }
            _ => None,
        };
        // Inspected as the answer to a request only on the exchange that carried the request:
        // on a legacy stream, which answer is whose rests on the ids the agent chose, so its
        // answers are judged by their shape (a list is filtered wherever it appears), and the
        // request they answer serves the audit record alone.
        let answers = own.map(|a| &*a.method);
        let asked = own.or(answered);
        // Only the answer to the agent's initialize settles the revision (once): any other
        // message carrying a protocolVersion would switch the rules requests are held to.
        if let (Some(version), Some(session), Some("initialize")) =
            (&message.protocol_version, &self.session, answers)
            && message.kind == mcp::Kind::Response
            && let Some(revision) = Revision::parse(version)
            && self.gateway.sessions.negotiated(
                self.upstream.server.name.as_str(),
                session,
                &super::policy_stage::principal(&self.identity),
                revision,
            )
            && let Some(audit) = &self.gateway.audit
        {
            let mut r = audit_trail::base(
                &self.identity,
                self.upstream.server.name.as_str(),
                crate::audit::Event::SessionStart,
            );
            r.session = Some(session.clone());
            r.detail = Some(serde_json::json!({ "protocol_version": revision.as_str() }));
            let _ = audit.record(r);
        }
        let inspection = self.gateway.stages.response.inspect(
            &self.identity,
            &self.upstream.server,
            &ServerMessage {
                message,
                raw,
                answers,
                asked_at: asked.map(|a| a.at),
            },
        );
        let server = self.upstream.server.name.as_str();
        if let Some(audit) = &self.gateway.audit {
            self.record(audit, message, raw, asked, &inspection);
        }
        let relay = match inspection {
            Inspection::Forward => Relay::AsIs,
            Inspection::Replace(b) => Relay::Replaced(b),
            Inspection::Deny { reason, reply } => {
                tracing::debug!(server, %reason, "Refused a server response.");
                Relay::Replaced(reply)
            }
            Inspection::Drop { reason } => {
                tracing::debug!(server, method = message.method(), %reason, "Withheld a server message.");
                Relay::Withheld
            }
            Inspection::Refuse { reason } => {
                tracing::debug!(server, method = message.method(), %reason, "Refused a server request.");
                if let Some(id) = &message.id {
                    self.answer_upstream(id, &reason, endpoint.or(self.legacy_endpoint.as_deref()));
                }
                Relay::Withheld
            }
        };
        self.scrubbed(relay, raw)
    }

    /// What goes to the agent, with every configured secret blanked: an upstream may echo the
    /// credential it was given (a debug tool, an error quoting a connection string).
    fn scrubbed(&self, relay: Relay, raw: &[u8]) -> Relay {
        let secrets = &self.gateway.secrets;
        let bytes: &[u8] = match &relay {
            _ if secrets.is_empty() => return relay,
            Relay::AsIs => raw,
            Relay::Replaced(b) => b,
            Relay::Withheld => return relay,
        };
        let server = &self.upstream.server.name;
        match secrets.scrub_json(bytes) {
            Some(clean) => {
                tracing::warn!(%server, "Blanked a configured secret in a server message to an agent.");
                Relay::Replaced(Bytes::from(clean))
            }
            None if secrets.found_in(bytes) => {
                tracing::warn!(%server, "Withheld a server message that holds a configured secret.");
                Relay::Withheld
            }
            None => relay,
        }
    }

    /// Records one server->client message and what the response stage did with it. Not waited
    /// for: fail-closed is about what reaches upstream servers.
    fn record(
        &self,
        audit: &crate::audit::Recorder,
        message: &Message,
        raw: &[u8],
        asked: Option<&Asked>,
        inspection: &Inspection,
    ) {
        let answer = matches!(message.kind, mcp::Kind::Response | mcp::Kind::Error);
        let event = if answer {
            crate::audit::Event::Response
        } else {
            crate::audit::Event::ServerMessage
        };
        let mut r = audit_trail::base(&self.identity, self.upstream.server.name.as_str(), event);
        // On the legacy transport the endpoint names the session, whatever headers say.
        r.session = self
            .legacy_endpoint
            .clone()
            .or_else(|| self.announced.clone())
            .or_else(|| self.session.clone());
        r.request_id = message.id.as_ref().map(mcp::Id::to_json);
        r.request_seq = asked.and_then(|a| a.seq);
        r.method = match asked {
            Some(a) => Some(a.method.to_string()),
            None => message.method.as_deref().map(str::to_owned),
        };
        r.target = match asked {
            Some(a) => a.target.as_deref().map(str::to_owned),
            None => message.target.subject().map(str::to_owned),
        };
        if answer {
            audit.result(&mut r, raw);
        } else {
            (r.params, r.params_truncated) = audit.params(
                std::str::from_utf8(raw)
                    .ok()
                    .and_then(|t| mcp::message::raw_value_at(t, "/params")),
            );
            r.result_bytes = Some(raw.len() as u64);
        }
        let (decision, reason) = match inspection {
            Inspection::Forward => ("forward", None),
            Inspection::Replace(_) => ("replace", None),
            Inspection::Drop { reason } => ("withhold", Some(reason)),
            Inspection::Refuse { reason } => ("refuse", Some(reason)),
            Inspection::Deny { reason, .. } => ("deny", Some(reason)),
        };
        r.decision = Some(decision.to_owned());
        r.reason = reason.map(|t| audit.text(t));
        r.latency_us = self.started.map(audit_trail::micros);
        let _ = audit.record(r);
    }

    /// Sends the upstream a JSON-RPC error for a server->client request the agent will never
    /// see, so that the server does not wait for an answer.
    /// At most [`super::upstream::MAX_OWED_ANSWERS`] are in flight per server, each for at
    /// most [`ANSWER_TIMEOUT`]; beyond that the server goes without an answer (it asked for
    /// something refused anyway).
    fn answer_upstream(&self, id: &mcp::Id, reason: &str, legacy_endpoint: Option<&str>) {
        let Ok(permit) = self.upstream.owed_answers.clone().try_acquire_owned() else {
            tracing::warn!(server = %self.upstream.server.name, "Too many refused server requests awaiting their answers: this one gets none.");
            return;
        };
        let body = rpc_error::denied(Some(id), reason, "policy").to_string();
        let ctx = self.clone();
        let legacy_endpoint = legacy_endpoint.map(str::to_owned);
        self.gateway.drain.spawn(async move {
            let _permit = permit;
            let gateway = &ctx.gateway;
            let mut url = ctx.upstream.server.url.clone();
            if ctx.legacy_stream || ctx.upstream.server.transport == crate::config::Transport::Sse {
                let Some(path_query) = legacy_endpoint else {
                    tracing::warn!(server = %ctx.upstream.server.name, "No endpoint to answer a refused server request on.");
                    return;
                };
                let (path, query) = path_query.split_once('?').unwrap_or((&path_query, ""));
                url.set_path(path);
                url.set_query((!query.is_empty()).then_some(query));
            }
            let mut headers = http::HeaderMap::new();
            headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
            headers.insert(http::header::ACCEPT, http::HeaderValue::from_static("application/json, text/event-stream"));
            if let Some(session) = ctx.session.as_deref() {
                if let Some(rev) = gateway.sessions.get(ctx.upstream.server.name.as_str(), session) {
                    headers.insert(super::headers::MCP_PROTOCOL_VERSION.clone(), http::HeaderValue::from_static(rev.as_str()));
                }
                if let Ok(v) = http::HeaderValue::from_str(session) {
                    headers.insert(super::headers::MCP_SESSION_ID.clone(), v);
                }
            }
            gateway.stages.credentials.apply(&ctx.identity, &ctx.upstream.server, &mut headers);
            let sent = super::service::send(gateway, &ctx.identity, &ctx.upstream, http::Method::POST, url.as_str(), headers, Bytes::from(body));
            match tokio::time::timeout(ANSWER_TIMEOUT, sent).await {
                Ok(Ok(r)) => {
                    // The answer to a response is 202, perhaps with a body: read out, it frees
                    // the connection.
                    discard(r.into_body()).await;
                }
                Ok(Err(error)) => tracing::warn!(%error, "Could not tell the server its request was refused."),
                Err(_) => tracing::warn!(server = %ctx.upstream.server.name, "The server did not take the answer to its refused request in time."),
            }
        });
    }
}

/// What to send the agent for one server message.
enum Relay {
    AsIs,
    Replaced(Bytes),
    Withheld,
}

/// Why an upstream JSON body was not forwarded.
#[derive(Debug, thiserror::Error)]
pub enum JsonRelayError {
    #[error("response body larger than {0} bytes")]
    TooLarge(usize),
    #[error("reading the response body failed: {0}")]
    Read(String),
    #[error("{0}")]
    Invalid(mcp::MessageError),
    #[error("the response stage withheld the response")]
    Withheld,
}

/// The most of an unwanted response body that is read out to keep its connection.
const DISCARD_MAX: usize = 64 * 1024;

/// How long an unwanted response body may take to end after its headers.
const DISCARD_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

/// Reads out a response body the agent does not get (a 202's "Accepted", an error page), so
/// that its connection goes back to the pool: hyper closes a connection whose response was not
/// read to its end, and a legacy server answers every POST with a body. A body over
/// [`DISCARD_MAX`] bytes, or still coming after [`DISCARD_WAIT`], takes its connection with it.
pub async fn discard(mut body: Body) {
    if body.is_end_stream() {
        return;
    }
    let read_out = async {
        let mut left = DISCARD_MAX;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                let Some(rest) = left.checked_sub(data.len()) else {
                    return;
                };
                left = rest;
            }
        }
    };
    let _ = tokio::time::timeout(DISCARD_WAIT, read_out).await;
}

/// Reads a whole body of at most `max` bytes. (Not `Limited`: its error conversion trips the
/// compiler's higher-ranked `Send` inference on boxed-error bodies inside spawned tasks.)
pub async fn collect_capped(mut body: Body, max: usize) -> Result<Bytes, JsonRelayError> {
    let mut out = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| JsonRelayError::Read(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > max {
                return Err(JsonRelayError::TooLarge(max));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(out.freeze())
}

/// Reads, checks and returns a JSON response body.
pub async fn json(
    ctx: &Context,
    body: Body,
    allow_batch: bool,
    max: usize,
) -> Result<Bytes, JsonRelayError> {
    let bytes = collect_capped(body, max).await?;
    if bytes.is_empty() {
        // DELETE's 200 from some servers: a JSON content type and no body. Nothing to inspect.
        return Ok(bytes);
    }
    let parsed = mcp::message::parse_body(&bytes, allow_batch, "upstream")
        .map_err(JsonRelayError::Invalid)?;
    match &parsed {
        mcp::Body::Single(message) => match ctx.on_message(message, &bytes, None, None) {
            Relay::AsIs => Ok(bytes),
            Relay::Replaced(b) => Ok(b),
            Relay::Withheld => Err(JsonRelayError::Withheld),
        },
        mcp::Body::Batch(messages) => {
            // Rare (2025-03-26 only): split the array to give each message its own bytes.
            let values: Vec<serde_json::Value> =
                serde_json::from_slice(&bytes).map_err(|e| JsonRelayError::Read(e.to_string()))?;
            let mut out = Vec::with_capacity(values.len());
            for (message, value) in messages.iter().zip(values) {
                let raw =
                    serde_json::to_vec(&value).map_err(|e| JsonRelayError::Read(e.to_string()))?;
                match ctx.on_message(message, &raw, None, None) {
                    Relay::AsIs => out.push(value),
                    Relay::Replaced(b) => out.push(
                        serde_json::from_slice(&b)
                            .map_err(|e| JsonRelayError::Read(e.to_string()))?,
                    ),
                    Relay::Withheld => {}
                }
            }
            if out.is_empty() {
                return Err(JsonRelayError::Withheld);
            }
            Ok(Bytes::from(serde_json::Value::Array(out).to_string()))
        }
    }
}

struct SseState {
    ctx: Context,
    body: Body,
    parser: sse::Parser,
    events: Vec<Event>,
    cancel: CancellationToken,
    /// Legacy endpoints this stream announced: released when it ends.
    announced: Vec<String>,
    /// Legacy streams: this stream's number, and where the gateway's answers to requests
    /// POSTed to its endpoints arrive (see [`super::legacy::Endpoints::answer`]).
    stream: u64,
    answers: Option<(mpsc::Sender<Bytes>, mpsc::Receiver<Bytes>)>,
    /// Legacy streams: requests posted to this stream's endpoints that went upstream and
    /// whose answers have not passed yet (see [`super::legacy::StreamHandle`]).
    awaited: Arc<super::legacy::Awaited>,
    done: bool,
}

impl SseState {
    /// Whether a draining gateway still owes this stream's agent answers: it then stays open
    /// (within the shutdown grace) until they have passed.
    fn owes_answers(&self) -> bool {
        !self.awaited.is_empty() || self.answers.as_ref().is_some_and(|(_, rx)| !rx.is_empty())
    }
}

impl Drop for SseState {
    fn drop(&mut self) {
        let server = self.ctx.upstream.server.name.as_str();
        for path_query in self.announced.drain(..) {
            self.ctx
                .gateway
                .legacy
                .release(server, &path_query, self.stream);
        }
    }
}

/// Numbers legacy streams, so that an ended one releases only its own endpoint registrations.
static STREAMS: AtomicU64 = AtomicU64::new(0);

/// What a relayed SSE stream does next.
enum Next {
    Upstream(Option<Result<Frame<Bytes>, BoxError>>),
    /// A gateway answer for this stream's agent (a refused legacy POST).
    Answer(Bytes),
    Drained,
}

/// The next gateway answer; never ready on a stream that takes none.
async fn next_answer(
    answers: &mut Option<(mpsc::Sender<Bytes>, mpsc::Receiver<Bytes>)>,
) -> Option<Bytes> {
    match answers {
        Some((_, rx)) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Relays an SSE body: each event is parsed, checked and re-encoded; the stream ends when the
/// upstream ends it, when it breaks a rule (an oversized event, bad UTF-8), or when the gateway
/// drains.
pub fn sse(ctx: Context, body: Body, max_event: usize) -> Body {
    let cancel = ctx.gateway.drain.token();
    let legacy = ctx.legacy_stream;
    let state = SseState {
        ctx,
        body,
        parser: sse::Parser::new(max_event),
        events: Vec::new(),
        cancel,
        announced: Vec::new(),
        stream: STREAMS.fetch_add(1, Ordering::Relaxed),
        answers: legacy.then(|| mpsc::channel(super::legacy::PENDING_ANSWERS)),
        awaited: Arc::default(),
        done: false,
    };
    let stream = stream::unfold(state, |mut st| async move {
        loop {
            if st.done {
                return None;
            }
            // A legacy stream owing answers to requests the upstream took stays open for them.
            let end_on_drain = st.ctx.end_on_drain && !st.owes_answers();
            if end_on_drain && st.cancel.is_cancelled() {
                return None;
            }
            let next = tokio::select! {
                biased;
                _ = st.cancel.cancelled(), if end_on_drain => Next::Drained,
                // An answer settled elsewhere (a POST that failed) may have been the last one
                // a drain waits for: looked at again from the top.
                _ = st.awaited.settled(), if st.ctx.legacy_stream => continue,
                Some(answer) = next_answer(&mut st.answers) => Next::Answer(answer),
                frame = st.body.frame() => Next::Upstream(frame),
            };
            let frame = match next {
                // Counted while this wait was set up: the stream stays for those answers.
                Next::Drained if st.owes_answers() => continue,
                Next::Drained => return None,
                Next::Answer(message) => {
                    // The gateway's own answers, too, reach only a bearer still admitted.
                    if let Some(why) = st.ctx.token_withdrawn() {
                        tracing::info!(server = %st.ctx.upstream.server.name, reason = %why, "Ended a stream: its token no longer admits the agent.");
                        return None;
                    }
                    let mut out = BytesMut::new();
                    match String::from_utf8(message.to_vec()) {
                        Ok(data) => sse::encode(
                            &Event {
                                event: Some("message".into()),
                                data: Some(data),
                                ..Event::default()
                            },
                            &mut out,
                        ),
                        Err(_) => continue,
                    }
                    return Some((Ok(Frame::data(out.freeze())), st));
                }
                Next::Upstream(frame) => frame,
            };
            // A stream outlives the request whose token was checked: nothing more reaches a
            // bearer whose token has since expired or been revoked.
            if let Some(why) = st.ctx.token_withdrawn() {
                tracing::info!(server = %st.ctx.upstream.server.name, reason = %why, "Ended a stream: its token no longer admits the agent.");
                return None;
            }
            let data = match frame {
                None => return None,
                Some(Err(error)) => {
                    st.done = true;
                    tracing::debug!(%error, server = %st.ctx.upstream.server.name, "Upstream SSE stream broke.");
                    return Some((Err::<Frame<Bytes>, BoxError>(error), st));
                }
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    Err(_) => continue, // trailers carry nothing for the agent
                },
            };
            if let Err(error) = st.parser.push(&data, &mut st.events) {
                st.done = true;
                tracing::warn!(%error, server = %st.ctx.upstream.server.name, "Cut an upstream SSE stream.");
                st.ctx
                    .gateway
                    .upstream_error(st.ctx.upstream.server.name.as_str(), "upstream_invalid");
                return Some((Err(Box::new(error) as BoxError), st));
            }
            let mut out = BytesMut::new();
            let events = std::mem::take(&mut st.events);
            for event in &events {
                relay_event(&mut st, event, &mut out);
            }
            st.events = events;
            st.events.clear();
            // Nobody waits for these events' records: an upstream flooding its stream is read
            // no faster than the log can take them.
            if let Some(audit) = &st.ctx.gateway.audit {
                let end_on_drain = st.ctx.end_on_drain && !st.owes_answers();
                tokio::select! {
                    _ = audit.caught_up() => {}
                    // A standalone stream still ends when draining starts.
                    _ = st.cancel.cancelled(), if end_on_drain => {
                        if out.is_empty() && !st.owes_answers() {
                            return None;
                        }
                    }
                }
            }
            if !out.is_empty() {
                return Some((Ok(Frame::data(out.freeze())), st));
            }
        }
    });
    let body: Pin<Box<dyn futures_util::Stream<Item = Result<Frame<Bytes>, BoxError>> + Send>> =
        Box::pin(stream);
    StreamBody::new(body).boxed_unsync()
}

/// How long the gateway spends handing a server the answer to a request it refused.
const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Endpoints one legacy stream may announce, and the longest accepted.
const MAX_ENDPOINTS_PER_STREAM: usize = 4;
const MAX_ENDPOINT_BYTES: usize = 2048;

/// The longest event id passed on: agents send it back as `Last-Event-ID`.
const MAX_EVENT_ID_BYTES: usize = 1024;

fn relay_event(st: &mut SseState, event: &Event, out: &mut BytesMut) {
    let server = st.ctx.upstream.server.name.as_str();
    // An event's id goes to the agent and comes back in a header: it is held to what a header
    // may carry, and may not carry a credential the server was given (the data's scrubbing
    // never sees it). Such an id is dropped, the event kept.
    let cleaned;
    let event = match &event.id {
        Some(id) if st.ctx.gateway.secrets.found_in(id.as_bytes()) => {
            tracing::warn!(
                server,
                "Dropped an upstream SSE event id that holds a configured secret."
            );
            cleaned = Event {
                id: None,
                ..event.clone()
            };
            &cleaned
        }
        Some(id)
            if id.len() > MAX_EVENT_ID_BYTES || !super::headers::visible_ascii(id.as_bytes()) =>
        {
            tracing::debug!(
                server,
                "Dropped an upstream SSE event id that is not short visible ASCII."
            );
            cleaned = Event {
                id: None,
                ..event.clone()
            };
            &cleaned
        }
        _ => event,
    };
    match (event.event.as_deref(), &event.data) {
        (Some("endpoint"), Some(data)) if st.ctx.legacy_stream => {
            let Some((answers, _)) = &st.answers else {
                return;
            };
            // The transport announces one endpoint per stream; a server that keeps announcing
            // (or announces megabytes) would grow the endpoint table for the stream's life.
            if st.announced.len() >= MAX_ENDPOINTS_PER_STREAM || data.len() > MAX_ENDPOINT_BYTES {
                tracing::warn!(
                    server,
                    announced = st.announced.len(),
                    bytes = data.len(),
                    "Dropped an upstream endpoint event beyond the limits."
                );
                st.ctx.gateway.upstream_error(server, "upstream_invalid");
                return;
            }
            let others = st
                .ctx
                .gateway
                .config
                .servers
                .iter()
                .filter(|s| s.name.as_str() != server)
                .map(|s| (s.name.as_str(), &s.url));
            let url = &st.ctx.upstream.server.url;
            let owner = super::policy_stage::principal(&st.ctx.identity);
            let announced = super::legacy::vet(url, data, &st.ctx.gateway.secrets, others)
                .and_then(|()| {
                    st.ctx.gateway.legacy.announce(
                        server,
                        url,
                        data,
                        (st.stream, &owner),
                        super::legacy::StreamHandle {
                            answers: answers.clone(),
                            awaited: st.awaited.clone(),
                        },
                    )
                });
            match announced {
                Ok((path_query, ours)) => {
                    st.ctx.announced.get_or_insert_with(|| path_query.clone());
                    st.announced.push(path_query);
                    sse::encode(
                        &Event {
                            data: Some(ours),
                            ..event.clone()
                        },
                        out,
                    );
                }
                Err(error) => {
                    tracing::warn!(%error, server, "Dropped an upstream endpoint event.");
                    st.ctx.gateway.upstream_error(server, "upstream_invalid");
                }
            }
        }
        (None | Some("message"), Some(data)) if !data.is_empty() => {
            match mcp::message::parse_message(data.as_bytes()) {
                Ok(message) => {
                    // On a legacy stream, the answer to a request some POST sent: inspected
                    // and recorded as the answer to it.
                    let answered = match (&message.id, message.kind) {
                        (Some(id), mcp::Kind::Response | mcp::Kind::Error)
                            if st.ctx.legacy_stream =>
                        {
                            st.awaited.answered(id)
                        }
                        _ => None,
                    };
                    let endpoint = st.announced.first().map(String::as_str);
                    match st
                        .ctx
                        .on_message(&message, data.as_bytes(), endpoint, answered.as_ref())
                    {
                        Relay::AsIs => sse::encode(event, out),
                        Relay::Replaced(b) => match String::from_utf8(b.to_vec()) {
                            Ok(text) => sse::encode(
                                &Event {
                                    data: Some(text),
                                    ..event.clone()
                                },
                                out,
                            ),
                            Err(_) => {
                                tracing::warn!(server, "Dropped a replacement that is not UTF-8.")
                            }
                        },
                        Relay::Withheld => {}
                    }
                }
                Err(error) => {
                    // Never forward what the gateway could not read: the agent would act on
                    // something no stage has seen.
                    tracing::warn!(%error, server, "Dropped an invalid upstream SSE message.");
                    st.ctx.gateway.upstream_error(server, "upstream_invalid");
                }
            }
        }
        // Priming events (id, empty data), retry hints and keep-alives carry no message.
        (None | Some("message"), _) => sse::encode(event, out),
        (Some(other), _) => {
            tracing::debug!(
                event = other,
                server,
                "Dropped an SSE event of an unknown type."
            );
        }
    }
}
