//! Answering `*_over_time` windows from downsampled rollups instead of raw samples.
//!
//! A rollup bucket of resolution `R` starting at `b` folds the raw samples with
//! `b <= t < b + R` (count, sum, min, max). Prometheus 2.42's range window `[e - range, e]` is
//! closed at both ends, so when `e` and `range` are multiples of `R` the window is exactly the
//! whole buckets starting in `[e - range, e - R]` plus the raw samples AT `e` (which open the
//! next bucket). Those edge samples are read raw, one per window end; everything else comes from
//! buckets. The planner uses this only when every evaluation time of the node lines up with
//! bucket edges; the loader falls back to raw samples for any series whose buckets hold a NaN
//! or an infinity (a staleness marker is a NaN and must not count as a sample, and Prometheus'
//! special handling of infinities needs the samples themselves).
//!
//! What stays exact: `count_over_time`, `min_over_time` and `max_over_time` equal the raw
//! answer bit for bit; `sum_over_time` and `avg_over_time` add per-bucket sums, so they equal
//! the raw answer up to floating-point summation order (relative error around 1e-15 for
//! sensor data, far inside the 1e-9 the oracle test demands).

use promql_parser::parser::{Expr, MatrixSelector};

use crate::storage::RollupPoint;

use super::eval::{duration_ms, offset_ms};
use super::functions::range::kahan_inc;

/// The functions a rollup can answer.
pub(crate) const ROLLUP_FUNCTIONS: [&str; 5] = [
    "sum_over_time",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "count_over_time",
];

/// The evaluation times of a query: `start`, `start + step`, ... up to `end`. An instant query
/// has `step == 0` and `start == end`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Grid {
    pub start: i64,
    pub end: i64,
    pub step: i64,
}

impl Grid {
    /// The one evaluation time of an instant query.
    pub fn instant(time: i64) -> Self {
        Grid {
            start: time,
            end: time,
            step: 0,
        }
    }
}

/// What to read for one range selector answered from rollups.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct RollupRead {
    pub resolution: i64,
    /// Starts of the buckets to read, inclusive.
    pub bucket_min: i64,
    pub bucket_max: i64,
    /// Window ends: `edge_min`, `edge_min + edge_step`, ... up to `edge_max`; the raw samples
    /// at exactly these times are read. `edge_step == 0` means the single time `edge_min`.
    pub edge_min: i64,
    pub edge_max: i64,
    pub edge_step: i64,
}

impl RollupRead {
    /// Whether `t` is one of the window ends.
    pub fn is_edge(&self, t: i64) -> bool {
        if self.edge_step == 0 {
            return t == self.edge_min;
        }
        t >= self.edge_min
            && t <= self.edge_max
            && t.wrapping_sub(self.edge_min).rem_euclid(self.edge_step) == 0
    }
}

/// The range selector argument of `expr` if it is a call that rollups can answer.
pub(crate) fn candidate<'e>(name: &str, args: &'e [Box<Expr>]) -> Option<&'e MatrixSelector> {
    if !ROLLUP_FUNCTIONS.contains(&name) {
        return None;
    }
    let mut e = args.first()?.as_ref();
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    match e {
        Expr::MatrixSelector(ms) => Some(ms),
        _ => None,
    }
}

/// The rollup read that answers `ms` at every time of `grid`, using the coarsest of
/// `resolutions` whose bucket edges line up with every window; `None` when none does or the
/// selector has an `@` modifier (its evaluation time is then not the grid's).
pub(crate) fn plan(ms: &MatrixSelector, grid: Grid, resolutions: &[i64]) -> Option<RollupRead> {
    if ms.vs.at.is_some() || grid.step < 0 || grid.end < grid.start {
        return None;
    }
    let range = duration_ms(&ms.range);
    let first_end = grid.start.checked_sub(offset_ms(&ms.vs.offset))?;
    let steps = if grid.step == 0 {
        0
    } else {
        (grid.end - grid.start) / grid.step
    };
    let last_end = first_end.checked_add(steps.checked_mul(grid.step)?)?;
    let resolution = resolutions
        .iter()
        .copied()
        .filter(|&r| {
            r > 0
                && range >= r
                && range % r == 0
                && (grid.step == 0 || grid.step % r == 0)
                && first_end.rem_euclid(r) == 0
        })
        .max()?;
    Some(RollupRead {
        resolution,
        bucket_min: first_end.checked_sub(range)?,
        bucket_max: last_end.checked_sub(resolution)?,
        edge_min: first_end,
        edge_max: last_end,
        edge_step: if steps == 0 { 0 } else { grid.step },
    })
}

