use proptest::prelude::*;

use super::proto;
use super::*;
use crate::storage::Label;

/// Prometheus' staleness marker: a NaN with a specific payload that must survive bit for bit.
const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

fn series(name: &str, pairs: &[(&str, &str)], samples: &[(i64, f64)]) -> (Labels, Vec<Sample>) {
    (
        Labels::from_metric(name, pairs),
        samples.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
    )
}

fn raw_body(request: &proto::WriteRequest) -> Vec<u8> {
    compress(&prost::Message::encode_to_vec(request)).unwrap()
}

#[test]
fn round_trip_keeps_staleness_nan_bits() {
    let input = vec![
        series(
            "up",
            &[("job", "node"), ("instance", "a:9100")],
            &[(1, 1.0), (2, f64::from_bits(STALE_NAN)), (3, 0.0)],
        ),
        series("temp", &[], &[(-5, f64::INFINITY)]),
    ];
    let body = encode(&input).unwrap();
    let got = decode(&body, &RemoteWriteLimits::default()).unwrap();
    assert_eq!(got.series, input);
    assert_eq!(got.series[0].1[1].v.to_bits(), STALE_NAN);
    assert_eq!(got.sample_count(), 4);
    let pairs = got.clone().into_pairs();
    assert_eq!(pairs.len(), 4);
    assert_eq!(pairs[3].0.metric_name(), Some("temp"));
    let chunks: Vec<_> = got.chunks(3).collect();
    assert_eq!(chunks.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 1]);
    assert_eq!(chunks.concat(), pairs);
}

#[test]
fn unsorted_labels_come_out_sorted() {
    let label = |n: &str, v: &str| proto::Label {
        name: n.into(),
        value: v.into(),
    };
    let request = proto::WriteRequest {
        timeseries: vec![
            proto::TimeSeries {
                labels: vec![
                    label("zone", "b"),
                    label("__name__", "m"),
                    label("app", "x"),
                    label("empty", ""),
                ],
                samples: vec![proto::Sample {
                    value: 1.0,
                    timestamp: 10,
                }],
            },
            // No samples: left out.
            proto::TimeSeries {
                labels: vec![label("__name__", "idle")],
                samples: vec![],
            },
        ],
        metadata: vec![proto::MetricMetadata {
            r#type: 2,
            metric_family_name: "m".into(),
            help: "help".into(),
            unit: String::new(),
        }],
    };
    let got = decode(&raw_body(&request), &RemoteWriteLimits::default()).unwrap();
    assert_eq!(got.series.len(), 1);
    let names: Vec<&str> = got.series[0].0.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, vec!["__name__", "app", "zone"]);
    assert_eq!(
        got.series[0].0,
        Labels::new(vec![
            Label::new("app", "x"),
            Label::new("__name__", "m"),
            Label::new("zone", "b")
        ])
    );
}

#[test]
fn corrupt_snappy_is_a_clear_error() {
    let mut body = encode(&[series("m", &[], &[(1, 1.0)])]).unwrap();
    // Not snappy at all: the length header claims more than the data can produce.
    let err = decode(b"\x40garbage", &RemoteWriteLimits::default()).unwrap_err();
    assert!(matches!(err, RemoteWriteError::Snappy(_)), "{err}");
    assert!(err.to_string().contains("snappy"), "{err}");
    // A valid stream cut short.
    body.truncate(body.len() - 3);
    let err = decode(&body, &RemoteWriteLimits::default()).unwrap_err();
    assert!(matches!(err, RemoteWriteError::Snappy(_)), "{err}");
    // Empty body.
    assert!(matches!(
        decode(b"", &RemoteWriteLimits::default()),
        Err(RemoteWriteError::Snappy(_))
    ));
}

