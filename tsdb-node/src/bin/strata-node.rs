//! `strata-node`: one Strata storage node.
//!
//! Configuration precedence, lowest first: built-in defaults, `--config FILE`,
//! `STRATA_<SECTION>__<KEY>` environment variables, then the flags below (each also readable
//! from the `STRATA_*` variable shown in `--help`).

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tsdb_node::config::{Config, UserEntry};
use tsdb_node::node::Node;

#[derive(Parser, Debug)]
#[command(
    name = "strata-node",
    version,
    about = "Strata time-series database node",
    long_about = "Strata time-series database node.\n\nRun `strata-node --dev` for a single local node with \
                  embedded defaults: listeners on 127.0.0.1 only, data under ./strata-dev-data, a dev \
                  user `dev` with password `dev`, samples of any age accepted, and an embedded MQTT \
                  broker on 127.0.0.1:1883 unless --mqtt-broker is given."
)]
struct Args {
    /// config.yaml (seed 000 §3 plus the limits, retention, tls, cluster and mqtt sections).
    #[arg(long, env = "STRATA_CONFIG")]
    config: Option<PathBuf>,
    /// Development mode: 127.0.0.1 only, data under ./strata-dev-data, user dev/dev.
    #[arg(long, env = "STRATA_DEV")]
    dev: bool,
    /// Node identity (defaults to $POD_NAME, then strata-0).
    #[arg(long, env = "STRATA_NODE_ID")]
    node_id: Option<String>,
    /// Directory for segments.
    #[arg(long, env = "STRATA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Directory for the write-ahead log (may be a separate volume).
    #[arg(long, env = "STRATA_WAL_DIR")]
    wal_dir: Option<PathBuf>,
    /// HTTP API listen address (host:port).
    #[arg(long, env = "STRATA_HTTP_ADDR")]
    http_addr: Option<String>,
    /// TCP JSON ingest listen address (host:port).
    #[arg(long, env = "STRATA_TCP_ADDR")]
    tcp_addr: Option<String>,
    /// Binary ZTSD protocol listen address (host:port).
    #[arg(long, env = "STRATA_BINARY_ADDR")]
    binary_addr: Option<String>,
    /// Gossip listen address (host:port), for clustering.
    #[arg(long, env = "STRATA_GOSSIP_ADDR")]
    gossip_addr: Option<String>,
    /// Inter-node gRPC listen address (host:port), for clustering.
    #[arg(long, env = "STRATA_GRPC_ADDR")]
    grpc_addr: Option<String>,
    /// Cluster seeds, comma separated (host:7946,...).
    #[arg(long, env = "STRATA_SEEDS", value_delimiter = ',')]
    seeds: Vec<String>,
    /// all, ingestion or query (seed 001).
    #[arg(long, env = "STRATA_MODE")]
    mode: Option<String>,
    /// Replication factor in a cluster.
    #[arg(long, env = "STRATA_REPLICATION_FACTOR")]
    replication_factor: Option<usize>,
    /// Time between anti-entropy rounds in a cluster (e.g. 10m; 0 turns them off).
    #[arg(long, env = "STRATA_ANTI_ENTROPY_INTERVAL")]
    anti_entropy_interval: Option<String>,
    /// MQTT broker URL (tcp://host:1883 or ssl://host:8883).
    #[arg(long, env = "STRATA_MQTT_BROKER")]
    mqtt_broker: Option<String>,
    /// MQTT protocol: auto (5, or 3.1.1 when the broker refuses 5), 5 or 3.1.1.
    #[arg(long, env = "STRATA_MQTT_PROTOCOL")]
    mqtt_protocol: Option<tsdb_node::ingest::mqtt::MqttProtocol>,
    /// Keep transparent huge pages on for this process (they are turned off by default, as
    /// Redis does: see `disable_transparent_huge_pages`).
    #[arg(long, env = "STRATA_ALLOW_THP")]
    allow_thp: bool,
}

/// Turns transparent huge pages off for this process (Linux `PR_SET_THP_DISABLE`, as Redis'
/// `disable-thp` does). Ingest frees and reallocates small buffers at a high rate; with THP
/// every page the allocator takes back from the kernel after a purge faults in as a zeroed
/// 2 MiB huge page, which cost 13 % of the node's CPU while storing MQTT messages (perf:
/// `clear_page_erms` under `do_huge_pmd_anonymous_page`), and about 15 % more CPU per message
/// overall than with 4 KiB pages.
fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE takes integer arguments only and touches no memory of ours.
        let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if rc != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(),
                "could not turn transparent huge pages off; continuing with them");
        }
    }
}

/// The ingest path allocates a label set per series per request on many threads at once;
/// glibc's malloc spent about a third of its CPU time there (perf, remote write), mimalloc's
/// per-thread heaps a fraction of that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DEV_DIR: &str = "strata-dev-data";
const DEV_MQTT_ADDR: &str = "127.0.0.1:1883";

