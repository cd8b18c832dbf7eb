//! Cleanup (`POST /api/v1/admin/cleanup`, like Cassandra's `nodetool cleanup`): drop the
//! local copies of series this node no longer owns, after a join or a removal moved their
//! ranges elsewhere.
//!
//! Safety first. Cleanup refuses while any member is joining or leaving, while any ring
//! member is down, or while this node decommissions. The arcs this node does not own are
//! grouped by their owners; for each group, every owner must hold every local sample before
//! anything is dropped. That is checked as anti-entropy compares: the Merkle roots per 2 h
//! window of the group's tokens, here and on each owner over `Tree`; a window whose roots
//! differ (the owner usually holds newer samples this node never saw) is checked sample by
//! sample over `Select` — each local sample must be on the owner with the same value. A
//! group that fails on any owner is kept whole; the owners' anti-entropy rounds pull what
//! they lack and a later cleanup drops it.
//!
//! A verified series is deleted exactly (every label equal, every other label name known
//! locally empty) up to the newest sample that was verified, so a sample that lands after
//! the check stays for the next cleanup.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use serde::Serialize;

use super::anti_entropy::PeerRound;
use super::rpc::{self, SelectRequest};
use super::summaries::{self, WINDOW_MS};
use super::token_ranges::TokenRanges;
use super::{Cluster, NodeState};
use crate::storage::{Engine, Labels, Matcher, Sample, StorageError};

/// What a cleanup did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CleanupSummary {
    /// Owner groups of arcs this node does not own where it holds data.
    pub groups_with_data: u64,
    pub groups_verified: u64,
    /// Windows whose roots differed from an owner's and were checked sample by sample.
    pub windows_checked_by_sample: u64,
    pub series_deleted: u64,
    pub samples_deleted: u64,
    /// Groups kept, with the reason.
    pub kept: Vec<String>,
    pub seconds: f64,
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("storage task failed: {e}"))?
        .map_err(|e| e.to_string())
}

/// Matchers selecting exactly `labels` among series whose label names are in `names`.
pub fn exact_matchers(labels: &Labels, names: &[String]) -> Vec<Matcher> {
    let mut out: Vec<Matcher> = labels
        .iter()
        .map(|l| Matcher::equal(l.name.clone(), l.value.clone()))
        .collect();
    for n in names {
        if labels.get(n).is_none() {
            out.push(Matcher::equal(n.clone(), ""));
        }
    }
    out
}

/// Whether every sample of `local` is in `remote` with the same value bits (both sorted).
pub fn holds_all(remote: &[Sample], local: &[Sample]) -> bool {
    let mut i = 0;
    local.iter().all(|l| {
        while i < remote.len() && remote[i].t < l.t {
            i += 1;
        }
        remote
            .get(i)
            .is_some_and(|r| r.t == l.t && r.v.to_bits() == l.v.to_bits())
    })
}

