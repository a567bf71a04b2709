//! Reading the log back: filters for `agentgate audit query` and the admin API, a follower for
//! `audit tail -f`, and the export format for SIEMs.
//!
//! There is no separate index: segment files are named for their first entry and their mtime
//! bounds their newest record, which is enough to skip whole segments by sequence or time;
//! within a segment records are scanned, at disk speed.

use std::{
    io::{Read, Seek, SeekFrom},
    path::{Path, PathBuf},
};

use serde::Serialize;

use super::{
    Record, hex,
    log::{self, Item},
};

/// Which records a query wants. Unset members match everything.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Wall clock bounds, nanoseconds since the Unix epoch (`until` exclusive).
    pub since_ns: Option<u64>,
    pub until_ns: Option<u64>,
    pub agent: Option<String>,
    pub server: Option<String>,
    /// Tool, prompt or resource (glob).
    pub target: Option<globset::GlobMatcher>,
    pub method: Option<String>,
    pub decision: Option<String>,
    pub event: Option<String>,
    /// Case-insensitive text anywhere in the parameters, result, target or error.
    pub text: Option<String>,
}

/// Why a filter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct FilterError {
    pub key: &'static str,
    pub message: String,
}

impl Filter {
    /// Builds a filter from `key=value` pairs, as the admin API's query string carries them
    /// and as the CLI's flags map onto.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<(Self, Option<usize>), FilterError> {
        let mut f = Filter::default();
        let mut limit = None;
        for (k, v) in pairs {
            let err = |key: &'static str, message: String| FilterError { key, message };
            match k {
                "since" => f.since_ns = Some(parse_time(v).map_err(|m| err("since", m))?),
                "until" => f.until_ns = Some(parse_time(v).map_err(|m| err("until", m))?),
                "agent" => f.agent = Some(v.to_owned()),
                "server" => f.server = Some(v.to_owned()),
                "tool" | "target" => {
                    f.target = Some(
                        globset::Glob::new(v)
                            .map_err(|e| err("tool", format!("{v:?} is not a glob: {e}")))?
                            .compile_matcher(),
                    )
                }
                "method" => f.method = Some(v.to_owned()),
                "decision" => f.decision = Some(v.to_owned()),
                "event" => f.event = Some(v.to_owned()),
                "text" => f.text = Some(v.to_lowercase()),
                "limit" => {
                    limit = Some(v.parse().map_err(|_| {
                        err("limit", format!("{v:?} is not a non-negative integer"))
                    })?)
                }
                _ => {
                    return Err(FilterError {
                        key: "query",
                        message: format!(
                            "unknown filter {k:?} (since, until, agent, server, tool, method, decision, event, text, limit)"
                        ),
                    });
                }
            }
        }
        Ok((f, limit))
    }

    pub fn matches(&self, r: &Record) -> bool {
        let eq = |want: &Option<String>, have: &Option<String>| {
            want.as_ref()
                .is_none_or(|w| have.as_deref() == Some(w.as_str()))
        };
        if self.since_ns.is_some_and(|s| r.time_unix_ns < s)
            || self.until_ns.is_some_and(|u| r.time_unix_ns >= u)
            || !eq(&self.agent, &r.agent)
            || !eq(&self.server, &r.server)
            || !eq(&self.method, &r.method)
            || !eq(&self.decision, &r.decision)
        {
            return false;
        }
        if let Some(e) = &self.event
            && serde_json::to_value(r.event)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .as_deref()
                != Some(e.as_str())
        {
            return false;
        }
        if let Some(t) = &self.target
            && !r.target.as_deref().is_some_and(|name| t.is_match(name))
        {
            return false;
        }
        if let Some(text) = &self.text {
            let mut hay = String::new();
            for v in [&r.params, &r.result].into_iter().flatten() {
                hay.push_str(v.get());
            }
            for s in [&r.target, &r.error, &r.reason, &r.subject]
                .into_iter()
                .flatten()
            {
                hay.push_str(s);
            }
            // Event facts too: a revoked token's jti, a reload's rules.
            if let Some(detail) = &r.detail {
                hay.push_str(&detail.to_string());
            }
            if !hay.to_lowercase().contains(text.as_str()) {
                return false;
            }
        }
        true
    }
}

