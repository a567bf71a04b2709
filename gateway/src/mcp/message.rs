//! JSON-RPC 2.0 messages as MCP uses them: strict validation and classification.
//!
//! The classification ([`Message`]) is what every later stage decides on: the kind of message,
//! its id, its method, and for the calls that name a target (tools/call, resources/read,
//! prompts/get) that target and its arguments. Transport concerns (HTTP, SSE) live elsewhere.

use std::fmt;

use bytes::Bytes;
use serde_json::value::RawValue;
use simd_json::StaticNode;

use super::json::{self, JsonError, MAX_EXACT_INT, View};

/// A JSON-RPC id: MCP allows strings and integers only, never null, never fractions.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Id {
    Int(i64),
    Str(Box<str>),
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Id::Int(i) => write!(f, "{i}"),
            Id::Str(s) => write!(f, "{s:?}"),
        }
    }
}

impl Id {
    /// The id as JSON, for error replies.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Id::Int(i) => serde_json::Value::from(*i),
            Id::Str(s) => serde_json::Value::from(&**s),
        }
    }
}

/// What a message is, by JSON-RPC's rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Request,
    Notification,
    Response,
    Error,
}

impl Kind {
    /// Lower-case name, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Request => "request",
            Kind::Notification => "notification",
            Kind::Response => "response",
            Kind::Error => "error",
        }
    }
}

/// The arguments of a tools/call or prompts/get, read on demand.
///
/// Classification does not copy them out: most decisions need only the method and the name, and
/// building a tree of a large argument object would cost more than the strict parse itself. The
/// body they came from already passed the strict parse, so reading it again with serde_json
/// yields exactly what the gateway checked (the differential test holds the two parsers to that).
#[derive(Clone, Debug, PartialEq)]
pub struct Arguments {
    /// The message's own text (in a batch, its slice of the body).
    body: Bytes,
}

impl Arguments {
    /// The text of `params.arguments`, found without building anything.
    pub fn raw(&self) -> Option<&str> {
        // The body passed the strict parse: it is one valid JSON text.
        let raw = std::str::from_utf8(&self.body).ok()?;
        let raw = raw_step(raw, &Step::Key("params".into()))?.get();
        raw_step(raw, &Step::Key("arguments".into())).map(RawValue::get)
    }

    /// The value at an RFC 6901 JSON pointer into `params.arguments`.
    pub fn pointer(&self, pointer: &str) -> Option<serde_json::Value> {
        pointer_in(self.raw()?, pointer)
    }
}

/// The value at an RFC 6901 JSON pointer into the JSON text `raw`, reading only what lies on
/// the path: each step scans one value and builds nothing beside the path, so a condition on
/// one argument of a large call costs a few scans, not a tree.
pub fn pointer_in(raw: &str, pointer: &str) -> Option<serde_json::Value> {
    serde_json::from_str(raw_pointer(raw, pointer)?).ok()
}

/// The text of the value at a JSON pointer into the JSON text `raw`, unparsed.
pub fn raw_pointer<'a>(raw: &'a str, pointer: &str) -> Option<&'a str> {
    if pointer.is_empty() {
        return Some(raw);
    }
    raw_value_at(raw, pointer).map(RawValue::get)
}

/// The value at a non-empty JSON pointer into the JSON text `raw`, as serde_json's checked
/// raw value (so that keeping it is a copy, not another parse).
pub fn raw_value_at<'a>(mut raw: &'a str, pointer: &str) -> Option<&'a RawValue> {
    let mut found = None;
    for token in pointer.strip_prefix('/')?.split('/') {
        let key = token.replace("~1", "/").replace("~0", "~");
        let step = match key.parse::<usize>() {
            // An object may have a member named "0": try the index only on arrays.
            Ok(i)
                if raw.trim_start().starts_with('[')
                    && key.bytes().all(|b| b.is_ascii_digit())
                    && (key == "0" || !key.starts_with('0')) =>
            {
                Step::Index(i)
            }
            _ => Step::Key(key),
        };
        let value = raw_step(raw, &step)?;
        raw = value.get();
        found = Some(value);
    }
    found
}

/// The member `key` of the JSON object `raw`; `None` when it has none or `raw` is no object.
pub fn raw_member<'a>(raw: &'a str, key: &str) -> Option<&'a RawValue> {
    raw_step(raw, &Step::Key(key.into()))
}

/// One step of a pointer.
enum Step {
    Key(String),
    Index(usize),
}

/// The member or element `step` names inside `raw`, skipping the others unbuilt.
fn raw_step<'a>(raw: &'a str, step: &Step) -> Option<&'a RawValue> {
    use std::{borrow::Cow, fmt};

    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

    struct Find<'s>(&'s Step);
    impl<'de, 's> Visitor<'de> for Find<'s> {
        type Value = Option<&'de RawValue>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object or an array")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let Step::Key(want) = self.0 else {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                return Ok(None);
            };
            let mut found = None;
            while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                if found.is_none() && key == want.as_str() {
                    found = Some(map.next_value::<&'de RawValue>()?);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            let mut i = 0;
            loop {
                if matches!(self.0, Step::Index(want) if *want == i) && found.is_none() {
                    match seq.next_element::<&'de RawValue>()? {
                        Some(v) => found = Some(v),
                        None => break,
                    }
                } else if seq.next_element::<IgnoredAny>()?.is_none() {
                    break;
                }
                i += 1;
            }
            Ok(found)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    impl<'de, 's> DeserializeSeed<'de> for Find<'s> {
        type Value = Option<&'de RawValue>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    }
    let mut de = serde_json::Deserializer::from_str(raw);
    Find(step).deserialize(&mut de).ok().flatten()
}

/// The thing a request acts on, for the methods that name one.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    None,
    /// `tools/call`: the tool and its arguments (an object, or absent).
    Tool {
        name: Box<str>,
        arguments: Option<Arguments>,
    },
    /// `resources/read`, `resources/subscribe`, `resources/unsubscribe`.
    Resource {
        uri: Box<str>,
    },
    /// `prompts/get`.
    Prompt {
        name: Box<str>,
        arguments: Option<Arguments>,
    },
    /// `completion/complete`: the prompt or resource template (its `ref`) whose argument it
    /// completes. Completion handlers answer from what they complete, so it is decided as that.
    Completion(Completes),
}

