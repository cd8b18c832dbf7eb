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
    out.push_str(itoa::Buffer::new().format(abs / 1000));
    // Below 1000, so the cast keeps every bit.
    let frac = (abs % 1000) as u32;
    if frac != 0 {
        let digits = [
            b'.',
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ];
        // ASCII digits and a dot: always valid UTF-8.
        out.push_str(std::str::from_utf8(&digits).unwrap_or_default());
    }
}

fn push_sample_value(out: &mut String, v: f64) {
    let abs = v.abs();
    if (1e-5..1e16).contains(&abs) {
        // core::fmt's float formatting was half the time of a long matrix answer. In this
        // range ryu writes plain decimals with the same shortest digits, only with a `.0` on
        // integers, except on an exact tie between two shortest candidates (ryu rounds half to
        // even, core::fmt and Go half up). A tie needs a spacing of at least 10^k between
        // doubles around a value ending in 5 at 10^(k-1), which takes 16 or more significant
        // digits; those few values go through core::fmt. Property tests hold both to `{v}`.
        let mut buf = ryu::Buffer::new();
        let s = buf.format_finite(v);
        let s = s.strip_suffix(".0").unwrap_or(s);
        let significant = s
            .bytes()
            .skip_while(|b| matches!(b, b'-' | b'0' | b'.'))
            .filter(u8::is_ascii_digit)
            .count();
        if significant < 16 {
            out.push_str(s);
        } else {
            let _ = write!(out, "{v}");
        }
    } else if v.is_finite() && (abs == 0.0 || (1e-6..1e21).contains(&abs)) {
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

    fn slow_value(v: f64) -> String {
        format_sample_value(v)
    }

    fn fast_value(v: f64) -> String {
        let mut s = String::new();
        push_sample_value(&mut s, v);
        s
    }

    fn fast_timestamp(ms: i64) -> String {
        let mut s = String::new();
        push_timestamp(&mut s, ms);
        s
    }

    #[test]
    fn fast_value_formatting_matches_core_fmt_at_the_edges() {
        for v in [
            1e-5,
            9.99999e-6,
            1e-6,
            1.5e-6,
            1e16,
            9999999999999998.0,
            1e15,
            123456.0,
            0.1,
            0.5,
            -0.0,
            0.0,
            1.0,
            -1.0,
            23.4,
            1e20,
            2e21,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::NAN,
            f64::INFINITY,
            562949953421312.0 + 0.25,
            -(228829908057178.0 + 0.125),
            0.30000000000000004,
            1125899906842624.2,
            12.5,
            0.125,
        ] {
            assert_eq!(fast_value(v), slow_value(v), "{v:e}");
        }
    }

    proptest::proptest! {
        #[test]
        fn fast_value_formatting_matches_core_fmt(
            bits in proptest::num::u64::ANY,
            small in -1e7f64..1e7,
            exponent in -6.0f64..17.0,
            mantissa in -10.0f64..10.0,
        ) {
            let spread = mantissa * 10f64.powf(exponent);
            proptest::prop_assert_eq!(fast_value(spread), slow_value(spread));
            let v = f64::from_bits(bits);
            proptest::prop_assert_eq!(fast_value(v), slow_value(v));
            proptest::prop_assert_eq!(fast_value(small), slow_value(small));
            let rounded = (small * 100.0).round() / 100.0;
            proptest::prop_assert_eq!(fast_value(rounded), slow_value(rounded));
        }

        #[test]
        fn fast_timestamps_match_the_plain_format(ms in proptest::num::i64::ANY) {
            let abs = ms.unsigned_abs();
            let sign = if ms < 0 { "-" } else { "" };
            let want = if abs % 1000 == 0 {
                format!("{sign}{}", abs / 1000)
            } else {
                format!("{sign}{}.{:03}", abs / 1000, abs % 1000)
            };
            proptest::prop_assert_eq!(fast_timestamp(ms), want);
        }
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
