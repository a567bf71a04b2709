//! Transparent interception on the real kernel (root). Unmodified MCP clients started with
//! `agentgate exec` dial the MCP server's real address and land in the gateway, which knows
//! which process dialled. These tests need root and fail, never skip, without it.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use agentgate::{
    cli::{Running, start},
    config::Config,
    identity::ProcessIdentity,
};
use tokio::process::Command;

use crate::common::*;

/// A gateway with interception on, in its own cgroup subtree and pin directory.
struct Intercepting {
    running: Option<Running>,
    audit_dir: PathBuf,
    config_path: PathBuf,
    subtree: PathBuf,
    _dir: tempfile::TempDir,
}

fn unique(tag: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!(
        "agentgate-test-{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

fn interception_config(servers: &[(&str, &str)], agents: &str, subtree: &str, port: u16) -> String {
    let mut text = format!(
        "{ALLOW_ALL}[listener]\naddress = \"127.0.0.1:0\"\n[admin]\nenabled = false\n\
         [interception]\nmode = \"ebpf\"\nport = {port}\ncgroup = \"{subtree}\"\npin_dir = \"/sys/fs/bpf/{subtree}\"\n{agents}\n"
    );
    for (name, url) in servers {
        text.push_str(&format!(
            "[[servers]]\nname = \"{name}\"\nurl = \"{url}\"\n"
        ));
    }
    text
}

async fn intercepting(servers: &[(&str, &str)], agents: &str) -> Intercepting {
    intercepting_with(servers, agents, |t| t).await
}

async fn intercepting_with(
    servers: &[(&str, &str)],
    agents: &str,
    edit: impl FnOnce(String) -> String,
) -> Intercepting {
    assert!(is_root(), "the eBPF tests need root");
    let dir = tempfile::tempdir().unwrap();
    let subtree = unique("cg");
    let audit_dir = dir.path().join("audit");
    let text = edit(interception_config(servers, agents, &subtree, free_port()))
        + &audit_section(dir.path());
    let config_path = dir.path().join("agentgate.toml");
    std::fs::write(&config_path, &text).unwrap();
    let running = start(Config::parse(&text, "test.toml").unwrap())
        .await
        .unwrap();
    assert!(
        running.gateway.interceptor.lock().unwrap().is_some(),
        "interception did not start (see the error log above)"
    );
    let subtree = agentgate::ebpf::cgroup2_mount()
        .expect("cgroup2")
        .join(subtree);
    Intercepting {
        running: Some(running),
        audit_dir,
        config_path,
        subtree,
        _dir: dir,
    }
}

impl Intercepting {
    /// `agentgate exec --agent AGENT -- program args...`
    fn exec(&self, agent: &str, program: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_agentgate"));
        c.args(["exec", "--agent", agent, "--config"])
            .arg(&self.config_path)
            .arg("--")
            .arg(program)
            .args(args);
        c.stdin(Stdio::null()).kill_on_drop(true);
        c
    }

    /// The attested identities of the agent requests in the audit log (each was durable
    /// before it was forwarded).
    fn seen(&self) -> Vec<ProcessIdentity> {
        let filter = agentgate::audit::query::Filter {
            event: Some("request".into()),
            ..Default::default()
        };
        agentgate::audit::query::query(&self.audit_dir, &filter, None)
            .unwrap()
            .into_iter()
            .filter_map(|r| serde_json::from_value(r.process?).ok())
            .collect()
    }

    async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
        remove_cgroups(&self.subtree);
    }
}

/// Removes a cgroup and the ones below it. A cgroup whose last process is still exiting is
/// busy for a moment, so each removal is retried for up to two seconds.
fn remove_cgroups(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                remove_cgroups(&e.path());
            }
        }
    }
    for _ in 0..40 {
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn python() -> PathBuf {
    peers().join("venv/bin/python")
}

async fn client_output(mut cmd: Command) -> (u32, serde_json::Value) {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start client");
    let pid = child.id().expect("pid");
    let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .expect("client finished")
        .expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "client failed: {stderr}");
    assert!(
        !stderr.contains("failed"),
        "client reported a failure: {stderr}"
    );
    (
        pid,
        serde_json::from_slice(&out.stdout).expect("client JSON"),
    )
}

