//! The policy engine: a decision for every JSON-RPC message, from compiled rules.
//!
//! Default deny; deny overrides allow; every decision names the rule that made it (or
//! `default-deny`). The engine is pure: a decision is a function of the question (agent,
//! process, token claims, server, method, target, arguments) and the clock, plus the token
//! buckets of rate limits, which the caller owns so that they outlive reloads.
//!
//! Levels, as the rules express them:
//! - agent: a rule's `agents` and `servers`. Any allow rule for an (agent, server) pair grants
//!   the session plumbing (initialize, ping, notifications, list methods, responses);
//! - tool: `tools`, `prompts`, `resources` and `methods` select targets (exact or glob);
//! - parameter: `params`, conditions on tools/call and prompts/get arguments ([`params`], [`sql`]);
//! - context: `time`, `rate`, `process`, `token` ([`context`]).

pub mod context;
pub mod elicitation;
pub mod flows;
pub mod lists;
pub mod params;
pub mod pins;
pub mod sql;

use std::{cell::OnceCell, collections::HashMap, fmt, sync::Arc, time::Instant};

use serde_json::Value;

pub use context::{Charge, RateLimiter};

use crate::{
    config::{
        Config,
        policy::{Effect, FlaggedAction, Mode, RuleSpec},
    },
    identity::ProcessIdentity,
    mcp,
};

/// The rule name of the default decision.
pub const DEFAULT_DENY: &str = "default-deny";

/// What kind of thing a message is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class<'a> {
    /// Session plumbing: granted with access to the server.
    Session,
    Tool(&'a str),
    Prompt(&'a str),
    Resource(&'a str),
    /// Any other method, including server->client requests (sampling, elicitation, roots).
    Method,
}

/// Requests that belong to every session with a server the agent may use.
const SESSION_REQUESTS: &[&str] = &[
    "initialize",
    "ping",
    "logging/setLevel",
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
];

/// A rule's context conditions: the attested process, the token, the client certificate, the
/// time windows.
fn context_holds(s: &crate::config::policy::RuleSpec, q: &Question<'_>) -> Result<(), String> {
    // A deny rule holds where the caller's process cannot be told apart from the one it names;
    // an allow rule needs the process shown to be one it names.
    if s.effect == Effect::Deny {
        context::process_may_match(&s.process, q.process)?;
    } else {
        context::process_matches(&s.process, q.process)?;
    }
    context::token_matches(&s.token, q.claims)?;
    context::certificate_matches(&s.certificate, q.certificate, q.process)?;
    context::in_windows(&s.time, q.now)
}

/// The rate-limit lane of a method: completions of a prompt or template have a bucket of their
/// own, so that typing in a client cannot use up the prompt itself.
fn rate_lane(method: &str) -> &'static str {
    if method == "completion/complete" {
        "completion"
    } else {
        ""
    }
}

impl<'a> Class<'a> {
    /// Classifies an agent->server message.
    pub fn of_client_message(m: &'a mcp::Message) -> Self {
        use mcp::{Kind, Target};
        match (m.kind, &m.target) {
            (Kind::Response | Kind::Error | Kind::Notification, _) => Class::Session,
            (_, Target::Tool { name, .. }) => Class::Tool(name),
            (_, Target::Prompt { name, .. }) => Class::Prompt(name),
            (_, Target::Resource { uri }) => Class::Resource(uri),
            (_, Target::Completion(mcp::Completes::Prompt(name))) => Class::Prompt(name),
            (_, Target::Completion(mcp::Completes::Resource(uri))) => Class::Resource(uri),
            (Kind::Request, Target::None) => Class::of_request_method(m.method()),
        }
    }

    /// Classifies an agent->server request that names no target, by its method.
    pub fn of_request_method(method: &str) -> Self {
        if SESSION_REQUESTS.contains(&method) {
            Class::Session
        } else {
            Class::Method
        }
    }

    /// Classifies a server->agent request or notification.
    pub fn of_server_message(m: &'a mcp::Message) -> Self {
        match m.kind {
            mcp::Kind::Request if m.method() != "ping" => Class::Method,
            _ => Class::Session,
        }
    }

    fn describe(&self, method: &str) -> String {
        match self {
            Class::Session => format!("use {method}"),
            Class::Tool(n) => format!("call tool {n:?}"),
            Class::Prompt(n) if method == "completion/complete" => {
                format!("complete an argument of prompt {n:?}")
            }
            Class::Prompt(n) => format!("get prompt {n:?}"),
            Class::Resource(u) => format!("{method} resource {u:?}"),
            Class::Method => format!("use method {method:?}"),
        }
    }

    fn target(&self) -> &str {
        match self {
            Class::Tool(n) | Class::Prompt(n) | Class::Resource(n) => n,
            Class::Session | Class::Method => "",
        }
    }
}

/// Arguments of a tools/call or prompts/get, read only where a condition points.
pub enum Arguments<'a> {
    /// From a message: the arguments' text is found on first use, then each pointer reads only
    /// its path (see [`mcp::message::raw_pointer`]).
    Message {
        source: Option<&'a mcp::message::Arguments>,
        text: OnceCell<Option<&'a str>>,
        /// The whole arguments, built once, only for deny conditions that read through strings.
        tree: OnceCell<Option<Value>>,
    },
    /// Already a tree (`policy explain`, tests).
    Parsed(Option<Value>),
}

