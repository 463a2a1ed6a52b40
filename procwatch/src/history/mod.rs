//! Alert ids, the in-process alert bus and the alert history (an embedded SQLite database).
//!
//! How `monitor` wires it: [`History::open`] at start gives a [`HistoryWriter`] and a
//! [`HistoryReader`]. The writer belongs to the action stage (`commands::pipeline`), the one
//! place where alerts are final: for each alert it assigns the next id, serialises the alert
//! once (the JSON line every sink writes, and the history stores), keeps it in a ring of the
//! most recent alerts, broadcasts it to live subscribers (the API's SSE stream), and hands it
//! to the database writer thread through a bounded queue. A full queue drops the alert from
//! the history (counted), never from the sinks: the detection path never waits on the disk.
//! The writer thread (`writer.rs`) inserts in batches, one transaction each, enforces
//! retention (`retention.rs`) in the same transaction, and counts what fails; failed batches
//! are kept and retried. Readers (the API) clone the [`HistoryReader`]: queries run on a read
//! connection of their own in `spawn_blocking`, and see alerts still on their way to the disk
//! through the ring.
//!
//! Ids continue after a restart: the database remembers the highest id handed out. With the
//! history disabled (or for `scan`) the bus runs in memory only and ids start at 1.
mod query;
mod record;
mod retention;
mod ring;
mod store;
mod writer;

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::sync::broadcast;

pub use query::{DEFAULT_LIMIT, MAX_LIMIT};
use ring::Ring;
pub use store::FORMAT_VERSION;

use crate::alert::Alert;

/// One alert as stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AlertRecord {
    /// The alert's id.
    pub id: u64,
    /// When it happened (unix ms; the alert's `timestamp`).
    pub time_ms: i64,
    /// The alerted process.
    pub pid: u32,
    /// Its executable.
    pub exe: Option<String>,
    /// The rule ids of its reasons.
    pub rules: Vec<String>,
    /// Its total score.
    pub total_score: f64,
    /// The alert as one JSON line, exactly as the sinks write it (no newline).
    pub json: Arc<str>,
    /// Start of the process (CLOCK_BOOTTIME ns), with `pid` its name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_boottime_ns: Option<u64>,
}

/// A history query (`GET /api/alerts`); all filters optional, results in ascending id order after `after`.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    /// Only ids above this one (the paging cursor, oldest first).
    pub after: Option<u64>,
    /// Only ids below this one (the paging cursor, newest first).
    pub before: Option<u64>,
    /// Newest first: the `limit` highest ids that match, in descending order.
    pub newest_first: bool,
    /// Only alerts at or after this time (unix ms).
    pub since_ms: Option<i64>,
    /// Only alerts with a reason of this rule (exact rule id).
    pub rule: Option<String>,
    /// Only alerts of this pid.
    pub pid: Option<u32>,
    /// Only alerts of this executable (exact path).
    pub exe: Option<String>,
    /// Only alerts scoring at least this.
    pub min_score: Option<f64>,
    /// At most this many (0: [`DEFAULT_LIMIT`]; capped at [`MAX_LIMIT`]).
    pub limit: usize,
}

/// Counters of the history (also for /metrics): rows, written, write_failures, dropped (queue full), evicted.
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq)]
pub struct HistoryStats {
    /// Whether alerts go to a database (false: memory only).
    pub enabled: bool,
    /// Rows in the database now.
    pub rows: u64,
    /// Alerts written to the database.
    pub written: u64,
    /// Write attempts (transactions) that failed; their alerts are kept and retried.
    pub write_failures: u64,
    /// Alerts that never reached the database: the queue to the writer was full, the retry
    /// backlog overflowed, or they were still unwritten at exit.
    pub dropped: u64,
    /// Rows deleted by retention (age or row cap).
    pub evicted: u64,
    /// Alerts waiting in the writer's retry backlog now.
    pub pending: u64,
    /// The highest id handed out so far.
    pub last_id: u64,
    /// The last write error, if the latest attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Why the history could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The directory or file could not be created or read.
    #[error("alert history {path}: {source}")]
    Io {
        /// The database path.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// SQLite refused to open or read the file.
    #[error("alert history {path}: {source}")]
    Sqlite {
        /// The database path.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// The file is not a procwatch alert history (another program's file, or corrupt); it is
    /// left as it is.
    #[error(
        "alert history {path}: {why}; the file is left untouched: move it away, or set \
         history.path to another file (history.enabled: false or --no-history runs without a history)"
    )]
    NotHistory {
        /// The database path.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// A newer procwatch wrote the file in a format this one does not know.
    #[error(
        "alert history {path}: format version {found}, but this procwatch reads up to \
         {FORMAT_VERSION}; it is left untouched: use a newer procwatch, or set history.path \
         to another file (or --no-history)"
    )]
    NewerFormat {
        /// The database path.
        path: PathBuf,
        /// The version found in the file.
        found: i64,
    },
    /// Another procwatch has the database open.
    #[error(
        "alert history {path} is in use by another procwatch; give this one another \
         history.path (or --history FILE), or run it with --no-history"
    )]
    InUse {
        /// The database path.
        path: PathBuf,
    },
    /// No path is configured and none can be derived.
    #[error("alert history: history.path is not set and HOME is not set to derive one")]
    NoPath,
    /// A query failed.
    #[error("alert history query failed: {0}")]
    Query(#[from] rusqlite::Error),
    /// The query's task failed.
    #[error("alert history query task failed: {0}")]
    Task(String),
}

