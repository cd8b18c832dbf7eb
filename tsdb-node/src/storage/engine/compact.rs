//! Compaction: merging the segments inside one block window into one block.
//!
//! Every raw segment lies inside one window of its level's range (level-0 segments inside a
//! window of the smallest range). Compacting window `W` at level `l` takes every raw segment
//! contained in `W` and writes one level-`l` block with `seq = max(input seqs)`. Segments that
//! overlap `W` without being contained in it are older, larger blocks (anything written into
//! their window later is newer and smaller), so the output keeps the same precedence over them
//! that its inputs had. Deleted samples are dropped on the way.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::checkpoint::chunk_refs;
use super::recovery::Journal;
use super::{Engine, SegmentHandle};
use crate::storage::chunking::{encode_chunks, RAW_KIND};
use crate::storage::fsutil::sync_dir;
use crate::storage::layout::{self, window_of, SegmentKind, SegmentName};
use crate::storage::model::{Sample, SeriesId};
use crate::storage::querier::merge_newer;
use crate::storage::segment::{Segment, SegmentMetaSeed, SegmentWriter};
use crate::storage::tombstones::Tombstone;
use crate::storage::StorageError;

/// What to compact next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionPlan {
    pub level: u32,
    pub window: (i64, i64),
    /// Indices into the list given to [`plan`].
    pub inputs: Vec<usize>,
}

fn level_of(n: &SegmentName) -> Option<u32> {
    match n.kind {
        SegmentKind::Raw { level } => Some(level),
        SegmentKind::Rollup { .. } => None,
    }
}

/// Picks the next window to compact, smallest range first. A window is compacted once the
/// newest data has moved past it, or, at the first level, once it holds `max_level0` level-0
/// segments (so that a busy current window does not pile up files). `force` treats every
/// window as closed: everything is compacted into top-level blocks.
pub fn plan(
    names: &[SegmentName],
    ranges: &[i64],
    max_t: i64,
    max_level0: usize,
    force: bool,
) -> Option<CompactionPlan> {
    for (i, &range) in ranges.iter().enumerate() {
        let level = i as u32 + 1;
        let windows: BTreeSet<(i64, i64)> = names
            .iter()
            .filter(|n| level_of(n).is_some_and(|l| l < level))
            .map(|n| window_of(n.start, range))
            .collect();
        for w in windows {
            let inputs: Vec<usize> = names
                .iter()
                .enumerate()
                .filter(|(_, n)| level_of(n).is_some() && n.contained_in(w.0, w.1))
                .map(|(i, _)| i)
                .collect();
            let level0 = inputs
                .iter()
                .filter(|&&i| level_of(&names[i]) == Some(0))
                .count();
            let closed = force || w.1 < max_t;
            if closed || (level == 1 && level0 >= max_level0.max(2)) {
                return Some(CompactionPlan {
                    level,
                    window: w,
                    inputs,
                });
            }
        }
    }
    None
}

impl Engine {
    /// Runs compactions until none is due; returns how many ran.
    pub fn compact(&self) -> Result<usize, StorageError> {
        let _m = self.maintenance.lock();
        self.compact_locked(false)
    }

    /// Compacts everything on disk into top-level blocks, open windows included (the admin
    /// `compact` action). The head is not touched; call `flush` first to include it.
    pub fn compact_all(&self) -> Result<usize, StorageError> {
        let _m = self.maintenance.lock();
        self.compact_locked(true)
    }

    pub(crate) fn compact_locked(&self, force: bool) -> Result<usize, StorageError> {
        if self.checkpoint_unrecorded.load(Ordering::SeqCst) {
            tracing::warn!("compaction postponed until the last checkpoint is recorded");
            return Ok(0);
        }
        let mut done = 0;
        loop {
            let (plan, handles) = {
                let st = self.state.read();
                let raw: Vec<Arc<SegmentHandle>> = st
                    .segments
                    .iter()
                    .filter(|h| matches!(h.name.kind, SegmentKind::Raw { .. }))
                    .cloned()
                    .collect();
                let names: Vec<SegmentName> = raw.iter().map(|h| h.name).collect();
                (
                    plan(
                        &names,
                        &self.opts.block_ranges_ms,
                        st.max_t,
                        self.opts.max_level0_segments,
                        force,
                    ),
                    raw,
                )
            };
            let Some(plan) = plan else { break };
            let inputs: Vec<Arc<SegmentHandle>> =
                plan.inputs.iter().map(|&i| handles[i].clone()).collect();
            match self.compact_window(&inputs, plan.level, plan.window) {
                Ok(()) => done += 1,
                Err(StorageError::CorruptSegment { path, reason }) => {
                    // A damaged input must not block compaction forever.
                    self.quarantine_path(&path, &reason);
                }
                Err(e) => return Err(e),
            }
        }
        if done > 0 {
            self.gc_tombstones()?;
        }
        Ok(done)
    }

