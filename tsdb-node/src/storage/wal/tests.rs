//! End-to-end tests of writer and replay over real files.

use std::convert::Infallible;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::format::{own_frame_len, segment_header};
use super::record::tests::arb_record;
use super::*;
use crate::storage::model::{Labels, MatchOp, Matcher, Sample};

fn fast() -> WalOptions {
    WalOptions {
        sync: false,
        ..WalOptions::default()
    }
}

/// Replays with a small odd read size so that frames straddle read boundaries; the default
/// size is exercised by `replay_read_size_does_not_matter` and the throughput test.
fn collect(dir: &Path) -> (Vec<WalRecord>, ReplayStats) {
    collect_chunked(dir, 37)
}

fn collect_chunked(dir: &Path, read_chunk: usize) -> (Vec<WalRecord>, ReplayStats) {
    let mut out = Vec::new();
    let stats = super::reader::replay_chunked(dir, read_chunk, |r| {
        out.push(r);
        Ok::<_, Infallible>(())
    })
    .expect("replay");
    (out, stats)
}

#[test]
fn replay_read_size_does_not_matter() {
    let dir = tempfile::tempdir().unwrap();
    let recs = mixed_records(50);
    {
        let wal = Wal::open(dir.path(), fast()).unwrap();
        wal.append(&recs).unwrap();
        wal.cut().unwrap();
        wal.append(&recs).unwrap();
    }
    let mut expected = recs.clone();
    expected.extend_from_slice(&recs);
    for chunk in [1, 2, 7, 8, 9, 64, 1000] {
        assert_eq!(
            collect_chunked(dir.path(), chunk).0,
            expected,
            "chunk {chunk}"
        );
    }
    let mut out = Vec::new();
    let stats = replay(dir.path(), |r| {
        out.push(r);
        Ok::<_, Infallible>(())
    })
    .unwrap();
    assert_eq!(out, expected);
    assert_eq!(stats.segments, 2);
}

fn samples(id: u64, n: usize, t0: i64) -> WalRecord {
    WalRecord::Samples(
        (0..n)
            .map(|i| (id + i as u64, Sample::new(t0 + i as i64, i as f64 * 0.5)))
            .collect(),
    )
}

fn mixed_records(n: usize) -> Vec<WalRecord> {
    (0..n)
        .map(|i| match i % 3 {
            0 => WalRecord::Series {
                id: i as u64,
                labels: Labels::from_metric("m", &[("i", &i.to_string())]),
            },
            1 => samples(i as u64, 1 + i % 5, 1000 * i as i64),
            _ => WalRecord::Tombstone {
                matchers: vec![Matcher::new(MatchOp::RegexMatch, "i", format!("{i}.*")).unwrap()],
                mint: i as i64,
                maxt: 2 * i as i64,
            },
        })
        .collect()
}

fn only_segment_path(dir: &Path) -> std::path::PathBuf {
    let segs = segments(dir).unwrap();
    assert_eq!(segs.len(), 1, "{segs:?}");
    segment_path(dir, segs[0])
}

#[test]
fn every_record_type_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let recs = mixed_records(30);
    {
        let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
        wal.append(&recs[..10]).unwrap();
        for r in &recs[10..] {
            wal.append(std::slice::from_ref(r)).unwrap();
        }
    }
    let (out, stats) = collect(dir.path());
    assert_eq!(out, recs);
    assert_eq!(stats.records, 30);
    assert_eq!(
        stats.samples,
        recs.iter().map(|r| r.sample_count() as u64).sum::<u64>()
    );
    assert!(stats.corrupt_segments.is_empty());
    // Reopening starts a fresh segment and keeps the old one intact.
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(wal.current_segment(), 2);
    wal.append(&recs[..1]).unwrap();
    drop(wal);
    let (out, _) = collect(dir.path());
    assert_eq!(out.len(), 31);
    assert_eq!(out[30], recs[0]);
}

