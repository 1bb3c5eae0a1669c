//! The WebSocket messages a [`Connection`](super::Connection) consumes and produces.

use bytes::{BufMut, Bytes, BytesMut};

use crate::frame::HEADER_LEN;
use crate::CloseCode;

/// One WebSocket message, independent of any WebSocket library.
///
/// The embedder converts between this and its library's message type (for
/// tungstenite: `Message::Binary`, `Text`, `Ping`, `Pong`, `Close`; continuation frames
/// never reach the application there, and must not reach the machine either).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WsMessage {
    /// A binary message: one Tether frame (spec/protocol.md §3).
    Binary(Bytes),
    /// A text message. Tether never sends one; receiving one closes the connection with
    /// `UNSUPPORTED_DATA` (1003). The bytes are not checked to be UTF-8.
    Text(Bytes),
    /// A WebSocket ping control frame (payload of at most 125 bytes).
    Ping(Bytes),
    /// A WebSocket pong control frame.
    Pong(Bytes),
    /// A WebSocket close frame; `None` when it carried no status code.
    Close(Option<CloseFrame>),
}

impl WsMessage {
    /// The message's payload size in bytes (a close frame: its code and reason).
    pub fn payload_len(&self) -> usize {
        match self {
            WsMessage::Binary(b) | WsMessage::Text(b) | WsMessage::Ping(b) | WsMessage::Pong(b) => {
                b.len()
            }
            WsMessage::Close(Some(f)) => 2 + f.reason.len(),
            WsMessage::Close(None) => 0,
        }
    }
}

/// One message to send, as [`Connection::poll_transmit`](super::Connection::poll_transmit)
/// hands it out.
///
/// DATA frames come in parts so that the body bytes are never copied by the machine: the
/// payload is the very [`Bytes`] the application queued (or a slice of it). A writer that
/// builds WebSocket frames itself sends the parts with one vectored write (spec/protocol.md
/// §3.1: one Tether frame per binary message, so the WebSocket payload is
/// `header ++ payload`); one that needs a single buffer calls
/// [`into_message`](Self::into_message), which copies the payload once.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Transmit {
    /// A whole message: the machine's own frames (handshake, heartbeat, GOAWAY), the
    /// stream layer's frames other than DATA (heads, resets, window updates), WebSocket
    /// control frames and the close frame.
    Message(WsMessage),
    /// One binary message given in two parts: the 8-byte Tether frame header of a DATA
    /// frame (spec/protocol.md §3.2, §3.4.5) followed by its payload.
    Data {
        /// The frame header, the first 8 bytes of the binary message.
        header: [u8; HEADER_LEN],
        /// The body bytes, the rest of the binary message (may be empty).
        payload: Bytes,
    },
}

impl Transmit {
    /// The WebSocket message's payload size in bytes (for a DATA frame: header and
    /// payload).
    pub fn payload_len(&self) -> usize {
        match self {
            Transmit::Message(m) => m.payload_len(),
            Transmit::Data { payload, .. } => HEADER_LEN + payload.len(),
        }
    }

    /// A binary message's payload as two slices to be sent one after the other (the
    /// second is empty for a whole message); `None` for any other kind of message.
    /// Allocates and copies nothing.
    pub fn binary_parts(&self) -> Option<[&[u8]; 2]> {
        match self {
            Transmit::Message(WsMessage::Binary(b)) => Some([b, &[]]),
            Transmit::Data { header, payload } => Some([header, payload]),
            Transmit::Message(_) => None,
        }
    }

    /// The message as one buffer. For [`Transmit::Data`] this allocates and copies the
    /// payload once (the cost the parts exist to avoid); a whole message is returned as
    /// it is.
    pub fn into_message(self) -> WsMessage {
        match self {
            Transmit::Message(m) => m,
            Transmit::Data { header, payload } => {
                let mut buf = BytesMut::with_capacity(HEADER_LEN + payload.len());
                buf.put_slice(&header);
                buf.put_slice(&payload);
                WsMessage::Binary(buf.freeze())
            }
        }
    }
}

impl From<WsMessage> for Transmit {
    fn from(msg: WsMessage) -> Self {
        Transmit::Message(msg)
    }
}

impl From<Transmit> for WsMessage {
    /// [`Transmit::into_message`]: copies a DATA frame's payload.
    fn from(t: Transmit) -> Self {
        t.into_message()
    }
}

/// The status carried by a WebSocket close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The close code.
    pub code: CloseCode,
    /// Human-readable detail (at most 123 bytes on the wire).
    pub reason: String,
}

/// The largest close reason a WebSocket close frame can carry (RFC 6455 §5.5: a control
/// frame payload is at most 125 bytes, two of which are the code).
pub const MAX_CLOSE_REASON: usize = 123;

impl CloseFrame {
    /// A close frame whose reason is cut (at a character boundary) to
    /// [`MAX_CLOSE_REASON`] bytes.
    pub fn new(code: CloseCode, reason: &str) -> Self {
        let mut end = reason.len().min(MAX_CLOSE_REASON);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        CloseFrame {
            code,
            reason: reason[..end].to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reason_is_cut_at_a_char_boundary() {
        let long = "é".repeat(100); // 200 bytes
        let frame = CloseFrame::new(CloseCode::NORMAL, &long);
        assert_eq!(frame.reason.len(), 122);
        assert!(frame.reason.chars().all(|c| c == 'é'));
        assert_eq!(CloseFrame::new(CloseCode::NORMAL, "bye").reason, "bye");
    }

    #[test]
    fn data_parts_join_to_the_encoded_frame() {
        use crate::frame::{Data, Frame, StreamId};
        let payload = Bytes::from(vec![7u8; 300]);
        let data = Data {
            stream_id: StreamId::new(5),
            end_stream: true,
            payload: payload.clone(),
        };
        let mut encoded = BytesMut::new();
        Frame::Data(data.clone()).encode(&mut encoded);
        let t = Transmit::Data {
            header: data.header(),
            payload,
        };
        assert_eq!(t.payload_len(), encoded.len());
        let [a, b] = t.binary_parts().unwrap();
        assert_eq!([a, b].concat(), encoded[..]);
        assert_eq!(t.into_message(), WsMessage::Binary(encoded.freeze()));
        let whole = Transmit::from(WsMessage::Binary(Bytes::from_static(b"abc")));
        assert_eq!(whole.binary_parts(), Some([&b"abc"[..], &[][..]]));
        assert_eq!(
            Transmit::from(WsMessage::Ping(Bytes::new())).binary_parts(),
            None
        );
    }
}