fn build_config(args: &Args) -> anyhow::Result<Config> {
    let env = std::env::vars();
    let mut cfg = Config::load(args.config.as_deref(), env).context("loading the configuration")?;
    if args.dev {
        cfg.server.bind_address = "127.0.0.1".into();
        if args.config.is_none() {
            cfg.storage.data_dir = PathBuf::from(DEV_DIR).join("data");
            cfg.storage.wal_dir = PathBuf::from(DEV_DIR).join("wal");
            // Trying the seeds' examples mixes old and current timestamps: accept them all.
            cfg.storage.out_of_order_window = tsdb_node::config::HumanDuration::from_secs(0);
        }
        if cfg.auth.users.is_empty() && cfg.auth.users_file.is_none() {
            let hash = bcrypt::hash("dev", 10).context("hashing the dev password")?;
            cfg.auth.users.push(UserEntry {
                username: "dev".into(),
                password_hash: hash,
                roles: vec![tsdb_node::auth::Role::Admin],
            });
        }
    }
    let set = |slot: &mut Option<String>, v: &Option<String>| {
        if v.is_some() {
            *slot = v.clone();
        }
    };
    set(&mut cfg.server.node_id, &args.node_id);
    set(&mut cfg.server.http_addr, &args.http_addr);
    set(&mut cfg.server.tcp_addr, &args.tcp_addr);
    set(&mut cfg.server.binary_addr, &args.binary_addr);
    set(&mut cfg.cluster.gossip_addr, &args.gossip_addr);
    set(&mut cfg.cluster.grpc_addr, &args.grpc_addr);
    set(&mut cfg.mqtt.broker, &args.mqtt_broker);
    if let Some(p) = args.mqtt_protocol {
        cfg.mqtt.protocol = p;
    }
    if args.dev && cfg.mqtt.broker.is_none() {
        // No broker configured: embed one, so that `mosquitto_pub` works out of the box.
        let listen = cfg
            .mqtt
            .embedded_broker
            .get_or_insert_with(|| DEV_MQTT_ADDR.to_string())
            .clone();
        cfg.mqtt.broker = Some(format!("tcp://{listen}"));
        // The embedded broker (rumqttd) speaks 3.1.1 only: trying 5 first would greet every
        // new user with the broker's refusal in the log before the fallback.
        if cfg.mqtt.protocol == tsdb_node::ingest::mqtt::MqttProtocol::Auto {
            cfg.mqtt.protocol = tsdb_node::ingest::mqtt::MqttProtocol::V311;
        }
    }
    if let Some(d) = &args.data_dir {
        cfg.storage.data_dir = d.clone();
    }
    if let Some(d) = &args.wal_dir {
        cfg.storage.wal_dir = d.clone();
    }
    if !args.seeds.is_empty() {
        cfg.cluster.seeds = args.seeds.clone();
    }
    if let Some(m) = &args.mode {
        cfg.cluster.mode = m.clone();
    }
    if let Some(rf) = args.replication_factor {
        cfg.cluster.replication_factor = rf;
    }
    if let Some(d) = &args.anti_entropy_interval {
        cfg.cluster.anti_entropy_interval = tsdb_node::config::HumanDuration(
            tsdb_node::config::parse_duration(d)
                .map_err(|e| anyhow::anyhow!("--anti-entropy-interval: {e}"))?,
        );
    }
    cfg.validate().context("invalid configuration")?;
    Ok(cfg)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let default_filter = if args.dev {
        "info,tsdb_node=debug"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_filter.into()),
        )
        .init();
    if !args.allow_thp {
        disable_transparent_huge_pages();
    }
    let cfg = build_config(&args)?;
    let dev = args.dev;
    let mqtt_line = match (&cfg.mqtt.broker, &cfg.mqtt.embedded_broker) {
        (_, Some(addr)) => format!("{addr}  (embedded broker; topics {:?})", cfg.mqtt.topics),
        (Some(url), None) => format!("{url}  (topics {:?})", cfg.mqtt.topics),
        (None, None) => "off".to_string(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("strata-worker")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let node = Node::new(cfg, PathBuf::from("."));
        node.run(shutdown_signal(), move |addrs| {
            if dev {
                println!("strata-node (dev) is ready");
                println!(
                    "  HTTP API     http://{}  (try /api/v1/status, /metrics)",
                    addrs.http
                );
                println!(
                    "  TCP JSON     {}  (seed 000 frames, auth first)",
                    addrs.tcp_json
                );
                println!("  binary ZTSD  {}  (seed 004)", addrs.binary);
                println!("  MQTT         {mqtt_line}");
                println!("  dev user     dev / dev; samples of any age accepted (backfill)");
                println!("  data         ./{DEV_DIR}   (Ctrl-C to stop)");
            }
        })
        .await
    })
}
