//! The AST walk: the value of an expression at one evaluation time.
//!
//! A range query evaluates the whole tree once per step. Selectors read from data loaded once
//! for the query (see [`super::selector`]), so a step costs CPU, never storage reads.

use std::collections::HashMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use promql_parser::parser::{
    AtModifier, Expr, MatrixSelector, Offset, SubqueryExpr, VectorSelector,
};

use crate::storage::Labels;

use super::error::QueryError;
use super::rollup::{fold_window, WindowFold};
use super::selector::{self, Store};
use super::value::{drop_name, Elem, RangeSeries, StepValue};
use super::{aggregate, binary, functions};

/// Everything a step's evaluation needs; shared by all steps of a query.
pub(crate) struct Evaluator<'a> {
    pub store: &'a Store,
    /// The query's start and end, which `@ start()` and `@ end()` refer to.
    pub start: i64,
    pub end: i64,
    pub lookback: i64,
    /// Step of subqueries written without one (`[5m:]`).
    pub default_step: i64,
    pub deadline: Instant,
    pub max_samples: usize,
}

/// The window a range-vector argument covered, which rate-like functions extrapolate to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RangeInfo {
    pub start: i64,
    pub end: i64,
    pub range_ms: i64,
}

impl Evaluator<'_> {
    pub fn check_deadline(&self) -> Result<(), QueryError> {
        if Instant::now() > self.deadline {
            return Err(QueryError::Timeout);
        }
        Ok(())
    }

    /// The value of `e` at `ts` (ms).
    pub fn eval(&self, e: &Expr, ts: i64) -> Result<StepValue, QueryError> {
        match e {
            Expr::NumberLiteral(n) => Ok(StepValue::Scalar(n.val)),
            Expr::StringLiteral(s) => Ok(StepValue::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr, ts),
            Expr::Unary(u) => match self.eval(&u.expr, ts)? {
                StepValue::Scalar(v) => Ok(StepValue::Scalar(-v)),
                StepValue::Vector(vec) => Ok(StepValue::Vector(
                    vec.into_iter()
                        .map(|el| Elem {
                            labels: drop_name(&el.labels),
                            t: ts,
                            v: -el.v,
                        })
                        .collect(),
                )),
                other => Err(QueryError::exec(format!(
                    "unary minus is not defined on {}",
                    other.kind()
                ))),
            },
            Expr::VectorSelector(vs) => {
                let mut v = self.eval_vector_selector(vs, ts);
                for el in &mut v {
                    el.t = ts;
                }
                Ok(StepValue::Vector(v))
            }
            Expr::MatrixSelector(ms) => Ok(StepValue::Matrix(self.eval_matrix_selector(ms, ts).0)),
            Expr::Subquery(sq) => Ok(StepValue::Matrix(self.eval_subquery(sq, ts)?.0)),
            Expr::Call(call) => functions::call(self, call, ts),
            Expr::Aggregate(agg) => aggregate::eval(self, agg, ts),
            Expr::Binary(b) => binary::eval(self, b, ts),
            Expr::Extension(_) => Err(QueryError::exec("extension expressions are not supported")),
        }
    }

    /// Evaluates `e`, which must give an instant vector.
    pub fn eval_vector(&self, e: &Expr, ts: i64) -> Result<Vec<Elem>, QueryError> {
        match self.eval(e, ts)? {
            StepValue::Vector(v) => Ok(v),
            other => Err(QueryError::exec(format!(
                "expected instant vector, got {}",
                other.kind()
            ))),
        }
    }

    /// Evaluates `e`, which must give a scalar.
    pub fn eval_scalar(&self, e: &Expr, ts: i64) -> Result<f64, QueryError> {
        match self.eval(e, ts)? {
            StepValue::Scalar(v) => Ok(v),
            other => Err(QueryError::exec(format!(
                "expected scalar, got {}",
                other.kind()
            ))),
        }
    }

    /// Evaluates a range-vector argument (a range selector or a subquery, maybe in parentheses).
    pub fn eval_range_arg(
        &self,
        e: &Expr,
        ts: i64,
    ) -> Result<(Vec<RangeSeries>, RangeInfo), QueryError> {
        match e {
            Expr::Paren(p) => self.eval_range_arg(&p.expr, ts),
            Expr::MatrixSelector(ms) => Ok(self.eval_matrix_selector(ms, ts)),
            Expr::Subquery(sq) => self.eval_subquery(sq, ts),
            _ => Err(QueryError::exec("expected range vector")),
        }
    }

    /// The time a node with `@`/`offset` is evaluated at, before the offset is applied.
    pub fn at_time(&self, at: &Option<AtModifier>, ts: i64) -> i64 {
        match at {
            None => ts,
            Some(AtModifier::Start) => self.start,
            Some(AtModifier::End) => self.end,
            Some(AtModifier::At(t)) => system_time_ms(*t),
        }
    }

    /// An instant selector's samples at `ts`, each with its own timestamp.
    pub fn eval_vector_selector(&self, vs: &VectorSelector, ts: i64) -> Vec<Elem> {
        let t = self
            .at_time(&vs.at, ts)
            .saturating_sub(offset_ms(&vs.offset));
        self.store
            .series(vs)
            .iter()
            .filter_map(|s| {
                selector::at_time(&s.samples, t, self.lookback).map(|(st, v)| Elem {
                    labels: s.labels.clone(),
                    t: st,
                    v,
                })
            })
            .collect()
    }

    /// The windows of `ms` at `ts` folded from rollups, per series, when the planner chose
    /// rollups for it; empty otherwise. Series read raw are in [`Self::eval_range_arg`].
    pub fn bucketed_folds(&self, ms: &MatrixSelector, ts: i64) -> Vec<(&Labels, WindowFold)> {
        let Some(b) = self.store.bucketed(&ms.vs) else {
            return Vec::new();
        };
        let range_ms = duration_ms(&ms.range);
        let end = self
            .at_time(&ms.vs.at, ts)
            .saturating_sub(offset_ms(&ms.vs.offset));
        b.series
            .iter()
            .map(|s| {
                let f = fold_window(&s.buckets, &s.edges, end, range_ms, b.read.resolution);
                (&s.labels, f)
            })
            .filter(|(_, f)| f.count > 0)
            .collect()
    }

    fn eval_matrix_selector(&self, ms: &MatrixSelector, ts: i64) -> (Vec<RangeSeries>, RangeInfo) {
        let range_ms = duration_ms(&ms.range);
        let end = self
            .at_time(&ms.vs.at, ts)
            .saturating_sub(offset_ms(&ms.vs.offset));
        let start = end.saturating_sub(range_ms);
        let series = self
            .store
            .series(&ms.vs)
            .iter()
            .filter_map(|s| {
                let points = selector::window(&s.samples, start, end);
                (!points.is_empty()).then(|| RangeSeries {
                    labels: s.labels.clone(),
                    points,
                })
            })
            .collect();
        (
            series,
            RangeInfo {
                start,
                end,
                range_ms,
            },
        )
    }

    fn eval_subquery(
        &self,
        sq: &SubqueryExpr,
        ts: i64,
    ) -> Result<(Vec<RangeSeries>, RangeInfo), QueryError> {
        let range_ms = duration_ms(&sq.range);
        let step = sq
            .step
            .as_ref()
            .map(duration_ms)
            .filter(|s| *s > 0)
            .unwrap_or(self.default_step);
        let end = self
            .at_time(&sq.at, ts)
            .saturating_sub(offset_ms(&sq.offset));
        let start = end.saturating_sub(range_ms);
        // Inner steps are aligned to multiples of the step, as Prometheus does, so that every
        // outer step sees the same inner evaluation times.
        let mut t = step.saturating_mul(start / step);
        if t < start {
            t = t.saturating_add(step);
        }
        let mut order: Vec<Labels> = Vec::new();
        let mut by_labels: HashMap<Labels, Vec<(i64, f64)>> = HashMap::new();
        let mut points = 0usize;
        while t <= end {
            self.check_deadline()?;
            let vals = match self.eval(&sq.expr, t)? {
                StepValue::Vector(v) => v,
                StepValue::Scalar(v) => vec![Elem {
                    labels: Labels::default(),
                    t,
                    v,
                }],
                other => {
                    return Err(QueryError::exec(format!(
                        "subquery is only allowed on instant vectors, got {}",
                        other.kind()
                    )))
                }
            };
            points += vals.len();
            if points > self.max_samples {
                return Err(QueryError::TooManySamples);
            }
            for el in vals {
                match by_labels.get_mut(&el.labels) {
                    Some(p) => p.push((t, el.v)),
                    None => {
                        order.push(el.labels.clone());
                        by_labels.insert(el.labels, vec![(t, el.v)]);
                    }
                }
            }
            match t.checked_add(step) {
                Some(next) => t = next,
                None => break,
            }
        }
        let series = order
            .into_iter()
            .filter_map(|l| {
                let points = by_labels.remove(&l)?;
                Some(RangeSeries { labels: l, points })
            })
            .collect();
        Ok((
            series,
            RangeInfo {
                start,
                end,
                range_ms,
            },
        ))
    }
}

/// The window `[end - range, end]` a range selector reads when evaluated at `time`
/// (`end` is `time` less the selector's offset).
pub(crate) fn instant_window(ms: &promql_parser::parser::MatrixSelector, time: i64) -> RangeInfo {
    let range_ms = duration_ms(&ms.range);
    let end = time.saturating_sub(offset_ms(&ms.vs.offset));
    RangeInfo {
        start: end.saturating_sub(range_ms),
        end,
        range_ms,
    }
}

/// Milliseconds of an `offset` (negative offsets look ahead).
pub(crate) fn offset_ms(o: &Option<Offset>) -> i64 {
    match o {
        None => 0,
        Some(Offset::Pos(d)) => duration_ms(d),
        Some(Offset::Neg(d)) => -duration_ms(d),
    }
}

pub(crate) fn duration_ms(d: &std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn system_time_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => duration_ms(&d),
        Err(e) => -duration_ms(&e.duration()),
    }
}
