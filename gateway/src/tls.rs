//! TLS the gateway terminates: the explicit listener's certificate with client-certificate
//! verification (mTLS, [`listener`]), and the host CA that signs per-SNI certificates for
//! intercepted HTTPS connections ([`ca`]). Upstream (client-side) TLS is `proxy::upstream`'s.

pub mod ca;
pub mod intercept;
pub mod listener;

use std::{path::Path, sync::Arc};

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why TLS material could not be loaded or used. Names files, never key bytes.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: String },
    #[error("{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Every item of one kind in a PEM file (`parse` reads them with rustls-pemfile), at least
/// one; `missing` is the error when there is none.
fn pem_items<T>(
    path: &Path,
    parse: impl FnOnce(&mut &[u8]) -> std::io::Result<Vec<T>>,
    missing: impl FnOnce(String) -> TlsError,
) -> Result<Vec<T>, TlsError> {
    let pem = read(path)?;
    let items = parse(&mut pem.as_slice()).map_err(|e| TlsError::Invalid {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    if items.is_empty() {
        return Err(missing(path.display().to_string()));
    }
    Ok(items)
}

/// Every certificate in a PEM file (at least one).
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    pem_items(
        path,
        |r| rustls_pemfile::certs(r).collect(),
        |path| TlsError::NoCertificate { path },
    )
}

/// Every certificate revocation list in a PEM file (at least one).
pub fn revocation_lists(
    path: &Path,
) -> Result<Vec<rustls::pki_types::CertificateRevocationListDer<'static>>, TlsError> {
    pem_items(
        path,
        |r| rustls_pemfile::crls(r).collect(),
        |path| TlsError::Invalid {
            path,
            message: "holds no PEM X509 CRL".into(),
        },
    )
}

/// The first private key in a PEM file.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| TlsError::Invalid {
            path: path.display().to_string(),
            message: e.to_string(),
        })?
        .ok_or_else(|| TlsError::NoKey {
            path: path.display().to_string(),
        })
}

/// The crypto provider every TLS config here uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
