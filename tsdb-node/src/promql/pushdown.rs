//! Aggregation push-down: the part of a clustered query each member evaluates over its own
//! series, and how the coordinator combines the members' partial aggregates.
//!
//! A query whose whole expression is `sum|count|min|max|avg|group [by|without (..)] (<e>)`,
//! where `<e>` is computed from each series alone — a selector or a range function of a range
//! selector (the shapes of [`super::series_eval`]), under any chain of unary minus, arithmetic
//! or comparison with a number, and one-argument math functions — splits by series: each
//! member folds the series it is asked for into one partial aggregate per group and step (the
//! `aggregate::Group` states the streaming path folds on several threads), and the
//! coordinator merges those with `aggregate::merge`. That equals evaluating the query over
//! the merged series as long as every series is evaluated exactly once, on a replica holding
//! all its samples; choosing those replicas is the cluster's job (`cluster::pushdown`).
//!
//! `count`, `min`, `max` and `group` come out bit for bit as the step loop's fold; `sum` and
//! `avg` differ by the rounding of adding the same terms in another order.
//!
//! Dropping the metric name could make two series collide, which the step loop reports as an
//! error; a shape that drops it is pushed down only when its selector names one metric, so no
//! collision is possible.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use promql_parser::parser::{AggregateExpr, Expr, VectorSelector};

use crate::storage::{Engine, Labels, MatchOp, Sample};

use super::aggregate::{accumulate, group_labels, is_mergeable, merge, Group};
use super::binary::{is_elementwise, scalar_drops_name, scalar_elem};
use super::error::QueryError;
use super::eval::{duration_ms, offset_ms, Evaluator};
use super::functions::math;
use super::rollup::Grid;
use super::selector::{matcher_groups, Store};
use super::series_eval::{for_each_value, inner, steps, time, unwrap, Inner, InnerSeries, Source};
use super::value::{drop_name, Elem, Value, METRIC_NAME};

/// What a coordinator asks a member to evaluate.
#[derive(Clone, Debug)]
pub struct PushdownQuery {
    /// The whole query text; [`shape`] must accept it.
    pub query: String,
    pub start: i64,
    pub end: i64,
    /// Zero for an instant query at `start` (= `end`).
    pub step: i64,
    pub lookback_ms: i64,
    /// Most samples all members together may read.
    pub max_samples: usize,
    pub deadline: Instant,
}

impl PushdownQuery {
    pub(crate) fn grid(&self) -> Grid {
        Grid {
            start: self.start,
            end: self.end,
            step: self.step,
        }
    }

    pub fn is_instant(&self) -> bool {
        self.step == 0
    }
}

/// One group's partial aggregates: per step index with a value, `(value, count)` as
/// `Group::partial` gives them.
#[derive(Clone, Debug, PartialEq)]
pub struct PartialGroup {
    pub labels: Labels,
    /// For instant queries, the first series (in label order) that reached the group: the
    /// step loop orders an instant vector's groups by it.
    pub first: Option<Labels>,
    pub points: Vec<(u32, f64, f64)>,
}

/// What one member answers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Partials {
    pub groups: Vec<PartialGroup>,
    /// Samples read, for the query's sample limit.
    pub samples: u64,
}

/// An element-wise step applied to a series' values, innermost first.
#[derive(Clone, Copy)]
enum Step {
    Neg,
    Scalar {
        op: u16,
        scalar: f64,
        scalar_on_left: bool,
        return_bool: bool,
    },
    Math(fn(f64) -> f64),
}

impl Step {
    fn drops_name(self) -> bool {
        match self {
            Step::Neg | Step::Math(_) => true,
            Step::Scalar {
                op, return_bool, ..
            } => scalar_drops_name(op, return_bool),
        }
    }

    fn apply(self, v: f64) -> Option<f64> {
        match self {
            Step::Neg => Some(-v),
            Step::Math(f) => Some(f(v)),
            Step::Scalar {
                op,
                scalar,
                scalar_on_left,
                return_bool,
            } => scalar_elem(op, v, scalar, scalar_on_left, return_bool)
                .ok()
                .flatten(),
        }
    }
}

/// A query that can be pushed down.
pub(crate) struct Shape<'e> {
    agg: &'e AggregateExpr,
    op: u16,
    inner: Inner<'e>,
    steps: Vec<Step>,
    drops_name: bool,
}

