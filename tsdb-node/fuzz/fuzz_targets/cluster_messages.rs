//! Feeds arbitrary bytes to what a node decodes from its peers and its hint files: the gRPC
//! messages (`WriteRequest`, `SelectRequest`, `TreeRequest`, `TreeResponse`,
//! `DeleteRequest`/`TombstonesResponse` tombstones) with their
//! conversions to storage types and Merkle trees, and hint-file records. None may panic; whatever converts must survive a round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tsdb_node::cluster::hints::decode_records;
use tsdb_node::cluster::merkle::MerkleTree;
use tsdb_node::cluster::rpc::{
    matchers_from_wire, matchers_to_wire, ranges_from_wire, ranges_to_wire, write_batch,
    write_request, DeleteRequest, SelectRequest, TreeRequest, TreeResponse, WriteRequest,
};
use tsdb_node::cluster::tombstones::ClusterTombstone;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = WriteRequest::decode(data) {
        if let Ok(batch) = write_batch(req) {
            let all: Vec<usize> = (0..batch.len()).collect();
            let (again, order) = write_request(&batch, &all);
            assert_eq!(order.len(), batch.len());
            let back = write_batch(again).expect("a converted batch converts back");
            assert_eq!(back.len(), batch.len());
        }
    }
    if let Ok(req) = SelectRequest::decode(data) {
        if let Ok(ms) = matchers_from_wire(req.matchers) {
            let back = matchers_from_wire(matchers_to_wire(&ms)).expect("round trip");
            assert_eq!(back.len(), ms.len());
        }
    }
    if let Ok(req) = SelectRequest::decode(data) {
        if let Ok(r) = ranges_from_wire(&req.token_ranges) {
            assert_eq!(ranges_from_wire(&ranges_to_wire(&r)).expect("round trip"), r);
        }
    }
    if let Ok(req) = TreeRequest::decode(data) {
        if let Ok(r) = ranges_from_wire(&req.ranges) {
            assert_eq!(ranges_from_wire(&ranges_to_wire(&r)).expect("round trip"), r);
        }
    }
    if let Ok(resp) = TreeResponse::decode(data) {
        for w in resp.windows {
            // What a node builds from a peer's leaves: any count, never a panic.
            if let Some(t) = MerkleTree::from_leaves(w.nodes) {
                let _ = t.differing_leaves(&t);
            }
        }
    }
    if let Ok(req) = DeleteRequest::decode(data) {
        for m in req.tombstones {
            if let Ok(t) = ClusterTombstone::from_wire(m) {
                let back = ClusterTombstone::from_wire(t.to_wire()).expect("round trip");
                assert_eq!(back.to_wire(), t.to_wire());
            }
        }
    }
    let _ = decode_records(data);
});
