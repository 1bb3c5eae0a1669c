//! spec/protocol.md §7: the handshake and each of its failures.

use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use std::time::Duration;
use tether_proto::connection::{
    Config, Connection, ConnectionError, Event, Initiator, State, WebSocketError, WsMessage,
};
use tether_proto::{CloseCode, Frame, Hello, Limits, Settings};

use crate::pair::{Decision, Pair};

fn encode(frame: &Frame) -> WsMessage {
    let mut buf = BytesMut::new();
    frame.encode(&mut buf);
    WsMessage::Binary(buf.freeze())
}

fn hello(versions: Vec<u16>, metadata: &'static [u8]) -> WsMessage {
    encode(&Frame::Hello(Hello {
        versions,
        resume: None,
        settings: Settings::default(),
        metadata: Bytes::from_static(metadata),
    }))
}

/// The close frame a machine queued last, and its terminal event.
fn closed_with(conn: &mut Connection) -> (CloseCode, Event) {
    let mut close = None;
    while let Some(msg) = conn.poll_transmit().map(WsMessage::from) {
        if let WsMessage::Close(Some(frame)) = msg {
            close = Some(frame.code);
        }
    }
    let mut last = None;
    while let Some(e) = conn.poll_event() {
        last = Some(e);
    }
    assert_eq!(conn.state(), State::Closed);
    (
        close.expect("a close frame"),
        last.expect("a terminal event"),
    )
}

fn server() -> Connection {
    Connection::server(Arc::new(Config::default()), std::time::Instant::now())
}

#[test]
fn handshake_establishes_both_sides_with_one_id() {
    let mut pair = Pair::default_configs();
    pair.handshake();
    let id = pair.server.conn.connection_id().unwrap();
    assert_eq!(pair.client.conn.connection_id(), Some(id));
    assert_eq!(id.get_version_num(), 4);
    assert_eq!(pair.client.conn.version(), Some(1));
    assert!(
        matches!(&pair.server.events[0], Event::HelloReceived(h) if h.metadata_json()["user"] == "ada")
    );
    assert!(
        matches!(&pair.server.events[1], Event::Received { id: i, metadata } if *i == id && &metadata[..] == b"{\"user\":\"ada\"}")
    );
    assert_eq!(
        pair.client.events,
        vec![Event::Established { id, resumed: false }]
    );
    // Negotiated: the server's heartbeat, each side's limits.
    assert_eq!(
        pair.client.conn.heartbeat(),
        Some((Duration::from_secs(10), Duration::from_secs(30)))
    );
    assert_eq!(pair.client.conn.peer_limits(), Limits::default());
    assert_eq!(pair.client.conn.resume_window(), Duration::from_secs(30));
    assert!(pair.client.conn.resume_ticket().is_some());
    // The handshake timer is gone; the heartbeat's run.
    assert_eq!(
        pair.client.conn.poll_timeout(),
        Some(pair.now + Duration::from_secs(10))
    );
}

#[test]
fn server_heartbeat_settings_are_final() {
    let client = Config::builder()
        .heartbeat(Duration::from_secs(1), Duration::from_secs(2))
        .build()
        .unwrap();
    let server = Config::builder()
        .heartbeat(Duration::from_secs(4), Duration::from_secs(9))
        .build()
        .unwrap();
    let mut pair = Pair::new(client, server, 1);
    pair.handshake();
    let want = Some((Duration::from_secs(4), Duration::from_secs(9)));
    assert_eq!(pair.client.conn.heartbeat(), want);
    assert_eq!(pair.server.conn.heartbeat(), want);
    // The server saw the client's proposal.
    let Event::HelloReceived(h) = &pair.server.events[0] else {
        panic!()
    };
    assert_eq!(h.settings.heartbeat_interval_ms, Some(1000));
}

#[test]
fn silent_client_hits_the_handshake_timeout() {
    let mut pair = Pair::default_configs();
    pair.to_server.black_hole = true;
    pair.run_for(Duration::from_secs(20));
    for peer in [&pair.client, &pair.server] {
        assert_eq!(
            peer.last_event(),
            Some(&Event::Failure {
                error: ConnectionError::HandshakeTimeout(Duration::from_secs(10))
            })
        );
    }
    assert!(pair.server.conn.is_closed() && pair.client.conn.is_closed());
}

