//! Decimal encoding: values that are short decimals (sensor readings such as 21.3, counters
//! such as 12345.6, integers such as 1200000) stored as integer mantissas with one exponent
//! per chunk, in the spirit of VictoriaMetrics' `lib/decimal` but exact.
//!
//! VictoriaMetrics converts floats to (mantissa, exponent) approximately; here a value is only
//! accepted if the conversion back is bit-exact: for each value `v` the encoder looks for the
//! largest exponent `e` in `-18..=22` and an integer `m` with `|m| < 2^53` such that `v` is
//! exactly `m as f64 / 10^-e` (`e < 0`) or `m as f64 * 10^e` (`e >= 0`). Both are single
//! correctly rounded IEEE operations on exact operands (`10^0..10^22` are exact doubles), so
//! rescaling every mantissa to the chunk's smallest exponent `E` (multiplying `m` by
//! `10^(e-E)`, checked) denotes the same real number and rounds to the same double. The
//! encoder still decodes everything it wrote and compares bits, and gives up if anything
//! differs. NaN, infinities, -0.0, mantissas of 2^53 or more and overflowing rescales make the
//! encoding not applicable; the chunk is then Gorilla.
//!
//! Body layout (after the common header):
//!
//! ```text
//! exponent        i8 byte, -18..=22
//! value column    column parameters (see `column`) for the n mantissas
//! m0              zigzag varint: first mantissa
//! time kind       byte: 0 = regular, 1 = coded
//! [coded]         time column parameters (first integer is mint), then
//!                 uvarint: byte length of the value section
//! value section   bits of the value column's items
//! [coded]         time section: bits of the time column's items
//! ```
//!
//! Regular timestamps cost nothing: the step is `(maxt - mint) / (count - 1)` from the header.

use super::bitstream::BitWriter;
use super::chunk::{decode_chunk, write_header, Encoding};
use super::column::{ColumnDecoder, ColumnParams, ColumnPlan};
use super::error::CodecError;
use super::varint::{put_uvarint, put_varint, ByteReader};
use crate::storage::model::Sample;

const MIN_EXP: i32 = -18;
const MAX_EXP: i32 = 22;
/// Mantissas must convert to f64 exactly.
const MANTISSA_LIMIT: i64 = 1 << 53;

const TIME_REGULAR: u8 = 0;
const TIME_CODED: u8 = 1;

/// 10^0 ..= 10^22, all exactly representable.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

#[inline(always)]
fn pow10(e: i32) -> f64 {
    POW10.get(e.unsigned_abs() as usize).copied().unwrap_or(1.0)
}

/// The value `m * 10^e` denotes, computed the way the decoder does.
#[inline(always)]
fn from_decimal(m: i64, e: i32) -> f64 {
    if e < 0 {
        m as f64 / pow10(e)
    } else {
        m as f64 * pow10(e)
    }
}

fn exact(m: i64, e: i32, v: f64) -> bool {
    m.abs() < MANTISSA_LIMIT && from_decimal(m, e).to_bits() == v.to_bits()
}

/// `(m, e)` with the largest `e` that represents `v` exactly, or `None`.
fn to_decimal(v: f64) -> Option<(i64, i32)> {
    if v == 0.0 {
        // -0.0 would come back as +0.0.
        return (!v.is_sign_negative()).then_some((0, MAX_EXP));
    }
    if !v.is_finite() {
        return None;
    }
    if v.fract() == 0.0 {
        if v.abs() < 9.0e18 {
            let (mut m, mut e) = (v as i64, 0);
            while e < MAX_EXP && m % 10 == 0 {
                m /= 10;
                e += 1;
            }
            if exact(m, e, v) {
                return Some((m, e));
            }
        }
        // Integers too large for the loop above (or whose mantissa stays >= 2^53).
        return (0..=MAX_EXP).rev().find_map(|e| {
            let m = (v / pow10(e)).round();
            (m.abs() < MANTISSA_LIMIT as f64 && exact(m as i64, e, v)).then_some((m as i64, e))
        });
    }
    (1..=-MIN_EXP).find_map(|k| {
        let m = (v * pow10(k)).round();
        (m.abs() < MANTISSA_LIMIT as f64 && exact(m as i64, -k, v)).then_some((m as i64, -k))
    })
}

/// Mantissas at the common exponent, or `None` if some value is not representable.
fn to_mantissas(samples: &[Sample]) -> Option<(Vec<i64>, i32)> {
    let mut parts = Vec::with_capacity(samples.len());
    let mut common = MAX_EXP;
    let mut any_nonzero = false;
    for s in samples {
        let (m, e) = to_decimal(s.v)?;
        if m != 0 {
            any_nonzero = true;
            common = common.min(e);
        }
        parts.push((m, e));
    }
    if !any_nonzero {
        common = 0;
    }
    let mut ms = Vec::with_capacity(samples.len());
    for (m, e) in parts {
        if m == 0 {
            ms.push(0);
            continue;
        }
        let factor = 10i64.checked_pow(u32::try_from(e - common).ok()?)?;
        let scaled = m.checked_mul(factor)?;
        if scaled.abs() >= MANTISSA_LIMIT {
            return None;
        }
        ms.push(scaled);
    }
    Some((ms, common))
}