#[test]
fn corrupt_protobuf_is_a_clear_error() {
    // Field 1, length-delimited, says 5 bytes but 2 follow.
    let body = compress(b"\x0a\x05ab").unwrap();
    let err = decode(&body, &RemoteWriteLimits::default()).unwrap_err();
    assert!(matches!(err, RemoteWriteError::Protobuf(_)), "{err}");
    assert!(err.to_string().contains("WriteRequest"), "{err}");
    // Invalid wire type.
    let body = compress(&[0x0f, 0xff, 0xff]).unwrap();
    assert!(matches!(
        decode(&body, &RemoteWriteLimits::default()),
        Err(RemoteWriteError::Protobuf(_))
    ));
}

#[test]
fn oversized_bodies_are_refused_before_work() {
    let limits = RemoteWriteLimits {
        max_body: 1000,
        max_decompressed: 2000,
    };
    let err = decode(&[0u8; 1001], &limits).unwrap_err();
    assert!(
        matches!(
            err,
            RemoteWriteError::BodyTooLarge {
                len: 1001,
                max: 1000
            }
        ),
        "{err}"
    );

    // Compresses well under the body cap but expands past the decompressed cap.
    let body = compress(&[0u8; 5000]).unwrap();
    assert!(body.len() <= 1000);
    let err = decode(&body, &limits).unwrap_err();
    assert!(
        matches!(
            err,
            RemoteWriteError::DecompressedTooLarge {
                len: 5000,
                max: 2000
            }
        ),
        "{err}"
    );

    // A header announcing 4 GiB with no data behind it: refused on the header alone.
    let err = decode(
        &[0xff, 0xff, 0xff, 0xff, 0x0f],
        &RemoteWriteLimits::default(),
    )
    .unwrap_err();
    assert!(
        matches!(err, RemoteWriteError::DecompressedTooLarge { .. }),
        "{err}"
    );
}

/// Any value but -0.0, which proto3 cannot carry (see [`encode`]).
fn value(bits: u64) -> f64 {
    let v = f64::from_bits(bits);
    if v == 0.0 {
        0.0
    } else {
        v
    }
}

fn label_set() -> impl Strategy<Value = Labels> {
    (
        "[a-z_:][a-z0-9_:]{0,6}",
        prop::collection::vec(("[a-z_][a-z0-9_]{0,6}", "\\PC{0,6}"), 0..5),
    )
        .prop_map(|(name, pairs)| {
            let mut v = vec![Label::new(crate::storage::METRIC_NAME_LABEL, name)];
            v.extend(pairs.into_iter().map(|(n, val)| Label::new(n, val)));
            Labels::new(v)
        })
}

/// Protobuf by hand: a field's key.
fn pb_key(field: u32, wire: u8) -> Vec<u8> {
    pb_varint(u64::from(field << 3 | u32::from(wire)))
}

fn pb_varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let b = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

/// A length-delimited field.
fn pb_len(field: u32, body: &[u8]) -> Vec<u8> {
    [
        pb_key(field, 2),
        pb_varint(body.len() as u64),
        body.to_vec(),
    ]
    .concat()
}

