//! # tether-tokio
//!
//! The tokio + tungstenite runtime for [Tether](https://docs.rs/tether-proto): it drives the
//! sans-IO machines of `tether-proto` over real sockets. One task per connection owns the
//! machine; this crate holds no protocol rule of its own.
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

mod acceptor;
pub mod bindings;
pub mod client;
mod closing;
pub mod demo_server;
pub mod echo_server;
pub mod engine;
pub mod events;
mod link;
pub mod relay;
pub mod request;
pub mod server;
pub mod tls;
pub mod upgrade;

pub use acceptor::StopError;
pub use events::EventStream;
pub use link::SUBPROTOCOL;
