//! `[[secrets]]` (where each upstream credential comes from) and `[[servers.inject]]` (which
//! headers carry them upstream). Config holds names and sources only: the values are read when
//! the daemon starts (`crate::credentials`), never at parse time and never into this type.

use std::{ops::Range, path::PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::raw::Invalid;

/// Where a secret's value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A file's content (one trailing newline dropped).
    File(PathBuf),
    /// An environment variable of the gateway process.
    Env(String),
    /// A systemd credential: `$CREDENTIALS_DIRECTORY/<name>` (`LoadCredential=` in the unit).
    Credential(String),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env(v) => write!(f, "environment variable {v}"),
            Source::Credential(c) => write!(f, "systemd credential {c}"),
        }
    }
}

/// A named secret and its source.
#[derive(Clone, Debug)]
pub struct SecretSpec {
    pub name: String,
    pub source: Source,
}

/// A header the gateway sets on every request to one upstream, after the policy allowed it.
#[derive(Clone, Debug)]
pub struct Injection {
    pub header: http::HeaderName,
    pub value: Vec<Part>,
}

/// A piece of an injected header's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    Text(String),
    /// The value of the secret with this name.
    Secret(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecret {
    name: Spanned<String>,
    file: Option<Spanned<String>>,
    env: Option<Spanned<String>>,
    credential: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInjection {
    header: Spanned<String>,
    value: Spanned<String>,
}

fn span_of<T>(s: &Spanned<T>) -> Option<Range<usize>> {
    Some(s.span())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Validates `[[secrets]]`: unique names, exactly one source each.
pub fn secrets(
    raw: Vec<RawSecret>,
    base: Option<&std::path::Path>,
) -> Result<Vec<SecretSpec>, Invalid> {
    let mut out: Vec<SecretSpec> = Vec::with_capacity(raw.len());
    for s in raw {
        let name = s.name.get_ref().clone();
        if !valid_name(&name) {
            return Err((
                span_of(&s.name),
                "secrets.name".into(),
                format!("{name:?}: use letters, digits, '_', '-' and '.'"),
            ));
        }
        if out.iter().any(|o| o.name == name) {
            return Err((
                span_of(&s.name),
                "secrets.name".into(),
                format!("duplicate secret name {name:?}"),
            ));
        }
        let source = match (s.file, s.env, s.credential) {
            (Some(f), None, None) => {
                Source::File(super::resolve(base, std::path::Path::new(f.get_ref())))
            }
            (None, Some(e), None) if !e.get_ref().is_empty() => Source::Env(e.into_inner()),
            (None, None, Some(c)) if valid_name(c.get_ref()) => Source::Credential(c.into_inner()),
            (None, None, Some(c)) => {
                return Err((
                    span_of(&c),
                    "secrets.credential".into(),
                    "a credential name is a file name in $CREDENTIALS_DIRECTORY".into(),
                ));
            }
            _ => {
                return Err((
                    span_of(&s.name),
                    "secrets".into(),
                    format!("secret {name:?} needs exactly one of file, env or credential"),
                ));
            }
        };
        out.push(SecretSpec { name, source });
    }
    Ok(out)
}

/// Headers an agent must never be able to set through injection mistakes: framing and routing
/// belong to the gateway.
const RESERVED: [&str; 9] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "mcp-session-id",
    "mcp-protocol-version",
    "content-type",
];

/// Validates one server's `[[servers.inject]]` against the defined secrets.
pub fn injections(
    raw: Vec<RawInjection>,
    secrets: &[SecretSpec],
) -> Result<Vec<Injection>, Invalid> {
    let mut out: Vec<Injection> = Vec::with_capacity(raw.len());
    for r in raw {
        let header = http::HeaderName::from_bytes(r.header.get_ref().as_bytes()).map_err(|_| {
            (
                span_of(&r.header),
                "servers.inject.header".to_owned(),
                format!("{:?} is not a header name", r.header.get_ref()),
            )
        })?;
        if RESERVED.contains(&header.as_str()) {
            return Err((
                span_of(&r.header),
                "servers.inject.header".into(),
                format!("{header} is the gateway's to set"),
            ));
        }
        if out.iter().any(|i| i.header == header) {
            return Err((
                span_of(&r.header),
                "servers.inject.header".into(),
                format!("{header} is injected twice"),
            ));
        }
        let value = template(r.value.get_ref())
            .map_err(|m| (span_of(&r.value), "servers.inject.value".to_owned(), m))?;
        for part in &value {
            if let Part::Secret(name) = part
                && !secrets.iter().any(|s| &s.name == name)
            {
                return Err((
                    span_of(&r.value),
                    "servers.inject.value".into(),
                    format!("no [[secrets]] entry is named {name:?}"),
                ));
            }
            if let Part::Text(t) = part
                && http::HeaderValue::from_str(t).is_err()
            {
                return Err((
                    span_of(&r.value),
                    "servers.inject.value".into(),
                    "the text around the secret is not valid in a header".into(),
                ));
            }
        }
        if !value.iter().any(|p| matches!(p, Part::Secret(_))) {
            return Err((
                span_of(&r.value),
                "servers.inject.value".into(),
                "names no secret (write ${name}); constant headers do not belong here".into(),
            ));
        }
        out.push(Injection { header, value });
    }
    Ok(out)
}

/// Splits `Bearer ${github}` into text and secret references. `$$` is a literal `$`.
pub(super) fn template(text: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        literal.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            literal.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            let end = inner
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {text:?}"))?;
            let name = &inner[..end];
            if !valid_name(name) {
                return Err(format!("{name:?} is not a secret name"));
            }
            if !literal.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut literal)));
            }
            parts.push(Part::Secret(name.to_owned()));
            rest = &inner[end + 1..];
        } else {
            return Err(format!(
                "a '$' must start ${{name}} (or be doubled) in {text:?}"
            ));
        }
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        parts.push(Part::Text(literal));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_split_into_text_and_secret_references() {
        assert_eq!(
            template("Bearer ${github}").unwrap(),
            vec![Part::Text("Bearer ".into()), Part::Secret("github".into())]
        );
        assert_eq!(
            template("${a}:$${b}").unwrap(),
            vec![Part::Secret("a".into()), Part::Text(":${b}".into())]
        );
        for bad in ["${a", "$a", "${}", "${a b}"] {
            assert!(template(bad).is_err(), "{bad}");
        }
    }
}
