//! Parameter conditions: one argument, addressed by JSON pointer, tested by one matcher.
//!
//! Every matcher fails closed: a missing argument, a value of the wrong type, a relative path,
//! an unparsable URL or SQL all make the condition false (an allow rule then does not apply).
//! Only `present = false` is satisfied by absence.
//!
//! A deny rule's condition is tested leniently ([`check_value_lax`]): servers coerce what agents
//! send (the Python SDK reads `"true"` as true, `"5"` as 5, and JSON text in a string as the
//! list or object it spells), so a deny rule holds when the value as sent or any such reading
//! of it matches, and finds its argument under a key in any letter case (`PATH` for `/path`), as
//! Go and .NET servers bind keys to fields. Allow rules see only the value as sent.

use serde_json::Value;

use crate::config::policy::{Matcher, ParamSpec};

/// Tests one condition against the arguments; the error says why it does not hold.
pub fn check(spec: &ParamSpec, arguments: Option<&Value>) -> Result<(), String> {
    check_value(spec, arguments.and_then(|a| a.pointer(&spec.pointer)))
}

/// Tests one condition against the value its pointer found (`None`: nothing there).
pub fn check_value(spec: &ParamSpec, value: Option<&Value>) -> Result<(), String> {
    let at = if spec.pointer.is_empty() {
        "the arguments"
    } else {
        spec.pointer.as_str()
    };
    let Some(value) = value else {
        return match spec.matcher {
            Matcher::Present(false) => Ok(()),
            _ => Err(format!("argument {at} is missing")),
        };
    };
    let string = || {
        value
            .as_str()
            .ok_or_else(|| format!("argument {at} is not a string"))
    };
    if !matches!(spec.matcher, Matcher::Present(_)) && inexact_int(value) {
        return Err(format!(
            "argument {at} holds an integer beyond ±2^53, which servers read differently (JavaScript rounds it): send it as a string"
        ));
    }
    match &spec.matcher {
        Matcher::Present(true) => Ok(()),
        Matcher::Present(false) => Err(format!("argument {at} must be absent")),
        Matcher::Eq(want) if json_eq(value, want) => Ok(()),
        Matcher::Eq(want) => Err(format!("argument {at} must equal {want}")),
        Matcher::OneOf(set) if set.iter().any(|w| json_eq(value, w)) => Ok(()),
        Matcher::OneOf(_) => Err(format!("argument {at} is not one of the allowed values")),
        Matcher::Glob(patterns) => {
            let s = string()?;
            if patterns.iter().any(|p| p.matches(s)) {
                Ok(())
            } else {
                Err(format!(
                    "argument {at} matches none of the allowed patterns"
                ))
            }
        }
        Matcher::Regex(re) => {
            if re.is_match(string()?) {
                Ok(())
            } else {
                Err(format!("argument {at} does not match /{}/", re.as_str()))
            }
        }
        Matcher::Range { min, max } => {
            let n = value
                .as_f64()
                .ok_or_else(|| format!("argument {at} is not a number"))?;
            if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
                Err(format!(
                    "argument {at} = {n} is out of range {}..={}",
                    fmt_bound(*min),
                    fmt_bound(*max)
                ))
            } else {
                Ok(())
            }
        }
        Matcher::Length { min, max } => {
            let len = match value {
                Value::String(s) => s.chars().count() as u64,
                Value::Array(a) => a.len() as u64,
                _ => return Err(format!("argument {at} has no length")),
            };
            if min.is_some_and(|m| len < m) || max.is_some_and(|m| len > m) {
                Err(format!(
                    "argument {at} has length {len}, outside the allowed range"
                ))
            } else {
                Ok(())
            }
        }
        Matcher::PathPrefix(prefixes) => {
            let raw = string()?;
            let path = if let Some(rest) = raw.strip_prefix("file://") {
                url::Url::parse(raw)
                    .ok()
                    .filter(|u| {
                        u.host_str()
                            .is_none_or(|h| h.is_empty() || h == "localhost")
                    })
                    .and_then(|u| u.to_file_path().ok())
                    .and_then(|p| p.to_str().map(str::to_owned))
                    .ok_or_else(|| format!("argument {at} is not a local file URL: {rest:?}"))?
            } else {
                raw.to_owned()
            };
            let norm = normalise_path(&path)
                .ok_or_else(|| format!("argument {at} is not an absolute path"))?;
            if prefixes.iter().any(|p| under(&norm, p)) {
                Ok(())
            } else {
                Err(format!(
                    "argument {at} ({norm}) is outside the allowed directories"
                ))
            }
        }
        Matcher::UrlHosts(hosts) => {
            let text = string()?;
            // WHATWG parsers (the url crate, Node) drop tabs and newlines; others keep them.
            if text.chars().any(char::is_control) {
                return Err(format!(
                    "argument {at}: a URL with a control character is read differently by different servers"
                ));
            }
            let url =
                url::Url::parse(text).map_err(|e| format!("argument {at} is not a URL: {e}"))?;
            // WHATWG ends the host at a backslash, Python's urllib and aiohttp read it after
            // the last `@` before a `/`: `http://ok.example\@evil/` names two hosts.
            if authority_host(text) != lax_host(&url) {
                return Err(format!(
                    "argument {at}: servers read different hosts in this URL (a backslash or `@` before its path)"
                ));
            }
            if !matches!(url.scheme(), "http" | "https" | "ws" | "wss") {
                return Err(format!(
                    "argument {at}: scheme {:?} is not allowed",
                    url.scheme()
                ));
            }
            let host = url.host_str().unwrap_or("");
            if host_listed(hosts, host) {
                Ok(())
            } else {
                Err(format!("argument {at}: host {host:?} is not allowed"))
            }
        }
        Matcher::Sql(sql) => {
            super::sql::check(sql, string()?).map_err(|e| format!("argument {at}: {e}"))
        }
    }
}

