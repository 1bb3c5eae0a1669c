//! Arbitrary operation sequences across two stream layers; the interpretation and the
//! invariants are in `streams_common.rs` (shared with `proto/tests/streams_corpus.rs`).
#![no_main]

mod streams_common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| streams_common::run(data));
