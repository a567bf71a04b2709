//! Real MCP clients and servers, with and without the gateway between them: the results must be
//! the same, and the upstream must see what the transport requires.

use std::{path::Path, time::Duration};

use crate::common::*;

const EVERY_STEP: [&str; 10] = [
    "protocol_version",
    "tools",
    "echo",
    "add",
    "progress_result",
    "progress_notifications",
    "resources",
    "read_resource",
    "prompts",
    "prompt",
];

fn assert_complete(result: &serde_json::Value) {
    for key in EVERY_STEP {
        assert!(
            !result[key].is_null(),
            "client result lacks {key}: {result}"
        );
    }
    assert!(
        result["progress_notifications"]
            .as_array()
            .is_some_and(|p| p.len() >= 2),
        "no progress seen: {result}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn python_client_and_server_streamable_http_same_results_through_the_gateway() {
    let (server, gw) = python_behind_gateway("").await;
    let through = format!("http://{}/servers/py/mcp", addr(&gw));

    let direct = python_client(
        &server.url("/mcp"),
        "streamable-http",
        "legacy",
        "self",
        None,
    )
    .await;
    let direct_requests = received(&server).await.len();
    let proxied = python_client(&through, "streamable-http", "legacy", "self", None).await;
    assert_complete(&direct);
    assert_eq!(direct, proxied);
    assert_eq!(proxied["echo"]["content"][0]["text"], "hello");
    assert_eq!(proxied["add"]["structuredContent"]["result"], 5);
    assert_eq!(proxied["protocol_version"], "2025-11-25");

    // The upstream saw the session flow through the gateway: session ids and protocol version
    // on later requests, the GET stream, and the DELETE that ends the session.
    let seen = received(&server).await;
    let via_gateway: Vec<_> = seen.iter().skip(direct_requests).collect();
    assert!(
        via_gateway.iter().any(|r| r["method"] == "GET"),
        "no GET stream: {seen:?}"
    );
    assert!(
        via_gateway
            .iter()
            .any(|r| r["method"] == "DELETE" && r["session_id"].is_string()),
        "no DELETE: {seen:?}"
    );
    assert!(
        via_gateway
            .iter()
            .filter(|r| r["method"] == "POST")
            .skip(1)
            .all(|r| r["protocol_version"] == "2025-11-25")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn python_client_2026_07_28_stateless_mode_passes_the_header_checks() {
    let (server, gw) = python_behind_gateway("").await;
    let through = format!("http://{}/servers/py/mcp", addr(&gw));
    let direct = python_client(
        &server.url("/mcp"),
        "streamable-http",
        "2026-07-28",
        "self",
        None,
    )
    .await;
    let direct_requests = received(&server).await.len();
    let proxied = python_client(&through, "streamable-http", "2026-07-28", "self", None).await;
    assert_complete(&direct);
    assert_eq!(proxied["protocol_version"], "2026-07-28");
    assert_eq!(direct, proxied);
    let seen = received(&server).await;
    // The gateway's requests only: the direct run sent the header itself.
    assert!(
        seen[direct_requests..]
            .iter()
            .any(|r| r["mcp_method"] == "tools/call"),
        "Mcp-Method not carried: {seen:?}"
    );
    // The client mirrored route_query's x-mcp-header arguments, and the gateway, having seen
    // the tool's schema in the listing, let the matching headers through.
    assert_eq!(
        proxied["routed"]["content"][0]["text"], "count on Zürich/3",
        "{proxied}"
    );
    let mirrored =
        serde_json::json!({"mcp-param-region": "=?base64?WsO8cmljaA==?=", "mcp-param-shard": "3"});
    let routed = seen.iter().filter(|r| r["mcp_params"] == mirrored).count();
    assert_eq!(
        routed, 2,
        "direct and proxied calls with mirrored headers: {seen:?}"
    );
}

/// A 2026-07-28 call whose `Mcp-Param-*` headers disagree with its arguments is refused by the
/// gateway itself, so that nothing between it and the server can route on a header the body
/// contradicts. The headers are checked against the tool's schema as last listed through the
/// gateway; before any listing they cannot be checked, and are refused too.
#[tokio::test(flavor = "multi_thread")]
async fn param_headers_that_disagree_with_the_arguments_never_reach_the_server() {
    let scratch = scratch_dir("param-headers");
    let (server, gw) = python_behind_gateway(&audit_section(&scratch)).await;
    let port = addr(&gw).port();
    let call = |args: &str| modern_request("tools/call", "route_query", args);
    let headers = |method: &'static str, extra: &[(&'static str, &'static str)]| {
        modern_headers(
            method,
            (method == "tools/call").then_some("route_query"),
            extra,
        )
    };
    let calls_seen = || async {
        received(&server)
            .await
            .into_iter()
            .filter(|r| r["mcp_method"] == "tools/call")
            .count()
    };
    let us = call(r#"{"region":"us","query":"q"}"#);
    let claims_eu = headers("tools/call", &[("Mcp-Param-Region", "eu")]);

    // No definition seen yet: nothing to check the header against, so it is refused with the
    // code whose recovery is to list the tools again.
    let (status, head, reply) =
        http(port, "POST", "/servers/py/mcp", &claims_eu, us.as_bytes()).await;
    let reply = String::from_utf8_lossy(&reply).into_owned();
    assert_eq!(status, 400, "{head}{reply}");
    assert!(
        reply.contains("-32020") && reply.contains("has not seen a definition of tool"),
        "{reply}"
    );
    assert_eq!(calls_seen().await, 0);
    // A GET carries no tool call to mirror.
    let (status, _, reply) = http(port, "GET", "/servers/py/mcp", &claims_eu, b"").await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&reply));
    assert!(String::from_utf8_lossy(&reply).contains("tools/call requests only"));

    let list = modern_request("tools/list", "", "");
    let (status, _, reply) = http(
        port,
        "POST",
        "/servers/py/mcp",
        &headers("tools/list", &[]),
        list.as_bytes(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&reply).contains("x-mcp-header"));

    type Headers = Vec<(&'static str, &'static str)>;
    let cases: [(&str, Headers, &str); 5] = [
        (
            r#"{"region":"us","query":"q"}"#,
            vec![("Mcp-Param-Region", "eu")],
            r#"header Mcp-Param-Region says \"eu\" but argument \"region\" in the body is \"us\""#,
        ),
        (
            r#"{"region":"eu","query":"q"}"#,
            vec![],
            r#"header Mcp-Param-Region is missing, but argument \"region\" is in the body"#,
        ),
        (
            r#"{"region":"eu","query":"q"}"#,
            vec![("Mcp-Param-Region", "eu"), ("Mcp-Param-Shard", "2")],
            r#"header Mcp-Param-Shard is present, but argument \"shard\" is absent"#,
        ),
        (
            r#"{"region":"eu","query":"q"}"#,
            vec![("Mcp-Param-Region", "eu"), ("Mcp-Param-Tenant", "acme")],
            r#"header mcp-param-tenant is not one that tool \"route_query\" declares"#,
        ),
        (
            r#"{"region":"eu","query":"q","shard":4}"#,
            vec![
                ("Mcp-Param-Region", "eu"),
                ("Mcp-Param-Shard", "=?base64?NA?="),
            ],
            "well-formed =?base64?...?= value",
        ),
    ];
    for (args, extra, want) in cases {
        let (status, head, reply) = http(
            port,
            "POST",
            "/servers/py/mcp",
            &headers("tools/call", &extra),
            call(args).as_bytes(),
        )
        .await;
        let reply = String::from_utf8_lossy(&reply).into_owned();
        assert_eq!(status, 400, "{args} {extra:?}: {head}{reply}");
        assert!(
            reply.contains("-32020") && reply.contains(want),
            "{args} {extra:?}: {reply}"
        );
    }
    assert_eq!(calls_seen().await, 0, "a refused call reached the server");

    // Headers that say what the body says go through, wrapped values included.
    let (status, _, reply) = http(
        port,
        "POST",
        "/servers/py/mcp",
        &headers(
            "tools/call",
            &[
                ("Mcp-Param-Region", "=?base64?WsO8cmljaA==?="),
                ("Mcp-Param-Shard", "4"),
            ],
        ),
        call(r#"{"region":"Zürich","query":"q","shard":4}"#).as_bytes(),
    )
    .await;
    let reply = String::from_utf8_lossy(&reply).into_owned();
    assert_eq!(status, 200, "{reply}");
    let reply: serde_json::Value = serde_json::from_str(&reply).expect("JSON reply");
    assert_eq!(
        reply["result"]["content"][0]["text"], "q on Zürich/4",
        "{reply}"
    );
    assert_eq!(calls_seen().await, 1);
    // Each refusal is in the audit log, with what was wrong.
    assert!(gw.shutdown().await);
    let log = String::from_utf8_lossy(&all_log_bytes(&scratch.join("audit"))).into_owned();
    for want in [
        "has not seen a definition of tool",
        "header Mcp-Param-Region says",
        "mcp-param-tenant is not one that tool",
    ] {
        assert!(log.contains(want), "{want} not audited: {log}");
    }
}

/// After a restart the gateway has seen no tool's schema, while a 2026-07-28 client still has
/// its listing and mirrors headers from it. The gateway refuses what it cannot check with the
/// header-mismatch code, whose recovery (list again, resend once) the real client performs: the
/// listing goes through the gateway, which then checks the resent call and lets it pass.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_recovers_when_a_restarted_gateway_has_not_seen_the_tool() {
    let server = python_server("streamable-http", None).await;
    let (text, port, _) = fixed_ports(&gateway_config(
        &[("py", &server.url("/mcp"), "streamable-http", "")],
        "",
    ));
    let gw = gateway(&text).await;
    let go = scratch_dir("relist").join("go");
    let steps = serde_json::json!([
        ["list"],
        ["wait_for", go],
        ["call", "route_query", {"region": "eu", "query": "q"}],
    ]);
    let client = tokio::process::Command::new(peers().join("venv/bin/python"))
        .arg(peer_scripts().join("policy_peer.py"))
        .args([
            "client",
            "--mode",
            "2026-07-28",
            "--steps",
            &steps.to_string(),
        ])
        .arg("--url")
        .arg(format!("http://127.0.0.1:{port}/servers/py/mcp"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("client");
    let seen = |method: &'static str| {
        let server = &server;
        async move {
            received(server)
                .await
                .into_iter()
                .filter(|r| r["mcp_method"] == method)
                .collect::<Vec<_>>()
        }
    };
    for _ in 0..600 {
        if !seen("tools/list").await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen("tools/list").await.len(), 1, "the client never listed");
    assert!(gw.shutdown().await);
    let gw = gateway(&text).await;
    std::fs::write(&go, "").unwrap();
    let out = tokio::time::timeout(Duration::from_secs(90), client.wait_with_output())
        .await
        .expect("client finished in time")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "client failed: {stderr}");
    let steps: serde_json::Value = serde_json::from_slice(&out.stdout).expect("client JSON");
    assert_eq!(steps[2]["text"], "q on eu/0", "{steps} {stderr}");
    // One more listing, through the new gateway; one call, with its header: the refused first
    // attempt never reached the server.
    assert_eq!(seen("tools/list").await.len(), 2);
    let calls = seen("tools/call").await;
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        calls[0]["mcp_params"],
        serde_json::json!({"mcp-param-region": "eu"})
    );
    gw.shutdown().await;
}

