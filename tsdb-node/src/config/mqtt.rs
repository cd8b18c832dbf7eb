//! The `mqtt` section: which broker to subscribe to, how, and how payloads map to samples.

use std::path::PathBuf;

use serde::Deserialize;

use super::{invalid, ConfigError, HumanDuration};
use crate::ingest::mqtt::MqttProtocol;

/// MQTT ingest (DESIGN.md "Ingest contracts" 3). Disabled unless `broker` is set.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// `tcp://host:1883` (also `mqtt://`) or `ssl://host:8883` (also `mqtts://`); unset
    /// disables MQTT ingest.
    pub broker: Option<String>,
    /// Client id; defaults to the node id, prefixed `strata-` unless it already is. It must be stable across restarts, since the
    /// broker keeps the persistent session (and the unacknowledged messages) under it.
    pub client_id: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// PEM file with the CA certificates trusted for `ssl://` (default: the Mozilla roots).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for brokers that require mutual TLS.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    /// Topic filters to subscribe to.
    pub topics: Vec<String>,
    /// Subscription QoS: 0 (at most once) or 1 (acknowledged after the write is durable).
    pub qos: u8,
    /// When set, every filter is subscribed as `$share/<group>/<filter>`, so that the broker
    /// hands each message to one member of the group (one node of a cluster).
    pub shared_group: Option<String>,
    /// `auto` (default: MQTT 5, or 3.1.1 when the broker refuses 5), `5` or `3.1.1`.
    pub protocol: MqttProtocol,
    /// `false` (default) keeps a persistent session: messages published while the node is
    /// down, or delivered but not yet acknowledged, are delivered again when it reconnects.
    pub clean_session: bool,
    /// MQTT 5: how long the broker keeps the persistent session (and queues QoS 1 messages)
    /// while the node is disconnected. 3.1.1 sessions last as long as the broker allows.
    pub session_expiry: HumanDuration,
    pub keep_alive: HumanDuration,
    /// Largest MQTT packet accepted from the broker; a larger one breaks the connection, so
    /// keep it above `max_payload_bytes` (which only makes a message invalid).
    pub max_packet_bytes: usize,
    /// Payloads above this are counted invalid, acknowledged and dropped.
    pub max_payload_bytes: usize,
    /// Most messages stored by one write (one WAL commit).
    pub batch_max_messages: usize,
    /// How long a batch of QoS 0 messages waits for more before it is written (0 = never).
    /// QoS 0 has no acknowledgement to delay, and fuller batches mean fewer fsyncs and
    /// thread hand-offs per message. QoS 1 batches never wait: their acks would. While it is
    /// not zero, the subscriber also reads QoS 0 messages from the socket at most once per
    /// millisecond (or per linger, when shorter), so that they arrive in bulk.
    pub qos0_linger: HumanDuration,
    /// First and largest delay between reconnection attempts (doubling in between).
    pub reconnect_min: HumanDuration,
    pub reconnect_max: HumanDuration,
    /// Address for an embedded broker started by the node (`strata-node --dev` sets
    /// 127.0.0.1:1883 when no broker is configured).
    pub embedded_broker: Option<String>,
    /// How payloads become samples.
    pub payload: PayloadConfig,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            broker: None,
            client_id: None,
            username: None,
            password: None,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            topics: vec!["iot/sensors/+".into()],
            qos: 1,
            shared_group: None,
            protocol: MqttProtocol::Auto,
            clean_session: false,
            session_expiry: HumanDuration::from_secs(7 * 86_400),
            keep_alive: HumanDuration::from_secs(30),
            max_packet_bytes: 1 << 20,
            max_payload_bytes: 64 << 10,
            batch_max_messages: 8192,
            qos0_linger: HumanDuration(std::time::Duration::from_millis(5)),
            reconnect_min: HumanDuration(std::time::Duration::from_millis(100)),
            reconnect_max: HumanDuration::from_secs(30),
            embedded_broker: None,
            payload: PayloadConfig::default(),
        }
    }
}