/// Whether `v` holds an integer beyond ±2^53 anywhere: JavaScript reads 9007199254740993 as
/// ...992 while this module compares it exactly, so no condition on it can be judged alike for
/// every server (I-JSON, RFC 7493). Allow conditions fail on it, deny conditions hold.
fn inexact_int(v: &Value) -> bool {
    const MAX: u64 = crate::mcp::json::MAX_EXACT_INT;
    match v {
        Value::Number(n) => {
            n.as_u64().is_some_and(|u| u > MAX)
                || n.as_i64().is_some_and(|i| i.unsigned_abs() > MAX)
        }
        Value::Array(items) => items.iter().any(inexact_int),
        Value::Object(map) => map.values().any(inexact_int),
        _ => false,
    }
}

/// A deny rule's condition: holds when the value as sent, or a value a server's lax validation
/// may read from it ([`readings`]; inside lists and objects, member by member, for `eq` and
/// `one_of`: `shaped`), satisfies the matcher. Where what the server reads cannot
/// be known here, the condition holds too: a number that is infinite or NaN in a range test,
/// and JSON text the server would parse and this parser cannot (`unreadable_container`), when
/// the matcher tests parsed values (a range; `eq` and `one_of` with a value that is no string;
/// to a regex, text starting with "[" is text). The error is the one for the value as sent.
pub fn check_value_lax(spec: &ParamSpec, value: Option<&Value>) -> Result<(), String> {
    lax_within(spec, value, 0)
}

/// Lists, and JSON text inside strings, followed this deep while reading an argument as a lax
/// server may: nested further, the value is not read and the deny holds (each level reads
/// the text below it again, and recursion must stay bounded on a worker's stack).
const MAX_LAX_DEPTH: usize = 16;

fn lax_within(spec: &ParamSpec, value: Option<&Value>, depth: usize) -> Result<(), String> {
    if depth > MAX_LAX_DEPTH {
        return Ok(());
    }
    // What a JavaScript server reads for an integer beyond 2^53 is another number than the one
    // tested here: the deny holds.
    if let Some(v) = value
        && !matches!(spec.matcher, Matcher::Present(_))
        && inexact_int(v)
    {
        return Ok(());
    }
    let strict = check_value(spec, value);
    let (Some(value), true) = (value, strict.is_err()) else {
        return strict;
    };
    // A list where the matcher tests one value (a tool taking `paths: [...]`, or JSON text
    // spelling one): the server acts on every item, so the deny holds when any item does.
    if tests_items(&spec.matcher) {
        let read = readings(value);
        let mut lists = std::iter::once(value)
            .chain(&read)
            .filter_map(Value::as_array);
        if lists.any(|items| {
            items
                .iter()
                .any(|item| lax_within(spec, Some(item), depth + 1).is_ok())
        }) {
            return Ok(());
        }
    }
    let read_as = || {
        readings(value)
            .iter()
            .any(|r| check_value(spec, Some(r)).is_ok())
    };
    let holds = match &spec.matcher {
        Matcher::Eq(want) => lax_hits(value, &[want]) == [true],
        Matcher::OneOf(set) => lax_hits(value, &set.iter().collect::<Vec<_>>()).contains(&true),
        Matcher::Range { min, max } => {
            read_as()
                || value.as_str().is_some_and(|text| {
                    unreadable_container(text)
                        || lax_number(text).is_some_and(|n| {
                            !n.is_finite()
                                && (n.is_nan()
                                    || (min.is_none_or(|m| n >= m) && max.is_none_or(|m| n <= m)))
                        })
                })
        }
        // A path whose target cannot be known here (relative: the server's working directory
        // decides; a file URL this reader cannot turn into a path) may be under a denied
        // prefix. `FILE:///etc` is a file URL too.
        Matcher::PathPrefix(prefixes) => {
            read_as()
                || value.as_str().is_some_and(|text| {
                    lax_path(text).is_none_or(|path| prefixes.iter().any(|p| under(&path, p)))
                })
        }
        // Whatever the scheme (gopher:// reaches a host as well), with the spellings that
        // name the same host (`internal.example.`, `[::ffff:169.254.169.254]`); text that
        // does not parse as a URL may still be one to the server.
        Matcher::UrlHosts(hosts) => {
            read_as()
                || value.as_str().is_some_and(|text| {
                    let other = authority_host(text).is_some_and(|host| host_listed(hosts, &host));
                    other
                        || match url::Url::parse(text) {
                            Err(_) => true,
                            Ok(url) => lax_host(&url).is_some_and(|host| host_listed(hosts, &host)),
                        }
                })
        }
        _ => read_as(),
    };
    if holds { Ok(()) } else { strict }
}

