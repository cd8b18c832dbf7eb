//! Byte layout of a segment file: header and record frames.
//!
//! ```text
//! segment = "STRWAL01" | version: u32 LE | frame*
//! frame   = len: u32 LE | crc32c(payload): u32 LE | payload (len bytes, 1 ..= MAX_RECORD_SIZE)
//! ```

use super::error::{DecodeError, WalError};
use super::record::{encode_samples, WalRecord, MAX_SAMPLE_LEN};
use crate::storage::model::{Sample, SeriesId};

/// Magic bytes every segment file starts with.
pub const SEGMENT_MAGIC: &[u8; 8] = b"STRWAL01";
/// Format version written after the magic.
pub const SEGMENT_VERSION: u32 = 1;
/// Length of the segment header.
pub const HEADER_LEN: usize = SEGMENT_MAGIC.len() + 4;
/// Length of a frame header (`len` + `crc`).
pub const FRAME_HEADER_LEN: usize = 8;
/// Largest payload a frame may carry; a larger `len` is treated as corruption.
pub const MAX_RECORD_SIZE: usize = 16 << 20;

/// Samples per record such that a `Samples` payload can never exceed [`MAX_RECORD_SIZE`].
const MAX_SAMPLES_PER_RECORD: usize = (MAX_RECORD_SIZE - 32) / MAX_SAMPLE_LEN;

/// The segment header bytes.
pub fn segment_header() -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..SEGMENT_MAGIC.len()].copy_from_slice(SEGMENT_MAGIC);
    h[SEGMENT_MAGIC.len()..].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    h
}

/// Why a segment header is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The file holds only a prefix of a valid header (possibly nothing): a crash hit while the
    /// segment was being created, before anything was logged in it.
    #[error("segment header is incomplete ({0} of {HEADER_LEN} bytes)")]
    Torn(usize),
    /// The file does not start with the WAL magic.
    #[error("segment does not start with the WAL magic")]
    BadMagic,
    /// The header names a format version this build does not know.
    #[error("unsupported segment version {0}")]
    UnsupportedVersion(u32),
}

/// Why decoding stopped before the end of a segment. Everything from the reported offset on is
/// unusable, typically the torn tail of a write interrupted by a crash.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Fewer than [`FRAME_HEADER_LEN`] bytes are left.
    #[error("incomplete frame header ({0} bytes)")]
    ShortHeader(usize),
    /// `len` is zero or above [`MAX_RECORD_SIZE`].
    #[error("invalid record length {0}")]
    BadLength(u32),
    /// The payload extends beyond the end of the file.
    #[error("record of {len} bytes is cut off after {available} bytes")]
    ShortPayload { len: usize, available: usize },
    /// The payload's checksum does not match.
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum { stored: u32, computed: u32 },
    /// The checksum matches but the payload is not a valid record.
    #[error("undecodable record: {0}")]
    Payload(#[from] DecodeError),
}

/// Appends the frames of `records` to `buf`. A `Samples` record too large for one frame is
/// split into several consecutive `Samples` records, which replay to the same samples in the
/// same order; any other oversized record is rejected.
///
/// On error `buf` is restored to its original length.
pub fn encode_frames(records: &[WalRecord], buf: &mut Vec<u8>) -> Result<(), WalError> {
    let start = buf.len();
    let res = records.iter().try_for_each(|rec| match rec {
        WalRecord::Samples(samples) if samples.len() > MAX_SAMPLES_PER_RECORD => samples
            .chunks(MAX_SAMPLES_PER_RECORD)
            .try_for_each(|chunk| encode_frame(buf, |b| encode_samples(chunk, b))),
        _ => encode_frame(buf, |b| rec.encode_into(b)),
    });
    if res.is_err() {
        buf.truncate(start);
    }
    res
}

/// Appends the frames of one `Samples` record (several when it is too large for one frame)
/// encoded straight from a slice, without building a [`WalRecord`].
pub fn encode_samples_frames(
    samples: &[(SeriesId, Sample)],
    buf: &mut Vec<u8>,
) -> Result<(), WalError> {
    let start = buf.len();
    let res = samples
        .chunks(MAX_SAMPLES_PER_RECORD)
        .try_for_each(|chunk| encode_frame(buf, |b| encode_samples(chunk, b)));
    if res.is_err() {
        buf.truncate(start);
    }
    res
}

