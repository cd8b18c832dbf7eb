//! The replicated write path: the node that receives a batch (over any protocol) splits it by
//! owner, stores its own share locally, sends the rest to the other owners in one request per
//! node, and answers once every sample has the acknowledgements its consistency level asks
//! for. Owners that fail get a durable hint; the writes still running when the answer is
//! sent carry on in the background and hint on failure too.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinSet;

use super::hints::HintStore;
use super::ring::series_token;
use super::rpc;
use super::Cluster;
use crate::storage::{AppendOutcome, Labels, Rejection, Sample, StorageError};

/// What one owner did with its share: the batch indices it stored, and per-index refusals.
struct ShareResult {
    indices: Vec<usize>,
    outcome: Result<Vec<(usize, Rejection)>, String>,
}

impl Cluster {
    /// Stores `batch` on the owners of each series. On `Ok`, every sample not listed in
    /// `rejected` is durable on as many owners as the consistency level requires.
    pub async fn write(&self, batch: Vec<(Labels, Sample)>) -> Result<AppendOutcome, StorageError> {
        let view = self.view();
        let ring = view.ring.clone();
        if ring.is_empty() {
            return Err(StorageError::Unavailable(
                "no storage node is in the ring".into(),
            ));
        }
        let n = batch.len();
        let mut per_node: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut required = vec![0usize; n];
        let mut owners_of: HashMap<&Labels, Vec<usize>> = HashMap::new();
        for (i, (labels, _)) in batch.iter().enumerate() {
            let owners = owners_of
                .entry(labels)
                .or_insert_with(|| ring.owner_indices(series_token(labels)));
            required[i] = self.settings.consistency.required(owners.len());
            for &o in owners.iter() {
                per_node.entry(o).or_default().push(i);
            }
        }
        drop(owners_of);

        let batch = Arc::new(batch);
        let mut tasks: JoinSet<ShareResult> = JoinSet::new();
        for (node, indices) in per_node {
            let Some(id) = ring.node(node).map(str::to_string) else {
                continue;
            };
            let batch = batch.clone();
            if id == self.settings.node_id {
                let engine = self.engine.clone();
                tasks.spawn(async move { local_share(engine, batch, indices).await });
            } else {
                let addr = view.member(&id).and_then(|m| m.grpc_addr);
                let peers = self.peers.clone();
                let hints = self.hints.clone();
                tasks.spawn(
                    async move { remote_share(peers, hints, id, addr, batch, indices).await },
                );
            }
        }

        let mut acks = vec![0usize; n];
        let mut rejected: HashMap<usize, Rejection> = HashMap::new();
        let mut errors: Vec<String> = Vec::new();
        let done = |acks: &[usize], rejected: &HashMap<usize, Rejection>| {
            (0..n).all(|i| acks[i] >= required[i] || rejected.contains_key(&i))
        };
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(ShareResult {
                    indices,
                    outcome: Ok(refused),
                }) => {
                    let refused_idx: Vec<usize> = refused.iter().map(|(i, _)| *i).collect();
                    for i in indices {
                        if !refused_idx.contains(&i) {
                            if let Some(a) = acks.get_mut(i) {
                                *a += 1;
                            }
                        }
                    }
                    for (i, why) in refused {
                        rejected.entry(i).or_insert(why);
                    }
                }
                Ok(ShareResult {
                    outcome: Err(e), ..
                }) => errors.push(e),
                Err(e) => errors.push(format!("write task failed: {e}")),
            }
            if done(&acks, &rejected) {
                break;
            }
        }
        // Writes to slower owners continue on their own and hint if they fail.
        tasks.detach_all();
        if !done(&acks, &rejected) {
            let short = (0..n)
                .filter(|&i| acks[i] < required[i] && !rejected.contains_key(&i))
                .count();
            return Err(StorageError::Unavailable(format!(
                "{short} of {n} samples reached fewer owners than consistency {:?} requires: {}",
                self.settings.consistency,
                errors.join("; ")
            )));
        }
        let mut rejected: Vec<(usize, Rejection)> = rejected.into_iter().collect();
        rejected.sort_by_key(|(i, _)| *i);
        Ok(AppendOutcome {
            appended: n - rejected.len(),
            rejected,
        })
    }
}

async fn local_share(
    engine: Arc<crate::storage::Engine>,
    batch: Arc<Vec<(Labels, Sample)>>,
    indices: Vec<usize>,
) -> ShareResult {
    let idx = indices.clone();
    let result = tokio::task::spawn_blocking(move || {
        let share: Vec<(Labels, Sample)> =
            idx.iter().filter_map(|&i| batch.get(i).cloned()).collect();
        engine.append_labeled(&share).map(|o| {
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
            format!("{node}: address unknown (not seen in gossip)"),
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
