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
        let drain = gateway.drain.clone();
        drain.spawn(async move {
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
            let Some(share) = UserShare::wait_for(record.uid, deadline).await else {
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

/// Lookups running for each user.
static RESOLVING_BY_USER: std::sync::LazyLock<std::sync::Mutex<HashMap<u32, usize>>> =
    std::sync::LazyLock::new(Default::default);

/// Wakes connections waiting for a user's share when one is given back.
static SHARE_FREED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// One running lookup of a user's, given back when dropped.
struct UserShare(u32);

impl UserShare {
    /// A share for `uid`, waiting until `deadline` for one to be given back.
    async fn wait_for(uid: u32, deadline: tokio::time::Instant) -> Option<Self> {
        loop {
            // Registered before looking, so that a share given back in between still wakes it.
            let freed = SHARE_FREED.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(share) = Self::take(uid) {
                return Some(share);
            }
            tokio::time::timeout_at(deadline, freed).await.ok()?;
        }
    }

    fn take(uid: u32) -> Option<Self> {
        let mut by_user = RESOLVING_BY_USER.lock().unwrap_or_else(|p| p.into_inner());
        let running = by_user.entry(uid).or_default();
        if *running >= MAX_RESOLVING_PER_USER {
            return None;
        }
        *running += 1;
        Some(UserShare(uid))
    }
}

impl Drop for UserShare {
    fn drop(&mut self) {
        let mut by_user = RESOLVING_BY_USER.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(running) = by_user.get_mut(&self.0) {
            *running -= 1;
            if *running == 0 {
                by_user.remove(&self.0);
            }
        }
        drop(by_user);
        SHARE_FREED.notify_waiters();
    }
}
static RESOLVING: std::sync::LazyLock<Arc<tokio::sync::Semaphore>> =
    std::sync::LazyLock::new(|| Arc::new(tokio::sync::Semaphore::new(MAX_RESOLVING)));

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
    fn one_user_holds_at_most_a_quarter_of_the_process_lookups() {
        // Users no test process runs as: the table is shared by the whole test binary.
        let (greedy, other) = (4_000_000_001, 4_000_000_002);
        let held: Vec<_> = (0..MAX_RESOLVING_PER_USER)
            .map(|_| UserShare::take(greedy).expect("within the share"))
            .collect();
        assert!(UserShare::take(greedy).is_none(), "beyond the share");
        assert!(
            UserShare::take(other).is_some(),
            "another user still gets one"
        );
        drop(held);
        assert!(UserShare::take(greedy).is_some(), "given back when dropped");
        let by_user = RESOLVING_BY_USER.lock().unwrap();
        assert!(!by_user.contains_key(&greedy) && !by_user.contains_key(&other));
    }

    /// Beyond the share, a lookup waits for one to be given back, until its deadline.
    #[tokio::test]
    async fn a_lookup_beyond_the_share_waits_for_one_given_back() {
        use tokio::time::{Duration, Instant};
        let uid = 4_000_000_003;
        let mut held: Vec<_> = (0..MAX_RESOLVING_PER_USER)
            .map(|_| UserShare::take(uid).unwrap())
            .collect();
        let soon = Instant::now() + Duration::from_millis(50);
        assert!(
            UserShare::wait_for(uid, soon).await.is_none(),
            "none given back"
        );
        let waiter = tokio::spawn(UserShare::wait_for(
            uid,
            Instant::now() + Duration::from_secs(5),
        ));
        tokio::time::sleep(Duration::from_millis(20)).await;
        held.pop();
        assert!(
            waiter.await.unwrap().is_some(),
            "woken by the one given back"
        );
    }
}
