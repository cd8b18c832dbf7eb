//! Anti-entropy: replicas compare Merkle summaries of the ranges they share and each pulls
//! what it lacks, so a replica that missed writes (a coordinator that crashed before hinting,
//! a hint budget that ran out, a lost disk) catches up without a rewrite, and a node that
//! joins receives the data written before it owned its ranges.
//!
//! A round, on each node, for each peer it shares ring arcs with:
//! 1. Both sides summarise the samples of the shared arcs per 2 h window (`summaries`): the
//!    local side computes every window's root in one pass over its data; the peer answers
//!    `Tree` at depth 0 (roots), paged so no call runs long.
//! 2. For each window whose roots differ and where the peer has data, the peer sends the
//!    window's leaves; the local tree descends to the differing buckets (`merkle`).
//! 3. The samples of those buckets come from the peer through `Select` (with token ranges);
//!    the ones this node lacks are appended (equal timestamps replace, so repeating a round
//!    is harmless).
//!
//! Pull only: every replica runs its own rounds, so each direction is repaired once, by the
//! side that lacks the data. Two replicas holding different values at one timestamp settle on
//! the one with the larger bit pattern — both apply the same rule, so they converge without
//! knowing which write came last.
//!
//! The most recent minutes are left out ([`SETTLE_MS`]): writes there may still be on their
//! way to the third replica or waiting as hints. Data past raw retention is left out too,
//! since replicas expire files at different moments.
//!
//! Join: a node's first round after start-up, and rounds an operator triggers, also compare
//! each of its arcs with the owners the arc would have without it — the nodes that held the
//! arc before it joined — so data written before the join moves to it even at RF=1.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use super::merkle::{self, MerkleTree};
use super::ring::{series_token, Ring};
use super::rpc::{self, SelectRequest, TreeRequest};
use super::summaries::{self, WINDOW_MS};
use super::token_ranges::TokenRanges;
use super::Cluster;
use crate::storage::{Engine, Labels, Sample};

/// Data younger than this is not compared: it may still be in flight to a replica.
pub const SETTLE_MS: i64 = 5 * 60_000;

/// Buckets fetched per `Select`: bounds one answer to 1/16 of a window's shared data.
const BUCKETS_PER_FETCH: usize = merkle::LEAVES / 16;

/// How to find the peers to compare with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The co-owners of this node's arcs (periodic rounds).
    CoOwners,
    /// Co-owners and the owners each arc would have without this node (after start-up and
    /// when an operator asks): how a joining node gets the data of its new ranges.
    WithPreviousOwners,
}

/// For each peer, the tokens this node and that peer should both hold.
pub fn peer_ranges(ring: &Ring, me: &str, scope: Scope) -> BTreeMap<String, TokenRanges> {
    let mut arcs: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    if !ring.contains(me) {
        return BTreeMap::new();
    }
    let previous = (scope == Scope::WithPreviousOwners).then(|| {
        Ring::new(
            ring.nodes().iter().filter(|n| n.as_str() != me).cloned(),
            ring.replication_factor(),
        )
    });
    for (start, end, owners) in ring.ranges() {
        let ids: Vec<&str> = owners.iter().filter_map(|&i| ring.node(i)).collect();
        if !ids.contains(&me) {
            continue;
        }
        let mut peers: BTreeSet<&str> = ids.into_iter().filter(|id| *id != me).collect();
        // The previous ring's points are a subset of this one's, so the whole arc lies in
        // one of its arcs and `end` names its owners.
        if let Some(prev) = &previous {
            peers.extend(prev.owners_of_token(end));
        }
        for p in peers {
            arcs.entry(p.to_string()).or_default().push((start, end));
        }
    }
    arcs.into_iter()
        .map(|(p, a)| (p, TokenRanges::from_arcs(a)))
        .collect()
}

