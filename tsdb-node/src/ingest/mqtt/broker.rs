//! The embedded development broker (`strata-node --dev`): rumqttd speaking MQTT 3.1.1 on one
//! address, so that `mosquitto_pub` works against a fresh node with nothing else installed.
//! Production deployments use an external broker.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

use super::MqttError;

/// How long [`start_embedded`] waits for rumqttd to accept connections.
const LISTEN_WAIT: Duration = Duration::from_secs(10);

/// Starts rumqttd on `listen` in its own threads (it runs its own runtimes) for the rest of
/// the process, and returns once it accepts connections: the node's own subscriber connects
/// right after, and would otherwise start with a refused connection and a reconnect. The
/// address is bound once first, so that a port in use is reported here instead of inside the
/// broker's thread.
pub async fn start_embedded(listen: SocketAddr) -> Result<(), MqttError> {
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
    let deadline = Instant::now() + LISTEN_WAIT;
    loop {
        match listening(listen.port()) {
            Some(true) => break,
            // Not Linux: no way to look without connecting (which rumqttd logs as an error).
            None => {
                tokio::time::sleep(Duration::from_millis(200)).await;
                break;
            }
            Some(false) if Instant::now() >= deadline => {
                return Err(MqttError::EmbeddedBroker {
                    addr: listen,
                    source: std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("not listening after {LISTEN_WAIT:?}"),
                    ),
                });
            }
            Some(false) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    tracing::info!(%listen, "embedded MQTT broker (development only) is listening");
    Ok(())
}

/// Whether a socket of this host listens on TCP `port`, from `/proc/net/tcp{,6}`; `None`
/// where those files do not exist. Looking instead of connecting keeps rumqttd from logging
/// a client that went away without a CONNECT.
fn listening(port: u16) -> Option<bool> {
    let mut readable = false;
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(table) = std::fs::read_to_string(file) else {
            continue;
        };
        readable = true;
        if listens_in(&table, port) {
            return Some(true);
        }
    }
    readable.then_some(false)
}

/// Whether a `/proc/net/tcp` table has a socket in state LISTEN (`0A`) on local `port`.
fn listens_in(table: &str, port: u16) -> bool {
    let port = format!(":{port:04X}");
    table.lines().skip(1).any(|line| {
        let mut fields = line.split_whitespace().skip(1);
        let local = fields.next().unwrap_or("");
        let state = fields.nth(1).unwrap_or("");
        local.ends_with(&port) && state == "0A"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_listening_sockets_from_the_proc_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue\n\
                     0: 0100007F:075B 00000000:0000 0A 00000000:00000000\n\
                     1: 0100007F:1F90 0100007F:C350 01 00000000:00000000\n";
        assert!(listens_in(table, 1883));
        assert!(!listens_in(table, 8080), "established, not listening");
        assert!(!listens_in(table, 91));
        assert!(!listens_in("", 1883));
    }

    #[test]
    fn sees_a_listener_of_this_process() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(listening(port), Some(true));
        drop(l);
        assert_eq!(listening(port), Some(false));
    }
}