/// What a `completion/complete` request completes an argument of.
#[derive(Clone, Debug, PartialEq)]
pub enum Completes {
    /// `{"type": "ref/prompt", "name": ...}`
    Prompt(Box<str>),
    /// `{"type": "ref/resource", "uri": ...}`: a resource template's URI, as listed.
    Resource(Box<str>),
}

impl Target {
    /// What the message is about, for audit records and logs: the tool or prompt name, the
    /// resource URI, or the prompt or resource template a completion completes.
    pub fn subject(&self) -> Option<&str> {
        match self {
            Target::Completion(Completes::Prompt(n) | Completes::Resource(n)) => Some(n),
            other => other.header_name(),
        }
    }

    /// The name a 2026-07-28 `Mcp-Name` header must carry for this target.
    pub fn header_name(&self) -> Option<&str> {
        match self {
            // The header carries params.name or params.uri; a completion's are inside `ref`.
            Target::None | Target::Completion(_) => None,
            Target::Tool { name, .. } | Target::Prompt { name, .. } => Some(name),
            Target::Resource { uri } => Some(uri),
        }
    }
}

/// One classified JSON-RPC message.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub kind: Kind,
    pub id: Option<Id>,
    /// The method of a request or notification.
    pub method: Option<Box<str>>,
    pub target: Target,
    /// `params.protocolVersion` of an initialize request, or `result.protocolVersion` of a
    /// response (only an InitializeResult carries one): how the gateway learns what the two ends
    /// negotiated.
    pub protocol_version: Option<Box<str>>,
    /// A response whose `result.resultType` is "input_required" (2026-07-28): it embeds requests
    /// the server makes of the client. Read from the parsed result, so no escape hides it.
    pub input_required: bool,
}

impl Message {
    /// The method, or "" for responses.
    pub fn method(&self) -> &str {
        self.method.as_deref().unwrap_or("")
    }
}

/// A body: one message, or (2025-03-26 only) a batch.
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    Single(Message),
    Batch(Vec<Message>),
}

impl Body {
    /// The messages, in order.
    pub fn messages(&self) -> &[Message] {
        match self {
            Body::Single(m) => std::slice::from_ref(m),
            Body::Batch(v) => v,
        }
    }
}

/// Why a body is not an acceptable JSON-RPC message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error(transparent)]
    Json(#[from] JsonError),
    #[error("a JSON-RPC message must be an object")]
    NotAnObject,
    #[error("batches are not allowed in protocol revision {revision}")]
    BatchNotAllowed { revision: &'static str },
    /// Two requests (or two responses) of one batch with the same id: their answers could not
    /// be told apart, so a `tools/list` answer could pass as the `ping` answer and skip its
    /// filtering.
    #[error("id {0} appears twice in the batch")]
    DuplicateId(String),
    #[error("empty batch")]
    EmptyBatch,
    #[error("a batch may hold at most {max} messages")]
    BatchTooLong { max: usize },
    #[error("\"jsonrpc\" must be \"2.0\"")]
    BadVersion,
    #[error("unknown member {0:?} in a JSON-RPC message")]
    UnknownMember(String),
    #[error(
        "member {found:?} differs from {wanted:?} only in letter case (servers in Go and .NET would read it as {wanted:?})"
    )]
    MemberInOtherCase { found: String, wanted: &'static str },
    #[error("\"id\" must be a string or an integer of at most 2^53 in magnitude")]
    BadId,
    #[error("\"method\" must be a non-empty string")]
    BadMethod,
    #[error("\"params\" must be an object")]
    BadParams,
    #[error(
        "\"params.uri\" is refused: {0} (servers would read it differently from how it is written)"
    )]
    BadUri(&'static str),
    #[error(
        "a notification (a message without \"id\") must be a notifications/* method, not {0:?}"
    )]
    NotificationMethod(String),
    #[error("a message with \"method\" cannot carry \"result\" or \"error\"")]
    MethodWithResult,
    #[error("a response needs an \"id\" and exactly one of \"result\" and \"error\"")]
    BadResponse,
    #[error("\"error\" must be an object with an integer \"code\" and a string \"message\"")]
    BadError,
    #[error("{method} needs a string \"params.{field}\"")]
    MissingTarget {
        method: &'static str,
        field: &'static str,
    },
    #[error("{method}: \"params.arguments\" must be an object")]
    BadArguments { method: &'static str },
    #[error(
        "completion/complete needs \"params.ref\" to be {{\"type\": \"ref/prompt\", \"name\": ...}} or {{\"type\": \"ref/resource\", \"uri\": ...}}"
    )]
    BadCompletionRef,
}

