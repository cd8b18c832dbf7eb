//! Ingest protocols. Each protocol module splits framing (bytes → messages) from connection
//! handling (auth, limits, acks) and hands parsed samples to the [`IngestSink`], which owns
//! the path into storage: the local engine, or in a cluster the replicated write path.

pub mod tcp_json;

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::cluster::Cluster;
use crate::storage::{AppendOutcome, Engine, LabelSets, Labels, Sample, StorageError};
pub use budget::{BudgetBusy, BudgetPermit, WriteBudget};

pub mod binary;
pub mod budget;
pub mod label_cache;
pub mod line_protocol;
pub mod mqtt;
pub mod remote_write;
pub mod series_chunks;

/// A batch of samples that has just been made durable, as published to live subscribers.
pub type LiveBatch = Arc<Vec<(Labels, Sample)>>;

/// Batches buffered per live subscriber. A subscriber that falls further behind loses the
/// oldest batches (it sees `RecvError::Lagged`); ingest never waits for it.
const LIVE_CAPACITY: usize = 1024;

/// Default bound on the estimated memory of batches handed to storage at once.
pub const DEFAULT_WRITE_BUDGET_BYTES: usize = 256 << 20;

/// The one way ingest protocols store samples. Cheap to clone.
#[derive(Clone)]
pub struct IngestSink {
    engine: Arc<Engine>,
    live: broadcast::Sender<LiveBatch>,
    budget: WriteBudget,
    /// Set in a cluster: batches go to their owners through the replicated write path.
    cluster: Option<Arc<Cluster>>,
}

impl IngestSink {
    /// A sink with the default in-flight budget ([`DEFAULT_WRITE_BUDGET_BYTES`]).
    pub fn new(engine: Arc<Engine>) -> Self {
        Self::with_budget(engine, WriteBudget::new(DEFAULT_WRITE_BUDGET_BYTES))
    }

    /// A sink whose batches waiting for storage hold at most `budget` (estimated) bytes;
    /// further writes wait for earlier ones to finish.
    pub fn with_budget(engine: Arc<Engine>, budget: WriteBudget) -> Self {
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        IngestSink {
            engine,
            live,
            budget,
            cluster: None,
        }
    }

    /// The budget shared by every write through this sink.
    pub fn budget(&self) -> &WriteBudget {
        &self.budget
    }

    /// A sink that routes every batch through the cluster's replicated write path, so every
    /// protocol replicates without knowing about the cluster.
    pub fn clustered(engine: Arc<Engine>, budget: WriteBudget, cluster: Arc<Cluster>) -> Self {
        IngestSink {
            cluster: Some(cluster),
            ..Self::with_budget(engine, budget)
        }
    }

    /// Receives every batch written from now on (accepted samples only), after it is durable.
    pub fn subscribe(&self) -> broadcast::Receiver<LiveBatch> {
        self.live.subscribe()
    }

