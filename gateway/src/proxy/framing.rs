//! A second reading of HTTP/1.1 request framing, beside hyper's.
//!
//! hyper resolves some ambiguous framing itself before the service sees the request: with both
//! Content-Length and Transfer-Encoding it drops Content-Length (and closes afterwards), and of
//! two equal Content-Length headers it keeps one. Both are legal for a server, but a gateway must
//! refuse them: another hop could have framed the same bytes differently. This wrapper follows
//! the byte stream of a connection (heads, fixed-length and chunked bodies) and queues one
//! verdict per request head, in order, which the service checks before it reads the body. Heads
//! are delimited by the parser hyper uses, so both see the same requests; once the framing is
//! lost (an over-long line, a broken chunked body), a head without a verdict is refused.

use std::{
    collections::VecDeque,
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Longest request head accepted.
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 128;
/// Longest chunk-size line (with its extensions) and trailer line accepted.
const MAX_CHUNK_LINE: usize = 1024;
const MAX_TRAILER_LINE: usize = 8 * 1024;
/// The verdict for a request head the tracker could not follow up to.
const UNFOLLOWED: &str = "request framing the gateway could not follow";

/// Per-request framing verdicts of one connection, oldest first.
#[derive(Clone, Debug, Default)]
pub struct Verdicts(Arc<Mutex<Inner>>);

#[derive(Debug, Default)]
struct Inner {
    heads: VecDeque<Option<&'static str>>,
    /// Heads queued so far, and heads the service has taken: the request being served is the
    /// `taken`th.
    pushed: u64,
    taken: u64,
    /// A malformed chunked body, and the number of the request whose body it is: that request
    /// and every one after it are refused, and the connection closed. (A request before it,
    /// whose bytes came in the same read, is served.)
    body: Option<(u64, &'static str)>,
}

impl Verdicts {
    /// The verdict for the next request head: `Some(problem)` when its framing was ambiguous,
    /// or when the tracker lost the framing before this head (it then has no verdict for it,
    /// and a head nobody checked is refused).
    pub fn next(&self) -> Option<&'static str> {
        let mut inner = self.lock();
        inner.taken += 1;
        match inner.heads.pop_front() {
            Some(verdict) => verdict,
            None => Some(inner.body.map_or(UNFOLLOWED, |(_, problem)| problem)),
        }
    }

    /// Set once a chunked body on this connection broke the chunk grammar, for the request
    /// being served (the one [`Verdicts::next`] gave last) and those after. Check after the
    /// body was read: the tracker sees the bytes before hyper decodes them.
    pub fn body_problem(&self) -> Option<&'static str> {
        let inner = self.lock();
        inner
            .body
            .filter(|(request, _)| *request <= inner.taken)
            .map(|(_, problem)| problem)
    }

    fn push(&self, v: Option<&'static str>) {
        let mut inner = self.lock();
        inner.heads.push_back(v);
        inner.pushed += 1;
    }

    /// The body of the head queued last broke the chunk grammar.
    fn poison(&self, problem: &'static str) {
        let mut inner = self.lock();
        let request = inner.pushed;
        inner.body.get_or_insert((request, problem));
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
    /// Followed no further: hyper refuses what came, or the connection closes after this
    /// request, or the framing broke. Any later head then has no verdict, and is refused.
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
                State::Head(buf) if buf.is_empty() => match self.head(data) {
                    None => {
                        if let State::Head(buf) = &mut self.state {
                            buf.extend_from_slice(data);
                        }
                        return;
                    }
                    Some((end, next)) => {
                        self.state = next;
                        data = &data[end.min(data.len())..];
                    }
                },
                State::Head(buf) => {
                    let before = buf.len();
                    buf.extend_from_slice(data);
                    // Parsed again only once the new bytes may have ended the head (an empty
                    // line, bare LF included) or it has grown too long: a head sent a byte at a
                    // time would otherwise be parsed whole once per byte.
                    // Empty lines before the request line are skipped, not an end.
                    let start = buf.iter().position(|b| !matches!(b, b'\r' | b'\n'));
                    let tail = &buf[start.map_or(buf.len(), |s| s.max(before.saturating_sub(2)))..];
                    if buf.len() <= MAX_HEAD
                        && memchr::memmem::find(tail, b"\n\n").is_none()
                        && memchr::memmem::find(tail, b"\n\r\n").is_none()
                    {
                        return;
                    }
                    let head = std::mem::take(buf);
                    match self.head(&head) {
                        None => self.state = State::Head(head),
                        Some((end, next)) => {
                            self.state = next;
                            data = &data[end.saturating_sub(before).min(data.len())..];
                            continue;
                        }
                    }
                    return;
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
                        if line.len() > MAX_CHUNK_LINE {
                            self.verdicts.poison("chunk-size line too long");
                            self.state = State::Stopped;
                        }
                        return;
                    }
                    Some(i) => {
                        line.extend_from_slice(&data[..=i]);
                        data = &data[i + 1..];
                        if line.len() > MAX_CHUNK_LINE {
                            self.verdicts.poison("chunk-size line too long");
                            self.state = State::Stopped;
                            return;
                        }
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
                        if line.len() > MAX_TRAILER_LINE {
                            self.verdicts.poison("trailer line too long");
                            self.state = State::Stopped;
                        }
                        return;
                    }
                    Some(i) => {
                        line.extend_from_slice(&data[..=i]);
                        data = &data[i + 1..];
                        // hyper ends the trailer section only at CRLF CRLF and reads a bare LF as
                        // part of a trailer: the two would disagree on where the body ends.
                        if line.len() > MAX_TRAILER_LINE {
                            self.verdicts.poison("trailer line too long");
                            self.state = State::Stopped;
                            return;
                        }
                        if !line.ends_with(b"\r\n") {
                            self.verdicts.poison("trailer line not ended by CRLF");
                            self.state = State::Stopped;
                            return;
                        }
                        self.state = if line.len() == 2 {
                            State::Head(Vec::new())
                        } else {
                            State::Trailers(Vec::new())
                        };
                    }
                },
            }
        }
    }

    /// Reads the request head at the start of `bytes` as hyper does (with httparse, so that a
    /// bare LF ends lines for both), and queues its verdict. `None` while the head is
    /// incomplete; otherwise where it ends and what follows it.
    fn head(&self, bytes: &[u8]) -> Option<(usize, State)> {
        #[cfg(test)]
        tests::PARSES.with(|n| n.set(n.get() + 1));
        // Left uninitialised, as hyper leaves its own: filling 128 empty headers on every
        // request cost more than the parse of a short head.
        let mut headers =
            [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let end = match req.parse_with_uninit_headers(bytes, &mut headers) {
            Ok(httparse::Status::Complete(end)) if end <= MAX_HEAD => end,
            Ok(httparse::Status::Partial) if bytes.len() <= MAX_HEAD => return None,
            Ok(_) => {
                self.verdicts.push(Some("request head too long"));
                return Some((bytes.len(), State::Stopped));
            }
            // hyper refuses it too, and closes the connection.
            Err(_) => {
                self.verdicts.push(Some("malformed request head"));
                return Some((bytes.len(), State::Stopped));
            }
        };
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
            return Some((end, State::Stopped));
        }
        if chunked {
            return Some((end, State::ChunkSize(Vec::new())));
        }
        let next = match first_length.map(|v| {
            std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
        }) {
            None | Some(Some(0)) => State::Head(Vec::new()),
            Some(Some(n)) => State::Fixed(n),
            // hyper refuses the request and closes; should it not, the next head has no
            // verdict and is refused.
            Some(None) => State::Stopped,
        };
        Some((end, next))
    }
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
        assert_eq!(v.next(), None);
        assert_eq!(v.body_problem(), Some("chunk data not followed by CRLF"));
    }

    /// A broken chunked body refuses its own request and those after it, not a whole request
    /// before it whose bytes came in the same read.
    #[test]
    fn a_broken_body_refuses_its_request_not_the_one_before() {
        let v = Verdicts::default();
        let mut t = Tracker::new(v.clone());
        t.feed(
            b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello\
POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n\
POST /c HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi",
        );
        assert_eq!(v.next(), None);
        assert_eq!(v.body_problem(), None, "the first request is whole");
        assert_eq!(v.next(), None);
        assert_eq!(v.body_problem(), Some("chunk data not followed by CRLF"));
        // Beyond the break nothing is followed: refused.
        assert_eq!(v.next(), Some("chunk data not followed by CRLF"));
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

    thread_local! {
        /// How often the tracker ran the head parser.
        pub(super) static PARSES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    #[test]
    fn a_head_sent_a_byte_at_a_time_is_parsed_once_it_ends() {
        let mut head = b"POST /m HTTP/1.1\r\nHost: x\r\n".to_vec();
        while head.len() < 60 * 1024 {
            head.extend_from_slice(format!("X-Padding: {}\r\n", "a".repeat(1000)).as_bytes());
        }
        head.extend_from_slice(b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}");
        let v = Verdicts::default();
        let mut t = Tracker::new(v.clone());
        PARSES.with(|n| n.set(0));
        for byte in head.chunks(1) {
            t.feed(byte);
        }
        assert_eq!(v.next(), Some("more than one Content-Length"));
        // The first byte is read in place; then the one byte that ends the head.
        assert_eq!(PARSES.with(std::cell::Cell::get), 2);
        // One too many bytes without an end: refused as too long, once.
        let v = Verdicts::default();
        let mut t = Tracker::new(v.clone());
        PARSES.with(|n| n.set(0));
        for byte in head[..head.len() - 4].iter().chain(&[b'a'; MAX_HEAD]) {
            t.feed(std::slice::from_ref(byte));
        }
        assert_eq!(v.next(), Some("request head too long"));
        assert_eq!(PARSES.with(std::cell::Cell::get), 2);
        // Empty lines before the request line (skipped, as hyper skips them) end nothing.
        let v = Verdicts::default();
        let mut t = Tracker::new(v.clone());
        PARSES.with(|n| n.set(0));
        let lead = b"\r\n\n".repeat(1000);
        for byte in lead.iter().chain(&head) {
            t.feed(std::slice::from_ref(byte));
        }
        assert_eq!(v.next(), Some("more than one Content-Length"));
        assert_eq!(PARSES.with(std::cell::Cell::get), 2);
    }

    /// The verdicts `Verdicts::next` hands out for `heads` request heads, after `stream` was
    /// fed at every split.
    fn served_at_every_split(stream: &[u8], heads: usize) -> Vec<Option<&'static str>> {
        let mut first = None;
        for split in 1..=stream.len() {
            let v = Verdicts::default();
            let mut t = Tracker::new(v.clone());
            for chunk in stream.chunks(split) {
                t.feed(chunk);
            }
            let served: Vec<_> = (0..heads).map(|_| v.next()).collect();
            match &first {
                None => first = Some(served),
                Some(f) => assert_eq!(f, &served, "split {split}"),
            }
        }
        first.unwrap_or_default()
    }

    #[test]
    fn heads_end_where_hyper_ends_them_bare_lf_included() {
        // hyper (httparse) ends lines at a bare LF too: the duplicate Content-Length is seen.
        let bare = b"POST /m HTTP/1.1\nHost: x\nContent-Length: 2\nContent-Length: 2\n\n{}";
        assert_eq!(
            served_at_every_split(bare, 1),
            vec![Some("more than one Content-Length")]
        );
        // A bare-LF GET before a CRLF POST: two heads, and the POST's framing is checked.
        let two = b"GET /x HTTP/1.1\n\nPOST /m HTTP/1.1\r\nContent-Length: 3\r\n\
Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(
            served_at_every_split(two, 2),
            vec![None, Some("both Content-Length and Transfer-Encoding")]
        );
    }

    #[test]
    fn a_head_without_a_verdict_is_refused() {
        let v = Verdicts::default();
        assert_eq!(v.next(), Some(UNFOLLOWED));
        // A head too long to follow, then whatever comes after it.
        let long = format!(
            "GET / HTTP/1.1\r\nX: {}\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            "a".repeat(MAX_HEAD)
        );
        let v = Verdicts::default();
        Tracker::new(v.clone()).feed(long.as_bytes());
        assert_eq!(v.next(), Some("request head too long"));
        assert_eq!(v.next(), Some(UNFOLLOWED));
    }

    #[test]
    fn broken_chunked_bodies_refuse_every_later_request() {
        let next = b"GET /after HTTP/1.1\r\n\r\n";
        let cases: [(&[u8], &str); 3] = [
            // hyper reads on past a bare LF in the trailers (for it the section ends only at
            // CRLF CRLF); "Z" would have been taken for the next request head.
            (b"0\r\n\nZ\r\n\r\n", "trailer line not ended by CRLF"),
            (b"0\r\nT: 1\n\r\n", "trailer line not ended by CRLF"),
            (b"1;aaaa", "chunk-size line too long"),
        ];
        for (body, problem) in cases {
            let mut stream = b"POST /m HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            stream.extend_from_slice(body);
            if body.starts_with(b"1;") {
                stream.extend(std::iter::repeat_n(b'a', MAX_CHUNK_LINE));
                stream.extend_from_slice(b"\r\nX\r\n0\r\n\r\n");
            }
            stream.extend_from_slice(next);
            let served = served_at_every_split(&stream, 2);
            assert_eq!(served, vec![None, Some(problem)], "{problem}");
        }
        // Well-formed trailers end the body, and the next head is followed.
        let ok = b"POST /m HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nT: 1\r\n\r\n\
GET /after HTTP/1.1\r\n\r\n";
        assert_eq!(served_at_every_split(ok, 2), vec![None, None]);
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
