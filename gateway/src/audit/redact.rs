//! Redaction: what is blanked out of parameters and results before a record is written, and
//! the size cap that keeps one record from swallowing the log.

use serde_json::Value;

use crate::config::audit::Redaction;

/// What replaces a redacted value.
pub const REDACTED: &str = "[redacted]";

/// Blanks, in place, every value under a key that matches and every credential-looking
/// substring, at any depth. Returns how many values were touched.
pub fn redact(rules: &Redaction, value: &mut Value) -> usize {
    redact_nested(rules, value, 0)
}

/// JSON inside a string inside JSON...: how deep strings are opened up.
const MAX_EMBEDDED: usize = 3;

/// A string that holds a JSON object or array, redacted by the same rules; `None` when it
/// does not hold one or nothing in it needed redaction.
fn embedded(rules: &Redaction, text: &str, depth: usize) -> Option<String> {
    let t = text.trim_start();
    if depth >= MAX_EMBEDDED || !(t.starts_with('{') || t.starts_with('[')) || text.len() > 1 << 20
    {
        return None;
    }
    let mut inner: Value = serde_json::from_str(text).ok()?;
    (redact_nested(rules, &mut inner, depth + 1) > 0).then(|| inner.to_string())
}

fn redact_nested(rules: &Redaction, value: &mut Value, depth: usize) -> usize {
    // An explicit stack: the depth of what arrives here is bounded by the parser, but the
    // walk should not have to rely on that.
    let mut touched = 0;
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(map) => {
                for (k, child) in map.iter_mut() {
                    if rules.keys.is_match(k) {
                        if *child != Value::Null {
                            *child = Value::String(REDACTED.to_owned());
                            touched += 1;
                        }
                    } else {
                        stack.push(child);
                    }
                }
            }
            Value::Array(items) => stack.extend(items.iter_mut()),
            Value::String(s) => {
                if let Some(clean) = embedded(rules, s, depth) {
                    *s = clean;
                    touched += 1;
                }
                if let Some(clean) = redact_text(rules, s) {
                    *s = clean;
                    touched += 1;
                }
            }
            _ => {}
        }
    }
    touched
}

/// Blanks, in place, the secrets a command line may carry: the value of an option or an
/// assignment whose name matches a redacted key (`--password=x`, `--api-key x`, `DB_PASSWORD=x`)
/// and every credential-looking substring. Returns how many arguments were touched.
pub fn redact_cmdline(rules: &Redaction, args: &mut [Value]) -> usize {
    let mut touched = 0;
    let mut value_follows = false;
    for arg in args.iter_mut() {
        let Value::String(text) = arg else {
            value_follows = false;
            continue;
        };
        if std::mem::take(&mut value_follows) && !text.starts_with('-') {
            *text = REDACTED.to_owned();
            touched += 1;
            continue;
        }
        let option = text.strip_prefix("--").or_else(|| text.strip_prefix('-'));
        match text.split_once('=') {
            Some((name, value))
                if !value.is_empty() && rules.keys.is_match(name.trim_start_matches('-')) =>
            {
                *text = format!("{name}={REDACTED}");
                touched += 1;
                continue;
            }
            None if option.is_some_and(|name| !name.is_empty() && rules.keys.is_match(name)) => {
                value_follows = true;
            }
            _ => {}
        }
        if let Some(clean) = redact_text(rules, text) {
            *text = clean;
            touched += 1;
        }
    }
    touched
}

/// The text with every credential-looking part replaced, or `None` when there was none.
pub fn redact_text(rules: &Redaction, text: &str) -> Option<String> {
    // One fast pass over the text in the common case: nothing looks like a credential.
    if !rules.value_any.is_match(text) {
        return None;
    }
    let hits = rules.value_set.matches(text);
    if !hits.matched_any() {
        return None;
    }
    let mut out = text.to_owned();
    for i in hits.iter() {
        if let Some(re) = rules.values.get(i) {
            out = re.replace_all(&out, REDACTED).into_owned();
        }
    }
    Some(out)
}

