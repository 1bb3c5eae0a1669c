//! HEADERS (spec/protocol.md §3.4.4): a request head, a response head, or trailers.

use bytes::{Bytes, BytesMut};
use http::HeaderMap;

use super::{put_header, FrameError, FrameHeader, FrameType, StreamId};
use crate::head::{self, RequestHead, ResponseHead};
use crate::Limits;

/// HEADERS flag: no DATA follows in this direction.
pub(crate) const END_STREAM: u8 = 0x01;
/// HEADERS flag: the payload is a response head (status line).
pub(crate) const RESPONSE: u8 = 0x02;
/// HEADERS flag: the payload is trailers (field lines only); END_STREAM must be set.
pub(crate) const TRAILERS: u8 = 0x04;

/// What a HEADERS frame carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// A request head: opens a stream.
    Request(RequestHead),
    /// A response head (1xx heads are informational and may repeat; §4.2).
    Response(ResponseHead),
    /// Trailer fields: the last frame of one direction of a stream.
    Trailers(HeaderMap),
}

/// HEADERS: an HTTP head on one stream (spec/protocol.md §3.4.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Headers {
    /// The stream (non-zero).
    pub stream_id: StreamId,
    /// Whether this ends the sender's direction of the stream (always true for trailers).
    pub end_stream: bool,
    /// The head.
    pub head: Head,
}

impl Headers {
    pub(crate) fn load(
        head: FrameHeader,
        payload: Bytes,
        limits: &Limits,
    ) -> Result<Self, FrameError> {
        let stream_id = head.require_stream()?;
        let (response, trailers, end_stream) =
            (head.has(RESPONSE), head.has(TRAILERS), head.has(END_STREAM));
        if trailers && (response || !end_stream) {
            return Err(FrameError::ConflictingFlags {
                stream_id,
                flags: head.flags,
            });
        }
        let parsed = if trailers {
            head::decode_trailers(&payload, limits).map(Head::Trailers)
        } else if response {
            ResponseHead::decode(&payload, limits).map(Head::Response)
        } else {
            RequestHead::decode(&payload, limits).map(Head::Request)
        };
        let head = parsed.map_err(|error| FrameError::Head { stream_id, error })?;
        Ok(Headers {
            stream_id,
            end_stream,
            head,
        })
    }

    pub(crate) fn encode(&self, dst: &mut BytesMut) {
        let kind = match self.head {
            Head::Request(_) => 0,
            Head::Response(_) => RESPONSE,
            Head::Trailers(_) => TRAILERS | END_STREAM,
        };
        let flags = kind | if self.end_stream { END_STREAM } else { 0 };
        put_header(dst, FrameType::Headers, flags, self.stream_id);
        match &self.head {
            Head::Request(h) => h.encode(dst),
            Head::Response(h) => h.encode(dst),
            Head::Trailers(t) => head::encode_trailers(t, dst),
        }
    }
}
