//! `/metrics` (the last round's container series and the agent's own counters, in the text
//! exposition format) and `/health` on `--listen-addr`.

use std::sync::{Arc, RwLock};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::sample::{self, Scrape};
use crate::telemetry::AgentStats;

/// What the endpoints read.
pub struct HttpState {
    pub latest: RwLock<Scrape>,
    pub stats: Arc<AgentStats>,
}

pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(|| async { "ok\n" }))
        .with_state(state)
}

async fn metrics(State(state): State<Arc<HttpState>>) -> impl IntoResponse {
    let mut out = String::new();
    {
        let latest = state.latest.read().unwrap();
        sample::render(&mut out, &sample::CONTAINER_FAMILIES, &latest.series);
    }
    state.stats.render(&mut out);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}
