//! Facebook Gorilla encoding, as in Prometheus' XOR chunks, adapted to our chunk header.
//!
//! Body layout (a bit stream, MSB-first, zero-padded to a byte):
//!
//! - value of sample 0: 64 raw bits of `f64::to_bits`;
//! - for sample 1: the time delta `t1 - t0` (as `u64`, >= 1) as 6 bits of `bit_length - 1`
//!   followed by `bit_length` bits, then the value as below;
//! - for samples `i >= 2`: the delta-of-delta `dod = (t_i - t_{i-1}) - (t_{i-1} - t_{i-2})`
//!   (wrapping 64-bit arithmetic, so any i64 timestamps work) with Prometheus' buckets:
//!   `0` for 0; `10` + 14 bits, `110` + 17 bits, `1110` + 20 bits for a dod within
//!   `-(2^(n-1) - 1) ..= 2^(n-1)` of that size n, else `1111` + 64 bits; then the value.
//! - a value is XOR-ed with the previous value's bits: `0` if equal; `10` + the meaningful
//!   bits if they fit the previous leading/trailing-zero window; else `11` + 5 bits of leading
//!   zeros (capped at 31) + 6 bits of significant-bit count (64 stored as 0) + those bits.
//!
//! `t0` is the header's `mint`; the header's `count` says how many samples follow.

use super::bitstream::{BitReader, BitWriter};
use super::chunk::{write_header, Encoding, MAX_CHUNK_SAMPLES};
use super::error::CodecError;
use crate::storage::model::Sample;

/// Sentinel for "no leading/trailing window yet".
const NO_WINDOW: u32 = u32::MAX;

/// Bits of the smallest sample after the first one (a `0` for the time and one for the value),
/// used to check a header's count against the body size.
pub(crate) const MIN_BITS_PER_SAMPLE: u64 = 2;

/// Bits of the first sample's value.
pub(crate) const FIRST_SAMPLE_BITS: u64 = 64;

#[inline(always)]
fn fits_bucket(dod: i64, bits: u32) -> bool {
    let half = 1i64 << (bits - 1);
    -(half - 1) <= dod && dod <= half
}

/// Compresses the samples of one series as they arrive, Gorilla style. Used by the in-memory
/// head; [`GorillaAppender::to_chunk`] turns it into a complete Gorilla chunk at any time.
#[derive(Debug, Clone)]
pub struct GorillaAppender {
    w: BitWriter,
    count: u32,
    mint: i64,
    maxt: i64,
    delta: u64,
    prev_bits: u64,
    leading: u32,
    trailing: u32,
}

impl Default for GorillaAppender {
    fn default() -> Self {
        Self::new()
    }
}

impl GorillaAppender {
    /// An empty appender.
    pub fn new() -> Self {
        GorillaAppender {
            w: BitWriter::with_capacity(256),
            count: 0,
            mint: 0,
            maxt: 0,
            delta: 0,
            prev_bits: 0,
            leading: NO_WINDOW,
            trailing: 0,
        }
    }

    /// Number of samples appended.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether no sample has been appended.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Timestamp of the first sample, `None` while empty.
    pub fn mint(&self) -> Option<i64> {
        (self.count > 0).then_some(self.mint)
    }

    /// Timestamp of the last sample, `None` while empty.
    pub fn maxt(&self) -> Option<i64> {
        (self.count > 0).then_some(self.maxt)
    }

    /// Size in bytes of the chunk [`GorillaAppender::to_chunk`] would return now.
    pub fn encoded_size(&self) -> usize {
        header_len(self.count, self.mint, self.maxt) + self.w.byte_len()
    }

