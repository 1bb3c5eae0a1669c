//! Arbitrary sequences of inbound messages, time steps and embedder calls into one client
//! `Connection`: no panic, bounded output, and the lifecycle invariants hold.
#![no_main]

mod connection_common;

use bytes::Bytes;
use connection_common::{Harness, Op};
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tether_proto::connection::{Carrier, Config, Connection};
use tether_proto::{Resume, ResumeToken};

fuzz_target!(|input: (bool, Option<[u8; 16]>, Vec<Op>)| {
    let (frames, resume, ops) = input;
    let carrier = if frames {
        Carrier::Frame
    } else {
        Carrier::WebSocket
    };
    let config = Config::builder()
        .carrier(carrier)
        .heartbeat(Duration::from_millis(50), Duration::from_millis(120))
        .heartbeat_app_data(&b"fz"[..])
        .build()
        .expect("valid config");
    let resume = resume.map(|id| Resume {
        connection_id: uuid::Uuid::from_bytes(id),
        token: ResumeToken::from_bytes(id),
    });
    let now = Instant::now();
    let conn = Connection::client(Arc::new(config), Bytes::from_static(b"{}"), resume, now)
        .expect("valid metadata");
    let mut h = Harness::new(conn, now);
    for op in ops.into_iter().take(256) {
        h.apply(op);
    }
});
