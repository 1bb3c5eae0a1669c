//! What the gateway decides itself on the HTTP/1.1 requests it forwards
//! (runtime-tokio/src/gateway/proxy.rs and upstream.rs; hyper parses the bytes): the
//! upstream URL of a request target, the origin-form a server's gateway forwards, and
//! hop-by-hop field removal. Never a panic; no accepted target leaves the upstream's base
//! path for an upstream that decodes `%2e`, `%2f`, `%5c` once and splits on `/` or `\`;
//! no hop-by-hop field survives.
//!
//! Input: one byte choosing the upstream's base path, then the request target on the
//! first line and header lines after it.
//!
//! The checks are in `gateway_http_common.rs` (shared with a unit test of tether-tokio).
#![no_main]

mod gateway_http_common;
mod http1_common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gateway_http_common::run(data));
