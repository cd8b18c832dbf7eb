//! Golomb-Rice codes with an escape for outliers and a per-sequence maximum quotient, and the
//! search for the best parameters.
//!
//! A value `u` with parameter `k` is written as `q = u >> k` zero bits, a one bit, and the low
//! `k` bits of `u`. Two refinements:
//!
//! - Plain Rice codes make an outlier cost `u >> k` bits, which for a 64-bit delta would be
//!   astronomic, so quotients of [`ESCAPE`] or more are instead written as `ESCAPE` zero bits,
//!   6 bits of `bit_length(u) - 1` and then `u` in `bit_length(u)` bits.
//! - When every quotient of a sequence is at most `qmax < ESCAPE`, the quotient `qmax` needs no
//!   terminating one bit (the decoder stops counting zeros at `qmax`). A random walk with steps
//!   -1/0/+1 then costs 1.67 bits per step instead of 2, and a counter with increments 0..=3
//!   costs 2 bits instead of 2.5. `qmax = ESCAPE` means "no maximum, escapes allowed".

use super::bitstream::{BitReader, BitWriter};
use super::error::CodecError;

/// Quotients at or above this are escaped. Keeps every code at most 94 bits.
pub(crate) const ESCAPE: u32 = 24;

/// Largest Rice parameter the format allows.
pub(crate) const MAX_K: u32 = 62;

#[inline(always)]
fn bit_length(u: u64) -> u32 {
    64 - u.leading_zeros()
}

/// Parameters of one Rice-coded sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RiceParams {
    /// Number of low bits written verbatim, `0..=MAX_K`.
    pub(crate) k: u32,
    /// Largest quotient, `0..=ESCAPE`; `ESCAPE` means unbounded (escapes possible).
    pub(crate) qmax: u32,
}

impl RiceParams {
    /// Parameters with `k` for a sequence whose largest value is `max`.
    pub(crate) fn new(k: u32, max: u64) -> Self {
        RiceParams {
            k,
            qmax: (max >> k).min(u64::from(ESCAPE)) as u32,
        }
    }

    /// Validates parameters read from untrusted bytes.
    pub(crate) fn from_bytes(k: u8, qmax: u8) -> Result<Self, CodecError> {
        if u32::from(k) > MAX_K {
            return Err(CodecError::Corrupt("Rice parameter above 62"));
        }
        if u32::from(qmax) > ESCAPE {
            return Err(CodecError::Corrupt("Rice maximum quotient above 24"));
        }
        Ok(RiceParams {
            k: u32::from(k),
            qmax: u32::from(qmax),
        })
    }

    /// The two parameter bytes.
    pub(crate) fn to_bytes(self) -> [u8; 2] {
        [self.k as u8, self.qmax as u8]
    }

    /// Fewest bits any value takes.
    pub(crate) fn min_bits(self) -> u64 {
        u64::from(self.k + self.qmax.min(1))
    }

    /// Bits needed to code `u`, which must respect `qmax`.
    #[inline(always)]
    pub(crate) fn cost(self, u: u64) -> u64 {
        let q = u >> self.k;
        if q < u64::from(self.qmax) {
            q + 1 + u64::from(self.k)
        } else if self.qmax < ESCAPE {
            q + u64::from(self.k)
        } else {
            u64::from(ESCAPE + 6 + bit_length(u))
        }
    }
}

/// Writes `u` with parameters `p` (the caller built `p` from a maximum at least `u`).
#[inline]
pub(crate) fn write(w: &mut BitWriter, u: u64, p: RiceParams) {
    let q = u >> p.k;
    if q < u64::from(p.qmax) {
        // q zeros then a one, in one call.
        w.write_bits(1, q as u32 + 1);
        w.write_bits(u, p.k);
    } else if p.qmax < ESCAPE {
        debug_assert_eq!(q, u64::from(p.qmax));
        w.write_bits(0, p.qmax);
        w.write_bits(u, p.k);
    } else {
        w.write_bits(0, ESCAPE);
        let len = bit_length(u);
        w.write_bits(u64::from(len - 1), 6);
        w.write_bits(u, len);
    }
}

/// Reads a value written by [`write`] with the same parameters.
#[inline(always)]
pub(crate) fn read(r: &mut BitReader<'_>, p: RiceParams) -> Result<u64, CodecError> {
    r.refill();
    let window = r.window();
    let lz = window.leading_zeros();
    let q = lz.min(p.qmax);
    let used = q + u32::from(lz < p.qmax);
    let total = used + p.k;
    if (lz < p.qmax || p.qmax < ESCAPE) && total <= r.avail() {
        // `>> 1 >> (63 - k)` rather than `>> (64 - k)` so that k = 0 needs no branch.
        let low = ((window << used) >> 1) >> (63 - p.k);
        r.consume(total);
        return Ok((u64::from(q) << p.k) | low);
    }
    read_slow(r, p)
}