/// Parses and classifies a body. `allow_batch` is true only where the negotiated revision
/// permits batches (2025-03-26).
pub fn parse_body(
    bytes: &Bytes,
    allow_batch: bool,
    revision: &'static str,
) -> Result<Body, MessageError> {
    json::with_parsed(bytes, |root| {
        if root.is_array() {
            if !allow_batch {
                return Err(MessageError::BatchNotAllowed { revision });
            }
            if root.elements().nth(MAX_BATCH).is_some() {
                return Err(MessageError::BatchTooLong { max: MAX_BATCH });
            }
            // Each message keeps its own text (a slice, not a copy): finding one in the batch
            // again for every message scanned the whole body once per message.
            let texts = batch_texts(bytes)
                .filter(|t| t.len() == root.elements().count())
                .ok_or(MessageError::NotAnObject)?;
            let messages = root
                .elements()
                .zip(texts)
                .map(|(v, text)| classify(v, Source::Shared(&text)))
                .collect::<Result<Vec<_>, _>>()?;
            if messages.is_empty() {
                return Err(MessageError::EmptyBatch);
            }
            let mut seen = std::collections::HashSet::with_capacity(messages.len());
            for m in &messages {
                if let Some(id) = &m.id
                    && !seen.insert((m.method.is_some(), id))
                {
                    return Err(MessageError::DuplicateId(id.to_string()));
                }
            }
            Ok(Body::Batch(messages))
        } else {
            classify(root, Source::Shared(bytes)).map(Body::Single)
        }
    })?
}

/// Messages a batch may hold: enough for any client's batching, few enough that per-message
/// work (decisions, records) stays bounded per request.
pub const MAX_BATCH: usize = 1024;

/// The text of each element of the JSON array `body`, as slices of it, in one pass.
pub fn batch_texts(body: &Bytes) -> Option<Vec<Bytes>> {
    let text = std::str::from_utf8(body).ok()?;
    let elements: Vec<&RawValue> = serde_json::from_str(text).ok()?;
    let start = text.as_ptr() as usize;
    Some(
        elements
            .iter()
            .map(|e| {
                let at = e.get().as_ptr() as usize - start;
                body.slice(at..at + e.get().len())
            })
            .collect(),
    )
}

/// Parses and classifies one message (an SSE event's data, a stdio line): never a batch.
pub fn parse_message(bytes: &[u8]) -> Result<Message, MessageError> {
    json::with_parsed(bytes, |v| classify(v, Source::Borrowed(bytes)))?
}

/// Where a message's bytes live, so that [`Arguments`] can keep them without a copy when the
/// caller already holds them in a `Bytes`.
#[derive(Clone, Copy)]
enum Source<'a> {
    Shared(&'a Bytes),
    Borrowed(&'a [u8]),
}

impl Source<'_> {
    fn to_bytes(self) -> Bytes {
        match self {
            Source::Shared(b) => b.clone(),
            Source::Borrowed(b) => Bytes::copy_from_slice(b),
        }
    }
}

fn classify(v: View<'_, '_>, source: Source<'_>) -> Result<Message, MessageError> {
    if !v.is_object() {
        return Err(MessageError::NotAnObject);
    }
    let (mut version, mut id, mut method, mut params, mut result, mut error) =
        (None, None, None, None, None, None);
    for (key, value) in v.entries() {
        let slot = match key {
            "jsonrpc" => &mut version,
            "id" => &mut id,
            "method" => &mut method,
            "params" => &mut params,
            "result" => &mut result,
            "error" => &mut error,
            // JSON-RPC defines no other members; an extra one ("Method", "ID") is exactly what
            // a case-insensitive or lenient upstream parser might read differently.
            other => return Err(MessageError::UnknownMember(other.to_owned())),
        };
        *slot = Some(value);
    }
    if version.and_then(|v| v.as_str()) != Some("2.0") {
        return Err(MessageError::BadVersion);
    }
    let id = id.map(parse_id).transpose()?;
    if let Some(method) = method {
        if result.is_some() || error.is_some() {
            return Err(MessageError::MethodWithResult);
        }
        let method = method
            .as_str()
            .filter(|m| !m.is_empty())
            .ok_or(MessageError::BadMethod)?;
        if params.is_some_and(|p| !p.is_object()) {
            return Err(MessageError::BadParams);
        }
        // MCP names every notification notifications/*. Anything else without an id would pass
        // as session plumbing here while a plain JSON-RPC server executes it ("tools/call"
        // with no id is still a tool call to JSON-RPC 2.0).
        if id.is_none() && !method.starts_with("notifications/") {
            return Err(MessageError::NotificationMethod(method.to_owned()));
        }
        let (target, protocol_version) = classify_params(method, params, source)?;
        return Ok(Message {
            kind: if id.is_some() {
                Kind::Request
            } else {
                Kind::Notification
            },
            id,
            method: Some(method.into()),
            target,
            protocol_version,
            input_required: false,
        });
    }
    if params.is_some() {
        return Err(MessageError::BadResponse);
    }
    let (Some(_), kind) = (
        &id,
        match (result, error) {
            (Some(_), None) => Kind::Response,
            (None, Some(e)) => {
                check_error_object(e)?;
                Kind::Error
            }
            _ => return Err(MessageError::BadResponse),
        },
    ) else {
        return Err(MessageError::BadResponse);
    };
    let protocol_version = result
        .and_then(|r| r.get("protocolVersion"))
        .and_then(|p| p.as_str())
        .map(Into::into);
    let input_required = result
        .and_then(|r| r.get("resultType"))
        .and_then(|t| t.as_str())
        == Some("input_required");
    Ok(Message {
        kind,
        id,
        method: None,
        target: Target::None,
        protocol_version,
        input_required,
    })
}

