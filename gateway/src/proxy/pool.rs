//! Keep-alive connections to one upstream server: idle HTTP/1.1 connections wait in a stack,
//! a request borrows the newest, and its response body gives it back once read to the end. An
//! HTTPS server that negotiates HTTP/2 (ALPN) gets connections that requests share, up to
//! [`STREAMS_PER_CONNECTION`] at a time each, with no request framing left to read two ways.
//!
//! Built on hyper's connection API rather than hyper-util's general client: every connection
//! here goes to the one origin of its server, so borrowing is a lock and a pop, with no pool key
//! to hash and no URI to rewrite per request (that general client cost about 5% of a proxied
//! call's instructions).

use std::{
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError, Weak,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, Uri, header};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::{
    body::Incoming,
    client::conn::{http1, http2},
};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::connect::{Connection, HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use tower_service::Service;

use crate::drain::Drain;

/// Dials a server over TCP, and TLS for https://.
pub type Connector = HttpsConnector<HttpConnector>;

type Sender = http1::SendRequest<Full<Bytes>>;
type Sender2 = http2::SendRequest<Full<Bytes>>;

/// A new connection, as the server took it: an HTTP/2 one already shared, with its first
/// request's hold on it.
enum Dialed {
    Http1(Sender),
    Http2(Sender2, StreamGuard),
}

/// How long a connection may sit idle before it is closed: between one and two sweeps.
const SWEEP_EVERY: Duration = Duration::from_secs(45);

/// Requests an HTTP/2 connection carries at once; more open another connection. Below every
/// common server's limit (100 to 250), so that a connection full of long-lived SSE streams
/// never leaves a request waiting for a stream the server will not open.
pub const STREAMS_PER_CONNECTION: usize = 32;

/// How much of one response an HTTP/2 stream may hold unread, and the connection for all of
/// its streams together: a stream whose agent stopped reading holds at most its own share, and
/// never stalls the others. (It also bounds one response to a window per round trip: 5 MiB/s
/// at 100 ms, ample for JSON-RPC.)
const STREAM_WINDOW: u32 = 512 * 1024;
const CONNECTION_WINDOW: u32 = STREAM_WINDOW * STREAMS_PER_CONNECTION as u32;

/// HTTP/2 pings: a connection whose server stopped answering (a crashed host, a partition)
/// is closed within interval + timeout, not left to every request's timeout.
const PING_EVERY: Duration = Duration::from_secs(20);
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request got no response from the server.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("connect failed")]
    Connect(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("HTTP handshake failed")]
    Handshake(#[source] hyper::Error),
    /// The connection failed before the request left: the server never saw it.
    #[error("connection closed before the request was sent")]
    Unsent(#[source] hyper::Error),
    #[error("request failed")]
    Request(#[source] hyper::Error),
}

impl PoolError {
    /// Whether the server may have received the request (and may act on it, or answer it on
    /// another stream): false only when it certainly did not.
    pub fn maybe_sent(&self) -> bool {
        matches!(self, PoolError::Request(_))
    }
}

/// The connections to one server.
#[derive(Debug)]
pub struct Pool {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    connector: Connector,
    /// The connector bounds the TCP connect only; name resolution and a server that accepts
    /// and then stalls the TLS handshake are bounded by this.
    connect_timeout: Duration,
    /// `scheme://authority/`: what the connector dials.
    origin: Uri,
    /// The server's URL, and its path and query as a request target (parsed once).
    url: String,
    path: Uri,
    /// The `Host` header every request carries.
    host: HeaderValue,
    idle: Mutex<Vec<Idle>>,
    /// HTTP/2 connections, once the server negotiated it, shared by requests.
    multiplexed: Mutex<Vec<Multiplexed>>,
    /// Whether the server took HTTP/2 when last dialled: it is then dialled once at a time.
    speaks_http2: AtomicBool,
    dialing: tokio::sync::Mutex<()>,
    /// Dials that failed while dialling once at a time.
    dial_failures: std::sync::atomic::AtomicU64,
    sweep_every: Duration,
    sweeping: AtomicBool,
    drain: Drain,
}

/// An HTTP/2 connection and the requests it carries.
#[derive(Debug)]
struct Multiplexed {
    sender: Sender2,
    /// Requests whose responses are not over yet (their [`StreamGuard`]s).
    streams: Arc<std::sync::atomic::AtomicUsize>,
    /// As for idle connections: set by a sweep, cleared by a request; a connection still
    /// marked at the next sweep, with no request running, is closed.
    swept: bool,
}

impl Multiplexed {
    /// Whether it can take another request.
    fn has_room(&self) -> bool {
        !self.sender.is_closed() && self.streams.load(Ordering::Relaxed) < STREAMS_PER_CONNECTION
    }
}

/// One request's hold on its HTTP/2 connection, released when its response is over.
#[derive(Debug)]
struct StreamGuard(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct Idle {
    sender: Sender,
    /// Set by a sweep; a connection still idle at the next sweep is closed.
    swept: bool,
}

impl Pool {
    /// A pool for the server at `url` (http:// or https://); `None` for a URL with no host.
    /// Connecting (DNS, TCP and TLS together) gets `connect_timeout`.
    pub fn new(
        url: &url::Url,
        connector: Connector,
        connect_timeout: Duration,
        drain: Drain,
    ) -> Option<Self> {
        Self::with_sweep(url, connector, connect_timeout, drain, SWEEP_EVERY)
    }

    fn with_sweep(
        url: &url::Url,
        connector: Connector,
        connect_timeout: Duration,
        drain: Drain,
        sweep_every: Duration,
    ) -> Option<Self> {
        let authority = &url[url::Position::BeforeHost..url::Position::AfterPort];
        let origin = Uri::builder()
            .scheme(url.scheme())
            .authority(authority)
            .path_and_query("/")
            .build()
            .ok()?;
        let host = HeaderValue::from_str(authority).ok()?;
        let path = url[url::Position::BeforePath..url::Position::AfterQuery]
            .parse()
            .ok()?;
        Some(Self {
            shared: Arc::new(Shared {
                connector,
                connect_timeout,
                origin,
                url: url.as_str().to_owned(),
                path,
                host,
                idle: Mutex::new(Vec::new()),
                multiplexed: Mutex::new(Vec::new()),
                speaks_http2: AtomicBool::new(false),
                dialing: tokio::sync::Mutex::new(()),
                dial_failures: std::sync::atomic::AtomicU64::new(0),
                sweep_every,
                sweeping: AtomicBool::new(false),
                drain,
            }),
        })
    }

    /// The origin-form request target (`/path?query`) for `url`, which must be on this pool's
    /// server: the server's own URL (the usual case) is not parsed again.
    pub fn target(&self, url: &str) -> Result<Uri, String> {
        let shared = &self.shared;
        if url == shared.url {
            return Ok(shared.path.clone());
        }
        let full = url.parse::<Uri>().map_err(|e| e.to_string())?;
        if full.scheme() != shared.origin.scheme() || full.authority() != shared.origin.authority()
        {
            return Err(format!("{url} is not on the server's origin"));
        }
        let path = full.path_and_query().map_or("/", |p| p.as_str());
        path.parse::<Uri>().map_err(|e| e.to_string())
    }

    /// Sends `req` (its URI in origin form, `/path?query`) on an idle connection, or a new one.
    /// A request that a reused connection closed on before sending is tried again; one that was
    /// sent is never repeated.
    pub async fn send(
        &self,
        mut req: Request<Full<Bytes>>,
    ) -> Result<Response<PooledBody>, PoolError> {
        loop {
            let (connection, reused) = match self.shared.multiplexed() {
                Some((sender, guard)) => (Dialed::Http2(sender, guard), true),
                None => match self.checkout() {
                    Some(sender) => (Dialed::Http1(sender), true),
                    // Boxed: dialling (TCP, TLS, the HTTP handshake) takes a future of several
                    // KiB, which every request's future would otherwise carry and copy.
                    None => match Box::pin(self.dial()).await? {
                        Some(dialed) => (dialed, false),
                        None => continue,
                    },
                },
            };
            let mut sender = match connection {
                Dialed::Http1(sender) => sender,
                // Boxed for the same reason: HTTP/1.1 requests, the common case, should not
                // carry (and copy, at every await up the request path) the HTTP/2 path's state.
                Dialed::Http2(sender, guard) => {
                    match Box::pin(self.send_http2(sender, guard, req, reused)).await {
                        Ok(response) => return Ok(response),
                        Err(Retry::Failed(e)) => return Err(e),
                        // (Only a shared connection's unsent requests come back.)
                        Err(Retry::Again(unsent)) => {
                            req = *unsent;
                            continue;
                        }
                    }
                }
            };
            // Back in origin form if an HTTP/2 connection that closed made it absolute.
            if req.uri().scheme().is_some()
                && let Some(target) = req.uri().path_and_query().cloned()
            {
                *req.uri_mut() = Uri::from(target);
            }
            req.headers_mut()
                .insert(header::HOST, self.shared.host.clone());
            match sender.try_send_request(req).await {
                Ok(response) => {
                    let lease = Lease {
                        sender,
                        pool: Arc::downgrade(&self.shared),
                    };
                    return Ok(response.map(|body| PooledBody {
                        body,
                        lease: Some(lease),
                        stream: None,
                    }));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => req = unsent,
                    Some(_) => return Err(PoolError::Unsent(e.into_error())),
                    None => return Err(PoolError::Request(e.into_error())),
                },
            }
        }
    }

    /// Sends `req` as a stream of the HTTP/2 connection `sender`, holding `guard` until its
    /// response is over; a request a shared (`reused`) connection closed on before sending
    /// comes back to be sent again.
    async fn send_http2(
        &self,
        mut sender: Sender2,
        guard: StreamGuard,
        mut req: Request<Full<Bytes>>,
        reused: bool,
    ) -> Result<Response<PooledBody>, Retry> {
        // HTTP/2 names the server in `:authority`, taken from an absolute URI; a Host header
        // beside it could only disagree.
        if req.uri().scheme().is_none() {
            let mut parts = self.shared.origin.clone().into_parts();
            parts.path_and_query = req.uri().path_and_query().cloned();
            *req.uri_mut() = Uri::from_parts(parts)
                .map_err(|e| Retry::Failed(PoolError::Connect(Box::new(e))))?;
        }
        req.headers_mut().remove(header::HOST);
        match sender.try_send_request(req).await {
            Ok(response) => Ok(response.map(|body| PooledBody {
                body,
                lease: None,
                stream: Some(guard),
            })),
            Err(mut e) => match e.take_message() {
                Some(unsent) if reused => Err(Retry::Again(Box::new(unsent))),
                Some(_) => Err(Retry::Failed(PoolError::Unsent(e.into_error()))),
                None => Err(Retry::Failed(PoolError::Request(e.into_error()))),
            },
        }
    }

    /// The most recently returned connection that can take a request; closed ones are dropped.
    fn checkout(&self) -> Option<Sender> {
        let mut idle = self.shared.lock();
        while let Some(entry) = idle.pop() {
            if entry.sender.is_ready() {
                return Some(entry.sender);
            }
        }
        None
    }

    /// A new connection; `None` when, once the server has spoken HTTP/2, another request's
    /// dial made room meanwhile. Such a server is dialled once at a time: a burst of requests
    /// shares the connection the first one opens instead of each opening its own.
    async fn dial(&self) -> Result<Option<Dialed>, PoolError> {
        if !self.shared.speaks_http2.load(Ordering::Relaxed) {
            return self.connect().await.map(Some);
        }
        let failures = self.shared.dial_failures.load(Ordering::Relaxed);
        let _one_at_a_time = self.shared.dialing.lock().await;
        if self.shared.has_room() {
            return Ok(None);
        }
        // The dial this request waited for failed: so does this one, at once, rather than each
        // waiter dialling in turn for a whole connect timeout.
        if self.shared.dial_failures.load(Ordering::Relaxed) != failures {
            return Err(PoolError::Connect(
                "the connection this request waited for could not be made".into(),
            ));
        }
        // (An HTTP/2 connection is shared before the lock goes: the requests waiting for it
        // find its room.)
        let dialed = self.connect().await;
        if dialed.is_err() {
            self.shared.dial_failures.fetch_add(1, Ordering::Relaxed);
        }
        dialed.map(Some)
    }

    async fn connect(&self) -> Result<Dialed, PoolError> {
        let dial = async {
            let mut connector = self.shared.connector.clone();
            let io = connector
                .call(self.shared.origin.clone())
                .await
                .map_err(PoolError::Connect)?;
            // Not a drain task either way: a connection ends by itself once the pool lets go
            // of its senders (HTTP/2: and its streams end), or the server closes, and
            // in-flight requests are what draining waits for.
            if io.connected().is_negotiated_h2() {
                let (sender, connection) = http2::Builder::new(TokioExecutor::new())
                    .timer(TokioTimer::new())
                    .initial_stream_window_size(STREAM_WINDOW)
                    .initial_connection_window_size(CONNECTION_WINDOW)
                    .adaptive_window(false)
                    .keep_alive_interval(PING_EVERY)
                    .keep_alive_timeout(PING_TIMEOUT)
                    .keep_alive_while_idle(true)
                    .handshake(io)
                    .await
                    .map_err(PoolError::Handshake)?;
                tokio::spawn(run(connection));
                self.shared.speaks_http2.store(true, Ordering::Relaxed);
                let guard = self.shared.share(sender.clone());
                Ok(Dialed::Http2(sender, guard))
            } else {
                let (sender, connection) = http1::Builder::new()
                    .handshake(io)
                    .await
                    .map_err(PoolError::Handshake)?;
                tokio::spawn(run(connection));
                // A server that stopped offering HTTP/2 is dialled in parallel again.
                self.shared.speaks_http2.store(false, Ordering::Relaxed);
                Ok(Dialed::Http1(sender))
            }
        };
        tokio::time::timeout(self.shared.connect_timeout, dial)
            .await
            .map_err(|elapsed| PoolError::Connect(Box::new(elapsed)))?
    }

    /// Connections waiting for a request.
    #[cfg(test)]
    fn idle(&self) -> usize {
        self.shared.lock().len()
    }
}

/// Drives a connection to its end.
async fn run(connection: impl std::future::IntoFuture<Output = Result<(), hyper::Error>>) {
    if let Err(error) = connection.await {
        tracing::debug!(%error, "Upstream connection ended with an error.");
    }
}

/// Why an HTTP/2 request came back unanswered.
enum Retry {
    /// The shared connection closed before the request left: send it again.
    Again(Box<Request<Full<Bytes>>>),
    Failed(PoolError),
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_multiplexed(&self) -> std::sync::MutexGuard<'_, Vec<Multiplexed>> {
        self.multiplexed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// An HTTP/2 connection with room for one more request, and the request's hold on it;
    /// `None` when there is none (closed ones are dropped).
    fn multiplexed(&self) -> Option<(Sender2, StreamGuard)> {
        // HTTP/1.1 servers, nearly all of them, take no lock here on each request. (A server
        // that stopped offering HTTP/2 leaves its connections to the sweep.)
        if !self.speaks_http2.load(Ordering::Relaxed) {
            return None;
        }
        let mut conns = self.lock_multiplexed();
        conns.retain(|c| !c.sender.is_closed());
        let conn = conns.iter_mut().find(|c| c.has_room())?;
        conn.swept = false;
        conn.streams.fetch_add(1, Ordering::Relaxed);
        Some((conn.sender.clone(), StreamGuard(conn.streams.clone())))
    }

    /// Whether an HTTP/2 connection has room for another request.
    fn has_room(&self) -> bool {
        self.lock_multiplexed().iter().any(Multiplexed::has_room)
    }

    /// Adds the new HTTP/2 connection `sender` for requests to share, its first request's
    /// hold on it taken; starts the sweeper.
    fn share(self: &Arc<Self>, sender: Sender2) -> StreamGuard {
        let streams = Arc::new(std::sync::atomic::AtomicUsize::new(1));
        self.lock_multiplexed().push(Multiplexed {
            sender,
            streams: streams.clone(),
            swept: false,
        });
        self.start_sweeping();
        StreamGuard(streams)
    }

    fn put(self: &Arc<Self>, sender: Sender) {
        self.lock().push(Idle {
            sender,
            swept: false,
        });
        self.start_sweeping();
    }

    /// The first connection back (or shared) starts the sweeper. Never while shutting down: a
    /// body may be dropped as the runtime goes away, and there is nothing left to sweep for.
    fn start_sweeping(self: &Arc<Self>) {
        if !self.drain.is_draining()
            && tokio::runtime::Handle::try_current().is_ok()
            && !self.sweeping.swap(true, Ordering::Relaxed)
        {
            self.drain.spawn(sweep(
                Arc::downgrade(self),
                self.sweep_every,
                self.drain.clone(),
            ));
        }
    }
}

/// Closes connections idle for a whole sweep period, and connections the server closed, until
/// the pool goes away or draining starts.
async fn sweep(pool: Weak<Shared>, every: Duration, drain: Drain) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = drain.signaled() => return,
            _ = ticks.tick() => {}
        }
        let Some(pool) = pool.upgrade() else { return };
        // An HTTP/2 connection goes when no request ran on it for a whole period.
        let unused: Vec<Multiplexed> = {
            let mut conns = pool.lock_multiplexed();
            let (stale, live): (Vec<Multiplexed>, Vec<Multiplexed>) =
                std::mem::take(&mut *conns).into_iter().partition(|c| {
                    c.sender.is_closed() || (c.swept && c.streams.load(Ordering::Relaxed) == 0)
                });
            *conns = live;
            for c in conns.iter_mut() {
                c.swept = c.streams.load(Ordering::Relaxed) == 0;
            }
            stale
        };
        drop(unused);
        let closed: Vec<Idle> = {
            let mut idle = pool.lock();
            let (stale, fresh): (Vec<Idle>, Vec<Idle>) = std::mem::take(&mut *idle)
                .into_iter()
                .partition(|e| e.swept || e.sender.is_closed());
            *idle = fresh;
            for entry in idle.iter_mut() {
                entry.swept = true;
            }
            stale
        };
        drop(closed);
    }
}

