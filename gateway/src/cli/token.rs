//! `agentgate token issue|revoke|jwks`: the token service from the command line.

use std::{path::PathBuf, time::Duration};

use clap::Subcommand;

use crate::{
    EXIT_BAD_CONFIG, EXIT_UNAVAILABLE,
    config::Config,
    tokens::{self, TokenService},
};

#[derive(Debug, Subcommand)]
pub enum Action {
    /// Sign a short-lived token naming an agent, optionally scoped to servers and tools. Prints
    /// the token (with --json, also its claims). Needs read access to tokens.key_file, the key
    /// the gateway made (the CLI makes none: exit 69 when it is missing).
    Issue {
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The agent the token names (its `sub`).
        #[arg(long)]
        agent: String,
        /// A server it may reach (repeat; none: any the policy allows).
        #[arg(long = "server", value_name = "NAME")]
        servers: Vec<String>,
        /// A tool it may call (repeat; none: any the policy allows).
        #[arg(long = "tool", value_name = "NAME")]
        tools: Vec<String>,
        /// Space-separated scopes, for `[rules.token] scopes`.
        #[arg(long)]
        scope: Option<String>,
        /// An argument constraint TOOL:POINTER=VALUE, e.g. `query:/table=customers` (repeat;
        /// several values for one TOOL:POINTER allow any of them).
        #[arg(long = "arg", value_name = "TOOL:POINTER=VALUE")]
        args: Vec<String>,
        /// Lifetime (default tokens.default_ttl, at most tokens.max_ttl), e.g. 15m.
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<Duration>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by its id (or the token itself); the gateway refuses it within a second.
    /// By --jti it needs no signing key, only the revocation list.
    Revoke {
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        #[arg(long, required_unless_present = "token", conflicts_with = "token")]
        jti: Option<String>,
        /// The token (its id and expiry are read from it).
        #[arg(long)]
        token: Option<String>,
    },
    /// Print the public key as a JWKS document (also at the admin API's /.well-known/jwks.json).
    Jwks {
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

fn tokens_config(config: Option<&std::path::Path>, verb: &str) -> Result<Config, i32> {
    let config = super::load(config).map_err(|e| super::bad_config(&e))?;
    if !config.tokens.enabled {
        eprintln!("agentgate token {verb}: tokens.enabled is false in this configuration");
        return Err(EXIT_BAD_CONFIG);
    }
    Ok(config)
}

/// The gateway's token service, from its existing key: the CLI never makes one (a mistyped
/// `key_file` would mint tokens, or print keys, that the gateway knows nothing of).
fn service(config: Option<&std::path::Path>, verb: &str) -> Result<(Config, TokenService), i32> {
    let config = tokens_config(config, verb)?;
    let key_file = &config.tokens.key_file;
    match key_file.try_exists() {
        Ok(true) => {}
        Ok(false) => {
            eprintln!(
                "agentgate token {verb}: {}: no signing key there; the gateway makes it when it first starts with tokens enabled (check tokens.key_file)",
                key_file.display()
            );
            return Err(EXIT_UNAVAILABLE);
        }
        Err(e) => {
            eprintln!("agentgate token {verb}: {}: {e}", key_file.display());
            return Err(EXIT_UNAVAILABLE);
        }
    }
    let service = TokenService::open(&config.tokens).map_err(|e| {
        eprintln!("agentgate token {verb}: {e}");
        EXIT_UNAVAILABLE
    })?;
    Ok((config, service))
}

pub fn main(action: Action) -> i32 {
    match action {
        Action::Issue {
            config,
            agent,
            servers,
            tools,
            scope,
            args,
            ttl,
            json,
        } => {
            let (config, service) = match service(config.as_deref(), "issue") {
                Ok(s) => s,
                Err(code) => return code,
            };
            if let Some(unknown) = servers.iter().find(|s| config.server(s).is_none()) {
                eprintln!("agentgate token issue: --server {unknown}: no such server");
                return EXIT_BAD_CONFIG;
            }
            let some = |v: Vec<String>| (!v.is_empty()).then_some(v);
            let mut constraints = tokens::ArgConstraints::new();
            for a in &args {
                let parsed = a.split_once(':').and_then(|(tool, rest)| {
                    let (pointer, value) = rest.split_once('=')?;
                    (!tool.is_empty() && pointer.starts_with('/')).then_some((tool, pointer, value))
                });
                let Some((tool, pointer, value)) = parsed else {
                    eprintln!(
                        "agentgate token issue: --arg {a:?}: write TOOL:POINTER=VALUE, e.g. query:/table=customers"
                    );
                    return EXIT_BAD_CONFIG;
                };
                constraints
                    .entry(tool.to_owned())
                    .or_default()
                    .entry(pointer.to_owned())
                    .or_default()
                    .push(value.to_owned());
            }
            let constraints = (!constraints.is_empty()).then_some(constraints);
            match service.issue_with(&agent, some(servers), some(tools), scope, constraints, ttl) {
                Ok((token, claims)) if json => {
                    println!(
                        "{}",
                        serde_json::json!({ "token": token, "claims": claims })
                    );
                    0
                }
                Ok((token, _)) => {
                    println!("{token}");
                    0
                }
                Err(e) => {
                    eprintln!("agentgate token issue: {e}");
                    EXIT_BAD_CONFIG
                }
            }
        }
        Action::Revoke { config, jti, token } => {
            // By id, the revocation list is all it takes (no signing key: whoever may revoke
            // need not be able to issue).
            let (config, jti, exp) = match (jti, token) {
                (Some(j), _) => match tokens_config(config.as_deref(), "revoke") {
                    Ok(c) => (c, j, 0),
                    Err(code) => return code,
                },
                (None, Some(t)) => {
                    let (config, service) = match service(config.as_deref(), "revoke") {
                        Ok(s) => s,
                        Err(code) => return code,
                    };
                    match service.verify_own(&t) {
                        Ok(v) => (config, v.jti.unwrap_or_default(), v.exp),
                        Err(e) => {
                            eprintln!("agentgate token revoke: --token: {e}; nothing to revoke");
                            return EXIT_BAD_CONFIG;
                        }
                    }
                }
                (None, None) => return EXIT_BAD_CONFIG,
            };
            match tokens::revoke(&config.tokens.revoked_file, &jti, exp) {
                Ok(()) => {
                    println!("revoked {jti}");
                    0
                }
                Err(e) => {
                    eprintln!("agentgate token revoke: {e}");
                    EXIT_UNAVAILABLE
                }
            }
        }
        Action::Jwks { config } => match service(config.as_deref(), "jwks") {
            Ok((_, service)) => {
                println!("{}", service.jwks());
                0
            }
            Err(code) => code,
        },
    }
}
