//! The policy engine between real peers: PostgreSQL behind server-postgres, list filtering
//! across pages, a rug pull, sampling refused, observe mode, and reloads.

use std::{process::Stdio, time::Duration};

use serde_json::{Value, json};
use tokio::process::Command;

use crate::{common::*, postgres::Postgres};

/// server-postgres (stdio) behind mcp-proxy's Streamable HTTP endpoint at /mcp.
async fn postgres_mcp_server(pg: &Postgres) -> Peer {
    let port = free_port();
    let script =
        peers().join("node/node_modules/@modelcontextprotocol/server-postgres/dist/index.js");
    let mut child = Command::new(peers().join("bridge-venv/bin/mcp-proxy"))
        .args([
            "--port",
            &port.to_string(),
            "--host",
            "127.0.0.1",
            "--",
            "node",
        ])
        .arg(script)
        .arg(format!(
            "postgresql://postgres@127.0.0.1:{}/postgres",
            pg.port
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start mcp-proxy");
    wait_for_port(port, &mut child).await;
    Peer { port, child }
}

pub async fn policy_server() -> Peer {
    let port = free_port();
    let mut child = Command::new(peers().join("venv/bin/python"))
        .arg(peer_scripts().join("policy_peer.py"))
        .args(["serve", "--port", &port.to_string()])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start policy peer");
    wait_for_port(port, &mut child).await;
    Peer { port, child }
}

/// Runs policy_peer.py's client through `url` and returns one result per step.
pub async fn client(url: &str, steps: Value) -> Vec<Value> {
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        Command::new(peers().join("venv/bin/python"))
            .arg(peer_scripts().join("policy_peer.py"))
            .args(["client", "--url", url, "--steps", &steps.to_string()])
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("client finished in time")
    .unwrap();
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("client prints JSON")
}

fn config(server: &str, url: &str, policy: &str) -> String {
    format!(
        "[listener]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"127.0.0.1:0\"\n\
         [[servers]]\nname = \"{server}\"\nurl = \"{url}\"\n{policy}"
    )
}

fn gateway_url(gw: &agentgate::cli::Running, server: &str) -> String {
    format!("http://{}/servers/{server}/mcp", addr(gw))
}

fn text(v: &Value) -> &str {
    v["text"].as_str().or(v["rpc_error"].as_str()).unwrap_or("")
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_reads_customers_and_is_refused_financials_however_the_sql_is_written() {
    let pg = Postgres::start().await;
    let server = postgres_mcp_server(&pg).await;
    let policy = "[policy]\npins_file = \"\"\n\
        [[rules]]\nname = \"read-customers\"\neffect = \"allow\"\nservers = [\"pg\"]\ntools = [\"query\"]\n\
        [[rules.params]]\npointer = \"/sql\"\nsql = { statements = [\"select\"], tables = [\"customers\"] }\n";
    let gw = gateway(&config("pg", &server.url("/mcp"), policy)).await;
    let url = gateway_url(&gw, "pg");
    let refused = [
        "SELECT * FROM financials",
        "SELECT c.name, f.revenue FROM customers c JOIN financials f ON f.customer_id = c.id",
        "SELECT name FROM customers WHERE id IN (SELECT customer_id FROM financials WHERE revenue > 0)",
        "WITH f AS (SELECT * FROM public.\"financials\") SELECT * FROM customers, f",
        "select * from customers; select * from FINANCIALS",
        "SELECT * FROM customers /* harmless */ UNION ALL SELECT customer_id, revenue::text FROM financials -- x",
    ];
    let mut steps = vec![
        json!(["list"]),
        json!(["call", "query", {"sql": "SELECT name FROM Customers ORDER BY id"}]),
    ];
    steps.extend(
        refused
            .iter()
            .map(|sql| json!(["call", "query", {"sql": sql}])),
    );
    let results = client(&url, Value::Array(steps)).await;
    assert_eq!(results[0]["pages"], json!([["query"]]));
    assert!(text(&results[1]).contains("Ada Lovelace"), "{}", results[1]);
    assert_eq!(results[1]["error"], json!(false));
    for (sql, result) in refused.iter().zip(&results[2..]) {
        let message = result["rpc_error"]
            .as_str()
            .unwrap_or_else(|| panic!("{sql} was not refused: {result}"));
        assert!(message.contains("agentgate policy"), "{message}");
        assert!(message.contains("read-customers"), "{message}");
        assert!(message.contains("public.financials"), "{message}");
    }
    // SQL run from a string, where no table check can see it, is refused by function.
    let laundered = client(
        &url,
        json!([["call", "query", {"sql": "SELECT query_to_xml('select * from financials', true, true, '')"}]]),
    )
    .await;
    let message = laundered[0]["rpc_error"].as_str().unwrap_or_default();
    assert!(
        message.contains("function query_to_xml() is denied"),
        "{}",
        laundered[0]
    );
    // PostgreSQL ran the allowed query and none of the refused ones.
    let log = pg.statements();
    assert!(
        log.contains("SELECT name FROM Customers ORDER BY id"),
        "{log}"
    );
    assert!(
        !log.to_lowercase().contains("financials"),
        "a refused query reached PostgreSQL:\n{log}"
    );
    // The same client straight at the server is not refused: the gateway is what refused.
    let direct = client(
        &server.url("/mcp"),
        json!([["call", "query", {"sql": refused[1]}]]),
    )
    .await;
    assert!(text(&direct[0]).contains("1000000"), "{}", direct[0]);
    gw.shutdown().await;
}

/// Servers coerce what agents send: the Python SDK reads "true" and "yes" as true and parses
/// JSON text in a string into the list it spells. A deny rule holds for what the server will
/// read, so those spellings are refused too; straight at the server, each is executed.
#[tokio::test(flavor = "multi_thread")]
async fn deny_conditions_hold_for_the_values_a_coercing_server_reads() {
    let server = python_server("streamable-http", None).await;
    let policy = "[policy]\npins_file = \"\"\n\
        [[rules]]\nname = \"everything\"\neffect = \"allow\"\nservers = [\"py\"]\n\
        [[rules]]\nname = \"no-forced-drops\"\neffect = \"deny\"\ntools = [\"drop_tables\"]\n\
        [[rules.params]]\npointer = \"/force\"\neq = true\n\
        [[rules]]\nname = \"keep-financials\"\neffect = \"deny\"\ntools = [\"drop_tables\"]\n\
        [[rules.params]]\npointer = \"/tables/0\"\neq = \"financials\"\n";
    let gw = gateway(&config("py", &server.url("/mcp"), policy)).await;
    let call = |args: Value| json!(["call", "drop_tables", args]);
    let spellings = [
        (
            json!({"tables": ["logs"], "force": "true"}),
            "no-forced-drops",
        ),
        (
            json!({"tables": ["logs"], "force": "yes"}),
            "no-forced-drops",
        ),
        (json!({"tables": "[\"financials\"]"}), "keep-financials"),
    ];
    let direct = client(
        &server.url("/mcp"),
        spellings.iter().map(|(a, _)| call(a.clone())).collect(),
    )
    .await;
    assert_eq!(text(&direct[0]), "dropped logs (forced) [drop 1]");
    assert_eq!(text(&direct[1]), "dropped logs (forced) [drop 2]");
    assert_eq!(text(&direct[2]), "dropped financials [drop 3]");
    // Listed first: until the gateway knows the schema, an omitted `force` may default to true,
    // and no-forced-drops would refuse the third call before keep-financials is asked.
    let mut steps: Vec<Value> = vec![json!(["list"])];
    steps.extend(spellings.iter().map(|(a, _)| call(a.clone())));
    steps.push(call(json!({"tables": ["logs"], "force": true})));
    steps.push(call(json!({"tables": ["logs"], "force": "false"})));
    let through = client(&gateway_url(&gw, "py"), Value::Array(steps)).await;
    let through = &through[1..];
    let rules = spellings.iter().map(|(_, r)| *r).chain(["no-forced-drops"]);
    for (result, rule) in through.iter().zip(rules) {
        let message = result["rpc_error"]
            .as_str()
            .unwrap_or_else(|| panic!("not refused by {rule}: {result}"));
        assert!(message.contains(&format!("rule \"{rule}\"")), "{message}");
    }
    // The allowed call is the server's fourth drop: none of the refused ones reached it.
    assert_eq!(text(&through[4]), "dropped logs [drop 4]", "{}", through[4]);
    gw.shutdown().await;
}

/// A deny condition on a whole object holds for what the server reads inside it: `{"force":
/// "yes"}` is `{"force": true}` to a `dict[str, bool]` parameter.
#[tokio::test(flavor = "multi_thread")]
async fn deny_conditions_on_objects_hold_for_what_the_server_reads_inside() {
    let server = python_server("streamable-http", None).await;
    let policy = "[policy]\npins_file = \"\"\n\
        [[rules]]\nname = \"everything\"\neffect = \"allow\"\nservers = [\"py\"]\n\
        [[rules]]\nname = \"no-forced-flags\"\neffect = \"deny\"\ntools = [\"set_flags\"]\n\
        [[rules.params]]\npointer = \"/flags\"\neq = { force = true }\n";
    let gw = gateway(&config("py", &server.url("/mcp"), policy)).await;
    let steps = json!([
        ["call", "set_flags", {"flags": {"force": "yes"}}],
        ["call", "set_flags", {"flags": "{\"force\": \"on\"}"}],
        ["call", "set_flags", {"flags": {"force": "no"}}],
    ]);
    let direct = client(&server.url("/mcp"), steps.clone()).await;
    assert_eq!(text(&direct[0]), "flags: force=True");
    assert_eq!(text(&direct[1]), "flags: force=True");
    assert_eq!(text(&direct[2]), "flags: force=False");
    let through = client(&gateway_url(&gw, "py"), steps).await;
    for refused in &through[..2] {
        let message = refused["rpc_error"]
            .as_str()
            .unwrap_or_else(|| panic!("not refused: {refused}"));
        assert!(message.contains("rule \"no-forced-flags\""), "{message}");
    }
    assert_eq!(through[2], direct[2]);
    gw.shutdown().await;
}

/// completion/complete is decided as access to what it completes: a prompt the agent may not
/// get has no completions to offer it either (they can name what the prompt guards).
#[tokio::test(flavor = "multi_thread")]
async fn completions_are_decided_as_the_prompt_they_complete() {
    let server = python_server("streamable-http", None).await;
    let policy = "[policy]\npins_file = \"\"\n\
        [[rules]]\nname = \"greeters\"\neffect = \"allow\"\nservers = [\"py\"]\n\
        tools = [\"echo\"]\nprompts = [\"greet\"]\n";
    let gw = gateway(&config("py", &server.url("/mcp"), policy)).await;
    let steps = json!([
        ["complete", "greet", "name", "A"],
        ["complete", "vault_summary", "account", ""],
    ]);
    let direct = client(&server.url("/mcp"), steps.clone()).await;
    assert_eq!(direct[0]["values"], json!(["Ada", "Alan"]));
    assert_eq!(direct[1]["values"], json!(["offshore-7", "payroll-main"]));
    let through = client(&gateway_url(&gw, "py"), steps).await;
    assert_eq!(through[0], direct[0]);
    let message = through[1]["rpc_error"]
        .as_str()
        .unwrap_or_else(|| panic!("completion of a denied prompt was answered: {}", through[1]));
    assert!(
        message.contains("complete an argument of prompt \"vault_summary\""),
        "{message}"
    );
    assert!(message.contains("no rule allows agent"), "{message}");
    gw.shutdown().await;

    // Completions come as the user types: they have a rate-limit bucket of their own, so
    // using it up leaves the prompt itself to be got.
    let policy = "[policy]\npins_file = \"\"\n\
        [[rules]]\nname = \"greeters\"\neffect = \"allow\"\nservers = [\"py\"]\n\
        prompts = [\"greet\"]\n[rules.rate]\nrequests = 2\nper = \"1h\"\n";
    let gw = gateway(&config("py", &server.url("/mcp"), policy)).await;
    let steps = json!([
        ["complete", "greet", "name", "A"],
        ["complete", "greet", "name", "Al"],
        ["complete", "greet", "name", "Ala"],
        ["prompt", "greet", {"name": "Ada"}],
        ["prompt", "greet", {"name": "Alan"}],
        ["prompt", "greet", {"name": "Grace"}],
    ]);
    let through = client(&gateway_url(&gw, "py"), steps).await;
    assert_eq!(through[0]["values"], json!(["Ada", "Alan"]), "{through:?}");
    assert_eq!(through[1]["values"], json!(["Alan"]), "{through:?}");
    let exhausted = |v: &Value| {
        v["rpc_error"]
            .as_str()
            .is_some_and(|m| m.contains("has used them"))
    };
    assert!(exhausted(&through[2]), "{through:?}");
    assert!(
        through[3]["text"]
            .as_str()
            .is_some_and(|t| t.contains("Ada")),
        "{through:?}"
    );
    assert!(
        through[4]["text"]
            .as_str()
            .is_some_and(|t| t.contains("Alan")),
        "{through:?}"
    );
    assert!(exhausted(&through[5]), "{through:?}");
    gw.shutdown().await;
}

/// POSTs `body` to server "py" of the gateway on `port`: the status and the reply's text.
async fn post_py(
    port: u16,
    headers: Vec<(&'static str, &'static str)>,
    body: String,
) -> (u16, String) {
    let (status, _, reply) = http(port, "POST", "/servers/py/mcp", &headers, body.as_bytes()).await;
    (status, String::from_utf8_lossy(&reply).into_owned())
}

/// A call refused for its `Mcp-Param-*` headers, after the policy allowed it, gives its
/// rate-limit token back: a client recovers from the refusal by listing and resending, and that
/// must still fit in the agent's quota.
#[tokio::test(flavor = "multi_thread")]
async fn a_call_refused_for_its_headers_costs_no_rate_limit_token() {
    let server = python_server("streamable-http", None).await;
    let policy = "[policy]\npins_file = \"\"\n\
        [[rules]]\nname = \"routers\"\neffect = \"allow\"\nservers = [\"py\"]\n\
        tools = [\"route_query\"]\n[rules.rate]\nrequests = 2\nper = \"1h\"\n";
    let gw = gateway(&config("py", &server.url("/mcp"), policy)).await;
    let port = addr(&gw).port();
    let list_body = || modern_request("tools/list", "", "");
    let (status, reply) = post_py(port, modern_headers("tools/list", None, &[]), list_body()).await;
    assert_eq!(status, 200, "{reply}");
    let call = modern_request(
        "tools/call",
        "route_query",
        r#"{"region":"eu","query":"q"}"#,
    );
    for claim in ["us", "us", "us"] {
        let headers = modern_headers(
            "tools/call",
            Some("route_query"),
            &[("Mcp-Param-Region", claim)],
        );
        let (status, reply) = post_py(port, headers, call.clone()).await;
        assert_eq!(status, 400, "{reply}");
        assert!(
            reply.contains("-32020") && reply.contains("Mcp-Param-Region says"),
            "{reply}"
        );
    }
    let good = modern_headers(
        "tools/call",
        Some("route_query"),
        &[("Mcp-Param-Region", "eu")],
    );
    for _ in 0..2 {
        let (status, reply) = post_py(port, good.clone(), call.clone()).await;
        assert_eq!(status, 200, "{reply}");
        assert!(reply.contains("q on eu/0"), "{reply}");
    }
    // The quota is two calls, and the refused ones took none of it.
    let (_, reply) = post_py(port, good.clone(), call.clone()).await;
    assert!(reply.contains("has used them"), "{reply}");
    // A call refused for its headers in observe mode with the quota used up took no token (it
    // was a would-deny), and gives none back: the next call is still a would-deny.
    let (status, reply) = post_py(port, modern_headers("tools/list", None, &[]), list_body()).await;
    assert_eq!(status, 200, "{reply}");
    gw.shutdown().await;
    let observing = policy.replace("[policy]\n", "[policy]\nmode = \"observe\"\n");
    let gw = gateway(&config("py", &server.url("/mcp"), &observing)).await;
    let port = addr(&gw).port();
    let (status, reply) = post_py(port, modern_headers("tools/list", None, &[]), list_body()).await;
    assert_eq!(status, 200, "{reply}");
    let bad = modern_headers(
        "tools/call",
        Some("route_query"),
        &[("Mcp-Param-Region", "us")],
    );
    for (headers, status) in [(&good, 200), (&good, 200), (&bad, 400), (&good, 200)] {
        let (got, reply) = post_py(port, headers.clone(), call.clone()).await;
        assert_eq!(got, status, "{reply}");
    }
    let metrics = gw.gateway.metrics.render();
    let count = |decision: &str| {
        let line =
            format!("agentgate_policy_decisions_total{{server=\"py\",decision=\"{decision}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    // tools/list and two calls allowed; the bad call and the last one would be denied.
    assert_eq!((count("allow"), count("would_deny")), (3, 2), "{metrics}");
    gw.shutdown().await;
}

/// On the HTTP+SSE transport answers arrive on the stream and POST bodies are ignored: a
/// refused call's error reaches the client on its stream, promptly, and the session goes on.
#[tokio::test(flavor = "multi_thread")]
async fn a_legacy_client_gets_refusals_on_its_stream() {
    let (server, gw) = legacy_behind_gateway().await;
    let steps = json!([
        ["call", "echo", {"message": "before"}],
        ["call", "wipe_disk", {}],
        ["call", "echo", {"message": "after"}],
    ]);
    let posts = |seen: &[Value]| seen.iter().filter(|r| r["method"] == "POST").count();
    let direct = client(&server.url("/sse"), steps.clone()).await;
    assert_eq!(text(&direct[1]), "wiped", "{}", direct[1]);
    let posted_direct = posts(&received(&server).await);
    let started = std::time::Instant::now();
    let results = client(&format!("http://{}/servers/legacy/sse", addr(&gw)), steps).await;
    assert_eq!(text(&results[0]), "before", "{}", results[0]);
    let message = results[1]["rpc_error"].as_str().unwrap_or_default();
    assert!(message.contains("rule \"no-wipe\""), "{}", results[1]);
    assert_eq!(text(&results[2]), "after", "{}", results[2]);
    // Not a client-side timeout (30 s) that happened to name nothing.
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "{:?}",
        started.elapsed()
    );
    // The same session's POSTs, less the refused call: it never reached the server.
    let posted_through = posts(&received(&server).await) - posted_direct;
    assert_eq!(posted_through, posted_direct - 1);
    gw.shutdown().await;
}

const LIST_POLICY: &str = "[policy]\npins_file = \"PINS\"\n\
    [[rules]]\nname = \"readers\"\neffect = \"allow\"\nservers = [\"peer\"]\n\
    tools = [\"read_*\", \"weather\", \"flip\", \"helper\", \"ask_model\"]\n\
    [[rules]]\nname = \"no-delete\"\neffect = \"deny\"\ntools = [\"delete_*\"]\nmessage = \"Deleting is for humans; ask #ops.\"\n";

/// From 2026-07-28 a server asks for sampling inside a result (`input_required`): the embedded
/// request gets the decision a sampling request would get, and a refused one never reaches the
/// agent.
#[tokio::test(flavor = "multi_thread")]
async fn input_requests_inside_results_are_decided_like_requests() {
    let server = policy_server().await;
    let body = r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"ask_model_later","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"sampling":{}}}}}"#;
    let headers = [
        ("Content-Type", "application/json"),
        ("Accept", "application/json, text/event-stream"),
        ("MCP-Protocol-Version", "2026-07-28"),
        ("Mcp-Method", "tools/call"),
        ("Mcp-Name", "ask_model_later"),
    ];
    let tools = "[policy]\npins_file = \"\"\n[[rules]]\nname = \"tools\"\neffect = \"allow\"\n\
                 tools = [\"ask_model_later\"]\n";
    let sampling = "[[rules]]\nname = \"sampling\"\neffect = \"allow\"\n\
                    methods = [\"sampling/createMessage\"]\n";
    for (policy, allowed) in [
        (tools.to_owned(), false),
        (format!("{tools}{sampling}"), true),
    ] {
        let scratch = scratch_dir("input-requests");
        let policy = format!("{policy}{}", audit_section(&scratch));
        let gw = gateway(&config("peer", &server.url("/mcp"), &policy)).await;
        let port = addr(&gw).port();
        let (status, head, reply) =
            http(port, "POST", "/servers/peer/mcp", &headers, body.as_bytes()).await;
        let reply = String::from_utf8_lossy(&reply);
        assert_eq!(status, 200, "{head}{reply}");
        if allowed {
            assert!(reply.contains("\"inputRequests\""), "{reply}");
        } else {
            assert!(!reply.contains("inputRequests"), "{reply}");
            assert!(
                reply.contains("sampling/createMessage") && reply.contains("refused"),
                "{reply}"
            );
            // Audited as a denial, with its reason.
            assert!(gw.shutdown().await);
            let log = String::from_utf8_lossy(&all_log_bytes(&scratch.join("audit"))).into_owned();
            assert!(
                log.contains("\"decision\":\"deny\"") && log.contains("input request"),
                "{log}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_are_filtered_across_pages_and_what_is_hidden_cannot_be_called() {
    let server = policy_server().await;
    let dir = tempfile::tempdir().unwrap();
    let pins = dir.path().join("pins.json");
    let policy = LIST_POLICY.replace("PINS", pins.to_str().unwrap());
    let gw = gateway(&config("peer", &server.url("/mcp"), &policy)).await;
    let url = gateway_url(&gw, "peer");
    let r = client(
        &url,
        json!([
            ["list"],
            ["call", "read_file", {"path": "/srv/a"}],
            ["call", "write_file", {"path": "/srv/a"}],
            ["call", "delete_all", {}],
            ["call", "helper", {}],
            ["call", "ask_model", {}]
        ]),
    )
    .await;
    // Every page is filtered; the cursors still lead through all of them.
    assert_eq!(
        r[0]["pages"],
        json!([["read_file"], ["weather"], ["flip"], ["ask_model"]])
    );
    assert_eq!(text(&r[1]), "read_file ran with {\"path\": \"/srv/a\"}");
    assert!(
        text(&r[2]).contains(
            "no rule allows agent \"unknown\" to call tool \"write_file\" on server \"peer\""
        ),
        "{}",
        r[2]
    );
    assert!(
        text(&r[3]).contains("rule \"no-delete\" denies"),
        "{}",
        r[3]
    );
    assert!(
        text(&r[3]).contains("Deleting is for humans; ask #ops."),
        "{}",
        r[3]
    );
    assert!(text(&r[4]).contains("Unicode tag characters"), "{}", r[4]);
    // The server asked the agent for a completion; no rule allows sampling, so the gateway
    // answered the server itself, and the agent's callback never ran.
    assert_eq!(r[5]["error"], json!(true), "{}", r[5]);
    assert!(text(&r[5]).contains("sampling refused"), "{}", r[5]);
    assert!(text(&r[5]).contains("sampling/createMessage"), "{}", r[5]);
    // First sight pinned every tool seen, on disk.
    let saved: Value = serde_json::from_slice(&std::fs::read(&pins).unwrap()).unwrap();
    assert!(
        saved["servers"]["peer"]["weather"]["pinned"]
            .as_str()
            .is_some_and(|h| h.len() == 64)
    );
    gw.shutdown().await;
}

/// A server's sampling request gives the agent's model the server's words: one whose system
/// prompt carries orders to the model is refused (the server gets an error, the agent's
/// callback never runs) even where a rule allows sampling, which an ordinary one gets.
#[tokio::test(flavor = "multi_thread")]
async fn sampling_requests_with_orders_to_the_model_are_refused() {
    let server = policy_server().await;
    let gw = gateway(&config("peer", &server.url("/mcp"), ALLOW_ALL)).await;
    let r = client(
        &gateway_url(&gw, "peer"),
        json!([
            ["call", "ask_model", {}],
            ["call", "ask_model_poisoned", {}]
        ]),
    )
    .await;
    assert_eq!(text(&r[0]), "model said: hello", "{}", r[0]);
    assert_eq!(r[1]["error"], json!(true), "{}", r[1]);
    let refusal = text(&r[1]);
    assert!(
        refusal.contains("sampling refused")
            && refusal.contains("sampling/createMessage")
            && refusal.contains("orders to the model"),
        "{refusal}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rug_pull_hides_the_tool_until_an_operator_pins_it_again() {
    let server = policy_server().await;
    let dir = tempfile::tempdir().unwrap();
    let pins = dir.path().join("pins.json");
    let config_path = dir.path().join("agentgate.toml");
    let text_config = config(
        "peer",
        &server.url("/mcp"),
        &LIST_POLICY.replace("PINS", pins.to_str().unwrap()),
    );
    std::fs::write(&config_path, text_config + &audit_section(dir.path())).unwrap();
    let gw = agentgate::cli::start(agentgate::config::Config::load(&config_path).unwrap())
        .await
        .unwrap();
    let url = gateway_url(&gw, "peer");
    let r = client(
        &url,
        json!([["list"], ["call", "weather", {"city": "Paris"}], ["call", "flip", {}], ["list"], ["call", "weather", {"city": "Paris"}]]),
    )
    .await;
    assert_eq!(r[0]["pages"][1], json!(["weather"]));
    assert_eq!(r[1]["error"], json!(false));
    // The description changed between two lists: hidden, and calls refused.
    assert_eq!(
        r[3]["pages"],
        json!([["read_file"], [], ["flip"], ["ask_model"]])
    );
    let refusal = text(&r[4]);
    assert!(refusal.contains("changed since it was pinned"), "{refusal}");
    assert!(
        refusal.contains("agentgate policy pin --server peer --tool weather"),
        "{refusal}"
    );
    let saved: Value = serde_json::from_slice(&std::fs::read(&pins).unwrap()).unwrap();
    let pending = saved["servers"]["peer"]["weather"]["pending"]
        .as_str()
        .unwrap()
        .to_owned();
    // The operator reviews and accepts it with the CLI, which updates the pin file...
    let mut pin = Command::new(env!("CARGO_BIN_EXE_agentgate"));
    pin.args([
        "policy", "pin", "--server", "peer", "--tool", "weather", "--config",
    ])
    .arg(&config_path);
    let stdout = stdout_of(pin).await;
    assert!(
        stdout.contains(&format!("pinned peer/weather at {pending}")),
        "{stdout}"
    );
    // ...and, since this config's admin port is 0 (the CLI cannot find the daemon), reloads it
    // through the admin API.
    let (status, _, body) = http(
        gw.bound.admin.unwrap().port(),
        "POST",
        "/policy/reload",
        &[],
        b"",
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let r = client(
        &url,
        json!([["list"], ["call", "weather", {"city": "Paris"}]]),
    )
    .await;
    assert_eq!(r[0]["pages"][1], json!(["weather"]), "{}", r[0]);
    assert_eq!(r[1]["error"], json!(false), "{}", r[1]);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn observe_mode_forwards_everything_and_counts_what_enforce_would_deny() {
    let server = policy_server().await;
    let policy = "[policy]\nmode = \"observe\"\npins_file = \"\"\n";
    let gw = gateway(&config("peer", &server.url("/mcp"), policy)).await;
    let r = client(
        &gateway_url(&gw, "peer"),
        json!([["list"], ["call", "write_file", {"path": "/x"}]]),
    )
    .await;
    assert_eq!(r[0]["pages"].as_array().unwrap().len(), 4);
    assert_eq!(r[0]["pages"][0], json!(["read_file", "write_file"]));
    assert_eq!(text(&r[1]), "write_file ran with {\"path\": \"/x\"}");
    let (_, _, metrics) = http(gw.bound.admin.unwrap().port(), "GET", "/metrics", &[], b"").await;
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics
            .contains("agentgate_policy_decisions_total{server=\"peer\",decision=\"would_deny\"}"),
        "{metrics}"
    );
    assert!(!metrics.contains("decision=\"deny\""), "{metrics}");
    assert!(
        metrics.contains(
            "agentgate_policy_list_entries_hidden_total{server=\"peer\",decision=\"would_deny\"} "
        ),
        "{metrics}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_reload_is_refused_and_the_old_policy_keeps_serving() {
    let server = policy_server().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agentgate.toml");
    let allow = "[policy]\npins_file = \"\"\n[[rules]]\nname = \"readers\"\neffect = \"allow\"\ntools = [\"read_file\"]\n";
    std::fs::write(
        &path,
        config("peer", &server.url("/mcp"), allow) + &audit_section(dir.path()),
    )
    .unwrap();
    let gw = agentgate::cli::start(agentgate::config::Config::load(&path).unwrap())
        .await
        .unwrap();
    let admin = gw.bound.admin.unwrap().port();
    let url = gateway_url(&gw, "peer");
    std::fs::write(
        &path,
        config(
            "peer",
            &server.url("/mcp"),
            &allow.replace("read_file\"]", "read_file\"]\nregex = 1"),
        ),
    )
    .unwrap();
    let (status, _, body) = http(admin, "POST", "/policy/reload", &[], b"").await;
    let body = String::from_utf8_lossy(&body).to_string();
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("agentgate.toml:") && body.contains("unknown field `regex`"),
        "{body}"
    );
    let r = client(
        &url,
        json!([["call", "read_file", {}], ["call", "write_file", {}]]),
    )
    .await;
    assert_eq!(r[0]["error"], json!(false), "{}", r[0]);
    assert!(r[1]["rpc_error"].is_string(), "{}", r[1]);
    // A good file takes effect at once.
    std::fs::write(
        &path,
        config(
            "peer",
            &server.url("/mcp"),
            &allow.replace("[\"read_file\"]", "[\"write_file\"]"),
        ),
    )
    .unwrap();
    let (status, _, body) = http(admin, "POST", "/policy/reload", &[], b"").await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let r = client(
        &url,
        json!([["call", "read_file", {}], ["call", "write_file", {}]]),
    )
    .await;
    assert!(r[0]["rpc_error"].is_string(), "{}", r[0]);
    assert_eq!(r[1]["error"], json!(false), "{}", r[1]);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limits_follow_the_agent_across_new_sessions() {
    let server = policy_server().await;
    let policy = "[policy]\npins_file = \"\"\n\
        [[rules]]\nname = \"two-reads\"\neffect = \"allow\"\ntools = [\"read_file\"]\n\
        [rules.rate]\nrequests = 2\nper = \"1h\"\n";
    let gw = gateway(&config("peer", &server.url("/mcp"), policy)).await;
    let url = gateway_url(&gw, "peer");
    let first = client(
        &url,
        json!([["call", "read_file", {}], ["call", "read_file", {}]]),
    )
    .await;
    assert_eq!(first[0]["error"], json!(false), "{}", first[0]);
    assert_eq!(first[1]["error"], json!(false), "{}", first[1]);
    // A new client process opens a new MCP session: the bucket is the agent's, still empty.
    let second = client(&url, json!([["call", "read_file", {}]])).await;
    let refusal = text(&second[0]);
    assert!(
        refusal.contains("rule \"two-reads\" allows 2 requests per 1h"),
        "{refusal}"
    );
    gw.shutdown().await;
}

/// An argument the agent leaves out is the schema's default to the server (FastMCP's
/// `steps: int = 5`): a deny condition on it tests that default once the tool is listed, holds
/// while the schema is unknown, and after a restart tests the default the pin file kept.
#[tokio::test(flavor = "multi_thread")]
async fn deny_conditions_on_omitted_arguments_test_the_schemas_default() {
    let server = python_server("streamable-http", None).await;
    let dir = tempfile::tempdir().unwrap();
    let pins = dir.path().join("pins.json");
    let policy = format!(
        "[policy]\npins_file = \"{}\"\n\
        [[rules]]\nname = \"everything\"\neffect = \"allow\"\nservers = [\"py\"]\n\
        [[rules]]\nname = \"short-runs-only\"\neffect = \"deny\"\ntools = [\"long_running\"]\n\
        [[rules.params]]\npointer = \"/steps\"\nrange = {{ min = 3 }}\n",
        pins.display()
    );
    let refusal = |result: &Value| -> String {
        result["rpc_error"]
            .as_str()
            .unwrap_or_else(|| panic!("the default 5 steps were not refused: {result}"))
            .to_owned()
    };
    let gw = gateway(&config("py", &server.url("/mcp"), &policy)).await;
    let through = client(
        &gateway_url(&gw, "py"),
        json!([
            ["call", "long_running", {"delay": 0}],
            ["call", "long_running", {"steps": 1, "delay": 0}],
            ["list"],
            ["call", "long_running", {"delay": 0}],
        ]),
    )
    .await;
    // Before any listing the default is unknown: refused, with the way out named.
    let unknown = refusal(&through[0]);
    assert!(unknown.contains("rule \"short-runs-only\""), "{unknown}");
    assert!(unknown.contains("/steps was omitted"), "{unknown}");
    assert!(unknown.contains("tools/list"), "{unknown}");
    assert_eq!(text(&through[1]), "done 1 steps", "{}", through[1]);
    let known = refusal(&through[3]);
    assert!(known.contains("rule \"short-runs-only\""), "{known}");
    assert!(!known.contains("was omitted"), "{known}");
    gw.shutdown().await;
    // Restarted, the gateway reads the default from the pin file, before any listing.
    let gw = gateway(&config("py", &server.url("/mcp"), &policy)).await;
    let through = client(
        &gateway_url(&gw, "py"),
        json!([["call", "long_running", {"delay": 0}]]),
    )
    .await;
    let kept = refusal(&through[0]);
    assert!(kept.contains("rule \"short-runs-only\""), "{kept}");
    assert!(!kept.contains("was omitted"), "{kept}");
    gw.shutdown().await;
}

/// Tool poisoning through a real server (the Python SDK's, with `--poisoned`): a tool whose
/// description hides orders to the model in an `<IMPORTANT>` block, and a look-alike of
/// `echo`'s name, are hidden from the listing and their calls refused, while the server's
/// other tools pass. Pinning the poisoned definition in `[[policy.pins]]` accepts it.
#[tokio::test(flavor = "multi_thread")]
async fn poisoned_tools_and_look_alike_names_are_hidden_and_refused() {
    let server = python_peer(
        "server.py",
        &[
            "--transport".into(),
            "streamable-http".into(),
            "--poisoned".into(),
        ],
    )
    .await;
    let pins = scratch_dir("poisoned").join("pins.json");
    let policy = format!(
        "[policy]\npins_file = \"{}\"\n[[rules]]\nname = \"all\"\neffect = \"allow\"\n",
        pins.display()
    );
    let gw = gateway(&config("py", &server.url("/mcp"), &policy)).await;
    let steps = json!([
        ["list"],
        ["call", "add_numbers", {"a": 1, "b": 2}],
        ["call", "ech\u{43e}", {"message": "hi"}],
        ["call", "echo", {"message": "hi"}],
        ["prompts"],
        ["prompt", "briefing", {}],
        ["prompt", "summary", {}],
        ["prompt", "greet", {"name": "Ada"}]
    ]);
    let r = client(&gateway_url(&gw, "py"), steps.clone()).await;
    let listed: Vec<&str> = r[0]["pages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p.as_array().unwrap().iter().map(|n| n.as_str().unwrap()))
        .collect();
    assert!(listed.contains(&"echo"), "{listed:?}");
    assert!(!listed.contains(&"add_numbers"), "{listed:?}");
    assert!(!listed.contains(&"ech\u{43e}"), "{listed:?}");
    let refusal = text(&r[1]);
    assert!(refusal.contains("orders to the model"), "{refusal}");
    let refusal = text(&r[2]);
    assert!(refusal.contains("look-alike"), "{refusal}");
    assert_eq!(text(&r[3]), "hi");
    assert!(
        !reached(&server, "add_numbers").await,
        "a refused call reached the server"
    );
    // (The record names what reached the server: the call let through is there.)
    assert!(
        reached(&server, "echo").await,
        "the server's record names no call"
    );
    // Prompts: the one whose listing carries orders is hidden and not served; the one whose
    // text (what prompts/get gives the model) carries them is listed but its text withheld.
    let prompts = r[4]["names"].as_array().expect("names");
    assert!(prompts.contains(&json!("greet")), "{prompts:?}");
    assert!(prompts.contains(&json!("summary")), "{prompts:?}");
    assert!(!prompts.contains(&json!("briefing")), "{prompts:?}");
    let refusal = r[5]["rpc_error"].as_str().expect("refused");
    assert!(
        refusal.contains("prompt \"briefing\"") && refusal.contains("orders to the model"),
        "{refusal}"
    );
    assert!(
        !reached(&server, "briefing").await,
        "a refused prompts/get reached the server"
    );
    let refusal = r[6]["rpc_error"].as_str().expect("refused");
    assert!(
        refusal.contains("prompts/get") && refusal.contains("orders to the model"),
        "{refusal}"
    );
    assert_eq!(
        r[7]["text"],
        json!("Please write a friendly greeting for Ada."),
        "{}",
        r[7]
    );
    gw.shutdown().await;
    // Restarted on the same pin file, a call made without listing first is refused still, and
    // so is the hidden prompt: the file keeps what the last definition or listing seen carries.
    let gw = gateway(&config("py", &server.url("/mcp"), &policy)).await;
    let r = client(
        &gateway_url(&gw, "py"),
        json!([
            ["call", "add_numbers", {"a": 1, "b": 2}],
            ["call", "echo", {"message": "hi"}],
            ["prompt", "briefing", {}],
            ["prompt", "greet", {"name": "Ada"}]
        ]),
    )
    .await;
    assert!(text(&r[0]).contains("orders to the model"), "{}", r[0]);
    assert_eq!(text(&r[1]), "hi");
    let refusal = r[2]["rpc_error"]
        .as_str()
        .expect("refused after the restart");
    assert!(refusal.contains("prompt \"briefing\""), "{refusal}");
    assert!(
        !reached(&server, "briefing").await,
        "a refused prompts/get reached the server after the restart"
    );
    assert_eq!(
        r[3]["text"],
        json!("Please write a friendly greeting for Ada."),
        "{}",
        r[3]
    );
    gw.shutdown().await;
    // An operator who read the definition pins it (the hash the warning gives; the pin file
    // has it too): accepted.
    let file: Value = serde_json::from_slice(&std::fs::read(&pins).unwrap()).unwrap();
    let hash = file["servers"]["py"]["add_numbers"]["pinned"]
        .as_str()
        .expect("pinned")
        .to_owned();
    let accepted = format!(
        "{policy}[[policy.pins]]\nserver = \"py\"\ntool = \"add_numbers\"\nsha256 = \"{hash}\"\n"
    );
    let gw = gateway(&config("py", &server.url("/mcp"), &accepted)).await;
    let r = client(&gateway_url(&gw, "py"), steps).await;
    assert_eq!(text(&r[1]), "3");
    gw.shutdown().await;
}

/// A server that says its tools changed (`notifications/tools/list_changed`) gets no call
/// judged by a definition the agent saw before: each tool is refused until the agent lists the
/// tools again, and then passes (its definition is still the pinned one).
#[tokio::test(flavor = "multi_thread")]
async fn tools_announced_changed_are_refused_until_listed_again() {
    let server = policy_server().await;
    let gw = gateway(&config("peer", &server.url("/mcp"), ALLOW_ALL)).await;
    let paris = json!({"city": "Paris"});
    let r = client(
        &gateway_url(&gw, "peer"),
        json!([
            ["list"],
            ["call", "weather", paris],
            ["call", "announce", {}],
            ["call", "weather", paris],
            ["list"],
            ["call", "weather", paris]
        ]),
    )
    .await;
    assert_eq!(text(&r[1]), "weather ran with {\"city\": \"Paris\"}");
    assert_eq!(text(&r[2]), "announced");
    let refusal = text(&r[3]);
    assert!(
        refusal.contains("notifications/tools/list_changed") && refusal.contains("tools/list"),
        "{refusal}"
    );
    assert_eq!(text(&r[5]), "weather ran with {\"city\": \"Paris\"}");
    gw.shutdown().await;
}

/// A server may not ask the user for a credential in a form (MCP: credentials go through URL
/// mode), nor send the user to a URL that is not HTTPS: such elicitations never reach the
/// agent's user, and the server gets an error. Ordinary ones pass. (The Python SDK on both
/// ends.)
#[tokio::test(flavor = "multi_thread")]
async fn elicitations_asking_for_credentials_in_forms_or_to_plain_http_urls_are_refused() {
    let server = policy_server().await;
    let gw = gateway(&config("peer", &server.url("/mcp"), ALLOW_ALL)).await;
    let r = client(
        &gateway_url(&gw, "peer"),
        json!([
            ["call", "ask_user", {"kind": "form", "field": "city"}],
            ["call", "ask_user", {"kind": "form", "field": "githubToken"}],
            ["call", "ask_user", {"kind": "url", "url": "https://auth.example.com/login"}],
            ["call", "ask_user", {"kind": "url", "url": "http://auth.example.com/login"}],
        ]),
    )
    .await;
    assert_eq!(text(&r[0]), "user answered: accept", "{}", r[0]);
    assert!(
        text(&r[1]).starts_with("elicitation refused") && text(&r[1]).contains("URL mode"),
        "{}",
        r[1]
    );
    assert_eq!(text(&r[2]), "user answered: accept", "{}", r[2]);
    assert!(
        text(&r[3]).starts_with("elicitation refused") && text(&r[3]).contains("https://"),
        "{}",
        r[3]
    );
    gw.shutdown().await;
}

/// A flow rule (`[rules.after]`): once an agent has read a file it may not write one within
/// the window, in that session or a new one (the caller is the same); before the read, writes
/// pass. (The Python SDK on both ends.)
#[tokio::test(flavor = "multi_thread")]
async fn a_flow_rule_refuses_a_write_after_a_read() {
    let server = policy_server().await;
    let policy = "[policy]\npins_file = \"\"\n[[rules]]\nname = \"all\"\neffect = \"allow\"\n\
        [[rules]]\nname = \"no-write-after-read\"\neffect = \"deny\"\ntools = [\"write_file\"]\n\
        message = \"This agent read private files.\"\n\
        [rules.after]\ntools = [\"read_file\"]\nwithin = \"5m\"\n";
    let gw = gateway(&config("peer", &server.url("/mcp"), policy)).await;
    let url = gateway_url(&gw, "peer");
    let r = client(
        &url,
        json!([["call", "write_file", {"path": "/a"}], ["call", "read_file", {"path": "/secret"}],
               ["call", "write_file", {"path": "/b"}]]),
    )
    .await;
    assert_eq!(text(&r[0]), "write_file ran with {\"path\": \"/a\"}");
    assert_eq!(text(&r[1]), "read_file ran with {\"path\": \"/secret\"}");
    let refusal = text(&r[2]);
    assert!(
        refusal.contains("no-write-after-read") && refusal.contains("read private files"),
        "{refusal}"
    );
    let r = client(&url, json!([["call", "write_file", {"path": "/c"}]])).await;
    assert!(text(&r[0]).contains("no-write-after-read"), "{}", r[0]);
    gw.shutdown().await;
}
