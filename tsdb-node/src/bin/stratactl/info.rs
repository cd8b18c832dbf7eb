//! `stratactl status`, `series` and the admin actions `flush`, `compact`, `downsample`.

use anyhow::Result;
use clap::Args;
use serde_json::Value;

use crate::client::Api;
use crate::output::series_name;
use crate::timespec::{api_time, now_ms};

#[derive(Args, Debug)]
pub struct SeriesArgs {
    /// Series selectors, e.g. `cpu_usage{host="a"}`; a series matching any is listed.
    #[arg(required = true)]
    pub selectors: Vec<String>,
    /// Only series with samples at or after this time.
    #[arg(long)]
    pub start: Option<String>,
    /// Only series with samples at or before this time.
    #[arg(long)]
    pub end: Option<String>,
}

/// Prints `/api/v1/status` as indented `key: value` lines.
pub fn status(api: &Api) -> Result<()> {
    let data = api.get_data("/api/v1/status", &[])?;
    let mut out = String::new();
    pretty(&data, 0, &mut out);
    print!("{out}");
    Ok(())
}

fn pretty(v: &Value, depth: usize, out: &mut String) {
    let pad = "  ".repeat(depth);
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                match v {
                    Value::Object(_) | Value::Array(_) => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        pretty(v, depth + 1, out);
                    }
                    scalar => out.push_str(&format!("{pad}{k}: {}\n", plain(scalar))),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Object(_) | Value::Array(_) => {
                        out.push_str(&format!("{pad}-\n"));
                        pretty(item, depth + 1, out);
                    }
                    scalar => out.push_str(&format!("{pad}- {}\n", plain(scalar))),
                }
            }
        }
        scalar => out.push_str(&format!("{pad}{}\n", plain(scalar))),
    }
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Lists the series matching the selectors, one per line, and their count on stderr.
pub fn series(api: &Api, a: SeriesArgs) -> Result<()> {
    let now = now_ms();
    let mut params: Vec<(&str, String)> =
        a.selectors.iter().map(|s| ("match[]", s.clone())).collect();
    if let Some(s) = &a.start {
        params.push(("start", api_time(s, now)?));
    }
    if let Some(e) = &a.end {
        params.push(("end", api_time(e, now)?));
    }
    let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let data = api.get_data("/api/v1/series", &params)?;
    let list = data.as_array().map(Vec::as_slice).unwrap_or_default();
    let mut names: Vec<String> = list
        .iter()
        .filter_map(Value::as_object)
        .map(series_name)
        .collect();
    names.sort();
    for n in &names {
        println!("{n}");
    }
    eprintln!("{} series", names.len());
    Ok(())
}

/// An admin action (`flush`, `compact`, `downsample`) and what the server reported.
/// `POST /api/v1/admin/remove-node` with the node id form-encoded.
pub fn remove_node(api: &Api, node_id: &str, force: bool) -> Result<()> {
    let data = api.post_form(
        "/api/v1/admin/remove-node",
        &[
            ("node", node_id),
            ("force", if force { "true" } else { "false" }),
        ],
    )?;
    let mut out = String::new();
    pretty(&data, 0, &mut out);
    print!("remove-node {node_id}: done\n{out}");
    Ok(())
}

pub fn admin(api: &Api, action: &str) -> Result<()> {
    let data = api.post_empty(&format!("/api/v1/admin/{action}"))?;
    let mut out = String::new();
    pretty(&data, 0, &mut out);
    print!("{action}: done\n{out}");
    Ok(())
}
