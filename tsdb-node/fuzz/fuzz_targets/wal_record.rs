//! Feeds arbitrary bytes to the WAL record decoder and the segment decoder. Neither may panic,
//! and whatever decodes must survive an encode/decode round trip unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsdb_node::storage::wal::{decode_segment, format, WalRecord};

fn check_round_trip(rec: &WalRecord) {
    let mut buf = Vec::new();
    rec.encode_into(&mut buf);
    let again = WalRecord::decode(&buf).expect("re-encoded record must decode");
    assert_eq!(&again, rec);
}

fuzz_target!(|data: &[u8]| {
    if let Ok(rec) = WalRecord::decode(data) {
        check_round_trip(&rec);
    }

    // As a whole file, and behind a valid header so that the frame parser is reached.
    let _ = decode_segment(data);
    let mut segment = format::segment_header().to_vec();
    segment.extend_from_slice(data);
    let (records, damage) = decode_segment(&segment);
    for rec in &records {
        check_round_trip(rec);
    }
    if let Some(d) = damage {
        assert!(d.offset as usize >= format::HEADER_LEN && d.offset as usize <= segment.len());
    }

    // Frames re-encoded from what decoded must decode to the same records.
    let mut rebuilt = format::segment_header().to_vec();
    format::encode_frames(&records, &mut rebuilt).expect("decoded records fit in frames");
    let (again, damage) = decode_segment(&rebuilt);
    assert!(damage.is_none());
    assert_eq!(again, records);
});
