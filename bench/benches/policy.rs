//! Policy decisions: a 1,000-rule policy beside a one-rule policy (the baseline of the same
//! run), and the SQL matcher beside sqlparser's parse alone.

use agentgate::{
    config::Config,
    policy::{Arguments, Class, Policy, Question, RateLimiter, sql},
};
use criterion::{Criterion, criterion_group, criterion_main};

const SERVER: &str = "[[servers]]\nname = \"bench\"\nurl = \"http://127.0.0.1:1/mcp\"\n";
const TYPICAL_SQL: &str = "SELECT c.name, c.email FROM customers AS c WHERE c.region = 'eu' AND c.id > 100 ORDER BY c.name LIMIT 50";

fn compile(rules: &str) -> Policy {
    Policy::compile(
        &Config::parse(&format!("{SERVER}{rules}"), "bench.toml").unwrap_or_else(|e| panic!("{e}")),
    )
}

fn question<'a>(agent: &'a str, tool: &'a str, args: serde_json::Value) -> Question<'a> {
    Question {
        agent,
        process: None,
        claims: None,
        rate_key: agent,
        server: "bench",
        method: "tools/call",
        class: Class::Tool(tool),
        arguments: Arguments::parsed(Some(args)),
        now: jiff::Timestamp::now(),
    }
}

fn decisions(c: &mut Criterion) {
    let big = compile(&agentgate_bench::policy_rules(1000, "bench"));
    let one =
        compile("[policy]\npins_file = \"\"\n[[rules]]\nname = \"all\"\neffect = \"allow\"\n");
    let limiter = RateLimiter::default();
    let mut g = c.benchmark_group("policy_decision");
    let args = serde_json::json!({"path": "/srv/5/report.csv"});
    g.bench_function("1000_rules_param_condition", |b| {
        let q = question("agent5", "tool5", args.clone());
        b.iter(|| big.decide(std::hint::black_box(&q), &limiter).allowed)
    });
    g.bench_function("1000_rules_default_deny", |b| {
        let q = question("agent7", "tool999999", args.clone());
        b.iter(|| big.decide(std::hint::black_box(&q), &limiter).allowed)
    });
    g.bench_function("1_rule_baseline", |b| {
        let q = question("agent5", "tool5", args.clone());
        b.iter(|| one.decide(std::hint::black_box(&q), &limiter).allowed)
    });
    g.finish();

    let spec_policy = compile(
        "[policy]\npins_file = \"\"\n[[rules]]\nname = \"q\"\neffect = \"allow\"\ntools = [\"q\"]\n\
         [[rules.params]]\npointer = \"/sql\"\nsql = { statements = [\"select\"], tables = [\"customers\"] }\n",
    );
    let mut g = c.benchmark_group("sql_matcher");
    g.bench_function("typical_select_decision", |b| {
        let q = question("a", "q", serde_json::json!({ "sql": TYPICAL_SQL }));
        b.iter(|| {
            spec_policy
                .decide(std::hint::black_box(&q), &limiter)
                .allowed
        })
    });
    g.bench_function("sqlparser_parse_baseline", |b| {
        b.iter(|| sql::analyse(std::hint::black_box(TYPICAL_SQL), "public").is_ok())
    });
    g.finish();
}

criterion_group!(benches, decisions);
criterion_main!(benches);
