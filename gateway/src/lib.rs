//! agentgate: an MCP security gateway.
//!
//! The daemon sits between AI agents (MCP clients) and the MCP servers they call. Every
//! JSON-RPC message on the way through is parsed strictly ([`mcp`]), passed through the stages
//! of [`proxy::stages`] (identity, decision, credentials, response inspection, audit) and
//! forwarded. See `ARCHITECTURE.md` for the tasks, ports and the order of the stages.

pub mod admin;
pub mod audit;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod drain;
pub mod ebpf;
pub mod identity;
pub mod interception;
pub mod mcp;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod signal;
pub mod telemetry;
pub mod tls;
pub mod tokens;

/// Exit code for a configuration the daemon cannot run with (sysexits.h EX_USAGE).
pub const EXIT_BAD_CONFIG: i32 = 64;
/// Exit code for a failure to start (a port in use, say): sysexits.h EX_UNAVAILABLE.
pub const EXIT_UNAVAILABLE: i32 = 69;
