//! The HTTP API on port 8181 (axum): Prometheus-compatible query API, writes, the seeds' query
//! and admin endpoints, health and the node's own metrics.
//!
//! One file per group of endpoints; `params` parses what Prometheus clients send (times,
//! durations, `match[]` selectors); `error` renders Prometheus' error envelope.

mod admin;
mod admission;
pub mod auth;
mod cluster;
mod cluster_admin;
mod error;
mod health;
mod metrics;
mod params;
mod prom_api;
mod query;
mod seed_api;
pub mod serve;
mod stream;
mod write;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

pub use error::ApiError;
pub use metrics::HttpMetrics;
pub use params::{parse_selector, parse_time_ms};

use crate::ingest::IngestSink;
use crate::promql::QueryEngine;
use crate::storage::Engine;

/// Shared by every handler.
pub struct AppContext {
    pub engine: Arc<Engine>,
    pub sink: IngestSink,
    pub queries: Arc<QueryEngine>,
    pub node_id: String,
    pub started: Instant,
    /// False until the WAL is replayed and the node may take traffic; false again on shutdown.
    pub ready: AtomicBool,
    pub metrics: HttpMetrics,
    pub max_request_bytes: usize,
    /// Reserved by every write body before it is read (`limits.max_inflight_request_bytes`).
    pub write_admission: crate::ingest::WriteBudget,
    /// How long a write waits for `write_admission` before it is answered 503.
    pub write_wait: std::time::Duration,
    /// Set when `auth.http` is on: every request but health, readiness and metrics needs
    /// credentials.
    pub auth: Option<Arc<auth::HttpAuth>>,
    /// Bounds the live-stream WebSocket subscribers.
    pub streams: stream::StreamLimits,
    /// Metric metadata received by remote write, for `/api/v1/metadata`.
    pub metadata: Arc<crate::metadata::MetadataStore>,
    /// MQTT ingest counters, when MQTT ingest is on.
    pub mqtt: Option<Arc<crate::ingest::mqtt::MqttMetrics>>,
    /// Set when the node is part of a cluster.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Label sets of the line protocol keys written recently, shared by every write request.
    pub line_series: crate::ingest::label_cache::SharedLabelCache,
    /// Label sets of the remote write series written recently, shared by every request.
    pub remote_write_series: crate::ingest::label_cache::SharedLabelCache,
}

pub type AppState = Arc<AppContext>;

pub use stream::StreamLimits;

pub fn router(ctx: AppState) -> Router {
    let limit = ctx.max_request_bytes;
    let mut router = Router::new()
        .route("/health", get(health::health))
        .route("/ready", get(health::ready))
        .route("/metrics", get(metrics::exposition))
        // Prometheus HTTP API
        .route(
            "/api/v1/query",
            get(query::query_get).post(query::query_post),
        )
        .route(
            "/api/v1/query_range",
            get(query::query_range_get).post(query::query_range_post),
        )
        .route("/api/v1/write", post(write::api_v1_write))
        .route("/write", post(write::influx_write))
        .route(
            "/api/v1/series",
            get(prom_api::series).post(prom_api::series_form),
        )
        .route(
            "/api/v1/labels",
            get(prom_api::labels).post(prom_api::labels_form),
        )
        .route("/api/v1/label/{name}/values", get(prom_api::label_values))
        .route("/api/v1/metadata", get(prom_api::metadata))
        .route("/api/v1/status/buildinfo", get(prom_api::buildinfo))
        // Seed 003 status and admin
        .route("/api/v1/status", get(admin::status))
        .route("/api/v1/admin/flush", post(admin::flush))
        .route("/api/v1/admin/compact", post(admin::compact))
        .route("/api/v1/admin/downsample", post(admin::downsample))
        .route(
            "/api/v1/admin/tsdb/delete_series",
            post(admin::delete_series).put(admin::delete_series),
        )
        // Seeds 000, 001 and 004
        .route(
            "/query",
            get(seed_api::get_query)
                .post(seed_api::post_query)
                .delete(seed_api::delete_device_metric),
        )
        .route("/stats", get(seed_api::stats))
        .route("/series", get(seed_api::series_list))
        // Cluster
        .route("/api/v1/cluster/members", get(cluster::members))
        .route("/api/v1/cluster/ring", get(cluster::ring))
        .route("/api/v1/admin/decommission", post(cluster::decommission))
        .route("/api/v1/admin/anti-entropy", post(cluster::anti_entropy))
        .route(
            "/api/v1/admin/remove-node",
            post(cluster_admin::remove_node),
        )
        .route("/api/v1/admin/cleanup", post(cluster_admin::cleanup))
        // Live stream of written samples
        .route("/api/v1/stream", get(stream::stream))
        .layer(DefaultBodyLimit::max(limit));
    if let Some(a) = &ctx.auth {
        router = router.layer(axum::middleware::from_fn_with_state(
            a.clone(),
            auth::require,
        ));
    }
    router
        .layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            metrics::track,
        ))
        .with_state(ctx)
}
