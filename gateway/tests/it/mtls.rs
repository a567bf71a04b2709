//! mTLS on the explicit listener: a Python MCP client with a good certificate is served and
//! named by it; a certificate from another CA, a revoked one, or none, never gets past the
//! handshake; a good certificate the policy does not allow is refused by the policy.

use std::ffi::OsStr;

use serde_json::Value;

use crate::common::*;

const SPIFFE: &str = "spiffe://example.org/agent/analyst";

fn san(uri: &str) -> rcgen::SanType {
    rcgen::SanType::URI(uri.try_into().unwrap())
}

fn client_usage() -> rcgen::ExtendedKeyUsagePurpose {
    rcgen::ExtendedKeyUsagePurpose::ClientAuth
}

fn audit_lines(scratch: &std::path::Path) -> Vec<Value> {
    use agentgate::audit::query;
    query::query(&scratch.join("audit"), &query::Filter::default(), None)
        .unwrap()
        .iter()
        .map(|r| serde_json::to_value(r).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_certificate_names_the_agent_and_bad_or_missing_ones_are_refused() {
    let scratch = scratch_dir("mtls");
    let ca = TestCa::new(&scratch, "agents");
    let rogue = TestCa::new(&scratch, "rogue");
    let (server_cert, server_key) = ca.server("gateway");
    let (good_cert, good_key) = ca.issue("analyst", "analyst", &[san(SPIFFE)], client_usage());
    let (rogue_cert, rogue_key) =
        rogue.issue("impostor", "analyst", &[san(SPIFFE)], client_usage());
    let (other_cert, other_key) = ca.issue("intruder", "intruder", &[], client_usage());
    // Revoked (its key leaked, say): the revocation list names its serial number.
    let (revoked_cert, revoked_key) = ca.issue_serial("revoked", "analyst", &[san(SPIFFE)], 4242);
    let crl = ca.revocation_list("agents", &[4242]);
    let upstream = python_server("streamable-http", None).await;
    let policy = "\n[policy]\npins_file = \"\"\n\
        [[rules]]\nname = \"analysts\"\neffect = \"allow\"\nagents = [\"analyst\"]\n\
        [rules.certificate]\nids = [\"spiffe://example.org/agent/*\"]\n";
    let text = format!(
        "{policy}[listener]\naddress = \"127.0.0.1:0\"\n\
         [listener.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\nclient_ca_file = \"{}\"\ncrl_file = \"{}\"\n\
         [admin]\naddress = \"127.0.0.1:0\"\n{}\n\
         [[agents]]\nname = \"analyst\"\ncertificate = \"{SPIFFE}\"\n\
         [[servers]]\nname = \"py\"\nurl = \"{}\"\n",
        server_cert.display(),
        server_key.display(),
        ca.cert_path("agents").display(),
        crl.display(),
        audit_section(&scratch),
        upstream.url("/mcp")
    );
    let gw = gateway(&text).await;
    let url = format!("https://127.0.0.1:{}/servers/py/mcp", addr(&gw).port());
    let ca_file = ca.cert_path("agents");
    let with = |cert: &std::path::Path, key: &std::path::Path| {
        vec![
            OsStr::new("--cafile").to_owned(),
            ca_file.clone().into_os_string(),
            OsStr::new("--cert").to_owned(),
            cert.as_os_str().to_owned(),
            OsStr::new("--key").to_owned(),
            key.as_os_str().to_owned(),
        ]
    };
    let run = |args: Vec<std::ffi::OsString>| {
        let url = url.clone();
        async move {
            let refs: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
            python_client_run(&url, &refs).await
        }
    };

    let good = run(with(&good_cert, &good_key)).await;
    assert!(
        good.status.success(),
        "the analyst's certificate is accepted: {}",
        String::from_utf8_lossy(&good.stderr)
    );
    let out: Value = serde_json::from_slice(&good.stdout).unwrap();
    assert!(
        out["tools"].as_array().unwrap().contains(&"echo".into()),
        "{out}"
    );
    let served = received(&upstream).await.len();
    assert!(served > 0);

    for (what, args) in [
        (
            "a certificate from another CA",
            with(&rogue_cert, &rogue_key),
        ),
        ("a revoked certificate", with(&revoked_cert, &revoked_key)),
        (
            "no certificate",
            vec![
                OsStr::new("--cafile").to_owned(),
                ca_file.clone().into_os_string(),
            ],
        ),
    ] {
        let out = run(args).await;
        assert!(!out.status.success(), "{what} must be refused");
        let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(
            err.contains("ssl") || err.contains("tls") || err.contains("connect"),
            "{what}: a TLS failure, not an HTTP one: {err}"
        );
    }
    assert_eq!(
        received(&upstream).await.len(),
        served,
        "nothing reached the upstream from refused handshakes"
    );

    // A good CA but a certificate the policy does not allow: TLS passes, the policy refuses.
    let out = run(with(&other_cert, &other_key)).await;
    assert!(!out.status.success(), "the intruder is refused");
    assert_eq!(received(&upstream).await.len(), served);

    let (status, _, metrics) =
        http(gw.bound.admin.unwrap().port(), "GET", "/metrics", &[], b"").await;
    assert_eq!(status, 200);
    let metrics = String::from_utf8_lossy(&metrics);
    let failed: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("agentgate_tls_handshakes_failed_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(failed >= 3.0, "{metrics}");

    let records = audit_lines(&scratch);
    let call = records
        .iter()
        .find(|r| r["method"] == "tools/call" && r["decision"] == "allow")
        .expect("the analyst's call is audited");
    assert_eq!(call["agent"], "analyst");
    assert_eq!(call["certificate"], SPIFFE);
    let denied = records
        .iter()
        .find(|r| r["certificate"] == "intruder")
        .expect("the intruder's attempt is audited");
    assert_eq!(denied["decision"], "deny");
    assert_eq!(denied["agent"], "unknown");
}

#[test]
fn listener_tls_config_is_checked() {
    let e = agentgate::config::Config::parse(
        "[listener.tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\nclient_auth = \"optional\"\n",
        "t.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("listener.tls.client_auth") && e.contains("client_ca_file"),
        "{e}"
    );
    let e = agentgate::config::Config::parse(
        "[[agents]]\nname = \"a\"\ncertificate = \"spiffe://x/*\"\n",
        "t.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("t.toml:3: agents.certificate"), "{e}");
}
