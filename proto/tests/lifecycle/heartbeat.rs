//! spec/protocol.md §8: heartbeat, liveness and RTT.

use proptest::prelude::Rng;
use std::time::Duration;
use tether_proto::connection::{Carrier, Config, ConnectionError, Event, PongResponder};
use tether_proto::CloseCode;

use crate::pair::{self, Pair};

const INTERVAL: Duration = Duration::from_secs(10);
const TIMEOUT: Duration = Duration::from_secs(30);

fn is_failure(e: &Event) -> bool {
    matches!(e, Event::Failure { .. })
}

#[test]
fn healthy_idle_connection_lives_for_100_timeouts() {
    let mut pair = Pair::default_configs();
    pair.to_server.latency = Duration::from_millis(20);
    pair.to_client.latency = Duration::from_millis(30);
    pair.handshake();
    pair.run_for(TIMEOUT * 100);
    assert!(pair.client.conn.is_established() && pair.server.conn.is_established());
    assert_eq!(
        pair.client.count(is_failure) + pair.server.count(is_failure),
        0
    );
    // One probe per interval, the client's (spec/protocol.md §8.2): its probe reaches the
    // server before the server's longer probe delay runs out, so the server only answers.
    let from_client = pair
        .server
        .count(|e| matches!(e, Event::PingReceived { .. }));
    let from_server = pair
        .client
        .count(|e| matches!(e, Event::PingReceived { .. }));
    assert_eq!(from_server, 0, "the server probed an idle connection");
    // Every interval plus the 50 ms round trip.
    assert!(
        (295..=300).contains(&from_client),
        "{from_client} probes in 3000 s"
    );
    // The RTT is the link's 50 ms; the client measures it.
    assert_eq!(pair.client.conn.rtt(), Some(Duration::from_millis(50)));
    assert_eq!(pair.server.conn.rtt(), None);
    let Some(Event::PongReceived {
        carrier,
        payload,
        rtt: Some(_),
    }) = pair
        .client
        .events
        .iter()
        .chain(&pair.server.events)
        .find(|e| matches!(e, Event::PongReceived { rtt: Some(_), .. }))
    else {
        panic!("no RTT sample");
    };
    assert_eq!(*carrier, Carrier::WebSocket);
    assert_eq!(payload.len(), 8);
}

#[test]
fn ping_frame_carrier_and_app_data() {
    let client = Config::builder()
        .carrier(Carrier::Frame)
        .heartbeat_app_data(&b"browser"[..])
        .build()
        .unwrap();
    let mut pair = Pair::new(client, Config::default(), 1);
    // The client's probes are PING frames (the server's would be WebSocket pings).
    pair.to_server.latency = Duration::from_millis(5);
    pair.handshake();
    pair.run_for(TIMEOUT * 10);
    assert!(pair.client.conn.is_established() && pair.server.conn.is_established());
    let frame_pings = pair
        .server
        .count(|e| matches!(e, Event::PingReceived { carrier: Carrier::Frame, payload } if payload.ends_with(b"browser")));
    assert!(frame_pings > 0);
    assert_eq!(pair.client.conn.rtt(), Some(Duration::from_millis(5)));
}

#[test]
fn machine_answers_pings_when_the_transport_does_not() {
    let machine = Config::builder()
        .pong_responder(PongResponder::Machine)
        .build()
        .unwrap();
    let mut pair = Pair::new(machine.clone(), machine, 1);
    pair.handshake();
    pair.run_for(TIMEOUT * 10);
    assert!(pair.client.conn.is_established() && pair.server.conn.is_established());
    let pings = pair
        .client
        .count(|e| matches!(e, Event::PingReceived { .. }))
        + pair
            .server
            .count(|e| matches!(e, Event::PingReceived { .. }));
    let pongs = pair
        .client
        .count(|e| matches!(e, Event::PongReceived { .. }))
        + pair
            .server
            .count(|e| matches!(e, Event::PongReceived { .. }));
    assert!(pings > 0);
    assert_eq!(pings, pongs, "one pong per ping, never two");
}

