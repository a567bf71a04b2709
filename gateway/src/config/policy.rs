//! The policy part of the file: `[policy]`, `[[rules]]` (also from included files) and
//! `[[policy.pins]]`, checked into [`PolicyConfig`] while every key's span is still known.
//!
//! Patterns, regular expressions, JSON pointers, time zones and SQL options are all validated
//! here, so a policy that loads is a policy the engine can evaluate without a runtime error.

use std::{
    collections::HashSet,
    ops::Range,
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;
use toml::Spanned;

use super::{raw::Invalid, resolve};

/// Where TOFU pins are kept unless `policy.pins_file` says otherwise.
pub const DEFAULT_PINS_FILE: &str = "/var/lib/agentgate/pins.json";

/// Enforce decisions, or only record them.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Denied messages are refused, lists are filtered, changed tools are hidden.
    #[default]
    Enforce,
    /// Everything is allowed; what enforce mode would have done is recorded.
    Observe,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Observe => "observe",
        }
    }
}

/// Allow or deny.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    Allow,
    Deny,
}

/// What happens to a tool or prompt whose definition, and to text a server gives the model
/// (instructions, a prompt's text, a sampling request), that carries invisible Unicode,
/// terminal escapes or orders to the model.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FlaggedAction {
    /// Hidden from lists and refused (tools/call, prompts/get and their results, sampling
    /// requests), or removed (instructions), and reported.
    #[default]
    Hide,
    /// Reported only.
    Report,
}

/// The validated policy.
#[derive(Clone, Debug)]
pub struct PolicyConfig {
    pub mode: Mode,
    pub rules: Vec<RuleSpec>,
    /// The TOFU pin store; `None` keeps pins in memory only.
    pub pins_file: Option<PathBuf>,
    pub flagged: FlaggedAction,
    /// Pins written in the config; they win over the pin store.
    pub pins: Vec<PinSpec>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            mode: Mode::Enforce,
            rules: Vec::new(),
            pins_file: Some(PathBuf::from(DEFAULT_PINS_FILE)),
            flagged: FlaggedAction::Hide,
            pins: Vec::new(),
        }
    }
}

/// A configured pin of one tool definition.
#[derive(Clone, Debug)]
pub struct PinSpec {
    pub server: String,
    pub tool: String,
    /// Lower-case hex SHA-256 of the canonical definition (`agentgate policy pin` prints it).
    pub sha256: String,
}

/// A name pattern: exact, or a glob (`*`, `?`, `[...]`, `{a,b}`).
#[derive(Clone, Debug)]
pub enum Pattern {
    /// `*`, the default of every selector: matched without running a glob on every request.
    Any,
    Exact(String),
    Glob {
        text: String,
        matcher: globset::GlobMatcher,
    },
}

impl Pattern {
    pub fn parse(text: &str) -> Result<Self, String> {
        if text == "*" {
            return Ok(Pattern::Any);
        }
        if !text.contains(['*', '?', '[', ']', '{', '}']) {
            return Ok(Pattern::Exact(text.to_owned()));
        }
        let glob = globset::GlobBuilder::new(text)
            .literal_separator(false)
            .backslash_escape(true)
            .build()
            .map_err(|e| format!("{text:?} is not a valid glob: {e}"))?;
        Ok(Pattern::Glob {
            text: text.to_owned(),
            matcher: glob.compile_matcher(),
        })
    }

    pub fn matches(&self, name: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Exact(e) => e == name,
            Pattern::Glob { matcher, .. } => matcher.is_match(name),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Pattern::Any => "*",
            Pattern::Exact(e) => e,
            Pattern::Glob { text, .. } => text,
        }
    }

    pub fn is_exact(&self) -> bool {
        matches!(self, Pattern::Exact(_))
    }
}

