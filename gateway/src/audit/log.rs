//! The log file: frames, appends with fsync, torn-tail recovery, and verification.
//!
//! A frame is `type (1) | length (4, LE) | CRC-32 of type, length and body (4, LE) | body`.
//! A record's body is its chain hash (32 bytes) then its JSON; a checkpoint's body is its JSON.
//! The CRC tells a torn write (the last frame, cut short by a crash) from an edit; the chain
//! hash and the signed checkpoints tell an edit from the original.

use std::{
    fs::File,
    io::{Read, Write},
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use ed25519_dalek::{SigningKey, VerifyingKey};

use super::{Checkpoint, GENESIS, Hash, Record, chain, hex};

const RECORD: u8 = 0xA1;
const CHECKPOINT: u8 = 0xA2;
const HEADER: usize = 9;
/// Larger frames are not ours: refuse instead of allocating.
const MAX_FRAME: u32 = 64 << 20;

/// A frame as read.
#[derive(Debug)]
enum Frame {
    Record {
        offset: u64,
        stored: Hash,
        payload: Vec<u8>,
    },
    Checkpoint {
        offset: u64,
        body: Vec<u8>,
    },
}

/// How a file ends.
#[derive(Debug, PartialEq, Eq)]
enum Tail {
    Clean,
    /// An incomplete or checksum-failing last frame at this offset: a write cut by a crash.
    Torn {
        offset: u64,
    },
}

/// A problem with the log: where, and what.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    Corrupt { path: String, problem: String },
    /// An fsync failed: the kernel may have dropped the dirty pages, so nothing written since
    /// the last good fsync can be assumed durable, and no later fsync can prove otherwise.
    #[error(
        "{path}: fsync failed ({source}); the log accepts no more records until the gateway restarts"
    )]
    Sync {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: an earlier fsync failed; refusing to append")]
    Poisoned { path: String },
}

/// Whether a complete frame with a good checksum starts at `at`.
fn frame_at(bytes: &[u8], at: usize) -> bool {
    let Some(header) = bytes.get(at..at + HEADER) else {
        return false;
    };
    let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]);
    if !matches!(header[0], RECORD | CHECKPOINT) || len > MAX_FRAME {
        return false;
    }
    let Some(body) = bytes.get(at + HEADER..at + HEADER + len as usize) else {
        return false;
    };
    let mut h = crc32fast::Hasher::new();
    h.update(&header[..5]);
    h.update(body);
    h.finalize() == u32::from_le_bytes([header[5], header[6], header[7], header[8]])
}

/// A tail that looks torn at `offset`, unless whole frames follow inside it: a crash leaves
/// part of one frame, while a length field raised by an edit hides the frames after it.
fn torn_or_edited(bytes: &[u8], offset: usize) -> Result<Tail, (u64, String)> {
    match (offset + 1..bytes.len()).find(|&p| frame_at(bytes, p)) {
        Some(p) => Err((
            offset as u64,
            format!(
                "byte {offset}: the frame here runs past the end of the file, yet a whole frame follows at byte {p}: edited, not torn by a crash"
            ),
        )),
        None => Ok(Tail::Torn {
            offset: offset as u64,
        }),
    }
}

fn frames(bytes: &[u8]) -> Result<(Vec<Frame>, Tail), (u64, String)> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let offset = at as u64;
        let Some(header) = bytes.get(at..at + HEADER) else {
            return Ok((out, Tail::Torn { offset }));
        };
        let kind = header[0];
        let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]);
        let crc = u32::from_le_bytes([header[5], header[6], header[7], header[8]]);
        if kind == 0 && bytes[at..].iter().all(|&b| b == 0) {
            // Zeros to the end: blocks a crash allocated but never wrote. A torn tail too.
            return Ok((out, Tail::Torn { offset }));
        }
        if !matches!(kind, RECORD | CHECKPOINT) || len > MAX_FRAME {
            return Err((
                offset,
                format!("byte {offset}: not a frame (type {kind:#04x}, length {len})"),
            ));
        }
        let end = at + HEADER + len as usize;
        let Some(body) = bytes.get(at + HEADER..end) else {
            return torn_or_edited(bytes, at).map(|t| (out, t));
        };
        let mut h = crc32fast::Hasher::new();
        h.update(&header[..5]);
        h.update(body);
        if h.finalize() != crc {
            // A crash tears the last frame; the file may then run on in zeros (blocks allocated
            // for later frames but never written, which start at a block boundary, mostly
            // inside a frame). Every frame ends in a non-zero byte, so a frame whose end lies
            // in the zeros was not written whole.
            let zeros_after = bytes[end - 1] == 0 && bytes[end..].iter().all(|&b| b == 0);
            if end == bytes.len() || zeros_after {
                return torn_or_edited(bytes, at).map(|t| (out, t));
            }
            return Err((
                offset,
                format!("byte {offset}: frame checksum mismatch: edited or corrupted"),
            ));
        }
        out.push(match kind {
            RECORD if body.len() >= 32 => {
                let mut stored = [0u8; 32];
                stored.copy_from_slice(&body[..32]);
                Frame::Record {
                    offset,
                    stored,
                    payload: body[32..].to_vec(),
                }
            }
            RECORD => return Err((offset, format!("byte {offset}: record frame too short"))),
            _ => Frame::Checkpoint {
                offset,
                body: body.to_vec(),
            },
        });
        at = end;
    }
    Ok((out, Tail::Clean))
}

/// One entry of a segment, as readers (query, tail, export) see it.
#[derive(Debug)]
pub enum Item {
    Record {
        record: Box<Record>,
        /// The chain hash stored with it.
        hash: Hash,
        /// The record exactly as hashed.
        payload: Vec<u8>,
    },
    Checkpoint(Checkpoint),
}

/// The complete frames at the start of `bytes`, decoded, and how many bytes they span (a torn
/// or still-being-written last frame is left for the next read). Readers trust the frame
/// checksums only; proving integrity is `verify`'s job.
pub fn read_items(bytes: &[u8]) -> Result<(Vec<Item>, usize), String> {
    let (frames, tail) = frames(bytes).map_err(|(_, m)| m)?;
    let consumed = match tail {
        Tail::Clean => bytes.len(),
        Tail::Torn { offset } => offset as usize,
    };
    let mut out = Vec::with_capacity(frames.len());
    for f in frames {
        out.push(match f {
            Frame::Record {
                offset,
                stored,
                payload,
            } => Item::Record {
                record: Box::new(
                    serde_json::from_slice(&payload)
                        .map_err(|e| format!("byte {offset}: not a record: {e}"))?,
                ),
                hash: stored,
                payload,
            },
            Frame::Checkpoint { offset, body } => Item::Checkpoint(
                serde_json::from_slice(&body)
                    .map_err(|e| format!("byte {offset}: not a checkpoint: {e}"))?,
            ),
        });
    }
    Ok((out, consumed))
}

fn frame(kind: u8, body: &[&[u8]]) -> Vec<u8> {
    let len: usize = body.iter().map(|b| b.len()).sum();
    let mut out = Vec::with_capacity(HEADER + len);
    out.push(kind);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    for b in body {
        out.extend_from_slice(b);
    }
    let mut h = crc32fast::Hasher::new();
    h.update(&out[..5]);
    h.update(&out[HEADER..]);
    let crc = h.finalize().to_le_bytes();
    out[5..9].copy_from_slice(&crc);
    out
}

