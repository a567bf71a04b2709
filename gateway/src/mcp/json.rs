//! Strict JSON: every accepted body has exactly one interpretation.
//!
//! simd-json does the parsing; a pre-scan and a walk over simd-json's tape add what it does not
//! check on its own (a BOM, NUL, lone surrogate escapes, nesting depth, duplicate keys compared
//! after unescaping, numbers it reads differently from other parsers, which the walk finds through
//! simd-json's structural indexes). Anything two parsers could read differently is an error
//! here, so what the gateway decides on is what the upstream executes. This module knows JSON
//! only, not JSON-RPC.

use std::cell::RefCell;

use simd_json::{Node, StaticNode, Tape};

/// Deepest nesting of arrays and objects accepted. Far above anything MCP needs, far below what
/// would let a recursive consumer (a policy walker, `Drop`) exhaust the stack.
pub const MAX_DEPTH: usize = 64;

/// Largest integer magnitude that every JSON consumer reads exactly (I-JSON, RFC 7493).
pub const MAX_EXACT_INT: u64 = 1 << 53;

/// Most significant digits accepted in a number's exponent. Readers that keep exponents in 32
/// bits (simd-json did before 0.19) wrap longer ones and read another value; anything this short
/// is far from wrapping, and far beyond any finite `f64`.
pub const MAX_EXPONENT_DIGITS: usize = 9;

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
    #[error(
        "key {key:?} repeats another key of its object in other letter case (servers in Go and .NET match keys without regard to case and would read them as one)"
    )]
    KeyRepeatedInOtherCase { key: String },
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
    /// The body, then [`simd_json::INPUT_PADDING`] bytes of padding: simd-json reads it in
    /// place rather than copying it into a padded buffer of its own.
    input: Vec<u8>,
    buffers: simd_json::Buffers,
    tape: Option<Tape<'static>>,
}

impl Scratch {
    fn new() -> Self {
        Scratch {
            input: Vec::new(),
            // simd-json refuses deeper documents while it builds the tape, before the walk.
            buffers: simd_json::Buffers::with_max_depth(0, MAX_DEPTH),
            tape: Some(Tape::null().reset()),
        }
    }
}

thread_local! {
    // simd-json parses in place and wants scratch buffers: reusing them per thread keeps the hot
    // path free of allocations sized by the body.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::new());
}

/// Parses `bytes` strictly and hands the document to `f`. Everything `f` returns must be owned:
/// the tape borrows per-thread scratch space.
pub fn with_parsed<R>(bytes: &[u8], f: impl FnOnce(View<'_, '_>) -> R) -> Result<R, JsonError> {
    // Keys are all ASCII when the body is and spells no character with `\u`: their case-folded
    // fingerprints then need no look at each key's characters.
    let ascii_keys = !prescan(bytes)? && bytes.is_ascii();
    SCRATCH.with(|cell| {
        // A re-entrant call (f parsing again) would find the scratch borrowed: fall back to fresh
        // buffers rather than panic.
        match cell.try_borrow_mut() {
            Ok(mut scratch) => parse_with(&mut scratch, bytes, ascii_keys, f),
            Err(_) => parse_with(&mut Scratch::new(), bytes, ascii_keys, f),
        }
    })
}

fn parse_with<R>(
    scratch: &mut Scratch,
    bytes: &[u8],
    ascii_keys: bool,
    f: impl FnOnce(View<'_, '_>) -> R,
) -> Result<R, JsonError> {
    let Scratch {
        input,
        buffers,
        tape,
    } = scratch;
    input.clear();
    input.extend_from_slice(bytes);
    input.extend_from_slice(&[0; simd_json::INPUT_PADDING]);
    let mut local = tape.take().unwrap_or_else(|| Tape::null().reset()).reset();
    let result = match simd_json::fill_tape_padded(input, bytes.len(), buffers, &mut local) {
        Ok(()) => check_tape(&local.0, bytes, buffers.structural_indexes(), ascii_keys)
            .map(|()| f(View(&local.0))),
        Err(e) if *e.error() == simd_json::ErrorType::DepthLimitExceeded => Err(JsonError::TooDeep),
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
        E::InternalError => "trailing data after the value, or unbalanced brackets".into(),
        other => format!("{other:?}"),
    }
}

