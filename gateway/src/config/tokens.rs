//! `[tokens]`: the gateway's token service (short-lived JWTs it issues to agents and verifies
//! on their requests).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;
use toml::Spanned;

use super::raw::Invalid;

pub const DEFAULT_TOKEN_KEY: &str = "/var/lib/agentgate/token.key";
pub const DEFAULT_REVOKED: &str = "/var/lib/agentgate/revoked.json";
/// Longest `max_ttl` accepted: tokens are for just-in-time access.
pub const LONGEST_TTL: Duration = Duration::from_secs(24 * 3600);

/// The validated `[tokens]` table.
#[derive(Clone, Debug)]
pub struct TokensConfig {
    pub enabled: bool,
    /// Ed25519 signing key (created, mode 0600, when missing).
    pub key_file: PathBuf,
    pub issuer: String,
    pub audience: String,
    pub default_ttl: Duration,
    pub max_ttl: Duration,
    /// Revoked token ids, written by `agentgate token revoke`.
    pub revoked_file: PathBuf,
    /// Refuse requests that present no token (401).
    pub require: bool,
}

impl Default for TokensConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            key_file: PathBuf::from(DEFAULT_TOKEN_KEY),
            issuer: "agentgate".into(),
            audience: "agentgate".into(),
            default_ttl: Duration::from_secs(15 * 60),
            max_ttl: Duration::from_secs(3600),
            revoked_file: PathBuf::from(DEFAULT_REVOKED),
            require: false,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTokens {
    enabled: Option<bool>,
    key_file: Option<Spanned<String>>,
    issuer: Option<Spanned<String>>,
    audience: Option<Spanned<String>>,
    default_ttl: Option<Spanned<String>>,
    max_ttl: Option<Spanned<String>>,
    revoked_file: Option<Spanned<String>>,
    require: Option<bool>,
}

fn path(v: Option<Spanned<String>>, default: PathBuf, base: Option<&Path>) -> PathBuf {
    match v {
        Some(s) => {
            let p = PathBuf::from(s.into_inner());
            match base {
                Some(b) if p.is_relative() => b.join(p),
                _ => p,
            }
        }
        None => default,
    }
}

fn ttl(v: Option<Spanned<String>>, key: &str, default: Duration) -> Result<Duration, Invalid> {
    let Some(v) = v else { return Ok(default) };
    match humantime::parse_duration(v.get_ref()) {
        Ok(d) if !d.is_zero() && d <= LONGEST_TTL => Ok(d),
        Ok(_) => Err((
            Some(v.span()),
            key.to_owned(),
            "must be longer than zero and at most 24h".into(),
        )),
        Err(e) => Err((
            Some(v.span()),
            key.to_owned(),
            format!("{:?} is not a duration: {e}", v.get_ref()),
        )),
    }
}

impl RawTokens {
    pub fn validate(self, base: Option<&Path>) -> Result<TokensConfig, Invalid> {
        let d = TokensConfig::default();
        let text = |v: Option<Spanned<String>>, key: &str, default: String| match v {
            Some(s) if s.get_ref().is_empty() => Err((
                Some(s.span()),
                key.to_owned(),
                "must not be empty".to_owned(),
            )),
            Some(s) => Ok(s.into_inner()),
            None => Ok(default),
        };
        let default_ttl = ttl(self.default_ttl, "tokens.default_ttl", d.default_ttl)?;
        let max_ttl = ttl(self.max_ttl, "tokens.max_ttl", d.max_ttl)?;
        if default_ttl > max_ttl {
            return Err((
                None,
                "tokens.default_ttl".into(),
                "is longer than tokens.max_ttl".into(),
            ));
        }
        let enabled = self.enabled.unwrap_or(d.enabled);
        let require = self.require.unwrap_or(d.require);
        if require && !enabled {
            return Err((
                None,
                "tokens.require".into(),
                "needs tokens.enabled = true".into(),
            ));
        }
        Ok(TokensConfig {
            enabled,
            key_file: path(self.key_file, d.key_file, base),
            issuer: text(self.issuer, "tokens.issuer", d.issuer)?,
            audience: text(self.audience, "tokens.audience", d.audience)?,
            default_ttl,
            max_ttl,
            revoked_file: path(self.revoked_file, d.revoked_file, base),
            require,
        })
    }
}
