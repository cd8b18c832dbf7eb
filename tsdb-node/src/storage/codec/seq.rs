//! Entropy coding of a sequence of integers (the deltas or deltas-of-deltas of a column).
//!
//! Three codings, chosen per sequence by exact bit cost:
//!
//! - `Rice`: every item zigzag-mapped and Rice-coded.
//! - `Offset { base }`: every item minus `base` (the minimum; so the result is unsigned) and
//!   Rice-coded. Wins over zigzag when deltas are one-sided, e.g. a counter that only grows:
//!   zigzag would spend a bit per item on a sign that never changes.
//! - `Rle`: alternating runs of zero items and single non-zero items. A run length is
//!   Rice-coded with its own parameters; a non-zero item as `zigzag(item) - 1` with another
//!   set. Decoding stops
//!   as soon as the known item count is reached, so a sequence ending in a non-zero item has
//!   no final run. A 0/1 state that flips every thousand samples costs ~15 bits per flip.
//!
//! Parameters are byte-aligned: a tag byte (0 = Rice, 1 = Offset, 2 = Rle), then Rice
//! parameters as two bytes `k, qmax` (see `rice`): for Rice one pair; for Offset one pair and
//! `base` as a zigzag varint; for Rle the run pair then the value pair. The bits of the items
//! live in a separate bit section.

use super::bitstream::{BitReader, BitWriter};
use super::error::CodecError;
use super::rice::{self, RiceParams};
use super::varint::{put_varint, unzigzag, uvarint_len, zigzag, ByteReader};

const TAG_RICE: u8 = 0;
const TAG_OFFSET: u8 = 1;
const TAG_RLE: u8 = 2;

/// How a sequence's items are coded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SeqCoding {
    Rice(RiceParams),
    Offset { base: i64, p: RiceParams },
    Rle { run: RiceParams, val: RiceParams },
}

impl SeqCoding {
    /// Bytes of [`SeqCoding::write_params`].
    pub(crate) fn params_len(&self) -> usize {
        match *self {
            SeqCoding::Rice(_) => 3,
            SeqCoding::Offset { base, .. } => 3 + uvarint_len(zigzag(base)),
            SeqCoding::Rle { .. } => 5,
        }
    }

    pub(crate) fn write_params(&self, out: &mut Vec<u8>) {
        match *self {
            SeqCoding::Rice(p) => {
                out.push(TAG_RICE);
                out.extend_from_slice(&p.to_bytes());
            }
            SeqCoding::Offset { base, p } => {
                out.push(TAG_OFFSET);
                out.extend_from_slice(&p.to_bytes());
                put_varint(out, base);
            }
            SeqCoding::Rle { run, val } => {
                out.push(TAG_RLE);
                out.extend_from_slice(&run.to_bytes());
                out.extend_from_slice(&val.to_bytes());
            }
        }
    }

    pub(crate) fn read_params(r: &mut ByteReader<'_>) -> Result<Self, CodecError> {
        let rice = |r: &mut ByteReader<'_>| -> Result<RiceParams, CodecError> {
            let k = r.u8()?;
            RiceParams::from_bytes(k, r.u8()?)
        };
        match r.u8()? {
            TAG_RICE => Ok(SeqCoding::Rice(rice(r)?)),
            TAG_OFFSET => {
                let p = rice(r)?;
                Ok(SeqCoding::Offset {
                    base: r.varint()?,
                    p,
                })
            }
            TAG_RLE => {
                let run = rice(r)?;
                let val = rice(r)?;
                Ok(SeqCoding::Rle { run, val })
            }
            _ => Err(CodecError::Corrupt("unknown sequence coding tag")),
        }
    }

    /// Fewest bits any item can take; bounds how many items a section of a given size holds.
    pub(crate) fn min_item_bits(&self) -> u64 {
        match self {
            SeqCoding::Rice(p) | SeqCoding::Offset { p, .. } => p.min_bits(),
            SeqCoding::Rle { .. } => 0,
        }
    }
}

