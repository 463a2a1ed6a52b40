//! Retention: alerts older than `max_age` and those past `max_rows` (the oldest first) are
//! deleted. Runs inside every write transaction and on its own when no alert comes for a
//! while, so the file never grows past its bounds by more than one batch. Cheap: an indexed
//! range delete by time, and a delete by id below a bound found `excess` rows into the
//! primary key.
use std::time::Duration;

use rusqlite::{OptionalExtension, Transaction};

/// The bounds of the history.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Alerts older than this are deleted.
    pub max_age: Duration,
    /// At most this many rows are kept.
    pub max_rows: u64,
}

/// Deletes what is past the bounds, given that the table has `rows` rows now and the time is
/// `now_ms`; returns how many rows were deleted.
pub(super) fn enforce(
    tx: &Transaction<'_>,
    rows: u64,
    limits: &Limits,
    now_ms: i64,
) -> rusqlite::Result<u64> {
    let age_ms = i64::try_from(limits.max_age.as_millis()).unwrap_or(i64::MAX);
    let cutoff = now_ms.saturating_sub(age_ms);
    tx.execute(
        "DELETE FROM alert_rules WHERE alert_id IN (SELECT id FROM alerts WHERE time_ms < ?1)",
        [cutoff],
    )?;
    let old = tx.execute("DELETE FROM alerts WHERE time_ms < ?1", [cutoff])? as u64;
    let rows = rows.saturating_sub(old);
    let mut evicted = old;
    if rows > limits.max_rows {
        let excess = rows - limits.max_rows;
        // The id of the last row to go: `excess` rows into the primary key, oldest first.
        let bound: Option<i64> = tx
            .query_row(
                "SELECT id FROM alerts ORDER BY id LIMIT 1 OFFSET ?1",
                [i64::try_from(excess - 1).unwrap_or(i64::MAX)],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(bound) = bound {
            tx.execute("DELETE FROM alert_rules WHERE alert_id <= ?1", [bound])?;
            evicted += tx.execute("DELETE FROM alerts WHERE id <= ?1", [bound])? as u64;
        }
    }
    Ok(evicted)
}