/// The push-down shape of `expr`, or `None` when it must be evaluated over raw series.
pub(crate) fn shape(expr: &Expr) -> Option<Shape<'_>> {
    let Expr::Aggregate(agg) = unwrap(expr) else {
        return None;
    };
    let op = agg.op.id();
    if agg.param.is_some() || !is_mergeable(op) {
        return None;
    }
    let mut steps = Vec::new();
    let inner = per_series(&agg.expr, &mut steps)?;
    let vs = selector(&inner);
    if !vs.matchers.or_matchers.is_empty() {
        return None;
    }
    let base_drops = matches!(inner, Inner::RangeCall(name, _) if name != "last_over_time");
    let drops_name = base_drops || steps.iter().any(|s| s.drops_name());
    if drops_name && !names_one_metric(vs) {
        return None;
    }
    Some(Shape {
        agg,
        op,
        inner,
        steps,
        drops_name,
    })
}

fn selector<'e>(inner: &Inner<'e>) -> &'e VectorSelector {
    match inner {
        Inner::Selector(vs) => vs,
        Inner::RangeCall(_, ms) => &ms.vs,
    }
}

fn names_one_metric(vs: &VectorSelector) -> bool {
    matcher_groups(vs)
        .ok()
        .and_then(|g| g.into_iter().next())
        .is_some_and(|ms| {
            ms.iter()
                .any(|m| m.name == METRIC_NAME && m.op == MatchOp::Equal)
        })
}

/// The per-series expression under the aggregation, collecting its element-wise steps.
fn per_series<'e>(e: &'e Expr, steps: &mut Vec<Step>) -> Option<Inner<'e>> {
    match unwrap(e) {
        Expr::Unary(u) => {
            let i = per_series(&u.expr, steps)?;
            steps.push(Step::Neg);
            Some(i)
        }
        Expr::Binary(b) => {
            let op = b.op.id();
            if !is_elementwise(op) {
                return None;
            }
            let return_bool = match &b.modifier {
                None => false,
                Some(m) => {
                    if m.fill_values.lhs.is_some()
                        || m.fill_values.rhs.is_some()
                        || m.matching.is_some()
                    {
                        return None;
                    }
                    m.return_bool
                }
            };
            let (vector, scalar, scalar_on_left) = match (constant(&b.lhs), constant(&b.rhs)) {
                (None, Some(c)) => (&b.lhs, c, false),
                (Some(c), None) => (&b.rhs, c, true),
                _ => return None,
            };
            let i = per_series(vector, steps)?;
            steps.push(Step::Scalar {
                op,
                scalar,
                scalar_on_left,
                return_bool,
            });
            Some(i)
        }
        Expr::Call(c) if c.args.args.len() == 1 => match math::unary(c.func.name) {
            Some(f) => {
                let i = per_series(c.args.args.first()?, steps)?;
                steps.push(Step::Math(f));
                Some(i)
            }
            None => inner(e),
        },
        _ => inner(e),
    }
}

/// A number written in the query (maybe negated or in parentheses).
fn constant(e: &Expr) -> Option<f64> {
    match e {
        Expr::NumberLiteral(n) => Some(n.val),
        Expr::Paren(p) => constant(&p.expr),
        Expr::Unary(u) => constant(&u.expr).map(|v| -v),
        _ => None,
    }
}

impl Shape<'_> {
    /// The samples the selector needs over the whole grid.
    fn time_range(&self, grid: Grid, lookback: i64) -> (i64, i64) {
        match &self.inner {
            Inner::Selector(vs) => {
                let off = offset_ms(&vs.offset);
                (
                    grid.start.saturating_sub(off).saturating_sub(lookback),
                    grid.end.saturating_sub(off),
                )
            }
            Inner::RangeCall(_, ms) => {
                let off = offset_ms(&ms.vs.offset);
                (
                    grid.start
                        .saturating_sub(off)
                        .saturating_sub(duration_ms(&ms.range)),
                    grid.end.saturating_sub(off),
                )
            }
        }
    }

    /// The labels a series has after the per-series expression.
    fn out_labels(&self, l: &Labels) -> Labels {
        if self.drops_name {
            drop_name(l)
        } else {
            l.clone()
        }
    }

    fn aggregate(&self) -> &AggregateExpr {
        self.agg
    }
}

/// Parses `query` and returns its push-down shape, or why it has none.
fn parse(query: &str) -> Result<Expr, QueryError> {
    super::engine::register_functions();
    promql_parser::parser::parse(query).map_err(QueryError::Parse)
}

