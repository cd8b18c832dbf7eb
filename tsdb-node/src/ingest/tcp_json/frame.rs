//! Parsing of one newline-delimited JSON frame into a [`Frame`]. Pure: no I/O, no engine.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::storage::{Label, Labels, Sample, METRIC_NAME_LABEL};

/// Longest piece of client input echoed back in an error message, in characters.
const MAX_ECHO_CHARS: usize = 64;

/// Earliest accepted timestamp: 0001-01-01T00:00:00Z, the start of RFC 3339's range.
pub const MIN_TIMESTAMP_MS: i64 = -62_135_596_800_000;
/// Latest accepted timestamp: 9999-12-31T23:59:59.999Z, the end of RFC 3339's range.
pub const MAX_TIMESTAMP_MS: i64 = 253_402_300_799_999;

/// One client frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `{"type":"auth","username":..,"password":..}`
    Auth {
        /// The login name.
        username: String,
        /// The password, redacted from `Debug`.
        password: Password,
    },
    /// `{"type":"data","metric":..,"timestamp":..,"value":..,"tags":{..}}`
    Data(DataPoint),
    /// `{"type":"close"}`
    Close,
}

/// A data frame converted to the storage model: series `metric{tags...}` and one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct DataPoint {
    /// `__name__` = metric, plus the tags (empty tag values dropped, as in Prometheus).
    pub labels: Labels,
    /// Timestamp in milliseconds since the epoch, and the value.
    pub sample: Sample,
}

/// A password from the wire. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// The password itself, for verification only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Consumes the wrapper, for handing the password to a verification task.
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// Why a line is not a valid frame. The `Display` text is what the client receives.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Not JSON, not an object, or a field of the wrong JSON type.
    #[error("invalid JSON frame: {0}")]
    Json(String),
    /// A field the frame type requires is absent or null.
    #[error("missing field \"{0}\"")]
    MissingField(&'static str),
    /// The metric name is the empty string.
    #[error("field \"metric\" must not be empty")]
    EmptyMetric,
    /// `type` is none of the known frame types.
    #[error("unknown frame type {0:?}: expected \"auth\", \"data\" or \"close\"")]
    UnknownType(String),
    /// A timestamp string that is not RFC 3339.
    #[error("invalid timestamp {0:?}: expected RFC 3339 such as \"2025-06-25T14:12:03Z\", or integer milliseconds since the epoch")]
    InvalidTimestamp(String),
    /// A timestamp before year 1 or after year 9999.
    #[error("timestamp {0} ms is outside the supported range (years 0001 to 9999)")]
    TimestampOutOfRange(i64),
    /// A value string other than the special floats.
    #[error("invalid value {0:?}: expected a number, or one of \"NaN\", \"+Inf\", \"-Inf\"")]
    InvalidValue(String),
    /// A tag would replace the metric name.
    #[error("tag name \"__name__\" is reserved: the metric name is given by \"metric\"")]
    ReservedTag,
    /// The line exceeded the frame size limit; it was discarded unread.
    #[error("frame too large: longer than {limit} bytes; discarded")]
    TooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
}

impl Frame {
    /// Parses one line (without its newline). Never panics, whatever the bytes.
    pub fn parse(line: &[u8]) -> Result<Frame, FrameError> {
        let mut raw: RawFrame<'_> =
            serde_json::from_slice(line).map_err(|e| FrameError::Json(e.to_string()))?;
        let kind = raw.kind.take().ok_or(FrameError::MissingField("type"))?;
        match kind.as_ref() {
            "auth" => Ok(Frame::Auth {
                username: raw
                    .username
                    .ok_or(FrameError::MissingField("username"))?
                    .into_owned(),
                password: Password(
                    raw.password
                        .ok_or(FrameError::MissingField("password"))?
                        .into_owned(),
                ),
            }),
            "data" => Ok(Frame::Data(data_point(raw)?)),
            "close" => Ok(Frame::Close),
            other => Err(FrameError::UnknownType(truncate(other))),
        }
    }
}

fn data_point(raw: RawFrame<'_>) -> Result<DataPoint, FrameError> {
    let metric = raw.metric.ok_or(FrameError::MissingField("metric"))?;
    if metric.is_empty() {
        return Err(FrameError::EmptyMetric);
    }
    let t = match raw.timestamp.ok_or(FrameError::MissingField("timestamp"))? {
        RawTimestamp::Millis(ms) => ms,
        RawTimestamp::Text(s) => chrono::DateTime::parse_from_rfc3339(&s)
            .map_err(|_| FrameError::InvalidTimestamp(truncate(&s)))?
            .timestamp_millis(),
    };
    if !(MIN_TIMESTAMP_MS..=MAX_TIMESTAMP_MS).contains(&t) {
        return Err(FrameError::TimestampOutOfRange(t));
    }
    let v = match raw.value.ok_or(FrameError::MissingField("value"))? {
        RawValue::Number(v) => v,
        RawValue::Text(s) => match s.as_ref() {
            "NaN" => f64::NAN,
            "+Inf" | "Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            other => return Err(FrameError::InvalidValue(truncate(other))),
        },
    };
    let tags = raw.tags.map(|t| t.0).unwrap_or_default();
    let mut labels = Vec::with_capacity(tags.len() + 1);
    labels.push(Label::new(METRIC_NAME_LABEL, metric.into_owned()));
    for (name, value) in tags {
        if name == METRIC_NAME_LABEL {
            return Err(FrameError::ReservedTag);
        }
        labels.push(Label::new(name, value));
    }
    Ok(DataPoint {
        labels: Labels::new(labels),
        sample: Sample::new(t, v),
    })
}

