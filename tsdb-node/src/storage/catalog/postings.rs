//! The inverted index: for every label name, for every value, the sorted ids of the series
//! carrying that pair; plus the sorted-set operations queries combine them with.

use std::collections::HashMap;

use crate::storage::model::SeriesId;

use super::hash::BuildIdHasher;
use super::symbols::Sym;

/// Sorted, duplicate-free list of series ids.
///
/// Most pairs in high-cardinality labels (device ids, instance names) belong to exactly one
/// series, so a single id is stored inline: that saves an allocation plus a 24-byte vector
/// header per such pair, which dominates the index at a million devices.
#[derive(Clone, Debug)]
pub(crate) enum PostingList {
    One(SeriesId),
    #[allow(
        clippy::box_collection,
        reason = "keeps the enum at 16 bytes; only lists of 2+ ids pay the extra indirection"
    )]
    Many(Box<Vec<SeriesId>>),
}

impl PostingList {
    pub(crate) fn as_slice(&self) -> &[SeriesId] {
        match self {
            PostingList::One(id) => std::slice::from_ref(id),
            PostingList::Many(ids) => ids,
        }
    }

    /// Adds `id`, keeping the list sorted. New series get the highest id so far, making the
    /// common case a push; recovery may insert out of order.
    fn insert(&mut self, id: SeriesId) {
        match self {
            PostingList::One(existing) => {
                let existing = *existing;
                if existing != id {
                    let ids = if existing < id {
                        vec![existing, id]
                    } else {
                        vec![id, existing]
                    };
                    *self = PostingList::Many(Box::new(ids));
                }
            }
            PostingList::Many(ids) => match ids.last() {
                Some(&last) if last < id => ids.push(id),
                _ => {
                    if let Err(pos) = ids.binary_search(&id) {
                        ids.insert(pos, id);
                    }
                }
            },
        }
    }

    /// Removes `id`; returns whether the list is now empty.
    fn remove(&mut self, id: SeriesId) -> bool {
        match self {
            PostingList::One(existing) => *existing == id,
            PostingList::Many(ids) => {
                if let Ok(pos) = ids.binary_search(&id) {
                    ids.remove(pos);
                }
                match ids.as_slice() {
                    [] => true,
                    [only] => {
                        *self = PostingList::One(*only);
                        false
                    }
                    _ => {
                        if ids.capacity() > 16 && ids.len() < ids.capacity() / 4 {
                            ids.shrink_to(ids.len() * 2);
                        }
                        false
                    }
                }
            }
        }
    }
}

/// Posting lists of all values of one label name.
pub(crate) type ValuePostings = HashMap<Sym, PostingList, BuildIdHasher>;

/// Label name → label value → posting list. Only pairs carried by at least one series are
/// present, so the keys double as the label-name and label-value listings.
#[derive(Debug, Default)]
pub(crate) struct PostingsIndex {
    by_name: HashMap<Sym, ValuePostings, BuildIdHasher>,
}

impl PostingsIndex {
    pub(crate) fn add(&mut self, name: Sym, value: Sym, id: SeriesId) {
        self.by_name
            .entry(name)
            .or_default()
            .entry(value)
            .and_modify(|list| list.insert(id))
            .or_insert(PostingList::One(id));
    }

    pub(crate) fn remove(&mut self, name: Sym, value: Sym, id: SeriesId) {
        let Some(values) = self.by_name.get_mut(&name) else {
            return;
        };
        if values.get_mut(&value).is_some_and(|list| list.remove(id)) {
            values.remove(&value);
            if values.is_empty() {
                self.by_name.remove(&name);
            } else {
                shrink_if_sparse(values);
            }
        }
        shrink_if_sparse(&mut self.by_name);
    }

    /// Series carrying exactly `name=value`.
    #[cfg(test)]
    pub(crate) fn get(&self, name: Sym, value: Sym) -> Option<&[SeriesId]> {
        self.by_name
            .get(&name)?
            .get(&value)
            .map(PostingList::as_slice)
    }

    /// Every value of `name` with its posting list.
    pub(crate) fn values(&self, name: Sym) -> Option<&ValuePostings> {
        self.by_name.get(&name)
    }

    /// Every label name carried by at least one series.
    pub(crate) fn names(&self) -> impl Iterator<Item = Sym> + '_ {
        self.by_name.keys().copied()
    }

    pub(crate) fn shrink_to_fit(&mut self) {
        for values in self.by_name.values_mut() {
            values.shrink_to_fit();
        }
        self.by_name.shrink_to_fit();
    }
}

/// Hash maps never shrink on their own; after retention drops most series of a label, give
/// the memory back, with a quarter threshold so alternating growth and removal don't thrash.
pub(crate) fn shrink_if_sparse<K: Eq + std::hash::Hash, V>(map: &mut HashMap<K, V, BuildIdHasher>) {
    if map.capacity() > 64 && map.len() < map.capacity() / 4 {
        map.shrink_to(map.len() * 2);
    }
}

/// Intersection of sorted sets, smallest first so the working set only shrinks.
pub(crate) fn intersect_all(mut lists: Vec<&[SeriesId]>) -> Vec<SeriesId> {
    lists.sort_by_key(|l| l.len());
    let mut iter = lists.into_iter();
    let Some(first) = iter.next() else {
        return Vec::new();
    };
    let mut acc = first.to_vec();
    for other in iter {
        if acc.is_empty() {
            break;
        }
        retain_sorted(&mut acc, other, true);
    }
    acc
}

