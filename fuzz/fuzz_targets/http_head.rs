//! Arbitrary bytes as a request head, a response head and trailers: parsing never panics,
//! and a parsed head re-encodes to something that parses to the same head.
//! The checks are in `bytes_common.rs` (shared with `proto/tests/fuzz_corpus.rs`).
#![no_main]

mod bytes_common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| bytes_common::http_head(data));
