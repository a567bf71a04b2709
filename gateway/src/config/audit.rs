//! `[audit]`: where the audit log lives, how it is kept durable, rotated and pruned, and what is
//! redacted before a record is written.

use std::{
    ops::Range,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;
use toml::Spanned;

use super::raw::Invalid;

pub const DEFAULT_AUDIT_DIR: &str = "/var/lib/agentgate/audit";
pub const DEFAULT_AUDIT_KEY: &str = "/var/lib/agentgate/audit.key";

/// Key names redacted by default (glob, case-insensitive), wherever they appear in parameters
/// or results.
pub const DEFAULT_REDACT_KEYS: [&str; 21] = [
    "*password*",
    "*passwd*",
    "*passphrase*",
    "pwd",
    "*secret*",
    "*token*",
    "*api?key*",
    "*apikey*",
    "authorization",
    "*cookie*",
    "*private?key*",
    "*privatekey*",
    "*credential*",
    "*session?key*",
    "*sessionkey*",
    "auth",
    // Connection strings carry their password: postgres://user:pass@host/db.
    "*dsn*",
    "*database?url*",
    "*databaseurl*",
    "*connection?string*",
    "*connectionstring*",
];

/// Values that look like credentials, whatever their key: JWTs, bearer tokens, PEM private keys,
/// the prefixed key formats of common providers, Basic authorization headers, URLs with a
/// password (`postgres://user:pass@host`), credentials in a URL's query (`?access_token=...`)
/// and `.env` lines that assign a secret. Matched inside longer strings too.
pub const DEFAULT_REDACT_VALUES: [&str; 12] = [
    r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*",
    r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}",
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)",
    r"\b(sk|pk|rk)[-_](live[-_]|test[-_]|proj[-_])?[A-Za-z0-9_-]{16,}",
    r"\b(ghp|gho|ghu|ghs|ghr|github_pat)_[A-Za-z0-9_]{20,}",
    r"\bxox[abposr]-[A-Za-z0-9-]{10,}",
    r"\b(AKIA|ASIA)[0-9A-Z]{16}\b",
    r"\bglpat-[A-Za-z0-9_-]{20,}",
    r"(?i)\bauthorization:\s*basic\s+[A-Za-z0-9+/=]{4,}",
    r"\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@",
    r"(?i)[?&](access_token|id_token|refresh_token|api_?key|client_secret|password|passwd|secret|token|x-amz-signature|x-goog-signature|sig)=[^&#\s]+",
    // Upper case only, as .env files are written: prose that says "token = ..." stays.
    r"(?m)^[ \t]*(export[ \t]+)?[A-Z0-9_]*(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL|DSN|DATABASE_URL)[A-Z0-9_]*[ \t]*=[ \t]*[^\s].*$",
];

/// The validated `[audit]` table.
#[derive(Clone, Debug)]
pub struct AuditConfig {
    pub enabled: bool,
    /// Directory of the segment files.
    pub dir: PathBuf,
    /// Ed25519 signing key (created, mode 0600, when missing).
    pub key_file: PathBuf,
    /// Forward a request only once its record is durable; refuse requests when the log cannot
    /// be written.
    pub fail_closed: bool,
    /// Sign a checkpoint after this many records...
    pub checkpoint_every: u64,
    /// ...or this long after the first unsigned record, whichever comes first.
    pub checkpoint_interval: Duration,
    /// Start a new segment once the current one is this large...
    pub segment_bytes: u64,
    /// ...or this old.
    pub segment_age: Duration,
    /// Delete the oldest segments while all of them together are larger (0: keep everything).
    pub retain_bytes: u64,
    /// Delete segments whose last record is older (`None`: keep everything).
    pub retain_age: Option<Duration>,
    /// Parameters larger than this (as JSON, after redaction) are kept as a truncated excerpt;
    /// beyond 64 times this (at least 64 KiB) they are left out, marked truncated.
    pub max_params_bytes: usize,
    /// Results likewise; their full size and SHA-256 are always recorded.
    pub max_result_bytes: usize,
    pub redact: Redaction,
    /// Export to an OpenTelemetry collector, when configured.
    pub otlp: Option<OtlpConfig>,
}

