//! Upstream credentials: secrets read from files, the environment or systemd credentials when
//! the daemon starts, and the credential stage that puts them into upstream requests after the
//! policy has allowed them. Agents never see them, and whatever credentials agents send are
//! stripped (MCP forbids token passthrough).
//!
//! A secret is read into a zeroising buffer and wiped once its headers are built. Each injected
//! header value lives in one zeroising buffer that every request shares (no per-request
//! copies), wiped when the gateway drops the stage; what hyper copies into a socket's write
//! buffer is beyond reach. No `Debug`, `Display` or error message here prints a value.

use std::collections::HashMap;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use zeroize::Zeroizing;

use crate::{
    config::{
        Config, Server,
        credentials::{Part, SecretSpec, Source},
    },
    proxy::stages::{AGENT_CREDENTIAL_HEADERS, CredentialStage, Identity},
};

/// Why a secret could not be made ready. Names the secret and its source, never its value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret {name:?}: cannot read {source_desc}: {error}")]
    Read {
        name: String,
        source_desc: String,
        error: std::io::Error,
    },
    #[error("secret {name:?}: environment variable {var} is not set")]
    MissingEnv { name: String, var: String },
    #[error(
        "secret {name:?}: $CREDENTIALS_DIRECTORY is not set (systemd sets it for units with LoadCredential=)"
    )]
    NoCredentialsDirectory { name: String },
    #[error("secret {name:?} ({source_desc}) is empty")]
    Empty { name: String, source_desc: String },
    #[error(
        "secret {name:?} ({source_desc}) cannot go into the {header} header: control characters or non-ASCII bytes"
    )]
    NotAHeaderValue {
        name: String,
        source_desc: String,
        header: String,
    },
    #[error("server {server}: environment variable {var} would hold a NUL byte from a secret")]
    NotAnEnvValue { server: String, var: String },
}

/// A secret's value. Wiped on drop; never printed.
pub struct Secret(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl Secret {
    /// Reads a secret from its source.
    pub fn read(spec: &SecretSpec) -> Result<Self, SecretError> {
        let name = spec.name.clone();
        let source_desc = spec.source.to_string();
        let mut bytes = Zeroizing::new(match &spec.source {
            Source::File(path) => read_file(path).map_err(|error| SecretError::Read {
                name: name.clone(),
                source_desc: source_desc.clone(),
                error,
            })?,
            Source::Env(var) => std::env::var_os(var)
                .map(std::os::unix::ffi::OsStringExt::into_vec)
                .ok_or_else(|| SecretError::MissingEnv {
                    name: name.clone(),
                    var: var.clone(),
                })?,
            Source::Credential(file) => {
                let dir = std::env::var_os("CREDENTIALS_DIRECTORY")
                    .ok_or_else(|| SecretError::NoCredentialsDirectory { name: name.clone() })?;
                read_file(&std::path::Path::new(&dir).join(file)).map_err(|error| {
                    SecretError::Read {
                        name: name.clone(),
                        source_desc: source_desc.clone(),
                        error,
                    }
                })?
            }
        });
        // Files usually end in a newline that is not part of the secret.
        for end in [b'\n', b'\r'] {
            if bytes.last() == Some(&end) {
                bytes.pop();
            }
        }
        if bytes.is_empty() {
            return Err(SecretError::Empty { name, source_desc });
        }
        Ok(Self(bytes))
    }
}

impl Secret {
    /// Whether `presented` equals the secret. Their SHA-256 digests are compared, in constant
    /// time: neither where they differ nor the secret's length shows in the time it takes.
    pub fn matches(&self, presented: &[u8]) -> bool {
        use sha2::{Digest, Sha256};
        let (a, b) = (Sha256::digest(presented), Sha256::digest(&self.0[..]));
        let diff = a
            .iter()
            .zip(b.iter())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y));
        std::hint::black_box(diff) == 0
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty (a secret read from config never is).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Reads a secret file, warning when others may read it too.
fn read_file(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::PermissionsExt;
    let bytes = std::fs::read(path)?;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o007 != 0
    {
        tracing::warn!(path = %path.display(), "A secret file is readable by every user; chmod o-rwx it.");
    }
    Ok(bytes)
}

/// Whether requests to `url` travel unencrypted beyond this host.
fn crosses_the_network_in_clear(url: &url::Url) -> bool {
    url.scheme() == "http" && url.host().is_some() && !crate::config::loopback_host(url)
}

/// The credential stage: strips the agent's credentials, then sets each server's injected
/// headers.
pub struct Injector {
    headers: HashMap<String, Vec<(HeaderName, HeaderValue)>>,
}

impl std::fmt::Debug for Injector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut m = f.debug_map();
        for (server, headers) in &self.headers {
            m.entry(server, &headers.iter().map(|(h, _)| h).collect::<Vec<_>>());
        }
        m.finish()
    }
}

