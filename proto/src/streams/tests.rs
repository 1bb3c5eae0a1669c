//! Two stream layers wired back to back in virtual time.

use super::*;
use http::{Method, StatusCode, Uri};
use std::collections::HashMap as Map;

/// A tiny seeded generator (xorshift64*), so failures replay from the printed seed.
struct Rng(u64);

impl Rng {
    fn from_env(default: u64) -> Self {
        let seed = std::env::var("TETHER_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default);
        eprintln!("seed: {seed} (replay with TETHER_SEED={seed})");
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Peer {
    s: Streams,
    events: Vec<StreamEvent>,
    /// Whether this peer's application releases received bytes at once.
    auto_release: bool,
    error: Option<StreamsError>,
}

struct Pair {
    client: Peer,
    server: Peer,
    now: Instant,
}

/// `c` for an application that serves requests and releases capacity itself.
fn explicit(c: StreamsConfig) -> StreamsConfig {
    StreamsConfig {
        serve_requests: true,
        manual_release: true,
        ..c
    }
}

fn get(req: &str) -> RequestHead {
    RequestHead::new(Method::GET, req.parse::<Uri>().unwrap())
}

impl Pair {
    /// Two machines; their applications answer requests and release received bytes
    /// themselves (`auto_release` emulates an application that releases at once), unless
    /// a test builds them with [`Pair::with_defaults`].
    fn new(client: StreamsConfig, server: StreamsConfig) -> Self {
        Pair::with_defaults(explicit(client), explicit(server))
    }

    /// Two machines with their configs as given (the machine's own defaults apply).
    fn with_defaults(client: StreamsConfig, server: StreamsConfig) -> Self {
        let limits = |c: &StreamsConfig| PeerLimits {
            max_frame_payload: 16 * 1024,
            max_concurrent_streams: c.max_concurrent_streams,
            initial_stream_window: c.initial_stream_window,
            initial_connection_window: c.initial_connection_window,
            ..PeerLimits::default()
        };
        let (cl, sl) = (limits(&client), limits(&server));
        Pair {
            client: Peer {
                s: Streams::new(Side::Client, client, sl).unwrap(),
                events: vec![],
                auto_release: true,
                error: None,
            },
            server: Peer {
                s: Streams::new(Side::Server, server, cl).unwrap(),
                events: vec![],
                auto_release: true,
                error: None,
            },
            now: Instant::now(),
        }
    }

    fn default() -> Self {
        Pair::new(StreamsConfig::default(), StreamsConfig::default())
    }

    /// Moves frames both ways until neither side has anything to send. Returns the
    /// number of frames moved.
    fn pump(&mut self) -> usize {
        let mut moved = 0;
        loop {
            let mut progress = false;
            for dir in [true, false] {
                let (from, to) = if dir {
                    (&mut self.client, &mut self.server)
                } else {
                    (&mut self.server, &mut self.client)
                };
                while let Some(frame) = from.s.poll_transmit() {
                    progress = true;
                    moved += 1;
                    if to.error.is_none() {
                        if let Err(e) = to.s.handle_frame(frame, self.now) {
                            to.error = Some(e);
                        }
                    }
                }
                for p in [&mut *from, &mut *to] {
                    while let Some(e) = p.s.poll_event() {
                        if let StreamEvent::Data { id, data, .. } = &e {
                            if p.auto_release {
                                p.s.release_capacity(*id, data.len() as u32);
                            }
                        }
                        p.events.push(e);
                    }
                }
            }
            if !progress {
                return moved;
            }
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.client.s.handle_timeout(self.now);
        self.server.s.handle_timeout(self.now);
    }
}

fn outcomes(events: &[StreamEvent]) -> Map<StreamId, Vec<Outcome>> {
    let mut m: Map<StreamId, Vec<Outcome>> = Map::new();
    for e in events {
        if let StreamEvent::Closed { id, outcome } = e {
            m.entry(*id).or_default().push(outcome.clone());
        }
    }
    m
}

fn body_of(events: &[StreamEvent], id: StreamId) -> Vec<u8> {
    let mut body = vec![];
    for e in events {
        if let StreamEvent::Data { id: i, data, .. } = e {
            if *i == id {
                body.extend_from_slice(data);
            }
        }
    }
    body
}

fn requests(events: &[StreamEvent]) -> Vec<StreamId> {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Request { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

fn pattern(id: StreamId, len: usize) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u32 ^ id.value()) as u8)
            .collect::<Vec<_>>(),
    )
}

#[test]
fn request_and_response_with_bodies() {
    let mut p = Pair::default();
    let id = p.client.s.open(get("/upload"), false, None, p.now).unwrap();
    p.client
        .s
        .send_data(id, pattern(id, 100_000), true)
        .unwrap();
    p.pump();
    assert_eq!(requests(&p.server.events), vec![id]);
    assert_eq!(body_of(&p.server.events, id), pattern(id, 100_000));
    p.server
        .s
        .send_response(id, ResponseHead::new(StatusCode::OK), false)
        .unwrap();
    p.server
        .s
        .send_data(id, Bytes::from_static(b"thanks"), true)
        .unwrap();
    p.pump();
    assert_eq!(body_of(&p.client.events, id), b"thanks");
    assert_eq!(outcomes(&p.client.events)[&id], vec![Outcome::Finished]);
    assert_eq!(outcomes(&p.server.events)[&id], vec![Outcome::Finished]);
    assert_eq!(
        (p.client.s.open_streams(), p.server.s.open_streams()),
        (0, 0)
    );
}

/// A responder that wants no more of the request body answers in full, then resets with
/// NO_ERROR: the response arrives whole and complete, the upload stops, nothing is left.
#[test]
fn stop_receiving_resets_after_the_response_is_complete() {
    let mut p = Pair::default();
    let id = p.client.s.open(get("/upload"), false, None, p.now).unwrap();
    p.client.s.send_data(id, pattern(id, 1000), false).unwrap();
    p.pump();
    assert_eq!(requests(&p.server.events), vec![id]);
    p.server.s.stop_receiving(id, ResetCode::NO_ERROR);
    // The response is still to be sent: nothing is reset yet.
    assert_eq!(p.server.s.open_streams(), 1);
    p.server
        .s
        .send_response(id, ResponseHead::new(StatusCode::PAYLOAD_TOO_LARGE), false)
        .unwrap();
    p.server
        .s
        .send_data(id, Bytes::from_static(b"too big"), true)
        .unwrap();
    p.pump();
    assert_eq!(body_of(&p.client.events, id), b"too big");
    assert!(p.client.events.iter().any(|e| matches!(
        e,
        StreamEvent::Data { id: i, end_stream: true, .. } if *i == id
    )));
    // For the requester the exchange is complete (§10.5: NO_ERROR after the whole
    // response); the responder reports the reset it sent.
    assert_eq!(outcomes(&p.client.events)[&id], vec![Outcome::Finished]);
    let reset = Outcome::Reset {
        code: ResetCode::NO_ERROR,
        initiator: Initiator::Local,
    };
    assert_eq!(outcomes(&p.server.events)[&id], vec![reset]);
    assert_eq!(
        (p.client.s.open_streams(), p.server.s.open_streams()),
        (0, 0)
    );
    // After the request body completed, there is nothing to stop.
    let id = p.client.s.open(get("/b"), true, None, p.now).unwrap();
    p.pump();
    p.server.s.stop_receiving(id, ResetCode::NO_ERROR);
    p.server
        .s
        .send_response(id, ResponseHead::new(StatusCode::OK), true)
        .unwrap();
    p.pump();
    assert_eq!(outcomes(&p.client.events)[&id], vec![Outcome::Finished]);
}

/// A head the peer would refuse (over its MAX_HEAD_SIZE or MAX_HEADER_COUNT) is refused
/// here, before anything is sent: one oversized request cannot cost the whole connection.
#[test]
fn targets_the_peer_refuses_are_not_sent() {
    let mut p = Pair::default();
    let star = RequestHead::new(Method::GET, Uri::from_static("*"));
    assert_eq!(
        p.client.s.open(star, true, None, p.now),
        Err(OpenError::InvalidTarget)
    );
    assert!(p.client.s.poll_transmit().is_none());
    let options = RequestHead::new(Method::OPTIONS, Uri::from_static("*"));
    let id = p.client.s.open(options, true, None, p.now).unwrap();
    p.pump();
    assert_eq!(requests(&p.server.events), vec![id]);
}

#[test]
fn heads_over_the_peers_limits_are_refused_before_sending() {
    let mut p = Pair::default();
    p.client.s.peer.max_head_size = 300;
    p.client.s.peer.max_header_count = 4;
    p.server.s.peer.max_head_size = 300;
    let mut big = get("/big");
    big.headers
        .insert("x-big", HeaderValue::from_str(&"b".repeat(400)).unwrap());
    let err = p.client.s.open(big, true, None, p.now).unwrap_err();
    assert!(matches!(err, OpenError::HeadTooLarge(size) if size.bytes > 400));
    let mut many = get("/many");
    for i in 0..5 {
        many.headers.append(
            http::header::HeaderName::from_bytes(format!("x-{i}").as_bytes()).unwrap(),
            HeaderValue::from_static("1"),
        );
    }
    assert!(matches!(
        p.client.s.open(many, true, None, p.now),
        Err(OpenError::HeadTooLarge(size)) if size.fields == 5
    ));
    // The deadline field counts: a head that fits only without it is refused with it.
    let mut edge = get("/edge");
    let fill = 300 - edge.encoded_size().bytes - "x-fill: \r\n".len();
    edge.headers
        .insert("x-fill", HeaderValue::from_str(&"f".repeat(fill)).unwrap());
    assert_eq!(edge.encoded_size().bytes, 300);
    assert!(p
        .client
        .s
        .open(edge.clone(), true, Some(Duration::from_secs(1)), p.now)
        .is_err());
    let id = p.client.s.open(edge, true, None, p.now).unwrap();
    p.pump();
    assert_eq!(requests(&p.server.events), vec![id]);
    // A response head too large for the requester is not sent; the machine resets the
    // stream with INTERNAL_ERROR by itself (spec/protocol.md §5): the embedder writes no
    // reaction, and the connection stays up.
    let mut res = ResponseHead::new(StatusCode::OK);
    res.headers
        .insert("x-big", HeaderValue::from_str(&"b".repeat(400)).unwrap());
    assert!(matches!(
        p.server.s.send_response(id, res, true),
        Err(SendError::HeadTooLarge { id: i, .. }) if i == id
    ));
    p.pump();
    let internal = |initiator| Outcome::Reset {
        code: ResetCode::INTERNAL_ERROR,
        initiator,
    };
    assert_eq!(
        outcomes(&p.server.events)[&id],
        vec![internal(Initiator::Local)]
    );
    assert_eq!(
        outcomes(&p.client.events)[&id],
        vec![internal(Initiator::Peer)]
    );
    assert!(p.client.error.is_none() && p.server.error.is_none());
    assert_eq!(
        (p.client.s.open_streams(), p.server.s.open_streams()),
        (0, 0)
    );
    // The next exchange on the same connection works.
    let id = p.client.s.open(get("/next"), true, None, p.now).unwrap();
    p.pump();
    p.server
        .s
        .send_response(id, ResponseHead::new(StatusCode::OK), true)
        .unwrap();
    p.pump();
    assert_eq!(outcomes(&p.client.events)[&id], vec![Outcome::Finished]);
}

/// Trailers over the peer's limits: not sent (they would cost the peer a stream error it
/// cannot tell from a broken sender), the stream is reset with INTERNAL_ERROR by the
/// machine (spec/protocol.md §5), and the body already received is not passed off as
/// complete.
#[test]
fn trailers_over_the_peers_limits_reset_the_stream() {
    let mut p = Pair::default();
    p.server.s.peer.max_header_count = 2;
    let id = p.client.s.open(get("/t"), true, None, p.now).unwrap();
    p.pump();
    p.server
        .s
        .send_response(id, ResponseHead::new(StatusCode::OK), false)
        .unwrap();
    p.server
        .s
        .send_data(id, Bytes::from_static(b"part"), false)
        .unwrap();
    let mut trailers = HeaderMap::new();
    for name in ["x-a", "x-b", "x-c"] {
        trailers.insert(name, HeaderValue::from_static("1"));
    }
    assert!(matches!(
        p.server.s.send_trailers(id, trailers),
        Err(SendError::HeadTooLarge { id: i, size }) if i == id && size.fields == 3
    ));
    p.pump();
    let reset = |initiator| Outcome::Reset {
        code: ResetCode::INTERNAL_ERROR,
        initiator,
    };
    assert_eq!(
        outcomes(&p.server.events)[&id],
        vec![reset(Initiator::Local)]
    );
    assert_eq!(
        outcomes(&p.client.events)[&id],
        vec![reset(Initiator::Peer)]
    );
    assert!(!p
        .client
        .events
        .iter()
        .any(|e| matches!(e, StreamEvent::Trailers { .. })));
    assert!(p.client.error.is_none() && p.server.error.is_none());
    // Trailers that fit still end the stream normally.
    let id = p.client.s.open(get("/ok"), true, None, p.now).unwrap();
    p.pump();
    p.server
        .s
        .send_response(id, ResponseHead::new(StatusCode::OK), false)
        .unwrap();
    let mut fits = HeaderMap::new();
    fits.insert("x-a", HeaderValue::from_static("1"));
    p.server.s.send_trailers(id, fits).unwrap();
    p.pump();
    assert_eq!(outcomes(&p.client.events)[&id], vec![Outcome::Finished]);
}

/// spec/protocol.md §6.1, §10.5: a requester that drops the response body cancels (CANCEL,
/// held for a young stream, §10.8); a responder that drops the request body still sends
/// its whole response, then resets with NO_ERROR. The machine picks; the caller only says
/// the body is unwanted.
#[test]
fn discard_body_cancels_our_requests_and_stops_the_peers_after_the_response() {
    let mut p = Pair::default();
    // Our own request (client side): the response body is unwanted.
    let up = p
        .client
        .s
        .open(get("/download"), true, None, p.now)
        .unwrap();
    p.pump();
    p.server
        .s
        .send_response(up, ResponseHead::new(StatusCode::OK), false)
        .unwrap();
    p.server.s.send_data(up, pattern(up, 100), false).unwrap();
    p.pump();
    p.client.s.discard_body(up, p.now);
    let cancel = |initiator| Outcome::Reset {
        code: ResetCode::CANCEL,
        initiator,
    };
    // Closed for the application at once; the RESET is held while the stream is young.
    p.pump();
    assert_eq!(
        outcomes(&p.client.events)[&up],
        vec![cancel(Initiator::Local)]
    );
    assert!(!outcomes(&p.server.events).contains_key(&up));
    p.advance(Duration::from_millis(200));
    p.pump();
    assert_eq!(
        outcomes(&p.server.events)[&up],
        vec![cancel(Initiator::Peer)]
    );

    // The peer's request (server side): the request body is unwanted, the response is not.
    let down = p.client.s.open(get("/upload"), false, None, p.now).unwrap();
    p.client
        .s
        .send_data(down, pattern(down, 1000), false)
        .unwrap();
    p.pump();
    p.server.s.discard_body(down, p.now);
    // Nothing is reset before the response is out.
    assert_eq!(p.server.s.open_streams(), 1);
    p.server
        .s
        .send_response(down, ResponseHead::new(StatusCode::OK), false)
        .unwrap();
    p.server
        .s
        .send_data(down, Bytes::from_static(b"done"), true)
        .unwrap();
    p.pump();
    assert_eq!(body_of(&p.client.events, down), b"done");
    assert_eq!(outcomes(&p.client.events)[&down], vec![Outcome::Finished]);
    let no_error = Outcome::Reset {
        code: ResetCode::NO_ERROR,
        initiator: Initiator::Local,
    };
    assert_eq!(outcomes(&p.server.events)[&down], vec![no_error]);
    // Unknown streams, and bodies already complete, are left alone.
    p.server.s.discard_body(StreamId::new(999), p.now);
    let done = p.client.s.open(get("/done"), true, None, p.now).unwrap();
    p.pump();
    p.server.s.discard_body(done, p.now);
    p.server
        .s
        .send_response(done, ResponseHead::new(StatusCode::OK), true)
        .unwrap();
    p.pump();
    assert_eq!(outcomes(&p.client.events)[&done], vec![Outcome::Finished]);
    assert_eq!(
        (p.client.s.open_streams(), p.server.s.open_streams()),
        (0, 0)
    );
}

/// 1,000 concurrent streams, half opened by each side, random body sizes both ways; every
/// stream finishes exactly once on each side with the right bytes, and no state is left.
#[test]
fn a_thousand_concurrent_streams_both_ways() {
    let mut rng = Rng::from_env(0x7e7e_5eed);
    // Every body is queued at once: no connection or process limit in the way.
    let cfg = StreamsConfig {
        max_concurrent_streams: 1000,
        max_connection_send_buffer: usize::MAX,
        send_budget: SendBudget::new(usize::MAX),
        ..StreamsConfig::default()
    };
    let mut p = Pair::new(cfg.clone(), cfg);
    let mut sizes = Map::new();
    for i in 0..1000 {
        let (opener, len) = (
            if i % 2 == 0 {
                &mut p.client
            } else {
                &mut p.server
            },
            rng.below(40_000) as usize,
        );
        let id = opener.s.open(get("/x"), false, None, p.now).unwrap();
        sizes.insert(id, (len, rng.below(40_000) as usize));
        opener.s.send_data(id, pattern(id, len), true).unwrap();
    }
    // Answer each request as it arrives, then keep pumping until all is quiet.
    loop {
        let moved = p.pump();
        let mut answered = 0;
        for side in [&mut p.client, &mut p.server] {
            let new: Vec<StreamId> = side
                .events
                .iter()
                .filter_map(|e| match e {
                    StreamEvent::Request { id, .. } => Some(*id),
                    _ => None,
                })
                .collect();
            for id in new {
                if side
                    .s
                    .send_response(id, ResponseHead::new(StatusCode::OK), false)
                    .is_ok()
                {
                    let len = sizes[&id].1;
                    side.s.send_data(id, pattern(id, len), true).unwrap();
                    answered += 1;
                }
            }
        }
        if moved == 0 && answered == 0 {
            break;
        }
    }
    for (id, (req_len, res_len)) in &sizes {
        let (opener, responder) = if id.is_client_initiated() {
            (&p.client, &p.server)
        } else {
            (&p.server, &p.client)
        };
        assert_eq!(
            body_of(&responder.events, *id),
            pattern(*id, *req_len),
            "request body of {id}"
        );
        assert_eq!(
            body_of(&opener.events, *id),
            pattern(*id, *res_len),
            "response body of {id}"
        );
        assert_eq!(outcomes(&opener.events)[id], vec![Outcome::Finished]);
        assert_eq!(outcomes(&responder.events)[id], vec![Outcome::Finished]);
    }
    assert_eq!(
        (p.client.s.open_streams(), p.server.s.open_streams()),
        (0, 0)
    );
    assert!(p.client.error.is_none() && p.server.error.is_none());
}

/// A receiver that never consumes: the sender stops at the windows, never beyond.
#[test]
fn flow_control_bounds_what_a_slow_reader_buffers() {
    let cfg = StreamsConfig {
        initial_stream_window: 64 * 1024,
        initial_connection_window: 96 * 1024,
        ..Default::default()
    };
    let mut p = Pair::new(cfg.clone(), cfg.clone());
    p.server.auto_release = false;
    let ids: Vec<StreamId> = (0..4)
        .map(|_| p.client.s.open(get("/big"), false, None, p.now).unwrap())
        .collect();
    for &id in &ids {
        // Four bodies of 1 MiB each, far above both windows.
        p.client
            .s
            .send_data(id, pattern(id, 256 * 1024), false)
            .unwrap();
    }
    p.pump();
    let received: usize = ids
        .iter()
        .map(|&id| body_of(&p.server.events, id).len())
        .sum();
    assert_eq!(received, 96 * 1024, "exactly the connection window arrived");
    for &id in &ids {
        assert!(
            body_of(&p.server.events, id).len() <= 64 * 1024,
            "stream window respected"
        );
    }
    // Consuming everything lets the rest through.
    for &id in &ids {
        p.server.s.release_capacity(id, u32::MAX);
    }
    p.server.auto_release = true;
    p.pump();
    let received: usize = ids
        .iter()
        .map(|&id| body_of(&p.server.events, id).len())
        .sum();
    assert_eq!(received, 4 * 256 * 1024);
    assert!(p.server.error.is_none());
}

#[test]
fn data_is_interleaved_fairly() {
    let mut p = Pair::default();
    let a = p.client.s.open(get("/a"), false, None, p.now).unwrap();
    let b = p.client.s.open(get("/b"), false, None, p.now).unwrap();
    p.client
        .s
        .send_data(a, pattern(a, 64 * 1024), true)
        .unwrap();
    p.client
        .s
        .send_data(b, pattern(b, 64 * 1024), true)
        .unwrap();
    let mut order = vec![];
    while let Some(f) = p.client.s.poll_transmit() {
        if let Frame::Data(d) = f {
            order.push(d.stream_id);
        }
    }
    // Frames of 16 KiB, taking turns: a b a b ...
    assert_eq!(order, vec![a, b, a, b, a, b, a, b]);
}

/// spec/protocol.md §10.3 [10.3-5]: control frames (heads, RESET, GOAWAY) leave before
/// DATA that was queued earlier, so they never wait behind bulk data.
#[test]
fn control_frames_leave_before_queued_data() {
    let mut p = Pair::default();
    let a = p.client.s.open(get("/a"), false, None, p.now).unwrap();
    let c = p.client.s.open(get("/c"), false, None, p.now).unwrap();
    p.pump();
    // Old enough that its cancel is not held back (§10.8).
    p.advance(Duration::from_millis(500));
    p.client
        .s
        .send_data(a, pattern(a, 64 * 1024), true)
        .unwrap();
    assert!(matches!(p.client.s.poll_transmit(), Some(Frame::Data(_))));
    let b = p.client.s.open(get("/b"), false, None, p.now).unwrap();
    p.client.s.reset(c, ResetCode::CANCEL);
    p.client.s.go_away(ResetCode::NO_ERROR, "");
    let mut kinds = vec![];
    while let Some(f) = p.client.s.poll_transmit() {
        kinds.push(match f {
            Frame::Data(d) if d.stream_id == a => "data",
            Frame::Headers(h) if h.stream_id == b => "headers",
            Frame::Reset(r) if r.stream_id == c => "reset",
            Frame::GoAway(_) => "goaway",
            other => panic!("unexpected {other:?}"),
        });
    }
    assert_eq!(
        kinds,
        ["headers", "reset", "goaway", "data", "data", "data"],
        "three 16 KiB DATA frames remain after the control frames"
    );
}

/// spec/protocol.md §6.1 [6.1-1]: a RESET with a code the receiver does not know ends the
/// stream exactly as INTERNAL_ERROR does: the stream alone fails (the connection stays),
/// the request is not safe to retry, and nothing more is sent on it. The number itself
/// is kept for the report (vector `reset_unknown_code_kept`).
#[test]
fn an_unknown_reset_code_is_treated_as_internal_error() {
    for code in [ResetCode::INTERNAL_ERROR, ResetCode::from_u(0x99)] {
        let mut p = Pair::default();
        let id = p.client.s.open(get("/"), false, None, p.now).unwrap();
        p.pump();
        let reset = Frame::Reset(Reset {
            stream_id: id,
            code,
        });
        p.client.s.handle_frame(reset, p.now).unwrap();
        p.pump();
        assert!(p.client.error.is_none(), "{code:?}: the connection stays");
        assert_eq!(
            outcomes(&p.client.events)[&id],
            vec![Outcome::Reset {
                code,
                initiator: Initiator::Peer
            }]
        );
        assert!(!code.is_safe_to_retry());
        assert!(p
            .client
            .s
            .send_data(id, Bytes::from_static(b"x"), true)
            .is_err());
        assert_eq!(p.client.s.poll_transmit(), None);
        // Later streams work as before.
        let next = p.client.s.open(get("/"), true, None, p.now).unwrap();
        p.pump();
        assert!(p
            .server
            .events
            .iter()
            .any(|e| matches!(e, StreamEvent::Request { id, .. } if *id == next)));
    }
}

/// spec/protocol.md §3.2 [3.2-2]: the ids one side opens increase (by two, keeping their
/// parity) and, once the largest is used, that side opens no more streams.
#[test]
fn stream_ids_increase_and_none_is_opened_once_exhausted() {
    let mut p = Pair::default();
    for (peer, last) in [(&mut p.client, u32::MAX), (&mut p.server, u32::MAX - 1)] {
        let a = peer.s.open(get("/"), true, None, p.now).unwrap();
        let b = peer.s.open(get("/"), true, None, p.now).unwrap();
        assert_eq!(b.value(), a.value() + 2);
        // Skip ahead to the last id of this side.
        peer.s.next_local = Some(last);
        assert_eq!(
            peer.s.open(get("/"), true, None, p.now).unwrap().value(),
            last
        );
        assert!(matches!(
            peer.s.open(get("/"), true, None, p.now),
            Err(OpenError::Exhausted)
        ));
        assert!(matches!(peer.s.can_open(), Err(OpenError::Exhausted)));
    }
}

#[test]
fn cancel_in_every_state() {
    // Requester cancels before any answer.
    let mut p = Pair::default();
    let id = p.client.s.open(get("/slow"), false, None, p.now).unwrap();
    p.pump();
    p.client.s.reset(id, ResetCode::CANCEL);
    p.pump();
    let local = Outcome::Reset {
        code: ResetCode::CANCEL,
        initiator: Initiator::Local,
    };
    let peer = Outcome::Reset {
        code: ResetCode::CANCEL,
        initiator: Initiator::Peer,
    };
    assert_eq!(outcomes(&p.client.events)[&id], vec![local.clone()]);
    assert_eq!(outcomes(&p.server.events)[&id], vec![peer.clone()]);

    // Requester cancels after the response head, mid-body.
    let id = p.client.s.open(get("/stream"), true, None, p.now).unwrap();
    p.pump();
    p.server
        .s
        .send_response(id, ResponseHead::new(StatusCode::OK), false)
        .unwrap();
    p.server
        .s
        .send_data(id, Bytes::from_static(b"part"), false)
        .unwrap();
    p.pump();
    p.client.s.reset(id, ResetCode::CANCEL);
    p.pump();
    assert_eq!(outcomes(&p.client.events)[&id], vec![local.clone()]);
    assert_eq!(outcomes(&p.server.events)[&id], vec![peer.clone()]);
    // The responder's further sends fail cleanly.
    assert_eq!(
        p.server.s.send_data(id, Bytes::from_static(b"x"), true),
        Err(SendError::UnknownStream(id))
    );

    // Responder resets before answering (the handler failed).
    let id = p.client.s.open(get("/boom"), true, None, p.now).unwrap();
    p.pump();
    p.server.s.reset(id, ResetCode::INTERNAL_ERROR);
    p.pump();
    assert_eq!(
        outcomes(&p.client.events)[&id],
        vec![Outcome::Reset {
            code: ResetCode::INTERNAL_ERROR,
            initiator: Initiator::Peer
        }]
    );

    // Cancelling before the head was even sent: the RESET follows the HEADERS.
    let id = p.client.s.open(get("/never"), false, None, p.now).unwrap();
    p.client.s.reset(id, ResetCode::CANCEL);
    p.pump();
    assert_eq!(outcomes(&p.server.events)[&id], vec![peer]);

    // Resetting a finished stream does nothing.
    let id = p.client.s.open(get("/done"), true, None, p.now).unwrap();
    p.pump();
    p.server
        .s
        .send_response(id, ResponseHead::new(StatusCode::NO_CONTENT), true)
        .unwrap();
    p.pump();
    p.client.s.reset(id, ResetCode::CANCEL);
    assert!(p.client.s.poll_transmit().is_none());
    assert_eq!(outcomes(&p.client.events)[&id], vec![Outcome::Finished]);
    assert_eq!(
        (p.client.s.open_streams(), p.server.s.open_streams()),
        (0, 0)
    );
}

#[test]
fn streams_over_the_limit_are_refused_and_safe_to_retry() {
    let server_cfg = StreamsConfig {
        max_concurrent_streams: 2,
        ..Default::default()
    };
    let mut p = Pair::new(StreamsConfig::default(), server_cfg);
    // The client was told a higher limit than the server enforces (a peer that lies, or
    // settings not yet seen): the server refuses the excess.
    p.client.s.peer.max_concurrent_streams = 10;
    let ids: Vec<StreamId> = (0..3)
        .map(|_| p.client.s.open(get("/"), true, None, p.now).unwrap())
        .collect();
    p.pump();
    assert_eq!(requests(&p.server.events), ids[..2].to_vec());
    assert_eq!(outcomes(&p.client.events)[&ids[2]], vec![Outcome::Refused]);
    // The client side enforces the announced limit itself.
    let mut p = Pair::new(
        StreamsConfig::default(),
        StreamsConfig {
            max_concurrent_streams: 1,
            ..Default::default()
        },
    );
    let first = p.client.s.open(get("/"), true, None, p.now).unwrap();
    assert_eq!(
        p.client.s.open(get("/"), true, None, p.now),
        Err(OpenError::Blocked)
    );
    p.pump();
    p.server
        .s
        .send_response(first, ResponseHead::new(StatusCode::OK), true)
        .unwrap();
    p.pump();
    assert!(p.client.events.contains(&StreamEvent::CanOpen));
    assert!(p.client.s.open(get("/"), true, None, p.now).is_ok());
}

#[test]
fn goaway_refuses_later_streams_and_lets_earlier_ones_finish() {
    let mut p = Pair::default();
    let a = p.client.s.open(get("/a"), true, None, p.now).unwrap();
    p.pump();
    p.server.s.go_away(ResetCode::NO_ERROR, "restarting");
    // Opened before the GOAWAY arrived: in flight, above the last stream id.
    let b = p.client.s.open(get("/b"), true, None, p.now).unwrap();
    p.pump();
    assert_eq!(requests(&p.server.events), vec![a]);
    assert_eq!(outcomes(&p.client.events)[&b], vec![Outcome::Refused]);
    assert!(p
        .client
        .events
        .iter()
        .any(|e| matches!(e, StreamEvent::GoAway { last_stream_id, .. } if *last_stream_id == a)));
    assert_eq!(
        p.client.s.open(get("/c"), true, None, p.now),
        Err(OpenError::GoingAway)
    );
    assert!(!p.server.s.is_drained());
    p.server
        .s
        .send_response(a, ResponseHead::new(StatusCode::OK), true)
        .unwrap();
    p.pump();
    assert_eq!(outcomes(&p.client.events)[&a], vec![Outcome::Finished]);
    assert!(p.server.s.is_drained() && p.client.s.is_drained());
}

#[test]
fn connection_loss_gives_every_open_stream_one_outcome() {
    let mut rng = Rng::from_env(99);
    let mut p = Pair::default();
    let mut ids = vec![];
    for i in 0..50 {
        let id = p.client.s.open(get("/"), false, None, p.now).unwrap();
        if i % 3 != 0 {
            p.client
                .s
                .send_data(id, pattern(id, rng.below(50_000) as usize), i % 2 == 0)
                .unwrap();
        }
        ids.push(id);
    }
    p.pump();
    for &id in ids.iter().step_by(4) {
        let _ = p
            .server
            .s
            .send_response(id, ResponseHead::new(StatusCode::OK), false);
    }
    p.pump();
    p.client.s.handle_connection_lost();
    p.server.s.handle_connection_lost();
    assert_eq!(p.pump(), 0, "nothing is sent after the loss");
    let (co, so) = (outcomes(&p.client.events), outcomes(&p.server.events));
    for id in &ids {
        assert_eq!(
            co.get(id),
            Some(&vec![Outcome::ConnectionLost]),
            "client side of {id}"
        );
        assert_eq!(
            so.get(id),
            Some(&vec![Outcome::ConnectionLost]),
            "server side of {id}"
        );
    }
    assert_eq!(
        (p.client.s.open_streams(), p.server.s.open_streams()),
        (0, 0)
    );
    assert!(p.client.s.poll_transmit().is_none() && p.client.s.poll_timeout().is_none());
}

#[test]
fn deadlines_reset_the_stream_on_both_sides() {
    let mut p = Pair::default();
    let id = p
        .client
        .s
        .open(get("/slow"), true, Some(Duration::from_millis(1500)), p.now)
        .unwrap();
    p.pump();
    let Some(StreamEvent::Request { head, .. }) = p.server.events.first() else {
        panic!()
    };
    assert_eq!(head.timeout_ms, Some(1500));
    assert!(!head.headers.contains_key(TIMEOUT_HEADER));
    assert_eq!(
        p.client.s.poll_timeout(),
        Some(p.now + Duration::from_millis(1500))
    );
    p.advance(Duration::from_millis(1499));
    p.pump();
    assert!(outcomes(&p.client.events).is_empty());
    p.advance(Duration::from_millis(1));
    p.pump();
    assert_eq!(outcomes(&p.client.events)[&id], vec![Outcome::TimedOut]);
    // The server's own timer fired at the same moment; either way it ends once, timed out.
    assert_eq!(outcomes(&p.server.events)[&id], vec![Outcome::TimedOut]);
    // When only the responder's copy fires (the requester's runs late), the requester
    // still sees its deadline pass, not an arbitrary reset.
    let id = p
        .client
        .s
        .open(get("/slow"), true, Some(Duration::from_millis(100)), p.now)
        .unwrap();
    p.pump();
    p.server
        .s
        .handle_timeout(p.now + Duration::from_millis(100));
    p.pump();
    assert_eq!(outcomes(&p.client.events)[&id], vec![Outcome::TimedOut]);
    assert_eq!(outcomes(&p.server.events)[&id], vec![Outcome::TimedOut]);
    // A spurious timeout later is harmless.
    p.advance(Duration::from_secs(5));
    assert!(p.client.s.poll_event().is_none());
}

#[test]
fn rapid_reset_closes_the_connection() {
    let mut p = Pair::default();
    for _ in 0..300 {
        if let Ok(id) = p.client.s.open(get("/"), true, None, p.now) {
            p.client.s.reset(id, ResetCode::CANCEL);
        }
        p.pump();
        if p.server.error.is_some() {
            break;
        }
    }
    assert_eq!(
        p.server.error.as_ref().map(|e| e.close_code()),
        Some(CloseCode::ENHANCE_YOUR_CALM)
    );
    // Below the rate it is fine: the window restarts.
    let mut p = Pair::default();
    for i in 0..300 {
        let id = p.client.s.open(get("/"), true, None, p.now).unwrap();
        p.client.s.reset(id, ResetCode::CANCEL);
        p.pump();
        if i % 100 == 99 {
            p.advance(Duration::from_secs(11));
        }
    }
    assert!(p.server.error.is_none());
}

#[test]
fn content_length_must_match_the_body() {
    let mut p = Pair::default();
    let mut head = get("/");
    head.headers
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(3u32));
    let id = p.client.s.open(head, false, None, p.now).unwrap();
    p.client
        .s
        .send_data(id, Bytes::from_static(b"four"), true)
        .unwrap();
    p.pump();
    let want = Outcome::Reset {
        code: ResetCode::PROTOCOL_ERROR,
        initiator: Initiator::Local,
    };
    assert_eq!(outcomes(&p.server.events)[&id], vec![want]);
}

#[test]
fn body_size_limit() {
    let mut p = Pair::new(
        StreamsConfig::default(),
        StreamsConfig {
            max_body_size: Some(1000),
            ..Default::default()
        },
    );
    let id = p.client.s.open(get("/"), false, None, p.now).unwrap();
    p.client.s.send_data(id, pattern(id, 1001), true).unwrap();
    p.pump();
    assert_eq!(
        outcomes(&p.client.events)[&id],
        vec![Outcome::Reset {
            code: ResetCode::BODY_TOO_LARGE,
            initiator: Initiator::Peer
        }]
    );
}

#[test]
fn send_buffer_pushes_back_then_reports_writable() {
    let mut p = Pair::new(
        StreamsConfig {
            max_send_buffer: 64 * 1024,
            ..Default::default()
        },
        StreamsConfig::default(),
    );
    let id = p.client.s.open(get("/"), false, None, p.now).unwrap();
    p.client
        .s
        .send_data(id, pattern(id, 60 * 1024), false)
        .unwrap();
    let Err(SendError::Blocked { data, .. }) =
        p.client.s.send_data(id, pattern(id, 8 * 1024), false)
    else {
        panic!("expected Blocked")
    };
    assert_eq!(data.len(), 8 * 1024, "the refused data is handed back");
    p.pump();
    assert!(p.client.events.contains(&StreamEvent::Writable { id }));
    p.client.s.send_data(id, data, true).unwrap();
}

#[test]
fn peer_violations_close_the_connection() {
    let mut s = Streams::new(
        Side::Server,
        StreamsConfig::default(),
        PeerLimits::default(),
    )
    .unwrap();
    let now = Instant::now();
    let data = |id: u32, len: usize| {
        Frame::Data(Data {
            stream_id: StreamId::new(id),
            end_stream: false,
            payload: Bytes::from(vec![0; len]),
        })
    };
    // DATA on a stream that was never opened.
    assert_eq!(
        s.handle_frame(data(1, 1), now).unwrap_err().close_code(),
        CloseCode::PROTOCOL_ERROR
    );
    // A stream the server itself would own.
    let mut s = Streams::new(
        Side::Server,
        StreamsConfig::default(),
        PeerLimits::default(),
    )
    .unwrap();
    let h = |id: u32| {
        Frame::Headers(Headers {
            stream_id: StreamId::new(id),
            end_stream: false,
            head: Head::Request(get("/")),
        })
    };
    assert_eq!(
        s.handle_frame(h(2), now).unwrap_err().close_code(),
        CloseCode::PROTOCOL_ERROR
    );
    // Beyond the connection window.
    let cfg = StreamsConfig {
        initial_connection_window: 1000,
        ..Default::default()
    };
    let mut s = Streams::new(Side::Server, cfg, PeerLimits::default()).unwrap();
    s.handle_frame(h(1), now).unwrap();
    assert_eq!(
        s.handle_frame(data(1, 1001), now).unwrap_err().close_code(),
        CloseCode::FLOW_CONTROL_ERROR
    );
    // Beyond a stream window: that stream alone is reset.
    let cfg = explicit(StreamsConfig {
        initial_stream_window: 10,
        ..Default::default()
    });
    let mut s = Streams::new(Side::Server, cfg, PeerLimits::default()).unwrap();
    s.handle_frame(h(1), now).unwrap();
    s.handle_frame(data(1, 11), now).unwrap();
    assert_eq!(
        s.poll_transmit(),
        Some(Frame::Reset(Reset {
            stream_id: StreamId::new(1),
            code: ResetCode::FLOW_CONTROL_ERROR
        }))
    );
    // A stream id that goes backwards gets STREAM_CLOSED.
    s.handle_frame(h(5), now).unwrap();
    s.handle_frame(h(3), now).unwrap();
    assert_eq!(
        s.poll_transmit(),
        Some(Frame::Reset(Reset {
            stream_id: StreamId::new(3),
            code: ResetCode::STREAM_CLOSED
        }))
    );
    // Connection window overflow through WINDOW_UPDATE.
    let wu = Frame::WindowUpdate(WindowUpdate {
        stream_id: StreamId::ZERO,
        increment: MAX_INCREMENT,
    });
    assert_eq!(
        s.handle_frame(wu, now).unwrap_err().close_code(),
        CloseCode::FLOW_CONTROL_ERROR
    );
}

#[test]
fn replies_to_a_peer_that_does_not_read_are_bounded() {
    let cfg = StreamsConfig {
        max_queued_replies: 16,
        max_churn: 1000,
        ..Default::default()
    };
    let mut s = Streams::new(Side::Server, cfg, PeerLimits::default()).unwrap();
    let now = Instant::now();
    let mut result = Ok(());
    for id in (1..200).step_by(2).rev() {
        // Every HEADERS on an already-used id earns a RESET that is never written.
        let h = Frame::Headers(Headers {
            stream_id: StreamId::new(id),
            end_stream: true,
            head: Head::Request(get("/")),
        });
        result = s.handle_frame(h, now);
        if result.is_err() {
            break;
        }
    }
    assert_eq!(
        result.unwrap_err().close_code(),
        CloseCode::ENHANCE_YOUR_CALM
    );
}

#[test]
fn informational_responses_precede_the_final_one() {
    let mut p = Pair::default();
    let id = p.client.s.open(get("/"), false, None, p.now).unwrap();
    p.pump();
    p.server
        .s
        .send_response(id, ResponseHead::new(StatusCode::CONTINUE), false)
        .unwrap();
    p.server
        .s
        .send_response(id, ResponseHead::new(StatusCode::OK), true)
        .unwrap();
    p.client.s.send_data(id, Bytes::new(), true).unwrap();
    p.pump();
    let statuses: Vec<u16> = p
        .client
        .events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Response { head, .. } => Some(head.status.as_u16()),
            _ => None,
        })
        .collect();
    assert_eq!(statuses, vec![100, 200]);
    assert_eq!(outcomes(&p.client.events)[&id], vec![Outcome::Finished]);
}

