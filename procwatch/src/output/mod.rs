//! Alert sinks. One thread owns every sink; the engine hands it alerts through a bounded
//! channel and waits when it is full (alerts are never dropped between engine and sinks).
//! Each alert is serialised once and written to every sink; a failing sink is counted and
//! logged, and never stops the others. A sink that delivers on a thread of its own (syslog)
//! never blocks this thread: it queues, and reports what it lost through
//! [`Sink::final_stats`].
pub mod jsonl;
pub mod logfile;
pub mod syslog;
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
    /// Final counts of a sink that delivers asynchronously, asked once after the last
    /// `flush`; `None` keeps the output thread's own counts (written = `write` returned Ok).
    fn final_stats(&mut self) -> Option<SinkStats> {
        None
    }
}

/// Per-sink counters.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct SinkStats {
    /// Alerts written.
    pub written: u64,
    /// Alerts that failed to be written.
    pub failed: u64,
    /// Alerts accepted but then lost: queue full, or still unsent when procwatch stopped.
    pub dropped: u64,
}

/// How serious an alert is, from its score relative to `min_score`; the syslog severity and
/// the log file's `Severity:` line. Every alert has at least `min_score`, so the lowest level
/// is `warning`; twice the threshold (two strong rules, e.g. `tmp_exe` + `wx_mem` at the
/// default weights) is `err`; three times is `crit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Score at least 3 × `min_score` (syslog 2).
    Critical,
    /// Score at least 2 × `min_score` (syslog 3).
    Error,
    /// Any other alert (syslog 4).
    Warning,
}

impl Severity {
    /// The level of `total_score` given the alert threshold `min_score`. A threshold of 0 (or
    /// less, or not a number) would make every alert critical, so the default of 3 is the unit then.
    pub fn from_score(total_score: f64, min_score: f64) -> Self {
        let unit = if min_score.is_finite() && min_score > 0.0 {
            min_score
        } else {
            3.0
        };
        if total_score >= 3.0 * unit {
            Self::Critical
        } else if total_score >= 2.0 * unit {
            Self::Error
        } else {
            Self::Warning
        }
    }

    /// The RFC 5424 severity code.
    pub fn syslog_code(self) -> u8 {
        match self {
            Self::Critical => 2,
            Self::Error => 3,
            Self::Warning => 4,
        }
    }

    /// The syslog keyword (`crit`, `err`, `warning`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "crit",
            Self::Error => "err",
            Self::Warning => "warning",
        }
    }
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
        if let Some(own) = sink.final_stats() {
            stats.insert(sink.name(), own);
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::Severity;

    #[test]
    fn severity_is_relative_to_min_score() {
        let cases = [
            (3.0, 3.0, Severity::Warning),
            (5.9, 3.0, Severity::Warning),
            (6.0, 3.0, Severity::Error),
            (8.9, 3.0, Severity::Error),
            (9.0, 3.0, Severity::Critical),
            (40.0, 3.0, Severity::Critical),
            (4.0, 2.0, Severity::Error),
            (6.0, 2.0, Severity::Critical),
            // A zero, negative or NaN threshold falls back to the default unit of 3.
            (5.0, 0.0, Severity::Warning),
            (9.0, 0.0, Severity::Critical),
            (6.0, f64::NAN, Severity::Error),
        ];
        for (score, min, want) in cases {
            assert_eq!(Severity::from_score(score, min), want, "{score} / {min}");
        }
        let codes: Vec<u8> = [Severity::Critical, Severity::Error, Severity::Warning]
            .iter()
            .map(|s| s.syslog_code())
            .collect();
        assert_eq!(codes, [2, 3, 4]);
    }
}
