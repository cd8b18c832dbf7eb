//! Prometheus remote write: every collection round is queued ([`Queue`], bounded, dropping
//! the oldest round when full) and sent by [`run`] as one snappy-compressed protobuf
//! `WriteRequest`, retried with exponential backoff while the endpoint fails or answers 5xx
//! or 429. A 4xx other than 429 will not succeed on retry: that round is dropped (counted).

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use strata_proto::remote_write::{Label, Sample, TimeSeries, WriteRequest};
use tokio::sync::{watch, Notify};

use crate::sample::Scrape;
use crate::telemetry::AgentStats;

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Rounds waiting to be sent.
pub struct Queue {
    rounds: Mutex<VecDeque<Scrape>>,
    capacity: usize,
    ready: Notify,
    stats: Arc<AgentStats>,
}

impl Queue {
    pub fn new(capacity: usize, stats: Arc<AgentStats>) -> Queue {
        Queue {
            rounds: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            ready: Notify::new(),
            stats,
        }
    }

    /// Adds a round, dropping the oldest when the queue is full.
    pub fn push(&self, scrape: Scrape) {
        let mut rounds = self.rounds.lock().unwrap();
        while rounds.len() >= self.capacity {
            if let Some(old) = rounds.pop_front() {
                self.count_dropped(&old);
            }
        }
        rounds.push_back(scrape);
        self.stats.queued.store(rounds.len() as u64, Relaxed);
        drop(rounds);
        self.ready.notify_one();
    }

    fn pop(&self) -> Option<Scrape> {
        let mut rounds = self.rounds.lock().unwrap();
        let s = rounds.pop_front();
        self.stats.queued.store(rounds.len() as u64, Relaxed);
        s
    }

    pub fn len(&self) -> usize {
        self.rounds.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn count_dropped(&self, s: &Scrape) {
        self.stats.dropped_scrapes.fetch_add(1, Relaxed);
        self.stats
            .dropped_samples
            .fetch_add(s.series.len() as u64, Relaxed);
    }
}

/// The `WriteRequest` for one round: labels sorted by name, `__name__` first.
pub fn encode(scrape: &Scrape) -> Vec<u8> {
    let timeseries = scrape
        .series
        .iter()
        .map(|s| {
            let mut labels: Vec<Label> = s
                .labels
                .iter()
                .map(|(name, value)| Label {
                    name: (*name).to_string(),
                    value: value.clone(),
                })
                .collect();
            labels.push(Label {
                name: "__name__".into(),
                value: s.family.name.into(),
            });
            labels.sort_by(|a, b| a.name.cmp(&b.name));
            TimeSeries {
                labels,
                samples: vec![Sample {
                    value: s.value,
                    timestamp: scrape.timestamp_ms,
                }],
            }
        })
        .collect();
    let request = WriteRequest {
        timeseries,
        metadata: Vec::new(),
    };
    snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .expect("snappy accepts any input below 4 GiB")
}

/// How one request ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// Network error, 5xx or 429: try again later.
    Retry(String),
    /// Any other status: the request itself is wrong.
    Rejected(String),
}

/// A remote-write endpoint.
pub struct RemoteWriter {
    url: String,
    agent: ureq::Agent,
    /// `Authorization` header value.
    authorization: Option<String>,
}

