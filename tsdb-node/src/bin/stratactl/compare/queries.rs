//! Query latency on a day of the reference dataset in strata-node and Prometheus: both loaded
//! by remote write, both settled (Prometheus' head compacted into blocks, Strata's head cut,
//! compacted and rolled up), then each query timed against one while the other is stopped, in
//! alternating turns (see [`RUNS_PER_TURN`]).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::servers::{Programs, Server, System};
use super::{dataset, encode_work, CompareArgs, Row};
use crate::client::Api;
use crate::load_bench::{drive, Percentiles};
use crate::proto::Protocol;
use crate::timespec::seconds;
use crate::workload::{Shape, Workload};

/// How long to wait for Prometheus to compact its head after loading.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(300);
/// A Prometheus head spanning at most this much has been compacted (1.5 × the 2 h block
/// range is the point at which Prometheus compacts, plus slack).
const SETTLED_HEAD_SPAN_MS: i64 = 3 * 3600 * 1000 + 600_000;

/// Timed runs of one server in a row while the other is stopped (SIGSTOP); then the other
/// takes its turn. Turns alternate so that slow drifts on the machine hit both alike, and the
/// stopped server cannot run its own background work (a Go garbage collection soaks up every
/// idle core) during the other's queries: on two cores, timing them in strict alternation put
/// a tail of several milliseconds on whichever ran right after Prometheus. Each turn starts
/// with one untimed query (see the loop).
const RUNS_PER_TURN: usize = 10;

/// A query of the benchmark: instant at `end` when `step` is `None`, else a range over the
/// dataset's last day.
struct BenchQuery {
    name: &'static str,
    promql: String,
    step: Option<&'static str>,
    /// Prometheus' latency on this machine as stated in the issue, for context.
    goal_factor: f64,
}

pub fn run(a: &CompareArgs, programs: &Programs, rows: &mut Vec<Row>) -> Result<()> {
    let w = Workload {
        dataset: dataset(a.devices, a.query_steps),
        metrics: 4,
    };
    let end_ms = w.dataset.start_ms + (w.dataset.steps as i64 - 1) * w.dataset.interval_ms;
    let day_ms = 86_400_000i64.min(end_ms - w.dataset.start_ms).max(1);
    let device = format!("dev-{:05}", 42.min(a.devices.saturating_sub(1)));
    let queries = [
        BenchQuery {
            name: "raw range of one series over a day",
            promql: format!("temperature{{device_id=\"{device}\"}}[{}s]", day_ms / 1000),
            step: None,
            goal_factor: 0.2,
        },
        BenchQuery {
            name: "avg of one series over a day",
            promql: format!(
                "avg_over_time(temperature{{device_id=\"{device}\"}}[{}s])",
                day_ms / 1000
            ),
            step: None,
            goal_factor: 0.2,
        },
        BenchQuery {
            name: "avg across all devices, 5m step over a day",
            promql: "avg(temperature)".into(),
            step: Some("300"),
            goal_factor: 0.2,
        },
        BenchQuery {
            name: "sum(rate(counter[5m])), 5m step over a day",
            promql: "sum(rate(energy_kwh_total[5m]))".into(),
            step: Some("300"),
            goal_factor: 0.2,
        },
    ];

    let queries: Vec<BenchQuery> = queries
        .into_iter()
        .filter(|q| {
            a.query_filter
                .as_deref()
                .is_none_or(|f| q.name.contains(f) || q.promql.contains(f))
        })
        .collect();
    eprintln!(
        "queries: loading {} samples into Strata{} by remote write",
        w.sample_count(),
        if a.strata_only { "" } else { " and Prometheus" }
    );
    // One connection, so that the data arrives in time order: Prometheus refuses samples more
    // than an hour older than its newest ("out of bounds"), which parallel connections drifting
    // apart over a day of data would produce.
    let work = encode_work(
        Protocol::RemoteWrite,
        &w,
        1,
        Shape {
            series: a.series_per_request,
            points: 10,
        },
    )?;
    let strata = Server::start(System::Strata, programs)?;
    eprintln!("  Strata runs as pid {}", strata.pid());
    drive(Protocol::RemoteWrite, &strata.endpoints, &work).context("loading Strata")?;
    let prometheus = if a.strata_only {
        None
    } else {
        let p = Server::start(System::Prometheus, programs)?;
        drive(Protocol::RemoteWrite, &p.endpoints, &work).context("loading Prometheus")?;
        Some(p)
    };
    drop(work);
    eprintln!("  compacting and rolling up Strata; waiting for Prometheus to compact its head");
    strata
        .endpoints
        .api
        .post_empty("/api/v1/admin/compact")
        .context("compacting Strata")?;
    // What the node's maintenance would do within minutes on its own; done here so that it
    // does not compete with the timed queries, as Prometheus' head compaction is waited for.
    strata
        .endpoints
        .api
        .post_empty("/api/v1/admin/downsample")
        .context("downsampling Strata")?;
    if let Some(p) = &prometheus {
        settle_prometheus(&p.endpoints.api)?;
    }

    let start = seconds(end_ms - day_ms);
    let end = seconds(end_ms);
    for q in &queries {
        let params: Vec<(&str, &str)> = match q.step {
            None => vec![("query", q.promql.as_str()), ("time", end.as_str())],
            Some(step) => vec![
                ("query", q.promql.as_str()),
                ("start", start.as_str()),
                ("end", end.as_str()),
                ("step", step),
            ],
        };
        let path = if q.step.is_some() {
            "/api/v1/query_range"
        } else {
            "/api/v1/query"
        };
        let servers: Vec<&Server> = std::iter::once(&strata).chain(&prometheus).collect();
        let mut answers = Vec::new();
        for s in &servers {
            // Warm-up runs (page cache, lazy index loads) are not counted.
            s.endpoints.api.get_plain(path, &params)?;
            answers.push(Digest::of(&s.endpoints.api.get_data(path, &params)?));
        }
        let Some(reference) = answers.get(1) else {
            let mut lat = Vec::new();
            for _ in 0..a.repeat.max(1) {
                let t = Instant::now();
                strata.endpoints.api.get_plain(path, &params)?;
                lat.push(t.elapsed());
            }
            let ls = Percentiles::of(lat);
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            let (p50, p99) = (ms(ls.at(50.0)), ms(ls.at(99.0)));
            eprintln!("  {}: Strata p50 {p50:.2} ms p99 {p99:.2} ms", q.name);
            rows.push(Row {
                workload: format!("query: {} (`{}`)", q.name, q.promql),
                strata: format!("p50 {p50:.2} ms, p99 {p99:.2} ms"),
                reference: "—".into(),
                ratio: None,
                goal: String::new(),
                met: None,
            });
            continue;
        };
        let agree = answers[0].agrees(reference);
        if !agree {
            eprintln!(
                "  WARNING: answers differ for {}: Strata {:?}, Prometheus {:?}",
                q.promql, answers[0], answers[1]
            );
        }
        let mut lat = [Vec::new(), Vec::new()];
        let mut left = a.repeat.max(1);
        while left > 0 {
            let runs = left.min(RUNS_PER_TURN);
            left -= runs;
            for (i, s) in servers.iter().enumerate().take(2) {
                let _others = servers
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != i)
                    .map(|(_, o)| o.pause())
                    .collect::<Result<Vec<_>>>()?;
                // The server was itself stopped during the other's turn: its first query
                // after SIGCONT also runs whatever timers came due meanwhile. Untimed, for
                // both servers alike.
                s.endpoints.api.get_plain(path, &params)?;
                for _ in 0..runs {
                    let t = Instant::now();
                    s.endpoints.api.get_plain(path, &params)?;
                    lat[i].push(t.elapsed());
                }
            }
        }
        let [ls, lp] = lat;
        let (ls, lp) = (Percentiles::of(ls), Percentiles::of(lp));
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let ratio50 = ms(ls.at(50.0)) / ms(lp.at(50.0)).max(1e-9);
        let ratio99 = ms(ls.at(99.0)) / ms(lp.at(99.0)).max(1e-9);
        // The goal holds for both percentiles, so the table shows the larger ratio.
        let ratio = ratio50.max(ratio99);
        eprintln!(
            "  {}: Strata p50 {} p99 {}; Prometheus p50 {} p99 {}; ratios p50 {ratio50:.3} p99 {ratio99:.3}",
            q.name,
            latency(ls.at(50.0)),
            latency(ls.at(99.0)),
            latency(lp.at(50.0)),
            latency(lp.at(99.0))
        );
        rows.push(Row {
            workload: format!(
                "query: {} (`{}`){}",
                q.name,
                q.promql,
                if agree { "" } else { " — answers differ" }
            ),
            strata: format!("p50 {}, p99 {}", latency(ls.at(50.0)), latency(ls.at(99.0))),
            reference: format!(
                "Prometheus p50 {}, p99 {}",
                latency(lp.at(50.0)),
                latency(lp.at(99.0))
            ),
            ratio: Some(ratio),
            goal: format!("≤ {}× Prometheus (p50 and p99)", q.goal_factor),
            met: Some(ratio <= q.goal_factor && agree),
        });
    }
    Ok(())
}

