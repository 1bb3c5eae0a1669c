//! The connection lifecycle: handshake, heartbeat and session resume
//! (spec/protocol.md §7, §8, §9).
//!
//! A [`Connection`] is one side of one WebSocket: a sans-IO state machine that consumes
//! [`WsMessage`]s and time, and produces `WsMessage`s, [`Event`]s and deadlines. It never
//! reads a clock or a socket, and draws no randomness of its own.
//!
//! # The contract
//!
//! This is the one description of how an embedder drives tether-proto; the crate docs, the
//! [`streams`](crate::streams) docs, the README and the runtimes link here.
//!
//! The API splits as in quinn-proto:
//!
//! - getters: [`state`](Connection::state), [`connection_id`](Connection::connection_id),
//!   [`rtt`](Connection::rtt), [`streams`](Connection::streams) (read-only),
//!   [`can_open`](Connection::can_open), …;
//! - inputs, each with the time it happened: [`handle_message`](Connection::handle_message),
//!   [`handle_timeout`](Connection::handle_timeout),
//!   [`handle_transport_lost`](Connection::handle_transport_lost),
//!   [`handle_websocket_error`](Connection::handle_websocket_error);
//! - mutators: [`admit`](Connection::admit), [`accept`](Connection::accept),
//!   [`reject`](Connection::reject), [`close`](Connection::close),
//!   [`open`](Connection::open) (a request), [`stream`](Connection::stream) (a
//!   [`StreamMut`] view to answer, send on, reset, cancel or discard one stream; a stream
//!   that ended is a [`StreamError`], not a panic), and the two switches below;
//! - outputs: [`poll_event`](Connection::poll_event),
//!   [`poll_transmit`](Connection::poll_transmit),
//!   [`has_events`](Connection::has_events), [`poll_timeout`](Connection::poll_timeout).
//!
//! **The drain order.** After every input or mutator:
//!
//! 1. drain `poll_event` until `None`, handling each event (which may call mutators);
//! 2. drain `poll_transmit` until `None`, writing each message to the WebSocket, then
//!    flush once;
//! 3. if [`has_events`](Connection::has_events) is true (writing let a stream's send queue
//!    drain, so it became [`Writable`](crate::streams::StreamEvent::Writable)), go back
//!    to 1;
//! 4. arm one timer at [`poll_timeout`](Connection::poll_timeout) and wait for input or
//!    that deadline; when it passes, call `handle_timeout(now)` (an early or repeated call
//!    does nothing).
//!
//! `now` comes from a monotonic clock the embedder reads; the machine reads none. A machine
//! that is [closed](Connection::is_closed) still has its last messages (the close frame)
//! and events to drain.
//!
//! **What the machine does by itself.** Duties toward the stream layer are defaults of the
//! machine, not rules for the embedder:
//!
//! - *Flow control*: every [`StreamEvent::Data`](crate::streams::StreamEvent::Data) is given
//!   back to the peer's windows as it is reported. An embedder that buffers bodies for a
//!   slow consumer calls [`set_manual_release(true)`](Connection::set_manual_release) and
//!   then [`StreamMut::release_capacity`] as the consumer reads, so the peer's window is
//!   its backpressure.
//! - *Requests nobody serves*: unless the embedder calls
//!   [`set_serve_requests(true)`](Connection::set_serve_requests) (or sets
//!   [`StreamsConfig::serve_requests`](crate::streams::StreamsConfig::serve_requests)), the
//!   machine answers every request the peer opens with `501 Not Implemented` and reports
//!   nothing about it: an end that only sends requests has nothing to do.
//! - *A body no longer wanted*: [`StreamMut::discard_body`]. The machine picks the reaction
//!   (CANCEL for our own request, NO_ERROR once our response is out for the peer's,
//!   spec/protocol.md §6.1), releases what arrived and reports no more of that body.
//! - *Limits and protocol errors*: an oversized response head or trailers, a deadline, a
//!   stalled stream, a misbehaving peer: the machine resets or closes with the code the spec
//!   gives, and the embedder learns of it through events.
//! - *Graceful close* ([`close_gracefully`](Connection::close_gracefully)): GOAWAY,
//!   letting open streams finish and closing when none is left or the drain time is up
//!   (spec/protocol.md §10.7) is the machine's too; the embedder keeps
//!   following the drain order until the machine is closed.
//!
//! What is left to the embedder: moving messages and time, authenticating a HELLO and
//! admitting it through a [`SessionStore`] (server), keeping the resume ticket (client),
//! answering the requests it serves, and sending bodies within the machine's pushback
//! ([`SendError::Blocked`](crate::streams::SendError::Blocked), then
//! [`Writable`](crate::streams::StreamEvent::Writable)).
//!
//! # The run loop
//!
//! A server's turn in one function, with the I/O elided (each connection has its own
//! machine; the [`SessionStore`] is shared by the server), and a client that sends it one
//! request:
//!
//! ```
//! use std::sync::Arc;
//! use std::time::{Duration, Instant};
//! use bytes::Bytes;
//! use http::{Method, StatusCode, Uri};
//! use tether_proto::connection::{Config, Connection, Event, SessionStore, Transmit, WsMessage};
//! use tether_proto::streams::StreamEvent;
//! use tether_proto::{RequestHead, ResponseHead};
//!
//! fn drive(
//!     conn: &mut Connection,
//!     store: &mut SessionStore,
//!     rng: &mut impl FnMut(&mut [u8]),
//!     inbound: Option<WsMessage>,
//!     now: Instant,
//!     send: &mut Vec<Transmit>,
//! ) -> Option<Instant> {
//!     match inbound {
//!         Some(msg) => conn.handle_message(msg, now),
//!         None => conn.handle_timeout(now),
//!     }
//!     // The drain order (see "The contract"): events, then transmits, until both are quiet.
//!     loop {
//!         while let Some(event) = conn.poll_event() {
//!             match event {
//!                 Event::HelloReceived(hello) => {
//!                     // Authenticate `hello.metadata` here; `reject` instead to refuse.
//!                     // `admit` sends WELCOME, or closes with the code a store error
//!                     // calls for (4007 store full, 4008 random source failed).
//!                     let admission =
//!                         store.admit(hello.resume.as_ref(), hello.metadata, rng, now);
//!                     conn.admit(admission, now).unwrap();
//!                 }
//!                 Event::Stream(StreamEvent::Request { id, head, .. }) => {
//!                     // A stream that ended meanwhile is an error value, not a panic.
//!                     if let Ok(mut stream) = conn.stream(id) {
//!                         let body = Bytes::from(head.uri.path().to_owned());
//!                         let _ = stream
//!                             .send_response(ResponseHead::new(StatusCode::OK), false)
//!                             .and_then(|()| stream.send_data(body, true));
//!                     }
//!                 }
//!                 Event::Failure { error } => println!("failed: {error}"),
//!                 _ => {}
//!             }
//!         }
//!         while let Some(msg) = conn.poll_transmit() {
//!             send.push(msg); // feed the WebSocket sink; flush once after the loop
//!         }
//!         if !conn.has_events() {
//!             break;
//!         }
//!     }
//!     conn.poll_timeout()
//! }
//!
//! let config = Arc::new(Config::default());
//! let t0 = Instant::now();
//! let mut server = Connection::server(config.clone(), t0);
//! server.set_serve_requests(true); // this end answers requests (else: 501 by itself)
//! let mut client = Connection::client(config, "{\"user\":\"ada\"}".into(), None, t0)?;
//! let mut store = SessionStore::new(Duration::from_secs(30));
//! let mut rng = |buf: &mut [u8]| buf.fill(0x42); // a CSPRNG in production
//!
//! // Moves the client's output to the server and back until both are quiet.
//! let mut to_client = Vec::new();
//! let mut client_events = Vec::new();
//! for _ in 0..4 {
//!     while let Some(msg) = client.poll_transmit() {
//!         drive(&mut server, &mut store, &mut rng, Some(msg.into()), t0, &mut to_client);
//!     }
//!     for msg in to_client.drain(..) {
//!         client.handle_message(msg, t0);
//!     }
//!     client_events.extend(std::iter::from_fn(|| client.poll_event()));
//!     if client.is_established() && client_events.len() == 1 {
//!         let get = RequestHead::new(Method::GET, Uri::from_static("/hello"));
//!         client.open(get, true, Some(Duration::from_secs(5)), t0).unwrap();
//!     }
//! }
//! assert!(server.is_established() && client.is_established());
//! assert_eq!(server.connection_id(), client.connection_id());
//! assert!(client_events.iter().any(|e| matches!(
//!     e,
//!     Event::Stream(StreamEvent::Data { data, .. }) if &data[..] == b"/hello"
//! )));
//! # Ok::<(), tether_proto::connection::ConfigError>(())
//! ```
//!
//! # Ending a connection
//!
//! - [`close_gracefully`](Connection::close_gracefully) with 1000 or 1001 drains the
//!   streams in flight first (GOAWAY, [`State::Draining`], [`Event::Draining`], a drain
//!   timer in [`poll_timeout`](Connection::poll_timeout)) and closes by itself;
//!   [`close`](Connection::close) closes at once (spec/protocol.md §10.7).
//! - Server: when a connection has ended, [`SessionStore::connection_ended`] applies what
//!   its end means for its session (detach or end, §9.1). When an admission
//!   [`replaces`](Admission::replaces) a live connection, that connection is told with
//!   [`replaced`](Connection::replaced) and closes with SESSION_REPLACED (§9.3).