fn encode_frame(buf: &mut Vec<u8>, encode: impl FnOnce(&mut Vec<u8>)) -> Result<(), WalError> {
    let frame_start = buf.len();
    buf.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
    encode(buf);
    let payload = &buf[frame_start + FRAME_HEADER_LEN..];
    let len = payload.len();
    if len > MAX_RECORD_SIZE {
        buf.truncate(frame_start);
        return Err(WalError::RecordTooLarge {
            size: len,
            max: MAX_RECORD_SIZE,
        });
    }
    let crc = crc32c::crc32c(payload);
    // len <= MAX_RECORD_SIZE < u32::MAX.
    buf[frame_start..frame_start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    buf[frame_start + 4..frame_start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Total length (header included) of the frame starting at `buf[0]`, for frames this process
/// encoded itself.
pub(crate) fn own_frame_len(buf: &[u8]) -> Option<usize> {
    let len = buf.get(..4)?;
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    Some(FRAME_HEADER_LEN + len)
}

/// Validates the header of a segment file's content.
pub fn check_header(bytes: &[u8]) -> Result<(), HeaderError> {
    let expected = segment_header();
    if bytes.len() < HEADER_LEN {
        return if expected.starts_with(bytes) {
            Err(HeaderError::Torn(bytes.len()))
        } else {
            Err(HeaderError::BadMagic)
        };
    }
    if &bytes[..SEGMENT_MAGIC.len()] != SEGMENT_MAGIC {
        return Err(HeaderError::BadMagic);
    }
    let mut v = [0u8; 4];
    v.copy_from_slice(&bytes[SEGMENT_MAGIC.len()..HEADER_LEN]);
    match u32::from_le_bytes(v) {
        SEGMENT_VERSION => Ok(()),
        other => Err(HeaderError::UnsupportedVersion(other)),
    }
}

/// Iterates over the records of one segment's bytes, stopping at the first damaged frame.
pub struct SegmentReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> SegmentReader<'a> {
    /// Checks the header of `buf` (a whole segment file) and positions after it.
    pub fn new(buf: &'a [u8]) -> Result<Self, HeaderError> {
        check_header(buf)?;
        Ok(SegmentReader {
            buf,
            pos: HEADER_LEN,
        })
    }

    /// Offset just past the last record returned: the length to truncate the file to if the
    /// next frame is damaged.
    pub fn offset(&self) -> u64 {
        self.pos as u64
    }

    /// The next record; `Ok(None)` at a clean end of the segment. After an error the reader does
    /// not advance, so [`offset`](Self::offset) stays at the last good record boundary.
    pub fn next_record(&mut self) -> Result<Option<WalRecord>, FrameError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        match parse_frame(rest)? {
            Some((rec, used)) => {
                self.pos += used;
                Ok(Some(rec))
            }
            None => Ok(None),
        }
    }
}

/// Parses the frame at the start of `buf`: the record and the frame's total length, or
/// `Ok(None)` if `buf` is empty. [`FrameError::ShortHeader`] and [`FrameError::ShortPayload`]
/// mean `buf` ends inside the frame, which a streaming reader that is not at the end of the
/// file resolves by reading more.
pub(crate) fn parse_frame(buf: &[u8]) -> Result<Option<(WalRecord, usize)>, FrameError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let Some((head, body)) = buf.split_first_chunk::<FRAME_HEADER_LEN>() else {
        return Err(FrameError::ShortHeader(buf.len()));
    };
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let stored = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if len == 0 || len as usize > MAX_RECORD_SIZE {
        return Err(FrameError::BadLength(len));
    }
    let len = len as usize;
    let Some(payload) = body.get(..len) else {
        return Err(FrameError::ShortPayload {
            len,
            available: body.len(),
        });
    };
    let computed = crc32c::crc32c(payload);
    if computed != stored {
        return Err(FrameError::Checksum { stored, computed });
    }
    let rec = WalRecord::decode(payload)?;
    Ok(Some((rec, FRAME_HEADER_LEN + len)))
}

/// Where and why a segment stops being readable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Byte offset in the segment of the first unusable byte (0 for a bad header).
    pub offset: u64,
    /// Human-readable cause.
    pub reason: String,
}

