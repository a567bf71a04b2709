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
    /// Whom the child runs as (unset: the gateway's own user).
    pub user: Option<RunAs>,
    pub max_sessions: usize,
    /// Sessions one agent (principal) may hold, so that one cannot take every slot.
    pub max_sessions_per_agent: usize,
    pub idle_timeout: Duration,
}

/// A user for launched children: the gateway sets their uid and gid, and they lose the
/// gateway's supplementary groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl RunAs {
    /// A user name from the passwd database, or a numeric uid (with the gid of its passwd
    /// entry, or the same number when it has none).
    fn parse(text: &str, passwd: &str) -> Result<Self, String> {
        let entry = |matches: &dyn Fn(&[&str]) -> bool| {
            passwd.lines().find_map(|line| {
                let fields: Vec<&str> = line.split(':').collect();
                if fields.len() < 4 || !matches(&fields) {
                    return None;
                }
                Some((
                    fields[0].to_owned(),
                    fields[2].parse::<u32>().ok()?,
                    fields[3].parse::<u32>().ok()?,
                ))
            })
        };
        if let Ok(uid) = text.parse::<u32>() {
            let known = entry(&|f| f[2].parse::<u32>().ok() == Some(uid));
            return Ok(match known {
                Some((name, _, gid)) => Self { name, uid, gid },
                None => Self {
                    name: text.to_owned(),
                    uid,
                    gid: uid,
                },
            });
        }
        entry(&|f| f[0] == text)
            .map(|(name, uid, gid)| Self { name, uid, gid })
            .ok_or_else(|| format!("no user {text:?} in /etc/passwd (give a name there, or a uid)"))
    }
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
    pub user: Option<Spanned<String>>,
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
    let user = match &raw.user {
        None => None,
        Some(u) => {
            let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
            Some(
                RunAs::parse(u.get_ref().trim(), &passwd)
                    .map_err(|why| (Some(u.span()), "servers.user".to_owned(), why))?,
            )
        }
    };
    let max_sessions = raw.max_sessions.unwrap_or(DEFAULT_MAX_SESSIONS);
    Ok(Launch {
        command,
        args: raw.args,
        env,
        cwd: raw.cwd.map(|c| super::resolve(base, c.get_ref())),
        user,
        max_sessions,
        max_sessions_per_agent: raw
            .max_sessions_per_agent
            .unwrap_or(DEFAULT_MAX_SESSIONS_PER_AGENT)
            .min(max_sessions),
        idle_timeout: raw.idle_timeout.unwrap_or(DEFAULT_IDLE_TIMEOUT),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_as_takes_a_passwd_name_or_a_uid() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\n\
                      nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
                      mcp:x:1001:1002::/home/mcp:/bin/sh\n\
                      broken:x:12\n";
        let user = |name: &str, uid, gid| RunAs {
            name: name.to_owned(),
            uid,
            gid,
        };
        assert_eq!(RunAs::parse("mcp", passwd), Ok(user("mcp", 1001, 1002)));
        assert_eq!(
            RunAs::parse("nobody", passwd),
            Ok(user("nobody", 65534, 65534))
        );
        assert_eq!(RunAs::parse("1001", passwd), Ok(user("mcp", 1001, 1002)));
        assert_eq!(RunAs::parse("4242", passwd), Ok(user("4242", 4242, 4242)));
        for unknown in ["nosuch", "broken", "", "mcp:x"] {
            let e = RunAs::parse(unknown, passwd).unwrap_err();
            assert!(e.contains("no user"), "{unknown}: {e}");
        }
    }
}
