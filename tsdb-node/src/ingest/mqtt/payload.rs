//! Payload decoding: one MQTT message (topic + bytes) → one sample. Pure and synchronous, so
//! it is property-tested and fuzzed on its own.
//!
//! The default mapping is seed 001's `{"device_id", "metric_name", "timestamp", "value"}`;
//! field names, the metric or device from a topic level, the timestamp unit and extra fields
//! as labels are configurable ([`crate::config::PayloadConfig`]).
//!
//! The JSON object is read in one pass into borrowed scalars (nested values are skipped
//! without being built), because this runs once per message at broker speed.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::config::PayloadConfig;
use crate::ingest::label_cache::LabelCache;
use crate::storage::{Label, Labels, Sample, METRIC_NAME_LABEL};

/// Why a payload is not a sample. The message is counted invalid, acknowledged and dropped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PayloadError {
    #[error("payload of {len} bytes is larger than the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("not a JSON object: {0}")]
    Json(String),
    #[error("field `{0}` is missing")]
    Missing(String),
    #[error("field `{field}` {reason}")]
    BadField { field: String, reason: &'static str },
    #[error("topic `{topic}` has no level {level}")]
    TopicLevel { topic: String, level: usize },
    #[error("timestamp {0}")]
    BadTimestamp(String),
    #[error("field name `{0}` cannot be a label name")]
    BadLabelName(String),
}

/// How timestamps in payloads are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampUnit {
    /// Numbers by magnitude (seconds, milliseconds, microseconds or nanoseconds since the
    /// epoch, whichever puts them in years 1973–5138); strings as RFC 3339.
    Auto,
    Seconds,
    Millis,
    Micros,
    Nanos,
    Rfc3339,
}

impl TimestampUnit {
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auto" => TimestampUnit::Auto,
            "s" => TimestampUnit::Seconds,
            "ms" => TimestampUnit::Millis,
            "us" => TimestampUnit::Micros,
            "ns" => TimestampUnit::Nanos,
            "rfc3339" => TimestampUnit::Rfc3339,
            other => {
                return Err(format!(
                    "timestamp_unit {other:?}: expected auto, s, ms, us, ns or rfc3339"
                ))
            }
        })
    }
}

/// The label sets of the series a dispatcher has recently decoded (see [`LabelCache`]), keyed
/// by the series' labels in payload order, and the buffer that key is built in.
#[derive(Debug, Default)]
pub struct SeriesCache {
    key: Vec<u8>,
    labels: LabelCache,
}

impl SeriesCache {
    /// A cache of at most `max_entries` series; 0 keeps none.
    pub fn new(max_entries: usize) -> Self {
        SeriesCache {
            key: Vec::new(),
            labels: LabelCache::new(max_entries),
        }
    }
}

/// A validated [`PayloadConfig`], ready to decode messages.
#[derive(Clone, Debug)]
pub struct PayloadMapping {
    value_field: String,
    metric_field: String,
    timestamp_field: String,
    device_field: String,
    device_label: String,
    metric_topic_level: Option<usize>,
    device_topic_level: Option<usize>,
    unit: TimestampUnit,
    extra_labels: bool,
    max_payload_bytes: usize,
}

impl Default for PayloadMapping {
    fn default() -> Self {
        // The default configuration is valid by construction.
        match Self::from_config(&PayloadConfig::default()) {
            Ok(m) => m,
            Err(e) => unreachable!("default payload mapping is invalid: {e}"),
        }
    }
}

impl PayloadMapping {
    /// Largest payload accepted unless [`Self::with_max_payload_bytes`] says otherwise.
    pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 64 << 10;

    pub fn from_config(c: &PayloadConfig) -> Result<Self, String> {
        for (key, v) in [
            ("value_field", &c.value_field),
            ("metric_field", &c.metric_field),
            ("timestamp_field", &c.timestamp_field),
            ("device_field", &c.device_field),
        ] {
            if v.is_empty() {
                return Err(format!("{key} must not be empty"));
            }
        }
        if !is_label_name(&c.device_label) {
            return Err(format!(
                "device_label {:?} is not a valid label name",
                c.device_label
            ));
        }
        Ok(PayloadMapping {
            value_field: c.value_field.clone(),
            metric_field: c.metric_field.clone(),
            timestamp_field: c.timestamp_field.clone(),
            device_field: c.device_field.clone(),
            device_label: c.device_label.clone(),
            metric_topic_level: c.metric_topic_level,
            device_topic_level: c.device_topic_level,
            unit: TimestampUnit::parse(&c.timestamp_unit)?,
            extra_labels: c.extra_fields_as_labels,
            max_payload_bytes: Self::DEFAULT_MAX_PAYLOAD_BYTES,
        })
    }

    pub fn with_max_payload_bytes(mut self, max: usize) -> Self {
        self.max_payload_bytes = max;
        self
    }

