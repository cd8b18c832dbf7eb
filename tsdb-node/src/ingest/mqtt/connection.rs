//! The broker connection: drives the [`Link`] (MQTT 3.1.1 or 5), subscribes on every
//! (re)connect, forwards publishes to the dispatcher, and reconnects with backoff. Never fatal:
//! any connection error is logged, counted and retried.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use super::link::{FailureKind, Link, LinkError, LinkEvent, Received};
use super::metrics::MqttMetrics;
use super::options::Subscription;
use super::subscribed::{self, SubscribedRecord};
use super::BrokerUrl;

/// Messages handed from the connection to the dispatcher in one go: those the event loop had
/// already read when the first of them was taken.
pub(super) struct Inbound {
    pub messages: Vec<Received>,
    /// Connection generation the messages arrived on; bumped on every connect and loss.
    pub generation: u64,
    pub received: Instant,
}

/// Most messages in one [`Inbound`]. Handing over one message at a time cost a channel
/// operation, often a wake-up of the dispatcher's worker thread, a clock read and a
/// stop-signal registration per message; rumqttc reads up to 10 packets per socket read, and
/// under load the socket holds many more.
pub(super) const INBOUND_MAX: usize = 256;

/// Longest [`Connection::read_pause`].
const READ_PAUSE_MAX: Duration = Duration::from_millis(1);

/// The pause between socket reads of QoS 0 messages for a given `mqtt.qos0_linger`: 1 ms, or
/// the linger when shorter, so that a linger of zero (lowest latency) also reads at once.
/// Messages wait in the socket instead of in the batch, which lingers anyway.
pub(super) fn read_pause(qos0_linger: Duration) -> Duration {
    qos0_linger.min(READ_PAUSE_MAX)
}

/// How long shutdown waits for the dispatcher's last acks to go out.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// How long shutdown waits for the DISCONNECT to be written.
const DISCONNECT_LIMIT: Duration = Duration::from_secs(1);
/// How long leaving waits for the broker's UNSUBACKs before it disconnects anyway.
const LEAVE_LIMIT: Duration = Duration::from_secs(10);

/// Resolves once `leave` turns true; never when there is no leave signal (a node outside a
/// cluster) or its sender is gone.
async fn leave_signalled(leave: &mut Option<watch::Receiver<bool>>) {
    if let Some(rx) = leave {
        if rx.wait_for(|l| *l).await.is_ok() {
            return;
        }
    }
    std::future::pending::<()>().await
}

pub(super) struct Connection {
    pub link: Link,
    pub url: BrokerUrl,
    pub subscriptions: Vec<Subscription>,
    pub metrics: Arc<MqttMetrics>,
    pub generation: Arc<AtomicU64>,
    /// Most messages per hand-over: [`INBOUND_MAX`], or less so that one never exceeds a
    /// batch.
    pub inbound_max: usize,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// How long to let QoS 0 messages accumulate in the socket after a hand-over that took
    /// all there was (zero: read again at once). Reading as messages trickle in costs a
    /// thread wake-up and a socket read for every few messages; on two cores shared with the
    /// broker those wake-ups also preempt it. See [`read_pause`].
    pub read_pause: Duration,
    /// Where the session's subscriptions are remembered; `None` for a node without storage
    /// of its own to keep it in.
    pub record: Option<SubscribedRecord>,
}

impl Connection {
    fn current_filters(&self) -> Vec<String> {
        self.subscriptions.iter().map(|s| s.path.clone()).collect()
    }

    /// On a resumed session: unsubscribes from the filters an earlier configuration
    /// subscribed to and this one does not (see [`subscribed`]). Returns how many.
    fn drop_stale_subscriptions(&self) -> usize {
        let Some(record) = &self.record else {
            return 0;
        };
        let recorded = record.load();
        let stale: Vec<Subscription> = subscribed::stale(&recorded, &self.current_filters())
            .into_iter()
            .map(|path| Subscription {
                path: path.clone(),
                at_least_once: false,
            })
            .collect();
        if stale.is_empty() {
            return 0;
        }
        let filters: Vec<&str> = stale.iter().map(|s| s.path.as_str()).collect();
        tracing::info!(broker = %self.url, ?filters,
            "unsubscribing the resumed session from filters no longer configured");
        self.link.unsubscribe(&stale);
        stale.len()
    }

    /// Records the configured filters once the broker accepted them all.
    fn remember_subscriptions(&self) {
        if let Some(record) = &self.record {
            let current = self.current_filters();
            if record.load() != current {
                record.store(&current);
            }
        }
    }
}

