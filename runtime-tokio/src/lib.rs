//! # tether-tokio
//!
//! The tokio + tungstenite runtime for [Tether](https://docs.rs/tether-proto): it drives the
//! sans-IO machines of `tether-proto` over real sockets. One task per connection owns the
//! machine; this crate holds no protocol rule of its own.
//!
//! ## Layout
//!
//! - [`server`]: the Tether server (listener, HELLO decisions, the registry of live
//!   connections) and [`client`]: the Tether client (dial, resume, reconnect).
//! - `conn` (private): the one connection run loop glue both roles share: machine messages
//!   to and from tungstenite, the wait for the next input, the write burst.
//! - [`rest`]: HTTP over Tether streams: [`rest::Peer`] to call the other end, the driver
//!   that serves a local HTTP service, bodies and request errors.
//! - [`gateway`]: the HTTP tunnel: a plain HTTP listener in front of a Tether end
//!   ([`gateway::Gateway`]) and the local web server behind one ([`gateway::Upstream`]).
//! - [`transport`]: what every product here stands on and that knows no Tether rule: the
//!   accept loop, the HTTP/1 upgrade, read-ahead, [TLS](transport::tls), the bounded closing
//!   handshake, the write burst, the reconnect wait and the OS random source.
//! - [`compat`]: the seed-compatible products that do not speak Tether (the client engine
//!   and its request helper, the channel bindings and echo server, the demo server).
//! - [`metrics`] (Prometheus) and [`events`] (the event channels of server and client).
//!
//! The `tether` binary (feature `cli`, on by default, the only user of `clap`) lives in
//! `src/bin/`, with the TCP relay its demo cuts.
//!
//! A [`server::Server`] and a [`client::Client`] on loopback (this example runs):
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use tether_tokio::client::{Client, ClientConfig, ClientEvent};
//! use tether_tokio::server::{Server, ServerConfig, ServerEvent};
//!
//! let (server, mut server_events) = Server::bind(ServerConfig::new("127.0.0.1:0".parse()?)).await?;
//! let url = format!("ws://{}/", server.local_addr());
//! let (client, mut events) = Client::connect(&url, ClientConfig::new(r#"{"user":"ada"}"#))?;
//!
//! let Some(ClientEvent::Connected { id, handshake }) = events.recv().await else { panic!() };
//! assert!(handshake.heartbeat.is_some());
//! let Some(ServerEvent::Received { id: seen, .. }) = server_events.recv().await else { panic!() };
//! assert_eq!(seen, id);
//! assert_eq!(server.find(|meta| meta["user"] == "ada"), vec![id]);
//!
//! client.close().await;
//! server.shutdown(std::time::Duration::from_secs(5)).await?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

// The fuzz targets' checks that src/fuzzing.rs's unit tests share (by `#[path]`) name this
// crate `tether_tokio`, as the fuzz crate does.
#[cfg(test)]
extern crate self as tether_tokio;

pub mod client;
pub mod compat;
mod conn;
pub mod events;
// Also under `cfg(test)`: its unit tests replay the runtime fuzz targets' corpora.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod metrics;
pub mod rest;
pub mod server;
#[cfg(test)]
mod test_util;
pub mod transport;

pub use conn::SUBPROTOCOL;
pub use events::EventStream;
pub use transport::acceptor::StopError;
