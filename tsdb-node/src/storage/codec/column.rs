//! A column of integers (decimal mantissas or timestamps) coded as first differences
//! ("delta", order 1) or second differences ("delta-of-delta", order 2), whichever is smaller.
//!
//! The column's first integer is stored by its owner (the chunk's `mint`, or the decimal
//! body's first mantissa). Parameters, byte-aligned: `order` (one byte, 1 or 2), the
//! [`SeqCoding`] parameters, and for order 2 with at least two integers the first difference
//! as a zigzag varint. The item bits form a section of their own. All arithmetic wraps
//! modulo 2^64, which makes every i64 column round-trip exactly.

use super::bitstream::BitWriter;
use super::error::CodecError;
use super::seq::{self, SeqCoding, SeqDecoder};
use super::varint::{put_varint, uvarint_len, zigzag, ByteReader};

/// How a column is coded; built by [`ColumnPlan::new`] or read back by [`ColumnParams::read`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ColumnParams {
    pub(crate) order: u8,
    pub(crate) coding: SeqCoding,
    pub(crate) first_delta: i64,
}

impl ColumnParams {
    fn params_len(&self, n: usize) -> usize {
        let delta = if self.order == 2 && n >= 2 {
            uvarint_len(zigzag(self.first_delta))
        } else {
            0
        };
        1 + self.coding.params_len() + delta
    }

    pub(crate) fn write(&self, out: &mut Vec<u8>, n: usize) {
        out.push(self.order);
        self.coding.write_params(out);
        if self.order == 2 && n >= 2 {
            put_varint(out, self.first_delta);
        }
    }

    pub(crate) fn read(r: &mut ByteReader<'_>, n: usize) -> Result<Self, CodecError> {
        let order = r.u8()?;
        if order != 1 && order != 2 {
            return Err(CodecError::Corrupt("column order is neither 1 nor 2"));
        }
        let coding = SeqCoding::read_params(r)?;
        let first_delta = if order == 2 && n >= 2 { r.varint()? } else { 0 };
        Ok(ColumnParams {
            order,
            coding,
            first_delta,
        })
    }

    /// Number of coded items for a column of `n` integers.
    pub(crate) fn items(&self, n: usize) -> usize {
        n.saturating_sub(usize::from(self.order))
    }
}

/// The cheaper of the two orders for a column, with the items to write.
#[derive(Debug, Clone)]
pub(crate) struct ColumnPlan {
    pub(crate) params: ColumnParams,
    items: Vec<i64>,
    /// Total size in bits, parameters included.
    pub(crate) bits: u64,
}

impl ColumnPlan {
    pub(crate) fn new(xs: &[i64]) -> Self {
        let d1: Vec<i64> = xs.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect();
        let first_delta = d1.first().copied().unwrap_or(0);
        let d2: Vec<i64> = d1.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect();
        let make = |order: u8, items: Vec<i64>| {
            let (coding, bits) = seq::plan(&items);
            let params = ColumnParams {
                order,
                coding,
                // Order 1 codes the first difference as an item; storing it too would waste.
                first_delta: if order == 2 { first_delta } else { 0 },
            };
            let bits = bits + (params.params_len(xs.len()) - coding.params_len()) as u64 * 8;
            ColumnPlan {
                params,
                items,
                bits,
            }
        };
        let p1 = make(1, d1);
        let p2 = make(2, d2);
        if p2.bits < p1.bits {
            p2
        } else {
            p1
        }
    }

    pub(crate) fn write_items(&self, w: &mut BitWriter) {
        seq::write(w, &self.items, self.params.coding);
    }
}

/// Reconstructs a column a block at a time.
#[derive(Debug, Clone)]
pub(crate) struct ColumnDecoder<'a> {
    seq: SeqDecoder<'a>,
    order: u8,
    first: i64,
    first_delta: i64,
    produced: usize,
    prev: i64,
    delta: i64,
}

impl<'a> ColumnDecoder<'a> {
    pub(crate) fn new(
        params: ColumnParams,
        section: &'a [u8],
        first: i64,
        n: usize,
    ) -> Result<Self, CodecError> {
        Ok(ColumnDecoder {
            seq: SeqDecoder::new(section, params.coding, params.items(n))?,
            order: params.order,
            first,
            first_delta: params.first_delta,
            produced: 0,
            prev: first,
            delta: params.first_delta,
        })
    }

    /// Writes the next `out.len()` integers of the column; the caller never asks for more
    /// than the column holds (the sequence decoder reports it as corrupt otherwise).
    #[inline]
    pub(crate) fn decode_into(&mut self, out: &mut [i64]) -> Result<(), CodecError> {
        let mut start = 0;
        if self.produced == 0 {
            if let Some(slot) = out.first_mut() {
                *slot = self.first;
                start = 1;
            }
        }
        if self.order == 2 && self.produced + start == 1 {
            if let Some(slot) = out.get_mut(start) {
                self.prev = self.first.wrapping_add(self.first_delta);
                *slot = self.prev;
                start += 1;
            }
        }
        let rest = out.get_mut(start..).unwrap_or(&mut []);
        self.seq.decode_into(rest)?;
        if self.order == 1 {
            let mut prev = self.prev;
            for x in rest.iter_mut() {
                prev = prev.wrapping_add(*x);
                *x = prev;
            }
            self.prev = prev;
        } else {
            let (mut prev, mut delta) = (self.prev, self.delta);
            for x in rest.iter_mut() {
                delta = delta.wrapping_add(*x);
                prev = prev.wrapping_add(delta);
                *x = prev;
            }
            self.prev = prev;
            self.delta = delta;
        }
        self.produced += out.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(xs: &[i64], block: usize) -> Vec<i64> {
        let plan = ColumnPlan::new(xs);
        let mut params = Vec::new();
        plan.params.write(&mut params, xs.len());
        let mut w = BitWriter::new();
        plan.write_items(&mut w);
        let section = w.finish();
        let mut pr = ByteReader::new(&params);
        let read = ColumnParams::read(&mut pr, xs.len()).unwrap();
        assert_eq!(read, plan.params);
        assert!(pr.rest().is_empty());
        let mut d =
            ColumnDecoder::new(read, &section, xs.first().copied().unwrap_or(0), xs.len()).unwrap();
        let mut out = vec![0; xs.len()];
        for b in out.chunks_mut(block) {
            d.decode_into(b).unwrap();
        }
        out
    }

    #[test]
    fn linear_columns_cost_only_their_parameters() {
        let xs: Vec<i64> = (0..500).map(|i| 1_000 + 37 * i).collect();
        // Either order 2 with all-zero items or order 1 with a constant offset: 0 bits each.
        assert!(ColumnPlan::new(&xs).bits <= 64);
        assert_eq!(round_trip(&xs, 1), xs);
        assert_eq!(round_trip(&xs, 64), xs);
    }

    proptest! {
        #[test]
        fn any_column_round_trips(xs in prop::collection::vec(any::<i64>(), 1..100), block in 1usize..10) {
            prop_assert_eq!(round_trip(&xs, block), xs);
        }
    }
}
