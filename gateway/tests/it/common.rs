//! Test helpers: start real peers and the gateway on free loopback ports, speak raw HTTP.

#![allow(dead_code)]

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use agentgate::{
    cli::{Running, start},
    config::Config,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    process::{Child, Command},
};

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Where `cargo xtask setup` put the peers. Missing peers fail the test with the fix.
pub fn peers() -> PathBuf {
    let dir = std::env::var_os("AGENTGATE_PEERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".peers"));
    assert!(
        dir.join("venv/bin/python").exists()
            && dir.join("bridge-venv/bin/mcp-proxy").exists()
            && dir
                .join("node/node_modules/@modelcontextprotocol/server-everything")
                .exists(),
        "test peers missing in {}: run `cargo xtask setup` (cargo xtask ci does it)",
        dir.display()
    );
    dir
}

pub fn peer_scripts() -> PathBuf {
    workspace().join("gateway/tests/peers")
}

/// Whether the tests run as root (the eBPF tests need it; PostgreSQL refuses it).
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Polls until something accepts TCP connections on `port` (the child may still be importing).
pub async fn wait_for_port(port: u16, child: &mut Child) {
    for _ in 0..400 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("peer exited before listening on {port}: {status}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on port {port} after 20 s");
}

/// A running peer process, killed on drop.
pub struct Peer {
    pub port: u16,
    pub child: Child,
}

impl Peer {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// The Python MCPServer test server (tests/peers/server.py).
pub async fn python_server(transport: &str, tls: Option<(&Path, &Path)>) -> Peer {
    let mut args: Vec<std::ffi::OsString> = vec!["--transport".into(), transport.into()];
    if let Some((cert, key)) = tls {
        args.extend([
            "--certfile".into(),
            cert.into(),
            "--keyfile".into(),
            key.into(),
        ]);
    }
    python_peer("server.py", &args).await
}

/// The OTLP logs receiver (tests/peers/otlp_receiver.py), checking bodies against the official
/// OpenTelemetry protobuf schema.
pub async fn otlp_receiver() -> Peer {
    python_peer("otlp_receiver.py", &[]).await
}

/// A Python peer script from tests/peers on a free port (`--port N` added), ready to serve.
pub async fn python_peer(script: &str, args: &[std::ffi::OsString]) -> Peer {
    let port = free_port();
    let mut child = Command::new(peers().join("venv/bin/python"))
        .arg(peer_scripts().join(script))
        .args(args)
        .args(["--port", &port.to_string()])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("start {script}: {e}"));
    wait_for_port(port, &mut child).await;
    Peer { port, child }
}

/// server-everything in Streamable HTTP mode.
pub async fn everything_server() -> Peer {
    everything_server_in("streamableHttp").await
}

/// server-everything in `mode` (`streamableHttp`, or `sse` for the HTTP+SSE transport at
/// `/sse`).
pub async fn everything_server_in(mode: &str) -> Peer {
    let port = free_port();
    let script =
        peers().join("node/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    let mut child = Command::new("node")
        .arg(script)
        .arg(mode)
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start server-everything");
    wait_for_port(port, &mut child).await;
    Peer { port, child }
}

/// Runs tests/peers/client.py and returns its normalised JSON output.
pub async fn python_client(
    url: &str,
    transport: &str,
    mode: &str,
    profile: &str,
    cafile: Option<&Path>,
) -> serde_json::Value {
    python_client_as(url, transport, mode, profile, cafile, None).await
}

/// [`python_client`], sending `Authorization: Bearer <bearer>` when given.
pub async fn python_client_as(
    url: &str,
    transport: &str,
    mode: &str,
    profile: &str,
    cafile: Option<&Path>,
    bearer: Option<&str>,
) -> serde_json::Value {
    let mut cmd = Command::new(peers().join("venv/bin/python"));
    cmd.arg(peer_scripts().join("client.py")).args([
        "--url",
        url,
        "--transport",
        transport,
        "--mode",
        mode,
        "--profile",
        profile,
    ]);
    if let Some(ca) = cafile {
        cmd.arg("--cafile").arg(ca);
    }
    if let Some(token) = bearer {
        cmd.arg("--bearer").arg(token);
    }
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.stdin(Stdio::null()).output())
        .await
        .expect("client finished in time")
        .expect("run client");
    assert!(
        out.status.success(),
        "client failed against {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("client prints JSON")
}

/// What the Python server recorded (method, path, some headers), via its /_received route.
pub async fn received(server: &Peer) -> Vec<serde_json::Value> {
    let (status, _, body) = http(server.port, "GET", "/_received", &[], b"").await;
    assert_eq!(status, 200);
    serde_json::from_slice(&body).expect("recorder JSON")
}

/// Whether a request for `name` (a tool, a prompt: its `params.name`) reached the test server.
pub async fn reached(server: &Peer, name: &str) -> bool {
    received(server).await.iter().any(|m| m["rpc_name"] == name)
}

/// A policy that allows everything and keeps tool pins in memory: for tests about the proxy,
/// not the policy.
pub const ALLOW_ALL: &str =
    "\n[policy]\npins_file = \"\"\n[[rules]]\nname = \"allow-all\"\neffect = \"allow\"\n";

/// `text` (from [`gateway_config`]) with its listener and admin addresses on fixed free ports,
/// for a gateway that must come back where it was; and the two ports.
pub fn fixed_ports(text: &str) -> (String, u16, u16) {
    let (port, admin) = (free_port(), free_port());
    let text = text.replacen(
        "address = \"127.0.0.1:0\"\n[admin]\naddress = \"127.0.0.1:0\"",
        &format!("address = \"127.0.0.1:{port}\"\n[admin]\naddress = \"127.0.0.1:{admin}\""),
        1,
    );
    (text, port, admin)
}

/// A 2026-07-28 request body: `method` with its per-request `_meta`; for tools/call, `name`
/// and `arguments` (JSON text).
pub fn modern_request(method: &str, name: &str, arguments: &str) -> String {
    let meta = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;
    let params = if method == "tools/call" {
        format!(r#"{{"name":"{name}","arguments":{arguments},{meta}}}"#)
    } else {
        format!("{{{meta}}}")
    };
    format!(r#"{{"jsonrpc":"2.0","id":7,"method":"{method}","params":{params}}}"#)
}

/// The headers of a 2026-07-28 request for `method` (on `name`), and `extra`.
pub fn modern_headers(
    method: &'static str,
    name: Option<&'static str>,
    extra: &[(&'static str, &'static str)],
) -> Vec<(&'static str, &'static str)> {
    let mut h = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        ("MCP-Protocol-Version", "2026-07-28"),
        ("Mcp-Method", method),
    ];
    if let Some(name) = name {
        h.push(("Mcp-Name", name));
    }
    h.extend_from_slice(extra);
    h
}

/// tools/call requests client.py makes with its "self" profile: echo, add, route_query and
/// long_running.
pub const SELF_PROFILE_CALLS: u64 = 4;

/// The Python test server (Streamable HTTP) as server "py" of a gateway whose config adds
/// `extra`.
pub async fn python_behind_gateway(extra: &str) -> (Peer, Running) {
    let server = python_server("streamable-http", None).await;
    let gw = gateway(&gateway_config(
        &[("py", &server.url("/mcp"), "streamable-http", "")],
        extra,
    ))
    .await;
    (server, gw)
}

/// The Python test server on the legacy HTTP+SSE transport as server "legacy" of a gateway
/// whose one deny rule refuses `wipe_disk`.
pub async fn legacy_behind_gateway() -> (Peer, Running) {
    let server = python_server("sse", None).await;
    let gw = gateway(&gateway_config(
        &[("legacy", &server.url("/sse"), "sse", "")],
        "[[rules]]\nname = \"no-wipe\"\neffect = \"deny\"\ntools = [\"wipe_disk\"]\n",
    ))
    .await;
    (server, gw)
}

/// Config text for a gateway on free ports in front of `servers` (name, url, transport, extra),
/// with the [`ALLOW_ALL`] policy.
pub fn gateway_config(servers: &[(&str, &str, &str, &str)], extra: &str) -> String {
    let mut text = format!(
        "{ALLOW_ALL}[listener]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"127.0.0.1:0\"\n{extra}\n"
    );
    for (name, url, transport, more) in servers {
        text.push_str(&format!(
            "[[servers]]\nname = \"{name}\"\nurl = \"{url}\"\ntransport = \"{transport}\"\n{more}\n"
        ));
    }
    text
}

/// An `[audit]` table keeping the log and key under `dir`.
pub fn audit_section(dir: &Path) -> String {
    format!(
        "\n[audit]\ndir = \"{}/audit\"\nkey_file = \"{}/audit.key\"\n",
        dir.display(),
        dir.display()
    )
}

/// A fresh directory for one test's audit log, under cargo's per-target scratch space.
pub fn scratch_dir(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts the gateway in-process. Without an `[audit]` table in the text, its audit log goes
/// to a fresh scratch directory.
pub async fn gateway(config_text: &str) -> Running {
    let mut config = Config::parse(config_text, "test.toml").expect("test config");
    if !config_text.contains("[audit]") {
        let dir = scratch_dir("audit");
        config.audit.dir = dir.join("audit");
        config.audit.key_file = dir.join("audit.key");
    }
    start(config).await.expect("gateway starts")
}

pub fn addr(running: &Running) -> SocketAddr {
    running.bound.proxy
}

/// One HTTP/1.1 request on a fresh connection; returns status, raw head and body.
pub async fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body);
    raw_exchange(port, &raw).await
}

/// Writes raw bytes, reads until the server closes; returns status, head and (de-chunked) body.
pub async fn raw_exchange(port: u16, raw: &[u8]) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream.write_all(raw).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut buf))
        .await
        .expect("server closed the connection in time")
        .expect("read");
    parse_response(&buf)
}

