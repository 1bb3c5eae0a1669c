//! The `streams` fuzz target's interpretation of an input, shared with the regression
//! test `proto/tests/streams_corpus.rs` (which replays every file of
//! `fuzz/corpus/streams/`), so a finding replays the same way in both.
//!
//! Arbitrary operation sequences (open, send data, respond, reset, release, GOAWAY,
//! time steps, dropped frames, connection loss) across two stream layers, with invariants
//! checked after every step:
//! - no panic, and a peer never closes the connection when both sides are this
//!   implementation and no frame was dropped or corrupted;
//! - a receiver never holds more unreleased bytes than its connection window, which grows
//!   (spec/protocol.md §10.3.1) only up to its configured maximum;
//! - every stream ends at most once per side, and after connection loss every stream that
//!   was open has ended exactly once.
//!
//! Both peers are correct requesters in the sense of spec/protocol.md §10.8: deadlines are
//! at least the minimum lifetime, and frames in flight arrive before time advances.

use bytes::Bytes;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tether_proto::streams::{PeerLimits, Side, StreamEvent, Streams, StreamsConfig};
use tether_proto::{RequestHead, ResetCode, ResponseHead, StreamId};

/// `StreamsConfig::default().churn_min_lifetime`.
const MIN_LIFETIME: Duration = Duration::from_millis(100);

struct Peer {
    s: Streams,
    live: Vec<StreamId>,
    closed: HashMap<StreamId, u32>,
    unreleased: HashMap<StreamId, u32>,
    hold: bool,
    /// The connection window's maximum (`max_connection_window`).
    max_window: u32,
}

fn config(small: bool) -> StreamsConfig {
    StreamsConfig {
        max_concurrent_streams: if small { 3 } else { 64 },
        initial_stream_window: if small { 1500 } else { 65_536 },
        initial_connection_window: if small { 4000 } else { 262_144 },
        max_send_buffer: 8192,
        // Small enough that the time steps (20 ms each) make windows grow, §10.3.1.
        max_stream_window: if small { 6000 } else { 262_144 },
        max_connection_window: if small { 16_000 } else { 1_048_576 },
        // The model answers requests and releases (or holds) received bytes itself.
        serve_requests: true,
        manual_release: true,
        ..StreamsConfig::default()
    }
}

fn limits(c: &StreamsConfig) -> PeerLimits {
    PeerLimits {
        max_frame_payload: 1024,
        max_concurrent_streams: c.max_concurrent_streams,
        initial_stream_window: c.initial_stream_window,
        initial_connection_window: c.initial_connection_window,
        max_head_size: 1024,
        max_header_count: 100,
    }
}

fn drain(p: &mut Peer) {
    while let Some(e) = p.s.poll_event() {
        match e {
            StreamEvent::Request { id, .. } => p.live.push(id),
            StreamEvent::Data { id, data, .. } => {
                if p.hold {
                    *p.unreleased.entry(id).or_default() += data.len() as u32;
                } else {
                    p.s.release_capacity(id, data.len() as u32);
                }
            }
            StreamEvent::Closed { id, .. } => {
                *p.closed.entry(id).or_default() += 1;
                p.live.retain(|&l| l != id);
                p.unreleased.remove(&id);
            }
            _ => {}
        }
    }
    let held: u32 = p.unreleased.values().sum();
    let window = p.s.connection_window_size();
    assert!(
        held <= window,
        "holding {held} bytes beyond the connection window {window}"
    );
    assert!(
        window <= p.max_window,
        "the connection window grew to {window}, beyond its maximum {}",
        p.max_window
    );
}