mod config;
mod event;
mod heartbeat;
mod message;
mod probe_limit;
mod session;
mod timer;

pub use crate::RandomSource;
pub use crate::{Initiator, Side};
pub use config::{
    Carrier, Config, ConfigBuilder, ConfigError, MetadataError, PongResponder, HEARTBEAT_SEQ_LEN,
    MAX_HEARTBEAT_APP_DATA,
};
pub use event::{
    ConnectionError, Event, HelloInfo, InvalidWelcome, State, StateError, WebSocketError,
};
pub use heartbeat::RttStats;
pub use message::{CloseFrame, Transmit, WsMessage, MAX_CLOSE_REASON};
pub use probe_limit::{ProbeLimit, DEFAULT_MAX_PROBES, PROBE_WINDOW};
pub use session::{Admission, SessionHandle, SessionOutcome, SessionStore, StoreError};

use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

use crate::streams::{OpenError, PeerLimits, StreamError, StreamMut, Streams, StreamsError};
use crate::{
    CloseCode, Frame, Hello, Limits, Ping, Pong, Reaction, RequestHead, ResetCode, Resume,
    Settings, StreamId, Welcome,
};
use event::{is_orderly, NO_STATUS};
use heartbeat::Heartbeat;
use timer::{Timer, TimerTable};

/// What a message waiting in `Connection::transmits` is (spec/protocol.md §8.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queued {
    /// Handshake messages and the close: each is sent.
    Once,
    /// The answer to the peer's latest probe of this carrier not yet answered.
    Answer(Carrier),
    /// This side's latest heartbeat probe.
    Probe,
}

/// What the server remembers between HELLO and ACK.
#[derive(Debug)]
struct Pending {
    metadata: Bytes,
    resumed: bool,
}

/// One side of a Tether connection's lifecycle (see the [module docs](self)).
#[derive(Debug)]
pub struct Connection {
    config: Arc<Config>,
    side: Side,
    state: State,
    timers: TimerTable,
    /// Messages to send, each marked with what it is: at most one answer per carrier and
    /// one probe wait here (spec/protocol.md §8.5).
    transmits: VecDeque<(WsMessage, Queued)>,
    events: VecDeque<Event>,
    /// Reused to encode frames; each message is split off it.
    buf: BytesMut,
    version: Option<u16>,
    connection_id: Option<Uuid>,
    /// Client: the session it asked to resume; then the ticket for the next reconnect.
    resume: Option<Resume>,
    /// Announced RESUME_WINDOW_MS (server: sent; client: received).
    resume_window: Duration,
    peer_settings: Settings,
    pending: Option<Pending>,
    /// Server: the heartbeat (interval, timeout) announced in WELCOME.
    welcome_heartbeat: (Duration, Duration),
    heartbeat: Option<Heartbeat>,
    rtt: RttStats,
    /// The peer's probes in the current window (§8.5).
    probes: ProbeLimit,
    /// WebSocket payload bytes in and out (metrics).
    bytes_received: u64,
    bytes_sent: u64,
    /// The stream layer, from establishment until the connection ends (§10).
    streams: Option<Streams>,
    /// While [`State::Draining`]: the close frame sent once the drain is over (§10.7).
    draining: Option<CloseFrame>,
    /// Server: the hold on the session this connection was accepted with (§9).
    session: Option<SessionHandle>,
    /// Once closed: what the end means for the session (§9.1).
    session_outcome: Option<SessionOutcome>,
    /// Whether the embedder answers the peer's requests (else the machine answers 501).
    serve_requests: bool,
    /// Whether the embedder releases received body bytes itself.
    manual_release: bool,
}

