//! `agentgate-bench train`: the traffic a profile-guided build of the gateway learns from.
//!
//! `cargo xtask build` builds an instrumented gateway, runs this against it, and builds the
//! gateway again with the profile it wrote. What this sends is what the build makes fast:
//! tools/call with JSON and with SSE answers, small and large bodies, the session handshake,
//! tool listing, notifications and malformed bodies, one connection at a time and many, through
//! a one-worker gateway with the audit log off (as the benchmark runs it) and through one on
//! the default runtime with the default fail-closed audit log. Code it does not reach (TLS,
//! HTTP/2, stdio and legacy servers, interception) is cold to the profile: laid out apart and
//! inlined less, though still optimised for speed, not size.

use std::{
    net::SocketAddr,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::net::TcpListener;

/// How long one answer may take before the training fails.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// One step of the traffic: `body` sent to server `server` over `concurrency` keep-alive
/// connections for `millis`, each answer expected with `status`.
struct Step {
    server: &'static str,
    body: Bytes,
    concurrency: usize,
    millis: u64,
    status: StatusCode,
}

/// Trains `gateway` (an instrumented build, which writes its profile where `LLVM_PROFILE_FILE`
/// says as it exits): two gateway processes in turn, configured in `dir`.
pub async fn run(gateway: &Path, dir: &Path) -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let upstream = listener.local_addr()?;
    tokio::spawn(crate::serve(listener, answer));
    let fail_closed = dir.join("audit");
    let fail_closed = format!(
        "[audit]\ndir = \"{0}\"\nkey_file = \"{0}.key\"\nfail_closed = true\n",
        fail_closed.display()
    );
    let gateways = [
        (
            "one-worker",
            "[runtime]\nworker_threads = 1\n",
            "[audit]\nenabled = false\n",
        ),
        ("default", "", fail_closed.as_str()),
    ];
    for (name, runtime, audit) in gateways {
        let port = crate::free_port()?;
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "[listener]\naddress = \"127.0.0.1:{port}\"\n[admin]\nenabled = false\n\
                 [logging]\nlevel = \"warn\"\n{runtime}\
                 [[servers]]\nname = \"json\"\nurl = \"http://{upstream}/mcp\"\n\
                 [[servers]]\nname = \"sse\"\nurl = \"http://{upstream}/sse\"\n\
                 [policy]\npins_file = \"\"\n[[rules]]\nname = \"all\"\neffect = \"allow\"\n{audit}"
            ),
        )?;
        let mut child = Command::new(gateway)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .spawn()
            .context("start the instrumented gateway")?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let sent = async {
            crate::wait_port(port).await?;
            for step in steps() {
                drive(addr, &step).await.with_context(|| {
                    format!("training step to server {:?} ({name} gateway)", step.server)
                })?;
            }
            anyhow::Ok(())
        }
        .await;
        // SIGTERM: the gateway drains and exits normally, which is when it writes its profile.
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let status = child.wait()?;
        sent?;
        if !status.success() {
            bail!("the instrumented gateway ({name}) exited with {status}");
        }
    }
    Ok(())
}

