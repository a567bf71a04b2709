//! Gateway-launched MCP servers (`[[servers]]` with a `command`): one child process per agent
//! session, spoken to over stdio (newline-delimited JSON-RPC), served to agents with Streamable
//! HTTP semantics so that identity, policy, credentials, audit and response inspection treat
//! them like any other upstream.
//!
//! The child's environment is `PATH` plus what the config gives it, secrets included: those
//! exist only in the gateway and in that child (whose `/proc/PID/environ` only its own user and
//! root can read). Its arguments are public, which is why they cannot name secrets.
//!
//! Per session: the agent's `initialize` (without `Mcp-Session-Id`) starts a child and names a
//! new session, which only that agent may use; POSTs are written to its stdin as one line each
//! and answered with an SSE stream that carries what the child writes until every request of
//! the POST is answered; messages no POST is waiting for go to the newest open POST stream,
//! else the session's GET stream. DELETE, an idle timeout, an oversized message, a broken
//! write or the gateway draining stops the child: stdin closed, then after two seconds SIGKILL
//! to its whole process group (the MCP stdio transport's order, and whatever it started goes
//! too). The session holds its slot until then.

use std::{
    collections::HashMap,
    ffi::OsStr,
    os::unix::ffi::OsStrExt,
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::{io::AsyncWriteExt, process::ChildStdin, sync::mpsc};
use tokio_util::{
    codec::{FramedRead, LinesCodec, LinesCodecError},
    sync::CancellationToken,
};

use super::{
    Body, BoxError,
    headers::MCP_SESSION_ID,
    launch_cgroup::{self, SessionCgroup},
    lock,
    refusal::Refusal,
};
use crate::{config::launch::Launch, credentials::LaunchEnv, drain::Drain};

/// How long a child gets to exit after its stdin closes before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);
/// Messages buffered per agent stream before the child's output waits for the agent.
const STREAM_BUFFER: usize = 32;
/// How long the child's output waits for an agent stream with a full buffer before that
/// stream is given up (the agent stopped reading it).
const STALL: Duration = Duration::from_secs(5);
/// How long a write to the child's stdin may take: a child that stops reading is broken.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// One launched server: how to start it, and its live sessions.
pub struct Launcher {
    server: String,
    launch: Launch,
    env: LaunchEnv,
    sessions: Mutex<Sessions>,
    drain: Drain,
    max_line: usize,
    /// How long a request may wait for the child's answer.
    response_timeout: Duration,
    /// Told when a child says its tools changed while no agent stream is open to carry the
    /// notification (the response stages see the ones that are carried).
    tools_changed: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>>,
}

/// The live sessions, and slots taken by children being started (so that concurrent
/// `initialize` requests cannot overshoot `max_sessions` or `max_sessions_per_agent`).
#[derive(Default)]
struct Sessions {
    live: HashMap<String, Arc<Child>>,
    /// Owners of the children being started.
    starting: Vec<String>,
}

impl Sessions {
    /// Sessions `owner` holds, started or starting.
    fn held_by(&self, owner: &str) -> usize {
        self.live.values().filter(|c| c.owner == owner).count()
            + self.starting.iter().filter(|o| *o == owner).count()
    }
}

impl std::fmt::Debug for Launcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The environment holds secrets: only its names are shown.
        f.debug_struct("Launcher")
            .field("server", &self.server)
            .field("command", &self.launch.command)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("sessions", &lock(&self.sessions).live.len())
            .finish()
    }
}

/// A session's child process, as the request path sees it.
struct Child {
    session: String,
    /// Who started the session ([`super::policy_stage::principal`]): nobody else may use it.
    owner: String,
    stdin: tokio::sync::Mutex<Option<ChildStdin>>,
    routes: Mutex<Routes>,
    last_active: Mutex<Instant>,
    /// Ends the session (DELETE, a broken write).
    stop: CancellationToken,
    /// The session's processes are gone.
    reaped: CancellationToken,
}

/// Where the child's messages go.
#[derive(Default)]
struct Routes {
    /// Open POST streams, oldest first, with the request ids each still waits for.
    posts: Vec<Waiter>,
    /// The session's GET stream.
    standalone: Option<mpsc::Sender<Bytes>>,
}

