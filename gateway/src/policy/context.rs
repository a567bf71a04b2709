//! Context conditions: time windows, process attributes, token claims, and the token buckets
//! of rate limits.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::Mutex,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    config::policy::{ProcessSpec, RateSpec, TimeWindow, TokenSpec},
    identity::ProcessIdentity,
};

/// Whether `now` falls in any of the windows (no windows: always).
pub fn in_windows(windows: &[TimeWindow], now: jiff::Timestamp) -> Result<(), String> {
    if windows.is_empty() || windows.iter().any(|w| in_window(w, now)) {
        return Ok(());
    }
    let w = &windows[0];
    Err(format!(
        "outside the allowed hours ({:02}:{:02}-{:02}:{:02} {})",
        w.from / 60,
        w.from % 60,
        w.to / 60,
        w.to % 60,
        w.tz_name
    ))
}

fn in_window(w: &TimeWindow, now: jiff::Timestamp) -> bool {
    let local = now.to_zoned(w.tz.clone());
    let minutes = u16::from(local.hour() as u8) * 60 + u16::from(local.minute() as u8);
    let today = local.weekday().to_monday_one_offset();
    let day_ok = |d: i8| w.days.is_empty() || w.days.contains(&d);
    if w.from < w.to {
        (w.from..w.to).contains(&minutes) && day_ok(today)
    } else if minutes >= w.from {
        day_ok(today)
    } else if minutes < w.to {
        // The part after midnight belongs to the window that opened the day before.
        day_ok(if today == 1 { 7 } else { today - 1 })
    } else {
        false
    }
}

/// Whether the attested process has the attributes (no attestation: never, unless none asked).
pub fn process_matches(spec: &ProcessSpec, p: Option<&ProcessIdentity>) -> Result<(), String> {
    if spec.is_empty() {
        return Ok(());
    }
    let Some(p) = p else {
        return Err("the caller's process is not attested (explicit mode)".into());
    };
    let fail = |what: &str| Err(format!("process {what} is not among those allowed"));
    if let Some(uids) = &spec.uid
        && !uids.contains(&p.uid)
    {
        return fail("uid");
    }
    if let Some(exes) = &spec.exe
        && !p.exe.as_ref().is_some_and(|e| exes.contains(e))
    {
        return fail("executable");
    }
    if let Some(hashes) = &spec.exe_sha256
        && !p.exe_sha256.as_ref().is_some_and(|h| hashes.contains(h))
    {
        return fail("executable hash");
    }
    if let Some(units) = &spec.unit
        && !p.unit.as_ref().is_some_and(|u| units.contains(u))
    {
        return fail("systemd unit");
    }
    if let Some(containers) = &spec.container
        && !p.container.as_ref().is_some_and(|c| containers.contains(c))
    {
        return fail("container");
    }
    if !p.process_verified {
        return Err("the process that connected could not be verified in /proc".into());
    }
    Ok(())
}

/// A deny rule's process condition: holds unless the process is known to differ. A caller
/// without attestation (explicit mode) may be any process; one whose process could not be
/// verified in /proc is known by its uid only (the kernel's); an attribute that could not be
/// read (an executable, a cgroup) may have any value.
pub fn process_may_match(spec: &ProcessSpec, p: Option<&ProcessIdentity>) -> Result<(), String> {
    let Some(p) = p.filter(|_| !spec.is_empty()) else {
        return Ok(());
    };
    let fail = |what: &str| Err(format!("process {what} is not among those the rule names"));
    if let Some(uids) = &spec.uid
        && !uids.contains(&p.uid)
    {
        return fail("uid");
    }
    if !p.process_verified {
        return Ok(());
    }
    fn differs<T: PartialEq>(want: Option<&Vec<T>>, have: Option<&T>) -> bool {
        want.is_some_and(|w| have.is_some_and(|h| !w.contains(h)))
    }
    if differs(spec.exe.as_ref(), p.exe.as_ref()) {
        return fail("executable");
    }
    if differs(spec.exe_sha256.as_ref(), p.exe_sha256.as_ref()) {
        return fail("executable hash");
    }
    // Unit and container come from the cgroup path: unknown without one, and with one, known
    // (none, "", when the path names none).
    let from_cgroup = |v: &Option<String>| match (&p.cgroup, v) {
        (None, _) => None,
        (Some(_), v) => Some(v.clone().unwrap_or_default()),
    };
    if differs(spec.unit.as_ref(), from_cgroup(&p.unit).as_ref()) {
        return fail("systemd unit");
    }
    if differs(spec.container.as_ref(), from_cgroup(&p.container).as_ref()) {
        return fail("container");
    }
    Ok(())
}

