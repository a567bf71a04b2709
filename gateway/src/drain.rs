//! One drain primitive for graceful shutdown: a cancellation signal every task watches, and a
//! tracker that knows when the last of them has finished.

use std::time::Duration;

use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// Shared by every task: `watch()` to learn that draining started, `spawn` to be waited for.
#[derive(Clone, Debug, Default)]
pub struct Drain {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Drain {
    pub fn new() -> Self {
        Self::default()
    }

    /// Completes when draining starts.
    pub async fn signaled(&self) {
        self.token.cancelled().await;
    }

    /// Whether draining has started.
    pub fn is_draining(&self) -> bool {
        self.token.is_cancelled()
    }

    /// A token that is cancelled when draining starts (for bodies and streams).
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Spawns a task that draining waits for.
    pub fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(fut)
    }

    /// Starts draining and waits up to `grace` for every tracked task. Returns whether all
    /// finished in time.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.token.cancel();
        self.tracker.close();
        tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
    }
}
