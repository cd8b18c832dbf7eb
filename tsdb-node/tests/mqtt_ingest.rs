//! MQTT ingest against a real mosquitto (and the embedded rumqttd): published readings are
//! queryable, bad payloads of every kind are counted and survived, and a broker restart is
//! survived without help. The node runs in-process on ephemeral ports. The scenarios that
//! depend on the protocol run over MQTT 5 and over 3.1.1 (`mqtt.protocol`), each checking that
//! the connection really used that version.

mod common;
mod mqtt_support;

use std::time::Duration;

use common::RunningNode;
use mqtt_support::*;

fn mqtt_section(url: &str, extra: &str) -> String {
    format!("mqtt:\n  broker: {url}\n  client_id: strata-test\n  reconnect_max: 1s\n{extra}")
}

/// `protocol` (`5` or `3.1.1`) as an extra line of [`mqtt_section`].
fn protocol_line(protocol: &str) -> String {
    format!("  protocol: \"{protocol}\"\n")
}

/// The `strata_mqtt_protocol_version` that `protocol` must produce.
fn level(protocol: &str) -> f64 {
    match protocol {
        "5" => 5.0,
        "3.1.1" => 4.0,
        other => panic!("no such protocol {other}"),
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn connected(node: &RunningNode) -> bool {
    node_metric(node.addrs.http, "strata_mqtt_connected") == Some(1.0)
}

#[test]
fn published_readings_are_queryable_and_bad_payloads_are_survived_mqtt5() {
    published_readings_are_queryable_and_bad_payloads_are_survived("5");
}

#[test]
fn published_readings_are_queryable_and_bad_payloads_are_survived_mqtt311() {
    published_readings_are_queryable_and_bad_payloads_are_survived("3.1.1");
}

fn published_readings_are_queryable_and_bad_payloads_are_survived(protocol: &str) {
    if !mosquitto_available("published_readings_are_queryable_and_bad_payloads_are_survived") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("mosquitto"));
    let node = RunningNode::start(
        dir.path(),
        "",
        &mqtt_section(&broker.url(), &protocol_line(protocol)),
    );
    let http = node.addrs.http;
    wait_until(Duration::from_secs(20), "the MQTT connection", || {
        connected(&node)
    });
    assert_eq!(
        node_metric(http, "strata_mqtt_protocol_version"),
        Some(level(protocol))
    );
    // The subscription is sent right after CONNACK; give the SUBACK a moment.
    std::thread::sleep(Duration::from_millis(300));

    // Seed 001's example, timestamp in seconds, at QoS 1 and QoS 0.
    let t_s = now_ms() / 1000 - 60;
    publish(
        broker.addr,
        "iot/sensors/temperature",
        1,
        format!(
            r#"{{"device_id":"sensor_1","metric_name":"temperature","timestamp":{t_s},"value":23.5}}"#
        )
        .as_bytes(),
    );
    publish(
        broker.addr,
        "iot/sensors/humidity",
        0,
        reading("sensor_2", "humidity", now_ms() - 1000, 41.25).as_bytes(),
    );
    wait_until(Duration::from_secs(20), "both readings", || {
        sample_count(http, "{__name__=~\"temperature|humidity\"}") == 2
    });
    let mut r = agent()
        .get(format!("http://{http}/api/v1/query"))
        .query(
            "query",
            "last_over_time(temperature{device_id=\"sensor_1\"}[1d])",
        )
        .call()
        .unwrap();
    let v: serde_json::Value = r.body_mut().read_json().unwrap();
    assert_eq!(v["data"]["result"][0]["value"][1], "23.5", "{v}");
    assert_eq!(v["data"]["result"][0]["metric"]["device_id"], "sensor_1");

    // Every kind of bad payload, each at QoS 1: each must be acked (not redelivered forever),
    // counted, and leave the subscriber working.
    let t = now_ms();
    let oversized = format!(
        "{{\"metric_name\":\"x\",\"value\":1,\"pad\":\"{}\"}}",
        "x".repeat(100 << 10)
    );
    let bad: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"not json at all".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x7b],
        b"[1,2,3]".to_vec(),
        b"{\"device_id\":\"d\",\"metric_name\":\"temperature\"}".to_vec(),
        b"{\"device_id\":\"d\",\"metric_name\":\"temperature\",\"value\":\"warm\"}".to_vec(),
        b"{\"device_id\":\"d\",\"value\":1}".to_vec(),
        format!("{{\"metric_name\":\"temperature\",\"value\":1,\"timestamp\":\"soon\",\"t\":{t}}}")
            .into_bytes(),
        b"{\"metric_name\":\"temperature\",\"value\":1,\"bad-label\":\"x\"}".to_vec(),
        b"{\"metric_name\":\"temperature\",\"value\":1,\"timestamp\":1e300}".to_vec(),
        // Valid JSON, but a metric name storage refuses.
        b"{\"metric_name\":\"no spaces allowed\",\"value\":1}".to_vec(),
        format!(
            "{{\"metric_name\":\"x\",\"value\":1{}",
            ",\"a\":[".repeat(300)
        )
        .into_bytes(),
        oversized.into_bytes(),
    ];
    for p in &bad {
        publish(broker.addr, "iot/sensors/bad", 1, p);
    }
    publish(
        broker.addr,
        "iot/sensors/temperature",
        1,
        reading("sensor_1", "temperature", now_ms(), 24.0).as_bytes(),
    );
    wait_until(
        Duration::from_secs(20),
        "the reading after the bad ones",
        || sample_count(http, "temperature") == 2,
    );
    // Samples are visible to queries a moment before their write returns and the counters
    // move, hence the waits.
    let total = bad.len() as f64;
    for (name, want) in [
        ("strata_mqtt_messages_invalid_total", total),
        ("strata_mqtt_messages_stored_total", 3.0),
        ("strata_mqtt_messages_received_total", total + 3.0),
        // The two good QoS 1 messages and every bad one were acknowledged, so none of them
        // comes back.
        ("strata_mqtt_messages_acked_total", total + 2.0),
    ] {
        wait_until(Duration::from_secs(10), name, || {
            node_metric(http, name) == Some(want)
        });
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        node_metric(http, "strata_mqtt_messages_received_total"),
        Some(total + 3.0),
        "a message was delivered again"
    );
    assert!(node_metric(http, "strata_mqtt_ack_latency_seconds_count").unwrap() >= 2.0);
    assert_eq!(node_metric(http, "strata_mqtt_reconnects_total"), Some(0.0));
    node.stop();
}

