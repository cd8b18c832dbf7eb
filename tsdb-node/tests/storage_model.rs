//! Model-based property test of the storage engine: random sequences of appends (in order, out
//! of order, duplicates, too old), deletions, checkpoints, compactions, downsampling and
//! restarts must answer every query exactly like a plain in-memory model.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use tsdb_node::storage::codec::Aggregate;
use tsdb_node::storage::downsample::buckets;
use tsdb_node::storage::layout::bucket_start;
use tsdb_node::storage::{
    Engine, EngineOptions, Labels, MatchOp, Matcher, Retention, RollupPoint, Sample,
};

const SERIES: &[(&str, &[(&str, &str)])] = &[
    ("temp", &[("dev", "a"), ("room", "1")]),
    ("temp", &[("dev", "b")]),
    ("hum", &[("dev", "a")]),
    ("hum", &[("dev", "c"), ("room", "2")]),
    ("energy", &[]),
];

const T_MAX: i64 = 3000;
const OOO_WINDOW: i64 = 700;
const RESOLUTIONS: [i64; 3] = [10, 50, 100];

fn labels(i: usize) -> Labels {
    Labels::from_metric(SERIES[i].0, SERIES[i].1)
}

fn matcher_sets() -> Vec<Vec<Matcher>> {
    let m = |op, n: &str, v: &str| Matcher::new(op, n, v).unwrap();
    vec![
        vec![m(MatchOp::Equal, "__name__", "temp")],
        vec![m(MatchOp::RegexMatch, "dev", "a|b")],
        vec![m(MatchOp::NotEqual, "room", "1")],
        vec![m(MatchOp::Equal, "room", "")],
        vec![m(MatchOp::RegexMatch, "__name__", ".+")],
        vec![
            m(MatchOp::RegexNoMatch, "__name__", "hum|energy"),
            m(MatchOp::RegexMatch, "room", ".*"),
        ],
        vec![
            m(MatchOp::Equal, "dev", "a"),
            m(MatchOp::Equal, "__name__", "hum"),
        ],
        vec![m(MatchOp::Equal, "__name__", "nothing")],
    ]
}

#[derive(Clone, Debug)]
enum Op {
    Append(Vec<(usize, i64, f64)>),
    Delete { set: usize, mint: i64, maxt: i64 },
    Checkpoint,
    Compact,
    CompactAll,
    Downsample,
    Restart,
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        6 => (-300i64..300).prop_map(|i| i as f64 / 10.0),
        1 => any::<u64>().prop_map(f64::from_bits),
        1 => Just(f64::NAN),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let sample = (0..SERIES.len(), 0..T_MAX, value());
    prop_oneof![
        10 => prop::collection::vec(sample, 1..20).prop_map(Op::Append),
        1 => (0..matcher_sets().len(), 0..T_MAX, 0..400i64).prop_map(|(set, mint, len)| Op::Delete { set, mint, maxt: mint + len }),
        2 => Just(Op::Checkpoint),
        2 => Just(Op::Compact),
        1 => Just(Op::CompactAll),
        1 => Just(Op::Downsample),
        1 => Just(Op::Restart),
    ]
}

#[derive(Default)]
struct Model {
    data: Vec<BTreeMap<i64, f64>>,
    max_t: Option<i64>,
    window: i64,
}

impl Model {
    fn new(window: i64) -> Self {
        Model {
            data: vec![BTreeMap::new(); SERIES.len()],
            max_t: None,
            window,
        }
    }

    fn append(&mut self, i: usize, t: i64, v: f64) -> bool {
        if let Some(m) = self.max_t {
            if t < m - self.window {
                return false;
            }
        }
        self.max_t = Some(self.max_t.map_or(t, |m| m.max(t)));
        self.data[i].insert(t, v);
        true
    }

    fn selected(&self, matchers: &[Matcher]) -> Vec<usize> {
        (0..SERIES.len())
            .filter(|&i| matchers.iter().all(|m| m.matches_labels(&labels(i))))
            .collect()
    }

    fn range(&self, i: usize, mint: i64, maxt: i64) -> Vec<Sample> {
        self.data[i]
            .range(mint..=maxt)
            .map(|(&t, &v)| Sample::new(t, v))
            .collect()
    }
}

