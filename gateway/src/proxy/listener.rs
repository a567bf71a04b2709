//! Agent-facing listeners: accept under a connection cap, serve HTTP/1.1 with a header-read
//! timeout, and shut every connection down gracefully when draining starts.
//!
//! The explicit listener serves `/servers/<name>/...`. The transparent listeners take the
//! connections the kernel redirected: each is attributed from its connect record and pinned to
//! the server whose address the agent dialled.

use std::{
    collections::HashMap, convert::Infallible, net::SocketAddr, sync::Arc, time::SystemTime,
};

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
};

use super::{
    Gateway, LiveConnection, framing,
    service::{self, Pinned},
    stages::Identity,
};

/// Accepts explicit-mode agent connections until draining starts.
pub async fn serve(listener: TcpListener, gateway: Arc<Gateway>) {
    accept_loop(listener, gateway, |gateway, stream, peer, slot| {
        let identity = gateway.stages.identity.identify(peer);
        if gateway.agent_tls.is_none() {
            spawn_connection(gateway, stream, peer, slot, identity, None);
            return;
        }
        let drain = gateway.drain.clone();
        drain.spawn(async move {
            let Some(tls) = &gateway.agent_tls else {
                return;
            };
            let Some((stream, certificate)) =
                handshake(&gateway, &tls.acceptor, &tls.names, stream, peer).await
            else {
                return;
            };
            let identity = certified(identity, certificate);
            serve_connection(gateway, stream, peer, slot, identity, None).await;
        });
    })
    .await;
}

/// Accepts redirected connections until draining starts.
pub async fn serve_transparent(listener: TcpListener, gateway: Arc<Gateway>) {
    accept_loop(listener, gateway, |gateway, stream, peer, slot| {
        let local = stream.local_addr().unwrap_or(peer);
        let Some(record) = gateway.take_record(peer, local) else {
            // Not redirected by our programs: nobody should dial this port directly.
            tracing::debug!(%peer, "Closed a connection to the transparent listener that was not redirected.");
            return;
        };
        let original = crate::ebpf::socket_addr(&record.original);
        let Some(server) = gateway.server_at(original) else {
            tracing::warn!(%peer, %original, "Redirected connection to an address no server has any more.");
            return;
        };
        let Some(share) = gateway.connection_shares.take(record.cgroup_id) else {
            tracing::warn!(%peer, pid = record.tgid, cgroup_id = record.cgroup_id, "Closed a redirected connection: its cgroup holds a quarter of listener.max_connections already.");
            return;
        };
        let drain = gateway.drain.clone();
        drain.spawn(async move {
            let _share = share;
            // /proc reads and hashing the executable (which may sit on a file system that never
            // answers) run off the accept loop, bounded: a connection whose process cannot be
            // told in time is closed.
            // A read that hangs keeps its blocking thread even after the timeout: at most
            // MAX_RESOLVING run at once, and a connection finding none free is closed, so that
            // hung reads cannot take the blocking pool other work needs (DNS, reloads, audit).
            // One user's processes (whose executables may be slow to read, on purpose) hold at
            // most a quarter of the lookups: the others' connections still get theirs. Waited
            // for (a burst of connects from one new binary is normal: once one lookup has
            // hashed it, the others hit the cache), and taken before a global slot, so that
            // waiting holds none.
            let deadline = tokio::time::Instant::now() + RESOLVE_TIMEOUT;
            let Some(share) = RESOLVING_BY_USER.wait_for(u64::from(record.uid), deadline).await else {
                tracing::warn!(%peer, pid = record.tgid, uid = record.uid, "Closed a redirected connection: this user's process lookups did not finish in time.");
                return;
            };
            let Ok(permit) = RESOLVING.clone().try_acquire_owned() else {
                tracing::warn!(%peer, pid = record.tgid, "Closed a redirected connection: too many process lookups are still running.");
                return;
            };
            let resolver = gateway.clone();
            let resolved = tokio::task::spawn_blocking(move || {
                let _held = (permit, share);
                resolver.resolver.resolve(&record, original)
            });
            let process = match tokio::time::timeout_at(deadline, resolved).await {
                Ok(Ok(p)) => Arc::new(p),
                _ => {
                    tracing::warn!(%peer, pid = record.tgid, "Closed a redirected connection whose process could not be read in time.");
                    return;
                }
            };
            let pinned = Arc::new(Pinned { server: server.name.to_string(), path: server.url.path().to_owned() });
            let live = LiveConnection {
                peer,
                server: server.name.to_string(),
                since: SystemTime::now(),
                identity: process.clone(),
            };
            let id = gateway.live.open(live);
            let identity = Identity::Attested(process);
            let close_gateway = gateway.clone();
            if server.url.scheme() == "https" {
                let Some(https) = &gateway.https else {
                    close_gateway.live.close(id);
                    return;
                };
                let Some(acceptor) = https.acceptor(server.name.as_str()) else {
                    tracing::warn!(%peer, server = %server.name, "No TLS acceptor for an intercepted https:// server.");
                    close_gateway.live.close(id);
                    return;
                };
                if let Some((stream, certificate)) =
                    handshake(&gateway, acceptor, &https.names, stream, peer).await
                {
                    let identity = certified(identity, certificate);
                    serve_connection(gateway, stream, peer, slot, identity, Some(pinned)).await;
                }
            } else if first_bytes(&gateway, &stream, peer).await {
                serve_connection(gateway, stream, peer, slot, identity, Some(pinned)).await;
            }
            close_gateway.live.close(id);
        });
    })
    .await;
}

