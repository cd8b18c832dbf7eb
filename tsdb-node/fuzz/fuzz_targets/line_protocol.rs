//! Feeds arbitrary text to the line protocol parsers in every precision. They must never
//! panic, every line is either mapped to samples or reported as an error with a valid number,
//! and the grouped parse (`parse_series`) agrees with the line-by-line one. HTTP's parse with
//! the label cache (`parse_series_cached`) gives exactly the grouped parse's outcome, on the
//! first pass (filling the cache) and the second (reading it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsdb_node::ingest::label_cache::LabelCache;
use tsdb_node::ingest::line_protocol::{
    parse, parse_series, parse_series_cached, LineOptions, Precision,
};

fuzz_target!(|data: &[u8]| {
    let body = String::from_utf8_lossy(data);
    let lines = body.split('\n').count();
    for precision in [Precision::Nanoseconds, Precision::Milliseconds, Precision::Hours] {
        let opts = LineOptions::new(precision, 1_700_000_000_000);
        let out = parse(&body, &opts);
        let grouped = parse_series(&body, &opts);
        assert_eq!(grouped.errors, out.errors);
        assert_eq!(grouped.samples, out.samples.len());
        let cache = LabelCache::shared(64);
        for _ in 0..2 {
            let cached = parse_series_cached(&body, &opts, &cache);
            assert_eq!(cached.errors, grouped.errors);
            assert_eq!(cached.series, grouped.series);
            assert_eq!(cached.skipped_string_fields, grouped.skipped_string_fields);
        }
        for e in &out.errors {
            assert!(e.line >= 1 && e.line <= lines);
        }
        for (labels, _) in &out.samples {
            assert!(labels.metric_name().is_some());
        }
    }
});
