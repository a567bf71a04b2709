//! The file as written: serde structs with `deny_unknown_fields`, documented defaults, and
//! newtypes that refuse bad values while the span of the offending key is still known.

use std::{fmt, net::SocketAddr, ops::Range, path::PathBuf, time::Duration};

use serde::Deserialize;
use toml::Spanned;

use super::{
    Admin, Agent, Config, Interception, Limits, Listener, Logging, Runtime, Selectors, Server,
};

/// Default agent-facing listener.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:15001";
/// Default admin listener.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:15000";
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 4 << 20;
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 << 20;
pub const DEFAULT_MAX_SSE_EVENT_BYTES: usize = 16 << 20;
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_UPSTREAM_RESPONSE_TIMEOUT: Duration = Duration::from_secs(300);
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_SESSIONS: usize = 10_000;

/// Validation failure: where, which key, what.
pub type Invalid = (Option<Range<usize>>, String, String);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct File {
    #[serde(default)]
    listener: RawListener,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    logging: RawLogging,
    #[serde(default)]
    runtime: RawRuntime,
    #[serde(default)]
    interception: RawInterception,
    #[serde(default)]
    servers: Vec<RawServer>,
    #[serde(default)]
    agents: Vec<RawAgent>,
    #[serde(default)]
    policy: super::policy::RawPolicy,
    #[serde(default)]
    rules: Vec<super::policy::RawRule>,
    #[serde(default)]
    audit: super::audit::RawAudit,
    #[serde(default)]
    secrets: Vec<super::credentials::RawSecret>,
    #[serde(default)]
    tokens: super::tokens::RawTokens,
    #[serde(default)]
    ca: RawCa,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCa {
    #[serde(default = "d_ca_cert")]
    cert_file: PathBuf,
    #[serde(default = "d_ca_key")]
    key_file: PathBuf,
    #[serde(default = "d_leaf_ttl")]
    leaf_ttl: LeafTtl,
}

/// `ca.leaf_ttl`: from 5 minutes (leaves are backdated by that much, and each new one costs a
/// key generation) to 30 days (a leaked leaf key should not outlive a month).
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(try_from = "String")]
struct LeafTtl(Duration);

impl TryFrom<String> for LeafTtl {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match humantime::parse_duration(&s) {
            Ok(d) if (super::MIN_LEAF_TTL..=super::MAX_LEAF_TTL).contains(&d) => Ok(LeafTtl(d)),
            _ => Err(format!("{s:?} must be a duration from \"5m\" to \"30d\"")),
        }
    }
}

impl Default for RawCa {
    fn default() -> Self {
        Self {
            cert_file: d_ca_cert(),
            key_file: d_ca_key(),
            leaf_ttl: d_leaf_ttl(),
        }
    }
}

fn d_ca_cert() -> PathBuf {
    PathBuf::from(super::DEFAULT_CA_CERT)
}
fn d_ca_key() -> PathBuf {
    PathBuf::from(super::DEFAULT_CA_KEY)
}
fn d_leaf_ttl() -> LeafTtl {
    LeafTtl(super::DEFAULT_LEAF_TTL)
}

/// Default port of the listener for redirected connections.
pub const DEFAULT_INTERCEPT_PORT: u16 = 906;
/// Default cgroup subtree (relative to the cgroup2 mount) the gateway creates and owns.
pub const DEFAULT_CGROUP_SUBTREE: &str = "agentgate";
/// Default directory on bpffs where the attached programs are pinned.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/agentgate";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInterception {
    #[serde(default)]
    mode: InterceptionMode,
    #[serde(default = "d_iport")]
    port: Spanned<u16>,
    #[serde(default = "d_subtree")]
    cgroup: Spanned<String>,
    #[serde(default)]
    attach: Vec<Spanned<String>>,
    #[serde(default = "d_pin")]
    pin_dir: PathBuf,
    #[serde(default)]
    https: bool,
    #[serde(default)]
    client_ca_file: Option<PathBuf>,
    #[serde(default)]
    client_crl_file: Option<Spanned<PathBuf>>,
}

