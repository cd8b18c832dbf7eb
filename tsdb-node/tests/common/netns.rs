//! A small lab network: one Linux network namespace per node, each joined by a veth pair to
//! a bridge in the root namespace, so nodes talk over real interfaces with their own
//! addresses and a node can be cut off with iptables inside its namespace while the test
//! (in the root namespace) still reaches every node through the bridge.
//!
//! Everything is named after the test process id (`strata-<pid>-n<i>`, `stb<pid>`), so
//! concurrent runs do not collide, and leftovers of a run that was killed are removed by the
//! next one. Needs root, iproute2 and iptables; without them the lab refuses to start with a
//! message saying so (the acceptance test must not silently skip).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::cluster::{agent, NodeHttp, SECRET};

/// Runs a command to completion; panics with its output when it fails.
fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} {}: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "{program} {} failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a command and ignores failure (clean-up of things that may already be gone).
fn run_quiet(program: &str, args: &[&str]) {
    let _ = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Fails the test (never skips it) when the lab cannot be built here.
fn require_privileges() {
    // SAFETY: `geteuid` has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the network-namespace test needs root (it creates namespaces, veth pairs, a bridge and \
         iptables rules); run it as root, as CI does"
    );
    for (tool, arg) in [("ip", "-V"), ("iptables", "-V")] {
        let ok = Command::new(tool)
            .arg(arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "the network-namespace test needs `{tool}` (apt-get install iproute2 iptables; \
             .ci/run installs them)"
        );
    }
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Deletes namespaces and bridges left behind by runs whose process is gone (a test killed
/// with SIGKILL never runs its Drop guards).
fn remove_leftovers() {
    for line in output("ip", &["netns", "list"]).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix("strata-") else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !pid_alive(pid) {
            run_quiet("ip", &["netns", "del", name]);
        }
    }
    for line in output("ip", &["-o", "link", "show", "type", "veth"]).lines() {
        // "12: stv123a0@if11: <...": the root namespace's ends of the veth pairs.
        let Some(name) = line
            .split(':')
            .nth(1)
            .and_then(|n| n.trim().split('@').next())
        else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix("stv")
            .and_then(|r| r.split('a').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !pid_alive(pid) {
            run_quiet("ip", &["link", "del", name]);
        }
    }
    for line in output("ip", &["-o", "link", "show", "type", "bridge"]).lines() {
        let Some(name) = line.split(':').nth(1).map(str::trim) else {
            continue;
        };
        let Some(pid) = name.strip_prefix("stb").and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !pid_alive(pid) {
            run_quiet("ip", &["link", "del", name]);
            run_quiet(
                "iptables",
                &[
                    "-D",
                    "FORWARD",
                    "-i",
                    name,
                    "-o",
                    name,
                    "-j",
                    "ACCEPT",
                    "-m",
                    "comment",
                    "--comment",
                    name,
                ],
            );
        }
    }
}

/// `n` namespaces on one bridge. Node `i` has address `10.A.B.(i+1)`, the bridge (the
/// test's side) `10.A.B.254`. Dropping the lab deletes the namespaces (and with them the
/// veth pairs and every iptables rule inside) and the bridge.
pub struct NetLab {
    tag: String,
    bridge: String,
    net: [u8; 3],
    namespaces: Vec<String>,
    veths: Vec<String>,
    forward_rule: bool,
}

impl NetLab {
    pub fn new(n: usize) -> NetLab {
        require_privileges();
        remove_leftovers();
        let pid = std::process::id();
        // Spread runs over 10.128.0.0/10 by pid, away from the usual 10.0.x.y networks.
        let net = [10, 128 | ((pid >> 8) & 0x3f) as u8, (pid & 0xff) as u8];
        let prefix = format!("{}.{}.{}.", net[0], net[1], net[2]);
        assert!(
            !output("ip", &["-4", "-o", "addr"]).contains(&prefix),
            "{prefix}0/24 is already in use on this host"
        );
        let mut lab = NetLab {
            tag: format!("strata-{pid}"),
            bridge: format!("stb{pid}"),
            net,
            namespaces: Vec::new(),
            veths: Vec::new(),
            forward_rule: false,
        };
        let br = lab.bridge.clone();
        run("ip", &["link", "add", &br, "type", "bridge"]);
        run(
            "ip",
            &["addr", "add", &format!("{}/24", lab.host_ip()), "dev", &br],
        );
        run("ip", &["link", "set", &br, "up"]);
        // With br_netfilter loaded, bridged frames traverse the root FORWARD chain, whose
        // policy may be DROP (Docker sets it so): let the lab's own traffic through.
        run(
            "iptables",
            &[
                "-I",
                "FORWARD",
                "-i",
                &br,
                "-o",
                &br,
                "-j",
                "ACCEPT",
                "-m",
                "comment",
                "--comment",
                &br,
            ],
        );
        lab.forward_rule = true;
        for i in 0..n {
            let ns = lab.namespace(i);
            run("ip", &["netns", "add", &ns]);
            lab.namespaces.push(ns.clone());
            let outer = format!("stv{pid}a{i}");
            let inner = format!("stv{pid}b{i}");
            run(
                "ip",
                &[
                    "link", "add", &outer, "type", "veth", "peer", "name", &inner,
                ],
            );
            lab.veths.push(outer.clone());
            run("ip", &["link", "set", &inner, "netns", &ns]);
            run("ip", &["link", "set", &outer, "master", &br, "up"]);
            run("ip", &["-n", &ns, "link", "set", &inner, "name", "eth0"]);
            run(
                "ip",
                &[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{}/24", lab.ip(i)),
                    "dev",
                    "eth0",
                ],
            );
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"]);
            run("ip", &["-n", &ns, "link", "set", "lo", "up"]);
        }
        lab
    }

    pub fn namespace(&self, i: usize) -> String {
        format!("{}-n{i}", self.tag)
    }

    pub fn ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(self.net[0], self.net[1], self.net[2], i as u8 + 1)
    }

    /// The root namespace's address on the bridge: where the test's requests come from.
    pub fn host_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.net[0], self.net[1], self.net[2], 254)
    }

    fn iptables_in(&self, i: usize, args: &[&str]) {
        let ns = self.namespace(i);
        let mut full = vec!["netns", "exec", ns.as_str(), "iptables"];
        full.extend_from_slice(args);
        run("ip", &full);
    }

    /// Cuts node `i` off from the nodes in `peers`, both directions, every protocol (gossip,
    /// gRPC, established connections too). The test's own address stays reachable.
    pub fn partition(&self, i: usize, peers: &[usize]) {
        for &p in peers {
            let addr = self.ip(p).to_string();
            self.iptables_in(i, &["-A", "INPUT", "-s", &addr, "-j", "DROP"]);
            self.iptables_in(i, &["-A", "OUTPUT", "-d", &addr, "-j", "DROP"]);
        }
    }

    /// Removes every rule `partition` added in node `i`'s namespace.
    pub fn heal(&self, i: usize) {
        self.iptables_in(i, &["-F", "INPUT"]);
        self.iptables_in(i, &["-F", "OUTPUT"]);
    }

    /// Packets node `i`'s namespace dropped so far (proof that the partition was real).
    pub fn dropped_packets(&self, i: usize) -> u64 {
        let ns = self.namespace(i);
        let text = output(
            "ip",
            &["netns", "exec", &ns, "iptables", "-L", "-v", "-x", "-n"],
        );
        text.lines()
            .filter(|l| l.contains("DROP") && !l.starts_with("Chain"))
            .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
            .sum()
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        // Deleting one end deletes the pair. The namespace would take its end along, but
        // only once the kernel frees the namespace, which can lag behind `ip netns del`.
        for veth in &self.veths {
            run_quiet("ip", &["link", "del", veth]);
        }
        for ns in &self.namespaces {
            run_quiet("ip", &["netns", "del", ns]);
        }
        run_quiet("ip", &["link", "del", &self.bridge]);
        if self.forward_rule {
            run_quiet(
                "iptables",
                &[
                    "-D",
                    "FORWARD",
                    "-i",
                    &self.bridge,
                    "-o",
                    &self.bridge,
                    "-j",
                    "ACCEPT",
                    "-m",
                    "comment",
                    "--comment",
                    &self.bridge,
                ],
            );
        }
    }
}

