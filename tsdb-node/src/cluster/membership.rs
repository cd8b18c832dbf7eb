//! Gossip membership over UDP with `chitchat`: who is in the cluster, how to reach them, and
//! whether they are alive.
//!
//! Each node publishes a few keys in its gossip state (its lifecycle state, mode and the
//! addresses of its gRPC and HTTP listeners); chitchat spreads them and runs a phi-accrual
//! failure detector over the heartbeats. A restarted node gossips under a new generation, so
//! the view keeps only the newest generation per node id.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chitchat::transport::{Transport, UdpTransport};
use chitchat::{
    spawn_chitchat, ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig,
    ProtocolVersion,
};
use serde::Serialize;
use tokio::sync::Mutex;

use super::{ClusterError, NodeMode, NodeState};

const KEY_STATE: &str = "state";
const KEY_MODE: &str = "mode";
const KEY_GRPC: &str = "grpc_addr";
const KEY_HTTP: &str = "http_addr";
const KEY_PROGRESS: &str = "progress";
/// `removed:<node id>` = the highest generation of that node removed for good.
const KEY_REMOVED_PREFIX: &str = "removed:";
/// Present once the node's first anti-entropy round (join rebalancing) finished cleanly.
const KEY_SYNCED: &str = "synced";
/// Comma-separated ids of the nodes this node holds hints for.
const KEY_HINTS_FOR: &str = "hints_for";

/// One node as this node currently sees it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Member {
    pub node_id: String,
    /// Increases each time the node restarts.
    pub generation: u64,
    pub gossip_addr: SocketAddr,
    pub grpc_addr: Option<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    pub state: NodeState,
    pub mode: NodeMode,
    /// The failure detector's verdict (always true for this node).
    pub live: bool,
    /// Free-form progress of a long operation, such as a decommission.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
    /// Whether this generation of the node finished its first anti-entropy round without
    /// errors, so it holds every series of its arcs that is older than the round.
    pub synced: bool,
    /// Nodes this node holds hints for (writes they have not received yet).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hints_for: Vec<String>,
}

impl Member {
    /// Whether this node owns ranges of the ring: storage modes that have not left.
    pub fn in_ring(&self) -> bool {
        self.mode != NodeMode::Query && self.state != NodeState::Left
    }
}

/// Settings of the gossip layer.
pub struct GossipSettings {
    pub node_id: String,
    pub generation: u64,
    pub cluster_id: String,
    pub listen_addr: SocketAddr,
    pub advertise_addr: SocketAddr,
    pub seeds: Vec<String>,
    pub interval: Duration,
    pub dead_node_grace: Duration,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub mode: NodeMode,
}

/// A running gossip participant.
pub struct Membership {
    handle: ChitchatHandle,
    chitchat: Arc<Mutex<chitchat::Chitchat>>,
    self_id: ChitchatId,
}

impl Membership {
    /// Binds the gossip socket and starts gossiping with the seeds. Seeds that are names are
    /// re-resolved periodically by chitchat, so a StatefulSet's headless Service works.
    pub async fn start(s: GossipSettings) -> Result<Membership, ClusterError> {
        Self::start_with(s, &UdpTransport).await
    }

    /// As [`Membership::start`] over any chitchat transport (the simulation uses an
    /// in-process one with injected partitions).
    pub async fn start_with(
        s: GossipSettings,
        transport: &dyn Transport,
    ) -> Result<Membership, ClusterError> {
        let self_id = ChitchatId::new(s.node_id.clone(), s.generation, s.advertise_addr);
        let config = ChitchatConfig {
            chitchat_id: self_id.clone(),
            cluster_id: s.cluster_id,
            gossip_interval: s.interval,
            listen_addr: s.listen_addr,
            seed_nodes: s.seeds,
            failure_detector_config: FailureDetectorConfig {
                dead_node_grace_period: s.dead_node_grace,
                // Heartbeats arrive once per round; expect that, not the library's 5 s, so a
                // crash is noticed within a few rounds even before samples accumulate.
                initial_interval: s.interval,
                ..FailureDetectorConfig::default()
            },
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: ProtocolVersion::V0,
        };
        let initial = vec![
            (
                KEY_STATE.to_string(),
                NodeState::Joining.as_str().to_string(),
            ),
            (KEY_MODE.to_string(), s.mode.as_str().to_string()),
            (KEY_GRPC.to_string(), s.grpc_addr.to_string()),
            (KEY_HTTP.to_string(), s.http_addr.to_string()),
        ];
        let handle = spawn_chitchat(config, initial, transport)
            .await
            .map_err(|e| ClusterError::Gossip(format!("{e:#}")))?;
        let chitchat = handle.chitchat();
        Ok(Membership {
            handle,
            chitchat,
            self_id,
        })
    }

