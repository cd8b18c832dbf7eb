//! The seeds' own query endpoints, kept so their clients work unchanged:
//! - seed 000 `GET /query?metric=..&from=..&to=..[&tag=value...]` (Grafana Infinity);
//! - seed 004 `GET /query?series=ID&start=..&end=..`, `GET /stats`, `GET /series`;
//! - seed 001 `POST /query` (one aggregate of a device's metric) and `DELETE /query`.
//!
//! In a cluster the reads fan out like the Prometheus API's (through the query engine's
//! [`SeriesSource`]), so any node answers for all the data; when replicas were unreachable
//! the answer carries the source's `warnings`. `/stats` stays node-local: it describes this
//! node's storage.

use std::time::Instant;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::blocking;
use super::params::{pairs, parse_time_ms};
use super::{ApiError, AppState};
use crate::promql::source::SelectedSeries;
use crate::promql::Sourced;
use crate::storage::codec::Aggregate;
use crate::storage::{Matcher, METRIC_NAME_LABEL};

/// Metric name the binary protocol's series live under (DESIGN.md "Data model").
pub const BINARY_METRIC: &str = "ztsdb_series";

/// A time parameter in milliseconds: integer milliseconds (what Grafana's `$__from` gives),
/// or RFC 3339.
fn ms_param(v: Option<&str>, default: i64, key: &str) -> Result<i64, ApiError> {
    match v {
        None | Some("") => Ok(default),
        Some(s) => s
            .parse::<i64>()
            .or_else(|_| parse_time_ms(s))
            .map_err(|e| ApiError::bad_data(format!("invalid {key}: {e}"))),
    }
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| ms.to_string())
}

fn json_number(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}

/// The selected series' samples in `[mint, maxt]`, from wherever the query engine reads.
async fn select(
    ctx: &AppState,
    matchers: Vec<Matcher>,
    mint: i64,
    maxt: i64,
) -> Result<Sourced<SelectedSeries>, ApiError> {
    let source = ctx.queries.source().clone();
    blocking(move || Ok(source.select(&matchers, mint, maxt)?)).await
}

/// `body` with the source's warnings added, when there are any.
fn with_warnings(mut body: Value, mut warnings: Vec<String>) -> Response {
    warnings.dedup();
    if !warnings.is_empty() {
        body["warnings"] = json!(warnings);
    }
    Json(body).into_response()
}

pub async fn get_query(
    State(ctx): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = pairs(q.as_deref(), None)?;
    let get = |k: &str| super::params::get(&p, k);
    if let Some(series) = get("series") {
        let id: u64 = series.parse().map_err(|_| {
            ApiError::bad_data(format!(
                "series must be an unsigned integer, got {series:?}"
            ))
        })?;
        let start = ms_param(get("start"), i64::MIN, "start")?;
        let end = ms_param(get("end"), i64::MAX - 1, "end")?;
        let matchers = vec![
            Matcher::equal(METRIC_NAME_LABEL, BINARY_METRIC),
            Matcher::equal("series_id", id.to_string()),
        ];
        let found = select(&ctx, matchers, start, end).await?;
        let points: Vec<Value> = found
            .data
            .iter()
            .flat_map(|(_, samples)| samples.iter())
            .map(|x| json!({"timestamp": x.t, "value": json_number(x.v)}))
            .collect();
        return Ok(with_warnings(
            json!({"series_id": id, "count": points.len(), "points": points}),
            found.warnings,
        ));
    }
    let Some(metric) = get("metric") else {
        return Err(ApiError::bad_data(
            "give either metric= (seed 000) or series= (seed 004)",
        ));
    };
    let from = ms_param(get("from"), i64::MIN, "from")?;
    let to = ms_param(get("to"), i64::MAX - 1, "to")?;
    let mut matchers = vec![Matcher::equal(METRIC_NAME_LABEL, metric)];
    for (k, v) in &p {
        if !["metric", "from", "to"].contains(&k.as_str()) {
            matchers.push(Matcher::equal(k.clone(), v.clone()));
        }
    }
    let found = select(&ctx, matchers, from, to).await?;
    let mut values: Vec<(i64, f64)> = found
        .data
        .iter()
        .flat_map(|(_, samples)| samples.iter().map(|x| (x.t, x.v)))
        .collect();
    values.sort_by_key(|v| v.0);
    let values: Vec<Value> = values
        .iter()
        .map(|(t, v)| json!([rfc3339(*t), json_number(*v)]))
        .collect();
    Ok(with_warnings(
        json!({"metric": metric, "values": values}),
        found.warnings,
    ))
}

#[derive(Deserialize)]
pub struct DeviceQuery {
    device_id: String,
    metric_name: String,
    #[serde(default)]
    operation: Option<String>,
    /// Unix seconds; 0 means the beginning of time.
    #[serde(default)]
    start_time: i64,
    /// Unix seconds; 0 means now.
    #[serde(default)]
    end_time: i64,
}

