//! Arbitrary bytes as one TCP JSON line: parsing must never panic, and a parsed data frame
//! must hold a timestamp in the documented range.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsdb_node::ingest::tcp_json::frame::{Frame, MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS};

fuzz_target!(|data: &[u8]| {
    if let Ok(Frame::Data(d)) = Frame::parse(data) {
        assert!((MIN_TIMESTAMP_MS..=MAX_TIMESTAMP_MS).contains(&d.sample.t));
        assert!(d.labels.metric_name().is_some_and(|m| !m.is_empty()));
    }
});
