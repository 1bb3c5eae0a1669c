//! The frame codec (spec/protocol.md §3).
//!
//! Every Tether frame travels as exactly one binary WebSocket message: an 8-byte header
//! followed by the payload, whose length is the rest of the message.
//!
//! ```text
//!  0               1               2               3
//! +---------------+---------------+-------------------------------+
//! |   Type (8)    |   Flags (8)   |     Reserved (16), zero       |
//! +---------------+---------------+-------------------------------+
//! |                      Stream Identifier (32)                   |
//! +---------------------------------------------------------------+
//! |                     Payload (0 .. max_frame_payload)        ...
//! ```
//!
//! [`Frame::decode`] takes the whole message as `Bytes` and copies no payload: a DATA
//! payload, a PING payload, HELLO metadata and every header value of a HEADERS frame are
//! slices of the message. [`Frame::encode`] appends to a caller-supplied `BytesMut`.
//!
//! Unlike a byte-stream codec there is no "need more bytes" outcome: the WebSocket layer
//! delivers whole messages, so a short message is an error ([`FrameError::TruncatedHeader`]).

mod data;
mod error;
mod go_away;
mod handshake;
mod headers;
mod ping;
mod reader;
mod reset;
mod settings;
mod window_update;

pub use data::Data;
pub use error::{FrameError, Reaction};
pub use go_away::GoAway;
pub use handshake::{
    parse_metadata, Hello, Resume, ResumeToken, Welcome, MAX_METADATA_DEPTH, MAX_VERSIONS,
};
pub use headers::{Head, Headers};
pub use ping::{Ping, Pong, MAX_PING_PAYLOAD};
pub use reset::Reset;
pub use settings::{SettingError, Settings};
pub use window_update::{WindowUpdate, MAX_INCREMENT};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::fmt;

use crate::{Limits, Side};

/// Length of the fixed frame header, in bytes (spec/protocol.md §3.1).
///
/// Eight, so that a payload starts 8-byte aligned whenever the message buffer does.
pub const HEADER_LEN: usize = 8;

/// A stream identifier (spec/protocol.md §3.2). `0` names the connection itself; streams
/// opened by the client are odd, streams opened by the server are even.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId(u32);

impl StreamId {
    /// The connection (stream 0).
    pub const ZERO: StreamId = StreamId(0);

    /// Wraps a raw identifier.
    pub const fn new(id: u32) -> Self {
        StreamId(id)
    }

    /// The raw identifier.
    pub const fn value(self) -> u32 {
        self.0
    }

    /// Whether this is stream 0, the connection.
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Whether the client opened this stream (odd identifiers).
    pub const fn is_client_initiated(self) -> bool {
        self.0 % 2 == 1
    }

    /// Whether the server opened this stream (even, non-zero identifiers).
    pub const fn is_server_initiated(self) -> bool {
        self.0 != 0 && self.0 % 2 == 0
    }

    /// The side that opened this stream, from its parity (spec/protocol.md §3.2: the client
    /// opens odd ids, the server even ones); `None` for stream 0, the connection.
    pub const fn initiator(self) -> Option<Side> {
        if self.0 == 0 {
            None
        } else if self.0 % 2 == 1 {
            Some(Side::Client)
        } else {
            Some(Side::Server)
        }
    }

    /// Whether an endpoint on `side` opened this stream (spec/protocol.md §3.2): `false` for
    /// the peer's streams and for stream 0.
    pub const fn is_local(self, side: Side) -> bool {
        match side {
            Side::Client => self.is_client_initiated(),
            Side::Server => self.is_server_initiated(),
        }
    }
}

