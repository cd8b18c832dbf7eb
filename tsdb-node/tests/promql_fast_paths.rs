//! PromQL's fast paths give the answers of the plain ones:
//! - rollups: on a store where downsampling has run, aligned `*_over_time` windows are answered
//!   from rollups (the engine's counter says so) and equal reading every raw sample;
//! - series-by-series evaluation of common range-query shapes equals the step loop.

use std::sync::Arc;

use tsdb_node::promql::{
    render_data, QueryEngine, QueryLimits, QueryResult, Value, STALE_NAN_BITS,
};
use tsdb_node::storage::{Engine, EngineOptions, Labels, Retention, Sample};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
/// A day boundary, so that every resolution's buckets line up with it.
const T0: i64 = 1_767_225_600_000;
const STEP: i64 = 10_000;
/// Eight hours of 10 s samples.
const N: i64 = 8 * 360;

fn value(i: i64, series: i64) -> f64 {
    ((20.0 + 5.0 * ((i as f64) / 37.0 + series as f64).sin()) * 10.0).round() / 10.0
}

/// Five series; `kind="stale"` has a staleness marker and `kind="nan"` a NaN (both must fall
/// back to raw reads); `kind="gappy"` skips every sample at a whole minute, so window edges
/// hold no sample. The last `head_from` steps stay in the head, newer than any rollup.
fn store(dir: &std::path::Path, head_from: i64) -> Arc<Engine> {
    let mut opts = EngineOptions::new(dir);
    opts.wal_sync = false;
    opts.retention = Retention::keep_forever();
    opts.out_of_order_window_ms = 5 * MIN;
    // Blocks small enough that most of the eight hours is rolled up.
    opts.block_ranges_ms = vec![HOUR, 2 * HOUR];
    let e = Engine::open(opts).unwrap();
    let series: Vec<Labels> = ["a", "b", "stale", "nan", "gappy"]
        .iter()
        .map(|k| Labels::from_metric("temp", &[("kind", k)]))
        .collect();
    let batch = |from: i64, to: i64| {
        let mut b = Vec::new();
        for i in from..to {
            let t = T0 + i * STEP;
            for (n, l) in series.iter().enumerate() {
                let kind = l.get("kind").unwrap_or("");
                let v = match kind {
                    "stale" if i == 1000 => f64::from_bits(STALE_NAN_BITS),
                    "nan" if i == 2000 => f64::NAN,
                    "gappy" if t % MIN == 0 => continue,
                    _ => value(i, n as i64),
                };
                b.push((l.clone(), Sample::new(t, v)));
            }
        }
        b
    };
    let out = e.append_labeled(&batch(0, N - head_from)).unwrap();
    assert!(out.rejected.is_empty());
    e.flush().unwrap();
    e.compact_all().unwrap();
    assert!(e.downsample().unwrap() > 0, "no rollups were written");
    let out = e.append_labeled(&batch(N - head_from, N)).unwrap();
    assert!(out.rejected.is_empty());
    Arc::new(e)
}

/// Labels and points of a result, as a range result's matrix or an instant result's vector.
fn points(r: QueryResult) -> Vec<(Labels, Vec<(i64, f64)>)> {
    match r.value {
        Value::Matrix(m) => m,
        Value::Vector(v) => {
            let mut m: Vec<_> = v.into_iter().map(|(l, t, x)| (l, vec![(t, x)])).collect();
            m.sort_by(|a, b| a.0.cmp(&b.0));
            m
        }
        other => panic!("unexpected result {other:?}"),
    }
}

fn assert_same(q: &str, want: QueryResult, got: QueryResult) {
    let (want, got) = (points(want), points(got));
    assert_eq!(
        want.iter().map(|s| &s.0).collect::<Vec<_>>(),
        got.iter().map(|s| &s.0).collect::<Vec<_>>(),
        "{q}: series differ"
    );
    for ((l, w), (_, g)) in want.iter().zip(&got) {
        assert_eq!(w.len(), g.len(), "{q} {l}: point counts differ");
        for (pw, pg) in w.iter().zip(g) {
            let same = pw.0 == pg.0
                && ((pw.1.is_nan() && pg.1.is_nan())
                    || pw.1 == pg.1
                    || (pw.1 - pg.1).abs() <= 1e-12 * pw.1.abs().max(pg.1.abs()));
            assert!(same, "{q} {l}: raw {pw:?} vs rollup {pg:?}");
        }
    }
}

