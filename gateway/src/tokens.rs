//! The token service: short-lived EdDSA JWTs the gateway issues to agents (`agentgate token
//! issue`), scoped to servers and tools, revocable by `jti`, published as JWKS, and verified on
//! every request that presents one, before the policy sees it.
//!
//! Verification accepts exactly one algorithm (EdDSA) and one key (the gateway's, by `kid`),
//! requires `iss`, `aud`, `sub`, `exp`, `iat` and `jti`, allows 30 s of clock skew, and refuses
//! tokens whose header carries `jku`, `jwk`, `x5u` or `x5c`: keys are never taken from a token.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant, SystemTime},
};

use base64::Engine;
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation,
    jwk::{Jwk, JwkSet},
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::tokens::{IssuerConfig, JwksSource, TokensConfig};

/// Seconds an external token's `exp` may lie beyond its issuer's `max_lifetime` (and leeway).
const LIFETIME_SKEW: u64 = 300;

/// Clock skew tolerated on `exp` and `iat`.
pub const LEEWAY: Duration = Duration::from_secs(30);

/// The claims of a gateway token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The agent the token names.
    pub sub: String,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
    /// Servers it may reach (absent: any the policy allows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servers: Option<Vec<String>>,
    /// Tools it may call (absent: any the policy allows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<String>>,
    /// Space-separated scopes, for `[rules.token] scopes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// Argument constraints: tool -> JSON pointer into its arguments -> the values allowed there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<ArgConstraints>,
}

/// tool -> JSON pointer -> allowed values (strings; numbers and booleans as their JSON text).
pub type ArgConstraints =
    std::collections::BTreeMap<String, std::collections::BTreeMap<String, Vec<String>>>;

/// A token that verified: whom it names, its scope, and its claims as JSON (what policy rules
/// match on).
#[derive(Debug, PartialEq, Eq)]
pub struct Verified {
    /// The agent it names.
    pub agent: String,
    /// Who vouched and for which subject, for the audit log: `token:<jti>` for the gateway's
    /// own tokens, `<iss>#<sub>` for an external issuer's.
    pub subject: String,
    pub jti: Option<String>,
    pub exp: u64,
    /// Seconds past `exp` its verification allowed (the issuer's leeway).
    pub leeway: u64,
    /// Servers it may reach (absent: any the policy allows). Gateway tokens only.
    pub servers: Option<Vec<String>>,
    /// Tools it may call (absent: any the policy allows). Gateway tokens only.
    pub tools: Option<Vec<String>>,
    /// Values some tools' arguments must have. Gateway tokens only.
    pub args: Option<ArgConstraints>,
    pub json: serde_json::Value,
}

impl Verified {
    /// Whether the token covers `server`.
    pub fn covers_server(&self, server: &str) -> bool {
        self.servers
            .as_ref()
            .is_none_or(|s| s.iter().any(|x| x == server))
    }

    /// Whether the token covers calling `tool`.
    pub fn covers_tool(&self, tool: &str) -> bool {
        self.tools
            .as_ref()
            .is_none_or(|t| t.iter().any(|x| x == tool))
    }
}

/// Why a presented token was refused. The text is what the agent reads (with HTTP 401, or 503
/// when the gateway could not check: see [`Rejection::is_unavailable`]).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's algorithm {0} is not accepted (EdDSA only)")]
    Algorithm(String),
    #[error("the token's header carries {0}: keys are never taken from a token")]
    KeyInHeader(&'static str),
    #[error("the token was signed by an unknown key")]
    UnknownKey,
    #[error("the token's issuer {0:?} is not trusted here")]
    UnknownIssuer(String),
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token is for another audience")]
    Audience,
    #[error("the token is from another issuer")]
    Issuer,
    #[error("the token lacks the {0} claim")]
    MissingClaim(String),
    #[error("the token was revoked")]
    Revoked,
    #[error("the token names agent {0:?}, which its issuer may not name here")]
    AgentNotAllowed(String),
    #[error("the revocation list cannot be read ({0}); no token is accepted until it can")]
    RevocationUnknown(String),
    #[error("the issuer's keys cannot be fetched ({0})")]
    KeysUnavailable(String),
    #[error("the token's claims are invalid: {0}")]
    Claims(String),
    #[error("the token's type {0:?} is not an access token's (JWT or at+jwt)")]
    Type(String),
    /// The header's `typ` (clipped), or `None` for a header without one.
    #[error(
        "the token's header {}, and its issuer's access tokens are typed at+jwt (RFC 9068): an ID token or another JWT is no access token",
        .0.as_ref().map_or("carries no typ".to_owned(), |t| format!("types it {t:?}"))
    )]
    NotAtJwt(Option<String>),
    #[error(
        "the token expires more than {0} from now, longer than its issuer's tokens may live here"
    )]
    TooLong(String),
}

impl Rejection {
    /// Whether the gateway could not tell (its revocation list or an issuer's keys are out of
    /// reach) rather than the token being bad: the same token may pass once they are back.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Rejection::RevocationUnknown(_) | Rejection::KeysUnavailable(_)
        )
    }
}

/// Why the token service could not start or issue.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token signing key {path}: {source}")]
    Key {
        path: String,
        source: std::io::Error,
    },
    #[error("revocation list {path}: {message}")]
    Revoked { path: String, message: String },
    #[error("a token may live at most {max:?} (tokens.max_ttl), not {asked:?}")]
    TooLong { max: Duration, asked: Duration },
    #[error("cannot sign the token: {0}")]
    Sign(String),
    #[error("agent name {0:?} is what callers no agent matches are called: it cannot be given")]
    ReservedAgent(String),
    #[error(
        "tokens.admin_secret: the secret is {len} bytes; at least {min} are required, as any local process may try secrets at the admin API (make one with `head -c 32 /dev/urandom | base64`)",
        min = MIN_ADMIN_SECRET
    )]
    AdminSecretTooShort { len: usize },
}