/// How long reading a redirected connection's process may take.
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Process lookups running at once (each on a blocking thread).
const MAX_RESOLVING: usize = 64;
/// Of those, the most one user's processes may hold.
const MAX_RESOLVING_PER_USER: usize = MAX_RESOLVING / 4;

static RESOLVING: std::sync::LazyLock<Arc<tokio::sync::Semaphore>> =
    std::sync::LazyLock::new(|| Arc::new(tokio::sync::Semaphore::new(MAX_RESOLVING)));

/// Lookups running for each user.
static RESOLVING_BY_USER: std::sync::LazyLock<Arc<Shares>> =
    std::sync::LazyLock::new(|| Shares::new(MAX_RESOLVING_PER_USER));

/// How much of a pool each party (a user, a cgroup) holds, each at most `max`, so that one
/// party cannot take all of it.
#[derive(Debug)]
pub struct Shares {
    max: usize,
    held: std::sync::Mutex<HashMap<u64, usize>>,
    /// Wakes those waiting for a share when one is given back.
    freed: tokio::sync::Notify,
}

/// One share of a party's, given back when dropped.
#[derive(Debug)]
pub struct Share {
    of: Arc<Shares>,
    party: u64,
}

impl Shares {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            held: Default::default(),
            freed: tokio::sync::Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, usize>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A share for `party`, if it holds fewer than the most.
    pub fn take(self: &Arc<Self>, party: u64) -> Option<Share> {
        let mut held = self.lock();
        let n = held.entry(party).or_default();
        if *n >= self.max {
            if *n == 0 {
                held.remove(&party);
            }
            return None;
        }
        *n += 1;
        Some(Share {
            of: self.clone(),
            party,
        })
    }

    /// A share for `party`, waiting until `deadline` for one to be given back.
    pub async fn wait_for(
        self: &Arc<Self>,
        party: u64,
        deadline: tokio::time::Instant,
    ) -> Option<Share> {
        loop {
            // Registered before looking, so that a share given back in between still wakes it.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(share) = self.take(party) {
                return Some(share);
            }
            tokio::time::timeout_at(deadline, freed).await.ok()?;
        }
    }

    #[cfg(test)]
    fn holders(&self) -> usize {
        self.lock().len()
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut held = self.of.lock();
        if let Some(n) = held.get_mut(&self.party) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.party);
            }
        }
        drop(held);
        self.of.freed.notify_waiters();
    }
}

/// Runs a TLS handshake, bounded like a request head (a silent client holds nothing); returns
/// the stream and the identity of a verified client certificate, if one was presented.
async fn handshake(
    gateway: &Gateway,
    acceptor: &tokio_rustls::TlsAcceptor,
    names: &crate::tls::listener::CertificateNames,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<(
    tokio_rustls::server::TlsStream<TcpStream>,
    Option<crate::identity::CertificateIdentity>,
)> {
    let timeout = gateway.config.limits.header_read_timeout;
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => {
            let certificate = names.identify(stream.get_ref().1.peer_certificates());
            Some((stream, certificate))
        }
        Ok(Err(error)) => {
            gateway.metrics.tls_handshake_failed.inc();
            tracing::debug!(%error, %peer, "Refused a TLS handshake.");
            None
        }
        Err(_) => {
            gateway.metrics.tls_handshake_failed.inc();
            tracing::debug!(%peer, "A TLS handshake timed out.");
            None
        }
    }
}

/// The connection's identity, with its verified client certificate on top when it had one.
fn certified(
    identity: Identity,
    certificate: Option<crate::identity::CertificateIdentity>,
) -> Identity {
    match certificate {
        Some(certificate) => Identity::Certified {
            certificate: Arc::new(certificate),
            connection: Arc::new(identity),
        },
        None => identity,
    }
}

