//! Real `strata-node` processes as a cluster on loopback: replication, `kill -9` during
//! ingest, hinted handoff, completeness warnings, and a restart of every node.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::cluster::{start_cluster, start_cluster_with, wait_converged, NodeHttp, ProcNode};
use serde_json::Value;

const T0: i64 = 1_700_000_000_000;
const SERIES: usize = 24;

/// What the test wrote and got acknowledged: per device, (timestamp, value).
#[derive(Default)]
struct Acked {
    by_device: BTreeMap<usize, Vec<(i64, f64)>>,
}

/// One batch: sample `seq` of every device, at `T0 + seq` seconds with value `seq * 1000 + d`.
fn batch(seq: i64) -> (String, Vec<(usize, i64, f64)>) {
    let mut body = String::new();
    let mut samples = Vec::new();
    for d in 0..SERIES {
        let t = T0 + seq * 1000;
        let v = (seq * 1000 + d as i64) as f64;
        body.push_str(&format!("temp,device=d{d} value={v} {t}\n"));
        samples.push((d, t, v));
    }
    (body, samples)
}

/// Per device (count, sum) over all the data, as `node` answers it (see
/// [`NodeHttp::device_totals`]).
fn totals(node: &ProcNode, strict: bool) -> (u16, BTreeMap<String, (f64, f64)>, Value) {
    node.device_totals((T0 / 1000) + 3_600, "1d", strict)
}

fn expected(acked: &Acked) -> BTreeMap<String, (f64, f64)> {
    acked
        .by_device
        .iter()
        .map(|(d, s)| {
            (
                format!("d{d}"),
                (s.len() as f64, s.iter().map(|x| x.1).sum::<f64>()),
            )
        })
        .collect()
}

/// Every acknowledged sample is there exactly once: equal count and equal sum per series.
/// Unacknowledged writes may have landed too, so a series may hold more only if it was hit
/// by a failed write; the test only sends acknowledged ones after the kill settles.
fn assert_complete(node: &ProcNode, acked: &Acked, what: &str) {
    let (status, got, raw) = totals(node, true);
    assert_eq!(status, 200, "{what}: {raw}");
    assert!(
        raw.get("warnings").is_none(),
        "{what}: unexpected warnings {raw}"
    );
    assert_eq!(
        got,
        expected(acked),
        "{what}: answer differs from acknowledged writes"
    );
}

fn write_round(nodes: &[ProcNode], seq: i64, acked: &mut Acked) -> bool {
    let (body, samples) = batch(seq);
    let live: Vec<&ProcNode> = nodes.iter().filter(|n| n.running()).collect();
    let node = live[seq as usize % live.len()];
    match node.write_lines(&body) {
        Ok(204) => {
            for (d, t, v) in samples {
                acked.by_device.entry(d).or_default().push((t, v));
            }
            true
        }
        _ => false,
    }
}

#[test]
fn three_nodes_rf3_kill9_during_ingest_loses_nothing_and_restart_brings_all_back() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(root.path(), 3, 3, "");
    let mut acked = Acked::default();
    let mut failed = Vec::new();
    for seq in 0..40 {
        if !write_round(&nodes, seq, &mut acked) {
            failed.push(seq);
        }
    }
    // kill -9 in the middle of the stream of writes.
    nodes[2].kill9();
    for seq in 40..80 {
        if !write_round(&nodes, seq, &mut acked) {
            failed.push(seq);
        }
    }
    assert!(
        failed.is_empty(),
        "quorum writes failed with one node down: {failed:?}"
    );
    // One node down at RF=3, quorum: reads are complete, from either survivor.
    assert_complete(&nodes[0], &acked, "node-1 with node-3 down");
    assert_complete(&nodes[1], &acked, "node-2 with node-3 down");
    // node-3 missed 40 batches; they wait as hints.
    let hinted: u64 = nodes[0]
        .members()
        .iter()
        .chain(nodes[1].members().iter())
        .filter(|m| m.0 == "node-3")
        .map(|m| m.2)
        .sum();
    assert!(hinted > 0, "no hints were kept for node-3");

    nodes[2].start();
    nodes[2].wait_ready();
    wait_converged(&nodes);
    // The hints were delivered: node-3 alone has everything, with both others down.
    nodes[0].kill9();
    nodes[1].kill9();
    let local = node_local_totals(&nodes[2]);
    assert_eq!(local, expected(&acked), "node-3 after hint delivery");
    let (_, _, raw) = totals(&nodes[2], false);
    assert!(
        raw.get("warnings").is_some(),
        "two of three down must warn: {raw}"
    );
    let (status, _, _) = totals(&nodes[2], true);
    assert_eq!(status, 503, "partial_response=false with two of three down");

    // Restart every node: all data is back, on every node.
    nodes[2].stop();
    for n in nodes.iter_mut() {
        n.start();
    }
    for n in &nodes {
        n.wait_ready();
    }
    wait_converged(&nodes);
    for n in &nodes {
        assert_complete(n, &acked, &format!("{} after restarting all", n.id));
    }
}

