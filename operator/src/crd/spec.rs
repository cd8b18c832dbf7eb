//! The desired state of a cluster, as users write it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, ResourceRequirements, Toleration, TopologySpreadConstraint,
};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::status::TimeSeriesClusterStatus;

/// A Strata cluster: a StatefulSet of storage nodes joined by gossip into one ring, a client
/// Service, and optionally the node-agent DaemonSet.
// The printer columns repeat `type_ = "integer"`, which clippy mistakes for a duplicated
// attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "strata.dev",
    version = "v1alpha1",
    kind = "TimeSeriesCluster",
    plural = "timeseriesclusters",
    shortname = "tsc",
    category = "strata",
    namespaced,
    status = "TimeSeriesClusterStatus",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".spec.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("!has(self.replicationFactor) || !has(self.replicas) || self.replicationFactor <= self.replicas").message("replicationFactor must not exceed replicas").reason(kube::core::Reason::FieldValueInvalid).field_path(".replicationFactor"))]
#[serde(rename_all = "camelCase")]
pub struct TimeSeriesClusterSpec {
    /// Number of storage nodes (StatefulSet replicas).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub replicas: i32,
    /// Copies of every series kept on distinct nodes.
    #[serde(default = "default_replication_factor")]
    #[schemars(range(min = 1, max = 9))]
    pub replication_factor: i32,
    /// Container image of `strata-node`.
    #[serde(default = "default_image")]
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// `Always`, `IfNotPresent` or `Never`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// CPU and memory for each storage node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Volumes for the write-ahead log and the segments (two PVCs per pod).
    #[serde(default)]
    pub storage: StorageSpec,
    /// How long data is kept per resolution (`0` keeps it forever).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionSpec>,
    /// Secret holding the node's users: a YAML list of `{username, password_hash, roles}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users_secret: Option<SecretKeyRef>,
    /// Secret whose key holds the shared secret that authenticates node-to-node RPC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_secret: Option<SecretKeyRef>,
    /// Listener ports.
    #[serde(default)]
    pub ports: PortsSpec,
    /// MQTT ingest from an external broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<MqttSpec>,
    /// TLS on every client listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
    /// The container-metrics agent on every Kubernetes node.
    #[serde(default)]
    pub node_agent: NodeAgentSpec,
    /// The client Service.
    #[serde(default)]
    pub service: ServiceSpec,
    /// Where pods may run.
    #[serde(default)]
    pub scheduling: SchedulingSpec,
    /// The PodDisruptionBudget of the storage nodes.
    #[serde(default)]
    pub pod_disruption_budget: PdbSpec,
}

fn default_replicas() -> i32 {
    3
}

fn default_replication_factor() -> i32 {
    3
}

/// The image a cluster runs when the resource names none: the node built with this operator.
pub fn default_image() -> String {
    format!(
        "ghcr.io/strata-db/strata-node:{}",
        env!("CARGO_PKG_VERSION")
    )
}

/// Kubernetes' image pull policies.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    /// The value Kubernetes expects in a container.
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// Both volumes of a storage node and what happens to them on scale-down.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// The write-ahead log volume.
    #[serde(default = "VolumeSpec::default_wal")]
    pub wal: VolumeSpec,
    /// The segment volume.
    #[serde(default = "VolumeSpec::default_data")]
    pub data: VolumeSpec,
    /// Whether the PVCs of decommissioned nodes are deleted after scale-down.
    #[serde(default)]
    pub reclaim_policy: ReclaimPolicy,
}

impl Default for StorageSpec {
    fn default() -> Self {
        StorageSpec {
            wal: VolumeSpec::default_wal(),
            data: VolumeSpec::default_data(),
            reclaim_policy: ReclaimPolicy::default(),
        }
    }
}

/// One PersistentVolumeClaim template.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeSpec {
    /// Requested size (a Kubernetes quantity). It may grow, never shrink: a larger size
    /// expands the existing claims where the StorageClass allows it.
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("isQuantity(self)").message("size must be a quantity such as 10Gi"))]
    #[x_kube(validation = Rule::new("!isQuantity(self) || !isQuantity(oldSelf) || quantity(self).compareTo(quantity(oldSelf)) >= 0").message("volume size can only grow").reason(kube::core::Reason::FieldValueForbidden))]
    pub size: String,
    /// StorageClass of the claims; the cluster default when unset. Fixed once created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("storageClassName is immutable"))]
    pub storage_class_name: Option<String>,
}

impl VolumeSpec {
    fn default_wal() -> Self {
        VolumeSpec {
            size: "2Gi".into(),
            storage_class_name: None,
        }
    }

    fn default_data() -> Self {
        VolumeSpec {
            size: "10Gi".into(),
            storage_class_name: None,
        }
    }
}

/// What happens to a removed node's PersistentVolumeClaims.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum ReclaimPolicy {
    /// Delete them once the node has handed its data off and its pod is gone.
    #[default]
    Delete,
    /// Keep them (a later scale-up reuses them).
    Retain,
}

