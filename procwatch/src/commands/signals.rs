//! The signals that end a run, installed up front: a handler registered lazily (on the first
//! poll) would leave a window after READY=1 where SIGTERM still has its default, fatal action.
use tokio::signal::unix::{Signal, SignalKind, signal};

/// SIGINT and SIGTERM handlers.
pub struct Terminate {
    int: Signal,
    term: Signal,
}

impl Terminate {
    /// Installs both handlers now.
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// Resolves on the next SIGINT or SIGTERM, returning its name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }
}