/// Encodes `samples` (validated by the caller: 1..=MAX samples, increasing timestamps) as a
/// complete decimal chunk, or `None` if some value is not representable or — which would be a
/// bug — the result does not decode to exactly the input.
pub(crate) fn encode(samples: &[Sample]) -> Option<Vec<u8>> {
    let first = samples.first()?;
    let last = samples.last()?;
    let n = samples.len();
    let count = u32::try_from(n).ok()?;
    let (ms, exponent) = to_mantissas(samples)?;
    let values = ColumnPlan::new(&ms);

    let ts: Vec<i64> = samples.iter().map(|s| s.t).collect();
    let step = ts.get(1).map(|t1| t1.wrapping_sub(first.t));
    let regular = ts.windows(2).all(|w| Some(w[1].wrapping_sub(w[0])) == step);
    let times = (!regular).then(|| ColumnPlan::new(&ts));

    let mut w = BitWriter::with_capacity((values.bits / 8) as usize + 8);
    values.write_items(&mut w);
    let value_section = w.finish();

    let mut out = Vec::with_capacity(value_section.len() + 32);
    write_header(&mut out, Encoding::Decimal, count, first.t, last.t);
    out.push(exponent as i8 as u8);
    values.params.write(&mut out, n);
    put_varint(&mut out, ms.first().copied().unwrap_or(0));
    match &times {
        None => {
            out.push(TIME_REGULAR);
            out.extend_from_slice(&value_section);
        }
        Some(times) => {
            out.push(TIME_CODED);
            times.params.write(&mut out, n);
            put_uvarint(&mut out, value_section.len() as u64);
            out.extend_from_slice(&value_section);
            let mut w = BitWriter::with_capacity((times.bits / 8) as usize + 8);
            times.write_items(&mut w);
            out.extend_from_slice(&w.finish());
        }
    }

    let mut check = Vec::with_capacity(n);
    match decode_chunk(&out, &mut check) {
        Ok(()) if check.as_slice() == samples => Some(out),
        result => {
            tracing::error!(
                ?result,
                samples = n,
                "decimal chunk failed its round-trip check; falling back to Gorilla"
            );
            None
        }
    }
}

/// Where a decimal chunk's timestamps come from.
#[derive(Debug, Clone)]
enum Times<'a> {
    Regular { next: i64, step: i64 },
    Coded(ColumnDecoder<'a>),
}

/// Decodes a decimal body a block at a time.
#[derive(Debug, Clone)]
pub(crate) struct DecimalDecoder<'a> {
    values: ColumnDecoder<'a>,
    times: Times<'a>,
    exponent: i32,
    n: usize,
    produced: usize,
    last_t: i64,
    maxt: i64,
}

impl<'a> DecimalDecoder<'a> {
    /// Parses the body of a decimal chunk whose header says `n` samples in `[mint, maxt]`
    /// (already validated: `n >= 1`, `maxt - mint >= n - 1`).
    pub(crate) fn new(body: &'a [u8], n: u32, mint: i64, maxt: i64) -> Result<Self, CodecError> {
        let n_us = n as usize;
        let mut r = ByteReader::new(body);
        let exponent = i32::from(r.u8()? as i8);
        if !(MIN_EXP..=MAX_EXP).contains(&exponent) {
            return Err(CodecError::Corrupt("decimal exponent out of range"));
        }
        let vparams = ColumnParams::read(&mut r, n_us)?;
        let m0 = r.varint()?;
        let (values, times) = match r.u8()? {
            TIME_REGULAR => {
                let span = maxt.wrapping_sub(mint) as u64;
                let step = if n > 1 {
                    let gaps = u64::from(n - 1);
                    if !span.is_multiple_of(gaps) {
                        return Err(CodecError::Corrupt(
                            "regular timestamps do not divide the time range",
                        ));
                    }
                    (span / gaps) as i64
                } else {
                    0
                };
                let values = ColumnDecoder::new(vparams, r.rest(), m0, n_us)?;
                (values, Times::Regular { next: mint, step })
            }
            TIME_CODED => {
                let tparams = ColumnParams::read(&mut r, n_us)?;
                let vlen = r.uvarint()?;
                let vsection = r.take(vlen)?;
                let values = ColumnDecoder::new(vparams, vsection, m0, n_us)?;
                let times = ColumnDecoder::new(tparams, r.rest(), mint, n_us)?;
                (values, Times::Coded(times))
            }
            _ => return Err(CodecError::Corrupt("unknown decimal time kind")),
        };
        Ok(DecimalDecoder {
            values,
            times,
            exponent,
            n: n_us,
            produced: 0,
            last_t: mint,
            maxt,
        })
    }

