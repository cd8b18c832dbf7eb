//! `stratactl bench compare`: the reference dataset fed by the same client, in the same run,
//! to strata-node, Prometheus and InfluxDB (each a fresh child process per workload), then
//! query latencies on a day of data in strata-node and Prometheus; prints one table with the
//! issue's goals.

mod queries;
mod servers;

use std::path::PathBuf;

use anyhow::{anyhow, Result};
use clap::Args;
use tsdb_node::dataset::IotDataset;

use crate::load_bench::drive;
use crate::proto::{encode, Encoded, Protocol};
use crate::workload::{Shape, Workload};
use servers::{Programs, Server, System};

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// The strata-node binary (build it with `cargo build --release`).
    #[arg(long, default_value = "target/release/strata-node")]
    pub strata_bin: PathBuf,
    /// The Prometheus binary (2.42 from Debian: `apt-get install prometheus`).
    #[arg(long, default_value = "prometheus")]
    pub prometheus_bin: PathBuf,
    /// The InfluxDB 1.x daemon (1.6 from Debian: `apt-get install influxdb`).
    #[arg(long, default_value = "influxd")]
    pub influxd_bin: PathBuf,
    /// Where the servers' temporary data directories go; use a real disk, not a tmpfs.
    #[arg(long, default_value = "target/bench-compare")]
    pub work_dir: PathBuf,
    /// Time steps (10 s apart) of the reference dataset sent in each ingest workload.
    #[arg(long, default_value_t = 720)]
    pub steps: usize,
    /// Devices of the dataset (4 series each).
    #[arg(long, default_value_t = 1000)]
    pub devices: usize,
    /// Concurrent client connections in each ingest workload.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Series per request; requests carry 10 points per series, or 1 in the live-stream shape.
    #[arg(long, default_value_t = 1000)]
    pub series_per_request: usize,
    /// Time steps loaded for the query benchmark (8640 = the whole reference day).
    #[arg(long, default_value_t = 8640)]
    pub query_steps: usize,
    /// Timed runs of each query (after two warm-up runs).
    #[arg(long, default_value_t = 20)]
    pub repeat: usize,
    /// Skip the ingest workloads.
    #[arg(long)]
    pub no_ingest: bool,
    /// Skip the query benchmark.
    #[arg(long)]
    pub no_queries: bool,
    /// Query benchmark against Strata alone (no Prometheus, no ratios): for iterating on
    /// Strata's query path.
    #[arg(long)]
    pub strata_only: bool,
    /// Only the benchmark queries whose name or PromQL contains this text.
    #[arg(long)]
    pub query_filter: Option<String>,
}

/// One ingest workload: a protocol and shape, sent to Strata and, when it has one, to the
/// reference system that speaks the same protocol.
struct IngestCase {
    name: &'static str,
    protocol: Protocol,
    points: usize,
    /// The system whose figure this one is judged against, and by which protocol.
    reference: Option<(System, Protocol)>,
    /// Factor over the reference the issue asks for, or an absolute goal in samples/s.
    goal: Goal,
}

#[derive(Clone, Copy)]
enum Goal {
    TimesReference(f64),
    AtLeast(f64),
}

pub fn run(a: CompareArgs) -> Result<()> {
    let programs = Programs {
        strata: a.strata_bin.clone(),
        prometheus: a.prometheus_bin.clone(),
        influxd: a.influxd_bin.clone(),
        work_dir: a.work_dir.clone(),
    };
    let mut rows = Vec::new();
    if !a.no_ingest {
        ingest(&a, &programs, &mut rows)?;
    }
    if !a.no_queries {
        queries::run(&a, &programs, &mut rows)?;
    }
    print_table(&a, &rows);
    Ok(())
}

/// A line of the final table.
pub struct Row {
    pub workload: String,
    pub strata: String,
    pub reference: String,
    pub ratio: Option<f64>,
    pub goal: String,
    pub met: Option<bool>,
}

