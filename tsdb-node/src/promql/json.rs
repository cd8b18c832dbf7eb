//! The Prometheus HTTP API's `data` object for a query result, byte for byte as Prometheus
//! writes it (timestamps as seconds with millisecond fraction, values as strings).

use std::fmt::Write;

use crate::storage::Labels;

use super::value::{QueryResult, Value};

/// Renders `{"resultType":...,"result":...}`.
pub fn render_data(result: &QueryResult) -> String {
    let mut out = String::with_capacity(256);
    render_data_into(result, &mut out);
    out
}

/// Appends what [`render_data`] returns to `out`, formatting every number in place: a day of
/// points is rendered without an allocation per point.
pub fn render_data_into(result: &QueryResult, out: &mut String) {
    out.push_str("{\"resultType\":\"");
    out.push_str(result.value.type_name());
    out.push_str("\",\"result\":");
    match &result.value {
        Value::Scalar(t, v) => push_point(out, *t, *v),
        Value::String(t, s) => {
            out.push('[');
            push_timestamp(out, *t);
            out.push(',');
            push_json_string(out, s);
            out.push(']');
        }
        Value::Vector(samples) => {
            out.push('[');
            for (i, (labels, t, v)) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                push_labels(out, labels);
                out.push_str(",\"value\":");
                push_point(out, *t, *v);
                out.push('}');
            }
            out.push(']');
        }
        Value::Matrix(series) => {
            out.push('[');
            for (i, (labels, points)) in series.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"metric\":");
                push_labels(out, labels);
                out.push_str(",\"values\":[");
                // About 24 bytes per point: reserve once instead of growing repeatedly.
                out.reserve(points.len().saturating_mul(24));
                for (j, (t, v)) in points.iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    push_point(out, *t, *v);
                }
                out.push_str("]}");
            }
            out.push(']');
        }
    }
    out.push('}');
}

fn push_point(out: &mut String, t: i64, v: f64) {
    out.push('[');
    push_timestamp(out, t);
    out.push_str(",\"");
    // A formatted value never holds a character JSON needs escaped.
    push_sample_value(out, v);
    out.push_str("\"]");
}

fn push_labels(out: &mut String, labels: &Labels) {
    out.push('{');
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_json_string(out, &l.name);
        out.push(':');
        push_json_string(out, &l.value);
    }
    out.push('}');
}

fn push_json_string(out: &mut String, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
        return;
    }
    // serde_json never fails to encode a &str.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string()));
}

fn push_timestamp(out: &mut String, ms: i64) {
    let abs = ms.unsigned_abs();
    if ms < 0 {
        out.push('-');
    }
    let _ = write!(out, "{}", abs / 1000);
    let frac = abs % 1000;
    if frac != 0 {
        let _ = write!(out, ".{frac:03}");
    }
}

fn push_sample_value(out: &mut String, v: f64) {
    let abs = v.abs();
    if v.is_finite() && (abs == 0.0 || (1e-6..1e21).contains(&abs)) {
        let _ = write!(out, "{v}");
    } else {
        out.push_str(&format_sample_value(v));
    }
}

/// Milliseconds as seconds, the way Prometheus' `MarshalTimestamp` writes them (`1.5` → `1.500`).
pub fn format_timestamp(ms: i64) -> String {
    let mut s = String::new();
    push_timestamp(&mut s, ms);
    s
}

/// A sample value as Prometheus writes it: Go's `strconv.FormatFloat` with `'f'` format, or
/// `'e'` below 1e-6 and from 1e21 up; `NaN`, `+Inf`, `-Inf` for the special values.
pub fn format_sample_value(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let abs = v.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        // Rust writes `1.5e-7`; Go writes `1.5e-07` (sign always, two exponent digits at least).
        let s = format!("{v:e}");
        if let Some((mant, exp)) = s.split_once('e') {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            return format!("{mant}e{sign}{digits:0>2}");
        }
        return s;
    }
    format!("{v}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Labels;

    #[test]
    fn values_format_like_prometheus() {
        assert_eq!(format_sample_value(1.0), "1");
        assert_eq!(format_sample_value(-0.25), "-0.25");
        assert_eq!(format_sample_value(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(format_sample_value(1.5e-7), "1.5e-07");
        assert_eq!(format_sample_value(2e21), "2e+21");
        assert_eq!(format_sample_value(123456789012.0), "123456789012");
        assert_eq!(format_sample_value(f64::NAN), "NaN");
        assert_eq!(format_sample_value(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn timestamps_format_like_prometheus() {
        assert_eq!(format_timestamp(1_700_000_000_000), "1700000000");
        assert_eq!(format_timestamp(1_500), "1.500");
        assert_eq!(format_timestamp(1_005), "1.005");
        assert_eq!(format_timestamp(-1_500), "-1.500");
    }

    #[test]
    fn renders_each_type() {
        let r = QueryResult {
            value: Value::Vector(vec![(
                Labels::from_metric("up", &[("job", "a\"b")]),
                1000,
                1.0,
            )]),
            warnings: vec![],
        };
        assert_eq!(
            render_data(&r),
            r#"{"resultType":"vector","result":[{"metric":{"__name__":"up","job":"a\"b"},"value":[1,"1"]}]}"#
        );
        let r = QueryResult {
            value: Value::Matrix(vec![(
                Labels::default(),
                vec![(1500, 2.0), (3000, f64::INFINITY)],
            )]),
            warnings: vec![],
        };
        assert_eq!(
            render_data(&r),
            r#"{"resultType":"matrix","result":[{"metric":{},"values":[[1.500,"2"],[3,"+Inf"]]}]}"#
        );
        let r = QueryResult {
            value: Value::Scalar(2000, 0.5),
            warnings: vec![],
        };
        assert_eq!(
            render_data(&r),
            r#"{"resultType":"scalar","result":[2,"0.5"]}"#
        );
        assert!(serde_json::from_str::<serde_json::Value>(&render_data(&r)).is_ok());
    }
}
