//! Wire types of the inter-node gRPC service `strata.cluster.v1.Cluster` (port 7070) and their
//! conversions to storage types.
//!
//! The messages are prost derives rather than `protoc` output, so the build needs no protobuf
//! compiler; `tsdb-node/proto/strata_cluster.proto` states the same schema for
//! other implementations, and a test below pins the encoding of one message to it.

use std::collections::HashMap;

use super::token_ranges::TokenRanges;
use crate::promql::pushdown::{PartialGroup, Partials, ReadDigest};
use crate::storage::{Label, Labels, MatchOp, Matcher, Sample};

/// Fully qualified service name.
pub const SERVICE: &str = "strata.cluster.v1.Cluster";
pub const PATH_WRITE: &str = "/strata.cluster.v1.Cluster/Write";
pub const PATH_SELECT: &str = "/strata.cluster.v1.Cluster/Select";
pub const PATH_SERIES: &str = "/strata.cluster.v1.Cluster/Series";
pub const PATH_TREE: &str = "/strata.cluster.v1.Cluster/Tree";
pub const PATH_DELETE: &str = "/strata.cluster.v1.Cluster/Delete";
pub const PATH_TOMBSTONES: &str = "/strata.cluster.v1.Cluster/Tombstones";
pub const PATH_AGGREGATE: &str = "/strata.cluster.v1.Cluster/Aggregate";
/// gRPC metadata key carrying the cluster secret.
pub const SECRET_METADATA: &str = "x-strata-cluster-secret";

#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelPair {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// One series and some of its samples; `timestamps` and `values` have equal length.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SeriesSamples {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<LabelPair>,
    #[prost(sint64, repeated, tag = "2")]
    pub timestamps: Vec<i64>,
    #[prost(double, repeated, tag = "3")]
    pub values: Vec<f64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub series: Vec<SeriesSamples>,
    /// Set on a hinted write: when the coordinator stored the hint (ms since the epoch). The
    /// owner drops the samples a tombstone deleted after that moment, so a hint delivered
    /// late cannot bring back what a delete removed meanwhile. 0 on a live write.
    #[prost(int64, tag = "2")]
    pub hinted_at_ms: i64,
    /// Set by a decommissioning node handing its data over: samples the cluster already
    /// accepted, which the owner stores whatever their age (the out-of-order window guards
    /// against clients writing stale data, not against a replica moving).
    #[prost(bool, tag = "3")]
    pub handover: bool,
}

/// A sample the replica refused; `index` counts samples across the request's series in order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Rejected {
    #[prost(uint64, tag = "1")]
    pub index: u64,
    #[prost(string, tag = "2")]
    pub reason: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteResponse {
    #[prost(uint64, tag = "1")]
    pub appended: u64,
    #[prost(message, repeated, tag = "2")]
    pub rejected: Vec<Rejected>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MatcherMsg {
    #[prost(string, tag = "1")]
    pub name: String,
    /// 0 `=`, 1 `!=`, 2 `=~`, 3 `!~`.
    #[prost(uint32, tag = "2")]
    pub op: u32,
    #[prost(string, tag = "3")]
    pub value: String,
}

/// Series tokens `first..=last`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TokenRange {
    #[prost(fixed64, tag = "1")]
    pub first: u64,
    #[prost(fixed64, tag = "2")]
    pub last: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SelectRequest {
    #[prost(message, repeated, tag = "1")]
    pub matchers: Vec<MatcherMsg>,
    #[prost(int64, tag = "2")]
    pub mint: i64,
    #[prost(int64, tag = "3")]
    pub maxt: i64,
    /// When not empty, only series whose token lies in one of these ranges (anti-entropy
    /// fetching the buckets it lacks).
    #[prost(message, repeated, tag = "4")]
    pub token_ranges: Vec<TokenRange>,
}

/// Asks for the Merkle trees of the samples in `[mint, maxt]` of the series whose tokens lie
/// in `ranges`, one tree per `window_ms`-wide window.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TreeRequest {
    #[prost(message, repeated, tag = "1")]
    pub ranges: Vec<TokenRange>,
    #[prost(int64, tag = "2")]
    pub mint: i64,
    #[prost(int64, tag = "3")]
    pub maxt: i64,
    #[prost(int64, tag = "4")]
    pub window_ms: i64,
    /// Which level of each tree to answer: 0 the root, `merkle::DEPTH` the leaves.
    #[prost(uint32, tag = "5")]
    pub depth: u32,
    /// When not empty, only these windows (by start); else every window with data.
    #[prost(int64, repeated, tag = "6")]
    pub windows: Vec<i64>,
}

