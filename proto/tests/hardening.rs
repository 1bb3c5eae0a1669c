//! Hostile peers and extreme configurations against the machines (issue 10 §4):
//! answers to probes that pile up for a peer that never reads (spec/protocol.md §8.5),
//! durations whose deadline the clock cannot represent (§5), and peer limits or releases
//! that would put empty frames on the wire (§3.4.7, §3.6).

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Method, Uri};
use proptest::prelude::*;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tether_proto::backoff::{Backoff, BackoffConfig};
use tether_proto::connection::{
    Carrier, Config, Connection, Event, PongResponder, SessionStore, WsMessage,
};
use tether_proto::streams::{
    PeerLimits, PeerLimitsError, Side, StreamEvent, Streams, StreamsConfig, TIMEOUT_HEADER,
};
use tether_proto::{Frame, FrameType, Limits, Ping, RequestHead, ResponseHead};

// ---- helpers

/// The latest instant after `t0` the platform can represent, to the second.
fn last_instant(t0: Instant) -> Instant {
    let (mut lo, mut hi) = (0u64, u64::MAX);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if t0.checked_add(Duration::from_secs(mid)).is_some() {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    t0 + Duration::from_secs(lo)
}

/// A deterministic source that never repeats itself (session ids must differ).
fn rng(buf: &mut [u8]) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    for chunk in buf.chunks_mut(8) {
        let v = NEXT.fetch_add(1, Ordering::Relaxed).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

/// Delivers everything `from` has to send to `to`; answers a HELLO by accepting it.
fn ferry(from: &mut Connection, to: &mut Connection, store: &mut SessionStore, now: Instant) {
    while let Some(msg) = from.poll_transmit() {
        to.handle_message(msg, now);
        drain_events(to, store, now);
    }
}

/// Drains `conn`'s events the way an embedder does; returns how many there were.
fn drain_events(conn: &mut Connection, store: &mut SessionStore, now: Instant) -> usize {
    let mut n = 0;
    while let Some(event) = conn.poll_event() {
        n += 1;
        // Received DATA is released by the machine (the default).
        if let Event::HelloReceived(hello) = event {
            let admission = store
                .admit(hello.resume.as_ref(), hello.metadata, &mut rng, now)
                .expect("admitted");
            conn.accept(admission, now).expect("accept");
        }
    }
    n
}

/// A client and a server machine, established at `now`.
fn pair(
    client: Config,
    server: Config,
    store: &mut SessionStore,
    now: Instant,
) -> (Connection, Connection) {
    let mut c = Connection::client(Arc::new(client), Bytes::new(), None, now).expect("client");
    let mut s = Connection::server(Arc::new(server), now);
    for _ in 0..3 {
        ferry(&mut c, &mut s, store, now);
        ferry(&mut s, &mut c, store, now);
        drain_events(&mut c, store, now);
    }
    (c, s)
}

fn frame_of(msg: &WsMessage) -> Option<Frame> {
    match msg {
        WsMessage::Binary(b) => Frame::decode(b.clone(), &Limits::default()).ok(),
        _ => None,
    }
}

// ---- §8.5: answers to probes

/// A peer that sends probes (both carriers) and never reads what it is sent: at most one
/// answer per carrier waits in the machine's queue, and it answers the latest probe.
#[test]
fn answers_to_an_unread_peer_do_not_pile_up() {
    let t0 = Instant::now();
    let mut store = SessionStore::new(Duration::from_secs(30));
    let server_config = Config::builder()
        .pong_responder(PongResponder::Machine)
        .heartbeat_disabled()
        .build()
        .unwrap();
    let client_config = Config::builder().heartbeat_disabled().build().unwrap();
    let (_client, mut server) = pair(client_config, server_config, &mut store, t0);
    assert!(server.is_established());

    // 4 windows of 450 probes of each carrier: under the probe rate limit (§8.5), but far
    // more answers than a bounded queue holds.
    let mut last = 0u32;
    for window in 0..4u32 {
        let now = t0 + Duration::from_secs(10) * window;
        for i in 0..450u32 {
            last = window * 1_000 + i;
            let payload = Bytes::from(last.to_be_bytes().to_vec());
            server.handle_message(WsMessage::Ping(payload.clone()), now);
            let mut buf = BytesMut::new();
            Frame::Ping(Ping(payload)).encode(&mut buf);
            server.handle_message(WsMessage::Binary(buf.freeze()), now);
            // The embedder handles events, but cannot write: the peer does not read.
            drain_events(&mut server, &mut store, now);
        }
    }
    assert!(server.is_established(), "the rate limit was not reached");

    let (mut ws_pongs, mut pong_frames) = (vec![], vec![]);
    while let Some(msg) = server.poll_transmit().map(WsMessage::from) {
        match (&msg, frame_of(&msg)) {
            (WsMessage::Pong(p), _) => ws_pongs.push(p.clone()),
            (_, Some(Frame::Pong(p))) => pong_frames.push(p.0),
            other => panic!("unexpected {other:?}"),
        }
    }
    let latest = Bytes::from(last.to_be_bytes().to_vec());
    assert_eq!(
        ws_pongs,
        vec![latest.clone()],
        "one WebSocket Pong, for the latest Ping"
    );
    assert_eq!(
        pong_frames,
        vec![latest],
        "one PONG frame, for the latest PING"
    );

    // Once the queue is written, the next probe is answered again.
    let now = t0 + Duration::from_secs(40);
    server.handle_message(WsMessage::Ping(Bytes::from_static(b"again")), now);
    drain_events(&mut server, &mut store, now);
    assert_eq!(
        server.poll_transmit().map(WsMessage::from),
        Some(WsMessage::Pong(Bytes::from_static(b"again")))
    );
    assert_eq!(server.poll_transmit().map(WsMessage::from), None);
}

/// The answer stays behind the machine's own messages queued before it (the ACK before a
/// PONG frame: the server would refuse a PONG in AwaitingAck).
#[test]
fn an_answer_keeps_its_place_after_the_handshake() {
    let t0 = Instant::now();
    let mut store = SessionStore::new(Duration::from_secs(30));
    let config = || Config::builder().heartbeat_disabled().build().unwrap();
    let mut c = Connection::client(Arc::new(config()), Bytes::new(), None, t0).unwrap();
    let mut s = Connection::server(Arc::new(config()), t0);
    ferry(&mut c, &mut s, &mut store, t0);
    // WELCOME, then a PING frame, reach the client before it writes anything.
    let mut buf = BytesMut::new();
    Frame::Ping(Ping(Bytes::from_static(b"p"))).encode(&mut buf);
    while let Some(msg) = s.poll_transmit() {
        c.handle_message(msg, t0);
    }
    c.handle_message(WsMessage::Binary(buf.freeze()), t0);
    let sent: Vec<_> = std::iter::from_fn(|| c.poll_transmit().map(WsMessage::from))
        .map(|m| frame_of(&m).map(|f| f.frame_type()))
        .collect();
    assert_eq!(
        sent,
        vec![
            Some(tether_proto::FrameType::Ack),
            Some(tether_proto::FrameType::Pong)
        ]
    );
}

/// spec/protocol.md §10.3 [10.3-5]: the answer to a PING frame (a PONG) leaves before the
/// DATA queued earlier, so heartbeats never wait behind bulk data.
#[test]
fn a_pong_overtakes_queued_data() {
    let t0 = Instant::now();
    let mut store = SessionStore::new(Duration::from_secs(30));
    let config = || Config::builder().heartbeat_disabled().build().unwrap();
    let mut c = Connection::client(Arc::new(config()), Bytes::new(), None, t0).unwrap();
    let mut s = Connection::server(Arc::new(config()), t0);
    ferry(&mut c, &mut s, &mut store, t0); // HELLO
    ferry(&mut s, &mut c, &mut store, t0); // WELCOME
    ferry(&mut c, &mut s, &mut store, t0); // ACK
    assert!(c.is_established() && s.is_established());
    let head = RequestHead::new(Method::POST, Uri::from_static("/up"));
    let id = c.open(head, false, None, t0).unwrap();
    c.stream(id)
        .unwrap()
        .send_data(Bytes::from(vec![7u8; 200 * 1024]), true)
        .unwrap();
    let kind = |m: WsMessage| frame_of(&m).map(|f| f.frame_type());
    // The head and the first DATA frame are out; more DATA waits.
    let first: Vec<_> = (0..2)
        .filter_map(|_| c.poll_transmit())
        .map(|m| kind(m.into()))
        .collect();
    assert_eq!(first, [Some(FrameType::Headers), Some(FrameType::Data)]);
    let mut buf = BytesMut::new();
    Frame::Ping(Ping(Bytes::from_static(b"p"))).encode(&mut buf);
    c.handle_message(WsMessage::Binary(buf.freeze()), t0);
    let rest: Vec<_> = std::iter::from_fn(|| c.poll_transmit())
        .map(|m| kind(m.into()))
        .collect();
    assert!(rest.len() > 2, "DATA was still queued: {rest:?}");
    assert_eq!(rest[0], Some(FrameType::Pong), "{rest:?}");
    assert!(
        rest[1..].iter().all(|k| *k == Some(FrameType::Data)),
        "{rest:?}"
    );
}

// ---- §5: durations whose deadline the clock cannot represent

#[derive(Debug, Clone)]
struct Extremes {
    handshake_timeout: Duration,
    heartbeat: Option<(Duration, Duration)>,
    stall_timeout: Duration,
    churn_window: Duration,
    churn_min_lifetime: Duration,
    resume_window: Duration,
    open_timeout: Option<Duration>,
    header_timeout: Option<&'static str>,
    backoff_initial: Duration,
    /// The clock starts near the last representable instant.
    late_start: bool,
    /// Steps of the clock after the handshake, as fractions of the room left.
    steps: Vec<u8>,
}

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_millis(1)),
        Just(Duration::from_secs(86_400)),
        Just(Duration::from_secs(u64::MAX / 2)),
        Just(Duration::MAX),
        (0u64..u64::MAX).prop_map(Duration::from_secs),
    ]
}

