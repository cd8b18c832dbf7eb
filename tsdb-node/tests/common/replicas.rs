//! What each node of a loopback cluster stores itself, and triggered anti-entropy rounds,
//! for the tests that check replicas rather than the merged cluster answer.
//!
//! A node's local data is read over its gRPC `Select`, which answers from the local engine
//! only (no fan-out).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use tsdb_node::cluster::client::Peers;
use tsdb_node::cluster::rpc::{self, SelectRequest};
use tsdb_node::storage::{Labels, Matcher, Sample, METRIC_NAME_LABEL};

use super::cluster::{agent, NodeHttp, ProcNode, SECRET};

pub const T0: i64 = 1_700_000_000_000;
pub const SERIES: usize = 24;

/// Background rounds off: the tests decide when a round runs.
pub const MANUAL: &str = "  anti_entropy_interval: 0\n";

/// Samples per device.
pub type Acked = BTreeMap<String, Vec<Sample>>;

/// Batch `seq`: one sample of every device at `T0 + seq` s, value `seq * 1000 + d`.
pub fn batch(seq: i64) -> (String, Vec<(String, Sample)>) {
    let mut body = String::new();
    let mut samples = Vec::new();
    for d in 0..SERIES {
        let t = T0 + seq * 1000;
        let v = (seq * 1000 + d as i64) as f64;
        body.push_str(&format!("temp,device=d{d} value={v} {t}\n"));
        samples.push((format!("d{d}"), Sample::new(t, v)));
    }
    (body, samples)
}

/// Writes batch `seq` through `node` and records it as acknowledged.
pub fn write(node: &ProcNode, seq: i64, acked: &mut Acked) {
    let (body, samples) = batch(seq);
    assert_eq!(
        node.write_lines(&body),
        Ok(204),
        "write {seq} via {}",
        node.id
    );
    for (d, s) in samples {
        acked.entry(d).or_default().push(s);
    }
}

/// Every `temp` series `node` stores locally: label set → samples.
pub fn local(node: &ProcNode) -> BTreeMap<Labels, Vec<Sample>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let peers = Peers::new(Some(SECRET), Duration::from_secs(20), 256 << 20).unwrap();
        let resp = peers
            .select(
                node.grpc,
                SelectRequest {
                    matchers: rpc::matchers_to_wire(&[Matcher::equal(METRIC_NAME_LABEL, "temp")]),
                    mint: i64::MIN,
                    maxt: i64::MAX,
                    token_ranges: Vec::new(),
                },
            )
            .await
            .unwrap_or_else(|s| panic!("local select on {}: {s}", node.id));
        resp.series
            .into_iter()
            .map(|s| rpc::series_from_wire(s).unwrap())
            .filter(|(_, s): &(Labels, Vec<Sample>)| !s.is_empty())
            .collect()
    })
}

/// The same, keyed by device.
pub fn local_by_device(node: &ProcNode) -> Acked {
    local(node)
        .into_iter()
        .map(|(l, s)| (l.get("device").unwrap().to_string(), s))
        .collect()
}

/// Runs a round on `node` through the admin endpoint; returns its summary, which must list
/// no errors.
pub fn trigger(node: &ProcNode) -> Value {
    let mut r = agent()
        .post(node.url("/api/v1/admin/anti-entropy"))
        .send_empty()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.body_mut().read_json().unwrap();
    let round = v["data"]["round"].clone();
    assert_eq!(
        round["errors"],
        Value::Array(vec![]),
        "round on {}: {v}",
        node.id
    );
    round
}

/// A metric's value on `node`'s `/metrics`.
pub fn metric(node: &ProcNode, name: &str) -> f64 {
    let text = agent()
        .get(node.url("/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
        .parse()
        .unwrap()
}
