//! PromQL functions: argument evaluation and dispatch. The arithmetic lives in the submodules,
//! one per family.

pub(crate) mod date;
pub(crate) mod histogram;
pub(crate) mod labels;
pub(crate) mod math;
pub(crate) mod range;

use std::collections::HashSet;

use promql_parser::parser::{Call, Expr};

use crate::storage::Labels;

use super::error::QueryError;
use super::eval::{Evaluator, RangeInfo};
use super::selector::absent_labels;
use super::value::{drop_name, Elem, StepValue};

/// Errors out if two elements share a label set, as Prometheus does after dropping names.
pub(crate) fn check_unique(v: &[Elem]) -> Result<(), QueryError> {
    let mut seen: HashSet<&Labels> = HashSet::with_capacity(v.len());
    for el in v {
        if !seen.insert(&el.labels) {
            return Err(QueryError::exec(
                "vector cannot contain metrics with the same labelset",
            ));
        }
    }
    Ok(())
}

fn arg(call: &Call, i: usize) -> Result<&Expr, QueryError> {
    call.args.args.get(i).map(|b| b.as_ref()).ok_or_else(|| {
        QueryError::exec(format!(
            "missing argument {} of {}()",
            i + 1,
            call.func.name
        ))
    })
}

fn string_arg(ev: &Evaluator, call: &Call, i: usize, ts: i64) -> Result<String, QueryError> {
    match ev.eval(arg(call, i)?, ts)? {
        StepValue::String(s) => Ok(s),
        other => Err(QueryError::exec(format!(
            "argument {} of {}() must be a string, got {}",
            i + 1,
            call.func.name,
            other.kind()
        ))),
    }
}

fn unwrap_parens(mut e: &Expr) -> &Expr {
    while let Expr::Paren(p) = e {
        e = &p.expr;
    }
    e
}

