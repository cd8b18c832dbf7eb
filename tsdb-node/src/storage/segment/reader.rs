//! Read access to a segment file through a memory map.
//!
//! An open [`Segment`] keeps O(1) state — the path, the map, the decoded meta and the section
//! bounds — and decodes everything else from the mapped bytes on demand, so resident memory
//! does not grow with the data on disk. Every offset and count read from the file is checked
//! against the bounds of its section before use; malformed input yields
//! [`SegmentError::Corrupt`], never a panic or an allocation sized by an unchecked field.

use std::fmt;
use std::fs::File;
use std::iter::FusedIterator;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use tracing::debug;

use super::bytes;
use super::chunk_entry::{ChunkEntry, StoredChunkEntry};
use super::error::SegmentError;
use super::format::{
    self, Footer, Section, CHUNK_ENTRY_LEN, FOOTER_LEN, HEADER_LEN, LABEL_REF_LEN, SECTION_COUNT,
    SERIES_HEADER_LEN, SERIES_INDEX_ENTRY_LEN,
};
use super::meta::SegmentMeta;
use super::postings::{Postings, PostingsIndex};
use super::symbols::Symbols;
use crate::storage::model::{Label, Labels, SeriesId};

/// Path reported for segments opened with [`Segment::from_bytes`].
const IN_MEMORY_PATH: &str = "<in-memory segment>";

enum Backing {
    Mmap(Mmap),
    Owned(Vec<u8>),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Mmap(m) => m,
            Backing::Owned(v) => v,
        }
    }
}

/// An open, validated, immutable segment file.
pub struct Segment {
    path: PathBuf,
    backing: Backing,
    meta: SegmentMeta,
    /// `(start, end)` of each section, validated against the file size at open.
    sections: [(usize, usize); SECTION_COUNT],
}

impl fmt::Debug for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Segment")
            .field("path", &self.path)
            .field("file_size", &self.file_size())
            .field("meta", &self.meta)
            .finish()
    }
}

impl Segment {
    /// Maps and validates a segment file: magic, version, footer, section bounds, and the
    /// checksums of the index sections and meta. The cost is proportional to the index size;
    /// chunk data is not read (each chunk is checked when [`chunk_bytes`](Self::chunk_bytes)
    /// returns it).
    ///
    /// The file must not be modified or truncated while open (segments are immutable; the
    /// engine only renames or unlinks them, which keeps the mapping valid).
    pub fn open(path: &Path) -> Result<Segment, SegmentError> {
        let file = File::open(path).map_err(|e| SegmentError::io(path, e))?;
        let len = file
            .metadata()
            .map_err(|e| SegmentError::io(path, e))?
            .len();
        if len < (HEADER_LEN + FOOTER_LEN) as u64 {
            return Err(SegmentError::corrupt(
                path,
                format!("file is {len} bytes, too short for a segment"),
            ));
        }
        // SAFETY: mapping a file is only unsound if the file changes while mapped. Published
        // segments are immutable: nothing in the engine writes to or truncates them; removal
        // and quarantine use unlink/rename, which leave an existing mapping intact.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| SegmentError::io(path, e))?;
        #[cfg(unix)]
        {
            // Lookups touch a few scattered pages; read-ahead would only evict useful pages.
            // Purely a hint, so failure is irrelevant.
            let _ = map.advise(memmap2::Advice::Random);
        }
        Segment::parse(path.to_path_buf(), Backing::Mmap(map))
    }

