//! The MCP codec: strict JSON, JSON-RPC classification, protocol revisions, SSE framing.
//!
//! Pure functions over bytes: nothing here knows sockets, HTTP or configuration, so every stage
//! (and every fuzzer and benchmark) can call it directly.

pub mod json;
pub mod message;
pub mod param_headers;
pub mod revision;
pub mod rpc_error;
pub mod sse;

pub use message::{Body, Completes, Id, Kind, Message, MessageError, Target};
pub use revision::Revision;
