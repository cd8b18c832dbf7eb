//! Date functions (`year`, `month`, `day_of_week`, ...) and `holt_winters`, as Prometheus
//! 2.42's `dateWrapper` and `funcHoltWinters`.

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};

/// The date functions, by name: each maps a UTC time to a number.
pub(crate) fn date_fn(name: &str) -> Option<fn(DateTime<Utc>) -> f64> {
    Some(match name {
        "year" => |t| f64::from(t.year()),
        "month" => |t| f64::from(t.month()),
        "day_of_month" => |t| f64::from(t.day()),
        "day_of_week" => |t| f64::from(t.weekday().num_days_from_sunday()),
        "day_of_year" => |t| f64::from(t.ordinal()),
        "days_in_month" => days_in_month,
        "hour" => |t| f64::from(t.hour()),
        "minute" => |t| f64::from(t.minute()),
        _ => return None,
    })
}

fn days_in_month(t: DateTime<Utc>) -> f64 {
    let (y, m) = if t.month() == 12 {
        (t.year() + 1, 1)
    } else {
        (t.year(), t.month() + 1)
    };
    let next = NaiveDate::from_ymd_opt(y, m, 1);
    let this = NaiveDate::from_ymd_opt(t.year(), t.month(), 1);
    match (next, this) {
        (Some(n), Some(c)) => (n - c).num_days() as f64,
        _ => f64::NAN,
    }
}

/// Applies a date function to a value taken as seconds since the epoch (truncated, as Go's
/// `int64(v)`); NaN when the time is outside what a calendar date can hold.
pub(crate) fn apply(f: fn(DateTime<Utc>) -> f64, seconds: f64) -> f64 {
    if !seconds.is_finite() {
        return f64::NAN;
    }
    match DateTime::from_timestamp(seconds as i64, 0) {
        Some(t) => f(t),
        None => f64::NAN,
    }
}

/// The date of an evaluation time in milliseconds, at whole seconds as Prometheus takes it.
pub(crate) fn apply_ms(f: fn(DateTime<Utc>) -> f64, ms: i64) -> f64 {
    match DateTime::from_timestamp(ms / 1000, 0) {
        Some(t) => f(t),
        None => f64::NAN,
    }
}

/// Double exponential smoothing with smoothing factor `sf` and trend factor `tf`; `None`
/// with fewer than two samples. The factors are checked by the caller.
pub(crate) fn holt_winters(p: &[(i64, f64)], sf: f64, tf: f64) -> Option<f64> {
    let (first, second) = (p.first()?.1, p.get(1)?.1);
    let (mut s0, mut s1, mut b) = (0.0f64, first, second - first);
    for (i, &(_, v)) in p.iter().enumerate().skip(1) {
        let x = sf * v;
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let y = (1.0 - sf) * (s1 + b);
        (s0, s1) = (s1, x + y);
    }
    Some(s1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_of_known_times() {
        // 2024-02-29T13:45:10Z, a Thursday, day 60 of a leap year.
        let t = 1_709_214_310.0;
        let get = |n: &str| apply(date_fn(n).unwrap(), t);
        assert_eq!(get("year"), 2024.0);
        assert_eq!(get("month"), 2.0);
        assert_eq!(get("day_of_month"), 29.0);
        assert_eq!(get("day_of_week"), 4.0);
        assert_eq!(get("day_of_year"), 60.0);
        assert_eq!(get("days_in_month"), 29.0);
        assert_eq!(get("hour"), 13.0);
        assert_eq!(get("minute"), 45.0);
        assert_eq!(apply(date_fn("days_in_month").unwrap(), 0.0), 31.0);
        assert!(apply(date_fn("year").unwrap(), f64::NAN).is_nan());
        assert!(date_fn("second").is_none());
    }

    #[test]
    fn holt_winters_smooths() {
        assert_eq!(holt_winters(&[(0, 1.0)], 0.5, 0.5), None);
        // A straight line is followed exactly.
        let line: Vec<(i64, f64)> = (0..10).map(|i| (i, 2.0 * i as f64)).collect();
        assert!((holt_winters(&line, 0.3, 0.6).unwrap() - 18.0).abs() < 1e-12);
    }
}