/// Whether the caller's client certificate is one of those allowed and, when asked, names the
/// same agent as the kernel-attested process.
pub fn certificate_matches(
    spec: &crate::config::policy::CertificateSpec,
    cert: Option<&crate::identity::CertificateIdentity>,
    process: Option<&ProcessIdentity>,
) -> Result<(), String> {
    if spec.is_empty() {
        return Ok(());
    }
    let Some(cert) = cert else {
        return Err("no client certificate was presented".into());
    };
    if let Some(ids) = &spec.ids
        && !ids.iter().any(|p| p.matches(&cert.id))
    {
        return Err(format!(
            "client certificate {:?} is not among those allowed",
            cert.id
        ));
    }
    if spec.agrees_with_process {
        let Some(process) = process else {
            return Err(
                "the caller's process is not attested, so nothing confirms its certificate".into(),
            );
        };
        match &cert.agent {
            Some(a) if *a == process.agent => {}
            Some(a) => {
                return Err(format!(
                    "the client certificate names agent {a:?} but the process is agent {:?}",
                    process.agent
                ));
            }
            None => {
                return Err(format!(
                    "client certificate {:?} names no configured agent",
                    cert.id
                ));
            }
        }
    }
    Ok(())
}

/// Whether the caller's token grants the scopes and carries the claims.
pub fn token_matches(spec: &TokenSpec, claims: Option<&Value>) -> Result<(), String> {
    if spec.is_empty() {
        return Ok(());
    }
    let Some(claims) = claims else {
        return Err("no token was presented".into());
    };
    let granted: Vec<&str> = match (claims.get("scope"), claims.get("scp")) {
        (Some(Value::String(s)), _) => s.split(' ').filter(|s| !s.is_empty()).collect(),
        (_, Some(Value::Array(a))) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if let Some(missing) = spec.scopes.iter().find(|s| !granted.contains(&s.as_str())) {
        return Err(format!("the token lacks scope {missing:?}"));
    }
    for (name, accepted) in &spec.claims {
        let ok = match claims.get(name) {
            Some(Value::Array(values)) => values.iter().any(|v| accepted.contains(v)),
            Some(v) => accepted.contains(v),
            None => false,
        };
        if !ok {
            return Err(format!(
                "the token's claim {name:?} is not one of those allowed"
            ));
        }
    }
    Ok(())
}

/// Most buckets kept. Beyond it, buckets that have refilled (as good as new) are dropped; when
/// every bucket is still draining, a request that would need a new one is refused like an
/// exhausted one, since dropping a drained bucket would hand its owner a full one.
const MAX_BUCKETS: usize = 100_000;

/// Shortest time between two prunes: a flood of new keys against a full table costs one scan
/// per interval, not one per request.
const PRUNE_GAP: Duration = Duration::from_secs(1);

/// Buckets one identity may hold: one caller filling the table with distinct targets must
/// not leave the other callers' first requests refused.
const MAX_BUCKETS_PER_IDENTITY: usize = MAX_BUCKETS / 16;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
    /// The identity it belongs to (hashed).
    owner: u64,
    /// Its own rule's refill rate (tokens per second) and burst: a prune judges it by these.
    rate: f64,
    burst: f64,
}

impl Bucket {
    fn refilled(&self, now: Instant) -> bool {
        self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * self.rate >= self.burst
    }
}

/// A token taken from one bucket: given back if the request it paid for is refused unsent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Charge {
    key: u64,
    burst: u32,
}

/// Token buckets, keyed by (rule, agent identity, lane, target). They outlive policy reloads.
#[derive(Debug, Default)]
pub struct RateLimiter {
    hasher: RandomState,
    buckets: Mutex<Buckets>,
}

#[derive(Debug, Default)]
struct Buckets {
    map: HashMap<u64, Bucket>,
    /// How many buckets each identity holds.
    held: HashMap<u64, usize>,
    pruned: Option<Instant>,
}

