//! The request-framing tracker on arbitrary connection bytes: never panics, whatever the split.
#![no_main]

use agentgate::proxy::framing::{Tracker, Verdicts};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, stream)) = data.split_first() else { return };
    let verdicts = Verdicts::default();
    let mut t = Tracker::new(verdicts.clone());
    for chunk in stream.chunks(usize::from(split).max(1)) {
        t.feed(chunk);
    }
    // A head takes at least a few bytes; past the heads seen, `next` refuses (no verdict), so
    // the loop is bounded by the input rather than by the queue running dry.
    for _ in 0..stream.len() / 4 + 1 {
        let _ = verdicts.next();
    }
    let _ = verdicts.body_problem();
});