/// `[audit.otlp]`: records shipped as OpenTelemetry logs (OTLP/HTTP, JSON encoding).
#[derive(Clone, Debug)]
pub struct OtlpConfig {
    /// The collector's logs endpoint, e.g. `http://collector:4318/v1/logs`.
    pub endpoint: url::Url,
    /// How often new records are shipped.
    pub interval: Duration,
    /// Most records per request.
    pub batch: usize,
}

/// What is blanked out of parameters and results before they are written.
#[derive(Clone, Debug)]
pub struct Redaction {
    /// Object keys whose values are replaced (glob, case-insensitive).
    pub keys: globset::GlobSet,
    pub key_patterns: Vec<String>,
    /// Substrings of string values that are replaced.
    pub values: Vec<regex::Regex>,
    /// The same patterns as one set: one scan tells which apply.
    pub value_set: regex::RegexSet,
    /// The same patterns as one alternation: the fast way to learn that none applies.
    pub value_any: regex::Regex,
    /// Tells from a part's raw JSON text that redaction would leave it alone; `None` when
    /// some key glob has no literal to look for.
    pub raw_prefilter: Option<RawPrefilter>,
}

/// A test over raw JSON text (ASCII, no escapes, no line breaks: every key and string then
/// appears in it verbatim, between quotes) that finds nothing only when no key glob and no
/// value pattern could apply to any key or string in it. It may find things that are not
/// there (a pattern spanning two strings); then the part is parsed and redacted as usual.
#[derive(Clone, Debug)]
pub struct RawPrefilter {
    /// For each key glob, a literal every key it matches contains, lower-cased.
    keys: regex::Regex,
    /// The value patterns without their start and end anchors: each matches wherever its
    /// pattern does, so it finds in the whole text what the pattern finds in one string.
    /// (Word boundaries stay: the quote around a string is not a word character, as the
    /// string's own start and end are not.)
    values: regex::Regex,
}

/// One regex matching wherever any of `patterns` does. For a yes/no answer it is an order of
/// magnitude faster than a `RegexSet`, which tracks every pattern on its own.
fn any_of<S: AsRef<str>>(patterns: &[S]) -> Option<regex::Regex> {
    let alternation = patterns
        .iter()
        .map(|p| format!("(?:{})", p.as_ref()))
        .collect::<Vec<_>>()
        .join("|");
    regex::RegexBuilder::new(&alternation)
        .size_limit(8 << 20)
        .build()
        .ok()
}

impl RawPrefilter {
    fn new(globs: &[String], values: &[regex::Regex]) -> Option<Self> {
        // Looked for in the lower-cased text. A non-ASCII literal could match ASCII text under
        // Unicode case folding (the Kelvin sign matches "k"): such globs turn the test off.
        let literals = globs
            .iter()
            .map(|g| {
                glob_literal(g)
                    .filter(|l| l.is_ascii())
                    .map(|l| regex::escape(&l.to_ascii_lowercase()))
            })
            .collect::<Option<Vec<_>>>()?;
        let keys = regex::RegexBuilder::new(&literals.join("|"))
            .size_limit(1 << 20)
            .build()
            .ok()?;
        let relaxed = values
            .iter()
            .map(|re| {
                let hir = regex_syntax::ParserBuilder::new()
                    .build()
                    .parse(re.as_str())
                    .ok()?;
                Some(without_anchors(hir).to_string())
            })
            .collect::<Option<Vec<_>>>()?;
        let values = any_of(&relaxed)?;
        Some(Self { keys, values })
    }

    /// Whether redaction would change nothing in `raw`, a JSON text; `false` whenever that
    /// cannot be told without parsing it.
    pub fn leaves_alone(&self, raw: &str) -> bool {
        raw.is_ascii()
            && memchr::memchr3(b'\\', b'\n', b'\r', raw.as_bytes()).is_none()
            && !self.keys.is_match(&raw.to_ascii_lowercase())
            && !self.values.is_match(raw)
    }
}

