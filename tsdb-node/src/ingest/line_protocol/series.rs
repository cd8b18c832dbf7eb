//! A body parsed straight into series: each label set built once per run of lines that share
//! a series key, the samples of the run appended to it.
//!
//! Writers send a series' points together (a batching forwarder's body holds each series' ten
//! points on consecutive lines), so parsing every line into its own label set allocates and
//! sorts the same labels over and over, and then the engine resolves them again per sample.
//! Here a line that starts with the previous line's key (measurement and tags, byte for byte)
//! only has its fields and timestamp parsed, and its samples go to the run's series. Series are
//! listed in order of first appearance and each one's samples in input order, so storing them
//! series after series keeps "last write wins" between samples of one series exactly as line
//! order would (samples of different series do not interact).

use crate::storage::{Label, Labels, Sample, METRIC_NAME_LABEL};

use super::scanner::{content, parse_key, parse_tail, FieldValue, Fields};
use super::{sanitize_label_name, sanitize_metric_name, LineError, LineOptions};

/// Everything a body yielded, grouped by series.
#[derive(Clone, Debug, Default)]
pub struct SeriesOutcome {
    /// Series in order of first appearance, each with its samples in input order. The same
    /// label set may appear more than once (once per run of lines).
    pub series: Vec<(Labels, Vec<Sample>)>,
    /// Samples in `series`.
    pub samples: usize,
    /// One entry per invalid line, in input order.
    pub errors: Vec<LineError>,
    /// String fields seen (and not stored).
    pub skipped_string_fields: usize,
}

impl SeriesOutcome {
    /// The first error, which InfluxDB-compatible endpoints report.
    pub fn first_error(&self) -> Option<&LineError> {
        self.errors.first()
    }
}

/// Consecutive lines with the same key. One is kept per body and restarted for each new key,
/// so that its buffers are allocated once.
#[derive(Default)]
struct Run<'b> {
    /// `measurement,tags` exactly as written; `None` after a line whose key was invalid.
    key: Option<&'b str>,
    /// Byte offset of the end of the current line's key.
    key_end: usize,
    /// Why the current line's key cannot be stored (a reserved tag key). Reported after the
    /// line's fields and timestamp are checked, so that a line with several faults gets the
    /// error the flat parse gives it.
    invalid: Option<String>,
    measurement: String,
    /// Sanitised tags, without the metric name.
    tags: Vec<Label>,
    /// Field key as written (`""` for seed 003's bare value) → index in `series`.
    fields: Vec<(String, usize)>,
}

impl<'b> Run<'b> {
    /// Parses `line`'s key and starts a run with it.
    fn restart(&mut self, line: &'b str) -> Result<(), String> {
        self.key = None;
        self.invalid = None;
        self.fields.clear();
        self.tags.clear();
        let key = parse_key(line)?;
        for (name, value) in key.tags {
            let label = sanitize_label_name(&name);
            if label.starts_with("__") {
                self.invalid = Some(format!(
                    "tag key {name:?} is reserved: names starting with \"__\" are internal"
                ));
                break;
            }
            self.tags.push(Label::new(label, value));
        }
        self.measurement = key.measurement;
        self.key_end = key.end;
        if self.invalid.is_none() {
            self.key = Some(line.get(..key.end).unwrap_or(line));
        }
        Ok(())
    }

    /// Whether `line` has this run's key: the same bytes, then the blank that ended the key.
    /// Not when the key ends in a backslash: ending a line, it escaped nothing, but before a
    /// blank it escapes the blank, and the key goes on.
    fn continues(&self, line: &str) -> bool {
        self.key.is_some_and(|key| {
            line.as_bytes().get(key.len()) == Some(&b' ')
                && line.starts_with(key)
                && !key.ends_with('\\')
        })
    }

    /// The index in `series` of field `field`'s series, added on first use.
    fn series_of(&mut self, field: String, series: &mut Vec<(Labels, Vec<Sample>)>) -> usize {
        if let Some((_, i)) = self.fields.iter().find(|(k, _)| *k == field) {
            return *i;
        }
        let metric = if field.is_empty() || field == "value" {
            sanitize_metric_name(&self.measurement)
        } else {
            sanitize_metric_name(&format!("{}_{field}", self.measurement))
        };
        // Two field keys may sanitise to one metric name: one series, samples in line order.
        let same = self.fields.iter().map(|(_, i)| *i).find(|i| {
            series
                .get(*i)
                .is_some_and(|(l, _)| l.metric_name() == Some(metric.as_str()))
        });
        let i = match same {
            Some(i) => i,
            None => {
                let mut labels = Vec::with_capacity(self.tags.len() + 1);
                labels.extend(self.tags.iter().cloned());
                labels.push(Label::new(METRIC_NAME_LABEL, metric));
                series.push((Labels::new(labels), Vec::new()));
                series.len() - 1
            }
        };
        self.fields.push((field, i));
        i
    }

    /// Parses the fields and timestamp of `line` (which has this run's key) into `out`; all of
    /// the line's samples or none.
    fn add(
        &mut self,
        line: &str,
        opts: &LineOptions,
        out: &mut SeriesOutcome,
    ) -> Result<(), String> {
        let (fields, ts) = parse_tail(line, self.key_end)?;
        let t = match ts {
            Some(ts) => opts
                .precision
                .to_millis(ts)
                .ok_or_else(|| format!("timestamp {ts} overflows in {:?}", opts.precision))?,
            None => opts.now_ms,
        };
        if let Some(reason) = self.invalid.take() {
            return Err(reason);
        }
        match fields {
            Fields::Bare(v) => self.push(String::new(), Sample::new(t, v), out),
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
                    self.push(key, Sample::new(t, v), out);
                }
            }
        }
        Ok(())
    }

    fn push(&mut self, field: String, sample: Sample, out: &mut SeriesOutcome) {
        let i = self.series_of(field, &mut out.series);
        if let Some((_, samples)) = out.series.get_mut(i) {
            samples.push(sample);
            out.samples += 1;
        }
    }
}

/// Parses a whole body into series. Never fails as a whole: see [`SeriesOutcome`]. Yields the
/// samples [`super::parse`] yields, grouped.
pub fn parse_series(body: &str, opts: &LineOptions) -> SeriesOutcome {
    let mut out = SeriesOutcome::default();
    let mut run = Run::default();
    for (i, line) in body.split('\n').enumerate() {
        let Some(line) = content(line) else {
            continue;
        };
        let result = if run.continues(line) {
            run.add(line, opts, &mut out)
        } else {
            run.restart(line)
                .and_then(|()| run.add(line, opts, &mut out))
        };
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
