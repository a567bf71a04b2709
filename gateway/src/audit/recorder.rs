//! The audit log as the daemon uses it: opened from `[audit]`, fed records that are redacted
//! and capped here, and refused once it has failed.

use serde_json::{Value, value::RawValue};
use sha2::{Digest, Sha256};

use super::{
    Record, hex,
    log::{Log, LogError, Rotation},
    redact,
    writer::{AuditError, Checkpoints, Lazy, Ticket, Writer},
};
use crate::config::audit::AuditConfig;

/// Why the audit log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("audit signing key {path}: {source}")]
    Key {
        path: String,
        source: std::io::Error,
    },
    #[error("audit log: {0}")]
    Log(#[from] LogError),
    #[error("cannot start the audit writer: {0}")]
    Thread(std::io::Error),
}

/// Whether a part is so far beyond its cap that redacting it whole would cost more than the
/// excerpt is worth: such parts are recorded by size and hash only. (An excerpt cut from the
/// raw text could carry a secret the redaction of the parsed whole would have caught.)
fn too_big(raw: &str, cap: usize) -> bool {
    raw.len() > cap.saturating_mul(64).max(64 << 10)
}

/// The open audit log.
#[derive(Debug)]
pub struct Recorder {
    writer: Writer,
    found: super::log::Found,
    config: AuditConfig,
    public_key: String,
    secrets: Option<std::sync::Arc<crate::credentials::Scrubber>>,
}

/// How often a stream waiting for the writer to catch up looks again.
const CATCH_UP_POLL: std::time::Duration = std::time::Duration::from_millis(5);

impl Recorder {
    /// Loads (or creates) the signing key, opens the log (cutting a torn tail) and starts the
    /// writer.
    pub fn open(config: &AuditConfig) -> Result<Self, OpenError> {
        Self::open_with(config, Lazy::default())
    }

    /// [`Recorder::open`] with its own handling of records nobody waits for.
    pub(crate) fn open_with(config: &AuditConfig, lazy: Lazy) -> Result<Self, OpenError> {
        let key = super::load_or_create_key(&config.key_file).map_err(|source| OpenError::Key {
            path: config.key_file.display().to_string(),
            source,
        })?;
        let public_key = hex(key.verifying_key().as_bytes());
        let log = Log::open(
            &config.dir,
            key,
            Rotation {
                segment_bytes: config.segment_bytes,
                segment_age: config.segment_age,
                retain_bytes: config.retain_bytes,
                retain_age: config.retain_age,
                keep_unexported: config.otlp.is_some(),
            },
        )?;
        let found = log.found();
        let writer = Writer::start_with(
            log,
            Checkpoints {
                every: config.checkpoint_every,
                interval: config.checkpoint_interval,
            },
            lazy,
        )
        .map_err(OpenError::Thread)?;
        Ok(Self {
            writer,
            found,
            config: config.clone(),
            public_key,
            secrets: None,
        })
    }

    /// What opening the log found (unsigned entries the next checkpoint signs, a cut tail).
    pub fn found(&self) -> super::log::Found {
        self.found
    }

    /// Whether requests wait for their record and are refused when it cannot be written.
    pub fn fail_closed(&self) -> bool {
        self.config.fail_closed
    }

    /// The gateway's audit public key (hex), for `agentgate audit verify` elsewhere.
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    pub fn config(&self) -> &AuditConfig {
        &self.config
    }

    /// How far the log is durable (what a reader of it may pass on).
    pub fn durable_mark(&self) -> super::writer::DurableMark {
        self.writer.durable_mark()
    }

    /// Hands a record to the writer; the ticket tells when it is durable.
    pub fn submit(&self, record: Record) -> Ticket {
        self.writer.submit(self.scrub(record))
    }

    /// Hands a record to the writer that nobody waits for (written within
    /// [`super::writer::LAZY_FLUSH`]); its sequence number, `None` once closed.
    pub fn record(&self, record: Record) -> Option<u64> {
        self.writer.record(self.scrub(record))
    }