#[test]
fn undecided_server_times_out_too() {
    let mut pair = Pair::default_configs();
    pair.decision = Decision::Ignore;
    pair.run_for(Duration::from_secs(9));
    assert_eq!(pair.server.conn.state(), State::AwaitingDecision);
    pair.run_for(Duration::from_secs(2));
    assert_eq!(pair.elapsed(), Duration::from_secs(11));
    let want = Event::Failure {
        error: ConnectionError::HandshakeTimeout(Duration::from_secs(10)),
    };
    assert_eq!(pair.server.last_event(), Some(&want));
    // The client learns it from the server's close frame or its own timer, both at 10 s.
    assert!(matches!(
        pair.client.last_event(),
        Some(Event::Failure { .. })
    ));
}

#[test]
fn rejection_is_closed_locally_and_a_failure_remotely() {
    let mut pair = Pair::default_configs();
    pair.decision = Decision::Reject(CloseCode::REJECTED, "bad credentials");
    pair.run_for(Duration::from_secs(1));
    assert_eq!(
        pair.server.last_event(),
        Some(&Event::Closed {
            code: CloseCode::REJECTED,
            reason: "bad credentials".into(),
            initiator: Initiator::Local
        })
    );
    let Some(Event::Failure { error }) = pair.client.last_event() else {
        panic!("{:?}", pair.client.events)
    };
    assert_eq!(
        error,
        &ConnectionError::PeerClosed {
            code: CloseCode::REJECTED,
            reason: "bad credentials".into()
        }
    );
    assert_eq!(error.initiator(), Initiator::Peer);
    assert!(pair.client.conn.resume_ticket().is_none());
}

#[test]
fn no_common_version_closes_with_4001() {
    let mut s = server();
    s.handle_message(hello(vec![7, 9], b""), std::time::Instant::now());
    let (code, event) = closed_with(&mut s);
    assert_eq!(code, CloseCode::UNSUPPORTED_VERSION);
    assert_eq!(
        event,
        Event::Failure {
            error: ConnectionError::UnsupportedVersion { peer: vec![7, 9] }
        }
    );

    // [1, 2, 4] and [3, 2, 1] settle on the highest in common, whatever the order.
    let c2 = Config::builder().versions(&[1, 2, 4]).build().unwrap();
    let s2 = Config::builder().versions(&[3, 2, 1]).build().unwrap();
    let mut pair = Pair::new(c2, s2, 1);
    pair.handshake();
    assert_eq!(pair.server.conn.version(), Some(2));
    assert_eq!(pair.client.conn.version(), Some(2));
}

#[test]
fn client_refuses_a_version_it_did_not_offer() {
    let now = std::time::Instant::now();
    let c = Config::builder().versions(&[1]).build().unwrap();
    let s = Config::builder().versions(&[1, 2]).build().unwrap();
    let mut client = Connection::client(Arc::new(c), Bytes::new(), None, now).unwrap();
    let mut server = Connection::server(Arc::new(s), now);
    // A faulty server: hand it a HELLO claiming version 2.
    server.handle_message(hello(vec![2], b""), now);
    let Some(Event::HelloReceived(_)) = server.poll_event() else {
        panic!()
    };
    server
        .accept(
            tether_proto::connection::Admission::fresh(&mut |b: &mut [u8]| b.fill(3)).unwrap(),
            now,
        )
        .unwrap();
    let welcome = server.poll_transmit().unwrap();
    let _hello = client.poll_transmit();
    client.handle_message(welcome, now);
    let (code, _) = closed_with(&mut client);
    assert_eq!(code, CloseCode::UNSUPPORTED_VERSION);
}

