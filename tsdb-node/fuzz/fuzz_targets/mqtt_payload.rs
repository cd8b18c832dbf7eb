//! Feeds arbitrary bytes to the MQTT payload decoder as topic and payload, under the default
//! mapping and one taking metric and device from the topic. It must never panic, and a decoded
//! sample always has a metric name and a timestamp storage can hold. Decoding through the
//! dispatcher's series cache gives the same outcome, filling the cache and reading it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsdb_node::config::PayloadConfig;
use tsdb_node::ingest::mqtt::{PayloadMapping, SeriesCache};

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
        let alone = m.decode(&topic, payload, 1_700_000_000_000);
        let mut cache = SeriesCache::new(4);
        for _ in 0..2 {
            let cached = m.decode_cached(&topic, payload, 1_700_000_000_000, &mut cache);
            assert_eq!(cached, alone);
        }
        if let Ok((labels, sample)) = alone {
            assert!(labels.metric_name().is_some_and(|n| !n.is_empty()));
            assert!(sample.t.unsigned_abs() <= (i64::MAX / 4) as u64);
        }
    }
});