/// An RFC 3339 timestamp, or a duration meaning that long ago ("15m", "2h").
pub fn parse_time(text: &str) -> Result<u64, String> {
    if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        return u64::try_from(ts.as_nanosecond()).map_err(|_| format!("{text:?} is before 1970"));
    }
    match humantime::parse_duration(text) {
        // Longer ago than 1970 is the beginning (a cast would wrap to a recent time).
        Ok(ago) => Ok(
            log::now_unix_ns().saturating_sub(u64::try_from(ago.as_nanos()).unwrap_or(u64::MAX))
        ),
        Err(_) => Err(format!(
            "{text:?} is neither an RFC 3339 time (2026-11-21T10:00:00Z) nor a duration ago (15m)"
        )),
    }
}

/// Reads a log directory from a starting point onwards, and on again as it grows.
#[derive(Debug)]
pub struct Follower {
    dir: PathBuf,
    /// The segment being read and how far.
    at: Option<(u64, u64)>,
    /// Skip segments whose newest record is older than this (ns).
    since_ns: Option<u64>,
}

impl Follower {
    /// From the oldest record held.
    pub fn new(dir: &Path, since_ns: Option<u64>) -> Self {
        Self {
            dir: dir.to_path_buf(),
            at: None,
            since_ns,
        }
    }

    /// From the segment that holds entry `seq` (segments are named by their first entry), so
    /// that older segments are not read at all.
    pub fn from_seq(dir: &Path, seq: u64) -> std::io::Result<Self> {
        let segs = log::segments(dir)?;
        let at = segs
            .iter()
            .rev()
            .find(|(first, _)| *first <= seq)
            .map(|(first, _)| (*first, 0));
        Ok(Self {
            dir: dir.to_path_buf(),
            at,
            since_ns: None,
        })
    }

    /// From the end: only what is appended from now on.
    pub fn at_end(dir: &Path) -> std::io::Result<Self> {
        let segs = log::segments(dir)?;
        let at = match segs.last() {
            Some((first, path)) => Some((*first, std::fs::metadata(path)?.len())),
            None => None,
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            at,
            since_ns: None,
        })
    }

    /// Everything complete that was appended since the last call; any segment that cannot be
    /// read fails the whole call (a query or an export must not stop short silently).
    pub fn poll(&mut self) -> Result<Vec<Item>, String> {
        let mut out = Vec::new();
        self.read(usize::MAX, false, &mut |items| {
            out.extend(items);
            true
        })?;
        Ok(out)
    }

    /// [`Follower::poll`] a segment at a time: `each` gets one segment's items (and may stop the
    /// reading by returning false), so that a reader of the whole log holds one segment in
    /// memory, not the log.
    pub fn poll_each(&mut self, mut each: impl FnMut(Vec<Item>) -> bool) -> Result<(), String> {
        self.read(usize::MAX, false, &mut each)
    }

    /// For a reader that polls again (the exporter): at most `segments` segments (the rest
    /// next time; a reader far behind holds a few in memory, not the whole log), and what
    /// earlier segments gave is returned when a later one fails (it is read again next time).
    pub fn poll_some(&mut self, segments: usize) -> Result<Vec<Item>, String> {
        let mut out = Vec::new();
        self.read(segments, true, &mut |items| {
            out.extend(items);
            true
        })?;
        Ok(out)
    }

    /// Reads at most `segments` segments from the position, handing each one's items to `sink`
    /// (which returns false to stop). With `partial`, a segment that cannot be read ends the
    /// reading without an error when an earlier one was handed over.
    fn read(
        &mut self,
        segments: usize,
        partial: bool,
        sink: &mut dyn FnMut(Vec<Item>) -> bool,
    ) -> Result<(), String> {
        let io = |p: &Path, e: std::io::Error| format!("{}: {e}", p.display());
        let segs = log::segments(&self.dir).map_err(|e| io(&self.dir, e))?;
        let mut given = false;
        let start = match self.at {
            Some((first, _)) => segs.iter().position(|(f, _)| *f == first).unwrap_or(0),
            None => 0,
        };
        for (i, (first, path)) in segs.iter().enumerate().skip(start).take(segments.max(1)) {
            let offset = match self.at {
                Some((f, o)) if f == *first => o,
                _ => 0,
            };
            let newer_exists = i + 1 < segs.len();
            if offset == 0
                && newer_exists
                && let Some(since) = self.since_ns
                && let Ok(modified) = std::fs::metadata(path).and_then(|m| m.modified())
                && modified
                    .duration_since(std::time::UNIX_EPOCH)
                    .is_ok_and(|d| (d.as_nanos() as u64) < since)
            {
                // Every record in it is older than the window.
                self.at = Some((segs[i + 1].0, 0));
                continue;
            }
            let read = (|| {
                let mut file = std::fs::File::open(path).map_err(|e| io(path, e))?;
                file.seek(SeekFrom::Start(offset))
                    .map_err(|e| io(path, e))?;
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes).map_err(|e| io(path, e))?;
                log::read_items(&bytes).map_err(|m| format!("{}: {m}", path.display()))
            })();
            let (items, consumed) = match read {
                Ok(r) => r,
                // What earlier segments gave is returned (the position stays at this one, to
                // be read again next time): dropping it would lose it for a follower.
                Err(e) if !given || !partial => return Err(e),
                Err(_) => break,
            };
            given = true;
            self.at = Some((*first, offset + consumed as u64));
            if newer_exists && let Some((next, _)) = segs.get(i + 1) {
                self.at = Some((*next, 0));
            }
            if !sink(items) || !newer_exists {
                break;
            }
        }
        Ok(())
    }
}

