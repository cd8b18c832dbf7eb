//! Cluster maintenance on the admin API: `POST /api/v1/admin/remove-node` (a dead node out
//! of the cluster for good) and `POST /api/v1/admin/cleanup` (drop copies of ranges this node
//! no longer owns).

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::error::success;
use super::params::{get, pairs};
use super::{ApiError, AppState};
use crate::cluster::removal::RemoveError;

fn not_clustered() -> ApiError {
    ApiError::bad_data("this node is not part of a cluster")
}

/// `POST /api/v1/admin/remove-node?node=<id>[&force=true]`: refuses a live node unless
/// `force`; answers once the removal is persisted and published. The co-owner anti-entropy
/// rounds that restore the copies run in the background on every node.
pub async fn remove_node(
    State(ctx): State<AppState>,
    RawQuery(q): RawQuery,
    body: String,
) -> Result<Response, ApiError> {
    let Some(cluster) = &ctx.cluster else {
        return Err(not_clustered());
    };
    let p = pairs(q.as_deref(), Some(&body))?;
    let node = get(&p, "node")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_data("give the node to remove as node=<id>"))?;
    let force = matches!(get(&p, "force"), Some("true" | "1"));
    match cluster.remove_node(node, force).await {
        Ok(outcome) => Ok(success(json!(outcome))),
        Err(e @ RemoveError::Alive(_)) => Err(ApiError {
            status: StatusCode::CONFLICT,
            error_type: "bad_data",
            message: e.to_string(),
        }),
        Err(e @ RemoveError::Unknown(_)) => Err(ApiError {
            status: StatusCode::NOT_FOUND,
            error_type: "bad_data",
            message: e.to_string(),
        }),
        Err(e @ RemoveError::IsSelf(_)) => Err(ApiError::bad_data(e.to_string())),
        Err(e @ RemoveError::Io(_)) => Err(ApiError::internal(e.to_string())),
    }
}

/// `POST /api/v1/admin/cleanup`: drops local series this node no longer owns once every
/// current owner is verified to hold them; 409 while the ring is not stable.
pub async fn cleanup(State(ctx): State<AppState>) -> Result<Response, ApiError> {
    let Some(cluster) = &ctx.cluster else {
        return Err(not_clustered());
    };
    match cluster.cleanup().await {
        Ok(summary) => Ok(success(json!({
            "node_id": cluster.node_id(),
            "cleanup": summary,
        }))),
        Err(e) => Err(ApiError {
            status: StatusCode::CONFLICT,
            error_type: "unavailable",
            message: e,
        }),
    }
}
