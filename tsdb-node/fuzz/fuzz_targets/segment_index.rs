//! Fuzzes the segment reader: any byte string must either be refused or yield a segment whose
//! every method returns without panicking.
//!
//! The first input byte is a mode: when odd, the index and footer checksums of the remaining
//! bytes are recomputed before opening, so that mutations get past the checksum gate and reach
//! the structural checks behind it (otherwise nearly every mutation dies at the first CRC).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsdb_node::storage::segment::{format, Segment};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, image)) = data.split_first() else {
        return;
    };
    let mut image = image.to_vec();
    if mode & 1 == 1 {
        format::reseal_checksums(&mut image);
    }
    let Ok(seg) = Segment::from_bytes(image) else {
        return;
    };
    let _ = (seg.meta(), seg.path(), seg.file_size());
    let ids: Vec<u64> = seg.series_ids().collect();
    for &id in ids.iter().chain(&[0, 1, u64::MAX]) {
        let Ok(Some(entry)) = seg.series(id) else {
            continue;
        };
        let _ = (entry.id(), entry.num_chunks(), entry.labels());
        for chunk in entry.all_chunks().flatten() {
            let _ = seg.chunk_bytes(&chunk);
            // Query around each chunk so the binary search runs on every boundary.
            for (mint, maxt) in [
                (chunk.mint, chunk.maxt),
                (chunk.maxt, chunk.maxt),
                (i64::MIN, chunk.mint),
            ] {
                for found in entry.chunks(chunk.kind, mint, maxt).flatten() {
                    let _ = seg.chunk_bytes(&found);
                }
            }
        }
        let _ = entry.chunks(0, i64::MIN, i64::MAX).count();
        let _ = entry.chunks(0, 1, 0).count();
    }
    if let Ok(names) = seg.label_names() {
        for name in names.iter().map(String::as_str).chain(["", "absent"]) {
            let values = seg.label_values(name).unwrap_or_default();
            for value in values.iter().map(String::as_str).chain(["", "absent"]) {
                if let Ok(postings) = seg.postings(name, value) {
                    let _ = postings.count();
                }
            }
        }
    }
    let _ = seg.iter_series().count();
    let _ = seg.entries().count();
    let _ = seg.verify();
});
