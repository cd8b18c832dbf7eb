//! Removing a dead node for good, and cleaning up copies a node no longer owns, with real
//! `strata-node` processes on loopback.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::cluster::{agent, start_cluster, wait_converged, NodeHttp, ProcNode};
use common::replicas::{local, local_by_device, metric, trigger, write, Acked, MANUAL, SERIES};
use serde_json::Value;
use tsdb_node::cluster::Ring;
use tsdb_node::storage::{Labels, Sample};

fn post(node: &ProcNode, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let mut r = agent()
        .post(node.url(path))
        .send_form(form.iter().copied())
        .unwrap();
    let status = r.status().as_u16();
    (status, r.body_mut().read_json().unwrap_or(Value::Null))
}

fn ring_nodes(node: &ProcNode) -> Vec<String> {
    let (_, v) = node.get_json("/api/v1/cluster/ring");
    v["data"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

/// Waits until `check` holds, or fails with `what`.
fn wait_for(what: &str, secs: u64, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether every series sits complete on each of its owners in `ring`.
fn on_every_owner(nodes: &[&ProcNode], ring: &Ring, acked: &Acked) -> bool {
    let held: BTreeMap<String, BTreeMap<Labels, Vec<Sample>>> =
        nodes.iter().map(|n| (n.id.clone(), local(n))).collect();
    acked.iter().all(|(device, samples)| {
        let labels = Labels::from_metric("temp", &[("device", device)]);
        ring.owners(&labels).iter().all(|o| {
            held.get(*o)
                .and_then(|m| m.iter().find(|(l, _)| l.get("device") == Some(device)))
                .is_some_and(|(_, s)| s == samples)
        })
    })
}

#[test]
fn a_removed_dead_node_leaves_every_series_with_two_copies_on_the_survivors() {
    let root = tempfile::tempdir().unwrap();
    // At RF=2 a quorum is both owners: `one` keeps writes going while node-3 is down.
    let mut nodes = start_cluster(root.path(), 3, 2, &format!("{MANUAL}  consistency: one\n"));
    let mut acked = Acked::new();
    for seq in 0..20 {
        write(&nodes[seq as usize % 3], seq, &mut acked);
    }
    let ring3 = Ring::new(["node-1", "node-2", "node-3"], 2);
    let all: Vec<&ProcNode> = nodes.iter().collect();
    wait_for("two copies before the crash", 20, || {
        on_every_owner(&all, &ring3, &acked)
    });

    // Alive: refused.
    let (status, v) = post(
        &nodes[0],
        "/api/v1/admin/remove-node",
        &[("node", "node-3")],
    );
    assert_eq!(status, 409, "{v}");
    assert_eq!(ring_nodes(&nodes[0]).len(), 3);

    nodes[2].kill9();
    // Writes go on; the coordinators hint node-3's share.
    for seq in 20..30 {
        write(&nodes[seq as usize % 2], seq, &mut acked);
    }
    wait_for("node-1 sees node-3 dead", 30, || {
        nodes[0]
            .members()
            .iter()
            .any(|(id, live, _)| id == "node-3" && !live)
    });
    let hinted: u64 = nodes[..2]
        .iter()
        .flat_map(|n| n.members())
        .filter(|(id, _, _)| id == "node-3")
        .map(|(_, _, h)| h)
        .sum();
    assert!(hinted > 0, "no hints were kept for node-3");

    // Through the CLI, as an operator would.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stratactl"))
        .args(["--server", &nodes[0].url(""), "remove-node", "node-3"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("was_live"), "{stdout}");

    // Both survivors drop node-3 (node-2 through gossip), its hints, and pull the copies.
    let survivors: Vec<&ProcNode> = nodes[..2].iter().collect();
    let ring2 = Ring::new(["node-1", "node-2"], 2);
    wait_for("every series complete on both survivors", 60, || {
        survivors
            .iter()
            .all(|n| ring_nodes(n) == ["node-1", "node-2"])
            && on_every_owner(&survivors, &ring2, &acked)
    });
    for n in &survivors {
        assert_eq!(local_by_device(n), acked, "{}", n.id);
        let remembered = std::fs::read_to_string(n.dir.join("data/cluster/members.json")).unwrap();
        assert!(!remembered.contains("node-3"), "{}: {remembered}", n.id);
        assert!(
            !n.members()
                .iter()
                .any(|(id, _, hints)| id == "node-3" && *hints > 0),
            "{} still holds hints for node-3",
            n.id
        );
    }
    // Reads are complete without warnings, and the removal survives restarts.
    let (status, totals, last) = nodes[1].device_totals(1_700_000_000 + 40, "1h", true);
    assert_eq!(status, 200, "{last}");
    assert_eq!(totals.len(), SERIES);
    assert!(
        totals.values().all(|(count, _)| *count == 30.0),
        "{totals:?}"
    );
    assert!(last.get("warnings").is_none(), "{last}");
    nodes[0].stop();
    nodes[0].start();
    nodes[0].wait_ready();
    wait_converged(&nodes[..2]);
    assert_eq!(ring_nodes(&nodes[0]), ["node-1", "node-2"]);
    assert_eq!(ring_nodes(&nodes[1]), ["node-1", "node-2"]);
}

#[test]
fn cleanup_after_a_join_drops_only_verified_copies_the_node_no_longer_owns() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(root.path(), 3, 2, "");
    let mut acked = Acked::new();
    for seq in 0..30 {
        write(&nodes[seq as usize % 3], seq, &mut acked);
    }
    let mut fourth = ProcNode::new(root.path(), 4, Some(nodes[0].gossip), 2, "");
    fourth.start();
    fourth.wait_ready();
    nodes.push(fourth);
    wait_converged(&nodes);
    wait_for("node-4's first round", 30, || {
        metric(&nodes[3], "strata_anti_entropy_rounds_total") >= 1.0
    });
    trigger(&nodes[3]);
    let ring4 = Ring::new(["node-1", "node-2", "node-3", "node-4"], 2);
    let all: Vec<&ProcNode> = nodes.iter().collect();
    assert!(on_every_owner(&all, &ring4, &acked));
    let foreign = |n: &ProcNode| {
        local(n)
            .keys()
            .filter(|l| !ring4.owners(l).contains(&n.id.as_str()))
            .count()
    };
    let before: usize = nodes[..3].iter().map(foreign).sum();
    assert!(
        before > 0,
        "no old node holds a series it lost: the check is vacuous"
    );

    let mut deleted = 0;
    for n in &nodes {
        let (status, v) = post(n, "/api/v1/admin/cleanup", &[]);
        assert_eq!(status, 200, "{}: {v}", n.id);
        let c = &v["data"]["cleanup"];
        assert_eq!(c["kept"], Value::Array(vec![]), "{}: {v}", n.id);
        deleted += c["series_deleted"].as_u64().unwrap();
    }
    assert_eq!(deleted as usize, before);
    // Each node holds exactly its own series now, each complete; the cluster answer is too.
    for n in &nodes {
        assert_eq!(foreign(n), 0, "{}", n.id);
    }
    assert!(on_every_owner(&all, &ring4, &acked));
    let (status, totals, last) = nodes[0].device_totals(1_700_000_000 + 40, "1h", true);
    assert_eq!(status, 200, "{last}");
    assert!(
        totals.values().all(|(count, _)| *count == 30.0),
        "{totals:?}"
    );
    // Nothing left to do; and with a member down, cleanup refuses.
    let (_, v) = post(&nodes[1], "/api/v1/admin/cleanup", &[]);
    assert_eq!(v["data"]["cleanup"]["series_deleted"], 0, "{v}");
    nodes[3].kill9();
    wait_for("node-1 sees node-4 dead", 30, || {
        nodes[0]
            .members()
            .iter()
            .any(|(id, live, _)| id == "node-4" && !live)
    });
    let (status, v) = post(&nodes[0], "/api/v1/admin/cleanup", &[]);
    assert_eq!(status, 409, "{v}");
}