/// The legacy transport end to end. Every answer comes back on the GET stream, apart from the
/// POST that asked: the tool list is still filtered (by its shape), so the one tool a rule
/// denies is the only difference between the direct and the proxied run.
#[tokio::test(flavor = "multi_thread")]
async fn python_client_and_server_legacy_sse_transport_through_the_gateway() {
    let (server, gw) = legacy_behind_gateway().await;
    let through = format!("http://{}/servers/legacy/sse", addr(&gw));
    let mut direct = python_client(&server.url("/sse"), "sse", "legacy", "self", None).await;
    let direct_requests = received(&server).await.len();
    let proxied = python_client(&through, "sse", "legacy", "self", None).await;
    assert_complete(&direct);
    let tools = direct["tools"].as_array_mut().expect("a tool list");
    let before = tools.len();
    tools.retain(|t| t != "wipe_disk");
    assert_eq!(tools.len(), before - 1, "the server lists wipe_disk");
    assert_eq!(direct, proxied);
    // Every POST the upstream saw through the gateway went to the endpoint it announced.
    let seen = received(&server).await;
    let posts: Vec<_> = seen.iter().filter(|r| r["method"] == "POST").collect();
    assert!(posts.iter().all(|r| {
        r["path"] == "/messages/"
            && r["query"]
                .as_str()
                .is_some_and(|q| q.starts_with("session_id="))
    }));
    // The server answers each POST with 202 and a body, which the gateway reads out, so its
    // connections go back to the pool: the proxied run's POSTs share a few (the client posts
    // concurrently at times), not one connection each.
    let proxied_posts: Vec<_> = seen[direct_requests..]
        .iter()
        .filter(|r| r["method"] == "POST")
        .collect();
    let ports: std::collections::BTreeSet<String> = proxied_posts
        .iter()
        .map(|r| r["client"].to_string())
        .collect();
    assert!(proxied_posts.len() >= 9, "{proxied_posts:?}");
    assert!(
        ports.len() * 3 <= proxied_posts.len(),
        "{} connections for {} POSTs",
        ports.len(),
        proxied_posts.len()
    );
}

