//! Counters of the MQTT subscriber, rendered into the node's `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the ack-latency histogram: from receipt of a message to its
/// acknowledgement, which includes the batch's WAL commit.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// MQTT ingest figures. Shared between the connection loop, the dispatcher and `/metrics`.
#[derive(Default)]
pub struct MqttMetrics {
    pub(super) received: AtomicU64,
    pub(super) stored: AtomicU64,
    pub(super) invalid: AtomicU64,
    pub(super) acked: AtomicU64,
    pub(super) reconnects: AtomicU64,
    pub(super) write_errors: AtomicU64,
    pub(super) connected: AtomicU64,
    /// Protocol level of the last accepted connection: 4 (3.1.1) or 5; 0 before the first.
    pub(super) protocol_version: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
}

/// A point-in-time copy of the counters, for tests and logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MqttCounts {
    pub received: u64,
    pub stored: u64,
    pub invalid: u64,
    pub acked: u64,
    pub reconnects: u64,
    pub write_errors: u64,
    pub connected: bool,
    /// 4 (MQTT 3.1.1) or 5 once connected, 0 before.
    pub protocol_version: u8,
}

impl MqttMetrics {
    pub fn counts(&self) -> MqttCounts {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MqttCounts {
            received: l(&self.received),
            stored: l(&self.stored),
            invalid: l(&self.invalid),
            acked: l(&self.acked),
            reconnects: l(&self.reconnects),
            write_errors: l(&self.write_errors),
            connected: l(&self.connected) == 1,
            protocol_version: u8::try_from(l(&self.protocol_version)).unwrap_or(0),
        }
    }

    pub(super) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Records `n` acknowledgements that each took `d` (messages handed over together are
    /// acknowledged together).
    pub(super) fn observe_ack_latencies(&self, d: Duration, n: usize) {
        let secs = d.as_secs_f64();
        let n = n as u64;
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.buckets[i].fetch_add(n, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(n, Ordering::Relaxed);
        self.latency_sum_micros
            .fetch_add((d.as_micros() as u64).saturating_mul(n), Ordering::Relaxed);
    }

    /// Appends the Prometheus text exposition of these metrics.
    pub fn render(&self, out: &mut String) {
        let c = self.counts();
        let counters: [(&str, &str, u64); 6] = [
            (
                "strata_mqtt_messages_received_total",
                "MQTT messages received from the broker.",
                c.received,
            ),
            (
                "strata_mqtt_messages_stored_total",
                "MQTT messages whose sample is durable in storage.",
                c.stored,
            ),
            (
                "strata_mqtt_messages_invalid_total",
                "MQTT messages dropped as invalid (bad payload or refused sample).",
                c.invalid,
            ),
            (
                "strata_mqtt_messages_acked_total",
                "QoS 1 MQTT messages acknowledged to the broker.",
                c.acked,
            ),
            (
                "strata_mqtt_reconnects_total",
                "Lost or failed MQTT broker connections (each is retried with backoff).",
                c.reconnects,
            ),
            (
                "strata_mqtt_write_errors_total",
                "Storage writes of MQTT batches that failed and were retried.",
                c.write_errors,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP strata_mqtt_connected Whether the MQTT subscriber is connected to its broker.\n\
             # TYPE strata_mqtt_connected gauge\nstrata_mqtt_connected {}",
            u8::from(c.connected)
        );
        let _ = writeln!(
            out,
            "# HELP strata_mqtt_protocol_version MQTT protocol level of the broker connection: 4 (3.1.1) or 5; 0 before the first.\n\
             # TYPE strata_mqtt_protocol_version gauge\nstrata_mqtt_protocol_version {}",
            c.protocol_version
        );
        let h = "strata_mqtt_ack_latency_seconds";
        let _ = writeln!(
            out,
            "# HELP {h} Time from receiving an MQTT message to acknowledging it after the durable write.\n# TYPE {h} histogram"
        );
        for (i, b) in BUCKETS.iter().enumerate() {
            let v = self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{h}_bucket{{le=\"{b}\"}} {v}");
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let sum = self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "{h}_bucket{{le=\"+Inf\"}} {count}\n{h}_sum {sum}\n{h}_count {count}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family() {
        let m = MqttMetrics::default();
        MqttMetrics::add(&m.received, 3);
        m.protocol_version.store(5, Ordering::Relaxed);
        m.observe_ack_latencies(Duration::from_millis(3), 2);
        let mut out = String::new();
        m.render(&mut out);
        assert!(out.contains("strata_mqtt_messages_received_total 3"));
        assert!(out.contains("strata_mqtt_protocol_version 5\n"));
        assert!(out.contains("strata_mqtt_ack_latency_seconds_bucket{le=\"0.0025\"} 0"));
        assert!(out.contains("strata_mqtt_ack_latency_seconds_bucket{le=\"0.005\"} 2"));
        assert!(out.contains("strata_mqtt_ack_latency_seconds_count 2"));
        assert!(out.contains("strata_mqtt_ack_latency_seconds_sum 0.006\n"));
    }
}
