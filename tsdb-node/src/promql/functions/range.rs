//! Functions of a range vector (`rate`, `*_over_time`, ...), each a port of Prometheus 2.42's
//! `promql/functions.go` with its float operations in the same order.

use super::super::eval::RangeInfo;

type Points = [(i64, f64)];

/// Adds `inc` to a Kahan–Neumaier compensated sum, as Prometheus' `kahanSumInc`.
pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

/// `rate`, `increase` and `delta`: Prometheus' `extrapolatedRate`.
pub(crate) fn extrapolated_rate(
    p: &Points,
    r: RangeInfo,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (first_t, first_v) = p[0];
    let (last_t, last_v) = p[p.len() - 1];
    let mut result = last_v - first_v;
    if is_counter {
        let mut prev = first_v;
        for &(_, v) in &p[1..] {
            if v < prev {
                result += prev;
            }
            prev = v;
        }
    }
    let mut duration_to_start = first_t.saturating_sub(r.start) as f64 / 1000.0;
    let duration_to_end = r.end.saturating_sub(last_t) as f64 / 1000.0;
    let sampled_interval = (last_t - first_t) as f64 / 1000.0;
    let avg_between = sampled_interval / (p.len() - 1) as f64;
    if is_counter && result > 0.0 && first_v >= 0.0 {
        // A counter cannot go below zero: do not extrapolate past the point where it would.
        let duration_to_zero = sampled_interval * (first_v / result);
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    let threshold = avg_between * 1.1;
    let mut extrapolate_to = sampled_interval;
    extrapolate_to += if duration_to_start < threshold {
        duration_to_start
    } else {
        avg_between / 2.0
    };
    extrapolate_to += if duration_to_end < threshold {
        duration_to_end
    } else {
        avg_between / 2.0
    };
    let mut factor = extrapolate_to / sampled_interval;
    if is_rate {
        factor /= r.range_ms as f64 / 1000.0;
    }
    Some(result * factor)
}

/// `irate` and `idelta`: from the last two samples.
pub(crate) fn instant_value(p: &Points, is_rate: bool) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (lt, lv) = p[p.len() - 1];
    let (pt, pv) = p[p.len() - 2];
    let mut result = if is_rate && lv < pv { lv } else { lv - pv };
    let interval = lt - pt;
    if interval == 0 {
        return None;
    }
    if is_rate {
        result /= interval as f64 / 1000.0;
    }
    Some(result)
}

/// Least-squares fit of the samples, x in seconds relative to `intercept_time`.
pub(crate) fn linear_regression(p: &Points, intercept_time: i64) -> (f64, f64) {
    let (mut n, mut sum_x, mut c_x, mut sum_y, mut c_y) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut sum_xy, mut c_xy, mut sum_x2, mut c_x2) = (0.0, 0.0, 0.0, 0.0);
    let init_y = p[0].1;
    let mut const_y = true;
    for (i, &(t, v)) in p.iter().enumerate() {
        if const_y && i > 0 && v != init_y {
            const_y = false;
        }
        n += 1.0;
        let x = t.saturating_sub(intercept_time) as f64 / 1e3;
        (sum_x, c_x) = kahan_inc(x, sum_x, c_x);
        (sum_y, c_y) = kahan_inc(v, sum_y, c_y);
        (sum_xy, c_xy) = kahan_inc(x * v, sum_xy, c_xy);
        (sum_x2, c_x2) = kahan_inc(x * x, sum_x2, c_x2);
    }
    if const_y {
        if init_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, init_y);
    }
    let sum_x = sum_x + c_x;
    let sum_y = sum_y + c_y;
    let sum_xy = sum_xy + c_xy;
    let sum_x2 = sum_x2 + c_x2;
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

pub(crate) fn deriv(p: &Points) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    Some(linear_regression(p, p[0].0).0)
}

pub(crate) fn predict_linear(p: &Points, ts: i64, duration_s: f64) -> Option<f64> {
    if p.len() < 2 {
        return None;
    }
    let (slope, intercept) = linear_regression(p, ts);
    Some(slope * duration_s + intercept)
}

pub(crate) fn avg_over_time(p: &Points) -> f64 {
    let (mut mean, mut count, mut c) = (0.0f64, 0.0f64, 0.0f64);
    for &(_, v) in p {
        count += 1.0;
        if mean.is_infinite() {
            if v.is_infinite() && (mean > 0.0) == (v > 0.0) {
                continue;
            }
            if !v.is_infinite() && !v.is_nan() {
                continue;
            }
        }
        (mean, c) = kahan_inc(v / count - mean / count, mean, c);
    }
    if mean.is_infinite() {
        return mean;
    }
    mean + c
}

