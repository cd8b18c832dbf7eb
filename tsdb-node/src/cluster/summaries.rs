//! Merkle summaries of the local engine's data, per time window and token range: what a node
//! answers to a peer's `Tree` call and what it compares the answer with.
//!
//! Everything here reads storage and blocks; callers run it on the blocking pool. A window is
//! read with one `select_series_where`, so memory is bounded by one window's samples of the
//! series in range, never by the whole history.

use std::collections::BTreeMap;

use super::merkle::{Leaves, MerkleTree, WindowedLeaves};
use super::ring::series_token;
use super::token_ranges::TokenRanges;
use crate::storage::{Engine, Labels, Sample, StorageError};

/// Width of a summarised time window: the smallest storage block, so closed windows map to
/// settled blocks.
pub const WINDOW_MS: i64 = 2 * 3_600_000;

/// Samples one `Tree` answer summarises at most (a few hundred ms of work) before it asks
/// the caller to resume, so no call runs into the RPC deadline however large the history.
pub const SAMPLES_PER_CALL: u64 = 4_000_000;

/// Local series in a token range: `(token, labels, samples)`.
pub type TokenSeries = Vec<(u64, Labels, Vec<Sample>)>;

/// Summarised windows: `(window start, tree, samples in it)`.
pub type WindowTrees = Vec<(i64, MerkleTree, u64)>;

/// The part of window `w` inside `[mint, maxt]`, if any.
pub fn window_bounds(w: i64, window_ms: i64, mint: i64, maxt: i64) -> Option<(i64, i64)> {
    let lo = w.max(mint);
    let hi = w.saturating_add(window_ms - 1).min(maxt);
    (lo <= hi).then_some((lo, hi))
}

/// The local series in `ranges` with samples in `[mint, maxt]`, with their tokens.
pub fn local_series(
    engine: &Engine,
    ranges: &TokenRanges,
    mint: i64,
    maxt: i64,
) -> Result<TokenSeries, StorageError> {
    let found = engine.select_series_where(mint, maxt, |l| ranges.contains(series_token(l)))?;
    Ok(found
        .into_iter()
        .map(|s| (series_token(&s.labels), s.labels, s.samples))
        .collect())
}

/// One window's tree over the series in `ranges`, and how many samples went in.
pub fn window_tree(
    engine: &Engine,
    ranges: &TokenRanges,
    w: i64,
    window_ms: i64,
    mint: i64,
    maxt: i64,
) -> Result<(MerkleTree, u64), StorageError> {
    let mut leaves = WindowedLeaves::new(window_ms);
    if let Some((lo, hi)) = window_bounds(w, window_ms, mint, maxt) {
        for (token, _, samples) in local_series(engine, ranges, lo, hi)? {
            leaves.add_series(token, &samples);
        }
    }
    Ok(leaves
        .trees()
        .remove(&w)
        .unwrap_or_else(|| (Leaves::default().tree(), 0)))
}

/// Trees of the windows with data (or of `only`, when given), in window order. Stops once
/// [`SAMPLES_PER_CALL`] samples went in and returns where to resume.
pub fn trees(
    engine: &Engine,
    ranges: &TokenRanges,
    mint: i64,
    maxt: i64,
    window_ms: i64,
    only: &[i64],
) -> Result<(WindowTrees, Option<i64>), StorageError> {
    let windows: Vec<i64> = if only.is_empty() {
        engine.data_windows(window_ms, mint, maxt)
    } else {
        let mut w: Vec<i64> = only
            .iter()
            .map(|&t| crate::storage::layout::bucket_start(t, window_ms))
            .collect();
        w.sort_unstable();
        w.dedup();
        w
    };
    let mut out = Vec::new();
    let mut hashed = 0u64;
    for (k, &w) in windows.iter().enumerate() {
        if hashed >= SAMPLES_PER_CALL {
            return Ok((out, Some(windows[k])));
        }
        let (tree, n) = window_tree(engine, ranges, w, window_ms, mint, maxt)?;
        if n > 0 {
            hashed += n;
            out.push((w, tree, n));
        }
    }
    Ok((out, None))
}