impl Cluster {
    /// Drops local series whose tokens this node no longer owns, where every current owner
    /// is verified to hold them.
    pub async fn cleanup(&self) -> Result<CleanupSummary, String> {
        let _no_round_meanwhile = self.anti_entropy.running.lock().await;
        let started = Instant::now();
        if self
            .decommissioning
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err("this node is decommissioning".into());
        }
        let view = self.view();
        let me = self.settings.node_id.clone();
        if let Some(m) = view
            .members
            .iter()
            .find(|m| matches!(m.state, NodeState::Joining | NodeState::Leaving))
        {
            return Err(format!(
                "{} is {}; clean up once the ring is stable",
                m.node_id,
                m.state.as_str()
            ));
        }
        let mut groups: BTreeMap<Vec<String>, Vec<(u64, u64)>> = BTreeMap::new();
        for (start, end, owners) in view.ring.ranges() {
            let ids: Vec<String> = owners
                .iter()
                .filter_map(|&i| view.ring.node(i).map(str::to_string))
                .collect();
            if !ids.contains(&me) {
                groups.entry(ids).or_default().push((start, end));
            }
        }
        let mut addrs = HashMap::new();
        for id in view.ring.nodes() {
            if *id == me {
                continue;
            }
            match view.member(id).filter(|m| m.live).and_then(|m| m.grpc_addr) {
                Some(a) => {
                    addrs.insert(id.clone(), a);
                }
                None => return Err(format!("{id} is down; clean up once every member is up")),
            }
        }
        let mut summary = CleanupSummary::default();
        for (owners, arcs) in groups {
            let ranges = TokenRanges::from_arcs(arcs);
            let engine = self.engine.clone();
            let r = ranges.clone();
            let local_roots = blocking(move || {
                summaries::roots_many(&engine, &[r], i64::MIN, i64::MAX, WINDOW_MS)
            })
            .await?
            .pop()
            .unwrap_or_default();
            if local_roots.values().all(|&root| root == 0) {
                continue;
            }
            summary.groups_with_data += 1;
            let mut verified = true;
            for owner in &owners {
                let round = PeerRound {
                    cluster: self,
                    addr: addrs[owner],
                    ranges: ranges.clone(),
                    mint: i64::MIN,
                    maxt: i64::MAX,
                    received: AtomicU64::new(0),
                };
                match self.owner_holds(&round, &local_roots, &mut summary).await {
                    Ok(true) => {}
                    Ok(false) => {
                        summary
                            .kept
                            .push(format!("{owners:?}: {owner} lacks local samples"));
                        verified = false;
                        break;
                    }
                    Err(e) => {
                        summary.kept.push(format!("{owners:?}: {owner}: {e}"));
                        verified = false;
                        break;
                    }
                }
            }
            if !verified {
                continue;
            }
            summary.groups_verified += 1;
            let engine = self.engine.clone();
            let (series, samples) = blocking(move || drop_series(&engine, &ranges)).await?;
            summary.series_deleted += series;
            summary.samples_deleted += samples;
        }
        summary.seconds = started.elapsed().as_secs_f64();
        tracing::info!(?summary, "cleanup");
        Ok(summary)
    }

    /// Whether the owner behind `round` holds every local sample of its ranges.
    async fn owner_holds(
        &self,
        round: &PeerRound<'_>,
        local_roots: &BTreeMap<i64, u64>,
        summary: &mut CleanupSummary,
    ) -> Result<bool, String> {
        let remote = round.remote_roots().await?;
        for (&w, &root) in local_roots {
            if root == 0 || remote.get(&w) == Some(&root) {
                continue;
            }
            summary.windows_checked_by_sample += 1;
            let lo = w;
            let hi = w.saturating_add(WINDOW_MS - 1);
            let resp = self
                .peers
                .select(
                    round.addr,
                    SelectRequest {
                        matchers: Vec::new(),
                        mint: lo,
                        maxt: hi,
                        token_ranges: rpc::ranges_to_wire(&round.ranges),
                    },
                )
                .await
                .map_err(|s| format!("Select: {}", s.message()))?;
            let mut theirs: HashMap<Labels, Vec<Sample>> = HashMap::new();
            for s in resp.series {
                let (labels, samples) = rpc::series_from_wire(s).map_err(|e| e.to_string())?;
                theirs.insert(labels, samples);
            }
            let engine = self.engine.clone();
            let ranges = round.ranges.clone();
            let mine = blocking(move || summaries::local_series(&engine, &ranges, lo, hi)).await?;
            for (_, labels, samples) in mine {
                let remote = theirs.get(&labels).map(Vec::as_slice).unwrap_or(&[]);
                if !holds_all(remote, &samples) {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }
}

/// Deletes the local series in `ranges` up to their newest sample. Returns (series, samples).
fn drop_series(engine: &Engine, ranges: &TokenRanges) -> Result<(u64, u64), StorageError> {
    let found = summaries::local_series(engine, ranges, i64::MIN, i64::MAX)?;
    if found.is_empty() {
        return Ok((0, 0));
    }
    let names = engine.label_names(&[], i64::MIN, i64::MAX)?;
    let (mut series, mut samples) = (0, 0);
    for (_, labels, s) in found {
        let Some(last) = s.last() else { continue };
        engine.delete(&exact_matchers(&labels, &names), i64::MIN, last.t)?;
        series += 1;
        samples += s.len() as u64;
    }
    Ok((series, samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_matchers_select_one_series() {
        let names: Vec<String> = ["__name__", "a", "b"].map(String::from).to_vec();
        let x = Labels::from_metric("m", &[("a", "1")]);
        let wider = Labels::from_metric("m", &[("a", "1"), ("b", "2")]);
        let m = exact_matchers(&x, &names);
        assert!(m.iter().all(|m| m.matches_labels(&x)));
        assert!(!m.iter().all(|m| m.matches_labels(&wider)));
    }

    #[test]
    fn holds_all_needs_every_sample_with_its_value() {
        let s = |v: &[(i64, f64)]| {
            v.iter()
                .map(|&(t, v)| Sample::new(t, v))
                .collect::<Vec<_>>()
        };
        let remote = s(&[(1, 1.0), (2, 2.0), (3, 3.0)]);
        assert!(holds_all(&remote, &s(&[(1, 1.0), (3, 3.0)])));
        assert!(holds_all(&remote, &[]));
        assert!(!holds_all(&remote, &s(&[(4, 4.0)])));
        assert!(!holds_all(&remote, &s(&[(2, 2.5)])));
        assert!(!holds_all(&[], &s(&[(1, 1.0)])));
    }
}
