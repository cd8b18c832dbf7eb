//! Aggregation push-down over the cluster: which replicas may answer, the fan-out of
//! `Aggregate`, retries on another replica, and falling back to the raw read path.
//!
//! A replica answers for its arcs only when it is known to hold every series of them
//! ([`Cluster::answers_completely`]): live in gossip, `active`, finished its first
//! anti-entropy round since it started (`synced`), and owed no hints by this node or, as
//! far as gossip has told, by any other. Each arc goes to the first such owner
//! (`answering::assign`); a node asked evaluates only the series of its arcs, so each series
//! is folded exactly once. When a node fails mid-query its arcs are asked again of the next
//! usable owners, a bounded number of times; otherwise, or when some arc has no usable
//! owner at all, the query reads raw series as before, with the usual completeness warnings.
//! A pushed-down answer therefore never carries warnings: it is complete or not given.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::answering;
use super::anti_entropy::Family;
use super::ring::series_token;
use super::rpc::{self, AggregateRequest};
use super::token_ranges::TokenRanges;
use super::{Cluster, NodeMode, NodeState, View};
use crate::promql::pushdown::{evaluate_local, Partials, PushdownQuery};
use crate::promql::QueryError;

/// Rounds of asking: the first, then retries for the arcs of nodes that failed.
const MAX_ROUNDS: usize = 3;

/// Counters for `/metrics`.
#[derive(Default)]
pub struct PushdownMetrics {
    answered: AtomicU64,
    fallbacks: AtomicU64,
    retries: AtomicU64,
    bytes_received: AtomicU64,
}

impl PushdownMetrics {
    pub fn families(&self) -> Vec<Family> {
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        vec![
            (
                "strata_cluster_pushdown_queries_total",
                "counter",
                "Aggregations answered from partial aggregates computed on the replicas.",
                c(&self.answered),
            ),
            (
                "strata_cluster_pushdown_fallbacks_total",
                "counter",
                "Aggregations that could be pushed down but read raw series: some arc had no \
                 replica known to be complete, or a replica failed and no other could answer.",
                c(&self.fallbacks),
            ),
            (
                "strata_cluster_pushdown_retries_total",
                "counter",
                "Times a failed replica's arcs were asked again of another replica.",
                c(&self.retries),
            ),
            (
                "strata_cluster_pushdown_received_bytes_total",
                "counter",
                "Bytes of partial aggregates received from peers (protobuf, without framing).",
                c(&self.bytes_received),
            ),
        ]
    }
}

/// Why a node's share was not answered.
enum Failure {
    /// The query itself is over a limit: report it, do not fall back.
    Query(QueryError),
    /// The node could not answer: ask another replica.
    Node(String),
}

fn parallelism() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(4)
}

impl Cluster {
    /// Counters of push-down, for `/metrics`.
    pub fn pushdown_metrics(&self) -> &PushdownMetrics {
        &self.pushdown
    }

    /// Whether `id` may answer for its arcs: it holds every series of them, as far as this
    /// node can know.
    fn answers_completely(&self, view: &View, id: &str) -> bool {
        let Some(m) = view.member(id) else {
            return false;
        };
        m.live
            && m.state == NodeState::Active
            && m.mode != NodeMode::Query
            && m.synced
            && (id == self.settings.node_id || m.grpc_addr.is_some())
            && self.hints.pending_bytes(id) == 0
            && !view
                .members
                .iter()
                .any(|o| o.hints_for.iter().any(|h| h == id))
    }