/// spec/protocol.md §4.2 [4.2-3] and §10.2 [10.2-1]: a 1xx head never carries END_STREAM
/// and 101 is never sent. The sender refuses both; a receiver that gets one resets the
/// stream with PROTOCOL_ERROR (the stream fails, the connection stays).
#[test]
fn informational_heads_never_end_the_stream_and_101_is_never_sent() {
    let mut p = Pair::default();
    let id = p.client.s.open(get("/"), true, None, p.now).unwrap();
    p.pump();
    for (status, end_stream) in [
        (StatusCode::SWITCHING_PROTOCOLS, false),
        (StatusCode::CONTINUE, true),
    ] {
        assert!(matches!(
            p.server
                .s
                .send_response(id, ResponseHead::new(status), end_stream),
            Err(SendError::InvalidState(_))
        ));
    }
    assert_eq!(p.server.s.poll_transmit(), None, "nothing went out");

    for (status, end_stream) in [
        (StatusCode::SWITCHING_PROTOCOLS, false),
        (StatusCode::CONTINUE, true),
    ] {
        let mut p = Pair::default();
        let id = p.client.s.open(get("/"), true, None, p.now).unwrap();
        p.pump();
        let head = Frame::Headers(Headers {
            stream_id: id,
            end_stream,
            head: Head::Response(ResponseHead::new(status)),
        });
        p.client.s.handle_frame(head, p.now).unwrap();
        assert_eq!(
            p.client.s.poll_transmit(),
            Some(Frame::Reset(Reset {
                stream_id: id,
                code: ResetCode::PROTOCOL_ERROR
            })),
            "{status} with END_STREAM={end_stream}"
        );
    }
}

