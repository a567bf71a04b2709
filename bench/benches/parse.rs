//! Strict parse + classify of tools/call bodies, 200 B to 1 MiB, beside serde_json reading the
//! same bytes into a `Value` (the baseline of the same run).

use agentgate::mcp::message::parse_body;
use agentgate_bench::tools_call_body;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse_classify");
    for size in [200, 1024, 4096, 65_536, 1 << 20] {
        let body = bytes::Bytes::from(tools_call_body(size));
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(BenchmarkId::new("agentgate", size), &body, |b, body| {
            b.iter(|| {
                parse_body(std::hint::black_box(body), false, "2025-11-25")
                    .map(|m| m.messages().len())
            })
        });
        group.bench_with_input(
            BenchmarkId::new("serde_json_value", size),
            &body,
            |b, body| {
                b.iter(|| {
                    serde_json::from_slice::<serde_json::Value>(std::hint::black_box(body)).is_ok()
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, parse);
criterion_main!(benches);
