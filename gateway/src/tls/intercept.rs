//! TLS termination for intercepted https:// servers (`interception.https = true`): one acceptor
//! per server, presenting a host-CA certificate for that server's host name only, and asking
//! for (never requiring) a client certificate when `interception.client_ca_file` is set, so
//! that a certificate can name the agent beside the kernel's attestation.

use std::{collections::HashMap, sync::Arc};

use super::{
    TlsError,
    ca::HostCa,
    listener::{CertificateNames, client_verifier},
};
use crate::config::{Config, InterceptionMode};

/// The acceptors, by server name.
pub struct HttpsInterception {
    acceptors: HashMap<String, tokio_rustls::TlsAcceptor>,
    pub names: CertificateNames,
    ca: Arc<HostCa>,
}

impl std::fmt::Debug for HttpsInterception {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsInterception")
            .field("servers", &self.acceptors.keys().collect::<Vec<_>>())
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

impl HttpsInterception {
    /// Loads the host CA and makes an acceptor per https:// server; `None` unless eBPF
    /// interception runs with `https = true`.
    pub fn load(config: &Config) -> Result<Option<Self>, TlsError> {
        let i = &config.interception;
        if i.mode != InterceptionMode::Ebpf || !i.https {
            return Ok(None);
        }
        let ca = Arc::new(HostCa::load(&config.ca)?);
        let verifier = match &i.client_ca_file {
            Some(path) => Some(client_verifier(path, i.client_crl_file.as_deref(), true)?),
            None => None,
        };
        let mut acceptors = HashMap::new();
        for server in &config.servers {
            if server.launch.is_some() || server.url.scheme() != "https" {
                continue;
            }
            let Some(host) = server.url.host_str() else {
                continue;
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let tls = ca.server_config(host, verifier.clone())?;
            acceptors.insert(
                server.name.to_string(),
                tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
            );
        }
        Ok(Some(Self {
            acceptors,
            names: CertificateNames::new(config),
            ca,
        }))
    }

    /// The acceptor for connections pinned to `server`.
    pub fn acceptor(&self, server: &str) -> Option<&tokio_rustls::TlsAcceptor> {
        self.acceptors.get(server)
    }
}
