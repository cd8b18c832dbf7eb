//! `/metrics`: the node's own metrics in the Prometheus text exposition format (checked with
//! `promtool check metrics` in the tests).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;

use super::AppState;

const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Request counters and a latency histogram.
#[derive(Default)]
pub struct HttpMetrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl HttpMetrics {
    fn observe(&self, method: &str, code: u16, secs: f64) {
        *self
            .requests
            .lock()
            .entry((method.to_string(), code))
            .or_default() += 1;
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((secs * 1e6) as u64, Ordering::Relaxed);
    }
}

/// Middleware recording every request.
pub async fn track(State(ctx): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_string();
    let started = Instant::now();
    let resp = next.run(req).await;
    ctx.metrics.observe(
        &method,
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    resp
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &str, v: f64) {
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {v}");
    } else {
        let _ = writeln!(out, "{name}{{{labels}}} {v}");
    }
}

pub async fn exposition(State(ctx): State<AppState>) -> impl IntoResponse {
    let engine = ctx.engine.clone();
    let stats = tokio::task::spawn_blocking(move || engine.stats())
        .await
        .unwrap_or_default();
    let mut o = String::with_capacity(4096);
    let gauges: [(&str, &str, f64); 9] = [
        (
            "strata_series",
            "Series known to the catalog.",
            stats.series as f64,
        ),
        (
            "strata_head_series",
            "Series with samples in the in-memory head.",
            stats.head_series as f64,
        ),
        (
            "strata_head_samples",
            "Samples appended to the head since the last checkpoint.",
            stats.head_samples as f64,
        ),
        (
            "strata_head_bytes",
            "Compressed bytes held by the head.",
            stats.head_bytes as f64,
        ),
        (
            "strata_segment_bytes",
            "Bytes of segment files on disk.",
            stats.segment_bytes as f64,
        ),
        (
            "strata_segment_samples",
            "Raw samples stored in segments.",
            stats.segment_samples as f64,
        ),
        (
            "strata_wal_bytes",
            "Bytes of live WAL segments.",
            stats.wal_bytes as f64,
        ),
        (
            "strata_tombstones",
            "Deletions not yet applied to every segment.",
            stats.tombstones as f64,
        ),
        (
            "strata_quarantined_segments",
            "Damaged files moved aside since start.",
            stats.quarantined.len() as f64,
        ),
    ];
    for (name, help, v) in gauges {
        family(&mut o, name, "gauge", help);
        sample(&mut o, name, "", v);
    }
    family(&mut o, "strata_segments", "gauge", "Segment files by kind.");
    sample(
        &mut o,
        "strata_segments",
        "kind=\"raw\"",
        stats.raw_segments as f64,
    );
    sample(
        &mut o,
        "strata_segments",
        "kind=\"rollup\"",
        stats.rollup_segments as f64,
    );
    let counters: [(&str, &str, u64); 4] = [
        (
            "strata_promql_rollup_selectors_total",
            "PromQL range selectors answered from downsampled rollups.",
            ctx.queries.rollup_selectors_total(),
        ),
        (
            "strata_samples_appended_total",
            "Samples made durable by appends.",
            stats.samples_appended_total,
        ),
        (
            "strata_checkpoints_total",
            "Head checkpoints written.",
            stats.checkpoints_total,
        ),
        (
            "strata_compactions_total",
            "Compactions run.",
            stats.compactions_total,
        ),
    ];
    for (name, help, v) in counters {
        family(&mut o, name, "counter", help);
        sample(&mut o, name, "", v as f64);
    }
    family(
        &mut o,
        "strata_build_info",
        "gauge",
        "Build information; always 1.",
    );
    sample(
        &mut o,
        "strata_build_info",
        &format!("version=\"{}\"", env!("CARGO_PKG_VERSION")),
        1.0,
    );
    family(
        &mut o,
        "strata_uptime_seconds",
        "gauge",
        "Seconds since the node started.",
    );
    sample(
        &mut o,
        "strata_uptime_seconds",
        "",
        ctx.started.elapsed().as_secs_f64(),
    );

    family(
        &mut o,
        "strata_http_requests_total",
        "counter",
        "HTTP requests by method and status code.",
    );
    for ((method, code), n) in ctx.metrics.requests.lock().iter() {
        sample(
            &mut o,
            "strata_http_requests_total",
            &format!("code=\"{code}\",method=\"{method}\""),
            *n as f64,
        );
    }
    let h = "strata_http_request_duration_seconds";
    family(&mut o, h, "histogram", "HTTP request latency.");
    for (i, b) in BUCKETS.iter().enumerate() {
        let v = ctx.metrics.buckets[i].load(Ordering::Relaxed);
        sample(
            &mut o,
            &format!("{h}_bucket"),
            &format!("le=\"{b}\""),
            v as f64,
        );
    }
    let count = ctx.metrics.count.load(Ordering::Relaxed);
    sample(&mut o, &format!("{h}_bucket"), "le=\"+Inf\"", count as f64);
    sample(
        &mut o,
        &format!("{h}_sum"),
        "",
        ctx.metrics.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
    );
    sample(&mut o, &format!("{h}_count"), "", count as f64);
    if let Some(m) = &ctx.mqtt {
        m.render(&mut o);
    }
    if let Some(c) = &ctx.cluster {
        let families = c
            .anti_entropy_metrics()
            .families()
            .into_iter()
            .chain(c.pushdown_metrics().families());
        for (name, kind, help, v) in families {
            family(&mut o, name, kind, help);
            sample(&mut o, name, "", v);
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        o,
    )
}
