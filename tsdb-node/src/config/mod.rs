//! `config.yaml`: seed 000 §3 extended with `limits`, `retention`, `tls`, `cluster` and `mqtt`.
//!
//! Precedence, lowest first: built-in defaults, the file, `STRATA_<SECTION>__<KEY>` environment
//! variables (e.g. `STRATA_STORAGE__DATA_DIR=/var/lib/strata`, values parsed as YAML scalars),
//! then command-line flags. Unknown keys are refused, and every error names the key.

mod duration;
mod mqtt;
mod overrides;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use duration::{parse_duration, HumanDuration};
pub use mqtt::{MqttConfig, PayloadConfig};
pub use overrides::apply_env_overrides;

pub use crate::auth::UserEntry;

use crate::storage::catalog::SeriesLimits;
use crate::storage::{EngineOptions, Retention};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("configuration key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub auth: AuthConfig,
    pub storage: StorageConfig,
    pub query: QueryConfig,
    pub limits: LimitsConfig,
    pub retention: RetentionConfig,
    pub tls: TlsConfig,
    pub cluster: ClusterConfig,
    pub mqtt: MqttConfig,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Seed 000: the TCP JSON ingest port (used with `bind_address` unless `tcp_addr` is set).
    pub tcp_port: u16,
    pub bind_address: String,
    pub tcp_addr: Option<String>,
    pub binary_addr: Option<String>,
    pub http_addr: Option<String>,
    pub binary_port: u16,
    /// Identity in logs and, later, in the ring. Defaults to $POD_NAME, then `strata-0`.
    pub node_id: Option<String>,
    /// How long shutdown waits for in-flight requests before closing.
    pub shutdown_grace: HumanDuration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            tcp_port: 5433,
            bind_address: "0.0.0.0".into(),
            tcp_addr: None,
            binary_addr: None,
            http_addr: None,
            binary_port: 9876,
            node_id: None,
            shutdown_grace: HumanDuration::from_secs(20),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub users: Vec<UserEntry>,
    /// A YAML list of user entries, read at start (e.g. mounted from a Kubernetes Secret).
    pub users_file: Option<PathBuf>,
    /// Require HTTP basic or bearer auth on the HTTP API.
    pub http: bool,
    /// Bearer tokens accepted by the HTTP API (when `http` is on). Only a SHA-256 of each
    /// token is configured, so the configuration never holds a usable secret.
    pub tokens: Vec<TokenEntry>,
}

/// One bearer token in `auth.tokens`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Who the token belongs to, for logs (e.g. `grafana`).
    pub username: String,
    /// Lower- or upper-case hex SHA-256 of the token (`printf %s "$TOKEN" | sha256sum`).
    pub token_sha256: String,
    /// Granted roles; `[read]` when omitted, since tokens mostly serve dashboards.
    #[serde(default = "default_token_roles")]
    pub roles: Vec<crate::auth::Role>,
}

fn default_token_roles() -> Vec<crate::auth::Role> {
    vec![crate::auth::Role::Read]
}