/// The settings of an opened history.
#[derive(Debug, Clone)]
pub struct HistoryOptions {
    /// The database file.
    pub path: PathBuf,
    /// Alerts older than this are deleted.
    pub max_age: Duration,
    /// At most this many rows are kept.
    pub max_rows: u64,
    /// SQLite's `max_page_count` of the writer (None: SQLite's own limit); lets a test give
    /// the database a real size limit, past which SQLite reports the database full.
    pub max_pages: Option<u32>,
    /// Most recent alerts kept in memory for readers.
    pub ring: usize,
}

impl HistoryOptions {
    /// The settings `cfg` asks for (its path, or the default one).
    pub fn from_config(cfg: &crate::config::History) -> Result<Self, HistoryError> {
        Ok(Self {
            path: match &cfg.path {
                Some(p) => p.clone(),
                None => default_path().ok_or(HistoryError::NoPath)?,
            },
            max_age: cfg.max_age,
            max_rows: cfg.max_rows,
            max_pages: None,
            ring: RING,
        })
    }
}

/// `/var/lib/procwatch/alerts.db` as root, else `$HOME/.local/share/procwatch/alerts.db`.
pub fn default_path() -> Option<PathBuf> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return Some(PathBuf::from("/var/lib/procwatch/alerts.db"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".local/share/procwatch/alerts.db"))
}

/// Alerts kept in memory for readers (recent alerts, `since` before they are on disk).
pub const RING: usize = 4096;
/// Alerts a live subscriber may fall behind before it is told it lagged.
const LIVE: usize = 1024;

/// What the writer side and every reader share.
struct Shared {
    ring: Mutex<Ring>,
    live: broadcast::Sender<Arc<AlertRecord>>,
    counters: writer::Counters,
    /// The highest id published (in the ring and sent to live subscribers). It trails
    /// `counters.last_id` while an alert with an id is being acted on (freeze, dump, kill):
    /// a stream client starts here, so it does not skip the alert still in flight.
    published: AtomicU64,
}

impl Shared {
    fn new(enabled: bool, rows: u64, last_id: u64, ring: usize) -> Arc<Self> {
        let counters = writer::Counters::default();
        counters.rows.store(rows, Ordering::Relaxed);
        counters.last_id.store(last_id, Ordering::Relaxed);
        counters
            .enabled
            .store(enabled, std::sync::atomic::Ordering::Relaxed);
        Arc::new(Self {
            ring: Mutex::new(Ring::new(ring)),
            live: broadcast::channel(LIVE).0,
            counters,
            published: AtomicU64::new(last_id),
        })
    }

    /// The ring, even if a reader panicked while holding it (it only holds whole records).
    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Opens the alert history.
#[derive(Debug)]
pub struct History;

impl History {
    /// The history `cfg` asks for: the database (created if absent) with its writer thread,
    /// or memory only when `enabled` is false.
    pub fn open(
        cfg: &crate::config::History,
    ) -> Result<(HistoryWriter, HistoryReader), HistoryError> {
        if !cfg.enabled {
            return Ok(Self::memory());
        }
        Self::open_with(&HistoryOptions::from_config(cfg)?)
    }