/// The samples of `remote` this replica should store: timestamps it lacks, and at a
/// timestamp both hold with different values, the remote value when its bits are larger.
/// Both inputs are sorted by time with unique timestamps.
pub fn samples_to_pull(local: &[Sample], remote: &[Sample]) -> Vec<Sample> {
    let mut out = Vec::new();
    let mut i = 0;
    for r in remote {
        while i < local.len() && local[i].t < r.t {
            i += 1;
        }
        match local.get(i) {
            Some(l) if l.t == r.t => {
                if r.v.to_bits() > l.v.to_bits() {
                    out.push(*r);
                }
            }
            _ => out.push(*r),
        }
    }
    out
}

/// What one round did, as the admin endpoint answers it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RoundSummary {
    /// Peers compared with.
    pub peers: usize,
    /// Windows either side had data in, summed over peers.
    pub windows_compared: u64,
    pub windows_differing: u64,
    pub buckets_differing: u64,
    /// Samples the peers sent for the differing buckets.
    pub samples_fetched: u64,
    /// Samples this node lacked and stored.
    pub samples_repaired: u64,
    /// Bytes of protobuf the peers answered (trees and samples, without gRPC framing).
    pub bytes_received: u64,
    pub seconds: f64,
    /// Tombstones learned from the peers (deletes this node had missed) and applied.
    pub tombstones_learned: u64,
    /// Samples a peer held that tombstones cover, not pulled.
    pub samples_tombstoned: u64,
    /// Peers that could not be compared, with the reason.
    pub errors: Vec<String>,
}

/// One metric for `/metrics`: `(name, type, help, value)`.
pub type Family = (&'static str, &'static str, &'static str, f64);

/// Counters for `/metrics`.
#[derive(Default)]
pub struct AntiEntropyMetrics {
    rounds: AtomicU64,
    windows_differing: AtomicU64,
    buckets_differing: AtomicU64,
    samples_repaired: AtomicU64,
    peer_errors: AtomicU64,
    last_round_micros: AtomicU64,
}

impl AntiEntropyMetrics {
    fn record(&self, s: &RoundSummary) {
        self.rounds.fetch_add(1, Ordering::Relaxed);
        self.windows_differing
            .fetch_add(s.windows_differing, Ordering::Relaxed);
        self.buckets_differing
            .fetch_add(s.buckets_differing, Ordering::Relaxed);
        self.samples_repaired
            .fetch_add(s.samples_repaired, Ordering::Relaxed);
        self.peer_errors
            .fetch_add(s.errors.len() as u64, Ordering::Relaxed);
        self.last_round_micros
            .store((s.seconds * 1e6) as u64, Ordering::Relaxed);
    }

    /// Every metric.
    pub fn families(&self) -> Vec<Family> {
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        vec![
            (
                "strata_anti_entropy_rounds_total",
                "counter",
                "Anti-entropy rounds completed.",
                c(&self.rounds),
            ),
            (
                "strata_anti_entropy_windows_differing_total",
                "counter",
                "Time windows whose Merkle roots differed from a peer's.",
                c(&self.windows_differing),
            ),
            (
                "strata_anti_entropy_buckets_differing_total",
                "counter",
                "Token buckets whose leaves differed from a peer's.",
                c(&self.buckets_differing),
            ),
            (
                "strata_anti_entropy_samples_repaired_total",
                "counter",
                "Samples this node lacked and pulled from a peer.",
                c(&self.samples_repaired),
            ),
            (
                "strata_anti_entropy_peer_errors_total",
                "counter",
                "Peers a round could not compare with.",
                c(&self.peer_errors),
            ),
            (
                "strata_anti_entropy_last_round_seconds",
                "gauge",
                "Duration of the last anti-entropy round.",
                self.last_round_micros.load(Ordering::Relaxed) as f64 / 1e6,
            ),
        ]
    }
}

/// Per-node anti-entropy state: one round at a time, and the counters.
#[derive(Default)]
pub struct AntiEntropy {
    /// Held by a round, and by cleanup (which must not run beside a repair).
    pub(super) running: tokio::sync::Mutex<()>,
    pub metrics: AntiEntropyMetrics,
}

/// Runs blocking storage work on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, crate::storage::StorageError> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("storage task failed: {e}"))?
        .map_err(|e| e.to_string())
}