/// The longest literal run of a glob: every name it matches contains it. `None` for globs
/// with classes, alternatives or escapes, or with no literal at all.
fn glob_literal(glob: &str) -> Option<String> {
    if glob.contains(['[', ']', '{', '}', '\\']) {
        return None;
    }
    glob.split(['*', '?'])
        .max_by_key(|piece| piece.len())
        .filter(|piece| !piece.is_empty())
        .map(str::to_owned)
}

/// The pattern with every start/end (of text or line) assertion replaced by nothing: it
/// matches a superset of what the pattern matches.
fn without_anchors(hir: regex_syntax::hir::Hir) -> regex_syntax::hir::Hir {
    use regex_syntax::hir::{Capture, Hir, HirKind, Look, Repetition};
    match hir.into_kind() {
        HirKind::Look(
            Look::Start | Look::End | Look::StartLF | Look::EndLF | Look::StartCRLF | Look::EndCRLF,
        )
        | HirKind::Empty => Hir::empty(),
        HirKind::Look(look) => Hir::look(look),
        HirKind::Literal(lit) => Hir::literal(lit.0),
        HirKind::Class(class) => Hir::class(class),
        HirKind::Repetition(r) => Hir::repetition(Repetition {
            sub: Box::new(without_anchors(*r.sub)),
            ..r
        }),
        HirKind::Capture(c) => Hir::capture(Capture {
            sub: Box::new(without_anchors(*c.sub)),
            ..c
        }),
        HirKind::Concat(parts) => Hir::concat(parts.into_iter().map(without_anchors).collect()),
        HirKind::Alternation(parts) => {
            Hir::alternation(parts.into_iter().map(without_anchors).collect())
        }
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        RawAudit::default()
            .validate(None)
            .unwrap_or_else(|_| unreachable_default())
    }
}

#[allow(clippy::panic)] // The defaults are constants covered by a test.
fn unreachable_default() -> AuditConfig {
    panic!("the built-in [audit] defaults do not validate")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default = "d_dir")]
    dir: Spanned<String>,
    #[serde(default = "d_key")]
    key_file: Spanned<String>,
    #[serde(default = "yes")]
    fail_closed: bool,
    #[serde(default = "d_every")]
    checkpoint_every: Spanned<i64>,
    #[serde(default = "d_interval")]
    checkpoint_interval: Spanned<String>,
    #[serde(default = "d_seg_bytes")]
    segment_bytes: Spanned<i64>,
    #[serde(default = "d_seg_age")]
    segment_age: Spanned<String>,
    #[serde(default = "d_zero")]
    retain_bytes: Spanned<i64>,
    #[serde(default)]
    retain_age: Option<Spanned<String>>,
    #[serde(default = "d_params")]
    max_params_bytes: Spanned<i64>,
    #[serde(default = "d_result")]
    max_result_bytes: Spanned<i64>,
    #[serde(default)]
    redact: RawRedact,
    #[serde(default)]
    otlp: Option<RawOtlp>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOtlp {
    endpoint: Spanned<String>,
    #[serde(default = "d_otlp_interval")]
    interval: Spanned<String>,
    #[serde(default = "d_otlp_batch")]
    batch: Spanned<i64>,
}

fn d_otlp_interval() -> Spanned<String> {
    unspanned("1s".to_owned())
}
fn d_otlp_batch() -> Spanned<i64> {
    unspanned(512)
}