impl Default for RawInterception {
    fn default() -> Self {
        Self {
            mode: InterceptionMode::default(),
            port: d_iport(),
            cgroup: d_subtree(),
            attach: Vec::new(),
            pin_dir: d_pin(),
            https: false,
            client_ca_file: None,
            client_crl_file: None,
        }
    }
}

fn d_iport() -> Spanned<u16> {
    Spanned::new(0..0, DEFAULT_INTERCEPT_PORT)
}
fn d_subtree() -> Spanned<String> {
    Spanned::new(0..0, DEFAULT_CGROUP_SUBTREE.to_owned())
}
fn d_pin() -> PathBuf {
    PathBuf::from(DEFAULT_PIN_DIR)
}

/// Whether connections are intercepted transparently.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InterceptionMode {
    /// Explicit mode only: agents are pointed at the gateway's URL.
    #[default]
    Off,
    /// eBPF programs on the agent cgroups redirect connects to configured MCP servers.
    Ebpf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    name: Spanned<ServerName>,
    #[serde(default)]
    cgroup: Option<Spanned<String>>,
    #[serde(default)]
    exe: Option<PathBuf>,
    #[serde(default)]
    exe_sha256: Option<Spanned<String>>,
    #[serde(default)]
    uid: Option<u32>,
    #[serde(default)]
    unit: Option<String>,
    #[serde(default)]
    container: Option<String>,
    /// The client-certificate identity (SPIFFE ID or subject CN) that names this agent.
    #[serde(default)]
    certificate: Option<Spanned<String>>,
}

