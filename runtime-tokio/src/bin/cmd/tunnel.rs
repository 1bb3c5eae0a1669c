//! `--gateway`, `--upstream`, `--tcp-gateway` and `--tcp-upstream`, shared by `tether
//! server` and `tether client`: plain HTTP and raw TCP through the Tether connection (see
//! `tether_tokio::gateway`).

use std::net::SocketAddr;
use std::time::Duration;

use tether_tokio::gateway::{Gateway, Target, TcpGateway, TcpUpstream, Upstream};
use tether_tokio::rest::RestConfig;

use super::common::parse_duration;

/// The tunnel options (HTTP and TCP).
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Tunnels (HTTP and TCP)")]
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
    /// Listen for TCP on LISTEN and forward each connection, its bytes both ways, to
    /// HOST:PORT as seen from the other end of the Tether connection, which must allow it
    /// with --tcp-upstream (a CONNECT stream, spec/protocol.md §10.9; on a server, to the
    /// only connected client). Repeat for more ports. Prints `tcp-gateway LISTEN ->
    /// HOST:PORT` once listening. Example: --tcp-gateway 0.0.0.0:2222=127.0.0.1:22
    #[arg(long, value_name = "LISTEN=HOST:PORT", value_parser = parse_tcp_gateway)]
    pub(crate) tcp_gateway: Vec<(SocketAddr, String)>,
    /// Open HOST:PORT when the other end's --tcp-gateway asks for it, and no other
    /// destination (403). Repeat for more. Without it, tunnels from the other end get 501.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_tcp_upstream)]
    pub(crate) tcp_upstream: Vec<String>,
    /// Time a --tcp-upstream destination may take to accept a connection (then the
    /// tunnel is refused with 504 and the other end closes its connection).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) tcp_connect_timeout: Duration,
    /// Tunnels at most through each --tcp-gateway (a connection beyond it is closed at
    /// once), and destinations open at once for --tcp-upstream, all peers together (a
    /// tunnel beyond it is refused with 503).
    #[arg(long, value_name = "N", default_value_t = TcpGateway::DEFAULT_MAX_TUNNELS,
          value_parser = parse_max_connections)]
    pub(crate) tcp_max_tunnels: usize,
}

fn parse_tcp_gateway(arg: &str) -> Result<(SocketAddr, String), String> {
    let (listen, destination) = arg.split_once('=').ok_or_else(|| {
        format!("expected LISTEN=HOST:PORT, e.g. 0.0.0.0:2222=127.0.0.1:22: {arg:?}")
    })?;
    let listen = listen
        .parse::<SocketAddr>()
        .map_err(|_| format!("expected a listen address such as 0.0.0.0:2222: {listen:?}"))?;
    Ok((listen, parse_tcp_upstream(destination)?))
}

fn parse_tcp_upstream(destination: &str) -> Result<String, String> {
    // The same check the library makes, so a typo fails at the command line.
    TcpUpstream::new([destination]).map_err(|e| e.to_string())?;
    Ok(destination.to_owned())
}

/// The gateways a command runs.
pub(crate) struct Gateways {
    http: Option<Gateway>,
    tcp: Vec<TcpGateway>,
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

    /// The service to serve, if any: the HTTP upstream and the TCP destinations (prints
    /// `upstream URL` and `tcp-upstream HOST:PORT`).
    pub(crate) fn upstream(&self) -> Option<TcpUpstream> {
        if self.upstream.is_none() && self.tcp_upstream.is_empty() {
            return None;
        }
        let http = self.upstream.clone().map(|upstream| {
            println!("upstream {}", upstream.url());
            upstream
                .with_timeout(Some(self.upstream_timeout))
                .with_max_connections(self.upstream_max_connections)
        });
        for destination in &self.tcp_upstream {
            println!("tcp-upstream {destination}");
        }
        let service = TcpUpstream::new(self.tcp_upstream.iter().map(String::as_str))
            .expect("checked by the argument parser")
            .with_connect_timeout(self.tcp_connect_timeout)
            .with_max_open(self.tcp_max_tunnels)
            .with_http(http);
        Some(service)
    }

    /// Starts the gateways asked for (and prints `gateway http://ADDR/` and
    /// `tcp-gateway ADDR -> HOST:PORT`); `Err` carries the message for a listener that
    /// cannot be bound.
    pub(crate) async fn gateways(&self, target: Target) -> Result<Gateways, String> {
        let mut gateways = Gateways {
            http: None,
            tcp: Vec::new(),
        };
        for (listen, destination) in &self.tcp_gateway {
            let listener = tokio::net::TcpListener::bind(listen).await;
            let gateway = listener.and_then(|listener| {
                TcpGateway::from_listener(
                    listener,
                    destination,
                    target.clone(),
                    self.tcp_max_tunnels,
                )
            });
            match gateway {
                Ok(gateway) => {
                    println!("tcp-gateway {} -> {destination}", gateway.local_addr());
                    gateways.tcp.push(gateway);
                }
                Err(e) => {
                    stop(gateways, Duration::ZERO).await;
                    return Err(format!("cannot listen on {listen} for --tcp-gateway: {e}"));
                }
            }
        }
        if let Some(addr) = self.gateway {
            match Gateway::bind(addr, target).await {
                Ok(gateway) => {
                    println!("gateway http://{}/", gateway.local_addr());
                    gateways.http = Some(gateway);
                }
                Err(e) => {
                    stop(gateways, Duration::ZERO).await;
                    return Err(format!("cannot listen on {addr} for --gateway: {e}"));
                }
            }
        }
        Ok(gateways)
    }
}

/// Stops the gateways together, letting requests in flight and open tunnels finish within
/// `timeout`.
pub(crate) async fn stop(gateways: Gateways, timeout: Duration) {
    let http = async {
        if let Some(gateway) = gateways.http {
            if let Err(e) = gateway.shutdown(timeout).await {
                eprintln!("warning: gateway: {e}");
            }
        }
    };
    let tcp = futures_util::future::join_all(gateways.tcp.into_iter().map(|gateway| async move {
        if let Err(e) = gateway.shutdown(timeout).await {
            eprintln!("warning: tcp gateway: {e}");
        }
    }));
    tokio::join!(http, tcp);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_gateway_arguments_are_listen_equals_destination() {
        assert_eq!(
            parse_tcp_gateway("127.0.0.1:2222=127.0.0.1:22").unwrap(),
            ("127.0.0.1:2222".parse().unwrap(), "127.0.0.1:22".to_owned())
        );
        for bad in [
            "",
            "=",
            "127.0.0.1:2222",
            "127.0.0.1:2222=",
            "=127.0.0.1:22",
            "host:1=h:2",
            "127.0.0.1:2222=h",
            "127.0.0.1:2222=h:1=x",
            "127.0.0.1:99999=h:1",
        ] {
            let e = parse_tcp_gateway(bad).expect_err(bad);
            assert!(e.starts_with("expected"), "{bad}: {e}");
        }
        assert!(parse_tcp_upstream("db:5432").is_ok());
        assert!(parse_tcp_upstream("db").is_err());
    }
}
