//! Shared inputs of agentgate's benchmarks: MCP bodies of a chosen size, SSE streams.

/// A `tools/call` request of about `size` bytes: a long text argument (a file write, a SQL
/// query) plus a list of small structured items, the two shapes large tool calls take.
pub fn tools_call_body(size: usize) -> Vec<u8> {
    let mut items = Vec::new();
    let mut text = String::new();
    let mut i = 0;
    loop {
        let body = render(&text, &items);
        if body.len() >= size {
            return body;
        }
        if i % 2 == 0 {
            text.push_str("SELECT id, name FROM accounts WHERE region = 'eu' AND balance > 100; ");
        } else {
            items.push(serde_json::json!({"id": i, "name": format!("item-{i}"), "tags": ["alpha", "beta"], "price": 12.5}));
        }
        i += 1;
    }
}

fn render(text: &str, items: &[serde_json::Value]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "jsonrpc": "2.0",
        "id": 42,
        "method": "tools/call",
        "params": {"name": "run_query", "arguments": {"query": text, "items": items}},
    }))
    .unwrap_or_default()
}

/// An SSE stream of `events` progress notifications followed by a result, as an MCP server
/// answers a long tool call.
pub fn sse_stream(events: usize) -> Vec<u8> {
    let mut out = String::new();
    for i in 0..events {
        out.push_str(&format!(
            "id: {i}\nevent: message\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{\"progressToken\":\"t\",\"progress\":{i},\"total\":{events},\"message\":\"step {i}\"}}}}\n\n"
        ));
    }
    out.push_str("data: {\"jsonrpc\":\"2.0\",\"id\":42,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"done\"}],\"isError\":false}}\n\n");
    out.into_bytes()
}
