//! A running node: opens storage, starts the listeners, and shuts down in order.
//!
//! Shutdown: readiness goes false (so Kubernetes stops routing), listeners stop accepting,
//! in-flight requests finish and are acknowledged (bounded by `server.shutdown_grace`), then
//! the head is flushed to a segment so the next start replays little.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::{FailureThrottle, ThrottleOptions, UserDb};
use crate::cluster::{Cluster, ClusterSettings, ClusterSource};
use crate::config::Config;
use crate::http::auth::{HttpAuth, TokenDigest};
use crate::http::{self, AppContext, HttpMetrics, StreamLimits};
use crate::ingest::binary::{self, BinaryConfig, BinaryContext};
use crate::ingest::label_cache::{LabelCache, DEFAULT_LABEL_CACHE_ENTRIES};
use crate::ingest::mqtt::{self, MqttIngest, MqttMetrics};
use crate::ingest::tcp_json::{self, TcpJsonContext, TcpJsonOptions};
use crate::ingest::{IngestSink, WriteBudget};
use crate::promql::QueryEngine;
use crate::storage::Engine;

/// Addresses the node actually listens on (ports may have been 0).
#[derive(Clone, Debug)]
pub struct BoundAddrs {
    pub http: SocketAddr,
    pub binary: SocketAddr,
    pub tcp_json: SocketAddr,
    /// The inter-node gRPC listener, when the node is clustered.
    pub grpc: Option<SocketAddr>,
}

pub struct Node {
    pub config: Config,
    pub base_dir: PathBuf,
    pub node_id: String,
}

impl Node {
    pub fn new(config: Config, base_dir: PathBuf) -> Self {
        let node_id = config
            .server
            .node_id
            .clone()
            .or_else(|| std::env::var("POD_NAME").ok())
            .unwrap_or_else(|| "strata-0".into());
        Node {
            config,
            base_dir,
            node_id,
        }
    }

