//! Aggregation operators (`sum by (...)`, `topk`, `count_values`, ...), as Prometheus 2.42's
//! `aggregation()` with plain (not compensated) summation.

use std::collections::HashMap;

use promql_parser::parser::token::{
    T_AVG, T_BOTTOMK, T_COUNT, T_COUNT_VALUES, T_GROUP, T_MAX, T_MIN, T_QUANTILE, T_STDDEV,
    T_STDVAR, T_SUM, T_TOPK,
};
use promql_parser::parser::{AggregateExpr, LabelModifier};

use crate::storage::Labels;

use super::error::QueryError;
use super::eval::Evaluator;
use super::functions::labels::valid_label_name;
use super::functions::range::quantile;
use super::value::{keep_only, with_label, without, Elem, StepValue, METRIC_NAME};

pub(crate) struct Group {
    labels: Labels,
    value: f64,
    mean: f64,
    count: f64,
    values: Vec<f64>,
    members: Vec<Elem>,
}

impl Group {
    /// A group whose first element is `el`.
    pub(crate) fn start(op: u16, labels: Labels, el: Elem) -> Group {
        let mut g = Group {
            labels,
            value: el.v,
            mean: el.v,
            count: 1.0,
            values: Vec::new(),
            members: Vec::new(),
        };
        match op {
            T_STDDEV | T_STDVAR => g.value = 0.0,
            T_QUANTILE => g.values.push(el.v),
            T_TOPK | T_BOTTOMK => g.members.push(el),
            _ => {}
        }
        g
    }

    /// The result of the aggregations that fold values one by one (`sum`, `avg`, `min`,
    /// `max`, `count`, `group`, `stddev`, `stdvar`); `None` for the others.
    pub(crate) fn simple_value(&self, op: u16) -> Option<f64> {
        Some(match op {
            T_AVG => self.mean,
            T_COUNT => self.count,
            T_STDVAR => self.value / self.count,
            T_STDDEV => (self.value / self.count).sqrt(),
            T_GROUP => 1.0,
            T_SUM | T_MIN | T_MAX => self.value,
            _ => return None,
        })
    }
}

impl Group {
    /// The state another node needs to [`merge`] this group's fold of `op` into its own:
    /// `(value, count)`, where value is the running mean for `avg`, the count for `count`,
    /// and the folded value for `sum`, `min` and `max` (`group` needs neither); the count
    /// is 1 except for `avg`.
    pub(crate) fn partial(&self, op: u16) -> (f64, f64) {
        match op {
            T_AVG => (self.mean, self.count),
            T_COUNT => (self.count, 1.0),
            _ => (self.value, 1.0),
        }
    }

    /// A group holding what [`Group::partial`] gave for `op`.
    pub(crate) fn from_partial(op: u16, labels: Labels, value: f64, count: f64) -> Group {
        Group {
            labels,
            value,
            mean: value,
            count: if op == T_COUNT { value } else { count },
            values: Vec::new(),
            members: Vec::new(),
        }
    }
}

/// Whether `op` is one of those [`Group::simple_value`] answers.
pub(crate) fn is_simple(op: u16) -> bool {
    matches!(
        op,
        T_SUM | T_AVG | T_MIN | T_MAX | T_COUNT | T_GROUP | T_STDDEV | T_STDVAR
    )
}

/// The grouping labels an aggregation's modifier gives `l`.
pub(crate) fn group_labels(modifier: &Option<LabelModifier>, l: &Labels) -> Labels {
    match modifier {
        None => Labels::default(),
        Some(LabelModifier::Include(names)) => keep_only(l, &names.labels),
        Some(LabelModifier::Exclude(names)) => {
            let dropped = without(l, &names.labels);
            without(&dropped, &[METRIC_NAME.to_string()])
        }
    }
}

/// How the grouping labels of an element are chosen.
enum Grouping {
    All,
    By(Vec<String>),
    Without(Vec<String>),
}

impl Grouping {
    fn labels(&self, l: &Labels) -> Labels {
        match self {
            Grouping::All => Labels::default(),
            Grouping::By(names) => keep_only(l, names),
            Grouping::Without(names) => without(l, names),
        }
    }
}

