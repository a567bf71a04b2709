//! Configuration: one TOML file, parsed into validated types.
//!
//! `raw` mirrors the file (unknown keys are errors); this module turns it into [`Config`],
//! whose fields are already checked, so nothing downstream re-validates. Every error names the
//! file, line and key. Config is data: it starts nothing.

pub mod audit;
pub mod credentials;
pub mod launch;
pub mod policy;
mod raw;
pub mod tokens;

use std::{
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

pub use raw::{InterceptionMode, LogFormat, ServerName, Transport};

/// The example configuration, which is also the embedded default `agentgate run` uses.
pub const DEFAULT_CONFIG: &str = include_str!("../../agentgate.example.toml");
/// What error messages call the embedded default.
pub const DEFAULT_CONFIG_NAME: &str = "<embedded default config>";

/// A validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub listener: Listener,
    pub admin: Admin,
    pub limits: Limits,
    pub logging: Logging,
    pub runtime: Runtime,
    pub interception: Interception,
    pub servers: Vec<Server>,
    pub agents: Vec<Agent>,
    pub policy: policy::PolicyConfig,
    pub audit: audit::AuditConfig,
    pub tokens: tokens::TokensConfig,
    pub ca: Ca,
    /// Where upstream credentials come from (names and sources; values are read at start).
    pub secrets: Vec<credentials::SecretSpec>,
    /// The file this was loaded from (`None` for the embedded default): what a reload re-reads.
    pub source: Option<PathBuf>,
}

/// Transparent interception.
#[derive(Clone, Debug)]
pub struct Interception {
    pub mode: InterceptionMode,
    /// Port of the listener for redirected connections (127.0.0.1 and ::1).
    pub port: u16,
    /// The cgroup subtree, relative to the cgroup2 mount, that the gateway creates and owns.
    /// Agent `NAME` gets `<subtree>/NAME`.
    pub cgroup: String,
    /// Existing cgroups (relative to the mount) whose processes are intercepted too.
    pub attach: Vec<String>,
    /// Where the attached programs are pinned on bpffs, so that they outlive a crashed gateway
    /// (connects then fail instead of bypassing it).
    pub pin_dir: PathBuf,
    /// Intercept https:// servers too: TLS is terminated with certificates from the host CA.
    pub https: bool,
    /// Roots for the client certificates intercepted TLS connections may present (asked for,
    /// never required): a verified one names the agent beside the kernel's attestation.
    pub client_ca_file: Option<PathBuf>,
    /// Revocation lists (PEM) for those client certificates.
    pub client_crl_file: Option<PathBuf>,
}

/// Where the host CA is (`agentgate ca init` creates it) and how long its leaf certificates live.
pub const DEFAULT_CA_CERT: &str = "/var/lib/agentgate/ca/ca.pem";
pub const DEFAULT_CA_KEY: &str = "/var/lib/agentgate/ca/ca.key";
pub const DEFAULT_LEAF_TTL: Duration = Duration::from_secs(12 * 3600);
/// Shortest `ca.leaf_ttl`.
pub const MIN_LEAF_TTL: Duration = Duration::from_secs(300);
/// Longest `ca.leaf_ttl`.
pub const MAX_LEAF_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// `[ca]`: the host CA that signs certificates for intercepted HTTPS servers.
#[derive(Clone, Debug)]
pub struct Ca {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Lifetime of each leaf certificate (a fresh one is made at half of it).
    pub leaf_ttl: Duration,
}

/// A named agent and how to recognise its processes.
#[derive(Clone, Debug)]
pub struct Agent {
    pub name: ServerName,
    /// The client-certificate identity (SPIFFE ID or subject CN) that names this agent.
    pub certificate: Option<String>,
    pub selectors: Selectors,
}

