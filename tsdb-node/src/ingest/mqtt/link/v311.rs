//! MQTT 3.1.1 through rumqttc's 3.1.1 client. The persistent session is `clean_session =
//! false`; mosquitto keeps it until `persistent_client_expiration` (forever by default).

use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS,
    SubscribeFilter, SubscribeReasonCode,
};

use super::{FailureKind, LinkError, LinkEvent, Received};
use crate::ingest::mqtt::options::{request_capacity, LinkOptions, Subscription};
use crate::ingest::mqtt::protocol::Version;

/// Outgoing packets are acks, subscriptions and the disconnect only.
const MAX_OUTGOING_PACKET: usize = 64 << 10;

pub(super) struct Session {
    client: AsyncClient,
    eventloop: EventLoop,
}

impl Session {
    pub fn new(o: &LinkOptions) -> Session {
        let mut m = MqttOptions::new(o.client_id.clone(), o.host.clone(), o.port);
        m.set_clean_session(o.clean_session)
            .set_keep_alive(o.keep_alive.max(Duration::from_secs(1)))
            .set_max_packet_size(o.max_packet_bytes, MAX_OUTGOING_PACKET)
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
            Some(Event::Incoming(Packet::Publish(p))) => Some(Received::V311(p)),
            _ => None,
        }
    }

    pub async fn poll(&mut self) -> Result<LinkEvent, LinkError> {
        match self.eventloop.poll().await {
            Ok(Event::Incoming(Packet::Publish(p))) => Ok(LinkEvent::Message(Received::V311(p))),
            Ok(Event::Incoming(Packet::ConnAck(a))) => Ok(LinkEvent::Connected {
                session_present: a.session_present,
            }),
            Ok(Event::Incoming(Packet::SubAck(a))) => Ok(LinkEvent::Subscribed(
                a.return_codes
                    .iter()
                    .map(|c| match c {
                        SubscribeReasonCode::Success(_) => Ok(()),
                        SubscribeReasonCode::Failure => Err("failure (0x80)".to_string()),
                    })
                    .collect(),
            )),
            Ok(Event::Incoming(Packet::UnsubAck(_))) => Ok(LinkEvent::Unsubscribed),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => Ok(LinkEvent::Disconnected),
            Ok(_) => Ok(LinkEvent::Other),
            Err(e) => Err(LinkError {
                version: Version::V311,
                kind: classify(&e),
                message: e.to_string(),
            }),
        }
    }

    /// Subscribes without waiting: the event loop that would drain a full request channel is
    /// the caller's task, so a blocking send could deadlock.
    pub fn subscribe(&self, subs: &[Subscription]) {
        let filters: Vec<SubscribeFilter> = subs
            .iter()
            .map(|s| {
                let qos = if s.at_least_once {
                    QoS::AtLeastOnce
                } else {
                    QoS::AtMostOnce
                };
                SubscribeFilter::new(s.path.clone(), qos)
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

fn classify(e: &ConnectionError) -> FailureKind {
    match e {
        ConnectionError::ConnectionRefused(rumqttc::ConnectReturnCode::RefusedProtocolVersion) => {
            FailureKind::VersionRefused
        }
        ConnectionError::ConnectionRefused(_) => FailureKind::Refused,
        _ => FailureKind::Other,
    }
}
