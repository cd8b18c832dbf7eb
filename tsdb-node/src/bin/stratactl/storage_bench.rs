//! `stratactl storage bench`: the storage engine's figures on the reference IoT dataset.
//!
//! Prints append throughput (head + WAL with group commit, fsync on), bytes per sample on
//! disk after compaction, scan rates of window aggregates, WAL replay speed and head memory
//! per series.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tsdb_node::dataset::IotDataset;
use tsdb_node::storage::{
    Engine, EngineOptions, Labels, MatchOp, Matcher, Retention, Sample, SeriesId,
};

#[derive(Args)]
pub struct BenchArgs {
    /// Devices (4 series each).
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// Time steps of 10 s (8640 = one day).
    #[arg(long, default_value_t = 8640)]
    steps: usize,
    /// Writer thread counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
    /// Series for the head-memory measurement (0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    memory_series: usize,
    /// Working directory (a temporary one by default; removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn options(root: &Path) -> EngineOptions {
    let mut o = EngineOptions::new(root);
    o.retention = Retention::keep_forever();
    o.checkpoint_interval = Duration::from_secs(3600 * 24);
    o.wal_segment_size = 64 << 20;
    // The dataset is a day in the past; the default window is relative to its newest sample.
    o
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{msg:>14} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

fn dir_bytes(dir: &Path, suffix: &str) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<u64>().ok())
            })
        })
        .map_or(0, |kb| kb * 1024)
}

/// The dataset as one batch per time step.
type Batches = Vec<Vec<(SeriesId, Sample)>>;

/// Pre-generates the dataset as per-step batches so that generation is not timed.
fn generate(ds: &IotDataset, ids: &[SeriesId]) -> Batches {
    let pb = bar(ds.steps as u64, "generating");
    let mut gen = ds.generator();
    let mut step = Vec::new();
    let mut out = Vec::with_capacity(ds.steps);
    while gen.next_step(&mut step) {
        out.push(ids.iter().copied().zip(step.iter().copied()).collect());
        pb.inc(1);
    }
    pb.finish_and_clear();
    out
}

struct Ingest {
    samples: usize,
    seconds: f64,
}

fn ingest(
    engine: &Arc<Engine>,
    batches: &Arc<Vec<Vec<(SeriesId, Sample)>>>,
    threads: usize,
) -> anyhow::Result<Ingest> {
    let pb = bar(batches.len() as u64, &format!("{threads} writer(s)"));
    let start = Instant::now();
    let total: usize = batches.iter().map(|b| b.len()).sum();
    // Each writer owns a slice of the series and sends its part of every step in order, so
    // every series stays in time order and writers contend on the WAL like real clients.
    let handles: Vec<_> = (0..threads)
        .map(|w| {
            let engine = engine.clone();
            let batches = batches.clone();
            let pb = pb.clone();
            std::thread::spawn(move || -> anyhow::Result<()> {
                for b in batches.iter() {
                    let n = b.len();
                    let part = &b[n * w / threads..n * (w + 1) / threads];
                    let out = engine.append(part)?;
                    anyhow::ensure!(
                        out.rejected.is_empty(),
                        "rejected samples: {:?}",
                        &out.rejected[..1]
                    );
                    if w == 0 {
                        pb.inc(1);
                    }
                }
                Ok(())
            })
        })
        .collect();
    // Settling sealed chunks is part of ingesting: it runs beside the writers as the node's
    // settling thread does, and what is left is settled before the clock stops.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let settler = {
        let (engine, done) = (engine.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                engine.settle_head(usize::MAX);
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        })
    };
    let writers: anyhow::Result<()> = handles.into_iter().try_for_each(|h| {
        h.join()
            .map_err(|_| anyhow::anyhow!("writer thread panicked"))?
    });
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    settler
        .join()
        .map_err(|_| anyhow::anyhow!("settling thread panicked"))?;
    writers?;
    engine.settle_head(usize::MAX);
    pb.finish_and_clear();
    Ok(Ingest {
        samples: total,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn run(a: BenchArgs) -> anyhow::Result<()> {
    let tmp;
    let root = match &a.dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile_dir()?;
            tmp.clone()
        }
    };
    let ds = IotDataset {
        devices: a.devices,
        steps: a.steps,
        ..IotDataset::reference()
    };
    let labels = ds.labels();
    println!(
        "dataset: {} devices x 4 series, {} steps of 10 s = {} samples (seed {})",
        ds.devices,
        ds.steps,
        ds.sample_count(),
        ds.seed
    );
    let mut batches: Option<Arc<Batches>> = None;
    let mut compact_dir = None;
    for &threads in &a.threads {
        let dir = root.join(format!("ingest-{threads}"));
        let _ = std::fs::remove_dir_all(&dir);
        let engine = Arc::new(Engine::open(options(&dir))?);
        let ids: Vec<SeriesId> = labels
            .iter()
            .map(|l| engine.series_id(l))
            .collect::<Result<_, _>>()?;
        let b = match &batches {
            Some(b) => b.clone(),
            None => {
                let b = Arc::new(generate(&ds, &ids));
                batches = Some(b.clone());
                b
            }
        };
        let r = ingest(&engine, &b, threads)?;
        println!(
            "append, {threads} writer thread(s), fsync group commit: {:.2} M samples/s ({} samples in {:.2} s; {:.2} M samples/s per core used)",
            r.samples as f64 / r.seconds / 1e6,
            r.samples,
            r.seconds,
            r.samples as f64 / r.seconds / 1e6 / threads.min(num_cpus()) as f64
        );
        let wal_bytes = dir_bytes(&dir.join("wal"), ".wal");
        println!(
            "  WAL written: {:.1} MiB ({:.2} bytes/sample)",
            wal_bytes as f64 / (1 << 20) as f64,
            wal_bytes as f64 / r.samples as f64
        );
        let head = engine.stats();
        println!(
            "  head after ingest: {} series, {:.1} MiB compressed",
            head.head_series,
            head.head_bytes as f64 / (1 << 20) as f64
        );
        drop(engine);
        // WAL replay: reopen without a checkpoint.
        let t = Instant::now();
        let engine = Engine::open(options(&dir))?;
        let secs = t.elapsed().as_secs_f64();
        println!(
            "WAL replay on restart: {:.2} M samples/s ({} samples in {:.2} s)",
            r.samples as f64 / secs / 1e6,
            engine.stats().head_samples,
            secs
        );
        if compact_dir.is_none() {
            compact_dir = Some((dir.clone(), engine));
        }
    }
    if let Some((dir, engine)) = compact_dir {
        let t = Instant::now();
        engine.checkpoint()?;
        let cp = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let n = engine.compact_all()?;
        println!(
            "checkpoint {cp:.2} s, full compaction ({n} runs) {:.2} s",
            t.elapsed().as_secs_f64()
        );
        let st = engine.stats();
        let raw = dir_bytes(&dir.join("data"), ".seg");
        println!(
            "on disk after compaction: {} raw segment(s), {} bytes for {} samples = {:.3} bytes/sample",
            st.raw_segments,
            st.segment_bytes,
            st.segment_samples,
            st.segment_bytes as f64 / st.segment_samples.max(1) as f64
        );
        let _ = raw;
        scans(&engine, &ds)?;
    }
    if a.memory_series > 0 {
        head_memory(&root, a.memory_series)?;
    }
    if a.dir.is_none() {
        let _ = std::fs::remove_dir_all(&root);
    }
    Ok(())
}

