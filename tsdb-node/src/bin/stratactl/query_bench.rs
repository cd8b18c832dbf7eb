//! `stratactl storage query-bench`: PromQL latency on the reference IoT dataset, in process.
//!
//! Loads the dataset into a fresh engine, checkpoints, compacts and downsamples it (as a node
//! does with day-old data), then runs the query shapes through `QueryEngine` with
//! rollups on and off and prints p50/p99 per query. No HTTP: the figures are the evaluator's
//! and the storage reads', which is what this tool is for profiling.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use tsdb_node::dataset::IotDataset;
use tsdb_node::promql::{QueryEngine, QueryLimits, Value};
use tsdb_node::storage::{Engine, EngineOptions, Labels, Retention, Sample};

#[derive(Args)]
pub struct QueryBenchArgs {
    /// Devices (4 series each).
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// Time steps of 10 s (8640 = one day).
    #[arg(long, default_value_t = 8640)]
    steps: usize,
    /// Timed runs per query (after one warm-up run).
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Only queries containing this text.
    #[arg(long)]
    filter: Option<String>,
    /// Working directory (a temporary one by default; removed afterwards). Data already there
    /// from an earlier run with the same dataset is reused.
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// How a query is run: instant at the dataset's end, or over the whole dataset at a step.
enum Shape {
    Instant,
    Range { step_ms: i64 },
}

fn options(root: &Path) -> EngineOptions {
    let mut o = EngineOptions::new(root);
    o.retention = Retention::keep_forever();
    o.wal_sync = false;
    o.checkpoint_interval = Duration::from_secs(3600 * 24);
    o
}

fn load(ds: &IotDataset, root: &Path) -> anyhow::Result<Arc<Engine>> {
    let engine = Engine::open(options(root))?;
    let labels = ds.labels();
    let ids = labels
        .iter()
        .map(|l| engine.series_id(l))
        .collect::<Result<Vec<_>, _>>()?;
    let mut gen = ds.generator();
    let mut step = Vec::new();
    let mut batch = Vec::new();
    let started = Instant::now();
    while gen.next_step(&mut step) {
        batch.extend(ids.iter().copied().zip(step.iter().copied()));
        if batch.len() >= 40_000 {
            engine.append(&batch)?;
            batch.clear();
        }
    }
    engine.append(&batch)?;
    // Rollups are written once a block can no longer change; a sample a day later makes the
    // dataset's day that old, as it is on a node queried the next day.
    let clock = Labels::from_metric("strata_bench_clock", &[]);
    let later = ds.start_ms + ds.steps as i64 * ds.interval_ms + 86_400_000;
    engine.append_labeled(&[(clock, Sample::new(later, 1.0))])?;
    engine.flush()?;
    engine.compact_all()?;
    let rollups = engine.downsample()?;
    eprintln!(
        "loaded {} samples, compacted, {rollups} rollup file(s) in {:.1} s",
        ds.sample_count(),
        started.elapsed().as_secs_f64()
    );
    Ok(Arc::new(engine))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(f64::NAN)
}

fn points(v: &Value) -> usize {
    match v {
        Value::Scalar(..) | Value::String(..) => 1,
        Value::Vector(v) => v.len(),
        Value::Matrix(m) => m.iter().map(|s| s.1.len()).sum(),
    }
}

pub fn run(a: QueryBenchArgs) -> anyhow::Result<()> {
    let ds = IotDataset {
        devices: a.devices,
        steps: a.steps,
        ..IotDataset::reference()
    };
    let (root, temporary) = match &a.dir {
        Some(d) => (d.clone(), false),
        None => {
            let p = std::env::temp_dir().join(format!("strata-qbench-{}", std::process::id()));
            (p, true)
        }
    };
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let existing = Engine::open(options(&root))?;
    let engine = if existing.stats().series > 0 {
        eprintln!("using the data already in {}", root.display());
        Arc::new(existing)
    } else {
        drop(existing);
        load(&ds, &root)?
    };
    let end = ds.start_ms + ds.steps as i64 * ds.interval_ms;
    let start = ds.start_ms + 5 * 60_000;
    let one = "device_id=\"dev-00042\"";
    let queries: Vec<(String, Shape)> = vec![
        (format!("temperature{{{one}}}[1d]"), Shape::Instant),
        (
            format!("avg_over_time(temperature{{{one}}}[1d])"),
            Shape::Instant,
        ),
        ("avg_over_time(temperature[1d])".into(), Shape::Instant),
        ("avg(temperature[1d])".into(), Shape::Instant),
        ("avg(temperature)".into(), Shape::Range { step_ms: 300_000 }),
        (
            "avg(avg_over_time(temperature[5m]))".into(),
            Shape::Range { step_ms: 300_000 },
        ),
        (
            "sum(rate(energy_kwh_total[5m]))".into(),
            Shape::Range { step_ms: 300_000 },
        ),
    ];
    println!(
        "{:<52} {:>8} {:>10} {:>10} {:>10}",
        "query", "rollups", "p50 ms", "p99 ms", "points"
    );
    for (q, shape) in &queries {
        if a.filter.as_ref().is_some_and(|f| !q.contains(f.as_str())) {
            continue;
        }
        for rollups in [false, true] {
            let qe = QueryEngine::new(engine.clone(), QueryLimits::default()).with_rollups(rollups);
            let once = || match shape {
                Shape::Instant => qe.instant(q, end),
                Shape::Range { step_ms } => qe.range(q, start, end, *step_ms),
            };
            let n = points(&once()?.value);
            let mut times = Vec::with_capacity(a.runs);
            for _ in 0..a.runs {
                let t = Instant::now();
                once()?;
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
            times.sort_by(f64::total_cmp);
            println!(
                "{:<52} {:>8} {:>10.2} {:>10.2} {:>10}",
                q,
                if qe.rollup_selectors_total() > 0 {
                    "used"
                } else {
                    "-"
                },
                percentile(&times, 0.5),
                percentile(&times, 0.99),
                n
            );
        }
    }
    drop(engine);
    if temporary {
        let _ = std::fs::remove_dir_all(&root);
    }
    Ok(())
}
