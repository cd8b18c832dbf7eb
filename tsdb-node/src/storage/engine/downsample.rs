//! Producing rollup files for raw blocks that can no longer change.

use std::sync::Arc;

use super::checkpoint::chunk_refs;
use super::{Engine, SegmentHandle};
use crate::storage::downsample::{buckets, rollup_chunks};
use crate::storage::layout::{SegmentKind, SegmentName};
use crate::storage::model::Sample;
use crate::storage::segment::{Segment, SegmentError, SegmentMetaSeed, SegmentWriter};
use crate::storage::tombstones::Tombstone;
use crate::storage::StorageError;

impl Engine {
    /// Writes missing rollups; returns how many files were written.
    pub fn downsample(&self) -> Result<usize, StorageError> {
        let _m = self.maintenance.lock();
        self.downsample_locked()
    }

    pub(crate) fn downsample_locked(&self) -> Result<usize, StorageError> {
        if self
            .checkpoint_unrecorded
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Ok(0);
        }
        let mut written = 0;
        let todo: Vec<(Arc<SegmentHandle>, i64)> = {
            let st = self.state.read();
            // Blocks are rolled up once late samples are unlikely: past the out-of-order
            // window, but no later than one top-level block behind the newest data, so that an
            // unlimited window (backfill) still gets rollups. A late sample after that only
            // makes the rollup stale; queries then fall back to raw data (see `querier`).
            let settle = self.opts.out_of_order_window_ms.min(
                self.opts
                    .block_ranges_ms
                    .last()
                    .copied()
                    .unwrap_or(i64::MAX),
            );
            let horizon = st.max_t.saturating_sub(settle);
            let raw: Vec<&Arc<SegmentHandle>> = st
                .segments
                .iter()
                .filter(|h| matches!(h.name.kind, SegmentKind::Raw { .. }))
                .collect();
            let mut todo = Vec::new();
            for b in &raw {
                let SegmentKind::Raw { level } = b.name.kind else {
                    continue;
                };
                // Only blocks that can no longer receive samples, and that alone hold the data
                // of their window, are rolled up.
                if level == 0 || b.name.end >= horizon {
                    continue;
                }
                if raw
                    .iter()
                    .any(|o| o.name.uid != b.name.uid && o.name.overlaps(b.name.start, b.name.end))
                {
                    continue;
                }
                for &res in &self.opts.downsample_resolutions_ms {
                    let kind = SegmentKind::Rollup { resolution_ms: res };
                    let have = st.segments.iter().any(|r| {
                        r.name.kind == kind
                            && r.name.seq >= b.name.seq
                            && b.name.contained_in(r.name.start, r.name.end)
                    });
                    if !have {
                        todo.push(((*b).clone(), res));
                    }
                }
            }
            todo
        };
        for (block, res) in todo {
            match self.write_rollup(&block, res) {
                Ok(()) => written += 1,
                Err(StorageError::CorruptSegment { path, reason }) => {
                    self.quarantine_path(&path, &reason)
                }
                Err(e) => return Err(e),
            }
        }
        self.remove_superseded_rollups()?;
        Ok(written)
    }

    fn write_rollup(&self, block: &SegmentHandle, res: i64) -> Result<(), StorageError> {
        let tombstones: Vec<Tombstone> = self.state.read().tombstones.iter().cloned().collect();
        let name = SegmentName::new(
            SegmentKind::Rollup { resolution_ms: res },
            block.name.seq,
            (block.name.start, block.name.end),
        );
        let mut written = 0usize;
        let mut writer = SegmentWriter::create(
            &self.opts.data_dir,
            &name.file_name(),
            SegmentMetaSeed {
                seq: block.name.seq,
                level: 0,
                resolution_ms: res,
            },
        )?;
        let fill = (|| -> Result<(), StorageError> {
            let mut samples: Vec<Sample> = Vec::new();
            for id in block.seg.series_ids() {
                let Some(labels) = block.live_samples(id, &tombstones, &mut samples)? else {
                    continue;
                };
                if samples.is_empty() {
                    continue;
                }
                let b = buckets(&samples, res);
                let chunks = rollup_chunks(&b, self.opts.block_chunk_samples)?;
                writer.add_series(id, &labels, &chunk_refs(&chunks))?;
                written += 1;
            }
            Ok(())
        })();
        if let Err(e) = fill {
            let _ = writer.abort();
            return Err(e);
        }
        if written == 0 {
            // Everything in the block was deleted; the raw block disappears at its next
            // compaction, and there is nothing to roll up.
            writer.abort()?;
            return Ok(());
        }
        let path = match writer.finish() {
            Ok(p) => p,
            Err(SegmentError::Empty { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let seg = Segment::open(&path)?;
        self.state
            .write()
            .segments
            .push(Arc::new(SegmentHandle { name, path, seg }));
        Ok(())
    }

    /// Deletes rollup files made obsolete by a newer rollup covering their window.
    fn remove_superseded_rollups(&self) -> Result<(), StorageError> {
        let doomed: Vec<Arc<SegmentHandle>> = {
            let mut st = self.state.write();
            let names: Vec<SegmentName> = st
                .segments
                .iter()
                .filter(|h| matches!(h.name.kind, SegmentKind::Rollup { .. }))
                .map(|h| h.name)
                .collect();
            let (doomed, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut st.segments)
                .into_iter()
                .partition(|h| names.iter().any(|n| n.supersedes(&h.name)));
            st.segments = keep;
            doomed
        };
        for h in doomed {
            if let Err(e) = std::fs::remove_file(&h.path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(StorageError::Io {
                        path: h.path.clone(),
                        source: e,
                    });
                }
            }
        }
        Ok(())
    }
}
