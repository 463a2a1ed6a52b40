//! `GET /api/processes`, `/api/suspicious` and `/api/process/{pid}`.
use std::{collections::HashMap, time::Duration};

use axum::{
    Json,
    extract::{Path, Query, State},
};
use serde_json::{Value, json};

use super::{Params, pid};
use crate::api::{
    error::{ApiError, ApiResult},
    server::AppState,
    snapshot::{Entry, ProcessRow},
};

/// Columns `sort` takes.
const SORTABLE: &[&str] = &[
    "pid",
    "ppid",
    "name",
    "total_score",
    "heuristic_score",
    "ml_score",
    "cpu_pct",
    "rss_bytes",
    "conns_outbound",
    "exe",
    "user",
    "uid",
];

/// Most rows one answer holds.
pub const MAX_LIMIT: u64 = 100_000;

/// Orders `a` and `b` by `column`.
fn compare(a: &ProcessRow, b: &ProcessRow, column: &str) -> std::cmp::Ordering {
    match column {
        "pid" => a.pid.cmp(&b.pid),
        "ppid" => a.ppid.cmp(&b.ppid),
        "name" => a.name.cmp(&b.name),
        "heuristic_score" => a.heuristic_score.total_cmp(&b.heuristic_score),
        "ml_score" => a.ml_score.total_cmp(&b.ml_score),
        "cpu_pct" => a.cpu_pct.total_cmp(&b.cpu_pct),
        "rss_bytes" => a.rss_bytes.cmp(&b.rss_bytes),
        "conns_outbound" => a.conns_outbound.cmp(&b.conns_outbound),
        "exe" => a.exe.cmp(&b.exe),
        "user" => a.user.cmp(&b.user),
        "uid" => a.uid.cmp(&b.uid),
        _ => a.total_score.total_cmp(&b.total_score),
    }
    // Ties keep a stable order, by pid.
    .then(a.pid.cmp(&b.pid))
}

/// The row of `e` with its user named.
fn named(state: &AppState, e: &Entry) -> ProcessRow {
    let mut row = e.row.clone();
    row.user = state
        .users
        .lock()
        .ok()
        .and_then(|mut u| u.name(row.uid).map(str::to_owned))
        .unwrap_or_else(|| row.uid.to_string());
    row
}

/// The rows matching the query, sorted and cut.
fn rows(state: &AppState, p: &Params, default_min: Option<f64>) -> ApiResult<Value> {
    let sort = p.str("sort").unwrap_or("total_score");
    if !SORTABLE.contains(&sort) {
        return Err(ApiError::bad_request(format!(
            "sort={sort:?}: not a column (one of {})",
            SORTABLE.join(", ")
        )));
    }
    let desc = match p.str("order") {
        None => !matches!(sort, "pid" | "ppid" | "name" | "exe" | "user" | "uid"),
        Some("desc") => true,
        Some("asc") => false,
        Some(o) => {
            return Err(ApiError::bad_request(format!("order={o:?}: asc or desc")));
        }
    };
    let min = p.score("min_score")?.or(default_min);
    let limit = p.whole("limit", 1, MAX_LIMIT)?.unwrap_or(MAX_LIMIT);
    let snap = state.views.processes.borrow().clone();
    let mut out: Vec<ProcessRow> = snap
        .entries
        .iter()
        .filter(|e| min.is_none_or(|m| e.row.total_score >= m))
        .map(|e| named(state, e))
        .collect();
    out.sort_by(|a, b| {
        let o = compare(a, b, sort);
        if desc { o.reverse() } else { o }
    });
    let total = out.len();
    out.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(json!({
        "timestamp": snap.timestamp,
        "total": total,
        "count": out.len(),
        "min_score": min,
        "processes": out,
    }))
}

/// `GET /api/processes?sort=&order=&min_score=&limit=`.
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let p = Params::new(q, &["sort", "order", "min_score", "limit"])?;
    rows(&state, &p, None).map(Json)
}

/// `GET /api/suspicious?min_score=` (default: the config's `min_score`).
pub async fn suspicious(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let p = Params::new(q, &["sort", "order", "min_score", "limit"])?;
    let default = state.views.processes.borrow().min_score;
    rows(&state, &p, Some(default)).map(Json)
}