/// Shortest admin secret accepted: any local process can reach the admin API's `POST /tokens`,
/// so the secret must be one no one guesses, not a password.
pub const MIN_ADMIN_SECRET: usize = 16;

/// The gateway's token service.
pub struct TokenService {
    config: TokensConfig,
    encoding: EncodingKey,
    decoding: DecodingKey,
    kid: String,
    public: [u8; 32],
    revoked: Mutex<Revocations>,
    external: Vec<External>,
    /// What an admin-API caller presents to issue tokens.
    admin: Option<crate::credentials::Secret>,
}

/// An external issuer and its cached keys.
struct External {
    config: IssuerConfig,
    keys: std::sync::RwLock<Cached>,
    /// Held while fetching (single flight); remembers the last attempt to rate-limit fetches
    /// that unknown `kid`s would otherwise trigger at will.
    fetch: tokio::sync::Mutex<Option<Instant>>,
    client: Option<crate::proxy::upstream::HttpClient>,
}

/// An issuer's keys as last fetched.
struct Cached {
    set: JwkSet,
    /// When `set` was fetched (`None`: never).
    at: Option<Instant>,
    /// Why the last fetch failed, while no fetch since has succeeded.
    error: Option<String>,
}

/// Shortest time between two fetches of one issuer's keys (shorter when the issuer's
/// `jwks_max_age` is).
const REFRESH_GAP: Duration = Duration::from_secs(10);

/// How many times `jwks_max_age` keys still serve past it while the issuer cannot be reached:
/// an outage does not lock every agent out at once, but a withdrawn key does not live forever
/// either. After that, tokens get 503 until a fetch succeeds.
const STALE_FOR: u32 = 4;

impl External {
    fn new(config: IssuerConfig) -> Result<Self, TokenError> {
        let client = match &config.jwks {
            JwksSource::Url(_) => Some(
                crate::proxy::upstream::build_client(&config.issuer, None, Duration::from_secs(5))
                    .map_err(|e| TokenError::Sign(e.to_string()))?,
            ),
            JwksSource::File(_) => None,
        };
        Ok(Self {
            config,
            keys: std::sync::RwLock::new(Cached {
                set: JwkSet { keys: Vec::new() },
                at: None,
                error: None,
            }),
            fetch: tokio::sync::Mutex::new(None),
            client,
        })
    }

    /// The cached key for `kid` (none once the cache is [`STALE_FOR`] times `jwks_max_age`
    /// past it), and whether the cache is younger than `jwks_max_age`.
    fn lookup(&self, kid: Option<&str>) -> (Option<Jwk>, bool) {
        let cached = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let age = cached.at.map(|t| t.elapsed());
        if age.is_some_and(|a| a >= self.config.jwks_max_age * (1 + STALE_FOR)) {
            return (None, false);
        }
        let key = match kid {
            Some(k) => cached.set.find(k).cloned(),
            // No kid: only an issuer with a single key can be meant.
            None if cached.set.keys.len() == 1 => cached.set.keys.first().cloned(),
            None => None,
        };
        (key, age.is_some_and(|a| a < self.config.jwks_max_age))
    }

    /// The key for `kid`. Keys older than `jwks_max_age` are fetched again before use, so a key
    /// the issuer withdrew stops verifying; an unknown `kid` fetches too (a rotation). Fetches
    /// run one at a time and not more often than [`REFRESH_GAP`]. While a stale key is being
    /// refetched by another request, or when the refetch fails, the stale key still serves,
    /// for at most [`STALE_FOR`] times `jwks_max_age`: an unreachable issuer does not lock
    /// every agent out at once.
    async fn key(&self, kid: Option<&str>) -> Result<Jwk, Rejection> {
        let (key, fresh) = self.lookup(kid);
        let mut last = match (key, fresh) {
            (Some(k), true) => return Ok(k),
            (Some(k), false) => match self.fetch.try_lock() {
                Ok(guard) => guard,
                Err(_) => return Ok(k),
            },
            (None, _) => self.fetch.lock().await,
        };
        let gap = REFRESH_GAP.min(self.config.jwks_max_age);
        // Someone else may have fetched while this request waited.
        let (key, fresh) = self.lookup(kid);
        if fresh && let Some(k) = key {
            return Ok(k);
        }
        if last.is_none_or(|t| t.elapsed() >= gap) {
            *last = Some(Instant::now());
            // One deadline for the whole fetch, body included: a slow IdP must not hold the
            // single-flight lock (and every request waiting on it) for long.
            let loaded = tokio::time::timeout(Duration::from_secs(10), self.load())
                .await
                .unwrap_or_else(|_| Err("no complete answer within 10 s".into()));
            let mut cached = self.keys.write().unwrap_or_else(|p| p.into_inner());
            match loaded {
                Ok(set) => {
                    *cached = Cached {
                        set,
                        at: Some(Instant::now()),
                        error: None,
                    };
                }
                Err(error) => {
                    tracing::warn!(issuer = %self.config.issuer, %error, "Cannot fetch the issuer's keys (JWKS).");
                    cached.error = Some(error);
                }
            }
        }
        drop(last);
        match self.lookup(kid).0 {
            Some(k) => Ok(k),
            None => match &self.keys.read().unwrap_or_else(|p| p.into_inner()).error {
                Some(error) => Err(Rejection::KeysUnavailable(error.clone())),
                None => Err(Rejection::UnknownKey),
            },
        }
    }