/// Hand-written so that the password never reaches a log.
impl std::fmt::Debug for MqttConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttConfig")
            .field("broker", &self.broker)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .field("topics", &self.topics)
            .field("qos", &self.qos)
            .field("shared_group", &self.shared_group)
            .field("protocol", &self.protocol)
            .field("clean_session", &self.clean_session)
            .field("session_expiry", &self.session_expiry)
            .field("embedded_broker", &self.embedded_broker)
            .field("payload", &self.payload)
            .finish_non_exhaustive()
    }
}

/// How a JSON payload maps to a sample. The default is seed 001's
/// `{"device_id", "metric_name", "timestamp", "value"}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PayloadConfig {
    pub value_field: String,
    pub metric_field: String,
    pub timestamp_field: String,
    pub device_field: String,
    /// Label that carries the device id.
    pub device_label: String,
    /// When set, the metric name is this level of the topic (0-based: 2 in
    /// `iot/sensors/temperature` is `temperature`) instead of the payload's field.
    pub metric_topic_level: Option<usize>,
    /// When set, the device id is this level of the topic instead of the payload's field.
    pub device_topic_level: Option<usize>,
    /// `auto` (numbers by magnitude: s, ms, µs or ns; strings as RFC 3339), `s`, `ms`, `us`,
    /// `ns` or `rfc3339`. A payload without a timestamp is stamped with the arrival time.
    pub timestamp_unit: String,
    /// Other scalar fields of the payload become labels.
    pub extra_fields_as_labels: bool,
}

impl Default for PayloadConfig {
    fn default() -> Self {
        PayloadConfig {
            value_field: "value".into(),
            metric_field: "metric_name".into(),
            timestamp_field: "timestamp".into(),
            device_field: "device_id".into(),
            device_label: "device_id".into(),
            metric_topic_level: None,
            device_topic_level: None,
            timestamp_unit: "auto".into(),
            extra_fields_as_labels: true,
        }
    }
}