impl From<u32> for StreamId {
    fn from(id: u32) -> Self {
        StreamId(id)
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamId({})", self.0)
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The frame types of Tether v1 (spec/protocol.md §3.3). Any other value is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum FrameType {
    /// Client's opening handshake message (§3.4.1).
    Hello = 0x01,
    /// Server's handshake answer (§3.4.2).
    Welcome = 0x02,
    /// Client's handshake confirmation (§3.4.3).
    Ack = 0x03,
    /// A request head, response head or trailers (§3.4.4).
    Headers = 0x04,
    /// Body bytes (§3.4.5).
    Data = 0x05,
    /// Abrupt end of one stream (§3.4.6).
    Reset = 0x06,
    /// Flow-control credit (§3.4.7).
    WindowUpdate = 0x07,
    /// Graceful shutdown notice (§3.4.8).
    GoAway = 0x08,
    /// Application-level heartbeat probe (§3.4.9).
    Ping = 0x09,
    /// Answer to a PING (§3.4.9).
    Pong = 0x0a,
}

impl FrameType {
    /// The type of a raw type byte, or `None` for a value v1 does not define.
    pub const fn from_u8(ty: u8) -> Option<Self> {
        Some(match ty {
            0x01 => FrameType::Hello,
            0x02 => FrameType::Welcome,
            0x03 => FrameType::Ack,
            0x04 => FrameType::Headers,
            0x05 => FrameType::Data,
            0x06 => FrameType::Reset,
            0x07 => FrameType::WindowUpdate,
            0x08 => FrameType::GoAway,
            0x09 => FrameType::Ping,
            0x0a => FrameType::Pong,
            _ => return None,
        })
    }

    /// The spec's name of the type (`"WINDOW_UPDATE"`).
    pub const fn name(self) -> &'static str {
        match self {
            FrameType::Hello => "HELLO",
            FrameType::Welcome => "WELCOME",
            FrameType::Ack => "ACK",
            FrameType::Headers => "HEADERS",
            FrameType::Data => "DATA",
            FrameType::Reset => "RESET",
            FrameType::WindowUpdate => "WINDOW_UPDATE",
            FrameType::GoAway => "GOAWAY",
            FrameType::Ping => "PING",
            FrameType::Pong => "PONG",
        }
    }
}

impl fmt::Display for FrameType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The fixed part of a received frame, handed to each type's `load`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameHeader {
    pub(crate) ty: FrameType,
    pub(crate) flags: u8,
    pub(crate) stream_id: StreamId,
}

impl FrameHeader {
    pub(crate) fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// For frames that belong to the connection (§3.2).
    pub(crate) fn require_zero_stream(&self) -> Result<(), FrameError> {
        if self.stream_id.is_zero() {
            Ok(())
        } else {
            Err(FrameError::StreamIdNotZero {
                ty: self.ty,
                stream_id: self.stream_id,
            })
        }
    }

    /// For frames that belong to one stream (§3.2).
    pub(crate) fn require_stream(&self) -> Result<StreamId, FrameError> {
        if self.stream_id.is_zero() {
            Err(FrameError::StreamIdZero { ty: self.ty })
        } else {
            Ok(self.stream_id)
        }
    }
}

/// Appends a frame header; the payload follows it.
pub(crate) fn put_header(dst: &mut BytesMut, ty: FrameType, flags: u8, stream_id: StreamId) {
    dst.put_u8(ty as u8);
    dst.put_u8(flags);
    dst.put_u16(0);
    dst.put_u32(stream_id.value());
}

/// One decoded Tether frame.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Frame {
    /// HELLO (§3.4.1).
    Hello(Hello),
    /// WELCOME (§3.4.2).
    Welcome(Welcome),
    /// ACK (§3.4.3).
    Ack,
    /// HEADERS (§3.4.4).
    Headers(Headers),
    /// DATA (§3.4.5).
    Data(Data),
    /// RESET (§3.4.6).
    Reset(Reset),
    /// WINDOW_UPDATE (§3.4.7).
    WindowUpdate(WindowUpdate),
    /// GOAWAY (§3.4.8).
    GoAway(GoAway),
    /// PING (§3.4.9).
    Ping(Ping),
    /// PONG (§3.4.9).
    Pong(Pong),
}