/// The records of `dir` that `filter` matches, oldest first, at most `limit` (the newest ones
/// when there are more).
pub fn query(dir: &Path, filter: &Filter, limit: Option<usize>) -> Result<Vec<Record>, String> {
    let mut out = std::collections::VecDeque::new();
    Follower::new(dir, filter.since_ns).poll_each(|items| {
        for item in items {
            if let Item::Record { record, .. } = item
                && filter.matches(&record)
            {
                out.push_back(*record);
                if limit.is_some_and(|l| out.len() > l) {
                    out.pop_front();
                }
            }
        }
        true
    })?;
    Ok(out.into())
}

/// One line of `agentgate audit export`: a record with the chain hash stored beside it (its
/// payload verbatim, so that a consumer can recompute the chain), or a signed checkpoint.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExportLine<'a> {
    Record {
        hash: String,
        record: &'a serde_json::value::RawValue,
    },
    Checkpoint {
        checkpoint: &'a super::Checkpoint,
    },
}

/// The export line of an item, as JSON text.
pub fn export_line(item: &Item) -> Option<String> {
    let line = match item {
        Item::Record { hash, payload, .. } => ExportLine::Record {
            hash: hex(hash),
            record: serde_json::from_slice(payload).ok()?,
        },
        Item::Checkpoint(cp) => ExportLine::Checkpoint { checkpoint: cp },
    };
    serde_json::to_string(&line).ok()
}

/// One record as a table row.
pub fn table_row(r: &Record) -> String {
    let time = jiff::Timestamp::from_nanosecond(i128::from(r.time_unix_ns))
        .map(|t| t.round(jiff::Unit::Millisecond).unwrap_or(t).to_string())
        .unwrap_or_default();
    let event = serde_json::to_value(r.event)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let dash = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".to_owned());
    format!(
        "{:>8}  {:<24}  {:<14}  {:<12}  {:<12}  {:<16}  {:<20}  {:<10}  {:<18}  {}",
        r.seq,
        time,
        event,
        dash(&r.agent),
        dash(&r.server),
        dash(&r.method),
        dash(&r.target),
        dash(&r.decision),
        dash(&r.rule),
        r.status.map_or("-".to_owned(), |s| s.to_string()),
    )
}

