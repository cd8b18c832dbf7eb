//! Reading: selected series merged over every source, newest version of a timestamp winning.
//!
//! A query first takes a [`Snapshot`] under the engine's read lock — the selected series with
//! their labels, the live head's samples for them, and `Arc`s of the frozen head and the
//! segments that overlap the range — and then reads segments without holding any lock.
//! Sources are visited in ascending `seq`; a later source's sample replaces an earlier one at
//! the same timestamp ("last write wins", see `head::series`). Tombstones hide data in sources
//! older than the deletion.

use std::sync::Arc;

use crate::storage::codec::{self, Aggregate};
use crate::storage::downsample::buckets;
use crate::storage::engine::{FrozenHead, SegmentHandle};
use crate::storage::head::merge_override;
use crate::storage::layout::{bucket_start, SegmentKind};
use crate::storage::model::{Labels, Sample, SeriesId};
use crate::storage::tombstones::{deleted_ranges, is_deleted, Tombstone};
use crate::storage::StorageError;

/// One selected series with its merged samples in time order.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub id: SeriesId,
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

/// One series' aggregate over a window.
#[derive(Clone, Debug)]
pub struct SeriesAggregate {
    pub id: SeriesId,
    pub labels: Labels,
    pub aggregate: Aggregate,
}

/// One bucket of a downsampled series: the aggregate of the raw samples with
/// `t <= sample.t < t + resolution`. `first`/`last` keep values only.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RollupPoint {
    pub t: i64,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub first: f64,
    pub last: f64,
}

impl RollupPoint {
    pub fn from_aggregate(t: i64, a: &Aggregate) -> Option<Self> {
        Some(RollupPoint {
            t,
            count: a.count,
            sum: a.sum,
            min: a.min,
            max: a.max,
            first: a.first?.v,
            last: a.last?.v,
        })
    }

    /// Bitwise comparison, so that NaN rollups compare equal in tests.
    pub fn same_bits(&self, o: &RollupPoint) -> bool {
        self.t == o.t
            && self.count == o.count
            && [self.sum, self.min, self.max, self.first, self.last]
                .iter()
                .zip([o.sum, o.min, o.max, o.first, o.last])
                .all(|(a, b)| a.to_bits() == b.to_bits())
    }
}

#[derive(Clone, Debug)]
pub struct RollupSeries {
    pub id: SeriesId,
    pub labels: Labels,
    pub points: Vec<RollupPoint>,
}

pub(crate) enum Source {
    Segment(Arc<SegmentHandle>),
    Frozen(Arc<FrozenHead>),
}

impl Source {
    pub(crate) fn seq(&self) -> u64 {
        match self {
            Source::Segment(h) => h.name.seq,
            Source::Frozen(f) => f.seq,
        }
    }

    /// The source's samples of one series in `[mint, maxt]`, sorted and unique.
    fn samples(
        &self,
        id: SeriesId,
        mint: i64,
        maxt: i64,
        out: &mut Vec<Sample>,
    ) -> Result<(), StorageError> {
        match self {
            Source::Segment(h) => h.raw_samples(id, mint, maxt, out),
            Source::Frozen(f) => match f.head.series(id) {
                Some(s) => Ok(s.samples_in(mint, maxt, out)?),
                None => Ok(()),
            },
        }
    }
}

pub(crate) struct SelectedSeries {
    pub id: SeriesId,
    pub labels: Labels,
    /// The live head's samples in the query range.
    pub head: Vec<Sample>,
}

/// Everything a query needs, taken under the read lock.
pub(crate) struct Snapshot {
    pub series: Vec<SelectedSeries>,
    /// Raw sources overlapping the range, ascending by seq.
    pub sources: Vec<Source>,
    /// Rollup segments of the requested resolution (rollup queries only).
    pub rollups: Vec<Arc<SegmentHandle>>,
    /// Time ranges of newer raw data that invalidates rollups: (seq, start, end).
    pub raw_extents: Vec<(u64, i64, i64)>,
    pub tombstones: Vec<Tombstone>,
    pub mint: i64,
    pub maxt: i64,
}

impl Snapshot {
    fn deleted_ranges(&self, labels: &Labels, seq: u64) -> Vec<(i64, i64)> {
        deleted_ranges(&self.tombstones, labels, seq)
    }