#[cold]
fn read_slow(r: &mut BitReader<'_>, p: RiceParams) -> Result<u64, CodecError> {
    let lz = r.window().leading_zeros();
    if lz < p.qmax || p.qmax < ESCAPE {
        let q = lz.min(p.qmax);
        let used = q + u32::from(lz < p.qmax);
        if used > r.avail() {
            return Err(CodecError::Truncated);
        }
        r.consume(used);
        let low = r.read_bits(p.k)?;
        return Ok((u64::from(q) << p.k) | low);
    }
    if r.avail() < ESCAPE {
        return Err(CodecError::Truncated);
    }
    r.consume(ESCAPE);
    let len = r.read_bits(6)? as u32 + 1;
    r.read_bits(len)
}

/// Exact cost of coding all `values` with `p`.
pub(crate) fn total_cost(values: &[u64], p: RiceParams) -> u64 {
    values.iter().map(|&u| p.cost(u)).sum()
}

/// The k whose estimated total cost is lowest. Only the bit lengths that occur matter; a
/// chunk has a handful of them. The estimate is in exact integers (the quotient of a
/// length-`len` value is about 1.5 · 2^(len-1-k)), since it runs for every chunk sealed on
/// the write path.
///
/// Only `k <= max_len` (the longest bit length present) is searched: beyond it every value
/// costs `k + 1` in the estimate, which only grows with `k`.
fn estimated_k(hist: &[u64; 65], max_len: u32) -> u32 {
    let mut present = [(0u32, 0u64); 65];
    let mut used = 0;
    for (len, &n) in hist.iter().enumerate() {
        if n > 0 {
            present[used] = (len as u32, n);
            used += 1;
        }
    }
    let present = &present[..used];
    let mut est_best = (0u32, u64::MAX);
    for k in 0..=max_len.min(MAX_K) {
        let mut bits = 0u64;
        for &(len, n) in present {
            let per = if len <= k {
                u64::from(k + 1)
            } else {
                let e = len - 1 - k;
                // floor(1.5 · 2^e): 1, 3, 6, 12, then 24 = ESCAPE and beyond.
                let q = if e == 0 { 1 } else { 3u64 << (e - 1).min(40) };
                if q < u64::from(ESCAPE) {
                    q + 1 + u64::from(k)
                } else {
                    u64::from(ESCAPE + 6 + len)
                }
            };
            bits = bits.saturating_add(per.saturating_mul(n));
        }
        if bits < est_best.1 {
            est_best = (k, bits);
        }
    }
    est_best.0
}

