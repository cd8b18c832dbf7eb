//! Module-level tests: round trips against a brute-force model, crash-safe publication, and
//! robustness of the reader against damaged or arbitrary bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use proptest::prelude::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::storage::model::{Label, Labels, SeriesId};

#[derive(Clone, Debug)]
struct ModelChunk {
    kind: u8,
    mint: i64,
    maxt: i64,
    count: u32,
    bytes: Vec<u8>,
}

#[derive(Clone, Debug)]
struct ModelSeries {
    id: SeriesId,
    labels: Labels,
    chunks: Vec<ModelChunk>,
}

const SEED: SegmentMetaSeed = SegmentMetaSeed {
    seq: 42,
    level: 1,
    resolution_ms: 60_000,
};

fn add(w: &mut SegmentWriter, s: &ModelSeries) -> Result<(), SegmentError> {
    let inputs: Vec<ChunkInput<'_>> = s
        .chunks
        .iter()
        .map(|c| (c.kind, c.mint, c.maxt, c.count, c.bytes.as_slice()))
        .collect();
    w.add_series(s.id, &s.labels, &inputs)
}

fn write(dir: &Path, name: &str, model: &[ModelSeries]) -> Result<PathBuf, SegmentError> {
    let mut w = SegmentWriter::create(dir, name, SEED)?;
    for s in model {
        add(&mut w, s)?;
    }
    w.finish()
}

fn write_bytes(model: &[ModelSeries]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "m.seg", model).unwrap();
    std::fs::read(path).unwrap()
}

fn entry_matches(e: &ChunkEntry, c: &ModelChunk) -> bool {
    (e.kind, e.mint, e.maxt, e.count, e.len as usize)
        == (c.kind, c.mint, c.maxt, c.count, c.bytes.len())
}

/// Compares everything a reader can tell against the model it was written from.
fn check_against_model(seg: &Segment, model: &[ModelSeries], queries: &[(u8, i64, i64)]) {
    let all: Vec<&ModelChunk> = model.iter().flat_map(|s| &s.chunks).collect();
    let meta = seg.meta();
    assert_eq!(
        (meta.seq, meta.level, meta.resolution_ms),
        (SEED.seq, SEED.level, SEED.resolution_ms)
    );
    assert_eq!(meta.num_series, model.len() as u64);
    assert_eq!(meta.num_chunks, all.len() as u64);
    assert_eq!(
        meta.num_samples,
        all.iter().map(|c| u64::from(c.count)).sum::<u64>()
    );
    assert_eq!(meta.mint, all.iter().map(|c| c.mint).min().unwrap());
    assert_eq!(meta.maxt, all.iter().map(|c| c.maxt).max().unwrap());

    let ids: Vec<SeriesId> = model.iter().map(|s| s.id).collect();
    assert_eq!(seg.series_ids().collect::<Vec<_>>(), ids);
    let listed: Vec<(SeriesId, Labels)> = seg.iter_series().collect::<Result<_, _>>().unwrap();
    assert_eq!(
        listed,
        model
            .iter()
            .map(|s| (s.id, s.labels.clone()))
            .collect::<Vec<_>>()
    );

    for s in model {
        let e = seg.series(s.id).unwrap().expect("series present");
        assert_eq!(e.id(), s.id);
        assert_eq!(e.labels().unwrap(), s.labels);
        assert_eq!(e.num_chunks(), s.chunks.len());
        let got: Vec<ChunkEntry> = e.all_chunks().collect::<Result<_, _>>().unwrap();
        assert_eq!(got.len(), s.chunks.len());
        for (g, c) in got.iter().zip(&s.chunks) {
            assert!(entry_matches(g, c), "{g:?} vs {c:?}");
            assert_eq!(seg.chunk_bytes(g).unwrap(), c.bytes.as_slice());
        }
        for &(kind, mint, maxt) in queries {
            let got: Vec<ChunkEntry> = e
                .chunks(kind, mint, maxt)
                .collect::<Result<_, _>>()
                .unwrap();
            let want: Vec<&ModelChunk> = s
                .chunks
                .iter()
                .filter(|c| c.kind == kind && mint <= maxt && c.mint <= maxt && c.maxt >= mint)
                .collect();
            assert_eq!(
                got.len(),
                want.len(),
                "series {} query {kind} [{mint}, {maxt}]",
                s.id
            );
            for (g, c) in got.iter().zip(want) {
                assert!(entry_matches(g, c));
                assert!(g.overlaps(mint, maxt));
                assert_eq!(seg.chunk_bytes(g).unwrap(), c.bytes.as_slice());
            }
        }
    }
    let present: BTreeSet<SeriesId> = ids.iter().copied().collect();
    for probe in [0, 1, 2, 500, 999, 1000, u64::MAX] {
        if !present.contains(&probe) {
            assert!(seg.series(probe).unwrap().is_none());
        }
    }

    let mut postings: BTreeMap<(String, String), Vec<SeriesId>> = BTreeMap::new();
    for s in model {
        for l in s.labels.iter() {
            postings
                .entry((l.name.clone(), l.value.clone()))
                .or_default()
                .push(s.id);
        }
    }
    for ((name, value), want) in &postings {
        let got: Vec<SeriesId> = seg.postings(name, value).unwrap().collect();
        assert_eq!(&got, want, "postings {name}={value}");
    }
    for (name, value) in [
        ("__name__", "nope"),
        ("nope", "cpu"),
        ("", ""),
        ("host", "zz"),
    ] {
        if !postings.contains_key(&(name.to_string(), value.to_string())) {
            assert_eq!(seg.postings(name, value).unwrap().len(), 0);
        }
    }
    let names: BTreeSet<String> = postings.keys().map(|(n, _)| n.clone()).collect();
    assert_eq!(
        seg.label_names().unwrap(),
        names.iter().cloned().collect::<Vec<_>>()
    );
    for name in &names {
        let values: Vec<String> = postings
            .keys()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect();
        assert_eq!(&seg.label_values(name).unwrap(), &values);
    }
    assert!(seg.label_values("absent-name").unwrap().is_empty());
    seg.verify().unwrap();
}

