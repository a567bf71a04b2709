//! Server-Sent Events: an incremental parser and a canonical encoder.
//!
//! The parser follows the WHATWG event-stream rules (CR, LF or CRLF line ends, even when a CR
//! ends one read and its LF starts the next; `:` comments; multi-line `data`; a leading BOM) and
//! caps the size of one event. The gateway never splices upstream bytes into the agent's stream:
//! each complete event is inspected and re-emitted by [`encode`] with LF line ends only.

use bytes::{BufMut, BytesMut};

/// One dispatched event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// The `event` field (the type); `None` means the default, "message".
    pub event: Option<String>,
    /// The `data` lines joined with LF; `None` when the block had no data line.
    pub data: Option<String>,
    /// The `id` field, when the block set one.
    pub id: Option<String>,
    /// The `retry` field, when the block set a valid one.
    pub retry: Option<u64>,
    /// The block held only comments: forwarded as a bare keep-alive.
    pub keepalive: bool,
}

impl Event {
    /// An event carrying one JSON-RPC message.
    pub fn message(data: String) -> Self {
        Self {
            data: Some(data),
            ..Self::default()
        }
    }
}

/// Why a stream was cut.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("SSE event larger than {max} bytes")]
    EventTooLarge { max: usize },
    #[error("SSE stream is not valid UTF-8")]
    InvalidUtf8,
}

/// Incremental event-stream parser. Feed it reads of any size, split at any byte.
#[derive(Debug)]
pub struct Parser {
    max_event: usize,
    line: Vec<u8>,
    /// The last byte seen was a CR: an LF right after it belongs to the same line end.
    after_cr: bool,
    at_start: bool,
    pending: Pending,
}

#[derive(Debug, Default)]
struct Pending {
    event: Option<String>,
    data: Option<String>,
    id: Option<String>,
    retry: Option<u64>,
    comment: bool,
    size: usize,
}

impl Parser {
    /// A parser that rejects events (all their lines together) larger than `max_event` bytes.
    pub fn new(max_event: usize) -> Self {
        Self {
            max_event,
            line: Vec::new(),
            after_cr: false,
            at_start: true,
            pending: Pending::default(),
        }
    }

    /// Consumes `chunk`, appending every event it completes to `out`.
    pub fn push(&mut self, mut chunk: &[u8], out: &mut Vec<Event>) -> Result<(), SseError> {
        // Nothing to read, and nothing to forget: a CR at the end of the last chunk still waits
        // to see whether an LF follows.
        if chunk.is_empty() {
            return Ok(());
        }
        if self.at_start {
            // The BOM may itself arrive split across reads: wait until three bytes are known.
            let mut head = std::mem::take(&mut self.line);
            head.extend_from_slice(chunk);
            if head.len() < 3 && [0xEF, 0xBB, 0xBF].starts_with(&head) {
                self.line = head;
                return Ok(());
            }
            self.at_start = false;
            let skip = if head.starts_with(&[0xEF, 0xBB, 0xBF]) {
                3
            } else {
                0
            };
            return self.push_lines(&head[skip..], out);
        }
        if self.after_cr && chunk.first() == Some(&b'\n') {
            chunk = &chunk[1..];
        }
        self.after_cr = false;
        self.push_lines(chunk, out)
    }

    fn push_lines(&mut self, mut chunk: &[u8], out: &mut Vec<Event>) -> Result<(), SseError> {
        while let Some(pos) = memchr::memchr2(b'\r', b'\n', chunk) {
            self.grow(pos)?;
            self.line.extend_from_slice(&chunk[..pos]);
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, out)?;
            self.line = line;
            self.line.clear();
            let crlf = chunk[pos] == b'\r' && chunk.get(pos + 1) == Some(&b'\n');
            if chunk[pos] == b'\r' && pos + 1 == chunk.len() {
                self.after_cr = true;
            }
            chunk = &chunk[pos + if crlf { 2 } else { 1 }..];
        }
        self.grow(chunk.len())?;
        self.line.extend_from_slice(chunk);
        Ok(())
    }

    fn grow(&self, more: usize) -> Result<(), SseError> {
        if self.pending.size + self.line.len() + more > self.max_event {
            return Err(SseError::EventTooLarge {
                max: self.max_event,
            });
        }
        Ok(())
    }

    fn line_done(&mut self, line: &[u8], out: &mut Vec<Event>) -> Result<(), SseError> {
        if line.is_empty() {
            let p = std::mem::take(&mut self.pending);
            let has_field =
                p.event.is_some() || p.data.is_some() || p.id.is_some() || p.retry.is_some();
            if has_field || p.comment {
                out.push(Event {
                    event: p.event,
                    data: p.data,
                    id: p.id,
                    retry: p.retry,
                    keepalive: !has_field,
                });
            }
            return Ok(());
        }
        self.pending.size += line.len() + 1;
        if line[0] == b':' {
            self.pending.comment = true;
            return Ok(());
        }
        let (name, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        let value = std::str::from_utf8(value).map_err(|_| SseError::InvalidUtf8)?;
        match name {
            b"event" => self.pending.event = Some(value.to_owned()),
            b"data" => match &mut self.pending.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.pending.data = Some(value.to_owned()),
            },
            // An id with NUL is ignored, as the standard says.
            b"id" if !value.contains('\0') => self.pending.id = Some(value.to_owned()),
            b"retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.pending.retry = value.parse().ok();
            }
            _ => {}
        }
        Ok(())
    }
}