/// What one node stores itself, read while its peers are down (so the answer cannot come
/// from them).
fn node_local_totals(node: &ProcNode) -> BTreeMap<String, (f64, f64)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, got, _) = totals(node, false);
        if status == 200 {
            return got;
        }
        assert!(Instant::now() < deadline, "query failed: {status}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn five_nodes_rf3_place_three_copies_and_stay_complete_with_one_down() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(root.path(), 5, 3, "");
    let mut acked = Acked::default();
    for seq in 0..20 {
        assert!(write_round(&nodes, seq, &mut acked), "write {seq} failed");
    }
    // Each series lives on exactly three of the five nodes.
    let mut copies: BTreeMap<String, usize> = BTreeMap::new();
    for n in &nodes {
        let (_, v) = n.get_json("/api/v1/status");
        let series = v["data"]["storage"]["series"].as_u64().unwrap();
        assert!(
            series > 0 && series < SERIES as u64,
            "{}: {series} series",
            n.id
        );
        *copies.entry(n.id.clone()).or_default() += series as usize;
    }
    assert_eq!(copies.values().sum::<usize>(), SERIES * 3, "{copies:?}");
    // Ring views agree.
    let ring = |n: &ProcNode| n.get_json("/api/v1/cluster/ring").1["data"]["nodes"].clone();
    for n in &nodes[1..] {
        assert_eq!(ring(n), ring(&nodes[0]));
    }

    // Data for the seeds' own endpoints: seed 001's device metrics and seed 004's series ids.
    let mut seed_body = String::new();
    for d in 0..SERIES as i64 {
        for k in 0..5 {
            let t = T0 + k * 1000;
            seed_body.push_str(&format!(
                "temperature,device_id=dev{d} value={} {t}\n",
                d * 10 + k
            ));
        }
        seed_body.push_str(&format!("ztsdb_series,series_id={d} value={d} {T0}\n"));
    }
    assert_eq!(nodes[0].write_lines(&seed_body), Ok(204));

    nodes[4].kill9();
    for seq in 20..30 {
        assert!(write_round(&nodes, seq, &mut acked), "write {seq} failed");
    }
    for n in &nodes[..4] {
        assert_complete(n, &acked, &format!("{} with node-5 down", n.id));
        assert_seed_endpoints_complete(n);
    }
    // Series and label endpoints fan out too.
    let (status, v) = nodes[0].get_json("/api/v1/label/device/values");
    assert_eq!(status, 200);
    assert_eq!(v["data"].as_array().unwrap().len(), SERIES, "{v}");
    let (_, v) = nodes[1].get_json("/api/v1/series?match%5B%5D=temp");
    assert_eq!(v["data"].as_array().unwrap().len(), SERIES, "{v}");
}