/// What verification found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub entries: u64,
    pub checkpoints: u64,
    pub segments: u64,
    /// The oldest entry held: above 0 once retention removed older segments.
    pub first_seq: u64,
    /// Sequence number of the last entry, if any.
    pub last_seq: Option<u64>,
    /// Entry covered by the last valid checkpoint.
    pub last_checkpoint: Option<u64>,
    /// A torn last frame (a crash mid-write), which the next start cuts off.
    pub torn_tail_at: Option<u64>,
}

/// Why verification failed: the first bad entry (when one can be named) and what is wrong.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct VerifyError {
    pub entry: Option<u64>,
    pub message: String,
    /// The log could not be read (permissions, I/O): nothing is known about tampering.
    pub unreadable: bool,
}

fn bad(entry: Option<u64>, message: impl Into<String>) -> VerifyError {
    VerifyError {
        entry,
        message: message.into(),
        unreadable: false,
    }
}

fn unreadable(path: &Path, e: std::io::Error) -> VerifyError {
    VerifyError {
        entry: None,
        message: format!("{}: {e}", path.display()),
        unreadable: true,
    }
}

/// Name of the segment whose first entry is `first`.
pub fn segment_name(first: u64) -> String {
    format!("{first:020}.log")
}

/// The segment files of a log directory, oldest first: (first entry, path).
pub fn segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name.strip_suffix(".log")
            && n.len() == 20
            && let Ok(first) = n.parse::<u64>()
        {
            out.push((first, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Walks segments in order, carrying the chain across them.
struct Verifier<'a> {
    key: &'a VerifyingKey,
    trusted: Option<(&'a Checkpoint, Hash)>,
    trusted_seen: bool,
    head: Hash,
    expected: u64,
    s: Summary,
}

impl<'a> Verifier<'a> {
    fn new(key: &'a VerifyingKey, trusted: Option<&'a Checkpoint>) -> Result<Self, VerifyError> {
        let trusted = trusted
            .map(|t| t.verify(key).map(|h| (t, h)))
            .transpose()
            .map_err(|m| bad(None, format!("trusted checkpoint: {m}")))?;
        Ok(Self {
            key,
            trusted,
            trusted_seen: false,
            head: GENESIS,
            expected: 0,
            s: Summary::default(),
        })
    }

    /// Checks one segment. `first` is the entry its file name says it starts at; `last` says
    /// whether it is the newest (the only one that may end in a torn frame).
    fn feed(
        &mut self,
        name: &str,
        first: Option<u64>,
        bytes: &[u8],
        last: bool,
    ) -> Result<(), VerifyError> {
        let (frames, tail) = frames(bytes).map_err(|(_, m)| bad(None, format!("{name}: {m}")))?;
        let mut frames = frames.as_slice();
        // A segment after the first opens with its anchor: the checkpoint that closed the one
        // before, so that it verifies after retention removed its predecessors.
        if let Some(Frame::Checkpoint { body, .. }) = frames.first() {
            let cp: Checkpoint = serde_json::from_slice(body).map_err(|e| {
                bad(
                    Some(self.expected),
                    format!("{name}: unreadable anchor: {e}"),
                )
            })?;
            let hash = cp
                .verify(self.key)
                .map_err(|m| bad(Some(self.expected), format!("{name}: anchor: {m}")))?;
            if let Some(f) = first
                && f != cp.seq + 1
            {
                return Err(bad(
                    Some(self.expected),
                    format!(
                        "{name}: named for entry {f} but anchored after entry {}",
                        cp.seq
                    ),
                ));
            }
            if self.s.segments == 0 {
                self.head = hash;
                self.expected = cp.seq + 1;
                self.s.first_seq = self.expected;
                self.s.last_checkpoint = Some(cp.seq);
                // Retention may have removed the entry a trusted checkpoint names while keeping
                // its signed hash: this anchor.
                if let Some((t, th)) = &self.trusted
                    && t.seq == cp.seq
                {
                    if &hash != th {
                        return Err(bad(
                            Some(cp.seq),
                            format!(
                                "{name}: its anchor for entry {} differs from the trusted checkpoint: the log was rewritten up to it",
                                cp.seq
                            ),
                        ));
                    }
                    self.trusted_seen = true;
                }
            } else if cp.seq + 1 != self.expected || hash != self.head {
                return Err(bad(
                    Some(self.expected),
                    format!(
                        "{name}: does not continue the segment before it (which ends at entry {}; this one starts after entry {}): segments were removed or changed",
                        self.expected.wrapping_sub(1),
                        cp.seq
                    ),
                ));
            }
            frames = &frames[1..];
        } else if let Some(f) = first
            && f > 0
        {
            // Rotation writes a segment's anchor before the segment gets its name, so a crash
            // cannot leave one without it: it was cut or emptied. Appending to it would restart
            // the chain at entry 0.
            return Err(bad(
                Some(f),
                format!(
                    "{name}: named for entry {f} but does not open with the checkpoint that anchors it: it was cut or emptied"
                ),
            ));
        }
        self.s.segments += 1;
        for f in frames {
            self.frame(f)?;
        }
        if let Tail::Torn { offset } = tail {
            if !last {
                return Err(bad(
                    Some(self.expected),
                    format!(
                        "{name}: ends in a torn frame at byte {offset} but is not the newest segment"
                    ),
                ));
            }
            self.s.torn_tail_at = Some(offset);
        }
        Ok(())
    }

    fn frame(&mut self, f: &Frame) -> Result<(), VerifyError> {
        let expected = self.expected;
        match f {
            Frame::Record {
                offset,
                stored,
                payload,
            } => {
                let record: Record = serde_json::from_slice(payload).map_err(|e| {
                    bad(
                        Some(expected),
                        format!("entry {expected} (byte {offset}): not a record: {e}"),
                    )
                })?;
                if record.seq != expected {
                    return Err(bad(
                        Some(expected),
                        format!(
                            "entry {expected} (byte {offset}): found sequence {} instead: entries were deleted, inserted or reordered",
                            record.seq
                        ),
                    ));
                }
                let h = chain(&self.head, payload);
                if &h != stored {
                    return Err(bad(
                        Some(expected),
                        format!(
                            "entry {expected}: its content does not match its chain hash: it (or the entry before it) was edited"
                        ),
                    ));
                }
                self.head = h;
                if let Some((t, th)) = &self.trusted
                    && t.seq == expected
                {
                    if &h != th {
                        return Err(bad(
                            Some(expected),
                            format!(
                                "entry {expected} differs from the trusted checkpoint: the log was rewritten up to it"
                            ),
                        ));
                    }
                    self.trusted_seen = true;
                }
                self.s.entries += 1;
                self.s.last_seq = Some(expected);
                self.expected += 1;
            }
            Frame::Checkpoint { offset, body } => {
                let cp: Checkpoint = serde_json::from_slice(body).map_err(|e| {
                    bad(
                        self.s.last_seq,
                        format!("checkpoint at byte {offset}: unreadable: {e}"),
                    )
                })?;
                let signed = cp.verify(self.key).map_err(|m| bad(self.s.last_seq, m))?;
                if Some(cp.seq) != self.s.last_seq || signed != self.head {
                    let after = self.s.last_checkpoint.map_or(self.s.first_seq, |c| c + 1);
                    return Err(bad(
                        Some(after),
                        format!(
                            "checkpoint for entry {} does not match the log: entries {after}..={} were changed after it was signed",
                            cp.seq, cp.seq
                        ),
                    ));
                }
                self.s.checkpoints += 1;
                self.s.last_checkpoint = Some(cp.seq);
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<Summary, VerifyError> {
        if let Some((t, _)) = self.trusted
            && !self.trusted_seen
        {
            if t.seq < self.s.first_seq {
                return Err(bad(
                    Some(t.seq),
                    format!(
                        "the log no longer holds entry {} of the trusted checkpoint: it starts at entry {} (older segments were pruned or deleted)",
                        t.seq, self.s.first_seq
                    ),
                ));
            }
            return Err(bad(
                Some(self.expected),
                format!(
                    "the log ends before entry {} of the trusted checkpoint: it was truncated",
                    t.seq
                ),
            ));
        }
        Ok(self.s)
    }
}

/// Verifies a log (a directory of segments, or one segment file) against `key`; with `trusted`
/// (an earlier checkpoint kept elsewhere), also proves the log still holds what that checkpoint
/// covered: it only grew.
pub fn verify(
    path: &Path,
    key: &VerifyingKey,
    trusted: Option<&Checkpoint>,
) -> Result<Summary, VerifyError> {
    verify_range(path, key, trusted, None, None)
}

/// [`verify`] over the segments that hold entries `from..=to` only: the first of them starts
/// from its signed anchor, so the range is checked without reading what came before.
pub fn verify_range(
    path: &Path,
    key: &VerifyingKey,
    trusted: Option<&Checkpoint>,
    from: Option<u64>,
    to: Option<u64>,
) -> Result<Summary, VerifyError> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| unreadable(p, e));
    let mut v = Verifier::new(key, trusted)?;
    if path.is_dir() {
        let segs = segments(path).map_err(|e| unreadable(path, e))?;
        if segs.is_empty() {
            return Err(bad(
                None,
                format!("{}: holds no audit segments", path.display()),
            ));
        }
        for (i, (first, p)) in segs.iter().enumerate() {
            let next = segs.get(i + 1).map(|(f, _)| *f);
            if from.is_some_and(|f| next.is_some_and(|n| n <= f)) {
                continue;
            }
            if to.is_some_and(|t| *first > t) {
                break;
            }
            let name = p
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            v.feed(&name, Some(*first), &read(p)?, next.is_none())?;
        }
    } else {
        v.feed(&path.display().to_string(), None, &read(path)?, true)?;
    }
    v.finish()
}

/// When segments are closed and removed.
#[derive(Clone, Copy, Debug)]
pub struct Rotation {
    pub segment_bytes: u64,
    pub segment_age: Duration,
    /// 0: no size limit.
    pub retain_bytes: u64,
    pub retain_age: Option<Duration>,
    /// An exporter ships the log from its cursor file (`otlp.cursor`): segments it has not
    /// shipped yet are kept past the retention limits.
    pub keep_unexported: bool,
}

impl Default for Rotation {
    fn default() -> Self {
        Self {
            segment_bytes: 64 << 20,
            segment_age: Duration::from_secs(86_400),
            retain_bytes: 0,
            retain_age: None,
            keep_unexported: false,
        }
    }
}

/// The log open for appending: a directory of segments, the newest of which takes appends.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    /// Held (flock) while open: two writers would fork the chain.
    _lock: File,
    key: SigningKey,
    rotation: Rotation,
    next_seq: u64,
    head: Hash,
    size: u64,
    segment_opened: Instant,
    /// The entry the current segment starts at: a segment holding no entry past its anchor
    /// is not rotated again.
    segment_first: u64,
    unsigned: u64,
    /// What opening found: entries no checkpoint signed yet, and a cut torn tail.
    found: Found,
    /// Written since the last fdatasync.
    unsynced: bool,
    poisoned: bool,
}

/// What [`Log::open`] found in the newest segment. Entries written after the last checkpoint
/// are signed by the next one, whoever wrote them: while the gateway was down, someone with
/// write access could have rewritten them (no key is needed for the chain). The start record
/// says how many it adopted, so that the signature covering them also covers that fact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Found {
    /// Entries after the last checkpoint (or all, without one).
    pub unsigned: u64,
    /// The first of them.
    pub unsigned_from: u64,
    /// Bytes cut off as a torn last frame.
    pub torn_bytes: u64,
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir).and_then(|d| d.sync_all())
}

/// Writes `bytes` to a new file named `path`, or `path.1`, `path.2`... when that exists (the
/// same tear twice): `O_EXCL`, so never through a link someone planted. Returns the name.
fn write_aside(path: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let mut name = path.to_path_buf();
    for n in 1..=100 {
        match File::options().write(true).create_new(true).open(&name) {
            Ok(mut f) => {
                f.write_all(bytes)?;
                f.sync_all()?;
                return Ok(name);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                name = path.with_extension(format!(
                    "{}.{n}",
                    path.extension().and_then(|e| e.to_str()).unwrap_or("torn")
                ));
            }
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        "a hundred torn tails are kept aside at this offset already",
    ))
}

/// Refuses an audit directory that other users may write to, or that another user owns:
/// whoever can create files there can plant links the gateway would write through, and
/// remove or replace segments.
fn refuse_shared_dir(dir: &Path) -> Result<(), LogError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir).map_err(|source| LogError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let problem = if meta.mode() & 0o022 != 0 {
        format!(
            "group or others may write to it (mode {:04o}): `chmod go-w` it",
            meta.mode() & 0o7777
        )
    } else if meta.uid() != crate::ebpf::effective_uid() {
        format!(
            "it belongs to uid {}, not to the gateway's user: `chown` it",
            meta.uid()
        )
    } else {
        return Ok(());
    };
    Err(LogError::Corrupt {
        path: dir.display().to_string(),
        problem,
    })
}

