//! Damage test: bit flips and truncations at random offsets of WAL and segment files.
//! Recovery must not panic, must keep all data before the damage, must quarantine a damaged
//! segment and report it, and must never serve a wrong value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tsdb_node::storage::{
    Engine, EngineOptions, Labels, MatchOp, Matcher, Retention, Sample, StorageError,
};

fn options(dir: &Path) -> EngineOptions {
    let mut o = EngineOptions::new(dir);
    o.wal_sync = false;
    o.checkpoint_interval = Duration::from_secs(3600);
    o.block_ranges_ms = vec![1_000, 3_000, 6_000];
    o.downsample_resolutions_ms = vec![100];
    o.out_of_order_window_ms = i64::MAX / 4;
    o.retention = Retention::keep_forever();
    o.head_chunk_samples = 8;
    o.block_chunk_samples = 16;
    o.clock = Arc::new(|| 0);
    o
}

fn all_matcher() -> Vec<Matcher> {
    vec![Matcher::new(MatchOp::RegexMatch, "__name__", "dmg_.*").unwrap()]
}

type Truth = BTreeMap<(String, i64), u64>;

fn read_all(engine: &Engine) -> Result<Truth, StorageError> {
    let mut out = Truth::new();
    for s in engine.select(&all_matcher(), i64::MIN, i64::MAX - 1)? {
        for x in s.samples {
            out.insert((s.labels.to_string(), x.t), x.v.to_bits());
        }
    }
    Ok(out)
}

fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    v.sort();
    v
}

fn damage(path: &Path, rng: &mut SmallRng) -> (u64, &'static str) {
    let mut bytes = std::fs::read(path).unwrap();
    let off = rng.gen_range(0..bytes.len());
    if rng.gen_bool(0.5) {
        bytes[off] ^= 1 << rng.gen_range(0..8);
        std::fs::write(path, &bytes).unwrap();
        (off as u64, "bit flip")
    } else {
        bytes.truncate(off);
        std::fs::write(path, &bytes).unwrap();
        (off as u64, "truncation")
    }
}

#[test]
fn wal_damage_keeps_everything_before_the_damage() {
    let mut rng = SmallRng::seed_from_u64(7);
    for iter in 0..120 {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(options(dir.path())).unwrap();
        let labels = Labels::from_metric("dmg_wal", &[("i", "0")]);
        let id = engine.series_id(&labels).unwrap();
        let wal_file = files_with_suffix(&dir.path().join("wal"), ".wal")
            .pop()
            .unwrap();
        // (end offset of the batch's record, samples)
        let mut batches: Vec<(u64, Vec<Sample>)> = Vec::new();
        for b in 0..25i64 {
            let samples: Vec<Sample> = (0..rng.gen_range(1..30))
                .map(|k| Sample::new(b * 1000 + k, rng.gen_range(-500..500) as f64 / 10.0))
                .collect();
            let batch: Vec<(u64, Sample)> = samples.iter().map(|s| (id, *s)).collect();
            engine.append(&batch).unwrap();
            batches.push((std::fs::metadata(&wal_file).unwrap().len(), samples));
        }
        drop(engine);
        let (off, kind) = damage(&wal_file, &mut rng);
        let engine = Engine::open(options(dir.path()))
            .unwrap_or_else(|e| panic!("iter {iter}: reopen after {kind} at {off}: {e}"));
        let got = read_all(&engine).unwrap();
        let key = labels.to_string();
        let mut prefix_ended = false;
        for (end, samples) in &batches {
            let present = samples
                .iter()
                .filter(|s| got.get(&(key.clone(), s.t)) == Some(&s.v.to_bits()))
                .count();
            if *end <= off {
                assert_eq!(
                    present,
                    samples.len(),
                    "iter {iter}: batch before the {kind} at {off} lost"
                );
            }
            // The WAL is one file here, so what survives is a prefix of whole batches.
            assert!(
                present == 0 || present == samples.len(),
                "iter {iter}: batch torn by {kind} at {off}"
            );
            if present == 0 {
                prefix_ended = true;
            } else {
                assert!(
                    !prefix_ended,
                    "iter {iter}: hole in the recovered WAL after {kind} at {off}"
                );
            }
        }
        // Nothing but written values.
        let truth: Truth = batches
            .iter()
            .flat_map(|(_, s)| s.iter().map(|x| ((key.clone(), x.t), x.v.to_bits())))
            .collect();
        for (k, v) in &got {
            assert_eq!(truth.get(k), Some(v), "iter {iter}: value never written");
        }
        // The repaired WAL takes new writes and survives another restart.
        // (The damage may have taken the series definition with it: resolve it again.)
        let id = engine.series_id(&labels).unwrap();
        let out = engine.append(&[(id, Sample::new(1_000_000, 1.0))]).unwrap();
        assert_eq!(out.appended, 1);
        drop(engine);
        let engine = Engine::open(options(dir.path())).unwrap();
        assert!(read_all(&engine)
            .unwrap()
            .contains_key(&(key.clone(), 1_000_000)));
    }
}