fn options(dir: &std::path::Path, window: i64) -> EngineOptions {
    let mut o = EngineOptions::new(dir);
    o.wal_sync = false;
    o.wal_segment_size = 64 << 10;
    o.checkpoint_interval = Duration::from_secs(3600);
    o.out_of_order_window_ms = window;
    o.block_ranges_ms = vec![200, 600, 1200];
    o.max_level0_segments = 3;
    o.downsample_resolutions_ms = RESOLUTIONS.to_vec();
    o.retention = Retention::keep_forever();
    o.head_chunk_samples = 4;
    o.block_chunk_samples = 8;
    o.clock = Arc::new(|| 0);
    o
}

fn same(a: &[Sample], b: &[Sample]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

fn check(
    engine: &Engine,
    model: &Model,
    set: usize,
    mint: i64,
    maxt: i64,
) -> Result<(), TestCaseError> {
    let matchers = &matcher_sets()[set];
    let selected = model.selected(matchers);
    // select
    let got = engine
        .select(matchers, mint, maxt)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let expected: Vec<(Labels, Vec<Sample>)> = selected
        .iter()
        .map(|&i| (labels(i), model.range(i, mint, maxt)))
        .filter(|(_, s)| !s.is_empty())
        .collect();
    let mut got_sorted: Vec<(Labels, Vec<Sample>)> =
        got.into_iter().map(|s| (s.labels, s.samples)).collect();
    got_sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut exp_sorted = expected.clone();
    exp_sorted.sort_by(|a, b| a.0.cmp(&b.0));
    prop_assert_eq!(
        got_sorted.len(),
        exp_sorted.len(),
        "series count for set {} [{}, {}]",
        set,
        mint,
        maxt
    );
    for (g, e) in got_sorted.iter().zip(&exp_sorted) {
        prop_assert_eq!(&g.0, &e.0);
        prop_assert!(
            same(&g.1, &e.1),
            "samples of {} in [{}, {}]:\n got {:?}\nwant {:?}",
            e.0,
            mint,
            maxt,
            g.1,
            e.1
        );
    }
    // aggregate over [mint, maxt + 1)
    let aggs = engine
        .aggregate(matchers, mint, maxt + 1)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(aggs.len(), exp_sorted.len());
    for a in aggs {
        let (_, samples) = exp_sorted
            .iter()
            .find(|(l, _)| *l == a.labels)
            .expect("series expected");
        let mut want = Aggregate::new();
        samples.iter().for_each(|s| want.add(*s));
        let g = &a.aggregate;
        prop_assert_eq!(g.count, want.count);
        prop_assert_eq!(g.sum.to_bits(), want.sum.to_bits(), "sum of {}", a.labels);
        prop_assert_eq!(g.min.to_bits(), want.min.to_bits(), "min of {}", a.labels);
        prop_assert_eq!(g.max.to_bits(), want.max.to_bits(), "max of {}", a.labels);
        prop_assert_eq!(g.first, want.first);
        prop_assert_eq!(g.last, want.last);
    }
    // rollups
    for res in RESOLUTIONS {
        let got = engine
            .select_rollup(matchers, mint, maxt, res)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut n = 0;
        for &i in &selected {
            let lo = bucket_start(mint, res);
            let hi = bucket_start(maxt, res).saturating_add(res - 1);
            let want: Vec<RollupPoint> = buckets(&model.range(i, lo, hi), res)
                .iter()
                .filter(|(b, _)| *b >= mint && *b <= maxt)
                .filter_map(|(b, a)| RollupPoint::from_aggregate(*b, a))
                .collect();
            if want.is_empty() {
                continue;
            }
            n += 1;
            let g = got.iter().find(|s| s.labels == labels(i));
            prop_assert!(g.is_some(), "rollup {} missing for {}", res, labels(i));
            let g = &g.unwrap().points;
            prop_assert_eq!(
                g.len(),
                want.len(),
                "rollup {} of {} in [{}, {}]: {:?} vs {:?}",
                res,
                labels(i),
                mint,
                maxt,
                g,
                want
            );
            for (x, y) in g.iter().zip(&want) {
                prop_assert!(
                    x.same_bits(y),
                    "rollup {} of {}: got {:?} want {:?}",
                    res,
                    labels(i),
                    x,
                    y
                );
            }
        }
        prop_assert_eq!(got.len(), n, "rollup series count");
    }
    Ok(())
}

fn run(ops: Vec<Op>, queries: Vec<(usize, i64, i64)>, window: i64) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut engine = Engine::open(options(dir.path(), window)).unwrap();
    let mut model = Model::new(window);
    let sets = matcher_sets();
    let mut ids: Vec<u64> = (0..SERIES.len())
        .map(|i| engine.series_id(&labels(i)).unwrap())
        .collect();
    for op in ops {
        match op {
            Op::Append(batch) => {
                let b: Vec<(u64, Sample)> = batch
                    .iter()
                    .map(|&(i, t, v)| (ids[i], Sample::new(t, v)))
                    .collect();
                let out = engine.append(&b).unwrap();
                let mut accepted = 0;
                for (k, &(i, t, v)) in batch.iter().enumerate() {
                    let rejected = out.rejected.iter().any(|(r, _)| *r == k);
                    let model_ok = model.append(i, t, v);
                    prop_assert_eq!(!rejected, model_ok, "acceptance of sample {} at {}", k, t);
                    accepted += model_ok as usize;
                }
                prop_assert_eq!(out.appended, accepted);
            }
            Op::Delete { set, mint, maxt } => {
                engine.delete(&sets[set], mint, maxt).unwrap();
                for i in model.selected(&sets[set]) {
                    let keys: Vec<i64> =
                        model.data[i].range(mint..=maxt).map(|(t, _)| *t).collect();
                    keys.iter().for_each(|t| {
                        model.data[i].remove(t);
                    });
                }
            }
            Op::Checkpoint => engine.checkpoint().unwrap(),
            Op::Compact => {
                engine.compact().unwrap();
            }
            // Folds open windows too, whose settled prefix `downsample` then rolls up.
            Op::CompactAll => {
                engine.compact_all().unwrap();
            }
            Op::Downsample => {
                engine.downsample().unwrap();
            }
            Op::Restart => {
                drop(engine);
                engine = Engine::open(options(dir.path(), window)).unwrap();
                // Ids are stable while a series has data or a definition in the WAL; clients
                // resolve labels again after a restart.
                let again: Vec<u64> = (0..SERIES.len())
                    .map(|i| engine.series_id(&labels(i)).unwrap())
                    .collect();
                for (i, (a, b)) in ids.iter().zip(&again).enumerate() {
                    if !model.data[i].is_empty() {
                        prop_assert_eq!(a, b, "id of a series with data changed across a restart");
                    }
                }
                ids = again;
            }
        }
    }
    for (set, mint, len) in queries {
        check(&engine, &model, set, mint, mint + len)?;
    }
    check(&engine, &model, 4, i64::MIN, i64::MAX - 1)?;
    // After a full maintenance pass and a restart the answers must not change.
    engine.run_maintenance().unwrap();
    drop(engine);
    let engine = Engine::open(options(dir.path(), window)).unwrap();
    check(&engine, &model, 4, -100, T_MAX + 100)?;
    check(&engine, &model, 1, 0, T_MAX)?;
    prop_assert!(engine.quarantined().is_empty());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, max_shrink_iters: 2000, .. ProptestConfig::default() })]

    #[test]
    fn engine_matches_model(
        ops in prop::collection::vec(op(), 1..60),
        queries in prop::collection::vec((0..matcher_sets().len(), -50..T_MAX, 0..T_MAX), 1..6),
        // A window wider than the largest block makes rollups that late samples then
        // invalidate, exercising the querier's fallback to raw data.
        window in prop_oneof![Just(OOO_WINDOW), Just(1_000_000i64)],
    ) {
        run(ops, queries, window)?;
    }
}

