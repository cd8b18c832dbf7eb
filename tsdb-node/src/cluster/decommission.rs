//! Decommission: a node hands its data to the owners it leaves behind, checks they hold it,
//! and leaves the ring.
//!
//! Steps, each visible as `state` and `progress` in `/api/v1/cluster/members`:
//! 1. `leaving`: still a ring member (it keeps taking writes), it streams every local series
//!    to that series' owners in the ring without it.
//! 2. `left`: peers drop it from their rings, so new writes go to the new owners. It waits a
//!    few gossip rounds and streams again, which moves writes that reached it in between
//!    (delivering a sample twice is harmless: equal timestamps replace).
//! 3. It verifies, per metric, that every new owner answers at least as many samples per
//!    series as it holds itself, and reports the result. The operator may then delete the node.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::ring::Ring;
use super::rpc::{self, SelectRequest};
use super::{Cluster, NodeState};
use crate::storage::{Labels, Matcher, Sample, METRIC_NAME_LABEL};

/// Samples per `Write` request while streaming.
const STREAM_BATCH: usize = 20_000;

impl Cluster {
    /// Starts decommissioning in the background. False when it already started.
    pub fn decommission(self: &Arc<Self>) -> bool {
        if self.decommissioning.swap(true, Ordering::SeqCst) {
            return false;
        }
        // Ingest that pulls from outside (MQTT) stops taking new work here; what it already
        // took is stored through the cluster before the streaming passes below.
        self.leaving.send_replace(true);
        let cluster = self.clone();
        tokio::spawn(async move {
            match cluster.run_decommission().await {
                Ok(summary) => {
                    tracing::info!(%summary, "decommission complete");
                    cluster.membership.set_progress(&summary).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "decommission failed");
                    cluster
                        .membership
                        .set_progress(&format!("decommission failed: {e}"))
                        .await;
                }
            }
        });
        true
    }

    /// Turns true once this node starts decommissioning.
    pub fn leaving(&self) -> tokio::sync::watch::Receiver<bool> {
        self.leaving.subscribe()
    }

    async fn run_decommission(&self) -> Result<String, String> {
        let round = self.settings.gossip_interval;
        self.membership.set_state(NodeState::Leaving).await;
        self.membership
            .set_progress("leaving: streaming data to the remaining owners")
            .await;
        tokio::time::sleep(round * 3).await;
        let first = self.stream_all("pass 1").await?;
        self.membership.set_state(NodeState::Left).await;
        // Let every peer see `left` before the second pass, so little lands here afterwards.
        tokio::time::sleep(round * 5).await;
        let second = self.stream_all("pass 2").await?;
        let checked = self.verify_handover().await?;
        Ok(format!(
            "left: {first} samples handed over (+{second} in a second pass), {checked} series verified on their new owners"
        ))
    }

    /// The ring without this node, over the members gossip knows.
    fn remaining_ring(&self) -> Result<Ring, String> {
        let view = self.view();
        let others: Vec<String> = view
            .members
            .iter()
            .filter(|m| m.in_ring() && m.node_id != self.settings.node_id)
            .map(|m| m.node_id.clone())
            .collect();
        if others.is_empty() {
            return Err("no other storage node to hand the data to".into());
        }
        Ok(Ring::new(others, self.settings.replication_factor))
    }

    async fn metric_names(&self) -> Result<Vec<String>, String> {
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || {
            engine.label_values(METRIC_NAME_LABEL, &[], i64::MIN, i64::MAX)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
    }

    async fn local_metric(&self, name: &str) -> Result<Vec<(Labels, Vec<Sample>)>, String> {
        let engine = self.engine.clone();
        let m = vec![Matcher::equal(METRIC_NAME_LABEL, name)];
        let found = tokio::task::spawn_blocking(move || engine.select(&m, i64::MIN, i64::MAX))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        Ok(found.into_iter().map(|s| (s.labels, s.samples)).collect())
    }

    async fn send(&self, node: &str, batch: &[(Labels, Sample)]) -> Result<(), String> {
        let addr = self
            .view()
            .member(node)
            .and_then(|m| m.grpc_addr)
            .ok_or_else(|| format!("address of {node} unknown"))?;
        let all: Vec<usize> = (0..batch.len()).collect();
        let (mut req, order) = rpc::write_request(batch, &all);
        req.handover = true;
        let resp = self
            .peers
            .write(addr, req)
            .await
            .map_err(|s| format!("{node}: {}", s.message()))?;
        // A refused sample would only show in verification, as a count; name it here.
        if let Some(r) = resp.rejected.first() {
            let what = usize::try_from(r.index)
                .ok()
                .and_then(|i| order.get(i))
                .and_then(|&i| batch.get(i))
                .map(|(l, s)| format!("{l} at {}", s.t))
                .unwrap_or_default();
            return Err(format!(
                "{node} refused {} handed-over samples, first {what}: {}",
                resp.rejected.len(),
                r.reason
            ));
        }
        Ok(())
    }

    /// Sends every local sample to its owners in the remaining ring; returns samples sent.
    async fn stream_all(&self, pass: &str) -> Result<u64, String> {
        let ring = self.remaining_ring()?;
        let names = self.metric_names().await?;
        let mut sent = 0u64;
        for (k, name) in names.iter().enumerate() {
            let mut pending: HashMap<String, Vec<(Labels, Sample)>> = HashMap::new();
            for (labels, samples) in self.local_metric(name).await? {
                for owner in ring.owners(&labels) {
                    let buf = pending.entry(owner.to_string()).or_default();
                    buf.extend(samples.iter().map(|s| (labels.clone(), *s)));
                    if buf.len() >= STREAM_BATCH {
                        let batch = std::mem::take(buf);
                        self.send(owner, &batch).await?;
                        sent += batch.len() as u64;
                    }
                }
            }
            for (owner, batch) in pending {
                if !batch.is_empty() {
                    self.send(&owner, &batch).await?;
                    sent += batch.len() as u64;
                }
            }
            self.membership
                .set_progress(&format!(
                    "leaving ({pass}): {} of {} metrics streamed, {sent} samples",
                    k + 1,
                    names.len()
                ))
                .await;
        }
        Ok(sent)
    }

    /// Checks every new owner holds at least this node's samples of each series.
    async fn verify_handover(&self) -> Result<usize, String> {
        let ring = self.remaining_ring()?;
        let mut checked = 0;
        for name in self.metric_names().await? {
            let local = self.local_metric(&name).await?;
            let req = SelectRequest {
                matchers: rpc::matchers_to_wire(&[Matcher::equal(METRIC_NAME_LABEL, &name)]),
                mint: i64::MIN,
                maxt: i64::MAX,
                token_ranges: Vec::new(),
            };
            let mut answers: HashMap<String, HashMap<Labels, usize>> = HashMap::new();
            for node in ring.nodes() {
                let addr = self
                    .view()
                    .member(node)
                    .and_then(|m| m.grpc_addr)
                    .ok_or_else(|| format!("address of {node} unknown"))?;
                let resp = self
                    .peers
                    .select(addr, req.clone())
                    .await
                    .map_err(|s| format!("verifying on {node}: {}", s.message()))?;
                let counts = resp
                    .series
                    .into_iter()
                    .filter_map(|s| rpc::series_from_wire(s).ok())
                    .map(|(l, s)| (l, s.len()))
                    .collect();
                answers.insert(node.clone(), counts);
            }
            for (labels, samples) in &local {
                for owner in ring.owners(labels) {
                    let held = answers
                        .get(owner)
                        .and_then(|m| m.get(labels))
                        .copied()
                        .unwrap_or(0);
                    if held < samples.len() {
                        return Err(format!(
                            "{owner} holds {held} of {} samples of {labels}",
                            samples.len()
                        ));
                    }
                }
                checked += 1;
            }
        }
        Ok(checked)
    }
}