/// Runs one input: decodes it into operations and checks the invariants after every
/// step (panics when one breaks).
pub fn run(data: &[u8]) {
    let Some((&mode, ops)) = data.split_first() else {
        return;
    };
    let small = mode & 1 == 1;
    let (cc, sc) = (config(small), config(mode & 2 == 2));
    let mk = |side, own: &StreamsConfig, peer: &StreamsConfig| Peer {
        s: Streams::new(side, own.clone(), limits(peer)).expect("valid peer limits"),
        live: vec![],
        closed: HashMap::new(),
        unreleased: HashMap::new(),
        hold: mode & 4 == 4,
        max_window: own.max_connection_window.max(own.initial_connection_window),
    };
    let mut peers = [mk(Side::Client, &cc, &sc), mk(Side::Server, &sc, &cc)];
    let mut now = Instant::now();
    let mut dropped = false;
    let mut lost = false;
    let mut opened: Vec<StreamId> = vec![];
    for chunk in ops.chunks(3).take(400) {
        let (op, a, b) = (
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        );
        let who = usize::from(op & 1);
        let p = &mut peers[who];
        let pick = |live: &[StreamId]| {
            if live.is_empty() {
                None
            } else {
                Some(live[usize::from(a) % live.len()])
            }
        };
        match op >> 1 {
            0 | 1 => {
                // A correct requester gives its streams at least the peer's minimum
                // lifetime (spec/protocol.md §10.8: shorter deadlines count as churn).
                let t =
                    (b & 1 == 1).then(|| MIN_LIFETIME + Duration::from_millis(u64::from(a) * 10));
                if let Ok(id) = p.s.open(
                    RequestHead::new(http::Method::POST, http::Uri::from_static("/")),
                    b & 2 == 2,
                    t,
                    now,
                ) {
                    p.live.push(id);
                    opened.push(id);
                }
            }
            2 | 3 => {
                if let Some(id) = pick(&p.live) {
                    let _ =
                        p.s.send_data(id, Bytes::from(vec![a; usize::from(b) * 37]), a & 1 == 1);
                }
            }
            4 => {
                if let Some(id) = pick(&p.live) {
                    let status = if b & 1 == 1 { 100 } else { 200 };
                    let _ = p.s.send_response(
                        id,
                        ResponseHead::new(http::StatusCode::from_u16(status).unwrap()),
                        b & 2 == 2,
                    );
                }
            }
            5 => {
                if let Some(id) = pick(&p.live) {
                    let code = ResetCode::from_u(u32::from(b % 11));
                    if b & 0x80 == 0x80 {
                        // A requester giving up (a young stream's RESET waits, §10.8).
                        p.s.cancel(id, code, now);
                    } else {
                        p.s.reset(id, code);
                    }
                }
            }
            6 => {
                if let Some(id) = pick(&p.live) {
                    let n = p
                        .unreleased
                        .get(&id)
                        .copied()
                        .unwrap_or(0)
                        .min(u32::from(b) * 64);
                    p.s.release_capacity(id, n);
                    if let Some(u) = p.unreleased.get_mut(&id) {
                        *u -= n;
                    }
                }
            }
            7 => p.s.go_away(ResetCode::NO_ERROR, "bye"),
            8 => {
                // The network is faster than a time step: what is in flight arrives
                // first, so a receiver sees a stream's frames at the time they were sent
                // (§10.8 measures a stream's age from its head's arrival).
                if !lost {
                    for who in [0, 1] {
                        let [c, s] = &mut peers;
                        let (from, to) = if who == 0 { (c, s) } else { (s, c) };
                        while let Some(frame) = from.s.poll_transmit() {
                            if let Err(e) = to.s.handle_frame(frame, now) {
                                assert!(
                                    dropped,
                                    "a connection error between two correct peers: {e}"
                                );
                                return;
                            }
                        }
                    }
                    for p in peers.iter_mut() {
                        drain(p);
                    }
                }
                now += Duration::from_millis(u64::from(a) * 20);
                for p in peers.iter_mut() {
                    p.s.handle_timeout(now);
                }
            }
            9 => {
                // The network loses one frame (so the peers may now legitimately disagree).
                if p.s.poll_transmit().is_some() {
                    dropped = true;
                }
            }
            10 => {
                lost = true;
                for p in peers.iter_mut() {
                    p.s.handle_connection_lost();
                }
            }
            _ => {
                // Deliver up to `a` frames in one direction.
                let (l, r) = peers.split_at_mut(1);
                let (from, to) = if who == 0 {
                    (&mut l[0], &mut r[0])
                } else {
                    (&mut r[0], &mut l[0])
                };
                for _ in 0..=a {
                    let Some(frame) = from.s.poll_transmit() else {
                        break;
                    };
                    if lost {
                        continue;
                    }
                    if let Err(e) = to.s.handle_frame(frame, now) {
                        assert!(dropped, "a connection error between two correct peers: {e}");
                        return;
                    }
                }
            }
        }
        for p in peers.iter_mut() {
            drain(p);
        }
        if lost {
            break;
        }
    }
    for p in &peers {
        for (id, n) in &p.closed {
            assert_eq!(*n, 1, "stream {id} ended {n} times");
        }
    }
    if lost {
        // Every stream this side opened has ended exactly once on this side.
        for id in &opened {
            let opener = if id.is_client_initiated() {
                &peers[0]
            } else {
                &peers[1]
            };
            assert_eq!(
                opener.closed.get(id),
                Some(&1),
                "stream {id} has no single outcome after loss"
            );
        }
        assert_eq!(peers[0].s.open_streams() + peers[1].s.open_streams(), 0);
    }
}
