//! What the cluster's anti-entropy needs from storage: which time windows hold data, the
//! samples of the series a predicate picks (decided on labels, before anything is decoded),
//! and appends of repaired samples that the out-of-order window does not refuse.

use crate::storage::layout;
use crate::storage::model::{Labels, Sample};
use crate::storage::querier::{is_raw, Series};
use crate::storage::{AppendOutcome, StorageError};

use super::{Engine, LabelSets};

impl Engine {
    /// Starts of the `window_ms`-wide windows that overlap `[mint, maxt]` and may hold data:
    /// those overlapping a raw segment's time range or the head's. Ascending and unique. A
    /// window listed here may turn out empty; a window with data is never missing.
    pub fn data_windows(&self, window_ms: i64, mint: i64, maxt: i64) -> Vec<i64> {
        if window_ms <= 0 || mint > maxt {
            return Vec::new();
        }
        let mut extents: Vec<(i64, i64)> = Vec::new();
        {
            let st = self.state.read();
            for h in st.segments.iter().filter(|h| is_raw(h)) {
                let meta = h.seg.meta();
                if meta.num_samples > 0 {
                    extents.push((meta.mint, meta.maxt));
                }
            }
            if let Some(f) = &st.frozen {
                extents.extend(f.head.time_range());
            }
            extents.extend(st.head.time_range());
        }
        let mut windows = Vec::new();
        for (a, b) in extents {
            let (a, b) = (a.max(mint), b.min(maxt));
            if a > b {
                continue;
            }
            let mut w = layout::bucket_start(a, window_ms);
            while w <= b {
                windows.push(w);
                match w.checked_add(window_ms) {
                    Some(next) => w = next,
                    None => break,
                }
            }
        }
        windows.sort_unstable();
        windows.dedup();
        windows
    }

    /// The samples in `[mint, maxt]` of every series whose labels `keep` accepts; the
    /// predicate runs before any chunk is decoded, so series it refuses cost nothing but a
    /// catalog walk. Series without samples in the range are omitted.
    pub fn select_series_where(
        &self,
        mint: i64,
        maxt: i64,
        keep: impl Fn(&Labels) -> bool,
    ) -> Result<Vec<Series>, StorageError> {
        if mint > maxt {
            return Err(StorageError::InvalidArgument(format!(
                "query start {mint} is after end {maxt}"
            )));
        }
        let mut snap = self.snapshot(&[], mint, maxt, None);
        snap.series.retain(|s| keep(&s.labels));
        let res = snap.select();
        if let Err(StorageError::CorruptSegment { path, reason }) = &res {
            self.quarantine_path(path, reason);
        }
        res
    }

    /// Stores samples a replica already accepted, whatever their age: anti-entropy repairs
    /// and hands over old data, which the out-of-order window (a guard against clients
    /// writing stale data) must not refuse. Like [`Engine::append_series`] otherwise: equal
    /// timestamps replace, durable on return, rejections indexed in batch order.
    pub fn append_repair(
        &self,
        batch: &[(Labels, Vec<Sample>)],
    ) -> Result<AppendOutcome, StorageError> {
        self.append_series_within(batch, i64::MAX, LabelSets::PerBatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::options::EngineOptions;

    fn engine(dir: &std::path::Path, window_ms: i64) -> Engine {
        let mut o = EngineOptions::new(dir);
        o.out_of_order_window_ms = window_ms;
        o.wal_sync = false;
        Engine::open(o).unwrap()
    }

    fn l(d: &str) -> Labels {
        Labels::from_metric("m", &[("d", d)])
    }

    #[test]
    fn repairs_bypass_the_out_of_order_window() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path(), 1_000);
        e.append_labeled(&[(l("a"), Sample::new(100_000, 1.0))])
            .unwrap();
        let refused = e
            .append_labeled(&[(l("a"), Sample::new(1_000, 2.0))])
            .unwrap();
        assert_eq!(refused.rejected.len(), 1, "a plain append refuses old data");
        let out = e
            .append_repair(&[(l("a"), vec![Sample::new(1_000, 2.0)])])
            .unwrap();
        assert_eq!(out.appended, 1);
        assert!(out.rejected.is_empty());
        let got = e.select_series_where(0, i64::MAX, |_| true).unwrap();
        assert_eq!(got[0].samples.len(), 2);
    }

    #[test]
    fn series_predicate_and_windows() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path(), 0);
        e.append_repair(&[
            (
                l("a"),
                vec![Sample::new(10, 1.0), Sample::new(7_200_010, 2.0)],
            ),
            (l("b"), vec![Sample::new(20, 3.0)]),
        ])
        .unwrap();
        let only_b = e
            .select_series_where(0, i64::MAX, |x| x.get("d") == Some("b"))
            .unwrap();
        assert_eq!(only_b.len(), 1);
        assert_eq!(only_b[0].samples, vec![Sample::new(20, 3.0)]);
        let w = 7_200_000;
        assert_eq!(e.data_windows(w, i64::MIN, i64::MAX), vec![0, w]);
        e.flush().unwrap();
        assert_eq!(e.data_windows(w, i64::MIN, i64::MAX), vec![0, w]);
        assert_eq!(e.data_windows(w, w, i64::MAX), vec![w]);
        assert!(e.data_windows(w, 3 * w, i64::MAX).is_empty());
    }
}