    fn compact_window(
        &self,
        inputs: &[Arc<SegmentHandle>],
        level: u32,
        window: (i64, i64),
    ) -> Result<(), StorageError> {
        let mut inputs: Vec<Arc<SegmentHandle>> = inputs.to_vec();
        inputs.sort_by_key(|h| (h.name.seq, h.name.uid));
        let seq = inputs.iter().map(|h| h.name.seq).max().unwrap_or(0);
        let tombstones: Vec<Tombstone> = self.state.read().tombstones.iter().cloned().collect();
        let mut ids: BTreeSet<SeriesId> = BTreeSet::new();
        for h in &inputs {
            ids.extend(h.seg.series_ids());
        }
        let name = SegmentName::new(SegmentKind::Raw { level }, seq, window);
        let mut writer = SegmentWriter::create(
            &self.opts.data_dir,
            &name.file_name(),
            SegmentMetaSeed {
                seq,
                level,
                resolution_ms: 0,
            },
        )?;
        let mut written = 0usize;
        let fill = (|| -> Result<(), StorageError> {
            let mut buf: Vec<Sample> = Vec::new();
            for id in ids {
                let mut labels = None;
                let mut merged: Vec<Sample> = Vec::new();
                for h in &inputs {
                    let Some(l) = h.live_samples(id, &tombstones, &mut buf)? else {
                        continue;
                    };
                    merged = merge_newer(merged, &buf);
                    labels.get_or_insert(l);
                }
                let (Some(labels), false) = (labels, merged.is_empty()) else {
                    continue;
                };
                let mut chunks = Vec::new();
                encode_chunks(
                    RAW_KIND,
                    &merged,
                    self.opts.block_chunk_samples,
                    &mut chunks,
                )?;
                writer.add_series(id, &labels, &chunk_refs(&chunks))?;
                written += 1;
            }
            Ok(())
        })();
        if let Err(e) = fill {
            let _ = writer.abort();
            return Err(e);
        }
        let input_files: Vec<String> = inputs.iter().map(|h| h.name.file_name()).collect();
        let journal_path =
            self.opts
                .data_dir
                .join(format!("compact-{}{}", name.uid, layout::JOURNAL_SUFFIX));
        let outputs = if written > 0 {
            vec![name.file_name()]
        } else {
            Vec::new()
        };
        Journal {
            outputs,
            inputs: input_files,
        }
        .write(&journal_path)?;
        let output = if written > 0 {
            let path = writer.finish()?;
            let seg = Segment::open(&path)?;
            Some(Arc::new(SegmentHandle { name, path, seg }))
        } else {
            writer.abort()?;
            None
        };
        {
            let mut st = self.state.write();
            st.segments
                .retain(|h| !inputs.iter().any(|i| i.name.uid == h.name.uid));
            st.segments.extend(output);
        }
        for h in &inputs {
            match std::fs::remove_file(&h.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(StorageError::Io {
                        path: h.path.clone(),
                        source,
                    })
                }
            }
        }
        sync_dir(&self.opts.data_dir).map_err(|source| StorageError::Io {
            path: self.opts.data_dir.clone(),
            source,
        })?;
        let _ = std::fs::remove_file(&journal_path);
        self.counters.compactions.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(level, ?window, inputs = inputs.len(), "compacted");
        Ok(())
    }

    /// Drops tombstones that no longer hide anything: no segment older than the deletion
    /// overlaps its range.
    pub(crate) fn gc_tombstones(&self) -> Result<(), StorageError> {
        let mut st = self.state.write();
        if st.frozen.is_some() {
            return Ok(());
        }
        let before = st.tombstones.len();
        let segs: Vec<(u64, i64, i64)> = st
            .segments
            .iter()
            .map(|h| (h.name.seq, h.name.start, h.name.end))
            .collect();
        st.tombstones.retain(|t| {
            segs.iter()
                .any(|&(seq, a, b)| seq < t.epoch && a <= t.maxt && b >= t.mint)
        });
        if st.tombstones.len() != before {
            st.tombstones
                .save(&self.opts.data_dir.join(layout::TOMBSTONES_FILE))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(level: u32, seq: u64, start: i64, end: i64) -> SegmentName {
        SegmentName {
            kind: SegmentKind::Raw { level },
            seq,
            start,
            end,
            uid: seq * 1000 + start as u64,
        }
    }

    #[test]
    fn open_window_waits_until_closed_or_crowded() {
        let names = vec![n(0, 1, 0, 9), n(0, 2, 0, 9)];
        assert_eq!(plan(&names, &[10, 30], 5, 8, false), None);
        let p = plan(&names, &[10, 30], 10, 8, false).unwrap();
        assert_eq!(
            (p.level, p.window, p.inputs.clone()),
            (1, (0, 9), vec![0, 1])
        );
        let crowded: Vec<_> = (1..=3).map(|s| n(0, s, 0, 9)).collect();
        assert_eq!(
            plan(&crowded, &[10, 30], 5, 3, false).unwrap().inputs,
            vec![0, 1, 2]
        );
    }

    #[test]
    fn higher_levels_take_every_contained_segment_but_not_containing_blocks() {
        // An old 30-wide block and newer smaller pieces inside its window.
        let names = vec![n(2, 5, 0, 29), n(1, 7, 10, 19), n(0, 8, 20, 29)];
        let p = plan(&names, &[10, 30], 100, 8, false).unwrap();
        assert_eq!((p.level, p.window), (1, (20, 29)));
        assert_eq!(p.inputs, vec![2]);
        let names = vec![n(2, 5, 0, 29), n(1, 7, 10, 19), n(1, 8, 20, 29)];
        let p = plan(&names, &[10, 30], 100, 8, false).unwrap();
        assert_eq!((p.level, p.window, p.inputs), (2, (0, 29), vec![0, 1, 2]));
        // A top-level block alone is never recompacted.
        assert_eq!(plan(&[n(2, 5, 0, 29)], &[10, 30], 100, 8, false), None);
    }
}