/// A `strata-node` process inside its namespace, on the standard ports of its own address.
pub struct NsNode {
    pub id: String,
    pub namespace: String,
    pub dir: PathBuf,
    pub http: SocketAddr,
    child: Option<Child>,
}

impl NsNode {
    /// Writes the config of node `i` of `lab`, seeded by every other node.
    pub fn new(lab: &NetLab, root: &Path, i: usize, n: usize, rf: usize) -> NsNode {
        let id = format!("node-{i}");
        let dir = root.join(&id);
        std::fs::create_dir_all(&dir).unwrap();
        let ip = lab.ip(i);
        let seeds: Vec<String> = (0..n)
            .filter(|&j| j != i)
            .map(|j| format!("\"{}:7946\"", lab.ip(j)))
            .collect();
        let yaml = format!(
            "server:\n  node_id: {id}\n  http_addr: {ip}:8080\n  binary_addr: {ip}:9876\n  tcp_addr: {ip}:5433\n  shutdown_grace: 5s\n\
             storage:\n  data_dir: {d}/data\n  wal_dir: {d}/wal\n  out_of_order_window: 0\n\
             retention:\n  raw: 0\n\
             cluster:\n  gossip_addr: {ip}:7946\n  grpc_addr: {ip}:7070\n  seeds: [{seeds}]\n  secret: {SECRET}\n  \
             replication_factor: {rf}\n  gossip_interval: 200ms\n  rpc_timeout: 2s\n",
            d = dir.display(),
            seeds = seeds.join(", "),
        );
        std::fs::write(dir.join("config.yaml"), yaml).unwrap();
        NsNode {
            id,
            namespace: lab.namespace(i),
            dir,
            http: SocketAddr::new(ip.into(), 8080),
            child: None,
        }
    }

