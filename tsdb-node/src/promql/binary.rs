//! Binary operators: arithmetic, comparisons (filtering or `bool`), and the set operators
//! `and`/`or`/`unless`, with `on`/`ignoring`/`group_left`/`group_right` vector matching, as
//! Prometheus 2.42's `VectorBinop`, `VectorscalarBinop` and `resultMetric`.

use std::collections::{HashMap, HashSet};

use promql_parser::parser::token::{
    T_ADD, T_ATAN2, T_DIV, T_EQLC, T_GTE, T_GTR, T_LAND, T_LOR, T_LSS, T_LTE, T_LUNLESS, T_MOD,
    T_MUL, T_NEQ, T_POW, T_SUB,
};
use promql_parser::parser::{BinModifier, BinaryExpr, LabelModifier, VectorMatchCardinality};

use crate::storage::Labels;

use super::error::QueryError;
use super::eval::Evaluator;
use super::functions::check_unique;
use super::value::{
    drop_name, keep_only, signature, with_label, without, Elem, StepValue, METRIC_NAME,
};

/// Evaluates `lhs op rhs` at `ts`.
pub(crate) fn eval(ev: &Evaluator, b: &BinaryExpr, ts: i64) -> Result<StepValue, QueryError> {
    let op = b.op.id();
    let default_modifier = BinModifier::default();
    let m = b.modifier.as_ref().unwrap_or(&default_modifier);
    if m.fill_values.lhs.is_some() || m.fill_values.rhs.is_some() {
        return Err(QueryError::exec("fill modifiers are not supported"));
    }
    let lhs = ev.eval(&b.lhs, ts)?;
    let rhs = ev.eval(&b.rhs, ts)?;
    let comparison = is_comparison(op);
    match (lhs, rhs) {
        (StepValue::Scalar(l), StepValue::Scalar(r)) => {
            let (v, keep) = elem_op(op, l, r)?;
            Ok(StepValue::Scalar(if comparison {
                if keep {
                    1.0
                } else {
                    0.0
                }
            } else {
                v
            }))
        }
        (StepValue::Vector(l), StepValue::Scalar(r)) => {
            vector_scalar(op, l, r, false, m.return_bool, ts).map(StepValue::Vector)
        }
        (StepValue::Scalar(l), StepValue::Vector(r)) => {
            vector_scalar(op, r, l, true, m.return_bool, ts).map(StepValue::Vector)
        }
        (StepValue::Vector(l), StepValue::Vector(r)) => {
            let (on, names) = match &m.matching {
                Some(LabelModifier::Include(l)) => (true, l.labels.clone()),
                Some(LabelModifier::Exclude(l)) => (false, l.labels.clone()),
                None => (false, Vec::new()),
            };
            let out = match op {
                T_LAND | T_LOR | T_LUNLESS => set_op(op, l, r, on, &names, ts),
                _ => vector_vector(op, l, r, on, &names, &m.card, m.return_bool, ts)?,
            };
            Ok(StepValue::Vector(out))
        }
        (l, r) => Err(QueryError::exec(format!(
            "binary operator not defined between {} and {}",
            l.kind(),
            r.kind()
        ))),
    }
}

fn is_comparison(op: u16) -> bool {
    matches!(op, T_EQLC | T_NEQ | T_GTR | T_LSS | T_GTE | T_LTE)
}

/// Whether the operator's result is no longer the metric the name describes.
fn drops_name(op: u16) -> bool {
    matches!(op, T_ADD | T_SUB | T_MUL | T_DIV | T_POW | T_MOD | T_ATAN2)
}

/// The value of `l op r`, and for comparisons whether it holds.
fn elem_op(op: u16, l: f64, r: f64) -> Result<(f64, bool), QueryError> {
    Ok(match op {
        T_ADD => (l + r, true),
        T_SUB => (l - r, true),
        T_MUL => (l * r, true),
        T_DIV => (l / r, true),
        T_POW => (l.powf(r), true),
        T_MOD => (l % r, true),
        T_ATAN2 => (l.atan2(r), true),
        T_EQLC => (l, l == r),
        T_NEQ => (l, l != r),
        T_GTR => (l, l > r),
        T_LSS => (l, l < r),
        T_GTE => (l, l >= r),
        T_LTE => (l, l <= r),
        _ => {
            return Err(QueryError::exec(format!(
                "operator {op} is not defined on numbers"
            )))
        }
    })
}

fn vector_scalar(
    op: u16,
    vec: Vec<Elem>,
    scalar: f64,
    scalar_on_left: bool,
    return_bool: bool,
    ts: i64,
) -> Result<Vec<Elem>, QueryError> {
    let mut out = Vec::with_capacity(vec.len());
    for el in vec {
        if let Some(value) = scalar_elem(op, el.v, scalar, scalar_on_left, return_bool)? {
            let labels = if scalar_drops_name(op, return_bool) {
                drop_name(&el.labels)
            } else {
                el.labels
            };
            out.push(Elem {
                labels,
                t: ts,
                v: value,
            });
        }
    }
    check_unique(&out)?;
    Ok(out)
}