/// What the open file descriptors of a process are, by kind (read off the engine, with a
/// deadline: a process cannot make this hang the API either).
async fn fds(pid: u32, start_ticks: u64) -> Value {
    let job = tokio::task::spawn_blocking(move || fd_summary(pid, start_ticks));
    match tokio::time::timeout(Duration::from_secs(2), job).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => json!({ "error": format!("fd read failed: {e}") }),
        Err(_) => json!({ "error": "fd read took over 2 s: abandoned" }),
    }
}

/// Most descriptors looked at.
const MAX_FDS: usize = 4096;

fn fd_summary(pid: u32, start_ticks: u64) -> Value {
    // The pid must still be the process the table knows (not a newer one that reused it).
    match crate::procfs::stat::read_stat(pid) {
        Ok(st) if start_ticks == 0 || st.start_ticks == start_ticks => {}
        Ok(_) => return json!({ "error": "the pid now belongs to another process" }),
        Err(e) => return json!({ "error": format!("/proc/{pid}: {e}") }),
    }
    let dir = match std::fs::read_dir(format!("/proc/{pid}/fd")) {
        Ok(d) => d,
        Err(e) => return json!({ "error": format!("/proc/{pid}/fd: {e}") }),
    };
    let mut kinds: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
    let mut deleted = Vec::new();
    let mut total = 0u64;
    let mut truncated = false;
    for (i, ent) in dir.flatten().enumerate() {
        if i >= MAX_FDS {
            truncated = true;
            break;
        }
        total += 1;
        let Ok(target) = std::fs::read_link(ent.path()) else {
            continue;
        };
        let t = crate::text::os_lossy(target.as_os_str());
        let kind = if t.starts_with("socket:") {
            "socket"
        } else if t.starts_with("pipe:") {
            "pipe"
        } else if t.starts_with("anon_inode:") {
            "anon_inode"
        } else if t.starts_with("/memfd:") {
            "memfd"
        } else if t.ends_with(" (deleted)") {
            if deleted.len() < 16 {
                deleted.push(t.into_owned());
            }
            "deleted_file"
        } else if t.starts_with('/') {
            "file"
        } else {
            "other"
        };
        *kinds.entry(kind).or_default() += 1;
    }
    json!({ "total": total, "by_kind": kinds, "deleted_files": deleted, "truncated": truncated })
}

/// `GET /api/process/{pid}`.
pub async fn detail(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> ApiResult<Json<Value>> {
    let pid = pid(&raw)?;
    let snap = state.views.processes.borrow().clone();
    let e = snap
        .get(pid)
        .ok_or_else(|| ApiError::not_found(format!("no live process {pid} is tracked")))?;
    let row = named(&state, e);
    // Ancestors from the same copy of the table: parent first, no loops, bounded.
    let mut ancestors = Vec::new();
    let mut cur = e.row.ppid;
    while cur != 0 && ancestors.len() < 16 {
        let Some(a) = snap.get(cur) else {
            ancestors.push(json!({ "pid": cur, "name": null, "exe": null }));
            break;
        };
        ancestors.push(json!({ "pid": cur, "name": a.row.name, "exe": a.row.exe }));
        if a.row.ppid == cur || ancestors.iter().any(|x| x["pid"] == a.row.ppid) {
            break;
        }
        cur = a.row.ppid;
    }
    let anomalous: Vec<&crate::alert::Reason> = e
        .row
        .reasons
        .iter()
        .filter(|r| r.anomaly.is_some())
        .collect();
    let baseline = super::baselines::of_exe(&state, e.row.exe.as_deref());
    let fds = fds(pid, e.facts.start_ticks).await;
    let mut v = serde_json::to_value(&row).unwrap_or_default();
    let facts = serde_json::to_value(&e.facts).unwrap_or_default();
    if let (Some(obj), Value::Object(f)) = (v.as_object_mut(), facts) {
        obj.extend(f);
        obj.insert("ancestors".into(), json!(ancestors));
        obj.insert("fds".into(), fds);
        obj.insert("baseline".into(), baseline);
        obj.insert("anomalous_now".into(), json!(anomalous));
    }
    Ok(Json(v))
}
