//! The running agent: a collection round every `--interval` (on the blocking pool, since it
//! reads files and maps), its result published to `/metrics` and queued for remote write, until
//! SIGTERM or Ctrl-C; then a last bounded attempt to flush the queue.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use tokio::sync::watch;

use crate::cgroup::Hierarchies;
use crate::cli::Args;
use crate::collect::Collector;
use crate::ebpf::Probes;
use crate::http::{router, HttpState};
use crate::kube_labels::{self, Labeler};
use crate::sample::Scrape;
use crate::ship::{self, Queue, RemoteWriter};
use crate::telemetry::AgentStats;

/// How long a stopping agent keeps trying to send what it has.
const FLUSH_GRACE: Duration = Duration::from_secs(5);

pub async fn run(args: Args) -> anyhow::Result<()> {
    let hierarchies = Hierarchies::detect(&args.cgroup_root)
        .with_context(|| format!("--cgroup-root {}", args.cgroup_root.display()))?;
    tracing::info!(
        mode = hierarchies.mode().as_str(),
        unified = ?hierarchies.unified,
        v1 = ?hierarchies.v1.keys().collect::<Vec<_>>(),
        "cgroup hierarchies"
    );
    let probes = if args.no_ebpf {
        Probes::disabled()
    } else {
        Probes::start(hierarchies.unified.as_deref())
    };
    let stats = Arc::new(AgentStats::default());
    stats.set_sources(
        probes.net_source().as_str(),
        probes.io_source().as_str(),
        hierarchies.mode().as_str(),
    );
    let collector = Arc::new(Mutex::new(Collector::new(
        hierarchies,
        args.proc_root.clone(),
        probes,
    )));

    let labeler = match kube_labels::in_cluster_client().await {
        Some(client) if !args.node_name.is_empty() => {
            kube_labels::watch_node_pods(client, &args.node_name)
        }
        Some(_) => {
            tracing::warn!(
                "--node-name is empty: not watching pods, containers get only the id label"
            );
            Labeler::None
        }
        None => Labeler::None,
    };

    let http_state = Arc::new(HttpState {
        latest: RwLock::new(Scrape::default()),
        stats: stats.clone(),
    });
    let listener = tokio::net::TcpListener::bind(args.listen_addr)
        .await
        .with_context(|| format!("binding --listen-addr {}", args.listen_addr))?;
    tracing::info!(addr = %listener.local_addr()?, "serving /metrics and /health");
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut http_stop = stop_rx.clone();
    let app = router(http_state.clone());
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = http_stop.wait_for(|s| *s).await;
            })
            .await
    });

    let queue = Arc::new(Queue::new(args.max_queued_rounds, stats.clone()));
    let token = match &args.bearer_token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("--bearer-token-file {}", path.display()))?,
        ),
        None => None,
    };
    let shipper = args.remote_write_url.clone().map(|url| {
        tracing::info!(%url, "remote write");
        let writer = Arc::new(RemoteWriter::new(
            url,
            args.remote_write_timeout,
            token.as_deref(),
        ));
        tokio::spawn(ship::run(queue.clone(), writer, stop_rx.clone()))
    });

    let mut ticker = tokio::time::interval(args.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stop = std::pin::pin!(shutdown_signal());
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = &mut stop => break,
        }
        let index = labeler.index();
        let c = collector.clone();
        let started = Instant::now();
        let round =
            tokio::task::spawn_blocking(move || c.lock().unwrap().collect(&index, now_ms())).await;
        let (scrape, info) = match round {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "collection round panicked");
                continue;
            }
        };
        stats.rounds.fetch_add(1, Relaxed);
        stats.set_round_seconds(started.elapsed().as_secs_f64());
        stats.containers.store(info.containers as u64, Relaxed);
        stats.labelled.store(info.labelled as u64, Relaxed);
        tracing::debug!(
            containers = info.containers,
            series = scrape.series.len(),
            "collected"
        );
        if shipper.is_some() {
            queue.push(scrape.clone());
        }
        *http_state.latest.write().unwrap() = scrape;
    }

    tracing::info!("stopping");
    let _ = stop_tx.send(true);
    if let Some(shipper) = shipper {
        if tokio::time::timeout(FLUSH_GRACE, shipper).await.is_err() {
            tracing::warn!(unsent = queue.len(), "remote write did not drain in time");
        }
    }
    let _ = server.await;
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = ctrl_c => {}
            _ = async {
                match term.as_mut() {
                    Some(t) => { t.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
