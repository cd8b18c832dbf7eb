//! Reading selectors' data: one storage read per selector for the whole query, then cheap
//! slicing per evaluation time (lookback for instant selectors, windows for range selectors).

use std::collections::{BTreeMap, HashMap};

use promql_parser::label::MatchOp as PMatchOp;
use promql_parser::parser::VectorSelector;

use crate::storage::{Engine, Labels, MatchOp, Matcher};

use super::error::QueryError;
use super::rollup::{Bucket, RollupRead};
use super::source::SeriesSource;
use super::value::{is_stale_nan, METRIC_NAME};

/// One series as read from storage, staleness markers included.
#[derive(Debug)]
pub(crate) struct SeriesData {
    pub labels: Labels,
    pub samples: Vec<(i64, f64)>,
}

/// Identifies a selector node of the parsed query. The AST outlives the evaluation and is never
/// moved meanwhile, so a node's address is a stable, unique key.
pub(crate) fn node_key(vs: &VectorSelector) -> usize {
    vs as *const VectorSelector as usize
}

/// One series read at rollup resolution: whole buckets, and the raw samples at the window
/// ends (see [`super::rollup`]).
#[derive(Debug, Default)]
pub(crate) struct BucketedSeries {
    pub labels: Labels,
    pub buckets: Vec<Bucket>,
    pub edges: Vec<(i64, f64)>,
}

/// A range selector's data read from rollups. Series whose buckets cannot answer exactly were
/// read raw instead and sit with the raw data of the same node.
#[derive(Debug)]
pub(crate) struct Bucketed {
    pub read: RollupRead,
    pub series: Vec<BucketedSeries>,
}

/// Data of every selector of a query, read once up front.
#[derive(Default)]
pub(crate) struct Store {
    by_node: HashMap<usize, Vec<SeriesData>>,
    bucketed: HashMap<usize, Bucketed>,
    /// Samples read in total (rollup buckets count as one), for the `max_samples` limit.
    pub samples: usize,
    /// Selectors answered from rollups.
    pub rollup_selectors: usize,
    /// Warnings from the source (e.g. some replicas did not answer).
    pub warnings: Vec<String>,
}

