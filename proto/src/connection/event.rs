//! What a [`Connection`](super::Connection) reports: events, and why it ended.

use bytes::Bytes;
use std::fmt;
use std::time::Duration;
use uuid::Uuid;

use super::Carrier;
use crate::Initiator;
use crate::{CloseCode, FrameError, FrameType, Resume, Settings};

/// Where a connection is in its lifecycle (spec/protocol.md §7.2, whose state diagram
/// names these states).
///
/// ```text
///   client                          server
///
///   AwaitingWelcome                 AwaitingHello
///        |  WELCOME / send ACK           |  HELLO / report HelloReceived
///        v                               v
///   Established                     AwaitingDecision
///                                        |  accept / send WELCOME
///                                        v
///                                   AwaitingAck
///                                        |  ACK
///                                        v
///                                   Established
///
///   Established --(close_gracefully with 1000/1001 and streams in flight
///                  / send GOAWAY, arm the drain timer)--> Draining
///   Draining --(no stream left, or the drain timer fires / send Close)--> Closed
///   any state --(error, timeout, close, reject)--> Closed
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// Server: waiting for the client's HELLO.
    AwaitingHello,
    /// Server: a HELLO arrived; waiting for the embedder to accept or reject it.
    AwaitingDecision,
    /// Server: WELCOME sent; waiting for the client's ACK.
    AwaitingAck,
    /// Client: HELLO sent; waiting for WELCOME.
    AwaitingWelcome,
    /// The handshake is complete.
    Established,
    /// Established, closing gracefully (spec/protocol.md §10.7): this side sent GOAWAY,
    /// opens and accepts no new stream, and closes by itself with the code given to
    /// [`close_gracefully`](super::Connection::close_gracefully) once no stream is left
    /// or when the drain timer fires. Everything else works as in `Established`.
    Draining,
    /// The connection is over; the machine ignores all input.
    Closed,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::AwaitingHello => "awaiting HELLO",
            State::AwaitingDecision => "awaiting the accept decision",
            State::AwaitingAck => "awaiting ACK",
            State::AwaitingWelcome => "awaiting WELCOME",
            State::Established => "established",
            State::Draining => "draining",
            State::Closed => "closed",
        })
    }
}

/// A HELLO the server's embedder must accept or reject (spec/protocol.md §7.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloInfo {
    /// The version the connection will speak: the highest both sides support.
    pub version: u16,
    /// The session the client asks to resume, if any. Pass it to
    /// [`SessionStore::admit`](super::SessionStore::admit).
    pub resume: Option<Resume>,
    /// The client's settings (its receive limits and heartbeat proposal).
    pub settings: Settings,
    /// The client's metadata: one JSON value, or empty.
    pub metadata: Bytes,
}

impl HelloInfo {
    /// The metadata as a JSON value (`Null` when there is none). The machine accepted it
    /// with [`parse_metadata`](crate::frame::parse_metadata), so this is the value the
    /// client sent (spec/protocol.md §3.4.1).
    pub fn metadata_json(&self) -> serde_json::Value {
        crate::frame::parse_metadata(&self.metadata).unwrap_or(serde_json::Value::Null)
    }
}

/// Something the embedder learns from a connection, drained with
/// [`Connection::poll_event`](super::Connection::poll_event).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Server: a client said HELLO. Answer with
    /// [`accept`](super::Connection::accept) or [`reject`](super::Connection::reject)
    /// before the handshake timeout.
    HelloReceived(HelloInfo),
    /// Server: a new session is established (the client's ACK arrived).
    Received {
        /// The connection id.
        id: Uuid,
        /// The client's metadata.
        metadata: Bytes,
    },
    /// Server: a session was resumed and is established again (the ACK arrived).
    Resumed {
        /// The connection id: the same as before the drop.
        id: Uuid,
        /// The client's metadata, from its latest HELLO.
        metadata: Bytes,
    },
    /// Client: the handshake is complete.
    Established {
        /// The connection id.
        id: Uuid,
        /// Whether the server continued the session the client asked to resume.
        resumed: bool,
    },
    /// A heartbeat probe arrived (a WebSocket ping or a PING frame); it is answered as
    /// [`PongResponder`](super::PongResponder) says.
    PingReceived {
        /// How it came.
        carrier: Carrier,
        /// Its payload.
        payload: Bytes,
    },
    /// A pong arrived (a WebSocket pong or a PONG frame).
    PongReceived {
        /// How it came.
        carrier: Carrier,
        /// Its payload.
        payload: Bytes,
        /// The round trip, when it answers one of this side's recent probes.
        rtt: Option<Duration>,
    },
    /// This side started a graceful close
    /// ([`close_gracefully`](super::Connection::close_gracefully)) with streams in flight:
    /// GOAWAY is sent and the connection is [`Draining`](State::Draining). No new stream
    /// is opened or accepted from now on, so requests still waiting for one should go
    /// elsewhere (or wait for the next connection). The streams in flight run on; the
    /// machine closes by itself and reports [`Closed`](Event::Closed) when they are done
    /// or the drain time is up (spec/protocol.md §10.7).
    Draining,
    /// Established: something happened on a stream (a request arrived, a response, body
    /// data, a stream ended…). See [`StreamEvent`](crate::streams::StreamEvent); the stream
    /// layer itself is reached through
    /// [`Connection::streams`](super::Connection::streams).
    Stream(crate::streams::StreamEvent),
    /// The connection ended in an orderly way: the embedder closed or rejected it, or the
    /// peer sent a close frame with a non-error code (1000, 1001, 1005 or 4500–4999).
    /// Always the last event.
    Closed {
        /// The close code (1005 when the peer's close frame had none).
        code: CloseCode,
        /// The close reason.
        reason: String,
        /// Who closed.
        initiator: Initiator,
    },
    /// The connection failed. Always the last event.
    Failure {
        /// What went wrong.
        error: ConnectionError,
    },
}

