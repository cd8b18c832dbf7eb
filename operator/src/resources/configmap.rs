//! The ConfigMap holding the `config.yaml` every node reads (`--config`).
//!
//! Only settings shared by every pod live here; per-pod identity and addresses are flags in
//! the StatefulSet, so one ConfigMap serves all ordinals.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{json, Map, Value};

use super::{owned_meta, paths, Component, Names};
use crate::crd::TimeSeriesCluster;

/// Renders `config.yaml` with the keys of `tsdb_node::config::Config`.
pub fn config_yaml(tsc: &TimeSeriesCluster) -> Result<String, serde_yaml::Error> {
    let spec = &tsc.spec;
    let mut doc = Map::new();
    doc.insert(
        "server".into(),
        json!({
            "bind_address": "0.0.0.0",
            "tcp_port": spec.ports.tcp,
            "binary_port": spec.ports.binary,
            // Below the pod's termination grace period, so the node finishes its own drain
            // and flush before the kubelet escalates to SIGKILL.
            "shutdown_grace": "20s",
        }),
    );
    doc.insert("query".into(), json!({ "http_port": spec.ports.http }));
    doc.insert(
        "storage".into(),
        json!({ "data_dir": paths::DATA_DIR, "wal_dir": paths::WAL_DIR }),
    );
    if let Some(r) = &spec.retention {
        let mut m = Map::new();
        for (key, v) in [
            ("raw", &r.raw),
            ("1m", &r.rollup_1m),
            ("5m", &r.rollup_5m),
            ("1h", &r.rollup_1h),
        ] {
            if let Some(v) = v {
                m.insert(key.into(), Value::String(v.clone()));
            }
        }
        if !m.is_empty() {
            doc.insert("retention".into(), Value::Object(m));
        }
    }
    if let Some(users) = &spec.users_secret {
        doc.insert(
            "auth".into(),
            json!({ "users_file": format!("{}/{}", paths::USERS_DIR, users.key) }),
        );
    }
    if spec.tls.is_some() {
        doc.insert(
            "tls".into(),
            json!({
                "cert_file": format!("{}/tls.crt", paths::TLS_DIR),
                "key_file": format!("{}/tls.key", paths::TLS_DIR),
            }),
        );
    }
    if let Some(mqtt) = &spec.mqtt {
        let mut m = Map::new();
        m.insert("broker".into(), Value::String(mqtt.broker.clone()));
        if !mqtt.topics.is_empty() {
            m.insert("topics".into(), json!(mqtt.topics));
        }
        if let Some(u) = &mqtt.username {
            m.insert("username".into(), Value::String(u.clone()));
        }
        // One shared subscription per cluster: the broker hands each message to one node,
        // whatever the replica count (set even for one replica, so scaling does not change
        // the config and roll every pod).
        m.insert(
            "shared_group".into(),
            Value::String(format!(
                "strata-{}",
                tsc.metadata.name.as_deref().unwrap_or("cluster")
            )),
        );
        // The password never enters the ConfigMap: it reaches the node as
        // STRATA_MQTT__PASSWORD from the Secret.
        doc.insert("mqtt".into(), Value::Object(m));
    }
    serde_yaml::to_string(&Value::Object(doc))
}

/// The ConfigMap `<name>-config` with key `config.yaml`.
pub fn configmap(tsc: &TimeSeriesCluster) -> Result<ConfigMap, serde_yaml::Error> {
    let names = Names::of(tsc);
    Ok(ConfigMap {
        metadata: owned_meta(tsc, &names, names.configmap(), Component::Node),
        data: Some(BTreeMap::from([(
            "config.yaml".to_string(),
            config_yaml(tsc)?,
        )])),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::test_support::cluster;

    #[test]
    fn minimal_cluster_config_is_what_the_node_reads() {
        let tsc = cluster("tsc", "{}");
        let cm = configmap(&tsc).unwrap();
        assert_eq!(cm.metadata.name.as_deref(), Some("tsc-config"));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("metrics"));
        let owner = &cm.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(owner.kind, "TimeSeriesCluster");
        assert_eq!(owner.controller, Some(true));
        let text = &cm.data.as_ref().unwrap()["config.yaml"];
        let cfg = tsdb_node::config::Config::from_yaml(text, "configmap", Vec::new())
            .expect("the node accepts the rendered config");
        assert_eq!(cfg.http_addr(), "0.0.0.0:8181");
        assert_eq!(cfg.tcp_addr(), "0.0.0.0:5433");
        assert_eq!(cfg.binary_addr(), "0.0.0.0:9876");
        assert_eq!(cfg.storage.wal_dir, std::path::Path::new(paths::WAL_DIR));
        assert_eq!(cfg.storage.data_dir, std::path::Path::new(paths::DATA_DIR));
        assert!(cfg.auth.users_file.is_none());
    }

    #[test]
    fn every_optional_section_is_rendered_and_accepted() {
        let tsc = cluster(
            "tsc",
            r#"
ports: {http: 8080, tcp: 6000, binary: 7000}
retention: {raw: 30d, 1m: 90d, 5m: 180d, 1h: "0"}
usersSecret: {name: strata-users, key: users.yaml}
tls: {secretName: strata-tls}
mqtt: {broker: "tcp://mosquitto:1883", topics: ["iot/sensors/+"], username: ingest,
       passwordSecret: {name: mqtt, key: password}}
"#,
        );
        let text = config_yaml(&tsc).unwrap();
        assert!(
            !text.contains("password:"),
            "no secret in the ConfigMap: {text}"
        );
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(doc["auth"]["users_file"], "/etc/strata/users/users.yaml");
        assert_eq!(doc["tls"]["cert_file"], "/etc/strata/tls/tls.crt");
        assert_eq!(doc["mqtt"]["username"], "ingest");
        // The node checks that users_file and the TLS files exist, so point them at real
        // files before handing the config to the node's own parser.
        let dir = tempfile::tempdir().unwrap();
        let users = dir.path().join("users.yaml");
        std::fs::write(&users, "[]\n").unwrap();
        let local = text.replace("/etc/strata/users/users.yaml", users.to_str().unwrap());
        let local = local
            .replace("/etc/strata/tls/tls.crt", "/nonexistent/tls.crt")
            .replace("/etc/strata/tls/tls.key", "/nonexistent/tls.key");
        let cfg = tsdb_node::config::Config::from_yaml(&local, "configmap", Vec::new())
            .expect("the node accepts every section");
        assert_eq!(cfg.http_addr(), "0.0.0.0:8080");
        assert_eq!(cfg.mqtt.topics, vec!["iot/sensors/+".to_string()]);
        assert_eq!(cfg.mqtt.shared_group.as_deref(), Some("strata-tsc"));
        assert_eq!(
            cfg.retention.raw.0,
            std::time::Duration::from_secs(30 * 86_400)
        );
    }
}
