//! `[tokens]`: the gateway's token service (short-lived JWTs it issues to agents and verifies
//! on their requests).

use std::{
    ops::Range,
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
    /// External identity providers whose JWTs are accepted too.
    pub issuers: Vec<IssuerConfig>,
    /// The `[[secrets]]` entry an admin-API caller must present to issue tokens (`POST
    /// /tokens`); `None`: issuance over the admin API is off.
    pub admin_secret: Option<String>,
    /// The gateway's URL as agents reach it: with it, OAuth Protected Resource Metadata
    /// (RFC 9728) names the issuers whose `issuer` is a URL as authorization servers.
    pub resource: Option<url::Url>,
}

/// Most clock skew an external issuer may be granted.
pub const MAX_LEEWAY: Duration = Duration::from_secs(30);

/// `[[tokens.issuers]]`: an external OIDC issuer whose JWTs name agents.
#[derive(Clone, Debug)]
pub struct IssuerConfig {
    /// The exact `iss` its tokens carry.
    pub issuer: String,
    /// The `aud` its tokens must carry for this gateway.
    pub audience: String,
    pub jwks: JwksSource,
    /// Accepted algorithms (never HMAC: a public key must not double as a shared secret).
    pub algorithms: Vec<jsonwebtoken::Algorithm>,
    /// The claim that names the agent.
    pub agent_claim: String,
    /// The agents this issuer may name (`None`: any). Without it, an IdP subject that happens
    /// to share a local agent's name gets that agent's policy.
    pub agents: Option<Vec<String>>,
    pub leeway: Duration,
    /// How long fetched keys are trusted before they are fetched again, so that a key the
    /// issuer withdrew stops verifying tokens.
    pub jwks_max_age: Duration,
    /// The furthest in the future a token's `exp` may lie: a token cannot outlive it, however
    /// long its issuer made it (and one without `jti` cannot be revoked).
    pub max_lifetime: Duration,
    /// Whether its tokens must be typed `at+jwt` (RFC 9068): an ID token (typed `JWT`, or not
    /// at all) whose audience happens to be this gateway's then cannot pass for an access token.
    pub require_at_jwt: bool,
}

/// Default of `max_lifetime`.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Default of `jwks_max_age`.
pub const DEFAULT_JWKS_MAX_AGE: Duration = Duration::from_secs(300);

/// Where an issuer's signing keys come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JwksSource {
    File(PathBuf),
    Url(url::Url),
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
            issuers: Vec::new(),
            admin_secret: None,
            resource: None,
        }
    }
}

