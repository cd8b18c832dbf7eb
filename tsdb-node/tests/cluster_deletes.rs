//! Cluster-wide deletes with real `strata-node` processes on loopback (3 nodes, RF=3): a
//! delete made while a replica is down reaches it (as a hint, or through anti-entropy when
//! the hint is lost), and no repair brings the deleted samples back.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{agent, start_cluster, wait_converged, NodeHttp, ProcNode};
use common::replicas::{local_by_device, trigger, write, Acked, MANUAL, T0};
use serde_json::Value;

/// The delete both tests make: devices d0–d5, batches 10 to 22.
const MATCH: &str = r#"temp{device=~"d[0-5]"}"#;
const FROM_SEQ: i64 = 10;
const TO_SEQ: i64 = 22;

fn deleted(device: &str, t: i64) -> bool {
    let d: usize = device[1..].parse().unwrap();
    d <= 5 && (T0 + FROM_SEQ * 1000..=T0 + TO_SEQ * 1000).contains(&t)
}

/// `acked` without what the delete removed.
fn after_delete(acked: &Acked) -> Acked {
    acked
        .iter()
        .map(|(d, s)| {
            let kept = s.iter().copied().filter(|x| !deleted(d, x.t)).collect();
            (d.clone(), kept)
        })
        .collect()
}

/// `POST /api/v1/admin/tsdb/delete_series` on `node`; the answer's `data`.
fn delete_series(node: &ProcNode) -> Value {
    let start = (T0 / 1000 + FROM_SEQ).to_string();
    let end = (T0 / 1000 + TO_SEQ).to_string();
    let mut r = agent()
        .post(node.url("/api/v1/admin/tsdb/delete_series"))
        .send_form([
            ("match[]", MATCH),
            ("start", start.as_str()),
            ("end", end.as_str()),
        ])
        .unwrap();
    let status = r.status().as_u16();
    let v: Value = r.body_mut().read_json().unwrap();
    assert_eq!(status, 200, "delete via {}: {v}", node.id);
    v["data"].clone()
}

/// Waits until `node` holds exactly `want` (the third copy of a quorum write may still be on
/// its way when the write returns).
fn wait_holds(node: &ProcNode, want: &Acked) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while &local_by_device(node) != want {
        assert!(
            Instant::now() < deadline,
            "{} never held the expected samples",
            node.id
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `node` keeps a hint for node-3 (the answer may come before node-3's share
/// has failed: two owners of three are a quorum).
fn wait_hinted(node: &ProcNode) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !node
        .members()
        .iter()
        .any(|(id, _, hints)| id == "node-3" && *hints > 0)
    {
        assert!(
            Instant::now() < deadline,
            "{} hinted nothing for node-3",
            node.id
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn tombstones_on_disk(node: &ProcNode) -> usize {
    let bytes = std::fs::read(node.dir.join("data/cluster/tombstones.json")).unwrap();
    serde_json::from_slice::<Vec<Value>>(&bytes).unwrap().len()
}

#[test]
fn a_delete_made_while_a_replica_is_down_reaches_it_in_order_with_hinted_writes() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(root.path(), 3, 3, MANUAL);
    let mut acked = Acked::new();
    for seq in 0..20 {
        write(&nodes[seq as usize % 3], seq, &mut acked);
    }
    wait_holds(&nodes[2], &acked);
    nodes[2].kill9();
    // Hinted for node-3 on node-2, before the delete: samples 20–22 of d0–d5 among them.
    for seq in 20..30 {
        write(&nodes[1], seq, &mut acked);
    }
    let answer = delete_series(&nodes[0]);
    assert_eq!(answer["deleted_series"], 6, "{answer}");
    wait_hinted(&nodes[0]);
    // After the delete: not covered, even where the range would reach.
    for seq in 30..35 {
        write(&nodes[0], seq, &mut acked);
    }
    let expected = after_delete(&acked);
    assert_ne!(expected, acked);
    for n in &nodes[..2] {
        wait_holds(n, &expected);
    }

    nodes[2].start();
    nodes[2].wait_ready();
    // Both coordinators deliver their hints, in whatever order relative to each other.
    wait_converged(&nodes);
    for n in &nodes {
        wait_holds(n, &expected);
    }
    // Anti-entropy everywhere changes nothing: no deleted sample comes back.
    for n in &nodes {
        let round = trigger(n);
        assert_eq!(round["samples_repaired"], 0, "{}: {round}", n.id);
    }
    for n in &nodes {
        assert_eq!(local_by_device(n), expected, "{} after anti-entropy", n.id);
        assert_eq!(tombstones_on_disk(n), 1, "{}", n.id);
    }
    // The cluster answer agrees: d0 lost batches 10–22 (13 samples) of 35.
    let (_, v) = nodes[2].get_json(&format!(
        "/api/v1/query?query=count_over_time(temp%7Bdevice%3D%22d0%22%7D%5B1h%5D)&time={}",
        T0 / 1000 + 40
    ));
    assert_eq!(v["data"]["result"][0]["value"][1], "22", "{v}");
}

#[test]
fn a_replica_that_lost_the_delete_hint_learns_it_through_anti_entropy() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(root.path(), 3, 3, MANUAL);
    let mut acked = Acked::new();
    for seq in 0..30 {
        write(&nodes[seq as usize % 3], seq, &mut acked);
    }
    wait_holds(&nodes[2], &acked);
    nodes[2].kill9();
    delete_series(&nodes[0]);
    wait_hinted(&nodes[0]);
    let expected = after_delete(&acked);
    // The coordinator "crashes before delivering": its hint for node-3 is gone.
    nodes[0].kill9();
    let hints = nodes[0].dir.join("data/cluster/hints");
    assert!(hints.exists(), "node-1 kept no hint");
    std::fs::remove_dir_all(&hints).unwrap();
    nodes[0].start();
    nodes[2].start();
    for n in &nodes {
        n.wait_ready();
    }
    wait_converged(&nodes);
    assert_eq!(
        local_by_device(&nodes[2]),
        acked,
        "node-3 should still hold what it had before the delete"
    );

    // node-1 compares with node-3 first: node-3 offers the deleted samples, which node-1
    // refuses to pull back.
    let round = trigger(&nodes[0]);
    assert!(
        round["samples_tombstoned"].as_u64().unwrap() > 0,
        "node-1: {round}"
    );
    assert_eq!(round["samples_repaired"], 0, "node-1: {round}");
    assert_eq!(local_by_device(&nodes[0]), expected);
    // node-3 learns the tombstone from its peers and deletes.
    let round = trigger(&nodes[2]);
    assert_eq!(round["tombstones_learned"], 1, "node-3: {round}");
    assert_eq!(local_by_device(&nodes[2]), expected, "node-3");
    // Every replica agrees now, and the tombstone survives a restart.
    nodes[2].stop();
    nodes[2].start();
    nodes[2].wait_ready();
    wait_converged(&nodes);
    for n in &nodes {
        let round = trigger(n);
        assert_eq!(round["windows_differing"], 0, "{}: {round}", n.id);
        assert_eq!(round["tombstones_learned"], 0, "{}: {round}", n.id);
        assert_eq!(local_by_device(n), expected, "{}", n.id);
        assert_eq!(tombstones_on_disk(n), 1, "{}", n.id);
    }
}
