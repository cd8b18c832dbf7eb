//! Line protocol: seed 003's `name,tag=v value [ts_ms]` and InfluxDB's
//! `measurement,tag=v field1=1.0,field2=2i,field3=true ts`, parsed into samples.
//!
//! Used by `POST /api/v1/write` (bodies that are not protobuf; timestamps in milliseconds, as
//! seed 003 writes them) and the InfluxDB 1.x compatible `POST /write?precision=`
//! (nanoseconds unless `precision` says otherwise). The parser is pure: the caller passes the
//! precision and its own "now" for lines without a timestamp.
//!
//! # Mapping (DESIGN.md, ingest contracts 4)
//!
//! - field `value` (and seed 003's bare value) → metric named after the measurement;
//! - any other field `f` → metric `<measurement>_<f>`;
//! - tags → labels;
//! - integers (`1i`), unsigned integers (`1u`) and booleans (`true`/`t` → 1, `false`/`f` → 0)
//!   become floats (integers beyond 2^53 lose precision, as they would in Prometheus);
//! - string fields cannot be stored (samples are floats): they are skipped and counted in
//!   [`ParseOutcome::skipped_string_fields`], not treated as errors;
//! - names are made valid for Prometheus (see [`names`]): `cpu.load-1` → `cpu_load_1`, so that
//!   Grafana can query them. A tag key that becomes `__…` (reserved) makes the line invalid.
//!
//! # Errors
//!
//! A line is stored entirely or not at all. A bad line is reported with its (1-based) line
//! number and does not stop the other lines. The HTTP layer behaves like InfluxDB 1.x on a
//! partial write: it stores the valid lines and answers 400 with the first error.

pub mod names;
pub mod precision;
pub mod scanner;
pub mod series;

#[cfg(test)]
mod tests;

use crate::storage::{Label, Labels, Sample, METRIC_NAME_LABEL};

pub use names::{sanitize_label_name, sanitize_metric_name};
pub use precision::{Precision, UnknownPrecision};
pub use scanner::{parse_line, FieldValue, Fields, RawLine};
pub use series::{parse_series, parse_series_cached, SeriesOutcome};

/// How to read a body.
#[derive(Clone, Copy, Debug)]
pub struct LineOptions {
    /// Unit of the timestamps in the body.
    pub precision: Precision,
    /// Timestamp (ms) given to lines that have none: the server's clock at receipt.
    pub now_ms: i64,
}

impl LineOptions {
    /// Options for a body with the given precision, received at `now_ms`.
    pub fn new(precision: Precision, now_ms: i64) -> Self {
        LineOptions { precision, now_ms }
    }
}

/// A line that could not be parsed or mapped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct LineError {
    /// 1-based line number in the body.
    pub line: usize,
    pub message: String,
}

/// Everything a body yielded.
#[derive(Clone, Debug, Default)]
pub struct ParseOutcome {
    /// Samples of the valid lines, in input order.
    pub samples: Vec<(Labels, Sample)>,
    /// One entry per invalid line, in input order.
    pub errors: Vec<LineError>,
    /// String fields seen (and not stored).
    pub skipped_string_fields: usize,
}

impl ParseOutcome {
    /// The first error, which InfluxDB-compatible endpoints report.
    pub fn first_error(&self) -> Option<&LineError> {
        self.errors.first()
    }
}

/// Parses a whole body. Never fails as a whole: see [`ParseOutcome`].
pub fn parse(body: &str, opts: &LineOptions) -> ParseOutcome {
    let mut out = ParseOutcome::default();
    for (i, line) in body.split('\n').enumerate() {
        let result = parse_line(line).and_then(|raw| match raw {
            Some(raw) => to_samples(raw, opts, &mut out),
            None => Ok(()),
        });
        if let Err(message) = result {
            out.errors.push(LineError {
                line: i + 1,
                message,
            });
        }
    }
    if out.skipped_string_fields > 0 {
        tracing::debug!(
            count = out.skipped_string_fields,
            "line protocol string fields skipped: only numeric values are stored"
        );
    }
    out
}

/// Maps one parsed line to samples, appending them to `out` only if the whole line is valid.
fn to_samples(raw: RawLine, opts: &LineOptions, out: &mut ParseOutcome) -> Result<(), String> {
    let t = match raw.timestamp {
        Some(ts) => opts
            .precision
            .to_millis(ts)
            .ok_or_else(|| format!("timestamp {ts} overflows in {:?}", opts.precision))?,
        None => opts.now_ms,
    };
    let mut tags = Vec::with_capacity(raw.tags.len() + 1);
    for (key, value) in raw.tags {
        let name = sanitize_label_name(&key);
        if name.starts_with("__") {
            return Err(format!(
                "tag key {key:?} is reserved: names starting with \"__\" are internal"
            ));
        }
        tags.push(Label::new(name, value));
    }
    let series = |metric: String| {
        let mut labels = tags.clone();
        labels.push(Label::new(METRIC_NAME_LABEL, sanitize_metric_name(&metric)));
        Labels::new(labels)
    };
    match raw.fields {
        Fields::Bare(v) => out
            .samples
            .push((series(raw.measurement), Sample::new(t, v))),
        Fields::Named(fields) => {
            for (key, value) in fields {
                let v = match value {
                    FieldValue::Float(v) => v,
                    FieldValue::Integer(i) => i as f64,
                    FieldValue::Unsigned(u) => u as f64,
                    FieldValue::Boolean(b) => f64::from(u8::from(b)),
                    FieldValue::String(_) => {
                        out.skipped_string_fields += 1;
                        continue;
                    }
                };
                let metric = if key == "value" {
                    raw.measurement.clone()
                } else {
                    format!("{}_{key}", raw.measurement)
                };
                out.samples.push((series(metric), Sample::new(t, v)));
            }
        }
    }
    Ok(())
}
