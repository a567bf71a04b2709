//! `Mcp-Param-{Name}` headers (2026-07-28, SEP-2243): which arguments a tool's `inputSchema`
//! marks with `x-mcp-header` for clients to mirror into headers, and whether a header says what
//! its argument says.
//!
//! Intermediaries may route on these headers without reading the body, so a header that
//! disagrees with the body is a second reading of one request. The rules follow the reference
//! Python SDK (`mcp.shared.inbound`) so that the gateway and a conforming server agree on what
//! matches: only properties reached through a chain of `properties` keys count, null counts as
//! absent, values travel as themselves or as `=?base64?...?=`, numbers compare numerically.

use std::borrow::Cow;

use serde_json::{Number, Value};

/// The header prefix, lower-cased as `http` stores header names.
pub const PREFIX: &str = "mcp-param-";

/// One declared header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Declared {
    /// `Mcp-Param-<token>`, with the token as the schema spells it (for messages).
    pub header: String,
    /// The same, lower-cased (for lookups).
    pub key: String,
    /// The argument it mirrors: the `properties` keys from the schema root down to it.
    pub path: Vec<String>,
}

impl Declared {
    /// The argument's path as people write it: `region`, `target.region`.
    pub fn argument(&self) -> String {
        self.path.join(".")
    }
}

/// What a tool's `inputSchema` declares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Declarations {
    pub headers: Vec<Declared>,
    /// Why the declarations are invalid; the tool then declares none. Conforming clients drop
    /// such a tool, and conforming servers check no header for it.
    pub invalid: Option<String>,
}

/// JSON Schema keywords whose value is one subschema, a list or a map of them: crossing any
/// of them leaves the `properties` chain, so an `x-mcp-header` under them is invalid.
const SINGLE: [&str; 11] = [
    "items",
    "contains",
    "unevaluatedItems",
    "additionalProperties",
    "propertyNames",
    "unevaluatedProperties",
    "not",
    "if",
    "then",
    "else",
    "contentSchema",
];
const LIST: [&str; 4] = ["allOf", "anyOf", "oneOf", "prefixItems"];
const MAP: [&str; 4] = [
    "patternProperties",
    "dependentSchemas",
    "$defs",
    "definitions",
];

/// The property types a declaration may sit on. The specification names string, integer and
/// boolean; number is accepted too, as the TypeScript SDK accepts it, so that its clients'
/// headers are checked rather than refused.
const TYPES: [&str; 4] = ["string", "integer", "boolean", "number"];

impl Declarations {
    /// The declarations in `input_schema` (none when it is absent or not an object).
    pub fn of(input_schema: Option<&Value>) -> Self {
        match scan(input_schema) {
            Ok(headers) => Self {
                headers,
                invalid: None,
            },
            Err(why) => Self {
                headers: Vec::new(),
                invalid: Some(why),
            },
        }
    }

    /// The declaration of the header named `key` (lower-cased).
    pub fn get(&self, key: &str) -> Option<&Declared> {
        self.headers.iter().find(|d| d.key == key)
    }
}

fn scan(root: Option<&Value>) -> Result<Vec<Declared>, String> {
    let mut found: Vec<Declared> = Vec::new();
    // (path from the root through `properties` only, or None once another keyword was crossed)
    let mut stack: Vec<(Option<Vec<String>>, &Value)> =
        root.map(|r| (Some(Vec::new()), r)).into_iter().collect();
    while let Some((path, node)) = stack.pop() {
        let Value::Object(schema) = node else {
            continue;
        };
        if let Some(token) = schema.get("x-mcp-header") {
            let Some(path) = path.as_ref().filter(|p| !p.is_empty()) else {
                return Err(
                    "an x-mcp-header sits where no chain of `properties` reaches it".into(),
                );
            };
            let argument = path.join(".");
            let Value::String(token) = token else {
                return Err(format!(
                    "property {argument:?}: x-mcp-header is not a string"
                ));
            };
            if !is_token(token) {
                return Err(format!(
                    "property {argument:?}: x-mcp-header {token:?} is not an HTTP token"
                ));
            }
            match schema.get("type") {
                Some(Value::String(t)) if TYPES.contains(&t.as_str()) => {}
                _ => {
                    return Err(format!(
                        "property {argument:?}: x-mcp-header on a property whose type is not string, integer or boolean"
                    ));
                }
            }
            let key = format!("{PREFIX}{}", token.to_ascii_lowercase());
            if let Some(other) = found.iter().find(|d| d.key == key) {
                return Err(format!(
                    "property {argument:?}: x-mcp-header {token:?} repeats the one on {:?}",
                    other.argument()
                ));
            }
            found.push(Declared {
                header: format!("Mcp-Param-{token}"),
                key,
                path: path.clone(),
            });
        }
        for (keyword, value) in schema {
            match (keyword.as_str(), value) {
                ("properties", Value::Object(properties)) => {
                    for (name, sub) in properties {
                        let sub_path = path.as_ref().map(|p| {
                            let mut p = p.clone();
                            p.push(name.clone());
                            p
                        });
                        stack.push((sub_path, sub));
                    }
                }
                (k, sub) if SINGLE.contains(&k) => stack.push((None, sub)),
                (k, Value::Array(subs)) if LIST.contains(&k) => {
                    stack.extend(subs.iter().map(|s| (None, s)));
                }
                (k, Value::Object(subs)) if MAP.contains(&k) => {
                    stack.extend(subs.values().map(|s| (None, s)));
                }
                _ => {}
            }
        }
    }
    // The walk visits properties in reverse; report and check in schema order.
    found.reverse();
    Ok(found)
}

