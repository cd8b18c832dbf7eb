//! What a node does for its peers: store replica writes and answer reads from its local
//! engine. Everything here runs on the local data only; routing happens on the caller.

use std::sync::Arc;

use tonic::Status;

use super::deletes;
use super::merkle;
use super::ring::series_token;
use super::rpc::{
    self, AggregateRequest, AggregateResponse, DeleteRequest, DeleteResponse, LabelSet, Rejected,
    SelectRequest, SelectResponse, SeriesResponse, TombstonesRequest, TombstonesResponse,
    TreeRequest, TreeResponse, WindowNodes, WriteRequest, WriteResponse,
};
use super::summaries;
use super::tombstones::{ClusterTombstone, TombstoneStore};
use super::verify::{self, DigestSpans};
use crate::promql::pushdown::PushdownQuery;
use crate::promql::QueryError;
use crate::storage::{Engine, LabelSets, Sample, StorageError};

/// Serves the cluster RPCs over the local engine.
pub struct RpcHandler {
    engine: Arc<Engine>,
    tombstones: Arc<TombstoneStore>,
}

fn status(e: StorageError) -> Status {
    match e {
        StorageError::InvalidArgument(m) => Status::invalid_argument(m),
        StorageError::Limit(l) => Status::resource_exhausted(l.to_string()),
        other => Status::internal(other.to_string()),
    }
}

/// Limits keep their meaning across the wire, so the coordinator reports them as its own.
fn query_status(e: QueryError) -> Status {
    match e {
        QueryError::TooManySamples => Status::resource_exhausted(e.to_string()),
        QueryError::Timeout => Status::deadline_exceeded(e.to_string()),
        QueryError::Parse(_) | QueryError::InvalidArgument(_) => {
            Status::invalid_argument(e.to_string())
        }
        other => Status::internal(other.to_string()),
    }
}

fn malformed(e: rpc::MalformedMessage) -> Status {
    Status::invalid_argument(e.to_string())
}

/// Runs storage work on the blocking pool: appends wait for the WAL's fsync and reads decode
/// chunks.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("storage task failed: {e}")))?
        .map_err(status)
}

/// The out-of-order window a write is checked against. A hint was accepted by the other
/// replicas when it was stored, `now - hinted_at` ago, against a newest sample that has moved
/// on by about as much since: the window grows by that age, so that a node that was down for
/// longer than the window still takes its hints (and anti-entropy need not bring them), while
/// a sample the replicas refused back then is refused here too.
fn hint_window(window_ms: i64, hinted_at_ms: i64, now_ms: i64) -> i64 {
    if hinted_at_ms == 0 {
        return window_ms;
    }
    window_ms.saturating_add(now_ms.saturating_sub(hinted_at_ms).max(0))
}

impl RpcHandler {
    pub fn new(engine: Arc<Engine>, tombstones: Arc<TombstoneStore>) -> Self {
        RpcHandler { engine, tombstones }
    }

    /// Stores a replica's share of a batch; answers once it is durable. A hinted write loses
    /// the samples a delete made after the hint was stored removed (its rejections are not
    /// mapped back: hint delivery does not read them).
    pub async fn write(&self, mut req: WriteRequest) -> Result<WriteResponse, Status> {
        if req.hinted_at_ms != 0 && !self.tombstones.is_empty() {
            for s in &mut req.series {
                if s.timestamps.len() != s.values.len() {
                    continue; // refused below
                }
                let labels = rpc::labels_from_wire(s.labels.clone());
                let mut samples: Vec<Sample> = s
                    .timestamps
                    .iter()
                    .zip(&s.values)
                    .map(|(&t, &v)| Sample::new(t, v))
                    .collect();
                self.tombstones
                    .retain_uncovered(&labels, &mut samples, req.hinted_at_ms);
                s.timestamps = samples.iter().map(|x| x.t).collect();
                s.values = samples.iter().map(|x| x.v).collect();
            }
        }
        let window = if req.handover {
            i64::MAX
        } else {
            hint_window(
                self.engine.options().out_of_order_window_ms,
                req.hinted_at_ms,
                super::deletes::now_ms(),
            )
        };
        let batch = rpc::write_batch(req).map_err(malformed)?;
        let engine = self.engine.clone();
        let outcome =
            blocking(move || engine.append_labeled_within(&batch, window, LabelSets::PerBatch))
                .await?;
        Ok(WriteResponse {
            appended: outcome.appended as u64,
            rejected: outcome
                .rejected
                .into_iter()
                .map(|(i, why)| Rejected {
                    index: i as u64,
                    reason: why.to_string(),
                })
                .collect(),
        })
    }