    /// What every record loses before it is written, whoever built it: the secrets in the
    /// calling process's command line (`agent.py --password ...`), which the kernel shows,
    /// and credential-looking values in its target (a resource URI). And any configured
    /// secret, wherever it turns up (an upstream that echoes the credential it was given).
    fn scrub(&self, mut record: Record) -> Record {
        if let Some(Value::Array(args)) = record.process.as_mut().and_then(|p| p.get_mut("cmdline"))
        {
            redact::redact_cmdline(&self.config.redact, args);
        }
        // A resource URI is kept as the target, as sent: `postgres://app:pw@db/x`; a legacy
        // session is named by the endpoint its server announced, whose query is the server's
        // to choose (`?session_id=...&access_token=...`).
        if let Some(target) = record.target.as_mut()
            && let Some(clean) = redact::redact_text(&self.config.redact, target)
        {
            *target = clean;
        }
        // A session keeps a fingerprint when redacted (an `Mcp-Session-Id` may be a JWT): its
        // records still belong together.
        if let Some(session) = record.session.as_mut()
            && let Some(clean) = redact::redact_text(&self.config.redact, session)
        {
            let digest = Sha256::digest(session.as_bytes());
            let print: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
            *session = format!("{clean} #{print}");
        }
        if let Some(secrets) = self.secrets.as_deref().filter(|s| !s.is_empty()) {
            for part in [&mut record.params, &mut record.result] {
                if let Some(raw) = part
                    && let Some(clean) = secrets.scrub_json(raw.get().as_bytes())
                {
                    *part = String::from_utf8(clean)
                        .ok()
                        .and_then(|t| RawValue::from_string(t).ok());
                }
            }
            for text in [
                &mut record.error,
                &mut record.reason,
                &mut record.target,
                &mut record.session,
            ]
            .into_iter()
            .flatten()
            {
                secrets.scrub_string(text);
            }
            for value in [&mut record.detail, &mut record.process]
                .into_iter()
                .flatten()
            {
                secrets.scrub_value(value);
            }
        }
        record
    }

    /// Blanks the values of `secrets` from every record too.
    pub fn with_secrets(mut self, secrets: std::sync::Arc<crate::credentials::Scrubber>) -> Self {
        self.secrets = Some(secrets);
        self
    }

    /// Records what is about to be forwarded. Fail-closed: waits until every record is
    /// durable, and refuses at once when the log has failed. Otherwise hands them over without
    /// waiting, unless the writer is far behind: then it waits for them too (and goes on when
    /// they cannot be written), so requests slow to the writer's pace instead of an ever longer
    /// queue being held in memory. Returns their sequence numbers.
    pub async fn admit(&self, records: Vec<Record>) -> Result<Vec<u64>, AuditError> {
        if !self.config.fail_closed {
            if !self.writer.behind() || self.writer.failed() {
                return records
                    .into_iter()
                    .map(|r| self.record(r).ok_or(AuditError::Stopped))
                    .collect();
            }
            let tickets: Vec<Ticket> = records.into_iter().map(|r| self.submit(r)).collect();
            let mut seqs = Vec::with_capacity(tickets.len());
            for t in tickets {
                let seq = t.seq;
                match t.durable().await {
                    Ok(_) | Err(AuditError::Failed(_)) => seqs.push(seq),
                    Err(e) => return Err(e),
                }
            }
            return Ok(seqs);
        }
        if self.writer.failed() {
            return Err(AuditError::Failed(
                "the log failed earlier; see the gateway's error log".into(),
            ));
        }
        let tickets: Vec<Ticket> = records.into_iter().map(|r| self.submit(r)).collect();
        let mut seqs = Vec::with_capacity(tickets.len());
        for t in tickets {
            seqs.push(t.durable().await?);
        }
        Ok(seqs)
    }

    /// Returns once the writer is no longer far behind (at once, usually). A long stream of
    /// server messages, whose records nobody waits for, calls this between reads: while the
    /// disk cannot keep up, the stream is read at its pace instead of its records piling up
    /// in memory. A failed log does not hold streams up.
    pub async fn caught_up(&self) {
        while self.writer.behind() && !self.writer.failed() {
            tokio::time::sleep(CATCH_UP_POLL).await;
        }
    }

    /// Hands a record to the writer and waits until it is durable.
    pub async fn append(&self, record: Record) -> Result<u64, AuditError> {
        self.writer.append(self.scrub(record)).await
    }

    /// The log failed: it takes no more records.
    pub fn failed(&self) -> bool {
        self.writer.failed()
    }

    /// Parameters as the record keeps them: the JSON text `raw`, redacted, capped.
    pub fn params(&self, raw: Option<&RawValue>) -> (Option<Box<RawValue>>, bool) {
        let Some(raw) = raw else {
            return (None, false);
        };
        self.part(raw, self.config.max_params_bytes)
    }

