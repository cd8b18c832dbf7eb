//! `strata-operator`: reconciles `TimeSeriesCluster` resources. Serves `/healthz`, `/readyz`
//! and `/metrics`; with leader election on, only the replica holding the Lease reconciles.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use kube::runtime::events::Reporter;
use kube::Client;
use strata_operator::controller::leader::LeaderElector;
use strata_operator::controller::node_api::HttpNodeApi;
use strata_operator::controller::{self, dns_node_address, telemetry, Context};

#[derive(Parser, Debug)]
#[command(
    name = "strata-operator",
    version,
    about = "Kubernetes operator for Strata clusters"
)]
struct Args {
    /// Watch only this namespace (all namespaces when unset).
    #[arg(long, env = "STRATA_OPERATOR_NAMESPACE")]
    watch_namespace: Option<String>,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(
        long,
        env = "STRATA_OPERATOR_METRICS_ADDR",
        default_value = "0.0.0.0:8080"
    )]
    metrics_addr: SocketAddr,
    /// Elect a leader through a Lease (needed when running more than one replica).
    #[arg(long, env = "STRATA_OPERATOR_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Namespace of the leader Lease (the operator's own, from the downward API).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Name of the leader Lease.
    #[arg(
        long,
        env = "STRATA_OPERATOR_LEASE_NAME",
        default_value = "strata-operator-leader"
    )]
    lease_name: String,
    /// This replica's identity in the Lease and in events.
    #[arg(long, env = "POD_NAME", default_value = "strata-operator")]
    identity: String,
    /// PEM file of the CA(s) that sign the storage nodes' certificates, for clusters with
    /// `spec.tls` (the operator then reaches nodes over HTTPS and trusts only these; without
    /// it, Mozilla's roots). The chart mounts it from `operator.nodeCaSecret`.
    #[arg(long, env = "STRATA_OPERATOR_NODE_CA_FILE")]
    node_ca_file: Option<std::path::PathBuf>,
    /// Log JSON lines instead of text.
    #[arg(long, env = "STRATA_OPERATOR_LOG_JSON")]
    log_json: bool,
}

async fn serve_probes(addr: SocketAddr, ctx: Arc<Context>) -> anyhow::Result<()> {
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(move || {
                let ctx = ctx.clone();
                async move { ctx.metrics.render() }
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    axum::serve(listener, app).await.context("probe server")
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
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
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    telemetry::init(args.log_json);
    let client = Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    let reporter = Reporter {
        controller: "strata-operator".into(),
        instance: Some(args.identity.clone()),
    };
    let nodes = match &args.node_ca_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading the node CA file {}", path.display()))?;
            HttpNodeApi::with_ca_pem(&pem)
                .with_context(|| format!("node CA file {}", path.display()))?
        }
        None => HttpNodeApi::new(),
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        reporter,
        Arc::new(nodes),
        Arc::new(dns_node_address),
    ));
    let probes = tokio::spawn(serve_probes(args.metrics_addr, ctx.clone()));

    let elector = args.leader_elect.then(|| {
        LeaderElector::new(
            client,
            &args.lease_namespace,
            &args.lease_name,
            &args.identity,
            Duration::from_secs(15),
        )
    });
    if let Some(e) = &elector {
        tokio::select! {
            _ = e.acquire() => {}
            _ = shutdown_signal() => return Ok(()),
        }
    }
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let controller = tokio::spawn(controller::run(ctx, args.watch_namespace, async move {
        let _ = stop_rx.await;
    }));
    let lost = async {
        match &elector {
            Some(e) => e.hold().await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        _ = shutdown_signal() => Ok(()),
        _ = lost => Err(anyhow::anyhow!("lost the leader lease; exiting so a new leader takes over")),
        r = probes => match r {
            Ok(Err(e)) => Err(e),
            _ => Err(anyhow::anyhow!("probe server stopped")),
        },
    };
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), controller).await;
    outcome
}
