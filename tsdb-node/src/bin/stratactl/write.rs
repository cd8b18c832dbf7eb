//! `stratactl write`: line protocol from a file or stdin to the node.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::client::Api;

#[derive(Args, Debug)]
pub struct WriteArgs {
    /// File of line protocol; stdin when absent or `-`.
    pub file: Option<PathBuf>,
    /// Send to the InfluxDB endpoint `/write` (field sets, nanoseconds by default) instead
    /// of `/api/v1/write` (seed 003: `metric,tags value timestamp_ms`).
    #[arg(long)]
    pub influx: bool,
    /// Timestamp precision of `/write` (ns, us, ms, s); `/api/v1/write` is always ms.
    #[arg(long, requires = "influx")]
    pub precision: Option<String>,
    /// Database name passed to `/write` (the node ignores it; some clients require one).
    #[arg(long, default_value = "strata", requires = "influx")]
    pub db: String,
}

pub fn run(api: &Api, a: WriteArgs) -> Result<()> {
    let mut body = Vec::new();
    match &a.file {
        Some(p) if p.as_os_str() != "-" => {
            body = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        }
        _ => {
            std::io::stdin()
                .read_to_end(&mut body)
                .context("reading stdin")?;
        }
    }
    let lines = body
        .split(|b| *b == b'\n')
        .filter(|l| {
            let l = l.trim_ascii();
            !l.is_empty() && !l.starts_with(b"#")
        })
        .count();
    let path = if a.influx {
        let mut q = vec![("db", a.db.as_str())];
        if let Some(p) = &a.precision {
            q.push(("precision", p));
        }
        format!("/write?{}", serde_urlencoded::to_string(&q)?)
    } else {
        "/api/v1/write".to_string()
    };
    api.post_write(&path, "text/plain; charset=utf-8", &body)
        .context("the node refused the write")?;
    println!(
        "stored {lines} line(s) ({} bytes) via {}",
        body.len(),
        path.split('?').next().unwrap_or(&path)
    );
    Ok(())
}