/// Whether a matcher tests one value rather than a list as a whole (a list wanted by `eq`, a
/// length): a deny rule's then tests a list item by item.
fn tests_items(m: &Matcher) -> bool {
    match m {
        Matcher::Glob(_)
        | Matcher::Regex(_)
        | Matcher::PathPrefix(_)
        | Matcher::UrlHosts(_)
        | Matcher::Range { .. } => true,
        Matcher::Eq(want) => !want.is_array(),
        Matcher::OneOf(set) => !set.iter().any(Value::is_array),
        Matcher::Length { .. } | Matcher::Present(_) | Matcher::Sql(_) => false,
    }
}

/// Whether `host` is one of `hosts` (`*.domain` covers the domain's subdomains).
fn host_listed(hosts: &[String], host: &str) -> bool {
    hosts.iter().any(|h| match h.strip_prefix("*.") {
        Some(domain) => {
            host.len() > domain.len() + 1
                && host.ends_with(domain)
                && host[..host.len() - domain.len()].ends_with('.')
        }
        None => h == host,
    })
}

/// The host a URL reaches, in the one spelling of [`host_listed`]: lower case, without the
/// root's trailing dot, an IPv4-mapped IPv6 address as the IPv4 address.
fn lax_host(url: &url::Url) -> Option<String> {
    match url.host()? {
        url::Host::Ipv6(a) => Some(match a.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => format!("[{a}]"),
        }),
        url::Host::Ipv4(a) => Some(a.to_string()),
        // A non-special scheme (gopher://, dict://) keeps its host as text, where a resolver
        // reads "2852039166" or "0xa9.0xfe.0xa9.0xfe" as an IPv4 address: read it as http://
        // would.
        url::Host::Domain(d) => {
            let special = url::Url::parse(&format!("http://{d}/")).ok();
            Some(match special.as_ref().and_then(url::Url::host) {
                Some(url::Host::Ipv4(a)) => a.to_string(),
                _ => d.trim_end_matches('.').to_ascii_lowercase(),
            })
        }
    }
}

/// The host of `text` as parsers outside WHATWG read it (Python's urllib, aiohttp's yarl): the
/// authority runs from `//` to the first `/`, `?` or `#` (a backslash is no end) and the host
/// follows its last `@`. `http://ok.example\@169.254.169.254/` reaches 169.254.169.254 there,
/// where the url crate sees ok.example. In [`lax_host`]'s spelling.
fn authority_host(text: &str) -> Option<String> {
    let (_, rest) = text.split_once("//")?;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host = authority.rsplit('@').next()?;
    lax_host(&url::Url::parse(&format!("http://{host}/")).ok()?)
}

/// The absolute, normalised path `text` names (a path, or a local `file:` URL in any case), or
/// `None` when that cannot be known.
fn lax_path(text: &str) -> Option<String> {
    let is_file_url = text
        .get(..5)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("file:"));
    if !is_file_url {
        return normalise_path(text);
    }
    let url = url::Url::parse(text).ok()?;
    if url
        .host_str()
        .is_some_and(|h| !h.is_empty() && h != "localhost")
    {
        return None;
    }
    normalise_path(url.to_file_path().ok()?.to_str()?)
}

/// Which of `wants` a lax server may read `value` as: as sent or as one of its [`readings`]
/// (taken once, whatever the number of wants, and never of a reading, so the recursion only
/// descends into members and ends), a list or object member by member (`{"force": "yes"}` as
/// `{"force": true}`, see [`shaped`]), and JSON text it cannot read here as any list or object.
fn lax_hits(value: &Value, wants: &[&Value]) -> Vec<bool> {
    let read = readings(value);
    // Text that looks like a list or object and did not parse (readings hold what did).
    let unreadable = value.as_str().is_some_and(looks_like_container)
        && !read.iter().any(|r| r.is_array() || r.is_object());
    wants
        .iter()
        .map(|want| {
            let is = |v: &Value| json_eq(v, want) || shaped(v, want);
            is(value) || (unreadable && !want.is_string()) || read.iter().any(is)
        })
        .collect()
}

/// Whether a list or object may be read as the wanted one member by member. Deny conditions may
/// match more than the server's type would, never less: a list matches when every item may be
/// read as some wanted item and every wanted item is met (a set ignores order and repeats), an
/// object when every wanted member is there and may be read so (a model drops keys it does not
/// know).
fn shaped(value: &Value, want: &Value) -> bool {
    match (value, want) {
        (Value::Array(items), Value::Array(wanted)) => {
            let wanted: Vec<&Value> = wanted.iter().collect();
            let mut met = vec![false; wanted.len()];
            for item in items {
                let hits = lax_hits(item, &wanted);
                if !hits.contains(&true) {
                    return false;
                }
                met.iter_mut().zip(hits).for_each(|(m, h)| *m |= h);
            }
            met.into_iter().all(|m| m)
        }
        (Value::Object(map), Value::Object(wanted)) => wanted
            .iter()
            .all(|(k, w)| member_in_any_case(map, k).is_some_and(|v| lax_hits(v, &[w]) == [true])),
        _ => false,
    }
}