#[test]
fn concurrent_appends_are_logged_once_in_thread_order() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Arc::new(Wal::open(dir.path(), WalOptions::default()).unwrap());
    const THREADS: u64 = 4;
    const PER_THREAD: i64 = 150;
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let wal = Arc::clone(&wal);
            std::thread::spawn(move || {
                for seq in 0..PER_THREAD {
                    let rec = WalRecord::Samples(vec![(t, Sample::new(seq, t as f64))]);
                    if seq % 2 == 0 {
                        wal.append(&[rec]).unwrap();
                    } else {
                        let ticket = wal.enqueue(&[rec]).unwrap();
                        wal.wait_durable(ticket).unwrap();
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    drop(wal);
    let (out, stats) = collect(dir.path());
    assert_eq!(stats.records, THREADS * PER_THREAD as u64);
    let mut next = vec![0i64; THREADS as usize];
    for rec in out {
        let WalRecord::Samples(s) = rec else {
            panic!("unexpected record {rec:?}")
        };
        let (t, sample) = s[0];
        assert_eq!(sample.t, next[t as usize], "thread {t} out of order");
        next[t as usize] += 1;
    }
    assert!(next.iter().all(|&n| n == PER_THREAD));
}

#[test]
fn backpressure_without_waiters_does_not_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        max_pending_bytes: 200,
        segment_size: 4096,
        sync: false,
        ..WalOptions::default()
    };
    let wal = Arc::new(Wal::open(dir.path(), opts).unwrap());
    let handles: Vec<_> = (0..3u64)
        .map(|t| {
            let wal = Arc::clone(&wal);
            std::thread::spawn(move || {
                for seq in 0..300 {
                    wal.enqueue(&[samples(t, 3, seq)]).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    wal.close().unwrap();
    assert!(matches!(
        wal.enqueue(&[samples(0, 1, 0)]),
        Err(WalError::Closed)
    ));
    let (_, stats) = collect(dir.path());
    assert_eq!(stats.records, 900);
}

#[test]
fn segments_rotate_at_the_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        segment_size: 300,
        ..fast()
    };
    let recs: Vec<_> = (0..200).map(|i| samples(i, 2, i as i64)).collect();
    let wal = Wal::open(dir.path(), opts).unwrap();
    for chunk in recs.chunks(7) {
        wal.append(chunk).unwrap();
    }
    // A record larger than a segment gets one of its own.
    let big = samples(0, 100, 0);
    wal.append(std::slice::from_ref(&big)).unwrap();
    wal.append(&recs[..1]).unwrap();
    let segs = segments(dir.path()).unwrap();
    assert!(segs.len() > 10, "{segs:?}");
    assert_eq!(*segs.last().unwrap(), wal.current_segment());
    let total: u64 = segs
        .iter()
        .map(|&n| fs::metadata(segment_path(dir.path(), n)).unwrap().len())
        .sum();
    assert_eq!(wal.size_bytes(), total);
    let mut oversized = 0;
    for &n in &segs {
        let bytes = fs::read(segment_path(dir.path(), n)).unwrap();
        let (recs, damage) = decode_segment(&bytes);
        assert!(damage.is_none());
        if bytes.len() > 300 {
            assert_eq!(recs, vec![big.clone()]);
            oversized += 1;
        }
    }
    assert_eq!(oversized, 1);
    drop(wal);
    let (out, stats) = collect(dir.path());
    let mut expected = recs.clone();
    expected.push(big);
    expected.push(recs[0].clone());
    assert_eq!(out, expected);
    assert_eq!(stats.segments, segs.len() as u64);
}

#[test]
fn cut_and_remove_before() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), WalOptions::default()).unwrap();
    let old = mixed_records(10);
    let new = mixed_records(4);
    wal.append(&old).unwrap();
    let pending = wal.enqueue(&old[..2]).unwrap();
    let n = wal.cut().unwrap();
    assert_eq!(n, 2);
    assert_eq!(wal.current_segment(), 2);
    // cut made the enqueued records durable, in the old segment.
    wal.wait_durable(pending).unwrap();
    // Nothing was written since: cutting again keeps the empty segment.
    assert_eq!(wal.cut().unwrap(), 2);
    wal.append(&new).unwrap();
    let size_before = wal.size_bytes();
    assert_eq!(wal.remove_before(n).unwrap(), 1);
    assert!(wal.size_bytes() < size_before);
    assert_eq!(segments(dir.path()).unwrap(), vec![2]);
    // Never deletes the live segment.
    assert_eq!(wal.remove_before(u64::MAX).unwrap(), 0);
    assert_eq!(segments(dir.path()).unwrap(), vec![2]);
    wal.append(&new[..1]).unwrap();
    drop(wal);
    let (out, _) = collect(dir.path());
    let mut expected = new.clone();
    expected.push(new[0].clone());
    assert_eq!(out, expected);
}

#[test]
fn torn_tail_at_every_offset_is_cut_and_the_wal_stays_usable() {
    let src = tempfile::tempdir().unwrap();
    let recs = mixed_records(6);
    {
        let wal = Wal::open(src.path(), fast()).unwrap();
        wal.append(&recs).unwrap();
    }
    let original = fs::read(only_segment_path(src.path())).unwrap();
    let mut last_start = super::HEADER_LEN;
    for _ in 0..recs.len() - 1 {
        last_start += own_frame_len(&original[last_start..]).unwrap();
    }
    for cut in last_start..original.len() {
        let dir = tempfile::tempdir().unwrap();
        let path = segment_path(dir.path(), 1);
        fs::write(&path, &original[..cut]).unwrap();
        let (out, stats) = collect(dir.path());
        assert_eq!(out, recs[..recs.len() - 1], "cut at {cut}");
        assert_eq!(fs::metadata(&path).unwrap().len(), last_start as u64);
        assert_eq!(stats.truncated_bytes, (cut - last_start) as u64);
        assert_eq!(stats.corrupt_segments.len(), usize::from(cut > last_start));
        let wal = Wal::open(dir.path(), fast()).unwrap();
        wal.append(&recs[..1]).unwrap();
        drop(wal);
        let (out, stats) = collect(dir.path());
        assert_eq!(out.len(), recs.len());
        assert_eq!(out.last(), recs.first());
        assert!(stats.corrupt_segments.is_empty());
    }
}

#[test]
fn damage_in_an_early_segment_keeps_later_segments() {
    let dir = tempfile::tempdir().unwrap();
    let recs = mixed_records(9);
    {
        let wal = Wal::open(dir.path(), fast()).unwrap();
        wal.append(&recs[..3]).unwrap();
        wal.cut().unwrap();
        wal.append(&recs[3..6]).unwrap();
        wal.cut().unwrap();
        wal.append(&recs[6..]).unwrap();
    }
    // Damage the last record of segment 1 and replace segment 2's header.
    let p1 = segment_path(dir.path(), 1);
    let mut b1 = fs::read(&p1).unwrap();
    let last = b1.len() - 1;
    b1[last] ^= 1;
    fs::write(&p1, &b1).unwrap();
    let p2 = segment_path(dir.path(), 2);
    let mut b2 = fs::read(&p2).unwrap();
    b2[0] = b'X';
    fs::write(&p2, &b2).unwrap();

    let (out, stats) = collect(dir.path());
    let mut expected = recs[..2].to_vec();
    expected.extend_from_slice(&recs[6..]);
    assert_eq!(out, expected);
    assert_eq!(stats.corrupt_segments.len(), 2);
    assert_eq!(stats.corrupt_segments[0].segment, 1);
    assert_eq!(stats.corrupt_segments[1].segment, 2);
    assert_eq!(stats.corrupt_segments[1].offset, 0);
    assert!(dir.path().join("00000002.wal.corrupt").exists());
    assert_eq!(segments(dir.path()).unwrap(), vec![1, 3]);
    // A second replay finds a clean log.
    let (again, stats) = collect(dir.path());
    assert_eq!(again, expected);
    assert!(stats.corrupt_segments.is_empty());
}

#[test]
fn torn_and_empty_headers_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(segment_path(dir.path(), 1), &segment_header()[..5]).unwrap();
    fs::write(segment_path(dir.path(), 2), b"").unwrap();
    let (out, stats) = collect(dir.path());
    assert!(out.is_empty());
    assert_eq!(stats.corrupt_segments.len(), 2);
    assert_eq!(stats.truncated_bytes, 5);
    assert!(segments(dir.path()).unwrap().is_empty());
    assert!(replay(&dir.path().join("missing"), |_| Ok::<_, Infallible>(())).is_ok());
}

