//! HTTPS on the explicit listener, and mTLS: client certificates verified against the
//! configured roots, and the identity a verified certificate carries (its SPIFFE ID, else its
//! subject CN), mapped to the `[[agents]]` entry whose `certificate` it is.

use std::{collections::HashMap, sync::Arc};

use rustls::{
    RootCertStore, ServerConfig, pki_types::CertificateDer, server::WebPkiClientVerifier,
};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::{TlsError, certificates, private_key, provider};
use crate::{
    config::{ClientAuth, Config, ListenerTls},
    identity::CertificateIdentity,
};

/// The explicit listener's TLS: the acceptor and who each certificate identity is.
pub struct AgentTls {
    pub acceptor: tokio_rustls::TlsAcceptor,
    pub names: CertificateNames,
}

impl std::fmt::Debug for AgentTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentTls")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

/// Which agent each certificate identity names (`[[agents]] certificate`).
#[derive(Debug, Default)]
pub struct CertificateNames(HashMap<String, String>);

impl CertificateNames {
    pub fn new(config: &Config) -> Self {
        Self(
            config
                .agents
                .iter()
                .filter_map(|a| Some((a.certificate.clone()?, a.name.to_string())))
                .collect(),
        )
    }

    /// Who the verified certificate chain `chain` (leaf first) says the caller is; `None`
    /// when no certificate was presented, or it carries no usable name.
    pub fn identify(&self, chain: Option<&[CertificateDer<'_>]>) -> Option<CertificateIdentity> {
        let leaf = chain?.first()?;
        let id = certificate_id(leaf)?;
        Some(CertificateIdentity {
            agent: self.0.get(&id).cloned(),
            id,
        })
    }
}

impl AgentTls {
    /// Loads `[listener.tls]`, when there is one.
    pub fn load(config: &Config) -> Result<Option<Self>, TlsError> {
        let Some(tls) = &config.listener.tls else {
            return Ok(None);
        };
        let server = server_config(tls)?;
        Ok(Some(Self {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
            names: CertificateNames::new(config),
        }))
    }
}

/// The rustls server config for `[listener.tls]`.
pub fn server_config(tls: &ListenerTls) -> Result<ServerConfig, TlsError> {
    let chain = certificates(&tls.cert_file)?;
    let key = private_key(&tls.key_file)?;
    let builder =
        ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let mut config = match &tls.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(path) => builder.with_client_cert_verifier(client_verifier(
            path,
            tls.crl_file.as_deref(),
            tls.client_auth == ClientAuth::Optional,
        )?),
    }
    .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Verifies client certificates against the roots in `ca_file`, refusing those the CRLs in
/// `crl_file` revoke (then every certificate's issuer must have a CRL there); with `optional`,
/// a client without one is let through (and known otherwise).
pub fn client_verifier(
    ca_file: &std::path::Path,
    crl_file: Option<&std::path::Path>,
    optional: bool,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca_file)? {
        roots.add(cert).map_err(|e| TlsError::Invalid {
            path: ca_file.display().to_string(),
            message: e.to_string(),
        })?;
    }
    let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
    if let Some(path) = crl_file {
        // A CRL past its nextUpdate no longer vouches for anything: refuse rather than trust
        // a stale list.
        builder = builder
            .with_crls(super::revocation_lists(path)?)
            .enforce_revocation_expiration();
    }
    let builder = if optional {
        builder.allow_unauthenticated()
    } else {
        builder
    };
    builder.build().map_err(|e| TlsError::Invalid {
        path: ca_file.display().to_string(),
        message: e.to_string(),
    })
}

/// A certificate's identity: its one SPIFFE ID (URI SAN `spiffe://...`), else its one subject
/// CN. `None` when it has neither, or more than one of the kind that decides (ambiguous).
pub fn certificate_id(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let spiffe: Vec<&str> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::URI(u)
                    if u.get(..9)
                        .is_some_and(|p| p.eq_ignore_ascii_case("spiffe://")) =>
                {
                    Some(*u)
                }
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        // A malformed or duplicated SAN extension: trust no name from it.
        Err(_) => return None,
    };
    match spiffe.as_slice() {
        [one] => return Some((*one).to_owned()),
        [] => {}
        _ => return None,
    }
    let mut cns = cert.subject().iter_common_name();
    let cn = cns.next()?.as_str().ok()?.to_owned();
    // A CN spelled like a SPIFFE ID must not pass for one (names are matched as text).
    let spiffe_like = cn
        .get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("spiffe:"));
    if cns.next().is_some() || cn.is_empty() || spiffe_like {
        return None;
    }
    Some(cn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(params: rcgen::CertificateParams) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn spiffe_id_wins_over_cn_and_ambiguity_names_nobody() {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "analyst");
        assert_eq!(certificate_id(&cert(p.clone())).as_deref(), Some("analyst"));
        p.subject_alt_names.push(rcgen::SanType::URI(
            "spiffe://example.org/agent/analyst".try_into().unwrap(),
        ));
        assert_eq!(
            certificate_id(&cert(p.clone())).as_deref(),
            Some("spiffe://example.org/agent/analyst")
        );
        p.subject_alt_names.push(rcgen::SanType::URI(
            "spiffe://example.org/agent/other".try_into().unwrap(),
        ));
        assert_eq!(certificate_id(&cert(p)), None, "two SPIFFE IDs");
        let mut forged = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        forged.distinguished_name = rcgen::DistinguishedName::new();
        forged.distinguished_name.push(
            rcgen::DnType::CommonName,
            "spiffe://example.org/agent/admin",
        );
        assert_eq!(
            certificate_id(&cert(forged)),
            None,
            "a CN posing as a SPIFFE ID"
        );
        let mut bare = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        bare.distinguished_name = rcgen::DistinguishedName::new();
        assert_eq!(certificate_id(&cert(bare)), None, "no name at all");
        assert_eq!(certificate_id(b"not a certificate"), None);
    }
}