/// Removes from `acc` every id in `other` (both sorted).
pub(crate) fn subtract(acc: &mut Vec<SeriesId>, other: &[SeriesId]) {
    retain_sorted(acc, other, false);
}

/// Keeps the ids of `acc` that are (`keep_common`) or are not in `other`.
///
/// When `other` is much longer than `acc` (a rare label value intersected with a metric
/// name carried by a million series) each id is found by galloping through `other`, which
/// costs O(|acc| log |other|) instead of a full merge.
fn retain_sorted(acc: &mut Vec<SeriesId>, other: &[SeriesId], keep_common: bool) {
    let mut rest = other;
    if other.len() / 16 > acc.len() {
        acc.retain(|id| {
            let pos = gallop(rest, *id);
            rest = rest.get(pos..).unwrap_or_default();
            (rest.first() == Some(id)) == keep_common
        });
    } else {
        acc.retain(|id| {
            let pos = rest.iter().position(|x| x >= id).unwrap_or(rest.len());
            rest = rest.get(pos..).unwrap_or_default();
            (rest.first() == Some(id)) == keep_common
        });
    }
}

/// Index of the first element of sorted `s` that is `>= target`, probing exponentially from
/// the front because successive targets are close to each other.
fn gallop(s: &[SeriesId], target: SeriesId) -> usize {
    let mut bound = 1;
    while bound < s.len() && s.get(bound).is_some_and(|&x| x < target) {
        bound *= 2;
    }
    let lo = bound / 2;
    let hi = (bound + 1).min(s.len());
    lo + s
        .get(lo..hi)
        .unwrap_or_default()
        .partition_point(|&x| x < target)
}

/// Union of posting lists of distinct values of one label. A series has one value per label,
/// so the lists are disjoint and concatenating then sorting yields a duplicate-free set.
pub(crate) fn union_disjoint<'a>(lists: impl Iterator<Item = &'a [SeriesId]>) -> Vec<SeriesId> {
    let mut out: Vec<SeriesId> = Vec::new();
    let mut sorted = true;
    for list in lists {
        if let (Some(&last), Some(&first)) = (out.last(), list.first()) {
            sorted &= last < first;
        }
        out.extend_from_slice(list);
    }
    if !sorted {
        out.sort_unstable();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn posting_list_stays_compact_and_sorted() {
        assert_eq!(std::mem::size_of::<PostingList>(), 16);
        let mut l = PostingList::One(5);
        l.insert(5);
        assert!(matches!(l, PostingList::One(5)));
        l.insert(3);
        l.insert(9);
        l.insert(7);
        assert_eq!(l.as_slice(), &[3, 5, 7, 9]);
        assert!(!l.remove(5));
        assert!(!l.remove(4));
        assert!(!l.remove(3));
        assert!(!l.remove(9));
        assert!(matches!(l, PostingList::One(7)));
        assert!(!l.remove(8));
        assert!(l.remove(7));
    }

    #[test]
    fn index_drops_empty_entries() {
        let mut idx = PostingsIndex::default();
        idx.add(1, 2, 10);
        idx.add(1, 2, 11);
        idx.add(1, 3, 12);
        assert_eq!(idx.get(1, 2), Some(&[10, 11][..]));
        idx.remove(1, 2, 10);
        idx.remove(1, 2, 11);
        assert_eq!(idx.get(1, 2), None);
        assert_eq!(idx.names().collect::<Vec<_>>(), vec![1]);
        idx.remove(1, 3, 12);
        assert_eq!(idx.names().count(), 0);
        // Removing what is not there is a no-op.
        idx.remove(1, 3, 12);
        idx.remove(7, 7, 7);
    }

    fn sorted_set() -> impl Strategy<Value = Vec<SeriesId>> {
        proptest::collection::btree_set(0u64..300, 0..120).prop_map(|s| s.into_iter().collect())
    }

    proptest! {
        #[test]
        fn set_operations_match_btreeset(a in sorted_set(), b in sorted_set(), c in sorted_set()) {
            let (sa, sb, sc): (BTreeSet<_>, BTreeSet<_>, BTreeSet<_>) =
                (a.iter().copied().collect(), b.iter().copied().collect(), c.iter().copied().collect());
            let expected: Vec<_> = sa.intersection(&sb).copied().filter(|x| sc.contains(x)).collect();
            prop_assert_eq!(intersect_all(vec![&a, &b, &c]), expected);

            let mut acc = a.clone();
            subtract(&mut acc, &b);
            prop_assert_eq!(acc, sa.difference(&sb).copied().collect::<Vec<_>>());

            // Exercise the galloping path: a short list against a long one.
            let short: Vec<_> = a.iter().copied().take(3).collect();
            let long: Vec<_> = (0u64..300).filter(|x| sb.contains(x) || x % 3 == 0).collect();
            let sl: BTreeSet<_> = long.iter().copied().collect();
            let mut acc = short.clone();
            subtract(&mut acc, &long);
            prop_assert_eq!(&acc, &short.iter().copied().filter(|x| !sl.contains(x)).collect::<Vec<_>>());
            prop_assert_eq!(
                intersect_all(vec![&long, &short]),
                short.iter().copied().filter(|x| sl.contains(x)).collect::<Vec<_>>()
            );

            let disjoint_b: Vec<_> = b.iter().copied().filter(|x| !sa.contains(x)).collect();
            let expected: Vec<_> = sa.union(&disjoint_b.iter().copied().collect()).copied().collect();
            prop_assert_eq!(union_disjoint([&disjoint_b[..], &a[..]].into_iter()), expected);
        }
    }
}