    /// One part of a message (params, result, error) as a record keeps it: verbatim when it
    /// fits and redaction would change nothing in it (told from the text alone, the common
    /// case), else parsed, redacted, capped and re-encoded. `true` when it was cut.
    fn part(&self, part: &RawValue, max: usize) -> (Option<Box<RawValue>>, bool) {
        let raw = part.get();
        if too_big(raw, max) {
            return (None, true);
        }
        // Configured secrets go before the cap: a cut through one would keep its first half.
        let scrubbed = self
            .secrets
            .as_deref()
            .filter(|s| !s.is_empty())
            .and_then(|s| s.scrub_json(raw.as_bytes()))
            .and_then(|clean| String::from_utf8(clean).ok());
        let raw = scrubbed.as_deref().unwrap_or(raw);
        if raw.len() <= max
            && self
                .config
                .redact
                .raw_prefilter
                .as_ref()
                .is_some_and(|p| p.leaves_alone(raw))
        {
            return match &scrubbed {
                Some(text) => (RawValue::from_string(text.clone()).ok(), false),
                None => (Some(part.to_owned()), false),
            };
        }
        let Some(v) = serde_json::from_str::<Value>(raw).ok() else {
            return (None, false);
        };
        let (v, cut) = self.redact_and_cap(v, raw.len(), max);
        (serde_json::value::to_raw_value(&v).ok(), cut)
    }

    /// Redacts `v` (parsed from `raw_len` bytes of JSON) and caps it at `max` bytes of JSON.
    fn redact_and_cap(&self, mut v: Value, raw_len: usize, max: usize) -> (Value, bool) {
        let touched = redact::redact(&self.config.redact, &mut v);
        // Serializing only to measure is skipped when the input was small enough that even
        // every redaction marker cannot push it over (the common case).
        // Re-encoding can grow numbers (`9e15` prints as 16 digits and ".0"): 5x covers it.
        if raw_len * 5 + touched * (redact::REDACTED.len() + 2) <= max {
            return (v, false);
        }
        redact::cap(v, max)
    }

    /// Fills a record's result members from one server message as received: its size and
    /// hash always, its `result` (or `error`) redacted and capped.
    pub fn result(&self, record: &mut Record, message: &[u8]) {
        record.result_bytes = Some(message.len() as u64);
        record.result_sha256 = Some(hex(&Sha256::digest(message)));
        let text = std::str::from_utf8(message).ok();
        let part = text.and_then(|t| {
            crate::mcp::message::raw_value_at(t, "/result")
                .or_else(|| crate::mcp::message::raw_value_at(t, "/error"))
                .or_else(|| crate::mcp::message::raw_value_at(t, "/params"))
        });
        let Some(part) = part else {
            return;
        };
        (record.result, record.result_truncated) = self.part(part, self.config.max_result_bytes);
    }

    /// Redacts free text (error messages, reasons) that may quote what an agent sent.
    pub fn text(&self, text: &str) -> String {
        redact::redact_text(&self.config.redact, text).unwrap_or_else(|| text.to_owned())
    }