impl Connection {
    /// A client connection, whose HELLO is queued at once. `metadata` is one JSON value
    /// (or empty); `resume` is the ticket of the session to resume, from a previous
    /// connection's [`resume_ticket`](Connection::resume_ticket).
    pub fn client(
        config: Arc<Config>,
        metadata: Bytes,
        resume: Option<Resume>,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        let max = config.limits().max_metadata_size;
        if metadata.len() > max as usize {
            let len = metadata.len();
            return Err(ConfigError::Metadata(MetadataError::TooLarge { len, max }));
        }
        if crate::frame::parse_metadata(&metadata).is_none() {
            return Err(ConfigError::Metadata(MetadataError::NotJson));
        }
        let hello = Frame::Hello(Hello {
            versions: config.versions().to_vec(),
            resume,
            settings: config.settings(),
            metadata,
        });
        let mut conn = Connection::new(config, Side::Client, State::AwaitingWelcome, now);
        conn.resume = resume;
        conn.send(&hello);
        Ok(conn)
    }

    /// A server connection, waiting for the client's HELLO.
    pub fn server(config: Arc<Config>, now: Instant) -> Self {
        Connection::new(config, Side::Server, State::AwaitingHello, now)
    }

    fn new(config: Arc<Config>, side: Side, state: State, now: Instant) -> Self {
        let mut timers = TimerTable::default();
        // spec/protocol.md §7.5; a timeout too long to represent never expires (§5).
        if let Some(at) = now.checked_add(config.handshake_timeout()) {
            timers.set(Timer::Handshake, at);
        }
        Connection {
            serve_requests: config.streams().serve_requests,
            manual_release: config.streams().manual_release,
            config,
            side,
            state,
            timers,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            buf: BytesMut::new(),
            version: None,
            connection_id: None,
            resume: None,
            resume_window: Duration::ZERO,
            peer_settings: Settings::default(),
            pending: None,
            welcome_heartbeat: (Duration::ZERO, Duration::ZERO),
            heartbeat: None,
            rtt: RttStats::default(),
            probes: ProbeLimit::default(),
            bytes_received: 0,
            bytes_sent: 0,
            streams: None,
            draining: None,
            session: None,
            session_outcome: None,
        }
    }

    // ---- getters ----

    /// Client or server.
    pub fn side(&self) -> Side {
        self.side
    }

    /// The lifecycle state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the handshake is complete and the connection not closed
    /// ([`Established`](State::Established) or [`Draining`](State::Draining)).
    pub fn is_established(&self) -> bool {
        matches!(self.state, State::Established | State::Draining)
    }

    /// Whether a graceful close is in progress ([`State::Draining`]).
    pub fn is_draining(&self) -> bool {
        self.state == State::Draining
    }

    /// Whether the connection is over.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// The connection id, once the server chose it (server: at `accept`; client: at
    /// WELCOME).
    pub fn connection_id(&self) -> Option<Uuid> {
        self.connection_id
    }

    /// The negotiated protocol version.
    pub fn version(&self) -> Option<u16> {
        self.version
    }

    /// Client: what to present to resume this session on the next connection (`None`
    /// before WELCOME, or when the server does not keep sessions). It stays available after
    /// the connection has ended in a way the client resumes from (a lost transport, a
    /// close code it retries after), which is when a reconnecting client reads it; after
    /// an orderly close (1000, 1001, …) or a code it does not retry after, it is `None`:
    /// the client does not resume then (spec/protocol.md §9.2), and the server has
    /// discarded the session (§9.1).
    pub fn resume_ticket(&self) -> Option<Resume> {
        match self.side {
            Side::Client
                if !self.resume_window.is_zero()
                    && self.connection_id.is_some()
                    && self.session_outcome != Some(SessionOutcome::End) =>
            {
                self.resume
            }
            _ => None,
        }
    }

    /// How long the server keeps this session resumable after a failure.
    pub fn resume_window(&self) -> Duration {
        self.resume_window
    }

    /// The settings the peer announced (its receive limits and heartbeat values).
    pub fn peer_settings(&self) -> &Settings {
        &self.peer_settings
    }

    /// The peer's receive limits, with the defaults for settings it did not send; frames
    /// sent to it must fit them (spec/protocol.md §7.4).
    pub fn peer_limits(&self) -> Limits {
        let d = Limits::default();
        let s = &self.peer_settings;
        let max_frame_payload = s.max_frame_payload.unwrap_or(d.max_frame_payload);
        Limits {
            max_frame_payload,
            // A head travels in one frame: the frame limit bounds it too (§5).
            max_head_size: s
                .max_head_size
                .unwrap_or(d.max_head_size)
                .min(max_frame_payload),
            max_header_count: s
                .max_header_count
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(d.max_header_count),
            max_metadata_size: d.max_metadata_size,
        }
    }

    /// The heartbeat in force: `(interval, timeout)`, `None` when there is none (before
    /// the handshake completes, or when the interval is zero).
    pub fn heartbeat(&self) -> Option<(Duration, Duration)> {
        self.heartbeat.as_ref().map(|h| (h.interval, h.timeout))
    }