impl TokensConfig {
    /// The issuers an OAuth client can log in at: those whose `issuer` is an issuer identifier
    /// as RFC 8414 2 has it (https, no query, no fragment).
    pub fn authorization_servers(&self) -> impl Iterator<Item = &str> {
        self.issuers
            .iter()
            .map(|i| i.issuer.as_str())
            .filter(|iss| {
                url::Url::parse(iss).is_ok_and(|u| {
                    u.scheme() == "https" && u.query().is_none() && u.fragment().is_none()
                })
            })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIssuer {
    issuer: Spanned<String>,
    audience: Spanned<String>,
    jwks_file: Option<Spanned<String>>,
    jwks_url: Option<Spanned<String>>,
    algorithms: Spanned<Vec<String>>,
    #[serde(default)]
    agent_claim: Option<String>,
    #[serde(default)]
    agents: Option<Vec<String>>,
    #[serde(default)]
    leeway: Option<Spanned<String>>,
    #[serde(default)]
    jwks_max_age: Option<Spanned<String>>,
    #[serde(default)]
    max_lifetime: Option<Spanned<String>>,
    #[serde(default)]
    require_at_jwt: bool,
}

impl RawIssuer {
    fn validate(self, base: Option<&Path>) -> Result<IssuerConfig, Invalid> {
        let err = |span: Range<usize>, key: &str, m: String| (Some(span), key.to_owned(), m);
        if self.issuer.get_ref().is_empty() || self.audience.get_ref().is_empty() {
            return Err(err(
                self.issuer.span(),
                "tokens.issuers",
                "issuer and audience must not be empty".into(),
            ));
        }
        let jwks = match (self.jwks_file, self.jwks_url) {
            (Some(f), None) => JwksSource::File(path(Some(f), PathBuf::new(), base)),
            (None, Some(u)) => {
                let url = url::Url::parse(u.get_ref()).map_err(|e| {
                    err(
                        u.span(),
                        "tokens.issuers.jwks_url",
                        format!("not a URL: {e}"),
                    )
                })?;
                let loopback = super::loopback_host(&url);
                if !(url.scheme() == "https" || (url.scheme() == "http" && loopback)) {
                    return Err(err(
                        u.span(),
                        "tokens.issuers.jwks_url",
                        "must be https:// (http:// only on loopback): keys fetched in the clear could be swapped".into(),
                    ));
                }
                JwksSource::Url(url)
            }
            _ => {
                return Err(err(
                    self.issuer.span(),
                    "tokens.issuers",
                    "needs exactly one of jwks_file or jwks_url".into(),
                ));
            }
        };
        let span = self.algorithms.span();
        let mut algorithms = Vec::new();
        for a in self.algorithms.into_inner() {
            let alg: jsonwebtoken::Algorithm = a.parse().map_err(|_| {
                err(
                    span.clone(),
                    "tokens.issuers.algorithms",
                    format!("{a:?} is not a JWS algorithm"),
                )
            })?;
            if matches!(
                alg,
                jsonwebtoken::Algorithm::HS256
                    | jsonwebtoken::Algorithm::HS384
                    | jsonwebtoken::Algorithm::HS512
            ) {
                return Err(err(
                    span.clone(),
                    "tokens.issuers.algorithms",
                    format!("{a} is symmetric: a public key would double as the secret"),
                ));
            }
            algorithms.push(alg);
        }
        if algorithms.is_empty() {
            return Err(err(
                span,
                "tokens.issuers.algorithms",
                "name at least one".into(),
            ));
        }
        let leeway = match self.leeway {
            None => MAX_LEEWAY,
            Some(l) => match humantime::parse_duration(l.get_ref()) {
                Ok(d) if d <= MAX_LEEWAY => d,
                _ => {
                    return Err(err(
                        l.span(),
                        "tokens.issuers.leeway",
                        "a duration of at most 30s".into(),
                    ));
                }
            },
        };
        let jwks_max_age = match self.jwks_max_age {
            None => DEFAULT_JWKS_MAX_AGE,
            Some(a) => match humantime::parse_duration(a.get_ref()) {
                Ok(d) if d >= Duration::from_secs(1) && d <= Duration::from_secs(86_400) => d,
                _ => {
                    return Err(err(
                        a.span(),
                        "tokens.issuers.jwks_max_age",
                        "a duration from 1s to 1d".into(),
                    ));
                }
            },
        };
        let max_lifetime = match self.max_lifetime {
            None => DEFAULT_MAX_LIFETIME,
            Some(m) => match humantime::parse_duration(m.get_ref()) {
                Ok(d) if d >= Duration::from_secs(60) && d <= Duration::from_secs(30 * 86_400) => d,
                _ => {
                    return Err(err(
                        m.span(),
                        "tokens.issuers.max_lifetime",
                        "a duration from 1m to 30d".into(),
                    ));
                }
            },
        };
        Ok(IssuerConfig {
            issuer: self.issuer.into_inner(),
            audience: self.audience.into_inner(),
            jwks,
            algorithms,
            agent_claim: self.agent_claim.unwrap_or_else(|| "sub".into()),
            agents: self.agents,
            leeway,
            jwks_max_age,
            max_lifetime,
            require_at_jwt: self.require_at_jwt,
        })
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
    require: Option<Spanned<bool>>,
    #[serde(default)]
    issuers: Vec<RawIssuer>,
    admin_secret: Option<Spanned<String>>,
    resource: Option<Spanned<String>>,
}

/// `tokens.resource`: an absolute http(s) URL with a host and nothing a resource identifier
/// may not carry (RFC 9728 2: no query, no fragment; nor credentials).
fn resource(raw: Spanned<String>) -> Result<url::Url, Invalid> {
    let bad = |m: String| (Some(raw.span()), "tokens.resource".to_owned(), m);
    let url = url::Url::parse(raw.get_ref()).map_err(|e| bad(format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "https" | "http") || url.host().is_none() {
        return Err(bad("must be an http:// or https:// URL with a host".into()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must have no query and no fragment (RFC 9728)".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not carry credentials".into()));
    }
    // Published as written, so that the audience clients get tokens for is the text an
    // operator sees: no normalization between the file and the document.
    if url.as_str() != raw.get_ref() {
        return Err(bad(format!(
            "write it as {:?}, as it is published (clients get tokens for exactly this text)",
            url.as_str()
        )));
    }
    Ok(url)
}

fn path(v: Option<Spanned<String>>, default: PathBuf, base: Option<&Path>) -> PathBuf {
    match v {
        Some(s) => super::resolve(base, Path::new(s.get_ref())),
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
    /// The `admin_secret` reference, for checking against `[[secrets]]`.
    pub fn admin_secret(&self) -> Option<&Spanned<String>> {
        self.admin_secret.as_ref()
    }

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
        let (ttl_key, ttl_span) = match (&self.default_ttl, &self.max_ttl) {
            (Some(d), _) => ("tokens.default_ttl", Some(d.span())),
            (None, Some(m)) => ("tokens.max_ttl", Some(m.span())),
            (None, None) => ("tokens.default_ttl", None),
        };
        let default_ttl = ttl(self.default_ttl, "tokens.default_ttl", d.default_ttl)?;
        let max_ttl = ttl(self.max_ttl, "tokens.max_ttl", d.max_ttl)?;
        if default_ttl > max_ttl {
            return Err((
                ttl_span,
                ttl_key.into(),
                "tokens.default_ttl is longer than tokens.max_ttl".into(),
            ));
        }
        let enabled = self.enabled.unwrap_or(d.enabled);
        let require_span = self.require.as_ref().map(|r| r.span());
        let require = self.require.map_or(d.require, |r| r.into_inner());
        if require && !enabled {
            return Err((
                require_span,
                "tokens.require".into(),
                "needs tokens.enabled = true".into(),
            ));
        }
        let own = text(self.issuer, "tokens.issuer", d.issuer)?;
        let resource_span = self.resource.as_ref().map(|r| r.span());
        let resource = self.resource.map(resource).transpose()?;
        if resource.is_some() && !enabled {
            return Err((
                resource_span,
                "tokens.resource".into(),
                "needs tokens.enabled = true".into(),
            ));
        }
        let config = TokensConfig {
            enabled,
            key_file: path(self.key_file, d.key_file, base),
            issuer: own.clone(),
            audience: text(self.audience, "tokens.audience", d.audience)?,
            default_ttl,
            max_ttl,
            revoked_file: path(self.revoked_file, d.revoked_file, base),
            require,
            issuers: {
                let mut seen: Vec<String> = Vec::new();
                let mut issuers = Vec::with_capacity(self.issuers.len());
                for raw in self.issuers {
                    let span = raw.issuer.span();
                    let iss = raw.issuer.get_ref().clone();
                    if seen.contains(&iss) || iss == own {
                        return Err((
                            Some(span),
                            "tokens.issuers.issuer".into(),
                            format!(
                                "{iss:?} is named twice (or is the gateway's own tokens.issuer): a token could be checked against either"
                            ),
                        ));
                    }
                    seen.push(iss);
                    issuers.push(raw.validate(base)?);
                }
                issuers
            },
            admin_secret: self.admin_secret.map(Spanned::into_inner),
            resource,
        };
        if config.resource.is_some() && config.authorization_servers().next().is_none() {
            return Err((
                resource_span,
                "tokens.resource".into(),
                "the metadata it publishes names authorization servers: add a [[tokens.issuers]] whose issuer is an https:// URL without query or fragment".into(),
            ));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn issuers_refuse_symmetric_algorithms_long_leeway_and_ambiguous_keys() {
        let base = "[tokens]\nenabled = true\n[[tokens.issuers]]\nissuer = \"https://i\"\naudience = \"a\"\n";
        for (extra, want) in [
            (
                "jwks_file = \"/k\"\nalgorithms = [\"HS256\"]\n",
                "symmetric",
            ),
            (
                "jwks_file = \"/k\"\nalgorithms = [\"RS256\"]\nleeway = \"5m\"\n",
                "at most 30s",
            ),
            (
                "jwks_file = \"/k\"\njwks_url = \"https://i/jwks\"\nalgorithms = [\"RS256\"]\n",
                "exactly one of jwks_file or jwks_url",
            ),
            ("jwks_file = \"/k\"\nalgorithms = []\n", "at least one"),
            (
                "jwks_url = \"ftp://i/jwks\"\nalgorithms = [\"RS256\"]\n",
                "https://",
            ),
            (
                "jwks_file = \"/k\"\nalgorithms = [\"RS256\"]\njwks_max_age = \"0s\"\n",
                "tokens.issuers.jwks_max_age",
            ),
            (
                "jwks_file = \"/k\"\nalgorithms = [\"RS256\"]\njwks_max_age = \"2d\"\n",
                "from 1s to 1d",
            ),
            (
                "jwks_file = \"/k\"\nalgorithms = [\"RS256\"]\nmax_lifetime = \"90d\"\n",
                "tokens.issuers.max_lifetime",
            ),
        ] {
            let e = Config::parse(&format!("{base}{extra}"), "t.toml")
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{extra}: {e}");
        }
        let c = Config::parse(
            &format!("{base}jwks_file = \"/k\"\nalgorithms = [\"RS256\", \"ES256\"]\n"),
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.tokens.issuers[0].agent_claim, "sub");
        assert_eq!(
            c.tokens.issuers[0].jwks_max_age,
            super::DEFAULT_JWKS_MAX_AGE
        );
        let e = Config::parse("[tokens]\nrequire = true\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs tokens.enabled"), "{e}");
        // One issuer, one set of keys: a second entry for it (or the gateway's own name) would
        // leave which keys check a token to the order of the file.
        let one = "jwks_file = \"/k\"\nalgorithms = [\"RS256\"]\n";
        let e = Config::parse(
            &format!(
                "{base}{one}[[tokens.issuers]]\nissuer = \"https://i\"\naudience = \"b\"\n{one}"
            ),
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("t.toml:9: tokens.issuers.issuer") && e.contains("named twice"),
            "{e}"
        );
        let e = Config::parse(
            &format!(
                "[tokens]\nenabled = true\nissuer = \"https://i\"\n{}{one}",
                &base[24..]
            ),
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("gateway's own"), "{e}");
    }
}
