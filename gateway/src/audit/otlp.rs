//! Export to an OpenTelemetry collector: a task follows the audit log and ships new records as
//! OTLP logs (HTTP, JSON encoding), in order, at least once.
//!
//! The log stays the record of truth: the exporter reads it back from disk (so it ships only
//! what is durable) and keeps its position in `otlp.cursor` beside the segments, written after
//! each accepted batch. A collector that is down only delays the export: the batch is retried
//! every interval, and reading pauses while too much is pending.

use std::{path::PathBuf, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{Value, json};

use super::{Record, log::Item, query::Follower};
use crate::{config::audit::OtlpConfig, drain::Drain, proxy::upstream::HttpClient};

/// Name of the file holding the next sequence number to ship.
pub const CURSOR_FILE: &str = "otlp.cursor";

/// OTLP severity INFO (most records) and WARN (refusals and denials).
const INFO: u8 = 9;
const WARN: u8 = 13;

fn string(key: &str, v: &str) -> Value {
    json!({ "key": key, "value": { "stringValue": v } })
}

fn int(key: &str, v: u64) -> Value {
    // OTLP/JSON carries 64-bit integers as strings.
    json!({ "key": key, "value": { "intValue": v.to_string() } })
}

fn event_name(r: &Record) -> String {
    serde_json::to_value(r.event)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// One record as an OTLP LogRecord: the whole record as the body (JSON text), the fields a
/// SIEM filters on as attributes.
pub fn log_record(r: &Record) -> Value {
    let mut attributes = vec![
        int("agentgate.seq", r.seq),
        string("agentgate.event", &event_name(r)),
    ];
    for (key, value) in [
        ("agentgate.agent", &r.agent),
        ("agentgate.server", &r.server),
        ("agentgate.method", &r.method),
        ("agentgate.target", &r.target),
        ("agentgate.decision", &r.decision),
        ("agentgate.rule", &r.rule),
        ("agentgate.session", &r.session),
        ("agentgate.subject", &r.subject),
    ] {
        if let Some(v) = value {
            attributes.push(string(key, v));
        }
    }
    if let Some(s) = r.status {
        attributes.push(int("http.response.status_code", u64::from(s)));
    }
    let severity = if r.decision.as_deref() == Some("deny") || r.error.is_some() {
        WARN
    } else {
        INFO
    };
    json!({
        "timeUnixNano": r.time_unix_ns.to_string(),
        "observedTimeUnixNano": r.time_unix_ns.to_string(),
        "severityNumber": severity,
        "severityText": if severity == WARN { "WARN" } else { "INFO" },
        "body": { "stringValue": serde_json::to_string(r).unwrap_or_default() },
        "attributes": attributes,
    })
}

/// An ExportLogsServiceRequest holding `records`.
pub fn request(records: &[Record]) -> Value {
    json!({
        "resourceLogs": [{
            "resource": { "attributes": [
                string("service.name", "agentgate"),
                string("service.version", env!("CARGO_PKG_VERSION")),
            ]},
            "scopeLogs": [{
                "scope": { "name": "agentgate.audit", "version": super::SCHEMA_VERSION.to_string() },
                "logRecords": records.iter().map(log_record).collect::<Vec<_>>(),
            }],
        }],
    })
}

/// The exporter task's state.
pub struct Exporter {
    config: OtlpConfig,
    dir: PathBuf,
    client: HttpClient,
    /// Records at and past it may not be on disk yet: they are not shipped.
    durable: super::writer::DurableMark,
    /// Records the collector refused one by one (and so were skipped).
    skipped: prometheus_client::metrics::counter::Counter,
}

/// Why an export did not land.
#[derive(Debug)]
enum PostError {
    /// The collector or the way to it failed; the same batch may land later.
    Retry(String),
    /// The collector refused this batch for what it holds (400, 413): sending it again cannot
    /// help, a smaller one may.
    Refused(http::StatusCode),
}

impl std::fmt::Display for PostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PostError::Retry(e) => f.write_str(e),
            PostError::Refused(status) => write!(f, "the collector refused the batch ({status})"),
        }
    }
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("endpoint", &self.config.endpoint.as_str())
            .finish_non_exhaustive()
    }
}

/// Segments one poll of the log reads at most: an exporter far behind holds that many in
/// memory, not the whole log.
const SEGMENTS_PER_POLL: usize = 4;

/// The next sequence number the exporter of the log in `dir` ships (0 before it shipped any).
pub fn cursor(dir: &std::path::Path) -> u64 {
    read_cursor(dir)
}