impl Frame {
    /// Decodes one binary WebSocket message (spec/protocol.md §3).
    ///
    /// Payload bytes are not copied: slices of `msg` end up in the frame. On error, the
    /// [`FrameError::reaction`] says what the receiver does (close or reset a stream).
    ///
    /// ```
    /// use bytes::Bytes;
    /// use tether_proto::{Frame, Limits};
    /// let msg = Bytes::from_static(b"\x05\x01\x00\x00\x00\x00\x00\x01hi");
    /// let Frame::Data(data) = Frame::decode(msg, &Limits::default())? else { unreachable!() };
    /// assert_eq!(data.stream_id.value(), 1);
    /// assert!(data.end_stream);
    /// assert_eq!(&data.payload[..], b"hi");
    /// # Ok::<(), tether_proto::FrameError>(())
    /// ```
    pub fn decode(mut msg: Bytes, limits: &Limits) -> Result<Frame, FrameError> {
        if msg.len() < HEADER_LEN {
            return Err(FrameError::TruncatedHeader { len: msg.len() });
        }
        let raw_ty = msg[0];
        let ty = FrameType::from_u8(raw_ty).ok_or(FrameError::UnknownType { ty: raw_ty })?;
        let flags = msg[1];
        let stream_id = StreamId(u32::from_be_bytes([msg[4], msg[5], msg[6], msg[7]]));
        let len = msg.len() - HEADER_LEN;
        if len > limits.max_frame_payload as usize {
            return Err(FrameError::PayloadTooLarge {
                ty,
                len,
                max: limits.max_frame_payload,
            });
        }
        // `advance` moves the start of the same buffer: no copy, no allocation.
        msg.advance(HEADER_LEN);
        let head = FrameHeader {
            ty,
            flags,
            stream_id,
        };
        // Each arm gives the result itself: wrapped after a `?`, a frame (232 bytes with a
        // request head) was copied once more on its way out.
        match ty {
            FrameType::Hello => Hello::load(head, msg, limits).map(Frame::Hello),
            FrameType::Welcome => Welcome::load(head, &msg).map(Frame::Welcome),
            FrameType::Ack => {
                head.require_zero_stream()?;
                if !msg.is_empty() {
                    return Err(FrameError::BadLength { ty, len });
                }
                Ok(Frame::Ack)
            }
            FrameType::Headers => Headers::load(head, msg, limits).map(Frame::Headers),
            FrameType::Data => Data::load(head, msg).map(Frame::Data),
            FrameType::Reset => Reset::load(head, &msg).map(Frame::Reset),
            FrameType::WindowUpdate => WindowUpdate::load(head, &msg).map(Frame::WindowUpdate),
            FrameType::GoAway => GoAway::load(head, &msg).map(Frame::GoAway),
            FrameType::Ping => ping::load(head, msg).map(|p| Frame::Ping(Ping(p))),
            FrameType::Pong => ping::load(head, msg).map(|p| Frame::Pong(Pong(p))),
        }
    }

    /// Appends the encoded frame (header and payload) to `dst`.
    ///
    /// Encoding does not check the peer's limits: the sender's state machine sizes DATA
    /// frames and checks head sizes before it gets here.
    pub fn encode(&self, dst: &mut BytesMut) {
        match self {
            Frame::Hello(f) => f.encode(dst),
            Frame::Welcome(f) => f.encode(dst),
            Frame::Ack => put_header(dst, FrameType::Ack, 0, StreamId::ZERO),
            Frame::Headers(f) => f.encode(dst),
            Frame::Data(f) => f.encode(dst),
            Frame::Reset(f) => f.encode(dst),
            Frame::WindowUpdate(f) => f.encode(dst),
            Frame::GoAway(f) => f.encode(dst),
            Frame::Ping(f) => ping::encode(FrameType::Ping, &f.0, dst),
            Frame::Pong(f) => ping::encode(FrameType::Pong, &f.0, dst),
        }
    }

