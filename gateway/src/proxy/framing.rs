//! A second reading of HTTP/1.1 request framing, beside hyper's.
//!
//! hyper resolves some ambiguous framing itself before the service sees the request: with both
//! Content-Length and Transfer-Encoding it drops Content-Length (and closes afterwards), and of
//! two equal Content-Length headers it keeps one. Both are legal for a server, but a gateway must
//! refuse them: another hop could have framed the same bytes differently. This wrapper follows
//! the byte stream of a connection (heads, fixed-length and chunked bodies) and queues one
//! verdict per request head, in order, which the service checks before it reads the body.

use std::{
    collections::VecDeque,
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Longest request head followed; longer heads are hyper's to refuse.
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 128;

/// Per-request framing verdicts of one connection, oldest first.
#[derive(Clone, Debug, Default)]
pub struct Verdicts(Arc<Mutex<Inner>>);

#[derive(Debug, Default)]
struct Inner {
    heads: VecDeque<Option<&'static str>>,
    /// A malformed chunk line: every request from here on is refused, and the connection closed.
    body: Option<&'static str>,
}

impl Verdicts {
    /// The verdict for the next request head: `Some(problem)` when its framing was ambiguous.
    pub fn next(&self) -> Option<&'static str> {
        self.lock().heads.pop_front().flatten()
    }

    /// Set once a chunked body on this connection broke the chunk grammar. Check after the body
    /// was read: the tracker sees the bytes before hyper decodes them.
    pub fn body_problem(&self) -> Option<&'static str> {
        self.lock().body
    }

    fn push(&self, v: Option<&'static str>) {
        self.lock().heads.push_back(v);
    }

    fn poison(&self, problem: &'static str) {
        self.lock().body.get_or_insert(problem);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A chunk-size line, strictly: hex size, optional `;name[=token|"quoted"]` extensions, CRLF.
/// Lenient readings of anything else (bare LF, stray quotes) are how chunk smuggling works.
fn chunk_size(line: &[u8]) -> Result<u64, &'static str> {
    let line = line
        .strip_suffix(b"\r\n")
        .ok_or("chunk line not ended by CRLF")?;
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 15 {
        return Err("bad chunk size");
    }
    let size = std::str::from_utf8(&line[..digits])
        .ok()
        .and_then(|s| u64::from_str_radix(s, 16).ok())
        .ok_or("bad chunk size")?;
    let mut rest = &line[digits..];
    let token = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    let skip_ws = |r: &mut &[u8]| {
        while let [b' ' | b'\t', tail @ ..] = *r {
            *r = tail;
        }
    };
    loop {
        skip_ws(&mut rest);
        let [b';', tail @ ..] = rest else {
            return if rest.is_empty() {
                Ok(size)
            } else {
                Err("malformed chunk extension")
            };
        };
        rest = tail;
        skip_ws(&mut rest);
        let name = rest.iter().take_while(|b| token(b)).count();
        if name == 0 {
            return Err("malformed chunk extension");
        }
        rest = &rest[name..];
        skip_ws(&mut rest);
        if let [b'=', tail @ ..] = rest {
            rest = tail;
            skip_ws(&mut rest);
            if let [b'"', tail @ ..] = rest {
                let mut i = 0;
                loop {
                    match tail.get(i) {
                        None => return Err("unterminated quoted chunk extension"),
                        Some(b'"') => break,
                        Some(b'\\') => i += 2,
                        Some(b) if *b < 0x20 && *b != b'\t' => {
                            return Err("malformed chunk extension");
                        }
                        Some(_) => i += 1,
                    }
                }
                rest = &tail[i + 1..];
            } else {
                let value = rest.iter().take_while(|b| token(b)).count();
                if value == 0 {
                    return Err("malformed chunk extension");
                }
                rest = &rest[value..];
            }
        }
    }
}

#[derive(Debug)]
enum State {
    Head(Vec<u8>),
    Fixed(u64),
    ChunkSize(Vec<u8>),
    ChunkData(u64),
    ChunkEnd(u8),
    Trailers(Vec<u8>),
    /// Something hyper will refuse anyway, or the connection closes after this request.
    Stopped,
}

