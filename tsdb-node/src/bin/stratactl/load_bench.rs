//! `stratactl bench`: a load generator over one ingest protocol (pre-encoded batches, C
//! concurrent connections, durable acknowledgements) or a query latency benchmark.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::client::Api;
use crate::generate::dataset;
use crate::proto::{encode, Conn, Encoded, Endpoints, Protocol};
use crate::timespec::{now_ms, seconds};
use crate::workload::Workload;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    /// Protocol to load (ingest benchmark).
    #[arg(
        long,
        value_enum,
        required_unless_present = "query",
        conflicts_with = "query"
    )]
    pub protocol: Option<Protocol>,
    /// Number of devices (4 series each).
    #[arg(long, default_value_t = 100)]
    pub devices: usize,
    /// Time steps; every series gets one sample per step.
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// Samples per request.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Time between steps; the data ends about now.
    #[arg(long, default_value = "10s")]
    pub interval: String,
    /// Benchmark this PromQL query instead of ingestion.
    #[arg(long)]
    pub query: Option<String>,
    /// How many times the query is run.
    #[arg(long, default_value_t = 100)]
    pub repeat: usize,
}

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Strata side by side with Prometheus and InfluxDB: the same client sends the reference
    /// dataset to each (fresh servers started here), then times queries; prints a table.
    Compare(crate::compare::CompareArgs),
}

pub fn run(ep: &Endpoints, a: BenchArgs) -> Result<()> {
    if let Some(BenchCommand::Compare(c)) = a.command {
        return crate::compare::run(c);
    }
    match (&a.query, a.protocol) {
        (Some(q), _) => query_bench(&ep.api, q, a.repeat),
        (None, Some(p)) => ingest_bench(ep, p, &a),
        (None, None) => bail!("give --protocol or --query"),
    }
}

fn ingest_bench(ep: &Endpoints, protocol: Protocol, a: &BenchArgs) -> Result<()> {
    let connections = a.connections.max(1);
    let interval_ms = tsdb_node::config::parse_duration(&a.interval)
        .map_err(|e| anyhow!(e))?
        .as_millis() as i64;
    let span = interval_ms.saturating_mul(a.steps as i64);
    let start = seconds(now_ms() - span);
    let w = Workload {
        dataset: dataset(a.devices, a.steps, &a.interval, &start, 7)?,
        metrics: 4,
    };
    let labels = w.labels();
    // Encode everything up front so that the measurement is transport and storage only.
    let mut work: Vec<Vec<Encoded>> = (0..connections).map(|_| Vec::new()).collect();
    w.for_each_batch(connections, a.batch, |c, batch| {
        work[c].push(encode(protocol, &labels, &batch)?);
        Ok(())
    })?;
    let run = drive(protocol, ep, &work)?;
    println!(
        "protocol {protocol:?}: {} samples in {} requests over {connections} connection(s) in {:.3}s",
        run.samples,
        run.requests,
        run.elapsed.as_secs_f64()
    );
    println!("throughput: {:.0} samples/s", run.per_second());
    println!("ack latency per request: {}", run.latency);
    Ok(())
}

/// The outcome of one load run.
pub struct LoadRun {
    pub samples: u64,
    pub requests: usize,
    pub elapsed: Duration,
    /// Time from sending a request to its acknowledgement.
    pub latency: Percentiles,
}

impl LoadRun {
    pub fn per_second(&self) -> f64 {
        self.samples as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Sends pre-encoded batches, `work[c]` over connection `c`, all connections at once, each
/// waiting for the acknowledgement of a request before sending the next; the clock covers
/// only sending and acknowledging.
pub fn drive(protocol: Protocol, ep: &Endpoints, work: &[Vec<Encoded>]) -> Result<LoadRun> {
    let total: u64 = work.iter().flatten().map(|e| e.samples as u64).sum();
    let bar = ProgressBar::new(total).with_style(ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} samples ({per_sec})",
    )?);
    let conns = work
        .iter()
        .map(|_| Conn::open(protocol, ep))
        .collect::<Result<Vec<_>>>()?;
    let started = Instant::now();
    let latencies = std::thread::scope(|s| -> Result<Vec<Duration>> {
        let handles: Vec<_> = conns
            .into_iter()
            .zip(work)
            .map(|(mut conn, batches)| {
                let bar = bar.clone();
                s.spawn(move || -> Result<Vec<Duration>> {
                    let mut lat = Vec::with_capacity(batches.len());
                    for e in batches {
                        let t = Instant::now();
                        conn.send(e)?;
                        lat.push(t.elapsed());
                        bar.inc(e.samples as u64);
                    }
                    Ok(lat)
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            all.extend(
                h.join()
                    .map_err(|_| anyhow!("a sender thread panicked"))??,
            );
        }
        Ok(all)
    })?;
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    Ok(LoadRun {
        samples: total,
        requests: latencies.len(),
        elapsed,
        latency: Percentiles::of(latencies),
    })
}

fn query_bench(api: &Api, query: &str, repeat: usize) -> Result<()> {
    let repeat = repeat.max(1);
    let bar = ProgressBar::new(repeat as u64);
    let mut lat = Vec::with_capacity(repeat);
    let started = Instant::now();
    for _ in 0..repeat {
        let time = seconds(now_ms());
        let t = Instant::now();
        api.get_data("/api/v1/query", &[("query", query), ("time", &time)])?;
        lat.push(t.elapsed());
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!(
        "query {query:?}: {repeat} runs in {:.3}s ({:.1} queries/s)",
        started.elapsed().as_secs_f64(),
        repeat as f64 / started.elapsed().as_secs_f64().max(1e-9)
    );
    println!("latency: {}", Percentiles::of(lat));
    Ok(())
}

/// Latency percentiles of a run (nearest rank).
pub struct Percentiles {
    sorted: Vec<Duration>,
}

impl Percentiles {
    pub fn of(mut v: Vec<Duration>) -> Self {
        v.sort_unstable();
        Percentiles { sorted: v }
    }

    pub fn at(&self, p: f64) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.sorted.len() as f64).ceil() as usize;
        self.sorted[rank.clamp(1, self.sorted.len()) - 1]
    }
}

impl std::fmt::Display for Percentiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        write!(
            f,
            "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            ms(self.at(50.0)),
            ms(self.at(90.0)),
            ms(self.at(99.0)),
            ms(self.at(100.0))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let p = Percentiles::of((1..=100).rev().map(Duration::from_millis).collect());
        assert_eq!(p.at(50.0), Duration::from_millis(50));
        assert_eq!(p.at(99.0), Duration::from_millis(99));
        assert_eq!(p.at(100.0), Duration::from_millis(100));
        assert_eq!(Percentiles::of(vec![]).at(50.0), Duration::ZERO);
    }
}