/// The member `key` of an object, or the one that differs from it only in letter case: Go and
/// .NET servers bind `PATH` to a `path` field. (The parser refused objects where both stand.)
pub(crate) fn member_in_any_case<'v>(
    map: &'v serde_json::Map<String, Value>,
    key: &str,
) -> Option<&'v Value> {
    map.get(key).or_else(|| {
        map.iter()
            .find_map(|(k, v)| crate::mcp::json::same_folded(k, key).then_some(v))
    })
}

/// Whether a string looks like a JSON list or object (which FastMCP parses for a parameter that
/// is not a string) but serde_json cannot read it, where Python reads NaN, Infinity and lone
/// surrogates: what the server will see is unknown.
fn unreadable_container(text: &str) -> bool {
    looks_like_container(text) && serde_json::from_str::<Value>(text).is_err()
}

/// Whether a string starts like a JSON list or object (after whitespace).
fn looks_like_container(text: &str) -> bool {
    matches!(text.trim_start().as_bytes().first(), Some(b'[' | b'{'))
}

/// The number pydantic's lax mode reads from a string: trimmed, then as written ("inf", "nan"
/// and "1e400" included), else with its underscores dropped, unless one starts or ends it or
/// two meet (pydantic-core's rule, looser than Python's: "1_e5" is 100000).
fn lax_number(text: &str) -> Option<f64> {
    let t = text.trim();
    if let Ok(f) = t.parse::<f64>() {
        return Some(f);
    }
    if t.starts_with('_') || t.ends_with('_') || t.contains("__") {
        return None;
    }
    t.replace('_', "").parse().ok()
}

/// What servers' lax validation reads from a value besides the value itself: from a string, the
/// JSON it spells (FastMCP parses string arguments of non-string parameters), the number it
/// spells (pydantic reads " 5 ", "+5" and "5.0" as 5) and the boolean word it is (pydantic's
/// "yes", "on", "t", "1", ...); from a boolean, 0 or 1; from 0 or 1, a boolean.
pub fn readings(value: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    match value {
        Value::String(s) => {
            if let Ok(v) = serde_json::from_str::<Value>(s)
                && !v.is_string()
            {
                out.push(v);
            }
            let word = s.trim();
            let mut add = |v: Value| {
                if !out.contains(&v) {
                    out.push(v);
                }
            };
            let unscored = word.replace('_', "");
            if let Some(n) = lax_number(word).and_then(|f| {
                unscored
                    .parse::<i64>()
                    .ok()
                    .map(Value::from)
                    .or_else(|| serde_json::Number::from_f64(f).map(Value::Number))
            }) {
                add(n);
            }
            let truth = match word.to_ascii_lowercase().as_str() {
                "true" | "t" | "yes" | "y" | "on" | "1" => Some(true),
                "false" | "f" | "no" | "n" | "off" | "0" => Some(false),
                _ => None,
            };
            if let Some(t) = truth {
                add(Value::Bool(t));
            }
        }
        Value::Bool(b) => out.push(Value::from(u8::from(*b))),
        Value::Number(n) if n.as_f64() == Some(0.0) => out.push(Value::Bool(false)),
        Value::Number(n) if n.as_f64() == Some(1.0) => out.push(Value::Bool(true)),
        _ => {}
    }
    out
}

/// What a pointer finds when it reads on through JSON text in strings.
#[derive(Debug, PartialEq)]
pub enum Through {
    Found(Value),
    Missing,
    /// The path runs into JSON text a server would parse and serde_json cannot.
    Unreadable,
}

/// The value at `pointer` in `root`, reading the JSON text of string values met on the way as a
/// server that parses string arguments would: `/tables/0` of `{"tables": "[\"x\"]"}` is "x".
pub fn pointer_through_strings(root: &Value, pointer: &str) -> Through {
    let tokens: Vec<String> = match pointer.strip_prefix('/') {
        None if pointer.is_empty() => Vec::new(),
        None => return Through::Missing,
        Some(rest) => rest
            .split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect(),
    };
    walk_through_strings(root, &tokens)
}

fn walk_through_strings(here: &Value, tokens: &[String]) -> Through {
    let Some((key, rest)) = tokens.split_first() else {
        return Through::Found(here.clone());
    };
    let next = match here {
        Value::Object(map) => member_in_any_case(map, key),
        Value::Array(items) => {
            let canonical =
                key.bytes().all(|b| b.is_ascii_digit()) && (key == "0" || !key.starts_with('0'));
            canonical
                .then(|| key.parse::<usize>().ok())
                .flatten()
                .and_then(|i| items.get(i))
        }
        Value::String(text) if unreadable_container(text) => return Through::Unreadable,
        Value::String(text) => {
            // Only a container is read on: a string that spells a string is not followed again.
            return match serde_json::from_str::<Value>(text) {
                Ok(inner) if inner.is_object() || inner.is_array() => {
                    walk_through_strings(&inner, tokens)
                }
                _ => Through::Missing,
            };
        }
        _ => None,
    };
    match next {
        Some(next) => walk_through_strings(next, rest),
        None => Through::Missing,
    }
}

fn fmt_bound(b: Option<f64>) -> String {
    b.map_or(String::new(), |b| b.to_string())
}

