//! One series' recent samples in memory.
//!
//! In-order samples (timestamp greater than every timestamp seen so far) go into a streaming
//! Gorilla appender; when it holds `max_chunk_samples` it is sealed as the Gorilla chunk it
//! already is, and later *settled*: re-encoded with the codec's smallest encoding off the write
//! path ([`Head::unsettled_chunks`](super::Head::unsettled_chunks), `Engine::settle_head`), so
//! that an append never waits for the re-encoding. Everything else — samples older than the newest one, and
//! duplicates of an existing timestamp — goes into a sorted out-of-order buffer whose entries
//! override in-order samples at the same timestamp. Every sample in the out-of-order buffer was
//! written after any in-order sample with the same timestamp, so "the buffer wins" is exactly
//! "the last value written wins".

use std::collections::BTreeMap;

use crate::storage::codec::{self, GorillaAppender};
use crate::storage::model::Sample;

use super::HeadError;

/// A sealed, immutable chunk of in-order samples.
#[derive(Clone, Debug)]
pub struct SealedChunk {
    pub mint: i64,
    pub maxt: i64,
    pub count: u32,
    pub bytes: Vec<u8>,
    /// Whether `bytes` has its final encoding. A chunk sealed on the write path holds the
    /// appender's Gorilla bytes until it is settled.
    pub settled: bool,
}

#[derive(Debug)]
pub struct MemSeries {
    sealed: Vec<SealedChunk>,
    open: GorillaAppender,
    /// Out-of-order and duplicate samples; a later insert at the same timestamp replaces the
    /// earlier one.
    ooo: BTreeMap<i64, f64>,
    /// Newest timestamp ever appended (deletions do not lower it), so that every buffered
    /// timestamp is <= it and an in-order sample can never collide with a buffered one.
    max_seen: i64,
}

impl Default for MemSeries {
    fn default() -> Self {
        MemSeries {
            sealed: Vec::new(),
            open: GorillaAppender::new(),
            ooo: BTreeMap::new(),
            max_seen: i64::MIN,
        }
    }
}

impl MemSeries {
    /// Appends one sample; returns whether it sealed a chunk (which then waits to be settled).
    pub fn append(&mut self, s: Sample, max_chunk_samples: usize) -> Result<bool, HeadError> {
        if s.t > self.max_seen {
            self.open.append(s.t, s.v)?;
            self.max_seen = s.t;
            if self.open.len() >= max_chunk_samples {
                self.seal()?;
                return Ok(true);
            }
        } else {
            self.ooo.insert(s.t, s.v);
        }
        Ok(false)
    }

    /// Moves the open appender's samples into a sealed chunk, as the Gorilla bytes the
    /// appender holds: a copy, no re-encoding.
    fn seal(&mut self) -> Result<(), HeadError> {
        let (Some(mint), Some(maxt)) = (self.open.mint(), self.open.maxt()) else {
            return Ok(());
        };
        let open = std::mem::take(&mut self.open);
        self.sealed.push(SealedChunk {
            mint,
            maxt,
            count: open.len() as u32,
            bytes: open.to_chunk()?,
            settled: false,
        });
        Ok(())
    }