/// Calls every reader method, ignoring results: used where only "no panic" is asserted.
fn exercise(seg: &Segment) {
    let _ = (seg.meta(), seg.path(), seg.file_size());
    for id in seg.series_ids().chain([0, 7, u64::MAX]) {
        if let Ok(Some(e)) = seg.series(id) {
            let _ = e.labels();
            for c in e.all_chunks().flatten() {
                let _ = seg.chunk_bytes(&c);
            }
            for kind in 0..3 {
                for c in e.chunks(kind, i64::MIN, i64::MAX).flatten() {
                    let _ = seg.chunk_bytes(&c);
                }
                let _ = e.chunks(kind, 10, 500).count();
            }
        }
    }
    if let Ok(names) = seg.label_names() {
        for n in names.iter().map(String::as_str).chain(["absent"]) {
            for v in seg.label_values(n).unwrap_or_default() {
                let _ = seg.postings(n, &v).map(Iterator::count);
            }
        }
    }
    let _ = seg.iter_series().count();
    let _ = seg.entries().count();
    let _ = seg.verify();
}

fn arb_chunk() -> impl Strategy<Value = ModelChunk> {
    (
        0u8..3,
        -100i64..1000,
        0i64..300,
        1u32..100,
        proptest::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(|(kind, mint, span, count, bytes)| ModelChunk {
            kind,
            mint,
            maxt: mint + span,
            count,
            bytes,
        })
}

fn arb_labels() -> impl Strategy<Value = Labels> {
    (
        prop::sample::select(vec!["cpu", "mem", "disk", "net"]),
        prop::option::of(prop::sample::select(vec!["a", "b", "c", "d"])),
        prop::option::of(prop::sample::select(vec!["x", "y"])),
        "[a-zé]{0,3}",
    )
        .prop_map(|(metric, host, dc, zone)| {
            let mut l = vec![Label::new("__name__", metric), Label::new("zone", zone)];
            l.extend(host.map(|h| Label::new("host", h)));
            l.extend(dc.map(|d| Label::new("dc", d)));
            Labels::new(l)
        })
}

fn arb_model(max_series: usize) -> impl Strategy<Value = Vec<ModelSeries>> {
    proptest::collection::btree_map(
        0u64..1000,
        (arb_labels(), proptest::collection::vec(arb_chunk(), 0..6)),
        1..max_series,
    )
    .prop_map(|m| {
        m.into_iter()
            .map(|(id, (labels, mut chunks))| {
                chunks.sort_by_key(|c| (c.kind, c.mint));
                ModelSeries { id, labels, chunks }
            })
            .collect::<Vec<_>>()
    })
    .prop_filter("needs at least one chunk", |m| {
        m.iter().any(|s| !s.chunks.is_empty())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn round_trip_matches_brute_force(
        model in arb_model(40),
        queries in proptest::collection::vec((0u8..4, -200i64..1400, 0i64..400), 1..12),
    ) {
        let queries: Vec<(u8, i64, i64)> = queries
            .into_iter()
            .map(|(k, mint, span)| (k, mint, mint + span))
            .chain([(0, i64::MIN, i64::MAX), (1, 5, 4)])
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "rt.seg", &model).unwrap();
        let seg = Segment::open(&path).unwrap();
        assert_eq!(seg.path(), path.as_path());
        check_against_model(&seg, &model, &queries);
        let mem = Segment::from_bytes(std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(mem.file_size(), seg.file_size());
        check_against_model(&mem, &model, &queries);
    }

    /// Up to three flipped bits are always caught by crc32c, so a segment that still opens
    /// was damaged only in chunk data, and the damaged chunk must be refused on read.
    #[test]
    fn bit_flips_are_detected_and_never_yield_wrong_bytes(
        model in arb_model(12),
        flips in proptest::collection::vec(any::<prop::sample::Index>(), 1..4),
        bits in proptest::collection::vec(0u8..8, 3),
    ) {
        let clean = write_bytes(&model);
        let mut bytes = clean.clone();
        let mut positions = BTreeSet::new();
        for (f, bit) in flips.iter().zip(&bits) {
            let pos = f.index(bytes.len());
            if positions.insert(pos) {
                bytes[pos] ^= 1 << bit;
            }
        }
        let Ok(seg) = Segment::from_bytes(bytes) else { return Ok(()) };
        let mut saw_corrupt_chunk = false;
        for s in &model {
            let e = seg.series(s.id).unwrap().unwrap();
            assert_eq!(e.labels().unwrap(), s.labels);
            for (c, m) in e.all_chunks().map(Result::unwrap).zip(&s.chunks) {
                let start = c.offset as usize;
                let damaged = positions.iter().any(|p| (start..start + c.len as usize).contains(p));
                match seg.chunk_bytes(&c) {
                    Ok(b) => {
                        prop_assert!(!damaged, "damaged chunk returned");
                        prop_assert_eq!(b, m.bytes.as_slice());
                    }
                    Err(err) => {
                        prop_assert!(damaged && err.is_corrupt(), "{err}");
                        saw_corrupt_chunk = true;
                    }
                }
            }
        }
        prop_assert!(saw_corrupt_chunk);
        prop_assert!(seg.verify().is_err());
    }

    #[test]
    fn truncated_or_extended_images_are_rejected(model in arb_model(8), cut in any::<prop::sample::Index>(), extra in 1usize..40) {
        let bytes = write_bytes(&model);
        let n = cut.index(bytes.len());
        prop_assert!(Segment::from_bytes(bytes[..n].to_vec()).is_err());
        let mut longer = bytes.clone();
        longer.extend(std::iter::repeat_n(0u8, extra));
        prop_assert!(Segment::from_bytes(longer).is_err());
    }

    /// Damage behind recomputed checksums reaches the structural checks, which must hold
    /// without panicking whatever the index bytes say.
    #[test]
    fn resealed_damage_never_panics(
        model in arb_model(10),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = write_bytes(&model);
        // Aim at the index: the chunk data region is already covered by the test above.
        let index_start = bytes.len() / 2;
        for (at, value) in edits {
            let pos = index_start + at.index(bytes.len() - index_start);
            bytes[pos] = value;
        }
        format::reseal_checksums(&mut bytes);
        if let Ok(seg) = Segment::from_bytes(bytes) {
            exercise(&seg);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..600), seal in any::<bool>()) {
        if bytes.len() >= 8 {
            bytes[..8].copy_from_slice(&format::MAGIC);
        }
        if seal {
            format::reseal_checksums(&mut bytes);
        }
        if let Ok(seg) = Segment::from_bytes(bytes) {
            exercise(&seg);
        }
    }
}

fn series(id: SeriesId, host: &str, chunks: Vec<ModelChunk>) -> ModelSeries {
    ModelSeries {
        id,
        labels: Labels::from_metric("cpu", &[("host", host)]),
        chunks,
    }
}

fn chunk(kind: u8, mint: i64, maxt: i64, bytes: &[u8]) -> ModelChunk {
    ModelChunk {
        kind,
        mint,
        maxt,
        count: 3,
        bytes: bytes.to_vec(),
    }
}

#[test]
fn overlapping_chunks_are_found_behind_a_long_earlier_chunk() {
    let model = vec![series(
        1,
        "a",
        vec![
            chunk(0, 0, 1000, b"long"),
            chunk(0, 10, 20, b"s1"),
            chunk(0, 30, 40, b"s2"),
            chunk(0, 1200, 1300, b"late"),
            chunk(2, 5, 6, b"k2"),
        ],
    )];
    let seg = Segment::from_bytes(write_bytes(&model)).unwrap();
    let e = seg.series(1).unwrap().unwrap();
    let q = |k, a, b| -> Vec<Vec<u8>> {
        e.chunks(k, a, b)
            .map(|c| seg.chunk_bytes(&c.unwrap()).unwrap().to_vec())
            .collect()
    };
    assert_eq!(q(0, 500, 600), vec![b"long".to_vec()]);
    assert_eq!(
        q(0, 15, 35),
        vec![b"long".to_vec(), b"s1".to_vec(), b"s2".to_vec()]
    );
    assert_eq!(q(0, 1001, 1199), Vec::<Vec<u8>>::new());
    assert_eq!(q(0, 1000, 1200), vec![b"long".to_vec(), b"late".to_vec()]);
    assert_eq!(q(1, i64::MIN, i64::MAX), Vec::<Vec<u8>>::new());
    assert_eq!(q(2, 6, 6), vec![b"k2".to_vec()]);
    assert_eq!(q(0, 20, 10), Vec::<Vec<u8>>::new());
}

#[test]
fn readers_and_writers_can_cross_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    fn assert_send<T: Send>() {}
    assert_send_sync::<Segment>();
    assert_send::<SegmentWriter>();
    assert_send_sync::<SegmentError>();
}

#[test]
fn writer_rejects_bad_input_and_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = SegmentWriter::create(dir.path(), "w.seg", SEED).unwrap();
    add(&mut w, &series(5, "a", vec![chunk(0, 1, 2, b"x")])).unwrap();
    for id in [5, 4] {
        let err = add(&mut w, &series(id, "b", vec![])).unwrap_err();
        assert!(
            matches!(err, SegmentError::OutOfOrder { prev: 5, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("w.seg"), "{err}");
    }
    let err = add(&mut w, &series(6, "b", vec![chunk(0, 5, 4, b"")])).unwrap_err();
    assert!(
        matches!(err, SegmentError::InvalidChunk { id: 6, .. }),
        "{err}"
    );
    let err = add(
        &mut w,
        &series(6, "b", vec![chunk(1, 0, 4, b""), chunk(0, 0, 4, b"")]),
    )
    .unwrap_err();
    assert!(matches!(err, SegmentError::InvalidChunk { .. }), "{err}");
    let err = add(
        &mut w,
        &series(6, "b", vec![chunk(0, 9, 9, b""), chunk(0, 8, 9, b"")]),
    )
    .unwrap_err();
    assert!(matches!(err, SegmentError::InvalidChunk { .. }), "{err}");
    // Equal (kind, mint) is allowed: overlapping chunks of one kind are legal.
    add(
        &mut w,
        &series(6, "b", vec![chunk(0, 9, 9, b"1"), chunk(0, 9, 12, b"2")]),
    )
    .unwrap();
    let path = w.finish().unwrap();
    let seg = Segment::open(&path).unwrap();
    seg.verify().unwrap();
    assert_eq!(seg.series_ids().collect::<Vec<_>>(), vec![5, 6]);
    assert_eq!(seg.meta().num_chunks, 3);
}

#[test]
fn invalid_names_existing_files_and_empty_segments_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["", ".", "..", "a/b.seg", "x.seg.tmp"] {
        assert!(matches!(
            SegmentWriter::create(dir.path(), name, SEED),
            Err(SegmentError::InvalidInput { .. })
        ));
    }
    let w = SegmentWriter::create(dir.path(), "e.seg", SEED).unwrap();
    assert!(matches!(w.finish(), Err(SegmentError::Empty { .. })));
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "empty segment left files behind"
    );

    let path = write(
        dir.path(),
        "x.seg",
        &[series(1, "a", vec![chunk(0, 0, 0, b"")])],
    )
    .unwrap();
    assert!(matches!(
        SegmentWriter::create(dir.path(), "x.seg", SEED),
        Err(SegmentError::AlreadyExists { .. })
    ));
    assert!(Segment::open(&path).is_ok());
}

fn dir_names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

#[test]
fn publication_is_atomic_and_tmp_files_are_never_segments() {
    let dir = tempfile::tempdir().unwrap();
    let model: Vec<ModelSeries> = (0..200)
        .map(|i| {
            series(
                i,
                &format!("h{i}"),
                vec![chunk(0, i as i64, i as i64 + 10, &[i as u8; 300])],
            )
        })
        .collect();

    let mut w = SegmentWriter::create(dir.path(), "p.seg", SEED).unwrap();
    for s in &model {
        add(&mut w, s).unwrap();
    }
    // Mid-write, only the temporary file exists, and it is not a readable segment.
    assert_eq!(
        dir_names(dir.path()),
        BTreeSet::from(["p.seg.tmp".to_string()])
    );
    let err = Segment::open(&dir.path().join("p.seg")).unwrap_err();
    assert!(matches!(err, SegmentError::Io { .. }), "{err}");
    assert!(Segment::open(&dir.path().join("p.seg.tmp"))
        .unwrap_err()
        .is_corrupt());

    // A crash (no destructor runs) leaves the temporary file behind ...
    std::mem::forget(w);
    assert!(dir.path().join("p.seg.tmp").exists());
    // ... which a new writer for the same segment simply overwrites.
    let path = write(dir.path(), "p.seg", &model).unwrap();
    assert_eq!(dir_names(dir.path()), BTreeSet::from(["p.seg".to_string()]));
    check_against_model(&Segment::open(&path).unwrap(), &model, &[(0, 5, 50)]);

    // Every prefix of a complete file (what a torn write could leave) is refused.
    let bytes = std::fs::read(&path).unwrap();
    for cut in (0..bytes.len()).step_by(97) {
        assert!(Segment::from_bytes(bytes[..cut].to_vec()).is_err());
    }

    // Abort and drop both clean up.
    let mut w = SegmentWriter::create(dir.path(), "q.seg", SEED).unwrap();
    add(&mut w, &model[0]).unwrap();
    w.abort().unwrap();
    let mut w = SegmentWriter::create(dir.path(), "r.seg", SEED).unwrap();
    add(&mut w, &model[0]).unwrap();
    drop(w);
    assert_eq!(dir_names(dir.path()), BTreeSet::from(["p.seg".to_string()]));
}

#[test]
fn damaged_chunk_on_disk_is_reported_corrupt_with_the_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let model = vec![
        series(1, "a", vec![chunk(0, 0, 10, b"first chunk")]),
        series(2, "b", vec![chunk(0, 0, 10, b"second chunk")]),
    ];
    let path = write(dir.path(), "d.seg", &model).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let seg = Segment::from_bytes(bytes.clone()).unwrap();
    let c = seg
        .series(2)
        .unwrap()
        .unwrap()
        .all_chunks()
        .next()
        .unwrap()
        .unwrap();
    bytes[c.offset as usize + 3] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();

    // Opening reads only the index, so damage in chunk data surfaces when the chunk is read.
    let seg = Segment::open(&path).unwrap();
    let c1 = seg
        .series(1)
        .unwrap()
        .unwrap()
        .all_chunks()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(seg.chunk_bytes(&c1).unwrap(), b"first chunk");
    let err = seg.chunk_bytes(&c).unwrap_err();
    assert!(err.is_corrupt());
    assert_eq!(err.path(), path.as_path());
    assert!(err.to_string().contains("d.seg"), "{err}");
    assert!(seg.verify().unwrap_err().is_corrupt());

    // An entry pointing outside the data region is refused too.
    let bogus = ChunkEntry {
        offset: seg.file_size() - 4,
        ..c1
    };
    assert!(seg.chunk_bytes(&bogus).unwrap_err().is_corrupt());
}