    /// `ip netns exec <ns> strata-node`: `ip` enters the namespace and execs the node, so the
    /// child's pid is the node's.
    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("node.log"))
            .unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.namespace])
            .arg(env!("CARGO_BIN_EXE_strata-node"))
            .arg("--config")
            .arg(self.dir.join("config.yaml"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start strata-node in its namespace");
        self.child = Some(child);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = agent().get(self.url("/ready")).call() {
                if r.status().as_u16() == 200 {
                    return;
                }
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!(
                        "{} exited ({status}); see {}",
                        self.id,
                        self.dir.join("node.log").display()
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready; see {}",
                self.id,
                self.dir.join("node.log").display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Whether this node sees `id` alive.
    pub fn sees_live(&self, id: &str) -> bool {
        self.members().iter().any(|(m, live, _)| m == id && *live)
    }

    /// Bytes of hints this node holds for `id`.
    pub fn hints_for(&self, id: &str) -> u64 {
        self.members()
            .iter()
            .filter(|(m, _, _)| m == id)
            .map(|(_, _, h)| *h)
            .sum()
    }
}

impl NodeHttp for NsNode {
    fn url(&self, path: &str) -> String {
        NsNode::url(self, path)
    }
}

impl Drop for NsNode {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Waits until every node sees every node alive and no node holds hints.
pub fn wait_converged(nodes: &[NsNode], within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let ok = nodes.iter().all(|n| {
            let m = n.members();
            nodes.iter().all(|o| {
                m.iter()
                    .any(|(id, live, hints)| *id == o.id && *live && *hints == 0)
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
                .map(|n| (n.id.clone(), n.members()))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
