//! Oracle test: the same data in real Prometheus (2.42, Debian's package) and in a tsdb-node
//! `Engine`; every query must give the same result from both.
//!
//! Needs `prometheus` and `promtool` on PATH (`apt-get install -y prometheus`); fails with a
//! clear message when they are missing, because CI installs them.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use tsdb_node::promql::{render_data, QueryEngine, QueryLimits};
use tsdb_node::storage::{Engine, EngineOptions, Labels, Retention, Sample};

const T0: i64 = 1_700_000_000_000;
const STEP: i64 = 15_000;
const N: i64 = 480; // two hours of 15 s samples

/// Kills Prometheus when the test ends, panics included.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

type SeriesPoints = (Labels, Vec<(i64, f64)>);
type Dataset = Vec<SeriesPoints>;

fn labels(name: &str, pairs: &[(&str, &str)]) -> Labels {
    Labels::from_metric(name, pairs)
}

/// Rounds to 3 decimals so that values look like real gauges.
fn r3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn dataset() -> Dataset {
    let mut out: Dataset = Vec::new();
    let hosts = ["a", "b", "c"];
    for (h, host) in hosts.iter().enumerate() {
        let dc = if h == 2 { "y" } else { "x" };
        // Gauges with decimals.
        let pts = (0..N)
            .map(|i| {
                let x = i as f64;
                (
                    T0 + i * STEP,
                    r3(20.0 + 7.0 * (x / 17.0 + h as f64).sin() + h as f64 * 0.37),
                )
            })
            .collect();
        out.push((labels("gauge_temp", &[("host", host), ("dc", dc)]), pts));
        // Counters, one with a reset half-way.
        for (c, code) in ["200", "500"].iter().enumerate() {
            let mut v = 100.0 * h as f64 + 3.0 * c as f64;
            let pts = (0..N)
                .map(|i| {
                    if h == 1 && c == 0 && i == N / 2 {
                        v = 2.0;
                    }
                    v += ((i * 7 + h as i64 * 3 + c as i64) % 11) as f64 + 0.5 * (c as f64 + 1.0);
                    (T0 + i * STEP, v)
                })
                .collect();
            out.push((
                labels("http_requests_total", &[("host", host), ("code", code)]),
                pts,
            ));
        }
        // A histogram.
        let bounds = ["0.1", "0.5", "1", "+Inf"];
        let mut counts = [0.0f64; 4];
        let mut series: Vec<Vec<(i64, f64)>> = vec![Vec::new(); 4];
        let mut sum = Vec::new();
        let mut count = Vec::new();
        let mut total_sum = 0.0;
        for i in 0..N {
            let add = [
                ((i + h as i64) % 3) as f64,
                ((i * 2 + h as i64) % 5) as f64,
                ((i + 1) % 4) as f64,
                (i % 2) as f64,
            ];
            let mut cum = 0.0;
            for b in 0..4 {
                cum += add[b];
                counts[b] += cum;
                series[b].push((T0 + i * STEP, counts[b]));
            }
            total_sum += r3(cum * 0.33 + h as f64 * 0.1);
            sum.push((T0 + i * STEP, r3(total_sum)));
            count.push((T0 + i * STEP, counts[3]));
        }
        for (b, le) in bounds.iter().enumerate() {
            out.push((
                labels("req_duration_seconds_bucket", &[("host", host), ("le", le)]),
                series[b].clone(),
            ));
        }
        out.push((labels("req_duration_seconds_sum", &[("host", host)]), sum));
        out.push((
            labels("req_duration_seconds_count", &[("host", host)]),
            count,
        ));
        // A small-integer gauge for count_values.
        let pts = (0..N)
            .map(|i| (T0 + i * STEP, ((i / 20 + h as i64) % 3) as f64))
            .collect();
        out.push((labels("mode", &[("host", host)]), pts));
    }
    // Series that stop (lookback and absent) and one that starts late.
    out.push((
        labels("stopping_gauge", &[("id", "1")]),
        (0..N / 2)
            .map(|i| (T0 + i * STEP, 1.5 + i as f64 * 0.25))
            .collect(),
    ));
    // Ten-second sensors, so that samples sit exactly on minute and hour edges (rollup window
    // ends); one holds a NaN.
    for (k, id) in ["1", "2", "nan"].iter().enumerate() {
        out.push((
            labels("sensor_aligned", &[("id", id)]),
            (0..N * 3 / 2)
                .map(|i| {
                    let v = if *id == "nan" && i == 300 {
                        f64::NAN
                    } else {
                        r3(15.0 + 4.0 * (i as f64 / 23.0 + k as f64).cos())
                    };
                    (T0 + i * 10_000, v)
                })
                .collect(),
        ));
    }
    out.push((
        labels("late_gauge", &[("id", "2")]),
        (N / 4..N)
            .map(|i| (T0 + i * STEP, 100.0 - i as f64 * 0.125))
            .collect(),
    ));
    out
}

