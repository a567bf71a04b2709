//! Gateway-launched stdio servers (`[[servers]]` with a `command`): served through the proxy
//! like any upstream, one child per session, with secrets in the child's environment only.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{common::*, policy::client, postgres::Postgres};

fn launched_config(server: &str, scratch: &std::path::Path, extra: &str) -> String {
    format!(
        "{ALLOW_ALL}[listener]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"127.0.0.1:0\"\n{}\n{extra}\n{server}",
        audit_section(scratch)
    )
}

/// Command lines of the processes whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) && !cmdline.is_empty() {
                found.push(cmdline);
            }
        }
    }
    found
}

/// Waits (up to 8 s) until exactly `count` processes carry `marker` in their command line: a
/// launched session's shell and its server.
async fn wait_for_processes(marker: &str, count: usize) {
    let mut left = usize::MAX;
    for _ in 0..80 {
        left = processes_with(marker).len();
        if left == count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, count, "{:?}", processes_with(marker));
}

/// A gateway launching the Python test server over stdio (server "py"), its port, and a session
/// initialized on it.
async fn python_session(scratch: &str) -> (agentgate::cli::Running, u16, String) {
    let scratch = scratch_dir(scratch);
    let server = format!(
        "[[servers]]\nname = \"py\"\ncommand = \"{}\"\nargs = [\"{}\", \"--transport\", \"stdio\"]\n",
        peers().join("venv/bin/python").display(),
        peer_scripts().join("server.py").display()
    );
    let gw = gateway(&launched_config(&server, &scratch, "")).await;
    let port = addr(&gw).port();
    let (status, head, _) = initialize(port, "py", &[]).await;
    assert_eq!(status, 200, "{head}");
    let sid = session_id(&head);
    (gw, port, sid)
}

