//! The replicated write path: the node that receives a batch (over any protocol) splits it by
//! owner, stores its own share locally, sends the rest to the other owners in one request per
//! node, and answers once every sample has the acknowledgements its consistency level asks
//! for. Owners that fail get a durable hint; the writes still running when the answer is
//! sent carry on in the background and hint on failure too.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinSet;

use super::hints::HintStore;
use super::replication::{self, AckTracker};
use super::rpc;
use super::Cluster;
use crate::storage::{AppendOutcome, LabelSets, Labels, Rejection, Sample, StorageError};

/// What one owner did with its share: the batch indices it stored, and per-index refusals.
struct ShareResult {
    indices: Vec<usize>,
    outcome: Result<Vec<(usize, Rejection)>, String>,
}

impl Cluster {
    /// Stores `batch` on the owners of each series. On `Ok`, every sample not listed in
    /// `rejected` is durable on as many owners as the consistency level requires. `sets` is
    /// passed to this node's engine for its share (see [`LabelSets`]).
    pub async fn write(
        &self,
        batch: Vec<(Labels, Sample)>,
        sets: LabelSets,
    ) -> Result<AppendOutcome, StorageError> {
        let view = self.view();
        let ring = view.ring.clone();
        if ring.is_empty() {
            return Err(StorageError::Unavailable(
                "no storage node is in the ring".into(),
            ));
        }
        let n = batch.len();
        let plan = replication::plan(&ring, self.settings.consistency, &batch);
        let batch = Arc::new(batch);
        let mut tasks: JoinSet<ShareResult> = JoinSet::new();
        for (node, indices) in plan.per_node {
            let Some(id) = ring.node(node).map(str::to_string) else {
                continue;
            };
            let batch = batch.clone();
            if id == self.settings.node_id {
                let engine = self.engine.clone();
                tasks.spawn(async move { local_share(engine, batch, indices, sets).await });
            } else {
                // An owner gossip already declared dead is hinted at once instead of
                // holding a task (and its share of the batch) until the RPC deadline.
                let addr = view
                    .member(&id)
                    .filter(|m| m.live)
                    .and_then(|m| m.grpc_addr);
                let peers = self.peers.clone();
                let hints = self.hints.clone();
                tasks.spawn(
                    async move { remote_share(peers, hints, id, addr, batch, indices).await },
                );
            }
        }

        let mut tracker = AckTracker::new(plan.required);
        let mut errors: Vec<String> = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(ShareResult {
                    indices,
                    outcome: Ok(refused),
                }) => tracker.stored(&indices, refused),
                Ok(ShareResult {
                    outcome: Err(e), ..
                }) => errors.push(e),
                Err(e) => errors.push(format!("write task failed: {e}")),
            }
            if tracker.done() {
                break;
            }
        }
        // Writes to slower owners continue on their own and hint if they fail.
        tasks.detach_all();
        if !tracker.done() {
            return Err(StorageError::Unavailable(format!(
                "{} of {n} samples reached fewer owners than consistency {:?} requires: {}",
                tracker.short(),
                self.settings.consistency,
                errors.join("; ")
            )));
        }
        Ok(tracker.into_outcome())
    }
}

async fn local_share(
    engine: Arc<crate::storage::Engine>,
    batch: Arc<Vec<(Labels, Sample)>>,
    indices: Vec<usize>,
    sets: LabelSets,
) -> ShareResult {
    let idx = indices.clone();
    let result = tokio::task::spawn_blocking(move || {
        let share: Vec<(Labels, Sample)> =
            idx.iter().filter_map(|&i| batch.get(i).cloned()).collect();
        let window = engine.options().out_of_order_window_ms;
        engine.append_labeled_within(&share, window, sets).map(|o| {
            o.rejected
                .into_iter()
                .filter_map(|(k, why)| idx.get(k).map(|&i| (i, why)))
                .collect::<Vec<_>>()
        })
    })
    .await;
    let outcome = match result {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(format!("local write: {e}")),
        Err(e) => Err(format!("local write task: {e}")),
    };
    ShareResult { indices, outcome }
}

async fn remote_share(
    peers: super::client::Peers,
    hints: Arc<HintStore>,
    node: String,
    addr: Option<SocketAddr>,
    batch: Arc<Vec<(Labels, Sample)>>,
    indices: Vec<usize>,
) -> ShareResult {
    let (req, order) = rpc::write_request(&batch, &indices);
    let sent = match addr {
        Some(addr) => peers
            .write(addr, req.clone())
            .await
            .map_err(|s| (s.code(), format!("{node}: {}", s.message()))),
        None => Err((
            tonic::Code::Unavailable,
            format!("{node}: not alive in gossip"),
        )),
    };
    let outcome = match sent {
        Ok(resp) => Ok(resp
            .rejected
            .into_iter()
            .filter_map(|r| {
                let i = *order.get(usize::try_from(r.index).ok()?)?;
                Some((i, Rejection::Replica(r.reason)))
            })
            .collect()),
        // A request the owner refused as malformed would be refused again: no hint.
        Err((tonic::Code::InvalidArgument, msg)) => Err(msg),
        Err((_, msg)) => {
            let target = node.clone();
            let mut req = req;
            req.hinted_at_ms = super::deletes::now_ms();
            let stored = tokio::task::spawn_blocking(move || hints.append(&target, &req)).await;
            match stored {
                Ok(Ok(true)) => tracing::debug!(node = %node, "owner unreachable; write hinted"),
                Ok(Ok(false)) => {
                    tracing::warn!(node = %node, "hint budget exhausted; write not hinted")
                }
                Ok(Err(e)) => tracing::warn!(node = %node, error = %e, "cannot store hint"),
                Err(e) => tracing::warn!(node = %node, error = %e, "hint task failed"),
            }
            Err(msg)
        }
    };
    ShareResult { indices, outcome }
}