/// JSON equality with numbers compared by value (1 == 1.0).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
                (Some(x), Some(y), _, _) => x == y,
                (_, _, Some(x), Some(y)) => x == y,
                _ => x.as_f64() == y.as_f64(),
            }
        }
        _ => a == b,
    }
}

/// `/a/./b//c/../d` -> `/a/b/d`; `..` above the root stays at the root, as the kernel does.
/// `None` for relative paths and paths with NUL.
pub fn normalise_path(p: &str) -> Option<String> {
    if !p.starts_with('/') || p.contains('\0') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

/// Whether normalised `path` is `prefix` or below it (by whole components).
fn under(path: &str, prefix: &str) -> bool {
    prefix == "/"
        || path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::policy::Pattern;

    fn spec(pointer: &str, matcher: Matcher) -> ParamSpec {
        ParamSpec {
            pointer: pointer.into(),
            matcher,
        }
    }

    /// 9007199254740993 is ...992 to JavaScript: a deny on ...992 must hold for it, and no allow
    /// may pass it (nor anything holding it), while values within 2^53 are judged as before.
    #[test]
    fn integers_beyond_2_53_cannot_be_judged_alike() {
        let deny = spec("/account", Matcher::Eq(json!(9007199254740992u64)));
        let big = json!(9007199254740993u64);
        assert!(check_value_lax(&deny, Some(&big)).is_ok(), "deny holds");
        assert!(check_value_lax(&deny, Some(&json!([1, -9007199254740993i64]))).is_ok());
        assert!(check_value_lax(&deny, Some(&json!(12))).is_err());
        let allow = spec(
            "/account",
            Matcher::Range {
                min: None,
                max: Some(1e300),
            },
        );
        assert!(check_value(&allow, Some(&big)).is_err(), "allow fails");
        assert!(check_value(&allow, Some(&json!(9007199254740992u64))).is_ok());
        let present = spec("/account", Matcher::Present(true));
        assert!(
            check_value(&present, Some(&big)).is_ok(),
            "presence is no reading"
        );
    }

    #[test]
    fn path_prefix_normalises_traversal() {
        let m = spec("/path", Matcher::PathPrefix(vec!["/srv/data".into()]));
        let ok = |p: &str| check(&m, Some(&json!({ "path": p }))).is_ok();
        assert!(ok("/srv/data"));
        assert!(ok("/srv/data/report.csv"));
        assert!(ok("/srv/./data//x/../y"));
        assert!(ok("file:///srv/data/a%20b"));
        assert!(!ok("/srv/data/../../etc/passwd"));
        assert!(!ok("/srv/data/../secrets"));
        assert!(!ok("/srv/database"));
        assert!(!ok("/srv/dat"));
        assert!(!ok("srv/data/x"));
        assert!(!ok("../srv/data"));
        assert!(!ok("/srv/data\u{0}/../../etc"));
        assert!(!ok("file:///srv/data/%2e%2e/%2e%2e/etc/passwd"));
        assert!(!ok("file://evil.example/srv/data/x"));
        // Look-alikes are different directories.
        assert!(!ok("/srv/dаta/x")); // Cyrillic a
        assert!(!ok("/srv/data\u{2215}..\u{2215}etc")); // division slash is not a separator
        assert!(check(&m, Some(&json!({ "path": 5 }))).is_err());
        assert!(check(&m, Some(&json!({}))).is_err());
        assert!(check(&m, None).is_err());
        let root = spec("/path", Matcher::PathPrefix(vec!["/".into()]));
        assert!(check(&root, Some(&json!({ "path": "/../../x" }))).is_ok());
        assert_eq!(normalise_path("/../../etc"), Some("/etc".into()));
    }

    #[test]
    fn url_hosts_use_the_parsed_host() {
        let m = spec(
            "/url",
            Matcher::UrlHosts(vec!["api.example.com".into(), "*.trusted.org".into()]),
        );
        let ok = |u: &str| check(&m, Some(&json!({ "url": u }))).is_ok();
        assert!(ok("https://api.example.com/v1"));
        // A trailing dot is another spelling of the host; fail closed rather than guess.
        assert!(!ok("https://api.example.com./v1"));
        assert!(ok("https://API.EXAMPLE.COM/v1"));
        assert!(ok("https://a.b.trusted.org/"));
        assert!(!ok("https://trusted.org/"));
        assert!(!ok("https://eviltrusted.org/"));
        assert!(!ok("https://api.example.com@evil.com/"));
        assert!(!ok("https://api.example.com.evil.com/"));
        assert!(!ok("https://evil.com/?u=https://api.example.com"));
        assert!(!ok("https://evil.com\\@api.example.com/"));
        // Python's urllib and aiohttp reach evil.com here, where WHATWG sees api.example.com.
        assert!(!ok("https://api.example.com\\@evil.com/"));
        assert!(!ok("https://api.example.com\\\\@evil.com/"));
        assert!(!ok("https://api.example.com\t/"));
        assert!(!ok("https://api.exa\nmple.com/"));
        // Both readings agree on these.
        assert!(ok("https://user:pw@api.example.com/v1"));
        assert!(ok("https://api.example.com/users/me@example.org"));
        assert!(ok("https://api.example.com:8443/?next=a@b\\c"));
        assert!(ok("https://api.example.com/search?q=new york"));
        assert!(!ok("https://api.example.com x@evil.com/"));
        assert!(!ok("file:///etc/passwd"));
        assert!(!ok("javascript:alert(1)"));
        assert!(!ok("https://аpi.example.com/")); // Cyrillic a: punycode host
        assert!(!ok("http://0x7f.1/"));
        assert!(!ok("not a url"));
    }

    #[test]
    fn scalar_matchers() {
        let eq = spec("/mode", Matcher::Eq(json!("fast")));
        assert!(check(&eq, Some(&json!({"mode": "fast"}))).is_ok());
        assert!(check(&eq, Some(&json!({"mode": "Fast"}))).is_err());
        assert!(check(&eq, Some(&json!({"mode": ["fast"]}))).is_err());
        let n = spec("/n", Matcher::Eq(json!(1)));
        assert!(check(&n, Some(&json!({"n": 1.0}))).is_ok());
        let set = spec("/c", Matcher::OneOf(vec![json!("a"), json!(2)]));
        assert!(check(&set, Some(&json!({"c": 2}))).is_ok());
        assert!(check(&set, Some(&json!({"c": "2"}))).is_err());
        let range = spec(
            "/limit",
            Matcher::Range {
                min: Some(1.0),
                max: Some(100.0),
            },
        );
        assert!(check(&range, Some(&json!({"limit": 100}))).is_ok());
        assert!(check(&range, Some(&json!({"limit": 100.5}))).is_err());
        assert!(check(&range, Some(&json!({"limit": -1}))).is_err());
        assert!(check(&range, Some(&json!({"limit": "5"}))).is_err());
        assert!(check(&range, Some(&json!({"limit": 1e300}))).is_err());
        let len = spec(
            "/q",
            Matcher::Length {
                min: None,
                max: Some(3),
            },
        );
        assert!(check(&len, Some(&json!({"q": "äöü"}))).is_ok());
        assert!(check(&len, Some(&json!({"q": "abcd"}))).is_err());
        assert!(check(&len, Some(&json!({"q": "x".repeat(1 << 20)}))).is_err());
        let absent = spec("/debug", Matcher::Present(false));
        assert!(check(&absent, Some(&json!({}))).is_ok());
        assert!(check(&absent, Some(&json!({"debug": null}))).is_err());
        let present = spec("/a~1b/0", Matcher::Present(true));
        assert!(check(&present, Some(&json!({"a/b": [1]}))).is_ok());
        let re = spec(
            "/name",
            Matcher::Regex(regex::Regex::new("^[a-z]+$").unwrap()),
        );
        assert!(check(&re, Some(&json!({"name": "abc"}))).is_ok());
        assert!(check(&re, Some(&json!({"name": "abc\n"}))).is_err());
        assert!(check(&re, Some(&json!({"name": "аbc"}))).is_err()); // Cyrillic a
        assert!(check(&re, Some(&json!({"name": "a".repeat(1 << 20)}))).is_ok());
        let glob = spec(
            "/name",
            Matcher::Glob(vec![Pattern::parse("report-*.csv").unwrap()]),
        );
        assert!(check(&glob, Some(&json!({"name": "report-2026.csv"}))).is_ok());
        assert!(check(&glob, Some(&json!({"name": "report-2026.csv.exe"}))).is_err());
    }

    /// Lists inside lists, and JSON text inside strings, are read a bounded depth: deeper, the
    /// deny holds unread (the reading recursed once per level, without bound, on the stack).
    #[test]
    fn deny_conditions_read_nested_lists_a_bounded_depth() {
        let paths = spec("/p", Matcher::PathPrefix(vec!["/etc".into()]));
        let nest = |levels: usize, inner: Value, as_text: bool| {
            (0..levels).fold(inner, |v, _| {
                if as_text {
                    json!([v.to_string()])
                } else {
                    json!([v])
                }
            })
        };
        for as_text in [false, true] {
            let shallow = nest(4, json!("/etc/passwd"), as_text);
            assert!(check_value_lax(&paths, Some(&shallow)).is_ok());
            // (As text, a list is also a relative path to this matcher: it holds anyway.)
            let clear = nest(4, json!("/srv/data.csv"), as_text);
            assert_eq!(check_value_lax(&paths, Some(&clear)).is_err(), !as_text);
            let deep = nest(MAX_LAX_DEPTH + 2, json!("/srv/data.csv"), as_text);
            assert!(
                check_value_lax(&paths, Some(&deep)).is_ok(),
                "too deep: held"
            );
        }
    }

    /// A deny condition on a list or object holds for what a lax server reads inside it.
    #[test]
    fn deny_conditions_on_paths_and_hosts_hold_where_the_target_cannot_be_told() {
        let paths = spec("/p", Matcher::PathPrefix(vec!["/etc".into()]));
        let holds = |v: &str| check_value_lax(&paths, Some(&json!(v))).is_ok();
        for held in [
            "/etc/passwd",
            "/srv/../etc/shadow",
            // Relative: the server's working directory decides where these land.
            "etc/passwd",
            "../../etc/shadow",
            "~root/.ssh/id_rsa",
            // A file URL in any case.
            "FILE:///etc/passwd",
            "File:///srv/%2e%2e/etc/passwd",
            // A file URL that names no local path.
            "file://otherhost/etc/passwd",
        ] {
            assert!(holds(held), "{held}");
        }
        for clear in ["/srv/data.csv", "file:///srv/data.csv", "FILE:///srv/x"] {
            assert!(!holds(clear), "{clear}");
        }
        let hosts = spec(
            "/u",
            Matcher::UrlHosts(vec!["169.254.169.254".into(), "internal.example".into()]),
        );
        let holds = |v: &str| check_value_lax(&hosts, Some(&json!(v))).is_ok();
        for held in [
            "http://169.254.169.254/latest/meta-data",
            "http://internal.example./admin",
            "http://INTERNAL.example/",
            "http://[::ffff:169.254.169.254]/",
            "http://[::ffff:a9fe:a9fe]/",
            "gopher://internal.example:70/_x",
            "gopher://2852039166/_x",
            "dict://0xa9.0xfe.0xa9.0xfe:11111/",
            "ftp://Internal.Example/",
            // Not a URL to this parser: a lax server may still fetch it.
            "http://internal.example:99999/",
            // Python's urllib and aiohttp read the host after the `@`, WHATWG before the `\`.
            "http://x\\@169.254.169.254/latest/meta-data",
            "http://169.254.169.254\\@example.com/",
        ] {
            assert!(holds(held), "{held}");
        }
        for clear in [
            "https://api.example.com/",
            "mailto:a@internal.example",
            "https://api.example.com/?next=http://x@internal.example",
        ] {
            assert!(!holds(clear), "{clear}");
        }
        // Allow conditions stay strict: what cannot be told fails them.
        assert!(check(&paths, Some(&json!({"p": "etc/passwd"}))).is_err());
    }

    /// A deny condition on one value holds for a list when any item meets it, as sent or
    /// spelled as JSON text, at any depth; an allow condition still fails on a list.
    #[test]
    fn deny_conditions_on_one_value_hold_for_any_item_of_a_list() {
        let paths = spec("/p", Matcher::PathPrefix(vec!["/etc".into()]));
        let holds = |v: Value| check_value_lax(&paths, Some(&v)).is_ok();
        assert!(holds(json!(["/srv/x", "/etc/shadow"])));
        assert!(holds(json!("[\"/srv/x\", \"/etc/shadow\"]")));
        assert!(holds(json!([["/srv/x"], ["/etc/passwd"]])));
        assert!(holds(json!(["/srv/x", "[\"/etc/passwd\"]"])));
        assert!(!holds(json!(["/srv/x", "/srv/y"])));
        assert!(!holds(json!([])));
        assert!(check_value(&paths, Some(&json!(["/etc/x"]))).is_err());
        let table = spec("/t", Matcher::Eq(json!("financials")));
        assert!(check_value_lax(&table, Some(&json!(["customers", "financials"]))).is_ok());
        assert!(check_value_lax(&table, Some(&json!(["customers"]))).is_err());
        let set = spec("/t", Matcher::OneOf(vec![json!("financials"), json!("hr")]));
        assert!(check_value_lax(&set, Some(&json!(["customers", "hr"]))).is_ok());
        let hosts = spec("/u", Matcher::UrlHosts(vec!["169.254.169.254".into()]));
        assert!(
            check_value_lax(
                &hosts,
                Some(&json!(["https://example.org/", "http://169.254.169.254/"]))
            )
            .is_ok()
        );
        // A list wanted as a whole is still compared as one.
        let whole = spec("/t", Matcher::Eq(json!(["a", "b"])));
        assert!(check_value_lax(&whole, Some(&json!(["a", "c"]))).is_err());
    }

    #[test]
    fn deny_conditions_read_inside_lists_and_objects() {
        let deny = spec("/o", Matcher::Eq(json!({"force": true, "n": [1, 2]})));
        for held in [
            json!({"force": true, "n": [1, 2]}),
            json!({"force": "yes", "n": [1, 2]}),
            json!({"force": 1, "n": ["1", " 2 "]}),
            json!({"force": "on", "n": "[1, 2]"}),
            json!("{\"force\": \"true\", \"n\": [\"1\", 2.0]}"),
            json!({"force": true, "n": "[1, NaN]"}),
        ] {
            assert!(check_value_lax(&deny, Some(&held)).is_ok(), "{held}");
        }
        // A model drops keys it does not know, a set ignores order and repeats: the condition
        // holds for those too.
        for held in [
            json!({"force": "yes", "n": [1, 2], "junk": 1}),
            json!({"force": "t", "n": ["2", 1, 1]}),
        ] {
            assert!(check_value_lax(&deny, Some(&held)).is_ok(), "{held}");
        }
        for missed in [
            json!({"force": false, "n": [1, 2]}),
            json!({"force": "yes", "n": [1, 2, 3]}),
            json!({"force": "yes", "n": [1]}),
            json!({"force": "yes"}),
            json!({"force": "maybe", "n": [1, 2]}),
            json!([true, [1, 2]]),
        ] {
            assert!(check_value_lax(&deny, Some(&missed)).is_err(), "{missed}");
        }
        let deny_any = spec(
            "/o",
            Matcher::OneOf(vec![json!(["rm", "-rf"]), json!(["shred"])]),
        );
        assert!(check_value_lax(&deny_any, Some(&json!("[\"shred\"]"))).is_ok());
        assert!(check_value_lax(&deny_any, Some(&json!(["rm", "-rf"]))).is_ok());
        assert!(check_value_lax(&deny_any, Some(&json!(["-rf", "rm", "rm"]))).is_ok());
        assert!(check_value_lax(&deny_any, Some(&json!(["rm", "-r"]))).is_err());
        assert!(check_value_lax(&deny_any, Some(&json!(["shred", "ls"]))).is_err());
        // Scalars: a reading is not read again (true -> 1 -> true would never end).
        let deny_word = spec("/o", Matcher::Eq(json!("x")));
        assert!(check_value_lax(&deny_word, Some(&json!(true))).is_err());
    }

    #[test]
    fn readings_are_what_lax_servers_make_of_a_value() {
        assert_eq!(readings(&json!("true")), [json!(true)]);
        assert_eq!(readings(&json!("1")), [json!(1), json!(true)]);
        assert_eq!(readings(&json!(" 2.5 ")), [json!(2.5)]);
        assert_eq!(readings(&json!("+7")), [json!(7)]);
        assert_eq!(readings(&json!("1_000")), [json!(1000)]);
        assert_eq!(readings(&json!("1__0")), Vec::<Value>::new());
        assert_eq!(readings(&json!("_10")), Vec::<Value>::new());
        assert_eq!(readings(&json!("10_")), Vec::<Value>::new());
        assert_eq!(readings(&json!("1e3")), [json!(1000.0)]);
        assert_eq!(readings(&json!("[1,\"a\"]")), [json!([1, "a"])]);
        assert_eq!(readings(&json!("\"quoted\"")), Vec::<Value>::new());
        assert_eq!(readings(&json!("NaN")), Vec::<Value>::new());
        assert_eq!(readings(&json!("plain")), Vec::<Value>::new());
        assert_eq!(readings(&json!(false)), [json!(0)]);
        assert_eq!(readings(&json!(1.0)), [json!(true)]);
        assert_eq!(readings(&json!(2)), Vec::<Value>::new());
        assert_eq!(readings(&json!(null)), Vec::<Value>::new());
        // A deny condition holds on JSON text a server would parse and serde_json cannot.
        let deny_logs = spec("/t", Matcher::Eq(json!(["logs"])));
        assert!(check_value_lax(&deny_logs, Some(&json!("[\"logs\"]"))).is_ok());
        assert!(check_value_lax(&deny_logs, Some(&json!("[\"logs\", NaN]"))).is_ok());
        assert!(check_value_lax(&deny_logs, Some(&json!("[\"other\"]"))).is_err());
        assert!(check_value_lax(&deny_logs, Some(&json!("logs"))).is_err());
        assert!(
            check(&deny_logs, Some(&json!({"t": "[\"logs\"]"}))).is_err(),
            "allow stays strict"
        );
        // Text a string parameter may well hold is not "unreadable JSON" to a string matcher.
        let deny_word = spec("/t", Matcher::Regex(regex::Regex::new("^secret$").unwrap()));
        assert!(check_value_lax(&deny_word, Some(&json!("[package]"))).is_err());
        let deny_big = spec(
            "/n",
            Matcher::Range {
                min: Some(10_000.0),
                max: None,
            },
        );
        for n in [
            "1_000_000",
            "inf",
            " Infinity ",
            "1e400",
            "nan",
            "[1, NaN]",
            "1_e5",
            "1_0000_.5",
        ] {
            assert!(check_value_lax(&deny_big, Some(&json!(n))).is_ok(), "{n}");
        }
        for n in ["-inf", "9_999", "1__0000000", "x"] {
            assert!(check_value_lax(&deny_big, Some(&json!(n))).is_err(), "{n}");
        }
    }

    #[test]
    fn pointers_read_on_through_json_text_in_strings() {
        let args = json!({
            "tables": "[\"financials\", {\"name\": \"payroll\"}]",
            "a/b": {"~": "[7]"},
            "list": [0, 1, 2],
            "s": "\"[1]\""
        });
        let at = |p: &str| pointer_through_strings(&args, p);
        let found = |v: Value| Through::Found(v);
        assert_eq!(at("/tables/0"), found(json!("financials")));
        assert_eq!(at("/tables/1/name"), found(json!("payroll")));
        assert_eq!(at("/a~1b/~0/0"), found(json!(7)));
        assert_eq!(at("/list/2"), found(json!(2)));
        assert_eq!(at("/list/02"), Through::Missing);
        assert_eq!(at("/list/+1"), Through::Missing);
        assert_eq!(at("/tables/2"), Through::Missing);
        assert_eq!(
            at("/s/0"),
            Through::Missing,
            "a string that spells a string is not read on"
        );
        assert_eq!(at("/missing"), Through::Missing);
        assert_eq!(at("no-slash"), Through::Missing);
        assert_eq!(at(""), found(args.clone()));
        // Python reads these; serde_json does not. What the server sees there is unknown.
        let odd =
            json!({"nan": "[NaN, \"financials\"]", "lone": " {\"t\": \"\\ud800\"}", "bad": "[1"});
        for p in ["/nan/1", "/lone/t", "/bad/0"] {
            assert_eq!(pointer_through_strings(&odd, p), Through::Unreadable, "{p}");
        }
    }
}
