//! The Prometheus HTTP API's `data` object for a query result, byte for byte as Prometheus
//! writes it (timestamps as seconds with millisecond fraction, values as strings).

use std::io::Write;

use crate::storage::Labels;

use super::json_points::push_points;
use super::value::{QueryResult, Value};

/// Renders `{"resultType":...,"result":...}`.
pub fn render_data(result: &QueryResult) -> String {
    let mut out = String::with_capacity(256);
    render_data_into(result, &mut out);
    out
}

/// Appends what [`render_data`] returns to `out`.
pub fn render_data_into(result: &QueryResult, out: &mut String) {
    let mut bytes = std::mem::take(out).into_bytes();
    render_data_bytes(result, &mut bytes);
    // Everything written is ASCII or copied from a `&str`, so this never falls back.
    *out = String::from_utf8(bytes)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
}

/// Appends what [`render_data`] returns to `out` as UTF-8 bytes, formatting every number in
/// place: a day of points is rendered without an allocation per point, and the buffer can
/// become an HTTP body as it is.
pub fn render_data_bytes(result: &QueryResult, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"resultType\":\"");
    out.extend_from_slice(result.value.type_name().as_bytes());
    out.extend_from_slice(b"\",\"result\":");
    match &result.value {
        Value::Scalar(t, v) => push_point(out, *t, *v),
        Value::String(t, s) => {
            out.push(b'[');
            push_timestamp(out, *t);
            out.push(b',');
            push_json_string(out, s);
            out.push(b']');
        }
        Value::Vector(samples) => {
            out.push(b'[');
            for (i, (labels, t, v)) in samples.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"metric\":");
                push_labels(out, labels);
                out.extend_from_slice(b",\"value\":");
                push_point(out, *t, *v);
                out.push(b'}');
            }
            out.push(b']');
        }
        Value::Matrix(series) => {
            out.push(b'[');
            for (i, (labels, points)) in series.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"metric\":");
                push_labels(out, labels);
                out.extend_from_slice(b",\"values\":[");
                // About 24 bytes per point: reserve once instead of growing repeatedly.
                out.reserve(points.len().saturating_mul(24));
                push_points(out, points);
                out.extend_from_slice(b"]}");
            }
            out.push(b']');
        }
    }
    out.push(b'}');
}

#[inline]
pub(super) fn push_point(out: &mut Vec<u8>, t: i64, v: f64) {
    out.push(b'[');
    push_timestamp(out, t);
    out.extend_from_slice(b",\"");
    // A formatted value never holds a character JSON needs escaped.
    push_sample_value(out, v);
    out.extend_from_slice(b"\"]");
}

fn push_labels(out: &mut Vec<u8>, labels: &Labels) {
    out.push(b'{');
    for (i, l) in labels.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_json_string(out, &l.name);
        out.push(b':');
        push_json_string(out, &l.value);
    }
    out.push(b'}');
}

fn push_json_string(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    // serde_json never fails to encode a &str.
    out.extend_from_slice(
        serde_json::to_string(s)
            .unwrap_or_else(|_| "\"\"".to_string())
            .as_bytes(),
    );
}

#[inline]
fn push_timestamp(out: &mut Vec<u8>, ms: i64) {
    let abs = ms.unsigned_abs();
    if ms < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(itoa::Buffer::new().format(abs / 1000).as_bytes());
    // Below 1000, so the cast keeps every bit.
    let frac = (abs % 1000) as u32;
    if frac != 0 {
        out.extend_from_slice(&[
            b'.',
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ]);
    }
}

/// Powers of ten for the decimals [`short_decimal`] tries; every one is exact in f64.
const SHORT_DECIMAL_SCALES: [f64; 5] = [1.0, 10.0, 100.0, 1_000.0, 10_000.0];

