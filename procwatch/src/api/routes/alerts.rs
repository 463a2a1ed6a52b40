//! `GET /api/alerts`, `/api/alerts/{id}`, `/api/alerts/stream` (Server-Sent Events) and
//! `POST /api/alerts/{id}/accept`, over the alert history (`crate::history`).
//!
//! The stream: a client that reconnects with `Last-Event-ID` (or `?after=ID`) first gets what
//! it missed (`since`, from the history's ring or database), then live alerts from the bus.
//! The bus is bounded; a client too slow to keep up is dropped (its stream ends with an
//! `event: dropped`), counted, and resumes where it was with `Last-Event-ID` — nothing is
//! buffered for it without bound, and nothing of it reaches the engine. A client resuming
//! from an id above every id published here (ids restarted) gets `event: reset` first.
use std::{collections::HashMap, convert::Infallible, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::HeaderMap,
    response::sse::{Event, KeepAlive, Sse},
    routing::{get, post},
};
use futures_util::stream::{self, Stream};
use serde_json::{Value, json};
use tokio::sync::broadcast::{self, error::RecvError};

use super::{Params, kill::ask};
use crate::{
    api::{
        control::Request,
        error::{ApiError, ApiResult},
        server::AppState,
    },
    history::{AlertFilter, AlertRecord, DEFAULT_LIMIT, HistoryReader, MAX_LIMIT, StreamStart},
};

/// Alerts sent to a resuming client per history read.
const BACKLOG_CHUNK: usize = 1000;

/// Adds the alert routes.
pub fn routes(r: Router<AppState>) -> Router<AppState> {
    r.route("/api/alerts", get(list))
        .route("/api/alerts/stream", get(stream))
        .route("/api/alerts/{id}", get(one))
        .route("/api/alerts/{id}/accept", post(accept))
}

/// The alert of a record, as written to JSONL (it carries its `id`).
fn alert_of(r: &AlertRecord) -> Value {
    serde_json::from_str(&r.json).unwrap_or_else(|_| json!({ "id": r.id, "unreadable": true }))
}

fn history_error(e: crate::history::HistoryError) -> ApiError {
    ApiError::unavailable(e.to_string())
}

/// `since=`: RFC 3339, or unix milliseconds.
fn since_ms(text: &str) -> ApiResult<i64> {
    if let Ok(ms) = text.trim().parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            ApiError::bad_request(format!(
                "since={text:?}: an RFC 3339 time (2026-01-11T16:30:00Z) or unix milliseconds"
            ))
        })
}

fn id_of(text: &str) -> ApiResult<u64> {
    text.parse::<u64>().map_err(|_| {
        ApiError::bad_request(format!(
            "'{}' is not an alert id (a whole number)",
            crate::text::terminal_safe(text.as_bytes())
        ))
    })
}

/// `GET /api/alerts?after=&before=&order=&since=&rule=&pid=&exe=&min_score=&limit=`:
/// ascending ids after `after` (`next_after` is the cursor for the next page), or with
/// `order=desc` the newest first, below `before` (`next_before`); null when this page is the
/// last.
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let p = Params::new(
        q,
        &[
            "after",
            "before",
            "order",
            "since",
            "rule",
            "pid",
            "exe",
            "min_score",
            "limit",
        ],
    )?;
    let limit = p
        .whole("limit", 1, MAX_LIMIT as u64)?
        .map_or(DEFAULT_LIMIT, |n| n as usize);
    let pid = match p.str("pid") {
        Some(t) => Some(super::pid(t)?),
        None => None,
    };
    let newest_first = match p.str("order") {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "order={other:?}: asc or desc"
            )));
        }
    };
    let f = AlertFilter {
        after: p.whole("after", 0, u64::MAX)?,
        before: p.whole("before", 0, u64::MAX)?,
        newest_first,
        since_ms: p.str("since").map(since_ms).transpose()?,
        rule: p.str("rule").map(str::to_owned),
        pid,
        exe: p.str("exe").map(str::to_owned),
        min_score: p.score("min_score")?,
        limit,
    };
    let records = state.history.query(f).await.map_err(history_error)?;
    let next = (records.len() == limit)
        .then(|| records.last().map(|r| r.id))
        .flatten();
    let (next_after, next_before) = if newest_first {
        (None, next)
    } else {
        (next, None)
    };
    let alerts: Vec<Value> = records.iter().map(alert_of).collect();
    Ok(Json(json!({
        "count": alerts.len(),
        "next_after": next_after,
        "next_before": next_before,
        "alerts": alerts,
    })))
}

/// The alert `id` from the history; 404 when it has none.
async fn stored(state: &AppState, id: u64) -> ApiResult<AlertRecord> {
    state
        .history
        .get(id)
        .await
        .map_err(history_error)?
        .ok_or_else(|| ApiError::not_found(format!("no alert {id} in the history")))
}

/// `GET /api/alerts/{id}`.
pub async fn one(State(state): State<AppState>, Path(raw): Path<String>) -> ApiResult<Json<Value>> {
    let id = id_of(&raw)?;
    let r = stored(&state, id).await?;
    Ok(Json(alert_of(&r)))
}