struct Waiter {
    ids: Vec<String>,
    tx: mpsc::Sender<Bytes>,
    since: Instant,
}

impl Child {
    fn touch(&self) {
        *lock(&self.last_active) = Instant::now();
    }

    /// Writes one message (a JSON text, on one line) to the child, within [`WRITE_TIMEOUT`].
    /// The write runs on a task of its own: an agent that hangs up mid-request cannot leave
    /// half a line in the pipe. A write that fails or times out may have: the session ends.
    async fn write(self: &Arc<Self>, drain: &Drain, text: Bytes) -> std::io::Result<()> {
        let child = self.clone();
        let task = drain.spawn(async move {
            let result = tokio::time::timeout(WRITE_TIMEOUT, child.write_now(&text))
                .await
                .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()));
            if result.is_err() {
                child.stop.cancel();
            }
            result
        });
        task.await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
    }

    async fn write_now(&self, text: &[u8]) -> std::io::Result<()> {
        let mut stdin = self.stdin.lock().await;
        let pipe = stdin
            .as_mut()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::BrokenPipe))?;
        let mut line = Vec::with_capacity(text.len() + 1);
        // JSON strings cannot hold raw line breaks, so the ones in a body are whitespace
        // between tokens: blanking them keeps the message exact and on one line.
        line.extend(
            text.iter()
                .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
        );
        line.push(b'\n');
        pipe.write_all(&line).await?;
        pipe.flush().await
    }

    /// Where one line from the child goes (`None`: nobody is listening).
    fn route(&self, message: &serde_json::Value) -> Option<mpsc::Sender<Bytes>> {
        let mut routes = lock(&self.routes);
        let is_response = message.get("method").is_none();
        if is_response {
            // Waiters whose agent hung up still hold their ids until the answer comes (or
            // times out): freed any earlier, an id could be reused and the late answer would
            // reach the new request.
            let key = message.get("id")?.to_string();
            let i = routes.posts.iter().position(|w| w.ids.contains(&key))?;
            let waiter = &mut routes.posts[i];
            if let Some(pos) = waiter.ids.iter().position(|k| k == &key) {
                waiter.ids.remove(pos);
            }
            let tx = waiter.tx.clone();
            if waiter.ids.is_empty() {
                // The last answer: once it is sent, the stream ends.
                routes.posts.remove(i);
            }
            return Some(tx).filter(|tx| !tx.is_closed());
        }
        routes
            .posts
            .iter()
            .rev()
            .find(|w| !w.tx.is_closed())
            .map(|w| w.tx.clone())
            .or_else(|| routes.standalone.clone().filter(|t| !t.is_closed()))
    }

    /// Whether a request waits for an answer (an open GET stream alone keeps no session
    /// alive past its idle timeout).
    fn is_busy(&self) -> bool {
        lock(&self.routes).posts.iter().any(|w| !w.tx.is_closed())
    }

    /// Takes every request that has waited longer than `timeout` (all with `None`).
    fn overdue(&self, timeout: Option<Duration>) -> Vec<Waiter> {
        let mut routes = lock(&self.routes);
        let (late, keep) = std::mem::take(&mut routes.posts)
            .into_iter()
            .partition(|w| timeout.is_none_or(|t| w.since.elapsed() >= t));
        routes.posts = keep;
        late
    }
}

impl Launcher {
    pub fn new(
        server: &str,
        launch: Launch,
        env: LaunchEnv,
        drain: Drain,
        limits: &crate::config::Limits,
    ) -> Self {
        Self {
            server: server.to_owned(),
            launch,
            env,
            sessions: Mutex::new(Sessions::default()),
            drain,
            max_line: limits.max_response_bytes,
            response_timeout: limits.upstream_response_timeout,
            tools_changed: std::sync::OnceLock::new(),
        }
    }

    /// What to do when a child says its tools changed and no stream carries the notification
    /// (set once).
    pub fn on_tools_changed(&self, f: impl Fn() + Send + Sync + 'static) {
        let _ = self.tools_changed.set(Box::new(f));
    }

    /// Live sessions (one child each).
    pub fn sessions(&self) -> usize {
        lock(&self.sessions).live.len()
    }

