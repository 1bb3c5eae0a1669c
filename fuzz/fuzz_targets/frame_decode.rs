//! Arbitrary bytes as one received WebSocket message: decoding never panics, every error
//! has a defined reaction, and whatever decodes re-encodes to an equal frame.
//! The checks are in `bytes_common.rs` (shared with `proto/tests/fuzz_corpus.rs`).
#![no_main]

mod bytes_common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| bytes_common::frame_decode(data));
