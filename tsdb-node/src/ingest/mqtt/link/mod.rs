//! One broker session over MQTT 3.1.1 or MQTT 5: it connects (and reconnects when polled
//! again after an error), yields received publishes, and acknowledges each one when told to,
//! which the dispatcher does only after the message's write is durable.
//!
//! rumqttc has a separate client per version ([`v311`], [`v5`]); this module hides the
//! difference and implements `mqtt.protocol: auto`: MQTT 5 first, and when the broker refuses
//! it during the handshake (a CONNACK "unsupported protocol version", or a 3.1.1 broker closing
//! the connection, as rumqttd does, or answering with a 3.1.1 CONNACK that does not parse as
//! 5), 3.1.1 at once. The first version that gets a CONNACK is kept for the life of the
//! subscriber, so that a later broker restart cannot move the session between versions.

mod v311;
mod v5;

pub use v5::refuses_v5;

use std::borrow::Cow;

use super::options::{LinkOptions, Subscription};
use super::protocol::{MqttProtocol, Version};

/// A publish received from the broker, in the client type of the version it arrived over.
pub(super) enum Received {
    V311(rumqttc::Publish),
    V5(rumqttc::v5::mqttbytes::v5::Publish),
}

impl Received {
    /// The topic. MQTT 5 topics arrive as bytes; brokers only route valid UTF-8 topics, so
    /// the lossy conversion borrows in practice.
    pub fn topic(&self) -> Cow<'_, str> {
        match self {
            Received::V311(p) => Cow::Borrowed(&p.topic),
            Received::V5(p) => String::from_utf8_lossy(&p.topic),
        }
    }

    pub fn payload(&self) -> &[u8] {
        match self {
            Received::V311(p) => &p.payload,
            Received::V5(p) => &p.payload,
        }
    }

    /// Whether the broker waits for an acknowledgement (QoS 1; the subscriptions ask for at
    /// most 1, so QoS 2 never arrives).
    pub fn needs_ack(&self) -> bool {
        match self {
            Received::V311(p) => p.qos != rumqttc::QoS::AtMostOnce,
            Received::V5(p) => p.qos != rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        }
    }
}

/// What polling the link produced.
pub(super) enum LinkEvent {
    /// A CONNACK accepted the connection.
    Connected {
        session_present: bool,
    },
    Message(Received),
    /// The SUBACK: per filter, in subscription order, `Err` with the broker's reason when
    /// refused.
    Subscribed(Vec<Result<(), String>>),
    /// An UNSUBACK (one per filter: filters are unsubscribed one packet each).
    Unsubscribed,
    /// Our DISCONNECT was written.
    Disconnected,
    /// Anything else (pings, acks going out).
    Other,
}

/// How a connection failed, as far as choosing what to do next is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FailureKind {
    /// The broker answered CONNACK with a refusal: credentials, client id, authorization.
    Refused,
    /// The broker's CONNACK refused the protocol version.
    VersionRefused,
    /// The connection was closed, reset or sent something unreadable. During the handshake
    /// that is how many 3.1.1 brokers answer an MQTT 5 CONNECT.
    Closed,
    /// Anything else: no TCP connection, DNS, TLS, timeouts, protocol state errors.
    Other,
}

/// A failed connection attempt or a lost connection. Polling again reconnects.
#[derive(Debug)]
pub(super) struct LinkError {
    pub version: Version,
    pub kind: FailureKind,
    pub message: String,
}

/// The event loop that would have sent an acknowledgement is gone (the subscriber is
/// stopping); the broker redelivers what was not acknowledged.
#[derive(Debug)]
pub(super) struct LinkClosed;

/// Sends acknowledgements; cloned into the dispatcher.
#[derive(Clone)]
pub(super) struct Acker {
    v311: Option<rumqttc::AsyncClient>,
    v5: Option<rumqttc::v5::AsyncClient>,
}

impl Acker {
    /// Acknowledges `m` on the session of the version it arrived over. Waits for room in the
    /// request channel, which is sized so that it never fills (see
    /// [`super::options::request_capacity`]).
    pub async fn ack(&self, m: &Received) -> Result<(), LinkClosed> {
        let sent = match (m, &self.v311, &self.v5) {
            (Received::V311(p), Some(c), _) => c.ack(p).await.is_ok(),
            (Received::V5(p), _, Some(c)) => c.ack(p).await.is_ok(),
            _ => false,
        };
        sent.then_some(()).ok_or(LinkClosed)
    }
}

