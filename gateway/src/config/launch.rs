//! `[[servers]]` entries with a `command`: MCP servers the gateway launches as children and
//! speaks to over stdio. Config holds the program, its arguments and an environment template;
//! secret values are rendered when the daemon starts (`crate::credentials::launch_env`).

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use toml::Spanned;

use super::{
    ServerName,
    credentials::{Part, SecretSpec},
    raw::Invalid,
};

/// Child processes one launched server may have at once (one per agent session).
pub const DEFAULT_MAX_SESSIONS: usize = 4;
/// Of those, how many one agent may hold.
pub const DEFAULT_MAX_SESSIONS_PER_AGENT: usize = 2;
/// How long a session's child may sit without a request before it is stopped.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// How to start one launched server.
#[derive(Clone, Debug)]
pub struct Launch {
    /// A program name looked up in `PATH`, or a path (relative ones from the config's directory).
    pub command: PathBuf,
    /// Arguments: public (any local user can read a process's command line), so no secrets.
    pub args: Vec<String>,
    /// The child's whole environment besides `PATH`: names and templates over secrets.
    pub env: Vec<(String, Vec<Part>)>,
    pub cwd: Option<PathBuf>,
    pub max_sessions: usize,
    /// Sessions one agent (principal) may hold, so that one cannot take every slot.
    pub max_sessions_per_agent: usize,
    pub idle_timeout: Duration,
}

impl Launch {
    /// What logs and `Display` show as the server's address.
    pub fn url(&self, name: &ServerName) -> url::Url {
        // "stdio:" plus a server name (restricted to [A-Za-z0-9_.-]) always parses.
        url::Url::parse(&format!("stdio:{}", name.as_str()))
            .unwrap_or_else(|_| url::Url::parse("stdio:server").expect("a constant URL"))
    }
}

/// The launch keys of one raw `[[servers]]` table.
#[derive(Debug)]
pub struct RawLaunch {
    pub command: Spanned<String>,
    pub args: Vec<String>,
    pub env: BTreeMap<String, Spanned<String>>,
    pub cwd: Option<Spanned<PathBuf>>,
    pub max_sessions: Option<usize>,
    pub max_sessions_per_agent: Option<usize>,
    pub idle_timeout: Option<Duration>,
}

fn env_name_ok(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Validates a launched server's keys against the defined secrets.
pub fn validate(
    name: &ServerName,
    raw: RawLaunch,
    secrets: &[SecretSpec],
    base: Option<&std::path::Path>,
) -> Result<Launch, Invalid> {
    let text = raw.command.get_ref();
    if text.trim().is_empty() || text.contains('\0') {
        return Err((
            Some(raw.command.span()),
            "servers.command".into(),
            format!("server {:?}: command names no program", name.as_str()),
        ));
    }
    let command = if text.contains('/') {
        super::resolve(base, std::path::Path::new(text))
    } else {
        PathBuf::from(text)
    };
    if raw.args.iter().any(|a| a.contains('\0')) {
        return Err((
            Some(raw.command.span()),
            "servers.args".into(),
            "an argument contains a NUL byte".into(),
        ));
    }
    let mut env = Vec::with_capacity(raw.env.len());
    for (key, value) in raw.env {
        let bad = |why: String| (Some(value.span()), format!("servers.env.{key}"), why);
        if !env_name_ok(&key) || key == "PATH" {
            return Err(bad(format!(
                "{key:?} is not a settable variable name (letters, digits, '_'; PATH is the gateway's)"
            )));
        }
        let parts = super::credentials::template(value.get_ref()).map_err(&bad)?;
        for part in &parts {
            match part {
                Part::Secret(s) if !secrets.iter().any(|d| &d.name == s) => {
                    return Err(bad(format!("no [[secrets]] entry is named {s:?}")));
                }
                Part::Text(t) if t.contains('\0') => {
                    return Err(bad("contains a NUL byte".into()));
                }
                _ => {}
            }
        }
        env.push((key, parts));
    }
    let max_sessions = raw.max_sessions.unwrap_or(DEFAULT_MAX_SESSIONS);
    Ok(Launch {
        command,
        args: raw.args,
        env,
        cwd: raw.cwd.map(|c| super::resolve(base, c.get_ref())),
        max_sessions,
        max_sessions_per_agent: raw
            .max_sessions_per_agent
            .unwrap_or(DEFAULT_MAX_SESSIONS_PER_AGENT)
            .min(max_sessions),
        idle_timeout: raw.idle_timeout.unwrap_or(DEFAULT_IDLE_TIMEOUT),
    })
}
