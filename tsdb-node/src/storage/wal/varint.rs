//! WAL record helpers: strings, and a bounds-checked reader over untrusted bytes. The varint
//! encoding itself is `storage::varint`.

use super::error::DecodeError;

pub(crate) use crate::storage::varint::{
    put_uvarint, put_varint as put_ivarint, unzigzag, MAX_VARINT_LEN,
};

/// Varint length prefix followed by the UTF-8 bytes.
#[inline]
pub(crate) fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_uvarint(buf, s.len() as u64);
    buf.extend_from_slice(s.as_bytes());
}

/// A cursor over untrusted bytes. Every read checks bounds and reports the offset of the
/// problem, so callers never index directly.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    #[inline]
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    #[inline]
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(DecodeError::UnexpectedEnd {
            offset: self.pos,
            needed: 1,
        })?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end {
            Some(end) => {
                let s = &self.buf[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(DecodeError::UnexpectedEnd {
                offset: self.pos,
                needed: n - self.remaining(),
            }),
        }
    }

    #[inline]
    pub(crate) fn f64_le(&mut self) -> Result<f64, DecodeError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_bits(u64::from_le_bytes(a)))
    }

    #[inline]
    pub(crate) fn uvarint(&mut self) -> Result<u64, DecodeError> {
        let start = self.pos;
        let mut v: u64 = 0;
        for i in 0..MAX_VARINT_LEN {
            let b = match self.buf.get(start + i) {
                Some(&b) => b,
                None => {
                    return Err(DecodeError::UnexpectedEnd {
                        offset: start + i,
                        needed: 1,
                    })
                }
            };
            // The 10th byte carries only the top bit of a u64; anything more overflows.
            if i == MAX_VARINT_LEN - 1 && b > 1 {
                return Err(DecodeError::BadVarint { offset: start });
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.pos = start + i + 1;
                return Ok(v);
            }
        }
        Err(DecodeError::BadVarint { offset: start })
    }

    #[inline]
    pub(crate) fn ivarint(&mut self) -> Result<i64, DecodeError> {
        self.uvarint().map(unzigzag)
    }

    pub(crate) fn string(&mut self) -> Result<String, DecodeError> {
        let len_offset = self.pos;
        let len = self.uvarint()?;
        let len = usize::try_from(len).map_err(|_| DecodeError::UnexpectedEnd {
            offset: len_offset,
            needed: usize::MAX,
        })?;
        let offset = self.pos;
        let bytes = self.bytes(len)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| DecodeError::InvalidUtf8 { offset })
    }

    /// Reads an element count and checks that `min_elem_size` bytes per element fit in what is
    /// left, so that a forged count can never drive a large allocation.
    pub(crate) fn count(&mut self, min_elem_size: usize) -> Result<usize, DecodeError> {
        let offset = self.pos;
        let count = self.uvarint()?;
        let remaining = self.remaining();
        let max = (remaining / min_elem_size.max(1)) as u64;
        if count > max {
            return Err(DecodeError::CountTooLarge {
                offset,
                count,
                remaining,
            });
        }
        // count <= remaining, which is a usize.
        Ok(count as usize)
    }

    /// Fails if any bytes are left.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::varint::zigzag;
    use proptest::prelude::*;

    #[test]
    fn varint_edges_round_trip() {
        for v in [0u64, 1, 127, 128, 16383, 16384, u64::MAX / 2, u64::MAX] {
            let mut b = Vec::new();
            put_uvarint(&mut b, v);
            assert!(b.len() <= MAX_VARINT_LEN);
            let mut r = Reader::new(&b);
            assert_eq!(r.uvarint().unwrap(), v);
            r.finish().unwrap();
        }
    }

    #[test]
    fn overlong_and_overflowing_varints_are_rejected() {
        let overflow = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert!(matches!(
            Reader::new(&overflow).uvarint(),
            Err(DecodeError::BadVarint { .. })
        ));
        let truncated = [0x80, 0x80];
        assert!(matches!(
            Reader::new(&truncated).uvarint(),
            Err(DecodeError::UnexpectedEnd { .. })
        ));
    }

    #[test]
    fn forged_counts_are_rejected() {
        let mut b = Vec::new();
        put_uvarint(&mut b, u64::MAX);
        assert!(matches!(
            Reader::new(&b).count(1),
            Err(DecodeError::CountTooLarge { .. })
        ));
    }

    proptest! {
        #[test]
        fn zigzag_round_trips(v in any::<i64>()) {
            prop_assert_eq!(unzigzag(zigzag(v)), v);
            let mut b = Vec::new();
            put_ivarint(&mut b, v);
            prop_assert_eq!(Reader::new(&b).ivarint().unwrap(), v);
        }

        #[test]
        fn reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&bytes);
            let _ = r.uvarint();
            let _ = r.string();
            let _ = r.count(3);
            let _ = r.f64_le();
            let _ = r.bytes(usize::MAX);
        }
    }
}