/// `POST /api/alerts/{id}/accept`: adds what the alert reported to the baselines.
pub async fn accept(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> ApiResult<Json<Value>> {
    let id = id_of(&raw)?;
    let r = stored(&state, id).await?;
    let alert = alert_of(&r);
    let done = ask(&state, |reply| Request::Accept { alert, reply }).await?;
    Ok(Json(json!({
        "id": id,
        "added": done["added"],
        "skipped": done["skipped"],
    })))
}

/// Where a stream is.
enum Phase {
    /// Sending what the client missed, from the history.
    Backlog,
    /// Sending live alerts.
    Live,
    /// Told the client it was dropped; the stream ends next.
    Done,
}

/// One stream client's state.
struct Client {
    state: AppState,
    history: HistoryReader,
    live: broadcast::Receiver<Arc<AlertRecord>>,
    last: u64,
    phase: Phase,
    pending: std::collections::VecDeque<Arc<AlertRecord>>,
    /// The client resumed from an id never published here: tell it first (`event: reset`).
    reset: bool,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.state.counters.sse_clients(-1);
    }
}

fn event_of(r: &AlertRecord) -> Event {
    Event::default()
        .id(r.id.to_string())
        .event("alert")
        .data(r.json.as_ref())
}

/// `event: reset`: the client's `Last-Event-ID` is above every id published here (procwatch
/// restarted without its history, so ids started again). Its `id:` is the last published id,
/// so a browser's `EventSource` resumes from there; every alert after it follows.
fn reset_event(published: u64) -> Event {
    Event::default()
        .id(published.to_string())
        .event("reset")
        .data(
            json!({
                "reason": "Last-Event-ID is above every alert id published here (ids restarted)",
                "last_id": published,
            })
            .to_string(),
        )
}

impl Client {
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        if std::mem::take(&mut self.reset) {
            return Some((Ok(reset_event(self.last)), self));
        }
        loop {
            if let Some(r) = self.pending.pop_front() {
                if r.id <= self.last {
                    continue;
                }
                self.last = r.id;
                self.state.counters.sse_sent();
                return Some((Ok(event_of(&r)), self));
            }
            match self.phase {
                Phase::Backlog => match self.history.since(self.last, BACKLOG_CHUNK).await {
                    Ok(v) if !v.is_empty() => self.pending.extend(v.into_iter().map(Arc::new)),
                    Ok(_) => self.phase = Phase::Live,
                    Err(e) => {
                        tracing::warn!(error = %e, "api stream: history read failed; going live");
                        self.phase = Phase::Live;
                    }
                },
                Phase::Live => match self.live.recv().await {
                    Ok(r) => self.pending.push_back(r),
                    Err(RecvError::Lagged(missed)) => {
                        // Too slow: dropped, not buffered. It resumes with Last-Event-ID.
                        self.state.counters.sse_dropped();
                        self.phase = Phase::Done;
                        let ev = Event::default().event("dropped").data(
                            json!({
                                "reason": "too slow: the live alert queue overflowed",
                                "missed": missed,
                                "resume_after": self.last,
                            })
                            .to_string(),
                        );
                        return Some((Ok(ev), self));
                    }
                    Err(RecvError::Closed) => return None,
                },
                Phase::Done => return None,
            }
        }
    }
}