/// One rule, as validated.
#[derive(Clone, Debug)]
pub struct RuleSpec {
    pub name: String,
    /// `file:line` of the rule, for explanations.
    pub origin: String,
    pub effect: Effect,
    pub agents: Vec<Pattern>,
    pub servers: Vec<Pattern>,
    /// `None`: the rule does not select by that kind of target. A rule that selects by no kind
    /// at all covers every message to the server.
    pub tools: Option<Vec<Pattern>>,
    pub prompts: Option<Vec<Pattern>>,
    pub resources: Option<Vec<Pattern>>,
    pub methods: Option<Vec<Pattern>>,
    pub params: Vec<ParamSpec>,
    /// Any of these windows (none: any time).
    pub time: Vec<TimeWindow>,
    pub rate: Option<RateSpec>,
    pub process: ProcessSpec,
    pub token: TokenSpec,
    pub certificate: CertificateSpec,
    /// The rule holds only for a caller let through to one of these calls recently.
    pub after: Option<AfterSpec>,
    /// Shown to the agent when this rule denies (what to ask for, whom to ask).
    pub message: Option<String>,
}

/// `[rules.after]`: calls the caller must have been let through to, within `within`, for the
/// rule to hold.
#[derive(Clone, Debug)]
pub struct AfterSpec {
    pub servers: Vec<Pattern>,
    pub tools: Vec<Pattern>,
    pub within: Duration,
    /// What names these calls, for the call log: conditions written alike (in two rules, or
    /// before and after a reload) share it.
    pub key: std::sync::Arc<str>,
}

impl AfterSpec {
    pub fn new(servers: Vec<Pattern>, tools: Vec<Pattern>, within: Duration) -> Self {
        let list = |l: &[Pattern]| {
            l.iter()
                .map(Pattern::as_str)
                .collect::<Vec<_>>()
                .join("\u{1f}")
        };
        let key = format!("{}\u{1e}{}", list(&servers), list(&tools)).into();
        Self {
            servers,
            tools,
            within,
            key,
        }
    }

    /// Whether a call of `tool` on `server` is one this condition names.
    pub fn covers(&self, server: &str, tool: &str) -> bool {
        self.servers.iter().any(|p| p.matches(server)) && self.tools.iter().any(|p| p.matches(tool))
    }
}

impl RuleSpec {
    /// Whether the rule selects by target at all.
    pub fn whole_server(&self) -> bool {
        self.tools.is_none()
            && self.prompts.is_none()
            && self.resources.is_none()
            && self.methods.is_none()
    }

    /// Whether the rule has conditions beyond its selectors.
    pub fn conditional(&self) -> bool {
        !self.params.is_empty()
            || !self.time.is_empty()
            || !self.process.is_empty()
            || !self.token.is_empty()
            || !self.certificate.is_empty()
            || self.after.is_some()
    }
}

/// The caller's verified client certificate (mTLS).
#[derive(Clone, Debug, Default)]
pub struct CertificateSpec {
    /// Its identity (SPIFFE ID or subject CN) must match one of these.
    pub ids: Option<Vec<Pattern>>,
    /// The agent it names must be the agent the kernel-attested process is.
    pub agrees_with_process: bool,
}

impl CertificateSpec {
    pub fn is_empty(&self) -> bool {
        self.ids.is_none() && !self.agrees_with_process
    }
}

/// A condition on one argument of a tools/call or prompts/get.
#[derive(Clone, Debug)]
pub struct ParamSpec {
    /// RFC 6901 JSON pointer into `params.arguments`.
    pub pointer: String,
    pub matcher: Matcher,
}

/// How an argument value is tested.
#[derive(Clone, Debug)]
pub enum Matcher {
    Eq(serde_json::Value),
    OneOf(Vec<serde_json::Value>),
    Glob(Vec<Pattern>),
    Regex(regex::Regex),
    Range {
        min: Option<f64>,
        max: Option<f64>,
    },
    /// Length in characters (Unicode scalar values) of a string, or elements of an array.
    Length {
        min: Option<u64>,
        max: Option<u64>,
    },
    Present(bool),
    /// Normalised absolute paths (no `.`, `..`, or repeated `/`), compared by component.
    PathPrefix(Vec<String>),
    /// Host patterns: `example.com` exactly, or `*.example.com` for its subdomains.
    UrlHosts(Vec<String>),
    Sql(Box<SqlSpec>),
}

