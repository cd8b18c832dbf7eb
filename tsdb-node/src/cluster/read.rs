//! The fan-out read path. A selector names series by matchers, not keys, so any ring member
//! may own matching series: reads go to every ring member (this node's share is read
//! locally), and the answers are merged. Replicas hold the same samples, so one label set
//! coming from several nodes is merged by timestamp, each timestamp kept once.
//!
//! Completeness: a write acknowledged at consistency W is on at least W of a range's RF
//! owners, so an answer is complete when, for every range, at least RF − W + 1 owners
//! answered. When that fails for some range the answer carries a warning naming the nodes
//! that did not answer (the HTTP API turns it into an error when asked to).

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::task::JoinSet;

use super::rpc::{self, SelectRequest};
use super::Cluster;
use crate::promql::pushdown::{Partials, PushdownQuery};
use crate::promql::source::{SelectedSeries, SeriesSource, Sourced};
use crate::promql::QueryError;
use crate::storage::{Labels, Matcher, Sample, StorageError};

/// What one node answered, or why it did not.
enum NodeAnswer<T> {
    Data(T),
    Unreachable(String, String),
}

/// Merges two time-ordered sample lists; on equal timestamps the first list's sample wins.
pub fn merge_samples(a: Vec<Sample>, b: Vec<Sample>) -> Vec<Sample> {
    if b.is_empty() {
        return a;
    }
    if a.is_empty() {
        return b;
    }
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (x, y) = (a[i], b[j]);
        if x.t < y.t {
            out.push(x);
            i += 1;
        } else if y.t < x.t {
            out.push(y);
            j += 1;
        } else {
            out.push(x);
            i += 1;
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

impl Cluster {
    /// Runs `local` on this node's engine and `remote` against every other ring member, in
    /// parallel; returns the answers and a warning when some range may be incomplete.
    async fn fan_out<T, L, R, Fut>(&self, local: L, remote: R) -> (Vec<T>, Vec<String>)
    where
        T: Send + 'static,
        L: FnOnce(Arc<crate::storage::Engine>) -> Result<T, StorageError> + Send + 'static,
        R: Fn(super::client::Peers, std::net::SocketAddr) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>> + Send + 'static,
    {
        let view = self.view();
        let mut tasks: JoinSet<NodeAnswer<T>> = JoinSet::new();
        let mut local = Some(local);
        let mut down: Vec<(String, String)> = Vec::new();
        for id in view.ring.nodes() {
            if *id == self.settings.node_id {
                let Some(f) = local.take() else { continue };
                let engine = self.engine.clone();
                let id = id.clone();
                tasks.spawn(async move {
                    match tokio::task::spawn_blocking(move || f(engine)).await {
                        Ok(Ok(t)) => NodeAnswer::Data(t),
                        Ok(Err(e)) => NodeAnswer::Unreachable(id, e.to_string()),
                        Err(e) => NodeAnswer::Unreachable(id, e.to_string()),
                    }
                });
                continue;
            }
            let member = view.member(id);
            match member.and_then(|m| m.grpc_addr) {
                // Gossip says it is down: do not wait for a timeout.
                Some(_) if member.is_some_and(|m| !m.live) => {
                    down.push((id.clone(), "not alive in gossip".into()))
                }
                Some(addr) => {
                    let fut = remote(self.peers.clone(), addr);
                    let id = id.clone();
                    tasks.spawn(async move {
                        match fut.await {
                            Ok(t) => NodeAnswer::Data(t),
                            Err(s) => NodeAnswer::Unreachable(id, s.message().to_string()),
                        }
                    });
                }
                None => down.push((id.clone(), "address unknown".into())),
            }
        }
        let mut out = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(NodeAnswer::Data(t)) => out.push(t),
                Ok(NodeAnswer::Unreachable(id, why)) => down.push((id, why)),
                Err(e) => tracing::warn!(error = %e, "read task failed"),
            }
        }
        let mut warnings = Vec::new();
        if !down.is_empty() {
            for (id, why) in &down {
                tracing::debug!(node = %id, reason = %why, "node did not answer a read");
            }
            let ids: Vec<&str> = down.iter().map(|(id, _)| id.as_str()).collect();
            let rf = view.ring.replication_factor();
            let w = self.settings.consistency.required(rf);
            if view.ring.min_answering_owners(&ids) < rf + 1 - w {
                warnings.push(format!(
                    "data may be incomplete: no answer from {}",
                    ids.join(", ")
                ));
            }
        }
        (out, warnings)
    }

    /// Series data from every replica, merged and deduplicated.
    pub async fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Sourced<SelectedSeries> {
        let local_m = matchers.to_vec();
        let req = SelectRequest {
            matchers: rpc::matchers_to_wire(matchers),
            mint,
            maxt,
            token_ranges: Vec::new(),
        };
        let (answers, mut warnings) = self
            .fan_out(
                move |engine| {
                    Ok(engine
                        .select(&local_m, mint, maxt)?
                        .into_iter()
                        .map(|s| (s.labels, s.samples))
                        .collect::<Vec<_>>())
                },
                move |peers, addr| {
                    let req = req.clone();
                    async move {
                        let resp = peers.select(addr, req).await?;
                        resp.series
                            .into_iter()
                            .map(rpc::series_from_wire)
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(|e| tonic::Status::internal(e.to_string()))
                    }
                },
            )
            .await;
        let mut merged: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
        for answer in answers {
            for (labels, samples) in answer {
                if !samples.windows(2).all(|w| w[0].t < w[1].t) {
                    warnings.push("a replica answered samples out of time order".into());
                    continue;
                }
                let slot = merged.entry(labels).or_default();
                let prev = std::mem::take(slot);
                *slot = merge_samples(prev, samples);
            }
        }
        Sourced {
            data: merged.into_iter().filter(|(_, s)| !s.is_empty()).collect(),
            warnings,
        }
    }

    /// Label sets from every replica, deduplicated and sorted.
    pub async fn series(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Sourced<Vec<Labels>> {
        let local_m = matchers.to_vec();
        let req = SelectRequest {
            matchers: rpc::matchers_to_wire(matchers),
            mint,
            maxt,
            token_ranges: Vec::new(),
        };
        let (answers, warnings) = self
            .fan_out(
                move |engine| engine.series(&local_m, mint, maxt),
                move |peers, addr| {
                    let req = req.clone();
                    async move {
                        let resp = peers.series(addr, req).await?;
                        Ok(resp
                            .series
                            .into_iter()
                            .map(|s| rpc::labels_from_wire(s.labels))
                            .collect::<Vec<_>>())
                    }
                },
            )
            .await;
        let all: std::collections::BTreeSet<Labels> = answers.into_iter().flatten().collect();
        Sourced {
            data: all.into_iter().collect(),
            warnings,
        }
    }
}

/// [`SeriesSource`] over the whole cluster, for the PromQL engine and metadata endpoints.
pub struct ClusterSource {
    cluster: Arc<Cluster>,
    runtime: Handle,
}

impl ClusterSource {
    /// Must be created inside the tokio runtime whose workers run the fan-out.
    pub fn new(cluster: Arc<Cluster>) -> Self {
        ClusterSource {
            cluster,
            runtime: Handle::current(),
        }
    }
}

impl SeriesSource for ClusterSource {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Sourced<SelectedSeries>, StorageError> {
        Ok(self
            .runtime
            .block_on(self.cluster.select(matchers, mint, maxt)))
    }

    fn series(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Sourced<Vec<Labels>>, StorageError> {
        Ok(self
            .runtime
            .block_on(self.cluster.series(matchers, mint, maxt)))
    }

    fn aggregate(&self, q: &PushdownQuery) -> Result<Option<Vec<Partials>>, QueryError> {
        self.runtime.block_on(self.cluster.aggregate(q))
    }

    fn label_names(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Sourced<Vec<String>>, StorageError> {
        let s = self.series(matchers, mint, maxt)?;
        let names: std::collections::BTreeSet<String> = s
            .data
            .iter()
            .flat_map(|l| l.iter().map(|l| l.name.clone()))
            .collect();
        Ok(Sourced {
            data: names.into_iter().collect(),
            warnings: s.warnings,
        })
    }

    fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Sourced<Vec<String>>, StorageError> {
        let s = self.series(matchers, mint, maxt)?;
        let values: std::collections::BTreeSet<String> = s
            .data
            .iter()
            .filter_map(|l| l.get(name).map(str::to_string))
            .collect();
        Ok(Sourced {
            data: values.into_iter().collect(),
            warnings: s.warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[(i64, f64)]) -> Vec<Sample> {
        v.iter().map(|&(t, v)| Sample::new(t, v)).collect()
    }

    #[test]
    fn replicas_merge_without_duplicates() {
        let a = s(&[(1, 1.0), (3, 3.0), (5, 5.0)]);
        let b = s(&[(1, 1.0), (2, 2.0), (5, 5.0), (6, 6.0)]);
        assert_eq!(
            merge_samples(a, b),
            s(&[(1, 1.0), (2, 2.0), (3, 3.0), (5, 5.0), (6, 6.0)])
        );
        assert_eq!(merge_samples(vec![], s(&[(1, 1.0)])), s(&[(1, 1.0)]));
    }
}
