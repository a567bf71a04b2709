//! The binary as an operator meets it: config errors and exit codes, version, signals.

use std::{process::Stdio, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt},
    process::Command,
};

use crate::common::*;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_agentgate"));
    // The scheduler the ready line names follows the configuration, unless a test sets the
    // variable itself.
    c.stdin(Stdio::null())
        .env_remove("TOKIO_WORKER_THREADS")
        .kill_on_drop(true);
    c
}

#[tokio::test]
async fn check_config_exit_codes_and_messages() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = workspace().join("agentgate.example.toml");
    let out = bin()
        .arg("check-config")
        .arg(&good)
        .output()
        .await
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[listener]\naddress = \"127.0.0.1:1\"\n\n[limits]\nmax_body = 5\n",
    )
    .expect("write");
    let out = bin()
        .arg("check-config")
        .arg(&bad)
        .output()
        .await
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:5: limits.max_body: unknown field",
            bad.display()
        )),
        "{stderr}"
    );

    let out = bin()
        .arg("run")
        .arg("--config")
        .arg(&bad)
        .output()
        .await
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    let out = bin()
        .arg("run")
        .arg("--config")
        .arg(dir.path().join("missing.toml"))
        .output()
        .await
        .expect("run");
    assert_eq!(out.status.code(), Some(64));

    let out = bin().arg("version").output().await.expect("run");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("agentgate {}", env!("CARGO_PKG_VERSION"))
    );
}

/// Starts the binary on a config file and waits for its "ready" log line.
async fn start_binary(config: &str, dir: &std::path::Path) -> (tokio::process::Child, u16) {
    // One worker thread runs on tokio's current-thread scheduler, more than one on the
    // work-stealing one: the tests that set one check that drains and signals work there too.
    let one_worker = config.contains(ONE_WORKER);
    let (child, port, logs) = start_binary_with(config, dir, &[]).await;
    let ready = logs.last().map_or("", String::as_str);
    let one_cpu = std::thread::available_parallelism().is_ok_and(|n| n.get() == 1);
    assert_eq!(
        ready.contains("scheduler=CurrentThread"),
        one_worker || one_cpu,
        "{ready}"
    );
    (child, port)
}

/// Starts the binary on `config` (its listener on a free port, an audit log under `dir` unless
/// the config has one) with `env` set; returns it, its port and its log lines up to the ready
/// line, which is the last.
async fn start_binary_with(
    config: &str,
    dir: &std::path::Path,
    env: &[(&str, &str)],
) -> (tokio::process::Child, u16, Vec<String>) {
    let port = free_port();
    let text = config.replace(
        "127.0.0.1:0\"\n[admin]",
        &format!("127.0.0.1:{port}\"\n[admin]"),
    );
    let text = if text.contains("[audit]") {
        text
    } else {
        text + &audit_section(dir)
    };
    let path = dir.join("gw.toml");
    std::fs::write(&path, text).expect("write config");
    let mut child = bin()
        .arg("run")
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    let logs = tokio::time::timeout(Duration::from_secs(20), async {
        let mut logs = Vec::new();
        while let Some(line) = lines.next_line().await.expect("read log") {
            let ready = line.contains("agentgate is ready");
            logs.push(line);
            if ready {
                return logs;
            }
        }
        panic!("gateway exited before it was ready: {logs:?}");
    })
    .await
    .expect("ready in time");
    // Plain logs carry no colour codes when they do not go to a terminal.
    assert!(logs.iter().all(|l| !l.contains('\u{1b}')), "{logs:?}");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, port, logs)
}

