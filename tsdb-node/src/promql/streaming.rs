//! The shapes of [`super::series_eval`] evaluated while the local engine streams the series,
//! one at a time and on several threads, instead of after every series has been loaded.
//!
//! Loading first means holding every selected sample at once (a day of a thousand series is
//! 8.6 M samples, copied twice on the way); here each series is merged from its sources,
//! evaluated at every step and folded into the result before the next one is read, so memory
//! is one series per thread. The series are split into contiguous runs in label order, one per
//! thread; each thread folds its run into partial aggregation states, and the states are merged
//! in run order. For `sum`, `avg`, `min`, `max`, `count` and `group` that equals the sequential
//! fold up to the rounding of sums; other aggregations use one thread, so they fold in exactly
//! the step loop's order.
//!
//! Only a selection from one local engine, without rollups (their path reads little data
//! already), and without `or` matcher groups (which need merging by labels) is streamed.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use promql_parser::parser::{AggregateExpr, Expr, VectorSelector};

use crate::storage::{Engine, Labels, Sample, Selection};

use super::aggregate::{accumulate, group_labels, is_mergeable, is_simple, merge, Group};
use super::error::QueryError;
use super::eval::{duration_ms, offset_ms, Evaluator};
use super::rollup::{self, Grid};
use super::selector::matcher_groups;
use super::series_eval::RangeResult;
use super::series_eval::{for_each_value, inner, steps, time, unwrap, Inner, InnerSeries, Source};
use super::value::{drop_name, Elem};

/// How a streamed query may run.
pub(crate) struct Streaming<'r> {
    pub threads: usize,
    /// Rollup resolutions the planner would use (none when rollups are off).
    pub resolutions: &'r [i64],
    pub max_samples: usize,
}

/// A streamed range query's series, and what it cost against the `max_samples` limit
/// (samples read plus points returned).
pub(crate) type Streamed = (RangeResult, usize);

/// Evaluates `expr` over `grid` by streaming from `engine`, if it has a shape this module
/// takes; `None` otherwise (the caller then loads and evaluates as usual).
pub(crate) fn try_range(
    engine: &Engine,
    ev: &Evaluator,
    expr: &Expr,
    grid: Grid,
    how: &Streaming,
) -> Option<Result<Streamed, QueryError>> {
    let (agg, inner) = match unwrap(expr) {
        Expr::Aggregate(agg) => {
            let op = agg.op.id();
            if agg.param.is_some() || !is_simple(op) {
                return None;
            }
            (Some(agg), inner(&agg.expr)?)
        }
        e => (None, inner(e)?),
    };
    let (vs, mint, maxt) = match &inner {
        Inner::Selector(vs) => {
            let off = offset_ms(&vs.offset);
            (
                *vs,
                grid.start.saturating_sub(off).saturating_sub(ev.lookback),
                grid.end.saturating_sub(off),
            )
        }
        Inner::RangeCall(name, ms) => {
            // A grid whose windows line up with rollup buckets is the rollup path's, but only
            // for the functions rollups answer: `rate` over an aligned grid (Grafana aligns
            // `start` to the step) is still streamed, not left to the step loop.
            if rollup::ROLLUP_FUNCTIONS.contains(name)
                && rollup::plan(ms, grid, how.resolutions).is_some()
            {
                return None;
            }
            let off = offset_ms(&ms.vs.offset);
            (
                &ms.vs,
                grid.start
                    .saturating_sub(off)
                    .saturating_sub(duration_ms(&ms.range)),
                grid.end.saturating_sub(off),
            )
        }
    };
    if !vs.matchers.or_matchers.is_empty() {
        return None;
    }
    let selection = match select(engine, vs, mint, maxt) {
        Ok(s) => s,
        Err(e) => return Some(Err(e)),
    };
    let out_labels: Vec<Cow<Labels>> = selection
        .labels()
        .map(|l| match &inner {
            Inner::RangeCall(name, _) if *name != "last_over_time" => Cow::Owned(drop_name(l)),
            _ => Cow::Borrowed(l),
        })
        .collect();
    // Two series with the same output labels are an error at the steps where both have a
    // value; the step loop finds those steps.
    let mut seen = HashSet::with_capacity(out_labels.len());
    if !out_labels.iter().all(|l| seen.insert(l.as_ref())) {
        return None;
    }
    let run = Run {
        ev,
        inner: &inner,
        grid,
        max_samples: how.max_samples,
        read: AtomicUsize::new(0),
    };
    Some(match agg {
        Some(agg) => run.aggregate(&selection, agg, &out_labels, how.threads),
        None => run.plain(&selection, &out_labels, how.threads),
    })
}

fn select<'e>(
    engine: &'e Engine,
    vs: &VectorSelector,
    mint: i64,
    maxt: i64,
) -> Result<Selection<'e>, QueryError> {
    let groups = matcher_groups(vs)?;
    let matchers = groups.first().map(Vec::as_slice).unwrap_or(&[]);
    Ok(engine.selection(matchers, mint, maxt)?)
}

/// What every thread of one streamed query shares.
struct Run<'a, 'e> {
    ev: &'a Evaluator<'a>,
    inner: &'a Inner<'e>,
    grid: Grid,
    max_samples: usize,
    /// Samples read so far by all threads, for the `max_samples` limit.
    read: AtomicUsize,
}

