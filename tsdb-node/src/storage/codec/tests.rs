//! Chunk-level tests: edge cases, property tests, robustness against corrupt bytes.

use super::*;
use crate::storage::model::Sample;
use proptest::prelude::*;

fn round_trip(samples: &[Sample]) -> Vec<u8> {
    let bytes = encode_chunk(samples).expect("encode");
    let mut out = Vec::new();
    decode_chunk(&bytes, &mut out).expect("decode");
    assert_eq!(out, samples);
    let iterated: Vec<Sample> = ChunkIter::new(&bytes)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(iterated, samples);
    let meta = chunk_meta(&bytes).unwrap();
    assert_eq!(meta.count as usize, samples.len());
    assert_eq!(meta.mint, samples[0].t);
    assert_eq!(meta.maxt, samples[samples.len() - 1].t);
    bytes
}

fn samples_from(ts: &[i64], vs: &[f64]) -> Vec<Sample> {
    ts.iter()
        .zip(vs)
        .map(|(&t, &v)| Sample::new(t, v))
        .collect()
}

fn aggregate_bits(a: &Aggregate) -> (u64, u64, u64, u64, Option<Sample>, Option<Sample>) {
    (
        a.count,
        a.sum.to_bits(),
        a.min.to_bits(),
        a.max.to_bits(),
        a.first,
        a.last,
    )
}

#[test]
fn single_samples_round_trip() {
    for v in [
        0.0,
        -0.0,
        1.5,
        f64::NAN,
        f64::INFINITY,
        f64::MIN_POSITIVE / 3.0,
        f64::MAX,
    ] {
        for t in [i64::MIN, -1, 0, i64::MAX] {
            round_trip(&[Sample::new(t, v)]);
        }
    }
}

#[test]
fn extreme_timestamps_and_huge_deltas_round_trip() {
    let ts = [i64::MIN, i64::MIN + 1, -5, 0, 7, i64::MAX - 1, i64::MAX];
    let vs = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0];
    round_trip(&samples_from(&ts, &vs));
    round_trip(&samples_from(&[i64::MIN, i64::MAX], &[0.5, 0.25]));
    round_trip(&samples_from(
        &[i64::MIN, 0, i64::MAX],
        &[f64::NAN, -0.0, 1e300],
    ));
    // Regular steps spanning the whole range are a regular decimal chunk.
    let step = i64::MAX / 2;
    let ts = [i64::MIN + 1, i64::MIN + 1 + step, i64::MIN + 1 + 2 * step];
    let bytes = round_trip(&samples_from(&ts, &[1.0, 1.1, 1.2]));
    assert_eq!(chunk_meta(&bytes).unwrap().encoding, Encoding::Decimal);
}

#[test]
fn special_floats_round_trip_bitwise() {
    let vs = [
        f64::NAN,
        f64::from_bits(0x7ff0_0000_0000_0002), // Prometheus stale marker
        f64::from_bits(0xfff8_dead_beef_0001), // negative NaN with payload
        -0.0,
        0.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MIN_POSITIVE / 1024.0, // subnormal
        f64::from_bits(1),
        0.1 + 0.2,
        f64::MAX,
        f64::MIN,
        1e300,
        -1e-300,
    ];
    let ts: Vec<i64> = (0..vs.len() as i64)
        .map(|i| 1_700_000_000_000 + i * 15_000)
        .collect();
    let bytes = round_trip(&samples_from(&ts, &vs));
    assert_eq!(chunk_meta(&bytes).unwrap().encoding, Encoding::Gorilla);
}

#[test]
fn decimal_is_chosen_for_decimal_data_and_gorilla_otherwise() {
    let ts: Vec<i64> = (0..500).map(|i| 1_000 + i * 10_000).collect();
    let dec: Vec<f64> = (0..500).map(|i| f64::from(200 + (i % 7)) / 10.0).collect();
    let bytes = round_trip(&samples_from(&ts, &dec));
    assert_eq!(chunk_meta(&bytes).unwrap().encoding, Encoding::Decimal);
    let mut with_nan = dec.clone();
    with_nan[100] = f64::NAN;
    let bytes = round_trip(&samples_from(&ts, &with_nan));
    assert_eq!(chunk_meta(&bytes).unwrap().encoding, Encoding::Gorilla);
    // Irregular timestamps and mixed scales stay decimal.
    let ts2: Vec<i64> = (0..500).map(|i| i * 10_000 + (i * 7919) % 37).collect();
    let mixed: Vec<f64> = (0..500)
        .map(|i| {
            if i % 50 == 0 {
                1_200_000.0
            } else {
                0.25 * f64::from(i)
            }
        })
        .collect();
    let bytes = round_trip(&samples_from(&ts2, &mixed));
    assert_eq!(chunk_meta(&bytes).unwrap().encoding, Encoding::Decimal);
}