    /// Appends a sample. Fails, leaving the appender unchanged, if `t` is not greater than the
    /// last timestamp or the appender already holds `MAX_CHUNK_SAMPLES` samples.
    pub fn append(&mut self, t: i64, v: f64) -> Result<(), CodecError> {
        if self.count as usize >= MAX_CHUNK_SAMPLES {
            return Err(CodecError::TooManySamples {
                count: self.count as usize + 1,
                max: MAX_CHUNK_SAMPLES,
            });
        }
        if self.count > 0 && t <= self.maxt {
            return Err(CodecError::NonIncreasingTimestamps {
                index: self.count as usize,
                prev: self.maxt,
                t,
            });
        }
        let bits = v.to_bits();
        match self.count {
            0 => {
                self.mint = t;
                self.w.write_bits(bits, 64);
                self.prev_bits = bits;
            }
            1 => {
                // t > maxt, so the wrapping difference is the true positive difference.
                let delta = t.wrapping_sub(self.maxt) as u64;
                let len = 64 - delta.leading_zeros();
                self.w.write_bits(u64::from(len - 1), 6);
                self.w.write_bits(delta, len);
                self.delta = delta;
                self.write_value(bits);
            }
            _ => {
                let delta = t.wrapping_sub(self.maxt) as u64;
                let dod = delta.wrapping_sub(self.delta) as i64;
                self.write_dod(dod);
                self.delta = delta;
                self.write_value(bits);
            }
        }
        self.maxt = t;
        self.count += 1;
        Ok(())
    }

    #[inline]
    fn write_dod(&mut self, dod: i64) {
        let w = &mut self.w;
        if dod == 0 {
            w.write_bit(false);
        } else if fits_bucket(dod, 14) {
            w.write_bits(0b10, 2);
            w.write_bits(dod as u64, 14);
        } else if fits_bucket(dod, 17) {
            w.write_bits(0b110, 3);
            w.write_bits(dod as u64, 17);
        } else if fits_bucket(dod, 20) {
            w.write_bits(0b1110, 4);
            w.write_bits(dod as u64, 20);
        } else {
            w.write_bits(0b1111, 4);
            w.write_bits(dod as u64, 64);
        }
    }

    #[inline]
    fn write_value(&mut self, bits: u64) {
        let x = bits ^ self.prev_bits;
        if x == 0 {
            self.w.write_bit(false);
            return;
        }
        self.prev_bits = bits;
        let lead = x.leading_zeros().min(31);
        let trail = x.trailing_zeros();
        if self.leading != NO_WINDOW && lead >= self.leading && trail >= self.trailing {
            let sig = 64 - self.leading - self.trailing;
            self.w.write_bits(0b10, 2);
            self.w.write_bits(x >> self.trailing, sig);
        } else {
            self.leading = lead;
            self.trailing = trail;
            let sig = 64 - lead - trail;
            self.w.write_bits(0b11, 2);
            self.w.write_bits(u64::from(lead), 5);
            self.w.write_bits(u64::from(sig & 63), 6);
            self.w.write_bits(x >> trail, sig);
        }
    }

    /// A complete Gorilla chunk holding every sample appended so far (see the `chunk` module
    /// for the header). Fails only if the appender is empty.
    pub fn to_chunk(&self) -> Result<Vec<u8>, CodecError> {
        if self.count == 0 {
            return Err(CodecError::Empty);
        }
        let mut out = Vec::with_capacity(self.encoded_size());
        write_header(
            &mut out,
            Encoding::Gorilla,
            self.count,
            self.mint,
            self.maxt,
        );
        self.w.copy_to(&mut out);
        Ok(out)
    }

    /// Iterates over the samples appended so far, without copying the compressed data.
    pub fn iter(&self) -> GorillaIter<'_> {
        let (tail, tail_bits) = self.w.tail();
        GorillaIter {
            dec: GorillaDecoder::new(
                BitReader::with_tail(self.w.flushed(), tail, tail_bits),
                self.count,
                self.mint,
                self.maxt,
            ),
            failed: false,
        }
    }

    /// Appends every sample to `out`.
    pub fn decode(&self, out: &mut Vec<Sample>) -> Result<(), CodecError> {
        out.reserve(self.len());
        for s in self.iter() {
            out.push(s?);
        }
        Ok(())
    }
}

/// Iterator over a [`GorillaAppender`]'s samples. Yields an error at most once, then ends
/// (an error would mean a bug, since the appender wrote the data itself).
#[derive(Debug, Clone)]
pub struct GorillaIter<'a> {
    dec: GorillaDecoder<'a>,
    failed: bool,
}