/// A cgroup path relative to the cgroup2 mount: no leading slash, no `..`, no empty parts.
fn cgroup_path(raw: &Spanned<String>, key: &str) -> Result<String, Invalid> {
    let p = raw.get_ref().trim_matches('/');
    let ok = !p.is_empty()
        && p.split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    if ok {
        Ok(p.to_owned())
    } else {
        Err((
            Some(raw.span()),
            key.to_owned(),
            format!(
                "{:?} is not a cgroup path relative to the cgroup2 mount",
                raw.get_ref()
            ),
        ))
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuntime {
    /// 0: `TOKIO_WORKER_THREADS`, else one per CPU the process may use.
    #[serde(default)]
    worker_threads: Workers,
}

/// `runtime.worker_threads`: 0 (one per CPU) to 1,024.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(try_from = "i64")]
struct Workers(usize);

impl TryFrom<i64> for Workers {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        usize::try_from(v)
            .ok()
            .filter(|v| *v <= 1024)
            .map(Workers)
            .ok_or_else(|| format!("{v} must be from 0 (one per CPU) to 1024"))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    #[serde(default = "default_listen")]
    address: SocketAddr,
    #[serde(default = "default_max_connections")]
    max_connections: Positive,
    #[serde(default)]
    tls: Option<RawListenerTls>,
    #[serde(default)]
    allowed_hosts: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListenerTls {
    cert_file: PathBuf,
    key_file: PathBuf,
    client_ca_file: Option<PathBuf>,
    crl_file: Option<Spanned<PathBuf>>,
    client_auth: Option<Spanned<super::ClientAuth>>,
}

impl Default for RawListener {
    fn default() -> Self {
        Self {
            address: default_listen(),
            max_connections: default_max_connections(),
            tls: None,
            allowed_hosts: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    #[serde(default = "default_admin")]
    address: Option<SocketAddr>,
    #[serde(default = "yes")]
    enabled: bool,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            address: default_admin(),
            enabled: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    #[serde(default = "d_req")]
    max_request_bytes: Positive,
    #[serde(default = "d_resp")]
    max_response_bytes: Positive,
    #[serde(default = "d_sse")]
    max_sse_event_bytes: Positive,
    #[serde(default = "d_hdr")]
    header_read_timeout: Timeout,
    #[serde(default = "d_body")]
    body_read_timeout: Timeout,
    #[serde(default = "d_conn")]
    upstream_connect_timeout: Timeout,
    #[serde(default = "d_up")]
    upstream_response_timeout: Timeout,
    #[serde(default = "d_grace")]
    shutdown_grace: Timeout,
    #[serde(default = "d_sessions")]
    max_sessions: Positive,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            max_request_bytes: d_req(),
            max_response_bytes: d_resp(),
            max_sse_event_bytes: d_sse(),
            header_read_timeout: d_hdr(),
            body_read_timeout: d_body(),
            upstream_connect_timeout: d_conn(),
            upstream_response_timeout: d_up(),
            shutdown_grace: d_grace(),
            max_sessions: d_sessions(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogging {
    #[serde(default)]
    format: LogFormat,
    #[serde(default = "default_level")]
    level: Level,
}

/// `logging.level`: a tracing filter ("info", "agentgate=debug,hyper=warn").
#[derive(Debug, Deserialize)]
#[serde(try_from = "String")]
struct Level(String);

impl TryFrom<String> for Level {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match tracing_subscriber::EnvFilter::try_new(&s) {
            Ok(_) => Ok(Level(s)),
            Err(e) => Err(format!("{s:?} is not a tracing filter: {e}")),
        }
    }
}

impl Default for RawLogging {
    fn default() -> Self {
        Self {
            format: LogFormat::default(),
            level: default_level(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    name: Spanned<ServerName>,
    url: Option<Spanned<String>>,
    #[serde(default)]
    transport: Option<Spanned<Transport>>,
    /// A gateway-launched server: the program, its arguments and environment.
    command: Option<Spanned<String>>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: std::collections::BTreeMap<String, Spanned<String>>,
    cwd: Option<Spanned<PathBuf>>,
    user: Option<Spanned<String>>,
    max_sessions: Option<Positive>,
    max_sessions_per_agent: Option<Positive>,
    idle_timeout: Option<Timeout>,
    #[serde(default)]
    ca_file: Option<Spanned<PathBuf>>,
    #[serde(default)]
    pin_sha256: Vec<Spanned<String>>,
    http2: Option<Spanned<bool>>,
    #[serde(default)]
    policy_mode: Option<super::policy::Mode>,
    #[serde(default)]
    inject: Vec<super::credentials::RawInjection>,
}

/// Tracing output format.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Plain,
    Json,
}

/// How an upstream speaks MCP over HTTP.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// Streamable HTTP (2025-03-26 and later): one endpoint for POST, GET and DELETE.
    #[default]
    StreamableHttp,
    /// The 2024-11-05 HTTP+SSE transport: a GET stream announces where to POST.
    Sse,
    /// A child process the gateway launches (`command`), newline-delimited JSON-RPC on its
    /// stdin and stdout.
    Stdio,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::StreamableHttp => "streamable-http",
            Transport::Sse => "sse",
            Transport::Stdio => "stdio",
        })
    }
}

/// A server name: it appears in URLs (`/servers/<name>/mcp`) and metrics labels, so it is
/// limited to `[A-Za-z0-9_.-]{1,64}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct ServerName(String);

impl ServerName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ServerName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
            && s != "."
            && s != ".."
            // Metrics name requests for no configured server "-".
            && s != "-";
        if ok {
            Ok(Self(s))
        } else {
            Err(format!(
                "server name {s:?} must match [A-Za-z0-9_.-]{{1,64}} and not be \".\", \"..\" or \"-\""
            ))
        }
    }
}

impl fmt::Display for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The largest count or size any key takes (2^40, a TiB of bytes): far beyond any sane limit,
/// and small enough that no use of it overflows (tokio's semaphores panic above 2^61).
pub const MAX_COUNT: usize = 1 << 40;
/// The longest duration any key takes: long enough for any retention, short enough that adding
/// it to a clock reading cannot overflow (hyper's header timeout adds with `+`, and certificate
/// dates end at the year 9999).
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 31_557_600);

/// A count or size that must be at least 1 (and at most [`MAX_COUNT`]).
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(try_from = "i64")]
struct Positive(usize);

impl TryFrom<i64> for Positive {
    type Error = String;
    fn try_from(v: i64) -> Result<Self, String> {
        usize::try_from(v)
            .ok()
            .filter(|v| (1..=MAX_COUNT).contains(v))
            .map(Positive)
            .ok_or_else(|| format!("{v} must be a positive integer of at most {MAX_COUNT}"))
    }
}