/// The audit log's segments under `scratch`, as text.
fn audit_bytes(scratch: &std::path::Path) -> String {
    String::from_utf8_lossy(&all_log_bytes(&scratch.join("audit"))).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_launched_server_holds_the_database_password_and_the_agent_cannot_read_it() {
    let password = format!(
        "pg-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let pg = Postgres::start_with(Some(&password)).await;
    // Control: without the password, PostgreSQL refuses the login the server will make.
    let refused = pg.psql_as_client(None, "SELECT 1").await;
    assert!(
        !refused.status.success(),
        "PostgreSQL must require the password"
    );
    let scratch = scratch_dir("launched-pg");
    let secret = scratch.join("db.password");
    std::fs::write(&secret, &password).unwrap();
    let script =
        peers().join("node/node_modules/@modelcontextprotocol/server-postgres/dist/index.js");
    let server = format!(
        "[[secrets]]\nname = \"db\"\nfile = \"{}\"\n\
         [[servers]]\nname = \"pg\"\ncommand = \"node\"\nargs = [\"{}\", \"postgresql://postgres@127.0.0.1:{}/postgres\"]\n\
         env = {{ PGPASSWORD = \"${{db}}\" }}\n",
        secret.display(),
        script.display(),
        pg.port
    );
    let gw = gateway(&launched_config(&server, &scratch, "")).await;
    let url = format!("http://{}/servers/pg/mcp", addr(&gw));
    // The agent warms up (imports) as root, then runs as nobody, as an agent should: from
    // then on it queries the database through the gateway and looks for the password.
    let steps = json!([
        ["list"],
        ["drop_privileges"],
        ["call", "query", {"sql": "SELECT name FROM customers ORDER BY id"}],
        ["probe", "server-postgres"]
    ]);
    let out = client(&url, steps).await;
    assert!(
        out[0]["pages"][0]
            .as_array()
            .unwrap()
            .contains(&json!("query")),
        "{out:?}"
    );
    assert_eq!(out[1]["uid"], 65534);
    let rows = out[2]["text"].as_str().unwrap_or_default();
    assert!(
        rows.contains("Ada Lovelace") && out[2]["error"] == json!(false),
        "the launched server logged in with the password it was given: {out:?}"
    );
    let probe = &out[3];
    assert_eq!(probe["uid"], 65534);
    let processes = probe["processes"].as_array().unwrap();
    assert!(
        !processes.is_empty(),
        "the agent sees the server process exist: {probe}"
    );
    for p in processes {
        assert!(
            p.get("environ").is_none(),
            "the agent read a server process's environment: {p}"
        );
        assert!(
            p["error"].as_str().unwrap().contains("PermissionError"),
            "{p}"
        );
        assert!(!p["cmdline"].as_str().unwrap().contains(&password), "{p}");
    }
    assert!(!probe["own_environ"].as_str().unwrap().contains(&password));
    let log = audit_bytes(&scratch);
    assert!(
        log.contains("SELECT name FROM customers"),
        "the call is audited"
    );
    assert!(
        !log.contains(&password),
        "the password is not in the audit log"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_session_gets_its_own_process_until_delete_or_idle_and_sessions_are_capped() {
    let scratch = scratch_dir("launched-py");
    // Through a shell: the server is the launched process's child, as with npx or uvx, and
    // once it exits the shell starts a sleeper that ignores stdin. Both must go when their
    // session does (the process group is killed). The marker finds their processes.
    //
    // Two servers, so that no step races an idle timeout it does not test: "py" (idle_timeout
    // far above the test's length) for sessions, the cap and DELETE; "pyidle" (2 s) for idling
    // out. Python servers can take seconds to start on a loaded machine.
    let marker = format!("marker-{}", std::process::id());
    let idle_marker = format!("idle-{}-m", std::process::id());
    let python = peers().join("venv/bin/python");
    let server = |name: &str, marker: &str, max_sessions: u32, idle: &str| {
        format!(
            "[[servers]]\nname = \"{name}\"\ncommand = \"sh\"\n\
             args = [\"-c\", \"{py} {script} --transport stdio --host {marker}; {py} -c 'import time; time.sleep(300)' {marker}\"]\n\
             max_sessions = {max_sessions}\nidle_timeout = \"{idle}\"\n",
            py = python.display(),
            script = peer_scripts().join("server.py").display()
        )
    };
    let servers = server("py", &marker, 2, "10m") + &server("pyidle", &idle_marker, 1, "2s");
    let gw = gateway(&launched_config(&servers, &scratch, "")).await;
    let port = addr(&gw).port();

    // A request outside any session: 400; an unknown session: 404 (the agent re-initializes).
    let call = tool_call(2, "echo", json!({"message": "hi"}));
    let (status, _, _) = http(
        port,
        "POST",
        "/servers/py/mcp",
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ],
        call.as_bytes(),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _, _) = post_in_session(port, "py", "no-such-session", &call).await;
    assert_eq!(status, 404);

    let (status, head, body) = initialize(port, "py", &[]).await;
    assert_eq!(status, 200, "{head}");
    assert!(head.contains("text/event-stream"), "{head}");
    assert!(
        String::from_utf8_lossy(&body).contains("test-server"),
        "initialize result from the child: {}",
        String::from_utf8_lossy(&body)
    );
    let first = session_id(&head);
    let (status, _, reply) = post_in_session(port, "py", &first, &call).await;
    assert_eq!(status, 200);
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.contains("\"hi\""), "{reply}");
    // Answers from the child are routed by request id: while one request waits, another with
    // its id is refused (it would take the other's answer), and the first is unharmed.
    let slow = tool_call(40, "long_running", json!({"steps": 10, "delay": 0.2}));
    let mut waiting = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let request = format!(
        "POST /servers/py/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
         Mcp-Session-Id: {first}\r\nMCP-Protocol-Version: 2025-11-25\r\n\
         Content-Length: {}\r\n\r\n{slow}",
        slow.len()
    );
    waiting.write_all(request.as_bytes()).await.unwrap();
    // Its response head is sent once the request waits for its answer.
    let mut streamed = Vec::new();
    while !streamed.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(30), waiting.read(&mut buf))
            .await
            .expect("response head in time")
            .unwrap();
        assert!(n > 0, "closed before its head");
        streamed.extend_from_slice(&buf[..n]);
    }
    let same_id = r#"{"jsonrpc":"2.0","id":40,"method":"tools/list"}"#;
    let (status, _, body) = post_in_session(port, "py", &first, same_id).await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert!(
        String::from_utf8_lossy(&body).contains("already waiting for an answer"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    tokio::time::timeout(Duration::from_secs(30), waiting.read_to_end(&mut streamed))
        .await
        .expect("the first request's answer in time")
        .unwrap();
    let (status, _, body) = parse_response(&streamed);
    assert_eq!(status, 200);
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.contains("\"id\":40") && body.contains("done 10 steps"),
        "{body}"
    );
    // Answered, the id is free again.
    let (status, _, body) = post_in_session(port, "py", &first, same_id).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("long_running"));
    // A notification is accepted (202), with no body.
    let (status, _, _) = post_in_session(
        port,
        "py",
        &first,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    )
    .await;
    assert_eq!(status, 202);

    // A streamed call: progress notifications arrive before the result, on the same stream.
    let long = tool_call(3, "long_running", json!({"steps": 3, "delay": 0.05}));
    let long = long.replace(
        "\"arguments\"",
        "\"_meta\":{\"progressToken\":\"p1\"},\"arguments\"",
    );
    let (status, _, streamed) = post_in_session(port, "py", &first, &long).await;
    assert_eq!(status, 200);
    let streamed = String::from_utf8_lossy(&streamed);
    let progress = streamed.find("notifications/progress");
    let result = streamed.find("done 3 steps");
    assert!(
        progress.is_some() && result.is_some() && progress < result,
        "{streamed}"
    );

    // The second session has its own process; a third is over max_sessions.
    let (status, head, _) = initialize(port, "py", &[]).await;
    assert_eq!(status, 200);
    let second = session_id(&head);
    assert_ne!(first, second);
    let (status, _, body) = initialize(port, "py", &[]).await;
    assert_eq!(status, 502, "{}", String::from_utf8_lossy(&body));
    let (_, message) = rpc_error(&body);
    assert!(message.contains("max_sessions = 2"), "{message}");

    // DELETE ends the first session: its id is gone.
    let (status, _, _) = http(
        port,
        "DELETE",
        "/servers/py/mcp",
        &[
            ("Mcp-Session-Id", first.as_str()),
            ("MCP-Protocol-Version", "2025-11-25"),
        ],
        b"",
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, _) = post_in_session(port, "py", &first, &call).await;
    assert_eq!(status, 404);

    // The ended session's server is gone, grandchildren included: the second's are left.
    wait_for_processes(&marker, 2).await;

    // A session idles out (idle_timeout = 2s) and its slot frees up (max_sessions = 1).
    let (status, head, _) = initialize(port, "pyidle", &[]).await;
    assert_eq!(status, 200, "{head}");
    let idle = session_id(&head);
    let (status, _, _) = initialize(port, "pyidle", &[]).await;
    assert_eq!(status, 502, "max_sessions = 1 is taken");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (status, _, _) = post_in_session(port, "pyidle", &idle, &call).await;
    assert_eq!(status, 404, "the idle session was stopped");
    let (status, head, _) = initialize(port, "pyidle", &[]).await;
    assert_eq!(status, 200, "{head}");
    wait_for_processes(&idle_marker, 2).await;

    let log = audit_bytes(&scratch);
    assert!(log.contains("\"target\":\"echo\""), "calls are audited");
}

