//! The dedicated audit writer: one thread owns the log; callers hand it records and wait for
//! the fsync that makes theirs durable. Records that arrive while an fsync runs are written
//! together and covered by the next one (group commit), so throughput grows with concurrency
//! while every acknowledgement still means "on disk".

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tokio::sync::oneshot;

use super::{Record, log::Log};

/// Most records written per fsync.
pub const MAX_BATCH: usize = 4096;

/// Why a record was not made durable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// The log failed (an I/O or fsync error, a full disk); it takes no more records.
    #[error("the audit log cannot be written: {0}")]
    Failed(String),
    /// The writer has stopped.
    #[error("the audit writer has stopped")]
    Stopped,
}

struct Pending {
    record: Record,
    ack: Option<oneshot::Sender<Result<u64, AuditError>>>,
}

/// When checkpoints are signed: after `every` records, or `interval` after the first unsigned
/// one, and when the writer stops.
#[derive(Clone, Copy, Debug)]
pub struct Checkpoints {
    pub every: u64,
    pub interval: Duration,
}

impl Default for Checkpoints {
    fn default() -> Self {
        Self {
            every: 1000,
            interval: Duration::from_secs(5),
        }
    }
}

/// A record handed to the writer: its sequence number now, its durability later.
#[derive(Debug)]
pub struct Ticket {
    pub seq: u64,
    done: Option<oneshot::Receiver<Result<u64, AuditError>>>,
}

impl Ticket {
    /// Waits until the record is on disk.
    pub async fn durable(self) -> Result<u64, AuditError> {
        match self.done {
            Some(done) => done.await.map_err(|_| AuditError::Stopped)?,
            None => Err(AuditError::Stopped),
        }
    }
}

/// Handle to the writer thread.
#[derive(Debug)]
pub struct Writer {
    /// Numbering and sending under one lock keeps sequence numbers in channel order.
    tx: Mutex<Option<(u64, mpsc::Sender<Pending>)>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    failed: Arc<AtomicBool>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("event", &self.record.event)
            .finish()
    }
}

