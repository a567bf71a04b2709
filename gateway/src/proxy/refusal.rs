//! Everything the gateway refuses or fails, with the HTTP status and JSON-RPC error an agent
//! sees, and whose fault it was.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

use super::Body;
use crate::mcp::{Id, MessageError, json::JsonError, rpc_error};

/// Who caused a failure: decides the log level and tells operators where to look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    Client,
    Upstream,
    Gateway,
}

/// A request the gateway answers itself instead of forwarding.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("ambiguous HTTP framing: {0}")]
    Framing(&'static str),
    #[error("bad header: {0}")]
    BadHeader(String),
    #[error("request body larger than {max} bytes")]
    BodyTooLarge { max: usize },
    #[error("request body not received in time")]
    BodyTimeout,
    #[error("malformed request body: {0}")]
    BodyRead(String),
    #[error("Content-Encoding {0:?} is not accepted; send the body uncompressed")]
    ContentEncoding(String),
    #[error("Content-Type must be application/json (in UTF-8: no other charset)")]
    ContentType,
    #[error("{0}")]
    Message(MessageError),
    #[error("request id {0} is already waiting for an answer in this session")]
    IdInFlight(String),
    #[error("header {header} says {header_value:?} but the body says {body_value:?}")]
    HeaderMismatch {
        header: &'static str,
        header_value: String,
        body_value: String,
    },
    /// An `Mcp-Param-*` header that does not say what the tool call's body says.
    #[error("header {header} {problem}")]
    ParamHeader { header: String, problem: String },
    #[error("{header} header is required for protocol revision {revision}")]
    MissingHeader {
        header: &'static str,
        revision: &'static str,
    },
    #[error("unsupported MCP-Protocol-Version {0:?}")]
    UnsupportedRevision(String),
    #[error("MCP-Protocol-Version {header} differs from the session's negotiated {negotiated}")]
    RevisionMismatch {
        header: String,
        negotiated: &'static str,
    },
    #[error("no MCP server named {0:?} is configured")]
    UnknownServer(String),
    #[error("no such route; MCP servers are at /servers/<name>/mcp")]
    NotFound,
    #[error("method not allowed here")]
    MethodNotAllowed,
    #[error("Origin {0:?} is not allowed")]
    Origin(String),
    #[error(
        "Host {0:?} is not served here: only IP addresses, localhost, listener.allowed_hosts and an intercepted server's own name are (another name is how DNS rebinding reaches a local service)"
    )]
    Host(String),
    #[error("unknown or expired message endpoint")]
    UnknownEndpoint,
    /// An `Mcp-Session-Id` the upstream never gave this caller (or one the gateway forgot).
    #[error("unknown or expired session; start a new one with initialize")]
    UnknownSession,
    #[error("request denied: {0}")]
    Denied(String),
    /// The caller's token does not cover this server (RFC 6750's insufficient_scope).
    #[error("request denied: {0}")]
    OutOfScope(String),
    /// The request never reached the server (connect, TLS or handshake failure).
    #[error("upstream {server} unreachable: {detail}")]
    UpstreamUnreachable { server: String, detail: String },
    /// The request failed after it may have reached the server.
    #[error("upstream {server} failed the request: {detail}")]
    UpstreamUnavailable { server: String, detail: String },
    #[error("upstream {server} did not answer within {seconds} s")]
    UpstreamTimeout { server: String, seconds: u64 },
    #[error("upstream {server} sent an invalid response: {detail}")]
    UpstreamInvalid { server: String, detail: String },
    #[error("the gateway is shutting down")]
    Draining,
    /// A bearer token was presented and refused, or sent in a form not accepted.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// A bearer token is required and none was sent.
    #[error(
        "unauthorized: a gateway token is required (Authorization: Bearer; see `agentgate token issue`)"
    )]
    TokenRequired,
    /// Credentials in another scheme than Bearer (`Basic ...`).
    #[error(
        "unauthorized: only Authorization: Bearer <gateway token> is accepted (see `agentgate token issue`)"
    )]
    UnsupportedScheme,
    /// The token could not be checked (its issuer's keys or the revocation list are out of
    /// reach): not the agent's fault, and the same token may pass later.
    #[error("the token cannot be checked now: {0}")]
    TokenUncheckable(String),
    /// Fail-closed audit: the request's record could not be made durable, so it is not served.
    #[error("not forwarded: the audit log cannot record it ({0})")]
    AuditUnavailable(String),
}