/// Process attributes an agent is recognised by. Every selector that is set must match; an agent
/// with none set matches processes in its own cgroup (`<subtree>/<name>` and below).
#[derive(Clone, Debug, Default)]
pub struct Selectors {
    /// cgroup path relative to the cgroup2 mount; matches that cgroup and below.
    pub cgroup: Option<String>,
    pub exe: Option<PathBuf>,
    /// Lower-case hex SHA-256 of the executable.
    pub exe_sha256: Option<String>,
    pub uid: Option<u32>,
    /// systemd unit, e.g. `agent.service`.
    pub unit: Option<String>,
    /// Container id (64 hex digits, as in the cgroup path).
    pub container: Option<String>,
}

/// The async runtime.
#[derive(Clone, Debug)]
pub struct Runtime {
    /// Worker threads; `None` means `TOKIO_WORKER_THREADS`, else one per CPU the process may
    /// use. One worker runs on tokio's current-thread scheduler.
    pub worker_threads: Option<usize>,
}

/// The agent-facing listener.
#[derive(Clone, Debug)]
pub struct Listener {
    pub address: SocketAddr,
    pub max_connections: usize,
    /// Host names (lower case, no port) a plain-HTTP listener answers besides IP addresses and
    /// `localhost`.
    pub allowed_hosts: Vec<String>,
    /// HTTPS (and mTLS) on the explicit listener.
    pub tls: Option<ListenerTls>,
}

/// `[listener.tls]`: the certificate the explicit listener presents, and how it checks agents'.
#[derive(Clone, Debug)]
pub struct ListenerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Roots client certificates must chain to; `None`: no client certificates asked for.
    pub client_ca_file: Option<PathBuf>,
    /// Revocation lists (PEM) for those client certificates.
    pub crl_file: Option<PathBuf>,
    pub client_auth: ClientAuth,
}

/// Whether an agent must present a client certificate (with `client_ca_file`).
#[derive(Clone, Copy, Debug, Default, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// No certificate, no connection.
    #[default]
    Required,
    /// A certificate, when presented, must verify; without one the agent is known otherwise.
    Optional,
}

/// The admin listener (health, metrics).
#[derive(Clone, Debug)]
pub struct Admin {
    pub address: Option<SocketAddr>,
}

/// Size, time and count limits.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_request_bytes: usize,
    pub max_response_bytes: usize,
    pub max_sse_event_bytes: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
    pub upstream_connect_timeout: Duration,
    pub upstream_response_timeout: Duration,
    pub shutdown_grace: Duration,
    pub max_sessions: usize,
}

/// Tracing output.
#[derive(Clone, Debug)]
pub struct Logging {
    pub format: LogFormat,
    /// Used when `RUST_LOG` is not set.
    pub level: String,
}

/// One upstream MCP server.
#[derive(Clone, Debug)]
pub struct Server {
    pub name: ServerName,
    pub url: url::Url,
    pub transport: Transport,
    /// Extra trust root (PEM) for an HTTPS upstream with a private CA.
    pub ca_file: Option<PathBuf>,
    /// SHA-256 of the SubjectPublicKeyInfo an HTTPS upstream's certificate must carry (any
    /// one; none: no pinning).
    pub pin_sha256: Vec<[u8; 32]>,
    /// Whether an https:// server is offered HTTP/2 (by ALPN, beside HTTP/1.1; a server that
    /// takes it gets connections its requests share). Never for http://.
    pub http2: bool,
    /// Overrides `policy.mode` for this server.
    pub policy_mode: Option<policy::Mode>,
    /// Headers set on every request to it, carrying secrets the agent never sees.
    pub inject: Vec<credentials::Injection>,
    /// Set for a server the gateway launches and speaks to over stdio (`url` is then
    /// `stdio:<name>`, for display only).
    pub launch: Option<launch::Launch>,
}

/// A configuration error, naming where it is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}:{line}: {key}: {message}")]
    Invalid {
        file: String,
        line: usize,
        key: String,
        message: String,
    },
}