    /// Validates a segment image held in memory, with the same checks as [`open`](Self::open).
    /// Errors name the path `<in-memory segment>`.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Segment, SegmentError> {
        Segment::parse(PathBuf::from(IN_MEMORY_PATH), Backing::Owned(bytes))
    }

    fn parse(path: PathBuf, backing: Backing) -> Result<Segment, SegmentError> {
        let file = backing.bytes();
        let corrupt = |reason: String| SegmentError::corrupt(&path, reason);
        format::check_header(file).map_err(corrupt)?;
        let footer_start = file
            .len()
            .checked_sub(FOOTER_LEN)
            .filter(|s| *s >= HEADER_LEN)
            .ok_or_else(|| {
                corrupt(format!(
                    "file is {} bytes, too short for a segment",
                    file.len()
                ))
            })?;
        let footer = Footer::decode(file.get(footer_start..).unwrap_or(&[])).map_err(corrupt)?;
        let sections = section_bounds(&footer, footer_start).map_err(corrupt)?;

        for section in &Section::ALL[1..] {
            let (start, end) = sections[*section as usize];
            let expected = footer.get(*section).crc;
            let actual = crc32c::crc32c(file.get(start..end).unwrap_or(&[]));
            if actual != expected {
                return Err(corrupt(format!(
                    "{} checksum mismatch (stored {expected:#010x}, computed {actual:#010x})",
                    section.name()
                )));
            }
        }
        let (ms, me) = sections[Section::Meta as usize];
        let meta = SegmentMeta::decode(file.get(ms..me).unwrap_or(&[])).map_err(corrupt)?;
        let (is, ie) = sections[Section::SeriesIndex as usize];
        let index_len = ie - is;
        if index_len % SERIES_INDEX_ENTRY_LEN != 0 {
            return Err(corrupt(format!(
                "series index length {index_len} is not a multiple of its entry size"
            )));
        }
        if (index_len / SERIES_INDEX_ENTRY_LEN) as u64 != meta.num_series {
            return Err(corrupt(format!(
                "series index holds {} entries but meta declares {} series",
                index_len / SERIES_INDEX_ENTRY_LEN,
                meta.num_series
            )));
        }
        debug!(path = %path.display(), size = file.len(), series = meta.num_series, "segment opened");
        Ok(Segment {
            path,
            backing,
            meta,
            sections,
        })
    }

    /// The segment's metadata.
    pub fn meta(&self) -> &SegmentMeta {
        &self.meta
    }

    /// Path the segment was opened from (`<in-memory segment>` for [`from_bytes`](Self::from_bytes)).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the file in bytes.
    pub fn file_size(&self) -> u64 {
        self.backing.bytes().len() as u64
    }

    fn section(&self, s: Section) -> &[u8] {
        let (start, end) = self.sections[s as usize];
        self.backing.bytes().get(start..end).unwrap_or(&[])
    }

    /// Bounds of a section, for tests that damage specific parts of an image.
    #[cfg(test)]
    pub(crate) fn section_range(&self, s: Section) -> (usize, usize) {
        self.sections[s as usize]
    }

    fn corrupt(&self, reason: impl Into<String>) -> SegmentError {
        SegmentError::corrupt(&self.path, reason)
    }

    fn symbols(&self) -> Symbols<'_> {
        Symbols::new(self.section(Section::Symbols))
    }

    fn postings_index(&self) -> PostingsIndex<'_> {
        PostingsIndex::new(self.section(Section::Postings), self.symbols())
    }

    fn index_entry(&self, i: usize) -> Option<(SeriesId, u64)> {
        let index = self.section(Section::SeriesIndex);
        let base = i.checked_mul(SERIES_INDEX_ENTRY_LEN)?;
        Some((bytes::u64_at(index, base)?, bytes::u64_at(index, base + 8)?))
    }

    fn num_index_entries(&self) -> usize {
        self.section(Section::SeriesIndex).len() / SERIES_INDEX_ENTRY_LEN
    }

    /// Looks up a series by id (binary search over the series index).
    pub fn series(&self, id: SeriesId) -> Result<Option<SeriesEntryRef<'_>>, SegmentError> {
        let found =
            bytes::binary_search(self.num_index_entries(), |i| match self.index_entry(i) {
                Some((entry_id, _)) => Ok(entry_id.cmp(&id)),
                None => Err(self.corrupt("series index entry out of bounds")),
            })?;
        match found.and_then(|i| self.index_entry(i)) {
            Some((_, offset)) => self.entry_at(id, offset).map(Some),
            None => Ok(None),
        }
    }

    /// Decodes the series-table entry at `offset`, which the index says belongs to `id`.
    fn entry_at(&self, id: SeriesId, offset: u64) -> Result<SeriesEntryRef<'_>, SegmentError> {
        let table = self.section(Section::Series);
        let bad = || {
            self.corrupt(format!(
                "series {id}: entry at offset {offset} runs past the series table"
            ))
        };
        let off = usize::try_from(offset).map_err(|_| bad())?;
        let header = bytes::slice(table, off, SERIES_HEADER_LEN).ok_or_else(bad)?;
        let (Some(stored_id), Some(num_labels), Some(num_chunks)) = (
            bytes::u64_at(header, 0),
            bytes::u32_at(header, 8),
            bytes::u32_at(header, 12),
        ) else {
            return Err(bad());
        };
        if stored_id != id {
            return Err(self.corrupt(format!(
                "series index maps id {id} to offset {offset}, which holds series {stored_id}"
            )));
        }
        let labels_at = off + SERIES_HEADER_LEN;
        let labels =
            bytes::table(table, labels_at, num_labels as usize, LABEL_REF_LEN).ok_or_else(bad)?;
        let chunks_at = labels_at + labels.len();
        let chunks =
            bytes::table(table, chunks_at, num_chunks as usize, CHUNK_ENTRY_LEN).ok_or_else(bad)?;
        Ok(SeriesEntryRef {
            seg: self,
            id,
            offset,
            labels,
            chunks,
        })
    }

    /// The bytes of a chunk, after checking that they lie inside the chunk data region and
    /// match the entry's crc32c. A mismatch is [`SegmentError::Corrupt`]; wrong bytes are never
    /// returned.
    pub fn chunk_bytes(&self, entry: &ChunkEntry) -> Result<&[u8], SegmentError> {
        let (data_start, data_end) = self.sections[Section::Data as usize];
        let out_of_bounds = || {
            self.corrupt(format!(
                "chunk at offset {} (length {}) lies outside the chunk data region",
                entry.offset, entry.len
            ))
        };
        let start = usize::try_from(entry.offset).map_err(|_| out_of_bounds())?;
        let end = start
            .checked_add(entry.len as usize)
            .ok_or_else(out_of_bounds)?;
        if start < data_start || end > data_end {
            return Err(out_of_bounds());
        }
        let data = self
            .backing
            .bytes()
            .get(start..end)
            .ok_or_else(out_of_bounds)?;
        let actual = crc32c::crc32c(data);
        if actual != entry.crc32c {
            return Err(self.corrupt(format!(
                "chunk at offset {} (length {}) checksum mismatch (stored {:#010x}, computed {actual:#010x})",
                entry.offset, entry.len, entry.crc32c
            )));
        }
        Ok(data)
    }

    /// Sorted ids of the series carrying label `name="value"`; empty if there are none.
    pub fn postings(&self, name: &str, value: &str) -> Result<Postings<'_>, SegmentError> {
        self.postings_index()
            .postings(name, value)
            .map_err(|r| self.corrupt(r))
    }

    /// All label names present in the segment, sorted.
    pub fn label_names(&self) -> Result<Vec<String>, SegmentError> {
        self.postings_index()
            .label_names()
            .map_err(|r| self.corrupt(r))
    }

    /// All values of label `name` present in the segment, sorted; empty if the name is absent.
    pub fn label_values(&self, name: &str) -> Result<Vec<String>, SegmentError> {
        self.postings_index()
            .label_values(name)
            .map_err(|r| self.corrupt(r))
    }

    /// Ids of all series in the segment, ascending.
    pub fn series_ids(&self) -> SeriesIds<'_> {
        SeriesIds {
            seg: self,
            next: 0,
            end: self.num_index_entries(),
        }
    }

    /// Every series entry in id order, e.g. for compaction.
    pub fn entries(&self) -> SeriesEntries<'_> {
        SeriesEntries {
            seg: self,
            next: 0,
            end: self.num_index_entries(),
        }
    }

    /// `(id, labels)` of every series in id order, for loading the catalog at start-up.
    pub fn iter_series(
        &self,
    ) -> impl Iterator<Item = Result<(SeriesId, Labels), SegmentError>> + '_ {
        self.entries().map(|e| {
            let e = e?;
            Ok((e.id(), e.labels()?))
        })
    }

    /// Full consistency check: every chunk's bounds and checksum, ordering and contiguity of
    /// every table, symbol references, agreement of the meta with the series table, and
    /// agreement of the postings with the series labels. Reads the whole file.
    pub fn verify(&self) -> Result<(), SegmentError> {
        let symbol_starts = self.symbols().check_all().map_err(|r| self.corrupt(r))?;
        let is_symbol = |r: u32| symbol_starts.binary_search(&r).is_ok();

        let mut expected_offset = 0u64;
        let mut prev_id = None;
        let mut num_chunks = 0u64;
        let mut num_samples = 0u64;
        let mut num_labels = 0u64;
        let (mut mint, mut maxt) = (i64::MAX, i64::MIN);
        for i in 0..self.num_index_entries() {
            let (id, offset) = self
                .index_entry(i)
                .ok_or_else(|| self.corrupt("series index entry out of bounds"))?;
            if prev_id.is_some_and(|p| p >= id) {
                return Err(
                    self.corrupt(format!("series index is not strictly ascending at id {id}"))
                );
            }
            prev_id = Some(id);
            if offset != expected_offset {
                return Err(self.corrupt(format!(
                    "series {id} starts at offset {offset}, expected {expected_offset} (entries must be contiguous)"
                )));
            }
            let entry = self.entry_at(id, offset)?;
            expected_offset = offset + entry.encoded_len() as u64;

            for (name_ref, value_ref) in entry.label_refs() {
                if !is_symbol(name_ref) || !is_symbol(value_ref) {
                    return Err(
                        self.corrupt(format!("series {id} references a non-existent symbol"))
                    );
                }
            }
            num_labels += entry.labels().map(|l| l.len() as u64)?;

            let mut prev: Option<(u8, i64)> = None;
            let mut run: Option<(u8, i64)> = None;
            for j in 0..entry.num_chunks() {
                let stored = StoredChunkEntry::decode_at(entry.chunks, j).ok_or_else(|| {
                    self.corrupt(format!("series {id}: chunk entry {j} out of bounds"))
                })?;
                let c = stored
                    .validate()
                    .map_err(|r| self.corrupt(format!("series {id}: {r}")))?;
                if prev.is_some_and(|p| p > (c.kind, c.mint)) {
                    return Err(self.corrupt(format!(
                        "series {id}: chunk {j} is not sorted by (kind, mint)"
                    )));
                }
                prev = Some((c.kind, c.mint));
                let expected_run = match run {
                    Some((kind, m)) if kind == c.kind => m.max(c.maxt),
                    _ => c.maxt,
                };
                if stored.run_maxt != expected_run {
                    return Err(
                        self.corrupt(format!("series {id}: chunk {j} has a wrong running maxt"))
                    );
                }
                run = Some((c.kind, expected_run));
                self.chunk_bytes(&c)?;
                num_chunks += 1;
                num_samples = num_samples.saturating_add(u64::from(c.count));
                mint = mint.min(c.mint);
                maxt = maxt.max(c.maxt);
            }
        }
        if expected_offset != self.section(Section::Series).len() as u64 {
            return Err(self.corrupt("series table has bytes not covered by the series index"));
        }
        let m = &self.meta;
        if (m.num_chunks, m.num_samples, m.mint, m.maxt) != (num_chunks, num_samples, mint, maxt) {
            return Err(self.corrupt(format!(
                "meta (chunks {}, samples {}, range [{}, {}]) disagrees with the series table \
                 (chunks {num_chunks}, samples {num_samples}, range [{mint}, {maxt}])",
                m.num_chunks, m.num_samples, m.mint, m.maxt
            )));
        }

        // Postings entries are distinct (name, value, id) triples (strict ordering is checked);
        // if each one matches a label of its series and their number equals the number of
        // labels, postings and labels are in one-to-one correspondence.
        let total = self
            .postings_index()
            .check_all(|name, value, ids| {
                for id in ids {
                    let has = match self.series(id) {
                        Ok(Some(e)) => e.has_label(name, value).map_err(|e| e.to_string())?,
                        Ok(None) => false,
                        Err(e) => return Err(e.to_string()),
                    };
                    if !has {
                        return Err(format!("postings list {name}={value:?} names series {id}, which lacks that label"));
                    }
                }
                Ok(())
            })
            .map_err(|r| self.corrupt(r))?;
        if total != num_labels {
            return Err(self.corrupt(format!(
                "postings hold {total} entries but the series carry {num_labels} labels"
            )));
        }
        Ok(())
    }
}