impl Iterator for GorillaIter<'_> {
    type Item = Result<Sample, CodecError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.dec.remaining() == 0 {
            return None;
        }
        let r = self.dec.next_sample();
        self.failed = r.is_err();
        Some(r)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = if self.failed { 0 } else { self.dec.remaining() };
        (n, Some(n))
    }
}

/// Bytes of the common chunk header for these fields.
pub(crate) fn header_len(count: u32, mint: i64, maxt: i64) -> usize {
    use super::varint::{uvarint_len, zigzag};
    1 + uvarint_len(u64::from(count))
        + uvarint_len(zigzag(mint))
        + uvarint_len(maxt.wrapping_sub(mint) as u64)
}

/// Decodes a Gorilla body one sample at a time, validating as it goes.
#[derive(Debug, Clone)]
pub(crate) struct GorillaDecoder<'a> {
    r: BitReader<'a>,
    n: u32,
    produced: u32,
    t: i64,
    maxt: i64,
    delta: u64,
    bits: u64,
    leading: u32,
    trailing: u32,
}

impl<'a> GorillaDecoder<'a> {
    /// A decoder for `n` samples whose first timestamp is `mint` and last must be `maxt`.
    pub(crate) fn new(r: BitReader<'a>, n: u32, mint: i64, maxt: i64) -> Self {
        GorillaDecoder {
            r,
            n,
            produced: 0,
            t: mint,
            maxt,
            delta: 0,
            bits: 0,
            leading: NO_WINDOW,
            trailing: 0,
        }
    }

    /// Samples not decoded yet.
    #[inline]
    pub(crate) fn remaining(&self) -> usize {
        (self.n - self.produced) as usize
    }

    /// Decodes the next sample; the caller checks `remaining() > 0`.
    #[inline]
    pub(crate) fn next_sample(&mut self) -> Result<Sample, CodecError> {
        match self.produced {
            0 => {
                self.bits = self.r.read_bits(64)?;
            }
            1 => {
                let len = self.r.read_bits(6)? as u32 + 1;
                let delta = self.r.read_bits(len)?;
                self.advance_time(delta)?;
                self.read_value()?;
            }
            _ => {
                let dod = self.read_dod()?;
                self.advance_time(self.delta.wrapping_add(dod as u64))?;
                self.read_value()?;
            }
        }
        self.produced += 1;
        if self.produced == self.n && self.t != self.maxt {
            return Err(CodecError::Corrupt(
                "last timestamp differs from the header's maxt",
            ));
        }
        Ok(Sample {
            t: self.t,
            v: f64::from_bits(self.bits),
        })
    }

    /// Fills `ts`/`vs` (equal lengths, at most `remaining()`).
    pub(crate) fn fill(&mut self, ts: &mut [i64], vs: &mut [f64]) -> Result<(), CodecError> {
        for (t, v) in ts.iter_mut().zip(vs.iter_mut()) {
            let s = self.next_sample()?;
            *t = s.t;
            *v = s.v;
        }
        Ok(())
    }

    #[inline(always)]
    fn advance_time(&mut self, delta: u64) -> Result<(), CodecError> {
        let t = self.t.wrapping_add(delta as i64);
        if t <= self.t {
            return Err(CodecError::NonIncreasingTimestamps {
                index: self.produced as usize,
                prev: self.t,
                t,
            });
        }
        self.t = t;
        self.delta = delta;
        Ok(())
    }

    #[inline(always)]
    fn read_dod(&mut self) -> Result<i64, CodecError> {
        self.r.refill();
        let window = self.r.window();
        let avail = self.r.avail();
        if avail == 0 {
            return Err(CodecError::Truncated);
        }
        if window >> 63 == 0 {
            self.r.consume(1);
            return Ok(0);
        }
        let (prefix, size) = match window.leading_ones() {
            1 => (2, 14),
            2 => (3, 17),
            3 => (4, 20),
            _ => (4, 64),
        };
        if prefix > avail {
            return Err(CodecError::Truncated);
        }
        if size == 64 {
            self.r.consume(prefix);
            return Ok(self.r.read_bits(64)? as i64);
        }
        if prefix + size > avail {
            return Err(CodecError::Truncated);
        }
        let raw = ((window << prefix) >> (64 - size)) as i64;
        self.r.consume(prefix + size);
        // Two's complement of `size` bits, except that +2^(size-1) is positive (Prometheus).
        Ok(if raw > 1i64 << (size - 1) {
            raw - (1i64 << size)
        } else {
            raw
        })
    }

