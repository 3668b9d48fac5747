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
    Run(Box<ingest_cmd::RunArgs>),
    /// The writer role: subscribe to MQTT brokers and store what observers hear.
    Ingest(ingest_cmd::IngestArgs),
    /// The reader role: the HTTP API and live feed over a database a writer keeps.
    Serve(Box<ingest_cmd::ServeArgs>),
    /// Publish a simulated mesh (with ground truth) to an MQTT broker.
    Simulate(simulate_cmd::SimulateArgs),
    /// Decode MeshCore frames given as hex (arguments, or one per line on stdin) into JSON lines.
    Decode(decode_cmd::DecodeArgs),
}

/// glibc's malloc gives threads their own arenas (up to 8 per core) and keeps what they
/// freed; in the system benchmark that was a third of the peak RSS of `meshlens run`
/// (BENCHMARKS.md). The limit is read before `main`, so the long-running commands re-execute
/// themselves once with `MALLOC_ARENA_MAX=2` unless the operator chose a value. If that fails,
/// they carry on as they are.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;
        if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let err = std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env("MALLOC_ARENA_MAX", "2")
            .exec();
        eprintln!("meshlens: could not re-execute with MALLOC_ARENA_MAX=2 ({err}); continuing");
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::Run(_) | Command::Ingest(_) | Command::Serve(_)
    ) {
        limit_malloc_arenas();
    }
    match cli.command {
        Command::Run(args) => ingest_cmd::run(*args),
        Command::Ingest(args) => ingest_cmd::ingest(args),
        Command::Serve(args) => ingest_cmd::serve_only(*args),
        Command::Decode(args) => decode_cmd::run(args),
        Command::Simulate(args) => simulate_cmd::run(args),
    }
}
