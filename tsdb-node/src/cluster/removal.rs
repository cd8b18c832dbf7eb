//! Removing a dead node for good (`POST /api/v1/admin/remove-node`): for a node that will
//! never return, so it cannot decommission itself.
//!
//! A node cannot set another node's gossip keys, so every node publishes the removals it
//! knows in its own state, as `removed:<node id>` = the highest generation of that node that
//! was removed. Every node merges what all members publish, persists it in
//! `<data_dir>/cluster/removed.json` and republishes it, so a removal survives the restart of
//! whichever node took the request. A member whose generation is at most its removed
//! generation counts as `left`: out of the ring and out of `members.json`. Its hints are
//! dropped, and the node runs an anti-entropy round with its co-owners in the new ring — the
//! surviving previous owners of every arc it gained — so each series gets its RF copies back
//! from the remaining replicas. A removed node that is started again gossips a newer
//! generation and joins as a new node.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use super::anti_entropy::Scope;
use super::Cluster;

const FILE: &str = "removed.json";

/// Removed node id → highest generation removed.
pub type Removed = BTreeMap<String, u64>;

pub(super) fn load(state_dir: &Path) -> Removed {
    let path = state_dir.join(FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            tracing::warn!(file = %path.display(), error = %e, "ignoring an unreadable removed-node list");
            Removed::new()
        }),
        Err(_) => Removed::new(),
    }
}

fn save(state_dir: &Path, removed: &Removed) -> std::io::Result<()> {
    std::fs::create_dir_all(state_dir)?;
    let bytes = serde_json::to_vec_pretty(removed).map_err(std::io::Error::other)?;
    crate::storage::fsutil::write_atomic(&state_dir.join(FILE), &bytes)
}

/// Whether the member `id` at `generation` was removed.
pub fn is_removed(removed: &Removed, id: &str, generation: u64) -> bool {
    removed.get(id).is_some_and(|&g| generation <= g)
}

/// Merges `incoming` into `known`; returns the ids that are new or moved to a later
/// generation.
pub fn merge(known: &mut Removed, incoming: &Removed) -> Vec<String> {
    let mut changed = Vec::new();
    for (id, &g) in incoming {
        let e = known.entry(id.clone()).or_insert_with(|| {
            changed.push(id.clone());
            g
        });
        if *e < g {
            *e = g;
            if !changed.contains(id) {
                changed.push(id.clone());
            }
        }
    }
    changed
}

/// What `remove-node` answers.
#[derive(Debug, Serialize)]
pub struct RemoveOutcome {
    pub node_id: String,
    pub generation: u64,
    pub was_live: bool,
    pub hint_bytes_dropped: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    #[error("{0} is this node; decommission it instead")]
    IsSelf(String),
    #[error("{0} is neither a member nor in the ring")]
    Unknown(String),
    #[error(
        "{0} is alive; decommission it instead (or remove it anyway with force=true, \
         losing the data only it holds)"
    )]
    Alive(String),
    #[error("cannot persist the removal: {0}")]
    Io(String),
}

impl Cluster {
    /// Removes `id` from the cluster for good, on behalf of a node that cannot leave itself.
    pub async fn remove_node(
        self: &Arc<Self>,
        id: &str,
        force: bool,
    ) -> Result<RemoveOutcome, RemoveError> {
        if id == self.settings.node_id {
            return Err(RemoveError::IsSelf(id.to_string()));
        }
        let view = self.view();
        let member = view.member(id);
        if member.is_none() && !view.ring.contains(id) {
            return Err(RemoveError::Unknown(id.to_string()));
        }
        let was_live = member.is_some_and(|m| m.live);
        if was_live && !force {
            return Err(RemoveError::Alive(id.to_string()));
        }
        // Generations are start times in ms: every incarnation started before now is
        // removed (also one that gossip forgot but a peer still remembers), and a node
        // started again later joins as new.
        let now = u64::try_from(super::deletes::now_ms()).unwrap_or(0);
        let generation = member.map_or(now, |m| m.generation.max(now));
        let mut one = Removed::new();
        one.insert(id.to_string(), generation);
        let dropped = self.adopt_removals(&one).await?;
        Ok(RemoveOutcome {
            node_id: id.to_string(),
            generation,
            was_live,
            hint_bytes_dropped: dropped,
        })
    }

    /// Removals this node knows.
    pub fn removed_nodes(&self) -> Removed {
        self.removed.lock().clone()
    }

    /// Merges removals (from the API or from gossip); for each new one: persist, publish,
    /// drop its hints, and start a co-owner anti-entropy round. Returns hint bytes dropped.
    pub(super) async fn adopt_removals(
        self: &Arc<Self>,
        incoming: &Removed,
    ) -> Result<u64, RemoveError> {
        let (changed, all) = {
            let mut known = self.removed.lock();
            let changed = merge(&mut known, incoming);
            if !changed.is_empty() {
                save(&self.settings.state_dir, &known)
                    .map_err(|e| RemoveError::Io(e.to_string()))?;
            }
            (changed, known.clone())
        };
        if changed.is_empty() {
            return Ok(0);
        }
        self.membership.publish_removed(&all).await;
        let mut dropped = 0;
        for id in &changed {
            let hints = self.hints.clone();
            let target = id.clone();
            match tokio::task::spawn_blocking(move || hints.drop_target(&target)).await {
                Ok(Ok(n)) => dropped += n,
                Ok(Err(e)) => tracing::warn!(node = %id, error = %e, "cannot drop hints"),
                Err(e) => tracing::warn!(node = %id, error = %e, "hint task failed"),
            }
            tracing::info!(node = %id, hint_bytes = dropped, "node removed from the cluster");
        }
        self.refresh_view().await;
        // The new ring gives this node arcs of the removed one; their surviving previous
        // owners are co-owners now, so a co-owner round restores the copies.
        let cluster = self.clone();
        tokio::spawn(async move {
            let summary = cluster.anti_entropy_round(Scope::CoOwners).await;
            tracing::info!(
                repaired = summary.samples_repaired,
                errors = summary.errors.len(),
                "anti-entropy after a node removal"
            );
        });
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_keeps_the_latest_generation() {
        let mut known: Removed = [("a".to_string(), 5)].into();
        let incoming: Removed = [("a".to_string(), 3), ("b".to_string(), 1)].into();
        assert_eq!(merge(&mut known, &incoming), vec!["b".to_string()]);
        assert_eq!(merge(&mut known, &incoming), Vec::<String>::new());
        let later: Removed = [("a".to_string(), 9)].into();
        assert_eq!(merge(&mut known, &later), vec!["a".to_string()]);
        assert!(is_removed(&known, "a", 9));
        // A later incarnation is a new node.
        assert!(!is_removed(&known, "a", 10));
        assert!(!is_removed(&known, "c", 0));
    }

    #[test]
    fn persisted() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).is_empty());
        let r: Removed = [("n/1".to_string(), 7)].into();
        save(dir.path(), &r).unwrap();
        assert_eq!(load(dir.path()), r);
    }
}