    #[inline(always)]
    fn read_value(&mut self) -> Result<(), CodecError> {
        self.r.refill();
        let window = self.r.window();
        let avail = self.r.avail();
        if avail == 0 {
            return Err(CodecError::Truncated);
        }
        if window >> 63 == 0 {
            self.r.consume(1);
            return Ok(());
        }
        if window & (1 << 62) == 0 {
            if avail < 2 {
                return Err(CodecError::Truncated);
            }
            if self.leading == NO_WINDOW {
                return Err(CodecError::Corrupt("XOR window reused before being set"));
            }
            self.r.consume(2);
        } else {
            // Control `11`, 5 bits of leading zeros, 6 bits of significant-bit count.
            if avail < 13 {
                return Err(CodecError::Truncated);
            }
            let lead = ((window >> 57) & 31) as u32;
            let sig = match ((window >> 51) & 63) as u32 {
                0 => 64,
                n => n,
            };
            if lead + sig > 64 {
                return Err(CodecError::Corrupt(
                    "XOR leading zeros plus significant bits exceed 64",
                ));
            }
            self.r.consume(13);
            self.leading = lead;
            self.trailing = 64 - lead - sig;
        }
        let sig = 64 - self.leading - self.trailing;
        let x = self.r.read_bits(sig)?;
        // sig >= 1, so trailing <= 63.
        self.bits ^= x << self.trailing;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appender_rejects_non_increasing_and_stays_usable() {
        let mut a = GorillaAppender::new();
        assert!(a.is_empty());
        assert_eq!(a.mint(), None);
        a.append(10, 1.0).unwrap();
        assert!(matches!(
            a.append(10, 2.0),
            Err(CodecError::NonIncreasingTimestamps {
                index: 1,
                prev: 10,
                t: 10
            })
        ));
        a.append(20, 2.0).unwrap();
        a.append(i64::MAX, f64::NAN).unwrap();
        assert_eq!(a.len(), 3);
        assert_eq!((a.mint(), a.maxt()), (Some(10), Some(i64::MAX)));
        let got: Vec<Sample> = a.iter().collect::<Result<_, _>>().unwrap();
        assert_eq!(
            got,
            vec![
                Sample::new(10, 1.0),
                Sample::new(20, 2.0),
                Sample::new(i64::MAX, f64::NAN)
            ]
        );
        assert_eq!(a.to_chunk().unwrap().len(), a.encoded_size());
    }

    #[test]
    fn appender_is_full_at_max_samples() {
        let mut a = GorillaAppender::new();
        for i in 0..MAX_CHUNK_SAMPLES as i64 {
            a.append(i, 0.0).unwrap();
        }
        assert!(matches!(
            a.append(i64::MAX, 0.0),
            Err(CodecError::TooManySamples { .. })
        ));
    }

    #[test]
    fn empty_appender_has_no_chunk() {
        assert_eq!(GorillaAppender::new().to_chunk(), Err(CodecError::Empty));
        assert_eq!(GorillaAppender::new().iter().count(), 0);
    }

    #[test]
    fn every_dod_bucket_round_trips() {
        let mut a = GorillaAppender::new();
        let mut t = 0i64;
        let mut delta = 1000i64;
        let mut expect = Vec::new();
        for (i, dod) in [
            0i64,
            1,
            -1,
            8191,
            -8191,
            8192,
            -8192,
            65536,
            -65535,
            65537,
            524288,
            524289,
            -524288,
            1 << 40,
        ]
        .into_iter()
        .enumerate()
        {
            delta += dod;
            t += delta;
            a.append(t, i as f64).unwrap();
            expect.push(Sample::new(t, i as f64));
        }
        let mut out = Vec::new();
        a.decode(&mut out).unwrap();
        assert_eq!(out, expect);
    }
}