/// RFC 9110 `token`: what may follow `Mcp-Param-` in a header name.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A header value as the sender meant it. Values that would not survive as a header (non-ASCII,
/// control characters, edge whitespace) travel as `=?base64?<UTF-8 in base64>?=`; anything else
/// is itself. `None` for a malformed wrapper (bad or non-canonical base64, bad UTF-8), which then
/// matches no body value.
pub fn decode(value: &str) -> Option<Cow<'_, str>> {
    use base64::Engine;
    let Some(payload) = value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    else {
        return Some(value.into());
    };
    let engine = &base64::engine::general_purpose::STANDARD;
    let bytes = engine.decode(payload).ok()?;
    // Only the one spelling the encoder produces: no second way to write the same value.
    if engine.encode(&bytes) != payload {
        return None;
    }
    String::from_utf8(bytes).ok().map(Into::into)
}

/// Whether a client mirrors `value` at all: strings, numbers and booleans; a conforming client
/// sends no header for anything else.
pub fn mirrored(value: &Value) -> bool {
    matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_))
}

/// Whether the (decoded) header text says what the argument `value` is: strings exactly,
/// booleans as `true` / `false`, numbers by value from a plain decimal (`42`, `42.0`, `-1.5`).
pub fn agrees(text: &str, value: &Value) -> bool {
    match value {
        Value::String(s) => s == text,
        Value::Bool(b) => text == if *b { "true" } else { "false" },
        Value::Number(n) => same_number(text, n),
        _ => false,
    }
}

