//! Cutting the head into level-0 segments.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::recovery::CheckpointRecord;
use super::{Engine, FrozenHead, SegmentHandle};
use crate::storage::chunking::{encode_chunks, RAW_KIND};
use crate::storage::head::Head;
use crate::storage::layout::{window_of, SegmentKind, SegmentName};
use crate::storage::model::{Labels, SeriesId};
use crate::storage::segment::{Segment, SegmentMetaSeed, SegmentWriter};
use crate::storage::wal::WalRecord;
use crate::storage::StorageError;

impl Engine {
    /// Writes the head to disk as level-0 segments (one per block window it touches) and
    /// deletes the WAL files they cover.
    pub fn checkpoint(&self) -> Result<(), StorageError> {
        let _m = self.maintenance.lock();
        self.checkpoint_locked()
    }

    pub(crate) fn checkpoint_locked(&self) -> Result<(), StorageError> {
        let frozen = {
            let mut st = self.state.write();
            match &st.frozen {
                // A previous attempt failed half way; finish that head first.
                Some(f) => f.clone(),
                None => {
                    if st.head.appended_samples() == 0 {
                        return Ok(());
                    }
                    let head = std::mem::replace(&mut st.head, Head::new());
                    let seq = st.head_epoch;
                    let wal_start = match self.wal.cut() {
                        Ok(n) => n,
                        Err(e) => {
                            st.head = head;
                            return Err(e.into());
                        }
                    };
                    st.head_epoch += 1;
                    let new_series = std::mem::take(&mut st.new_series)
                        .into_iter()
                        .filter_map(|id| st.catalog.labels(id).map(|l| (id, l)))
                        .collect();
                    let f = Arc::new(FrozenHead {
                        head,
                        seq,
                        wal_start,
                        new_series,
                    });
                    st.frozen = Some(f.clone());
                    f
                }
            }
        };
        let handles = self.write_frozen(&frozen)?;
        if !frozen.new_series.is_empty() {
            let records: Vec<WalRecord> = frozen
                .new_series
                .iter()
                .map(|(id, labels)| WalRecord::Series {
                    id: *id,
                    labels: labels.clone(),
                })
                .collect();
            if let Err(e) = self.series_log.append(&records) {
                for h in &handles {
                    let _ = std::fs::remove_file(&h.path);
                }
                return Err(e.into());
            }
        }
        self.checkpoint_unrecorded.store(true, Ordering::SeqCst);
        let max_t = {
            let mut st = self.state.write();
            st.segments.extend(handles);
            st.frozen = None;
            st.max_t
        };
        CheckpointRecord {
            next_epoch: frozen.seq + 1,
            wal_start: frozen.wal_start,
            max_t,
        }
        .save(&self.opts.data_dir)?;
        self.checkpoint_unrecorded.store(false, Ordering::SeqCst);
        self.wal.remove_before(frozen.wal_start)?;
        self.counters.checkpoints.fetch_add(1, Ordering::Relaxed);
        *self.last_checkpoint.lock() = std::time::Instant::now();
        tracing::debug!(seq = frozen.seq, "checkpoint written");
        Ok(())
    }

    fn write_frozen(&self, frozen: &FrozenHead) -> Result<Vec<Arc<SegmentHandle>>, StorageError> {
        let mut ids: Vec<SeriesId> = frozen.head.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        let labels: Vec<Option<Labels>> = {
            let st = self.state.read();
            ids.iter().map(|id| st.catalog.labels(*id)).collect()
        };
        let range = self.opts.block_ranges_ms[0];
        let mut writers: BTreeMap<(i64, i64), (SegmentName, SegmentWriter)> = BTreeMap::new();
        let result = (|| -> Result<(), StorageError> {
            for (id, labels) in ids.iter().zip(&labels) {
                let (Some(ms), Some(labels)) = (frozen.head.series(*id), labels) else {
                    continue;
                };
                let samples = ms.all_samples()?;
                let mut rest = &samples[..];
                while let Some(first) = rest.first() {
                    let w = window_of(first.t, range);
                    let n = rest.iter().take_while(|s| s.t <= w.1).count();
                    let (part, tail) = rest.split_at(n);
                    rest = tail;
                    let mut chunks = Vec::new();
                    encode_chunks(RAW_KIND, part, self.opts.block_chunk_samples, &mut chunks)?;
                    let (_, writer) = match writers.entry(w) {
                        std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                        std::collections::btree_map::Entry::Vacant(e) => {
                            let name =
                                SegmentName::new(SegmentKind::Raw { level: 0 }, frozen.seq, w);
                            let seed = SegmentMetaSeed {
                                seq: frozen.seq,
                                level: 0,
                                resolution_ms: 0,
                            };
                            let writer = SegmentWriter::create(
                                &self.opts.data_dir,
                                &name.file_name(),
                                seed,
                            )?;
                            e.insert((name, writer))
                        }
                    };
                    writer.add_series(*id, labels, &chunk_refs(&chunks))?;
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            for (_, (_, w)) in writers {
                let _ = w.abort();
            }
            return Err(e);
        }
        let mut handles = Vec::with_capacity(writers.len());
        let mut pending = writers.into_values();
        while let Some((name, w)) = pending.next() {
            match w.finish().map_err(StorageError::from).and_then(|path| {
                let seg = Segment::open(&path)?;
                Ok(Arc::new(SegmentHandle { name, path, seg }))
            }) {
                Ok(h) => handles.push(h),
                Err(e) => {
                    for (_, w) in pending {
                        let _ = w.abort();
                    }
                    // Published files of this attempt are harmless: the retry writes new ones
                    // with the same seq, and recovery deletes level-0 files of an unfinished
                    // checkpoint.
                    for h in &handles {
                        let _ = std::fs::remove_file(&h.path);
                    }
                    return Err(e);
                }
            }
        }
        Ok(handles)
    }
}

/// Borrowed view of encoded chunks in the shape `SegmentWriter::add_series` takes.
pub(crate) fn chunk_refs(
    chunks: &[crate::storage::chunking::EncodedChunk],
) -> Vec<(u8, i64, i64, u32, &[u8])> {
    chunks
        .iter()
        .map(|c| (c.kind, c.mint, c.maxt, c.count, c.bytes.as_slice()))
        .collect()
}
