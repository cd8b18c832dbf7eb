//! MQTT ingest (DESIGN.md "Ingest contracts" 3, seed 001): the node subscribes to a broker
//! and stores every sensor reading it is handed.
//!
//! Four parts, each in its own file, as with the other protocols:
//! - [`payload`]: message bytes → sample (pure; property-tested and fuzzed);
//! - [`link`]: one broker session over MQTT 5 or 3.1.1 (`mqtt.protocol`, [`protocol`]):
//!   `auto` speaks 5 where the broker does and falls back to 3.1.1 where it does not;
//! - [`connection`]: drives the link, (re)subscription, reconnect with backoff;
//! - [`dispatch`]: batches → [`IngestSink::write`] → acknowledgements, QoS 1 acked only after
//!   the write is durable.
//!
//! Both versions keep a persistent session (3.1.1 `clean_session = false`, 5 `clean_start =
//! false` with `mqtt.session_expiry`), and brokers such as mosquitto and EMQX accept
//! `$share/<group>/<filter>` shared subscriptions over either.

mod broker;
mod connection;
mod dispatch;
mod link;
mod metrics;
mod options;
pub mod payload;
mod protocol;
mod subscribed;
mod url;

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub use broker::start_embedded;
pub use link::refuses_v5;
pub use metrics::{MqttCounts, MqttMetrics};
pub use options::{default_client_id, subscriptions, Subscription};
pub use payload::{PayloadError, PayloadMapping, SeriesCache, TimestampUnit};
pub use protocol::{MqttProtocol, Version};
pub use url::BrokerUrl;

use crate::config::MqttConfig;
use crate::ingest::label_cache::DEFAULT_LABEL_CACHE_ENTRIES;
use crate::ingest::IngestSink;

#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("mqtt.broker: {0}")]
    Url(String),
    #[error("mqtt.payload: {0}")]
    Mapping(String),
    #[error("MQTT TLS: {0}")]
    Tls(String),
    #[error("embedded MQTT broker on {addr}: {source}")]
    EmbeddedBroker {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Where the subscriber runs: the node's identity and directories.
#[derive(Clone, Copy, Debug)]
pub struct MqttNode<'a> {
    /// Node id; the default client id is derived from it.
    pub node_id: &'a str,
    /// Directory relative certificate paths are resolved against.
    pub config_dir: &'a Path,
    /// The node's data directory, where the session's subscriptions are remembered; `None`
    /// keeps no record.
    pub data_dir: Option<&'a Path>,
}

/// A running MQTT subscriber.
pub struct MqttIngest {
    task: JoinHandle<()>,
}

impl MqttIngest {
    /// Connects (in the background, retrying forever) to `cfg.broker` and stores what arrives
    /// through `sink`. Stops when `stop` turns true: the last batch is stored and
    /// acknowledged, then the client disconnects. When `leave` turns true (the node is
    /// decommissioned) it unsubscribes first, so that the broker hands its messages to the
    /// nodes that stay, then stops the same way. The session's subscriptions are remembered
    /// under `data_dir`, so that filters a new configuration dropped are unsubscribed from.
    /// Errors only on invalid configuration.
    pub fn start(
        cfg: &MqttConfig,
        node: MqttNode<'_>,
        sink: IngestSink,
        metrics: Arc<MqttMetrics>,
        stop: watch::Receiver<bool>,
        leave: Option<watch::Receiver<bool>>,
    ) -> Result<Option<MqttIngest>, MqttError> {
        let Some(broker) = &cfg.broker else {
            return Ok(None);
        };
        let url = BrokerUrl::parse(broker).map_err(MqttError::Url)?;
        let mapping = PayloadMapping::from_config(&cfg.payload)
            .map_err(MqttError::Mapping)?
            .with_max_payload_bytes(cfg.max_payload_bytes);
        let opts = options::link_options(cfg, &url, node.node_id, node.config_dir)?;
        tracing::info!(broker = %url, client_id = %opts.client_id, topics = ?cfg.topics,
            shared_group = ?cfg.shared_group, qos = cfg.qos, protocol = %cfg.protocol,
            "starting MQTT ingest");
        let link = link::Link::new(cfg.protocol, &opts);
        let generation = Arc::new(AtomicU64::new(0));
        // Messages travel in hand-overs of up to `inbound_max`; room for two batches of full
        // ones (one being written, one filling up). Smaller hand-overs fill the channel
        // sooner, but only while the node keeps up: once the connection loop waits for room,
        // the socket fills and the hand-overs that follow are full.
        let inbound_max = cfg.batch_max_messages.min(connection::INBOUND_MAX);
        let (tx, rx) = mpsc::channel(
            cfg.batch_max_messages
                .saturating_mul(2)
                .div_ceil(inbound_max)
                .max(2),
        );
        let (done_tx, done_rx) = oneshot::channel();
        let dispatcher = dispatch::Dispatcher {
            sink,
            mapping,
            series: SeriesCache::new(DEFAULT_LABEL_CACHE_ENTRIES),
            acker: link.acker(),
            metrics: metrics.clone(),
            generation: generation.clone(),
            batch_max: cfg.batch_max_messages,
            qos0_linger: cfg.qos0_linger.0,
            retry_min: cfg.reconnect_min.0,
            retry_max: cfg.reconnect_max.0,
            stop: stop.clone(),
        };
        let connection = connection::Connection {
            link,
            url,
            subscriptions: subscriptions(cfg),
            metrics,
            generation,
            inbound_max,
            reconnect_min: cfg.reconnect_min.0,
            reconnect_max: cfg.reconnect_max.0,
            read_pause: connection::read_pause(cfg.qos0_linger.0),
            record: node.data_dir.map(subscribed::SubscribedRecord::new),
        };
        tokio::spawn(async move {
            dispatcher.run(rx).await;
            let _ = done_tx.send(());
        });
        let task = tokio::spawn(connection.run(tx, stop, leave, done_rx));
        Ok(Some(MqttIngest { task }))
    }

    /// Waits until the subscriber has stopped (after `stop` turned true).
    pub async fn join(self) {
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "MQTT connection task failed");
        }
    }
}
