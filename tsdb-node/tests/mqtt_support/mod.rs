//! A real mosquitto broker for the MQTT tests, started on an ephemeral port with a temporary
//! configuration, plus publishing through `mosquitto_pub` and reading the node back over HTTP.
//!
//! The tests need the Debian packages `mosquitto` and `mosquitto-clients` (installed by
//! `.ci/run`); without them they print a loud message and skip.
#![allow(dead_code)]

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// True when mosquitto and its clients are installed; otherwise says loudly why the test
/// is skipped.
pub fn mosquitto_available(test: &str) -> bool {
    let found = ["mosquitto", "mosquitto_pub"].iter().all(|b| {
        Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {b} || test -x /usr/sbin/{b}"))
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !found {
        eprintln!(
            "\n!!! SKIPPING {test}: mosquitto is not installed \
             (apt-get install -y mosquitto mosquitto-clients) !!!\n"
        );
    }
    found
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn mosquitto_bin() -> &'static str {
    if Path::new("/usr/sbin/mosquitto").exists() {
        "/usr/sbin/mosquitto"
    } else {
        "mosquitto"
    }
}

/// mosquitto cannot report a port 0 it bound, so the harness picks one first.
pub use crate::common::process::free_addr;

/// A mosquitto process; killed on drop.
pub struct Mosquitto {
    pub addr: SocketAddr,
    dir: PathBuf,
    listener_extra: String,
    child: Option<Child>,
}

impl Mosquitto {
    /// Starts mosquitto with persistence under `dir` on a free port.
    pub fn start(dir: &Path) -> Mosquitto {
        Self::start_with(dir, "")
    }

    /// Starts mosquitto with extra lines for its listener (e.g. TLS files).
    pub fn start_with(dir: &Path, listener_extra: &str) -> Mosquitto {
        let mut m = Mosquitto {
            addr: free_addr(),
            dir: dir.to_path_buf(),
            listener_extra: listener_extra.to_string(),
            child: None,
        };
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        std::fs::create_dir_all(&self.dir).unwrap();

        let conf = self.dir.join("mosquitto.conf");
        let mut f = std::fs::File::create(&conf).unwrap();
        write!(
            f,
            "listener {port} 127.0.0.1\n{extra}allow_anonymous true\npersistence true\n\
             persistence_location {dir}/\nautosave_interval 1\nmax_queued_messages 1000000\n\
             log_dest file {dir}/mosquitto.log\n{user}",
            port = self.addr.port(),
            extra = self.listener_extra,
            dir = self.dir.display(),
            // Started as root, mosquitto would drop to its own user, which cannot write the
            // persistence file into our private temporary directory.
            user = if running_as_root() { "user root\n" } else { "" },
        )
        .unwrap();
        let child = Command::new(mosquitto_bin())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(self.addr).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!("tcp://{}", self.addr)
    }

    /// The MQTT protocol level of every connection `client_id` made, from mosquitto's log
    /// (`... as <id> (p5, c0, k30)`; mosquitto writes `p2` for 3.1.1, `p5` for 5), mapped to
    /// the CONNECT levels 4 and 5. The broker's word, independent of the node's own gauge.
    pub fn protocol_levels(&self, client_id: &str) -> Vec<u8> {
        let log = std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default();
        let marker = format!(" as {client_id} (p");
        log.lines()
            .filter_map(|l| {
                let rest = &l[l.find(&marker)? + marker.len()..];
                match rest.split(',').next()? {
                    "2" => Some(4),
                    "5" => Some(5),
                    other => panic!("unexpected mosquitto protocol p{other} in {l:?}"),
                }
            })
            .collect()
    }

    /// Stops mosquitto with SIGTERM (it saves its persistence file) and starts it again on
    /// the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let _ = c.wait();
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn pub_command(broker: SocketAddr, topic: &str, qos: u8) -> Command {
    let mut c = Command::new("mosquitto_pub");
    c.arg("-h")
        .arg(broker.ip().to_string())
        .arg("-p")
        .arg(broker.port().to_string())
        .arg("-t")
        .arg(topic)
        .arg("-q")
        .arg(qos.to_string());
    c
}

/// Publishes one message; panics unless mosquitto_pub succeeds.
pub fn publish(broker: SocketAddr, topic: &str, qos: u8, payload: &[u8]) {
    let mut cmd = pub_command(broker, topic, qos);
    // `-s` refuses empty input; `-n` sends an empty message.
    cmd.arg(if payload.is_empty() { "-n" } else { "-s" });
    let mut child = cmd.stdin(Stdio::piped()).spawn().expect("mosquitto_pub");
    child.stdin.take().unwrap().write_all(payload).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "mosquitto_pub failed");
}

/// Starts publishing each line as one message; the child exits 0 once the broker took
/// (for QoS 1: acknowledged) every one.
pub fn publish_lines(broker: SocketAddr, topic: &str, qos: u8, lines: &[String]) -> Child {
    let mut child = pub_command(broker, topic, qos)
        .arg("-l")
        .stdin(Stdio::piped())
        .spawn()
        .expect("mosquitto_pub");
    let mut stdin = child.stdin.take().unwrap();
    let body = lines.join("\n") + "\n";
    std::thread::spawn(move || {
        let _ = stdin.write_all(body.as_bytes());
    });
    child
}

/// A seed 001 payload.
pub fn reading(device: &str, metric: &str, t_ms: i64, value: f64) -> String {
    format!(
        "{{\"device_id\":\"{device}\",\"metric_name\":\"{metric}\",\"timestamp\":{t_ms},\"value\":{value}}}"
    )
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

/// Samples of `selector` within the last 30 days, via PromQL; 0 when none or unreachable.
pub fn sample_count(http: SocketAddr, selector: &str) -> u64 {
    let q = format!("sum(count_over_time({selector}[30d]))");
    let Ok(mut r) = agent()
        .get(format!("http://{http}/api/v1/query"))
        .query("query", &q)
        .call()
    else {
        return 0;
    };
    let Ok(v) = r.body_mut().read_json::<serde_json::Value>() else {
        return 0;
    };
    v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse::<f64>().ok())
        .map_or(0, |f| f as u64)
}

/// One metric of the node's `/metrics`, or None.
pub fn node_metric(http: SocketAddr, name: &str) -> Option<f64> {
    let body = agent()
        .get(format!("http://{http}/metrics"))
        .call()
        .ok()?
        .body_mut()
        .read_to_string()
        .ok()?;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Polls `f` until it returns true; panics with `what` after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
