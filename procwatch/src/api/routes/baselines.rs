//! `GET /api/baselines` and `GET /api/baselines/{exe}`, from the published copy of the model
//! (copied only while clients ask for it, at most every `BASELINES_EVERY`).
use std::sync::atomic::Ordering::Relaxed;

use axum::{
    Json,
    extract::{Path, State},
};
use serde_json::{Value, json};

use crate::{
    api::{
        error::{ApiError, ApiResult},
        server::AppState,
    },
    baseline::{edit, view},
};

/// `GET /api/baselines`: one line per executable (as `baseline list --json`).
pub async fn list(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    state.views.baselines_wanted.store(true, Relaxed);
    let snap = state.views.baselines.borrow().clone();
    let as_of = crate::baseline::anomaly::rfc3339(snap.taken);
    let Some(model) = &snap.model else {
        return Ok(Json(json!({
            "enabled": false,
            "as_of": as_of,
            "executables": [],
        })));
    };
    let mut v = view::list_json_all(model, &snap.cfg, crate::learning::now_secs());
    if let Some(obj) = v.as_object_mut() {
        obj.insert("enabled".into(), true.into());
        obj.insert("as_of".into(), as_of.into());
    }
    Ok(Json(v))
}

/// `GET /api/baselines/{exe}`: everything the baseline of one executable holds (as
/// `baseline show --json`); `exe` is its path (the leading `/` may be left out) or a name only
/// one executable has.
pub async fn show(
    State(state): State<AppState>,
    Path(exe): Path<String>,
) -> ApiResult<Json<Value>> {
    state.views.baselines_wanted.store(true, Relaxed);
    let snap = state.views.baselines.borrow().clone();
    let Some(model) = &snap.model else {
        return Err(ApiError::not_found("baselines are off: there is no model"));
    };
    let path = if exe.contains('/') && !exe.starts_with('/') {
        format!("/{exe}")
    } else {
        exe
    };
    let key = edit::find_exe(model, std::path::Path::new(&path))
        .map_err(|e| ApiError::not_found(e.to_string()))?;
    let b = model
        .get(&key)
        .ok_or_else(|| ApiError::not_found(format!("{key} is not in the model")))?;
    let mut v = view::show_json(model, &key, b, &snap.cfg, crate::learning::now_secs());
    if let Some(obj) = v.as_object_mut() {
        obj.insert(
            "as_of".into(),
            crate::baseline::anomaly::rfc3339(snap.taken).into(),
        );
    }
    Ok(Json(v))
}

/// The baseline of the executable `exe`, for a process's detail (null when none).
pub fn of_exe(state: &AppState, exe: Option<&str>) -> Value {
    state.views.baselines_wanted.store(true, Relaxed);
    let snap = state.views.baselines.borrow().clone();
    let (Some(model), Some(exe)) = (&snap.model, exe) else {
        return Value::Null;
    };
    let Ok(key) = edit::find_exe(model, std::path::Path::new(exe)) else {
        return Value::Null;
    };
    model.get(&key).map_or(Value::Null, |b| {
        view::show_json(model, &key, b, &snap.cfg, crate::learning::now_secs())
    })
}
