//! What the gateway remembers per MCP session on an HTTP upstream: who opened it, so that no
//! other caller can use it, and the revision the two ends negotiated, so that later requests
//! are held to that revision's rules (batches, required headers).
//!
//! Bounded: beyond `max_sessions` the least recently used entry is forgotten, and one caller
//! holds at most a quarter of them (beyond that its own least recently used goes), so that no
//! caller can push everybody else's sessions out, and a flood of new sessions pushes out idle
//! ones before busy ones. A forgotten session is refused like an unknown one (404), and its
//! agent starts a new one, as MCP clients do when a server forgets a session.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
};

use crate::mcp::Revision;

/// Session id (as the upstream issued it, scoped by server) -> its owner and revision.
#[derive(Debug)]
pub struct Sessions {
    max: usize,
    inner: Mutex<Inner>,
}

type Key = (String, String);

#[derive(Debug)]
struct Entry {
    /// The principal whose request the upstream answered with this session id.
    owner: Box<str>,
    revision: Option<Revision>,
    /// When it was last claimed or used (a counter, not a clock).
    used: u64,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<Key, Entry>,
    /// Every entry by last use, least recent first.
    order: BTreeMap<u64, Key>,
    /// Each owner's entries by last use.
    held: HashMap<Box<str>, BTreeMap<u64, Key>>,
    clock: u64,
}

impl Inner {
    fn forget(&mut self, key: &Key) {
        if let Some(entry) = self.map.remove(key) {
            self.order.remove(&entry.used);
            if let Some(own) = self.held.get_mut(&entry.owner) {
                own.remove(&entry.used);
                if own.is_empty() {
                    self.held.remove(&entry.owner);
                }
            }
        }
    }

    fn touch(&mut self, key: &Key) {
        self.clock += 1;
        let now = self.clock;
        if let Some(entry) = self.map.get_mut(key) {
            let before = std::mem::replace(&mut entry.used, now);
            self.order.remove(&before);
            self.order.insert(now, key.clone());
            if let Some(own) = self.held.get_mut(&entry.owner) {
                own.remove(&before);
                own.insert(now, key.clone());
            }
        }
    }

    fn held_by(&self, owner: &str) -> usize {
        self.held.get(owner).map_or(0, BTreeMap::len)
    }
}

impl Sessions {
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Records that the upstream gave `session` to `owner`. A session keeps its first owner: an
    /// upstream that hands one id to two callers does not make it shared.
    pub fn claim(&self, server: &str, session: &str, owner: &str) {
        self.update(server, session, owner, |_| ());
    }

    /// Records the revision an initialize exchange settled on (claiming the session for `owner`
    /// if nobody has); true when the session had none yet. A session's revision is settled
    /// once: a later claim does not change it.
    pub fn negotiated(&self, server: &str, session: &str, owner: &str, revision: Revision) -> bool {
        let mut new = false;
        self.update(server, session, owner, |entry| {
            if entry.revision.is_none() {
                entry.revision = Some(revision);
                new = true;
            }
        });
        new
    }

    fn update(&self, server: &str, session: &str, owner: &str, f: impl FnOnce(&mut Entry)) {
        let key = (server.to_owned(), session.to_owned());
        let mut inner = self.lock();
        if let Some(entry) = inner.map.get_mut(&key) {
            if &*entry.owner == owner {
                f(entry);
                inner.touch(&key);
            }
            return;
        }
        let per_owner = (self.max / 4).max(1);
        if inner.held_by(owner) >= per_owner {
            let own_least = inner
                .held
                .get(owner)
                .and_then(|own| own.values().next().cloned());
            if let Some(least) = own_least {
                inner.forget(&least);
            }
        }
        inner.clock += 1;
        let used = inner.clock;
        let mut entry = Entry {
            owner: owner.into(),
            revision: None,
            used,
        };
        f(&mut entry);
        inner
            .held
            .entry(owner.into())
            .or_default()
            .insert(used, key.clone());
        inner.map.insert(key.clone(), entry);
        inner.order.insert(used, key);
        while inner.map.len() > self.max {
            let Some(least) = inner.order.values().next().cloned() else {
                break;
            };
            inner.forget(&least);
        }
    }

    /// Whether `session` is one the upstream gave `principal` (which counts as a use of it).
    pub fn owned_by(&self, server: &str, session: &str, principal: &str) -> bool {
        let key = (server.to_owned(), session.to_owned());
        let mut inner = self.lock();
        let owned = inner.map.get(&key).is_some_and(|e| &*e.owner == principal);
        if owned {
            inner.touch(&key);
        }
        owned
    }

