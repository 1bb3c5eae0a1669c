//! The demo server's schema and per-connection logic, wire-compatible with the Go
//! `demowsserver` (spec/demo.md).
//!
//! Plain JSON text messages over a plain WebSocket, no Tether framing: existing demowsserver
//! clients work unchanged. [`message`] holds the serde types, [`DemoSession`] the sans-IO machine
//! that answers one connection's messages and publishes its heartbeats.

pub mod message;
mod session;

pub use message::{DemoMessage, ErrorData, Status};
pub use session::{
    format_utc, DemoConfig, DemoSession, DEFAULT_HEARTBEAT_INTERVAL, MIN_HEARTBEAT_INTERVAL,
};

#[cfg(test)]
mod tests;