/// A TCP relay to `to` that passes its first connection (the gateway's legacy GET stream) for
/// good, and later ones until the first sender fires: that closes them and the listener, so new
/// connections are refused, until the second sender fires and the relay listens again. A
/// server host whose stream lives on while new connections to it fail, for a while: a network
/// fault no real server can be asked for.
async fn relay_that_breaks(
    to: u16,
) -> (
    u16,
    tokio::sync::oneshot::Sender<()>,
    tokio::sync::oneshot::Sender<()>,
) {
    async fn relay(mut inbound: tokio::net::TcpStream, to: u16) -> std::io::Result<(u64, u64)> {
        let mut outbound = tokio::net::TcpStream::connect(("127.0.0.1", to)).await?;
        tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (brk, mut broken) = tokio::sync::oneshot::channel::<()>();
    let (heal, healed) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut later = tokio::task::JoinSet::new();
        let mut first = true;
        loop {
            let (inbound, _) = tokio::select! {
                accepted = listener.accept() => accepted.unwrap(),
                _ = &mut broken => break,
            };
            if std::mem::take(&mut first) {
                tokio::spawn(relay(inbound, to));
            } else {
                later.spawn(relay(inbound, to));
            }
        }
        drop((listener, later));
        if healed.await.is_ok() {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .unwrap();
            while let Ok((inbound, _)) = listener.accept().await {
                tokio::spawn(relay(inbound, to));
            }
        }
    });
    (port, brk, heal)
}

