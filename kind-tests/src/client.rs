//! Clients used by the scenarios: `stratactl` (the real CLI) for ingest over every protocol,
//! and the Prometheus HTTP API for reading back.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::Endpoints;

/// The ingest protocols, as `stratactl generate --protocol` names them.
pub const PROTOCOLS: [&str; 4] = ["http-line", "remote-write", "tcp-json", "binary"];

/// Finds a binary built by this workspace: `$<ENV>` when set, else next to the test binary
/// (`target/<profile>/`).
pub fn workspace_binary(name: &str, env: &str) -> Result<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| anyhow!("cannot locate the target directory from {}", exe.display()))?;
    let p = dir.join(name);
    if !p.exists() {
        bail!(
            "{} not found; build it first (`cargo build -p tsdb-node --bins`) or set {env}",
            p.display()
        );
    }
    Ok(p)
}

/// One batch of synthetic data: `stratactl generate` over `protocol`.
#[derive(Clone, Debug)]
pub struct Batch {
    pub protocol: &'static str,
    pub devices: usize,
    pub metrics: usize,
    pub points: usize,
    /// Start as stratactl accepts it (e.g. `now-50m`).
    pub start: String,
    pub seed: u64,
}

impl Batch {
    /// Samples the batch sends.
    pub fn samples(&self) -> u64 {
        (self.devices * self.metrics * self.points) as u64
    }
}

/// Sends `batch` through `ep` with the real `stratactl`.
pub fn generate(
    stratactl: &Path,
    ep: &Endpoints,
    user: &(String, String),
    batch: &Batch,
) -> Result<()> {
    let out = Command::new(stratactl)
        .args([
            "--server",
            &ep.http,
            "--tcp-addr",
            &ep.tcp_json,
            "--binary-addr",
            &ep.binary,
        ])
        .args(["--user", &user.0])
        .env("STRATA_PASSWORD", &user.1)
        .args(["generate", "--protocol", batch.protocol])
        .args(["--devices", &batch.devices.to_string()])
        .args(["--metrics", &batch.metrics.to_string()])
        .args(["--points", &batch.points.to_string()])
        .args([
            "--interval",
            "10s",
            "--start",
            &batch.start,
            "--batch",
            "50",
        ])
        .args(["--seed", &batch.seed.to_string()])
        .output()
        .with_context(|| format!("running {}", stratactl.display()))?;
    if !out.status.success() {
        bail!(
            "stratactl generate --protocol {} failed: {}",
            batch.protocol,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Publishes `messages` readings (QoS 1, each acknowledged by the broker) to the MQTT broker
/// at `broker` with `stratactl simulate mqtt`: 3 devices named `<device_prefix><n>`, 2
/// metrics, timestamps of now (distinct per series).
pub fn simulate_mqtt(
    stratactl: &Path,
    broker: &str,
    device_prefix: &str,
    messages: u64,
    seed: u64,
) -> Result<()> {
    let out = Command::new(stratactl)
        .args(["simulate", "mqtt", "--broker", broker])
        .args(["--devices", "3", "--metrics", "2", "--qos", "1", "--quiet"])
        .args(["--count", &messages.to_string(), "--rate", "200"])
        .args(["--device-prefix", device_prefix])
        .args(["--client-id", &format!("{device_prefix}publisher")])
        .args(["--seed", &seed.to_string()])
        .output()
        .with_context(|| format!("running {}", stratactl.display()))?;
    if !out.status.success() {
        bail!(
            "stratactl simulate mqtt failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into()
}

fn get_json(url: &str, query: &[(&str, &str)]) -> Result<serde_json::Value> {
    let mut req = agent().get(url);
    for (k, v) in query {
        req = req.query(k, v);
    }
    let mut resp = req.call().with_context(|| format!("GET {url}"))?;
    let v: serde_json::Value = resp.body_mut().read_json()?;
    if v["status"] != "success" {
        bail!("GET {url} {query:?} failed: {v}");
    }
    Ok(v)
}

/// Every sample stored in the last `window`, counted by PromQL through `ep`: one
/// `count_over_time` per metric name (over all names at once the result would hold series
/// that differ only by their dropped name, which PromQL refuses).
pub fn count_samples(ep: &Endpoints, window: &str) -> Result<u64> {
    let names = get_json(&format!("{}/api/v1/label/__name__/values", ep.http), &[])?;
    let names = names["data"]
        .as_array()
        .ok_or_else(|| anyhow!("unexpected label values {names}"))?;
    let mut total = 0u64;
    for name in names {
        let name = name.as_str().ok_or_else(|| anyhow!("metric name {name}"))?;
        let query = format!("sum(count_over_time({{__name__=\"{name}\"}}[{window}]))");
        let v = get_json(&format!("{}/api/v1/query", ep.http), &[("query", &query)])?;
        let Some(first) = v["data"]["result"].as_array().and_then(|a| a.first()) else {
            continue;
        };
        let text = first["value"][1]
            .as_str()
            .ok_or_else(|| anyhow!("unexpected answer {v}"))?;
        let n: f64 = text.parse().with_context(|| format!("count {text:?}"))?;
        total += n as u64;
    }
    Ok(total)
}

/// Polls `f` until it returns `Ok(true)` or `timeout` passes.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    let mut last_err = None;
    loop {
        match f() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last_err = Some(e),
        }
        if std::time::Instant::now() > deadline {
            return Err(match last_err {
                Some(e) => e.context(format!("timed out waiting for {what}")),
                None => anyhow!("timed out waiting for {what}"),
            });
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