#[test]
fn random_bit_flips_never_lose_earlier_records() {
    let src = tempfile::tempdir().unwrap();
    let recs = mixed_records(40);
    {
        let wal = Wal::open(src.path(), fast()).unwrap();
        wal.append(&recs).unwrap();
    }
    let original = fs::read(only_segment_path(src.path())).unwrap();
    let mut ends = Vec::new();
    let mut pos = super::HEADER_LEN;
    while pos < original.len() {
        pos += own_frame_len(&original[pos..]).unwrap();
        ends.push(pos);
    }
    let mut rng = SmallRng::seed_from_u64(7);
    for _ in 0..200 {
        let mut bytes = original.clone();
        let flips = rng.gen_range(1..4);
        let mut first = usize::MAX;
        for _ in 0..flips {
            let at = rng.gen_range(super::HEADER_LEN..bytes.len());
            bytes[at] ^= 1 << rng.gen_range(0..8);
            first = first.min(at);
        }
        let intact = ends.iter().filter(|&&e| e <= first).count();
        let dir = tempfile::tempdir().unwrap();
        fs::write(segment_path(dir.path(), 1), &bytes).unwrap();
        let (out, stats) = collect(dir.path());
        assert!(out.len() >= intact, "lost records before the damage");
        assert_eq!(out[..intact], recs[..intact]);
        assert!(out.len() < recs.len() || stats.corrupt_segments.is_empty());
    }
}

