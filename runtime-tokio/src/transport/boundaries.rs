//! [`Boundaries`]: where the WebSocket frames (RFC 6455 §5.2) of a byte stream begin and
//! end, followed from the bytes themselves as they pass on to tungstenite.
//!
//! [`ReadAhead`](super::read_ahead::ReadAhead) uses it to hand tungstenite its bytes one
//! frame at a time, and to know when tungstenite holds no byte of a frame it has not parsed
//! yet: only then may it read a whole binary frame itself (see its module docs). Headers
//! are parsed with tungstenite's own parser ([`FrameHeader::parse`]), so both agree on
//! every header by construction.

use std::io::Cursor;

use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;

/// The longest frame header: 2 bytes, an 8-byte length, a 4-byte masking key.
pub(crate) const MAX_HEADER: usize = 14;

/// A header at the start of some bytes: the header, its size in bytes as sent (a peer may
/// use a longer length form than needed), and the payload length it announces.
#[derive(Debug)]
pub(crate) struct Header {
    pub(crate) header: FrameHeader,
    pub(crate) size: usize,
    pub(crate) payload: u64,
}

/// What the bytes at the start of a buffer say about the frame there.
#[derive(Debug)]
pub(crate) enum Peek {
    /// Fewer bytes than the header needs.
    Incomplete,
    /// A header tungstenite would refuse (a reserved opcode): it fails the connection
    /// on it, and nothing after it is anyone's business.
    Invalid,
    /// A whole header.
    Header(Header),
}

/// Parses the header at the start of `bytes` (tungstenite's parser).
pub(crate) fn peek(bytes: &[u8]) -> Peek {
    let mut cursor = Cursor::new(bytes);
    match FrameHeader::parse(&mut cursor) {
        Ok(Some((header, payload))) => Peek::Header(Header {
            header,
            size: cursor.position() as usize,
            payload,
        }),
        Ok(None) => Peek::Incomplete,
        Err(_) => Peek::Invalid,
    }
}

/// The frame structure of the bytes passed so far. 24 bytes: every connection holds one.
#[derive(Debug, Default)]
pub(crate) struct Boundaries {
    /// Payload bytes of the current frame not passed yet.
    left: u64,
    /// The bytes of a header passed only in part (`head[..head_len]`).
    head: [u8; MAX_HEADER],
    head_len: u8,
    /// [`FRAGMENTED`], [`CLOSED`], [`LOST`].
    flags: u8,
}

/// Inside a fragmented data message (its first frame passed, its final one not yet).
const FRAGMENTED: u8 = 1;
/// A close frame passed: nothing after it is a message any more.
const CLOSED: u8 = 2;
/// A header failed to parse: the frame structure of what follows is unknown.
const LOST: u8 = 4;

impl Boundaries {
    /// Whether the bytes passed so far end exactly at the end of a frame.
    pub(crate) fn at_boundary(&self) -> bool {
        self.head_len == 0 && self.left == 0 && self.flags & LOST == 0
    }

    /// Whether the next frame, if it is a final binary frame, may be read as a whole
    /// message of its own: at a boundary, outside a fragmented message, before any close
    /// frame (tungstenite refuses a data frame in either place, so it must see it).
    pub(crate) fn may_take(&self) -> bool {
        self.at_boundary() && self.flags & (FRAGMENTED | CLOSED) == 0
    }

    /// How many bytes of `next` (the bytes that follow those passed) belong to the
    /// current frame: all of `next` when its end is not known yet (a header still
    /// incomplete, or one that failed to parse).
    pub(crate) fn frame_rest(&self, next: &[u8]) -> usize {
        if self.flags & LOST != 0 {
            return next.len();
        }
        if self.left > 0 {
            return usize::try_from(self.left).map_or(next.len(), |left| left.min(next.len()));
        }
        let had = usize::from(self.head_len);
        let mut head = [0u8; MAX_HEADER];
        head[..had].copy_from_slice(&self.head[..had]);
        let more = (MAX_HEADER - had).min(next.len());
        head[had..had + more].copy_from_slice(&next[..more]);
        match peek(&head[..had + more]) {
            Peek::Header(h) => {
                // A peer may announce any length up to 2^63 (tungstenite refuses it later).
                let total = h.payload.saturating_add((h.size - had) as u64);
                usize::try_from(total).map_or(next.len(), |total| total.min(next.len()))
            }
            Peek::Incomplete | Peek::Invalid => next.len(),
        }
    }

