//! `tether server`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use tether_proto::abuse::CooldownConfig;
use tether_tokio::server::{Server, ServerConfig};
use tether_tokio::transport::upgrade::AllowedOrigins;

use super::common::{block_on, parse_duration, shutdown_signal};
use super::lifecycle::{server_line, Flow, Timing};
use super::tunnel::{self, Tunnel};
use tether_tokio::gateway::Target;

/// Arguments of `tether server` (documented on the subcommand).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Address to listen on; every path accepts Tether connections.
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// Serve Prometheus metrics (OpenMetrics text) at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    #[command(flatten)]
    timing: Timing,
    #[command(flatten)]
    flow: Flow,
    /// How long a dropped connection's session can be resumed (0s turns resume off).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    resume_window: Duration,
    /// Dropped connections' sessions kept resumable at most; while that many are held, a
    /// HELLO that needs a new session is closed with 4007 (clients retry later) and no
    /// held session is evicted. Each costs its metadata plus about 200 bytes.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    max_detached_sessions: usize,
    /// An Origin allowed to connect (repeatable); without any, every origin is allowed.
    /// Others get HTTP 403.
    #[arg(long = "allowed-origin", value_name = "ORIGIN")]
    allowed_origins: Vec<String>,
    /// TLS certificate chain (PEM); with --tls-key, serves wss://.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// How long shutdown waits for requests in flight to finish (new ones are refused with
    /// GOAWAY) and for the clients' closing handshakes; connections still open then are
    /// dropped.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    shutdown_timeout: Duration,
    /// After this server closes a connection for abuse (4007: stream churn, ping flood,
    /// unread replies), new connections from its address get HTTP 429 with Retry-After
    /// for a cool-down that starts at MIN and doubles with each repeat up to MAX; forgotten
    /// after 5 min of quiet. IPv6 addresses count per /64.
    #[arg(long, value_name = "MIN..MAX", default_value = "1s..60s", value_parser = parse_cooldown)]
    abuse_cooldown: (Duration, Duration),
    /// Turn the abuse cool-down off (e.g. behind a proxy or NAT where many clients share
    /// one address).
    #[arg(long, conflicts_with = "abuse_cooldown")]
    no_abuse_cooldown: bool,
    #[command(flatten)]
    tunnel: Tunnel,
}

/// Parses `MIN..MAX` (e.g. `1s..60s`).
fn parse_cooldown(s: &str) -> Result<(Duration, Duration), String> {
    let (min, max) = s
        .split_once("..")
        .ok_or_else(|| "expected MIN..MAX, e.g. 1s..60s".to_owned())?;
    let (min, max) = (parse_duration(min.trim())?, parse_duration(max.trim())?);
    if max < min {
        return Err("MAX must not be below MIN".into());
    }
    Ok((min, max))
}

pub(crate) fn run(args: Args) -> ExitCode {
    let connection = match args.flow.config(&args.timing) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut config = ServerConfig::new(args.listen);
    config.connection = connection;
    config.resume_window = args.resume_window;
    config.max_detached_sessions = args.max_detached_sessions;
    config.abuse_cooldown = (!args.no_abuse_cooldown)
        .then(|| CooldownConfig::with_range(args.abuse_cooldown.0, args.abuse_cooldown.1));
    config.rest = args.tunnel.rest_config(config.rest);
    // Requests in flight drain within the shutdown time, leaving a second for the close.
    config.rest.drain_timeout = args.shutdown_timeout.saturating_sub(Duration::from_secs(1));
    if !args.allowed_origins.is_empty() {
        config.allowed_origins = AllowedOrigins::List(args.allowed_origins.clone());
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        match tether_tokio::transport::tls::server_config_from_pem_files(cert, key) {
            Ok(tls) => config.tls = Some(tls),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let scheme = if config.tls.is_some() { "wss" } else { "ws" };
    block_on(async move {
        // The upstream serves from the first connection on (no 501 for an early client).
        let bound = match args.tunnel.upstream() {
            Some(upstream) => Server::bind_serving(config, upstream).await,
            None => Server::bind(config).await,
        };
        let (server, mut events) = match bound {
            Ok(ok) => ok,
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", args.listen);
                return ExitCode::FAILURE;
            }
        };
        println!("listening {scheme}://{}/", server.local_addr());
        let _metrics = match super::common::serve_metrics(args.metrics, server.metrics()).await {
            Ok(m) => m,
            Err(code) => {
                let _ = server.shutdown(args.shutdown_timeout).await;
                return code;
            }
        };
        let gateway = match args
            .tunnel
            .gateways(Target::Server(server.connections()))
            .await
        {
            Ok(gateway) => gateway,
            Err(e) => {
                eprintln!("error: {e}");
                let _ = server.shutdown(args.shutdown_timeout).await;
                return ExitCode::FAILURE;
            }
        };
        let printer = tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                println!("{}", server_line(&event));
            }
        });
        shutdown_signal().await;
        // Requests in flight through the gateway finish first, while clients are connected.
        tunnel::stop(gateway, args.shutdown_timeout).await;
        let clients = server.connection_count();
        let result = server.shutdown(args.shutdown_timeout).await;
        // Let the printer show the last `closed` lines.
        let _ = tokio::time::timeout(Duration::from_millis(200), printer).await;
        match result {
            Ok(()) => println!("shut down ({clients} connection(s) closed with 1001)"),
            Err(e) => eprintln!("warning: {e}"),
        }
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cooldown_ranges() {
        let s = Duration::from_secs(1);
        assert_eq!(parse_cooldown("1s..60s"), Ok((s, 60 * s)));
        assert_eq!(parse_cooldown("500ms..2s"), Ok((s / 2, 2 * s)));
        assert!(parse_cooldown("2s..1s").is_err());
        assert!(parse_cooldown("0s..1s").is_err());
        assert!(parse_cooldown("5s").is_err());
    }
}