    fn unavailable(&self, detail: impl Into<String>) -> Refusal {
        Refusal::UpstreamUnavailable {
            server: self.server.clone(),
            detail: detail.into(),
        }
    }

    /// One agent request that the stages have passed (the body is a checked JSON-RPC body),
    /// from `owner` ([`super::policy_stage::principal`]).
    pub async fn exchange(
        self: &Arc<Self>,
        owner: String,
        method: &Method,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response<Body>, Refusal> {
        let session = headers.get(&MCP_SESSION_ID).and_then(|v| v.to_str().ok());
        // Another caller's session is as unknown as one that never existed.
        let known = session
            .and_then(|s| lock(&self.sessions).live.get(s).cloned())
            .filter(|c| c.owner == owner && !c.stop.is_cancelled());
        match (method, session, known) {
            (&Method::POST, None, None) => self.post_new(owner, body).await,
            (_, None, _) => Ok(status(StatusCode::BAD_REQUEST)),
            (_, Some(_), None) => Ok(status(StatusCode::NOT_FOUND)),
            (&Method::POST, Some(_), Some(child)) => self.post(&child, body, false).await,
            (&Method::GET, Some(_), Some(child)) => {
                child.touch();
                let (tx, rx) = mpsc::channel(STREAM_BUFFER);
                // A newer stream replaces an older one, whose agent has gone or reconnected.
                lock(&child.routes).standalone = Some(tx);
                Ok(sse(rx, None))
            }
            (&Method::DELETE, Some(_), Some(child)) => {
                // The session keeps its slot until its processes are gone (the supervisor).
                child.stop.cancel();
                Ok(status(StatusCode::OK))
            }
            _ => Ok(status(StatusCode::METHOD_NOT_ALLOWED)),
        }
    }

    /// A POST without a session: only `initialize` may start one (and a child).
    async fn post_new(
        self: &Arc<Self>,
        owner: String,
        body: Bytes,
    ) -> Result<Response<Body>, Refusal> {
        let initialize = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .is_some_and(|v| v.get("method").and_then(|m| m.as_str()) == Some("initialize"));
        if !initialize {
            return Ok(status(StatusCode::BAD_REQUEST));
        }
        let child = self.spawn(owner)?;
        self.post(&child, body, true).await
    }

    async fn post(
        self: &Arc<Self>,
        child: &Arc<Child>,
        body: Bytes,
        new_session: bool,
    ) -> Result<Response<Body>, Refusal> {
        child.touch();
        let messages = match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(serde_json::Value::Array(all)) => all,
            Ok(one) => vec![one],
            Err(e) => return Err(self.unavailable(format!("unreadable message: {e}"))),
        };
        let ids: Vec<String> = messages
            .iter()
            .filter(|m| m.get("method").is_some())
            .filter_map(|m| m.get("id").map(|id| id.to_string()))
            .collect();
        let rx = if ids.is_empty() {
            None
        } else {
            // Registered before writing: a quick answer must find its stream.
            let (tx, rx) = mpsc::channel(STREAM_BUFFER);
            let mut routes = lock(&child.routes);
            // Answers are routed by id: a second request with the id of one still waiting
            // (even one whose agent hung up) would take the other's answer, and a list result
            // could reach the agent as the answer to a call, past the list filter.
            let waiting = |id: &String| routes.posts.iter().any(|w| w.ids.contains(id));
            if let Some(dup) = ids
                .iter()
                .enumerate()
                .find(|(i, id)| ids[..*i].contains(id) || waiting(id))
                .map(|(_, id)| id.clone())
            {
                return Err(Refusal::IdInFlight(dup));
            }
            routes.posts.push(Waiter {
                ids,
                tx,
                since: Instant::now(),
            });
            drop(routes);
            Some(rx)
        };
        if let Err(e) = child.write(&self.drain, body).await {
            return Err(self.unavailable(format!("the server process is gone ({e})")));
        }
        let session = new_session.then_some(child.session.as_str());
        Ok(match rx {
            None => status(StatusCode::ACCEPTED),
            Some(rx) => sse(rx, session),
        })
    }

