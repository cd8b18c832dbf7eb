//! The consistent-hash ring: which nodes own a series.
//!
//! Every ring member places [`VNODES_PER_NODE`] virtual nodes on a 64-bit circle at
//! `xxh3("<node id>#<i>")`. A series key hashes to a point; its owners are the first `rf`
//! *distinct* nodes met walking clockwise from there. Only the member set and `rf` go in, so
//! every node that sees the same membership computes the same owners, with no coordination.
//! XXH3 is a fixed, platform-independent specification, so the placement never changes with
//! the build.

use std::collections::BTreeSet;

use xxhash_rust::xxh3::xxh3_64;

use crate::storage::Labels;

/// Virtual nodes per physical node (seed 001): enough that each of a handful of nodes owns
/// close to an equal share.
pub const VNODES_PER_NODE: usize = 150;

/// An immutable ring for one membership. Cheap to share behind an `Arc`; rebuilt when the
/// member set changes.
#[derive(Clone, Debug)]
pub struct Ring {
    /// Member ids, sorted; the index is the node's number in `points`.
    nodes: Vec<String>,
    /// `(token, node index)`, sorted by token then node id, so collisions order the same way
    /// everywhere.
    points: Vec<(u64, u32)>,
    rf: usize,
}

/// The point a series key hashes to.
pub fn series_token(labels: &Labels) -> u64 {
    xxh3_64(&labels.series_key())
}

