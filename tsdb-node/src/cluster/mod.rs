//! The leaderless cluster: gossip membership, the consistent-hash ring, replicated writes with
//! hinted handoff, and reads that fan out to the replicas and merge.
//!
//! - `membership`: chitchat gossip (UDP 7946), node states and advertised addresses.
//! - `ring`: consistent hashing with 150 virtual nodes per member.
//! - `rpc` (wire types), `server` (tonic service and secret check), `handler` (local work for
//!   peers), `client` (channels to peers): gRPC on 7070.
//! - `write`: split a batch by owner, write to RF replicas, wait for the consistency level.
//! - `hints`: durable hints for owners that did not answer; `view` keeps the membership view
//!   fresh and delivers hints.
//! - `read`: fan-out reads, merge and deduplicate replicas, completeness warnings.
//! - `pushdown` (with `answering`, `verify`): aggregations evaluated on one complete replica
//!   per arc, checked against digests of other owners, and merged from partial aggregates
//!   when that is exact.
//! - `anti_entropy` (with `merkle`, `summaries`, `token_ranges`): replicas compare Merkle
//!   summaries of the ranges they share and pull what they lack; a joining node pulls its
//!   new ranges.
//! - `deletes` (with `tombstones`): deletes applied on every ring member, remembered as
//!   tombstones that repairs respect and anti-entropy passes on.
//! - `removal`: removing a dead node for good on its behalf.
//!
//! A node without seeds and without a gossip address is not clustered at all: nothing here
//! runs and the node behaves as a single node.

pub mod answering;
pub mod anti_entropy;
mod cleanup;
pub mod client;
mod decommission;
pub mod deletes;
pub mod handler;
pub mod hints;
pub mod membership;
pub mod merkle;
pub mod pushdown;
pub mod read;
pub mod removal;
pub mod replication;
pub mod ring;
pub mod rpc;
pub mod server;
pub mod summaries;
pub mod token_ranges;
pub mod tombstones;
pub mod verify;
mod view;
pub mod write;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use membership::Member;
pub use read::ClusterSource;
pub use ring::Ring;

use crate::config::Config;
use crate::storage::Engine;
use client::Peers;
use handler::RpcHandler;
use hints::HintStore;
use membership::{GossipSettings, Membership};
use server::{ClusterRpcServer, SecretCheck};

/// Largest gRPC message between nodes (a write batch or a read answer).
const MAX_MESSAGE_BYTES: usize = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster configuration: {0}")]
    Config(String),
    #[error("gossip: {0}")]
    Gossip(String),
    #[error("binding {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Hints(#[from] hints::HintError),
    #[error(transparent)]
    Tombstones(#[from] tombstones::TombstoneStoreError),
}

/// Lifecycle of a node in the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Started, still learning the membership; already takes writes for its ranges.
    Joining,
    Active,
    /// Decommissioning: handing its data to the remaining owners.
    Leaving,
    /// Out of the ring.
    Left,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Joining => "joining",
            NodeState::Active => "active",
            NodeState::Leaving => "leaving",
            NodeState::Left => "left",
        }
    }

    pub fn parse(s: &str) -> Option<NodeState> {
        Some(match s {
            "joining" => NodeState::Joining,
            "active" => NodeState::Active,
            "leaving" => NodeState::Leaving,
            "left" => NodeState::Left,
            _ => return None,
        })
    }
}

/// Seed 001's node roles. `query` nodes hold no data (they are not in the ring) and serve
/// reads and route writes; `all` and `ingestion` nodes own ring ranges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeMode {
    All,
    Ingestion,
    Query,
}

impl NodeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeMode::All => "all",
            NodeMode::Ingestion => "ingestion",
            NodeMode::Query => "query",
        }
    }

    pub fn parse(s: &str) -> Option<NodeMode> {
        Some(match s {
            "all" => NodeMode::All,
            "ingestion" => NodeMode::Ingestion,
            "query" => NodeMode::Query,
            _ => return None,
        })
    }
}

/// How many owners must store a write before it is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    One,
    Quorum,
    All,
}

impl Consistency {
    pub fn parse(s: &str) -> Option<Consistency> {
        Some(match s {
            "one" => Consistency::One,
            "quorum" => Consistency::Quorum,
            "all" => Consistency::All,
            _ => return None,
        })
    }

