//! What the operator observed, written to the status subresource.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use serde::{Deserialize, Serialize};

/// The observed state of a cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimeSeriesClusterStatus {
    /// One word for `kubectl get`: Pending, Running, Scaling, Upgrading, Degraded, Terminating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// Pods of the StatefulSet (the scale subresource reads it).
    #[serde(default)]
    pub replicas: i32,
    /// Pods passing their readiness probe.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Label selector of the pods, for the scale subresource (HPA, `kubectl scale`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing` and `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Ring members as the nodes report them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberStatus>,
    /// Nodes being decommissioned (highest ordinals first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decommissioning: Vec<String>,
    /// The image every pod runs once the current rollout is done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_image: Option<String>,
}

/// Coarse life-cycle phase.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum Phase {
    Pending,
    Running,
    Scaling,
    Upgrading,
    Degraded,
    Terminating,
}

/// One ring member.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub struct MemberStatus {
    /// Node id (the pod name).
    pub name: String,
    /// joining, active, leaving or left.
    pub state: String,
}
