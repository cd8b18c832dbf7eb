//! The simulator's MQTT session over MQTT 5 or 3.1.1, chosen like the node's subscriber does
//! (`auto`: 5 first, 3.1.1 when the broker refuses 5 during the handshake). rumqttc has a
//! separate client per version; this hides the difference from the publishing loop.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use rumqttc::v5;
use tokio::task::JoinHandle;
use tsdb_node::ingest::mqtt::{refuses_v5, BrokerUrl, MqttProtocol, Version};

/// How long a failed connection attempt waits before the next one.
const RETRY: Duration = Duration::from_millis(500);

/// Publishes and acknowledgements, shared with the event-loop task.
#[derive(Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub errors: AtomicU64,
    pub done: AtomicBool,
}

pub struct Session {
    pub id: String,
    pub keep_alive: Duration,
    pub inflight: u16,
    pub credentials: Option<(String, String)>,
}

enum Client {
    V311(rumqttc::AsyncClient),
    V5(v5::AsyncClient),
}

/// A connected publisher; its event loop runs in its own task until [`Publisher::finish`].
pub struct Publisher {
    client: Client,
    events: JoinHandle<()>,
}

impl Publisher {
    /// Connects with `protocol`, retrying (and, under `auto`, starting again with 5) until a
    /// broker accepts, then keeps the session going in the background.
    pub async fn connect(
        url: &BrokerUrl,
        protocol: MqttProtocol,
        session: &Session,
        counters: Arc<Counters>,
    ) -> Publisher {
        let mut version = protocol.first();
        loop {
            let attempt = match version {
                Version::V5 => connect_v5(url, session, counters.clone()).await,
                Version::V311 => connect_v311(url, session, counters.clone()).await,
            };
            match attempt {
                Ok(p) => return p,
                Err(Refusal::Version(e)) if protocol == MqttProtocol::Auto => {
                    eprintln!("{url} does not accept MQTT 5 ({e}); using 3.1.1");
                    version = Version::V311;
                    continue;
                }
                Err(Refusal::Version(e)) | Err(Refusal::Other(e)) => {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    eprintln!("cannot connect to {url} over MQTT {version}: {e}; retrying");
                    // 3.1.1 failing as well may mean the broker went away: try 5 again.
                    version = protocol.first();
                }
            }
            tokio::time::sleep(RETRY).await;
        }
    }

    pub fn version(&self) -> Version {
        match self.client {
            Client::V311(_) => Version::V311,
            Client::V5(_) => Version::V5,
        }
    }

    /// Queues one publish; waits while the client's request channel is full.
    pub async fn publish(&self, topic: &str, at_least_once: bool, payload: String) -> Result<()> {
        match &self.client {
            Client::V311(c) => {
                let qos = if at_least_once {
                    rumqttc::QoS::AtLeastOnce
                } else {
                    rumqttc::QoS::AtMostOnce
                };
                c.publish(topic, qos, false, payload).await?;
            }
            Client::V5(c) => {
                let qos = if at_least_once {
                    v5::mqttbytes::QoS::AtLeastOnce
                } else {
                    v5::mqttbytes::QoS::AtMostOnce
                };
                c.publish(topic, qos, false, payload).await?;
            }
        }
        Ok(())
    }

    /// Disconnects and waits (briefly) for the event loop to write the DISCONNECT.
    pub async fn finish(self) {
        let _ = match &self.client {
            Client::V311(c) => c.disconnect().await.is_ok(),
            Client::V5(c) => c.disconnect().await.is_ok(),
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), self.events).await;
    }
}

enum Refusal {
    /// A broker that does not speak MQTT 5 (only from a 5 attempt).
    Version(String),
    Other(String),
}

async fn connect_v311(
    url: &BrokerUrl,
    s: &Session,
    counters: Arc<Counters>,
) -> Result<Publisher, Refusal> {
    let mut o = rumqttc::MqttOptions::new(s.id.clone(), url.host.clone(), url.port);
    o.set_keep_alive(s.keep_alive)
        .set_inflight(s.inflight.max(1))
        .set_clean_session(true);
    if let Some((u, p)) = &s.credentials {
        o.set_credentials(u.clone(), p.clone());
    }
    let (client, mut eventloop) = rumqttc::AsyncClient::new(o, 10_000);
    loop {
        match eventloop.poll().await {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => break,
            Ok(_) => {}
            Err(e) => return Err(Refusal::Other(e.to_string())),
        }
    }
    let events = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) => {
                    counters.acked.fetch_add(1, Ordering::Relaxed);
                }
                Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(_) if counters.done.load(Ordering::Relaxed) => break,
                Err(_) => {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    });
    Ok(Publisher {
        client: Client::V311(client),
        events,
    })
}

async fn connect_v5(
    url: &BrokerUrl,
    s: &Session,
    counters: Arc<Counters>,
) -> Result<Publisher, Refusal> {
    let mut o = v5::MqttOptions::new(s.id.clone(), url.host.clone(), url.port);
    o.set_keep_alive(s.keep_alive)
        .set_outgoing_inflight_upper_limit(s.inflight.max(1))
        .set_clean_start(true);
    if let Some((u, p)) = &s.credentials {
        o.set_credentials(u.clone(), p.clone());
    }
    let (client, mut eventloop) = v5::AsyncClient::new(o, 10_000);
    loop {
        match eventloop.poll().await {
            Ok(v5::Event::Incoming(v5::mqttbytes::v5::Packet::ConnAck(_))) => break,
            Ok(_) => {}
            Err(e) if refuses_v5(&e) => return Err(Refusal::Version(e.to_string())),
            Err(e) => return Err(Refusal::Other(e.to_string())),
        }
    }
    let events = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(v5::Event::Incoming(v5::mqttbytes::v5::Packet::PubAck(_))) => {
                    counters.acked.fetch_add(1, Ordering::Relaxed);
                }
                Ok(v5::Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                Ok(_) => {}
                Err(_) if counters.done.load(Ordering::Relaxed) => break,
                Err(_) => {
                    counters.errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    });
    Ok(Publisher {
        client: Client::V5(client),
        events,
    })
}