/// A duration written as humantime text ("10s", "500ms", "2m"); zero and more than
/// [`MAX_DURATION`] are refused.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(try_from = "String")]
struct Timeout(Duration);

impl TryFrom<String> for Timeout {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match humantime::parse_duration(&s) {
            Ok(d) if !d.is_zero() && d <= MAX_DURATION => Ok(Timeout(d)),
            Ok(d) if d.is_zero() => Err(format!("{s:?} must be longer than zero")),
            Ok(_) => Err(format!("{s:?} must be at most 100 years")),
            Err(e) => Err(format!(
                "{s:?} is not a duration such as \"10s\" or \"500ms\": {e}"
            )),
        }
    }
}

/// Checks an upstream URL and its `ca_file`.
fn http_endpoint(
    raw_url: Spanned<String>,
    ca_file: Option<Spanned<PathBuf>>,
    base: Option<&std::path::Path>,
) -> Result<(url::Url, Option<PathBuf>), Invalid> {
    let url_span = Some(raw_url.span());
    let url = url::Url::parse(raw_url.get_ref()).map_err(|e| {
        (
            url_span.clone(),
            "servers.url".to_owned(),
            format!("{:?} is not a URL: {e}", raw_url.get_ref()),
        )
    })?;
    let bad = |why: &str| (url_span.clone(), "servers.url".to_owned(), why.to_owned());
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("only http:// and https:// upstreams are supported"));
    }
    if url.host().is_none() {
        return Err(bad("the URL has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "credentials in the URL would leak into logs; remove them",
        ));
    }
    if url.fragment().is_some() {
        return Err(bad("the URL must not have a #fragment"));
    }
    let ca_file = match ca_file {
        Some(path) if url.scheme() != "https" => {
            return Err((
                Some(path.span()),
                "servers.ca_file".into(),
                "ca_file only applies to https:// upstreams".into(),
            ));
        }
        // Relative to the config file, as every other path: under systemd the working
        // directory is /, not where `check-config` ran.
        Some(path) => Some(super::resolve(base, path.get_ref())),
        None => None,
    };
    Ok((url, ca_file))
}

fn yes() -> bool {
    true
}
fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN
        .parse()
        .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 15001)))
}
fn default_admin() -> Option<SocketAddr> {
    DEFAULT_ADMIN.parse().ok()
}
fn default_max_connections() -> Positive {
    Positive(DEFAULT_MAX_CONNECTIONS)
}
fn default_level() -> Level {
    Level("info".to_owned())
}
fn d_req() -> Positive {
    Positive(DEFAULT_MAX_REQUEST_BYTES)
}
fn d_resp() -> Positive {
    Positive(DEFAULT_MAX_RESPONSE_BYTES)
}
fn d_sse() -> Positive {
    Positive(DEFAULT_MAX_SSE_EVENT_BYTES)
}
fn d_hdr() -> Timeout {
    Timeout(DEFAULT_HEADER_READ_TIMEOUT)
}
fn d_body() -> Timeout {
    Timeout(DEFAULT_BODY_READ_TIMEOUT)
}
fn d_conn() -> Timeout {
    Timeout(DEFAULT_UPSTREAM_CONNECT_TIMEOUT)
}
fn d_up() -> Timeout {
    Timeout(DEFAULT_UPSTREAM_RESPONSE_TIMEOUT)
}
fn d_grace() -> Timeout {
    Timeout(DEFAULT_SHUTDOWN_GRACE)
}
fn d_sessions() -> Positive {
    Positive(DEFAULT_MAX_SESSIONS)
}

impl File {
    /// Checks what one key alone cannot: URLs, cross-references, duplicates. Relative paths
    /// in `policy` are relative to `base` (the config file's directory).
    pub fn validate(
        mut self,
        base: Option<&std::path::Path>,
    ) -> Result<Config, super::policy::PolicyError> {
        let policy =
            std::mem::take(&mut self.policy).validate(std::mem::take(&mut self.rules), base)?;
        let audit = std::mem::take(&mut self.audit).validate(base)?;
        let admin_secret = self.tokens.admin_secret().cloned();
        let tokens = std::mem::take(&mut self.tokens).validate(base)?;
        let mut config = self.validate_core(base)?;
        if let Some(name) = admin_secret
            && !config.secrets.iter().any(|s| &s.name == name.get_ref())
        {
            return Err(super::policy::PolicyError::from((
                Some(name.span()),
                "tokens.admin_secret".to_owned(),
                format!("no [[secrets]] entry is named {:?}", name.get_ref()),
            )));
        }
        config.policy = policy;
        config.audit = audit;
        config.tokens = tokens;
        Ok(config)
    }

