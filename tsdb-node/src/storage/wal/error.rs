//! Error types of the write-ahead log.

use std::io;
use std::path::PathBuf;

use crate::storage::model::InvalidMatcher;

/// Why a record payload could not be decoded. Every variant means the bytes are not a record
/// this version wrote: decoding never trusts the input.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The payload ended in the middle of a field.
    #[error("record payload ends unexpectedly (needed {needed} more bytes at offset {offset})")]
    UnexpectedEnd { offset: usize, needed: usize },
    /// A varint ran longer than 10 bytes or overflowed 64 bits.
    #[error("malformed varint at offset {offset}")]
    BadVarint { offset: usize },
    /// The payload was empty, so it has no type byte.
    #[error("empty record payload")]
    Empty,
    /// The first byte names no known record type.
    #[error("unknown record type {0:#04x}")]
    UnknownType(u8),
    /// A string field was not valid UTF-8.
    #[error("string at offset {offset} is not valid UTF-8")]
    InvalidUtf8 { offset: usize },
    /// A matcher operator byte is out of range.
    #[error("unknown matcher operator {0}")]
    UnknownMatchOp(u8),
    /// A regex matcher stored in a tombstone does not compile.
    #[error("tombstone matcher is invalid: {0}")]
    InvalidMatcher(#[from] InvalidMatcher),
    /// An element count claims more elements than the remaining bytes could hold.
    #[error(
        "count {count} at offset {offset} exceeds what the remaining {remaining} bytes can hold"
    )]
    CountTooLarge {
        offset: usize,
        count: u64,
        remaining: usize,
    },
    /// Bytes were left over after a complete record.
    #[error("{0} trailing bytes after the record")]
    TrailingBytes(usize),
}

/// Errors of the write-ahead log.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// A file-system operation failed.
    #[error("WAL I/O error: {op} {path:?}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// An earlier write or fsync failed. The WAL refuses all further work because the kernel may
    /// have dropped the dirty pages ("fsyncgate"): a retried fsync could succeed without the data
    /// being on disk. The process must restart and recover from what is really on disk.
    #[error("WAL is unusable after an earlier write/fsync failure: {cause}")]
    Failed { cause: String },
    /// The WAL was closed with [`Wal::close`](super::Wal::close).
    #[error("WAL is closed")]
    Closed,
    /// A record is larger than a frame may be.
    #[error("WAL record of {size} bytes exceeds the maximum of {max} bytes")]
    RecordTooLarge { size: usize, max: usize },
    /// A record payload could not be decoded.
    #[error("corrupt WAL record: {0}")]
    Decode(#[from] DecodeError),
    /// The options passed to [`Wal::open`](super::Wal::open) are unusable.
    #[error("invalid WAL options: {0}")]
    InvalidOptions(String),
}

impl WalError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        WalError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Error of [`replay`](super::replay): either the WAL itself failed, or the caller's callback
/// rejected a record. Keeping the callback's own error type lets the engine tell "the log is
/// unreadable" apart from "applying the log failed" without downcasting.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError<E> {
    /// Reading, truncating or renaming WAL files failed.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// The callback returned an error; replay stopped at that record.
    #[error("applying WAL record at segment {segment} offset {offset} failed: {source}")]
    Apply {
        /// Segment number holding the record.
        segment: u64,
        /// Byte offset of the record's frame within the segment file.
        offset: u64,
        #[source]
        source: E,
    },
}