impl<'a> Arguments<'a> {
    pub fn lazy(source: Option<&'a mcp::message::Arguments>) -> Self {
        Arguments::Message {
            source,
            text: OnceCell::new(),
            tree: OnceCell::new(),
        }
    }

    pub fn parsed(value: Option<Value>) -> Self {
        Arguments::Parsed(value)
    }

    /// Whether something is at a JSON pointer (nothing is built to find out).
    fn has(&self, pointer: &str) -> bool {
        match self {
            Arguments::Message { source, text, .. } => text
                .get_or_init(|| source.and_then(|s| s.raw()))
                .is_some_and(|raw| mcp::message::raw_pointer(raw, pointer).is_some()),
            Arguments::Parsed(v) => v.as_ref().is_some_and(|v| v.pointer(pointer).is_some()),
        }
    }

    /// The value at a JSON pointer.
    fn at(&self, pointer: &str) -> Option<std::borrow::Cow<'_, Value>> {
        match self {
            Arguments::Message { source, text, .. } => {
                let raw = (*text.get_or_init(|| source.and_then(|s| s.raw())))?;
                mcp::message::pointer_in(raw, pointer).map(std::borrow::Cow::Owned)
            }
            Arguments::Parsed(v) => v.as_ref()?.pointer(pointer).map(std::borrow::Cow::Borrowed),
        }
    }

    /// The value at a JSON pointer, reading on through JSON text held in strings (see
    /// [`params::pointer_through_strings`]); parses the whole arguments, so only for the rare
    /// deny condition whose pointer found nothing as sent.
    fn through_strings(&self, pointer: &str) -> params::Through {
        let tree = match self {
            Arguments::Message { source, text, tree } => tree
                .get_or_init(|| {
                    text.get_or_init(|| source.and_then(|s| s.raw()))
                        .and_then(|raw| serde_json::from_str::<Value>(raw).ok())
                })
                .as_ref(),
            Arguments::Parsed(v) => v.as_ref(),
        };
        match tree {
            Some(tree) => params::pointer_through_strings(tree, pointer),
            None => params::Through::Missing,
        }
    }
}

impl fmt::Debug for Arguments<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Arguments")
    }
}

