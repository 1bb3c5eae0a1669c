//! The WebSocket read path of a Tether connection (runtime-tokio/src/transport/read_ahead.rs:
//! final binary frames read whole, everything else through tungstenite) against tungstenite
//! alone, on arbitrary bytes arriving in arbitrary bursts: the same messages, the same end,
//! the same error, and no panic.
//!
//! Input: byte 0 bit 0 the side that reads (0 the server, 1 the client), bits 1 to 3 the
//! socket's largest read; byte 1 the number of bursts (modulo 32), then a byte per burst
//! choosing its size; then the bytes of the stream (see `tether_tokio::fuzzing::ws_read`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(difference) = tether_tokio::fuzzing::ws_read(data) {
        panic!("{difference}");
    }
});