/// Checks that the sections tile the file between header and footer, in order, without gaps.
fn section_bounds(
    footer: &Footer,
    footer_start: usize,
) -> Result<[(usize, usize); SECTION_COUNT], String> {
    let mut out = [(0usize, 0usize); SECTION_COUNT];
    let mut expected = HEADER_LEN;
    for section in Section::ALL {
        let r = footer.get(section);
        let start = usize::try_from(r.offset)
            .ok()
            .filter(|o| *o == expected)
            .ok_or_else(|| {
                format!(
                    "{} starts at {}, expected {expected}",
                    section.name(),
                    r.offset
                )
            })?;
        let end = usize::try_from(r.len)
            .ok()
            .and_then(|l| start.checked_add(l))
            .filter(|e| *e <= footer_start)
            .ok_or_else(|| format!("{} (length {}) runs past the footer", section.name(), r.len))?;
        out[section as usize] = (start, end);
        expected = end;
    }
    if expected != footer_start {
        return Err(format!(
            "{} bytes between the meta and the footer",
            footer_start - expected
        ));
    }
    Ok(out)
}

/// A series found in a segment: its id, labels and chunk entries, decoded lazily.
#[derive(Clone, Copy)]
pub struct SeriesEntryRef<'a> {
    seg: &'a Segment,
    id: SeriesId,
    offset: u64,
    labels: &'a [u8],
    chunks: &'a [u8],
}