    pub fn get(&self, server: &str, session: &str) -> Option<Revision> {
        self.lock()
            .map
            .get(&(server.to_owned(), session.to_owned()))
            .and_then(|e| e.revision)
    }

    /// Forgets a session (DELETE, or the upstream said it is gone).
    pub fn remove(&self, server: &str, session: &str) {
        let key = (server.to_owned(), session.to_owned());
        self.lock().forget(&key);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().map.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the map inconsistent in a way that
        // matters (worst case a stale entry), so recover rather than propagate poison.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_least_recently_used_first_and_scoped_by_server() {
        let s = Sessions::new(2);
        s.negotiated("a", "1", "alice", Revision::V2025_03_26);
        s.negotiated("b", "1", "bob", Revision::V2025_06_18);
        assert_eq!(s.get("a", "1"), Some(Revision::V2025_03_26));
        assert_eq!(s.get("b", "1"), Some(Revision::V2025_06_18));
        s.claim("a", "2", "carol");
        assert_eq!(s.get("a", "1"), None);
        assert!(!s.owned_by("a", "1", "alice"), "forgotten, so refused");
        assert_eq!(s.len(), 2);
        s.remove("b", "1");
        assert_eq!(s.get("b", "1"), None);
    }

    #[test]
    fn one_caller_cannot_push_out_everybody_elses_sessions() {
        let s = Sessions::new(8);
        s.claim("a", "alice-1", "alice");
        s.claim("a", "alice-2", "alice");
        for i in 0..100 {
            s.claim("a", &format!("mallory-{i}"), "mallory");
        }
        assert!(s.owned_by("a", "alice-1", "alice") && s.owned_by("a", "alice-2", "alice"));
        // Mallory keeps a quarter: her newest two.
        assert!(
            s.owned_by("a", "mallory-99", "mallory") && s.owned_by("a", "mallory-98", "mallory")
        );
        assert!(!s.owned_by("a", "mallory-97", "mallory"));
        assert_eq!(s.len(), 4);
        // Ended sessions give their owner room again.
        s.remove("a", "mallory-99");
        s.claim("a", "mallory-100", "mallory");
        assert!(s.owned_by("a", "mallory-98", "mallory"));
        assert_eq!(s.lock().held_by("mallory"), 2);
    }

    /// A flood of new sessions pushes out idle ones before the ones in use, however old.
    #[test]
    fn sessions_in_use_outlive_a_flood_of_new_ones() {
        let s = Sessions::new(8);
        s.claim("a", "busy", "alice");
        s.claim("a", "idle", "alice");
        for owner in ["m1", "m2", "m3"] {
            for i in 0..2 {
                s.claim("a", &format!("{owner}-{i}"), owner);
                assert!(s.owned_by("a", "busy", "alice"), "used between floods");
            }
        }
        s.claim("a", "m4-0", "m4");
        s.claim("a", "m4-1", "m4");
        assert!(s.owned_by("a", "busy", "alice"), "the oldest, but in use");
        assert!(!s.owned_by("a", "idle", "alice"), "idle, so gone first");
        assert_eq!(s.len(), 8);
        let inner = s.lock();
        assert_eq!(inner.order.len(), 8);
        assert_eq!(inner.held.values().map(BTreeMap::len).sum::<usize>(), 8);
    }

    #[test]
    fn a_session_belongs_to_its_first_owner() {
        let s = Sessions::new(8);
        s.claim("a", "1", "alice");
        assert!(s.owned_by("a", "1", "alice"));
        assert!(!s.owned_by("a", "1", "bob"));
        assert!(!s.owned_by("b", "1", "alice"), "scoped by server");
        assert!(!s.owned_by("a", "2", "alice"), "unknown");
        // Neither a second claim nor bob's negotiation takes it over or changes it.
        s.claim("a", "1", "bob");
        assert!(!s.negotiated("a", "1", "bob", Revision::V2025_06_18));
        assert!(s.owned_by("a", "1", "alice") && !s.owned_by("a", "1", "bob"));
        assert_eq!(s.get("a", "1"), None);
        assert!(s.negotiated("a", "1", "alice", Revision::V2025_11_25));
        assert!(!s.negotiated("a", "1", "alice", Revision::V2025_11_25));
        assert_eq!(s.get("a", "1"), Some(Revision::V2025_11_25));
        // Settled once: a later message claiming another revision does not switch the rules.
        assert!(!s.negotiated("a", "1", "alice", Revision::V2025_03_26));
        assert_eq!(s.get("a", "1"), Some(Revision::V2025_11_25));
    }
}