    fn spawn(self: &Arc<Self>, owner: String) -> Result<Arc<Child>, Refusal> {
        if self.drain.is_draining() {
            return Err(Refusal::Draining);
        }
        {
            let mut sessions = lock(&self.sessions);
            if sessions.live.len() + sessions.starting.len() >= self.launch.max_sessions {
                return Err(self.unavailable(format!(
                    "it already runs max_sessions = {} sessions; end one (DELETE) or let an idle one stop",
                    self.launch.max_sessions
                )));
            }
            if sessions.held_by(&owner) >= self.launch.max_sessions_per_agent {
                return Err(self.unavailable(format!(
                    "you already hold max_sessions_per_agent = {} of its sessions; end one (DELETE) or let an idle one stop",
                    self.launch.max_sessions_per_agent
                )));
            }
            sessions.starting.push(owner.clone());
        }
        let started = self.start(owner.clone());
        let mut sessions = lock(&self.sessions);
        if let Some(i) = sessions.starting.iter().position(|o| *o == owner) {
            sessions.starting.swap_remove(i);
        }
        let child = started?;
        sessions.live.insert(child.session.clone(), child.clone());
        Ok(child)
    }

    /// Starts a child process and its supervisor (the caller holds a slot for it).
    fn start(self: &Arc<Self>, owner: String) -> Result<Arc<Child>, Refusal> {
        let mut command = tokio::process::Command::new(&self.launch.command);
        command
            .args(&self.launch.args)
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a terminal's Ctrl-C reaches the gateway, which decides
            // when the child stops.
            .process_group(0)
            .kill_on_drop(true);
        for (key, value) in &self.env {
            command.env(key, OsStr::from_bytes(value));
        }
        if let Some(dir) = &self.launch.cwd {
            command.current_dir(dir);
        }
        if let Some(user) = &self.launch.user {
            command.uid(user.uid).gid(user.gid);
        }
        keep_only_stdio(&mut command);
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|e| self.unavailable(e.to_string()))?;
        let session: String = id.iter().map(|b| format!("{b:02x}")).collect();
        // Whatever the server starts, even what leaves its process group, goes with it.
        let cgroup = SessionCgroup::create(&session);
        if let Some(cgroup) = &cgroup {
            launch_cgroup::enter_at_exec(&mut command, cgroup);
        }
        let mut process = match command.spawn() {
            Ok(p) => p,
            Err(e) => {
                if let Some(cgroup) = cgroup {
                    cgroup.discard();
                }
                return Err(self.unavailable(format!(
                    "cannot start {}: {e}",
                    self.launch.command.display()
                )));
            }
        };
        // The command's copy of the environment goes with it.
        drop(command);
        let cgroup = cgroup.and_then(|c| c.holds(process.id()));
        let (Some(stdin), Some(stdout), Some(stderr)) = (
            process.stdin.take(),
            process.stdout.take(),
            process.stderr.take(),
        ) else {
            // Not supervised: its group and cgroup go now.
            drop(GroupGuard {
                pgid: process.id(),
                cgroup,
            });
            return Err(self.unavailable("no pipes to the server process"));
        };
        let child = Arc::new(Child {
            session,
            owner,
            stdin: tokio::sync::Mutex::new(Some(stdin)),
            routes: Mutex::new(Routes::default()),
            last_active: Mutex::new(Instant::now()),
            stop: CancellationToken::new(),
            reaped: CancellationToken::new(),
        });
        tracing::debug!(server = %self.server, pid = process.id(), "Launched a server process for a new session.");
        let launcher = self.clone();
        let reaped = child.reaped.clone();
        self.drain.spawn(async move {
            // Until EOF, or until the session's processes are gone (one that left the group
            // may hold stderr open).
            tokio::select! {
                () = read_stderr(stderr, |line| {
                    // Debug only, and without the secrets it was given: a server may print
                    // what it was configured with.
                    let line = launcher.redact(line);
                    tracing::debug!(server = %launcher.server, %line, "Server process stderr.");
                }) => {}
                () = reaped.cancelled() => {}
            }
        });
        self.drain.spawn(
            self.clone()
                .supervise(child.clone(), process, stdout, cgroup),
        );
        Ok(child)
    }

    /// Reads the child's messages and routes them until the child exits, its session ends, it
    /// idles out, or the gateway drains; then stops it.
    async fn supervise(
        self: Arc<Self>,
        child: Arc<Child>,
        mut process: tokio::process::Child,
        stdout: tokio::process::ChildStdout,
        cgroup: Option<SessionCgroup>,
    ) {
        // Should this task be dropped (the drain deadline passed), the group still goes.
        let mut group = GroupGuard {
            pgid: process.id(),
            cgroup,
        };
        let mut lines = FramedRead::new(stdout, LinesCodec::new_with_max_length(self.max_line));
        let draining = self.drain.token();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let why = loop {
            tokio::select! {
                line = lines.next() => match line {
                    Some(Ok(text)) => self.deliver(&child, text).await,
                    Some(Err(LinesCodecError::MaxLineLengthExceeded)) => {
                        // Whatever request it answered would wait forever: end the session.
                        tracing::warn!(server = %self.server, max = self.max_line, "A server process wrote a message over the size limit.");
                        break format!("it wrote a message over {} bytes", self.max_line);
                    }
                    Some(Err(LinesCodecError::Io(e))) => break format!("its output failed: {e}"),
                    None => break "it closed its output".to_owned(),
                },
                () = child.stop.cancelled() => break "its session ended".to_owned(),
                _ = tick.tick() => {
                    for waiter in child.overdue(Some(self.response_timeout)) {
                        self.fail(waiter, "did not answer in time (limits.upstream_response_timeout)");
                    }
                    let busy = child.is_busy();
                    if draining.is_cancelled() && !busy {
                        break "the gateway is stopping".to_owned();
                    }
                    if !busy && lock(&child.last_active).elapsed() >= self.launch.idle_timeout {
                        break "it was idle".to_owned();
                    }
                }
            }
        };
        // No new request reaches it; its slot stays taken until its processes are gone.
        child.stop.cancel();
        // Requests still waiting get an error rather than a stream that just ends.
        for waiter in child.overdue(None) {
            self.fail(waiter, &format!("stopped before answering: {why}"));
        }
        lock(&child.routes).standalone = None;
        // Closing stdin is the stdio transport's way to ask a server to exit. Only the lock's
        // holder may close it: one stuck writing gives up within WRITE_TIMEOUT.
        if let Ok(mut stdin) = tokio::time::timeout(WRITE_TIMEOUT, child.stdin.lock()).await {
            stdin.take();
        }
        let status = match tokio::time::timeout(EXIT_GRACE, process.wait()).await {
            Ok(status) => status,
            Err(_) => {
                // Before reaping the leader: its pid still names the group.
                group.kill();
                let _ = process.start_kill();
                process.wait().await
            }
        };
        // Whatever it started (npx, a shell, ...) goes with it: its process group, and its
        // cgroup (what left the group too), which is gone once its processes are.
        group.kill();
        if let Some(cgroup) = group.cgroup.take() {
            cgroup.remove().await;
        }
        child.reaped.cancel();
        {
            let mut sessions = lock(&self.sessions);
            if sessions
                .live
                .get(&child.session)
                .is_some_and(|c| Arc::ptr_eq(c, &child))
            {
                sessions.live.remove(&child.session);
            }
        }
        tracing::debug!(server = %self.server, %why, ?status, "A launched server process stopped.");
    }

    /// Answers a waiting request's unanswered ids with an error and ends its stream, without
    /// waiting for an agent that stopped reading.
    fn fail(&self, waiter: Waiter, what: &str) {
        for id in waiter.ids {
            let error = serde_json::json!({
                "jsonrpc": "2.0",
                "id": serde_json::from_str::<serde_json::Value>(&id).unwrap_or_default(),
                "error": { "code": -32603, "message": format!("server {} {what}", self.server) },
            });
            let _ = waiter.tx.try_send(Bytes::from(error.to_string()));
        }
    }

    /// `line` with every secret value of the child's environment blanked out.
    fn redact(&self, mut line: String) -> String {
        for (_, value) in &self.env {
            if let Ok(secret) = std::str::from_utf8(value)
                && secret.len() >= 4
                && line.contains(secret)
            {
                line = line.replace(secret, "[redacted]");
            }
        }
        line
    }

    /// Passes one line from the child to whoever waits for it.
    async fn deliver(&self, child: &Arc<Child>, text: String) {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&text) else {
            // Relayed as is, the agent-facing stream's strict parse would cut it: dropped here.
            tracing::warn!(server = %self.server, "Dropped a line from a server process that is not JSON.");
            return;
        };
        // JSON strings cannot hold a raw CR, so one in the line is whitespace; SSE would take
        // it for a line break.
        let text = if text.contains('\r') {
            text.replace('\r', " ")
        } else {
            text
        };
        match child.route(&message) {
            Some(tx) => {
                // An agent that went away is no error: the message has nowhere to go. One that
                // stopped reading loses this stream, not the whole session.
                tokio::select! {
                    _ = tx.send(Bytes::from(text)) => {}
                    () = tokio::time::sleep(STALL) => {
                        tracing::debug!(server = %self.server, "Gave up an agent stream that stopped reading.");
                        // Lost with the stream, but it still says the tools changed.
                        if message.get("method").and_then(|m| m.as_str())
                            == Some("notifications/tools/list_changed")
                            && let Some(f) = self.tools_changed.get()
                        {
                            f();
                        }
                        let mut routes = lock(&child.routes);
                        // Its waiters keep their ids (see `route`) but no longer a stream.
                        for w in routes.posts.iter_mut().filter(|w| w.tx.same_channel(&tx)) {
                            w.tx = mpsc::channel(1).0;
                        }
                        if routes.standalone.as_ref().is_some_and(|s| s.same_channel(&tx)) {
                            routes.standalone = None;
                        }
                    }
                }
            }
            None => match (message.get("method"), message.get("id")) {
                (Some(_), Some(id)) => {
                    // A server->client request no stream can carry: answer it, so the server
                    // does not wait forever.
                    let error = serde_json::json!({
                        "jsonrpc": "2.0",
                        "id": id,
                        "error": { "code": -32603, "message": "no client stream is open to carry this request" },
                    });
                    // From a task of its own: a request's writer may hold stdin while the child
                    // waits for this loop to read its output.
                    let (child, drain) = (child.clone(), self.drain.clone());
                    self.drain.spawn(async move {
                        let _ = child.write(&drain, Bytes::from(error.to_string())).await;
                    });
                }
                (Some(method), None) if method == "notifications/tools/list_changed" => {
                    // Dropped for want of a stream, but it still says the tools changed.
                    if let Some(f) = self.tools_changed.get() {
                        f();
                    }
                }
                _ => {
                    tracing::debug!(server = %self.server, "Dropped a server message no stream was open for.")
                }
            },
        }
    }
}

