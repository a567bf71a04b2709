//! JSON-RPC error replies the gateway writes itself, with the codes MCP and JSON-RPC define.

use bytes::Bytes;

use super::message::Id;

/// Invalid JSON.
pub const PARSE_ERROR: i64 = -32700;
/// Valid JSON, not a valid request.
pub const INVALID_REQUEST: i64 = -32600;
/// An error inside the gateway or upstream.
pub const INTERNAL_ERROR: i64 = -32603;
/// 2026-07-28: `Mcp-Method` / `Mcp-Name` disagree with the body.
pub const HEADER_MISMATCH: i64 = -32020;
/// Implementation-defined server error range start, used for gateway-side refusals that are
/// neither parse nor request errors (size limits, upstream failures).
pub const GATEWAY_ERROR: i64 = -32000;

/// The policy refused the request; `data.rule` names the rule.
pub const POLICY_DENIED: i64 = -32001;

/// A policy refusal as a JSON-RPC error object (inside a response or a batch of them).
pub fn denied(id: Option<&Id>, message: &str, rule: &str) -> serde_json::Value {
    serde_json::json!({
        "jsonrpc": "2.0",
        "id": id.map_or(serde_json::Value::Null, Id::to_json),
        "error": { "code": POLICY_DENIED, "message": message, "data": { "rule": rule } },
    })
}

/// Serializes a JSON-RPC error response. `id` is null when the request's id is unknown.
pub fn body(id: Option<&Id>, code: i64, message: &str) -> Bytes {
    let value = serde_json::json!({
        "jsonrpc": "2.0",
        "id": id.map_or(serde_json::Value::Null, Id::to_json),
        "error": { "code": code, "message": message },
    });
    Bytes::from(value.to_string())
}
