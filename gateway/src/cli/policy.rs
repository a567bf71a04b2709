//! `agentgate policy explain|pin|reload`.

use std::path::PathBuf;

use clap::Subcommand;

use super::{admin_request, bad_config, load};
use crate::{
    EXIT_BAD_CONFIG, EXIT_UNAVAILABLE,
    policy::{Arguments, Class, Policy, Question, pins},
};

/// Exit code of `explain` when the message would be denied.
pub const EXIT_DENIED: i32 = 1;

#[derive(Debug, Subcommand)]
pub enum Action {
    /// Print the decision on one message and how every rule fared, without a running daemon.
    /// A deny condition on an argument --args leaves out tests the default the pin file keeps
    /// for the tool's pinned definition; when it keeps none, the default is unknown and the
    /// condition holds, as in a restarted gateway before the tool is listed.
    /// Exits 0 when allowed, 1 when denied (in enforce mode, or would be in observe mode).
    Explain {
        /// Configuration file (the embedded default without it).
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        #[arg(long, value_name = "NAME")]
        agent: String,
        #[arg(long, value_name = "NAME")]
        server: String,
        /// A tools/call of this tool.
        #[arg(long, value_name = "NAME", group = "target")]
        tool: Option<String>,
        /// A prompts/get of this prompt (with `--method completion/complete`: a completion of
        /// one of its arguments).
        #[arg(long, value_name = "NAME", group = "target")]
        prompt: Option<String>,
        /// A resources/read of this URI (with `--method`: resources/subscribe,
        /// resources/unsubscribe, or completion/complete of a template's argument).
        #[arg(long, value_name = "URI", group = "target")]
        resource: Option<String>,
        /// Any other method (initialize, tools/list, sampling/createMessage, ...), or the method
        /// on the prompt or resource given.
        #[arg(long, value_name = "METHOD")]
        method: Option<String>,
        /// The arguments of the tool or prompt, as a JSON object.
        #[arg(long, value_name = "JSON")]
        args: Option<String>,
        /// Decide at this time (RFC 3339, e.g. 2026-11-23T10:00:00+01:00) instead of now.
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Accept the changed definition of a tool (the latest one the gateway saw), or pin a given
    /// hash, in the pin file; then ask a running gateway to reload.
    Pin {
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        #[arg(long, value_name = "NAME")]
        server: String,
        #[arg(long, value_name = "NAME")]
        tool: String,
        /// Pin this SHA-256 instead of the pending definition.
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
    },
    /// Ask the running gateway to reload its configuration's policy (as SIGHUP does).
    Reload {
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

/// What the live gateway would decide the message as: its class and method. Methods that act
/// on a tool, prompt or resource need it named, as the gateway decides them by it.
fn explained<'a>(
    tool: Option<&'a str>,
    prompt: Option<&'a str>,
    resource: Option<&'a str>,
    method: Option<&'a str>,
) -> Result<(Class<'a>, String), String> {
    let on = |class, default: &str, allowed: &[&str], flag: &str| match method {
        None => Ok((class, default.to_owned())),
        Some(m) if m == default || allowed.contains(&m) => Ok((class, m.to_owned())),
        Some(m) => Err(format!("--method {m} does not act on a {flag}")),
    };
    match (tool, prompt, resource, method) {
        (Some(t), ..) => on(Class::Tool(t), "tools/call", &[], "tool"),
        (_, Some(p), ..) => on(
            Class::Prompt(p),
            "prompts/get",
            &["completion/complete"],
            "prompt",
        ),
        (_, _, Some(r), _) => on(
            Class::Resource(r),
            "resources/read",
            &[
                "resources/subscribe",
                "resources/unsubscribe",
                "completion/complete",
            ],
            "resource",
        ),
        (_, _, _, Some(m)) => match m {
            "tools/call" => Err(format!("{m} is decided by its tool: give --tool NAME")),
            "prompts/get" => Err(format!("{m} is decided by its prompt: give --prompt NAME")),
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => Err(format!(
                "{m} is decided by its resource: give --resource URI"
            )),
            "completion/complete" => Err(format!(
                "{m} is decided as the prompt or resource template it completes: give --prompt NAME or --resource URI"
            )),
            _ => Ok((Class::of_request_method(m), m.to_owned())),
        },
        _ => Err("give one of --tool, --prompt, --resource or --method".into()),
    }
}

pub fn main(action: Action) -> i32 {
    match action {
        Action::Explain {
            config,
            agent,
            server,
            tool,
            prompt,
            resource,
            method,
            args,
            at,
            json,
        } => {
            let config = match load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => return bad_config(&e),
            };
            if config.server(&server).is_none() {
                eprintln!("agentgate policy explain: no server named {server:?} is configured");
                return EXIT_BAD_CONFIG;
            }
            let arguments = match args
                .as_deref()
                .map(serde_json::from_str::<serde_json::Value>)
            {
                None => None,
                Some(Ok(v)) if v.is_object() => Some(v),
                Some(_) => {
                    eprintln!("agentgate policy explain: --args must be a JSON object");
                    return EXIT_BAD_CONFIG;
                }
            };
            let now = match at.as_deref().map(str::parse::<jiff::Timestamp>) {
                None => jiff::Timestamp::now(),
                Some(Ok(t)) => t,
                Some(Err(e)) => {
                    eprintln!("agentgate policy explain: --at: {e}");
                    return EXIT_BAD_CONFIG;
                }
            };
            let (class, method_name) = match explained(
                tool.as_deref(),
                prompt.as_deref(),
                resource.as_deref(),
                method.as_deref(),
            ) {
                Ok(found) => found,
                Err(why) => {
                    eprintln!("agentgate policy explain: {why}");
                    return EXIT_BAD_CONFIG;
                }
            };
            let policy = Policy::compile(&config);
            // What a restarted gateway knows of the tool's defaults: what the pin file keeps.
            let pins = match pins::Pins::load(config.policy.pins_file.clone(), &config.policy.pins)
            {
                Ok(p) => p,
                Err(e) => {
                    eprintln!(
                        "agentgate policy explain: cannot read the pin file ({e}): the defaults of omitted arguments are taken as unknown"
                    );
                    match pins::Pins::load(None, &config.policy.pins) {
                        Ok(p) => p,
                        Err(e) => {
                            eprintln!("agentgate policy explain: {e}");
                            return EXIT_UNAVAILABLE;
                        }
                    }
                }
            };
            let declared = match class {
                Class::Tool(tool) => pins.declarations(&server, tool),
                _ => None,
            };
            let defaults = match class {
                Class::Tool(_) => declared.as_deref().and_then(|d| d.known_defaults()),
                _ => Some(&[][..]),
            };
            let q = Question {
                agent: &agent,
                process: None,
                claims: None,
                certificate: None,
                rate_key: crate::policy::RateKey::Agent(&agent),
                server: &server,
                method: &method_name,
                class,
                arguments: Arguments::parsed(arguments),
                defaults,
                calls: None,
                now,
            };
            let (verdict, trace) = policy.explain(&q);
            if json {
                let out = serde_json::json!({
                    "allowed": verdict.allowed,
                    "mode": verdict.mode.as_str(),
                    "rule": &*verdict.rule,
                    "reason": verdict.reason,
                    "rules": trace.iter().map(|t| serde_json::json!({
                        "rule": t.rule, "origin": t.origin,
                        "effect": format!("{:?}", t.effect).to_lowercase(), "outcome": t.outcome,
                    })).collect::<Vec<_>>(),
                });
                println!("{out}");
            } else {
                let word = match (verdict.allowed, verdict.mode) {
                    (true, _) => "ALLOW",
                    (false, crate::config::policy::Mode::Enforce) => "DENY",
                    (false, crate::config::policy::Mode::Observe) => {
                        "DENY (observe mode: would be forwarded)"
                    }
                };
                println!("decision: {word}");
                println!("rule:     {}", verdict.rule);
                if !verdict.reason.is_empty() {
                    println!("reason:   {}", verdict.reason);
                }
                if trace.is_empty() {
                    println!("no rule covers this server and target");
                } else {
                    println!("rules considered:");
                    for t in &trace {
                        println!(
                            "  {:<5} {:<24} {}  [{}]",
                            format!("{:?}", t.effect).to_lowercase(),
                            t.rule,
                            t.outcome,
                            t.origin
                        );
                    }
                }
            }
            if verdict.allowed { 0 } else { EXIT_DENIED }
        }
        Action::Pin {
            config,
            server,
            tool,
            sha256,
        } => {
            let config = match load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => return bad_config(&e),
            };
            if let Some(h) = &sha256
                && (h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                eprintln!("agentgate policy pin: --sha256 must be 64 hex digits");
                return EXIT_BAD_CONFIG;
            }
            let Some(path) = &config.policy.pins_file else {
                eprintln!(
                    "agentgate policy pin: policy.pins_file is empty: pins live in the daemon's memory only; write the pin into [[policy.pins]] instead"
                );
                return EXIT_BAD_CONFIG;
            };
            match pins::pin(
                path,
                &server,
                &tool,
                sha256.as_deref().map(str::to_ascii_lowercase).as_deref(),
            ) {
                Ok(hash) => println!("pinned {server}/{tool} at {hash} in {}", path.display()),
                Err(e) => {
                    eprintln!("agentgate policy pin: {e}");
                    return EXIT_UNAVAILABLE;
                }
            }
            if let Some(admin) = config.admin.address {
                match admin_request(admin, "POST", "/policy/reload") {
                    Ok((200, _)) => println!("the running gateway reloaded its policy"),
                    // The pin is written, but the running gateway still holds the tool back:
                    // a script must not read that as done.
                    Ok((status, body)) => {
                        eprintln!(
                            "the running gateway refused to reload ({status}): {}; the pin is written and applies at its next reload or start",
                            String::from_utf8_lossy(&body).trim()
                        );
                        return EXIT_UNAVAILABLE;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        println!("no gateway is running at {admin}; the pin applies when it starts")
                    }
                    Err(e) => {
                        eprintln!(
                            "cannot tell whether the gateway at {admin} reloaded ({e}); the pin is written and applies at its next reload or start"
                        );
                        return EXIT_UNAVAILABLE;
                    }
                }
            }
            0
        }
        Action::Reload { config } => {
            let config = match load(config.as_deref()) {
                Ok(c) => c,
                Err(e) => return bad_config(&e),
            };
            let Some(admin) = config.admin.address else {
                eprintln!(
                    "agentgate policy reload: the admin listener is disabled; send SIGHUP instead"
                );
                return EXIT_BAD_CONFIG;
            };
            match admin_request(admin, "POST", "/policy/reload") {
                Ok((200, body)) => {
                    println!("{}", String::from_utf8_lossy(&body).trim());
                    0
                }
                Ok((status, body)) => {
                    eprintln!(
                        "agentgate policy reload: refused ({status}): {}",
                        String::from_utf8_lossy(&body).trim()
                    );
                    EXIT_BAD_CONFIG
                }
                Err(e) => {
                    eprintln!(
                        "agentgate policy reload: cannot reach the admin API at {admin}: {e}"
                    );
                    EXIT_UNAVAILABLE
                }
            }
        }
    }
}
