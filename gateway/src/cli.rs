//! The command line: `agentgate run`, `check-config`, `exec`, `status`, `policy`, `audit`,
//! `token`, `version`.

mod audit;
mod ca;
mod policy;
mod token;

use std::{path::PathBuf, sync::Arc};

use clap::{Parser, Subcommand};

use crate::{
    EXIT_BAD_CONFIG, EXIT_UNAVAILABLE,
    config::{Config, ConfigError, InterceptionMode},
    drain::Drain,
    interception,
    metrics::Metrics,
    proxy::{self, Bound, Gateway, stages::Stages},
    signal, telemetry,
};

/// MCP security gateway: identity, authorization, credential isolation and audit for the tool
/// calls of AI agents.
#[derive(Debug, Parser)]
#[command(name = "agentgate", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway until SIGTERM or SIGINT (a second SIGINT exits without draining,
    /// within about 3 s: at most 2 for the audit log's last record).
    Run {
        /// Configuration file. Without it, the embedded default (agentgate.example.toml) is used.
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Validate a configuration file and exit: 0 when valid, 64 when not.
    CheckConfig {
        /// Configuration file to check.
        file: PathBuf,
    },
    /// Run a program inside an agent's cgroup, so that its connections to MCP servers are
    /// intercepted and attributed to that agent. The gateway must be running with
    /// interception.mode = "ebpf" (it creates the cgroups).
    Exec {
        /// The agent (its cgroup is `<interception.cgroup>/<NAME>`).
        #[arg(long, value_name = "NAME")]
        agent: String,
        /// Configuration file the gateway runs with (for the cgroup subtree).
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The program and its arguments.
        #[arg(last = true, required = true, value_name = "CMD")]
        command: Vec<std::ffi::OsString>,
    },
    /// List the live intercepted connections and who made them (from the admin API).
    Status {
        /// Configuration file the gateway runs with (for the admin address).
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Verify, query, follow and export the audit log; print a signing key's public key.
    Audit {
        #[command(subcommand)]
        action: audit::Action,
    },
    /// Explain decisions, accept changed tool definitions, reload the policy.
    Policy {
        #[command(subcommand)]
        action: policy::Action,
    },
    /// Issue, revoke and publish the gateway's short-lived agent tokens.
    Token {
        #[command(subcommand)]
        action: token::Action,
    },
    /// Create the host CA that intercepted HTTPS is terminated with, and install it.
    Ca {
        #[command(subcommand)]
        action: ca::Action,
    },
    /// Print the version and exit.
    Version,
}

fn load(config: Option<&std::path::Path>) -> Result<Config, ConfigError> {
    match config {
        Some(path) => Config::load(path),
        None => Config::embedded_default(),
    }
}

/// Entry point; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("agentgate {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(config) => {
                println!("{}: ok ({} servers)", file.display(), config.servers.len());
                0
            }
            Err(e) => bad_config(&e),
        },
        Command::Run { config } => match load(config.as_deref()) {
            Ok(config) => run(config),
            Err(e) => bad_config(&e),
        },
        Command::Exec {
            agent,
            config,
            command,
        } => match load(config.as_deref()) {
            Ok(config) => exec(&config, &agent, &command),
            Err(e) => bad_config(&e),
        },
        Command::Status { config, json } => match load(config.as_deref()) {
            Ok(config) => status(&config, json),
            Err(e) => bad_config(&e),
        },
        Command::Policy { action } => policy::main(action),
        Command::Audit { action } => audit::main(action),
        Command::Token { action } => token::main(action),
        Command::Ca { action } => ca::main(action),
    }
}

/// One request to the admin API: (status, body).
fn admin_request(
    admin: std::net::SocketAddr,
    method: &str,
    path: &str,
) -> std::io::Result<(u16, Vec<u8>)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(admin)?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))?;
    s.write_all(
        format!("{method} {path} HTTP/1.0\r\nHost: {admin}\r\nContent-Length: 0\r\n\r\n")
            .as_bytes(),
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let status = raw
        .get(9..12)
        .and_then(|c| std::str::from_utf8(c).ok())
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(Vec::new(), |i| raw[i + 4..].to_vec());
    Ok((status, body))
}

