//! Errors of the chunk codec.

use super::chunk::Encoding;

/// Everything that can go wrong while encoding or decoding a chunk.
///
/// The type is `Copy` and small on purpose: decoders return it from their inner loops, so it
/// must not allocate or make `Result<Sample, CodecError>` large.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// `encode_chunk` was given no samples; an empty chunk has no `mint`/`maxt`.
    #[error("cannot encode an empty chunk")]
    Empty,
    /// More samples than one chunk may hold were given to an encoder.
    #[error("too many samples for one chunk: {count} (maximum {max})")]
    TooManySamples {
        /// Number of samples offered.
        count: usize,
        /// `MAX_CHUNK_SAMPLES`.
        max: usize,
    },
    /// Timestamps are not strictly increasing (input to an encoder, or decoded from corrupt data).
    #[error("timestamps not strictly increasing at sample {index}: {prev} then {t}")]
    NonIncreasingTimestamps {
        /// Index of the offending sample inside the chunk.
        index: usize,
        /// Timestamp of the previous sample.
        prev: i64,
        /// Offending timestamp.
        t: i64,
    },
    /// The data ended before the decoder had read everything the header promised.
    #[error("chunk data truncated")]
    Truncated,
    /// The first byte of a chunk names no known encoding.
    #[error("unknown chunk encoding byte {0}")]
    BadEncoding(u8),
    /// The sample count in the header is zero or above `MAX_CHUNK_SAMPLES`.
    #[error("sample count {count} out of range 1..={max}")]
    CountOutOfRange {
        /// Count read from the header.
        count: u64,
        /// `MAX_CHUNK_SAMPLES`.
        max: usize,
    },
    /// The header's count needs more bits than the body has.
    #[error("sample count {count} needs more data than the {body_bytes}-byte body holds")]
    CountExceedsBody {
        /// Count read from the header.
        count: u32,
        /// Length of the body.
        body_bytes: usize,
    },
    /// A varint is longer than 10 bytes or overflows 64 bits.
    #[error("malformed varint")]
    BadVarint,
    /// The header's time range cannot hold `count` strictly increasing timestamps.
    #[error("invalid time range in chunk header: mint {mint}, maxt - mint {span}, count {count}")]
    BadTimeRange {
        /// `mint` from the header.
        mint: i64,
        /// `maxt - mint` from the header.
        span: u64,
        /// Sample count from the header.
        count: u32,
    },
    /// Structurally invalid data; the message says which field.
    #[error("corrupt chunk: {0}")]
    Corrupt(&'static str),
    /// An encoder produced bytes that do not decode to its input. This is a bug in the codec,
    /// never caused by input data; `encode_chunk` only reports it if no encoding verified.
    #[error("{0:?} encoding failed its round-trip verification")]
    VerificationFailed(Encoding),
}