impl RemoteWriter {
    pub fn new(url: String, timeout: Duration, bearer_token: Option<&str>) -> RemoteWriter {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .user_agent(concat!("strata-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        RemoteWriter {
            url,
            agent,
            authorization: bearer_token.map(|t| format!("Bearer {}", t.trim())),
        }
    }

    /// Sends one compressed `WriteRequest` (blocking).
    pub fn send(&self, body: &[u8]) -> Outcome {
        let mut request = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0");
        if let Some(auth) = &self.authorization {
            request = request.header("Authorization", auth);
        }
        let response = request.send(body);
        match response {
            Err(e) => Outcome::Retry(e.to_string()),
            Ok(mut r) => {
                let status = r.status().as_u16();
                if (200..300).contains(&status) {
                    return Outcome::Sent;
                }
                let text = r.body_mut().read_to_string().unwrap_or_default();
                let why = format!("HTTP {status}: {}", text.trim());
                if status == 429 || status >= 500 {
                    Outcome::Retry(why)
                } else {
                    Outcome::Rejected(why)
                }
            }
        }
    }
}

/// Sends queued rounds until `shutdown` turns true and the queue is empty (or the caller
/// stops waiting).
pub async fn run(
    queue: Arc<Queue>,
    writer: Arc<RemoteWriter>,
    mut shutdown: watch::Receiver<bool>,
) {
    let stats = queue.stats.clone();
    loop {
        let Some(scrape) = queue.pop() else {
            if *shutdown.borrow() {
                return;
            }
            tokio::select! {
                _ = queue.ready.notified() => {}
                _ = shutdown.changed() => {}
            }
            continue;
        };
        let body = Arc::new(encode(&scrape));
        let mut backoff = FIRST_BACKOFF;
        loop {
            let (w, b) = (writer.clone(), body.clone());
            let outcome = tokio::task::spawn_blocking(move || w.send(&b))
                .await
                .unwrap_or_else(|e| Outcome::Retry(e.to_string()));
            match outcome {
                Outcome::Sent => {
                    stats.requests_ok.fetch_add(1, Relaxed);
                    stats
                        .samples_sent
                        .fetch_add(scrape.series.len() as u64, Relaxed);
                    break;
                }
                Outcome::Rejected(why) => {
                    stats.requests_rejected.fetch_add(1, Relaxed);
                    queue.count_dropped(&scrape);
                    tracing::warn!(%why, "remote write rejected a round; dropped");
                    break;
                }
                Outcome::Retry(why) => {
                    stats.requests_retried.fetch_add(1, Relaxed);
                    tracing::warn!(%why, retry_in = ?backoff, "remote write failed");
                    if *shutdown.borrow() {
                        queue.count_dropped(&scrape);
                        break;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::{Series, CPU_USAGE};

    fn scrape(n: usize) -> Scrape {
        Scrape {
            timestamp_ms: 1_700_000_000_000,
            series: (0..n)
                .map(|i| Series {
                    family: CPU_USAGE,
                    labels: vec![("pod", format!("p{i}")), ("id", format!("/c{i}"))],
                    value: i as f64,
                })
                .collect(),
        }
    }

    #[test]
    fn encodes_sorted_labels_with_the_name() {
        let body = encode(&scrape(2));
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let request = WriteRequest::decode(raw.as_slice()).unwrap();
        assert_eq!(request.timeseries.len(), 2);
        let names: Vec<&str> = request.timeseries[1]
            .labels
            .iter()
            .map(|l| l.name.as_str())
            .collect();
        assert_eq!(names, ["__name__", "id", "pod"]);
        assert_eq!(
            request.timeseries[1].labels[0].value,
            "container_cpu_usage_seconds_total"
        );
        assert_eq!(request.timeseries[1].samples[0].value, 1.0);
        assert_eq!(
            request.timeseries[1].samples[0].timestamp,
            1_700_000_000_000
        );
    }

    #[test]
    fn full_queue_drops_the_oldest_and_counts_it() {
        let stats = Arc::new(AgentStats::default());
        let q = Queue::new(2, stats.clone());
        for n in 1..=3 {
            q.push(scrape(n));
        }
        assert_eq!(q.len(), 2);
        assert_eq!(stats.dropped_scrapes.load(Relaxed), 1);
        assert_eq!(stats.dropped_samples.load(Relaxed), 1);
        assert_eq!(q.pop().unwrap().series.len(), 2, "the oldest went");
    }

    #[test]
    fn unreachable_endpoint_is_retried_and_4xx_rejected() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let w = RemoteWriter::new(
            format!("http://{addr}/api/v1/write"),
            Duration::from_secs(2),
            None,
        );
        assert!(matches!(w.send(b"x"), Outcome::Retry(_)));

        // A one-shot server answering 400.
        let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut s, _) = server.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).unwrap();
            s.write_all(
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 3\r\nconnection: close\r\n\r\nbad",
            )
            .unwrap();
        });
        let w = RemoteWriter::new(
            format!("http://{addr}/api/v1/write"),
            Duration::from_secs(5),
            None,
        );
        assert_eq!(w.send(b"x"), Outcome::Rejected("HTTP 400: bad".into()));
        t.join().unwrap();
    }
}
