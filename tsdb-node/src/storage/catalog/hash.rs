//! Hash functions of the catalog's tables.
//!
//! Two kinds of keys exist: strings and label sets, which come from clients and therefore
//! need a keyed hash (hash flooding would turn every lookup into a linear scan), and ids the
//! catalog assigned itself (symbol ids, series ids), which nobody outside can choose and can
//! take a single multiplication.

use std::hash::{BuildHasher, Hasher, RandomState};

/// Odd 64-bit constant (2^64 / golden ratio): multiplying by it is a bijection that spreads
/// low-bit differences into the high bits hashbrown uses for its control bytes.
const MIX: u64 = 0x9E37_79B9_7F4A_7C15;

/// [`BuildHasher`] for maps keyed by catalog-assigned integer ids.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct BuildIdHasher;

impl BuildHasher for BuildIdHasher {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

/// Multiplicative hasher for integer keys; see [`BuildIdHasher`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    // Only reached if a key type hashes through bytes; kept correct rather than fast.
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(MIX);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(32) ^ n).wrapping_mul(MIX);
    }
}

/// Keyed hashing of strings and label sets (SipHash with a per-catalog random key).
#[derive(Clone, Debug, Default)]
pub(crate) struct KeyedHasher {
    state: RandomState,
}

/// Separates names and values in the hashed byte stream, as in
/// [`Labels::series_key`](crate::storage::model::Labels::series_key); 0xFF never occurs in UTF-8,
/// so distinct label sets never feed the same bytes.
const SEP: [u8; 1] = [0xFF];

impl KeyedHasher {
    /// Hash of one interned string.
    pub(crate) fn hash_str(&self, s: &str) -> u64 {
        let mut h = self.state.build_hasher();
        h.write(s.as_bytes());
        h.finish()
    }

    /// Hash of a label set given as `(name, value)` pairs in name order. Equals the hash of the
    /// canonical series key, computed without materializing it.
    pub(crate) fn hash_labels<'a>(&self, pairs: impl Iterator<Item = (&'a str, &'a str)>) -> u64 {
        let mut h = self.state.build_hasher();
        for (name, value) in pairs {
            h.write(name.as_bytes());
            h.write(&SEP);
            h.write(value.as_bytes());
            h.write(&SEP);
        }
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_hash_is_separator_safe() {
        let h = KeyedHasher::default();
        let a = h.hash_labels([("ab", "c")].into_iter());
        let b = h.hash_labels([("a", "bc")].into_iter());
        assert_ne!(a, b);
        assert_eq!(a, h.hash_labels([("ab", "c")].into_iter()));
    }

    #[test]
    fn id_hash_spreads_sequential_ids() {
        let hashes: std::collections::HashSet<u64> = (0u64..10_000)
            .map(|i| BuildIdHasher.hash_one(i) >> 57)
            .collect();
        // All 128 control-byte tags are used by sequential ids.
        assert_eq!(hashes.len(), 128);
    }
}