/// Why a connection failed (spec/protocol.md §7.6, §8.3).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The handshake did not complete in time; this side closed with HANDSHAKE_TIMEOUT.
    #[error("handshake not complete after {0:?}")]
    HandshakeTimeout(Duration),
    /// Nothing arrived for the heartbeat timeout; this side closed with HEARTBEAT_TIMEOUT.
    #[error("no inbound traffic for {0:?}: peer presumed dead")]
    HeartbeatTimeout(Duration),
    /// The peer sent a message that is not a valid frame; this side closed with the code of
    /// the error's [`reaction`](FrameError::reaction).
    #[error("peer sent an invalid frame: {0}")]
    InvalidFrame(FrameError),
    /// The peer sent a frame its state does not allow; this side closed with
    /// PROTOCOL_ERROR.
    #[error("peer sent {frame} while {state}")]
    UnexpectedFrame {
        /// The frame's type.
        frame: FrameType,
        /// This side's state when it arrived.
        state: State,
    },
    /// The peer sent a text message; this side closed with UNSUPPORTED_DATA.
    #[error("peer sent a text message")]
    TextMessage,
    /// No protocol version in common; this side closed with UNSUPPORTED_VERSION.
    #[error("no protocol version in common (peer: {peer:?})")]
    UnsupportedVersion {
        /// The peer's version(s).
        peer: Vec<u16>,
    },
    /// The server's WELCOME is inconsistent (settings that cannot work, or a resumed
    /// session other than the one asked for); this side closed with PROTOCOL_ERROR.
    #[error("invalid WELCOME: {0}")]
    InvalidWelcome(InvalidWelcome),
    /// The peer closed with an error code (for a client, REJECTED means the server's
    /// application refused the HELLO).
    #[error("peer closed with {code}: {reason:?}")]
    PeerClosed {
        /// The peer's close code.
        code: CloseCode,
        /// The peer's reason.
        reason: String,
    },
    /// The transport ended without a close frame
    /// ([`Connection::handle_transport_lost`](super::Connection::handle_transport_lost)).
    #[error("transport lost without a close frame")]
    TransportLost,
    /// The peer broke a rule of the stream layer that closes the connection (§10).
    #[error("stream layer: {0}")]
    StreamLayer(crate::streams::StreamsError),
    /// The peer sent more probes (WebSocket Pings and PING frames) in one window than the
    /// limit allows; this side closed with ENHANCE_YOUR_CALM (§8.5).
    #[error("more than {limit} pings in {window:?}")]
    ProbeFlood {
        /// The limit in force.
        limit: u32,
        /// The window.
        window: Duration,
    },
    /// The WebSocket layer below the machine refused what the peer sent
    /// ([`Connection::handle_websocket_error`](super::Connection::handle_websocket_error));
    /// this side closed with the error's code (1009, 1003 or 1002).
    #[error("peer broke the WebSocket layer: {0}")]
    WebSocket(WebSocketError),
}

