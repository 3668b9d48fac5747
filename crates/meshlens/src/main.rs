//! `meshlens`: the one binary. This file is CLI wiring only; each subcommand lives in its own
//! module and the real work in the library crates (see ARCHITECTURE.md).

mod decode_cmd;
mod ingest_cmd;
mod keys;
mod simulate_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// A self-hosted analyzer for MeshCore LoRa mesh networks.
#[derive(Debug, Parser)]
#[command(name = "meshlens", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run everything: embedded MQTT broker, writer, and the HTTP API with its live feed.
    Run(ingest_cmd::RunArgs),
    /// The writer role: subscribe to MQTT brokers and store what observers hear.
    Ingest(ingest_cmd::IngestArgs),
    /// The reader role: the HTTP API and live feed over a database a writer keeps.
    Serve(ingest_cmd::ServeArgs),
    /// Publish a simulated mesh (with ground truth) to an MQTT broker.
    Simulate(simulate_cmd::SimulateArgs),
    /// Decode MeshCore frames given as hex (arguments, or one per line on stdin) into JSON lines.
    Decode(decode_cmd::DecodeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => ingest_cmd::run(args),
        Command::Ingest(args) => ingest_cmd::ingest(args),
        Command::Serve(args) => ingest_cmd::serve_only(args),
        Command::Decode(args) => decode_cmd::run(args),
        Command::Simulate(args) => simulate_cmd::run(args),
    }
}
