//! `agentgate audit verify|public-key|query|tail|export`.

use std::{
    io::Write,
    path::{Path, PathBuf},
    time::Duration,
};

use clap::{Args, Subcommand, ValueEnum};

use crate::{
    EXIT_BAD_CONFIG, EXIT_UNAVAILABLE,
    audit::{
        self, Checkpoint, log,
        query::{self, Filter, Follower},
    },
};

/// Exit code of `verify` when the log does not verify.
pub const EXIT_TAMPERED: i32 = 1;

/// Where the log is: `--log`, else the `audit.dir` of `--config`, else the embedded default's.
#[derive(Debug, Args)]
pub struct Location {
    /// The log directory (or one segment file, for `verify`).
    #[arg(long, value_name = "PATH")]
    log: Option<PathBuf>,
    /// Configuration file whose `audit.dir` to read.
    #[arg(long, value_name = "FILE", conflicts_with = "log")]
    config: Option<PathBuf>,
}

impl Location {
    fn resolve(&self) -> Result<PathBuf, i32> {
        if let Some(p) = &self.log {
            return Ok(p.clone());
        }
        match super::load(self.config.as_deref()) {
            Ok(c) => Ok(c.audit.dir),
            Err(e) => Err(super::bad_config(&e)),
        }
    }
}

/// The query filters shared by `query` and `tail`.
#[derive(Debug, Args)]
pub struct Filters {
    /// From this time: RFC 3339 (2026-11-21T10:00:00Z) or a duration ago (15m, 2h).
    #[arg(long)]
    since: Option<String>,
    /// Before this time (same forms).
    #[arg(long)]
    until: Option<String>,
    #[arg(long)]
    agent: Option<String>,
    #[arg(long)]
    server: Option<String>,
    /// Tool, prompt or resource (glob).
    #[arg(long)]
    tool: Option<String>,
    /// JSON-RPC method, e.g. tools/call.
    #[arg(long)]
    method: Option<String>,
    /// allow, deny, would_deny (requests); forward, replace, withhold, refuse (server messages).
    #[arg(long)]
    decision: Option<String>,
    /// request, response, server_message, session_start, session_end, policy_reload,
    /// gateway_start, gateway_stop, ebpf_attach, ebpf_detach, token_issued, token_revoked,
    /// admin_refused, audit_read.
    #[arg(long)]
    event: Option<String>,
    /// Text anywhere in the parameters, result, target, error, reason, subject or event facts
    /// (detail), case-insensitive.
    #[arg(long)]
    text: Option<String>,
}

impl Filters {
    fn build(&self) -> Result<Filter, String> {
        let pairs = [
            ("since", &self.since),
            ("until", &self.until),
            ("agent", &self.agent),
            ("server", &self.server),
            ("tool", &self.tool),
            ("method", &self.method),
            ("decision", &self.decision),
            ("event", &self.event),
            ("text", &self.text),
        ];
        Filter::from_pairs(
            pairs
                .iter()
                .filter_map(|(k, v)| v.as_deref().map(|v| (*k, v))),
        )
        .map(|(f, _)| f)
        .map_err(|e| format!("--{e}"))
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    /// One JSON record per line.
    Json,
    /// Aligned columns for people.
    Table,
}

#[derive(Debug, Subcommand)]
pub enum Action {
    /// Check the log's chain and signed checkpoints; name the first bad entry. With --trusted,
    /// also prove the log still holds everything an earlier checkpoint covered (it only grew).
    /// Exits 0 when it verifies, 1 when it does not (or holds no checkpoint: nothing signed),
    /// 69 when it cannot be read.
    Verify {
        #[command(flatten)]
        location: Location,
        /// The gateway's public key, 64 hex digits (from `agentgate audit public-key`).
        #[arg(long, value_name = "HEX")]
        public_key: String,
        /// An earlier checkpoint (its JSON), kept outside the log.
        #[arg(long, value_name = "FILE")]
        trusted: Option<PathBuf>,
        /// Check only the segments holding entries from this one on (each segment's signed
        /// anchor vouches for where it starts).
        #[arg(long, value_name = "SEQ")]
        from: Option<u64>,
        /// Check only the segments up to the one holding this entry.
        #[arg(long, value_name = "SEQ")]
        to: Option<u64>,
    },
    /// Print the public key of a signing key file, to verify checkpoints elsewhere.
    PublicKey {
        #[arg(long, value_name = "FILE")]
        key_file: PathBuf,
    },
    /// Print the records that match the filters, oldest first.
    Query {
        #[command(flatten)]
        location: Location,
        #[command(flatten)]
        filters: Filters,
        /// At most this many (the newest of the matches).
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Print records as they are appended (the last --lines first).
    Tail {
        #[command(flatten)]
        location: Location,
        #[command(flatten)]
        filters: Filters,
        /// Keep printing new records until interrupted.
        #[arg(short, long)]
        follow: bool,
        /// How many existing records to print first.
        #[arg(short = 'n', long, default_value = "10")]
        lines: usize,
        #[arg(long, value_enum, default_value = "json")]
        format: Format,
    },
    /// Every record (with its chain hash) and every checkpoint as JSON lines, for a SIEM.
    Export {
        #[command(flatten)]
        location: Location,
    },
}

fn print_record(out: &mut impl Write, r: &audit::Record, format: Format) -> std::io::Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer(&mut *out, r)?;
            writeln!(out)
        }
        Format::Table => writeln!(out, "{}", query::table_row(r)),
    }
}

