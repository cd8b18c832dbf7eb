//! Range queries of the commonest shapes evaluated series by series instead of step by step.
//!
//! The step loop of [`super::engine`] evaluates the whole tree at every step, which clones
//! every series' labels and copies every window at every step. For the shapes dashboards send
//! most — a selector, a range function of a range selector, and a folding aggregation
//! (`sum`, `avg`, `min`, `max`, `count`, `group`, `stddev`, `stdvar`) of either — this module
//! instead walks each series once across all steps: labels and grouping keys are computed once
//! per series, windows are slices of the loaded samples, and aggregations fold into one
//! accumulator per group and step, in the same order as the step loop would (series in label
//! order), so the answers are identical.
//!
//! Anything else, or a query where two series would end up with the same labels (which the
//! step loop reports as an error at the steps where it happens), goes through the step loop.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};

use promql_parser::parser::{AggregateExpr, Expr, MatrixSelector, VectorSelector};

use crate::storage::Labels;

use super::aggregate::{accumulate, group_labels, is_simple, Group};
use super::error::QueryError;
use super::eval::{duration_ms, offset_ms, Evaluator, RangeInfo};
use super::functions::range_fn;
use super::rollup::{fold_window, Grid};
use super::selector;
use super::value::{drop_name, is_stale_nan, Elem};

/// The range functions [`range_fn`] answers from a window alone.
const RANGE_FUNCTIONS: [&str; 17] = [
    "rate",
    "increase",
    "delta",
    "irate",
    "idelta",
    "deriv",
    "avg_over_time",
    "sum_over_time",
    "min_over_time",
    "max_over_time",
    "count_over_time",
    "last_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "present_over_time",
    "changes",
    "resets",
];

/// A query's result series by labels, as the step loop collects them.
pub(crate) type RangeResult = BTreeMap<Labels, Vec<(i64, f64)>>;

/// The instant-vector expressions this module evaluates per series.
pub(super) enum Inner<'e> {
    Selector(&'e VectorSelector),
    RangeCall(&'static str, &'e MatrixSelector),
}