impl fmt::Debug for SeriesEntryRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeriesEntryRef")
            .field("segment", &self.seg.path)
            .field("id", &self.id)
            .field("offset", &self.offset)
            .field("num_chunks", &self.num_chunks())
            .finish()
    }
}

impl<'a> SeriesEntryRef<'a> {
    /// The series id.
    pub fn id(&self) -> SeriesId {
        self.id
    }

    /// Number of chunks of all kinds.
    pub fn num_chunks(&self) -> usize {
        self.chunks.len() / CHUNK_ENTRY_LEN
    }

    fn encoded_len(&self) -> usize {
        SERIES_HEADER_LEN + self.labels.len() + self.chunks.len()
    }

    fn label_refs(&self) -> impl Iterator<Item = (u32, u32)> + 'a {
        let labels = self.labels;
        (0..labels.len() / LABEL_REF_LEN).filter_map(move |i| {
            let base = i * LABEL_REF_LEN;
            Some((
                bytes::u32_at(labels, base)?,
                bytes::u32_at(labels, base + 4)?,
            ))
        })
    }

    /// The series' label set (names strictly ascending, values non-empty, as stored).
    pub fn labels(&self) -> Result<Labels, SegmentError> {
        let symbols = self.seg.symbols();
        let mut out: Vec<Label> = Vec::with_capacity(self.labels.len() / LABEL_REF_LEN);
        for (name_ref, value_ref) in self.label_refs() {
            let corrupt = |r: String| self.seg.corrupt(format!("series {}: {r}", self.id));
            let name = symbols.str(name_ref).map_err(corrupt)?;
            let value = symbols.str(value_ref).map_err(corrupt)?;
            if value.is_empty() {
                return Err(corrupt(format!("label {name:?} has an empty value")));
            }
            if out.last().is_some_and(|prev| prev.name.as_str() >= name) {
                return Err(corrupt(format!(
                    "label {name:?} is out of order or repeated"
                )));
            }
            out.push(Label::new(name, value));
        }
        // Already sorted and deduplicated, so this keeps the set exactly as stored.
        Ok(Labels::new(out))
    }

    /// Whether the series has label `name="value"`, without decoding the whole label set.
    fn has_label(&self, name: &str, value: &str) -> Result<bool, SegmentError> {
        let symbols = self.seg.symbols();
        let labels = self.labels;
        let corrupt = |r: String| self.seg.corrupt(format!("series {}: {r}", self.id));
        let found = bytes::binary_search(labels.len() / LABEL_REF_LEN, |i| {
            let name_ref = bytes::u32_at(labels, i * LABEL_REF_LEN)
                .ok_or_else(|| "label out of bounds".to_string())?;
            Ok(symbols.bytes(name_ref)?.cmp(name.as_bytes()))
        })
        .map_err(corrupt)?;
        let Some(i) = found else {
            return Ok(false);
        };
        let value_ref = bytes::u32_at(labels, i * LABEL_REF_LEN + 4)
            .ok_or_else(|| corrupt("label out of bounds".into()))?;
        Ok(symbols.bytes(value_ref).map_err(corrupt)? == value.as_bytes())
    }

    /// All chunk entries, sorted by `(kind, mint)`.
    pub fn all_chunks(&self) -> ChunkIter<'a> {
        ChunkIter {
            seg: self.seg,
            id: self.id,
            table: self.chunks,
            next: 0,
            end: self.num_chunks(),
            filter: None,
        }
    }

    /// Chunks of `kind` whose time range intersects the inclusive range `[mint, maxt]`, sorted
    /// by `mint`. Starts with a binary search to the first candidate; an inverted range
    /// (`mint > maxt`) yields nothing.
    pub fn chunks(&self, kind: u8, mint: i64, maxt: i64) -> ChunkIter<'a> {
        let n = self.num_chunks();
        // First entry not ordered before (kind, mint) by (kind, run_maxt): every earlier entry
        // of this kind ends before `mint` because run_maxt bounds all their maxt.
        let before = |i: usize| match StoredChunkEntry::decode_at(self.chunks, i) {
            Some(s) => (s.entry.kind, s.run_maxt) < (kind, mint),
            None => false,
        };
        let (mut lo, mut hi) = (0usize, n);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if before(mid) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        ChunkIter {
            seg: self.seg,
            id: self.id,
            table: self.chunks,
            next: lo,
            end: if mint > maxt { lo } else { n },
            filter: Some((kind, mint, maxt)),
        }
    }
}