/// What SQL a statement argument may contain.
#[derive(Clone, Debug)]
pub struct SqlSpec {
    /// Allowed statement kinds (`select`, `insert`, `update`, `delete`, ...); `None`: any.
    pub statements: Option<HashSet<String>>,
    /// Allowed tables as (schema, table); `None`: any not denied.
    pub tables: Option<HashSet<(String, String)>>,
    /// Denied tables: (Some(schema), table) exactly, or (None, table) in any schema.
    pub deny_tables: Vec<(Option<String>, String)>,
    /// The schema of unqualified names.
    pub default_schema: String,
    /// Allowed functions (by name, schema dropped); `None`: any not denied.
    pub functions: Option<HashSet<String>>,
    /// Denied functions: `deny_functions` plus, unless `allow_risky_functions`, the built-in
    /// list of functions that read files, run SQL from strings or change the server.
    pub deny_functions: HashSet<String>,
}

/// A time window in a time zone.
#[derive(Clone, Debug)]
pub struct TimeWindow {
    /// Weekdays, Monday = 1 ... Sunday = 7; empty means every day.
    pub days: Vec<i8>,
    /// Minutes after midnight; `from > to` spans midnight.
    pub from: u16,
    pub to: u16,
    pub tz: jiff::tz::TimeZone,
    pub tz_name: String,
}

/// A token bucket per agent identity, rule and target.
#[derive(Clone, Debug)]
pub struct RateSpec {
    pub requests: u32,
    pub per: Duration,
    pub burst: u32,
}

/// Process attributes from the kernel-attested identity; every set list must contain the value.
#[derive(Clone, Debug, Default)]
pub struct ProcessSpec {
    pub uid: Option<Vec<u32>>,
    pub exe: Option<Vec<PathBuf>>,
    pub exe_sha256: Option<Vec<String>>,
    pub unit: Option<Vec<String>>,
    pub container: Option<Vec<String>>,
}

impl ProcessSpec {
    pub fn is_empty(&self) -> bool {
        self.uid.is_none()
            && self.exe.is_none()
            && self.exe_sha256.is_none()
            && self.unit.is_none()
            && self.container.is_none()
    }
}

/// Claims of the caller's token.
#[derive(Clone, Debug, Default)]
pub struct TokenSpec {
    /// Every one of these must be granted (`scope` claim, space-separated, or `scp` array).
    pub scopes: Vec<String>,
    /// Claim name -> accepted values (a claim that is an array needs one of them).
    pub claims: Vec<(String, Vec<serde_json::Value>)>,
}

impl TokenSpec {
    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty() && self.claims.is_empty()
    }
}

// ---- the file as written ----

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    include: Vec<Spanned<PathBuf>>,
    #[serde(default)]
    pins_file: Option<Spanned<String>>,
    #[serde(default)]
    flagged: FlaggedAction,
    #[serde(default)]
    pins: Vec<RawPin>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPin {
    server: Spanned<String>,
    tool: String,
    sha256: Spanned<String>,
}

