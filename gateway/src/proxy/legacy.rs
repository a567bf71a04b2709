//! The 2024-11-05 HTTP+SSE transport: the upstream's `endpoint` event announces where to POST.
//! The gateway rewrites that URL to one of its own, and only forwards POSTs to endpoints that a
//! live stream announced, so an agent cannot use the route to reach arbitrary upstream paths.

use std::{collections::HashMap, sync::Mutex};

use url::Url;

/// The gateway path that receives legacy POSTs for `server`.
pub fn message_path(server: &str) -> String {
    format!("/servers/{server}/message")
}

/// Live announced endpoints: (server, upstream path-and-query) -> number of streams holding it.
#[derive(Debug, Default)]
pub struct Endpoints {
    live: Mutex<HashMap<(String, String), usize>>,
}

/// Why an announced endpoint was not accepted.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("endpoint {0:?} is not a URL")]
    NotAUrl(String),
    #[error("endpoint {0} is not on the upstream's origin")]
    OtherOrigin(String),
}

impl Endpoints {
    /// Checks an announced endpoint against the upstream's stream URL, registers it, and returns
    /// (upstream path-and-query, the URL to announce to the agent).
    pub fn announce(
        &self,
        server: &str,
        stream_url: &Url,
        announced: &str,
    ) -> Result<(String, String), EndpointError> {
        let target = stream_url
            .join(announced.trim())
            .map_err(|_| EndpointError::NotAUrl(announced.to_owned()))?;
        if target.origin() != stream_url.origin() {
            return Err(EndpointError::OtherOrigin(target.to_string()));
        }
        let path_query = match target.query() {
            Some(q) => format!("{}?{q}", target.path()),
            None => target.path().to_owned(),
        };
        *self
            .lock()
            .entry((server.to_owned(), path_query.clone()))
            .or_default() += 1;
        let mut ours = Url::parse("http://gateway.invalid")
            .map_err(|_| EndpointError::NotAUrl(announced.to_owned()))?;
        ours.set_path(&message_path(server));
        ours.query_pairs_mut().append_pair("endpoint", &path_query);
        let relative = format!("{}?{}", ours.path(), ours.query().unwrap_or_default());
        Ok((path_query, relative))
    }

    /// Whether a stream currently holds this endpoint.
    pub fn is_live(&self, server: &str, path_query: &str) -> bool {
        self.lock()
            .contains_key(&(server.to_owned(), path_query.to_owned()))
    }

    /// Called when the stream that announced `path_query` ends.
    pub fn release(&self, server: &str, path_query: &str) {
        let key = (server.to_owned(), path_query.to_owned());
        let mut live = self.lock();
        if let Some(n) = live.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                live.remove(&key);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), usize>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_relative_and_absolute_endpoints_on_the_same_origin() {
        let e = Endpoints::default();
        let stream = Url::parse("http://127.0.0.1:9000/sse").unwrap();
        let (pq, ours) = e
            .announce("s", &stream, "/messages/?session_id=ab12")
            .unwrap();
        assert_eq!(pq, "/messages/?session_id=ab12");
        assert_eq!(
            ours,
            "/servers/s/message?endpoint=%2Fmessages%2F%3Fsession_id%3Dab12"
        );
        assert!(e.is_live("s", &pq));
        let (pq2, _) = e
            .announce("s", &stream, "http://127.0.0.1:9000/message?sessionId=x")
            .unwrap();
        assert_eq!(pq2, "/message?sessionId=x");
        e.release("s", &pq);
        assert!(!e.is_live("s", &pq));
    }

    #[test]
    fn refuses_endpoints_on_another_origin() {
        let e = Endpoints::default();
        let stream = Url::parse("http://127.0.0.1:9000/sse").unwrap();
        assert!(matches!(
            e.announce("s", &stream, "http://169.254.169.254/latest"),
            Err(EndpointError::OtherOrigin(_))
        ));
        assert!(matches!(
            e.announce("s", &stream, "//evil.example/x"),
            Err(EndpointError::OtherOrigin(_))
        ));
        assert!(!e.is_live("s", "/latest"));
    }
}
