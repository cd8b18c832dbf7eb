//! `strata-node`: one Strata storage node.
//!
//! This build runs the storage engine (WAL, head, segments, background checkpoints,
//! compaction, downsampling and retention) on the configured directories. Network listeners
//! (ingest protocols, query APIs) are added on top of the same engine.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use tsdb_node::storage::{Engine, EngineOptions};

#[derive(Parser, Debug)]
#[command(
    name = "strata-node",
    version,
    about = "Strata time-series storage node"
)]
struct Args {
    /// Development mode: data under ./strata-dev-data unless --data-dir is given, verbose logs.
    #[arg(long, env = "STRATA_DEV")]
    dev: bool,
    /// Node identity (defaults to $POD_NAME, then the host name).
    #[arg(long, env = "STRATA_NODE_ID")]
    node_id: Option<String>,
    /// Directory for segments (immutable blocks).
    #[arg(long, env = "STRATA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Directory for the write-ahead log (defaults to <data-dir>/../wal).
    #[arg(long, env = "STRATA_WAL_DIR")]
    wal_dir: Option<PathBuf>,
    /// Seconds between head checkpoints.
    #[arg(long, env = "STRATA_CHECKPOINT_INTERVAL_S", default_value_t = 60)]
    checkpoint_interval_s: u64,
    /// WAL segment size in MiB; a checkpoint also runs when the WAL outgrows it.
    #[arg(long, env = "STRATA_WAL_SEGMENT_SIZE_MB", default_value_t = 64)]
    wal_segment_size_mb: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let default_filter = if args.dev {
        "info,tsdb_node=debug"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .init();

    let data_dir = match (&args.data_dir, args.dev) {
        (Some(d), _) => d.clone(),
        (None, true) => PathBuf::from("strata-dev-data/data"),
        (None, false) => {
            anyhow::bail!("--data-dir (or STRATA_DATA_DIR) is required outside --dev mode")
        }
    };
    let wal_dir = args.wal_dir.clone().unwrap_or_else(|| {
        data_dir
            .parent()
            .map(|p| p.join("wal"))
            .unwrap_or_else(|| PathBuf::from("wal"))
    });
    let node_id = args
        .node_id
        .clone()
        .or_else(|| std::env::var("POD_NAME").ok())
        .unwrap_or_else(|| "strata-0".into());

    let mut opts = EngineOptions::new(".");
    opts.data_dir = data_dir.clone();
    opts.wal_dir = wal_dir.clone();
    opts.checkpoint_interval = Duration::from_secs(args.checkpoint_interval_s.max(1));
    opts.wal_segment_size = args.wal_segment_size_mb.max(1) << 20;

    let started = Instant::now();
    let engine = Arc::new(Engine::open(opts).context("opening the storage engine")?);
    let stats = engine.stats();
    tracing::info!(
        node_id,
        data_dir = %data_dir.display(),
        wal_dir = %wal_dir.display(),
        series = stats.series,
        head_samples = stats.head_samples,
        segments = stats.raw_segments,
        seconds = started.elapsed().as_secs_f64(),
        "storage engine ready"
    );
    for q in engine.quarantined() {
        tracing::warn!(file = %q.file.display(), reason = %q.reason, "quarantined at start-up");
    }
    let maintenance = engine
        .start_maintenance()
        .context("starting storage maintenance")?;

    let stop = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    if args.dev {
        println!(
            "strata-node (dev) running: data in {}, WAL in {}; Ctrl-C to stop",
            data_dir.display(),
            wal_dir.display()
        );
    }
    let mut last_report = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if last_report.elapsed() >= Duration::from_secs(60) {
            let s = engine.stats();
            tracing::info!(
                series = s.series,
                head_samples = s.head_samples,
                segments = s.raw_segments,
                wal_bytes = s.wal_bytes,
                "status"
            );
            last_report = Instant::now();
        }
    }
    tracing::info!("shutting down: flushing the head");
    maintenance.stop();
    engine.close().context("flushing the head on shutdown")?;
    tracing::info!("stopped cleanly");
    Ok(())
}