/// The time span a round compares: retained data up to a few minutes ago.
fn span(engine: &Engine) -> (i64, i64) {
    let opts = engine.options();
    let now = (opts.clock)();
    let maxt = now.saturating_sub(SETTLE_MS);
    let mint = match opts.retention.raw_ms {
        // Whole windows past the horizon only; the one it cuts through may already be
        // partly expired on one replica.
        Some(keep) => crate::storage::layout::bucket_start(now.saturating_sub(keep), WINDOW_MS)
            .saturating_add(WINDOW_MS),
        None => i64::MIN,
    };
    (mint, maxt)
}

/// One peer's part of a round (also what cleanup compares with).
pub(super) struct PeerRound<'a> {
    pub(super) cluster: &'a Cluster,
    pub(super) addr: SocketAddr,
    pub(super) ranges: TokenRanges,
    pub(super) mint: i64,
    pub(super) maxt: i64,
    /// Bytes of the answers received so far.
    pub(super) received: AtomicU64,
}

impl PeerRound<'_> {
    fn count<M: prost::Message>(&self, m: &M) {
        self.received
            .fetch_add(m.encoded_len() as u64, Ordering::Relaxed);
    }

    fn tree_request(&self, depth: u32, windows: Vec<i64>, mint: i64) -> TreeRequest {
        TreeRequest {
            ranges: rpc::ranges_to_wire(&self.ranges),
            mint,
            maxt: self.maxt,
            window_ms: WINDOW_MS,
            depth,
            windows,
        }
    }

    /// The peer's root per window with data.
    pub(super) async fn remote_roots(&self) -> Result<BTreeMap<i64, u64>, String> {
        let mut roots = BTreeMap::new();
        let mut from = self.mint;
        loop {
            let resp = self
                .cluster
                .peers
                .tree(self.addr, self.tree_request(0, Vec::new(), from))
                .await
                .map_err(|s| format!("Tree: {}", s.message()))?;
            self.count(&resp);
            for w in resp.windows {
                let root = w.nodes.first().copied().unwrap_or(0);
                roots.insert(w.start, root);
            }
            match resp.resume_from {
                Some(next) if next > from => from = next,
                Some(_) => return Err("Tree: the peer resumed from an earlier window".into()),
                None => return Ok(roots),
            }
        }
    }

    /// The peer's full tree of window `w`.
    async fn remote_tree(&self, w: i64) -> Result<MerkleTree, String> {
        let resp = self
            .cluster
            .peers
            .tree(
                self.addr,
                self.tree_request(merkle::DEPTH, vec![w], self.mint),
            )
            .await
            .map_err(|s| format!("Tree: {}", s.message()))?;
        self.count(&resp);
        let leaves = match resp.windows.into_iter().find(|x| x.start == w) {
            Some(x) => x.nodes,
            None => vec![0; merkle::LEAVES],
        };
        if leaves.len() != merkle::LEAVES {
            return Err(format!(
                "Tree: {} leaves instead of {}",
                leaves.len(),
                merkle::LEAVES
            ));
        }
        MerkleTree::from_leaves(leaves).ok_or_else(|| "Tree: malformed leaves".to_string())
    }

    /// Compares one window and pulls what is missing; adds to `summary`.
    async fn repair_window(&self, w: i64, summary: &mut RoundSummary) -> Result<(), String> {
        let Some((lo, hi)) = summaries::window_bounds(w, WINDOW_MS, self.mint, self.maxt) else {
            return Ok(());
        };
        let remote = self.remote_tree(w).await?;
        let engine = self.cluster.engine.clone();
        let ranges = self.ranges.clone();
        let (local, _) =
            blocking(move || summaries::window_tree(&engine, &ranges, w, WINDOW_MS, lo, hi))
                .await?;
        let leaves = remote.level(merkle::DEPTH).unwrap_or(&[]);
        // Buckets the peer has nothing in hold nothing to pull.
        let buckets: Vec<usize> = local
            .differing_leaves(&remote)
            .into_iter()
            .filter(|&b| leaves.get(b).is_some_and(|&h| h != 0))
            .collect();
        summary.buckets_differing += buckets.len() as u64;
        for chunk in buckets.chunks(BUCKETS_PER_FETCH) {
            let tokens = merkle::bucket_ranges(chunk).intersect(&self.ranges);
            let (fetched, repaired, tombstoned) = self.pull(&tokens, lo, hi).await?;
            summary.samples_fetched += fetched;
            summary.samples_repaired += repaired;
            summary.samples_tombstoned += tombstoned;
        }
        Ok(())
    }

    /// Fetches the peer's series in `tokens` over `[lo, hi]` and stores what is missing here,
    /// except samples a tombstone covers. Returns (fetched, stored, left out as deleted).
    async fn pull(
        &self,
        tokens: &TokenRanges,
        lo: i64,
        hi: i64,
    ) -> Result<(u64, u64, u64), String> {
        let resp = self
            .cluster
            .peers
            .select(
                self.addr,
                SelectRequest {
                    matchers: Vec::new(),
                    mint: lo,
                    maxt: hi,
                    token_ranges: rpc::ranges_to_wire(tokens),
                },
            )
            .await
            .map_err(|s| format!("Select: {}", s.message()))?;
        self.count(&resp);
        let mut remote: Vec<(Labels, Vec<Sample>)> = Vec::with_capacity(resp.series.len());
        let mut fetched = 0u64;
        for s in resp.series {
            let (labels, samples) = rpc::series_from_wire(s).map_err(|e| e.to_string())?;
            if !samples.windows(2).all(|w| w[0].t < w[1].t) {
                return Err("Select: samples out of time order".into());
            }
            // A peer answering outside what was asked must not write there.
            if !tokens.contains(series_token(&labels))
                || samples.iter().any(|x| x.t < lo || x.t > hi)
            {
                return Err("Select: a series outside the requested buckets".into());
            }
            fetched += samples.len() as u64;
            remote.push((labels, samples));
        }
        let engine = self.cluster.engine.clone();
        let tombstones = self.cluster.tombstones.clone();
        let tokens = tokens.clone();
        let (repaired, tombstoned) = blocking(move || {
            let local: HashMap<Labels, Vec<Sample>> =
                summaries::local_series(&engine, &tokens, lo, hi)?
                    .into_iter()
                    .map(|(_, l, s)| (l, s))
                    .collect();
            let mut tombstoned = 0u64;
            let batch: Vec<(Labels, Vec<Sample>)> = remote
                .into_iter()
                .filter_map(|(labels, samples)| {
                    let mine = local.get(&labels).map(Vec::as_slice).unwrap_or(&[]);
                    let mut missing = samples_to_pull(mine, &samples);
                    let before = missing.len();
                    // A peer that missed a delete still holds what it deleted.
                    tombstones.retain_uncovered(&labels, &mut missing, i64::MIN);
                    tombstoned += (before - missing.len()) as u64;
                    (!missing.is_empty()).then_some((labels, missing))
                })
                .collect();
            if batch.is_empty() {
                return Ok((0, tombstoned));
            }
            let out = engine.append_repair(&batch)?;
            for (i, why) in out.rejected.iter().take(3) {
                tracing::warn!(index = i, reason = %why, "anti-entropy: a repaired sample was refused");
            }
            Ok((out.appended as u64, tombstoned))
        })
        .await?;
        Ok((fetched, repaired, tombstoned))
    }
}