/// Joins the agent's cgroup, then replaces this process with `command`.
fn exec(config: &Config, agent: &str, command: &[std::ffi::OsString]) -> i32 {
    use std::os::unix::process::CommandExt;
    let Some(mount) = crate::ebpf::cgroup2_mount() else {
        eprintln!("agentgate exec: no cgroup2 file system is mounted");
        return EXIT_UNAVAILABLE;
    };
    let cgroup = mount.join(&config.interception.cgroup).join(agent);
    if !cgroup.is_dir() {
        eprintln!(
            "agentgate exec: {} does not exist: is the gateway running with interception.mode = \"ebpf\" and agent {agent:?} in [[agents]]?",
            cgroup.display()
        );
        return EXIT_UNAVAILABLE;
    }
    // The process must join before it creates any socket: programs see sockets created inside.
    if let Err(e) = std::fs::write(cgroup.join("cgroup.procs"), std::process::id().to_string()) {
        eprintln!("agentgate exec: cannot join {}: {e}", cgroup.display());
        return EXIT_UNAVAILABLE;
    }
    let Some((program, args)) = command.split_first() else {
        return EXIT_BAD_CONFIG;
    };
    let error = std::process::Command::new(program).args(args).exec();
    eprintln!(
        "agentgate exec: cannot run {}: {error}",
        program.to_string_lossy()
    );
    127
}

/// Prints the live intercepted connections from the admin API.
fn status(config: &Config, json: bool) -> i32 {
    let Some(admin) = config.admin.address else {
        eprintln!("agentgate status: the admin listener is disabled in this configuration");
        return EXIT_BAD_CONFIG;
    };
    let body = match admin_request(admin, "GET", "/connections") {
        Ok((200, body)) => body,
        Ok((status, body)) => {
            eprintln!(
                "agentgate status: the admin API at {admin} refused ({status}): {}",
                String::from_utf8_lossy(&body).trim()
            );
            return EXIT_UNAVAILABLE;
        }
        Err(e) => {
            eprintln!("agentgate status: cannot reach the admin API at {admin}: {e}");
            return EXIT_UNAVAILABLE;
        }
    };
    let Ok(list) = serde_json::from_slice::<Vec<serde_json::Value>>(&body) else {
        eprintln!("agentgate status: unexpected answer from {admin}");
        return EXIT_UNAVAILABLE;
    };
    if json {
        println!("{}", serde_json::Value::Array(list));
        return 0;
    }
    println!(
        "{:<16} {:>8} {:>6} {:<12} {:<22} EXECUTABLE",
        "AGENT", "PID", "UID", "SERVER", "PEER"
    );
    for c in &list {
        let id = &c["identity"];
        println!(
            "{:<16} {:>8} {:>6} {:<12} {:<22} {}",
            id["agent"].as_str().unwrap_or("-"),
            id["tgid"].to_string(),
            id["uid"].to_string(),
            c["server"].as_str().unwrap_or("-"),
            c["peer"].as_str().unwrap_or("-"),
            id["exe"].as_str().unwrap_or("-"),
        );
    }
    0
}

fn bad_config(e: &ConfigError) -> i32 {
    eprintln!("agentgate: invalid configuration: {e}");
    EXIT_BAD_CONFIG
}

fn run(config: Config) -> i32 {
    telemetry::init(&config.logging);
    // As tokio resolves its default: TOKIO_WORKER_THREADS, else the CPUs the process may use.
    let workers = config.runtime.worker_threads.or_else(|| {
        std::env::var("TOKIO_WORKER_THREADS")
            .ok()
            .and_then(|n| n.trim().parse().ok())
            .filter(|&n: &usize| n > 0)
            .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
    });
    // One worker: the current-thread scheduler runs the same tasks on the main thread without
    // the work-stealing scheduler's cross-thread queues and wake-ups, which cost about a tenth of
    // the CPU per proxied request when there is no second thread to hand work to.
    let mut builder = if workers == Some(1) {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if let Some(n) = workers {
            builder.worker_threads(n);
        }
        builder
    };
    builder.enable_all();
    let runtime = match builder.build() {
        Ok(r) => r,
        Err(error) => {
            tracing::error!(%error, "Cannot start the async runtime.");
            return EXIT_UNAVAILABLE;
        }
    };
    let code = runtime.block_on(async move {
        // Before "ready": a signal sent once the gateway says it is ready must be handled.
        let signals = signal::Signals::install()
            .map_err(|error| tracing::error!(%error, "Cannot listen for SIGTERM/SIGINT."))
            .ok();
        match start(config).await {
            Ok(running) => running.wait_for_shutdown(signals).await,
            Err(e) => {
                tracing::error!(error = %e, "agentgate could not start.");
                e.exit_code()
            }
        }
    });
    // Blocking work still running (a DNS lookup, a large audit export) is not waited for:
    // every task that holds data has drained by now.
    let stopping = std::time::Instant::now();
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_WAIT);
    // Dropping the runtime dropped any launched session still running (a passed drain
    // deadline, a second interrupt): their processes are killed, their cgroups go on threads.
    // Within the same second, so that a second interrupt still exits within about 3 s.
    proxy::wait_for_launched_removals(RUNTIME_SHUTDOWN_WAIT.saturating_sub(stopping.elapsed()));
    code
}