/// How many IPv4 TCP connections on this host to `port` are established or closed only by the
/// far end (CLOSE_WAIT): the ones their owner still holds.
fn open_connections_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let remote = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(2).is_some_and(|r| r.ends_with(&remote))
                && fields.get(3).is_some_and(|st| matches!(*st, "01" | "08"))
        })
        .count()
}

/// An upstream that reads each request and then stalls: with `head`, after the head of a JSON
/// response and the first bytes of its body; without, before answering at all. A fault no real
/// server can be asked for.
async fn stalling_upstream(head: bool) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = stream.read(&mut buf).await;
                if head {
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                              Content-Length: 100\r\n\r\n{\"jsonrpc\":",
                        )
                        .await;
                }
                // Held open, never finished.
                let _ = stream.read(&mut buf).await;
                tokio::time::sleep(Duration::from_secs(120)).await;
            });
        }
    });
    port
}

/// An upstream that stops short of its response headers, or of a JSON body, gets the agent a
/// 504 naming it after `upstream_response_timeout`, not a request held for good.
#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_that_stalls_is_timed_out() {
    for head in [false, true] {
        let port = stalling_upstream(head).await;
        let gw = gateway(&gateway_config(
            &[(
                "slow",
                &format!("http://127.0.0.1:{port}/mcp"),
                "streamable-http",
                "",
            )],
            "[limits]\nupstream_response_timeout = \"1s\"\n",
        ))
        .await;
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
        let (status, _, answer) = within(
            "the gateway's answer",
            http(
                addr(&gw).port(),
                "POST",
                "/servers/slow/mcp",
                &[
                    ("Content-Type", "application/json"),
                    ("Accept", "application/json, text/event-stream"),
                ],
                body,
            ),
        )
        .await;
        let answer = String::from_utf8_lossy(&answer);
        assert_eq!(status, 504, "head sent: {head}: {answer}");
        assert!(
            answer.contains("upstream slow did not answer within 1 s"),
            "{answer}"
        );
        gw.shutdown().await;
    }
}

