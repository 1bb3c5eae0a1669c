//! The seed-compatible products, which do not speak the Tether protocol: plain WebSocket
//! servers and clients kept for the programs that were written against them.
//!
//! - [`engine`]: a reconnecting WebSocket client (gowsclient-style), and [`request`], its
//!   request/response helper on top of it.
//! - [`bindings`]: named channels over one WebSocket (macaron-style), with [`echo_server`]
//!   built on them.
//! - [`demo_server`]: the demowsserver-compatible broadcast server.
//!
//! They share the [transport](crate::transport) (accept loop, upgrade, write burst, reconnect
//! loop, random source) with the Tether server and client, and nothing else.

pub mod bindings;
pub mod demo_server;
pub mod echo_server;
pub mod engine;
pub mod request;