/// A file named by `policy.include`: rules only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    name: Spanned<String>,
    effect: Effect,
    #[serde(default)]
    agents: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    servers: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    tools: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    prompts: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    resources: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    methods: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    params: Vec<RawParam>,
    #[serde(default)]
    time: Vec<RawTime>,
    #[serde(default)]
    rate: Option<Spanned<RawRate>>,
    #[serde(default)]
    process: Option<RawProcess>,
    #[serde(default)]
    token: Option<RawToken>,
    #[serde(default)]
    certificate: Option<RawCertificate>,
    #[serde(default)]
    after: Option<Spanned<RawAfter>>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAfter {
    #[serde(default)]
    servers: Option<Vec<Spanned<String>>>,
    tools: Vec<Spanned<String>>,
    #[serde(default)]
    within: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCertificate {
    #[serde(default)]
    ids: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    agrees_with_process: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParam {
    pointer: Spanned<String>,
    #[serde(default)]
    eq: Option<toml::Value>,
    #[serde(default)]
    one_of: Option<Vec<toml::Value>>,
    #[serde(default)]
    glob: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    regex: Option<Spanned<String>>,
    #[serde(default)]
    range: Option<RawRange>,
    #[serde(default)]
    length: Option<RawLength>,
    #[serde(default)]
    present: Option<bool>,
    #[serde(default)]
    path_prefix: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    url_hosts: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    sql: Option<RawSql>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRange {
    #[serde(default)]
    min: Option<f64>,
    #[serde(default)]
    max: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLength {
    #[serde(default)]
    min: Option<u64>,
    #[serde(default)]
    max: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSql {
    #[serde(default)]
    statements: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    tables: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    deny_tables: Vec<Spanned<String>>,
    #[serde(default = "public")]
    default_schema: String,
    #[serde(default)]
    functions: Option<Vec<String>>,
    #[serde(default)]
    deny_functions: Vec<String>,
    #[serde(default)]
    allow_risky_functions: bool,
}

fn public() -> String {
    "public".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTime {
    #[serde(default)]
    days: Vec<Spanned<String>>,
    from: Spanned<String>,
    to: Spanned<String>,
    #[serde(default)]
    tz: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRate {
    requests: u32,
    per: String,
    #[serde(default)]
    burst: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProcess {
    #[serde(default)]
    uid: Option<Vec<u32>>,
    #[serde(default)]
    exe: Option<Vec<PathBuf>>,
    #[serde(default)]
    exe_sha256: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    unit: Option<Vec<String>>,
    #[serde(default)]
    container: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    claims: toml::Table,
}

/// A validation error in some file: the caller turns the span into a line.
#[derive(Debug)]
pub struct PolicyError {
    /// The file the span is in; `None` for the main config file.
    pub file: Option<(PathBuf, String)>,
    pub invalid: Invalid,
}

impl From<Invalid> for PolicyError {
    fn from(invalid: Invalid) -> Self {
        Self {
            file: None,
            invalid,
        }
    }
}

fn invalid(span: Range<usize>, key: &str, message: impl Into<String>) -> Invalid {
    (Some(span), key.to_owned(), message.into())
}

impl RawPolicy {
    /// Validates `[policy]` and the rules of the main file, then reads the included files
    /// (relative paths are relative to `base`; a directory contributes its `*.toml` files in
    /// name order).
    pub fn validate(
        self,
        rules: Vec<RawRule>,
        base: Option<&Path>,
    ) -> Result<PolicyConfig, PolicyError> {
        let mut out = PolicyConfig {
            mode: self.mode,
            rules: Vec::new(),
            pins_file: match self.pins_file {
                Some(p) if p.get_ref().is_empty() => None,
                Some(p) => Some(resolve(base, Path::new(p.get_ref()))),
                None => Some(PathBuf::from(DEFAULT_PINS_FILE)),
            },
            flagged: self.flagged,
            pins: Vec::new(),
        };
        for pin in self.pins {
            let h = pin.sha256.get_ref();
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(
                    pin.sha256.span(),
                    "policy.pins.sha256",
                    "must be 64 hex digits",
                )
                .into());
            }
            if pin.server.get_ref().is_empty() {
                return Err(
                    invalid(pin.server.span(), "policy.pins.server", "must not be empty").into(),
                );
            }
            out.pins.push(PinSpec {
                server: pin.server.into_inner(),
                tool: pin.tool,
                sha256: h.to_ascii_lowercase(),
            });
        }
        let mut names = HashSet::new();
        for rule in rules {
            push_rule(&mut out.rules, &mut names, rule, "<config>")?;
        }
        for inc in self.include {
            let path = resolve(base, inc.get_ref());
            let files = if path.is_dir() {
                let mut v: Vec<PathBuf> = std::fs::read_dir(&path)
                    .map_err(|e| {
                        invalid(
                            inc.span(),
                            "policy.include",
                            format!("{}: {e}", path.display()),
                        )
                    })?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                    .collect();
                v.sort();
                v
            } else {
                vec![path]
            };
            for file in files {
                let text = std::fs::read_to_string(&file).map_err(|e| {
                    invalid(
                        inc.span(),
                        "policy.include",
                        format!("{}: cannot read: {e}", file.display()),
                    )
                })?;
                let in_file = |invalid: Invalid| PolicyError {
                    file: Some((file.clone(), text.clone())),
                    invalid,
                };
                let parsed: RulesFile = toml::from_str(&text).map_err(|e| {
                    in_file((e.span(), "(file)".into(), e.message().trim().to_owned()))
                })?;
                let label = file.display().to_string();
                for rule in parsed.rules {
                    push_rule(&mut out.rules, &mut names, rule, &label)
                        .map_err(|e| in_file(e.invalid))?;
                }
            }
        }
        Ok(out)
    }
}

fn push_rule(
    rules: &mut Vec<RuleSpec>,
    names: &mut HashSet<String>,
    raw: RawRule,
    file: &str,
) -> Result<(), PolicyError> {
    let name = raw.name.get_ref().clone();
    if name.is_empty() || name == "default-deny" {
        return Err(invalid(
            raw.name.span(),
            "rules.name",
            format!("{name:?} cannot name a rule"),
        )
        .into());
    }
    if !names.insert(name.clone()) {
        return Err(invalid(
            raw.name.span(),
            "rules.name",
            format!("duplicate rule name {name:?}"),
        )
        .into());
    }
    let patterns =
        |list: Option<Vec<Spanned<String>>>, key: &str| -> Result<Option<Vec<Pattern>>, Invalid> {
            let Some(list) = list else { return Ok(None) };
            if list.is_empty() {
                return Err(invalid(
                    raw.name.span(),
                    key,
                    "an empty list matches nothing; leave the key out to match any",
                ));
            }
            list.iter()
                .map(|p| Pattern::parse(p.get_ref()).map_err(|m| invalid(p.span(), key, m)))
                .collect::<Result<Vec<_>, _>>()
                .map(Some)
        };
    let agents = patterns(raw.agents, "rules.agents")?;
    let servers = patterns(raw.servers, "rules.servers")?;
    let tools = patterns(raw.tools, "rules.tools")?;
    let prompts = patterns(raw.prompts, "rules.prompts")?;
    let resources = patterns(raw.resources, "rules.resources")?;
    let methods = patterns(raw.methods, "rules.methods")?;
    if !raw.params.is_empty() && tools.is_none() && prompts.is_none() {
        return Err(invalid(
            raw.name.span(),
            "rules.params",
            "parameter conditions need `tools` or `prompts` to say whose arguments they test",
        )
        .into());
    }
    // The sql matcher says what a query may do (its kinds, tables and functions, with lists of
    // exceptions): in a deny rule it would deny the queries that stay inside it and let every
    // other one through, SQL that does not parse included.
    if raw.effect == Effect::Deny
        && let Some(p) = raw.params.iter().find(|p| p.sql.is_some())
    {
        return Err(invalid(
            p.pointer.span(),
            "rules.params.sql",
            "the sql matcher belongs on an allow rule (it says what a query may do); refuse statement kinds, tables and functions there with statements, deny_tables and deny_functions",
        )
        .into());
    }
    let params = raw
        .params
        .into_iter()
        .map(param)
        .collect::<Result<Vec<_>, _>>()?;
    let time = raw
        .time
        .into_iter()
        .map(window)
        .collect::<Result<Vec<_>, _>>()?;
    let rate = match raw.rate {
        None => None,
        Some(r) => {
            let span = r.span();
            let r = r.into_inner();
            if raw.effect == Effect::Deny {
                return Err(
                    invalid(span, "rules.rate", "a rate limit belongs on an allow rule").into(),
                );
            }
            let per = humantime::parse_duration(&r.per)
                .ok()
                .filter(|d| !d.is_zero() && *d <= super::raw::MAX_DURATION)
                .ok_or_else(|| {
                    invalid(
                        span.clone(),
                        "rules.rate.per",
                        format!("{:?} is not a duration such as \"1m\"", r.per),
                    )
                })?;
            let burst = r.burst.unwrap_or(r.requests);
            if r.requests == 0 || burst == 0 {
                return Err(
                    invalid(span, "rules.rate", "requests and burst must be at least 1").into(),
                );
            }
            Some(RateSpec {
                requests: r.requests,
                per,
                burst,
            })
        }
    };
    let process = match raw.process {
        None => ProcessSpec::default(),
        Some(p) => ProcessSpec {
            uid: p.uid,
            exe: p.exe,
            exe_sha256: p
                .exe_sha256
                .map(|v| {
                    v.into_iter()
                        .map(|h| {
                            if h.get_ref().len() == 64
                                && h.get_ref().bytes().all(|b| b.is_ascii_hexdigit())
                            {
                                Ok(h.get_ref().to_ascii_lowercase())
                            } else {
                                Err(invalid(
                                    h.span(),
                                    "rules.process.exe_sha256",
                                    "must be 64 hex digits",
                                ))
                            }
                        })
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?,
            unit: p.unit,
            container: p.container,
        },
    };
    let token = match raw.token {
        None => TokenSpec::default(),
        Some(t) => TokenSpec {
            scopes: t.scopes,
            claims: t
                .claims
                .into_iter()
                .map(|(k, v)| {
                    let values = match v {
                        toml::Value::Array(a) => a.into_iter().map(json_of).collect(),
                        one => vec![json_of(one)],
                    };
                    (k, values)
                })
                .collect(),
        },
    };
    let certificate = match raw.certificate {
        None => CertificateSpec::default(),
        Some(c) => CertificateSpec {
            ids: patterns(c.ids, "rules.certificate.ids")?,
            agrees_with_process: c.agrees_with_process,
        },
    };
    let after = match raw.after {
        None => None,
        Some(a) => {
            let span = a.span();
            let a = a.into_inner();
            let within = match &a.within {
                None => Duration::from_secs(3600),
                Some(text) => humantime::parse_duration(text)
                    .ok()
                    .filter(|d| {
                        *d >= Duration::from_secs(1) && *d <= crate::policy::flows::MAX_WITHIN
                    })
                    .ok_or_else(|| {
                        invalid(
                            span.clone(),
                            "rules.after.within",
                            format!("{text:?} is not a duration from \"1s\" to \"24h\""),
                        )
                    })?,
            };
            Some(AfterSpec::new(
                patterns(a.servers, "rules.after.servers")?.unwrap_or_else(|| vec![Pattern::Any]),
                patterns(Some(a.tools), "rules.after.tools")?.unwrap_or_default(),
                within,
            ))
        }
    };
    let line_origin = format!("{file} rule {name:?}");
    rules.push(RuleSpec {
        origin: line_origin,
        name,
        effect: raw.effect,
        agents: agents.unwrap_or_else(|| vec![Pattern::Any]),
        servers: servers.unwrap_or_else(|| vec![Pattern::Any]),
        tools,
        prompts,
        resources,
        methods,
        params,
        time,
        rate,
        process,
        token,
        certificate,
        after,
        message: raw.message,
    });
    Ok(())
}

/// TOML values as JSON, for comparisons with arguments.
fn json_of(v: toml::Value) -> serde_json::Value {
    match v {
        toml::Value::String(s) => s.into(),
        toml::Value::Integer(i) => i.into(),
        toml::Value::Float(f) => {
            serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, Into::into)
        }
        toml::Value::Boolean(b) => b.into(),
        toml::Value::Datetime(d) => d.to_string().into(),
        toml::Value::Array(a) => a.into_iter().map(json_of).collect(),
        toml::Value::Table(t) => t
            .into_iter()
            .map(|(k, v)| (k, json_of(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    }
}

fn param(raw: RawParam) -> Result<ParamSpec, Invalid> {
    let span = raw.pointer.span();
    let pointer = raw.pointer.into_inner();
    if !(pointer.is_empty() || pointer.starts_with('/'))
        || pointer
            .split('~')
            .skip(1)
            .any(|rest| !(rest.starts_with('0') || rest.starts_with('1')))
    {
        return Err(invalid(
            span,
            "rules.params.pointer",
            format!("{pointer:?} is not a JSON pointer (RFC 6901), e.g. \"/path\""),
        ));
    }
    let mut matchers = Vec::new();
    if let Some(v) = raw.eq {
        matchers.push(Matcher::Eq(json_of(v)));
    }
    if let Some(v) = raw.one_of {
        matchers.push(Matcher::OneOf(v.into_iter().map(json_of).collect()));
    }
    if let Some(g) = raw.glob {
        matchers.push(Matcher::Glob(
            g.iter()
                .map(|p| {
                    Pattern::parse(p.get_ref())
                        .map_err(|m| invalid(p.span(), "rules.params.glob", m))
                })
                .collect::<Result<_, _>>()?,
        ));
    }
    if let Some(r) = raw.regex {
        let re = regex::RegexBuilder::new(r.get_ref())
            .size_limit(1 << 20)
            .build()
            .map_err(|e| {
                invalid(
                    r.span(),
                    "rules.params.regex",
                    format!("not a regular expression: {e}"),
                )
            })?;
        matchers.push(Matcher::Regex(re));
    }
    if let Some(r) = raw.range {
        if !bounds(r.min, r.max) {
            return Err(invalid(
                span,
                "rules.params.range",
                "needs min and/or max, with min <= max",
            ));
        }
        matchers.push(Matcher::Range {
            min: r.min,
            max: r.max,
        });
    }
    if let Some(r) = raw.length {
        if !bounds(r.min, r.max) {
            return Err(invalid(
                span,
                "rules.params.length",
                "needs min and/or max, with min <= max",
            ));
        }
        matchers.push(Matcher::Length {
            min: r.min,
            max: r.max,
        });
    }
    if let Some(p) = raw.present {
        matchers.push(Matcher::Present(p));
    }
    if let Some(list) = raw.path_prefix {
        let mut prefixes = Vec::new();
        for p in &list {
            match crate::policy::params::normalise_path(p.get_ref()) {
                Some(n) => prefixes.push(n),
                None => {
                    return Err(invalid(
                        p.span(),
                        "rules.params.path_prefix",
                        format!("{:?} is not an absolute path", p.get_ref()),
                    ));
                }
            }
        }
        matchers.push(Matcher::PathPrefix(prefixes));
    }
    if let Some(list) = raw.url_hosts {
        let mut hosts = Vec::new();
        for h in &list {
            let text = h.get_ref();
            let (wild, bare) = match text.strip_prefix("*.") {
                Some(rest) => (true, rest),
                None => (false, text.as_str()),
            };
            // Without the root's trailing dot: values are compared without it.
            let parsed = url::Url::parse(&format!("http://{bare}/"))
                .ok()
                .and_then(|u| u.host_str().map(|h| h.trim_end_matches('.').to_owned()))
                .filter(|host| !bare.contains(['/', '@', ':', '*']) && !host.is_empty());
            match parsed {
                Some(host) => hosts.push(if wild { format!("*.{host}") } else { host }),
                None => {
                    return Err(invalid(
                        h.span(),
                        "rules.params.url_hosts",
                        format!("{text:?} is not a host name or *.domain"),
                    ));
                }
            }
        }
        matchers.push(Matcher::UrlHosts(hosts));
    }
    if let Some(sql) = raw.sql {
        matchers.push(Matcher::Sql(Box::new(sql_spec(sql)?)));
    }
    match matchers.len() {
        1 => Ok(ParamSpec {
            pointer,
            matcher: matchers.remove(0),
        }),
        0 => Err(invalid(
            span,
            "rules.params",
            "needs one matcher: eq, one_of, glob, regex, range, length, present, path_prefix, url_hosts or sql",
        )),
        _ => Err(invalid(
            span,
            "rules.params",
            "has more than one matcher; write one [[rules.params]] per condition",
        )),
    }
}

/// Whether `min`/`max` bound anything: at least one given, and not crossed.
fn bounds<T: PartialOrd>(min: Option<T>, max: Option<T>) -> bool {
    (min.is_some() || max.is_some()) && !matches!((&min, &max), (Some(a), Some(b)) if a > b)
}

/// SQL statement kinds the matcher knows by name.
pub const SQL_KINDS: &[&str] = &[
    "select",
    "select_into",
    "select_for_update",
    "insert",
    "update",
    "delete",
    "merge",
    "copy",
    "truncate",
    "explain",
    "create",
    "alter",
    "drop",
    "grant",
    "revoke",
    "set",
    "show",
    "transaction",
    "call",
    "execute",
    "prepare",
    "lock",
    "vacuum",
    "analyze",
    "other",
];

fn sql_spec(raw: RawSql) -> Result<SqlSpec, Invalid> {
    let schema = crate::policy::sql::fold_ident(&raw.default_schema);
    let split = |t: &Spanned<String>, key: &str| -> Result<(Option<String>, String), Invalid> {
        let parts: Vec<&str> = t.get_ref().split('.').collect();
        match parts.as_slice() {
            [table] if !table.is_empty() => Ok((None, crate::policy::sql::fold_ident(table))),
            [s, table] if !s.is_empty() && !table.is_empty() => Ok((
                Some(crate::policy::sql::fold_ident(s)),
                crate::policy::sql::fold_ident(table),
            )),
            _ => Err(invalid(
                t.span(),
                key,
                format!("{:?} is not `table` or `schema.table`", t.get_ref()),
            )),
        }
    };
    let statements = match raw.statements {
        None => None,
        Some(list) => {
            let mut set = HashSet::new();
            for s in &list {
                let k = s.get_ref().to_ascii_lowercase();
                if !SQL_KINDS.contains(&k.as_str()) {
                    return Err(invalid(
                        s.span(),
                        "rules.params.sql.statements",
                        format!(
                            "unknown statement kind {:?}; known: {}",
                            s.get_ref(),
                            SQL_KINDS.join(", ")
                        ),
                    ));
                }
                set.insert(k);
            }
            Some(set)
        }
    };
    let tables = match raw.tables {
        None => None,
        Some(list) => Some(
            list.iter()
                .map(|t| {
                    split(t, "rules.params.sql.tables")
                        .map(|(s, t)| (s.unwrap_or_else(|| schema.clone()), t))
                })
                .collect::<Result<HashSet<_>, _>>()?,
        ),
    };
    let deny_tables = raw
        .deny_tables
        .iter()
        .map(|t| split(t, "rules.params.sql.deny_tables"))
        .collect::<Result<Vec<_>, _>>()?;
    let fold = crate::policy::sql::fold_ident;
    let mut deny_functions: HashSet<String> = raw.deny_functions.iter().map(|f| fold(f)).collect();
    if !raw.allow_risky_functions {
        deny_functions.extend(
            crate::policy::sql::RISKY_FUNCTIONS
                .iter()
                .map(|f| f.to_string()),
        );
    }
    Ok(SqlSpec {
        statements,
        tables,
        deny_tables,
        default_schema: schema,
        functions: raw.functions.map(|v| v.iter().map(|f| fold(f)).collect()),
        deny_functions,
    })
}

fn window(raw: RawTime) -> Result<TimeWindow, Invalid> {
    let clock = |s: &Spanned<String>, key: &str| -> Result<u16, Invalid> {
        let bad = || {
            invalid(
                s.span(),
                key,
                format!("{:?} is not a time of day such as \"09:00\"", s.get_ref()),
            )
        };
        let (h, m) = s.get_ref().split_once(':').ok_or_else(bad)?;
        let h: u16 = h.parse().map_err(|_| bad())?;
        let m: u16 = m.parse().map_err(|_| bad())?;
        if h > 24 || m > 59 || (h == 24 && m != 0) {
            return Err(bad());
        }
        Ok(h * 60 + m)
    };
    let from = clock(&raw.from, "rules.time.from")?;
    let to = clock(&raw.to, "rules.time.to")?;
    if from == to {
        return Err(invalid(
            raw.to.span(),
            "rules.time.to",
            "an empty window never matches; from and to must differ",
        ));
    }
    let mut days = Vec::new();
    for d in &raw.days {
        let n = match d.get_ref().to_ascii_lowercase().as_str() {
            "mon" | "monday" => 1,
            "tue" | "tuesday" => 2,
            "wed" | "wednesday" => 3,
            "thu" | "thursday" => 4,
            "fri" | "friday" => 5,
            "sat" | "saturday" => 6,
            "sun" | "sunday" => 7,
            _ => {
                return Err(invalid(
                    d.span(),
                    "rules.time.days",
                    format!("{:?} is not a weekday such as \"mon\"", d.get_ref()),
                ));
            }
        };
        days.push(n);
    }
    let tz_name = raw
        .tz
        .as_ref()
        .map_or("UTC".to_owned(), |t| t.get_ref().clone());
    let tz = jiff::tz::TimeZone::get(&tz_name).map_err(|e| {
        let span = raw.tz.as_ref().map_or(raw.from.span(), Spanned::span);
        invalid(
            span,
            "rules.time.tz",
            format!("{tz_name:?} is not a known time zone: {e}"),
        )
    })?;
    Ok(TimeWindow {
        days,
        from,
        to,
        tz,
        tz_name,
    })
}
