//! The SQLite file: opened (or created) and checked, one writer connection, read connections.
//!
//! The file is never overwritten or "repaired": one that is not a procwatch alert history,
//! is damaged, or is of a newer format is refused with a message naming it. One procwatch at
//! a time writes a history (an exclusive `flock` on the file, held as long as any connection
//! is open), so ids stay unique.
use std::{
    fs::File,
    io::Read,
    os::{
        fd::AsRawFd,
        unix::fs::{DirBuilderExt, OpenOptionsExt},
    },
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};

use super::{AlertFilter, AlertRecord, HistoryError, query, retention};

/// The history format this procwatch writes and reads (`PRAGMA user_version`).
pub const FORMAT_VERSION: i64 = 1;
/// Marks the file as procwatch's (`PRAGMA application_id`, "pwAH").
const APPLICATION_ID: i64 = 0x7077_4148;
/// How long a connection waits for another one's lock before it reports the database busy.
const BUSY: Duration = Duration::from_secs(5);
/// Page cache of each connection, in KiB as SQLite takes it (negative): inserts touch the
/// newest pages of each index, and a monitor's memory stays small (SQLite's default is 2 MiB).
const CACHE_KIB: i64 = -512;

const SCHEMA: &str = "
CREATE TABLE alerts (
    id          INTEGER PRIMARY KEY,
    time_ms     INTEGER NOT NULL,
    pid         INTEGER NOT NULL,
    start_ns    INTEGER,
    exe         TEXT,
    rules       TEXT NOT NULL,
    total_score REAL NOT NULL,
    json        TEXT NOT NULL
);
CREATE INDEX alerts_by_time ON alerts (time_ms);
CREATE INDEX alerts_by_pid ON alerts (pid, id);
CREATE INDEX alerts_by_exe ON alerts (exe, id);
CREATE INDEX alerts_by_score ON alerts (total_score);
CREATE TABLE alert_rules (
    alert_id INTEGER NOT NULL,
    rule     TEXT NOT NULL,
    PRIMARY KEY (alert_id, rule)
) WITHOUT ROWID;
CREATE INDEX alert_rules_by_rule ON alert_rules (rule, alert_id);
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
";

/// The writer's connection and what it keeps count of.
pub(super) struct Store {
    conn: Connection,
    path: PathBuf,
    /// Held (with its lock) until every connection to the file is closed: closing it earlier
    /// would also drop SQLite's own POSIX locks on the file (they belong to the process).
    lock: Arc<File>,
    rows: u64,
    last_id: u64,
}

impl Store {
    /// Opens `path`, creating it (and its directory, 0700) when absent; checks that it is a
    /// history this procwatch can write, takes the writer's lock, and reads its counts.
    pub(super) fn open(path: &Path, max_pages: Option<u32>) -> Result<Self, HistoryError> {
        let io = |source| HistoryError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(io)?;
        // SAFETY: flock on a valid open descriptor.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            return Err(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                HistoryError::InUse {
                    path: path.to_path_buf(),
                }
            } else {
                io(e)
            });
        }
        check_header(&mut file, path)?;
        let sqlite = |source| HistoryError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = open_connection(path)?;
        let bad = |source: rusqlite::Error| damaged(path, source);
        prepare(&conn, path).map_err(|e| match e {
            Prepared::Refused(e) => e,
            Prepared::Sqlite(e) => bad(e),
        })?;
        if let Some(pages) = max_pages {
            conn.pragma_update_and_check(None, "max_page_count", pages, |r| r.get::<_, i64>(0))
                .map_err(sqlite)?;
        }
        let (rows, last_id) = counts(&conn).map_err(bad)?;
        Ok(Self {
            conn,
            path: path.to_path_buf(),
            lock: Arc::new(file),
            rows,
            last_id,
        })
    }

    /// Rows in the table.
    pub(super) fn rows(&self) -> u64 {
        self.rows
    }

    /// The highest id ever handed out with this file (stored or recorded).
    pub(super) fn last_id(&self) -> u64 {
        self.last_id
    }

    /// The file.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Inserts `batch`, records `last_id` (the highest id handed out so far, stored or not)
    /// and enforces retention, in one transaction. Returns how many rows retention deleted.
    pub(super) fn insert(
        &mut self,
        batch: &[Arc<AlertRecord>],
        last_id: u64,
        limits: &retention::Limits,
        now_ms: i64,
    ) -> rusqlite::Result<u64> {
        let tx = self.conn.transaction()?;
        {
            let mut alert = tx.prepare_cached(
                "INSERT INTO alerts (id, time_ms, pid, start_ns, exe, rules, total_score, json) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            let mut rule = tx.prepare_cached(
                "INSERT OR IGNORE INTO alert_rules (alert_id, rule) VALUES (?1, ?2)",
            )?;
            for r in batch {
                let id = query::sqlite_id(r.id);
                let rules = serde_json::to_string(&r.rules)
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                alert.execute(params![
                    id,
                    r.time_ms,
                    r.pid,
                    r.start_boottime_ns.and_then(|n| i64::try_from(n).ok()),
                    r.exe,
                    rules,
                    r.total_score,
                    &*r.json,
                ])?;
                for name in &r.rules {
                    rule.execute(params![id, name])?;
                }
            }
        }
        record_last_id(&tx, last_id)?;
        let rows = self.rows + batch.len() as u64;
        let evicted = retention::enforce(&tx, rows, limits, now_ms)?;
        tx.commit()?;
        self.rows = rows.saturating_sub(evicted);
        self.last_id = self.last_id.max(last_id);
        Ok(evicted)
    }

    /// Enforces retention alone (when no alert came for a while) and records `last_id`.
    pub(super) fn maintain(
        &mut self,
        last_id: u64,
        limits: &retention::Limits,
        now_ms: i64,
    ) -> rusqlite::Result<u64> {
        let tx = self.conn.transaction()?;
        if last_id > self.last_id {
            record_last_id(&tx, last_id)?;
        }
        let evicted = retention::enforce(&tx, self.rows, limits, now_ms)?;
        tx.commit()?;
        self.rows = self.rows.saturating_sub(evicted);
        self.last_id = self.last_id.max(last_id);
        Ok(evicted)
    }
}

