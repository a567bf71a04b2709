//! Transparent interception: resolves the configured servers to the addresses agents dial, binds
//! the listeners redirected connections arrive at, attaches the kernel programs, and keeps the
//! destination set fresh when server host names resolve differently.

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use tokio::net::TcpListener;

use crate::proxy::lock;
use crate::{
    config::Config,
    ebpf::{self, EbpfError, Interceptor, Plan},
    proxy::{self, Gateway},
};

/// How often server host names are resolved again.
pub const REFRESH_EVERY: Duration = Duration::from_secs(30);

/// Why interception did not start.
#[derive(Debug, thiserror::Error)]
pub enum InterceptionError {
    #[error("cannot listen for redirected connections on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Ebpf(#[from] EbpfError),
}

/// Starts interception for a running gateway.
pub async fn start(gateway: &Arc<Gateway>) -> Result<(), InterceptionError> {
    let config = &gateway.config;
    let port = config.interception.port;
    if let Some(0) = unprivileged_port_start() {
        tracing::warn!(
            port,
            "Any user may bind any port here (net.ipv4.ip_unprivileged_port_start = 0): while the gateway is down, the pinned programs send agents' connections to whoever binds interception.port first."
        );
    } else if let Some(start) = unprivileged_port_start()
        && port >= start
    {
        tracing::warn!(
            port,
            unprivileged_port_start = start,
            "interception.port is one any user may bind: while the gateway is down, the pinned programs send agents' connections to whoever binds it first. Use a port below net.ipv4.ip_unprivileged_port_start."
        );
    }
    let v4: SocketAddr = ([127, 0, 0, 1], port).into();
    let listener4 = TcpListener::bind(v4)
        .await
        .map_err(|source| InterceptionError::Bind {
            address: v4,
            source,
        })?;
    // The IPv6 listener is best effort: a host without IPv6 has no IPv6 agents to redirect.
    // But a port someone else holds is no absence of IPv6: whoever bound [::1]:port would
    // receive every redirected IPv6 connection, tokens and all.
    let v6: SocketAddr = (std::net::Ipv6Addr::LOCALHOST, port).into();
    let listener6 = match TcpListener::bind(v6).await {
        Ok(l) => Some(l),
        Err(source) if source.kind() == std::io::ErrorKind::AddrInUse => {
            return Err(InterceptionError::Bind {
                address: v6,
                source,
            });
        }
        Err(error) => {
            tracing::warn!(%error, "No IPv6 listener for redirected connections.");
            None
        }
    };
    let destinations = resolve(config, true, &HashMap::new()).await;
    let mut cgroups = vec![config.interception.cgroup.clone()];
    cgroups.extend(config.interception.attach.iter().cloned());
    let agent_cgroups = config
        .agents
        .iter()
        .map(|a| format!("{}/{}", config.interception.cgroup, a.name))
        .collect();
    let plan = Plan {
        cgroups,
        agent_cgroups,
        listener_port: port,
        pin_dir: &config.interception.pin_dir,
    };
    let mut interceptor = Interceptor::start(&plan)?;
    let wanted: Vec<_> = destinations
        .keys()
        .copied()
        .map(ebpf::destination)
        .collect();
    interceptor.set_destinations(&wanted)?;
    tracing::info!(
        destinations = wanted.len(),
        port,
        "Transparent interception is on."
    );
    gateway.record_event(
        crate::audit::Event::EbpfAttach,
        serde_json::json!({
            "cgroups": &plan.cgroups,
            "agent_cgroups": &plan.agent_cgroups,
            "destinations": wanted.len(),
            "port": port,
        }),
    );
    if let Some(logger) = interceptor.take_logger() {
        gateway
            .drain
            .spawn(ebpf::forward_kernel_logs(logger, gateway.drain.clone()));
    }
    *lock(&gateway.destinations) = destinations;
    *lock(&gateway.interceptor) = Some(interceptor);

    gateway
        .drain
        .spawn(proxy::serve_transparent(listener4, gateway.clone()));
    if let Some(l) = listener6 {
        gateway
            .drain
            .spawn(proxy::serve_transparent(l, gateway.clone()));
    }
    if config
        .servers
        .iter()
        .any(|s| matches!(s.url.host(), Some(url::Host::Domain(_))))
    {
        gateway.drain.spawn(refresh(gateway.clone()));
    }
    Ok(())
}

