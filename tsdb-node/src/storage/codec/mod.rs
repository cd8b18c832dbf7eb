//! Compression codec of a time-series chunk: the samples of one series, at most
//! [`MAX_CHUNK_SAMPLES`], with strictly increasing timestamps.
//!
//! Two encodings share one header (see [`chunk`] for the byte format):
//!
//! - **Gorilla** ([`gorilla`]): delta-of-delta timestamps and XOR-ed floats, exact for every
//!   f64. Also available as the streaming [`GorillaAppender`] that the in-memory head uses.
//! - **Decimal** ([`decimal`]): values that are exact short decimals become integer mantissas
//!   with a common exponent, coded as deltas or deltas-of-deltas with Golomb-Rice or
//!   run-length codes; regular timestamps cost nothing. Typical sensor data takes 0.01-0.3
//!   bytes per sample.
//!
//! [`encode_chunk`] tries both and keeps the smaller; [`decode_chunk`], [`ChunkIter`] and
//! [`aggregate_chunk`] read either. Decoders never panic on any input.

pub mod aggregate;
pub mod bitstream;
pub mod chunk;
mod column;
pub mod decimal;
pub mod error;
pub mod gorilla;
mod rice;
mod seq;
mod varint;

#[cfg(test)]
mod dataset_tests;
#[cfg(test)]
mod tests;

pub use aggregate::Aggregate;
pub use chunk::{
    aggregate_chunk, chunk_meta, decode_chunk, encode_chunk, settle_gorilla_chunk, ChunkIter,
    ChunkMeta, Encoding, MAX_CHUNK_SAMPLES,
};
pub use error::CodecError;
pub use gorilla::{GorillaAppender, GorillaIter};
