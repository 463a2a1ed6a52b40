//! `GET /api` (the endpoints), `/api/openapi.json`, `/api/health`, and the dashboard's page
//! and assets.
use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use crate::api::{
    assets,
    error::{ApiError, ApiResult},
    openapi,
    server::AppState,
};

/// `GET /api`: every endpoint, read off the OpenAPI document (one list, not two).
pub async fn index(State(state): State<AppState>) -> Json<Value> {
    let doc = openapi::document();
    let mut endpoints = Vec::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, ops) in paths {
            let Some(ops) = ops.as_object() else { continue };
            for (method, op) in ops {
                endpoints.push(json!({
                    "method": method.to_uppercase(),
                    "path": path,
                    "summary": op["summary"],
                    "needs_token": method == "post" || (state.token.is_some() && op["security"] != json!([])),
                }));
            }
        }
    }
    Json(json!({
        "name": "procwatch",
        "version": env!("CARGO_PKG_VERSION"),
        "auth": if state.token.is_some() { "bearer token" } else { "none for reads; writes refused (no token configured)" },
        "openapi": "/api/openapi.json",
        "endpoints": endpoints,
    }))
}

/// `GET /api/openapi.json`.
pub async fn openapi() -> Json<Value> {
    Json(openapi::document())
}

/// `GET /api/health`: for liveness probes (no token needed).
pub async fn health(State(state): State<AppState>) -> Json<Value> {
    let status = state.views.status.borrow().clone();
    Json(json!({
        "status": "ok",
        "command": state.command,
        "sensor": status.sensor,
        "uptime_seconds": state.started.elapsed().as_secs(),
    }))
}

fn file(path: &str) -> ApiResult<Response> {
    let (kind, bytes) =
        assets::asset(path).ok_or_else(|| ApiError::not_found(format!("no asset {path:?}")))?;
    let mut r = bytes.into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    // The page talks only to this origin; nothing it loads comes from elsewhere.
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    r.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(r)
}

/// `GET /`: the dashboard.
pub async fn page() -> ApiResult<Response> {
    file("")
}

/// `GET /assets/{path}`.
pub async fn asset(Path(path): Path<String>) -> ApiResult<Response> {
    file(&path)
}