fn device_matchers(q: &DeviceQuery) -> Vec<Matcher> {
    vec![
        Matcher::equal(METRIC_NAME_LABEL, q.metric_name.clone()),
        Matcher::equal("device_id", q.device_id.clone()),
    ]
}

fn seconds_range(q: &DeviceQuery) -> (i64, i64) {
    let start = if q.start_time == 0 {
        i64::MIN
    } else {
        q.start_time.saturating_mul(1000)
    };
    let end = if q.end_time == 0 {
        i64::MAX
    } else {
        q.end_time.saturating_mul(1000).saturating_add(1000)
    };
    (start, end)
}

pub async fn post_query(State(ctx): State<AppState>, body: String) -> Result<Response, ApiError> {
    let q: DeviceQuery = serde_json::from_str(&body)
        .map_err(|e| ApiError::bad_data(format!("invalid query body: {e}")))?;
    let op = q.operation.clone().unwrap_or_else(|| "avg".into());
    if !["avg", "sum", "min", "max", "count"].contains(&op.as_str()) {
        return Err(ApiError::bad_data(format!(
            "unknown operation {op:?} (avg, sum, min, max or count)"
        )));
    }
    let matchers = device_matchers(&q);
    let (t0, t1) = seconds_range(&q);
    let source = ctx.queries.source().clone();
    let started = Instant::now();
    let (total, warnings) = blocking(move || {
        let mut total = Aggregate::new();
        // One node's storage aggregates from chunk summaries; a fan-out reads the samples
        // (deduplicated across replicas) and folds them here.
        if let Some(engine) = source.local_engine() {
            for a in engine.aggregate(&matchers, t0, t1)? {
                total.merge(&a.aggregate);
            }
            return Ok((total, Vec::new()));
        }
        let found = source.select(&matchers, t0, t1.saturating_sub(1))?;
        for (_, samples) in &found.data {
            let mut series = Aggregate::new();
            for x in samples {
                series.add(*x);
            }
            total.merge(&series);
        }
        Ok((total, found.warnings))
    })
    .await?;
    let result = match op.as_str() {
        _ if total.count == 0 => Value::Null,
        "avg" => json_number(total.sum / total.count as f64),
        "sum" => json_number(total.sum),
        "min" => json_number(total.min),
        "max" => json_number(total.max),
        _ => json!(total.count),
    };
    Ok(with_warnings(
        json!({
            "device_id": q.device_id,
            "metric_name": q.metric_name,
            "operation": op,
            "result": result,
            "count": total.count,
            "duration_ns": started.elapsed().as_nanos() as u64,
        }),
        warnings,
    ))
}

/// Deletes a device's metric (optionally within `start_time`..`end_time`, Unix seconds).
pub async fn delete_device_metric(
    State(ctx): State<AppState>,
    body: String,
) -> Result<Response, ApiError> {
    let q: DeviceQuery = serde_json::from_str(&body)
        .map_err(|e| ApiError::bad_data(format!("invalid delete body: {e}")))?;
    let matchers = device_matchers(&q);
    let (t0, t1) = seconds_range(&q);
    let n = match &ctx.cluster {
        Some(cluster) => {
            cluster
                .delete(vec![matchers], t0, t1.saturating_sub(1))
                .await?
                .deleted_series as usize
        }
        None => {
            let engine = ctx.engine.clone();
            blocking(move || Ok(engine.delete(&matchers, t0, t1.saturating_sub(1))?)).await?
        }
    };
    Ok(
        Json(json!({"device_id": q.device_id, "metric_name": q.metric_name, "deleted_series": n}))
            .into_response(),
    )
}

pub async fn stats(State(ctx): State<AppState>) -> Result<Response, ApiError> {
    let engine = ctx.engine.clone();
    let s = blocking(move || Ok(engine.stats())).await?;
    Ok(Json(json!({
        "series": s.series,
        "points": s.segment_samples + s.head_samples,
        "head_points": s.head_samples,
        "segments": s.raw_segments,
        "bytes_on_disk": s.segment_bytes + s.wal_bytes,
        "min_time": s.min_time,
        "max_time": s.max_time,
        "uptime_seconds": ctx.started.elapsed().as_secs(),
    }))
    .into_response())
}

pub async fn series_list(State(ctx): State<AppState>) -> Result<Response, ApiError> {
    let source = ctx.queries.source().clone();
    let all = blocking(move || {
        let any = Matcher::new(crate::storage::MatchOp::RegexMatch, METRIC_NAME_LABEL, ".+")
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(source.series(&[any], i64::MIN, i64::MAX)?)
    })
    .await?;
    let list: Vec<Value> = all
        .data
        .iter()
        .map(|l| {
            let labels: serde_json::Map<String, Value> = l
                .iter()
                .map(|x| (x.name.clone(), Value::String(x.value.clone())))
                .collect();
            json!({"metric": l.metric_name(), "labels": labels})
        })
        .collect();
    Ok(with_warnings(
        json!({"count": list.len(), "series": list}),
        all.warnings,
    ))
}
