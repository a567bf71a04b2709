//! The dedicated audit writer: one thread owns the log; callers hand it records and wait for
//! the fsync that makes theirs durable. Records that arrive while an fsync runs are written
//! together and covered by the next one (group commit), so throughput grows with concurrency
//! while every acknowledgement still means "on disk".

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::JoinHandle,
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
    ack: oneshot::Sender<Result<u64, AuditError>>,
}

/// Handle to the writer thread.
#[derive(Debug)]
pub struct Writer {
    tx: Option<mpsc::Sender<Pending>>,
    thread: Option<JoinHandle<()>>,
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
    /// Starts the thread. A checkpoint is signed after every `checkpoint_every` records and
    /// when the writer stops.
    pub fn start(mut log: Log, checkpoint_every: u64) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Pending>();
        let failed = Arc::new(AtomicBool::new(false));
        let flag = failed.clone();
        let thread = std::thread::Builder::new()
            .name("agentgate-audit".into())
            .spawn(move || {
                let mut since_checkpoint = 0u64;
                let mut error: Option<String> = None;
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(p) => batch.push(p),
                            Err(_) => break,
                        }
                    }
                    if let Some(e) = &error {
                        for p in batch {
                            let _ = p.ack.send(Err(AuditError::Failed(e.clone())));
                        }
                        continue;
                    }
                    let (mut records, acks): (Vec<Record>, Vec<_>) =
                        batch.into_iter().map(|p| (p.record, p.ack)).unzip();
                    match log.append(&mut records) {
                        Ok(()) => {
                            for (r, ack) in records.iter().zip(acks) {
                                let _ = ack.send(Ok(r.seq));
                            }
                            since_checkpoint += records.len() as u64;
                            if since_checkpoint >= checkpoint_every {
                                since_checkpoint = 0;
                                if let Err(e) = log.checkpoint() {
                                    tracing::error!(error = %e, "Audit checkpoint failed; the log takes no more records.");
                                    flag.store(true, Ordering::SeqCst);
                                    error = Some(e.to_string());
                                }
                            }
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "Audit log write failed; the log takes no more records.");
                            flag.store(true, Ordering::SeqCst);
                            let text = e.to_string();
                            for ack in acks {
                                let _ = ack.send(Err(AuditError::Failed(text.clone())));
                            }
                            error = Some(text);
                        }
                    }
                }
                if error.is_none()
                    && since_checkpoint > 0
                    && let Err(e) = log.checkpoint()
                {
                    tracing::error!(error = %e, "Final audit checkpoint failed.");
                }
            })?;
        Ok(Self {
            tx: Some(tx),
            thread: Some(thread),
            failed,
        })
    }

    /// Hands a record to the writer; completes with its sequence number once it is durable.
    pub async fn append(&self, record: Record) -> Result<u64, AuditError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .as_ref()
            .ok_or(AuditError::Stopped)?
            .send(Pending { record, ack })
            .map_err(|_| AuditError::Stopped)?;
        done.await.map_err(|_| AuditError::Stopped)?
    }

    /// Whether the log has failed (new records will be refused).
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// Stops after the records already handed over, signing a final checkpoint.
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop();
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
        let path = dir.path().join("audit.log");
        let key = SigningKey::from_bytes(&[5; 32]);
        let writer =
            Arc::new(Writer::start(log::Log::open(&path, key.clone()).unwrap(), 100).unwrap());
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
        let path = dir.path().join("audit.log");
        let key = SigningKey::from_bytes(&[5; 32]);
        let log = log::Log::open(&path, key).unwrap();
        // /dev/full fails every write with ENOSPC: a disk that is full.
        let full = log::Log::open_on(
            std::fs::File::options()
                .append(true)
                .open("/dev/full")
                .unwrap(),
            log,
        );
        let writer = Writer::start(full, 10).unwrap();
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
}