/// Everything a decision depends on.
#[derive(Debug)]
pub struct Question<'a> {
    pub agent: &'a str,
    /// The kernel-attested process, when there is one.
    pub process: Option<&'a ProcessIdentity>,
    /// Claims of the caller's verified token, when one was presented.
    pub claims: Option<&'a Value>,
    /// The caller's verified client certificate, when it presented one.
    pub certificate: Option<&'a crate::identity::CertificateIdentity>,
    /// The identity rate limits are keyed on (never the MCP session).
    pub rate_key: RateKey<'a>,
    pub server: &'a str,
    pub method: &'a str,
    pub class: Class<'a>,
    pub arguments: Arguments<'a>,
    /// Defaults the tool's schema (its pinned definition) gives arguments an agent may omit, by
    /// JSON pointer: a deny rule's condition on an omitted one tests the default, which the
    /// server uses in its place. `None` while that schema is unknown (the tool not listed since
    /// the gateway started): a deny condition on an omitted argument then holds.
    pub defaults: Option<&'a [(String, Value)]>,
    /// What the caller was recently let through to, for `[rules.after]`. `None` where no
    /// gateway runs (`policy explain`): such a condition is then taken not to hold.
    pub calls: Option<&'a flows::CallLog>,
    pub now: jiff::Timestamp,
}

/// The identity rate limits are keyed on, formatted only when a rate-limited rule matches.
#[derive(Clone, Copy, Debug)]
pub enum RateKey<'a> {
    /// A named agent: one identity however many processes it runs.
    Agent(&'a str),
    /// An attested process of no named agent: its user and executable.
    Process {
        uid: u32,
        exe: Option<&'a std::path::Path>,
    },
    /// A caller known only by its address (made by [`RateKey::peer`]).
    Peer(std::net::IpAddr),
    /// A client certificate that names no agent.
    Certificate(&'a str),
}

impl RateKey<'_> {
    /// The key of a caller known only by its address: every loopback address is one caller
    /// (any local process may send from 127.0.0.2, 127.0.0.3, ... and would otherwise get a
    /// quota per address), and an IPv4-mapped IPv6 address is its IPv4 address.
    pub fn peer(ip: std::net::IpAddr) -> RateKey<'static> {
        let ip = ip.to_canonical();
        RateKey::Peer(if ip.is_loopback() {
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        } else {
            ip
        })
    }
}

impl std::fmt::Display for RateKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RateKey::Agent(name) => write!(f, "agent:{name}"),
            RateKey::Process { uid, exe } => write!(
                f,
                "uid:{uid}:{}",
                exe.unwrap_or(std::path::Path::new("?")).display()
            ),
            RateKey::Peer(ip) => write!(f, "ip:{ip}"),
            RateKey::Certificate(id) => write!(f, "cert:{id}"),
        }
    }
}

/// A decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// What enforce mode does with the message.
    pub allowed: bool,
    /// The mode of the server the message is for.
    pub mode: Mode,
    pub rule: Arc<str>,
    /// For denials: the message for the agent, naming the rule and what to ask for.
    pub reason: String,
    /// The token the allowing rule's rate limit took, to give back if the message is refused
    /// after all, unsent.
    pub charge: Option<Charge>,
}

/// How one rule fared, for `agentgate policy explain`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    pub rule: String,
    pub origin: String,
    pub effect: Effect,
    /// "matched", or why it did not.
    pub outcome: String,
}

#[derive(Debug)]
struct Rule {
    spec: RuleSpec,
    name: Arc<str>,
}

/// Kinds of target in the exact-name index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Tool,
    Prompt,
    Resource,
    Method,
}

#[derive(Debug, Default)]
struct ServerIndex {
    /// Rules naming the target exactly, by kind (tool, prompt, resource, method) and name.
    exact: [HashMap<Box<str>, Vec<u32>>; 4],
    /// Rules checked for every message of a kind: those that cover the whole server, select
    /// methods by glob (methods apply to every kind), or select that kind by glob.
    generic: [Vec<u32>; 4],
    /// Allow rules for this server: any of them grants session plumbing.
    access: Vec<u32>,
}

/// A compiled policy.
#[derive(Debug)]
pub struct Policy {
    rules: Vec<Rule>,
    mode: Mode,
    server_modes: HashMap<String, Mode>,
    index: HashMap<String, ServerIndex>,
    /// What to do with tool definitions that carry hidden text.
    pub flagged: FlaggedAction,
    /// Whether some deny rule has parameter conditions (which may read schema defaults).
    pub deny_params: bool,
    /// The `[rules.after]` conditions of every rule: which calls are worth remembering.
    afters: Vec<crate::config::policy::AfterSpec>,
}

