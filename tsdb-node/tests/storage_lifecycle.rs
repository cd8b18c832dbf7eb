//! Lifecycle behaviour of the engine that the model test does not cover: retention per
//! resolution, limits, label listings over time ranges, and start-up after a compaction was
//! interrupted at each step of its publish protocol.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tsdb_node::storage::catalog::LimitError;
use tsdb_node::storage::{
    Engine, EngineOptions, Labels, MatchOp, Matcher, Rejection, Retention, Sample, StorageError,
};

fn options(dir: &Path, clock: Arc<AtomicI64>) -> EngineOptions {
    let mut o = EngineOptions::new(dir);
    o.wal_sync = false;
    o.checkpoint_interval = Duration::from_secs(3600);
    o.block_ranges_ms = vec![1_000, 3_000, 6_000];
    o.downsample_resolutions_ms = vec![100, 500];
    o.out_of_order_window_ms = 500;
    o.head_chunk_samples = 16;
    o.block_chunk_samples = 64;
    o.retention = Retention {
        raw_ms: Some(10_000),
        rollup_1m_ms: None,
        rollup_5m_ms: None,
        rollup_1h_ms: None,
    };
    o.clock = Arc::new(move || clock.load(Ordering::SeqCst));
    o
}

fn name(n: &str) -> Vec<Matcher> {
    vec![Matcher::new(MatchOp::Equal, "__name__", n).unwrap()]
}

fn fill(engine: &Engine, metric: &str, from: i64, to: i64, step: usize) -> usize {
    let id = engine
        .series_id(&Labels::from_metric(metric, &[("room", "1")]))
        .unwrap();
    let batch: Vec<(u64, Sample)> = (from..to)
        .step_by(step)
        .map(|t| (id, Sample::new(t, (t % 97) as f64 / 10.0)))
        .collect();
    let out = engine.append(&batch).unwrap();
    assert!(out.rejected.is_empty());
    batch.len()
}

#[test]
fn retention_drops_raw_blocks_but_keeps_rollups() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicI64::new(0));
    let engine = Engine::open(options(dir.path(), clock.clone())).unwrap();
    let n = fill(&engine, "ret", 0, 12_000, 10);
    engine.run_maintenance().unwrap();
    let raw_before = engine.select(&name("ret"), 0, 11_999).unwrap();
    assert_eq!(raw_before[0].samples.len(), n);
    let rollup_before = engine.select_rollup(&name("ret"), 0, 5_999, 500).unwrap();
    assert!(
        engine.stats().rollup_segments > 0,
        "no rollups were written"
    );

    // 20 s later raw data older than 10 s is gone; the 500 ms rollups are kept forever.
    clock.store(20_000, Ordering::SeqCst);
    let deleted = engine.apply_retention().unwrap();
    assert!(deleted > 0);
    let raw_after = engine.select(&name("ret"), 0, 11_999).unwrap();
    let left = raw_after.first().map_or(0, |s| s.samples.len());
    assert!(left < n, "retention deleted nothing raw");
    assert!(
        raw_after
            .iter()
            .all(|s| s.samples.iter().all(|x| x.t >= 6_000)),
        "expired raw samples still served"
    );
    let rollup_after = engine.select_rollup(&name("ret"), 0, 5_999, 500).unwrap();
    assert_eq!(rollup_before.len(), 1);
    assert_eq!(rollup_after.len(), 1);
    assert_eq!(rollup_before[0].points.len(), rollup_after[0].points.len());
    for (a, b) in rollup_before[0].points.iter().zip(&rollup_after[0].points) {
        assert!(a.same_bits(b), "{a:?} != {b:?}");
    }
    // And it all survives a restart.
    drop(engine);
    let engine = Engine::open(options(dir.path(), clock)).unwrap();
    assert_eq!(
        engine.select_rollup(&name("ret"), 0, 5_999, 500).unwrap()[0]
            .points
            .len(),
        rollup_before[0].points.len()
    );
}

#[test]
fn limits_and_too_old_samples_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(dir.path(), Arc::new(AtomicI64::new(0)));
    o.limits.max_series = 2;
    let engine = Engine::open(o).unwrap();
    let bad = engine
        .series_id(&Labels::from_metric("1bad", &[]))
        .unwrap_err();
    assert!(
        matches!(
            bad,
            StorageError::Limit(LimitError::InvalidMetricName { .. })
        ),
        "{bad}"
    );
    let bad = engine
        .series_id(&Labels::from_metric("ok", &[("__x", "1")]))
        .unwrap_err();
    assert!(
        matches!(
            bad,
            StorageError::Limit(LimitError::ReservedLabelName { .. })
        ),
        "{bad}"
    );
    let a = engine.series_id(&Labels::from_metric("a", &[])).unwrap();
    engine.series_id(&Labels::from_metric("b", &[])).unwrap();
    let full = engine
        .series_id(&Labels::from_metric("c", &[]))
        .unwrap_err();
    assert!(
        matches!(
            full,
            StorageError::Limit(LimitError::TooManySeries { limit: 2 })
        ),
        "{full}"
    );
    assert!(full.to_string().contains('2'));

    let out = engine
        .append(&[
            (a, Sample::new(10_000, 1.0)),
            (a, Sample::new(9_400, 2.0)),
            (a, Sample::new(9_600, 3.0)),
            (999, Sample::new(10_000, 0.0)),
        ])
        .unwrap();
    assert_eq!(out.appended, 2);
    assert_eq!(out.rejected.len(), 2);
    assert_eq!(
        out.rejected[0],
        (
            1,
            Rejection::TooOld {
                t: 9_400,
                min_valid: 9_500
            }
        )
    );
    assert_eq!(out.rejected[1], (3, Rejection::UnknownSeries(999)));
    assert!(out.rejected[0]
        .1
        .to_string()
        .contains("older than the out-of-order window"));
}

