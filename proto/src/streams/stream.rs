//! The state of one stream (spec/protocol.md §10.2).
//!
//! Each direction of a stream has its own state; the stream is gone when both are done
//! or when either side resets it.
//!
//! ```text
//!   send side                          receive side
//!
//!   Idle ──head──► Open ──END──► Done   AwaitHead ──head──► Open ──END──► Done
//!    (responder       │                  (requester:        │
//!     before its      │ data, trailers    1xx heads keep    │ data, trailers
//!     response)       ▼                   it waiting)       ▼
//!
//!   any state ──RESET sent or received──► stream closed in both directions
//! ```
//!
//! The requester's send side starts `Open` (its head went out with `open`); the
//! responder's receive side starts `Open` (the request head created the stream).

use bytes::Bytes;
use http::HeaderMap;
use std::collections::VecDeque;
use std::time::Instant;

/// Send-side state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Send {
    /// The responder has not sent its response head yet.
    Idle,
    /// Head sent; data may be queued.
    Open,
    /// END_STREAM is queued (behind the data still in the queue).
    Ending,
    /// END_STREAM was sent.
    Done,
}

/// Receive-side state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recv {
    /// The requester waits for the final response head.
    AwaitHead,
    /// Head received; data may arrive.
    Open,
    /// END_STREAM was received.
    Done,
}

/// The body chunks of a stream waiting for window, in order. The first is held in place:
/// most bodies are one chunk (a small response is sent with its head), and a `VecDeque`
/// allocates for its first value and frees when it goes, once per stream (benches/
/// RESULTS.md, twenty-second pass).
#[derive(Debug, Default)]
pub(crate) struct SendQueue {
    /// The front chunk; `None` only when the queue is empty.
    front: Option<Bytes>,
    /// The chunks after it.
    rest: VecDeque<Bytes>,
}

impl SendQueue {
    pub(crate) fn is_empty(&self) -> bool {
        self.front.is_none()
    }

    pub(crate) fn push_back(&mut self, chunk: Bytes) {
        if self.front.is_none() {
            self.front = Some(chunk);
        } else {
            self.rest.push_back(chunk);
        }
    }

    pub(crate) fn front_mut(&mut self) -> Option<&mut Bytes> {
        self.front.as_mut()
    }

    pub(crate) fn pop_front(&mut self) -> Option<Bytes> {
        let front = self.front.take();
        self.front = self.rest.pop_front();
        front
    }
}

/// One open stream.
#[derive(Debug)]
pub(crate) struct Stream {
    pub(crate) send: Send,
    pub(crate) recv: Recv,
    /// Bytes the peer still lets us send on this stream (may go negative only through a
    /// bug; kept signed to make that visible in debug assertions).
    pub(crate) send_window: i64,
    /// Bytes we still accept from the peer before a WINDOW_UPDATE.
    pub(crate) recv_window: u32,
    /// Bytes received but not yet released by the application.
    pub(crate) unreleased: u32,
    /// Bytes released by the application but not yet granted back with WINDOW_UPDATE.
    pub(crate) release_pending: u32,
    /// The size of the receive window and how it grows (spec/protocol.md §10.3.1).
    pub(crate) growth: super::growth::Growth,
    /// Body chunks waiting for window, in order.
    pub(crate) queue: SendQueue,
    pub(crate) queued_bytes: usize,
    /// Trailers to send after the queued data.
    pub(crate) trailers: Option<HeaderMap>,
    /// Whether the stream is in the ready list (has something sendable).
    pub(crate) in_ready: bool,
    /// Whether `send_data` refused data since the queue last drained.
    pub(crate) blocked: bool,
    /// When the stream times out, if it has a deadline.
    pub(crate) deadline: Option<Instant>,
    /// When the stall check of its queued data is due, if armed (§10.8).
    pub(crate) stall_check: Option<Instant>,
    /// Data was queued at the last stall check and none has been sent since.
    pub(crate) stalled: bool,
    /// In the list of streams waiting for connection or process-wide room.
    pub(crate) parked: bool,
    /// Body bytes received so far.
    pub(crate) recv_bytes: u64,
    /// The `content-length` the peer announced, if any.
    /// The request was HEAD: its response has no content whatever its `content-length`
    /// (spec/protocol.md §10.4).
    pub(crate) head_request: bool,
    /// The application wants no more of the peer's data: once our direction is complete,
    /// the stream is reset with this code (see `Streams::stop_receiving`).
    pub(crate) stop_after_send: Option<crate::ResetCode>,
    pub(crate) expected_len: Option<u64>,
    /// When the peer's request head arrived, for a stream the peer opened (the age that
    /// decides whether its end counts as churn, spec/protocol.md §10.8).
    pub(crate) peer_opened_at: Option<Instant>,
    /// When we opened it, for a stream we opened (a cancel younger than the minimum
    /// lifetime waits, spec/protocol.md §10.8).
    pub(crate) local_opened_at: Option<Instant>,
    /// A peer request the machine answers by itself (501, the embedder serves nothing):
    /// its events are not reported and what arrives on it is released at once.
    pub(crate) unserved: bool,
    /// The embedder discarded the body it was receiving (`Streams::discard_body`): what
    /// still arrives is released at once and not reported.
    pub(crate) discarded: bool,
}

