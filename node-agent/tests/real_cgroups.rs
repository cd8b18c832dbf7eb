//! The real agent on this machine's real cgroups (run as root; it fails, it does not skip,
//! without root or cgroups).
//!
//! Each scenario creates its own container-like cgroups —
//! `<own cgroup>/strata-agent-test-<pid>-<scenario>/kubepods/burstable/pod<uid>/<id>` in the
//! unified hierarchy and in the v1 `cpuacct`, `memory` and `blkio` hierarchies, each under
//! this process's own cgroup of that hierarchy so that the test stays inside whatever limits
//! it runs under — and starts a workload process that joins them, moves into a fresh network
//! namespace (so its `lo` carries only its own traffic), does loopback TCP ping-pong and a
//! bulk transfer, fsynced file writes and some busy CPU, and reports what it did. The real
//! `strata-agent` binary watches the real hierarchy and remote-writes to a real `strata-node`;
//! the test then asks the node by PromQL and checks the figures against the workload's own
//! account: once with eBPF (which must load here) and once with `--no-ebpf`.
//!
//! The workload is this same binary re-executed (hence `harness = false`). Cgroups are
//! removed on every exit path, and stale ones of dead test processes at start.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use strata_agent::cgroup::Hierarchies;

const WORKLOAD_ENV: &str = "STRATA_AGENT_TEST_WORKLOAD";
const POD_UID: &str = "6b0c6a52-58a4-4b5e-9d59-3f1e0c2b7a11";
const ROUND_TRIPS: usize = 400;
const MESSAGE: usize = 1024;
const BULK: usize = 4 << 20;
const CHUNKS: usize = 16;
const CHUNK: usize = 64 << 10;

fn main() {
    if std::env::var_os(WORKLOAD_ENV).is_some() {
        workload();
        return;
    }
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let scenarios: [(&str, fn()); 2] = [
        ("ebpf_figures_reach_the_node", || scenario(true)),
        ("fallback_figures_reach_the_node", || scenario(false)),
    ];
    remove_stale_test_cgroups();
    let started = Instant::now();
    let (mut passed, mut failed, mut filtered) = (0, 0, 0);
    for (name, run) in scenarios {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            filtered += 1;
            continue;
        }
        match std::panic::catch_unwind(run) {
            Ok(()) => {
                println!("test {name} ... ok");
                passed += 1;
            }
            Err(_) => {
                println!("test {name} ... FAILED");
                failed += 1;
            }
        }
    }
    println!(
        "\ntest result: {}. {passed} passed; {failed} failed; 0 ignored; 0 measured; {filtered} filtered out; finished in {:.2}s\n",
        if failed == 0 { "ok" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    if failed > 0 {
        std::process::exit(101);
    }
}

// ---------------------------------------------------------------------------------------
// The workload (child process).

/// What the workload did, as it reports it on stdout.
#[derive(Debug, Default)]
struct Done {
    /// Payload bytes written to TCP sockets, both ends together.
    tcp_bytes: u64,
    round_trips: u64,
    written: u64,
    fsyncs: u64,
    cpu_seconds: f64,
}

fn workload() {
    // Join the test's cgroups first, so that everything below is accounted there.
    for procs in std::env::var(WORKLOAD_ENV).unwrap().split(':') {
        std::fs::write(procs, std::process::id().to_string())
            .unwrap_or_else(|e| panic!("joining {procs}: {e}"));
    }
    isolate_network();

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_nodelay(true).unwrap();
        let mut buf = vec![0u8; MESSAGE];
        for _ in 0..ROUND_TRIPS {
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf).unwrap();
        }
        let mut bulk = vec![0u8; BULK];
        s.read_exact(&mut bulk).unwrap();
        s.write_all(b"k").unwrap();
    });
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_nodelay(true).unwrap();
    let mut buf = vec![7u8; MESSAGE];
    for _ in 0..ROUND_TRIPS {
        c.write_all(&buf).unwrap();
        c.read_exact(&mut buf).unwrap();
    }
    c.write_all(&vec![9u8; BULK]).unwrap();
    let mut ack = [0u8; 1];
    c.read_exact(&mut ack).unwrap();
    server.join().unwrap();
    let tcp_bytes = (2 * ROUND_TRIPS * MESSAGE + BULK + 1) as u64;

    // On disk (the target directory), not tmpfs: fsync must reach the block layer.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut f = std::fs::File::create(dir.path().join("data")).unwrap();
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i * 31 % 251) as u8).collect();
    for _ in 0..CHUNKS {
        f.write_all(&chunk).unwrap();
        f.sync_all().unwrap();
    }

    let spin = Instant::now();
    let mut x = 1u64;
    while spin.elapsed() < Duration::from_millis(300) {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
    }
    std::hint::black_box(x);

    let done = Done {
        tcp_bytes,
        round_trips: ROUND_TRIPS as u64,
        written: (CHUNKS * CHUNK) as u64,
        fsyncs: CHUNKS as u64,
        cpu_seconds: own_cpu_seconds(),
    };
    println!(
        "done {} {} {} {} {}",
        done.tcp_bytes, done.round_trips, done.written, done.fsyncs, done.cpu_seconds
    );
    std::io::stdout().flush().unwrap();
    // Stay (so the cgroups keep a process) until the test closes stdin.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
}