/// The lowest port unprivileged processes may bind (net.ipv4.ip_unprivileged_port_start).
fn unprivileged_port_start() -> Option<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Detaches the programs (clean shutdown only: a crashed gateway leaves them attached, so that
/// agents fail closed).
pub fn stop(gateway: &Gateway) {
    if let Some(interceptor) = lock(&gateway.interceptor).take() {
        interceptor.detach();
        gateway.record_event(crate::audit::Event::EbpfDetach, serde_json::json!({}));
        tracing::info!("Transparent interception detached.");
    }
}

/// Every address each intercepted server's URL resolves to. A server whose host cannot be
/// resolved keeps its addresses in `previous`: dropping them would let agents reach it directly
/// until the next good lookup. An address two servers share goes to the first in the config,
/// whichever lookups failed: a redirected connection names no server, only its address
/// (`loud`: say so at warn level).
async fn resolve(
    config: &Config,
    loud: bool,
    previous: &HashMap<SocketAddr, String>,
) -> HashMap<SocketAddr, String> {
    let mut out = HashMap::new();
    for server in &config.servers {
        if server.launch.is_some() {
            // Launched by the gateway: agents reach it only through the gateway anyway.
            continue;
        }
        if server.url.scheme() != "http" && !config.interception.https {
            tracing::warn!(server = %server.name, "Not intercepting an https:// server: set interception.https = true (with the host CA from `agentgate ca init`), or use explicit mode for it.");
            continue;
        }
        let (Some(host), Some(port)) = (server.url.host_str(), server.url.port_or_known_default())
        else {
            continue;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((host, port)).await {
            // Canonical form, as the kernel records it: IPv4-mapped becomes IPv4.
            Ok(addrs) => addrs
                .map(|a| ebpf::socket_addr(&ebpf::destination(a)))
                .collect(),
            Err(error) => {
                tracing::warn!(%error, server = %server.name, "Cannot resolve the server's host; keeping its last addresses.");
                previous
                    .iter()
                    .filter(|(_, s)| **s == server.name.as_str())
                    .map(|(a, _)| *a)
                    .collect()
            }
        };
        for addr in addrs {
            match out.entry(addr) {
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(server.name.to_string());
                }
                std::collections::hash_map::Entry::Occupied(o)
                    if o.get() != server.name.as_str() =>
                {
                    let first = o.get();
                    if loud {
                        tracing::warn!(%addr, server = %server.name, first = %first, "Two servers share an address: intercepted connections to it reach the first; reach the other in explicit mode.");
                    } else {
                        tracing::debug!(%addr, server = %server.name, first = %first, "Two servers share an address.");
                    }
                }
                std::collections::hash_map::Entry::Occupied(_) => {}
            }
        }
    }
    out
}

async fn refresh(gateway: Arc<Gateway>) {
    loop {
        tokio::select! {
            _ = gateway.drain.signaled() => return,
            _ = tokio::time::sleep(REFRESH_EVERY) => {}
        }
        let previous = lock(&gateway.destinations).clone();
        let fresh = resolve(&gateway.config, false, &previous).await;
        let wanted: Vec<_> = fresh.keys().copied().map(ebpf::destination).collect();
        if let Some(interceptor) = lock(&gateway.interceptor).as_mut()
            && let Err(error) = interceptor.set_destinations(&wanted)
        {
            tracing::warn!(%error, "Cannot update the intercepted destinations.");
            continue;
        }
        *lock(&gateway.destinations) = fresh;
    }
}