/// Retention per resolution, as durations like `30d`, `12h` or `0` (forever).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
pub struct RetentionSpec {
    /// Raw samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h|d|w)?$"), length(max = 32))]
    pub raw: Option<String>,
    /// 1-minute rollups.
    #[serde(default, rename = "1m", skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h|d|w)?$"), length(max = 32))]
    pub rollup_1m: Option<String>,
    /// 5-minute rollups.
    #[serde(default, rename = "5m", skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h|d|w)?$"), length(max = 32))]
    pub rollup_5m: Option<String>,
    /// 1-hour rollups.
    #[serde(default, rename = "1h", skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h|d|w)?$"), length(max = 32))]
    pub rollup_1h: Option<String>,
}

/// A key of a Secret in the cluster's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Listener ports; the defaults are DESIGN.md's.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortsSpec {
    /// HTTP API: queries, writes, console, health, metrics.
    #[serde(default = "PortsSpec::http")]
    #[schemars(range(min = 1, max = 65535))]
    pub http: i32,
    /// TCP JSON ingest (seed 000).
    #[serde(default = "PortsSpec::tcp")]
    #[schemars(range(min = 1, max = 65535))]
    pub tcp: i32,
    /// Binary ZTSD protocol (seed 004).
    #[serde(default = "PortsSpec::binary")]
    #[schemars(range(min = 1, max = 65535))]
    pub binary: i32,
    /// Gossip membership.
    #[serde(default = "PortsSpec::gossip")]
    #[schemars(range(min = 1, max = 65535))]
    pub gossip: i32,
    /// gRPC between nodes.
    #[serde(default = "PortsSpec::grpc")]
    #[schemars(range(min = 1, max = 65535))]
    pub grpc: i32,
}

impl PortsSpec {
    fn http() -> i32 {
        8181
    }
    fn tcp() -> i32 {
        5433
    }
    fn binary() -> i32 {
        9876
    }
    fn gossip() -> i32 {
        7946
    }
    fn grpc() -> i32 {
        7070
    }
}

impl Default for PortsSpec {
    fn default() -> Self {
        PortsSpec {
            http: Self::http(),
            tcp: Self::tcp(),
            binary: Self::binary(),
            gossip: Self::gossip(),
            grpc: Self::grpc(),
        }
    }
}

/// Subscription to an external MQTT broker.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MqttSpec {
    /// `tcp://host:1883` or `ssl://host:8883`.
    #[schemars(regex(pattern = r"^(tcp|ssl)://[^\s/]+$"), length(max = 512))]
    pub broker: String,
    /// Topic filters; the node's default (`iot/sensors/+`) when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<String>,
    /// Broker user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Secret key holding the broker password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret: Option<SecretKeyRef>,
}

/// TLS for the client listeners from a `kubernetes.io/tls` Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// Secret with `tls.crt` and `tls.key`.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
}

/// The node-agent DaemonSet.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeAgentSpec {
    /// Run the agent on every node.
    #[serde(default)]
    pub enabled: bool,
    /// Container image of `strata-agent`.
    #[serde(default = "NodeAgentSpec::default_image")]
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// Collection interval, e.g. `15s`.
    #[serde(default = "NodeAgentSpec::default_interval")]
    #[schemars(regex(pattern = r"^[0-9]+(ms|s|m|h)$"), length(max = 32))]
    pub interval: String,
    /// CPU and memory for each agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Tolerations of the agent pods (it usually runs on every node, tainted or not).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
}

impl NodeAgentSpec {
    fn default_image() -> String {
        format!(
            "ghcr.io/strata-db/strata-agent:{}",
            env!("CARGO_PKG_VERSION")
        )
    }
    fn default_interval() -> String {
        "15s".into()
    }
}

impl Default for NodeAgentSpec {
    fn default() -> Self {
        NodeAgentSpec {
            enabled: false,
            image: Self::default_image(),
            interval: Self::default_interval(),
            resources: None,
            tolerations: Vec::new(),
        }
    }
}

/// The client Service.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// `ClusterIP` (default), `NodePort` or `LoadBalancer`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<ServiceType>,
    /// Annotations, e.g. for a cloud load balancer.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Service types a client Service may have.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum ServiceType {
    ClusterIP,
    NodePort,
    LoadBalancer,
}

impl ServiceType {
    /// The value Kubernetes expects.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// Placement of the storage nodes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchedulingSpec {
    /// Replaces the default (preferred anti-affinity across hosts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Tolerations of the storage pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Topology spread constraints of the storage pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,
    /// Node selector of the storage pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Priority class of the storage pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
}

/// The PodDisruptionBudget.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PdbSpec {
    /// Create the budget.
    #[serde(default = "PdbSpec::default_enabled")]
    pub enabled: bool,
    /// Storage nodes that may be voluntarily down at once. Keep it below the replication
    /// factor so every series keeps a live replica.
    #[serde(default = "PdbSpec::default_max_unavailable")]
    #[schemars(range(min = 1))]
    pub max_unavailable: i32,
}

impl PdbSpec {
    fn default_enabled() -> bool {
        true
    }
    fn default_max_unavailable() -> i32 {
        1
    }
}

impl Default for PdbSpec {
    fn default() -> Self {
        PdbSpec {
            enabled: true,
            max_unavailable: 1,
        }
    }
}
