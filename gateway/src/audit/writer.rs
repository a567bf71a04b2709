//! The dedicated audit writer: one thread owns the log; callers hand it records and, for the
//! records that gate a request, wait for the fsync that makes them durable. Records that arrive
//! while an fsync runs are written together and covered by the next one (group commit), so
//! throughput grows with concurrency while every acknowledgement still means "on disk".
//!
//! Records nobody waits for (responses, events, everything when not fail-closed) do not wake
//! the writer: they ride along with the next waited-for batch, or are written and synced within
//! [`LAZY_FLUSH`]. That halves the fsyncs of a request/response exchange. Once [`LAZY_BATCH`] of
//! them are queued they are written at once (synced by the same deadline), so that a busy
//! gateway writes a steady trickle instead of a burst that would hold the core for milliseconds.

use std::{
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tokio::sync::oneshot;

use super::{Record, log::Log};

/// Most records written per fsync.
pub const MAX_BATCH: usize = 4096;

/// Longest a record nobody waits for stays in memory before it is written and synced.
pub const LAZY_FLUSH: Duration = Duration::from_millis(100);

/// Records nobody waits for that are written (not synced) as soon as this many are queued.
pub const LAZY_BATCH: usize = 128;

/// Queued records beyond which even callers that need not wait for durability do wait: when
/// the writer falls behind (a slow disk, a starved core), requests slow to its pace instead of
/// the queue growing without bound. Records are never dropped.
pub const LAZY_BACKLOG: usize = 8192;

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

type Ack = oneshot::Sender<Result<u64, AuditError>>;

struct Pending {
    record: Record,
    /// Someone waits for this record to be durable.
    ack: Option<Ack>,
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

/// How long and how many records nobody waits for are held before they are written.
#[derive(Clone, Copy, Debug)]
pub struct Lazy {
    /// Written and synced at most this long after they arrive.
    pub flush: Duration,
    /// Written (synced by `flush`) once this many are queued.
    pub batch: usize,
    /// Queued records beyond which [`Writer::behind`] says so.
    pub backlog: usize,
}

impl Default for Lazy {
    fn default() -> Self {
        Self {
            flush: LAZY_FLUSH,
            batch: LAZY_BATCH,
            backlog: LAZY_BACKLOG,
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

/// What callers and the writer thread share.
#[derive(Default)]
struct Queue {
    /// Sequence number of the next record handed over.
    next: u64,
    items: Vec<Pending>,
    /// A waited-for record is queued: write now.
    urgent: bool,
    /// When the oldest queued record arrived.
    since: Option<Instant>,
    /// The writer sleeps with no deadline: a first lazy record must wake it to set one.
    asleep: bool,
    closed: bool,
}

struct Shared {
    lazy: Lazy,
    queue: Mutex<Queue>,
    wake: Condvar,
    failed: AtomicBool,
    durable: DurableMark,
}

/// How far the log is on disk: every record numbered below [`DurableMark::get`] has been
/// fsynced. Readers of the log (the OTLP exporter) ship nothing past it, so that a power loss
/// cannot take back a record someone else already holds.
#[derive(Clone, Debug, Default)]
pub struct DurableMark(Arc<AtomicU64>);

impl DurableMark {
    /// The sequence number of the first record that may not be on disk yet.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    fn set(&self, next: u64) {
        self.0.store(next, Ordering::Release);
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Handle to the writer thread.
pub struct Writer {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("failed", &self.failed())
            .finish_non_exhaustive()
    }
}

impl Writer {
    /// Starts the thread.
    pub fn start(log: Log, checkpoints: Checkpoints) -> std::io::Result<Self> {
        Self::start_with(log, checkpoints, Lazy::default())
    }

    /// Starts the thread with its own handling of records nobody waits for.
    pub fn start_with(log: Log, checkpoints: Checkpoints, lazy: Lazy) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            lazy,
            queue: Mutex::new(Queue {
                next: log.next_seq(),
                ..Queue::default()
            }),
            wake: Condvar::new(),
            failed: AtomicBool::new(false),
            // What opening found is on disk already.
            durable: DurableMark(Arc::new(AtomicU64::new(log.next_seq()))),
        });
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("agentgate-audit".into())
                .spawn(move || run(log, checkpoints, &shared))?
        };
        Ok(Self {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    fn enqueue(&self, mut record: Record, ack: Option<Ack>) -> Option<u64> {
        let mut q = self.shared.lock();
        if q.closed {
            return None;
        }
        let seq = q.next;
        q.next += 1;
        record.seq = seq;
        let waited = ack.is_some();
        q.items.push(Pending { record, ack });
        q.since.get_or_insert_with(Instant::now);
        if waited && !q.urgent {
            q.urgent = true;
            self.shared.wake.notify_one();
        } else if q.items.len() == self.shared.lazy.batch && !q.urgent {
            self.shared.wake.notify_one();
        } else if q.asleep {
            q.asleep = false;
            self.shared.wake.notify_one();
        }
        Some(seq)
    }

    /// Hands a record to the writer, numbering it; [`Ticket::durable`] completes once it is
    /// on disk. Dropping the ticket does not withdraw the record.
    pub fn submit(&self, record: Record) -> Ticket {
        let (ack, done) = oneshot::channel();
        match self.enqueue(record, Some(ack)) {
            Some(seq) => Ticket {
                seq,
                done: Some(done),
            },
            None => Ticket { seq: 0, done: None },
        }
    }

    /// Hands a record to the writer without waiting for it (it is written within
    /// [`LAZY_FLUSH`], or sooner with the next waited-for record). `None` once closed.
    pub fn record(&self, record: Record) -> Option<u64> {
        self.enqueue(record, None)
    }

    /// Hands a record to the writer and waits until it is durable.
    pub async fn append(&self, record: Record) -> Result<u64, AuditError> {
        self.submit(record).durable().await
    }

    /// Whether the writer is [`Lazy::backlog`] records or more behind.
    pub fn behind(&self) -> bool {
        self.shared.lock().items.len() >= self.shared.lazy.backlog
    }

    /// How far the log is durable.
    pub fn durable_mark(&self) -> DurableMark {
        self.shared.durable.clone()
    }

    /// Whether the log has failed (new records will be refused).
    pub fn failed(&self) -> bool {
        self.shared.failed.load(Ordering::SeqCst)
    }

    /// Stops after the records already handed over, signing a final checkpoint. Later
    /// records are refused.
    pub fn close(&self) {
        {
            let mut q = self.shared.lock();
            q.closed = true;
            self.shared.wake.notify_one();
        }
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

/// Lets the threads that submit records run on until they block, instead of being preempted
/// by the writer each time a record wakes it (SCHED_BATCH turns off wakeup preemption and keeps
/// the thread's fair share). Where the writer shares a core with the request workers, that
/// turns one fsync per few records into one fsync per burst; with a core of its own it changes
/// nothing. Best effort: a refusal only costs batching.
#[allow(unsafe_code)]
fn batch_scheduling() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler(2) on the calling thread (pid 0) with a valid parameter.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
    if rc != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "The audit writer keeps the default scheduling policy.");
    }
}

/// The writer thread.
fn run(mut log: Log, checkpoints: Checkpoints, shared: &Shared) {
    batch_scheduling();
    let lazy = shared.lazy;
    let mut error: Option<String> = None;
    let mut fail = |e: &dyn std::fmt::Display, what: &str, error: &mut Option<String>| {
        if error.is_none() {
            tracing::error!(error = %e, "Audit log {what} failed; it takes no more records and fail-closed requests are refused.");
        }
        // Flag first: whoever hears of the failure sees `failed()` too.
        shared.failed.store(true, Ordering::SeqCst);
        *error = Some(e.to_string());
    };
    let mut unsigned_since: Option<Instant> = None;
    // Arrival of the oldest record written but not yet synced: it is synced by LAZY_FLUSH
    // after that.
    let mut unsynced_since: Option<Instant> = None;
    loop {
        // Wait for a waited-for record, a full lazy batch, the lazy deadline, the checkpoint
        // deadline, or close.
        let (batch, since, closing) = {
            let mut q = shared.lock();
            loop {
                if q.urgent || q.closed || q.items.len() >= lazy.batch {
                    break;
                }
                let flush = earliest(q.since, unsynced_since)
                    .map(|t| (t + lazy.flush).saturating_duration_since(Instant::now()));
                // Capped at the lazy deadline: a lazy record arriving during this wait does not
                // wake the writer (only `asleep` does), so it must be looked for that often.
                let sign = unsigned_since.map(|t| {
                    (t + checkpoints.interval)
                        .saturating_duration_since(Instant::now())
                        .min(lazy.flush)
                });
                let wait = earliest(flush, sign);
                match wait {
                    Some(d) if d.is_zero() => break,
                    Some(d) => {
                        q = shared
                            .wake
                            .wait_timeout(q, d)
                            .unwrap_or_else(|p| p.into_inner())
                            .0
                    }
                    None => {
                        q.asleep = true;
                        q = shared.wake.wait(q).unwrap_or_else(|p| p.into_inner());
                        q.asleep = false;
                    }
                }
            }
            q.urgent = false;
            (std::mem::take(&mut q.items), q.since.take(), q.closed)
        };
        if let Some(e) = &error {
            for p in batch {
                if let Some(ack) = p.ack {
                    let _ = ack.send(Err(AuditError::Failed(e.clone())));
                }
            }
        } else if !batch.is_empty() {
            write(&mut log, batch, &shared.durable, &mut error, &mut fail);
            if error.is_none() {
                unsigned_since.get_or_insert_with(Instant::now);
            }
        }
        if error.is_none() {
            let interval_passed =
                unsigned_since.is_some_and(|t| t.elapsed() >= checkpoints.interval);
            if log.unsigned() >= checkpoints.every || (interval_passed && log.unsigned() > 0) {
                unsigned_since = None;
                if let Err(e) = log.checkpoint() {
                    fail(&e, "checkpoint", &mut error);
                }
            } else if interval_passed {
                unsigned_since = None;
            }
            if error.is_none()
                && let Err(e) = log.maybe_rotate()
            {
                fail(&e, "rotation", &mut error);
            }
            // Whatever was written lazily is synced by the lazy deadline.
            if log.is_unsynced() {
                let oldest = earliest(since, unsynced_since).unwrap_or_else(Instant::now);
                unsynced_since = Some(oldest);
                if error.is_none()
                    && oldest.elapsed() >= lazy.flush
                    && let Err(e) = log.sync()
                {
                    fail(&e, "fsync", &mut error);
                }
            }
            if !log.is_unsynced() {
                unsynced_since = None;
                shared.durable.set(log.next_seq());
            }
        }
        if closing {
            break;
        }
    }
    if error.is_none() {
        let last = if log.unsigned() > 0 {
            log.checkpoint().map(|_| ())
        } else {
            log.sync()
        };
        match last {
            Ok(()) => shared.durable.set(log.next_seq()),
            Err(e) => tracing::error!(error = %e, "Final audit checkpoint failed."),
        }
    }
}

/// The earlier of two optional instants or durations (`None` is no deadline, not the earliest).
fn earliest<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Writes one batch: synced when anyone waits for a record in it.
fn write(
    log: &mut Log,
    batch: Vec<Pending>,
    durable: &DurableMark,
    error: &mut Option<String>,
    fail: &mut impl FnMut(&dyn std::fmt::Display, &str, &mut Option<String>),
) {
    let mut batch = batch;
    while !batch.is_empty() {
        let rest = if batch.len() > MAX_BATCH {
            batch.split_off(MAX_BATCH)
        } else {
            Vec::new()
        };
        let waited = batch.iter().any(|p| p.ack.is_some());
        let (mut records, acks): (Vec<Record>, Vec<Option<Ack>>) =
            batch.into_iter().map(|p| (p.record, p.ack)).unzip();
        let promised = records.first().map(|r| r.seq);
        let result = if promised == Some(log.next_seq()) {
            log.append_with(&mut records, waited)
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
                // Before the acks: whoever hears a record is durable finds the mark past it.
                if !log.is_unsynced() {
                    durable.set(log.next_seq());
                }
                for (r, ack) in records.iter().zip(acks) {
                    if let Some(ack) = ack {
                        let _ = ack.send(Ok(r.seq));
                    }
                }
            }
            Err(e) => {
                fail(&e, "write", error);
                let text = e.to_string();
                for ack in acks.into_iter().flatten() {
                    let _ = ack.send(Err(AuditError::Failed(text.clone())));
                }
                // Later records of this batch cannot follow a failed write either.
                for p in rest {
                    if let Some(ack) = p.ack {
                        let _ = ack.send(Err(AuditError::Failed(text.clone())));
                    }
                }
                return;
            }
        }
        batch = rest;
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

    #[tokio::test]
    async fn records_nobody_waits_for_are_written_soon_and_at_close() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[5; 32]);
        let log = log::Log::open(dir.path(), key.clone(), log::Rotation::default()).unwrap();
        let writer = Writer::start(log, Checkpoints::default()).unwrap();
        assert_eq!(writer.record(Record::new(Event::Response)), Some(0));
        assert_eq!(writer.record(Record::new(Event::Response)), Some(1));
        let vk = key.verifying_key();
        let mut entries = 0;
        for _ in 0..50 {
            tokio::time::sleep(LAZY_FLUSH / 2).await;
            entries = log::verify(dir.path(), &vk, None).unwrap().entries;
            if entries == 2 {
                break;
            }
        }
        assert_eq!(
            entries, 2,
            "lazy records were not written within the flush window"
        );
        // A waited-for record carries the lazy ones queued before it.
        assert_eq!(writer.record(Record::new(Event::Response)), Some(2));
        assert_eq!(writer.append(Record::new(Event::Request)).await, Ok(3));
        assert_eq!(log::verify(dir.path(), &vk, None).unwrap().entries, 4);
        assert_eq!(writer.record(Record::new(Event::GatewayStop)), Some(4));
        writer.close();
        assert_eq!(writer.record(Record::new(Event::Request)), None);
        let s = log::verify(dir.path(), &vk, None).unwrap();
        assert_eq!((s.entries, s.last_checkpoint), (5, Some(4)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_durable_mark_passes_only_records_that_were_synced() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[6; 32]);
        let log = log::Log::open(dir.path(), key.clone(), log::Rotation::default()).unwrap();
        let slow = Duration::from_secs(600);
        let lazy = Lazy {
            flush: slow,
            batch: 2,
            backlog: 100,
        };
        let checkpoints = Checkpoints {
            every: 1000,
            interval: slow,
        };
        let writer = Writer::start_with(log, checkpoints, lazy).unwrap();
        let mark = writer.durable_mark();
        assert_eq!(mark.get(), 0);
        // A full lazy batch is written at once, and synced only by the (distant) deadline.
        writer.record(Record::new(Event::Response));
        writer.record(Record::new(Event::Response));
        let vk = key.verifying_key();
        for _ in 0..100 {
            if log::verify(dir.path(), &vk, None).unwrap().entries == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(log::verify(dir.path(), &vk, None).unwrap().entries, 2);
        assert_eq!(mark.get(), 0, "written, not synced: not durable");
        // A waited-for record is synced, and everything written before it with it.
        assert_eq!(writer.append(Record::new(Event::Request)).await, Ok(2));
        assert_eq!(mark.get(), 3);
        writer.record(Record::new(Event::Response));
        writer.close();
        assert_eq!(mark.get(), 4, "closing syncs the rest");
        // Reopened, what is on disk counts as durable from the start.
        let log = log::Log::open(dir.path(), key, log::Rotation::default()).unwrap();
        let writer = Writer::start(log, Checkpoints::default()).unwrap();
        assert_eq!(writer.durable_mark().get(), 4);
        writer.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_lazy_batch_is_written_without_waiting_for_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[6; 32]);
        let log = log::Log::open(dir.path(), key.clone(), log::Rotation::default()).unwrap();
        // A deadline no test outlives: only the batch size can get these records written.
        let lazy = Lazy {
            flush: Duration::from_secs(3600),
            batch: 8,
            backlog: LAZY_BACKLOG,
        };
        let writer = Writer::start_with(log, Checkpoints::default(), lazy).unwrap();
        let vk = key.verifying_key();
        for _ in 0..7 {
            writer.record(Record::new(Event::Response));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            log::verify(dir.path(), &vk, None).unwrap().entries,
            0,
            "records below the batch size wait for their deadline"
        );
        writer.record(Record::new(Event::Response));
        let mut entries = 0;
        for _ in 0..100 {
            entries = log::verify(dir.path(), &vk, None).unwrap().entries;
            if entries == 8 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(entries, 8, "a full lazy batch was not written");
        writer.close();
        let s = log::verify(dir.path(), &vk, None).unwrap();
        assert_eq!((s.entries, s.last_checkpoint), (8, Some(7)));
    }
}
