//! The servers of a side-by-side benchmark: strata-node, Prometheus and InfluxDB, each started
//! as a child process on free loopback ports with its own temporary directory, and stopped
//! (directory removed) when dropped.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tempfile::TempDir;

use crate::client::Api;
use crate::proto::Endpoints;

/// User and password of the benchmark's strata-node (TCP JSON needs a login).
pub const BENCH_USER: &str = "bench";
pub const BENCH_PASSWORD: &str = "bench";
/// How long a server may take to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// Which program a [`Server`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    Strata,
    Prometheus,
    InfluxDb,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Strata => "Strata",
            System::Prometheus => "Prometheus",
            System::InfluxDb => "InfluxDB",
        }
    }
}

/// Paths of the three programs and where their temporary directories go.
#[derive(Clone, Debug)]
pub struct Programs {
    pub strata: PathBuf,
    pub prometheus: PathBuf,
    pub influxd: PathBuf,
    /// Parent of the servers' temporary directories; it should be on the disk being measured
    /// (not a tmpfs, where fsync is free).
    pub work_dir: PathBuf,
}

/// A running server; killed and its directory removed on drop.
pub struct Server {
    pub system: System,
    child: Child,
    dir: TempDir,
    pub endpoints: Endpoints,
}

impl Server {
    /// Starts `system` and waits until it answers as ready.
    pub fn start(system: System, p: &Programs) -> Result<Server> {
        std::fs::create_dir_all(&p.work_dir)
            .with_context(|| format!("creating {}", p.work_dir.display()))?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}-bench-", system.name().to_lowercase()))
            .tempdir_in(&p.work_dir)
            .context("creating a temporary directory")?;
        let http = free_port()?;
        let mut endpoints = Endpoints {
            api: Api::new(&format!("http://127.0.0.1:{http}")),
            tcp_json: String::new(),
            binary: String::new(),
            user: None,
            password: None,
        };
        let (mut cmd, ready_path) = match system {
            System::Strata => {
                let tcp = format!("127.0.0.1:{}", free_port()?);
                let binary = format!("127.0.0.1:{}", free_port()?);
                let config = strata_config(dir.path(), http, &tcp, &binary)?;
                endpoints.tcp_json = tcp;
                endpoints.binary = binary;
                endpoints.user = Some(BENCH_USER.into());
                endpoints.password = Some(BENCH_PASSWORD.into());
                let mut cmd = Command::new(resolve(&p.strata)?);
                cmd.arg("--config").arg(config).env("RUST_LOG", "warn");
                (cmd, "/ready")
            }
            System::Prometheus => {
                let config = dir.path().join("prometheus.yml");
                std::fs::write(&config, "global:\n  scrape_interval: 1m\n")?;
                let mut cmd = Command::new(resolve(&p.prometheus)?);
                cmd.arg(format!("--config.file={}", config.display()))
                    .arg(format!(
                        "--storage.tsdb.path={}",
                        dir.path().join("data").display()
                    ))
                    .arg(format!("--web.listen-address=127.0.0.1:{http}"))
                    .arg("--web.enable-remote-write-receiver")
                    .arg("--storage.tsdb.retention.time=30d")
                    .arg("--log.level=warn");
                (cmd, "/-/ready")
            }
            System::InfluxDb => {
                let config = influx_config(dir.path(), http, free_port()?)?;
                let mut cmd = Command::new(resolve(&p.influxd)?);
                cmd.arg("run").arg("-config").arg(config);
                (cmd, "/ping")
            }
        };
        let log = File::create(dir.path().join("server.log"))?;
        let child = cmd
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {:?}", cmd.get_program()))?;
        let mut server = Server {
            system,
            child,
            dir,
            endpoints,
        };
        server.wait_ready(ready_path)?;
        if system == System::InfluxDb {
            let url = server.endpoints.api.url("/query");
            let resp = ureq::post(&url)
                .query("q", "CREATE DATABASE bench")
                .send_empty()
                .context("creating the InfluxDB database")?;
            if !resp.status().is_success() {
                bail!("InfluxDB refused CREATE DATABASE: HTTP {}", resp.status());
            }
        }
        Ok(server)
    }

    fn wait_ready(&mut self, path: &str) -> Result<()> {
        let url = self.endpoints.api.url(path);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .into();
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited with {status} while starting; its log:\n{}",
                    self.system.name(),
                    self.log_tail()
                );
            }
            if let Ok(resp) = agent.get(&url).call() {
                if resp.status().is_success() {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "{} was not ready after {START_TIMEOUT:?}; its log:\n{}",
            self.system.name(),
            self.log_tail()
        )
    }

    /// The server's process id (for attaching a profiler).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of the server's log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// CPU time (user + system) the server process has used so far, from /proc (Linux).
    pub fn cpu_time(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // Fields after the parenthesised command name, which may itself hold spaces.
        let rest = stat.get(stat.rfind(')')? + 2..)?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        // USER_HZ is 100 on every Linux platform Strata runs on.
        Some(Duration::from_millis(ticks * 10))
    }

    /// Stops the server process (SIGSTOP) until [`Paused`] is dropped, so that it takes no CPU
    /// at all, not even for its background work, while another server is being timed.
    pub fn pause(&self) -> Result<Paused> {
        signal(self.child.id(), libc::SIGSTOP)?;
        // SIGSTOP takes effect asynchronously: wait until the process (its leader thread, as
        // /proc/<pid>/stat shows it) is stopped.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.stopped() {
            if Instant::now() > deadline {
                let _ = signal(self.child.id(), libc::SIGCONT);
                bail!("{} did not stop within 5 s", self.system.name());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(Paused {
            pid: self.child.id(),
        })
    }

    /// Whether the process is stopped (state `T` in /proc).
    fn stopped(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .ok()
            .and_then(|stat| Some(stat.get(stat.rfind(')')? + 2..)?.starts_with('T')))
            .unwrap_or(false)
    }

    /// Peak resident memory of the server process (`VmHWM` in /proc, Linux), in bytes.
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }
}

