//! The audit trail seen from outside: what a real MCP exchange through the gateway leaves in
//! the log, that secrets never reach it, that the CLI and admin API read it back and verify it,
//! that a SIGKILL loses no acknowledged record, and that a full disk refuses requests instead
//! of serving them unaudited.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use agentgate::audit::{
    Event, Record,
    query::{self, Filter},
};
use serde_json::json;
use tokio::io::AsyncBufReadExt;

use crate::common::*;

fn bin() -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_agentgate"));
    c.stdin(Stdio::null()).kill_on_drop(true);
    c
}

fn records(dir: &Path) -> Vec<Record> {
    query::query(dir, &Filter::default(), None).unwrap()
}

/// Polls until some record satisfies `want` (responses are written without the agent waiting).
async fn eventually(dir: &Path, want: impl Fn(&Record) -> bool) -> Record {
    for _ in 0..200 {
        if let Some(r) = records(dir).into_iter().find(|r| want(r)) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no such record in {}: {:#?}", dir.display(), records(dir));
}

/// `agentgate audit verify` on `scratch`'s log with the public key `audit public-key` prints
/// for its key file; asserts success and returns what it printed.
async fn verify_with_cli(scratch: &Path) -> String {
    let out = bin()
        .args(["audit", "public-key", "--key-file"])
        .arg(scratch.join("audit.key"))
        .output()
        .await
        .unwrap();
    let public = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let out = bin()
        .args(["audit", "verify", "--public-key", &public, "--log"])
        .arg(scratch.join("audit"))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    stdout
}

const SECRET_TOKEN: &str = "ghp_abcdefghijklmnopqrstuvwxyz0123456789";

#[tokio::test(flavor = "multi_thread")]
async fn a_real_exchange_is_recorded_redacted_linked_and_verifiable() {
    let server = python_server("streamable-http", None).await;
    let scratch = scratch_dir("audit-e2e");
    let log_dir = scratch.join("audit");
    let deny_add = "[[rules]]\nname = \"no-add\"\neffect = \"deny\"\ntools = [\"add\"]\n";
    let text = gateway_config(
        &[("py", &server.url("/mcp"), "streamable-http", "")],
        &format!("{deny_add}{}", audit_section(&scratch)),
    );
    let gw = gateway(&text).await;
    let port = addr(&gw).port();
    let sid = session(port, "py").await;

    // A call whose arguments hold secrets by key and by shape, nested too.
    let args = json!({
        "message": format!("use {SECRET_TOKEN} please"),
        "api_key": "plain-secret-1",
        "nested": {"Password": "hunter2", "keep": "visible-1"},
    });
    let (status, _, body) = post_in_session(port, "py", &sid, &tool_call(7, "echo", args)).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    // The agent still gets the real answer: redaction is for the log only.
    assert!(String::from_utf8_lossy(&body).contains(SECRET_TOKEN));

    let (status, _, body) = post_in_session(
        port,
        "py",
        &sid,
        &tool_call(8, "add", json!({"a": 1, "b": 2})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(rpc_error(&body).0, -32001);

    let (status, _, _) =
        post_in_session(port, "py", &sid, r#"{"jsonrpc":"2.0","id":9,"method":"#).await;
    assert_eq!(status, 400);
    // Refused whole (a duplicate key), yet JSON to a lenient reader: its secrets stay out too.
    let twice = r#"{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"echo","arguments":{"password":"hunter2","password":null}}}"#;
    let (status, _, _) = post_in_session(port, "py", &sid, twice).await;
    assert_eq!(status, 400);

    let call = eventually(&log_dir, |r| {
        r.event == Event::Request && r.target.as_deref() == Some("echo")
    })
    .await;
    let response = eventually(&log_dir, |r| {
        r.event == Event::Response && r.request_seq == Some(call.seq)
    })
    .await;

    // The admin API answers the same queries while the gateway runs.
    let admin = gw.bound.admin.unwrap().port();
    let (status, head, body) = http(
        admin,
        "GET",
        "/audit/query?tool=echo&event=request",
        &[],
        b"",
    )
    .await;
    assert_eq!(status, 200, "{head}");
    let lines: Vec<Record> = String::from_utf8_lossy(&body)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].seq, call.seq);
    let (status, _, body) = http(admin, "GET", "/audit/query?colour=red", &[], b"").await;
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("unknown filter"));
    // The export, streamed: every record so far in order, the call among them.
    let (status, head, body) = http(admin, "GET", "/audit/export", &[], b"").await;
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase().contains("application/jsonl"),
        "{head}"
    );
    let exported: Vec<serde_json::Value> = String::from_utf8_lossy(&body)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seqs: Vec<u64> = exported
        .iter()
        .filter(|l| l["kind"] == "record")
        .map(|l| l["record"]["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.contains(&call.seq), "{seqs:?}");
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
    let (status, _, _) = http(admin, "GET", "/audit/export?since=1h", &[], b"").await;
    assert_eq!(status, 400);
    let http10 = format!("GET /audit/export HTTP/1.0\r\nHost: 127.0.0.1:{admin}\r\n\r\n");
    let (status, _, _) = raw_exchange(admin, http10.as_bytes()).await;
    assert_eq!(status, 505, "HTTP/1.0 has no chunked bodies to break");
    // Other local users (agents among them) see metrics, not records or identities.
    for (path, status) in [
        ("/audit/query?tool=echo", 403),
        ("/audit/export", 403),
        ("/connections", 403),
        ("/metrics", 200),
        ("/healthz", 200),
    ] {
        assert_eq!(get_as_nobody(admin, path).await, status, "{path}");
    }

    assert!(gw.shutdown().await);
    let all = records(&log_dir);

    // What the call record says.
    assert_eq!(call.agent.as_deref(), Some("unknown"));
    assert!(
        call.peer
            .as_deref()
            .is_some_and(|p| p.starts_with("127.0.0.1:"))
    );
    assert_eq!(call.server.as_deref(), Some("py"));
    assert_eq!(call.session.as_deref(), Some(sid.as_str()));
    assert_eq!(call.method.as_deref(), Some("tools/call"));
    assert_eq!(call.request_id, Some(json!(7)));
    assert_eq!(
        (call.decision.as_deref(), call.rule.as_deref()),
        (Some("allow"), Some("allow-all"))
    );
    let params = call.params_value().unwrap();
    let a = &params["arguments"];
    assert_eq!(a["api_key"], "[redacted]");
    assert_eq!(a["nested"]["Password"], "[redacted]");
    assert_eq!(a["nested"]["keep"], "visible-1");
    assert_eq!(a["message"], "use [redacted] please");
    // The response: linked, hashed, sized, redacted.
    assert_eq!(response.decision.as_deref(), Some("forward"));
    assert_eq!(response.result_sha256.as_ref().map(String::len), Some(64));
    assert!(response.result_bytes.unwrap() > 20);
    assert!(response.latency_us.is_some());
    let result = response.result.as_ref().unwrap().to_string();
    assert!(result.contains("[redacted]"), "{result}");
    // The denied call and the malformed body are there, with what the agent got.
    let denied = all
        .iter()
        .find(|r| r.target.as_deref() == Some("add"))
        .expect("denied call recorded");
    assert_eq!(
        (denied.decision.as_deref(), denied.rule.as_deref()),
        (Some("deny"), Some("no-add"))
    );
    assert_eq!(denied.status, Some(200));
    assert_eq!(
        denied.params_value().unwrap()["arguments"],
        json!({"a": 1, "b": 2})
    );
    let malformed = all
        .iter()
        .find(|r| r.status == Some(400))
        .expect("malformed body recorded");
    assert!(
        malformed
            .error
            .as_deref()
            .is_some_and(|e| e.contains("JSON")),
        "{malformed:?}"
    );
    assert!(
        malformed.detail.as_ref().unwrap()["body_excerpt"]
            .as_str()
            .unwrap()
            .contains("\"id\":9")
    );
    let duplicated = all
        .iter()
        .find(|r| {
            r.error
                .as_deref()
                .is_some_and(|e| e.contains("duplicate key"))
        })
        .expect("the duplicate-key body recorded");
    let excerpt = duplicated.detail.as_ref().unwrap()["body_excerpt"].to_string();
    assert!(
        excerpt.contains("tools/call") && !excerpt.contains("hunter2"),
        "{excerpt}"
    );
    // Lifecycle events bracket it all.
    assert_eq!(all.first().unwrap().event, Event::GatewayStart);
    assert_eq!(all.last().unwrap().event, Event::GatewayStop);
    assert!(
        all.iter()
            .any(|r| r.event == Event::SessionStart && r.session.as_deref() == Some(sid.as_str()))
    );
    let seqs: Vec<u64> = all.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (0..all.len() as u64).collect::<Vec<_>>());

    // No secret reached the disk, in any form.
    let raw = all_log_bytes(&log_dir);
    for secret in [SECRET_TOKEN, "plain-secret-1", "hunter2"] {
        assert!(
            !raw.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} is in the log"
        );
    }

    // The CLI: public key, verify, query, export.
    let stdout = verify_with_cli(&scratch).await;
    assert!(
        stdout.contains(&format!("ok: {} entries", all.len())),
        "{stdout}"
    );
    assert!(
        stdout.contains("0 entries after the last checkpoint"),
        "{stdout}"
    );
    let out = bin()
        .args([
            "audit",
            "query",
            "--format",
            "json",
            "--decision",
            "deny",
            "--log",
        ])
        .arg(&log_dir)
        .output()
        .await
        .unwrap();
    let found: Vec<Record> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].rule.as_deref(), Some("no-add"));
    let out = bin()
        .args(["audit", "query", "--text", "VISIBLE-1", "--log"])
        .arg(&log_dir)
        .output()
        .await
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        table.lines().count(),
        2,
        "a header and the echo call: {table}"
    );
    assert!(table.contains("echo"));
    let out = bin()
        .args(["audit", "query", "--since", "yesterday-ish", "--log"])
        .arg(&log_dir)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--since"));
    let out = bin()
        .args(["audit", "export", "--log"])
        .arg(&log_dir)
        .output()
        .await
        .unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.iter().filter(|l| l["kind"] == "record").count(),
        all.len()
    );
    assert!(lines.iter().any(|l| l["kind"] == "checkpoint"));
    // An exported record carries its chain hash and, verbatim, the payload it was hashed over.
    #[derive(serde::Deserialize)]
    struct Line<'a> {
        hash: String,
        #[serde(borrow)]
        record: &'a serde_json::value::RawValue,
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let first: Line<'_> = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(
        first.hash,
        agentgate::audit::hex(&agentgate::audit::chain(
            &agentgate::audit::GENESIS,
            first.record.get().as_bytes()
        ))
    );
}

