//! The stages every message passes, in order: identity -> decision -> credentials -> upstream
//! -> response inspection. (The audit log records each step; it is not a stage, since in
//! fail-closed mode it gates forwarding.)
//!
//! Each stage is a trait object so that later components (eBPF identity, the policy engine,
//! credential injection) replace the defaults here without touching the request path. The
//! defaults are what explicit mode without those components should do: attribute by peer
//! address, allow every well-formed message, never pass an agent's credentials upstream, and
//! forward every well-formed response.

use std::{fmt, net::SocketAddr, sync::Arc};

use http::HeaderMap;

use crate::{config::Server, mcp::Message};

/// Who is on the other end of an agent connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// Explicit mode without attestation: all that is known is the peer address.
    Peer { address: SocketAddr },
    /// A redirected connection: the kernel's record of the process that made it.
    Attested(Arc<crate::identity::ProcessIdentity>),
    /// A request that presented a verified gateway token: the agent it names, on top of what
    /// the connection says.
    Token {
        token: Arc<crate::tokens::Verified>,
        connection: Arc<Identity>,
    },
    /// A connection whose client certificate verified (mTLS), on top of what else is known
    /// about it (its peer address, or the kernel's record when it was intercepted).
    Certified {
        certificate: Arc<crate::identity::CertificateIdentity>,
        connection: Arc<Identity>,
    },
}

impl Identity {
    /// The process facts, when the connection was attested.
    pub fn process(&self) -> Option<&Arc<crate::identity::ProcessIdentity>> {
        match self {
            Identity::Attested(p) => Some(p),
            Identity::Token { connection, .. } | Identity::Certified { connection, .. } => {
                connection.process()
            }
            Identity::Peer { .. } => None,
        }
    }

    /// The verified client certificate, when the connection presented one.
    pub fn certificate(&self) -> Option<&crate::identity::CertificateIdentity> {
        match self {
            Identity::Certified { certificate, .. } => Some(certificate),
            Identity::Token { connection, .. } => connection.certificate(),
            _ => None,
        }
    }

    /// The verified token, when the request presented one.
    pub fn token(&self) -> Option<&crate::tokens::Verified> {
        match self {
            Identity::Token { token, .. } => Some(token),
            _ => None,
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Peer { address } => write!(f, "peer {address}"),
            Identity::Attested(p) => write!(f, "agent {} (pid {}, uid {})", p.agent, p.tgid, p.uid),
            Identity::Token { token, connection } => {
                write!(f, "token for {} over {connection}", token.agent)
            }
            Identity::Certified {
                certificate,
                connection,
            } => write!(f, "certificate {} over {connection}", certificate.id),
        }
    }
}

/// What the decision stage says about one message; each names the rule that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow {
        rule: Arc<str>,
        /// The rate-limit token the decision took, if any: given back through
        /// [`DecisionStage::refund`] when the message is refused after all, unsent.
        charge: Option<crate::policy::Charge>,
    },
    /// Refused: the agent gets a JSON-RPC error with `reason`, nothing goes upstream.
    Deny { rule: Arc<str>, reason: String },
    /// Observe mode: forwarded, though enforce mode would have refused it.
    WouldDeny { rule: Arc<str>, reason: String },
}

impl Decision {
    pub fn rule(&self) -> &str {
        match self {
            Decision::Allow { rule, .. }
            | Decision::Deny { rule, .. }
            | Decision::WouldDeny { rule, .. } => rule,
        }
    }

    /// "allow", "deny" or "would_deny", for metrics and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Decision::Allow { .. } => "allow",
            Decision::Deny { .. } => "deny",
            Decision::WouldDeny { .. } => "would_deny",
        }
    }
}

/// What the response stage does with one server->client message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inspection {
    Forward,
    /// Forward this instead (a filtered list result, say): one JSON-RPC message.
    Replace(bytes::Bytes),
    /// Withhold it.
    Drop {
        reason: String,
    },
    /// A server->client request that is refused: withheld, and the server gets a JSON-RPC
    /// error in the agent's place so that it does not wait for an answer.
    Refuse {
        reason: String,
    },
    /// A response refused for the agent (it embeds a server request the policy denies): the
    /// agent gets `reply`, a JSON-RPC error naming why, in its place.
    Deny {
        reason: String,
        reply: bytes::Bytes,
    },
}

