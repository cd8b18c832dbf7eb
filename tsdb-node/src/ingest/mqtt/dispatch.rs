//! Dispatch: received messages → decoded samples → one [`IngestSink::write`] per batch →
//! acknowledgements.
//!
//! The rule that makes QoS 1 lossless: a message is acknowledged only after the write holding
//! its sample returned `Ok` (durable in the WAL). Invalid messages are acknowledged too (after
//! the same write, to keep acks in arrival order, MQTT 3.1.1 §4.6 and 5 §4.6), so that the broker does
//! not deliver them again forever. A failing write is retried with backoff and nothing of the
//! batch is acknowledged meanwhile; if the node stops instead, the broker redelivers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::connection::Inbound;
use super::link::{Acker, Received};
use super::metrics::MqttMetrics;
use super::payload::{truncate, PayloadError, PayloadMapping, SeriesCache};
use crate::ingest::IngestSink;
use crate::storage::{LabelSets, Labels, Sample};

/// Bytes of an invalid payload quoted in the log.
const LOGGED_PAYLOAD_BYTES: usize = 200;
/// At most one invalid-message warning per this interval; the counter has the rest.
const INVALID_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// A decoded batch.
struct Decoded {
    samples: Vec<(Labels, Sample)>,
    /// For each sample, the index of its message in the batch.
    origin: Vec<usize>,
    errors: Vec<(usize, PayloadError)>,
}

/// Logs an invalid message with a truncated sample of its payload, rate-limited so that a
/// misconfigured fleet cannot flood the log.
fn report_invalid(last_log: &mut Option<Instant>, m: &Received, e: &dyn std::fmt::Display) {
    if last_log.is_some_and(|t| t.elapsed() < INVALID_LOG_INTERVAL) {
        return;
    }
    *last_log = Some(Instant::now());
    let sample = String::from_utf8_lossy(m.payload());
    tracing::warn!(
        topic = %truncate(&m.topic(), 128),
        error = %e,
        payload = %truncate(&sample, LOGGED_PAYLOAD_BYTES),
        "dropping invalid MQTT message (more within 10s are only counted)"
    );
}

pub(super) struct Dispatcher {
    pub sink: IngestSink,
    pub mapping: PayloadMapping,
    /// Label sets of the series seen recently: most messages name a series seen before.
    pub series: SeriesCache,
    pub acker: Acker,
    pub metrics: Arc<MqttMetrics>,
    /// The connection's current generation; acks for older ones are not sent (see
    /// [`Inbound::generation`]).
    pub generation: Arc<AtomicU64>,
    pub batch_max: usize,
    /// How long a batch holding only QoS 0 messages waits for more (`mqtt.qos0_linger`).
    pub qos0_linger: Duration,
    pub retry_min: Duration,
    pub retry_max: Duration,
    pub stop: watch::Receiver<bool>,
}

impl Dispatcher {
    /// Runs until the connection loop closes the channel, storing and acknowledging every
    /// batch it was handed (unless stopped while a write keeps failing).
    pub async fn run(mut self, mut rx: mpsc::Receiver<Inbound>) {
        let mut inbox: Vec<Inbound> = Vec::new();
        // A hand-over that did not fit in the previous batch.
        let mut carried: Option<Inbound> = None;
        let mut last_invalid_log: Option<Instant> = None;
        loop {
            inbox.clear();
            let first = match carried.take() {
                Some(c) => c,
                None => match rx.recv().await {
                    Some(c) => c,
                    None => break,
                },
            };
            let mut count = first.messages.len();
            inbox.push(first);
            // Whatever arrived while the previous write was in flight becomes the next batch:
            // batches grow with the load and no message waits for a timer.
            while count < self.batch_max {
                let Ok(next) = rx.try_recv() else {
                    break;
                };
                if count + next.messages.len() > self.batch_max {
                    carried = Some(next);
                    break;
                }
                count += next.messages.len();
                inbox.push(next);
            }
            if carried.is_none() {
                self.linger_qos0(&mut rx, &mut inbox, &mut carried, count)
                    .await;
            }
            let messages: Vec<&Received> = inbox.iter().flat_map(|c| &c.messages).collect();
            if !self.store(&messages, &mut last_invalid_log).await {
                break;
            }
            self.ack(&inbox).await;
        }
    }

