//! The head: every series' samples since the last checkpoint, compressed in memory.
//!
//! The engine keeps one live head that takes appends and, while a checkpoint writes it to
//! disk, the previous head frozen (read-only, behind an `Arc`) so that queries still see it.

mod series;

use std::collections::{HashMap, VecDeque};

pub use series::{merge_override, MemSeries, SealedChunk};

use crate::storage::catalog::BuildIdHasher;
use crate::storage::codec::{self, CodecError};
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
    /// Series that sealed a chunk since they were last settled, in sealing order. An id may be
    /// listed more than once, or after its chunks were settled already; taking it then costs
    /// a look and nothing else.
    unsettled: VecDeque<SeriesId>,
    samples: u64,
    mint: i64,
    maxt: i64,
}

/// A copy of a sealed chunk that still holds its Gorilla bytes, to be re-encoded without the
/// engine's lock and put back with [`Head::settle`].
#[derive(Debug)]
pub struct UnsettledChunk {
    pub id: SeriesId,
    pub index: usize,
    pub bytes: Vec<u8>,
}

impl UnsettledChunk {
    /// The chunk's final encoding: `Some(None)` when its Gorilla bytes stay, `Some(Some(..))`
    /// new bytes, `None` when it does not decode — an engine bug, logged; the chunk is left as
    /// it is and queries report the same failure.
    pub fn recode(&self) -> Option<Option<Vec<u8>>> {
        match codec::settle_gorilla_chunk(&self.bytes) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                tracing::error!(series = self.id, error = %e, "head chunk failed to decode while settling");
                None
            }
        }
    }
}

impl Head {
    pub fn new() -> Self {
        Head {
            series: HashMap::default(),
            unsettled: VecDeque::new(),
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
        if self
            .series
            .entry(id)
            .or_default()
            .append(s, max_chunk_samples)?
        {
            self.unsettled.push_back(id);
        }
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
        let mut sealed = false;
        for &s in samples {
            sealed |= series.append(s, max_chunk_samples)?;
            self.samples += 1;
            self.mint = self.mint.min(s.t);
            self.maxt = self.maxt.max(s.t);
        }
        if sealed {
            self.unsettled.push_back(id);
        }
        Ok(())
    }

    /// Copies of up to about `max` unsettled chunks (whole series at a time), oldest sealed
    /// first, for re-encoding outside the engine's lock.
    pub fn unsettled_chunks(&mut self, max: usize) -> Vec<UnsettledChunk> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(id) = self.unsettled.pop_front() else {
                break;
            };
            if let Some(series) = self.series.get(&id) {
                out.extend(series.unsettled().map(|(index, c)| UnsettledChunk {
                    id,
                    index,
                    bytes: c.bytes.clone(),
                }));
            }
        }
        out
    }

    /// Puts back a chunk taken by [`unsettled_chunks`](Self::unsettled_chunks): `bytes` is
    /// its new encoding, `None` if the Gorilla bytes stay. Ignored (returns false) when the
    /// chunk changed in the meantime.
    pub fn settle(&mut self, chunk: &UnsettledChunk, bytes: Option<Vec<u8>>) -> bool {
        self.series
            .get_mut(&chunk.id)
            .is_some_and(|s| s.settle(chunk.index, &chunk.bytes, bytes))
    }

    /// Number of series queued for settling (with repeats).
    pub fn unsettled_series(&self) -> usize {
        self.unsettled.len()
    }

    /// Settles every queued chunk in place, for a head nobody else can see yet (WAL replay):
    /// no lock to spare, and memory stays what settled chunks take. Returns how many.
    pub fn settle_queued(&mut self) -> usize {
        let work = self.unsettled_chunks(usize::MAX);
        work.iter()
            .filter(|chunk| {
                chunk
                    .recode()
                    .is_some_and(|bytes| self.settle(chunk, bytes))
            })
            .count()
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
                if s.unsettled().next().is_some() {
                    self.unsettled.push_back(*id);
                }
            }
        }
        Ok(())
    }
}
