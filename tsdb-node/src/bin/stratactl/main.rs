//! `stratactl`: Strata's command-line tool: a client of a running node (status, queries,
//! writes, admin actions, data generation and load benchmarks) and offline storage tools.

mod client;
mod compare;
mod generate;
mod info;
mod inspect;
mod load_bench;
mod output;
mod proto;
mod query;
mod query_bench;
mod simulate;
mod storage_bench;
mod timespec;
mod workload;
mod write;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "stratactl", version, about = "Command-line tool for Strata")]
struct Cli {
    /// Base URL of the node's HTTP API.
    #[arg(
        long,
        global = true,
        env = "STRATA_SERVER",
        default_value = "http://127.0.0.1:8181"
    )]
    server: String,
    /// User for the TCP JSON protocol.
    #[arg(long, global = true, env = "STRATA_USER")]
    user: Option<String>,
    /// Password for the TCP JSON protocol.
    #[arg(long, global = true, env = "STRATA_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Address of the TCP JSON ingest listener.
    #[arg(
        long,
        global = true,
        env = "STRATA_TCP_ADDR",
        default_value = "127.0.0.1:5433"
    )]
    tcp_addr: String,
    /// Address of the binary (ZTSD) listener.
    #[arg(
        long,
        global = true,
        env = "STRATA_BINARY_ADDR",
        default_value = "127.0.0.1:9876"
    )]
    binary_addr: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the node's status and storage statistics.
    Status,
    /// Run a PromQL query (instant, or range with --start/--end/--step).
    Query(query::QueryArgs),
    /// Write line protocol from a file or stdin.
    Write(write::WriteArgs),
    /// List the series matching selectors.
    Series(info::SeriesArgs),
    /// Flush the in-memory head to a block.
    Flush,
    /// Flush, then compact every block.
    Compact,
    /// Compute the rollups of old data.
    Downsample,
    /// Hand this node's data to the rest of the cluster and leave the ring (progress in
    /// `status`/`/api/v1/cluster/members`).
    Decommission,
    /// Remove a dead node from the cluster for good (it never comes back): peers drop it from
    /// the ring and drop its hints, and anti-entropy restores the copies it held from the
    /// remaining replicas. Refused while the node is alive, unless --force.
    RemoveNode {
        /// Id of the node to remove.
        node_id: String,
        /// Remove it even though gossip sees it alive (data only it holds is lost).
        #[arg(long)]
        force: bool,
    },
    /// Drop the local copies of ranges this node no longer owns (after a join or a
    /// removal), once every current owner is verified to hold them.
    Cleanup,
    /// Run an anti-entropy round on the node now and print what it repaired.
    AntiEntropy,
    /// Send synthetic IoT data over an ingest protocol.
    Generate(generate::GenerateArgs),
    /// Load-test ingestion over a protocol, or the latency of a query.
    Bench(load_bench::BenchArgs),
    /// Simulated devices publishing live readings (seed 001's `--sim`), e.g. `simulate mqtt`.
    Simulate(simulate::SimulateArgs),
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
    /// Benchmark PromQL queries on the reference IoT dataset, in process.
    QueryBench(query_bench::QueryBenchArgs),
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let api = client::Api::new(&cli.server);
    let endpoints = || proto::Endpoints {
        api: api.clone(),
        tcp_json: cli.tcp_addr.clone(),
        binary: cli.binary_addr.clone(),
        user: cli.user.clone(),
        password: cli.password.clone(),
    };
    match cli.command {
        Command::Status => info::status(&api),
        Command::Query(a) => query::run(&api, a),
        Command::Write(a) => write::run(&api, a),
        Command::Series(a) => info::series(&api, a),
        Command::Flush => info::admin(&api, "flush"),
        Command::Decommission => info::admin(&api, "decommission"),
        Command::RemoveNode { node_id, force } => info::remove_node(&api, &node_id, force),
        Command::Cleanup => info::admin(&api, "cleanup"),
        Command::AntiEntropy => info::admin(&api, "anti-entropy"),
        Command::Compact => info::admin(&api, "compact"),
        Command::Downsample => info::admin(&api, "downsample"),
        Command::Generate(a) => generate::run(&endpoints(), a),
        Command::Bench(a) => load_bench::run(&endpoints(), a),
        Command::Simulate(a) => simulate::run(a),
        Command::Storage(StorageCommand::Bench(a)) => storage_bench::run(a),
        Command::Storage(StorageCommand::Inspect(a)) => inspect::run(a),
        Command::Storage(StorageCommand::QueryBench(a)) => query_bench::run(a),
    }
}