impl Connection {
    /// Runs until `stop` turns true; then closes `tx`, keeps the connection up until the
    /// dispatcher has sent its last acks (`dispatcher_done`), and disconnects.
    ///
    /// When `leave` turns true (the node is being decommissioned) it first unsubscribes and
    /// keeps forwarding until the broker confirmed: a persistent session that stays
    /// subscribed to a shared subscription keeps being handed its share of the messages
    /// after the node is gone, where nobody stores them.
    pub async fn run(
        mut self,
        tx: mpsc::Sender<Inbound>,
        mut stop: watch::Receiver<bool>,
        mut leave: Option<watch::Receiver<bool>>,
        dispatcher_done: oneshot::Receiver<()>,
    ) {
        let mut delay = self.reconnect_min;
        // While leaving: UNSUBACKs still expected, and when to give up waiting for them.
        let mut leaving: Option<(usize, tokio::time::Instant)> = None;
        // An event polled while gathering messages, handled before polling again.
        let mut next: Option<Result<LinkEvent, LinkError>> = None;
        // UNSUBACKs still expected for filters of an earlier configuration.
        let mut stale_pending = 0usize;
        loop {
            let event = match next.take() {
                Some(e) => e,
                None => tokio::select! {
                    biased;
                    _ = stop.wait_for(|s| *s) => break,
                    _ = leave_signalled(&mut leave), if leaving.is_none() => {
                        tracing::info!(broker = %self.url,
                            "node leaving the cluster: unsubscribing from the MQTT broker");
                        self.link.unsubscribe(&self.subscriptions);
                        leaving = Some((
                            self.subscriptions.len(),
                            tokio::time::Instant::now() + LEAVE_LIMIT,
                        ));
                        continue;
                    }
                    _ = tokio::time::sleep_until(
                        leaving.map_or_else(tokio::time::Instant::now, |(_, d)| d)
                    ), if leaving.is_some() => {
                        tracing::warn!(broker = %self.url,
                            "the broker did not confirm the unsubscription in time; disconnecting");
                        break;
                    }
                    e = self.link.poll() => e,
                },
            };
            match event {
                Ok(LinkEvent::Message(message)) => {
                    let mut messages = Vec::with_capacity(16);
                    messages.push(message);
                    // Whatever is ready without waiting goes along (polling rumqttc's event loop
                    // is cancel-safe, so a poll that is not ready is simply dropped).
                    while messages.len() < self.inbound_max {
                        if let Some(m) = self.link.buffered_message() {
                            messages.push(m);
                            continue;
                        }
                        match now_or_never(self.link.poll()) {
                            Some(Ok(LinkEvent::Message(m))) => messages.push(m),
                            Some(other) => {
                                next = Some(other);
                                break;
                            }
                            None => break,
                        }
                    }
                    MqttMetrics::add(&self.metrics.received, messages.len());
                    let pause = !self.read_pause.is_zero()
                        && messages.len() < self.inbound_max
                        && !messages.iter().any(Received::needs_ack);
                    let inbound = Inbound {
                        messages,
                        generation: self.generation.load(Ordering::Acquire),
                        received: Instant::now(),
                    };
                    // A full channel means storage is behind: not reading from the socket
                    // pushes back on the broker, which queues for us.
                    tokio::select! {
                        biased;
                        _ = stop.wait_for(|s| *s) => break,
                        r = tx.send(inbound) => {
                            if r.is_err() {
                                break;
                            }
                        }
                    }
                    if pause {
                        tokio::select! {
                            biased;
                            _ = stop.wait_for(|s| *s) => break,
                            _ = tokio::time::sleep(self.read_pause) => {}
                        }
                    }
                }
                Ok(LinkEvent::Connected { session_present }) => {
                    self.generation.fetch_add(1, Ordering::AcqRel);
                    let version = self.link.version();
                    self.metrics.connected.store(1, Ordering::Relaxed);
                    self.metrics
                        .protocol_version
                        .store(version.level().into(), Ordering::Relaxed);
                    delay = self.reconnect_min;
                    tracing::info!(broker = %self.url, protocol = %version, session_present,
                        "connected to the MQTT broker");
                    match &mut leaving {
                        // The UNSUBSCRIBE may have been lost with the connection.
                        Some((pending, _)) => {
                            self.link.unsubscribe(&self.subscriptions);
                            *pending = self.subscriptions.len();
                        }
                        None => {
                            if session_present {
                                stale_pending = self.drop_stale_subscriptions();
                            }
                            self.link.subscribe(&self.subscriptions);
                        }
                    }
                }
                Ok(LinkEvent::Unsubscribed) if stale_pending > 0 && leaving.is_none() => {
                    stale_pending -= 1;
                }
                Ok(LinkEvent::Unsubscribed) => {
                    if let Some((pending, _)) = &mut leaving {
                        *pending = pending.saturating_sub(1);
                        if *pending == 0 {
                            tracing::info!(broker = %self.url,
                                "unsubscribed: the broker hands this node no more messages");
                            break;
                        }
                    }
                }
                Ok(LinkEvent::Subscribed(results)) => {
                    for (result, sub) in results.iter().zip(&self.subscriptions) {
                        match result {
                            Err(reason) => tracing::error!(
                                filter = %sub.path, broker = %self.url, %reason,
                                "the broker refused the subscription"),
                            Ok(()) => tracing::debug!(filter = %sub.path, "subscribed"),
                        }
                    }
                    if results.iter().all(Result::is_ok) {
                        self.remember_subscriptions();
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    self.generation.fetch_add(1, Ordering::AcqRel);
                    self.metrics.connected.store(0, Ordering::Relaxed);
                    MqttMetrics::add(&self.metrics.reconnects, 1);
                    let jittered = jitter(delay);
                    log_connection_error(&self.url, &e, jittered);
                    tokio::select! {
                        biased;
                        _ = stop.wait_for(|s| *s) => break,
                        _ = tokio::time::sleep(jittered) => {}
                    }
                    delay = (delay * 2).min(self.reconnect_max);
                }
            }
        }
        drop(tx);
        self.drain(dispatcher_done).await;
    }

    /// Keeps polling (so that the dispatcher's last acks are written) until it is done, then
    /// disconnects. Messages arriving now are not forwarded, hence not acked: the broker keeps
    /// them for the next session.
    async fn drain(mut self, mut dispatcher_done: oneshot::Receiver<()>) {
        let deadline = tokio::time::sleep(DRAIN_LIMIT);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut dispatcher_done => break,
                _ = &mut deadline => {
                    tracing::warn!("MQTT dispatcher did not finish in time; the broker redelivers");
                    break;
                }
                e = self.link.poll() => {
                    if e.is_err() {
                        // Without a connection no ack can go out; the dispatcher may still be
                        // writing, so give it the rest of the time before the engine closes.
                        let _ = tokio::time::timeout_at(deadline.deadline(), &mut dispatcher_done)
                            .await;
                        return;
                    }
                }
            }
        }
        if !self.link.try_disconnect() {
            return;
        }
        let _ = tokio::time::timeout(DISCONNECT_LIMIT, async {
            loop {
                match self.link.poll().await {
                    Ok(LinkEvent::Disconnected) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        self.metrics.connected.store(0, Ordering::Relaxed);
        tracing::info!(broker = %self.url, "disconnected from the MQTT broker");
    }
}

/// `f`'s output if it is ready at once; otherwise `f` is dropped (only for cancel-safe
/// futures).
fn now_or_never<F: Future>(f: F) -> Option<F::Output> {
    match std::pin::pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

/// Between half and all of `d`, so that nodes that lost the broker together do not return in
/// lock step.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.5 + rand::random::<f64>() * 0.5)
}

fn log_connection_error(url: &BrokerUrl, e: &LinkError, retry_in: Duration) {
    let protocol = e.version;
    match e.kind {
        FailureKind::Refused | FailureKind::VersionRefused => tracing::error!(
            broker = %url, %protocol, error = %e.message, ?retry_in,
            "the MQTT broker refused the connection (check credentials, client id and mqtt.protocol)"),
        FailureKind::Closed | FailureKind::Other => tracing::warn!(
            broker = %url, %protocol, error = %e.message, ?retry_in,
            "MQTT connection lost or failed; reconnecting"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_pause_follows_the_linger_and_never_exceeds_a_millisecond() {
        assert_eq!(read_pause(Duration::ZERO), Duration::ZERO);
        assert_eq!(
            read_pause(Duration::from_micros(300)),
            Duration::from_micros(300)
        );
        assert_eq!(read_pause(Duration::from_millis(5)), READ_PAUSE_MAX);
        assert_eq!(read_pause(Duration::from_secs(1)), READ_PAUSE_MAX);
    }
}