/// The root of every window with data, for several token-range sets at once (one per peer),
/// reading the local data once. Roots only: a full tree per window and peer would hold
/// 16 KiB each for the whole history.
pub fn roots_many(
    engine: &Engine,
    sets: &[TokenRanges],
    mint: i64,
    maxt: i64,
    window_ms: i64,
) -> Result<Vec<BTreeMap<i64, u64>>, StorageError> {
    let union = sets
        .iter()
        .fold(TokenRanges::default(), |acc, s| acc.union(s));
    let mut out = vec![BTreeMap::new(); sets.len()];
    for w in engine.data_windows(window_ms, mint, maxt) {
        let Some((lo, hi)) = window_bounds(w, window_ms, mint, maxt) else {
            continue;
        };
        let series = local_series(engine, &union, lo, hi)?;
        if series.is_empty() {
            continue;
        }
        for (k, set) in sets.iter().enumerate() {
            let mut leaves = Leaves::default();
            let mut any = false;
            for (token, _, samples) in series.iter().filter(|(t, _, _)| set.contains(*t)) {
                for s in samples {
                    leaves.add(*token, *s);
                    any = true;
                }
            }
            if any {
                out[k].insert(w, leaves.tree().root());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::options::EngineOptions;

    fn engine(dir: &std::path::Path) -> Engine {
        let mut o = EngineOptions::new(dir);
        o.wal_sync = false;
        o.out_of_order_window_ms = 0;
        Engine::open(o).unwrap()
    }

    fn data() -> Vec<(Labels, Vec<Sample>)> {
        (0..40)
            .map(|i| {
                let l = Labels::from_metric("m", &[("d", &i.to_string())]);
                let s = (0..30)
                    .map(|k| Sample::new(k * 1_000_000 + i, (i * k) as f64))
                    .collect();
                (l, s)
            })
            .collect()
    }

    #[test]
    fn equal_engines_agree_and_a_missing_sample_shows() {
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (engine(da.path()), engine(db.path()));
        let all = data();
        a.append_repair(&all).unwrap();
        // b gets the same data in another order and partly flushed to segments.
        let mut rev = all.clone();
        rev.reverse();
        b.append_repair(&rev[..20]).unwrap();
        b.flush().unwrap();
        b.append_repair(&rev[20..]).unwrap();
        let full = TokenRanges::full();
        let roots = |e: &Engine| {
            roots_many(
                e,
                std::slice::from_ref(&full),
                i64::MIN,
                i64::MAX,
                WINDOW_MS,
            )
            .unwrap()
        };
        let ra = roots(&a);
        let rb = roots(&b);
        assert_eq!(ra, rb);
        assert_eq!(ra[0].len(), 5, "about 8 h of data spans five 2 h windows");

        // One more sample on a only: one window, one bucket.
        let (l, _) = &all[7];
        a.append_repair(&[(l.clone(), vec![Sample::new(8_000_000, 1.5)])])
            .unwrap();
        let ra = roots(&a);
        let differing: Vec<i64> = ra[0]
            .iter()
            .filter(|(w, r)| rb[0].get(w) != Some(r))
            .map(|(w, _)| *w)
            .collect();
        assert_eq!(differing, vec![WINDOW_MS]);
        let (ta, _) = window_tree(&a, &full, WINDOW_MS, WINDOW_MS, i64::MIN, i64::MAX).unwrap();
        let (tb, _) = window_tree(&b, &full, WINDOW_MS, WINDOW_MS, i64::MIN, i64::MAX).unwrap();
        assert_eq!(
            ta.differing_leaves(&tb),
            vec![super::super::merkle::bucket_of(series_token(l))]
        );

        // A range set that excludes the series hides the difference.
        let t = series_token(l);
        let without = TokenRanges::full().intersect(&TokenRanges::from_spans([
            (0, t.saturating_sub(1)),
            (t.saturating_add(1), u64::MAX),
        ]));
        let (ta, _) = window_tree(&a, &without, WINDOW_MS, WINDOW_MS, i64::MIN, i64::MAX).unwrap();
        let (tb, _) = window_tree(&b, &without, WINDOW_MS, WINDOW_MS, i64::MIN, i64::MAX).unwrap();
        assert_eq!(ta.root(), tb.root());
    }

    #[test]
    fn tree_answers_page_and_respect_bounds() {
        let d = tempfile::tempdir().unwrap();
        let e = engine(d.path());
        e.append_repair(&data()).unwrap();
        let full = TokenRanges::full();
        let (all, resume) = trees(&e, &full, i64::MIN, i64::MAX, WINDOW_MS, &[]).unwrap();
        assert_eq!(all.len(), 5);
        assert!(resume.is_none());
        assert_eq!(all.iter().map(|w| w.2).sum::<u64>(), 40 * 30);
        // Only the requested window, clipped to [mint, maxt].
        let (one, _) = trees(&e, &full, 0, 3_999_999, WINDOW_MS, &[0]).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].2, 40 * 4);
        assert!(window_bounds(0, WINDOW_MS, WINDOW_MS, i64::MAX).is_none());
    }
}
