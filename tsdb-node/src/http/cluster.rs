//! `/api/v1/cluster/members` and `/api/v1/cluster/ring`: the membership and ring as this node
//! sees them. A node that is not clustered reports itself as the only member.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::Response;
use serde_json::{json, Value};

use super::error::success;
use super::{ApiError, AppState};

pub async fn members(State(ctx): State<AppState>) -> Response {
    let Some(cluster) = &ctx.cluster else {
        return success(json!({
            "clustered": false,
            "node_id": ctx.node_id,
            "members": [{
                "node_id": ctx.node_id,
                "state": "active",
                "mode": "all",
                "live": true,
            }],
        }));
    };
    let view = cluster.view();
    let members: Vec<Value> = view
        .members
        .iter()
        .map(|m| {
            let mut v = serde_json::to_value(m).unwrap_or(Value::Null);
            if let Value::Object(o) = &mut v {
                o.insert("in_ring".into(), json!(view.ring.contains(&m.node_id)));
                o.insert(
                    "pending_hint_bytes".into(),
                    json!(cluster.pending_hint_bytes(&m.node_id)),
                );
            }
            v
        })
        .collect();
    // Ring members that gossip does not know (remembered from an earlier run) are listed
    // too, so an operator sees every node data is placed on.
    let unknown: Vec<Value> = view
        .ring
        .nodes()
        .iter()
        .filter(|id| view.member(id).is_none())
        .map(|id| {
            json!({
                "node_id": id,
                "state": "unknown",
                "live": false,
                "in_ring": true,
                "pending_hint_bytes": cluster.pending_hint_bytes(id),
            })
        })
        .collect();
    success(json!({
        "clustered": true,
        "node_id": cluster.node_id(),
        "replication_factor": view.ring.replication_factor(),
        "consistency": cluster.settings().consistency,
        "members": members.into_iter().chain(unknown).collect::<Vec<_>>(),
    }))
}

pub async fn ring(State(ctx): State<AppState>) -> Response {
    let Some(cluster) = &ctx.cluster else {
        return success(json!({
            "clustered": false,
            "replication_factor": 1,
            "vnodes_per_node": crate::cluster::ring::VNODES_PER_NODE,
            "nodes": [ctx.node_id],
            "ownership": {ctx.node_id.clone(): {"primary": 1.0, "replica": 1.0}},
        }));
    };
    let ring = cluster.view().ring.clone();
    // Share of the hash space each node holds as primary and as any replica.
    let mut primary: BTreeMap<&str, f64> = BTreeMap::new();
    let mut replica: BTreeMap<&str, f64> = BTreeMap::new();
    let ranges = ring.ranges();
    for (start, end, owners) in &ranges {
        let len = end.wrapping_sub(*start) as f64 / 2f64.powi(64);
        // A single point covers the whole circle.
        let len = if ranges.len() == 1 { 1.0 } else { len };
        for (k, o) in owners.iter().enumerate() {
            if let Some(id) = ring.node(*o) {
                if k == 0 {
                    *primary.entry(id).or_default() += len;
                }
                *replica.entry(id).or_default() += len;
            }
        }
    }
    let ownership: BTreeMap<&str, Value> = ring
        .nodes()
        .iter()
        .map(|id| {
            let id = id.as_str();
            (
                id,
                json!({
                    "primary": primary.get(id).copied().unwrap_or(0.0),
                    "replica": replica.get(id).copied().unwrap_or(0.0),
                }),
            )
        })
        .collect();
    success(json!({
        "clustered": true,
        "replication_factor": ring.replication_factor(),
        "vnodes_per_node": crate::cluster::ring::VNODES_PER_NODE,
        "nodes": ring.nodes(),
        "ownership": ownership,
    }))
}

/// `POST /api/v1/admin/decommission`: starts handing this node's data to the remaining
/// owners; progress shows in `/api/v1/cluster/members`.
pub async fn decommission(State(ctx): State<AppState>) -> Result<Response, ApiError> {
    let Some(cluster) = &ctx.cluster else {
        return Err(ApiError::bad_data("this node is not part of a cluster"));
    };
    let started = cluster.decommission();
    Ok(success(json!({
        "node_id": cluster.node_id(),
        "started": started,
        "message": if started {
            "decommission started; follow state and progress in /api/v1/cluster/members"
        } else {
            "decommission already running or done"
        },
    })))
}

/// `POST /api/v1/admin/anti-entropy`: runs an anti-entropy round now — with the co-owners of
/// this node's ranges and with the owners those ranges would have without it — and answers
/// what it compared and repaired.
pub async fn anti_entropy(State(ctx): State<AppState>) -> Result<Response, ApiError> {
    let Some(cluster) = &ctx.cluster else {
        return Err(ApiError::bad_data("this node is not part of a cluster"));
    };
    let summary = cluster
        .anti_entropy_round(crate::cluster::anti_entropy::Scope::WithPreviousOwners)
        .await;
    Ok(success(json!({
        "node_id": cluster.node_id(),
        "round": summary,
    })))
}