/// A new network namespace with only `lo`, up.
fn isolate_network() {
    // SAFETY: plain syscalls on our own process; the ifreq is zero-initialised and named.
    unsafe {
        assert_eq!(
            libc::unshare(libc::CLONE_NEWNET),
            0,
            "unshare(CLONE_NEWNET)"
        );
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        assert!(fd >= 0);
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        assert_eq!(libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req), 0);
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        assert_eq!(libc::ioctl(fd, libc::SIOCSIFFLAGS, &req), 0);
        libc::close(fd);
    }
}

fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) }, 0);
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

// ---------------------------------------------------------------------------------------
// The test.

/// Kills and reaps a child on every exit path.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The test's cgroups; removed (deepest first) on drop.
struct TestCgroups {
    /// Top directories created, one per hierarchy.
    tops: Vec<PathBuf>,
    /// `cgroup.procs` of the leaf in each hierarchy.
    procs: Vec<PathBuf>,
    container_id: String,
}

impl Drop for TestCgroups {
    fn drop(&mut self) {
        for top in &self.tops {
            remove_cgroup_tree(top);
        }
    }
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    // A cgroup whose last process just exited can be busy for a moment.
    for _ in 0..50 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    eprintln!("could not remove cgroup {}", dir.display());
}

/// This process's cgroup in each hierarchy: `unified` or a v1 controller → path.
fn own_cgroups() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let mut own = BTreeMap::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers.is_empty() {
            own.insert("unified".to_string(), path.to_string());
        }
        for c in controllers.split(',').filter(|c| !c.is_empty()) {
            own.insert(c.to_string(), path.to_string());
        }
    }
    own
}

fn hierarchy_dirs(h: &Hierarchies) -> Vec<(String, PathBuf)> {
    let mut dirs: Vec<(String, PathBuf)> = h
        .unified
        .iter()
        .map(|u| ("unified".to_string(), u.clone()))
        .collect();
    for c in ["cpuacct", "memory", "blkio"] {
        if let Some(d) = h.v1(c) {
            dirs.push((c.to_string(), d.to_path_buf()));
        }
    }
    dirs
}

fn create_cgroups(scenario: &str) -> TestCgroups {
    let h = Hierarchies::detect(Path::new("/sys/fs/cgroup")).expect("cgroup hierarchies");
    let own = own_cgroups();
    let container_id = format!(
        "{:0>64x}",
        std::process::id() as u128 * 1_000_003 + scenario.len() as u128
    );
    let mut cg = TestCgroups {
        tops: Vec::new(),
        procs: Vec::new(),
        container_id: container_id.clone(),
    };
    for (name, root) in hierarchy_dirs(&h) {
        let parent = root.join(
            own.get(&name)
                .map(String::as_str)
                .unwrap_or("/")
                .trim_start_matches('/'),
        );
        let top = parent.join(format!(
            "strata-agent-test-{}-{scenario}",
            std::process::id()
        ));
        let leaf = top.join(format!("kubepods/burstable/pod{POD_UID}/{container_id}"));
        std::fs::create_dir_all(&leaf)
            .unwrap_or_else(|e| panic!("creating {} (root needed): {e}", leaf.display()));
        cg.tops.push(top);
        cg.procs.push(leaf.join("cgroup.procs"));
    }
    assert!(!cg.procs.is_empty(), "no hierarchy to create cgroups in");
    if let Some(blkio) = h.v1("blkio") {
        let leaf = cg.procs.iter().find(|p| p.starts_with(blkio)).unwrap();
        enable_v1_blkio_accounting(leaf.parent().unwrap());
    }
    cg
}

