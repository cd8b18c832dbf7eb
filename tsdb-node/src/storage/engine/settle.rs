//! Settling the head: re-encoding, off the write path, the chunks that appends sealed as
//! Gorilla bytes.
//!
//! Re-encoding a chunk with the smallest encoding (decimal for sensor data, about a fifth of
//! Gorilla's size) cost a third of the CPU of an append, all of it under the state's write
//! lock and inside every writer's acknowledgement latency. Appends now seal a chunk as the
//! bytes its appender already holds; this pass takes copies of such chunks under the lock,
//! re-encodes them without it, and puts each result back only if the chunk is still the one
//! it read (a delete may rebuild a series' chunks in between). Queries read either encoding.

use super::Engine;

/// Chunks taken per round, so that the write lock is held for copying a bounded amount.
const ROUND_CHUNKS: usize = 4096;

impl Engine {
    /// Settles the live head's unsettled chunks, up to about `max`; returns how many it
    /// re-encoded or confirmed (see [`UnsettledChunk::recode`](crate::storage::head::UnsettledChunk::recode)
    /// for one that does not decode).
    pub fn settle_head(&self, max: usize) -> usize {
        let mut settled = 0;
        let mut taken = 0;
        while taken < max {
            let work = self
                .state
                .write()
                .head
                .unsettled_chunks(ROUND_CHUNKS.min(max - taken));
            if work.is_empty() {
                break;
            }
            taken += work.len();
            let recoded: Vec<_> = work
                .into_iter()
                .filter_map(|chunk| chunk.recode().map(|bytes| (chunk, bytes)))
                .collect();
            let mut st = self.state.write();
            for (chunk, bytes) in recoded {
                if st.head.settle(&chunk, bytes) {
                    settled += 1;
                }
            }
        }
        settled
    }
}

#[cfg(test)]
mod tests {
    use crate::storage::engine::Engine;
    use crate::storage::model::{Labels, MatchOp, Matcher, Sample};
    use crate::storage::options::EngineOptions;

    fn engine(dir: &std::path::Path) -> Engine {
        let mut o = EngineOptions::new(dir);
        o.wal_sync = false;
        o.head_chunk_samples = 10;
        Engine::open(o).unwrap()
    }

    fn all(e: &Engine) -> Vec<Sample> {
        let m = Matcher::new(MatchOp::Equal, "__name__", "m").unwrap();
        let got = e.select(&[m], i64::MIN, i64::MAX).unwrap();
        got.into_iter().flat_map(|s| s.samples).collect()
    }

    #[test]
    fn settling_shrinks_the_head_and_keeps_every_sample() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let labels = Labels::from_metric("m", &[("k", "v")]);
        let samples: Vec<Sample> = (0..95)
            .map(|i| Sample::new(i * 10_000, 20.0 + (i % 7) as f64 / 10.0))
            .collect();
        e.append_series(&[(labels, samples.clone())]).unwrap();
        let before = e.stats().head_bytes;
        assert_eq!(all(&e), samples);

        assert_eq!(e.settle_head(usize::MAX), 9, "nine full chunks were sealed");
        assert_eq!(e.settle_head(usize::MAX), 0, "nothing is left to settle");
        assert!(
            e.stats().head_bytes < before,
            "decimal chunks are smaller than Gorilla ones"
        );
        assert_eq!(all(&e), samples);
    }

    #[test]
    fn wal_replay_leaves_a_settled_head() {
        let dir = tempfile::tempdir().unwrap();
        let labels = Labels::from_metric("m", &[("k", "v")]);
        let samples: Vec<Sample> = (0..95)
            .map(|i| Sample::new(i * 10_000, 20.0 + (i % 7) as f64 / 10.0))
            .collect();
        let settled_bytes = {
            let e = engine(dir.path());
            e.append_series(&[(labels, samples.clone())]).unwrap();
            e.settle_head(usize::MAX);
            e.stats().head_bytes
        };
        let e = engine(dir.path());
        assert_eq!(
            e.settle_head(usize::MAX),
            0,
            "replay settled what it sealed"
        );
        assert_eq!(e.stats().head_bytes, settled_bytes);
        assert_eq!(all(&e), samples);
    }

    #[test]
    fn a_chunk_rebuilt_by_a_delete_is_not_overwritten_with_stale_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let e = engine(dir.path());
        let labels = Labels::from_metric("m", &[("k", "v")]);
        let samples: Vec<Sample> = (0..40).map(|i| Sample::new(i, i as f64)).collect();
        e.append_series(&[(labels, samples.clone())]).unwrap();

        // Copies taken, then a delete rebuilds the chunks, then the stale results come back.
        let taken = e.state.write().head.unsettled_chunks(usize::MAX);
        assert_eq!(taken.len(), 4);
        let m = Matcher::new(MatchOp::Equal, "__name__", "m").unwrap();
        e.delete(&[m], 5, 5).unwrap();
        let mut st = e.state.write();
        let applied = taken
            .iter()
            .filter(|chunk| {
                let bytes = crate::storage::codec::settle_gorilla_chunk(&chunk.bytes).unwrap();
                st.head.settle(chunk, bytes)
            })
            .count();
        assert_eq!(
            applied, 0,
            "every chunk was rebuilt; no stale copy may go back"
        );
        drop(st);
        e.settle_head(usize::MAX);
        let expect: Vec<Sample> = samples.into_iter().filter(|s| s.t != 5).collect();
        assert_eq!(all(&e), expect);
    }
}