/// A fault the WebSocket layer found in what the peer sent, before any message reached
/// the machine (spec/protocol.md §2.3; RFC 6455 §5.2, §5.5, §7.4.1). The runtime
/// translates its WebSocket library's read error into one of these; the machine decides
/// the close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebSocketError {
    /// A message (or the frame announcing it) longer than 8 + `max_frame_payload` bytes:
    /// closes with 1009 MESSAGE_TOO_BIG (§2.3, §5).
    #[error("message larger than 8 + max_frame_payload bytes")]
    MessageTooBig,
    /// A text message that is not UTF-8: a text message all the same, closes with 1003
    /// UNSUPPORTED_DATA (§2.3).
    #[error("text message that is not UTF-8")]
    InvalidText,
    /// A violation of RFC 6455 framing (reserved bits set, an unmasked client frame, a
    /// masked server frame, an unknown opcode, a fragmented or oversized control frame, a
    /// continuation out of place): closes with 1002 WEBSOCKET_PROTOCOL_ERROR (§6.2).
    #[error("WebSocket protocol violation")]
    Protocol,
}

impl WebSocketError {
    /// The close code this side sends (spec/protocol.md §2.3, §6.2).
    pub fn close_code(self) -> CloseCode {
        match self {
            WebSocketError::MessageTooBig => CloseCode::MESSAGE_TOO_BIG,
            WebSocketError::InvalidText => CloseCode::UNSUPPORTED_DATA,
            WebSocketError::Protocol => CloseCode::WEBSOCKET_PROTOCOL_ERROR,
        }
    }
}

impl ConnectionError {
    /// Which side ended the connection: `Local` when this machine detected the fault and
    /// sent a close frame, `Peer` when the peer closed or its transport went away.
    pub fn initiator(&self) -> Initiator {
        match self {
            ConnectionError::PeerClosed { .. } | ConnectionError::TransportLost => Initiator::Peer,
            _ => Initiator::Local,
        }
    }

    /// The close code on the wire: the one this side sent, or the one the peer sent
    /// (`None` for a lost transport).
    pub fn close_code(&self) -> Option<CloseCode> {
        Some(match self {
            ConnectionError::HandshakeTimeout(_) => CloseCode::HANDSHAKE_TIMEOUT,
            ConnectionError::HeartbeatTimeout(_) => CloseCode::HEARTBEAT_TIMEOUT,
            ConnectionError::InvalidFrame(e) => match e.reaction() {
                crate::Reaction::Close(code) => code,
                _ => CloseCode::PROTOCOL_ERROR,
            },
            ConnectionError::UnexpectedFrame { .. } | ConnectionError::InvalidWelcome(_) => {
                CloseCode::PROTOCOL_ERROR
            }
            ConnectionError::TextMessage => CloseCode::UNSUPPORTED_DATA,
            ConnectionError::UnsupportedVersion { .. } => CloseCode::UNSUPPORTED_VERSION,
            ConnectionError::PeerClosed { code, .. } => *code,
            ConnectionError::StreamLayer(e) => e.close_code(),
            ConnectionError::ProbeFlood { .. } => CloseCode::ENHANCE_YOUR_CALM,
            ConnectionError::WebSocket(e) => e.close_code(),
            ConnectionError::TransportLost => return None,
        })
    }

    /// Whether the session survives this failure as a detached, resumable session
    /// (spec/protocol.md §9.1): yes after a lost transport or a close code whose retry
    /// column in §6.2 says yes; no after a code that tells the client not to retry
    /// (1009, 4000, …), since the client will not resume it (§9.2).
    pub fn keeps_session(&self) -> bool {
        crate::backoff::RetryPolicy::for_close_code(self.close_code())
            != crate::backoff::RetryPolicy::Fatal
    }
}

/// A mutator called in a state that does not allow it (a bug in the embedder, reported
/// instead of panicking).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{operation} is not allowed while {state}")]
pub struct StateError {
    /// The operation.
    pub operation: &'static str,
    /// The connection's state.
    pub state: State,
}

/// The code a close frame reports when it carries none (RFC 6455 §7.1.5).
pub(super) const NO_STATUS: CloseCode = CloseCode::from_u(1005);

/// Whether a peer's close code ends the connection in an orderly way (§7.7).
pub(super) fn is_orderly(code: CloseCode) -> bool {
    code == CloseCode::NORMAL
        || code == CloseCode::GOING_AWAY
        || code == NO_STATUS
        || code.is_application()
}

/// What makes a server's WELCOME unusable (spec/protocol.md §7.3, §7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidWelcome {
    /// It says `resumed` for a session the client did not ask to resume.
    #[error("resumed a session the client did not ask for")]
    UnaskedResume,
    /// A heartbeat interval without a timeout, or a timeout not longer than the interval.
    #[error("heartbeat timeout missing or not longer than the interval")]
    HeartbeatTimeout,
}
