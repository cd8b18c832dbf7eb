//! Merkle trees summarising a replica's samples, so two replicas find where they differ by
//! exchanging hashes instead of data (seed 001 "Merkle Tree").
//!
//! The series token circle is cut into [`LEAVES`] equal buckets (the token's top [`DEPTH`]
//! bits), so a bucket is a contiguous token range that both replicas agree on without
//! coordination. A leaf is the wrapping sum of one hash per sample of the bucket — a sum, so
//! the order samples are visited in (series, sources, chunks) does not matter, and two
//! replicas holding the same samples get the same leaf bit for bit. A sample's hash covers its
//! series (the token seeds it), timestamp and value bits. Inner nodes hash their two
//! children; a node over nothing but empty leaves is 0, so an empty tree's root is 0 and a
//! side that sends nothing for a window means "empty".
//!
//! One tree summarises one time window (see `anti_entropy`); [`WindowedLeaves`] accumulates
//! the leaves of many windows in one pass over the data.

use std::collections::BTreeMap;

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use super::token_ranges::TokenRanges;
use crate::storage::layout;
use crate::storage::Sample;

/// Levels below the root: the tree has `2^DEPTH` leaves.
pub const DEPTH: u32 = 10;
/// Buckets of the token circle, one leaf each.
pub const LEAVES: usize = 1 << DEPTH;

/// The bucket (leaf index) of a series token.
pub fn bucket_of(token: u64) -> usize {
    (token >> (64 - DEPTH)) as usize
}

/// The tokens of `bucket`, as an inclusive interval.
pub fn bucket_span(bucket: usize) -> (u64, u64) {
    let width = 1u64 << (64 - DEPTH);
    let first = (bucket as u64) << (64 - DEPTH);
    (first, first + (width - 1))
}

/// The tokens of a set of buckets.
pub fn bucket_ranges(buckets: &[usize]) -> TokenRanges {
    TokenRanges::from_spans(buckets.iter().map(|&b| bucket_span(b)))
}

/// A sample's contribution to its leaf.
pub fn sample_hash(token: u64, s: Sample) -> u64 {
    let mut buf = [0u8; 16];
    buf[..8].copy_from_slice(&s.t.to_le_bytes());
    buf[8..].copy_from_slice(&s.v.to_bits().to_le_bytes());
    xxh3_64_with_seed(&buf, token)
}

fn parent(left: u64, right: u64) -> u64 {
    if left == 0 && right == 0 {
        return 0;
    }
    let mut buf = [0u8; 16];
    buf[..8].copy_from_slice(&left.to_le_bytes());
    buf[8..].copy_from_slice(&right.to_le_bytes());
    // An inner node is never 0 unless everything under it is empty, so "empty" stays
    // distinguishable from data (xxh3 hitting 0 exactly is remapped; one in 2^64).
    xxh3_64(&buf).max(1)
}

/// The leaves of one tree being filled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leaves(Vec<u64>);

impl Default for Leaves {
    fn default() -> Self {
        Leaves(vec![0; LEAVES])
    }
}

impl Leaves {
    pub fn add(&mut self, token: u64, s: Sample) {
        let leaf = &mut self.0[bucket_of(token)];
        *leaf = leaf.wrapping_add(sample_hash(token, s));
    }

    pub fn tree(&self) -> MerkleTree {
        MerkleTree::from_leaves(self.0.clone()).expect("LEAVES is a power of two")
    }
}

/// A complete binary tree of hashes; `levels[0]` is the root, `levels[depth]` the leaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MerkleTree {
    levels: Vec<Vec<u64>>,
}

impl MerkleTree {
    /// `None` unless the number of leaves is a power of two.
    pub fn from_leaves(leaves: Vec<u64>) -> Option<MerkleTree> {
        if !leaves.len().is_power_of_two() {
            return None;
        }
        let mut levels = vec![leaves];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let below = levels.last()?;
            let up: Vec<u64> = below.chunks_exact(2).map(|p| parent(p[0], p[1])).collect();
            levels.push(up);
        }
        levels.reverse();
        Some(MerkleTree { levels })
    }

    pub fn root(&self) -> u64 {
        self.levels[0][0]
    }

    pub fn depth(&self) -> u32 {
        (self.levels.len() - 1) as u32
    }

    /// The `2^d` nodes at depth `d` (0 is the root), left to right; `None` below the leaves.
    pub fn level(&self, d: u32) -> Option<&[u64]> {
        self.levels.get(d as usize).map(Vec::as_slice)
    }

    /// Indices of the leaves that differ from `other`'s, found by descending only into
    /// subtrees whose hashes differ. Trees of different depths differ everywhere.
    pub fn differing_leaves(&self, other: &MerkleTree) -> Vec<usize> {
        let depth = self.depth() as usize;
        if other.depth() as usize != depth {
            return (0..self.levels[depth].len()).collect();
        }
        let mut frontier = vec![0usize];
        for d in 0..=depth {
            let mut next = Vec::new();
            for &i in &frontier {
                if self.levels[d][i] == other.levels[d][i] {
                    continue;
                }
                if d == depth {
                    next.push(i);
                } else {
                    next.extend([2 * i, 2 * i + 1]);
                }
            }
            frontier = next;
        }
        frontier
    }
}

