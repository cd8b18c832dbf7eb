//! Cluster-wide deletes: a delete received by any node is applied on every ring member.
//!
//! The receiving node turns each matcher set into a tombstone (`tombstones`) and sends one
//! gRPC `Delete` to every ring member (itself locally): a series can live on any of them,
//! and matchers say nothing about tokens. A member applies the delete to its engine and
//! persists the tombstone before it answers. Members that are down or fail get the delete
//! as a hint, behind the writes hinted for them before it. The answer waits, like a write,
//! until every ring arc has as many members that applied it as the consistency level asks
//! of its owners; slower members finish in the background and are hinted on failure.
//!
//! What makes the delete stick on a replica that missed it:
//! - the hint, delivered in order with the writes hinted before it;
//! - anti-entropy: every round first pulls the peers' tombstones and applies the unknown
//!   ones, and a repair never appends a sample a tombstone covers;
//! - a hinted write delivered after a delete it predates drops the covered samples.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;
use tokio::task::JoinSet;

use super::client::Peers;
use super::hints::HintStore;
use super::ring::Ring;
use super::rpc::DeleteRequest;
use super::tombstones::{ClusterTombstone, TombstoneStore};
use super::{Cluster, Consistency};
use crate::storage::{Engine, Matcher, StorageError};

/// Wall-clock milliseconds: when a tombstone was made or a hint stored.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Applies the tombstones not known yet to `engine` and remembers them. Returns the local
/// series they matched. The engine's delete is durable before the tombstone is recorded,
/// so a crash in between applies it again on redelivery, never forgets it.
pub fn apply(
    engine: &Engine,
    store: &TombstoneStore,
    list: Vec<ClusterTombstone>,
) -> Result<u64, String> {
    let new = store.unknown(list);
    let mut deleted = 0u64;
    for t in &new {
        deleted += engine
            .delete(&t.matchers, t.mint, t.maxt)
            .map_err(|e| format!("delete: {e}"))? as u64;
    }
    store.add(new).map_err(|e| e.to_string())?;
    Ok(deleted)
}

/// Whether every ring arc has at least the consistency level's number of its owners in
/// `applied`.
pub fn enough_owners(ring: &Ring, consistency: Consistency, applied: &BTreeSet<usize>) -> bool {
    ring.ranges().iter().all(|(_, _, owners)| {
        owners.iter().filter(|o| applied.contains(o)).count() >= consistency.required(owners.len())
    })
}

/// What a cluster-wide delete did, as the API answers it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DeleteOutcome {
    /// The most series one member matched (replicas hold the same series, so a sum would
    /// count each several times).
    pub deleted_series: u64,
    /// Members that applied the delete before the answer.
    pub applied_on: Vec<String>,
    /// Members that failed and got the delete as a hint.
    pub hinted: Vec<String>,
}

enum MemberResult {
    Applied(String, usize, u64),
    Failed(String, String),
}

static DELETE_SEQ: AtomicU64 = AtomicU64::new(0);

impl Cluster {
    /// The tombstones this node knows.
    pub fn tombstones(&self) -> &Arc<TombstoneStore> {
        &self.tombstones
    }

