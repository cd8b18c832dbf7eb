//! Timestamp precision of line protocol input and its conversion to milliseconds.

use std::str::FromStr;

/// Unit of the timestamps in a line protocol body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    /// Nanoseconds: InfluxDB's default for `POST /write`.
    #[default]
    Nanoseconds,
    Microseconds,
    /// Milliseconds: seed 003's form on `POST /api/v1/write`.
    Milliseconds,
    Seconds,
    Minutes,
    Hours,
}

/// A `precision=` value that is not one of the known units.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown precision {0:?}: expected one of ns, us, ms, s, m, h")]
pub struct UnknownPrecision(pub String);

impl FromStr for Precision {
    type Err = UnknownPrecision;

    /// Accepts InfluxDB 1.x spellings (`n`, `u`, `ms`, `s`, `m`, `h`) and 2.x ones (`ns`, `us`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "n" | "ns" => Precision::Nanoseconds,
            "u" | "us" | "µ" | "µs" => Precision::Microseconds,
            "ms" => Precision::Milliseconds,
            "s" => Precision::Seconds,
            "m" => Precision::Minutes,
            "h" => Precision::Hours,
            other => return Err(UnknownPrecision(other.chars().take(16).collect())),
        })
    }
}

impl Precision {
    /// Converts a timestamp in this unit to milliseconds, rounding towards negative infinity
    /// (so that a sample never moves to a later millisecond). `None` on overflow.
    pub fn to_millis(self, t: i64) -> Option<i64> {
        match self {
            Precision::Nanoseconds => Some(t.div_euclid(1_000_000)),
            Precision::Microseconds => Some(t.div_euclid(1_000)),
            Precision::Milliseconds => Some(t),
            Precision::Seconds => t.checked_mul(1_000),
            Precision::Minutes => t.checked_mul(60_000),
            Precision::Hours => t.checked_mul(3_600_000),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(Precision::Nanoseconds.to_millis(1_500_000_999), Some(1_500));
        assert_eq!(Precision::Nanoseconds.to_millis(-1), Some(-1));
        assert_eq!(Precision::Microseconds.to_millis(2_999), Some(2));
        assert_eq!(Precision::Milliseconds.to_millis(7), Some(7));
        assert_eq!(Precision::Seconds.to_millis(3), Some(3_000));
        assert_eq!(Precision::Minutes.to_millis(2), Some(120_000));
        assert_eq!(Precision::Hours.to_millis(1), Some(3_600_000));
        assert_eq!(Precision::Hours.to_millis(i64::MAX), None);
    }

    #[test]
    fn spellings() {
        for (s, p) in [
            ("n", Precision::Nanoseconds),
            ("ns", Precision::Nanoseconds),
            ("u", Precision::Microseconds),
            ("us", Precision::Microseconds),
            ("ms", Precision::Milliseconds),
            ("s", Precision::Seconds),
            ("m", Precision::Minutes),
            ("h", Precision::Hours),
        ] {
            assert_eq!(s.parse::<Precision>(), Ok(p));
        }
        assert!("d".parse::<Precision>().is_err());
    }
}