impl RawOtlp {
    fn validate(self) -> Result<OtlpConfig, Invalid> {
        let endpoint = url::Url::parse(self.endpoint.get_ref()).map_err(|e| {
            (
                span_of(&self.endpoint),
                "audit.otlp.endpoint".to_owned(),
                format!("{:?} is not a URL: {e}", self.endpoint.get_ref()),
            )
        })?;
        if !matches!(endpoint.scheme(), "http" | "https") || endpoint.host().is_none() {
            return Err((
                span_of(&self.endpoint),
                "audit.otlp.endpoint".into(),
                "must be an http:// or https:// URL (the collector's /v1/logs)".into(),
            ));
        }
        if !endpoint.username().is_empty() || endpoint.password().is_some() {
            return Err((
                span_of(&self.endpoint),
                "audit.otlp.endpoint".into(),
                "credentials in the URL would leak into logs; remove them".into(),
            ));
        }
        Ok(OtlpConfig {
            endpoint,
            interval: duration(&self.interval, "audit.otlp.interval")?,
            batch: count(&self.batch, "audit.otlp.batch", 1)? as usize,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRedact {
    /// Replaces the default key list.
    keys: Option<Vec<Spanned<String>>>,
    /// Added to the default key list.
    #[serde(default)]
    extra_keys: Vec<Spanned<String>>,
    /// Replaces the default value patterns.
    values: Option<Vec<Spanned<String>>>,
    /// Added to the default value patterns.
    #[serde(default)]
    extra_values: Vec<Spanned<String>>,
}

impl Default for RawAudit {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: d_dir(),
            key_file: d_key(),
            fail_closed: true,
            checkpoint_every: d_every(),
            checkpoint_interval: d_interval(),
            segment_bytes: d_seg_bytes(),
            segment_age: d_seg_age(),
            retain_bytes: d_zero(),
            retain_age: None,
            max_params_bytes: d_params(),
            max_result_bytes: d_result(),
            redact: RawRedact::default(),
            otlp: None,
        }
    }
}

fn yes() -> bool {
    true
}
fn unspanned<T>(v: T) -> Spanned<T> {
    Spanned::new(0..0, v)
}
fn d_zero() -> Spanned<i64> {
    unspanned(0)
}
fn d_dir() -> Spanned<String> {
    unspanned(DEFAULT_AUDIT_DIR.to_owned())
}
fn d_key() -> Spanned<String> {
    unspanned(DEFAULT_AUDIT_KEY.to_owned())
}
fn d_every() -> Spanned<i64> {
    unspanned(1000)
}
fn d_interval() -> Spanned<String> {
    unspanned("5s".to_owned())
}
fn d_seg_bytes() -> Spanned<i64> {
    unspanned(64 << 20)
}
fn d_seg_age() -> Spanned<String> {
    unspanned("1d".to_owned())
}
fn d_params() -> Spanned<i64> {
    unspanned(16 << 10)
}
fn d_result() -> Spanned<i64> {
    unspanned(4 << 10)
}

fn span_of<T>(s: &Spanned<T>) -> Option<Range<usize>> {
    let r = s.span();
    (r != (0..0)).then_some(r)
}

fn count(v: &Spanned<i64>, key: &str, min: i64) -> Result<u64, Invalid> {
    let n = *v.get_ref();
    let max = super::raw::MAX_COUNT as i64;
    if n < min || n > max {
        return Err((
            span_of(v),
            key.to_owned(),
            format!("must be from {min} to {max}, not {n}"),
        ));
    }
    Ok(n as u64)
}

fn duration(v: &Spanned<String>, key: &str) -> Result<Duration, Invalid> {
    match humantime::parse_duration(v.get_ref()) {
        Ok(d) if !d.is_zero() && d <= super::raw::MAX_DURATION => Ok(d),
        Ok(_) => Err((
            span_of(v),
            key.to_owned(),
            "must be longer than zero and at most 100 years".into(),
        )),
        Err(e) => Err((
            span_of(v),
            key.to_owned(),
            format!(
                "{:?} is not a duration (like \"5s\" or \"30d\"): {e}",
                v.get_ref()
            ),
        )),
    }
}

fn path(v: &Spanned<String>, key: &str, base: Option<&Path>) -> Result<PathBuf, Invalid> {
    if v.get_ref().is_empty() {
        return Err((span_of(v), key.to_owned(), "must not be empty".into()));
    }
    Ok(super::resolve(base, Path::new(v.get_ref())))
}

/// A pattern list: the configured one (or the defaults when none is), plus the extras, each
/// with where it was written.
fn sources(
    configured: Option<&[Spanned<String>]>,
    defaults: &[&str],
    extra: &[Spanned<String>],
) -> Vec<(Option<Range<usize>>, String)> {
    let own = |k: &Spanned<String>| (span_of(k), k.get_ref().clone());
    match configured {
        Some(list) => list.iter().map(own).collect::<Vec<_>>(),
        None => defaults.iter().map(|k| (None, (*k).to_owned())).collect(),
    }
    .into_iter()
    .chain(extra.iter().map(own))
    .collect()
}

impl RawAudit {
    pub fn validate(self, base: Option<&Path>) -> Result<AuditConfig, Invalid> {
        let keys_src = sources(
            self.redact.keys.as_deref(),
            &DEFAULT_REDACT_KEYS,
            &self.redact.extra_keys,
        );
        let mut set = globset::GlobSetBuilder::new();
        for (span, text) in &keys_src {
            let glob = globset::GlobBuilder::new(text)
                .case_insensitive(true)
                .literal_separator(false)
                .build()
                .map_err(|e| {
                    (
                        span.clone(),
                        "audit.redact.keys".to_owned(),
                        format!("{text:?} is not a glob: {e}"),
                    )
                })?;
            set.add(glob);
        }
        let keys = set.build().map_err(|e| {
            (
                None,
                "audit.redact.keys".to_owned(),
                format!("cannot compile the key patterns: {e}"),
            )
        })?;
        let values_src = sources(
            self.redact.values.as_deref(),
            &DEFAULT_REDACT_VALUES,
            &self.redact.extra_values,
        );
        let values = values_src
            .iter()
            .map(|(span, text)| {
                regex::RegexBuilder::new(text)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| {
                        (
                            span.clone(),
                            "audit.redact.values".to_owned(),
                            format!("{text:?} is not a regular expression: {e}"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let key_patterns: Vec<String> = keys_src.into_iter().map(|(_, k)| k).collect();
        Ok(AuditConfig {
            enabled: self.enabled,
            dir: path(&self.dir, "audit.dir", base)?,
            key_file: path(&self.key_file, "audit.key_file", base)?,
            fail_closed: self.fail_closed,
            checkpoint_every: count(&self.checkpoint_every, "audit.checkpoint_every", 1)?,
            checkpoint_interval: duration(&self.checkpoint_interval, "audit.checkpoint_interval")?,
            segment_bytes: count(&self.segment_bytes, "audit.segment_bytes", 4096)?,
            segment_age: duration(&self.segment_age, "audit.segment_age")?,
            retain_bytes: count(&self.retain_bytes, "audit.retain_bytes", 0)?,
            retain_age: self
                .retain_age
                .as_ref()
                .map(|a| duration(a, "audit.retain_age"))
                .transpose()?,
            max_params_bytes: count(&self.max_params_bytes, "audit.max_params_bytes", 64)? as usize,
            max_result_bytes: count(&self.max_result_bytes, "audit.max_result_bytes", 0)? as usize,
            otlp: self.otlp.map(RawOtlp::validate).transpose()?,
            redact: Redaction {
                keys,
                raw_prefilter: RawPrefilter::new(&key_patterns, &values),
                key_patterns,
                value_any: any_of(&values.iter().map(regex::Regex::as_str).collect::<Vec<_>>())
                    .ok_or_else(|| {
                        (
                            None,
                            "audit.redact.values".to_owned(),
                            "the patterns together are too large".to_owned(),
                        )
                    })?,
                value_set: regex::RegexSetBuilder::new(values.iter().map(regex::Regex::as_str))
                    .size_limit(8 << 20)
                    .build()
                    .map_err(|e| {
                        (
                            None,
                            "audit.redact.values".to_owned(),
                            format!("the patterns together are too large: {e}"),
                        )
                    })?,
                values,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_validate() {
        let c = AuditConfig::default();
        assert!(c.enabled && c.fail_closed);
        assert_eq!(c.redact.values.len(), DEFAULT_REDACT_VALUES.len());
        assert!(c.redact.keys.is_match("DB_Password"));
        assert!(!c.redact.keys.is_match("query"));
    }
}
