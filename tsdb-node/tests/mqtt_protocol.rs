//! `mqtt.protocol`: `auto` speaks MQTT 5 to a broker that does (mosquitto 2) and falls back to
//! 3.1.1, at once and for good, against one that does not (rumqttd's 3.1.1 listener, the
//! node's embedded broker); `3.1.1` and `5` are obeyed; and MQTT 5's session expiry interval
//! is what the broker keeps the session for. Versions are checked in the broker's own log as
//! well as on the node's `strata_mqtt_protocol_version`.

mod common;
mod mqtt_support;

use std::time::Duration;

use common::RunningNode;
use mqtt_support::*;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn section(url: &str, client_id: &str, extra: &str) -> String {
    format!("mqtt:\n  broker: {url}\n  client_id: {client_id}\n  reconnect_max: 1s\n{extra}")
}

fn connected(node: &RunningNode) -> bool {
    node_metric(node.addrs.http, "strata_mqtt_connected") == Some(1.0)
}

/// Publishes one reading on `topic` and waits until the node stored it.
fn round_trip(broker: std::net::SocketAddr, node: &RunningNode, metric: &str) {
    // The subscription is sent right after CONNACK; give the SUBACK a moment.
    std::thread::sleep(Duration::from_millis(300));
    publish(
        broker,
        &format!("iot/sensors/{metric}"),
        1,
        reading("d1", metric, now_ms() - 1000, 1.0).as_bytes(),
    );
    wait_until(Duration::from_secs(20), "the reading", || {
        sample_count(node.addrs.http, metric) == 1
    });
}

#[test]
fn auto_speaks_mqtt5_to_mosquitto_and_3_1_1_when_told() {
    if !mosquitto_available("auto_speaks_mqtt5_to_mosquitto_and_3_1_1_when_told") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("mosquitto"));
    for (client_id, extra, level) in [
        ("strata-auto", "", 5u8),
        ("strata-forced-311", "  protocol: 3.1.1\n", 4),
        ("strata-forced-5", "  protocol: 5\n", 5),
    ] {
        let d = dir.path().join(client_id);
        std::fs::create_dir_all(&d).unwrap();
        let node = RunningNode::start(&d, "", &section(&broker.url(), client_id, extra));
        wait_until(Duration::from_secs(20), "the MQTT connection", || {
            connected(&node)
        });
        assert_eq!(
            node_metric(node.addrs.http, "strata_mqtt_protocol_version"),
            Some(f64::from(level)),
            "{client_id}"
        );
        round_trip(broker.addr, &node, &client_id.replace('-', "_"));
        assert_eq!(
            broker.protocol_levels(client_id),
            vec![level],
            "{client_id}: one connection, at the expected level"
        );
        node.stop();
    }
}

#[test]
fn auto_falls_back_to_3_1_1_against_a_3_1_1_only_broker() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    // The embedded rumqttd listens with its 3.1.1 (v4) listener only and closes the
    // connection on an MQTT 5 CONNECT.
    let url = format!("tcp://{addr}");
    let node = RunningNode::start(
        dir.path(),
        "",
        &section(
            &url,
            "strata-fallback",
            &format!("  embedded_broker: {addr}\n"),
        ),
    );
    let http = node.addrs.http;
    wait_until(Duration::from_secs(20), "the MQTT connection", || {
        connected(&node)
    });
    assert_eq!(node_metric(http, "strata_mqtt_protocol_version"), Some(4.0));
    // The fallback happens within the same attempt: no backoff, no reconnection counted.
    assert_eq!(node_metric(http, "strata_mqtt_reconnects_total"), Some(0.0));
    if mosquitto_available("auto_falls_back_to_3_1_1_against_a_3_1_1_only_broker") {
        round_trip(addr, &node, "fallback");
    }
    // The simulator falls back the same way.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stratactl"))
        .args(["simulate", "mqtt", "--broker", &url, "--devices", "2"])
        .args(["--rate", "0", "--count", "10", "--qos", "1", "--quiet"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("over MQTT 3.1.1 "), "{stdout}");
    assert!(stdout.contains("10 acknowledged"), "{stdout}");
    wait_until(Duration::from_secs(20), "the simulated readings", || {
        sample_count(http, "temperature") == 10
    });
    node.stop();

    // Forcing MQTT 5 against the same kind of broker never connects, and says so.
    let addr = free_addr();
    let dir = tempfile::tempdir().unwrap();
    let node = RunningNode::start(
        dir.path(),
        "",
        &section(
            &format!("tcp://{addr}"),
            "strata-forced-5",
            &format!("  embedded_broker: {addr}\n  protocol: 5\n  reconnect_min: 50ms\n"),
        ),
    );
    let http = node.addrs.http;
    wait_until(Duration::from_secs(20), "failed MQTT 5 attempts", || {
        node_metric(http, "strata_mqtt_reconnects_total").unwrap_or(0.0) >= 3.0
    });
    assert!(!connected(&node));
    assert_eq!(node_metric(http, "strata_mqtt_protocol_version"), Some(0.0));
    node.stop();
}

#[test]
fn mqtt5_session_expiry_is_what_the_broker_keeps() {
    if !mosquitto_available("mqtt5_session_expiry_is_what_the_broker_keeps") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("mosquitto"));
    // Two nodes on the same filter: one keeps the default expiry (7 days), one 1 second.
    let start = |name: &str, extra: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        let node = RunningNode::start(
            &d,
            "",
            &section(&broker.url(), name, &format!("  protocol: 5\n{extra}")),
        );
        wait_until(Duration::from_secs(20), "the MQTT connection", || {
            connected(&node)
        });
        node
    };
    let kept = start("strata-kept", "");
    let short = start("strata-short", "  session_expiry: 1s\n");
    // Let both SUBACKs in before the sessions go offline.
    std::thread::sleep(Duration::from_millis(300));
    kept.stop();
    short.stop();
    // mosquitto expires sessions on a one-second tick.
    std::thread::sleep(Duration::from_secs(3));
    publish(
        broker.addr,
        "iot/sensors/expiry",
        1,
        reading("d1", "expiry", now_ms() - 5000, 1.0).as_bytes(),
    );

    // The kept session queued the message while its node was down.
    let kept = start("strata-kept", "");
    wait_until(Duration::from_secs(20), "the queued reading", || {
        sample_count(kept.addrs.http, "expiry") == 1
    });
    kept.stop();

    // The expired one did not: the node subscribes afresh and only sees what follows. mosquitto
    // delivers a session's queue before newer messages, so once the marker is stored a queued
    // message would have been too.
    let short = start("strata-short", "  session_expiry: 1s\n");
    std::thread::sleep(Duration::from_millis(300));
    publish(
        broker.addr,
        "iot/sensors/marker",
        1,
        reading("d1", "marker", now_ms() - 1000, 1.0).as_bytes(),
    );
    wait_until(Duration::from_secs(20), "the marker", || {
        sample_count(short.addrs.http, "marker") == 1
    });
    assert_eq!(sample_count(short.addrs.http, "expiry"), 0);
    short.stop();
}
