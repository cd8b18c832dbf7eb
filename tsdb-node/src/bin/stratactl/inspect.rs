//! `stratactl storage inspect`: what is in a data directory, and is it intact.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use tsdb_node::storage::layout::SegmentName;
use tsdb_node::storage::segment::Segment;

#[derive(Args)]
pub struct InspectArgs {
    /// The node's data directory (the one holding *.seg files).
    #[arg(long, env = "STRATA_DATA_DIR")]
    data_dir: PathBuf,
}

pub fn run(a: InspectArgs) -> anyhow::Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(&a.data_dir)
        .with_context(|| format!("reading {}", a.data_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    let mut bad = 0;
    let (mut bytes, mut samples) = (0u64, 0u64);
    println!(
        "{:<60} {:>10} {:>12} {:>12} {:>8}",
        "segment", "series", "samples", "bytes", "B/sample"
    );
    for f in &files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let parsed = SegmentName::parse(&name);
        match Segment::open(f).and_then(|s| s.verify().map(|_| s)) {
            Ok(s) => {
                let m = s.meta();
                let bps = if m.num_samples > 0 {
                    s.file_size() as f64 / m.num_samples as f64
                } else {
                    0.0
                };
                println!(
                    "{name:<60} {:>10} {:>12} {:>12} {bps:>8.3}",
                    m.num_series,
                    m.num_samples,
                    s.file_size()
                );
                if matches!(
                    parsed.map(|p| p.kind),
                    Some(tsdb_node::storage::layout::SegmentKind::Raw { .. })
                ) {
                    bytes += s.file_size();
                    samples += m.num_samples;
                }
            }
            Err(e) => {
                bad += 1;
                println!("{name:<60} DAMAGED: {e}");
            }
        }
    }
    if samples > 0 {
        println!(
            "raw data: {samples} samples in {bytes} bytes = {:.3} bytes/sample",
            bytes as f64 / samples as f64
        );
    }
    if bad > 0 {
        anyhow::bail!("{bad} damaged segment(s)");
    }
    Ok(())
}