impl Store {
    /// Reads `vs`'s series in `[mint, maxt]` (inclusive).
    pub fn load(
        &mut self,
        source: &dyn SeriesSource,
        vs: &VectorSelector,
        mint: i64,
        maxt: i64,
        max_samples: usize,
    ) -> Result<(), QueryError> {
        let mut out: Vec<SeriesData> = Vec::new();
        if mint <= maxt {
            let mut seen: HashMap<Labels, ()> = HashMap::new();
            for group in matcher_groups(vs)? {
                let selected = source.select(&group, mint, maxt)?;
                for w in selected.warnings {
                    if !self.warnings.contains(&w) {
                        self.warnings.push(w);
                    }
                }
                for (labels, samples) in selected.data {
                    if seen.insert(labels.clone(), ()).is_some() {
                        continue;
                    }
                    self.samples += samples.len();
                    if self.samples > max_samples {
                        return Err(QueryError::TooManySamples);
                    }
                    out.push(SeriesData {
                        labels,
                        samples: samples.iter().map(|x| (x.t, x.v)).collect(),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        self.by_node.insert(node_key(vs), out);
        Ok(())
    }

    /// Reads a range selector's data at rollup resolution as `read` says; a series whose
    /// buckets hold a NaN or an infinity is read raw over `[mint, maxt]` instead.
    pub fn load_rollup(
        &mut self,
        engine: &Engine,
        vs: &VectorSelector,
        read: RollupRead,
        (mint, maxt): (i64, i64),
        max_samples: usize,
    ) -> Result<(), QueryError> {
        let mut by_labels: BTreeMap<Labels, BucketedSeries> = BTreeMap::new();
        for group in matcher_groups(vs)? {
            if read.bucket_min <= read.bucket_max {
                for s in engine.select_rollup(
                    &group,
                    read.bucket_min,
                    read.bucket_max,
                    read.resolution,
                )? {
                    let entry = by_labels.entry(s.labels).or_default();
                    if entry.buckets.is_empty() {
                        entry.buckets = s.points.iter().map(Bucket::from_point).collect();
                    }
                }
            }
            for s in
                engine.select_where(&group, read.edge_min, read.edge_max, |t| read.is_edge(t))?
            {
                let entry = by_labels.entry(s.labels).or_default();
                if entry.edges.is_empty() {
                    entry.edges = s.samples.iter().map(|x| (x.t, x.v)).collect();
                }
            }
        }
        let mut series = Vec::with_capacity(by_labels.len());
        let mut raw = Vec::new();
        for (labels, mut s) in by_labels {
            if s.buckets.iter().all(|b| b.sum.is_finite()) {
                self.count(s.buckets.len() + s.edges.len(), max_samples)?;
                s.labels = labels;
                series.push(s);
            } else if mint <= maxt {
                if let Some(r) = select_exact(engine, &labels, mint, maxt)? {
                    self.count(r.samples.len(), max_samples)?;
                    raw.push(SeriesData {
                        labels: r.labels,
                        samples: r.samples.iter().map(|x| (x.t, x.v)).collect(),
                    });
                }
            }
        }
        self.rollup_selectors += 1;
        self.by_node.insert(node_key(vs), raw);
        self.bucketed
            .insert(node_key(vs), Bucketed { read, series });
        Ok(())
    }

    fn count(&mut self, n: usize, max_samples: usize) -> Result<(), QueryError> {
        self.samples = self.samples.saturating_add(n);
        if self.samples > max_samples {
            return Err(QueryError::TooManySamples);
        }
        Ok(())
    }

    /// The rollup data loaded for `vs`, if the planner chose rollups for it.
    pub fn bucketed(&self, vs: &VectorSelector) -> Option<&Bucketed> {
        self.bucketed.get(&node_key(vs))
    }

    /// The series loaded for `vs` (none if the planner never reached it).
    pub fn series(&self, vs: &VectorSelector) -> &[SeriesData] {
        self.by_node
            .get(&node_key(vs))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

/// The raw samples in `[mint, maxt]` of the one series with exactly `labels` (a rollup read's
/// fallback for a series whose buckets cannot answer exactly).
pub(crate) fn select_exact(
    engine: &Engine,
    labels: &Labels,
    mint: i64,
    maxt: i64,
) -> Result<Option<crate::storage::Series>, QueryError> {
    // Exact-label matchers may also match series with more labels; keep only this one.
    let exact: Vec<Matcher> = labels
        .iter()
        .map(|l| Matcher::equal(l.name.clone(), l.value.clone()))
        .collect();
    Ok(engine
        .select(&exact, mint, maxt)?
        .into_iter()
        .find(|r| &r.labels == labels))
}

/// The storage matchers of a selector: one group, or one per `or` alternative.
pub(crate) fn matcher_groups(vs: &VectorSelector) -> Result<Vec<Vec<Matcher>>, QueryError> {
    let mut groups = Vec::new();
    if vs.matchers.or_matchers.is_empty() {
        groups.push(convert(vs, &vs.matchers.matchers)?);
    } else {
        for g in &vs.matchers.or_matchers {
            let mut all = vs.matchers.matchers.clone();
            all.extend(g.iter().cloned());
            groups.push(convert(vs, &all)?);
        }
    }
    Ok(groups)
}

fn convert(
    vs: &VectorSelector,
    ms: &[promql_parser::label::Matcher],
) -> Result<Vec<Matcher>, QueryError> {
    let mut out = Vec::with_capacity(ms.len() + 1);
    if let Some(name) = &vs.name {
        if !ms.iter().any(|m| m.name == METRIC_NAME) {
            out.push(Matcher::equal(METRIC_NAME, name.clone()));
        }
    }
    for m in ms {
        let op = match m.op {
            PMatchOp::Equal => MatchOp::Equal,
            PMatchOp::NotEqual => MatchOp::NotEqual,
            PMatchOp::Re(_) => MatchOp::RegexMatch,
            PMatchOp::NotRe(_) => MatchOp::RegexNoMatch,
        };
        out.push(
            Matcher::new(op, m.name.clone(), m.value.clone())
                .map_err(|e| QueryError::Parse(e.to_string()))?,
        );
    }
    Ok(out)
}

/// The equality matchers of a selector on labels other than the name, as `absent()` reports
/// them; a label constrained by two equality matchers is left out.
pub(crate) fn absent_labels(vs: &VectorSelector) -> Labels {
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut dup: Vec<String> = Vec::new();
    for m in &vs.matchers.matchers {
        if m.op == PMatchOp::Equal && m.name != METRIC_NAME {
            if pairs.iter().any(|(n, _)| *n == m.name) {
                dup.push(m.name.clone());
            } else {
                pairs.push((m.name.clone(), m.value.clone()));
            }
        }
    }
    Labels::new(
        pairs
            .into_iter()
            .filter(|(n, _)| !dup.contains(n))
            .map(|(n, v)| crate::storage::Label::new(n, v))
            .collect(),
    )
}

/// The sample an instant selector sees at `t`: the newest one in `[t - lookback, t]`, unless it
/// is a staleness marker.
pub(crate) fn at_time(samples: &[(i64, f64)], t: i64, lookback: i64) -> Option<(i64, f64)> {
    let idx = samples.partition_point(|s| s.0 <= t);
    let (st, v) = *samples.get(idx.checked_sub(1)?)?;
    if st < t.saturating_sub(lookback) || is_stale_nan(v) {
        return None;
    }
    Some((st, v))
}

/// The samples in `[mint, maxt]` without staleness markers.
pub(crate) fn window(samples: &[(i64, f64)], mint: i64, maxt: i64) -> Vec<(i64, f64)> {
    let lo = samples.partition_point(|s| s.0 < mint);
    let hi = samples.partition_point(|s| s.0 <= maxt);
    samples
        .get(lo..hi.max(lo))
        .unwrap_or(&[])
        .iter()
        .filter(|s| !is_stale_nan(s.1))
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::promql::value::STALE_NAN_BITS;

    #[test]
    fn lookback_is_inclusive_and_stops_at_staleness() {
        let s = vec![
            (1000, 1.0),
            (2000, 2.0),
            (3000, f64::from_bits(STALE_NAN_BITS)),
        ];
        assert_eq!(at_time(&s, 999, 300_000), None);
        assert_eq!(at_time(&s, 1000, 300_000), Some((1000, 1.0)));
        assert_eq!(at_time(&s, 2500, 300_000), Some((2000, 2.0)));
        assert_eq!(at_time(&s, 3000, 300_000), None);
        assert_eq!(at_time(&s[..2], 2000 + 300_000, 300_000), Some((2000, 2.0)));
        assert_eq!(at_time(&s[..2], 2001 + 300_000, 300_000), None);
    }

    #[test]
    fn window_is_inclusive_and_drops_markers() {
        let s = vec![
            (1000, 1.0),
            (2000, 2.0),
            (3000, f64::from_bits(STALE_NAN_BITS)),
        ];
        assert_eq!(window(&s, 1000, 3000), vec![(1000, 1.0), (2000, 2.0)]);
        assert_eq!(window(&s, 1001, 2000), vec![(2000, 2.0)]);
        assert!(window(&s, 5000, 4000).is_empty());
    }
}
