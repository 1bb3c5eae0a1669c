//! The `tether` command-line tool.

use clap::{Parser, Subcommand};

/// Tether: REST over one WebSocket, in both directions.
///
/// A device behind NAT dials out to a server; after that either side can call the
/// other's HTTP API over the one connection. See spec/protocol.md for the wire format.
#[derive(Debug, Parser)]
#[command(name = "tether", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => {
            use clap::CommandFactory;
            // No subcommand: show the help rather than doing nothing silently.
            let _ = Cli::command().print_help();
            std::process::ExitCode::from(2)
        }
        Some(command) => match command {},
    }
}