/// Reads one response with a `Content-Length` body from a connection that stays open, or
/// `None` when the server closed it first.
pub async fn read_response(stream: &mut TcpStream) -> Option<(u16, String, Vec<u8>)> {
    let mut buf = Vec::new();
    let read = async {
        loop {
            if let Some(split) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..split]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().expect("content-length"));
                if buf.len() >= split + 4 + len {
                    buf.truncate(split + 4 + len);
                    return Some(parse_response(&buf));
                }
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("a response or the end of the connection in time")
}

pub fn parse_response(buf: &[u8]) -> (u16, String, Vec<u8>) {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head in {:?}", String::from_utf8_lossy(buf)));
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let mut body = buf[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, head, body)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..eol]).unwrap_or("0").trim(), 16)
                .unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 4 + size..];
    }
}

/// A 2025-11-25 initialize request.
pub const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;

/// POSTs [`INITIALIZE`] to `/servers/<server>/mcp`, with `extra` headers besides the JSON and
/// Accept headers MCP requires; returns status, head and body.
pub async fn initialize(port: u16, server: &str, extra: &[(&str, &str)]) -> (u16, String, Vec<u8>) {
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
    ];
    headers.extend_from_slice(extra);
    http(
        port,
        "POST",
        &format!("/servers/{server}/mcp"),
        &headers,
        INITIALIZE.as_bytes(),
    )
    .await
}