/// The reference dataset's first `steps` steps, ending about now so that no system's
/// retention or out-of-order rule sees it as old.
pub fn dataset(devices: usize, steps: usize) -> IotDataset {
    let mut d = IotDataset::reference();
    d.devices = devices;
    d.steps = steps;
    let now = crate::timespec::now_ms();
    let span = d.interval_ms.saturating_mul(steps as i64);
    d.start_ms = (now - span) / d.interval_ms * d.interval_ms;
    d
}

/// Encodes the workload for `connections` connections in `shape`.
pub fn encode_work(
    protocol: Protocol,
    w: &Workload,
    connections: usize,
    shape: Shape,
) -> Result<Vec<Vec<Encoded>>> {
    let labels = w.labels();
    let mut work: Vec<Vec<Encoded>> = (0..connections).map(|_| Vec::new()).collect();
    w.for_each_shaped(connections, shape, |c, batch| {
        let slot = work
            .get_mut(c)
            .ok_or_else(|| anyhow!("connection {c} out of range"))?;
        slot.push(encode(protocol, &labels, &batch)?);
        Ok(())
    })?;
    Ok(work)
}

/// Starts a fresh `system`, sends the work, and stops it.
fn measure(
    system: System,
    protocol: Protocol,
    work: &[Vec<Encoded>],
    programs: &Programs,
) -> Result<Measured> {
    let server = Server::start(system, programs)?;
    eprintln!("  {} over {protocol:?} ...", system.name());
    let cpu_before = server.cpu_time();
    let run = drive(protocol, &server.endpoints, work).map_err(|e| {
        anyhow!(
            "{} over {protocol:?}: {e:#}\nserver log:\n{}",
            system.name(),
            server.log_tail()
        )
    })?;
    let cpu = match (cpu_before, server.cpu_time()) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    let m = Measured {
        per_second: run.per_second(),
        cpu_us_per_sample: cpu.map(|c| c.as_secs_f64() * 1e6 / run.samples.max(1) as f64),
        peak_rss: server.peak_rss_bytes(),
    };
    eprintln!(
        "    {:.0} samples/s, ack latency {}, server CPU {}",
        m.per_second,
        run.latency,
        m.cpu_note()
    );
    Ok(m)
}

/// What one ingest run of one system yielded.
#[derive(Clone, Copy)]
struct Measured {
    per_second: f64,
    /// Server CPU time (user + system) per sample: unlike throughput, barely moved by other
    /// processes competing for the cores.
    cpu_us_per_sample: Option<f64>,
    peak_rss: Option<u64>,
}

impl Measured {
    fn cpu_note(&self) -> String {
        self.cpu_us_per_sample
            .map(|c| format!("{c:.2} µs/sample"))
            .unwrap_or_else(|| "n/a".into())
    }

    fn describe(&self) -> String {
        format!(
            "{}; CPU {}{}",
            rate(self.per_second),
            self.cpu_note(),
            rss_note(self.peak_rss)
        )
    }
}