#[test]
fn broker_restart_is_survived_and_the_session_resumes_mqtt5() {
    broker_restart_is_survived_and_the_session_resumes("5");
}

#[test]
fn broker_restart_is_survived_and_the_session_resumes_mqtt311() {
    broker_restart_is_survived_and_the_session_resumes("3.1.1");
}

fn broker_restart_is_survived_and_the_session_resumes(protocol: &str) {
    if !mosquitto_available("broker_restart_is_survived_and_the_session_resumes") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Mosquitto::start(&dir.path().join("mosquitto"));
    let node = RunningNode::start(
        dir.path(),
        "",
        &mqtt_section(&broker.url(), &protocol_line(protocol)),
    );
    let http = node.addrs.http;
    wait_until(Duration::from_secs(20), "the MQTT connection", || {
        connected(&node)
    });
    assert_eq!(
        node_metric(http, "strata_mqtt_protocol_version"),
        Some(level(protocol))
    );
    std::thread::sleep(Duration::from_millis(300));
    publish(
        broker.addr,
        "iot/sensors/pressure",
        1,
        reading("d1", "pressure", now_ms() - 2000, 1013.0).as_bytes(),
    );
    wait_until(Duration::from_secs(20), "the first reading", || {
        sample_count(http, "pressure") == 1
    });

    broker.stop();
    wait_until(Duration::from_secs(20), "the node to notice", || {
        !connected(&node)
    });
    // While the broker is down nothing is fatal; the node keeps serving queries.
    assert_eq!(sample_count(http, "pressure"), 1);
    broker.restart();
    // The persistent session (and its subscription) survives in mosquitto's persistence
    // file, so a message published before the node is back is delivered when it returns.
    publish(
        broker.addr,
        "iot/sensors/pressure",
        1,
        reading("d1", "pressure", now_ms() - 1000, 1014.0).as_bytes(),
    );
    wait_until(
        Duration::from_secs(30),
        "the reading after the restart",
        || sample_count(http, "pressure") == 2,
    );
    assert!(connected(&node));
    assert!(node_metric(http, "strata_mqtt_reconnects_total").unwrap() >= 1.0);
    // The version is kept across reconnections.
    assert_eq!(
        node_metric(http, "strata_mqtt_protocol_version"),
        Some(level(protocol))
    );
    node.stop();
}