    async fn load(&self) -> Result<JwkSet, String> {
        let bytes = match (&self.config.jwks, &self.client) {
            (JwksSource::File(path), _) => {
                std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?
            }
            (JwksSource::Url(url), Some(client)) => {
                let req = http::Request::get(url.as_str())
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .map_err(|e| e.to_string())?;
                let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
                    .await
                    .map_err(|_| "no answer within 10 s".to_owned())?
                    .map_err(|e| e.to_string())?;
                if !resp.status().is_success() {
                    return Err(format!("{url} answered {}", resp.status()));
                }
                use http_body_util::BodyExt;
                http_body_util::Limited::new(resp.into_body(), 1 << 20)
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?
                    .to_bytes()
                    .to_vec()
            }
            (JwksSource::Url(_), None) => return Err("no HTTP client".into()),
        };
        serde_json::from_slice(&bytes).map_err(|e| format!("not a JWKS document: {e}"))
    }
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService")
            .field("kid", &self.kid)
            .field("issuer", &self.config.issuer)
            .finish_non_exhaustive()
    }
}

/// The revocation list as last read, re-read when its file changes (checked once a second).
#[derive(Debug, Default)]
struct Revocations {
    checked: Option<Instant>,
    /// The file as read; `None` when it did not exist.
    version: Option<FileVersion>,
    ids: HashSet<String>,
    /// The list could not be read: every token is refused until it can.
    unreadable: Option<String>,
}

/// What tells one state of a file from another: (mtime, length, inode, ctime). The ctime
/// changes with every write and cannot be set back, so an edit that keeps the length within
/// one mtime tick, or puts the mtime back, still shows.
type FileVersion = (SystemTime, u64, u64, (i64, i64));

