//! `tether demo-server`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use tether_tokio::compat::demo_server::{
    DemoServer, DemoServerConfig, DEFAULT_DEMO_MAX_MESSAGE_SIZE, DEFAULT_MAX_PINGS,
};

use super::common::{block_on, parse_duration, parse_size, shutdown_signal};

/// Arguments of `tether demo-server` (documented on the subcommand).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Time between heartbeats of a subscribed connection (e.g. 500ms, 5s).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    heartbeat_interval: Duration,
    /// Largest incoming message in bytes; a larger one closes that connection with 1009.
    #[arg(long, default_value_t = DEFAULT_DEMO_MAX_MESSAGE_SIZE, value_parser = parse_size)]
    max_message_size: usize,
    /// Drop a client from which nothing (no message, no pong) arrives for this long.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pong_wait: Duration,
    /// Time between the server's pings; must be shorter than --pong-wait.
    #[arg(long, default_value = "48s", value_parser = parse_duration)]
    ping_period: Duration,
    /// Most pings a client may send per 10 s; one more closes it with 1008.
    #[arg(long, default_value_t = DEFAULT_MAX_PINGS)]
    max_pings: u32,
    /// How long shutdown waits for clients to finish their closing handshake.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    shutdown_timeout: Duration,
}

pub(crate) fn run(args: Args) -> ExitCode {
    block_on(async move {
        let config = DemoServerConfig {
            listen: args.listen,
            heartbeat_interval: args.heartbeat_interval,
            max_message_size: args.max_message_size,
            pong_wait: args.pong_wait,
            ping_period: args.ping_period,
            max_pings_per_window: args.max_pings,
            ..DemoServerConfig::default()
        };
        let server = match DemoServer::start(config).await {
            Ok(server) => server,
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", args.listen);
                return ExitCode::FAILURE;
            }
        };
        println!("demo server listening on ws://{}/", server.local_addr());
        shutdown_signal().await;
        let clients = server.connection_count();
        match server.shutdown(args.shutdown_timeout).await {
            Ok(()) => println!("shut down ({clients} client(s) closed with 1001)"),
            Err(e) => eprintln!("warning: {e}"),
        }
        ExitCode::SUCCESS
    })
}
