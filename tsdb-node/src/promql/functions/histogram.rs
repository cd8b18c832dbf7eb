//! `histogram_quantile` over classic histograms (`le` buckets), as Prometheus 2.42's
//! `bucketQuantile`.

use std::collections::HashMap;

use crate::storage::Labels;

use super::super::value::{drop_name, without, Elem};

const BUCKET_LABEL: &str = "le";

/// One histogram: its output labels and (upper bound, cumulative count) buckets.
type Histogram = (Labels, Vec<(f64, f64)>);

/// One quantile per histogram (series grouped by all labels but `le`), name dropped.
pub(crate) fn histogram_quantile(q: f64, input: Vec<Elem>, ts: i64) -> Vec<Elem> {
    let mut order: Vec<Vec<u8>> = Vec::new();
    let mut groups: HashMap<Vec<u8>, Histogram> = HashMap::new();
    for el in input {
        let Some(ub) = el.labels.get(BUCKET_LABEL).and_then(parse_go_float) else {
            continue;
        };
        let key_labels = without(&el.labels, &[BUCKET_LABEL.to_string()]);
        let key = key_labels.series_key();
        match groups.get_mut(&key) {
            Some(g) => g.1.push((ub, el.v)),
            None => {
                order.push(key.clone());
                groups.insert(key, (drop_name(&key_labels), vec![(ub, el.v)]));
            }
        }
    }
    order
        .into_iter()
        .filter_map(|k| groups.remove(&k))
        .map(|(labels, buckets)| Elem {
            labels,
            t: ts,
            v: bucket_quantile(q, buckets),
        })
        .collect()
}

/// Parses a bucket bound as Go's `strconv.ParseFloat` would for the forms exporters write.
fn parse_go_float(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        _ => s.parse::<f64>().ok(),
    }
}

/// The quantile of one histogram given (upper bound, cumulative count) buckets.
pub(crate) fn bucket_quantile(q: f64, mut buckets: Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    match buckets.last() {
        Some(b) if b.0 == f64::INFINITY => {}
        _ => return f64::NAN,
    }
    // Coalesce buckets with the same bound.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for b in buckets {
        match merged.last_mut() {
            Some(last) if last.0 == b.0 => last.1 += b.1,
            _ => merged.push(b),
        }
    }
    // Make counts monotonic: scrapes of buckets are not atomic.
    let mut max = f64::NEG_INFINITY;
    for b in &mut merged {
        if b.1 > max {
            max = b.1;
        } else if b.1 < max {
            b.1 = max;
        }
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let n = merged.len() - 1;
    let b = merged[..n].partition_point(|x| x.1 < rank);
    if b == n {
        return merged[n - 1].0;
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let mut bucket_start = 0.0;
    let bucket_end = merged[b].0;
    let mut count = merged[b].1;
    if b > 0 {
        bucket_start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    bucket_start + (bucket_end - bucket_start) * (rank / count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_within_bucket() {
        let b = vec![(0.1, 10.0), (0.5, 30.0), (f64::INFINITY, 40.0)];
        assert!((bucket_quantile(0.5, b.clone()) - 0.3).abs() < 1e-12);
        assert_eq!(bucket_quantile(0.99, b.clone()), 0.5);
        assert!(bucket_quantile(0.5, vec![(0.1, 1.0)]).is_nan());
        assert_eq!(bucket_quantile(-1.0, b), f64::NEG_INFINITY);
    }
}
