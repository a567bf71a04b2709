//! Flow conditions: what a caller was allowed to call recently, for rules that hold only after
//! certain calls (`[rules.after]`), such as "no public writes after a private read" (the toxic
//! flow: a private repository read, then an issue opened in a public one, each allowed alone).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::config::policy::AfterSpec;
use crate::proxy::lock;

/// Callers remembered at once. A call of a caller beyond them is not remembered: until the
/// longest window has passed since, whether a caller not remembered made such a call is
/// unknown (a deny rule holds, an allow rule does not).
const MAX_CALLERS: usize = 10_000;
/// The longest `within` a rule may ask for: older calls are never needed.
pub const MAX_WITHIN: Duration = Duration::from_secs(24 * 60 * 60);

/// Which calls a condition reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen {
    /// Let through by the policy, sent or not: what a deny rule reads (a call refused after
    /// its decision makes a deny hold that need not; one in the same batch, or at the same
    /// time, as the call it would deny is not missed).
    Decided,
    /// Sent upstream and answered with success: what an allow rule reads (a call that never
    /// ran opens nothing).
    Sent,
}

/// When each caller was last let through to a call each `[rules.after]` names (by the
/// condition's key), by caller: the identity rate limits are keyed on, never the MCP session
/// (an agent that starts a new session is the same agent). Bounded by callers times
/// conditions, whatever the calls; kept across policy reloads.
#[derive(Debug, Default)]
pub struct CallLog {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    callers: HashMap<String, Caller>,
    /// Until when a caller may have made a call that was not remembered (the log was full).
    lost_until: Option<Instant>,
}

#[derive(Debug, Default)]
struct Caller {
    decided: HashMap<Arc<str>, Instant>,
    sent: HashMap<Arc<str>, Instant>,
    /// Until when a call of this caller may have gone unremembered (it was first remembered
    /// while calls were being lost).
    doubt_until: Option<Instant>,
}

impl CallLog {
    /// Notes that `caller` made, at `now`, a call the conditions `keys` name (`Sent` implies
    /// `Decided`).
    pub fn record(&self, caller: &str, keys: &[Arc<str>], seen: Seen, now: Instant) {
        if keys.is_empty() {
            return;
        }
        let mut st = lock(&self.state);
        if !st.callers.contains_key(caller) && st.callers.len() >= MAX_CALLERS {
            st.callers.retain(|_, c| {
                c.decided
                    .values()
                    .any(|at| now.duration_since(*at) < MAX_WITHIN)
            });
            if st.callers.len() >= MAX_CALLERS {
                // Forgetting someone else's calls would let their next call through: this one
                // goes unremembered instead, and callers unknown to the log are in doubt.
                st.lost_until = Some(now + MAX_WITHIN);
                return;
            }
        }
        let lost_until = st.lost_until.filter(|until| now < *until);
        let entry = st
            .callers
            .entry(caller.to_owned())
            .or_insert_with(|| Caller {
                doubt_until: lost_until,
                ..Caller::default()
            });
        for key in keys {
            entry.decided.insert(key.clone(), now);
            if seen == Seen::Sent {
                entry.sent.insert(key.clone(), now);
            }
        }
    }

