//! History queries: the SQL for an [`AlertFilter`], and merging stored alerts with the ones
//! still on their way to the disk.
use rusqlite::types::Value;

use super::{AlertFilter, AlertRecord};

/// Alerts a query returns when it names no limit.
pub const DEFAULT_LIMIT: usize = 100;
/// Most alerts one query returns (page with `after` or `before` for more): a page is parsed
/// and answered whole, so this bounds what one request can make the monitor hold.
pub const MAX_LIMIT: usize = 1_000;

/// The limit a query runs with: 0 means [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`].
pub(super) fn limit(asked: usize) -> usize {
    match asked {
        0 => DEFAULT_LIMIT,
        n => n.min(MAX_LIMIT),
    }
}

/// The columns every query reads, in the order `store::row` takes them.
pub(super) const COLUMNS: &str = "id, time_ms, pid, start_ns, exe, rules, total_score, json";

/// The SQL and its parameters for `f`, at most `limit` rows, ascending ids (descending when
/// `f.newest_first`).
pub(super) fn sql(f: &AlertFilter, limit: usize) -> (String, Vec<Value>) {
    let mut clauses = Vec::new();
    let mut params = Vec::new();
    let mut add = |clause: &str, v: Value| {
        clauses.push(clause.to_string());
        params.push(v);
    };
    if let Some(after) = f.after {
        add("id > ?", Value::Integer(sqlite_id(after)));
    }
    if let Some(before) = f.before {
        add("id < ?", Value::Integer(sqlite_id(before)));
    }
    if let Some(t) = f.since_ms {
        add("time_ms >= ?", Value::Integer(t));
    }
    if let Some(rule) = &f.rule {
        add(
            "id IN (SELECT alert_id FROM alert_rules WHERE rule = ?)",
            Value::Text(rule.clone()),
        );
    }
    if let Some(pid) = f.pid {
        add("pid = ?", Value::Integer(i64::from(pid)));
    }
    if let Some(exe) = &f.exe {
        add("exe = ?", Value::Text(exe.clone()));
    }
    if let Some(min) = f.min_score {
        add("total_score >= ?", Value::Real(min));
    }
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    };
    params.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
    (
        format!(
            "SELECT {COLUMNS} FROM alerts{filter} ORDER BY id {} LIMIT ?",
            if f.newest_first { "DESC" } else { "ASC" }
        ),
        params,
    )
}

/// An id as SQLite stores it (its integers are signed; ids past `i64::MAX` never occur, and
/// a cursor past it selects nothing).
pub(super) fn sqlite_id(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

/// The first `limit` alerts of both lists by id (the last, in descending order, when
/// `newest_first`), each once: the database has what was written, the ring what is recent
/// (some of it not yet written, some evicted or dropped from the database).
pub(super) fn merge(
    stored: Vec<AlertRecord>,
    recent: Vec<AlertRecord>,
    limit: usize,
    newest_first: bool,
) -> Vec<AlertRecord> {
    let mut all: std::collections::BTreeMap<u64, AlertRecord> =
        stored.into_iter().map(|r| (r.id, r)).collect();
    for r in recent {
        all.entry(r.id).or_insert(r);
    }
    if newest_first {
        all.into_values().rev().take(limit).collect()
    } else {
        all.into_values().take(limit).collect()
    }
}