/// Evaluates an aggregation at `ts`.
pub(crate) fn eval(ev: &Evaluator, agg: &AggregateExpr, ts: i64) -> Result<StepValue, QueryError> {
    let op = agg.op.id();
    let mut grouping = match &agg.modifier {
        None => Grouping::All,
        Some(LabelModifier::Include(l)) => Grouping::By(l.labels.clone()),
        Some(LabelModifier::Exclude(l)) => {
            let mut names = l.labels.clone();
            names.push(METRIC_NAME.to_string());
            Grouping::Without(names)
        }
    };
    let mut k: i64 = 0;
    let mut q = 0.0;
    let mut value_label = String::new();
    if let Some(param) = &agg.param {
        match op {
            T_TOPK | T_BOTTOMK => {
                // Go's float-to-int conversion truncates, as `as` does.
                k = ev.eval_scalar(param, ts)? as i64;
                if k < 1 {
                    return Ok(StepValue::Vector(Vec::new()));
                }
            }
            T_QUANTILE => q = ev.eval_scalar(param, ts)?,
            T_COUNT_VALUES => match ev.eval(param, ts)? {
                StepValue::String(s) => {
                    if !valid_label_name(&s) {
                        return Err(QueryError::exec(format!("invalid label name {s:?}")));
                    }
                    match &mut grouping {
                        Grouping::By(names) => names.push(s.clone()),
                        Grouping::All => grouping = Grouping::By(vec![s.clone()]),
                        Grouping::Without(_) => {}
                    }
                    value_label = s;
                }
                other => {
                    return Err(QueryError::exec(format!(
                        "count_values expects a string parameter, got {}",
                        other.kind()
                    )))
                }
            },
            _ => {}
        }
    }
    let input = ev.eval_vector(&agg.expr, ts)?;

    let mut order: Vec<Vec<u8>> = Vec::new();
    let mut groups: HashMap<Vec<u8>, Group> = HashMap::new();
    for mut el in input {
        if op == T_COUNT_VALUES {
            el.labels = with_label(&el.labels, &value_label, &format_value(el.v));
        }
        let glabels = grouping.labels(&el.labels);
        let key = glabels.series_key();
        match groups.get_mut(&key) {
            None => {
                order.push(key.clone());
                groups.insert(key, Group::start(op, glabels, el));
            }
            Some(g) => accumulate(op, g, el),
        }
    }

    let mut out = Vec::with_capacity(order.len());
    for key in order {
        let Some(g) = groups.remove(&key) else {
            continue;
        };
        let value = match op {
            T_AVG => g.mean,
            T_COUNT | T_COUNT_VALUES => g.count,
            T_STDVAR => g.value / g.count,
            T_STDDEV => (g.value / g.count).sqrt(),
            T_QUANTILE => quantile(q, g.values),
            T_GROUP => 1.0,
            T_TOPK | T_BOTTOMK => {
                out.extend(select_k(g.members, k, op == T_TOPK, ts));
                continue;
            }
            T_SUM | T_MIN | T_MAX => g.value,
            _ => {
                return Err(QueryError::exec(format!(
                    "aggregation {} is not supported",
                    agg.op
                )))
            }
        };
        out.push(Elem {
            labels: g.labels,
            t: ts,
            v: value,
        });
    }
    Ok(StepValue::Vector(out))
}

pub(crate) fn accumulate(op: u16, g: &mut Group, el: Elem) {
    let v = el.v;
    match op {
        T_SUM => g.value += v,
        T_AVG => {
            g.count += 1.0;
            if g.mean.is_infinite() {
                // Inf - Inf would turn a correct infinite mean into NaN.
                if v.is_infinite() && (g.mean > 0.0) == (v > 0.0) {
                    return;
                }
                if !v.is_infinite() && !v.is_nan() {
                    return;
                }
            }
            // Each side divided by the count first, so that large values do not overflow.
            g.mean += v / g.count - g.mean / g.count;
        }
        T_GROUP => {}
        T_COUNT | T_COUNT_VALUES => g.count += 1.0,
        T_MAX if g.value < v || g.value.is_nan() => g.value = v,
        T_MIN if g.value > v || g.value.is_nan() => g.value = v,
        T_STDVAR | T_STDDEV => {
            g.count += 1.0;
            let delta = v - g.mean;
            g.mean += delta / g.count;
            g.value += delta * (v - g.mean);
        }
        T_TOPK | T_BOTTOMK => g.members.push(el),
        T_QUANTILE => g.values.push(v),
        _ => {}
    }
}

/// Whether partial states of `op` over consecutive runs of series can be combined by
/// [`merge`] (the moment-based `stddev`/`stdvar` are left to one sequential fold).
pub(crate) fn is_mergeable(op: u16) -> bool {
    matches!(op, T_SUM | T_AVG | T_MIN | T_MAX | T_COUNT | T_GROUP)
}

/// Folds `b`, the state of the same group over series that come after `a`'s, into `a`. Equals
/// folding those series into `a` one by one, up to the rounding of `sum` and `avg`.
pub(crate) fn merge(op: u16, a: &mut Group, b: &Group) {
    match op {
        T_SUM => a.value += b.value,
        T_COUNT => a.count += b.count,
        T_MIN | T_MAX => accumulate(
            op,
            a,
            Elem {
                labels: Labels::default(),
                t: 0,
                v: b.value,
            },
        ),
        T_AVG => {
            let n = a.count + b.count;
            a.mean = if a.mean.is_finite() && b.mean.is_finite() {
                // Weighted per side, so that means near the float limit do not overflow.
                a.mean * (a.count / n) + b.mean * (b.count / n)
            } else {
                // An infinite mean stays unless the other side brings the opposite infinity
                // or a NaN, as in the one-by-one fold; addition gives exactly that.
                a.mean + b.mean
            };
            a.count = n;
        }
        _ => {}
    }
}

/// The `k` largest (or smallest) elements, in that order; NaN ranks last either way.
fn select_k(mut members: Vec<Elem>, k: i64, top: bool, ts: i64) -> Vec<Elem> {
    members.sort_by(|a, b| match (a.v.is_nan(), b.v.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ if top => b.v.partial_cmp(&a.v).unwrap_or(std::cmp::Ordering::Equal),
        _ => a.v.partial_cmp(&b.v).unwrap_or(std::cmp::Ordering::Equal),
    });
    members.truncate(usize::try_from(k).unwrap_or(usize::MAX));
    for el in &mut members {
        el.t = ts;
    }
    members
}

/// A value as Go's `strconv.FormatFloat(v, 'f', -1, 64)` writes it.
pub(crate) fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go() {
        assert_eq!(format_value(1.5), "1.5");
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(1e21), "1000000000000000000000");
    }

    #[test]
    fn select_k_orders_and_truncates() {
        let mk = |v| Elem {
            labels: Labels::default(),
            t: 0,
            v,
        };
        let out = select_k(vec![mk(1.0), mk(f64::NAN), mk(3.0), mk(2.0)], 2, true, 5);
        assert_eq!(out.iter().map(|e| e.v).collect::<Vec<_>>(), vec![3.0, 2.0]);
        let out = select_k(vec![mk(1.0), mk(f64::NAN), mk(3.0)], 5, false, 5);
        assert_eq!(out[0].v, 1.0);
        assert!(out[2].v.is_nan());
    }
}