    /// Decodes one message. `now_ms` stamps payloads that carry no timestamp.
    pub fn decode(
        &self,
        topic: &str,
        payload: &[u8],
        now_ms: i64,
    ) -> Result<(Labels, Sample), PayloadError> {
        self.decode_cached(topic, payload, now_ms, &mut SeriesCache::new(0))
    }

    /// [`decode`](Self::decode), taking the label set from `cache` when this message's series
    /// was seen before (and leaving it there when not).
    pub fn decode_cached(
        &self,
        topic: &str,
        payload: &[u8],
        now_ms: i64,
        cache: &mut SeriesCache,
    ) -> Result<(Labels, Sample), PayloadError> {
        if payload.len() > self.max_payload_bytes {
            return Err(PayloadError::TooLarge {
                len: payload.len(),
                max: self.max_payload_bytes,
            });
        }
        let object: Object<'_> =
            serde_json::from_slice(payload).map_err(|e| PayloadError::Json(e.to_string()))?;
        let field = |name: &str| object.get(name);

        let value = match field(&self.value_field) {
            None | Some(Scalar::Null) => {
                return Err(PayloadError::Missing(self.value_field.clone()))
            }
            Some(s) => s.as_f64().ok_or_else(|| PayloadError::BadField {
                field: self.value_field.clone(),
                reason: "is not a number",
            })?,
        };
        let t = match field(&self.timestamp_field) {
            None | Some(Scalar::Null) => now_ms,
            Some(s) => timestamp_ms(s, self.unit)?,
        };
        let metric: Cow<'_, str> = match self.metric_topic_level {
            Some(level) => Cow::Borrowed(topic_level(topic, level)?),
            None => match field(&self.metric_field) {
                Some(Scalar::Str(s)) if !s.is_empty() => Cow::Borrowed(s.as_ref()),
                None | Some(Scalar::Null) => {
                    return Err(PayloadError::Missing(self.metric_field.clone()))
                }
                Some(_) => {
                    return Err(PayloadError::BadField {
                        field: self.metric_field.clone(),
                        reason: "is not a non-empty string",
                    })
                }
            },
        };
        let device: Option<Cow<'_, str>> = match self.device_topic_level {
            Some(level) => Some(Cow::Borrowed(topic_level(topic, level)?)),
            None => match field(&self.device_field) {
                None | Some(Scalar::Null) => None,
                Some(s) => Some(s.as_label_value().ok_or_else(|| PayloadError::BadField {
                    field: self.device_field.clone(),
                    reason: "is not a string or number",
                })?),
            },
        };

        let device = device.as_deref();
        let key = &mut cache.key;
        key.clear();
        self.each_label(&metric, device, &object, |name, value| {
            key.extend_from_slice(name.as_bytes());
            key.push(0xFF);
            key.extend_from_slice(value.as_bytes());
            key.push(0xFF);
        })?;
        let labels = match cache.labels.get(&cache.key) {
            Some(labels) => labels,
            None => {
                let mut labels = Vec::with_capacity(2);
                self.each_label(&metric, device, &object, |name, value| {
                    labels.push(Label::new(name, value));
                })?;
                let labels = Labels::new(labels);
                cache.labels.insert(&cache.key, labels.clone());
                labels
            }
        };
        Ok((labels, Sample::new(t, value)))
    }

    /// Calls `f` with each label of the message's series: the metric name, the device, then
    /// the extra fields in payload order (when configured). Fails on an extra field whose
    /// name cannot be a label name.
    fn each_label(
        &self,
        metric: &str,
        device: Option<&str>,
        object: &Object<'_>,
        mut f: impl FnMut(&str, &str),
    ) -> Result<(), PayloadError> {
        f(METRIC_NAME_LABEL, metric);
        if let Some(d) = device {
            f(&self.device_label, d);
        }
        if self.extra_labels {
            for (name, v) in &object.0 {
                let name = name.as_ref();
                if self.is_mapped_field(name) || name == self.device_label {
                    continue;
                }
                let Some(v) = v.as_label_value() else {
                    continue;
                };
                if !is_label_name(name) {
                    return Err(PayloadError::BadLabelName(truncate(name, 64)));
                }
                f(name, &v);
            }
        }
        Ok(())
    }

    /// Fields the mapping reads are never extra labels, even when the metric or device came
    /// from the topic (the payload's copy is then redundant, not a label of its own).
    fn is_mapped_field(&self, name: &str) -> bool {
        name == self.value_field
            || name == self.timestamp_field
            || name == self.metric_field
            || name == self.device_field
    }
}

/// Prometheus label names: `[a-zA-Z_][a-zA-Z0-9_]*`, without the reserved `__` prefix.
fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with("__")
}

fn topic_level(topic: &str, level: usize) -> Result<&str, PayloadError> {
    match topic.split('/').nth(level) {
        Some(l) if !l.is_empty() => Ok(l),
        _ => Err(PayloadError::TopicLevel {
            topic: truncate(topic, 128),
            level,
        }),
    }
}