/// A server->client message and what it belongs to.
#[derive(Debug)]
pub struct ServerMessage<'a> {
    pub message: &'a Message,
    /// The message as received (one JSON-RPC message).
    pub raw: &'a [u8],
    /// For a response: the method of the agent's request it answers, when known.
    pub answers: Option<&'a str>,
    /// For a response: when the request it answers was sent upstream, when known (also on a
    /// legacy stream, where `answers` is not).
    pub asked_at: Option<std::time::Instant>,
}

/// Attributes a connection.
pub trait IdentityStage: Send + Sync + fmt::Debug {
    fn identify(&self, peer: SocketAddr) -> Identity;
}

/// Decides on each client->server message.
pub trait DecisionStage: Send + Sync + fmt::Debug {
    fn decide(&self, identity: &Identity, server: &Server, message: &Message) -> Decision;

    /// Undoes what an allowing decision used up (a rate-limit token), for a message refused
    /// after it on other grounds and never sent.
    fn refund(&self, _decision: &Decision) {}

    /// Told of each message sent upstream whose request the server answered with success
    /// (what later decisions may depend on).
    fn forwarded(&self, _identity: &Identity, _server: &Server, _message: &Message) {}
}

/// Shapes the headers sent upstream once a request is allowed.
pub trait CredentialStage: Send + Sync + fmt::Debug {
    fn apply(&self, identity: &Identity, server: &Server, upstream_headers: &mut HeaderMap);
}

/// Looks at each server->client message before it reaches the agent.
pub trait ResponseStage: Send + Sync + fmt::Debug {
    fn inspect(
        &self,
        identity: &Identity,
        server: &Server,
        message: &ServerMessage<'_>,
    ) -> Inspection;
}

/// The stages the proxy runs.
#[derive(Clone, Debug)]
pub struct Stages {
    pub identity: Arc<dyn IdentityStage>,
    pub decision: Arc<dyn DecisionStage>,
    pub credentials: Arc<dyn CredentialStage>,
    pub response: Arc<dyn ResponseStage>,
}

impl Stages {
    /// The daemon's stages: the policy engine decides and inspects responses.
    pub fn with_policy(
        engine: Arc<crate::policy::Engine>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        let policy = Arc::new(super::PolicyStage::new(engine, metrics));
        Self {
            decision: policy.clone(),
            response: policy,
            ..Self::default()
        }
    }
}

impl Default for Stages {
    fn default() -> Self {
        Self {
            identity: Arc::new(PeerIdentity),
            decision: Arc::new(AllowWellFormed),
            credentials: Arc::new(StripAgentCredentials),
            response: Arc::new(ForwardWellFormed),
        }
    }
}

/// Explicit mode: the peer address is the identity.
#[derive(Debug)]
pub struct PeerIdentity;

impl IdentityStage for PeerIdentity {
    fn identify(&self, peer: SocketAddr) -> Identity {
        Identity::Peer { address: peer }
    }
}

/// Allows every message that passed strict parsing (tests and embedding; the daemon runs the
/// policy engine).
#[derive(Debug)]
pub struct AllowWellFormed;

impl DecisionStage for AllowWellFormed {
    fn decide(&self, _: &Identity, _: &Server, _: &Message) -> Decision {
        Decision::Allow {
            rule: Arc::from("allow-well-formed"),
            charge: None,
        }
    }
}

/// Headers that carry an agent's credentials. MCP forbids token passthrough, so none of them
/// ever reaches an upstream; upstream credentials are the gateway's to inject.
pub static AGENT_CREDENTIAL_HEADERS: [&http::HeaderName; 3] = [
    &http::header::AUTHORIZATION,
    &http::header::COOKIE,
    &http::header::PROXY_AUTHORIZATION,
];

/// Removes agent credentials from the upstream request.
#[derive(Debug)]
pub struct StripAgentCredentials;

impl CredentialStage for StripAgentCredentials {
    fn apply(&self, _: &Identity, _: &Server, headers: &mut HeaderMap) {
        for name in AGENT_CREDENTIAL_HEADERS {
            headers.remove(name);
        }
    }
}

/// Forwards every well-formed server message.
#[derive(Debug)]
pub struct ForwardWellFormed;

impl ResponseStage for ForwardWellFormed {
    fn inspect(&self, _: &Identity, _: &Server, _: &ServerMessage<'_>) -> Inspection {
        Inspection::Forward
    }
}
