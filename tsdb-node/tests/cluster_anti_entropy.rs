//! Anti-entropy and join rebalancing with real `strata-node` processes on loopback.
//!
//! What a node stores itself is read over its gRPC `Select`, which answers from the local
//! engine only (no fan-out), so these checks see replicas, not the merged cluster answer.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::cluster::{start_cluster, wait_converged, ProcNode};
use common::replicas::{local, local_by_device, metric, trigger, write, Acked, MANUAL, SERIES};
use tsdb_node::cluster::Ring;
use tsdb_node::storage::{Labels, Sample};

#[test]
fn a_replica_that_missed_writes_without_hints_is_repaired() {
    let started = Instant::now();
    let root = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(root.path(), 3, 3, MANUAL);
    let mut acked = Acked::new();
    for seq in 0..20 {
        write(&nodes[seq as usize % 3], seq, &mut acked);
    }
    // The third copy of a quorum write may still be on its way when the write returns.
    let deadline = Instant::now() + Duration::from_secs(20);
    while local_by_device(&nodes[2]) != acked {
        assert!(
            Instant::now() < deadline,
            "node-3 never got the first writes"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // node-3 goes down; quorum writes go on through the other two, which keep hints for it.
    nodes[2].kill9();
    for seq in 20..60 {
        write(&nodes[seq as usize % 2], seq, &mut acked);
    }
    // The coordinators "crash before hinting": their hints are gone.
    for n in &mut nodes[..2] {
        n.kill9();
        let hints = n.dir.join("data/cluster/hints");
        assert!(hints.exists(), "{} kept no hints", n.id);
        std::fs::remove_dir_all(&hints).unwrap();
    }
    for n in nodes.iter_mut() {
        n.start();
    }
    for n in &nodes {
        n.wait_ready();
    }
    wait_converged(&nodes);
    let before = local_by_device(&nodes[2]);
    let held: usize = before.values().map(Vec::len).sum();
    assert_eq!(
        held,
        20 * SERIES,
        "node-3 should hold only what came before it went down"
    );

    let round = trigger(&nodes[2]);
    assert_eq!(round["samples_repaired"], 40 * SERIES as u64, "{round}");
    assert!(round["buckets_differing"].as_u64().unwrap() > 0, "{round}");
    assert_eq!(
        local_by_device(&nodes[2]),
        acked,
        "node-3 after anti-entropy"
    );
    assert_eq!(
        metric(&nodes[2], "strata_anti_entropy_samples_repaired_total"),
        (40 * SERIES) as f64
    );

    // Replicas agree now: rounds anywhere find nothing to do.
    for n in &nodes {
        let again = trigger(n);
        assert_eq!(again["windows_differing"], 0, "{}: {again}", n.id);
        assert_eq!(again["samples_repaired"], 0, "{}: {again}", n.id);
        assert_eq!(local_by_device(n), acked, "{}", n.id);
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn a_joining_node_receives_the_data_of_its_ranges() {
    let started = Instant::now();
    let root = tempfile::tempdir().unwrap();
    // Background rounds on (the default interval): the new node's round after start-up is
    // what rebalances; the old nodes' rounds at start-up had nothing to compare.
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

    // Its first round runs a few gossip rounds after start-up.
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&nodes[3], "strata_anti_entropy_rounds_total") < 1.0 {
        assert!(Instant::now() < deadline, "node-4 ran no round");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        metric(&nodes[3], "strata_anti_entropy_samples_repaired_total") > 0.0,
        "node-4's first round pulled nothing"
    );
    // A triggered round pulls whatever the first one missed (a peer gossip had not yet
    // called alive then); usually nothing.
    trigger(&nodes[3]);

    // Every series sits complete on each of its owners in the 4-node ring.
    let ids: Vec<String> = nodes.iter().map(|n| n.id.clone()).collect();
    let ring = Ring::new(ids, 2);
    let held: BTreeMap<String, BTreeMap<Labels, Vec<Sample>>> =
        nodes.iter().map(|n| (n.id.clone(), local(n))).collect();
    let all: BTreeSet<&Labels> = held.values().flat_map(|m| m.keys()).collect();
    assert_eq!(all.len(), SERIES);
    let mut on_fourth = 0;
    for labels in all {
        let device = labels.get("device").unwrap();
        let owners = ring.owners(labels);
        assert_eq!(owners.len(), 2);
        for o in &owners {
            assert_eq!(
                held[*o].get(labels),
                Some(&acked[device]),
                "{labels} on its owner {o}"
            );
        }
        if owners.contains(&"node-4") {
            on_fourth += 1;
        }
    }
    assert!(on_fourth > 0, "node-4 owns no series: the check is vacuous");
    assert_eq!(
        held["node-4"].len(),
        on_fourth,
        "node-4 holds only its own series"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}
