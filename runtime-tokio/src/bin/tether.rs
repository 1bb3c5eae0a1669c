//! The `tether` command-line tool.
//!
//! The doc comments of its argument types are its `--help` text (clap), written for a
//! terminal, not for rustdoc: brackets there are command-line syntax, not links.
#![allow(rustdoc::broken_intra_doc_links)]

use clap::{Parser, Subcommand};

#[path = "cmd/mod.rs"]
mod cmd;

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
enum Command {
    /// The end-to-end demo: a Tether server and client on loopback, in one process.
    ///
    /// Shows the handshake (connection id, negotiated heartbeat and limits) and a few
    /// heartbeat round-trip times. Then REST both ways over the one connection: the client
    /// serves `GET /status` and `POST /echo` (the body streamed back), the server serves
    /// `GET /time` and `POST /upload` (bytes counted and summed); the demo makes one call
    /// each way, `--requests` calls at once in each direction (requests/s) and streams a
    /// `--body-mib` body each way (MiB/s). Then it cuts the client's TCP connection
    /// (through an in-process relay), shows the client resume the same session, a call made
    /// while it reconnected complete and the server's call still work; closes cleanly and
    /// prints a summary. Every answer is checked (status and body): any mismatch or failure
    /// prints `demo failed: ...` and exits 1. Takes about two seconds; exits 0 on success.
    Demo(cmd::demo::Args),
    /// Run a Tether server.
    ///
    /// Prints one line per connection event: `received <id> <metadata>`, `resumed <id>`,
    /// `closed <id> <code> <reason>`, `failure <id> <reason>`. Every path accepts Tether
    /// connections (subprotocol tether.v1); a disallowed Origin gets 403, a non-GET 405, a
    /// plain HTTP request 400. SIGINT or SIGTERM closes every client with 1001 and exits 0.
    ///
    /// HTTP tunnel: with --gateway ADDR, plain HTTP requests to ADDR are carried to a
    /// connected client (chosen with the header `Tether-Connection: <id>`, or the only one)
    /// and answered by that client's --upstream; with --upstream URL, the clients' requests
    /// go to the HTTP server at URL. Errors are one-line text: 503 no client connected, 404
    /// unknown id, 400 malformed id or several clients and no header, 502 client lost or
    /// upstream unreachable, 504 timeout.
    ///
    /// Example: reach the web UI a device serves on its own loopback:
    ///
    ///   server$ tether server --listen 0.0.0.0:9000 --gateway 127.0.0.1:8080
    ///
    ///   device$ tether client ws://server:9000/ --upstream http://127.0.0.1:80
    ///
    ///   server$ curl http://127.0.0.1:8080/status
    ///
    /// TCP tunnel: with --tcp-gateway LISTEN=HOST:PORT, each TCP connection to LISTEN is
    /// carried, bytes both ways, to HOST:PORT on the client's side, which the client must
    /// allow with --tcp-upstream HOST:PORT (one CONNECT stream per connection, spec §10.9):
    ///
    ///   server$ tether server --listen 0.0.0.0:9000 --tcp-gateway 127.0.0.1:2222=127.0.0.1:22
    ///
    ///   device$ tether client ws://server:9000/ --tcp-upstream 127.0.0.1:22
    ///
    ///   server$ ssh -p 2222 user@127.0.0.1
    Server(cmd::server::Args),
    /// Connect to a Tether server and stay connected.
    ///
    /// Prints its events: `connected <id>`, `reconnecting attempt=N delay=D`, `resumed <id>`,
    /// `closed <id> <code> <reason>`, `failure <id> <reason>`. Reconnects with jittered
    /// back-off and resumes its session; a fatal close code (such as 4003, rejected) ends it
    /// with exit code 1. SIGINT or SIGTERM closes with 1000 and exits 0.
    ///
    /// HTTP tunnel: with --upstream URL, the server's requests go to the HTTP server at URL
    /// (a device exposes its local web server without opening a port); with --gateway ADDR,
    /// plain HTTP requests to ADDR go to the server (and are answered by its --upstream),
    /// waiting for a reconnection up to 10 s (then 503).
    ///
    /// Example: call the server's internal API from the device's side:
    ///
    ///   server$ tether server --listen 0.0.0.0:9000 --upstream http://127.0.0.1:3000/api
    ///
    ///   device$ tether client ws://server:9000/ --gateway 127.0.0.1:8080
    ///
    ///   device$ curl http://127.0.0.1:8080/v1/jobs    # reaches http://127.0.0.1:3000/api/v1/jobs
    ///
    /// TCP tunnel: --tcp-upstream HOST:PORT lets the server's --tcp-gateway reach HOST:PORT
    /// (no other destination); --tcp-gateway LISTEN=HOST:PORT carries each TCP connection to
    /// LISTEN to HOST:PORT on the server's side (allowed by its --tcp-upstream).
    Client(cmd::client::Args),
    /// Serve the demo WebSocket schema (wire-compatible with the Go demowsserver).
    ///
    /// Every path accepts WebSocket connections that speak plain JSON text messages: echo_request,
    /// subscribe_request / unsubscribe_request on the "heartbeat" topic (see spec/demo.md).
    /// SIGINT or SIGTERM closes every client with 1001 "server shutdown" and exits 0.
    DemoServer(cmd::demo_server::Args),
    /// Connect to a demo server, subscribe to heartbeats, send an echo and print what arrives.
    ///
    /// Every received message is printed on its own line on stdout; connection events go to
    /// stderr. When the connection drops (e.g. the server restarts) the client reconnects with
    /// jittered exponential back-off and subscribes again. SIGINT or SIGTERM closes with 1000 and
    /// exits 0.
    DemoClient(cmd::demo_client::Args),
    /// Run a plain WebSocket echo server (for conformance runs such as the Autobahn fuzzing client).
    ///
    /// Text is echoed as text and binary as binary; fragmented messages are reassembled first.
    /// Invalid UTF-8 closes with 1007, protocol violations with 1002, oversize messages with 1009.
    /// Any path and any origin are accepted. SIGINT or SIGTERM closes clients with 1001 and exits 0.
    /// Memory across clients stays within --buffer-budget, messages still being read included.
    EchoServer(cmd::echo_server::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => {
            use clap::CommandFactory;
            // No subcommand: show the help rather than doing nothing silently.
            let _ = Cli::command().print_help();
            std::process::ExitCode::from(2)
        }
        Some(command) => match command {
            Command::Demo(args) => cmd::demo::run(args),
            Command::Server(args) => cmd::server::run(args),
            Command::Client(args) => cmd::client::run(args),
            Command::DemoServer(args) => cmd::demo_server::run(args),
            Command::DemoClient(args) => cmd::demo_client::run(args),
            Command::EchoServer(args) => cmd::echo_server::run(args),
        },
    }
}