fn write_openmetrics(data: &Dataset, path: &Path) {
    let mut s = String::new();
    // A family's lines must be contiguous: group by metric name.
    let mut by_name: BTreeMap<String, Vec<&SeriesPoints>> = BTreeMap::new();
    for d in data {
        by_name
            .entry(d.0.metric_name().unwrap_or("").to_string())
            .or_default()
            .push(d);
    }
    for (name, series) in by_name {
        for (l, pts) in series {
            let lbl: Vec<String> = l
                .iter()
                .filter(|x| x.name != "__name__")
                .map(|x| format!("{}=\"{}\"", x.name, x.value))
                .collect();
            for (t, v) in pts {
                s.push_str(&format!(
                    "{name}{{{}}} {v} {}.{:03}\n",
                    lbl.join(","),
                    t / 1000,
                    t % 1000
                ));
            }
        }
    }
    s.push_str("# EOF\n");
    std::fs::write(path, s).unwrap();
}

fn require(bin: &str) {
    let found = Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "`{bin}` is not installed: the PromQL oracle test needs Prometheus 2.42's `prometheus` and \
         `promtool` binaries (Debian: `apt-get install -y prometheus`)"
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A GET over HTTP/1.0 (so the body is neither chunked nor kept alive); status and body.
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

fn start_prometheus(data: &Dataset, dir: &Path) -> (Server, u16) {
    let om = dir.join("data.om");
    write_openmetrics(data, &om);
    let tsdb = dir.join("prom");
    let out = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om)
        .arg(&tsdb)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        "global:\n  scrape_interval: 1m\n  evaluation_interval: 1m\n",
    )
    .unwrap();
    let port = free_port();
    let child = Command::new("prometheus")
        .arg(format!("--storage.tsdb.path={}", tsdb.display()))
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--storage.tsdb.retention.time=100y")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start prometheus");
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok((200, _)) = http_get(port, "/-/ready") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus did not become ready in 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (server, port)
}

/// How the engine's copy of the data is laid out.
#[derive(Clone, Copy, PartialEq)]
enum Layout {
    /// The first half in segments, the rest in the head.
    HalfFlushed,
    /// Compacted into one-hour blocks and downsampled (the blocks that end before the newest
    /// data minus the out-of-order window), the last ten minutes in the head: range
    /// functions over aligned windows read rollups.
    Downsampled,
}

fn load_engine(data: &Dataset, dir: &Path, layout: Layout) -> Arc<Engine> {
    let mut opts = EngineOptions::new(dir);
    opts.wal_sync = false;
    opts.retention = Retention::keep_forever();
    if layout == Layout::Downsampled {
        opts.out_of_order_window_ms = 5 * 60_000;
        opts.block_ranges_ms = vec![3_600_000];
    }
    let engine = Engine::open(opts).unwrap();
    let mut by_time: BTreeMap<i64, Vec<(Labels, Sample)>> = BTreeMap::new();
    for (l, pts) in data {
        for &(t, v) in pts {
            by_time
                .entry(t)
                .or_default()
                .push((l.clone(), Sample::new(t, v)));
        }
    }
    let cut = match layout {
        Layout::HalfFlushed => T0 + N / 2 * STEP,
        Layout::Downsampled => T0 + N * STEP - 10 * 60_000,
    };
    let mut flushed = false;
    for (t, batch) in by_time {
        if t > cut && !flushed {
            engine.flush().unwrap();
            if layout == Layout::Downsampled {
                engine.compact_all().unwrap();
                assert!(engine.downsample().unwrap() > 0, "no rollups were written");
            }
            flushed = true;
        }
        let out = engine.append_labeled(&batch).unwrap();
        assert!(out.rejected.is_empty(), "{:?}", out.rejected);
    }
    Arc::new(engine)
}