    /// Follows `bytes`, the next bytes passed on.
    pub(crate) fn pass(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && self.flags & LOST == 0 {
            if self.left > 0 {
                let n = usize::try_from(self.left).map_or(bytes.len(), |l| l.min(bytes.len()));
                self.left -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            let had = usize::from(self.head_len);
            let more = (MAX_HEADER - had).min(bytes.len());
            self.head[had..had + more].copy_from_slice(&bytes[..more]);
            match peek(&self.head[..had + more]) {
                Peek::Header(h) => {
                    bytes = &bytes[h.size - had..];
                    self.head_len = 0;
                    self.left = h.payload;
                    self.on_header(&h.header);
                }
                Peek::Incomplete => {
                    // Every byte given was needed (a header is at most MAX_HEADER long).
                    self.head_len += more as u8;
                    bytes = &bytes[more..];
                }
                Peek::Invalid => self.flags |= LOST,
            }
        }
    }

    fn on_header(&mut self, header: &FrameHeader) {
        match header.opcode {
            OpCode::Data(Data::Text | Data::Binary) if !header.is_final => {
                self.flags |= FRAGMENTED;
            }
            OpCode::Data(Data::Continue) if header.is_final => self.flags &= !FRAGMENTED,
            OpCode::Control(Control::Close) => self.flags |= CLOSED,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;

    fn frame(opcode: OpCode, fin: bool, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let header = FrameHeader {
            is_final: fin,
            opcode,
            mask,
            ..FrameHeader::default()
        };
        let mut out = Vec::new();
        Frame::from_payload(header, payload.to_vec().into())
            .format(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn follows_frames_across_any_split() {
        let frames = [
            frame(
                OpCode::Data(Data::Binary),
                true,
                &[7; 300],
                Some([1, 2, 3, 4]),
            ),
            frame(OpCode::Control(Control::Ping), true, b"p", None),
            frame(OpCode::Data(Data::Binary), true, &[9; 70_000], None),
            frame(OpCode::Data(Data::Binary), true, b"", None),
        ];
        let wire: Vec<u8> = frames.concat();
        let ends: Vec<usize> = frames
            .iter()
            .scan(0, |at, f| {
                *at += f.len();
                Some(*at)
            })
            .collect();
        for step in [1, 2, 3, 13, 14, 15, 1000, wire.len()] {
            let mut b = Boundaries::default();
            let mut at = 0;
            while at < wire.len() {
                let rest = b.frame_rest(&wire[at..]);
                assert!(rest > 0);
                // The frame's end is never beyond the next boundary.
                let next_end = *ends.iter().find(|&&e| e > at).unwrap();
                assert!(at + rest <= next_end, "step {step} at {at}");
                let n = step.min(rest);
                b.pass(&wire[at..at + n]);
                at += n;
                assert_eq!(b.at_boundary(), ends.contains(&at), "step {step} at {at}");
            }
        }
    }

    #[test]
    fn fragments_close_and_garbage_forbid_taking() {
        let mut b = Boundaries::default();
        assert!(b.may_take());
        b.pass(&frame(OpCode::Data(Data::Binary), false, b"a", None));
        assert!(
            b.at_boundary() && !b.may_take(),
            "inside a fragmented message"
        );
        b.pass(&frame(OpCode::Data(Data::Continue), false, b"b", None));
        assert!(!b.may_take());
        b.pass(&frame(OpCode::Data(Data::Continue), true, b"c", None));
        assert!(b.may_take(), "the message ended");
        b.pass(&frame(OpCode::Control(Control::Close), true, b"", None));
        assert!(b.at_boundary() && !b.may_take(), "after a close frame");

        let mut b = Boundaries::default();
        b.pass(&[0x83, 0x00]); // a reserved opcode
        assert!(!b.at_boundary() && !b.may_take());
        assert_eq!(b.frame_rest(&[1, 2, 3]), 3);
        assert!(matches!(peek(&[0x8B, 0x00]), Peek::Invalid));
    }

    #[test]
    fn a_long_length_form_counts_as_sent() {
        // A 5-byte payload announced in the 8-byte length form (allowed by tungstenite).
        let mut wire = vec![0x82, 127, 0, 0, 0, 0, 0, 0, 0, 5];
        wire.extend_from_slice(b"hello");
        match peek(&wire) {
            Peek::Header(h) => assert_eq!((h.size, h.payload), (10, 5)),
            other => panic!("{other:?}"),
        }
        let mut b = Boundaries::default();
        assert_eq!(b.frame_rest(&wire), wire.len());
        b.pass(&wire);
        assert!(b.at_boundary());
    }
}