    /// Smoothed round-trip time from heartbeat probes (RFC 6298).
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt.smoothed
    }

    /// All round-trip statistics.
    pub fn rtt_stats(&self) -> RttStats {
        self.rtt
    }

    /// Server: the hold on a session this connection was accepted with (from its
    /// [`Admission`]), `None` before [`accept`](Self::accept) and on a client. It stays
    /// available after the end, when [`SessionStore::connection_ended`] reads it.
    pub fn session(&self) -> Option<SessionHandle> {
        self.session
    }

    /// Once the connection has ended: what its end means for the session it held
    /// (spec/protocol.md §9.1): [`Detach`](SessionOutcome::Detach) after a failure the
    /// client resumes from (a lost transport, a close code whose retry column in §6.2
    /// says yes), [`End`](SessionOutcome::End) after an orderly close or any other
    /// failure. `None` while the connection is open. [`SessionStore::connection_ended`]
    /// applies it.
    pub fn session_outcome(&self) -> Option<SessionOutcome> {
        self.session_outcome
    }

    /// Payload bytes of every WebSocket message handed to
    /// [`handle_message`](Self::handle_message) so far (for metrics).
    pub fn bytes_received(&self) -> u64 {
        self.bytes_received
    }

    /// Payload bytes of every WebSocket message [`poll_transmit`](Self::poll_transmit) has
    /// handed out so far (for metrics).
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }

    // ---- outputs ----

    /// The next message to send. The machine's own messages (handshake, heartbeat,
    /// close) come first; then the stream layer's frames, encoded one at a time as they
    /// are polled, so a writer that stops polling holds the stream layer back instead of
    /// letting frames pile up here.
    ///
    /// A DATA frame comes as [`Transmit::Data`]: its 8-byte header and the payload
    /// [`Bytes`] the application queued, not copied; every other message as
    /// [`Transmit::Message`]. [`Transmit::into_message`] joins the parts (one copy) for a
    /// writer that needs one buffer.
    ///
    /// While [`Draining`](State::Draining), the call that finds the stream layer with
    /// nothing left to send and no stream open closes the connection (spec/protocol.md
    /// §10.7): it returns the close frame, and [`Event::Closed`] follows.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = match pop_releasing(&mut self.transmits) {
            Some((msg, _)) => Transmit::Message(msg),
            None => match self.streams.as_mut().and_then(Streams::poll_transmit) {
                Some(Frame::Data(data)) => Transmit::Data {
                    header: data.header(),
                    payload: data.payload,
                },
                Some(frame) => Transmit::Message(self.encode(&frame)),
                // Every frame of the streams is out: only now can the drain end, so that
                // the last DATA or RESET goes before the close (§10.7).
                None if self.finish_drain() => {
                    Transmit::Message(pop_releasing(&mut self.transmits)?.0)
                }
                None => return None,
            },
        };
        self.bytes_sent += t.payload_len() as u64;
        Some(t)
    }

    /// Whether [`poll_event`](Self::poll_event) has something.
    ///
    /// Transmitting can raise events: [`poll_transmit`](Self::poll_transmit) hands out the
    /// stream layer's DATA, and a stream whose send queue drains becomes writable
    /// ([`StreamEvent::Writable`](crate::streams::StreamEvent::Writable)), the cue for its
    /// sender to queue more. A driver that waits for input while such an event sits here
    /// stalls the body until some unrelated input arrives (spec/protocol.md §10.3): after
    /// a burst of writes, check this and drain events again until both queues are empty.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty() || self.streams.as_ref().is_some_and(Streams::has_events)
    }

    /// The next event: the machine's own, then the stream layer's as [`Event::Stream`].
    pub fn poll_event(&mut self) -> Option<Event> {
        // Usually empty (it carries the handshake, the heartbeat and the close): asked
        // first, so the stream layer's events do not pay for an empty pop.
        if !self.events.is_empty() {
            return pop_releasing(&mut self.events);
        }
        self.streams.as_mut()?.poll_event().map(Event::Stream)
    }

    /// The earliest deadline at which [`handle_timeout`](Self::handle_timeout) must be
    /// called, `None` when no timer runs.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let own = self.timers.next_timeout();
        let streams = self.streams.as_ref().and_then(Streams::poll_timeout);
        match (own, streams) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The stream layer, read-only, once established (`None` before and after): how many
    /// streams are open, how many bytes wait, whether a stream takes data. Act on streams
    /// with [`open`](Self::open) and [`stream`](Self::stream).
    pub fn streams(&self) -> Option<&Streams> {
        self.streams.as_ref()
    }

    /// Whether [`open`](Self::open) would open a stream now; `Err` says why not (after
    /// [`OpenError::Blocked`], a [`StreamEvent::CanOpen`](crate::streams::StreamEvent::CanOpen)
    /// follows when a stream frees up).
    pub fn can_open(&self) -> Result<(), OpenError> {
        self.streams
            .as_ref()
            .map_or(Err(OpenError::NotEstablished), Streams::can_open)
    }

    // ---- inputs ----

    /// One message received from the WebSocket.
    ///
    /// Anything that converts into a [`WsMessage`] is taken, so two machines can be
    /// connected in memory by handing one's [`Transmit`]s to the other (a DATA frame's
    /// parts are then joined with one copy, [`Transmit::into_message`]).
    pub fn handle_message(&mut self, msg: impl Into<WsMessage>, now: Instant) {
        let msg = msg.into();
        if self.state == State::Closed {
            return;
        }
        self.bytes_received += msg.payload_len() as u64;
        self.on_inbound(now);
        match msg {
            WsMessage::Binary(bytes) => match Frame::decode(bytes, self.config.limits()) {
                Ok(frame) => self.on_frame(frame, now),
                Err(error) => match error.reaction() {
                    // spec/protocol.md §3.5: a stream error resets the stream only; before
                    // the handshake there are no streams.
                    Reaction::Reset(stream_id, code) if self.streams.is_some() => {
                        if let Some(Err(e)) = self.streams.as_mut().map(|s| {
                            let frame = error.frame_type().unwrap_or(crate::FrameType::Headers);
                            s.handle_stream_error(stream_id, frame, code, now)
                        }) {
                            self.fail(ConnectionError::StreamLayer(e));
                        }
                    }
                    _ => self.fail(ConnectionError::InvalidFrame(error)),
                },
            },
            WsMessage::Text(_) => self.fail(ConnectionError::TextMessage),
            WsMessage::Ping(payload) => {
                if !self.allow_probe(now) {
                    return;
                }
                if self.config.pong_responder() == PongResponder::Machine {
                    self.answer(Carrier::WebSocket, WsMessage::Pong(payload.clone()));
                }
                self.events.push_back(Event::PingReceived {
                    carrier: Carrier::WebSocket,
                    payload,
                });
            }
            WsMessage::Pong(payload) => self.on_pong(Carrier::WebSocket, payload, now),
            WsMessage::Close(frame) => self.on_close(frame),
        }
    }

    /// Timers due at `now` fire; a call before any deadline does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Closed {
            return;
        }
        if self.timers.is_expired(Timer::Handshake, now) {
            let timeout = self.config.handshake_timeout();
            return self.fail(ConnectionError::HandshakeTimeout(timeout));
        }
        if self.timers.is_expired(Timer::Idle, now) {
            let timeout = self
                .heartbeat
                .as_ref()
                .map_or(Duration::ZERO, |h| h.timeout);
            return self.fail(ConnectionError::HeartbeatTimeout(timeout));
        }
        if self.timers.is_expired(Timer::Drain, now) {
            // spec/protocol.md §10.7: the drain time is up; the streams still open end as
            // connection lost.
            if let Some(frame) = self.draining.take() {
                return self.close(frame.code, &frame.reason, now);
            }
        }
        if self.timers.is_expired(Timer::Probe, now) {
            self.send_probe(now);
        }
        if let Some(streams) = &mut self.streams {
            streams.handle_timeout(now);
        }
    }

    /// The transport ended without a close frame (reset, EOF, I/O error).
    pub fn handle_transport_lost(&mut self, _now: Instant) {
        if self.state != State::Closed {
            self.terminate(Event::Failure {
                error: ConnectionError::TransportLost,
            });
        }
    }

    /// The WebSocket layer refused what the peer sent (an oversized message, a framing
    /// violation): closes with the error's code and reports a failure this side initiated
    /// (spec/protocol.md §2.3, §7.7). The close frame is queued like any other; the
    /// runtime writes it before it drops the transport. Does nothing once closed.
    pub fn handle_websocket_error(&mut self, error: WebSocketError, _now: Instant) {
        if self.state != State::Closed {
            self.fail(ConnectionError::WebSocket(error));
        }
    }

    // ---- mutators ----

    /// Opens a stream with a request head (spec/protocol.md §10.1); with `end_stream` the
    /// request has no body, with a `timeout` it carries a deadline (§10.6). See
    /// [`Streams::open`]; [`OpenError::NotEstablished`] before the handshake completes and
    /// after the connection ended.
    pub fn open(
        &mut self,
        head: RequestHead,
        end_stream: bool,
        timeout: Option<Duration>,
        now: Instant,
    ) -> Result<StreamId, OpenError> {
        let streams = self.streams.as_mut().ok_or(OpenError::NotEstablished)?;
        streams.open(head, end_stream, timeout, now)
    }

    /// The open stream `id`, to answer it, send on it or give up on it (see
    /// [`StreamMut`]); a typed [`StreamError`] when it has ended, never existed, or the
    /// connection has no streams.
    pub fn stream(&mut self, id: StreamId) -> Result<StreamMut<'_>, StreamError> {
        self.streams
            .as_mut()
            .ok_or(StreamError::NoStreams)?
            .stream(id)
    }

    /// Whether this side answers the requests the peer opens
    /// ([`StreamsConfig::serve_requests`](crate::streams::StreamsConfig::serve_requests),
    /// whose value in the config is the default). Off, the machine answers each request
    /// with `501 Not Implemented` by itself and reports nothing about it; on,
    /// [`StreamEvent::Request`](crate::streams::StreamEvent::Request) comes and the
    /// embedder answers. Takes effect for requests that arrive from now on, also when
    /// called before the handshake.
    pub fn set_serve_requests(&mut self, serve: bool) {
        self.serve_requests = serve;
        if let Some(streams) = &mut self.streams {
            streams.set_serve_requests(serve);
        }
    }

    /// Whether the embedder gives received body bytes back to the peer itself, with
    /// [`StreamMut::release_capacity`] as it consumes them
    /// ([`StreamsConfig::manual_release`](crate::streams::StreamsConfig::manual_release),
    /// whose value in the config is the default). Off, the machine releases every
    /// [`StreamEvent::Data`](crate::streams::StreamEvent::Data) as it reports it.
    pub fn set_manual_release(&mut self, manual: bool) {
        self.manual_release = manual;
        if let Some(streams) = &mut self.streams {
            streams.set_manual_release(manual);
        }
    }

    /// Sends GOAWAY (spec/protocol.md §10.7): the peer opens no more streams, and ours
    /// refuse new opens ([`OpenError::GoingAway`]); open streams run to completion. Does
    /// nothing without a stream layer.
    pub fn go_away(&mut self, code: ResetCode, reason: &str) {
        if let Some(streams) = &mut self.streams {
            streams.go_away(code, reason);
        }
    }

    /// Server: accepts the pending HELLO with the identity `admission` gives (from
    /// [`SessionStore::admit`] or [`Admission::fresh`]), and sends WELCOME.
    pub fn accept(&mut self, admission: Admission, _now: Instant) -> Result<(), StateError> {
        if self.state != State::AwaitingDecision {
            return Err(StateError {
                operation: "accept",
                state: self.state,
            });
        }
        let version = self.version.unwrap_or(crate::PROTOCOL_VERSION);
        let id = admission.id();
        self.connection_id = Some(id);
        self.session = Some(admission.session());
        self.resume_window = admission.resume_window;
        let heartbeat = admission.heartbeat.unwrap_or((
            self.config.heartbeat_interval(),
            self.config.heartbeat_timeout(),
        ));
        self.welcome_heartbeat = heartbeat;
        let mut settings = self.config.settings();
        settings.heartbeat_interval_ms = Some(config::millis(heartbeat.0));
        settings.heartbeat_timeout_ms = Some(config::millis(heartbeat.1));
        settings.resume_window_ms = Some(config::millis(admission.resume_window));
        if let Some(pending) = &mut self.pending {
            pending.resumed = admission.resumed;
        }
        self.send(&Frame::Welcome(Welcome {
            version,
            connection_id: id,
            resume_token: admission.token,
            resumed: admission.resumed,
            settings,
        }));
        self.state = State::AwaitingAck;
        Ok(())
    }

    /// Server: completes an accepted HELLO with what [`SessionStore::admit`] answered. With
    /// an [`Admission`] this is [`accept`](Self::accept) (WELCOME goes out); with a
    /// [`StoreError`] the connection closes with the code the spec gives for it
    /// ([`StoreError::close_code`]): 4007 ENHANCE_YOUR_CALM when the store is full
    /// (spec/protocol.md §9.1), 4008 INTERNAL_ERROR when the random source failed, never a
    /// weaker identity (§7.3 step 4), and reports [`Event::Closed`]. `Err` (and nothing
    /// changes) unless a decision is pending.
    pub fn admit(
        &mut self,
        admission: Result<Admission, StoreError>,
        now: Instant,
    ) -> Result<(), StateError> {
        if self.state != State::AwaitingDecision {
            return Err(StateError {
                operation: "admit",
                state: self.state,
            });
        }
        match admission {
            Ok(admission) => self.accept(admission, now),
            Err(error) => {
                self.close(error.close_code(), error.close_reason(), now);
                Ok(())
            }
        }
    }

    /// Server: refuses the pending HELLO, closing with `code` (normally
    /// [`CloseCode::REJECTED`] or an application code) and `reason`. Reports
    /// [`Event::Closed`]. Does nothing once closed.
    pub fn reject(&mut self, code: CloseCode, reason: &str, now: Instant) {
        self.close(code, reason, now);
    }

    /// Closes the connection with `code` and `reason` (cut to 123 bytes): queues the close
    /// frame and reports [`Event::Closed`]. Does nothing once closed.
    pub fn close(&mut self, code: CloseCode, reason: &str, _now: Instant) {
        self.close_now(code, reason);
    }

    fn close_now(&mut self, code: CloseCode, reason: &str) {
        if self.state == State::Closed {
            return;
        }
        let frame = CloseFrame::new(code, reason);
        let event = Event::Closed {
            code,
            reason: frame.reason.clone(),
            initiator: Initiator::Local,
        };
        self.push(WsMessage::Close(Some(frame)));
        self.terminate(event);
    }

    /// Closes gracefully (spec/protocol.md §10.7). A normal close (1000 NORMAL or 1001
    /// GOING_AWAY) of an established connection with streams in flight drains first:
    /// GOAWAY (NO_ERROR, `reason`) goes out, the state becomes [`State::Draining`] and
    /// [`Event::Draining`] is reported; no new stream is opened or accepted, the streams
    /// in flight run on, and the machine closes with `code` and `reason` by itself
    /// (reporting [`Event::Closed`]) as soon as no stream is left (found by
    /// [`poll_transmit`](Self::poll_transmit) once the last frame is out) or when `drain`
    /// has passed ([`handle_timeout`](Self::handle_timeout); a `drain` too long for the
    /// clock means no deadline). Anything else closes at once, as [`close`](Self::close):
    /// another code, a zero `drain`, no stream in flight, a connection not yet
    /// established.
    ///
    /// While draining, a second graceful close changes nothing (the first one's code,
    /// reason and deadline stay); any other code closes at once. Does nothing once closed.
    pub fn close_gracefully(
        &mut self,
        code: CloseCode,
        reason: &str,
        drain: Duration,
        now: Instant,
    ) {
        let graceful = code == CloseCode::NORMAL || code == CloseCode::GOING_AWAY;
        match self.state {
            State::Closed => return,
            State::Draining if graceful => return,
            State::Established if graceful && !drain.is_zero() => {}
            _ => return self.close(code, reason, now),
        }
        let Some(streams) = self.streams.as_mut().filter(|s| s.open_streams() > 0) else {
            return self.close(code, reason, now);
        };
        tracing::debug!(
            id = ?self.connection_id,
            open = streams.open_streams(),
            %code,
            "draining before close"
        );
        let frame = CloseFrame::new(code, reason);
        streams.go_away(ResetCode::NO_ERROR, &frame.reason);
        self.draining = Some(frame);
        self.state = State::Draining;
        self.timers
            .set_or_stop(Timer::Drain, now.checked_add(drain));
        self.events.push_back(Event::Draining);
    }

    /// Server: the session this connection held was resumed on another connection while
    /// this one was still open ([`Admission::replaces`] named this connection's
    /// [`session`](Self::session)): closes at once with 4009 SESSION_REPLACED
    /// (spec/protocol.md §9.3) and reports [`Event::Closed`]. Its end changes nothing in
    /// the [`SessionStore`] (its handle is stale). Does nothing once closed.
    pub fn replaced(&mut self, now: Instant) {
        self.close(
            CloseCode::SESSION_REPLACED,
            "session resumed on a new connection",
            now,
        );
    }

    // ---- internals ----

    /// While draining: closes if no stream is left; returns whether it did (§10.7).
    fn finish_drain(&mut self) -> bool {
        if self.state != State::Draining || self.streams.as_ref().is_some_and(|s| !s.is_drained()) {
            return false;
        }
        let Some(frame) = self.draining.take() else {
            return false;
        };
        self.close_now(frame.code, &frame.reason);
        true
    }

    fn send(&mut self, frame: &Frame) {
        let msg = self.encode(frame);
        self.push(msg);
    }

    fn encode(&mut self, frame: &Frame) -> WsMessage {
        frame.encode(&mut self.buf);
        WsMessage::Binary(self.buf.split().freeze())
    }

    /// Queues one of the machine's own messages.
    fn push(&mut self, msg: WsMessage) {
        self.transmits.push_back((msg, Queued::Once));
    }

    /// Queues the answer to a probe that came by `carrier` (spec/protocol.md §8.5): an
    /// answer to an earlier probe of that carrier that is still waiting to be sent is
    /// replaced by this one (RFC 6455 §5.5.3 allows it for Pongs), so a peer that sends
    /// probes and never reads holds at most one answer per carrier here.
    fn answer(&mut self, carrier: Carrier, msg: WsMessage) {
        self.replace_or_push(msg, Queued::Answer(carrier));
    }

    /// Queues `msg`, or puts it in the place of the unsent message of the same `kind`
    /// (at most one of each kind waits: the scan is over a handful of messages).
    fn replace_or_push(&mut self, msg: WsMessage, kind: Queued) {
        match self.transmits.iter_mut().find(|(_, k)| *k == kind) {
            Some(waiting) => waiting.0 = msg,
            None => self.transmits.push_back((msg, kind)),
        }
    }

    /// Any inbound message proves the peer alive (spec/protocol.md §8.3).
    /// Counts a probe from the peer; past the limit the connection fails with 4007 and the
    /// probe is not answered (spec/protocol.md §8.5).
    fn allow_probe(&mut self, now: Instant) -> bool {
        let limit = probe_limit::effective_limit(
            self.config.max_probes_per_window(),
            self.heartbeat.as_ref().map(|h| h.interval),
        );
        if self.probes.record(limit, now) {
            return true;
        }
        self.fail(ConnectionError::ProbeFlood {
            limit,
            window: PROBE_WINDOW,
        });
        false
    }

    fn on_inbound(&mut self, now: Instant) {
        if let Some(hb) = &self.heartbeat {
            // spec/protocol.md §8.2: each side probes after its own probe delay of silence.
            let (idle, probe) = (now.checked_add(hb.timeout), now.checked_add(hb.probe_after));
            self.timers.set_or_stop(Timer::Idle, idle);
            self.timers.set_or_stop(Timer::Probe, probe);
        }
    }

    fn on_frame(&mut self, frame: Frame, now: Instant) {
        // Matched on the frame alone, the state in guards: a tuple of the two was a copy of
        // every frame (a request head makes it 232 bytes) before it was looked at.
        let state = self.state;
        let live = matches!(state, State::Established | State::Draining);
        match frame {
            Frame::Hello(hello) if state == State::AwaitingHello => self.on_hello(hello),
            Frame::Ack if state == State::AwaitingAck => {
                let pending = self.pending.take();
                let (metadata, resumed) =
                    pending.map_or((Bytes::new(), false), |p| (p.metadata, p.resumed));
                let id = self.connection_id.unwrap_or_default();
                let (interval, timeout) = self.welcome_heartbeat;
                if !self.establish(interval, timeout, now) {
                    return;
                }
                self.events.push_back(if resumed {
                    Event::Resumed { id, metadata }
                } else {
                    Event::Received { id, metadata }
                });
            }
            Frame::Welcome(welcome) if state == State::AwaitingWelcome => {
                self.on_welcome(welcome, now)
            }
            Frame::Ping(Ping(payload)) if live => {
                if !self.allow_probe(now) {
                    return;
                }
                let pong = self.encode(&Frame::Pong(Pong(payload.clone())));
                self.answer(Carrier::Frame, pong);
                self.events.push_back(Event::PingReceived {
                    carrier: Carrier::Frame,
                    payload,
                });
            }
            Frame::Pong(Pong(payload)) if live => self.on_pong(Carrier::Frame, payload, now),
            frame if live && !matches!(frame, Frame::Hello(_) | Frame::Welcome(_) | Frame::Ack) => {
                // spec/protocol.md §10: HEADERS, DATA, RESET, WINDOW_UPDATE, GOAWAY.
                if let Some(Err(e)) = self.streams.as_mut().map(|s| s.handle_frame(frame, now)) {
                    self.fail(ConnectionError::StreamLayer(e));
                }
            }
            frame => self.fail(ConnectionError::UnexpectedFrame {
                frame: frame.frame_type(),
                state,
            }),
        }
    }

    /// spec/protocol.md §7.3
    fn on_hello(&mut self, hello: Hello) {
        let Some(version) = highest_common(self.config.versions(), &hello.versions) else {
            return self.fail(ConnectionError::UnsupportedVersion {
                peer: hello.versions,
            });
        };
        self.version = Some(version);
        self.peer_settings = hello.settings;
        self.pending = Some(Pending {
            metadata: hello.metadata.clone(),
            resumed: false,
        });
        self.state = State::AwaitingDecision;
        self.events.push_back(Event::HelloReceived(HelloInfo {
            version,
            resume: hello.resume,
            settings: hello.settings,
            metadata: hello.metadata,
        }));
    }

    /// spec/protocol.md §7.3, §7.4
    fn on_welcome(&mut self, welcome: Welcome, now: Instant) {
        if !self.config.versions().contains(&welcome.version) {
            return self.fail(ConnectionError::UnsupportedVersion {
                peer: vec![welcome.version],
            });
        }
        if welcome.resumed && self.resume.map(|r| r.connection_id) != Some(welcome.connection_id) {
            return self.fail(ConnectionError::InvalidWelcome(
                InvalidWelcome::UnaskedResume,
            ));
        }
        let s = welcome.settings;
        let interval = Duration::from_millis(s.heartbeat_interval_ms.unwrap_or(0).into());
        let timeout = s
            .heartbeat_timeout_ms
            .map(|ms| Duration::from_millis(ms.into()));
        let timeout = match timeout {
            Some(t) if t > interval => t,
            _ if interval.is_zero() => Duration::ZERO,
            _ => {
                return self.fail(ConnectionError::InvalidWelcome(
                    InvalidWelcome::HeartbeatTimeout,
                ))
            }
        };
        self.version = Some(welcome.version);
        self.connection_id = Some(welcome.connection_id);
        self.peer_settings = s;
        self.resume_window = Duration::from_millis(s.resume_window_ms.unwrap_or(0).into());
        self.resume = Some(Resume {
            connection_id: welcome.connection_id,
            token: welcome.resume_token,
        });
        self.send(&Frame::Ack);
        if !self.establish(interval, timeout, now) {
            return;
        }
        self.events.push_back(Event::Established {
            id: welcome.connection_id,
            resumed: welcome.resumed,
        });
    }

    /// spec/protocol.md §8.2; `false` when the connection failed instead.
    #[must_use]
    fn establish(&mut self, interval: Duration, timeout: Duration, now: Instant) -> bool {
        tracing::debug!(
            side = ?self.side,
            id = ?self.connection_id,
            version = ?self.version,
            ?interval,
            ?timeout,
            "connection established"
        );
        self.state = State::Established;
        self.timers.stop(Timer::Handshake);
        // spec/protocol.md §7.4, §10.8: what the peer announced bounds what we send;
        // absent settings mean the defaults.
        let defaults = PeerLimits::default();
        let p = &self.peer_settings;
        let peer = PeerLimits {
            max_frame_payload: p.max_frame_payload.unwrap_or(defaults.max_frame_payload),
            max_concurrent_streams: p
                .max_concurrent_streams
                .unwrap_or(defaults.max_concurrent_streams),
            initial_stream_window: p
                .initial_stream_window
                .unwrap_or(defaults.initial_stream_window),
            initial_connection_window: p
                .initial_connection_window
                .unwrap_or(defaults.initial_connection_window),
            max_head_size: self.peer_limits().max_head_size,
            max_header_count: self.peer_limits().max_header_count,
        };
        let mut config = self.config.streams().clone();
        config.serve_requests = self.serve_requests;
        config.manual_release = self.manual_release;
        match Streams::new(self.side, config, peer) {
            Ok(streams) => self.streams = Some(streams),
            // Unreachable with settings that passed decoding (§3.6); closes, never panics.
            Err(e) => {
                self.fail(ConnectionError::StreamLayer(StreamsError::PeerLimits(e)));
                return false;
            }
        }
        if interval.is_zero() {
            return true;
        }
        let hb = Heartbeat::new(
            self.side,
            interval,
            timeout,
            self.config.carrier(),
            self.config.heartbeat_app_data().clone(),
        );
        self.heartbeat = Some(hb);
        self.on_inbound(now);
        true
    }

    fn send_probe(&mut self, now: Instant) {
        let Some(hb) = &mut self.heartbeat else {
            return self.timers.stop(Timer::Probe);
        };
        let payload = hb.probe(now);
        let carrier = hb.carrier();
        self.timers
            .set_or_stop(Timer::Probe, now.checked_add(hb.probe_after));
        let msg = match carrier {
            Carrier::Frame => self.encode(&Frame::Ping(Ping(payload))),
            _ => WsMessage::Ping(payload),
        };
        // A probe still unsent when the next is due is replaced by it (§8.5): a peer that
        // neither reads nor sends costs one probe here, not one per interval.
        self.replace_or_push(msg, Queued::Probe);
    }

    fn on_pong(&mut self, carrier: Carrier, payload: Bytes, now: Instant) {
        let rtt = self
            .heartbeat
            .as_mut()
            .and_then(|hb| hb.on_pong(&payload, now));
        if let Some(sample) = rtt {
            self.rtt.update(sample);
        }
        self.events.push_back(Event::PongReceived {
            carrier,
            payload,
            rtt,
        });
    }

    /// spec/protocol.md §7.7
    fn on_close(&mut self, frame: Option<CloseFrame>) {
        let (code, reason) = frame.map_or((NO_STATUS, String::new()), |f| (f.code, f.reason));
        let event = if is_orderly(code) {
            Event::Closed {
                code,
                reason,
                initiator: Initiator::Peer,
            }
        } else {
            Event::Failure {
                error: ConnectionError::PeerClosed { code, reason },
            }
        };
        self.terminate(event);
    }

    /// Closes because of `error`, detected here: sends its close code.
    fn fail(&mut self, error: ConnectionError) {
        if let Some(code) = error.close_code() {
            let reason = error.to_string();
            self.push(WsMessage::Close(Some(CloseFrame::new(code, &reason))));
        }
        self.terminate(Event::Failure { error });
    }

    fn terminate(&mut self, event: Event) {
        tracing::debug!(side = ?self.side, id = ?self.connection_id, ?event, "connection ended");
        self.state = State::Closed;
        self.timers.stop_all();
        self.heartbeat = None;
        self.pending = None;
        self.draining = None;
        // spec/protocol.md §9.1: an orderly close ends the session; a failure detaches it
        // when the client will resume (a lost transport, a code it retries after).
        self.session_outcome = Some(match &event {
            Event::Failure { error } if error.keeps_session() => SessionOutcome::Detach,
            _ => SessionOutcome::End,
        });
        // Every open stream ends with "connection lost" before the connection's own end
        // is reported (spec/protocol.md §10.5).
        if let Some(mut streams) = self.streams.take() {
            streams.handle_connection_lost();
            while let Some(e) = streams.poll_event() {
                self.events.push_back(Event::Stream(e));
            }
        }
        self.events.push_back(event);
    }
}