#[test]
fn wrong_frames_for_the_state_are_protocol_errors() {
    let now = std::time::Instant::now();
    // Server waiting for HELLO gets an ACK.
    let mut s = server();
    s.handle_message(encode(&Frame::Ack), now);
    let (code, event) = closed_with(&mut s);
    assert_eq!(code, CloseCode::PROTOCOL_ERROR);
    assert!(matches!(
        event,
        Event::Failure {
            error: ConnectionError::UnexpectedFrame {
                state: State::AwaitingHello,
                ..
            }
        }
    ));

    // Server waiting for the embedder gets a PING frame.
    let mut s = server();
    s.handle_message(hello(vec![1], b""), now);
    s.handle_message(encode(&Frame::Ping(tether_proto::Ping(Bytes::new()))), now);
    let (code, _) = closed_with(&mut s);
    assert_eq!(code, CloseCode::PROTOCOL_ERROR);
    assert_eq!(
        s.accept(
            tether_proto::connection::Admission::fresh(&mut |b: &mut [u8]| b.fill(1)).unwrap(),
            now
        )
        .unwrap_err()
        .state,
        State::Closed
    );

    // Client waiting for WELCOME gets a HELLO.
    let mut c = Connection::client(Arc::new(Config::default()), Bytes::new(), None, now).unwrap();
    c.handle_message(hello(vec![1], b""), now);
    let (code, _) = closed_with(&mut c);
    assert_eq!(code, CloseCode::PROTOCOL_ERROR);

    // An established server gets a second HELLO.
    let mut pair = Pair::default_configs();
    pair.handshake();
    pair.server
        .conn
        .handle_message(hello(vec![1], b""), pair.now);
    let (code, _) = closed_with(&mut pair.server.conn);
    assert_eq!(code, CloseCode::PROTOCOL_ERROR);
}

#[test]
fn text_messages_close_with_1003_in_every_state() {
    let now = std::time::Instant::now();
    let mut s = server();
    s.handle_message(WsMessage::Text(Bytes::from_static(b"{}")), now);
    let (code, event) = closed_with(&mut s);
    assert_eq!(code, CloseCode::UNSUPPORTED_DATA);
    assert_eq!(
        event,
        Event::Failure {
            error: ConnectionError::TextMessage
        }
    );

    let mut pair = Pair::default_configs();
    pair.handshake();
    pair.client
        .conn
        .handle_message(WsMessage::Text(Bytes::new()), pair.now);
    let (code, _) = closed_with(&mut pair.client.conn);
    assert_eq!(code, CloseCode::UNSUPPORTED_DATA);
}

#[test]
fn bad_or_oversize_metadata_closes_with_4004() {
    let now = std::time::Instant::now();
    let mut s = server();
    s.handle_message(hello(vec![1], b"{not json"), now);
    let (code, event) = closed_with(&mut s);
    assert_eq!(code, CloseCode::INVALID_METADATA);
    assert!(matches!(
        event,
        Event::Failure {
            error: ConnectionError::InvalidFrame(_)
        }
    ));

    let small = Limits {
        max_metadata_size: 8,
        ..Limits::default()
    };
    let mut s = Connection::server(
        Arc::new(Config::builder().limits(small).build().unwrap()),
        now,
    );
    s.handle_message(hello(vec![1], b"\"123456789\""), now);
    assert_eq!(closed_with(&mut s).0, CloseCode::INVALID_METADATA);

    // A client refuses to send what a server would refuse.
    let c = Arc::new(Config::default());
    assert!(Connection::client(c.clone(), Bytes::from_static(b"{x"), None, now).is_err());
    assert!(Connection::client(c, Bytes::from(vec![b' '; 9000]), None, now).is_err());
}

#[test]
fn garbage_and_oversize_messages_close_never_panic() {
    let now = std::time::Instant::now();
    for bytes in [
        &b""[..],
        b"\x01",
        b"\xff\0\0\0\0\0\0\0",
        b"\x01\0\0\0\0\0\0\0\x00",
    ] {
        let mut s = server();
        s.handle_message(WsMessage::Binary(Bytes::copy_from_slice(bytes)), now);
        assert_eq!(
            closed_with(&mut s).0,
            CloseCode::PROTOCOL_ERROR,
            "{bytes:?}"
        );
    }
    let mut s = server();
    s.handle_message(WsMessage::Binary(Bytes::from(vec![5u8; 70_000])), now);
    assert_eq!(closed_with(&mut s).0, CloseCode::MESSAGE_TOO_BIG);
}

#[test]
fn websocket_layer_errors_close_with_their_code_as_local_failures() {
    // spec/protocol.md §2.3: 1009 and 1002 are sent, not a dropped transport.
    let now = std::time::Instant::now();
    for (error, want, keeps_session) in [
        (
            WebSocketError::MessageTooBig,
            CloseCode::MESSAGE_TOO_BIG,
            false,
        ),
        (
            WebSocketError::Protocol,
            CloseCode::WEBSOCKET_PROTOCOL_ERROR,
            true,
        ),
        (
            WebSocketError::InvalidText,
            CloseCode::UNSUPPORTED_DATA,
            false,
        ),
    ] {
        let mut s = server();
        s.handle_websocket_error(error, now);
        let (code, event) = closed_with(&mut s);
        assert_eq!(code, want);
        let Event::Failure { error: e } = event else {
            panic!("{event:?}")
        };
        assert_eq!(e, ConnectionError::WebSocket(error));
        assert_eq!(e.initiator(), Initiator::Local);
        assert_eq!(e.close_code(), Some(want));
        // spec/protocol.md §9.1: a code the client must not retry ends the session.
        assert_eq!(e.keeps_session(), keeps_session);
        // Once closed, a second error does nothing.
        s.handle_websocket_error(error, now);
        assert!(s.poll_transmit().is_none() && s.poll_event().is_none());
    }
    assert!(ConnectionError::TransportLost.keeps_session());
}