/// The header of [`table_row`]'s columns.
pub const TABLE_HEADER: &str = "     SEQ  TIME                      EVENT           AGENT         SERVER        METHOD            TARGET                DECISION    RULE                STATUS";

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader starting at an entry reads from its segment on, a few segments at a time.
    #[test]
    fn a_follower_from_an_entry_skips_older_segments_and_reads_a_few_at_a_time() {
        use crate::audit::{Event, Record};
        let dir = tempfile::tempdir().unwrap();
        let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let rotation = log::Rotation {
            segment_bytes: 4096,
            ..log::Rotation::default()
        };
        let mut l = log::Log::open(dir.path(), key, rotation).unwrap();
        for i in 0..60 {
            let mut r = Record::new(Event::Request);
            r.target = Some(format!("{i}-{}", "x".repeat(300)));
            l.append(std::slice::from_mut(&mut r)).unwrap();
            l.maybe_rotate().unwrap();
        }
        drop(l);
        let segs = log::segments(dir.path()).unwrap();
        assert!(segs.len() > 4, "{} segments", segs.len());
        let seqs = |items: Vec<Item>| -> Vec<u64> {
            items
                .into_iter()
                .filter_map(|i| match i {
                    Item::Record { record, .. } => Some(record.seq),
                    _ => None,
                })
                .collect()
        };
        let mut f = Follower::from_seq(dir.path(), 40).unwrap();
        let first = seqs(f.poll_some(1).unwrap());
        let holder = segs.iter().rev().find(|(s, _)| *s <= 40).unwrap().0;
        assert_eq!(
            first.first(),
            Some(&holder),
            "starts at the segment holding 40"
        );
        assert!(first.iter().all(|s| *s >= holder) && first.len() < 20);
        let mut all = first;
        loop {
            let more = seqs(f.poll_some(1).unwrap());
            if more.is_empty() {
                break;
            }
            all.extend(more);
        }
        assert_eq!(all.last(), Some(&59));
        assert!(all.windows(2).all(|w| w[1] == w[0] + 1), "{all:?}");
        // A whole read a segment at a time hands over each segment once, every record in order,
        // and stops when told.
        let mut handed = Vec::new();
        Follower::new(dir.path(), None)
            .poll_each(|items| {
                handed.push(seqs(items));
                true
            })
            .unwrap();
        assert_eq!(handed.len(), segs.len());
        let flat: Vec<u64> = handed.concat();
        assert_eq!(flat, (0..60).collect::<Vec<_>>());
        assert_eq!(
            query(dir.path(), &Filter::default(), None).unwrap().len(),
            60
        );
        let newest = query(dir.path(), &Filter::default(), Some(3)).unwrap();
        assert_eq!(
            newest.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [57, 58, 59]
        );
        let mut calls = 0;
        Follower::new(dir.path(), None)
            .poll_each(|_| {
                calls += 1;
                calls < 2
            })
            .unwrap();
        assert_eq!(calls, 2);
        // A segment that cannot be read fails a one-shot read (a query or an export must not
        // stop short), while a reader that polls again keeps what came before it.
        std::fs::write(&segs[2].1, b"not a frame").unwrap();
        assert!(Follower::new(dir.path(), None).poll().is_err());
        let partial = seqs(Follower::new(dir.path(), None).poll_some(10).unwrap());
        assert_eq!(partial.last().map(|s| s + 1), Some(segs[2].0));
    }

    /// `--text` finds words in a record's subject and event facts as well as in its messages.
    #[test]
    fn text_is_looked_for_in_subjects_and_event_facts_too() {
        use crate::audit::{Event, Record};
        let filter = |text: &str| Filter {
            text: Some(text.to_lowercase()),
            ..Filter::default()
        };
        let mut revoked = Record::new(Event::TokenRevoked);
        revoked.subject = Some("token:abc123".into());
        revoked.detail = Some(serde_json::json!({"jti": "abc123", "withdrawn": true}));
        assert!(filter("ABC123").matches(&revoked));
        assert!(filter("withdrawn").matches(&revoked));
        assert!(!filter("def456").matches(&revoked));
        let mut call = Record::new(Event::Request);
        call.subject = Some("https://idp.test#user-1".into());
        assert!(filter("user-1").matches(&call));
    }

    #[test]
    fn times_longer_ago_than_1970_are_the_beginning() {
        assert_eq!(parse_time("1000y"), Ok(0));
        let recent = parse_time("15m").unwrap();
        assert!(log::now_unix_ns() - recent >= 15 * 60 * 1_000_000_000);
        assert!(parse_time("soon").is_err());
    }
}
