//! Every strict-input rule from the wire: the agent gets the status and a JSON-RPC error that
//! names the problem, and the upstream (a real MCP server that records what reaches it) gets
//! nothing.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::common::*;

const JSON: (&str, &str) = ("Content-Type", "application/json");
const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

struct Case {
    name: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    body: Vec<u8>,
    status: u16,
    code: i64,
    message: &'static str,
}

fn case(
    name: &'static str,
    body: impl Into<Vec<u8>>,
    status: u16,
    code: i64,
    message: &'static str,
) -> Case {
    Case {
        name,
        headers: vec![JSON],
        body: body.into(),
        status,
        code,
        message,
    }
}

fn cases() -> Vec<Case> {
    let deep = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"params\":{{\"a\":{}{}}}}}",
        "[".repeat(70),
        "]".repeat(70)
    );
    let call = |extra: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"x"}}}}{extra}}}"#
        )
    };
    let mut v = vec![
        case(
            "duplicate key",
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/list"}"#,
            400,
            -32700,
            "duplicate key \"method\"",
        ),
        case(
            "duplicate key after unescaping",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","n\u0061me":"rm"}}"#,
            400,
            -32700,
            "duplicate key \"name\"",
        ),
        case(
            "argument repeated in other letter case",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x","MESSAGE":"y"}}}"#,
            400,
            -32700,
            "key \"MESSAGE\" repeats another key of its object in other letter case",
        ),
        case(
            "arguments in other letter case",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","Arguments":{"message":"x"}}}"#,
            400,
            -32600,
            "member \"Arguments\" differs from \"arguments\" only in letter case",
        ),
        case(
            "key repeated with a character that folds to ASCII",
            // U+017F (long s) folds to S in Go's encoding/json.
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x","me\u017fsage":"y"}}}"#,
            400,
            -32700,
            "in other letter case",
        ),
        case(
            "invalid UTF-8",
            b"{\"jsonrpc\":\"2.0\",\"id\":\"\xff\",\"method\":\"ping\"}".to_vec(),
            400,
            -32700,
            "invalid UTF-8",
        ),
        case(
            "lone surrogate",
            r#"{"jsonrpc":"2.0","id":"\ud800","method":"ping"}"#,
            400,
            -32700,
            "lone UTF-16 surrogate",
        ),
        case(
            "byte order mark",
            [&b"\xEF\xBB\xBF"[..], PING.as_bytes()].concat(),
            400,
            -32700,
            "byte order mark",
        ),
        case(
            "NaN",
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":NaN}}"#,
            400,
            -32700,
            "invalid",
        ),
        case(
            "Infinity",
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":Infinity}}"#,
            400,
            -32700,
            "invalid",
        ),
        case(
            "leading zero",
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":007}}"#,
            400,
            -32700,
            "invalid number",
        ),
        case(
            "trailing data",
            format!("{PING} {{}}"),
            400,
            -32700,
            "trailing data",
        ),
        case("too deep", deep, 400, -32700, "nesting deeper than 64"),
        case(
            "tool call without an id",
            r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo","arguments":{}}}"#,
            400,
            -32600,
            "must be a notifications/* method",
        ),
        case(
            "null id",
            r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
            400,
            -32600,
            "\"id\" must be a string or an integer",
        ),
        case(
            "fractional id",
            r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
            400,
            -32600,
            "\"id\" must be",
        ),
        case(
            "boolean id",
            r#"{"jsonrpc":"2.0","id":true,"method":"ping"}"#,
            400,
            -32600,
            "\"id\" must be",
        ),
        case(
            "batch in 2025-11-25",
            format!("[{PING}]"),
            400,
            -32600,
            "batches are not allowed in protocol revision 2025-11-25",
        ),
        case(
            "not JSON-RPC 2.0",
            r#"{"id":1,"method":"ping"}"#,
            400,
            -32600,
            "\"jsonrpc\" must be \"2.0\"",
        ),
        case(
            "unknown member",
            r#"{"jsonrpc":"2.0","id":1,"method":"ping","methods":"x"}"#,
            400,
            -32600,
            "unknown member \"methods\"",
        ),
        case(
            "tools/call without a name",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#,
            400,
            -32600,
            "params.name",
        ),
        case("empty body", "", 400, -32700, "empty body"),
    ];
    for c in &mut v {
        if c.name != "batch in 2025-11-25" {
            continue;
        }
        c.headers.push(("MCP-Protocol-Version", "2025-11-25"));
    }
    let mut mismatch = case(
        "Mcp-Name differs from the body",
        call(""),
        400,
        -32020,
        "header Mcp-Name says \"ls\" but the body says \"echo\"",
    );
    mismatch.headers.extend([
        ("MCP-Protocol-Version", "2026-07-28"),
        ("Mcp-Method", "tools/call"),
        ("Mcp-Name", "ls"),
    ]);
    v.push(mismatch);
    let mut method = case(
        "Mcp-Method differs from the body",
        call(""),
        400,
        -32020,
        "header Mcp-Method says \"tools/list\"",
    );
    method.headers.extend([
        ("MCP-Protocol-Version", "2026-07-28"),
        ("Mcp-Method", "tools/list"),
        ("Mcp-Name", "echo"),
    ]);
    v.push(method);
    let mut missing = case(
        "2026-07-28 without Mcp-Method",
        call(""),
        400,
        -32600,
        "Mcp-Method header is required",
    );
    missing.headers.push(("MCP-Protocol-Version", "2026-07-28"));
    v.push(missing);
    let mut unknown_rev = case(
        "unknown protocol revision",
        PING,
        400,
        -32600,
        "unsupported MCP-Protocol-Version \"1999-01-01\"",
    );
    unknown_rev
        .headers
        .push(("MCP-Protocol-Version", "1999-01-01"));
    v.push(unknown_rev);
    let mut dup_auth = case(
        "duplicate session header",
        PING,
        400,
        -32600,
        "mcp-session-id appears more than once",
    );
    dup_auth
        .headers
        .extend([("Mcp-Session-Id", "a"), ("Mcp-Session-Id", "b")]);
    v.push(dup_auth);
    let mut underscore = case("underscore header", PING, 400, -32600, "underscore");
    underscore.headers.push(("Mcp_Session_Id", "a"));
    v.push(underscore);
    let mut gzip = case(
        "compressed body",
        PING,
        415,
        -32000,
        "Content-Encoding \"gzip\"",
    );
    gzip.headers.push(("Content-Encoding", "gzip"));
    v.push(gzip);
    let mut text = case(
        "not JSON content type",
        PING,
        415,
        -32000,
        "Content-Type must be application/json",
    );
    text.headers = vec![("Content-Type", "text/plain")];
    v.push(text);
    // The body is checked as UTF-8; an upstream honouring another charset would read other
    // JSON ("+ACIALAAi-" is `","` in UTF-7).
    let mut utf7 = case(
        "charset other than UTF-8",
        PING,
        415,
        -32000,
        "Content-Type must be application/json",
    );
    utf7.headers = vec![("Content-Type", "application/json; charset=utf-7")];
    v.push(utf7);
    v.push(case(
        "exponent cut to 32 bits by simd-json",
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":1e-4294967296}}"#,
        400,
        -32700,
        "exponent",
    ));
    let mut origin = case(
        "foreign Origin",
        PING,
        403,
        -32000,
        "Origin \"http://evil.example\" is not allowed",
    );
    origin.headers.push(("Origin", "http://evil.example"));
    v.push(origin);
    // DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1.
    let mut host = case(
        "foreign Host",
        PING,
        403,
        -32000,
        "Host \"evil.example:15001\" is not served here",
    );
    host.headers.push(("Host", "evil.example:15001"));
    v.push(host);
    v
}