#[test]
fn peer_close_during_handshake_is_reported() {
    let now = std::time::Instant::now();
    let mut s = server();
    s.handle_message(WsMessage::Close(None), now);
    assert_eq!(
        s.poll_event(),
        Some(Event::Closed {
            code: CloseCode::from_u(1005),
            reason: String::new(),
            initiator: Initiator::Peer
        })
    );
    assert_eq!(
        s.poll_transmit(),
        None,
        "the WebSocket library answers close frames"
    );
    // Input after the end is ignored.
    s.handle_message(hello(vec![1], b""), now);
    s.handle_timeout(now + Duration::from_secs(60));
    assert_eq!(
        (s.poll_event(), s.poll_transmit(), s.poll_timeout()),
        (None, None, None)
    );
}

#[test]
fn local_close_is_orderly_and_idempotent() {
    let mut pair = Pair::default_configs();
    pair.handshake();
    let now = pair.now;
    pair.client.conn.close(CloseCode::NORMAL, "bye", now);
    pair.client.conn.close(CloseCode::GOING_AWAY, "again", now);
    pair.drive();
    assert_eq!(
        pair.client.last_event(),
        Some(&Event::Closed {
            code: CloseCode::NORMAL,
            reason: "bye".into(),
            initiator: Initiator::Local
        })
    );
    assert_eq!(
        pair.server.last_event(),
        Some(&Event::Closed {
            code: CloseCode::NORMAL,
            reason: "bye".into(),
            initiator: Initiator::Peer
        })
    );
    assert_eq!(pair.client.count(|e| matches!(e, Event::Closed { .. })), 1);
}

#[test]
fn server_application_may_set_the_heartbeat_per_connection() {
    let mut pair = Pair::default_configs();
    pair.heartbeat_override = Some((Duration::from_secs(2), Duration::from_secs(5)));
    pair.handshake();
    let want = Some((Duration::from_secs(2), Duration::from_secs(5)));
    assert_eq!(pair.client.conn.heartbeat(), want);
    assert_eq!(pair.server.conn.heartbeat(), want);

    // A zero interval turns it off on both sides: no probes, no deadline, no death.
    let mut pair = Pair::default_configs();
    pair.heartbeat_override = Some((Duration::ZERO, Duration::from_secs(5)));
    pair.handshake();
    assert_eq!(pair.client.conn.heartbeat(), None);
    assert_eq!(pair.server.conn.poll_timeout(), None);
    pair.run_for(Duration::from_secs(3600));
    assert!(pair.client.conn.is_established() && pair.server.conn.is_established());
    assert_eq!(
        pair.client
            .count(|e| matches!(e, Event::PingReceived { .. })),
        0
    );
}

#[test]
fn spurious_timeouts_do_nothing() {
    let mut pair = Pair::default_configs();
    pair.to_server.latency = Duration::from_millis(3);
    pair.handshake();
    for peer in [&mut pair.client, &mut pair.server] {
        let deadline = peer.conn.poll_timeout().unwrap();
        for early in [
            Duration::ZERO,
            Duration::from_millis(1),
            Duration::from_secs(9),
        ] {
            peer.conn.handle_timeout(pair.now + early);
            peer.conn.handle_timeout(pair.now + early);
            assert_eq!(peer.conn.poll_transmit(), None);
            assert_eq!(peer.conn.poll_event(), None);
            assert_eq!(peer.conn.poll_timeout(), Some(deadline));
        }
    }
    // Before the handshake too.
    let now = std::time::Instant::now();
    let mut s = Connection::server(Arc::new(Config::default()), now);
    s.handle_timeout(now + Duration::from_millis(9_999));
    assert_eq!((s.poll_transmit(), s.poll_event()), (None, None));
    assert_eq!(s.state(), State::AwaitingHello);
}

