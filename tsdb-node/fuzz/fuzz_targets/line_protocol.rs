//! Feeds arbitrary text to the line protocol parser in every precision. It must never panic,
//! and every line is either mapped to samples or reported as an error with a valid number.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsdb_node::ingest::line_protocol::{parse, LineOptions, Precision};

fuzz_target!(|data: &[u8]| {
    let body = String::from_utf8_lossy(data);
    let lines = body.split('\n').count();
    for precision in [Precision::Nanoseconds, Precision::Milliseconds, Precision::Hours] {
        let out = parse(&body, &LineOptions::new(precision, 1_700_000_000_000));
        for e in &out.errors {
            assert!(e.line >= 1 && e.line <= lines);
        }
        for (labels, _) in &out.samples {
            assert!(labels.metric_name().is_some());
        }
    }
});