impl Cluster {
    /// Counters of anti-entropy, for `/metrics`.
    pub fn anti_entropy_metrics(&self) -> &AntiEntropyMetrics {
        &self.anti_entropy.metrics
    }

    /// Runs one anti-entropy round now (waiting for a running one to finish first).
    pub async fn anti_entropy_round(&self, scope: Scope) -> RoundSummary {
        let _one_at_a_time = self.anti_entropy.running.lock().await;
        let started = Instant::now();
        let mut summary = RoundSummary::default();
        if self
            .decommissioning
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            // Leaving: it hands data away, pulling more would be wasted.
            return summary;
        }
        let view = self.view();
        let me = self.settings.node_id.clone();
        let plan = peer_ranges(&view.ring, &me, scope);
        let (mint, maxt) = span(&self.engine);
        let mut reachable: Vec<(String, SocketAddr, TokenRanges)> = Vec::new();
        for (peer, ranges) in plan {
            match view
                .member(&peer)
                .filter(|m| m.live)
                .and_then(|m| m.grpc_addr)
            {
                Some(addr) => reachable.push((peer, addr, ranges)),
                None => summary.errors.push(format!("{peer}: not alive in gossip")),
            }
        }
        // Deletes first: what a peer deleted must be gone here before data is compared,
        // and known to the repair filter.
        self.expire_tombstones();
        let asked: Vec<(String, SocketAddr)> =
            reachable.iter().map(|(p, a, _)| (p.clone(), *a)).collect();
        let (learned, errors) = self.learn_tombstones(&asked).await;
        summary.tombstones_learned = learned;
        summary.errors.extend(errors);
        if !reachable.is_empty() && mint <= maxt {
            let engine = self.engine.clone();
            let sets: Vec<TokenRanges> = reachable.iter().map(|r| r.2.clone()).collect();
            match blocking(move || summaries::roots_many(&engine, &sets, mint, maxt, WINDOW_MS))
                .await
            {
                Ok(local_roots) => {
                    for ((peer, addr, ranges), local) in reachable.into_iter().zip(local_roots) {
                        let round = PeerRound {
                            cluster: self,
                            addr,
                            ranges,
                            mint,
                            maxt,
                            received: AtomicU64::new(0),
                        };
                        summary.peers += 1;
                        if let Err(e) = self.compare_with(&round, &local, &mut summary).await {
                            summary.errors.push(format!("{peer}: {e}"));
                        }
                        summary.bytes_received += round.received.load(Ordering::Relaxed);
                    }
                }
                Err(e) => summary.errors.push(format!("local summary: {e}")),
            }
        }
        summary.seconds = started.elapsed().as_secs_f64();
        if scope == Scope::WithPreviousOwners && summary.errors.is_empty() {
            // Every arc compared with every owner it has or had: this node now holds what
            // they held (up to the settle time), so it may answer pushed-down aggregations.
            self.membership.set_synced().await;
        }
        self.anti_entropy.metrics.record(&summary);
        if summary.samples_repaired > 0 || !summary.errors.is_empty() {
            tracing::info!(?summary, "anti-entropy round");
        } else {
            tracing::debug!(?summary, "anti-entropy round");
        }
        summary
    }

    async fn compare_with(
        &self,
        round: &PeerRound<'_>,
        local: &BTreeMap<i64, u64>,
        summary: &mut RoundSummary,
    ) -> Result<(), String> {
        let remote = round.remote_roots().await?;
        let windows: BTreeSet<i64> = local.keys().chain(remote.keys()).copied().collect();
        summary.windows_compared += windows.len() as u64;
        for w in windows {
            let theirs = remote.get(&w).copied().unwrap_or(0);
            if theirs == 0 || local.get(&w).copied().unwrap_or(0) == theirs {
                continue;
            }
            summary.windows_differing += 1;
            round.repair_window(w, summary).await?;
        }
        Ok(())
    }
}