fn file_version(path: &Path) -> std::io::Result<Option<FileVersion>> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some((
            m.modified()?,
            m.len(),
            m.ino(),
            (m.ctime(), m.ctime_nsec()),
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The revocation file: ids with their expiry, so that expired entries can be dropped.
#[derive(Debug, Default, Serialize, Deserialize)]
struct RevokedFile {
    revoked: Vec<RevokedEntry>,
}

#[derive(Debug, Serialize, Deserialize)]
struct RevokedEntry {
    jti: String,
    /// When the token expires anyway (Unix seconds); 0 when unknown.
    exp: u64,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// PKCS#8 v1 DER of an Ed25519 private key: a fixed prefix and the 32-byte seed (RFC 8410).
fn pkcs8(seed: &[u8; 32]) -> Vec<u8> {
    const PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let mut der = PREFIX.to_vec();
    der.extend_from_slice(seed);
    der
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl TokenService {
    /// Loads (or creates) the signing key.
    pub fn open(config: &TokensConfig) -> Result<Self, TokenError> {
        let key = crate::audit::load_or_create_key(&config.key_file).map_err(|source| {
            TokenError::Key {
                path: config.key_file.display().to_string(),
                source,
            }
        })?;
        let seed = zeroize::Zeroizing::new(key.to_bytes());
        let public = key.verifying_key().to_bytes();
        let kid = crate::audit::hex(&Sha256::digest(public)[..8]);
        Ok(Self {
            config: config.clone(),
            encoding: EncodingKey::from_ed_der(&pkcs8(&seed)),
            decoding: DecodingKey::from_ed_components(&b64(&public))
                .map_err(|e| TokenError::Sign(e.to_string()))?,
            kid,
            public,
            revoked: Mutex::new(Revocations::default()),
            external: config
                .issuers
                .iter()
                .cloned()
                .map(External::new)
                .collect::<Result<_, _>>()?,
            admin: None,
        })
        .and_then(|s| {
            let mut r = s.revoked.lock().unwrap_or_else(|p| p.into_inner());
            refresh_revocations(&config.revoked_file, &mut r);
            r.checked = Some(Instant::now());
            if let Some(message) = r.unreadable.take() {
                return Err(TokenError::Revoked {
                    path: config.revoked_file.display().to_string(),
                    message,
                });
            }
            drop(r);
            Ok(s)
        })
    }

    pub fn config(&self) -> &TokensConfig {
        &self.config
    }

    /// Enables issuance over the admin API for callers presenting `secret` (at least
    /// [`MIN_ADMIN_SECRET`] bytes).
    pub fn with_admin(mut self, secret: crate::credentials::Secret) -> Result<Self, TokenError> {
        if secret.len() < MIN_ADMIN_SECRET {
            return Err(TokenError::AdminSecretTooShort { len: secret.len() });
        }
        self.admin = Some(secret);
        Ok(self)
    }

    /// Whether the admin API issues tokens at all.
    pub fn admin_enabled(&self) -> bool {
        self.admin.is_some()
    }

    /// Whether `presented` is the admin secret.
    pub fn admin_allows(&self, presented: &str) -> bool {
        self.admin
            .as_ref()
            .is_some_and(|s| s.matches(presented.as_bytes()))
    }

    /// Signs a token for `agent`, scoped as given, living `ttl` (the default when `None`).
    pub fn issue(
        &self,
        agent: &str,
        servers: Option<Vec<String>>,
        tools: Option<Vec<String>>,
        scope: Option<String>,
        ttl: Option<Duration>,
    ) -> Result<(String, Claims), TokenError> {
        self.issue_with(agent, servers, tools, scope, None, ttl)
    }

    /// [`TokenService::issue`] with argument constraints.
    pub fn issue_with(
        &self,
        agent: &str,
        servers: Option<Vec<String>>,
        tools: Option<Vec<String>>,
        scope: Option<String>,
        args: Option<ArgConstraints>,
        ttl: Option<Duration>,
    ) -> Result<(String, Claims), TokenError> {
        if agent == crate::identity::UNKNOWN_AGENT || agent.is_empty() {
            return Err(TokenError::ReservedAgent(agent.to_owned()));
        }
        let ttl = ttl.unwrap_or(self.config.default_ttl);
        if ttl > self.config.max_ttl || ttl.is_zero() {
            return Err(TokenError::TooLong {
                max: self.config.max_ttl,
                asked: ttl,
            });
        }
        let mut jti = [0u8; 16];
        getrandom::fill(&mut jti).map_err(|e| TokenError::Sign(e.to_string()))?;
        let iat = now_secs();
        let claims = Claims {
            iss: self.config.issuer.clone(),
            aud: self.config.audience.clone(),
            sub: agent.to_owned(),
            iat,
            exp: iat + ttl.as_secs().max(1),
            jti: crate::audit::hex(&jti),
            servers,
            tools,
            scope,
            args,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        // Typed as an access token (RFC 9068's type, not its full profile), so that no other
        // kind of JWT passes for one.
        header.typ = Some("at+jwt".into());
        let token = jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| TokenError::Sign(e.to_string()))?;
        Ok((token, claims))
    }

    /// Verifies a presented token: the gateway's own, or an external issuer's.
    pub async fn verify(&self, token: &str) -> Result<Verified, Rejection> {
        let header = self.header(token)?;
        if header.kid.as_deref() == Some(self.kid.as_str()) || self.external.is_empty() {
            return self.verify_own(token);
        }
        // Which issuer's keys to try is read from the unverified claims; the signature and
        // the `iss` check below decide whether that was true.
        let unverified = jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(token)
            .map_err(|_| Rejection::Malformed)?;
        let iss = unverified.claims["iss"]
            .as_str()
            .ok_or_else(|| Rejection::MissingClaim("iss".into()))?;
        let ext = self
            .external
            .iter()
            .find(|e| e.config.issuer == iss)
            .ok_or_else(|| Rejection::UnknownIssuer(clip(iss)))?;
        if !ext.config.algorithms.contains(&header.alg) {
            return Err(Rejection::Algorithm(format!("{:?}", header.alg)));
        }
        if ext.config.require_at_jwt && !header.typ.as_deref().is_some_and(is_at_jwt) {
            return Err(Rejection::NotAtJwt(header.typ.as_deref().map(clip)));
        }
        let jwk = ext.key(header.kid.as_deref()).await?;
        if !usable(&jwk) {
            return Err(Rejection::UnknownKey);
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| Rejection::UnknownKey)?;
        let mut v = Validation::new(header.alg);
        v.leeway = ext.config.leeway.as_secs();
        v.set_audience(&[&ext.config.audience]);
        v.set_issuer(&[&ext.config.issuer]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.validate_nbf = true;
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &v).map_err(rejection)?;
        let claims = data.claims;
        let agent = claims[ext.config.agent_claim.as_str()]
            .as_str()
            .ok_or_else(|| Rejection::MissingClaim(ext.config.agent_claim.clone()))?
            .to_owned();
        // Nor may an issuer name callers "unknown": rules for unmatched callers would match.
        if agent == crate::identity::UNKNOWN_AGENT
            || agent.is_empty()
            || ext
                .config
                .agents
                .as_ref()
                .is_some_and(|allowed| !allowed.contains(&agent))
        {
            return Err(Rejection::AgentNotAllowed(agent));
        }
        // A NumericDate may have a fraction (RFC 7519 2), which the JWT library accepts: read
        // as the whole second before it, not as 0 (no cap, and streams cut at once).
        let exp = claims["exp"].as_u64().unwrap_or_else(|| {
            claims["exp"]
                .as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .map_or(0, |f| f as u64)
        });
        let longest = ext.config.max_lifetime.as_secs();
        // Clock skew on top: a token issued for exactly `max_lifetime` by an issuer whose clock
        // runs a little ahead still passes.
        if exp > now_secs().saturating_add(longest + ext.config.leeway.as_secs() + LIFETIME_SKEW) {
            return Err(Rejection::TooLong(
                humantime::format_duration(ext.config.max_lifetime).to_string(),
            ));
        }
        let jti = claims["jti"].as_str().map(str::to_owned);
        if let Some(j) = &jti
            && self.is_revoked(j)?
        {
            return Err(Rejection::Revoked);
        }
        Ok(Verified {
            subject: format!("{iss}#{}", claims["sub"].as_str().unwrap_or_default()),
            agent,
            jti,
            exp,
            leeway: ext.config.leeway.as_secs(),
            servers: None,
            tools: None,
            args: None,
            json: claims,
        })
    }

    /// The header, refused when it tries to bring its own key, names an algorithm nobody here
    /// accepts, or types itself as another kind of JWT (RFC 8725 3.11: an ID token, a logout
    /// or security event token must not pass as an access token). No `typ`, `JWT` and
    /// `at+jwt` (RFC 9068, also with a vendor prefix: `okta-at+jwt`) are access tokens.
    fn header(&self, token: &str) -> Result<Header, Rejection> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidAlgorithmName => {
                Rejection::Algorithm("(unknown)".into())
            }
            _ => Rejection::Malformed,
        })?;
        for (present, name) in [
            (header.jku.is_some(), "jku"),
            (header.jwk.is_some(), "jwk"),
            (header.x5u.is_some(), "x5u"),
            (header.x5c.is_some(), "x5c"),
        ] {
            if present {
                return Err(Rejection::KeyInHeader(name));
            }
        }
        if let Some(typ) = &header.typ
            && !is_at_jwt(typ)
            && !typ.eq_ignore_ascii_case("jwt")
            && !typ.eq_ignore_ascii_case("application/jwt")
        {
            return Err(Rejection::Type(clip(&typ.to_ascii_lowercase())));
        }
        let accepted = header.alg == Algorithm::EdDSA
            || self
                .external
                .iter()
                .any(|e| e.config.algorithms.contains(&header.alg));
        if !accepted {
            return Err(Rejection::Algorithm(format!("{:?}", header.alg)));
        }
        Ok(header)
    }

    /// Verifies one of the gateway's own tokens.
    pub fn verify_own(&self, token: &str) -> Result<Verified, Rejection> {
        let header = self.header(token)?;
        if header.alg != Algorithm::EdDSA {
            return Err(Rejection::Algorithm(format!("{:?}", header.alg)));
        }
        if header.kid.as_deref() != Some(self.kid.as_str()) {
            return Err(Rejection::UnknownKey);
        }
        let mut v = Validation::new(Algorithm::EdDSA);
        v.leeway = LEEWAY.as_secs();
        v.set_audience(&[&self.config.audience]);
        v.set_issuer(&[&self.config.issuer]);
        v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub", "jti"]);
        v.validate_nbf = true;
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &self.decoding, &v)
            .map_err(rejection)?;
        let claims: Claims = serde_json::from_value(data.claims.clone()).map_err(|e| {
            let text = e.to_string();
            // jsonwebtoken checks only the registered claims it knows; `iat` and `jti` are
            // required by the typed claims.
            match text
                .strip_prefix("missing field `")
                .and_then(|r| r.split('`').next())
            {
                Some(field) => Rejection::MissingClaim(field.to_owned()),
                None => Rejection::Claims(text),
            }
        })?;
        // A token issued in the future (beyond the skew) was not issued by this clock.
        if claims.iat > now_secs() + LEEWAY.as_secs() {
            return Err(Rejection::NotYetValid);
        }
        if self.is_revoked(&claims.jti)? {
            return Err(Rejection::Revoked);
        }
        Ok(Verified {
            agent: claims.sub,
            subject: format!("token:{}", claims.jti),
            jti: Some(claims.jti),
            exp: claims.exp,
            leeway: LEEWAY.as_secs(),
            servers: claims.servers,
            tools: claims.tools,
            args: claims.args,
            json: data.claims,
        })
    }

    /// Whether a token verified earlier still admits its bearer: not expired (with the
    /// leeway verification allows, at most [`LEEWAY`]), and not revoked since. Streams ask as
    /// they go, since they outlive the request that was checked.
    pub fn still_honoured(&self, token: &Verified) -> Result<(), Rejection> {
        // An issuer's `exp` may be any number: saturating, never wrapping to the past.
        if token.exp.saturating_add(token.leeway) <= now_secs() {
            return Err(Rejection::Expired);
        }
        match &token.jti {
            Some(jti) if self.is_revoked(jti)? => Err(Rejection::Revoked),
            _ => Ok(()),
        }
    }

    /// Whether `jti` is revoked. Fails closed: a list that cannot be read revokes everything
    /// (and a list that disappears after it existed counts as unreadable).
    fn is_revoked(&self, jti: &str) -> Result<bool, Rejection> {
        let mut r = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
        if r.checked
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            r.checked = Some(Instant::now());
            refresh_revocations(&self.config.revoked_file, &mut r);
        }
        match &r.unreadable {
            Some(why) => Err(Rejection::RevocationUnknown(why.clone())),
            None => Ok(r.ids.contains(jti)),
        }
    }

    /// The public key as a JWKS document.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({
            "keys": [{
                "kty": "OKP",
                "crv": "Ed25519",
                "x": b64(&self.public),
                "kid": self.kid,
                "alg": "EdDSA",
                "use": "sig",
            }]
        })
    }
}