/// Why a rule does not decide a question.
enum Miss {
    /// Its selectors do not cover the question.
    NotApplicable(String),
    /// It covers the question, but a condition does not hold.
    Condition(String),
}

impl Policy {
    /// Compiles the policy of a validated config.
    pub fn compile(config: &Config) -> Self {
        let pc = &config.policy;
        let rules: Vec<Rule> = pc
            .rules
            .iter()
            .map(|spec| Rule {
                name: Arc::from(spec.name.as_str()),
                spec: spec.clone(),
            })
            .collect();
        let mut index = HashMap::new();
        let mut server_modes = HashMap::new();
        for server in &config.servers {
            let name = server.name.as_str();
            server_modes.insert(name.to_owned(), server.policy_mode.unwrap_or(pc.mode));
            let mut si = ServerIndex::default();
            for (i, rule) in rules.iter().enumerate() {
                let s = &rule.spec;
                if !s.servers.iter().any(|p| p.matches(name)) {
                    continue;
                }
                let i = i as u32;
                if s.effect == Effect::Allow {
                    si.access.push(i);
                }
                let lists = [
                    (Kind::Tool, &s.tools),
                    (Kind::Prompt, &s.prompts),
                    (Kind::Resource, &s.resources),
                    (Kind::Method, &s.methods),
                ];
                let globs = |l: &Option<Vec<_>>| {
                    l.as_ref()
                        .is_some_and(|l: &Vec<crate::config::policy::Pattern>| {
                            l.iter().any(|p| !p.is_exact())
                        })
                };
                if s.whole_server() || globs(&s.methods) {
                    for g in &mut si.generic {
                        g.push(i);
                    }
                    continue;
                }
                for (kind, list) in &lists {
                    if globs(list) {
                        si.generic[*kind as usize].push(i);
                    }
                }
                for (kind, list) in lists {
                    for p in list.iter().flatten() {
                        let v = si.exact[kind as usize]
                            .entry(Box::from(p.as_str()))
                            .or_default();
                        if v.last() != Some(&i) {
                            v.push(i);
                        }
                    }
                }
            }
            index.insert(name.to_owned(), si);
        }
        let deny_params = rules
            .iter()
            .any(|r| r.spec.effect == Effect::Deny && !r.spec.params.is_empty());
        let afters = rules.iter().filter_map(|r| r.spec.after.clone()).collect();
        Self {
            rules,
            mode: pc.mode,
            server_modes,
            index,
            flagged: pc.flagged,
            deny_params,
            afters,
        }
    }

    /// The keys of the `[rules.after]` conditions that name a call of `tool` on `server` (what
    /// the call log remembers of it).
    pub fn after_keys(&self, server: &str, tool: &str) -> Vec<Arc<str>> {
        let mut keys: Vec<Arc<str>> = self
            .afters
            .iter()
            .filter(|a| a.covers(server, tool))
            .map(|a| a.key.clone())
            .collect();
        keys.dedup();
        keys
    }

    /// The mode for a server.
    pub fn mode(&self, server: &str) -> Mode {
        self.server_modes.get(server).copied().unwrap_or(self.mode)
    }

    /// Decides, taking a token from the rate limit of the allowing rule.
    pub fn decide(&self, q: &Question<'_>, limiter: &RateLimiter) -> Verdict {
        self.evaluate(q, Some(limiter), None)
    }

    /// Decides without touching rate limits, and reports how every rule fared.
    pub fn explain(&self, q: &Question<'_>) -> (Verdict, Vec<Trace>) {
        let mut trace = Vec::new();
        let verdict = self.evaluate(q, None, Some(&mut trace));
        (verdict, trace)
    }

