//! The agent's own metrics: collection rounds, remote-write outcomes, the queue, and which
//! source each figure comes from.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

use crate::sample::{self, Family, Kind, Series};

const fn family(name: &'static str, kind: Kind, help: &'static str) -> Family {
    Family { name, kind, help }
}

const ROUNDS: Family = family(
    "strata_agent_collections_total",
    Kind::Counter,
    "Collection rounds run.",
);
const ROUND_SECONDS: Family = family(
    "strata_agent_collection_duration_seconds",
    Kind::Gauge,
    "Duration of the last collection round.",
);
const CONTAINERS: Family = family(
    "strata_agent_containers",
    Kind::Gauge,
    "Containers found in the cgroup tree in the last round.",
);
const LABELLED: Family = family(
    "strata_agent_labelled_containers",
    Kind::Gauge,
    "Containers of the last round that Kubernetes pod data labelled.",
);
const SAMPLES_SENT: Family = family(
    "strata_agent_remote_write_samples_total",
    Kind::Counter,
    "Samples accepted by the remote-write endpoint.",
);
const REQUESTS: Family = family(
    "strata_agent_remote_write_requests_total",
    Kind::Counter,
    "Remote-write requests by result (success, retry, rejected).",
);
const DROPPED_SCRAPES: Family = family(
    "strata_agent_remote_write_dropped_scrapes_total",
    Kind::Counter,
    "Collection rounds dropped unsent: the oldest when the queue was full, or rejected with a 4xx.",
);
const DROPPED_SAMPLES: Family = family(
    "strata_agent_remote_write_dropped_samples_total",
    Kind::Counter,
    "Samples in the dropped collection rounds.",
);
const QUEUED: Family = family(
    "strata_agent_remote_write_queue_scrapes",
    Kind::Gauge,
    "Collection rounds waiting to be sent.",
);
const SOURCE: Family = family(
    "strata_agent_source_info",
    Kind::Gauge,
    "Where each figure comes from (ebpf, procfs, cgroupfs); value 1.",
);
const CGROUP_MODE: Family = family(
    "strata_agent_cgroup_mode_info",
    Kind::Gauge,
    "How the host mounts cgroups (v1, v2, hybrid); value 1.",
);

const FAMILIES: [Family; 11] = [
    ROUNDS,
    ROUND_SECONDS,
    CONTAINERS,
    LABELLED,
    SAMPLES_SENT,
    REQUESTS,
    DROPPED_SCRAPES,
    DROPPED_SAMPLES,
    QUEUED,
    SOURCE,
    CGROUP_MODE,
];

/// Counters shared by the collection loop, the shipper and `/metrics`.
#[derive(Default)]
pub struct AgentStats {
    pub rounds: AtomicU64,
    round_micros: AtomicU64,
    pub containers: AtomicU64,
    pub labelled: AtomicU64,
    pub samples_sent: AtomicU64,
    pub requests_ok: AtomicU64,
    pub requests_retried: AtomicU64,
    pub requests_rejected: AtomicU64,
    pub dropped_scrapes: AtomicU64,
    pub dropped_samples: AtomicU64,
    pub queued: AtomicU64,
    sources: OnceLock<(&'static str, &'static str, &'static str)>,
}

impl AgentStats {
    pub fn set_round_seconds(&self, seconds: f64) {
        self.round_micros.store((seconds * 1e6) as u64, Relaxed);
    }

    /// Records, once, the network and block-I/O sources and the cgroup mode.
    pub fn set_sources(&self, network: &'static str, block_io: &'static str, mode: &'static str) {
        let _ = self.sources.set((network, block_io, mode));
    }

    pub fn render(&self, out: &mut String) {
        let plain = |family, value: u64| Series {
            family,
            labels: Vec::new(),
            value: value as f64,
        };
        let mut series = vec![
            plain(ROUNDS, self.rounds.load(Relaxed)),
            Series {
                family: ROUND_SECONDS,
                labels: Vec::new(),
                value: self.round_micros.load(Relaxed) as f64 / 1e6,
            },
            plain(CONTAINERS, self.containers.load(Relaxed)),
            plain(LABELLED, self.labelled.load(Relaxed)),
            plain(SAMPLES_SENT, self.samples_sent.load(Relaxed)),
            plain(DROPPED_SCRAPES, self.dropped_scrapes.load(Relaxed)),
            plain(DROPPED_SAMPLES, self.dropped_samples.load(Relaxed)),
            plain(QUEUED, self.queued.load(Relaxed)),
        ];
        for (result, counter) in [
            ("success", &self.requests_ok),
            ("retry", &self.requests_retried),
            ("rejected", &self.requests_rejected),
        ] {
            series.push(Series {
                family: REQUESTS,
                labels: vec![("result", result.into())],
                value: counter.load(Relaxed) as f64,
            });
        }
        if let Some((network, block_io, mode)) = self.sources.get() {
            for (kind, source) in [("network", network), ("block_io", block_io)] {
                series.push(Series {
                    family: SOURCE,
                    labels: vec![("kind", kind.into()), ("source", source.to_string())],
                    value: 1.0,
                });
            }
            series.push(Series {
                family: CGROUP_MODE,
                labels: vec![("mode", mode.to_string())],
                value: 1.0,
            });
        }
        sample::render(out, &FAMILIES, &series);
    }
}