/// Whether the JWT library can verify with `jwk` without failing hard: it reads an Ed25519
/// key's first 32 bytes unchecked (a shorter `x` in an issuer's JWKS panicked the request).
fn usable(jwk: &Jwk) -> bool {
    use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve};
    match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(p) => {
            p.curve == EllipticCurve::Ed25519
                && base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(p.x.trim_end_matches('='))
                    .is_ok_and(|x| x.len() == 32)
        }
        _ => true,
    }
}

/// Whether a JWT `typ` names an access token (RFC 9068's `at+jwt`, also as a media type and
/// with a vendor's prefix: `application/okta-at+jwt`).
fn is_at_jwt(typ: &str) -> bool {
    let typ = typ.to_ascii_lowercase();
    let typ = typ.strip_prefix("application/").unwrap_or(&typ);
    typ == "at+jwt" || typ.ends_with("-at+jwt")
}

/// An unverified claim as it may appear in a refusal (shown to the agent, written to the audit
/// log and into a header): cut short, since whoever made the token chose its length.
fn clip(claim: &str) -> String {
    const MAX: usize = 64;
    match claim.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}…", &claim[..end]),
        None => claim.to_owned(),
    }
}

fn rejection(e: jsonwebtoken::errors::Error) -> Rejection {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => Rejection::Expired,
        K::ImmatureSignature => Rejection::NotYetValid,
        K::InvalidAudience => Rejection::Audience,
        K::InvalidIssuer => Rejection::Issuer,
        K::InvalidSignature => Rejection::Signature,
        K::InvalidAlgorithm => Rejection::Algorithm("(mismatch)".into()),
        K::MissingRequiredClaim(c) => Rejection::MissingClaim(c.clone()),
        K::Json(e) => Rejection::Claims(e.to_string()),
        _ => Rejection::Malformed,
    }
}

fn refresh_revocations(path: &Path, r: &mut Revocations) {
    let version = match file_version(path) {
        Ok(v) => v,
        Err(e) => {
            r.unreadable = Some(e.to_string());
            return;
        }
    };
    if version == r.version && r.unreadable.is_none() {
        return;
    }
    if version.is_none() && r.version.is_some() {
        r.unreadable = Some(format!("{} disappeared", path.display()));
        return;
    }
    match read_revoked(path) {
        Ok(file) => {
            r.ids = file.revoked.into_iter().map(|e| e.jti).collect();
            r.version = version;
            r.unreadable = None;
        }
        Err(message) => {
            tracing::error!(path = %path.display(), %message, "Cannot read the token revocation list: every token is refused until it can be.");
            r.unreadable = Some(message);
        }
    }
}

fn read_revoked(path: &Path) -> Result<RevokedFile, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| e.to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RevokedFile::default()),
        Err(e) => Err(e.to_string()),
    }
}

/// Whether a revocation of a token expiring at `exp` (0: unknown, kept) is past use at `now`.
fn expired(exp: u64, now: u64) -> bool {
    exp != 0 && exp.saturating_add(LEEWAY.as_secs()) < now
}