/// Evaluates a function call at `ts`.
pub(crate) fn call(ev: &Evaluator, call: &Call, ts: i64) -> Result<StepValue, QueryError> {
    let name = call.func.name;
    if let Some(f) = math::unary(name) {
        let v = ev.eval_vector(arg(call, 0)?, ts)?;
        return map_vector(v, ts, f);
    }
    if let Some(f) = date::date_fn(name) {
        return match call.args.args.first() {
            None => Ok(StepValue::Vector(vec![Elem {
                labels: Labels::default(),
                t: ts,
                v: date::apply_ms(f, ts),
            }])),
            Some(a) => {
                let v = ev.eval_vector(a, ts)?;
                map_vector(v, ts, |x| date::apply(f, x))
            }
        };
    }
    match name {
        "time" => Ok(StepValue::Scalar(ts as f64 / 1000.0)),
        "pi" => Ok(StepValue::Scalar(std::f64::consts::PI)),
        "holt_winters" | "double_exponential_smoothing" => {
            let (series, _) = ev.eval_range_arg(arg(call, 0)?, ts)?;
            let sf = ev.eval_scalar(arg(call, 1)?, ts)?;
            let tf = ev.eval_scalar(arg(call, 2)?, ts)?;
            // Checked only when there is data, as Prometheus does.
            if !series.is_empty() {
                if sf <= 0.0 || sf >= 1.0 {
                    return Err(QueryError::exec(format!(
                        "invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:.6}"
                    )));
                }
                if tf <= 0.0 || tf >= 1.0 {
                    return Err(QueryError::exec(format!(
                        "invalid trend factor. Expected: 0 < tf < 1, got: {tf:.6}"
                    )));
                }
            }
            let out: Vec<Elem> = series
                .into_iter()
                .filter_map(|s| {
                    date::holt_winters(&s.points, sf, tf).map(|v| Elem {
                        labels: drop_name(&s.labels),
                        t: ts,
                        v,
                    })
                })
                .collect();
            check_unique(&out)?;
            Ok(StepValue::Vector(out))
        }
        "rate" | "increase" | "delta" | "irate" | "idelta" | "deriv" | "avg_over_time"
        | "sum_over_time" | "min_over_time" | "max_over_time" | "count_over_time"
        | "last_over_time" | "stddev_over_time" | "stdvar_over_time" | "present_over_time"
        | "changes" | "resets" => {
            let (series, info) = ev.eval_range_arg(arg(call, 0)?, ts)?;
            let keep_name = name == "last_over_time";
            let mut out = Vec::with_capacity(series.len());
            if let Expr::MatrixSelector(ms) = unwrap_parens(arg(call, 0)?) {
                // Series the planner answered from rollups; `series` holds the rest.
                for (labels, f) in ev.bucketed_folds(ms, ts) {
                    if let Some(v) = f.over_time(name) {
                        out.push(Elem {
                            labels: drop_name(labels),
                            t: ts,
                            v,
                        });
                    }
                }
            }
            for s in series {
                if let Some(v) = range_fn(name, &s.points, info) {
                    let labels = if keep_name {
                        s.labels
                    } else {
                        drop_name(&s.labels)
                    };
                    out.push(Elem { labels, t: ts, v });
                }
            }
            check_unique(&out)?;
            Ok(StepValue::Vector(out))
        }
        "quantile_over_time" => {
            let q = ev.eval_scalar(arg(call, 0)?, ts)?;
            let (series, _) = ev.eval_range_arg(arg(call, 1)?, ts)?;
            let out: Vec<Elem> = series
                .into_iter()
                .map(|s| Elem {
                    labels: drop_name(&s.labels),
                    t: ts,
                    v: range::quantile(q, s.points.iter().map(|p| p.1).collect()),
                })
                .collect();
            check_unique(&out)?;
            Ok(StepValue::Vector(out))
        }
        "predict_linear" => {
            let (series, _) = ev.eval_range_arg(arg(call, 0)?, ts)?;
            let d = ev.eval_scalar(arg(call, 1)?, ts)?;
            let out: Vec<Elem> = series
                .into_iter()
                .filter_map(|s| {
                    range::predict_linear(&s.points, ts, d).map(|v| Elem {
                        labels: drop_name(&s.labels),
                        t: ts,
                        v,
                    })
                })
                .collect();
            check_unique(&out)?;
            Ok(StepValue::Vector(out))
        }
        "absent_over_time" => {
            let a = unwrap_parens(arg(call, 0)?);
            let (series, _) = ev.eval_range_arg(a, ts)?;
            if !series.is_empty() {
                return Ok(StepValue::Vector(Vec::new()));
            }
            let labels = match a {
                Expr::MatrixSelector(ms) => absent_labels(&ms.vs),
                _ => Labels::default(),
            };
            Ok(StepValue::Vector(vec![Elem {
                labels,
                t: ts,
                v: 1.0,
            }]))
        }
        "absent" => {
            let a = unwrap_parens(arg(call, 0)?);
            if !ev.eval_vector(a, ts)?.is_empty() {
                return Ok(StepValue::Vector(Vec::new()));
            }
            let labels = match a {
                Expr::VectorSelector(vs) => absent_labels(vs),
                _ => Labels::default(),
            };
            Ok(StepValue::Vector(vec![Elem {
                labels,
                t: ts,
                v: 1.0,
            }]))
        }
        "round" => {
            let v = ev.eval_vector(arg(call, 0)?, ts)?;
            let to_nearest = match call.args.args.get(1) {
                Some(e) => ev.eval_scalar(e, ts)?,
                None => 1.0,
            };
            map_vector(v, ts, |x| math::round(x, to_nearest))
        }
        "clamp" => {
            let v = ev.eval_vector(arg(call, 0)?, ts)?;
            let min = ev.eval_scalar(arg(call, 1)?, ts)?;
            let max = ev.eval_scalar(arg(call, 2)?, ts)?;
            if max < min {
                return Ok(StepValue::Vector(Vec::new()));
            }
            map_vector(v, ts, |x| math::go_max(min, math::go_min(max, x)))
        }
        "clamp_min" => {
            let v = ev.eval_vector(arg(call, 0)?, ts)?;
            let min = ev.eval_scalar(arg(call, 1)?, ts)?;
            map_vector(v, ts, |x| math::go_max(min, x))
        }
        "clamp_max" => {
            let v = ev.eval_vector(arg(call, 0)?, ts)?;
            let max = ev.eval_scalar(arg(call, 1)?, ts)?;
            map_vector(v, ts, |x| math::go_min(max, x))
        }
        "timestamp" => {
            // A selector given directly keeps its samples' own timestamps; any other
            // expression is stamped with the evaluation time.
            let v = match unwrap_parens(arg(call, 0)?) {
                Expr::VectorSelector(vs) => ev.eval_vector_selector(vs, ts),
                other => ev.eval_vector(other, ts)?,
            };
            let out: Vec<Elem> = v
                .into_iter()
                .map(|el| Elem {
                    labels: drop_name(&el.labels),
                    t: ts,
                    v: el.t as f64 / 1000.0,
                })
                .collect();
            check_unique(&out)?;
            Ok(StepValue::Vector(out))
        }
        "vector" => {
            let s = ev.eval_scalar(arg(call, 0)?, ts)?;
            Ok(StepValue::Vector(vec![Elem {
                labels: Labels::default(),
                t: ts,
                v: s,
            }]))
        }
        "scalar" => {
            let v = ev.eval_vector(arg(call, 0)?, ts)?;
            Ok(StepValue::Scalar(match v.as_slice() {
                [only] => only.v,
                _ => f64::NAN,
            }))
        }
        "label_replace" => {
            let v = ev.eval_vector(arg(call, 0)?, ts)?;
            let dst = string_arg(ev, call, 1, ts)?;
            let repl = string_arg(ev, call, 2, ts)?;
            let src = string_arg(ev, call, 3, ts)?;
            let re = string_arg(ev, call, 4, ts)?;
            let out = labels::label_replace(v, &dst, &repl, &src, &re)?;
            check_unique(&out)?;
            Ok(StepValue::Vector(stamp(out, ts)))
        }
        "label_join" => {
            let v = ev.eval_vector(arg(call, 0)?, ts)?;
            let dst = string_arg(ev, call, 1, ts)?;
            let sep = string_arg(ev, call, 2, ts)?;
            let mut srcs = Vec::new();
            for i in 3..call.args.args.len() {
                srcs.push(string_arg(ev, call, i, ts)?);
            }
            let out = labels::label_join(v, &dst, &sep, &srcs)?;
            check_unique(&out)?;
            Ok(StepValue::Vector(stamp(out, ts)))
        }
        "histogram_quantile" => {
            let q = ev.eval_scalar(arg(call, 0)?, ts)?;
            let v = ev.eval_vector(arg(call, 1)?, ts)?;
            Ok(StepValue::Vector(histogram::histogram_quantile(q, v, ts)))
        }
        "sort" | "sort_desc" => {
            let mut v = ev.eval_vector(arg(call, 0)?, ts)?;
            let desc = name == "sort_desc";
            // NaN first in both directions, as Prometheus' sort comparators put it.
            v.sort_by(|a, b| match (a.v.is_nan(), b.v.is_nan()) {
                (true, true) => std::cmp::Ordering::Equal,
                (true, false) => std::cmp::Ordering::Less,
                (false, true) => std::cmp::Ordering::Greater,
                _ if desc => b.v.partial_cmp(&a.v).unwrap_or(std::cmp::Ordering::Equal),
                _ => a.v.partial_cmp(&b.v).unwrap_or(std::cmp::Ordering::Equal),
            });
            Ok(StepValue::Vector(stamp(v, ts)))
        }
        other => Err(QueryError::exec(format!(
            "function {other}() is not supported"
        ))),
    }
}