/// One bucket as the evaluator needs it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Bucket {
    pub t: i64,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl Bucket {
    pub fn from_point(p: &RollupPoint) -> Self {
        Bucket {
            t: p.t,
            count: p.count,
            sum: p.sum,
            min: p.min,
            max: p.max,
        }
    }
}

/// A window folded from buckets and raw samples, in time order.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WindowFold {
    pub count: u64,
    sum: f64,
    /// Kahan compensation of `sum`, as Prometheus' `sum_over_time` keeps one.
    c: f64,
    min: f64,
    max: f64,
}

impl Default for WindowFold {
    fn default() -> Self {
        WindowFold {
            count: 0,
            sum: 0.0,
            c: 0.0,
            min: f64::NAN,
            max: f64::NAN,
        }
    }
}

impl WindowFold {
    /// Adds a part that comes after everything added so far. The min/max rule is Prometheus'
    /// (`v < min || min is NaN`), which gives the smallest non-NaN value whether it is applied
    /// to samples or to per-bucket minima.
    fn add_part(&mut self, count: u64, sum: f64, min: f64, max: f64) {
        self.count += count;
        (self.sum, self.c) = kahan_inc(sum, self.sum, self.c);
        if min < self.min || self.min.is_nan() {
            self.min = min;
        }
        if max > self.max || self.max.is_nan() {
            self.max = max;
        }
    }

    pub fn add_bucket(&mut self, b: &Bucket) {
        self.add_part(b.count, b.sum, b.min, b.max);
    }

    pub fn add_sample(&mut self, v: f64) {
        self.add_part(1, v, v, v);
    }

    /// Adds another window's fold (the seed 003 shorthand folds all series together).
    pub fn merge(&mut self, o: &WindowFold) {
        if o.count > 0 {
            self.add_part(o.count, o.sum + o.c, o.min, o.max);
        }
    }

    fn total(&self) -> f64 {
        if self.sum.is_infinite() {
            return self.sum;
        }
        self.sum + self.c
    }

    pub fn sum(&self) -> f64 {
        self.total()
    }

    pub fn avg(&self) -> f64 {
        self.total() / self.count as f64
    }

    pub fn min(&self) -> f64 {
        self.min
    }

    pub fn max(&self) -> f64 {
        self.max
    }

    /// The value of one of [`ROLLUP_FUNCTIONS`]; `None` for an empty window.
    pub fn over_time(&self, name: &str) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        match name {
            "sum_over_time" => Some(self.sum()),
            "avg_over_time" => Some(self.avg()),
            "min_over_time" => Some(self.min),
            "max_over_time" => Some(self.max),
            "count_over_time" => Some(self.count as f64),
            _ => None,
        }
    }
}

