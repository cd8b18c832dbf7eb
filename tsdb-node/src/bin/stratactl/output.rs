//! Query results as rows, and those rows as an aligned table, CSV or JSON.

use std::fmt::Write as _;

use anyhow::{bail, Result};
use serde_json::{Map, Value};

/// How results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// The server's `data` object, pretty-printed.
    Json,
    /// `series,timestamp,value` with a header line.
    Csv,
}

/// One sample of a result: its series (empty for scalars and strings), time and value as the
/// server wrote them.
#[derive(Debug, PartialEq)]
pub struct Row {
    pub series: String,
    pub timestamp: f64,
    pub value: String,
}

/// `name{a="b", ...}` of a Prometheus `metric` object.
pub fn series_name(metric: &Map<String, Value>) -> String {
    let name = metric.get("__name__").and_then(Value::as_str).unwrap_or("");
    let labels: Vec<String> = metric
        .iter()
        .filter(|(k, _)| k.as_str() != "__name__")
        .map(|(k, v)| {
            format!(
                "{k}={}",
                Value::String(v.as_str().unwrap_or("").to_string())
            )
        })
        .collect();
    if labels.is_empty() && !name.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{}}}", labels.join(", "))
    }
}

/// The rows of a query's `data` (`resultType` vector, matrix, scalar or string).
pub fn rows(data: &Value) -> Result<Vec<Row>> {
    let kind = data.get("resultType").and_then(Value::as_str).unwrap_or("");
    let result = data.get("result").unwrap_or(&Value::Null);
    let mut out = Vec::new();
    match kind {
        "vector" | "matrix" => {
            for item in result.as_array().map(Vec::as_slice).unwrap_or_default() {
                let series = item
                    .get("metric")
                    .and_then(Value::as_object)
                    .map(series_name)
                    .unwrap_or_default();
                let samples: Vec<&Value> = if kind == "vector" {
                    item.get("value").into_iter().collect()
                } else {
                    item.get("values")
                        .and_then(Value::as_array)
                        .map(|v| v.iter().collect())
                        .unwrap_or_default()
                };
                for s in samples {
                    out.push(sample_row(series.clone(), s)?);
                }
            }
        }
        "scalar" | "string" => out.push(sample_row(String::new(), result)?),
        other => bail!("unknown resultType {other:?} in the server's answer"),
    }
    Ok(out)
}

/// `[<unix seconds>, "<value>"]`.
fn sample_row(series: String, pair: &Value) -> Result<Row> {
    let (Some(t), Some(v)) = (
        pair.get(0).and_then(Value::as_f64),
        pair.get(1).and_then(Value::as_str),
    ) else {
        bail!("malformed sample {pair} in the server's answer");
    };
    Ok(Row {
        series,
        timestamp: t,
        value: v.to_string(),
    })
}

/// An aligned table with a header; times as RFC 3339 in UTC.
pub fn table(rows: &[Row]) -> String {
    let time = |t: f64| {
        chrono::DateTime::from_timestamp_millis((t * 1000.0).round() as i64)
            .map(|d| d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
            .unwrap_or_else(|| t.to_string())
    };
    let cells: Vec<[String; 3]> = rows
        .iter()
        .map(|r| [r.series.clone(), time(r.timestamp), r.value.clone()])
        .collect();
    let header = ["SERIES", "TIMESTAMP", "VALUE"];
    let mut width = header.map(str::len);
    for c in &cells {
        for (w, s) in width.iter_mut().zip(c) {
            *w = (*w).max(s.chars().count());
        }
    }
    let mut out = String::new();
    for line in std::iter::once(header.map(String::from)).chain(cells) {
        let _ = writeln!(
            out,
            "{:<w0$}  {:<w1$}  {:>w2$}",
            line[0],
            line[1],
            line[2],
            w0 = width[0],
            w1 = width[1],
            w2 = width[2]
        );
    }
    out
}

/// RFC 4180 CSV with the header `series,timestamp,value`; times in Unix seconds.
pub fn csv(rows: &[Row]) -> String {
    let mut out = String::from("series,timestamp,value\n");
    for r in rows {
        let _ = writeln!(
            out,
            "{},{},{}",
            csv_field(&r.series),
            r.timestamp,
            csv_field(&r.value)
        );
    }
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn vector_and_matrix_rows_render() {
        let data = json!({"resultType":"matrix","result":[
            {"metric":{"__name__":"cpu","host":"a,b"},"values":[[1.5,"1"],[2,"2.5"]]}]});
        let r = rows(&data).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].series, r#"cpu{host="a,b"}"#);
        assert_eq!(
            csv(&r),
            "series,timestamp,value\n\"cpu{host=\"\"a,b\"\"}\",1.5,1\n\"cpu{host=\"\"a,b\"\"}\",2,2.5\n"
        );
        let t = table(&r);
        assert!(t.starts_with("SERIES"), "{t}");
        assert!(t.contains("1970-01-01T00:00:01.500Z"), "{t}");
        let scalar = json!({"resultType":"scalar","result":[3,"7"]});
        assert_eq!(rows(&scalar).unwrap()[0].value, "7");
        assert!(rows(&json!({"resultType":"vector","result":[{"value":[1]}]})).is_err());
    }
}