/// Starts the binary on `config` and waits until it is ready; returns its port.
async fn run_binary(config: &Path) -> (tokio::process::Child, tokio::task::JoinHandle<()>) {
    let mut child = bin()
        .arg("run")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("agentgate is ready") {
                return;
            }
        }
        panic!("gateway exited before it was ready");
    })
    .await
    .expect("ready in time");
    let drain = tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, drain)
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_under_load_loses_no_acknowledged_record() {
    let server = python_server("streamable-http", None).await;
    let scratch = scratch_dir("audit-crash");
    let log_dir = scratch.join("audit");
    let (text, port, _) = fixed_ports(&gateway_config(
        &[("py", &server.url("/mcp"), "streamable-http", "")],
        &audit_section(&scratch),
    ));
    let config = scratch.join("gw.toml");
    std::fs::write(&config, &text).unwrap();
    let (mut child, _drain) = run_binary(&config).await;
    let sid = session(port, "py").await;

    // Agents call as fast as they can; each answer they get is an acknowledgement that the
    // call was recorded (fail-closed forwards only durable requests).
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let sid = sid.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0..10_000u64 {
                let marker = format!("crash-{t}-{i}");
                // Ids unique in the session: the server routes answers by id.
                let body = tool_call(t * 1_000_000 + i, "echo", json!({"message": marker}));
                // Its own task: the helper panics on a connection the kill cut short.
                let sid2 = sid.clone();
                let call = tokio::spawn(async move {
                    tokio::time::timeout(
                        Duration::from_secs(5),
                        post_in_session(port, "py", &sid2, &body),
                    )
                    .await
                });
                match call.await {
                    Ok(Ok((200, _, b))) if String::from_utf8_lossy(&b).contains(&marker) => {
                        acked.push(marker)
                    }
                    _ => break,
                }
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    assert!(
        acked.len() > 20,
        "too little load to mean anything: {}",
        acked.len()
    );

    // Restart: a torn tail is cut, the log continues and verifies.
    let (mut child, _drain) = run_binary(&config).await;
    signal(&child, "-TERM");
    assert_eq!(child.wait().await.unwrap().code(), Some(0));
    verify_with_cli(&scratch).await;

    let recorded: HashSet<String> = records(&log_dir)
        .into_iter()
        .filter(|r| r.event == Event::Request)
        .filter_map(|r| {
            Some(
                r.params_value()?["arguments"]["message"]
                    .as_str()?
                    .to_owned(),
            )
        })
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|m| !recorded.contains(*m)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged calls have no record: {lost:?}",
        lost.len()
    );
    let starts = records(&log_dir)
        .iter()
        .filter(|r| r.event == Event::GatewayStart)
        .count();
    assert_eq!(starts, 2);
}