#[test]
fn trailers_end_the_body() {
    let mut p = Pair::default();
    let id = p.client.s.open(get("/"), true, None, p.now).unwrap();
    p.pump();
    p.server
        .s
        .send_response(id, ResponseHead::new(StatusCode::OK), false)
        .unwrap();
    p.server
        .s
        .send_data(id, Bytes::from_static(b"body"), false)
        .unwrap();
    let mut t = HeaderMap::new();
    t.insert("grpc-status", HeaderValue::from_static("0"));
    p.server.s.send_trailers(id, t.clone()).unwrap();
    p.pump();
    assert!(p
        .client
        .events
        .contains(&StreamEvent::Trailers { id, trailers: t }));
    assert_eq!(outcomes(&p.client.events)[&id], vec![Outcome::Finished]);
}

#[test]
fn deadlines_of_finished_streams_do_not_pile_up() {
    let mut p = Pair::default();
    for _ in 0..1000 {
        let id = p
            .client
            .s
            .open(get("/"), true, Some(Duration::from_secs(30)), p.now)
            .unwrap();
        p.pump();
        p.server
            .s
            .send_response(id, ResponseHead::new(StatusCode::OK), true)
            .unwrap();
        p.pump();
    }
    assert_eq!(p.client.s.open_streams(), 0);
    assert!(
        p.client.s.timers.len() <= 130,
        "{} stale timers kept",
        p.client.s.timers.len()
    );
    assert!(
        p.server.s.timers.len() <= 130,
        "{} stale timers kept",
        p.server.s.timers.len()
    );
}