    pub fn node_id(&self) -> &str {
        &self.self_id.node_id
    }

    /// Publishes this node's lifecycle state.
    pub async fn set_state(&self, state: NodeState) {
        self.chitchat
            .lock()
            .await
            .self_node_state()
            .set(KEY_STATE, state.as_str());
    }

    /// Publishes that this node's first anti-entropy round finished without errors.
    pub async fn set_synced(&self) {
        self.chitchat
            .lock()
            .await
            .self_node_state()
            .set(KEY_SYNCED, "true");
    }

    /// Publishes the nodes this node holds hints for.
    pub async fn set_hints_for(&self, targets: &[String]) {
        self.chitchat
            .lock()
            .await
            .self_node_state()
            .set(KEY_HINTS_FOR, targets.join(","));
    }

    /// Publishes progress of a long operation (shown in `/api/v1/cluster/members`).
    pub async fn set_progress(&self, progress: &str) {
        self.chitchat
            .lock()
            .await
            .self_node_state()
            .set(KEY_PROGRESS, progress);
    }

    /// Publishes every removal this node knows (see `removal`), so the knowledge spreads and
    /// survives the restart of any one node.
    pub async fn publish_removed(&self, removed: &BTreeMap<String, u64>) {
        let mut cc = self.chitchat.lock().await;
        let state = cc.self_node_state();
        for (id, generation) in removed {
            state.set(format!("{KEY_REMOVED_PREFIX}{id}"), generation);
        }
    }

    /// The removals every known node publishes: id → highest generation removed.
    pub async fn removed(&self) -> BTreeMap<String, u64> {
        let cc = self.chitchat.lock().await;
        let mut out: BTreeMap<String, u64> = BTreeMap::new();
        for state in cc.node_states().values() {
            for (key, value) in state.iter_prefix(KEY_REMOVED_PREFIX) {
                let (Some(id), Ok(g)) = (
                    key.strip_prefix(KEY_REMOVED_PREFIX),
                    value.value.parse::<u64>(),
                ) else {
                    continue;
                };
                let e = out.entry(id.to_string()).or_insert(g);
                *e = (*e).max(g);
            }
        }
        out
    }

    /// Every known node (alive or not), newest generation per id, sorted by id.
    pub async fn members(&self) -> Vec<Member> {
        let cc = self.chitchat.lock().await;
        let live: Vec<ChitchatId> = cc.live_nodes().cloned().collect();
        let mut by_id: BTreeMap<String, Member> = BTreeMap::new();
        for (id, state) in cc.node_states() {
            let get = |k: &str| state.get(k);
            let member = Member {
                node_id: id.node_id.to_string(),
                generation: id.generation_id,
                gossip_addr: id.gossip_advertise_addr,
                grpc_addr: get(KEY_GRPC).and_then(|a| a.parse().ok()),
                http_addr: get(KEY_HTTP).and_then(|a| a.parse().ok()),
                // A node whose keys have not arrived yet is treated as joining.
                state: get(KEY_STATE)
                    .and_then(NodeState::parse)
                    .unwrap_or(NodeState::Joining),
                mode: get(KEY_MODE)
                    .and_then(NodeMode::parse)
                    .unwrap_or(NodeMode::All),
                live: live.contains(id),
                progress: get(KEY_PROGRESS).map(str::to_string),
                synced: get(KEY_SYNCED) == Some("true"),
                hints_for: get(KEY_HINTS_FOR)
                    .map(|v| {
                        v.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            match by_id.get(&member.node_id) {
                Some(old) if old.generation >= member.generation => {}
                _ => {
                    by_id.insert(member.node_id.clone(), member);
                }
            }
        }
        by_id.into_values().collect()
    }

    /// Stops gossiping. Peers see this node go silent and mark it dead; it stays in their
    /// ring (taking hints) until it returns or the dead-node grace period ends.
    pub fn shutdown(&self) {
        if let Err(e) = self.handle.initiate_shutdown() {
            tracing::debug!(error = %e, "gossip already stopped");
        }
    }
}
