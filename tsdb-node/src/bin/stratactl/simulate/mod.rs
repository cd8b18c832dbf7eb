//! `stratactl simulate`: simulated devices publishing live readings (seed 001's `--sim`).

mod mqtt;
mod publisher;
mod sensors;

use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct SimulateArgs {
    #[command(subcommand)]
    pub target: Target,
}

#[derive(Subcommand, Debug)]
pub enum Target {
    /// Publish seed 001 JSON readings to an MQTT broker.
    Mqtt(mqtt::MqttSimArgs),
}

pub fn run(a: SimulateArgs) -> anyhow::Result<()> {
    match a.target {
        Target::Mqtt(m) => mqtt::run(m),
    }
}