    /// Samples of the matching series; with token ranges, only series whose token lies in
    /// them (chosen before decoding when there are no matchers, as anti-entropy asks).
    pub async fn select(&self, req: SelectRequest) -> Result<SelectResponse, Status> {
        let matchers = rpc::matchers_from_wire(req.matchers).map_err(malformed)?;
        let tokens = if req.token_ranges.is_empty() {
            None
        } else {
            Some(rpc::ranges_from_wire(&req.token_ranges).map_err(malformed)?)
        };
        let engine = self.engine.clone();
        let found = blocking(move || match tokens {
            None => engine.select(&matchers, req.mint, req.maxt),
            Some(t) if matchers.is_empty() => {
                engine.select_series_where(req.mint, req.maxt, |l| t.contains(series_token(l)))
            }
            Some(t) => Ok(engine
                .select(&matchers, req.mint, req.maxt)?
                .into_iter()
                .filter(|s| t.contains(series_token(&s.labels)))
                .collect()),
        })
        .await?;
        Ok(SelectResponse {
            series: found
                .iter()
                .map(|s| rpc::series_to_wire(&s.labels, &s.samples))
                .collect(),
        })
    }

    /// Merkle trees of the local samples in the requested token ranges, per window, at the
    /// requested depth (anti-entropy).
    pub async fn tree(&self, req: TreeRequest) -> Result<TreeResponse, Status> {
        if req.window_ms <= 0 {
            return Err(Status::invalid_argument("window_ms must be positive"));
        }
        if req.depth > merkle::DEPTH {
            return Err(Status::invalid_argument(format!(
                "depth {} is below the leaves ({})",
                req.depth,
                merkle::DEPTH
            )));
        }
        if req.mint > req.maxt {
            return Ok(TreeResponse::default());
        }
        let ranges = rpc::ranges_from_wire(&req.ranges).map_err(malformed)?;
        let engine = self.engine.clone();
        let (trees, resume_from) = blocking(move || {
            summaries::trees(
                &engine,
                &ranges,
                req.mint,
                req.maxt,
                req.window_ms,
                &req.windows,
            )
        })
        .await?;
        Ok(TreeResponse {
            windows: trees
                .into_iter()
                .map(|(start, tree, samples)| WindowNodes {
                    start,
                    nodes: tree.level(req.depth).unwrap_or(&[]).to_vec(),
                    samples,
                })
                .collect(),
            resume_from,
        })
    }

    /// Applies cluster-wide deletes locally and remembers their tombstones; answers once both
    /// are durable. Tombstones already known are not applied again.
    pub async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse, Status> {
        let list = req
            .tombstones
            .into_iter()
            .map(ClusterTombstone::from_wire)
            .collect::<Result<Vec<_>, _>>()
            .map_err(malformed)?;
        let engine = self.engine.clone();
        let store = self.tombstones.clone();
        let deleted = tokio::task::spawn_blocking(move || deletes::apply(&engine, &store, list))
            .await
            .map_err(|e| Status::internal(format!("delete task failed: {e}")))?
            .map_err(Status::internal)?;
        Ok(DeleteResponse {
            deleted_series: deleted,
        })
    }

    /// Every tombstone this node knows (anti-entropy passes them on).
    pub async fn tombstones(&self, _req: TombstonesRequest) -> Result<TombstonesResponse, Status> {
        Ok(TombstonesResponse {
            tombstones: self.tombstones.all().iter().map(|t| t.to_wire()).collect(),
        })
    }

