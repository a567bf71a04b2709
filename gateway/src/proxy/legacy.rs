//! The 2024-11-05 HTTP+SSE transport: the upstream's `endpoint` event announces where to POST.
//! The gateway rewrites that URL to one of its own, and only forwards POSTs to endpoints that a
//! live stream announced, so an agent cannot use the route to reach arbitrary upstream paths.
//!
//! Answers travel on the stream, never on the POST (clients ignore POST bodies), so the gateway's
//! own answers (refusals of POSTed requests) are put on the stream that announced the endpoint.

use std::{collections::HashMap, sync::Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;
use url::Url;

/// How many gateway answers may wait for an agent that does not read its stream; beyond that
/// they are dropped (the agent's requests then time out, as they would upstream).
pub const PENDING_ANSWERS: usize = 64;

/// The agent-facing side of a stream that holds an endpoint: where to put the gateway's answers.
#[derive(Debug)]
struct Holder {
    stream: u64,
    answers: mpsc::Sender<Bytes>,
}

/// The gateway path that receives legacy POSTs for `server`.
pub fn message_path(server: &str) -> String {
    format!("/servers/{server}/message")
}

/// Live announced endpoints: (server, upstream path-and-query) -> the streams holding it.
#[derive(Debug, Default)]
pub struct Endpoints {
    live: Mutex<HashMap<(String, String), Vec<Holder>>>,
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
    /// Checks an announced endpoint against the upstream's stream URL, registers it for the
    /// agent stream `stream` (whose gateway answers go to `answers`), and returns
    /// (upstream path-and-query, the URL to announce to the agent).
    pub fn announce(
        &self,
        server: &str,
        stream_url: &Url,
        announced: &str,
        stream: u64,
        answers: mpsc::Sender<Bytes>,
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
        self.lock()
            .entry((server.to_owned(), path_query.clone()))
            .or_default()
            .push(Holder { stream, answers });
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

    /// Puts a JSON-RPC message (the gateway's answer to a request POSTed to `path_query`) on
    /// the agent streams holding that endpoint. False when none took it.
    pub fn answer(&self, server: &str, path_query: &str, message: &Bytes) -> bool {
        let live = self.lock();
        let Some(holders) = live.get(&(server.to_owned(), path_query.to_owned())) else {
            return false;
        };
        let mut taken = false;
        for h in holders {
            taken |= h.answers.try_send(message.clone()).is_ok();
        }
        taken
    }

    /// Called when the agent stream `stream`, which announced `path_query`, ends.
    pub fn release(&self, server: &str, path_query: &str, stream: u64) {
        let key = (server.to_owned(), path_query.to_owned());
        let mut live = self.lock();
        if let Some(holders) = live.get_mut(&key) {
            holders.retain(|h| h.stream != stream);
            if holders.is_empty() {
                live.remove(&key);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Vec<Holder>>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn channel() -> (mpsc::Sender<Bytes>, mpsc::Receiver<Bytes>) {
        mpsc::channel(2)
    }

    #[test]
    fn rewrites_relative_and_absolute_endpoints_on_the_same_origin() {
        let e = Endpoints::default();
        let stream = Url::parse("http://127.0.0.1:9000/sse").unwrap();
        let (pq, ours) = e
            .announce("s", &stream, "/messages/?session_id=ab12", 1, channel().0)
            .unwrap();
        assert_eq!(pq, "/messages/?session_id=ab12");
        assert_eq!(
            ours,
            "/servers/s/message?endpoint=%2Fmessages%2F%3Fsession_id%3Dab12"
        );
        assert!(e.is_live("s", &pq));
        let (pq2, _) = e
            .announce(
                "s",
                &stream,
                "http://127.0.0.1:9000/message?sessionId=x",
                2,
                channel().0,
            )
            .unwrap();
        assert_eq!(pq2, "/message?sessionId=x");
        e.release("s", &pq, 1);
        assert!(!e.is_live("s", &pq));
        assert!(e.is_live("s", &pq2));
    }

    #[test]
    fn refuses_endpoints_on_another_origin() {
        let e = Endpoints::default();
        let stream = Url::parse("http://127.0.0.1:9000/sse").unwrap();
        assert!(matches!(
            e.announce(
                "s",
                &stream,
                "http://169.254.169.254/latest",
                1,
                channel().0
            ),
            Err(EndpointError::OtherOrigin(_))
        ));
        assert!(matches!(
            e.announce("s", &stream, "//evil.example/x", 1, channel().0),
            Err(EndpointError::OtherOrigin(_))
        ));
        assert!(!e.is_live("s", "/latest"));
    }

    #[test]
    fn answers_reach_the_streams_holding_the_endpoint_until_they_end() {
        let e = Endpoints::default();
        let stream = Url::parse("http://127.0.0.1:9000/sse").unwrap();
        let (tx_a, mut rx_a) = channel();
        let (tx_b, mut rx_b) = channel();
        let (pq, _) = e
            .announce("s", &stream, "/m?session_id=a", 1, tx_a)
            .unwrap();
        let (other, _) = e
            .announce("s", &stream, "/m?session_id=b", 2, tx_b)
            .unwrap();
        let answer = Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32001,"message":"no"}}"#,
        );
        assert!(e.answer("s", &pq, &answer));
        assert_eq!(rx_a.try_recv().ok(), Some(answer.clone()));
        assert!(
            rx_b.try_recv().is_err(),
            "another session's stream got the answer"
        );
        assert!(!e.answer("t", &pq, &answer), "another server's endpoint");
        // A stream whose agent does not read holds a bounded number of answers.
        assert!(e.answer("s", &other, &answer));
        assert!(e.answer("s", &other, &answer));
        assert!(!e.answer("s", &other, &answer));
        e.release("s", &pq, 1);
        assert!(!e.answer("s", &pq, &answer));
    }
}