impl MqttConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.qos > 1 {
            return Err(invalid("mqtt.qos", "must be 0 or 1"));
        }
        if self.topics.is_empty() || self.topics.iter().any(|t| t.is_empty()) {
            return Err(invalid(
                "mqtt.topics",
                "needs at least one non-empty filter",
            ));
        }
        if let Some(g) = &self.shared_group {
            if g.is_empty() || g.contains(['/', '+', '#']) {
                return Err(invalid(
                    "mqtt.shared_group",
                    "must be non-empty without '/', '+' or '#'",
                ));
            }
        }
        if self.client_cert_file.is_some() != self.client_key_file.is_some() {
            return Err(invalid(
                "mqtt",
                "client_cert_file and client_key_file must be given together",
            ));
        }
        if self.max_payload_bytes == 0 || self.max_packet_bytes < self.max_payload_bytes {
            return Err(invalid(
                "mqtt.max_packet_bytes",
                "must be at least max_payload_bytes, which must be above 0",
            ));
        }
        if self.batch_max_messages == 0 {
            return Err(invalid("mqtt.batch_max_messages", "must be at least 1"));
        }
        if self.reconnect_min.is_zero() || self.reconnect_max < self.reconnect_min {
            return Err(invalid(
                "mqtt.reconnect_min",
                "must be above 0 and at most reconnect_max",
            ));
        }
        // MQTT 5 carries the interval in 32-bit seconds; 0 would end the session at every
        // disconnect, losing what the broker would have queued during a restart.
        if self.session_expiry.0.as_secs() == 0 && !self.clean_session
            || self.session_expiry.0.as_secs() > u64::from(u32::MAX)
        {
            return Err(invalid(
                "mqtt.session_expiry",
                "must be at least 1s (set clean_session: true for no persistent session) \
                 and at most 49710d (2^32 s)",
            ));
        }
        if let Some(b) = &self.broker {
            crate::ingest::mqtt::BrokerUrl::parse(b).map_err(|e| invalid("mqtt.broker", e))?;
        }
        if let Some(a) = &self.embedded_broker {
            a.parse::<std::net::SocketAddr>()
                .map_err(|e| invalid("mqtt.embedded_broker", format!("{a:?}: {e}")))?;
        }
        crate::ingest::mqtt::PayloadMapping::from_config(&self.payload)
            .map_err(|e| invalid("mqtt.payload", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::ingest::mqtt::MqttProtocol;

    #[test]
    fn mqtt_section_loads_and_bad_values_name_the_key() {
        let c = Config::from_yaml(
            "mqtt:\n  broker: ssl://broker:8883\n  shared_group: strata\n  qos: 0\n  payload:\n    metric_topic_level: 2\n    timestamp_unit: s\n",
            "f",
            Vec::new(),
        )
        .unwrap();
        assert_eq!(c.mqtt.topics, vec!["iot/sensors/+".to_string()]);
        assert_eq!(c.mqtt.payload.metric_topic_level, Some(2));
        assert_eq!(c.mqtt.protocol, MqttProtocol::Auto);
        assert_eq!(c.mqtt.session_expiry.0.as_secs(), 7 * 86_400);
        let v311 = Config::from_yaml(
            "mqtt:\n  protocol: 3.1.1\n  session_expiry: 1d\n",
            "f",
            Vec::new(),
        )
        .unwrap();
        assert_eq!(v311.mqtt.protocol, MqttProtocol::V311);
        assert_eq!(v311.mqtt.session_expiry.0.as_secs(), 86_400);
        let env = vec![("STRATA_MQTT__PROTOCOL".to_string(), "5".to_string())];
        assert_eq!(
            Config::from_yaml("", "f", env).unwrap().mqtt.protocol,
            MqttProtocol::V5
        );
        let env = vec![(
            "STRATA_MQTT__BROKER".to_string(),
            "tcp://b:1884".to_string(),
        )];
        assert_eq!(
            Config::from_yaml("", "f", env)
                .unwrap()
                .mqtt
                .broker
                .as_deref(),
            Some("tcp://b:1884")
        );
        for (yaml, key) in [
            ("mqtt:\n  broker: http://x\n", "mqtt.broker"),
            ("mqtt:\n  qos: 2\n", "mqtt.qos"),
            ("mqtt:\n  protocol: 4\n", "mqtt.protocol"),
            ("mqtt:\n  protocol: v5\n", "mqtt.protocol"),
            ("mqtt:\n  session_expiry: 0\n", "mqtt.session_expiry"),
            ("mqtt:\n  session_expiry: 200000d\n", "mqtt.session_expiry"),
            ("mqtt:\n  topics: []\n", "mqtt.topics"),
            ("mqtt:\n  shared_group: a/b\n", "mqtt.shared_group"),
            (
                "mqtt:\n  payload:\n    timestamp_unit: minutes\n",
                "mqtt.payload",
            ),
            (
                "mqtt:\n  payload:\n    device_label: bad-name\n",
                "mqtt.payload",
            ),
            (
                "mqtt:\n  max_payload_bytes: 2000000\n",
                "mqtt.max_packet_bytes",
            ),
            (
                "mqtt:\n  embedded_broker: nowhere\n",
                "mqtt.embedded_broker",
            ),
            ("mqtt:\n  client_cert_file: c.pem\n", "mqtt"),
            ("mqtt:\n  brokr: tcp://x\n", "brokr"),
        ] {
            let e = Config::from_yaml(yaml, "f", Vec::new()).unwrap_err();
            assert!(e.to_string().contains(key), "{yaml}: {e}");
        }
    }

    #[test]
    fn debug_output_hides_the_password() {
        let c = Config::from_yaml("mqtt:\n  password: hunter2\n", "f", Vec::new()).unwrap();
        assert!(!format!("{:?}", c.mqtt).contains("hunter2"));
    }
}
