//! `--gateway` and `--upstream`, shared by `tether server` and `tether client`: plain HTTP
//! through the Tether connection (see `tether_tokio::gateway`).

use std::net::SocketAddr;
use std::time::Duration;

use tether_tokio::gateway::{Gateway, Target, Upstream};
use tether_tokio::rest::RestConfig;

use super::common::parse_duration;

/// The HTTP tunnel options.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "HTTP tunnel")]
pub(crate) struct Tunnel {
    /// Listen for plain HTTP on ADDR (e.g. 127.0.0.1:8080) and forward every request to the
    /// other end of the Tether connection. On a server, the request header
    /// `Tether-Connection: <id>` picks the client (without it, the only connected client);
    /// every response carries `Tether-Connection` naming who answered. Prints
    /// `gateway http://ADDR/` once listening.
    #[arg(long, value_name = "ADDR")]
    pub(crate) gateway: Option<SocketAddr>,
    /// Send every HTTP request that arrives from the other end on to the HTTP server at
    /// URL (http://HOST[:PORT][/BASE-PATH]; the base path is put in front of each request
    /// path) and stream its response back. Without it, such requests get 501.
    #[arg(long, value_name = "URL", value_parser = parse_upstream)]
    pub(crate) upstream: Option<Upstream>,
    /// Time a request through --gateway may take, response body included (then 504);
    /// raise it for long downloads.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub(crate) request_timeout: Duration,
    /// Time the --upstream server may take to send its response head (then 504).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub(crate) upstream_timeout: Duration,
    /// Connections to the --upstream server at most, kept alive and shared by every
    /// request; a request that finds them all in use waits for one until
    /// --upstream-timeout, then gets 503.
    #[arg(long, value_name = "N", default_value_t = Upstream::DEFAULT_MAX_CONNECTIONS,
          value_parser = parse_max_connections)]
    pub(crate) upstream_max_connections: usize,
}

fn parse_max_connections(n: &str) -> Result<usize, String> {
    match n.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "expected a number of connections, at least 1: {n:?}"
        )),
    }
}

fn parse_upstream(url: &str) -> Result<Upstream, String> {
    Upstream::new(url).map_err(|e| e.to_string())
}

impl Tunnel {
    /// The REST settings for the requests the gateway sends.
    pub(crate) fn rest_config(&self, mut rest: RestConfig) -> RestConfig {
        rest.request_timeout = Some(self.request_timeout);
        rest
    }

    /// The upstream service to serve, if any (and prints `upstream URL`).
    pub(crate) fn upstream(&self) -> Option<Upstream> {
        let upstream = self.upstream.clone()?;
        println!("upstream {}", upstream.url());
        Some(
            upstream
                .with_timeout(Some(self.upstream_timeout))
                .with_max_connections(self.upstream_max_connections),
        )
    }

    /// Starts the gateway, if asked (and prints `gateway http://ADDR/`); `Err` carries the
    /// message for a listener that cannot be bound.
    pub(crate) async fn gateway(&self, target: Target) -> Result<Option<Gateway>, String> {
        let Some(addr) = self.gateway else {
            return Ok(None);
        };
        let gateway = Gateway::bind(addr, target)
            .await
            .map_err(|e| format!("cannot listen on {addr} for --gateway: {e}"))?;
        println!("gateway http://{}/", gateway.local_addr());
        Ok(Some(gateway))
    }
}

/// Stops a gateway, letting requests in flight finish within `timeout`.
pub(crate) async fn stop(gateway: Option<Gateway>, timeout: Duration) {
    if let Some(gateway) = gateway {
        if let Err(e) = gateway.shutdown(timeout).await {
            eprintln!("warning: gateway: {e}");
        }
    }
}