/// `value` when its JSON fits in `max` bytes; otherwise a string holding the first `max`
/// bytes of that JSON (cut at a character boundary) and `true`.
pub fn cap(value: Value, max: usize) -> (Value, bool) {
    let text = value.to_string();
    if text.len() <= max {
        return (value, false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (Value::String(text[..end].to_owned()), true)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::audit::AuditConfig;

    fn rules() -> Redaction {
        AuditConfig::default().redact
    }

    #[test]
    fn command_lines_lose_option_values_assignments_and_credential_looking_arguments() {
        let mut args = json!([
            "python",
            "agent.py",
            "--password",
            "hunter2",
            "--api-key=0123abcd",
            "-token",
            "t0ken",
            "DB_PASSWORD=s3cret",
            "--verbose",
            "--secret",
            "--model",
            "gpt",
            "--header",
            "Authorization: Bearer abcdefghijklmnop",
            "--password=",
            "--query=select 1",
            "--secret"
        ]);
        let Value::Array(list) = &mut args else {
            unreachable!()
        };
        let n = redact_cmdline(&rules(), list);
        assert_eq!(
            args,
            json!([
                "python",
                "agent.py",
                "--password",
                REDACTED,
                format!("--api-key={REDACTED}"),
                "-token",
                REDACTED,
                format!("DB_PASSWORD={REDACTED}"),
                "--verbose",
                // A flag with no value after it: the next option is kept.
                "--secret",
                "--model",
                "gpt",
                "--header",
                format!("Authorization: {REDACTED}"),
                "--password=",
                "--query=select 1",
                "--secret"
            ])
        );
        assert_eq!(n, 5);
    }

    #[test]
    fn keys_are_redacted_at_any_depth_and_case() {
        let mut v = json!({
            "query": "select 1",
            "Password": "hunter2",
            "nested": [{"conf": {"API_KEY": "abc", "user": "bob"}}, {"db_password": ["x", "y"]}],
            "client_secret": null,
        });
        let n = redact(&rules(), &mut v);
        assert_eq!(n, 3);
        assert_eq!(v["Password"], REDACTED);
        assert_eq!(v["nested"][0]["conf"]["API_KEY"], REDACTED);
        assert_eq!(v["nested"][0]["conf"]["user"], "bob");
        assert_eq!(v["nested"][1]["db_password"], REDACTED);
        assert_eq!(v["query"], "select 1");
        assert!(!v.to_string().contains("hunter2"));
    }

    #[test]
    fn credential_looking_values_are_redacted_inside_longer_text() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2lnbmF0dXJlX2hlcmU";
        let cases = [
            format!("curl -H 'Authorization: Bearer {jwt}' https://x"),
            "token ghp_abcdefghijklmnopqrstuvwxyz0123456789 end".to_owned(),
            "key=AKIAIOSFODNN7EXAMPLE;".to_owned(),
            "sk-proj-abcdefghijklmnopqrstuvwx".to_owned(),
            "xoxb-1234567890-abcdefghij".to_owned(),
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----".to_owned(),
            "Bearer abcdefgh12345678".to_owned(),
        ];
        for text in cases {
            let mut v = json!({"command": text.clone(), "list": [text.clone()]});
            redact(&rules(), &mut v);
            let out = v.to_string();
            assert!(out.contains(REDACTED), "{text} -> {out}");
            for secret in [
                jwt,
                "ghp_abc",
                "AKIAIOSFODNN7EXAMPLE",
                "sk-proj-abc",
                "xoxb-123",
                "MIIEow",
                "abcdefgh12345678",
            ] {
                assert!(!out.contains(secret), "{secret} survived in {out}");
            }
        }
        // Basic authorization, passwords in URLs, .env lines: the secret goes, prose stays.
        for (text, secret) in [
            (
                "curl -H 'Authorization: Basic dXNlcjpwYXNz' x",
                "dXNlcjpwYXNz",
            ),
            ("DATABASE=postgres://app:hunter2@db:5432/main", "hunter2"),
            ("see https://deploy:s3cr3t@git.example.com/r.git", "s3cr3t"),
            (
                "HOST=x\nDB_PASSWORD=hunter2\nexport API_KEY = abc123\n",
                "hunter2",
            ),
            ("HOST=x\nexport API_KEY = abc123\n", "abc123"),
            ("SENTRY_DSN=https://k@o1.ingest.sentry.io/1", "https://k@"),
            (
                "GET https://api.example.com/v1?user=bob&access_token=Tk9QRS1zZWNyZXQ&x=1",
                "Tk9QRS1zZWNyZXQ",
            ),
            (
                "https://bucket.s3.amazonaws.com/k?X-Amz-Signature=deadbeef0042",
                "deadbeef0042",
            ),
        ] {
            let mut v = json!({"text": text});
            redact(&rules(), &mut v);
            let out = v.to_string();
            assert!(!out.contains(secret), "{secret} survived in {out}");
        }
        for prose in [
            "a basic understanding of tokens",
            "the token = the thing you send",
            "https://example.com/a:b@c",
            "HOST=db.internal\nPORT=5432",
            "mailto:bob@example.com",
            "https://example.com/search?q=token&page=2",
        ] {
            let mut v = json!({"text": prose});
            assert_eq!(redact(&rules(), &mut v), 0, "{prose}: {v}");
        }
        for key in [
            "auth",
            "sentry_dsn",
            "DATABASE_URL",
            "databaseUrl",
            "connectionString",
        ] {
            let mut v = json!({key: "postgres://u@h/d"});
            assert_eq!(redact(&rules(), &mut v), 1, "{key}");
        }
        let mut plain = json!({"sha": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", "n": 5});
        assert_eq!(
            redact(&rules(), &mut plain),
            0,
            "a hash is not a credential"
        );
    }

    #[test]
    fn json_inside_strings_and_key_spellings_are_redacted_too() {
        let mut v = json!({
            "content": [{"type": "text", "text": "{\"user\":\"bob\",\"password\":\"hunter2\"}"}],
            "privateKey": "k1", "private-key": "k2", "sessionKey": "k3", "passphrase": "k4", "pwd": "k5",
        });
        redact(&rules(), &mut v);
        let out = v.to_string();
        for secret in ["hunter2", "k1", "k2", "k3", "k4", "k5"] {
            assert!(
                !out.contains(&format!("\"{secret}")),
                "{secret} survived: {out}"
            );
        }
        assert!(out.contains("bob"), "{out}");
    }

    #[test]
    fn caps_cut_at_character_boundaries() {
        let (v, cut) = cap(json!({"a": "é".repeat(100)}), 20);
        assert!(cut);
        let s = v.as_str().unwrap();
        assert!(s.len() <= 20 && s.starts_with("{\"a\":\""));
        let (v, cut) = cap(json!([1, 2]), 20);
        assert!(!cut);
        assert_eq!(v, json!([1, 2]));
    }

    fn rules_from(toml_text: &str) -> Redaction {
        let raw: crate::config::audit::RawAudit = toml::from_str(toml_text).unwrap();
        raw.validate(None).unwrap().redact
    }

    /// Whether the text-only test says "nothing to redact".
    fn left_alone(rules: &Redaction, raw: &str) -> bool {
        rules
            .raw_prefilter
            .as_ref()
            .is_some_and(|p| p.leaves_alone(raw))
    }

    #[test]
    fn the_text_only_test_passes_clean_parts_and_nothing_else() {
        let r = rules();
        for clean in [
            r#"{"query":"select id from accounts","limit":10,"tags":["a","b"]}"#,
            r#"{"name":"run_query","arguments":{"path":"/srv/report.csv"}}"#,
            r#"[1,2.5,true,null,{}]"#,
            "{\"a\":\t\"b\"}",
        ] {
            assert!(left_alone(&r, clean), "{clean}");
        }
        for dirty in [
            r#"{"Password":"x"}"#,
            r#"{"nested":[{"DB_PASSWORD":"x"}]}"#,
            r#"{"apiKey":"x"}"#,
            r#"{"authorization":"Basic abc"}"#,
            // Key-like words in values only cost a parse: the test may say "maybe".
            r#"{"note":"my token"}"#,
            r#"{"q":"ghp_abcdefghijklmnopqrstuvwxyz0123"}"#,
            r#"{"h":"Bearer abcdefghijklmnop"}"#,
            r#"{"k":"-----BEGIN RSA PRIVATE KEY-----MIIE"}"#,
            r#"{"k":"AKIAABCDEFGHIJKLMNOP"}"#,
            // Escapes, line breaks and non-ASCII text are never judged from the text.
            r#"{"p\u0061ssword":"x"}"#,
            r#"{"a":"b\"c"}"#,
            "{\"a\":\n\"b\"}",
            r#"{"passé":"x"}"#,
            r#"{"q":"ſecret"}"#,
        ] {
            assert!(!left_alone(&r, dirty), "{dirty}");
        }
    }

    #[test]
    fn anchored_value_patterns_still_count_inside_the_whole_text() {
        let r = rules_from("[redact]\nvalues = ['^secret-[0-9]+$']\n");
        // The anchored pattern matches the string alone, not the whole text: the test must
        // still see it.
        let raw = r#"{"a":"secret-123"}"#;
        assert!(!left_alone(&r, raw));
        let mut v: Value = serde_json::from_str(raw).unwrap();
        assert_eq!(redact(&r, &mut v), 1);
        assert!(left_alone(&r, r#"{"a":"public-123"}"#));
    }

    #[test]
    fn key_globs_without_a_literal_turn_the_text_test_off() {
        // A non-ASCII literal could match ASCII text under case folding: the Kelvin sign
        // matches "k".
        for keys in [
            "['*']",
            "['[ab]c']",
            "['{x,y}']",
            "['???']",
            "[\"*\\u212Aey*\"]",
        ] {
            let r = rules_from(&format!("[redact]\nkeys = {keys}\n"));
            assert!(r.raw_prefilter.is_none(), "{keys}");
            assert!(!left_alone(&r, r#"{"q":1}"#));
        }
    }

    #[test]
    fn whenever_the_text_test_says_clean_redaction_touches_nothing() {
        // Random small documents from parts that sit on both sides of every rule.
        let keys = [
            "query",
            "limit",
            "pass",
            "passwords",
            "PassWord",
            "tok",
            "x_token",
            "api-key",
            "apikey",
            "api",
            "key",
            "auth",
            "authorization",
            "cookies",
            "pwd",
            "pwdx",
            "data",
        ];
        let values = [
            "\"select 1\"",
            "\"Bearer abcdefghijk\"",
            "\"bearer short\"",
            "\"eyJabcdef.ghijklm.nop\"",
            "\"ghp_short\"",
            "\"ghp_abcdefghijklmnopqrstuvwx\"",
            "\"xoxb-1234567890\"",
            "\"AKIAABCDEFGHIJKLMNOP\"",
            "\"AKIAABCDEFGHIJKLMNOPQ\"",
            "\"sk-live-abcdefghijklmnopq\"",
            "\"{}\"",
            "\"[1,2]\"",
            "12",
            "null",
            "true",
            "\"glpat-abcdefghijklmnopqrstu\"",
            "\"-----BEGIN PRIVATE KEY-----\"",
            "\"token\"",
        ];
        let r = rules();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        let (mut clean, mut total) = (0, 0);
        for _ in 0..5000 {
            let mut doc = String::from("{");
            for i in 0..1 + next(4) {
                if i > 0 {
                    doc.push(',');
                }
                let value = if next(4) == 0 {
                    format!(
                        "{{\"{}\":{}}}",
                        keys[next(keys.len())],
                        values[next(values.len())]
                    )
                } else {
                    values[next(values.len())].to_owned()
                };
                doc.push_str(&format!("\"{}{i}\":{value}", keys[next(keys.len())]));
            }
            doc.push('}');
            total += 1;
            if left_alone(&r, &doc) {
                clean += 1;
                let mut v: Value = serde_json::from_str(&doc).unwrap();
                assert_eq!(redact(&r, &mut v), 0, "the text test passed {doc}");
            }
        }
        // Both answers occur, or the property says little.
        assert!(clean > 100 && clean < total, "{clean} of {total} clean");
    }
}
