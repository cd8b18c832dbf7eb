//! What a read would cost, found without reading: the series a selection matches and an upper
//! bound on the samples it would decode, from the catalog, the heads' sample counts and the
//! segments' chunk index entries.
//!
//! A query server uses it to decide where to evaluate a query: one known to touch a few
//! thousand samples is cheaper to answer on the thread that received it than to hand to a
//! worker pool (two thread wake-ups, each a scheduler round trip on a busy machine).

use crate::storage::model::Matcher;
use crate::storage::querier::is_raw;

use super::Engine;

/// The size of a read, found from the index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadEstimate {
    /// Series the matchers select (with or without samples in the range).
    pub series: usize,
    /// Upper bound on the samples the read would decode.
    pub samples: usize,
}

impl Engine {
    /// The series `matchers` select and an upper bound on the samples reading them over
    /// `[mint, maxt]` (inclusive) would decode: every head sample of the selected series plus
    /// every sample of their segment chunks that overlap the range. `None` when more than `max_series` series match,
    /// the bound exceeds `max_samples`, or an index entry cannot be read (the read itself then
    /// reports it).
    pub fn estimate_samples(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        max_series: usize,
        max_samples: usize,
    ) -> Option<ReadEstimate> {
        let st = self.state.read();
        let ids = st.catalog.select(matchers);
        if ids.len() > max_series {
            return None;
        }
        let series = ids.len();
        if mint > maxt {
            return Some(ReadEstimate { series, samples: 0 });
        }
        let segments: Vec<_> = st
            .segments
            .iter()
            .filter(|h| is_raw(h) && h.name.overlaps(mint, maxt))
            .collect();
        let mut total = 0usize;
        for id in ids {
            if let Some(s) = st.head.series(id) {
                total = total.saturating_add(s.len());
            }
            if let Some(s) = st.frozen.as_ref().and_then(|f| f.head.series(id)) {
                total = total.saturating_add(s.len());
            }
            for h in &segments {
                for e in h.raw_chunks(id, mint, maxt).ok()? {
                    total = total.saturating_add(e.count as usize);
                }
            }
            if total > max_samples {
                return None;
            }
        }
        Some(ReadEstimate {
            series,
            samples: total,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::storage::{Engine, EngineOptions, Labels, Matcher, Retention, Sample};

    #[test]
    fn estimates_bound_the_read_without_reading() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = EngineOptions::new(dir.path());
        opts.wal_sync = false;
        opts.retention = Retention::keep_forever();
        let e = Engine::open(opts).unwrap();
        let batch = |from: i64, to: i64| {
            let mut b = Vec::new();
            for i in from..to {
                for d in ["a", "b", "c"] {
                    let l = Labels::from_metric("m", &[("d", d)]);
                    b.push((l, Sample::new(i * 10_000, i as f64)));
                }
            }
            b
        };
        e.append_labeled(&batch(0, 1000)).unwrap();
        e.flush().unwrap();
        e.append_labeled(&batch(1000, 1100)).unwrap();
        let one = [Matcher::equal("d", "a")];
        let all = [Matcher::equal("__name__", "m")];
        // Segment chunks and head samples of the selected series, at least what a read gets.
        let est = e.estimate_samples(&one, 0, i64::MAX, 16, 1 << 20).unwrap();
        assert_eq!(est.series, 1);
        assert!(est.samples >= 1100, "{est:?}");
        let est = e.estimate_samples(&all, 0, i64::MAX, 16, 1 << 20).unwrap();
        assert_eq!(est.series, 3);
        assert!(est.samples >= 3300);
        let read: usize = e
            .select(&all, 0, 5_000_000)
            .unwrap()
            .iter()
            .map(|s| s.samples.len())
            .sum();
        let est = e.estimate_samples(&all, 0, 5_000_000, 16, 1 << 20).unwrap();
        assert!(est.samples >= read);
        // Over a bound: no estimate.
        assert!(e.estimate_samples(&all, 0, i64::MAX, 2, 1 << 20).is_none());
        assert!(e.estimate_samples(&all, 0, i64::MAX, 16, 1000).is_none());
        // An empty range still counts the series; nothing matched is nothing.
        let est = e.estimate_samples(&all, 10, 0, 16, 0).unwrap();
        assert_eq!((est.series, est.samples), (3, 0));
        let none = [Matcher::equal("d", "z")];
        assert_eq!(e.estimate_samples(&none, 0, 10, 0, 0).unwrap().series, 0);
    }
}
