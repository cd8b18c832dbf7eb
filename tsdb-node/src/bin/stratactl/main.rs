//! `stratactl`: Strata's command-line tool.

mod inspect;
mod storage_bench;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "stratactl", version, about = "Command-line tool for Strata")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Offline tools that work directly on a node's storage directories.
    #[command(subcommand)]
    Storage(StorageCommand),
}

#[derive(Subcommand)]
enum StorageCommand {
    /// Benchmark the storage engine on the reference IoT dataset and print the figures.
    Bench(storage_bench::BenchArgs),
    /// List a data directory's segments and verify every checksum.
    Inspect(inspect::InspectArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Storage(StorageCommand::Bench(a)) => storage_bench::run(a),
        Command::Storage(StorageCommand::Inspect(a)) => inspect::run(a),
    }
}
