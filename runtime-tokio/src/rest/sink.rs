//! A received body written to a TCP socket by the connection task itself (the tunnels of
//! spec/protocol.md §10.9): each DATA chunk goes from the WebSocket message to the socket
//! with no task in between, and its flow-control credit goes back once the socket took
//! it, so the socket's own buffer is the consumer's backpressure ([`Body::into_socket`]).
//!
//! A chunk the socket does not take at once waits in the [`Sink`] (at most the stream's
//! receive window, which only writes release) until the socket is writable again: the
//! sink's waker queues one [`Command::SinkReady`] for its stream.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes};
use http_body::Body as _;
use http_body_util::BodyExt;
use tether_proto::StreamId;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;

use super::driver::{Command, CommandSender};
use super::Body;
use crate::transport::{poll_write_slices, try_write_slices};

/// Something the owner of a socket wants kept until the socket is done with (a count of
/// open tunnels, a permit): dropped once the last byte was written or the socket aborted.
pub(crate) type Hold = Arc<dyn std::any::Any + Send + Sync>;

/// At most this many chunks go into one `writev`.
const MAX_SLICES: usize = 64;

/// Where a received body's bytes go when the connection task writes them (see the module
/// docs).
///
/// Dropped before its body ended and was written (the connection task ends, the stream
/// is reset), it aborts its socket: a peer must not take a lost tunnel for a clean end.
pub(crate) struct Sink {
    /// `None` once handed on ([`Sink::abort`], [`Sink::finish_later`]).
    write: Option<OwnedWriteHalf>,
    pending: VecDeque<Bytes>,
    /// The body ended (END_STREAM, or trailers): the socket is half-closed once `pending`
    /// is written.
    end: bool,
    waker: Waker,
    woken: Arc<SinkWaker>,
    hold: Option<Hold>,
}

impl Sink {
    pub(crate) fn new(
        id: StreamId,
        write: OwnedWriteHalf,
        hold: Option<Hold>,
        tx: &CommandSender,
    ) -> Self {
        let woken = Arc::new(SinkWaker {
            id,
            tx: tx.clone(),
            queued: AtomicBool::new(false),
        });
        Sink {
            write: Some(write),
            pending: VecDeque::new(),
            end: false,
            waker: Waker::from(woken.clone()),
            woken,
            hold,
        }
    }

    pub(crate) fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.pending.push_back(chunk);
        }
    }

    pub(crate) fn end(&mut self) {
        self.end = true;
    }

    /// Everything is written and the body ended: drop the sink to half-close the socket.
    pub(crate) fn is_done(&self) -> bool {
        self.end && self.pending.is_empty()
    }

    /// Writes what the socket takes now and returns how many bytes that was; when the
    /// socket is full, its waker is registered and queues [`Command::SinkReady`].
    pub(crate) fn write_ready(&mut self) -> io::Result<usize> {
        self.woken.queued.store(false, Ordering::Release);
        let Some(write) = &self.write else {
            return Ok(0);
        };
        let mut written = 0;
        while !self.pending.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let count = fill(&self.pending, &mut slices);
            match try_write_slices(write.as_ref(), &slices[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    written += n;
                    advance(&mut self.pending, n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut cx = Context::from_waker(&self.waker);
                    match write.as_ref().poll_write_ready(&mut cx) {
                        Poll::Ready(Ok(())) => continue, // ready again already
                        Poll::Ready(Err(e)) => return Err(e),
                        Poll::Pending => break,
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(written)
    }

    /// Closes the socket with a reset (the stream failed: the bytes did not all arrive).
    pub(crate) fn abort(mut self) {
        if let Some(write) = self.write.take() {
            abort(write);
        }
    }

    /// The stream finished with bytes still to write: a task writes them, then
    /// half-closes the socket.
    pub(crate) fn finish_later(mut self) {
        let Some(mut write) = self.write.take() else {
            return;
        };
        let pending = std::mem::take(&mut self.pending);
        let hold = self.hold.take();
        if pending.is_empty() {
            return drop(write); // the FIN
        }
        tokio::spawn(async move {
            let _hold = hold;
            for chunk in pending {
                if write.write_all(&chunk).await.is_err() {
                    return abort(write);
                }
            }
            let _ = write.shutdown().await;
        });
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Some(write) = self.write.take() {
            if self.is_done() {
                drop(write); // the FIN, after every byte
            } else {
                abort(write);
            }
        }
    }
}

/// Points `slices` at the first chunks of `pending` (no allocation, as the frame writer
/// does); returns how many.
fn fill<'a>(pending: &'a VecDeque<Bytes>, slices: &mut [IoSlice<'a>; MAX_SLICES]) -> usize {
    let mut count = 0;
    for (slice, chunk) in slices.iter_mut().zip(pending) {
        *slice = IoSlice::new(chunk);
        count += 1;
    }
    count
}

fn advance(pending: &mut VecDeque<Bytes>, mut n: usize) {
    while n > 0 {
        let Some(front) = pending.front_mut() else {
            return;
        };
        if n >= front.len() {
            n -= front.len();
            pending.pop_front();
        } else {
            front.advance(n);
            n = 0;
        }
    }
}

/// The waker of a [`Sink`] whose socket was full: queues one [`Command::SinkReady`], and no
/// more until the connection task wrote again.
struct SinkWaker {
    id: StreamId,
    tx: CommandSender,
    queued: AtomicBool,
}

impl std::task::Wake for SinkWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            let _ = self.tx.send(Command::SinkReady { id: self.id });
        }
    }
}

/// Closes the socket with a reset rather than a FIN once its read half is dropped too
/// (dropping a write half would send a FIN first, and the peer would read a clean end).
pub(crate) fn abort(write: OwnedWriteHalf) {
    let _ = write.as_ref().set_zero_linger();
    write.forget();
}

/// Writes `body` to `write` in a task of its own, then half-closes it: for a body that has
/// no connection task to do it ([`Body::into_socket`] falls back to this). Every ready
/// chunk is written in one `writev`; on a failure of either side the socket is aborted
/// and the body dropped, which resets its stream.
pub(crate) async fn write_body(mut body: Body, mut write: OwnedWriteHalf, hold: Option<Hold>) {
    let _hold = hold;
    let mut chunks: VecDeque<Bytes> = VecDeque::new();
    loop {
        let Some(frame) = body.frame().await else {
            break;
        };
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    chunks.push_back(data);
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "tunnel stream ended with an error");
                return abort(write);
            }
        }
        // Take what else is ready, so a burst leaves in one write.
        let failed = {
            let mut cx = Context::from_waker(Waker::noop());
            loop {
                match Pin::new(&mut body).poll_frame(&mut cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Ok(data) = frame.into_data() {
                            chunks.push_back(data);
                        }
                    }
                    Poll::Ready(Some(Err(_))) => break true,
                    Poll::Ready(None) | Poll::Pending => break false,
                }
            }
        };
        if failed {
            return abort(write);
        }
        while !chunks.is_empty() {
            // The slices are built inside the poll, not held across the await.
            let written = std::future::poll_fn(|cx| {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                let count = fill(&chunks, &mut slices);
                poll_write_slices(Pin::new(&mut write), cx, &slices[..count])
            })
            .await;
            match written {
                Ok(0) | Err(_) => return abort(write),
                Ok(n) => advance(&mut chunks, n),
            }
        }
    }
    let _ = write.shutdown().await;
}
