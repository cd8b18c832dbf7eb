//! Functions that rewrite labels: `label_replace`, `label_join`.

use regex::Regex;

use super::super::error::QueryError;
use super::super::value::{with_label, Elem};

/// Whether `s` is a valid label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
pub(crate) fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub(crate) fn label_replace(
    input: Vec<Elem>,
    dst: &str,
    replacement: &str,
    src: &str,
    regex: &str,
) -> Result<Vec<Elem>, QueryError> {
    let re = Regex::new(&format!("^(?:{regex})$")).map_err(|e| {
        QueryError::exec(format!(
            "invalid regular expression in label_replace(): {regex}: {e}"
        ))
    })?;
    if !valid_label_name(dst) {
        return Err(QueryError::exec(format!(
            "invalid destination label name in label_replace(): {dst}"
        )));
    }
    Ok(input
        .into_iter()
        .map(|mut el| {
            let value = el.labels.get(src).unwrap_or("").to_string();
            if let Some(caps) = re.captures(&value) {
                // Same `$1`/`${name}` expansion rules as Go's regexp.Expand.
                let mut res = String::new();
                caps.expand(replacement, &mut res);
                el.labels = with_label(&el.labels, dst, &res);
            }
            el
        })
        .collect())
}

pub(crate) fn label_join(
    input: Vec<Elem>,
    dst: &str,
    sep: &str,
    srcs: &[String],
) -> Result<Vec<Elem>, QueryError> {
    if !valid_label_name(dst) {
        return Err(QueryError::exec(format!(
            "invalid destination label name in label_join(): {dst}"
        )));
    }
    for s in srcs {
        if !valid_label_name(s) {
            return Err(QueryError::exec(format!(
                "invalid source label name in label_join(): {s}"
            )));
        }
    }
    Ok(input
        .into_iter()
        .map(|mut el| {
            let joined = srcs
                .iter()
                .map(|s| el.labels.get(s).unwrap_or(""))
                .collect::<Vec<_>>()
                .join(sep);
            el.labels = with_label(&el.labels, dst, &joined);
            el
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Labels;

    fn el(pairs: &[(&str, &str)]) -> Elem {
        Elem {
            labels: Labels::from_metric("m", pairs),
            t: 0,
            v: 1.0,
        }
    }

    #[test]
    fn replace_and_join() {
        let out = label_replace(
            vec![el(&[("host", "web-1")])],
            "n",
            "$1",
            "host",
            "web-(.*)",
        )
        .unwrap();
        assert_eq!(out[0].labels.get("n"), Some("1"));
        let out =
            label_replace(vec![el(&[("host", "db")])], "n", "$1", "host", "web-(.*)").unwrap();
        assert_eq!(out[0].labels.get("n"), None);
        let out = label_join(
            vec![el(&[("a", "x"), ("b", "y")])],
            "c",
            "-",
            &["a".into(), "b".into()],
        )
        .unwrap();
        assert_eq!(out[0].labels.get("c"), Some("x-y"));
        assert!(label_replace(vec![], "1bad", "", "a", ".*").is_err());
        assert!(label_replace(vec![], "ok", "", "a", "(").is_err());
    }
}