    /// Lets a batch of QoS 0 messages wait up to `qos0_linger` for more, so that a stream of
    /// unacknowledged messages is stored in fewer, larger writes (each one WAL commit and one
    /// hand-off to a blocking thread). Stops early at `batch_max`, when a QoS 1 message
    /// arrives (its acknowledgement must not wait), or when the connection closes.
    async fn linger_qos0(
        &self,
        rx: &mut mpsc::Receiver<Inbound>,
        inbox: &mut Vec<Inbound>,
        carried: &mut Option<Inbound>,
        mut count: usize,
    ) {
        let needs_ack = |c: &Inbound| c.messages.iter().any(Received::needs_ack);
        if self.qos0_linger.is_zero() || inbox.iter().any(needs_ack) {
            return;
        }
        let deadline = tokio::time::Instant::now() + self.qos0_linger;
        while count < self.batch_max {
            let Ok(Some(next)) = tokio::time::timeout_at(deadline, rx.recv()).await else {
                // Linger over, or the channel closed: the next `recv` sees the close.
                break;
            };
            if count + next.messages.len() > self.batch_max {
                *carried = Some(next);
                break;
            }
            count += next.messages.len();
            let urgent = needs_ack(&next);
            inbox.push(next);
            if urgent {
                break;
            }
        }
    }

    /// Stores the batch's valid samples. False when stopped before the write succeeded.
    async fn store(&mut self, inbox: &[&Received], last_log: &mut Option<Instant>) -> bool {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let decoded = self.decode(inbox, now_ms);
        let mut invalid = decoded.errors.len();
        for (i, e) in &decoded.errors {
            report_invalid(last_log, inbox[*i], e);
        }
        let origin = decoded.origin;
        let mut batch = decoded.samples;
        let mut delay = self.retry_min;
        while !batch.is_empty() {
            match self.sink.write(batch, LabelSets::Cached).await {
                Ok(outcome) => {
                    for (i, why) in &outcome.rejected {
                        if let Some(m) = origin.get(*i).and_then(|o| inbox.get(*o).copied()) {
                            report_invalid(last_log, m, why);
                        }
                    }
                    invalid += outcome.rejected.len();
                    MqttMetrics::add(&self.metrics.stored, outcome.appended);
                    break;
                }
                Err(e) => {
                    MqttMetrics::add(&self.metrics.write_errors, 1);
                    tracing::error!(error = %e, messages = inbox.len(), retry_in = ?delay,
                        "storing MQTT messages failed; they stay unacknowledged and are retried");
                    let stopped = tokio::select! {
                        _ = tokio::time::sleep(delay) => false,
                        _ = self.stop.wait_for(|s| *s) => true,
                    };
                    if stopped {
                        return false;
                    }
                    delay = (delay * 2).min(self.retry_max);
                    // The failed write consumed the batch; decoding again is deterministic
                    // (same arrival time) and cheaper than cloning every batch up front.
                    batch = self.decode(inbox, now_ms).samples;
                }
            }
        }
        MqttMetrics::add(&self.metrics.invalid, invalid);
        true
    }

    fn decode(&mut self, inbox: &[&Received], now_ms: i64) -> Decoded {
        let mut d = Decoded {
            samples: Vec::with_capacity(inbox.len()),
            origin: Vec::with_capacity(inbox.len()),
            errors: Vec::new(),
        };
        for (i, m) in inbox.iter().enumerate() {
            match self
                .mapping
                .decode_cached(&m.topic(), m.payload(), now_ms, &mut self.series)
            {
                Ok(s) => {
                    d.samples.push(s);
                    d.origin.push(i);
                }
                Err(e) => d.errors.push((i, e)),
            }
        }
        d
    }

    /// Acknowledges the batch's QoS 1 messages in arrival order.
    async fn ack(&self, inbox: &[Inbound]) {
        let current = self.generation.load(Ordering::Acquire);
        let mut acked = 0;
        'chunks: for chunk in inbox {
            // Messages from an earlier connection are delivered again on the new one (a
            // persistent session resends them with the same packet ids); acking the old copies
            // could acknowledge unrelated messages under a clean session.
            if chunk.generation != current {
                continue;
            }
            let mut chunk_acked = 0;
            for m in chunk.messages.iter().filter(|m| m.needs_ack()) {
                if self.acker.ack(m).await.is_err() {
                    // The event loop is gone (shutdown); the broker redelivers what is unacked.
                    acked += chunk_acked;
                    break 'chunks;
                }
                chunk_acked += 1;
            }
            if chunk_acked > 0 {
                self.metrics
                    .observe_ack_latencies(chunk.received.elapsed(), chunk_acked);
            }
            acked += chunk_acked;
        }
        MqttMetrics::add(&self.metrics.acked, acked);
    }
}
