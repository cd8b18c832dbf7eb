//! A matrix series' points, `[t,"v"],[t,"v"],...`, formatted through a stack buffer.
//!
//! A point is half a dozen short writes (brackets, two numbers, quotes). Made into the answer's
//! `Vec` one by one, each number went through a length check and a `memcpy` call of a few
//! bytes, which took more time than formatting: on a day of one series (8 640 points) the
//! copies were a quarter of the node's CPU per query and formatting another third. Here the
//! common points (non-negative timestamps, values [`short_decimal`] can write) are composed
//! byte by byte in a 4 KiB buffer on the stack, which goes into the answer in one copy when it
//! fills; any other point is written by [`push_point`] after the buffer is emptied, so the
//! output is byte for byte the same.
//!
//! What a series repeats is not formatted again: successive timestamps share all but their
//! last two digits, and a gauge's values recur (a sensor's reading moves within a small range),
//! so the decimal form of recent values is looked up by their bits. Finding that form takes a
//! floating-point division, the slowest step of a point.

use super::json::{push_point, short_decimal, short_decimal_with, takes_short_decimal};

/// Size of the stack buffer.
const BUF: usize = 4096;
/// Most bytes a fast-path point takes with its separator: `,[` + 20 digits of seconds + `.` +
/// 3 digits + `,"` + sign + `0.000` + 15 digits + `"]`, rounded up.
const MAX_POINT: usize = 64;
/// Slots of the table of recent values' decimal forms (a power of two).
const VALUE_SLOTS: usize = 256;

/// Two ASCII digits for every number below 100.
const DIGIT_PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Appends `points` as the elements of a JSON array (without the brackets), each as
/// Prometheus writes it.
pub(super) fn push_points(out: &mut Vec<u8>, points: &[(i64, f64)]) {
    let mut w = PointWriter::new();
    let mut values = ValueForms::new();
    for (i, &(t, v)) in points.iter().enumerate() {
        if w.len > BUF - MAX_POINT {
            w.flush(out);
        }
        match values.decimal(v).filter(|_| t >= 0) {
            Some((n, k)) => w.point(i > 0, t as u64, n, k),
            None => {
                w.flush(out);
                if i > 0 {
                    out.push(b',');
                }
                push_point(out, t, v);
            }
        }
    }
    w.flush(out);
}

/// The decimal forms `(n, k)` of recently written values, direct-mapped by their bits.
struct ValueForms {
    /// `(bits, n, k)`. Every slot starts out as positive zero's entry, `0` (which is
    /// correct: Prometheus writes `0`, and an empty slot needs no mark of its own).
    slots: [(u64, i64, usize); VALUE_SLOTS],
    /// Decimals of the last value that had a short form.
    decimals: usize,
}

impl ValueForms {
    fn new() -> ValueForms {
        ValueForms {
            slots: [(0.0f64.to_bits(), 0, 0); VALUE_SLOTS],
            decimals: 0,
        }
    }

    /// What `short_decimal(v)` gives, when the value takes that form at all.
    #[inline(always)]
    fn decimal(&mut self, v: f64) -> Option<(i64, usize)> {
        let bits = v.to_bits();
        let slot = (bits.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as usize % VALUE_SLOTS;
        let (known, n, k) = self.slots[slot];
        if known == bits {
            return Some((n, k));
        }
        if !takes_short_decimal(v) {
            return None;
        }
        // A series' values mostly have the same number of decimals: try the previous value's
        // first, which is the shortest form unless it ends in a zero.
        let (n, k) = short_decimal_with(v, self.decimals)
            .filter(|&(n, k)| k == 0 || n % 10 != 0)
            .or_else(|| short_decimal(v))?;
        self.decimals = k;
        self.slots[slot] = (bits, n, k);
        Some((n, k))
    }
}

struct PointWriter {
    buf: [u8; BUF],
    len: usize,
    /// The seconds of the last timestamp written divided by 100 (`u64::MAX` before the first),
    /// with its digits: successive timestamps mostly share all but their last two digits,
    /// which are then copied.
    hundreds: u64,
    hundreds_digits: [u8; 24],
    hundreds_len: usize,
}

impl PointWriter {
    fn new() -> PointWriter {
        PointWriter {
            buf: [0; BUF],
            len: 0,
            hundreds: u64::MAX,
            hundreds_digits: [0; 24],
            hundreds_len: 0,
        }
    }

    fn flush(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.buf[..self.len]);
        self.len = 0;
    }

    /// `[seconds.millis,"value"]` with the value `n·10^-k`, preceded by a comma if `sep`.
    /// The caller has left [`MAX_POINT`] bytes of room.
    ///
    /// The write position lives in a local variable until the end: kept in the struct, every
    /// byte written was a load and a store of it, one after the other.
    #[inline(always)]
    fn point(&mut self, sep: bool, t_ms: u64, n: i64, k: usize) {
        let PointWriter {
            buf,
            len,
            hundreds,
            hundreds_digits,
            hundreds_len,
        } = self;
        let mut p = *len;
        if sep {
            buf[p] = b',';
            p += 1;
        }
        buf[p] = b'[';
        p += 1;
        let s = t_ms / 1000;
        if s < 100 {
            p = put_uint(buf, p, s);
        } else {
            if s / 100 != *hundreds {
                *hundreds = s / 100;
                *hundreds_len = put_uint(hundreds_digits, 0, *hundreds);
            }
            // Always all 24 bytes (the room is there), so the copy is a fixed-size move.
            buf[p..p + 24].copy_from_slice(hundreds_digits);
            p = put_fixed(buf, p + *hundreds_len, s % 100, 2);
        }
        // Prometheus' MarshalTimestamp leaves out a zero fraction and keeps three digits
        // otherwise (`1.5` → `1.500`).
        let frac = t_ms % 1000;
        if frac != 0 {
            buf[p] = b'.';
            p = put_fixed(buf, p + 1, frac, 3);
        }
        buf[p] = b',';
        buf[p + 1] = b'"';
        p += 2;
        if n < 0 {
            buf[p] = b'-';
            p += 1;
        }
        p = put_decimal(buf, p, n.unsigned_abs(), k);
        buf[p] = b'"';
        buf[p + 1] = b']';
        *len = p + 2;
    }
}

