//! The in-memory series catalog: which series exist, their ids, and an inverted index from
//! label pairs to series for query selection.
//!
//! Memory layout, chosen because the catalog is resident for every active series:
//! - label strings are interned once (reference counted) and series store `[name, value, ...]`
//!   symbol pairs (4 bytes each) instead of strings;
//! - series live in one hash table keyed by the hash of their label set (the label set is
//!   not stored a second time as a key; collisions are resolved by comparing the stored
//!   labels), so a lookup by labels touches the table slot, the symbol list and the symbols;
//! - a small id → hash map finds a series by id;
//! - postings are sorted id lists per (name, value), with single-series lists inline.
//!
//! [`Catalog`] is single-threaded; the engine wraps it in a lock.

mod error;
mod hash;
mod limits;
mod postings;
mod query;
mod symbols;
mod view;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use hashbrown::HashTable;

use crate::storage::model::{Labels, SeriesId};

pub use error::CatalogError;
pub use limits::{validate_labels, LimitError, SeriesLimits};
pub use view::SeriesLabels;

/// Also keys the head's per-series map: series ids are assigned here, so a multiplication
/// spreads them well and no client can choose them.
pub(crate) use hash::BuildIdHasher;
use limits::truncate;
use postings::{shrink_if_sparse, PostingsIndex};
use symbols::{Sym, Symbols};

/// First id handed out; 0 stays free as an "invalid series" marker for other modules.
const FIRST_ID: SeriesId = 1;

/// One stored series.
#[derive(Debug)]
struct SeriesEntry {
    id: SeriesId,
    /// Hash of the label set, kept so the table can rehash without re-reading strings.
    hash: u64,
    /// Flattened `[name, value, name, value, ...]` in label-name order.
    syms: Box<[Sym]>,
}

/// The series catalog of one node.
pub struct Catalog {
    limits: SeriesLimits,
    symbols: Symbols,
    /// All series, keyed by the hash of their label set.
    series: HashTable<SeriesEntry>,
    /// Label-set hash of every series id, to find its entry in `series`.
    hash_of: HashMap<SeriesId, u64, BuildIdHasher>,
    postings: PostingsIndex,
    next_id: SeriesId,
}

impl Catalog {
    /// An empty catalog that creates series within `limits`.
    pub fn new(limits: SeriesLimits) -> Self {
        Catalog {
            limits,
            symbols: Symbols::default(),
            series: HashTable::new(),
            hash_of: HashMap::default(),
            postings: PostingsIndex::default(),
            next_id: FIRST_ID,
        }
    }

    /// The limits new series are checked against.
    pub fn limits(&self) -> &SeriesLimits {
        &self.limits
    }

    /// Number of series.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// Whether the catalog holds no series.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// The id the next created series will get. Persisted state should record it so that ids
    /// of removed series are not reused after a restart.
    pub fn next_id(&self) -> SeriesId {
        self.next_id
    }

    /// Whether series `id` exists.
    pub fn contains(&self, id: SeriesId) -> bool {
        self.hash_of.contains_key(&id)
    }

    /// The id of the series with exactly these labels.
    pub fn id_of(&self, labels: &Labels) -> Option<SeriesId> {
        self.lookup(labels).1
    }

    /// The id of the series with these labels, creating the series if it does not exist.
    /// Returns whether it was created. Labels are validated against the limits only on
    /// creation, so a series recovered from disk stays writable even if limits were tightened.
    pub fn get_or_create(&mut self, labels: &Labels) -> Result<(SeriesId, bool), LimitError> {
        let (hash, existing) = self.lookup(labels);
        if let Some(id) = existing {
            return Ok((id, false));
        }
        validate_labels(labels, &self.limits)?;
        // `next_id == u64::MAX` would take 2^64 creations; treated like a full catalog so the
        // counter can never wrap into ids that are in use.
        if self.series.len() >= self.limits.max_series || self.next_id == SeriesId::MAX {
            tracing::debug!(limit = self.limits.max_series, series = %truncate(&labels.to_string()), "series limit reached");
            return Err(LimitError::TooManySeries {
                limit: self.limits.max_series,
            });
        }
        let id = self.next_id;
        // Running out of the 2^32 label symbols means the node is far beyond any sane series
        // count; to the client that is the same condition as the series limit.
        self.add(id, hash, labels)
            .map_err(|_| LimitError::TooManySeries {
                limit: self.limits.max_series,
            })?;
        self.next_id += 1;
        Ok((id, true))
    }