/// Recent kernels keep v1 `blkio.throttle.io_service_*` only on devices where blk-throttle is
/// set up, which happens when some cgroup has a limit there. The test gives its own blkio
/// cgroup a write limit of 1 TiB/s on the disk holding the target directory: no throttling,
/// but the kernel's accounting that the fallback reads. (A host whose v1 containers have no
/// limits reports zero I/O through the fallback on such kernels; eBPF is unaffected.)
fn enable_v1_blkio_accounting(leaf: &Path) {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
        .dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    // A partition's limits go on its disk.
    let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    let disk = if sys.join("partition").exists() {
        std::fs::read_to_string(sys.join("../dev"))
            .unwrap()
            .trim()
            .to_string()
    } else {
        format!("{major}:{minor}")
    };
    let limit = leaf.join("blkio.throttle.write_bps_device");
    std::fs::write(&limit, format!("{disk} 1099511627776"))
        .unwrap_or_else(|e| panic!("setting {}: {e}", limit.display()));
}

/// Test cgroups left by test processes that were killed.
fn remove_stale_test_cgroups() {
    let Ok(h) = Hierarchies::detect(Path::new("/sys/fs/cgroup")) else {
        return;
    };
    let own = own_cgroups();
    for (name, root) in hierarchy_dirs(&h) {
        let parent = root.join(
            own.get(&name)
                .map(String::as_str)
                .unwrap_or("/")
                .trim_start_matches('/'),
        );
        for e in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = n.strip_prefix("strata-agent-test-") else {
                continue;
            };
            let pid = rest.split('-').next().unwrap_or_default();
            if !Path::new("/proc").join(pid).exists() {
                remove_cgroup_tree(&e.path());
            }
        }
    }
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `target/<profile>/strata-node`, built by `cargo test --workspace` for tsdb-node's own
/// tests, or `$STRATA_NODE_BIN`.
fn node_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("STRATA_NODE_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().unwrap();
    let p = exe
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("strata-node");
    assert!(
        p.exists(),
        "{} not found: build it (`cargo build --workspace --bin strata-node`) or set STRATA_NODE_BIN",
        p.display()
    );
    p
}

fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn get(url: &str) -> Option<String> {
    let mut r = http().get(url).call().ok()?;
    (r.status().as_u16() == 200).then(|| r.body_mut().read_to_string().ok())?
}

/// The value of a one-series PromQL instant query, if it has one.
fn query(node: SocketAddr, q: &str) -> Option<f64> {
    let mut r = http()
        .get(format!("http://{node}/api/v1/query"))
        .query("query", q)
        .call()
        .ok()?;
    let body: serde_json::Value = r.body_mut().read_json().ok()?;
    let result = body["data"]["result"].as_array()?;
    result.first()?["value"][1].as_str()?.parse().ok()
}

