//! The agent-facing proxy: listener, HTTP handling, upstream clients, and the stages each
//! message passes. It runs the stages; it does not implement policy, identity or audit itself.

mod framing;
mod headers;
mod legacy;
mod listener;
mod refusal;
mod relay;
mod service;
mod sessions;
pub mod stages;
mod upstream;

use std::{net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;

pub use listener::serve;
pub use refusal::{Cause, Refusal};
pub use upstream::UpstreamError;

use crate::{
    config::Config,
    drain::Drain,
    metrics::{ErrorLabels, Metrics},
};

/// Error type of response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Body type of every response the proxy sends.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Shared state of the proxy: configuration, upstream clients, and what it remembers.
#[derive(Debug)]
pub struct Gateway {
    pub config: Arc<Config>,
    upstreams: upstream::Upstreams,
    sessions: sessions::Sessions,
    legacy: legacy::Endpoints,
    pub stages: stages::Stages,
    pub metrics: Arc<Metrics>,
    pub drain: Drain,
}

impl Gateway {
    /// Builds the proxy state; fails only when an upstream's TLS settings are unusable.
    pub fn new(
        config: Arc<Config>,
        stages: stages::Stages,
        metrics: Arc<Metrics>,
        drain: Drain,
    ) -> Result<Self, UpstreamError> {
        Ok(Self {
            upstreams: upstream::Upstreams::new(&config)?,
            sessions: sessions::Sessions::new(config.limits.max_sessions),
            legacy: legacy::Endpoints::default(),
            config,
            stages,
            metrics,
            drain,
        })
    }

    fn upstream_error(&self, server: &str, kind: &'static str) {
        self.metrics
            .errors
            .get_or_create(&ErrorLabels {
                server: server.to_owned(),
                method: "stream",
                kind,
            })
            .inc();
    }
}

/// Where the proxy listens once bound (port 0 in the config picks a free port).
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    pub proxy: SocketAddr,
    pub admin: Option<SocketAddr>,
}