/// The parameters that code `values` in the fewest bits, and that number of bits.
///
/// An exact search over all 63 `k` would cost 63 passes; instead a histogram of bit lengths
/// gives an estimated cost for every `k` (each value taken as 1.5 times the lower power of two
/// of its bit length), and the exact cost is then computed for the estimate's best `k` and its
/// neighbours. Outlier-heavy data (mostly zeros and a few huge values), where a mean would
/// mislead, is handled because the estimate models the escape code too.
///
/// Runs for every column of every chunk the head seals, on the write path: one pass builds the
/// histogram and the maximum, and no `k` above the maximum's bit length is costed (there every
/// value has quotient 0 and `qmax` is 0, so a value costs exactly `k` bits, least at the
/// maximum's bit length).
pub(crate) fn best(values: &[u64]) -> (RiceParams, u64) {
    if values.is_empty() {
        return (RiceParams { k: 0, qmax: 0 }, 0);
    }
    let mut hist = [0u64; 65];
    let mut max = 0u64;
    for &u in values {
        hist[bit_length(u) as usize] += 1;
        max = max.max(u);
    }
    let max_len = bit_length(max);
    let est = estimated_k(&hist, max_len);
    // The estimate ignores the saving of a bounded quotient, which favours a slightly larger
    // k; hence the window reaches two steps up.
    let lo = est.saturating_sub(1);
    let hi = (est + 2).min(MAX_K).min(max_len.max(lo));
    let mut best = (RiceParams::new(lo, max), u64::MAX);
    for k in lo..=hi {
        let p = RiceParams::new(k, max);
        let c = total_cost(values, p);
        if c < best.1 {
            best = (p, c);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escape_keeps_outliers_cheap() {
        let p0 = RiceParams::new(0, u64::MAX);
        let p62 = RiceParams::new(62, u64::MAX);
        let mut w = BitWriter::new();
        write(&mut w, u64::MAX, p0);
        write(&mut w, 0, p0);
        write(&mut w, 5, p62);
        assert_eq!(w.bit_len(), p0.cost(u64::MAX) + p0.cost(0) + p62.cost(5));
        let bytes = w.finish();
        let mut r = BitReader::new(&bytes);
        assert_eq!(read(&mut r, p0), Ok(u64::MAX));
        assert_eq!(read(&mut r, p0), Ok(0));
        assert_eq!(read(&mut r, p62), Ok(5));
    }

    /// The estimate as first written, in floating point: the integer version must pick the
    /// same k for any distribution of bit lengths.
    fn estimated_k_float(values: &[u64]) -> u32 {
        let mut hist = [0u64; 65];
        for &u in values {
            hist[bit_length(u) as usize] += 1;
        }
        let mut est_best = (0u32, f64::INFINITY);
        for k in 0..=MAX_K {
            let mut bits = 0.0f64;
            for (len, &n) in hist.iter().enumerate() {
                if n == 0 {
                    continue;
                }
                let len = len as u32;
                let per = if len <= k {
                    f64::from(k + 1)
                } else {
                    let q = (1.5 * f64::from(len - 1 - k).exp2()).floor();
                    if q < f64::from(ESCAPE) {
                        q + 1.0 + f64::from(k)
                    } else {
                        f64::from(ESCAPE + 6 + len)
                    }
                };
                bits += per * n as f64;
            }
            if bits < est_best.1 {
                est_best = (k, bits);
            }
        }
        est_best.0
    }

    proptest::proptest! {
        #[test]
        fn integer_estimate_matches_the_float_one(
            shift in 0u32..64,
            values in proptest::collection::vec(proptest::num::u64::ANY, 1..200),
        ) {
            let values: Vec<u64> = values.into_iter().map(|v| v >> shift).collect();
            let mut hist = [0u64; 65];
            for &u in &values {
                hist[bit_length(u) as usize] += 1;
            }
            let max_len = values.iter().map(|&u| bit_length(u)).max().unwrap_or(0);
            // The float estimate searches every k; the integer one stops at the longest value.
            prop_assert_eq!(estimated_k(&hist, max_len), estimated_k_float(&values));
        }
    }

    #[test]
    fn bounded_quotients_save_the_terminator() {
        // Zigzagged steps of a -1/0/+1 walk.
        let walk: Vec<u64> = (0..300).map(|i| i % 3).collect();
        let (p, bits) = best(&walk);
        assert_eq!(p, RiceParams { k: 0, qmax: 2 });
        assert_eq!(bits, 500);
        // Counter increments 0..=3.
        let inc: Vec<u64> = (0..400).map(|i| i % 4).collect();
        assert_eq!(best(&inc).1, 800);
    }

    #[test]
    fn best_k_is_small_for_mostly_zeros_with_an_outlier() {
        let mut v = vec![0u64; 1000];
        v[500] = 1 << 60;
        let (p, c) = best(&v);
        assert_eq!(p.k, 0);
        assert!(c < 1100);
    }

    #[test]
    fn truncated_codes_are_errors() {
        let p = |k: u32| RiceParams { k, qmax: ESCAPE };
        let truncated = Err(CodecError::Truncated);
        assert_eq!(read(&mut BitReader::new(&[]), p(0)), truncated);
        assert_eq!(read(&mut BitReader::new(&[0, 0]), p(3)), truncated);
        assert_eq!(read(&mut BitReader::new(&[0, 0, 0, 0xff]), p(3)), truncated);
        assert_eq!(read(&mut BitReader::new(&[0x80]), p(20)), truncated);
        let bounded = RiceParams { k: 7, qmax: 2 };
        assert_eq!(read(&mut BitReader::new(&[0x00]), bounded), truncated);
        assert!(RiceParams::from_bytes(63, 0).is_err());
        assert!(RiceParams::from_bytes(0, 25).is_err());
    }

    proptest! {
        #[test]
        fn round_trip(values in prop::collection::vec(any::<u64>().prop_map(|u| u >> (u % 64)), 0..300), k in 0u32..=MAX_K) {
            let max = values.iter().copied().max().unwrap_or(0);
            for p in [RiceParams::new(k, max), best(&values).0, RiceParams { k, qmax: ESCAPE }] {
                let mut w = BitWriter::new();
                for &u in &values {
                    write(&mut w, u, p);
                }
                prop_assert_eq!(w.bit_len(), total_cost(&values, p));
                let bytes = w.finish();
                let mut r = BitReader::new(&bytes);
                for &u in &values {
                    prop_assert_eq!(read(&mut r, p), Ok(u));
                }
            }
        }

        #[test]
        fn best_equals_the_search_over_every_k(values in prop::collection::vec(any::<u64>().prop_map(|u| u >> (u % 64)), 1..200)) {
            // `best` as first written: the estimate over all k, then exact costs of its
            // window, never cut at the longest value.
            let max = values.iter().copied().max().unwrap_or(0);
            let est = estimated_k_float(&values);
            let mut full = (RiceParams::new(est.saturating_sub(1), max), u64::MAX);
            for k in est.saturating_sub(1)..=(est + 2).min(MAX_K) {
                let p = RiceParams::new(k, max);
                let c = total_cost(&values, p);
                if c < full.1 {
                    full = (p, c);
                }
            }
            prop_assert_eq!(best(&values), full);
        }

        #[test]
        fn best_k_is_close_to_exhaustive(values in prop::collection::vec(any::<u64>().prop_map(|u| u >> (u % 64)), 1..200)) {
            let (_, c) = best(&values);
            let max = values.iter().copied().max().unwrap_or(0);
            let exhaustive = (0..=MAX_K).map(|k| total_cost(&values, RiceParams::new(k, max))).min().unwrap_or(0);
            // The estimate may miss the optimum, but never by much.
            prop_assert!(c as f64 <= exhaustive as f64 * 1.25 + 8.0, "{c} vs {exhaustive}");
        }
    }
}
