//! The background thread that checkpoints, compacts, downsamples and applies retention.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::Engine;
use crate::storage::StorageError;

/// Stops the maintenance thread when dropped.
pub struct MaintenanceHandle {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl MaintenanceHandle {
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
        if let Some(t) = self.thread.take() {
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

    /// Starts the maintenance thread: checks once a second (or once per checkpoint interval,
    /// if shorter) whether a checkpoint is due
    /// (interval elapsed or WAL past its size limit) and then runs a full pass.
    pub fn start_maintenance(self: &Arc<Self>) -> Result<MaintenanceHandle, StorageError> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let engine = Arc::clone(self);
        let stop2 = stop.clone();
        let poll = self.opts.checkpoint_interval.min(Duration::from_secs(1));
        let thread = std::thread::Builder::new()
            .name("strata-maintenance".into())
            .spawn(move || loop {
                {
                    let mut stopped = stop2.0.lock();
                    if !*stopped {
                        stop2.1.wait_for(&mut stopped, poll);
                    }
                    if *stopped {
                        return;
                    }
                }
                if engine.checkpoint_due() {
                    if let Err(e) = engine.run_maintenance() {
                        tracing::error!(error = %e, "storage maintenance failed; will retry");
                        *engine.last_checkpoint.lock() = std::time::Instant::now();
                    }
                }
            })
            .map_err(|source| StorageError::Io {
                path: "maintenance thread".into(),
                source,
            })?;
        Ok(MaintenanceHandle {
            stop,
            thread: Some(thread),
        })
    }
}
