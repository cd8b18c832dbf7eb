//! Sets of series tokens as sorted, disjoint, inclusive intervals of the 64-bit circle: the
//! ring arcs two replicas share, and the Merkle buckets anti-entropy repairs.

/// A set of tokens. Intervals are inclusive, sorted, disjoint and not adjacent, so equal sets
/// have equal representations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenRanges {
    spans: Vec<(u64, u64)>,
}

impl TokenRanges {
    /// Every token.
    pub fn full() -> TokenRanges {
        TokenRanges {
            spans: vec![(0, u64::MAX)],
        }
    }

    /// The union of inclusive intervals `(first, last)`; ones with `first > last` are empty.
    pub fn from_spans(spans: impl IntoIterator<Item = (u64, u64)>) -> TokenRanges {
        let mut v: Vec<(u64, u64)> = spans.into_iter().filter(|(a, b)| a <= b).collect();
        v.sort_unstable();
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(v.len());
        for (a, b) in v {
            match out.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        TokenRanges { spans: out }
    }

    /// The union of ring arcs `(start exclusive, end inclusive)`, as [`super::Ring::ranges`]
    /// gives them. An arc whose start is not below its end wraps past `u64::MAX`; an arc from
    /// a point to itself (a ring of one point) is the whole circle.
    pub fn from_arcs(arcs: impl IntoIterator<Item = (u64, u64)>) -> TokenRanges {
        let mut spans = Vec::new();
        for (start, end) in arcs {
            if start < end {
                spans.push((start + 1, end));
            } else if start == end {
                return TokenRanges::full();
            } else {
                if start < u64::MAX {
                    spans.push((start + 1, u64::MAX));
                }
                spans.push((0, end));
            }
        }
        TokenRanges::from_spans(spans)
    }

    pub fn spans(&self) -> &[(u64, u64)] {
        &self.spans
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub fn contains(&self, token: u64) -> bool {
        let i = self.spans.partition_point(|s| s.1 < token);
        self.spans.get(i).is_some_and(|s| s.0 <= token)
    }

    /// Tokens in both sets.
    pub fn intersect(&self, other: &TokenRanges) -> TokenRanges {
        let (mut i, mut j) = (0, 0);
        let mut out = Vec::new();
        while i < self.spans.len() && j < other.spans.len() {
            let (a, b) = (self.spans[i], other.spans[j]);
            let lo = a.0.max(b.0);
            let hi = a.1.min(b.1);
            if lo <= hi {
                out.push((lo, hi));
            }
            if a.1 < b.1 {
                i += 1;
            } else {
                j += 1;
            }
        }
        TokenRanges::from_spans(out)
    }

    /// Tokens in either set.
    pub fn union(&self, other: &TokenRanges) -> TokenRanges {
        TokenRanges::from_spans(self.spans.iter().chain(other.spans.iter()).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn arcs_wrap_and_merge() {
        let r = TokenRanges::from_arcs([(10, 20), (20, 30), (u64::MAX - 5, 3)]);
        assert_eq!(r.spans(), &[(0, 3), (11, 30), (u64::MAX - 4, u64::MAX)]);
        assert!(r.contains(0) && r.contains(11) && r.contains(30) && r.contains(u64::MAX));
        assert!(!r.contains(10) && !r.contains(31) && !r.contains(4));
        assert_eq!(TokenRanges::from_arcs([(7, 7)]), TokenRanges::full());
        assert!(TokenRanges::default().is_empty());
    }

    proptest! {
        #[test]
        fn set_operations_agree_with_membership(
            a in proptest::collection::vec((any::<u8>(), any::<u8>()), 0..6),
            b in proptest::collection::vec((any::<u8>(), any::<u8>()), 0..6),
            probe in any::<u8>(),
        ) {
            let mk = |v: &[(u8, u8)]| TokenRanges::from_spans(v.iter().map(|&(x, y)| (x as u64, y as u64)));
            let (ra, rb) = (mk(&a), mk(&b));
            let t = probe as u64;
            let inside = |v: &[(u8, u8)]| v.iter().any(|&(x, y)| x as u64 <= t && t <= y as u64);
            prop_assert_eq!(ra.contains(t), inside(&a));
            prop_assert_eq!(ra.intersect(&rb).contains(t), inside(&a) && inside(&b));
            prop_assert_eq!(ra.union(&rb).contains(t), inside(&a) || inside(&b));
        }
    }
}
