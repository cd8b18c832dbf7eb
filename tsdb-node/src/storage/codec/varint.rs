//! The bounds-checked reader of the chunk header and the byte-aligned parameter fields of
//! encoding bodies; the encoding side is `storage::varint`.

use super::error::CodecError;

pub(crate) use crate::storage::varint::{
    put_uvarint, put_varint, unzigzag, uvarint_len, zigzag, MAX_VARINT_LEN,
};

/// A cursor over untrusted bytes that never reads out of bounds.
#[derive(Debug, Clone)]
pub(crate) struct ByteReader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> ByteReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        ByteReader { data, pos: 0 }
    }

    /// Bytes not consumed yet.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.data.get(self.pos..).unwrap_or(&[])
    }

    pub(crate) fn u8(&mut self) -> Result<u8, CodecError> {
        let b = *self.data.get(self.pos).ok_or(CodecError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    /// Reads a LEB128 `u64`, rejecting encodings longer than 10 bytes or with bits past 64.
    pub(crate) fn uvarint(&mut self) -> Result<u64, CodecError> {
        let mut v: u64 = 0;
        for i in 0..MAX_VARINT_LEN {
            let b = self.u8()?;
            let low = u64::from(b & 0x7f);
            if i == MAX_VARINT_LEN - 1 && b > 1 {
                return Err(CodecError::BadVarint);
            }
            v |= low << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(CodecError::BadVarint)
    }

    pub(crate) fn varint(&mut self) -> Result<i64, CodecError> {
        Ok(unzigzag(self.uvarint()?))
    }

    /// Takes the next `len` bytes, failing if fewer remain. Never allocates.
    pub(crate) fn take(&mut self, len: u64) -> Result<&'a [u8], CodecError> {
        let rest = self.rest();
        let len = usize::try_from(len).map_err(|_| CodecError::Truncated)?;
        let taken = rest.get(..len).ok_or(CodecError::Truncated)?;
        self.pos += len;
        Ok(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_the_extremes() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            u64::from(u32::MAX),
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut buf = Vec::new();
            put_uvarint(&mut buf, v);
            assert_eq!(buf.len(), uvarint_len(v));
            assert_eq!(ByteReader::new(&buf).uvarint(), Ok(v));
        }
        for v in [0i64, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(v)), v);
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(ByteReader::new(&buf).varint(), Ok(v));
        }
    }

    #[test]
    fn malformed_varints_are_errors() {
        assert_eq!(
            ByteReader::new(&[0x80]).uvarint(),
            Err(CodecError::Truncated)
        );
        assert_eq!(
            ByteReader::new(&[0xff; 11]).uvarint(),
            Err(CodecError::BadVarint)
        );
        let mut too_big = vec![0xff; 9];
        too_big.push(0x02);
        assert_eq!(
            ByteReader::new(&too_big).uvarint(),
            Err(CodecError::BadVarint)
        );
        assert_eq!(ByteReader::new(&[1, 2]).take(3), Err(CodecError::Truncated));
        assert_eq!(
            ByteReader::new(&[1, 2]).take(u64::MAX),
            Err(CodecError::Truncated)
        );
    }
}
