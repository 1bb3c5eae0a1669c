//! Borrowed access to one open stream: [`StreamMut`], from [`Streams::stream`] or
//! [`Connection::stream`](crate::Connection::stream).

use bytes::Bytes;
use http::HeaderMap;
use std::time::Instant;

use super::{SendError, Streams};
use crate::{ResetCode, ResponseHead, StreamId};

/// Why a stream cannot be reached through [`Streams::stream`] or
/// [`Connection::stream`](crate::Connection::stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The connection has no stream layer: the handshake is not complete, or the
    /// connection is over (every stream then ended with
    /// [`Outcome::ConnectionLost`](super::Outcome::ConnectionLost)).
    #[error("the connection has no streams (not established, or over)")]
    NoStreams,
    /// The stream existed and has ended (its [`StreamEvent::Closed`](super::StreamEvent::Closed)
    /// was reported, or is queued).
    #[error("stream {0} is closed")]
    Closed(StreamId),
    /// No stream with this id was ever opened.
    #[error("stream {0} was never opened")]
    Unknown(StreamId),
}

/// One open stream, borrowed from its machine: everything the embedder does to a stream
/// goes through here (answer a request, send a body, give up on it). The view holds the
/// machine mutably, so the caller drains outputs after dropping it, as after any other
/// mutator (see [the contract](crate::connection#the-contract)).
///
/// A method that finds the stream gone meanwhile (it was reset or finished by an earlier
/// call through the same view) returns [`SendError::UnknownStream`] or does nothing, as
/// its documentation says.
#[derive(Debug)]
pub struct StreamMut<'a> {
    pub(super) streams: &'a mut Streams,
    pub(super) id: StreamId,
}

impl StreamMut<'_> {
    /// The stream's id.
    pub fn id(&self) -> StreamId {
        self.id
    }

    /// Whether the stream takes more data now (see [`Streams::is_writable`]).
    pub fn is_writable(&self) -> bool {
        self.streams.is_writable(self.id)
    }

    /// Body bytes queued for sending on this stream.
    pub fn queued_bytes(&self) -> usize {
        self.streams.queued_bytes(self.id)
    }

    /// Whether the stream takes data now; if not, a
    /// [`StreamEvent::Writable`](super::StreamEvent::Writable) follows when it does (see
    /// [`Streams::poll_writable`]).
    pub fn poll_writable(&mut self) -> bool {
        self.streams.poll_writable(self.id)
    }

    /// Sends the response head of a request the peer opened (see
    /// [`Streams::send_response`]). A head over the peer's limits resets the stream with
    /// INTERNAL_ERROR, and [`SendError::HeadTooLarge`] says so: nothing more to do.
    pub fn send_response(&mut self, head: ResponseHead, end_stream: bool) -> Result<(), SendError> {
        self.streams.send_response(self.id, head, end_stream)
    }

    /// Queues body bytes, and with `end_stream` the end of the body (see
    /// [`Streams::send_data`]); [`SendError::Blocked`] hands the bytes back until
    /// [`StreamEvent::Writable`](super::StreamEvent::Writable).
    pub fn send_data(&mut self, data: Bytes, end_stream: bool) -> Result<(), SendError> {
        self.streams.send_data(self.id, data, end_stream)
    }

    /// Queues trailers, which end our direction (see [`Streams::send_trailers`]).
    pub fn send_trailers(&mut self, trailers: HeaderMap) -> Result<(), SendError> {
        self.streams.send_trailers(self.id, trailers)
    }

    /// Resets the stream with `code` (a handler failed, a body could not be produced).
    pub fn reset(&mut self, code: ResetCode) {
        self.streams.reset(self.id, code);
    }

    /// This end can no longer complete its part of the stream (the caller gave up, a body
    /// failed, a handler crashed): the machine resets it with the code the spec gives,
    /// CANCEL for a stream this end opened and INTERNAL_ERROR for the peer's (see
    /// [`Streams::abandon`]).
    pub fn abandon(&mut self, now: Instant) {
        self.streams.abandon(self.id, now);
    }

    /// The requester gives up on a stream it opened (`code`: usually CANCEL); the RESET
    /// of a very young stream is held back as spec/protocol.md §10.8 asks (see
    /// [`Streams::cancel`]).
    pub fn cancel(&mut self, code: ResetCode, now: Instant) {
        self.streams.cancel(self.id, code, now);
    }

    /// With [`StreamsConfig::manual_release`](super::StreamsConfig::manual_release): the
    /// application consumed `n` received bytes, which go back to the peer's window (see
    /// [`Streams::release_capacity`]). Without it the machine has released them already
    /// and this does nothing.
    pub fn release_capacity(&mut self, n: u32) {
        self.streams.release_capacity(self.id, n);
    }

    /// [`release_capacity`](Self::release_capacity) at `now`: the grant it may send is
    /// timed with `now` instead of the latest input's time (see
    /// [`Streams::release_capacity_at`]).
    pub fn release_capacity_at(&mut self, n: u32, now: Instant) {
        self.streams.release_capacity_at(self.id, n, now);
    }

    /// The body being received on this stream is not wanted any more: the machine picks
    /// the reaction (CANCEL for our own request; NO_ERROR once our response is out for
    /// the peer's), see [`Streams::discard_body`]. With manual release, bytes received and
    /// not yet released are released here too, and what still arrives is released as it
    /// comes.
    pub fn discard_body(&mut self, now: Instant) {
        self.streams.discard_body(self.id, now);
    }
}
