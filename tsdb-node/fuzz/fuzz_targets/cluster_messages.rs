//! Feeds arbitrary bytes to what a node decodes from its peers and its hint files: the gRPC
//! messages (`WriteRequest`, `SelectRequest`) with their conversions to storage types, and
//! hint-file records. None may panic; whatever converts must survive a round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message;
use tsdb_node::cluster::hints::decode_records;
use tsdb_node::cluster::rpc::{
    matchers_from_wire, matchers_to_wire, write_batch, write_request, SelectRequest, WriteRequest,
};

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
    let _ = decode_records(data);
});