fn parse_value(s: &Json) -> f64 {
    match s.as_str().unwrap_or("") {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().unwrap_or(f64::NAN),
    }
}

fn same_value(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a.is_infinite() || b.is_infinite() {
        return a == b;
    }
    a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

type Point = (f64, f64);
/// A result reduced to comparable form: type and (metric, points) per series.
type Norm = (String, Vec<(String, Vec<Point>)>);

fn normalize(data: &Json, ordered: bool) -> Norm {
    let ty = data["resultType"].as_str().unwrap_or("").to_string();
    let point = |p: &Json| (p[0].as_f64().unwrap_or(f64::NAN), parse_value(&p[1]));
    let mut series: Vec<(String, Vec<Point>)> = match ty.as_str() {
        "scalar" | "string" => vec![(
            String::new(),
            vec![(
                data["result"][0].as_f64().unwrap_or(f64::NAN),
                if ty == "string" {
                    0.0
                } else {
                    parse_value(&data["result"][1])
                },
            )],
        )],
        _ => data["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|s| {
                let metric: BTreeMap<String, String> =
                    serde_json::from_value(s["metric"].clone()).unwrap_or_default();
                let points = match s.get("values") {
                    Some(v) => v.as_array().unwrap().iter().map(point).collect(),
                    None => vec![point(&s["value"])],
                };
                (format!("{metric:?}"), points)
            })
            .collect(),
    };
    if !ordered {
        series.sort_by(|a, b| a.0.cmp(&b.0));
    }
    (ty, series)
}

fn compare(want: &Norm, got: &Norm) -> Result<(), String> {
    if want.0 != got.0 {
        return Err(format!(
            "result type: prometheus {} vs ours {}",
            want.0, got.0
        ));
    }
    if want.1.len() != got.1.len() {
        return Err(format!(
            "series count: prometheus {} vs ours {}\n  prometheus: {:?}\n  ours:       {:?}",
            want.1.len(),
            got.1.len(),
            want.1.iter().map(|s| &s.0).collect::<Vec<_>>(),
            got.1.iter().map(|s| &s.0).collect::<Vec<_>>()
        ));
    }
    for (w, g) in want.1.iter().zip(&got.1) {
        if w.0 != g.0 {
            return Err(format!("labels: prometheus {} vs ours {}", w.0, g.0));
        }
        if w.1.len() != g.1.len() {
            return Err(format!(
                "{}: {} points from prometheus, {} from ours",
                w.0,
                w.1.len(),
                g.1.len()
            ));
        }
        for (pw, pg) in w.1.iter().zip(&g.1) {
            if pw.0 != pg.0 || !same_value(pw.1, pg.1) {
                return Err(format!("{}: prometheus {:?} vs ours {:?}", w.0, pw, pg));
            }
        }
    }
    Ok(())
}