impl Ring {
    /// A ring over `members` (duplicates ignored) placing `rf` replicas, capped at the
    /// member count.
    pub fn new<I, S>(members: I, rf: usize) -> Ring
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let nodes: Vec<String> = members
            .into_iter()
            .map(Into::into)
            .collect::<BTreeSet<String>>()
            .into_iter()
            .collect();
        let mut points = Vec::with_capacity(nodes.len() * VNODES_PER_NODE);
        for (i, id) in nodes.iter().enumerate() {
            for v in 0..VNODES_PER_NODE {
                let token = xxh3_64(format!("{id}#{v}").as_bytes());
                points.push((token, i as u32));
            }
        }
        // Node indices follow id order, so sorting the pairs orders collisions by id.
        points.sort_unstable();
        Ring {
            rf: rf.max(1).min(nodes.len().max(1)),
            nodes,
            points,
        }
    }

    /// Member ids in sorted order.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// Copies per series: the configured factor capped at the member count.
    pub fn replication_factor(&self) -> usize {
        self.rf
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn contains(&self, node: &str) -> bool {
        self.nodes
            .binary_search_by(|n| n.as_str().cmp(node))
            .is_ok()
    }

    /// The owners of `token`: `rf` distinct node indices clockwise from it, primary first.
    /// Empty only when the ring is.
    pub fn owner_indices(&self, token: u64) -> Vec<usize> {
        let mut out = Vec::with_capacity(self.rf);
        if self.points.is_empty() {
            return out;
        }
        let start = self.points.partition_point(|p| p.0 < token);
        for k in 0..self.points.len() {
            let (_, node) = self.points[(start + k) % self.points.len()];
            let node = node as usize;
            if !out.contains(&node) {
                out.push(node);
                if out.len() == self.rf {
                    break;
                }
            }
        }
        out
    }

    /// The owners of a series, primary first.
    pub fn owners(&self, labels: &Labels) -> Vec<&str> {
        self.owner_indices(series_token(labels))
            .into_iter()
            .filter_map(|i| self.nodes.get(i).map(String::as_str))
            .collect()
    }

    /// The owners of a token, primary first.
    pub fn owners_of_token(&self, token: u64) -> Vec<&str> {
        self.owner_indices(token)
            .into_iter()
            .filter_map(|i| self.nodes.get(i).map(String::as_str))
            .collect()
    }

    /// The node id at `index` (as returned by [`Ring::owner_indices`]).
    pub fn node(&self, index: usize) -> Option<&str> {
        self.nodes.get(index).map(String::as_str)
    }

    /// Every arc of the circle, as `(start token exclusive, end token inclusive, owners)`.
    /// Arcs start at the previous point; the first wraps around from the last.
    pub fn ranges(&self) -> Vec<(u64, u64, Vec<usize>)> {
        let n = self.points.len();
        (0..n)
            .map(|i| {
                let end = self.points[i].0;
                let start = self.points[(i + n - 1) % n].0;
                (start, end, self.owner_indices(end))
            })
            .collect()
    }

    /// The fewest owners, over all arcs, that are not in `down`: how many copies of the
    /// worst-placed series can still be reached.
    pub fn min_answering_owners(&self, down: &[&str]) -> usize {
        if down.is_empty() || self.points.is_empty() {
            return self.rf;
        }
        let down: Vec<usize> = down
            .iter()
            .filter_map(|d| self.nodes.iter().position(|n| n == d))
            .collect();
        self.ranges()
            .iter()
            .map(|(_, _, owners)| owners.iter().filter(|o| !down.contains(o)).count())
            .min()
            .unwrap_or(self.rf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn labels(i: usize) -> Labels {
        Labels::from_metric("temperature", &[("device", &format!("d{i}"))])
    }

    #[test]
    fn owners_are_distinct_and_capped() {
        let ring = Ring::new(["a", "b", "c"], 3);
        for i in 0..200 {
            let o = ring.owners(&labels(i));
            assert_eq!(o.len(), 3);
            let set: BTreeSet<_> = o.iter().collect();
            assert_eq!(set.len(), 3);
        }
        let small = Ring::new(["a", "b"], 3);
        assert_eq!(small.replication_factor(), 2);
        assert_eq!(small.owners(&labels(1)).len(), 2);
        assert!(Ring::new(Vec::<String>::new(), 3)
            .owners(&labels(1))
            .is_empty());
    }

    #[test]
    fn placement_depends_only_on_the_member_set() {
        let a = Ring::new(["n3", "n1", "n2"], 2);
        let b = Ring::new(["n1", "n2", "n3", "n2"], 2);
        for i in 0..500 {
            assert_eq!(a.owners(&labels(i)), b.owners(&labels(i)));
        }
    }

    #[test]
    fn load_is_spread_evenly() {
        let ring = Ring::new(["n1", "n2", "n3", "n4", "n5"], 1);
        let mut count: HashMap<&str, usize> = HashMap::new();
        let total = 20_000;
        for i in 0..total {
            *count.entry(ring.owners(&labels(i))[0]).or_default() += 1;
        }
        for (node, c) in count {
            let share = c as f64 / total as f64;
            assert!((0.12..0.28).contains(&share), "{node} owns {share}");
        }
    }

    #[test]
    fn adding_a_node_moves_about_its_share() {
        let before = Ring::new(["n1", "n2", "n3", "n4"], 1);
        let after = Ring::new(["n1", "n2", "n3", "n4", "n5"], 1);
        let total = 10_000;
        let moved = (0..total)
            .filter(|&i| before.owners(&labels(i)) != after.owners(&labels(i)))
            .count();
        let share = moved as f64 / total as f64;
        // Ideal is 1/5; everything that moved must have moved to the new node.
        assert!((0.1..0.3).contains(&share), "{share}");
        for i in 0..total {
            if before.owners(&labels(i)) != after.owners(&labels(i)) {
                assert_eq!(after.owners(&labels(i))[0], "n5");
            }
        }
    }

    #[test]
    fn answering_owners_count_the_worst_range() {
        let ring = Ring::new(["a", "b", "c", "d", "e"], 3);
        assert_eq!(ring.min_answering_owners(&[]), 3);
        // Two nodes down: some range has both among its three owners.
        assert_eq!(ring.min_answering_owners(&["a", "b"]), 1);
        assert_eq!(ring.min_answering_owners(&["a"]), 2);
        assert_eq!(ring.min_answering_owners(&["a", "b", "c", "d", "e"]), 0);
        let three = Ring::new(["a", "b", "c"], 3);
        assert_eq!(three.min_answering_owners(&["a", "b"]), 1);
        assert_eq!(three.min_answering_owners(&["x"]), 3);
    }

    proptest! {
        #[test]
        fn every_key_gets_min_rf_members_distinct_owners(
            n in 1usize..8, rf in 1usize..5, key in any::<u64>()
        ) {
            let ids: Vec<String> = (0..n).map(|i| format!("node-{i}")).collect();
            let ring = Ring::new(ids, rf);
            let owners = ring.owner_indices(key);
            prop_assert_eq!(owners.len(), rf.min(n));
            let set: BTreeSet<_> = owners.iter().collect();
            prop_assert_eq!(set.len(), owners.len());
        }
    }
}
