//! `Mcp-Param-{Name}` headers (2026-07-28, SEP-2243): which arguments a tool's `inputSchema`
//! marks with `x-mcp-header` for clients to mirror into headers, and whether a header says what
//! its argument says.
//!
//! Intermediaries may route on these headers without reading the body, so a header that
//! disagrees with the body is a second reading of one request. The rules follow the reference
//! Python SDK (`mcp.shared.inbound`) so that the gateway and a conforming server agree on what
//! matches: only properties reached through a chain of `properties` keys count, null counts as
//! absent, values travel as themselves or as `=?base64?...?=`, a header must be the text a
//! client renders from its argument, and whole numbers of an `integer` property compare by
//! value.

use std::borrow::Cow;

use serde_json::{Number, Value};

/// The header prefix, lower-cased as `http` stores header names.
pub const PREFIX: &str = "mcp-param-";

/// One declared header.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Declared {
    /// `Mcp-Param-<token>`, with the token as the schema spells it (for messages).
    pub header: String,
    /// The same, lower-cased (for lookups).
    pub key: String,
    /// The argument it mirrors: the `properties` keys from the schema root down to it.
    pub path: Vec<String>,
    /// Declared `"type": "integer"`: whole numbers then compare by value (`42` and `42.0`).
    pub integer: bool,
}

impl Declared {
    /// The argument's path as people write it: `region`, `target.region`.
    pub fn argument(&self) -> String {
        self.path.join(".")
    }
}

/// What a tool's `inputSchema` declares. Kept in the pin file for pinned definitions.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Declarations {
    #[serde(default)]
    pub headers: Vec<Declared>,
    /// Why the declarations are invalid; the tool then declares none. Conforming clients drop
    /// such a tool, and conforming servers check no header for it.
    #[serde(default)]
    pub invalid: Option<String>,
    /// The defaults its properties give arguments an agent may omit, by JSON pointer into the
    /// arguments (found through chains of `properties`, local `$ref`s and `allOf`): what the
    /// server uses in their place.
    #[serde(default)]
    pub defaults: Vec<(String, Value)>,
    /// Whether the schema held more defaults than were looked for (too many nodes or
    /// defaults): `defaults` may then lack what the server uses.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub defaults_cut: bool,
}

/// Most defaults kept per tool: a schema is no place for thousands, and each costs a copy.
const MAX_DEFAULTS: usize = 256;

/// How deep into nested properties defaults are looked for, and how many `$ref`s or `allOf`
/// members are followed in a row without a property between (schemas may refer in a cycle).
const MAX_DEPTH: usize = 16;
const MAX_HOPS: usize = 8;
/// Most schema nodes visited per tool.
const MAX_VISITS: usize = 10_000;

/// The `default` of every property reached from the schema root through `properties`, and
/// through what applies to the same value whatever it is: a local `$ref` (Pydantic puts nested
/// models under `$defs`) and `allOf`. A property's own default wins over one it refers to.
/// Defaults under `anyOf` and `oneOf` are kept too, each of them: which alternative the server
/// takes for an omitted argument is its own choice, so a deny rule must hold if any would
/// match. (A property with a default of its own, or found through `$ref` or `allOf`, keeps
/// that one alone.)
fn defaults(root: Option<&Value>) -> (Vec<(String, Value)>, bool) {
    let mut out: Vec<(String, Value)> = Vec::new();
    // Pointers whose default came from the property itself, or what applies to it whatever
    // its value: alternatives add none beside it.
    let mut settled: Vec<String> = Vec::new();
    // (pointer, its depth, references followed since the last property, under an alternative
    // (`anyOf`, `oneOf`), node)
    let mut stack: Vec<(String, usize, usize, bool, &Value)> = root
        .map(|r| (String::new(), 0, 0, false, r))
        .into_iter()
        .collect();
    let mut visits = 0;
    while let Some((pointer, depth, hops, alternative, node)) = stack.pop() {
        visits += 1;
        if visits > MAX_VISITS {
            return (out, true);
        }
        let Value::Object(schema) = node else {
            continue;
        };
        if !pointer.is_empty()
            && let Some(default) = schema.get("default")
            && !settled.contains(&pointer)
            && !out.iter().any(|(p, v)| *p == pointer && v == default)
        {
            if out.len() == MAX_DEFAULTS {
                return (out, true);
            }
            if !alternative {
                out.retain(|(p, _)| *p != pointer);
                settled.push(pointer.clone());
            }
            out.push((pointer.clone(), default.clone()));
        }
        if hops < MAX_HOPS {
            let referred = schema
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix('#'))
                .and_then(|r| root?.pointer(r));
            let members = |key| match schema.get(key) {
                Some(Value::Array(members)) => &members[..],
                _ => &[],
            };
            // Pushed first, so popped last: what holds whatever the value settles first.
            for either in members("anyOf").iter().chain(members("oneOf")).rev() {
                stack.push((pointer.clone(), depth, hops + 1, true, either));
            }
            for same in referred.into_iter().chain(members("allOf")).rev() {
                stack.push((pointer.clone(), depth, hops + 1, alternative, same));
            }
        }
        if depth < MAX_DEPTH
            && let Some(Value::Object(properties)) = schema.get("properties")
        {
            for (name, sub) in properties {
                let token = name.replace('~', "~0").replace('/', "~1");
                // A property of one alternative has its default only where that applies.
                stack.push((format!("{pointer}/{token}"), depth + 1, 0, alternative, sub));
            }
        }
    }
    (out, false)
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