/// Queries evaluated both as instant and as range queries.
const QUERIES: &[&str] = &[
    // Selectors and matchers.
    "gauge_temp",
    "gauge_temp{host=\"a\"}",
    "gauge_temp{host!=\"a\"}",
    "gauge_temp{host=~\"a|c\"}",
    "gauge_temp{host!~\"a|c\"}",
    "{__name__=\"gauge_temp\", dc=\"x\"}",
    "{__name__=~\"gauge_.*|mode\"}",
    "gauge_temp offset 10m",
    "gauge_temp offset -5m",
    "stopping_gauge",
    "late_gauge",
    "gauge_temp @ 1700003600",
    "gauge_temp @ start()",
    "gauge_temp @ end()",
    // Range functions.
    "rate(http_requests_total[5m])",
    "rate(http_requests_total[1m])",
    "rate(http_requests_total[2m] offset 3m)",
    "increase(http_requests_total[10m])",
    "irate(http_requests_total[5m])",
    "delta(gauge_temp[5m])",
    "idelta(gauge_temp[3m])",
    "deriv(gauge_temp[10m])",
    "predict_linear(gauge_temp[10m], 600)",
    "avg_over_time(gauge_temp[5m])",
    "sum_over_time(gauge_temp[7m])",
    "min_over_time(gauge_temp[5m])",
    "max_over_time(gauge_temp[5m])",
    "count_over_time(stopping_gauge[10m])",
    "last_over_time(gauge_temp[5m])",
    "quantile_over_time(0.9, gauge_temp[10m])",
    "quantile_over_time(0.25, gauge_temp[10m])",
    "stddev_over_time(gauge_temp[10m])",
    "stdvar_over_time(gauge_temp[10m])",
    "present_over_time(stopping_gauge[5m])",
    "changes(mode[15m])",
    "resets(http_requests_total[30m])",
    "absent_over_time(stopping_gauge[5m])",
    "absent_over_time(nonexistent{job=\"x\"}[5m])",
    "rate(http_requests_total[5m] @ 1700003600)",
    // Subqueries.
    "max_over_time(rate(http_requests_total[5m])[30m:1m])",
    "avg_over_time(gauge_temp[10m:])",
    "min_over_time(sum(gauge_temp)[20m:2m] offset 5m)",
    "rate(http_requests_total[5m:30s])",
    // Math.
    "abs(gauge_temp - 25)",
    "ceil(gauge_temp)",
    "floor(gauge_temp)",
    "round(gauge_temp)",
    "round(gauge_temp, 0.5)",
    "round(gauge_temp, 5)",
    "clamp(gauge_temp, 18, 24)",
    "clamp_min(gauge_temp, 22)",
    "clamp_max(gauge_temp, 22)",
    "exp(mode)",
    "ln(gauge_temp)",
    "log2(gauge_temp)",
    "log10(gauge_temp)",
    "sqrt(gauge_temp)",
    "sgn(gauge_temp - 22)",
    "time()",
    "timestamp(gauge_temp)",
    "timestamp(stopping_gauge)",
    "timestamp(abs(gauge_temp))",
    "vector(1)",
    "vector(time())",
    "scalar(sum(gauge_temp))",
    "scalar(gauge_temp)",
    "label_replace(gauge_temp, \"hostname\", \"host-$1\", \"host\", \"(.*)\")",
    "label_replace(gauge_temp, \"host\", \"\", \"dc\", \"y\")",
    "label_join(gauge_temp, \"id\", \"/\", \"dc\", \"host\")",
    "absent(gauge_temp)",
    "absent(nonexistent{job=\"x\", env=\"prod\"})",
    "absent(stopping_gauge)",
    "histogram_quantile(0.9, req_duration_seconds_bucket)",
    "histogram_quantile(0.5, rate(req_duration_seconds_bucket[5m]))",
    "histogram_quantile(0.99, sum by (le) (rate(req_duration_seconds_bucket[10m])))",
    "rate(req_duration_seconds_sum[5m]) / rate(req_duration_seconds_count[5m])",
    // Aggregations.
    "sum(gauge_temp)",
    "sum by (dc) (gauge_temp)",
    "sum without (host) (gauge_temp)",
    "avg(gauge_temp)",
    "avg by (dc) (gauge_temp)",
    "min(gauge_temp)",
    "max by (dc) (gauge_temp)",
    "count(gauge_temp)",
    "count by (code) (http_requests_total)",
    "group by (dc) (gauge_temp)",
    "stddev(gauge_temp)",
    "stdvar by (dc) (gauge_temp)",
    "topk(2, gauge_temp)",
    "bottomk(1, gauge_temp)",
    "topk by (code) (1, rate(http_requests_total[5m]))",
    "quantile(0.5, gauge_temp)",
    "quantile by (code) (0.9, rate(http_requests_total[5m]))",
    "count_values(\"value\", mode)",
    "count_values by (host) (\"v\", mode)",
    "sum(rate(http_requests_total[5m])) by (host)",
    "sum by (__name__) ({__name__=~\"gauge_temp|mode\"})",
    // Binary operators.
    "gauge_temp * 2",
    "2 * gauge_temp",
    "gauge_temp / 3 + 1",
    "gauge_temp % 4",
    "gauge_temp ^ 2",
    "1 - gauge_temp",
    "-gauge_temp",
    "gauge_temp > 22",
    "22 < gauge_temp",
    "gauge_temp > bool 22",
    "gauge_temp == bool 20",
    "gauge_temp <= 21",
    "gauge_temp != 0",
    "gauge_temp >= gauge_temp offset 1m",
    "gauge_temp - gauge_temp offset 5m",
    "gauge_temp > bool gauge_temp offset 1m",
    "http_requests_total / on (host) group_left sum by (host) (http_requests_total)",
    "sum by (host) (http_requests_total) / on (host) group_right http_requests_total",
    "http_requests_total / ignoring (code) group_left sum without (code) (http_requests_total)",
    "rate(http_requests_total{code=\"500\"}[5m]) / ignoring (code) rate(http_requests_total{code=\"200\"}[5m])",
    "gauge_temp + on (host) mode",
    "gauge_temp * ignoring (dc) group_left mode",
    "gauge_temp and gauge_temp > 22",
    "gauge_temp or late_gauge",
    "stopping_gauge or vector(0)",
    "gauge_temp unless gauge_temp{host=\"a\"}",
    "gauge_temp and on (host) (mode == 1)",
    "gauge_temp unless ignoring (dc) mode > 1",
    "mode == 1 or on (host) gauge_temp",
    "1 + 2 * 3",
    "2 ^ 3 ^ 2",
    "5 % 3",
    "1 > bool 2",
    "time() - 1700000000",
    "(gauge_temp)",
    "sum(gauge_temp) / count(gauge_temp)",
    "avg(gauge_temp) - scalar(min(gauge_temp))",
    "gauge_temp{host=\"a\", dc=\"x\"}",
    "gauge_temp{host=~\"[ab]\", dc!=\"y\"}",
    "mode{host=~\".+\"} offset 1h",
    "increase(req_duration_seconds_count[15m])",
    "delta(late_gauge[20m])",
    "deriv(late_gauge[30m])",
    "irate(req_duration_seconds_sum[1m])",
    "max_over_time(stopping_gauge[30m])",
    "avg_over_time(late_gauge[1h])",
    "last_over_time(stopping_gauge[10m])",
    "sum_over_time(mode[30m]) / count_over_time(mode[30m])",
    "count(count_values(\"v\", mode))",
    "max(topk(2, gauge_temp))",
    "sum without (le) (req_duration_seconds_bucket)",
    "avg without (host, dc) (gauge_temp)",
    "quantile(0.1, http_requests_total)",
    "bottomk by (host) (1, http_requests_total)",
    "http_requests_total > on (host) group_left mode",
    "clamp(gauge_temp, 24, 18)",
    "round(-gauge_temp, 0.1)",
    "sum(gauge_temp @ 1700003600)",
    "stddev by (code) (rate(http_requests_total[10m]))",
    // Shapes streamed series by series on several threads, partial folds merged.
    "sum(rate(http_requests_total[5m]))",
    "avg(rate(http_requests_total[5m]))",
    "min by (code) (increase(http_requests_total[10m]))",
    "max(avg_over_time(gauge_temp[5m]))",
    "count(stopping_gauge)",
    "avg by (dc) (gauge_temp offset 10m)",
    "group(deriv(gauge_temp[10m]))",
    "stddev(rate(http_requests_total[5m]))",
    // Dates, smoothing and the remaining math.
    "year()",
    "month()",
    "day_of_month()",
    "day_of_week()",
    "day_of_year()",
    "days_in_month()",
    "hour()",
    "minute()",
    "year(timestamp(gauge_temp))",
    "hour(gauge_temp * 3600)",
    "minute(timestamp(gauge_temp offset 7m))",
    "day_of_week(vector(1700000000 + 86400 * 3))",
    "day_of_year(http_requests_total * 86400)",
    "days_in_month(vector(1709214310))",
    "month(mode * 2592000)",
    "holt_winters(gauge_temp[10m], 0.3, 0.6)",
    "holt_winters(http_requests_total[5m], 0.5, 0.1)",
    "holt_winters(gauge_temp[10m], 1.5, 0.5)",
    "pi()",
    "pi() * gauge_temp",
    "sin(gauge_temp)",
    "cos(gauge_temp)",
    "tan(gauge_temp)",
    "asin(mode / 3)",
    "acos(mode / 3)",
    "atan(gauge_temp)",
    "sinh(mode)",
    "cosh(mode)",
    "tanh(gauge_temp / 10)",
    "asinh(gauge_temp)",
    "acosh(gauge_temp)",
    "atanh(mode / 3)",
    "deg(gauge_temp)",
    "rad(gauge_temp)",
];