/// One thread's reusable buffer of the current series' samples.
#[derive(Default)]
struct Buffer(Vec<(i64, f64)>);

impl Buffer {
    fn fill(&mut self, samples: &[Sample]) -> &[(i64, f64)] {
        self.0.clear();
        self.0.extend(samples.iter().map(|s| (s.t, s.v)));
        &self.0
    }
}

impl Run<'_, '_> {
    /// Checks the limits before a series' samples are evaluated.
    fn admit(&self, samples: &[Sample]) -> Result<(), QueryError> {
        self.ev.check_deadline()?;
        let total = self.read.fetch_add(samples.len(), Ordering::Relaxed) + samples.len();
        if total > self.max_samples {
            return Err(QueryError::TooManySamples);
        }
        Ok(())
    }

    fn each_value(&self, samples: &[(i64, f64)], f: impl FnMut(usize, i64, f64)) {
        let s = InnerSeries {
            labels: Cow::Owned(Labels::default()),
            source: Source::Raw(samples),
        };
        for_each_value(self.ev, self.inner, &s, self.grid, f);
    }

    fn plain(
        &self,
        selection: &Selection,
        out_labels: &[Cow<Labels>],
        threads: usize,
    ) -> Result<Streamed, QueryError> {
        type State = (Buffer, Vec<(usize, Vec<(i64, f64)>)>);
        let states = selection.map_each(
            threads,
            State::default,
            |(buf, found): &mut State, i, _, samples| -> Result<(), QueryError> {
                self.admit(samples)?;
                let mut pts = Vec::new();
                self.each_value(buf.fill(samples), |_, ts, v| pts.push((ts, v)));
                if !pts.is_empty() {
                    found.push((i, pts));
                }
                Ok(())
            },
        )?;
        let mut out = RangeResult::new();
        let mut points = 0usize;
        for (i, pts) in states.into_iter().flat_map(|(_, found)| found) {
            if let Some(l) = out_labels.get(i) {
                points += pts.len();
                out.insert(l.clone().into_owned(), pts);
            }
        }
        Ok((
            out,
            points.saturating_add(self.read.load(Ordering::Relaxed)),
        ))
    }

    fn aggregate(
        &self,
        selection: &Selection,
        agg: &AggregateExpr,
        out_labels: &[Cow<Labels>],
        threads: usize,
    ) -> Result<Streamed, QueryError> {
        let op = agg.op.id();
        let threads = if is_mergeable(op) { threads } else { 1 };
        let steps = steps(self.grid);
        // Group of each series, in selection order; groups numbered by first appearance.
        let mut group_of: HashMap<Labels, usize> = HashMap::new();
        let mut groups: Vec<Labels> = Vec::new();
        let series_group: Vec<usize> = out_labels
            .iter()
            .map(|l| {
                let gl = group_labels(&agg.modifier, l);
                *group_of.entry(gl.clone()).or_insert_with(|| {
                    groups.push(gl);
                    groups.len() - 1
                })
            })
            .collect();
        // Per group, per step: the fold so far; groups allocated when first reached.
        type Accs = Vec<Option<Vec<Option<Group>>>>;
        type State = (Buffer, Accs);
        let init = || -> State { (Buffer::default(), (0..groups.len()).map(|_| None).collect()) };
        let states = selection.map_each(
            threads,
            init,
            |(buf, accs): &mut State, i, _, samples| -> Result<(), QueryError> {
                self.admit(samples)?;
                let Some(slots) = series_group.get(i).and_then(|g| accs.get_mut(*g)) else {
                    return Ok(());
                };
                let slots = slots.get_or_insert_with(|| (0..steps).map(|_| None).collect());
                self.each_value(buf.fill(samples), |k, ts, v| {
                    let el = Elem {
                        labels: Labels::default(),
                        t: ts,
                        v,
                    };
                    if let Some(slot) = slots.get_mut(k) {
                        match slot {
                            Some(g) => accumulate(op, g, el),
                            None => *slot = Some(Group::start(op, Labels::default(), el)),
                        }
                    }
                });
                Ok(())
            },
        )?;
        let mut states = states.into_iter().map(|(_, accs)| accs);
        let mut merged = states.next().unwrap_or_default();
        for accs in states {
            for (into, from) in merged.iter_mut().zip(accs) {
                let Some(from) = from else { continue };
                match into {
                    None => *into = Some(from),
                    Some(into) => {
                        for (a, b) in into.iter_mut().zip(from) {
                            let Some(b) = b else { continue };
                            match a {
                                Some(a) => merge(op, a, &b),
                                None => *a = Some(b),
                            }
                        }
                    }
                }
            }
        }
        let mut out = RangeResult::new();
        let mut points = 0usize;
        for (labels, accs) in groups.into_iter().zip(merged) {
            let Some(accs) = accs else { continue };
            let pts: Vec<(i64, f64)> = accs
                .iter()
                .enumerate()
                .filter_map(|(k, g)| Some((time(self.grid, k), g.as_ref()?.simple_value(op)?)))
                .collect();
            if !pts.is_empty() {
                points += pts.len();
                out.insert(labels, pts);
            }
        }
        Ok((
            out,
            points.saturating_add(self.read.load(Ordering::Relaxed)),
        ))
    }
}