impl From<MessageError> for Refusal {
    fn from(e: MessageError) -> Self {
        Refusal::Message(e)
    }
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        use Refusal::*;
        match self {
            Framing(_)
            | BadHeader(_)
            | BodyRead(_)
            | Message(_)
            | IdInFlight(_)
            | HeaderMismatch { .. }
            | ParamHeader { .. }
            | MissingHeader { .. } => StatusCode::BAD_REQUEST,
            UnsupportedRevision(_) | RevisionMismatch { .. } => StatusCode::BAD_REQUEST,
            BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            ContentEncoding(_) | ContentType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            UnknownServer(_) | NotFound | UnknownEndpoint | UnknownSession => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Origin(_) | Host(_) | Denied(_) | OutOfScope(_) => StatusCode::FORBIDDEN,
            Unauthorized(_) | TokenRequired | UnsupportedScheme => StatusCode::UNAUTHORIZED,
            TokenUncheckable(_) => StatusCode::SERVICE_UNAVAILABLE,
            UpstreamUnreachable { .. } | UpstreamUnavailable { .. } | UpstreamInvalid { .. } => {
                StatusCode::BAD_GATEWAY
            }
            UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Draining | AuditUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn code(&self) -> i64 {
        match self {
            Refusal::Message(MessageError::Json(_)) => rpc_error::PARSE_ERROR,
            Refusal::Message(_)
            | Refusal::IdInFlight(_)
            | Refusal::Framing(_)
            | Refusal::BadHeader(_)
            | Refusal::MissingHeader { .. } => rpc_error::INVALID_REQUEST,
            Refusal::UnsupportedRevision(_) | Refusal::RevisionMismatch { .. } => {
                rpc_error::INVALID_REQUEST
            }
            Refusal::HeaderMismatch { .. } | Refusal::ParamHeader { .. } => {
                rpc_error::HEADER_MISMATCH
            }
            Refusal::UpstreamInvalid { .. } => rpc_error::INTERNAL_ERROR,
            _ => rpc_error::GATEWAY_ERROR,
        }
    }

    pub fn cause(&self) -> Cause {
        match self {
            Refusal::UpstreamUnreachable { .. }
            | Refusal::UpstreamUnavailable { .. }
            | Refusal::UpstreamTimeout { .. }
            | Refusal::UpstreamInvalid { .. } => Cause::Upstream,
            Refusal::Draining | Refusal::AuditUnavailable(_) | Refusal::TokenUncheckable(_) => {
                Cause::Gateway
            }
            _ => Cause::Client,
        }
    }

    /// Short label for the errors metric.
    pub fn kind(&self) -> &'static str {
        use Refusal::*;
        match self {
            Framing(_) => "framing",
            BadHeader(_)
            | MissingHeader { .. }
            | UnsupportedRevision(_)
            | RevisionMismatch { .. } => "header",
            BodyTooLarge { .. } => "too_large",
            BodyTimeout => "timeout",
            BodyRead(_) => "body",
            ContentEncoding(_) | ContentType => "media_type",
            Message(MessageError::Json(_)) => "json",
            Message(_) | IdInFlight(_) => "jsonrpc",
            HeaderMismatch { .. } | ParamHeader { .. } => "header_mismatch",
            UnknownServer(_) | NotFound | UnknownEndpoint => "not_found",
            UnknownSession => "unknown_session",
            MethodNotAllowed => "method",
            Origin(_) => "origin",
            Host(_) => "host",
            Denied(_) | OutOfScope(_) => "denied",
            UpstreamUnreachable { .. } => "upstream_unreachable",
            UpstreamUnavailable { .. } => "upstream_unavailable",
            UpstreamTimeout { .. } => "upstream_timeout",
            UpstreamInvalid { .. } => "upstream_invalid",
            Draining => "draining",
            AuditUnavailable(_) => "audit",
            Unauthorized(_) | TokenRequired | UnsupportedScheme => "unauthorized",
            TokenUncheckable(_) => "token_uncheckable",
        }
    }