    /// Deletes the samples of the series matching each matcher set in `[mint, maxt]` on
    /// every ring member. `Ok` once every arc has the consistency level's number of owners
    /// that applied it.
    pub async fn delete(
        &self,
        sets: Vec<Vec<Matcher>>,
        mint: i64,
        maxt: i64,
    ) -> Result<DeleteOutcome, StorageError> {
        if mint > maxt {
            return Err(StorageError::InvalidArgument(format!(
                "delete: start {mint} is after end {maxt}"
            )));
        }
        let view = self.view();
        let ring = view.ring.clone();
        if ring.is_empty() {
            return Err(StorageError::Unavailable(
                "no storage node is in the ring".into(),
            ));
        }
        let deleted_at = now_ms();
        let tombstones: Vec<ClusterTombstone> = sets
            .into_iter()
            .map(|matchers| {
                let seq = DELETE_SEQ.fetch_add(1, Ordering::Relaxed);
                let key = format!("{}\u{0}{mint}\u{0}{maxt}", self.settings.node_id);
                ClusterTombstone {
                    id: ClusterTombstone::new_id(&key, seq, deleted_at, &matchers),
                    matchers,
                    mint,
                    maxt,
                    deleted_at_ms: deleted_at,
                }
            })
            .collect();
        let req = DeleteRequest {
            tombstones: tombstones.iter().map(ClusterTombstone::to_wire).collect(),
        };
        let mut tasks: JoinSet<MemberResult> = JoinSet::new();
        for (index, id) in ring.nodes().iter().enumerate() {
            let id = id.clone();
            if id == self.settings.node_id {
                let engine = self.engine.clone();
                let store = self.tombstones.clone();
                let list = tombstones.clone();
                tasks.spawn(async move {
                    match tokio::task::spawn_blocking(move || apply(&engine, &store, list)).await {
                        Ok(Ok(n)) => MemberResult::Applied(id, index, n),
                        Ok(Err(e)) => MemberResult::Failed(id, e),
                        Err(e) => MemberResult::Failed(id, format!("delete task: {e}")),
                    }
                });
            } else {
                let addr = view
                    .member(&id)
                    .filter(|m| m.live)
                    .and_then(|m| m.grpc_addr);
                let peers = self.peers.clone();
                let hints = self.hints.clone();
                let req = req.clone();
                tasks.spawn(async move { remote_delete(peers, hints, id, index, addr, req).await });
            }
        }
        let mut applied: BTreeSet<usize> = BTreeSet::new();
        let mut outcome = DeleteOutcome::default();
        let mut errors = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(MemberResult::Applied(id, index, n)) => {
                    applied.insert(index);
                    outcome.applied_on.push(id);
                    outcome.deleted_series = outcome.deleted_series.max(n);
                }
                Ok(MemberResult::Failed(id, e)) => {
                    errors.push(format!("{id}: {e}"));
                    outcome.hinted.push(id);
                }
                Err(e) => errors.push(format!("delete task failed: {e}")),
            }
            if enough_owners(&ring, self.settings.consistency, &applied) {
                break;
            }
        }
        // Members still answering finish on their own and are hinted if they fail.
        tasks.detach_all();
        if !enough_owners(&ring, self.settings.consistency, &applied) {
            return Err(StorageError::Unavailable(format!(
                "the delete reached fewer owners than consistency {:?} requires (it stays \
                 hinted for the others): {}",
                self.settings.consistency,
                errors.join("; ")
            )));
        }
        Ok(outcome)
    }

    /// Pulls each peer's tombstones and applies the unknown ones here. Returns how many were
    /// learned, and the peers that could not be asked.
    pub(super) async fn learn_tombstones(
        &self,
        peers: &[(String, SocketAddr)],
    ) -> (u64, Vec<String>) {
        let mut learned = 0u64;
        let mut errors = Vec::new();
        for (peer, addr) in peers {
            let resp = match self.peers.tombstones(*addr).await {
                Ok(r) => r,
                Err(s) => {
                    errors.push(format!("{peer}: Tombstones: {}", s.message()));
                    continue;
                }
            };
            let list: Result<Vec<ClusterTombstone>, _> = resp
                .tombstones
                .into_iter()
                .map(ClusterTombstone::from_wire)
                .collect();
            let list = match list {
                Ok(l) => l,
                Err(e) => {
                    errors.push(format!("{peer}: {e}"));
                    continue;
                }
            };
            let new = self.tombstones.unknown(list);
            if new.is_empty() {
                continue;
            }
            let n = new.len() as u64;
            let engine = self.engine.clone();
            let store = self.tombstones.clone();
            match tokio::task::spawn_blocking(move || apply(&engine, &store, new)).await {
                Ok(Ok(_)) => {
                    tracing::info!(peer = %peer, tombstones = n, "learned deletes from a peer");
                    learned += n;
                }
                Ok(Err(e)) => errors.push(format!("applying {peer}'s tombstones: {e}")),
                Err(e) => errors.push(format!("tombstone task: {e}")),
            }
        }
        (learned, errors)
    }

    /// Forgets tombstones older than raw retention (kept forever without one).
    pub(super) fn expire_tombstones(&self) {
        let Some(keep) = self.engine.options().retention.raw_ms else {
            return;
        };
        match self.tombstones.expire(now_ms().saturating_sub(keep)) {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "cluster tombstones past raw retention"),
            Err(e) => tracing::warn!(error = %e, "cannot expire cluster tombstones"),
        }
    }
}

async fn remote_delete(
    peers: Peers,
    hints: Arc<HintStore>,
    node: String,
    index: usize,
    addr: Option<SocketAddr>,
    req: DeleteRequest,
) -> MemberResult {
    let sent = match addr {
        Some(addr) => peers
            .delete(addr, req.clone())
            .await
            .map_err(|s| (s.code(), s.message().to_string())),
        None => Err((tonic::Code::Unavailable, "not alive in gossip".to_string())),
    };
    match sent {
        Ok(resp) => MemberResult::Applied(node, index, resp.deleted_series),
        // Refused as malformed: it would be refused again.
        Err((tonic::Code::InvalidArgument, msg)) => MemberResult::Failed(node, msg),
        Err((_, msg)) => {
            let target = node.clone();
            let stored =
                tokio::task::spawn_blocking(move || hints.append_delete(&target, &req)).await;
            match stored {
                Ok(Ok(())) => tracing::info!(node = %node, "member unreachable; delete hinted"),
                Ok(Err(e)) => tracing::warn!(node = %node, error = %e, "cannot hint a delete"),
                Err(e) => tracing::warn!(node = %node, error = %e, "hint task failed"),
            }
            MemberResult::Failed(node, msg)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enough_owners_per_arc() {
        let ring = Ring::new(["a", "b", "c", "d"], 3);
        let idx = |ids: &[&str]| -> BTreeSet<usize> {
            ids.iter()
                .map(|id| ring.nodes().iter().position(|n| n == id).unwrap())
                .collect()
        };
        // Quorum of 3 owners is 2: any two of four nodes miss the arcs the other two share
        // with a third.
        assert!(!enough_owners(
            &ring,
            Consistency::Quorum,
            &idx(&["a", "b"])
        ));
        assert!(enough_owners(
            &ring,
            Consistency::Quorum,
            &idx(&["a", "b", "c"])
        ));
        assert!(enough_owners(&ring, Consistency::One, &idx(&["a", "b"])));
        assert!(!enough_owners(
            &ring,
            Consistency::All,
            &idx(&["a", "b", "c"])
        ));
        assert!(enough_owners(
            &ring,
            Consistency::All,
            &idx(&["a", "b", "c", "d"])
        ));
        let three = Ring::new(["a", "b", "c"], 3);
        let two: BTreeSet<usize> = [0, 1].into();
        assert!(enough_owners(&three, Consistency::Quorum, &two));
    }
}