#[tokio::test(flavor = "multi_thread")]
async fn each_bad_input_gets_a_named_error_and_never_reaches_the_upstream() {
    let (server, gw) = python_behind_gateway("[limits]\nmax_request_bytes = 4096\n").await;
    let port = addr(&gw).port();
    for c in cases() {
        let (status, _, body) = http(port, "POST", "/servers/py/mcp", &c.headers, &c.body).await;
        assert_eq!(
            status,
            c.status,
            "{}: {}",
            c.name,
            String::from_utf8_lossy(&body)
        );
        let (code, message) = rpc_error(&body);
        assert_eq!(code, c.code, "{}: {message}", c.name);
        assert!(
            message.contains(c.message),
            "{}: message {message:?} lacks {:?}",
            c.name,
            c.message
        );
    }
    // Size: 413 for an announced and for a chunked (unannounced) oversized body.
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{}"}}}}"#,
        "x".repeat(5000)
    );
    let (status, _, body) = http(port, "POST", "/servers/py/mcp", &[JSON], big.as_bytes()).await;
    assert_eq!(status, 413);
    assert!(rpc_error(&body).1.contains("larger than 4096 bytes"));
    let mut chunked = b"POST /servers/py/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    chunked.extend_from_slice(format!("{:x}\r\n{big}\r\n0\r\n\r\n", big.len()).as_bytes());
    let (status, head, _) = raw_exchange(port, &chunked).await;
    assert_eq!(status, 413);
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );

    // GET and DELETE are held to the revision header too.
    for method in ["GET", "DELETE"] {
        let (status, _, body) = http(
            port,
            method,
            "/servers/py/mcp",
            &[
                ("Accept", "text/event-stream"),
                ("MCP-Protocol-Version", "1999-01-01"),
            ],
            b"",
        )
        .await;
        assert_eq!(status, 400, "{method}");
        assert!(
            rpc_error(&body)
                .1
                .contains("unsupported MCP-Protocol-Version \"1999-01-01\""),
            "{method}: {}",
            rpc_error(&body).1
        );
    }

    // Nor may they carry headers that describe a body they do not have.
    for (method, header) in [("GET", "Mcp-Method"), ("DELETE", "Mcp-Name")] {
        let (status, _, body) = http(
            port,
            method,
            "/servers/py/mcp",
            &[("Accept", "text/event-stream"), (header, "tools/call")],
            b"",
        )
        .await;
        assert_eq!(status, 400, "{method}");
        assert!(
            rpc_error(&body).1.contains("describes a POST body"),
            "{method}: {}",
            rpc_error(&body).1
        );
    }

    let seen = received(&server).await;
    assert!(
        seen.is_empty(),
        "the upstream received refused requests: {seen:?}"
    );

    // The same gateway still forwards a good request afterwards, addressed by IP or as
    // localhost.
    let (status, _, _) = initialize(port, "py", &[]).await;
    assert_eq!(status, 200);
    let (status, _, _) = initialize(port, "py", &[("Host", "localhost:15001")]).await;
    assert_eq!(status, 200);
    assert_eq!(received(&server).await.len(), 2);
    // A rebound page cannot read the admin listener either (its GETs carry no Origin).
    let admin = gw.bound.admin.unwrap().port();
    let (status, _, body) = http(admin, "GET", "/metrics", &[("Host", "evil.example")], b"").await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    let (status, _, _) = http(admin, "GET", "/metrics", &[], b"").await;
    assert_eq!(status, 200);
    // Nor can a page of another origin post to it (a reload needs no answer to do harm).
    let (status, _, body) = http(
        admin,
        "POST",
        "/policy/reload",
        &[("Origin", "http://evil.example")],
        b"",
    )
    .await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert!(
        String::from_utf8_lossy(&body).contains("evil.example"),
        "{}",
        String::from_utf8_lossy(&body)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_pass_only_in_2025_03_26() {
    let (server, gw) = python_behind_gateway("").await;
    let port = addr(&gw).port();
    let batch = format!("[{PING},{{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}}]");
    let (status, _, _) = http(
        port,
        "POST",
        "/servers/py/mcp",
        &[JSON, ("MCP-Protocol-Version", "2025-06-18")],
        batch.as_bytes(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(received(&server).await.is_empty());
    // Allowed through to the upstream in 2025-03-26 (whatever the upstream then makes of it).
    let accept = ("Accept", "application/json, text/event-stream");
    let (_, _, _) = http(
        port,
        "POST",
        "/servers/py/mcp",
        &[JSON, accept, ("MCP-Protocol-Version", "2025-03-26")],
        batch.as_bytes(),
    )
    .await;
    assert_eq!(received(&server).await.len(), 1);
    let init_batch = r#"[{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}]"#;
    let (status, _, body) = http(
        port,
        "POST",
        "/servers/py/mcp",
        &[JSON, ("MCP-Protocol-Version", "2025-03-26")],
        init_batch.as_bytes(),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        rpc_error(&body)
            .1
            .contains("initialize cannot be part of a batch")
    );
    assert_eq!(received(&server).await.len(), 1);
}

/// An upstream that answers every request with `body` as application/json. The SDKs peers
/// use no longer answer batches at all, so a batch answer is scripted.
async fn canned_upstream(body: &'static str) -> u16 {
    canned_upstream_as("application/json", body).await
}

/// An upstream that answers every request with `body` labelled `content_type`.
async fn canned_upstream_as(content_type: &'static str, body: &'static str) -> u16 {
    scripted_upstream(move |_| {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    })
    .await
}

/// Starts a gateway in front of the canned upstream on `port` and POSTs `body` to it; the
/// gateway is returned for shutdown.
async fn post_to_canned(
    port: u16,
    revision: &str,
    body: &[u8],
) -> (agentgate::cli::Running, (u16, String, Vec<u8>)) {
    let gw = gateway(&gateway_config(
        &[(
            "canned",
            &format!("http://127.0.0.1:{port}/mcp"),
            "streamable-http",
            "",
        )],
        "",
    ))
    .await;
    let answer = http(
        addr(&gw).port(),
        "POST",
        "/servers/canned/mcp",
        &[
            JSON,
            ("Accept", "application/json, text/event-stream"),
            ("MCP-Protocol-Version", revision),
        ],
        body,
    )
    .await;
    (gw, answer)
}

/// A response labelled with a charset other than UTF-8 would be other text to an agent that
/// honours the label than what the gateway checked: refused (502, never relayed). A UTF-8 one is
/// relayed labelled with the bare media type.
#[tokio::test(flavor = "multi_thread")]
async fn responses_in_another_charset_are_refused_and_the_rest_relabelled() {
    const ANSWER: &str = "{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"text\":\"caf\u{e9}\"}}";
    const EVENT: &str = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}\n\n";
    for (content_type, body, relayed_as) in [
        ("application/json; charset=iso-8859-1", ANSWER, None),
        ("text/event-stream; charset=\"windows-1252\"", EVENT, None),
        (
            "application/json; charset=UTF-8",
            ANSWER,
            Some("application/json"),
        ),
        ("Application/JSON", ANSWER, Some("application/json")),
        (
            "application/json;charset=\" utf8\"",
            ANSWER,
            Some("application/json"),
        ),
        (
            "text/event-stream; charset=utf-8",
            EVENT,
            Some("text/event-stream"),
        ),
    ] {
        let port = canned_upstream_as(content_type, body).await;
        let (gw, (status, head, answer)) = post_to_canned(
            port,
            "2025-06-18",
            br#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#,
        )
        .await;
        let text = String::from_utf8_lossy(&answer);
        match relayed_as {
            None => {
                assert_eq!(status, 502, "{content_type}: {text}");
                let (_, message) = rpc_error(&answer);
                assert!(message.contains("charset"), "{content_type}: {message}");
            }
            Some(media_type) => {
                assert_eq!(status, 200, "{content_type}: {text}");
                let label = format!("content-type: {media_type}");
                assert!(
                    head.lines().any(|l| l.eq_ignore_ascii_case(&label)),
                    "{content_type}: {head}"
                );
                assert!(text.contains("\"id\":7"), "{content_type}: {text}");
            }
        }
        gw.shutdown().await;
    }
}

/// A 2025-03-26 batch of one message is a batch: its answer, a batch of one, is relayed (it was
/// refused as an unexpected batch, a 502).
#[tokio::test(flavor = "multi_thread")]
async fn a_batch_of_one_gets_its_batch_answer() {
    let port = canned_upstream(r#"[{"jsonrpc":"2.0","id":7,"result":{}}]"#).await;
    let (gw, (status, _, body)) = post_to_canned(
        port,
        "2025-03-26",
        br#"[{"jsonrpc":"2.0","id":7,"method":"ping"}]"#,
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer[0]["id"], 7, "{answer}");
    gw.shutdown().await;
}

/// Sends raw bytes; expects a 400 and the connection closed by the gateway (`raw_exchange`
/// reads until the gateway closes, and fails the test if it does not).
async fn framing_refused(port: u16, raw: &[u8]) {
    let (status, head, _) = raw_exchange(port, raw).await;
    assert_eq!(status, 400, "{}: {head}", String::from_utf8_lossy(raw));
}

#[tokio::test(flavor = "multi_thread")]
async fn http_framing_ambiguity_is_refused_and_the_connection_closed() {
    let (server, gw) = python_behind_gateway("").await;
    let port = addr(&gw).port();
    let head =
        "POST /servers/py/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n";
    let n = PING.len();
    let requests = [
        // Content-Length with Transfer-Encoding, in both orders.
        format!(
            "{head}Content-Length: {n}\r\nTransfer-Encoding: chunked\r\n\r\n{n:x}\r\n{PING}\r\n0\r\n\r\n"
        ),
        format!(
            "{head}Transfer-Encoding: chunked\r\nContent-Length: {n}\r\n\r\n{n:x}\r\n{PING}\r\n0\r\n\r\n"
        ),
        // Duplicate Content-Length, equal and different.
        format!("{head}Content-Length: {n}\r\nContent-Length: {n}\r\n\r\n{PING}"),
        format!("{head}Content-Length: {n}\r\nContent-Length: 5\r\n\r\n{PING}"),
        // Malformed chunk lines.
        format!("{head}Transfer-Encoding: chunked\r\n\r\nzz\r\n{PING}\r\n0\r\n\r\n"),
        format!("{head}Transfer-Encoding: chunked\r\n\r\n{n:x};ext\"\r\n{PING}\r\n0\r\n\r\n"),
        format!("{head}Transfer-Encoding: chunked\r\n\r\n{n:x}\n{PING}\r\n0\r\n\r\n"),
        // Lines ended by a bare LF, as hyper also reads them: the duplicate is still seen.
        format!(
            "POST /servers/py/mcp HTTP/1.1\nHost: 127.0.0.1\nContent-Type: application/json\n\
Content-Length: {n}\nContent-Length: {n}\n\n{PING}"
        ),
        // A trailer section ended by a bare LF, where hyper reads on to CRLF CRLF.
        format!("{head}Transfer-Encoding: chunked\r\n\r\n{n:x}\r\n{PING}\r\n0\r\n\nZ\r\n\r\n"),
        // A chunk-size line longer than the gateway follows.
        format!(
            "{head}Transfer-Encoding: chunked\r\n\r\n{n:x};{}\r\n{PING}\r\n0\r\n\r\n",
            "e".repeat(2000)
        ),
        // Obsolete line folding and a space before the colon.
        format!("{head}X-A: 1\r\n  folded\r\nContent-Length: {n}\r\n\r\n{PING}"),
        format!("{head}Content-Length : {n}\r\n\r\n{PING}"),
    ];
    for raw in &requests {
        framing_refused(port, raw.as_bytes()).await;
    }
    assert!(received(&server).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_clients_are_cut_off() {
    let server = python_server("streamable-http", None).await;
    let limits = "[limits]\nheader_read_timeout = \"300ms\"\nbody_read_timeout = \"300ms\"\n";
    let gw = gateway(&gateway_config(
        &[("py", &server.url("/mcp"), "streamable-http", "")],
        limits,
    ))
    .await;
    let port = addr(&gw).port();

    // Nothing sent at all: counted as open, then closed at the header timeout.
    let admin = gw.bound.admin.expect("admin listener").port();
    let open_becomes = |want: &'static str| async move {
        let mut seen = None;
        for _ in 0..100 {
            let (_, _, body) = http(admin, "GET", "/metrics", &[], b"").await;
            let text = String::from_utf8(body).expect("utf-8");
            seen = text
                .lines()
                .find_map(|l| l.strip_prefix("agentgate_open_connections "))
                .map(str::to_owned);
            if seen.as_deref() == Some(want) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("open_connections stayed {seen:?}, expected {want}");
    };
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(
            TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("connect"),
        );
    }
    open_becomes("3").await;
    for s in &mut silent {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0))),
            "a silent connection still open after the header timeout: {read:?}"
        );
    }
    open_becomes("0").await;

    // Headers never finished: the gateway closes the connection.
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(b"POST /servers/py/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .await
        .expect("write");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "connection still open after the header timeout"
    );

    // Body announced but never sent: 408.
    let mut s = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(b"POST /servers/py/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{").await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("closed in time")
        .expect("read");
    let (status, _, body) = parse_response(&buf);
    assert_eq!(status, 408);
    assert!(rpc_error(&body).1.contains("not received in time"));
    assert!(received(&server).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let server = python_server("streamable-http", None).await;
    let config = format!(
        "{ALLOW_ALL}[listener]\naddress = \"127.0.0.1:0\"\nmax_connections = 2\n[admin]\nenabled = false\n[[servers]]\nname = \"py\"\nurl = \"{}\"\n",
        server.url("/mcp")
    );
    let gw = gateway(&config).await;
    let port = addr(&gw).port();
    let get = b"GET /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        s.write_all(get).await.expect("write");
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).await.expect("served");
        assert_eq!(&buf, b"HTTP/1.1 404");
        held.push(s);
    }
    let mut third = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("kernel accepts into the backlog");
    third.write_all(get).await.expect("write");
    let mut buf = [0u8; 12];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), third.read_exact(&mut buf))
            .await
            .is_err(),
        "a third connection was served while two held the cap"
    );
    drop(held.pop());
    tokio::time::timeout(Duration::from_secs(10), third.read_exact(&mut buf))
        .await
        .expect("served once a slot freed")
        .expect("read");
    assert_eq!(&buf, b"HTTP/1.1 404");
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_credentials_never_reach_the_upstream_and_last_event_id_does() {
    let (server, gw) = python_behind_gateway("").await;
    let port = addr(&gw).port();
    let (status, _, _) = initialize(port, "py", &[("Authorization", "Bearer agent-secret")]).await;
    assert_eq!(status, 200);
    let (_, _, _) = http(
        port,
        "GET",
        "/servers/py/mcp",
        &[("Accept", "text/event-stream"), ("Last-Event-ID", "ev-42")],
        b"",
    )
    .await;
    let seen = received(&server).await;
    assert!(
        seen.iter().all(|r| r["authorization"].is_null()),
        "agent token forwarded: {seen:?}"
    );
    assert!(
        seen.iter().any(|r| r["last_event_id"] == "ev-42"),
        "Last-Event-ID not forwarded: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn routing_errors_name_the_problem() {
    let gw = gateway(&gateway_config(
        &[("py", "http://127.0.0.1:9/mcp", "streamable-http", "")],
        "",
    ))
    .await;
    let port = addr(&gw).port();
    let (status, _, body) = http(port, "POST", "/servers/nope/mcp", &[JSON], PING.as_bytes()).await;
    assert_eq!(status, 404);
    assert!(rpc_error(&body).1.contains("no MCP server named \"nope\""));
    let (status, _, _) = http(port, "PUT", "/servers/py/mcp", &[JSON], PING.as_bytes()).await;
    assert_eq!(status, 405);
    // Port 9 (discard) is closed on loopback: the upstream is unreachable.
    let (status, _, body) = http(port, "POST", "/servers/py/mcp", &[JSON], PING.as_bytes()).await;
    assert_eq!(status, 502);
    let (code, message) = rpc_error(&body);
    assert_eq!(code, -32000);
    assert!(message.contains("upstream py unreachable"), "{message}");
}

/// A broken chunked body refuses its own request and closes the connection; a whole request
/// pipelined before it in the same write is still served (it was refused with it).
#[tokio::test(flavor = "multi_thread")]
async fn a_pipelined_request_before_a_broken_one_is_served() {
    let (server, gw) = python_behind_gateway("").await;
    let port = addr(&gw).port();
    let head = "POST /servers/py/mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
                Accept: application/json, text/event-stream\r\n";
    let n = INITIALIZE.len();
    let raw = format!(
        "{head}Content-Length: {n}\r\n\r\n{INITIALIZE}\
         {head}Transfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n"
    );
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    stream.write_all(raw.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut buf))
        .await
        .expect("the gateway closes the connection")
        .expect("read");
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("HTTP/1.1 400"), "{text}");
    assert_eq!(received(&server).await.len(), 1, "{text}");
    gw.shutdown().await;
}
