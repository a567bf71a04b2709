//! The agent-facing listener: accepts under a connection cap, serves HTTP/1.1 with a
//! header-read timeout, and shuts every connection down gracefully when draining starts.

use std::{convert::Infallible, sync::Arc};

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::Semaphore};

use super::{Gateway, framing, service};

/// Accepts agent connections until draining starts.
pub async fn serve(listener: TcpListener, gateway: Arc<Gateway>) {
    let drain = gateway.drain.clone();
    let permits = Arc::new(Semaphore::new(gateway.config.listener.max_connections));
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
        let gateway = gateway.clone();
        drain.spawn(async move {
            let _permit = permit;
            gateway.metrics.connections.inc();
            let identity = gateway.stages.identity.identify(peer);
            let conn_gateway = gateway.clone();
            let verdicts = framing::Verdicts::default();
            let conn_verdicts = verdicts.clone();
            let svc = service_fn(move |req| {
                let gateway = conn_gateway.clone();
                let identity = identity.clone();
                let verdicts = conn_verdicts.clone();
                async move {
                    Ok::<_, Infallible>(service::handle(gateway, identity, verdicts, req).await)
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
            gateway.metrics.connections.dec();
        });
    }
}