impl Stream {
    pub(crate) fn new(send: Send, recv: Recv, send_window: u32, recv_window: u32) -> Self {
        Stream {
            send,
            recv,
            send_window: i64::from(send_window),
            recv_window,
            unreleased: 0,
            release_pending: 0,
            growth: super::growth::Growth::new(recv_window),
            queue: SendQueue::default(),
            queued_bytes: 0,
            trailers: None,
            in_ready: false,
            blocked: false,
            deadline: None,
            stall_check: None,
            stalled: false,
            parked: false,
            recv_bytes: 0,
            expected_len: None,
            head_request: false,
            stop_after_send: None,
            peer_opened_at: None,
            local_opened_at: None,
            unserved: false,
            discarded: false,
        }
    }

    /// Whether the send side has a frame to emit that needs no window (the END_STREAM
    /// marker on an empty queue, or trailers after the data).
    pub(crate) fn has_windowless_frame(&self) -> bool {
        self.queue.is_empty() && self.send == Send::Ending
    }

    /// Whether the stream has anything to send at all.
    pub(crate) fn has_pending_send(&self) -> bool {
        !self.queue.is_empty() || self.has_windowless_frame()
    }

    /// Whether both directions are finished.
    pub(crate) fn is_finished(&self) -> bool {
        self.send == Send::Done && self.recv == Recv::Done
    }
}

#[cfg(test)]
mod tests {
    use super::SendQueue;
    use bytes::Bytes;

    /// Chunks come out in the order they went in, whether the queue held one or many, and
    /// emptied it is empty (the front is the only way to see a chunk).
    #[test]
    fn the_send_queue_keeps_the_order_of_its_chunks() {
        let mut q = SendQueue::default();
        assert!(q.is_empty());
        assert_eq!(q.pop_front(), None);
        assert_eq!(q.front_mut(), None);
        q.push_back(Bytes::from_static(b"a"));
        assert!(!q.is_empty());
        assert_eq!(q.rest.capacity(), 0, "one chunk allocates nothing");
        assert_eq!(q.pop_front().as_deref(), Some(&b"a"[..]));
        assert!(q.is_empty());
        for round in 0..3 {
            for c in [b"x", b"y", b"z"] {
                q.push_back(Bytes::from_static(c));
            }
            // A front split, as a frame smaller than the chunk takes it.
            let front = q.front_mut().unwrap();
            assert_eq!(front.split_to(1), Bytes::from_static(b"x"));
            assert!(front.is_empty(), "round {round}");
            assert_eq!(q.pop_front().as_deref(), Some(&b""[..]));
            assert_eq!(q.pop_front().as_deref(), Some(&b"y"[..]));
            q.push_back(Bytes::from_static(b"w"));
            assert_eq!(q.pop_front().as_deref(), Some(&b"z"[..]));
            assert_eq!(q.pop_front().as_deref(), Some(&b"w"[..]));
            assert!(q.is_empty());
            assert_eq!(q.pop_front(), None);
        }
    }
}
