//! The token service end to end: tokens from `agentgate token issue` let a real MCP client in,
//! name its agent in policy and audit, scope what it may call, and every bad token is refused
//! with 401 and the reason, never forwarded.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use agentgate::{cli::Running, config::tokens::TokensConfig, tokens::TokenService};
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

/// A gateway with tokens required (plus `extra`, which continues `[tokens]`) and an audit log in
/// `scratch`, in front of a Python MCP server. Returns the server, the config file written to
/// `scratch/gw.toml` (for the CLI) and the gateway.
async fn token_gateway(scratch: &Path, extra: &str) -> (Peer, PathBuf, Running) {
    let server = python_server("streamable-http", None).await;
    let text = gateway_config(
        &[("py", &server.url("/mcp"), "streamable-http", "")],
        &format!(
            "{}{extra}{}",
            tokens_section(scratch),
            audit_section(scratch)
        ),
    );
    let config = scratch.join("gw.toml");
    std::fs::write(&config, &text).unwrap();
    let gw = gateway(&text).await;
    (server, config, gw)
}

/// Writes `secret` to `scratch/admin.secret`; returns the `[tokens]` lines that make it the
/// admin secret.
fn admin_secret(scratch: &Path, secret: &str) -> String {
    std::fs::write(scratch.join("admin.secret"), format!("{secret}\n")).unwrap();
    format!(
        "admin_secret = \"admin\"\n[[secrets]]\nname = \"admin\"\nfile = \"{}/admin.secret\"\n",
        scratch.display()
    )
}

/// Initialize with `Authorization: Bearer <token>`: status, head, body.
async fn initialize_with(port: u16, token: &str) -> (u16, String, Vec<u8>) {
    let auth = format!("Bearer {token}");
    initialize(port, "py", &[("Authorization", auth.as_str())]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_admit_scope_and_name_agents_and_bad_ones_get_401() {
    let scratch = scratch_dir("tokens");
    let (server, config, gw) = token_gateway(&scratch, "").await;
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
    // RFC 6750 3.1: no credentials, no error code in the challenge.
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer realm=\"agentgate\"\r\n"),
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
    let (status, head, body) = initialize(port, "py", &[("Authorization", "Basic YTpi")]).await;
    assert_eq!(status, 401);
    assert!(rpc_error(&body).1.contains("Bearer"));
    // Another scheme is no bad token: the challenge carries no error code (RFC 6750 3.1).
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer realm=\"agentgate\"\r\n"),
        "{head}"
    );
    // A Bearer attempt without its token is a bad token.
    let (status, head, _) = initialize(port, "py", &[("Authorization", "Bearer")]).await;
    assert_eq!(status, 401);
    assert!(head.contains("error=\"invalid_token\""), "{head}");
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
            post_in_session_with(port, "py", &sid, &body, &[("Authorization", auth.as_str())]).await
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
    let revoked_jti = out.trim().trim_start_matches("revoked ").to_owned();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, _, body) = post(tool_call(8, "echo", json!({"message": "again"}))).await;
    assert_eq!(status, 401);
    assert!(rpc_error(&body).1.contains("revoked"));

    // A revocation list the gateway cannot read refuses every token, as 503 (the gateway cannot
    // tell, the token is not known bad) with Retry-After, until it is readable again.
    let revoked = scratch.join("revoked.json");
    let list = std::fs::read(&revoked).unwrap();
    std::fs::write(&revoked, b"{ not json").unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, head, body) = initialize_with(port, &token).await;
    assert_eq!(status, 503, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 1"),
        "{head}"
    );
    assert!(
        rpc_error(&body)
            .1
            .contains("the revocation list cannot be read"),
        "{}",
        rpc_error(&body).1
    );
    std::fs::write(&revoked, list).unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, head, _) = initialize_with(port, &token).await;
    assert_eq!(status, 200, "{head}");

    // An edit that takes the revocation back: the token passes again, and the log says so.
    std::fs::write(&revoked, br#"{"revoked": []}"#).unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, _, body) = post(tool_call(9, "echo", json!({"message": "back"}))).await;
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("back"));

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
    assert!(records.iter().any(|r| r.status == Some(503)));
    // Every change to the revocation list, made by the CLI or by hand, is recorded once: the
    // unreadable spell and the list written back as it was changed nothing.
    let changes: Vec<(String, bool)> = records
        .iter()
        .filter(|r| r.event == agentgate::audit::Event::TokenRevoked)
        .map(|r| {
            let d = r.detail.as_ref().unwrap();
            (
                d["jti"].as_str().unwrap().to_owned(),
                d["withdrawn"] == true,
            )
        })
        .collect();
    assert_eq!(
        changes,
        [(revoked_jti.clone(), false), (revoked_jti, true)],
        "{records:#?}"
    );
}

