//! The server's WebSocket upgrade checks (runtime-tokio/src/transport/upgrade.rs) on
//! arbitrary request heads: they never panic, an accepted request satisfies every RFC 6455
//! §4.2.1 condition (checked here independently), and a refused one gets 405, 403, 400 or
//! 426 for the first condition it breaks.
//!
//! Input: one policy byte (bits 0-1: origins Any, SameHost, List; bit 2: require the
//! `tether.v1` subprotocol), then the request head as text.
//!
//! The checks are in `ws_upgrade_common.rs` (shared with a unit test of tether-tokio).
#![no_main]

mod http1_common;
mod ws_upgrade_common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ws_upgrade_common::run(data));
