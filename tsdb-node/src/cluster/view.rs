//! Keeping the membership view fresh, remembering ring members across restarts, and
//! delivering hints to owners that answer again.
//!
//! The ring holds every storage node that has not left, alive or not: a node that crashed
//! keeps its ranges (its writes become hints) so data is never placed by a ring that forgot
//! a member for a while. Ring members are written to `<state_dir>/members.json`, so a node
//! restarting while a peer is down still places data with that peer in the ring.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::hints::{HintRecord, HintStore};
use super::membership::Member;
use super::removal::{is_removed, Removed};
use super::ring::Ring;
use super::{Cluster, ClusterSettings, NodeMode, NodeState, View};

const REMEMBERED: &str = "members.json";

/// Ring members remembered from the last run (empty when none or unreadable).
pub(super) fn load_remembered(state_dir: &Path) -> BTreeSet<String> {
    let path = state_dir.join(REMEMBERED);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(file = %path.display(), error = %e, "ignoring unreadable ring member list");
            BTreeSet::new()
        }),
        Err(_) => BTreeSet::new(),
    }
}

fn save_remembered(state_dir: &Path, members: &BTreeSet<String>) {
    let path = state_dir.join(REMEMBERED);
    let result = std::fs::create_dir_all(state_dir).and_then(|_| {
        let bytes = serde_json::to_vec(members).map_err(std::io::Error::other)?;
        crate::storage::fsutil::write_atomic(&path, &bytes)
    });
    if let Err(e) = result {
        tracing::warn!(file = %path.display(), error = %e, "cannot save the ring member list");
    }
}

/// The ring members: storage nodes seen in gossip that have not left, remembered ones that
/// gossip has not said left nor were removed, and this node unless it is a query node.
fn ring_members(
    settings: &ClusterSettings,
    members: &[Member],
    remembered: &BTreeSet<String>,
    removed: &Removed,
) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = members
        .iter()
        .filter(|m| m.in_ring())
        .map(|m| m.node_id.clone())
        .collect();
    for r in remembered {
        let gone = members.iter().any(|m| &m.node_id == r && !m.in_ring());
        // Removed and not in gossip (a member in gossip is judged by its generation above).
        let removed_unseen = removed.contains_key(r) && !members.iter().any(|m| &m.node_id == r);
        if !gone && !removed_unseen {
            out.insert(r.clone());
        }
    }
    let self_left = members
        .iter()
        .any(|m| m.node_id == settings.node_id && m.state == NodeState::Left);
    if settings.mode != NodeMode::Query && !self_left {
        out.insert(settings.node_id.clone());
    }
    out
}

pub(super) fn build(
    settings: &ClusterSettings,
    mut members: Vec<Member>,
    remembered: &BTreeSet<String>,
    removed: &Removed,
) -> View {
    // A removed node is `left` on its behalf.
    for m in &mut members {
        if is_removed(removed, &m.node_id, m.generation) {
            m.state = NodeState::Left;
            m.progress = Some("removed".into());
        }
    }
    let ids = ring_members(settings, &members, remembered, removed);
    View {
        ring: Arc::new(Ring::new(ids, settings.replication_factor)),
        members,
    }
}

/// Refreshes the view every half gossip round; marks this node active once it has heard
/// from the cluster (or waited a few rounds alone, as the first node does).
pub(super) async fn run(cluster: Arc<Cluster>, mut stop: watch::Receiver<bool>) {
    let period = (cluster.settings.gossip_interval / 2).max(Duration::from_millis(50));
    let started = Instant::now();
    let mut remembered = load_remembered(&cluster.settings.state_dir);
    let mut active = false;
    loop {
        let published = cluster.membership.removed().await;
        if let Err(e) = cluster.adopt_removals(&published).await {
            tracing::warn!(error = %e, "cannot adopt a node removal");
        }
        let members = cluster.membership.members().await;
        let next = build(
            &cluster.settings,
            members,
            &remembered,
            &cluster.removed_nodes(),
        );
        let ring_ids: BTreeSet<String> = next.ring.nodes().iter().cloned().collect();
        if ring_ids != remembered {
            tracing::info!(members = ?ring_ids, "ring membership changed");
            save_remembered(&cluster.settings.state_dir, &ring_ids);
            remembered = ring_ids;
        }
        let heard = next
            .members
            .iter()
            .any(|m| m.node_id != cluster.settings.node_id && m.live);
        *cluster.view.write() = Arc::new(next);
        if !active && (heard || started.elapsed() > cluster.settings.gossip_interval * 5) {
            cluster.membership.set_state(NodeState::Active).await;
            active = true;
        }
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Waits up to a few gossip rounds for a live peer, so that a node joining an existing
/// cluster places its first writes with the full ring.
pub(super) async fn await_first_peers(cluster: &Cluster) {
    if cluster.settings.seeds.is_empty() {
        return;
    }
    let deadline = Instant::now() + cluster.settings.gossip_interval * 5;
    while Instant::now() < deadline {
        let members = cluster.membership.members().await;
        if members
            .iter()
            .any(|m| m.node_id != cluster.settings.node_id && m.live)
        {
            // One more round lets the rest of the membership arrive from that peer.
            tokio::time::sleep(cluster.settings.gossip_interval).await;
            cluster.refresh_view().await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Cluster {
    /// Rebuilds the view from gossip now, rather than at the next refresh.
    pub(super) async fn refresh_view(&self) {
        let remembered = load_remembered(&self.settings.state_dir);
        let members = self.membership.members().await;
        let removed = self.removed_nodes();
        *self.view.write() = Arc::new(build(&self.settings, members, &remembered, &removed));
    }
}

/// Delivers hints to their owners once gossip sees them alive again.
pub(super) async fn deliver_hints(cluster: Arc<Cluster>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let hints = cluster.hints.clone();
        let targets = match tokio::task::spawn_blocking(move || hints.targets()).await {
            Ok(t) => t,
            Err(_) => continue,
        };
        for target in targets {
            let view = cluster.view();
            let Some(addr) = view
                .member(&target)
                .filter(|m| m.live)
                .and_then(|m| m.grpc_addr)
            else {
                continue;
            };
            if let Err(e) = deliver_to(&cluster, &target, addr).await {
                tracing::debug!(node = %target, error = %e, "hint delivery paused");
            }
        }
    }
}

async fn deliver_to(
    cluster: &Cluster,
    target: &str,
    addr: std::net::SocketAddr,
) -> Result<(), String> {
    let hints = cluster.hints.clone();
    let t = target.to_string();
    let files = tokio::task::spawn_blocking(move || hints.take(&t))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    for file in files {
        let f = file.clone();
        let records = tokio::task::spawn_blocking(move || HintStore::read(&f))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        let count = records.len();
        // In order: a delete lands after the writes hinted before it.
        for record in records {
            match record {
                HintRecord::Write(req) => cluster.peers.write(addr, req).await.map(|_| ()),
                HintRecord::Delete(req) => cluster.peers.delete(addr, req).await.map(|_| ()),
            }
            .map_err(|s| s.message().to_string())?;
        }
        let hints = cluster.hints.clone();
        tokio::task::spawn_blocking(move || hints.remove(&file))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        tracing::info!(node = %target, batches = count, "delivered hints");
    }
    Ok(())
}
