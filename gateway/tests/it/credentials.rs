//! Credential isolation seen from outside: the upstream gets the gateway's credential, never
//! the agent's, and the secret reaches neither the agent, the audit log nor the gateway's logs.

use std::{process::Stdio, time::Duration};

use tokio::io::AsyncReadExt;

use crate::common::*;

const SECRET: &str = "s3cret-upstream-token-4f1c";

#[tokio::test(flavor = "multi_thread")]
async fn the_upstream_gets_the_injected_credential_and_never_the_agents() {
    let server = python_server("streamable-http", None).await;
    let scratch = scratch_dir("credentials");
    let secret_file = scratch.join("upstream.token");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let text = gateway_config(
        &[(
            "py",
            &server.url("/mcp"),
            "streamable-http",
            "[[servers.inject]]\nheader = \"Authorization\"\nvalue = \"Bearer ${upstream}\"\n\
             [[servers.inject]]\nheader = \"X-Upstream-Key\"\nvalue = \"${upstream}\"\n",
        )],
        &format!(
            "[[secrets]]\nname = \"upstream\"\nfile = \"{}\"\n{}",
            secret_file.display(),
            audit_section(&scratch)
        ),
    );
    let gw = gateway(&text).await;
    let port = addr(&gw).port();
    let (status, head, body) =
        initialize(port, "py", &[("Authorization", "Bearer agent-token")]).await;
    assert_eq!(status, 200, "{head}");
    let sid = session_id(&head);
    let call = tool_call(2, "echo", serde_json::json!({"message": "hi"}));
    let (status, _, reply) = post_in_session(port, "py", &sid, &call).await;
    assert_eq!(status, 200);
    // A server that echoes the credential it was given: the agent gets it blanked, and so does
    // the audit log (no default pattern knows this secret's shape).
    let call = tool_call(
        3,
        "show_header",
        serde_json::json!({"name": "x-upstream-key"}),
    );
    let (status, _, echoed) = post_in_session(port, "py", &sid, &call).await;
    assert_eq!(status, 200);
    let echoed = String::from_utf8_lossy(&echoed);
    assert!(echoed.contains("x-upstream-key: [redacted]"), "{echoed}");
    for b in [&body, &reply] {
        assert!(!String::from_utf8_lossy(b).contains(SECRET));
    }
    // No copy of it is left unblanked (the SDK repeats a result as structuredContent).
    assert!(!echoed.contains(SECRET), "{echoed}");
    let seen = received(&server).await;
    assert!(seen.len() >= 2, "{seen:?}");
    for r in &seen {
        assert_eq!(r["authorization"], format!("Bearer {SECRET}"), "{r}");
    }
    gw.shutdown().await;
    let mut log = Vec::new();
    for (_, p) in agentgate::audit::log::segments(&scratch.join("audit")).unwrap() {
        log.extend(std::fs::read(p).unwrap());
    }
    assert!(!log.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()));
    assert!(!log.windows(11).any(|w| w == b"agent-token"));
}

#[tokio::test]
async fn a_missing_secret_stops_the_start_and_names_it_without_values() {
    let scratch = scratch_dir("credentials-missing");
    let other = scratch.join("other.token");
    std::fs::write(&other, SECRET).unwrap();
    let text = gateway_config(
        &[(
            "py",
            "http://127.0.0.1:9/mcp",
            "streamable-http",
            "[[servers.inject]]\nheader = \"X-Upstream-Key\"\nvalue = \"${present}\"\n\
             [[servers.inject]]\nheader = \"Authorization\"\nvalue = \"Bearer ${gone}\"\n",
        )],
        // The secret that is there is read first (secrets are read in order): its value is in
        // the gateway's memory when the missing one stops the start.
        &format!(
            "[[secrets]]\nname = \"present\"\nfile = \"{}\"\n\
             [[secrets]]\nname = \"gone\"\nfile = \"{}/absent.token\"\n{}",
            other.display(),
            scratch.display(),
            audit_section(&scratch)
        ),
    );
    let config = scratch.join("gw.toml");
    std::fs::write(&config, text).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_agentgate"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(69), "{stderr}");
    assert!(
        stderr.contains("secret \"gone\"") && stderr.contains("absent.token"),
        "{stderr}"
    );
    assert!(!stderr.contains(SECRET));
}