#[test]
fn aligned_windows_read_rollups_and_equal_raw_answers() {
    let dir = tempfile::tempdir().unwrap();
    let engine = store(dir.path(), 40);
    assert!(engine.stats().rollup_segments > 0);
    let raw = QueryEngine::new(engine.clone(), QueryLimits::default()).with_rollups(false);
    let rolled = QueryEngine::new(engine, QueryLimits::default());
    let queries = [
        "sum_over_time(temp[5m])",
        "avg_over_time(temp[5m])",
        "min_over_time(temp[10m])",
        "max_over_time(temp[1h])",
        "count_over_time(temp[5m])",
        "avg_over_time(temp{kind=~\"a|gappy\"}[15m] offset 5m)",
        "sum by (kind) (avg_over_time(temp[5m])) / 2",
        "avg(temp[5m])",
        "count(temp[1h])",
        "max(temp{kind!=\"nan\"}[5m])",
    ];
    // Grids: 5-minute and hourly steps over the whole store, the head's newest data included.
    let grids = [
        (T0 + 5 * MIN, T0 + N * STEP + 5 * MIN, 5 * MIN),
        (T0 + HOUR, T0 + N * STEP, HOUR),
        (T0 + 2 * HOUR, T0 + 3 * HOUR, MIN),
    ];
    let mut rollup_reads = 0;
    for q in queries {
        for &(s, e, step) in &grids {
            let want = raw.range(q, s, e, step).unwrap();
            let got = rolled.range(q, s, e, step).unwrap();
            assert_same(q, want, got);
            assert!(
                rolled.rollup_selectors_total() > rollup_reads,
                "{q} at step {step} did not read rollups"
            );
            rollup_reads = rolled.rollup_selectors_total();
        }
        let t = T0 + 4 * HOUR;
        assert_same(q, raw.instant(q, t).unwrap(), rolled.instant(q, t).unwrap());
        assert!(rolled.rollup_selectors_total() > rollup_reads);
        rollup_reads = rolled.rollup_selectors_total();
    }
    assert_eq!(raw.rollup_selectors_total(), 0);
    // Unaligned grids, other functions and subqueries read raw samples.
    for (q, s, step) in [
        ("sum_over_time(temp[5m])", T0 + 5 * MIN + 1, 5 * MIN),
        ("sum_over_time(temp[5m])", T0 + 5 * MIN, 90_000),
        ("rate(temp[5m])", T0 + 5 * MIN, 5 * MIN),
        (
            "max_over_time(sum_over_time(temp[5m])[30m:5m])",
            T0 + HOUR,
            5 * MIN,
        ),
    ] {
        let want = raw.range(q, s, s + HOUR, step).unwrap();
        let got = rolled.range(q, s, s + HOUR, step).unwrap();
        assert_same(q, want, got);
        assert_eq!(rolled.rollup_selectors_total(), rollup_reads, "{q}");
    }
}

#[test]
fn stale_and_nan_series_fall_back_to_raw() {
    let dir = tempfile::tempdir().unwrap();
    let engine = store(dir.path(), 0);
    let qe = QueryEngine::new(engine, QueryLimits::default());
    // The marker at step 1000 is not a sample: the 5-minute window holding it counts 30, not 31.
    let marker_t = T0 + 1000 * STEP;
    let end = marker_t - marker_t % (5 * MIN) + 5 * MIN;
    let r = points(
        qe.instant("count_over_time(temp{kind=\"stale\"}[5m])", end)
            .unwrap(),
    );
    assert_eq!(r[0].1[0].1, 30.0);
    // The NaN is a sample and poisons the sum, as in Prometheus.
    let nan_t = T0 + 2000 * STEP;
    let end = nan_t - nan_t % (5 * MIN) + 5 * MIN;
    let r = points(
        qe.instant("sum_over_time(temp{kind=\"nan\"}[5m])", end)
            .unwrap(),
    );
    assert!(r[0].1[0].1.is_nan());
    assert!(qe.rollup_selectors_total() >= 2);
}

