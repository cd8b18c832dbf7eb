//! Real `strata-node` processes forming a cluster on loopback, for the cluster tests.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const SECRET: &str = "test-cluster-secret";

/// A loopback address of its own for each node this test process starts: a port picked
/// free and released before the node binds it could be taken meanwhile by another test
/// binary binding 127.0.0.1:0; on an address no other process uses, it cannot. (The second
/// octet follows the process, 30–79, clear of the cluster twin's 100–199.)
fn node_ip() -> Ipv4Addr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Ipv4Addr::new(
        127,
        30 + (std::process::id() % 50) as u8,
        (n / 200) as u8,
        10 + (n % 200) as u8,
    )
}

fn free_tcp(ip: Ipv4Addr) -> SocketAddr {
    TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap()
}

fn free_udp(ip: Ipv4Addr) -> SocketAddr {
    UdpSocket::bind((ip, 0)).unwrap().local_addr().unwrap()
}

/// One node process with fixed addresses, so it can be killed and restarted in place.
pub struct ProcNode {
    pub id: String,
    pub dir: PathBuf,
    pub http: SocketAddr,
    pub gossip: SocketAddr,
    pub grpc: SocketAddr,
    child: Option<Child>,
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

impl ProcNode {
    /// Writes the node's config; `seed` is the gossip address of the first node.
    pub fn new(
        root: &Path,
        index: usize,
        seed: Option<SocketAddr>,
        rf: usize,
        extra: &str,
    ) -> Self {
        let id = format!("node-{index}");
        let dir = root.join(&id);
        std::fs::create_dir_all(&dir).unwrap();
        let ip = node_ip();
        let gossip = free_udp(ip);
        let n = ProcNode {
            id,
            http: free_tcp(ip),
            grpc: free_tcp(ip),
            gossip,
            dir,
            child: None,
        };
        let seeds = seed.unwrap_or(gossip);
        let yaml = format!(
            "server:\n  node_id: {id}\n  http_addr: {http}\n  binary_addr: {bin}\n  tcp_addr: {tcp}\n  shutdown_grace: 5s\n\
             storage:\n  data_dir: {d}/data\n  wal_dir: {d}/wal\n  out_of_order_window: 0\n\
             retention:\n  raw: 0\n\
             cluster:\n  gossip_addr: {gossip}\n  grpc_addr: {grpc}\n  seeds: [\"{seeds}\"]\n  secret: {SECRET}\n  \
             replication_factor: {rf}\n  gossip_interval: 200ms\n  rpc_timeout: 3s\n{extra}",
            id = n.id,
            http = n.http,
            bin = free_tcp(ip),
            tcp = free_tcp(ip),
            d = n.dir.display(),
            grpc = n.grpc,
        );
        std::fs::write(n.dir.join("config.yaml"), yaml).unwrap();
        n
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("node.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_strata-node"))
            .arg("--config")
            .arg(self.dir.join("config.yaml"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start strata-node");
        self.child = Some(child);
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL: no flush, no goodbye to the cluster.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the orderly shutdown.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: `kill` has no memory-safety preconditions; the pid is our own child.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// The last lines of the node's log, for a failure message (the temporary directory is
    /// gone by the time anyone reads the test output).
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = agent().get(self.url("/ready")).call() {
                if r.status().as_u16() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready after 60 s; the end of its log:\n{}",
                self.id,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl NodeHttp for ProcNode {
    fn url(&self, path: &str) -> String {
        ProcNode::url(self, path)
    }
}

impl Drop for ProcNode {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Starts `n` nodes seeded by the first and waits until each sees all `n` alive.
pub fn start_cluster(root: &Path, n: usize, rf: usize, extra: &str) -> Vec<ProcNode> {
    start_cluster_with(root, n, rf, extra, |yaml| yaml)
}

/// [`start_cluster`] with each node's config passed through `edit` before it starts.
pub fn start_cluster_with(
    root: &Path,
    n: usize,
    rf: usize,
    extra: &str,
    edit: impl Fn(String) -> String,
) -> Vec<ProcNode> {
    let mut nodes: Vec<ProcNode> = Vec::new();
    for i in 1..=n {
        let seed = nodes.first().map(|f| f.gossip);
        let mut node = ProcNode::new(root, i, seed, rf, extra);
        let path = node.dir.join("config.yaml");
        let yaml = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, edit(yaml)).unwrap();
        node.start();
        nodes.push(node);
    }
    for node in &nodes {
        node.wait_ready();
    }
    wait_converged(&nodes);
    nodes
}

/// Waits until every running node sees every running node alive and no hints pending.
pub fn wait_converged(nodes: &[ProcNode]) {
    let running: Vec<&str> = nodes
        .iter()
        .filter(|n| n.running())
        .map(|n| n.id.as_str())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ok = nodes.iter().filter(|n| n.running()).all(|n| {
            let m = n.members();
            running.iter().all(|id| {
                m.iter()
                    .any(|(mid, live, hints)| mid == id && *live && *hints == 0)
            })
        });
        if ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "cluster did not converge: {:?}",
            nodes
                .iter()
                .filter(|n| n.running())
                .map(|n| (n.id.clone(), n.members()))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The HTTP calls the cluster tests make on a node, whatever started it (a loopback process
/// or one inside a network namespace).
pub trait NodeHttp {
    fn url(&self, path: &str) -> String;

    /// Status and JSON body; status 0 with the error text when the node cannot be reached
    /// (a partitioned node is asked too).
    fn get_json(&self, path: &str) -> (u16, Value) {
        match agent().get(self.url(path)).call() {
            Ok(mut r) => {
                let status = r.status().as_u16();
                (status, r.body_mut().read_json().unwrap_or(Value::Null))
            }
            Err(e) => (0, Value::String(e.to_string())),
        }
    }

    /// Posts line protocol; the HTTP status (204 means durable on enough owners).
    fn write_lines(&self, body: &str) -> Result<u16, String> {
        agent()
            .post(self.url("/api/v1/write"))
            .header("Content-Type", "text/plain")
            .send(body)
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string())
    }

    /// Members as this node sees them: (id, live, pending hint bytes).
    fn members(&self) -> Vec<(String, bool, u64)> {
        let (_, v) = self.get_json("/api/v1/cluster/members");
        v["data"]["members"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|m| {
                        (
                            m["node_id"].as_str().unwrap_or("").to_string(),
                            m["live"].as_bool().unwrap_or(false),
                            m["pending_hint_bytes"].as_u64().unwrap_or(0),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Per `device` label: (count, sum) of `temp` over `window` at `at_s` (seconds), with the
    /// raw answer of the last query (for its warnings). `strict` asks for an error rather than
    /// a partial answer; a status other than 200 is returned with what was read so far.
    fn device_totals(
        &self,
        at_s: i64,
        window: &str,
        strict: bool,
    ) -> (u16, BTreeMap<String, (f64, f64)>, Value) {
        let mut out: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        let mut last = Value::Null;
        let strict = if strict {
            "&partial_response=false"
        } else {
            ""
        };
        for (i, f) in ["count_over_time", "sum_over_time"].iter().enumerate() {
            let (status, v) = self.get_json(&format!(
                "/api/v1/query?query={f}(temp%5B{window}%5D)&time={at_s}{strict}"
            ));
            if status != 200 {
                return (status, out, v);
            }
            for r in v["data"]["result"].as_array().unwrap() {
                let dev = r["metric"]["device"].as_str().unwrap().to_string();
                let x: f64 = r["value"][1].as_str().unwrap().parse().unwrap();
                let e = out.entry(dev).or_default();
                if i == 0 {
                    e.0 = x;
                } else {
                    e.1 = x;
                }
            }
            last = v;
        }
        (200, out, last)
    }
}