/// Folds the window `[end - range, end]` of one series: whole buckets starting in
/// `[end - range, end - resolution]`, then the edge sample at `end` unless it is a staleness
/// marker.
pub(crate) fn fold_window(
    buckets: &[Bucket],
    edges: &[(i64, f64)],
    end: i64,
    range: i64,
    resolution: i64,
) -> WindowFold {
    let mut f = WindowFold::default();
    let lo = buckets.partition_point(|b| b.t < end.saturating_sub(range));
    let hi = buckets.partition_point(|b| b.t <= end.saturating_sub(resolution));
    for b in buckets.get(lo..hi.max(lo)).unwrap_or(&[]) {
        f.add_bucket(b);
    }
    if let Ok(i) = edges.binary_search_by_key(&end, |e| e.0) {
        if let Some(&(_, v)) = edges.get(i) {
            if !super::value::is_stale_nan(v) {
                f.add_sample(v);
            }
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::functions::range::{
        avg_over_time, max_over_time, min_over_time, sum_over_time,
    };
    use crate::storage::downsample::buckets;
    use crate::storage::Sample;
    use proptest::prelude::*;

    fn parse_ms(q: &str) -> MatrixSelector {
        match promql_parser::parser::parse(q).unwrap() {
            Expr::MatrixSelector(ms) => ms,
            other => panic!("not a matrix selector: {other:?}"),
        }
    }

    const RES: [i64; 3] = [60_000, 300_000, 3_600_000];

    #[test]
    fn plan_needs_aligned_windows() {
        let grid = Grid {
            start: 3_600_000,
            end: 7_200_000,
            step: 300_000,
        };
        let r = plan(&parse_ms("x[5m]"), grid, &RES).unwrap();
        assert_eq!(r.resolution, 300_000);
        assert_eq!((r.bucket_min, r.bucket_max), (3_300_000, 6_900_000));
        assert_eq!(
            (r.edge_min, r.edge_max, r.edge_step),
            (3_600_000, 7_200_000, 300_000)
        );
        // An hour-long window at an hourly grid takes the hourly rollup.
        let hourly = Grid {
            step: 3_600_000,
            ..grid
        };
        assert_eq!(
            plan(&parse_ms("x[1h]"), hourly, &RES).unwrap().resolution,
            3_600_000
        );
        // Offsets shift the window ends.
        assert_eq!(
            plan(&parse_ms("x[5m] offset 1m"), grid, &RES)
                .unwrap()
                .resolution,
            60_000
        );
        assert!(plan(&parse_ms("x[5m] offset 10s"), grid, &RES).is_none());
        // Steps, ranges and starts off the bucket edges, and `@`, are not planned.
        assert!(plan(
            &parse_ms("x[5m]"),
            Grid {
                step: 90_000,
                ..grid
            },
            &RES
        )
        .is_none());
        assert!(plan(&parse_ms("x[90s]"), grid, &RES).is_none());
        assert!(plan(
            &parse_ms("x[5m]"),
            Grid {
                start: 3_600_001,
                ..grid
            },
            &RES
        )
        .is_none());
        assert!(plan(&parse_ms("x[5m] @ 3600"), grid, &RES).is_none());
        assert!(plan(&parse_ms("x[30s]"), grid, &RES).is_none());
        // An instant query only needs its one time aligned.
        let instant = Grid {
            start: 86_400_000,
            end: 86_400_000,
            step: 0,
        };
        let r = plan(&parse_ms("x[1d]"), instant, &RES).unwrap();
        assert_eq!((r.resolution, r.edge_step), (3_600_000, 0));
        assert!(r.is_edge(86_400_000) && !r.is_edge(86_400_001));
    }

    fn samples() -> impl Strategy<Value = Vec<Sample>> {
        proptest::collection::btree_map(0i64..4_000, -1e3f64..1e3, 0..200).prop_map(|m| {
            m.into_iter()
                .map(|(t, v)| Sample::new(t * 1_000, (v * 10.0).round() / 10.0))
                .collect()
        })
    }

    proptest! {
        /// Buckets plus the edge sample fold to what the raw window gives.
        #[test]
        fn fold_equals_raw_window(data in samples(), end_buckets in 1i64..70, width in 1i64..10) {
            let res = 60_000;
            let end = end_buckets * res;
            let range = width * res;
            let bks: Vec<Bucket> = buckets(&data, res)
                .iter()
                .map(|(t, a)| Bucket { t: *t, count: a.count, sum: a.sum, min: a.min, max: a.max })
                .collect();
            let edges: Vec<(i64, f64)> = data.iter().map(|s| (s.t, s.v)).collect();
            let f = fold_window(&bks, &edges, end, range, res);
            let raw: Vec<(i64, f64)> = edges
                .iter()
                .copied()
                .filter(|p| p.0 >= end - range && p.0 <= end)
                .collect();
            prop_assert_eq!(f.count as usize, raw.len());
            if !raw.is_empty() {
                prop_assert_eq!(f.min().to_bits(), min_over_time(&raw).to_bits());
                prop_assert_eq!(f.max().to_bits(), max_over_time(&raw).to_bits());
                let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0);
                prop_assert!(close(f.sum(), sum_over_time(&raw)));
                prop_assert!(close(f.avg(), avg_over_time(&raw)));
            }
        }
    }
}
