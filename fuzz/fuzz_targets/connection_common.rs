//! Shared by the connection fuzz targets (`connection_server`, `connection_client`) and the
//! workspace test `proto/tests/fuzz_corpus.rs`, which replays their committed corpora:
//! operations that a peer, the clock and the embedder can apply to one `Connection`, with
//! structured frames so the fuzzer gets past the handshake, and the invariants checked
//! after each operation.

// Each target uses one of `server` and `client`.
#![allow(dead_code)]

use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tether_proto::connection::{
    Admission, Carrier, CloseFrame, Config, Connection, Event, State, WsMessage,
};
use tether_proto::{CloseCode, Frame, Hello, Ping, Pong, Resume, ResumeToken, Settings, Welcome};

/// The `connection_server` target's input: short timers or the defaults, then the operations.
pub type ServerInput = (bool, Vec<Op>);

/// The `connection_client` target's input: frame carrier or WebSocket control frames, a
/// resumption to offer, then the operations.
pub type ClientInput = (bool, Option<[u8; 16]>, Vec<Op>);

/// Up to 256 operations into one server `Connection`.
pub fn server(input: ServerInput) {
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
}

/// Up to 256 operations into one client `Connection` (optionally resuming).
pub fn client(input: ClientInput) {
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
}

#[derive(Arbitrary, Debug)]
pub enum Op {
    /// Raw bytes as a binary message.
    Binary(Vec<u8>),
    /// A well-formed HELLO.
    Hello {
        versions: Vec<u16>,
        resume: Option<([u8; 16], [u8; 16])>,
        interval: u16,
        json: bool,
    },
    /// A well-formed WELCOME.
    Welcome {
        version: u16,
        id: [u8; 16],
        resumed: bool,
        interval: u16,
        timeout: u16,
        window: u16,
    },
    Ack,
    PingFrame(Vec<u8>),
    /// A PONG frame echoing the machine's last probe (or these bytes).
    PongFrame(Option<Vec<u8>>),
    Text(Vec<u8>),
    WsPing(Vec<u8>),
    /// A WebSocket pong echoing the machine's last probe (or these bytes).
    WsPong(Option<Vec<u8>>),
    Close(Option<u16>),
    /// Advance the clock by this many milliseconds and fire timers.
    Advance(u16),
    /// Jump to the machine's next deadline.
    Deadline,
    /// Embedder: accept (server).
    Accept([u8; 32]),
    /// Embedder: reject / close with this code.
    LocalClose(u16),
    /// Embedder: send a stream frame.
    SendData(u32, Vec<u8>),
    TransportLost,
}

fn encode(frame: &Frame) -> WsMessage {
    let mut buf = BytesMut::new();
    frame.encode(&mut buf);
    WsMessage::Binary(buf.freeze())
}

fn cut(v: Vec<u8>) -> Bytes {
    let mut v = v;
    v.truncate(125);
    Bytes::from(v)
}

pub struct Harness {
    pub conn: Connection,
    pub now: Instant,
    last_probe: Bytes,
    terminal: usize,
    /// Streams open after the previous input: each may end (one event) on the next one.
    open_streams: usize,
}

impl Harness {
    pub fn new(conn: Connection, now: Instant) -> Self {
        let mut h = Harness {
            conn,
            now,
            last_probe: Bytes::new(),
            terminal: 0,
            open_streams: 0,
        };
        h.drain();
        h
    }