fn parse_id(v: View<'_, '_>) -> Result<Id, MessageError> {
    if let Some(s) = v.as_str() {
        return Ok(Id::Str(s.into()));
    }
    match v.as_static() {
        Some(StaticNode::I64(i)) if i.unsigned_abs() <= MAX_EXACT_INT => Ok(Id::Int(i)),
        Some(StaticNode::U64(u)) if u <= MAX_EXACT_INT => Ok(Id::Int(u as i64)),
        _ => Err(MessageError::BadId),
    }
}

fn check_error_object(e: View<'_, '_>) -> Result<(), MessageError> {
    let code_ok = matches!(
        e.get("code").and_then(|c| c.as_static()),
        Some(StaticNode::I64(_) | StaticNode::U64(_))
    );
    let message_ok = e.get("message").is_some_and(|m| m.as_str().is_some());
    if e.is_object() && code_ok && message_ok {
        Ok(())
    } else {
        Err(MessageError::BadError)
    }
}

type Classified = (Target, Option<Box<str>>);

/// A resource URI in the one spelling the policy matches. Servers resolve `..` and `.`
/// segments (escaped slashes included), decode percent-escapes and fold the scheme's case
/// before they look a resource up
/// (the TypeScript SDK through WHATWG `URL`, the Python one by unquoting template variables), so
/// "file:///srv/public/../../etc/passwd" or "db://tables/%73ecrets" would slip past a rule
/// written for what they mean. Such spellings are refused rather than rewritten: the URI the
/// upstream gets is the one the policy saw.
fn resource_uri(uri: Box<str>) -> Result<Box<str>, MessageError> {
    let uri = uri_spelling(uri)?;
    // What a WHATWG or RFC 3986 parser makes of it must be what was written: no host case
    // folded, default port dropped, `file://localhost/` shortened. Two rewrites leave the
    // resource as it was: the root path of `https://host`, and non-ASCII characters in the
    // path, query or fragment escaped as UTF-8 (a server decodes them back).
    let parsed = url::Url::parse(&uri).map_err(|_| MessageError::BadUri("it is not a URL"))?;
    let written = escape_non_ascii(&uri);
    let same = parsed.as_str() == written
        || (parsed.path() == "/"
            && parsed.query().is_none()
            && parsed.fragment().is_none()
            && parsed.as_str().strip_suffix('/') == Some(&*written));
    if same {
        Ok(uri)
    } else {
        Err(MessageError::BadUri(
            "URL parsers rewrite it (host case, default port, escapes...)",
        ))
    }
}

/// `text` with every non-ASCII byte percent-escaped, as URL parsers escape them.
fn escape_non_ascii(text: &str) -> std::borrow::Cow<'_, str> {
    if text.is_ascii() {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() * 2);
    for b in text.bytes() {
        if b.is_ascii() {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The spelling rules a resource URI and a completion's URI template share (a template's
/// `{variables}` are no URL, so only a URI goes through a URL parser as well).
fn uri_spelling(uri: Box<str>) -> Result<Box<str>, MessageError> {
    let bad = |why: &'static str| Err(MessageError::BadUri(why));
    // URL parsers drop tabs and line breaks anywhere and trim spaces and controls at the ends:
    // "file:///srv/docs/.\t./x" reaches a server as "file:///srv/x".
    if uri.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return bad("it contains a space or control character");
    }
    let Some((scheme, rest)) = uri.split_once(':') else {
        return bad("it has no scheme");
    };
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
    {
        return bad("its scheme is not in lower case");
    }
    // Only the path names the resource; a query or fragment is the server's business.
    let path = rest.split(['?', '#']).next().unwrap_or_default();
    if path.contains('\\') {
        return bad("its path contains a backslash");
    }
    let bytes = path.as_bytes();
    for (i, _) in path.match_indices('%') {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit));
        let decoded = hex
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match decoded {
            None => return bad("it has a malformed percent-escape"),
            Some(b) if b.is_ascii_alphanumeric() || b"-._~".contains(&b) => {
                return bad("it percent-escapes a character that needs no escape");
            }
            Some(_) => {}
        }
    }
    // Escaped slashes are legitimate inside a template variable ("files://{path}" filled with
    // "a/b"), and the server unescapes them: "..%2Fsecret" reaches it as "../secret".
    let unescaped = ["%2F", "%2f", "%5C", "%5c"]
        .iter()
        .fold(path.to_owned(), |p, escape| p.replace(escape, "/"));
    if unescaped
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return bad("it has a \".\" or \"..\" path segment");
    }
    // A file system reads "a//b" as "a/b". (After the authority: "file://host/x" names a host.)
    let file_path = match path.strip_prefix("//") {
        Some(after) => after.find('/').map_or("", |at| &after[at..]),
        None => path,
    };
    if scheme == "file" && file_path.contains("//") {
        return bad("it has an empty path segment");
    }
    Ok(uri)
}

