//! Arbitrary sequences of inbound messages, time steps and embedder calls into one server
//! `Connection`: no panic, bounded output, and the lifecycle invariants hold.
#![no_main]

mod connection_common;

use connection_common::{Harness, Op};
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tether_proto::connection::{Config, Connection};

fuzz_target!(|input: (bool, Vec<Op>)| {
    let (short, ops) = input;
    let mut builder = Config::builder().versions(&[1, 2]);
    if short {
        builder = builder
            .heartbeat(Duration::from_millis(50), Duration::from_millis(120))
            .handshake_timeout(Duration::from_millis(500));
    }
    let config = Arc::new(builder.build().expect("valid config"));
    let now = Instant::now();
    let mut h = Harness::new(Connection::server(config, now), now);
    for op in ops.into_iter().take(256) {
        h.apply(op);
    }
});