/// A scratch directory for `tag` and, in its `idp` folder, a test IdP's key `k1`.
async fn idp_with_key(tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let scratch = scratch_dir(tag);
    let keys = scratch.join("idp");
    std::fs::create_dir_all(&keys).unwrap();
    idp(&["keygen", "--dir", keys.to_str().unwrap(), "--kid", "k1"]).await;
    (scratch, keys)
}

/// tests/peers/idp.py with `args`; its stdout.
async fn idp(args: &[&str]) -> String {
    let mut idp = tokio::process::Command::new(peers().join("venv/bin/python"));
    idp.arg(peer_scripts().join("idp.py"))
        .args(args)
        .stdin(Stdio::null());
    stdout_of(idp).await.trim().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_external_issuers_tokens_name_agents_and_its_key_rotation_is_followed() {
    let (scratch, keys) = idp_with_key("tokens-idp").await;
    let dir = keys.to_str().unwrap();
    // The IdP publishes its JWKS over HTTP.
    let jwks_port = free_port();
    let mut jwks_server = tokio::process::Command::new(peers().join("venv/bin/python"))
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            "--directory",
            dir,
        ])
        .arg(jwks_port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_for_port(jwks_port, &mut jwks_server).await;
    let issuer = format!(
        "[[tokens.issuers]]\nissuer = \"https://idp.test\"\naudience = \"agentgate\"\n\
         jwks_url = \"http://127.0.0.1:{jwks_port}/jwks.json\"\nalgorithms = [\"RS256\"]\n\
         agent_claim = \"agent\"\nagents = [\"planner\"]\n"
    );
    let (_server, _, gw) = token_gateway(&scratch, &issuer).await;
    let port = addr(&gw).port();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut c = json!({"iss": "https://idp.test", "aud": "agentgate", "sub": "user-1",
                           "agent": "planner", "iat": now, "exp": now + 300});
        edit(&mut c);
        c.to_string()
    };
    let sign = |kid: &'static str, c: String| async move {
        idp(&["sign", "--dir", dir, "--kid", kid, "--claims", &c]).await
    };
    let good = sign("k1", claims(&|_| {})).await;
    let (status, head, _) = initialize_with(port, &good).await;
    assert_eq!(status, 200, "{head}");

    for (token, why) in [
        (
            sign("k1", claims(&|c| c["exp"] = (now - 120).into())).await,
            "expired",
        ),
        (
            sign("k1", claims(&|c| c["aud"] = "someone-else".into())).await,
            "another audience",
        ),
        (
            sign("k1", claims(&|c| c["iss"] = "https://evil.test".into())).await,
            "not trusted",
        ),
        (
            sign("k1", claims(&|c| c["agent"] = "admin".into())).await,
            "may not name here",
        ),
        // Longer-lived than max_lifetime (default 24h) allows, whatever the issuer says.
        (
            sign("k1", claims(&|c| c["exp"] = (now + 48 * 3600).into())).await,
            "more than 1day from now",
        ),
        // Also written with a fraction, which NumericDate allows.
        (
            sign(
                "k1",
                claims(&|c| c["exp"] = ((now + 48 * 3600) as f64 + 0.5).into()),
            )
            .await,
            "more than 1day from now",
        ),
        (
            sign(
                "k1",
                claims(&|c| {
                    c.as_object_mut().unwrap().remove("agent");
                }),
            )
            .await,
            "lacks the agent claim",
        ),
        (
            idp(&[
                "confuse",
                "--dir",
                dir,
                "--kid",
                "k1",
                "--claims",
                &claims(&|_| {}),
            ])
            .await,
            "HS256",
        ),
    ] {
        let (status, _, body) = initialize_with(port, &token).await;
        assert_eq!(status, 401, "{why}");
        let (_, message) = rpc_error(&body);
        assert!(message.contains(why), "{why}: {message}");
    }

    // Key rotation: a new kid is unknown until the IdP publishes it; the gateway refetches
    // (at most every 10 s) and then accepts it.
    idp(&["keygen", "--dir", dir, "--kid", "k2"]).await;
    let rotated = sign("k2", claims(&|_| {})).await;
    let (status, _, body) = initialize_with(port, &rotated).await;
    assert_eq!(status, 401);
    assert!(rpc_error(&body).1.contains("unknown key"));
    tokio::time::sleep(Duration::from_millis(10_500)).await;
    let (status, head, _) = initialize_with(port, &rotated).await;
    assert_eq!(status, 200, "{head}");

    gw.shutdown().await;
    let records =
        agentgate::audit::query::query(&scratch.join("audit"), &Default::default(), None).unwrap();
    let first = records
        .iter()
        .find(|r| r.method.as_deref() == Some("initialize") && r.status.is_none())
        .unwrap();
    assert_eq!(first.agent.as_deref(), Some("planner"));
    assert_eq!(first.subject.as_deref(), Some("https://idp.test#user-1"));
}

/// Claims an external issuer's token carries, for agent "planner", valid for five minutes.
fn planner_claims() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    json!({"iss": "https://idp.test", "aud": "agentgate", "sub": "user-1",
           "agent": "planner", "iat": now, "exp": now + 300})
    .to_string()
}

