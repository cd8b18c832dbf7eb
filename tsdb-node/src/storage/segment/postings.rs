//! Postings: the inverted index from label name and value to the sorted ids of the series
//! carrying that label, which is what label matchers are evaluated against.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::iter::FusedIterator;

use super::bytes;
use super::format::{POSTINGS_ENTRY_LEN, POSTINGS_HEADER_LEN, SERIES_ID_LEN};
use super::symbols::Symbols;
use crate::storage::model::SeriesId;

/// Collects (name, value, id) triples while a segment is written.
#[derive(Default)]
pub(crate) struct PostingsBuilder<'a> {
    map: BTreeMap<&'a str, BTreeMap<&'a str, Vec<SeriesId>>>,
}

/// Why the postings section could not be written.
#[derive(Debug)]
pub(crate) enum PostingsWriteError {
    Io(io::Error),
    /// A count exceeds its u32 field.
    TooLarge,
    /// A string was not registered in the symbol table (a bug in the writer).
    MissingSymbol,
}

impl<'a> PostingsBuilder<'a> {
    /// Ids must be added in increasing order per (name, value), which the writer guarantees by
    /// accepting series only in increasing id order.
    pub(crate) fn add(&mut self, name: &'a str, value: &'a str, id: SeriesId) {
        self.map
            .entry(name)
            .or_default()
            .entry(value)
            .or_default()
            .push(id);
    }

    pub(crate) fn write(
        self,
        refs: &BTreeMap<&str, u32>,
        out: &mut impl Write,
    ) -> Result<(), PostingsWriteError> {
        use PostingsWriteError as E;
        let sym = |s: &str| refs.get(s).copied().ok_or(E::MissingSymbol);
        let count = |n: usize| u32::try_from(n).map_err(|_| E::TooLarge);
        let put = |out: &mut dyn Write, b: &[u8]| out.write_all(b).map_err(E::Io);

        let num_names = count(self.map.len())?;
        put(out, &num_names.to_le_bytes())?;
        put(out, &0u32.to_le_bytes())?;

        // Layout: name table, then all value tables in name order, then all id lists in
        // (name, value) order. Offsets are computed up front so that everything streams out.
        let mut values_offset = (POSTINGS_HEADER_LEN + self.map.len() * POSTINGS_ENTRY_LEN) as u64;
        for (name, values) in &self.map {
            put(out, &sym(name)?.to_le_bytes())?;
            put(out, &count(values.len())?.to_le_bytes())?;
            put(out, &values_offset.to_le_bytes())?;
            values_offset += (values.len() * POSTINGS_ENTRY_LEN) as u64;
        }
        let mut ids_offset = values_offset;
        for values in self.map.values() {
            for (value, ids) in values {
                put(out, &sym(value)?.to_le_bytes())?;
                put(out, &count(ids.len())?.to_le_bytes())?;
                put(out, &ids_offset.to_le_bytes())?;
                ids_offset += (ids.len() * SERIES_ID_LEN) as u64;
            }
        }
        for values in self.map.values() {
            for ids in values.values() {
                for id in ids {
                    put(out, &id.to_le_bytes())?;
                }
            }
        }
        Ok(())
    }
}

/// A sorted list of series ids read directly from the segment (no copy). Iterate it, or
/// `collect()` it into a `Vec<SeriesId>`.
#[derive(Clone, Debug)]
pub struct Postings<'a> {
    ids: &'a [u8],
}

impl<'a> Postings<'a> {
    pub(crate) fn new(ids: &'a [u8]) -> Self {
        Postings { ids }
    }

    /// The empty list, returned for a label name or value absent from the segment.
    pub fn empty() -> Self {
        Postings { ids: &[] }
    }
}

impl Iterator for Postings<'_> {
    type Item = SeriesId;

    fn next(&mut self) -> Option<SeriesId> {
        let id = bytes::u64_at(self.ids, 0)?;
        self.ids = self.ids.get(SERIES_ID_LEN..).unwrap_or(&[]);
        Some(id)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.ids.len() / SERIES_ID_LEN;
        (n, Some(n))
    }
}

impl ExactSizeIterator for Postings<'_> {}
impl FusedIterator for Postings<'_> {}

/// One 16-byte record of a name or value table.
#[derive(Clone, Copy)]
struct Record {
    symbol: u32,
    count: u32,
    offset: u64,
}

impl Record {
    fn decode_at(table: &[u8], index: usize) -> Option<Record> {
        let base = index.checked_mul(POSTINGS_ENTRY_LEN)?;
        Some(Record {
            symbol: bytes::u32_at(table, base)?,
            count: bytes::u32_at(table, base + 4)?,
            offset: bytes::u64_at(table, base + 8)?,
        })
    }
}

/// Read access to a postings section. Errors are reasons for `Corrupt`.
pub(crate) struct PostingsIndex<'a> {
    section: &'a [u8],
    symbols: Symbols<'a>,
}

impl<'a> PostingsIndex<'a> {
    pub(crate) fn new(section: &'a [u8], symbols: Symbols<'a>) -> Self {
        PostingsIndex { section, symbols }
    }