/// The worked example of spec/protocol.md §10.3, step by step.
#[test]
fn spec_flow_control_worked_example() {
    let cfg = StreamsConfig {
        initial_stream_window: 65_536,
        initial_connection_window: 98_304,
        ..Default::default()
    };
    let mut p = Pair::new(cfg.clone(), cfg);
    p.server.auto_release = false;
    let ids: Vec<StreamId> = (0..4)
        .map(|_| p.client.s.open(get("/"), false, None, p.now).unwrap())
        .collect();
    for &id in &ids {
        p.client
            .s
            .send_data(id, pattern(id, 262_144), false)
            .unwrap();
    }
    p.pump();
    let got: Vec<usize> = ids
        .iter()
        .map(|&id| body_of(&p.server.events, id).len())
        .collect();
    assert_eq!(got, vec![32_768, 32_768, 16_384, 16_384]);
    p.server.s.release_capacity(ids[0], 32_768);
    let wu = |id: StreamId, increment| {
        Frame::WindowUpdate(WindowUpdate {
            stream_id: id,
            increment,
        })
    };
    assert_eq!(p.server.s.poll_transmit(), Some(wu(ids[0], 32_768)));
    assert_eq!(
        p.server.s.poll_transmit(),
        None,
        "the connection update is not due yet"
    );
    p.server.s.release_capacity(ids[2], 16_384);
    assert_eq!(p.server.s.poll_transmit(), Some(wu(StreamId::ZERO, 49_152)));
}