    /// Adds a series recovered from persistent state (WAL replay, segment load) under its
    /// original id. Idempotent for a pair that is already present; moves the id counter past
    /// `id`. Limits are not applied: the series was accepted before.
    pub fn insert(&mut self, id: SeriesId, labels: Labels) -> Result<(), CatalogError> {
        if id < FIRST_ID || id == SeriesId::MAX {
            return Err(CatalogError::InvalidId { id });
        }
        let (hash, existing) = self.lookup(&labels);
        match existing {
            Some(existing_id) if existing_id == id => return Ok(()),
            Some(existing_id) => {
                return Err(CatalogError::LabelsConflict {
                    labels: truncate(&labels.to_string()),
                    existing_id,
                    new_id: id,
                })
            }
            None => {}
        }
        if let Some(current) = self.series_labels(id) {
            return Err(CatalogError::IdConflict {
                id,
                existing: truncate(&current.to_string()),
                new: truncate(&labels.to_string()),
            });
        }
        self.add(id, hash, &labels)?;
        self.next_id = self.next_id.max(id + 1);
        Ok(())
    }

    /// An owned copy of the labels of series `id`.
    pub fn labels(&self, id: SeriesId) -> Option<Labels> {
        self.series_labels(id).map(|l| l.to_labels())
    }

    /// The labels of series `id`, borrowed.
    pub fn series_labels(&self, id: SeriesId) -> Option<SeriesLabels<'_>> {
        self.entry(id)
            .map(|entry| SeriesLabels::new(&self.symbols, &entry.syms))
    }

    /// All series, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (SeriesId, SeriesLabels<'_>)> + '_ {
        self.series
            .iter()
            .map(|entry| (entry.id, SeriesLabels::new(&self.symbols, &entry.syms)))
    }

    /// Removes series `id` and its postings; returns whether it existed. The id is not reused.
    pub fn remove(&mut self, id: SeriesId) -> bool {
        let Some(hash) = self.hash_of.remove(&id) else {
            return false;
        };
        let Ok(slot) = self.series.find_entry(hash, |entry| entry.id == id) else {
            tracing::error!(
                id,
                "series table lost track of a series; catalog is inconsistent"
            );
            return false;
        };
        let (entry, _) = slot.remove();
        for pair in entry.syms.chunks_exact(2) {
            if let [name, value] = *pair {
                self.postings.remove(name, value, id);
            }
        }
        for &sym in entry.syms.iter() {
            self.symbols.release(sym);
        }
        shrink_if_sparse(&mut self.hash_of);
        if self.series.capacity() > 64 && self.series.len() < self.series.capacity() / 4 {
            self.series
                .shrink_to(self.series.len() * 2, |entry| entry.hash);
        }
        true
    }

    /// Releases spare capacity of all tables, e.g. after retention removed many series.
    pub fn shrink_to_fit(&mut self) {
        self.series.shrink_to_fit(|entry| entry.hash);
        self.hash_of.shrink_to_fit();
        self.postings.shrink_to_fit();
    }

    /// Hash of `labels` and the id of the series carrying them.
    fn lookup(&self, labels: &Labels) -> (u64, Option<SeriesId>) {
        let hash = self
            .symbols
            .hasher()
            .hash_labels(labels.iter().map(|l| (l.name.as_str(), l.value.as_str())));
        let found = self.series.find(hash, |entry| {
            entry.hash == hash && SeriesLabels::new(&self.symbols, &entry.syms).eq_labels(labels)
        });
        (hash, found.map(|entry| entry.id))
    }

    fn entry(&self, id: SeriesId) -> Option<&SeriesEntry> {
        let hash = *self.hash_of.get(&id)?;
        self.series.find(hash, |entry| entry.id == id)
    }

    /// Stores a series known to be absent under an unused `id`. Fails, changing nothing, only
    /// if the symbol space is exhausted.
    fn add(&mut self, id: SeriesId, hash: u64, labels: &Labels) -> Result<(), CatalogError> {
        let mut syms = Vec::with_capacity(labels.len() * 2);
        for label in labels.iter() {
            for s in [label.name.as_str(), label.value.as_str()] {
                match self.symbols.intern(s) {
                    Some(sym) => syms.push(sym),
                    None => {
                        for &sym in &syms {
                            self.symbols.release(sym);
                        }
                        return Err(CatalogError::SymbolSpaceExhausted);
                    }
                }
            }
        }
        for pair in syms.chunks_exact(2) {
            if let [name, value] = *pair {
                self.postings.add(name, value, id);
            }
        }
        self.series.insert_unique(
            hash,
            SeriesEntry {
                id,
                hash,
                syms: syms.into_boxed_slice(),
            },
            |entry| entry.hash,
        );
        self.hash_of.insert(id, hash);
        Ok(())
    }
}

/// Summary only: a derived `Debug` would dump every series of a million-series catalog.
impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("series", &self.series.len())
            .field("next_id", &self.next_id)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}
