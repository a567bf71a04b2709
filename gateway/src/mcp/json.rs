//! Strict JSON: every accepted body has exactly one interpretation.
//!
//! simd-json does the parsing; a linear pre-scan and a walk over simd-json's tape add what it does
//! not check on its own (a BOM, nesting depth, lone surrogate escapes, duplicate keys compared after
//! unescaping). Anything two parsers could read differently is an error here, so what the gateway
//! decides on is what the upstream executes. This module knows JSON only, not JSON-RPC.

use std::{cell::RefCell, sync::LazyLock};

use memchr::memmem::Finder;

use simd_json::{Node, StaticNode, Tape};

/// Deepest nesting of arrays and objects accepted. Far above anything MCP needs, far below what
/// would let a recursive consumer (a policy walker, `Drop`) exhaust the stack.
pub const MAX_DEPTH: usize = 64;

/// Largest integer magnitude that every JSON consumer reads exactly (I-JSON, RFC 7493).
pub const MAX_EXACT_INT: u64 = 1 << 53;

/// Why a body is not strict JSON. The messages are shown to agents, so they name the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    #[error("empty body")]
    Empty,
    #[error("body starts with a byte order mark")]
    ByteOrderMark,
    #[error("nesting deeper than {max} levels", max = MAX_DEPTH)]
    TooDeep,
    #[error("lone UTF-16 surrogate escape at byte {offset}")]
    LoneSurrogate { offset: usize },
    #[error("duplicate key {key:?} in one object")]
    DuplicateKey { key: String },
    #[error("number out of range")]
    NumberOutOfRange,
    #[error("invalid JSON at byte {offset}: {kind}")]
    Syntax { offset: usize, kind: String },
}

/// A parsed JSON value: a view into simd-json's tape. Only lives inside [`with_parsed`].
#[derive(Clone, Copy, Debug)]
pub struct View<'t, 'i>(&'t [Node<'i>]);

impl<'t, 'i> View<'t, 'i> {
    /// The string, when this value is one.
    pub fn as_str(&self) -> Option<&'i str> {
        match self.0.first()? {
            Node::String(s) => Some(s),
            _ => None,
        }
    }

    /// The scalar, when this value is a number, boolean or null.
    pub fn as_static(&self) -> Option<StaticNode> {
        match self.0.first()? {
            Node::Static(s) => Some(*s),
            _ => None,
        }
    }

    /// Whether this value is an object.
    pub fn is_object(&self) -> bool {
        matches!(self.0.first(), Some(Node::Object { .. }))
    }

    /// Whether this value is an array.
    pub fn is_array(&self) -> bool {
        matches!(self.0.first(), Some(Node::Array { .. }))
    }

    /// The members of an object, in document order; empty for anything else.
    pub fn entries(&self) -> impl Iterator<Item = (&'i str, View<'t, 'i>)> + use<'t, 'i> {
        let nodes = self.0;
        let len = match nodes.first() {
            Some(Node::Object { len, .. }) => *len,
            _ => 0,
        };
        let mut idx = 1;
        (0..len).map_while(move |_| {
            let Some(Node::String(key)) = nodes.get(idx) else {
                return None;
            };
            let start = idx + 1;
            let end = start + subtree_len(nodes.get(start));
            idx = end;
            Some((*key, View(nodes.get(start..end)?)))
        })
    }

    /// The elements of an array; empty for anything else.
    pub fn elements(&self) -> impl Iterator<Item = View<'t, 'i>> + use<'t, 'i> {
        let nodes = self.0;
        let len = match nodes.first() {
            Some(Node::Array { len, .. }) => *len,
            _ => 0,
        };
        let mut idx = 1;
        (0..len).map_while(move |_| {
            let end = idx + subtree_len(nodes.get(idx));
            let view = View(nodes.get(idx..end)?);
            idx = end;
            Some(view)
        })
    }

    /// A member of an object by key.
    pub fn get(&self, key: &str) -> Option<View<'t, 'i>> {
        self.entries().find_map(|(k, v)| (k == key).then_some(v))
    }

    /// Copies the value out of the tape, for the parts of a message later stages keep.
    pub fn to_owned_value(&self) -> serde_json::Value {
        let mut pos = 0;
        build(self.0, &mut pos)
    }
}

