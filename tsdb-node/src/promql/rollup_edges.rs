//! Instant `*_over_time` windows whose ends do not line up with rollup buckets, answered from
//! the whole buckets inside the window plus the raw samples at its two ragged ends.
//!
//! [`super::rollup::plan`] only takes windows that start and end on bucket edges, which a
//! dashboard's "last 24 h" at "now" never does; such a window then decoded every raw sample
//! (8 640 for a day of 10 s data). Here the window `[start, end]` (closed, as Prometheus 2.42's)
//! is split into a raw head `[start, b0)`, the whole buckets `[b0, b1)` and a raw tail
//! `[b1, end]`, with `b0`/`b1` the first and last bucket edges inside it, `b1` no later than the
//! end of what is rolled up. With hourly rollups a day reads about 24 buckets and a few hours of
//! raw samples (the newest are rolled up only once they are past the out-of-order window).
//!
//! The answer is folded in time order (head samples, buckets, tail samples) exactly as the
//! aligned rollup path folds it: `count`, `min` and `max` equal the raw answer bit for bit,
//! `sum` and `avg` up to summation order. A series with a non-finite bucket or edge sample
//! (NaN, an infinity; staleness markers in the edges are skipped like the raw window skips
//! them) is read raw and evaluated by the raw function, as the aligned path does.

use std::collections::BTreeMap;

use promql_parser::parser::{Expr, MatrixSelector};

use crate::storage::{Engine, Labels, RollupPoint, Sample};

use super::error::QueryError;
use super::eval::{instant_window, RangeInfo};
use super::functions::{check_unique, range_fn};
use super::rollup::{self, Bucket, Grid, WindowFold};
use super::selector::{matcher_groups, select_exact};
use super::series_eval::{inner, Inner};
use super::value::{drop_name, is_stale_nan, Elem, Value};

/// Fewest whole buckets a window must hold for this path to be worth its three reads.
pub(crate) const MIN_BUCKETS: i64 = 8;

/// How one window is read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct EdgePlan {
    pub resolution: i64,
    /// First bucket edge at or after the window's start.
    pub b0: i64,
    /// Last bucket edge such that the bucket before it ends inside the window.
    pub b1: i64,
}

/// The coarsest resolution whose whole buckets inside `[start, end]` number at least
/// [`MIN_BUCKETS`]: coarser buckets mean fewer of them, and the raw ends stay under a bucket
/// each. `None` when no resolution qualifies.
pub(crate) fn plan_edges(start: i64, end: i64, resolutions: &[i64]) -> Option<EdgePlan> {
    if end < start {
        return None;
    }
    resolutions
        .iter()
        .copied()
        .filter(|&r| r > 0)
        .filter_map(|r| {
            let b0 = start.checked_add(r - 1)?.div_euclid(r).checked_mul(r)?;
            let b1 = end.checked_add(1)?.div_euclid(r).checked_mul(r)?;
            ((b1 - b0) / r >= MIN_BUCKETS).then_some(EdgePlan {
                resolution: r,
                b0,
                b1,
            })
        })
        .max_by_key(|p| p.resolution)
}

/// `plan` with its buckets ending where rollups end (`coverage_end`, the end of the newest
/// rolled-up window, which lies on a bucket edge): the newest data is not rolled up yet (it
/// may still change within the out-of-order window), and its samples are then read once, as
/// part of the raw tail, instead of once to compute its buckets and again for the tail (both
/// decode the same newest chunk). `None` when fewer than [`MIN_BUCKETS`] whole buckets remain.
fn within_coverage(plan: EdgePlan, coverage_end: i64) -> Option<EdgePlan> {
    let covered = coverage_end
        .checked_add(1)?
        .div_euclid(plan.resolution)
        .checked_mul(plan.resolution)?;
    let b1 = plan.b1.min(covered);
    ((b1 - plan.b0) / plan.resolution >= MIN_BUCKETS).then_some(EdgePlan { b1, ..plan })
}

/// Evaluates `expr` at `time` from rollups and raw window ends when it is a rollup function of
/// one range selector whose window the aligned planner does not take but [`plan_edges`] does;
/// `None` otherwise (the caller evaluates it as usual).
pub(crate) fn try_instant(
    engine: &Engine,
    expr: &Expr,
    time: i64,
    resolutions: &[i64],
    max_samples: usize,
) -> Option<Result<Value, QueryError>> {
    let Inner::RangeCall(name, ms) = inner(expr)? else {
        return None;
    };
    if !rollup::ROLLUP_FUNCTIONS.contains(&name) || !ms.vs.matchers.or_matchers.is_empty() {
        return None;
    }
    if rollup::plan(ms, Grid::instant(time), resolutions).is_some() {
        return None;
    }
    let info = instant_window(ms, time);
    // The coarsest resolution that still has enough whole buckets once cut to what is
    // rolled up.
    let mut by_coarseness = resolutions.to_vec();
    by_coarseness.sort_unstable_by(|a, b| b.cmp(a));
    let plan = by_coarseness.into_iter().find_map(|r| {
        let plan = plan_edges(info.start, info.end, &[r])?;
        within_coverage(plan, engine.rollup_coverage_end(r)?)
    })?;
    Some(evaluate(engine, ms, name, info, plan, time, max_samples))
}

/// One series' parts of the window.
#[derive(Default)]
struct Parts {
    head: Vec<Sample>,
    buckets: Vec<RollupPoint>,
    tail: Vec<Sample>,
}

