//! Shared inputs of agentgate's benchmarks: MCP bodies of a chosen size, SSE streams.

/// A `tools/call` request of about `size` bytes: a long text argument (a file write, a SQL
/// query) plus a list of small structured items, the two shapes large tool calls take.
pub fn tools_call_body(size: usize) -> Vec<u8> {
    // The rendered length grows by exactly what each step adds (the text needs no escapes), so
    // it is tracked rather than rendered per step: rendering each step made a 1 MiB body take a
    // minute to build.
    let mut items = Vec::new();
    let mut text = String::new();
    let mut len = render(&text, &items).len();
    let mut i = 0;
    while len < size {
        if i % 2 == 0 {
            let piece = "SELECT id, name FROM accounts WHERE region = 'eu' AND balance > 100; ";
            text.push_str(piece);
            len += piece.len();
        } else {
            let item = serde_json::json!({"id": i, "name": format!("item-{i}"), "tags": ["alpha", "beta"], "price": 12.5});
            // A comma before every item but the first.
            len += item.to_string().len() + usize::from(!items.is_empty());
            items.push(item);
        }
        i += 1;
    }
    render(&text, &items)
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

/// A policy of about `n` rules across the levels (agents, tools exact and by glob, parameter
/// conditions, time windows, deny rules), for one server named `server`. The benchmark's own
/// call (agent "unknown", tool "run_query") is allowed by a rule near the end that tests its
/// arguments, so a decision walks the index and evaluates conditions.
pub fn policy_rules(n: usize, server: &str) -> String {
    let mut out = String::from("[policy]\npins_file = \"\"\n");
    for i in 0..n.saturating_sub(1) {
        let effect = if i % 10 == 9 { "deny" } else { "allow" };
        out.push_str(&format!(
            "[[rules]]\nname = \"r{i}\"\neffect = \"{effect}\"\nagents = [\"agent{}\"]\nservers = [\"{server}\"]\n",
            i % 50
        ));
        match i % 4 {
            0 => out.push_str(&format!("tools = [\"tool{i}\"]\n")),
            1 => out.push_str(&format!(
                "tools = [\"tool{i}\"]\n[[rules.params]]\npointer = \"/path\"\npath_prefix = [\"/srv/{i}\"]\n"
            )),
            2 => out.push_str(&format!(
                "prompts = [\"prompt{i}\"]\n[[rules.time]]\nfrom = \"08:00\"\nto = \"18:00\"\ntz = \"Europe/Berlin\"\n"
            )),
            _ => out.push_str(&format!("resources = [\"file:///data/{i}/*\"]\n")),
        }
    }
    out.push_str(&format!(
        "[[rules]]\nname = \"bench-query\"\neffect = \"allow\"\nservers = [\"{server}\"]\ntools = [\"run_query\"]\n\
         [[rules.params]]\npointer = \"/query\"\nlength = {{ max = 100000000 }}\n\
         [[rules.params]]\npointer = \"/items\"\npresent = true\n"
    ));
    out
}

/// Compiles `rules` for one server named "bench".
pub fn compile_policy(rules: &str) -> agentgate::policy::Policy {
    let text = format!("[[servers]]\nname = \"bench\"\nurl = \"http://127.0.0.1:1/mcp\"\n{rules}");
    agentgate::policy::Policy::compile(
        &agentgate::config::Config::parse(&text, "bench.toml").unwrap_or_else(|e| panic!("{e}")),
    )
}

/// A tools/call question to server "bench".
pub fn tool_question<'a>(
    agent: &'a str,
    tool: &'a str,
    args: serde_json::Value,
) -> agentgate::policy::Question<'a> {
    agentgate::policy::Question {
        agent,
        process: None,
        claims: None,
        certificate: None,
        rate_key: agentgate::policy::RateKey::Agent(agent),
        server: "bench",
        method: "tools/call",
        class: agentgate::policy::Class::Tool(tool),
        arguments: agentgate::policy::Arguments::parsed(Some(args)),
        defaults: Some(&[]),
        calls: None,
        now: jiff::Timestamp::now(),
    }
}

/// A typical read-only query for the SQL matcher.
pub const TYPICAL_SQL: &str = "SELECT c.name, c.email FROM customers AS c WHERE c.region = 'eu' AND c.id > 100 ORDER BY c.name LIMIT 50";

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition: render after every step, stop at the first body of `size` or more.
    fn rendered_each_step(size: usize) -> Vec<u8> {
        let (mut items, mut text) = (Vec::new(), String::new());
        for i in 0.. {
            let body = render(&text, &items);
            if body.len() >= size {
                return body;
            }
            if i % 2 == 0 {
                text.push_str(
                    "SELECT id, name FROM accounts WHERE region = 'eu' AND balance > 100; ",
                );
            } else {
                items.push(serde_json::json!({"id": i, "name": format!("item-{i}"), "tags": ["alpha", "beta"], "price": 12.5}));
            }
        }
        unreachable!()
    }

    #[test]
    fn tracking_the_length_builds_the_same_bodies() {
        for size in [0, 1, 200, 1024, 4096, 20_000] {
            assert_eq!(tools_call_body(size), rendered_each_step(size), "{size}");
        }
    }

    #[test]
    fn bodies_are_at_least_the_size_asked_and_only_just() {
        for size in [0, 200, 1024, 4096, 65_536] {
            let body = tools_call_body(size);
            assert!(body.len() >= size, "{size}: {}", body.len());
            // One step more than needed would add at least a text piece (70 bytes).
            assert!(body.len() < size.max(200) + 200, "{size}: {}", body.len());
            let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(value["method"], "tools/call");
        }
    }
}
