//! The write-ahead log: every accepted write is logged here, and fsynced, before it is
//! acknowledged, so that it survives `kill -9` and power loss.
//!
//! Layout: `dir/00000001.wal`, `dir/00000002.wal`, … Each segment starts with the header
//! `"STRWAL01" | version u32 LE` followed by frames `len u32 LE | crc32c(payload) u32 LE |
//! payload` (see [`format`](mod@format) and [`record`] for the exact bytes). A record never spans segments.
//!
//! Lifecycle in the engine:
//! 1. [`replay`] the directory into memory (repairing torn tails);
//! 2. [`Wal::open`] it, which starts a fresh segment;
//! 3. [`Wal::append`] (or [`Wal::enqueue`] + [`Wal::wait_durable`]) before acknowledging;
//! 4. to checkpoint: `let n = wal.cut()?`, persist state covering all segments below `n`,
//!    then `wal.remove_before(n)`.

mod error;
mod files;
pub mod format;
mod reader;
pub mod record;
mod varint;
mod writer;

#[cfg(test)]
mod tests;

pub use error::{DecodeError, ReplayError, WalError};
pub use files::{segment_file_name, segment_path, segments};
pub use format::{
    decode_segment, Damage, FrameError, HeaderError, SegmentReader, HEADER_LEN, MAX_RECORD_SIZE,
};
pub use reader::{replay, CorruptSegment, ReplayStats};
pub use record::WalRecord;
pub use writer::{Encoded, Ticket, Wal, WalOptions};