/// What changed in the revocation list since it was last read.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RevocationChanges {
    /// Ids newly revoked, with their tokens' expiry (0: unknown).
    pub revoked: Vec<(String, u64)>,
    /// Ids whose revocation was taken back while their tokens still live: the gateway only
    /// ever adds to the list and drops what expired, so this is someone's edit.
    pub withdrawn: Vec<(String, u64)>,
}

/// The revocation list as last seen, for telling the audit log what changes in it, whoever
/// changes it (`agentgate token revoke`, an edit).
#[derive(Debug)]
pub struct RevocationWatch {
    path: PathBuf,
    version: Option<FileVersion>,
    entries: std::collections::HashMap<String, u64>,
    /// Whether the list has been read once: until then (unreadable at the start) there is
    /// nothing to tell changes from, and the first reading is the start.
    read: bool,
}

impl RevocationWatch {
    /// Starts from the list as it is now: what it already holds is no change.
    pub fn new(path: &Path) -> Self {
        let mut watch = Self {
            path: path.to_owned(),
            version: None,
            entries: Default::default(),
            // A list that is not there yet is an empty one.
            read: matches!(file_version(path), Ok(None)),
        };
        watch.poll();
        watch
    }

    /// The changes since the last look; `None` when there are none, or the list cannot be
    /// read now (its changes are told once it can).
    pub fn poll(&mut self) -> Option<RevocationChanges> {
        let version = file_version(&self.path).ok()?;
        // A list that disappeared is unreadable, as the gateway takes it (it refuses every
        // token meanwhile), not emptied.
        if version == self.version || version.is_none() && self.version.is_some() {
            return None;
        }
        let file = read_revoked(&self.path).ok()?;
        self.version = version;
        if !std::mem::replace(&mut self.read, true) {
            self.entries = file.revoked.into_iter().map(|e| (e.jti, e.exp)).collect();
            return None;
        }
        let now = now_secs();
        // An entry keeps the expiry it was first seen with: one edited to look expired, then
        // dropped, is still a revocation taken back.
        let entries: std::collections::HashMap<String, u64> = file
            .revoked
            .into_iter()
            .map(|e| {
                let exp = self.entries.get(&e.jti).copied().unwrap_or(e.exp);
                (e.jti, exp)
            })
            .collect();
        let mut changes = RevocationChanges::default();
        for (jti, exp) in &entries {
            if !self.entries.contains_key(jti) {
                changes.revoked.push((jti.clone(), *exp));
            }
        }
        for (jti, exp) in &self.entries {
            if !entries.contains_key(jti) && !expired(*exp, now) {
                changes.withdrawn.push((jti.clone(), *exp));
            }
        }
        changes.revoked.sort();
        changes.withdrawn.sort();
        self.entries = entries;
        (changes != RevocationChanges::default()).then_some(changes)
    }
}