fn metric(gw: &Intercepting, needle: &str) -> u64 {
    let text = gw.running.as_ref().unwrap().gateway.metrics.render();
    text.lines()
        .find(|l| l.starts_with(needle))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unmodified_client_lands_in_the_gateway_and_is_attributed() {
    let server = python_server("streamable-http", None).await;
    let url = server.url("/mcp");
    let gw = intercepting(&[("py", &url)], "[[agents]]\nname = \"a\"\n").await;
    let calls = r#"agentgate_requests_total{server="py",method="tools/call"}"#;

    // Outside the agent cgroups: not redirected.
    let direct = python_client(&url, "streamable-http", "legacy", "self", None).await;
    assert_eq!(
        metric(&gw, calls),
        0,
        "a process outside the agent cgroups was redirected"
    );

    let script = peer_scripts().join("client.py");
    // A secret on the agent's command line, which the kernel shows the gateway: the gateway
    // strips the header it makes, and the audit log must not keep the argument either.
    let secret = "ghp_0123456789abcdefghijklmnopqrstuv";
    let cmd = gw.exec(
        "a",
        &python(),
        &[
            script.to_str().unwrap(),
            "--url",
            &url,
            "--mode",
            "legacy",
            "--bearer",
            secret,
        ],
    );
    let (pid, through) = client_output(cmd).await;
    assert_eq!(direct, through);
    assert_eq!(
        metric(&gw, calls),
        SELF_PROFILE_CALLS,
        "the intercepted client's calls did not pass the gateway"
    );

    let seen = gw.seen();
    assert!(!seen.is_empty());
    let exe = std::fs::canonicalize(python()).unwrap();
    for id in &seen {
        assert_eq!(id.tgid, pid, "{id:?}");
        assert_eq!(id.agent, "a");
        assert!(id.process_verified);
        assert_eq!(id.exe.as_deref(), Some(exe.as_path()));
        assert_eq!(id.exe_sha256.as_ref().map(String::len), Some(64));
        assert!(
            id.cgroup.as_deref().is_some_and(|c| c.ends_with("/a")),
            "{:?}",
            id.cgroup
        );
        assert_eq!(id.original_destination.port(), server.port);
        assert!(id.cmdline.iter().any(|a| a.ends_with("client.py")));
        let bearer = id.cmdline.iter().position(|a| a == "--bearer");
        assert_eq!(
            bearer
                .and_then(|i| id.cmdline.get(i + 1))
                .map(String::as_str),
            Some("[redacted]"),
            "{:?}",
            id.cmdline
        );
    }
    assert!(
        !String::from_utf8_lossy(&all_log_bytes(&gw.audit_dir)).contains(secret),
        "the command line's secret reached the audit log"
    );
    // Closed sockets took their records with them: nothing accumulates in the kernel maps.
    let mut counts = (usize::MAX, usize::MAX);
    for _ in 0..100 {
        counts = gw
            .running
            .as_ref()
            .unwrap()
            .gateway
            .interceptor
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .record_counts();
        if counts == (0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        counts,
        (0, 0),
        "records of closed connections remain in the kernel maps"
    );
    // The upstream saw only the gateway: the agent's HTTP client names itself in User-Agent,
    // which the gateway does not forward. Direct requests carry it; intercepted ones must not.
    let all = received(&server).await;
    let (direct_half, intercepted) = all.split_at(all.len() / 2);
    assert!(
        direct_half.iter().all(|r| r["user_agent"]
            .as_str()
            .is_some_and(|u| u.contains("python"))),
        "{direct_half:?}"
    );
    assert!(
        intercepted.iter().all(|r| r["user_agent"].is_null()),
        "the agent reached the upstream itself: {intercepted:?}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ipv6_and_ipv4_mapped_destinations_are_intercepted() {
    let port = free_port();
    let _six_server = Command::new(python())
        .arg(peer_scripts().join("server.py"))
        .args(["--host", "::1", "--port", &port.to_string()])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for _ in 0..400 {
        if tokio::net::TcpStream::connect(("::1", port)).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let four_server = python_server("streamable-http", None).await;
    let v6 = format!("http://[::1]:{port}/mcp");
    let v4 = four_server.url("/mcp");
    let gw = intercepting(&[("six", &v6), ("four", &v4)], "[[agents]]\nname = \"a\"\n").await;
    let script = peer_scripts().join("client.py");
    let (_, six) = client_output(gw.exec(
        "a",
        &python(),
        &[script.to_str().unwrap(), "--url", &v6, "--mode", "legacy"],
    ))
    .await;
    let mapped = format!("http://[::ffff:127.0.0.1]:{}/mcp", four_server.port);
    let (_, four) = client_output(gw.exec(
        "a",
        &python(),
        &[
            script.to_str().unwrap(),
            "--url",
            &mapped,
            "--mode",
            "legacy",
        ],
    ))
    .await;
    assert_eq!(six, four);
    assert_eq!(
        metric(
            &gw,
            r#"agentgate_requests_total{server="six",method="tools/call"}"#
        ),
        SELF_PROFILE_CALLS
    );
    assert_eq!(
        metric(
            &gw,
            r#"agentgate_requests_total{server="four",method="tools/call"}"#
        ),
        SELF_PROFILE_CALLS
    );
    // The client sees the address it dialled, not the gateway's.
    let peer = gw
        .exec("a", &python(), &["-c", &format!("import socket; s = socket.create_connection(('::1', {port})); print(s.getpeername()[1])")])
        .output()
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&peer.stdout).trim(),
        port.to_string()
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_clients_are_never_confused_and_unmatched_ones_are_unknown() {
    let server = python_server("streamable-http", None).await;
    let url = server.url("/mcp");
    // "b" only matches uid 4242: root's processes in its cgroup are an unknown agent.
    let gw = intercepting(
        &[("py", &url)],
        "[[agents]]\nname = \"a\"\n[[agents]]\nname = \"b\"\nuid = 4242\n",
    )
    .await;
    let script = peer_scripts().join("client.py");
    let args = [script.to_str().unwrap(), "--url", &url, "--mode", "legacy"];
    let (ra, rb) = tokio::join!(
        client_output(gw.exec("a", &python(), &args)),
        client_output(gw.exec("b", &python(), &args))
    );
    let (pid_a, pid_b) = (ra.0, rb.0);
    let seen = gw.seen();
    let of = |pid: u32| seen.iter().filter(|i| i.tgid == pid).collect::<Vec<_>>();
    assert!(!of(pid_a).is_empty() && !of(pid_b).is_empty());
    assert!(
        of(pid_a)
            .iter()
            .all(|i| i.agent == "a" && i.cgroup.as_deref().is_some_and(|c| c.ends_with("/a")))
    );
    assert!(of(pid_b).iter().all(|i| i.agent == "unknown" && i.cgroup.as_deref().is_some_and(|c| c.ends_with("/b"))));
    assert_eq!(seen.len(), of(pid_a).len() + of(pid_b).len());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_gateway_killed_agents_cannot_reach_the_server() {
    let server = python_server("streamable-http", None).await;
    let dir = tempfile::tempdir().unwrap();
    let subtree = unique("kill");
    let redirect = free_port();
    let text = interception_config(
        &[("py", &server.url("/mcp"))],
        "[[agents]]\nname = \"a\"\n",
        &subtree,
        redirect,
    );
    let config = dir.path().join("agentgate.toml");
    std::fs::write(&config, &text).unwrap();
    let start = |config: &Path| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_agentgate"));
        c.arg("run")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c.spawn().unwrap()
    };
    let wait_ready = |child: &mut tokio::process::Child| {
        use tokio::io::AsyncBufReadExt;
        let stderr = child.stderr.take().unwrap();
        async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            let mut on = false;
            while let Some(line) = lines.next_line().await.unwrap() {
                on |= line.contains("Transparent interception is on");
                if line.contains("agentgate is ready") {
                    break;
                }
            }
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            on
        }
    };
    let mut gw = start(&config);
    assert!(
        tokio::time::timeout(Duration::from_secs(20), wait_ready(&mut gw))
            .await
            .unwrap(),
        "interception did not start"
    );
    let probe = format!(
        "import socket; socket.create_connection(('127.0.0.1', {}), timeout=5); print('connected')",
        server.port
    );
    let exec = |config: &Path| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_agentgate"));
        c.args(["exec", "--agent", "a", "--config"])
            .arg(config)
            .arg("--")
            .arg(python())
            .args(["-c", &probe]);
        c
    };
    let alive = exec(&config).output().await.unwrap();
    assert_eq!(String::from_utf8_lossy(&alive.stdout).trim(), "connected");

    // An agent in a network namespace of its own, listening on the redirect port of its own
    // loopback: redirected there it would talk to itself (and fill the kernel's table of
    // redirected connections). It is refused instead.
    let squat = format!(
        "import socket\nl = socket.socket(); l.bind(('127.0.0.1', {redirect})); l.listen()\n\
         socket.create_connection(('127.0.0.1', {}), timeout=5); print('squatted')",
        server.port
    );
    let other_ns = Command::new(env!("CARGO_BIN_EXE_agentgate"))
        .args(["exec", "--agent", "a", "--config"])
        .arg(&config)
        .args(["--", "unshare", "--net", "--", "sh", "-c"])
        .arg("ip link set lo up && exec \"$0\" -c \"$1\"")
        .arg(python())
        .arg(&squat)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&other_ns.stderr);
    assert!(
        !String::from_utf8_lossy(&other_ns.stdout).contains("squatted")
            && stderr.contains("Operation not permitted"),
        "{}{stderr}",
        String::from_utf8_lossy(&other_ns.stdout)
    );

    gw.start_kill().unwrap();
    gw.wait().await.unwrap();
    let dead = exec(&config).output().await.unwrap();
    assert!(
        !dead.status.success(),
        "an agent reached the MCP server with the gateway dead"
    );
    assert!(
        String::from_utf8_lossy(&dead.stderr).contains("Connection refused"),
        "{}",
        String::from_utf8_lossy(&dead.stderr)
    );
    assert!(
        received(&server).await.is_empty(),
        "the upstream was reached around the gateway"
    );

    // A restarted gateway takes over the stale programs; a clean stop detaches them.
    let mut again = start(&config);
    assert!(
        tokio::time::timeout(Duration::from_secs(20), wait_ready(&mut again))
            .await
            .unwrap()
    );
    signal(&again, "-TERM");
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(15), again.wait())
            .await
            .unwrap()
            .unwrap()
            .code(),
        Some(0)
    );
    let after = exec(&config).output().await.unwrap();
    assert_eq!(
        String::from_utf8_lossy(&after.stdout).trim(),
        "connected",
        "programs still attached after a clean stop"
    );
    assert!(
        !Path::new("/sys/fs/bpf").join(&subtree).exists(),
        "a clean stop leaves its pin directory behind"
    );
    remove_cgroups(&agentgate::ebpf::cgroup2_mount().unwrap().join(&subtree));
}