/// The cheapest coding for `seq` and its total size in bits (items plus parameter bytes).
pub(crate) fn plan(seq: &[i64]) -> (SeqCoding, u64) {
    if seq.is_empty() {
        let c = SeqCoding::Rice(RiceParams { k: 0, qmax: 0 });
        return (c, c.params_len() as u64 * 8);
    }
    let zz: Vec<u64> = seq.iter().map(|&x| zigzag(x)).collect();
    let (p, bits) = rice::best(&zz);
    let rice_c = SeqCoding::Rice(p);
    let mut best = (rice_c, bits + rice_c.params_len() as u64 * 8);

    // Even with base 0 this differs from Rice: no sign bit is spent on non-negative items.
    let base = seq.iter().copied().min().unwrap_or(0);
    let us: Vec<u64> = seq.iter().map(|&x| x.wrapping_sub(base) as u64).collect();
    let (p, bits) = rice::best(&us);
    let c = SeqCoding::Offset { base, p };
    let total = bits + c.params_len() as u64 * 8;
    if total < best.1 {
        best = (c, total);
    }

    let (runs, vals) = split_runs(seq);
    // RLE only pays when runs are long; skip the work when most items are non-zero.
    if vals.len() * 2 < seq.len() {
        let (run, run_bits) = rice::best(&runs);
        let (val, val_bits) = rice::best(&vals);
        let c = SeqCoding::Rle { run, val };
        let total = run_bits + val_bits + c.params_len() as u64 * 8;
        if total < best.1 {
            best = (c, total);
        }
    }
    best
}

/// Zero-run lengths and mapped non-zero items in the order [`SeqCoding::Rle`] writes them.
fn split_runs(seq: &[i64]) -> (Vec<u64>, Vec<u64>) {
    let mut runs = Vec::new();
    let mut vals = Vec::new();
    let mut run = 0u64;
    for &x in seq {
        if x == 0 {
            run += 1;
        } else {
            runs.push(run);
            vals.push(zigzag(x) - 1);
            run = 0;
        }
    }
    if run > 0 {
        runs.push(run);
    }
    (runs, vals)
}

/// Writes the items of `seq` with `coding`.
pub(crate) fn write(w: &mut BitWriter, seq: &[i64], coding: SeqCoding) {
    match coding {
        SeqCoding::Rice(p) => {
            for &x in seq {
                rice::write(w, zigzag(x), p);
            }
        }
        SeqCoding::Offset { base, p } => {
            for &x in seq {
                rice::write(w, x.wrapping_sub(base) as u64, p);
            }
        }
        SeqCoding::Rle {
            run: p_run,
            val: p_val,
        } => {
            let mut run = 0u64;
            for &x in seq {
                if x == 0 {
                    run += 1;
                } else {
                    rice::write(w, run, p_run);
                    rice::write(w, zigzag(x) - 1, p_val);
                    run = 0;
                }
            }
            if run > 0 {
                rice::write(w, run, p_run);
            }
        }
    }
}

/// Decodes a known number of items, a block at a time.
#[derive(Debug, Clone)]
pub(crate) struct SeqDecoder<'a> {
    r: BitReader<'a>,
    coding: SeqCoding,
    remaining: usize,
    /// RLE: zero items still to emit from the current run.
    run_left: u64,
    /// RLE: whether the next thing in the stream is a non-zero item (else a run).
    value_next: bool,
}

impl<'a> SeqDecoder<'a> {
    /// A decoder of `items` items from `section`; fails if the section is too small to hold
    /// them, so that a corrupt count cannot make the caller allocate or loop for nothing.
    pub(crate) fn new(
        section: &'a [u8],
        coding: SeqCoding,
        items: usize,
    ) -> Result<Self, CodecError> {
        if (items as u64).saturating_mul(coding.min_item_bits()) > section.len() as u64 * 8 {
            return Err(CodecError::CountExceedsBody {
                count: u32::try_from(items).unwrap_or(u32::MAX),
                body_bytes: section.len(),
            });
        }
        Ok(SeqDecoder {
            r: BitReader::new(section),
            coding,
            remaining: items,
            run_left: 0,
            value_next: false,
        })
    }