struct Scratch {
    input: Vec<u8>,
    buffers: simd_json::Buffers,
    tape: Option<Tape<'static>>,
}

thread_local! {
    // simd-json parses in place and wants scratch buffers: reusing them per thread keeps the hot
    // path free of allocations sized by the body.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch {
        input: Vec::new(),
        buffers: simd_json::Buffers::default(),
        tape: Some(Tape::null().reset()),
    });
}

/// Parses `bytes` strictly and hands the document to `f`. Everything `f` returns must be owned:
/// the tape borrows per-thread scratch space.
pub fn with_parsed<R>(bytes: &[u8], f: impl FnOnce(View<'_, '_>) -> R) -> Result<R, JsonError> {
    prescan(bytes)?;
    SCRATCH.with(|cell| {
        // A re-entrant call (f parsing again) would find the scratch borrowed: fall back to fresh
        // buffers rather than panic.
        match cell.try_borrow_mut() {
            Ok(mut scratch) => parse_with(&mut scratch, bytes, f),
            Err(_) => parse_with(
                &mut Scratch {
                    input: Vec::new(),
                    buffers: simd_json::Buffers::default(),
                    tape: Some(Tape::null().reset()),
                },
                bytes,
                f,
            ),
        }
    })
}

fn parse_with<R>(
    scratch: &mut Scratch,
    bytes: &[u8],
    f: impl FnOnce(View<'_, '_>) -> R,
) -> Result<R, JsonError> {
    let Scratch {
        input,
        buffers,
        tape,
    } = scratch;
    input.clear();
    input.extend_from_slice(bytes);
    let mut local = tape.take().unwrap_or_else(|| Tape::null().reset()).reset();
    let result = match simd_json::fill_tape(input, buffers, &mut local) {
        Ok(()) => check_tape(&local.0).map(|()| f(View(&local.0))),
        Err(e) => Err(JsonError::Syntax {
            offset: e.index(),
            kind: describe(e.error()),
        }),
    };
    *tape = Some(local.reset());
    result
}

/// A person-readable name for simd-json's error kinds.
fn describe(kind: &simd_json::ErrorType) -> String {
    use simd_json::ErrorType as E;
    match kind {
        E::TrailingData => "trailing data after the value".into(),
        E::InvalidNumber | E::InvalidExponent => {
            "invalid number (no NaN, Infinity, leading zeros or bare signs)".into()
        }
        E::InvalidUtf8 => "invalid UTF-8".into(),
        E::InvalidEscape | E::InvalidUnicodeEscape | E::InvalidUnicodeCodepoint => {
            "invalid escape in a string".into()
        }
        E::Eof => "unexpected end of input".into(),
        E::KeyMustBeAString => "object key is not a string".into(),
        // simd-json reports trailing values and unbalanced brackets from its tape builder.
        E::InternalError(_) => "trailing data after the value, or unbalanced brackets".into(),
        other => format!("{other:?}"),
    }
}

/// The checks simd-json leaves to us that need the raw bytes: emptiness, BOM, NUL, surrogate
/// escapes, negative zero.
fn prescan(bytes: &[u8]) -> Result<(), JsonError> {
    if !bytes
        .iter()
        .any(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        return Err(JsonError::Empty);
    }
    if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return Err(JsonError::ByteOrderMark);
    }
    // One SIMD pass finds NULs (simd-json reads a NUL after a number as the end of input:
    // "[1\0.]" would parse) and backslashes; a `\u` escape (lone surrogates) needs the
    // string-aware scan, as does a "-0". Everything else that scan checks, simd-json or the tape
    // walk checks too, so ordinary bodies take two SIMD searches and nothing more.
    let mut escapes = false;
    for i in memchr::memchr2_iter(0, b'\\', bytes) {
        if bytes[i] == 0 {
            return Err(JsonError::Syntax {
                offset: i,
                kind: "NUL byte".into(),
            });
        }
        if bytes.get(i + 1) == Some(&b'u') {
            escapes = true;
            break;
        }
    }
    static NEGATIVE_ZERO: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"-0"));
    if escapes || NEGATIVE_ZERO.find(bytes).is_some() || long_digit_run(bytes) {
        return full_scan(bytes);
    }
    Ok(())
}

