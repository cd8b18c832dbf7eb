//! What each ZTSD request does: inserts go to the [`IngestSink`] and are acknowledged only
//! once durable, queries read the engine, pings are answered.
//!
//! A binary series id is stored as the series `ztsdb_series{series_id="<id>"}` (DESIGN.md,
//! data model), so that it can also be read through PromQL.

use std::collections::HashMap;
use std::sync::Arc;

use crate::ingest::label_cache::{LabelCache, SharedLabelCache, DEFAULT_LABEL_CACHE_ENTRIES};
use crate::ingest::IngestSink;
use crate::storage::{Labels, Matcher, Sample, METRIC_NAME_LABEL};

use super::frame::{DataPoint, Frame, QueryRange};

/// Metric name that binary-protocol series are stored under.
pub const SERIES_METRIC: &str = "ztsdb_series";
/// Label that carries the binary protocol's numeric series id.
pub const SERIES_ID_LABEL: &str = "series_id";

/// The label set a binary series id is stored as.
pub fn series_labels(series_id: u64) -> Labels {
    Labels::from_metric(SERIES_METRIC, &[(SERIES_ID_LABEL, &series_id.to_string())])
}

/// The client's number (position in its request) of the point at `index` in the grouped
/// order [`Handler::group`] stores points in. Only needed to report a refusal.
fn client_point(points: &[DataPoint], index: usize) -> usize {
    let mut slot: HashMap<u64, usize> = HashMap::new();
    let mut positions: Vec<Vec<usize>> = Vec::new();
    for (i, p) in points.iter().enumerate() {
        let k = *slot.entry(p.series_id).or_insert_with(|| {
            positions.push(Vec::new());
            positions.len() - 1
        });
        if let Some(pos) = positions.get_mut(k) {
            pos.push(i);
        }
    }
    positions
        .iter()
        .flatten()
        .nth(index)
        .copied()
        .unwrap_or(index)
}

/// Dispatches decoded requests. Cheap to clone; one per server, shared by its connections.
#[derive(Clone)]
pub struct Handler {
    sink: IngestSink,
    max_reply_points: usize,
    /// Label sets of the series ids written recently.
    series: Arc<SharedLabelCache>,
}

impl Handler {
    /// `max_reply_points` caps a query's data reply; a larger result is refused with an error
    /// asking for a narrower range rather than silently cut.
    pub fn new(sink: IngestSink, max_reply_points: usize) -> Self {
        Handler {
            sink,
            max_reply_points,
            series: Arc::new(LabelCache::shared(DEFAULT_LABEL_CACHE_ENTRIES)),
        }
    }

    /// The reply to one request.
    pub async fn handle(&self, frame: Frame) -> Frame {
        match frame {
            Frame::Insert(p) => self.insert(vec![p]).await,
            Frame::InsertBatch(points) => self.insert(points).await,
            Frame::Query(q) => self.query(q).await,
            Frame::Ping => Frame::Ok,
            reply @ (Frame::Ok | Frame::Error(_) | Frame::Data(_)) => Frame::Error(format!(
                "{:?} is a server reply; clients send insert, insert_batch, query or ping",
                reply.msg_type()
            )),
        }
    }

    async fn insert(&self, points: Vec<DataPoint>) -> Frame {
        let total = points.len();
        let batch = self.group(&points);
        match self.sink.write_series(batch).await {
            Ok(outcome) => match outcome.rejected.first() {
                None => Frame::Ok,
                Some((index, why)) => {
                    let point = client_point(&points, *index);
                    Frame::Error(format!(
                        "{} of {total} points stored; {} refused, the first (point {point}) because: {why}",
                        outcome.appended,
                        outcome.rejected.len(),
                    ))
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, points = total, "binary insert failed");
                Frame::Error(format!("write failed, nothing acknowledged: {e}"))
            }
        }
    }

    /// The points grouped by series id, series in order of first appearance and each one's
    /// points in order, so that each label set is looked up once per batch rather than once
    /// per point; the label sets of ids seen before come from the cache.
    fn group(&self, points: &[DataPoint]) -> Vec<(Labels, Vec<Sample>)> {
        let mut slot: HashMap<u64, usize> = HashMap::new();
        let mut batch: Vec<(Labels, Vec<Sample>)> = Vec::new();
        for p in points {
            let k = *slot.entry(p.series_id).or_insert_with(|| {
                batch.push((self.labels_of(p.series_id), Vec::new()));
                batch.len() - 1
            });
            if let Some((_, samples)) = batch.get_mut(k) {
                samples.push(Sample::new(p.timestamp_ms, p.value));
            }
        }
        batch
    }

    fn labels_of(&self, series_id: u64) -> Labels {
        let key = series_id.to_le_bytes();
        if let Some(labels) = self.series.lock().get(&key) {
            return labels;
        }
        let labels = series_labels(series_id);
        self.series.lock().insert(&key, labels.clone());
        labels
    }

    async fn query(&self, q: QueryRange) -> Frame {
        if q.start_ms > q.end_ms {
            return Frame::Error(format!(
                "query start {} is after end {}",
                q.start_ms, q.end_ms
            ));
        }
        let wanted = series_labels(q.series_id);
        let matchers = vec![
            Matcher::equal(METRIC_NAME_LABEL, SERIES_METRIC),
            Matcher::equal(SERIES_ID_LABEL, q.series_id.to_string()),
        ];
        let engine = self.sink.engine().clone();
        let result =
            tokio::task::spawn_blocking(move || engine.select(&matchers, q.start_ms, q.end_ms))
                .await;
        let series = match result {
            Ok(Ok(series)) => series,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, series_id = q.series_id, "binary query failed");
                return Frame::Error(format!("query failed: {e}"));
            }
            Err(e) => return Frame::Error(format!("query task failed: {e}")),
        };
        // Other protocols may have written `ztsdb_series` with more labels; the binary id
        // names exactly the series with no others.
        let Some(found) = series.into_iter().find(|s| s.labels == wanted) else {
            return Frame::Data(Vec::new());
        };
        if found.samples.len() > self.max_reply_points {
            return Frame::Error(format!(
                "{} points in range, more than the {} one reply may carry; query a narrower range",
                found.samples.len(),
                self.max_reply_points
            ));
        }
        Frame::Data(
            found
                .samples
                .iter()
                .map(|s| DataPoint {
                    series_id: q.series_id,
                    timestamp_ms: s.t,
                    value: s.v,
                })
                .collect(),
        )
    }
}