/// Rows in the table, and the highest id handed out with the file (stored or recorded).
fn counts(conn: &Connection) -> rusqlite::Result<(u64, u64)> {
    let (rows, max_id): (i64, Option<i64>) =
        conn.query_row("SELECT count(*), max(id) FROM alerts", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    let recorded: Option<i64> = conn
        .query_row("SELECT value FROM meta WHERE key = 'last_id'", [], |r| {
            r.get(0)
        })
        .optional()?;
    let last_id = max_id.unwrap_or(0).max(recorded.unwrap_or(0));
    Ok((
        u64::try_from(rows).unwrap_or(0),
        u64::try_from(last_id).unwrap_or(0),
    ))
}

/// Records the highest id handed out, so a restart never hands one out again (also when the
/// alerts that had them were never stored, or were deleted since).
fn record_last_id(tx: &rusqlite::Transaction<'_>, last_id: u64) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('last_id', ?1) \
         ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
        [query::sqlite_id(last_id)],
    )?;
    Ok(())
}

/// Refuses a file that is neither empty nor an SQLite database, before SQLite touches it.
fn check_header(file: &mut File, path: &Path) -> Result<(), HistoryError> {
    const MAGIC: &[u8; 16] = b"SQLite format 3\0";
    let mut head = [0u8; 16];
    let mut got = 0;
    while got < head.len() {
        match file.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(HistoryError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
    }
    if got == 0 || head == *MAGIC {
        return Ok(());
    }
    Err(HistoryError::NotHistory {
        path: path.to_path_buf(),
        why: "not an SQLite database".into(),
    })
}

/// Why [`prepare`] failed.
enum Prepared {
    /// The file is not one this procwatch may use.
    Refused(HistoryError),
    /// SQLite could not read it.
    Sqlite(rusqlite::Error),
}

impl From<rusqlite::Error> for Prepared {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sqlite(e)
    }
}

/// Checks the format marks of an existing history, or creates the schema in a new (empty)
/// file; then turns on WAL.
fn prepare(conn: &Connection, path: &Path) -> Result<(), Prepared> {
    let app: i64 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let objects: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
    if app == 0 && version == 0 && objects == 0 {
        conn.execute_batch(&format!(
            "BEGIN; {SCHEMA} PRAGMA application_id = {APPLICATION_ID}; \
             PRAGMA user_version = {FORMAT_VERSION}; COMMIT;"
        ))?;
    } else {
        check_marks(conn, path)?;
    }
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), mode, "alert history: WAL mode not available; readers may wait for the writer");
    }
    // WAL with NORMAL: a crash loses at most the last transactions, never the file.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(())
}