/// The checks simd-json leaves to us that need the raw bytes: emptiness, BOM, NUL, surrogate
/// escapes. Says whether the body holds a `\u` escape.
fn prescan(bytes: &[u8]) -> Result<bool, JsonError> {
    if !bytes
        .iter()
        .any(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        return Err(JsonError::Empty);
    }
    if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return Err(JsonError::ByteOrderMark);
    }
    // One SIMD pass finds NULs (no JSON text holds one raw; simd-json before 0.19 read a NUL
    // after a number as the end of input, so "[1\0.]" parsed) and backslashes; a `\u` escape
    // (lone surrogates) needs the string-aware scan. Numbers are checked after parsing, from
    // simd-json's structural indexes, so ordinary bodies take one SIMD search here and nothing
    // more.
    for i in memchr::memchr2_iter(0, b'\\', bytes) {
        if bytes[i] == 0 {
            return Err(JsonError::Syntax {
                offset: i,
                kind: "NUL byte".into(),
            });
        }
        if bytes.get(i + 1) == Some(&b'u') {
            return full_scan(bytes).map(|()| true);
        }
    }
    Ok(false)
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
    // serde_json and Python read -0 as the float -0.0, simd-json as the integer 0.
    if i > start
        && int_digits == 1
        && bytes[i] == b'0'
        && !matches!(bytes.get(after), Some(b'.' | b'e' | b'E'))
    {
        return Err(JsonError::Syntax {
            offset: start,
            kind: "negative zero is read differently by different parsers".into(),
        });
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
        // A reader that cuts the exponent to 32 bits (simd-json before 0.19) reads
        // "1e-4294967296" as 1.0 where others see 0.0. No exponent of nine significant digits or
        // fewer gets near that.
        let leading_zeros = bytes[after - n..after]
            .iter()
            .take_while(|&&b| b == b'0')
            .count();
        if n - leading_zeros > MAX_EXPONENT_DIGITS {
            return Err(JsonError::Syntax {
                offset: start,
                kind: "number with an exponent too large for every parser to read alike".into(),
            });
        }
        (i, float) = (after, true);
    }
    // Beyond what every reader represents alike: parsers that do not round correctly (simd-json
    // did not before 0.19) read long mantissas differently, and integers outside 64 bits come
    // out as floats or as big integers.
    let text = std::str::from_utf8(&bytes[start..i]).unwrap_or("");
    // 19+ digits is where fast paths that are exact for shorter mantissas end (simd-json's among
    // them), and integers of 20+ digits no longer fit 64 bits.
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

/// The byte-by-byte scan, for bodies with `\u` escapes (lone surrogates): string-aware, so that
/// it sees escapes and numbers as a parser does. It checks every number too, which makes it the
/// fallback should the tape walk ever fail to line numbers up with their text.
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
            b'-' | b'0'..=b'9' => i = number_token(bytes, i)?,
            // No JSON text holds a raw control character here (simd-json before 0.19 read a NUL
            // after a number as the end of input: "[1\0.]" parsed).
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