#[test]
fn invalid_input_is_rejected() {
    assert_eq!(encode_chunk(&[]), Err(CodecError::Empty));
    let dup = [Sample::new(5, 1.0), Sample::new(5, 2.0)];
    assert_eq!(
        encode_chunk(&dup),
        Err(CodecError::NonIncreasingTimestamps {
            index: 1,
            prev: 5,
            t: 5
        })
    );
    let back = [
        Sample::new(5, 1.0),
        Sample::new(6, 1.0),
        Sample::new(4, 1.0),
    ];
    assert!(matches!(
        encode_chunk(&back),
        Err(CodecError::NonIncreasingTimestamps { index: 2, .. })
    ));
    let too_many: Vec<Sample> = (0..=MAX_CHUNK_SAMPLES as i64)
        .map(|i| Sample::new(i, 0.0))
        .collect();
    assert!(matches!(
        encode_chunk(&too_many),
        Err(CodecError::TooManySamples { .. })
    ));
    let max: Vec<Sample> = (0..MAX_CHUNK_SAMPLES as i64)
        .map(|i| Sample::new(i, (i % 3) as f64))
        .collect();
    round_trip(&max);
}

#[test]
fn corrupt_headers_are_rejected() {
    assert_eq!(chunk_meta(&[]), Err(CodecError::Truncated));
    assert_eq!(chunk_meta(&[9, 1, 0, 0]), Err(CodecError::BadEncoding(9)));
    assert!(matches!(
        chunk_meta(&[1, 0, 0, 0]),
        Err(CodecError::CountOutOfRange { count: 0, .. })
    ));
    // count = 65537
    assert!(matches!(
        chunk_meta(&[1, 0x81, 0x80, 0x04, 0, 0]),
        Err(CodecError::CountOutOfRange { .. })
    ));
    // two samples in a zero-length range
    assert!(matches!(
        chunk_meta(&[1, 2, 0, 0]),
        Err(CodecError::BadTimeRange { .. })
    ));
    // mint = i64::MAX, span 1 overflows
    let mut b = vec![1, 2];
    b.extend_from_slice(&[
        0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 1,
    ]);
    assert!(matches!(
        chunk_meta(&b),
        Err(CodecError::BadTimeRange { .. })
    ));
    // a huge count with an empty Gorilla body
    assert!(matches!(
        decode_chunk(&[1, 0x80, 0x80, 0x04, 0, 0xff, 0xff, 0x03], &mut Vec::new()),
        Err(CodecError::CountExceedsBody { .. })
    ));
}

#[test]
fn truncated_chunks_are_errors_never_panics() {
    let ts: Vec<i64> = (0..300).map(|i| i * 1000 + (i % 3)).collect();
    let vs: Vec<f64> = (0..300).map(|i| f64::from(i).sin()).collect();
    let dec: Vec<f64> = (0..300).map(|i| f64::from(i % 11) / 4.0).collect();
    for bytes in [
        encode_chunk(&samples_from(&ts, &vs)).unwrap(),
        encode_chunk(&samples_from(&ts, &dec)).unwrap(),
    ] {
        for cut in 0..bytes.len() {
            let mut out = Vec::new();
            assert!(
                decode_chunk(&bytes[..cut], &mut out).is_err(),
                "cut at {cut} of {}",
                bytes.len()
            );
        }
    }
}