/// One element of `vector op scalar` (or `scalar op vector`): its value, or `None` when a
/// filtering comparison drops it. Shared with aggregation push-down, which applies it to a
/// series' values without building vectors.
pub(crate) fn scalar_elem(
    op: u16,
    v: f64,
    scalar: f64,
    scalar_on_left: bool,
    return_bool: bool,
) -> Result<Option<f64>, QueryError> {
    let (l, r) = if scalar_on_left {
        (scalar, v)
    } else {
        (v, scalar)
    };
    let (mut value, mut keep) = elem_op(op, l, r)?;
    // A filtering comparison always yields the vector's value, whichever side it is on.
    if is_comparison(op) && scalar_on_left {
        value = r;
    }
    if return_bool {
        value = if keep { 1.0 } else { 0.0 };
        keep = true;
    }
    Ok(keep.then_some(value))
}

/// Whether `vector op scalar` drops the metric name from its elements.
pub(crate) fn scalar_drops_name(op: u16, return_bool: bool) -> bool {
    drops_name(op) || return_bool
}

/// Whether `op` between a vector and a scalar is defined element by element (arithmetic and
/// comparisons; not the set operators).
pub(crate) fn is_elementwise(op: u16) -> bool {
    drops_name(op) || is_comparison(op)
}

fn sig(l: &Labels, on: bool, names: &[String]) -> Vec<u8> {
    if on {
        signature(l, true, names)
    } else {
        // `ignoring` always ignores the metric name too.
        let mut ignored = names.to_vec();
        ignored.push(METRIC_NAME.to_string());
        signature(l, false, &ignored)
    }
}

fn set_op(op: u16, l: Vec<Elem>, r: Vec<Elem>, on: bool, names: &[String], ts: i64) -> Vec<Elem> {
    let stamp = |mut el: Elem| {
        el.t = ts;
        el
    };
    match op {
        T_LAND => {
            let right: HashSet<Vec<u8>> = r.iter().map(|e| sig(&e.labels, on, names)).collect();
            l.into_iter()
                .filter(|e| right.contains(&sig(&e.labels, on, names)))
                .map(stamp)
                .collect()
        }
        T_LUNLESS => {
            let right: HashSet<Vec<u8>> = r.iter().map(|e| sig(&e.labels, on, names)).collect();
            l.into_iter()
                .filter(|e| !right.contains(&sig(&e.labels, on, names)))
                .map(stamp)
                .collect()
        }
        _ => {
            let left: HashSet<Vec<u8>> = l.iter().map(|e| sig(&e.labels, on, names)).collect();
            let mut out: Vec<Elem> = l.into_iter().map(stamp).collect();
            out.extend(
                r.into_iter()
                    .filter(|e| !left.contains(&sig(&e.labels, on, names)))
                    .map(stamp),
            );
            out
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn vector_vector(
    op: u16,
    mut lhs: Vec<Elem>,
    mut rhs: Vec<Elem>,
    on: bool,
    names: &[String],
    card: &VectorMatchCardinality,
    return_bool: bool,
    ts: i64,
) -> Result<Vec<Elem>, QueryError> {
    // One-to-many is many-to-one with the sides swapped; values are swapped back below.
    let one_to_many = matches!(card, VectorMatchCardinality::OneToMany(_));
    if one_to_many {
        std::mem::swap(&mut lhs, &mut rhs);
    }
    let include: Option<&Vec<String>> = match card {
        VectorMatchCardinality::ManyToOne(l) | VectorMatchCardinality::OneToMany(l) => {
            Some(&l.labels)
        }
        _ => None,
    };
    let one_to_one = include.is_none();

    let mut right: HashMap<Vec<u8>, Elem> = HashMap::with_capacity(rhs.len());
    for el in rhs {
        let s = sig(&el.labels, on, names);
        if let Some(dup) = right.get(&s) {
            let side = if one_to_many { "left" } else { "right" };
            return Err(QueryError::exec(format!(
                "found duplicate series for the match group on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                el.labels, dup.labels
            )));
        }
        right.insert(s, el);
    }

    let mut matched: HashMap<Vec<u8>, HashSet<Labels>> = HashMap::new();
    let mut out = Vec::new();
    for ls in lhs {
        let s = sig(&ls.labels, on, names);
        let Some(rs) = right.get(&s) else {
            continue;
        };
        let (vl, vr) = if one_to_many {
            (rs.v, ls.v)
        } else {
            (ls.v, rs.v)
        };
        let (mut value, keep) = elem_op(op, vl, vr)?;
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
        } else if !keep {
            continue;
        }
        let mut metric = result_metric(&ls.labels, &rs.labels, op, on, names, include);
        if return_bool {
            metric = drop_name(&metric);
        }
        let seen = matched.entry(s).or_default();
        if one_to_one {
            if !seen.is_empty() {
                return Err(QueryError::exec(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                ));
            }
        } else if seen.contains(&metric) {
            return Err(QueryError::exec(
                "multiple matches for labels: grouping labels must ensure unique results",
            ));
        }
        seen.insert(metric.clone());
        out.push(Elem {
            labels: metric,
            t: ts,
            v: value,
        });
    }
    Ok(out)
}

/// The labels of a vector-vector result element, from the "many" side (`lhs`).
fn result_metric(
    lhs: &Labels,
    rhs: &Labels,
    op: u16,
    on: bool,
    names: &[String],
    include: Option<&Vec<String>>,
) -> Labels {
    let mut l = if drops_name(op) {
        drop_name(lhs)
    } else {
        lhs.clone()
    };
    match include {
        None => {
            l = if on {
                keep_only(&l, names)
            } else {
                without(&l, names)
            };
        }
        Some(extra) => {
            // Labels named in group_x are copied from the "one" side.
            for n in extra {
                l = with_label(&l, n, rhs.get(n).unwrap_or(""));
            }
        }
    }
    l
}
