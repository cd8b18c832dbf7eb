//! Prometheus HTTP API metadata endpoints: series, labels, label values, metadata, buildinfo.
//! (`/api/v1/query` and `/api/v1/query_range` live with the PromQL engine's handlers.)

use std::collections::BTreeSet;

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::error::{blocking, success};
use super::params::{pairs, selectors, time_param};
use super::{ApiError, AppState};
use crate::storage::{Labels, Matcher};

fn labels_json(l: &Labels) -> Value {
    let mut m = Map::new();
    for label in l.iter() {
        m.insert(label.name.clone(), Value::String(label.value.clone()));
    }
    Value::Object(m)
}

struct Range {
    sets: Vec<Vec<Matcher>>,
    start: i64,
    end: i64,
    /// `partial_response=false`: fail instead of answering with possibly missing data.
    strict: bool,
}

/// The success envelope with the source's warnings, or an error when the caller asked for
/// complete answers only.
fn respond(data: Value, mut warnings: Vec<String>, strict: bool) -> Result<Response, ApiError> {
    warnings.dedup();
    if warnings.is_empty() {
        return Ok(success(data));
    }
    if strict {
        return Err(ApiError::unavailable(warnings.join("; ")));
    }
    Ok(
        axum::Json(json!({"status": "success", "data": data, "warnings": warnings}))
            .into_response(),
    )
}

fn range(query: Option<&str>, form: Option<&str>) -> Result<Range, ApiError> {
    let p = pairs(query, form)?;
    let start = time_param(&p, "start", i64::MIN)?;
    let end = time_param(&p, "end", i64::MAX)?;
    if start > end {
        return Err(ApiError::bad_data(
            "end timestamp must not be before start time",
        ));
    }
    Ok(Range {
        sets: selectors(&p)?,
        start,
        end,
        strict: super::params::get(&p, "partial_response") == Some("false"),
    })
}

async fn series_impl(ctx: AppState, r: Range) -> Result<Response, ApiError> {
    if r.sets.is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let source = ctx.queries.source().clone();
    let (found, warnings) = blocking(move || {
        let mut all: BTreeSet<Labels> = BTreeSet::new();
        let mut warnings = Vec::new();
        for set in &r.sets {
            let s = source.series(set, r.start, r.end)?;
            all.extend(s.data);
            warnings.extend(s.warnings);
        }
        Ok((all, warnings))
    })
    .await?;
    respond(
        Value::Array(found.iter().map(labels_json).collect()),
        warnings,
        r.strict,
    )
}

pub async fn series(
    State(ctx): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let r = range(q.as_deref(), None)?;
    series_impl(ctx, r).await
}

pub async fn series_form(
    State(ctx): State<AppState>,
    RawQuery(q): RawQuery,
    body: String,
) -> Result<Response, ApiError> {
    let r = range(q.as_deref(), Some(&body))?;
    series_impl(ctx, r).await
}

async fn labels_impl(ctx: AppState, r: Range) -> Result<Response, ApiError> {
    let source = ctx.queries.source().clone();
    let (names, warnings) = blocking(move || {
        if r.sets.is_empty() {
            let s = source.label_names(&[], r.start, r.end)?;
            return Ok((s.data, s.warnings));
        }
        let mut all = BTreeSet::new();
        let mut warnings = Vec::new();
        for set in &r.sets {
            let s = source.label_names(set, r.start, r.end)?;
            all.extend(s.data);
            warnings.extend(s.warnings);
        }
        Ok((all.into_iter().collect::<Vec<String>>(), warnings))
    })
    .await?;
    respond(json!(names), warnings, r.strict)
}

pub async fn labels(
    State(ctx): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let r = range(q.as_deref(), None)?;
    labels_impl(ctx, r).await
}

pub async fn labels_form(
    State(ctx): State<AppState>,
    RawQuery(q): RawQuery,
    body: String,
) -> Result<Response, ApiError> {
    let r = range(q.as_deref(), Some(&body))?;
    labels_impl(ctx, r).await
}

pub async fn label_values(
    State(ctx): State<AppState>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let r = range(q.as_deref(), None)?;
    let source = ctx.queries.source().clone();
    let strict = r.strict;
    let (values, warnings) = blocking(move || {
        if r.sets.is_empty() {
            let s = source.label_values(&name, &[], r.start, r.end)?;
            return Ok((s.data, s.warnings));
        }
        let mut all = BTreeSet::new();
        let mut warnings = Vec::new();
        for set in &r.sets {
            let s = source.label_values(&name, set, r.start, r.end)?;
            all.extend(s.data);
            warnings.extend(s.warnings);
        }
        Ok((all.into_iter().collect::<Vec<String>>(), warnings))
    })
    .await?;
    respond(json!(values), warnings, strict)
}

/// Metric metadata received by remote write: `metric` selects one family, `limit` caps the
/// number of families, as in Prometheus.
pub async fn metadata(
    State(ctx): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = pairs(q.as_deref(), None)?;
    let param = |name: &str| {
        p.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    // Prometheus takes a negative limit as no limit.
    let limit = match param("limit") {
        None => None,
        Some(s) => match s.parse::<i64>() {
            Ok(n) => usize::try_from(n).ok(),
            Err(_) => return Err(ApiError::bad_data("limit must be a number")),
        },
    };
    let found = ctx.metadata.query(param("metric"), limit);
    Ok(success(json!(found)))
}

pub async fn buildinfo() -> Response {
    success(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "revision": option_env!("STRATA_GIT_REVISION").unwrap_or("unknown"),
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "n/a (Rust)",
    }))
}
