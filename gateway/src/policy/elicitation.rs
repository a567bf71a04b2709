//! What a server may ask a user through elicitation: MCP's rule that credentials are asked for
//! in URL mode, never in a form the client (and its model) sees, and URLs a user can be sent to
//! safely.

use serde_json::Value;

/// Words that, in a form field's name, ask for a credential. Compared with the name's words
/// (split at case changes, digits and punctuation), so `apiKey`, `API_KEY` and `db-password`
/// match while `max_tokens` and `author` do not.
const CREDENTIAL_WORDS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "credential",
    "credentials",
    "otp",
    "cvv",
    "cvc",
];

/// Pairs of consecutive words that ask for one: `api key`, `private key`, `access key`, a
/// card number.
const CREDENTIAL_PAIRS: &[(&str, &str)] = &[
    ("api", "key"),
    ("private", "key"),
    ("access", "key"),
    ("secret", "key"),
    ("card", "number"),
];

/// A member of `v` by name, in any letter case: Go and .NET clients read `Mode` or `URL` as
/// `mode` and `url`.
fn member<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    crate::policy::params::member_in_any_case(v.as_object()?, name)
}

/// Why the `elicitation/create` with `params` may not reach the user, if it may not. Both
/// readings are checked where a client could take it either way (a `url` without
/// `mode = "url"`).
pub fn problem(params: Option<&Value>) -> Option<String> {
    let params = params?;
    let url = member(params, "url");
    let is_url = member(params, "mode").and_then(Value::as_str) == Some("url");
    if (is_url || url.is_some())
        && let Some(why) = url_problem(url)
    {
        return Some(why);
    }
    // Form mode is the default (and all there was before 2025-11-25).
    form_problem(member(params, "requestedSchema"))
}

/// A URL elicitation sends the user to a page, often to log in: only over HTTPS (or to this
/// host), with no credentials of its own in it and no character that could make it show one
/// thing and open another.
fn url_problem(url: Option<&Value>) -> Option<String> {
    let Some(text) = url.and_then(Value::as_str) else {
        return Some("a URL elicitation without a url".into());
    };
    let refuse = |why: &str| {
        Some(format!(
            "a URL elicitation to {:?}: {why}",
            text.chars().take(200).collect::<String>()
        ))
    };
    // URL parsers drop tabs and line breaks and trim spaces: the text must need none of that;
    // nor hold what shows it otherwise than it goes (a right-to-left override, zero-width
    // characters).
    if text.chars().any(|c| {
        c.is_control() || c.is_whitespace() || crate::policy::pins::suspicious_char(c).is_some()
    }) {
        return refuse(
            "the URL holds control, invisible or direction-changing characters, or white space",
        );
    }
    let Ok(parsed) = url::Url::parse(text) else {
        return refuse("not a valid URL");
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return refuse("the URL carries credentials");
    }
    let local = match parsed.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return refuse("the URL names no host"),
    };
    match parsed.scheme() {
        "https" => None,
        "http" if local => None,
        _ => refuse("only https:// URLs (http:// on this host) are allowed"),
    }
}

/// A form elicitation must not ask for a credential: its answer passes through the client.
fn form_problem(schema: Option<&Value>) -> Option<String> {
    let properties = member(schema?, "properties")?.as_object()?;
    properties.iter().find_map(|(name, field)| {
        let secret_format = member(field, "format")
            .and_then(Value::as_str)
            .is_some_and(|f| f.eq_ignore_ascii_case("password"))
            || member(field, "writeOnly").and_then(Value::as_bool) == Some(true);
        (secret_format || names_credential(name)).then(|| {
            format!(
                "a form asks for {name:?}, a credential: MCP servers must ask for credentials in URL mode, never in a form"
            )
        })
    })
}

/// Whether a field name asks for a credential, by its words.
fn names_credential(name: &str) -> bool {
    let words = words(name);
    words.iter().any(|w| CREDENTIAL_WORDS.contains(&w.as_str()))
        || words
            .windows(2)
            .any(|p| CREDENTIAL_PAIRS.contains(&(p[0].as_str(), p[1].as_str())))
}

