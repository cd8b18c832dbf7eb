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
//!
//! Across bodies, a [`LabelCache`](crate::ingest::label_cache::LabelCache) shared by the caller remembers the label set of each key
//! and field: a live stream sends every series' newest point in its own line, so no run
//! repeats within a body, but every body repeats the previous one's keys. A line whose fields
//! are all cached is not parsed past its key's end, and no label set is built for it.

use crate::ingest::label_cache::SharedLabelCache;
use crate::storage::{Label, Labels, Sample, METRIC_NAME_LABEL};

use super::scanner::{content, key_end, parse_key, parse_tail, FieldValue, Fields};
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
    /// The run's first line.
    line: &'b str,
    /// Byte offset of the end of the current line's key.
    key_end: usize,
    /// Whether `measurement`, `tags` and `invalid` hold the key's parse. A run whose series
    /// all come from the cache never needs it.
    parsed: bool,
    /// Why the current line's key cannot be stored (a reserved tag key). Reported after the
    /// line's fields and timestamp are checked, so that a line with several faults gets the
    /// error the flat parse gives it.
    invalid: Option<String>,
    measurement: String,
    /// Sanitised tags, without the metric name.
    tags: Vec<Label>,
    /// Field key as written (`""` for seed 003's bare value) → index in `series`.
    fields: Vec<(String, usize)>,
    /// Scratch for the cache key: the run's key, 0xFF, the field key.
    cache_key: Vec<u8>,
}

impl<'b> Run<'b> {
    /// Starts a run with `line`'s key. With a cache, only finds where the key ends (it is
    /// parsed when a series of it is not cached); without, parses it.
    fn restart(&mut self, line: &'b str, cached: bool) -> Result<(), String> {
        self.key = None;
        self.invalid = None;
        self.parsed = false;
        self.fields.clear();
        self.tags.clear();
        self.line = line;
        if cached {
            if let Some(end) = key_end(line) {
                self.key_end = end;
                self.key = Some(line.get(..end).unwrap_or(line));
                return Ok(());
            }
        }
        self.parse()
    }

    /// Parses the run's key: measurement, sanitised tags, and whether a tag is reserved.
    fn parse(&mut self) -> Result<(), String> {
        self.parsed = true;
        self.key = None;
        self.tags.clear();
        let line = self.line;
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

    /// Builds the cache key of this run's field `field` in `cache_key`; false when the run's
    /// key is not valid (nothing of it is cached).
    fn build_cache_key(&mut self, field: &str) -> bool {
        let Some(key) = self.key else {
            return false;
        };
        self.cache_key.clear();
        self.cache_key.extend_from_slice(key.as_bytes());
        // 0xFF never occurs in UTF-8: no key and field pair reads as another.
        self.cache_key.push(0xFF);
        self.cache_key.extend_from_slice(field.as_bytes());
        true
    }

    /// Whether field `field` of this run already has its series in `series`, either from an
    /// earlier line of the run or from the cache (then added to `series` now).
    fn known(
        &mut self,
        field: &str,
        series: &mut Vec<(Labels, Vec<Sample>)>,
        cache: &SharedLabelCache,
    ) -> bool {
        if self.fields.iter().any(|(k, _)| k == field) {
            return true;
        }
        if !self.build_cache_key(field) {
            return false;
        }
        let Some(labels) = cache.lock().get(&self.cache_key) else {
            return false;
        };
        // Two field keys may sanitise to one metric name: one series, as `series_of` does.
        let same = self
            .fields
            .iter()
            .map(|(_, i)| *i)
            .find(|i| series.get(*i).is_some_and(|(l, _)| *l == labels));
        let i = same.unwrap_or_else(|| {
            series.push((labels, Vec::new()));
            series.len() - 1
        });
        self.fields.push((field.to_string(), i));
        true
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

    /// The index in `series` of field `field`'s series, added on first use (and then kept in
    /// `cache`, if there is one). The key must be parsed unless the field is known.
    fn series_of(
        &mut self,
        field: String,
        series: &mut Vec<(Labels, Vec<Sample>)>,
        cache: Option<&SharedLabelCache>,
    ) -> usize {
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
                let labels = Labels::new(labels);
                if let Some(cache) = cache {
                    if self.build_cache_key(&field) {
                        cache.lock().insert(&self.cache_key, labels.clone());
                    }
                }
                series.push((labels, Vec::new()));
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
        cache: Option<&SharedLabelCache>,
    ) -> Result<(), String> {
        let (fields, ts) = parse_tail(line, self.key_end)?;
        let t = match ts {
            Some(ts) => opts
                .precision
                .to_millis(ts)
                .ok_or_else(|| format!("timestamp {ts} overflows in {:?}", opts.precision))?,
            None => opts.now_ms,
        };
        if !self.parsed {
            let before = (out.series.len(), self.fields.len());
            let all_known = match (&fields, cache) {
                (_, None) => false,
                (Fields::Bare(_), Some(c)) => self.known("", &mut out.series, c),
                (Fields::Named(named), Some(c)) => named
                    .iter()
                    .filter(|(_, v)| !matches!(v, FieldValue::String(_)))
                    .all(|(k, _)| self.known(k, &mut out.series, c)),
            };
            if !all_known {
                if let Err(e) = self.parse() {
                    // Cannot happen (`key_end` accepted this key, and it agrees with
                    // `parse_key`); kept all-or-nothing all the same.
                    out.series.truncate(before.0);
                    self.fields.truncate(before.1);
                    return Err(e);
                }
            }
        }
        if let Some(reason) = self.invalid.take() {
            return Err(reason);
        }
        match fields {
            Fields::Bare(v) => self.push(String::new(), Sample::new(t, v), out, cache),
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
                    self.push(key, Sample::new(t, v), out, cache);
                }
            }
        }
        Ok(())
    }

    fn push(
        &mut self,
        field: String,
        sample: Sample,
        out: &mut SeriesOutcome,
        cache: Option<&SharedLabelCache>,
    ) {
        let i = self.series_of(field, &mut out.series, cache);
        if let Some((_, samples)) = out.series.get_mut(i) {
            samples.push(sample);
            out.samples += 1;
        }
    }
}

/// Parses a whole body into series. Never fails as a whole: see [`SeriesOutcome`]. Yields the
/// samples [`super::parse`] yields, grouped.
pub fn parse_series(body: &str, opts: &LineOptions) -> SeriesOutcome {
    parse_body(body, opts, None)
}

/// [`parse_series`], taking the label sets of keys seen in earlier bodies from `cache` and
/// leaving new ones there. The outcome is the same as without the cache.
pub fn parse_series_cached(
    body: &str,
    opts: &LineOptions,
    cache: &SharedLabelCache,
) -> SeriesOutcome {
    parse_body(body, opts, Some(cache))
}

fn parse_body(body: &str, opts: &LineOptions, cache: Option<&SharedLabelCache>) -> SeriesOutcome {
    let mut out = SeriesOutcome::default();
    let mut run = Run::default();
    for (i, line) in body.split('\n').enumerate() {
        let Some(line) = content(line) else {
            continue;
        };
        let result = if run.continues(line) {
            run.add(line, opts, &mut out, cache)
        } else {
            run.restart(line, cache.is_some())
                .and_then(|()| run.add(line, opts, &mut out, cache))
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