/// The session with the broker, over the configured or negotiated protocol version.
pub(super) struct Link {
    current: Version,
    /// Whether `current` is fixed: configured, or chosen by `auto` at its first CONNACK.
    settled: bool,
    /// Between a CONNACK and the next error; an error outside is a failed handshake.
    connected: bool,
    v311: Option<v311::Session>,
    v5: Option<v5::Session>,
}

impl Link {
    /// Creates the client(s); nothing connects before the first [`Link::poll`].
    pub fn new(setting: MqttProtocol, opts: &LinkOptions) -> Link {
        let wants = |v: Version| setting == MqttProtocol::Auto || setting.first() == v;
        Link {
            current: setting.first(),
            settled: setting != MqttProtocol::Auto,
            connected: false,
            v311: wants(Version::V311).then(|| v311::Session::new(opts)),
            v5: wants(Version::V5).then(|| v5::Session::new(opts)),
        }
    }

    pub fn acker(&self) -> Acker {
        Acker {
            v311: self.v311.as_ref().map(v311::Session::client),
            v5: self.v5.as_ref().map(v5::Session::client),
        }
    }

    /// The version of the current (or next) connection.
    pub fn version(&self) -> Version {
        self.current
    }

    /// Drives the connection: connects when not connected, then yields the next event.
    /// Cancel-safe like rumqttc's own `poll`.
    /// A message the event loop has already read from the socket and decoded (rumqttc reads
    /// many packets per socket read and queues them), without polling it. Polling builds the
    /// event loop's whole future, several kilobytes copied per call, which was a tenth of the
    /// node's CPU when taken once per message. `None` when the next queued event is not a
    /// message, or nothing is queued: [`Link::poll`] then handles it.
    pub fn buffered_message(&mut self) -> Option<Received> {
        match (self.current, &mut self.v311, &mut self.v5) {
            (Version::V311, Some(s), _) => s.buffered_message(),
            (Version::V5, _, Some(s)) => s.buffered_message(),
            _ => None,
        }
    }

    pub async fn poll(&mut self) -> Result<LinkEvent, LinkError> {
        loop {
            let result = match (self.current, &mut self.v311, &mut self.v5) {
                (Version::V311, Some(s), _) => s.poll().await,
                (Version::V5, _, Some(s)) => s.poll().await,
                _ => unreachable!("a link holds the session of its current version"),
            };
            match &result {
                Ok(LinkEvent::Connected { .. }) => {
                    self.connected = true;
                    self.settle();
                }
                Err(e) => {
                    let in_handshake = !std::mem::replace(&mut self.connected, false);
                    if !self.settled && in_handshake {
                        match self.current {
                            Version::V5
                                if matches!(
                                    e.kind,
                                    FailureKind::VersionRefused | FailureKind::Closed
                                ) =>
                            {
                                tracing::info!(error = %e.message,
                                    "the MQTT broker did not accept MQTT 5; trying 3.1.1");
                                self.current = Version::V311;
                                continue;
                            }
                            // 3.1.1 failed as well, so the refusal of 5 may have been a
                            // broker going away: the next attempt tries 5 again.
                            Version::V311 => self.current = Version::V5,
                            Version::V5 => {}
                        }
                    }
                }
                Ok(_) => {}
            }
            return result;
        }
    }

    fn settle(&mut self) {
        if self.settled {
            return;
        }
        self.settled = true;
        // The other version's client is never used again; acks for it cannot exist, since it
        // never connected.
        match self.current {
            Version::V311 => self.v5 = None,
            Version::V5 => self.v311 = None,
        }
        tracing::info!(protocol = %self.current, "MQTT protocol chosen for this broker");
    }

    /// Subscribes to `subs` without waiting (see [`v311::Session::subscribe`]).
    pub fn subscribe(&self, subs: &[Subscription]) {
        match self.current {
            Version::V311 => self.v311.as_ref().map(|s| s.subscribe(subs)),
            Version::V5 => self.v5.as_ref().map(|s| s.subscribe(subs)),
        };
    }

    /// Unsubscribes from every filter of `subs`, one UNSUBSCRIBE each, without waiting.
    pub fn unsubscribe(&self, subs: &[Subscription]) {
        match self.current {
            Version::V311 => self.v311.as_ref().map(|s| s.unsubscribe(subs)),
            Version::V5 => self.v5.as_ref().map(|s| s.unsubscribe(subs)),
        };
    }

    /// Queues a DISCONNECT; false when the event loop can no longer take it.
    pub fn try_disconnect(&self) -> bool {
        match self.current {
            Version::V311 => self.v311.as_ref().is_some_and(|s| s.try_disconnect()),
            Version::V5 => self.v5.as_ref().is_some_and(|s| s.try_disconnect()),
        }
    }
}