    /// Samples not decoded yet.
    #[inline]
    pub(crate) fn remaining(&self) -> usize {
        self.n - self.produced
    }

    /// Fills `ts`/`vs` (equal lengths, at most `remaining()`).
    #[inline]
    pub(crate) fn fill(&mut self, ts: &mut [i64], vs: &mut [f64]) -> Result<(), CodecError> {
        let len = ts.len().min(vs.len());
        let (ts, vs) = (&mut ts[..len], &mut vs[..len]);
        if len == 0 {
            return Ok(());
        }
        // `ts` doubles as scratch for the mantissas before it receives the timestamps.
        self.values.decode_into(ts)?;
        if self.exponent < 0 {
            let div = pow10(self.exponent);
            for (v, &m) in vs.iter_mut().zip(ts.iter()) {
                *v = m as f64 / div;
            }
        } else {
            let mul = pow10(self.exponent);
            for (v, &m) in vs.iter_mut().zip(ts.iter()) {
                *v = m as f64 * mul;
            }
        }
        match &mut self.times {
            Times::Regular { next, step } => {
                let (mut t, step) = (*next, *step);
                for slot in ts.iter_mut() {
                    *slot = t;
                    t = t.wrapping_add(step);
                }
                *next = t;
            }
            Times::Coded(col) => {
                col.decode_into(ts)?;
                // The first sample of the chunk has no predecessor to compare with.
                let skip = usize::from(self.produced == 0);
                let mut prev = if skip == 1 { ts[0] } else { self.last_t };
                let mut bad = false;
                for &t in &ts[skip..] {
                    bad |= t <= prev;
                    prev = t;
                }
                if bad {
                    return Err(self.non_increasing(ts));
                }
            }
        }
        self.produced += len;
        self.last_t = ts[len - 1];
        if self.produced == self.n && self.last_t != self.maxt {
            return Err(CodecError::Corrupt(
                "last timestamp differs from the header's maxt",
            ));
        }
        Ok(())
    }

    #[cold]
    fn non_increasing(&self, ts: &[i64]) -> CodecError {
        let mut prev = self.last_t;
        for (i, &t) in ts.iter().enumerate() {
            let index = self.produced + i;
            if index > 0 && t <= prev {
                return CodecError::NonIncreasingTimestamps { index, prev, t };
            }
            prev = t;
        }
        CodecError::Corrupt("non-increasing timestamps")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_conversion_is_exact_or_refused() {
        assert_eq!(to_decimal(21.3), Some((213, -1)));
        assert_eq!(to_decimal(1_200_000.0), Some((12, 5)));
        assert_eq!(to_decimal(0.0), Some((0, MAX_EXP)));
        assert_eq!(to_decimal(1e20), Some((1, 20)));
        assert_eq!(to_decimal(-0.0), None);
        assert_eq!(to_decimal(f64::NAN), None);
        assert_eq!(to_decimal(f64::INFINITY), None);
        assert_eq!(to_decimal(f64::MIN_POSITIVE), None);
        assert_eq!(to_decimal(1e300), None);
        // 0.1 + 0.2 is 0.30000000000000004: 17 digits, a mantissa beyond 2^53.
        assert_eq!(to_decimal(0.1 + 0.2), None);
        assert_eq!(to_decimal(0.3), Some((3, -1)));
        let (m, e) = to_decimal(123.456_789_012_345).unwrap();
        assert_eq!(
            from_decimal(m, e).to_bits(),
            123.456_789_012_345f64.to_bits()
        );
        // 2^60 is the double nearest to 1152921504606847 * 10^3, so that represents it.
        let big = (1u64 << 60) as f64;
        let (m, e) = to_decimal(big).unwrap();
        assert_eq!((m, e), (1_152_921_504_606_847, 3));
        assert_eq!(from_decimal(m, e).to_bits(), big.to_bits());
    }

    #[test]
    fn mixed_scales_share_the_smallest_exponent() {
        let s = [
            Sample::new(1, 1_200_000.0),
            Sample::new(2, 0.25),
            Sample::new(3, 7.0),
        ];
        let (ms, e) = to_mantissas(&s).unwrap();
        assert_eq!((ms, e), (vec![120_000_000, 25, 700], -2));
        // 1e15 at scale 10^-2 needs a mantissa beyond 2^53.
        assert!(to_mantissas(&[Sample::new(1, 1e15), Sample::new(2, 0.25)]).is_none());
    }
}
