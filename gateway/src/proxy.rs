//! The agent-facing proxy: listener, HTTP handling, upstream clients, and the stages each
//! message passes. It runs the stages; it does not implement policy, identity or audit itself.

mod audit_trail;
pub mod framing;
pub(crate) mod headers;
mod launch_cgroup;
mod legacy;
mod listener;
mod policy_stage;
mod pool;
mod refusal;
mod relay;
mod resource_metadata;
mod service;
mod sessions;
pub mod stages;
mod stdio;
pub mod upstream;

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::SystemTime,
};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;

pub use launch_cgroup::{sweep as sweep_launched, wait_for_removals as wait_for_launched_removals};
pub use listener::{serve, serve_transparent};
pub use policy_stage::PolicyStage;
pub use refusal::{Cause, Refusal};
pub(crate) use service::discard_unread;
pub use upstream::UpstreamError;

use crate::{
    config::Config,
    drain::Drain,
    ebpf::Interceptor,
    identity::{ProcessIdentity, Resolver},
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
    connection_permits: Arc<tokio::sync::Semaphore>,
    /// Of those, what each cgroup's redirected connections hold (a quarter at most): one agent
    /// holding thousands of idle streams open cannot shut the others out.
    connection_shares: Arc<listener::Shares>,
    /// Transparent interception, when it is running.
    pub interceptor: Mutex<Option<Interceptor>>,
    /// Intercepted destinations and the server each belongs to.
    pub destinations: Mutex<HashMap<SocketAddr, String>>,
    pub resolver: Resolver,
    pub live: LiveConnections,
    /// The live policy (reloaded on SIGHUP and through the admin API).
    pub policy: Arc<crate::policy::Engine>,
    /// The audit log (`None` when `audit.enabled = false`).
    pub audit: Option<Arc<crate::audit::Recorder>>,
    /// The token service (`None` unless `tokens.enabled`).
    pub tokens: Option<Arc<crate::tokens::TokenService>>,
    /// What the explicit listener publishes at /.well-known/oauth-protected-resource
    /// (`tokens.resource`).
    resource_metadata: Option<resource_metadata::ResourceMetadata>,
    /// TLS on the explicit listener (`None`: plain HTTP).
    pub agent_tls: Option<crate::tls::listener::AgentTls>,
    /// TLS termination for intercepted https:// servers.
    pub https: Option<crate::tls::intercept::HttpsInterception>,
    /// Every configured secret, blanked from what reaches agents.
    pub secrets: Arc<crate::credentials::Scrubber>,
}

/// An intercepted connection, for `agentgate status` and the admin API.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LiveConnection {
    pub peer: SocketAddr,
    pub server: String,
    #[serde(with = "unix_seconds")]
    pub since: SystemTime,
    pub identity: Arc<ProcessIdentity>,
}

mod unix_seconds {
    pub fn serialize<S: serde::Serializer>(
        t: &std::time::SystemTime,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(
            t.duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        )
    }
}

/// The live intercepted connections.
#[derive(Debug, Default)]
pub struct LiveConnections {
    next: std::sync::atomic::AtomicU64,
    map: Mutex<HashMap<u64, LiveConnection>>,
}

impl LiveConnections {
    fn open(&self, c: LiveConnection) -> u64 {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        lock(&self.map).insert(id, c);
        id
    }

    fn close(&self, id: u64) {
        lock(&self.map).remove(&id);
    }

    /// A snapshot, oldest first.
    pub fn list(&self) -> Vec<LiveConnection> {
        let mut v: Vec<(u64, LiveConnection)> = lock(&self.map)
            .iter()
            .map(|(k, c)| (*k, c.clone()))
            .collect();
        v.sort_by_key(|(k, _)| *k);
        v.into_iter().map(|(_, c)| c).collect()
    }
}