/// Edge cases of the wire format the in-place reader must treat exactly as prost does, each
/// decoded twice through one cache (the second time its labels come from the cache).
#[test]
fn walk_agrees_with_prost_on_wire_format_edge_cases() {
    let label = |n: &[u8], v: &[u8]| pb_len(1, &[pb_len(1, n), pb_len(2, v)].concat());
    let sample = [
        pb_key(1, 1),
        1.5f64.to_le_bytes().to_vec(),
        pb_key(2, 0),
        pb_varint(7),
    ]
    .concat();
    let series = |parts: &[Vec<u8>]| pb_len(1, &parts.concat());
    let good_label = label(b"__name__", b"up");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("plain", series(&[good_label.clone(), pb_len(2, &sample)])),
        (
            "samples before labels",
            series(&[pb_len(2, &sample), good_label.clone()]),
        ),
        ("no samples", series(std::slice::from_ref(&good_label))),
        (
            "no samples, bad UTF-8",
            series(&[label(b"__name__", b"\xff")]),
        ),
        (
            "bad UTF-8 name",
            series(&[label(b"\xc3", b"x"), pb_len(2, &sample)]),
        ),
        (
            "repeated value: last wins",
            series(&[
                good_label.clone(),
                pb_len(
                    2,
                    &[sample.clone(), pb_key(1, 1), 2.5f64.to_le_bytes().to_vec()].concat(),
                ),
            ]),
        ),
        (
            "repeated label name",
            series(&[
                pb_len(
                    1,
                    &[pb_len(1, b"a"), pb_len(1, b"b"), pb_len(2, b"v")].concat(),
                ),
                pb_len(2, &sample),
            ]),
        ),
        (
            "empty value dropped",
            series(&[good_label.clone(), label(b"job", b""), pb_len(2, &sample)]),
        ),
        (
            "negative timestamp",
            series(&[
                good_label.clone(),
                pb_len(2, &[pb_key(2, 0), pb_varint(-5i64 as u64)].concat()),
            ]),
        ),
        (
            "value as varint",
            series(&[
                good_label.clone(),
                pb_len(2, &[pb_key(1, 0), pb_varint(3)].concat()),
            ]),
        ),
        (
            "timestamp as fixed64",
            series(&[
                good_label.clone(),
                pb_len(2, &[pb_key(2, 1), vec![0; 8]].concat()),
            ]),
        ),
        (
            "label as varint",
            series(&[[pb_key(1, 0), pb_varint(1)].concat(), pb_len(2, &sample)]),
        ),
        (
            "samples as fixed32",
            series(&[good_label.clone(), [pb_key(2, 5), vec![0; 4]].concat()]),
        ),
        (
            "label name as fixed64",
            series(&[
                pb_len(1, &[pb_key(1, 1), vec![0; 8]].concat()),
                pb_len(2, &sample),
            ]),
        ),
        (
            "timeseries as varint",
            [pb_key(1, 0), pb_varint(9)].concat(),
        ),
        (
            "unknown fields everywhere",
            [
                pb_len(9, b"zz"),
                [pb_key(7, 0), pb_varint(300)].concat(),
                [pb_key(8, 5), vec![1, 2, 3, 4]].concat(),
                series(&[
                    [pb_key(6, 1), vec![0; 8]].concat(),
                    good_label.clone(),
                    pb_len(3, b"exemplar"),
                    pb_len(2, &[sample.clone(), pb_len(9, b"x")].concat()),
                ]),
            ]
            .concat(),
        ),
        (
            "group in a series",
            series(&[
                pb_key(5, 3),
                pb_key(5, 4),
                good_label.clone(),
                pb_len(2, &sample),
            ]),
        ),
        (
            "truncated fixed64",
            series(&[
                good_label.clone(),
                pb_len(2, &[pb_key(1, 1), vec![0; 5]].concat()),
            ]),
        ),
        (
            "length past the end",
            [pb_key(1, 2), pb_varint(50), good_label.clone()].concat(),
        ),
        (
            "eleven-byte varint",
            [pb_key(7, 0), vec![0xFF; 10], vec![1]].concat(),
        ),
        (
            "tenth varint byte too big",
            [pb_key(7, 0), vec![0xFF; 9], vec![2]].concat(),
        ),
        ("field zero", [pb_key(0, 0), pb_varint(1)].concat()),
        ("wire type 6", vec![0x0E, 0]),
        (
            "metadata",
            [
                series(&[good_label.clone(), pb_len(2, &sample)]),
                pb_len(
                    3,
                    &[
                        pb_key(1, 0),
                        pb_varint(1),
                        pb_len(2, b"up"),
                        pb_len(4, b"help"),
                    ]
                    .concat(),
                ),
            ]
            .concat(),
        ),
        (
            "bad metadata",
            pb_len(3, &[pb_key(2, 0), pb_varint(1)].concat()),
        ),
    ];
    let limits = RemoteWriteLimits::default();
    for (name, raw) in cases {
        let body = compress(&raw).unwrap();
        let want = decode(&body, &limits).map_err(|e| e.to_string());
        let cache = crate::ingest::label_cache::LabelCache::shared(8);
        for round in 0..2 {
            let got = decode_cached(&body, &limits, &cache).map_err(|e| e.to_string());
            assert_eq!(got, want, "{name}, round {round}");
        }
    }
}

