//! `stratactl simulate mqtt`: N devices × M metrics publishing seed 001 JSON to
//! `<topic-prefix>/<metric>` at a given rate, with a live msgs/s line, over MQTT 5 or 3.1.1
//! ([`super::publisher`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tsdb_node::ingest::mqtt::{BrokerUrl, MqttProtocol};

use super::publisher::{Counters, Publisher, Session};
use super::sensors::{Sensors, MAX_METRICS};

#[derive(Args, Debug)]
pub struct MqttSimArgs {
    /// Broker URL (tcp://host:1883; ssl:// is not supported by the simulator).
    #[arg(
        long,
        env = "STRATA_MQTT_BROKER",
        default_value = "tcp://127.0.0.1:1883"
    )]
    pub broker: String,
    /// MQTT version: auto (5, or 3.1.1 when the broker refuses 5, as the node does), 5 or
    /// 3.1.1.
    #[arg(long, default_value = "auto")]
    pub protocol: MqttProtocol,
    /// Number of simulated devices (sensor_1 … sensor_N).
    #[arg(long, default_value_t = 3)]
    pub devices: usize,
    /// Metrics per device: temperature, humidity, pressure, co2, light, voltage, vibration,
    /// motion (in that order).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=MAX_METRICS as i64))]
    pub metrics: u8,
    /// Messages per second over all devices; 0 publishes as fast as the broker takes them.
    /// Default: one reading per device and metric per second.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Stop after this many messages (default: run until interrupted or --duration).
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this long (e.g. 30s, 5m).
    #[arg(long)]
    pub duration: Option<String>,
    /// QoS of the publishes (1 waits for the broker's PUBACK of each).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub qos: u8,
    /// Topic prefix; each reading goes to <prefix>/<metric>.
    #[arg(long, default_value = "iot/sensors")]
    pub topic_prefix: String,
    /// Device id prefix.
    #[arg(long, default_value = "sensor_")]
    pub device_prefix: String,
    /// Timestamp unit in the payload: ms (default) or s (seed 001's example).
    #[arg(long, default_value = "ms", value_parser = ["ms", "s"])]
    pub timestamp_unit: String,
    #[arg(long, env = "STRATA_MQTT_USERNAME")]
    pub username: Option<String>,
    #[arg(long, env = "STRATA_MQTT_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// Client id (default: strata-sim-<pid>).
    #[arg(long)]
    pub client_id: Option<String>,
    /// Seed of the value generator.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// QoS 1 messages in flight at once.
    #[arg(long, default_value_t = 1000)]
    pub inflight: u16,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(a: MqttSimArgs) -> Result<()> {
    if a.devices == 0 {
        bail!("--devices must be at least 1");
    }
    let url = BrokerUrl::parse(&a.broker).map_err(|e| anyhow!("--broker: {e}"))?;
    if url.tls {
        bail!("the simulator publishes over tcp:// only");
    }
    let duration = a
        .duration
        .as_deref()
        .map(tsdb_node::config::parse_duration)
        .transpose()
        .map_err(|e| anyhow!("--duration: {e}"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(publish(a, url, duration))
}

async fn publish(a: MqttSimArgs, url: BrokerUrl, duration: Option<Duration>) -> Result<()> {
    let metrics = usize::from(a.metrics);
    let series = a.devices * metrics;
    let rate = a.rate.unwrap_or(series as u64);
    let client_id = a
        .client_id
        .clone()
        .unwrap_or_else(|| format!("strata-sim-{}", std::process::id()));
    let counters = Arc::new(Counters::default());
    let session = Session {
        id: client_id,
        keep_alive: Duration::from_secs(30),
        inflight: a.inflight,
        credentials: a
            .username
            .as_ref()
            .map(|u| (u.clone(), a.password.clone().unwrap_or_default())),
    };
    let publisher = Publisher::connect(&url, a.protocol, &session, counters.clone()).await;

    let topics: Vec<String> = (0..metrics)
        .map(|m| {
            format!(
                "{}/{}",
                a.topic_prefix,
                Sensors::new(1, metrics, 0).metric_name(m)
            )
        })
        .collect();
    let mut sensors = Sensors::new(a.devices, metrics, a.seed);
    // JSON-quoted once, so that odd prefixes cannot break the payload.
    let device_json: Vec<String> = (1..=a.devices)
        .map(|d| serde_json::to_string(&format!("{}{d}", a.device_prefix)))
        .collect::<Result<_, _>>()?;
    let metric_json: Vec<String> = (0..metrics)
        .map(|m| serde_json::to_string(sensors.metric_name(m)))
        .collect::<Result<_, _>>()?;

    let bar = if a.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner().with_style(ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {msg}",
        )?)
    };
    let started = Instant::now();
    let mut last_report = (Instant::now(), 0u64);
    let mut i: u64 = 0;
    let mut last_ts = vec![i64::MIN / 2; series];
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupted.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            flag.store(true, Ordering::Relaxed);
        });
    }
    loop {
        if a.count.is_some_and(|n| i >= n)
            || duration.is_some_and(|d| started.elapsed() >= d)
            || interrupted.load(Ordering::Relaxed)
        {
            break;
        }
        if rate > 0 {
            // Send on schedule: message i is due at i / rate seconds.
            let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
        }
        let s = (i % series as u64) as usize;
        let (device, metric) = (s / metrics, s % metrics);
        // Strictly increasing per series, so that a burst (catching up after a stall, or
        // --rate 0) never gives two readings of one series the same millisecond, which
        // storage would keep as one sample.
        let Some(last) = last_ts.get_mut(s) else {
            bail!("series index out of range");
        };
        let now_ms = chrono::Utc::now().timestamp_millis().max(*last + 1);
        *last = now_ms;
        let ts = if a.timestamp_unit == "s" {
            (now_ms / 1000).to_string()
        } else {
            now_ms.to_string()
        };
        let value = sensors.read(device, metric, now_ms);
        let (Some(dev), Some(met), Some(topic)) = (
            device_json.get(device),
            metric_json.get(metric),
            topics.get(metric),
        ) else {
            bail!("series index out of range");
        };
        let payload = format!(
            "{{\"device_id\":{dev},\"metric_name\":{met},\"timestamp\":{ts},\"value\":{value}}}"
        );
        publisher
            .publish(topic, a.qos == 1, payload)
            .await
            .context("the MQTT client stopped")?;
        i += 1;
        counters.sent.store(i, Ordering::Relaxed);
        if i.is_multiple_of(256) || rate < 100 {
            let el = last_report.0.elapsed();
            if el >= Duration::from_millis(500) {
                let per_sec = (i - last_report.1) as f64 / el.as_secs_f64();
                last_report = (Instant::now(), i);
                bar.set_message(progress(&counters, per_sec, a.qos));
                bar.tick();
            }
        }
    }
    // QoS 1: wait for the broker to acknowledge everything sent.
    let wait_until = Instant::now() + Duration::from_secs(30);
    while a.qos == 1
        && counters.acked.load(Ordering::Relaxed) < i
        && Instant::now() < wait_until
        && !interrupted.load(Ordering::Relaxed)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    counters.done.store(true, Ordering::Relaxed);
    let version = publisher.version();
    publisher.finish().await;
    bar.finish_and_clear();
    let acked = counters.acked.load(Ordering::Relaxed);
    println!(
        "published {i} messages ({} devices x {metrics} metrics) over MQTT {version} at QoS {} in {secs:.2}s ({:.0} msgs/s){}",
        a.devices,
        a.qos,
        i as f64 / secs.max(1e-9),
        if a.qos == 1 {
            format!(", {acked} acknowledged by the broker")
        } else {
            String::new()
        }
    );
    if a.qos == 1 && acked < i {
        bail!("{} messages were not acknowledged by the broker", i - acked);
    }
    Ok(())
}

fn progress(c: &Counters, per_sec: f64, qos: u8) -> String {
    let sent = c.sent.load(Ordering::Relaxed);
    let mut s = format!("{sent} messages sent, {per_sec:.0} msgs/s");
    if qos == 1 {
        s.push_str(&format!(", {} acked", c.acked.load(Ordering::Relaxed)));
    }
    let errors = c.errors.load(Ordering::Relaxed);
    if errors > 0 {
        s.push_str(&format!(", {errors} connection errors"));
    }
    s
}