    /// The database at `opts.path` (created if absent) with its writer thread.
    pub fn open_with(
        opts: &HistoryOptions,
    ) -> Result<(HistoryWriter, HistoryReader), HistoryError> {
        let db = store::Store::open(&opts.path, opts.max_pages)?;
        let reader_db = store::ReadDb::open(&db)?;
        let shared = Shared::new(true, db.rows(), db.last_id(), opts.ring);
        let next = Arc::new(AtomicU64::new(db.last_id()));
        let queue = writer::start(db, opts, shared.clone(), next.clone()).map_err(|source| {
            HistoryError::Io {
                path: opts.path.clone(),
                source,
            }
        })?;
        Ok((
            HistoryWriter {
                shared: shared.clone(),
                last_id: next,
                queue: Some(queue),
            },
            HistoryReader {
                shared,
                db: Some(Arc::new(reader_db)),
                local: true,
            },
        ))
    }

    /// A read-only view of a history another procwatch writes (`procwatch api` beside a
    /// running `monitor`): queries, `get` and `since` read the file; nothing is published
    /// here, so `subscribe` never yields, and `stats` are the file's at open. The file must
    /// exist and is checked like the writer checks it.
    pub fn open_readonly(path: &Path) -> Result<HistoryReader, HistoryError> {
        let (db, rows, last_id) = store::ReadDb::open_existing(path)?;
        Ok(HistoryReader {
            shared: Shared::new(true, rows, last_id, 1),
            db: Some(Arc::new(db)),
            local: false,
        })
    }

    /// A bus without a database: ids from 1, the live stream and the most recent alerts.
    pub fn memory() -> (HistoryWriter, HistoryReader) {
        let shared = Shared::new(false, 0, 0, RING);
        (
            HistoryWriter {
                shared: shared.clone(),
                last_id: Arc::new(AtomicU64::new(0)),
                queue: None,
            },
            HistoryReader {
                shared,
                db: None,
                local: true,
            },
        )
    }
}

/// The producer side, owned by the action stage: ids, the ring, the live stream, the queue
/// to the database writer.
pub struct HistoryWriter {
    shared: Arc<Shared>,
    /// The highest id handed out (read by the writer thread, which records it).
    last_id: Arc<AtomicU64>,
    queue: Option<writer::Queue>,
}

impl std::fmt::Debug for HistoryWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryWriter")
            .field("last_id", &self.last_id)
            .finish_non_exhaustive()
    }
}

impl HistoryWriter {
    /// Gives `alert` the next id, unless it has one already; returns its id. The action
    /// stage calls it before it acts, so a forensic dump's `alert.json` has the id too.
    pub fn assign_id(&mut self, alert: &mut Alert) -> u64 {
        if alert.id == 0 {
            let id = self.last_id.load(Ordering::Relaxed) + 1;
            self.last_id.store(id, Ordering::Relaxed);
            self.shared.counters.last_id.store(id, Ordering::Relaxed);
            alert.id = id;
        }
        alert.id
    }

    /// Makes `alert` final: gives it the next id (if [`Self::assign_id`] has not), serialises
    /// it once and publishes it (ring, live subscribers, database queue). Returns the record;
    /// its `json` is what the sinks write. Never waits: a full database queue drops the alert
    /// from the history, counted.
    pub fn publish(&mut self, alert: &mut Alert) -> Result<Arc<AlertRecord>, serde_json::Error> {
        self.assign_id(alert);
        let record = Arc::new(record::of(alert)?);
        self.shared.ring().push(record.clone());
        // No subscriber is not an error.
        let _ = self.shared.live.send(record.clone());
        // After the send: a client that reads this id has the alert in the ring or live.
        self.shared.published.store(record.id, Ordering::Release);
        if let Some(q) = &self.queue {
            q.push(record.clone(), &self.shared.counters);
        }
        Ok(record)
    }

    /// The counters now.
    pub fn stats(&self) -> HistoryStats {
        self.shared.counters.snapshot()
    }

    /// Writes what is queued (retrying failed batches once more), records the last id, stops
    /// the writer thread and returns the final counters. Blocks: call it off the async threads.
    pub fn close_blocking(mut self) -> HistoryStats {
        if let Some(q) = self.queue.take() {
            q.close();
        }
        self.shared.counters.snapshot()
    }