/// Pops the front of one of the machine's own queues (its messages, its events) and frees
/// the queue's memory once it is empty. They carry only the handshake, the heartbeat and
/// the close, never stream traffic (that waits in the stream layer), so reallocating
/// for the next ping costs less than keeping the buffer in every idle connection: an
/// [`Event`] is about 200 bytes, and four of them were 864 bytes of each idle
/// connection (issue 11 goal 5).
///
/// The last item is popped from the queue taken out of its place, so it is moved once, to
/// the caller, and the memory goes with the emptied queue; an empty queue is not popped at
/// all. Nothing else takes items out, so an empty queue holds no memory. (Held in a local
/// while the queue was released, an `Event` was copied twice, and every pop of an empty
/// queue copied a `None` of its size: with [`Connection::poll_event`] asking the queue's
/// length first, 377 instructions of a small request one at a time at the two ends,
/// benches/RESULTS.md, twenty-fourth pass.)
fn pop_releasing<T>(queue: &mut VecDeque<T>) -> Option<T> {
    match queue.len() {
        0 => None,
        1 => std::mem::take(queue).pop_front(),
        _ => queue.pop_front(),
    }
}

/// The highest version in both lists (spec/protocol.md §7.3).
fn highest_common(ours: &[u16], theirs: &[u16]) -> Option<u16> {
    theirs.iter().copied().filter(|v| ours.contains(v)).max()
}

#[cfg(test)]
mod tests {
    use super::pop_releasing;
    use std::collections::VecDeque;

    #[test]
    fn a_drained_queue_holds_no_memory() {
        let mut queue: VecDeque<u32> = (0..4).collect();
        assert_eq!(pop_releasing(&mut queue), Some(0));
        assert!(queue.capacity() >= 3);
        while pop_releasing(&mut queue).is_some() {}
        assert_eq!(queue.capacity(), 0);
        assert_eq!(pop_releasing(&mut queue), None);
    }
}
