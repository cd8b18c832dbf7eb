//! A node partitioned away on a real network: three `strata-node` processes, each in its own
//! network namespace behind a veth pair on a bridge, RF=3 at quorum. While a writer keeps
//! ingesting through the two others, node-2 is cut off with iptables inside its namespace:
//! writes keep being acknowledged and hints pile up for node-2. After healing, the hints
//! drain, node-2's own storage holds every acknowledged sample, and every node answers
//! completely with no sample twice.
//!
//! Needs root, iproute2 and iptables (CI has them); without them the test fails, it does not
//! skip.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::cluster::{agent, NodeHttp};
use common::netns::{wait_converged, NetLab, NsNode};
use serde_json::Value;

const T0: i64 = 1_700_000_000_000;
const SERIES: usize = 24;
const CUT_OFF: &str = "node-2";

/// What the writer sent: per device the acknowledged (timestamp, value) pairs, and the
/// batches that were not acknowledged.
#[derive(Default)]
struct WriteLog {
    acked: BTreeMap<usize, Vec<(i64, f64)>>,
    failed: Vec<(i64, String)>,
}

/// Batch `seq`: one sample per device at `T0 + seq` seconds, value `seq * 1000 + device`.
fn batch(seq: i64) -> (String, Vec<(usize, i64, f64)>) {
    let mut body = String::new();
    let mut samples = Vec::new();
    let t = T0 + seq * 1000;
    for d in 0..SERIES {
        let v = (seq * 1000 + d as i64) as f64;
        body.push_str(&format!("temp,device=d{d} value={v} {t}\n"));
        samples.push((d, t, v));
    }
    (body, samples)
}

/// Ingests batch after batch, alternating between the given nodes, until stopped. Stopped
/// and joined on drop, so a failing assertion does not leave it running.
struct Writer {
    stop: Arc<AtomicBool>,
    acked_batches: Arc<AtomicU64>,
    handle: Option<JoinHandle<WriteLog>>,
}

impl Writer {
    fn start(urls: Vec<String>) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked_batches = Arc::new(AtomicU64::new(0));
        let (s, a) = (stop.clone(), acked_batches.clone());
        let handle = std::thread::spawn(move || {
            let mut log = WriteLog::default();
            let http = agent();
            let mut seq = 0i64;
            while !s.load(Ordering::SeqCst) {
                let (body, samples) = batch(seq);
                let url = &urls[seq as usize % urls.len()];
                let sent = http
                    .post(format!("{url}/api/v1/write"))
                    .header("Content-Type", "text/plain")
                    .send(&body);
                match sent {
                    Ok(r) if r.status().as_u16() == 204 => {
                        for (d, t, v) in samples {
                            log.acked.entry(d).or_default().push((t, v));
                        }
                        a.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(r) => log.failed.push((seq, format!("HTTP {}", r.status()))),
                    Err(e) => log.failed.push((seq, e.to_string())),
                }
                seq += 1;
                // A steady stream, not a flood: two cores run three nodes and the test.
                std::thread::sleep(Duration::from_millis(15));
            }
            log
        });
        Writer {
            stop,
            acked_batches,
            handle: Some(handle),
        }
    }

    fn acked(&self) -> u64 {
        self.acked_batches.load(Ordering::SeqCst)
    }

