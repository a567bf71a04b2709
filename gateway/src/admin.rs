//! The admin listener: `/healthz`, Prometheus `/metrics`, `/connections` (the live
//! intercepted connections with their identities) and `POST /policy/reload`. It never decides.

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::{drain::Drain, proxy::Gateway};

/// Serves the admin API on `listener` until draining starts.
pub async fn serve(listener: TcpListener, gateway: Arc<Gateway>, drain: Drain) {
    loop {
        let (stream, _peer) = tokio::select! {
            _ = drain.signaled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    tracing::warn!(%error, "Admin listener failed to accept a connection.");
                    continue;
                }
            },
        };
        let gateway = gateway.clone();
        let conn_drain = drain.clone();
        drain.spawn(async move {
            let service = service_fn(move |req| {
                let gateway = gateway.clone();
                async move { Ok::<_, Infallible>(route(&req, &gateway)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(5))
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = conn_drain.signaled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
}

fn route(req: &Request<Incoming>, gateway: &Gateway) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &'static str, body: Bytes| {
        let mut resp = Response::new(Full::new(body));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static(content_type),
        );
        resp
    };
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => {
            reply(StatusCode::OK, "text/plain", Bytes::from_static(b"ok\n"))
        }
        (&Method::GET, "/metrics") => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Bytes::from(gateway.metrics.render()),
        ),
        (&Method::GET, "/connections") => reply(
            StatusCode::OK,
            "application/json",
            Bytes::from(serde_json::to_vec(&gateway.live.list()).unwrap_or_default()),
        ),
        (&Method::POST, "/policy/reload") => match gateway.reload_policy() {
            Ok(rules) => reply(
                StatusCode::OK,
                "text/plain",
                Bytes::from(format!("reloaded: {rules} rules\n")),
            ),
            Err(e) => reply(
                StatusCode::BAD_REQUEST,
                "text/plain",
                Bytes::from(format!("refused, the previous policy stays: {e}\n")),
            ),
        },
        (_, "/healthz" | "/metrics" | "/connections" | "/policy/reload") => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            Bytes::from_static(b"method not allowed\n"),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"not found\n"),
        ),
    }
}

/// Binds the admin listener.
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await
}