    /// Runs until `shutdown` resolves. `on_bound` is told the listening addresses once every
    /// listener is up (tests use it to learn ephemeral ports).
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
        on_bound: impl FnOnce(BoundAddrs) + Send + 'static,
    ) -> anyhow::Result<()> {
        let cfg = &self.config;
        let started = Instant::now();
        let opts = cfg.engine_options(&self.base_dir);
        let engine = Arc::new(
            tokio::task::spawn_blocking(move || Engine::open(opts))
                .await
                .context("storage start-up task")?
                .context("opening the storage engine")?,
        );
        for q in engine.quarantined() {
            tracing::warn!(file = %q.file.display(), reason = %q.reason, "quarantined at start-up");
        }
        let maintenance = engine
            .start_maintenance()
            .context("starting storage maintenance")?;

        let users = Arc::new(UserDb::new(cfg.all_users()?).context("loading users")?);
        if users.is_empty() {
            tracing::warn!("no users are configured: TCP JSON clients cannot authenticate");
        }
        // One throttle for every protocol, so guessing is not sped up by switching protocols.
        let throttle = Arc::new(FailureThrottle::new(ThrottleOptions::default()));
        let http_auth = if cfg.auth.http {
            let tokens = TokenDigest::parse_all(&cfg.auth.tokens).context("auth.tokens")?;
            if users.is_empty() && tokens.is_empty() {
                tracing::warn!("auth.http is on but no users or tokens are configured");
            }
            Some(Arc::new(HttpAuth::new(
                users.clone(),
                tokens,
                throttle.clone(),
            )))
        } else {
            None
        };
        let tls = match (&cfg.tls.cert_file, &cfg.tls.key_file) {
            (Some(cert), Some(key)) => Some(
                tcp_json::tls::acceptor_from_pem_files(
                    &self.base_dir.join(cert),
                    &self.base_dir.join(key),
                )
                .context("loading the TLS certificate and key")?,
            ),
            _ => None,
        };

        let mqtt_metrics = cfg
            .mqtt
            .broker
            .is_some()
            .then(|| Arc::new(MqttMetrics::default()));

        let http_addr = cfg.http_addr();
        let http_listener = TcpListener::bind(&http_addr)
            .await
            .with_context(|| format!("binding the HTTP listener on {http_addr}"))?;
        let binary_addr = cfg.binary_addr();
        let binary_listener = TcpListener::bind(&binary_addr)
            .await
            .with_context(|| format!("binding the binary protocol listener on {binary_addr}"))?;
        let tcp_addr = cfg.tcp_addr();
        let tcp_listener = TcpListener::bind(&tcp_addr)
            .await
            .with_context(|| format!("binding the TCP JSON listener on {tcp_addr}"))?;
        let http_bound = http_listener.local_addr()?;
        let cluster = match ClusterSettings::from_config(cfg, &self.base_dir, &self.node_id)? {
            Some(settings) => Some(
                Cluster::start(settings, engine.clone(), http_bound)
                    .await
                    .context("joining the cluster")?,
            ),
            None => None,
        };
        let bound = BoundAddrs {
            http: http_bound,
            binary: binary_listener.local_addr()?,
            tcp_json: tcp_listener.local_addr()?,
            grpc: cluster.as_ref().map(|c| c.grpc_addr()),
        };
        let write_budget = WriteBudget::new(cfg.limits.max_inflight_write_bytes);
        let (sink, queries) = match &cluster {
            Some(c) => (
                IngestSink::clustered(engine.clone(), write_budget, c.clone()),
                QueryEngine::with_source(
                    Arc::new(ClusterSource::new(c.clone())),
                    cfg.query_limits(),
                ),
            ),
            None => (
                IngestSink::with_budget(engine.clone(), write_budget),
                QueryEngine::new(engine.clone(), cfg.query_limits()),
            ),
        };
        let ctx = Arc::new(AppContext {
            engine: engine.clone(),
            sink,
            queries: Arc::new(queries),
            node_id: self.node_id.clone(),
            started,
            ready: Default::default(),
            metrics: HttpMetrics::default(),
            max_request_bytes: cfg.limits.max_request_bytes,
            write_admission: WriteBudget::new(cfg.limits.max_inflight_request_bytes),
            write_wait: cfg.limits.write_wait.0,
            auth: http_auth,
            streams: StreamLimits::default(),
            metadata: Arc::new(crate::metadata::MetadataStore::open(
                &engine.options().data_dir,
            )),
            mqtt: mqtt_metrics.clone(),
            cluster: cluster.clone(),
            line_series: LabelCache::shared(DEFAULT_LABEL_CACHE_ENTRIES),
            remote_write_series: LabelCache::shared(DEFAULT_LABEL_CACHE_ENTRIES),
        });
        let mut tcp_ctx = TcpJsonContext::new(
            ctx.sink.clone(),
            users,
            throttle,
            TcpJsonOptions {
                max_frame_bytes: cfg.limits.max_frame_bytes,
                idle_timeout: cfg.limits.idle_timeout.0,
                max_connections: cfg.limits.max_connections,
                ..TcpJsonOptions::default()
            },
        );
        if let Some(acceptor) = &tls {
            tcp_ctx = tcp_ctx.with_tls(acceptor.clone());
        }

        let (stop_tx, stop_rx) = watch::channel(false);
        let mut http_stop = stop_rx.clone();
        let app = http::router(ctx.clone());
        let http_task = tokio::spawn(http::serve::serve(
            http_listener,
            app,
            tls.clone(),
            async move {
                let _ = http_stop.wait_for(|s| *s).await;
            },
        ));

        let mut binary_stop = stop_rx.clone();
        let binary_ctx = BinaryContext {
            sink: ctx.sink.clone(),
            config: BinaryConfig {
                max_connections: cfg.limits.max_connections,
                idle_timeout: cfg.limits.idle_timeout.0,
                ..BinaryConfig::default()
            },
            tls: tls.clone(),
        };
        let binary_task = tokio::spawn(binary::serve(binary_listener, binary_ctx, async move {
            let _ = binary_stop.wait_for(|s| *s).await;
        }));

        let mut tcp_stop = stop_rx.clone();
        let tcp_task = tokio::spawn(tcp_json::serve(
            tcp_listener,
            Arc::new(tcp_ctx),
            async move {
                let _ = tcp_stop.wait_for(|s| *s).await;
            },
        ));

        if let Some(addr) = &cfg.mqtt.embedded_broker {
            let addr = addr.parse().context("mqtt.embedded_broker")?;
            if let Err(e) = mqtt::start_embedded(addr).await {
                tracing::warn!(error = %e, "not starting the embedded MQTT broker; using whatever listens there");
            }
        }
        let mqtt_ingest = match &mqtt_metrics {
            Some(m) => MqttIngest::start(
                &cfg.mqtt,
                mqtt::MqttNode {
                    node_id: &self.node_id,
                    config_dir: &self.base_dir,
                    data_dir: Some(&engine.options().data_dir),
                },
                ctx.sink.clone(),
                m.clone(),
                stop_rx.clone(),
                cluster.as_ref().map(|c| c.leaving()),
            )
            .context("starting MQTT ingest")?,
            None => None,
        };

        ctx.ready.store(true, Ordering::SeqCst);
        tracing::info!(
            node_id = %self.node_id,
            http = %bound.http,
            binary = %bound.binary,
            tcp_json = %bound.tcp_json,
            seconds = started.elapsed().as_secs_f64(),
            "node ready"
        );
        on_bound(bound);

        shutdown.await;
        tracing::info!("shutting down: no longer ready, finishing in-flight requests");
        ctx.ready.store(false, Ordering::SeqCst);
        let _ = stop_tx.send(true);
        let grace = cfg.server.shutdown_grace.0;
        match tokio::time::timeout(grace, http_task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "HTTP server ended with an error"),
            Ok(Err(e)) => tracing::warn!(error = %e, "HTTP server task failed"),
            Err(_) => tracing::warn!(
                ?grace,
                "in-flight HTTP requests did not finish within the grace period"
            ),
        }
        match tokio::time::timeout(grace, binary_task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                tracing::warn!(error = %e, "binary protocol server ended with an error")
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "binary protocol server task failed"),
            Err(_) => tracing::warn!(
                ?grace,
                "binary protocol connections did not finish within the grace period"
            ),
        }
        if tokio::time::timeout(grace, tcp_task).await.is_err() {
            tracing::warn!(
                ?grace,
                "TCP JSON connections did not finish within the grace period"
            );
        }
        if let Some(m) = mqtt_ingest {
            if tokio::time::timeout(grace, m.join()).await.is_err() {
                tracing::warn!(?grace, "MQTT ingest did not stop within the grace period");
            }
        }
        drop(stop_rx);
        drop(ctx);
        if let Some(c) = cluster {
            c.shutdown().await;
        }
        let engine2 = engine.clone();
        tokio::task::spawn_blocking(move || {
            maintenance.stop();
            engine2.close()
        })
        .await
        .context("shutdown task")?
        .context("flushing the head on shutdown")?;
        tracing::info!("stopped cleanly");
        Ok(())
    }
}