#[test]
fn series_by_series_evaluation_equals_the_step_loop() {
    let dir = tempfile::tempdir().unwrap();
    let engine = store(dir.path(), 40);
    let step_loop = QueryEngine::new(engine.clone(), QueryLimits::default())
        .with_series_eval(false)
        .with_rollups(false);
    let fast = QueryEngine::new(engine.clone(), QueryLimits::default());
    let fast_raw = QueryEngine::new(engine.clone(), QueryLimits::default()).with_rollups(false);
    // Streaming off: series loaded first, then evaluated series by series.
    let loaded = QueryEngine::new(engine.clone(), QueryLimits::default())
        .with_rollups(false)
        .with_streaming(false);
    // Streamed on one thread (the sequential fold) and on three (partial folds merged).
    let streamed: Vec<QueryEngine> = [1, 3]
        .iter()
        .map(|&n| {
            QueryEngine::new(engine.clone(), QueryLimits::default())
                .with_rollups(false)
                .with_threads(n)
        })
        .collect();
    let queries = [
        "temp",
        "temp offset 3m",
        "rate(temp[5m])",
        "increase(temp[2m] offset 1m)",
        "deriv(temp[10m])",
        "last_over_time(temp[1m])",
        "stddev_over_time(temp[7m])",
        "changes(temp[30m])",
        "avg(temp)",
        "sum by (kind) (temp)",
        "max without (kind) (temp)",
        "count(rate(temp[5m]))",
        "sum(rate(temp[5m]))",
        "avg(avg_over_time(temp[5m]))",
        "stdvar by (kind) (max_over_time(temp[15m]))",
        "group(temp)",
        "min((sum_over_time(temp[5m])))",
        "count(temp offset 2m)",
        "max by (kind) (rate(temp[5m]))",
        "avg without (kind) (increase(temp[10m]))",
        "stddev(temp)",
    ];
    for q in queries {
        for &(s, e, step) in &[
            (T0, T0 + N * STEP + 10 * MIN, 5 * MIN),
            (T0 + 7_000, T0 + 3 * HOUR, 37_000),
        ] {
            let want = step_loop.range(q, s, e, step).unwrap();
            assert_same(q, want.clone(), fast.range(q, s, e, step).unwrap());
            assert_same(q, want.clone(), loaded.range(q, s, e, step).unwrap());
            for qe in &streamed {
                assert_same(q, want.clone(), qe.range(q, s, e, step).unwrap());
            }
            assert_same(q, want, fast_raw.range(q, s, e, step).unwrap());
        }
    }
    // Two series that differ only by name collide once `rate` drops the name: the step loop's
    // error is kept.
    let other = Labels::from_metric("other", &[("kind", "a")]);
    let end = T0 + (N - 1) * STEP;
    let batch: Vec<_> = (0..12)
        .map(|i| {
            (
                other.clone(),
                Sample::new(end - 2 * MIN + i * STEP, i as f64),
            )
        })
        .collect();
    assert!(engine.append_labeled(&batch).unwrap().rejected.is_empty());
    let q = "rate({__name__=~\"temp|other\"}[5m])";
    let want = step_loop.range(q, end - 10 * MIN, end, MIN).unwrap_err();
    let got = fast.range(q, end - 10 * MIN, end, MIN).unwrap_err();
    assert_eq!(want.to_string(), got.to_string());
}

/// Instant queries of one range selector, streamed from the engine, and instant queries
/// evaluated inline (on the caller's thread) give exactly the loading path's answers.
#[test]
fn streamed_and_inline_instant_queries_equal_the_loading_path() {
    use tsdb_node::promql::QueryOptions;
    let dir = tempfile::tempdir().unwrap();
    let engine = store(dir.path(), 40);
    // Rollups on in both: at the aligned time both read them, elsewhere neither can.
    let loading = QueryEngine::new(engine.clone(), QueryLimits::default()).with_streaming(false);
    let fast = QueryEngine::new(engine.clone(), QueryLimits::default());
    let opts = QueryOptions::default();
    let queries = [
        "temp[1h]",
        "temp{kind=\"stale\"}[3h]",
        "temp{kind=\"a\"}[8h] offset 10m",
        "avg_over_time(temp[1h])",
        "avg_over_time(temp{kind=\"a\"}[86390s])",
        "sum_over_time(temp{kind=\"nan\"}[5h])",
        "count_over_time(temp{kind=\"stale\"}[4h])",
        "min_over_time(temp[17m])",
        "max_over_time(temp[2h])",
        "last_over_time(temp[1m])",
        "rate(temp[5m])",
        "stddev_over_time(temp{kind=\"gappy\"}[30m])",
        "quantile_over_time(0.5, temp{kind=\"a\"}[1h])",
        "temp{kind=\"b\"}",
        "sum(temp)",
        "1 + 2",
    ];
    // Rendered, so that NaN answers compare equal and every bit of a value counts.
    let json = |r: QueryResult| render_data(&r);
    // Unaligned times (no rollups answer them), one aligned, and one past the newest sample.
    let end = T0 + (N - 1) * STEP;
    for t in [end, end - 7 * MIN - 3_000, T0 + 4 * HOUR, end + HOUR] {
        for q in queries {
            // Five series of 2 880 samples are within the inline bounds.
            let inline = || {
                fast.instant_inline(q, t, &opts)
                    .expect("small query not inline")
                    .unwrap()
            };
            // Sums and averages over windows long enough for rollups with raw edges add
            // per-bucket sums: equal up to summation order.
            if q.starts_with("sum_over_time") || q.starts_with("avg_over_time") {
                assert_same(
                    q,
                    loading.instant(q, t).unwrap(),
                    fast.instant(q, t).unwrap(),
                );
                assert_same(q, loading.instant(q, t).unwrap(), inline());
                continue;
            }
            let want = json(loading.instant(q, t).unwrap());
            assert_eq!(want, json(fast.instant(q, t).unwrap()), "{q} at {t}");
            assert_eq!(want, json(inline()), "{q} at {t} inline");
        }
    }
    // A one-series query over a day is inline; one over every series and the whole store is
    // not, and nothing was read to find that out.
    assert!(fast
        .instant_inline("avg_over_time(temp{kind=\"a\"}[1d])", end, &opts)
        .is_some());
    assert!(fast
        .instant_inline("temp[8h]", end, &opts)
        .is_some_and(|r| r.is_ok()));
    assert!(fast
        .instant_inline("max_over_time(temp[30d])[1d:1h]", end, &opts)
        .is_none());
    // More than 16 series: to the pool.
    let many: Vec<_> = (0..17)
        .map(|i| {
            (
                Labels::from_metric("many", &[("i", &i.to_string())]),
                Sample::new(end, i as f64),
            )
        })
        .collect();
    assert!(engine.append_labeled(&many).unwrap().rejected.is_empty());
    assert!(fast.instant_inline("many", end, &opts).is_none());
    assert!(fast.instant_inline("many{i=\"3\"}", end, &opts).is_some());
    assert_eq!(
        json(fast.instant("sum(many)", end).unwrap()),
        json(loading.instant("sum(many)", end).unwrap())
    );
    // Parse errors are answered inline, with the loading path's error.
    let err = fast
        .instant_inline("sum(", end, &opts)
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        loading.instant("sum(", end).unwrap_err().to_string()
    );
    // Limits hold on the streamed path.
    let small = QueryEngine::new(
        engine.clone(),
        QueryLimits {
            max_samples: 100,
            ..QueryLimits::default()
        },
    );
    assert!(small.instant("temp{kind=\"a\"}[1h]", end).is_err());
    assert!(small
        .instant("stddev_over_time(temp{kind=\"a\"}[1h])", end)
        .is_err());
    // And on rollups with raw edges, which read 59 buckets and a few samples here (two hours
    // back, where the data is rolled up).
    assert!(small
        .instant("avg_over_time(temp{kind=\"a\"}[1h] offset 2h)", end)
        .is_ok());
    let tiny = QueryEngine::new(
        engine,
        QueryLimits {
            max_samples: 40,
            ..QueryLimits::default()
        },
    );
    assert!(tiny
        .instant("avg_over_time(temp{kind=\"a\"}[1h] offset 2h)", end)
        .is_err());
}

