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

use super::relay::Asked;

/// How many gateway answers may wait for an agent that does not read its stream; beyond that
/// they are dropped (the agent's requests then time out, as they would upstream).
pub const PENDING_ANSWERS: usize = 16;

/// The largest answer put on a stream (an error naming a request id, a rule and a reason);
/// with [`PENDING_ANSWERS`], what a stream whose agent stops reading can hold.
const MAX_ANSWER_BYTES: usize = 16 * 1024;

/// The agent-facing side of a stream that holds an endpoint: whose it is, and where to put the
/// gateway's answers.
#[derive(Debug)]
struct Holder {
    stream: u64,
    owner: String,
    handle: StreamHandle,
}

/// An agent stream of this transport as the endpoints it announced know it: where the
/// gateway's answers go, and the requests posted to them that went upstream and await their
/// answer on it (a draining gateway keeps the stream open for those: it is the only way they
/// reach the agent).
#[derive(Clone, Debug)]
pub struct StreamHandle {
    pub answers: mpsc::Sender<Bytes>,
    pub awaited: std::sync::Arc<Awaited>,
}

impl From<mpsc::Sender<Bytes>> for StreamHandle {
    fn from(answers: mpsc::Sender<Bytes>) -> Self {
        Self {
            answers,
            awaited: Default::default(),
        }
    }
}

/// The requests sent upstream whose answers a stream has yet to carry (what each asked, so
/// that its answer is recorded as the answer to it), and a wake-up for a stream waiting on them
/// when one is settled from elsewhere (a POST that failed, a request cancelled). One per id: a
/// POST reusing an id still owed an answer is refused, as MCP forbids it (which answer is whose
/// could not be told).
#[derive(Debug, Default)]
pub struct Awaited {
    asked: Mutex<HashMap<crate::mcp::Id, Asked>>,
    settled: tokio::sync::Notify,
}

impl Awaited {
    /// Notes `asked` (their ids distinct: a batch repeating one is refused before), or none of
    /// them when one's id is still owed an answer here: that id is the error.
    pub fn add(&self, asked: &[Asked]) -> Result<(), crate::mcp::Id> {
        let mut owed = self.lock();
        if let Some(a) = asked.iter().find(|a| owed.contains_key(&a.id)) {
            return Err(a.id.clone());
        }
        for a in asked {
            owed.insert(a.id.clone(), a.clone());
        }
        Ok(())
    }

    /// The request under `id` owed its answer, now answered (none: not one of the requests
    /// this stream carries answers to). Wakes the stream.
    pub fn answered(&self, id: &crate::mcp::Id) -> Option<Asked> {
        let asked = self.lock().remove(id);
        self.settled.notify_one();
        asked
    }