/// The file that says a chain began in a directory: with it there, a directory without
/// segments had them deleted.
pub const CHAIN_MARKER: &str = "CHAIN";

impl Log {
    /// Opens (or creates) the log in `dir`. A torn last frame is cut off and synced; anything
    /// else in the newest segment that does not verify refuses the open, since appending to it
    /// would bury the evidence. Older segments are `agentgate audit verify`'s to check.
    pub fn open(dir: &Path, key: SigningKey, rotation: Rotation) -> Result<Self, LogError> {
        let io = |p: &Path| {
            let path = p.display().to_string();
            move |source| LogError::Io { path, source }
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
        refuse_shared_dir(dir)?;
        let lock_path = dir.join("LOCK");
        let lock = File::options()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        // flock(2), released when the file is closed (also by a crash).
        if lock.try_lock().is_err() {
            return Err(LogError::Corrupt {
                path: dir.display().to_string(),
                problem:
                    "another process has this audit log open (two writers would fork the chain)"
                        .into(),
            });
        }
        let mut segs = segments(dir).map_err(io(dir))?;
        let marker = dir.join(CHAIN_MARKER);
        // Logs older than the marker say so by an export position, if by anything.
        let held_a_log = marker.exists() || dir.join(super::otlp::CURSOR_FILE).exists();
        if segs.is_empty() && held_a_log {
            // Starting a new chain here would pass the deletion off as a fresh log.
            return Err(LogError::Corrupt {
                path: dir.display().to_string(),
                problem: format!(
                    "the directory held an audit log (its {CHAIN_MARKER} file or export position is there) and has no segment now: they were deleted; move the directory aside to start a new log"
                ),
            });
        }
        if segs.is_empty() {
            let p = dir.join(segment_name(0));
            File::options()
                .write(true)
                .create_new(true)
                .open(&p)
                .map_err(io(&p))?;
            sync_dir(dir).map_err(io(dir))?;
            segs.push((0, p));
        }
        // Made once the first segment is durable (and again if a crash came between), so that
        // its presence always means a chain began here.
        if !marker.exists() {
            File::options()
                .write(true)
                .create_new(true)
                .open(&marker)
                .and_then(|mut f| {
                    f.write_all(b"an agentgate audit log: its chain began in this directory\n")?;
                    f.sync_all()
                })
                .map_err(io(&marker))?;
            sync_dir(dir).map_err(io(dir))?;
        }
        let (first, path) = segs.pop().unwrap_or_else(|| (0, dir.join(segment_name(0))));
        let mut file = File::options()
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io(&path))?;
        let name = path.display().to_string();
        let vk = key.verifying_key();
        let mut v = Verifier::new(&vk, None).map_err(|e| LogError::Corrupt {
            path: name.clone(),
            problem: e.message,
        })?;
        v.feed(&name, Some(first), &bytes, true)
            .map_err(|e| LogError::Corrupt {
                path: name.clone(),
                problem: e.message,
            })?;
        let mut size = bytes.len() as u64;
        let mut torn_bytes = 0;
        if let Some(offset) = v.s.torn_tail_at {
            torn_bytes = size - offset;
            // Kept aside, not thrown away: an edit can look like a crash, and the bytes are the
            // evidence either way.
            let aside = path.with_extension(format!("log.torn-{offset}"));
            let aside = write_aside(&aside, &bytes[offset as usize..]).map_err(io(&aside))?;
            // The evidence's name must be durable before the cut is.
            sync_dir(dir).map_err(io(dir))?;
            tracing::warn!(path = %name, offset, cut = size - offset, kept = %aside.display(), "Cut a torn audit frame left by a crash.");
            file.set_len(offset).map_err(io(&path))?;
            size = offset;
        }
        // What a crashed process wrote lazily may still be in the page cache only: synced now,
        // before anything counts it durable (the OTLP exporter ships up to that mark). The
        // file's directory entry must be durable too (a new file after a crash).
        file.sync_all().map_err(io(&path))?;
        sync_dir(dir).map_err(io(dir))?;
        let unsigned = match (v.s.last_seq, v.s.last_checkpoint) {
            (Some(l), Some(c)) => l.saturating_sub(c),
            (Some(l), None) => l + 1 - v.s.first_seq,
            _ => 0,
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            path,
            file,
            _lock: lock,
            key,
            rotation,
            next_seq: v.expected,
            head: v.head,
            size,
            segment_opened: Instant::now(),
            segment_first: first,
            unsigned,
            found: Found {
                unsigned,
                unsigned_from: v.expected - unsigned,
                torn_bytes,
            },
            unsynced: false,
            poisoned: false,
        })
    }

    /// What opening found.
    pub fn found(&self) -> Found {
        self.found
    }

    /// Sequence number the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Records appended since the last checkpoint.
    pub fn unsigned(&self) -> u64 {
        self.unsigned
    }

    /// Appends records (numbering them) and makes them durable with one fsync. On error none
    /// of them may be acknowledged.
    pub fn append(&mut self, records: &mut [Record]) -> Result<(), LogError> {
        self.append_with(records, true)
    }

    /// Appends records; with `sync` false they reach the page cache only, until the next
    /// [`Log::sync`], durable append or checkpoint.
    pub fn append_with(&mut self, records: &mut [Record], sync: bool) -> Result<(), LogError> {
        if self.poisoned {
            return Err(LogError::Poisoned {
                path: self.path.display().to_string(),
            });
        }
        let mut out = Vec::new();
        let mut head = self.head;
        let mut seq = self.next_seq;
        for r in records.iter_mut() {
            r.seq = seq;
            // Framed in place: header, room for the hash, the JSON; then hash, length, CRC.
            let start = out.len();
            out.extend_from_slice(&[RECORD, 0, 0, 0, 0, 0, 0, 0, 0]);
            out.extend_from_slice(&[0; 32]);
            serde_json::to_writer(&mut out, r).map_err(|e| LogError::Corrupt {
                path: self.path.display().to_string(),
                problem: e.to_string(),
            })?;
            head = chain(&head, &out[start + HEADER + 32..]);
            out[start + HEADER..start + HEADER + 32].copy_from_slice(&head);
            let len = (out.len() - start - HEADER) as u32;
            out[start + 1..start + 5].copy_from_slice(&len.to_le_bytes());
            let mut h = crc32fast::Hasher::new();
            h.update(&out[start..start + 5]);
            h.update(&out[start + HEADER..]);
            out[start + 5..start + HEADER].copy_from_slice(&h.finalize().to_le_bytes());
            seq += 1;
        }
        self.write(&out, sync)?;
        self.head = head;
        self.unsigned += seq - self.next_seq;
        self.next_seq = seq;
        Ok(())
    }

    /// Signs the current head and appends the checkpoint.
    pub fn checkpoint(&mut self) -> Result<Option<Checkpoint>, LogError> {
        let Some(last) = self.next_seq.checked_sub(1) else {
            return Ok(None);
        };
        let cp = Checkpoint::sign(&self.key, last, &self.head, now_unix_ns());
        let body = serde_json::to_vec(&cp).map_err(|e| LogError::Corrupt {
            path: self.path.display().to_string(),
            problem: e.to_string(),
        })?;
        self.write(&frame(CHECKPOINT, &[&body]), true)?;
        self.unsigned = 0;
        Ok(Some(cp))
    }

    /// Starts a new segment when the current one is full or old enough, then applies retention.
    pub fn maybe_rotate(&mut self) -> Result<(), LogError> {
        let due = self.size >= self.rotation.segment_bytes
            || self.segment_opened.elapsed() >= self.rotation.segment_age;
        if due && self.next_seq > self.segment_first && self.size > 0 {
            self.rotate()?;
        }
        Ok(())
    }

    /// Closes the current segment with a checkpoint and opens the next one, anchored by that
    /// checkpoint. The new file appears complete (written aside, then renamed) or not at all.
    pub fn rotate(&mut self) -> Result<(), LogError> {
        let Some(cp) = self.checkpoint()? else {
            return Ok(());
        };
        let path = self.dir.join(segment_name(self.next_seq));
        let aside = self
            .dir
            .join(format!("{}.new", segment_name(self.next_seq)));
        let fail = |p: &Path, source| LogError::Io {
            path: p.display().to_string(),
            source,
        };
        let body = serde_json::to_vec(&cp).map_err(|e| LogError::Corrupt {
            path: aside.display().to_string(),
            problem: e.to_string(),
        })?;
        let anchor = frame(CHECKPOINT, &[&body]);
        if path.exists() {
            // Only a chain that went backwards could name an existing segment: never overwrite
            // one.
            self.poisoned = true;
            return Err(LogError::Corrupt {
                path: path.display().to_string(),
                problem: "the next segment's file exists already; refusing to overwrite it".into(),
            });
        }
        let result = (|| {
            // A leftover of a crash is removed (a link, not what it points to), then the file is
            // made anew: never opened through a link someone planted.
            match std::fs::remove_file(&aside) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            let mut f = File::options().write(true).create_new(true).open(&aside)?;
            f.write_all(&anchor)?;
            f.sync_all()?;
            std::fs::rename(&aside, &path)?;
            sync_dir(&self.dir)?;
            File::options().read(true).append(true).open(&path)
        })();
        let file = match result {
            Ok(f) => f,
            Err(source) => {
                self.poisoned = true;
                return Err(fail(&path, source));
            }
        };
        self.file = file;
        self.path = path;
        self.size = anchor.len() as u64;
        self.segment_opened = Instant::now();
        self.segment_first = self.next_seq;
        self.prune();
        Ok(())
    }

    /// Removes the oldest closed segments beyond the retention limits. Best effort: a segment
    /// that cannot be removed is kept, which costs space, not integrity.
    fn prune(&self) {
        let (bytes, age) = (self.rotation.retain_bytes, self.rotation.retain_age);
        if bytes == 0 && age.is_none() {
            return;
        }
        let Ok(segs) = segments(&self.dir) else {
            return;
        };
        // The next entry the exporter ships: a segment holding it or anything after stays. A
        // cursor past the log's end (the log replaced or cut, the file edited) proves nothing
        // shipped: the exporter starts over from the oldest record.
        let exported = self.rotation.keep_unexported.then(|| {
            let cursor = super::otlp::cursor(&self.dir);
            if cursor > self.next_seq { 0 } else { cursor }
        });
        let firsts: Vec<u64> = segs.iter().map(|(f, _)| *f).collect();
        let sized: Vec<(PathBuf, u64, Option<std::time::SystemTime>)> = segs
            .into_iter()
            .map(|(_, p)| {
                let m = std::fs::metadata(&p).ok();
                let len = m.as_ref().map_or(0, |m| m.len());
                let modified = m.and_then(|m| m.modified().ok());
                (p, len, modified)
            })
            .collect();
        let mut total: u64 = sized.iter().map(|(_, l, _)| l).sum();
        let mut removed = 0;
        for (i, (p, len, modified)) in sized.iter().enumerate() {
            if *p == self.path {
                break;
            }
            let too_big = bytes > 0 && total > bytes;
            let too_old = match (age, modified) {
                (Some(a), Some(m)) => m.elapsed().is_ok_and(|e| e > a),
                _ => false,
            };
            if !too_big && !too_old {
                break;
            }
            // The segment ends where the next one starts.
            if let Some(next) = exported
                && firsts.get(i + 1).is_none_or(|end| *end > next)
            {
                tracing::warn!(path = %p.display(), exported_up_to = next, "Keeping an audit segment past retention: the OTLP exporter has not shipped it yet.");
                break;
            }
            match std::fs::remove_file(p) {
                Ok(()) => {
                    total -= len;
                    removed += 1;
                }
                Err(error) => {
                    tracing::warn!(path = %p.display(), %error, "Cannot remove an expired audit segment.");
                    break;
                }
            }
        }
        if removed > 0 {
            let _ = sync_dir(&self.dir);
            tracing::info!(removed, "Removed audit segments past retention.");
        }
    }

    fn write(&mut self, bytes: &[u8], sync: bool) -> Result<(), LogError> {
        if self.poisoned {
            return Err(LogError::Poisoned {
                path: self.path.display().to_string(),
            });
        }
        if let Err(source) = self.file.write_all(bytes) {
            // A partial write leaves a torn frame that the next open cuts; stop here so that no
            // later frame lands behind it.
            self.poisoned = true;
            return Err(LogError::Io {
                path: self.path.display().to_string(),
                source,
            });
        }
        self.size += bytes.len() as u64;
        self.unsynced = true;
        if sync {
            self.sync()?;
        }
        Ok(())
    }

    /// Whether records were written since the last fsync.
    pub fn is_unsynced(&self) -> bool {
        self.unsynced
    }

    /// Makes everything written so far durable (one fdatasync; nothing when all of it is).
    pub fn sync(&mut self) -> Result<(), LogError> {
        if self.poisoned {
            return Err(LogError::Poisoned {
                path: self.path.display().to_string(),
            });
        }
        if !self.unsynced {
            return Ok(());
        }
        if let Err(source) = self.file.sync_data() {
            // The kernel may have dropped the dirty pages: nothing since the last good fsync
            // can be called durable, and a retry could not prove otherwise.
            self.poisoned = true;
            return Err(LogError::Sync {
                path: self.path.display().to_string(),
                source,
            });
        }
        self.unsynced = false;
        Ok(())
    }

    /// The same log writing to another file (tests: a device that fails every write).
    #[cfg(test)]
    pub(crate) fn open_on(file: File, mut log: Log) -> Log {
        log.file = file;
        log
    }

    /// The current head, as hex (for logs).
    pub fn head_hex(&self) -> String {
        hex(&self.head)
    }
}

