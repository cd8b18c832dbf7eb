//! Ingest protocols. Each protocol module splits framing (bytes → messages) from connection
//! handling (auth, limits, acks) and hands parsed samples to the [`IngestSink`], which owns
//! the path into storage (today the local engine; in a cluster, the replicated write path).

pub mod tcp_json;

use std::sync::Arc;

use crate::storage::{AppendOutcome, Engine, Labels, Sample, StorageError};

pub mod binary;
pub mod line_protocol;
pub mod remote_write;

/// The one way ingest protocols store samples. Cheap to clone.
#[derive(Clone)]
pub struct IngestSink {
    engine: Arc<Engine>,
}

impl IngestSink {
    pub fn new(engine: Arc<Engine>) -> Self {
        IngestSink { engine }
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
        let engine = self.engine.clone();
        match tokio::task::spawn_blocking(move || engine.append_labeled(&batch)).await {
            Ok(r) => r,
            Err(e) => Err(StorageError::InvalidArgument(format!(
                "write task failed: {e}"
            ))),
        }
    }
}