    /// Settles `ids` (answered, or known never to be); wakes the stream.
    pub fn settle<'a>(&self, ids: impl IntoIterator<Item = &'a crate::mcp::Id>) {
        let mut owed = self.lock();
        for id in ids {
            owed.remove(id);
        }
        drop(owed);
        // A permit is kept when nobody waits yet, so a wake-up cannot be missed.
        self.settled.notify_one();
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Completes at the next [`Awaited::settle`] (or at once if one came since the last wait).
    pub async fn settled(&self) {
        self.settled.notified().await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<crate::mcp::Id, Asked>> {
        self.asked.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The requests that `notifications/cancelled` messages of a POST cancel (`texts` holds each
/// message's own text, as the audit trail cuts them). A server need not answer a cancelled
/// request (the TypeScript SDK's do not), so a stream stops waiting for it once the
/// cancellation has gone upstream.
pub fn cancelled_ids(
    messages: &[crate::mcp::Message],
    texts: &[Option<Bytes>],
) -> Vec<crate::mcp::Id> {
    messages
        .iter()
        .zip(texts)
        .filter(|(m, _)| {
            m.kind == crate::mcp::Kind::Notification && m.method() == "notifications/cancelled"
        })
        .filter_map(|(_, text)| {
            let text = std::str::from_utf8(text.as_deref()?).ok()?;
            match crate::mcp::message::pointer_in(text, "/params/requestId")? {
                serde_json::Value::String(s) => Some(crate::mcp::Id::Str(s.into())),
                serde_json::Value::Number(n) => n.as_i64().map(crate::mcp::Id::Int),
                _ => None,
            }
        })
        .collect()
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
    #[error("the endpoint holds a configured secret")]
    HoldsSecret,
    #[error("the endpoint names the URL of server {0:?}")]
    OtherServer(String),
}

/// Checks what [`Endpoints::announce`] cannot know alone: the agent posts to what is
/// announced, so an endpoint holding a credential the gateway injected (as written or
/// percent-encoded) would hand it to the agent, and one naming another configured server's URL
/// (see [`names_other_server`]) would carry this server's credentials there.
pub fn vet<'a>(
    stream_url: &Url,
    announced: &str,
    secrets: &crate::credentials::Scrubber,
    others: impl Iterator<Item = (&'a str, &'a Url)>,
) -> Result<(), EndpointError> {
    if secrets.found_in(announced.as_bytes())
        || url::form_urlencoded::parse(announced.as_bytes())
            .any(|(k, v)| secrets.found_in(k.as_bytes()) || secrets.found_in(v.as_bytes()))
    {
        return Err(EndpointError::HoldsSecret);
    }
    match names_other_server(stream_url, announced, others) {
        Some(other) => Err(EndpointError::OtherServer(other.to_owned())),
        None => Ok(()),
    }
}

/// The other server, of `others` (name, URL), whose URL an endpoint announced on `stream_url`
/// names: its path, or a path under it (a server at the origin's root only by its exact path),
/// compared percent-decoded and without regard to case, as servers route (Starlette and Express
/// decode, ASP.NET ignores case). Agents' POSTs to such an endpoint would be judged by this
/// server's rules and carry this server's credentials, yet land on the other. A server whose
/// path holds this one's shares its tree: only its own path is refused; one at this very URL
/// is not told apart.
pub fn names_other_server<'a>(
    stream_url: &Url,
    announced: &str,
    others: impl Iterator<Item = (&'a str, &'a Url)>,
) -> Option<&'a str> {
    // Decoded, then dot segments and repeated slashes resolved (as a front proxy normalises
    // after decoding), in lower case; the root is "".
    let routed = |path: &str| {
        let decoded = percent_encoding::percent_decode_str(path)
            .decode_utf8_lossy()
            .to_lowercase();
        match crate::policy::params::normalise_path(&decoded) {
            Some(root) if root == "/" => String::new(),
            Some(normal) => normal,
            None => decoded,
        }
    };
    let under = |path: &str, base: &str| {
        path == base
            || (!base.is_empty()
                && path
                    .strip_prefix(base)
                    .is_some_and(|rest| rest.starts_with('/')))
    };
    let target = stream_url.join(announced.trim()).ok()?;
    let path = routed(target.path());
    let own = routed(stream_url.path());
    others
        .filter(|(_, url)| url.origin() == target.origin())
        .find(|(_, url)| {
            let theirs = routed(url.path());
            if theirs == own {
                // The same URL under two names: not told apart.
                return false;
            }
            // A server whose path holds this stream's shares its tree: only its own path is
            // out of bounds.
            path == theirs || (!theirs.is_empty() && !under(&own, &theirs) && under(&path, &theirs))
        })
        .map(|(name, _)| name)
}

impl Endpoints {
    /// Checks an announced endpoint against the upstream's stream URL, registers it for the
    /// agent stream `stream` of principal `owner` (whose gateway answers go to `answers`), and
    /// returns (upstream path-and-query, the URL to announce to the agent).
    pub fn announce(
        &self,
        server: &str,
        stream_url: &Url,
        announced: &str,
        (stream, owner): (u64, &str),
        handle: impl Into<StreamHandle>,
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
        let mut live = self.lock();
        let holders = live
            .entry((server.to_owned(), path_query.clone()))
            .or_default();
        if !holders.iter().any(|h| h.stream == stream) {
            holders.push(Holder {
                stream,
                owner: owner.to_owned(),
                handle: handle.into(),
            });
        }
        drop(live);
        let mut ours = Url::parse("http://gateway.invalid")
            .map_err(|_| EndpointError::NotAUrl(announced.to_owned()))?;
        ours.set_path(&message_path(server));
        ours.query_pairs_mut().append_pair("endpoint", &path_query);
        let relative = format!("{}?{}", ours.path(), ours.query().unwrap_or_default());
        Ok((path_query, relative))
    }

    /// Whether a stream of principal `poster` currently holds this endpoint: an endpoint
    /// announced to one caller is no other caller's way into that session.
    pub fn is_held_by(&self, server: &str, path_query: &str, poster: &str) -> bool {
        self.lock()
            .get(&(server.to_owned(), path_query.to_owned()))
            .is_some_and(|holders| holders.iter().any(|h| h.owner == poster))
    }

    /// Puts a JSON-RPC message (the gateway's answer to a request that principal `poster`
    /// POSTed to `path_query`) on the agent stream holding that endpoint. Only a stream of the
    /// same principal takes it, and only when it is the one such stream: an endpoint shared by
    /// several streams (an upstream whose endpoint names no session) cannot say whose request
    /// it was. False when no stream took it.
    pub fn answer(&self, server: &str, path_query: &str, poster: &str, message: Bytes) -> bool {
        if message.len() > MAX_ANSWER_BYTES {
            return false;
        }
        let live = self.lock();
        let Some(holders) = live.get(&(server.to_owned(), path_query.to_owned())) else {
            return false;
        };
        match holders.as_slice() {
            [only] if only.owner == poster => only.handle.answers.try_send(message).is_ok(),
            _ => false,
        }
    }

    /// Notes requests `asked` (perhaps none) that principal `poster` posted to `path_query` are
    /// on their way upstream, against the one stream of that principal holding it (as
    /// [`Endpoints::answer`] picks it; an endpoint several streams share cannot say which will
    /// carry the answers). Returns where to settle them should they fail; the error is an id
    /// still owed an answer on that stream (nothing is noted then).
    pub fn forwarded(
        &self,
        server: &str,
        path_query: &str,
        poster: &str,
        asked: &[Asked],
    ) -> Result<Option<std::sync::Arc<Awaited>>, crate::mcp::Id> {
        let live = self.lock();
        match live
            .get(&(server.to_owned(), path_query.to_owned()))
            .map(Vec::as_slice)
        {
            Some([only]) if only.owner == poster => {
                only.handle.awaited.add(asked)?;
                Ok(Some(only.handle.awaited.clone()))
            }
            _ => Ok(None),
        }
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
    fn an_id_owed_an_answer_is_not_taken_again() {
        use crate::mcp::Id;
        let asked = |id: Id, method: &str| Asked {
            id,
            method: method.into(),
            target: None,
            seq: None,
            at: std::time::Instant::now(),
        };
        let owed = Awaited::default();
        assert!(owed.add(&[asked(Id::Int(1), "tools/call")]).is_ok());
        // Reused while owed (a list answered first would be taken for the call's answer):
        // refused, and nothing of that POST noted.
        assert_eq!(
            owed.add(&[asked(Id::Int(2), "ping"), asked(Id::Int(1), "tools/list")]),
            Err(Id::Int(1))
        );
        assert!(owed.answered(&Id::Int(2)).is_none());
        assert!(
            owed.add(&[asked(Id::Str("1".into()), "tools/list")])
                .is_ok()
        );
        let call = owed.answered(&Id::Int(1)).expect("the call");
        assert_eq!(&*call.method, "tools/call");
        assert!(owed.answered(&Id::Int(1)).is_none());
        // Answered, the id may be used again.
        assert!(owed.add(&[asked(Id::Int(1), "tools/list")]).is_ok());
        owed.settle(&[Id::Int(1), Id::Str("1".into()), Id::Int(9)]);
        assert!(owed.is_empty());
    }

    #[test]
    fn cancellations_name_the_requests_they_cancel() {
        use crate::mcp::Id;
        let body = Bytes::from_static(
            br#"[{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7}},
                {"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"r","reason":"x"}},
                {"jsonrpc":"2.0","method":"notifications/progress","params":{"requestId":8}},
                {"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":[9]}},
                {"jsonrpc":"2.0","id":3,"method":"ping"}]"#,
        );
        let Ok(crate::mcp::Body::Batch(messages)) =
            crate::mcp::message::parse_body(&body, true, "2025-03-26")
        else {
            panic!("a batch");
        };
        let texts = super::super::audit_trail::message_texts(&body, true);
        assert_eq!(
            cancelled_ids(&messages, &texts),
            [Id::Int(7), Id::Str("r".into())]
        );
    }

    #[test]
    fn rewrites_relative_and_absolute_endpoints_on_the_same_origin() {
        let e = Endpoints::default();
        let stream = Url::parse("http://127.0.0.1:9000/sse").unwrap();
        let (pq, ours) = e
            .announce(
                "s",
                &stream,
                "/messages/?session_id=ab12",
                (1, "a"),
                channel().0,
            )
            .unwrap();
        assert_eq!(pq, "/messages/?session_id=ab12");
        assert_eq!(
            ours,
            "/servers/s/message?endpoint=%2Fmessages%2F%3Fsession_id%3Dab12"
        );
        assert!(e.is_held_by("s", &pq, "a"));
        assert!(!e.is_held_by("s", &pq, "b"), "announced to a, not b");
        let (pq2, _) = e
            .announce(
                "s",
                &stream,
                "http://127.0.0.1:9000/message?sessionId=x",
                (2, "a"),
                channel().0,
            )
            .unwrap();
        assert_eq!(pq2, "/message?sessionId=x");
        e.release("s", &pq, 1);
        assert!(!e.is_held_by("s", &pq, "a"));
        assert!(e.is_held_by("s", &pq2, "a"));
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
                (1, "a"),
                channel().0
            ),
            Err(EndpointError::OtherOrigin(_))
        ));
        assert!(matches!(
            e.announce("s", &stream, "//evil.example/x", (1, "a"), channel().0),
            Err(EndpointError::OtherOrigin(_))
        ));
        assert!(!e.is_held_by("s", "/latest", "a"));
    }

    #[test]
    fn endpoints_naming_another_servers_url_are_found() {
        let stream = Url::parse("http://hub:8080/docs/sse").unwrap();
        let admin = Url::parse("http://hub:8080/admin/mcp").unwrap();
        let root = Url::parse("http://hub:8080/").unwrap();
        let elsewhere = Url::parse("http://other:8080/messages").unwrap();
        let others = [
            ("admin", &admin),
            ("root", &root),
            ("elsewhere", &elsewhere),
        ];
        let named = |announced| names_other_server(&stream, announced, others.iter().copied());
        assert_eq!(named("/admin/mcp"), Some("admin"));
        assert_eq!(named("/admin/mcp/"), Some("admin"));
        assert_eq!(named("/admin/mcp/x?session=1"), Some("admin"));
        assert_eq!(named("http://hub:8080/admin/./mcp"), Some("admin"));
        assert_eq!(named("/"), Some("root"));
        // As servers route it: percent-decoded, in any case.
        assert_eq!(named("/%61dmin/mcp"), Some("admin"));
        assert_eq!(named("/ADMIN/Mcp/x"), Some("admin"));
        // A server whose path holds this stream's shares its tree: not told apart.
        let docs = Url::parse("http://hub:8080/docs").unwrap();
        let same = Url::parse("http://hub:8080/docs/sse").unwrap();
        let sharing = [("docs", &docs), ("twin", &same)];
        assert_eq!(
            names_other_server(&stream, "/docs/sse/message?s=1", sharing.iter().copied()),
            None
        );
        // ... but for the enclosing server's own path.
        assert_eq!(
            names_other_server(&stream, "/docs", sharing.iter().copied()),
            Some("docs")
        );
        // Dot segments and repeated slashes as a front proxy resolves them after decoding.
        assert_eq!(named("/docs/..%2Fadmin/mcp"), Some("admin"));
        assert_eq!(named("/admin//mcp"), Some("admin"));
        // Paths of this server's own, or beside the others', or another origin's, are fine.
        assert_eq!(named("/docs/messages?session_id=1"), None);
        assert_eq!(named("/admin/mcpx"), None);
        assert_eq!(named("/messages"), None);
    }

    #[test]
    fn answers_reach_only_the_one_stream_of_the_poster() {
        let e = Endpoints::default();
        let stream = Url::parse("http://127.0.0.1:9000/sse").unwrap();
        let (tx_a, mut rx_a) = channel();
        let (tx_b, mut rx_b) = channel();
        let (pq, _) = e
            .announce("s", &stream, "/m?session_id=a", (1, "alice"), tx_a.clone())
            .unwrap();
        let (other, _) = e
            .announce("s", &stream, "/m?session_id=b", (2, "bob"), tx_b)
            .unwrap();
        let answer = Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32001,"message":"no"}}"#,
        );
        assert!(e.answer("s", &pq, "alice", answer.clone()));
        assert_eq!(rx_a.try_recv().ok(), Some(answer.clone()));
        assert!(
            rx_b.try_recv().is_err(),
            "another session's stream got the answer"
        );
        assert!(
            !e.answer("t", &pq, "alice", answer.clone()),
            "another server's endpoint"
        );
        assert!(
            !e.answer("s", &pq, "bob", answer.clone()),
            "bob posted to alice's endpoint"
        );
        assert!(rx_a.try_recv().is_err());
        // The same stream announcing again holds the endpoint once.
        e.announce("s", &stream, "/m?session_id=a", (1, "alice"), tx_a)
            .unwrap();
        assert!(e.answer("s", &pq, "alice", answer.clone()));
        assert_eq!(rx_a.try_recv().ok(), Some(answer.clone()));
        assert!(rx_a.try_recv().is_err(), "answered twice");
        // A stream whose agent does not read holds a bounded number of bounded answers.
        assert!(e.answer("s", &other, "bob", answer.clone()));
        assert!(e.answer("s", &other, "bob", answer.clone()));
        assert!(!e.answer("s", &other, "bob", answer.clone()));
        let huge = Bytes::from(vec![b' '; MAX_ANSWER_BYTES + 1]);
        rx_b.try_recv().unwrap();
        assert!(!e.answer("s", &other, "bob", huge));
        e.release("s", &pq, 1);
        assert!(!e.answer("s", &pq, "alice", answer));
    }

    #[test]
    fn an_endpoint_shared_by_streams_takes_no_answers() {
        let e = Endpoints::default();
        let stream = Url::parse("http://127.0.0.1:9000/sse").unwrap();
        let (tx_a, mut rx_a) = channel();
        let (tx_b, mut rx_b) = channel();
        let (pq, _) = e
            .announce("s", &stream, "/messages", (1, "alice"), tx_a)
            .unwrap();
        e.announce("s", &stream, "/messages", (2, "alice"), tx_b)
            .unwrap();
        assert!(!e.answer("s", &pq, "alice", Bytes::from_static(b"{}")));
        assert!(rx_a.try_recv().is_err() && rx_b.try_recv().is_err());
        e.release("s", &pq, 2);
        assert!(e.answer("s", &pq, "alice", Bytes::from_static(b"{}")));
    }
}
