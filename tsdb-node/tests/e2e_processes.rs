//! End to end with real programs: the `strata-node` binary stopped by SIGTERM and restarted,
//! and a real Prometheus remote-writing to the node and scraping its `/metrics`.
//!
//! The Prometheus test needs the `prometheus` binary (Debian package `prometheus`) and skips
//! with a message when it is missing.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::process::{free_addr, spawn_node, KillOnDrop};

struct Addrs {
    http: SocketAddr,
    binary: SocketAddr,
    tcp: SocketAddr,
}

impl Addrs {
    /// Three ports free at the time of asking.
    fn free() -> Addrs {
        Addrs {
            http: free_addr(),
            binary: free_addr(),
            tcp: free_addr(),
        }
    }
}

fn write_config(dir: &Path, a: &Addrs) -> std::path::PathBuf {
    let yaml = format!(
        "server:\n  http_addr: {}\n  binary_addr: {}\n  tcp_addr: {}\n  shutdown_grace: 10s\nstorage:\n  data_dir: {d}/data\n  wal_dir: {d}/wal\nretention:\n  raw: 0\n",
        a.http,
        a.binary,
        a.tcp,
        d = dir.display()
    );
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// Polls `/ready` until it answers 200; panics with `what` after `limit`.
fn wait_ready(http: SocketAddr, limit: Duration, what: &str) {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(r) = agent().get(format!("http://{http}/ready")).call() {
            if r.status().as_u16() == 200 {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what} not ready within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn query(http: SocketAddr, q: &str, time_s: f64) -> Value {
    let mut r = agent()
        .get(format!("http://{http}/api/v1/query"))
        .query("query", q)
        .query("time", time_s.to_string())
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    r.body_mut().read_json().unwrap()
}

const T0: i64 = 1_700_000_000_000;

#[test]
fn binary_exits_cleanly_on_sigterm_and_keeps_acknowledged_data() {
    let dir = tempfile::tempdir().unwrap();
    let addrs = Addrs::free();
    let config = write_config(dir.path(), &addrs);
    let mut node = spawn_node(&config);
    wait_ready(addrs.http, Duration::from_secs(30), "strata-node");

    let body: String = (0..100)
        .map(|i| format!("e2e_sigterm,host=h{} {i} {}\n", i % 4, T0 + i * 1000))
        .collect();
    let r = agent()
        .post(format!("http://{}/api/v1/write", addrs.http))
        .header("Content-Type", "text/plain")
        .send(body)
        .unwrap();
    assert_eq!(r.status().as_u16(), 204, "write acknowledged");

    // SAFETY: kill(2) with a pid we spawned and still own (not yet waited for).
    let rc = unsafe { libc::kill(node.0.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0, "sending SIGTERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = node.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "strata-node did not exit within 30 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status}"
    );
    drop(node);

    let _node = spawn_node(&config);
    wait_ready(addrs.http, Duration::from_secs(30), "restarted strata-node");
    let v = query(
        addrs.http,
        "count_over_time(e2e_sigterm[10m])",
        (T0 / 1000 + 200) as f64,
    );
    let total: f64 = v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["value"][1].as_str().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(total, 100.0, "every acknowledged sample survives: {v}");
}

#[test]
fn real_prometheus_remote_writes_into_the_node() {
    if Command::new("prometheus")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("prometheus not installed; skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let addrs = Addrs::free();
    let config = write_config(dir.path(), &addrs);
    let _node = spawn_node(&config);
    wait_ready(addrs.http, Duration::from_secs(30), "strata-node");

    let web_addr = free_addr();
    let prom_dir = dir.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let prom_config = format!(
        "global:\n  scrape_interval: 1s\n\
         scrape_configs:\n  - job_name: strata\n    static_configs:\n      - targets: ['{}']\n\
         remote_write:\n  - url: http://{}/api/v1/write\n    queue_config:\n      batch_send_deadline: 1s\n    metadata_config:\n      send_interval: 1s\n",
        addrs.http, addrs.http
    );
    let prom_config_path = prom_dir.join("prometheus.yml");
    std::fs::write(&prom_config_path, prom_config).unwrap();
    let _prometheus = KillOnDrop(
        Command::new("prometheus")
            .arg(format!("--config.file={}", prom_config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                prom_dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={web_addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );

    // The series only exists in the node if Prometheus scraped it and remote-wrote it back.
    let selector = format!(
        "strata_samples_appended_total{{job=\"strata\",instance=\"{}\"}}",
        addrs.http
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let v = query(addrs.http, &selector, now);
        if v["data"]["result"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus' remote write of {selector} was not queryable in the node within 30 s: {v}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // Prometheus also remote-writes the metadata of what it scraped (TYPE, HELP).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body: Value = agent()
            .get(format!(
                "http://{}/api/v1/metadata?metric=strata_samples_appended_total",
                addrs.http
            ))
            .call()
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap();
        let kinds = &body["data"]["strata_samples_appended_total"];
        if kinds
            .as_array()
            .is_some_and(|v| v.iter().any(|m| m["type"] == "counter" && m["help"] != ""))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus' metadata for strata_samples_appended_total did not arrive within 30 s: {body}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