#[tokio::test]
async fn tokio_worker_threads_sizes_the_runtime_when_the_config_does_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let servers = [("s", "http://127.0.0.1:9/mcp", "streamable-http", "")];
    for (extra, env, scheduler, workers) in [
        ("", "1", "scheduler=CurrentThread", "workers=1"),
        ("", "2", "scheduler=MultiThread", "workers=2"),
        // The configuration wins over the variable.
        (
            "[runtime]\nworker_threads = 2\n",
            "1",
            "scheduler=MultiThread",
            "workers=2",
        ),
        (ONE_WORKER, "2", "scheduler=CurrentThread", "workers=1"),
    ] {
        let (mut child, _, logs) = start_binary_with(
            &gateway_config(&servers, extra),
            dir.path(),
            &[("TOKIO_WORKER_THREADS", env)],
        )
        .await;
        let ready = logs.last().map_or("", String::as_str);
        assert!(
            ready.contains(scheduler) && ready.contains(workers),
            "{extra:?} TOKIO_WORKER_THREADS={env}: {ready}"
        );
        child.kill().await.expect("kill");
    }
}

#[tokio::test]
async fn the_pin_files_unknown_members_are_named_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pins = dir.path().join("pins.json");
    // As a later gateway might write it: a member at the top and one in an entry.
    let file = serde_json::json!({
        "version": 1,
        "servers": {"s": {"echo": {"pinned": "0".repeat(64), "later_entry_member": [1]}}},
        "later_top_member": {"x": 1},
    });
    std::fs::write(&pins, file.to_string()).expect("write pins");
    let config = gateway_config(
        &[("s", "http://127.0.0.1:9/mcp", "streamable-http", "")],
        "",
    )
    .replace(
        "pins_file = \"\"",
        &format!("pins_file = \"{}\"", pins.display()),
    );
    let (mut child, _, logs) = start_binary_with(&config, dir.path(), &[]).await;
    let warning = logs
        .iter()
        .find(|l| l.contains("members this gateway does not know"))
        .unwrap_or_else(|| panic!("no warning: {logs:?}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(
        warning.contains("later_entry_member, later_top_member"),
        "{warning}"
    );
    assert!(warning.contains("pins.json"), "{warning}");
    child.kill().await.expect("kill");
    // Start leaves the file as it was: nothing had changed to write. (That a write keeps
    // unknown members is the pin store's unit test.)
    let kept: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&pins).expect("read pins")).expect("pins json");
    assert_eq!(kept["later_top_member"], file["later_top_member"]);
    assert_eq!(
        kept["servers"]["s"]["echo"]["later_entry_member"],
        serde_json::json!([1])
    );
}

/// Runs the binary on one worker thread (tokio's current-thread scheduler).
const ONE_WORKER: &str = "[runtime]\nworker_threads = 1\n";

const LONG_CALL: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"long_running","arguments":{"steps":4,"delay":0.5}}}"#;

#[tokio::test(flavor = "multi_thread")]
async fn sigint_drains_in_flight_calls_then_exits_zero() {
    let server = python_server("streamable-http", None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, port) = start_binary(
        &gateway_config(
            &[("py", &server.url("/mcp"), "streamable-http", "")],
            ONE_WORKER,
        ),
        dir.path(),
    )
    .await;
    let session = session(port, "py").await;
    let call = tokio::spawn(async move {
        let headers = [
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
            ("Mcp-Session-Id", session.as_str()),
            ("MCP-Protocol-Version", "2025-11-25"),
        ];
        http(
            port,
            "POST",
            "/servers/py/mcp",
            &headers,
            LONG_CALL.as_bytes(),
        )
        .await
    });
    // Signal once the call is in flight upstream.
    for _ in 0..200 {
        if received(&server).await.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    signal(&child, "-INT");
    let (status, _, body) = call.await.expect("call task");
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("done 4 steps"),
        "the in-flight call was cut: {text}"
    );
    assert_eq!(
        exit_code(&mut child, Duration::from_secs(15), "exited").await,
        Some(0)
    );
}

