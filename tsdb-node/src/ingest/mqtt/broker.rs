//! The embedded development broker (`strata-node --dev`): rumqttd speaking MQTT 3.1.1 on one
//! address, so that `mosquitto_pub` works against a fresh node with nothing else installed.
//! Production deployments use an external broker.

use std::collections::HashMap;
use std::net::SocketAddr;

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

use super::MqttError;

/// Starts rumqttd on `listen` in its own threads (it runs its own runtimes) for the rest of
/// the process. The address is bound once first, so that a port in use is reported here
/// instead of inside the broker's thread.
pub fn start_embedded(listen: SocketAddr) -> Result<(), MqttError> {
    drop(
        std::net::TcpListener::bind(listen).map_err(|e| MqttError::EmbeddedBroker {
            addr: listen,
            source: e,
        })?,
    );
    let server = ServerSettings {
        name: "strata-dev-v4".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: 1 << 20,
            max_inflight_count: 1000,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = Config {
        router: RouterConfig {
            max_connections: 1000,
            max_outgoing_packet_count: 1000,
            max_segment_size: 16 << 20,
            max_segment_count: 10,
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Config::default()
    };
    std::thread::Builder::new()
        .name("mqtt-dev-broker".into())
        .spawn(move || {
            let mut broker = Broker::new(config);
            if let Err(e) = broker.start() {
                tracing::error!(error = %e, "the embedded MQTT broker stopped");
            }
        })
        .map_err(|e| MqttError::EmbeddedBroker {
            addr: listen,
            source: e,
        })?;
    tracing::info!(%listen, "embedded MQTT broker (development only) is listening");
    Ok(())
}