pub(crate) fn sum_over_time(p: &Points) -> f64 {
    let (mut sum, mut c) = (0.0f64, 0.0f64);
    for &(_, v) in p {
        (sum, c) = kahan_inc(v, sum, c);
    }
    if sum.is_infinite() {
        return sum;
    }
    sum + c
}

pub(crate) fn min_over_time(p: &Points) -> f64 {
    let mut min = p[0].1;
    for &(_, v) in p {
        if v < min || min.is_nan() {
            min = v;
        }
    }
    min
}

pub(crate) fn max_over_time(p: &Points) -> f64 {
    let mut max = p[0].1;
    for &(_, v) in p {
        if v > max || max.is_nan() {
            max = v;
        }
    }
    max
}

pub(crate) fn stdvar_over_time(p: &Points) -> f64 {
    let (mut count, mut mean, mut c_mean, mut aux, mut c_aux) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for &(_, v) in p {
        count += 1.0;
        let delta = v - (mean + c_mean);
        (mean, c_mean) = kahan_inc(delta / count, mean, c_mean);
        (aux, c_aux) = kahan_inc(delta * (v - (mean + c_mean)), aux, c_aux);
    }
    (aux + c_aux) / count
}

pub(crate) fn changes(p: &Points) -> f64 {
    let mut n = 0.0;
    let mut prev = p[0].1;
    for &(_, cur) in &p[1..] {
        if cur != prev && !(cur.is_nan() && prev.is_nan()) {
            n += 1.0;
        }
        prev = cur;
    }
    n
}

pub(crate) fn resets(p: &Points) -> f64 {
    let mut n = 0.0;
    let mut prev = p[0].1;
    for &(_, cur) in &p[1..] {
        if cur < prev {
            n += 1.0;
        }
        prev = cur;
    }
    n
}

/// Prometheus' `quantile`: linear interpolation between the closest ranks.
pub(crate) fn quantile(q: f64, mut values: Vec<f64>) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // NaN sorts first, as in Prometheus' vectorByValueHeap.
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (n - 1.0).min(lower + 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(start: i64, end: i64) -> RangeInfo {
        RangeInfo {
            start,
            end,
            range_ms: end - start,
        }
    }

    #[test]
    fn rate_extrapolates_to_window_edges() {
        // Samples every 15 s covering the window exactly: plain slope.
        let p: Vec<(i64, f64)> = (0..=20).map(|i| (i * 15_000, i as f64 * 15.0)).collect();
        let r = extrapolated_rate(&p, info(0, 300_000), true, true).unwrap();
        assert!((r - 1.0).abs() < 1e-12);
        // A counter reset adds the value before it.
        let p = vec![(0, 10.0), (15_000, 20.0), (30_000, 5.0)];
        let inc = extrapolated_rate(&p, info(0, 30_000), true, false).unwrap();
        assert!((inc - 15.0).abs() < 1e-12);
        assert!(extrapolated_rate(&p[..1], info(0, 30_000), true, false).is_none());
    }

    #[test]
    fn irate_handles_reset() {
        let p = vec![(0, 10.0), (10_000, 4.0)];
        assert_eq!(instant_value(&p, true), Some(0.4));
        assert_eq!(instant_value(&p, false), Some(-6.0));
    }

    #[test]
    fn regression_and_quantile() {
        let p: Vec<(i64, f64)> = (0..10).map(|i| (i * 1000, 2.0 * i as f64 + 1.0)).collect();
        let (s, i) = linear_regression(&p, 0);
        assert!((s - 2.0).abs() < 1e-12 && (i - 1.0).abs() < 1e-12);
        assert_eq!(quantile(0.5, vec![3.0, 1.0, 2.0, 4.0]), 2.5);
        assert_eq!(quantile(2.0, vec![1.0]), f64::INFINITY);
        assert!(quantile(0.5, vec![]).is_nan());
    }

    #[test]
    fn over_time_helpers() {
        let p = vec![(0, 1.0), (1, 3.0), (2, 3.0), (3, 2.0)];
        assert_eq!(avg_over_time(&p), 2.25);
        assert_eq!(sum_over_time(&p), 9.0);
        assert_eq!(min_over_time(&p), 1.0);
        assert_eq!(max_over_time(&p), 3.0);
        assert_eq!(changes(&p), 2.0);
        assert_eq!(resets(&p), 1.0);
        assert!((stdvar_over_time(&p) - 0.6875).abs() < 1e-12);
    }
}