    fn validate_core(self, base: Option<&std::path::Path>) -> Result<Config, Invalid> {
        let secrets = super::credentials::secrets(self.secrets, base)?;
        let mut servers: Vec<Server> = Vec::with_capacity(self.servers.len());
        for raw in self.servers {
            let name = raw.name.get_ref().clone();
            if servers.iter().any(|s| s.name == name) {
                return Err((
                    Some(raw.name.span()),
                    "servers.name".into(),
                    format!("duplicate server name {name:?}"),
                ));
            }
            let (url, transport, ca_file, launch) = match (raw.url, raw.command) {
                (Some(url), None) => {
                    let (url, ca_file) = http_endpoint(url, raw.ca_file, base)?;
                    let transport = match raw.transport {
                        Some(t) if *t.get_ref() == Transport::Stdio => {
                            return Err((
                                Some(t.span()),
                                "servers.transport".into(),
                                "\"stdio\" servers are launched by the gateway: give command, not url"
                                    .into(),
                            ));
                        }
                        Some(t) => t.into_inner(),
                        None => Transport::default(),
                    };
                    if let Some(k) = [
                        ("args", !raw.args.is_empty()),
                        ("env", !raw.env.is_empty()),
                        ("cwd", raw.cwd.is_some()),
                        ("user", raw.user.is_some()),
                        ("max_sessions", raw.max_sessions.is_some()),
                        (
                            "max_sessions_per_agent",
                            raw.max_sessions_per_agent.is_some(),
                        ),
                        ("idle_timeout", raw.idle_timeout.is_some()),
                    ]
                    .iter()
                    .find_map(|(k, set)| set.then_some(*k))
                    {
                        return Err((
                            Some(raw.name.span()),
                            format!("servers.{k}"),
                            "only applies to a server the gateway launches (command)".into(),
                        ));
                    }
                    (url, transport, ca_file, None)
                }
                (None, Some(command)) => {
                    let launch = super::launch::validate(
                        &name,
                        super::launch::RawLaunch {
                            command,
                            args: raw.args,
                            env: raw.env,
                            cwd: raw.cwd,
                            user: raw.user,
                            max_sessions: raw.max_sessions.map(|p| p.0),
                            max_sessions_per_agent: raw.max_sessions_per_agent.map(|p| p.0),
                            idle_timeout: raw.idle_timeout.map(|t| t.0),
                        },
                        &secrets,
                        base,
                    )?;
                    let stray = [
                        (
                            "transport",
                            raw.transport
                                .as_ref()
                                .filter(|t| *t.get_ref() != Transport::Stdio)
                                .map(|t| t.span()),
                        ),
                        ("ca_file", raw.ca_file.as_ref().map(|c| c.span())),
                        ("http2", raw.http2.as_ref().map(|h| h.span())),
                        ("inject", raw.inject.first().map(|_| raw.name.span())),
                    ];
                    if let Some((k, span)) = stray.into_iter().find_map(|(k, s)| s.map(|s| (k, s)))
                    {
                        return Err((
                            Some(span),
                            format!("servers.{k}"),
                            "does not apply to a launched (command) server; give secrets to it through env".into(),
                        ));
                    }
                    (launch.url(&name), Transport::Stdio, None, Some(launch))
                }
                (Some(url), Some(_)) => {
                    return Err((
                        Some(url.span()),
                        "servers.url".into(),
                        "give either url (a server to reach) or command (a server to launch), not both".into(),
                    ));
                }
                (None, None) => {
                    return Err((
                        Some(raw.name.span()),
                        "servers".into(),
                        format!(
                            "server {:?} needs url (a server to reach) or command (a server to launch)",
                            name.as_str()
                        ),
                    ));
                }
            };
            let mut pin_sha256 = Vec::with_capacity(raw.pin_sha256.len());
            for pin in &raw.pin_sha256 {
                let bad = || {
                    (
                        Some(pin.span()),
                        "servers.pin_sha256".to_owned(),
                        "a pin is 64 hex digits: the SHA-256 of the server's SubjectPublicKeyInfo (DER)".to_owned(),
                    )
                };
                let hex = pin.get_ref();
                if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad());
                }
                let mut bytes = [0u8; 32];
                for (i, b) in bytes.iter_mut().enumerate() {
                    *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
                }
                pin_sha256.push(bytes);
            }
            if let Some(pin) = raw.pin_sha256.first()
                && url.scheme() != "https"
            {
                return Err((
                    Some(pin.span()),
                    "servers.pin_sha256".into(),
                    "pins only apply to https:// upstreams".into(),
                ));
            }
            if let Some(h) = &raw.http2
                && *h.get_ref()
                && url.scheme() != "https"
            {
                return Err((
                    Some(h.span()),
                    "servers.http2".into(),
                    "HTTP/2 is only negotiated over TLS: an http:// server speaks HTTP/1.1".into(),
                ));
            }
            let http2 = raw.http2.is_some_and(|h| h.into_inner());
            let inject = super::credentials::injections(raw.inject, &secrets)?;
            servers.push(Server {
                name,
                url,
                transport,
                ca_file,
                pin_sha256,
                http2,
                policy_mode: raw.policy_mode,
                inject,
                launch,
            });
        }
        let mut agents: Vec<Agent> = Vec::with_capacity(self.agents.len());
        for raw in self.agents {
            let name = raw.name.get_ref().clone();
            if name.as_str() == crate::identity::UNKNOWN_AGENT {
                return Err((
                    Some(raw.name.span()),
                    "agents.name".into(),
                    format!(
                        "{name:?} is what callers no agent matches are called: pick another name"
                    ),
                ));
            }
            if agents.iter().any(|a| a.name == name) {
                return Err((
                    Some(raw.name.span()),
                    "agents.name".into(),
                    format!("duplicate agent name {name:?}"),
                ));
            }
            let exe_sha256 = match raw.exe_sha256 {
                Some(h)
                    if h.get_ref().len() == 64
                        && h.get_ref().bytes().all(|b| b.is_ascii_hexdigit()) =>
                {
                    Some(h.get_ref().to_ascii_lowercase())
                }
                Some(h) => {
                    return Err((
                        Some(h.span()),
                        "agents.exe_sha256".into(),
                        "must be 64 hex digits".into(),
                    ));
                }
                None => None,
            };
            let cgroup = raw
                .cgroup
                .as_ref()
                .map(|c| cgroup_path(c, "agents.cgroup"))
                .transpose()?;
            let certificate = match raw.certificate {
                Some(c) if c.get_ref().trim().is_empty() || c.get_ref().contains('*') => {
                    return Err((
                        Some(c.span()),
                        "agents.certificate".into(),
                        "a certificate identity is a SPIFFE ID (spiffe://...) or a subject CN, exactly".into(),
                    ));
                }
                Some(c)
                    if agents
                        .iter()
                        .any(|a| a.certificate.as_deref() == Some(c.get_ref())) =>
                {
                    return Err((
                        Some(c.span()),
                        "agents.certificate".into(),
                        format!("{:?} already names another agent", c.get_ref()),
                    ));
                }
                Some(c) => Some(c.into_inner()),
                None => None,
            };
            agents.push(Agent {
                name,
                certificate,
                selectors: Selectors {
                    cgroup,
                    exe: raw.exe,
                    exe_sha256,
                    uid: raw.uid,
                    unit: raw.unit,
                    container: raw.container,
                },
            });
        }
        let i = self.interception;
        if let (Some(crl), None) = (&i.client_crl_file, &i.client_ca_file) {
            return Err((
                Some(crl.span()),
                "interception.client_crl_file".into(),
                "needs interception.client_ca_file (it revokes client certificates)".into(),
            ));
        }
        let interception = Interception {
            mode: i.mode,
            port: match *i.port.get_ref() {
                0 => {
                    return Err((
                        Some(i.port.span()),
                        "interception.port".into(),
                        "must not be 0: agents are redirected to this fixed port".into(),
                    ));
                }
                port => port,
            },
            cgroup: cgroup_path(&i.cgroup, "interception.cgroup")?,
            attach: i
                .attach
                .iter()
                .map(|a| cgroup_path(a, "interception.attach"))
                .collect::<Result<_, _>>()?,
            pin_dir: i.pin_dir,
            https: i.https,
            client_ca_file: i.client_ca_file.map(|c| super::resolve(base, &c)),
            client_crl_file: i.client_crl_file.map(|c| super::resolve(base, c.get_ref())),
        };
        let logging = self.logging;
        let l = self.limits;
        Ok(Config {
            ca: super::Ca {
                cert_file: super::resolve(base, &self.ca.cert_file),
                key_file: super::resolve(base, &self.ca.key_file),
                leaf_ttl: self.ca.leaf_ttl.0,
            },
            listener: Listener {
                address: self.listener.address,
                max_connections: self.listener.max_connections.0,
                allowed_hosts: self
                    .listener
                    .allowed_hosts
                    .into_iter()
                    .map(|h| {
                        let name = h.get_ref().trim_end_matches('.').to_ascii_lowercase();
                        let valid = !name.is_empty()
                            && name.len() <= 253
                            && name
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
                        if valid {
                            Ok(name)
                        } else {
                            Err((
                                Some(h.span()),
                                "listener.allowed_hosts".to_owned(),
                                format!(
                                    "{:?} is not a host name (no port, scheme or path: \"gateway.internal\")",
                                    h.get_ref()
                                ),
                            ))
                        }
                    })
                    .collect::<Result<_, _>>()?,
                tls: self.listener.tls.map(|t| {
                    let client_auth = match (&t.client_ca_file, t.client_auth) {
                        (None, Some(a)) => {
                            return Err((
                                Some(a.span()),
                                "listener.tls.client_auth".to_owned(),
                                "needs client_ca_file (the roots client certificates are checked against)".to_owned(),
                            ));
                        }
                        (_, Some(a)) => a.into_inner(),
                        (_, None) => super::ClientAuth::Required,
                    };
                    if let (None, Some(c)) = (&t.client_ca_file, &t.crl_file) {
                        return Err((
                            Some(c.span()),
                            "listener.tls.crl_file".to_owned(),
                            "needs client_ca_file (it revokes client certificates)".to_owned(),
                        ));
                    }
                    Ok(super::ListenerTls {
                        cert_file: super::resolve(base, &t.cert_file),
                        key_file: super::resolve(base, &t.key_file),
                        client_ca_file: t.client_ca_file.map(|c| super::resolve(base, &c)),
                        crl_file: t.crl_file.map(|c| super::resolve(base, c.get_ref())),
                        client_auth,
                    })
                }).transpose()?,
            },
            admin: Admin {
                address: if self.admin.enabled {
                    self.admin.address
                } else {
                    None
                },
            },
            limits: Limits {
                max_request_bytes: l.max_request_bytes.0,
                max_response_bytes: l.max_response_bytes.0,
                max_sse_event_bytes: l.max_sse_event_bytes.0,
                header_read_timeout: l.header_read_timeout.0,
                body_read_timeout: l.body_read_timeout.0,
                upstream_connect_timeout: l.upstream_connect_timeout.0,
                upstream_response_timeout: l.upstream_response_timeout.0,
                shutdown_grace: l.shutdown_grace.0,
                max_sessions: l.max_sessions.0,
            },
            logging: Logging {
                format: logging.format,
                level: logging.level.0,
            },
            runtime: Runtime {
                worker_threads: (self.runtime.worker_threads.0 > 0)
                    .then_some(self.runtime.worker_threads.0),
            },
            interception,
            servers,
            agents,
            policy: super::policy::PolicyConfig::default(),
            audit: super::audit::AuditConfig::default(),
            tokens: super::tokens::TokensConfig::default(),
            secrets,
            source: None,
        })
    }
}