/// Iterator over chunk entries of one series; see [`SeriesEntryRef::chunks`]. Stops after the
/// first error.
pub struct ChunkIter<'a> {
    seg: &'a Segment,
    id: SeriesId,
    table: &'a [u8],
    next: usize,
    end: usize,
    filter: Option<(u8, i64, i64)>,
}

impl Iterator for ChunkIter<'_> {
    type Item = Result<ChunkEntry, SegmentError>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.next < self.end {
            let i = self.next;
            self.next += 1;
            let Some(stored) = StoredChunkEntry::decode_at(self.table, i) else {
                self.end = 0;
                return Some(Err(self.seg.corrupt(format!(
                    "series {}: chunk entry {i} out of bounds",
                    self.id
                ))));
            };
            if let Some((kind, mint, maxt)) = self.filter {
                if stored.entry.kind != kind || stored.entry.mint > maxt {
                    // Sorted by (kind, mint): nothing further can match.
                    self.end = 0;
                    return None;
                }
                if stored.entry.maxt < mint {
                    continue;
                }
            }
            return Some(stored.validate().map_err(|r| {
                self.end = 0;
                self.seg.corrupt(format!("series {}: {r}", self.id))
            }));
        }
        None
    }
}

impl FusedIterator for ChunkIter<'_> {}

