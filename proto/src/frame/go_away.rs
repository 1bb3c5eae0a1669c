//! GOAWAY (spec/protocol.md §3.4.8): graceful shutdown notice.

use bytes::{BufMut, BytesMut};

use super::reader::Reader;
use super::{put_header, FrameError, FrameHeader, FrameType, StreamId};
use crate::ResetCode;

/// GOAWAY: `Last Stream Id (32) | Error Code (32) | Reason (UTF-8, rest)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoAway {
    /// The highest stream id opened by the receiver of this frame that the sender has
    /// processed or may still process; higher ones were not processed and are safe to retry.
    pub last_stream_id: StreamId,
    /// Why (`NO_ERROR` for a graceful shutdown; spec/protocol.md §6.1).
    pub code: ResetCode,
    /// Human-readable detail, for logs (may be empty).
    pub reason: String,
}

impl GoAway {
    pub(crate) fn load(head: FrameHeader, payload: &[u8]) -> Result<Self, FrameError> {
        head.require_zero_stream()?;
        let mut r = Reader::new(FrameType::GoAway, payload);
        let last_stream_id = StreamId::new(r.u32()?);
        let code = ResetCode::from_u(r.u32()?);
        let reason = std::str::from_utf8(r.rest()).map_err(|_| FrameError::InvalidReason)?;
        Ok(GoAway {
            last_stream_id,
            code,
            reason: reason.to_owned(),
        })
    }

    pub(crate) fn encode(&self, dst: &mut BytesMut) {
        dst.reserve(16 + self.reason.len());
        put_header(dst, FrameType::GoAway, 0, StreamId::ZERO);
        dst.put_u32(self.last_stream_id.value());
        dst.put_u32(self.code.value());
        dst.put_slice(self.reason.as_bytes());
    }
}
