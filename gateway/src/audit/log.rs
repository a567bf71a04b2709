//! The log file: frames, appends with fsync, torn-tail recovery, and verification.
//!
//! A frame is `type (1) | length (4, LE) | CRC-32 of type, length and body (4, LE) | body`.
//! A record's body is its chain hash (32 bytes) then its JSON; a checkpoint's body is its JSON.
//! The CRC tells a torn write (the last frame, cut short by a crash) from an edit; the chain
//! hash and the signed checkpoints tell an edit from the original.

use std::{
    fs::File,
    io::{Read, Write},
    path::{Path, PathBuf},
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
        if !matches!(kind, RECORD | CHECKPOINT) || len > MAX_FRAME {
            return Err((
                offset,
                format!("byte {offset}: not a frame (type {kind:#04x}, length {len})"),
            ));
        }
        let end = at + HEADER + len as usize;
        let Some(body) = bytes.get(at + HEADER..end) else {
            return Ok((out, Tail::Torn { offset }));
        };
        let mut h = crc32fast::Hasher::new();
        h.update(&header[..5]);
        h.update(body);
        if h.finalize() != crc {
            if end == bytes.len() {
                return Ok((out, Tail::Torn { offset }));
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
}

fn bad(entry: Option<u64>, message: impl Into<String>) -> VerifyError {
    VerifyError {
        entry,
        message: message.into(),
    }
}

/// Verifies the whole log at `path` against `key`; with `trusted` (an earlier checkpoint kept
/// elsewhere), also proves the log still holds what that checkpoint covered: it only grew.
pub fn verify(
    path: &Path,
    key: &VerifyingKey,
    trusted: Option<&Checkpoint>,
) -> Result<Summary, VerifyError> {
    let bytes = std::fs::read(path).map_err(|e| bad(None, format!("{}: {e}", path.display())))?;
    let (frames, tail) = frames(&bytes).map_err(|(_, m)| bad(None, m))?;
    let trusted_hash = trusted
        .map(|t| t.verify(key))
        .transpose()
        .map_err(|m| bad(None, format!("trusted checkpoint: {m}")))?;
    let mut s = Summary::default();
    let mut head = GENESIS;
    let mut expected = 0u64;
    let mut trusted_seen = false;
    for f in &frames {
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
                let h = chain(&head, payload);
                if &h != stored {
                    return Err(bad(
                        Some(expected),
                        format!(
                            "entry {expected}: its content does not match its chain hash: it (or the entry before it) was edited"
                        ),
                    ));
                }
                head = h;
                if let (Some(t), Some(th)) = (trusted, &trusted_hash)
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
                    trusted_seen = true;
                }
                s.entries += 1;
                s.last_seq = Some(expected);
                expected += 1;
            }
            Frame::Checkpoint { offset, body } => {
                let cp: Checkpoint = serde_json::from_slice(body).map_err(|e| {
                    bad(
                        s.last_seq,
                        format!("checkpoint at byte {offset}: unreadable: {e}"),
                    )
                })?;
                let signed = cp.verify(key).map_err(|m| bad(s.last_seq, m))?;
                if Some(cp.seq) != s.last_seq || signed != head {
                    let after = s.last_checkpoint.map_or(0, |c| c + 1);
                    return Err(bad(
                        Some(after),
                        format!(
                            "checkpoint for entry {} does not match the log: entries {after}..={} were changed after it was signed",
                            cp.seq, cp.seq
                        ),
                    ));
                }
                s.checkpoints += 1;
                s.last_checkpoint = Some(cp.seq);
            }
        }
    }
    if let Tail::Torn { offset } = tail {
        s.torn_tail_at = Some(offset);
    }
    if let Some(t) = trusted
        && !trusted_seen
    {
        return Err(bad(
            Some(expected),
            format!(
                "the log ends before entry {} of the trusted checkpoint: it was truncated",
                t.seq
            ),
        ));
    }
    Ok(s)
}

/// The log open for appending.
#[derive(Debug)]
pub struct Log {
    path: PathBuf,
    file: File,
    key: SigningKey,
    next_seq: u64,
    head: Hash,
    poisoned: bool,
}

