//! Running aggregate of a range of samples, folded while chunks are decoded.

use crate::storage::model::Sample;

/// Count, sum, min, max, first and last of a set of samples.
///
/// - `sum` adds values in time order with plain `f64` addition, starting from `0.0`, so the
///   same samples always give the same bits (no compensated summation, no reordering).
/// - `min`/`max` follow Prometheus' `min_over_time`/`max_over_time`: a NaN is replaced by any
///   later non-NaN value, NaNs never replace a number, so the result is NaN only if every
///   value is NaN (or there are none). Among equal values (0.0 and -0.0) the earliest wins.
/// - `first`/`last` are the earliest and latest samples added.
///
/// An empty aggregate has `count == 0`, `sum == 0.0`, NaN `min`/`max` and no first/last.
#[derive(Debug, Clone, Copy)]
pub struct Aggregate {
    /// Number of samples.
    pub count: u64,
    /// Sum of the values, in time order.
    pub sum: f64,
    /// Smallest value (see the type's docs for NaN).
    pub min: f64,
    /// Largest value (see the type's docs for NaN).
    pub max: f64,
    /// Earliest sample.
    pub first: Option<Sample>,
    /// Latest sample.
    pub last: Option<Sample>,
}

impl Default for Aggregate {
    fn default() -> Self {
        Self::new()
    }
}

impl Aggregate {
    /// The aggregate of no samples.
    pub const fn new() -> Self {
        Aggregate {
            count: 0,
            sum: 0.0,
            min: f64::NAN,
            max: f64::NAN,
            first: None,
            last: None,
        }
    }

    /// Adds one sample, which must be later than every sample added so far.
    #[inline]
    pub fn add(&mut self, s: Sample) {
        self.count += 1;
        self.sum += s.v;
        if s.v < self.min || self.min.is_nan() {
            self.min = s.v;
        }
        if s.v > self.max || self.max.is_nan() {
            self.max = s.v;
        }
        if self.first.is_none() {
            self.first = Some(s);
        }
        self.last = Some(s);
    }

    /// Combines with the aggregate of samples that all come AFTER the ones in `self` (for
    /// example the next chunk): `first` stays, `last` is taken from `other` when it has one.
    ///
    /// `count`, `min`, `max`, `first` and `last` equal those of adding all samples one by one.
    /// `sum` adds `other.sum` as one number, which can differ in the last bits from adding the
    /// samples one by one; it is reproducible as long as the same partitioning is merged.
    pub fn merge(&mut self, other: &Aggregate) {
        if other.count == 0 {
            return;
        }
        self.count += other.count;
        self.sum += other.sum;
        if other.min < self.min || self.min.is_nan() {
            self.min = other.min;
        }
        if other.max > self.max || self.max.is_nan() {
            self.max = other.max;
        }
        if self.first.is_none() {
            self.first = other.first;
        }
        if other.last.is_some() {
            self.last = other.last;
        }
    }

    /// Adds a run of samples given as parallel slices; bitwise the same as calling
    /// [`Aggregate::add`] for each, but without building samples.
    #[inline]
    pub(crate) fn fold(&mut self, ts: &[i64], vs: &[f64]) {
        let len = ts.len().min(vs.len());
        let (ts, vs) = (&ts[..len], &vs[..len]);
        let (Some(&t_first), Some(&t_last)) = (ts.first(), ts.last()) else {
            return;
        };
        if self.first.is_none() {
            self.first = Some(Sample::new(t_first, vs[0]));
        }
        self.last = Some(Sample::new(t_last, vs[len - 1]));
        self.count += len as u64;
        let (mut sum, mut min, mut max) = (self.sum, self.min, self.max);
        let mut rest = vs;
        // Only a NaN min/max can be replaced by a NaN; once both hold a number they never hold
        // NaN again, and the loop below needs no NaN test (`v < min` is false for a NaN v).
        while (min.is_nan() || max.is_nan()) && !rest.is_empty() {
            let v = rest[0];
            rest = &rest[1..];
            sum += v;
            if v < min || min.is_nan() {
                min = v;
            }
            if v > max || max.is_nan() {
                max = v;
            }
        }
        for &v in rest {
            sum += v;
            min = if v < min { v } else { min };
            max = if v > max { v } else { max };
        }
        self.sum = sum;
        self.min = min;
        self.max = max;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_is_replaced_by_later_numbers_only() {
        let mut a = Aggregate::new();
        for v in [f64::NAN, 3.0, f64::NAN, 1.0, 5.0] {
            a.add(Sample::new(0, v));
        }
        assert_eq!((a.min, a.max, a.count), (1.0, 5.0, 5));
        assert!(a.sum.is_nan());
        let mut all_nan = Aggregate::new();
        all_nan.add(Sample::new(0, f64::NAN));
        assert!(all_nan.min.is_nan() && all_nan.max.is_nan());
    }

    #[test]
    fn merge_matches_sequential_adds_except_sum_grouping() {
        let samples: Vec<Sample> = [f64::NAN, 0.0, -0.0, 2.5, f64::NAN, -7.0]
            .iter()
            .enumerate()
            .map(|(i, &v)| Sample::new(i as i64, v))
            .collect();
        for split in 0..=samples.len() {
            let mut whole = Aggregate::new();
            samples.iter().for_each(|&s| whole.add(s));
            let (mut a, mut b) = (Aggregate::new(), Aggregate::new());
            samples[..split].iter().for_each(|&s| a.add(s));
            samples[split..].iter().for_each(|&s| b.add(s));
            a.merge(&b);
            assert_eq!(a.count, whole.count);
            assert_eq!(a.min.to_bits(), whole.min.to_bits());
            assert_eq!(a.max.to_bits(), whole.max.to_bits());
            assert_eq!(a.first, whole.first);
            assert_eq!(a.last, whole.last);
        }
    }

    #[test]
    fn fold_equals_add() {
        let ts = [1, 2, 3, 4];
        let vs = [0.1, f64::NAN, -0.0, 0.2];
        let mut a = Aggregate::new();
        a.fold(&ts, &vs);
        let mut b = Aggregate::new();
        ts.iter()
            .zip(vs)
            .for_each(|(&t, v)| b.add(Sample::new(t, v)));
        assert_eq!(
            (
                a.count,
                a.sum.to_bits(),
                a.min.to_bits(),
                a.max.to_bits(),
                a.first,
                a.last
            ),
            (
                b.count,
                b.sum.to_bits(),
                b.min.to_bits(),
                b.max.to_bits(),
                b.first,
                b.last
            )
        );
    }
}