/// Evaluates `q` over the local engine's series that `keep` accepts, into partial
/// aggregates. `threads` bounds how many threads read and fold series.
pub fn evaluate_local(
    engine: &Engine,
    q: &PushdownQuery,
    keep: &(dyn Fn(&Labels) -> bool + Sync),
    threads: usize,
) -> Result<Partials, QueryError> {
    evaluate_and_digest(engine, q, keep, None, threads).map(|(p, _)| p)
}

/// A digest of samples that does not depend on the order they are visited in: the count and
/// the wrapping sum of a 64-bit hash of each (series seed, timestamp, value bits). Two
/// replicas holding the same samples of the same series have equal digests; one missing,
/// extra or different sample changes the sum (but for a 2^-64 collision).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadDigest {
    pub samples: u64,
    pub sum: u64,
}

impl ReadDigest {
    /// Adds one series' samples; `seed` identifies the series (its ring token).
    pub fn add_series(&mut self, seed: u64, samples: &[Sample]) {
        let mut buf = [0u8; 16];
        for s in samples {
            buf[..8].copy_from_slice(&s.t.to_le_bytes());
            buf[8..].copy_from_slice(&s.v.to_bits().to_le_bytes());
            self.sum = self
                .sum
                .wrapping_add(xxhash_rust::xxh3::xxh3_64_with_seed(&buf, seed));
        }
        self.samples = self.samples.wrapping_add(samples.len() as u64);
    }

    pub fn combine(&mut self, other: ReadDigest) {
        self.samples = self.samples.wrapping_add(other.samples);
        self.sum = self.sum.wrapping_add(other.sum);
    }
}

/// Which read series a push-down request also digests, and into which of `units` digests:
/// `unit_of` gives a series' unit and hash seed, `None` for a series outside every unit.
pub struct DigestUnits<'a> {
    pub units: usize,
    pub unit_of: &'a (dyn Fn(&Labels) -> Option<(usize, u64)> + Sync),
}