/// Adds `jti` to the revocation list at `path` (atomically, dropping entries that expired).
/// Revocations made at the same time by several processes all land: each holds an exclusive
/// lock on `<path>.lock` from reading the list to renaming the new one into place. The rename
/// and its directory are synced before this returns, so a revocation survives a crash.
pub fn revoke(path: &Path, jti: &str, exp: u64) -> Result<(), TokenError> {
    let fail = |message: String| TokenError::Revoked {
        path: path.display().to_string(),
        message,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path.with_extension("lock"))
        .map_err(|e| fail(format!("cannot open its lock file: {e}")))?;
    lock.lock()
        .map_err(|e| fail(format!("cannot lock its lock file: {e}")))?;
    let mut file = read_revoked(path).map_err(fail)?;
    let now = now_secs();
    file.revoked.retain(|e| !expired(e.exp, now));
    if !file.revoked.iter().any(|e| e.jti == jti) {
        file.revoked.push(RevokedEntry {
            jti: jti.to_owned(),
            exp,
        });
    }
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_vec_pretty(&file).map_err(|e| fail(e.to_string()))?;
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path))
        .and_then(|()| std::fs::File::open(dir)?.sync_all())
        .map_err(|e| fail(e.to_string()))
    // The lock goes with `lock`.
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(dir: &Path) -> TokenService {
        TokenService::open(&TokensConfig {
            enabled: true,
            key_file: dir.join("token.key"),
            revoked_file: dir.join("revoked.json"),
            ..TokensConfig::default()
        })
        .unwrap()
    }

    /// A token with `claims` signed by `service`'s key, header as given.
    fn forge(service: &TokenService, header: Header, claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(&header, claims, &service.encoding).unwrap()
    }

    fn good_claims() -> serde_json::Value {
        let now = now_secs();
        serde_json::json!({"iss": "agentgate", "aud": "agentgate", "sub": "a", "iat": now, "exp": now + 60, "jti": "j1"})
    }

    /// An issuer's Ed25519 key whose `x` is not 32 bytes is no key: the JWT library would read
    /// 32 bytes of it unchecked, and panic, when a token named it.
    #[test]
    fn malformed_ed25519_keys_are_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let own: JwkSet = serde_json::from_value(service(dir.path()).jwks()).unwrap();
        let good = own.keys[0].clone();
        assert!(usable(&good));
        assert!(DecodingKey::from_jwk(&good).is_ok());
        let mut short = serde_json::to_value(&good).unwrap();
        short["x"] = serde_json::json!("AAAA");
        let short: Jwk = serde_json::from_value(short).unwrap();
        assert!(!usable(&short));
        let mut long = serde_json::to_value(&good).unwrap();
        long["x"] = serde_json::json!(b64(&[7u8; 33]));
        assert!(!usable(&serde_json::from_value(long).unwrap()));
        // What the check keeps out: the library's own verification panics on it.
        let key = DecodingKey::from_jwk(&short).unwrap();
        let (token, _) = service(dir.path())
            .issue("a", None, None, None, None)
            .unwrap();
        let panicked = std::panic::catch_unwind(|| {
            jsonwebtoken::decode::<serde_json::Value>(
                &token,
                &key,
                &Validation::new(Algorithm::EdDSA),
            )
        });
        assert!(panicked.is_err());
    }

    #[test]
    fn issued_tokens_verify_and_carry_their_scope() {
        let dir = tempfile::tempdir().unwrap();
        let s = service(dir.path());
        let (token, claims) = s
            .issue(
                "analyst",
                Some(vec!["db".into()]),
                Some(vec!["query".into()]),
                Some("db:read".into()),
                None,
            )
            .unwrap();
        let v = s.verify_own(&token).unwrap();
        assert_eq!(v.agent, claims.sub);
        assert_eq!(v.jti.as_deref(), Some(claims.jti.as_str()));
        // Typed as an access token (RFC 9068).
        assert_eq!(
            jsonwebtoken::decode_header(&token).unwrap().typ.as_deref(),
            Some("at+jwt")
        );
        assert_eq!(v.json["scope"], "db:read");
        assert!(v.covers_server("db") && !v.covers_server("mail"));
        assert!(v.covers_tool("query") && !v.covers_tool("drop_table"));
        assert!(matches!(
            s.issue("a", None, None, None, Some(Duration::from_secs(7200))),
            Err(TokenError::TooLong { .. })
        ));
        assert!(matches!(
            s.issue("unknown", None, None, None, None),
            Err(TokenError::ReservedAgent(_))
        ));
        // Streams re-check expiry with the leeway the token was verified with, and an
        // issuer's `exp` near the end of the number line does not wrap to the past.
        let now = now_secs();
        let expired = Verified {
            exp: now - 5,
            leeway: 0,
            ..s.verify_own(&token).unwrap()
        };
        assert!(matches!(
            s.still_honoured(&expired),
            Err(Rejection::Expired)
        ));
        assert!(
            s.still_honoured(&Verified {
                leeway: 30,
                ..expired
            })
            .is_ok()
        );
        let far = Verified {
            exp: u64::MAX - 1,
            leeway: 30,
            ..v
        };
        assert!(s.still_honoured(&far).is_ok());
    }

    #[test]
    fn bad_tokens_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let s = service(dir.path());
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(s.kid.clone());
        let now = now_secs();
        let with = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut c = good_claims();
            edit(&mut c);
            forge(&s, header.clone(), &c)
        };
        assert!(s.verify_own(&with(&|_| {})).is_ok());
        // Explicit typing: access tokens pass, other kinds of JWT do not.
        for (typ, ok) in [
            (None, true),
            (Some("JWT"), true),
            (Some("application/jwt"), true),
            (Some("at+jwt"), true),
            (Some("application/at+JWT"), true),
            (Some("application/okta-internal-at+jwt"), true),
            (Some("logout+jwt"), false),
            (Some("secevent+jwt"), false),
            (Some("dpop+jwt"), false),
            // Types that merely end like an access token's are other types.
            (Some("flat+jwt"), false),
            (Some("application/that+jwt"), false),
        ] {
            let mut h = header.clone();
            h.typ = typ.map(str::to_owned);
            let result = s.verify_own(&forge(&s, h, &good_claims()));
            assert_eq!(result.is_ok(), ok, "{typ:?}: {result:?}");
            if !ok {
                assert!(matches!(result, Err(Rejection::Type(_))), "{result:?}");
            }
        }
        assert_eq!(
            s.verify_own(&with(&|c| c["exp"] = (now - 120).into())),
            Err(Rejection::Expired)
        );
        // Within the 30 s leeway an expired token still passes.
        assert!(
            s.verify_own(&with(&|c| c["exp"] = (now - 5).into()))
                .is_ok()
        );
        assert_eq!(
            s.verify_own(&with(&|c| c["aud"] = "elsewhere".into())),
            Err(Rejection::Audience)
        );
        assert_eq!(
            s.verify_own(&with(&|c| c["iss"] = "someone".into())),
            Err(Rejection::Issuer)
        );
        assert!(matches!(
            s.verify_own(&with(&|c| {
                c.as_object_mut().unwrap().remove("jti");
            })),
            Err(Rejection::MissingClaim(_))
        ));
        assert_eq!(
            s.verify_own(&with(&|c| c["iat"] = (now + 3600).into())),
            Err(Rejection::NotYetValid)
        );
        // Tampered payload: the signature no longer matches.
        let t = with(&|_| {});
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        let mut claims = good_claims();
        claims["sub"] = "admin".into();
        parts[1] = b64(claims.to_string().as_bytes());
        assert_eq!(s.verify_own(&parts.join(".")), Err(Rejection::Signature));
        // Another key (a foreign token), no kid, HS256, keys in the header, garbage.
        let other = service(&dir.path().join("other"));
        let mut foreign_header = Header::new(Algorithm::EdDSA);
        foreign_header.kid = Some(s.kid.clone());
        let foreign = forge(&other, foreign_header, &good_claims());
        assert_eq!(s.verify_own(&foreign), Err(Rejection::Signature));
        assert_eq!(
            s.verify_own(&forge(&s, Header::new(Algorithm::EdDSA), &good_claims())),
            Err(Rejection::UnknownKey)
        );
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &good_claims(),
            &EncodingKey::from_secret(&s.public),
        )
        .unwrap();
        assert!(matches!(s.verify_own(&hs), Err(Rejection::Algorithm(_))));
        let mut jku = header.clone();
        jku.jku = Some("https://evil.example/jwks".into());
        assert_eq!(
            s.verify_own(&forge(&s, jku, &good_claims())),
            Err(Rejection::KeyInHeader("jku"))
        );
        let none = format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            b64(good_claims().to_string().as_bytes())
        );
        assert!(s.verify_own(&none).is_err());
        assert_eq!(s.verify_own("not.a.jwt"), Err(Rejection::Malformed));
    }

    #[test]
    fn revoked_tokens_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = service(dir.path());
        let (token, claims) = s.issue("a", None, None, None, None).unwrap();
        assert!(s.verify_own(&token).is_ok());
        revoke(&s.config.revoked_file, &claims.jti, claims.exp).unwrap();
        // The list is re-read at most once a second.
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(s.verify_own(&token).unwrap_err(), Rejection::Revoked);
        let (other, _) = s.issue("a", None, None, None, None).unwrap();
        assert!(s.verify_own(&other).is_ok());
        // A list that turns unreadable (here: garbage) revokes everything, until fixed.
        std::fs::write(&s.config.revoked_file, "not json").unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        assert!(matches!(
            s.verify_own(&other),
            Err(Rejection::RevocationUnknown(_))
        ));
        // And a gateway does not start on one.
        assert!(matches!(
            TokenService::open(&s.config),
            Err(TokenError::Revoked { .. })
        ));
    }

    /// The watch tells what changed since it last looked: nothing for what was there at its
    /// start, revocations added, revocations taken back while their tokens live; not entries
    /// dropped because their tokens expired, nor a list it cannot read.
    #[test]
    fn the_revocation_watch_tells_revocations_and_withdrawals_apart_from_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("revoked.json");
        let now = now_secs();
        // A list made after the start: everything in it is news.
        let mut from_nothing = RevocationWatch::new(&path);
        revoke(&path, "old", now + 600).unwrap();
        assert_eq!(
            from_nothing.poll(),
            Some(RevocationChanges {
                revoked: vec![("old".into(), now + 600)],
                withdrawn: vec![],
            })
        );
        let mut watch = RevocationWatch::new(&path);
        assert_eq!(watch.poll(), None);
        revoke(&path, "new", 0).unwrap();
        revoke(&path, "short", now + 600).unwrap();
        assert_eq!(
            watch.poll(),
            Some(RevocationChanges {
                revoked: vec![("new".into(), 0), ("short".into(), now + 600)],
                withdrawn: vec![],
            })
        );
        // Unreadable: nothing told, and nothing lost once it is readable again.
        let list = std::fs::read(&path).unwrap();
        std::fs::write(&path, b"{ not json").unwrap();
        assert_eq!(watch.poll(), None);
        // A watch started while it is unreadable takes its first reading as the start: what
        // the list held then is no news.
        let mut late = RevocationWatch::new(&path);
        std::fs::write(&path, &list).unwrap();
        assert_eq!(late.poll(), None);
        revoke(&path, "later", 0).unwrap();
        assert_eq!(
            late.poll(),
            Some(RevocationChanges {
                revoked: vec![("later".into(), 0)],
                withdrawn: vec![],
            })
        );
        std::fs::write(&path, b"{ not json").unwrap();
        let expired = now - 3600;
        std::fs::write(
            &path,
            format!(r#"{{"revoked":[{{"jti":"new","exp":0}},{{"jti":"gone","exp":{expired}}}]}}"#),
        )
        .unwrap();
        assert_eq!(
            watch.poll(),
            Some(RevocationChanges {
                revoked: vec![("gone".into(), expired)],
                withdrawn: vec![("old".into(), now + 600), ("short".into(), now + 600)],
            })
        );
        // The expired one dropped (as `revoke` drops it): no withdrawal.
        std::fs::write(&path, br#"{"revoked":[{"jti":"new","exp":0}]}"#).unwrap();
        assert_eq!(watch.poll(), None);
        // A list that disappears is unreadable (the gateway refuses every token), not emptied;
        // back as it was, it changed nothing.
        std::fs::remove_file(&path).unwrap();
        assert_eq!(watch.poll(), None);
        std::fs::write(&path, br#"{"revoked":[{"jti":"new","exp":0}]}"#).unwrap();
        assert_eq!(watch.poll(), None);
        // An expiry edited into the past, then the entry dropped: still taken back.
        std::fs::write(&path, br#"{"revoked":[{"jti":"new","exp":1}]}"#).unwrap();
        assert_eq!(watch.poll(), None);
        std::fs::write(&path, br#"{"revoked":[]}"#).unwrap();
        assert_eq!(
            watch.poll(),
            Some(RevocationChanges {
                revoked: vec![],
                withdrawn: vec![("new".into(), 0)],
            })
        );
        // An expiry no clock reaches is no overflow.
        std::fs::write(
            &path,
            format!(r#"{{"revoked":[{{"jti":"far","exp":{}}}]}}"#, u64::MAX),
        )
        .unwrap();
        assert!(watch.poll().is_some());
        std::fs::write(&path, list).unwrap();
        assert_eq!(
            watch.poll(),
            Some(RevocationChanges {
                revoked: vec![
                    ("new".into(), 0),
                    ("old".into(), now + 600),
                    ("short".into(), now + 600)
                ],
                withdrawn: vec![("far".into(), u64::MAX)],
            })
        );
    }

    #[test]
    fn revocations_made_at_the_same_time_all_land() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lists").join("revoked.json");
        let exp = now_secs() + 600;
        std::thread::scope(|scope| {
            for t in 0..8 {
                let path = &path;
                scope.spawn(move || {
                    for i in 0..10 {
                        revoke(path, &format!("j{t}-{i}"), exp).unwrap();
                    }
                });
            }
        });
        let file = read_revoked(&path).unwrap();
        let ids: std::collections::HashSet<_> = file.revoked.iter().map(|e| &e.jti).collect();
        assert_eq!(ids.len(), 80, "revocations were lost");
    }

    #[test]
    fn refusals_that_mean_the_gateway_cannot_tell_are_told_apart() {
        assert!(Rejection::RevocationUnknown("x".into()).is_unavailable());
        assert!(Rejection::KeysUnavailable("x".into()).is_unavailable());
        assert!(!Rejection::UnknownKey.is_unavailable());
        assert!(!Rejection::Revoked.is_unavailable());
        // An unverified issuer is cut short wherever it is shown.
        let long = "i".repeat(10_000);
        assert_eq!(clip(&long).chars().count(), 65);
        assert_eq!(clip("https://idp"), "https://idp");
    }
}
