//! An open segment file together with the identity its name carries.

use std::path::PathBuf;

use crate::storage::chunking::RAW_KIND;
use crate::storage::codec;
use crate::storage::downsample::RollupField;
use crate::storage::layout::SegmentName;
use crate::storage::model::{Labels, Sample, SeriesId};
use crate::storage::querier::RollupPoint;
use crate::storage::segment::{ChunkEntry, Segment, SegmentError};
use crate::storage::tombstones::{deleted_ranges, is_deleted, Tombstone};
use crate::storage::StorageError;

pub struct SegmentHandle {
    pub name: SegmentName,
    pub path: PathBuf,
    pub seg: Segment,
}

impl SegmentHandle {
    pub(crate) fn corrupt(&self, reason: String) -> StorageError {
        StorageError::CorruptSegment {
            path: self.path.clone(),
            reason,
        }
    }

    fn map_err(&self, e: SegmentError) -> StorageError {
        match e {
            SegmentError::Corrupt { reason, .. } => self.corrupt(reason),
            other => StorageError::Segment(other),
        }
    }

    /// Chunk entries of `kind` for a series overlapping `[mint, maxt]`, in time order.
    pub fn chunks(
        &self,
        id: SeriesId,
        kind: u8,
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<ChunkEntry>, StorageError> {
        let Some(entry) = self.seg.series(id).map_err(|e| self.map_err(e))? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for c in entry.chunks(kind, mint, maxt) {
            out.push(c.map_err(|e| self.map_err(e))?);
        }
        Ok(out)
    }

    pub fn raw_chunks(
        &self,
        id: SeriesId,
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<ChunkEntry>, StorageError> {
        self.chunks(id, RAW_KIND, mint, maxt)
    }

    /// Checked chunk bytes: a checksum mismatch is a corrupt segment, never wrong data.
    pub fn chunk_bytes(&self, e: &ChunkEntry) -> Result<&[u8], StorageError> {
        self.seg.chunk_bytes(e).map_err(|e| self.map_err(e))
    }

    fn decode(&self, e: &ChunkEntry, out: &mut Vec<Sample>) -> Result<(), StorageError> {
        let bytes = self.chunk_bytes(e)?;
        let start = out.len();
        codec::decode_chunk(bytes, out)
            .map_err(|err| self.corrupt(format!("chunk at {}: {err}", e.offset)))?;
        let meta = &out[start..];
        if meta.len() != e.count as usize
            || meta.first().map(|s| s.t) != Some(e.mint)
            || meta.last().map(|s| s.t) != Some(e.maxt)
        {
            return Err(self.corrupt(format!(
                "chunk at {} disagrees with its index entry",
                e.offset
            )));
        }
        Ok(())
    }

    /// Raw samples of a series in `[mint, maxt]`, appended to `out` in time order.
    pub fn raw_samples(
        &self,
        id: SeriesId,
        mint: i64,
        maxt: i64,
        out: &mut Vec<Sample>,
    ) -> Result<(), StorageError> {
        let chunks = self.raw_chunks(id, mint, maxt)?;
        // Sized once: growing while decoding a day of chunks copied it several times over.
        out.reserve(chunks.iter().map(|e| e.count as usize).sum());
        for e in chunks {
            // Decoded in place, then trimmed to the range: a chunk's timestamps are strictly
            // increasing (checked by `decode` against the index entry's bounds and count).
            let start = out.len();
            self.decode(&e, out)?;
            let chunk = out.get(start..).unwrap_or(&[]);
            let lo = start + chunk.partition_point(|s| s.t < mint);
            let hi = start + chunk.partition_point(|s| s.t <= maxt);
            out.truncate(hi.max(lo));
            out.drain(start..lo);
        }
        Ok(())
    }

    /// A series' labels, with its samples that `tombstones` do not hide in `out` (replacing
    /// what was there); `None` when this segment does not hold the series.
    pub(crate) fn live_samples(
        &self,
        id: SeriesId,
        tombstones: &[Tombstone],
        out: &mut Vec<Sample>,
    ) -> Result<Option<Labels>, StorageError> {
        let Some(entry) = self.seg.series(id).map_err(|e| self.map_err(e))? else {
            return Ok(None);
        };
        let labels = entry.labels().map_err(|e| self.map_err(e))?;
        out.clear();
        self.raw_samples(id, i64::MIN, i64::MAX, out)?;
        let deleted = deleted_ranges(tombstones, &labels, self.name.seq);
        if !deleted.is_empty() {
            out.retain(|s| !is_deleted(&deleted, s.t));
        }
        Ok(Some(labels))
    }

    /// Rollup points of a series with bucket starts in `[mint, maxt]`.
    pub fn rollup_points(
        &self,
        id: SeriesId,
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<RollupPoint>, StorageError> {
        let mut columns: Vec<Vec<Sample>> = Vec::with_capacity(RollupField::ALL.len());
        for f in RollupField::ALL {
            let mut col = Vec::new();
            for e in self.chunks(id, f.kind(), mint, maxt)? {
                self.decode(&e, &mut col)?;
            }
            col.retain(|s| s.t >= mint && s.t <= maxt);
            columns.push(col);
        }
        let n = columns[0].len();
        if columns.iter().any(|c| c.len() != n) {
            return Err(self.corrupt(format!("rollup columns of series {id} differ in length")));
        }
        let mut points = Vec::with_capacity(n);
        for i in 0..n {
            let t = columns[0][i].t;
            if columns.iter().any(|c| c[i].t != t) {
                return Err(self.corrupt(format!(
                    "rollup columns of series {id} disagree on timestamps"
                )));
            }
            points.push(RollupPoint {
                t,
                count: columns[RollupField::Count as usize][i].v as u64,
                sum: columns[RollupField::Sum as usize][i].v,
                min: columns[RollupField::Min as usize][i].v,
                max: columns[RollupField::Max as usize][i].v,
                first: columns[RollupField::First as usize][i].v,
                last: columns[RollupField::Last as usize][i].v,
            });
        }
        Ok(points)
    }
}
