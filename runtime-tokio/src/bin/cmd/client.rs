//! `tether client`.

use std::process::ExitCode;
use std::time::Duration;

use tether_tokio::client::{Client, ClientConfig, ClientEvent};

use super::common::{block_on, shutdown_signal};
use super::lifecycle::{client_line, Flow, Timing};
use super::tunnel::{self, Tunnel};
use tether_tokio::gateway::Target;

/// Arguments of `tether client` (documented on the subcommand).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Server URL, ws://HOST:PORT/PATH or wss://….
    url: String,
    /// Metadata sent in the HELLO: one JSON value.
    #[arg(long, default_value = "null")]
    metadata: String,
    #[command(flatten)]
    timing: Timing,
    #[command(flatten)]
    flow: Flow,
    /// PEM file of the CA certificate(s) to trust for wss://.
    #[arg(long)]
    tls_ca: Option<std::path::PathBuf>,
    /// Print every heartbeat round-trip time.
    #[arg(long)]
    print_rtt: bool,
    /// Serve Prometheus metrics (OpenMetrics text) at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    #[command(flatten)]
    tunnel: Tunnel,
}

pub(crate) fn run(args: Args) -> ExitCode {
    if let Err(e) = serde_json::from_str::<serde_json::Value>(&args.metadata) {
        eprintln!("error: --metadata is not JSON: {e}");
        return ExitCode::from(2);
    }
    let mut config = ClientConfig::new(args.metadata.clone());
    match args.flow.config(&args.timing) {
        Ok(c) => config.connection = c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    }
    config.rest = args.tunnel.rest_config(config.rest);
    let metrics = args.metrics.map(|_| tether_tokio::metrics::Metrics::new());
    config.metrics = metrics.clone();
    if let Some(ca) = &args.tls_ca {
        match tether_tokio::transport::tls::roots_from_pem_file(ca)
            .and_then(tether_tokio::transport::tls::client_config)
        {
            Ok(tls) => config.tls = Some(tls),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    block_on(async move {
        // The upstream serves from the first connection on: a request that arrives right
        // after the handshake finds it, never a 501.
        let connected = match args.tunnel.upstream() {
            Some(upstream) => Client::connect_serving(&args.url, config, upstream),
            None => Client::connect(&args.url, config),
        };
        let (client, mut events) = match connected {
            Ok(ok) => ok,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        let _metrics =
            match super::common::serve_metrics(args.metrics, metrics.unwrap_or_default()).await {
                Ok(m) => m,
                Err(code) => {
                    client.close().await;
                    return code;
                }
            };
        let gateway = match args.tunnel.gateways(Target::Peer(client.peer())).await {
            Ok(gateway) => gateway,
            Err(e) => {
                eprintln!("error: {e}");
                client.close().await;
                return ExitCode::FAILURE;
            }
        };
        let signal = shutdown_signal();
        tokio::pin!(signal);
        let mut failed = false;
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => {
                        print(&event, args.print_rtt);
                        failed = matches!(event, ClientEvent::Failure { .. });
                    }
                    // The client ended by itself: a fatal close code or back-off exhausted.
                    None => {
                        tunnel::stop(gateway, SHORT_STOP).await;
                        return if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS };
                    }
                },
                () = &mut signal => {
                    // Requests in flight through the gateway finish first.
                    tunnel::stop(gateway, STOP_TIMEOUT).await;
                    client.close().await;
                    while let Some(event) = events.recv().await {
                        print(&event, false);
                    }
                    return ExitCode::SUCCESS;
                }
            }
        }
    })
}

/// How long a stop lets gateway requests in flight finish.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The same once the connection is gone for good (requests cannot succeed any more).
const SHORT_STOP: Duration = Duration::from_millis(200);

fn print(event: &ClientEvent, print_rtt: bool) {
    match (client_line(event), event) {
        (Some(line), _) => println!("{line}"),
        (None, ClientEvent::Rtt { rtt, .. }) if print_rtt => println!("rtt {rtt:?}"),
        _ => {}
    }
}