#[test]
fn callback_errors_stop_replay() {
    #[derive(Debug, thiserror::Error)]
    #[error("boom")]
    struct Boom;
    let dir = tempfile::tempdir().unwrap();
    {
        let wal = Wal::open(dir.path(), fast()).unwrap();
        wal.append(&mixed_records(3)).unwrap();
    }
    let mut seen = 0;
    let err = replay(dir.path(), |_| {
        seen += 1;
        if seen == 2 {
            Err(Boom)
        } else {
            Ok(())
        }
    })
    .unwrap_err();
    assert!(matches!(err, ReplayError::Apply { segment: 1, .. }));
    assert_eq!(seen, 2);
}

#[test]
fn a_failed_write_poisons_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        segment_size: 200,
        ..WalOptions::default()
    };
    let wal = Wal::open(dir.path(), opts).unwrap();
    wal.append(&[samples(0, 2, 0)]).unwrap();
    // Occupy the next segment's name so that rotation hits a real I/O error (root ignores
    // permission bits, so a read-only directory would not do).
    fs::create_dir(segment_path(dir.path(), 2)).unwrap();
    let err = wal.append(&[samples(0, 20, 0)]).unwrap_err();
    assert!(matches!(err, WalError::Io { .. }), "{err}");
    for res in [
        wal.append(&[samples(0, 1, 0)]),
        wal.enqueue(&[samples(0, 1, 0)]).map(|_| ()),
        wal.cut().map(|_| ()),
        wal.close(),
    ] {
        assert!(matches!(res, Err(WalError::Failed { .. })), "{res:?}");
    }
    drop(wal);
    // What was acknowledged before the failure is still there.
    fs::remove_dir(segment_path(dir.path(), 2)).unwrap();
    let (out, _) = collect(dir.path());
    assert_eq!(out[0], samples(0, 2, 0));
}