/// The credential a scripted upstream was given (lower-cased, as it reads the request).
fn injected_key(request: &[u8]) -> String {
    let request = String::from_utf8_lossy(request).to_ascii_lowercase();
    request
        .lines()
        .find_map(|l| l.strip_prefix("x-upstream-key: "))
        .unwrap_or("none")
        .trim()
        .to_owned()
}

/// A gateway with one server at `url` that gets SECRET injected as `X-Upstream-Key`.
async fn gateway_injecting(
    scratch: &str,
    name: &str,
    url: &str,
    transport: &str,
) -> agentgate::cli::Running {
    let scratch = scratch_dir(scratch);
    let secret_file = scratch.join("upstream.token");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let text = gateway_config(
        &[(
            name,
            url,
            transport,
            "[[servers.inject]]\nheader = \"X-Upstream-Key\"\nvalue = \"${upstream}\"\n",
        )],
        &format!(
            "[[secrets]]\nname = \"upstream\"\nfile = \"{}\"\n",
            secret_file.display()
        ),
    );
    gateway(&text).await
}

/// An upstream that echoes the credential it was given where message scrubbing does not look:
/// in its session id header and in an SSE event's id. What no real server does on purpose,
/// scripted.
async fn echoing_upstream() -> u16 {
    scripted_upstream(|request| {
        let key = injected_key(request);
        let body = format!(
            "id: {key}\ndata: {{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{{\"key\":\"{key}\"}}}}\n\n\
             id: plain-1\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{{\"level\":\"info\",\"data\":\"x\"}}}}\n\n"
        );
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nMcp-Session-Id: {key}\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_credential_echoed_in_a_session_id_or_event_id_stays_behind() {
    let port = echoing_upstream().await;
    let url = format!("http://127.0.0.1:{port}/mcp");
    let gw = gateway_injecting("credentials-echo", "echo", &url, "streamable-http").await;
    let (status, head, body) = http(
        addr(&gw).port(),
        "POST",
        "/servers/echo/mcp",
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
            ("MCP-Protocol-Version", "2025-11-25"),
        ],
        br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    )
    .await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 200, "{head}{body}");
    // The scripted server did echo it (lower-cased, as it read the request): in the data,
    // blanked as before.
    assert!(body.contains(r#""key":"[redacted]""#), "{body}");
    let echoed = SECRET.to_ascii_lowercase();
    assert!(!head.to_ascii_lowercase().contains(&echoed), "{head}");
    assert!(!body.contains(&echoed), "{body}");
    // The events themselves still arrive, and a harmless id is kept.
    assert!(
        body.contains(r#""id":1"#) && body.contains("id: plain-1"),
        "{body}"
    );
    gw.shutdown().await;
}

/// A legacy (HTTP+SSE) upstream that announces endpoints built of the credential it was given,
/// as written and percent-encoded, then a harmless one.
async fn announcing_upstream() -> u16 {
    scripted_upstream(|request| {
        let key = injected_key(request);
        let encoded: String = key.bytes().map(|b| format!("%{b:02X}")).collect();
        let body = format!(
            "event: endpoint\ndata: /messages?session_id=1&key={key}\n\n\
             event: endpoint\ndata: /messages?session_id=2&key={encoded}\n\n\
             event: endpoint\ndata: /messages?session_id=3\n\n"
        );
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_legacy_endpoint_holding_the_credential_is_not_announced() {
    let port = announcing_upstream().await;
    let url = format!("http://127.0.0.1:{port}/sse");
    let gw = gateway_injecting("credentials-endpoint", "legacy", &url, "sse").await;
    let (status, head, body) = http(
        addr(&gw).port(),
        "GET",
        "/servers/legacy/sse",
        &[("Accept", "text/event-stream")],
        b"",
    )
    .await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 200, "{head}{body}");
    // Only the harmless endpoint is announced, rewritten to the gateway's own URL.
    assert_eq!(body.matches("event: endpoint").count(), 1, "{body}");
    assert!(body.contains("session_id%3D3"), "{body}");
    let echoed = SECRET.to_ascii_lowercase();
    assert!(!body.to_ascii_lowercase().contains(&echoed), "{body}");
    assert!(
        !body.contains("session_id%3D1") && !body.contains("session_id%3D2"),
        "{body}"
    );
    gw.shutdown().await;
}
