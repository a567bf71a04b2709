//! The tamper-evident audit trail: records, their hash chain, signed checkpoints, and the
//! verifier that names the first bad entry.
//!
//! Storage is framed append-only files ([`log`]) rather than SQLite: appends and fsyncs are
//! ours to order (a record is acknowledged only after the fsync that covers it, and an fsync
//! error is never retried as if it had succeeded), a torn tail is recognisable frame by frame,
//! and the chain is over the exact bytes on disk, so no canonical form has to be agreed on.
//!
//! Integrity: entry `i` has the chain hash `h_i = SHA-256(0x00 || h_{i-1} || payload_i)` with
//! `h_{-1}` all zeros; a checkpoint signs (with the gateway's Ed25519 key) the context string
//! `agentgate-audit-checkpoint-v1`, the sequence number and `h_seq`. The `0x00` leaf prefix and
//! the context string keep entry hashes and checkpoint messages from ever being confused.
//!
//! The log is a directory of segment files named for their first entry; each segment after
//! the first opens with the checkpoint that closed the one before (its anchor), so the log
//! still verifies once retention removed the oldest segments. The segment names are the index
//! queries use to skip to a sequence range; records carry both clocks for time ranges.

pub mod log;
pub mod otlp;
pub mod query;
pub mod recorder;
pub mod redact;
pub mod writer;

pub use recorder::Recorder;

pub use ed25519_dalek::SigningKey;
use ed25519_dalek::{Signer, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

/// Version of the record schema below; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// What a record is about.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    #[default]
    Request,
    /// A server's response or error to an agent's request.
    Response,
    /// A server-initiated request or notification on its way to the agent.
    ServerMessage,
    SessionStart,
    SessionEnd,
    PolicyReload,
    GatewayStart,
    GatewayStop,
    EbpfAttach,
    EbpfDetach,
    /// A token issued over the admin API.
    TokenIssued,
    /// A change to the token revocation list: a token revoked, or (`detail.withdrawn`) a
    /// revocation taken back before the token expired.
    TokenRevoked,
    /// An admin API request refused: a wrong or missing admin secret, too many of them, or a
    /// caller who may not see records and identities.
    AdminRefused,
    /// Records read over the admin API (`/audit/query`, `/audit/export`).
    AuditRead,
}

/// One audit record (schema version 1, documented in `docs/AUDIT.md`). Optional members are
/// left out when empty.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub v: u32,
    pub seq: u64,
    /// Wall clock, nanoseconds since the Unix epoch.
    pub time_unix_ns: u64,
    /// Monotonic clock (CLOCK_MONOTONIC), nanoseconds: orders records across wall-clock steps.
    pub mono_ns: u64,
    pub event: Event,
    /// The configured agent name ("unknown" when no agent matched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The agent connection's peer address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// What the kernel and /proc said about the process (redirected connections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<serde_json::Value>,
    /// The verified credential's subject, when the agent presented one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The identity (SPIFFE ID or CN) of the client certificate the connection verified with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// The MCP session id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Tool, prompt or resource the method names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The JSON-RPC id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<serde_json::Value>,
    /// For a response: the record of the request it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_seq: Option<u64>,
    /// Parameters, redacted; a string excerpt when they were larger than the cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Box<RawValue>>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub params_truncated: bool,
    /// A response's result (or error), redacted and capped like `params`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Box<RawValue>>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub result_truncated: bool,
    /// Size of the whole response message as received, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_bytes: Option<u64>,
    /// SHA-256 of the whole response message as received (before redaction), lower-case hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_sha256: Option<String>,
    /// "allow", "deny", "would_deny" (requests); "forward", "replace", "withhold", "refuse"
    /// (server messages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// HTTP status the agent got.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<u64>,
    /// Why the gateway refused or failed the request itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Event-specific facts (reloads, interception, shutdown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// CLOCK_MONOTONIC in nanoseconds.
#[allow(unsafe_code)] // clock_gettime(2) into a local.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// Records are equal when they say the same, whatever the spacing and member order of the
/// JSON texts they keep verbatim.
impl PartialEq for Record {
    fn eq(&self, other: &Self) -> bool {
        serde_json::to_value(self).ok() == serde_json::to_value(other).ok()
    }
}

impl Record {
    /// The parameters, parsed.
    pub fn params_value(&self) -> Option<serde_json::Value> {
        serde_json::from_str(self.params.as_ref()?.get()).ok()
    }

    /// The result (or error), parsed.
    pub fn result_value(&self) -> Option<serde_json::Value> {
        serde_json::from_str(self.result.as_ref()?.get()).ok()
    }

    /// A record of `event` stamped now, with only the required members set.
    pub fn new(event: Event) -> Self {
        Self {
            v: SCHEMA_VERSION,
            time_unix_ns: log::now_unix_ns(),
            mono_ns: monotonic_ns(),
            event,
            ..Self::default()
        }
    }
}

/// A chain hash.
pub type Hash = [u8; 32];

/// `h_{-1}`: what the first entry chains from.
pub const GENESIS: Hash = [0; 32];

/// The chain hash of an entry with `payload` after one with hash `prev`.
pub fn chain(prev: &Hash, payload: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(prev);
    h.update(payload);
    h.finalize().into()
}

const CHECKPOINT_CONTEXT: &[u8] = b"agentgate-audit-checkpoint-v1\0";