/// Waits for `f`, failing the test after a minute rather than hanging it (a client that died,
/// a relay that could not listen again).
async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .unwrap_or_else(|_| panic!("not within a minute: {what}"))
}

/// On the legacy transport, a POST that never reached the upstream (its connections fail while
/// the stream lives on) is answered on the stream at once: the client sees why, rather than
/// waiting out its own timeout. The POST itself gets 202, as from the server, so the client
/// goes on posting once the server is back.
#[tokio::test(flavor = "multi_thread")]
async fn a_legacy_request_that_never_left_is_answered_on_the_stream() {
    let server = python_server("sse", None).await;
    let (relay, brk, heal) = relay_that_breaks(server.port).await;
    let gw = gateway(&gateway_config(
        &[(
            "legacy",
            &format!("http://127.0.0.1:{relay}/sse"),
            "sse",
            "",
        )],
        "",
    ))
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let at = |name: &str| dir.path().join(name);
    let steps = serde_json::json!([
        ["call", "echo", {"message": "before"}],
        ["touch", at("broken")],
        ["wait_for", at("go")],
        ["call", "echo", {"message": "after"}],
        ["touch", at("healed")],
        ["wait_for", at("go on")],
        ["call", "echo", {"message": "again"}],
    ]);
    let url = format!("http://{}/servers/legacy/sse", addr(&gw));
    let client = tokio::spawn(async move { super::policy::client(&url, steps).await });
    let reached = |name: &str| {
        let path = at(name);
        async move {
            while !path.exists() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let relay_accepts = || async {
        tokio::net::TcpStream::connect(("127.0.0.1", relay))
            .await
            .is_ok()
    };
    within("the client's first call", reached("broken")).await;
    brk.send(()).expect("relay running");
    within("the relay refusing connections", async {
        while relay_accepts().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // The relay has closed the gateway's pooled connections too. Once the gateway has read
    // that end and let them go, only the stream is left, and the next POST dials (and fails)
    // rather than writing into a connection about to report its close, which would count as
    // maybe sent.
    within("the gateway letting its pooled connections go", async {
        while open_connections_to(relay) > 1 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let broke = std::time::Instant::now();
    std::fs::write(at("go"), b"").unwrap();
    within("the client's refused call", reached("healed")).await;
    // The gateway's answer, not the client's own timeout (30 s).
    assert!(
        broke.elapsed() < Duration::from_secs(25),
        "{:?}",
        broke.elapsed()
    );
    heal.send(()).expect("relay waiting");
    within("the relay listening again", async {
        while !relay_accepts().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    std::fs::write(at("go on"), b"").unwrap();
    let results = within("the client's last call", client)
        .await
        .expect("client task");
    assert_eq!(
        results[0]["text"].as_str(),
        Some("before"),
        "{}",
        results[0]
    );
    let message = results[3]["rpc_error"].as_str().unwrap_or_default();
    assert!(
        message.contains("upstream legacy unreachable"),
        "{}",
        results[3]
    );
    assert_eq!(results[6]["text"].as_str(), Some("again"), "{}", results[6]);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn legacy_posts_only_reach_endpoints_a_live_stream_announced() {
    let server = python_server("sse", None).await;
    let gw = gateway(&gateway_config(
        &[("legacy", &server.url("/sse"), "sse", "")],
        "",
    ))
    .await;
    let port = addr(&gw).port();
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let (status, _, reply) = http(
        port,
        "POST",
        "/servers/legacy/message?endpoint=%2Fmessages%2F%3Fsession_id%3Dabc",
        &[("Content-Type", "application/json")],
        body,
    )
    .await;
    assert_eq!(status, 404);
    assert!(rpc_error(&reply).1.contains("endpoint"));
    assert!(
        received(&server)
            .await
            .iter()
            .all(|r| r["method"] != "POST")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn server_everything_same_results_through_the_gateway() {
    let server = everything_server().await;
    let gw = gateway(&gateway_config(
        &[("everything", &server.url("/mcp"), "streamable-http", "")],
        "",
    ))
    .await;
    let through = format!("http://{}/servers/everything/mcp", addr(&gw));
    let direct = python_client(
        &server.url("/mcp"),
        "streamable-http",
        "legacy",
        "everything",
        None,
    )
    .await;
    let proxied = python_client(&through, "streamable-http", "legacy", "everything", None).await;
    assert_complete(&direct);
    assert_eq!(direct, proxied);
    assert_eq!(proxied["echo"]["content"][0]["text"], "Echo: hello");
    assert_eq!(
        proxied["progress_notifications"].as_array().map(Vec::len),
        Some(5)
    );

    // Metrics carry the exchange, by server and method.
    let admin = gw.bound.admin.expect("admin listener").port();
    let (status, _, body) = http(admin, "GET", "/metrics", &[], b"").await;
    assert_eq!(status, 200);
    let text = String::from_utf8(body).expect("utf-8");
    assert!(
        text.contains(r#"agentgate_requests_total{server="everything",method="tools/call"} 3"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"agentgate_request_duration_seconds_count{server="everything",method="initialize"} 1"#
        ),
        "{text}"
    );
    let (status, _, body) = http(admin, "GET", "/healthz", &[], b"").await;
    assert_eq!((status, body.as_slice()), (200, &b"ok\n"[..]));
}

/// An HTTPS server that offers HTTP/2 (Hypercorn, ALPN h2) is spoken to over HTTP/2 with
/// `http2 = true`, on one connection every request of the session shares (the GET stream
/// beside the POSTs), with the same results as the direct run; by default, HTTP/1.1.
#[tokio::test(flavor = "multi_thread")]
async fn an_https_server_offering_http2_gets_one_shared_http2_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = tls_files(dir.path());
    let server = python_peer(
        "server.py",
        &[
            "--transport".into(),
            "streamable-http".into(),
            "--certfile".into(),
            cert.clone().into(),
            "--keyfile".into(),
            key.clone().into(),
            "--http2".into(),
        ],
    )
    .await;
    let url = format!("https://127.0.0.1:{}/mcp", server.port);
    let direct = python_client(&url, "streamable-http", "legacy", "self", Some(&cert)).await;
    assert_complete(&direct);
    let direct_requests = received_over_tls(server.port, &cert).await.len();
    for (http2, version) in [("\nhttp2 = true", "2"), ("", "1.1")] {
        let extra = format!("ca_file = \"{}\"{http2}", cert.display());
        let gw = gateway(&gateway_config(
            &[("tls", &url, "streamable-http", &extra)],
            "",
        ))
        .await;
        let before = received_over_tls(server.port, &cert).await.len();
        let through = format!("http://{}/servers/tls/mcp", addr(&gw));
        let proxied = python_client(&through, "streamable-http", "legacy", "self", None).await;
        assert_eq!(direct, proxied);
        gw.shutdown().await;
        let seen = received_over_tls(server.port, &cert).await;
        let mine = &seen[before..];
        assert!(mine.iter().any(|r| r["method"] == "GET"), "{mine:?}");
        assert!(
            mine.iter().all(|r| r["http_version"] == version),
            "{mine:?}"
        );
        if version == "2" {
            let connections: std::collections::HashSet<_> =
                mine.iter().map(|r| r["client"][1].clone()).collect();
            assert_eq!(connections.len(), 1, "{mine:?}");
        }
    }
    // (The record tells versions apart: the Python client spoke HTTP/1.1 itself.)
    let seen = received_over_tls(server.port, &cert).await;
    assert!(
        seen[..direct_requests]
            .iter()
            .all(|r| r["http_version"] == "1.1"),
        "{seen:?}"
    );
}

/// The server's record of the requests it received, asked for over TLS (trusting `cert`).
async fn received_over_tls(port: u16, cert: &Path) -> Vec<serde_json::Value> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut std::fs::read(cert).unwrap().as_slice()) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    // HTTP/1.0: the body runs to the end of the connection, with no chunks to undo.
    tls.write_all(b"GET /_received HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    let at = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    serde_json::from_slice(&response[at + 4..]).expect("recorder JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn https_upstream_with_a_private_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = tls_files(dir.path());
    let server = python_server("streamable-http", Some((&cert, &key))).await;
    let url = format!("https://127.0.0.1:{}/mcp", server.port);
    let extra = format!("ca_file = \"{}\"", cert.display());
    let gw = gateway(&gateway_config(
        &[("tls", &url, "streamable-http", &extra)],
        "",
    ))
    .await;
    let through = format!("http://{}/servers/tls/mcp", addr(&gw));
    let direct = python_client(&url, "streamable-http", "legacy", "self", Some(&cert)).await;
    let proxied = python_client(&through, "streamable-http", "legacy", "self", None).await;
    assert_complete(&direct);
    assert_eq!(direct, proxied);

    // Without the CA the gateway refuses to talk to it, and says so.
    let gw2 = gateway(&gateway_config(&[("tls", &url, "streamable-http", "")], "")).await;
    let (status, _, body) = initialize(addr(&gw2).port(), "tls", &[]).await;
    assert_eq!(status, 502);
    assert!(
        rpc_error(&body).1.contains("unreachable"),
        "{}",
        String::from_utf8_lossy(&body)
    );

    // Pinned: the server's own key passes; any other pin refuses it, though its CA is trusted.
    let spki = {
        use sha2::Digest;
        use x509_parser::prelude::FromDer;
        let pem = std::fs::read(&cert).unwrap();
        let der = rustls_pemfile::certs(&mut pem.as_slice())
            .next()
            .unwrap()
            .unwrap();
        let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(&der).unwrap();
        sha2::Sha256::digest(parsed.public_key().raw)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    for (pin, works) in [(spki.clone(), true), ("ab".repeat(32), false)] {
        let extra = format!("ca_file = \"{}\"\npin_sha256 = [\"{pin}\"]", cert.display());
        let gw = gateway(&gateway_config(
            &[("tls", &url, "streamable-http", &extra)],
            "",
        ))
        .await;
        let (status, _, body) = initialize(addr(&gw).port(), "tls", &[]).await;
        if works {
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        } else {
            assert_eq!(status, 502);
            let message = rpc_error(&body).1;
            assert!(
                message.contains("pin_sha256") && message.contains(&spki),
                "{message}"
            );
        }
    }
}