/// An issuer configured with `require_at_jwt` gets only tokens typed as access tokens (RFC
/// 9068) through: PyJWT's default `typ: JWT`, which its ID tokens carry too, is refused; the
/// same claims typed `at+jwt` pass. Without the setting both pass.
#[tokio::test(flavor = "multi_thread")]
async fn an_issuer_that_types_its_access_tokens_gets_no_other_jwt_through() {
    let (scratch, keys) = idp_with_key("tokens-at-jwt").await;
    let dir = keys.to_str().unwrap();
    let claims = planner_claims();
    let plain = idp(&["sign", "--dir", dir, "--kid", "k1", "--claims", &claims]).await;
    let typed = idp(&[
        "sign", "--dir", dir, "--kid", "k1", "--claims", &claims, "--typ", "at+jwt",
    ])
    .await;
    for (required, plain_status) in [(true, 401), (false, 200)] {
        let issuer = format!(
            "[[tokens.issuers]]\nissuer = \"https://idp.test\"\naudience = \"agentgate\"\n\
             jwks_file = \"{}\"\nalgorithms = [\"RS256\"]\nagent_claim = \"agent\"\n\
             agents = [\"planner\"]\nrequire_at_jwt = {required}\n",
            keys.join("jwks.json").display()
        );
        let (_server, _, gw) = token_gateway(&scratch, &issuer).await;
        let port = addr(&gw).port();
        let (status, _, body) = initialize_with(port, &plain).await;
        assert_eq!(status, plain_status, "{}", String::from_utf8_lossy(&body));
        if required {
            let message = rpc_error(&body).1;
            assert!(
                message.contains("\"JWT\"") && message.contains("at+jwt"),
                "{message}"
            );
        }
        let (status, head, _) = initialize_with(port, &typed).await;
        assert_eq!(status, 200, "{head}");
        gw.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_issuers_withdrawn_key_stops_verifying_once_its_keys_are_older_than_jwks_max_age() {
    let scratch = scratch_dir("tokens-jwks-age");
    let (keys, elsewhere) = (scratch.join("idp"), scratch.join("idp-elsewhere"));
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    let (dir, other) = (keys.to_str().unwrap(), elsewhere.to_str().unwrap());
    idp(&["keygen", "--dir", dir, "--kid", "k1"]).await;
    idp(&["keygen", "--dir", dir, "--kid", "k2"]).await;
    // A key the gateway's JWKS never held.
    idp(&["keygen", "--dir", other, "--kid", "k3"]).await;
    let claims = planner_claims();
    let k1 = idp(&["sign", "--dir", dir, "--kid", "k1", "--claims", &claims]).await;
    let k2 = idp(&["sign", "--dir", dir, "--kid", "k2", "--claims", &claims]).await;
    let k3 = idp(&["sign", "--dir", other, "--kid", "k3", "--claims", &claims]).await;
    let jwks = keys.join("jwks.json");
    let issuer = format!(
        "[[tokens.issuers]]\nissuer = \"https://idp.test\"\naudience = \"agentgate\"\n\
         jwks_file = \"{}\"\nalgorithms = [\"RS256\"]\nagent_claim = \"agent\"\n\
         agents = [\"planner\"]\njwks_max_age = \"1s\"\n",
        jwks.display()
    );
    let (_server, _, gw) = token_gateway(&scratch, &issuer).await;
    let port = addr(&gw).port();
    for token in [&k1, &k2] {
        let (status, head, _) = initialize_with(port, token).await;
        assert_eq!(status, 200, "{head}");
    }

    // The issuer withdraws k1: once the cached keys are a second old they are read again, and
    // k1 no longer verifies. (Before jwks_max_age, a cached key was trusted for good.)
    let mut set: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&jwks).unwrap()).unwrap();
    set["keys"]
        .as_array_mut()
        .unwrap()
        .retain(|k| k["kid"] != "k1");
    std::fs::write(&jwks, set.to_string()).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, _, body) = initialize_with(port, &k1).await;
    assert_eq!(status, 401);
    assert!(
        rpc_error(&body).1.contains("unknown key"),
        "{}",
        rpc_error(&body).1
    );
    let (status, head, _) = initialize_with(port, &k2).await;
    assert_eq!(status, 200, "{head}");

    // Keys that cannot be read any more: the cached ones still serve (an unreachable issuer
    // does not lock every agent out), and a key the gateway never had gets 503, not 401: the
    // gateway cannot tell whether it is genuine.
    std::fs::remove_file(&jwks).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, head, _) = initialize_with(port, &k2).await;
    assert_eq!(status, 200, "{head}");
    let (status, head, body) = initialize_with(port, &k3).await;
    assert_eq!(status, 503, "{head}");
    assert!(
        rpc_error(&body)
            .1
            .contains("the issuer's keys cannot be fetched"),
        "{}",
        rpc_error(&body).1
    );
    // But not for good: past four times jwks_max_age, stale keys serve no more.
    tokio::time::sleep(Duration::from_millis(4000)).await;
    let (status, head, _) = initialize_with(port, &k2).await;
    assert_eq!(status, 503, "{head}");
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_issues_tokens_only_to_callers_with_the_admin_secret() {
    let scratch = scratch_dir("tokens-admin");
    let extra = admin_secret(&scratch, "adm1n-s3cret-0123456789");
    let (_server, _, gw) = token_gateway(&scratch, &extra).await;
    let admin = gw.bound.admin.unwrap().port();
    let ask = br#"{"agent":"ci-bot","servers":["py"],"tools":["echo"],"ttl":"5m"}"#;
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer adm1n-s3cret-012345678"),
        Some("adm1n-s3cret-0123456789"),
    ] {
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = auth {
            headers.push(("Authorization", a));
        }
        let (status, _, _) = http(admin, "POST", "/tokens", &headers, ask).await;
        assert_eq!(status, 401, "{auth:?}");
    }
    // The scheme in any case, as on the proxy's listener.
    let (status, _, body) = http(
        admin,
        "POST",
        "/tokens",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", "bearer  adm1n-s3cret-0123456789"),
        ],
        ask,
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let good = [
        ("Content-Type", "application/json"),
        ("Authorization", "Bearer adm1n-s3cret-0123456789"),
    ];
    let (status, _, body) = http(
        admin,
        "POST",
        "/tokens",
        &good,
        br#"{"agent":"x","servers":["nope"]}"#,
    )
    .await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let (status, _, body) = http(
        admin,
        "POST",
        "/tokens",
        &good,
        br#"{"agent":"x","ttl":"9h"}"#,
    )
    .await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let (status, _, body) = http(admin, "POST", "/tokens", &good, ask).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let issued: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(issued["claims"]["sub"], "ci-bot");
    let token = issued["token"].as_str().unwrap();
    let (status, head, _) = initialize_with(addr(&gw).port(), token).await;
    assert_eq!(status, 200, "{head}");
    // A caller that keeps guessing is stopped: five wrong secrets in a minute, and even the
    // right one is not looked at.
    for _ in 0..5 {
        let wrong = [("Authorization", "Bearer adm1n-s3cret-0123456788")];
        let (status, _, _) = http(admin, "POST", "/tokens", &wrong, ask).await;
        assert_eq!(status, 401);
    }
    let (status, head, body) = http(admin, "POST", "/tokens", &good, ask).await;
    assert_eq!(status, 429, "{}", String::from_utf8_lossy(&body));
    assert!(
        head.to_ascii_lowercase().contains("retry-after: "),
        "{head}"
    );
    assert!(
        String::from_utf8_lossy(&body).contains("too many wrong admin secrets"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    // A caller that keeps trying is refused on, but fills the log no further.
    for _ in 0..3 {
        let (status, _, _) = http(admin, "POST", "/tokens", &good, ask).await;
        assert_eq!(status, 429);
    }
    // Reading the log over the admin API is recorded too.
    let (status, _, _) = http(admin, "GET", "/audit/query?agent=ci-bot", &[], b"").await;
    assert_eq!(status, 200);
    gw.shutdown().await;
    let records =
        agentgate::audit::query::query(&scratch.join("audit"), &Default::default(), None).unwrap();
    let event = records
        .iter()
        .find(|r| r.event == agentgate::audit::Event::TokenIssued)
        .expect("the issuance is audited");
    assert_eq!(event.detail.as_ref().unwrap()["agent"], "ci-bot");
    // Every refused attempt is recorded, with the caller's user (root here).
    let refused = |reason: &str| {
        records
            .iter()
            .filter(|r| r.event == agentgate::audit::Event::AdminRefused)
            .filter(|r| {
                let d = r.detail.as_ref().unwrap();
                d["reason"] == reason && d["path"] == "/tokens" && d["uid"] == 0
            })
            .count()
    };
    assert_eq!(refused("no admin secret"), 2);
    assert_eq!(refused("wrong admin secret"), 7);
    assert_eq!(refused("too many wrong admin secrets; not checked"), 1);
    let all: Vec<_> = records
        .iter()
        .filter(|r| r.event == agentgate::audit::Event::AdminRefused)
        .collect();
    assert_eq!(all.len(), 10, "at most ten refusals a minute are recorded");
    assert!(all[9].detail.as_ref().unwrap()["more_not_recorded"].is_string());
    let read = records
        .iter()
        .find(|r| r.event == agentgate::audit::Event::AuditRead)
        .expect("the read is audited");
    assert_eq!(read.detail.as_ref().unwrap()["query"], "agent=ci-bot");
    assert_eq!(read.detail.as_ref().unwrap()["uid"], 0);
    let raw: Vec<u8> = agentgate::audit::log::segments(&scratch.join("audit"))
        .unwrap()
        .into_iter()
        .flat_map(|(_, p)| std::fs::read(p).unwrap())
        .collect();
    assert!(!raw.windows(12).any(|w| w == b"adm1n-s3cret"));
}

/// A request refused before its body was read (a missing token, a wrong admin secret) leaves
/// the connection usable, as HTTP clients expect after a 401: the gateway reads the body that
/// comes after the head, and closes the connection (saying so) only when it does not come.
#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_before_the_body_keeps_the_connection_usable() {
    use tokio::io::AsyncWriteExt;
    let scratch = scratch_dir("tokens-unread");
    let extra = admin_secret(&scratch, "adm1n-s3cret-0123456789");
    let (server, _, gw) = token_gateway(&scratch, &extra).await;
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    for (port, path, next) in [
        (
            addr(&gw).port(),
            "/servers/py/mcp",
            "GET /servers/nowhere/mcp",
        ),
        (gw.bound.admin.unwrap().port(), "/tokens", "GET /healthz"),
    ] {
        // The body comes well after the head, as it may from a client that writes them apart.
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        stream
            .write_all(head_of(path, body.len()).as_bytes())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        stream.write_all(body).await.unwrap();
        let (status, head, _) = read_response(&mut stream).await.expect("an answer");
        assert_eq!(status, 401, "{path}: {head}");
        assert!(
            !head.to_ascii_lowercase().contains("connection: close"),
            "{path}: {head}"
        );
        stream
            .write_all(format!("{next} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let (status, head, _) = read_response(&mut stream)
            .await
            .unwrap_or_else(|| panic!("{path}: the connection was closed after the 401"));
        assert_eq!(
            status,
            if path == "/tokens" { 200 } else { 401 },
            "{next}: {head}"
        );

        // A body that never comes: the refusal says the connection closes, and it does.
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        stream
            .write_all(head_of(path, 100).as_bytes())
            .await
            .unwrap();
        stream.write_all(b"{").await.unwrap();
        let (status, head, _) = read_response(&mut stream).await.expect("an answer");
        assert_eq!(status, 401, "{path}: {head}");
        assert!(
            head.to_ascii_lowercase().contains("connection: close"),
            "{path}: {head}"
        );
        assert!(
            read_response(&mut stream).await.is_none(),
            "{path}: still open"
        );
    }
    assert!(received(&server).await.is_empty());
}

fn head_of(path: &str, len: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nContent-Length: {len}\r\n\r\n"
    )
}

/// An admin secret short enough to guess is refused at start, naming the key.
#[tokio::test(flavor = "multi_thread")]
async fn a_short_admin_secret_is_refused_at_start() {
    let scratch = scratch_dir("tokens-admin-short");
    let server = python_server("streamable-http", None).await;
    let text = gateway_config(
        &[("py", &server.url("/mcp"), "streamable-http", "")],
        &format!(
            "{}{}{}",
            tokens_section(&scratch),
            admin_secret(&scratch, "adm1n-s3cret"),
            audit_section(&scratch)
        ),
    );
    let config = agentgate::config::Config::parse(&text, "test.toml").unwrap();
    let error = agentgate::cli::start(config)
        .await
        .map(|_| ())
        .expect_err("a 12-byte admin secret is refused")
        .to_string();
    assert!(
        error.contains("tokens.admin_secret") && error.contains("12 bytes; at least 16"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_can_pin_a_tools_arguments() {
    let scratch = scratch_dir("tokens-args");
    let (_server, config, gw) = token_gateway(&scratch, "").await;
    let port = addr(&gw).port();
    let (code, _, err) = cli(
        &["token", "issue", "--agent", "a", "--arg", "echo-no-slash=x"],
        &config,
    )
    .await;
    assert_eq!(code, 64, "{err}");
    let (code, token, err) = cli(
        &[
            "token",
            "issue",
            "--agent",
            "a",
            "--arg",
            "echo:/message=hello",
            "--arg",
            "echo:/message=hi",
        ],
        &config,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let (status, head, _) = initialize_with(port, &token).await;
    assert_eq!(status, 200);
    let sid = session_id(&head);
    let auth = format!("Bearer {token}");
    let call = |message: &'static str| {
        let (auth, sid) = (auth.clone(), sid.clone());
        async move {
            let body = tool_call(1, "echo", json!({"message": message}));
            post_in_session_with(port, "py", &sid, &body, &[("Authorization", auth.as_str())]).await
        }
    };
    for ok in ["hello", "hi"] {
        let (status, _, body) = call(ok).await;
        assert_eq!(status, 200);
        assert!(String::from_utf8_lossy(&body).contains(ok));
    }
    let (status, _, body) = call("rm -rf /").await;
    assert_eq!(status, 200);
    let (code, message) = rpc_error(&body);
    assert_eq!(code, -32001);
    assert!(message.contains("only with /message one of"), "{message}");
    gw.shutdown().await;
}

/// A token for `agent` on `server`, from `agentgate token issue`.
async fn issue(config: &Path, agent: &str, server: &str) -> String {
    let (code, token, err) = cli(
        &["token", "issue", "--agent", agent, "--server", server],
        config,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    token
}

/// `Authorization` values for agents alice and bob on `server`.
async fn alice_and_bob(config: &Path, server: &str) -> (String, String) {
    let alice = issue(config, "alice", server).await;
    let bob = issue(config, "bob", server).await;
    (format!("Bearer {alice}"), format!("Bearer {bob}"))
}

/// A session the upstream opened for one agent is that agent's alone. Another agent presenting
/// its id gets 404 on POST, GET and DELETE, and none of it reaches the upstream; an id the
/// upstream never issued gets 404 too. The owner's session goes on working.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_belongs_to_the_agent_it_was_opened_for() {
    let scratch = scratch_dir("sessions");
    let (server, config, gw) = token_gateway(&scratch, "").await;
    let port = addr(&gw).port();
    let (alice, bob) = alice_and_bob(&config, "py").await;
    let (alice, bob) = (alice.as_str(), bob.as_str());
    let (status, head, _) = initialize(port, "py", &[("Authorization", alice)]).await;
    assert_eq!(status, 200, "{head}");
    let session = session_id(&head);
    let ping = br#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#;
    let send = |method: &'static str, token: &str, session: &str| {
        let headers = [
            ("Authorization", token.to_owned()),
            ("Mcp-Session-Id", session.to_owned()),
            ("MCP-Protocol-Version", "2025-11-25".to_owned()),
            ("Content-Type", "application/json".to_owned()),
            ("Accept", "application/json, text/event-stream".to_owned()),
        ];
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let body: &[u8] = if method == "POST" { ping } else { b"" };
            http(port, method, "/servers/py/mcp", &headers, body).await
        }
    };
    let seen = received(&server).await.len();
    for method in ["POST", "GET", "DELETE"] {
        let (status, _, body) = send(method, bob, &session).await;
        assert_eq!(status, 404, "bob's {method}");
        let (_, message) = rpc_error(&body);
        assert!(message.contains("unknown or expired session"), "{message}");
    }
    let (status, _, _) = send("POST", alice, "not-a-session-the-upstream-issued").await;
    assert_eq!(status, 404);
    assert_eq!(
        received(&server).await.len(),
        seen,
        "nothing refused reached the upstream"
    );
    let (status, _, body) = send("POST", alice, &session).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains(r#""result":{}"#));
    let (status, _, _) = send("DELETE", alice, &session).await;
    assert!((200..300).contains(&status), "{status}");
    let (status, _, _) = send("POST", alice, &session).await;
    assert_eq!(status, 404, "ended, so forgotten");
    gw.shutdown().await;
}

/// On the legacy transport, the endpoint a stream announced is its agent's alone: another
/// agent posting to it gets 404 and the upstream sees nothing; the owner's POST goes through.
#[tokio::test(flavor = "multi_thread")]
async fn a_legacy_endpoint_belongs_to_the_agent_whose_stream_announced_it() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let scratch = scratch_dir("legacy-sessions");
    let server = python_server("sse", None).await;
    let text = gateway_config(
        &[("legacy", &server.url("/sse"), "sse", "")],
        &format!("{}{}", tokens_section(&scratch), audit_section(&scratch)),
    );
    let config = scratch.join("gw.toml");
    std::fs::write(&config, &text).unwrap();
    let gw = gateway(&text).await;
    let port = addr(&gw).port();
    let (alice, bob) = alice_and_bob(&config, "legacy").await;
    let (alice, bob) = (alice.as_str(), bob.as_str());
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream
        .write_all(
            format!(
                "GET /servers/legacy/sse HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\
                 Authorization: {alice}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut seen = Vec::new();
    let endpoint = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "stream ended: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen);
            if let Some(at) = text.find("data: /servers/legacy/message?")
                && let Some(end) = text[at..].find('\n')
            {
                return text[at + 6..at + end].trim().to_owned();
            }
        }
    })
    .await
    .expect("the endpoint event");
    let ping = br#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#;
    let post = |token: &str| {
        let token = token.to_owned();
        let endpoint = endpoint.clone();
        async move {
            http(
                port,
                "POST",
                &endpoint,
                &[
                    ("Authorization", token.as_str()),
                    ("Content-Type", "application/json"),
                ],
                ping,
            )
            .await
        }
    };
    let (status, _, body) = post(bob).await;
    assert_eq!(status, 404);
    assert!(rpc_error(&body).1.contains("endpoint"));
    let posts = |r: &Vec<serde_json::Value>| r.iter().filter(|r| r["method"] == "POST").count();
    assert_eq!(
        posts(&received(&server).await),
        0,
        "bob's POST was not forwarded"
    );
    let (status, _, _) = post(alice).await;
    assert_eq!(status, 202);
    assert_eq!(posts(&received(&server).await), 1);
    drop(stream);
    gw.shutdown().await;
}

/// A stream outlives the request whose token was checked: once the token is revoked, the stream
/// ends, and nothing more of it (here: the rest of a long tool call's progress and its result)
/// reaches the agent.
#[tokio::test(flavor = "multi_thread")]
async fn revoking_a_token_ends_the_streams_it_opened() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let scratch = scratch_dir("tokens-stream");
    let (_server, config, gw) = token_gateway(&scratch, "").await;
    let port = addr(&gw).port();
    let token = issue(&config, "alice", "py").await;
    let bearer = format!("Bearer {token}");
    let (status, head, _) = initialize(port, "py", &[("Authorization", bearer.as_str())]).await;
    assert_eq!(status, 200, "{head}");
    let sid = session_id(&head);
    // Progress for 8 s, then the result, all on the POST's SSE stream.
    let call = json!({
        "jsonrpc": "2.0", "id": 5, "method": "tools/call",
        "params": {
            "name": "long_running",
            "arguments": {"steps": 40, "delay": 0.2},
            "_meta": {"progressToken": "p"},
        },
    })
    .to_string();
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let request = format!(
        "POST /servers/py/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Authorization: {bearer}\r\nMcp-Session-Id: {sid}\r\nMCP-Protocol-Version: 2025-11-25\r\n\
         Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n\
         Content-Length: {}\r\n\r\n{call}",
        call.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while !String::from_utf8_lossy(&seen).contains("notifications/progress") {
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "ended early: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("the first progress notification");
    let (code, out, err) = cli(&["token", "revoke", "--token", &token], &config).await;
    assert_eq!(code, 0, "{out} {err}");
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut seen))
        .await
        .expect("the stream ended")
        .unwrap();
    let text = String::from_utf8_lossy(&seen);
    let progress = text.matches("notifications/progress").count();
    assert!(progress < 40, "{progress} progress notifications: {text}");
    assert!(
        !text.contains(r#""result""#),
        "the result came through: {text}"
    );
    gw.shutdown().await;
}

/// The CLI never makes the signing key: with `tokens.key_file` mistyped (or before the
/// gateway's first start) it says so instead of minting tokens and printing keys the gateway
/// knows nothing of. Revoking by id needs no key at all.
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_uses_the_gateways_key_and_never_makes_one() {
    let scratch = scratch_dir("tokens-no-key");
    let text = gateway_config(
        &[("py", "http://127.0.0.1:9/mcp", "streamable-http", "")],
        &tokens_section(&scratch),
    );
    let config = scratch.join("gw.toml");
    std::fs::write(&config, text).unwrap();
    for args in [
        &["token", "jwks"][..],
        &["token", "issue", "--agent", "a"][..],
        &[
            "token",
            "revoke",
            "--token",
            "eyJhbGciOiJFZERTQSJ9.e30.c2ln",
        ][..],
    ] {
        let (code, out, err) = cli(args, &config).await;
        assert_eq!(code, 69, "{args:?}: {out}{err}");
        assert!(err.contains("no signing key there"), "{err}");
        assert!(!scratch.join("token.key").exists(), "{args:?} made a key");
    }
    let (code, out, err) = cli(&["token", "revoke", "--jti", "t-123"], &config).await;
    assert_eq!(code, 0, "{out}{err}");
    let list = std::fs::read_to_string(scratch.join("revoked.json")).unwrap();
    assert!(list.contains("t-123"), "{list}");
    assert!(!scratch.join("token.key").exists());
}

/// A valid token for other servers gets 403 with RFC 6750's insufficient_scope challenge (as
/// MCP's authorization rules ask), and nothing reaches the server.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_for_other_servers_gets_403_insufficient_scope() {
    let scratch = scratch_dir("tokens-scope");
    let (server, _config, gw) = token_gateway(&scratch, "").await;
    let port = addr(&gw).port();
    let (elsewhere, _) = TokenService::open(&TokensConfig {
        enabled: true,
        key_file: scratch.join("token.key"),
        ..TokensConfig::default()
    })
    .unwrap()
    .issue("analyst", Some(vec!["elsewhere".into()]), None, None, None)
    .unwrap();
    let (status, head, body) = initialize_with(port, &elsewhere).await;
    assert_eq!(status, 403, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer realm=\"agentgate\", error=\"insufficient_scope\""),
        "{head}"
    );
    assert!(rpc_error(&body).1.contains("does not cover server \"py\""));
    assert!(received(&server).await.is_empty());
    gw.shutdown().await;
}

