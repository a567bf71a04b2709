//! Flow conditions: what a caller was allowed to call recently, for rules that hold only after
//! certain calls (`[rules.after]`), such as "no public writes after a private read" (the toxic
//! flow: a private repository read, then an issue opened in a public one, each allowed alone).

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::config::policy::AfterSpec;

/// Calls kept per caller: the latest, so a caller that calls much keeps its recent history.
const MAX_CALLS_PER_CALLER: usize = 256;
/// Callers kept at once. Beyond, the one whose latest call is oldest is forgotten first.
const MAX_CALLERS: usize = 10_000;
/// The longest `within` a rule may ask for: older calls are never needed.
pub const MAX_WITHIN: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug)]
struct Call {
    server: Box<str>,
    tool: Box<str>,
    at: Instant,
}

/// Recent calls of the tools some rule's `after` names, by caller (the identity rate limits are
/// keyed on, never the MCP session: an agent that starts a new session is the same agent).
/// Kept across policy reloads.
#[derive(Debug, Default)]
pub struct CallLog {
    calls: Mutex<HashMap<String, VecDeque<Call>>>,
}

impl CallLog {
    /// Notes that `caller` was let through to `tool` on `server` at `now`.
    pub fn record(&self, caller: String, server: &str, tool: &str, now: Instant) {
        let mut calls = lock(&self.calls);
        if !calls.contains_key(&caller) && calls.len() >= MAX_CALLERS {
            calls.retain(|_, c| {
                c.back()
                    .is_some_and(|c| now.duration_since(c.at) < MAX_WITHIN)
            });
            if calls.len() >= MAX_CALLERS
                && let Some(stalest) = calls
                    .iter()
                    .min_by_key(|(_, c)| c.back().map(|c| c.at))
                    .map(|(k, _)| k.clone())
            {
                calls.remove(&stalest);
            }
        }
        let mine = calls.entry(caller).or_default();
        if mine.len() >= MAX_CALLS_PER_CALLER {
            mine.pop_front();
        }
        mine.push_back(Call {
            server: server.into(),
            tool: tool.into(),
            at: now,
        });
    }

    /// Whether `caller` was let through to a call `after` names within its window.
    pub fn called(&self, caller: &str, after: &AfterSpec, now: Instant) -> bool {
        lock(&self.calls).get(caller).is_some_and(|calls| {
            calls.iter().rev().any(|c| {
                now.duration_since(c.at) <= after.within && after.covers(&c.server, &c.tool)
            })
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Nothing here is left half-updated by a panic.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::policy::Pattern;

    fn after(servers: &[&str], tools: &[&str], within: u64) -> AfterSpec {
        AfterSpec {
            servers: servers.iter().map(|s| Pattern::parse(s).unwrap()).collect(),
            tools: tools.iter().map(|s| Pattern::parse(s).unwrap()).collect(),
            within: Duration::from_secs(within),
        }
    }

    #[test]
    fn a_call_counts_for_its_caller_server_tool_and_window() {
        let log = CallLog::default();
        let t0 = Instant::now();
        let private = after(&["github"], &["get_*"], 60);
        assert!(!log.called("agent:a", &private, t0));
        log.record("agent:a".into(), "github", "get_file_contents", t0);
        assert!(log.called("agent:a", &private, t0 + Duration::from_secs(30)));
        // Another caller, another server, another tool, or after the window: no.
        assert!(!log.called("agent:b", &private, t0));
        assert!(!log.called("agent:a", &after(&["gitlab"], &["get_*"], 60), t0));
        assert!(!log.called("agent:a", &after(&["github"], &["search"], 60), t0));
        assert!(!log.called("agent:a", &private, t0 + Duration::from_secs(61)));
        assert!(log.called("agent:a", &after(&["*"], &["get_file_contents"], 60), t0));
    }

    #[test]
    fn the_log_is_bounded() {
        let log = CallLog::default();
        let t0 = Instant::now();
        for i in 0..MAX_CALLS_PER_CALLER + 10 {
            log.record("agent:a".into(), "s", &format!("t{i}"), t0);
        }
        assert_eq!(lock(&log.calls)["agent:a"].len(), MAX_CALLS_PER_CALLER);
        // The oldest went; the latest stay.
        assert!(!log.called("agent:a", &after(&["s"], &["t0"], 60), t0));
        assert!(log.called("agent:a", &after(&["s"], &["t265"], 60), t0));
        for i in 0..MAX_CALLERS + 5 {
            log.record(
                format!("ip:{i}"),
                "s",
                "t",
                t0 + Duration::from_millis(i as u64),
            );
        }
        assert!(lock(&log.calls).len() <= MAX_CALLERS);
        // The callers seen last are kept.
        assert!(log.called(
            &format!("ip:{}", MAX_CALLERS + 4),
            &after(&["s"], &["t"], 60),
            t0 + Duration::from_secs(20)
        ));
    }
}