    /// Stops the writer after what was handed over, signing a final checkpoint.
    pub fn close(&self) {
        self.writer.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Event;

    #[test]
    fn parts_far_beyond_their_cap_are_kept_by_size_and_hash_only() {
        let dir = tempfile::tempdir().unwrap();
        let config = AuditConfig {
            dir: dir.path().join("audit"),
            key_file: dir.path().join("audit.key"),
            ..AuditConfig::default()
        };
        let recorder = Recorder::open(&config).unwrap();
        let huge = format!(
            "{{\"password\":\"hunter2\",\"blob\":\"{}\"}}",
            "x".repeat(2 << 20)
        );
        let huge_raw: &RawValue = serde_json::from_str(&huge).unwrap();
        let (v, cut) = recorder.params(Some(huge_raw));
        assert!(v.is_none() && cut);
        let small = r#"{"password":"hunter2","n":1}"#;
        let (v, cut) = recorder.params(serde_json::from_str(small).ok());
        assert!(!cut);
        let v: Value = serde_json::from_str(v.unwrap().get()).unwrap();
        assert_eq!(v["password"], "[redacted]");
        let message = format!("{{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{huge}}}");
        let mut r = Record::new(Event::Response);
        recorder.result(&mut r, message.as_bytes());
        assert!(r.result.is_none() && r.result_truncated);
        assert_eq!(r.result_bytes, Some(message.len() as u64));
        assert_eq!(r.result_sha256.as_ref().map(String::len), Some(64));
        recorder.close();
    }

    /// Configured secrets go before the cap (a cut through one kept its first half), and a
    /// target is redacted like free text (a resource URI with a password).
    #[test]
    fn secrets_are_blanked_before_the_cap_and_targets_are_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let config = AuditConfig {
            dir: dir.path().join("audit"),
            key_file: dir.path().join("audit.key"),
            max_params_bytes: 64,
            ..AuditConfig::default()
        };
        let secret = "Zq8v7Kx2Lm4Np6Rt9Wy3";
        let recorder = Recorder::open(&config)
            .unwrap()
            .with_secrets(std::sync::Arc::new(crate::credentials::Scrubber::of(&[
                secret,
            ])));
        let params = format!("{{\"note\":\"{}{secret}\"}}", "a".repeat(45));
        let (v, cut) = recorder.params(serde_json::from_str(&params).ok());
        let kept = v.unwrap().get().to_owned();
        assert!(!kept.contains(&secret[..4]), "{kept}");
        assert!(kept.contains("[redacted]"), "{kept} (cut: {cut})");
        let mut r = Record::new(Event::Request);
        r.target = Some(format!("postgres://app:hunter2@db/x?k={secret}"));
        let target = recorder.scrub(r).target.unwrap();
        assert!(
            !target.contains("hunter2") && !target.contains(secret),
            "{target}"
        );
        // A legacy session is the endpoint its server announced, query and all.
        let mut r = Record::new(Event::Request);
        r.session = Some(format!(
            "/messages/?session_id=ab12&access_token=eyJhbGciOi&x={secret}"
        ));
        let session = recorder.scrub(r.clone()).session.unwrap();
        assert!(
            session.contains("session_id=ab12")
                && !session.contains("eyJhbGciOi")
                && !session.contains(secret),
            "{session}"
        );
        // Redacted, a session still tells its records from another's.
        assert_eq!(recorder.scrub(r.clone()).session.unwrap(), session);
        let mut other = r;
        other.session = Some("/messages/?session_id=cd34&access_token=eyJhbGciOi".into());
        assert_ne!(recorder.scrub(other).session.unwrap(), session);
        recorder.close();
    }

    /// A log in `dir` whose requests do not wait for their records (unless it falls behind).
    fn not_fail_closed(dir: &std::path::Path) -> AuditConfig {
        AuditConfig {
            dir: dir.join("audit"),
            key_file: dir.join("audit.key"),
            fail_closed: false,
            ..AuditConfig::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streams_wait_while_the_writer_is_behind() {
        let dir = tempfile::tempdir().unwrap();
        let config = not_fail_closed(dir.path());
        let lazy = Lazy {
            flush: std::time::Duration::from_millis(300),
            batch: usize::MAX,
            backlog: 2,
        };
        let recorder = Recorder::open_with(&config, lazy).unwrap();
        let started = std::time::Instant::now();
        recorder.caught_up().await;
        assert!(
            started.elapsed() < std::time::Duration::from_millis(100),
            "not behind: at once"
        );
        for _ in 0..3 {
            recorder.record(Record::new(Event::ServerMessage)).unwrap();
        }
        assert!(recorder.writer.behind());
        recorder.caught_up().await;
        assert!(
            !recorder.writer.behind(),
            "returned once the queue was written"
        );
        assert!(
            started.elapsed() >= std::time::Duration::from_millis(100),
            "it waited"
        );
        recorder.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_wait_for_a_writer_that_falls_behind() {
        let dir = tempfile::tempdir().unwrap();
        let config = not_fail_closed(dir.path());
        // Lazy records are never written on their own here: only a waited-for one (or close)
        // gets the queue written.
        let lazy = Lazy {
            flush: std::time::Duration::from_secs(3600),
            batch: usize::MAX,
            backlog: 4,
        };
        let recorder = Recorder::open_with(&config, lazy).unwrap();
        let key = crate::audit::load_or_create_key(&config.key_file).unwrap();
        let entries = || {
            crate::audit::log::verify(&config.dir, &key.verifying_key(), None)
                .unwrap()
                .entries
        };
        for _ in 0..4 {
            recorder
                .admit(vec![Record::new(Event::Request)])
                .await
                .unwrap();
        }
        assert_eq!(entries(), 0, "below the backlog, nobody waits");
        let seqs = recorder
            .admit(vec![Record::new(Event::Request)])
            .await
            .unwrap();
        assert_eq!(seqs, vec![4]);
        assert_eq!(
            entries(),
            5,
            "behind: the request waited until its record was on disk"
        );
        recorder.close();
    }
}