impl Log {
    /// Opens (or creates) the log. A torn last frame is cut off and synced; anything else that
    /// does not verify refuses the open, since appending to it would bury the evidence.
    pub fn open(path: &Path, key: SigningKey) -> Result<Self, LogError> {
        let io = |source| LogError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = File::options()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let summary = verify(path, &key.verifying_key(), None).map_err(|e| LogError::Corrupt {
            path: path.display().to_string(),
            problem: e.message,
        })?;
        if let Some(offset) = summary.torn_tail_at {
            tracing::warn!(path = %path.display(), offset, cut = bytes.len() as u64 - offset, "Cut a torn audit frame left by a crash.");
            file.set_len(offset).map_err(io)?;
            file.sync_all().map_err(io)?;
            bytes.truncate(offset as usize);
        }
        let (frames, _) = frames(&bytes).map_err(|(_, problem)| LogError::Corrupt {
            path: path.display().to_string(),
            problem,
        })?;
        let head = frames
            .iter()
            .rev()
            .find_map(|f| match f {
                Frame::Record { stored, .. } => Some(*stored),
                Frame::Checkpoint { .. } => None,
            })
            .unwrap_or(GENESIS);
        if let Some(dir) = path.parent() {
            // The file's directory entry must be durable too (a new file after a crash).
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            key,
            next_seq: summary.last_seq.map_or(0, |s| s + 1),
            head,
            poisoned: false,
        })
    }

    /// Sequence number the next record gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Appends records (numbering them) and makes them durable with one fsync. On error none
    /// of them may be acknowledged.
    pub fn append(&mut self, records: &mut [Record]) -> Result<(), LogError> {
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
            let payload = serde_json::to_vec(r).map_err(|e| LogError::Corrupt {
                path: self.path.display().to_string(),
                problem: e.to_string(),
            })?;
            head = chain(&head, &payload);
            out.extend_from_slice(&frame(RECORD, &[&head, &payload]));
            seq += 1;
        }
        self.write_durably(&out)?;
        self.head = head;
        self.next_seq = seq;
        Ok(())
    }

    /// Signs the current head and appends the checkpoint.
    pub fn checkpoint(&mut self) -> Result<Option<Checkpoint>, LogError> {
        let Some(last) = self.next_seq.checked_sub(1) else {
            return Ok(None);
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let cp = Checkpoint::sign(&self.key, last, &self.head, now);
        let body = serde_json::to_vec(&cp).map_err(|e| LogError::Corrupt {
            path: self.path.display().to_string(),
            problem: e.to_string(),
        })?;
        self.write_durably(&frame(CHECKPOINT, &[&body]))?;
        Ok(Some(cp))
    }

    fn write_durably(&mut self, bytes: &[u8]) -> Result<(), LogError> {
        if self.poisoned {
            return Err(LogError::Poisoned {
                path: self.path.display().to_string(),
            });
        }
        let path = self.path.display().to_string();
        if let Err(source) = self.file.write_all(bytes) {
            // A partial write leaves a torn frame that the next open cuts; stop here so that no
            // later frame lands behind it.
            self.poisoned = true;
            return Err(LogError::Io { path, source });
        }
        if let Err(source) = self.file.sync_data() {
            self.poisoned = true;
            return Err(LogError::Sync { path, source });
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Event;

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[3; 32])
    }

    /// A log of `n` records with a checkpoint after every `every`.
    fn sample(dir: &Path, n: u64, every: u64) -> PathBuf {
        let path = dir.join("audit.log");
        let mut log = Log::open(&path, key()).unwrap();
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
        let mut log = Log::open(&path, key()).unwrap();
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
        let mut log = Log::open(&path, key()).unwrap();
        let mut r = Record::new(Event::Request);
        log.append(std::slice::from_mut(&mut r)).unwrap();
        drop(log);
        let with_seven = std::fs::read(&path).unwrap();
        for cut in [1, HEADER - 1, HEADER + 5, with_seven.len() - full.len() - 1] {
            std::fs::write(&path, &with_seven[..with_seven.len() - cut]).unwrap();
            let s = verify(&path, &key().verifying_key(), None).unwrap();
            assert_eq!(s.torn_tail_at, Some(full.len() as u64), "cut {cut}");
            let log = Log::open(&path, key()).unwrap();
            assert_eq!(log.next_seq(), 6);
            assert_eq!(std::fs::read(&path).unwrap(), full);
        }
    }
}