impl Writer {
    /// Starts the thread.
    pub fn start(mut log: Log, checkpoints: Checkpoints) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Pending>();
        let failed = Arc::new(AtomicBool::new(false));
        let flag = failed.clone();
        let next = log.next_seq();
        let thread = std::thread::Builder::new()
            .name("agentgate-audit".into())
            .spawn(move || {
                let mut error: Option<String> = None;
                let fail = |e: &dyn std::fmt::Display, what: &str, error: &mut Option<String>| {
                    tracing::error!(error = %e, "Audit log {what} failed; it takes no more records and fail-closed requests are refused.");
                    flag.store(true, Ordering::SeqCst);
                    *error = Some(e.to_string());
                };
                let mut unsigned_since: Option<Instant> = None;
                loop {
                    let first = match unsigned_since {
                        Some(t) => match rx.recv_timeout(checkpoints.interval.saturating_sub(t.elapsed())) {
                            Ok(p) => Some(p),
                            Err(mpsc::RecvTimeoutError::Timeout) => None,
                            Err(mpsc::RecvTimeoutError::Disconnected) => break,
                        },
                        None => match rx.recv() {
                            Ok(p) => Some(p),
                            Err(_) => break,
                        },
                    };
                    let Some(first) = first else {
                        // The interval passed with records unsigned.
                        unsigned_since = None;
                        if error.is_none()
                            && let Err(e) = log.checkpoint().and_then(|_| log.maybe_rotate())
                        {
                            fail(&e, "checkpoint", &mut error);
                        }
                        continue;
                    };
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(p) => batch.push(p),
                            Err(_) => break,
                        }
                    }
                    if let Some(e) = &error {
                        for p in batch {
                            if let Some(ack) = p.ack {
                                let _ = ack.send(Err(AuditError::Failed(e.clone())));
                            }
                        }
                        continue;
                    }
                    let (mut records, acks): (Vec<Record>, Vec<_>) =
                        batch.into_iter().map(|p| (p.record, p.ack)).unzip();
                    let promised = records.first().map(|r| r.seq);
                    let result = if promised == Some(log.next_seq()) {
                        log.append(&mut records)
                    } else {
                        Err(super::log::LogError::Corrupt {
                            path: "audit writer".into(),
                            problem: format!(
                                "records numbered from {promised:?} arrived for entry {}",
                                log.next_seq()
                            ),
                        })
                    };
                    match result {
                        Ok(()) => {
                            for (r, ack) in records.iter().zip(acks) {
                                if let Some(ack) = ack {
                                    let _ = ack.send(Ok(r.seq));
                                }
                            }
                            unsigned_since.get_or_insert_with(Instant::now);
                            if log.unsigned() >= checkpoints.every {
                                unsigned_since = None;
                                if let Err(e) = log.checkpoint() {
                                    fail(&e, "checkpoint", &mut error);
                                }
                            }
                            if error.is_none()
                                && let Err(e) = log.maybe_rotate()
                            {
                                fail(&e, "rotation", &mut error);
                            }
                        }
                        Err(e) => {
                            // Flag first: whoever hears of the failure sees `failed()` too.
                            fail(&e, "write", &mut error);
                            let text = e.to_string();
                            for ack in acks.into_iter().flatten() {
                                let _ = ack.send(Err(AuditError::Failed(text.clone())));
                            }
                        }
                    }
                }
                if error.is_none()
                    && log.unsigned() > 0
                    && let Err(e) = log.checkpoint()
                {
                    tracing::error!(error = %e, "Final audit checkpoint failed.");
                }
            })?;
        Ok(Self {
            tx: Mutex::new(Some((next, tx))),
            thread: Mutex::new(Some(thread)),
            failed,
        })
    }

    /// Hands a record to the writer, numbering it. The ticket's [`Ticket::durable`] completes
    /// once it is on disk; dropping the ticket does not withdraw the record.
    pub fn submit(&self, mut record: Record) -> Ticket {
        let (ack, done) = oneshot::channel();
        let mut guard = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let Some((next, tx)) = guard.as_mut() else {
            return Ticket { seq: 0, done: None };
        };
        record.seq = *next;
        let seq = *next;
        if tx
            .send(Pending {
                record,
                ack: Some(ack),
            })
            .is_err()
        {
            return Ticket { seq, done: None };
        }
        *next += 1;
        Ticket {
            seq,
            done: Some(done),
        }
    }

    /// Hands a record to the writer and waits until it is durable.
    pub async fn append(&self, record: Record) -> Result<u64, AuditError> {
        self.submit(record).durable().await
    }

    /// Whether the log has failed (new records will be refused).
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// Stops after the records already handed over, signing a final checkpoint. Later
    /// records are refused.
    pub fn close(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::audit::{Event, log};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_are_numbered_once_each_and_signed_at_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let key = SigningKey::from_bytes(&[5; 32]);
        let log = log::Log::open(&path, key.clone(), log::Rotation::default()).unwrap();
        let writer = Arc::new(
            Writer::start(
                log,
                Checkpoints {
                    every: 100,
                    interval: Duration::from_secs(60),
                },
            )
            .unwrap(),
        );
        let mut tasks = Vec::new();
        for t in 0..16 {
            let w = writer.clone();
            tasks.push(tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..50 {
                    let mut r = Record::new(Event::Request);
                    r.target = Some(format!("{t}-{i}"));
                    seqs.push(w.append(r).await.unwrap());
                }
                seqs
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all.sort_unstable();
        assert_eq!(all, (0..800).collect::<Vec<u64>>());
        Arc::into_inner(writer).unwrap().close();
        let s = log::verify(&path, &key.verifying_key(), None).unwrap();
        assert_eq!(s.entries, 800);
        assert_eq!(
            s.last_checkpoint,
            Some(799),
            "the final checkpoint covers everything"
        );
    }

    #[tokio::test]
    async fn a_failed_log_refuses_every_later_record() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[5; 32]);
        let log = log::Log::open(dir.path(), key, log::Rotation::default()).unwrap();
        // /dev/full fails every write with ENOSPC: a disk that is full.
        let full = log::Log::open_on(
            std::fs::File::options()
                .append(true)
                .open("/dev/full")
                .unwrap(),
            log,
        );
        let writer = Writer::start(full, Checkpoints::default()).unwrap();
        let e = writer
            .append(Record::new(Event::Request))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, AuditError::Failed(m) if m.contains("No space left")),
            "{e}"
        );
        assert!(writer.failed());
        assert!(matches!(
            writer.append(Record::new(Event::Request)).await,
            Err(AuditError::Failed(_))
        ));
        writer.close();
    }

    #[tokio::test]
    async fn unsigned_records_are_signed_within_the_interval() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[5; 32]);
        let log = log::Log::open(dir.path(), key.clone(), log::Rotation::default()).unwrap();
        let writer = Writer::start(
            log,
            Checkpoints {
                every: 1_000_000,
                interval: Duration::from_millis(50),
            },
        )
        .unwrap();
        for _ in 0..3 {
            writer.append(Record::new(Event::Request)).await.unwrap();
        }
        let vk = key.verifying_key();
        let mut signed = None;
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            signed = log::verify(dir.path(), &vk, None).unwrap().last_checkpoint;
            if signed == Some(2) {
                break;
            }
        }
        assert_eq!(
            signed,
            Some(2),
            "no checkpoint while the writer stayed open"
        );
        writer.close();
        assert!(
            writer
                .submit(Record::new(Event::Request))
                .durable()
                .await
                .is_err()
        );
    }
}
