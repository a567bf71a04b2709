//! The host CA: made by `agentgate ca init`, trusted by agents through `agentgate ca install`,
//! and used by transparent interception to terminate TLS for https:// servers with a short-lived
//! certificate per server name, made on first use and cached until half its life is gone.
//!
//! The CA certificate has path length 0 (it signs leaves only) and carries name constraints:
//! it is valid only for the host names and addresses of the https:// servers configured when it
//! was made, so clients that name hosts by subject alternative names only (rustls, Go) refuse
//! whatever else its key signs. OpenSSL's fallback to a wildcard subject CN escapes name
//! constraints (openssl/openssl#30346): the key stays as sensitive as any CA key.
//! A leaf is only ever made for a configured server's own host name, never for whatever name a
//! client asks for: the gateway is not a certificate oracle for arbitrary sites.

use std::{
    collections::HashMap,
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DnType, ExtendedKeyUsagePurpose,
    GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose, NameConstraints, SanType,
};
use rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};

use super::{TlsError, provider};
use crate::config::Ca;
use crate::proxy::lock;

/// How long the CA certificate `ca init` makes is valid.
const CA_VALIDITY: Duration = Duration::from_secs(5 * 365 * 24 * 3600);
/// Leaves are valid from a little before they are made, for clocks slightly behind.
const BACKDATE: Duration = Duration::from_secs(300);

fn invalid(path: &Path, message: impl std::fmt::Display) -> TlsError {
    TlsError::Invalid {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

fn offset(from: std::time::SystemTime) -> time::OffsetDateTime {
    time::OffsetDateTime::from(from)
}

/// The name constraints of a CA for `hosts` (DNS names and IP addresses): each host and, for
/// DNS names, its subdomains. A name type without hosts is closed off too, since a constraint
/// on one type leaves the others unconstrained (RFC 5280, 4.2.1.10): DNS names through the
/// reserved `invalid` name (RFC 6761), addresses through excluding every address.
fn name_constraints(hosts: &[url::Host]) -> NameConstraints {
    let mut permitted = Vec::new();
    for host in hosts {
        permitted.push(match host {
            url::Host::Domain(name) => GeneralSubtree::DnsName(name.to_ascii_lowercase()),
            url::Host::Ipv4(ip) => GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(
                std::net::IpAddr::V4(*ip),
                32,
            )),
            url::Host::Ipv6(ip) => GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(
                std::net::IpAddr::V6(*ip),
                128,
            )),
        });
    }
    let mut excluded = Vec::new();
    if !hosts.iter().any(|h| matches!(h, url::Host::Domain(_))) {
        permitted.push(GeneralSubtree::DnsName("invalid".into()));
    }
    if hosts.iter().all(|h| matches!(h, url::Host::Domain(_))) {
        excluded.push(GeneralSubtree::IpAddress(CidrSubnet::V4([0; 4], [0; 4])));
        excluded.push(GeneralSubtree::IpAddress(CidrSubnet::V6([0; 16], [0; 16])));
    }
    NameConstraints {
        permitted_subtrees: permitted,
        excluded_subtrees: excluded,
    }
}

/// Creates the CA key (mode 0600) and certificate at the configured paths, valid only for
/// `hosts` (the https:// servers it will stand in for; at least one); refuses to replace
/// existing files unless `force`. Returns the certificate's SHA-256 fingerprint (hex).
pub fn init(ca: &Ca, hosts: &[url::Host], force: bool) -> Result<String, TlsError> {
    if hosts.is_empty() {
        return Err(invalid(
            &ca.cert_file,
            "no https:// server is configured: the host CA is only valid for the hosts of the \
             https:// servers in [[servers]], so configure them first",
        ));
    }
    for path in [&ca.cert_file, &ca.key_file] {
        if !force && path.exists() {
            return Err(invalid(
                path,
                "already exists (agents trust the CA in it: pass --force to replace it)",
            ));
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| TlsError::Read {
                path: dir.display().to_string(),
                source,
            })?;
        }
    }
    let key = KeyPair::generate().map_err(|e| invalid(&ca.key_file, e))?;
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(|e| invalid(&ca.cert_file, e))?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        DnType::CommonName,
        format!("agentgate host CA {host}").trim(),
    );
    params
        .distinguished_name
        .push(DnType::OrganizationName, "agentgate");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.name_constraints = Some(name_constraints(hosts));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = std::time::SystemTime::now();
    params.not_before = offset(now - Duration::from_secs(3600));
    params.not_after = offset(now + CA_VALIDITY);
    let cert = params
        .self_signed(&key)
        .map_err(|e| invalid(&ca.cert_file, e))?;
    write_new(&ca.key_file, key.serialize_pem().as_bytes(), 0o600)?;
    write_new(&ca.cert_file, cert.pem().as_bytes(), 0o644)?;
    Ok(fingerprint(cert.der()))
}

