//! Splitting series-grouped samples into batches of bounded size for
//! [`IngestSink::write_series`](crate::ingest::IngestSink::write_series).

use crate::storage::{Labels, Sample};

/// `series` in batches of at most `max` samples (at least one), in order; a series with more
/// samples than that is split over consecutive batches. Empty series are dropped.
pub fn series_chunks(
    series: Vec<(Labels, Vec<Sample>)>,
    max: usize,
) -> Vec<Vec<(Labels, Vec<Sample>)>> {
    let max = max.max(1);
    let mut out = Vec::new();
    let mut current: Vec<(Labels, Vec<Sample>)> = Vec::new();
    let mut room = max;
    for (labels, samples) in series {
        if samples.is_empty() {
            continue;
        }
        if room == 0 {
            out.push(std::mem::take(&mut current));
            room = max;
        }
        if samples.len() <= room {
            // The common case: the whole series fits and moves over without a copy.
            room -= samples.len();
            current.push((labels, samples));
            continue;
        }
        let mut rest = samples.as_slice();
        while !rest.is_empty() {
            if room == 0 {
                out.push(std::mem::take(&mut current));
                room = max;
            }
            let (now, later) = rest.split_at(rest.len().min(room));
            current.push((labels.clone(), now.to_vec()));
            room -= now.len();
            rest = later;
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_bounded_and_keep_order() {
        let s = |n: i64| -> Vec<Sample> { (0..n).map(|t| Sample::new(t, t as f64)).collect() };
        let a = Labels::from_metric("a", &[]);
        let b = Labels::from_metric("b", &[]);
        let out = series_chunks(
            vec![
                (a.clone(), s(5)),
                (b.clone(), Vec::new()),
                (b.clone(), s(2)),
            ],
            3,
        );
        let shape: Vec<Vec<(String, usize)>> = out
            .iter()
            .map(|c| {
                c.iter()
                    .map(|(l, v)| (l.metric_name().unwrap_or("").to_string(), v.len()))
                    .collect()
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                vec![("a".to_string(), 3)],
                vec![("a".to_string(), 2), ("b".to_string(), 1)],
                vec![("b".to_string(), 1)],
            ]
        );
        assert!(series_chunks(Vec::new(), 10).is_empty());
    }
}
