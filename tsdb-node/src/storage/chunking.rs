//! Turning sorted samples into encoded chunks for a segment writer.

use crate::storage::codec::{self, CodecError, MAX_CHUNK_SAMPLES};
use crate::storage::model::Sample;

/// One encoded chunk ready for `SegmentWriter::add_series`.
pub struct EncodedChunk {
    pub kind: u8,
    pub mint: i64,
    pub maxt: i64,
    pub count: u32,
    pub bytes: Vec<u8>,
}

/// Chunk kind of raw samples; rollups use `downsample::RollupField` kinds 1..=6.
pub const RAW_KIND: u8 = 0;

/// Splits sorted, deduplicated samples into chunks of at most `per_chunk` samples.
pub fn encode_chunks(
    kind: u8,
    samples: &[Sample],
    per_chunk: usize,
    out: &mut Vec<EncodedChunk>,
) -> Result<(), CodecError> {
    let per_chunk = per_chunk.clamp(1, MAX_CHUNK_SAMPLES);
    for part in samples.chunks(per_chunk) {
        out.push(EncodedChunk {
            kind,
            mint: part[0].t,
            maxt: part[part.len() - 1].t,
            count: part.len() as u32,
            bytes: codec::encode_chunk(part)?,
        });
    }
    Ok(())
}