/// Instant `*_over_time` windows that do not start or end on a bucket edge read the whole
/// buckets inside them plus raw samples at both ends, and equal reading every raw sample —
/// with NaNs, staleness markers, gaps at the edges and the head's unrolled data in the window.
#[test]
fn unaligned_instant_windows_read_rollups_with_raw_edges() {
    let dir = tempfile::tempdir().unwrap();
    let engine = store(dir.path(), 40);
    let raw = QueryEngine::new(engine.clone(), QueryLimits::default()).with_rollups(false);
    let rolled = QueryEngine::new(engine, QueryLimits::default());
    let end = T0 + (N - 1) * STEP;
    let functions = [
        "sum_over_time",
        "avg_over_time",
        "min_over_time",
        "max_over_time",
        "count_over_time",
    ];
    let selectors = [
        ("temp", "86390s]"),
        ("temp{kind=~\"a|gappy\"}", "3h7m13s]"),
        ("temp{kind=\"stale\"}", "5h]"),
        ("temp{kind=\"nan\"}", "6h]"),
        ("temp", "47m]"),
        ("temp{kind=\"b\"}", "2h] offset 13m"),
    ];
    for f in functions {
        for (sel, range) in selectors {
            let q = format!("{f}({sel}[{range})");
            for t in [end, end - 7 * MIN - 3_000, T0 + 4 * HOUR + 1, end + HOUR] {
                let before = rolled.rollup_selectors_total();
                assert_same(
                    &q,
                    raw.instant(&q, t).unwrap(),
                    rolled.instant(&q, t).unwrap(),
                );
                // The newest hour or so is not rolled up yet (the head, and the blocks within
                // the out-of-order window of the newest data); a window there holds too few
                // rolled-up buckets and is read raw.
                let newest = range == "47m]" && t >= end - 8 * MIN;
                assert_eq!(
                    rolled.rollup_selectors_total() > before,
                    !newest,
                    "{q} at {t}: rollups read or not as expected"
                );
            }
        }
    }
    // A window holding fewer than eight whole buckets of any resolution is read raw.
    let before = rolled.rollup_selectors_total();
    let q = "avg_over_time(temp[7m])";
    assert_same(
        q,
        raw.instant(q, end).unwrap(),
        rolled.instant(q, end).unwrap(),
    );
    assert_eq!(rolled.rollup_selectors_total(), before);
}