pub fn main(action: Action) -> i32 {
    match action {
        Action::Verify {
            location,
            public_key,
            trusted,
            from,
            to,
        } => {
            let path = match location.resolve() {
                Ok(p) => p,
                Err(code) => return code,
            };
            verify(&path, &public_key, trusted.as_deref(), from, to)
        }
        Action::PublicKey { key_file } => match std::fs::read_to_string(&key_file) {
            Ok(text) => match audit::parse_secret_key(&text) {
                Some(k) => {
                    println!("{}", audit::hex(k.verifying_key().as_bytes()));
                    0
                }
                None => {
                    eprintln!(
                        "agentgate audit public-key: {}: not an Ed25519 secret key",
                        key_file.display()
                    );
                    EXIT_BAD_CONFIG
                }
            },
            Err(e) => {
                eprintln!("agentgate audit public-key: {}: {e}", key_file.display());
                EXIT_UNAVAILABLE
            }
        },
        Action::Query {
            location,
            filters,
            limit,
            format,
        } => {
            let (dir, filter) = match prepare("query", &location, &filters) {
                Ok(x) => x,
                Err(code) => return code,
            };
            let mut out = std::io::stdout().lock();
            if matches!(format, Format::Table) {
                let _ = writeln!(out, "{}", query::TABLE_HEADER);
            }
            // Without a limit, records are printed as each segment is read: a log of many
            // gigabytes is never held in memory whole. A limit keeps only the newest `limit`.
            let printed = match limit {
                Some(_) => query::query(&dir, &filter, limit).map(|records| {
                    for r in &records {
                        if print_record(&mut out, r, format).is_err() {
                            break; // stdout closed (a pager quit): not an error
                        }
                    }
                }),
                None => Follower::new(&dir, filter.since_ns).poll_each(|items| {
                    items.into_iter().all(|item| match item {
                        log::Item::Record { record, .. } if filter.matches(&record) => {
                            print_record(&mut out, &record, format).is_ok()
                        }
                        _ => true,
                    })
                }),
            };
            match printed {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("agentgate audit query: {e}");
                    EXIT_UNAVAILABLE
                }
            }
        }
        Action::Tail {
            location,
            filters,
            follow,
            lines,
            format,
        } => {
            let (dir, filter) = match prepare("tail", &location, &filters) {
                Ok(x) => x,
                Err(code) => return code,
            };
            tail(&dir, &filter, follow, lines, format)
        }
        Action::Export { location } => {
            let dir = match location.resolve() {
                Ok(p) => p,
                Err(code) => return code,
            };
            // A segment at a time: the log is never held in memory whole.
            let mut out = std::io::stdout().lock();
            let exported = Follower::new(&dir, None).poll_each(|items| {
                items.iter().all(|item| {
                    query::export_line(item).is_none_or(|line| writeln!(out, "{line}").is_ok())
                })
            });
            match exported {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("agentgate audit export: {e}");
                    EXIT_UNAVAILABLE
                }
            }
        }
    }
}

fn prepare(verb: &str, location: &Location, filters: &Filters) -> Result<(PathBuf, Filter), i32> {
    let dir = location.resolve()?;
    let filter = filters.build().map_err(|e| {
        eprintln!("agentgate audit {verb}: {e}");
        EXIT_BAD_CONFIG
    })?;
    if !dir.is_dir() {
        eprintln!(
            "agentgate audit {verb}: {}: no audit log here",
            dir.display()
        );
        return Err(EXIT_UNAVAILABLE);
    }
    Ok((dir, filter))
}

