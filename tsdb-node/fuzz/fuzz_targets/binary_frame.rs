//! Feeds arbitrary bytes to the ZTSD frame decoder. It must never panic, never accept a
//! payload over the cap, and whatever decodes must re-encode to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsdb_node::ingest::binary::frame::{Frame, HEADER_LEN};

const MAX: u32 = 1 << 16;

fuzz_target!(|data: &[u8]| {
    // As given, and behind a valid magic + version so that every message type is reached.
    let mut framed = b"ZTSD\x01".to_vec();
    framed.extend_from_slice(data);
    for input in [data, framed.as_slice()] {
        if let Ok(Some((frame, used))) = Frame::parse(input, MAX) {
            assert!(used >= HEADER_LEN && used <= input.len());
            assert!(used - HEADER_LEN <= MAX as usize);
            let mut again = Vec::new();
            frame.encode(&mut again).expect("decoded frame re-encodes");
            // Reserved header bytes are not kept; everything else must match.
            assert_eq!(again[..6], input[..6]);
            assert_eq!(again[HEADER_LEN..], input[HEADER_LEN..used]);
            let (back, n) = Frame::parse(&again, MAX).unwrap().unwrap();
            assert_eq!(n, again.len());
            assert_eq!(back, frame);
        }
    }
});