/// At most `max` bytes of `s`, cut at a character boundary, for error messages and logs.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Timestamps must land where storage can do arithmetic on them without overflow.
const MAX_ABS_MS: i64 = i64::MAX / 4;

fn timestamp_ms(s: &Scalar<'_>, unit: TimestampUnit) -> Result<i64, PayloadError> {
    let bad = |why: &str| PayloadError::BadTimestamp(why.to_string());
    let number = match s {
        Scalar::Int(i) => *i as f64,
        Scalar::UInt(u) => *u as f64,
        Scalar::Float(f) => *f,
        Scalar::Str(text) => {
            if unit == TimestampUnit::Rfc3339 || unit == TimestampUnit::Auto {
                if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(text.trim()) {
                    return Ok(dt.timestamp_millis());
                }
                if unit == TimestampUnit::Rfc3339 {
                    return Err(bad("is not RFC 3339"));
                }
            }
            text.trim()
                .parse::<f64>()
                .map_err(|_| bad("is neither RFC 3339 nor a number"))?
        }
        _ => return Err(bad("is not a number or a string")),
    };
    if unit == TimestampUnit::Rfc3339 {
        return Err(bad("is not RFC 3339"));
    }
    if !number.is_finite() {
        return Err(bad("is not finite"));
    }
    // Integers are exact below 2^53; above that (nanoseconds) an f64 still resolves well
    // under a millisecond, which is all a sample keeps.
    let exact_int = match s {
        Scalar::Int(i) => Some(i128::from(*i)),
        Scalar::UInt(u) => Some(i128::from(*u)),
        _ => None,
    };
    let per_ms: f64 = match unit {
        TimestampUnit::Seconds => 1e-3,
        TimestampUnit::Millis => 1.0,
        TimestampUnit::Micros => 1e3,
        TimestampUnit::Nanos => 1e6,
        TimestampUnit::Auto => {
            let a = number.abs();
            if a < 1e11 {
                1e-3
            } else if a < 1e14 {
                1.0
            } else if a < 1e17 {
                1e3
            } else {
                1e6
            }
        }
        TimestampUnit::Rfc3339 => return Err(bad("is not RFC 3339")),
    };
    // Checked in f64 first: a float far outside i64 would saturate the integer conversion.
    if (number / per_ms).abs() > MAX_ABS_MS as f64 {
        return Err(bad("is out of range"));
    }
    let ms = match exact_int {
        Some(i) if per_ms >= 1.0 => i / per_ms as i128,
        Some(i) => i * 1000,
        None => (number / per_ms).round() as i128,
    };
    i64::try_from(ms)
        .ok()
        .filter(|ms| ms.unsigned_abs() <= MAX_ABS_MS as u64)
        .ok_or_else(|| bad("is out of range"))
}

/// A JSON value as far as a sample cares: a scalar, or "something nested" (skipped).
#[derive(Debug, PartialEq)]
enum Scalar<'a> {
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(Cow<'a, str>),
    Bool(bool),
    Null,
    Nested,
}

impl<'a> Scalar<'a> {
    fn as_f64(&self) -> Option<f64> {
        match self {
            Scalar::Int(i) => Some(*i as f64),
            Scalar::UInt(u) => Some(*u as f64),
            Scalar::Float(f) => Some(*f),
            Scalar::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            Scalar::Str(s) => s.trim().parse().ok(),
            Scalar::Null | Scalar::Nested => None,
        }
    }

    fn as_label_value(&self) -> Option<Cow<'a, str>> {
        match self {
            Scalar::Str(s) => Some(s.clone()),
            Scalar::Int(i) => Some(Cow::Owned(i.to_string())),
            Scalar::UInt(u) => Some(Cow::Owned(u.to_string())),
            Scalar::Float(f) => Some(Cow::Owned(f.to_string())),
            Scalar::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            Scalar::Null | Scalar::Nested => None,
        }
    }
}

/// A JSON object's top-level fields in order; later duplicates win on lookup.
struct Object<'a>(Vec<(Cow<'a, str>, Scalar<'a>)>);

impl<'a> Object<'a> {
    fn get(&self, name: &str) -> Option<&Scalar<'a>> {
        self.0.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

/// Most fields read from one payload; the byte limit already bounds it, this bounds the
/// work per message further.
const MAX_FIELDS: usize = 256;

impl<'de> Deserialize<'de> for Object<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Object<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(4).min(16));
                while let Some(key) = map.next_key::<Text<'de>>()? {
                    if fields.len() == MAX_FIELDS {
                        return Err(de::Error::custom("too many fields"));
                    }
                    let value: Scalar<'de> = map.next_value()?;
                    fields.push((key.0, value));
                }
                Ok(Object(fields))
            }
        }
        d.deserialize_map(V)
    }
}

/// A string, borrowed from the payload when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar::UInt(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Nested)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Nested)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
#[path = "payload_tests.rs"]
mod tests;
