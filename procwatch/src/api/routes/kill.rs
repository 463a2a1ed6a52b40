//! `POST /api/process/{pid}/kill`: the engine checks the request like `--kill-on-alert` (never
//! pid 1, kernel threads, procwatch or its parent, exempt processes, or outside
//! `--enforce-scope-pid`), the action stage kills the exact process (pid + start time +
//! executable, through a pidfd), and the kill is recorded as an alert with its action.
use std::time::Duration;

use axum::{
    Json,
    extract::{Path, Query, State},
    http::StatusCode,
};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::pid;
use crate::api::{
    control::Request,
    error::{ApiError, ApiResult},
    server::AppState,
};

/// How long a request waits for the engine and the action stage.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends `req` to the engine and waits for the answer.
pub async fn ask(
    state: &AppState,
    make: impl FnOnce(oneshot::Sender<Result<Value, crate::engine::ApiRefusal>>) -> Request,
) -> ApiResult<Value> {
    let (tx, rx) = oneshot::channel();
    state.control.try_send(make(tx)).map_err(|e| match e {
        tokio::sync::mpsc::error::TrySendError::Full(_) => {
            ApiError::unavailable("the engine has too many requests queued; try again")
        }
        tokio::sync::mpsc::error::TrySendError::Closed(_) => {
            ApiError::unavailable("the engine is stopping")
        }
    })?;
    match tokio::time::timeout(REPLY_TIMEOUT, rx).await {
        Ok(Ok(Ok(v))) => Ok(v),
        Ok(Ok(Err(refusal))) => Err(refusal.into()),
        Ok(Err(_)) => Err(ApiError::unavailable(
            "the engine dropped the request (stopping)",
        )),
        Err(_) => Err(ApiError::unavailable(
            "the engine did not answer within 30 s",
        )),
    }
}

/// The query of a kill: which process the user saw.
#[derive(Debug, serde::Deserialize)]
pub struct KillQuery {
    /// `start_boottime_ns` of the process as displayed (`GET /api/process/{pid}`).
    pub start_boottime_ns: Option<u64>,
}

/// `POST /api/process/{pid}/kill`: 200 with the alert when killed; 409 with the alert when
/// the kill was attempted and did not happen (the process was gone, ...); 403/404/409 when
/// refused before.
pub async fn kill(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    Query(q): Query<KillQuery>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let pid = pid(&raw)?;
    let Some(shown) = q.start_boottime_ns else {
        return Err(ApiError::bad_request(
            "name the process as shown: ?start_boottime_ns= (from GET /api/process/{pid})",
        ));
    };
    // The pid may have been reused since the user looked: kill only the process they saw.
    let now = state
        .views
        .processes
        .borrow()
        .get(pid)
        .and_then(|e| e.facts.start_boottime_ns);
    if let Some(now) = now
        && now != shown
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "process {pid} is not the one shown: it started at {now} ns (boot time), not \
                 {shown}; reload and try again"
            ),
        ));
    }
    let alert = ask(&state, |reply| Request::Kill { pid, reply }).await?;
    let killed = alert["action"] == "killed";
    let status = if killed {
        StatusCode::OK
    } else {
        StatusCode::CONFLICT
    };
    let mut body = json!({ "pid": pid, "killed": killed, "alert": alert });
    if !killed {
        body["error"] = json!(format!(
            "not killed: {}",
            alert["action_reason"]
                .as_str()
                .unwrap_or("the kill did not happen")
        ));
        body["status"] = json!(409);
    }
    Ok((status, Json(body)))
}
