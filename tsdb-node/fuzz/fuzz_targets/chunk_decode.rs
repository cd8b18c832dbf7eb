//! Feeds arbitrary bytes to every chunk decoder. None may panic; whatever decodes must be a
//! valid chunk's samples and must survive a re-encode round trip bit for bit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsdb_node::storage::codec::{
    aggregate_chunk, chunk_meta, decode_chunk, encode_chunk, Aggregate, ChunkIter,
};

fuzz_target!(|data: &[u8]| {
    let meta = chunk_meta(data);

    let mut out = Vec::new();
    let decoded = decode_chunk(data, &mut out);

    let mut iterated = Vec::new();
    let mut iter_ok = false;
    if let Ok(it) = ChunkIter::new(data) {
        iter_ok = true;
        for s in it {
            match s {
                Ok(s) => iterated.push(s),
                Err(_) => {
                    iter_ok = false;
                    break;
                }
            }
        }
    }

    let mut agg = Aggregate::new();
    let agg_result = aggregate_chunk(data, i64::MIN, i64::MAX, &mut agg);
    if let Ok(m) = meta {
        let mid = m
            .mint
            .wrapping_add(((m.maxt as i128 - m.mint as i128) / 2) as i64);
        let mut part = Aggregate::new();
        let _ = aggregate_chunk(data, mid, m.maxt, &mut part);
        if let Ok(mut it) = ChunkIter::new(data) {
            let _ = it.seek(mid);
            let _ = it.next_sample();
        }
    }

    if decoded.is_ok() {
        let meta = meta.expect("a decodable chunk has a valid header");
        assert_eq!(out.len(), meta.count as usize);
        assert!(out.windows(2).all(|w| w[0].t < w[1].t));
        assert_eq!(out.first().map(|s| s.t), Some(meta.mint));
        assert_eq!(out.last().map(|s| s.t), Some(meta.maxt));
        assert!(iter_ok);
        assert_eq!(iterated, out);
        assert!(agg_result.is_ok());
        assert_eq!(agg.count, out.len() as u64);

        let again = encode_chunk(&out).expect("decoded samples re-encode");
        let mut out2 = Vec::new();
        decode_chunk(&again, &mut out2).expect("re-encoded chunk decodes");
        assert_eq!(out, out2);
    }
});
