//! WINDOW_UPDATE (spec/protocol.md §3.4.7): flow-control credit.

use bytes::{BufMut, BytesMut};

use super::reader::Reader;
use super::{put_header, FrameError, FrameHeader, FrameType, StreamId};

/// The largest increment (and the largest window), 2^31 - 1.
pub const MAX_INCREMENT: u32 = (1 << 31) - 1;

/// WINDOW_UPDATE: `R (1) | Increment (31)`. Stream 0 credits the connection window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowUpdate {
    /// The stream credited (0 = the connection).
    pub stream_id: StreamId,
    /// Bytes of credit, 1..=2^31-1.
    pub increment: u32,
}

impl WindowUpdate {
    pub(crate) fn load(head: FrameHeader, payload: &[u8]) -> Result<Self, FrameError> {
        if payload.len() != 4 {
            return Err(FrameError::BadLength {
                ty: FrameType::WindowUpdate,
                len: payload.len(),
            });
        }
        // The top bit is reserved: ignored on receipt.
        let increment = Reader::new(FrameType::WindowUpdate, payload).u32()? & MAX_INCREMENT;
        if increment == 0 {
            return Err(FrameError::ZeroWindowIncrement {
                stream_id: head.stream_id,
            });
        }
        Ok(WindowUpdate {
            stream_id: head.stream_id,
            increment,
        })
    }

    pub(crate) fn encode(&self, dst: &mut BytesMut) {
        dst.reserve(12);
        put_header(dst, FrameType::WindowUpdate, 0, self.stream_id);
        dst.put_u32(self.increment & MAX_INCREMENT);
    }
}
