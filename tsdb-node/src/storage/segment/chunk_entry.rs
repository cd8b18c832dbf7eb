//! Index entry of one chunk and its fixed 48-byte encoding inside a series-table entry.

use super::bytes;
use super::format::CHUNK_ENTRY_LEN;

/// Where one chunk lives in a segment and what it covers. The chunk bytes themselves are opaque
/// to the segment; fetch them with [`Segment::chunk_bytes`](super::Segment::chunk_bytes), which
/// checks `crc32c`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChunkEntry {
    /// Opaque chunk kind chosen by the codec (0 = raw samples, 1..=6 rollups).
    pub kind: u8,
    /// First timestamp in the chunk (inclusive).
    pub mint: i64,
    /// Last timestamp in the chunk (inclusive).
    pub maxt: i64,
    /// Number of samples in the chunk.
    pub count: u32,
    /// Absolute file offset of the chunk bytes.
    pub offset: u64,
    /// Length of the chunk bytes.
    pub len: u32,
    /// crc32c of the chunk bytes.
    pub crc32c: u32,
}

impl ChunkEntry {
    /// Whether the chunk's time range intersects the inclusive range `[mint, maxt]` (an
    /// inverted range, `mint > maxt`, is empty and intersects nothing).
    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        mint <= maxt && self.mint <= maxt && self.maxt >= mint
    }
}

/// A chunk entry as stored, before validation: the reader's binary search works on these so
/// that a damaged entry cannot stop it, and only entries actually returned are validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StoredChunkEntry {
    pub(crate) entry: ChunkEntry,
    /// Running maximum of `maxt` over this and earlier entries of the same kind (see format.rs).
    pub(crate) run_maxt: i64,
    pub(crate) reserved: [u8; 3],
}

impl StoredChunkEntry {
    pub(crate) fn encode(&self) -> [u8; CHUNK_ENTRY_LEN] {
        let e = &self.entry;
        let mut out = [0u8; CHUNK_ENTRY_LEN];
        out[0] = e.kind;
        out[1..4].copy_from_slice(&self.reserved);
        out[4..8].copy_from_slice(&e.count.to_le_bytes());
        out[8..16].copy_from_slice(&e.mint.to_le_bytes());
        out[16..24].copy_from_slice(&e.maxt.to_le_bytes());
        out[24..32].copy_from_slice(&self.run_maxt.to_le_bytes());
        out[32..40].copy_from_slice(&e.offset.to_le_bytes());
        out[40..44].copy_from_slice(&e.len.to_le_bytes());
        out[44..48].copy_from_slice(&e.crc32c.to_le_bytes());
        out
    }

    /// Decodes entry number `index` of a chunk-entry table; `None` if it is out of bounds.
    pub(crate) fn decode_at(table: &[u8], index: usize) -> Option<StoredChunkEntry> {
        let b = bytes::slice(table, index.checked_mul(CHUNK_ENTRY_LEN)?, CHUNK_ENTRY_LEN)?;
        Some(StoredChunkEntry {
            entry: ChunkEntry {
                kind: *b.first()?,
                count: bytes::u32_at(b, 4)?,
                mint: bytes::i64_at(b, 8)?,
                maxt: bytes::i64_at(b, 16)?,
                offset: bytes::u64_at(b, 32)?,
                len: bytes::u32_at(b, 40)?,
                crc32c: bytes::u32_at(b, 44)?,
            },
            run_maxt: bytes::i64_at(b, 24)?,
            reserved: bytes::array(b, 1)?,
        })
    }

    /// Checks the invariants that need no context; the error is a reason for `Corrupt`.
    pub(crate) fn validate(&self) -> Result<ChunkEntry, String> {
        let e = self.entry;
        if self.reserved != [0; 3] {
            return Err(format!(
                "chunk entry at offset {} has non-zero reserved bytes",
                e.offset
            ));
        }
        if e.mint > e.maxt {
            return Err(format!(
                "chunk entry at offset {} has mint {} > maxt {}",
                e.offset, e.mint, e.maxt
            ));
        }
        if self.run_maxt < e.maxt {
            return Err(format!(
                "chunk entry at offset {} has running maxt {} below its maxt {}",
                e.offset, self.run_maxt, e.maxt
            ));
        }
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_round_trips() {
        let s = StoredChunkEntry {
            entry: ChunkEntry {
                kind: 3,
                mint: -10,
                maxt: 20,
                count: 7,
                offset: 1 << 40,
                len: 99,
                crc32c: 0xdead_beef,
            },
            run_maxt: 25,
            reserved: [0; 3],
        };
        let enc = s.encode();
        assert_eq!(StoredChunkEntry::decode_at(&enc, 0), Some(s));
        assert_eq!(StoredChunkEntry::decode_at(&enc, 1), None);
        assert_eq!(StoredChunkEntry::decode_at(&enc, usize::MAX), None);
        assert_eq!(s.validate(), Ok(s.entry));
        assert!(StoredChunkEntry { run_maxt: 19, ..s }.validate().is_err());
        assert!(StoredChunkEntry {
            reserved: [0, 1, 0],
            ..s
        }
        .validate()
        .is_err());
    }
}