/// With tokens required, a caller without a good token cannot tell which server names exist:
/// an unknown name gets the same 401 as a known one; with a good token it is 404.
#[tokio::test(flavor = "multi_thread")]
async fn server_names_are_not_told_to_callers_without_a_good_token() {
    let scratch = scratch_dir("tokens-names");
    let (_server, config, gw) = token_gateway(&scratch, "").await;
    let port = addr(&gw).port();
    let token = issue(&config, "analyst", "py").await;
    let good = format!("Bearer {token}");
    for path in ["/servers/py/mcp", "/servers/nope/mcp"] {
        for auth in [None, Some("Bearer not-a-token")] {
            let mut headers = vec![
                ("Content-Type", "application/json"),
                ("Accept", "application/json, text/event-stream"),
            ];
            headers.extend(auth.map(|a| ("Authorization", a)));
            let (status, head, _) = http(port, "POST", path, &headers, INITIALIZE.as_bytes()).await;
            assert_eq!(status, 401, "{path} {auth:?}: {head}");
        }
    }
    let (status, _, body) = http(
        port,
        "POST",
        "/servers/nope/mcp",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", good.as_str()),
        ],
        INITIALIZE.as_bytes(),
    )
    .await;
    assert_eq!(status, 404);
    assert!(rpc_error(&body).1.contains("nope"));
    gw.shutdown().await;
}