#[test]
fn seek_skips_to_the_first_sample_at_or_after() {
    let ts: Vec<i64> = (0..1000).map(|i| i * 10).collect();
    let vs: Vec<f64> = (0..1000).map(f64::from).collect();
    let bytes = encode_chunk(&samples_from(&ts, &vs)).unwrap();
    let mut it = ChunkIter::new(&bytes).unwrap();
    it.seek(5).unwrap();
    assert_eq!(it.next_sample(), Ok(Some(Sample::new(10, 1.0))));
    it.seek(5001).unwrap();
    assert_eq!(it.next_sample(), Ok(Some(Sample::new(5010, 501.0))));
    it.seek(0).unwrap();
    assert_eq!(it.next_sample(), Ok(Some(Sample::new(5020, 502.0))));
    it.seek(9990).unwrap();
    assert_eq!(it.next_sample(), Ok(Some(Sample::new(9990, 999.0))));
    assert_eq!(it.next_sample(), Ok(None));
    let mut it = ChunkIter::new(&bytes).unwrap();
    it.seek(100_000).unwrap();
    assert_eq!(it.next_sample(), Ok(None));
}

#[test]
fn aggregate_windows() {
    let ts: Vec<i64> = (0..1000).map(|i| i * 10).collect();
    let vs: Vec<f64> = (0..1000).map(|i| f64::from(i % 17) / 2.0).collect();
    let samples = samples_from(&ts, &vs);
    let bytes = encode_chunk(&samples).unwrap();
    for (t0, t1) in [
        (0, 10_000),
        (5, 15),
        (995, 2_000),
        (-100, 0),
        (9_990, 9_991),
        (20_000, 30_000),
        (50, 50),
    ] {
        let mut agg = Aggregate::new();
        aggregate_chunk(&bytes, t0, t1, &mut agg).unwrap();
        let mut expect = Aggregate::new();
        samples
            .iter()
            .filter(|s| t0 <= s.t && s.t < t1)
            .for_each(|&s| expect.add(s));
        assert_eq!(
            aggregate_bits(&agg),
            aggregate_bits(&expect),
            "window {t0}..{t1}"
        );
    }
}

/// Strictly increasing timestamps anywhere in the i64 range, with deltas from tiny to huge.
fn timestamps() -> impl Strategy<Value = Vec<i64>> {
    let delta = prop_oneof![
        4 => Just(10_000u64),
        4 => 1u64..50_000,
        1 => any::<u64>().prop_map(|d| d.max(1)),
    ];
    (any::<i64>(), prop::collection::vec(delta, 0..400)).prop_map(|(start, deltas)| {
        let mut ts = vec![start];
        let mut t = start;
        for d in deltas {
            match i64::try_from(d).ok().and_then(|d| t.checked_add(d)) {
                Some(next) => {
                    ts.push(next);
                    t = next;
                }
                None => break,
            }
        }
        ts
    })
}

fn arbitrary_values(n: usize) -> impl Strategy<Value = Vec<f64>> {
    let v = prop_oneof![
        any::<u64>().prop_map(f64::from_bits),
        Just(f64::NAN),
        Just(-0.0),
        (-1000i64..1000).prop_map(|i| i as f64 / 10.0),
    ];
    prop::collection::vec(v, n)
}

/// Values like sensor readings and counters: short decimals, random walks, long flat runs.
fn decimalish_values(n: usize) -> impl Strategy<Value = Vec<f64>> {
    (
        0u32..5,
        any::<i32>(),
        prop::collection::vec(
            prop_oneof![3 => Just(0i64), 2 => -3i64..=3, 1 => -100_000i64..100_000],
            n,
        ),
    )
        .prop_map(|(scale, start, steps)| {
            let div = 10f64.powi(scale as i32);
            let mut m = i64::from(start);
            steps
                .into_iter()
                .map(|s| {
                    m += s;
                    m as f64 / div
                })
                .collect()
        })
}