/// On the legacy HTTP+SSE transport the answer to a POSTed call arrives on the agent's GET
/// stream, after the POST got its 202: a draining gateway keeps that stream open until the
/// answer has passed (it ended every GET stream at once, which cut the answer off).
#[tokio::test(flavor = "multi_thread")]
async fn sigint_drains_a_legacy_call_whose_answer_is_still_on_its_way() {
    let server = python_server("sse", None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, port) = start_binary(
        &gateway_config(&[("legacy", &server.url("/sse"), "sse", "")], ""),
        dir.path(),
    )
    .await;
    // Tools listed first: the client fetches a tool's output schema after the result when it
    // lacks it, which a draining gateway would refuse.
    let script = format!(
        "import asyncio\n\
         from mcp import Client\n\
         from mcp.client.sse import sse_client\n\
         async def main():\n    \
             async with Client(sse_client('http://127.0.0.1:{port}/servers/legacy/sse'), read_timeout_seconds=30) as c:\n        \
                 await c.list_tools()\n        \
                 r = await c.call_tool('long_running', {{'steps': 3, 'delay': 1.0}})\n        \
                 print(r.content[0].text, flush=True)\n\
         asyncio.run(main())\n"
    );
    let client = tokio::process::Command::new(peers().join("venv/bin/python"))
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .output();
    let client = tokio::spawn(client);
    // Signal once the call is in flight upstream (its request record is written when it is
    // forwarded).
    let mut in_flight = false;
    for _ in 0..3000 {
        let log = agentgate::audit::query::query(
            &dir.path().join("audit"),
            &agentgate::audit::query::Filter::default(),
            None,
        )
        .unwrap_or_default();
        if log.iter().any(|r| {
            r.event == agentgate::audit::Event::Request && r.method.as_deref() == Some("tools/call")
        }) {
            in_flight = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(in_flight, "the call never reached the server");
    signal(&child, "-INT");
    let out = client.await.expect("client task").expect("run client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("done 3 steps"),
        "the in-flight legacy call was cut: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        exit_code(&mut child, Duration::from_secs(15), "exited").await,
        Some(0)
    );
    // The answer, which came on the stream, is recorded as the answer to the call.
    let log = agentgate::audit::query::query(
        &dir.path().join("audit"),
        &agentgate::audit::query::Filter::default(),
        None,
    )
    .expect("the audit log");
    let call = log
        .iter()
        .find(|r| {
            r.event == agentgate::audit::Event::Request && r.method.as_deref() == Some("tools/call")
        })
        .expect("the call's record");
    let answer = log
        .iter()
        .find(|r| r.event == agentgate::audit::Event::Response && r.request_seq == Some(call.seq))
        .unwrap_or_else(|| panic!("no response linked to the call: {log:#?}"));
    assert_eq!(answer.method.as_deref(), Some("tools/call"));
    assert_eq!(answer.target.as_deref(), Some("long_running"));
}

/// On a legacy stream, an id still owed its answer is not taken again (a list answered first
/// would pass for the call's answer). A request the agent cancelled is owed no answer (servers
/// of the TypeScript SDK send none): its stream does not hold a drain open for it, so the
/// gateway exits at once, and cleanly, instead of waiting out the grace.
#[tokio::test(flavor = "multi_thread")]
async fn a_legacy_call_keeps_its_id_and_once_cancelled_holds_no_drain() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = everything_server_in("sse").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, port) = start_binary(
        &gateway_config(
            &[("legacy", &server.url("/sse"), "sse", "")],
            "[limits]\nshutdown_grace = \"60s\"\n",
        ),
        dir.path(),
    )
    .await;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream
        .write_all(
            b"GET /servers/legacy/sse HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n",
        )
        .await
        .expect("write");
    let mut seen = Vec::new();
    let mut read_until = async |wanted: &str| {
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let text = String::from_utf8_lossy(&seen).into_owned();
                if let Some(at) = text.find(wanted) {
                    return text[at..].lines().next().unwrap_or("").to_owned();
                }
                let mut buf = [0u8; 4096];
                let n = stream.read(&mut buf).await.expect("read");
                assert!(n > 0, "stream ended: {text}");
                seen.extend_from_slice(&buf[..n]);
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {wanted} on the stream"))
    };
    let endpoint = read_until("data: /servers/legacy/message?").await[6..].to_owned();
    let post = async |body: &str| {
        let headers = [("Content-Type", "application/json")];
        let (status, head, _) = http(port, "POST", &endpoint, &headers, body.as_bytes()).await;
        assert_eq!(status, 202, "{body}: {head}");
    };
    post(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#).await;
    read_until(r#""id":1"#).await;
    post(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).await;
    post(r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"trigger-long-running-operation","arguments":{"duration":30,"steps":30}}}"#).await;
    post(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#).await;
    let refused = read_until("already waiting for an answer").await;
    assert!(refused.contains(r#""id":2"#), "{refused}");
    post(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":2,"reason":"no longer needed"}}"#).await;
    signal(&child, "-INT");
    assert_eq!(
        exit_code(
            &mut child,
            Duration::from_secs(20),
            "the drain waited for an answer that never comes"
        )
        .await,
        Some(0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_sigint_exits_at_once() {
    let server = python_server("streamable-http", None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = gateway_config(
        &[("py", &server.url("/mcp"), "streamable-http", "")],
        &format!("[limits]\nshutdown_grace = \"60s\"\n{ONE_WORKER}"),
    );
    let (mut child, port) = start_binary(&config, dir.path()).await;
    let session = session(port, "py").await;
    let _call = spawn_slow_call(port, session);
    for _ in 0..200 {
        if received(&server).await.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    signal(&child, "-INT");
    // Still draining: the 50 s call holds it open.
    assert!(
        tokio::time::timeout(Duration::from_millis(500), child.wait())
            .await
            .is_err(),
        "exited before the drain finished"
    );
    signal(&child, "-INT");
    assert_eq!(
        exit_code(&mut child, Duration::from_secs(5), "exited at once").await,
        Some(130)
    );
}

/// A second interrupt drops the launched sessions still running: their processes are killed,
/// also one that left the server's process group, and their cgroups are gone by the time the
/// binary has exited (not left to the next start's sweep).
#[tokio::test(flavor = "multi_thread")]
async fn a_second_sigint_leaves_no_launched_session_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = format!("left-behind-{}", std::process::id());
    let python = peers().join("venv/bin/python");
    let config = format!(
        "{ALLOW_ALL}[listener]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"127.0.0.1:0\"\n\
         [limits]\nshutdown_grace = \"60s\"\n{ONE_WORKER}\
         [[servers]]\nname = \"py\"\ncommand = \"sh\"\n\
         args = [\"-c\", \"setsid {py} -c 'import time; time.sleep(300)' {marker} & exec {py} {script} --transport stdio\"]\n",
        py = python.display(),
        script = peer_scripts().join("server.py").display()
    );
    let (mut child, port) = start_binary(&config, dir.path()).await;
    let session = session(port, "py").await;
    // The session's cgroup, read off the process that left the server's group.
    let mut escaped = None;
    for _ in 0..100 {
        escaped = pids_with(&marker).pop();
        if escaped.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let escaped = escaped.expect("the launched server's setsid child started");
    let cgroup = std::fs::read_to_string(format!("/proc/{escaped}/cgroup")).expect("its cgroup");
    let cgroup = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("a cgroup2 entry");
    assert!(cgroup.contains("/agentgate-launch-"), "{cgroup}");
    let dir_of_session = agentgate::ebpf::cgroup2_mount()
        .expect("cgroup2")
        .join(cgroup.trim_start_matches('/'));
    assert!(dir_of_session.exists(), "{}", dir_of_session.display());
    // A call in flight holds the drain, so that the second interrupt finds the session running.
    // Signalled once its first progress notification has come back through the gateway.
    let slow = LONG_CALL.replace(
        "\"steps\":4,\"delay\":0.5}",
        "\"steps\":100,\"delay\":0.5},\"_meta\":{\"progressToken\":\"t\"}",
    );
    let mut call = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let request = format!(
        "POST /servers/py/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nMcp-Session-Id: {session}\r\n\
         MCP-Protocol-Version: 2025-11-25\r\nContent-Length: {}\r\n\r\n{slow}",
        slow.len()
    );
    call.write_all(request.as_bytes()).await.expect("send");
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains("notifications/progress") {
            let n = call.read(&mut buf).await.expect("read");
            assert!(n > 0, "the call ended: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the call in flight");
    signal(&child, "-INT");
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&child, "-INT");
    assert_eq!(
        exit_code(&mut child, Duration::from_secs(5), "exited at once").await,
        Some(130)
    );
    assert!(
        !dir_of_session.exists(),
        "{} outlived the gateway",
        dir_of_session.display()
    );
    assert!(
        pids_with(&marker).is_empty(),
        "the setsid child outlived the gateway"
    );
}

/// The exit code of `child`, which must exit within `limit` (`what` says why it should).
async fn exit_code(child: &mut tokio::process::Child, limit: Duration, what: &str) -> Option<i32> {
    tokio::time::timeout(limit, child.wait())
        .await
        .expect(what)
        .expect("status")
        .code()
}

/// Starts a 50 s call of server "py" in `session`.
fn spawn_slow_call(port: u16, session: String) -> tokio::task::JoinHandle<(u16, String, Vec<u8>)> {
    let slow = LONG_CALL.replace("\"steps\":4,\"delay\":0.5", "\"steps\":100,\"delay\":0.5");
    tokio::spawn(async move {
        let headers = [
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
            ("Mcp-Session-Id", session.as_str()),
            ("MCP-Protocol-Version", "2025-11-25"),
        ];
        http(port, "POST", "/servers/py/mcp", &headers, slow.as_bytes()).await
    })
}

/// Processes whose command line contains `needle`.
fn pids_with(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter(|entry| {
            std::fs::read(entry.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads_the_policy_and_keeps_the_old_one_on_a_bad_file() {
    let server = python_server("streamable-http", None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let base = format!(
        "[listener]\naddress = \"127.0.0.1:0\"\n[admin]\nenabled = false\n\
         [[servers]]\nname = \"py\"\nurl = \"{}\"\n[policy]\npins_file = \"\"\n{ONE_WORKER}",
        server.url("/mcp")
    );
    let (child, port) = start_binary(&base, dir.path()).await;
    let path = dir.path().join("gw.toml");
    let live = std::fs::read_to_string(&path).expect("config");
    // No rule: initialize is refused with the rule that decided.
    let (status, _, body) = initialize(port, "py", &[]).await;
    assert_eq!(status, 200);
    let (code, message) = rpc_error(&body);
    assert_eq!(code, -32001);
    assert!(
        message.contains("no rule allows agent \"unknown\" to use initialize"),
        "{message}"
    );
    // A broken file is refused; the old policy stays.
    std::fs::write(&path, format!("{live}[[rules]]\nname = \"x\"\n")).expect("write");
    signal(&child, "-HUP");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rpc_error(&initialize(port, "py", &[]).await.2).0, -32001);
    // A good one applies.
    std::fs::write(
        &path,
        format!("{live}[[rules]]\nname = \"py-users\"\neffect = \"allow\"\nservers = [\"py\"]\n"),
    )
    .expect("write");
    signal(&child, "-HUP");
    let mut allowed = false;
    for _ in 0..50 {
        let (_, head, _) = initialize(port, "py", &[]).await;
        if head.to_ascii_lowercase().contains("mcp-session-id") {
            allowed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(allowed, "SIGHUP did not apply the new policy");
}

#[tokio::test]
async fn policy_explain_prints_the_decision_and_every_rule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.toml");
    std::fs::write(
        &path,
        "[[servers]]\nname = \"db\"\nurl = \"http://127.0.0.1:5/mcp\"\n\
         [[rules]]\nname = \"analyst-customers\"\neffect = \"allow\"\nagents = [\"analyst\"]\ntools = [\"query\"]\n\
         [[rules.params]]\npointer = \"/sql\"\nsql = { statements = [\"select\"], tables = [\"customers\"] }\n\
         [[rules]]\nname = \"no-drop\"\neffect = \"deny\"\ntools = [\"drop_*\"]\n",
    )
    .expect("write");
    let explain = |args: &[&str]| {
        let mut c = bin();
        c.args(["policy", "explain", "--config"])
            .arg(&path)
            .args(args);
        c
    };
    let out = explain(&[
        "--agent",
        "analyst",
        "--server",
        "db",
        "--tool",
        "query",
        "--args",
        r#"{"sql":"SELECT * FROM customers"}"#,
    ])
    .output()
    .await
    .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("decision: ALLOW"), "{stdout}");
    assert!(stdout.contains("rule:     analyst-customers"), "{stdout}");
    let out = explain(&[
        "--agent",
        "analyst",
        "--server",
        "db",
        "--tool",
        "query",
        "--json",
        "--args",
        r#"{"sql":"SELECT * FROM customers JOIN financials USING (id)"}"#,
    ])
    .output()
    .await
    .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["allowed"], false);
    assert_eq!(v["rule"], "default-deny");
    assert_eq!(v["mode"], "enforce");
    let rule = v["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "analyst-customers")
        .expect("the allow rule is reported");
    assert!(
        rule["outcome"]
            .as_str()
            .unwrap()
            .contains("table public.financials"),
        "{v}"
    );
    let out = explain(&[
        "--agent",
        "intern",
        "--server",
        "db",
        "--tool",
        "drop_table",
    ])
    .output()
    .await
    .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.contains("rule:     no-drop"), "{stdout}");
    let out = explain(&["--agent", "a", "--server", "nope", "--tool", "x"])
        .output()
        .await
        .expect("run");
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no server named \"nope\""));
    let out = explain(&[
        "--agent", "a", "--server", "db", "--tool", "x", "--args", "[1]",
    ])
    .output()
    .await
    .expect("run");
    assert_eq!(out.status.code(), Some(64));
    // A completion is decided as the prompt it completes, as the live gateway decides it.
    let out = explain(&[
        "--agent",
        "intern",
        "--server",
        "db",
        "--prompt",
        "drop_everything",
        "--method",
        "completion/complete",
    ])
    .output()
    .await
    .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("complete an argument of prompt \"drop_everything\""),
        "{stdout}"
    );
    for (args, why) in [
        (
            &["--method", "completion/complete"][..],
            "give --prompt NAME or --resource URI",
        ),
        (&["--method", "tools/call"][..], "give --tool NAME"),
        (
            &["--tool", "query", "--method", "prompts/get"][..],
            "does not act on a tool",
        ),
    ] {
        let out = explain(&[&["--agent", "a", "--server", "db"][..], args].concat())
            .output()
            .await
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(stderr.contains(why), "{args:?}: {stderr}");
    }
    // A deny condition on an omitted argument tests the default the pin file keeps for the
    // tool's pinned definition, and holds while it keeps none, as the gateway decides.
    let pins = dir.path().join("pins.json");
    let with_pins = dir.path().join("pinned.toml");
    std::fs::write(
        &with_pins,
        format!(
            "[[servers]]\nname = \"db\"\nurl = \"http://127.0.0.1:5/mcp\"\n\
             [policy]\npins_file = \"{}\"\n\
             [[rules]]\nname = \"all\"\neffect = \"allow\"\n\
             [[rules]]\nname = \"not-prod\"\neffect = \"deny\"\ntools = [\"query\"]\n\
             [[rules.params]]\npointer = \"/database\"\neq = \"prod\"\n",
            pins.display()
        ),
    )
    .expect("write");
    let omitted = || async {
        let out = bin()
            .args(["policy", "explain", "--config"])
            .arg(&with_pins)
            .args([
                "--agent", "a", "--server", "db", "--tool", "query", "--args", "{}",
            ])
            .output()
            .await
            .expect("run");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, stdout) = omitted().await;
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("/database was omitted"), "{stdout}");
    for (default, allowed) in [("staging", true), ("prod", false)] {
        let file = serde_json::json!({"version": 1, "servers": {"db": {"query": {
            "pinned": "aa",
            "declares": {"defaults": [["/database", default]]},
        }}}});
        std::fs::write(&pins, file.to_string()).expect("write pins");
        let (code, stdout) = omitted().await;
        assert_eq!(
            code,
            Some(if allowed { 0 } else { 1 }),
            "{default}: {stdout}"
        );
        assert!(!stdout.contains("was omitted"), "{default}: {stdout}");
    }
}

#[tokio::test]
async fn audit_verify_accepts_an_intact_log_and_names_the_first_bad_entry() {
    use agentgate::audit::{
        self, Event, Record,
        log::{Log, Rotation},
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("audit.key");
    let key = audit::load_or_create_key(&key_file).expect("key");
    let public = audit::hex(key.verifying_key().as_bytes());
    let log_dir = dir.path().join("audit");
    let mut log = Log::open(&log_dir, key, Rotation::default()).expect("open");
    let path = log_dir.join(audit::log::segment_name(0));
    for i in 0..5 {
        let mut r = Record::new(Event::Request);
        r.target = Some(format!("tool-{i}"));
        log.append(std::slice::from_mut(&mut r)).expect("append");
    }
    log.checkpoint().expect("checkpoint");
    drop(log);

    let out = bin()
        .args(["audit", "public-key", "--key-file"])
        .arg(&key_file)
        .output()
        .await
        .expect("run");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), public);

    let verify = || {
        let mut c = bin();
        c.args(["audit", "verify", "--public-key", &public, "--log"])
            .arg(&log_dir);
        c
    };
    let out = verify().output().await.expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("ok: 5 entries (0..), 1 checkpoints"),
        "{stdout}"
    );

    // Change one record's text, keeping the frame's length: the chain names it.
    let mut bytes = std::fs::read(&path).expect("read");
    let at = bytes
        .windows(6)
        .position(|w| w == b"tool-2")
        .expect("record text");
    bytes[at + 5] = b'X';
    std::fs::write(&path, &bytes).expect("write");
    let out = verify().output().await.expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAILED"), "{stdout}");
    assert!(stdout.contains("checksum mismatch"), "{stdout}");
    let out = bin()
        .args(["audit", "verify", "--public-key", "nothex", "--log"])
        .arg(&path)
        .output()
        .await
        .expect("run");
    assert_eq!(out.status.code(), Some(64)); // A log that is not there proves nothing either way: unavailable, not tampered.
    let out = bin()
        .args(["audit", "verify", "--public-key", &public, "--log"])
        .arg(dir.path().join("no-such-log"))
        .output()
        .await
        .expect("run");
    assert_eq!(out.status.code(), Some(69));
    // A log anyone could have written (a chain with no checkpoint) proves nothing.
    let made_up = dir.path().join("made-up");
    let other = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let mut log = Log::open(&made_up, other, Rotation::default()).expect("open");
    let mut r = Record::new(Event::Request);
    log.append(std::slice::from_mut(&mut r)).expect("append");
    drop(log);
    let out = bin()
        .args(["audit", "verify", "--public-key", &public, "--log"])
        .arg(&made_up)
        .output()
        .await
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("no checkpoint"), "{stdout}");
}