/// Black-holes one direction (or both) at `start` after the handshake and checks that the
/// side that stops hearing declares the peer dead within interval + timeout.
fn half_open(to_server: bool, to_client: bool, start: Duration, seed: u64) {
    let mut pair = Pair::new(Config::default(), Config::default(), seed);
    pair.to_server.latency = Duration::from_millis(10);
    pair.to_client.latency = Duration::from_millis(10);
    pair.handshake();
    pair.run_for(start);
    assert!(pair.client.conn.is_established());
    let cut_at = pair.elapsed();
    pair.to_server.black_hole = to_server;
    pair.to_client.black_hole = to_client;
    let bound = INTERVAL + TIMEOUT;
    let deaf = if to_client {
        &pair.client
    } else {
        &pair.server
    };
    let _ = deaf;
    let dead = pair.run_until(bound, |p| {
        let deaf = if to_client { &p.client } else { &p.server };
        deaf.conn.is_closed()
    });
    assert!(
        dead,
        "not declared dead within {bound:?} of the cut at {cut_at:?}"
    );
    let deaf = if to_client {
        &pair.client
    } else {
        &pair.server
    };
    assert_eq!(
        deaf.last_event(),
        Some(&Event::Failure {
            error: ConnectionError::HeartbeatTimeout(TIMEOUT)
        })
    );
    // The other side: with one direction open it gets the close frame; with none it
    // times out itself, also within the bound.
    pair.run_for(bound);
    let other = if to_client {
        &pair.server
    } else {
        &pair.client
    };
    let want = if to_server && to_client {
        Event::Failure {
            error: ConnectionError::HeartbeatTimeout(TIMEOUT),
        }
    } else {
        Event::Failure {
            error: ConnectionError::PeerClosed {
                code: CloseCode::HEARTBEAT_TIMEOUT,
                reason: "no inbound traffic for 30s: peer presumed dead".into(),
            },
        }
    };
    assert_eq!(other.last_event(), Some(&want));
}

#[test]
fn silent_server_is_detected_by_the_client() {
    half_open(false, true, Duration::from_secs(95), 1);
}

#[test]
fn silent_client_is_detected_by_the_server() {
    half_open(true, false, Duration::from_secs(3), 1);
}

#[test]
fn fully_half_open_connection_dies_on_both_sides() {
    half_open(true, true, Duration::from_secs(41), 1);
}

#[test]
fn random_cuts_are_detected_within_bound() {
    let seed = pair::seed();
    let mut rng = pair::rng(seed);
    for _ in 0..16 {
        let dir = rng.next_u32() % 3;
        let start = Duration::from_millis(rng.next_u64() % 120_000);
        half_open(dir != 1, dir != 0, start, rng.next_u64());
    }
}

