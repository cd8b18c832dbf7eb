//! End-to-end scenarios for Strata on Kubernetes, run against a [`Target`]: a real cluster
//! through `kubectl` ([`kind::KindTarget`]) or the local cluster twin ([`twin::Twin`]), which
//! starts node processes from the exact pod template the operator renders.

pub mod broker;
pub mod client;
pub mod kind;
pub mod scenarios;
pub mod twin;

/// Where clients reach the cluster's Service.
#[derive(Clone, Debug)]
pub struct Endpoints {
    /// `http://host:port` of the HTTP API.
    pub http: String,
    /// `host:port` of the TCP JSON listener.
    pub tcp_json: String,
    /// `host:port` of the binary listener.
    pub binary: String,
    /// `tcp://host:port` of the MQTT broker the nodes subscribe to, as a publisher outside
    /// the cluster reaches it; `None` when the cluster has no MQTT ingest.
    pub mqtt: Option<String>,
}

/// A running Strata cluster the scenarios can drive.
pub trait Target {
    /// The client Service: each call may land on a different node.
    fn endpoints(&mut self) -> anyhow::Result<Endpoints>;
    /// User and password of the TCP JSON protocol.
    fn credentials(&self) -> (String, String);
    /// Kills pod `ordinal` without warning and waits until it is back and ready.
    fn kill_pod(&mut self, ordinal: i32) -> anyhow::Result<()>;
    /// Changes the image and waits until every pod runs it and is ready.
    fn roll_image(&mut self, image: &str) -> anyhow::Result<()>;
    /// Changes the replica count and waits until the cluster is steady at it.
    fn scale(&mut self, replicas: i32) -> anyhow::Result<()>;
    /// Whether the nodes form one cluster (the multi-node scenarios need it).
    fn clustered(&mut self) -> anyhow::Result<bool>;
    /// Deletes the cluster and checks that it is gone: every pod ended cleanly, nothing
    /// the operator created is left behind.
    fn uninstall(&mut self) -> anyhow::Result<()>;
}
