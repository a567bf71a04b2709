//! Differential test: the gateway's strict parser against serde_json. On every input the
//! gateway accepts, serde_json must accept too and read the same value; the gateway may refuse
//! more (that is the point), never read differently.

use agentgate::mcp::json::with_parsed;

/// Hand-written inputs around the known differentials, plus valid MCP traffic.
fn seeds() -> Vec<Vec<u8>> {
    let texts: &[&str] = &[
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}"#,
        r#"{"jsonrpc":"2.0","id":"a","result":{"content":[{"type":"text","text":"x"}],"isError":false}}"#,
        r#"{"a":"\u0000\u001f\u007f\u00e9\ud83d\ude00\"\\\/\b\f\n\r\t"}"#,
        r#"[0,-0,0.0,-0.0,1e10,1E+10,1e-10,123456789012345678901234567890,-9223372036854775808,18446744073709551615,18446744073709551616]"#,
        r#"[1.7976931348623157e308,5e-324,2.2250738585072014e-308,0.1,1e400,-1e400]"#,
        r#"{"a":1,"a":1}"#,
        r#"{"a":1,"\u0061":2}"#,
        r#""\ud800""#,
        r#""\udbff\udfff""#,
        r#""\uDBFF\uDFFF""#,
        "\u{feff}{}",
        "[01]",
        "[1.]",
        "[-]",
        "[--1]",
        "[NaN]",
        "[Infinity]",
        "[true,false,null]",
        "[tru]",
        "{\"a\" : 1 , \"b\" :[ ] }",
        " \t\r\n{}\n",
        "{}\u{0}",
        "\"\t\"",
        "\"\\x41\"",
        "\"\\u00\"",
        "{\"a\":1}}",
        "[[[[[[[[[[]]]]]]]]]]",
        "{\"\":\"\"}",
        "\"\u{10ffff}\"",
        // Found by fuzzing: simd-json's slow path for 19+ digit numbers skipped the delimiter check.
        "[4444444444444444444a]",
        "{\"x\":1.0000000000000000001e5}",
        "[18446744073709551616,-18446744073709551616]",
        "[33333333333433.9933333333333333333333333334]",
        "[12345678901234567890,1.2345678901234567e300]",
    ];
    let mut v: Vec<Vec<u8>> = texts.iter().map(|t| t.as_bytes().to_vec()).collect();
    v.push(b"\"\xc3\x28\"".to_vec());
    v.push(b"\"\xed\xa0\x80\"".to_vec());
    v.push(b"\"\xf4\x90\x80\x80\"".to_vec());
    v.push(b"\"\xc0\xaf\"".to_vec());
    v
}

/// Deterministic xorshift, so a failure reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Byte-level mutations that tend to produce the interesting cases: structural characters,
/// escapes, digits, truncation, duplication.
fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    const ALPHABET: &[u8] = b"{}[]\",:\\u0123456789abcdefABCDEF.eE+-tnfrl \t\n\r\x00\x01\x1f\x7f\xc3\xa9\xed\xa0\x80\xef\xbb\xbf";
    let mut out = seed.to_vec();
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(out.len() + 1);
        match rng.below(5) {
            0 if !out.is_empty() => {
                out.remove(at.min(out.len() - 1));
            }
            1 => out.insert(at, ALPHABET[rng.below(ALPHABET.len())]),
            2 if at < out.len() => out[at] = ALPHABET[rng.below(ALPHABET.len())],
            3 => out.truncate(at),
            _ => {
                let from = rng.below(out.len());
                let to = (from + rng.below(8)).min(out.len());
                let piece = out[from..to].to_vec();
                let at = at.min(out.len());
                out.splice(at..at, piece);
            }
        }
    }
    out
}

fn check(input: &[u8], accepted: &mut usize) {
    let ours = with_parsed(input, |v| v.to_owned_value());
    if let Ok(value) = ours {
        *accepted += 1;
        let theirs: serde_json::Value = serde_json::from_slice(input).unwrap_or_else(|e| {
            panic!(
                "gateway accepted what serde_json refuses ({e}): {:?}",
                String::from_utf8_lossy(input)
            )
        });
        assert_eq!(
            value,
            theirs,
            "readings differ for {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn gateway_parser_never_reads_differently_from_serde_json() {
    let seeds = seeds();
    let mut accepted = 0;
    for s in &seeds {
        check(s, &mut accepted);
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..60_000 {
        let seed = &seeds[rng.below(seeds.len())];
        check(&mutate(seed, &mut rng), &mut accepted);
    }
    // The corpus must exercise acceptance, not only refusals.
    assert!(
        accepted > 1_000,
        "only {accepted} inputs accepted: the corpus is too hostile to test agreement"
    );
}

#[test]
fn refusals_cover_what_serde_json_reads_leniently() {
    // serde_json accepts these (last duplicate wins, lone surrogates become errors there but
    // not in Python, a BOM is an error there); the gateway refuses all of them.
    for input in [
        &br#"{"a":1,"a":2}"#[..],
        br#"{"a":1,"\u0061":2}"#,
        br#""\ud800""#,
        b"\xEF\xBB\xBF{}",
    ] {
        assert!(
            with_parsed(input, |_| ()).is_err(),
            "accepted {:?}",
            String::from_utf8_lossy(input)
        );
    }
}