fn steps() -> Vec<Step> {
    let call = Bytes::from(agentgate_bench::tools_call_body(1024));
    let step = |server, body: &Bytes, concurrency, millis, status| Step {
        server,
        body: body.clone(),
        concurrency,
        millis,
        status,
    };
    let json = |text: &'static str| Bytes::from_static(text.as_bytes());
    let initialize = json(
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"train","version":"1"}}}"#,
    );
    let list = json(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#);
    let initialized = json(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    let malformed = json(r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":}"#);
    let large = Bytes::from(agentgate_bench::tools_call_body(64 * 1024));
    vec![
        step("json", &call, 32, 2500, StatusCode::OK),
        step("json", &call, 1, 800, StatusCode::OK),
        step("sse", &call, 8, 800, StatusCode::OK),
        step("json", &large, 4, 500, StatusCode::OK),
        step("json", &initialize, 4, 300, StatusCode::OK),
        step("json", &list, 4, 300, StatusCode::OK),
        step("sse", &list, 4, 300, StatusCode::OK),
        step("json", &initialized, 4, 300, StatusCode::ACCEPTED),
        step("json", &malformed, 2, 200, StatusCode::BAD_REQUEST),
    ]
}

/// Sends `step.body` over `step.concurrency` connections until `step.millis` pass.
async fn drive(addr: SocketAddr, step: &Step) -> Result<()> {
    let deadline = Instant::now() + Duration::from_millis(step.millis);
    let path = format!("/servers/{}/mcp", step.server);
    let mut tasks = Vec::new();
    for _ in 0..step.concurrency {
        let (path, body, expected) = (path.clone(), step.body.clone(), step.status);
        tasks.push(tokio::spawn(async move {
            let mut sender = crate::connect(addr).await?;
            while Instant::now() < deadline {
                let req = crate::mcp_post(addr, &path, body.clone())?;
                // A gateway that stops answering fails the build rather than hanging it.
                let answered = tokio::time::timeout(ANSWER_WITHIN, async {
                    let resp = sender.send_request(req).await?;
                    let status = resp.status();
                    let body = resp.into_body().collect().await?.to_bytes();
                    anyhow::Ok((status, body))
                });
                let (status, body) = answered
                    .await
                    .with_context(|| format!("{path}: no answer within {ANSWER_WITHIN:?}"))??;
                if status != expected {
                    bail!("{path} answered {status}, not {expected}");
                }
                if !fits(expected, &body) {
                    bail!(
                        "{path} answered {status} with an unexpected body: {}",
                        String::from_utf8_lossy(&body)
                    );
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Whether an answer's body is the kind `expected` stands for: a result for 200 (a denial or
/// a withheld answer is a 200 too, and the training must have gone through the path it is
/// meant to profile), nothing for 202, an error otherwise.
fn fits(expected: StatusCode, body: &[u8]) -> bool {
    let has = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    match expected {
        StatusCode::OK => has(b"\"result\"") && !has(b"\"error\""),
        StatusCode::ACCEPTED => body.is_empty(),
        _ => has(b"\"error\""),
    }
}

/// The training upstream's answer to each request, by its method and id: in JSON on `/mcp`,
/// and as an SSE stream (a progress notification, then the answer) on `/sse`; notifications
/// get 202.
fn answer(path: &str, body: Bytes) -> Response<Full<Bytes>> {
    let sse = path == "/sse";
    let message: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let Some(id) = message.get("id").cloned() else {
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = StatusCode::ACCEPTED;
        return resp;
    };
    let result = match message.get("method").and_then(|m| m.as_str()) {
        Some("initialize") => serde_json::json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "train", "version": "1"},
        }),
        Some("tools/list") => serde_json::json!({"tools": [{
            "name": "run_query",
            "description": "Runs a query.",
            "inputSchema": {"type": "object", "properties": {"query": {"type": "string"}}},
        }]}),
        _ => serde_json::json!({"content": [{"type": "text", "text": "ok"}], "isError": false}),
    };
    let reply = serde_json::json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string();
    let (content_type, text) = if sse {
        let progress = r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":1,"total":2}}"#;
        (
            "text/event-stream",
            format!("event: message\ndata: {progress}\n\nevent: message\ndata: {reply}\n\n"),
        )
    } else {
        ("application/json", reply)
    };
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    resp.headers_mut()
        .insert("content-type", http::HeaderValue::from_static(content_type));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(resp: Response<Full<Bytes>>) -> (StatusCode, String, String) {
        let status = resp.status();
        let kind = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let bytes = collected(resp.into_body());
        (status, kind, String::from_utf8(bytes.to_vec()).unwrap())
    }

    fn collected(body: Full<Bytes>) -> Bytes {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(body.collect())
            .unwrap()
            .to_bytes()
    }

    #[test]
    fn the_upstream_answers_each_request_by_its_method_and_id() {
        let (status, kind, text) = body(answer(
            "/mcp",
            Bytes::from_static(br#"{"jsonrpc":"2.0","id":"a-1","method":"initialize"}"#),
        ));
        assert_eq!(
            (status, kind.as_str()),
            (StatusCode::OK, "application/json")
        );
        let reply: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(reply["id"], "a-1");
        assert_eq!(reply["result"]["protocolVersion"], "2025-11-25");

        let (status, kind, text) = body(answer(
            "/sse",
            Bytes::from_static(br#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#),
        ));
        assert_eq!(
            (status, kind.as_str()),
            (StatusCode::OK, "text/event-stream")
        );
        let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events.len(), 2, "{text}");
        assert!(events[0].contains("notifications/progress"), "{text}");
        let last: serde_json::Value =
            serde_json::from_str(events[1].trim_start_matches("event: message\ndata: ")).unwrap();
        assert_eq!(last["id"], 7);
        assert_eq!(last["result"]["tools"][0]["name"], "run_query");

        let (status, _, text) = body(answer(
            "/mcp",
            Bytes::from_static(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
        ));
        assert_eq!((status, text.as_str()), (StatusCode::ACCEPTED, ""));
    }

    #[test]
    fn a_denial_does_not_pass_for_a_trained_call() {
        let result = br#"{"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":false}}"#;
        let denied = br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32001,"message":"denied"}}"#;
        assert!(fits(StatusCode::OK, result));
        assert!(!fits(StatusCode::OK, denied), "a 200 carrying an error");
        assert!(!fits(StatusCode::OK, b""), "a 200 carrying nothing");
        let stream = [&b"data: "[..], denied, b"\n\ndata: ", result, b"\n\n"].concat();
        assert!(
            !fits(StatusCode::OK, &stream),
            "a stream with an error in it"
        );
        assert!(fits(StatusCode::ACCEPTED, b""));
        assert!(!fits(StatusCode::ACCEPTED, result));
        assert!(fits(StatusCode::BAD_REQUEST, denied));
        assert!(!fits(StatusCode::BAD_REQUEST, result));
    }
}
