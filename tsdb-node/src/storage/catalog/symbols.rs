//! Reference-counted string interner for label names and values.
//!
//! Most label strings repeat across many series (`__name__`, `site`, `unit="C"`), so each
//! distinct string is stored once and series and postings refer to it by a 4-byte [`Sym`].
//! Symbols are reference counted by the series that use them, so that series churn (devices
//! coming and going, retention dropping them) does not leak their unique strings.

use hashbrown::HashTable;

use super::hash::KeyedHasher;

/// Index of an interned string.
pub(crate) type Sym = u32;

/// A reference count that reached this value is never decremented again: the symbol is
/// pinned rather than risking a count that wrapped and frees a string still in use.
const PINNED: u32 = u32::MAX;

/// The interner. Slots of freed symbols are reused, so the tables stay proportional to the
/// number of live distinct strings.
#[derive(Debug, Default)]
pub(crate) struct Symbols {
    /// String of each symbol.
    strings: Vec<Slot>,
    /// Number of references to each symbol (0 for a freed slot).
    refs: Vec<u32>,
    /// Freed slots, reused before the vectors grow.
    free: Vec<Sym>,
    /// Symbols by the hash of their string; stores only the 4-byte symbol, not the string again.
    table: HashTable<Sym>,
    hasher: KeyedHasher,
}

impl Symbols {
    /// The keyed hasher, shared with the series table so that one random key serves both.
    pub(crate) fn hasher(&self) -> &KeyedHasher {
        &self.hasher
    }

    /// Number of live symbols.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// The string of `sym`. Symbols come only from this interner, so an unknown symbol is a
    /// catalog bug; it resolves to the empty string (an absent label) rather than panicking.
    pub(crate) fn resolve(&self, sym: Sym) -> &str {
        slot_str(&self.strings, sym).unwrap_or("")
    }

    /// The symbol of `s` if it is interned, without taking a reference.
    pub(crate) fn lookup(&self, s: &str) -> Option<Sym> {
        let hash = self.hasher.hash_str(s);
        let strings = &self.strings;
        self.table
            .find(hash, |&sym| slot_str(strings, sym) == Some(s))
            .copied()
    }

    /// Takes a reference to `s`, interning it if needed. `None` when all 2^32 symbols are live.
    pub(crate) fn intern(&mut self, s: &str) -> Option<Sym> {
        let hash = self.hasher.hash_str(s);
        let strings = &self.strings;
        if let Some(&sym) = self
            .table
            .find(hash, |&sym| slot_str(strings, sym) == Some(s))
        {
            if let Some(count) = self.refs.get_mut(sym as usize) {
                if *count != PINNED {
                    *count += 1;
                }
            }
            return Some(sym);
        }

        let sym = match self.pop_free_slot() {
            Some(sym) => {
                if let (Some(slot), Some(count)) = (
                    self.strings.get_mut(sym as usize),
                    self.refs.get_mut(sym as usize),
                ) {
                    *slot = Slot::new(s);
                    *count = 1;
                }
                sym
            }
            None => {
                let sym = Sym::try_from(self.strings.len()).ok()?;
                self.strings.push(Slot::new(s));
                self.refs.push(1);
                sym
            }
        };
        let (strings, hasher) = (&self.strings, &self.hasher);
        self.table.insert_unique(hash, sym, |&other| {
            hasher.hash_str(slot_str(strings, other).unwrap_or(""))
        });
        Some(sym)
    }

    /// Drops one reference to `sym`, freeing the string when none is left.
    pub(crate) fn release(&mut self, sym: Sym) {
        let Some(count) = self.refs.get_mut(sym as usize) else {
            return;
        };
        match *count {
            0 | PINNED => return,
            1 => *count = 0,
            _ => {
                *count -= 1;
                return;
            }
        }
        let Some(slot) = self.strings.get_mut(sym as usize) else {
            return;
        };
        let freed = std::mem::replace(slot, Slot::Free);
        let Some(s) = freed.as_str() else {
            return;
        };
        let hash = self.hasher.hash_str(s);
        if let Ok(entry) = self.table.find_entry(hash, |&other| other == sym) {
            entry.remove();
        }
        self.free.push(sym);
        self.maybe_shrink();
    }

    /// A freed slot to reuse. `free` may hold stale entries (slots since truncated away, or
    /// reused after being truncated and pushed again); they are discarded here.
    fn pop_free_slot(&mut self) -> Option<Sym> {
        while let Some(sym) = self.free.pop() {
            if matches!(self.strings.get(sym as usize), Some(Slot::Free)) {
                return Some(sym);
            }
        }
        None
    }

