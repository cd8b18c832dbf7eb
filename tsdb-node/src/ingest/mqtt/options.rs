//! Turns the `mqtt` config section into connection options (address, identity, session,
//! credentials, TLS) and the subscription list, independent of the protocol version.

use std::path::Path;
use std::sync::Arc;

use std::time::Duration;

use rumqttc::{TlsConfiguration, Transport};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;

use super::{BrokerUrl, MqttError};
use crate::config::MqttConfig;

/// The client id used when `mqtt.client_id` is not set: the node id (prefixed `strata-` unless
/// it already is), stable per node so that a restarted node resumes its persistent session.
pub fn default_client_id(node_id: &str) -> String {
    // Brokers accept at least 23 bytes of [0-9a-zA-Z] (MQTT 3.1.1 §3.1.3.1) and mosquitto
    // and rumqttd accept far longer ids; keep what a pod name can hold.
    if node_id.starts_with("strata") {
        node_id.to_string()
    } else {
        format!("strata-{node_id}")
    }
}

/// What a connection needs, whatever the protocol version; [`super::link`] turns it into the
/// options of rumqttc's 3.1.1 or 5 client.
#[derive(Clone)]
pub(super) struct LinkOptions {
    pub client_id: String,
    pub host: String,
    pub port: u16,
    pub keep_alive: Duration,
    pub credentials: Option<(String, String)>,
    pub transport: Transport,
    /// 3.1.1 `clean_session`, 5 `clean_start` (and a zero session expiry).
    pub clean_session: bool,
    /// MQTT 5 session expiry interval, in seconds.
    pub session_expiry_secs: u32,
    pub max_packet_bytes: usize,
}

/// Connection options for `cfg`. Relative certificate paths are resolved against `base`.
pub(super) fn link_options(
    cfg: &MqttConfig,
    url: &BrokerUrl,
    node_id: &str,
    base: &Path,
) -> Result<LinkOptions, MqttError> {
    let client_id = cfg
        .client_id
        .clone()
        .unwrap_or_else(|| default_client_id(node_id));
    let transport = if url.tls {
        Transport::tls_with_config(TlsConfiguration::Rustls(Arc::new(tls_config(cfg, base)?)))
    } else {
        Transport::tcp()
    };
    Ok(LinkOptions {
        client_id,
        host: url.host.clone(),
        port: url.port,
        keep_alive: cfg.keep_alive.0.max(Duration::from_secs(1)),
        credentials: cfg
            .username
            .as_ref()
            .map(|u| (u.clone(), cfg.password.clone().unwrap_or_default())),
        transport,
        clean_session: cfg.clean_session,
        session_expiry_secs: u32::try_from(cfg.session_expiry.0.as_secs()).unwrap_or(u32::MAX),
        max_packet_bytes: cfg.max_packet_bytes,
    })
}

/// Capacity of the client's request channel (acks, subscriptions, the disconnect).
///
/// The dispatcher must never wait for room in it: the only task draining it is the event loop,
/// which may itself be waiting for the dispatcher to take the next message, and under load
/// the event loop serves buffered incoming packets before queued requests. Unacknowledged
/// QoS 1 messages each hold a distinct 16-bit packet id, so at most 65 535 acks can be
/// outstanding; twice that always fits. The channel allocates only what it holds.
pub(super) fn request_capacity() -> usize {
    2 << 16
}

/// One topic filter to subscribe to, whatever the protocol version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// The filter as sent, `$share/<group>/` included.
    pub path: String,
    /// QoS 1 (acknowledged after the durable write) rather than 0.
    pub at_least_once: bool,
}

/// The filters to subscribe to, as shared subscriptions when a group is configured.
pub fn subscriptions(cfg: &MqttConfig) -> Vec<Subscription> {
    cfg.topics
        .iter()
        .map(|t| Subscription {
            path: match &cfg.shared_group {
                Some(g) => format!("$share/{g}/{t}"),
                None => t.clone(),
            },
            at_least_once: cfg.qos == 1,
        })
        .collect()
}

fn tls_config(cfg: &MqttConfig, base: &Path) -> Result<rustls::ClientConfig, MqttError> {
    let tls_err = |what: String| MqttError::Tls(what);
    let mut roots = rustls::RootCertStore::empty();
    match &cfg.ca_file {
        Some(ca) => {
            let path = base.join(ca);
            let certs = CertificateDer::pem_file_iter(&path)
                .map_err(|e| tls_err(format!("{}: {e}", path.display())))?;
            for cert in certs {
                let cert = cert.map_err(|e| tls_err(format!("{}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| tls_err(format!("{}: {e}", path.display())))?;
            }
            if roots.is_empty() {
                return Err(tls_err(format!(
                    "{}: no certificates found",
                    path.display()
                )));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls_err(e.to_string()))?
    .with_root_certificates(roots);
    match (&cfg.client_cert_file, &cfg.client_key_file) {
        (Some(cert), Some(key)) => {
            let cert_path = base.join(cert);
            let key_path = base.join(key);
            let chain = CertificateDer::pem_file_iter(&cert_path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| tls_err(format!("{}: {e}", cert_path.display())))?;
            let key = PrivateKeyDer::from_pem_file(&key_path)
                .map_err(|e| tls_err(format!("{}: {e}", key_path.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| tls_err(e.to_string()))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_group_prefixes_every_filter() {
        let cfg = MqttConfig {
            topics: vec!["iot/sensors/+".into(), "plant/#".into()],
            shared_group: Some("strata".into()),
            qos: 0,
            ..MqttConfig::default()
        };
        let subs = subscriptions(&cfg);
        assert_eq!(subs[0].path, "$share/strata/iot/sensors/+");
        assert_eq!(subs[1].path, "$share/strata/plant/#");
        assert!(!subs[0].at_least_once);
        let plain = subscriptions(&MqttConfig::default());
        assert_eq!(plain[0].path, "iot/sensors/+");
        assert!(plain[0].at_least_once);
    }

    #[test]
    fn tls_config_from_a_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.cert.pem()).unwrap();
        let mut cfg = MqttConfig {
            ca_file: Some("ca.pem".into()),
            ..MqttConfig::default()
        };
        let url = BrokerUrl::parse("ssl://localhost").unwrap();
        assert!(link_options(&cfg, &url, "n1", dir.path()).is_ok());
        cfg.ca_file = Some("missing.pem".into());
        assert!(link_options(&cfg, &url, "n1", dir.path()).is_err());
        std::fs::write(dir.path().join("empty.pem"), "").unwrap();
        cfg.ca_file = Some("empty.pem".into());
        assert!(link_options(&cfg, &url, "n1", dir.path()).is_err());
    }
}