/// A request head on a fresh peer stream, optionally with a body.
fn request_frame(id: u32, headers: &[(&'static str, &'static str)], end_stream: bool) -> Frame {
    let mut head = get("/slow");
    for (n, v) in headers {
        if *n == TIMEOUT_HEADER {
            // Where decoding puts it (§10.6).
            head.timeout_ms = Some(v.parse().unwrap());
        } else {
            head.headers.insert(*n, HeaderValue::from_static(v));
        }
    }
    Frame::Headers(Headers {
        stream_id: StreamId::new(id),
        end_stream,
        head: Head::Request(head),
    })
}

/// spec/protocol.md §10.8 rule 2 (MadeYouReset, CVE-2025-8671 in HTTP/2): a peer that opens
/// requests and then makes us reset them (WINDOW_UPDATE(stream, 0), DATA beyond
/// content-length) is closed with 4007 after at most 200 such requests per window, however
/// long it lets them live first. Before, these resets were not counted at all.
#[test]
fn resets_caused_by_the_peer_are_bounded() {
    // (pattern, streams opened before the errors, time they live first)
    for (pattern, batch, wait) in [
        ("zero WINDOW_UPDATE", 1, Duration::ZERO),
        ("DATA beyond content-length", 1, Duration::ZERO),
        ("zero WINDOW_UPDATE after 1 s", 128, Duration::from_secs(1)),
    ] {
        let mut s = Streams::new(
            Side::Server,
            StreamsConfig::default(),
            PeerLimits::default(),
        )
        .unwrap();
        let t0 = Instant::now();
        let mut now = t0;
        let mut started = 0;
        let mut result = Ok(());
        let mut next = 1;
        'attack: for _ in 0..10_000 {
            let ids: Vec<u32> = (0..batch).map(|i| next + 2 * i).collect();
            next += 2 * batch;
            for &id in &ids {
                let h = request_frame(id, &[("content-length", "1")], false);
                s.handle_frame(h, now).expect("below the concurrency limit");
            }
            while let Some(e) = s.poll_event() {
                if matches!(e, StreamEvent::Request { .. }) {
                    started += 1; // the work a handler would start
                }
            }
            now += wait;
            for id in ids {
                let id = StreamId::new(id);
                result = if pattern.starts_with("zero") {
                    // What the connection does with the decode error of WINDOW_UPDATE(id, 0).
                    s.handle_stream_error(
                        id,
                        FrameType::WindowUpdate,
                        ResetCode::PROTOCOL_ERROR,
                        now,
                    )
                } else {
                    let payload = Bytes::from_static(b"xy");
                    s.handle_frame(
                        Frame::Data(Data {
                            stream_id: id,
                            end_stream: false,
                            payload,
                        }),
                        now,
                    )
                };
                while s.poll_transmit().is_some() {}
                while s.poll_event().is_some() {}
                if result.is_err() {
                    break 'attack;
                }
            }
        }
        assert_eq!(
            result.map_err(|e| e.close_code()),
            Err(CloseCode::ENHANCE_YOUR_CALM),
            "{pattern}"
        );
        assert!(started <= 256, "{pattern}: {started} requests started");
        assert!(
            now - t0 <= Duration::from_secs(2),
            "{pattern}: closed after {:?}",
            now - t0
        );
    }
}