/// A server stopped by [`Server::pause`]; continued (SIGCONT) when dropped.
pub struct Paused {
    pid: u32,
}

impl Drop for Paused {
    fn drop(&mut self) {
        let _ = signal(self.pid, libc::SIGCONT);
    }
}

fn signal(pid: u32, sig: libc::c_int) -> Result<()> {
    let pid = libc::pid_t::try_from(pid).context("process id out of range")?;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; the pid is our own
    // child, which is not reaped while its `Server` lives.
    if unsafe { libc::kill(pid, sig) } != 0 {
        return Err(std::io::Error::last_os_error()).context("signalling a benchmark server");
    }
    Ok(())
}

impl Drop for Server {
    fn drop(&mut self) {
        // A benchmark server holds nothing worth a clean shutdown: its directory goes too.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A program given as a path is made absolute, since servers run in their own directory; a
/// bare name is left for `PATH` to find.
fn resolve(program: &Path) -> Result<PathBuf> {
    if program.components().count() > 1 {
        program
            .canonicalize()
            .with_context(|| format!("finding {}", program.display()))
    } else {
        Ok(program.to_path_buf())
    }
}

/// A port that was free a moment ago (the listener is closed before the server binds it).
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A production-like strata-node configuration (default storage settings, fsync on) with the
/// benchmark user.
fn strata_config(dir: &Path, http: u16, tcp: &str, binary: &str) -> Result<PathBuf> {
    // The lowest bcrypt cost: the hash is checked once per connection and is not measured.
    let hash = bcrypt::hash(BENCH_PASSWORD, 4)?;
    let yaml = format!(
        "server:\n  bind_address: 127.0.0.1\n  http_addr: 127.0.0.1:{http}\n  tcp_addr: {tcp}\n  binary_addr: {binary}\n\
         storage:\n  data_dir: {data}\n  wal_dir: {wal}\n  wal_sync: true\n\
         auth:\n  users:\n    - username: {BENCH_USER}\n      password_hash: '{hash}'\n      roles: [admin]\n",
        data = dir.join("data").display(),
        wal = dir.join("wal").display(),
    );
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml)?;
    Ok(path)
}

/// InfluxDB 1.x on loopback with every write fsynced before it is acknowledged
/// (`wal-fsync-delay = "0s"`), like Strata's WAL.
fn influx_config(dir: &Path, http: u16, rpc: u16) -> Result<PathBuf> {
    let d = |s: &str| dir.join(s).display().to_string();
    let toml = format!(
        "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n\
         [meta]\n  dir = \"{meta}\"\n\
         [data]\n  dir = \"{data}\"\n  wal-dir = \"{wal}\"\n  wal-fsync-delay = \"0s\"\n  query-log-enabled = false\n\
         [http]\n  bind-address = \"127.0.0.1:{http}\"\n  log-enabled = false\n  max-body-size = 0\n\
         [monitor]\n  store-enabled = false\n\
         [continuous_queries]\n  enabled = false\n\
         [subscriber]\n  enabled = false\n",
        meta = d("meta"),
        data = d("data"),
        wal = d("wal"),
    );
    let path = dir.join("influxdb.conf");
    std::fs::write(&path, toml)?;
    Ok(path)
}