    /// Whether `caller` made a call `after` names within its window, as `seen` counts calls;
    /// `None` when that is unknown (the log was full when it may have been).
    pub fn called(
        &self,
        caller: &str,
        after: &AfterSpec,
        seen: Seen,
        now: Instant,
    ) -> Option<bool> {
        let st = lock(&self.state);
        let (at, doubt_until) = match st.callers.get(caller) {
            Some(c) => {
                let calls = match seen {
                    Seen::Decided => &c.decided,
                    Seen::Sent => &c.sent,
                };
                (calls.get(&after.key).copied(), c.doubt_until)
            }
            None => (None, st.lost_until),
        };
        match at {
            Some(at) if now.duration_since(at) <= after.within => Some(true),
            _ if doubt_until.is_some_and(|until| now < until) => None,
            _ => Some(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::policy::Pattern;

    fn after(servers: &[&str], tools: &[&str], within: u64) -> AfterSpec {
        AfterSpec::new(
            servers.iter().map(|s| Pattern::parse(s).unwrap()).collect(),
            tools.iter().map(|s| Pattern::parse(s).unwrap()).collect(),
            Duration::from_secs(within),
        )
    }

    #[test]
    fn a_call_counts_for_its_caller_condition_and_window() {
        let log = CallLog::default();
        let t0 = Instant::now();
        let private = after(&["github"], &["get_*"], 60);
        let other = after(&["github"], &["search"], 60);
        let called = |caller: &str, a: &AfterSpec, at| log.called(caller, a, Seen::Decided, at);
        assert_eq!(called("agent:a", &private, t0), Some(false));
        log.record(
            "agent:a",
            std::slice::from_ref(&private.key),
            Seen::Decided,
            t0,
        );
        assert_eq!(
            called("agent:a", &private, t0 + Duration::from_secs(30)),
            Some(true)
        );
        // Decided is not sent.
        assert_eq!(log.called("agent:a", &private, Seen::Sent, t0), Some(false));
        // Another caller, another condition, or after the window: no.
        assert_eq!(called("agent:b", &private, t0), Some(false));
        assert_eq!(called("agent:a", &other, t0), Some(false));
        assert_eq!(
            called("agent:a", &private, t0 + Duration::from_secs(61)),
            Some(false)
        );
        // However many other calls the caller makes, this one stays.
        for _ in 0..1000 {
            log.record("agent:a", std::slice::from_ref(&other.key), Seen::Sent, t0);
        }
        assert_eq!(called("agent:a", &private, t0), Some(true));
        // Sent is decided too.
        assert_eq!(called("agent:a", &other, t0), Some(true));
        assert_eq!(log.called("agent:a", &other, Seen::Sent, t0), Some(true));
        // A condition written alike in another rule (or after a reload) is the same condition.
        assert_eq!(
            called("agent:a", &after(&["github"], &["get_*"], 60), t0),
            Some(true)
        );
    }

    #[test]
    fn a_full_log_forgets_no_one_and_puts_newcomers_in_doubt() {
        let log = CallLog::default();
        let t0 = Instant::now();
        let a = after(&["s"], &["t"], 60);
        let b = after(&["s"], &["u"], 60);
        let called = |caller: &str, c: &AfterSpec, at| log.called(caller, c, Seen::Decided, at);
        for i in 0..MAX_CALLERS {
            log.record(
                &format!("ip:{i}"),
                std::slice::from_ref(&a.key),
                Seen::Decided,
                t0,
            );
        }
        assert_eq!(called("ip:new", &a, t0), Some(false));
        log.record("ip:new", std::slice::from_ref(&a.key), Seen::Decided, t0);
        // Not remembered, and not forgotten: unknown, while any such call may be in a window.
        assert_eq!(called("ip:new", &a, t0), None);
        assert_eq!(called("ip:other", &a, t0), None);
        assert_eq!(called("ip:0", &a, t0), Some(true));
        assert_eq!(called("ip:other", &a, t0 + MAX_WITHIN), Some(false));
        // A caller whose call was lost and who is remembered later (once old calls are past
        // every window) stays in doubt for what it lost, until that call's window is over.
        let lost_at = t0 + MAX_WITHIN / 2;
        log.record("ip:x", std::slice::from_ref(&a.key), Seen::Decided, lost_at);
        let roomy = t0 + MAX_WITHIN + Duration::from_secs(1);
        log.record("ip:x", std::slice::from_ref(&b.key), Seen::Decided, roomy);
        assert_eq!(called("ip:x", &b, roomy), Some(true));
        assert_eq!(called("ip:x", &a, roomy), None);
        assert_eq!(called("ip:x", &a, lost_at + MAX_WITHIN), Some(false));
    }
}
