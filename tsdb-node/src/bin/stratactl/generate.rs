//! `stratactl generate`: synthetic IoT data sent over one protocol, with a progress bar.

use anyhow::{anyhow, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tsdb_node::config::parse_duration;
use tsdb_node::dataset::IotDataset;

use crate::proto::{encode, Conn, Endpoints, Protocol};
use crate::timespec::{now_ms, parse_time_ms};
use crate::workload::Workload;

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// Protocol to send over.
    #[arg(long, value_enum)]
    pub protocol: Protocol,
    /// Number of devices.
    #[arg(long, default_value_t = 10)]
    pub devices: usize,
    /// Metrics per device: temperature, humidity, energy_kwh_total, motion (in that order).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=4))]
    pub metrics: u8,
    /// Points per series.
    #[arg(long, default_value_t = 360)]
    pub points: usize,
    /// Time between two points of a series.
    #[arg(long, default_value = "10s")]
    pub interval: String,
    /// Time of the first point (now-1h, RFC 3339 or Unix seconds).
    #[arg(long, default_value = "now-1h")]
    pub start: String,
    /// Samples per request.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Seed of the generator: the same seed gives the same values.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// The dataset described by the size flags.
pub fn dataset(
    devices: usize,
    steps: usize,
    interval: &str,
    start: &str,
    seed: u64,
) -> Result<IotDataset> {
    let interval_ms = i64::try_from(
        parse_duration(interval)
            .map_err(|e| anyhow!(e))?
            .as_millis(),
    )
    .map_err(|_| anyhow!("--interval too large"))?;
    if interval_ms <= 0 {
        return Err(anyhow!("--interval must be positive"));
    }
    Ok(IotDataset {
        devices,
        interval_ms,
        steps,
        start_ms: parse_time_ms(start, now_ms())?,
        seed,
    })
}

pub fn run(ep: &Endpoints, a: GenerateArgs) -> Result<()> {
    let w = Workload {
        dataset: dataset(a.devices, a.points, &a.interval, &a.start, a.seed)?,
        metrics: usize::from(a.metrics),
    };
    let labels = w.labels();
    let mut conn = Conn::open(a.protocol, ep)?;
    let bar = ProgressBar::new(w.sample_count() as u64).with_style(ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} samples ({per_sec}, eta {eta})",
    )?);
    let started = std::time::Instant::now();
    w.for_each_batch(1, a.batch, |_, batch| {
        let e = encode(a.protocol, &labels, &batch)?;
        conn.send(&e)?;
        bar.inc(e.samples as u64);
        Ok(())
    })?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "sent {} samples ({} series x {} points) over {:?} in {secs:.2}s ({:.0} samples/s), all acknowledged",
        w.sample_count(),
        w.dataset.devices * w.metrics,
        w.dataset.steps,
        a.protocol,
        w.sample_count() as f64 / secs.max(1e-9),
    );
    if a.protocol == Protocol::Binary {
        println!(
            "binary series are stored as ztsdb_series{{series_id=\"<device*4 + metric + 1>\"}}"
        );
    }
    Ok(())
}
