//! Memory and latency of the series catalog at a million IoT series.
//!
//! Ignored by default (it allocates a few hundred MB and takes seconds); run with
//! `cargo test --release --test catalog_memory -- --ignored --nocapture`.
//! A counting global allocator measures exactly what the catalog keeps allocated.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tsdb_node::storage::catalog::{Catalog, SeriesLimits};
use tsdb_node::storage::model::{Label, Labels, MatchOp, Matcher};

struct Counting;

static REQUESTED: AtomicUsize = AtomicUsize::new(0);
/// What glibc malloc really reserves: 8 bytes of chunk header, 16-byte rounding, 32 minimum.
static RESERVED: AtomicUsize = AtomicUsize::new(0);
static LIVE_ALLOCS: AtomicUsize = AtomicUsize::new(0);

fn chunk(size: usize) -> usize {
    ((size + 8 + 15) & !15).max(32)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        REQUESTED.fetch_add(layout.size(), Ordering::Relaxed);
        RESERVED.fetch_add(chunk(layout.size()), Ordering::Relaxed);
        LIVE_ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        REQUESTED.fetch_sub(layout.size(), Ordering::Relaxed);
        RESERVED.fetch_sub(chunk(layout.size()), Ordering::Relaxed);
        LIVE_ALLOCS.fetch_sub(1, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Clone, Copy)]
struct Usage {
    requested: usize,
    reserved: usize,
    allocs: usize,
}

fn usage() -> Usage {
    Usage {
        requested: REQUESTED.load(Ordering::Relaxed),
        reserved: RESERVED.load(Ordering::Relaxed),
        allocs: LIVE_ALLOCS.load(Ordering::Relaxed),
    }
}

const METRICS: [(&str, &str); 4] = [
    ("temperature", "C"),
    ("humidity", "%"),
    ("pressure", "hPa"),
    ("battery", "V"),
];

fn series(metric: usize, device: usize) -> Labels {
    let (name, unit) = METRICS[metric % METRICS.len()];
    Labels::new(vec![
        Label::new("__name__", name),
        Label::new("device_id", format!("dev-{device:06}")),
        Label::new("site", format!("site-{}", device % 100)),
        Label::new("unit", unit),
    ])
}

fn build(devices: usize, metrics: usize) -> Catalog {
    let mut c = Catalog::new(SeriesLimits::default());
    let before = usage();
    let start = Instant::now();
    for device in 0..devices {
        for metric in 0..metrics {
            c.get_or_create(&series(metric, device)).unwrap();
        }
    }
    let elapsed = start.elapsed();
    let after = usage();
    let n = c.len();
    println!(
        "{devices} devices x {metrics} metrics = {n} series: created in {:.2?} ({:.0} ns/series)",
        elapsed,
        elapsed.as_nanos() as f64 / n as f64
    );
    println!(
        "  memory: {:.1} B/series requested, {:.1} B/series incl. malloc overhead, {:.2} allocations/series, {:.1} MiB total",
        (after.requested - before.requested) as f64 / n as f64,
        (after.reserved - before.reserved) as f64 / n as f64,
        (after.allocs - before.allocs) as f64 / n as f64,
        (after.reserved - before.reserved) as f64 / (1024.0 * 1024.0),
    );
    c
}

fn time_lookups(c: &Catalog, devices: usize, metrics: usize) {
    let probes: Vec<Labels> = (0..10_000)
        .map(|i| series(i % metrics, (i * 7919) % devices))
        .collect();
    let start = Instant::now();
    let mut found = 0;
    for p in &probes {
        found += usize::from(c.id_of(p).is_some());
    }
    let elapsed = start.elapsed();
    assert_eq!(found, probes.len());
    println!(
        "  id_of: {:.0} ns/lookup",
        elapsed.as_nanos() as f64 / probes.len() as f64
    );
}

fn time_selects(c: &Catalog) {
    let cases: Vec<(&str, Vec<Matcher>)> = vec![
        (
            r#"{__name__="temperature",device_id="dev-000123"}"#,
            vec![
                Matcher::equal("__name__", "temperature"),
                Matcher::equal("device_id", "dev-000123"),
            ],
        ),
        (
            r#"{__name__="temperature",site="site-12"}"#,
            vec![
                Matcher::equal("__name__", "temperature"),
                Matcher::equal("site", "site-12"),
            ],
        ),
        (
            r#"{__name__="temperature",site=~"site-1.*"}"#,
            vec![
                Matcher::equal("__name__", "temperature"),
                Matcher::new(MatchOp::RegexMatch, "site", "site-1.*").unwrap(),
            ],
        ),
        (
            r#"{__name__="temperature",device_id=~"dev-00012.*"}"#,
            vec![
                Matcher::equal("__name__", "temperature"),
                Matcher::new(MatchOp::RegexMatch, "device_id", "dev-00012.*").unwrap(),
            ],
        ),
        (
            r#"{__name__="temperature",device_id=~"dev-000001|dev-000002|dev-000003"}"#,
            vec![
                Matcher::equal("__name__", "temperature"),
                Matcher::new(
                    MatchOp::RegexMatch,
                    "device_id",
                    "dev-000001|dev-000002|dev-000003",
                )
                .unwrap(),
            ],
        ),
        (
            r#"{site="site-12",device_id!~"dev-0000.*"}"#,
            vec![
                Matcher::equal("site", "site-12"),
                Matcher::new(MatchOp::RegexNoMatch, "device_id", "dev-0000.*").unwrap(),
            ],
        ),
        (
            r#"{__name__="temperature",unit!="C"}"#,
            vec![
                Matcher::equal("__name__", "temperature"),
                Matcher::new(MatchOp::NotEqual, "unit", "C").unwrap(),
            ],
        ),
        (
            r#"{__name__="temperature"}"#,
            vec![Matcher::equal("__name__", "temperature")],
        ),
    ];
    for (name, matchers) in cases {
        let runs = 5;
        let start = Instant::now();
        let mut n = 0;
        for _ in 0..runs {
            n = c.select(&matchers).len();
        }
        let per = start.elapsed() / runs;
        println!("  select {name}: {n} series in {per:.2?}");
    }
    let start = Instant::now();
    let values = c.label_values("device_id", None).len();
    println!(
        "  label_values(device_id): {values} values in {:.2?}",
        start.elapsed()
    );
}

#[test]
#[ignore = "allocates hundreds of MB; run explicitly with --release --ignored --nocapture"]
fn one_million_iot_series() {
    {
        let c = build(1_000_000, 1);
        time_lookups(&c, 1_000_000, 1);
        time_selects(&c);
    }
    {
        let c = build(250_000, 4);
        time_lookups(&c, 250_000, 4);
        time_selects(&c);
    }
}