impl Config {
    /// Loads and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        let mut config = Self::parse_in(&text, &file, path.parent())?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    /// The embedded default configuration.
    pub fn embedded_default() -> Result<Config, ConfigError> {
        Self::parse(DEFAULT_CONFIG, DEFAULT_CONFIG_NAME)
    }

    /// Parses and validates TOML text; `file` names it in errors. Relative paths are relative
    /// to the working directory.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        Self::parse_in(text, file, None)
    }

    fn parse_in(text: &str, file: &str, base: Option<&Path>) -> Result<Config, ConfigError> {
        let raw: raw::File = toml::from_str(text).map_err(|e| {
            let (line, key) = locate(text, e.span());
            ConfigError::Invalid {
                file: file.to_owned(),
                line,
                key,
                message: e.message().trim().to_owned(),
            }
        })?;
        raw.validate(base).map_err(|e| {
            let (file, text) = match &e.file {
                Some((path, text)) => (path.display().to_string(), text.as_str()),
                None => (file.to_owned(), text),
            };
            let (span, key, message) = e.invalid;
            let (line, located) = locate(text, span);
            ConfigError::Invalid {
                file,
                line,
                key: if key == "(file)" { located } else { key },
                message,
            }
        })
    }

    /// The server with this name.
    pub fn server(&self, name: &str) -> Option<&Server> {
        self.servers.iter().find(|s| s.name.as_str() == name)
    }

    /// The distinct hosts of the https:// servers: what the host CA may stand in for.
    pub fn https_hosts(&self) -> Vec<url::Host> {
        let mut hosts: Vec<url::Host> = Vec::new();
        for server in &self.servers {
            if server.launch.is_none()
                && server.url.scheme() == "https"
                && let Some(host) = server.url.host()
            {
                let host = host.to_owned();
                if !hosts.contains(&host) {
                    hosts.push(host);
                }
            }
        }
        hosts
    }
}

/// Whether `url` names this host (`localhost` or a loopback address): requests to it never
/// cross the network.
pub fn loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    }
}

/// `url` for logs and messages: without its query, which hosted servers often use for an API
/// key (`?api_key=...`).
pub fn loggable_url(url: &url::Url) -> String {
    match url.query() {
        Some(_) => {
            let mut shown = url.clone();
            shown.set_query(Some("..."));
            shown.to_string()
        }
        None => url.to_string(),
    }
}

/// A path from the config: relative ones are relative to `base`, the config file's directory
/// (the working directory for the embedded default).
pub(crate) fn resolve(base: Option<&Path>, p: &Path) -> PathBuf {
    match base {
        Some(b) if p.is_relative() => b.join(p),
        _ => p.to_path_buf(),
    }
}

/// Line number (1-based) of a span, and the key it is on: the key written on that line, qualified
/// by the table header above it.
fn locate(text: &str, span: Option<std::ops::Range<usize>>) -> (usize, String) {
    let Some(span) = span else {
        return (0, "(file)".to_owned());
    };
    let start = span.start.min(text.len());
    let line_no = text[..start].bytes().filter(|&b| b == b'\n').count() + 1;
    let lines: Vec<&str> = text.lines().collect();
    let line = lines.get(line_no - 1).copied().unwrap_or("").trim();
    let key = if line.starts_with('[') {
        line.trim_matches(|c| c == '[' || c == ']')
            .trim()
            .to_owned()
    } else {
        let own = line
            .split('=')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"')
            .to_owned();
        let table = lines[..line_no.saturating_sub(1).min(lines.len())]
            .iter()
            .rev()
            .map(|l| l.trim())
            .find(|l| l.starts_with('['))
            .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned());
        match table {
            Some(t) if !own.is_empty() => format!("{t}.{own}"),
            Some(t) => t,
            None => own,
        }
    };
    (
        line_no,
        if key.is_empty() {
            "(file)".to_owned()
        } else {
            key
        },
    )
}

impl fmt::Display for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = loggable_url(&self.url);
        write!(f, "{} -> {url} ({})", self.name, self.transport)
    }
}

#[cfg(test)]
mod tests;