/// The background task: a round with the previous owners soon after start-up (a joining
/// node pulls its ranges), repeated with growing pauses until one compares with every peer,
/// then a co-owner round every `interval`.
pub(super) async fn run(
    cluster: Arc<Cluster>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    // Let the membership settle so the first round sees the whole ring.
    let settle = cluster.settings.gossip_interval * 5;
    tokio::select! {
        _ = tokio::time::sleep(settle) => {}
        _ = stop.wait_for(|s| *s) => return,
    }
    let mut scope = Scope::WithPreviousOwners;
    let mut retry = settle;
    loop {
        let round = cluster.anti_entropy_round(scope);
        let summary = tokio::select! {
            s = round => s,
            _ = stop.wait_for(|s| *s) => return,
        };
        let pause = if scope == Scope::WithPreviousOwners && !summary.errors.is_empty() {
            retry = (retry * 2).min(interval);
            retry
        } else {
            scope = Scope::CoOwners;
            interval
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[(i64, f64)]) -> Vec<Sample> {
        v.iter().map(|&(t, v)| Sample::new(t, v)).collect()
    }

    #[test]
    fn pulls_missing_timestamps_and_converges_on_conflicts() {
        let local = s(&[(1, 1.0), (3, 3.0), (5, 5.0)]);
        let remote = s(&[(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (5, 4.0), (9, 9.0)]);
        // 3.0 < 4.0 in bits (positive floats order like their bits); 5.0 > 4.0.
        assert_eq!(
            samples_to_pull(&local, &remote),
            s(&[(0, 0.5), (2, 2.0), (3, 4.0), (9, 9.0)])
        );
        // The other side pulls the rest, and then both hold the same.
        let back = samples_to_pull(&remote, &local);
        assert_eq!(back, s(&[(5, 5.0)]));
        assert!(samples_to_pull(&local, &local).is_empty());
        assert!(samples_to_pull(&local, &[]).is_empty());
    }

    fn token_owners(ring: &Ring, t: u64) -> Vec<String> {
        ring.owner_indices(t)
            .into_iter()
            .filter_map(|i| ring.node(i).map(str::to_string))
            .collect()
    }

    #[test]
    fn co_owner_ranges_match_the_ring() {
        let ring = Ring::new(["a", "b", "c", "d"], 2);
        let plan = peer_ranges(&ring, "a", Scope::CoOwners);
        for k in 0..5_000u64 {
            let t = k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let owners = token_owners(&ring, t);
            for peer in ["b", "c", "d"] {
                let shared = owners.iter().any(|o| o == "a") && owners.iter().any(|o| o == peer);
                let planned = plan.get(peer).is_some_and(|r| r.contains(t));
                assert_eq!(shared, planned, "token {t} peer {peer} owners {owners:?}");
            }
        }
        assert!(peer_ranges(&ring, "x", Scope::CoOwners).is_empty());
        // One node: nothing to compare with.
        assert!(peer_ranges(&Ring::new(["a"], 3), "a", Scope::CoOwners).is_empty());
    }

    #[test]
    fn a_joining_node_also_asks_the_previous_owners() {
        // RF=1: the new node's arcs had exactly one owner before, who is no co-owner now.
        let before = Ring::new(["a", "b", "c"], 1);
        let after = Ring::new(["a", "b", "c", "n"], 1);
        assert!(peer_ranges(&after, "n", Scope::CoOwners).is_empty());
        let plan = peer_ranges(&after, "n", Scope::WithPreviousOwners);
        for k in 0..5_000u64 {
            let t = k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            if token_owners(&after, t) == ["n"] {
                let old = &token_owners(&before, t)[0];
                assert!(plan[old].contains(t), "token {t} was on {old}");
            } else {
                assert!(plan.values().all(|r| !r.contains(t)));
            }
        }
    }
}