/// Follows request framing on a byte stream.
#[derive(Debug)]
pub struct Tracker {
    state: State,
    verdicts: Verdicts,
}

impl Tracker {
    pub fn new(verdicts: Verdicts) -> Self {
        Self {
            state: State::Head(Vec::new()),
            verdicts,
        }
    }

    /// Feeds bytes as they are read from the agent.
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match &mut self.state {
                State::Stopped => return,
                // The common case: a whole head arrives in one read, and nothing is buffered.
                // It is read in place; only a head split across reads is copied.
                State::Head(buf) if buf.is_empty() => {
                    let skip = data
                        .iter()
                        .take_while(|b| **b == b'\r' || **b == b'\n')
                        .count();
                    match find(&data[skip..], b"\r\n\r\n") {
                        Some(e) => {
                            let end = skip + e + 4;
                            self.state = self.head_done(&data[skip..end]);
                            data = &data[end..];
                        }
                        None => {
                            buf.extend_from_slice(data);
                            if buf.len() > MAX_HEAD {
                                self.state = State::Stopped;
                            }
                            return;
                        }
                    }
                }
                State::Head(buf) => {
                    let before = buf.len();
                    buf.extend_from_slice(data);
                    // Leading blank lines before a request are allowed (RFC 9112 §2.2).
                    let skip = buf
                        .iter()
                        .take_while(|b| **b == b'\r' || **b == b'\n')
                        .count();
                    let Some(end) = find(&buf[skip..], b"\r\n\r\n").map(|e| skip + e + 4) else {
                        if buf.len() > MAX_HEAD {
                            self.state = State::Stopped;
                        }
                        return;
                    };
                    let consumed = end - before;
                    let head = std::mem::take(buf);
                    self.state = self.head_done(&head[skip..end]);
                    data = &data[consumed..];
                }
                State::Fixed(n) => {
                    let take = (*n).min(data.len() as u64);
                    *n -= take;
                    data = &data[take as usize..];
                    if *n == 0 {
                        self.state = State::Head(Vec::new());
                    }
                }
                State::ChunkSize(line) => match data.iter().position(|b| *b == b'\n') {
                    None => {
                        line.extend_from_slice(data);
                        if line.len() > 1024 {
                            self.state = State::Stopped;
                        }
                        return;
                    }
                    Some(i) => {
                        line.extend_from_slice(&data[..=i]);
                        data = &data[i + 1..];
                        self.state = match chunk_size(line) {
                            Ok(0) => State::Trailers(Vec::new()),
                            Ok(n) => State::ChunkData(n),
                            Err(problem) => {
                                self.verdicts.poison(problem);
                                State::Stopped
                            }
                        };
                    }
                },
                State::ChunkData(n) => {
                    let take = (*n).min(data.len() as u64);
                    *n -= take;
                    data = &data[take as usize..];
                    if *n == 0 {
                        self.state = State::ChunkEnd(2);
                    }
                }
                State::ChunkEnd(left) => {
                    // Chunk data must be followed by exactly CRLF.
                    let expected: &[u8] = if *left == 2 { b"\r\n" } else { b"\n" };
                    let take = (*left as usize).min(data.len());
                    if data[..take] != expected[..take] {
                        self.verdicts.poison("chunk data not followed by CRLF");
                        self.state = State::Stopped;
                        return;
                    }
                    *left -= take as u8;
                    data = &data[take..];
                    if *left == 0 {
                        self.state = State::ChunkSize(Vec::new());
                    }
                }
                State::Trailers(line) => match data.iter().position(|b| *b == b'\n') {
                    None => {
                        line.extend_from_slice(data);
                        return;
                    }
                    Some(i) => {
                        let blank = line.is_empty() && (i == 0 || (i == 1 && data[0] == b'\r'))
                            || (line.as_slice() == b"\r" && i == 0);
                        line.extend_from_slice(&data[..=i]);
                        data = &data[i + 1..];
                        self.state = if blank {
                            State::Head(Vec::new())
                        } else {
                            State::Trailers(Vec::new())
                        };
                    }
                },
            }
        }
    }

    fn head_done(&self, head: &[u8]) -> State {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        if !matches!(req.parse(head), Ok(httparse::Status::Complete(_))) {
            self.verdicts.push(None);
            return State::Stopped;
        }
        let mut lengths = req
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
            .map(|h| h.value);
        let first_length = lengths.next();
        let length_count = usize::from(first_length.is_some()) + lengths.count();
        let chunked = req
            .headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("transfer-encoding"));
        let verdict = match (length_count, chunked) {
            (1.., true) => Some("both Content-Length and Transfer-Encoding"),
            (2.., false) => Some("more than one Content-Length"),
            _ => None,
        };
        self.verdicts.push(verdict);
        if verdict.is_some() {
            // The reply closes the connection: nothing after this head matters.
            return State::Stopped;
        }
        if chunked {
            return State::ChunkSize(Vec::new());
        }
        match first_length.map(|v| {
            std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
        }) {
            None | Some(Some(0)) => State::Head(Vec::new()),
            Some(Some(n)) => State::Fixed(n),
            Some(None) => State::Stopped,
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

pin_project! {
    /// An agent connection whose reads also feed a [`Tracker`].
    #[derive(Debug)]
    pub struct Tracked<T> {
        #[pin]
        inner: T,
        tracker: Tracker,
    }
}

impl<T> Tracked<T> {
    pub fn new(inner: T, verdicts: Verdicts) -> Self {
        Self {
            inner,
            tracker: Tracker::new(verdicts),
        }
    }
}

impl<T: AsyncRead> AsyncRead for Tracked<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let result = this.inner.poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &result {
            this.tracker.feed(&buf.filled()[before..]);
        }
        result
    }
}