    /// The frame's type.
    pub fn frame_type(&self) -> FrameType {
        match self {
            Frame::Hello(_) => FrameType::Hello,
            Frame::Welcome(_) => FrameType::Welcome,
            Frame::Ack => FrameType::Ack,
            Frame::Headers(_) => FrameType::Headers,
            Frame::Data(_) => FrameType::Data,
            Frame::Reset(_) => FrameType::Reset,
            Frame::WindowUpdate(_) => FrameType::WindowUpdate,
            Frame::GoAway(_) => FrameType::GoAway,
            Frame::Ping(_) => FrameType::Ping,
            Frame::Pong(_) => FrameType::Pong,
        }
    }

    /// The stream the frame belongs to (`StreamId::ZERO` for connection frames).
    pub fn stream_id(&self) -> StreamId {
        match self {
            Frame::Headers(f) => f.stream_id,
            Frame::Data(f) => f.stream_id,
            Frame::Reset(f) => f.stream_id,
            Frame::WindowUpdate(f) => f.stream_id,
            _ => StreamId::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_msg(len: usize) -> Bytes {
        let mut buf = BytesMut::new();
        Frame::Data(Data {
            stream_id: StreamId::new(1),
            end_stream: false,
            payload: Bytes::from(vec![0; len]),
        })
        .encode(&mut buf);
        buf.freeze()
    }

    #[test]
    fn payload_limit_is_inclusive() {
        let limits = Limits {
            max_frame_payload: 1024,
            ..Limits::default()
        };
        assert!(Frame::decode(data_msg(1024), &limits).is_ok());
        let err = Frame::decode(data_msg(1025), &limits).unwrap_err();
        assert_eq!(
            err,
            FrameError::PayloadTooLarge {
                ty: FrameType::Data,
                len: 1025,
                max: 1024
            }
        );
        assert_eq!(
            err.reaction(),
            Reaction::Close(crate::CloseCode::MESSAGE_TOO_BIG)
        );
    }

    #[test]
    fn the_header_alone_is_a_frame() {
        for len in 0..HEADER_LEN {
            let err = Frame::decode(data_msg(0).slice(..len), &Limits::default()).unwrap_err();
            assert_eq!(err, FrameError::TruncatedHeader { len });
        }
        assert!(Frame::decode(data_msg(0), &Limits::default()).is_ok());
    }

    #[test]
    fn stream_id_parity() {
        assert!(StreamId::new(1).is_client_initiated());
        assert!(StreamId::new(2).is_server_initiated());
        assert!(!StreamId::ZERO.is_server_initiated() && !StreamId::ZERO.is_client_initiated());
        assert!(StreamId::new(u32::MAX).is_client_initiated());
        // spec/protocol.md §3.2: parity names the opener; stream 0 has none.
        assert_eq!(StreamId::new(7).initiator(), Some(Side::Client));
        assert_eq!(StreamId::new(u32::MAX).initiator(), Some(Side::Client));
        assert_eq!(StreamId::new(8).initiator(), Some(Side::Server));
        assert_eq!(StreamId::ZERO.initiator(), None);
        assert!(
            StreamId::new(3).is_local(Side::Client) && !StreamId::new(3).is_local(Side::Server)
        );
        assert!(
            StreamId::new(4).is_local(Side::Server) && !StreamId::new(4).is_local(Side::Client)
        );
        assert!(!StreamId::ZERO.is_local(Side::Client) && !StreamId::ZERO.is_local(Side::Server));
    }

    #[test]
    fn every_type_byte_is_known_or_rejected() {
        for ty in 0..=u8::MAX {
            let known = FrameType::from_u8(ty);
            assert_eq!(known.is_some(), (1..=10).contains(&ty));
            if let Some(t) = known {
                assert_eq!(t as u8, ty);
            }
        }
    }
}
