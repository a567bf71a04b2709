//! The binary as an operator meets it: config errors and exit codes, version, signals.

use std::{process::Stdio, time::Duration};

use tokio::{io::AsyncBufReadExt, process::Command};

use crate::common::*;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_agentgate"));
    c.stdin(Stdio::null()).kill_on_drop(true);
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
    let port = free_port();
    let text = config.replace(
        "127.0.0.1:0\"\n[admin]",
        &format!("127.0.0.1:{port}\"\n[admin]"),
    );
    let path = dir.join("gw.toml");
    std::fs::write(&path, text).expect("write config");
    let mut child = bin()
        .arg("run")
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.expect("read log") {
            if line.contains("agentgate is ready") {
                return;
            }
        }
        panic!("gateway exited before it was ready");
    })
    .await
    .expect("ready in time");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, port)
}

fn signal(child: &tokio::process::Child, sig: &str) {
    let pid = child.id().expect("pid").to_string();
    let ok = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .expect("kill")
        .success();
    assert!(ok);
}

const LONG_CALL: &str = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"long_running","arguments":{"steps":4,"delay":0.5}}}"#;

async fn session(port: u16) -> String {
    let (status, head, _) = initialize(port, "py", &[]).await;
    assert_eq!(status, 200, "{head}");
    head.lines()
        .find_map(|l| l.strip_prefix("mcp-session-id: "))
        .expect("session id")
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_drains_in_flight_calls_then_exits_zero() {
    let server = python_server("streamable-http", None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, port) = start_binary(
        &gateway_config(&[("py", &server.url("/mcp"), "streamable-http", "")], ""),
        dir.path(),
    )
    .await;
    let session = session(port).await;
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
    let exit = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exited")
        .expect("status");
    assert_eq!(exit.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_sigint_exits_at_once() {
    let server = python_server("streamable-http", None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = gateway_config(
        &[("py", &server.url("/mcp"), "streamable-http", "")],
        "[limits]\nshutdown_grace = \"60s\"\n",
    );
    let (mut child, port) = start_binary(&config, dir.path()).await;
    let session = session(port).await;
    let slow = LONG_CALL.replace("\"steps\":4,\"delay\":0.5", "\"steps\":100,\"delay\":0.5");
    let _call = tokio::spawn(async move {
        let headers = [
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
            ("Mcp-Session-Id", session.as_str()),
            ("MCP-Protocol-Version", "2025-11-25"),
        ];
        http(port, "POST", "/servers/py/mcp", &headers, slow.as_bytes()).await
    });
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
    let exit = tokio::time::timeout(Duration::from_secs(5), child.wait())
        .await
        .expect("exited at once")
        .expect("status");
    assert_eq!(exit.code(), Some(130));
}