/// `GET /api/alerts/stream` (`Last-Event-ID` header, or `?after=ID`, resumes).
pub async fn stream(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let p = Params::new(q, &["after"])?;
    let from_header = match headers.get("last-event-id") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::bad_request("Last-Event-ID must be an alert id"))?,
        ),
        None => None,
    };
    let after = from_header.or(p.whole("after", 0, u64::MAX)?);
    // Subscribe before reading the backlog: an alert published in between is in one or both
    // (and sent once: ids only go up).
    let live = state.history.subscribe();
    // Every client starts with a backlog read: an alert sent before the subscription above
    // but published (its id counted) after `stream_start` read the id is in the ring.
    let (last, reset) = match state.history.stream_start(after) {
        StreamStart::After(a) => (a, false),
        StreamStart::Reset(published) => (published, true),
    };
    let phase = Phase::Backlog;
    state.counters.sse_clients(1);
    let client = Client {
        history: state.history.clone(),
        state,
        live,
        last,
        phase,
        pending: std::collections::VecDeque::new(),
        reset,
    };
    let s = stream::unfold(client, Client::next);
    Ok(Sse::new(s).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// The history's counters for `/metrics`.
pub fn history_metrics(state: &AppState, put: &mut dyn FnMut(&str, &str, &str, f64)) {
    let h = state.history.stats();
    put(
        "procwatch_history_rows",
        "gauge",
        "Alerts in the history database.",
        h.rows as f64,
    );
    put(
        "procwatch_history_written_total",
        "counter",
        "Alerts written to the history database.",
        h.written as f64,
    );
    put(
        "procwatch_history_write_failures_total",
        "counter",
        "History write attempts that failed (their alerts are retried).",
        h.write_failures as f64,
    );
    put(
        "procwatch_history_dropped_total",
        "counter",
        "Alerts that never reached the history database (queue full, backlog overflow, exit).",
        h.dropped as f64,
    );
    put(
        "procwatch_history_evicted_total",
        "counter",
        "History rows deleted by retention (age or row cap).",
        h.evicted as f64,
    );
    put(
        "procwatch_history_last_id",
        "gauge",
        "The highest alert id handed out.",
        h.last_id as f64,
    );
}

/// The alert paths of the OpenAPI document.
pub fn document(paths: &mut serde_json::Map<String, Value>) {
    let err = |d: &str| json!({ "description": d, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } });
    let q = |name: &str, kind: &str, d: &str| json!({ "name": name, "in": "query", "required": false, "schema": { "type": kind }, "description": d });
    let id = json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "integer" }, "description": "alert id" });
    let alert = json!({ "$ref": "#/components/schemas/Alert" });
    paths.insert("/api/alerts".into(), json!({ "get": {
        "summary": "Alert history: ascending ids after `after`, or with order=desc the newest first below `before` (the paging cursors)",
        "parameters": [
            q("after", "integer", "only alerts with a higher id (use the previous page's next_after)"),
            q("before", "integer", "only alerts with a lower id (use the previous page's next_before)"),
            q("order", "string", "asc (default: oldest first) or desc (newest first)"),
            q("since", "string", "only alerts at or after this time (RFC 3339 or unix ms)"),
            q("rule", "string", "only alerts with a reason of this rule"),
            q("pid", "integer", "only alerts of this pid"),
            q("exe", "string", "only alerts of this executable (exact path)"),
            q("min_score", "number", "only alerts scoring at least this"),
            q("limit", "integer", "at most this many (1 to 1000, default 100)"),
        ],
        "responses": {
            "200": { "description": "a page of alerts", "content": { "application/json": { "schema": {
                "type": "object", "required": ["count", "next_after", "next_before", "alerts"],
                "properties": { "count": { "type": "integer" }, "next_after": { "type": ["integer", "null"] }, "next_before": { "type": ["integer", "null"] }, "alerts": { "type": "array", "items": alert } },
            }}}},
            "400": err("bad query parameter"), "401": err("missing or wrong token"), "429": err("rate limited"), "503": err("history unreadable"),
        },
    }}));
    paths.insert("/api/alerts/{id}".into(), json!({ "get": {
        "summary": "One alert",
        "parameters": [id],
        "responses": {
            "200": { "description": "the alert", "content": { "application/json": { "schema": alert } } },
            "400": err("not an id"), "401": err("missing or wrong token"), "404": err("no such alert"), "429": err("rate limited"),
        },
    }}));
    paths.insert("/api/alerts/stream".into(), json!({ "get": {
        "summary": "Server-Sent Events of new alerts (`event: alert`, `id:` the alert id, `data:` its JSON); Last-Event-ID (or ?after=) resumes; a client too slow to keep up gets `event: dropped` and is disconnected; a client whose Last-Event-ID is above every id published (procwatch restarted without its history) first gets `event: reset` (`id:` and `data.last_id` the last published id) and then every new alert",
        "parameters": [
            q("after", "integer", "resume after this id (like Last-Event-ID)"),
            { "name": "Last-Event-ID", "in": "header", "required": false, "schema": { "type": "integer" }, "description": "resume after this id" },
        ],
        "responses": {
            "200": { "description": "the stream", "content": { "text/event-stream": { "schema": { "type": "string" } } } },
            "400": err("bad Last-Event-ID"), "401": err("missing or wrong token"), "429": err("rate limited or too many connections"),
        },
    }}));
    paths.insert("/api/alerts/{id}/accept".into(), json!({ "post": {
        "summary": "Add what the alert reported to the baselines (token)",
        "parameters": [id],
        "responses": {
            "200": { "description": "what was added and skipped", "content": { "application/json": { "schema": {
                "type": "object", "required": ["id", "added", "skipped"],
                "properties": { "id": { "type": "integer" }, "added": { "type": "array", "items": { "type": "string" } }, "skipped": { "type": "array", "items": { "type": "string" } } },
            }}}},
            "400": err("not an id, or the alert cannot be accepted"), "401": err("wrong token"), "403": err("no token sent or none configured"),
            "404": err("no such alert"), "409": err("baselines are off"), "429": err("rate limited"), "503": err("the engine is busy or stopping"),
        },
    }}));
}

/// The schema of an alert as the API returns it (`procwatch.alert/v1` with its id).
pub fn alert_schema() -> Value {
    json!({
        "type": "object",
        "description": "a procwatch.alert/v1 record (docs/schema/procwatch.alert.v1.json)",
        "required": ["id", "schema", "timestamp", "pid", "reasons", "total_score", "action"],
        "properties": {
            "id": { "type": "integer" }, "schema": { "type": "string" }, "timestamp": { "type": "string" },
            "pid": { "type": "integer" }, "reasons": { "type": "array" }, "total_score": { "type": "number" },
            "action": { "type": "string" },
        },
    })
}
