//! Requests that change something (kill, accept) go to the state's owner over a channel, each
//! with a one-shot reply; the API never changes state itself.
use tokio::sync::{mpsc, oneshot};

pub use crate::engine::ApiRefusal;

/// Requests queued for the engine before the API answers 503 (the engine is busy).
pub const CONTROL_QUEUE: usize = 64;

/// A request to the engine's task.
#[derive(Debug)]
pub enum Request {
    /// Kill the live process `pid` (checked like `--kill-on-alert`); the reply is the alert
    /// that records it.
    Kill {
        /// The process.
        pid: u32,
        /// The alert recording what was done (`action`: killed, kill_failed, ...), or why not.
        reply: oneshot::Sender<Result<serde_json::Value, ApiRefusal>>,
    },
    /// Add what an alert reported to the baselines.
    Accept {
        /// The alert, as written to JSONL.
        alert: serde_json::Value,
        /// What was added and skipped, or why nothing was.
        reply: oneshot::Sender<Result<serde_json::Value, ApiRefusal>>,
    },
}

/// The API's end of the channel.
pub type Sender = mpsc::Sender<Request>;
/// The engine's end.
pub type Receiver = mpsc::Receiver<Request>;

/// A channel between the API and the engine.
pub fn channel() -> (Sender, Receiver) {
    mpsc::channel(CONTROL_QUEUE)
}
