//! Parameters as Prometheus clients send them: RFC 3339 or Unix-seconds times, Go-style
//! durations, repeated `match[]` selectors, in the query string or a form body.

use crate::storage::Matcher;

use super::ApiError;

/// All `key=value` pairs of a query string and (for POST) a form body, in order.
pub fn pairs(query: Option<&str>, form: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for src in [query, form].into_iter().flatten() {
        let p: Vec<(String, String)> = serde_urlencoded::from_str(src)
            .map_err(|e| ApiError::bad_data(format!("invalid parameters: {e}")))?;
        out.extend(p);
    }
    Ok(out)
}

pub fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

pub fn all<'a>(pairs: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// A time as RFC 3339 or (fractional) Unix seconds, in milliseconds.
pub fn parse_time_ms(s: &str) -> Result<i64, String> {
    if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() || secs.abs() > 9.2e15 {
            return Err(format!("time {s:?} is out of range"));
        }
        return Ok((secs * 1000.0).round() as i64);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|_| format!("cannot parse {s:?} as a time (RFC 3339 or Unix seconds)"))
}

/// An optional time parameter, `default` when absent.
pub fn time_param(pairs: &[(String, String)], key: &str, default: i64) -> Result<i64, ApiError> {
    match get(pairs, key) {
        None | Some("") => Ok(default),
        Some(v) => parse_time_ms(v)
            .map_err(|e| ApiError::bad_data(format!("invalid parameter {key:?}: {e}"))),
    }
}

/// A series selector such as `up{job=~"a|b"}` as alternative matcher sets (PromQL `or`
/// matchers give several). Parsed by `promql-parser`.
pub fn parse_selector(s: &str) -> Result<Vec<Vec<Matcher>>, String> {
    use promql_parser::parser::{self, Expr};
    let expr = parser::parse(s).map_err(|e| format!("invalid selector {s:?}: {e}"))?;
    let Expr::VectorSelector(vs) = expr else {
        return Err(format!("{s:?} is not a series selector"));
    };
    let mut sets = crate::promql::selector::matcher_groups(&vs).map_err(|e| e.to_string())?;
    sets.retain(|s| !s.is_empty());
    if sets.is_empty() || sets.iter().all(|set| set.iter().all(|m| m.matches_empty())) {
        return Err(format!(
            "selector {s:?} must contain at least one matcher that does not match the empty string"
        ));
    }
    Ok(sets)
}

/// Every `match[]` selector, flattened to matcher sets.
pub fn selectors(pairs: &[(String, String)]) -> Result<Vec<Vec<Matcher>>, ApiError> {
    let mut out = Vec::new();
    for s in all(pairs, "match[]") {
        out.extend(parse_selector(s).map_err(ApiError::bad_data)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_both_forms() {
        assert_eq!(parse_time_ms("1700000000.5").unwrap(), 1_700_000_000_500);
        assert_eq!(
            parse_time_ms("2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000
        );
        assert!(parse_time_ms("yesterday").is_err());
        assert!(parse_time_ms("NaN").is_err());
    }

    #[test]
    fn selectors_become_matchers() {
        let s = parse_selector(r#"temp{room=~"r1|r2",dev!="x"}"#).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].len(), 3);
        assert!(parse_selector("rate(x[5m])").is_err());
        assert!(parse_selector(r#"{a=""}"#).is_err());
        assert!(parse_selector("{").is_err());
    }
}