/// `n` in decimal with a point before its last `k` digits (`0.0…` when it has no more than
/// `k`), as `push_short_decimal` writes it, at `p`; returns the position after it.
#[inline(always)]
fn put_decimal(buf: &mut [u8], p: usize, n: u64, k: usize) -> usize {
    // Constant divisors, which compile to multiplications; `short_decimal` gives at most four
    // decimals.
    let (int, frac) = match k {
        0 => return put_uint(buf, p, n),
        1 => (n / 10, n % 10),
        2 => (n / 100, n % 100),
        3 => (n / 1_000, n % 1_000),
        _ => (n / 10_000, n % 10_000),
    };
    // An integer part of zero is written `0`, as the leading zero of `0.05` should be.
    let p = put_uint(buf, p, int);
    buf[p] = b'.';
    put_fixed(buf, p + 1, frac, k)
}

/// `n` in decimal at `p`; returns the position after it.
#[inline(always)]
fn put_uint(buf: &mut [u8], p: usize, n: u64) -> usize {
    // Readings mostly have one or two digits before the point; those skip the digit count.
    if n < 10 {
        buf[p] = b'0' + n as u8;
        return p + 1;
    }
    if n < 100 {
        let pair = n as usize * 2;
        buf[p..p + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
        return p + 2;
    }
    let width = n.checked_ilog10().map_or(1, |l| l as usize + 1);
    put_fixed(buf, p, n, width)
}

/// The last `width` decimal digits of `n`, zero-padded on the left, at `p`; returns the
/// position after them.
#[inline(always)]
fn put_fixed(buf: &mut [u8], p: usize, mut n: u64, width: usize) -> usize {
    let end = p + width;
    let mut at = end;
    while at >= p + 2 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        at -= 2;
        buf[at..at + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    }
    if at > p {
        buf[at - 1] = b'0' + (n % 10) as u8;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_by_one(points: &[(i64, f64)]) -> String {
        let mut out = Vec::new();
        for (i, &(t, v)) in points.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_point(&mut out, t, v);
        }
        String::from_utf8(out).unwrap()
    }

    fn buffered(points: &[(i64, f64)]) -> String {
        let mut out = b"prefix".to_vec();
        push_points(&mut out, points);
        String::from_utf8(out).unwrap().split_off(6)
    }

    #[test]
    fn writes_points_as_prometheus_does() {
        let points = [
            (1_700_000_000_000, 21.5),
            (1_700_000_010_500, -0.0625),
            (1_700_000_020_007, 0.0001),
            (0, 3.0),
            (999, 1e15),
            (-1500, 2.5),
            (10, f64::NAN),
            (11, f64::INFINITY),
            (12, 0.0),
            (13, 1e-7),
            (14, 123_456_789.125),
        ];
        assert_eq!(
            buffered(&points),
            "[1700000000,\"21.5\"],[1700000010.500,\"-0.0625\"],[1700000020.007,\"0.0001\"],\
             [0,\"3\"],[0.999,\"1000000000000000\"],[-1.500,\"2.5\"],[0.010,\"NaN\"],\
             [0.011,\"+Inf\"],[0.012,\"0\"],[0.013,\"1e-07\"],[0.014,\"123456789.125\"]"
        );
        assert_eq!(buffered(&points), one_by_one(&points));
        assert_eq!(buffered(&[]), "");
    }

    #[test]
    fn a_long_series_crosses_the_buffer_many_times() {
        let points: Vec<(i64, f64)> = (0..10_000i64)
            .map(|i| (1_700_000_000_000 + i * 10_007, (i as f64) * 0.37 - 1200.0))
            .collect();
        assert_eq!(buffered(&points), one_by_one(&points));
    }

    proptest::proptest! {
        #[test]
        fn buffered_points_match_point_by_point(
            raw in proptest::collection::vec(
                (proptest::num::i64::ANY, proptest::num::u64::ANY, -1_000_000i64..1_000_000, 0u32..6),
                0..400,
            ),
        ) {
            // Half the values are short decimals (the fast path), half any bit pattern.
            let points: Vec<(i64, f64)> = raw
                .iter()
                .enumerate()
                .map(|(i, &(t, bits, n, k))| {
                    let t = if i % 3 == 0 { t } else { t.rem_euclid(4_000_000_000_000) };
                    let v = if i % 2 == 0 { f64::from_bits(bits) } else { n as f64 / 10f64.powi(k as i32) };
                    (t, v)
                })
                .collect();
            proptest::prop_assert_eq!(buffered(&points), one_by_one(&points));
        }
    }
}
