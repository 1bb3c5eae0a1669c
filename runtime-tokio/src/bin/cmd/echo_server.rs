//! `tether echo-server`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use tether_tokio::compat::bindings::DEFAULT_BUFFER_BUDGET;
use tether_tokio::compat::echo_server::{self, DEFAULT_ECHO_MAX_MESSAGE_SIZE};

use super::common::{block_on, parse_duration, parse_size, shutdown_signal};

/// Arguments of `tether echo-server` (documented on the subcommand).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// Largest incoming message in bytes; a larger one closes the connection with 1009.
    #[arg(long, default_value_t = DEFAULT_ECHO_MAX_MESSAGE_SIZE, value_parser = parse_size)]
    max_message_size: usize,
    /// Bytes held for all clients together: messages being read (counted as they arrive),
    /// received messages not yet echoed, echoes being written. At least --max-message-size.
    /// A complete message that finds no room closes its connection with 1013; while it is
    /// full the server stops reading, and a client holding part of a message that finds no
    /// room for --budget-wait is closed with 1013.
    #[arg(long, default_value_t = DEFAULT_BUFFER_BUDGET, value_parser = parse_size)]
    buffer_budget: usize,
    /// How long a client holding part of a message may find no room in --buffer-budget before
    /// it is closed with 1013 (idle clients wait without limit).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    budget_wait: Duration,
    /// How long a write to a client may take before the client is dropped as a slow reader.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    write_timeout: Duration,
    /// How long shutdown waits for clients to finish their closing handshake.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    shutdown_timeout: Duration,
}

pub(crate) fn run(args: Args) -> ExitCode {
    let config = match echo_server::builder(args.max_message_size)
        .buffer_budget(args.buffer_budget)
        .budget_wait(args.budget_wait)
        .write_timeout(args.write_timeout)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    block_on(async move {
        let server = match echo_server::start(args.listen, config).await {
            Ok(server) => server,
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", args.listen);
                return ExitCode::FAILURE;
            }
        };
        println!("echo server listening on ws://{}/", server.local_addr());
        shutdown_signal().await;
        if let Err(e) = server.shutdown(args.shutdown_timeout).await {
            eprintln!("warning: {e}");
        }
        ExitCode::SUCCESS
    })
}