impl RateLimiter {
    /// Takes one token; `None` when the bucket is empty (or when a new bucket is needed and
    /// none can be had: at most 100,000 are kept). `lane` separates uses of one target that must
    /// not drain each other's bucket (completions, which clients send as the user types,
    /// beside the prompt they complete). A resource's query and fragment are no part of its
    /// target here: `file:///x?1` and `file:///x?2` draw on one bucket.
    pub fn take(
        &self,
        spec: &RateSpec,
        rule: &str,
        identity: &str,
        (lane, target): (&str, &str),
        now: Instant,
    ) -> Option<Charge> {
        let target = match target.split_once("://") {
            Some(_) => target.split(['?', '#']).next().unwrap_or(target),
            None => target,
        };
        let key = self.hasher.hash_one((rule, identity, lane, target));
        let owner = self.hasher.hash_one(identity);
        let rate = f64::from(spec.requests) / spec.per.as_secs_f64();
        let burst = f64::from(spec.burst);
        let mut guard = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let buckets = &mut *guard;
        if !buckets.map.contains_key(&key) {
            let full = |b: &Buckets| {
                b.map.len() >= MAX_BUCKETS
                    || b.held.get(&owner).copied().unwrap_or(0) >= MAX_BUCKETS_PER_IDENTITY
            };
            if full(buckets)
                && buckets
                    .pruned
                    .is_none_or(|t| now.saturating_duration_since(t) >= PRUNE_GAP)
            {
                buckets.pruned = Some(now);
                let Buckets { map, held, .. } = buckets;
                map.retain(|_, b| {
                    let keep = !b.refilled(now);
                    if !keep && let Some(n) = held.get_mut(&b.owner) {
                        *n -= 1;
                    }
                    keep
                });
                held.retain(|_, n| *n > 0);
            }
            if full(buckets) {
                return None;
            }
            *buckets.held.entry(owner).or_default() += 1;
        }
        let b = buckets.map.entry(key).or_insert(Bucket {
            tokens: burst,
            at: now,
            owner,
            rate,
            burst,
        });
        // A reload may have changed the rule's numbers.
        (b.rate, b.burst) = (rate, burst);
        let refill = now.saturating_duration_since(b.at).as_secs_f64() * rate;
        b.tokens = (b.tokens + refill).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Some(Charge {
                key,
                burst: spec.burst,
            })
        } else {
            None
        }
    }

    /// Returns the token `charge` took, for a request refused after all, before it was sent.
    pub fn give_back(&self, charge: Charge) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = buckets.map.get_mut(&charge.key) {
            b.tokens = (b.tokens + 1.0).min(f64::from(charge.burst));
        }
    }
}

#[cfg(test)]
mod tests {

    use serde_json::json;

    use super::*;