fn start_node(dir: &Path) -> (Proc, SocketAddr) {
    let http_addr = free_addr();
    let yaml = format!(
        "server:\n  http_addr: {http_addr}\n  binary_addr: {}\n  tcp_addr: {}\n  shutdown_grace: 5s\nstorage:\n  data_dir: {d}/data\n  wal_dir: {d}/wal\n",
        free_addr(),
        free_addr(),
        d = dir.display()
    );
    std::fs::write(dir.join("config.yaml"), yaml).unwrap();
    let node = Proc(
        Command::new(node_binary())
            .arg("--config")
            .arg(dir.join("config.yaml"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start strata-node"),
    );
    wait_for("strata-node ready", Duration::from_secs(30), || {
        get(&format!("http://{http_addr}/ready")).is_some()
    });
    (node, http_addr)
}

fn start_agent(node: SocketAddr, ebpf: bool) -> (Proc, SocketAddr) {
    let listen = free_addr();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata-agent"));
    cmd.args([
        "--node-name=test-node".to_string(),
        format!("--remote-write-url=http://{node}/api/v1/write"),
        "--interval=500ms".to_string(),
        format!("--listen-addr={listen}"),
        "--cgroup-root=/sys/fs/cgroup".to_string(),
        "--proc-root=/proc".to_string(),
    ]);
    if !ebpf {
        cmd.arg("--no-ebpf");
    }
    let agent = Proc(
        cmd.env("RUST_LOG", "info")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start strata-agent"),
    );
    wait_for("strata-agent /health", Duration::from_secs(30), || {
        get(&format!("http://{listen}/health")).is_some()
    });
    (agent, listen)
}

fn start_workload(cg: &TestCgroups) -> (Proc, ChildStdin, Done) {
    let procs: Vec<String> = cg.procs.iter().map(|p| p.display().to_string()).collect();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(WORKLOAD_ENV, procs.join(":"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the workload");
    let stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let proc = Proc(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(f.first(), Some(&"done"), "workload failed: {line:?}");
    let done = Done {
        tcp_bytes: f[1].parse().unwrap(),
        round_trips: f[2].parse().unwrap(),
        written: f[3].parse().unwrap(),
        fsyncs: f[4].parse().unwrap(),
        cpu_seconds: f[5].parse().unwrap(),
    };
    (proc, stdin, done)
}

fn scenario(ebpf: bool) {
    let name = if ebpf { "ebpf" } else { "fallback" };
    let cg = create_cgroups(name);
    let dir = tempfile::tempdir().unwrap();
    let (_node, node) = start_node(dir.path());
    let (_agent, agent) = start_agent(node, ebpf);

    // The sources the agent chose: eBPF must load on this machine (root, BTF, cgroup v2).
    let metrics = get(&format!("http://{agent}/metrics")).unwrap();
    let (net, io) = if ebpf {
        ("ebpf", "ebpf")
    } else {
        ("procfs", "cgroupfs")
    };
    for (kind, source) in [("network", net), ("block_io", io)] {
        let line = format!("strata_agent_source_info{{kind=\"{kind}\",source=\"{source}\"}} 1");
        assert!(
            metrics.contains(&line),
            "{line} missing from /metrics:\n{metrics}"
        );
    }

    let (_workload, stdin, done) = start_workload(&cg);
    eprintln!("[{name}] workload: {done:?}");

    // Any id ending in the container id: the test's cgroups may sit at different paths in
    // different hierarchies (each under this process's own cgroup there).
    let sel = |metric: &str, extra: &str| {
        format!("max({metric}{{id=~\".*/{}\"{extra}}})", cg.container_id)
    };
    let lo = ",interface=\"lo\"";
    let checks: Vec<(String, f64, f64)> = vec![
        (
            sel("container_network_transmit_bytes_total", lo),
            done.tcp_bytes as f64,
            2.0 * done.tcp_bytes as f64 + 2e6,
        ),
        (
            sel("container_network_receive_bytes_total", lo),
            done.tcp_bytes as f64,
            2.0 * done.tcp_bytes as f64 + 2e6,
        ),
        (
            sel("container_network_transmit_packets_total", lo),
            2.0 * done.round_trips as f64,
            1e5,
        ),
        (
            sel("container_network_receive_packets_total", lo),
            2.0 * done.round_trips as f64,
            1e5,
        ),
        (
            sel("container_fs_writes_bytes_total", ""),
            done.written as f64,
            1e9,
        ),
        (
            sel("container_fs_writes_total", ""),
            done.fsyncs as f64,
            1e6,
        ),
        (
            sel("container_cpu_usage_seconds_total", ""),
            0.8 * done.cpu_seconds,
            1e3,
        ),
        (sel("container_memory_usage_bytes", ""), 1.0, 1e12),
        (sel("container_memory_working_set_bytes", ""), 1.0, 1e12),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    let last: Vec<Option<f64>> = loop {
        let values: Vec<Option<f64>> = checks.iter().map(|(q, _, _)| query(node, q)).collect();
        let all_reached = checks
            .iter()
            .zip(&values)
            .all(|((_, lo, _), v)| v.is_some_and(|v| v >= *lo));
        if all_reached || Instant::now() > deadline {
            break values;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let mut failures = Vec::new();
    for ((q, lo, hi), v) in checks.iter().zip(&last) {
        eprintln!("[{name}] {q} = {v:?} (expected {lo} ..= {hi})");
        if !v.is_some_and(|v| v >= *lo && v <= *hi) {
            failures.push(q.clone());
        }
    }
    assert!(failures.is_empty(), "[{name}] out of range: {failures:#?}");
    // The cgroup also appears with its kubelet path as the id label.
    let id_ok = query(
        node,
        &format!(
            "count(container_cpu_usage_seconds_total{{id=~\".*/kubepods/burstable/pod{POD_UID}/{}\"}})",
            cg.container_id
        ),
    );
    assert_eq!(
        id_ok,
        Some(1.0),
        "one cpu series with the kubelet path as id"
    );
    drop(stdin);
}
