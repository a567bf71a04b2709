//! The SSE parser on arbitrary bytes, fed whole and split at every position the input picks:
//! never panics, and the split never changes the events.
#![no_main]

use agentgate::mcp::sse::Parser;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, stream)) = data.split_first() else { return };
    let whole = {
        let mut p = Parser::new(4096);
        let mut out = Vec::new();
        p.push(stream, &mut out).map(|()| out)
    };
    let pieces = {
        let mut p = Parser::new(4096);
        let mut out = Vec::new();
        let mut result = Ok(());
        for chunk in stream.chunks(usize::from(split).max(1)) {
            result = p.push(chunk, &mut out);
            if result.is_err() {
                break;
            }
        }
        result.map(|()| out)
    };
    if let (Ok(a), Ok(b)) = (&whole, &pieces) {
        assert_eq!(a, b);
    }
});
