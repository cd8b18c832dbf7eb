//! Retention: whole files whose window lies entirely before their resolution's horizon are
//! deleted. Files that straddle the horizon stay until they are wholly past it.

use std::sync::Arc;

use super::{Engine, SegmentHandle};
use crate::storage::layout::SegmentKind;
use crate::storage::StorageError;

impl Engine {
    /// Deletes expired files; returns how many.
    pub fn apply_retention(&self) -> Result<usize, StorageError> {
        let _m = self.maintenance.lock();
        self.retention_locked()
    }

    pub(crate) fn retention_locked(&self) -> Result<usize, StorageError> {
        let now = (self.opts.clock)();
        let expired: Vec<Arc<SegmentHandle>> = {
            let mut st = self.state.write();
            let retention = &self.opts.retention;
            let (expired, keep): (Vec<_>, Vec<_>) =
                std::mem::take(&mut st.segments).into_iter().partition(|h| {
                    let res = match h.name.kind {
                        SegmentKind::Raw { .. } => 0,
                        SegmentKind::Rollup { resolution_ms } => resolution_ms,
                    };
                    retention
                        .for_resolution(res)
                        .is_some_and(|keep_ms| h.name.end < now.saturating_sub(keep_ms))
                });
            st.segments = keep;
            expired
        };
        for h in &expired {
            tracing::info!(file = %h.path.display(), "retention: deleting expired segment");
            if let Err(e) = std::fs::remove_file(&h.path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(StorageError::Io {
                        path: h.path.clone(),
                        source: e,
                    });
                }
            }
        }
        if !expired.is_empty() {
            self.gc_tombstones()?;
        }
        Ok(expired.len())
    }
}
