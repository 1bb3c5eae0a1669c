//! DATA (spec/protocol.md §3.4.5): body bytes of one stream.

use bytes::{BufMut, Bytes, BytesMut};

use super::{put_header, FrameError, FrameHeader, FrameType, StreamId, HEADER_LEN};

/// DATA flag: the last frame of the sender's direction of the stream.
pub(crate) const END_STREAM: u8 = 0x01;

/// DATA: a chunk of a body (spec/protocol.md §3.4.5). The payload is a slice of the
/// received message, never a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Data {
    /// The stream (non-zero).
    pub stream_id: StreamId,
    /// Whether this ends the sender's direction of the stream.
    pub end_stream: bool,
    /// The body bytes (may be empty).
    pub payload: Bytes,
}

impl Data {
    pub(crate) fn load(head: FrameHeader, payload: Bytes) -> Result<Self, FrameError> {
        let stream_id = head.require_stream()?;
        Ok(Data {
            stream_id,
            end_stream: head.has(END_STREAM),
            payload,
        })
    }

    /// Appends only the 8-byte frame header, for a writer that sends the payload from its
    /// own buffer (vectored or chained writes) instead of copying it.
    pub fn encode_header(&self, dst: &mut BytesMut) {
        put_header(
            dst,
            FrameType::Data,
            if self.end_stream { END_STREAM } else { 0 },
            self.stream_id,
        );
    }

    /// The 8-byte frame header as an array (what [`encode_header`](Self::encode_header)
    /// appends), for a writer that sends the payload after it without copying.
    pub fn header(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0] = FrameType::Data as u8;
        h[1] = if self.end_stream { END_STREAM } else { 0 };
        // h[2..4]: reserved, zero (spec/protocol.md §3.2).
        h[4..].copy_from_slice(&self.stream_id.value().to_be_bytes());
        h
    }

    pub(crate) fn encode(&self, dst: &mut BytesMut) {
        dst.reserve(HEADER_LEN + self.payload.len());
        self.encode_header(dst);
        dst.put_slice(&self.payload);
    }
}