/// Hand-written so that even the token's digest stays out of logs.
impl std::fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenEntry")
            .field("username", &self.username)
            .field("token_sha256", &"<redacted>")
            .field("roles", &self.roles)
            .finish()
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    pub wal_dir: PathBuf,
    pub wal_segment_size_mb: u64,
    pub checkpoint_interval_s: u64,
    /// How far behind the newest sample a sample may be; `0` accepts any timestamp (backfill).
    pub out_of_order_window: HumanDuration,
    pub block_ranges: Vec<HumanDuration>,
    /// fsync the WAL before acknowledging. Turning it off loses acknowledged writes on power
    /// loss; it exists for benchmarks only.
    pub wal_sync: bool,
    /// Added to every WAL fsync to imitate a slow disk (overload tests and benchmarks only).
    pub wal_sync_delay: HumanDuration,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: "./data".into(),
            wal_dir: "./wal".into(),
            wal_segment_size_mb: 64,
            checkpoint_interval_s: 60,
            out_of_order_window: HumanDuration::from_secs(3600),
            block_ranges: vec![
                HumanDuration::from_secs(2 * 3600),
                HumanDuration::from_secs(6 * 3600),
                HumanDuration::from_secs(24 * 3600),
            ],
            wal_sync: true,
            wal_sync_delay: HumanDuration::from_secs(0),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
    pub http_port: u16,
    pub max_samples: usize,
    pub timeout: HumanDuration,
    pub lookback_delta: HumanDuration,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            http_port: 8181,
            max_samples: 50_000_000,
            timeout: HumanDuration::from_secs(120),
            lookback_delta: HumanDuration::from_secs(300),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    pub max_series: usize,
    pub max_labels_per_series: usize,
    pub max_label_name_length: usize,
    pub max_label_value_length: usize,
    /// Largest TCP JSON frame (one line).
    pub max_frame_bytes: usize,
    /// Largest HTTP request body (before decompression).
    pub max_request_bytes: usize,
    pub max_connections: usize,
    pub idle_timeout: HumanDuration,
    /// Estimated memory of write batches being stored at once, over every protocol; further
    /// writes wait (TCP connections stop reading).
    pub max_inflight_write_bytes: usize,
    /// Memory reserved by HTTP write bodies being read and parsed (about 4× each body).
    pub max_inflight_request_bytes: usize,
    /// How long an HTTP write waits for that reservation before it is answered 503 with
    /// `Retry-After`.
    pub write_wait: HumanDuration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let s = SeriesLimits::default();
        LimitsConfig {
            max_series: s.max_series,
            max_labels_per_series: s.max_labels_per_series,
            max_label_name_length: s.max_label_name_len,
            max_label_value_length: s.max_label_value_len,
            max_frame_bytes: 1 << 20,
            max_request_bytes: 32 << 20,
            max_connections: 10_000,
            idle_timeout: HumanDuration::from_secs(300),
            max_inflight_write_bytes: crate::ingest::DEFAULT_WRITE_BUDGET_BYTES,
            max_inflight_request_bytes: 256 << 20,
            write_wait: HumanDuration::from_secs(10),
        }
    }
}

