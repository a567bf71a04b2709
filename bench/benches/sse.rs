//! Incremental SSE parsing of an MCP progress stream, fed in 4 KiB reads, with and without the
//! strict parse of each event's JSON-RPC message (what the gateway does per event).

use agentgate::mcp::{message::parse_message, sse::Parser};
use agentgate_bench::sse_stream;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn sse(c: &mut Criterion) {
    let stream = sse_stream(1000);
    let mut group = c.benchmark_group("sse");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("frames", |b| {
        b.iter(|| {
            let mut p = Parser::new(1 << 20);
            let mut events = Vec::new();
            for chunk in stream.chunks(4096) {
                p.push(chunk, &mut events).ok();
            }
            events.len()
        })
    });
    group.bench_function("frames_and_messages", |b| {
        b.iter(|| {
            let mut p = Parser::new(1 << 20);
            let mut events = Vec::new();
            for chunk in stream.chunks(4096) {
                p.push(chunk, &mut events).ok();
            }
            events
                .iter()
                .filter_map(|e| e.data.as_deref())
                .filter(|d| parse_message(d.as_bytes()).is_ok())
                .count()
        })
    });
    group.finish();
}

criterion_group!(benches, sse);
criterion_main!(benches);