/// The seeds' query endpoints answer for the whole cluster, not only for what `node` stores.
fn assert_seed_endpoints_complete(node: &ProcNode) {
    let (status, v) = node.get_json("/series");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["count"], SERIES * 3, "{}: /series {v}", node.id);
    assert!(v.get("warnings").is_none(), "{v}");
    for d in 0..SERIES as i64 {
        let (status, v) = node.get_json(&format!("/query?metric=temperature&device_id=dev{d}"));
        assert_eq!(status, 200, "{v}");
        let values = v["values"].as_array().unwrap();
        assert_eq!(
            values.len(),
            5,
            "{}: seed 000 query of dev{d}: {v}",
            node.id
        );
        assert_eq!(values[4][1].as_f64(), Some((d * 10 + 4) as f64), "{v}");

        let (status, v) = node.get_json(&format!("/query?series={d}"));
        assert_eq!(status, 200, "{v}");
        assert_eq!(
            v["count"], 1,
            "{}: seed 004 query of series {d}: {v}",
            node.id
        );
        assert_eq!(v["points"][0]["value"].as_f64(), Some(d as f64), "{v}");

        let body =
            format!(r#"{{"device_id":"dev{d}","metric_name":"temperature","operation":"sum"}}"#);
        let mut r = common::cluster::agent()
            .post(node.url("/query"))
            .header("Content-Type", "application/json")
            .send(body.as_str())
            .unwrap();
        let v: Value = r.body_mut().read_json().unwrap();
        assert_eq!(v["count"], 5, "{}: seed 001 query of dev{d}: {v}", node.id);
        assert_eq!(v["result"].as_f64(), Some((d * 50 + 10) as f64), "{v}");
        assert!(v.get("warnings").is_none(), "{v}");
    }
}

#[test]
fn decommission_under_load_hands_over_every_sample_with_rf_copies() {
    let root = tempfile::tempdir().unwrap();
    // The default out-of-order window (the harness turns it off elsewhere).
    let mut nodes = start_cluster_with(root.path(), 4, 2, "", |yaml| {
        yaml.replace("out_of_order_window: 0", "out_of_order_window: 1h")
    });
    let mut acked = Acked::default();
    // Three hours before the rest: older than the out-of-order window once the newer data is
    // in, so a new owner takes it only as a handover.
    assert!(
        write_round(&nodes, -3 * 3_600, &mut acked),
        "old write failed"
    );
    for seq in 0..20 {
        assert!(write_round(&nodes, seq, &mut acked), "write {seq} failed");
    }
    let r = common::cluster::agent()
        .post(nodes[3].url("/api/v1/admin/decommission"))
        .send_empty()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // Keep writing (to the other nodes) while node-4 streams its data away.
    let progress = |n: &ProcNode| -> (String, String) {
        let (_, v) = nodes[0].get_json("/api/v1/cluster/members");
        v["data"]["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["node_id"] == n.id.as_str())
            .map(|m| {
                (
                    m["state"].as_str().unwrap_or("").to_string(),
                    m["progress"].as_str().unwrap_or("").to_string(),
                )
            })
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut seq = 20;
    loop {
        let (body, samples) = batch(seq);
        let node = &nodes[seq as usize % 3];
        if node.write_lines(&body) == Ok(204) {
            for (d, t, v) in samples {
                acked.by_device.entry(d).or_default().push((t, v));
            }
        }
        seq += 1;
        let (state, p) = progress(&nodes[3]);
        assert!(!p.contains("failed"), "decommission failed: {p}");
        if state == "left" && p.starts_with("left:") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "decommission did not finish: {state} {p}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    nodes[3].kill9();
    // The remaining three hold everything, two copies per series, and answer completely.
    let mut copies = 0;
    for n in &nodes[..3] {
        let (_, v) = n.get_json("/api/v1/status");
        copies += v["data"]["storage"]["series"].as_u64().unwrap() as usize;
    }
    assert_eq!(copies, SERIES * 2);
    for n in &nodes[..3] {
        assert_complete(n, &acked, &format!("{} after node-4 left", n.id));
    }
}