#[test]
fn resealed_index_inconsistencies_are_caught_by_verify() {
    let model = vec![
        series(1, "a", vec![chunk(0, 0, 10, b"x")]),
        series(3, "b", vec![chunk(0, 5, 10, b"y")]),
    ];
    let bytes = write_bytes(&model);
    let seg = Segment::from_bytes(bytes.clone()).unwrap();
    let index_start = seg.section_range(format::Section::SeriesIndex).0;
    // Point series 3's index entry at series 1's table entry.
    let mut bad = bytes.clone();
    bad[index_start + 24..index_start + 32].copy_from_slice(&0u64.to_le_bytes());
    assert!(format::reseal_checksums(&mut bad));
    let seg = Segment::from_bytes(bad).unwrap();
    assert!(seg.series(3).unwrap_err().is_corrupt());
    assert!(seg.verify().is_err());
    // Change id 3 to 2 in the index only.
    let mut bad = bytes;
    bad[index_start + 16] = 2;
    assert!(format::reseal_checksums(&mut bad));
    let seg = Segment::from_bytes(bad).unwrap();
    assert!(seg.series(2).unwrap_err().is_corrupt());
    assert!(seg.verify().is_err());
}

fn big_model(n: u64, seed: u64) -> Vec<ModelSeries> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut id = 0u64;
    (0..n)
        .map(|i| {
            id += rng.gen_range(1..4);
            let chunks = (0..rng.gen_range(1..4))
                .map(|j| {
                    let mint = j * 7_200_000;
                    let len = rng.gen_range(8..48);
                    ModelChunk {
                        kind: 0,
                        mint,
                        maxt: mint + 7_199_999,
                        count: 120,
                        bytes: (0..len).map(|_| rng.gen()).collect(),
                    }
                })
                .collect();
            ModelSeries {
                id,
                labels: Labels::from_metric(
                    ["cpu", "mem", "disk"][(i % 3) as usize],
                    &[
                        ("host", &format!("host-{}", i % 1000)),
                        ("instance", &format!("i-{i}")),
                    ],
                ),
                chunks,
            }
        })
        .collect()
}