    /// Decodes the next `out.len()` items into `out`.
    #[inline]
    pub(crate) fn decode_into(&mut self, out: &mut [i64]) -> Result<(), CodecError> {
        if out.len() > self.remaining {
            return Err(CodecError::Corrupt("sequence read past its item count"));
        }
        let r = &mut self.r;
        match self.coding {
            SeqCoding::Rice(p) => {
                for slot in out.iter_mut() {
                    *slot = unzigzag(rice::read(r, p)?);
                }
            }
            SeqCoding::Offset { base, p } => {
                for slot in out.iter_mut() {
                    *slot = base.wrapping_add(rice::read(r, p)? as i64);
                }
            }
            SeqCoding::Rle {
                run: p_run,
                val: p_val,
            } => {
                let mut i = 0;
                while i < out.len() {
                    if self.run_left > 0 {
                        let n = self.run_left.min((out.len() - i) as u64) as usize;
                        if let Some(zeros) = out.get_mut(i..i + n) {
                            zeros.fill(0);
                        }
                        self.run_left -= n as u64;
                        i += n;
                    } else if self.value_next {
                        let u = rice::read(r, p_val)?;
                        if let Some(slot) = out.get_mut(i) {
                            *slot = unzigzag(u.wrapping_add(1));
                        }
                        self.value_next = false;
                        i += 1;
                    } else {
                        let run = rice::read(r, p_run)?;
                        let left = (self.remaining - i) as u64;
                        if run > left {
                            return Err(CodecError::Corrupt("zero run longer than the sequence"));
                        }
                        self.run_left = run;
                        self.value_next = true;
                    }
                }
            }
        }
        self.remaining -= out.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(seq: &[i64], coding: SeqCoding) -> Vec<i64> {
        let mut w = BitWriter::new();
        write(&mut w, seq, coding);
        let bytes = w.finish();
        let mut d = SeqDecoder::new(&bytes, coding, seq.len()).unwrap();
        let mut out = vec![0; seq.len()];
        // Odd block sizes exercise runs that straddle blocks.
        for block in out.chunks_mut(7) {
            d.decode_into(block).unwrap();
        }
        out
    }

    #[test]
    fn rare_flips_cost_little_with_rle() {
        let mut seq = vec![0i64; 2000];
        seq[700] = 1;
        seq[1500] = -1;
        let (coding, bits) = plan(&seq);
        assert!(matches!(coding, SeqCoding::Rle { .. }));
        assert!(bits < 80, "{bits}");
        assert_eq!(round_trip(&seq, coding), seq);
    }

    #[test]
    fn one_sided_deltas_use_offset() {
        let seq: Vec<i64> = (0..1000).map(|i| 1 + (i * 7919 % 4)).collect();
        let (coding, _) = plan(&seq);
        assert!(
            matches!(coding, SeqCoding::Offset { base: 1, .. }),
            "{coding:?}"
        );
        assert_eq!(round_trip(&seq, coding), seq);
    }

    #[test]
    fn corrupt_runs_and_counts_are_errors() {
        let p0 = RiceParams {
            k: 0,
            qmax: rice::ESCAPE,
        };
        let coding = SeqCoding::Rle { run: p0, val: p0 };
        let mut w = BitWriter::new();
        rice::write(&mut w, 10, p0);
        let bytes = w.finish();
        let mut d = SeqDecoder::new(&bytes, coding, 5).unwrap();
        assert!(d.decode_into(&mut [0; 5]).is_err());
        assert!(SeqDecoder::new(&[0], SeqCoding::Rice(p0), 9).is_err());
        let mut d = SeqDecoder::new(&[0xff], SeqCoding::Rice(p0), 8).unwrap();
        assert!(d.decode_into(&mut [0; 9]).is_err());
    }

    proptest! {
        #[test]
        fn every_coding_round_trips(seq in prop::collection::vec(prop_oneof![Just(0i64), -3i64..3, any::<i64>()], 0..300)) {
            let base = seq.iter().copied().min().unwrap_or(0);
            let unbounded = |k| RiceParams { k, qmax: rice::ESCAPE };
            let zz_max = seq.iter().map(|&x| zigzag(x)).max().unwrap_or(0);
            let off_max = seq.iter().map(|&x| x.wrapping_sub(base) as u64).max().unwrap_or(0);
            for coding in [
                SeqCoding::Rice(unbounded(0)),
                SeqCoding::Rice(unbounded(5)),
                SeqCoding::Rice(RiceParams::new(3, zz_max)),
                SeqCoding::Offset { base, p: unbounded(2) },
                SeqCoding::Offset { base, p: RiceParams::new(1, off_max) },
                SeqCoding::Rle { run: unbounded(1), val: unbounded(0) },
                plan(&seq).0,
            ] {
                prop_assert_eq!(round_trip(&seq, coding), seq.clone());
            }
        }
    }
}