#[test]
fn embedded_broker_takes_mosquitto_pub() {
    if !mosquitto_available("embedded_broker_takes_mosquitto_pub") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let node = RunningNode::start(
        dir.path(),
        "",
        &mqtt_section(
            &format!("tcp://{addr}"),
            &format!("  embedded_broker: {addr}\n"),
        ),
    );
    let http = node.addrs.http;
    wait_until(Duration::from_secs(20), "the MQTT connection", || {
        connected(&node)
    });
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..5 {
        publish(
            addr,
            "iot/sensors/co2",
            1,
            reading("room-1", "co2", now_ms() - 10_000 + i, 600.0 + i as f64).as_bytes(),
        );
    }
    wait_until(Duration::from_secs(20), "the readings", || {
        sample_count(http, "co2{device_id=\"room-1\"}") == 5
    });
    node.stop();
}

#[test]
fn shared_subscription_hands_each_message_to_one_node_mqtt5() {
    shared_subscription_hands_each_message_to_one_node("5");
}

#[test]
fn shared_subscription_hands_each_message_to_one_node_mqtt311() {
    shared_subscription_hands_each_message_to_one_node("3.1.1");
}

fn shared_subscription_hands_each_message_to_one_node(protocol: &str) {
    if !mosquitto_available("shared_subscription_hands_each_message_to_one_node") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("mosquitto"));
    let nodes: Vec<RunningNode> = ["a", "b"]
        .iter()
        .map(|n| {
            let d = dir.path().join(n);
            std::fs::create_dir_all(&d).unwrap();
            RunningNode::start(
                &d,
                "",
                &format!(
                    "mqtt:\n  broker: {}\n  client_id: strata-shared-{n}\n  shared_group: strata\n{}",
                    broker.url(),
                    protocol_line(protocol)
                ),
            )
        })
        .collect();
    for n in &nodes {
        wait_until(Duration::from_secs(20), "the MQTT connections", || {
            connected(n)
        });
        assert_eq!(
            node_metric(n.addrs.http, "strata_mqtt_protocol_version"),
            Some(level(protocol))
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    const N: u64 = 400;
    let t0 = now_ms() - 60_000;
    let lines: Vec<String> = (0..N)
        .map(|i| reading("d1", "shared", t0 + i as i64, i as f64))
        .collect();
    let mut publisher = publish_lines(broker.addr, "iot/sensors/shared", 1, &lines);
    assert!(publisher.wait().unwrap().success());
    let counts = || -> Vec<u64> {
        nodes
            .iter()
            .map(|n| sample_count(n.addrs.http, "shared"))
            .collect()
    };
    wait_until(Duration::from_secs(20), "every message on one node", || {
        counts().iter().sum::<u64>() == N
    });
    let c = counts();
    assert!(c.iter().all(|n| *n > 0), "one node got nothing: {c:?}");
    for n in nodes {
        n.stop();
    }
}

#[test]
fn moving_to_a_shared_group_leaves_the_old_plain_subscription_mqtt5() {
    moving_to_a_shared_group_leaves_the_old_plain_subscription("5");
}

#[test]
fn moving_to_a_shared_group_leaves_the_old_plain_subscription_mqtt311() {
    moving_to_a_shared_group_leaves_the_old_plain_subscription("3.1.1");
}

/// A node restarted with `shared_group` (as a cluster's nodes are when the operator adds it)
/// resumes its persistent session, which still holds the plain subscription of the old
/// configuration: without unsubscribing from it the node gets every message twice.
fn moving_to_a_shared_group_leaves_the_old_plain_subscription(protocol: &str) {
    if !mosquitto_available("moving_to_a_shared_group_leaves_the_old_plain_subscription") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("mosquitto"));
    let plain = mqtt_section(&broker.url(), &protocol_line(protocol));
    let node = RunningNode::start(dir.path(), "", &plain);
    wait_until(Duration::from_secs(20), "the MQTT connection", || {
        connected(&node)
    });
    wait_until(Duration::from_secs(10), "the subscription", || {
        std::fs::read_to_string(dir.path().join("data/mqtt/subscribed")).ok()
            == Some("iot/sensors/+".into())
    });
    node.stop();

    let shared = format!("{plain}  shared_group: strata-x\n");
    let node = RunningNode::start(dir.path(), "", &shared);
    wait_until(Duration::from_secs(20), "the MQTT connection", || {
        connected(&node)
    });
    wait_until(Duration::from_secs(10), "the new subscription", || {
        std::fs::read_to_string(dir.path().join("data/mqtt/subscribed")).ok()
            == Some("$share/strata-x/iot/sensors/+".into())
    });
    let http = node.addrs.http;
    const N: usize = 20;
    let t0 = now_ms() - 60_000;
    let lines: Vec<String> = (0..N)
        .map(|i| reading("d1", "moved", t0 + i as i64, i as f64))
        .collect();
    let mut publisher = publish_lines(broker.addr, "iot/sensors/moved", 1, &lines);
    assert!(publisher.wait().unwrap().success());
    wait_until(Duration::from_secs(20), "the readings", || {
        sample_count(http, "moved") == N as u64
    });
    wait_until(Duration::from_secs(10), "the stored counter", || {
        node_metric(http, "strata_mqtt_messages_stored_total") == Some(N as f64)
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        node_metric(http, "strata_mqtt_messages_received_total"),
        Some(N as f64),
        "messages arrived through the old plain subscription too"
    );
    node.stop();
}

#[test]
fn tls_broker_with_a_private_ca() {
    if !mosquitto_available("tls_broker_with_a_private_ca") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let tls_dir = dir.path().join("tls");
    std::fs::create_dir_all(&tls_dir).unwrap();
    let cert = tls_dir.join("server.pem");
    let key = tls_dir.join("server.key");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    let broker = Mosquitto::start_with(
        &dir.path().join("mosquitto"),
        &format!("certfile {}\nkeyfile {}\n", cert.display(), key.display()),
    );
    let url = format!("ssl://{}", broker.addr);
    let node = RunningNode::start(
        dir.path(),
        "",
        &mqtt_section(&url, &format!("  ca_file: {}\n", cert.display())),
    );
    wait_until(Duration::from_secs(20), "the TLS connection", || {
        connected(&node)
    });
    std::thread::sleep(Duration::from_millis(300));
    let mut p = std::process::Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &broker.addr.port().to_string()])
        .args(["--cafile", &cert.display().to_string(), "--insecure"])
        .args(["-t", "iot/sensors/tls", "-q", "1", "-m"])
        .arg(reading("d1", "tls", now_ms() - 1000, 7.0))
        .spawn()
        .unwrap();
    assert!(p.wait().unwrap().success());
    wait_until(Duration::from_secs(20), "the reading over TLS", || {
        sample_count(node.addrs.http, "tls") == 1
    });
    node.stop();
}