#[test]
fn oversized_non_sample_records_are_rejected_without_side_effects() {
    let dir = tempfile::tempdir().unwrap();
    let wal = Wal::open(dir.path(), fast()).unwrap();
    let huge = "x".repeat(MAX_RECORD_SIZE);
    let rec = WalRecord::Series {
        id: 1,
        labels: Labels::from_metric(&huge, &[]),
    };
    assert!(matches!(
        wal.append(&[samples(0, 1, 0), rec]),
        Err(WalError::RecordTooLarge { .. })
    ));
    wal.append(&[samples(5, 1, 5)]).unwrap();
    drop(wal);
    assert_eq!(collect(dir.path()).0, vec![samples(5, 1, 5)]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn arbitrary_segment_files_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), with_header: bool) {
        let dir = tempfile::tempdir().unwrap();
        let mut content = if with_header { segment_header().to_vec() } else { Vec::new() };
        content.extend_from_slice(&bytes);
        fs::write(segment_path(dir.path(), 1), &content).unwrap();
        let (_, stats) = collect(dir.path());
        prop_assert!(stats.corrupt_segments.len() <= 1);
        // Whatever is left is clean.
        let (_, again) = collect(dir.path());
        prop_assert!(again.corrupt_segments.is_empty());
    }

    #[test]
    fn arbitrary_record_sequences_round_trip_through_files(
        recs in proptest::collection::vec(arb_record(), 0..20),
        segment_size in 64u64..2048,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path(), WalOptions { segment_size, ..fast() }).unwrap();
        for chunk in recs.chunks(3) {
            wal.append(chunk).unwrap();
        }
        drop(wal);
        let (out, stats) = collect(dir.path());
        prop_assert!(stats.corrupt_segments.is_empty());
        prop_assert_eq!(out, recs);
    }
}

/// Throughput figures; run with
/// `cargo test --release -- --ignored --nocapture throughput`.
#[test]
#[ignore]
fn throughput() {
    const BATCH: usize = 1000;
    const BATCHES_PER_THREAD: usize = 2000;
    for (threads, sync) in [(1usize, false), (1, true), (2, true), (4, true)] {
        let dir = tempfile::tempdir().unwrap();
        let opts = WalOptions {
            sync,
            ..WalOptions::default()
        };
        let wal = Arc::new(Wal::open(dir.path(), opts).unwrap());
        let start = Instant::now();
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let wal = Arc::clone(&wal);
                std::thread::spawn(move || {
                    let mut rng = SmallRng::seed_from_u64(t as u64);
                    for b in 0..BATCHES_PER_THREAD {
                        let ts = 1_700_000_000_000 + b as i64 * 10_000;
                        let batch: Vec<_> = (0..BATCH as u64)
                            .map(|i| (t as u64 * 1_000_000 + i, Sample::new(ts, rng.gen())))
                            .collect();
                        wal.append(&[WalRecord::Samples(batch)]).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let secs = start.elapsed().as_secs_f64();
        let n = (threads * BATCHES_PER_THREAD * BATCH) as f64;
        println!(
            "append sync={sync} threads={threads}: {:.2} M samples/s ({} bytes)",
            n / secs / 1e6,
            wal.size_bytes()
        );
        drop(wal);
        let start = Instant::now();
        let mut samples = 0u64;
        let stats = replay(dir.path(), |r| {
            samples += r.sample_count() as u64;
            Ok::<_, Infallible>(())
        })
        .unwrap();
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(stats.samples as f64, n);
        println!(
            "replay: {:.2} M samples/s ({} segments)",
            samples as f64 / secs / 1e6,
            stats.segments
        );
    }
}
