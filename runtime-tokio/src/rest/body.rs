//! [`Body`]: the body of a request a service receives, or of a response a [`Peer`] returns.
//!
//! [`Peer`]: super::Peer

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Frame, SizeHint};
use tether_proto::{Initiator, ResetCode, StreamId};

use super::driver::{Command, CommandSender};
use super::BoxError;
use crate::transport::queue;

/// Why a body arriving over Tether did not complete.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The stream was reset (the sender gave up or failed, or this end cancelled).
    #[error("stream reset by the {} side: {code}", side(*initiator))]
    Reset {
        /// The reset code.
        code: ResetCode,
        /// Who reset it.
        initiator: Initiator,
    },
    /// The request's deadline passed.
    #[error("the request's deadline passed")]
    TimedOut,
    /// The connection was lost before the body was complete.
    #[error("connection lost before the body was complete")]
    ConnectionLost,
}

fn side(initiator: Initiator) -> &'static str {
    match initiator {
        Initiator::Local => "local",
        _ => "remote",
    }
}

/// A frame of a streaming body, or the error that ends it.
pub(crate) type Item = Result<Frame<Bytes>, BodyError>;

/// What the connection task pushes into a streaming body: an item, and whether reading its
/// bytes gives the peer credit back (spec/protocol.md §10.3). A stream that closed with
/// its last DATA had its unread bytes credited back to the connection at once (§10.3), so
/// that chunk's reader owes nothing, and a response read whole costs no command to the
/// connection task: a `Release` would cost it a turn that does nothing (issue 11).
pub(crate) struct Chunk {
    pub(crate) item: Item,
    /// The machine still counts the bytes against the peer's credit until they are read.
    owed: bool,
}

/// The queue between the connection task and one streaming body: a
/// [`queue`](crate::transport::queue) with one sender, one small shared allocation (and the
/// queue's buffer while a chunk waits), where a tokio channel costs an aligned allocation
/// plus a block of 32 slots (about 3.6 KiB) per body (issue 11). It is unbounded like that
/// channel was: what it holds is bounded by the stream's window, which only the body's
/// reader releases (spec/protocol.md §10.3).
pub(crate) fn body_queue() -> (BodyTx, BodyRx) {
    let (tx, rx) = queue::unbounded();
    (BodyTx(tx), BodyRx(rx))
}

/// The connection task's half of a [`body_queue`].
pub(crate) struct BodyTx(queue::Sender<Chunk>);

impl BodyTx {
    /// Queues an item whose bytes the reader gives credit back for as it reads them; false
    /// when the body is gone (dropped or closed).
    pub(crate) fn send(&self, item: Item) -> bool {
        self.0.send(Chunk { item, owed: true }).is_ok()
    }

    /// Queues the last DATA of a stream that closed with it: the machine credited its
    /// bytes back already; false when the body is gone.
    pub(crate) fn send_credited(&self, data: Bytes) -> bool {
        let item = Ok(Frame::data(data));
        self.0.send(Chunk { item, owed: false }).is_ok()
    }
}

/// The body's half of a [`body_queue`]. Dropping it drops the chunks still queued and
/// makes the sender's next chunk come back.
pub(crate) struct BodyRx(queue::Receiver<Chunk>);

impl BodyRx {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Chunk>> {
        self.0.poll_recv(cx)
    }

    /// The next chunk if one is queued.
    pub(crate) fn try_recv(&mut self) -> Option<Chunk> {
        self.0.try_recv()
    }

    /// No chunk will come: the sender is gone (or this half closed) and nothing waits.
    fn is_done(&self) -> bool {
        self.0.is_done()
    }

    /// Refuses further chunks (what is queued stays readable).
    fn close(&mut self) {
        self.0.close();
    }
}

/// The body of a request a service receives over Tether, or of a response a [`Peer`]
/// returns. It streams: each DATA frame becomes a frame of this body as it arrives, the
/// bytes still in the received message (no copy), and reading it is what gives the
/// sender more flow-control window, so a slow reader slows the writer down
/// (spec/protocol.md §10.3). Dropping it before the end cancels the response (on the
/// calling side) or discards the rest of the request (on the serving side). A response
/// whose whole body arrived with its head (a small one) comes whole: its one frame is
/// ready, and its size is exact.
///
/// It is also the simple body to send: `Body::from("text")`, `Body::from(bytes)`,
/// [`Body::empty`].
///
/// [`Peer`]: super::Peer
pub struct Body {
    kind: Kind,
}