    /// [`Self::close_blocking`] on a blocking thread.
    pub async fn close(self) -> HistoryStats {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || self.close_blocking())
            .await
            .unwrap_or_else(|_| shared.counters.snapshot())
    }
}

/// Where a live-stream client starts ([`HistoryReader::stream_start`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamStart {
    /// Send the alerts with an id above this one.
    After(u64),
    /// The client's id was never published here: tell it to reset, then send the alerts
    /// with an id above this one (the last published).
    Reset(u64),
}

/// Cheap-to-clone, Send + Sync read handle: queries run on a read connection in spawn_blocking.
#[derive(Clone)]
pub struct HistoryReader {
    shared: Arc<Shared>,
    db: Option<Arc<store::ReadDb>>,
    /// Alerts are published in this process (false: a read-only view of another's file).
    local: bool,
}

impl std::fmt::Debug for HistoryReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryReader")
            .field("db", &self.db.as_ref().map(|d| d.path().to_path_buf()))
            .finish()
    }
}

impl HistoryReader {
    /// The alerts `f` selects: from the database, with the alerts not yet written there from
    /// the ring; ascending ids.
    pub async fn query(&self, f: AlertFilter) -> Result<Vec<AlertRecord>, HistoryError> {
        let limit = query::limit(f.limit);
        let recent = self.shared.ring().matching(&f, limit);
        let Some(db) = self.db.clone() else {
            return Ok(recent);
        };
        let newest_first = f.newest_first;
        let stored = blocking(move || db.query(&f, limit)).await?;
        Ok(query::merge(stored, recent, limit, newest_first))
    }

    /// One alert by id (the ring first, then the database).
    pub async fn get(&self, id: u64) -> Result<Option<AlertRecord>, HistoryError> {
        if let Some(r) = self.shared.ring().get(id) {
            return Ok(Some(r));
        }
        let Some(db) = self.db.clone() else {
            return Ok(None);
        };
        blocking(move || db.get(id)).await
    }

    /// New alerts as they are finalised (before the db write completes), for SSE.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<AlertRecord>> {
        self.shared.live.subscribe()
    }

    /// Alerts with id > after that a live subscriber may have missed: from an in-memory ring of the most
    /// recent alerts (so an alert broadcast but not yet on disk is not lost), else from the db.
    pub async fn since(&self, after: u64, limit: usize) -> Result<Vec<AlertRecord>, HistoryError> {
        let limit = query::limit(limit);
        // Nothing was handed out after `after`: no need to look.
        if self.local && after >= self.shared.counters.last_id.load(Ordering::Relaxed) {
            return Ok(Vec::new());
        }
        let (covered, recent) = {
            let ring = self.shared.ring();
            (ring.covers_after(after), ring.after(after, limit))
        };
        let Some(db) = self.db.clone().filter(|_| !covered) else {
            return Ok(recent);
        };
        let f = AlertFilter {
            after: Some(after),
            limit,
            ..AlertFilter::default()
        };
        let stored = blocking(move || db.query(&f, limit)).await?;
        Ok(query::merge(stored, recent, limit, false))
    }

    /// The counters now.
    pub fn stats(&self) -> HistoryStats {
        self.shared.counters.snapshot()
    }

    /// The highest id published so far (ids handed out but still being acted on are not).
    pub fn published_id(&self) -> u64 {
        self.shared.published.load(Ordering::Acquire)
    }

    /// Where a live-stream client starts: `after` is its `Last-Event-ID` (None: a new client).
    /// A new client starts after the last published alert. A client resuming from an id this
    /// procwatch has not published (it restarted without its history, and ids restarted) is
    /// told to reset, and starts after the last published alert too; a read-only view of
    /// another procwatch's file cannot tell, and resumes where asked.
    pub fn stream_start(&self, after: Option<u64>) -> StreamStart {
        let published = self.published_id();
        match after {
            None => StreamStart::After(published),
            Some(a) if self.local && a > published => StreamStart::Reset(published),
            Some(a) => StreamStart::After(a),
        }
    }

    /// The database file, when there is one.
    pub fn path(&self) -> Option<&Path> {
        self.db.as_ref().map(|d| d.path())
    }
}

/// Runs a database read on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, HistoryError> + Send + 'static,
) -> Result<T, HistoryError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| HistoryError::Task(e.to_string()))?
}

#[cfg(test)]
mod tests;
