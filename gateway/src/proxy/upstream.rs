//! Upstream connections: one pooled HTTP/1.1 client per configured server, HTTPS through
//! rustls with the web PKI roots plus the server's own `ca_file`.

use std::{collections::HashMap, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};

use crate::config::{Config, Server};

/// The client type every upstream uses.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Why an upstream client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("server {server}: cannot read ca_file {path}: {source}")]
    CaFile {
        server: String,
        path: String,
        source: std::io::Error,
    },
    #[error("server {server}: ca_file {path} holds no usable certificate")]
    NoCertificates { server: String, path: String },
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
}

/// One configured server and its client.
#[derive(Debug)]
pub struct Upstream {
    pub server: Server,
    pub client: HttpClient,
    /// Set for a server the gateway launches (`command`): requests go to its processes.
    pub launched: Option<Arc<super::stdio::Launcher>>,
}

/// Every configured upstream, by name.
#[derive(Debug, Default)]
pub struct Upstreams {
    by_name: HashMap<String, Arc<Upstream>>,
}

impl Upstreams {
    /// Builds a client per server, and a launcher per launched server (`env`: their rendered
    /// environments, by server name).
    pub fn new(
        config: &Config,
        mut env: HashMap<String, crate::credentials::LaunchEnv>,
        drain: &crate::drain::Drain,
    ) -> Result<Self, UpstreamError> {
        let mut by_name = HashMap::new();
        for server in &config.servers {
            let client = client(server, config.limits.upstream_connect_timeout)?;
            let launched = server.launch.as_ref().map(|launch| {
                Arc::new(super::stdio::Launcher::new(
                    server.name.as_str(),
                    launch.clone(),
                    env.remove(server.name.as_str()).unwrap_or_default(),
                    drain.clone(),
                    config.limits.max_response_bytes,
                ))
            });
            by_name.insert(
                server.name.as_str().to_owned(),
                Arc::new(Upstream {
                    server: server.clone(),
                    client,
                    launched,
                }),
            );
        }
        Ok(Self { by_name })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.by_name.get(name)
    }
}

fn client(server: &Server, connect_timeout: Duration) -> Result<HttpClient, UpstreamError> {
    build_client(
        server.name.as_str(),
        server.ca_file.as_deref(),
        connect_timeout,
    )
}

/// An HTTP/1 client for http:// and https:// (webpki roots, plus `ca_file`'s); `label` names
/// its user in errors.
pub fn build_client(
    label: &str,
    ca_file: Option<&std::path::Path>,
    connect_timeout: Duration,
) -> Result<HttpClient, UpstreamError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let err = |source| UpstreamError::CaFile {
            server: label.to_owned(),
            path: path.display().to_string(),
            source,
        };
        let pem = std::fs::read(path).map_err(err)?;
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            if roots.add(cert.map_err(err)?).is_ok() {
                added += 1;
            }
        }
        if added == 0 {
            return Err(UpstreamError::NoCertificates {
                server: label.to_owned(),
                path: path.display().to_string(),
            });
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector))
}