    /// Partial aggregates of `q` from one complete replica per arc, in a fixed order; `None`
    /// when that cannot be done exactly (the caller reads raw series).
    pub async fn aggregate(&self, q: &PushdownQuery) -> Result<Option<Vec<Partials>>, QueryError> {
        if !self.settings.pushdown {
            return Ok(None);
        }
        let view = self.view();
        let mut failed: BTreeSet<String> = BTreeSet::new();
        // Tokens still unanswered; `None` is all of them.
        let mut todo: Option<TokenRanges> = None;
        let mut parts: Vec<(usize, String, Partials)> = Vec::new();
        for round in 0..MAX_ROUNDS {
            let Some(plan) = answering::assign(&view.ring, |id| {
                !failed.contains(id) && self.answers_completely(&view, id)
            }) else {
                tracing::debug!(round, "push-down: an arc has no complete replica");
                break;
            };
            let plan = match &todo {
                None => plan,
                Some(t) => answering::restrict(plan, t),
            };
            let mut tasks: JoinSet<(String, TokenRanges, Result<Partials, Failure>)> =
                JoinSet::new();
            for (node, ranges) in plan {
                let fut = self.ask(&view, &node, ranges.clone(), q);
                tasks.spawn(async move { (node, ranges, fut.await) });
            }
            let mut missing: Vec<TokenRanges> = Vec::new();
            while let Some(joined) = tasks.join_next().await {
                let (node, ranges, result) = match joined {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "push-down task failed");
                        self.pushdown.fallbacks.fetch_add(1, Ordering::Relaxed);
                        return Ok(None);
                    }
                };
                match result {
                    Ok(p) => parts.push((round, node, p)),
                    Err(Failure::Query(e)) => return Err(e),
                    Err(Failure::Node(why)) => {
                        tracing::debug!(node = %node, reason = %why, "push-down: a replica did not answer");
                        failed.insert(node);
                        missing.push(ranges);
                    }
                }
            }
            if missing.is_empty() {
                parts.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
                self.pushdown.answered.fetch_add(1, Ordering::Relaxed);
                return Ok(Some(parts.into_iter().map(|(_, _, p)| p).collect()));
            }
            if Instant::now() >= q.deadline {
                return Err(QueryError::Timeout);
            }
            self.pushdown.retries.fetch_add(1, Ordering::Relaxed);
            todo = Some(TokenRanges::from_spans(
                missing.iter().flat_map(|r| r.spans().iter().copied()),
            ));
        }
        self.pushdown.fallbacks.fetch_add(1, Ordering::Relaxed);
        Ok(None)
    }

    /// One node's share: evaluated here when it is this node, else over gRPC.
    fn ask(
        &self,
        view: &View,
        node: &str,
        ranges: TokenRanges,
        q: &PushdownQuery,
    ) -> impl std::future::Future<Output = Result<Partials, Failure>> + Send + 'static {
        let local = node == self.settings.node_id;
        let addr = view.member(node).and_then(|m| m.grpc_addr);
        let engine = self.engine.clone();
        let peers = self.peers.clone();
        let metrics = self.pushdown_handle();
        let q = q.clone();
        async move {
            if local {
                return tokio::task::spawn_blocking(move || {
                    evaluate_local(
                        &engine,
                        &q,
                        &|l| ranges.contains(series_token(l)),
                        parallelism(),
                    )
                })
                .await
                .map_err(|e| Failure::Node(format!("local task failed: {e}")))?
                .map_err(|e| match e {
                    e @ (QueryError::TooManySamples | QueryError::Timeout) => Failure::Query(e),
                    other => Failure::Node(other.to_string()),
                });
            }
            let addr = addr.ok_or_else(|| Failure::Node("address unknown".into()))?;
            let left = q.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Failure::Query(QueryError::Timeout));
            }
            let req = AggregateRequest {
                query: q.query.clone(),
                start: q.start,
                end: q.end,
                step: q.step,
                lookback_ms: q.lookback_ms,
                token_ranges: rpc::ranges_to_wire(&ranges),
                max_samples: q.max_samples as u64,
                timeout_ms: u64::try_from(left.as_millis()).unwrap_or(u64::MAX),
            };
            match peers.aggregate(addr, req, left).await {
                Ok(resp) => {
                    metrics
                        .bytes_received
                        .fetch_add(prost::Message::encoded_len(&resp) as u64, Ordering::Relaxed);
                    rpc::partials_from_wire(resp).map_err(|e| Failure::Node(e.to_string()))
                }
                Err(s) => Err(match s.code() {
                    tonic::Code::ResourceExhausted => Failure::Query(QueryError::TooManySamples),
                    tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
                        if Instant::now() >= q.deadline =>
                    {
                        Failure::Query(QueryError::Timeout)
                    }
                    _ => Failure::Node(s.message().to_string()),
                }),
            }
        }
    }

    fn pushdown_handle(&self) -> Arc<PushdownMetrics> {
        self.pushdown.clone()
    }
}

/// Publishes in gossip the nodes this node holds hints for, so other coordinators do not
/// push down to a replica that still misses writes.
pub(super) async fn publish_hint_targets(cluster: Arc<Cluster>, mut stop: watch::Receiver<bool>) {
    let period = (cluster.settings.gossip_interval / 2).max(Duration::from_millis(50));
    let mut last: Option<Vec<String>> = None;
    loop {
        let hints = cluster.hints.clone();
        if let Ok(mut targets) = tokio::task::spawn_blocking(move || hints.targets()).await {
            targets.sort();
            if last.as_ref() != Some(&targets) {
                cluster.membership.set_hints_for(&targets).await;
                last = Some(targets);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
