//! The reference dataset the codec is judged on: compression ratio assertions, and an
//! `#[ignore]`d decode-throughput report (`cargo test --release -- --ignored --nocapture`).

use super::*;
use crate::storage::model::Sample;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::time::Instant;

const INTERVAL_MS: i64 = 10_000;
const START_MS: i64 = 1_700_000_000_000;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Temperature,
    Humidity,
    Energy,
    Motion,
}

const KINDS: [Kind; 4] = [
    Kind::Temperature,
    Kind::Humidity,
    Kind::Energy,
    Kind::Motion,
];

/// `n` samples of one kind. Values are built from integer tenths and divided once, as a parser
/// of "21.3" would produce them, not accumulated in floating point.
fn generate(kind: Kind, n: usize, seed: u64) -> Vec<Sample> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let (mut m, lo, hi): (i64, i64, i64) = match kind {
        Kind::Temperature => (220, 180, 260),
        Kind::Humidity => (500, 300, 700),
        Kind::Energy => (123_456, 0, i64::MAX),
        Kind::Motion => (0, 0, 1),
    };
    (0..n)
        .map(|i| {
            let t = START_MS + i as i64 * INTERVAL_MS;
            let v = match kind {
                Kind::Temperature | Kind::Humidity => {
                    m = (m + rng.gen_range(-1..=1)).clamp(lo, hi);
                    m as f64 / 10.0
                }
                Kind::Energy => {
                    m += rng.gen_range(0..=3);
                    m as f64 / 10.0
                }
                Kind::Motion => {
                    if rng.gen_bool(0.001) {
                        m = 1 - m;
                    }
                    m as f64
                }
            };
            Sample::new(t, v)
        })
        .collect()
}

/// Bytes per sample over `samples` cut into chunks of `chunk` samples.
fn bytes_per_sample(samples: &[Sample], chunk: usize) -> f64 {
    let total: usize = samples
        .chunks(chunk)
        .map(|c| encode_chunk(c).unwrap().len())
        .sum();
    total as f64 / samples.len() as f64
}

/// Measured bytes/sample (with a small margin) per kind and chunk size 120 / 720 / 2048, so
/// that a regression in the codec shows up here.
fn limit(kind: Kind, chunk: usize) -> f64 {
    let [a, b, c] = match kind {
        Kind::Temperature => [0.38, 0.25, 0.23],
        Kind::Humidity => [0.38, 0.25, 0.23],
        Kind::Energy => [0.44, 0.295, 0.275],
        Kind::Motion => [0.165, 0.034, 0.0135],
    };
    match chunk {
        120 => a,
        720 => b,
        _ => c,
    }
}

#[test]
fn reference_dataset_compresses_well() {
    let n = 2048 * 10;
    let mut report = String::new();
    for (i, kind) in KINDS.into_iter().enumerate() {
        let samples = generate(kind, n, 42 + i as u64);
        for chunk in [120, 720, 2048] {
            let bps = bytes_per_sample(&samples, chunk);
            report.push_str(&format!("{kind:?} chunk={chunk}: {bps:.4} B/sample\n"));
            assert!(
                bps < limit(kind, chunk),
                "{kind:?} chunk={chunk}: {bps:.4} B/sample"
            );
            if chunk == 720 {
                assert!(bps < 1.0);
            }
        }
        // Every chunk of these kinds must use the decimal encoding.
        for c in samples.chunks(720) {
            assert_eq!(
                chunk_meta(&encode_chunk(c).unwrap()).unwrap().encoding,
                Encoding::Decimal
            );
        }
    }
    println!("{report}");
}

fn gorilla_chunk(samples: &[Sample]) -> Vec<u8> {
    let mut a = GorillaAppender::new();
    for s in samples {
        a.append(s.t, s.v).unwrap();
    }
    a.to_chunk().unwrap()
}

fn measure(label: &str, chunks: &[Vec<u8>], samples: usize) {
    let rounds = 5;
    let mut out = Vec::with_capacity(2048);
    let rate = |secs: f64| (samples * rounds) as f64 / secs / 1e6;

    let start = Instant::now();
    for _ in 0..rounds {
        for c in chunks {
            out.clear();
            decode_chunk(c, &mut out).unwrap();
            std::hint::black_box(&out);
        }
    }
    let decode = rate(start.elapsed().as_secs_f64());

    let start = Instant::now();
    let mut sum = 0.0;
    for _ in 0..rounds {
        for c in chunks {
            let mut it = ChunkIter::new(c).unwrap();
            while let Some(s) = it.next_sample().unwrap() {
                sum += s.v;
            }
        }
    }
    std::hint::black_box(sum);
    let iter = rate(start.elapsed().as_secs_f64());

    let start = Instant::now();
    let mut agg = Aggregate::new();
    for _ in 0..rounds {
        for c in chunks {
            aggregate_chunk(c, i64::MIN, i64::MAX, &mut agg).unwrap();
        }
    }
    std::hint::black_box(&agg);
    let aggregate = rate(start.elapsed().as_secs_f64());
    println!(
        "{label:<28} decode_chunk {decode:7.1} M/s   ChunkIter sum {iter:7.1} M/s   aggregate_chunk {aggregate:7.1} M/s"
    );
}

#[test]
#[ignore = "throughput report; run in release with --ignored --nocapture"]
fn decode_throughput() {
    let n = 2048 * 500;
    for (i, kind) in KINDS.into_iter().enumerate() {
        let samples = generate(kind, n, 7 + i as u64);
        let start = Instant::now();
        let decimal: Vec<Vec<u8>> = samples
            .chunks(2048)
            .map(|c| encode_chunk(c).unwrap())
            .collect();
        let enc = n as f64 / start.elapsed().as_secs_f64() / 1e6;
        println!("{kind:?}: encode_chunk {enc:.1} M samples/s");
        measure(&format!("{kind:?} decimal"), &decimal, n);
        let gorilla: Vec<Vec<u8>> = samples.chunks(2048).map(gorilla_chunk).collect();
        measure(&format!("{kind:?} gorilla"), &gorilla, n);
    }
    // Gorilla on values that are not decimals at all.
    let mut rng = SmallRng::seed_from_u64(1);
    let noisy: Vec<Sample> = (0..n)
        .map(|i| Sample::new(START_MS + i as i64 * INTERVAL_MS, 20.0 + rng.gen::<f64>()))
        .collect();
    let chunks: Vec<Vec<u8>> = noisy
        .chunks(2048)
        .map(|c| encode_chunk(c).unwrap())
        .collect();
    measure("random floats (gorilla)", &chunks, n);
}