/// Walks the tape once: nesting depth (simd-json refuses deeper tapes already; the walk recurses,
/// so it checks again), duplicate keys per object (simd-json unescaped them already, so
/// `"n\u0061me"` and `"name"` collide) and numbers that not every reader sees alike.
/// `bytes` is the parsed text and `starts` simd-json's structural indexes into it.
fn check_tape(
    nodes: &[Node<'_>],
    bytes: &[u8],
    starts: &[u32],
    ascii_keys: bool,
) -> Result<(), JsonError> {
    let walk = Walk {
        nodes,
        bytes,
        starts,
        ascii_keys,
        numbers: true,
    };
    let result = match walk.value(0, &mut 0, 0) {
        // Cannot happen while the tape and the structural indexes describe the same text; if a
        // simd-json release ever made them differ, check every number with the byte scan rather
        // than trust positions that do not line up.
        Err(Fault::Desync) => {
            #[cfg(test)]
            tests::DESYNCS.with(|n| n.set(n.get() + 1));
            full_scan(bytes)?;
            Walk {
                numbers: false,
                ..walk
            }
            .value(0, &mut 0, 0)
        }
        other => other,
    };
    result.map(|_| ()).map_err(|fault| match fault {
        Fault::TooDeep => JsonError::TooDeep,
        Fault::NumberOutOfRange => JsonError::NumberOutOfRange,
        Fault::DuplicateKey(at) => JsonError::DuplicateKey {
            key: key_text(nodes, at),
        },
        Fault::KeyInOtherCase(at) => JsonError::KeyRepeatedInOtherCase {
            key: key_text(nodes, at),
        },
        Fault::KeyNotString => JsonError::Syntax {
            offset: 0,
            kind: "object key is not a string".into(),
        },
        Fault::Number(at) => number_token(bytes, at as usize)
            .err()
            .unwrap_or(JsonError::Syntax {
                offset: at as usize,
                kind: "invalid number".into(),
            }),
        Fault::Desync => JsonError::Syntax {
            offset: 0,
            kind: "the parser's structure and its tape disagree".into(),
        },
    })
}

fn key_text(nodes: &[Node<'_>], at: u32) -> String {
    match nodes.get(at as usize) {
        Some(Node::String(key)) => (*key).to_owned(),
        _ => String::new(),
    }
}

/// Whether the text at `at`, running at most to `end`, may be a number [`number_token`] refuses
/// (parsers read it differently): "-0", which simd-json reads as the integer 0 and others as
/// -0.0; a text long enough to hold 19 digits; or one long enough for an exponent a 32-bit
/// reader cuts short. simd-json before 0.19 also parsed 19+ digits on a path that neither
/// rounded correctly nor checked what followed ("4444444444444444444a" parsed).
#[inline(always)]
fn needs_number_check(bytes: &[u8], at: usize, end: usize) -> bool {
    // The shortest text that can hold a number [`number_token`] refuses for its length: 19
    // digits, or one digit, an `e` and an exponent of MAX_EXPONENT_DIGITS + 1 digits.
    const LONG: usize = 3 + MAX_EXPONENT_DIGITS;
    // Most numbers are short even counting what follows them up to the next index.
    if end.saturating_sub(at) < LONG {
        return bytes.get(at) == Some(&b'-') && bytes.get(at + 1) == Some(&b'0');
    }
    let long = || {
        // The next index may lie past whitespace (pretty-printed bodies), which is no part of
        // the number.
        let mut end = end.min(bytes.len());
        while end > at && matches!(bytes[end - 1], b' ' | b'\t' | b'\n' | b'\r') {
            end -= 1;
        }
        end - at.min(end) >= LONG
    };
    match bytes.get(at) {
        Some(b'-') => bytes.get(at + 1) == Some(&b'0') || long(),
        Some(b'0'..=b'9') => long(),
        _ => false,
    }
}

/// What the tape walk found wrong. Eight bytes, so that every step of the walk returns its
/// `Result` in registers; [`check_tape`] turns it into a [`JsonError`].
#[derive(Clone, Copy)]
enum Fault {
    TooDeep,
    NumberOutOfRange,
    /// The tape index of the repeated key (simd-json caps input at 4 GiB, so it fits).
    DuplicateKey(u32),
    /// The tape index of a key that equals an earlier one but for letter case.
    KeyInOtherCase(u32),
    KeyNotString,
    /// The byte offset of a number that [`number_token`] refuses.
    Number(u32),
    /// A number node whose structural index does not point at a number.
    Desync,
}

/// The tape, and the text with simd-json's structural indexes into it. Stage 1 records an index
/// for every value's first byte and for every bracket, colon and comma, so the walk keeps a
/// cursor into the indexes next to its tape position and finds each number's text without a
/// scan: a scalar takes one index, an array `[`, its elements each followed by `,` or `]`, an
/// object `{`, its members (key, `:`, value) each followed by `,` or `}`.
#[derive(Clone, Copy)]
struct Walk<'a, 'i> {
    nodes: &'a [Node<'i>],
    bytes: &'a [u8],
    starts: &'a [u32],
    /// Whether every key is known to be ASCII.
    ascii_keys: bool,
    /// Whether to check numbers at their structural index (off after a [`Fault::Desync`]).
    numbers: bool,
}

impl Walk<'_, '_> {
    /// Checks the value at node `idx`, inside `depth` containers, whose text starts at
    /// structural index `*s`; returns the node after it and moves `*s` past it. Scalars, most of
    /// any tape, are decided here without a call.
    #[inline(always)]
    fn value(&self, idx: usize, s: &mut usize, depth: usize) -> Result<usize, Fault> {
        match self.nodes.get(idx) {
            Some(Node::Object { .. } | Node::Array { .. }) => self.container(idx, s, depth + 1),
            Some(Node::Static(StaticNode::F64(f))) if !f.is_finite() => {
                Err(Fault::NumberOutOfRange)
            }
            Some(Node::Static(StaticNode::I64(_) | StaticNode::U64(_) | StaticNode::F64(_)))
                if self.numbers =>
            {
                self.number(*s)?;
                *s += 1;
                Ok(idx + 1)
            }
            _ => {
                *s += 1;
                Ok(idx + 1)
            }
        }
    }

    /// Checks the number whose text starts at structural index `s`.
    #[inline(always)]
    fn number(&self, s: usize) -> Result<(), Fault> {
        let at = self.starts.get(s).map_or(usize::MAX, |&at| at as usize);
        let end = self
            .starts
            .get(s + 1)
            .map_or(self.bytes.len(), |&next| next as usize);
        if !matches!(self.bytes.get(at), Some(b'-' | b'0'..=b'9')) {
            return Err(Fault::Desync);
        }
        if needs_number_check(self.bytes, at, end) {
            return self.number_token(at);
        }
        Ok(())
    }

    #[cold]
    fn number_token(&self, at: usize) -> Result<(), Fault> {
        match number_token(self.bytes, at) {
            Ok(_) => Ok(()),
            Err(_) => Err(Fault::Number(at as u32)),
        }
    }

    /// Checks the array or object at node `idx` and structural index `*s`, which is the
    /// `depth`th level of nesting. Recursion is bounded by [`MAX_DEPTH`], checked before
    /// descending.
    #[inline(never)]
    fn container(&self, idx: usize, s: &mut usize, depth: usize) -> Result<usize, Fault> {
        if depth > MAX_DEPTH {
            return Err(Fault::TooDeep);
        }
        match self.nodes.get(idx) {
            Some(&Node::Array { len, count }) => {
                // `[`, then each element and the `,` or `]` after it (`[]` takes two).
                *s += 1 + usize::from(len == 0);
                let mut at = idx + 1;
                for _ in 0..len {
                    at = self.value(at, s, depth)?;
                    *s += 1;
                }
                Ok(idx + count + 1)
            }
            Some(&Node::Object { len, count }) => {
                *s += 1 + usize::from(len == 0);
                self.members(idx + 1, s, len, depth)?;
                Ok(idx + count + 1)
            }
            _ => {
                *s += 1;
                Ok(idx + 1)
            }
        }
    }

    /// Checks the `len` members of an object whose first key is node `first` (key, value, key,
    /// value...), its key at structural index `*s`: each value, and that no key repeats.
    fn members(&self, first: usize, s: &mut usize, len: usize, depth: usize) -> Result<(), Fault> {
        // Small objects dominate MCP traffic: a linear scan beats hashing and allocating there.
        // Keys are compared by a fingerprint (length, first and last character, case folded)
        // first, so distinct keys rarely reach a string comparison. Larger objects sort their
        // keys. Keys are compared case folded because Go's encoding/json and .NET's web defaults
        // match keys to fields without regard to case: `{"path":"/tmp","PATH":"/etc"}` is one
        // key there, and the policy would have judged the other value.
        const SMALL: usize = 16;
        let nodes = self.nodes;
        let key_at = |idx: usize| match nodes.get(idx) {
            Some(Node::String(key)) => Ok(*key),
            _ => Err(Fault::KeyNotString),
        };
        let mut idx = first;
        if len <= SMALL {
            let mut prints = [0u64; SMALL];
            for i in 0..len {
                let key = key_at(idx)?;
                let print = if self.ascii_keys {
                    ascii_fingerprint(key.as_bytes())
                } else {
                    fingerprint(key)
                };
                if prints[..i].contains(&print) {
                    match earlier_key(nodes, first, i, key) {
                        Some(Same::Exactly) => return Err(Fault::DuplicateKey(idx as u32)),
                        Some(Same::Folded) => return Err(Fault::KeyInOtherCase(idx as u32)),
                        None => {}
                    }
                }
                prints[i] = print;
                // The key and its `:`, the value, then the `,` or `}` after it.
                *s += 2;
                idx = self.value(idx + 1, s, depth)?;
                *s += 1;
            }
            return Ok(());
        }
        let mut keys: Vec<(&str, usize)> = Vec::with_capacity(len);
        for _ in 0..len {
            keys.push((key_at(idx)?, idx));
            *s += 2;
            idx = self.value(idx + 1, s, depth)?;
            *s += 1;
        }
        // Keys equal when folded sort next to each other, exact repeats among them.
        keys.sort_unstable_by(|a, b| cmp_folded(a.0, b.0).then_with(|| a.0.cmp(b.0)));
        match keys.windows(2).find(|w| same_folded(w[0].0, w[1].0)) {
            // Named as the later of the two in the document, as the small-object walk does.
            Some(w) if w[0].0 == w[1].0 => Err(Fault::DuplicateKey(w[0].1.max(w[1].1) as u32)),
            Some(w) => Err(Fault::KeyInOtherCase(w[0].1.max(w[1].1) as u32)),
            None => Ok(()),
        }
    }
}

/// How an earlier key equals a later one.
enum Same {
    Exactly,
    /// Only once case folded.
    Folded,
}

/// Whether one of the first `before` keys of the object whose members start at `first` is
/// `key`, exactly or case folded. Only asked when fingerprints collide, so it may walk the
/// members again.
#[cold]
fn earlier_key(nodes: &[Node<'_>], first: usize, before: usize, key: &str) -> Option<Same> {
    let mut idx = first;
    let mut folded = None;
    for _ in 0..before {
        if let Some(Node::String(k)) = nodes.get(idx) {
            if *k == key {
                return Some(Same::Exactly);
            }
            if same_folded(k, key) {
                folded = Some(Same::Folded);
            }
        }
        idx += 1 + subtree_len(nodes.get(idx + 1));
    }
    folded
}

/// A character as servers that match keys without regard to case see it: Go's encoding/json
/// folds each to the upper case of its lower case (`ſ` and `s` are both `S`, the Kelvin sign
/// and `k` both `K`). Std's mappings are the full ones, which equate a few more (`ß` with
/// `ss`): that only refuses more. The full lower case is one character but for `İ`, whose
/// first is the simple mapping's `i`.
fn fold(c: char) -> std::char::ToUppercase {
    c.to_lowercase().next().unwrap_or(c).to_uppercase()
}

fn folded(key: &str) -> impl Iterator<Item = char> + '_ {
    key.chars().flat_map(fold)
}

/// Length, first and last character of a key, case folded: keys that are equal folded have
/// equal fingerprints.
#[inline(always)]
fn fingerprint(key: &str) -> u64 {
    if key.is_ascii() {
        ascii_fingerprint(key.as_bytes())
    } else {
        folded_fingerprint(key)
    }
}

/// [`fingerprint`] of an ASCII key. Setting bit 5 stands in for folding: it maps both cases of a
/// letter alike (and a few punctuation marks onto others, which only costs a comparison).
#[inline(always)]
fn ascii_fingerprint(key: &[u8]) -> u64 {
    let fold = |b: Option<&u8>| u64::from(b.copied().unwrap_or(0) | 0x20);
    (key.len() as u64) << 42 | fold(key.first()) << 21 | fold(key.last())
}

#[cold]
fn folded_fingerprint(key: &str) -> u64 {
    let (mut len, mut first, mut last) = (0u64, None, 0u64);
    for c in folded(key) {
        // As the ASCII fingerprint marks characters, so that `S` and `\u{17f}` agree.
        let c = u64::from(c) | 0x20;
        len += 1;
        first.get_or_insert(c);
        last = c;
    }
    len << 42 | first.unwrap_or(0) << 21 | last
}

/// Whether two keys are one to a server that matches keys without regard to case (Go folds
/// each character to the upper case of its lower case).
pub fn same_folded(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        a.eq_ignore_ascii_case(b)
    } else {
        folded(a).eq(folded(b))
    }
}