/// Queries evaluated only as instant queries (range vectors, strings, ordering).
const INSTANT_ONLY: &[&str] = &[
    "gauge_temp[1m]",
    "http_requests_total{host=\"b\"}[2m] offset 1m",
    "gauge_temp[5m:1m]",
    "\"hello\"",
    "sort(gauge_temp)",
    "sort_desc(gauge_temp)",
    "sort_desc(rate(http_requests_total[5m]))",
];

/// `*_over_time` queries over windows that line up with rollup buckets, run on grids aligned to
/// 1 minute, 5 minutes and 1 hour: the downsampled engine answers them from rollups plus the raw
/// samples at the window ends.
const ROLLUP_QUERIES: &[&str] = &[
    "sum_over_time(sensor_aligned[5m])",
    "avg_over_time(sensor_aligned[5m])",
    "min_over_time(sensor_aligned[10m])",
    "max_over_time(sensor_aligned[1h])",
    "count_over_time(sensor_aligned[5m])",
    "avg_over_time(sensor_aligned[15m] offset 5m)",
    "sum_over_time(sensor_aligned{id!=\"nan\"}[1h]) / count_over_time(sensor_aligned{id!=\"nan\"}[1h])",
    "avg_over_time(sensor_aligned[1m]) - min_over_time(sensor_aligned[1m])",
    "sum by (id) (count_over_time(sensor_aligned[5m]))",
    "sum_over_time(gauge_temp[5m])",
    "max_over_time(http_requests_total[30m])",
    "min_over_time(req_duration_seconds_sum[1h])",
    "count_over_time(stopping_gauge[10m])",
    "avg_over_time(late_gauge[1h])",
];

