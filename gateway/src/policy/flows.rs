//! Flow conditions: what a caller was allowed to call recently, for rules that hold only after
//! certain calls (`[rules.after]`), such as "no public writes after a private read" (the toxic
//! flow: a private repository read, then an issue opened in a public one, each allowed alone).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::config::policy::AfterSpec;

/// Callers remembered at once. A call of a caller beyond them is not remembered: until the
/// longest window has passed since, whether a caller not remembered made such a call is
/// unknown (a deny rule holds, an allow rule does not).
const MAX_CALLERS: usize = 10_000;
/// The longest `within` a rule may ask for: older calls are never needed.
pub const MAX_WITHIN: Duration = Duration::from_secs(24 * 60 * 60);

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
    last: HashMap<String, HashMap<Arc<str>, Instant>>,
    /// Until when callers not in `last` may have made a call that was not remembered.
    lost_until: Option<Instant>,
}

impl CallLog {
    /// Notes that `caller` was let through, at `now`, to a call the conditions `keys` name.
    pub fn record(&self, caller: &str, keys: &[Arc<str>], now: Instant) {
        if keys.is_empty() {
            return;
        }
        let mut st = lock(&self.state);
        if !st.last.contains_key(caller) && st.last.len() >= MAX_CALLERS {
            st.last
                .retain(|_, seen| seen.values().any(|at| now.duration_since(*at) < MAX_WITHIN));
            if st.last.len() >= MAX_CALLERS {
                // Forgetting someone else's calls would let their next call through: this one
                // goes unremembered instead, and callers unknown to the log are in doubt.
                st.lost_until = Some(now + MAX_WITHIN);
                return;
            }
        }
        let seen = st.last.entry(caller.to_owned()).or_default();
        for key in keys {
            seen.insert(key.clone(), now);
        }
    }

    /// Whether `caller` was let through to a call `after` names within its window; `None` when
    /// that is unknown (the log was full when it may have been).
    pub fn called(&self, caller: &str, after: &AfterSpec, now: Instant) -> Option<bool> {
        let st = lock(&self.state);
        match st.last.get(caller) {
            Some(seen) => Some(
                seen.get(&after.key)
                    .is_some_and(|at| now.duration_since(*at) <= after.within),
            ),
            None if st.lost_until.is_some_and(|until| now < until) => None,
            None => Some(false),
        }
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
        assert_eq!(log.called("agent:a", &private, t0), Some(false));
        log.record("agent:a", std::slice::from_ref(&private.key), t0);
        assert_eq!(
            log.called("agent:a", &private, t0 + Duration::from_secs(30)),
            Some(true)
        );
        // Another caller, another condition, or after the window: no.
        assert_eq!(log.called("agent:b", &private, t0), Some(false));
        assert_eq!(log.called("agent:a", &other, t0), Some(false));
        assert_eq!(
            log.called("agent:a", &private, t0 + Duration::from_secs(61)),
            Some(false)
        );
        // However many other calls the caller makes, this one stays.
        for _ in 0..1000 {
            log.record("agent:a", std::slice::from_ref(&other.key), t0);
        }
        assert_eq!(log.called("agent:a", &private, t0), Some(true));
        // A condition written alike in another rule (or after a reload) is the same condition.
        assert_eq!(
            log.called("agent:a", &after(&["github"], &["get_*"], 60), t0),
            Some(true)
        );
    }

    #[test]
    fn a_full_log_forgets_no_one_and_puts_newcomers_in_doubt() {
        let log = CallLog::default();
        let t0 = Instant::now();
        let a = after(&["s"], &["t"], 60);
        let keys = std::slice::from_ref(&a.key);
        for i in 0..MAX_CALLERS {
            log.record(&format!("ip:{i}"), keys, t0);
        }
        assert_eq!(log.called("ip:new", &a, t0), Some(false));
        log.record("ip:new", keys, t0);
        // Not remembered, and not forgotten: unknown, while any such call may be in a window.
        assert_eq!(log.called("ip:new", &a, t0), None);
        assert_eq!(log.called("ip:other", &a, t0), None);
        assert_eq!(log.called("ip:0", &a, t0), Some(true));
        assert_eq!(log.called("ip:other", &a, t0 + MAX_WITHIN), Some(false));
        // Once the remembered calls are past every window, there is room again.
        log.record("ip:late", keys, t0 + MAX_WITHIN);
        assert_eq!(log.called("ip:late", &a, t0 + MAX_WITHIN), Some(true));
    }
}