#[test]
fn segment_damage_is_quarantined_never_served() {
    let mut rng = SmallRng::seed_from_u64(11);
    for iter in 0..120 {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(options(dir.path())).unwrap();
        let mut truth = Truth::new();
        let mut batch = Vec::new();
        for s in 0..6 {
            let labels = Labels::from_metric("dmg_seg", &[("s", &s.to_string())]);
            let id = engine.series_id(&labels).unwrap();
            // Four block windows of 1000 ms, so the head is cut into four segments.
            for t in (0..4000).step_by(37) {
                let v = ((t * 7 + s * 13) % 300) as f64 / 10.0;
                batch.push((id, Sample::new(t, v)));
                truth.insert((labels.to_string(), t), v.to_bits());
            }
        }
        engine.append(&batch).unwrap();
        engine.checkpoint().unwrap();
        if iter % 2 == 1 {
            engine.run_maintenance().unwrap();
        }
        drop(engine);
        let data = dir.path().join("data");
        let segs = files_with_suffix(&data, ".seg");
        assert!(!segs.is_empty());
        let victim = &segs[rng.gen_range(0..segs.len())];
        let victim_name = victim.file_name().unwrap().to_string_lossy().to_string();
        // The window of the damaged file, from its name (`...w<start>.<end>...`).
        let (ws, we) = {
            let parts: Vec<&str> = victim_name.split('.').collect();
            (
                parts[3][1..].parse::<i64>().unwrap(),
                parts[4].parse::<i64>().unwrap(),
            )
        };
        let (off, kind) = damage(victim, &mut rng);
        let engine = Engine::open(options(dir.path()))
            .unwrap_or_else(|e| panic!("iter {iter}: reopen after {kind} at {off}: {e}"));
        let first = read_all(&engine);
        let got = match first {
            Ok(g) => g,
            Err(StorageError::CorruptSegment { path, .. }) => {
                assert!(path.ends_with(&victim_name), "iter {iter}: blamed {path:?}");
                read_all(&engine)
                    .unwrap_or_else(|e| panic!("iter {iter}: query after quarantine: {e}"))
            }
            Err(e) => panic!("iter {iter}: unexpected error {e}"),
        };
        for (k, v) in &got {
            assert_eq!(
                truth.get(k),
                Some(v),
                "iter {iter}: wrong value served after {kind} at {off} of {victim_name}"
            );
        }
        for (k, v) in &truth {
            if k.1 < ws || k.1 > we {
                assert_eq!(
                    got.get(k),
                    Some(v),
                    "iter {iter}: undamaged data lost ({kind} at {off} of {victim_name})"
                );
            }
        }
        let missing = truth.keys().any(|k| !got.contains_key(k));
        if missing {
            assert!(
                engine
                    .quarantined()
                    .iter()
                    .any(|q| q.file.ends_with(&victim_name)),
                "iter {iter}: data missing but the damaged segment was not reported"
            );
            assert!(data.join("quarantine").join(&victim_name).exists());
        }
    }
}