    fn window(days: &[i8], from: u16, to: u16, tz: &str) -> TimeWindow {
        TimeWindow {
            days: days.to_vec(),
            from,
            to,
            tz: jiff::tz::TimeZone::get(tz).unwrap(),
            tz_name: tz.into(),
        }
    }

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    /// A deny rule's process condition holds unless the process is known to differ; an allow
    /// rule's needs it shown to match.
    #[test]
    fn deny_process_conditions_hold_for_what_cannot_be_told_apart() {
        let spec = ProcessSpec {
            uid: Some(vec![1001]),
            exe: Some(vec!["/usr/bin/python3".into()]),
            unit: Some(vec!["agent.service".into()]),
            ..ProcessSpec::default()
        };
        let p = ProcessIdentity {
            agent: "a".into(),
            pid: 1,
            tgid: 1,
            uid: 1001,
            gid: 1001,
            cgroup_id: 1,
            original_destination: "127.0.0.1:1".parse().unwrap(),
            exe: Some("/usr/bin/python3".into()),
            exe_sha256: None,
            cmdline: Vec::new(),
            start_time: None,
            cgroup: Some("/system.slice/agent.service".into()),
            unit: Some("agent.service".into()),
            container: None,
            process_verified: true,
        };
        assert!(process_may_match(&spec, Some(&p)).is_ok());
        assert!(process_matches(&spec, Some(&p)).is_ok());
        // Not attested: any process.
        assert!(process_may_match(&spec, None).is_ok());
        assert!(process_matches(&spec, None).is_err());
        // Unverified: the kernel's uid still tells it apart, nothing else does.
        let unverified = ProcessIdentity {
            process_verified: false,
            exe: Some("/bin/sh".into()),
            ..p.clone()
        };
        assert!(process_may_match(&spec, Some(&unverified)).is_ok());
        assert!(process_matches(&spec, Some(&unverified)).is_err());
        let other_uid = ProcessIdentity {
            uid: 1002,
            ..unverified
        };
        assert!(process_may_match(&spec, Some(&other_uid)).is_err());
        // An executable that could not be read may be the one named; another one is not.
        let unread = ProcessIdentity {
            exe: None,
            ..p.clone()
        };
        assert!(process_may_match(&spec, Some(&unread)).is_ok());
        let shell = ProcessIdentity {
            exe: Some("/bin/sh".into()),
            ..p.clone()
        };
        assert!(process_may_match(&spec, Some(&shell)).is_err());
        // No unit in a known cgroup path differs; an unknown path may hold one.
        let no_unit = ProcessIdentity {
            unit: None,
            ..p.clone()
        };
        assert!(process_may_match(&spec, Some(&no_unit)).is_err());
        let no_cgroup = ProcessIdentity {
            cgroup: None,
            ..no_unit
        };
        assert!(process_may_match(&spec, Some(&no_cgroup)).is_ok());
    }

    #[test]
    fn business_hours_in_a_time_zone() {
        let w = [window(&[1, 2, 3, 4, 5], 9 * 60, 17 * 60, "Europe/Berlin")];
        // 2026-11-20 is a Friday. Berlin is UTC+1 in November.
        assert!(in_windows(&w, at("2026-11-20T08:00:00Z")).is_ok()); // 09:00 local
        assert!(in_windows(&w, at("2026-11-20T07:59:59Z")).is_err()); // 08:59
        assert!(in_windows(&w, at("2026-11-20T15:59:59Z")).is_ok()); // 16:59
        assert!(in_windows(&w, at("2026-11-20T16:00:00Z")).is_err()); // 17:00
        assert!(in_windows(&w, at("2026-11-21T10:00:00Z")).is_err()); // Saturday
        // Summer time: UTC+2.
        assert!(in_windows(&w, at("2026-07-01T07:00:00Z")).is_ok());
        assert!(in_windows(&w, at("2026-07-01T06:59:00Z")).is_err());
    }

    #[test]
    fn windows_across_midnight_belong_to_the_day_they_open() {
        let w = [window(&[5], 22 * 60, 6 * 60, "UTC")];
        assert!(in_windows(&w, at("2026-11-20T23:00:00Z")).is_ok()); // Friday night
        assert!(in_windows(&w, at("2026-11-21T05:59:00Z")).is_ok()); // early Saturday
        assert!(in_windows(&w, at("2026-11-21T06:00:00Z")).is_err());
        assert!(in_windows(&w, at("2026-11-21T23:00:00Z")).is_err()); // Saturday night
        assert!(in_windows(&w, at("2026-11-20T05:00:00Z")).is_err()); // after Thursday
    }