/// A borrowed connection, on its way back to the pool.
#[derive(Debug)]
struct Lease {
    sender: Sender,
    pool: Weak<Shared>,
}

impl Lease {
    /// Returns the connection once it can take the next request. Right after the last byte of
    /// a response, its task may not have caught up yet; then a small task waits for it.
    fn release(self) {
        let Some(pool) = self.pool.upgrade() else {
            return;
        };
        let mut sender = self.sender;
        if sender.is_ready() {
            pool.put(sender);
        } else if !sender.is_closed()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                if sender.ready().await.is_ok() {
                    pool.put(sender);
                }
            });
        }
    }
}

/// A response body that gives its connection back to the pool when it ends. Dropped before
/// its end, it takes the connection with it: hyper closes a connection whose response was not
/// read out.
#[derive(Debug)]
pub struct PooledBody {
    body: Incoming,
    lease: Option<Lease>,
    /// An HTTP/2 response's hold on its connection's room for requests.
    stream: Option<StreamGuard>,
}

impl PooledBody {
    fn release(&mut self) {
        self.stream = None;
        if let Some(lease) = self.lease.take() {
            lease.release();
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.release(),
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.release(),
            Poll::Ready(Some(Err(_))) => {
                this.lease = None;
                this.stream = None;
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // An empty body (a 202, say) is at its end without ever being polled.
        if self.body.is_end_stream() {
            self.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use http_body_util::BodyExt;

    use super::*;

    /// A real HTTP/1.1 server on loopback that counts the connections it accepts and sees end.
    /// `/close` answers with `Connection: close`; `/big` sends 1 MiB; anything else echoes the
    /// request's Host header.
    struct Server {
        url: url::Url,
        accepted: Arc<AtomicUsize>,
        ended: Arc<AtomicUsize>,
    }

    /// Serves each connection `listener` accepts with `serve`, counting the connections
    /// accepted and the ones that ended.
    fn counting<F, Fut>(
        listener: tokio::net::TcpListener,
        serve: F,
    ) -> (Arc<AtomicUsize>, Arc<AtomicUsize>)
    where
        F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let accepted = Arc::new(AtomicUsize::new(0));
        let ended = Arc::new(AtomicUsize::new(0));
        let (a, e) = (accepted.clone(), ended.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                a.fetch_add(1, Ordering::SeqCst);
                let (e, served) = (e.clone(), serve(stream));
                tokio::spawn(async move {
                    served.await;
                    e.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        (accepted, ended)
    }

    async fn server() -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = url::Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        let (accepted, ended) = counting(listener, |stream| async move {
            let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                let mut response = Response::builder();
                let body = match req.uri().path() {
                    "/close" => {
                        response = response.header(header::CONNECTION, "close");
                        Bytes::from_static(b"bye")
                    }
                    "/big" => Bytes::from(vec![b'x'; 1 << 20]),
                    _ => Bytes::copy_from_slice(req.headers()[header::HOST].as_bytes()),
                };
                response.body(Full::new(body))
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
        Server {
            url,
            accepted,
            ended,
        }
    }

    fn pool(server: &Server, sweep_every: Duration) -> Pool {
        let connector =
            crate::proxy::upstream::build_connector("test", None, Duration::from_secs(5)).unwrap();
        Pool::with_sweep(
            &server.url,
            connector,
            Duration::from_secs(5),
            Drain::new(),
            sweep_every,
        )
        .unwrap()
    }

    async fn get(pool: &Pool, path: &str) -> Bytes {
        let req = Request::get(path).body(Full::new(Bytes::new())).unwrap();
        let response = pool.send(req).await.unwrap();
        response.into_body().collect().await.unwrap().to_bytes()
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..500 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting until {what}");
    }

    /// A real HTTP/2-only server over TLS (ALPN h2) on loopback, counting its connections;
    /// every response names the `:authority` its request carried. The pool for it trusts its
    /// certificate and offers HTTP/2, as for an https:// server with `http2 = true`.
    async fn http2_server(dir: &std::path::Path, sweep_every: Duration) -> (Server, Pool) {
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
        let cert_file = dir.join("cert.pem");
        std::fs::write(&cert_file, cert.cert.pem()).unwrap();
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
        let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
        tls.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url =
            url::Url::parse(&format!("https://{}/mcp", listener.local_addr().unwrap())).unwrap();
        let (accepted, ended) = counting(listener, move |stream| {
            let acceptor = acceptor.clone();
            async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let authority = req.uri().authority().map(|a| a.to_string());
                    let host = req.headers().get(header::HOST).is_some();
                    let body = format!("{} {authority:?} host={host}", req.uri().path());
                    Response::builder().body(Full::new(Bytes::from(body)))
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            }
        });
        let config = crate::config::Config::parse(
            &format!(
                "[[servers]]\nname = \"h2\"\nurl = \"{url}\"\nca_file = \"{}\"\nhttp2 = true\n",
                cert_file.display()
            ),
            "t.toml",
        )
        .unwrap();
        let connector =
            crate::proxy::upstream::connector(&config.servers[0], Duration::from_secs(5)).unwrap();
        let pool = Pool::with_sweep(
            &url,
            connector,
            Duration::from_secs(5),
            Drain::new(),
            sweep_every,
        )
        .unwrap();
        let server = Server {
            url,
            accepted,
            ended,
        };
        (server, pool)
    }

    #[tokio::test]
    async fn an_http2_server_gets_one_connection_that_requests_share_until_unused() {
        let dir = tempfile::tempdir().unwrap();
        let (server, pool) = http2_server(dir.path(), Duration::from_millis(500)).await;
        let authority = server.url[url::Position::BeforeHost..url::Position::AfterPort].to_owned();
        // The request names the server in :authority (an absolute URI), with no Host beside it.
        assert_eq!(
            get(&pool, "/mcp").await,
            format!("/mcp Some({authority:?}) host=false")
        );
        let answers = futures_util::future::join_all((0..8).map(|_| get(&pool, "/mcp"))).await;
        assert!(
            answers.iter().all(|a| a.starts_with(b"/mcp ")),
            "{answers:?}"
        );
        assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
        // Unused for a whole sweep period, it is closed; the next requests dial again, once for
        // a burst of them (the server is known to speak HTTP/2 now).
        until("the unused connection ends", || {
            server.ended.load(Ordering::SeqCst) == 1
        })
        .await;
        let answers = futures_util::future::join_all((0..8).map(|_| get(&pool, "/mcp"))).await;
        assert!(
            answers.iter().all(|a| a.starts_with(b"/mcp ")),
            "{answers:?}"
        );
        assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
    }

    /// A connection carries STREAMS_PER_CONNECTION unfinished responses at most (long-lived
    /// SSE streams, say): the next request opens another, and requests go back to the first
    /// once its responses are over.
    #[tokio::test]
    async fn an_http2_connection_with_no_room_left_gets_a_second_one_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let (server, pool) = http2_server(dir.path(), Duration::from_secs(60)).await;
        let send = || pool.send(Request::get("/mcp").body(Full::new(Bytes::new())).unwrap());
        let mut held = Vec::new();
        for _ in 0..STREAMS_PER_CONNECTION {
            held.push(send().await.unwrap());
        }
        assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
        let extra = send().await.unwrap();
        assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
        // Read to its end, a response gives its room back.
        for response in held {
            response.into_body().collect().await.unwrap();
        }
        extra.into_body().collect().await.unwrap();
        for _ in 0..STREAMS_PER_CONNECTION * 2 {
            get(&pool, "/mcp").await;
        }
        assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_read_response_gives_its_connection_back_for_the_next_request() {
        let server = server().await;
        let pool = pool(&server, SWEEP_EVERY);
        let authority = format!("127.0.0.1:{}", server.url.port().unwrap());
        for _ in 0..5 {
            assert_eq!(
                get(&pool, "/").await,
                authority.as_bytes(),
                "the Host header"
            );
            assert_eq!(pool.idle(), 1);
        }
        assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn concurrent_requests_open_connections_and_all_come_back() {
        let server = server().await;
        let pool = Arc::new(pool(&server, SWEEP_EVERY));
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let pool = pool.clone();
                tokio::spawn(async move { get(&pool, "/").await })
            })
            .collect();
        for call in calls {
            call.await.unwrap();
        }
        let opened = server.accepted.load(Ordering::SeqCst);
        assert!((1..=8).contains(&opened), "{opened}");
        assert_eq!(pool.idle(), opened);
        get(&pool, "/").await;
        assert_eq!(server.accepted.load(Ordering::SeqCst), opened, "reused");
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_end_takes_its_connection_with_it() {
        let server = server().await;
        let pool = pool(&server, SWEEP_EVERY);
        let req = Request::get("/big").body(Full::new(Bytes::new())).unwrap();
        let mut body = pool.send(req).await.unwrap().into_body();
        let first = body.frame().await.unwrap().unwrap();
        assert!(first.data_ref().unwrap().len() < 1 << 20, "a partial read");
        drop(body);
        assert_eq!(pool.idle(), 0);
        until("the server sees the connection end", || {
            server.ended.load(Ordering::SeqCst) == 1
        })
        .await;
        assert_eq!(get(&pool, "/big").await.len(), 1 << 20);
        assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
        assert_eq!(pool.idle(), 1);
    }

    #[tokio::test]
    async fn a_connection_the_server_closes_is_not_used_again() {
        let server = server().await;
        let pool = pool(&server, SWEEP_EVERY);
        for n in 1..=3 {
            assert_eq!(get(&pool, "/close").await, "bye");
            until("the server sees the connection end", || {
                server.ended.load(Ordering::SeqCst) == n
            })
            .await;
        }
        assert_eq!(server.accepted.load(Ordering::SeqCst), 3);
        assert!(!get(&pool, "/").await.is_empty());
        assert_eq!(server.accepted.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn idle_connections_are_closed_after_a_sweep_period() {
        let server = server().await;
        let pool = pool(&server, Duration::from_millis(50));
        get(&pool, "/").await;
        assert_eq!(pool.idle(), 1);
        until("the pool closes the idle connection", || pool.idle() == 0).await;
        until("the server sees it end", || {
            server.ended.load(Ordering::SeqCst) == 1
        })
        .await;
        get(&pool, "/").await;
        assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn request_targets_stay_on_the_servers_origin() {
        let url = url::Url::parse("http://127.0.0.1:9/mcp?x=1").unwrap();
        let connector =
            crate::proxy::upstream::build_connector("test", None, Duration::from_secs(5)).unwrap();
        let pool = Pool::new(&url, connector, Duration::from_secs(5), Drain::new()).unwrap();
        assert_eq!(pool.target(url.as_str()).unwrap(), "/mcp?x=1");
        assert_eq!(
            pool.target("http://127.0.0.1:9/messages?session=a")
                .unwrap(),
            "/messages?session=a"
        );
        assert_eq!(pool.target("http://127.0.0.1:9").unwrap(), "/");
        for elsewhere in [
            "http://127.0.0.1:10/mcp",
            "https://127.0.0.1:9/mcp",
            "http://evil:9/",
        ] {
            let err = pool.target(elsewhere).unwrap_err();
            assert!(err.contains("not on the server's origin"), "{err}");
        }
        assert!(pool.target("not a uri").is_err());
    }

    async fn get_from_fresh_pool(url: &url::Url) -> Result<Response<PooledBody>, PoolError> {
        let connector =
            crate::proxy::upstream::build_connector("test", None, Duration::from_secs(5)).unwrap();
        let pool = Pool::new(url, connector, Duration::from_secs(5), Drain::new()).unwrap();
        pool.send(Request::get("/").body(Full::new(Bytes::new())).unwrap())
            .await
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = url::Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        drop(listener);
        let err = get_from_fresh_pool(&url).await.unwrap_err();
        assert!(matches!(err, PoolError::Connect(_)), "{err:?}");
        assert!(!err.maybe_sent(), "nothing was sent");
    }

    /// A server that accepts and then never answers the TLS handshake: the connect timeout
    /// ends the wait (the connector's own timeout covers the TCP connect only).
    #[tokio::test]
    async fn a_stalled_handshake_is_a_connect_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = url::Url::parse(&format!("https://{}/", listener.local_addr().unwrap())).unwrap();
        let (held, mut stop) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let (_stream, _) = listener.accept().await.unwrap();
            let _ = (&mut stop).await;
        });
        let connector =
            crate::proxy::upstream::build_connector("test", None, Duration::from_secs(5)).unwrap();
        let pool = Pool::new(&url, connector, Duration::from_millis(200), Drain::new()).unwrap();
        let req = Request::get("/").body(Full::new(Bytes::new())).unwrap();
        let err = tokio::time::timeout(Duration::from_secs(30), pool.send(req))
            .await
            .expect("the connect timeout ends the handshake")
            .unwrap_err();
        assert!(matches!(err, PoolError::Connect(_)), "{err:?}");
        assert!(!err.maybe_sent());
        drop(held);
    }

    /// A server that reads the request and closes without an answer may have acted on it.
    #[tokio::test]
    async fn a_request_lost_after_it_was_written_may_have_been_sent() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = url::Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf).await;
        });
        let err = get_from_fresh_pool(&url).await.unwrap_err();
        assert!(matches!(err, PoolError::Request(_)), "{err:?}");
        assert!(err.maybe_sent());
    }
}