/// Ids of all series of a segment, ascending; see [`Segment::series_ids`].
pub struct SeriesIds<'a> {
    seg: &'a Segment,
    next: usize,
    end: usize,
}

impl Iterator for SeriesIds<'_> {
    type Item = SeriesId;

    fn next(&mut self) -> Option<SeriesId> {
        if self.next >= self.end {
            return None;
        }
        let id = self.seg.index_entry(self.next).map(|(id, _)| id);
        self.next += 1;
        id
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.end.saturating_sub(self.next);
        (n, Some(n))
    }
}

impl ExactSizeIterator for SeriesIds<'_> {}
impl FusedIterator for SeriesIds<'_> {}

/// Every series entry of a segment in id order; see [`Segment::entries`]. Stops after the first
/// error.
pub struct SeriesEntries<'a> {
    seg: &'a Segment,
    next: usize,
    end: usize,
}

impl<'a> Iterator for SeriesEntries<'a> {
    type Item = Result<SeriesEntryRef<'a>, SegmentError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.end {
            return None;
        }
        let i = self.next;
        self.next += 1;
        let result = match self.seg.index_entry(i) {
            Some((id, offset)) => self.seg.entry_at(id, offset),
            None => Err(self.seg.corrupt("series index entry out of bounds")),
        };
        if result.is_err() {
            self.end = 0;
        }
        Some(result)
    }
}

impl FusedIterator for SeriesEntries<'_> {}
