//! MQTT 5 through rumqttc's `v5` client. The persistent session is `clean_start = false`
//! with a session expiry interval (`mqtt.session_expiry`), so that the broker queues QoS 1
//! messages while the node restarts. No Receive Maximum is sent, so the client's window is the
//! protocol default (65 535); the dispatcher acks whole batches after each durable write.

use std::io;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{ConnectReturnCode, Filter, Packet, SubscribeReasonCode};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, StateError};
use rumqttc::Outgoing;

use super::{FailureKind, LinkError, LinkEvent, Received};
use crate::ingest::mqtt::options::{request_capacity, LinkOptions, Subscription};
use crate::ingest::mqtt::protocol::Version;

/// rumqttc's v5 client refuses keep-alives below 5 s.
const MIN_KEEP_ALIVE: Duration = Duration::from_secs(5);

pub(super) struct Session {
    client: AsyncClient,
    eventloop: EventLoop,
}

impl Session {
    pub fn new(o: &LinkOptions) -> Session {
        let mut m = MqttOptions::new(o.client_id.clone(), o.host.clone(), o.port);
        let expiry = if o.clean_session {
            0
        } else {
            o.session_expiry_secs
        };
        m.set_clean_start(o.clean_session)
            .set_session_expiry_interval(Some(expiry))
            .set_keep_alive(o.keep_alive.max(MIN_KEEP_ALIVE))
            // Also sent to the broker (Maximum Packet Size), which then drops larger messages
            // for us instead of breaking the connection as a 3.1.1 client must.
            .set_max_packet_size(Some(u32::try_from(o.max_packet_bytes).unwrap_or(u32::MAX)))
            // Acknowledgements are sent by the dispatcher once the batch is durable.
            .set_manual_acks(true)
            .set_request_channel_capacity(request_capacity())
            .set_transport(o.transport.clone());
        if let Some((user, password)) = &o.credentials {
            m.set_credentials(user.clone(), password.clone());
        }
        let (client, eventloop) = AsyncClient::new(m, request_capacity());
        Session { client, eventloop }
    }

    pub fn client(&self) -> AsyncClient {
        self.client.clone()
    }

    /// A message the event loop has already read and decoded, taken from its queue without
    /// polling it (see [`super::Link::buffered_message`]).
    pub fn buffered_message(&mut self) -> Option<Received> {
        let events = &mut self.eventloop.state.events;
        if !matches!(events.front(), Some(Event::Incoming(Packet::Publish(_)))) {
            return None;
        }
        match events.pop_front() {
            Some(Event::Incoming(Packet::Publish(p))) => Some(Received::V5(p)),
            _ => None,
        }
    }

    pub async fn poll(&mut self) -> Result<LinkEvent, LinkError> {
        match self.eventloop.poll().await {
            Ok(Event::Incoming(Packet::Publish(p))) => Ok(LinkEvent::Message(Received::V5(p))),
            Ok(Event::Incoming(Packet::ConnAck(a))) => Ok(LinkEvent::Connected {
                session_present: a.session_present,
            }),
            Ok(Event::Incoming(Packet::SubAck(a))) => Ok(LinkEvent::Subscribed(
                a.return_codes
                    .iter()
                    .map(|c| match c {
                        SubscribeReasonCode::Success(_) => Ok(()),
                        refused => Err(format!("{refused:?}")),
                    })
                    .collect(),
            )),
            Ok(Event::Incoming(Packet::UnsubAck(_))) => Ok(LinkEvent::Unsubscribed),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => Ok(LinkEvent::Disconnected),
            Ok(_) => Ok(LinkEvent::Other),
            Err(e) => Err(LinkError {
                version: Version::V5,
                kind: classify(&e),
                message: e.to_string(),
            }),
        }
    }

    /// Subscribes without waiting: the event loop that would drain a full request channel is
    /// the caller's task, so a blocking send could deadlock.
    pub fn subscribe(&self, subs: &[Subscription]) {
        let filters: Vec<Filter> = subs
            .iter()
            .map(|s| {
                let qos = if s.at_least_once {
                    QoS::AtLeastOnce
                } else {
                    QoS::AtMostOnce
                };
                Filter::new(s.path.clone(), qos)
            })
            .collect();
        if let Err(e) = self.client.try_subscribe_many(filters.clone()) {
            tracing::debug!(error = %e, "request channel full; subscribing in the background");
            let client = self.client.clone();
            tokio::spawn(async move {
                let _ = client.subscribe_many(filters).await;
            });
        }
    }

    /// Unsubscribes without waiting, for the same reason as [`Session::subscribe`].
    pub fn unsubscribe(&self, subs: &[Subscription]) {
        for s in subs {
            if let Err(e) = self.client.try_unsubscribe(s.path.clone()) {
                tracing::debug!(error = %e, "request channel full; unsubscribing in the background");
                let client = self.client.clone();
                let path = s.path.clone();
                tokio::spawn(async move {
                    let _ = client.unsubscribe(path).await;
                });
            }
        }
    }

    pub fn try_disconnect(&self) -> bool {
        self.client.try_disconnect().is_ok()
    }
}

/// Whether `e`, the failure of an MQTT 5 connection attempt, is how a broker that does not
/// speak 5 answers (a refused version, a closed connection, an unreadable CONNACK): where
/// `auto` falls back to 3.1.1. Also used by `stratactl simulate mqtt`.
pub fn refuses_v5(e: &ConnectionError) -> bool {
    matches!(
        classify(e),
        FailureKind::VersionRefused | FailureKind::Closed
    )
}

/// Separates what a 3.1.1-only broker does to an MQTT 5 CONNECT (refuse the version, close
/// the connection, or answer with a 3.1.1 CONNACK that is not valid MQTT 5) from failures
/// that happen before any CONNECT was sent (no route, connection refused, TLS).
fn classify(e: &ConnectionError) -> FailureKind {
    let closed = |e: &io::Error| {
        matches!(
            e.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::UnexpectedEof
                | io::ErrorKind::BrokenPipe
        )
    };
    match e {
        ConnectionError::ConnectionRefused(
            ConnectReturnCode::UnsupportedProtocolVersion
            | ConnectReturnCode::RefusedProtocolVersion,
        ) => FailureKind::VersionRefused,
        ConnectionError::ConnectionRefused(_) => FailureKind::Refused,
        ConnectionError::Io(io) if closed(io) => FailureKind::Closed,
        ConnectionError::MqttState(StateError::Io(io)) if closed(io) => FailureKind::Closed,
        ConnectionError::MqttState(
            StateError::ConnectionAborted | StateError::Deserialization(_),
        )
        | ConnectionError::NotConnAck(_) => FailureKind::Closed,
        _ => FailureKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_3_1_1_broker_does_to_a_v5_connect_is_told_apart() {
        let refused =
            ConnectionError::ConnectionRefused(ConnectReturnCode::UnsupportedProtocolVersion);
        assert_eq!(classify(&refused), FailureKind::VersionRefused);
        let auth = ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized);
        assert_eq!(classify(&auth), FailureKind::Refused);
        let closed = ConnectionError::MqttState(StateError::ConnectionAborted);
        assert_eq!(classify(&closed), FailureKind::Closed);
        let reset = ConnectionError::Io(io::ErrorKind::ConnectionReset.into());
        assert_eq!(classify(&reset), FailureKind::Closed);
        // No TCP connection at all: the broker is down, not old.
        let down = ConnectionError::Io(io::ErrorKind::ConnectionRefused.into());
        assert_eq!(classify(&down), FailureKind::Other);
    }
}
