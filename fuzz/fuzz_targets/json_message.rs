//! Strict JSON + JSON-RPC classification on arbitrary bytes: never panics, and whatever the
//! gateway accepts, serde_json reads the same way (the differential oracle).
#![no_main]

use agentgate::mcp::{json::with_parsed, message::parse_body};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ours) = with_parsed(data, |v| v.to_owned_value()) {
        let theirs: serde_json::Value = serde_json::from_slice(data).expect("accepted by the gateway, refused by serde_json");
        assert_eq!(ours, theirs);
    }
    let body = bytes::Bytes::copy_from_slice(data);
    let _ = parse_body(&body, true, "2025-03-26");
    let _ = parse_body(&body, false, "2025-11-25");
});
