//! The head: every series' samples since the last checkpoint, compressed in memory.
//!
//! The engine keeps one live head that takes appends and, while a checkpoint writes it to
//! disk, the previous head frozen (read-only, behind an `Arc`) so that queries still see it.

mod series;

use std::collections::HashMap;

pub use series::{merge_override, MemSeries, SealedChunk};

use crate::storage::catalog::BuildIdHasher;
use crate::storage::codec::CodecError;
use crate::storage::model::{Sample, SeriesId};

#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("head chunk encoding failed: {0}")]
    Codec(#[from] CodecError),
}

#[derive(Debug, Default)]
pub struct Head {
    // Looked up once per series per append: SipHash here cost about 5 % of the CPU of a
    // line-protocol ingest in one-point-per-series requests.
    series: HashMap<SeriesId, MemSeries, BuildIdHasher>,
    samples: u64,
    mint: i64,
    maxt: i64,
}

impl Head {
    pub fn new() -> Self {
        Head {
            series: HashMap::default(),
            samples: 0,
            mint: i64::MAX,
            maxt: i64::MIN,
        }
    }

    pub fn append(
        &mut self,
        id: SeriesId,
        s: Sample,
        max_chunk_samples: usize,
    ) -> Result<(), HeadError> {
        self.series
            .entry(id)
            .or_default()
            .append(s, max_chunk_samples)?;
        self.samples += 1;
        self.mint = self.mint.min(s.t);
        self.maxt = self.maxt.max(s.t);
        Ok(())
    }

    /// Appends `samples` in order to one series: [`append`](Self::append) with one map
    /// lookup for the whole run.
    pub fn append_run(
        &mut self,
        id: SeriesId,
        samples: &[Sample],
        max_chunk_samples: usize,
    ) -> Result<(), HeadError> {
        let series = self.series.entry(id).or_default();
        for &s in samples {
            series.append(s, max_chunk_samples)?;
            self.samples += 1;
            self.mint = self.mint.min(s.t);
            self.maxt = self.maxt.max(s.t);
        }
        Ok(())
    }

    pub fn series(&self, id: SeriesId) -> Option<&MemSeries> {
        self.series.get(&id)
    }

    pub fn series_mut(&mut self, id: SeriesId) -> Option<&mut MemSeries> {
        self.series.get_mut(&id)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&SeriesId, &MemSeries)> {
        self.series.iter()
    }

    pub fn num_series(&self) -> usize {
        self.series.len()
    }

    /// Samples appended since the head was created (duplicates included): the checkpoint
    /// trigger and the status page use it.
    pub fn appended_samples(&self) -> u64 {
        self.samples
    }

    pub fn is_empty(&self) -> bool {
        self.series.values().all(|s| s.is_empty())
    }

    /// Bounds of every timestamp ever appended (`None` when nothing was).
    pub fn time_range(&self) -> Option<(i64, i64)> {
        (self.mint <= self.maxt).then_some((self.mint, self.maxt))
    }

    pub fn heap_bytes(&self) -> usize {
        self.series
            .values()
            .map(|s| s.heap_bytes() + std::mem::size_of::<(SeriesId, MemSeries)>())
            .sum()
    }

    /// Deletes `[mint, maxt]` from the given series.
    pub fn delete(
        &mut self,
        ids: &[SeriesId],
        mint: i64,
        maxt: i64,
        max_chunk_samples: usize,
    ) -> Result<(), HeadError> {
        for id in ids {
            if let Some(s) = self.series.get_mut(id) {
                s.delete_range(mint, maxt, max_chunk_samples)?;
            }
        }
        Ok(())
    }
}
