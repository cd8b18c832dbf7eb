//! Rollups: per-bucket min, max, sum, count, first and last of a series' raw samples.
//!
//! A rollup segment stores, for each series, six chunk columns (chunk kinds 1..=6, one per
//! [`RollupField`]) whose timestamps are the bucket starts. The engine writes one rollup file
//! per resolution for each compacted raw block once the block can no longer change (its window
//! is older than the out-of-order window), with the block's seq and window.

use crate::storage::chunking::{encode_chunks, EncodedChunk};
use crate::storage::codec::{Aggregate, CodecError};
use crate::storage::layout::bucket_start;
use crate::storage::model::Sample;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RollupField {
    Min = 0,
    Max = 1,
    Sum = 2,
    Count = 3,
    First = 4,
    Last = 5,
}

impl RollupField {
    pub const ALL: [RollupField; 6] = [
        RollupField::Min,
        RollupField::Max,
        RollupField::Sum,
        RollupField::Count,
        RollupField::First,
        RollupField::Last,
    ];

    /// The chunk kind this column is stored under (0 is raw samples).
    pub fn kind(self) -> u8 {
        self as u8 + 1
    }

    fn value(self, a: &Aggregate) -> f64 {
        match self {
            RollupField::Min => a.min,
            RollupField::Max => a.max,
            RollupField::Sum => a.sum,
            RollupField::Count => a.count as f64,
            RollupField::First => a.first.map_or(f64::NAN, |s| s.v),
            RollupField::Last => a.last.map_or(f64::NAN, |s| s.v),
        }
    }
}

/// Folds sorted samples into `(bucket start, aggregate)` pairs.
pub fn buckets(samples: &[Sample], resolution: i64) -> Vec<(i64, Aggregate)> {
    let mut out: Vec<(i64, Aggregate)> = Vec::new();
    for s in samples {
        let b = bucket_start(s.t, resolution);
        match out.last_mut() {
            Some((cb, agg)) if *cb == b => agg.add(*s),
            _ => {
                let mut agg = Aggregate::new();
                agg.add(*s);
                out.push((b, agg));
            }
        }
    }
    out
}

/// The six chunk columns of one series' rollup.
pub fn rollup_chunks(
    buckets: &[(i64, Aggregate)],
    per_chunk: usize,
) -> Result<Vec<EncodedChunk>, CodecError> {
    let mut out = Vec::new();
    for f in RollupField::ALL {
        let col: Vec<Sample> = buckets
            .iter()
            .map(|(t, a)| Sample::new(*t, f.value(a)))
            .collect();
        encode_chunks(f.kind(), &col, per_chunk, &mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_fold_by_start() {
        let s: Vec<Sample> = [(0, 1.0), (30, 3.0), (60, 5.0), (119, -1.0), (-1, 7.0)]
            .iter()
            .map(|&(t, v)| Sample::new(t, v))
            .collect();
        let mut sorted = s.clone();
        sorted.sort_by_key(|x| x.t);
        let b = buckets(&sorted, 60);
        assert_eq!(b.iter().map(|x| x.0).collect::<Vec<_>>(), vec![-60, 0, 60]);
        assert_eq!(b[1].1.count, 2);
        assert_eq!(b[1].1.sum, 4.0);
        assert_eq!(b[2].1.min, -1.0);
        assert_eq!(b[2].1.last.unwrap().v, -1.0);
    }
}