/// Sends `sig` (like "-TERM") to a child process.
pub fn signal(child: &Child, sig: &str) {
    let pid = child.id().expect("pid").to_string();
    let ok = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .expect("kill")
        .success();
    assert!(ok);
}

/// Initializes a session with `server` through the gateway; returns its id.
pub async fn session(port: u16, server: &str) -> String {
    let (status, head, _) = initialize(port, server, &[]).await;
    assert_eq!(status, 200, "{head}");
    session_id(&head)
}

/// The `mcp-session-id` a response head carries.
pub fn session_id(head: &str) -> String {
    head.lines()
        .find_map(|l| l.strip_prefix("mcp-session-id: "))
        .expect("session id")
        .trim()
        .to_owned()
}

/// POSTs one JSON-RPC body in session `session` (revision 2025-11-25).
pub async fn post_in_session(
    port: u16,
    server: &str,
    session: &str,
    body: &str,
) -> (u16, String, Vec<u8>) {
    post_in_session_with(port, server, session, body, &[]).await
}

/// [`post_in_session`] with `extra` headers.
pub async fn post_in_session_with(
    port: u16,
    server: &str,
    session: &str,
    body: &str,
    extra: &[(&str, &str)],
) -> (u16, String, Vec<u8>) {
    let mut headers = vec![
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        ("Mcp-Session-Id", session),
        ("MCP-Protocol-Version", "2025-11-25"),
    ];
    headers.extend_from_slice(extra);
    http(
        port,
        "POST",
        &format!("/servers/{server}/mcp"),
        &headers,
        body.as_bytes(),
    )
    .await
}

/// A tools/call request.
pub fn tool_call(id: u64, tool: &str, arguments: serde_json::Value) -> String {
    serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    })
    .to_string()
}

/// The JSON-RPC error in a gateway reply.
pub fn rpc_error(body: &[u8]) -> (i64, String) {
    let v: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|_| panic!("not JSON: {:?}", String::from_utf8_lossy(body)));
    assert_eq!(v["jsonrpc"], "2.0", "{v}");
    (
        v["error"]["code"].as_i64().expect("error code"),
        v["error"]["message"].as_str().expect("message").to_owned(),
    )
}