fn cmp_folded(a: &str, b: &str) -> std::cmp::Ordering {
    if a.is_ascii() && b.is_ascii() {
        a.bytes()
            .map(|b| b.to_ascii_uppercase())
            .cmp(b.bytes().map(|b| b.to_ascii_uppercase()))
    } else {
        folded(a).cmp(folded(b))
    }
}

fn subtree_len(node: Option<&Node<'_>>) -> usize {
    match node {
        Some(Node::Object { count, .. } | Node::Array { count, .. }) => count + 1,
        _ => 1,
    }
}

fn build(nodes: &[Node<'_>], pos: &mut usize) -> serde_json::Value {
    use serde_json::Value as J;
    // Depth is capped at MAX_DEPTH (simd-json refuses deeper tapes, the walk checks again), so
    // this recursion is bounded.
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

    thread_local! {
        /// How often the walk's structural cursor disagreed with the tape: never, if it is right.
        pub(super) static DESYNCS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

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

    /// The vendored simd-json returns strings and numbers from stage 2 in registers, and their
    /// errors through a side slot (vendor/simd-json/AGENTGATE.md): every kind of each must come
    /// through whole.
    #[test]
    fn patched_stage_two_returns_values_and_errors_whole() {
        let v = parse(
            br#"[9007199254740992, -9007199254740992, 922337203685477580, 0.1, -2.5e-3, "plain", "esc\n\"aped", "", {"k": "\u00e9"}]"#,
        )
        .unwrap();
        assert_eq!(v[0], serde_json::json!(9_007_199_254_740_992u64));
        assert_eq!(v[1], serde_json::json!(-9_007_199_254_740_992i64));
        assert_eq!(v[2], serde_json::json!(922_337_203_685_477_580i64));
        assert_eq!(v[3], serde_json::json!(0.1));
        assert_eq!(v[4], serde_json::json!(-2.5e-3));
        assert_eq!(v[5], "plain");
        assert_eq!(v[6], "esc\n\"aped");
        assert_eq!(v[7], "");
        assert_eq!(v[8]["k"], "é");
        let kind = |body: &[u8]| match parse(body) {
            Err(JsonError::Syntax { kind, .. }) => kind,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            kind(br#"["ok", "bad \x escape"]"#),
            "invalid escape in a string"
        );
        assert_eq!(kind(br#"{"k": "\uZZZZ"}"#), "invalid escape in a string");
        assert!(kind(b"[1, 2, 3.]").starts_with("invalid number"));
        assert!(kind(b"[1, -]").starts_with("invalid number"));
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

    /// Where a number can stand: alone, in arrays and objects, after empty and nested
    /// containers (which take a different number of structural indexes), after strings with
    /// escaped quotes and brackets, with whitespace around it, in a body the byte scan reads.
    const NUMBER_PLACES: &[&str] = &[
        "X",
        " X ",
        "[X]",
        "[1,X]",
        "[X,1]",
        "[ X , 2 ]",
        "{\n    \"a\": X\n                        }",
        "{\"a\":X}",
        "{\"a\":1,\"b\":X,\"c\":2}",
        "[[],{},X]",
        "{\"e\":{},\"f\":[[]],\"g\":X}",
        "[\"s\\\"[{,:\",X]",
        "{\"a\":[1,[2,{\"b\":[X]}]],\"z\":0}",
        "[{\"day\":\"2026-01-05\",\"n\":\"12345678901234567890\"},X]",
        "[[[[[[X]]]]],[[]],{\"k\":{\"l\":[X]}}]",
        // A \u escape sends the body through the byte scan first: it must agree.
        "[\"caf\\u00e9\",X]",
    ];

    #[test]
    fn numbers_are_checked_wherever_they_stand() {
        for place in NUMBER_PLACES {
            for bad in [
                "-0",
                "-0 ",
                "12345678901234567890",
                "18446744073709551616",
                "-9223372036854775809",
                "1.0000000000000000001",
                "4444444444444444444a",
                "-4444444444444444444a",
                "18446744073709551615true",
                // Exponents a 32-bit reader cuts short (simd-json before 0.19: 1.0 came out).
                "1e-4294967296",
                "1e4294967296",
                "-1.5E+00004294967296",
                "1e1000000000",
                "0e4294967296",
            ] {
                let body = place.replace('X', bad);
                assert!(
                    matches!(parse(body.as_bytes()), Err(JsonError::Syntax { .. })),
                    "{body}: {:?}",
                    parse(body.as_bytes())
                );
            }
            // Integers of up to 19 digits, -0 as a float, and numbers that only look like the
            // bad ones in strings are read alike by every parser.
            for good in [
                "0",
                "10",
                "-1",
                "-0.0",
                "-0e1",
                "1234567890123456789",
                "-9223372036854775808",
                "1.00000000000000001",
                "12.5e10",
                "1e-400",
                "1e000000000000000000005",
                "5e-999999999",
                "1234567890123",
                "-0.5",
                "\"-0\"",
                "\"12345678901234567890\"",
            ] {
                let body = place.replace('X', good);
                let ours = parse(body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}"));
                let theirs: serde_json::Value = serde_json::from_str(&body).unwrap();
                assert_eq!(ours, theirs, "{body}");
            }
        }
        // Every number was found through the tape: the byte-scan fallback never ran.
        assert_eq!(DESYNCS.with(|n| n.get()), 0);
    }

    #[test]
    fn structural_indexes_that_do_not_match_the_tape_fall_back_to_the_byte_scan() {
        let check = |text: &[u8], starts: &[u32]| {
            let mut input = text.to_vec();
            let tape = simd_json::to_tape(&mut input).unwrap();
            check_tape(&tape.0, text, starts, false)
        };
        // The number's index points at the comma: the walk notices and scans the bytes.
        assert!(matches!(
            check(b"[1,-0]", &[0, 1, 2, 2, 5]),
            Err(JsonError::Syntax { .. })
        ));
        assert_eq!(check(b"[1,-5]", &[0, 1, 2, 2, 5]), Ok(()));
        assert_eq!(DESYNCS.with(|n| n.get()), 2);
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
        // A flood: simd-json refuses it while building the tape, before any recursion.
        let flood = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(parse(flood.as_bytes()), Err(JsonError::TooDeep));
        // Unclosed: past the cap before the end of input is found.
        assert_eq!(
            parse("[".repeat(100_000).as_bytes()),
            Err(JsonError::TooDeep)
        );
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
    fn keys_equal_but_for_case_are_refused_as_go_and_dotnet_read_them_as_one() {
        let other_case = |key: &str| Err(JsonError::KeyRepeatedInOtherCase { key: key.into() });
        assert_eq!(
            parse(br#"{"path":"/tmp","PATH":"/etc"}"#),
            other_case("PATH")
        );
        assert_eq!(parse(br#"{"x":{"Name":1,"name":2}}"#), other_case("name"));
        // Characters Go folds onto ASCII letters: long s, the Kelvin sign, dotted capital I.
        assert_eq!(
            parse("{\"status\":1,\"\u{17f}tatus\":2}".as_bytes()),
            other_case("\u{17f}tatus")
        );
        assert_eq!(
            parse(br#"{"kind":1,"\u212aind":2}"#),
            other_case("\u{212a}ind")
        );
        assert_eq!(
            parse("{\"\u{130}d\":1,\"id\":2}".as_bytes()),
            other_case("id")
        );
        assert_eq!(
            parse("{\"\u{e9}t\u{e9}\":1,\"\u{c9}T\u{c9}\":2}".as_bytes()),
            other_case("\u{c9}T\u{c9}")
        );
        // An exact repeat is still called a duplicate, also beside a case variant.
        assert_eq!(
            parse(br#"{"a":1,"a":2,"A":3}"#),
            Err(JsonError::DuplicateKey { key: "a".into() })
        );
        // Dotless i, final sigma, a titlecase digraph: each folds onto another spelling.
        for (a, b) in [
            ("\u{131}d", "ID"),
            ("\u{3c2}", "\u{3c3}"),
            ("\u{1c5}", "\u{1c6}"),
        ] {
            let body = format!("{{\"{a}\":1,\"{b}\":2}}");
            assert_eq!(parse(body.as_bytes()), other_case(b), "{body}");
        }
        // Non-ASCII keys with the fingerprint of another (length, first and last folded) that
        // differ once compared whole pass.
        assert!(parse("{\"\u{17f}xa\":1,\"sya\":2}".as_bytes()).is_ok());
        // Keys that differ in more than case, with equal folded fingerprints, pass.
        assert!(parse(br#"{"aXb":1,"ayb":2,"Ab":3,"ab ":4,"a-B":5}"#).is_ok());
        assert!(parse("{\"\u{17f}\":1,\"t\":2,\"\u{212a}\":3}".as_bytes()).is_ok());
        // Objects past the small-object limit take the sorted check.
        for (extra, expected) in [
            ("\"K7\":0", other_case("K7")),
            ("\"\u{212a}7\":0", other_case("\u{212a}7")),
            (
                "\"k7\":0",
                Err(JsonError::DuplicateKey { key: "k7".into() }),
            ),
        ] {
            let members: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
            let body = format!("{{{},{extra}}}", members.join(","));
            assert_eq!(parse(body.as_bytes()), expected, "{body}");
            let unique = format!("{{{},\"K700\":0}}", members.join(","));
            assert!(parse(unique.as_bytes()).is_ok(), "{unique}");
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
