//! Per-node series limits and validation of label sets before a new series is created.
//!
//! Validation runs on every series creation, which happens on the ingest path, so the
//! character checks are hand-written byte loops rather than regular expressions.

use crate::storage::model::{Labels, METRIC_NAME_LABEL};

/// Longest label name, value or series rendering quoted in an error message, in characters.
/// Errors end up in HTTP responses and logs; echoing a 4 KiB value back helps nobody.
const MAX_ERROR_SNIPPET_CHARS: usize = 100;

/// Limits that protect a node from cardinality explosions and oversized label sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeriesLimits {
    /// Maximum number of live series in the catalog. Only enforced when creating a series
    /// through ingestion; recovery never drops already-accepted series.
    pub max_series: usize,
    /// Maximum number of labels per series, including `__name__`.
    pub max_labels_per_series: usize,
    /// Maximum length of a label name in bytes (`__name__` itself is exempt).
    pub max_label_name_len: usize,
    /// Maximum length of a label value (including the metric name) in bytes.
    pub max_label_value_len: usize,
}

impl Default for SeriesLimits {
    fn default() -> Self {
        SeriesLimits {
            max_series: 10_000_000,
            max_labels_per_series: 64,
            max_label_name_len: 256,
            max_label_value_len: 4096,
        }
    }
}

/// Why a label set was rejected. Every variant names the offending label or value so that
/// the user can fix the producer without guessing; long strings are truncated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// The label set has no `__name__` label.
    #[error("series {series} has no metric name (label `__name__` is missing)")]
    MissingMetricName {
        /// The rejected series, rendered and truncated.
        series: String,
    },
    /// The metric name does not match `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    #[error("invalid metric name {name:?}: must match [a-zA-Z_:][a-zA-Z0-9_:]*")]
    InvalidMetricName {
        /// The metric name, truncated.
        name: String,
    },
    /// A label name does not match `[a-zA-Z_][a-zA-Z0-9_]*`.
    #[error("invalid label name {name:?}: must match [a-zA-Z_][a-zA-Z0-9_]*")]
    InvalidLabelName {
        /// The label name, truncated.
        name: String,
    },
    /// A label name starts with `__`, which is reserved for internal labels.
    #[error("label name {name:?} is reserved: names starting with \"__\" are for internal use")]
    ReservedLabelName {
        /// The label name, truncated.
        name: String,
    },
    /// The series has more labels than allowed.
    #[error("series {series} has {count} labels, more than the limit of {limit}")]
    TooManyLabels {
        /// The rejected series, rendered and truncated.
        series: String,
        /// Number of labels in the series, including `__name__`.
        count: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A label name is longer than allowed.
    #[error("label name {name:?} is {len} bytes long, more than the limit of {limit}")]
    LabelNameTooLong {
        /// The label name, truncated.
        name: String,
        /// Actual length in bytes.
        len: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A label value is longer than allowed.
    #[error(
        "value {value:?} of label {name:?} is {len} bytes long, more than the limit of {limit}"
    )]
    LabelValueTooLong {
        /// The label name, truncated.
        name: String,
        /// The label value, truncated.
        value: String,
        /// Actual length in bytes.
        len: usize,
        /// The configured limit.
        limit: usize,
    },
    /// Creating the series would exceed the series limit of the node.
    #[error("series limit of {limit} reached: no new series can be created")]
    TooManySeries {
        /// The configured limit.
        limit: usize,
    },
}

