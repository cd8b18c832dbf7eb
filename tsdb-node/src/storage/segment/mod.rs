//! Immutable on-disk segment files.
//!
//! A segment (`data/<name>.seg`) holds, for many series, opaque compressed chunks plus an
//! index that finds a series by id and its chunks by time in O(log n) without reading the
//! whole file, postings for label matchers, and metadata — all checksummed with crc32c. The
//! byte layout is documented in [`mod@format`].
//!
//! Write with [`SegmentWriter`] (streaming, crash-safe publish by rename); read with
//! [`Segment`] (memory-mapped, O(1) resident state per open segment, never panics on damaged
//! input: damage is reported as [`SegmentError::Corrupt`] so the engine can quarantine the file).

mod bytes;
mod chunk_entry;
mod error;
pub mod format;
mod meta;
mod postings;
mod reader;
mod symbols;
mod writer;

#[cfg(test)]
mod tests;

pub use chunk_entry::ChunkEntry;
pub use error::SegmentError;
pub use meta::{SegmentMeta, SegmentMetaSeed};
pub use postings::Postings;
pub use reader::{ChunkIter, Segment, SeriesEntries, SeriesEntryRef, SeriesIds};
pub use writer::{ChunkInput, SegmentWriter};