/// [`evaluate_local`], reading also the series `digest` names (which need not be evaluated)
/// and answering one [`ReadDigest`] per unit of exactly the samples this read saw. The
/// digests and the evaluation come from the same snapshot of the engine: a digest taken by
/// a later read could include a write that landed after the evaluation read, and so vouch
/// for an answer that lacks it. The partials' `samples` counts evaluated series only (the
/// coordinator's sum is the query's); the sample limit here counts everything read.
pub fn evaluate_and_digest(
    engine: &Engine,
    q: &PushdownQuery,
    keep: &(dyn Fn(&Labels) -> bool + Sync),
    digest: Option<&DigestUnits<'_>>,
    threads: usize,
) -> Result<(Partials, Vec<ReadDigest>), QueryError> {
    let expr = parse(&q.query)?;
    let shape = shape(&expr).ok_or_else(|| {
        QueryError::InvalidArgument(
            "the query is not an aggregation that can be pushed down".into(),
        )
    })?;
    let grid = q.grid();
    if grid.end < grid.start || grid.step < 0 {
        return Err(QueryError::InvalidArgument("malformed time grid".into()));
    }
    let store = Store::default();
    let ev = Evaluator {
        store: &store,
        start: q.start,
        end: q.end,
        lookback: q.lookback_ms,
        default_step: 60_000,
        deadline: q.deadline,
        max_samples: q.max_samples,
    };
    let (mint, maxt) = shape.time_range(grid, q.lookback_ms);
    let groups = matcher_groups(selector(&shape.inner))?;
    let matchers = groups.first().map(Vec::as_slice).unwrap_or(&[]);
    let mut selection = engine.selection(matchers, mint, maxt)?;
    let unit_of = |l: &Labels| digest.and_then(|d| (d.unit_of)(l));
    selection.retain(|l| keep(l) || unit_of(l).is_some());

    let op = shape.op;
    let nsteps = steps(grid);
    let mut group_of: HashMap<Labels, usize> = HashMap::new();
    let mut group_names: Vec<Labels> = Vec::new();
    // Per series: its group when it is evaluated, and its digest unit and seed when it is
    // digested.
    type Roles = (Option<usize>, Option<(usize, u64)>);
    let per_series: Vec<Roles> = selection
        .labels()
        .map(|l| {
            let group = keep(l).then(|| {
                let gl = group_labels(&shape.aggregate().modifier, &shape.out_labels(l));
                *group_of.entry(gl.clone()).or_insert_with(|| {
                    group_names.push(gl);
                    group_names.len() - 1
                })
            });
            (group, unit_of(l))
        })
        .collect();
    let units = digest.map_or(0, |d| d.units);
    let read = AtomicUsize::new(0);
    let evaluated = AtomicUsize::new(0);
    // Per group: the fold per step (allocated when first reached) and the first series that
    // gave it a value.
    type Accs = Vec<Option<(Vec<Option<Group>>, usize)>>;
    type State = (Vec<(i64, f64)>, Accs, Vec<ReadDigest>);
    let init = || -> State {
        (
            Vec::new(),
            (0..group_names.len()).map(|_| None).collect(),
            vec![ReadDigest::default(); units],
        )
    };
    let states = selection.map_each(
        threads,
        init,
        |(buf, accs, digests): &mut State, i, _, samples: &[Sample]| -> Result<(), QueryError> {
            ev.check_deadline()?;
            let total = read.fetch_add(samples.len(), Ordering::Relaxed) + samples.len();
            if total > q.max_samples {
                return Err(QueryError::TooManySamples);
            }
            let Some(&(group, unit)) = per_series.get(i) else {
                return Ok(());
            };
            if let Some(d) = unit.and_then(|(u, seed)| Some((digests.get_mut(u)?, seed))) {
                d.0.add_series(d.1, samples);
            }
            let Some(acc) = group.and_then(|g| accs.get_mut(g)) else {
                return Ok(());
            };
            evaluated.fetch_add(samples.len(), Ordering::Relaxed);
            buf.clear();
            buf.extend(samples.iter().map(|s| (s.t, s.v)));
            let series = InnerSeries {
                labels: std::borrow::Cow::Owned(Labels::default()),
                source: Source::Raw(buf.as_slice()),
            };
            for_each_value(&ev, &shape.inner, &series, grid, |k, ts, v| {
                let Some(v) = shape.steps.iter().try_fold(v, |v, s| s.apply(v)) else {
                    return;
                };
                let (slots, first) =
                    acc.get_or_insert_with(|| ((0..nsteps).map(|_| None).collect(), i));
                *first = (*first).min(i);
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
    let mut digests = vec![ReadDigest::default(); units];
    // Runs are contiguous in label order: merging in run order keeps the fold's order.
    let mut runs = states.into_iter().map(|(_, accs, d)| {
        for (into, from) in digests.iter_mut().zip(d) {
            into.combine(from);
        }
        accs
    });
    let mut merged = runs.next().unwrap_or_default();
    for accs in runs {
        for (into, from) in merged.iter_mut().zip(accs) {
            let Some((from, from_first)) = from else {
                continue;
            };
            match into {
                None => *into = Some((from, from_first)),
                Some((into, first)) => {
                    *first = (*first).min(from_first);
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
    let all_labels: Vec<&Labels> = selection.labels().collect();
    let groups = group_names
        .into_iter()
        .zip(merged)
        .filter_map(|(labels, acc)| {
            let (slots, first) = acc?;
            let points: Vec<(u32, f64, f64)> = slots
                .iter()
                .enumerate()
                .filter_map(|(k, g)| {
                    let (v, c) = g.as_ref()?.partial(op);
                    Some((u32::try_from(k).ok()?, v, c))
                })
                .collect();
            (!points.is_empty()).then(|| PartialGroup {
                labels,
                first: q
                    .is_instant()
                    .then(|| all_labels.get(first).map(|l| (*l).clone()))
                    .flatten(),
                points,
            })
        })
        .collect();
    Ok((
        Partials {
            groups,
            samples: evaluated.load(Ordering::Relaxed) as u64,
        },
        digests,
    ))
}

/// Merges the members' partial aggregates into the query's answer. `parts` come in a fixed
/// order (the caller's), so repeated queries round the same way.
pub(crate) fn finish(
    shape: &Shape,
    q: &PushdownQuery,
    parts: Vec<Partials>,
) -> Result<Value, QueryError> {
    let op = shape.op;
    let grid = q.grid();
    let nsteps = steps(grid);
    let mut samples: usize = 0;
    let mut index: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<(Labels, Option<Labels>, Vec<Option<Group>>)> = Vec::new();
    for part in parts {
        samples = samples.saturating_add(usize::try_from(part.samples).unwrap_or(usize::MAX));
        if samples > q.max_samples {
            return Err(QueryError::TooManySamples);
        }
        for g in part.groups {
            let gi = *index.entry(g.labels.clone()).or_insert_with(|| {
                groups.push((g.labels, None, (0..nsteps).map(|_| None).collect()));
                groups.len() - 1
            });
            let Some((_, first, slots)) = groups.get_mut(gi) else {
                continue;
            };
            if let Some(f) = g.first {
                if first.as_ref().is_none_or(|cur| f < *cur) {
                    *first = Some(f);
                }
            }
            for (k, v, c) in g.points {
                let slot = usize::try_from(k)
                    .ok()
                    .and_then(|k| slots.get_mut(k))
                    .ok_or_else(|| QueryError::exec("a member answered a step out of range"))?;
                let b = Group::from_partial(op, Labels::default(), v, c);
                match slot {
                    Some(a) => merge(op, a, &b),
                    None => *slot = Some(b),
                }
            }
        }
    }
    let mut points = 0usize;
    if q.is_instant() {
        // Groups in the order the step loop meets them: by their first series.
        groups.sort_by(|a, b| match (&a.1, &b.1) {
            (Some(x), Some(y)) => x.cmp(y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.0.cmp(&b.0),
        });
        let out: Vec<(Labels, i64, f64)> = groups
            .into_iter()
            .filter_map(|(labels, _, slots)| {
                let v = slots.first()?.as_ref()?.simple_value(op)?;
                Some((labels, q.start, v))
            })
            .collect();
        points += out.len();
        check(samples.saturating_add(points), q.max_samples)?;
        return Ok(Value::Vector(out));
    }
    let mut out = std::collections::BTreeMap::new();
    for (labels, _, slots) in groups {
        let pts: Vec<(i64, f64)> = slots
            .iter()
            .enumerate()
            .filter_map(|(k, g)| Some((time(grid, k), g.as_ref()?.simple_value(op)?)))
            .collect();
        if !pts.is_empty() {
            points += pts.len();
            out.insert(labels, pts);
        }
    }
    check(samples.saturating_add(points), q.max_samples)?;
    Ok(Value::Matrix(out.into_iter().collect()))
}

fn check(n: usize, max: usize) -> Result<(), QueryError> {
    if n > max {
        return Err(QueryError::TooManySamples);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(q: &str) -> Expr {
        promql_parser::parser::parse(q).unwrap()
    }

    #[test]
    fn shapes_that_are_pushed_down() {
        for q in [
            "sum(m)",
            "sum by (a) (rate(m[5m]))",
            "avg without (a) (irate(m{a=\"x\"}[1m]))",
            "count(m > 3)",
            "max(m * 2 + 1)",
            "min(-abs(delta(m[5m])))",
            "group by (a) (m)",
            "sum(sum_over_time(m[10m]) / 60)",
            "sum(2 ^ m)",
            "sum(m > bool 2)",
            "sum(last_over_time({__name__=~\"a|b\"}[5m]))",
            "sum({__name__=~\"a|b\"} > 1)",
            "sum(ln(m offset 5m))",
        ] {
            assert!(shape(&parsed(q)).is_some(), "{q}");
        }
    }

    #[test]
    fn shapes_that_are_not() {
        for q in [
            "m",
            "rate(m[5m])",
            "topk(3, m)",
            "quantile(0.5, m)",
            "stddev(m)",
            "sum(m) * 2",
            "sum(m + m)",
            "sum(m @ 100)",
            "sum(rate(m[5m] @ 100))",
            "sum(rate({__name__=~\"a|b\"}[5m]))",
            "sum({__name__=~\"a|b\"} * 2)",
            "sum(m{a=\"1\" or b=\"2\"})",
            "sum(m and m)",
            "sum(clamp_min(m, 0))",
            "sum(rate(m[5m:1m]))",
            "sum(holt_winters(m[5m], 0.5, 0.5))",
            "sum(time() - m)",
        ] {
            register();
            let e = match promql_parser::parser::parse(q) {
                Ok(e) => e,
                Err(_) => continue,
            };
            assert!(shape(&e).is_none(), "{q}");
        }
    }

    fn register() {
        super::super::engine::register_functions();
    }

    #[test]
    fn steps_apply_like_the_binary_operators() {
        let e = parsed("sum(-(m * 2 > 3))");
        let s = shape(&e).unwrap();
        let apply = |v: f64| s.steps.iter().try_fold(v, |v, st| st.apply(v));
        assert_eq!(apply(1.0), None);
        assert_eq!(apply(2.0), Some(-4.0));
        let e = parsed("sum(10 - m)");
        let s = shape(&e).unwrap();
        assert_eq!(s.steps.iter().try_fold(3.0, |v, st| st.apply(v)), Some(7.0));
        let e = parsed("sum(5 < m)");
        let s = shape(&e).unwrap();
        // A filter yields the vector's value, whichever side the scalar is on.
        assert_eq!(s.steps.iter().try_fold(6.0, |v, st| st.apply(v)), Some(6.0));
        assert!(!s.drops_name);
    }
}
