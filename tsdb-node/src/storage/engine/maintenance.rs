//! The background threads: one checkpoints, compacts, downsamples and applies retention; one
//! settles the head's freshly sealed chunks (`settle.rs`), which must not wait behind a
//! compaction that takes seconds.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::Engine;
use crate::storage::StorageError;

/// How often the settling thread looks for sealed chunks. A chunk seals every
/// `head_chunk_samples` samples of a series, so what waits in Gorilla form is about this
/// long's worth of sealed chunks.
const SETTLE_POLL: Duration = Duration::from_millis(50);

/// Stops the maintenance threads when dropped.
pub struct MaintenanceHandle {
    stop: Arc<(Mutex<bool>, Condvar)>,
    threads: Vec<JoinHandle<()>>,
}

impl MaintenanceHandle {
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for MaintenanceHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Engine {
    /// One full pass: checkpoint, compaction, downsampling, retention.
    pub fn run_maintenance(&self) -> Result<(), StorageError> {
        let _m = self.maintenance.lock();
        self.checkpoint_locked()?;
        self.compact_locked(false)?;
        self.downsample_locked()?;
        self.retention_locked()?;
        Ok(())
    }

    fn checkpoint_due(&self) -> bool {
        self.last_checkpoint.lock().elapsed() >= self.opts.checkpoint_interval
            || self.wal.size_bytes() >= self.opts.wal_segment_size
    }

    /// Starts the maintenance threads. One checks once a second (or once per checkpoint
    /// interval, if shorter) whether a checkpoint is due (interval elapsed or WAL past its
    /// size limit) and then runs a full pass; the other settles the head's sealed chunks
    /// every [`SETTLE_POLL`].
    pub fn start_maintenance(self: &Arc<Self>) -> Result<MaintenanceHandle, StorageError> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let mut handle = MaintenanceHandle {
            stop: stop.clone(),
            threads: Vec::new(),
        };
        let poll = self.opts.checkpoint_interval.min(Duration::from_secs(1));
        let engine = Arc::clone(self);
        handle.threads.push(spawn_every(
            "strata-maintenance",
            stop.clone(),
            poll,
            move || {
                if engine.checkpoint_due() {
                    if let Err(e) = engine.run_maintenance() {
                        tracing::error!(error = %e, "storage maintenance failed; will retry");
                        *engine.last_checkpoint.lock() = std::time::Instant::now();
                    }
                }
            },
        )?);
        let engine = Arc::clone(self);
        handle.threads.push(spawn_every(
            "strata-settle",
            stop,
            SETTLE_POLL,
            move || {
                engine.settle_head(usize::MAX);
            },
        )?);
        Ok(handle)
    }
}

/// A thread that runs `work` every `poll` until `stop` is set. (On an error the handle
/// already holding earlier threads is dropped by the caller, which stops them.)
fn spawn_every(
    name: &str,
    stop: Arc<(Mutex<bool>, Condvar)>,
    poll: Duration,
    mut work: impl FnMut() + Send + 'static,
) -> Result<JoinHandle<()>, StorageError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || loop {
            {
                let mut stopped = stop.0.lock();
                if !*stopped {
                    stop.1.wait_for(&mut stopped, poll);
                }
                if *stopped {
                    return;
                }
            }
            work();
        })
        .map_err(|source| StorageError::Io {
            path: format!("{name} thread").into(),
            source,
        })
}