impl Parts {
    fn finite(&self) -> bool {
        let edge_ok = |s: &Sample| s.v.is_finite() || is_stale_nan(s.v);
        self.head.iter().all(edge_ok)
            && self.tail.iter().all(edge_ok)
            && self.buckets.iter().all(|b| b.sum.is_finite())
    }

    fn fold(&self) -> WindowFold {
        let mut f = WindowFold::default();
        for s in self.head.iter().filter(|s| !is_stale_nan(s.v)) {
            f.add_sample(s.v);
        }
        for b in &self.buckets {
            f.add_bucket(&Bucket::from_point(b));
        }
        for s in self.tail.iter().filter(|s| !is_stale_nan(s.v)) {
            f.add_sample(s.v);
        }
        f
    }
}

fn evaluate(
    engine: &Engine,
    ms: &MatrixSelector,
    name: &str,
    info: RangeInfo,
    plan: EdgePlan,
    time: i64,
    max_samples: usize,
) -> Result<Value, QueryError> {
    let groups = matcher_groups(&ms.vs)?;
    let Some(matchers) = groups.first() else {
        return Ok(Value::Vector(Vec::new()));
    };
    let mut cost = 0usize;
    let mut charge = |n: usize| {
        cost = cost.saturating_add(n);
        if cost > max_samples {
            Err(QueryError::TooManySamples)
        } else {
            Ok(())
        }
    };
    let mut by_labels: BTreeMap<Labels, Parts> = BTreeMap::new();
    if info.start < plan.b0 {
        for s in engine.select(matchers, info.start, plan.b0 - 1)? {
            charge(s.samples.len())?;
            by_labels.entry(s.labels).or_default().head = s.samples;
        }
    }
    for s in engine.select_rollup(
        matchers,
        plan.b0,
        plan.b1 - plan.resolution,
        plan.resolution,
    )? {
        charge(s.points.len())?;
        by_labels.entry(s.labels).or_default().buckets = s.points;
    }
    if plan.b1 <= info.end {
        for s in engine.select(matchers, plan.b1, info.end)? {
            charge(s.samples.len())?;
            by_labels.entry(s.labels).or_default().tail = s.samples;
        }
    }
    let mut vector = Vec::with_capacity(by_labels.len());
    let mut window = Vec::new();
    for (labels, parts) in by_labels {
        let v = if parts.finite() {
            parts.fold().over_time(name)
        } else {
            window.clear();
            if let Some(s) = select_exact(engine, &labels, info.start, info.end)? {
                charge(s.samples.len())?;
                window.extend(
                    s.samples
                        .iter()
                        .filter(|x| !is_stale_nan(x.v))
                        .map(|x| (x.t, x.v)),
                );
            }
            range_fn(name, &window, info)
        };
        if let Some(v) = v {
            vector.push(Elem {
                labels: drop_name(&labels),
                t: time,
                v,
            });
        }
    }
    check_unique(&vector)?;
    Ok(Value::Vector(
        vector.into_iter().map(|e| (e.labels, e.t, e.v)).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    const HOUR: i64 = 60 * MIN;
    const RES: [i64; 3] = [MIN, 5 * MIN, HOUR];

    #[test]
    fn takes_the_coarsest_resolution_with_enough_whole_buckets() {
        // A day ending 10 s before an hour edge: hourly buckets from the first edge after the
        // start to the last edge at or before the end.
        let end = 30 * HOUR - 10_000;
        let p = plan_edges(end - 86_390_000, end, &RES).unwrap();
        assert_eq!(p.resolution, HOUR);
        assert_eq!((p.b0, p.b1), (6 * HOUR, 29 * HOUR));
        // Ninety minutes hold too few hourly buckets but eighteen 5-minute ones.
        let p = plan_edges(end - 90 * MIN, end, &RES).unwrap();
        assert_eq!(p.resolution, 5 * MIN);
        // A window whose end is exactly one millisecond before an edge takes the bucket
        // ending there; one that ends on an edge leaves that edge's sample to the tail.
        let p = plan_edges(0, 10 * HOUR - 1, &RES).unwrap();
        assert_eq!((p.b0, p.b1), (0, 10 * HOUR));
        let p = plan_edges(0, 10 * HOUR, &RES).unwrap();
        assert_eq!((p.b0, p.b1), (0, 10 * HOUR));
        // Too short for any resolution, or reversed.
        assert!(plan_edges(0, 7 * MIN, &RES).is_none());
        assert!(plan_edges(10, 0, &RES).is_none());
        assert!(plan_edges(0, HOUR, &[]).is_none());
        // Negative times round towards the edges inside the window.
        let p = plan_edges(-90 * MIN - 1, -1, &[5 * MIN]).unwrap();
        assert_eq!((p.b0, p.b1), (-90 * MIN, 0));
    }

    #[test]
    fn buckets_end_where_rollups_end() {
        let p = plan_edges(0, 30 * HOUR - 10_000, &[HOUR]).unwrap();
        assert_eq!((p.b0, p.b1), (0, 29 * HOUR));
        // Rolled up to 20:00 of the second day: the buckets stop there, the rest is raw tail.
        let cut = within_coverage(p, 20 * HOUR - 1).unwrap();
        assert_eq!((cut.resolution, cut.b0, cut.b1), (HOUR, 0, 20 * HOUR));
        // Rolled up beyond the window: unchanged.
        assert_eq!(within_coverage(p, 40 * HOUR - 1), Some(p));
        // Too little rolled up for the minimum number of buckets, or nothing at all.
        assert_eq!(within_coverage(p, 7 * HOUR - 1), None);
        assert_eq!(within_coverage(p, -1), None);
    }
}
