//! The command line: `agentgate run`, `check-config`, `version`.

use std::{path::PathBuf, sync::Arc};

use clap::{Parser, Subcommand};

use crate::{
    EXIT_BAD_CONFIG, EXIT_UNAVAILABLE,
    config::{Config, ConfigError},
    drain::Drain,
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
    /// Run the gateway until SIGTERM or SIGINT (a second SIGINT exits at once).
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
    /// Print the version and exit.
    Version,
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
        Command::Run { config } => {
            let loaded = match &config {
                Some(path) => Config::load(path),
                None => Config::embedded_default(),
            };
            match loaded {
                Ok(config) => run(config),
                Err(e) => bad_config(&e),
            }
        }
    }
}

fn bad_config(e: &ConfigError) -> i32 {
    eprintln!("agentgate: invalid configuration: {e}");
    EXIT_BAD_CONFIG
}

fn run(config: Config) -> i32 {
    telemetry::init(&config.logging);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = config.runtime.worker_threads {
        builder.worker_threads(n);
    }
    let runtime = match builder.build() {
        Ok(r) => r,
        Err(error) => {
            tracing::error!(%error, "Cannot start the async runtime.");
            return EXIT_UNAVAILABLE;
        }
    };
    runtime.block_on(async move {
        match start(config).await {
            Ok(running) => running.wait_for_shutdown().await,
            Err(e) => {
                tracing::error!(error = %e, "agentgate could not start.");
                e.exit_code()
            }
        }
    })
}

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
}

impl StartError {
    pub fn exit_code(&self) -> i32 {
        match self {
            StartError::Bind { .. } => EXIT_UNAVAILABLE,
            StartError::Upstream(_) => EXIT_BAD_CONFIG,
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
    let config = Arc::new(config);
    let drain = Drain::new();
    let metrics = Arc::new(Metrics::new());
    let gateway = Arc::new(Gateway::new(
        config.clone(),
        Stages::default(),
        metrics.clone(),
        drain.clone(),
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
            drain.spawn(crate::admin::serve(admin, metrics, drain.clone()));
            Some(bound)
        }
        None => None,
    };
    drain.spawn(proxy::serve(listener, gateway.clone()));
    for server in &config.servers {
        tracing::info!(server = %server.name, url = %server.url, transport = %server.transport, "Upstream configured.");
    }
    tracing::info!(listen = %proxy_addr, admin = ?admin_addr, servers = config.servers.len(), "agentgate is ready.");
    Ok(Running {
        bound: Bound {
            proxy: proxy_addr,
            admin: admin_addr,
        },
        gateway,
    })
}

impl Running {
    /// Waits for a shutdown signal, then drains. Returns the exit code.
    pub async fn wait_for_shutdown(self) -> i32 {
        match signal::shutdown().await {
            Ok(which) => {
                tracing::info!(signal = ?which, "Shutting down: draining in-flight requests.")
            }
            Err(error) => tracing::error!(%error, "Cannot listen for signals; shutting down."),
        }
        let grace = self.gateway.config.limits.shutdown_grace;
        tokio::select! {
            finished = self.gateway.drain.drain(grace) => {
                if finished {
                    tracing::info!("Drained; bye.");
                    0
                } else {
                    tracing::warn!(grace_s = grace.as_secs_f64(), "Drain deadline passed; exiting with requests in flight.");
                    1
                }
            }
            _ = signal::second_interrupt() => {
                tracing::warn!("Second interrupt: exiting at once.");
                130
            }
        }
    }
}