    /// Acknowledgements needed out of `replicas` owners.
    pub fn required(self, replicas: usize) -> usize {
        match self {
            Consistency::One => replicas.min(1),
            Consistency::Quorum => replicas / 2 + 1,
            Consistency::All => replicas,
        }
        .min(replicas)
    }
}

/// Everything the cluster layer needs, resolved from the configuration.
#[derive(Clone, Debug)]
pub struct ClusterSettings {
    pub node_id: String,
    pub cluster_id: String,
    pub gossip_listen: SocketAddr,
    pub grpc_listen: SocketAddr,
    /// Host peers use to reach this node's listeners.
    pub advertise_ip: IpAddr,
    pub seeds: Vec<String>,
    pub replication_factor: usize,
    pub consistency: Consistency,
    pub mode: NodeMode,
    pub secret: Option<String>,
    pub gossip_interval: Duration,
    pub rpc_timeout: Duration,
    pub dead_node_grace: Duration,
    /// `<data_dir>/cluster`: hints and the remembered ring members.
    pub state_dir: PathBuf,
    pub max_hint_bytes: u64,
    /// Time between background anti-entropy rounds; zero turns them off (also the round
    /// after start-up that pulls a joining node's ranges).
    pub anti_entropy_interval: Duration,
    /// Whether aggregations may be pushed down to the replicas (`cluster.pushdown`).
    pub pushdown: bool,
    /// Which acknowledged writes a pushed-down answer is checked to contain.
    pub pushdown_verify: verify::VerifyMode,
}

impl ClusterSettings {
    /// `None` when the node is not clustered (no seeds and no gossip address).
    pub fn from_config(
        cfg: &Config,
        base_dir: &std::path::Path,
        node_id: &str,
    ) -> Result<Option<ClusterSettings>, ClusterError> {
        let c = &cfg.cluster;
        if c.seeds.is_empty() && c.gossip_addr.is_none() {
            return Ok(None);
        }
        let parse = |key: &str, v: &str| -> Result<SocketAddr, ClusterError> {
            v.parse()
                .map_err(|e| ClusterError::Config(format!("{key} {v:?}: {e}")))
        };
        let default_host = &cfg.server.bind_address;
        let gossip_listen = parse(
            "cluster.gossip_addr",
            c.gossip_addr
                .as_deref()
                .unwrap_or(&format!("{default_host}:7946")),
        )?;
        let grpc_listen = parse(
            "cluster.grpc_addr",
            c.grpc_addr
                .as_deref()
                .unwrap_or(&format!("{default_host}:7070")),
        )?;
        let advertise_ip =
            match c
                .advertise_host
                .clone()
                .or_else(|| std::env::var("POD_IP").ok())
            {
                Some(h) => h.parse().map_err(|e| {
                    ClusterError::Config(format!("cluster.advertise_host {h:?} is not an IP: {e}"))
                })?,
                None if !gossip_listen.ip().is_unspecified() => gossip_listen.ip(),
                None => return Err(ClusterError::Config(
                    "the gossip address is a wildcard: set cluster.advertise_host or $POD_IP to \
                     the address peers should use"
                        .into(),
                )),
            };
        let secret = match (&c.secret, &c.secret_file) {
            (Some(s), _) => Some(s.clone()),
            (None, Some(f)) => {
                let path = base_dir.join(f);
                let s = std::fs::read_to_string(&path).map_err(|e| {
                    ClusterError::Config(format!("cluster.secret_file {}: {e}", path.display()))
                })?;
                Some(s.trim().to_string())
            }
            (None, None) => None,
        };
        if secret.as_deref().is_some_and(str::is_empty) {
            return Err(ClusterError::Config("the cluster secret is empty".into()));
        }
        let consistency = Consistency::parse(&c.consistency)
            .ok_or_else(|| ClusterError::Config("cluster.consistency".into()))?;
        let pushdown_verify = match &c.pushdown_verify {
            None => verify::VerifyMode::for_consistency(consistency),
            Some(v) => verify::VerifyMode::parse(v)
                .ok_or_else(|| ClusterError::Config("cluster.pushdown_verify".into()))?,
        };
        Ok(Some(ClusterSettings {
            node_id: node_id.to_string(),
            cluster_id: c.cluster_id.clone(),
            gossip_listen,
            grpc_listen,
            advertise_ip,
            seeds: c.seeds.clone(),
            replication_factor: c.replication_factor,
            consistency,
            mode: NodeMode::parse(&c.mode)
                .ok_or_else(|| ClusterError::Config("cluster.mode".into()))?,
            secret,
            gossip_interval: c.gossip_interval.0,
            rpc_timeout: c.rpc_timeout.0,
            dead_node_grace: c.dead_node_grace.0,
            state_dir: base_dir.join(&cfg.storage.data_dir).join("cluster"),
            max_hint_bytes: c.max_hint_bytes,
            anti_entropy_interval: c.anti_entropy_interval.0,
            pushdown: c.pushdown,
            pushdown_verify,
        }))
    }
}