/// The `ref` of a completion/complete request. Any other shape is refused: what it would
/// complete could not be decided.
fn completes(params: Option<View<'_, '_>>) -> Result<Completes, MessageError> {
    let r = params
        .and_then(|p| p.get("ref"))
        .ok_or(MessageError::BadCompletionRef)?;
    spelled_exactly(r, &["type", "name", "uri"])?;
    let text = |key: &str| {
        r.get(key)
            .and_then(|v| v.as_str())
            .map(Box::<str>::from)
            .ok_or(MessageError::BadCompletionRef)
    };
    match r.get("type").and_then(|t| t.as_str()) {
        Some("ref/prompt") => Ok(Completes::Prompt(text("name")?)),
        // Held to the spelling rules of resources/read: the policy matches it the same way.
        Some("ref/resource") => Ok(Completes::Resource(uri_spelling(text("uri")?)?)),
        _ => Err(MessageError::BadCompletionRef),
    }
}

/// Refuses a member of `v` spelled like one of `names` in other letter case. The gateway reads
/// those by their exact name, and Go's encoding/json and .NET's web defaults bind `Arguments` to
/// `arguments`: the decision would miss what such a server acts on.
fn spelled_exactly(v: View<'_, '_>, names: &[&'static str]) -> Result<(), MessageError> {
    for (key, _) in v.entries() {
        if let Some(wanted) = names
            .iter()
            .find(|name| **name != key && crate::mcp::json::same_folded(key, name))
        {
            return Err(MessageError::MemberInOtherCase {
                found: key.to_owned(),
                wanted,
            });
        }
    }
    Ok(())
}

fn classify_params(
    method: &str,
    params: Option<View<'_, '_>>,
    source: Source<'_>,
) -> Result<Classified, MessageError> {
    // Only where the gateway reads members: other methods (vendor notifications among them)
    // may spell theirs as they like.
    let read = matches!(
        method,
        "tools/call"
            | "prompts/get"
            | "resources/read"
            | "resources/subscribe"
            | "resources/unsubscribe"
            | "completion/complete"
            | "initialize"
    );
    if read && let Some(p) = params {
        spelled_exactly(
            p,
            &[
                "name",
                "arguments",
                "uri",
                "ref",
                "argument",
                "protocolVersion",
            ],
        )?;
    }
    let field = |name: &'static str, m: &'static str| -> Result<Box<str>, MessageError> {
        params
            .and_then(|p| p.get(name))
            .and_then(|v| v.as_str())
            .map(Into::into)
            .ok_or(MessageError::MissingTarget {
                method: m,
                field: name,
            })
    };
    let arguments = |m: &'static str| -> Result<Option<Arguments>, MessageError> {
        match params.and_then(|p| p.get("arguments")) {
            None => Ok(None),
            Some(a) if a.is_object() => Ok(Some(Arguments {
                body: source.to_bytes(),
            })),
            Some(_) => Err(MessageError::BadArguments { method: m }),
        }
    };
    Ok(match method {
        "tools/call" => (
            Target::Tool {
                name: field("name", "tools/call")?,
                arguments: arguments("tools/call")?,
            },
            None,
        ),
        "prompts/get" => (
            Target::Prompt {
                name: field("name", "prompts/get")?,
                arguments: arguments("prompts/get")?,
            },
            None,
        ),
        "resources/read" => (
            Target::Resource {
                uri: resource_uri(field("uri", "resources/read")?)?,
            },
            None,
        ),
        "resources/subscribe" => (
            Target::Resource {
                uri: resource_uri(field("uri", "resources/subscribe")?)?,
            },
            None,
        ),
        "resources/unsubscribe" => (
            Target::Resource {
                uri: resource_uri(field("uri", "resources/unsubscribe")?)?,
            },
            None,
        ),
        "completion/complete" => (Target::Completion(completes(params)?), None),
        "initialize" => (
            Target::None,
            params
                .and_then(|p| p.get("protocolVersion"))
                .and_then(|v| v.as_str())
                .map(Into::into),
        ),
        _ => (Target::None, None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    type Check = fn(&MessageError) -> bool;

    fn one(s: &str) -> Result<Message, MessageError> {
        parse_message(s.as_bytes())
    }

    fn arguments_of(body: &str, allow_batch: bool) -> Vec<Arguments> {
        let parsed = parse_body(&Bytes::from(body.to_owned()), allow_batch, "2025-03-26").unwrap();
        parsed
            .messages()
            .iter()
            .filter_map(|m| match &m.target {
                Target::Tool { arguments, .. } => arguments.clone(),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn members_in_other_case_pass_where_the_gateway_reads_none() {
        let m = one(
            r#"{"jsonrpc":"2.0","method":"notifications/vendor","params":{"Name":"x","Arguments":{}}}"#,
        )
        .unwrap();
        assert_eq!(m.method.as_deref(), Some("notifications/vendor"));
        assert!(
            one(
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"Cursor":"c","URI":1}}"#
            )
            .is_ok()
        );
    }

    #[test]
    fn pointer_reads_what_serde_json_reads_at_the_same_place() {
        let args = r#"{"a":{"b/c":[10,{"d~e":"x"},[true,null]],"0":"zero","\u0066":1.5},"big":"yyyyyyyyyy","n":[0,1,2]}"#;
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","arguments":{args}}}}}"#
        );
        let a = &arguments_of(&body, false)[0];
        let whole: serde_json::Value = serde_json::from_str(args).unwrap();
        for ptr in [
            "",
            "/a",
            "/a/b~1c",
            "/a/b~1c/0",
            "/a/b~1c/1/d~0e",
            "/a/b~1c/2/1",
            "/a/0",
            "/a/f",
            "/n/2",
            "/n/3",
            "/n/01",
            "/n/+1",
            "/n/-",
            "/missing",
            "/a/b~1c/9",
            "/big/0",
            "a",
        ] {
            assert_eq!(a.pointer(ptr), whole.pointer(ptr).cloned(), "{ptr:?}");
        }
        let batch = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"k":1}}},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"t","arguments":{"k":2}}}]"#;
        let both = arguments_of(batch, true);
        assert_eq!(both[0].pointer("/k"), Some(serde_json::json!(1)));
        assert_eq!(both[1].pointer("/k"), Some(serde_json::json!(2)));
    }

    #[test]
    fn classifies_the_four_kinds_and_their_targets() {
        let m = one(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}"#).unwrap();
        assert_eq!(
            (m.kind, m.id.clone(), m.method()),
            (Kind::Request, Some(Id::Int(7)), "tools/call")
        );
        assert_eq!(
            m.target,
            Target::Tool {
                name: "echo".into(),
                arguments: Some(Arguments {
                    body: Bytes::copy_from_slice(
                        br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}"#
                    ),
                })
            }
        );
        let m = one(
            r#"{"jsonrpc":"2.0","id":"r1","method":"resources/read","params":{"uri":"file:///a"}}"#,
        )
        .unwrap();
        assert_eq!(
            m.target,
            Target::Resource {
                uri: "file:///a".into()
            }
        );
        assert_eq!(m.id, Some(Id::Str("r1".into())));
        let m = one(r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p"}}"#)
            .unwrap();
        assert_eq!(
            m.target,
            Target::Prompt {
                name: "p".into(),
                arguments: None
            }
        );
        let m = one(r#"{"jsonrpc":"2.0","id":2,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"p"},"argument":{"name":"a","value":"x"}}}"#).unwrap();
        assert_eq!(m.target, Target::Completion(Completes::Prompt("p".into())));
        assert_eq!(m.target.header_name(), None);
        assert_eq!(m.target.subject(), Some("p"));
        let m = one(r#"{"jsonrpc":"2.0","id":3,"method":"completion/complete","params":{"argument":{"name":"a","value":""},"ref":{"uri":"db://t/{name}","type":"ref/resource"}}}"#).unwrap();
        assert_eq!(
            m.target,
            Target::Completion(Completes::Resource("db://t/{name}".into()))
        );
        let m = one(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).unwrap();
        assert_eq!((m.kind, m.id), (Kind::Notification, None));
        let m =
            one(r#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18"}}"#).unwrap();
        assert_eq!(
            (m.kind, m.protocol_version.as_deref()),
            (Kind::Response, Some("2025-06-18"))
        );
        let m = one(r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"}}"#).unwrap();
        assert_eq!(m.kind, Kind::Error);
        let m = one(r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}"#).unwrap();
        assert_eq!(m.protocol_version.as_deref(), Some("2025-11-25"));
    }

    #[test]
    fn input_required_results_are_recognised_however_they_are_spelled() {
        for (text, expected) in [
            (
                r#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"input_required"}}"#,
                true,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"input\u005frequired"}}"#,
                true,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"result":{"result\u0054ype":"input_required"}}"#,
                true,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"complete"}}"#,
                false,
            ),
            (r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#, false),
        ] {
            assert_eq!(one(text).unwrap().input_required, expected, "{text}");
        }
    }

    #[test]
    fn resource_uris_pass_in_their_one_spelling() {
        for uri in [
            "file:///srv/a%20b.txt",
            "file:///srv/.hidden/x..y",
            "demo://resource/static/document/architecture.md",
            "https://example.com/a?next=../b#..",
            "ui://widget/x",
            "db://t/%C3%A9t%C3%A9",
            // Template variables the SDKs fill with encodeURIComponent / quote(safe=""), and
            // escapes in a query, which names no resource.
            "files://a%2Fb",
            "file:///srv/x%5Cy",
            "https://x/api?next=%2Fhome&u=a%7Eb&p=..%2F..",
            // Rewrites that leave the resource as it is: the root path, non-ASCII escaped.
            "https://example.com",
            "file:///srv/docs/caf\u{e9}.txt",
            "file://fileserver/share/x",
        ] {
            assert_eq!(resource_uri(uri.into()).as_deref(), Ok(uri), "{uri}");
        }
        for uri in [
            "no-scheme",
            ":empty-scheme",
            "File:///x",
            "file:///srv/..",
            "file:///srv/./x",
            "file:///%2e%2e/x",
            "file:///a%7E",
            "file:///a%4",
            "file:///a%+f",
            "files://public/..%2Fsecret",
            "files://public%5C..%5Csecret",
            "file:///a\\b",
            // Parsers drop tabs and line breaks and trim spaces: these are other URIs to them.
            "file:///srv/docs/.\t./.\t./etc/passwd",
            "file:///srv/docs/sec\nret.txt",
            "file:///srv/docs/secret.txt ",
            " file:///srv/docs/secret.txt",
            "file:///srv/a b",
            // Parsers rewrite these.
            "file://localhost/etc/passwd",
            "https://INTERNAL.example/x",
            "https://internal.example:443/x",
            "http://internal.example:80/x",
            "https://ex\u{e4}mple.com/x",
            "file:///srv//docs/secret",
            "file://host//share/x",
        ] {
            assert!(resource_uri(uri.into()).is_err(), "{uri}");
        }
    }

    #[test]
    fn refuses_malformed_messages() {
        let cases: &[(&str, Check)] = &[
            (r#"[1]"#, |e| *e == MessageError::NotAnObject),
            (r#""x""#, |e| *e == MessageError::NotAnObject),
            (r#"{"id":1,"method":"ping"}"#, |e| {
                *e == MessageError::BadVersion
            }),
            // Without an id, only notifications/* methods: a plain JSON-RPC server would
            // execute these.
            (
                r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"drop_db"}}"#,
                |e| *e == MessageError::NotificationMethod("tools/call".into()),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///srv/public/../../etc/passwd"}}"#,
                |e| matches!(e, MessageError::BadUri(_)),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"db://tables/%73ecrets"}}"#,
                |e| matches!(e, MessageError::BadUri(_)),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":"DEMO://resource/2"}}"#,
                |e| matches!(e, MessageError::BadUri(_)),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"demo://r/./2"}}"#,
                |e| matches!(e, MessageError::BadUri(_)),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"files://public/..%2Fsecret"}}"#,
                |e| matches!(e, MessageError::BadUri(_)),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a\\..\\b"}}"#,
                |e| matches!(e, MessageError::BadUri(_)),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a%zz"}}"#,
                |e| matches!(e, MessageError::BadUri(_)),
            ),
            (r#"{"jsonrpc":"2.0","method":"ping"}"#, |e| {
                *e == MessageError::NotificationMethod("ping".into())
            }),
            (
                r#"{"jsonrpc":"2.0","method":"Notifications/initialized"}"#,
                |e| matches!(e, MessageError::NotificationMethod(_)),
            ),
            (r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, |e| {
                *e == MessageError::BadVersion
            }),
            (r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#, |e| {
                *e == MessageError::BadId
            }),
            (r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#, |e| {
                *e == MessageError::BadId
            }),
            (r#"{"jsonrpc":"2.0","id":1.0,"method":"ping"}"#, |e| {
                *e == MessageError::BadId
            }),
            (r#"{"jsonrpc":"2.0","id":1e2,"method":"ping"}"#, |e| {
                *e == MessageError::BadId
            }),
            (
                r#"{"jsonrpc":"2.0","id":9007199254740993,"method":"ping"}"#,
                |e| *e == MessageError::BadId,
            ),
            (
                r#"{"jsonrpc":"2.0","id":-9007199254740993,"method":"ping"}"#,
                |e| *e == MessageError::BadId,
            ),
            (r#"{"jsonrpc":"2.0","id":true,"method":"ping"}"#, |e| {
                *e == MessageError::BadId
            }),
            (r#"{"jsonrpc":"2.0","id":[1],"method":"ping"}"#, |e| {
                *e == MessageError::BadId
            }),
            (r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#, |e| {
                *e == MessageError::BadId
            }),
            (r#"{"jsonrpc":"2.0","id":1,"method":""}"#, |e| {
                *e == MessageError::BadMethod
            }),
            (r#"{"jsonrpc":"2.0","id":1,"method":5}"#, |e| {
                *e == MessageError::BadMethod
            }),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}"#,
                |e| *e == MessageError::BadParams,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"ping","result":{}}"#,
                |e| *e == MessageError::MethodWithResult,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"ping","Method":"x"}"#,
                |e| matches!(e, MessageError::Json(JsonError::KeyRepeatedInOtherCase { key }) if key == "Method"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"ping","Params":{}}"#,
                |e| matches!(e, MessageError::UnknownMember(m) if m == "Params"),
            ),
            // Members the gateway reads, in a spelling Go and .NET servers read as them.
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","Arguments":{"path":"/etc"}}}"#,
                |e| matches!(e, MessageError::MemberInOtherCase { found, wanted: "arguments" } if found == "Arguments"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"NAME":"t"}}"#,
                |e| matches!(e, MessageError::MemberInOtherCase { wanted: "name", .. }),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"ur\u0131":"file:///etc/passwd"}}"#,
                |e| matches!(e, MessageError::MemberInOtherCase { wanted: "uri", .. }),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"p","Name":"q"},"argument":{"name":"a","value":""}}}"#,
                |e| {
                    matches!(
                        e,
                        MessageError::Json(JsonError::KeyRepeatedInOtherCase { .. })
                    )
                },
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"Type":"ref/prompt","name":"p"},"argument":{"name":"a","value":""}}}"#,
                |e| matches!(e, MessageError::MemberInOtherCase { wanted: "type", .. }),
            ),
            (r#"{"jsonrpc":"2.0","id":1}"#, |e| {
                *e == MessageError::BadResponse
            }),
            (r#"{"jsonrpc":"2.0","result":{}}"#, |e| {
                *e == MessageError::BadResponse
            }),
            (
                r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"m"}}"#,
                |e| *e == MessageError::BadResponse,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":"x","message":"m"}}"#,
                |e| *e == MessageError::BadError,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#,
                |e| matches!(e, MessageError::MissingTarget { .. }),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":3}}"#,
                |e| matches!(e, MessageError::MissingTarget { .. }),
            ),
            (r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#, |e| {
                matches!(e, MessageError::MissingTarget { .. })
            }),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":[1]}}"#,
                |e| matches!(e, MessageError::BadArguments { .. }),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"url":"x"}}"#,
                |e| matches!(e, MessageError::MissingTarget { .. }),
            ),
            // A completion whose `ref` does not say what it completes cannot be decided.
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"argument":{}}}"#,
                |e| *e == MessageError::BadCompletionRef,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete"}"#,
                |e| *e == MessageError::BadCompletionRef,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/tool","name":"t"}}}"#,
                |e| *e == MessageError::BadCompletionRef,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","uri":"p"}}}"#,
                |e| *e == MessageError::BadCompletionRef,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":7}}}"#,
                |e| *e == MessageError::BadCompletionRef,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":"ref/prompt"}}"#,
                |e| *e == MessageError::BadCompletionRef,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"db://t/../secret/{x}"}}}"#,
                |e| matches!(e, MessageError::BadUri(_)),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#,
                |e| matches!(e, MessageError::Json(JsonError::DuplicateKey { .. })),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","n\u0061me":"b"}}"#,
                |e| matches!(e, MessageError::Json(JsonError::DuplicateKey { .. })),
            ),
            (r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#, |e| {
                matches!(e, MessageError::Json(JsonError::DuplicateKey { .. }))
            }),
        ];
        for (input, check) in cases {
            match one(input) {
                Ok(m) => panic!("accepted {input} as {m:?}"),
                Err(e) => assert!(check(&e), "{input}: unexpected error {e:?}"),
            }
        }
    }

    #[test]
    fn arguments_are_read_on_demand_from_the_checked_body() {
        let body = Bytes::from_static(
            br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"q","arguments":{"sql":"SELECT 1","n":[1,2]}}}]"#,
        );
        let Ok(Body::Batch(v)) = parse_body(&body, true, "2025-03-26") else {
            panic!("refused")
        };
        let Target::Tool {
            arguments: Some(args),
            ..
        } = &v[1].target
        else {
            panic!("not a tool call")
        };
        assert_eq!(
            args.pointer(""),
            Some(serde_json::json!({"sql": "SELECT 1", "n": [1, 2]}))
        );
        let m = one(r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p","arguments":{"city":"Paris"}}}"#).unwrap();
        let Target::Prompt {
            arguments: Some(args),
            ..
        } = &m.target
        else {
            panic!("not a prompt")
        };
        assert_eq!(args.pointer(""), Some(serde_json::json!({"city": "Paris"})));
    }

    #[test]
    fn batches_only_where_allowed_and_never_empty() {
        let batch = br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/x"}]"#;
        assert!(matches!(
            parse_body(&Bytes::from_static(batch), false, "2025-06-18"),
            Err(MessageError::BatchNotAllowed {
                revision: "2025-06-18"
            })
        ));
        let Ok(Body::Batch(v)) = parse_body(&Bytes::from_static(batch), true, "2025-03-26") else {
            panic!("batch refused")
        };
        assert_eq!(v.len(), 2);
        assert_eq!(
            parse_body(&Bytes::from_static(b"[]"), true, "2025-03-26"),
            Err(MessageError::EmptyBatch)
        );
        assert!(matches!(
            parse_body(&Bytes::from_static(b"[1]"), true, "2025-03-26"),
            Err(MessageError::NotAnObject)
        ));
        // One id for two requests: the tools/list answer could pass as the ping's.
        let twice = br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":1,"method":"tools/list"}]"#;
        assert_eq!(
            parse_body(&Bytes::from_static(twice), true, "2025-03-26"),
            Err(MessageError::DuplicateId("1".into()))
        );
        let answers =
            br#"[{"jsonrpc":"2.0","id":"a","result":{}},{"jsonrpc":"2.0","id":"a","result":{}}]"#;
        assert!(matches!(
            parse_body(&Bytes::from_static(answers), true, "2025-03-26"),
            Err(MessageError::DuplicateId(_))
        ));
        // A request and an answer to a server request live in different id spaces.
        let mixed =
            br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":1,"result":{}}]"#;
        assert!(parse_body(&Bytes::from_static(mixed), true, "2025-03-26").is_ok());
        // At most MAX_BATCH messages (each was found again by scanning the whole body).
        let long = format!(
            "[{}]",
            vec![r#"{"jsonrpc":"2.0","method":"notifications/x"}"#; MAX_BATCH + 1].join(",")
        );
        assert_eq!(
            parse_body(&Bytes::from(long), true, "2025-03-26"),
            Err(MessageError::BatchTooLong { max: MAX_BATCH })
        );
    }

    /// Each message of a batch keeps its own text: its arguments are read from it alone.
    #[test]
    fn batch_messages_keep_their_own_text() {
        let body = Bytes::from_static(
            br#"[ {"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"n":1}}} ,{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"b","arguments":{"n":2}}}]"#,
        );
        let texts = batch_texts(&body).unwrap();
        assert_eq!(texts.len(), 2);
        assert!(texts[0].starts_with(b"{") && texts[0].ends_with(b"}}}"));
        let Ok(Body::Batch(v)) = parse_body(&body, true, "2025-03-26") else {
            panic!("refused")
        };
        for (m, n) in v.iter().zip([1, 2]) {
            let Target::Tool {
                arguments: Some(args),
                ..
            } = &m.target
            else {
                panic!("not a tool call")
            };
            assert_eq!(args.pointer("/n"), Some(serde_json::json!(n)));
        }
    }
}
