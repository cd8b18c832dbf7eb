//! MSB-first bit writer and reader with 64-bit word buffering.
//!
//! The writer keeps up to 63 pending bits in a register and stores whole words big-endian, so
//! a stream of bits is laid out in bytes exactly as it was written (first bit = MSB of byte 0).
//! The reader keeps a left-aligned 64-bit window that it refills with one unaligned 8-byte load
//! whenever at most 56 bits are left, which makes short reads a shift and a mask.
//!
//! The reader never panics: reading past the end returns [`CodecError::Truncated`]. The final
//! byte of a stream is zero-padded, so a reader cannot tell padding from data; callers bound
//! their reads by the sample count instead.

use super::error::CodecError;

/// Appends bits MSB-first.
#[derive(Debug, Clone, Default)]
pub struct BitWriter {
    buf: Vec<u8>,
    /// Pending bits, right-aligned: the lowest `nbits` bits are valid.
    acc: u64,
    nbits: u32,
}

impl BitWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty writer whose buffer can take `bytes` bytes before reallocating.
    pub fn with_capacity(bytes: usize) -> Self {
        BitWriter {
            buf: Vec::with_capacity(bytes),
            acc: 0,
            nbits: 0,
        }
    }

    /// Writes the low `n` bits of `value` (`n <= 64`), most significant first. Bits of `value`
    /// above `n` are ignored.
    #[inline]
    pub fn write_bits(&mut self, value: u64, n: u32) {
        debug_assert!(n <= 64);
        if n == 0 {
            return;
        }
        let value = if n >= 64 {
            value
        } else {
            value & ((1u64 << n) - 1)
        };
        let free = 64 - self.nbits;
        if n < free {
            self.acc = (self.acc << n) | value;
            self.nbits += n;
        } else {
            // Top `free` bits of value complete the word; the remaining `rest` start the next.
            let rest = n - free;
            let word = if free == 64 {
                value
            } else {
                (self.acc << free) | (value >> rest)
            };
            self.buf.extend_from_slice(&word.to_be_bytes());
            self.acc = if rest == 0 {
                0
            } else {
                value & ((1u64 << rest) - 1)
            };
            self.nbits = rest;
        }
    }

    /// Writes one bit.
    #[inline]
    pub fn write_bit(&mut self, bit: bool) {
        self.write_bits(u64::from(bit), 1);
    }

    /// Number of bits written so far.
    pub fn bit_len(&self) -> u64 {
        self.buf.len() as u64 * 8 + u64::from(self.nbits)
    }

    /// Number of bytes [`BitWriter::finish`] would return.
    pub fn byte_len(&self) -> usize {
        self.buf.len() + (self.nbits as usize).div_ceil(8)
    }

    /// Whole words already stored (a prefix of the stream).
    pub(crate) fn flushed(&self) -> &[u8] {
        &self.buf
    }

    /// Pending bits that follow [`BitWriter::flushed`], left-aligned, and their number (< 64).
    pub(crate) fn tail(&self) -> (u64, u32) {
        if self.nbits == 0 {
            (0, 0)
        } else {
            (self.acc << (64 - self.nbits), self.nbits)
        }
    }

    /// Appends the stream so far, zero-padded to a whole byte, to `out` without consuming it.
    pub fn copy_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.buf);
        let (tail, nbits) = self.tail();
        let bytes = (nbits as usize).div_ceil(8);
        out.extend_from_slice(tail.to_be_bytes().get(..bytes).unwrap_or(&[]));
    }

    /// The stream, zero-padded to a whole byte.
    pub fn finish(mut self) -> Vec<u8> {
        let (tail, nbits) = self.tail();
        let bytes = (nbits as usize).div_ceil(8);
        self.buf
            .extend_from_slice(tail.to_be_bytes().get(..bytes).unwrap_or(&[]));
        self.buf
    }
}

/// Reads bits MSB-first from a byte slice, optionally followed by up to 63 extra bits (the
/// pending tail of a [`BitWriter`] that is still being appended to).
#[derive(Debug, Clone)]
pub struct BitReader<'a> {
    data: &'a [u8],
    /// Next byte of `data` to load into `acc`.
    pos: usize,
    /// Left-aligned window. The top `avail` bits are the next bits of the stream; the bits
    /// below them are either zero or the correct bits that follow, never anything else, so
    /// OR-ing the next load into it is always sound.
    acc: u64,
    avail: u32,
    tail: u64,
    tail_bits: u32,
}

