//! Arbitrary bytes into a demo session (spec/demo.md): never a panic, and every answer is a
//! well-formed JSON message of the schema; input split at 0x00 into messages, `\x01` fires
//! the heartbeat timer.
//! The checks are in `bytes_common.rs` (shared with `proto/tests/fuzz_corpus.rs`).
#![no_main]

mod bytes_common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| bytes_common::demo_message(data));
