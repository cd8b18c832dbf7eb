//! The symbol table: every distinct label name and value stored once, referenced by offset.
//! Deduplication matters because a handful of names and a few thousand values typically cover
//! hundreds of thousands of series.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};

use super::bytes;
use super::format::{SYMBOLS_HEADER_LEN, SYMBOL_LEN_FIELD};

/// Collects strings while a segment is written and assigns their references at the end.
#[derive(Default)]
pub(crate) struct SymbolTableBuilder<'a> {
    strings: BTreeSet<&'a str>,
}

/// Why the symbol table could not be written.
#[derive(Debug)]
pub(crate) enum SymbolWriteError {
    Io(io::Error),
    /// References are u32 offsets; a table past 4 GiB cannot be addressed.
    TooLarge,
}

impl<'a> SymbolTableBuilder<'a> {
    pub(crate) fn add(&mut self, s: &'a str) {
        self.strings.insert(s);
    }

    /// Writes the section (sorted, as the format requires) and returns each string's reference.
    pub(crate) fn write(
        self,
        out: &mut impl Write,
    ) -> Result<BTreeMap<&'a str, u32>, SymbolWriteError> {
        let count = u32::try_from(self.strings.len()).map_err(|_| SymbolWriteError::TooLarge)?;
        out.write_all(&count.to_le_bytes())
            .map_err(SymbolWriteError::Io)?;
        let mut refs = BTreeMap::new();
        let mut offset = SYMBOLS_HEADER_LEN as u64;
        for s in self.strings {
            let r = u32::try_from(offset).map_err(|_| SymbolWriteError::TooLarge)?;
            let len = u32::try_from(s.len()).map_err(|_| SymbolWriteError::TooLarge)?;
            out.write_all(&len.to_le_bytes())
                .map_err(SymbolWriteError::Io)?;
            out.write_all(s.as_bytes()).map_err(SymbolWriteError::Io)?;
            offset += (SYMBOL_LEN_FIELD + s.len()) as u64;
            refs.insert(s, r);
        }
        Ok(refs)
    }
}

/// Read access to a symbol-table section.
#[derive(Clone, Copy)]
pub(crate) struct Symbols<'a> {
    section: &'a [u8],
}

impl<'a> Symbols<'a> {
    pub(crate) fn new(section: &'a [u8]) -> Self {
        Symbols { section }
    }

    /// Raw bytes of the symbol at reference `r`, enough for comparisons during binary searches.
    pub(crate) fn bytes(&self, r: u32) -> Result<&'a [u8], String> {
        let r = r as usize;
        if r < SYMBOLS_HEADER_LEN {
            return Err(format!(
                "symbol reference {r} points into the symbol table header"
            ));
        }
        let len = bytes::u32_at(self.section, r)
            .ok_or_else(|| format!("symbol reference {r} is outside the symbol table"))?;
        bytes::slice(self.section, r + SYMBOL_LEN_FIELD, len as usize)
            .ok_or_else(|| format!("symbol at {r} (length {len}) runs past the symbol table"))
    }

    /// The symbol at reference `r` as a string.
    pub(crate) fn str(&self, r: u32) -> Result<&'a str, String> {
        std::str::from_utf8(self.bytes(r)?).map_err(|_| format!("symbol at {r} is not valid UTF-8"))
    }

    /// Walks the whole table checking that it is well formed and sorted; returns the reference
    /// of every symbol, ascending, so that callers can check that references hit symbol starts.
    pub(crate) fn check_all(&self) -> Result<Vec<u32>, String> {
        let count = bytes::u32_at(self.section, 0).ok_or("symbol table has no header")?;
        // Every symbol takes at least its length field, which bounds a trustworthy capacity.
        let max_possible = self.section.len() / SYMBOL_LEN_FIELD;
        if count as usize > max_possible {
            return Err(format!(
                "symbol table declares {count} symbols but cannot hold that many"
            ));
        }
        let mut refs = Vec::with_capacity(count as usize);
        let mut pos = SYMBOLS_HEADER_LEN;
        let mut prev: Option<&str> = None;
        for _ in 0..count {
            let r = u32::try_from(pos).map_err(|_| "symbol table exceeds 4 GiB".to_string())?;
            let s = self.str(r)?;
            if prev.is_some_and(|p| p >= s) {
                return Err(format!("symbol at {r} is not in strictly ascending order"));
            }
            prev = Some(s);
            refs.push(r);
            pos += SYMBOL_LEN_FIELD + s.len();
        }
        if pos != self.section.len() {
            return Err(format!(
                "symbol table has {} trailing bytes after its {count} symbols",
                self.section.len().saturating_sub(pos)
            ));
        }
        Ok(refs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbols_round_trip_sorted_and_deduplicated() {
        let mut b = SymbolTableBuilder::default();
        for s in ["b", "a", "", "b", "ünï"] {
            b.add(s);
        }
        let mut buf = Vec::new();
        let refs = b.write(&mut buf).unwrap();
        assert_eq!(refs.len(), 4);
        let t = Symbols::new(&buf);
        for (s, r) in &refs {
            assert_eq!(t.str(*r).unwrap(), *s);
        }
        let all = t.check_all().unwrap();
        assert_eq!(all, refs.values().copied().collect::<Vec<_>>());
        assert!(t.str(0).is_err());
        assert!(t.str(u32::MAX).is_err());
    }

    #[test]
    fn malformed_tables_are_rejected() {
        // Declares 2^32-1 symbols in 4 bytes.
        assert!(Symbols::new(&[0xff, 0xff, 0xff, 0xff]).check_all().is_err());
        // Unsorted.
        let buf = [2, 0, 0, 0, 1, 0, 0, 0, b'b', 1, 0, 0, 0, b'a'];
        assert!(Symbols::new(&buf).check_all().is_err());
        // Trailing garbage.
        let buf = [1, 0, 0, 0, 1, 0, 0, 0, b'a', 0];
        assert!(Symbols::new(&buf).check_all().is_err());
        // Invalid UTF-8.
        let buf = [1, 0, 0, 0, 1, 0, 0, 0, 0xff];
        assert!(Symbols::new(&buf).check_all().is_err());
    }
}
