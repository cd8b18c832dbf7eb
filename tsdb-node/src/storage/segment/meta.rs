//! Segment metadata: what the engine needs to plan queries and compactions without opening
//! the index (time range, level, resolution, sizes), and its fixed 64-byte encoding.

use super::bytes;
use super::format::META_LEN;

/// Description of a whole segment, stored in its meta section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentMeta {
    /// Ordering of data versions: on duplicate timestamps, the segment with the higher `seq` wins.
    pub seq: u64,
    /// 0 = cut from the head, 1.. = compaction levels.
    pub level: u32,
    /// 0 = raw samples, else the rollup bucket width in milliseconds.
    pub resolution_ms: i64,
    /// Smallest chunk `mint` (inclusive).
    pub mint: i64,
    /// Largest chunk `maxt` (inclusive).
    pub maxt: i64,
    /// Number of series in the segment.
    pub num_series: u64,
    /// Number of chunks over all series.
    pub num_chunks: u64,
    /// Sum of the chunks' sample counts.
    pub num_samples: u64,
}

/// The part of [`SegmentMeta`] chosen by the caller; the writer computes the rest from the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentMetaSeed {
    /// See [`SegmentMeta::seq`].
    pub seq: u64,
    /// See [`SegmentMeta::level`].
    pub level: u32,
    /// See [`SegmentMeta::resolution_ms`].
    pub resolution_ms: i64,
}

impl SegmentMeta {
    pub(crate) fn encode(&self) -> [u8; META_LEN] {
        let mut out = [0u8; META_LEN];
        out[0..8].copy_from_slice(&self.seq.to_le_bytes());
        out[8..12].copy_from_slice(&self.level.to_le_bytes());
        // 12..16 reserved, zero.
        out[16..24].copy_from_slice(&self.resolution_ms.to_le_bytes());
        out[24..32].copy_from_slice(&self.mint.to_le_bytes());
        out[32..40].copy_from_slice(&self.maxt.to_le_bytes());
        out[40..48].copy_from_slice(&self.num_series.to_le_bytes());
        out[48..56].copy_from_slice(&self.num_chunks.to_le_bytes());
        out[56..64].copy_from_slice(&self.num_samples.to_le_bytes());
        out
    }

    /// Decodes and sanity-checks the meta section; the error is a reason for a `Corrupt` error.
    pub(crate) fn decode(buf: &[u8]) -> Result<SegmentMeta, String> {
        if buf.len() != META_LEN {
            return Err(format!(
                "meta section is {} bytes, expected {META_LEN}",
                buf.len()
            ));
        }
        let short = || "meta section truncated".to_string();
        if bytes::u32_at(buf, 12).ok_or_else(short)? != 0 {
            return Err("meta reserved field is not zero".into());
        }
        let meta = SegmentMeta {
            seq: bytes::u64_at(buf, 0).ok_or_else(short)?,
            level: bytes::u32_at(buf, 8).ok_or_else(short)?,
            resolution_ms: bytes::i64_at(buf, 16).ok_or_else(short)?,
            mint: bytes::i64_at(buf, 24).ok_or_else(short)?,
            maxt: bytes::i64_at(buf, 32).ok_or_else(short)?,
            num_series: bytes::u64_at(buf, 40).ok_or_else(short)?,
            num_chunks: bytes::u64_at(buf, 48).ok_or_else(short)?,
            num_samples: bytes::u64_at(buf, 56).ok_or_else(short)?,
        };
        if meta.resolution_ms < 0 {
            return Err(format!(
                "meta resolution {} ms is negative",
                meta.resolution_ms
            ));
        }
        if meta.num_chunks == 0 {
            return Err("meta declares no chunks; empty segments are never written".into());
        }
        if meta.mint > meta.maxt {
            return Err(format!(
                "meta time range is inverted (mint {} > maxt {})",
                meta.mint, meta.maxt
            ));
        }
        Ok(meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trips() {
        let m = SegmentMeta {
            seq: 9,
            level: 2,
            resolution_ms: 300_000,
            mint: -5,
            maxt: 77,
            num_series: 3,
            num_chunks: 4,
            num_samples: 1000,
        };
        assert_eq!(SegmentMeta::decode(&m.encode()), Ok(m));
        let mut bad = m.encode();
        bad[13] = 1;
        assert!(SegmentMeta::decode(&bad).is_err());
        assert!(SegmentMeta::decode(&m.encode()[..63]).is_err());
        let inverted = SegmentMeta { mint: 100, ..m };
        assert!(SegmentMeta::decode(&inverted.encode()).is_err());
    }
}