    #[test]
    fn a_full_table_drops_refilled_buckets_only_and_refuses_new_ones_otherwise() {
        let slow = RateSpec {
            requests: 1,
            per: Duration::from_secs(3600),
            burst: 1,
        };
        let fast = RateSpec {
            requests: 1000,
            per: Duration::from_secs(1),
            burst: 1000,
        };
        let r = RateLimiter::default();
        let t0 = Instant::now();
        // The agent drains its bucket on the strict rule...
        assert!(r.take(&slow, "strict", "agent:a", ("", "t"), t0).is_some());
        assert!(r.take(&slow, "strict", "agent:a", ("", "t"), t0).is_none());
        // ...then floods new keys on a fast rule until the table is full.
        for i in 0..MAX_BUCKETS {
            r.take(&fast, "fast", "agent:a", ("", &format!("t{i}")), t0);
        }
        // A second later the fast buckets have refilled and go; the strict one, judged by its
        // own rate, stays drained (before, it was judged by the fast rule's and came back full).
        let t1 = t0 + Duration::from_secs(2);
        assert!(r.take(&fast, "fast", "agent:a", ("", "new"), t1).is_some());
        assert!(r.take(&slow, "strict", "agent:a", ("", "t"), t1).is_none());
        // When nothing can go, a new key is refused rather than a drained bucket dropped; and
        // one identity holds at most its share, so that another's first request still passes.
        let r = RateLimiter::default();
        for i in 0..MAX_BUCKETS_PER_IDENTITY {
            assert!(
                r.take(&slow, "strict", "agent:a", ("", &format!("t{i}")), t0)
                    .is_some()
            );
        }
        assert!(
            r.take(&slow, "strict", "agent:a", ("", "one-more"), t0)
                .is_none()
        );
        assert!(r.take(&slow, "strict", "agent:b", ("", "t"), t0).is_some());
        for who in 0..16 {
            for i in 0..MAX_BUCKETS_PER_IDENTITY {
                r.take(
                    &slow,
                    "strict",
                    &format!("agent:{who}"),
                    ("", &format!("t{i}")),
                    t0,
                );
            }
        }
        assert!(
            r.take(&slow, "strict", "agent:late", ("", "t"), t0)
                .is_none()
        );
        // A resource's query does not make it another target.
        let r = RateLimiter::default();
        assert!(
            r.take(&slow, "s", "agent:a", ("", "file:///x?1"), t0)
                .is_some()
        );
        assert!(
            r.take(&slow, "s", "agent:a", ("", "file:///x?2#f"), t0)
                .is_none()
        );
    }

    #[test]
    fn token_bucket_refills_at_the_configured_rate() {
        let spec = RateSpec {
            requests: 2,
            per: Duration::from_secs(1),
            burst: 3,
        };
        let r = RateLimiter::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(
                r.take(&spec, "rule", "agent:a", ("", "query"), t0)
                    .is_some()
            );
        }
        assert!(
            r.take(&spec, "rule", "agent:a", ("", "query"), t0)
                .is_none()
        );
        // Another identity, tool or lane has its own bucket.
        assert!(
            r.take(&spec, "rule", "agent:b", ("", "query"), t0)
                .is_some()
        );
        assert!(
            r.take(&spec, "rule", "agent:a", ("completion", "query"), t0)
                .is_some()
        );
        assert!(
            r.take(&spec, "rule", "agent:a", ("", "other"), t0)
                .is_some()
        );
        // A token given back is there to take again, up to the burst.
        let charge = r.take(&spec, "rule", "agent:c", ("", "query"), t0).unwrap();
        r.give_back(charge);
        for _ in 0..5 {
            r.give_back(charge);
        }
        for _ in 0..3 {
            assert!(
                r.take(&spec, "rule", "agent:c", ("", "query"), t0)
                    .is_some()
            );
        }
        assert!(
            r.take(&spec, "rule", "agent:c", ("", "query"), t0)
                .is_none()
        );
        // Half a second refills one token.
        let later = t0 + Duration::from_millis(500);
        assert!(
            r.take(&spec, "rule", "agent:a", ("", "query"), later)
                .is_some()
        );
        assert!(
            r.take(&spec, "rule", "agent:a", ("", "query"), later)
                .is_none()
        );
    }

    #[test]
    fn token_scopes_and_claims() {
        let spec = TokenSpec {
            scopes: vec!["db:read".into()],
            claims: vec![("tenant".into(), vec![json!("acme")])],
        };
        assert!(token_matches(&spec, None).is_err());
        assert!(
            token_matches(
                &spec,
                Some(&json!({"scope": "a db:read", "tenant": "acme"}))
            )
            .is_ok()
        );
        assert!(
            token_matches(
                &spec,
                Some(&json!({"scp": ["db:read"], "tenant": ["x", "acme"]}))
            )
            .is_ok()
        );
        assert!(
            token_matches(
                &spec,
                Some(&json!({"scope": "db:readwrite", "tenant": "acme"}))
            )
            .is_err()
        );
        assert!(
            token_matches(&spec, Some(&json!({"scope": "db:read", "tenant": "evil"}))).is_err()
        );
        assert!(token_matches(&TokenSpec::default(), None).is_ok());
    }
}
