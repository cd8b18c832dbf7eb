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
//!
//! What the coordinator cannot see (a write acknowledged at `quorum` still in flight to the
//! answering replica, a hint another node wrote less than a gossip round ago, a write a full
//! hint budget refused) is caught by verification (`verify`, `cluster.pushdown_verify`):
//! other owners of each arc digest the same samples, and the answer is used only when every
//! digest equals the answering replica's.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;

use super::answering;
use super::anti_entropy::Family;
use super::rpc::{self, AggregateRequest};
use super::token_ranges::TokenRanges;
use super::verify::{self, DigestSpans, VerifyMode};
use super::{Cluster, NodeMode, NodeState, View};
use crate::promql::pushdown::{Partials, PushdownQuery, ReadDigest};
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
    mismatches: AtomicU64,
    unverifiable: AtomicU64,
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
                "strata_cluster_pushdown_verify_mismatches_total",
                "counter",
                "Aggregations that read raw series because another owner's digest of an arc \
                 differed from the answering replica's (it may lack acknowledged writes).",
                c(&self.mismatches),
            ),
            (
                "strata_cluster_pushdown_unverifiable_total",
                "counter",
                "Aggregations that read raw series because too few owners of an arc could \
                 digest it (cluster.pushdown_verify).",
                c(&self.unverifiable),
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

/// What one node is asked in a round: the tokens it evaluates (maybe none) and the digest
/// units (indices into `verify::units`, ascending) it digests from the same read.
#[derive(Default)]
struct Ask {
    evaluate: TokenRanges,
    digest: Vec<usize>,
}

type AskResult = Result<(Partials, Vec<ReadDigest>), Failure>;

/// What a query learned about one digest unit.
#[derive(Default)]
struct UnitCheck {
    /// The node whose partial aggregate covers the unit, with its digest of that read.
    answer: Option<(String, ReadDigest)>,
    /// Digests by other owners. One by the node that answers is stale (it answered in a
    /// later round, from a newer read) and does not count.
    checks: Vec<(String, ReadDigest)>,
}

impl UnitCheck {
    /// Digests by owners other than `answerer`.
    fn others(&self, answerer: &str) -> usize {
        self.checks.iter().filter(|(by, _)| by != answerer).count()
    }

    /// A verifier whose digest differs from the answer's: (verifier, answer, its digest).
    fn mismatch(&self) -> Option<(&str, &(String, ReadDigest), ReadDigest)> {
        let answer = self.answer.as_ref()?;
        self.checks
            .iter()
            .find(|(by, d)| *by != answer.0 && *d != answer.1)
            .map(|(by, d)| (by.as_str(), answer, *d))
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

    /// Whether `id` may digest an arc it owns to verify another owner's answer: reachable,
    /// holding data, and (unless every live owner must verify anyway) `synced`, so that it
    /// holds the arc's data written before it joined.
    fn may_verify(&self, view: &View, id: &str) -> bool {
        let Some(m) = view.member(id) else {
            return false;
        };
        m.live
            && m.mode != NodeMode::Query
            && (id == self.settings.node_id || m.grpc_addr.is_some())
            && (m.synced || self.settings.pushdown_verify == VerifyMode::All)
    }

    /// Partial aggregates of `q` from one complete replica per arc, in a fixed order; `None`
    /// when that cannot be done exactly (the caller reads raw series).
    ///
    /// With verification on, each round also asks other owners of every arc (digest unit)
    /// for digests of the samples the evaluation reads, until each unit has its answering
    /// replica's digest plus `required − 1` others; one node gets one request per round,
    /// evaluating its arcs and digesting both those and the units it verifies from one
    /// read. Any digest that differs from the answering replica's, or a unit with too few
    /// owners left to verify it, reads raw series.
    pub async fn aggregate(&self, q: &PushdownQuery) -> Result<Option<Vec<Partials>>, QueryError> {
        if !self.settings.pushdown {
            return Ok(None);
        }
        let view = self.view();
        let ring = &view.ring;
        let units = verify::units(ring);
        let required: Vec<usize> = units
            .iter()
            .map(|u| {
                let live = u
                    .owners
                    .iter()
                    .filter_map(|&i| ring.node(i).and_then(|n| view.member(n)))
                    .filter(|m| m.live)
                    .count();
                self.settings.pushdown_verify.required(
                    ring.replication_factor(),
                    live,
                    self.settings.consistency,
                )
            })
            .collect();
        let verifying = required.iter().any(|&r| r > 1);
        let mut candidates: HashMap<&str, (bool, bool)> = HashMap::new();
        if verifying {
            for n in ring.nodes() {
                candidates.insert(
                    n,
                    (self.may_verify(&view, n), self.answers_completely(&view, n)),
                );
            }
        }
        let mut checked: Vec<UnitCheck> = (0..units.len()).map(|_| UnitCheck::default()).collect();
        let mut failed: BTreeSet<String> = BTreeSet::new();
        // Tokens still unanswered; `None` is all of them.
        let mut todo: Option<TokenRanges> = None;
        let mut parts: Vec<(usize, String, Partials)> = Vec::new();
        for round in 0..MAX_ROUNDS {
            let plan = if todo.as_ref().is_some_and(TokenRanges::is_empty) {
                BTreeMap::new()
            } else {
                let Some(plan) = answering::assign(ring, |id| {
                    !failed.contains(id) && self.answers_completely(&view, id)
                }) else {
                    tracing::debug!(round, "push-down: an arc has no complete replica");
                    break;
                };
                match &todo {
                    None => plan,
                    Some(t) => answering::restrict(plan, t),
                }
            };
            let mut asks: BTreeMap<String, Ask> = plan
                .into_iter()
                .map(|(n, evaluate)| {
                    (
                        n,
                        Ask {
                            evaluate,
                            digest: Vec::new(),
                        },
                    )
                })
                .collect();
            if verifying {
                for (ui, u) in units.iter().enumerate() {
                    let answerer = match &checked[ui].answer {
                        Some((n, _)) => n.clone(),
                        None => {
                            let Some((n, ask)) =
                                asks.iter_mut().find(|(_, a)| a.evaluate.contains(u.first))
                            else {
                                tracing::warn!("push-down: a unit has no answering replica");
                                self.pushdown.fallbacks.fetch_add(1, Ordering::Relaxed);
                                return Ok(None);
                            };
                            ask.digest.push(ui);
                            n.clone()
                        }
                    };
                    let c = &checked[ui];
                    let need = required[ui].saturating_sub(1 + c.others(&answerer));
                    if need == 0 {
                        continue;
                    }
                    let mut chosen: Vec<(bool, &str)> = u
                        .owners
                        .iter()
                        .filter_map(|&i| ring.node(i))
                        .filter(|n| {
                            *n != answerer
                                && !failed.contains(*n)
                                && !c.checks.iter().any(|(by, _)| by == n)
                        })
                        .filter_map(|n| {
                            let (may, complete) = candidates.get(n).copied()?;
                            may.then_some((!complete, n))
                        })
                        .collect();
                    if chosen.len() < need {
                        tracing::debug!(
                            round,
                            first = u.first,
                            last = u.last,
                            need,
                            available = chosen.len(),
                            "push-down: too few owners left to verify an arc"
                        );
                        self.pushdown.unverifiable.fetch_add(1, Ordering::Relaxed);
                        self.pushdown.fallbacks.fetch_add(1, Ordering::Relaxed);
                        return Ok(None);
                    }
                    // Owners known to be complete first (a lagging one would only mismatch),
                    // in ring order otherwise.
                    chosen.sort_by_key(|c| c.0);
                    for (_, n) in chosen.into_iter().take(need) {
                        asks.entry(n.to_string()).or_default().digest.push(ui);
                    }
                }
            }
            let mut tasks: JoinSet<(String, Ask, AskResult)> = JoinSet::new();
            for (node, ask) in asks {
                // Units are sorted by first token, so each node's spans are too.
                let spans = DigestSpans::new(
                    ask.digest
                        .iter()
                        .map(|&i| (units[i].first, units[i].last))
                        .collect(),
                );
                let fut = self.ask(&view, &node, ask.evaluate.clone(), spans, q);
                tasks.spawn(async move { (node, ask, fut.await) });
            }
            let mut missing: Vec<TokenRanges> = Vec::new();
            while let Some(joined) = tasks.join_next().await {
                let (node, ask, result) = match joined {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!(error = %e, "push-down task failed");
                        self.pushdown.fallbacks.fetch_add(1, Ordering::Relaxed);
                        return Ok(None);
                    }
                };
                match result {
                    Ok((p, digests)) => {
                        for (&ui, d) in ask.digest.iter().zip(digests) {
                            let c = &mut checked[ui];
                            if ask.evaluate.contains(units[ui].first) {
                                c.answer = Some((node.clone(), d));
                            } else {
                                c.checks.push((node.clone(), d));
                            }
                        }
                        if !ask.evaluate.is_empty() {
                            parts.push((round, node, p));
                        }
                    }
                    Err(Failure::Query(e)) => return Err(e),
                    Err(Failure::Node(why)) => {
                        tracing::debug!(node = %node, reason = %why, "push-down: a replica did not answer");
                        failed.insert(node);
                        if !ask.evaluate.is_empty() {
                            missing.push(ask.evaluate);
                        }
                    }
                }
            }
            if verifying {
                for (u, c) in units.iter().zip(&checked) {
                    if let Some((by, answered, theirs)) = c.mismatch() {
                        tracing::debug!(
                            first = u.first,
                            last = u.last,
                            answered_by = %answered.0,
                            answered_samples = answered.1.samples,
                            verifier = %by,
                            verifier_samples = theirs.samples,
                            "push-down: digests differ, reading raw series"
                        );
                        self.pushdown.mismatches.fetch_add(1, Ordering::Relaxed);
                        self.pushdown.fallbacks.fetch_add(1, Ordering::Relaxed);
                        return Ok(None);
                    }
                }
            }
            let verified = !verifying
                || checked
                    .iter()
                    .zip(&required)
                    .all(|(c, &r)| c.answer.as_ref().is_some_and(|(a, _)| 1 + c.others(a) >= r));
            if missing.is_empty() && verified {
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
        evaluate: TokenRanges,
        spans: DigestSpans,
        q: &PushdownQuery,
    ) -> impl std::future::Future<Output = AskResult> + Send + 'static {
        let local = node == self.settings.node_id;
        let addr = view.member(node).and_then(|m| m.grpc_addr);
        let engine = self.engine.clone();
        let peers = self.peers.clone();
        let metrics = self.pushdown_handle();
        let q = q.clone();
        async move {
            if local {
                return tokio::task::spawn_blocking(move || {
                    verify::evaluate_share(&engine, &q, &evaluate, &spans, parallelism())
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
                token_ranges: rpc::ranges_to_wire(&evaluate),
                max_samples: q.max_samples as u64,
                timeout_ms: u64::try_from(left.as_millis()).unwrap_or(u64::MAX),
                digest_ranges: spans.to_wire(),
            };
            match peers.aggregate(addr, req, left).await {
                Ok(resp) => {
                    metrics
                        .bytes_received
                        .fetch_add(prost::Message::encoded_len(&resp) as u64, Ordering::Relaxed);
                    let digests = rpc::digests_from_wire(&resp, spans.len())
                        .map_err(|e| Failure::Node(e.to_string()))?;
                    let partials =
                        rpc::partials_from_wire(resp).map_err(|e| Failure::Node(e.to_string()))?;
                    Ok((partials, digests))
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