impl<'a> BitReader<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self::with_tail(data, 0, 0)
    }

    /// A reader over `data` followed by the top `tail_bits` bits of `tail` (`tail_bits < 64`).
    pub fn with_tail(data: &'a [u8], tail: u64, tail_bits: u32) -> Self {
        let tail_bits = tail_bits.min(63);
        let tail = if tail_bits == 0 {
            0
        } else {
            tail & !(u64::MAX >> tail_bits)
        };
        BitReader {
            data,
            pos: 0,
            acc: 0,
            avail: 0,
            tail,
            tail_bits,
        }
    }

    /// Bits not read yet (including zero padding at the end).
    pub fn remaining_bits(&self) -> u64 {
        let bytes = self.data.len().saturating_sub(self.pos) as u64;
        bytes * 8 + u64::from(self.avail) + u64::from(self.tail_bits)
    }

    /// Makes at least 57 bits available in the window, or all remaining bits near the end.
    #[inline(always)]
    pub(crate) fn refill(&mut self) {
        if self.avail > 56 {
            return;
        }
        if let Some(bytes) = self.data.get(self.pos..self.pos.wrapping_add(8)) {
            let mut word = [0u8; 8];
            word.copy_from_slice(bytes);
            let word = u64::from_be_bytes(word);
            self.acc |= word >> self.avail;
            let take = (64 - self.avail) >> 3;
            self.pos += take as usize;
            self.avail += take << 3;
        } else {
            self.refill_slow();
        }
    }

    #[cold]
    fn refill_slow(&mut self) {
        while self.avail <= 56 {
            match self.data.get(self.pos) {
                Some(&b) => {
                    self.acc |= u64::from(b) << (56 - self.avail);
                    self.avail += 8;
                    self.pos += 1;
                }
                None => break,
            }
        }
        if self.pos >= self.data.len() && self.tail_bits > 0 && self.avail < 64 {
            let take = self.tail_bits.min(64 - self.avail);
            self.acc |= self.tail >> self.avail;
            self.avail += take;
            self.tail_bits -= take;
            self.tail = if take >= 64 { 0 } else { self.tail << take };
        }
    }

    /// The window: the next `avail()` bits of the stream, left-aligned.
    #[inline(always)]
    pub(crate) fn window(&self) -> u64 {
        self.acc
    }

    /// Number of valid bits in [`BitReader::window`].
    #[inline(always)]
    pub(crate) fn avail(&self) -> u32 {
        self.avail
    }

    /// Drops `n <= avail()` bits from the window.
    #[inline(always)]
    pub(crate) fn consume(&mut self, n: u32) {
        debug_assert!(n <= self.avail);
        self.acc = if n >= 64 { 0 } else { self.acc << n };
        self.avail -= n.min(self.avail);
    }

    /// Reads `n <= 64` bits as the low bits of the result.
    #[inline]
    pub fn read_bits(&mut self, n: u32) -> Result<u64, CodecError> {
        if n == 0 {
            return Ok(0);
        }
        if n > 56 {
            let hi = self.read_bits(n - 32)?;
            let lo = self.read_bits(32)?;
            return Ok((hi << 32) | lo);
        }
        self.refill();
        if n > self.avail {
            return Err(CodecError::Truncated);
        }
        let v = self.acc >> (64 - n);
        self.consume(n);
        Ok(v)
    }

    /// Reads one bit.
    #[inline]
    pub fn read_bit(&mut self) -> Result<bool, CodecError> {
        self.refill();
        if self.avail == 0 {
            return Err(CodecError::Truncated);
        }
        let bit = self.acc >> 63 != 0;
        self.consume(1);
        Ok(bit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bits_are_laid_out_msb_first() {
        let mut w = BitWriter::new();
        w.write_bits(0b101, 3);
        w.write_bits(0xff, 8);
        w.write_bit(false);
        assert_eq!(w.bit_len(), 12);
        assert_eq!(w.finish(), vec![0b1011_1111, 0b1110_0000]);
    }

    #[test]
    fn reading_past_the_end_is_an_error() {
        let mut r = BitReader::new(&[0xAB]);
        assert_eq!(r.read_bits(4), Ok(0xA));
        assert_eq!(r.read_bits(5), Err(CodecError::Truncated));
        assert_eq!(r.read_bits(4), Ok(0xB));
        assert_eq!(r.read_bit(), Err(CodecError::Truncated));
        assert_eq!(
            BitReader::new(&[]).read_bits(64),
            Err(CodecError::Truncated)
        );
    }

    #[test]
    fn full_words_round_trip() {
        let mut w = BitWriter::new();
        w.write_bits(u64::MAX, 64);
        w.write_bits(1, 1);
        w.write_bits(0x0123_4567_89ab_cdef, 64);
        let bytes = w.finish();
        let mut r = BitReader::new(&bytes);
        assert_eq!(r.read_bits(64), Ok(u64::MAX));
        assert_eq!(r.read_bit(), Ok(true));
        assert_eq!(r.read_bits(64), Ok(0x0123_4567_89ab_cdef));
    }

    proptest! {
        #[test]
        fn arbitrary_fields_round_trip(fields in prop::collection::vec((any::<u64>(), 0u32..=64), 0..200)) {
            let mut w = BitWriter::new();
            for &(v, n) in &fields {
                w.write_bits(v, n);
            }
            let total = w.bit_len();
            // Read back both from the finished bytes and from an unfinished writer's tail.
            let (tail, tail_bits) = w.tail();
            let flushed = w.flushed().to_vec();
            let bytes = w.finish();
            for mut r in [BitReader::new(&bytes), BitReader::with_tail(&flushed, tail, tail_bits)] {
                for &(v, n) in &fields {
                    let mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
                    prop_assert_eq!(r.read_bits(n), Ok(v & mask));
                }
                prop_assert!(r.remaining_bits() < 8);
                // Only the zero padding of the last byte may be left.
                prop_assert!(r.remaining_bits() <= total.next_multiple_of(8) - total);
            }
        }
    }
}