/// Refuses a file that is not a procwatch alert history of a format this procwatch reads.
fn check_marks(conn: &Connection, path: &Path) -> Result<(), Prepared> {
    let app: i64 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let refuse = |why: String| {
        Prepared::Refused(HistoryError::NotHistory {
            path: path.to_path_buf(),
            why,
        })
    };
    if app == 0 && version == 0 {
        return Err(refuse(
            "an SQLite database of another program (it has tables, but not procwatch's mark)"
                .into(),
        ));
    }
    if app != APPLICATION_ID {
        return Err(refuse(format!(
            "an SQLite database of another program (application_id {app:#x})"
        )));
    }
    if version > FORMAT_VERSION {
        return Err(Prepared::Refused(HistoryError::NewerFormat {
            path: path.to_path_buf(),
            found: version,
        }));
    }
    if version < 1 {
        return Err(refuse(format!("unknown format version {version}")));
    }
    Ok(())
}

/// An SQLite error while reading an existing file: a damaged one is named as such.
fn damaged(path: &Path, source: rusqlite::Error) -> HistoryError {
    match source.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => HistoryError::NotHistory {
            path: path.to_path_buf(),
            why: format!("damaged ({source})"),
        },
        _ => HistoryError::Sqlite {
            path: path.to_path_buf(),
            source,
        },
    }
}

/// A read connection of the history (the API's queries).
pub(super) struct ReadDb {
    conn: Mutex<Connection>,
    path: PathBuf,
    /// The writer's lock when the writer is in this process; dropped after `conn` (see
    /// [`Store`]).
    _lock: Option<Arc<File>>,
}

impl ReadDb {
    /// A read connection to the file `store` has open.
    pub(super) fn open(store: &Store) -> Result<Self, HistoryError> {
        Self::connect(store.path(), Some(store.lock.clone()))
    }

    /// A read connection to an existing history another procwatch may be writing, checked
    /// like the writer checks it (nothing is created); with its rows and last id now.
    pub(super) fn open_existing(path: &Path) -> Result<(Self, u64, u64), HistoryError> {
        // Looked at by name only: opening and closing a descriptor of the file here would drop
        // the POSIX locks SQLite holds on it in this process.
        std::fs::metadata(path).map_err(|source| HistoryError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let db = Self::connect(path, None)?;
        let (rows, last_id) = {
            let conn = db.conn();
            check_marks(&conn, path).map_err(|e| match e {
                Prepared::Refused(e) => e,
                Prepared::Sqlite(e) => damaged(path, e),
            })?;
            counts(&conn).map_err(|e| damaged(path, e))?
        };
        Ok((db, rows, last_id))
    }

    fn connect(path: &Path, lock: Option<Arc<File>>) -> Result<Self, HistoryError> {
        let sqlite = |source| HistoryError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        let conn = open_connection(path)?;
        conn.pragma_update(None, "query_only", true)
            .map_err(sqlite)?;
        Ok(Self {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    /// The file.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The first `limit` alerts `f` selects, ascending ids.
    pub(super) fn query(
        &self,
        f: &AlertFilter,
        limit: usize,
    ) -> Result<Vec<AlertRecord>, HistoryError> {
        let (sql, params) = query::sql(f, limit);
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(params), row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// The alert with this id.
    pub(super) fn get(&self, id: u64) -> Result<Option<AlertRecord>, HistoryError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {} FROM alerts WHERE id = ?1",
            query::COLUMNS
        ))?;
        Ok(stmt.query_row([query::sqlite_id(id)], row).optional()?)
    }
}

/// One row of [`query::COLUMNS`]; a value out of range (a file edited by hand) is an error,
/// never a panic.
fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AlertRecord> {
    let id: i64 = r.get(0)?;
    let pid: i64 = r.get(2)?;
    let start: Option<i64> = r.get(3)?;
    let rules: String = r.get(5)?;
    let json: String = r.get(7)?;
    Ok(AlertRecord {
        id: u64::try_from(id).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(0, id))?,
        time_ms: r.get(1)?,
        pid: u32::try_from(pid).map_err(|_| rusqlite::Error::IntegralValueOutOfRange(2, pid))?,
        exe: r.get(4)?,
        rules: serde_json::from_str(&rules).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(5, rusqlite::types::Type::Text, Box::new(e))
        })?,
        total_score: r.get(6)?,
        json: json.into(),
        start_boottime_ns: start.and_then(|n| u64::try_from(n).ok()),
    })
}

/// A connection to `path` with the history's settings (busy timeout, page cache size).
fn open_connection(path: &Path) -> Result<Connection, HistoryError> {
    let sqlite = |source| HistoryError::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite)?;
    conn.busy_timeout(BUSY).map_err(sqlite)?;
    conn.pragma_update(None, "cache_size", CACHE_KIB)
        .map_err(|e| damaged(path, e))?;
    Ok(conn)
}
