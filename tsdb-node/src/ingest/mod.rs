//! Ingest protocols. Each protocol module splits framing (bytes → messages) from connection
//! handling (auth, limits, acks) and hands parsed samples to the [`IngestSink`], which owns
//! the path into storage: the local engine, or in a cluster the replicated write path.

pub mod tcp_json;

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::cluster::Cluster;
use crate::storage::{AppendOutcome, Engine, Labels, Sample, StorageError};

pub mod binary;
pub mod line_protocol;
pub mod remote_write;

/// A batch of samples that has just been made durable, as published to live subscribers.
pub type LiveBatch = Arc<Vec<(Labels, Sample)>>;

/// Batches buffered per live subscriber. A subscriber that falls further behind loses the
/// oldest batches (it sees `RecvError::Lagged`); ingest never waits for it.
const LIVE_CAPACITY: usize = 1024;

/// The one way ingest protocols store samples. Cheap to clone.
#[derive(Clone)]
pub struct IngestSink {
    engine: Arc<Engine>,
    live: broadcast::Sender<LiveBatch>,
    /// Set in a cluster: batches go to their owners through the replicated write path.
    cluster: Option<Arc<Cluster>>,
}

impl IngestSink {
    pub fn new(engine: Arc<Engine>) -> Self {
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        IngestSink {
            engine,
            live,
            cluster: None,
        }
    }

    /// A sink that routes every batch through the cluster's replicated write path, so every
    /// protocol replicates without knowing about the cluster.
    pub fn clustered(engine: Arc<Engine>, cluster: Arc<Cluster>) -> Self {
        IngestSink {
            cluster: Some(cluster),
            ..Self::new(engine)
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
    /// append blocks on the WAL's fsync, so it runs on tokio's blocking pool.
    pub async fn write(&self, batch: Vec<(Labels, Sample)>) -> Result<AppendOutcome, StorageError> {
        if batch.is_empty() {
            return Ok(AppendOutcome::default());
        }
        if let Some(cluster) = &self.cluster {
            let keep = (self.live.receiver_count() > 0).then(|| batch.clone());
            let result = cluster.write(batch).await;
            if let (Ok(outcome), Some(batch)) = (&result, keep) {
                self.publish(batch, outcome);
            }
            return result;
        }
        let engine = self.engine.clone();
        let (result, batch) = match tokio::task::spawn_blocking(move || {
            let r = engine.append_labeled(&batch);
            (r, batch)
        })
        .await
        {
            Ok(r) => r,
            Err(e) => {
                return Err(StorageError::InvalidArgument(format!(
                    "write task failed: {e}"
                )))
            }
        };
        if let Ok(outcome) = &result {
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