/// Whether the body holds a run of 19 or more digits and dots. simd-json parses numbers of 19+
/// significant digits on a slow path that does not check what follows them
/// ("4444444444444444444a" and "1.0000000000000000001a" parse), so bodies that could contain
/// such a number take the full scan, which checks every number. A run that long always covers
/// a whole aligned 8-byte word, so the scan tests words (a few operations per 8 bytes, four
/// words per branch) and measures a run only around a word made of such bytes.
fn long_digit_run(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const RUN: usize = 19;
    let number_byte = |b: &u8| b.is_ascii_digit() || *b == b'.';
    // Every byte in '.'..='9' (which lets '/' through: only a cheap false alarm).
    let candidate = |word: u64| -> bool {
        let at_least_dot = (word | HIGH).wrapping_sub(ONES * 0x2E);
        let above_nine = (word & !HIGH).wrapping_add(ONES * (0x80 - 0x3A));
        at_least_dot & !above_nine & !word & HIGH == HIGH
    };
    let run_through = |at: usize| -> bool {
        let before = bytes[..at]
            .iter()
            .rev()
            .take_while(|b| number_byte(b))
            .count();
        let after = bytes[at..].iter().take_while(|b| number_byte(b)).count();
        before + after >= RUN
    };
    let word = |chunk: &[u8]| u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
    let mut blocks = bytes.chunks_exact(32);
    for (n, block) in blocks.by_ref().enumerate() {
        let mut hit = false;
        for w in block.chunks_exact(8) {
            hit |= candidate(word(w));
        }
        if hit {
            for (k, w) in block.chunks_exact(8).enumerate() {
                if candidate(word(w)) && run_through(n * 32 + k * 8) {
                    return true;
                }
            }
        }
    }
    // A run ending in the unblocked tail either covers a word of the blocks (tested above)
    // or starts at most RUN - 1 bytes before the tail.
    let tail = bytes.len() - blocks.remainder().len();
    let mut run = 0;
    for b in &bytes[tail.saturating_sub(RUN - 1)..] {
        run = if number_byte(b) { run + 1 } else { 0 };
        if run >= RUN {
            return true;
        }
    }
    false
}

/// Checks the number token starting at `start` against JSON's grammar and that a delimiter
/// follows it; returns the index after it.
fn number_token(bytes: &[u8], start: usize) -> Result<usize, JsonError> {
    let bad = |offset| JsonError::Syntax {
        offset,
        kind: "invalid number (no NaN, Infinity, leading zeros or bare signs)".into(),
    };
    let digits = |mut i: usize| {
        let from = i;
        while bytes.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        (i, i - from)
    };
    let mut i = start;
    if bytes.get(i) == Some(&b'-') {
        i += 1;
    }
    let (after, int_digits) = digits(i);
    if int_digits == 0 || (int_digits > 1 && bytes[i] == b'0') {
        return Err(bad(i));
    }
    i = after;
    let mut frac_digits = 0;
    let mut float = false;
    if bytes.get(i) == Some(&b'.') {
        let (after, n) = digits(i + 1);
        if n == 0 {
            return Err(bad(i));
        }
        (i, frac_digits, float) = (after, n, true);
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(bytes.get(i + 1), Some(b'+' | b'-')));
        let (after, n) = digits(i + 1 + sign);
        if n == 0 {
            return Err(bad(i));
        }
        (i, float) = (after, true);
    }
    // Beyond what every reader represents alike: parsers round long mantissas differently
    // (simd-json's slow path is not correctly rounded) and read integers outside 64 bits as
    // floats or as big integers.
    let text = std::str::from_utf8(&bytes[start..i]).unwrap_or("");
    // 19+ digits is where simd-json leaves its exact path (and integers of 20+ digits come out
    // of it as floats).
    let too_precise = if float {
        int_digits + frac_digits >= 19
    } else {
        int_digits >= 20 || text.parse::<i64>().is_err()
    };
    if too_precise {
        return Err(JsonError::Syntax {
            offset: start,
            kind: "number with more precision than a 64-bit value holds".into(),
        });
    }
    match bytes.get(i) {
        None | Some(b' ' | b'\t' | b'\n' | b'\r' | b',' | b']' | b'}') => Ok(i),
        Some(_) => Err(bad(i)),
    }
}