#[test]
fn promql_matches_prometheus() {
    require("prometheus");
    require("promtool");
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let data = dataset();
    let (_server, port) = start_prometheus(&data, dir.path());
    let engine = load_engine(&data, &dir.path().join("strata"), Layout::HalfFlushed);
    let qe = QueryEngine::new(engine, QueryLimits::default());
    let downsampled = load_engine(&data, &dir.path().join("rolled"), Layout::Downsampled);
    assert!(downsampled.stats().rollup_segments > 0);
    let qe_rolled = QueryEngine::new(downsampled, QueryLimits::default());

    let instant_times = [
        T0 + 30 * 60_000,
        T0 + 61 * 60_000 + 7_000,
        T0 + 90 * 60_000,
        T0 + N * STEP,
        T0 + N * STEP + 4 * 60_000,
    ];
    let ranges = [
        (T0 + 10 * 60_000, T0 + N * STEP + 60_000, 60_000),
        (T0 + 5 * 60_000, T0 + 65 * 60_000, 37_000),
    ];
    let mut failures = Vec::new();
    let mut checks = 0;
    let mut both_failed = Vec::new();
    let mut run = |q: &str, path: String, ours: Result<String, String>, ordered: bool| {
        checks += 1;
        let (status, body) = match http_get(port, &path) {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{q}: request to prometheus failed: {e}"));
                return;
            }
        };
        let prom: Json = serde_json::from_str(&body).unwrap_or(Json::Null);
        match (status, ours) {
            (200, Ok(ours)) => {
                let ours: Json = serde_json::from_str(&ours).unwrap();
                if let Err(e) = compare(
                    &normalize(&prom["data"], ordered),
                    &normalize(&ours, ordered),
                ) {
                    failures.push(format!("{path}\n  query: {q}\n  {e}"));
                }
            }
            (200, Err(e)) => failures.push(format!("{path}\n  query: {q}\n  ours failed: {e}")),
            (_, Ok(_)) => failures.push(format!(
                "{path}\n  query: {q}\n  prometheus failed ({status}: {body}), ours succeeded"
            )),
            (_, Err(e)) => both_failed.push(format!("{q}: prometheus {status}, ours: {e}")),
        }
    };
    for q in QUERIES.iter().chain(INSTANT_ONLY) {
        let ordered = q.starts_with("sort");
        for &t in &instant_times {
            let path = format!(
                "/api/v1/query?query={}&time={}",
                encode(q),
                tsdb_node::promql::format_timestamp(t)
            );
            let ours = qe
                .instant(q, t)
                .map(|r| render_data(&r))
                .map_err(|e| e.to_string());
            run(q, path, ours, ordered);
        }
    }
    for q in QUERIES {
        for &(s, e, step) in &ranges {
            let path = format!(
                "/api/v1/query_range?query={}&start={}&end={}&step={}",
                encode(q),
                tsdb_node::promql::format_timestamp(s),
                tsdb_node::promql::format_timestamp(e),
                tsdb_node::promql::format_timestamp(step)
            );
            let ours = qe
                .range(q, s, e, step)
                .map(|r| render_data(&r))
                .map_err(|e| e.to_string());
            run(q, path, ours, false);
        }
    }
    // T0 is 200 s past a 5-minute edge and 800 s past an hour.
    let five = T0 + 100_000;
    let hour = T0 + 2_800_000;
    let rollup_instants = [five + 30 * 60_000, hour, hour + 3_600_000];
    let rollup_ranges = [
        (five + 15 * 60_000, five + 115 * 60_000, 300_000),
        (five + 10 * 60_000, five + 60 * 60_000, 60_000),
        (hour, hour + 3_600_000, 3_600_000),
    ];
    for (layout, engine) in [("half-flushed", &qe), ("downsampled", &qe_rolled)] {
        for q in ROLLUP_QUERIES {
            for &t in &rollup_instants {
                let path = format!(
                    "/api/v1/query?query={}&time={}",
                    encode(q),
                    tsdb_node::promql::format_timestamp(t)
                );
                let ours = engine
                    .instant(q, t)
                    .map(|r| render_data(&r))
                    .map_err(|e| e.to_string());
                run(&format!("{q} ({layout})"), path, ours, false);
            }
            for &(s, e, step) in &rollup_ranges {
                let path = format!(
                    "/api/v1/query_range?query={}&start={}&end={}&step={}",
                    encode(q),
                    tsdb_node::promql::format_timestamp(s),
                    tsdb_node::promql::format_timestamp(e),
                    tsdb_node::promql::format_timestamp(step)
                );
                let ours = engine
                    .range(q, s, e, step)
                    .map(|r| render_data(&r))
                    .map_err(|e| e.to_string());
                run(&format!("{q} ({layout})"), path, ours, false);
            }
        }
    }
    let rollup_reads = qe_rolled.rollup_selectors_total();
    let expected_reads: usize = ROLLUP_QUERIES
        .iter()
        .map(|q| q.matches("_over_time(").count())
        .sum::<usize>()
        * (rollup_instants.len() + rollup_ranges.len());
    let total = QUERIES.len() + INSTANT_ONLY.len() + ROLLUP_QUERIES.len();
    for f in &both_failed {
        eprintln!("both failed (expected for queries Prometheus rejects): {f}");
    }
    for f in &failures {
        eprintln!("MISMATCH {f}\n");
    }
    eprintln!(
        "{} queries, {checks} comparisons, {} mismatches, {:?}",
        total,
        failures.len(),
        started.elapsed()
    );
    assert!(total >= 150, "only {total} queries");
    assert_eq!(
        rollup_reads, expected_reads as u64,
        "every aligned window of the rollup queries must have been read from rollups"
    );
    assert!(
        failures.is_empty(),
        "{} of {checks} comparisons differ",
        failures.len()
    );
}