    /// Merged samples of one selected series over `[mint, maxt]`.
    pub fn merged(
        &self,
        s: &SelectedSeries,
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<Sample>, StorageError> {
        self.merged_where(s, mint, maxt, |_| true)
    }

    /// Like [`Snapshot::merged`], keeping only timestamps `keep` accepts. Filtering each
    /// source before the merge gives the same answer as filtering after it, because which
    /// version of a timestamp wins depends on that timestamp alone.
    fn merged_where(
        &self,
        s: &SelectedSeries,
        mint: i64,
        maxt: i64,
        keep: impl Fn(i64) -> bool,
    ) -> Result<Vec<Sample>, StorageError> {
        let mut acc: Vec<Sample> = Vec::new();
        for src in &self.sources {
            // Each source decodes straight onto the end of what the earlier ones gave: sources
            // mostly follow one another in time (a day's block, then the next), and then the
            // samples are merged as they stand, without a copy.
            let start = acc.len();
            src.samples(s.id, mint, maxt, &mut acc)?;
            retain_from(&mut acc, start, &keep);
            if acc.len() == start {
                continue;
            }
            let deleted = self.deleted_ranges(&s.labels, src.seq());
            if !deleted.is_empty() {
                retain_from(&mut acc, start, |t| !is_deleted(&deleted, t));
            }
            let overlaps = start > 0
                && acc
                    .get(start)
                    .zip(acc.get(start - 1))
                    .is_some_and(|(first, last)| first.t <= last.t);
            if overlaps {
                let newer = acc.split_off(start);
                acc = merge_newer(acc, &newer);
            }
        }
        let head: Vec<Sample> = s
            .head
            .iter()
            .copied()
            .filter(|x| x.t >= mint && x.t <= maxt && keep(x.t))
            .collect();
        Ok(merge_newer(acc, &head))
    }

    pub fn select(&self) -> Result<Vec<Series>, StorageError> {
        self.select_where(|_| true)
    }

    /// The selected series' samples whose timestamps `keep` accepts; series left without
    /// samples are omitted.
    pub fn select_where(&self, keep: impl Fn(i64) -> bool) -> Result<Vec<Series>, StorageError> {
        let mut out = Vec::with_capacity(self.series.len());
        for s in &self.series {
            let samples = self.merged_where(s, self.mint, self.maxt, &keep)?;
            if !samples.is_empty() {
                out.push(Series {
                    id: s.id,
                    labels: s.labels.clone(),
                    samples,
                });
            }
        }
        Ok(out)
    }

    /// Aggregates `[mint, maxt]` per series. When a series' pieces (chunks of different
    /// sources, head samples) do not overlap in time and no tombstone applies, every chunk is
    /// folded while it is decoded, without materialising samples; otherwise the merged samples
    /// are folded.
    pub fn aggregate(&self) -> Result<Vec<SeriesAggregate>, StorageError> {
        let (mint, maxt) = (self.mint, self.maxt);
        let mut out = Vec::with_capacity(self.series.len());
        for s in &self.series {
            let mut agg = Aggregate::new();
            if !self.aggregate_fast(s, &mut agg)? {
                agg = Aggregate::new();
                for x in self.merged(s, mint, maxt)? {
                    agg.add(x);
                }
            }
            if agg.count > 0 {
                out.push(SeriesAggregate {
                    id: s.id,
                    labels: s.labels.clone(),
                    aggregate: agg,
                });
            }
        }
        Ok(out)
    }

    fn aggregate_fast(
        &self,
        s: &SelectedSeries,
        agg: &mut Aggregate,
    ) -> Result<bool, StorageError> {
        enum Piece<'a> {
            Chunk(&'a SegmentHandle, crate::storage::segment::ChunkEntry),
            Samples(std::borrow::Cow<'a, [Sample]>),
        }
        let (mint, maxt) = (self.mint, self.maxt);
        let mut pieces: Vec<(i64, i64, Piece)> = Vec::new();
        for src in &self.sources {
            if !self.deleted_ranges(&s.labels, src.seq()).is_empty() {
                return Ok(false);
            }
            match src {
                Source::Segment(h) => {
                    for e in h.raw_chunks(s.id, mint, maxt)? {
                        pieces.push((e.mint, e.maxt, Piece::Chunk(h, e)));
                    }
                }
                Source::Frozen(f) => {
                    if let Some(ms) = f.head.series(s.id) {
                        let mut v = Vec::new();
                        ms.samples_in(mint, maxt, &mut v)?;
                        if let (Some(a), Some(b)) = (v.first(), v.last()) {
                            let (a, b) = (a.t, b.t);
                            pieces.push((a, b, Piece::Samples(v.into())));
                        }
                    }
                }
            }
        }
        if let (Some(a), Some(b)) = (s.head.first(), s.head.last()) {
            pieces.push((a.t, b.t, Piece::Samples(s.head.as_slice().into())));
        }
        pieces.sort_by_key(|p| p.0);
        if pieces.windows(2).any(|w| w[1].0 <= w[0].1) {
            return Ok(false);
        }
        let t1 = maxt.saturating_add(1);
        for (_, _, p) in pieces {
            match p {
                Piece::Chunk(h, e) => {
                    let bytes = h.chunk_bytes(&e)?;
                    if maxt == i64::MAX {
                        // [t0, t1) cannot express an inclusive i64::MAX; fold the rest by hand.
                        let mut v = Vec::new();
                        codec::decode_chunk(bytes, &mut v).map_err(|e| h.corrupt(e.to_string()))?;
                        v.iter().filter(|x| x.t >= mint).for_each(|x| agg.add(*x));
                    } else {
                        codec::aggregate_chunk(bytes, mint, t1, agg)
                            .map_err(|e| h.corrupt(e.to_string()))?;
                    }
                }
                Piece::Samples(v) => v
                    .iter()
                    .filter(|x| x.t >= mint && x.t <= maxt)
                    .for_each(|x| agg.add(*x)),
            }
        }
        Ok(true)
    }

    /// Downsampled series at `resolution`: buckets whose start lies in `[mint, maxt]`. Valid
    /// rollup files answer for their windows; everything else is computed from raw data, so
    /// the answer equals folding the raw samples bucket by bucket.
    pub fn select_rollup(&self, resolution: i64) -> Result<Vec<RollupSeries>, StorageError> {
        let (mint, maxt) = (self.mint, self.maxt);
        let valid: Vec<&Arc<SegmentHandle>> = self
            .rollups
            .iter()
            .filter(|r| rollup_valid(r, &self.rollups, &self.raw_extents))
            .collect();
        let in_valid = |b: i64| valid.iter().any(|r| b >= r.name.start && b <= r.name.end);
        let raw_min = bucket_start(mint, resolution);
        let raw_max = bucket_start(maxt, resolution).saturating_add(resolution - 1);
        let mut out = Vec::with_capacity(self.series.len());
        for s in &self.series {
            let mut points: Vec<RollupPoint> = Vec::new();
            // Windows where this series' rollup is stale because of a later deletion.
            let mut redo: Vec<(i64, i64)> = Vec::new();
            for r in &valid {
                let deleted = self.deleted_ranges(&s.labels, r.name.seq);
                let mut pts = r.rollup_points(s.id, mint, maxt)?;
                if !deleted.is_empty() {
                    pts.retain(|p| {
                        !deleted
                            .iter()
                            .any(|&(a, b)| a <= p.t.saturating_add(resolution - 1) && b >= p.t)
                    });
                    redo.push((r.name.start, r.name.end));
                }
                points.extend(pts);
            }
            // Raw data is read only outside the windows that valid rollups answer; the filter
            // below still decides bucket by bucket, so the gaps only need to be wide enough.
            let skip: Vec<(i64, i64)> = valid
                .iter()
                .map(|r| (r.name.start, r.name.end))
                .filter(|&(a, e)| !redo.iter().any(|&(ra, re)| ra <= e && re >= a))
                .filter_map(|(a, e)| surely_covered(a, e, resolution))
                .collect();
            let mut merged = Vec::new();
            for (lo, hi) in gaps(raw_min, raw_max, skip) {
                merged.extend(self.merged(s, lo, hi)?);
            }
            let raw: Vec<Sample> = merged
                .into_iter()
                .filter(|x| {
                    let b = bucket_start(x.t, resolution);
                    let covered = in_valid(b) && !redo.iter().any(|&(a, e)| b >= a && b <= e);
                    b >= mint && b <= maxt && !covered
                })
                .collect();
            let computed: Vec<RollupPoint> = buckets(&raw, resolution)
                .iter()
                .filter_map(|(b, a)| RollupPoint::from_aggregate(*b, a))
                .collect();
            // Raw answers replace stale rollup buckets.
            points.retain(|p| computed.binary_search_by_key(&p.t, |c| c.t).is_err());
            points.extend(computed);
            points.sort_by_key(|p| p.t);
            if !points.is_empty() {
                out.push(RollupSeries {
                    id: s.id,
                    labels: s.labels.clone(),
                    points,
                });
            }
        }
        Ok(out)
    }
}

/// The samples whose buckets surely start inside the rollup window `[start, end]`: from the
/// first bucket edge at or after `start` to the end of the bucket that starts at or before
/// `end`.
fn surely_covered(start: i64, end: i64, resolution: i64) -> Option<(i64, i64)> {
    let first = bucket_start(start, resolution);
    let first = if first < start {
        first.checked_add(resolution)?
    } else {
        first
    };
    let last = bucket_start(end, resolution).checked_add(resolution - 1)?;
    (first <= last).then_some((first, last))
}

/// `[lo, hi]` without the `skip` intervals, as sorted disjoint inclusive ranges.
fn gaps(lo: i64, hi: i64, mut skip: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    skip.sort_unstable();
    let mut out = Vec::new();
    let mut cur = lo;
    for (a, b) in skip {
        if cur > hi {
            break;
        }
        if b < cur {
            continue;
        }
        if a > cur {
            out.push((cur, (a - 1).min(hi)));
        }
        match b.checked_add(1) {
            Some(n) => cur = cur.max(n),
            None => return out,
        }
    }
    if cur <= hi {
        out.push((cur, hi));
    }
    out
}

/// Whether rollup segment `r` answers for its window: no raw data written after it (a later
/// segment, the head; `raw_extents` holds each as `(seq, start, end)`) overlaps the window, and
/// no other rollup of `rollups` supersedes it.
pub(crate) fn rollup_valid<'a>(
    r: &SegmentHandle,
    rollups: impl IntoIterator<Item = &'a Arc<SegmentHandle>>,
    raw_extents: &[(u64, i64, i64)],
) -> bool {
    let n = &r.name;
    let newer_raw = raw_extents
        .iter()
        .any(|&(seq, a, b)| seq > n.seq && a <= n.end && b >= n.start);
    !newer_raw && !rollups.into_iter().any(|o| o.name.supersedes(n))
}

/// Keeps the samples of `v[start..]` whose timestamps `keep` accepts, in order.
fn retain_from(v: &mut Vec<Sample>, start: usize, keep: impl Fn(i64) -> bool) {
    // Mostly every sample is kept: find the first that is not before moving any.
    let Some(first) = v
        .get(start..)
        .and_then(|tail| tail.iter().position(|x| !keep(x.t)))
    else {
        return;
    };
    let mut w = start + first;
    for r in w + 1..v.len() {
        if keep(v[r].t) {
            v[w] = v[r];
            w += 1;
        }
    }
    v.truncate(w);
}

/// `older` merged with `newer`, `newer` winning on equal timestamps.
pub(crate) fn merge_newer(older: Vec<Sample>, newer: &[Sample]) -> Vec<Sample> {
    if newer.is_empty() {
        return older;
    }
    if older.is_empty() {
        return newer.to_vec();
    }
    // Usually the newer source (the head, a later segment) overlaps only the end of the older
    // one, if at all: keep the untouched prefix in place and merge just the overlapping tail.
    let first = newer.first().map_or(i64::MAX, |s| s.t);
    let keep = older.partition_point(|s| s.t < first);
    let mut out = older;
    let tail = out.split_off(keep);
    out.reserve(tail.len() + newer.len());
    merge_override(&tail, newer.iter().copied(), &mut out);
    out
}

/// Whether a segment can hold raw data for a query.
pub(crate) fn is_raw(h: &SegmentHandle) -> bool {
    matches!(h.name.kind, SegmentKind::Raw { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_leave_out_covered_ranges() {
        assert_eq!(gaps(0, 100, vec![]), vec![(0, 100)]);
        assert_eq!(
            gaps(0, 100, vec![(50, 60), (10, 20)]),
            vec![(0, 9), (21, 49), (61, 100)]
        );
        assert_eq!(gaps(0, 100, vec![(-5, 200)]), vec![]);
        assert_eq!(
            gaps(0, 100, vec![(0, 10), (5, 30), (90, i64::MAX)]),
            vec![(31, 89)]
        );
        assert_eq!(surely_covered(0, 3_599, 60), Some((0, 3_599)));
        assert_eq!(surely_covered(30, 3_599, 60), Some((60, 3_599)));
        assert_eq!(surely_covered(30, 59, 60), None);
    }

    proptest::proptest! {
        /// Filtering a tail in place equals `retain` on it, the head left alone.
        #[test]
        fn retain_from_filters_only_the_tail(
            ts in proptest::collection::vec(0i64..100, 0..60),
            start in 0usize..70,
            modulus in 1i64..5,
        ) {
            let mut got: Vec<Sample> = ts.iter().map(|&t| Sample::new(t, 1.0)).collect();
            let start = start.min(got.len());
            let mut want = got.clone();
            let mut tail = want.split_off(start);
            tail.retain(|x| x.t % modulus != 0);
            want.extend(tail);
            retain_from(&mut got, start, |t| t % modulus != 0);
            proptest::prop_assert_eq!(got, want);
        }

        /// Keeping the older prefix in place gives the plain merge's answer.
        #[test]
        fn merge_newer_equals_the_plain_merge(
            older in proptest::collection::btree_set(0i64..200, 0..60),
            newer in proptest::collection::btree_set(0i64..200, 0..30),
        ) {
            let older: Vec<Sample> = older.into_iter().map(|t| Sample::new(t, 1.0)).collect();
            let newer: Vec<Sample> = newer.into_iter().map(|t| Sample::new(t, 2.0)).collect();
            let mut want = Vec::new();
            merge_override(&older, newer.iter().copied(), &mut want);
            proptest::prop_assert_eq!(merge_newer(older, &newer), want);
        }
    }
}