    /// Waits until `more` further batches have been acknowledged.
    fn wait_for_more(&self, more: u64, what: &str) {
        let target = self.acked() + more;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.acked() < target {
            assert!(
                Instant::now() < deadline,
                "{what}: only {} of {target} batches acknowledged",
                self.acked()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn finish(mut self) -> WriteLog {
        self.stop.store(true, Ordering::SeqCst);
        self.handle
            .take()
            .unwrap()
            .join()
            .expect("writer thread panicked")
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn wait_until(within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Per device (count, sum) over all the data, as `node` answers it (see
/// [`NodeHttp::device_totals`]).
fn totals(node: &NsNode, strict: bool) -> (u16, BTreeMap<String, (f64, f64)>, Value) {
    node.device_totals(T0 / 1000 + 86_400, "2d", strict)
}

fn expected(log: &WriteLog) -> BTreeMap<String, (f64, f64)> {
    log.acked
        .iter()
        .map(|(d, s)| {
            (
                format!("d{d}"),
                (s.len() as f64, s.iter().map(|x| x.1).sum::<f64>()),
            )
        })
        .collect()
}

/// Each device's samples, read raw through `node`: every timestamp once, none missing.
fn assert_no_duplicates(node: &NsNode, log: &WriteLog) {
    let at = T0 / 1000 + 86_400;
    let (status, v) = node.get_json(&format!(
        "/api/v1/query?query=temp%5B2d%5D&time={at}&partial_response=false"
    ));
    assert_eq!(status, 200, "{}: {v}", node.id);
    let result = v["data"]["result"].as_array().unwrap();
    assert_eq!(
        result.len(),
        SERIES,
        "{}: series in the raw answer",
        node.id
    );
    for r in result {
        let dev: usize = r["metric"]["device"].as_str().unwrap()[1..]
            .parse()
            .unwrap();
        let got: Vec<i64> = r["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_f64().unwrap() * 1000.0).round() as i64)
            .collect();
        let want: Vec<i64> = log.acked[&dev].iter().map(|x| x.0).collect();
        assert_eq!(got, want, "{}: raw samples of d{dev}", node.id);
    }
}

#[test]
fn partitioned_node_gets_every_acknowledged_write_through_hints_after_healing() {
    let started = Instant::now();
    // Declared first, dropped last: the processes die before their namespaces go.
    let lab = NetLab::new(3);
    let root = tempfile::tempdir().unwrap();
    let mut nodes: Vec<NsNode> = (0..3)
        .map(|i| NsNode::new(&lab, root.path(), i, 3, 3))
        .collect();
    for n in &mut nodes {
        n.start();
    }
    for n in &mut nodes {
        n.wait_ready();
    }
    wait_converged(&nodes, Duration::from_secs(60));

    let writer = Writer::start(vec![nodes[0].url(""), nodes[1].url("")]);
    writer.wait_for_more(20, "before the partition");

    // Cut node-2 off from both peers. Each side must notice: the partition is on the wire,
    // not a stopped process.
    lab.partition(2, &[0, 1]);
    wait_until(
        Duration::from_secs(30),
        "both sides see the partition",
        || {
            !nodes[0].sees_live(CUT_OFF)
                && !nodes[1].sees_live(CUT_OFF)
                && !nodes[2].sees_live("node-0")
                && !nodes[2].sees_live("node-1")
        },
    );
    // Writes keep being acknowledged at quorum, and both coordinators hint for node-2.
    writer.wait_for_more(10, "during the partition");
    let before = nodes[0].hints_for(CUT_OFF) + nodes[1].hints_for(CUT_OFF);
    writer.wait_for_more(30, "during the partition");
    let h0 = nodes[0].hints_for(CUT_OFF);
    let h1 = nodes[1].hints_for(CUT_OFF);
    assert!(
        h0 > 0 && h1 > 0,
        "both coordinators must hold hints for {CUT_OFF}: {h0} and {h1} bytes"
    );
    assert!(
        h0 + h1 > before,
        "hints stopped growing during the partition: {before} then {} bytes",
        h0 + h1
    );
    let dropped = lab.dropped_packets(2);
    assert!(
        dropped > 0,
        "iptables in {CUT_OFF}'s namespace dropped nothing"
    );

    lab.heal(2);
    wait_until(Duration::from_secs(30), "node-2 rejoins", || {
        nodes[0].sees_live(CUT_OFF) && nodes[1].sees_live(CUT_OFF) && nodes[2].sees_live("node-0")
    });
    writer.wait_for_more(20, "after healing");
    let log = writer.finish();
    assert!(
        log.failed.is_empty(),
        "writes failed although a quorum was always reachable: {:?}",
        log.failed
    );
    // A replica write still in flight when the writer stopped may yet fail and hint: let the
    // RPC deadline pass before waiting for the hints to drain.
    std::thread::sleep(Duration::from_millis(2_500));
    wait_converged(&nodes, Duration::from_secs(60));

    // Complete through every node, nothing twice.
    let want = expected(&log);
    for n in &nodes {
        let (status, got, raw) = totals(n, true);
        assert_eq!(status, 200, "{}: {raw}", n.id);
        assert!(raw.get("warnings").is_none(), "{}: warnings {raw}", n.id);
        assert_eq!(
            got, want,
            "{}: answer differs from acknowledged writes",
            n.id
        );
        assert_no_duplicates(n, &log);
    }

    // node-2's own storage: cut it off again, so its answer can only come from local data.
    lab.partition(2, &[0, 1]);
    wait_until(
        Duration::from_secs(30),
        "node-2 sees its peers gone",
        || !nodes[2].sees_live("node-0") && !nodes[2].sees_live("node-1"),
    );
    let (status, local, raw) = totals(&nodes[2], false);
    assert_eq!(status, 200, "{raw}");
    assert!(
        raw.get("warnings").is_some(),
        "an answer without both peers must warn (else it did not come from node-2 alone): {raw}"
    );
    assert_eq!(local, want, "node-2's local data after the hints drained");
    let batches: usize = log.acked.values().map(Vec::len).sum::<usize>() / SERIES;
    eprintln!(
        "netns partition: {batches} batches acknowledged, {h0}+{h1} hint bytes, {dropped} packets dropped, {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
