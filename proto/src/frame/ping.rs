//! PING and PONG (spec/protocol.md §3.4.9): the application-level heartbeat, for peers
//! that cannot send WebSocket pings (browsers).

use bytes::{BufMut, Bytes, BytesMut};

use super::{put_header, FrameError, FrameHeader, FrameType, StreamId, HEADER_LEN};

/// The largest PING/PONG payload: the same as a WebSocket control frame's, so one
/// heartbeat payload fits either carrier.
pub const MAX_PING_PAYLOAD: usize = 125;

/// PING: opaque payload of 0..=125 bytes that the peer echoes in a PONG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ping(pub Bytes);

/// PONG: the payload of the PING it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pong(pub Bytes);

pub(super) fn load(head: FrameHeader, payload: Bytes) -> Result<Bytes, FrameError> {
    head.require_zero_stream()?;
    if payload.len() > MAX_PING_PAYLOAD {
        return Err(FrameError::BadLength {
            ty: head.ty,
            len: payload.len(),
        });
    }
    Ok(payload)
}

pub(super) fn encode(ty: FrameType, payload: &Bytes, dst: &mut BytesMut) {
    let payload = &payload[..payload.len().min(MAX_PING_PAYLOAD)];
    dst.reserve(HEADER_LEN + payload.len());
    put_header(dst, ty, 0, StreamId::ZERO);
    dst.put_slice(payload);
}
