//! The real `stratactl` binary against a node started in-process on ephemeral ports: writes,
//! queries in every output format, series, admin actions, status, generation over every
//! ingest protocol with exact counts read back, load benchmarks and server errors.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

mod common;

use common::RunningNode;

struct Running {
    node: RunningNode,
}

impl Running {
    fn start(dir: &Path) -> Running {
        Running {
            node: RunningNode::start(
                dir,
                "  out_of_order_window: 0\n",
                &RunningNode::sensor_user(),
            ),
        }
    }

    /// Runs `stratactl` pointed at this node.
    fn ctl(&self, args: &[&str]) -> Output {
        let out = Command::new(env!("CARGO_BIN_EXE_stratactl"))
            .env_remove("STRATA_SERVER")
            .env("STRATA_USER", "sensor")
            .env("STRATA_PASSWORD", "s3cret")
            .arg("--server")
            .arg(format!("http://{}", self.node.addrs.http))
            .arg("--tcp-addr")
            .arg(self.node.addrs.tcp_json.to_string())
            .arg("--binary-addr")
            .arg(self.node.addrs.binary.to_string())
            .args(args)
            .output()
            .expect("stratactl runs");
        out
    }

    /// Runs `stratactl` and returns its stdout, failing the test on a non-zero exit.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "stratactl {args:?} failed\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// The single value of an instant query, through `stratactl query -o json`.
    fn scalar(&self, promql: &str, time: &str) -> f64 {
        let v: Value =
            serde_json::from_str(&self.ok(&["query", promql, "--time", time, "-o", "json"]))
                .unwrap();
        let result = v["result"].as_array().expect("vector result");
        assert_eq!(result.len(), 1, "{promql}: {v}");
        result[0]["value"][1].as_str().unwrap().parse().unwrap()
    }

    fn stop(self) {
        self.node.stop();
    }
}

#[test]
fn stratactl_drives_a_running_node() {
    let dir = tempfile::tempdir().unwrap();
    let node = Running::start(dir.path());
    let t0: i64 = chrono::Utc::now().timestamp_millis() - 60_000;

    // write from a file → query in json and csv → series → flush → status
    let file = dir.path().join("lines.txt");
    std::fs::write(
        &file,
        format!(
            "cpu_usage,host=server1 45.2 {t0}\ncpu_usage,host=server2 50.5 {t0}\ncpu_usage,host=server1 46 {}\n",
            t0 + 10_000
        ),
    )
    .unwrap();
    let out = node.ok(&["write", file.to_str().unwrap()]);
    assert!(out.contains("stored 3 line(s)"), "{out}");

    let at = format!("{:.3}", (t0 + 10_000) as f64 / 1000.0);
    let json = node.ok(&["query", "cpu_usage", "--time", &at, "--output", "json"]);
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["resultType"], "vector");
    let mut got: Vec<(String, String)> = v["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["metric"]["host"].as_str().unwrap().to_string(),
                r["value"][1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("server1".to_string(), "46".to_string()),
            ("server2".to_string(), "50.5".to_string())
        ]
    );

    let start = format!("{:.3}", t0 as f64 / 1000.0);
    let csv = node.ok(&[
        "query",
        r#"cpu_usage{host="server1"}"#,
        "--start",
        &start,
        "--end",
        &at,
        "--step",
        "10s",
        "-o",
        "csv",
    ]);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "series,timestamp,value");
    let rows: Vec<(f64, &str)> = lines[1..]
        .iter()
        .map(|l| {
            let mut f = l.rsplitn(3, ',');
            let value = f.next().unwrap();
            let ts: f64 = f.next().unwrap().parse().unwrap();
            let series = f.next().unwrap();
            assert_eq!(series, r#""cpu_usage{host=""server1""}""#);
            (ts, value)
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (t0 as f64 / 1000.0, "45.2"),
            ((t0 + 10_000) as f64 / 1000.0, "46")
        ]
    );
    let table = node.ok(&["query", "cpu_usage", "--time", &at]);
    assert!(table.starts_with("SERIES"), "{table}");
    assert!(table.contains(r#"cpu_usage{host="server2"}"#), "{table}");

    let series = node.ok(&["series", "cpu_usage"]);
    assert_eq!(
        series.lines().collect::<Vec<_>>(),
        vec![
            r#"cpu_usage{host="server1"}"#,
            r#"cpu_usage{host="server2"}"#
        ]
    );
    assert!(node.ok(&["flush"]).contains("flushed: true"));
    let status = node.ok(&["status"]);
    assert!(status.contains("version:"), "{status}");
    assert!(status.contains("storage:"), "{status}");

    // A refused write and a bad query report the server's message and exit non-zero.
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, "this is not line protocol\n").unwrap();
    let out = node.ctl(&["write", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1"));
    let out = node.ctl(&["query", "sum(rate(cpu_usage[5m]"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad_data"), "{err}");

    // generate over every protocol: exact counts back through PromQL. Every protocol writes
    // its own ten-minute slot of the past hour, so the runs never overlap and each slot is
    // counted alone.
    let base_s = chrono::Utc::now().timestamp() - 3600;
    for (k, (protocol, devices, metrics, points)) in [
        ("http-line", 3, 2, 20),
        ("remote-write", 2, 4, 15),
        ("tcp-json", 2, 1, 10),
        ("binary", 2, 3, 12),
    ]
    .into_iter()
    .enumerate()
    {
        let start = base_s + k as i64 * 600;
        let out = node.ok(&[
            "generate",
            "--protocol",
            protocol,
            "--devices",
            &devices.to_string(),
            "--metrics",
            &metrics.to_string(),
            "--points",
            &points.to_string(),
            "--interval",
            "1s",
            "--start",
            &start.to_string(),
            "--batch",
            "7",
        ]);
        assert!(out.contains("all acknowledged"), "{out}");
        // count_over_time drops the metric name, so each metric is counted on its own (a
        // selector over several metrics would give a vector with duplicate label sets).
        let names: Vec<&str> = if protocol == "binary" {
            vec!["ztsdb_series"]
        } else {
            tsdb_node::dataset::METRICS[..metrics].to_vec()
        };
        let count = |agg: &str, at: i64| -> f64 {
            names
                .iter()
                .map(|m| {
                    node.scalar(
                        &format!("{agg}(count_over_time({m}[1m]))"),
                        &format!("{at}.999"),
                    )
                })
                .sum()
        };
        // The window (t - 59.001s, t + 0.999s] at t = start holds the first step only; at
        // t = start + 59 s, the whole run and nothing of the other runs.
        assert_eq!(
            count("sum", start),
            (devices * metrics) as f64,
            "{protocol}: first step"
        );
        assert_eq!(
            count("count", start + 59),
            (devices * metrics) as f64,
            "{protocol}: series"
        );
        assert_eq!(
            count("sum", start + 59),
            (devices * metrics * points) as f64,
            "{protocol}: samples"
        );
    }

    // Load benchmarks over binary and TCP JSON with tiny sizes, and a query benchmark.
    for protocol in ["binary", "tcp-json"] {
        let out = node.ok(&[
            "bench",
            "--protocol",
            protocol,
            "--devices",
            "4",
            "--steps",
            "5",
            "--batch",
            "8",
            "--connections",
            "2",
        ]);
        assert!(out.contains("samples/s"), "{out}");
        assert!(out.contains("p99"), "{out}");
    }
    let out = node.ok(&["bench", "--query", "count(ztsdb_series)", "--repeat", "5"]);
    assert!(out.contains("p50") && out.contains("p99"), "{out}");

    node.stop();
}