/// The current membership and the ring built from it.
pub struct View {
    pub members: Vec<Member>,
    pub ring: Arc<Ring>,
}

impl View {
    pub fn member(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.node_id == id)
    }
}

/// A running cluster participant. Shared by ingest (writes), queries (reads) and HTTP.
pub struct Cluster {
    settings: ClusterSettings,
    engine: Arc<Engine>,
    membership: Membership,
    peers: Peers,
    hints: Arc<HintStore>,
    tombstones: Arc<tombstones::TombstoneStore>,
    /// Nodes removed for good (see `removal`).
    removed: parking_lot::Mutex<removal::Removed>,
    view: RwLock<Arc<View>>,
    grpc_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    decommissioning: std::sync::atomic::AtomicBool,
    /// Turns true when decommissioning starts; MQTT ingest then leaves the broker's shared
    /// subscription.
    leaving: watch::Sender<bool>,
    anti_entropy: anti_entropy::AntiEntropy,
    pushdown: Arc<pushdown::PushdownMetrics>,
}

impl Cluster {
    /// Binds gRPC, joins the gossip, and waits briefly for the first peers so the first
    /// writes are placed with the full ring. `http_addr` is advertised to peers.
    pub async fn start(
        settings: ClusterSettings,
        engine: Arc<Engine>,
        http_addr: SocketAddr,
    ) -> Result<Arc<Cluster>, ClusterError> {
        if settings.secret.is_none() {
            tracing::warn!(
                "no cluster.secret is configured: inter-node RPC accepts any caller on the \
                 gRPC port"
            );
        }
        let listener = TcpListener::bind(settings.grpc_listen)
            .await
            .map_err(|source| ClusterError::Bind {
                what: "the gRPC listener",
                addr: settings.grpc_listen.to_string(),
                source,
            })?;
        let grpc_bound = listener.local_addr().map_err(|source| ClusterError::Bind {
            what: "the gRPC listener",
            addr: settings.grpc_listen.to_string(),
            source,
        })?;
        let advertise = |port: u16| SocketAddr::new(settings.advertise_ip, port);
        let generation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let membership = Membership::start(GossipSettings {
            node_id: settings.node_id.clone(),
            generation,
            cluster_id: settings.cluster_id.clone(),
            listen_addr: settings.gossip_listen,
            advertise_addr: advertise(settings.gossip_listen.port()),
            seeds: settings.seeds.clone(),
            interval: settings.gossip_interval,
            dead_node_grace: settings.dead_node_grace,
            grpc_addr: advertise(grpc_bound.port()),
            http_addr: advertise(http_addr.port()),
            mode: settings.mode,
        })
        .await?;
        let peers = Peers::new(
            settings.secret.as_deref(),
            settings.rpc_timeout,
            MAX_MESSAGE_BYTES,
        )
        .map_err(ClusterError::Config)?;
        let hints = Arc::new(HintStore::open(
            settings.state_dir.join("hints"),
            settings.max_hint_bytes,
        )?);
        let tombstones = Arc::new(tombstones::TombstoneStore::open(&settings.state_dir)?);
        let remembered = view::load_remembered(&settings.state_dir);
        let removed = removal::load(&settings.state_dir);
        membership.publish_removed(&removed).await;
        let initial = view::build(&settings, Vec::new(), &remembered, &removed);
        let (stop, stop_rx) = watch::channel(false);
        let cluster = Arc::new(Cluster {
            engine: engine.clone(),
            membership,
            peers,
            hints,
            tombstones: tombstones.clone(),
            removed: parking_lot::Mutex::new(removed),
            view: RwLock::new(Arc::new(initial)),
            grpc_addr: grpc_bound,
            stop,
            tasks: Default::default(),
            decommissioning: Default::default(),
            leaving: watch::channel(false).0,
            anti_entropy: Default::default(),
            pushdown: Default::default(),
            settings,
        });

        let svc = ClusterRpcServer::new(
            Arc::new(RpcHandler::new(engine, tombstones)),
            SecretCheck::new(cluster.settings.secret.as_deref()),
            MAX_MESSAGE_BYTES,
        );
        let mut grpc_stop = stop_rx.clone();
        let grpc_task = tokio::spawn(async move {
            // `Server::tcp_nodelay` only reaches sockets tonic accepts itself, not an
            // `incoming` stream: without this, small answers wait for the peer's delayed ACK
            // (about 40 ms on Linux) and every fan-out read pays it.
            let incoming = tokio_stream::StreamExt::map(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                |conn| {
                    conn.inspect(|s| {
                        if let Err(e) = s.set_nodelay(true) {
                            tracing::debug!(error = %e, "TCP_NODELAY on a gRPC connection");
                        }
                    })
                },
            );
            let result = tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming_shutdown(incoming, async move {
                    let _ = grpc_stop.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = result {
                tracing::error!(error = %e, "gRPC server failed");
            }
        });
        let view_task = tokio::spawn(view::run(cluster.clone(), stop_rx.clone()));
        let hint_task = tokio::spawn(view::deliver_hints(cluster.clone(), stop_rx.clone()));
        let hints_for_task = tokio::spawn(pushdown::publish_hint_targets(
            cluster.clone(),
            stop_rx.clone(),
        ));
        cluster
            .tasks
            .lock()
            .extend([grpc_task, view_task, hint_task, hints_for_task]);
        let interval = cluster.settings.anti_entropy_interval;
        if !interval.is_zero() {
            let task = tokio::spawn(anti_entropy::run(cluster.clone(), interval, stop_rx));
            cluster.tasks.lock().push(task);
        }
        view::await_first_peers(&cluster).await;
        tracing::info!(
            node_id = %cluster.settings.node_id,
            grpc = %grpc_bound,
            gossip = %cluster.settings.gossip_listen,
            members = cluster.view().ring.nodes().len(),
            "joined the cluster"
        );
        Ok(cluster)
    }

    pub fn node_id(&self) -> &str {
        &self.settings.node_id
    }

    pub fn settings(&self) -> &ClusterSettings {
        &self.settings
    }

    /// The address the gRPC listener is bound to.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The latest membership view.
    pub fn view(&self) -> Arc<View> {
        self.view.read().clone()
    }

    /// Bytes of hints waiting for `node`.
    pub fn pending_hint_bytes(&self, node: &str) -> u64 {
        self.hints.pending_bytes(node)
    }

    /// Stops gossip, the gRPC server and the background tasks.
    pub async fn shutdown(self: Arc<Self>) {
        let _ = self.stop.send(true);
        let tasks: Vec<_> = std::mem::take(&mut *self.tasks.lock());
        for t in tasks {
            if tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .is_err()
            {
                tracing::warn!("a cluster task did not stop within 5 s");
            }
        }
        self.membership.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consistency_levels() {
        assert_eq!(Consistency::Quorum.required(3), 2);
        assert_eq!(Consistency::Quorum.required(1), 1);
        assert_eq!(Consistency::Quorum.required(5), 3);
        assert_eq!(Consistency::One.required(3), 1);
        assert_eq!(Consistency::All.required(3), 3);
        assert_eq!(Consistency::All.required(0), 0);
    }

    #[test]
    fn pushdown_verify_follows_the_write_consistency_unless_set() {
        use verify::VerifyMode;
        let mode = |yaml: &str| {
            let text = format!("cluster:\n  gossip_addr: 127.0.0.1:7946\n{yaml}");
            let cfg = Config::from_yaml(&text, "t", Vec::new()).unwrap();
            ClusterSettings::from_config(&cfg, std::path::Path::new("/tmp"), "n")
                .unwrap()
                .unwrap()
                .pushdown_verify
        };
        assert_eq!(mode(""), VerifyMode::Quorum);
        assert_eq!(mode("  consistency: one\n"), VerifyMode::All);
        assert_eq!(mode("  consistency: all\n"), VerifyMode::Off);
        assert_eq!(
            mode("  consistency: one\n  pushdown_verify: quorum\n"),
            VerifyMode::Quorum
        );
        let e =
            Config::from_yaml("cluster:\n  pushdown_verify: maybe\n", "t", Vec::new()).unwrap_err();
        assert!(e.to_string().contains("cluster.pushdown_verify"), "{e}");
    }
}