/// Locks `m`, recovering from poison: where it is used, a panic cannot leave the guarded state
/// half-updated, so one panicked request must not take every later one down with it. (Call
/// this rather than copying it.)
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the daemon opened before the proxy: the services the gateway runs requests through.
#[derive(Debug)]
pub struct Services {
    pub policy: Arc<crate::policy::Engine>,
    pub audit: Option<Arc<crate::audit::Recorder>>,
    pub tokens: Option<Arc<crate::tokens::TokenService>>,
    /// The rendered environments of launched servers, by server name.
    pub launch_env: HashMap<String, crate::credentials::LaunchEnv>,
    /// HTTPS and mTLS on the explicit listener (`[listener.tls]`).
    pub agent_tls: Option<crate::tls::listener::AgentTls>,
    /// TLS termination for intercepted https:// servers (`interception.https`).
    pub https: Option<crate::tls::intercept::HttpsInterception>,
    /// Every configured secret, blanked from server messages before they reach agents.
    pub secrets: Arc<crate::credentials::Scrubber>,
}

impl Gateway {
    /// Builds the proxy state; fails only when an upstream's TLS settings are unusable.
    pub fn new(
        config: Arc<Config>,
        stages: stages::Stages,
        metrics: Arc<Metrics>,
        drain: Drain,
        services: Services,
    ) -> Result<Self, UpstreamError> {
        let Services {
            policy,
            audit,
            tokens,
            launch_env,
            agent_tls,
            https,
            secrets,
        } = services;
        let upstreams = upstream::Upstreams::new(&config, launch_env, &drain)?;
        for server in &config.servers {
            if let Some(launcher) = upstreams
                .get(server.name.as_str())
                .and_then(|u| u.launched.as_ref())
            {
                let (engine, name) = (policy.clone(), server.name.as_str().to_owned());
                launcher.on_tools_changed(move || engine.pins().tools_changed(&name));
            }
        }
        Ok(Self {
            upstreams,
            sessions: sessions::Sessions::new(config.limits.max_sessions),
            legacy: legacy::Endpoints::default(),
            connection_permits: listener::connection_permits(config.listener.max_connections),
            connection_shares: listener::Shares::new(config.listener.max_connections / 4),
            interceptor: Mutex::new(None),
            destinations: Mutex::new(HashMap::new()),
            resolver: Resolver::new(config.agents.clone(), config.interception.cgroup.clone()),
            live: LiveConnections::default(),
            policy,
            audit,
            resource_metadata: tokens
                .as_ref()
                .and_then(|t| resource_metadata::ResourceMetadata::new(t.config())),
            tokens,
            agent_tls,
            https,
            secrets,
            config,
            stages,
            metrics,
            drain,
        })
    }

    /// Re-reads the config file and swaps in its policy; the old one stays on any error.
    pub fn reload_policy(&self) -> Result<usize, crate::policy::ReloadError> {
        let result = self.policy.reload(self.config.source.as_deref());
        self.metrics.reload(result.is_ok());
        self.record_event(
            crate::audit::Event::PolicyReload,
            match &result {
                Ok(rules) => serde_json::json!({ "ok": true, "rules": rules }),
                Err(e) => serde_json::json!({ "ok": false, "error": e.to_string() }),
            },
        );
        match &result {
            Ok(rules) => tracing::info!(rules, "Policy reloaded (other settings need a restart)."),
            Err(error) => {
                tracing::error!(%error, "Policy reload refused; the previous policy stays.")
            }
        }
        result
    }

    /// Records a gateway event (start, stop, reload, interception) without waiting for it.
    pub fn record_event(&self, event: crate::audit::Event, detail: serde_json::Value) {
        let mut r = crate::audit::Record::new(event);
        r.detail = Some(detail);
        self.record(r);
    }

    /// Appends a record, when the audit log is on.
    pub fn record(&self, record: crate::audit::Record) {
        if let Some(audit) = &self.audit {
            let _ = audit.record(record);
        }
    }

    fn take_record(
        &self,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> Option<gateway_common::ConnectRecord> {
        lock(&self.interceptor).as_mut()?.take_record(peer, local)
    }

    fn server_at(&self, original: SocketAddr) -> Option<crate::config::Server> {
        let name = lock(&self.destinations).get(&original).cloned()?;
        self.config.server(&name).cloned()
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