/// The property types a declaration may sit on. Not `number`: a float's text differs between
/// languages, so the specification leaves it out (and the Python SDK drops such tools).
const TYPES: [&str; 3] = ["string", "integer", "boolean"];

impl Declarations {
    /// The declarations in `input_schema` (none when it is absent or not an object).
    pub fn of(input_schema: Option<&Value>) -> Self {
        let (defaults, defaults_cut) = defaults(input_schema);
        match scan(input_schema) {
            Ok(headers) => Self {
                headers,
                invalid: None,
                defaults,
                defaults_cut,
            },
            Err(why) => Self {
                headers: Vec::new(),
                invalid: Some(why),
                defaults,
                defaults_cut,
            },
        }
    }

    /// The defaults, when all of them are known (else a deny condition on an omitted argument
    /// holds, as when the schema is not known at all).
    pub fn known_defaults(&self) -> Option<&[(String, Value)]> {
        (!self.defaults_cut).then_some(&self.defaults[..])
    }

    /// The default the schema gives the argument at `pointer`.
    pub fn default_at(&self, pointer: &str) -> Option<&Value> {
        self.defaults
            .iter()
            .find_map(|(p, v)| (p == pointer).then_some(v))
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
            let integer = match schema.get("type") {
                Some(Value::String(t)) if TYPES.contains(&t.as_str()) => t == "integer",
                _ => {
                    return Err(format!(
                        "property {argument:?}: x-mcp-header on a property whose type is not string, integer or boolean"
                    ));
                }
            };
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
                integer,
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

/// Whether the (decoded) header text says what the argument `value` is: the text a client
/// renders from it (Python's `str`: `true` / `false`, integers in decimal, floats in their
/// shortest repr, `1e+16` and `0.0001` alike), or, for a whole number of a property declared
/// `integer`, its plain digits too (`42` for `42.0`, as JavaScript renders it). That is a
/// subset of what the reference server accepts (it also takes `042` and `42.000`), so every
/// header the gateway lets through is read alike by the server and by a router comparing text.
pub fn agrees(text: &str, value: &Value, declared: &Declared) -> bool {
    match value {
        Value::String(s) => s == text,
        Value::Bool(b) => text == if *b { "true" } else { "false" },
        Value::Number(n) => {
            render_number(n) == text
                || (declared.integer && whole_number(n).is_some_and(|digits| digits == text))
        }
        _ => false,
    }
}

/// A whole number in plain decimal digits (`-7`, `0`, `100000000000000000000`).
fn whole_number(n: &Number) -> Option<String> {
    if let Some(i) = n.as_i64() {
        return Some(i.to_string());
    }
    if let Some(u) = n.as_u64() {
        return Some(u.to_string());
    }
    let f = n.as_f64()?;
    // `{:.0}` prints a whole double's exact value, as Python's int(f) does; -0.0 is 0.
    (f.is_finite() && f.fract() == 0.0).then(|| format!("{:.0}", if f == 0.0 { 0.0 } else { f }))
}

/// A JSON number as a Python client renders it into a header (`str` of what `json.loads`
/// makes of it): integers in decimal, floats in their shortest round-trip digits, in fixed
/// notation when the decimal point falls from 4 places left of the digits to 16 right of them,
/// else as `1.5e+16` / `1e-05`.
fn render_number(n: &Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    if let Some(u) = n.as_u64() {
        return u.to_string();
    }
    let Some(f) = n.as_f64() else {
        return String::new();
    };
    let sign = if f.is_sign_negative() { "-" } else { "" };
    if f == 0.0 {
        return format!("{sign}0.0");
    }
    // serde_json prints the shortest round-trip digits and, as Python's repr does, breaks a
    // tie between two of them to the even one (Rust's `{:e}` rounds it up).
    let text = serde_json::to_string(&f.abs()).unwrap_or_default();
    let (mantissa, exponent) = text.split_once(['e', 'E']).unwrap_or((&text, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all = format!("{int}{frac}");
    let significant = all.trim_start_matches('0');
    // Where the decimal point falls, counted in digits from the first significant one.
    let point = int.len() as i32 + exponent - (all.len() - significant.len()) as i32;
    let digits = significant.trim_end_matches('0');
    if digits.is_empty() {
        return format!("{sign}0.0");
    }
    if !(-3..=16).contains(&point) {
        let (first, rest) = digits.split_at(1);
        let rest = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp = point - 1;
        let exp_sign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{rest}e{exp_sign}{:02}", exp.unsigned_abs());
    }
    let len = digits.len() as i32;
    if point <= 0 {
        format!(
            "{sign}0.{}{digits}",
            "0".repeat(point.unsigned_abs() as usize)
        )
    } else if point < len {
        let (int, frac) = digits.split_at(point as usize);
        format!("{sign}{int}.{frac}")
    } else {
        format!("{sign}{digits}{}.0", "0".repeat((point - len) as usize))
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
    fn defaults_are_found_through_the_properties_chain() {
        let d = declared(json!({
            "type": "object",
            "properties": {
                "database": {"type": "string", "default": "prod"},
                "options": {"type": "object", "properties": {
                    "dry/run": {"type": "boolean", "default": false},
                }},
                "mode": {"anyOf": [{"type": "string", "default": "fast"}]},
            },
            "default": {"database": "x"},
        }));
        assert_eq!(d.default_at("/database"), Some(&json!("prod")));
        assert_eq!(d.default_at("/options/dry~1run"), Some(&json!(false)));
        // Through alternatives too, every one of them (which applies is the server's choice);
        // not through other keywords, nor the root's own.
        assert_eq!(d.default_at("/mode"), Some(&json!("fast")));
        assert_eq!(d.default_at(""), None);
        assert_eq!(d.defaults.len(), 3);
        let d = declared(json!({"type": "object", "properties": {
            "mode": {"anyOf": [{"default": "fast"}, {"default": "slow"}, {"default": "fast"}]},
            "own": {"default": "a", "oneOf": [{"default": "b"}], "allOf": [{"default": "c"}]},
            "opts": {"oneOf": [
                {"properties": {"db": {"default": "prod"}}},
                {"properties": {"db": {"default": "dev"}}},
            ]},
        }}));
        let all = |at: &str| {
            let mut v: Vec<&Value> = d
                .defaults
                .iter()
                .filter(|(p, _)| p == at)
                .map(|(_, v)| v)
                .collect();
            v.sort_by_key(|v| v.to_string());
            v
        };
        assert_eq!(all("/mode"), [&json!("fast"), &json!("slow")]);
        assert_eq!(all("/own"), [&json!("a")]);
        assert_eq!(all("/opts/db"), [&json!("dev"), &json!("prod")]);
        assert!(d.known_defaults().is_some());
        // More than are looked for: none is taken as known (the one missed may be the one
        // that matters).
        let many: serde_json::Map<String, Value> = (0..MAX_DEFAULTS + 1)
            .map(|i| (format!("p{i}"), json!({"default": i})))
            .collect();
        let d = declared(json!({"type": "object", "properties": many}));
        assert!(d.defaults_cut && d.known_defaults().is_none());
        // Through local references and allOf, as Pydantic writes nested models; a property's
        // own default wins; a reference cycle ends.
        let d = declared(json!({
            "type": "object",
            "properties": {
                "options": {"$ref": "#/$defs/Options"},
                "legacy": {"allOf": [{"$ref": "#/$defs/Options"}], "default": {"database": "dev"}},
                "node": {"$ref": "#/$defs/Node"},
            },
            "$defs": {
                "Options": {"type": "object", "properties": {
                    "database": {"type": "string", "default": "prod"},
                }},
                "Node": {"type": "object", "properties": {
                    "next": {"$ref": "#/$defs/Node"},
                    "depth": {"type": "integer", "default": 1},
                }},
            },
        }));
        assert_eq!(d.default_at("/options/database"), Some(&json!("prod")));
        assert_eq!(d.default_at("/legacy"), Some(&json!({"database": "dev"})));
        assert_eq!(d.default_at("/legacy/database"), Some(&json!("prod")));
        assert_eq!(d.default_at("/node/depth"), Some(&json!(1)));
        assert_eq!(d.default_at("/node/next/next/depth"), Some(&json!(1)));
        assert!(d.defaults.len() < 100, "{}", d.defaults.len());
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
                json!({"properties": {"a": {"type": "number", "x-mcp-header": "A"}}}),
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
        assert!(d.headers.is_empty() && d.invalid.is_none(), "{d:?}");
    }

    #[test]
    fn values_agree_as_the_reference_server_compares_them() {
        let declared = |integer| Declared {
            header: "Mcp-Param-X".into(),
            key: "mcp-param-x".into(),
            path: vec!["x".into()],
            integer,
        };
        let (text_typed, integer_typed) = (declared(false), declared(true));
        let parse = |json: &str| serde_json::from_str::<Value>(json).unwrap();
        // (header, body JSON, agrees when declared a string, agrees when declared an integer)
        let cases = [
            ("eu", r#""eu""#, true, true),
            ("", r#""""#, true, true),
            ("EU", r#""eu""#, false, false),
            (" eu", r#""eu""#, false, false),
            ("true", "true", true, true),
            ("True", "true", false, false),
            ("1", "true", false, false),
            ("true", r#""yes""#, false, false),
            ("42", r#""42""#, true, true),
            ("42", "42", true, true),
            ("42.0", "42", false, false),
            ("042", "42", false, false),
            ("42.000", "42", false, false),
            ("42", "42.0", false, true),
            ("42.0", "42.0", true, true),
            ("4.2e1", "42", false, false),
            ("+42", "42", false, false),
            ("42.", "42", false, false),
            ("42.5", "42", false, false),
            ("43", "42", false, false),
            ("-42", "42", false, false),
            ("-7", "-7", true, true),
            ("-0", "0", false, false),
            ("0", "-0.0", false, true),
            ("-0.0", "-0.0", true, true),
            ("1.5", "1.5", true, true),
            ("1.50", "1.5", false, false),
            ("01.5", "1.5", false, false),
            ("0.1", "0.1", true, true),
            ("0.1000000000000000001", "0.1", false, false),
            ("100.0", "1e2", true, true),
            ("100", "1e2", false, true),
            ("0.0001", "1e-4", true, true),
            ("1e-05", "1e-5", true, true),
            ("1e+16", "1e16", true, true),
            ("1.5e+16", "1.5e16", true, true),
            ("1000000000000000.0", "1e15", true, true),
            ("10000000000000000", "1e16", false, true),
            ("100000000000000000000", "1e20", false, true),
            ("99999999999999999999", "1e20", false, false),
            ("9007199254740992", "9007199254740992", true, true),
            // The double is ...532.125: a tie between two shortest spellings, which Python's
            // repr breaks to the even digit.
            ("85365454745532.12", "85365454745532.12", true, true),
            ("85365454745532.13", "85365454745532.12", false, false),
            (
                "-1.9577373031172786e-264",
                "-1.9577373031172786e-264",
                true,
                true,
            ),
            ("", "0", false, false),
            ("-", "0", false, false),
            ("{}", "{}", false, false),
            ("[]", "[]", false, false),
            ("null", "null", false, false),
        ];
        for (text, body, as_text, as_integer) in cases {
            let value = parse(body);
            assert_eq!(
                agrees(text, &value, &text_typed),
                as_text,
                "{text:?} vs {body} (string)"
            );
            assert_eq!(
                agrees(text, &value, &integer_typed),
                as_integer,
                "{text:?} vs {body} (integer)"
            );
        }
        assert!(mirrored(&json!("x")) && mirrored(&json!(1)) && mirrored(&json!(false)));
        assert!(!mirrored(&json!(null)) && !mirrored(&json!([])) && !mirrored(&json!({})));
    }
}
