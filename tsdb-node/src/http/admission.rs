//! Admission of HTTP write bodies: a write reserves its share of the node's in-flight request
//! budget *before* its body is read, so that many clients sending faster than the disk syncs
//! make requests wait (and, past a deadline, get 503 with `Retry-After`, which Prometheus'
//! remote write and Telegraf retry) instead of filling memory with bodies.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::AppState;
use crate::ingest::BudgetPermit;

/// A body's bytes are held next to their decompressed form and the decoded samples (one label
/// set per series or line): about this many times the body while a write is parsed.
const EXPANSION: usize = 4;

/// Seconds a refused client is asked to wait before retrying.
const RETRY_AFTER_SECS: u64 = 1;

/// Why a write body was not admitted.
pub enum Refusal {
    /// The budget stayed exhausted for the whole wait.
    Busy(Duration),
    /// The body is over `limits.max_request_bytes`.
    TooLarge(usize),
    /// Reading the body failed (axum's own rejection, e.g. the length limit mid-send).
    Body(Response),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Busy(wait) => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, RETRY_AFTER_SECS.to_string())],
                Json(json!({
                    "status": "error",
                    "errorType": "unavailable",
                    "error": format!(
                        "too many writes in flight: the node is writing slower than clients send \
                         (waited {} ms); retry later",
                        wait.as_millis()
                    ),
                })),
            )
                .into_response(),
            Refusal::TooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                Json(json!({
                    "status": "error",
                    "errorType": "bad_data",
                    "error": format!("request body is larger than the limit of {limit} bytes"),
                })),
            )
                .into_response(),
            Refusal::Body(r) => r,
        }
    }
}

/// Reserves the budget for a write body, then reads it (within `DefaultBodyLimit`). The
/// permit must be kept until the write is stored.
pub async fn admit(ctx: &AppState, request: Request) -> Result<(Bytes, BudgetPermit), Refusal> {
    let limit = ctx.max_request_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(n) = declared {
        if n > limit {
            return Err(Refusal::TooLarge(limit));
        }
    }
    // A chunked body of unknown length is charged as the largest one allowed.
    let cost = declared.unwrap_or(limit).saturating_mul(EXPANSION);
    let permit = ctx
        .write_admission
        .acquire_within(cost, ctx.write_wait)
        .await
        .map_err(|busy| {
            tracing::debug!(cost, wait = ?busy.0, "write refused: in-flight budget exhausted");
            Refusal::Busy(busy.0)
        })?;
    let bytes = Bytes::from_request(request, &())
        .await
        .map_err(|r| Refusal::Body(r.into_response()))?;
    Ok((bytes, permit))
}