/// Kills a session's process group and cgroup when asked, and when dropped (the cgroup is then
/// removed from a thread of its own).
struct GroupGuard {
    pgid: Option<u32>,
    cgroup: Option<SessionCgroup>,
}

impl GroupGuard {
    /// Kills the group (once), and what is in the cgroup.
    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            kill_group(pgid);
        }
        if let Some(cgroup) = &self.cgroup {
            cgroup.kill();
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
        if let Some(cgroup) = self.cgroup.take() {
            cgroup.remove_in_background();
        }
    }
}

/// Makes every descriptor above stderr close at exec. The gateway opens its own with
/// CLOEXEC, but one it inherited without (a service manager's socket, a parent's leaked file)
/// would otherwise pass to every server it launches.
#[allow(unsafe_code)]
fn keep_only_stdio(command: &mut tokio::process::Command) {
    // SAFETY: the closure runs between fork and exec, where only async-signal-safe calls are
    // allowed: close_range is a plain system call on integers. It marks descriptors CLOEXEC
    // rather than closing them, so std's own exec-error pipe (CLOEXEC already) keeps working.
    // On a kernel without close_range (before 5.11) it fails, and nothing changes.
    unsafe {
        command.pre_exec(|| {
            libc::close_range(
                3,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC as libc::c_int,
            );
            Ok(())
        });
    }
}

