//! Alert sinks. One thread owns every sink; the engine hands it alerts through a bounded
//! channel and waits when it is full (alerts are never dropped between engine and sinks).
//! Each alert is serialised once and written to every sink; a failing sink (full disk) keeps
//! what it could not write and retries it in order, and never stops the others. A sink that delivers on a thread of its own (syslog)
//! never blocks this thread: it queues, and reports what it lost through
//! [`Sink::final_stats`].
pub mod jsonl;
pub mod logfile;
pub mod syslog;
pub mod terminal;

use std::{
    collections::{BTreeMap, VecDeque},
    fs::{File, OpenOptions},
    io::{self, Write},
    path::Path,
    sync::Arc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde::Serialize;
use tokio::sync::mpsc;
use tracing::{error, warn};

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
    /// Write attempts that failed (the alert is kept and retried, in order).
    pub failed: u64,
    /// Alerts lost for good: the retry backlog or the send queue was full, or they were still
    /// unwritten when procwatch stopped.
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

/// Alerts kept for a sink that failed (full disk, ...), retried in order; past this many the
/// oldest is dropped and counted.
pub const BACKLOG_MAX: usize = 10_000;
/// At most one warning per sink in this interval while it keeps failing.
const WARN_EVERY: Duration = Duration::from_secs(10);

enum Msg {
    Alert(Arc<Alert>),
    /// An alert with its JSON line, serialised once where it became final.
    Final(Arc<Alert>, Arc<str>),
    Reopen,
    Retry,
}

/// Per-sink counters as they stand, copied by the output thread after each message (for the
/// API's /metrics; nobody else locks it).
pub type LiveSinkStats = Arc<std::sync::Mutex<BTreeMap<String, SinkStats>>>;

/// The running output thread.
pub struct Outputs {
    tx: mpsc::Sender<Msg>,
    thread: JoinHandle<BTreeMap<String, SinkStats>>,
    live: LiveSinkStats,
}

impl Outputs {
    /// Starts the output thread with these sinks.
    pub fn start(sinks: Vec<Box<dyn Sink>>) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel(1024);
        let live = LiveSinkStats::default();
        let shared = live.clone();
        let thread = std::thread::Builder::new()
            .name("procwatch-out".into())
            .spawn(move || run(sinks, rx, &shared))?;
        Ok(Self { tx, thread, live })
    }

    /// The per-sink counters as they stand.
    pub fn live_stats(&self) -> LiveSinkStats {
        self.live.clone()
    }

    /// Queues an alert, waiting while the queue is full.
    pub async fn send(&self, alert: Alert) {
        if self.tx.send(Msg::Alert(Arc::new(alert))).await.is_err() {
            warn!("output thread is gone; alert not written");
        }
    }

    /// Queues a final alert with its JSON line (as the history stores it), waiting while the
    /// queue is full.
    pub async fn send_final(&self, alert: Arc<Alert>, json: Arc<str>) {
        if self.tx.send(Msg::Final(alert, json)).await.is_err() {
            warn!("output thread is gone; alert not written");
        }
    }

    /// Asks every sink to reopen its files.
    pub async fn reopen(&self) {
        let _ = self.tx.send(Msg::Reopen).await;
    }

    /// Asks sinks with a backlog to try again (called periodically).
    pub fn retry(&self) {
        let _ = self.tx.try_send(Msg::Retry);
    }

    /// Writes everything queued, flushes, and returns the per-sink counts.
    pub async fn close(self) -> BTreeMap<String, SinkStats> {
        drop(self.tx);
        tokio::task::spawn_blocking(move || self.thread.join().unwrap_or_default())
            .await
            .unwrap_or_default()
    }
}

/// Opens `path` for appending, created 0600.
pub(crate) fn open_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// Appends one record in one write; when the write fails part-way (disk full) the file is cut
/// back, so a record is either whole or absent and a retry cannot leave half a line behind.
pub(crate) fn append_whole(file: &mut File, record: &[u8]) -> io::Result<()> {
    let before = file.metadata()?.len();
    file.write_all(record).inspect_err(|_| {
        let _ = file.set_len(before);
    })
}

/// One sink with its retry backlog and counters.
struct Slot {
    sink: Box<dyn Sink>,
    backlog: VecDeque<(Arc<Alert>, Arc<str>)>,
    stats: SinkStats,
    last_warn: Option<Instant>,
}

impl Slot {
    fn push(&mut self, alert: Arc<Alert>, json: Arc<str>) {
        self.backlog.push_back((alert, json));
        if self.backlog.len() > BACKLOG_MAX {
            self.backlog.pop_front();
            self.stats.dropped += 1;
        }
        self.drain();
    }

    /// Writes the backlog in order until a write fails.
    fn drain(&mut self) {
        while let Some((alert, json)) = self.backlog.front() {
            match self.sink.write(alert, json) {
                Ok(()) => {
                    self.stats.written += 1;
                    self.backlog.pop_front();
                }
                Err(e) => {
                    self.stats.failed += 1;
                    if self.last_warn.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                        self.last_warn = Some(Instant::now());
                        warn!(
                            sink = %self.sink.name(),
                            error = %e,
                            pending = self.backlog.len(),
                            "alert not written; kept and retried in order"
                        );
                    }
                    return;
                }
            }
        }
    }
}

