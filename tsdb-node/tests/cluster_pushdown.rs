//! Aggregation push-down against the raw read path on real `strata-node` processes: 3 nodes at
//! RF=1 and RF=3, instant and range queries of every pushed-down shape, with every node up,
//! with one node killed (before and after gossip notices), and while a restarted node is
//! still owed hints and catching up, and with a write that the answering replica lacks while
//! the other two hold it (verification must catch it). Every pushed-down answer must equal
//! the raw one (`pushdown=false`): the same series, timestamps and order, values bit for bit
//! where the aggregation does not add, within 1e-9 relative where it does.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{start_cluster, NodeHttp, ProcNode};
use serde_json::Value;

const T0_S: i64 = 1_700_000_000;
const DEVICES: usize = 30;
const STEPS: i64 = 90;

/// `temp` (a gauge) and `energy_total` (a counter) for every device, every 10 s.
fn body(from: i64, to: i64) -> String {
    let mut out = String::new();
    for k in from..to {
        let t = (T0_S + k * 10) * 1000;
        for d in 0..DEVICES {
            let site = d % 3;
            let temp = ((k * 7 + d as i64 * 13) % 97) as f64 + 0.25 * (d % 4) as f64;
            let energy = (k * (d as i64 + 1)) as f64 * 1.5;
            out.push_str(&format!(
                "temp,device=d{d},site=s{site} value={temp} {t}\n\
                 energy_total,device=d{d},site=s{site} value={energy} {t}\n"
            ));
        }
    }
    out
}

/// Aggregations that must be pushed down, and whether their reduction adds (so rounding
/// may differ with the order).
const PUSHED: &[(&str, bool)] = &[
    ("sum(temp)", true),
    ("sum by (site) (temp)", true),
    ("avg by (site) (temp)", true),
    ("count without (device) (temp)", false),
    ("min(temp)", false),
    ("max by (site) (temp)", false),
    ("group by (site) (temp)", false),
    ("sum(rate(energy_total[1m]))", true),
    ("avg without (device) (irate(energy_total[1m]))", true),
    ("sum by (site) (increase(energy_total[5m]))", true),
    ("max(delta(temp[2m]))", false),
    ("sum(avg_over_time(temp[5m]))", true),
    ("count(temp > 50)", false),
    ("sum by (site) (temp * 2 + 1)", true),
    ("min(-abs(temp - 40))", false),
    ("avg(sqrt(temp))", true),
    ("sum by (site) (temp > bool 40)", true),
    ("max without (device) (last_over_time(temp[3m]))", false),
];

/// Not pushed down (the raw path answers them whatever the setting).
const NOT_PUSHED: &[&str] = &["sum(temp) / count(temp)", "topk(2, temp)"];