/// Checks that `labels` may become a new series: metric name present and well-formed, label
/// names well-formed and not reserved, and all size limits respected.
///
/// Does not check `max_series`; the catalog does that because it knows the current count.
pub fn validate_labels(labels: &Labels, limits: &SeriesLimits) -> Result<(), LimitError> {
    if labels.len() > limits.max_labels_per_series {
        return Err(LimitError::TooManyLabels {
            series: truncate(&labels.to_string()),
            count: labels.len(),
            limit: limits.max_labels_per_series,
        });
    }
    let mut has_metric_name = false;
    for label in labels.iter() {
        let (name, value) = (label.name.as_str(), label.value.as_str());
        // `__name__` is fixed by the data model, so the name limit cannot sensibly apply to it.
        if name.len() > limits.max_label_name_len && name != METRIC_NAME_LABEL {
            return Err(LimitError::LabelNameTooLong {
                name: truncate(name),
                len: name.len(),
                limit: limits.max_label_name_len,
            });
        }
        if value.len() > limits.max_label_value_len {
            return Err(LimitError::LabelValueTooLong {
                name: truncate(name),
                value: truncate(value),
                len: value.len(),
                limit: limits.max_label_value_len,
            });
        }
        if name == METRIC_NAME_LABEL {
            if !is_valid_metric_name(value) {
                return Err(LimitError::InvalidMetricName {
                    name: truncate(value),
                });
            }
            has_metric_name = true;
        } else if !is_valid_label_name(name) {
            return Err(LimitError::InvalidLabelName {
                name: truncate(name),
            });
        } else if name.starts_with("__") {
            return Err(LimitError::ReservedLabelName {
                name: truncate(name),
            });
        }
    }
    if !has_metric_name {
        return Err(LimitError::MissingMetricName {
            series: truncate(&labels.to_string()),
        });
    }
    Ok(())
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
fn is_valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`
fn is_valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Cuts `s` to at most [`MAX_ERROR_SNIPPET_CHARS`] characters, marking the cut with `…`.
pub(crate) fn truncate(s: &str) -> String {
    match s.char_indices().nth(MAX_ERROR_SNIPPET_CHARS) {
        Some((cut, _)) => {
            let mut out = String::with_capacity(cut + 3);
            out.push_str(&s[..cut]);
            out.push('…');
            out
        }
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::model::Label;

    fn series(pairs: &[(&str, &str)]) -> Labels {
        Labels::new(pairs.iter().map(|(n, v)| Label::new(*n, *v)).collect())
    }

    #[test]
    fn accepts_well_formed_series() {
        let limits = SeriesLimits::default();
        let l = series(&[
            ("__name__", "node:cpu_seconds:rate5m"),
            ("_private", "x"),
            ("device_id", "dev-000123"),
            ("Zone9", "é ünïcode \n value"),
        ]);
        assert_eq!(validate_labels(&l, &limits), Ok(()));
    }

    #[test]
    fn metric_name_is_required_and_checked() {
        let limits = SeriesLimits::default();
        let err = validate_labels(&series(&[("job", "x")]), &limits).unwrap_err();
        assert!(matches!(err, LimitError::MissingMetricName { .. }), "{err}");
        assert!(err.to_string().contains("job=\"x\""), "{err}");
        for bad in ["1abc", "a-b", "a b", "é", "a.b"] {
            let err = validate_labels(&series(&[("__name__", bad)]), &limits).unwrap_err();
            assert_eq!(err, LimitError::InvalidMetricName { name: bad.into() });
        }
        for good in ["a", "_", ":", "a:b_c9", "A"] {
            assert_eq!(
                validate_labels(&series(&[("__name__", good)]), &limits),
                Ok(())
            );
        }
    }

    #[test]
    fn label_names_are_checked() {
        let limits = SeriesLimits::default();
        for bad in ["", "1a", "a:b", "a-b", "é"] {
            let err =
                validate_labels(&series(&[("__name__", "m"), (bad, "v")]), &limits).unwrap_err();
            assert_eq!(err, LimitError::InvalidLabelName { name: bad.into() });
        }
        for reserved in ["__", "__x", "__name", "__name___"] {
            let err = validate_labels(&series(&[("__name__", "m"), (reserved, "v")]), &limits)
                .unwrap_err();
            assert_eq!(
                err,
                LimitError::ReservedLabelName {
                    name: reserved.into()
                }
            );
        }
    }

    #[test]
    fn size_limits_are_enforced() {
        let limits = SeriesLimits {
            max_series: 1,
            max_labels_per_series: 3,
            max_label_name_len: 4,
            max_label_value_len: 5,
        };
        let err = validate_labels(
            &series(&[("__name__", "m"), ("a", "1"), ("b", "2"), ("c", "3")]),
            &limits,
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                LimitError::TooManyLabels {
                    count: 4,
                    limit: 3,
                    ..
                }
            ),
            "{err}"
        );

        let err =
            validate_labels(&series(&[("__name__", "m"), ("abcde", "1")]), &limits).unwrap_err();
        assert!(
            matches!(
                err,
                LimitError::LabelNameTooLong {
                    len: 5,
                    limit: 4,
                    ..
                }
            ),
            "{err}"
        );
        // `__name__` itself is longer than 4 bytes, but it is exempt from the name limit.
        assert_eq!(
            validate_labels(&series(&[("__name__", "m")]), &limits),
            Ok(())
        );

        let limits = SeriesLimits {
            max_label_name_len: 8,
            ..limits
        };
        let err =
            validate_labels(&series(&[("__name__", "m"), ("a", "123456")]), &limits).unwrap_err();
        assert_eq!(
            err,
            LimitError::LabelValueTooLong {
                name: "a".into(),
                value: "123456".into(),
                len: 6,
                limit: 5
            }
        );
        let err = validate_labels(&series(&[("__name__", "metric")]), &limits).unwrap_err();
        assert!(matches!(err, LimitError::LabelValueTooLong { .. }), "{err}");
        assert_eq!(
            validate_labels(&series(&[("__name__", "m"), ("a", "12345")]), &limits),
            Ok(())
        );
    }

    #[test]
    fn long_values_are_truncated_in_messages() {
        let long = "ü".repeat(5000);
        let limits = SeriesLimits::default();
        let err =
            validate_labels(&series(&[("__name__", "m"), ("a", &long)]), &limits).unwrap_err();
        let msg = err.to_string();
        assert!(msg.len() < 400, "{msg}");
        assert!(msg.contains("10000 bytes"), "{msg}");
        assert!(msg.contains('…'), "{msg}");
        assert_eq!(truncate("short"), "short");
        assert_eq!(truncate(&"x".repeat(100)), "x".repeat(100));
        assert_eq!(truncate(&"x".repeat(101)), format!("{}…", "x".repeat(100)));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn validation_never_panics_and_agrees_with_regexes(
                pairs in proptest::collection::vec((".{0,6}", ".{0,6}"), 0..6),
                metric in proptest::option::of(".{0,6}"),
            ) {
                let mut v: Vec<Label> = pairs.iter().map(|(n, val)| Label::new(n.clone(), val.clone())).collect();
                if let Some(m) = &metric {
                    v.push(Label::new(METRIC_NAME_LABEL, m.clone()));
                }
                let labels = Labels::new(v);
                let result = validate_labels(&labels, &SeriesLimits::default());
                let metric_re = regex::Regex::new("^[a-zA-Z_:][a-zA-Z0-9_:]*$").unwrap();
                let label_re = regex::Regex::new("^[a-zA-Z_][a-zA-Z0-9_]*$").unwrap();
                let expected_ok = labels.metric_name().is_some_and(|m| metric_re.is_match(m))
                    && labels.iter().filter(|l| l.name != METRIC_NAME_LABEL)
                        .all(|l| label_re.is_match(&l.name) && !l.name.starts_with("__"));
                prop_assert_eq!(result.is_ok(), expected_ok, "{:?}", result);
            }
        }
    }
}