fn stamp(mut v: Vec<Elem>, ts: i64) -> Vec<Elem> {
    for el in &mut v {
        el.t = ts;
    }
    v
}

/// Applies `f` to every element, dropping the metric name.
fn map_vector(v: Vec<Elem>, ts: i64, f: impl Fn(f64) -> f64) -> Result<StepValue, QueryError> {
    let out: Vec<Elem> = v
        .into_iter()
        .map(|el| Elem {
            labels: drop_name(&el.labels),
            t: ts,
            v: f(el.v),
        })
        .collect();
    check_unique(&out)?;
    Ok(StepValue::Vector(out))
}

/// The range functions that need nothing but the window's samples.
pub(crate) fn range_fn(name: &str, p: &[(i64, f64)], info: RangeInfo) -> Option<f64> {
    match name {
        "rate" => range::extrapolated_rate(p, info, true, true),
        "increase" => range::extrapolated_rate(p, info, true, false),
        "delta" => range::extrapolated_rate(p, info, false, false),
        "irate" => range::instant_value(p, true),
        "idelta" => range::instant_value(p, false),
        "deriv" => range::deriv(p),
        _ if p.is_empty() => None,
        "avg_over_time" => Some(range::avg_over_time(p)),
        "sum_over_time" => Some(range::sum_over_time(p)),
        "min_over_time" => Some(range::min_over_time(p)),
        "max_over_time" => Some(range::max_over_time(p)),
        "count_over_time" => Some(p.len() as f64),
        "last_over_time" => p.last().map(|x| x.1),
        "stddev_over_time" => Some(range::stdvar_over_time(p).sqrt()),
        "stdvar_over_time" => Some(range::stdvar_over_time(p)),
        "present_over_time" => Some(1.0),
        "changes" => Some(range::changes(p)),
        "resets" => Some(range::resets(p)),
        _ => None,
    }
}