enum Kind {
    Full(Option<Bytes>),
    Stream(Incoming),
}

struct Incoming {
    id: StreamId,
    rx: BodyRx,
    commands: CommandSender,
    /// Bytes still to come according to `content-length`, when it was given.
    remaining: Option<u64>,
    ended: bool,
}

impl Body {
    /// A body with no bytes.
    pub fn empty() -> Self {
        Body {
            kind: Kind::Full(None),
        }
    }

    /// A body arriving on stream `id` of a connection task.
    pub(crate) fn incoming(
        id: StreamId,
        rx: BodyRx,
        commands: CommandSender,
        content_length: Option<u64>,
    ) -> Self {
        Body {
            kind: Kind::Stream(Incoming {
                id,
                rx,
                commands,
                remaining: content_length,
                ended: false,
            }),
        }
    }

    /// Writes this body to `socket`, then half-closes it (a FIN); if the body fails (its
    /// stream is reset, the connection is lost) the socket is aborted (a TCP reset)
    /// instead. A body arriving over Tether is written by its connection task as its DATA
    /// arrives, with no task in between, and its flow-control credit goes back as the
    /// socket takes the bytes (spec/protocol.md §10.3, §10.9); any other body is written
    /// by a task of its own. Returns at once; `hold` is dropped once the socket is done with
    /// (written to its end, or aborted).
    pub(crate) fn into_socket(
        mut self,
        socket: tokio::net::tcp::OwnedWriteHalf,
        hold: Option<super::sink::Hold>,
    ) {
        let (id, commands) = match &self.kind {
            Kind::Stream(s) if !s.ended => (s.id, s.commands.clone()),
            _ => {
                tokio::spawn(super::sink::write_body(self, socket, hold));
                return;
            }
        };
        let adopt = Command::Sink {
            id,
            body: Box::new((std::mem::take(&mut self), socket, hold)),
        };
        if let Err(e) = commands.send(adopt) {
            // The connection task is gone: what was queued is still readable.
            let Command::Sink { body, .. } = e.into_inner() else {
                unreachable!("the command sent was a Sink")
            };
            let (body, socket, hold) = *body;
            tokio::spawn(super::sink::write_body(body, socket, hold));
        }
    }

    /// The queue of a body arriving over Tether, taken out of it (the body is then
    /// empty, and its drop does nothing).
    pub(crate) fn take_incoming(&mut self) -> Option<BodyRx> {
        match std::mem::replace(&mut self.kind, Kind::Full(None)) {
            Kind::Stream(s) if !s.ended => Some(s.rx),
            other => {
                self.kind = other;
                None
            }
        }
    }

    /// Reads the whole body into one buffer, failing once it exceeds `limit` bytes (the
    /// rest of the body is then cancelled).
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use tether_tokio::rest::Body;
    /// let bytes = Body::from("hello").collect_limited(1024).await?;
    /// assert_eq!(&bytes[..], b"hello");
    /// assert!(Body::from("hello").collect_limited(4).await.is_err());
    /// # Ok::<(), tether_tokio::rest::BoxError>(())
    /// # }).unwrap();
    /// ```
    pub async fn collect_limited(self, limit: usize) -> Result<Bytes, BoxError> {
        let limited = http_body_util::Limited::new(self, limit);
        let collected = http_body_util::BodyExt::collect(limited).await?;
        Ok(collected.to_bytes())
    }
}

impl Default for Body {
    fn default() -> Self {
        Body::empty()
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            Kind::Full(b) => f
                .debug_struct("Body")
                .field("len", &b.as_ref().map_or(0, Bytes::len))
                .finish(),
            Kind::Stream(s) => f
                .debug_struct("Body")
                .field("stream", &s.id)
                .field("ended", &s.ended)
                .finish(),
        }
    }
}

