//! Feeds arbitrary bytes to the remote write decoder, both as a body and as the protobuf
//! inside a valid snappy block. It must never panic nor exceed the size caps, and whatever
//! decodes must survive an encode/decode round trip. The in-place reader with its label cache
//! (`decode_cached`) must give exactly what prost's decoding gives, errors included, twice
//! in a row (the second time from the cache).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsdb_node::ingest::label_cache::LabelCache;
use tsdb_node::ingest::remote_write::{compress, decode, decode_cached, encode, RemoteWriteLimits};

fuzz_target!(|data: &[u8]| {
    let limits = RemoteWriteLimits {
        max_body: 1 << 20,
        max_decompressed: 1 << 20,
    };
    let _ = decode(data, &limits);
    let Ok(body) = compress(data) else { return };
    let want = decode(&body, &limits).map_err(|e| e.to_string());
    let cache = LabelCache::shared(16);
    for _ in 0..2 {
        let got = decode_cached(&body, &limits, &cache).map_err(|e| e.to_string());
        assert_eq!(got, want, "in-place reader disagrees with prost");
    }
    if let Ok(decoded) = decode(&body, &limits) {
        let again = encode(&decoded.series).expect("decoded request re-encodes");
        let back = decode(&again, &RemoteWriteLimits::default()).expect("re-encoded decodes");
        // -0.0 becomes 0.0 through proto3's default-value rule; compare with that in mind.
        assert_eq!(back.series.len(), decoded.series.len());
        for ((la, sa), (lb, sb)) in back.series.iter().zip(&decoded.series) {
            assert_eq!(la, lb);
            assert_eq!(sa.len(), sb.len());
            for (a, b) in sa.iter().zip(sb) {
                assert_eq!(a.t, b.t);
                assert!(a.v.to_bits() == b.v.to_bits() || (a.v == 0.0 && b.v == 0.0));
            }
        }
    }
});