/// A latency in milliseconds, with two decimals below 10 ms (a one-series query takes a
/// fraction of a millisecond).
fn latency(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

/// Waits until Prometheus has compacted its head down to the last few hours, so that queries
/// meet it in its steady state (blocks on disk plus a small head) rather than mid-compaction.
fn settle_prometheus(api: &Api) -> Result<()> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let stats = api.get_data("/api/v1/status/tsdb", &[])?;
        let head = &stats["headStats"];
        let (min, max) = (head["minTime"].as_i64(), head["maxTime"].as_i64());
        if let (Some(min), Some(max)) = (min, max) {
            if max - min <= SETTLED_HEAD_SPAN_MS {
                // Give the compactor a moment to finish writing the last block.
                std::thread::sleep(Duration::from_secs(5));
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("Prometheus did not compact its head within {SETTLE_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// What is compared between the two systems' answers: series and values counted, values
/// summed.
#[derive(Debug)]
struct Digest {
    series: usize,
    points: usize,
    sum: f64,
}

impl Digest {
    fn of(data: &Value) -> Digest {
        let mut d = Digest {
            series: 0,
            points: 0,
            sum: 0.0,
        };
        let value = |v: &Value| {
            v.get(1)
                .and_then(Value::as_str)
                .and_then(|s| s.parse::<f64>().ok())
        };
        for s in data["result"].as_array().into_iter().flatten() {
            d.series += 1;
            let points: Vec<&Value> = match (s.get("values"), s.get("value")) {
                (Some(Value::Array(vs)), _) => vs.iter().collect(),
                (_, Some(v)) => vec![v],
                _ => Vec::new(),
            };
            for p in points {
                d.points += 1;
                d.sum += value(p).unwrap_or(0.0);
            }
        }
        d
    }

    fn agrees(&self, other: &Digest) -> bool {
        let scale = self.sum.abs().max(other.sum.abs()).max(1.0);
        self.series == other.series
            && self.points == other.points
            && (self.sum - other.sum).abs() / scale < 1e-9
    }
}