fn read_cursor(dir: &std::path::Path) -> u64 {
    std::fs::read_to_string(dir.join(CURSOR_FILE))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

fn write_cursor(dir: &std::path::Path, next: u64) -> std::io::Result<()> {
    let tmp = dir.join(format!("{CURSOR_FILE}.tmp"));
    // Made anew, never written through a link someone planted.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    {
        use std::io::Write;
        let mut f = std::fs::File::options()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(format!("{next}\n").as_bytes())?;
    }
    std::fs::rename(tmp, dir.join(CURSOR_FILE))
}

impl Exporter {
    /// Ships only records below `durable`; `skipped` counts the records the collector refused
    /// one by one.
    pub fn new(
        config: OtlpConfig,
        dir: PathBuf,
        durable: super::writer::DurableMark,
        skipped: prometheus_client::metrics::counter::Counter,
    ) -> Result<Self, crate::proxy::UpstreamError> {
        let client =
            crate::proxy::upstream::build_client("audit.otlp", None, Duration::from_secs(5))?;
        Ok(Self {
            config,
            dir,
            client,
            durable,
            skipped,
        })
    }

    async fn post(&self, records: &[Record]) -> Result<(), PostError> {
        let body = Bytes::from(request(records).to_string());
        let req = http::Request::post(self.config.endpoint.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| PostError::Retry(e.to_string()))?;
        let resp = tokio::time::timeout(Duration::from_secs(10), self.client.request(req))
            .await
            .map_err(|_| PostError::Retry("no answer within 10 s".to_owned()))?
            .map_err(|e| PostError::Retry(e.to_string()))?;
        let status = resp.status();
        // Read (a little of) the answer so that the connection can be reused.
        let _ = Limited::new(resp.into_body(), 64 << 10).collect().await;
        match status {
            s if s.is_success() => Ok(()),
            // What the batch holds is refused (OTLP: not retryable). Other refusals (401, 403,
            // 404, 5xx) say the collector or its configuration is wrong, which affects every
            // batch alike: those are retried, never skipped.
            http::StatusCode::BAD_REQUEST | http::StatusCode::PAYLOAD_TOO_LARGE => {
                Err(PostError::Refused(status))
            }
            _ => Err(PostError::Retry(format!("the collector answered {status}"))),
        }
    }