/// The decimal `(n, k)` with `n·10^-k == v`, `k` at most four and `|n| < 10^15`, with the
/// smallest such `k`: Go's shortest `'f'` formatting of `v` when it has at most four decimals and
/// fewer than 16 significant digits (sensor readings, counters, most rates).
///
/// Why this is the shortest round-tripping form: IEEE division is correctly rounded, as is
/// parsing, so `n / 10^k == v` holds exactly when the decimal `n·10^-k` parses to `v`. With
/// `|n| < 10^15` a neighbouring decimal with the same `k` is a different double, so `n` is the
/// only candidate with `k` decimals, and the smallest `k` that works gives the fewest
/// significant digits. Rounding `v·10^k` to an integer finds that `n` whenever it exists: the product's
/// rounding error is far below one half at these magnitudes. Ryu costs several times this.
#[inline]
pub(super) fn short_decimal(v: f64) -> Option<(i64, usize)> {
    for (k, scale) in SHORT_DECIMAL_SCALES.iter().enumerate() {
        let x = v * scale;
        if x.abs() >= 1e15 {
            return None;
        }
        // Rounded by hand: `f64::round` is a libm call here. Adding the half can itself round
        // up a value just below it, which only yields a candidate the check below rejects.
        let n = (x + 0.5f64.copysign(x)) as i64;
        // Where `n·10^-k` is `v`, the product is within a few ulps of `n`; so a product
        // farther away than that (by a wide margin) rules `k` out without the division, which
        // is most of this function's time.
        if (x - n as f64).abs() > x.abs() * 1e-9 {
            continue;
        }
        if n as f64 / scale == v {
            return Some((n, k));
        }
    }
    None
}

/// `(n, k)` with `n·10^-k == v` for the given `k` (at most four), if there is one with
/// `|n| < 10^15`. It is [`short_decimal`]'s answer when `k` is 0 or `n` does not end in a zero:
/// a shorter form would be the same decimal, since two decimals of `k` places below 10^15 are
/// never the same double.
#[inline]
pub(super) fn short_decimal_with(v: f64, k: usize) -> Option<(i64, usize)> {
    let scale = *SHORT_DECIMAL_SCALES.get(k)?;
    let x = v * scale;
    if x.abs() >= 1e15 {
        return None;
    }
    let n = (x + 0.5f64.copysign(x)) as i64;
    (n as f64 / scale == v).then_some((n, k))
}

/// Writes `v` as [`short_decimal`] finds it; false, having written nothing, when it does not.
#[inline]
fn push_short_decimal(out: &mut Vec<u8>, v: f64) -> bool {
    let Some((n, k)) = short_decimal(v) else {
        return false;
    };
    if n < 0 {
        out.push(b'-');
    }
    let mut buf = itoa::Buffer::new();
    let digits = buf.format(n.unsigned_abs()).as_bytes();
    if k == 0 {
        out.extend_from_slice(digits);
    } else if digits.len() > k {
        let (int, frac) = digits.split_at(digits.len() - k);
        out.extend_from_slice(int);
        out.push(b'.');
        out.extend_from_slice(frac);
    } else {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', k - digits.len()));
        out.extend_from_slice(digits);
    }
    true
}

/// Whether [`push_sample_value`] formats `v` through [`short_decimal`].
#[inline]
pub(super) fn takes_short_decimal(v: f64) -> bool {
    (1e-5..1e16).contains(&v.abs())
}

fn push_sample_value(out: &mut Vec<u8>, v: f64) {
    let abs = v.abs();
    if takes_short_decimal(v) {
        if push_short_decimal(out, v) {
            return;
        }
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
            out.extend_from_slice(s.as_bytes());
        } else {
            let _ = write!(out, "{v}");
        }
    } else if v.is_finite() && (abs == 0.0 || (1e-6..1e21).contains(&abs)) {
        let _ = write!(out, "{v}");
    } else {
        out.extend_from_slice(format_sample_value(v).as_bytes());
    }
}

/// Milliseconds as seconds, the way Prometheus' `MarshalTimestamp` writes them (`1.5` → `1.500`).
pub fn format_timestamp(ms: i64) -> String {
    let mut s = Vec::new();
    push_timestamp(&mut s, ms);
    String::from_utf8(s).unwrap_or_default()
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
        let mut s = Vec::new();
        push_sample_value(&mut s, v);
        String::from_utf8(s).unwrap()
    }

    fn fast_timestamp(ms: i64) -> String {
        format_timestamp(ms)
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
            21.3,
            -21.3,
            0.0001,
            0.00012,
            -0.0005,
            999999999999999.0,
            99999999999.9999,
            100000000000.0001,
            12345678901234.5,
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

        /// Short decimals (the fast path) and their near misses, at every magnitude.
        #[test]
        fn short_decimals_match_core_fmt(
            mantissa in -10_000_000_000_000_000i64..10_000_000_000_000_000,
            decimals in 0i32..8,
            nudge in -2i64..=2,
        ) {
            let v = mantissa as f64 / 10f64.powi(decimals);
            proptest::prop_assert_eq!(fast_value(v), slow_value(v));
            let near = f64::from_bits(v.to_bits().wrapping_add_signed(nudge));
            proptest::prop_assert_eq!(fast_value(near), slow_value(near));
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