fn ingest(a: &CompareArgs, programs: &Programs, rows: &mut Vec<Row>) -> Result<()> {
    let cases = [
        IngestCase {
            name: "remote write",
            protocol: Protocol::RemoteWrite,
            points: 10,
            reference: Some((System::Prometheus, Protocol::RemoteWrite)),
            goal: Goal::TimesReference(2.0),
        },
        IngestCase {
            name: "remote write",
            protocol: Protocol::RemoteWrite,
            points: 1,
            reference: Some((System::Prometheus, Protocol::RemoteWrite)),
            goal: Goal::TimesReference(2.0),
        },
        IngestCase {
            name: "binary ZTSD (vs Prometheus remote write)",
            protocol: Protocol::Binary,
            points: 10,
            reference: Some((System::Prometheus, Protocol::RemoteWrite)),
            goal: Goal::TimesReference(2.0),
        },
        IngestCase {
            name: "binary ZTSD (vs Prometheus remote write)",
            protocol: Protocol::Binary,
            points: 1,
            reference: Some((System::Prometheus, Protocol::RemoteWrite)),
            goal: Goal::TimesReference(2.0),
        },
        IngestCase {
            name: "line protocol",
            protocol: Protocol::InfluxLine,
            points: 10,
            reference: Some((System::InfluxDb, Protocol::InfluxLine)),
            goal: Goal::TimesReference(2.0),
        },
        IngestCase {
            name: "line protocol",
            protocol: Protocol::InfluxLine,
            points: 1,
            reference: Some((System::InfluxDb, Protocol::InfluxLine)),
            goal: Goal::TimesReference(2.0),
        },
        IngestCase {
            name: "TCP JSON frames (pipelined)",
            protocol: Protocol::TcpJson,
            points: 1,
            reference: None,
            goal: Goal::AtLeast(300_000.0),
        },
    ];
    let w = Workload {
        dataset: dataset(a.devices, a.steps),
        metrics: 4,
    };
    eprintln!(
        "ingest: {} samples ({} series x {} steps) per workload, {} connection(s)",
        w.sample_count(),
        w.dataset.series_count(),
        w.dataset.steps,
        a.connections
    );
    // A reference figure is measured once per (system, protocol, shape) and shared by the
    // cases judged against it.
    let mut reference_runs: Vec<((System, Protocol, usize), Measured)> = Vec::new();
    for case in &cases {
        let shape = Shape {
            series: a.series_per_request,
            points: case.points,
        };
        eprintln!(
            "{} — {} series x {} point(s) per request",
            case.name, shape.series, shape.points
        );
        let reference = match case.reference {
            Some((system, protocol)) => {
                let key = (system, protocol, case.points);
                match reference_runs.iter().find(|r| r.0 == key) {
                    Some(r) => Some((system, r.1)),
                    None => {
                        let work = encode_work(protocol, &w, a.connections, shape)?;
                        let m = measure(system, protocol, &work, programs)?;
                        reference_runs.push((key, m));
                        Some((system, m))
                    }
                }
            }
            None => None,
        };
        let work = encode_work(case.protocol, &w, a.connections, shape)?;
        let strata = measure(System::Strata, case.protocol, &work, programs)?;
        let (ratio, goal, met) = match (case.goal, reference) {
            (Goal::TimesReference(k), Some((system, r))) => {
                let ratio = strata.per_second / r.per_second.max(1e-9);
                (
                    Some(ratio),
                    format!("≥ {k}× {}", system.name()),
                    Some(ratio >= k),
                )
            }
            (Goal::AtLeast(v), _) => (None, format!("≥ {}", rate(v)), Some(strata.per_second >= v)),
            (Goal::TimesReference(_), None) => (None, String::new(), None),
        };
        rows.push(Row {
            workload: format!(
                "{}, {} series × {} point(s) per request",
                case.name, shape.series, shape.points
            ),
            strata: strata.describe(),
            reference: reference
                .map(|(s, r)| format!("{} {}", s.name(), r.describe()))
                .unwrap_or_else(|| "—".into()),
            ratio,
            goal,
            met,
        });
    }
    Ok(())
}

/// `1.23 M/s` or `456 k/s`.
fn rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M/s", v / 1e6)
    } else {
        format!("{:.0} k/s", v / 1e3)
    }
}

fn rss_note(rss: Option<u64>) -> String {
    rss.map(|b| format!(" (peak RSS {} MiB)", b >> 20))
        .unwrap_or_default()
}

fn print_table(a: &CompareArgs, rows: &[Row]) {
    println!();
    println!(
        "Strata vs Prometheus / InfluxDB — same client, same run; {} connection(s), dataset {} devices",
        a.connections, a.devices
    );
    println!();
    println!("| workload | Strata | reference | ratio | goal | met |");
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.workload,
            r.strata,
            r.reference,
            r.ratio
                .map(|x| format!("{x:.2}×"))
                .unwrap_or_else(|| "—".into()),
            r.goal,
            match r.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "—",
            }
        );
    }
}
