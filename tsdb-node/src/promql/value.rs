//! Query results and the values the evaluator passes between nodes.

use crate::storage::{Label, Labels};

/// The label that carries the metric name.
pub const METRIC_NAME: &str = "__name__";

/// A query's result, as the Prometheus HTTP API types it.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Timestamp (ms) and value.
    Scalar(i64, f64),
    /// Timestamp (ms) and string.
    String(i64, String),
    /// One sample per series: labels, timestamp (ms), value.
    Vector(Vec<(Labels, i64, f64)>),
    /// Samples per series, in time order.
    Matrix(Vec<(Labels, Vec<(i64, f64)>)>),
}

impl Value {
    /// The API's `resultType`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar(..) => "scalar",
            Value::String(..) => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// A result and the warnings produced while computing it.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryResult {
    pub value: Value,
    pub warnings: Vec<String>,
}

/// One element of an instant vector during evaluation.
#[derive(Clone, Debug)]
pub(crate) struct Elem {
    pub labels: Labels,
    /// The sample's own timestamp when it came straight from a selector (`timestamp()` reads
    /// it); the evaluation time otherwise.
    pub t: i64,
    pub v: f64,
}

/// One series of a range vector during evaluation.
#[derive(Clone, Debug)]
pub(crate) struct RangeSeries {
    pub labels: Labels,
    pub points: Vec<(i64, f64)>,
}

/// The value of an expression at one evaluation time.
#[derive(Clone, Debug)]
pub(crate) enum StepValue {
    Scalar(f64),
    String(String),
    Vector(Vec<Elem>),
    Matrix(Vec<RangeSeries>),
}

impl StepValue {
    pub fn kind(&self) -> &'static str {
        match self {
            StepValue::Scalar(_) => "scalar",
            StepValue::String(_) => "string",
            StepValue::Vector(_) => "instant vector",
            StepValue::Matrix(_) => "range vector",
        }
    }
}

/// The label set without the metric name.
pub(crate) fn drop_name(l: &Labels) -> Labels {
    if l.metric_name().is_none() {
        return l.clone();
    }
    Labels::new(
        l.iter()
            .filter(|x| x.name != METRIC_NAME)
            .cloned()
            .collect(),
    )
}

/// Only the named labels.
pub(crate) fn keep_only(l: &Labels, names: &[String]) -> Labels {
    Labels::new(
        l.iter()
            .filter(|x| names.contains(&x.name))
            .cloned()
            .collect(),
    )
}

/// All labels but the named ones.
pub(crate) fn without(l: &Labels, names: &[String]) -> Labels {
    Labels::new(
        l.iter()
            .filter(|x| !names.contains(&x.name))
            .cloned()
            .collect(),
    )
}

/// The label set with `name` set to `value` (removed when `value` is empty).
pub(crate) fn with_label(l: &Labels, name: &str, value: &str) -> Labels {
    let mut v: Vec<Label> = l.iter().filter(|x| x.name != name).cloned().collect();
    if !value.is_empty() {
        v.push(Label::new(name, value));
    }
    Labels::new(v)
}

/// A hashable key of the labels `names` (`on`) or of all labels but `names` (`ignoring`).
pub(crate) fn signature(l: &Labels, on: bool, names: &[String]) -> Vec<u8> {
    let mut key = Vec::new();
    for x in l.iter() {
        let listed = names.contains(&x.name);
        if listed == on {
            key.extend_from_slice(x.name.as_bytes());
            key.push(0xFF);
            key.extend_from_slice(x.value.as_bytes());
            key.push(0xFF);
        }
    }
    key
}

/// Whether `v` is the staleness marker Prometheus writes when a series disappears.
pub(crate) fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// Bit pattern of Prometheus' staleness marker.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_helpers() {
        let l = Labels::from_metric("m", &[("a", "1"), ("b", "2")]);
        assert_eq!(
            drop_name(&l),
            Labels::new(vec![Label::new("a", "1"), Label::new("b", "2")])
        );
        assert_eq!(
            keep_only(&l, &["a".into()]),
            Labels::new(vec![Label::new("a", "1")])
        );
        assert_eq!(without(&l, &["a".into(), METRIC_NAME.into()]).len(), 1);
        assert_eq!(with_label(&l, "a", "").get("a"), None);
        assert_eq!(with_label(&l, "c", "3").get("c"), Some("3"));
        assert_eq!(signature(&l, true, &["a".into()]), b"a\xff1\xff".to_vec());
        assert!(is_stale_nan(f64::from_bits(STALE_NAN_BITS)));
        assert!(!is_stale_nan(f64::NAN));
    }
}