/// A self-signed certificate for 127.0.0.1, written as PEM files into `dir`.
pub fn tls_files(dir: &Path) -> (PathBuf, PathBuf) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("cert");
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write key");
    (cert_path, key_path)
}

/// A test certificate authority (rcgen) that writes PEM files into a directory.
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    dir: PathBuf,
}

impl TestCa {
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let issuer =
            rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        let ca = TestCa {
            issuer,
            dir: dir.to_path_buf(),
        };
        std::fs::write(ca.cert_path(name), ca.issuer.pem()).unwrap();
        ca
    }

    /// Where the CA certificate named `name` was written.
    pub fn cert_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.ca.pem"))
    }

    /// Issues a leaf certificate; returns the (certificate, key) PEM paths.
    pub fn issue(
        &self,
        file: &str,
        cn: &str,
        sans: &[rcgen::SanType],
        usage: rcgen::ExtendedKeyUsagePurpose,
    ) -> (PathBuf, PathBuf) {
        self.issue_with(file, cn, sans, usage, None)
    }

    fn issue_with(
        &self,
        file: &str,
        cn: &str,
        sans: &[rcgen::SanType],
        usage: rcgen::ExtendedKeyUsagePurpose,
        serial: Option<u64>,
    ) -> (PathBuf, PathBuf) {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.subject_alt_names = sans.to_vec();
        params.extended_key_usages = vec![usage];
        params.serial_number = serial.map(rcgen::SerialNumber::from);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let cert_path = self.dir.join(format!("{file}.pem"));
        let key_path = self.dir.join(format!("{file}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    /// A client certificate with serial number `serial` (what a revocation list names).
    pub fn issue_serial(
        &self,
        file: &str,
        cn: &str,
        sans: &[rcgen::SanType],
        serial: u64,
    ) -> (PathBuf, PathBuf) {
        let usage = rcgen::ExtendedKeyUsagePurpose::ClientAuth;
        self.issue_with(file, cn, sans, usage, Some(serial))
    }

    /// A revocation list (PEM) revoking `serials`; returns its path.
    pub fn revocation_list(&self, file: &str, serials: &[u64]) -> PathBuf {
        let now = time::OffsetDateTime::now_utc();
        let params = rcgen::CertificateRevocationListParams {
            this_update: now - time::Duration::minutes(5),
            next_update: now + time::Duration::days(1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from(*s),
                    revocation_time: now - time::Duration::minutes(1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer).unwrap();
        let path = self.dir.join(format!("{file}.crl.pem"));
        std::fs::write(&path, crl.pem().unwrap()).unwrap();
        path
    }

    /// A server certificate for 127.0.0.1 and localhost.
    pub fn server(&self, file: &str) -> (PathBuf, PathBuf) {
        self.issue(
            file,
            "localhost",
            &[
                rcgen::SanType::IpAddress([127, 0, 0, 1].into()),
                rcgen::SanType::DnsName("localhost".try_into().unwrap()),
            ],
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        )
    }
}

/// Runs tests/peers/client.py with `args` after `--url url`; returns its output whatever the
/// outcome (for the runs that must fail).
pub async fn python_client_run(url: &str, args: &[&std::ffi::OsStr]) -> std::process::Output {
    let mut cmd = Command::new(peers().join("venv/bin/python"));
    cmd.arg(peer_scripts().join("client.py"))
        .args(["--url", url])
        .args(args)
        .stdin(Stdio::null());
    output_of(cmd).await
}

/// Runs `cmd` to completion (within 90 s) and returns its output, whatever its exit status.
pub async fn output_of(mut cmd: Command) -> std::process::Output {
    tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("finished in time")
        .expect("ran")
}

/// Runs `cmd` (within 90 s), asserts that it succeeded (showing its stderr), returns its stdout.
pub async fn stdout_of(cmd: Command) -> String {
    let out = output_of(cmd).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every byte of the audit log's segment files in `dir`.
pub fn all_log_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for (_, p) in agentgate::audit::log::segments(dir).unwrap() {
        out.extend(std::fs::read(p).unwrap());
    }
    out
}

/// An upstream that reads each request (one read of up to 64 KiB) and writes back the bytes
/// `reply` makes of it, then leaves the connection: for answers no real MCP server gives.
pub async fn scripted_upstream(reply: impl Fn(&[u8]) -> Vec<u8> + Send + Sync + 'static) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let reply = std::sync::Arc::new(reply);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let reply = reply.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let n = stream.read(&mut buf).await.unwrap_or(0);
                let _ = stream.write_all(&reply(&buf[..n])).await;
            });
        }
    });
    port
}
