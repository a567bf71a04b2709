//! Integration tests: the gateway between real MCP peers (the Python `mcp` SDK, the TypeScript
//! SDK's server-everything), and the strict-input rules seen from the wire.
//!
//! The peers are installed by `cargo xtask setup` (which `cargo xtask ci` runs first). Tests that
//! need them fail, never skip, when they are missing.

// Tests unwrap: a panic is the failure report, with its location.
#![allow(clippy::unwrap_used)]

mod audit;
mod common;
mod credentials;
mod differential;
mod ebpf;
mod launched;
mod lifecycle;
mod mtls;
mod policy;
mod postgres;
mod real_peers;
mod strict_input;
mod tokens;