/// A signed statement that the log's entry `seq` has chain hash `hash`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub v: u32,
    pub seq: u64,
    /// Lower-case hex.
    pub hash: String,
    pub time_unix_ns: u64,
    /// Lower-case hex Ed25519 public key of the signer.
    pub key: String,
    /// Lower-case hex Ed25519 signature.
    pub sig: String,
}

fn message(seq: u64, hash: &Hash, time_unix_ns: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(CHECKPOINT_CONTEXT.len() + 48);
    m.extend_from_slice(CHECKPOINT_CONTEXT);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash);
    m.extend_from_slice(&time_unix_ns.to_be_bytes());
    m
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    // from_str_radix also takes a sign ("+f"): one value, one spelling (case aside).
    if s.len() != N * 2 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Checkpoint {
    pub fn sign(key: &SigningKey, seq: u64, hash: &Hash, time_unix_ns: u64) -> Self {
        let sig = key.sign(&message(seq, hash, time_unix_ns));
        Self {
            v: SCHEMA_VERSION,
            seq,
            hash: hex(hash),
            time_unix_ns,
            key: hex(key.verifying_key().as_bytes()),
            sig: hex(&sig.to_bytes()),
        }
    }

    /// Checks the signature against `trusted` (the gateway's public key, obtained out of band).
    pub fn verify(&self, trusted: &VerifyingKey) -> Result<Hash, String> {
        let hash: Hash = unhex(&self.hash).ok_or("the checkpoint's hash is not 64 hex digits")?;
        let sig: [u8; 64] =
            unhex(&self.sig).ok_or("the checkpoint's signature is not 128 hex digits")?;
        if self.key != hex(trusted.as_bytes()) {
            return Err(format!(
                "checkpoint {} is signed by another key ({})",
                self.seq, self.key
            ));
        }
        trusted
            .verify_strict(
                &message(self.seq, &hash, self.time_unix_ns),
                &ed25519_dalek::Signature::from_bytes(&sig),
            )
            .map_err(|_| format!("checkpoint {}: the signature does not verify", self.seq))?;
        Ok(hash)
    }
}

/// Parses a hex public key (as `agentgate audit key` prints it).
pub fn parse_public_key(s: &str) -> Result<VerifyingKey, String> {
    let bytes: [u8; 32] = unhex(s.trim()).ok_or("a public key is 64 hex digits")?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| format!("not an Ed25519 public key: {e}"))
}

/// Parses a signing key file's content (64 hex digits).
pub fn parse_secret_key(text: &str) -> Option<SigningKey> {
    unhex::<32>(text.trim()).map(|s| SigningKey::from_bytes(&s))
}

/// Refuses a private key file that group or others may read or write, as ssh does.
pub(crate) fn refuse_shared_key(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{}: other users may read or write this private key (mode {:04o}); \
                 `chmod 600` it, and replace it if it may have been copied",
                path.display(),
                mode & 0o7777
            ),
        ));
    }
    Ok(())
}

/// Loads the signing key from `path`, creating it (mode 0600) when missing. A key that other
/// users may read or write is refused, as ssh refuses such a private key: whoever can read it
/// can sign what the gateway signs.
pub fn load_or_create_key(path: &std::path::Path) -> std::io::Result<SigningKey> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    match std::fs::read(path) {
        Ok(bytes) => {
            refuse_shared_key(path)?;
            let text = String::from_utf8_lossy(&bytes);
            let secret: [u8; 32] = unhex(text.trim()).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: not a 64-hex-digit Ed25519 secret key", path.display()),
                )
            })?;
            Ok(SigningKey::from_bytes(&secret))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret).map_err(|e| std::io::Error::other(e.to_string()))?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)?;
            f.write_all(hex(&secret).as_bytes())?;
            f.sync_all()?;
            // The new name must survive a crash too, or the next start would make another key
            // and nothing signed so far would verify with the key it publishes.
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(SigningKey::from_bytes(&secret))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_verify_only_with_their_key_and_content() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let h = chain(&GENESIS, b"x");
        let cp = Checkpoint::sign(&key, 5, &h, 1);
        assert_eq!(cp.verify(&key.verifying_key()), Ok(h));
        assert!(
            cp.verify(&other.verifying_key())
                .unwrap_err()
                .contains("another key")
        );
        let mut bad = cp.clone();
        bad.seq = 6;
        assert!(
            bad.verify(&key.verifying_key())
                .unwrap_err()
                .contains("does not verify")
        );
        let mut bad = cp.clone();
        bad.hash = hex(&chain(&GENESIS, b"y"));
        assert!(bad.verify(&key.verifying_key()).is_err());
        // Entry hashes and checkpoint messages live in different domains.
        assert_ne!(
            chain(&GENESIS, b""),
            <[u8; 32]>::from(Sha256::digest([0u8; 32]))
        );
    }

    #[test]
    fn keys_are_created_once_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k/audit.key");
        let a = load_or_create_key(&path).unwrap();
        let b = load_or_create_key(&path).unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            parse_public_key(&hex(a.verifying_key().as_bytes())).unwrap(),
            a.verifying_key()
        );
        // A key others may read is refused, naming the fix.
        for mode in [0o640, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = load_or_create_key(&path).unwrap_err().to_string();
            assert!(
                e.contains(&format!("mode {mode:04o}")) && e.contains("chmod 600"),
                "{e}"
            );
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(load_or_create_key(&path).unwrap().to_bytes(), a.to_bytes());
    }
}
