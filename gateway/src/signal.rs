//! Process signals: the first SIGTERM or SIGINT starts a drain; a second SIGINT exits at once;
//! SIGHUP reloads the policy.
//!
//! Handlers are installed before the gateway says it is ready, so that a signal sent the moment
//! it is ready is handled rather than killing the process.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// Which signal asked for shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    Terminate,
    Interrupt,
}

/// The installed shutdown handlers.
#[derive(Debug)]
pub struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Installs the SIGTERM and SIGINT handlers.
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Completes on the first SIGTERM or SIGINT.
    pub async fn shutdown(&mut self) -> Shutdown {
        tokio::select! {
            _ = self.term.recv() => Shutdown::Terminate,
            _ = self.int.recv() => Shutdown::Interrupt,
        }
    }

    /// Completes on the next SIGINT: the impatient operator's way out during a drain.
    pub async fn second_interrupt(&mut self) {
        self.int.recv().await;
    }
}

/// SIGHUPs, one `recv()` each.
pub fn hangups() -> std::io::Result<Signal> {
    signal(SignalKind::hangup())
}
