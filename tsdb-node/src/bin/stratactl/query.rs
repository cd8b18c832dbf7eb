//! `stratactl query`: an instant or range PromQL query, printed as a table, JSON or CSV.

use anyhow::{bail, Result};
use clap::Args;

use crate::client::Api;
use crate::output::{self, Format};
use crate::timespec::{api_time, now_ms};

#[derive(Args, Debug)]
pub struct QueryArgs {
    /// The PromQL expression.
    pub promql: String,
    /// Evaluation time of an instant query (now, now-5m, RFC 3339 or Unix seconds).
    #[arg(long, conflicts_with_all = ["start", "end", "step"])]
    pub time: Option<String>,
    /// Start of a range query; makes the query a range query.
    #[arg(long, requires = "end")]
    pub start: Option<String>,
    /// End of a range query.
    #[arg(long, requires = "start")]
    pub end: Option<String>,
    /// Resolution of a range query (`15s`, `1m`, or seconds).
    #[arg(long, default_value = "60s")]
    pub step: String,
    /// How to print the result.
    #[arg(long, short, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

pub fn run(api: &Api, a: QueryArgs) -> Result<()> {
    let now = now_ms();
    let data = match (&a.start, &a.end) {
        (Some(start), Some(end)) => {
            let (start, end) = (api_time(start, now)?, api_time(end, now)?);
            api.get_data(
                "/api/v1/query_range",
                &[
                    ("query", &a.promql),
                    ("start", &start),
                    ("end", &end),
                    ("step", &a.step),
                ],
            )?
        }
        (None, None) => {
            let time = api_time(a.time.as_deref().unwrap_or("now"), now)?;
            api.get_data("/api/v1/query", &[("query", &a.promql), ("time", &time)])?
        }
        _ => bail!("a range query needs both --start and --end"),
    };
    match a.output {
        Format::Json => println!("{}", serde_json::to_string_pretty(&data)?),
        Format::Csv => print!("{}", output::csv(&output::rows(&data)?)),
        Format::Table => {
            let rows = output::rows(&data)?;
            if rows.is_empty() {
                eprintln!("(empty result)");
            } else {
                print!("{}", output::table(&rows));
            }
        }
    }
    Ok(())
}