fn run(
    sinks: Vec<Box<dyn Sink>>,
    mut rx: mpsc::Receiver<Msg>,
    live: &LiveSinkStats,
) -> BTreeMap<String, SinkStats> {
    let mut slots: Vec<Slot> = sinks
        .into_iter()
        .map(|sink| Slot {
            sink,
            backlog: VecDeque::new(),
            stats: SinkStats::default(),
            last_warn: None,
        })
        .collect();
    while let Some(msg) = rx.blocking_recv() {
        match msg {
            Msg::Alert(alert) => {
                let json: Arc<str> = match serde_json::to_string(&*alert) {
                    Ok(j) => j.into(),
                    Err(e) => {
                        warn!(error = %e, "alert could not be serialised");
                        continue;
                    }
                };
                for slot in &mut slots {
                    slot.push(alert.clone(), json.clone());
                }
            }
            Msg::Final(alert, json) => {
                for slot in &mut slots {
                    slot.push(alert.clone(), json.clone());
                }
            }
            Msg::Reopen => {
                for slot in &mut slots {
                    if let Err(e) = slot.sink.reopen() {
                        warn!(sink = %slot.sink.name(), error = %e, "reopen failed");
                    }
                    slot.drain();
                }
            }
            Msg::Retry => slots.iter_mut().for_each(Slot::drain),
        }
        if let Ok(mut live) = live.lock() {
            for slot in &slots {
                live.insert(slot.sink.name(), slot.stats.clone());
            }
        }
    }
    let mut stats = BTreeMap::new();
    for mut slot in slots {
        slot.drain();
        if !slot.backlog.is_empty() {
            error!(sink = %slot.sink.name(), lost = slot.backlog.len(), "alerts still unwritten at exit");
            slot.stats.dropped += slot.backlog.len() as u64;
        }
        if let Err(e) = slot.sink.flush() {
            warn!(sink = %slot.sink.name(), error = %e, "final flush failed");
        }
        let own = slot.sink.final_stats();
        stats.insert(slot.sink.name(), own.unwrap_or(slot.stats));
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink whose storage is "full" until told otherwise.
    struct Flaky {
        full: Arc<std::sync::atomic::AtomicBool>,
        got: Arc<std::sync::Mutex<Vec<u32>>>,
    }

    impl Sink for Flaky {
        fn name(&self) -> String {
            "flaky".into()
        }
        fn write(&mut self, alert: &Alert, _json: &str) -> io::Result<()> {
            if self.full.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            self.got
                .lock()
                .map_err(|_| io::Error::other("poisoned"))?
                .push(alert.pid);
            Ok(())
        }
    }

    /// A slot around a [`Flaky`] sink that starts full, with its switch and what it wrote.
    fn flaky_slot() -> (
        Arc<std::sync::atomic::AtomicBool>,
        Arc<std::sync::Mutex<Vec<u32>>>,
        Slot,
    ) {
        let full = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let got = Arc::new(std::sync::Mutex::new(Vec::new()));
        let slot = Slot {
            sink: Box::new(Flaky {
                full: full.clone(),
                got: got.clone(),
            }),
            backlog: VecDeque::new(),
            stats: SinkStats::default(),
            last_warn: None,
        };
        (full, got, slot)
    }

    fn alert(pid: u32) -> Arc<Alert> {
        let mut a = crate::output::logfile::tests::sample_alert();
        a.pid = pid;
        Arc::new(a)
    }

    #[test]
    fn a_failing_sink_keeps_alerts_and_writes_them_in_order_later() {
        let (full, got, mut slot) = flaky_slot();
        for pid in 1..=5 {
            slot.push(alert(pid), "{}".into());
        }
        assert_eq!(slot.backlog.len(), 5);
        assert!(got.lock().expect("lock").is_empty());
        full.store(false, std::sync::atomic::Ordering::SeqCst);
        slot.push(alert(6), "{}".into());
        assert_eq!(
            *got.lock().expect("lock"),
            [1, 2, 3, 4, 5, 6],
            "all of them, in order"
        );
        assert_eq!((slot.stats.written, slot.stats.dropped), (6, 0));
        assert!(slot.stats.failed >= 5);
    }

    #[test]
    fn an_overflowing_backlog_drops_the_oldest_and_counts_them() {
        let (full, got, mut slot) = flaky_slot();
        let n = BACKLOG_MAX as u32 + 3;
        for pid in 1..=n {
            slot.push(alert(pid), "{}".into());
        }
        assert_eq!(slot.stats.dropped, 3);
        full.store(false, std::sync::atomic::Ordering::SeqCst);
        slot.drain();
        let got = got.lock().expect("lock");
        assert_eq!(got.first(), Some(&4), "the three oldest were dropped");
        assert_eq!(got.len(), BACKLOG_MAX);
    }

    #[test]
    fn append_whole_never_leaves_half_a_record() {
        let dir = std::env::temp_dir().join(format!("pw-append-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("a.jsonl");
        let mut f = open_append(&path).expect("open");
        append_whole(&mut f, b"{\"a\":1}\n").expect("append");
        let mut ro = std::fs::File::open(&path).expect("reopen read-only");
        assert!(
            append_whole(&mut ro, b"{\"b\":2}\n").is_err(),
            "a failed write..."
        );
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "{\"a\":1}\n",
            "...leaves the file as it was"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

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