fn enc(q: &str) -> String {
    let mut out = String::new();
    for b in q.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// (instant at the end of the data, range over it) paths for `q`, with `written` steps of
/// data written.
fn paths(q: &str, written: i64) -> [String; 2] {
    let end = T0_S + (written - 1) * 10;
    [
        format!("/api/v1/query?query={}&time={end}", enc(q)),
        format!(
            "/api/v1/query_range?query={}&start={}&end={end}&step=30",
            enc(q),
            T0_S + 60
        ),
    ]
}

fn counter(node: &ProcNode, name: &str) -> f64 {
    let body = common::cluster::agent()
        .get(node.url("/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

fn pushed_total(node: &ProcNode) -> f64 {
    counter(node, "strata_cluster_pushdown_queries_total")
}

fn value_eq(a: &Value, b: &Value, adds: bool) -> bool {
    let (Some(a), Some(b)) = (a.as_str(), b.as_str()) else {
        return false;
    };
    if a == b {
        return true;
    }
    if !adds {
        return false;
    }
    let (x, y): (f64, f64) = (a.parse().unwrap(), b.parse().unwrap());
    (x - y).abs() <= 1e-9 * x.abs().max(y.abs())
}

/// Panics unless the two answers are equal as the module documentation says.
fn assert_same(pushed: &Value, raw: &Value, adds: bool, what: &str) {
    assert_eq!(pushed["status"], "success", "{what}: {pushed}");
    assert_eq!(raw["status"], "success", "{what}: {raw}");
    assert_eq!(
        pushed.get("warnings"),
        raw.get("warnings"),
        "{what}: warnings differ"
    );
    let (p, r) = (&pushed["data"], &raw["data"]);
    assert_eq!(p["resultType"], r["resultType"], "{what}");
    let (pr, rr) = (
        p["result"].as_array().unwrap(),
        r["result"].as_array().unwrap(),
    );
    assert_eq!(pr.len(), rr.len(), "{what}: {pushed} vs {raw}");
    for (a, b) in pr.iter().zip(rr) {
        assert_eq!(a["metric"], b["metric"], "{what}: series or order differ");
        if let Some(v) = a.get("value") {
            assert_eq!(v[0], b["value"][0], "{what}");
            assert!(
                value_eq(&v[1], &b["value"][1], adds),
                "{what}: {v} vs {}",
                b["value"]
            );
        } else {
            let (av, bv) = (
                a["values"].as_array().unwrap(),
                b["values"].as_array().unwrap(),
            );
            assert_eq!(av.len(), bv.len(), "{what}: points differ");
            for (x, y) in av.iter().zip(bv) {
                assert_eq!(x[0], y[0], "{what}");
                assert!(value_eq(&x[1], &y[1], adds), "{what}: {x} vs {y}");
            }
        }
    }
}

/// Every pushed query on `node`, both ways; returns how many were asked with push-down on.
fn compare_all(node: &ProcNode, written: i64, what: &str) -> usize {
    let mut asked = 0;
    for (q, adds) in PUSHED {
        for p in paths(q, written) {
            let (s1, pushed) = node.get_json(&p);
            let (s2, raw) = node.get_json(&format!("{p}&pushdown=false"));
            assert_eq!((s1, s2), (200, 200), "{what}: {q}: {pushed} / {raw}");
            assert!(
                !pushed["data"]["result"].as_array().unwrap().is_empty(),
                "{what}: {q} answered nothing"
            );
            assert_same(&pushed, &raw, *adds, &format!("{what}: {q} ({p})"));
            asked += 1;
        }
    }
    asked
}

/// Waits until `node` sees every one of `ids` live and synced (first anti-entropy round done).
fn wait_synced(node: &ProcNode, ids: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, v) = node.get_json("/api/v1/cluster/members");
        let members = v["data"]["members"].as_array().cloned().unwrap_or_default();
        let ok = ids.iter().all(|id| {
            members.iter().any(|m| {
                m["node_id"] == *id
                    && m["live"] == true
                    && m["synced"] == true
                    && m["state"] == "active"
            })
        });
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "not synced: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn wait_dead(node: &ProcNode, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while node.members().iter().any(|m| m.0 == id && m.1) {
        assert!(Instant::now() < deadline, "{id} still live for {}", node.id);
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn write(node: &ProcNode, from: i64, to: i64) {
    assert_eq!(node.write_lines(&body(from, to)).unwrap(), 204);
}

const IDS: [&str; 3] = ["node-1", "node-2", "node-3"];

#[test]
fn rf1_pushdown_equals_raw_and_falls_back_with_a_node_down() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(root.path(), 3, 1, "");
    write(&nodes[0], 0, STEPS);
    for n in &nodes {
        wait_synced(n, &IDS);
    }
    let before = pushed_total(&nodes[0]);
    let asked = compare_all(&nodes[0], STEPS, "rf1");
    assert_eq!(
        pushed_total(&nodes[0]) - before,
        asked as f64,
        "every shape must have been pushed down"
    );
    let before = pushed_total(&nodes[1]);
    for q in NOT_PUSHED {
        for p in paths(q, STEPS) {
            assert_eq!(nodes[1].get_json(&p).0, 200, "{q}");
        }
    }
    assert_eq!(
        pushed_total(&nodes[1]),
        before,
        "pushed a shape it must not"
    );

    // One node down at RF=1: its arcs have no other owner, so push-down must fall back to
    // the raw path, warnings and all.
    nodes[2].kill9();
    wait_dead(&nodes[0], "node-3");
    let (pushed_before, fallbacks_before) = (
        pushed_total(&nodes[0]),
        counter(&nodes[0], "strata_cluster_pushdown_fallbacks_total"),
    );
    for (q, adds) in PUSHED {
        for p in paths(q, STEPS) {
            let (_, pushed) = nodes[0].get_json(&p);
            let (_, raw) = nodes[0].get_json(&format!("{p}&pushdown=false"));
            assert!(raw.get("warnings").is_some(), "raw answer must warn: {raw}");
            assert_same(&pushed, &raw, *adds, &format!("rf1, node-3 down: {q}"));
        }
    }
    assert_eq!(pushed_total(&nodes[0]), pushed_before);
    assert!(counter(&nodes[0], "strata_cluster_pushdown_fallbacks_total") > fallbacks_before);
    // partial_response=false still refuses the incomplete answer.
    let p = &paths("sum(temp)", STEPS)[0];
    assert_eq!(
        nodes[0].get_json(&format!("{p}&partial_response=false")).0,
        503
    );
}

#[test]
fn rf3_pushdown_stays_exact_through_a_kill_hints_and_a_restart() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(root.path(), 3, 3, "");
    write(&nodes[1], 0, STEPS / 2);
    for n in &nodes {
        wait_synced(n, &IDS);
    }
    let before = pushed_total(&nodes[0]);
    let asked = compare_all(&nodes[0], STEPS / 2, "rf3");
    assert_eq!(pushed_total(&nodes[0]) - before, asked as f64);
    // Each series once: at RF=3 a sum over all three copies would triple.
    let (_, v) = nodes[0].get_json(&paths("count(temp)", STEPS / 2)[0]);
    assert_eq!(v["data"]["result"][0]["value"][1], "30", "{v}");

    // kill -9: before gossip notices, the dead node's arcs fail and go to the next owners;
    // after, they are assigned there directly. Either way the answers stay exact.
    nodes[2].kill9();
    compare_all(&nodes[0], STEPS / 2, "rf3, node-3 just killed");
    wait_dead(&nodes[0], "node-3");
    let before = pushed_total(&nodes[0]);
    let asked = compare_all(&nodes[0], STEPS / 2, "rf3, node-3 down");
    assert_eq!(pushed_total(&nodes[0]) - before, asked as f64);

    // Writes while node-3 is down wait as hints on node-2. Restarted, node-3 lacks them
    // until they are delivered and its first anti-entropy round is done; until then it
    // must not answer for its arcs. Compare while it catches up.
    write(&nodes[1], STEPS / 2, STEPS);
    wait_dead(&nodes[1], "node-3");
    nodes[2].start();
    nodes[2].wait_ready();
    let until = Instant::now() + Duration::from_secs(8);
    let mut rounds = 0;
    while Instant::now() < until {
        for q in [
            "sum by (site) (temp)",
            "count without (device) (temp)",
            "sum(rate(energy_total[1m]))",
        ] {
            let adds = PUSHED.iter().find(|p| p.0 == q).unwrap().1;
            for p in paths(q, STEPS) {
                let (_, pushed) = nodes[0].get_json(&p);
                let (_, raw) = nodes[0].get_json(&format!("{p}&pushdown=false"));
                assert_same(&pushed, &raw, adds, &format!("rf3, node-3 restarting: {q}"));
            }
        }
        rounds += 1;
    }
    assert!(rounds > 0);
    for n in &nodes {
        wait_synced(n, &IDS);
    }
    // Back to normal: node-3 answers again, complete.
    let before = pushed_total(&nodes[2]);
    let asked = compare_all(&nodes[2], STEPS, "rf3, node-3 back");
    assert_eq!(pushed_total(&nodes[2]) - before, asked as f64);
}

/// `temp` and `energy_total` of every device at step `k` (as [`body`] writes them), stored
/// on `node` alone with gRPC `Write`: what a replica holds of a write that has not reached
/// the others yet.
fn write_to_one_replica(node: &ProcNode, k: i64) {
    use tsdb_node::cluster::rpc::{LabelPair, SeriesSamples, WriteRequest};
    let t = (T0_S + k * 10) * 1000;
    let mut series = Vec::new();
    for d in 0..DEVICES {
        let site = d % 3;
        let temp = ((k * 7 + d as i64 * 13) % 97) as f64 + 0.25 * (d % 4) as f64;
        let energy = (k * (d as i64 + 1)) as f64 * 1.5;
        for (name, v) in [("temp", temp), ("energy_total", energy)] {
            let pair = |n: &str, v: String| LabelPair {
                name: n.into(),
                value: v,
            };
            series.push(SeriesSamples {
                labels: vec![
                    pair("__name__", name.into()),
                    pair("device", format!("d{d}")),
                    pair("site", format!("s{site}")),
                ],
                timestamps: vec![t],
                values: vec![v],
            });
        }
    }
    let peers = tsdb_node::cluster::client::Peers::new(
        Some(common::cluster::SECRET),
        Duration::from_secs(5),
        64 << 20,
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let resp = rt
        .block_on(peers.write(
            node.grpc,
            WriteRequest {
                series,
                hinted_at_ms: 0,
                handover: false,
            },
        ))
        .unwrap();
    assert_eq!(resp.appended, 2 * DEVICES as u64, "{resp:?}");
}

/// A write that two of three replicas hold and the answering one lacks (acknowledged at
/// quorum, still in flight to it; no hint anywhere, so the coordinator cannot know): the
/// answering replica's partial would silently miss it. Verification must catch it: another
/// owner's digest differs, the query reads raw series, and `/metrics` counts the mismatch.
/// Once every replica holds it, push-down answers again.
#[test]
fn rf3_verification_catches_a_write_the_answering_replica_lacks() {
    let root = tempfile::tempdir().unwrap();
    let nodes = start_cluster(root.path(), 3, 3, "");
    write(&nodes[0], 0, STEPS / 2);
    for n in &nodes {
        wait_synced(n, &IDS);
    }
    // node-1 coordinates and answers for the arcs it is the first owner of; the new step
    // reaches only node-2 and node-3.
    write_to_one_replica(&nodes[1], STEPS / 2);
    write_to_one_replica(&nodes[2], STEPS / 2);
    let written = STEPS / 2 + 1;
    let metric = |name: &str| counter(&nodes[0], name);
    let (pushed, mismatches, fallbacks) = (
        pushed_total(&nodes[0]),
        metric("strata_cluster_pushdown_verify_mismatches_total"),
        metric("strata_cluster_pushdown_fallbacks_total"),
    );
    let asked = compare_all(&nodes[0], written, "rf3, a write node-1 lacks");
    assert_eq!(
        pushed_total(&nodes[0]),
        pushed,
        "a stale answer was pushed down"
    );
    assert_eq!(
        metric("strata_cluster_pushdown_verify_mismatches_total") - mismatches,
        asked as f64,
        "every query reads the step node-1 lacks"
    );
    assert!(metric("strata_cluster_pushdown_fallbacks_total") - fallbacks >= asked as f64);
    // The new step changes the answer: node-1 alone would have answered its arcs from the
    // step before (within the lookback), a different sum.
    let sum_at_end = |q: &str| {
        let (_, v) = nodes[0].get_json(&format!("{}&pushdown=false", paths(q, written)[0]));
        v["data"]["result"][0]["value"][1].clone()
    };
    assert_ne!(sum_at_end("sum(temp)"), sum_at_end("sum(temp offset 10s)"));

    // Delivered to node-1 as well: the replicas agree and push-down answers again.
    write_to_one_replica(&nodes[0], STEPS / 2);
    let (pushed, mismatches) = (
        pushed_total(&nodes[0]),
        metric("strata_cluster_pushdown_verify_mismatches_total"),
    );
    let asked = compare_all(&nodes[0], written, "rf3, every replica has the write");
    assert_eq!(pushed_total(&nodes[0]) - pushed, asked as f64);
    assert_eq!(
        metric("strata_cluster_pushdown_verify_mismatches_total"),
        mismatches
    );
}