#[tokio::test(flavor = "multi_thread")]
async fn without_privileges_interception_fails_clearly_and_explicit_mode_works() {
    let server = python_server("streamable-http", None).await;
    let dir = tempfile::tempdir().unwrap();
    let subtree = unique("nopriv");
    let port = free_port();
    let text = interception_config(&[("py", &server.url("/mcp"))], "", &subtree, free_port())
        .replace(
            "address = \"127.0.0.1:0\"\n[admin]",
            &format!("address = \"127.0.0.1:{port}\"\n[admin]"),
        );
    // The audit log lives where the unprivileged user may write.
    let writable = dir.path().join("nobody");
    std::fs::create_dir(&writable).unwrap();
    std::os::unix::fs::chown(&writable, Some(65534), Some(65534)).unwrap();
    let text = text + &audit_section(&writable);
    let config = dir.path().join("agentgate.toml");
    std::fs::write(&config, &text).unwrap();
    // Readable by the unprivileged user.
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let mut unprivileged = Command::new("setpriv");
    unprivileged
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_agentgate"));
    let (_child, error) = run_until_ready(unprivileged, &config).await;
    assert!(error.contains("needs root"), "{error}");
    let (status, _, _) = initialize(port, "py", &[]).await;
    assert_eq!(status, 200, "explicit mode stopped working");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_port_someone_else_holds_on_ipv6_stops_interception() {
    let server = python_server("streamable-http", None).await;
    let dir = tempfile::tempdir().unwrap();
    let subtree = unique("squat");
    let redirect = free_port();
    // Whoever holds [::1]:port would receive every redirected IPv6 connection.
    let squatter = std::net::TcpListener::bind(("::1", redirect)).unwrap();
    let port = free_port();
    let text = interception_config(&[("py", &server.url("/mcp"))], "", &subtree, redirect).replace(
        "address = \"127.0.0.1:0\"\n[admin]",
        &format!("address = \"127.0.0.1:{port}\"\n[admin]"),
    ) + &audit_section(dir.path());
    let config = dir.path().join("agentgate.toml");
    std::fs::write(&config, &text).unwrap();
    let (_child, error) =
        run_until_ready(Command::new(env!("CARGO_BIN_EXE_agentgate")), &config).await;
    assert!(
        error.contains(&format!("[::1]:{redirect}")) && error.to_lowercase().contains("in use"),
        "{error}"
    );
    drop(squatter);
}

/// Runs `agentgate` (`command`, which may be a wrapper such as setpriv) `run --config config`
/// until it is ready; returns it (killed on drop) and the line saying why transparent
/// interception is unavailable, if one was logged.
async fn run_until_ready(mut command: Command, config: &Path) -> (tokio::process::Child, String) {
    let mut child = command
        .arg("run")
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut error = String::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("Transparent interception is unavailable") {
                error = line.clone();
            }
            if line.contains("agentgate is ready") {
                return;
            }
        }
    })
    .await
    .unwrap();
    (child, error)
}