fn positive() -> impl Strategy<Value = Duration> {
    duration().prop_map(|d| d.max(Duration::from_millis(1)))
}

fn extremes() -> impl Strategy<Value = Extremes> {
    (
        (positive(), positive(), duration(), duration(), duration()),
        prop_oneof![
            Just(None),
            Just(Some((Duration::from_millis(1), Duration::from_millis(2)))),
            Just(Some((
                Duration::from_secs(86_399),
                Duration::from_secs(86_400)
            ))),
        ],
        (
            proptest::option::of(duration()),
            proptest::option::of(prop_oneof![Just("9999999999"), Just("0"), Just("1")]),
            duration(),
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 1..6),
        ),
    )
        .prop_map(
            |(
                (handshake_timeout, stall_timeout, churn_window, churn_min_lifetime, resume_window),
                heartbeat,
                (open_timeout, header_timeout, backoff_initial, late_start, steps),
            )| Extremes {
                handshake_timeout,
                heartbeat,
                stall_timeout,
                churn_window,
                churn_min_lifetime,
                resume_window,
                open_timeout,
                header_timeout,
                backoff_initial,
                late_start,
                steps,
            },
        )
}

fn config(x: &Extremes) -> Config {
    let streams = StreamsConfig {
        stall_timeout: x.stall_timeout,
        churn_window: x.churn_window,
        churn_min_lifetime: x.churn_min_lifetime,
        initial_stream_window: 0, // the server's body waits in its queue: a stall check
        serve_requests: true,
        ..StreamsConfig::default()
    };
    let b = Config::builder()
        .handshake_timeout(x.handshake_timeout)
        .carrier(Carrier::Frame)
        .streams(streams);
    match x.heartbeat {
        Some((i, t)) => b.heartbeat(i, t),
        None => b.heartbeat_disabled(),
    }
    .build()
    .expect("valid config")
}