/// Leaves of many time windows, filled in one pass over samples in any order.
#[derive(Clone, Debug)]
pub struct WindowedLeaves {
    window_ms: i64,
    windows: BTreeMap<i64, (Leaves, u64)>,
}

impl WindowedLeaves {
    pub fn new(window_ms: i64) -> Self {
        WindowedLeaves {
            window_ms: window_ms.max(1),
            windows: BTreeMap::new(),
        }
    }

    /// Adds the samples of a series with token `token`.
    pub fn add_series(&mut self, token: u64, samples: &[Sample]) {
        for s in samples {
            let w = layout::bucket_start(s.t, self.window_ms);
            let slot = self.windows.entry(w).or_default();
            slot.0.add(token, *s);
            slot.1 += 1;
        }
    }

    /// Per window start: its tree and how many samples went in.
    pub fn trees(&self) -> BTreeMap<i64, (MerkleTree, u64)> {
        self.windows
            .iter()
            .map(|(w, (leaves, n))| (*w, (leaves.tree(), *n)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const W: i64 = 7_200_000;

    fn summary(data: &[(u64, Sample)]) -> BTreeMap<i64, MerkleTree> {
        let mut w = WindowedLeaves::new(W);
        for (token, s) in data {
            w.add_series(*token, &[*s]);
        }
        w.trees().into_iter().map(|(k, (t, _))| (k, t)).collect()
    }

    #[test]
    fn buckets_tile_the_circle() {
        assert_eq!(bucket_span(0).0, 0);
        assert_eq!(bucket_span(LEAVES - 1).1, u64::MAX);
        for b in [0, 1, 511, 1023] {
            let (a, z) = bucket_span(b);
            assert_eq!(bucket_of(a), b);
            assert_eq!(bucket_of(z), b);
            if b + 1 < LEAVES {
                assert_eq!(bucket_span(b + 1).0, z + 1);
            }
        }
    }

    #[test]
    fn empty_is_zero_and_data_is_not() {
        let empty = Leaves::default().tree();
        assert_eq!(empty.root(), 0);
        assert_eq!(empty.depth(), DEPTH);
        assert_eq!(empty.level(DEPTH).unwrap().len(), LEAVES);
        let mut one = Leaves::default();
        one.add(42, Sample::new(1, 1.0));
        assert_ne!(one.tree().root(), 0);
        assert_eq!(one.tree().differing_leaves(&empty), vec![bucket_of(42)]);
        assert!(MerkleTree::from_leaves(vec![0; 3]).is_none());
    }

    fn arb_data() -> impl Strategy<Value = Vec<(u64, Sample)>> {
        proptest::collection::vec((any::<u64>(), 0i64..5 * W, -1e6f64..1e6), 1..60).prop_map(|v| {
            // One sample per (series, timestamp), as storage keeps it.
            let mut seen = std::collections::BTreeSet::new();
            v.into_iter()
                .filter(|(tok, t, _)| seen.insert((*tok, *t)))
                .map(|(tok, t, x)| (tok, Sample::new(t, x)))
                .collect()
        })
    }

    proptest! {
        #[test]
        fn equal_data_gives_equal_roots_in_any_order(data in arb_data(), seed in any::<u64>()) {
            let mut shuffled = data.clone();
            // A deterministic permutation from the seed.
            shuffled.sort_by_key(|(tok, s)| xxh3_64_with_seed(&s.t.to_le_bytes(), seed ^ tok));
            let a = summary(&data);
            let b = summary(&shuffled);
            prop_assert_eq!(a.len(), b.len());
            for (w, t) in &a {
                prop_assert_eq!(t.root(), b[w].root());
                prop_assert!(t.differing_leaves(&b[w]).is_empty());
            }
        }

        #[test]
        fn a_single_difference_is_located_to_its_bucket_and_window(
            data in arb_data(),
            pick in any::<prop::sample::Index>(),
            change_value in any::<bool>(),
        ) {
            let i = pick.index(data.len());
            let (token, s) = data[i];
            let mut other = data.clone();
            if change_value {
                other[i].1 = Sample::new(s.t, s.v + 1.0);
            } else {
                other.remove(i);
            }
            let a = summary(&data);
            let b = summary(&other);
            let window = layout::bucket_start(s.t, W);
            for (w, ta) in &a {
                let empty = Leaves::default().tree();
                let tb = b.get(w).unwrap_or(&empty);
                if *w == window {
                    prop_assert_ne!(ta.root(), tb.root());
                    prop_assert_eq!(ta.differing_leaves(tb), vec![bucket_of(token)]);
                } else {
                    prop_assert_eq!(ta.root(), tb.root());
                }
            }
        }
    }
}
