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
        let todo: Vec<(Arc<SegmentHandle>, i64, i64)> = {
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
                if level == 0 {
                    continue;
                }
                for &res in &self.opts.downsample_resolutions_ms {
                    let Some(end) = rollup_end(
                        (b.name.start, b.name.end),
                        horizon,
                        res,
                        self.opts.block_ranges_ms.first().copied(),
                    ) else {
                        continue;
                    };
                    // Only a window that no other raw block shares is rolled up: the block
                    // alone holds its data.
                    if raw
                        .iter()
                        .any(|o| o.name.uid != b.name.uid && o.name.overlaps(b.name.start, end))
                    {
                        continue;
                    }
                    let kind = SegmentKind::Rollup { resolution_ms: res };
                    let have = st.segments.iter().any(|r| {
                        r.name.kind == kind
                            && r.name.seq >= b.name.seq
                            && r.name.start <= b.name.start
                            && r.name.end >= end
                    });
                    if !have {
                        todo.push(((*b).clone(), res, end));
                    }
                }
            }
            todo
        };
        for (block, res, end) in todo {
            match self.write_rollup(&block, res, end) {
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

    /// Writes the rollup of `block`'s samples up to `end` (the block's end, or a bucket edge
    /// before it for a block whose window is still open).
    fn write_rollup(&self, block: &SegmentHandle, res: i64, end: i64) -> Result<(), StorageError> {
        let tombstones: Vec<Tombstone> = self.state.read().tombstones.iter().cloned().collect();
        let name = SegmentName::new(
            SegmentKind::Rollup { resolution_ms: res },
            block.name.seq,
            (block.name.start, end),
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
                if end < block.name.end {
                    samples.retain(|x| x.t <= end);
                }
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

/// The end of the window of a raw block `(start, end)` to roll up at resolution `res`, given
/// the `horizon` before which samples are settled: the block's own end once it is past the
/// horizon; for a block still open (a forced compaction folds the open day into one block) the
/// last bucket edge before the horizon, moved in steps of `step` (the smallest block range) so
/// that the growing prefix is rewritten at most once per step rather than once per bucket.
/// `None` when nothing is settled yet, or when the prefix would not end on a bucket edge.
fn rollup_end(block: (i64, i64), horizon: i64, res: i64, step: Option<i64>) -> Option<i64> {
    let (start, end) = block;
    if res <= 0 {
        return None;
    }
    if end < horizon {
        return Some(end);
    }
    let step = step.filter(|&s| s > 0 && s % res == 0)?;
    let edge = horizon.div_euclid(step).checked_mul(step)?;
    (edge > start && start.rem_euclid(res) == 0).then_some(edge - 1)
}

#[cfg(test)]
mod tests {
    use super::rollup_end;

    #[test]
    fn open_blocks_roll_up_their_settled_prefix() {
        const H: i64 = 3_600_000;
        // A closed block: the whole window.
        assert_eq!(
            rollup_end((0, 24 * H - 1), 30 * H, H, Some(2 * H)),
            Some(24 * H - 1)
        );
        // An open day: up to the last two-hour edge before the horizon.
        assert_eq!(
            rollup_end((0, 24 * H - 1), 13 * H + 5, 60_000, Some(2 * H)),
            Some(12 * H - 1)
        );
        assert_eq!(
            rollup_end((0, 24 * H - 1), 12 * H, H, Some(2 * H)),
            Some(12 * H - 1)
        );
        // Nothing settled yet, or no step that is whole buckets.
        assert_eq!(rollup_end((0, 24 * H - 1), H, H, Some(2 * H)), None);
        assert_eq!(
            rollup_end((0, 24 * H - 1), 13 * H, 7 * 60_000, Some(2 * H)),
            None
        );
        assert_eq!(rollup_end((0, 24 * H - 1), 13 * H, H, None), None);
        assert_eq!(rollup_end((0, 24 * H - 1), 13 * H, 0, Some(2 * H)), None);
    }
}
