//! Liveness and readiness.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use super::AppState;

/// Alive: the process answers.
pub async fn health(State(ctx): State<AppState>) -> impl IntoResponse {
    Json(
        json!({"status": "ok", "node_id": ctx.node_id, "uptime_seconds": ctx.started.elapsed().as_secs()}),
    )
}

/// Ready: the WAL is replayed and the node takes traffic (and is not shutting down).
pub async fn ready(State(ctx): State<AppState>) -> impl IntoResponse {
    if ctx.ready.load(Ordering::SeqCst) {
        (StatusCode::OK, Json(json!({"status": "ready"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not ready"})),
        )
    }
}