/// A fixed scenario that exercises every path at least once, so a failure here is easy to read.
#[test]
fn scripted_scenario() {
    let mut ops = Vec::new();
    for round in 0..6i64 {
        let base = round * 450;
        let batch: Vec<(usize, i64, f64)> = (0..40)
            .map(|k| ((k % 5) as usize, base + k * 11, (k as f64) / 10.0))
            .collect();
        ops.push(Op::Append(batch));
        ops.push(Op::Append(vec![
            (0, base + 5, 9.9),
            (0, base + 11, 7.7),
            (2, base + 33, -1.5),
        ]));
        ops.push(Op::Checkpoint);
        if round % 2 == 1 {
            ops.push(Op::Delete {
                set: 1,
                mint: base + 20,
                maxt: base + 120,
            });
            ops.push(Op::Compact);
            ops.push(Op::Downsample);
        }
        if round == 3 {
            ops.push(Op::Restart);
        }
        if round == 4 {
            ops.push(Op::CompactAll);
            ops.push(Op::Downsample);
        }
    }
    run(
        ops.clone(),
        vec![(4, 0, T_MAX), (0, 100, 900), (5, 1000, 2000)],
        OOO_WINDOW,
    )
    .unwrap();
    run(
        ops,
        vec![(4, 0, T_MAX), (0, 100, 900), (5, 1000, 2000)],
        1_000_000,
    )
    .unwrap();
}
