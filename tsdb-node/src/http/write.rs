//! Writes over HTTP: `POST /api/v1/write` (Prometheus remote write when the body is protobuf,
//! else line protocol with millisecond timestamps, seed 003) and InfluxDB 1.x `POST /write`
//! (`precision=`, nanoseconds by default; `db=` accepted and ignored).
//!
//! Partial writes follow InfluxDB: valid lines/samples are stored, and the answer is 400 with
//! the first problem when any line or sample was refused. A 204 means everything is durable.

use axum::extract::{RawQuery, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::admission::admit;
use super::params::{get, pairs};
use super::{ApiError, AppState};
use crate::ingest::line_protocol::{self, LineOptions, Precision};
use crate::ingest::remote_write::{self, RemoteWriteLimits};
use crate::ingest::series_chunks::series_chunks;
use crate::storage::AppendOutcome;

/// Samples per storage call: bounds the memory of one append and keeps fsyncs shared.
const WRITE_CHUNK: usize = 50_000;

fn refused(out: &AppendOutcome) -> Option<String> {
    out.rejected.first().map(|(_, why)| {
        format!(
            "{} of the samples were refused; first: {why}",
            out.rejected.len()
        )
    })
}

pub async fn api_v1_write(
    State(ctx): State<AppState>,
    request: Request,
) -> Result<Response, ApiError> {
    let protobuf = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-protobuf"));
    let (body, _permit) = match admit(&ctx, request).await {
        Ok(admitted) => admitted,
        Err(refusal) => return Ok(refusal.into_response()),
    };
    if protobuf {
        let limits = RemoteWriteLimits {
            max_body: ctx.max_request_bytes,
            ..RemoteWriteLimits::default()
        };
        let mut decoded = remote_write::decode_cached(&body, &limits, &ctx.remote_write_series)
            .map_err(|e| ApiError::bad_data(e.to_string()))?;
        let metadata = std::mem::take(&mut decoded.metadata);
        if !metadata.is_empty() {
            let store = ctx.metadata.clone();
            // Metadata is advisory: failing to persist it must not refuse the samples.
            match tokio::task::spawn_blocking(move || store.record(metadata)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "could not store metric metadata"),
                Err(e) => tracing::warn!(error = %e, "metric metadata task failed"),
            }
        }
        let mut problem = None;
        for chunk in decoded.into_series_chunks(WRITE_CHUNK) {
            let out = ctx.sink.write_series(chunk).await?;
            problem = problem.or(refused(&out));
        }
        return Ok(match problem {
            None => StatusCode::NO_CONTENT.into_response(),
            Some(p) => ApiError::bad_data(p).into_response(),
        });
    }
    lines(ctx, &body, Precision::Milliseconds).await
}

pub async fn influx_write(
    State(ctx): State<AppState>,
    RawQuery(q): RawQuery,
    request: Request,
) -> Result<Response, ApiError> {
    let p = pairs(q.as_deref(), None)?;
    let precision = match get(&p, "precision") {
        None | Some("") => Precision::Nanoseconds,
        Some(v) => v
            .parse::<Precision>()
            .map_err(|e| influx_error(StatusCode::BAD_REQUEST, &e.to_string()))?,
    };
    let (body, _permit) = match admit(&ctx, request).await {
        Ok(admitted) => admitted,
        Err(refusal) => return Ok(refusal.into_response()),
    };
    lines(ctx, &body, precision).await
}

fn influx_error(status: StatusCode, message: &str) -> ApiError {
    ApiError {
        status,
        error_type: "bad_data",
        message: message.to_string(),
    }
}

async fn lines(ctx: AppState, body: &[u8], precision: Precision) -> Result<Response, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::bad_data(format!("body is not UTF-8: {e}")))?;
    let opts = LineOptions {
        precision,
        now_ms: chrono::Utc::now().timestamp_millis(),
    };
    let parsed = line_protocol::parse_series_cached(text, &opts, &ctx.line_series);
    let first_line_error = parsed
        .first_error()
        .map(|e| format!("line {}: {}", e.line, e.message));
    let line_errors = parsed.errors.len();
    let mut problem = None;
    for chunk in series_chunks(parsed.series, WRITE_CHUNK) {
        let out = ctx.sink.write_series(chunk).await?;
        problem = problem.or(refused(&out));
    }
    match first_line_error.or(problem) {
        None => Ok(StatusCode::NO_CONTENT.into_response()),
        Some(msg) => Ok((
            StatusCode::BAD_REQUEST,
            Json(json!({"error": msg, "invalid_lines": line_errors})),
        )
            .into_response()),
    }
}