fn write_big(dir: &Path, model: &[ModelSeries]) -> PathBuf {
    write(dir, "big.seg", model).unwrap()
}

#[test]
fn hundred_thousand_series_open_from_the_index_and_look_up_by_binary_search() {
    let dir = tempfile::tempdir().unwrap();
    let model = big_model(100_000, 1);
    let path = write_big(dir.path(), &model);

    // Damage the chunk data: open must still succeed, showing it reads only the index.
    let seg = Segment::open(&path).unwrap();
    let (data_start, data_end) = seg.section_range(format::Section::Data);
    let index_bytes = seg.file_size() as usize - (data_end - data_start);
    drop(seg);
    let mut bytes = std::fs::read(&path).unwrap();
    let victim = &model[model.len() / 2];
    let probe = Segment::from_bytes(bytes.clone()).unwrap();
    let c = probe
        .series(victim.id)
        .unwrap()
        .unwrap()
        .all_chunks()
        .next()
        .unwrap()
        .unwrap();
    drop(probe);
    bytes[c.offset as usize] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    drop(bytes);

    let seg = Segment::open(&path).unwrap();
    assert_eq!(seg.meta().num_series, 100_000);
    assert!(index_bytes < seg.file_size() as usize);
    assert!(seg.chunk_bytes(&c).unwrap_err().is_corrupt());

    let mut rng = SmallRng::seed_from_u64(2);
    for _ in 0..20_000 {
        let s = &model[rng.gen_range(0..model.len())];
        let e = seg.series(s.id).unwrap().unwrap();
        assert_eq!(e.labels().unwrap(), s.labels);
        let q = rng.gen_range(0..3) * 7_200_000 + 1;
        let got: Vec<ChunkEntry> = e.chunks(0, q, q).collect::<Result<_, _>>().unwrap();
        let want = s
            .chunks
            .iter()
            .filter(|c| c.mint <= q && c.maxt >= q)
            .count();
        assert_eq!(got.len(), want);
        if s.id != victim.id {
            for g in got {
                assert_eq!(seg.chunk_bytes(&g).unwrap().len(), g.len as usize);
            }
        }
        // Ids between stored ones are absent.
        if s.id > 0 && model.binary_search_by_key(&(s.id - 1), |m| m.id).is_err() {
            assert!(seg.series(s.id - 1).unwrap().is_none());
        }
    }
    let cpu: Vec<SeriesId> = seg.postings("__name__", "cpu").unwrap().collect();
    let want: Vec<SeriesId> = model
        .iter()
        .filter(|s| s.labels.metric_name() == Some("cpu"))
        .map(|s| s.id)
        .collect();
    assert_eq!(cpu, want);
    assert_eq!(seg.postings("host", "host-7").unwrap().len(), 100);
    assert_eq!(seg.label_values("host").unwrap().len(), 1000);
    assert_eq!(seg.series_ids().len(), 100_000);
}

