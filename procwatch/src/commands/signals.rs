//! Waiting for the signals that end a run.
use tokio::signal::unix::{SignalKind, signal};

/// Resolves on the first SIGINT or SIGTERM, returning its name.
pub async fn terminate() -> std::io::Result<&'static str> {
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    })
}
