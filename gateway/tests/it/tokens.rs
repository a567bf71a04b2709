//! The token service end to end: tokens from `agentgate token issue` let a real MCP client in,
//! name its agent in policy and audit, scope what it may call, and every bad token is refused
//! with 401 and the reason, never forwarded.

use std::{path::Path, process::Stdio, time::Duration};

use agentgate::{config::tokens::TokensConfig, tokens::TokenService};
use serde_json::json;

use crate::common::*;

fn tokens_section(dir: &Path) -> String {
    format!(
        "\n[tokens]\nenabled = true\nrequire = true\nkey_file = \"{0}/token.key\"\nrevoked_file = \"{0}/revoked.json\"\n",
        dir.display()
    )
}

async fn cli(args: &[&str], config: &Path) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_agentgate"))
        .args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Initialize with `Authorization: Bearer <token>`: status, head, body.
async fn initialize_with(port: u16, token: &str) -> (u16, String, Vec<u8>) {
    let auth = format!("Bearer {token}");
    initialize(port, "py", &[("Authorization", auth.as_str())]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_admit_scope_and_name_agents_and_bad_ones_get_401() {
    let server = python_server("streamable-http", None).await;
    let scratch = scratch_dir("tokens");
    let text = gateway_config(
        &[("py", &server.url("/mcp"), "streamable-http", "")],
        &format!("{}{}", tokens_section(&scratch), audit_section(&scratch)),
    );
    let config = scratch.join("gw.toml");
    std::fs::write(&config, &text).unwrap();
    let gw = gateway(&text).await;
    let port = addr(&gw).port();

    // A real MCP client with a token for the server.
    let (code, token, err) = cli(
        &["token", "issue", "--agent", "analyst", "--server", "py"],
        &config,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let url = format!("http://127.0.0.1:{port}/servers/py/mcp");
    let out = python_client_as(&url, "streamable-http", "auto", "self", None, Some(&token)).await;
    assert_eq!(out["echo"]["content"][0]["text"], "hello");
    // The upstream never saw the agent's token.
    assert!(
        received(&server)
            .await
            .iter()
            .all(|r| r["authorization"].is_null())
    );

    // No token, and a series of bad ones: 401, the reason, a challenge; nothing forwarded.
    let before = received(&server).await.len();
    let (status, head, body) = initialize(port, "py", &[]).await;
    assert_eq!(status, 401, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{head}"
    );
    assert!(rpc_error(&body).1.contains("a gateway token is required"));
    // One signature character changed (not the last, whose low bits base64 ignores).
    let mut tampered = token.clone().into_bytes();
    let at = tampered.len() - 10;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let foreign = TokenService::open(&TokensConfig {
        enabled: true,
        key_file: scratch.join("other.key"),
        ..TokensConfig::default()
    })
    .unwrap()
    .issue("analyst", None, None, None, None)
    .unwrap()
    .0;
    let elsewhere = TokenService::open(&TokensConfig {
        enabled: true,
        key_file: scratch.join("token.key"),
        audience: "another-gateway".into(),
        ..TokensConfig::default()
    })
    .unwrap()
    .issue("analyst", None, None, None, None)
    .unwrap()
    .0;
    for (bad, why) in [
        (tampered.as_str(), "signature"),
        (foreign.as_str(), "unknown key"),
        (elsewhere.as_str(), "another audience"),
        ("garbage", "not a well-formed JWT"),
    ] {
        let (status, _, body) = initialize_with(port, bad).await;
        assert_eq!(status, 401, "{why}");
        let (_, message) = rpc_error(&body);
        assert!(message.contains(why), "{why}: {message}");
    }
    let (status, _, body) = initialize(port, "py", &[("Authorization", "Basic YTpi")]).await;
    assert_eq!(status, 401);
    assert!(rpc_error(&body).1.contains("Bearer"));
    assert_eq!(
        received(&server).await.len(),
        before,
        "a refused request was forwarded"
    );

    // A token scoped to one tool cannot call another, and lists only its tool.
    let (code, scoped, _) = cli(
        &["token", "issue", "--agent", "analyst", "--tool", "echo"],
        &config,
    )
    .await;
    assert_eq!(code, 0);
    let (status, head, _) = initialize_with(port, &scoped).await;
    assert_eq!(status, 200);
    let sid = session_id(&head);
    let auth = format!("Bearer {scoped}");
    let post = |body: String| {
        let (auth, sid) = (auth.clone(), sid.clone());
        async move {
            http(
                port,
                "POST",
                "/servers/py/mcp",
                &[
                    ("Content-Type", "application/json"),
                    ("Accept", "application/json, text/event-stream"),
                    ("Mcp-Session-Id", sid.as_str()),
                    ("MCP-Protocol-Version", "2025-11-25"),
                    ("Authorization", auth.as_str()),
                ],
                body.as_bytes(),
            )
            .await
        }
    };
    let (status, _, body) = post(tool_call(5, "add", json!({"a": 1, "b": 2}))).await;
    assert_eq!(status, 200);
    let (code, message) = rpc_error(&body);
    assert_eq!(code, -32001);
    assert!(message.contains("does not cover tool \"add\""), "{message}");
    let (status, _, body) = post(tool_call(6, "echo", json!({"message": "in scope"}))).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("in scope"));
    let (status, _, body) = post(r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#.into()).await;
    assert_eq!(status, 200);
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("\"echo\"") && !text.contains("\"add\""),
        "{text}"
    );

    // Revocation takes effect within a second.
    let (code, out, err) = cli(&["token", "revoke", "--token", &scoped], &config).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("revoked "));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, _, body) = post(tool_call(8, "echo", json!({"message": "again"}))).await;
    assert_eq!(status, 401);
    assert!(rpc_error(&body).1.contains("revoked"));

    // JWKS: the admin API and the CLI publish the same key.
    let admin = gw.bound.admin.unwrap().port();
    let (status, _, body) = http(admin, "GET", "/.well-known/jwks.json", &[], b"").await;
    assert_eq!(status, 200);
    let jwks: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let (_, cli_jwks, _) = cli(&["token", "jwks"], &config).await;
    assert_eq!(
        jwks,
        serde_json::from_str::<serde_json::Value>(&cli_jwks).unwrap()
    );
    assert_eq!(jwks["keys"][0]["alg"], "EdDSA");

    gw.shutdown().await;
    // The audit log names the token's agent and id.
    let records =
        agentgate::audit::query::query(&scratch.join("audit"), &Default::default(), None).unwrap();
    let call = records
        .iter()
        .find(|r| r.target.as_deref() == Some("add") && r.request_id == Some(json!(5)))
        .unwrap();
    assert_eq!(call.agent.as_deref(), Some("analyst"), "{call:?}");
    assert_eq!(
        (call.decision.as_deref(), call.rule.as_deref()),
        (Some("deny"), Some("token-scope"))
    );
    assert!(
        call.subject
            .as_deref()
            .is_some_and(|s| s.starts_with("token:"))
    );
    assert!(records.iter().any(|r| r.status == Some(401)));
}
