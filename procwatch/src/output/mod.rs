//! Alert sinks. One thread owns every sink; the engine hands it alerts through a bounded
//! channel and waits when it is full (alerts are never dropped between engine and sinks).
//! Each alert is serialised once and written to every sink; a failing sink is counted and
//! logged, and never stops the others.
pub mod jsonl;
pub mod terminal;

use std::{collections::BTreeMap, io, sync::Arc, thread::JoinHandle};

use serde::Serialize;
use tokio::sync::mpsc;
use tracing::warn;

use crate::alert::Alert;

/// Somewhere alerts go.
pub trait Sink: Send {
    /// Name for stats and logs.
    fn name(&self) -> String;
    /// Writes one alert; `json` is its serialisation (one line, no newline).
    fn write(&mut self, alert: &Alert, json: &str) -> io::Result<()>;
    /// Reopens files (logrotate on SIGHUP).
    fn reopen(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Flushes what is buffered.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Per-sink counters.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct SinkStats {
    /// Alerts written.
    pub written: u64,
    /// Alerts that failed to be written.
    pub failed: u64,
}

enum Msg {
    Alert(Arc<Alert>),
    Reopen,
}

/// The running output thread.
pub struct Outputs {
    tx: mpsc::Sender<Msg>,
    thread: JoinHandle<BTreeMap<String, SinkStats>>,
}

impl Outputs {
    /// Starts the output thread with these sinks.
    pub fn start(sinks: Vec<Box<dyn Sink>>) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel(1024);
        let thread = std::thread::Builder::new()
            .name("procwatch-out".into())
            .spawn(move || run(sinks, rx))?;
        Ok(Self { tx, thread })
    }

    /// Queues an alert, waiting while the queue is full.
    pub async fn send(&self, alert: Alert) {
        if self.tx.send(Msg::Alert(Arc::new(alert))).await.is_err() {
            warn!("output thread is gone; alert not written");
        }
    }

    /// Asks every sink to reopen its files.
    pub async fn reopen(&self) {
        let _ = self.tx.send(Msg::Reopen).await;
    }

    /// Writes everything queued, flushes, and returns the per-sink counts.
    pub async fn close(self) -> BTreeMap<String, SinkStats> {
        drop(self.tx);
        tokio::task::spawn_blocking(move || self.thread.join().unwrap_or_default())
            .await
            .unwrap_or_default()
    }
}

fn run(mut sinks: Vec<Box<dyn Sink>>, mut rx: mpsc::Receiver<Msg>) -> BTreeMap<String, SinkStats> {
    let mut stats: BTreeMap<String, SinkStats> = sinks
        .iter()
        .map(|s| (s.name(), SinkStats::default()))
        .collect();
    while let Some(msg) = rx.blocking_recv() {
        match msg {
            Msg::Alert(alert) => {
                let json = match serde_json::to_string(&*alert) {
                    Ok(j) => j,
                    Err(e) => {
                        warn!(error = %e, "alert could not be serialised");
                        continue;
                    }
                };
                for sink in &mut sinks {
                    let entry = stats.entry(sink.name()).or_default();
                    match sink.write(&alert, &json) {
                        Ok(()) => entry.written += 1,
                        Err(e) => {
                            entry.failed += 1;
                            warn!(sink = %sink.name(), error = %e, "alert not written to sink");
                        }
                    }
                }
            }
            Msg::Reopen => {
                for sink in &mut sinks {
                    if let Err(e) = sink.reopen() {
                        warn!(sink = %sink.name(), error = %e, "reopen failed");
                    }
                }
            }
        }
    }
    for sink in &mut sinks {
        if let Err(e) = sink.flush() {
            warn!(sink = %sink.name(), error = %e, "final flush failed");
        }
    }
    stats
}