/// `0` keeps data forever.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    pub raw: HumanDuration,
    #[serde(rename = "1m")]
    pub rollup_1m: HumanDuration,
    #[serde(rename = "5m")]
    pub rollup_5m: HumanDuration,
    #[serde(rename = "1h")]
    pub rollup_1h: HumanDuration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        let r = Retention::default();
        let d =
            |v: Option<i64>| HumanDuration(std::time::Duration::from_millis(v.unwrap_or(0) as u64));
        RetentionConfig {
            raw: d(r.raw_ms),
            rollup_1m: d(r.rollup_1m_ms),
            rollup_5m: d(r.rollup_5m_ms),
            rollup_1h: d(r.rollup_1h_ms),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    pub seeds: Vec<String>,
    pub replication_factor: usize,
    pub gossip_addr: Option<String>,
    pub grpc_addr: Option<String>,
    /// `all`, `ingestion` or `query` (seed 001).
    pub mode: String,
    /// Shared secret authenticating node-to-node RPC.
    pub secret: Option<String>,
    /// A file holding the secret (e.g. a mounted Kubernetes Secret); used when `secret` is
    /// unset. Surrounding whitespace is ignored.
    pub secret_file: Option<PathBuf>,
    /// Acknowledge a write once `one`, a `quorum` (default) or `all` of its owners stored it.
    pub consistency: String,
    /// Cluster name; nodes only gossip with nodes of the same name.
    pub cluster_id: String,
    /// Host or IP that peers use to reach this node when the listen addresses are wildcards;
    /// defaults to `$POD_IP`, then the listen host.
    pub advertise_host: Option<String>,
    /// Time between gossip rounds.
    pub gossip_interval: HumanDuration,
    /// Deadline of one inter-node request (a replica write or a read).
    pub rpc_timeout: HumanDuration,
    /// How long a node that stopped answering stays in the ring (taking hints) before it is
    /// forgotten. Data placement changes when it is dropped, so keep this long.
    pub dead_node_grace: HumanDuration,
    /// Most bytes of hints kept on disk for one unreachable node; writes beyond it are not
    /// hinted (anti-entropy repairs them later).
    pub max_hint_bytes: u64,
    /// Time between anti-entropy rounds (replicas compare Merkle summaries and pull what
    /// they lack); `0` turns background rounds off, including the one after start-up that
    /// brings a joining node the data of its ranges.
    pub anti_entropy_interval: HumanDuration,
    /// Whether aggregations (`sum`, `count`, `min`, `max`, `avg`, `group` of a per-series
    /// expression) are evaluated on the replicas and merged from partial aggregates when
    /// that is exact; `false` always reads raw series (a query can also ask with
    /// `pushdown=false`).
    pub pushdown: bool,
    /// Which acknowledged writes a pushed-down answer must contain: `quorum` (other owners
    /// of each arc digest the same read, `RF − ⌊RF/2⌋` in all, and must agree), `all`
    /// (every live owner; needed when writes are acknowledged at `one`) or `off`. A
    /// disagreement reads raw series. Unset: the mode matching `consistency` (`quorum` →
    /// `quorum`, `one` → `all`, `all` → `off`).
    pub pushdown_verify: Option<String>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            seeds: Vec::new(),
            replication_factor: 3,
            gossip_addr: None,
            grpc_addr: None,
            mode: "all".into(),
            secret: None,
            secret_file: None,
            consistency: "quorum".into(),
            cluster_id: "strata".into(),
            advertise_host: None,
            gossip_interval: HumanDuration::from_secs(1),
            rpc_timeout: HumanDuration::from_secs(10),
            dead_node_grace: HumanDuration::from_secs(7 * 86_400),
            max_hint_bytes: 1 << 30,
            anti_entropy_interval: HumanDuration::from_secs(600),
            pushdown: true,
            pushdown_verify: None,
        }
    }
}

