//! Errors of the segment writer and reader. Every variant names the file it concerns so that
//! an operator reading a log line knows which segment to look at (or which one was quarantined).

use std::io;
use std::path::{Path, PathBuf};

use crate::storage::model::SeriesId;

/// Everything that can go wrong while writing or reading a segment file.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// The operating system refused an operation on the file or its directory.
    #[error("segment {}: I/O error: {source}", path.display())]
    Io {
        /// File (or directory, for directory fsyncs) the operation concerned.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: io::Error,
    },

    /// The file's bytes do not form a valid segment: bad magic, checksum mismatch, an offset
    /// pointing outside its section, an inconsistent index. The engine quarantines such files;
    /// the reader never returns data it could not verify.
    #[error("segment {} is corrupt: {reason}", path.display())]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// What check failed, for the operator.
        reason: String,
    },

    /// [`SegmentWriter::add_series`](super::SegmentWriter::add_series) was called with an id
    /// not strictly greater than the previous one; the series index must be sorted.
    #[error("segment {}: series {id} added after series {prev}; ids must be strictly increasing", path.display())]
    OutOfOrder {
        /// Segment being written.
        path: PathBuf,
        /// Id of the previously added series.
        prev: SeriesId,
        /// Offending id.
        id: SeriesId,
    },

    /// A chunk handed to the writer violates the format's invariants (unsorted, `mint > maxt`,
    /// too large). Nothing of the offending series was written.
    #[error("segment {}: invalid chunk for series {id}: {reason}", path.display())]
    InvalidChunk {
        /// Segment being written.
        path: PathBuf,
        /// Series the chunk belongs to.
        id: SeriesId,
        /// Which invariant was violated.
        reason: String,
    },

    /// An argument or accumulated size cannot be represented (bad file name, a table exceeding
    /// its field width).
    #[error("segment {}: {reason}", path.display())]
    InvalidInput {
        /// Segment being written.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },

    /// The target file already exists; segments are immutable and are never overwritten.
    #[error("segment {} already exists; segments are never overwritten", path.display())]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },

    /// [`SegmentWriter::finish`](super::SegmentWriter::finish) was called without any chunk;
    /// a segment without data has no time range and is not written.
    #[error("segment {}: no chunks were added; an empty segment is not written", path.display())]
    Empty {
        /// Segment that was being written (its temporary file has been removed).
        path: PathBuf,
    },

    /// An earlier I/O error left the temporary file in an unknown state; the writer refuses
    /// further work and must be aborted (or dropped).
    #[error("segment {}: writer unusable after an earlier I/O error", path.display())]
    Poisoned {
        /// Segment being written.
        path: PathBuf,
    },
}

impl SegmentError {
    /// The file the error concerns.
    pub fn path(&self) -> &Path {
        match self {
            SegmentError::Io { path, .. }
            | SegmentError::Corrupt { path, .. }
            | SegmentError::OutOfOrder { path, .. }
            | SegmentError::InvalidChunk { path, .. }
            | SegmentError::InvalidInput { path, .. }
            | SegmentError::AlreadyExists { path }
            | SegmentError::Empty { path }
            | SegmentError::Poisoned { path } => path,
        }
    }

    /// Whether the file's content is damaged, i.e. whether the engine should quarantine it.
    pub fn is_corrupt(&self) -> bool {
        matches!(self, SegmentError::Corrupt { .. })
    }

    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        SegmentError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn corrupt(path: &Path, reason: impl Into<String>) -> Self {
        SegmentError::Corrupt {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}