fn scans(engine: &Engine, ds: &IotDataset) -> anyhow::Result<()> {
    let start = ds.start_ms;
    let end = ds.start_ms + ds.steps as i64 * ds.interval_ms;
    let all = vec![Matcher::new(MatchOp::RegexMatch, "__name__", ".+")?];
    let mut runs = Vec::new();
    let mut n = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let r = engine.aggregate(&all, start, end)?;
        runs.push(t.elapsed().as_secs_f64());
        n = r.iter().map(|s| s.aggregate.count).sum::<u64>();
    }
    let s = median(runs);
    println!(
        "scan: sum over all {n} samples: {:.1} ms, {:.0} M samples/s (one core)",
        s * 1e3,
        n as f64 / s / 1e6
    );
    // About 1 M samples: 29 devices x 4 series x one day.
    let some = vec![Matcher::new(
        MatchOp::RegexMatch,
        "device_id",
        "dev-000(0.|1.|2[0-8])",
    )?];
    let mut runs = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let r = engine.aggregate(&some, start, end)?;
        runs.push(t.elapsed().as_secs_f64());
        n = r.iter().map(|s| s.aggregate.count).sum::<u64>();
    }
    let s = median(runs);
    println!(
        "scan: aggregate over {n} samples: {:.2} ms median ({:.0} M samples/s)",
        s * 1e3,
        n as f64 / s / 1e6
    );
    Ok(())
}

fn head_memory(root: &Path, series: usize) -> anyhow::Result<()> {
    let dir = root.join("memory");
    let _ = std::fs::remove_dir_all(&dir);
    let mut o = options(&dir);
    o.wal_sync = false;
    let engine = Engine::open(o)?;
    let before = rss_bytes();
    let pb = bar(series as u64, "series");
    let mut batch = Vec::with_capacity(1000);
    let t0 = 1_767_225_600_000i64;
    for i in 0..series {
        let device = format!("dev-{:07}", i / 4);
        let site = format!("site-{:03}", (i / 4) % 500);
        let metric = tsdb_node::dataset::METRICS[i % 4];
        let id = engine.series_id(&Labels::from_metric(
            metric,
            &[("device_id", &device), ("site", &site)],
        ))?;
        // Six samples: one checkpoint interval at a 10 s scrape.
        for k in 0..6 {
            batch.push((
                id,
                Sample::new(t0 + k * 10_000, 20.0 + (i % 50) as f64 / 10.0),
            ));
        }
        if batch.len() >= 6000 {
            engine.append(&batch)?;
            batch.clear();
        }
        if i % 10_000 == 0 {
            pb.set_position(i as u64);
        }
    }
    engine.append(&batch)?;
    pb.finish_and_clear();
    let after = rss_bytes();
    let st = engine.stats();
    println!(
        "head memory at {} series: {:.0} bytes/series (process RSS growth), chunks alone {:.0} bytes/series",
        series,
        (after.saturating_sub(before)) as f64 / series as f64,
        st.head_bytes as f64 / series as f64
    );
    Ok(())
}

fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let p = std::env::temp_dir().join(format!("strata-bench-{}", std::process::id()));
    std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
    Ok(p)
}