    /// Returns memory after a mass release (retention dropping many series at once); the
    /// quarter threshold keeps alternating growth and shrinkage from thrashing.
    fn maybe_shrink(&mut self) {
        let live = self.table.len();
        if self.table.capacity() > 1024 && live < self.table.capacity() / 4 {
            let (strings, hasher) = (&self.strings, &self.hasher);
            self.table.shrink_to(live * 2, |&sym| {
                hasher.hash_str(slot_str(strings, sym).unwrap_or(""))
            });
        }
        // Slots can only be dropped from the end; trailing freed slots are common after a
        // burst of new series is retired as a whole. Their entries in `free` go stale and are
        // skipped by `pop_free_slot`, which keeps each release O(1) amortized.
        while matches!(self.strings.last(), Some(Slot::Free)) {
            self.strings.pop();
            self.refs.pop();
        }
        if self.strings.capacity() > 1024 && self.strings.len() < self.strings.capacity() / 4 {
            self.strings.shrink_to(self.strings.len() * 2);
            self.refs.shrink_to(self.refs.len() * 2);
            self.free.shrink_to(self.free.len() * 2);
        }
    }

    /// Reference count of `sym` (0 if free); for consistency checks.
    #[cfg(test)]
    pub(crate) fn ref_count(&self, sym: Sym) -> u32 {
        self.refs.get(sym as usize).copied().unwrap_or(0)
    }

    /// All live symbols; for consistency checks.
    #[cfg(test)]
    pub(crate) fn live(&self) -> Vec<Sym> {
        self.table.iter().copied().collect()
    }
}

fn slot_str(strings: &[Slot], sym: Sym) -> Option<&str> {
    strings.get(sym as usize).and_then(Slot::as_str)
}

/// Longest string stored inside its slot. Slots are 24 bytes either way (a boxed string is
/// 16 bytes plus the tag), and most label values (ids, hosts, units) fit: they then cost no
/// allocation (32 bytes in malloc) and resolving them costs no pointer chase.
const INLINE_CAP: usize = 22;

/// Storage of one symbol's string.
#[derive(Debug)]
enum Slot {
    Free,
    Inline { len: u8, bytes: [u8; INLINE_CAP] },
    Heap(Box<str>),
}

impl Slot {
    fn new(s: &str) -> Slot {
        let mut bytes = [0u8; INLINE_CAP];
        match (bytes.get_mut(..s.len()), u8::try_from(s.len())) {
            (Some(dst), Ok(len)) => {
                dst.copy_from_slice(s.as_bytes());
                Slot::Inline { len, bytes }
            }
            _ => Slot::Heap(s.into()),
        }
    }

    /// The string; `None` for a free slot. Inline bytes were copied from a `str`, so the UTF-8
    /// check cannot fail; it is kept (instead of `unsafe`) because it costs nanoseconds.
    fn as_str(&self) -> Option<&str> {
        match self {
            Slot::Free => None,
            Slot::Inline { len, bytes } => bytes
                .get(..usize::from(*len))
                .and_then(|b| std::str::from_utf8(b).ok()),
            Slot::Heap(s) => Some(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_store_short_strings_inline() {
        assert_eq!(std::mem::size_of::<Slot>(), 24);
        for s in [
            "",
            "a",
            "dev-000123",
            &"x".repeat(22),
            &"y".repeat(23),
            "ünïcödé-välüé-long-enough",
        ] {
            assert_eq!(Slot::new(s).as_str(), Some(s));
        }
        assert!(matches!(Slot::new(&"x".repeat(22)), Slot::Inline { .. }));
        assert!(matches!(Slot::new(&"x".repeat(23)), Slot::Heap(_)));
        assert_eq!(Slot::Free.as_str(), None);
    }

    #[test]
    fn interning_is_reference_counted_and_slots_are_reused() {
        let mut s = Symbols::default();
        let a = s.intern("a").unwrap();
        let b = s.intern("b").unwrap();
        assert_ne!(a, b);
        assert_eq!(s.intern("a"), Some(a));
        assert_eq!(s.lookup("a"), Some(a));
        assert_eq!(s.resolve(b), "b");
        s.release(a);
        assert_eq!(s.lookup("a"), Some(a));
        s.release(a);
        assert_eq!(s.lookup("a"), None);
        assert_eq!(s.resolve(a), "");
        let c = s.intern("c").unwrap();
        assert_eq!(c, a, "freed slot is reused");
        assert_eq!(s.len(), 2);
        // Releasing unknown or already-free symbols is harmless.
        s.release(999);
        s.release(b);
        s.release(b);
        assert_eq!(s.len(), 1);
        assert_eq!(s.lookup("c"), Some(c));
    }

    #[test]
    fn mass_release_returns_memory() {
        let mut s = Symbols::default();
        let syms: Vec<Sym> = (0..10_000)
            .map(|i| s.intern(&format!("v{i}")).unwrap())
            .collect();
        for &sym in &syms[10..] {
            s.release(sym);
        }
        assert_eq!(s.len(), 10);
        assert!(s.table.capacity() < 2048, "{}", s.table.capacity());
        assert!(s.strings.len() <= 10);
        for (i, &sym) in syms[..10].iter().enumerate() {
            assert_eq!(s.resolve(sym), format!("v{i}"));
            assert_eq!(s.lookup(&format!("v{i}")), Some(sym));
        }
        let again = s.intern("new").unwrap();
        assert_eq!(s.resolve(again), "new");
    }
}