/// spec/protocol.md §10.8 rule 3: classic rapid reset, and its variant with a deadline
/// shorter than the minimum lifetime, are closed with 4007 quickly.
#[test]
fn streams_thrown_away_young_are_churn() {
    // A deadline of 50 ms that passes: each stream lives 50 ms.
    let mut s = Streams::new(
        Side::Server,
        StreamsConfig::default(),
        PeerLimits::default(),
    )
    .unwrap();
    let mut now = Instant::now();
    let mut result = Ok(());
    let mut id = 1;
    for _ in 0..3 {
        for _ in 0..100 {
            result = s.handle_frame(request_frame(id, &[("tether-timeout", "50")], true), now);
            id += 2;
        }
        now += Duration::from_millis(50);
        s.handle_timeout(now);
        while s.poll_transmit().is_some() {}
        while s.poll_event().is_some() {}
    }
    assert!(result.is_ok(), "the frames before the limit are taken");
    result = s.handle_frame(request_frame(id, &[], true), now);
    assert_eq!(
        result.map_err(|e| e.close_code()),
        Err(CloseCode::ENHANCE_YOUR_CALM)
    );
}

/// spec/protocol.md §10.8: cancelling one's own requests at a rate the concurrency limit
/// bounds (none younger than the minimum lifetime) never closes the connection, whether the
/// requester sends CANCEL or the deadline passes; before, the 201st reset in 10 s closed it.
#[test]
fn cancellations_at_the_concurrency_limit_are_never_churn() {
    let mut p = Pair::default();
    let min = StreamsConfig::default().churn_min_lifetime;
    let mut ended = 0;
    for round in 0..40 {
        let deadline = (round % 2 == 1).then_some(min);
        let ids: Vec<StreamId> = (0..128)
            .map(|_| {
                p.client
                    .s
                    .open(get("/slow"), true, deadline, p.now)
                    .unwrap()
            })
            .collect();
        p.pump();
        assert_eq!(p.client.s.can_open(), Err(OpenError::Blocked));
        p.advance(min);
        if deadline.is_none() {
            for id in ids {
                p.client.s.reset(id, ResetCode::CANCEL);
            }
        }
        p.pump();
        ended += 128;
        assert!(
            p.server.error.is_none(),
            "closed after {ended} cancellations"
        );
        assert_eq!(p.server.s.open_streams(), 0);
    }
    // 5,120 streams thrown away in 4 s, at 128 concurrent streams: no churn.
    assert!(p.client.error.is_none() && p.server.error.is_none());

    // The responder's own resets of our requests are never churn for us.
    let mut p = Pair::default();
    for _ in 0..1000 {
        let id = p.client.s.open(get("/"), true, None, p.now).unwrap();
        p.pump();
        p.server.s.reset(id, ResetCode::INTERNAL_ERROR);
        p.pump();
    }
    assert!(p.client.error.is_none());
}