    /// Whether an agent may see a tool, prompt or resource in a list: some allow rule covers
    /// it for the agent (conditions aside, since they depend on the call), and no deny rule
    /// without conditions covers it.
    pub fn visible(&self, agent: &str, server: &str, class: Class<'_>, method: &str) -> bool {
        let Some(si) = self.index.get(server) else {
            return false;
        };
        let mut allowed = false;
        for i in self.candidates(si, class, method) {
            let rule = &self.rules[i as usize];
            if !rule.spec.agents.iter().any(|p| p.matches(agent))
                || !applies(&rule.spec, class, method)
            {
                continue;
            }
            match rule.spec.effect {
                Effect::Deny if !rule.spec.conditional() => return false,
                Effect::Deny => {}
                Effect::Allow => allowed = true,
            }
        }
        allowed
    }

    fn candidates(&self, si: &ServerIndex, class: Class<'_>, method: &str) -> Vec<u32> {
        let kind = match class {
            Class::Tool(_) => Some(Kind::Tool),
            Class::Prompt(_) => Some(Kind::Prompt),
            Class::Resource(_) => Some(Kind::Resource),
            Class::Session | Class::Method => None,
        };
        let generic = &si.generic[kind.unwrap_or(Kind::Method) as usize];
        let by_name = kind.and_then(|k| si.exact[k as usize].get(class.target()));
        let by_method = si.exact[Kind::Method as usize].get(method);
        let sources = [Some(generic), by_name, by_method];
        let mut out: Vec<u32> = Vec::with_capacity(sources.iter().flatten().map(|v| v.len()).sum());
        let mut non_empty = 0;
        for v in sources.into_iter().flatten().filter(|v| !v.is_empty()) {
            out.extend_from_slice(v);
            non_empty += 1;
        }
        if non_empty > 1 {
            // Rules are tried in file order, each once.
            out.sort_unstable();
            out.dedup();
        }
        out
    }