    /// Partial aggregates of a pushed-down query over the local series whose tokens lie in
    /// the requested ranges (the arcs the coordinator assigned to this node), and digests of
    /// the samples read per requested digest span (verified push-down; without token ranges
    /// the request only digests).
    pub async fn aggregate(&self, req: AggregateRequest) -> Result<AggregateResponse, Status> {
        if req.token_ranges.is_empty() && req.digest_ranges.is_empty() {
            return Err(Status::invalid_argument(
                "Aggregate needs token ranges or digest ranges",
            ));
        }
        let tokens = rpc::ranges_from_wire(&req.token_ranges).map_err(malformed)?;
        let spans = DigestSpans::from_wire(&req.digest_ranges).map_err(malformed)?;
        let q = PushdownQuery {
            query: req.query,
            start: req.start,
            end: req.end,
            step: req.step,
            lookback_ms: req.lookback_ms,
            max_samples: usize::try_from(req.max_samples).unwrap_or(usize::MAX),
            deadline: std::time::Instant::now() + std::time::Duration::from_millis(req.timeout_ms),
        };
        let engine = self.engine.clone();
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(4);
        let (partials, digests) = tokio::task::spawn_blocking(move || {
            verify::evaluate_share(&engine, &q, &tokens, &spans, threads)
        })
        .await
        .map_err(|e| Status::internal(format!("aggregation task failed: {e}")))?
        .map_err(query_status)?;
        let mut resp = rpc::partials_to_wire(&partials);
        rpc::set_digests(&mut resp, &digests);
        Ok(resp)
    }

    /// Label sets with data in the range; no matchers means every series.
    pub async fn series(&self, req: SelectRequest) -> Result<SeriesResponse, Status> {
        let matchers = rpc::matchers_from_wire(req.matchers).map_err(malformed)?;
        let engine = self.engine.clone();
        let found = blocking(move || engine.series(&matchers, req.mint, req.maxt)).await?;
        Ok(SeriesResponse {
            series: found
                .iter()
                .map(|l| LabelSet {
                    labels: rpc::labels_to_wire(l),
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::rpc::{LabelPair, SeriesSamples};
    use crate::storage::options::EngineOptions;

    const HOUR: i64 = 3_600_000;

    fn write(t: i64, hinted_at_ms: i64) -> WriteRequest {
        WriteRequest {
            hinted_at_ms,
            handover: false,
            series: vec![SeriesSamples {
                labels: vec![LabelPair {
                    name: "__name__".into(),
                    value: "m".into(),
                }],
                timestamps: vec![t],
                values: vec![1.0],
            }],
        }
    }

    #[test]
    fn a_hint_gets_the_window_widened_by_its_age() {
        assert_eq!(hint_window(HOUR, 0, 10 * HOUR), HOUR);
        assert_eq!(hint_window(HOUR, 7 * HOUR, 10 * HOUR), 4 * HOUR);
        // A clock that went backwards does not narrow the window.
        assert_eq!(hint_window(HOUR, 11 * HOUR, 10 * HOUR), HOUR);
        assert_eq!(hint_window(i64::MAX, 1, i64::MAX), i64::MAX);
    }

    /// A node that was down for longer than the out-of-order window takes the hints of its
    /// downtime; a live write that old is still refused, and so is a hint that was already
    /// too old when it was stored.
    #[tokio::test]
    async fn hints_older_than_the_window_are_stored_when_they_were_in_it_at_the_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = EngineOptions::new(dir.path().join("data"));
        o.wal_sync = false;
        o.out_of_order_window_ms = HOUR;
        let engine = Arc::new(Engine::open(o).unwrap());
        let tombstones = Arc::new(TombstoneStore::open(&dir.path().join("state")).unwrap());
        let handler = RpcHandler::new(engine.clone(), tombstones);
        let now = deletes::now_ms();

        // The node is back: a live write moves its newest sample to now.
        let r = handler.write(write(now, 0)).await.unwrap();
        assert_eq!((r.appended, r.rejected.len()), (1, 0));
        let three_hours_ago = now - 3 * HOUR;
        let r = handler.write(write(three_hours_ago, 0)).await.unwrap();
        assert_eq!(r.rejected.len(), 1, "a live write outside the window");
        let r = handler
            .write(write(three_hours_ago, three_hours_ago + 60_000))
            .await
            .unwrap();
        assert_eq!((r.appended, r.rejected.len()), (1, 0), "{r:?}");
        let r = handler
            .write(write(three_hours_ago, now - 30 * 60_000))
            .await
            .unwrap();
        assert_eq!(r.rejected.len(), 1, "already too old when hinted: {r:?}");
        // A decommissioning node hands over data of any age.
        let a_week_ago = now - 7 * 24 * HOUR;
        let mut handover = write(a_week_ago, 0);
        handover.handover = true;
        let r = handler.write(handover).await.unwrap();
        assert_eq!((r.appended, r.rejected.len()), (1, 0), "{r:?}");
        let stored = engine
            .select(&[crate::storage::Matcher::equal("__name__", "m")], 0, now)
            .unwrap();
        assert_eq!(stored[0].samples.len(), 3);
    }
}