impl Injector {
    /// Reads every secret the servers use and builds their headers.
    pub fn new(config: &Config) -> Result<Self, SecretError> {
        let used: std::collections::HashSet<&str> = config
            .servers
            .iter()
            .flat_map(|s| &s.inject)
            .flat_map(|i| &i.value)
            .filter_map(|p| match p {
                Part::Secret(n) => Some(n.as_str()),
                Part::Text(_) => None,
            })
            .collect();
        let mut secrets: HashMap<&str, (Secret, String)> = HashMap::new();
        for spec in config
            .secrets
            .iter()
            .filter(|s| used.contains(s.name.as_str()))
        {
            secrets.insert(
                spec.name.as_str(),
                (Secret::read(spec)?, spec.source.to_string()),
            );
        }
        let mut headers = HashMap::new();
        for server in &config.servers {
            if !server.inject.is_empty() && crosses_the_network_in_clear(&server.url) {
                tracing::warn!(server = %server.name, url = %crate::config::loggable_url(&server.url), "Injecting credentials into plain http:// to another host: anyone on the path can read them. Use https://.");
            }
            let mut list = Vec::with_capacity(server.inject.len());
            for injection in &server.inject {
                let mut value = Zeroizing::new(Vec::new());
                let mut names = Vec::new();
                for part in &injection.value {
                    match part {
                        Part::Text(t) => value.extend_from_slice(t.as_bytes()),
                        Part::Secret(n) => {
                            // Validated: every referenced secret is defined, and all of them
                            // were read above.
                            if let Some((s, _)) = secrets.get(n.as_str()) {
                                value.extend_from_slice(&s.0);
                                names.push(n.as_str());
                            }
                        }
                    }
                }
                let shared = Bytes::from_owner(ZeroOnDrop(value));
                let mut header = HeaderValue::from_maybe_shared(shared).map_err(|_| {
                    let name = names.first().copied().unwrap_or_default().to_owned();
                    SecretError::NotAHeaderValue {
                        source_desc: secrets
                            .get(name.as_str())
                            .map(|(_, d)| d.clone())
                            .unwrap_or_default(),
                        name,
                        header: injection.header.to_string(),
                    }
                })?;
                header.set_sensitive(true);
                list.push((injection.header.clone(), header));
            }
            headers.insert(server.name.to_string(), list);
        }
        Ok(Self { headers })
    }

    /// Whether any server gets injected credentials.
    pub fn is_empty(&self) -> bool {
        self.headers.values().all(Vec::is_empty)
    }
}

/// Secrets shorter than this are not looked for in messages: a short one would blank
/// ordinary text that happens to contain it.
pub const MIN_SCRUBBED: usize = 6;

/// Every configured secret's value, looked for in what the gateway passes on or records: an
/// upstream that echoes the credential it was given (a debug tool, an error quoting a
/// connection string) must not hand it to the agent or to the audit log.
#[derive(Default)]
pub struct Scrubber {
    /// Each secret as it appears in JSON text: raw, and JSON-escaped where that differs.
    needles: Vec<Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Scrubber({} patterns)", self.needles.len())
    }
}

impl Scrubber {
    /// Reads the `[[secrets]]` entries that servers are given (injected or in a launched
    /// server's environment): what an upstream could echo.
    pub fn new(config: &Config) -> Result<Self, SecretError> {
        let given: std::collections::HashSet<&str> = config
            .servers
            .iter()
            .flat_map(|s| {
                let launched = s
                    .launch
                    .iter()
                    .flat_map(|l| l.env.iter().flat_map(|(_, v)| v));
                s.inject.iter().flat_map(|i| &i.value).chain(launched)
            })
            .filter_map(|p| match p {
                Part::Secret(n) => Some(n.as_str()),
                Part::Text(_) => None,
            })
            .collect();
        let mut needles = Vec::new();
        for spec in config
            .secrets
            .iter()
            .filter(|s| given.contains(s.name.as_str()))
        {
            let secret = Secret::read(spec)?;
            if secret.0.len() < MIN_SCRUBBED {
                continue;
            }
            if let Ok(text) = std::str::from_utf8(&secret.0) {
                let quoted = Zeroizing::new(serde_json::to_string(text).unwrap_or_default());
                let escaped = quoted.get(1..quoted.len().saturating_sub(1)).unwrap_or("");
                if escaped.as_bytes() != secret.0.as_slice() && !escaped.is_empty() {
                    needles.push(Zeroizing::new(escaped.as_bytes().to_vec()));
                }
            }
            needles.push(Zeroizing::new(secret.0.to_vec()));
        }
        Ok(Self { needles })
    }