fn chunk_of_any_samples() -> impl Strategy<Value = Vec<Sample>> {
    timestamps().prop_flat_map(|ts| {
        let n = ts.len();
        prop_oneof![arbitrary_values(n), decimalish_values(n)]
            .prop_map(move |vs| samples_from(&ts, &vs))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn arbitrary_samples_round_trip(ts in timestamps(), seed in any::<u64>()) {
        let vs: Vec<f64> = ts.iter().enumerate().map(|(i, _)| f64::from_bits(seed.rotate_left(i as u32).wrapping_mul(0x9e37_79b9_7f4a_7c15))).collect();
        round_trip(&samples_from(&ts, &vs));
    }

    #[test]
    fn mixed_and_decimal_samples_round_trip(samples in chunk_of_any_samples()) {
        round_trip(&samples);
    }

    #[test]
    fn decimalish_chunks_are_decimal_applicable_and_smallest_wins(ts in timestamps(), vs in decimalish_values(400)) {
        let samples = samples_from(&ts, &vs);
        let bytes = round_trip(&samples);
        let decimal = super::decimal::encode(&samples).expect("decimal applies to short decimals");
        let mut gorilla = GorillaAppender::new();
        samples.iter().for_each(|s| gorilla.append(s.t, s.v).unwrap());
        prop_assert_eq!(bytes.len(), decimal.len().min(gorilla.encoded_size()));
    }

    #[test]
    fn settling_an_appenders_chunk_gives_what_encode_chunk_gives(samples in chunk_of_any_samples()) {
        let mut appender = GorillaAppender::new();
        samples.iter().for_each(|s| appender.append(s.t, s.v).unwrap());
        let gorilla = appender.to_chunk().unwrap();
        let settled = settle_gorilla_chunk(&gorilla).unwrap().unwrap_or(gorilla);
        prop_assert_eq!(settled, encode_chunk(&samples).unwrap());
    }

    #[test]
    fn aggregate_equals_folding_decoded_samples(samples in chunk_of_any_samples(), a in any::<u16>(), b in any::<u16>()) {
        let bytes = encode_chunk(&samples).unwrap();
        let n = samples.len();
        let pick = |x: u16| -> i64 {
            let i = usize::from(x) % (n + 2);
            match i {
                0 => i64::MIN,
                i if i > n => i64::MAX,
                i => samples[i - 1].t.saturating_add(i64::from(x % 3) - 1),
            }
        };
        let (t0, t1) = (pick(a), pick(b));
        let mut agg = Aggregate::new();
        agg.add(Sample::new(i64::MIN, 0.5)); // folding continues an existing aggregate
        let mut expect = agg;
        aggregate_chunk(&bytes, t0, t1, &mut agg).unwrap();
        let mut out = Vec::new();
        decode_chunk(&bytes, &mut out).unwrap();
        out.iter().filter(|s| t0 <= s.t && s.t < t1).for_each(|&s| expect.add(s));
        prop_assert_eq!(aggregate_bits(&agg), aggregate_bits(&expect));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200), t0 in any::<i64>(), t1 in any::<i64>()) {
        exercise(&bytes, t0, t1);
        // Give the fuzzing a valid-looking header too.
        let mut framed = vec![1 + (bytes.first().copied().unwrap_or(0) & 1), 5, 0, 40];
        framed.extend_from_slice(&bytes);
        exercise(&framed, t0, t1);
    }

    #[test]
    fn mutated_chunks_never_panic(samples in chunk_of_any_samples(), edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4), cut in any::<usize>()) {
        let mut bytes = encode_chunk(&samples).unwrap();
        for (pos, x) in edits {
            let len = bytes.len();
            bytes[pos % len] ^= x.max(1);
        }
        exercise(&bytes, i64::MIN, i64::MAX);
        let cut = cut % (bytes.len() + 1);
        exercise(&bytes[..cut], 0, i64::MAX);
    }
}

/// Runs every decoder over `bytes`; whatever they accept must be self-consistent.
fn exercise(bytes: &[u8], t0: i64, t1: i64) {
    let meta = chunk_meta(bytes);
    let mut out = Vec::new();
    let decoded = decode_chunk(bytes, &mut out);
    if decoded.is_ok() {
        let meta = meta.expect("decodable chunk has a valid header");
        assert_eq!(out.len(), meta.count as usize);
        assert!(out.windows(2).all(|w| w[0].t < w[1].t));
        assert_eq!((out[0].t, out[out.len() - 1].t), (meta.mint, meta.maxt));
        // What decodes must re-encode to the same samples.
        let again = encode_chunk(&out).expect("re-encode");
        let mut out2 = Vec::new();
        decode_chunk(&again, &mut out2).expect("decode re-encoded");
        assert_eq!(out, out2);
    }
    if let Ok(mut it) = ChunkIter::new(bytes) {
        let mut n = 0;
        for s in it.by_ref() {
            if s.is_err() {
                break;
            }
            n += 1;
        }
        assert!(n <= MAX_CHUNK_SAMPLES);
        if let Ok(mut it) = ChunkIter::new(bytes) {
            let _ = it.seek(t0);
            let _ = it.next_sample();
        }
    }
    let mut agg = Aggregate::new();
    let _ = aggregate_chunk(bytes, t0, t1, &mut agg);
}