impl<T: AsyncWrite> AsyncWrite for Tracked<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdicts_for(stream: &[u8], split: usize) -> Vec<Option<&'static str>> {
        let v = Verdicts::default();
        let mut t = Tracker::new(v.clone());
        for chunk in stream.chunks(split) {
            t.feed(chunk);
        }
        let mut out = Vec::new();
        while let Some(x) = v.lock().heads.pop_front() {
            out.push(x);
        }
        out
    }

    #[test]
    fn chunk_lines_are_held_to_the_grammar() {
        assert_eq!(chunk_size(b"1a\r\n"), Ok(26));
        assert_eq!(chunk_size(b"1a ; name = \"v\\\"x\" ;b=c\r\n"), Ok(26));
        for bad in [
            &b"1a\n"[..],
            b"zz\r\n",
            b"\r\n",
            b"1a;\r\n",
            b"1a;e\"\r\n",
            b"1a;e=\"x\r\n",
            b"1a x\r\n",
            b"1a;e=\r\n",
            b"1234567890abcdef0\r\n",
        ] {
            assert!(
                chunk_size(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let v = Verdicts::default();
        let mut t = Tracker::new(v.clone());
        t.feed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n");
        assert_eq!(v.body_problem(), Some("chunk data not followed by CRLF"));
    }

    #[test]
    fn follows_keep_alive_requests_at_every_split() {
        let stream = b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello\
POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n0\r\nT: 1\r\n\r\n\
GET /c HTTP/1.1\r\n\r\n\
POST /d HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi";
        for split in 1..stream.len() {
            assert_eq!(
                verdicts_for(stream, split),
                vec![None, None, None, Some("more than one Content-Length")],
                "split {split}"
            );
        }
    }

    #[test]
    fn content_length_with_transfer_encoding_in_either_order() {
        let a = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let b = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n";
        assert_eq!(
            verdicts_for(a, 7),
            vec![Some("both Content-Length and Transfer-Encoding")]
        );
        assert_eq!(
            verdicts_for(b, 7),
            vec![Some("both Content-Length and Transfer-Encoding")]
        );
    }
}
