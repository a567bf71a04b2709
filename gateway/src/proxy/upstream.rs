//! Upstream servers: a connection pool per configured server, HTTPS through rustls with the
//! system's trust roots plus the server's own `ca_file`.

use std::{collections::HashMap, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};

use rustls::pki_types::TrustAnchor;

use super::pool::{Connector, Pool};
use crate::config::{Config, Server};

/// The general-purpose client, for the gateway's own requests (JWKS, OTLP export).
pub type HttpClient = Client<Connector, Full<Bytes>>;

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
    /// Connections to `server.url` (`None` for launched servers, whose `stdio:` URLs are for
    /// display only).
    pub pool: Option<Pool>,
    /// Set for a server the gateway launches (`command`): requests go to its processes.
    pub launched: Option<Arc<super::stdio::Launcher>>,
    /// This server's request metrics, by method.
    pub series: crate::metrics::ServerSeries,
    /// Answers the gateway owes this server for requests it refused (see
    /// `relay::Context::answer_upstream`): a server that floods refused requests and never
    /// reads the answers cannot make the gateway open a connection for each.
    pub owed_answers: Arc<tokio::sync::Semaphore>,
}

/// Answers to refused server requests in flight to one server at once.
pub const MAX_OWED_ANSWERS: usize = 16;

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
        // Also where the gateway is built without `start_with` (which says so first).
        distrust_host_ca(config);
        for server in &config.servers {
            let connector = connector(server, config.limits.upstream_connect_timeout)?;
            let launched = server.launch.as_ref().map(|launch| {
                if launch.user.is_none() && crate::ebpf::effective_uid() == 0 {
                    tracing::warn!(
                        server = %server.name,
                        "Launched server processes run as root, with every secret file in reach: set `user` on the server."
                    );
                }
                Arc::new(super::stdio::Launcher::new(
                    server.name.as_str(),
                    launch.clone(),
                    env.remove(server.name.as_str()).unwrap_or_default(),
                    drain.clone(),
                    &config.limits,
                ))
            });
            by_name.insert(
                server.name.as_str().to_owned(),
                Arc::new(Upstream {
                    server: server.clone(),
                    pool: Pool::new(
                        &server.url,
                        connector,
                        config.limits.upstream_connect_timeout,
                        drain.clone(),
                    ),
                    launched,
                    series: Default::default(),
                    owed_answers: Arc::new(tokio::sync::Semaphore::new(MAX_OWED_ANSWERS)),
                }),
            );
        }
        Ok(Self { by_name })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Upstream>> {
        self.by_name.get(name)
    }
}

pub(super) fn connector(
    server: &Server,
    connect_timeout: Duration,
) -> Result<Connector, UpstreamError> {
    let mut tls = ClientTls::new(server.name.as_str(), server.ca_file.as_deref());
    tls.pins = &server.pin_sha256;
    tls.http2 = server.http2;
    tls.connector(connect_timeout)
}

/// The host CAs of this process (one in a daemon; tests start several gateways): no outbound
/// client of the process trusts them, whoever it talks to (upstreams, a token issuer's JWKS, an
/// OTLP collector). Added by [`distrust_host_ca`] before such clients are built.
static HOST_CAS: std::sync::RwLock<Vec<TrustAnchor<'static>>> = std::sync::RwLock::new(Vec::new());

/// Makes every outbound client built from now on distrust the host CA `config` names (when its
/// certificate is there): it only ever signs for agents, so no server may present it.
pub fn distrust_host_ca(config: &Config) {
    if let Some(anchor) = host_ca_anchor(config) {
        let mut cas = HOST_CAS.write().unwrap_or_else(|p| p.into_inner());
        if !cas.contains(&anchor) {
            cas.push(anchor);
        }
    }
}

/// `roots` less `distrusted`.
fn without(
    mut roots: rustls::RootCertStore,
    distrusted: &[TrustAnchor<'static>],
) -> rustls::RootCertStore {
    roots.roots.retain(|a| !distrusted.contains(a));
    roots
}

/// The host CA, whenever `ca init` made one (interception may be off now and `ca install`
/// still have put it in the system store): it only ever signs for agents, so no upstream may
/// present it.
fn host_ca_anchor(config: &Config) -> Option<TrustAnchor<'static>> {
    let cert = crate::tls::certificates(&config.ca.cert_file)
        .ok()?
        .into_iter()
        .next()?;
    webpki::anchor_from_trusted_cert(&cert)
        .ok()
        .map(|a| a.to_owned())
}

/// The system's trust store (read once), or Mozilla's roots built in when it is empty or
/// unreadable.
fn system_roots() -> Arc<rustls::RootCertStore> {
    static ROOTS: std::sync::OnceLock<Arc<rustls::RootCertStore>> = std::sync::OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!(errors = ?found.errors, "No system trust roots found; using the built-in Mozilla roots for HTTPS upstreams.");
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            }
            Arc::new(roots)
        })
        .clone()
}

/// An HTTP/1 client for http:// and https:// (system roots, plus `ca_file`'s); `label` names
/// its user in errors.
pub fn build_client(
    label: &str,
    ca_file: Option<&std::path::Path>,
    connect_timeout: Duration,
) -> Result<HttpClient, UpstreamError> {
    let connector = build_connector(label, ca_file, connect_timeout)?;
    Ok(Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector))
}