/// How long the runtime's leftover blocking work may delay the exit.
const RUNTIME_SHUTDOWN_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
/// How long a second interrupt waits for the audit log's final record.
const SECOND_INTERRUPT_AUDIT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Upstream(#[from] proxy::UpstreamError),
    #[error("tool pins: {0}")]
    Pins(#[from] crate::policy::pins::PinError),
    #[error(transparent)]
    Audit(#[from] crate::audit::recorder::OpenError),
    #[error(transparent)]
    Secret(#[from] crate::credentials::SecretError),
    #[error(transparent)]
    Tokens(#[from] crate::tokens::TokenError),
    #[error("listener.tls: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("interception.https needs the host CA: {0}")]
    HostCa(crate::tls::TlsError),
    #[error("the audit log cannot record the start: {0}")]
    AuditStart(#[from] crate::audit::writer::AuditError),
}

impl StartError {
    pub fn exit_code(&self) -> i32 {
        match self {
            StartError::Bind { .. }
            | StartError::Audit(_)
            | StartError::AuditStart(_)
            | StartError::Secret(_)
            | StartError::HostCa(_)
            | StartError::Tokens(_) => EXIT_UNAVAILABLE,
            StartError::Upstream(_) | StartError::Pins(_) | StartError::Tls(_) => EXIT_BAD_CONFIG,
        }
    }
}

/// A started gateway.
#[derive(Debug)]
pub struct Running {
    pub bound: Bound,
    pub gateway: Arc<Gateway>,
}

/// Binds the listeners and spawns the serving tasks.
pub async fn start(config: Config) -> Result<Running, StartError> {
    start_with(config, |stages| stages).await
}

/// [`start`] with the stages adjusted (tests, embedding): `stages` gets the daemon's stages
/// (policy included) and returns the ones to run.
pub async fn start_with(
    config: Config,
    stages: impl FnOnce(Stages) -> Stages,
) -> Result<Running, StartError> {
    let config = Arc::new(config);
    // Before any outbound client is built (token issuers' JWKS, OTLP, upstreams).
    crate::proxy::upstream::distrust_host_ca(&config);
    let drain = Drain::new();
    let metrics = Arc::new(Metrics::new());
    let engine = Arc::new(crate::policy::Engine::new(&config)?);
    let mut daemon_stages = Stages::with_policy(engine.clone(), metrics.clone());
    let injector = crate::credentials::Injector::new(&config)?;
    if !injector.is_empty() {
        tracing::info!(servers = ?injector, "Upstream credentials loaded.");
    }
    daemon_stages.credentials = Arc::new(injector);
    let stages = stages(daemon_stages);
    let secrets = Arc::new(crate::credentials::Scrubber::new(&config)?);
    let audit = if config.audit.enabled {
        let recorder = crate::audit::Recorder::open(&config.audit)?.with_secrets(secrets.clone());
        let found = recorder.found();
        if found.unsigned > 0 {
            tracing::warn!(
                unsigned = found.unsigned,
                from = found.unsigned_from,
                "The audit log ends in entries no checkpoint signed (a crash, or an edit while the gateway was down); the next checkpoint signs them, and the start record says how many."
            );
        }
        let mut r = crate::audit::Record::new(crate::audit::Event::GatewayStart);
        r.detail = Some(serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "config": config.source.as_ref().map(|p| p.display().to_string()),
            "policy_rules": config.policy.rules.len(),
            "fail_closed": config.audit.fail_closed,
            // Adopted at start: signed from here on, but not by whoever wrote them.
            "unsigned_at_start": found.unsigned,
            "unsigned_from": found.unsigned_from,
            "torn_bytes_cut": found.torn_bytes,
        }));
        recorder.append(r).await?;
        tracing::info!(dir = %config.audit.dir.display(), public_key = recorder.public_key(), fail_closed = config.audit.fail_closed, "Audit log open.");
        Some(Arc::new(recorder))
    } else {
        tracing::warn!("Audit is disabled (audit.enabled = false): nothing is recorded.");
        None
    };
    let tokens = if config.tokens.enabled {
        let mut service = crate::tokens::TokenService::open(&config.tokens)?;
        if let Some(name) = &config.tokens.admin_secret
            && let Some(spec) = config.secrets.iter().find(|s| &s.name == name)
        {
            service = service.with_admin(crate::credentials::Secret::read(spec)?)?;
        }
        Some(Arc::new(service))
    } else {
        None
    };
    let launch_env = crate::credentials::launch_env(&config)?;
    if config.servers.iter().any(|s| s.launch.is_some()) {
        let swept = proxy::sweep_launched().await;
        if swept > 0 {
            tracing::warn!(
                sessions = swept,
                "Killed launched servers a gateway that is gone left running."
            );
        }
    }
    let agent_tls = crate::tls::listener::AgentTls::load(&config)?;
    let https =
        crate::tls::intercept::HttpsInterception::load(&config).map_err(StartError::HostCa)?;
    let gateway = Arc::new(Gateway::new(
        config.clone(),
        stages,
        metrics.clone(),
        drain.clone(),
        proxy::Services {
            policy: engine,
            audit,
            tokens,
            launch_env,
            agent_tls,
            https,
            secrets,
        },
    )?);
    let address = config.listener.address;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| StartError::Bind { address, source })?;
    let proxy_addr = listener
        .local_addr()
        .map_err(|source| StartError::Bind { address, source })?;
    let admin_addr = match config.admin.address {
        Some(address) => {
            let admin = crate::admin::bind(address)
                .await
                .map_err(|source| StartError::Bind { address, source })?;
            let bound = admin
                .local_addr()
                .map_err(|source| StartError::Bind { address, source })?;
            drain.spawn(crate::admin::serve(admin, gateway.clone(), drain.clone()));
            Some(bound)
        }
        None => None,
    };
    drain.spawn(proxy::serve(listener, gateway.clone()));
    if let (Some(audit), Some(otlp)) = (&gateway.audit, &config.audit.otlp) {
        let exporter = Arc::new(crate::audit::otlp::Exporter::new(
            otlp.clone(),
            config.audit.dir.clone(),
            audit.durable_mark(),
            metrics.otlp_skipped.clone(),
        )?);
        tracing::info!(endpoint = %otlp.endpoint, "Shipping audit records to an OTLP collector.");
        drain.spawn(exporter.run(drain.clone()));
    }
    if gateway.audit.is_some()
        && let Some(tokens) = &gateway.tokens
    {
        let watch = crate::tokens::RevocationWatch::new(&tokens.config().revoked_file);
        drain.spawn(audit_revocations(gateway.clone(), watch));
    }
    // Installed here, not in the task: SIGHUP's default action would kill the process.
    match signal::hangups() {
        Ok(hangups) => {
            drain.spawn(reload_on_hangup(gateway.clone(), hangups));
        }
        Err(error) => {
            tracing::warn!(%error, "Cannot listen for SIGHUP; reload through the admin API.")
        }
    }
    if config.interception.mode == InterceptionMode::Ebpf
        && let Err(error) = interception::start(&gateway).await
    {
        tracing::error!(%error, "Transparent interception is unavailable; explicit mode keeps working.");
    }
    if !config.listener.address.ip().is_loopback()
        && config.listener.tls.is_none()
        && !config.tokens.require
    {
        tracing::warn!(listen = %proxy_addr, "The explicit listener is reachable beyond this host over plain HTTP without required tokens: anyone who reaches it is agent \"unknown\", with every rule that names no agent and every credential those rules let through. Set [listener.tls], tokens.require, or a loopback address.");
    }
    if let Some(admin) = admin_addr
        && !admin.ip().is_loopback()
    {
        tracing::warn!(admin = %admin, "The admin listener is reachable beyond this host over plain HTTP: its /metrics is open to all, and the admin secret of POST /tokens crosses the network in clear. Keep it on loopback.");
    }
    for server in &config.servers {
        tracing::info!(server = %server.name, url = %crate::config::loggable_url(&server.url), transport = %server.transport, "Upstream configured.");
    }
    let runtime = tokio::runtime::Handle::current();
    tracing::info!(
        listen = %proxy_addr,
        admin = ?admin_addr,
        servers = config.servers.len(),
        scheduler = ?runtime.runtime_flavor(),
        workers = runtime.metrics().num_workers(),
        "agentgate is ready."
    );
    Ok(Running {
        bound: Bound {
            proxy: proxy_addr,
            admin: admin_addr,
        },
        gateway,
    })
}

/// Records every change to the token revocation list, whoever makes it (`agentgate token
/// revoke`, an edit of the file), looked for every second as the list itself is re-read, and
/// once more when draining starts.
async fn audit_revocations(gateway: Arc<Gateway>, mut watch: crate::tokens::RevocationWatch) {
    let mut ticks = tokio::time::interval(std::time::Duration::from_secs(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let last = tokio::select! {
            _ = gateway.drain.signaled() => true,
            _ = ticks.tick() => false,
        };
        let changes = match tokio::task::spawn_blocking(move || {
            let changes = watch.poll();
            (watch, changes)
        })
        .await
        {
            Ok((w, changes)) => {
                watch = w;
                changes.unwrap_or_default()
            }
            Err(error) => {
                tracing::error!(%error, "Watching the token revocation list failed: its changes are no longer audited.");
                return;
            }
        };
        for (withdrawn, list) in [(false, changes.revoked), (true, changes.withdrawn)] {
            for (jti, exp) in list {
                if withdrawn {
                    tracing::warn!(%jti, "A token revocation was taken back (the revocation list was edited): the token is accepted again.");
                }
                // Named as requests made with the gateway's own tokens name their subject.
                let mut r = crate::audit::Record::new(crate::audit::Event::TokenRevoked);
                r.subject = Some(format!("token:{jti}"));
                r.detail =
                    Some(serde_json::json!({ "jti": jti, "exp": exp, "withdrawn": withdrawn }));
                gateway.record(r);
            }
        }
        if last {
            return;
        }
    }
}

/// Reloads the policy on each SIGHUP until draining starts.
async fn reload_on_hangup(gateway: Arc<Gateway>, mut hangups: tokio::signal::unix::Signal) {
    loop {
        tokio::select! {
            _ = gateway.drain.signaled() => return,
            got = hangups.recv() => match got {
                Some(()) => {
                    // Off the runtime's threads: a reload reads files, and waits for one
                    // the admin API may have under way.
                    let gateway = gateway.clone();
                    let _ = tokio::task::spawn_blocking(move || gateway.reload_policy()).await;
                }
                None => return,
            },
        }
    }
}

impl Running {
    /// Waits for a shutdown signal on `signals` (installed before [`start`]), then drains.
    /// Returns the exit code.
    pub async fn wait_for_shutdown(self, signals: Option<signal::Signals>) -> i32 {
        let Some(mut signals) = signals else {
            tracing::error!(
                "Without signal handlers there is no way to stop cleanly; shutting down."
            );
            // It never served: a supervisor must see a failure, not a clean stop.
            self.shutdown().await;
            return EXIT_UNAVAILABLE;
        };
        let which = signals.shutdown().await;
        tracing::info!(signal = ?which, "Shutting down: draining in-flight requests.");
        let grace = self.gateway.config.limits.shutdown_grace;
        let code = tokio::select! {
            finished = self.gateway.drain.drain(grace) => {
                if finished {
                    tracing::info!("Drained; bye.");
                    0
                } else {
                    tracing::warn!(grace_s = grace.as_secs_f64(), "Drain deadline passed; exiting with requests in flight.");
                    1
                }
            }
            _ = signals.second_interrupt() => {
                tracing::warn!("Second interrupt: exiting at once.");
                130
            }
        };
        interception::stop(&self.gateway);
        if code == 130 {
            // At once means not waiting on a disk that may be why the operator interrupted
            // twice: the final record gets a moment, not forever.
            let gateway = self.gateway.clone();
            let (done, closed) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                close_audit(&gateway, code);
                let _ = done.send(());
            });
            if closed.recv_timeout(SECOND_INTERRUPT_AUDIT_WAIT).is_err() {
                tracing::warn!(
                    "The audit log did not close in time; exiting without its final checkpoint."
                );
            }
        } else {
            close_audit(&self.gateway, code);
        }
        code
    }

    /// Drains and detaches without waiting for a signal (tests, embedding).
    pub async fn shutdown(self) -> bool {
        let finished = self
            .gateway
            .drain
            .drain(self.gateway.config.limits.shutdown_grace)
            .await;
        interception::stop(&self.gateway);
        close_audit(&self.gateway, i32::from(!finished));
        finished
    }
}

/// Records the stop and closes the log with a final checkpoint.
fn close_audit(gateway: &Gateway, exit_code: i32) {
    if let Some(audit) = &gateway.audit {
        gateway.record_event(
            crate::audit::Event::GatewayStop,
            serde_json::json!({ "exit_code": exit_code }),
        );
        audit.close();
    }
}