    /// Framing errors leave the connection in an unknown state: it must be closed.
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            Refusal::Framing(_)
                | Refusal::BodyRead(_)
                | Refusal::BodyTimeout
                | Refusal::BodyTooLarge { .. }
        )
    }

    /// The reply: the status, and a JSON-RPC error body naming the problem.
    pub fn response(&self, id: Option<&Id>) -> Response<Body> {
        self.response_with(self.body(id))
    }

    /// The JSON-RPC error naming the problem, answering the request `id`.
    pub fn body(&self, id: Option<&Id>) -> Bytes {
        rpc_error::body(id, self.code(), &self.to_string())
    }

    /// The reply with `body` (this refusal's [`Refusal::body`]).
    pub fn response_with(&self, body: Bytes) -> Response<Body> {
        let mut resp = Response::new(Full::new(body).map_err(|e| match e {}).boxed_unsync());
        *resp.status_mut() = self.status();
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.closes_connection() {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        match self {
            Refusal::Unauthorized(why) => {
                // RFC 6750: the challenge names the problem. Quotes and backslashes would end
                // or escape the quoted string, and anything outside visible ASCII cannot be in
                // a header: those become '?'.
                let why: String = why
                    .chars()
                    .map(|c| match c {
                        '"' => '\'',
                        ' ' | '!'..='~' if c != '\\' => c,
                        _ => '?',
                    })
                    .collect();
                let challenge = format!(
                    "Bearer realm=\"agentgate\", error=\"invalid_token\", error_description=\"{why}\""
                );
                if let Ok(v) = HeaderValue::from_str(&challenge) {
                    headers.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            // RFC 6750 3.1: a request without credentials, or with credentials of a scheme the
            // server does not support, gets the challenge and no error code.
            Refusal::TokenRequired | Refusal::UnsupportedScheme => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"agentgate\""),
                );
            }
            Refusal::TokenUncheckable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            // RFC 6750 3.1, as MCP's authorization rules ask for a token lacking scope.
            Refusal::OutOfScope(_) => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        "Bearer realm=\"agentgate\", error=\"insufficient_scope\", error_description=\"the token does not cover this server\"",
                    ),
                );
            }
            _ => {}
        }
        if matches!(self, Refusal::MethodNotAllowed) {
            headers.insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
        }
        resp
    }
}

/// Empty body, for forwarding 202s and the like.
pub fn empty() -> Body {
    Full::new(Bytes::new())
        .map_err(|e| match e {})
        .boxed_unsync()
}

/// A fixed body.
pub fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|e| match e {}).boxed_unsync()
}

impl From<JsonError> for Refusal {
    fn from(e: JsonError) -> Self {
        Refusal::Message(MessageError::Json(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge(refusal: &Refusal) -> Option<String> {
        let resp = refusal.response(None);
        resp.headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    #[test]
    fn token_refusals_carry_a_challenge_whatever_the_reason_says() {
        // The reason may quote an unverified claim: quotes, backslashes, control and
        // non-ASCII characters must neither break the header nor drop it.
        let odd = Refusal::Unauthorized("issuer \"é\\\u{7}\r\nX-Evil: 1\" is not trusted".into());
        assert_eq!(
            challenge(&odd).unwrap(),
            "Bearer realm=\"agentgate\", error=\"invalid_token\", \
             error_description=\"issuer '?????X-Evil: 1' is not trusted\""
        );
        for unknowing in [Refusal::TokenRequired, Refusal::UnsupportedScheme] {
            assert_eq!(unknowing.status(), StatusCode::UNAUTHORIZED);
            assert_eq!(challenge(&unknowing).unwrap(), "Bearer realm=\"agentgate\"");
        }
        let unsure = Refusal::TokenUncheckable("keys".into());
        assert_eq!(unsure.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(challenge(&unsure).is_none());
        assert_eq!(unsure.response(None).headers()[header::RETRY_AFTER], "1");
    }
}