/// Writes `event` as a canonical frame: LF line ends, one `data:` line per line of data.
pub fn encode(event: &Event, out: &mut BytesMut) {
    if event.keepalive {
        out.put_slice(b":\n\n");
        return;
    }
    if let Some(name) = &event.event {
        field(out, "event", name);
    }
    if let Some(id) = &event.id {
        field(out, "id", id);
    }
    if let Some(retry) = event.retry {
        field(out, "retry", &retry.to_string());
    }
    if let Some(data) = &event.data {
        // Data came from our own parser or serializer; split on every line-end form anyway, so a
        // CR inside data can never start a new field downstream.
        for line in data.split(['\n', '\r']) {
            field(out, "data", line);
        }
    }
    out.put_u8(b'\n');
}

fn field(out: &mut BytesMut, name: &str, value: &str) {
    out.put_slice(name.as_bytes());
    out.put_u8(b':');
    if !value.is_empty() {
        out.put_u8(b' ');
        out.put_slice(value.as_bytes());
    }
    out.put_u8(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8], split: usize) -> Result<Vec<Event>, SseError> {
        let mut p = Parser::new(1024);
        let mut out = Vec::new();
        for chunk in input.chunks(split.max(1)) {
            p.push(chunk, &mut out)?;
            // An empty read between any two must change nothing (a CR may be waiting for its
            // LF across it).
            p.push(b"", &mut out)?;
        }
        Ok(out)
    }

    #[test]
    fn every_split_point_and_line_end_gives_the_same_events() {
        let stream = b"\xEF\xBB\xBF: hello\r\nevent: message\r\nid: 7\rdata: {\"a\":\r\ndata: 1}\n\nretry: 50\n\ndata:x\r\r";
        let expected = vec![
            Event {
                event: Some("message".into()),
                id: Some("7".into()),
                data: Some("{\"a\":\n1}".into()),
                ..Event::default()
            },
            Event {
                retry: Some(50),
                ..Event::default()
            },
            Event::message("x".into()),
        ];
        // The comment shares its block with the event's fields, so no keep-alive of its own.
        for split in 1..=stream.len() {
            assert_eq!(
                parse_all(stream, split).unwrap(),
                expected,
                "split at {split}"
            );
        }
    }

    #[test]
    fn oversized_events_are_refused_even_without_a_line_end() {
        let mut p = Parser::new(16);
        let mut out = Vec::new();
        assert_eq!(
            p.push(b"data: 0123456789abcdefXYZ", &mut out),
            Err(SseError::EventTooLarge { max: 16 })
        );
        let mut p = Parser::new(16);
        assert!(p.push(b"data: 01234\n", &mut out).is_ok());
        assert_eq!(
            p.push(b"data: 56789\n", &mut out),
            Err(SseError::EventTooLarge { max: 16 })
        );
    }

    #[test]
    fn encode_is_canonical_and_reparses_to_the_same_event() {
        let e = Event {
            event: Some("message".into()),
            id: Some("1".into()),
            retry: Some(3),
            data: Some("a\nb".into()),
            keepalive: false,
        };
        let mut out = BytesMut::new();
        encode(&e, &mut out);
        assert_eq!(
            &out[..],
            b"event: message\nid: 1\nretry: 3\ndata: a\ndata: b\n\n"
        );
        assert_eq!(parse_all(&out, 3).unwrap(), vec![e]);
    }

    #[test]
    fn a_cr_inside_data_cannot_inject_a_field() {
        let e = Event::message("x\revent: evil".into());
        let mut out = BytesMut::new();
        encode(&e, &mut out);
        assert_eq!(&out[..], b"data: x\ndata: event: evil\n\n");
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        assert_eq!(
            parse_all(b"data: \xff\n\n", 100),
            Err(SseError::InvalidUtf8)
        );
    }
}