    pub fn apply(&mut self, op: Op) {
        let now = self.now;
        let msg = match op {
            Op::Binary(b) => Some(WsMessage::Binary(Bytes::from(b))),
            Op::Hello {
                mut versions,
                resume,
                interval,
                json,
            } => {
                versions.truncate(16);
                if versions.is_empty() {
                    versions.push(1);
                }
                Some(encode(&Frame::Hello(Hello {
                    versions,
                    resume: resume.map(|(id, token)| Resume {
                        connection_id: uuid::Uuid::from_bytes(id),
                        token: ResumeToken::from_bytes(token),
                    }),
                    settings: Settings {
                        heartbeat_interval_ms: Some(interval.into()),
                        ..Settings::default()
                    },
                    metadata: Bytes::from_static(if json { b"{\"k\":[1,2]}" } else { b"" }),
                })))
            }
            Op::Welcome {
                version,
                id,
                resumed,
                interval,
                timeout,
                window,
            } => Some(encode(&Frame::Welcome(Welcome {
                version,
                connection_id: uuid::Uuid::from_bytes(id),
                resume_token: ResumeToken::from_bytes(id),
                resumed,
                settings: Settings {
                    heartbeat_interval_ms: Some(interval.into()),
                    heartbeat_timeout_ms: Some(u32::from(timeout).max(1)),
                    resume_window_ms: Some(window.into()),
                    ..Settings::default()
                },
            }))),
            Op::Ack => Some(encode(&Frame::Ack)),
            Op::PingFrame(p) => Some(encode(&Frame::Ping(Ping(cut(p))))),
            Op::PongFrame(p) => Some(encode(&Frame::Pong(Pong(
                p.map_or(self.last_probe.clone(), cut),
            )))),
            Op::Text(t) => Some(WsMessage::Text(Bytes::from(t))),
            Op::WsPing(p) => Some(WsMessage::Ping(cut(p))),
            Op::WsPong(p) => Some(WsMessage::Pong(p.map_or(self.last_probe.clone(), cut))),
            Op::Close(code) => Some(WsMessage::Close(
                code.map(|c| CloseFrame::new(CloseCode::from_u(c), "bye")),
            )),
            Op::Advance(ms) => {
                self.now += Duration::from_millis(ms.into());
                self.conn.handle_timeout(self.now);
                None
            }
            Op::Deadline => {
                if let Some(t) = self.conn.poll_timeout() {
                    assert!(!self.conn.is_closed(), "a closed connection has no timers");
                    self.now = self.now.max(t);
                    self.conn.handle_timeout(self.now);
                }
                None
            }
            Op::Accept(bytes) => {
                let mut i = 0;
                let mut rng = |buf: &mut [u8]| {
                    for b in buf {
                        *b = bytes[i % 32];
                        i += 1;
                    }
                };
                let deciding = self.conn.state() == State::AwaitingDecision;
                let ok = self
                    .conn
                    .accept(
                        Admission::fresh(&mut rng).expect("a closure source cannot fail"),
                        now,
                    )
                    .is_ok();
                assert_eq!(ok, deciding);
                assert!(!ok || self.conn.state() == State::AwaitingAck);
                None
            }
            Op::LocalClose(code) => {
                self.conn.close(CloseCode::from_u(code), "local", now);
                assert!(self.conn.is_closed());
                None
            }
            Op::SendData(stream, payload) => {
                // Through the stream layer: open a request (or answer/continue one).
                let established = self.conn.is_established();
                let head = tether_proto::RequestHead::new(
                    http::Method::POST,
                    http::Uri::from_static("/fuzz"),
                );
                let id = match self.conn.open(head, false, None, now) {
                    Ok(id) => id,
                    Err(tether_proto::streams::OpenError::NotEstablished) => {
                        assert!(!established, "an established connection has streams");
                        tether_proto::StreamId::new(stream)
                    }
                    Err(_) => tether_proto::StreamId::new(stream),
                };
                // A closed or unknown stream is an error value, never a panic.
                if let Ok(mut s) = self.conn.stream(id) {
                    let _ = s.send_data(Bytes::from(payload), stream & 1 == 0);
                }
                None
            }
            Op::TransportLost => {
                self.conn.handle_transport_lost(now);
                assert!(self.conn.is_closed());
                None
            }
        };
        if let Some(msg) = msg {
            self.conn.handle_message(msg, now);
        }
        self.drain();
    }

    /// Drains outputs (bounded: one input never queues more than a few, plus one event
    /// per stream that was open) and checks the invariants.
    fn drain(&mut self) {
        let bound = 16 + self.open_streams;
        for _ in 0..16 {
            match self.conn.poll_transmit().map(WsMessage::from) {
                Some(WsMessage::Ping(p)) => self.last_probe = p,
                Some(WsMessage::Binary(b)) if b.first() == Some(&0x09) => {
                    self.last_probe = b.slice(8..)
                }
                Some(_) => {}
                None => break,
            }
        }
        assert!(
            self.conn.poll_transmit().is_none(),
            "one input queued more than 16 messages"
        );
        for _ in 0..bound {
            match self.conn.poll_event() {
                Some(Event::Closed { .. } | Event::Failure { .. }) => self.terminal += 1,
                Some(_) => assert_eq!(self.terminal, 0, "an event after the terminal one"),
                None => break,
            }
        }
        assert!(
            self.conn.poll_event().is_none(),
            "one input queued more than {bound} events"
        );
        self.open_streams = self.conn.streams().map_or(0, |s| s.open_streams());
        assert!(self.terminal <= 1, "two terminal events");
        assert_eq!(self.terminal == 1, self.conn.is_closed());
        if self.conn.is_closed() {
            assert_eq!(self.conn.poll_timeout(), None);
        } else if self.conn.state() != State::Established || self.conn.heartbeat().is_some() {
            // Only an established connection without heartbeat may wait forever.
            assert!(
                self.conn.poll_timeout().is_some(),
                "a live connection has a deadline"
            );
        }
    }
}