impl From<Bytes> for Body {
    fn from(b: Bytes) -> Self {
        Body {
            kind: Kind::Full((!b.is_empty()).then_some(b)),
        }
    }
}

impl From<Vec<u8>> for Body {
    fn from(v: Vec<u8>) -> Self {
        Bytes::from(v).into()
    }
}

impl From<String> for Body {
    fn from(s: String) -> Self {
        Bytes::from(s).into()
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Self {
        Bytes::from_static(s.as_bytes()).into()
    }
}

impl From<&'static [u8]> for Body {
    fn from(s: &'static [u8]) -> Self {
        Bytes::from_static(s).into()
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let s = match &mut self.kind {
            Kind::Full(b) => return Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Kind::Stream(s) => s,
        };
        if s.ended {
            return Poll::Ready(None);
        }
        match s.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                s.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Chunk { item: Err(e), .. })) => {
                s.ended = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Some(Chunk {
                item: Ok(frame),
                owed,
            })) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.remaining();
                    if let Some(r) = &mut s.remaining {
                        *r = r.saturating_sub(n as u64);
                    }
                    // The application has the bytes: the peer may send as many again.
                    if owed {
                        let _ = s.commands.send(Command::Release {
                            id: s.id,
                            n: u32::try_from(n).unwrap_or(u32::MAX),
                        });
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Full(b) => b.is_none(),
            Kind::Stream(s) => s.ended || s.rx.is_done(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Stream(s) => match s.remaining {
                Some(n) => SizeHint::with_exact(n),
                None => SizeHint::default(),
            },
        }
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        let Kind::Stream(s) = &mut self.kind else {
            return;
        };
        // Read to its end (the last chunk taken, the sender gone): nothing to give back.
        if s.ended || s.rx.is_done() {
            return;
        }
        // The machine's discard_body gives back what was received and never read.
        s.rx.close();
        let _ = s.commands.send(Command::BodyDropped { id: s.id });
    }
}

#[cfg(test)]
mod queue_tests {
    use super::*;

    fn chunk(b: &'static [u8]) -> Item {
        Ok(Frame::data(Bytes::from_static(b)))
    }

    #[test]
    fn a_body_queue_delivers_in_order_then_ends_with_its_sender() {
        let (tx, mut rx) = body_queue();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(rx.poll_recv(&mut cx).is_pending());
        assert!(!rx.is_done());
        assert!(tx.send(chunk(b"a")));
        assert!(tx.send(chunk(b"b")));
        drop(tx);
        // What was queued is still read after the sender went.
        assert!(!rx.is_done());
        for want in [b"a", b"b"] {
            let Poll::Ready(Some(Chunk {
                item: Ok(frame),
                owed: true,
            })) = rx.poll_recv(&mut cx)
            else {
                panic!("a chunk");
            };
            assert_eq!(frame.into_data().unwrap(), &want[..]);
        }
        assert!(rx.is_done());
        assert!(matches!(rx.poll_recv(&mut cx), Poll::Ready(None)));
    }

    #[test]
    fn a_closed_or_dropped_body_refuses_chunks() {
        let (tx, mut rx) = body_queue();
        rx.close();
        assert!(!tx.send(chunk(b"a")));
        let (tx, rx) = body_queue();
        drop(rx);
        assert!(!tx.send(chunk(b"a")));
    }

    #[test]
    fn a_waiting_reader_is_woken_by_a_chunk_and_by_the_end() {
        use std::sync::atomic::Ordering;
        let (waker, count) = crate::test_util::counting_waker();
        let mut cx = Context::from_waker(&waker);
        let (tx, mut rx) = body_queue();
        assert!(rx.poll_recv(&mut cx).is_pending());
        assert!(tx.send(chunk(b"a")));
        assert_eq!(count.load(Ordering::SeqCst), 1);
        assert!(rx.poll_recv(&mut cx).is_ready());
        assert!(rx.poll_recv(&mut cx).is_pending());
        drop(tx);
        assert_eq!(count.load(Ordering::SeqCst), 2);
        assert!(matches!(rx.poll_recv(&mut cx), Poll::Ready(None)));
    }
}
