//! # tether-proto
//!
//! Sans-IO state machines and the wire codec of Tether (see `spec/protocol.md`).
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

pub mod backoff;
pub mod demo;
