//! A bounded map from a series' key, as a client wrote it, to its label set.
//!
//! Sensors and forwarders send the same few thousand series over and over, and building a
//! label set (allocating every name and value, sanitising, sorting) costs more per sample than
//! storing it. Protocols that can name a series by a byte string before building its labels
//! (the MQTT payload's metric and device, a line protocol key) look it up here first; a hit
//! is a shared [`Labels`] clone, a reference count.
//!
//! Keys are the client's own bytes, so the map hashes them with a per-process random key
//! (std's SipHash), as the catalog does: chosen keys cannot collide on purpose. When the map is
//! full it is emptied and refills with what is still being written: no per-entry bookkeeping
//! on the hot path, and memory bounded by the entry limit.

use std::collections::HashMap;

use crate::storage::Labels;

/// Entries a cache holds by default: above a fleet's active series per node for the protocols
/// that use it. With [`MAX_KEY_BYTES`], at most about 64 MiB whatever clients send; a few MiB
/// for typical sensor label sets.
pub const DEFAULT_LABEL_CACHE_ENTRIES: usize = 65_536;

/// Longer keys are not cached: a client cannot fill the cache with huge label sets, and such
/// series are rare enough that building their labels each time costs nothing overall.
pub const MAX_KEY_BYTES: usize = 512;

/// A cache shared by concurrent requests; each lookup and insert holds the lock briefly.
pub type SharedLabelCache = parking_lot::Mutex<LabelCache>;

#[derive(Debug, Default)]
pub struct LabelCache {
    map: HashMap<Box<[u8]>, Labels>,
    max_entries: usize,
}

impl LabelCache {
    /// A cache of at most `max_entries` label sets; 0 keeps nothing.
    pub fn new(max_entries: usize) -> Self {
        LabelCache {
            map: HashMap::new(),
            max_entries,
        }
    }

    /// A cache of at most `max_entries` label sets behind a lock.
    pub fn shared(max_entries: usize) -> SharedLabelCache {
        parking_lot::Mutex::new(Self::new(max_entries))
    }

    /// The label set stored under `key`.
    pub fn get(&self, key: &[u8]) -> Option<Labels> {
        self.map.get(key).cloned()
    }

    /// Stores `labels` under `key`, emptying the cache first when it is full. Keys longer
    /// than [`MAX_KEY_BYTES`] are not stored.
    pub fn insert(&mut self, key: &[u8], labels: Labels) {
        if self.max_entries == 0 || key.len() > MAX_KEY_BYTES {
            return;
        }
        if self.map.len() >= self.max_entries {
            self.map.clear();
        }
        self.map.insert(key.into(), labels);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_return_the_stored_labels_and_a_full_cache_starts_over() {
        let mut c = LabelCache::new(2);
        let a = Labels::from_metric("a", &[("d", "1")]);
        let b = Labels::from_metric("b", &[]);
        c.insert(b"a", a.clone());
        c.insert(b"b", b.clone());
        assert_eq!(c.get(b"a"), Some(a.clone()));
        assert_eq!(c.get(b"b"), Some(b));
        assert_eq!(c.get(b"c"), None);
        c.insert(b"c", a.clone());
        assert_eq!(c.len(), 1, "full: emptied before the insert");
        assert_eq!(c.get(b"c"), Some(a));
        assert_eq!(c.get(b"a"), None);
    }

    #[test]
    fn a_zero_sized_cache_and_long_keys_keep_nothing() {
        let mut c = LabelCache::new(0);
        c.insert(b"a", Labels::from_metric("a", &[]));
        assert!(c.is_empty());
        let mut c = LabelCache::new(10);
        c.insert(&[b'k'; MAX_KEY_BYTES + 1], Labels::from_metric("a", &[]));
        assert!(c.is_empty());
        c.insert(&[b'k'; MAX_KEY_BYTES], Labels::from_metric("a", &[]));
        assert_eq!(c.len(), 1);
    }
}