async fn accept_loop(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    on_accept: impl Fn(Arc<Gateway>, TcpStream, SocketAddr, Slot),
) {
    let drain = gateway.drain.clone();
    let permits = gateway.connection_permits.clone();
    loop {
        // Waiting for a permit before accepting leaves excess connections in the kernel's
        // backlog instead of holding file descriptors and memory for them.
        let permit = tokio::select! {
            _ = drain.signaled() => return,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = drain.signaled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(%error, "Failed to accept an agent connection.");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let slot = Slot::new(permit, &gateway.metrics.connections);
        on_accept(gateway.clone(), stream, peer, slot);
    }
}

/// Serves one agent connection on a drain-tracked task.
fn spawn_connection(
    gateway: Arc<Gateway>,
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    identity: Identity,
    pinned: Option<Arc<Pinned>>,
) -> tokio::task::JoinHandle<()> {
    let drain = gateway.drain.clone();
    drain.spawn(async move {
        if first_bytes(&gateway, &stream, peer).await {
            serve_connection(gateway, stream, peer, slot, identity, pinned).await;
        }
    })
}

/// Waits until an agent sends something, within the header-read timeout: HTTP/1.1 buffers
/// (about 20 KiB a connection) are allocated once there is a request to read, so connections
/// that sit idle cost the kernel's socket and a small task. Returns whether to go on serving.
async fn first_bytes(gateway: &Gateway, stream: &TcpStream, peer: SocketAddr) -> bool {
    let timeout = gateway.config.limits.header_read_timeout;
    let mut byte = [0; 1];
    tokio::select! {
        _ = gateway.drain.signaled() => false,
        // `readable()` alone reports a fresh socket ready; a peek waits for a real byte.
        peeked = tokio::time::timeout(timeout, stream.peek(&mut byte)) => match peeked {
            Ok(Ok(n)) => n > 0,
            Ok(Err(error)) => {
                tracing::debug!(%error, %peer, "Agent connection failed before its first request.");
                false
            }
            Err(_) => {
                tracing::debug!(%peer, "Agent connection sent nothing within the header-read timeout.");
                false
            }
        },
    }
}

/// Serves HTTP/1.1 on one agent connection (plain or after a TLS handshake) until it ends or
/// draining closes it.
async fn serve_connection<S>(
    gateway: Arc<Gateway>,
    stream: S,
    peer: SocketAddr,
    slot: Slot,
    identity: Identity,
    pinned: Option<Arc<Pinned>>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    {
        let _slot = slot;
        let conn_gateway = gateway.clone();
        let verdicts = framing::Verdicts::default();
        let conn_verdicts = verdicts.clone();
        let svc = service_fn(move |req| {
            let gateway = conn_gateway.clone();
            let identity = identity.clone();
            let verdicts = conn_verdicts.clone();
            let pinned = pinned.clone();
            async move {
                Ok::<_, Infallible>(service::handle(gateway, identity, verdicts, pinned, req).await)
            }
        });
        let limits = &gateway.config.limits;
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(64 * 1024)
            .serve_connection(TokioIo::new(framing::Tracked::new(stream, verdicts)), svc);
        tokio::pin!(conn);
        let result = tokio::select! {
            // In order: polled on every wake-up of the connection, and an unbiased select
            // draws a random number each time.
            biased;
            r = conn.as_mut() => r,
            _ = gateway.drain.signaled() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(error) = result {
            tracing::debug!(%error, %peer, "Agent connection ended with an error.");
        }
    }
}

/// An accepted agent connection's place under the connection cap, counted in
/// `open_connections` from accept to close.
struct Slot {
    _permit: OwnedSemaphorePermit,
    open: prometheus_client::metrics::gauge::Gauge,
}

impl Slot {
    fn new(permit: OwnedSemaphorePermit, open: &prometheus_client::metrics::gauge::Gauge) -> Self {
        open.inc();
        Self {
            _permit: permit,
            open: open.clone(),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// A semaphore sized by the configured connection cap, shared by every agent-facing listener.
pub fn connection_permits(max: usize) -> Arc<Semaphore> {
    Arc::new(Semaphore::new(max))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_party_holds_at_most_its_share() {
        let shares = Shares::new(16);
        let (greedy, other) = (1, 2);
        let held: Vec<_> = (0..16)
            .map(|_| shares.take(greedy).expect("within the share"))
            .collect();
        assert!(shares.take(greedy).is_none(), "beyond the share");
        assert!(shares.take(other).is_some(), "another party still gets one");
        drop(held);
        assert!(shares.take(greedy).is_some(), "given back when dropped");
        assert_eq!(shares.holders(), 0, "nobody holds any now");
    }

    /// Beyond the share, a lookup waits for one to be given back, until its deadline.
    #[tokio::test]
    async fn a_party_beyond_its_share_waits_for_one_given_back() {
        use tokio::time::{Duration, Instant};
        let shares = Shares::new(2);
        let mut held: Vec<_> = (0..2).map(|_| shares.take(7).unwrap()).collect();
        let soon = Instant::now() + Duration::from_millis(50);
        assert!(shares.wait_for(7, soon).await.is_none(), "none given back");
        let waiter = tokio::spawn({
            let shares = shares.clone();
            async move {
                shares
                    .wait_for(7, Instant::now() + Duration::from_secs(5))
                    .await
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        held.pop();
        assert!(
            waiter.await.unwrap().is_some(),
            "woken by the one given back"
        );
    }
}