fn tail(dir: &Path, filter: &Filter, follow: bool, lines: usize, format: Format) -> i32 {
    // Positioned before the snapshot is read: what lands in between is seen by both, and the
    // sequence numbers keep it from being printed twice.
    let follower = Follower::at_end(dir);
    let existing = match query::query(dir, filter, Some(lines)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("agentgate audit tail: {e}");
            return EXIT_UNAVAILABLE;
        }
    };
    let mut printed = existing.last().map(|r| r.seq);
    let mut out = std::io::stdout().lock();
    for r in &existing {
        if print_record(&mut out, r, format).is_err() {
            return 0;
        }
    }
    if out.flush().is_err() || !follow {
        return 0;
    }
    let mut follower = match follower {
        Ok(f) => f,
        Err(e) => {
            eprintln!("agentgate audit tail: {}: {e}", dir.display());
            return EXIT_UNAVAILABLE;
        }
    };
    loop {
        let items = match follower.poll() {
            Ok(i) => i,
            Err(e) => {
                eprintln!("agentgate audit tail: {e}");
                return EXIT_UNAVAILABLE;
            }
        };
        for item in items {
            if let log::Item::Record { record, .. } = item
                && printed.is_none_or(|s| record.seq > s)
                && filter.matches(&record)
            {
                if print_record(&mut out, &record, format).is_err() {
                    return 0;
                }
                printed = Some(record.seq);
            }
        }
        if out.flush().is_err() {
            return 0;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn verify(
    path: &Path,
    public_key: &str,
    trusted: Option<&Path>,
    from: Option<u64>,
    to: Option<u64>,
) -> i32 {
    let key = match audit::parse_public_key(public_key) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("agentgate audit verify: --public-key: {e}");
            return EXIT_BAD_CONFIG;
        }
    };
    let trusted: Option<Checkpoint> = match trusted.map(std::fs::read) {
        None => None,
        Some(Ok(bytes)) => match serde_json::from_slice(&bytes) {
            Ok(cp) => Some(cp),
            Err(e) => {
                eprintln!("agentgate audit verify: --trusted: not a checkpoint: {e}");
                return EXIT_BAD_CONFIG;
            }
        },
        Some(Err(e)) => {
            eprintln!("agentgate audit verify: --trusted: {e}");
            return EXIT_UNAVAILABLE;
        }
    };
    match log::verify_range(path, &key, trusted.as_ref(), from, to) {
        // A log with no checkpoint at all holds nothing signed: anyone could have written it,
        // chain and all. (A gateway signs within `checkpoint_interval` of its first record, and
        // the entries a crash left unsigned when it starts again.)
        // (A range reads whole segments, and every segment but the first opens with a
        // checkpoint, so a range holds one too.)
        Ok(s) if s.entries > 0 && s.checkpoints == 0 => {
            println!(
                "FAILED: {} entries and no checkpoint: nothing in this log is signed by the key, so it proves nothing (anyone can write a chain)",
                s.entries
            );
            EXIT_TAMPERED
        }
        Ok(s) => {
            let unsigned = match (s.last_seq, s.last_checkpoint) {
                (Some(last), Some(cp)) => last.saturating_sub(cp),
                (Some(last), None) => last + 1 - s.first_seq,
                _ => 0,
            };
            println!(
                "ok: {} entries ({}..), {} checkpoints, {} segments; {unsigned} entries after the last checkpoint are not signed yet{}",
                s.entries,
                s.first_seq,
                s.checkpoints,
                s.segments,
                s.torn_tail_at.map_or(String::new(), |o| format!(
                    "; a torn last frame at byte {o} (a crash mid-write) is cut when the gateway starts"
                )),
            );
            0
        }
        // A log that cannot be read says nothing about tampering: exit 69, not 1.
        Err(e) if e.unreadable => {
            eprintln!("agentgate audit verify: cannot read the log: {e}");
            EXIT_UNAVAILABLE
        }
        Err(e) => {
            match e.entry {
                Some(n) => println!("FAILED at entry {n}: {e}"),
                None => println!("FAILED: {e}"),
            }
            EXIT_TAMPERED
        }
    }
}