    /// Indices of the sealed chunks that still hold their Gorilla bytes.
    pub fn unsettled(&self) -> impl Iterator<Item = (usize, &SealedChunk)> + '_ {
        self.sealed.iter().enumerate().filter(|(_, c)| !c.settled)
    }

    /// Replaces sealed chunk `index` by `bytes` (or, with `None`, keeps its bytes) and marks it
    /// settled, if it still holds exactly `old`: a delete may have rebuilt the chunks since
    /// `old` was read. Returns whether it did.
    pub fn settle(&mut self, index: usize, old: &[u8], bytes: Option<Vec<u8>>) -> bool {
        match self.sealed.get_mut(index) {
            Some(c) if !c.settled && c.bytes == old => {
                if let Some(bytes) = bytes {
                    c.bytes = bytes;
                }
                c.settled = true;
                true
            }
            _ => false,
        }
    }

    fn open_overlaps(&self, mint: i64, maxt: i64) -> bool {
        matches!((self.open.mint(), self.open.maxt()), (Some(a), Some(b)) if a <= maxt && b >= mint)
    }

    pub fn is_empty(&self) -> bool {
        self.sealed.is_empty() && self.open.is_empty() && self.ooo.is_empty()
    }

    pub fn len(&self) -> usize {
        self.sealed.iter().map(|c| c.count as usize).sum::<usize>()
            + self.open.len()
            + self.ooo.len()
    }

    /// Smallest and largest timestamp held, if any.
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let mut lo = i64::MAX;
        let mut hi = i64::MIN;
        if let Some(c) = self.sealed.first() {
            lo = lo.min(c.mint);
        } else if let Some(t) = self.open.mint() {
            lo = lo.min(t);
        }
        if let Some(t) = self.open.maxt() {
            hi = hi.max(t);
        } else if let Some(c) = self.sealed.last() {
            hi = hi.max(c.maxt);
        }
        if let Some((&t, _)) = self.ooo.first_key_value() {
            lo = lo.min(t);
        }
        if let Some((&t, _)) = self.ooo.last_key_value() {
            hi = hi.max(t);
        }
        (lo <= hi).then_some((lo, hi))
    }

    /// Appends the samples with `mint <= t <= maxt` in time order, out-of-order entries
    /// overriding in-order ones at the same timestamp.
    pub fn samples_in(&self, mint: i64, maxt: i64, out: &mut Vec<Sample>) -> Result<(), HeadError> {
        let start = out.len();
        let mut buf = Vec::new();
        for c in &self.sealed {
            if c.maxt < mint || c.mint > maxt {
                continue;
            }
            buf.clear();
            codec::decode_chunk(&c.bytes, &mut buf)?;
            out.extend(buf.iter().filter(|s| s.t >= mint && s.t <= maxt));
        }
        if self.open_overlaps(mint, maxt) {
            buf.clear();
            self.open.decode(&mut buf)?;
            out.extend(buf.iter().filter(|s| s.t >= mint && s.t <= maxt));
        }
        if self.ooo.range(mint..=maxt).next().is_none() {
            return Ok(());
        }
        let in_order = out.split_off(start);
        merge_override(
            &in_order,
            self.ooo
                .range(mint..=maxt)
                .map(|(&t, &v)| Sample::new(t, v)),
            out,
        );
        Ok(())
    }

    /// Removes every sample with `mint <= t <= maxt`. Rebuilds the in-order chunks, so it is
    /// O(samples of this series); deletions are rare.
    pub fn delete_range(
        &mut self,
        mint: i64,
        maxt: i64,
        max_chunk_samples: usize,
    ) -> Result<(), HeadError> {
        let keys: Vec<i64> = self.ooo.range(mint..=maxt).map(|(&t, _)| t).collect();
        for t in keys {
            self.ooo.remove(&t);
        }
        let touches_in_order = self.sealed.iter().any(|c| c.mint <= maxt && c.maxt >= mint)
            || self.open_overlaps(mint, maxt);
        if !touches_in_order {
            return Ok(());
        }
        let mut all = Vec::new();
        let mut buf = Vec::new();
        for c in &self.sealed {
            buf.clear();
            codec::decode_chunk(&c.bytes, &mut buf)?;
            all.extend_from_slice(&buf);
        }
        buf.clear();
        self.open.decode(&mut buf)?;
        all.extend_from_slice(&buf);
        let ooo = std::mem::take(&mut self.ooo);
        let max_seen = self.max_seen;
        *self = MemSeries::default();
        for s in all.into_iter().filter(|s| s.t < mint || s.t > maxt) {
            // The rebuilt chunks are unsettled; `Head::delete` queues the series.
            self.append(s, max_chunk_samples)?;
        }
        self.max_seen = max_seen;
        self.ooo = ooo;
        Ok(())
    }

    /// The series' data as sorted, deduplicated samples (for cutting into a segment).
    pub fn all_samples(&self) -> Result<Vec<Sample>, HeadError> {
        let mut out = Vec::with_capacity(self.len());
        self.samples_in(i64::MIN, i64::MAX, &mut out)?;
        Ok(out)
    }

    /// Approximate heap bytes held, for the head-memory figure.
    pub fn heap_bytes(&self) -> usize {
        self.sealed
            .iter()
            .map(|c| c.bytes.capacity() + std::mem::size_of::<SealedChunk>())
            .sum::<usize>()
            + self.open.encoded_size()
            + self.ooo.len() * 40
    }
}

/// Merges two time-ordered sample streams; on equal timestamps the `newer` one wins.
pub fn merge_override(
    older: &[Sample],
    newer: impl Iterator<Item = Sample>,
    out: &mut Vec<Sample>,
) {
    let mut i = 0;
    for n in newer {
        while i < older.len() && older[i].t < n.t {
            out.push(older[i]);
            i += 1;
        }
        if i < older.len() && older[i].t == n.t {
            i += 1;
        }
        out.push(n);
    }
    out.extend_from_slice(&older[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(s: &MemSeries) -> Vec<(i64, f64)> {
        s.all_samples()
            .unwrap()
            .iter()
            .map(|s| (s.t, s.v))
            .collect()
    }

    #[test]
    fn out_of_order_and_duplicates_last_write_wins() {
        let mut s = MemSeries::default();
        for (t, v) in [
            (10, 1.0),
            (20, 2.0),
            (30, 3.0),
            (15, 1.5),
            (20, 2.5),
            (20, 2.7),
            (40, 4.0),
        ] {
            s.append(Sample::new(t, v), 2).unwrap();
        }
        assert_eq!(
            collect(&s),
            vec![(10, 1.0), (15, 1.5), (20, 2.7), (30, 3.0), (40, 4.0)]
        );
        let mut part = Vec::new();
        s.samples_in(15, 30, &mut part).unwrap();
        assert_eq!(part.len(), 3);
    }

    #[test]
    fn delete_range_removes_in_order_and_buffered_samples() {
        let mut s = MemSeries::default();
        for t in 0..10 {
            s.append(Sample::new(t * 10, t as f64), 3).unwrap();
        }
        s.append(Sample::new(35, 9.9), 3).unwrap();
        s.delete_range(30, 60, 3).unwrap();
        assert_eq!(
            collect(&s).iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![0, 10, 20, 70, 80, 90]
        );
        // After deletion a write below the newest timestamp is still out of order and wins.
        s.append(Sample::new(80, 1.0), 3).unwrap();
        assert_eq!(collect(&s)[4], (80, 1.0));
    }
}