/// A source that fails, like an operating system's CSPRNG that cannot be read.
struct BrokenRandom;

impl tether_proto::RandomSource for BrokenRandom {
    fn fill(&mut self, _: &mut [u8]) -> Result<(), tether_proto::RandomError> {
        Err(tether_proto::RandomError("entropy unavailable".into()))
    }
}

/// The machine, not the embedder, picks the close for a session store that cannot admit
/// the HELLO: 4008 when the random source fails (spec/protocol.md §7.3 step 4, no weaker
/// identity), 4007 when the store is full (§9.1); with an admission it sends WELCOME.
#[test]
fn store_errors_close_with_the_spec_code_and_admissions_are_welcomed() {
    use tether_proto::connection::{SessionStore, StoreError};
    let now = std::time::Instant::now();
    let mut store = SessionStore::new(Duration::from_secs(30)).with_max_detached(1);

    // RNG failure: 4008, reported as a local close.
    let mut s = server();
    s.handle_message(hello(vec![1], b""), now);
    let admission = store.admit(None, Bytes::new(), &mut BrokenRandom, now);
    assert!(matches!(admission, Err(StoreError::Random(_))));
    s.admit(admission, now).unwrap();
    let (code, event) = closed_with(&mut s);
    assert_eq!(code, CloseCode::INTERNAL_ERROR);
    assert!(matches!(
        event,
        Event::Closed {
            code: CloseCode::INTERNAL_ERROR,
            initiator: Initiator::Local,
            ..
        }
    ));
    assert!(store.is_empty());

    // A full store: 4007, retried by clients after a longer backoff.
    let mut rng = {
        let mut n = 0u8;
        move |b: &mut [u8]| {
            b.fill_with(|| {
                n = n.wrapping_add(1);
                n
            })
        }
    };
    let held = store.admit(None, Bytes::new(), &mut rng, now).unwrap();
    store.detach(held.session(), now);
    assert!(store.is_full());
    let mut s = server();
    s.handle_message(hello(vec![1], b""), now);
    let admission = store.admit(None, Bytes::new(), &mut rng, now);
    assert!(matches!(admission, Err(StoreError::Full(1))));
    s.admit(admission, now).unwrap();
    let (code, _) = closed_with(&mut s);
    assert_eq!(code, CloseCode::ENHANCE_YOUR_CALM);
    assert_eq!(
        StoreError::IdsExhausted.close_code(),
        CloseCode::INTERNAL_ERROR
    );

    // An admission: WELCOME, and the handshake goes on.
    let mut s = server();
    s.handle_message(hello(vec![1], b""), now);
    let fresh = tether_proto::connection::Admission::fresh(&mut rng).unwrap();
    s.admit(Ok(fresh), now).unwrap();
    assert_eq!(s.state(), State::AwaitingAck);
    assert!(matches!(
        s.poll_transmit().map(WsMessage::from),
        Some(WsMessage::Binary(b)) if b[0] == 0x02
    ));

    // Only while a decision is pending: otherwise an error, and nothing changes.
    let err = s
        .admit(
            Err(StoreError::Random(tether_proto::RandomError("x".into()))),
            now,
        )
        .unwrap_err();
    assert_eq!(err.state, State::AwaitingAck);
    assert_eq!(s.state(), State::AwaitingAck);
}

#[test]
fn a_head_limit_above_the_frame_limit_is_bounded_by_the_frame_limit() {
    // spec/protocol.md §5: MAX_HEAD_SIZE may exceed MAX_FRAME_PAYLOAD, but a head travels
    // in one frame, so the smaller of the two is what the client may send.
    let now = std::time::Instant::now();
    let mut c = Connection::client(Arc::new(Config::default()), Bytes::new(), None, now).unwrap();
    let settings = Settings {
        max_frame_payload: Some(1024),
        max_head_size: Some(4096),
        ..Settings::default()
    };
    c.handle_message(
        encode(&Frame::Welcome(tether_proto::Welcome {
            version: 1,
            connection_id: uuid::Uuid::from_bytes([0x11; 16]),
            resume_token: tether_proto::ResumeToken::from_bytes([0x22; 16]),
            resumed: false,
            settings,
        })),
        now,
    );
    assert!(c.is_established());
    assert_eq!(c.peer_limits().max_frame_payload, 1024);
    assert_eq!(c.peer_limits().max_head_size, 1024);
}