/// The nodes of one window's tree at the requested depth.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WindowNodes {
    #[prost(int64, tag = "1")]
    pub start: i64,
    #[prost(fixed64, repeated, tag = "2")]
    pub nodes: Vec<u64>,
    /// Samples summarised.
    #[prost(uint64, tag = "3")]
    pub samples: u64,
}

/// Windows without samples are left out. An answer may stop early to bound the work of one
/// call: `resume_from`, when set, is where the caller asks again.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TreeResponse {
    #[prost(message, repeated, tag = "1")]
    pub windows: Vec<WindowNodes>,
    #[prost(int64, optional, tag = "2")]
    pub resume_from: Option<i64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SelectResponse {
    #[prost(message, repeated, tag = "1")]
    pub series: Vec<SeriesSamples>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelSet {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<LabelPair>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SeriesResponse {
    #[prost(message, repeated, tag = "1")]
    pub series: Vec<LabelSet>,
}

/// A cluster-wide deletion: the samples of the series matching `matchers` in `[mint, maxt]`,
/// decided at `deleted_at_ms` on the node that took the request. `id` names it everywhere.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TombstoneMsg {
    #[prost(fixed64, tag = "1")]
    pub id: u64,
    #[prost(message, repeated, tag = "2")]
    pub matchers: Vec<MatcherMsg>,
    #[prost(int64, tag = "3")]
    pub mint: i64,
    #[prost(int64, tag = "4")]
    pub maxt: i64,
    #[prost(int64, tag = "5")]
    pub deleted_at_ms: i64,
}

/// Apply these deletions locally and remember them as tombstones.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeleteRequest {
    #[prost(message, repeated, tag = "1")]
    pub tombstones: Vec<TombstoneMsg>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DeleteResponse {
    /// Local series that matched (tombstones already known count 0).
    #[prost(uint64, tag = "1")]
    pub deleted_series: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TombstonesRequest {}

/// Every tombstone the node holds that has not expired.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TombstonesResponse {
    #[prost(message, repeated, tag = "1")]
    pub tombstones: Vec<TombstoneMsg>,
}

/// Asks a node to evaluate an aggregation over its local series whose tokens lie in
/// `token_ranges` and answer partial aggregates per group and step (push-down).
#[derive(Clone, PartialEq, prost::Message)]
pub struct AggregateRequest {
    /// The whole PromQL query: an aggregation of a per-series expression.
    #[prost(string, tag = "1")]
    pub query: String,
    #[prost(int64, tag = "2")]
    pub start: i64,
    #[prost(int64, tag = "3")]
    pub end: i64,
    /// 0 for an instant query at `start`.
    #[prost(int64, tag = "4")]
    pub step: i64,
    #[prost(int64, tag = "5")]
    pub lookback_ms: i64,
    #[prost(message, repeated, tag = "6")]
    pub token_ranges: Vec<TokenRange>,
    /// Most samples this node may read for the request.
    #[prost(uint64, tag = "7")]
    pub max_samples: u64,
    /// Time left of the query's budget.
    #[prost(uint64, tag = "8")]
    pub timeout_ms: u64,
    /// Verified push-down: sorted, disjoint spans of tokens to digest (from the same read
    /// as the evaluation), one digest per span in the answer. With no `token_ranges` the
    /// request only digests.
    #[prost(message, repeated, tag = "9")]
    pub digest_ranges: Vec<TokenRange>,
}

/// One group's partial aggregates at the steps where it has a value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GroupPartial {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<LabelPair>,
    /// Step indices, ascending.
    #[prost(uint32, repeated, tag = "2")]
    pub steps: Vec<u32>,
    /// Per step: the running mean for `avg`, the count for `count`, else the folded value.
    #[prost(double, repeated, tag = "3")]
    pub values: Vec<f64>,
    /// Per step, for `avg` only: series folded.
    #[prost(double, repeated, tag = "4")]
    pub counts: Vec<f64>,
    /// Instant queries: the first series (in label order) that reached the group.
    #[prost(message, repeated, tag = "5")]
    pub first_series: Vec<LabelPair>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AggregateResponse {
    #[prost(message, repeated, tag = "1")]
    pub groups: Vec<GroupPartial>,
    /// Samples read by the evaluation (not those of series only digested).
    #[prost(uint64, tag = "2")]
    pub samples: u64,
    /// Per requested digest span, in order: samples read in it.
    #[prost(uint64, repeated, tag = "3")]
    pub digest_samples: Vec<u64>,
    /// Per requested digest span: the wrapping sum of the samples' hashes.
    #[prost(fixed64, repeated, tag = "4")]
    pub digest_sums: Vec<u64>,
}

/// A message from a peer that does not make sense.
#[derive(Debug, thiserror::Error)]
#[error("malformed cluster message: {0}")]
pub struct MalformedMessage(pub String);

pub fn labels_to_wire(l: &Labels) -> Vec<LabelPair> {
    l.iter()
        .map(|l| LabelPair {
            name: l.name.clone(),
            value: l.value.clone(),
        })
        .collect()
}

pub fn labels_from_wire(pairs: Vec<LabelPair>) -> Labels {
    Labels::new(
        pairs
            .into_iter()
            .map(|p| Label::new(p.name, p.value))
            .collect(),
    )
}

/// Groups the samples at `indices` of `batch` by series. Returns the request and, for each
/// sample of the request in wire order, its index in `batch` (to map rejections back).
pub fn write_request(batch: &[(Labels, Sample)], indices: &[usize]) -> (WriteRequest, Vec<usize>) {
    let mut slot: HashMap<&Labels, usize> = HashMap::new();
    let mut groups: Vec<(&Labels, Vec<usize>)> = Vec::new();
    for &i in indices {
        let Some((labels, _)) = batch.get(i) else {
            continue;
        };
        let g = *slot.entry(labels).or_insert_with(|| {
            groups.push((labels, Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push(i);
    }
    let mut order = Vec::with_capacity(indices.len());
    let series = groups
        .into_iter()
        .map(|(labels, idx)| {
            let mut s = SeriesSamples {
                labels: labels_to_wire(labels),
                timestamps: Vec::with_capacity(idx.len()),
                values: Vec::with_capacity(idx.len()),
            };
            for i in idx {
                let sample = batch[i].1;
                s.timestamps.push(sample.t);
                s.values.push(sample.v);
                order.push(i);
            }
            s
        })
        .collect();
    (
        WriteRequest {
            series,
            hinted_at_ms: 0,
            handover: false,
        },
        order,
    )
}

/// The samples of a write request, flattened in wire order.
pub fn write_batch(req: WriteRequest) -> Result<Vec<(Labels, Sample)>, MalformedMessage> {
    let mut out = Vec::new();
    for s in req.series {
        if s.timestamps.len() != s.values.len() {
            return Err(MalformedMessage(format!(
                "{} timestamps but {} values",
                s.timestamps.len(),
                s.values.len()
            )));
        }
        let labels = labels_from_wire(s.labels);
        for (t, v) in s.timestamps.into_iter().zip(s.values) {
            out.push((labels.clone(), Sample::new(t, v)));
        }
    }
    Ok(out)
}

pub fn series_to_wire(labels: &Labels, samples: &[Sample]) -> SeriesSamples {
    SeriesSamples {
        labels: labels_to_wire(labels),
        timestamps: samples.iter().map(|s| s.t).collect(),
        values: samples.iter().map(|s| s.v).collect(),
    }
}

pub fn series_from_wire(s: SeriesSamples) -> Result<(Labels, Vec<Sample>), MalformedMessage> {
    if s.timestamps.len() != s.values.len() {
        return Err(MalformedMessage(
            "timestamps and values differ in length".into(),
        ));
    }
    let samples = s
        .timestamps
        .into_iter()
        .zip(s.values)
        .map(|(t, v)| Sample::new(t, v))
        .collect();
    Ok((labels_from_wire(s.labels), samples))
}

/// Counts travel only when one of them is not 1 (only `avg` folds count series).
pub fn partials_to_wire(p: &Partials) -> AggregateResponse {
    let with_counts = p.groups.iter().any(|g| g.points.iter().any(|x| x.2 != 1.0));
    AggregateResponse {
        groups: p
            .groups
            .iter()
            .map(|g| GroupPartial {
                labels: labels_to_wire(&g.labels),
                steps: g.points.iter().map(|x| x.0).collect(),
                values: g.points.iter().map(|x| x.1).collect(),
                counts: if with_counts {
                    g.points.iter().map(|x| x.2).collect()
                } else {
                    Vec::new()
                },
                first_series: g.first.as_ref().map(labels_to_wire).unwrap_or_default(),
            })
            .collect(),
        samples: p.samples,
        digest_samples: Vec::new(),
        digest_sums: Vec::new(),
    }
}

/// Puts a node's digests (one per requested span) on its answer.
pub fn set_digests(r: &mut AggregateResponse, digests: &[ReadDigest]) {
    r.digest_samples = digests.iter().map(|d| d.samples).collect();
    r.digest_sums = digests.iter().map(|d| d.sum).collect();
}

/// The digests of an answer, which must be one per span asked for (a node that does not
/// know about digests answers none).
pub fn digests_from_wire(
    r: &AggregateResponse,
    spans: usize,
) -> Result<Vec<ReadDigest>, MalformedMessage> {
    if r.digest_samples.len() != spans || r.digest_sums.len() != spans {
        return Err(MalformedMessage(format!(
            "{} digests for {spans} spans",
            r.digest_sums.len().min(r.digest_samples.len())
        )));
    }
    Ok(r.digest_samples
        .iter()
        .zip(&r.digest_sums)
        .map(|(&samples, &sum)| ReadDigest { samples, sum })
        .collect())
}

/// Missing counts are 1.
pub fn partials_from_wire(r: AggregateResponse) -> Result<Partials, MalformedMessage> {
    let groups = r
        .groups
        .into_iter()
        .map(|g| {
            if g.steps.len() != g.values.len()
                || (!g.counts.is_empty() && g.counts.len() != g.steps.len())
            {
                return Err(MalformedMessage(
                    "partial aggregate steps and values differ in length".into(),
                ));
            }
            let points = g
                .steps
                .iter()
                .zip(&g.values)
                .enumerate()
                .map(|(i, (&k, &v))| (k, v, g.counts.get(i).copied().unwrap_or(1.0)))
                .collect();
            Ok(PartialGroup {
                labels: labels_from_wire(g.labels),
                first: (!g.first_series.is_empty()).then(|| labels_from_wire(g.first_series)),
                points,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Partials {
        groups,
        samples: r.samples,
    })
}

pub fn ranges_to_wire(r: &TokenRanges) -> Vec<TokenRange> {
    r.spans()
        .iter()
        .map(|&(first, last)| TokenRange { first, last })
        .collect()
}

/// Ranges with `first > last` are malformed rather than silently empty.
pub fn ranges_from_wire(r: &[TokenRange]) -> Result<TokenRanges, MalformedMessage> {
    if let Some(bad) = r.iter().find(|x| x.first > x.last) {
        return Err(MalformedMessage(format!(
            "token range {}..={} is reversed",
            bad.first, bad.last
        )));
    }
    Ok(TokenRanges::from_spans(r.iter().map(|x| (x.first, x.last))))
}

pub fn matchers_to_wire(ms: &[Matcher]) -> Vec<MatcherMsg> {
    ms.iter()
        .map(|m| MatcherMsg {
            name: m.name.clone(),
            op: match m.op {
                MatchOp::Equal => 0,
                MatchOp::NotEqual => 1,
                MatchOp::RegexMatch => 2,
                MatchOp::RegexNoMatch => 3,
            },
            value: m.value.clone(),
        })
        .collect()
}

pub fn matchers_from_wire(ms: Vec<MatcherMsg>) -> Result<Vec<Matcher>, MalformedMessage> {
    ms.into_iter()
        .map(|m| {
            let op = match m.op {
                0 => MatchOp::Equal,
                1 => MatchOp::NotEqual,
                2 => MatchOp::RegexMatch,
                3 => MatchOp::RegexNoMatch,
                other => return Err(MalformedMessage(format!("unknown matcher op {other}"))),
            };
            Matcher::new(op, m.name, m.value).map_err(|e| MalformedMessage(e.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn write_request_groups_by_series_and_maps_back() {
        let a = Labels::from_metric("m", &[("k", "a")]);
        let b = Labels::from_metric("m", &[("k", "b")]);
        let batch = vec![
            (a.clone(), Sample::new(1, 1.0)),
            (b.clone(), Sample::new(2, 2.0)),
            (a.clone(), Sample::new(3, 3.0)),
        ];
        let (req, order) = write_request(&batch, &[0, 1, 2]);
        assert_eq!(req.hinted_at_ms, 0);
        assert_eq!(req.series.len(), 2);
        assert_eq!(order, vec![0, 2, 1]);
        let back = write_batch(req).unwrap();
        assert_eq!(back[1], (a, Sample::new(3, 3.0)));
        assert_eq!(back[2], (b, Sample::new(2, 2.0)));
    }

    #[test]
    fn encoding_matches_the_proto_schema() {
        // `LabelPair{name:"a", value:"b"}` per proto3: field 1 and 2, length-delimited.
        let bytes = LabelPair {
            name: "a".into(),
            value: "b".into(),
        }
        .encode_to_vec();
        assert_eq!(bytes, vec![0x0a, 0x01, b'a', 0x12, 0x01, b'b']);
        // sint64 timestamps are zig-zag packed: -1 → 1.
        let s = SeriesSamples {
            labels: vec![],
            timestamps: vec![-1],
            values: vec![],
        };
        assert_eq!(s.encode_to_vec(), vec![0x12, 0x01, 0x01]);
        // Tree nodes are packed fixed64 (field 2, wire type 2), little-endian.
        let w = WindowNodes {
            start: 0,
            nodes: vec![1],
            samples: 0,
        };
        assert_eq!(w.encode_to_vec(), vec![0x12, 0x08, 1, 0, 0, 0, 0, 0, 0, 0]);
        // TokenRange bounds are fixed64 fields 1 and 2 (wire type 1).
        let r = TokenRange { first: 1, last: 2 };
        assert_eq!(
            r.encode_to_vec(),
            vec![0x09, 1, 0, 0, 0, 0, 0, 0, 0, 0x11, 2, 0, 0, 0, 0, 0, 0, 0]
        );
        // `resume_from` is proto3 `optional`: present when set, even to 0.
        let t = TreeResponse {
            windows: vec![],
            resume_from: Some(0),
        };
        assert_eq!(t.encode_to_vec(), vec![0x10, 0x00]);
        // A request from a node that predates `token_ranges` decodes to "no filter".
        let old = SelectRequest {
            matchers: vec![],
            mint: 1,
            maxt: 2,
            token_ranges: vec![],
        };
        assert_eq!(old.encode_to_vec(), vec![0x10, 0x01, 0x18, 0x02]);
        // A live write carries no `hinted_at_ms`, so old and new nodes read it alike; a
        // hinted one has field 2 as a varint.
        let w = WriteRequest {
            series: vec![],
            hinted_at_ms: 0,
            handover: false,
        };
        assert!(w.encode_to_vec().is_empty());
        let w = WriteRequest {
            series: vec![],
            hinted_at_ms: 1,
            handover: false,
        };
        assert_eq!(w.encode_to_vec(), vec![0x10, 0x01]);
        let w = WriteRequest {
            series: vec![],
            hinted_at_ms: 0,
            handover: true,
        };
        assert_eq!(w.encode_to_vec(), vec![0x18, 0x01]);
        // Tombstone: id fixed64 (field 1, wire type 1), mint/maxt/deleted_at int64 varints.
        let t = TombstoneMsg {
            id: 7,
            matchers: vec![MatcherMsg {
                name: "a".into(),
                op: 0,
                value: "b".into(),
            }],
            mint: 1,
            maxt: 2,
            deleted_at_ms: 3,
        };
        assert_eq!(
            t.encode_to_vec(),
            vec![
                0x09, 7, 0, 0, 0, 0, 0, 0, 0, // id
                0x12, 0x06, 0x0a, 0x01, b'a', 0x1a, 0x01, b'b', // matcher (op 0 omitted)
                0x18, 0x01, 0x20, 0x02, 0x28, 0x03,
            ]
        );
        let d = DeleteResponse { deleted_series: 2 };
        assert_eq!(d.encode_to_vec(), vec![0x08, 0x02]);
        // Partial aggregates: steps packed uint32 (field 2), values packed double (field 3).
        let g = GroupPartial {
            labels: vec![],
            steps: vec![1],
            values: vec![0.5],
            counts: vec![],
            first_series: vec![],
        };
        assert_eq!(
            g.encode_to_vec(),
            vec![0x12, 0x01, 0x01, 0x1a, 0x08, 0, 0, 0, 0, 0, 0, 0xe0, 0x3f]
        );
        // The request's step (field 4) and token ranges (field 6, a message).
        let a = AggregateRequest {
            query: "q".into(),
            step: 1,
            token_ranges: vec![TokenRange { first: 1, last: 2 }],
            ..AggregateRequest::default()
        };
        assert_eq!(
            a.encode_to_vec(),
            vec![
                0x0a, 0x01, b'q', 0x20, 0x01, 0x32, 0x12, 0x09, 1, 0, 0, 0, 0, 0, 0, 0, 0x11, 2, 0,
                0, 0, 0, 0, 0, 0
            ]
        );
        // Digest spans (field 9, messages like token ranges); digests as packed uint64
        // samples (field 3) and packed fixed64 sums (field 4).
        let a = AggregateRequest {
            digest_ranges: vec![TokenRange { first: 1, last: 2 }],
            ..AggregateRequest::default()
        };
        assert_eq!(
            a.encode_to_vec(),
            vec![0x4a, 0x12, 0x09, 1, 0, 0, 0, 0, 0, 0, 0, 0x11, 2, 0, 0, 0, 0, 0, 0, 0]
        );
        let r = AggregateResponse {
            digest_samples: vec![3],
            digest_sums: vec![5],
            ..AggregateResponse::default()
        };
        assert_eq!(
            r.encode_to_vec(),
            vec![0x1a, 0x01, 0x03, 0x22, 0x08, 5, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn partials_round_trip() {
        let p = Partials {
            groups: vec![PartialGroup {
                labels: Labels::from_metric("m", &[("k", "a")]),
                first: Some(Labels::from_metric("m", &[("k", "a"), ("z", "1")])),
                points: vec![(0, 1.5, 2.0), (3, -0.25, 1.0)],
            }],
            samples: 42,
        };
        assert_eq!(partials_from_wire(partials_to_wire(&p)).unwrap(), p);
        // Counts that are all 1 are left out and come back as 1.
        let mut ones = p.clone();
        ones.groups[0].points[0].2 = 1.0;
        let wire = partials_to_wire(&ones);
        assert!(wire.groups[0].counts.is_empty());
        assert_eq!(partials_from_wire(wire).unwrap(), ones);
        let mut bad = partials_to_wire(&p);
        bad.groups[0].counts.pop();
        assert!(partials_from_wire(bad).is_err());
        let d = [
            ReadDigest { samples: 2, sum: 9 },
            ReadDigest {
                samples: 0,
                sum: u64::MAX,
            },
        ];
        let mut wire = partials_to_wire(&p);
        set_digests(&mut wire, &d);
        assert_eq!(digests_from_wire(&wire, 2).unwrap(), d);
        assert!(digests_from_wire(&wire, 3).is_err());
        assert!(digests_from_wire(&partials_to_wire(&p), 2).is_err());
    }

    #[test]
    fn malformed_messages_are_errors() {
        let bad = WriteRequest {
            series: vec![SeriesSamples {
                labels: vec![],
                timestamps: vec![1, 2],
                values: vec![1.0],
            }],
            hinted_at_ms: 0,
            handover: false,
        };
        assert!(write_batch(bad).is_err());
        assert!(matchers_from_wire(vec![MatcherMsg {
            name: "x".into(),
            op: 9,
            value: "y".into()
        }])
        .is_err());
        assert!(matchers_from_wire(vec![MatcherMsg {
            name: "x".into(),
            op: 2,
            value: "(".into()
        }])
        .is_err());
        assert!(ranges_from_wire(&[TokenRange { first: 2, last: 1 }]).is_err());
        let r = ranges_from_wire(&[
            TokenRange { first: 5, last: 9 },
            TokenRange { first: 1, last: 4 },
        ])
        .unwrap();
        assert_eq!(r.spans(), &[(1, 9)]);
    }
}