    fn evaluate(
        &self,
        q: &Question<'_>,
        limiter: Option<&RateLimiter>,
        mut trace: Option<&mut Vec<Trace>>,
    ) -> Verdict {
        let mode = self.mode(q.server);
        let what = || q.class.describe(q.method);
        let Some(si) = self.index.get(q.server) else {
            return Verdict {
                allowed: false,
                charge: None,
                mode,
                rule: Arc::from(DEFAULT_DENY),
                reason: format!(
                    "agentgate policy: no server named {:?} is configured",
                    q.server
                ),
            };
        };
        let candidates = self.candidates(si, q.class, q.method);
        let tracing = trace.is_some();
        let mut note = |rule: &Rule, outcome: String| {
            if let Some(t) = trace.as_deref_mut() {
                t.push(Trace {
                    rule: rule.spec.name.clone(),
                    origin: rule.spec.origin.clone(),
                    effect: rule.spec.effect,
                    outcome,
                });
            }
        };
        // Deny rules first: any that matches decides.
        let mut denied: Option<Verdict> = None;
        let mut denied_outright = false;
        for &i in &candidates {
            let rule = &self.rules[i as usize];
            if rule.spec.effect != Effect::Deny {
                continue;
            }
            match self.matches(rule, q) {
                Ok(unknown) => {
                    // Held because the default of an omitted argument is unknown: say how the
                    // agent gets past that, if the default would not match.
                    let unknown = unknown.map(|pointer| {
                        format!(
                            " The argument {pointer} was omitted, and the gateway does not know the input schema of the tool's pinned definition, so neither the default the server uses in its place: send the argument, or list the server's tools (tools/list) and call again."
                        )
                    });
                    note(
                        rule,
                        match &unknown {
                            Some(_) => "matched: an omitted argument's default is unknown".into(),
                            None => "matched".into(),
                        },
                    );
                    // A rule that matched outright names the refusal over one that might not
                    // have, whose advice would not help.
                    let outright = unknown.is_none();
                    if denied.is_none() || (outright && !denied_outright) {
                        denied_outright = outright;
                        let ask = rule.spec.message.clone().unwrap_or_else(|| {
                            "Ask an administrator to change the policy if you need this.".into()
                        });
                        let ask = format!("{ask}{}", unknown.unwrap_or_default());
                        denied = Some(Verdict {
                            allowed: false,
                            charge: None,
                            mode,
                            rule: rule.name.clone(),
                            reason: format!(
                                "agentgate policy: rule {:?} denies agent {:?} to {} on server {:?}. {ask}",
                                rule.spec.name,
                                q.agent,
                                what(),
                                q.server
                            ),
                        });
                        if !tracing && outright {
                            break;
                        }
                    }
                }
                Err(Miss::NotApplicable(why) | Miss::Condition(why)) => note(rule, why),
            }
        }
        if let Some(v) = denied {
            return v;
        }
        if q.class == Class::Session {
            // Access to the server goes with a rule's caller and context conditions (who,
            // which process, token, certificate, when); its parameter conditions and rate are
            // for the calls it allows.
            for &i in &si.access {
                let rule = &self.rules[i as usize];
                if rule.spec.agents.iter().any(|p| p.matches(q.agent))
                    && context_holds(&rule.spec, q).is_ok()
                {
                    note(rule, "matched: grants access to the server".into());
                    return Verdict {
                        allowed: true,
                        charge: None,
                        mode,
                        rule: rule.name.clone(),
                        reason: String::new(),
                    };
                }
            }
        }
        let mut misses: Vec<String> = Vec::new();
        for &i in &candidates {
            let rule = &self.rules[i as usize];
            if rule.spec.effect != Effect::Allow {
                continue;
            }
            match self.matches(rule, q) {
                Ok(_) => {
                    let charge = match (&rule.spec.rate, limiter) {
                        (Some(rate), Some(limiter)) => {
                            let taken = limiter.take(
                                rate,
                                &rule.spec.name,
                                &q.rate_key.to_string(),
                                (rate_lane(q.method), q.class.target()),
                                Instant::now(),
                            );
                            if taken.is_none() {
                                note(rule, "matched, but its rate limit is exhausted".into());
                                return Verdict {
                                    allowed: false,
                                    charge: None,
                                    mode,
                                    rule: rule.name.clone(),
                                    reason: format!(
                                        "agentgate policy: rule {:?} allows {} requests per {} to {}, and agent {:?} has used them; retry later or ask for a higher limit.",
                                        rule.spec.name,
                                        rate.requests,
                                        humantime::format_duration(rate.per),
                                        what(),
                                        q.agent
                                    ),
                                };
                            }
                            taken
                        }
                        _ => None,
                    };
                    note(rule, "matched".into());
                    return Verdict {
                        allowed: true,
                        charge,
                        mode,
                        rule: rule.name.clone(),
                        reason: String::new(),
                    };
                }
                Err(Miss::Condition(why)) => {
                    misses.push(format!("rule {:?} did not apply: {why}", rule.spec.name));
                    note(rule, why);
                }
                Err(Miss::NotApplicable(why)) => note(rule, why),
            }
        }
        let detail = if misses.is_empty() {
            String::new()
        } else {
            format!(" ({})", misses.join("; "))
        };
        Verdict {
            allowed: false,
            charge: None,
            mode,
            rule: Arc::from(DEFAULT_DENY),
            reason: format!(
                "agentgate policy: no rule allows agent {:?} to {} on server {:?}{detail}. Ask an administrator for a rule that allows it.",
                q.agent,
                what(),
                q.server
            ),
        }
    }

