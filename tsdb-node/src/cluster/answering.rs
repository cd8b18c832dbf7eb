//! Which replica answers for each ring arc when an aggregation is pushed down.
//!
//! Pushed-down partial aggregates are added up, so every series must be evaluated exactly
//! once: each arc of the ring goes to one node, the first of its owners (in ring order) that
//! may answer for it, and each node evaluates only the series whose tokens fall in the arcs
//! it was given. The arcs partition the token circle, so the sets handed out are disjoint
//! and together cover every token. An arc without such an owner means push-down cannot be
//! exact; the caller reads raw series instead.

use std::collections::{BTreeMap, HashMap};

use super::ring::Ring;
use super::token_ranges::TokenRanges;

/// The tokens each answering node evaluates, or `None` when some arc has no owner that
/// `usable` accepts (or the ring is empty).
pub fn assign(ring: &Ring, usable: impl Fn(&str) -> bool) -> Option<BTreeMap<String, TokenRanges>> {
    if ring.is_empty() {
        return None;
    }
    let arcs = ring.ranges();
    let mut verdict: HashMap<usize, bool> = HashMap::new();
    let mut by_node: BTreeMap<usize, Vec<(u64, u64)>> = BTreeMap::new();
    for (start, end, owners) in &arcs {
        // Two virtual nodes on the same token leave an empty arc between them, which
        // `from_arcs` would read as the whole circle.
        if start == end && arcs.len() > 1 {
            continue;
        }
        let chosen = owners.iter().copied().find(|&i| {
            *verdict
                .entry(i)
                .or_insert_with(|| ring.node(i).is_some_and(&usable))
        })?;
        by_node.entry(chosen).or_default().push((*start, *end));
    }
    by_node
        .into_iter()
        .map(|(i, a)| Some((ring.node(i)?.to_string(), TokenRanges::from_arcs(a))))
        .collect()
}

/// The same assignment limited to `tokens` (the arcs of a node that failed mid-query), nodes
/// left with nothing dropped.
pub fn restrict(
    plan: BTreeMap<String, TokenRanges>,
    tokens: &TokenRanges,
) -> BTreeMap<String, TokenRanges> {
    plan.into_iter()
        .map(|(n, r)| (n, r.intersect(tokens)))
        .filter(|(_, r)| !r.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ring::series_token;
    use crate::storage::Labels;

    fn tokens(n: u64) -> impl Iterator<Item = u64> {
        (0..n).map(|k| k.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (k << 7))
    }

    /// Every token is answered by exactly one node, and that node owns it.
    fn check_partition(ring: &Ring, plan: &BTreeMap<String, TokenRanges>) {
        for t in tokens(20_000).chain([0, 1, u64::MAX, u64::MAX - 1]) {
            let answering: Vec<&String> = plan
                .iter()
                .filter(|(_, r)| r.contains(t))
                .map(|(n, _)| n)
                .collect();
            assert_eq!(answering.len(), 1, "token {t}: {answering:?}");
            assert!(
                ring.owners_of_token(t).contains(&answering[0].as_str()),
                "token {t} answered by a non-owner"
            );
        }
    }

    #[test]
    fn all_usable_means_primaries_answer() {
        for rf in 1..=3 {
            let ring = Ring::new(["a", "b", "c"], rf);
            let plan = assign(&ring, |_| true).unwrap();
            check_partition(&ring, &plan);
            for t in tokens(5_000) {
                let primary = ring.owners_of_token(t)[0];
                assert!(plan[primary].contains(t));
            }
            // Series keys, not just raw tokens.
            for i in 0..500 {
                let l = Labels::from_metric("m", &[("i", &i.to_string())]);
                let primary = ring.owners(&l)[0];
                assert!(plan[primary].contains(series_token(&l)));
            }
        }
    }

    #[test]
    fn an_unusable_node_hands_its_arcs_to_the_next_owner() {
        let ring = Ring::new(["a", "b", "c", "d"], 3);
        let plan = assign(&ring, |n| n != "b").unwrap();
        assert!(!plan.contains_key("b"));
        check_partition(&ring, &plan);
        for t in tokens(5_000) {
            let first_usable = ring
                .owners_of_token(t)
                .into_iter()
                .find(|n| *n != "b")
                .unwrap();
            assert!(plan[first_usable].contains(t));
        }
        // Two of four down at RF=3: every arc still has a third owner.
        let plan = assign(&ring, |n| n != "b" && n != "c").unwrap();
        check_partition(&ring, &plan);
    }

    #[test]
    fn no_usable_owner_for_some_arc_means_no_plan() {
        let ring = Ring::new(["a", "b", "c"], 1);
        assert!(assign(&ring, |n| n != "c").is_none());
        let ring = Ring::new(["a", "b", "c"], 3);
        assert!(assign(&ring, |_| false).is_none());
        assert!(assign(&ring, |n| n == "a").is_some());
        assert!(assign(&Ring::new(Vec::<String>::new(), 1), |_| true).is_none());
        let one = Ring::new(["a"], 1);
        let plan = assign(&one, |_| true).unwrap();
        assert_eq!(plan["a"], TokenRanges::full());
    }

    #[test]
    fn retrying_a_failed_node_covers_exactly_its_arcs() {
        let ring = Ring::new(["a", "b", "c"], 2);
        let first = assign(&ring, |_| true).unwrap();
        let failed = first["b"].clone();
        let again = restrict(assign(&ring, |n| n != "b").unwrap(), &failed);
        assert!(!again.contains_key("b"));
        // The retry answers b's tokens once each and nothing else.
        for t in tokens(20_000) {
            let n = again.values().filter(|r| r.contains(t)).count();
            assert_eq!(n, usize::from(failed.contains(t)), "token {t}");
        }
        // Together with the nodes that did answer, every token once.
        let mut combined = again.clone();
        for (n, r) in first.into_iter().filter(|(n, _)| n != "b") {
            combined.entry(format!("{n}-first")).or_insert(r);
        }
        for t in tokens(20_000) {
            assert_eq!(combined.values().filter(|r| r.contains(t)).count(), 1);
        }
    }
}
