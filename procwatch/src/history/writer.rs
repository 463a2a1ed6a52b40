//! The database writer thread: takes alerts off a bounded queue, inserts them in batches
//! (one transaction each, retention included), and counts what fails. A failed batch (disk
//! full, I/O error, database locked) is kept and retried with a growing pause; past
//! [`BACKLOG_MAX`] alerts waiting, the oldest are dropped and counted. Nothing here can stall
//! the action stage: it only ever `try_send`s.
use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc::{self, RecvTimeoutError, TryRecvError, TrySendError},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tracing::{error, warn};

use super::{AlertRecord, HistoryOptions, HistoryStats, Shared, retention::Limits, store::Store};

/// Alerts queued for the writer thread; past this, new ones are dropped from the history.
pub(super) const QUEUE: usize = 4096;
/// Most alerts inserted in one transaction.
const BATCH: usize = 512;
/// Most alerts kept for a retry while the database fails; the oldest go first.
pub(super) const BACKLOG_MAX: usize = 20_000;
/// Retention runs at least this often, also when no alert comes.
const IDLE: Duration = Duration::from_secs(60);
/// First pause before a failed batch is retried; it doubles up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(500);
/// Longest pause between two retries.
const RETRY_MAX: Duration = Duration::from_secs(10);
/// At most one warning of each kind in this interval.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The history's counters, shared by the action stage, the writer thread and readers.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) enabled: AtomicBool,
    pub(super) rows: AtomicU64,
    pub(super) written: AtomicU64,
    pub(super) write_failures: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) evicted: AtomicU64,
    pub(super) pending: AtomicU64,
    pub(super) last_id: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// When the action stage last warned of a full queue.
    last_drop_warn: Mutex<Option<Instant>>,
}

impl Counters {
    /// The counters now.
    pub(super) fn snapshot(&self) -> HistoryStats {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        HistoryStats {
            enabled: self.enabled.load(Ordering::Relaxed),
            rows: n(&self.rows),
            written: n(&self.written),
            write_failures: n(&self.write_failures),
            dropped: n(&self.dropped),
            evicted: n(&self.evicted),
            pending: n(&self.pending),
            last_id: n(&self.last_id),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        }
    }

    fn set_error(&self, e: Option<String>) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = e;
    }

    /// Counts `n` alerts lost to the history, and says so at most every [`WARN_EVERY`].
    fn drop_alerts(&self, n: u64, why: &str) {
        let total = self.dropped.fetch_add(n, Ordering::Relaxed) + n;
        let mut last = self
            .last_drop_warn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            *last = Some(Instant::now());
            warn!(
                dropped_total = total,
                "alert history: {why}; alerts still go to every sink, the history misses them"
            );
        }
    }
}

/// The action stage's end of the queue, and the thread behind it.
pub(super) struct Queue {
    tx: mpsc::SyncSender<Arc<AlertRecord>>,
    thread: JoinHandle<()>,
}

impl Queue {
    /// Queues `r` for the database without waiting; a full queue drops it (counted).
    pub(super) fn push(&self, r: Arc<AlertRecord>, counters: &Counters) {
        match self.tx.try_send(r) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                counters.drop_alerts(
                    1,
                    "the writer's queue is full (the disk is slower than the alerts)",
                );
            }
            Err(TrySendError::Disconnected(_)) => {
                counters.drop_alerts(1, "the writer thread is gone");
            }
        }
    }

    /// Lets the thread write what is queued, record the last id, and end; waits for it.
    pub(super) fn close(self) {
        drop(self.tx);
        if self.thread.join().is_err() {
            error!("alert history: the writer thread panicked");
        }
    }
}

/// Starts the writer thread over `store`.
pub(super) fn start(
    store: Store,
    opts: &HistoryOptions,
    shared: Arc<Shared>,
    last_id: Arc<AtomicU64>,
) -> std::io::Result<Queue> {
    let (tx, rx) = mpsc::sync_channel(QUEUE);
    let limits = Limits {
        max_age: opts.max_age,
        max_rows: opts.max_rows,
    };
    let thread = std::thread::Builder::new()
        .name("procwatch-hist".into())
        .spawn(move || {
            Writer {
                store,
                limits,
                shared,
                last_id,
                pending: VecDeque::new(),
                last_warn: None,
            }
            .run(&rx);
        })?;
    Ok(Queue { tx, thread })
}