/// Replaces `path` with `bytes` (mode `mode`), through a temporary file and a rename.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    let err = |source| TlsError::Read {
        path: path.display().to_string(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Hex SHA-256 of a DER certificate, as `openssl x509 -fingerprint -sha256` shows it (sans colons).
pub fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The loaded host CA and its leaf cache.
pub struct HostCa {
    issuer: Issuer<'static, KeyPair>,
    cert: CertificateDer<'static>,
    cert_file: std::path::PathBuf,
    leaf_ttl: Duration,
    /// The CA's own end of validity: no leaf outlives it.
    not_after: SystemTime,
    /// Leaves by host, with when they were made by the wall clock (the one their validity is
    /// written in: a monotonic clock stops while the host sleeps).
    leaves: Mutex<HashMap<String, (Arc<CertifiedKey>, SystemTime)>>,
}

impl std::fmt::Debug for HostCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostCa")
            .field("fingerprint", &fingerprint(&self.cert))
            .field("leaf_ttl", &self.leaf_ttl)
            .finish_non_exhaustive()
    }
}

impl HostCa {
    /// Loads the CA `ca init` made.
    pub fn load(ca: &Ca) -> Result<Self, TlsError> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).map_err(|source| TlsError::Read {
                path: format!("{} (run `agentgate ca init`)", path.display()),
                source,
            })
        };
        let cert_pem = read(&ca.cert_file)?;
        crate::audit::refuse_shared_key(&ca.key_file).map_err(|source| TlsError::Read {
            path: ca.key_file.display().to_string(),
            source,
        })?;
        let key_pem = zeroize::Zeroizing::new(read(&ca.key_file)?);
        let key = KeyPair::from_pem(&key_pem).map_err(|e| invalid(&ca.key_file, e))?;
        let cert = super::certificates(&ca.cert_file)?
            .into_iter()
            .next()
            .ok_or_else(|| invalid(&ca.cert_file, "no certificate"))?;
        let issuer =
            Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| invalid(&ca.cert_file, e))?;
        if !has_name_constraints(&cert) {
            tracing::warn!(
                cert_file = %ca.cert_file.display(),
                "The host CA has no name constraints, so a client trusting it accepts what it signs for any site; re-create it with `agentgate ca init --force` and `agentgate ca install`."
            );
        }
        let not_after =
            not_after(&cert).ok_or_else(|| invalid(&ca.cert_file, "unreadable validity"))?;
        if not_after <= SystemTime::now() {
            return Err(invalid(
                &ca.cert_file,
                "the host CA has expired: re-create it with `agentgate ca init --force` and `agentgate ca install`",
            ));
        }
        Ok(Self {
            issuer,
            cert,
            cert_file: ca.cert_file.clone(),
            leaf_ttl: ca.leaf_ttl,
            not_after,
            leaves: Mutex::new(HashMap::new()),
        })
    }

    /// The CA certificate (DER).
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// A certificate for `host` (a DNS name or an IP address), from the cache while it has
    /// more than half its life left by the wall clock (a clock set back makes a new one too).
    pub fn leaf(&self, host: &str) -> Result<Arc<CertifiedKey>, TlsError> {
        let key = host.to_ascii_lowercase();
        let now = SystemTime::now();
        if let Some((leaf, made)) = lock(&self.leaves).get(&key)
            && now
                .duration_since(*made)
                .is_ok_and(|age| age < self.leaf_ttl / 2)
        {
            return Ok(leaf.clone());
        }
        let leaf = Arc::new(self.make_leaf(&key, now)?);
        lock(&self.leaves).insert(key, (leaf.clone(), now));
        Ok(leaf)
    }

    fn make_leaf(&self, host: &str, now: SystemTime) -> Result<CertifiedKey, TlsError> {
        let bad = |e: &dyn std::fmt::Display| TlsError::Invalid {
            path: format!("leaf certificate for {host}"),
            message: e.to_string(),
        };
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| bad(&e))?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        // OpenSSL checks a subject CN that looks like a host name against the CA's DNS name
        // constraints when there is no DNS SAN, and "127.0.0.1" looks like one: an address
        // leaf gets a CN that does not.
        let (cn, san) = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => (format!("agentgate for {host}"), SanType::IpAddress(ip)),
            Err(_) => (
                host.to_owned(),
                SanType::DnsName(host.try_into().map_err(|e| bad(&e))?),
            ),
        };
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = vec![san];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = offset(now - BACKDATE);
        params.not_after = offset((now + self.leaf_ttl).min(self.not_after));
        let key = KeyPair::generate().map_err(|e| bad(&e))?;
        let cert = params.signed_by(&key, &self.issuer).map_err(|e| bad(&e))?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing = provider()
            .key_provider
            .load_private_key(der)
            .map_err(|e| bad(&e))?;
        Ok(CertifiedKey::new(
            vec![cert.der().clone(), self.cert.clone()],
            signing,
        ))
    }

    /// A TLS server config presenting `host`'s certificate (refusing clients that ask for any
    /// other name), asking for client certificates when `client_verifier` is given.
    pub fn server_config(
        self: &Arc<Self>,
        host: &str,
        client_verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    ) -> Result<ServerConfig, TlsError> {
        // Made and checked now, so that a name rcgen cannot put in a certificate, or one outside
        // the CA's name constraints, fails at start.
        let leaf = self.leaf(host)?;
        self.check_covers(host, &leaf)?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?;
        let builder = match client_verifier {
            Some(v) => builder.with_client_cert_verifier(v),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(Arc::new(OneName {
            ca: self.clone(),
            host: host.to_ascii_lowercase(),
        }));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

impl HostCa {
    /// Verifies `leaf` for `host` as a client trusting only this CA would, name constraints
    /// included: a CA made before a server was configured does not cover it.
    fn check_covers(&self, host: &str, leaf: &CertifiedKey) -> Result<(), TlsError> {
        self.verify_leaf(leaf, host).map_err(|e| {
            invalid(
                &self.cert_file,
                format!(
                    "clients would refuse its certificate for {host} ({e}): the CA is only valid \
                     for the https:// servers configured when `agentgate ca init` made it; run \
                     `agentgate ca init --force` and `agentgate ca install` again"
                ),
            )
        })
    }

    /// Verifies `leaf` for `host` trusting only this CA, as an agent would.
    fn verify_leaf(&self, leaf: &CertifiedKey, host: &str) -> Result<(), rustls::Error> {
        use rustls::client::danger::ServerCertVerifier;
        let other = |e: &dyn std::fmt::Display| rustls::Error::General(e.to_string());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert.clone())?;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .build()
        .map_err(|e| other(&e))?;
        let name =
            rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| other(&e))?;
        let now = rustls::pki_types::UnixTime::now();
        verifier
            .verify_server_cert(&leaf.cert[0], &leaf.cert[1..], &name, &[], now)
            .map(|_| ())
    }
}