/// spec/protocol.md §10.8: a requester that cancels its streams at once (open, cancel, in a
/// loop) through `cancel` holds each RESET, and the slot, until the stream is twice the
/// minimum lifetime old: the peer sees no rapid reset and never closes, and the loop runs
/// at the rate the concurrency limit allows (128 streams per 200 ms).
#[test]
fn a_requester_cancelling_at_once_is_paced_not_closed() {
    let mut p = Pair::default();
    let t0 = p.now;
    let step = Duration::from_millis(10);
    let mut cancelled = 0;
    let mut outcomes = 0;
    while p.now < t0 + Duration::from_secs(2) {
        while let Ok(id) = p.client.s.open(get("/"), true, None, p.now) {
            p.client.s.cancel(id, ResetCode::CANCEL, p.now);
            cancelled += 1;
        }
        p.pump();
        p.advance(step);
        p.pump();
        outcomes += p
            .client
            .events
            .drain(..)
            .filter(|e| matches!(e, StreamEvent::Closed { .. }))
            .count();
    }
    assert!(p.server.error.is_none(), "{:?}", p.server.error);
    // The application heard of each cancel at once, exactly once.
    assert_eq!(outcomes, cancelled);
    // 10 rounds of 128 in 2 s (the first at once, then one every 200 ms).
    assert!(
        cancelled <= 11 * 128,
        "{cancelled} streams cancelled in 2 s"
    );
    assert!(cancelled >= 9 * 128, "{cancelled} streams cancelled in 2 s");
    // Connection loss with cancels still held: no second outcome, no slot leaked.
    p.client.s.handle_connection_lost();
    assert!(std::iter::from_fn(|| p.client.s.poll_event())
        .all(|e| !matches!(e, StreamEvent::Closed { .. })));
    assert_eq!(p.client.s.local_open, 0);
}

#[path = "tests_flow.rs"]
mod flow;

#[path = "tests_contract.rs"]
mod contract;

#[path = "tests_growth.rs"]
mod growth;
