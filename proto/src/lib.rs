//! # tether-proto
//!
//! Sans-IO state machines and the wire codec of Tether: REST over one WebSocket, in both
//! directions. This crate does no I/O: no sockets, no threads, no clocks, no global
//! randomness. Bytes, time and random numbers come in as arguments; frames, deadlines and
//! events come out. The normative description of everything here is `spec/protocol.md`.
//!
//! ## The machines
//!
//! A [`Connection`] is one side of one WebSocket: handshake, heartbeat, session resume,
//! graceful close and, once established, the stream layer ([`streams`]) that carries the
//! HTTP exchanges. A server shares one [`SessionStore`] between its connections. How to
//! drive them (inputs with `now`, the order in which outputs are drained, what the machine
//! does by itself and what is left to the embedder) is written once, in
//! [the contract](connection#the-contract); the README's "Embedding tether-proto" walks
//! through a whole client and server loop in it.
//!
//! ## The codec
//!
//! One Tether frame is one binary WebSocket message. [`Frame::decode`] turns a received
//! message into a typed [`Frame`] without copying payload bytes; [`Frame::encode`] appends
//! a frame to a `BytesMut`. A message that is not a valid frame gives a [`FrameError`]
//! whose [`reaction`](FrameError::reaction) is the spec's answer: close the connection
//! with a [`CloseCode`], or reset one stream with a [`ResetCode`].
//!
//! ```
//! use bytes::BytesMut;
//! use http::{Method, Uri};
//! use tether_proto::{Frame, Head, Headers, Limits, RequestHead, StreamId};
//!
//! let mut head = RequestHead::new(Method::GET, Uri::from_static("/status?verbose=1"));
//! head.headers.insert("accept", "application/json".parse().unwrap());
//! let frame = Frame::Headers(Headers {
//!     stream_id: StreamId::new(1),
//!     end_stream: true,
//!     head: Head::Request(head),
//! });
//!
//! let mut buf = BytesMut::new();
//! frame.encode(&mut buf);
//! let decoded = Frame::decode(buf.freeze(), &Limits::default()).unwrap();
//! assert_eq!(decoded, frame);
//! ```
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

pub mod abuse;
pub mod backoff;
mod codes;
pub mod connection;
pub mod demo;
pub mod frame;
pub mod head;
mod limits;
mod random;
mod side;
pub mod streams;

pub use codes::{CloseCode, ResetCode};
pub use connection::{Connection, ConnectionError, SessionStore, WsMessage};
pub use frame::{
    parse_metadata, Data, Frame, FrameError, FrameType, GoAway, Head, Headers, Hello, Ping, Pong,
    Reaction, Reset, Resume, ResumeToken, Settings, StreamId, Welcome, WindowUpdate,
};
pub use head::{EncodedSize, HeadError, RequestHead, ResponseHead};
pub use limits::{Limits, LimitsError};
pub use random::{RandomError, RandomSource};
pub use side::{Initiator, Side};

/// The protocol version this crate speaks (spec/protocol.md §2.2).
pub const PROTOCOL_VERSION: u16 = 1;

/// The WebSocket subprotocol name negotiated with `Sec-WebSocket-Protocol` (§2).
pub const SUBPROTOCOL: &str = "tether.v1";

/// The README's Rust examples, compiled and run as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
