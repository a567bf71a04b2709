//! What the gateway remembers per MCP session: the revision the two ends negotiated, so that
//! later requests are held to that revision's rules (batches, required headers).
//!
//! Bounded: beyond `max_sessions` the oldest entry is forgotten, which only means that session's
//! requests fall back to what their headers say.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
};

use crate::mcp::Revision;

/// Session id (as the upstream issued it, scoped by server) -> negotiated revision.
#[derive(Debug)]
pub struct Sessions {
    max: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<(String, String), Revision>,
    order: VecDeque<(String, String)>,
}

impl Sessions {
    pub fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Records the revision an initialize exchange settled on; true when the session is new.
    pub fn insert(&self, server: &str, session: &str, revision: Revision) -> bool {
        let key = (server.to_owned(), session.to_owned());
        let mut inner = self.lock();
        let new = inner.map.insert(key.clone(), revision).is_none();
        if new {
            inner.order.push_back(key);
        }
        while inner.map.len() > self.max {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            inner.map.remove(&oldest);
        }
        new
    }

    pub fn get(&self, server: &str, session: &str) -> Option<Revision> {
        self.lock()
            .map
            .get(&(server.to_owned(), session.to_owned()))
            .copied()
    }

    /// Forgets a session (DELETE, or the upstream said it is gone).
    pub fn remove(&self, server: &str, session: &str) {
        let key = (server.to_owned(), session.to_owned());
        let mut inner = self.lock();
        if inner.map.remove(&key).is_some() {
            inner.order.retain(|k| k != &key);
        }
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
    fn bounded_oldest_first_and_scoped_by_server() {
        let s = Sessions::new(2);
        s.insert("a", "1", Revision::V2025_03_26);
        s.insert("b", "1", Revision::V2025_06_18);
        assert_eq!(s.get("a", "1"), Some(Revision::V2025_03_26));
        assert_eq!(s.get("b", "1"), Some(Revision::V2025_06_18));
        s.insert("a", "2", Revision::V2025_11_25);
        assert_eq!(s.get("a", "1"), None);
        assert_eq!(s.len(), 2);
        s.remove("b", "1");
        assert_eq!(s.get("b", "1"), None);
    }
}