/// Wall clock, nanoseconds since the Unix epoch.
pub fn now_unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Event;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[3; 32])
    }

    /// A log of `n` records with a checkpoint after every `every`.
    fn sample(dir: &Path, n: u64, every: u64) -> PathBuf {
        let path = dir.join(segment_name(0));
        let mut log = Log::open(dir, key(), Rotation::default()).unwrap();
        for i in 0..n {
            let mut r = Record::new(Event::Request);
            r.method = Some("tools/call".into());
            r.target = Some(format!("tool{i}"));
            log.append(std::slice::from_mut(&mut r)).unwrap();
            if (i + 1) % every == 0 {
                log.checkpoint().unwrap();
            }
        }
        path
    }

    fn split(path: &Path) -> Vec<Vec<u8>> {
        let bytes = std::fs::read(path).unwrap();
        let (fs, _) = frames(&bytes).unwrap();
        let mut offsets: Vec<usize> = fs
            .iter()
            .map(|f| match f {
                Frame::Record { offset, .. } | Frame::Checkpoint { offset, .. } => *offset as usize,
            })
            .collect();
        offsets.push(bytes.len());
        offsets
            .windows(2)
            .map(|w| bytes[w[0]..w[1]].to_vec())
            .collect()
    }

    fn reframe(raw: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let kind = raw[0];
        let mut body = raw[HEADER..].to_vec();
        edit(&mut body);
        frame(kind, &[&body])
    }

    fn verify_err(path: &Path) -> VerifyError {
        verify(path, &key().verifying_key(), None).unwrap_err()
    }

    #[test]
    fn an_untouched_log_verifies_and_reopens_where_it_left_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = sample(dir.path(), 10, 4);
        let s = verify(&path, &key().verifying_key(), None).unwrap();
        assert_eq!(
            (s.entries, s.checkpoints, s.last_seq, s.last_checkpoint),
            (10, 2, Some(9), Some(7))
        );
        let mut log = Log::open(path.parent().unwrap(), key(), Rotation::default()).unwrap();
        assert_eq!(log.next_seq(), 10);
        let mut r = Record::new(Event::GatewayStop);
        log.append(std::slice::from_mut(&mut r)).unwrap();
        assert_eq!(r.seq, 10);
        assert_eq!(
            verify(&path, &key().verifying_key(), None).unwrap().entries,
            11
        );
    }

    #[test]
    fn every_kind_of_tampering_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = sample(dir.path(), 12, 4);
        let original = split(&path);
        // frames: r0 r1 r2 r3 c3 r4 r5 r6 r7 c7 r8 r9 r10 r11 c11
        let write = |frames: &[Vec<u8>]| std::fs::write(&path, frames.concat()).unwrap();

        // An edit that keeps the frame's checksum valid but not the chain.
        let mut f = original.clone();
        f[5] = reframe(&f[5], |b| {
            let text = String::from_utf8(b[32..].to_vec())
                .unwrap()
                .replace("tool4", "tool5");
            b.truncate(32);
            b.extend_from_slice(text.as_bytes());
        });
        write(&f);
        let e = verify_err(&path);
        assert_eq!(e.entry, Some(4), "{e}");
        assert!(
            e.message.contains("entry 4: its content does not match"),
            "{e}"
        );

        // An edit that also rewrites the entry's own hash: the next entry no longer chains.
        let mut f = original.clone();
        f[5] = reframe(&f[5], |b| {
            let text = String::from_utf8(b[32..].to_vec())
                .unwrap()
                .replace("tool4", "tool5");
            let prev: Hash = {
                let (fs, _) = frames(&original[..5].concat()).unwrap();
                match &fs[3] {
                    Frame::Record { stored, .. } => *stored,
                    _ => unreachable!(),
                }
            };
            let h = chain(&prev, text.as_bytes());
            b.clear();
            b.extend_from_slice(&h);
            b.extend_from_slice(text.as_bytes());
        });
        write(&f);
        let e = verify_err(&path);
        assert_eq!(e.entry, Some(5), "{e}");

        // A raw byte flip: the frame checksum catches it.
        let mut f = original.clone();
        let last = f[6].len() - 3;
        f[6][last] ^= 1;
        write(&f);
        assert!(verify_err(&path).message.contains("checksum mismatch"));

        // Deletion, insertion, reordering.
        let mut f = original.clone();
        f.remove(6);
        write(&f);
        let e = verify_err(&path);
        assert_eq!(e.entry, Some(5));
        assert!(e.message.contains("found sequence 6"), "{e}");
        let mut f = original.clone();
        f.insert(6, original[6].clone());
        write(&f);
        assert!(verify_err(&path).message.contains("found sequence 5"));
        let mut f = original.clone();
        f.swap(6, 7);
        write(&f);
        assert_eq!(verify_err(&path).entry, Some(5));

        // A consistent rewrite of everything after entry 4 (hashes recomputed) still fails at
        // the signed checkpoint, which names the range.
        let mut f = original.clone();
        let mut head = {
            let (fs, _) = frames(&original[..5].concat()).unwrap();
            match &fs[3] {
                Frame::Record { stored, .. } => *stored,
                _ => unreachable!(),
            }
        };
        for i in [5, 6, 7, 8] {
            f[i] = reframe(&f[i], |b| {
                let text = String::from_utf8(b[32..].to_vec())
                    .unwrap()
                    .replace("tool", "TOOL");
                head = chain(&head, text.as_bytes());
                b.clear();
                b.extend_from_slice(&head);
                b.extend_from_slice(text.as_bytes());
            });
        }
        write(&f);
        let e = verify_err(&path);
        assert_eq!(e.entry, Some(4), "{e}");
        assert!(e.message.contains("entries 4..=7 were changed"), "{e}");

        // Truncation: provable against a checkpoint kept elsewhere.
        write(&original[..10]);
        let kept: Checkpoint = match &frames(&original[14]).unwrap().0[0] {
            Frame::Checkpoint { body, .. } => serde_json::from_slice(body).unwrap(),
            _ => unreachable!(),
        };
        let e = verify(&path, &key().verifying_key(), Some(&kept)).unwrap_err();
        assert!(e.message.contains("truncated"), "{e}");
        // The untouched log proves it only grew since that checkpoint.
        write(&original);
        assert!(verify(&path, &key().verifying_key(), Some(&kept)).is_ok());
        // A checkpoint signed by another key proves nothing.
        let other = SigningKey::from_bytes(&[9; 32]);
        assert!(verify(&path, &other.verifying_key(), None).is_err());
    }

    #[test]
    fn a_torn_tail_is_cut_on_open_and_the_log_still_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let path = sample(dir.path(), 6, 3);
        let full = std::fs::read(&path).unwrap();
        let mut log = Log::open(path.parent().unwrap(), key(), Rotation::default()).unwrap();
        let mut r = Record::new(Event::Request);
        log.append(std::slice::from_mut(&mut r)).unwrap();
        drop(log);
        let with_seven = std::fs::read(&path).unwrap();
        for cut in [1, HEADER - 1, HEADER + 5, with_seven.len() - full.len() - 1] {
            std::fs::write(&path, &with_seven[..with_seven.len() - cut]).unwrap();
            let s = verify(&path, &key().verifying_key(), None).unwrap();
            assert_eq!(s.torn_tail_at, Some(full.len() as u64), "cut {cut}");
            let log = Log::open(path.parent().unwrap(), key(), Rotation::default()).unwrap();
            assert_eq!(log.next_seq(), 6);
            assert_eq!(std::fs::read(&path).unwrap(), full);
            // What was cut is kept aside as evidence.
            let aside = path.with_extension(format!("log.torn-{}", full.len()));
            assert_eq!(
                std::fs::read(&aside).unwrap(),
                &with_seven[full.len()..with_seven.len() - cut]
            );
            std::fs::remove_file(&aside).unwrap();
        }
        // Zeros to the end of the file (blocks a crash allocated but never wrote) are torn too.
        let mut zeros = full.clone();
        zeros.extend_from_slice(&[0; 4096]);
        std::fs::write(&path, &zeros).unwrap();
        let s = verify(&path, &key().verifying_key(), None).unwrap();
        assert_eq!(s.torn_tail_at, Some(full.len() as u64));
        let log = Log::open(path.parent().unwrap(), key(), Rotation::default()).unwrap();
        assert_eq!(log.next_seq(), 6);
        // Zeros followed by anything else are not a crash.
        zeros.push(1);
        drop(log);
        std::fs::write(&path, &zeros).unwrap();
        assert!(verify(&path, &key().verifying_key(), None).is_err());
        // The usual crash: the seventh frame's first bytes written, the rest of it and the
        // blocks after it zeros (they begin at a block boundary, inside the frame).
        for written in [1, HEADER + 3, with_seven.len() - full.len() - 1] {
            let mut torn = with_seven[..full.len() + written].to_vec();
            torn.resize(with_seven.len() + 4096, 0);
            std::fs::write(&path, &torn).unwrap();
            let s = verify(&path, &key().verifying_key(), None).unwrap();
            assert_eq!(s.torn_tail_at, Some(full.len() as u64), "{written}");
            let log = Log::open(path.parent().unwrap(), key(), Rotation::default()).unwrap();
            assert_eq!(log.next_seq(), 6);
            drop(log);
            assert_eq!(std::fs::read(&path).unwrap(), full);
            for aside in std::fs::read_dir(dir.path()).unwrap() {
                let aside = aside.unwrap().path();
                if aside.to_string_lossy().contains(".torn-") {
                    std::fs::remove_file(aside).unwrap();
                }
            }
        }
        // A frame whose own bytes are whole, but for one changed byte, is an edit even with
        // zeros after it.
        let mut edited = with_seven.clone();
        let last = edited.len() - 2;
        edited[last] ^= 1;
        edited.resize(with_seven.len() + 4096, 0);
        std::fs::write(&path, &edited).unwrap();
        assert!(verify(&path, &key().verifying_key(), None).is_err());
    }

    /// Raising one frame's length past the end of the file would make it, and every signed
    /// frame after it, look like a crash's torn tail, to be cut at the next start.
    #[test]
    fn a_length_raised_to_hide_later_frames_is_an_edit_not_a_tear() {
        let dir = tempfile::tempdir().unwrap();
        let path = sample(dir.path(), 6, 3);
        let f = split(&path);
        let mut bytes = f.concat();
        let at: usize = f[..4].iter().map(Vec::len).sum();
        let past_the_end = (bytes.len() as u32).to_le_bytes();
        bytes[at + 1..at + 5].copy_from_slice(&past_the_end);
        std::fs::write(&path, &bytes).unwrap();
        let e = verify(&path, &key().verifying_key(), None).unwrap_err();
        assert!(e.message.contains("edited, not torn"), "{e}");
        assert!(Log::open(dir.path(), key(), Rotation::default()).is_err());
        // A real tear (the last frame cut short) is still one.
        let whole = f.concat();
        std::fs::write(&path, &whole[..whole.len() - 3]).unwrap();
        assert!(
            verify(&path, &key().verifying_key(), None)
                .unwrap()
                .torn_tail_at
                .is_some()
        );
    }

    /// A tear at an offset already kept aside is kept beside it; a link planted where the
    /// evidence goes is never written through.
    #[test]
    fn torn_tails_are_kept_in_new_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = sample(dir.path(), 6, 3);
        let full = std::fs::read(&path).unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"untouched").unwrap();
        let aside = path.with_extension(format!("log.torn-{}", full.len()));
        std::os::unix::fs::symlink(&victim, &aside).unwrap();
        let mut torn = full.clone();
        torn.extend_from_slice(&[7; 5]);
        std::fs::write(&path, &torn).unwrap();
        let log = Log::open(path.parent().unwrap(), key(), Rotation::default()).unwrap();
        assert_eq!(log.found().torn_bytes, 5);
        drop(log);
        assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
        let beside = path.with_extension(format!("log.torn-{}.1", full.len()));
        assert_eq!(std::fs::read(&beside).unwrap(), [7; 5]);
    }

    /// Entries after the last checkpoint are adopted by the next one: opening says how many.
    #[test]
    fn opening_reports_the_unsigned_entries_it_adopts() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), key(), Rotation::default()).unwrap();
        assert_eq!(log.found(), Found::default());
        for _ in 0..3 {
            let mut r = Record::new(Event::Request);
            log.append(std::slice::from_mut(&mut r)).unwrap();
        }
        drop(log);
        let log = Log::open(dir.path(), key(), Rotation::default()).unwrap();
        assert_eq!(
            log.found(),
            Found {
                unsigned: 3,
                unsigned_from: 0,
                torn_bytes: 0
            }
        );
    }

    /// A directory others may write to could have links planted in it: refused.
    #[test]
    fn a_directory_others_may_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let audit = dir.path().join("audit");
        std::fs::create_dir(&audit).unwrap();
        std::fs::set_permissions(&audit, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = Log::open(&audit, key(), Rotation::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("chmod go-w"), "{e}");
        std::fs::set_permissions(&audit, std::fs::Permissions::from_mode(0o750)).unwrap();
        assert!(Log::open(&audit, key(), Rotation::default()).is_ok());
    }

    fn small() -> Rotation {
        Rotation {
            segment_bytes: 4096,
            ..Rotation::default()
        }
    }

    /// A rotated log: ~`n` records over several 4 KiB segments.
    fn rotated(dir: &Path, n: u64, rotation: Rotation) -> Log {
        let mut log = Log::open(dir, key(), rotation).unwrap();
        for i in 0..n {
            let mut r = Record::new(Event::Request);
            r.target = Some(format!("tool{i}"));
            r.params =
                serde_json::value::to_raw_value(&serde_json::json!({"padding": "x".repeat(200)}))
                    .ok();
            log.append(std::slice::from_mut(&mut r)).unwrap();
            log.maybe_rotate().unwrap();
        }
        log
    }

    #[test]
    fn rotation_keeps_one_chain_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        drop(rotated(dir.path(), 100, small()));
        let segs = segments(dir.path()).unwrap();
        assert!(segs.len() > 3, "{segs:?}");
        let s = verify(dir.path(), &key().verifying_key(), None).unwrap();
        assert_eq!((s.entries, s.first_seq, s.last_seq), (100, 0, Some(99)));
        assert_eq!(s.segments, segs.len() as u64);
        // A range: only the segments holding it are read, from their signed anchors.
        let (second, _) = segs[2];
        let r = verify_range(
            dir.path(),
            &key().verifying_key(),
            None,
            Some(second + 1),
            Some(second + 2),
        )
        .unwrap();
        assert_eq!((r.first_seq, r.segments), (second, 1));
        // Reopening continues the newest segment.
        let mut log = Log::open(dir.path(), key(), small()).unwrap();
        assert_eq!(log.next_seq(), 100);
        let mut r = Record::new(Event::GatewayStop);
        log.append(std::slice::from_mut(&mut r)).unwrap();
        drop(log);
        assert_eq!(
            verify(dir.path(), &key().verifying_key(), None)
                .unwrap()
                .entries,
            101
        );
    }

    #[test]
    fn a_removed_or_swapped_segment_is_named() {
        let dir = tempfile::tempdir().unwrap();
        drop(rotated(dir.path(), 100, small()));
        let segs = segments(dir.path()).unwrap();
        // Deleting a middle segment breaks the next one's anchor.
        let (gone, path) = &segs[1];
        let saved = std::fs::read(path).unwrap();
        std::fs::remove_file(path).unwrap();
        let e = verify(dir.path(), &key().verifying_key(), None).unwrap_err();
        assert_eq!(e.entry, Some(*gone), "{e}");
        assert!(e.message.contains("does not continue"), "{e}");
        std::fs::write(path, &saved).unwrap();
        // Renaming one segment to another's name (reordering) is caught by the name check.
        let (first2, p2) = &segs[2];
        let (_, p3) = &segs[3];
        let b2 = std::fs::read(p2).unwrap();
        let b3 = std::fs::read(p3).unwrap();
        std::fs::write(p2, &b3).unwrap();
        std::fs::write(p3, &b2).unwrap();
        let e = verify(dir.path(), &key().verifying_key(), None).unwrap_err();
        assert_eq!(e.entry, Some(*first2), "{e}");
        std::fs::write(p2, &b2).unwrap();
        std::fs::write(p3, &b3).unwrap();
        assert!(verify(dir.path(), &key().verifying_key(), None).is_ok());
        // Dropping the newest segment is truncation: provable against a kept checkpoint.
        let kept: Checkpoint = {
            let bytes = std::fs::read(&segs.last().unwrap().1).unwrap();
            let (items, _) = read_items(&bytes).unwrap();
            match &items[0] {
                Item::Checkpoint(cp) => cp.clone(),
                other => panic!("{other:?}"),
            }
        };
        std::fs::remove_file(&segs.last().unwrap().1).unwrap();
        std::fs::remove_file(&segs[segs.len() - 2].1).unwrap();
        let e = verify(dir.path(), &key().verifying_key(), Some(&kept)).unwrap_err();
        assert!(e.message.contains("truncated"), "{e}");
    }

    #[test]
    fn retention_removes_the_oldest_segments_and_the_rest_still_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let rotation = Rotation {
            segment_bytes: 4096,
            retain_bytes: 12 * 1024,
            ..Rotation::default()
        };
        drop(rotated(dir.path(), 200, rotation));
        let segs = segments(dir.path()).unwrap();
        let total: u64 = segs
            .iter()
            .map(|(_, p)| std::fs::metadata(p).unwrap().len())
            .sum();
        assert!(total <= 12 * 1024 + 4096 + 512, "{total}");
        assert!(segs[0].0 > 0, "the oldest segments are gone: {segs:?}");
        let s = verify(dir.path(), &key().verifying_key(), None).unwrap();
        assert_eq!(s.first_seq, segs[0].0);
        assert_eq!(s.last_seq, Some(199));
        // A checkpoint of a pruned entry can no longer be matched, and verify says so.
        let old = Checkpoint::sign(&key(), 3, &GENESIS, 0);
        let e = verify(dir.path(), &key().verifying_key(), Some(&old)).unwrap_err();
        assert!(e.message.contains("no longer holds entry 3"), "{e}");
        // A checkpoint kept of the entry the oldest remaining segment is anchored at still
        // proves the log: the anchor is that entry's signed hash.
        let anchor = match &read_items(&std::fs::read(&segs[0].1).unwrap()).unwrap().0[0] {
            Item::Checkpoint(cp) => cp.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(anchor.seq + 1, segs[0].0);
        let s = verify(dir.path(), &key().verifying_key(), Some(&anchor)).unwrap();
        assert_eq!(s.last_seq, Some(199));
        let forged = Checkpoint::sign(&key(), anchor.seq, &chain(&GENESIS, b"other"), 0);
        let e = verify(dir.path(), &key().verifying_key(), Some(&forged)).unwrap_err();
        assert!(
            e.message.contains("differs from the trusted checkpoint"),
            "{e}"
        );
    }

    #[test]
    fn a_segment_holding_only_its_anchor_is_not_rotated_again() {
        let dir = tempfile::tempdir().unwrap();
        let rotation = Rotation {
            segment_age: Duration::ZERO,
            ..Rotation::default()
        };
        let mut log = rotated(dir.path(), 3, rotation);
        let before = segments(dir.path()).unwrap();
        // Due by age, but nothing was written since the anchor: before, this named the new
        // segment after the current one and failed the log.
        log.maybe_rotate().unwrap();
        log.maybe_rotate().unwrap();
        assert_eq!(segments(dir.path()).unwrap(), before);
        let mut r = Record::new(Event::GatewayStop);
        log.append(std::slice::from_mut(&mut r)).unwrap();
        log.maybe_rotate().unwrap();
        assert_eq!(segments(dir.path()).unwrap().len(), before.len() + 1);
        drop(log);
        assert!(verify(dir.path(), &key().verifying_key(), None).is_ok());
    }

    #[test]
    fn retention_keeps_what_the_exporter_has_not_shipped() {
        let dir = tempfile::tempdir().unwrap();
        // The exporter has shipped entries 0..40 only (its collector is down, say).
        drop(Log::open(dir.path(), key(), Rotation::default()).unwrap());
        std::fs::write(dir.path().join(super::super::otlp::CURSOR_FILE), "40\n").unwrap();
        let rotation = Rotation {
            segment_bytes: 4096,
            retain_bytes: 12 * 1024,
            keep_unexported: true,
            ..Rotation::default()
        };
        drop(rotated(dir.path(), 200, rotation));
        let segs = segments(dir.path()).unwrap();
        // The oldest kept segment still holds entry 40; nothing it holds was lost unshipped.
        assert!(segs[0].0 <= 40, "{segs:?}");
        assert!(segs[1].0 > 40, "it kept more than it had to: {segs:?}");
        let s = verify(dir.path(), &key().verifying_key(), None).unwrap();
        assert_eq!(s.last_seq, Some(199));
        // A cursor past the log's end (the log replaced, the file edited) proves nothing
        // shipped: the exporter starts over, so every segment stays.
        let dir = tempfile::tempdir().unwrap();
        drop(Log::open(dir.path(), key(), Rotation::default()).unwrap());
        std::fs::write(dir.path().join(super::super::otlp::CURSOR_FILE), "999999\n").unwrap();
        drop(rotated(dir.path(), 200, rotation));
        assert_eq!(segments(dir.path()).unwrap()[0].0, 0);
    }

    #[test]
    fn a_newest_segment_cut_before_its_anchor_is_refused_not_restarted() {
        let dir = tempfile::tempdir().unwrap();
        drop(rotated(dir.path(), 100, small()));
        let segs = segments(dir.path()).unwrap();
        let (first, newest) = segs.last().unwrap();
        assert!(*first > 0);
        // Emptied: before, the log reopened at entry 0 in a file named for entry `first`, and
        // a later rotation could overwrite an old segment.
        std::fs::write(newest, b"").unwrap();
        for e in [
            Log::open(dir.path(), key(), small())
                .unwrap_err()
                .to_string(),
            verify(dir.path(), &key().verifying_key(), None)
                .unwrap_err()
                .to_string(),
        ] {
            assert!(
                e.contains(&format!("named for entry {first}")) && e.contains("cut or emptied"),
                "{e}"
            );
        }
        // The same for a segment whose anchor was cut off and whose records remain.
        let (items, _) = read_items(&std::fs::read(&segs[1].1).unwrap()).unwrap();
        assert!(matches!(items[0], Item::Checkpoint(_)));
        let bytes = std::fs::read(&segs[1].1).unwrap();
        let (frames, _) = frames(&bytes).unwrap();
        let Frame::Record { offset, .. } = &frames[1] else {
            panic!("{frames:?}")
        };
        std::fs::write(&segs[1].1, &bytes[*offset as usize..]).unwrap();
        let e = verify(dir.path(), &key().verifying_key(), None).unwrap_err();
        assert!(e.message.contains("cut or emptied"), "{e}");
        // Every segment deleted: no new chain passes the deletion off as a fresh log.
        for (_, p) in &segs {
            std::fs::remove_file(p).unwrap();
        }
        let e = Log::open(dir.path(), key(), small())
            .unwrap_err()
            .to_string();
        assert!(e.contains("has no segment now"), "{e}");
        assert!(segments(dir.path()).unwrap().is_empty());
        // A lock file alone (a first start that crashed before its first segment) is no log.
        let fresh = tempfile::tempdir().unwrap();
        std::fs::write(fresh.path().join("LOCK"), b"").unwrap();
        assert!(Log::open(fresh.path(), key(), small()).is_ok());
        // A log from before the marker, known by its export position, is refused too.
        std::fs::remove_file(dir.path().join(CHAIN_MARKER)).unwrap();
        std::fs::write(dir.path().join(super::super::otlp::CURSOR_FILE), "7\n").unwrap();
        assert!(Log::open(dir.path(), key(), small()).is_err());
    }

    #[test]
    fn a_second_writer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), key(), Rotation::default()).unwrap();
        let e = Log::open(dir.path(), key(), Rotation::default()).unwrap_err();
        assert!(e.to_string().contains("another process"), "{e}");
        drop(log);
        assert!(Log::open(dir.path(), key(), Rotation::default()).is_ok());
    }
}