#[test]
fn stratactl_simulate_mqtt_feeds_the_node() {
    if !mosquitto_available("stratactl_simulate_mqtt_feeds_the_node") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(&dir.path().join("mosquitto"));
    let node = RunningNode::start(dir.path(), "", &mqtt_section(&broker.url(), ""));
    wait_until(Duration::from_secs(20), "the MQTT connection", || {
        connected(&node)
    });
    std::thread::sleep(Duration::from_millis(300));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stratactl"))
        .args(["simulate", "mqtt", "--broker", &broker.url()])
        .args([
            "--devices",
            "5",
            "--metrics",
            "4",
            "--rate",
            "1000",
            "--count",
            "400",
        ])
        .args(["--qos", "1", "--quiet"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("400 acknowledged"), "{stdout}");
    // mosquitto 2 speaks MQTT 5, which the simulator tries first.
    assert!(stdout.contains("over MQTT 5 "), "{stdout}");
    let http = node.addrs.http;
    wait_until(Duration::from_secs(20), "the simulated readings", || {
        node_metric(http, "strata_mqtt_messages_stored_total") == Some(400.0)
    });
    // Every reading is its own sample: timestamps never repeat within a series.
    let samples: u64 = ["temperature", "humidity", "pressure", "co2"]
        .iter()
        .map(|m| sample_count(http, m))
        .sum();
    assert_eq!(samples, 400);
    assert_eq!(
        node_metric(http, "strata_mqtt_messages_invalid_total"),
        Some(0.0)
    );
    // Plausible values: indoor temperatures, humidity in percent.
    let mut r = agent()
        .get(format!("http://{http}/api/v1/query"))
        .query(
            "query",
            "max(max_over_time(temperature[1h])) < 40 and min(min_over_time(humidity[1h])) >= 0",
        )
        .call()
        .unwrap();
    let v: serde_json::Value = r.body_mut().read_json().unwrap();
    assert_eq!(
        v["data"]["result"].as_array().map(|a| a.len()),
        Some(1),
        "{v}"
    );
    assert!(sample_count(http, "temperature{device_id=\"sensor_5\"}") > 0);
    node.stop();
}