/// The writer thread's state.
struct Writer {
    store: Store,
    limits: Limits,
    shared: Arc<Shared>,
    last_id: Arc<AtomicU64>,
    /// Taken off the queue, not yet written (in id order).
    pending: VecDeque<Arc<AlertRecord>>,
    last_warn: Option<Instant>,
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Writer {
    fn run(mut self, rx: &mpsc::Receiver<Arc<AlertRecord>>) {
        let mut open = true;
        let mut retry_at: Option<Instant> = None;
        let mut pause = RETRY_MIN;
        let mut maintained = Instant::now();
        // Run retention once at start: a history left alone for a while may be past its age.
        self.maintain();
        while open {
            let wait = match retry_at {
                Some(at) => at.saturating_duration_since(Instant::now()),
                None if self.pending.is_empty() => IDLE.saturating_sub(maintained.elapsed()),
                None => Duration::ZERO,
            };
            match rx.recv_timeout(wait) {
                Ok(r) => self.pending.push_back(r),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
            // Whatever else is queued: up to a batch, or while retrying, up to the backlog's
            // size (so the queue keeps room for what comes meanwhile).
            let room = if retry_at.is_some() {
                BACKLOG_MAX
            } else {
                BATCH
            };
            while open && self.pending.len() < room {
                match rx.try_recv() {
                    Ok(r) => self.pending.push_back(r),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => open = false,
                }
            }
            self.trim();
            if !open {
                break;
            }
            if retry_at.is_some_and(|at| Instant::now() < at) {
                continue;
            }
            if !self.pending.is_empty() {
                if self.write() {
                    retry_at = None;
                    pause = RETRY_MIN;
                    maintained = Instant::now();
                } else {
                    retry_at = Some(Instant::now() + pause);
                    pause = (pause * 2).min(RETRY_MAX);
                }
            } else if maintained.elapsed() >= IDLE {
                self.maintain();
                maintained = Instant::now();
            }
        }
        // Closing: the queue is drained into `pending` above; one last attempt, then what is
        // left is lost (counted), and the last id handed out is recorded.
        while let Ok(r) = rx.try_recv() {
            self.pending.push_back(r);
        }
        self.trim();
        if !self.pending.is_empty() && !self.write() {
            std::thread::sleep(RETRY_MIN);
            self.write();
        }
        let left = self.pending.len() as u64;
        if left > 0 {
            self.shared
                .counters
                .drop_alerts(left, "alerts still unwritten at exit");
            error!(lost = left, "alert history: alerts still unwritten at exit");
            self.pending.clear();
            self.shared.counters.pending.store(0, Ordering::Relaxed);
        }
        self.maintain();
    }

    /// Drops the oldest waiting alerts past [`BACKLOG_MAX`] (counted).
    fn trim(&mut self) {
        let over = self.pending.len().saturating_sub(BACKLOG_MAX);
        if over > 0 {
            self.pending.drain(..over);
            self.shared.counters.drop_alerts(
                over as u64,
                "the retry backlog is full (the database keeps failing)",
            );
        }
        self.shared
            .counters
            .pending
            .store(self.pending.len() as u64, Ordering::Relaxed);
    }

    /// Writes everything waiting, a batch per transaction; false when a batch failed (it
    /// stays waiting).
    fn write(&mut self) -> bool {
        let c = &self.shared.counters;
        while !self.pending.is_empty() {
            let n = self.pending.len().min(BATCH);
            let batch = &self.pending.make_contiguous()[..n];
            let last_id = self.last_id.load(Ordering::Relaxed);
            match self.store.insert(batch, last_id, &self.limits, now_ms()) {
                Ok(evicted) => {
                    self.pending.drain(..n);
                    c.written.fetch_add(n as u64, Ordering::Relaxed);
                    c.evicted.fetch_add(evicted, Ordering::Relaxed);
                    c.rows.store(self.store.rows(), Ordering::Relaxed);
                    c.pending
                        .store(self.pending.len() as u64, Ordering::Relaxed);
                    c.set_error(None);
                }
                Err(e) => {
                    c.write_failures.fetch_add(1, Ordering::Relaxed);
                    c.set_error(Some(e.to_string()));
                    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) {
                        // Not a passing failure: these alerts could never be written.
                        error!(error = %e, alerts = n, "alert history: batch refused by the database; its alerts are dropped from the history");
                        self.pending.drain(..n);
                        c.drop_alerts(n as u64, "a batch was refused by the database");
                        continue;
                    }
                    self.warn(&e);
                    return false;
                }
            }
        }
        true
    }

    /// Retention on its own, and the last id handed out recorded.
    fn maintain(&mut self) {
        let c = &self.shared.counters;
        let last_id = self.last_id.load(Ordering::Relaxed);
        match self.store.maintain(last_id, &self.limits, now_ms()) {
            Ok(evicted) => {
                c.evicted.fetch_add(evicted, Ordering::Relaxed);
                c.rows.store(self.store.rows(), Ordering::Relaxed);
            }
            Err(e) => {
                c.write_failures.fetch_add(1, Ordering::Relaxed);
                c.set_error(Some(e.to_string()));
                self.warn(&e);
            }
        }
    }

    /// Warns of a failed write at most every [`WARN_EVERY`].
    fn warn(&mut self, e: &rusqlite::Error) {
        if self.last_warn.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            self.last_warn = Some(Instant::now());
            let c = &self.shared.counters;
            warn!(
                path = %self.store.path().display(),
                error = %e,
                pending = self.pending.len(),
                write_failures = c.write_failures.load(Ordering::Relaxed),
                "alert history: write failed; the alerts are kept and retried (every sink still has them)"
            );
        }
    }
}