/// SIGKILLs a process group (a launched server and whatever it started).
#[allow(unsafe_code)]
fn kill_group(pgid: u32) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    // SAFETY: killpg takes plain integers and touches no memory of ours. The group id is the
    // launched child's pid, reserved while any member of its group lives; once none is left
    // the call fails with ESRCH, unless in the microseconds since the leader was reaped a new
    // process took that pid and made itself a group leader.
    unsafe {
        libc::killpg(pgid, libc::SIGKILL);
    }
}

fn status(code: StatusCode) -> Response<Body> {
    let mut r = Response::new(super::refusal::empty());
    *r.status_mut() = code;
    r
}

/// An SSE response carrying the child's messages from `rx`, one event each.
fn sse(rx: mpsc::Receiver<Bytes>, new_session: Option<&str>) -> Response<Body> {
    let events = futures_util::stream::unfold(rx, |mut rx| async move {
        let message = rx.recv().await?;
        let mut event = BytesMut::with_capacity(message.len() + 8);
        event.extend_from_slice(b"data: ");
        event.extend_from_slice(&message);
        event.extend_from_slice(b"\n\n");
        Some((Ok::<_, BoxError>(Frame::data(event.freeze())), rx))
    });
    let mut r = Response::new(StreamBody::new(events).boxed_unsync());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    if let Some(session) = new_session.and_then(|s| HeaderValue::from_str(s).ok()) {
        r.headers_mut().insert(MCP_SESSION_ID.clone(), session);
    }
    r
}