fn same_number(text: &str, n: &Number) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = match digits.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (digits, None),
    };
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    // Scientific notation and other spellings never compare, as in the reference SDKs.
    if !all_digits(whole) || fraction.is_some_and(|f| !all_digits(f)) {
        return false;
    }
    let integral_text = fraction.is_none_or(|f| f.bytes().all(|b| b == b'0'));
    let body_integer = n
        .as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
        .or_else(|| {
            // 42.0 in the body is the integer 42 (the strict parser caps magnitudes at 2^53).
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 1e18)
                .map(|f| f as i128)
        });
    match body_integer {
        Some(b) if integral_text => whole
            .trim_start_matches('0')
            .parse::<i128>()
            .or_else(|e| match e.kind() {
                std::num::IntErrorKind::Empty => Ok(0),
                _ => Err(e),
            })
            .is_ok_and(|w| {
                if text.starts_with('-') {
                    -w == b
                } else {
                    w == b
                }
            }),
        Some(_) => false,
        None => text.parse::<f64>().ok() == n.as_f64(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn declared(schema: Value) -> Declarations {
        Declarations::of(Some(&schema))
    }

    #[test]
    fn declarations_follow_the_properties_chain() {
        let d = declared(json!({
            "type": "object",
            "properties": {
                "region": {"type": "string", "x-mcp-header": "Region"},
                "query": {"type": "string"},
                "target": {"type": "object", "properties": {
                    "shard": {"type": "integer", "x-mcp-header": "Shard"}
                }}
            }
        }));
        assert_eq!(d.invalid, None);
        let mut found: Vec<_> = d
            .headers
            .iter()
            .map(|h| (h.header.as_str(), h.key.as_str(), h.argument()))
            .collect();
        found.sort();
        assert_eq!(
            found,
            [
                ("Mcp-Param-Region", "mcp-param-region", "region".to_owned()),
                (
                    "Mcp-Param-Shard",
                    "mcp-param-shard",
                    "target.shard".to_owned()
                ),
            ]
        );
        assert!(d.get("mcp-param-region").is_some());
        assert!(d.get("mcp-param-query").is_none());
        assert_eq!(declared(json!({"type": "object"})), Declarations::default());
        assert_eq!(Declarations::of(None), Declarations::default());
    }

    #[test]
    fn invalid_declarations_declare_nothing_and_say_why() {
        for (schema, why) in [
            (
                json!({"type": "object", "properties": {"a": {"type": "array", "items": {"type": "string", "x-mcp-header": "A"}}}}),
                "no chain of `properties`",
            ),
            (
                json!({"anyOf": [{"properties": {"a": {"type": "string", "x-mcp-header": "A"}}}]}),
                "no chain of `properties`",
            ),
            (
                json!({"$defs": {"x": {"properties": {"a": {"type": "string", "x-mcp-header": "A"}}}}}),
                "no chain of `properties`",
            ),
            (
                json!({"type": "string", "x-mcp-header": "Root"}),
                "no chain of `properties`",
            ),
            (
                json!({"properties": {"a": {"type": "string", "x-mcp-header": "Bad Name"}}}),
                "not an HTTP token",
            ),
            (
                json!({"properties": {"a": {"type": "string", "x-mcp-header": ""}}}),
                "not an HTTP token",
            ),
            (
                json!({"properties": {"a": {"type": "string", "x-mcp-header": "A\r\nX-Evil: 1"}}}),
                "not an HTTP token",
            ),
            (
                json!({"properties": {"a": {"type": "string", "x-mcp-header": 7}}}),
                "not a string",
            ),
            (
                json!({"properties": {"a": {"type": "object", "x-mcp-header": "A"}}}),
                "type is not",
            ),
            (
                json!({"properties": {"a": {"type": ["string", "null"], "x-mcp-header": "A"}}}),
                "type is not",
            ),
            (
                json!({"properties": {"a": {"anyOf": [{"type": "integer"}], "x-mcp-header": "A"}}}),
                "type is not",
            ),
            (
                json!({"properties": {
                    "a": {"type": "string", "x-mcp-header": "Region"},
                    "b": {"type": "string", "x-mcp-header": "REGION"}
                }}),
                "repeats",
            ),
        ] {
            let d = declared(schema.clone());
            assert!(d.headers.is_empty(), "{schema}");
            let invalid = d.invalid.unwrap_or_default();
            assert!(invalid.contains(why), "{schema}: {invalid}");
        }
        // Data keywords are data: an "x-mcp-header" inside a default or an example is no
        // declaration.
        let d = declared(json!({"properties": {"a": {"type": "object",
            "default": {"x-mcp-header": "A"}, "examples": [{"x-mcp-header": "B"}]}}}));
        assert_eq!(d, Declarations::default());
    }

    #[test]
    fn values_agree_as_a_conforming_server_compares_them() {
        let yes = [
            ("eu", json!("eu")),
            ("", json!("")),
            ("true", json!(true)),
            ("false", json!(false)),
            ("42", json!(42)),
            ("42.0", json!(42)),
            ("042", json!(42)),
            ("42", json!(42.0)),
            ("-7", json!(-7)),
            ("0", json!(0)),
            ("-0", json!(0)),
            ("1.5", json!(1.5)),
            ("9007199254740992", json!(9_007_199_254_740_992_u64)),
        ];
        for (text, value) in yes {
            assert!(agrees(text, &value), "{text:?} vs {value}");
        }
        let no = [
            ("EU", json!("eu")),
            (" eu", json!("eu")),
            ("True", json!(true)),
            ("1", json!(true)),
            ("true", json!("yes")),
            ("43", json!(42)),
            ("42.5", json!(42)),
            ("4.2e1", json!(42)),
            ("0x2a", json!(42)),
            ("+42", json!(42)),
            ("42.", json!(42)),
            (".5", json!(0.5)),
            ("-42", json!(42)),
            ("", json!(0)),
            ("-", json!(0)),
            ("1.5", json!(2.5)),
            ("99999999999999999999999999999999999999999999", json!(1)),
            ("42", json!("forty-two")),
            ("{}", json!({})),
            ("[]", json!([])),
            ("null", json!(null)),
        ];
        for (text, value) in no {
            assert!(!agrees(text, &value), "{text:?} vs {value}");
        }
        assert!(mirrored(&json!("x")) && mirrored(&json!(1)) && mirrored(&json!(false)));
        assert!(!mirrored(&json!(null)) && !mirrored(&json!([])) && !mirrored(&json!({})));
    }
}