/// With `tokens.resource`, an MCP client that gets a 401 finds where to log in as the Python
/// SDK's OAuth client looks (RFC 9728): the challenge points to the metadata, which the SDK
/// validates and whose resource covers the server's URL; the root well-known URI it falls back
/// to serves it too, without a token, and nothing reaches the server.
#[tokio::test(flavor = "multi_thread")]
async fn a_401_points_mcp_clients_to_the_protected_resource_metadata() {
    let scratch = scratch_dir("tokens-prm");
    let keys = scratch.join("idp");
    std::fs::create_dir_all(&keys).unwrap();
    idp(&["keygen", "--dir", keys.to_str().unwrap(), "--kid", "k1"]).await;
    let server = python_server("streamable-http", None).await;
    let text = gateway_config(
        &[("py", &server.url("/mcp"), "streamable-http", "")],
        &format!(
            "{}resource = \"http://127.0.0.1:PORT/\"\n\
             [[tokens.issuers]]\nissuer = \"https://login.example\"\naudience = \"http://127.0.0.1:PORT/\"\n\
             jwks_file = \"{}/jwks.json\"\nalgorithms = [\"RS256\"]\n\
             [[tokens.issuers]]\nissuer = \"corp-sso\"\naudience = \"agentgate\"\n\
             jwks_file = \"{}/jwks.json\"\nalgorithms = [\"RS256\"]\n{}",
            tokens_section(&scratch),
            keys.display(),
            keys.display(),
            audit_section(&scratch)
        ),
    );
    let (text, port, _) = fixed_ports(&text);
    let gw = gateway(&text.replace("PORT", &port.to_string())).await;
    let server_url = format!("http://127.0.0.1:{port}/servers/py/mcp");
    let mut discover = tokio::process::Command::new(peers().join("venv/bin/python"));
    discover
        .arg(peer_scripts().join("discover.py"))
        .arg(&server_url)
        .stdin(Stdio::null());
    let out: serde_json::Value = serde_json::from_str(&stdout_of(discover).await).unwrap();
    assert_eq!(out["status"], 401, "{out}");
    let root = format!("http://127.0.0.1:{port}/.well-known/oauth-protected-resource");
    assert_eq!(out["hint"], json!(root), "{out}");
    let expected = json!({
        "resource": format!("http://127.0.0.1:{port}/"),
        "authorization_servers": ["https://login.example"],
        "bearer_methods_supported": ["header"],
        "allowed": true,
    });
    // A client that ignores the header finds it too: the path-inserted URI it tries first is
    // not served (a document there would have to name that URL as its resource), the root is.
    let inserted =
        format!("http://127.0.0.1:{port}/.well-known/oauth-protected-resource/servers/py/mcp");
    assert_eq!(
        out["without_hint"]["tried"],
        json!([[inserted, 404], [root, 200]]),
        "{out}"
    );
    for how in ["with_hint", "without_hint"] {
        let found = &out[how];
        assert_eq!(found["url"], json!(root), "{how}: {out}");
        for key in [
            "resource",
            "authorization_servers",
            "bearer_methods_supported",
            "allowed",
        ] {
            assert_eq!(found[key], expected[key], "{how} {key}: {out}");
        }
    }
    // Only GET and HEAD; and an intercepted connection never gets it (unit-tested routing).
    let (status, head, _) = http(
        port,
        "POST",
        "/.well-known/oauth-protected-resource",
        &[("Content-Type", "application/json")],
        b"{}",
    )
    .await;
    assert_eq!(status, 405, "{head}");
    assert!(received(&server).await.is_empty());
    // Without tokens.resource nothing is published and the challenge points nowhere.
    gw.shutdown().await;
    let (_server, _, plain) = token_gateway(&scratch_dir("tokens-prm-off"), "").await;
    let port = addr(&plain).port();
    let (status, head, _) = http(
        port,
        "GET",
        "/.well-known/oauth-protected-resource",
        &[],
        b"",
    )
    .await;
    assert_eq!(status, 404, "{head}");
    let (status, head, _) = initialize(port, "py", &[]).await;
    assert_eq!(status, 401, "{head}");
    assert!(!head.contains("resource_metadata"), "{head}");
    plain.shutdown().await;
}