#[test]
fn label_listings_respect_time_ranges_and_matchers() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(options(dir.path(), Arc::new(AtomicI64::new(0)))).unwrap();
    let early = engine
        .series_id(&Labels::from_metric("temp", &[("room", "early")]))
        .unwrap();
    let late = engine
        .series_id(&Labels::from_metric("hum", &[("site", "x")]))
        .unwrap();
    engine
        .append(&[
            (early, Sample::new(100, 1.0)),
            (late, Sample::new(5_000, 2.0)),
        ])
        .unwrap();
    engine.checkpoint().unwrap();
    assert_eq!(
        engine.label_names(&[], i64::MIN, i64::MAX).unwrap(),
        vec!["__name__", "room", "site"]
    );
    assert_eq!(
        engine.label_names(&[], 0, 1_000).unwrap(),
        vec!["__name__", "room"]
    );
    assert_eq!(
        engine.label_values("__name__", &[], 4_000, 6_000).unwrap(),
        vec!["hum"]
    );
    assert_eq!(
        engine
            .label_values("room", &name("hum"), i64::MIN, i64::MAX)
            .unwrap(),
        Vec::<String>::new()
    );
    let series = engine.series(&name("temp"), 0, 200).unwrap();
    assert_eq!(
        series,
        vec![Labels::from_metric("temp", &[("room", "early")])]
    );
}

/// Lists the segment files of a data directory.
fn segs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    v.sort();
    v
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn interrupted_compaction_shows_the_old_set_or_the_new_set() {
    let root = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicI64::new(0));
    // Build the "before" state: several level-0 segments in one 1 s window.
    let before = root.path().join("before");
    let engine = Engine::open(options(&before, clock.clone())).unwrap();
    for k in 0..3 {
        fill(&engine, "cmp", k * 300, k * 300 + 300, 7);
        engine.checkpoint().unwrap();
    }
    fill(&engine, "cmp", 2_000, 2_010, 5); // moves the newest time past the first window
    engine.checkpoint().unwrap();
    let truth = engine.select(&name("cmp"), i64::MIN, i64::MAX - 1).unwrap();
    drop(engine);
    let old_set = segs(&before.join("data"));

    // The "after" state: the same data compacted.
    let after = root.path().join("after");
    copy_dir(&before, &after);
    let engine = Engine::open(options(&after, clock.clone())).unwrap();
    assert!(engine.compact().unwrap() > 0);
    drop(engine);
    let new_set = segs(&after.join("data"));
    let outputs: Vec<&String> = new_set.iter().filter(|n| !old_set.contains(n)).collect();
    let inputs: Vec<&String> = old_set.iter().filter(|n| !new_set.contains(n)).collect();
    assert!(!outputs.is_empty() && !inputs.is_empty());
    let journal = format!(
        "{{\"outputs\":{},\"inputs\":{}}}",
        serde_json::to_string(&outputs).unwrap(),
        serde_json::to_string(&inputs).unwrap()
    );

    // Crash points: (a) journal written, outputs not yet renamed; (b) outputs renamed, no
    // input deleted; (c) some inputs deleted.
    for (case, renamed, inputs_deleted) in [("a", false, 0), ("b", true, 0), ("c", true, 1)] {
        let d = root.path().join(format!("crash-{case}"));
        copy_dir(&before, &d);
        let data = d.join("data");
        std::fs::write(data.join("compact-1.journal"), &journal).unwrap();
        for o in &outputs {
            let target = if renamed {
                data.join(o)
            } else {
                data.join(format!("{o}.tmp"))
            };
            std::fs::copy(after.join("data").join(o), target).unwrap();
        }
        for i in inputs.iter().take(inputs_deleted) {
            std::fs::remove_file(data.join(i)).unwrap();
        }
        let engine = Engine::open(options(&d, clock.clone())).unwrap();
        let got = engine.select(&name("cmp"), i64::MIN, i64::MAX - 1).unwrap();
        assert_eq!(got, truth, "case {case}: data differs after recovery");
        drop(engine);
        let files = segs(&data);
        if renamed {
            assert_eq!(files, new_set, "case {case}: expected the new set");
        } else {
            assert_eq!(files, old_set, "case {case}: expected the old set");
        }
        assert!(!data.join("compact-1.journal").exists());
    }
}
