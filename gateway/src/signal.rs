//! Process signals: the first SIGTERM or SIGINT starts a drain; a second SIGINT exits at once;
//! SIGHUP reloads the policy.

use tokio::signal::unix::{SignalKind, signal};

/// Which signal asked for shutdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shutdown {
    Terminate,
    Interrupt,
}

/// Completes on the first SIGTERM or SIGINT.
pub async fn shutdown() -> std::io::Result<Shutdown> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(tokio::select! {
        _ = term.recv() => Shutdown::Terminate,
        _ = int.recv() => Shutdown::Interrupt,
    })
}

/// Completes on the next SIGINT: the impatient operator's way out during a drain.
pub async fn second_interrupt() -> std::io::Result<()> {
    let mut int = signal(SignalKind::interrupt())?;
    int.recv().await;
    Ok(())
}

/// SIGHUPs, one `recv()` each.
pub fn hangups() -> std::io::Result<tokio::signal::unix::Signal> {
    signal(SignalKind::hangup())
}