#[tokio::test]
async fn a_launched_server_that_cannot_start_is_a_clear_error() {
    let scratch = scratch_dir("launched-missing");
    let server = "[[servers]]\nname = \"gone\"\ncommand = \"/nonexistent/mcp-server\"\n";
    let gw = gateway(&launched_config(server, &scratch, "")).await;
    let (status, _, body) = initialize(addr(&gw).port(), "gone", &[]).await;
    assert_eq!(status, 502);
    let (_, message) = rpc_error(&body);
    assert!(
        message.contains("cannot start /nonexistent/mcp-server"),
        "{message}"
    );
}

#[test]
fn launched_server_config_is_checked() {
    let err = |text: &str| {
        agentgate::config::Config::parse(text, "t.toml")
            .unwrap_err()
            .to_string()
    };
    let e = err("[[servers]]\nname = \"a\"\n");
    assert!(e.contains("needs url") && e.contains("command"), "{e}");
    let e = err("[[servers]]\nname = \"a\"\nurl = \"http://x/\"\ncommand = \"x\"\n");
    assert!(e.contains("not both"), "{e}");
    let e = err("[[servers]]\nname = \"a\"\ncommand = \"x\"\nenv = { K = \"${nope}\" }\n");
    assert!(
        e.starts_with("t.toml:4: servers.env.K:") && e.contains("nope"),
        "{e}"
    );
    let e = err("[[servers]]\nname = \"a\"\ncommand = \"x\"\nenv = { PATH = \"/x\" }\n");
    assert!(e.contains("servers.env.PATH"), "{e}");
    let e = err("[[servers]]\nname = \"a\"\nurl = \"http://x/\"\nargs = [\"y\"]\n");
    assert!(e.contains("servers.args"), "{e}");
    let e = err("[[servers]]\nname = \"a\"\ncommand = \"x\"\nca_file = \"/c.pem\"\n");
    assert!(e.starts_with("t.toml:4: servers.ca_file"), "{e}");
    let e = err("[[servers]]\nname = \"a\"\ncommand = \"x\"\nuser = \"no-such-user\"\n");
    assert!(
        e.starts_with("t.toml:4: servers.user") && e.contains("no-such-user"),
        "{e}"
    );
    let e = err("[[servers]]\nname = \"a\"\nurl = \"http://x/\"\nuser = \"nobody\"\n");
    assert!(e.contains("servers.user"), "{e}");
    let ok: Value = json!(
        agentgate::config::Config::parse(
            "[[servers]]\nname = \"a\"\ncommand = \"x\"\nargs = [\"--stdio\"]\nmax_sessions = 3\nidle_timeout = \"1m\"\n",
            "t.toml"
        )
        .unwrap()
        .servers[0]
            .transport
            .to_string()
    );
    assert_eq!(ok, json!("stdio"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_launched_servers_session_belongs_to_the_agent_that_started_it() {
    let scratch = scratch_dir("launched-owner");
    let tokens = format!(
        "\n[tokens]\nenabled = true\nrequire = true\nkey_file = \"{0}/token.key\"\nrevoked_file = \"{0}/revoked.json\"\n",
        scratch.display()
    );
    let server = format!(
        "[[servers]]\nname = \"py\"\ncommand = \"{}\"\nargs = [\"{}\", \"--transport\", \"stdio\"]\n\
         max_sessions = 3\nmax_sessions_per_agent = 1\n",
        peers().join("venv/bin/python").display(),
        peer_scripts().join("server.py").display()
    );
    let gw = gateway(&launched_config(&server, &scratch, &tokens)).await;
    let port = addr(&gw).port();
    let service = gw.gateway.tokens.as_ref().unwrap();
    let bearer = |agent: &str| {
        let (token, _) = service.issue(agent, None, None, None, None).unwrap();
        format!("Bearer {token}")
    };
    let (alice, bob) = (bearer("alice"), bearer("bob"));
    let (status, head, _) = initialize(port, "py", &[("Authorization", alice.as_str())]).await;
    assert_eq!(status, 200, "{head}");
    let sid = session_id(&head);
    let call = tool_call(2, "echo", json!({"message": "hi"}));
    let (status, _, _) =
        post_in_session_with(port, "py", &sid, &call, &[("Authorization", bob.as_str())]).await;
    assert_eq!(status, 404, "bob cannot use alice's session");
    let (status, _, _) = http(
        port,
        "DELETE",
        "/servers/py/mcp",
        &[
            ("Mcp-Session-Id", sid.as_str()),
            ("MCP-Protocol-Version", "2025-11-25"),
            ("Authorization", bob.as_str()),
        ],
        b"",
    )
    .await;
    assert_eq!(status, 404, "nor end it");
    let (status, _, reply) = post_in_session_with(
        port,
        "py",
        &sid,
        &call,
        &[("Authorization", alice.as_str())],
    )
    .await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&reply).contains("\"hi\""));
    // One session per agent here: alice's second is refused, bob still gets his.
    let (status, _, body) = initialize(port, "py", &[("Authorization", alice.as_str())]).await;
    assert_eq!(status, 502);
    assert!(rpc_error(&body).1.contains("max_sessions_per_agent = 1"));
    let (status, head, _) = initialize(port, "py", &[("Authorization", bob.as_str())]).await;
    assert_eq!(status, 200, "{head}");
}

/// A launched server's stderr is read for as long as the server runs, whatever it writes: a
/// line far over the logged length and bytes that are not UTF-8 leave its stderr open, so its
/// later writes (and the tool calls that make them) succeed.
#[tokio::test(flavor = "multi_thread")]
async fn a_launched_servers_long_or_binary_stderr_lines_do_not_break_it() {
    let (_gw, port, sid) = python_session("launched-stderr").await;
    for (i, text) in ["y".repeat(20_000), "a".into(), "b".into(), "c".into()]
        .into_iter()
        .enumerate()
    {
        let call = tool_call(2 + i as u64, "log_to_stderr", json!({ "text": text }));
        let (status, _, reply) = post_in_session(port, "py", &sid, &call).await;
        let reply = String::from_utf8_lossy(&reply);
        assert_eq!(status, 200, "{reply}");
        assert!(
            reply.contains(&format!("logged {}", text.len()))
                && !reply.contains("\"isError\":true"),
            "call {i}: {reply}"
        );
        // Time for the gateway to read (or, before, to give up on) what the call wrote.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A launched server with `user` runs as that user, with its group and none of the gateway's
/// supplementary groups: a server package cannot read what only the gateway's user may.
#[tokio::test(flavor = "multi_thread")]
async fn a_launched_server_runs_as_its_configured_user() {
    let scratch = scratch_dir("launched-user");
    let marker = format!("as-nobody-{}", std::process::id());
    // A descriptor the gateway's process holds without CLOEXEC (as one inherited from a
    // service manager would be): the server must not get it.
    let leaked_path = scratch.join("leaked-descriptor");
    std::fs::write(&leaked_path, b"gateway only").unwrap();
    let leaked_path = std::fs::canonicalize(&leaked_path).unwrap();
    let leaked = std::fs::File::open(&leaked_path).unwrap();
    {
        use std::os::fd::AsRawFd;
        let fd = leaked.as_raw_fd();
        // SAFETY: fcntl on a descriptor this test owns, flags read and written as integers.
        #[allow(unsafe_code)]
        let cleared = unsafe {
            libc::fcntl(
                fd,
                libc::F_SETFD,
                libc::fcntl(fd, libc::F_GETFD) & !libc::FD_CLOEXEC,
            )
        };
        assert_eq!(cleared, 0);
    }
    // Two commands, so that the shell stays (and keeps the marker in its command line).
    let server = format!(
        "[[servers]]\nname = \"who\"\ncommand = \"sh\"\n\
         args = [\"-c\", \"sleep 300; exit 0 # {marker}\"]\nuser = \"nobody\"\n"
    );
    let gw = gateway(&launched_config(
        &server,
        &scratch,
        "[limits]\nupstream_response_timeout = \"2s\"\n",
    ))
    .await;
    let port = addr(&gw).port();
    // The child never answers: its initialize times out, but the child is there to look at.
    let asked = tokio::spawn(async move { initialize(port, "who", &[]).await });
    wait_for_processes(&marker, 1).await;
    let shell = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .find(|entry| {
            std::fs::read(entry.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&marker))
        })
        .expect("the launched shell")
        .path();
    let status = std::fs::read_to_string(shell.join("status")).unwrap();
    let descriptors: Vec<_> = std::fs::read_dir(shell.join("fd"))
        .unwrap()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .collect();
    assert!(
        !descriptors.contains(&leaked_path),
        "the server inherited the gateway's descriptor: {descriptors:?}"
    );
    drop(leaked);
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(field("Uid:"), ["65534"; 4], "{status}");
    assert_eq!(field("Gid:"), ["65534"; 4], "{status}");
    assert!(field("Groups:").iter().all(|g| *g == "65534"), "{status}");
    let (_, _, answer) = asked.await.unwrap();
    assert!(
        String::from_utf8_lossy(&answer).contains("\"error\""),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    gw.shutdown().await;
}

/// The test process's own cgroup directory (where in-process gateways make session cgroups).
fn own_cgroup() -> std::path::PathBuf {
    let mount = agentgate::ebpf::cgroup2_mount().expect("a cgroup2 mount");
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let own = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
    mount.join(own.trim().trim_start_matches('/'))
}

/// The cgroup v2 path of process `pid`.
fn cgroup_of(pid: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
        .unwrap_or_default()
}

/// A launched server's processes live in its session's cgroup: one that leaves the process
/// group (`setsid`, as a daemonizing server does) still goes when the session ends. Session
/// cgroups a gateway that is gone left behind are killed at the next start.
#[tokio::test]
async fn what_a_launched_server_starts_goes_with_its_session_even_outside_its_group() {
    let scratch = scratch_dir("launched-setsid");
    let marker = format!("escaped-{}", std::process::id());
    let python = peers().join("venv/bin/python");
    let server = format!(
        "[[servers]]\nname = \"py\"\ncommand = \"sh\"\n\
         args = [\"-c\", \"setsid {py} -c 'import time; time.sleep(300)' {marker} & exec {py} {script} --transport stdio\"]\n",
        py = python.display(),
        script = peer_scripts().join("server.py").display()
    );
    // What a crashed gateway left: a session cgroup named for a pid no process has, holding a
    // server that runs on.
    let stale_marker = format!("stale-{}", std::process::id());
    let stale = own_cgroup().join(format!("agentgate-launch-4194303.1-{}", std::process::id()));
    let mut orphan = std::process::Command::new(&python)
        .args(["-c", "import time; time.sleep(300)", &stale_marker])
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Another test's gateway starting meanwhile may sweep it first: that kills the orphan too.
    for _ in 0..50 {
        let _ = std::fs::create_dir(&stale);
        if std::fs::write(stale.join("cgroup.procs"), orphan.id().to_string()).is_ok()
            || orphan.try_wait().unwrap().is_some()
        {
            break;
        }
    }

    let gw = gateway(&launched_config(&server, &scratch, "")).await;
    let port = addr(&gw).port();
    // The start swept the stale cgroup: its process is killed, the cgroup gone.
    let status = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(status) = orphan.try_wait().unwrap() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the stale session's server was killed");
    assert!(!status.success());
    assert!(!stale.exists(), "the stale cgroup was removed");

    let (status, head, _) = initialize(port, "py", &[]).await;
    assert_eq!(status, 200, "{head}");
    let session = session_id(&head);
    wait_for_processes(&marker, 1).await;
    let escaped = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .find(|entry| {
            std::fs::read(entry.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&marker))
        })
        .expect("the escaped process")
        .file_name()
        .to_string_lossy()
        .into_owned();
    let stat = std::fs::read_to_string(format!("/proc/{escaped}/stat")).unwrap();
    // Fields after the command's closing parenthesis: state, ppid, pgrp, session.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    assert_eq!(fields[3], escaped, "it leads its own session: {stat}");
    let cgroup = cgroup_of(&escaped);
    assert!(cgroup.contains("/agentgate-launch-"), "{cgroup}");
    let (status, _, _) = http(
        port,
        "DELETE",
        "/servers/py/mcp",
        &[
            ("Mcp-Session-Id", session.as_str()),
            ("MCP-Protocol-Version", "2025-11-25"),
        ],
        b"",
    )
    .await;
    assert_eq!(status, 200);
    wait_for_processes(&marker, 0).await;
    // Its cgroup is removed once empty.
    let dir = agentgate::ebpf::cgroup2_mount()
        .unwrap()
        .join(cgroup.trim_start_matches('/'));
    for _ in 0..100 {
        if !dir.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!dir.exists(), "{}", dir.display());
    gw.shutdown().await;
}

/// A launched server that says its tools changed while no agent stream is open (the
/// notification has nowhere to go, and is dropped) still has its tools refused until they are
/// listed again: an agent that never opened a GET stream is not judged by old definitions.
#[tokio::test(flavor = "multi_thread")]
async fn a_launched_servers_tools_changed_holds_without_a_stream_to_carry_it() {
    let (gw, port, sid) = python_session("launched-changed").await;
    let list = |id: u64| format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list"}}"#);
    let body = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    let (status, _, listed) = post_in_session(port, "py", &sid, &list(2)).await;
    assert_eq!(status, 200);
    assert!(body(listed).contains("announce_later"));
    let echo = |id: u64| tool_call(id, "echo", json!({"message": "hi"}));
    let (_, _, reply) = post_in_session(port, "py", &sid, &echo(3)).await;
    assert!(body(reply.clone()).contains("\"hi\""), "{}", body(reply));
    let announce = tool_call(4, "announce_later", json!({}));
    let (_, _, reply) = post_in_session(port, "py", &sid, &announce).await;
    assert!(
        body(reply.clone()).contains("will announce"),
        "{}",
        body(reply)
    );
    // The server says it a moment later, outside any request.
    let mut refused = String::new();
    for id in 5..45 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_, _, reply) = post_in_session(port, "py", &sid, &echo(id)).await;
        if body(reply.clone()).contains("tools/list_changed") {
            refused = body(reply);
            break;
        }
    }
    assert!(
        refused.contains("list them again"),
        "never refused: {refused}"
    );
    let (status, _, _) = post_in_session(port, "py", &sid, &list(50)).await;
    assert_eq!(status, 200);
    let (_, _, reply) = post_in_session(port, "py", &sid, &echo(51)).await;
    assert!(body(reply.clone()).contains("\"hi\""), "{}", body(reply));
    gw.shutdown().await;
}