    /// A scrubber for these values, as they are (tests).
    #[cfg(test)]
    pub fn of(values: &[&str]) -> Self {
        Self {
            needles: values
                .iter()
                .map(|v| Zeroizing::new(v.as_bytes().to_vec()))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// Whether some secret appears in `bytes`.
    pub fn found_in(&self, bytes: &[u8]) -> bool {
        self.needles
            .iter()
            .any(|n| memchr::memmem::find(bytes, n).is_some())
    }

    /// Blanks every secret in every string (and object key) of `value`; how many strings
    /// changed.
    pub fn scrub_value(&self, value: &mut serde_json::Value) -> usize {
        use serde_json::Value;
        let mut changed = 0;
        let mut stack = vec![value];
        while let Some(v) = stack.pop() {
            match v {
                Value::String(s) => changed += usize::from(self.scrub_string(s)),
                Value::Array(items) => stack.extend(items.iter_mut()),
                Value::Object(map) => {
                    if map.keys().any(|k| self.found_in(k.as_bytes())) {
                        let entries = std::mem::take(map);
                        for (mut k, child) in entries {
                            changed += usize::from(self.scrub_string(&mut k));
                            map.insert(k, child);
                        }
                    }
                    stack.extend(map.values_mut());
                }
                _ => {}
            }
        }
        changed
    }

    /// Blanks every secret in `text`; whether anything changed.
    pub fn scrub_string(&self, text: &mut String) -> bool {
        if !self.found_in(text.as_bytes()) {
            return false;
        }
        // Only raw needles can match decoded text; replacing leaves valid UTF-8 since every
        // needle that matched is itself the UTF-8 of a whole string.
        let mut out = std::mem::take(text).into_bytes();
        for needle in &self.needles {
            let mut at = 0;
            while let Some(i) = memchr::memmem::find(&out[at..], needle) {
                let start = at + i;
                out.splice(start..start + needle.len(), REDACTED.bytes());
                at = start + REDACTED.len();
            }
        }
        *text = String::from_utf8_lossy(&out).into_owned();
        true
    }

    /// A JSON text with every secret blanked, re-encoded; `None` when none appears in it or it
    /// is not JSON. A search of the text alone settles the common case; a text with escapes
    /// that other encoders use (Go's `\u0026`, `\/`, Python's `\u00e9`) is decoded first.
    pub fn scrub_json(&self, raw: &[u8]) -> Option<Vec<u8>> {
        let escaped = memchr::memmem::find(raw, b"\\u").is_some()
            || memchr::memmem::find(raw, b"\\/").is_some();
        if !escaped && !self.found_in(raw) {
            return None;
        }
        let mut value: serde_json::Value = serde_json::from_slice(raw).ok()?;
        if self.scrub_value(&mut value) == 0 {
            return None;
        }
        serde_json::to_vec(&value).ok()
    }
}

/// What replaces a secret found in a message or record.
const REDACTED: &str = "[redacted]";

/// A launched server's environment with its secrets filled in: what the child gets (besides
/// `PATH`). The values are wiped when the gateway drops them.
pub type LaunchEnv = Vec<(String, Zeroizing<Vec<u8>>)>;

/// Renders the environment of every launched (`command`) server, reading the secrets they use.
pub fn launch_env(config: &Config) -> Result<HashMap<String, LaunchEnv>, SecretError> {
    let mut read: HashMap<&str, Secret> = HashMap::new();
    let mut out = HashMap::new();
    for server in &config.servers {
        let Some(launch) = &server.launch else {
            continue;
        };
        let mut env = Vec::with_capacity(launch.env.len());
        for (key, parts) in &launch.env {
            let mut value = Zeroizing::new(Vec::new());
            for part in parts {
                match part {
                    Part::Text(t) => value.extend_from_slice(t.as_bytes()),
                    Part::Secret(name) => {
                        if !read.contains_key(name.as_str())
                            && let Some(spec) = config.secrets.iter().find(|s| &s.name == name)
                        {
                            read.insert(spec.name.as_str(), Secret::read(spec)?);
                        }
                        // Validated: every referenced secret is defined.
                        if let Some(secret) = read.get(name.as_str()) {
                            value.extend_from_slice(&secret.0);
                        }
                    }
                }
            }
            if value.contains(&0) {
                return Err(SecretError::NotAnEnvValue {
                    server: server.name.to_string(),
                    var: key.clone(),
                });
            }
            env.push((key.clone(), value));
        }
        out.insert(server.name.to_string(), env);
    }
    Ok(out)
}

/// Owner of a header value's bytes that wipes them when the last user is done.
struct ZeroOnDrop(Zeroizing<Vec<u8>>);

impl AsRef<[u8]> for ZeroOnDrop {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl CredentialStage for Injector {
    fn apply(&self, _: &Identity, server: &Server, headers: &mut HeaderMap) {
        for name in AGENT_CREDENTIAL_HEADERS {
            headers.remove(name);
        }
        if let Some(list) = self.headers.get(server.name.as_str()) {
            for (name, value) in list {
                // Whatever the agent sent under this name is replaced.
                headers.insert(name.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_matches_itself_only() {
        let secret = Secret(Zeroizing::new(b"0123456789abcdef".to_vec()));
        assert!(secret.matches(b"0123456789abcdef"));
        for other in [
            &b""[..],
            b"0123456789abcde",
            b"0123456789abcdeg",
            b"0123456789abcdef0",
            b"1123456789abcdef",
        ] {
            assert!(!secret.matches(other), "{other:?}");
        }
        assert_eq!(secret.len(), 16);
        assert!(!secret.is_empty());
    }

    #[test]
    fn the_scrubber_blanks_secrets_raw_escaped_in_keys_and_leaves_other_text() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        let quoted = dir.path().join("quoted");
        let short = dir.path().join("short");
        std::fs::write(&plain, "hunter2-hunter2\n").unwrap();
        std::fs::write(&quoted, "pa\"ss\\word").unwrap();
        std::fs::write(&short, "abc").unwrap();
        let c = config(&format!(
            "[[secrets]]\nname = \"plain\"\nfile = \"{}\"\n\
             [[secrets]]\nname = \"quoted\"\nfile = \"{}\"\n\
             [[secrets]]\nname = \"short\"\nfile = \"{}\"\n\
             [[secrets]]\nname = \"unused\"\nfile = \"/nonexistent\"\n\
             [[servers]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/\"\n\
             [[servers.inject]]\nheader = \"X-A\"\nvalue = \"${{plain}}\"\n\
             [[servers.inject]]\nheader = \"X-B\"\nvalue = \"${{short}}\"\n\
             [[servers]]\nname = \"b\"\ncommand = \"x\"\nenv = {{ P = \"${{quoted}}\" }}\n",
            plain.display(),
            quoted.display(),
            short.display()
        ));
        // The unused secret is never read (its file does not exist).
        let s = Scrubber::new(&c).unwrap();
        assert!(!s.is_empty());
        let raw = br#"{"result":{"text":"token hunter2-hunter2 and pa\"ss\\word","hunter2-hunter2":1,"n":"abc"}}"#;
        let clean = String::from_utf8(s.scrub_json(raw).unwrap()).unwrap();
        assert!(
            !clean.contains("hunter2") && !clean.contains("ss\\\\word"),
            "{clean}"
        );
        let v: serde_json::Value = serde_json::from_str(&clean).unwrap();
        assert_eq!(v["result"]["text"], "token [redacted] and [redacted]");
        assert_eq!(v["result"]["[redacted]"], 1);
        assert_eq!(
            v["result"]["n"], "abc",
            "shorter secrets are not looked for"
        );
        assert_eq!(s.scrub_json(br#"{"text":"nothing here"}"#), None);
        assert_eq!(s.scrub_json(b"not json hunter2-hunter2"), None);
        assert!(s.found_in(b"not json hunter2-hunter2"));
        // Escaped as other encoders escape: found once decoded.
        let go = br#"{"text":"pa\"ss\u005cword and hunter2\u002dhunter2 \/"}"#;
        let clean = String::from_utf8(s.scrub_json(go).unwrap()).unwrap();
        assert_eq!(clean, r#"{"text":"[redacted] and [redacted] /"}"#);
        assert_eq!(s.scrub_json(br#"{"text":"caf\u00e9 \/ ok"}"#), None);
        let mut text = "a hunter2-hunter2 b".to_owned();
        assert!(s.scrub_string(&mut text));
        assert_eq!(text, "a [redacted] b");
    }

    fn config(text: &str) -> Config {
        Config::parse(text, "test.toml").unwrap()
    }

    #[test]
    fn only_plain_http_beyond_this_host_counts_as_in_the_clear() {
        let clear = |u: &str| crosses_the_network_in_clear(&url::Url::parse(u).unwrap());
        assert!(clear("http://api.example.com/mcp"));
        assert!(clear("http://10.0.0.5:8080/mcp"));
        for local in [
            "https://api.example.com/mcp",
            "http://127.0.0.1:3001/mcp",
            "http://127.1.2.3/mcp",
            "http://[::1]:3001/mcp",
            "http://LOCALHOST:3001/mcp",
        ] {
            assert!(!clear(local), "{local}");
        }
    }

    #[test]
    fn headers_carry_secrets_from_files_and_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gh.token");
        std::fs::write(&file, "s3cret-from-file\n").unwrap();
        let var = format!("AGENTGATE_TEST_SECRET_{}", std::process::id());
        // SAFETY: no other thread of this test reads this variable.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var(&var, "s3cret-from-env")
        };
        let c = config(&format!(
            "[[secrets]]\nname = \"gh\"\nfile = \"{}\"\n[[secrets]]\nname = \"k\"\nenv = \"{var}\"\n\
             [[servers]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/mcp\"\n\
             [[servers.inject]]\nheader = \"Authorization\"\nvalue = \"Bearer ${{gh}}\"\n\
             [[servers.inject]]\nheader = \"X-Api-Key\"\nvalue = \"${{k}}\"\n\
             [[servers]]\nname = \"b\"\nurl = \"http://127.0.0.1:2/mcp\"\n",
            file.display()
        ));
        let injector = Injector::new(&c).unwrap();
        let debug = format!("{injector:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_static("Bearer agent-token"),
        );
        h.insert("cookie", HeaderValue::from_static("agent=1"));
        let identity = Identity::Peer {
            address: "127.0.0.1:9".parse().unwrap(),
        };
        injector.apply(&identity, &c.servers[0], &mut h);
        assert_eq!(h["authorization"], "Bearer s3cret-from-file");
        assert!(h["authorization"].is_sensitive());
        assert_eq!(h["x-api-key"], "s3cret-from-env");
        assert!(h.get("cookie").is_none());
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_static("Bearer agent-token"),
        );
        injector.apply(&identity, &c.servers[1], &mut h);
        assert!(h.is_empty(), "the agent's credential never passes: {h:?}");
    }

    #[test]
    fn errors_name_the_secret_and_its_source_never_a_value() {
        let dir = tempfile::tempdir().unwrap();
        let server = "[[servers]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/mcp\"\n\
                      [[servers.inject]]\nheader = \"Authorization\"\nvalue = \"Bearer ${x}\"\n";
        let missing = dir.path().join("nope");
        let e = Injector::new(&config(&format!(
            "[[secrets]]\nname = \"x\"\nfile = \"{}\"\n{server}",
            missing.display()
        )))
        .unwrap_err()
        .to_string();
        assert!(e.contains("secret \"x\"") && e.contains("nope"), "{e}");
        let bad = dir.path().join("bad");
        std::fs::write(&bad, "line1\nline2-secret\n").unwrap();
        let e = Injector::new(&config(&format!(
            "[[secrets]]\nname = \"x\"\nfile = \"{}\"\n{server}",
            bad.display()
        )))
        .unwrap_err()
        .to_string();
        assert!(e.contains("authorization header"), "{e}");
        assert!(!e.contains("line2-secret"), "{e}");
        let e = Injector::new(&config(&format!(
            "[[secrets]]\nname = \"x\"\nenv = \"AGENTGATE_SURELY_UNSET_{}\"\n{server}",
            std::process::id()
        )))
        .unwrap_err()
        .to_string();
        assert!(e.contains("is not set"), "{e}");
    }

    #[test]
    fn config_refuses_unknown_secrets_and_reserved_headers() {
        let base =
            "[[servers]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/mcp\"\n[[servers.inject]]\n";
        for (inject, want) in [
            (
                "header = \"Authorization\"\nvalue = \"Bearer ${nope}\"\n",
                "no [[secrets]] entry",
            ),
            (
                "header = \"Host\"\nvalue = \"${s}\"\n",
                "the gateway's to set",
            ),
            (
                "header = \"X-Key\"\nvalue = \"constant\"\n",
                "names no secret",
            ),
            (
                "header = \"X Key\"\nvalue = \"${s}\"\n",
                "not a header name",
            ),
        ] {
            let text = format!("[[secrets]]\nname = \"s\"\nenv = \"S\"\n{base}{inject}");
            let e = Config::parse(&text, "t.toml").unwrap_err().to_string();
            assert!(e.contains(want), "{inject}: {e}");
            assert!(e.contains("t.toml:"), "{e}");
        }
        let e = Config::parse(
            "[[secrets]]\nname = \"s\"\nenv = \"A\"\nfile = \"/x\"\n",
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("exactly one of file, env or credential"), "{e}");
    }
}