impl Config {
    /// Reads and validates a config file, applying `STRATA_*` overrides from `env`.
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let (text, origin) = match path {
            Some(p) => (
                std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.into(),
                    source,
                })?,
                p.display().to_string(),
            ),
            None => (String::new(), "<defaults>".to_string()),
        };
        Self::from_yaml(&text, &origin, env)
    }

    pub fn from_yaml(
        text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let parse = |message: String| ConfigError::Parse {
            path: origin.into(),
            message,
        };
        let mut doc: serde_yaml::Value = if text.trim().is_empty() {
            serde_yaml::Value::Mapping(Default::default())
        } else {
            serde_yaml::from_str(text).map_err(|e| parse(e.to_string()))?
        };
        apply_env_overrides(&mut doc, env)?;
        let cfg: Config = serde_yaml::from_value(doc).map_err(|e| parse(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, addr) in [
            ("server.tcp_addr", &self.server.tcp_addr),
            ("server.binary_addr", &self.server.binary_addr),
            ("server.http_addr", &self.server.http_addr),
        ] {
            if let Some(a) = addr {
                a.parse::<SocketAddr>()
                    .map_err(|e| invalid(key, format!("{a:?} is not host:port ({e})")))?;
            }
        }
        format!("{}:0", self.server.bind_address)
            .parse::<SocketAddr>()
            .map_err(|e| {
                invalid(
                    "server.bind_address",
                    format!("{:?}: {e}", self.server.bind_address),
                )
            })?;
        crate::auth::UserDb::new(self.all_users()?)
            .map_err(|e| invalid("auth.users", e.to_string()))?;
        crate::http::auth::TokenDigest::parse_all(&self.auth.tokens)
            .map_err(|e| invalid("auth.tokens", e.to_string()))?;
        if self.storage.wal_segment_size_mb == 0 {
            return Err(invalid("storage.wal_segment_size_mb", "must be at least 1"));
        }
        if self.storage.checkpoint_interval_s == 0 {
            return Err(invalid(
                "storage.checkpoint_interval_s",
                "must be at least 1",
            ));
        }
        if !["all", "ingestion", "query"].contains(&self.cluster.mode.as_str()) {
            return Err(invalid("cluster.mode", "must be all, ingestion or query"));
        }
        if !["one", "quorum", "all"].contains(&self.cluster.consistency.as_str()) {
            return Err(invalid("cluster.consistency", "must be one, quorum or all"));
        }
        if let Some(v) = &self.cluster.pushdown_verify {
            if !["off", "quorum", "all"].contains(&v.as_str()) {
                return Err(invalid(
                    "cluster.pushdown_verify",
                    "must be off, quorum or all",
                ));
            }
        }
        for (key, addr) in [
            ("cluster.gossip_addr", &self.cluster.gossip_addr),
            ("cluster.grpc_addr", &self.cluster.grpc_addr),
        ] {
            if let Some(a) = addr {
                a.parse::<SocketAddr>()
                    .map_err(|e| invalid(key, format!("{a:?} is not host:port ({e})")))?;
            }
        }
        if self.cluster.gossip_interval.is_zero() || self.cluster.rpc_timeout.is_zero() {
            return Err(invalid(
                "cluster",
                "gossip_interval and rpc_timeout must be positive",
            ));
        }
        if self.cluster.replication_factor == 0 {
            return Err(invalid("cluster.replication_factor", "must be at least 1"));
        }
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            return Err(invalid(
                "tls",
                "cert_file and key_file must be given together",
            ));
        }
        if self.limits.max_frame_bytes < 1024 {
            return Err(invalid("limits.max_frame_bytes", "must be at least 1024"));
        }
        self.mqtt.validate()?;
        self.engine_options(Path::new("."))
            .validate()
            .map_err(|e| invalid("storage", e))?;
        Ok(())
    }

    fn addr(&self, explicit: &Option<String>, port: u16) -> String {
        explicit
            .clone()
            .unwrap_or_else(|| format!("{}:{port}", self.server.bind_address))
    }

    pub fn tcp_addr(&self) -> String {
        self.addr(&self.server.tcp_addr, self.server.tcp_port)
    }

    pub fn binary_addr(&self) -> String {
        self.addr(&self.server.binary_addr, self.server.binary_port)
    }

    pub fn http_addr(&self) -> String {
        self.addr(&self.server.http_addr, self.query.http_port)
    }

    /// Storage engine options; relative directories are resolved against `base`.
    pub fn engine_options(&self, base: &Path) -> EngineOptions {
        let mut o = EngineOptions::new(base);
        o.data_dir = base.join(&self.storage.data_dir);
        o.wal_dir = base.join(&self.storage.wal_dir);
        o.wal_segment_size = self.storage.wal_segment_size_mb.saturating_mul(1 << 20);
        o.wal_sync = self.storage.wal_sync;
        o.wal_sync_delay = self.storage.wal_sync_delay.0;
        o.checkpoint_interval = std::time::Duration::from_secs(self.storage.checkpoint_interval_s);
        o.out_of_order_window_ms = if self.storage.out_of_order_window.is_zero() {
            // "No limit": far enough back for any timestamp, small enough not to overflow.
            i64::MAX / 4
        } else {
            self.storage.out_of_order_window.as_millis_i64()
        };
        o.block_ranges_ms = self
            .storage
            .block_ranges
            .iter()
            .map(|d| d.as_millis_i64())
            .collect();
        let keep = |d: &HumanDuration| (!d.is_zero()).then(|| d.as_millis_i64());
        o.retention = Retention {
            raw_ms: keep(&self.retention.raw),
            rollup_1m_ms: keep(&self.retention.rollup_1m),
            rollup_5m_ms: keep(&self.retention.rollup_5m),
            rollup_1h_ms: keep(&self.retention.rollup_1h),
        };
        o.limits = SeriesLimits {
            max_series: self.limits.max_series,
            max_labels_per_series: self.limits.max_labels_per_series,
            max_label_name_len: self.limits.max_label_name_length,
            max_label_value_len: self.limits.max_label_value_length,
        };
        o
    }

    /// PromQL limits.
    pub fn query_limits(&self) -> crate::promql::QueryLimits {
        crate::promql::QueryLimits {
            max_samples: self.query.max_samples,
            timeout: self.query.timeout.0,
            lookback_delta_ms: self.query.lookback_delta.as_millis_i64(),
            ..Default::default()
        }
    }

    /// All users: the inline list plus the users file, if any.
    pub fn all_users(&self) -> Result<Vec<UserEntry>, ConfigError> {
        let mut users = self.auth.users.clone();
        if let Some(p) = &self.auth.users_file {
            let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                path: p.clone(),
                source,
            })?;
            let more: Vec<UserEntry> =
                serde_yaml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: p.display().to_string(),
                    message: e.to_string(),
                })?;
            users.extend(more);
        }
        Ok(users)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_000: &str = r#"