/// A small tmpfs, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let ok = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "agentgate-test",
            ])
            .arg(at)
            .status()
            .unwrap()
            .success();
        assert!(ok, "cannot mount a tmpfs at {}", at.display());
        Self(at.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_refuses_requests_instead_of_serving_them_unaudited() {
    assert!(
        is_root(),
        "the disk-full test mounts a tmpfs: it needs root"
    );
    let server = python_server("streamable-http", None).await;
    let scratch = scratch_dir("audit-full");
    let disk = SmallDisk::mount(&scratch.join("disk"), "64k");
    let text = gateway_config(
        &[("py", &server.url("/mcp"), "streamable-http", "")],
        &format!(
            "[audit]\ndir = \"{}/audit\"\nkey_file = \"{}/audit.key\"\n",
            disk.0.display(),
            scratch.display()
        ),
    );
    let gw = gateway(&text).await;
    let port = addr(&gw).port();
    let admin = gw.bound.admin.unwrap().port();
    let sid = session(port, "py").await;
    let big = "x".repeat(6000);
    let mut refused = None;
    for i in 0..100u64 {
        let (status, _, body) = post_in_session(
            port,
            "py",
            &sid,
            &tool_call(i, "echo", json!({"message": big})),
        )
        .await;
        if status != 200 {
            refused = Some((i, status, body));
            break;
        }
    }
    let (_, status, body) = refused.expect("a 64 KiB disk fills up");
    assert_eq!(status, 503);
    let (code, message) = rpc_error(&body);
    assert_eq!(code, -32000);
    assert!(message.contains("audit log"), "{message}");
    // Refused from now on, and never forwarded: the upstream sees no more calls.
    let before = received(&server).await.len();
    for i in 0..3 {
        let (status, _, _) = post_in_session(
            port,
            "py",
            &sid,
            &tool_call(100 + i, "echo", json!({"message": "small"})),
        )
        .await;
        assert_eq!(status, 503);
    }
    assert_eq!(received(&server).await.len(), before);
    // The alarm: health and metrics say so.
    let (status, _, body) = http(admin, "GET", "/healthz", &[], b"").await;
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    let (_, _, metrics) = http(admin, "GET", "/metrics", &[], b"").await;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("agentgate_audit_log_failed 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("agentgate_audit_refused_requests_total 4"),
        "{metrics}"
    );
    gw.shutdown().await;
    // What was written before the disk filled still verifies.
    let key = agentgate::audit::load_or_create_key(&scratch.join("audit.key")).unwrap();
    let summary =
        agentgate::audit::log::verify(&disk.0.join("audit"), &key.verifying_key(), None).unwrap();
    assert!(summary.entries > 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn tail_follows_new_records_as_they_are_written() {
    let server = python_server("streamable-http", None).await;
    let scratch = scratch_dir("audit-tail");
    let text = gateway_config(
        &[("py", &server.url("/mcp"), "streamable-http", "")],
        &audit_section(&scratch),
    );
    let gw = gateway(&text).await;
    let port = addr(&gw).port();
    let mut tail = bin()
        .args(["audit", "tail", "-f", "-n", "1", "--tool", "echo", "--log"])
        .arg(scratch.join("audit"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(tail.stdout.take().unwrap()).lines();
    let sid = session(port, "py").await;
    for i in 0..2u64 {
        let marker = format!("followed-{i}");
        let (status, _, _) = post_in_session(
            port,
            "py",
            &sid,
            &tool_call(i, "echo", json!({"message": marker})),
        )
        .await;
        assert_eq!(status, 200);
        // The request record, then its response, each once.
        for event in [Event::Request, Event::Response] {
            let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
                .await
                .expect("tail printed in time")
                .unwrap()
                .unwrap();
            let r: Record = serde_json::from_str(&line).unwrap();
            assert_eq!(r.event, event, "{line}");
            assert_eq!(r.request_id, Some(json!(i)), "{line}");
        }
    }
    tail.start_kill().unwrap();
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn records_reach_an_otlp_collector_in_order_once_it_accepts_them() {
    let server = python_server("streamable-http", None).await;
    let collector = otlp_receiver().await;
    // The collector refuses every export with 400 for a while, empty ones too (a proxy in the
    // way, say): that is no record's fault, so they are retried, nothing is skipped or lost. It
    // recovers on a batch, never between the exporter's probes of one record.
    let (status, _, _) = http(
        collector.port,
        "POST",
        "/_fail?n=12&status=400&until_batch=1",
        &[],
        b"",
    )
    .await;
    assert_eq!(status, 204);
    let scratch = scratch_dir("audit-otlp");
    let text = gateway_config(
        &[("py", &server.url("/mcp"), "streamable-http", "")],
        &format!(
            "{}[audit.otlp]\nendpoint = \"http://127.0.0.1:{}/v1/logs\"\ninterval = \"100ms\"\nbatch = 2\n",
            audit_section(&scratch),
            collector.port
        ),
    );
    let gw = gateway(&text).await;
    let port = addr(&gw).port();
    let sid = session(port, "py").await;
    let (status, _, _) = post_in_session(
        port,
        "py",
        &sid,
        &tool_call(3, "echo", json!({"message": "to the SIEM"})),
    )
    .await;
    assert_eq!(status, 200);
    let shipped = |v: &serde_json::Value| -> Vec<Record> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|lr| serde_json::from_str(lr["body"]["stringValue"].as_str().unwrap()).unwrap())
            .collect()
    };
    let mut got = Vec::new();
    for _ in 0..100 {
        let (_, _, body) = http(collector.port, "GET", "/_received", &[], b"").await;
        got = shipped(&serde_json::from_slice(&body).unwrap());
        if got
            .iter()
            .any(|r| r.event == Event::Response && r.request_id == Some(json!(3)))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        got.iter()
            .any(|r| r.event == Event::Response && r.request_id == Some(json!(3))),
        "{got:#?}"
    );
    // In order, from the first record, each once, exactly as the log holds them.
    let seqs: Vec<u64> = got.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (0..got.len() as u64).collect::<Vec<_>>());
    let log = records(&scratch.join("audit"));
    assert_eq!(&log[..got.len()], &got[..]);
    let (_, _, body) = http(collector.port, "GET", "/_received", &[], b"").await;
    let raw: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        raw[0]["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["key"] == "agentgate.event" && a["value"]["stringValue"] == "gateway_start"),
        "{raw}"
    );
    gw.shutdown().await;
    let cursor: u64 = std::fs::read_to_string(scratch.join("audit/otlp.cursor"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(cursor >= got.len() as u64);
}

/// A collector that refuses what one record holds (400) or its size (413) would stop the export,
/// and retention with it, if the batch were retried as it is: the batch is halved until the
/// refused record stands alone, which is skipped (and counted); every other record arrives, in
/// order, and the log keeps them all.
#[tokio::test(flavor = "multi_thread")]
async fn records_a_collector_refuses_on_their_own_are_skipped_and_the_rest_still_arrive() {
    refused_records_are_skipped(false).await;
}

/// The same with a collector that refuses empty exports too: the record after the refused one,
/// taken alone, tells a refused record from a collector that refuses everything.
#[tokio::test(flavor = "multi_thread")]
async fn a_collector_refusing_empty_exports_does_not_stall_the_export_on_a_refused_record() {
    refused_records_are_skipped(true).await;
}

async fn refused_records_are_skipped(refuse_empty: bool) {
    let server = python_server("streamable-http", None).await;
    let collector = otlp_receiver().await;
    if refuse_empty {
        let (s, _, _) = http(collector.port, "POST", "/_refuse_empty", &[], b"").await;
        assert_eq!(s, 204);
    }
    for (seq, status) in [(2, 400), (5, 413)] {
        let (s, _, _) = http(
            collector.port,
            "POST",
            &format!("/_refuse?seq={seq}&status={status}"),
            &[],
            b"",
        )
        .await;
        assert_eq!(s, 204);
    }
    let scratch = scratch_dir("audit-otlp-refused");
    let text = gateway_config(
        &[("py", &server.url("/mcp"), "streamable-http", "")],
        &format!(
            "{}[audit.otlp]\nendpoint = \"http://127.0.0.1:{}/v1/logs\"\ninterval = \"100ms\"\nbatch = 8\n",
            audit_section(&scratch),
            collector.port
        ),
    );
    let gw = gateway(&text).await;
    let port = addr(&gw).port();
    let admin = gw.bound.admin.unwrap().port();
    let sid = session(port, "py").await;
    for id in 3..6 {
        let (status, _, _) = post_in_session(
            port,
            "py",
            &sid,
            &tool_call(id, "echo", json!({"message": "to the SIEM"})),
        )
        .await;
        assert_eq!(status, 200);
    }
    let last = |r: &Record| r.event == Event::Response && r.request_id == Some(json!(5));
    let mut got: Vec<u64> = Vec::new();
    for _ in 0..100 {
        let (_, _, body) = http(collector.port, "GET", "/_received", &[], b"").await;
        let received: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let records: Vec<Record> = received
            .as_array()
            .unwrap()
            .iter()
            .map(|lr| serde_json::from_str(lr["body"]["stringValue"].as_str().unwrap()).unwrap())
            .collect();
        got = records.iter().map(|r| r.seq).collect();
        if records.iter().any(last) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = records(&scratch.join("audit"));
    let newest = log
        .iter()
        .find(|r| last(r))
        .expect("the last call is logged")
        .seq;
    assert!(newest > 5, "{log:#?}");
    // Everything up to the last call but the two refused records, each once, in order.
    let expected: Vec<u64> = (0..=newest).filter(|s| *s != 2 && *s != 5).collect();
    assert_eq!(&got[..expected.len().min(got.len())], &expected[..]);
    assert!(got.len() >= expected.len(), "{got:?}");
    let (_, _, metrics) = http(admin, "GET", "/metrics", &[], b"").await;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("agentgate_audit_otlp_skipped_records_total 2"),
        "{metrics}"
    );
    gw.shutdown().await;
    // The local log still holds the refused records.
    let log = records(&scratch.join("audit"));
    assert!(log.iter().any(|r| r.seq == 2) && log.iter().any(|r| r.seq == 5));
}

/// The status of a GET to `path` on `port` made by a process running as nobody (the tests run
/// as root, as CI does).
async fn get_as_nobody(port: u16, path: &str) -> u16 {
    let script = format!(
        "import urllib.request, urllib.error\n\
         try:\n    print(urllib.request.urlopen('http://127.0.0.1:{port}{path}').status)\n\
         except urllib.error.HTTPError as e:\n    print(e.code)\n"
    );
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .uid(65534)
        .gid(65534)
        .output()
        .await
        .expect("python3 as nobody");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{out:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_failure_is_recorded_against_the_call_it_failed() {
    let scratch = scratch_dir("audit-upstream-down");
    // Nothing listens there.
    let url = format!("http://127.0.0.1:{}/mcp", free_port());
    let text = gateway_config(
        &[("down", &url, "streamable-http", "")],
        &audit_section(&scratch),
    );
    let gw = gateway(&text).await;
    let call = tool_call(7, "echo", serde_json::json!({"message": "x"}));
    // No session: the server never got to open one.
    let (status, _, _) = http(
        addr(&gw).port(),
        "POST",
        "/servers/down/mcp",
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
            ("MCP-Protocol-Version", "2025-11-25"),
        ],
        call.as_bytes(),
    )
    .await;
    assert_eq!(status, 502);
    let dir = scratch.join("audit");
    let request = eventually(&dir, |r| {
        r.event == Event::Request && r.target.as_deref() == Some("echo")
    })
    .await;
    let response = eventually(&dir, |r| r.event == Event::Response).await;
    assert_eq!(response.request_seq, Some(request.seq));
    assert_eq!(response.status, Some(502));
    assert_eq!(response.method.as_deref(), Some("tools/call"));
    assert_eq!(response.target.as_deref(), Some("echo"));
    assert_eq!(response.request_id, Some(serde_json::json!(7)));
}

/// On the legacy HTTP+SSE transport a session is named by the endpoint the server announced:
/// the records of a session's POSTs (forwarded or denied), their answers and the server's
/// messages on its stream all carry it, so that an investigation can follow one session.
#[tokio::test(flavor = "multi_thread")]
async fn legacy_sessions_are_named_in_their_records() {
    let server = python_server("sse", None).await;
    let scratch = scratch_dir("audit-legacy-session");
    let gw = gateway(&gateway_config(
        &[("legacy", &server.url("/sse"), "sse", "")],
        &format!(
            "[[rules]]\nname = \"no-wipe\"\neffect = \"deny\"\ntools = [\"wipe_disk\"]\n{}",
            audit_section(&scratch)
        ),
    ))
    .await;
    let through = format!("http://{}/servers/legacy/sse", addr(&gw));
    let results = crate::policy::client(
        &through,
        json!([
            ["call", "echo", {"message": "before"}],
            ["call", "wipe_disk", {}],
            ["call", "echo", {"message": "after"}],
            // The server says its tools changed on the stream 0.3 s later, while the session
            // still runs.
            ["call", "announce_later", {}],
            ["call", "long_running", {"steps": 1, "delay": 0.8}],
        ]),
    )
    .await;
    assert!(results[1]["rpc_error"].is_string(), "{}", results[1]);
    assert_eq!(results[4]["text"], "done 1 steps", "{}", results[4]);
    // A session id the caller makes up names nothing here: the legacy transport has none.
    let (status, _, _) = http(
        addr(&gw).port(),
        "POST",
        "/servers/legacy/message?endpoint=%2Fmessages%2F%3Fsession_id%3Dnot-yours",
        &[
            ("Content-Type", "application/json"),
            ("Mcp-Session-Id", "chosen-by-caller"),
        ],
        br#"{"jsonrpc":"2.0","id":9,"method":"tools/list"}"#,
    )
    .await;
    assert!((400..500).contains(&status), "{status}");
    assert!(gw.shutdown().await);
    let log = records(&scratch.join("audit"));
    let called = |r: &&Record, event: Event, tool: &str| {
        r.event == event
            && r.method.as_deref() == Some("tools/call")
            && r.target.as_deref() == Some(tool)
    };
    let denied = log
        .iter()
        .find(|r| called(r, Event::Request, "wipe_disk"))
        .expect("the denied call is recorded");
    assert_eq!(denied.decision.as_deref(), Some("deny"), "{denied:?}");
    let session = denied
        .session
        .clone()
        .expect("the denied call names its session");
    assert!(session.starts_with("/messages/?session_id="), "{session}");
    // Every tools/call request of the session, and the answers, name the same one.
    let calls: Vec<&Record> = log
        .iter()
        .filter(|r| r.method.as_deref() == Some("tools/call"))
        .collect();
    assert!(
        calls.iter().any(|r| r.event == Event::Response),
        "{calls:#?}"
    );
    for r in &calls {
        assert_eq!(r.session.as_deref(), Some(session.as_str()), "{r:?}");
    }
    // So does what the server sent on the stream once it announced the endpoint.
    let streamed: Vec<&Record> = log
        .iter()
        .filter(|r| r.event == Event::ServerMessage)
        .collect();
    assert!(
        streamed
            .iter()
            .any(|r| r.method.as_deref() == Some("notifications/tools/list_changed")),
        "{log:#?}"
    );
    for r in &streamed {
        assert_eq!(r.session.as_deref(), Some(session.as_str()), "{r:?}");
    }
    assert!(
        log.iter()
            .all(|r| r.session.as_deref() != Some("chosen-by-caller")
                && !r.session.as_deref().unwrap_or("").contains("not-yours")),
        "{log:#?}"
    );
}
