//! Series ids remembered by the allocation of their label set.
//!
//! Ingest hands the engine label sets from its label caches (`ingest::label_cache`): a series
//! arrives as the same shared allocation request after request. Resolving it in the catalog
//! hashes every label with a keyed hash and compares every label, which was the largest
//! per-series cost of small remote-write requests; the memo maps the allocation's address to
//! the id with one multiplication instead.
//!
//! Why an address is a sound key: the memo keeps a clone of every label set it is keyed by,
//! so the allocation cannot be freed and its address reused for other labels while the entry
//! exists, and a label set never changes. Why the id is: the catalog never gives an id to
//! another label set (ids are not reused), so an id the catalog still contains still names
//! these labels. An id it no longer contains (retention removed the series) is looked up
//! again, like any label set the memo has not seen.

use std::collections::HashMap;

use crate::storage::catalog::BuildIdHasher;
use crate::storage::model::{Labels, SeriesId};

/// Entries before the memo is emptied: room for the label caches of every protocol's hot
/// series. Each entry keeps its label set alive, so the bound is also what it can hold on to.
pub(crate) const MAX_ENTRIES: usize = 131_072;

/// Label-set allocation → series id, bounded; see the module documentation.
#[derive(Debug)]
pub(crate) struct IdMemo {
    ids: HashMap<usize, (Labels, SeriesId), BuildIdHasher>,
    max_entries: usize,
}

impl IdMemo {
    pub(crate) fn new(max_entries: usize) -> Self {
        IdMemo {
            ids: HashMap::default(),
            max_entries,
        }
    }

    /// The id remembered for this very allocation, if any. The caller checks that the catalog
    /// still contains it.
    pub(crate) fn get(&self, labels: &Labels) -> Option<SeriesId> {
        self.ids.get(&key(labels)).map(|&(_, id)| id)
    }

    /// Remembers `id` for `labels`' allocation. Emptied first when full: a refill costs what
    /// the catalog lookup costs, never more.
    pub(crate) fn remember(&mut self, labels: &Labels, id: SeriesId) {
        if self.ids.len() >= self.max_entries {
            self.ids.clear();
        }
        self.ids.insert(key(labels), (labels.clone(), id));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.ids.len()
    }
}

/// The allocation's address over 16: two live label-set allocations (each holds two reference
/// counts, at least 16 bytes) never start less than 16 bytes apart, and the multiplicative id
/// hasher keeps an address's always-zero low bits zero, so they are shifted out.
fn key(labels: &Labels) -> usize {
    labels.allocation() >> 4
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(v: &str) -> Labels {
        Labels::from_metric("m", &[("k", v)])
    }

    #[test]
    fn an_id_is_found_by_the_same_allocation_only() {
        let mut memo = IdMemo::new(8);
        let a = labels("a");
        memo.remember(&a, 7);
        assert_eq!(memo.get(&a.clone()), Some(7));
        // Equal labels in another allocation are not this entry.
        assert_eq!(memo.get(&labels("a")), None);
    }

    #[test]
    fn a_remembered_allocation_is_kept_alive() {
        let mut memo = IdMemo::new(8);
        let a = labels("a");
        let address = a.allocation();
        memo.remember(&a, 1);
        drop(a);
        // Allocations made now cannot land where the remembered label set still lives.
        let others: Vec<Labels> = (0..1000).map(|i| labels(&i.to_string())).collect();
        assert!(others.iter().all(|l| l.allocation() != address));
        assert!(others.iter().all(|l| memo.get(l).is_none()));
    }

    #[test]
    fn the_engine_resolves_remembered_label_sets_and_checks_them_against_the_catalog() {
        use crate::storage::engine::Engine;
        use crate::storage::model::Sample;
        use crate::storage::options::EngineOptions;

        let dir = tempfile::tempdir().unwrap();
        let mut opts = EngineOptions::new(dir.path());
        opts.wal_sync = false;
        let e = Engine::open(opts).unwrap();
        let a = labels("a");
        let b = labels("b");
        e.append_series(&[(a.clone(), vec![Sample::new(1, 1.0)])])
            .unwrap();
        e.append_labeled(&[(b.clone(), Sample::new(1, 2.0))])
            .unwrap();
        let id_a = e
            .id_memo
            .read()
            .get(&a)
            .expect("remembered by append_series");
        let id_b = e
            .id_memo
            .read()
            .get(&b)
            .expect("remembered by append_labeled");
        assert_ne!(id_a, id_b);
        e.append_series(&[(a.clone(), vec![Sample::new(2, 3.0)])])
            .unwrap();
        assert_eq!(e.id_memo.read().get(&a), Some(id_a));

        // A series the catalog no longer has is created again, not refused as unknown.
        assert!(e.state.write().catalog.remove(id_a));
        let out = e
            .append_labeled(&[(a.clone(), Sample::new(3, 4.0))])
            .unwrap();
        assert_eq!((out.appended, out.rejected.len()), (1, 0));
        let id_again = e.id_memo.read().get(&a).unwrap();
        assert_ne!(id_again, id_a);
        assert_eq!(e.state.read().catalog.id_of(&a), Some(id_again));
        let out = e.append_series(&[(a, vec![Sample::new(4, 5.0)])]).unwrap();
        assert_eq!((out.appended, out.rejected.len()), (1, 0));
    }

    #[test]
    fn a_full_memo_starts_over() {
        let mut memo = IdMemo::new(4);
        let sets: Vec<Labels> = (0..5).map(|i| labels(&i.to_string())).collect();
        for (i, l) in sets.iter().enumerate() {
            memo.remember(l, i as SeriesId + 1);
        }
        assert_eq!(memo.len(), 1);
        assert_eq!(memo.get(&sets[4]), Some(5));
        assert_eq!(memo.get(&sets[0]), None);
    }
}