/// Drives a client and a server through a handshake, a request with the given deadline
/// both ways, a response body that waits for window, probes, and clock steps up to the
/// last representable instant; nothing may panic, and a deadline the clock cannot
/// represent never fires.
fn drive(x: &Extremes) {
    let t0 = Instant::now();
    let end = last_instant(t0);
    let start = if x.late_start {
        end - Duration::from_secs(3_600)
    } else {
        t0
    };
    let mut store = SessionStore::new(x.resume_window);
    let (mut c, mut s) = pair(config(x), config(x), &mut store, start);
    assert!(c.is_established() && s.is_established());
    let _ = c.poll_timeout();
    let _ = s.poll_timeout();

    let mut head = RequestHead::new(Method::POST, Uri::from_static("/x"));
    if let Some(v) = x.header_timeout {
        head.headers
            .insert(TIMEOUT_HEADER, HeaderValue::from_static(v));
    }
    let id = c.open(head, false, x.open_timeout, start).expect("open");
    c.stream(id)
        .unwrap()
        .send_data(Bytes::from_static(b"body"), true)
        .unwrap();
    ferry(&mut c, &mut s, &mut store, start);
    if let Ok(mut stream) = s.stream(id) {
        if stream
            .send_response(ResponseHead::new(http::StatusCode::OK), false)
            .is_ok()
        {
            let _ = stream.send_data(Bytes::from_static(b"answer"), false);
        }
    }
    ferry(&mut s, &mut c, &mut store, start);

    // A session kept across a failure with a window that may end past the last instant.
    let id_session = store
        .admit(None, Bytes::new(), &mut rng, start)
        .expect("admit");
    store.detach(id_session.session(), end);
    let _ = store.poll_timeout();
    store.handle_timeout(end);

    let mut backoff = Backoff::new(BackoffConfig {
        initial: x.backoff_initial,
        max_delay: x.backoff_initial,
        max_elapsed: Some(x.backoff_initial),
        ..BackoffConfig::default()
    });
    backoff.handle_resumable(end, x.resume_window);
    let _ = backoff.next_delay(end, &mut rng);

    let mut now = start;
    for step in &x.steps {
        let room = end.saturating_duration_since(now);
        now += room / 255 * u32::from(*step);
        for conn in [&mut c, &mut s] {
            conn.handle_timeout(now);
        }
        ferry(&mut c, &mut s, &mut store, now);
        ferry(&mut s, &mut c, &mut store, now);
        drain_events(&mut c, &mut store, now);
        for conn in [&c, &s] {
            if let Some(at) = conn.poll_timeout() {
                assert!(at >= start, "a deadline before the start");
            }
        }
    }
    // Handshake done, a heartbeat that cannot time out before a day: still alive a day on.
    let later = start.checked_add(Duration::from_secs(86_400));
    if let Some(later) = later.filter(|&l| x.heartbeat.is_none() && now < l) {
        c.handle_timeout(later);
        s.handle_timeout(later);
        assert!(c.is_established() && s.is_established());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn extreme_durations_never_panic(x in extremes()) {
        drive(&x);
    }
}

/// The cases that panicked before (one per `now + duration` on a user's or peer's value).
#[test]
fn each_unrepresentable_deadline_is_no_deadline() {
    let base = Extremes {
        handshake_timeout: Duration::from_secs(10),
        heartbeat: None,
        stall_timeout: Duration::from_secs(30),
        churn_window: Duration::from_secs(10),
        churn_min_lifetime: Duration::from_millis(100),
        resume_window: Duration::from_secs(30),
        open_timeout: None,
        header_timeout: None,
        backoff_initial: Duration::from_millis(500),
        late_start: false,
        steps: vec![255],
    };
    // The handshake timeout.
    drive(&Extremes {
        handshake_timeout: Duration::MAX,
        ..base.clone()
    });
    // A request's timeout, and the peer's copy from `tether-timeout`, near the end of time.
    drive(&Extremes {
        open_timeout: Some(Duration::MAX),
        ..base.clone()
    });
    drive(&Extremes {
        header_timeout: Some("9999999999"),
        late_start: true,
        ..base.clone()
    });
    // The stall timeout (armed when the response body waits for window).
    drive(&Extremes {
        stall_timeout: Duration::MAX,
        ..base.clone()
    });
    // Heartbeat timers and the resume window, near the end of time.
    drive(&Extremes {
        heartbeat: Some((Duration::from_secs(86_399), Duration::from_secs(86_400))),
        late_start: true,
        ..base.clone()
    });
}

/// A request whose timeout is longer than `tether-timeout` can say runs the deadline the
/// peer runs (spec/protocol.md §10.6), not a longer one.
#[test]
fn a_timeout_beyond_the_header_is_cut_to_it() {
    let now = Instant::now();
    let mut s = Streams::new(
        Side::Client,
        StreamsConfig::default(),
        PeerLimits::default(),
    )
    .unwrap();
    let head = RequestHead::new(Method::GET, Uri::from_static("/"));
    let id = s.open(head, true, Some(Duration::MAX), now).unwrap();
    let max = Duration::from_millis(9_999_999_999);
    assert_eq!(s.poll_timeout(), Some(now + max));
    match s.poll_transmit() {
        Some(Frame::Headers(h)) => match h.head {
            tether_proto::Head::Request(r) => {
                assert_eq!(r.timeout_ms, Some(9_999_999_999));
                let mut wire = bytes::BytesMut::new();
                r.encode(&mut wire);
                assert!(wire.ends_with(b"\r\ntether-timeout: 9999999999\r\n\r\n"));
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    s.handle_timeout(now + max);
    assert!(s.poll_event().is_some_and(|e| matches!(
        e,
        StreamEvent::Closed { id: got, .. } if got == id
    )));
}

// ---- §3.6, §3.4.7: nothing empty on the wire

#[test]
fn a_zero_max_frame_payload_is_refused() {
    let peer = PeerLimits {
        max_frame_payload: 0,
        ..PeerLimits::default()
    };
    assert_eq!(peer.validate(), Err(PeerLimitsError::ZeroFramePayload));
    let made = Streams::new(Side::Client, StreamsConfig::default(), peer);
    assert_eq!(made.err(), Some(PeerLimitsError::ZeroFramePayload));
    // The smallest payload works: a body goes out one byte per frame, and ends.
    let peer = PeerLimits {
        max_frame_payload: 1,
        ..PeerLimits::default()
    };
    let mut s = Streams::new(Side::Client, StreamsConfig::default(), peer).unwrap();
    let now = Instant::now();
    let id = s
        .open(
            RequestHead::new(Method::POST, Uri::from_static("/")),
            false,
            None,
            now,
        )
        .unwrap();
    s.send_data(id, Bytes::from_static(b"abc"), true).unwrap();
    let mut frames = 0;
    while let Some(f) = s.poll_transmit() {
        frames += 1;
        if let Frame::Data(d) = f {
            assert_eq!(d.payload.len(), 1);
        }
        assert!(frames < 10, "DATA without end");
    }
    assert_eq!(frames, 4, "HEADERS and three one-byte DATA frames");
}

/// Releasing nothing, or with a window so small that half of it is zero, never sends a
/// WINDOW_UPDATE with increment 0 (which the peer treats as an error, §3.4.7).
#[test]
fn release_capacity_never_sends_a_zero_increment() {
    let now = Instant::now();
    for window in [0u32, 1] {
        let config = StreamsConfig {
            initial_stream_window: window,
            initial_connection_window: 0,
            serve_requests: true,
            manual_release: true,
            ..StreamsConfig::default()
        };
        let mut server = Streams::new(Side::Server, config, PeerLimits::default()).unwrap();
        let head = RequestHead::new(Method::POST, Uri::from_static("/"));
        let mut client = Streams::new(
            Side::Client,
            StreamsConfig::default(),
            PeerLimits::default(),
        )
        .unwrap();
        let id = client.open(head, false, None, now).unwrap();
        while let Some(f) = client.poll_transmit() {
            server.handle_frame(f, now).unwrap();
        }
        assert!(matches!(
            server.poll_event(),
            Some(StreamEvent::Request { .. })
        ));
        for n in [0, 0, 1, u32::MAX] {
            server.release_capacity(id, n);
        }
        while let Some(f) = server.poll_transmit() {
            if let Frame::WindowUpdate(w) = f {
                assert!(w.increment > 0, "WINDOW_UPDATE {w:?} with window {window}");
            }
        }
    }
}

/// Two round trips each as long as the clock allows: the RTT estimate (RFC 6298) does not
/// overflow.
#[test]
fn round_trips_as_long_as_the_clock_allows() {
    let t0 = Instant::now();
    let end = last_instant(t0);
    let mut store = SessionStore::new(Duration::from_secs(30));
    let config = || {
        Config::builder()
            .heartbeat(Duration::from_millis(1), Duration::from_millis(2))
            .carrier(Carrier::Frame)
            .build()
            .unwrap()
    };
    let (mut c, mut s) = pair(config(), config(), &mut store, t0);
    let half = t0 + end.saturating_duration_since(t0) / 2;
    // A probe at t0 + 1 ms, answered at once, whose answer arrives at `half`; then again
    // from `half` to `end`.
    let ms = Duration::from_millis(1);
    for (sent, arrives) in [(t0 + ms, half), (half + ms, end)] {
        c.handle_timeout(sent);
        ferry(&mut c, &mut s, &mut store, sent);
        while let Some(msg) = s.poll_transmit() {
            c.handle_message(msg, arrives);
        }
        drain_events(&mut c, &mut store, arrives);
    }
    let rtt = c.rtt_stats();
    assert_eq!(rtt.samples, 2, "{rtt:?}");
    assert!(rtt
        .smoothed
        .is_some_and(|s| s >= end.saturating_duration_since(half) / 2));
}

/// The demo server's heartbeat interval is the embedder's choice: an interval too long
/// for the clock means no heartbeat, and the subscription still works.
#[test]
fn a_demo_heartbeat_interval_beyond_the_clock() {
    use std::time::SystemTime;
    use tether_proto::demo::{DemoConfig, DemoSession};
    let t0 = Instant::now();
    let config = DemoConfig {
        heartbeat_interval: Duration::MAX,
    };
    let mut m = DemoSession::new(config, t0, SystemTime::UNIX_EPOCH);
    m.handle_message(br#"{"type":"subscribe_request","topic":"heartbeat"}"#, t0);
    assert!(m.is_subscribed());
    assert_eq!(m.poll_timeout(), None);
    m.handle_timeout(last_instant(t0));
    while m.poll_message().is_some() {}
    m.handle_message(br#"{"type":"subscribe_request","topic":"heartbeat"}"#, t0);
    assert!(m.poll_message().unwrap().contains("already subscribed"));
    m.handle_message(br#"{"type":"unsubscribe_request","topic":"heartbeat"}"#, t0);
    assert!(!m.is_subscribed());
}

/// A peer that neither sends nor reads, under a heartbeat of 1 ms and a timeout of a day
/// (values a server may impose, §3.6): the client's probes do not pile up; the one that
/// waits is the latest (§8.5).
#[test]
fn probes_to_a_silent_unread_peer_do_not_pile_up() {
    let t0 = Instant::now();
    let mut store = SessionStore::new(Duration::from_secs(30));
    for carrier in [Carrier::WebSocket, Carrier::Frame] {
        let config = Config::builder()
            .heartbeat(Duration::from_millis(1), Duration::from_secs(86_400))
            .carrier(carrier)
            .build()
            .unwrap();
        let (mut c, _server) = pair(config.clone(), config, &mut store, t0);
        let mut now = t0;
        for _ in 0..5_000 {
            now = c.poll_timeout().expect("the probe timer runs");
            c.handle_timeout(now);
            drain_events(&mut c, &mut store, now);
        }
        assert!(c.is_established());
        let sent: Vec<_> = std::iter::from_fn(|| c.poll_transmit().map(WsMessage::from)).collect();
        assert_eq!(
            sent.len(),
            1,
            "{carrier:?}: one probe waits, not {}",
            sent.len()
        );
        let payload = match (&sent[0], frame_of(&sent[0])) {
            (WsMessage::Ping(p), _) => p.clone(),
            (_, Some(Frame::Ping(p))) => p.0,
            other => panic!("{other:?}"),
        };
        // The latest probe: sequence number 4,999.
        assert_eq!(payload[..8], 4_999u64.to_be_bytes());
        assert_eq!(now, t0 + Duration::from_millis(5_000));
    }
}