/// The linear scan: string-aware, so that it sees escapes and numbers as a parser does.
fn full_scan(bytes: &[u8]) -> Result<(), JsonError> {
    let mut depth = 0usize;
    let mut i = 0usize;
    while i < bytes.len() {
        match bytes[i] {
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(JsonError::TooDeep);
                }
                i += 1;
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b'"' => i = skip_string(bytes, i + 1)?,
            // serde_json and Python read -0 as the float -0.0, simd-json as the integer 0.
            b'-' if bytes.get(i + 1) == Some(&b'0')
                && !matches!(bytes.get(i + 2), Some(b'.' | b'e' | b'E')) =>
            {
                return Err(JsonError::Syntax {
                    offset: i,
                    kind: "negative zero is read differently by different parsers".into(),
                });
            }
            b'-' | b'0'..=b'9' => i = number_token(bytes, i)?,
            // simd-json reads a NUL after a number as the end of input: "[1\0.]" would parse.
            b if b < 0x20 && !matches!(b, b' ' | b'\t' | b'\n' | b'\r') => {
                return Err(JsonError::Syntax {
                    offset: i,
                    kind: "control character outside a string".into(),
                });
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Skips a string body starting after its opening quote; returns the index after the closing
/// quote (or the end of input: an unterminated string is simd-json's error to report).
fn skip_string(bytes: &[u8], mut i: usize) -> Result<usize, JsonError> {
    loop {
        let Some(rel) = memchr::memchr2(b'"', b'\\', &bytes[i.min(bytes.len())..]) else {
            return Ok(bytes.len());
        };
        i += rel;
        if bytes[i] == b'"' {
            return Ok(i + 1);
        }
        // A backslash: only \u escapes need a look; anything malformed is left to simd-json.
        match bytes.get(i + 1) {
            Some(b'u') => {
                let start = i;
                match hex4(bytes, i + 2) {
                    Some(cp @ 0xD800..=0xDBFF) => {
                        let low = if bytes.get(i + 6) == Some(&b'\\')
                            && bytes.get(i + 7) == Some(&b'u')
                        {
                            hex4(bytes, i + 8)
                        } else {
                            None
                        };
                        match low {
                            Some(0xDC00..=0xDFFF) => i += 12,
                            _ => {
                                let _ = cp;
                                return Err(JsonError::LoneSurrogate { offset: start });
                            }
                        }
                    }
                    Some(0xDC00..=0xDFFF) => {
                        return Err(JsonError::LoneSurrogate { offset: start });
                    }
                    _ => i += 2,
                }
            }
            Some(_) => i += 2,
            None => return Ok(bytes.len()),
        }
    }
}

fn hex4(bytes: &[u8], at: usize) -> Option<u16> {
    let digits = bytes.get(at..at + 4)?;
    let text = std::str::from_utf8(digits).ok()?;
    u16::from_str_radix(text, 16).ok()
}

/// Walks the tape once: nesting depth, duplicate keys per object (simd-json unescaped them
/// already, so `"n\u0061me"` and `"name"` collide) and numbers that not every reader sees alike.
fn check_tape(nodes: &[Node<'_>]) -> Result<(), JsonError> {
    check_value(nodes, 0, 0)
        .map(|_| ())
        .map_err(|fault| match fault {
            Fault::TooDeep => JsonError::TooDeep,
            Fault::NumberOutOfRange => JsonError::NumberOutOfRange,
            Fault::DuplicateKey(at) => JsonError::DuplicateKey {
                key: match nodes.get(at as usize) {
                    Some(Node::String(key)) => (*key).to_owned(),
                    _ => String::new(),
                },
            },
            Fault::KeyNotString => JsonError::Syntax {
                offset: 0,
                kind: "object key is not a string".into(),
            },
        })
}

/// What the tape walk found wrong. Eight bytes, so that every step of the walk returns its
/// `Result` in registers; [`check_tape`] turns it into a [`JsonError`].
#[derive(Clone, Copy)]
enum Fault {
    TooDeep,
    NumberOutOfRange,
    /// The tape index of the repeated key (simd-json caps input at 4 GiB, so it fits).
    DuplicateKey(u32),
    KeyNotString,
}

/// Checks the value at `idx`, inside `depth` containers; returns the index after it. Scalars,
/// most of any tape, are decided here without a call.
#[inline(always)]
fn check_value(nodes: &[Node<'_>], idx: usize, depth: usize) -> Result<usize, Fault> {
    match nodes.get(idx) {
        Some(Node::Object { .. } | Node::Array { .. }) => check_container(nodes, idx, depth + 1),
        Some(Node::Static(StaticNode::F64(f))) if !f.is_finite() => Err(Fault::NumberOutOfRange),
        _ => Ok(idx + 1),
    }
}

/// Checks the array or object at `idx`, which is the `depth`th level of nesting. Recursion is
/// bounded by [`MAX_DEPTH`], checked before descending.
#[inline(never)]
fn check_container(nodes: &[Node<'_>], idx: usize, depth: usize) -> Result<usize, Fault> {
    if depth > MAX_DEPTH {
        return Err(Fault::TooDeep);
    }
    match nodes.get(idx) {
        Some(&Node::Array { len, count }) => {
            let mut at = idx + 1;
            for _ in 0..len {
                at = check_value(nodes, at, depth)?;
            }
            Ok(idx + count + 1)
        }
        Some(&Node::Object { len, count }) => {
            check_members(nodes, idx + 1, len, depth)?;
            Ok(idx + count + 1)
        }
        _ => Ok(idx + 1),
    }
}

/// Checks the `len` members of an object starting at `first` (key, value, key, value...): each
/// value, and that no key repeats.
fn check_members(nodes: &[Node<'_>], first: usize, len: usize, depth: usize) -> Result<(), Fault> {
    // Small objects dominate MCP traffic: a linear scan beats hashing and allocating there. Keys
    // are compared by a fingerprint (length, first and last byte) first, so distinct keys rarely
    // reach a string comparison. Larger objects sort their keys.
    const SMALL: usize = 16;
    let key_at = |idx: usize| match nodes.get(idx) {
        Some(Node::String(key)) => Ok(*key),
        _ => Err(Fault::KeyNotString),
    };
    let mut idx = first;
    if len <= SMALL {
        let mut prints = [0u64; SMALL];
        for i in 0..len {
            let key = key_at(idx)?;
            let bytes = key.as_bytes();
            let print = (bytes.len() as u64) << 16
                | u64::from(bytes.first().copied().unwrap_or(0)) << 8
                | u64::from(bytes.last().copied().unwrap_or(0));
            if prints[..i].contains(&print) && earlier_key(nodes, first, i, key) {
                return Err(Fault::DuplicateKey(idx as u32));
            }
            prints[i] = print;
            idx = check_value(nodes, idx + 1, depth)?;
        }
        return Ok(());
    }
    let mut keys: Vec<(&str, usize)> = Vec::with_capacity(len);
    for _ in 0..len {
        keys.push((key_at(idx)?, idx));
        idx = check_value(nodes, idx + 1, depth)?;
    }
    keys.sort_unstable();
    match keys.windows(2).find(|w| w[0].0 == w[1].0) {
        Some(w) => Err(Fault::DuplicateKey(w[1].1 as u32)),
        None => Ok(()),
    }
}

/// Whether one of the first `before` keys of the object whose members start at `first` is
/// `key`. Only asked when fingerprints collide, so it may walk the members again.
#[cold]
fn earlier_key(nodes: &[Node<'_>], first: usize, before: usize, key: &str) -> bool {
    let mut idx = first;
    for _ in 0..before {
        if matches!(nodes.get(idx), Some(Node::String(k)) if *k == key) {
            return true;
        }
        idx += 1 + subtree_len(nodes.get(idx + 1));
    }
    false
}

fn subtree_len(node: Option<&Node<'_>>) -> usize {
    match node {
        Some(Node::Object { count, .. } | Node::Array { count, .. }) => count + 1,
        _ => 1,
    }
}

fn build(nodes: &[Node<'_>], pos: &mut usize) -> serde_json::Value {
    use serde_json::Value as J;
    // Depth is capped at MAX_DEPTH by the tape walk, so this recursion is bounded.
    let Some(node) = nodes.get(*pos) else {
        return J::Null;
    };
    *pos += 1;
    match *node {
        Node::String(s) => J::String(s.to_owned()),
        Node::Static(StaticNode::Null) => J::Null,
        Node::Static(StaticNode::Bool(b)) => J::Bool(b),
        Node::Static(StaticNode::I64(i)) => J::from(i),
        Node::Static(StaticNode::U64(u)) => J::from(u),
        Node::Static(StaticNode::F64(f)) => {
            serde_json::Number::from_f64(f).map_or(J::Null, J::Number)
        }
        Node::Array { len, .. } => J::Array((0..len).map(|_| build(nodes, pos)).collect()),
        Node::Object { len, .. } => {
            let mut map = serde_json::Map::new();
            for _ in 0..len {
                let key = match nodes.get(*pos) {
                    Some(Node::String(k)) => (*k).to_owned(),
                    _ => String::new(),
                };
                *pos += 1;
                map.insert(key, build(nodes, pos));
            }
            J::Object(map)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Check = fn(&JsonError) -> bool;

    fn parse(s: &[u8]) -> Result<serde_json::Value, JsonError> {
        with_parsed(s, |v| v.to_owned_value())
    }

    #[test]
    fn accepts_ordinary_json() {
        let v = parse(
            br#" {"a": [1, -2, 3.5, "x\u00e9\ud83d\ude00", true, null, {}], "b": {"c": "d"}} "#,
        )
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"a": [1, -2, 3.5, "xé😀", true, null, {}], "b": {"c": "d"}})
        );
    }

    #[test]
    fn refuses_what_parsers_disagree_on() {
        let cases: &[(&[u8], Check)] = &[
            (b"", |e| *e == JsonError::Empty),
            (b"  \n", |e| *e == JsonError::Empty),
            (b"\xEF\xBB\xBF{}", |e| *e == JsonError::ByteOrderMark),
            (
                br#"{"a":1,"a":2}"#,
                |e| matches!(e, JsonError::DuplicateKey { key } if key == "a"),
            ),
            (
                br#"{"name":1,"n\u0061me":2}"#,
                |e| matches!(e, JsonError::DuplicateKey { key } if key == "name"),
            ),
            (br#"{"x":{"k":1,"k":1}}"#, |e| {
                matches!(e, JsonError::DuplicateKey { .. })
            }),
            (br#""\ud800""#, |e| {
                matches!(e, JsonError::LoneSurrogate { .. })
            }),
            (br#""\udc00""#, |e| {
                matches!(e, JsonError::LoneSurrogate { .. })
            }),
            (br#""\ud800\u0041""#, |e| {
                matches!(e, JsonError::LoneSurrogate { .. })
            }),
            (br#""\ud800x""#, |e| {
                matches!(e, JsonError::LoneSurrogate { .. })
            }),
            (b"\"\xff\"", |e| matches!(e, JsonError::Syntax { .. })),
            (b"\"\xed\xa0\x80\"", |e| {
                matches!(e, JsonError::Syntax { .. })
            }),
            (b"NaN", |e| matches!(e, JsonError::Syntax { .. })),
            (b"[Infinity]", |e| matches!(e, JsonError::Syntax { .. })),
            (b"[-Infinity]", |e| matches!(e, JsonError::Syntax { .. })),
            (b"[01]", |e| matches!(e, JsonError::Syntax { .. })),
            (b"[-01]", |e| matches!(e, JsonError::Syntax { .. })),
            (b"[1.]", |e| matches!(e, JsonError::Syntax { .. })),
            (b"[.5]", |e| matches!(e, JsonError::Syntax { .. })),
            (b"[+1]", |e| matches!(e, JsonError::Syntax { .. })),
            (b"[1e400]", |e| {
                matches!(e, JsonError::NumberOutOfRange | JsonError::Syntax { .. })
            }),
            (b"{} {}", |e| matches!(e, JsonError::Syntax { .. })),
            (b"{}x", |e| matches!(e, JsonError::Syntax { .. })),
            (b"[1,]", |e| matches!(e, JsonError::Syntax { .. })),
            (b"{\"a\":1,}", |e| matches!(e, JsonError::Syntax { .. })),
            (b"\"a\tb\"", |e| matches!(e, JsonError::Syntax { .. })),
            (b"'a'", |e| matches!(e, JsonError::Syntax { .. })),
            (b"{a:1}", |e| matches!(e, JsonError::Syntax { .. })),
            (b"[1 /* c */]", |e| matches!(e, JsonError::Syntax { .. })),
            (b"\"abc", |e| matches!(e, JsonError::Syntax { .. })),
            (b"[1\0.]", |e| matches!(e, JsonError::Syntax { .. })),
            (b"[-0]", |e| matches!(e, JsonError::Syntax { .. })),
            // Numbers of 19+ digits take simd-json's unchecked slow path (found by fuzzing).
            (b"4444444444444444444a", |e| {
                matches!(e, JsonError::Syntax { .. })
            }),
            (b"[4444444444444444444a]", |e| {
                matches!(e, JsonError::Syntax { .. })
            }),
            (b"-4444444444444444444a", |e| {
                matches!(e, JsonError::Syntax { .. })
            }),
            (b"{\"x\": 1.0000000000000000001a}", |e| {
                matches!(e, JsonError::Syntax { .. })
            }),
            (b"[18446744073709551615true]", |e| {
                matches!(e, JsonError::Syntax { .. })
            }),
            (b"-0", |e| matches!(e, JsonError::Syntax { .. })),
            (b"[1]\0", |e| matches!(e, JsonError::Syntax { .. })),
            (b"\"a\0b\"", |e| matches!(e, JsonError::Syntax { .. })),
        ];
        for (input, check) in cases {
            match parse(input) {
                Ok(v) => panic!("accepted {:?} as {v}", String::from_utf8_lossy(input)),
                Err(e) => assert!(
                    check(&e),
                    "{:?}: unexpected error {e:?}",
                    String::from_utf8_lossy(input)
                ),
            }
        }
    }

    #[test]
    fn long_digit_runs_trigger_the_full_scan_wherever_they_lie() {
        assert!(!long_digit_run(b"{\"a\":\"abc\"}"));
        assert!(long_digit_run(b"1234567890123456789"));
        assert!(!long_digit_run(b"123456789012345678"));
        assert!(long_digit_run(b"xx/1234567890123456789:"));
        assert!(!long_digit_run(b"/:/:/:/:/:/:/:/:/:/:/:/:/:/:/:/:/:/:/:"));
        // A float's digits count on both sides of its dot.
        assert!(long_digit_run(b"[12345678.1234567890a]"));
        assert!(!long_digit_run(b"[12345678.123456789]"));
        let long = format!("{{\"n\":{}}}", "7".repeat(40));
        assert!(long_digit_run(long.as_bytes()));
        // Every offset and body length: a 19-run is found, an 18-run is not, whatever its
        // alignment against the words and the unblocked tail.
        for pad in 0..40 {
            for tail in 0..40 {
                for (len, found) in [(19, true), (18, false)] {
                    let body =
                        format!("{}{}{}", "x".repeat(pad), "5".repeat(len), "y".repeat(tail));
                    assert_eq!(
                        long_digit_run(body.as_bytes()),
                        found,
                        "pad {pad} tail {tail} run {len}"
                    );
                }
            }
        }
        // Integers of up to 19 digits still parse; longer ones and over-long mantissas do not:
        // readers disagree on them.
        assert!(parse(b"[1234567890123456789, -9223372036854775808, 1.00000000000000001]").is_ok());
        for bad in [
            &b"[12345678901234567890]"[..],
            b"[18446744073709551616]",
            b"[-9223372036854775809]",
            b"[1.0000000000000000001]",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn depth_is_capped() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(ok.as_bytes()).is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(parse(deep.as_bytes()), Err(JsonError::TooDeep));
        // Brackets inside strings do not count.
        let quoted = format!("[\"{}\"]", "[".repeat(1000));
        assert!(parse(quoted.as_bytes()).is_ok());
        // A flood: simd-json builds its tape without recursion, then the walk refuses it.
        let flood = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(parse(flood.as_bytes()), Err(JsonError::TooDeep));
        assert!(parse("[".repeat(100_000).as_bytes()).is_err());
        // The slow path (taken for any \u escape) agrees.
        let escaped = format!(
            "{}\"\\u0041\"{}",
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(parse(escaped.as_bytes()), Err(JsonError::TooDeep));
    }

    #[test]
    fn escaped_quotes_and_backslashes_do_not_confuse_the_prescan() {
        let v = parse(br#"{"a":"\\","b":"\"[[[","c":"\\\"\ud83d\ude00"}"#).unwrap();
        assert_eq!(v["c"], "\\\"😀");
    }

    #[test]
    fn the_tape_walk_finds_faults_at_any_depth_and_position() {
        // Same fingerprint (length, first and last byte), different keys: not a duplicate.
        assert!(parse(br#"{"axb":1,"ayb":2,"azb":{"axb":3}}"#).is_ok());
        // A duplicate after values that are containers: the earlier keys are found past them.
        assert_eq!(
            parse(br#"{"a":{"x":[1,{"y":2}]},"b":[{"c":1},[]],"a":3}"#),
            Err(JsonError::DuplicateKey { key: "a".into() })
        );
        assert_eq!(
            parse(br#"[1,[2,{"p":[{"q":1,"r":2,"q":3}]}]]"#),
            Err(JsonError::DuplicateKey { key: "q".into() })
        );
        // simd-json refuses this one itself; the walk's own finiteness check is the backstop.
        assert!(parse(br#"{"a":[[1,2],[3,[1e400]]]}"#).is_err());
        // Either side of the small-object limit.
        for n in [16, 17] {
            let members: Vec<String> = (0..n).map(|i| format!("\"k{i}\":[{i}]")).collect();
            let unique = format!("{{{}}}", members.join(","));
            assert!(parse(unique.as_bytes()).is_ok(), "{unique}");
            let repeated = format!("{{{},\"k0\":1}}", members[..n - 1].join(","));
            assert_eq!(
                parse(repeated.as_bytes()),
                Err(JsonError::DuplicateKey { key: "k0".into() }),
                "{repeated}"
            );
        }
    }

    #[test]
    fn large_objects_use_the_sorted_duplicate_check() {
        let mut body = String::from("{");
        for i in 0..100 {
            body.push_str(&format!("\"k{i}\":{i},"));
        }
        body.push_str("\"k7\":0}");
        assert_eq!(
            parse(body.as_bytes()),
            Err(JsonError::DuplicateKey { key: "k7".into() })
        );
    }
}