/// The most of one stderr line that is logged; the rest of a longer line is dropped.
const MAX_STDERR_LINE: usize = 4096;

/// Hands each line the child writes to stderr to `log`, cut to [`MAX_STDERR_LINE`] bytes and
/// read as UTF-8 leniently, until EOF or a read error. Reading never stops early: a child whose
/// stderr pipe closed would fail its next write (Go exits, Rust panics, Python raises).
async fn read_stderr(stderr: impl tokio::io::AsyncRead + Unpin, mut log: impl FnMut(String)) {
    use tokio::io::AsyncBufReadExt;
    let mut reader = tokio::io::BufReader::new(stderr);
    let mut line = Vec::new();
    let mut cut = false;
    loop {
        let (used, ended) = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(buf) => {
                let (used, ended) = match memchr::memchr(b'\n', buf) {
                    Some(at) => (at + 1, true),
                    None => (buf.len(), false),
                };
                let text = buf[..used].strip_suffix(b"\n").unwrap_or(&buf[..used]);
                let room = MAX_STDERR_LINE - line.len();
                cut |= text.len() > room;
                line.extend_from_slice(&text[..text.len().min(room)]);
                (used, ended)
            }
        };
        reader.consume(used);
        if ended {
            log(stderr_line(&line, cut));
            line.clear();
            cut = false;
        }
    }
    if !line.is_empty() {
        log(stderr_line(&line, cut));
    }
}

fn stderr_line(bytes: &[u8], cut: bool) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.strip_suffix('\r').unwrap_or(&text);
    if cut {
        format!("{text}... [cut at {MAX_STDERR_LINE} bytes]")
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stderr_lines_are_cut_and_read_leniently_and_reading_goes_on() {
        let long = "x".repeat(3 * MAX_STDERR_LINE);
        let mut input = format!("first\r\n{long}\n").into_bytes();
        input.extend_from_slice(b"bad \xff\xfe bytes\n\nlast without newline");
        // A reader that hands out 7 bytes at a time: lines and cuts span reads.
        let (mut tx, rx) = tokio::io::duplex(7);
        let writer = tokio::spawn(async move {
            tx.write_all(&input).await.unwrap();
        });
        let mut lines = Vec::new();
        read_stderr(rx, |line| lines.push(line)).await;
        writer.await.unwrap();
        assert_eq!(lines.len(), 5, "{lines:?}");
        assert_eq!(lines[0], "first");
        assert_eq!(
            lines[1],
            format!("{}... [cut at 4096 bytes]", "x".repeat(MAX_STDERR_LINE))
        );
        assert_eq!(lines[2], "bad \u{fffd}\u{fffd} bytes");
        assert_eq!(lines[3], "");
        assert_eq!(lines[4], "last without newline");
    }
}