server:
  tcp_port: 5433
auth:
  users:
    - username: "user1"
      password_hash: "$2b$04$Ikpzn5A1Hp6L7bY9Wm2l9.Vd3WnV1lmj.VTlXnBN6dQ2kWxWYyW4G"
storage:
  data_dir: "./data"
  wal_dir: "./wal"
  wal_segment_size_mb: 64
  checkpoint_interval_s: 60
query:
  http_port: 8181
"#;

    #[test]
    fn seed_000_config_loads() {
        let c = Config::from_yaml(SEED_000, "seed", Vec::new()).unwrap();
        assert_eq!(c.server.tcp_port, 5433);
        assert_eq!(c.http_addr(), "0.0.0.0:8181");
        assert_eq!(
            c.auth.users[0].roles,
            vec![crate::auth::Role::Read, crate::auth::Role::Write]
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let e = Config::from_yaml("storage:\n  data_dri: x\n", "f.yaml", Vec::new()).unwrap_err();
        assert!(e.to_string().contains("data_dri"), "{e}");
        let e = Config::from_yaml("server:\n  http_addr: nonsense\n", "f.yaml", Vec::new())
            .unwrap_err();
        assert!(e.to_string().contains("server.http_addr"), "{e}");
        let e = Config::from_yaml("retention:\n  raw: 3y\n", "f.yaml", Vec::new()).unwrap_err();
        assert!(e.to_string().contains("unit"), "{e}");
        let e = Config::from_yaml("storage:\n  block_ranges: [2h, 5h]\n", "f.yaml", Vec::new())
            .unwrap_err();
        assert!(e.to_string().contains("block_ranges"), "{e}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let env = vec![
            (
                "STRATA_STORAGE__DATA_DIR".to_string(),
                "/var/lib/strata".to_string(),
            ),
            ("STRATA_QUERY__HTTP_PORT".to_string(), "9000".to_string()),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let c = Config::from_yaml(SEED_000, "seed", env).unwrap();
        assert_eq!(c.storage.data_dir, PathBuf::from("/var/lib/strata"));
        assert_eq!(c.query.http_port, 9000);
        let bad = vec![("STRATA_QUERY__HTTP_PORT".to_string(), "x".to_string())];
        assert!(Config::from_yaml(SEED_000, "seed", bad).is_err());
    }

    #[test]
    fn retention_zero_means_forever() {
        let c = Config::from_yaml("retention:\n  raw: 0\n  1m: 7d\n", "f", Vec::new()).unwrap();
        let o = c.engine_options(Path::new("/tmp"));
        assert_eq!(o.retention.raw_ms, None);
        assert_eq!(o.retention.rollup_1m_ms, Some(7 * 86_400_000));
    }
}