#[test]
#[ignore = "prints lookup latency; run with --ignored --nocapture (ideally --release)"]
fn lookup_latency_for_100k_series() {
    let dir = tempfile::tempdir().unwrap();
    let model = big_model(100_000, 3);
    let t = Instant::now();
    let path = write_big(dir.path(), &model);
    println!("write: {:?}", t.elapsed());
    let t = Instant::now();
    let seg = Segment::open(&path).unwrap();
    println!("open ({} bytes): {:?}", seg.file_size(), t.elapsed());
    let mut rng = SmallRng::seed_from_u64(4);
    let ids: Vec<SeriesId> = (0..200_000)
        .map(|_| model[rng.gen_range(0..model.len())].id)
        .collect();
    let t = Instant::now();
    let mut found = 0usize;
    for id in &ids {
        found += usize::from(seg.series(*id).unwrap().is_some());
    }
    let el = t.elapsed();
    println!(
        "series(id): {:?}/lookup ({found} found)",
        el / ids.len() as u32
    );
    let t = Instant::now();
    let mut chunks = 0usize;
    for id in &ids {
        let e = seg.series(*id).unwrap().unwrap();
        for c in e.chunks(0, 7_200_001, 7_200_001) {
            chunks += seg.chunk_bytes(&c.unwrap()).unwrap().len();
        }
    }
    println!(
        "series + chunks + chunk_bytes: {:?}/lookup ({chunks} bytes)",
        t.elapsed() / ids.len() as u32
    );
    let t = Instant::now();
    for i in 0..1000 {
        let _ = seg.postings("host", &format!("host-{i}")).unwrap().count();
    }
    println!("postings: {:?}/lookup", t.elapsed() / 1000);
    let t = Instant::now();
    seg.verify().unwrap();
    println!("verify: {:?}", t.elapsed());
}

/// Writes seed inputs for the `segment_index` fuzz target into `fuzz/seeds/segment_index/`.
#[test]
#[ignore = "writes into the source tree; run once before fuzzing"]
fn write_fuzz_seeds() {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/segment_index");
    std::fs::create_dir_all(&out).unwrap();
    let small = vec![
        series(1, "a", vec![chunk(0, 0, 10, b"abc"), chunk(1, 0, 60, b"r")]),
        series(4, "b", vec![chunk(0, 5, 20, b"defg"), chunk(0, 8, 9, b"")]),
    ];
    // The target reads its first byte as a mode (odd: reseal checksums before opening), so
    // each image is stored behind both modes.
    for (name, image) in [
        ("small", write_bytes(&small)),
        ("medium", write_bytes(&big_model(30, 5))),
    ] {
        for mode in [0u8, 1] {
            let mut input = vec![mode];
            input.extend_from_slice(&image);
            std::fs::write(out.join(format!("{name}-mode{mode}.bin")), input).unwrap();
        }
    }
}