    /// Current number of live subscribers.
    pub fn subscribers(&self) -> usize {
        self.live.receiver_count()
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Stores a batch; on `Ok` every sample not listed in `rejected` is durable. The engine's
    /// append blocks on the WAL's fsync, so it runs on tokio's blocking pool. Waits first while
    /// the batches already in flight use up the sink's budget: that wait is what slows
    /// clients down to the speed of the disk.
    ///
    /// `sets` says whether the label sets come from a label cache (the engine then remembers
    /// their series ids by allocation) or were built for this batch alone.
    pub async fn write(
        &self,
        batch: Vec<(Labels, Sample)>,
        sets: LabelSets,
    ) -> Result<AppendOutcome, StorageError> {
        if batch.is_empty() {
            return Ok(AppendOutcome::default());
        }
        let _permit = self.budget.acquire(batch_bytes(&batch)).await;
        if let Some(cluster) = &self.cluster {
            return self.write_clustered(cluster, batch, sets).await;
        }
        let (result, batch) = self
            .append_blocking(batch, move |e, b| {
                e.append_labeled_within(b, e.options().out_of_order_window_ms, sets)
            })
            .await?;
        if let Ok(outcome) = &result {
            self.publish(batch, outcome);
        }
        result
    }

    /// Stores samples grouped by series (each label set once); otherwise like
    /// [`write`](Self::write). Rejection indices count samples series after series.
    pub async fn write_series(
        &self,
        batch: Vec<(Labels, Vec<Sample>)>,
    ) -> Result<AppendOutcome, StorageError> {
        if batch.iter().all(|(_, s)| s.is_empty()) {
            return Ok(AppendOutcome::default());
        }
        let _permit = self.budget.acquire(series_bytes(&batch)).await;
        if let Some(cluster) = &self.cluster {
            // The replicated path splits by owner per sample; flattening series after series
            // keeps rejection indices as this method documents them.
            return self
                .write_clustered(cluster, flatten(batch), LabelSets::Cached)
                .await;
        }
        let (result, batch) = self
            .append_blocking(batch, |e, b| e.append_series(b))
            .await?;
        if let Ok(outcome) = &result {
            if self.live.receiver_count() > 0 {
                self.publish(flatten(batch), outcome);
            }
        }
        result
    }

    /// Runs `append` on tokio's blocking pool (it waits for the WAL's fsync) and hands the
    /// batch back for the live stream.
    async fn append_blocking<B, F>(
        &self,
        batch: B,
        append: F,
    ) -> Result<(Result<AppendOutcome, StorageError>, B), StorageError>
    where
        B: Send + 'static,
        F: FnOnce(&Engine, &B) -> Result<AppendOutcome, StorageError> + Send + 'static,
    {
        let engine = self.engine.clone();
        tokio::task::spawn_blocking(move || {
            let r = append(&engine, &batch);
            (r, batch)
        })
        .await
        .map_err(|e| StorageError::InvalidArgument(format!("write task failed: {e}")))
    }

    /// Writes through the cluster's replicated path; the ack waits for the configured
    /// consistency. Callers hold the budget permit.
    async fn write_clustered(
        &self,
        cluster: &Cluster,
        batch: Vec<(Labels, Sample)>,
        sets: LabelSets,
    ) -> Result<AppendOutcome, StorageError> {
        let keep = (self.live.receiver_count() > 0).then(|| batch.clone());
        let result = cluster.write(batch, sets).await;
        if let (Ok(outcome), Some(batch)) = (&result, keep) {
            self.publish(batch, outcome);
        }
        result
    }

    /// Hands the accepted part of a durable batch to live subscribers, if there are any.
    fn publish(&self, mut batch: Vec<(Labels, Sample)>, outcome: &AppendOutcome) {
        if self.live.receiver_count() == 0 {
            return;
        }
        if !outcome.rejected.is_empty() {
            let mut rejected: Vec<usize> = outcome.rejected.iter().map(|(i, _)| *i).collect();
            rejected.sort_unstable();
            let mut i = 0;
            batch.retain(|_| {
                let keep = rejected.binary_search(&i).is_err();
                i += 1;
                keep
            });
        }
        if !batch.is_empty() {
            // Err only means every subscriber left in the meantime.
            let _ = self.live.send(Arc::new(batch));
        }
    }
}

/// One `(labels, sample)` pair per sample, series after series (the order rejection indices
/// count in).
fn flatten(batch: Vec<(Labels, Vec<Sample>)>) -> Vec<(Labels, Sample)> {
    batch
        .into_iter()
        .flat_map(|(l, samples)| samples.into_iter().map(move |s| (l.clone(), s)))
        .collect()
}

/// Estimated heap bytes of a label set: two `String` headers per label, their bytes and
/// allocation rounding.
fn labels_bytes(labels: &Labels) -> usize {
    const PER_LABEL: usize = 2 * std::mem::size_of::<String>() + 16;
    labels
        .iter()
        .map(|l| PER_LABEL + l.name.len() + l.value.len())
        .sum()
}

/// Estimated heap bytes of a batch: the pairs themselves plus every label string they own.
pub fn batch_bytes(batch: &[(Labels, Sample)]) -> usize {
    batch
        .iter()
        .map(|(labels, _)| std::mem::size_of::<(Labels, Sample)>() + labels_bytes(labels))
        .sum()
}

/// Estimated heap bytes of a batch grouped by series.
pub fn series_bytes(batch: &[(Labels, Vec<Sample>)]) -> usize {
    batch
        .iter()
        .map(|(labels, samples)| {
            std::mem::size_of::<(Labels, Vec<Sample>)>()
                + labels_bytes(labels)
                + std::mem::size_of_val(samples.as_slice())
        })
        .sum()
}