/// The end of a certificate's validity.
fn not_after(der: &[u8]) -> Option<SystemTime> {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    let secs = u64::try_from(cert.validity().not_after.timestamp()).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// Whether a CA certificate limits the names it vouches for (CAs from before `ca init` set
/// name constraints do not).
fn has_name_constraints(der: &[u8]) -> bool {
    use x509_parser::prelude::FromDer;
    x509_parser::certificate::X509Certificate::from_der(der)
        .is_ok_and(|(_, cert)| matches!(cert.name_constraints(), Ok(Some(_))))
}

/// Presents one server's certificate, to clients that name that server or no one.
#[derive(Debug)]
struct OneName {
    ca: Arc<HostCa>,
    host: String,
}

impl ResolvesServerCert for OneName {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(sni) = hello.server_name()
            && !sni.eq_ignore_ascii_case(&self.host)
        {
            tracing::debug!(asked = sni, server = %self.host, "Refused a TLS client asking for another name.");
            return None;
        }
        match self.ca.leaf(&self.host) {
            Ok(leaf) => Some(leaf),
            Err(error) => {
                tracing::warn!(%error, "Cannot make a certificate for an intercepted server.");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    fn ca_in(dir: &Path) -> Ca {
        Ca {
            cert_file: dir.join("ca.pem"),
            key_file: dir.join("ca.key"),
            leaf_ttl: Duration::from_secs(3600),
        }
    }

    fn hosts(names: &[&str]) -> Vec<url::Host> {
        names.iter().map(|n| url::Host::parse(n).unwrap()).collect()
    }

    /// A CA made for `names`, loaded as the gateway loads it.
    fn ca_for(names: &[&str]) -> (tempfile::TempDir, Arc<HostCa>) {
        let dir = scratch();
        let ca = ca_in(dir.path());
        init(&ca, &hosts(names), false).unwrap();
        let host = Arc::new(HostCa::load(&ca).unwrap());
        (dir, host)
    }

    #[test]
    fn init_makes_a_private_key_and_refuses_to_overwrite() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch();
        let ca = ca_in(dir.path());
        let e = init(&ca, &[], false).unwrap_err().to_string();
        assert!(e.contains("no https:// server"), "{e}");
        assert!(!ca.key_file.exists(), "nothing written");
        let fp = init(&ca, &hosts(&["mcp.example.com"]), false).unwrap();
        assert_eq!(fp.len(), 64);
        let mode = std::fs::metadata(&ca.key_file)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let e = init(&ca, &hosts(&["mcp.example.com"]), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--force"), "{e}");
        assert_ne!(
            init(&ca, &hosts(&["mcp.example.com"]), true).unwrap(),
            fp,
            "a new CA"
        );
    }

    #[test]
    fn leaves_chain_to_the_ca_name_only_their_host_and_are_cached() {
        let (_dir, host) = ca_for(&["mcp.example.com", "127.0.0.1"]);
        let a = host.leaf("MCP.example.com").unwrap();
        let b = host.leaf("mcp.example.com").unwrap();
        assert!(Arc::ptr_eq(&a, &b), "cached, names compared without case");
        assert_eq!(a.cert.len(), 2, "leaf and CA");
        // The leaf verifies against the CA as a root, for its name and no other.
        host.verify_leaf(&a, "mcp.example.com").unwrap();
        assert!(host.verify_leaf(&a, "evil.example.com").is_err());
        let ip = host.leaf("127.0.0.1").unwrap();
        host.verify_leaf(&ip, "127.0.0.1").unwrap();
    }

    #[test]
    fn the_ca_cannot_vouch_for_hosts_it_was_not_made_for() {
        let (_dir, host) = ca_for(&["mcp.example.com", "10.1.2.3"]);
        assert!(has_name_constraints(host.certificate()));
        // What it was made for, and subdomains of its DNS names, verify.
        for name in ["mcp.example.com", "eu.mcp.example.com", "10.1.2.3"] {
            host.verify_leaf(&host.make_leaf(name, SystemTime::now()).unwrap(), name)
                .unwrap();
        }
        // Its key signs anything (as a thief's would), but clients refuse the result: names
        // and addresses outside the constraints, suffix tricks included.
        for name in [
            "evil.example.com",
            "example.com",
            "mcp.example.com.evil.net",
            "xmcp.example.com",
            "10.1.2.4",
            "::1",
        ] {
            let e = host
                .verify_leaf(&host.make_leaf(name, SystemTime::now()).unwrap(), name)
                .unwrap_err();
            assert!(format!("{e:?}").contains("NameConstraint"), "{name}: {e:?}");
        }
        // The gateway refuses at start to serve a host its CA does not cover, and says what to do.
        let e = host.server_config("other.example.com", None).unwrap_err();
        assert!(e.to_string().contains("ca init --force"), "{e}");
        assert!(host.server_config("mcp.example.com", None).is_ok());
    }

    /// The cache is judged by the wall clock the leaves' validity is written in: after a
    /// suspend (a monotonic clock stood still) or a clock set back, a new leaf is made.
    #[test]
    fn cached_leaves_are_renewed_by_the_wall_clock() {
        let (_dir, host) = ca_for(&["mcp.example.com"]);
        let first = host.leaf("mcp.example.com").unwrap();
        for made in [
            SystemTime::now() - host.leaf_ttl,
            SystemTime::now() + Duration::from_secs(3600),
        ] {
            lock(&host.leaves).get_mut("mcp.example.com").unwrap().1 = made;
            let next = host.leaf("mcp.example.com").unwrap();
            assert!(!Arc::ptr_eq(&first, &next), "made {made:?}: renewed");
        }
        // No leaf outlives the CA.
        let late = host.not_after - Duration::from_secs(60);
        let leaf = host.make_leaf("mcp.example.com", late).unwrap();
        assert_eq!(not_after(&leaf.cert[0]), Some(host.not_after));
    }

    /// A CA key others may read is refused, as the gateway's other private keys are.
    #[test]
    fn a_ca_key_others_may_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = scratch();
        let ca = ca_in(dir.path());
        init(&ca, &hosts(&["mcp.example.com"]), false).unwrap();
        std::fs::set_permissions(&ca.key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = HostCa::load(&ca).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
    }

    #[test]
    fn a_name_type_without_hosts_is_closed_off() {
        let dir = scratch();
        let ca = ca_in(dir.path());
        // Only DNS names: no address at all.
        init(&ca, &hosts(&["mcp.example.com"]), false).unwrap();
        let host = HostCa::load(&ca).unwrap();
        for ip in ["127.0.0.1", "10.0.0.1", "::1"] {
            assert!(
                host.verify_leaf(&host.make_leaf(ip, SystemTime::now()).unwrap(), ip)
                    .is_err(),
                "{ip}"
            );
        }
        // Only an address: no DNS name at all.
        init(&ca, &hosts(&["127.0.0.1"]), true).unwrap();
        let host = HostCa::load(&ca).unwrap();
        host.verify_leaf(
            &host.make_leaf("127.0.0.1", SystemTime::now()).unwrap(),
            "127.0.0.1",
        )
        .unwrap();
        for name in ["localhost", "mcp.example.com", "invalid.com"] {
            assert!(
                host.verify_leaf(&host.make_leaf(name, SystemTime::now()).unwrap(), name)
                    .is_err(),
                "{name}"
            );
        }
    }
}
