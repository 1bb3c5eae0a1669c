//! Arbitrary sequences of inbound messages, time steps and embedder calls into one server
//! `Connection`: no panic, bounded output, and the lifecycle invariants hold. The
//! interpretation is in `connection_common.rs` (shared with `proto/tests/fuzz_corpus.rs`).
#![no_main]

mod connection_common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: connection_common::ServerInput| connection_common::server(input));
