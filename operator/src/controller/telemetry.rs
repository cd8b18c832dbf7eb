//! Logging set-up and the operator's own counters (served on `/metrics`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Installs the tracing subscriber: JSON lines when `json`, human-readable otherwise, filtered
/// by `RUST_LOG` (default `info`).
pub fn init(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Reconcile counters.
#[derive(Debug, Default)]
pub struct Metrics {
    reconciles: AtomicU64,
    failures: AtomicU64,
    duration_micros: AtomicU64,
}

/// Adds the elapsed time to the total when dropped.
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        let micros = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.metrics
            .duration_micros
            .fetch_add(micros, Ordering::Relaxed);
    }
}

impl Metrics {
    /// Counts a reconcile and times it until the returned guard drops.
    pub fn reconcile_started(&self) -> ReconcileTimer<'_> {
        self.reconciles.fetch_add(1, Ordering::Relaxed);
        ReconcileTimer {
            metrics: self,
            start: Instant::now(),
        }
    }

    /// Counts a failed reconcile.
    pub fn failure(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text exposition of the counters.
    pub fn render(&self) -> String {
        let r = self.reconciles.load(Ordering::Relaxed);
        let f = self.failures.load(Ordering::Relaxed);
        let d = self.duration_micros.load(Ordering::Relaxed) as f64 / 1e6;
        format!(
            "# HELP strata_operator_reconciles_total Reconciles started.\n\
             # TYPE strata_operator_reconciles_total counter\n\
             strata_operator_reconciles_total {r}\n\
             # HELP strata_operator_reconcile_failures_total Reconciles that failed.\n\
             # TYPE strata_operator_reconcile_failures_total counter\n\
             strata_operator_reconcile_failures_total {f}\n\
             # HELP strata_operator_reconcile_seconds_total Time spent reconciling.\n\
             # TYPE strata_operator_reconcile_seconds_total counter\n\
             strata_operator_reconcile_seconds_total {d}\n"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_reconciles_and_failures() {
        let m = Metrics::default();
        drop(m.reconcile_started());
        drop(m.reconcile_started());
        m.failure();
        let text = m.render();
        assert!(text.contains("strata_operator_reconciles_total 2\n"));
        assert!(text.contains("strata_operator_reconcile_failures_total 1\n"));
    }
}
