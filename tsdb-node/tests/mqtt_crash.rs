//! The `strata-node` binary killed with SIGKILL while a QoS 1 stream flows through mosquitto:
//! every message the broker acknowledged to the publisher must be queryable once the node is
//! back, because the node acknowledges only durable messages and its persistent session makes
//! the broker redeliver the rest. Over MQTT 5 (the session outlives the connection by its
//! expiry interval) and over 3.1.1 (`clean_session = false`).

mod common;
mod mqtt_support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::process::{spawn_node, KillOnDrop};
use mqtt_support::*;

const CLIENT_ID: &str = "strata-crash-test";

fn write_config(dir: &Path, http: SocketAddr, broker: &str, protocol: &str) -> std::path::PathBuf {
    let yaml = format!(
        "server:\n  http_addr: {http}\n  binary_addr: {b}\n  tcp_addr: {t}\nstorage:\n  data_dir: {d}/data\n  wal_dir: {d}/wal\n  out_of_order_window: 0\nretention:\n  raw: 0\nmqtt:\n  broker: {broker}\n  client_id: {CLIENT_ID}\n  protocol: \"{protocol}\"\n  qos: 1\n  batch_max_messages: 512\n  reconnect_max: 1s\n",
        b = free_addr(),
        t = free_addr(),
        d = dir.display()
    );
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

fn sigkill(node: &mut KillOnDrop) {
    // Child::kill sends SIGKILL: no shutdown path runs.
    node.0.kill().unwrap();
    node.0.wait().unwrap();
}

#[test]
fn sigkill_mid_stream_loses_no_acknowledged_message_mqtt5() {
    sigkill_mid_stream_loses_no_acknowledged_message("5", 5);
}

#[test]
fn sigkill_mid_stream_loses_no_acknowledged_message_mqtt311() {
    sigkill_mid_stream_loses_no_acknowledged_message("3.1.1", 4);
}

fn sigkill_mid_stream_loses_no_acknowledged_message(protocol: &str, level: u8) {
    if !mosquitto_available("sigkill_mid_stream_loses_no_acknowledged_message") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("mosquitto"));
    let http = free_addr();
    let config = write_config(dir.path(), http, &broker.url(), protocol);
    let mut node = spawn_node(&config);
    wait_until(Duration::from_secs(30), "the first MQTT connection", || {
        node_metric(http, "strata_mqtt_connected") == Some(1.0)
    });
    std::thread::sleep(Duration::from_millis(300));

    const ROUNDS: usize = 3;
    const PER_ROUND: usize = 6000;
    let t0 = chrono::Utc::now().timestamp_millis() - 3_600_000;
    for round in 0..ROUNDS {
        // Distinct timestamps, so that every message is one sample.
        let lines: Vec<String> = (0..PER_ROUND)
            .map(|i| {
                let n = round * PER_ROUND + i;
                reading(&format!("dev{}", n % 7), "crash", t0 + n as i64, n as f64)
            })
            .collect();
        let mut publisher = publish_lines(broker.addr, "iot/sensors/crash", 1, &lines);
        // Kill once the node is storing: mid-stream, with messages in every state (queued at
        // the broker, in flight to the node, being written, written but not yet acked).
        let before = sample_count(http, "crash");
        wait_until(Duration::from_secs(30), "the node to store some", || {
            sample_count(http, "crash") > before
        });
        sigkill(&mut node);
        let status = publisher.wait().unwrap();
        assert!(status.success(), "mosquitto_pub failed in round {round}");
        node = spawn_node(&config);
        let want = ((round + 1) * PER_ROUND) as u64;
        wait_until(
            Duration::from_secs(60),
            &format!("all {want} acknowledged messages after kill {}", round + 1),
            || sample_count(http, "crash") == want,
        );
    }
    // Nothing extra either: duplicates of redelivered messages land on the same samples.
    assert_eq!(sample_count(http, "crash"), (ROUNDS * PER_ROUND) as u64);
    // Every connection (one per start) used the version asked for, in the broker's own words.
    let levels = broker.protocol_levels(CLIENT_ID);
    assert!(
        levels.len() > ROUNDS && levels.iter().all(|l| *l == level),
        "{levels:?}"
    );
    drop(node);
}
