//! Policy decisions: a 1,000-rule policy beside a one-rule policy (the baseline of the same
//! run), and the SQL matcher beside sqlparser's parse alone.

use agentgate::policy::{RateLimiter, sql};
use agentgate_bench::{TYPICAL_SQL, compile_policy as compile, tool_question as question};
use criterion::{Criterion, criterion_group, criterion_main};

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