/// A network namespace with a veth pair: a second host address for the MCP server. Removed on drop.
struct Netns {
    name: String,
    pub server_addr: String,
}

impl Netns {
    fn create() -> Self {
        let n = std::process::id() % 200 + 20;
        let name = format!("agtest{}", std::process::id());
        let (host_if, ns_if) = (format!("agh{n}"), format!("agn{n}"));
        let host_addr = format!("10.213.{n}.1/24");
        let server_addr = format!("10.213.{n}.2");
        let ip = |args: &[&str]| {
            let out = std::process::Command::new("ip")
                .args(args)
                .output()
                .expect("run ip (iproute2)");
            assert!(
                out.status.success(),
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &name])
            .output();
        ip(&["netns", "add", &name]);
        ip(&[
            "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if,
        ]);
        ip(&["link", "set", &ns_if, "netns", &name]);
        ip(&["addr", "add", &host_addr, "dev", &host_if]);
        ip(&["link", "set", &host_if, "up"]);
        ip(&[
            "netns",
            "exec",
            &name,
            "ip",
            "addr",
            "add",
            &format!("{server_addr}/24"),
            "dev",
            &ns_if,
        ]);
        ip(&["netns", "exec", &name, "ip", "link", "set", &ns_if, "up"]);
        ip(&["netns", "exec", &name, "ip", "link", "set", "lo", "up"]);
        Self { name, server_addr }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_on_another_address_in_a_network_namespace_is_intercepted() {
    let ns = Netns::create();
    let port = free_port();
    let _server = Command::new("ip")
        .args(["netns", "exec", &ns.name])
        .arg(python())
        .arg(peer_scripts().join("server.py"))
        .args(["--host", &ns.server_addr, "--port", &port.to_string()])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut up = false;
    for _ in 0..400 {
        if tokio::net::TcpStream::connect((ns.server_addr.as_str(), port))
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "server in the namespace did not come up");
    let url = format!("http://{}:{port}/mcp", ns.server_addr);
    let gw = intercepting(&[("remote", &url)], "[[agents]]\nname = \"a\"\n").await;
    let script = peer_scripts().join("client.py");
    let (pid, through) = client_output(gw.exec(
        "a",
        &python(),
        &[script.to_str().unwrap(), "--url", &url, "--mode", "legacy"],
    ))
    .await;
    assert_eq!(through["echo"]["content"][0]["text"], "hello");
    assert_eq!(
        metric(
            &gw,
            r#"agentgate_requests_total{server="remote",method="tools/call"}"#
        ),
        SELF_PROFILE_CALLS
    );
    let seen = gw.seen();
    assert!(
        !seen.is_empty()
            && seen.iter().all(|i| i.tgid == pid
                && i.original_destination.to_string() == format!("{}:{port}", ns.server_addr))
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_existing_cgroup_and_a_server_host_name_are_intercepted_and_status_lists_them() {
    let server = python_server("streamable-http", None).await;
    let mount = agentgate::ebpf::cgroup2_mount().expect("cgroup2");
    // Stands in for a systemd service's or a container's cgroup: it exists before the gateway.
    let service = unique("svc");
    std::fs::create_dir(mount.join(&service)).unwrap();
    let admin = free_port();
    let agents = format!("[[agents]]\nname = \"svc\"\ncgroup = \"{service}\"\n");
    // A host name, not an address: the gateway resolves it to the addresses agents dial.
    let by_name = format!("http://localhost:{}/mcp", server.port);
    let gw = intercepting_with(&[("py", &by_name)], &agents, |t| {
        t.replace(
            "[admin]\nenabled = false",
            &format!("[admin]\naddress = \"127.0.0.1:{admin}\""),
        )
        .replace("pin_dir =", &format!("attach = [\"{service}\"]\npin_dir ="))
    })
    .await;
    let hold = format!(
        "echo $$ > {}/cgroup.procs && exec {} -c \"import socket, time; s = socket.create_connection(('127.0.0.1', {})); print('up', flush=True); time.sleep(30)\"",
        mount.join(&service).display(),
        python().display(),
        server.port
    );
    let mut holder = Command::new("sh")
        .args(["-c", &hold])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = holder.id().unwrap();
    {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(holder.stdout.take().unwrap()).lines();
        assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("up"));
    }
    let mut status = Command::new(env!("CARGO_BIN_EXE_agentgate"));
    status
        .args(["status", "--json", "--config"])
        .arg(&gw.config_path);
    let list: Vec<serde_json::Value> = serde_json::from_str(&stdout_of(status).await).unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["server"], "py");
    assert_eq!(list[0]["identity"]["agent"], "svc");
    assert_eq!(list[0]["identity"]["tgid"], pid);
    assert_eq!(list[0]["identity"]["cgroup"], service.as_str());
    let table = Command::new(env!("CARGO_BIN_EXE_agentgate"))
        .args(["status", "--config"])
        .arg(&gw.config_path)
        .output()
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&table.stdout)
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("svc") && l.contains(&pid.to_string()))
    );
    // Other users (agents among them) are not shown who runs what: a clear refusal. The
    // binary and config go where nobody can reach them (a checkout may sit in a private
    // directory).
    let open = tempfile::tempdir().unwrap();
    let mode = |m| std::os::unix::fs::PermissionsExt::from_mode(m);
    std::fs::set_permissions(open.path(), mode(0o755)).unwrap();
    let (bin, config) = (open.path().join("agentgate"), open.path().join("gw.toml"));
    if std::fs::hard_link(env!("CARGO_BIN_EXE_agentgate"), &bin).is_err() {
        std::fs::copy(env!("CARGO_BIN_EXE_agentgate"), &bin).unwrap();
    }
    std::fs::copy(&gw.config_path, &config).unwrap();
    std::fs::set_permissions(&config, mode(0o644)).unwrap();
    let denied = Command::new(&bin)
        .args(["status", "--config"])
        .arg(&config)
        .uid(65534)
        .gid(65534)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(!denied.status.success(), "{stderr}");
    assert!(
        stderr.contains("refused (403)") && stderr.contains("only root and the gateway's own user"),
        "{stderr}"
    );
    holder.kill().await.unwrap();
    gw.stop().await;
    remove_cgroups(&mount.join(&service));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_legacy_sse_server_is_intercepted_end_to_end() {
    let server = python_server("sse", None).await;
    let url = server.url("/sse");
    let gw = intercepting_with(&[("legacy", &url)], "[[agents]]\nname = \"a\"\n", |t| {
        t.replace(
            "url = \"http://127.0.0.1",
            "transport = \"sse\"\nurl = \"http://127.0.0.1",
        )
    })
    .await;
    let script = peer_scripts().join("client.py");
    let direct = python_client(&url, "sse", "legacy", "self", None).await;
    let (pid, through) = client_output(gw.exec(
        "a",
        &python(),
        &[
            script.to_str().unwrap(),
            "--url",
            &url,
            "--transport",
            "sse",
            "--mode",
            "legacy",
        ],
    ))
    .await;
    assert_eq!(direct, through);
    assert_eq!(
        metric(
            &gw,
            r#"agentgate_requests_total{server="legacy",method="tools/call"}"#
        ),
        SELF_PROFILE_CALLS
    );
    let seen = gw.seen();
    assert!(!seen.is_empty(), "no attested connection");
    assert!(
        seen.iter().all(|i| i.tgid == pid && i.agent == "a"),
        "{seen:?}"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn policy_decides_on_the_attested_agent_and_its_process() {
    let server = crate::policy::policy_server().await;
    let url = server.url("/mcp");
    let rules = "[[rules]]\nname = \"analyst-reads\"\neffect = \"allow\"\nagents = [\"analyst\"]\ntools = [\"read_file\"]\n\
                 [[rules]]\nname = \"service-writes\"\neffect = \"allow\"\nagents = [\"analyst\"]\ntools = [\"write_file\"]\n\
                 [rules.process]\nuid = [4242]\n";
    let gw = intercepting_with(
        &[("peer", &url)],
        "[[agents]]\nname = \"analyst\"\n[[agents]]\nname = \"intern\"\n",
        |t| {
            t.replace(
                "[[rules]]\nname = \"allow-all\"\neffect = \"allow\"\n",
                rules,
            )
        },
    )
    .await;
    let script = peer_scripts().join("policy_peer.py");
    let steps = r#"[["list"], ["call", "read_file", {}], ["call", "write_file", {}]]"#;
    let args = [
        script.to_str().unwrap(),
        "client",
        "--url",
        &url,
        "--steps",
        steps,
    ];
    let (_, analyst) = client_output(gw.exec("analyst", &python(), &args)).await;
    assert_eq!(
        analyst[0]["pages"],
        serde_json::json!([["read_file", "write_file"], [], [], []])
    );
    assert_eq!(analyst[1]["error"], false, "{}", analyst[1]);
    let refusal = analyst[2]["rpc_error"].as_str().unwrap_or_default();
    assert!(
        refusal.contains(
            "rule \"service-writes\" did not apply: process uid is not among those allowed"
        ),
        "{refusal}"
    );
    // Same program, same server, another agent's cgroup: not even the session is allowed.
    let out = gw.exec("intern", &python(), &args).output().await.unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no rule allows agent")
            && stderr.contains("intern")
            && stderr.contains("to use initialize"),
        "{stderr}"
    );
    gw.stop().await;
}

/// Runs a command to completion; returns (success, stdout, stderr).
async fn run_to_end(cmd: Command) -> (bool, String, String) {
    let out = output_of(cmd).await;
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_https_server_is_reached_through_interception_with_the_host_ca() {
    let scratch = scratch_dir("https-intercept");
    // The upstream: HTTPS with a certificate from its own CA, which only the gateway trusts.
    let upstream_ca = TestCa::new(&scratch, "upstream");
    let (cert, key) = upstream_ca.server("upstream");
    let server = python_server("streamable-http", Some((&cert, &key))).await;
    let url = format!("https://127.0.0.1:{}/mcp", server.port);
    // Agents' client certificates, from a third CA.
    let agents_ca = TestCa::new(&scratch, "agents");
    let spiffe = |n: &str| {
        rcgen::SanType::URI(
            format!("spiffe://example.org/agent/{n}")
                .try_into()
                .unwrap(),
        )
    };
    let client = rcgen::ExtendedKeyUsagePurpose::ClientAuth;
    let (a_cert, a_key) = agents_ca.issue("a", "a", &[spiffe("a")], client.clone());
    let (b_cert, b_key) = agents_ca.issue("b", "b", &[spiffe("b")], client);

    let host_ca = scratch.join("host-ca.pem");
    let ca_section = format!(
        "[ca]\ncert_file = \"{}\"\nkey_file = \"{}\"\nleaf_ttl = \"1h\"\n",
        host_ca.display(),
        scratch.join("host-ca.key").display()
    );
    // `agentgate ca init` and `ca install` (into a scratch store: the test leaves the system's
    // trust store alone) with the same [ca] table and https:// server the gateway uses: the CA
    // is only valid for that server's host.
    let cli_config = scratch.join("ca.toml");
    std::fs::write(
        &cli_config,
        format!("{ca_section}[[servers]]\nname = \"tls\"\nurl = \"{url}\"\n"),
    )
    .unwrap();
    let bin = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_agentgate"));
        c.stdin(Stdio::null());
        c
    };
    let (ok, out, err) = run_to_end({
        let mut c = bin();
        c.args(["ca", "init", "--config"]).arg(&cli_config);
        c
    })
    .await;
    assert!(ok && out.contains("SHA-256"), "{out}{err}");
    assert!(out.contains("valid for   127.0.0.1 "), "{out}");
    let store = scratch.join("store");
    let (ok, out, err) = run_to_end({
        let mut c = bin();
        c.args(["ca", "install", "--no-update", "--config"])
            .arg(&cli_config)
            .arg("--store")
            .arg(&store);
        c
    })
    .await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("export NODE_EXTRA_CA_CERTS="), "{out}");
    // Without the system bundle updated, Python agents are told to add the CA to their bundle:
    // SSL_CERT_FILE pointed at the CA alone would replace every other root.
    assert!(
        !out.contains("export SSL_CERT_FILE=") && out.contains("append"),
        "{out}"
    );
    // The client below trusts the host CA alone, through SSL_CERT_FILE, not an argument.
    let ssl_cert_file = store.join("agentgate.crt");
    assert_eq!(
        std::fs::read(store.join("agentgate.crt")).unwrap(),
        std::fs::read(&host_ca).unwrap()
    );

    let policy = "\n[policy]\npins_file = \"\"\n\
        [[rules]]\nname = \"cert-and-process-agree\"\neffect = \"allow\"\n\
        [rules.certificate]\nagrees_with_process = true\n";
    let agents = format!(
        "https = true\nclient_ca_file = \"{}\"\n{ca_section}\
         [[agents]]\nname = \"a\"\ncertificate = \"spiffe://example.org/agent/a\"\n\
         [[agents]]\nname = \"b\"\ncertificate = \"spiffe://example.org/agent/b\"\n",
        agents_ca.cert_path("agents").display()
    );
    let upstream_ca_file = upstream_ca.cert_path("upstream");
    let gw = intercepting_with(&[("tls", &url)], &agents, |t| {
        t.replace(ALLOW_ALL, policy).replace(
            &format!("url = \"{url}\"\n"),
            &format!(
                "url = \"{url}\"\nca_file = \"{}\"\n",
                upstream_ca_file.display()
            ),
        )
    })
    .await;
    let script = peer_scripts().join("client.py");
    // cafile None: the client trusts what SSL_CERT_FILE (from `ca install`) names.
    let run_as = |agent: &str, cafile: Option<&Path>, cert: Option<(&Path, &Path)>| {
        let mut args = vec![
            script.to_str().unwrap().to_owned(),
            "--url".into(),
            url.clone(),
            "--mode".into(),
            "legacy".into(),
        ];
        if let Some(cafile) = cafile {
            args.extend(["--cafile".into(), cafile.to_str().unwrap().to_owned()]);
        }
        if let Some((c, k)) = cert {
            args.extend([
                "--cert".into(),
                c.to_str().unwrap().to_owned(),
                "--key".into(),
                k.to_str().unwrap().to_owned(),
            ]);
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = gw.exec(agent, &python(), &refs);
        cmd.env("SSL_CERT_FILE", &ssl_cert_file);
        cmd
    };

    // Agent a, trusting only the host CA, with its own certificate: served through the gateway.
    let (_, through) = client_output(run_as("a", None, Some((&a_cert, &a_key)))).await;
    assert!(
        through["tools"]
            .as_array()
            .unwrap()
            .contains(&"echo".into()),
        "{through}"
    );
    let filter = agentgate::audit::query::Filter {
        event: Some("request".into()),
        ..Default::default()
    };
    let records = agentgate::audit::query::query(&gw.audit_dir, &filter, None).unwrap();
    let call = records
        .iter()
        .find(|r| r.method.as_deref() == Some("tools/call"))
        .expect("the call is audited");
    assert_eq!(call.agent.as_deref(), Some("a"));
    assert_eq!(
        call.certificate.as_deref(),
        Some("spiffe://example.org/agent/a")
    );
    assert!(call.process.is_some(), "the kernel's attestation is kept");

    // The same process presenting b's certificate: the identities disagree, the policy refuses.
    let (ok, _, err) = run_to_end(run_as("a", None, Some((&b_cert, &b_key)))).await;
    assert!(!ok, "a certificate naming another agent must be refused");
    assert!(
        err.contains("names agent \\\"b\\\"") || err.contains("names agent \"b\""),
        "{err}"
    );

    // A client that trusts only the upstream's real CA sees the gateway's certificate and
    // refuses it: the TLS was terminated by the gateway, not passed through.
    let (ok, _, err) = run_to_end(run_as(
        "a",
        Some(&upstream_ca_file),
        Some((&a_cert, &a_key)),
    ))
    .await;
    assert!(!ok);
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    gw.stop().await;
}

/// Opens `n` connections to `port` on 127.0.0.1, sends a request head on each, and prints
/// "open" or "closed" for each (did the gateway answer, or close it at once), then holds them.
fn connection_probe(n: usize, port: u16) -> String {
    format!(
        "import socket, time\n\
         socks, states = [], []\n\
         for _ in range({n}):\n\
         \x20   s = socket.create_connection(('127.0.0.1', {port}))\n\
         \x20   s.settimeout(5)\n\
         \x20   s.sendall(b'GET /mcp HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nAccept: text/event-stream\\r\\n\\r\\n')\n\
         \x20   try:\n\
         \x20       states.append('open' if s.recv(64) else 'closed')\n\
         \x20   except (ConnectionResetError, socket.timeout):\n\
         \x20       states.append('closed')\n\
         \x20   socks.append(s)\n\
         print(','.join(states), flush=True)\n\
         time.sleep(30)\n"
    )
}

/// One agent's redirected connections hold at most a quarter of listener.max_connections:
/// beyond that they are closed at once, and another agent's still get served.
#[tokio::test(flavor = "multi_thread")]
async fn one_agent_cannot_take_every_connection_slot() {
    use tokio::io::AsyncBufReadExt;
    let server = python_server("streamable-http", None).await;
    let url = server.url("/mcp");
    let gw = intercepting_with(
        &[("py", &url)],
        "[[agents]]\nname = \"a\"\n[[agents]]\nname = \"b\"\n",
        |t| t.replace("[listener]\n", "[listener]\nmax_connections = 8\n"),
    )
    .await;
    let first_line = |mut child: tokio::process::Child| async move {
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the probe reported")
            .unwrap()
            .unwrap_or_default();
        (line, child)
    };
    let spawn = |agent: &str, n: usize| {
        gw.exec(agent, &python(), &["-c", &connection_probe(n, server.port)])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (greedy, _held) = first_line(spawn("a", 3)).await;
    assert_eq!(greedy, "open,open,closed");
    // Agent a still holds its two; agent b is served.
    let (other, _b) = first_line(spawn("b", 1)).await;
    assert_eq!(other, "open");
    gw.stop().await;
}

/// A browser in an agent's cgroup that DNS rebinding pointed at an intercepted server's
/// address sends the attacker's name as Host (and its GETs no Origin): refused, as on the
/// explicit listener, while the server's own name and addresses pass.
#[tokio::test(flavor = "multi_thread")]
async fn an_intercepted_connection_refuses_a_rebound_host_name() {
    let server = python_server("streamable-http", None).await;
    let url = server.url("/mcp");
    let gw = intercepting(&[("py", &url)], "[[agents]]\nname = \"a\"\n").await;
    let port = server.port;
    let script = format!(
        "import json, socket\n\
         body = b'{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}}'\n\
         def status(host):\n\
         \x20   s = socket.create_connection(('127.0.0.1', {port}))\n\
         \x20   s.settimeout(10)\n\
         \x20   s.sendall(('POST /mcp HTTP/1.1\\r\\nHost: %s\\r\\nContent-Type: application/json\\r\\n'\n\
         \x20             'Accept: application/json, text/event-stream\\r\\nConnection: close\\r\\n'\n\
         \x20             'Content-Length: %d\\r\\n\\r\\n' % (host, len(body))).encode() + body)\n\
         \x20   data = b''\n\
         \x20   while True:\n\
         \x20       chunk = s.recv(65536)\n\
         \x20       if not chunk:\n\
         \x20           break\n\
         \x20       data += chunk\n\
         \x20   return data.split(b'\\r\\n', 1)[0].decode()\n\
         print(json.dumps([status(h) for h in ['attacker.example:{port}', '127.0.0.1:{port}', 'localhost:{port}']]), flush=True)\n"
    );
    let (_, statuses) = client_output(gw.exec("a", &python(), &["-c", &script])).await;
    let statuses: Vec<&str> = statuses
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(statuses[0].contains(" 403 "), "{statuses:?}");
    // Not refused for its name (a ping outside a session may get the server's own answer),
    // but answered.
    for s in &statuses[1..] {
        assert!(
            s.starts_with("HTTP/1.1 ") && !s.contains(" 403 "),
            "{statuses:?}"
        );
    }
    gw.stop().await;
}
