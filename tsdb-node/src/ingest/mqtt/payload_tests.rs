use proptest::prelude::*;

use super::*;

const NOW: i64 = 1_700_000_000_000;

fn default() -> PayloadMapping {
    PayloadMapping::default()
}

fn decode(
    m: &PayloadMapping,
    topic: &str,
    payload: &str,
) -> Result<(Labels, Sample), PayloadError> {
    m.decode(topic, payload.as_bytes(), NOW)
}

#[test]
fn seed_001_payload() {
    let (labels, s) = decode(
        &default(),
        "iot/sensors/temperature",
        r#"{"device_id":"sensor_1","metric_name":"temperature","timestamp":1609459200,"value":23.5}"#,
    )
    .unwrap();
    assert_eq!(
        labels,
        Labels::from_metric("temperature", &[("device_id", "sensor_1")])
    );
    assert_eq!(s, Sample::new(1_609_459_200_000, 23.5));
}

#[test]
fn timestamps_in_every_unit_agree() {
    let m = default();
    let want = 1_609_459_200_123;
    for ts in [
        "1609459200.123",
        "1609459200123",
        "1609459200123000",
        "1609459200123000000",
        "\"2021-01-01T00:00:00.123Z\"",
        "\"2021-01-01T01:00:00.123+01:00\"",
        "\"1609459200123\"",
    ] {
        let p = format!(r#"{{"metric_name":"t","timestamp":{ts},"value":1}}"#);
        assert_eq!(decode(&m, "x", &p).unwrap().1.t, want, "{ts}");
    }
    let p = r#"{"metric_name":"t","value":1}"#;
    assert_eq!(decode(&m, "x", p).unwrap().1.t, NOW);
    let p = r#"{"metric_name":"t","timestamp":null,"value":1}"#;
    assert_eq!(decode(&m, "x", p).unwrap().1.t, NOW);

    let cfg = |unit: &str| PayloadConfig {
        timestamp_unit: unit.into(),
        ..PayloadConfig::default()
    };
    let ms = PayloadMapping::from_config(&cfg("ms")).unwrap();
    let p = r#"{"metric_name":"t","timestamp":5,"value":1}"#;
    assert_eq!(decode(&ms, "x", p).unwrap().1.t, 5);
    let s = PayloadMapping::from_config(&cfg("s")).unwrap();
    assert_eq!(decode(&s, "x", p).unwrap().1.t, 5000);
    let rfc = PayloadMapping::from_config(&cfg("rfc3339")).unwrap();
    assert!(matches!(
        decode(&rfc, "x", p),
        Err(PayloadError::BadTimestamp(_))
    ));
    assert!(PayloadMapping::from_config(&cfg("minutes")).is_err());
}

#[test]
fn metric_and_device_from_topic_levels() {
    let m = PayloadMapping::from_config(&PayloadConfig {
        metric_topic_level: Some(3),
        device_topic_level: Some(2),
        ..PayloadConfig::default()
    })
    .unwrap();
    let (labels, s) = decode(
        &m,
        "iot/sensors/dev-7/humidity",
        r#"{"metric_name":"ignored","device_id":"ignored","value":"41.5"}"#,
    )
    .unwrap();
    assert_eq!(
        labels,
        Labels::from_metric("humidity", &[("device_id", "dev-7")])
    );
    assert_eq!(s.v, 41.5);
    assert_eq!(
        decode(&m, "iot/sensors", r#"{"value":1}"#),
        Err(PayloadError::TopicLevel {
            topic: "iot/sensors".into(),
            level: 3
        })
    );
    assert!(decode(&m, "iot/sensors//x", r#"{"value":1}"#).is_err());
}

#[test]
fn configurable_field_names_and_extra_labels() {
    let m = PayloadMapping::from_config(&PayloadConfig {
        value_field: "v".into(),
        metric_field: "m".into(),
        timestamp_field: "ts".into(),
        device_field: "id".into(),
        device_label: "device".into(),
        ..PayloadConfig::default()
    })
    .unwrap();
    let (labels, s) = decode(
        &m,
        "t",
        r#"{"id":42,"m":"co2","ts":1700000000000,"v":true,"room":"r1","floor":3,"ok":false,
            "nested":{"a":[1,2]},"list":[1],"none":null}"#,
    )
    .unwrap();
    assert_eq!(
        labels,
        Labels::from_metric(
            "co2",
            &[
                ("device", "42"),
                ("floor", "3"),
                ("ok", "false"),
                ("room", "r1")
            ]
        )
    );
    assert_eq!(s, Sample::new(1_700_000_000_000, 1.0));

    let off = PayloadMapping::from_config(&PayloadConfig {
        extra_fields_as_labels: false,
        ..PayloadConfig::default()
    })
    .unwrap();
    let (labels, _) = decode(
        &off,
        "t",
        r#"{"metric_name":"a","value":1,"room":"r1","bad-name":1}"#,
    )
    .unwrap();
    assert_eq!(labels, Labels::from_metric("a", &[]));
}

#[test]
fn every_kind_of_bad_payload_is_an_error() {
    let m = default().with_max_payload_bytes(256);
    let cases: &[(&str, &str)] = &[
        ("", "empty"),
        ("not json", "garbage"),
        ("[1,2,3]", "array"),
        ("42", "number"),
        ("{\"metric_name\":\"t\",\"value\":1", "truncated"),
        ("{\"metric_name\":\"t\"}", "no value"),
        ("{\"metric_name\":\"t\",\"value\":null}", "null value"),
        ("{\"metric_name\":\"t\",\"value\":\"abc\"}", "text value"),
        (
            "{\"metric_name\":\"t\",\"value\":{\"x\":1}}",
            "object value",
        ),
        ("{\"value\":1}", "no metric"),
        ("{\"metric_name\":\"\",\"value\":1}", "empty metric"),
        ("{\"metric_name\":7,\"value\":1}", "numeric metric"),
        (
            "{\"metric_name\":\"t\",\"value\":1,\"timestamp\":\"yesterday\"}",
            "bad time",
        ),
        (
            "{\"metric_name\":\"t\",\"value\":1,\"timestamp\":1e300}",
            "huge time",
        ),
        (
            "{\"metric_name\":\"t\",\"value\":1,\"timestamp\":true}",
            "bool time",
        ),
        (
            "{\"metric_name\":\"t\",\"value\":1,\"device_id\":[1]}",
            "list device",
        ),
        (
            "{\"metric_name\":\"t\",\"value\":1,\"bad-label\":\"x\"}",
            "label name",
        ),
        (
            "{\"metric_name\":\"t\",\"value\":1,\"__name__\":\"x\"}",
            "reserved label",
        ),
        (
            "{\"metric_name\":\"t\",\"value\":1e999}",
            "overflowing number",
        ),
    ];
    for (p, what) in cases {
        assert!(decode(&m, "iot/sensors/x", p).is_err(), "{what}: {p}");
    }
    let big = format!(
        "{{\"metric_name\":\"t\",\"value\":1,\"pad\":\"{}\"}}",
        "x".repeat(300)
    );
    assert!(matches!(
        decode(&m, "t", &big),
        Err(PayloadError::TooLarge { .. })
    ));
    assert!(m.decode("t", &[0xff, 0xfe, b'{'], NOW).is_err());
    let deep = format!(
        "{{\"metric_name\":\"t\",\"value\":1,\"d\":{}}}",
        "[".repeat(200)
    );
    assert!(default().decode("t", deep.as_bytes(), NOW).is_err());
}

#[test]
fn escaped_strings_and_duplicates() {
    let (labels, s) = decode(
        &default(),
        "t",
        r#"{"metric_name":"te\u006dp","value":1,"value":2,"device_id":"a\"b"}"#,
    )
    .unwrap();
    assert_eq!(
        labels,
        Labels::from_metric("temp", &[("device_id", "a\"b")])
    );
    assert_eq!(s.v, 2.0);
}

#[test]
fn truncate_respects_char_boundaries() {
    assert_eq!(truncate("abc", 5), "abc");
    assert_eq!(truncate("ééé", 3), "é…");
    assert_eq!(truncate("abcdef", 2), "ab…");
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512),
                                   topic in "[a-z/]{0,20}") {
        let _ = default().decode(&topic, &bytes, NOW);
        let by_topic = PayloadMapping::from_config(&PayloadConfig {
            metric_topic_level: Some(1),
            device_topic_level: Some(0),
            timestamp_unit: "ns".into(),
            ..PayloadConfig::default()
        }).unwrap();
        let _ = by_topic.decode(&topic, &bytes, NOW);
    }

    #[test]
    fn json_shaped_noise_never_panics(
        fields in proptest::collection::vec(
            ("(value|metric_name|timestamp|device_id|[a-z_-]{1,6})",
             prop_oneof![
                 any::<i64>().prop_map(|v| v.to_string()),
                 any::<f64>().prop_map(|v| format!("{v:?}")),
                 "[ -~]{0,12}".prop_map(|s| serde_json::to_string(&s).unwrap()),
                 Just("null".to_string()), Just("true".to_string()), Just("[{}]".to_string()),
             ]),
            0..8)
    ) {
        let body = format!("{{{}}}", fields.iter()
            .map(|(k, v)| format!("\"{k}\":{v}"))
            .collect::<Vec<_>>().join(","));
        if let Ok((labels, _)) = default().decode("iot/sensors/x", body.as_bytes(), NOW) {
            prop_assert!(labels.metric_name().is_some());
        }
    }

    #[test]
    fn valid_readings_round_trip_exactly(
        device in "[a-zA-Z0-9_.:-]{1,16}",
        metric in "[a-zA-Z_][a-zA-Z0-9_]{0,16}",
        t_ms in 100_000_000_000i64..4_000_000_000_000,
        v in any::<f64>().prop_filter("JSON has no NaN or infinities", |v| v.is_finite()),
        as_seconds in any::<bool>(),
    ) {
        let ts = if as_seconds {
            serde_json::json!((t_ms / 1000) as f64 + (t_ms % 1000) as f64 / 1000.0)
        } else {
            serde_json::json!(t_ms)
        };
        let body = serde_json::json!({
            "device_id": device, "metric_name": metric, "timestamp": ts, "value": v,
        }).to_string();
        let (labels, s) = default().decode("iot/sensors/x", body.as_bytes(), NOW).unwrap();
        prop_assert_eq!(labels, Labels::from_metric(&metric, &[("device_id", device.as_str())]));
        prop_assert_eq!(s.v.to_bits(), v.to_bits());
        prop_assert_eq!(s.t, t_ms);
    }

    /// A stream of messages decoded through one (small, so often emptied) cache gives every
    /// message exactly what decoding it alone gives, errors included: a cached label set
    /// never leaks into a message of another series.
    #[test]
    fn decoding_through_a_cache_changes_nothing(
        messages in proptest::collection::vec(
            ("[ab]{1,2}", prop_oneof![Just(None), "[xy]{0,2}".prop_map(Some)],
             proptest::collection::vec(("(room|floor|bad-name|_x|value|device)", "[pq1]{0,2}"), 0..3),
             -5i64..5),
            1..40),
        extras in any::<bool>(),
        entries in 0usize..4,
    ) {
        let m = PayloadMapping::from_config(&PayloadConfig {
            extra_fields_as_labels: extras,
            ..PayloadConfig::default()
        }).unwrap();
        let mut cache = SeriesCache::new(entries);
        for (metric, device, fields, v) in messages {
            let mut body = serde_json::Map::new();
            body.insert("metric_name".into(), metric.into());
            if let Some(d) = device {
                body.insert("device_id".into(), d.into());
            }
            for (k, x) in fields {
                body.insert(k, x.into());
            }
            body.insert("value".into(), v.into());
            let bytes = serde_json::Value::Object(body).to_string();
            let alone = m.decode("iot/sensors/x", bytes.as_bytes(), NOW);
            let cached = m.decode_cached("iot/sensors/x", bytes.as_bytes(), NOW, &mut cache);
            prop_assert_eq!(alone, cached);
        }
    }

    #[test]
    fn rfc3339_and_epoch_agree(t_ms in 0i64..4_000_000_000_000) {
        let dt = chrono::DateTime::from_timestamp_millis(t_ms).unwrap();
        let rfc = dt.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let a = format!(r#"{{"metric_name":"m","value":1,"timestamp":"{rfc}"}}"#);
        let b = format!(r#"{{"metric_name":"m","value":1,"timestamp":{t_ms}}}"#);
        let ta = default().decode("t", a.as_bytes(), NOW).unwrap().1.t;
        prop_assert_eq!(ta, t_ms);
        if t_ms >= 100_000_000_000 {
            prop_assert_eq!(default().decode("t", b.as_bytes(), NOW).unwrap().1.t, t_ms);
        }
    }
}
