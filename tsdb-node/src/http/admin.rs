//! Seed 003's status and admin actions, and Prometheus' delete_series (cluster-wide in a
//! cluster).

use axum::extract::{RawQuery, State};
use axum::response::Response;
use serde_json::json;

use super::error::{blocking, success};
use super::params::{pairs, selectors, time_param};
use super::{ApiError, AppState};

pub async fn status(State(ctx): State<AppState>) -> Result<Response, ApiError> {
    let engine = ctx.engine.clone();
    let stats = blocking(move || Ok(engine.stats())).await?;
    Ok(success(json!({
        "node_id": ctx.node_id,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": ctx.started.elapsed().as_secs(),
        "storage": stats,
    })))
}

pub async fn flush(State(ctx): State<AppState>) -> Result<Response, ApiError> {
    let engine = ctx.engine.clone();
    blocking(move || Ok(engine.flush()?)).await?;
    Ok(success(json!({"flushed": true})))
}

/// Flushes the head, then compacts everything into top-level blocks.
pub async fn compact(State(ctx): State<AppState>) -> Result<Response, ApiError> {
    let engine = ctx.engine.clone();
    let runs = blocking(move || {
        engine.flush()?;
        Ok(engine.compact_all()?)
    })
    .await?;
    Ok(success(json!({"compactions": runs})))
}

pub async fn downsample(State(ctx): State<AppState>) -> Result<Response, ApiError> {
    let engine = ctx.engine.clone();
    let files = blocking(move || Ok(engine.downsample()?)).await?;
    Ok(success(json!({"rollup_files_written": files})))
}

/// `POST /api/v1/admin/tsdb/delete_series?match[]=...&start=...&end=...`, as in Prometheus.
pub async fn delete_series(
    State(ctx): State<AppState>,
    RawQuery(q): RawQuery,
    body: String,
) -> Result<Response, ApiError> {
    let p = pairs(q.as_deref(), Some(&body))?;
    let sets = selectors(&p)?;
    if sets.is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let start = time_param(&p, "start", i64::MIN)?;
    let end = time_param(&p, "end", i64::MAX)?;
    if let Some(cluster) = &ctx.cluster {
        // Every member that may hold a matching series applies it; the answer waits for
        // the consistency level, like a write.
        let outcome = cluster.delete(sets, start, end).await?;
        return Ok(success(json!({
            "deleted_series": outcome.deleted_series,
            "applied_on": outcome.applied_on,
            "hinted": outcome.hinted,
        })));
    }
    let engine = ctx.engine.clone();
    let n = blocking(move || {
        let mut n = 0;
        for set in &sets {
            n += engine.delete(set, start, end)?;
        }
        Ok(n)
    })
    .await?;
    Ok(success(json!({"deleted_series": n})))
}