#[test]
fn lossy_links_never_break_the_rules() {
    let seed = pair::seed();
    let mut rng = pair::rng(seed);
    for _ in 0..8 {
        let mut pair = Pair::new(Config::default(), Config::default(), rng.next_u64());
        pair.to_server.loss = (rng.next_u32() % 60) as f64 / 100.0;
        pair.to_client.loss = (rng.next_u32() % 60) as f64 / 100.0;
        pair.to_server.latency = Duration::from_millis(rng.next_u64() % 200);
        pair.to_client.latency = Duration::from_millis(rng.next_u64() % 200);
        pair.run_for(TIMEOUT * 20);
        for peer in [&pair.client, &pair.server] {
            let terminal = peer
                .events
                .iter()
                .filter(|e| matches!(e, Event::Failure { .. } | Event::Closed { .. }))
                .count();
            assert!(terminal <= 1);
            if peer.conn.is_closed() {
                assert_eq!(terminal, 1);
                assert!(matches!(peer.last_event(), Some(Event::Failure { .. })));
            } else {
                assert!(
                    peer.conn.poll_timeout().is_some(),
                    "a live connection always has a timer"
                );
            }
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, ..Default::default() })]

    /// Any heartbeat whose interval plus round trip fits inside the timeout keeps an idle
    /// connection alive (spec/protocol.md §8.3), on either carrier, for 20 timeouts.
    #[test]
    fn any_fitting_heartbeat_keeps_the_connection(
        interval_ms in 1u64..5_000,
        slack_ms in 2u64..5_000,
        latency_permille in 0u64..1000,
        client_frames: bool,
        server_frames: bool,
    ) {
        let interval = Duration::from_millis(interval_ms);
        let timeout = Duration::from_millis(interval_ms + slack_ms);
        // One-way latency strictly below half the slack: probe + answer arrive in time.
        let latency = Duration::from_millis((slack_ms - 1) / 2 * latency_permille / 1000);
        let carrier = |frames| if frames { Carrier::Frame } else { Carrier::WebSocket };
        let client = Config::builder().carrier(carrier(client_frames)).build().unwrap();
        let server = Config::builder()
            .heartbeat(interval, timeout)
            .carrier(carrier(server_frames))
            .build()
            .unwrap();
        let mut pair = Pair::new(client, server, interval_ms);
        pair.to_server.latency = latency;
        pair.to_client.latency = latency;
        pair.handshake();
        pair.run_for(timeout * 20);
        proptest::prop_assert!(pair.client.conn.is_established(), "{:?}", pair.client.last_event());
        proptest::prop_assert!(pair.server.conn.is_established(), "{:?}", pair.server.last_event());
        // RTT samples need the answer before four newer probes replace the probe
        // (spec/protocol.md §8.2: the reference remembers 4).
        if latency * 2 < interval * 4 {
            proptest::prop_assert!(pair.client.conn.rtt().or(pair.server.conn.rtt()).is_some());
        }
    }
}

/// spec/protocol.md §8.5: a peer that floods probes (WebSocket Pings or PING frames) is
/// closed with 4007 at the first probe past the limit; a correct peer's probes never reach
/// it.
#[test]
fn a_ping_flood_closes_with_4007_at_the_first_probe_past_the_limit() {
    use bytes::Bytes;
    use tether_proto::connection::{WsMessage, DEFAULT_MAX_PROBES, PROBE_WINDOW};
    use tether_proto::{Frame, Ping};

    for frame_carrier in [false, true] {
        let mut pair = Pair::default_configs();
        pair.handshake();
        let now = pair.now;
        let probe = |i: u32| {
            if frame_carrier {
                let mut buf = bytes::BytesMut::new();
                Frame::Ping(Ping(Bytes::from(i.to_be_bytes().to_vec()))).encode(&mut buf);
                WsMessage::Binary(buf.freeze())
            } else {
                WsMessage::Ping(Bytes::from(i.to_be_bytes().to_vec()))
            }
        };
        // A window's worth at the limit, then a new window: all allowed.
        for i in 0..DEFAULT_MAX_PROBES {
            pair.server.conn.handle_message(probe(i), now);
        }
        let later = now + PROBE_WINDOW;
        for i in 0..DEFAULT_MAX_PROBES {
            pair.server.conn.handle_message(probe(i), later);
        }
        assert!(pair.server.conn.is_established());
        while pair.server.conn.poll_transmit().is_some() {}
        // One more in the second window closes.
        pair.server.conn.handle_message(probe(0), later);
        assert!(!pair.server.conn.is_established());
        let mut close = None;
        while let Some(m) = pair.server.conn.poll_transmit().map(WsMessage::from) {
            assert!(
                !matches!(m, WsMessage::Pong(_)),
                "the probe past the limit is not answered"
            );
            if let WsMessage::Close(Some(f)) = m {
                close = Some(f.code);
            }
        }
        assert_eq!(close, Some(CloseCode::ENHANCE_YOUR_CALM));
        let mut failure = None;
        while let Some(e) = pair.server.conn.poll_event() {
            if let Event::Failure { error } = e {
                failure = Some(error);
            }
        }
        assert!(
            matches!(failure, Some(ConnectionError::ProbeFlood { limit, .. }) if limit == DEFAULT_MAX_PROBES),
            "{failure:?}"
        );
    }
}