/// The lower-cased words of an identifier: split at anything not a letter, and before an upper
/// case letter that follows a lower case one (`apiKey`, `APIKey` -> api, key).
fn words(name: &str) -> Vec<String> {
    let chars: Vec<char> = name.chars().collect();
    let mut words = Vec::new();
    let mut current = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphabetic() {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            continue;
        }
        let prev = i.checked_sub(1).map(|p| chars[p]);
        let next = chars.get(i + 1);
        let boundary = c.is_uppercase()
            && (prev.is_some_and(char::is_lowercase)
                || (prev.is_some_and(char::is_uppercase)
                    && next.is_some_and(|n| n.is_lowercase())));
        if boundary && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        current.extend(c.to_lowercase());
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn names_are_split_into_words() {
        assert_eq!(words("apiKey"), ["api", "key"]);
        assert_eq!(words("APIKey"), ["api", "key"]);
        assert_eq!(words("API_KEY"), ["api", "key"]);
        assert_eq!(words("db-password2"), ["db", "password"]);
        assert_eq!(words("max_tokens"), ["max", "tokens"]);
    }

    #[test]
    fn forms_asking_for_credentials_are_refused() {
        let form = |name: &str, field: Value| {
            problem(Some(&json!({
                "message": "m",
                "requestedSchema": {"type": "object", "properties": {"name": {"type": "string"}, name: field}}
            })))
        };
        let text = json!({"type": "string"});
        for name in [
            "password",
            "Password",
            "dbPassword",
            "api_key",
            "apiKey",
            "GITHUB_TOKEN",
            "client-secret",
            "privateKey",
            "card_number",
            "OTP",
        ] {
            let why = form(name, text.clone()).unwrap_or_else(|| panic!("{name} passed"));
            assert!(why.contains("URL mode"), "{why}");
        }
        for name in [
            "email",
            "max_tokens",
            "author",
            "keyword",
            "city",
            "secretary_name",
        ] {
            assert_eq!(form(name, text.clone()), None, "{name}");
        }
        // Whatever the name, a field marked as a password.
        assert!(form("pin_code", json!({"type": "string", "format": "password"})).is_some());
        assert!(form("value", json!({"type": "string", "writeOnly": true})).is_some());
        // No schema, no fields: nothing asked.
        assert_eq!(problem(Some(&json!({"message": "ok?"}))), None);
        assert_eq!(problem(None), None);
    }

    #[test]
    fn url_elicitations_go_to_https_urls_without_credentials() {
        let url = |u: &str| {
            problem(Some(
                &json!({"mode": "url", "url": u, "elicitationId": "e", "message": "m"}),
            ))
        };
        for good in [
            "https://auth.example.com/authorize?x=1",
            "http://localhost:8080/callback",
            "http://127.0.0.1/x",
            "http://[::1]:3000/",
        ] {
            assert_eq!(url(good), None, "{good}");
        }
        for bad in [
            "http://auth.example.com/login",
            "javascript:alert(1)",
            "file:///etc/passwd",
            "https://user:pw@auth.example.com/",
            "https://auth.example.com/\nhttps://evil.example/",
            "https://auth.example.com/\t",
            " https://auth.example.com/",
            "not a url",
            "data:text/html,<script>",
        ] {
            assert!(url(bad).is_some(), "{bad:?} passed");
        }
        assert!(problem(Some(&json!({"mode": "url"}))).is_some());
        assert!(problem(Some(&json!({"mode": "url", "url": 7}))).is_some());
        // Direction overrides and zero-width characters show one URL and open another.
        assert!(url("https://x.example/\u{202e}gpj.exe").is_some());
        assert!(url("https://x.example/a\u{200b}b").is_some());
    }

    /// Members in other letter case are what Go and .NET clients read; a URL without its mode
    /// is checked as a URL too.
    #[test]
    fn members_are_read_in_any_letter_case() {
        assert!(problem(Some(&json!({"Mode": "url", "URL": "http://evil.example/"}))).is_some());
        assert!(
            problem(Some(
                &json!({"url": "http://evil.example/", "message": "m"})
            ))
            .is_some()
        );
        assert!(
            problem(Some(
                &json!({"RequestedSchema": {"Properties": {"Password": {"type": "string"}}}})
            ))
            .is_some()
        );
        assert!(
            problem(Some(&json!({"requestedSchema": {"properties": {"x": {"type": "string", "Format": "Password"}}}})))
                .is_some()
        );
        assert!(
            problem(Some(&json!({"requestedSchema": {"properties": {"x": {"type": "string", "WriteOnly": true}}}})))
                .is_some()
        );
    }
}
