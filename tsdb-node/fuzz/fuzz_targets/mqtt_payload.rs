//! Feeds arbitrary bytes to the MQTT payload decoder as topic and payload, under the default
//! mapping and one taking metric and device from the topic. It must never panic, and a decoded
//! sample always has a metric name and a timestamp storage can hold.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsdb_node::config::PayloadConfig;
use tsdb_node::ingest::mqtt::PayloadMapping;

fuzz_target!(|data: &[u8]| {
    let (topic, payload) = match data.iter().position(|b| *b == 0) {
        Some(i) => (String::from_utf8_lossy(&data[..i]), &data[i + 1..]),
        None => ("iot/sensors/x".into(), data),
    };
    let by_topic = PayloadMapping::from_config(&PayloadConfig {
        metric_topic_level: Some(2),
        device_topic_level: Some(1),
        timestamp_unit: "auto".into(),
        ..PayloadConfig::default()
    })
    .unwrap();
    for m in [PayloadMapping::default(), by_topic] {
        if let Ok((labels, sample)) = m.decode(&topic, payload, 1_700_000_000_000) {
            assert!(labels.metric_name().is_some_and(|n| !n.is_empty()));
            assert!(sample.t.unsigned_abs() <= (i64::MAX / 4) as u64);
        }
    }
});
