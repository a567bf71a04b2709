//! Tracing setup: `RUST_LOG` when set, else the configured level; plain (coloured on a terminal)
//! or JSON lines on stderr.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::{LogFormat, Logging};

/// Installs the global subscriber. Safe to call more than once (later calls are ignored), so
/// tests that start several gateways in one process do not fight over it.
pub fn init(logging: &Logging) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&logging.level))
        .unwrap_or_else(|_| EnvFilter::new("info"))
        // sqlparser's debug lines Debug-format whole expressions of agents' SQL, recursing
        // without the stack protection its parser has: never on.
        .add_directive("sqlparser=info".parse().expect("a valid directive"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match logging.format {
        // Colours only on a terminal, and never with NO_COLOR set (https://no-color.org): a
        // journal or a log file got the escape codes verbatim.
        LogFormat::Plain => registry
            .with(
                fmt::layer()
                    .with_ansi(
                        std::io::IsTerminal::is_terminal(&std::io::stderr())
                            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
                    )
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .try_init(),
    };
    // Err only means a subscriber is already installed.
    drop(result);
}
