//! Times on the command line: `now`, `now-1h`, `now+5m`, RFC 3339, or Unix seconds.

use anyhow::{anyhow, Result};
use tsdb_node::config::parse_duration;

/// Milliseconds since the epoch of a time argument, relative to `now_ms`.
pub fn parse_time_ms(s: &str, now_ms: i64) -> Result<i64> {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix("now") {
        if rest.is_empty() {
            return Ok(now_ms);
        }
        let (sign, d) = match rest.split_at(1) {
            ("-", d) => (-1, d),
            ("+", d) => (1, d),
            _ => {
                return Err(anyhow!(
                    "{s:?}: expected now, now-<duration> or now+<duration>"
                ))
            }
        };
        let ms = i64::try_from(parse_duration(d).map_err(|e| anyhow!(e))?.as_millis())
            .map_err(|_| anyhow!("{s:?}: offset too large"))?;
        return now_ms
            .checked_add(sign * ms)
            .ok_or_else(|| anyhow!("{s:?}: out of range"));
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    match s.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs.abs() < 1e14 => Ok((secs * 1000.0).round() as i64),
        _ => Err(anyhow!(
            "{s:?} is not a time (use now, now-1h, RFC 3339 or Unix seconds)"
        )),
    }
}

/// A time argument in the form the Prometheus API takes: Unix seconds with milliseconds.
pub fn api_time(s: &str, now_ms: i64) -> Result<String> {
    Ok(seconds(parse_time_ms(s, now_ms)?))
}

/// Milliseconds as Unix seconds, `1700000000.5`.
pub fn seconds(ms: i64) -> String {
    // Exact: timestamps in milliseconds are far below 2^53.
    format!("{:.3}", ms as f64 / 1000.0)
}

/// The current time in milliseconds since the epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let now = 1_700_000_000_000;
        assert_eq!(parse_time_ms("now", now).unwrap(), now);
        assert_eq!(parse_time_ms("now-1h", now).unwrap(), now - 3_600_000);
        assert_eq!(parse_time_ms("now+10s", now).unwrap(), now + 10_000);
        assert_eq!(
            parse_time_ms("1700000000.25", now).unwrap(),
            1_700_000_000_250
        );
        assert_eq!(
            parse_time_ms("2023-11-14T22:13:20Z", now).unwrap(),
            1_700_000_000_000
        );
        assert!(parse_time_ms("now*2", now).is_err());
        assert!(parse_time_ms("yesterday", now).is_err());
        assert_eq!(seconds(-1), "-0.001");
        assert_eq!(seconds(1_500), "1.500");
    }
}