    /// Ships records until draining starts, then makes one last attempt.
    pub async fn run(self: Arc<Self>, drain: Drain) {
        let dir = self.dir.clone();
        let mut next = read_cursor(&dir);
        // Only segments from the one holding the cursor on are read.
        let mut follower =
            Some(Follower::from_seq(&dir, next).unwrap_or_else(|_| Follower::new(&dir, None)));
        let mut checked_cursor = false;
        let mut pending: Vec<Record> = Vec::new();
        let mut failing = false;
        let mut last_round = false;
        loop {
            if !last_round {
                tokio::select! {
                    _ = drain.signaled() => last_round = true,
                    _ = tokio::time::sleep(self.config.interval) => {}
                }
            }
            if pending.len() < self.config.batch * 4
                && let Some(mut f) = follower.take()
            {
                let (f, items) = match tokio::task::spawn_blocking(move || {
                    let items = f.poll_some(SEGMENTS_PER_POLL);
                    (f, items)
                })
                .await
                {
                    Ok(x) => x,
                    Err(_) => return,
                };
                follower = Some(f);
                // A cursor past every record the log holds (the log was replaced or cut, or
                // the cursor edited) would silently skip whatever the log holds now: said
                // loudly, and shipping starts over from the oldest record.
                if !checked_cursor && let Ok(items) = &items {
                    let newest = items.iter().rev().find_map(|i| match i {
                        Item::Record { record, .. } => Some(record.seq),
                        _ => None,
                    });
                    if let Some(newest) = newest {
                        checked_cursor = true;
                        if newest + 1 < next {
                            tracing::warn!(
                                cursor = next,
                                newest,
                                "The OTLP export position is past the newest audit record (the log was replaced or cut, or the position edited); shipping from the oldest record."
                            );
                            next = 0;
                            // Said on disk too: retention keeps what is not shipped by it.
                            if let Err(error) = write_cursor(&dir, 0) {
                                tracing::warn!(%error, "Cannot reset the OTLP export position.");
                            }
                            follower = Some(Follower::new(&dir, None));
                            continue;
                        }
                    }
                }
                match items {
                    Ok(items) => pending.extend(items.into_iter().filter_map(|i| match i {
                        Item::Record { record, .. } if record.seq >= next => Some(*record),
                        _ => None,
                    })),
                    Err(error) => tracing::warn!(%error, "OTLP export cannot read the audit log."),
                }
            }
            // A batch the collector refuses for what it holds is halved until the record it
            // refuses stands alone, which is skipped when the collector takes an empty export,
            // or (for collectors that refuse empty ones) the next record alone: retried forever
            // it would stop every later record, and retention with them. The record stays in
            // the local log.
            let mut size = self.config.batch;
            loop {
                // Only what is on disk: a record read back between its write and its fsync
                // could be lost to a power cut after the collector took it, and its number
                // reused for another.
                let durable = self.durable.get();
                let n = pending.partition_point(|r| r.seq < durable).min(size);
                if n == 0 {
                    break;
                }
                // Records shipped by this step: `n`, or the refused one and the next, taken alone.
                let mut shipped = n;
                match self.post(&pending[..n]).await {
                    Ok(()) => {}
                    Err(PostError::Refused(_)) if n > 1 => {
                        size = n.div_ceil(2);
                        continue;
                    }
                    Err(PostError::Refused(status)) => {
                        // Refused for what it holds if the collector takes an empty export, or
                        // the next record alone (then shipped). One that refuses both is
                        // refusing everything (a wrong endpoint, a proxy in the way): that is
                        // retried, never skipped; without a next record yet, it is asked again
                        // once there is one.
                        let next_alone = pending.get(1).is_some_and(|r| r.seq < durable);
                        let takes = if self.post(&[]).await.is_ok() {
                            true
                        } else if next_alone && self.post(&pending[1..2]).await.is_ok() {
                            shipped = 2;
                            true
                        } else {
                            false
                        };
                        if !takes {
                            if !failing {
                                failing = true;
                                tracing::warn!(endpoint = %self.config.endpoint, %status, "OTLP export failed: the collector refuses even an empty export, and the next record alone; retrying every interval.");
                            }
                            break;
                        }
                        // Asked once more: a collector that recovered between the probes takes
                        // it now (after the next record, if that was sent).
                        match self.post(&pending[..1]).await {
                            Ok(()) => {}
                            Err(PostError::Refused(status)) => {
                                self.skipped.inc();
                                tracing::error!(
                                    endpoint = %self.config.endpoint,
                                    seq = pending[0].seq,
                                    %status,
                                    "The OTLP collector refused an audit record on its own; it is skipped there and stays in the local log."
                                );
                            }
                            // Down again: everything from this record is retried (the next
                            // one too, if it was sent: at least once).
                            Err(error) => {
                                if !failing {
                                    failing = true;
                                    tracing::warn!(endpoint = %self.config.endpoint, %error, "OTLP export failed; retrying every interval.");
                                }
                                break;
                            }
                        }
                    }
                    Err(error) => {
                        if !failing {
                            failing = true;
                            tracing::warn!(endpoint = %self.config.endpoint, %error, "OTLP export failed; retrying every interval.");
                        }
                        break;
                    }
                }
                size = self.config.batch;
                next = pending[shipped - 1].seq + 1;
                pending.drain(..shipped);
                if let Err(error) = write_cursor(&dir, next) {
                    tracing::warn!(%error, "Cannot save the OTLP export position; records may be shipped twice after a restart.");
                }
                if failing {
                    failing = false;
                    tracing::info!(endpoint = %self.config.endpoint, "OTLP export recovered.");
                }
            }
            if last_round {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Event;

    #[test]
    fn records_become_log_records_with_their_fields_as_attributes() {
        let mut r = Record::new(Event::Request);
        r.seq = 42;
        r.agent = Some("analyst".into());
        r.decision = Some("deny".into());
        let v = request(std::slice::from_ref(&r));
        let lr = &v["resourceLogs"][0]["scopeLogs"][0]["logRecords"][0];
        assert_eq!(lr["severityText"], "WARN");
        assert_eq!(lr["timeUnixNano"], r.time_unix_ns.to_string());
        let attrs = lr["attributes"].as_array().unwrap();
        assert!(attrs.contains(&int("agentgate.seq", 42)));
        assert!(attrs.contains(&string("agentgate.agent", "analyst")));
        let body: Record =
            serde_json::from_str(lr["body"]["stringValue"].as_str().unwrap()).unwrap();
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::to_value(&r).unwrap()
        );
    }
}
