//! RESET (spec/protocol.md §3.4.6): ends one stream abruptly.

use bytes::{BufMut, BytesMut};

use super::reader::Reader;
use super::{put_header, FrameError, FrameHeader, FrameType, StreamId};
use crate::ResetCode;

/// RESET: `Error Code (32)`; the stream is closed in both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reset {
    /// The stream (non-zero).
    pub stream_id: StreamId,
    /// Why (spec/protocol.md §6.1).
    pub code: ResetCode,
}

impl Reset {
    pub(crate) fn load(head: FrameHeader, payload: &[u8]) -> Result<Self, FrameError> {
        let stream_id = head.require_stream()?;
        if payload.len() != 4 {
            return Err(FrameError::BadLength {
                ty: FrameType::Reset,
                len: payload.len(),
            });
        }
        let code = ResetCode::from_u(Reader::new(FrameType::Reset, payload).u32()?);
        Ok(Reset { stream_id, code })
    }

    pub(crate) fn encode(&self, dst: &mut BytesMut) {
        dst.reserve(12);
        put_header(dst, FrameType::Reset, 0, self.stream_id);
        dst.put_u32(self.code.value());
    }
}