/// Dials http:// and https:// (system roots, plus `ca_file`'s); `label` names its user in
/// errors.
pub fn build_connector(
    label: &str,
    ca_file: Option<&std::path::Path>,
    connect_timeout: Duration,
) -> Result<Connector, UpstreamError> {
    ClientTls::new(label, ca_file).connector(connect_timeout)
}

/// How an upstream client checks servers: the system roots, a `ca_file`'s, and optional
/// public-key pins.
#[derive(Debug)]
struct ClientTls<'a> {
    label: &'a str,
    ca_file: Option<&'a std::path::Path>,
    /// SHA-256 of the SubjectPublicKeyInfo the server's certificate must carry (any one).
    pins: &'a [[u8; 32]],
    /// Whether to offer HTTP/2 (ALPN) as well as HTTP/1.1: only a [`crate::proxy::pool::Pool`]
    /// speaks both.
    http2: bool,
}

impl<'a> ClientTls<'a> {
    fn new(label: &'a str, ca_file: Option<&'a std::path::Path>) -> Self {
        Self {
            label,
            ca_file,
            pins: &[],
            http2: false,
        }
    }

    /// The roots servers are checked against: the system's, the `ca_file`'s, never the host CA.
    fn roots(&self) -> Result<rustls::RootCertStore, UpstreamError> {
        let (label, ca_file) = (self.label, self.ca_file);
        let mut roots = rustls::RootCertStore::clone(&system_roots());
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
        // After the ca_file's: a bundle built from the system store after `ca install` holds
        // the host CA too.
        let roots = without(roots, &HOST_CAS.read().unwrap_or_else(|p| p.into_inner()));
        Ok(roots)
    }

    fn connector(&self, connect_timeout: Duration) -> Result<Connector, UpstreamError> {
        let roots = self.roots()?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let tls = if self.pins.is_empty() {
            builder.with_root_certificates(roots).with_no_client_auth()
        } else {
            let chain = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| UpstreamError::Tls(rustls::Error::General(e.to_string())))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedKeys {
                    chain,
                    pins: self.pins.to_vec(),
                }))
                .with_no_client_auth()
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http();
        Ok(if self.http2 {
            builder.enable_all_versions().wrap_connector(http)
        } else {
            builder.enable_http1().wrap_connector(http)
        })
    }
}

/// The usual chain and name checks, then the server's public key must be one of the pins
/// (so a certificate from another CA the system trusts cannot stand in for the server's).
#[derive(Debug)]
struct PinnedKeys {
    chain: Arc<rustls::client::WebPkiServerVerifier>,
    pins: Vec<[u8; 32]>,
}

impl rustls::client::danger::ServerCertVerifier for PinnedKeys {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let verified = self.chain.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        use sha2::Digest;
        use x509_parser::prelude::FromDer;
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(end_entity)
            .map_err(|_| rustls::Error::General("unparsable server certificate".into()))?;
        let spki: [u8; 32] = sha2::Sha256::digest(cert.public_key().raw).into();
        if self.pins.contains(&spki) {
            Ok(verified)
        } else {
            Err(rustls::Error::General(format!(
                "the server's public key (SHA-256 {}) matches none of servers.pin_sha256",
                spki.iter().map(|b| format!("{b:02x}")).collect::<String>()
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_ca_is_never_an_upstream_root() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::parse("[interception]\nhttps = true\n", "t.toml").unwrap();
        config.ca.cert_file = dir.path().join("ca.pem");
        config.ca.key_file = dir.path().join("ca.key");
        let hosts = [url::Host::parse("mcp.example.com").unwrap()];
        crate::tls::ca::init(&config.ca, &hosts, false).unwrap();
        let anchor = host_ca_anchor(&config).expect("the host CA as a trust anchor");
        // As `agentgate ca install` leaves the system store: the host CA among the roots.
        let mut roots = system_roots().as_ref().clone();
        let cert = crate::tls::certificates(&config.ca.cert_file)
            .unwrap()
            .remove(0);
        roots.add(cert).unwrap();
        let kept = without(roots.clone(), std::slice::from_ref(&anchor));
        assert_eq!(
            kept.roots.len(),
            roots.roots.len() - 1,
            "exactly the host CA goes"
        );
        assert!(!kept.roots.contains(&anchor));
        // Nor through a ca_file that holds it (a bundle built from the system store), nor when
        // interception no longer terminates HTTPS (the store may still hold it).
        // Every outbound client (an upstream's, a token issuer's JWKS, the OTLP exporter's)
        // drops it once the gateway has said so.
        config.interception.https = false;
        let anchor = host_ca_anchor(&config).expect("the host CA while its file exists");
        let other = ClientTls::new("jwks", Some(&config.ca.cert_file));
        assert!(other.roots().unwrap().roots.contains(&anchor));
        distrust_host_ca(&config);
        assert!(!other.roots().unwrap().roots.contains(&anchor));
        let tls = ClientTls::new("s", Some(&config.ca.cert_file));
        let roots = tls.roots().unwrap();
        assert!(!roots.roots.contains(&anchor));
        assert_eq!(roots.roots.len(), system_roots().roots.len());
    }
}
