//! What the proxy writes to the audit log: one record per message, built from what the request
//! path knows at that point (identity, server, session, the message, the decision).

use std::time::Instant;

use serde_json::Value;

use super::stages::{Decision, Identity};
use crate::{
    audit::{Event, Record, Recorder},
    identity::UNKNOWN_AGENT,
    mcp::{Kind, Message, message::raw_value_at},
};

/// A record about `identity`'s traffic to `server`.
pub fn base(identity: &Identity, server: &str, event: Event) -> Record {
    let mut r = Record::new(event);
    describe(identity, &mut r);
    if server != "-" {
        r.server = Some(server.to_owned());
    }
    r
}

fn describe(identity: &Identity, r: &mut Record) {
    match identity {
        Identity::Peer { address } => {
            r.agent = Some(UNKNOWN_AGENT.to_owned());
            r.peer = Some(address.to_string());
        }
        Identity::Attested(p) => {
            r.agent = Some(p.agent.clone());
            r.process = serde_json::to_value(&**p).ok();
        }
        Identity::Token { token, connection } => {
            describe(connection, r);
            r.agent = Some(token.agent.clone());
            r.subject = Some(token.subject.clone());
        }
        Identity::Certified {
            certificate,
            connection,
        } => {
            describe(connection, r);
            // As the policy sees it: the kernel's name wins on attested connections.
            if let Some(agent) = &certificate.agent
                && connection.process().is_none()
            {
                r.agent = Some(agent.clone());
            }
            r.certificate = Some(certificate.id.clone());
        }
    }
}

/// The JSON text of each message of `body`: the body itself, or each element of a batch
/// (found in one pass, not one per message).
pub fn message_texts(body: &bytes::Bytes, batch: bool) -> Vec<Option<bytes::Bytes>> {
    if !batch {
        return vec![Some(body.clone())];
    }
    crate::mcp::message::batch_texts(body)
        .map(|texts| texts.into_iter().map(Some).collect())
        .unwrap_or_default()
}

/// What the record of one client->server message says before it is forwarded.
pub struct RequestFacts<'a> {
    pub identity: &'a Identity,
    pub server: &'a str,
    pub session: Option<&'a str>,
    pub message: &'a Message,
    /// The message's own JSON text.
    pub text: Option<&'a str>,
    pub decision: Option<&'a Decision>,
}

/// The record of one client->server message.
pub fn request(audit: &Recorder, f: &RequestFacts<'_>) -> Record {
    let mut r = base(f.identity, f.server, Event::Request);
    r.session = f.session.map(str::to_owned);
    r.method = f.message.method.as_deref().map(str::to_owned);
    r.target = f.message.target.subject().map(str::to_owned);
    r.request_id = f.message.id.as_ref().map(|id| id.to_json());
    match f.message.kind {
        Kind::Request | Kind::Notification => {
            (r.params, r.params_truncated) =
                audit.params(f.text.and_then(|t| raw_value_at(t, "/params")));
        }
        // The agent answering a server's request (sampling, elicitation, roots).
        Kind::Response | Kind::Error => {
            if let Some(t) = f.text {
                audit.result(&mut r, t.as_bytes());
            }
        }
    }
    if let Some(d) = f.decision {
        decision(audit, &mut r, d);
    }
    r
}

/// Fills the decision members.
pub fn decision(audit: &Recorder, r: &mut Record, d: &Decision) {
    r.decision = Some(d.as_str().to_owned());
    r.rule = Some(d.rule().to_owned());
    if let Decision::Deny { reason, .. } | Decision::WouldDeny { reason, .. } = d {
        r.reason = Some(audit.text(reason));
    }
}

/// A capped, redacted excerpt of a body that could not be classified, as evidence.
/// A body that is JSON to a lenient reader (refused for a duplicate key, say, or for its
/// headers) is kept as that reader's re-encoding, redacted as parameters are: of repeated keys
/// it keeps one, so a secret under an earlier copy cannot slip past the key rules.
pub fn body_excerpt(audit: &Recorder, body: &[u8]) -> Value {
    let rules = &audit.config().redact;
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(mut parsed) => {
            crate::audit::redact::redact(rules, &mut parsed);
            parsed.to_string()
        }
        Err(_) => audit.text(&String::from_utf8_lossy(body)),
    };
    let (v, _) = crate::audit::redact::cap(Value::String(text), audit.config().max_params_bytes);
    serde_json::json!({ "body_bytes": body.len(), "body_excerpt": v })
}

/// Microseconds since `started`.
pub fn micros(started: Instant) -> u64 {
    started.elapsed().as_micros().min(u128::from(u64::MAX)) as u64
}
