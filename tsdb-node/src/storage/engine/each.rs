//! Streaming reads: the selected series handed to a callback one at a time, on several threads,
//! instead of every series' samples materialised at once.
//!
//! [`Engine::select`] returns every selected series with all its samples; for a query over a
//! thousand series and a day that is hundreds of megabytes allocated, copied and freed again
//! before evaluation starts. A [`Selection`] keeps only the snapshot (series, head samples and
//! the sources to read) and merges one series at a time into a buffer the callback borrows.

use crate::storage::model::{Labels, Matcher, Sample};
use crate::storage::querier::Snapshot;
use crate::storage::StorageError;

use super::Engine;

/// The series a set of matchers selects over `[mint, maxt]`, in label order, not read yet.
pub struct Selection<'e> {
    engine: &'e Engine,
    snap: Snapshot,
}

impl Engine {
    /// Takes the snapshot of the series `matchers` select over `[mint, maxt]` (inclusive);
    /// their samples are read by [`Selection::map_each`].
    pub fn selection(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Selection<'_>, StorageError> {
        if mint > maxt {
            return Err(StorageError::InvalidArgument(format!(
                "query start {mint} is after end {maxt}"
            )));
        }
        let mut snap = self.snapshot(matchers, mint, maxt, None);
        snap.series.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(Selection { engine: self, snap })
    }
}

impl Selection<'_> {
    /// The selected series' labels in label order (including series without samples in the
    /// range, which [`Selection::map_each`] skips).
    pub fn labels(&self) -> impl Iterator<Item = &Labels> {
        self.snap.series.iter().map(|s| &s.labels)
    }

    /// Keeps only the series `keep` accepts, before any of them is read (a cluster member
    /// evaluating the series of the ring arcs it answers for).
    pub fn retain(&mut self, keep: impl Fn(&Labels) -> bool) {
        self.snap.series.retain(|s| keep(&s.labels));
    }

    pub fn len(&self) -> usize {
        self.snap.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.snap.series.is_empty()
    }

    /// Reads every selected series with samples in the range and calls
    /// `f(state, index, labels, samples)` with it, `index` being its position in
    /// [`Selection::labels`]. The series are split into `threads` contiguous runs in label
    /// order, each run folded into its own state from `init` on its own thread; the states are
    /// returned in run order, so folding them in that order visits series in label order.
    pub fn map_each<S, E>(
        &self,
        threads: usize,
        init: impl Fn() -> S + Sync,
        f: impl Fn(&mut S, usize, &Labels, &[Sample]) -> Result<(), E> + Sync,
    ) -> Result<Vec<S>, E>
    where
        S: Send,
        E: From<StorageError> + Send,
    {
        let n = self.snap.series.len();
        let threads = threads.clamp(1, n.max(1));
        let per = n.div_ceil(threads).max(1);
        let run = |lo: usize| -> Result<S, E> {
            let mut state = init();
            let hi = (lo + per).min(n);
            for i in lo..hi {
                let Some(s) = self.snap.series.get(i) else {
                    break;
                };
                let samples = match self.snap.merged(s, self.snap.mint, self.snap.maxt) {
                    Ok(v) => v,
                    Err(e) => {
                        if let StorageError::CorruptSegment { path, reason } = &e {
                            self.engine.quarantine_path(path, reason);
                        }
                        return Err(e.into());
                    }
                };
                if !samples.is_empty() {
                    f(&mut state, i, &s.labels, &samples)?;
                }
            }
            Ok(state)
        };
        if threads == 1 {
            return Ok(vec![run(0)?]);
        }
        std::thread::scope(|scope| {
            let run = &run;
            let handles: Vec<_> = (0..threads)
                .map(|t| scope.spawn(move || run(t * per)))
                .collect();
            handles
                .into_iter()
                .map(|h| match h.join() {
                    Ok(r) => r,
                    Err(panic) => std::panic::resume_unwind(panic),
                })
                .collect()
        })
    }
}