pub(super) fn unwrap(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

pub(super) fn inner(e: &Expr) -> Option<Inner<'_>> {
    match unwrap(e) {
        Expr::VectorSelector(vs) if vs.at.is_none() => Some(Inner::Selector(vs)),
        Expr::Call(c) if c.args.args.len() == 1 => {
            let name = RANGE_FUNCTIONS.iter().find(|n| **n == c.func.name)?;
            match unwrap(c.args.args.first()?) {
                Expr::MatrixSelector(ms) if ms.vs.at.is_none() => Some(Inner::RangeCall(name, ms)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// One series of an inner expression: its output labels and how to get its value at a step.
pub(super) struct InnerSeries<'a> {
    pub labels: Cow<'a, Labels>,
    pub source: Source<'a>,
}

pub(super) enum Source<'a> {
    Raw(&'a [(i64, f64)]),
    Buckets(&'a selector::BucketedSeries, i64),
}

/// Evaluates `expr` over `grid` if it has one of the supported shapes; `None` otherwise.
pub(crate) fn try_range(
    ev: &Evaluator,
    expr: &Expr,
    grid: Grid,
) -> Option<Result<(RangeResult, usize), QueryError>> {
    match unwrap(expr) {
        Expr::Aggregate(agg) => {
            let op = agg.op.id();
            if agg.param.is_some() || !is_simple(op) {
                return None;
            }
            let inner = inner(&agg.expr)?;
            let series = inner_series(ev, &inner)?;
            Some(aggregate(ev, agg, op, &inner, &series, grid))
        }
        e => {
            let inner = inner(e)?;
            let series = inner_series(ev, &inner)?;
            Some(plain(ev, &inner, &series, grid))
        }
    }
}

/// The series of `inner` with their output labels; `None` when two would share labels.
fn inner_series<'a>(ev: &Evaluator<'a>, inner: &Inner<'_>) -> Option<Vec<InnerSeries<'a>>> {
    let store = ev.store;
    let out: Vec<InnerSeries<'a>> = match inner {
        Inner::Selector(vs) => store
            .series(vs)
            .iter()
            .map(|s| InnerSeries {
                labels: Cow::Borrowed(&s.labels),
                source: Source::Raw(&s.samples),
            })
            .collect(),
        Inner::RangeCall(name, ms) => {
            let label = |l: &'a Labels| {
                if *name == "last_over_time" {
                    Cow::Borrowed(l)
                } else {
                    Cow::Owned(drop_name(l))
                }
            };
            let mut v: Vec<InnerSeries<'a>> = Vec::new();
            // Rollup-answered series first, then raw ones: the step loop's order.
            if let Some(b) = store.bucketed(&ms.vs) {
                v.extend(b.series.iter().map(|s| InnerSeries {
                    labels: label(&s.labels),
                    source: Source::Buckets(s, b.read.resolution),
                }));
            }
            v.extend(store.series(&ms.vs).iter().map(|s| InnerSeries {
                labels: label(&s.labels),
                source: Source::Raw(&s.samples),
            }));
            v
        }
    };
    let mut seen: HashSet<&Labels> = HashSet::with_capacity(out.len());
    for s in &out {
        if !seen.insert(s.labels.as_ref()) {
            return None;
        }
    }
    Some(out)
}

/// Calls `f(step index, time, value)` for every step where the series has a value.
pub(super) fn for_each_value(
    ev: &Evaluator,
    inner: &Inner,
    s: &InnerSeries,
    grid: Grid,
    mut f: impl FnMut(usize, i64, f64),
) {
    let steps = steps(grid);
    match (inner, &s.source) {
        (Inner::Selector(vs), Source::Raw(samples)) => {
            let off = offset_ms(&vs.offset);
            // Steps only move forward, so a cursor replaces a binary search per step: `next`
            // is the first sample after the current evaluation time.
            let mut next = 0usize;
            for k in 0..steps {
                let ts = time(grid, k);
                let t = ts.saturating_sub(off);
                while samples.get(next).is_some_and(|p| p.0 <= t) {
                    next += 1;
                }
                let Some(&(st, v)) = next.checked_sub(1).and_then(|i| samples.get(i)) else {
                    continue;
                };
                if st >= t.saturating_sub(ev.lookback) && !is_stale_nan(v) {
                    f(k, ts, v);
                }
            }
        }
        (Inner::RangeCall(name, ms), Source::Raw(samples)) => {
            let range_ms = duration_ms(&ms.range);
            let off = offset_ms(&ms.vs.offset);
            let has_stale = samples.iter().any(|p| is_stale_nan(p.1));
            let mut filtered = Vec::new();
            // Window bounds only move forward: cursors instead of binary searches.
            let (mut lo, mut hi) = (0usize, 0usize);
            for k in 0..steps {
                let ts = time(grid, k);
                let end = ts.saturating_sub(off);
                let start = end.saturating_sub(range_ms);
                while samples.get(lo).is_some_and(|p| p.0 < start) {
                    lo += 1;
                }
                hi = hi.max(lo);
                while samples.get(hi).is_some_and(|p| p.0 <= end) {
                    hi += 1;
                }
                let window = samples.get(lo..hi).unwrap_or(&[]);
                let window = if has_stale {
                    filtered.clear();
                    filtered.extend(window.iter().filter(|p| !is_stale_nan(p.1)));
                    filtered.as_slice()
                } else {
                    window
                };
                if window.is_empty() {
                    continue;
                }
                let info = RangeInfo {
                    start,
                    end,
                    range_ms,
                };
                if let Some(v) = range_fn(name, window, info) {
                    f(k, ts, v);
                }
            }
        }
        (Inner::RangeCall(name, ms), Source::Buckets(b, resolution)) => {
            let range_ms = duration_ms(&ms.range);
            let off = offset_ms(&ms.vs.offset);
            for k in 0..steps {
                let ts = time(grid, k);
                let end = ts.saturating_sub(off);
                let fold = fold_window(&b.buckets, &b.edges, end, range_ms, *resolution);
                if let Some(v) = fold.over_time(name) {
                    f(k, ts, v);
                }
            }
        }
        (Inner::Selector(_), Source::Buckets(..)) => {}
    }
}

pub(super) fn steps(g: Grid) -> usize {
    if g.step <= 0 {
        return 1;
    }
    usize::try_from((g.end - g.start) / g.step + 1).unwrap_or(0)
}

pub(super) fn time(g: Grid, k: usize) -> i64 {
    g.start.saturating_add(g.step.saturating_mul(k as i64))
}

fn plain(
    ev: &Evaluator,
    inner: &Inner,
    series: &[InnerSeries],
    grid: Grid,
) -> Result<(RangeResult, usize), QueryError> {
    let mut out = RangeResult::new();
    let mut points = 0usize;
    for s in series {
        ev.check_deadline()?;
        let mut pts = Vec::new();
        for_each_value(ev, inner, s, grid, |_, ts, v| pts.push((ts, v)));
        if !pts.is_empty() {
            points += pts.len();
            out.insert(s.labels.clone().into_owned(), pts);
        }
    }
    Ok((out, points))
}

fn aggregate(
    ev: &Evaluator,
    agg: &AggregateExpr,
    op: u16,
    inner: &Inner,
    series: &[InnerSeries],
    grid: Grid,
) -> Result<(RangeResult, usize), QueryError> {
    let steps = steps(grid);
    let mut group_of: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<(Labels, Vec<Option<Group>>)> = Vec::new();
    for s in series {
        ev.check_deadline()?;
        let gl = group_labels(&agg.modifier, &s.labels);
        let gi = match group_of.get(&gl) {
            Some(i) => *i,
            None => {
                groups.push((gl.clone(), (0..steps).map(|_| None).collect()));
                group_of.insert(gl, groups.len() - 1);
                groups.len() - 1
            }
        };
        let Some((labels, accs)) = groups.get_mut(gi) else {
            continue;
        };
        for_each_value(ev, inner, s, grid, |k, ts, v| {
            let el = Elem {
                labels: Labels::default(),
                t: ts,
                v,
            };
            if let Some(slot) = accs.get_mut(k) {
                match slot {
                    Some(g) => accumulate(op, g, el),
                    None => *slot = Some(Group::start(op, labels.clone(), el)),
                }
            }
        });
    }
    let mut out = RangeResult::new();
    let mut points = 0usize;
    for (labels, accs) in groups {
        let pts: Vec<(i64, f64)> = accs
            .iter()
            .enumerate()
            .filter_map(|(k, g)| Some((time(grid, k), g.as_ref()?.simple_value(op)?)))
            .collect();
        if !pts.is_empty() {
            points += pts.len();
            out.insert(labels, pts);
        }
    }
    Ok((out, points))
}