    /// The name table, bounds-checked against the section.
    fn names(&self) -> Result<(&'a [u8], usize), String> {
        let n = bytes::u32_at(self.section, 0).ok_or("postings section has no header")? as usize;
        if bytes::u32_at(self.section, 4) != Some(0) {
            return Err("postings header reserved field is not zero".into());
        }
        let t = bytes::table(self.section, POSTINGS_HEADER_LEN, n, POSTINGS_ENTRY_LEN)
            .ok_or_else(|| format!("postings name table ({n} names) runs past the section"))?;
        Ok((t, n))
    }

    /// The table a record points at (`width`-byte elements), bounds-checked against the section.
    fn sub_table(&self, r: Record, width: usize, what: &str) -> Result<&'a [u8], String> {
        usize::try_from(r.offset)
            .ok()
            .and_then(|o| bytes::table(self.section, o, r.count as usize, width))
            .ok_or_else(|| {
                format!(
                    "postings {what} table at {} ({} entries) runs past the section",
                    r.offset, r.count
                )
            })
    }

    fn find(&self, table: &'a [u8], n: usize, key: &str) -> Result<Option<Record>, String> {
        let found = bytes::binary_search(n, |i| {
            let r = Record::decode_at(table, i).ok_or("postings table entry out of bounds")?;
            Ok::<_, String>(self.symbols.bytes(r.symbol)?.cmp(key.as_bytes()))
        })?;
        Ok(found.and_then(|i| Record::decode_at(table, i)))
    }

    /// Value table of label `name`, if present.
    fn values_of(&self, name: &str) -> Result<Option<(&'a [u8], usize)>, String> {
        let (names, n) = self.names()?;
        match self.find(names, n, name)? {
            Some(r) => Ok(Some((
                self.sub_table(r, POSTINGS_ENTRY_LEN, "value")?,
                r.count as usize,
            ))),
            None => Ok(None),
        }
    }

    pub(crate) fn postings(&self, name: &str, value: &str) -> Result<Postings<'a>, String> {
        let Some((values, n)) = self.values_of(name)? else {
            return Ok(Postings::empty());
        };
        match self.find(values, n, value)? {
            Some(r) => Ok(Postings::new(self.sub_table(r, SERIES_ID_LEN, "id")?)),
            None => Ok(Postings::empty()),
        }
    }

    pub(crate) fn label_names(&self) -> Result<Vec<String>, String> {
        let (names, n) = self.names()?;
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let r = Record::decode_at(names, i).ok_or("postings name entry out of bounds")?;
            out.push(self.symbols.str(r.symbol)?.to_owned());
        }
        Ok(out)
    }

    pub(crate) fn label_values(&self, name: &str) -> Result<Vec<String>, String> {
        let Some((values, n)) = self.values_of(name)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let r = Record::decode_at(values, i).ok_or("postings value entry out of bounds")?;
            out.push(self.symbols.str(r.symbol)?.to_owned());
        }
        Ok(out)
    }

    /// Checks ordering throughout and hands every (name, value, ids) to `visit`, which checks
    /// consistency with the series table. Returns the total number of ids listed.
    pub(crate) fn check_all(
        &self,
        mut visit: impl FnMut(&'a str, &'a str, Postings<'a>) -> Result<(), String>,
    ) -> Result<u64, String> {
        let (names, n) = self.names()?;
        let mut total = 0u64;
        let mut prev_name: Option<&str> = None;
        for i in 0..n {
            let nr = Record::decode_at(names, i).ok_or("postings name entry out of bounds")?;
            let name = self.symbols.str(nr.symbol)?;
            if prev_name.is_some_and(|p| p >= name) {
                return Err(format!("postings label name {name:?} is out of order"));
            }
            prev_name = Some(name);
            if nr.count == 0 {
                return Err(format!("postings label name {name:?} has no values"));
            }
            let values = self.sub_table(nr, POSTINGS_ENTRY_LEN, "value")?;
            let mut prev_value: Option<&str> = None;
            for j in 0..nr.count as usize {
                let vr =
                    Record::decode_at(values, j).ok_or("postings value entry out of bounds")?;
                let value = self.symbols.str(vr.symbol)?;
                if prev_value.is_some_and(|p| p >= value) {
                    return Err(format!(
                        "postings value {value:?} of label {name:?} is out of order"
                    ));
                }
                prev_value = Some(value);
                if vr.count == 0 {
                    return Err(format!("postings list of {name}={value:?} is empty"));
                }
                let ids = Postings::new(self.sub_table(vr, SERIES_ID_LEN, "id")?);
                let mut prev_id = None;
                for id in ids.clone() {
                    if prev_id.is_some_and(|p| p >= id) {
                        return Err(format!(
                            "postings list of {name}={value:?} is not strictly ascending"
                        ));
                    }
                    prev_id = Some(id);
                }
                total += ids.len() as u64;
                visit(name, value, ids)?;
            }
        }
        Ok(total)
    }
}
