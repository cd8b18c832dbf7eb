//! Instant queries of one range selector — the selector itself, or a range function of it —
//! evaluated while the local engine streams each series, instead of after loading them.
//!
//! The loading path copies a series three times before evaluating it (storage samples into
//! the store's `(t, v)` pairs, then the window slice into a range vector); for a day of one
//! series that copying cost as much as the evaluation. Here each series is merged from its
//! sources into the engine's buffer, its window (staleness markers left out, as
//! [`super::selector::window`] does) copied once into a reused buffer, and handed to the same
//! range function the step loop uses, so the answer is the same bit for bit.
//!
//! Only a local engine, a selector without `@` or `or` matcher groups, and a window the
//! planner would not answer from rollups (that path reads little data already) are taken.

use promql_parser::parser::Expr;

use crate::storage::{Engine, Labels};

use super::error::QueryError;
use super::eval::{instant_window, RangeInfo};
use super::functions::{check_unique, range_fn};
use super::rollup::{self, Grid};
use super::selector::matcher_groups;
use super::series_eval::{inner, unwrap, Inner};
use super::value::{drop_name, is_stale_nan, Elem, Value};

/// Evaluates `expr` at `time` by streaming from `engine` if it has a shape this module takes;
/// `None` otherwise (the caller then loads and evaluates as usual). `resolutions` are the
/// rollup resolutions the planner would use; `max_samples` bounds samples read plus points
/// returned, as on the loading path.
pub(crate) fn try_instant(
    engine: &Engine,
    expr: &Expr,
    time: i64,
    resolutions: &[i64],
    max_samples: usize,
) -> Option<Result<Value, QueryError>> {
    let (name, ms) = match unwrap(expr) {
        Expr::MatrixSelector(ms) if ms.vs.at.is_none() => (None, ms),
        e => match inner(e)? {
            Inner::RangeCall(name, ms) => (Some(name), ms),
            Inner::Selector(_) => return None,
        },
    };
    if !ms.vs.matchers.or_matchers.is_empty() {
        return None;
    }
    if name.is_some_and(|n| rollup::ROLLUP_FUNCTIONS.contains(&n))
        && rollup::plan(ms, Grid::instant(time), resolutions).is_some()
    {
        return None;
    }
    let info = instant_window(ms, time);
    Some(evaluate(engine, &ms.vs, name, info, time, max_samples))
}

fn evaluate(
    engine: &Engine,
    vs: &promql_parser::parser::VectorSelector,
    name: Option<&str>,
    info: RangeInfo,
    time: i64,
    max_samples: usize,
) -> Result<Value, QueryError> {
    let groups = matcher_groups(vs)?;
    let Some(matchers) = groups.first() else {
        return Ok(Value::Vector(Vec::new()));
    };
    let selection = engine.selection(matchers, info.start, info.end)?;
    struct State {
        cost: usize,
        window: Vec<(i64, f64)>,
        matrix: Vec<(Labels, Vec<(i64, f64)>)>,
        vector: Vec<Elem>,
    }
    let init = || State {
        cost: 0,
        window: Vec::new(),
        matrix: Vec::new(),
        vector: Vec::new(),
    };
    // One thread: the series come in label order, as the loading path sorts them.
    let mut states = selection.map_each(1, init, |st: &mut State, _, labels, samples| {
        st.cost = st.cost.saturating_add(samples.len());
        if st.cost > max_samples {
            return Err(QueryError::TooManySamples);
        }
        let window = samples
            .iter()
            .filter(|s| !is_stale_nan(s.v))
            .map(|s| (s.t, s.v));
        match name {
            None => {
                let mut points = Vec::with_capacity(samples.len());
                if samples.iter().any(|s| is_stale_nan(s.v)) {
                    points.extend(window);
                } else {
                    // Without markers to skip, the copy has a known length and compiles to
                    // straight moves instead of a push per sample.
                    points.extend(samples.iter().map(|s| (s.t, s.v)));
                }
                if !points.is_empty() {
                    st.cost = st.cost.saturating_add(points.len());
                    if st.cost > max_samples {
                        return Err(QueryError::TooManySamples);
                    }
                    st.matrix.push((labels.clone(), points));
                }
            }
            Some(name) => {
                st.window.clear();
                st.window.extend(window);
                if let Some(v) = range_fn(name, &st.window, info) {
                    let labels = if name == "last_over_time" {
                        labels.clone()
                    } else {
                        drop_name(labels)
                    };
                    st.vector.push(Elem { labels, t: time, v });
                }
            }
        }
        Ok(())
    })?;
    let st = states.pop().unwrap_or_else(init);
    if name.is_none() {
        return Ok(Value::Matrix(st.matrix));
    }
    check_unique(&st.vector)?;
    Ok(Value::Vector(
        st.vector
            .into_iter()
            .map(|e| (e.labels, e.t, e.v))
            .collect(),
    ))
}