/// Decodes a whole segment's bytes without touching any file: all records up to the first
/// damage, and the damage if any. Never panics.
pub fn decode_segment(bytes: &[u8]) -> (Vec<WalRecord>, Option<Damage>) {
    let mut reader = match SegmentReader::new(bytes) {
        Ok(r) => r,
        Err(e) => {
            return (
                Vec::new(),
                Some(Damage {
                    offset: 0,
                    reason: e.to_string(),
                }),
            )
        }
    };
    let mut records = Vec::new();
    loop {
        match reader.next_record() {
            Ok(Some(rec)) => records.push(rec),
            Ok(None) => return (records, None),
            Err(e) => {
                return (
                    records,
                    Some(Damage {
                        offset: reader.offset(),
                        reason: e.to_string(),
                    }),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::model::Sample;
    use proptest::prelude::*;

    fn segment(records: &[WalRecord]) -> Vec<u8> {
        let mut buf = segment_header().to_vec();
        encode_frames(records, &mut buf).unwrap();
        buf
    }

    #[test]
    fn frames_round_trip() {
        let recs: Vec<_> = (0..10)
            .map(|i| WalRecord::Samples(vec![(i, Sample::new(i as i64, 0.5))]))
            .collect();
        let (out, damage) = decode_segment(&segment(&recs));
        assert_eq!(out, recs);
        assert_eq!(damage, None);
    }

    #[test]
    fn header_variants() {
        assert_eq!(check_header(b""), Err(HeaderError::Torn(0)));
        assert_eq!(check_header(b"STRW"), Err(HeaderError::Torn(4)));
        assert_eq!(check_header(b"STRWAL01\x01"), Err(HeaderError::Torn(9)));
        assert_eq!(check_header(b"XXXX"), Err(HeaderError::BadMagic));
        assert_eq!(
            check_header(b"NOTAWAL!\x01\0\0\0"),
            Err(HeaderError::BadMagic)
        );
        assert_eq!(
            check_header(b"STRWAL01\x02\0\0\0"),
            Err(HeaderError::UnsupportedVersion(2))
        );
        assert_eq!(check_header(&segment_header()), Ok(()));
    }

    #[test]
    fn damage_is_reported_at_the_frame_boundary() {
        let recs = vec![
            WalRecord::Samples(vec![(1, Sample::new(1, 1.0))]),
            WalRecord::Samples(vec![(2, Sample::new(2, 2.0))]),
        ];
        let mut bytes = segment(&recs);
        let boundary = bytes.len() - own_frame_len(&bytes[HEADER_LEN..]).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        let (out, damage) = decode_segment(&bytes);
        assert_eq!(out, recs[..1]);
        let damage = damage.unwrap();
        assert_eq!(damage.offset, boundary as u64);
        assert!(damage.reason.contains("checksum"), "{}", damage.reason);
    }

    #[test]
    fn zero_length_frames_are_damage() {
        let mut bytes = segment(&[]);
        bytes.extend_from_slice(&[0u8; 64]);
        let (out, damage) = decode_segment(&bytes);
        assert!(out.is_empty());
        assert_eq!(damage.unwrap().offset, HEADER_LEN as u64);
    }

    #[test]
    fn huge_sample_batches_are_split() {
        let n = MAX_SAMPLES_PER_RECORD + 10;
        let samples: Vec<_> = (0..n as u64)
            .map(|i| {
                (
                    i * 1_000_003,
                    Sample::new(-(i as i64) * 999_999_999, f64::NAN),
                )
            })
            .collect();
        let bytes = segment(&[WalRecord::Samples(samples.clone())]);
        let (out, damage) = decode_segment(&bytes);
        assert_eq!(damage, None);
        assert_eq!(out.len(), 2);
        let flat: Vec<_> = out
            .into_iter()
            .flat_map(|r| match r {
                WalRecord::Samples(s) => s,
                _ => Vec::new(),
            })
            .collect();
        assert_eq!(flat, samples);
    }

    proptest! {
        #[test]
        fn arbitrary_segment_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_segment(&bytes);
            let mut with_header = segment_header().to_vec();
            with_header.extend_from_slice(&bytes);
            let (_, damage) = decode_segment(&with_header);
            if let Some(d) = damage {
                prop_assert!(d.offset as usize >= HEADER_LEN && d.offset as usize <= with_header.len());
            }
        }

        #[test]
        fn record_sequences_round_trip(recs in proptest::collection::vec(super::super::record::tests::arb_record(), 0..10)) {
            let (out, damage) = decode_segment(&segment(&recs));
            prop_assert!(damage.is_none());
            prop_assert_eq!(out, recs);
        }
    }
}
