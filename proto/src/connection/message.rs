//! The WebSocket messages a [`Connection`](super::Connection) consumes and produces.

use bytes::Bytes;

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
}
