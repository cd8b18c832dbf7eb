//! The broker connection: drives rumqttc's event loop, subscribes on every (re)connect,
//! forwards publishes to the dispatcher, and reconnects with backoff. Never fatal: any
//! connection error is logged, counted and retried.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, Outgoing, Packet, Publish, SubscribeReasonCode,
};
use tokio::sync::{mpsc, oneshot, watch};

use super::metrics::MqttMetrics;
use super::BrokerUrl;

/// A message handed from the connection to the dispatcher.
pub(super) struct Inbound {
    pub publish: Publish,
    /// Connection generation the message arrived on; bumped on every connect and loss.
    pub generation: u64,
    pub received: Instant,
}

/// How long shutdown waits for the dispatcher's last acks to go out.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// How long shutdown waits for the DISCONNECT to be written.
const DISCONNECT_LIMIT: Duration = Duration::from_secs(1);

pub(super) struct Connection {
    pub client: AsyncClient,
    pub eventloop: EventLoop,
    pub url: BrokerUrl,
    pub subscriptions: Vec<rumqttc::SubscribeFilter>,
    pub metrics: Arc<MqttMetrics>,
    pub generation: Arc<AtomicU64>,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
}

impl Connection {
    /// Runs until `stop` turns true; then closes `tx`, keeps the connection up until the
    /// dispatcher has sent its last acks (`dispatcher_done`), and disconnects.
    pub async fn run(
        mut self,
        tx: mpsc::Sender<Inbound>,
        mut stop: watch::Receiver<bool>,
        dispatcher_done: oneshot::Receiver<()>,
    ) {
        let mut delay = self.reconnect_min;
        loop {
            let event = tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => break,
                e = self.eventloop.poll() => e,
            };
            match event {
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    MqttMetrics::add(&self.metrics.received, 1);
                    let inbound = Inbound {
                        publish,
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
                }
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    self.generation.fetch_add(1, Ordering::AcqRel);
                    self.metrics.connected.store(1, Ordering::Relaxed);
                    delay = self.reconnect_min;
                    tracing::info!(broker = %self.url, session_present = ack.session_present,
                        "connected to the MQTT broker");
                    self.subscribe();
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    for (code, sub) in ack.return_codes.iter().zip(&self.subscriptions) {
                        match code {
                            SubscribeReasonCode::Failure => tracing::error!(
                                filter = %sub.path, broker = %self.url,
                                "the broker refused the subscription"),
                            SubscribeReasonCode::Success(qos) => tracing::debug!(
                                filter = %sub.path, ?qos, "subscribed"),
                        }
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

    /// Subscribes without waiting: the event loop that would drain a full request channel is
    /// this task, so a blocking send could deadlock.
    fn subscribe(&self) {
        if let Err(e) = self
            .client
            .try_subscribe_many(self.subscriptions.iter().cloned())
        {
            tracing::debug!(error = %e, "request channel full; subscribing in the background");
            let client = self.client.clone();
            let subs = self.subscriptions.clone();
            tokio::spawn(async move {
                let _ = client.subscribe_many(subs).await;
            });
        }
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
                e = self.eventloop.poll() => {
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
        if self.client.try_disconnect().is_err() {
            return;
        }
        let _ = tokio::time::timeout(DISCONNECT_LIMIT, async {
            loop {
                match self.eventloop.poll().await {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        self.metrics.connected.store(0, Ordering::Relaxed);
        tracing::info!(broker = %self.url, "disconnected from the MQTT broker");
    }
}

/// Between half and all of `d`, so that nodes that lost the broker together do not return in
/// lock step.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(0.5 + rand::random::<f64>() * 0.5)
}

fn log_connection_error(url: &BrokerUrl, e: &ConnectionError, retry_in: Duration) {
    match e {
        ConnectionError::ConnectionRefused(code) => tracing::error!(
            broker = %url, ?code, ?retry_in,
            "the MQTT broker refused the connection (check credentials and client id)"),
        e => tracing::warn!(broker = %url, error = %e, ?retry_in,
            "MQTT connection lost or failed; reconnecting"),
    }
}
