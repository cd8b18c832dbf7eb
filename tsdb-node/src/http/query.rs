//! `/api/v1/query` and `/api/v1/query_range` (GET, or POST with a form body), evaluated by the
//! PromQL engine on the blocking pool.

use axum::extract::{RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::params::{get, pairs, time_param};
use super::{ApiError, AppState};
use crate::config::parse_duration;
use crate::promql::{render_data_bytes, QueryError, QueryOptions, QueryResult};

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        ApiError {
            status: StatusCode::from_u16(e.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            error_type: e.error_type(),
            message: e.to_string(),
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A step as float seconds or a duration such as `15s`.
fn step_ms(s: &str) -> Result<i64, ApiError> {
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs > 0.0 && secs < 1e12 {
            return Ok(((secs * 1000.0).round() as i64).max(1));
        }
        return Err(ApiError::bad_data(format!(
            "invalid step {s:?}: must be a positive duration"
        )));
    }
    let d = parse_duration(s).map_err(|e| ApiError::bad_data(format!("invalid step: {e}")))?;
    match i64::try_from(d.as_millis()) {
        Ok(ms) if ms > 0 => Ok(ms),
        _ => Err(ApiError::bad_data(format!(
            "invalid step {s:?}: must be a positive duration"
        ))),
    }
}

/// `partial_response=false` asks for an error instead of an answer that may miss data.
fn check_complete(p: &[(String, String)], r: &QueryResult) -> Result<(), ApiError> {
    if get(p, "partial_response") == Some("false") && !r.warnings.is_empty() {
        return Err(ApiError::unavailable(r.warnings.join("; ")));
    }
    Ok(())
}

/// `pushdown=false` evaluates an aggregation over raw series even where a cluster could
/// push it down to the replicas.
fn options(p: &[(String, String)]) -> Result<QueryOptions, ApiError> {
    let pushdown = match get(p, "pushdown") {
        None | Some("true") | Some("1") => true,
        Some("false") | Some("0") => false,
        Some(other) => {
            return Err(ApiError::bad_data(format!(
                "invalid pushdown {other:?}: must be true or false"
            )))
        }
    };
    Ok(QueryOptions { pushdown })
}

/// The success envelope around `r`, rendered on the thread that evaluated it (a blocking one
/// unless the query was small): a long matrix takes a while to format and should not hold up
/// an async worker. The buffer becomes the response body as it is.
fn render(r: &QueryResult) -> Vec<u8> {
    let mut body = Vec::with_capacity(256);
    body.extend_from_slice(b"{\"status\":\"success\",\"data\":");
    render_data_bytes(r, &mut body);
    if !r.warnings.is_empty() {
        body.extend_from_slice(b",\"warnings\":");
        body.extend_from_slice(
            serde_json::to_string(&r.warnings)
                .unwrap_or_else(|_| "[]".into())
                .as_bytes(),
        );
    }
    body.push(b'}');
    body
}

fn respond(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn instant(
    ctx: AppState,
    q: Option<String>,
    form: Option<String>,
) -> Result<Response, ApiError> {
    let p = pairs(q.as_deref(), form.as_deref())?;
    let query = get(&p, "query")
        .ok_or_else(|| ApiError::bad_data("missing parameter \"query\""))?
        .to_string();
    let time = time_param(&p, "time", now_ms())?;
    let opts = options(&p)?;
    let engine = ctx.queries.clone();
    // A query the index shows to be small is answered right here: the hand-off to the
    // blocking pool and back would cost more than evaluating it.
    if let Some(r) = engine.instant_inline(&query, time, &opts) {
        let r = r?;
        check_complete(&p, &r)?;
        return Ok(respond(render(&r)));
    }
    let body = super::error::blocking(move || {
        let r = engine.instant_with(&query, time, &opts)?;
        check_complete(&p, &r)?;
        Ok(render(&r))
    })
    .await?;
    Ok(respond(body))
}

async fn range(
    ctx: AppState,
    q: Option<String>,
    form: Option<String>,
) -> Result<Response, ApiError> {
    let p = pairs(q.as_deref(), form.as_deref())?;
    let query = get(&p, "query")
        .ok_or_else(|| ApiError::bad_data("missing parameter \"query\""))?
        .to_string();
    let need =
        |k: &str| get(&p, k).ok_or_else(|| ApiError::bad_data(format!("missing parameter {k:?}")));
    let start = time_param(&p, "start", 0).and_then(|v| need("start").map(|_| v))?;
    let end = time_param(&p, "end", 0).and_then(|v| need("end").map(|_| v))?;
    let step = step_ms(need("step")?)?;
    let opts = options(&p)?;
    let engine = ctx.queries.clone();
    let body = super::error::blocking(move || {
        let r = engine.range_with(&query, start, end, step, &opts)?;
        check_complete(&p, &r)?;
        Ok(render(&r))
    })
    .await?;
    Ok(respond(body))
}

pub async fn query_get(
    State(ctx): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    instant(ctx, q, None).await
}

pub async fn query_post(
    State(ctx): State<AppState>,
    RawQuery(q): RawQuery,
    body: String,
) -> Result<Response, ApiError> {
    instant(ctx, q, Some(body)).await
}

pub async fn query_range_get(
    State(ctx): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    range(ctx, q, None).await
}

pub async fn query_range_post(
    State(ctx): State<AppState>,
    RawQuery(q): RawQuery,
    body: String,
) -> Result<Response, ApiError> {
    range(ctx, q, Some(body)).await
}