    /// Whether `rule` covers `q`. A deny rule's match names the omitted argument, if any, whose
    /// condition holds only because its default is unknown.
    fn matches(&self, rule: &Rule, q: &Question<'_>) -> Result<Option<String>, Miss> {
        let s = &rule.spec;
        if !s.agents.iter().any(|p| p.matches(q.agent)) {
            return Err(Miss::NotApplicable(format!("not for agent {:?}", q.agent)));
        }
        if !applies(s, q.class, q.method) {
            return Err(Miss::NotApplicable("does not select this target".into()));
        }
        context_holds(s, q).map_err(Miss::Condition)?;
        if let Some(after) = &s.after {
            let names = || {
                after
                    .tools
                    .iter()
                    .map(|p| format!("{:?}", p.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            // A deny rule counts calls the policy let through, an allow rule calls that ran.
            let seen = if s.effect == Effect::Deny {
                flows::Seen::Decided
            } else {
                flows::Seen::Sent
            };
            let called = q
                .calls
                .map(|log| log.called(&q.rate_key.to_string(), after, seen, Instant::now()));
            match called {
                Some(Some(true)) => {}
                // Whether such a call was made is not known (the call log was full): a deny
                // rule holds, an allow rule does not.
                Some(None) if s.effect == Effect::Deny => {}
                Some(None) => {
                    return Err(Miss::Condition(
                        "whether the caller made such a call is not known (too many callers to remember)".into(),
                    ));
                }
                Some(Some(false)) => {
                    return Err(Miss::Condition(format!(
                        "the caller called none of {} in the last {}",
                        names(),
                        humantime::format_duration(after.within)
                    )));
                }
                None => {
                    return Err(Miss::Condition(format!(
                        "holds only after a call of {} (which the running gateway knows, not explain)",
                        names()
                    )));
                }
            }
        }
        let mut unknown = None;
        if matches!(q.class, Class::Tool(_) | Class::Prompt(_)) {
            // A deny rule sees what the server may read, not only what was sent.
            let lax = s.effect == Effect::Deny;
            if lax && q.method == "completion/complete" {
                // A completion carries the argument being typed, not the prompt's arguments:
                // a deny rule's conditions on those cannot be ruled out, so they hold. (An
                // allow rule's fail below, for want of arguments.)
                return Ok(None);
            }
            for p in &s.params {
                if let crate::config::policy::Matcher::Present(want) = p.matcher {
                    // Presence needs no value: do not build one (it may be large). Reading
                    // through strings only adds presence, so it serves `present = true` alone.
                    let present = q.arguments.has(&p.pointer)
                        || (lax
                            && want
                            && q.arguments.through_strings(&p.pointer) != params::Through::Missing);
                    params::check_value(p, present.then_some(&Value::Null))
                        .map_err(Miss::Condition)?;
                    continue;
                }
                let value = q.arguments.at(&p.pointer);
                if lax {
                    let value = match value {
                        Some(v) => Some(v),
                        None => match q.arguments.through_strings(&p.pointer) {
                            params::Through::Found(v) => Some(std::borrow::Cow::Owned(v)),
                            // Omitted: the server uses the schema's default, if it has one;
                            // of several (alternatives), any one may be the one it takes.
                            params::Through::Missing => match q.defaults {
                                Some(defaults) => {
                                    let candidates = schema_defaults(defaults, &p.pointer, |at| {
                                        q.arguments.has(at)
                                    });
                                    if candidates.len() > 1 {
                                        if candidates
                                            .iter()
                                            .any(|v| params::check_value_lax(p, Some(v)).is_ok())
                                        {
                                            continue;
                                        }
                                        return Err(Miss::Condition(format!(
                                            "no default the schema gives {} ({} alternatives) matches",
                                            p.pointer,
                                            candidates.len()
                                        )));
                                    }
                                    candidates.into_iter().next().map(std::borrow::Cow::Owned)
                                }
                                // The schema, and so whether the server fills in a default
                                // that matches, is unknown: the deny holds.
                                None => {
                                    unknown.get_or_insert_with(|| p.pointer.clone());
                                    continue;
                                }
                            },
                            // What the server will read there is unknown: the deny holds.
                            params::Through::Unreadable => continue,
                        },
                    };
                    params::check_value_lax(p, value.as_deref()).map_err(Miss::Condition)?;
                } else {
                    params::check_value(p, value.as_deref()).map_err(Miss::Condition)?;
                }
            }
        } else {
            for p in &s.params {
                params::check_value(p, None).map_err(Miss::Condition)?;
            }
        }
        Ok(unknown)
    }
}

/// What the server may read at `pointer` when the agent omits it: the default of each property
/// on the way that has one (`/options/mode` inside the default of `options`, `/paths/0` inside
/// that of `paths`), keys compared in any letter case as a deny rule reads arguments. Several
/// where properties at several depths have one (which applies depends on how much of the way
/// the agent sent: `options` omitted, or sent without `mode`), or where the schema gives
/// alternatives their own. An enclosing property the agent sent has no say (`sent`).
fn schema_defaults(
    defaults: &[(String, Value)],
    pointer: &str,
    sent: impl Fn(&str) -> bool,
) -> Vec<Value> {
    defaults
        .iter()
        .filter_map(|(at, value)| {
            let head = pointer.get(..at.len())?;
            let rest = &pointer[at.len()..];
            if !crate::mcp::json::same_folded(head, at) {
                return None;
            }
            match rest {
                "" => Some(value.clone()),
                _ if rest.starts_with('/') && !sent(at) => value.pointer(rest).cloned(),
                _ => None,
            }
        })
        .collect()
}

/// Whether a rule's selectors cover a message (agents aside).
fn applies(s: &RuleSpec, class: Class<'_>, method: &str) -> bool {
    if s.whole_server() {
        return true;
    }
    let any = |l: &Option<Vec<crate::config::policy::Pattern>>, name: &str| {
        l.as_ref()
            .is_some_and(|l| l.iter().any(|p| p.matches(name)))
    };
    let by_kind = match class {
        Class::Tool(n) => any(&s.tools, n),
        Class::Prompt(n) => any(&s.prompts, n),
        Class::Resource(u) => any(&s.resources, u),
        Class::Session | Class::Method => false,
    };
    by_kind || any(&s.methods, method)
}

#[cfg(test)]
mod tests;

/// The live policy: swapped whole on reload, read without locks on every message.
#[derive(Debug)]
pub struct Engine {
    policy: arc_swap::ArcSwap<Policy>,
    pins: arc_swap::ArcSwap<pins::Pins>,
    pub limiter: RateLimiter,
    /// Recent calls, for `[rules.after]`.
    pub calls: flows::CallLog,
    /// Held through a reload, from reading the file: a signal and the admin API may ask at
    /// once, and the file read last must be the policy that stays.
    reloading: std::sync::Mutex<()>,
}

/// Why a reload was refused (the old policy keeps serving).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the gateway runs on the embedded default config; there is no file to reload")]
    NoFile,
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Pins(#[from] pins::PinError),
}

impl Engine {
    pub fn new(config: &Config) -> Result<Self, pins::PinError> {
        let pins = pins::Pins::load(config.policy.pins_file.clone(), &config.policy.pins)?;
        Ok(Self {
            policy: arc_swap::ArcSwap::from_pointee(Policy::compile(config)),
            pins: arc_swap::ArcSwap::from_pointee(pins),
            limiter: RateLimiter::default(),
            calls: flows::CallLog::default(),
            reloading: std::sync::Mutex::new(()),
        })
    }

    pub fn policy(&self) -> Arc<Policy> {
        self.policy.load_full()
    }

    pub fn pins(&self) -> Arc<pins::Pins> {
        self.pins.load_full()
    }

    /// Replaces the policy with the one in `config` (its rules, modes and pins).
    fn replace(&self, config: &Config) -> Result<(), pins::PinError> {
        let policy = Policy::compile(config);
        let pins = pins::Pins::succeed(
            &self.pins.load_full(),
            config.policy.pins_file.clone(),
            &config.policy.pins,
        )?;
        self.pins.store(pins);
        self.policy.store(Arc::new(policy));
        Ok(())
    }

    /// Re-reads the config file and replaces the policy; on any error the old one stays.
    pub fn reload(&self, source: Option<&std::path::Path>) -> Result<usize, ReloadError> {
        let path = source.ok_or(ReloadError::NoFile)?;
        // From reading the file on: a reload that read it earlier must not finish later.
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let config = Config::load(path)?;
        self.replace(&config)?;
        Ok(config.policy.rules.len())
    }
}
