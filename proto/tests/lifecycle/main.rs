//! Two-peer tests of the connection lifecycle in virtual time (spec/protocol.md §7-§9).

mod drain;
mod handshake;
mod heartbeat;
mod pair;
mod resume;
mod streams;
mod vectors;