proptest! {
    #[test]
    fn encode_decode_round_trip(
        input in prop::collection::vec(
            (label_set(), prop::collection::vec((any::<i64>(), any::<u64>()), 1..10)),
            0..10,
        )
    ) {
        let input: Vec<(Labels, Vec<Sample>)> = input
            .into_iter()
            .map(|(l, s)| (l, s.into_iter().map(|(t, bits)| Sample::new(t, value(bits))).collect()))
            .collect();
        let body = encode(&input).unwrap();
        let got = decode(&body, &RemoteWriteLimits::default()).unwrap();
        prop_assert_eq!(got.series, input);
    }

    /// The in-place reader with its cache gives what prost gives, errors included: on
    /// requests as Prometheus encodes them (series repeating across requests, so later ones
    /// come from the small, often emptied cache) and on the same bytes damaged.
    #[test]
    fn walk_agrees_with_prost(
        requests in prop::collection::vec(
            prop::collection::vec(
                (label_set(), prop::collection::vec((any::<i64>(), any::<u64>()), 0..3)),
                0..5),
            1..4),
        damage in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 0..4),
        entries in 0usize..4,
    ) {
        let cache = parking_lot::Mutex::new(crate::ingest::label_cache::LabelCache::new(entries));
        let limits = RemoteWriteLimits::default();
        for (k, series) in requests.iter().enumerate() {
            let series: Vec<(Labels, Vec<Sample>)> = series
                .iter()
                .map(|(l, s)| (l.clone(), s.iter().map(|&(t, bits)| Sample::new(t, f64::from_bits(bits))).collect()))
                .collect();
            let mut request = codec::write_request(&series);
            if k % 2 == 0 {
                request.metadata.push(proto::MetricMetadata {
                    r#type: 1,
                    metric_family_name: "m".into(),
                    help: "h".into(),
                    ..Default::default()
                });
            }
            let mut raw = prost::Message::encode_to_vec(&request);
            for (at, byte, how) in damage.iter().filter(|_| k + 1 == requests.len()) {
                if raw.is_empty() {
                    break;
                }
                let at = at.index(raw.len());
                match how {
                    0 => raw[at] = *byte,
                    1 => raw.insert(at, *byte),
                    _ => {
                        raw.remove(at);
                    }
                }
            }
            let body = compress(&raw).unwrap();
            let want = decode(&body, &limits).map_err(|e| e.to_string());
            let got = decode_cached(&body, &limits, &cache).map_err(|e| e.to_string());
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let limits = RemoteWriteLimits { max_body: 1 << 20, max_decompressed: 1 << 16 };
        let _ = decode(&bytes, &limits);
        // Valid snappy around arbitrary protobuf, so that the protobuf decoder is reached.
        let _ = decode(&compress(&bytes).unwrap(), &limits);
    }
}

#[test]
fn series_chunks_split_long_series_and_keep_order() {
    let l = |n: &str| Labels::from_metric(n, &[]);
    let s = |t: i64| Sample::new(t, t as f64);
    let w = DecodedWrite {
        series: vec![
            (l("a"), vec![s(1), s(2), s(3)]),
            (l("b"), vec![]),
            (l("c"), vec![s(4)]),
        ],
        metadata: Vec::new(),
    };
    let chunks = w.clone().into_series_chunks(2);
    assert_eq!(
        chunks,
        vec![
            vec![(l("a"), vec![s(1), s(2)])],
            vec![(l("a"), vec![s(3)]), (l("c"), vec![s(4)])],
        ]
    );
    let flat: Vec<_> = w
        .clone()
        .into_series_chunks(100)
        .into_iter()
        .flatten()
        .collect();
    assert_eq!(flat.len(), 2);
    assert_eq!(w.into_series_chunks(0).len(), 4);
}
