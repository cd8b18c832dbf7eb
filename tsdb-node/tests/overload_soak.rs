//! Overload: many clients send faster than the disk syncs (an injected fsync delay), and the
//! node must push back (HTTP 503 with `Retry-After`, TCP connections stop reading) instead of
//! buffering without bound. The real `strata-node` binary runs in its own process so that its
//! resident memory can be watched from /proc; afterwards every acknowledged sample must be in
//! storage.
//!
//! Runs for about 25 s (`STRATA_SOAK_SECS` for longer). Linux only (reads /proc).

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::process::{free_addr, spawn_node};
use tsdb_node::ingest::binary::frame::{DataPoint, Frame};
use tsdb_node::storage::{Engine, EngineOptions, MatchOp, Matcher};

/// How long the clients keep sending, unless `STRATA_SOAK_SECS` asks for a longer run (the
/// figure in BENCHMARKS.md).
const SOAK: Duration = Duration::from_secs(20);

fn soak_duration() -> Duration {
    std::env::var("STRATA_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(SOAK)
}
/// HTTP clients, each with one line-protocol request of `LINES` lines in flight.
const HTTP_CLIENTS: usize = 48;
const SERIES_PER_CLIENT: usize = 1000;
const POINTS_PER_REQUEST: usize = 100;
/// Binary clients, each sending `insert_batch` frames of `BINARY_POINTS` points.
const BINARY_CLIENTS: usize = 8;
const BINARY_POINTS: usize = 20_000;
/// The node's peak resident memory must stay under this. Without admission control the HTTP
/// clients alone would hold 48 bodies of ~4.5 MB plus their parsed samples (~15 MB each) at
/// once, well over a gigabyte at the peak.
const RSS_BOUND: u64 = 400 << 20;

/// `VmRSS` or `VmHWM` of a process, in bytes.
fn proc_status_bytes(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

fn wait_ready(http: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(r) = ureq::get(&format!("http://{http}/ready")).call() {
            if r.status() == 200 {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("node not ready within 60 s");
}

/// Timestamp of point `p` of request `k` (all clients share the time axis; series differ).
fn ts(k: usize, p: usize) -> i64 {
    1_700_000_000_000 + ((k * POINTS_PER_REQUEST + p) as i64) * 1000
}

fn line_body(client: usize, k: usize) -> String {
    let mut body = String::with_capacity(SERIES_PER_CLIENT * POINTS_PER_REQUEST * 48);
    for s in 0..SERIES_PER_CLIENT {
        for p in 0..POINTS_PER_REQUEST {
            body.push_str(&format!(
                "soak,client=c{client},s=s{s} value={}.5 {}\n",
                p,
                ts(k, p)
            ));
        }
    }
    body
}

#[derive(Default)]
struct Tally {
    /// Acknowledged requests per HTTP client.
    http_acked: Mutex<HashMap<usize, Vec<usize>>>,
    refused_503: AtomicU64,
    /// Requests cut off by the node's early 503 while the body was still being sent.
    refused_closed: AtomicU64,
    /// Acknowledged binary batches per binary client.
    binary_acked: Mutex<HashMap<usize, Vec<usize>>>,
}

fn http_client(http: SocketAddr, client: usize, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let url = format!("http://{http}/write?precision=ms");
    let mut k = 0;
    while !stop.load(Ordering::Relaxed) {
        let body = line_body(client, k);
        let resp = match agent
            .post(&url)
            .header("Content-Type", "text/plain")
            .send(body.as_bytes())
        {
            Ok(resp) => resp,
            Err(_) => {
                // The node answered 503 before reading the body and closed the connection
                // while this client was still sending it: not acknowledged, so retried, as
                // Prometheus' remote write does with a connection error.
                tally.refused_closed.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(200));
                continue;
            }
        };
        match resp.status().as_u16() {
            204 => {
                tally
                    .http_acked
                    .lock()
                    .unwrap()
                    .entry(client)
                    .or_default()
                    .push(k);
                k += 1;
            }
            503 => {
                let retry = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .expect("503 without a Retry-After in seconds");
                assert!(retry >= 1);
                tally.refused_503.fetch_add(1, Ordering::Relaxed);
                // Shorter than asked, to keep the pressure on.
                std::thread::sleep(Duration::from_millis(200));
            }
            other => panic!("unexpected status {other} for a valid write"),
        }
    }
}

fn binary_client(addr: SocketAddr, client: usize, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut k = 0;
    let mut buf = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        // 1000 series per client; each batch carries 20 points of each.
        let points = (0..BINARY_POINTS)
            .map(|i| DataPoint {
                series_id: (client * 1000 + i % 1000) as u64 + 1,
                timestamp_ms: ts(k, i / 1000),
                value: i as f64,
            })
            .collect();
        let mut bytes = Vec::new();
        Frame::InsertBatch(points).encode(&mut bytes).unwrap();
        stream.write_all(&bytes).unwrap();
        let reply = loop {
            if let Some((f, used)) = Frame::parse(&buf, 1 << 20).unwrap() {
                buf.drain(..used);
                break f;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).unwrap();
            assert!(n > 0, "binary server closed the connection");
            buf.extend_from_slice(&chunk[..n]);
        };
        assert_eq!(reply, Frame::Ok, "binary batch not acknowledged");
        tally
            .binary_acked
            .lock()
            .unwrap()
            .entry(client)
            .or_default()
            .push(k);
        k += 1;
    }
}

fn timestamps(engine: &Engine, matchers: &[Matcher]) -> Vec<BTreeSet<i64>> {
    engine
        .select(matchers, i64::MIN, i64::MAX)
        .unwrap()
        .into_iter()
        .map(|s| s.samples.iter().map(|x| x.t).collect())
        .collect()
}

#[test]
fn memory_stays_bounded_when_clients_outpace_the_disk() {
    if !Path::new("/proc/self/status").exists() {
        eprintln!("SKIPPED: overload soak needs Linux /proc to watch the node's memory");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (http, binary, tcp) = (free_addr(), free_addr(), free_addr());
    let yaml = format!(
        "server:\n  http_addr: {http}\n  binary_addr: {binary}\n  tcp_addr: {tcp}\n  shutdown_grace: 30s\n\
         storage:\n  data_dir: {d}/data\n  wal_dir: {d}/wal\n  out_of_order_window: 0\n  wal_sync_delay: 250ms\n\
         limits:\n  max_request_bytes: 8388608\n  max_inflight_request_bytes: 67108864\n  max_inflight_write_bytes: 33554432\n  write_wait: 2s\n\
         retention:\n  raw: 0\n",
        d = dir.path().display()
    );
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, yaml).unwrap();
    let node = spawn_node(&config);
    let pid = node.0.id();
    wait_ready(http);
    let idle_rss = proc_status_bytes(pid, "VmRSS:").unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let mut clients = Vec::new();
    for c in 0..HTTP_CLIENTS {
        let (stop, tally) = (stop.clone(), tally.clone());
        clients.push(std::thread::spawn(move || {
            http_client(http, c, stop, tally)
        }));
    }
    for c in 0..BINARY_CLIENTS {
        let (stop, tally) = (stop.clone(), tally.clone());
        clients.push(std::thread::spawn(move || {
            binary_client(binary, c, stop, tally)
        }));
    }
    let started = Instant::now();
    let mut peak_rss = 0;
    let soak = soak_duration();
    while started.elapsed() < soak {
        if let Some(rss) = proc_status_bytes(pid, "VmRSS:") {
            peak_rss = peak_rss.max(rss);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("a client failed");
    }
    let hwm = proc_status_bytes(pid, "VmHWM:").unwrap_or(peak_rss);
    let http_requests: usize = tally
        .http_acked
        .lock()
        .unwrap()
        .values()
        .map(Vec::len)
        .sum();
    let binary_batches: usize = tally
        .binary_acked
        .lock()
        .unwrap()
        .values()
        .map(Vec::len)
        .sum();
    let refused = tally.refused_503.load(Ordering::Relaxed);
    let cut_off = tally.refused_closed.load(Ordering::Relaxed);
    eprintln!(
        "overload soak: {:.1} s, idle RSS {} MiB, peak RSS {} MiB (VmHWM {} MiB); acknowledged {} HTTP requests ({} samples) and {} binary batches ({} samples); {} HTTP 503s read, {} cut off mid-body",
        started.elapsed().as_secs_f64(),
        idle_rss >> 20,
        peak_rss >> 20,
        hwm >> 20,
        http_requests,
        http_requests * SERIES_PER_CLIENT * POINTS_PER_REQUEST,
        binary_batches,
        binary_batches * BINARY_POINTS,
        refused,
        cut_off
    );
    assert!(
        hwm < RSS_BOUND,
        "node peak RSS {} MiB over the bound of {} MiB",
        hwm >> 20,
        RSS_BOUND >> 20
    );
    assert!(
        http_requests > 0 && binary_batches > 0,
        "no progress under load"
    );
    assert!(
        refused + cut_off > 0,
        "the clients never met backpressure: the test load is too light"
    );

    // Stop the node (SIGTERM: drain and flush) and read the storage directly.
    let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let mut node = node;
    let deadline = Instant::now() + Duration::from_secs(60);
    while node.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "node did not stop after SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut opts = EngineOptions::new(dir.path());
    opts.out_of_order_window_ms = i64::MAX / 4;
    let engine = Engine::open(opts).unwrap();
    let eq = |n: &str, v: &str| Matcher::new(MatchOp::Equal, n, v).unwrap();
    for (client, acked) in tally.http_acked.lock().unwrap().iter() {
        let series = timestamps(
            &engine,
            &[eq("__name__", "soak"), eq("client", &format!("c{client}"))],
        );
        assert_eq!(
            series.len(),
            SERIES_PER_CLIENT,
            "client {client}: series missing"
        );
        for ts_set in &series {
            for &k in acked {
                for p in 0..POINTS_PER_REQUEST {
                    assert!(
                        ts_set.contains(&ts(k, p)),
                        "client {client}: acknowledged sample of request {k} lost"
                    );
                }
            }
        }
    }
    for (client, acked) in tally.binary_acked.lock().unwrap().iter() {
        for sid in 0..1000 {
            let id = (client * 1000 + sid + 1).to_string();
            let series = timestamps(
                &engine,
                &[eq("__name__", "ztsdb_series"), eq("series_id", &id)],
            );
            let set = series.first().expect("binary series missing");
            for &k in acked {
                for p in 0..BINARY_POINTS / 1000 {
                    assert!(set.contains(&ts(k, p)), "binary sample lost");
                }
            }
        }
    }
}