/// The first [`MAX_ECHO_CHARS`] characters of client input, for error messages.
fn truncate(s: &str) -> String {
    match s.char_indices().nth(MAX_ECHO_CHARS) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// Every field of every frame type, all optional, so that the frame type decides which are
/// required and the error names the missing one. Strings borrow from the line when they
/// contain no escapes. Unknown fields are ignored, for forward compatibility.
#[derive(Deserialize)]
struct RawFrame<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    username: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    password: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    metric: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    timestamp: Option<RawTimestamp<'a>>,
    #[serde(borrow, default)]
    value: Option<RawValue<'a>>,
    #[serde(default)]
    tags: Option<Tags>,
}

enum RawTimestamp<'a> {
    Millis(i64),
    Text(Cow<'a, str>),
}

impl<'de: 'a, 'a> Deserialize<'de> for RawTimestamp<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawTimestamp<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 string or integer milliseconds since the epoch")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(RawTimestamp::Millis(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                // Out-of-range values still reach the range check, which names them.
                Ok(RawTimestamp::Millis(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(RawTimestamp::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawTimestamp::Text(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_any(V)
    }
}

enum RawValue<'a> {
    Number(f64),
    Text(Cow<'a, str>),
}

impl<'de: 'a, 'a> Deserialize<'de> for RawValue<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawValue<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number, or one of \"NaN\", \"+Inf\", \"-Inf\"")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(RawValue::Number(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(RawValue::Number(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(RawValue::Number(v as f64))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(RawValue::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawValue::Text(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_any(V)
    }
}

/// The `tags` object: string values only, in input order (later duplicates win when the
/// label set is built).
struct Tags(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Tags {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Tags;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of string tag values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tags, A::Error> {
                // The frame is capped in size, so the number of tags is bounded too; the
                // engine enforces the per-series label limit.
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<Cow<'de, str>, Cow<'de, str>>()? {
                    out.push((k.into_owned(), v.into_owned()));
                }
                Ok(Tags(out))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn data(line: &str) -> DataPoint {
        match Frame::parse(line.as_bytes()) {
            Ok(Frame::Data(d)) => d,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn parses_the_seed_frames() {
        let auth =
            Frame::parse(br#"{"type":"auth","username":"user1","password":"secret"}"#).unwrap();
        match auth {
            Frame::Auth { username, password } => {
                assert_eq!(username, "user1");
                assert_eq!(password.expose(), "secret");
            }
            other => panic!("{other:?}"),
        }
        let d = data(
            r#"{"type":"data","metric":"temperature","timestamp":"2025-06-25T14:12:03Z","value":23.7,"tags":{"location":"room-1","unit":"C"}}"#,
        );
        assert_eq!(
            d.labels,
            Labels::from_metric("temperature", &[("location", "room-1"), ("unit", "C")])
        );
        assert_eq!(d.sample, Sample::new(1_750_860_723_000, 23.7));
        assert_eq!(Frame::parse(br#"{"type":"close"}"#).unwrap(), Frame::Close);
    }

    #[test]
    fn timestamps() {
        let at = |ts: &str| {
            data(&format!(
                r#"{{"type":"data","metric":"m","timestamp":{ts},"value":1}}"#
            ))
            .sample
            .t
        };
        assert_eq!(at(r#""2025-06-25T14:12:03.123+02:00""#), 1_750_853_523_123);
        assert_eq!(at(r#""2025-06-25T14:12:03.1239Z""#), 1_750_860_723_123);
        assert_eq!(at("1750860723000"), 1_750_860_723_000);
        assert_eq!(at("-1000"), -1000);
        let err = |ts: &str| {
            Frame::parse(
                format!(r#"{{"type":"data","metric":"m","timestamp":{ts},"value":1}}"#).as_bytes(),
            )
            .unwrap_err()
        };
        assert!(matches!(
            err(r#""yesterday""#),
            FrameError::InvalidTimestamp(_)
        ));
        assert!(matches!(
            err(r#""2025-06-25""#),
            FrameError::InvalidTimestamp(_)
        ));
        assert!(matches!(err("99999999999999999999"), FrameError::Json(_)));
        assert!(matches!(
            err("18446744073709551615"),
            FrameError::TimestampOutOfRange(_)
        ));
        assert!(matches!(err("1.5"), FrameError::Json(_)));
        assert!(matches!(err("true"), FrameError::Json(_)));
    }

    #[test]
    fn values() {
        let v = |val: &str| {
            data(&format!(
                r#"{{"type":"data","metric":"m","timestamp":0,"value":{val}}}"#
            ))
            .sample
            .v
        };
        assert_eq!(v("42"), 42.0);
        assert_eq!(v("-1.5e3"), -1500.0);
        assert!(v(r#""NaN""#).is_nan());
        assert_eq!(v(r#""+Inf""#), f64::INFINITY);
        assert_eq!(v(r#""-Inf""#), f64::NEG_INFINITY);
        let e = Frame::parse(br#"{"type":"data","metric":"m","timestamp":0,"value":"x"}"#);
        assert!(matches!(e, Err(FrameError::InvalidValue(_))));
        let e = Frame::parse(br#"{"type":"data","metric":"m","timestamp":0,"value":null}"#);
        assert_eq!(e, Err(FrameError::MissingField("value")));
    }

    #[test]
    fn errors_name_the_problem() {
        let e = |s: &str| Frame::parse(s.as_bytes()).unwrap_err().to_string();
        assert!(e("{not json").starts_with("invalid JSON frame"));
        assert!(e("[1,2]").starts_with("invalid JSON frame"));
        assert_eq!(e(r#"{"username":"u"}"#), "missing field \"type\"");
        assert_eq!(
            e(r#"{"type":"auth","username":"u"}"#),
            "missing field \"password\""
        );
        assert_eq!(
            e(r#"{"type":"data","timestamp":0,"value":1}"#),
            "missing field \"metric\""
        );
        assert_eq!(
            e(r#"{"type":"data","metric":"m","value":1}"#),
            "missing field \"timestamp\""
        );
        assert!(e(r#"{"type":"ping"}"#).contains("unknown frame type \"ping\""));
        assert!(e(r#"{"type":"data","metric":"","timestamp":0,"value":1}"#).contains("empty"));
        assert!(
            e(r#"{"type":"data","metric":"m","timestamp":0,"value":1,"tags":{"a":1}}"#)
                .starts_with("invalid JSON frame")
        );
        assert!(e(
            r#"{"type":"data","metric":"m","timestamp":0,"value":1,"tags":{"__name__":"x"}}"#
        )
        .contains("reserved"));
        let long = "x".repeat(10_000);
        let msg = e(&format!(r#"{{"type":"{long}"}}"#));
        assert!(msg.len() < 200, "{msg}");
    }

    #[test]
    fn escapes_and_unknown_fields() {
        let d = data(
            r#"{"type":"data","metric":"m","timestamp":0,"value":1,"extra":[1,{}],"tags":{"k":"a\"b\u00e9","e":""}}"#,
        );
        assert_eq!(d.labels, Labels::from_metric("m", &[("k", "a\"bé")]));
    }

    #[test]
    fn password_is_redacted() {
        let f = Frame::parse(br#"{"type":"auth","username":"u","password":"hunter2"}"#).unwrap();
        assert!(!format!("{f:?}").contains("hunter2"));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Frame::parse(&bytes);
        }

        #[test]
        fn json_like_input_never_panics(s in r#"\{("(type|metric|timestamp|value|tags|username|password)":("[a-z0-9:\-. T+Z]{0,30}"|-?[0-9]{1,22}(\.[0-9]+)?|null|\{("[a-z_]{0,5}":"[a-z]{0,3}",?){0,3}\}),?){0,7}\}"#) {
            let _ = Frame::parse(s.as_bytes());
        }

        #[test]
        fn data_round_trips(
            metric in "[a-z_][a-z0-9_]{0,20}",
            t in MIN_TIMESTAMP_MS..=MAX_TIMESTAMP_MS,
            v in any::<f64>().prop_filter("finite", |v| v.is_finite()),
            tags in proptest::collection::btree_map("[a-z][a-z0-9_]{0,8}", "[ -~]{1,12}", 0..5),
        ) {
            let line = serde_json::json!({
                "type": "data", "metric": metric, "timestamp": t, "value": v, "tags": tags,
            })
            .to_string();
            let d = data(&line);
            let pairs: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            prop_assert_eq!(d.labels, Labels::from_metric(&metric, &pairs));
            prop_assert_eq!(d.sample, Sample::new(t, v));
        }

        #[test]
        fn rfc3339_round_trips(t in MIN_TIMESTAMP_MS..=MAX_TIMESTAMP_MS) {
            let s = chrono::DateTime::from_timestamp_millis(t).unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let d = data(&format!(r#"{{"type":"data","metric":"m","timestamp":"{s}","value":0}}"#));
            prop_assert_eq!(d.sample.t, t);
        }
    }
}
