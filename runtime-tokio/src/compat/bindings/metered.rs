//! [`Metered`]: the bytes a binding connection has read from its socket into a message not
//! yet delivered hold the server's buffer budget.
//!
//! tungstenite gathers an incoming message in memory (up to the max message size) before it
//! hands it over, so without this every client sending a large message and never finishing
//! it would cost its connection that much memory, outside any process-wide bound.
//! [`Metered`] sits under the WebSocket (below [`ReadAhead`](crate::transport::read_ahead::ReadAhead),
//! so the read-ahead buffer counts too) and takes one unit of the budget for every byte it
//! reads. A read asks for at most what the budget has free, so the bytes accounted never
//! exceed the budget. With no room it stops reading (the kernel's buffers and TCP's window
//! then hold the client back) until some is freed; past the budget wait it fails with
//! [`ReadLimit::Stalled`], which the driver answers with close 1013, so connections each
//! holding part of a message cannot wait on one another for ever.
//!
//! The driver gives the bytes back as messages are delivered ([`Metered::take_held`] for a
//! data message, whose share moves on to the message in the receive channel;
//! [`Metered::credit_control`] for a control frame). What a delivery gives back is
//! everything read since the previous one, so the few bytes tungstenite has read ahead into
//! the next message are counted approximately, never twice. Everything still held is
//! released when the connection ends (the permit is dropped with the stream), so the
//! accounting cannot drift. An idle connection holds nothing: a read that finds no data gives
//! back what it had taken for it.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::transport::socket::Socket;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tokio_tungstenite::WebSocketStream;

use crate::transport::read_ahead::ReadAhead;

/// The WebSocket of a binding connection: its reads metered, under the read-ahead.
pub(crate) type MeteredStream = WebSocketStream<ReadAhead<Metered<Socket>>>;

type Acquire = Pin<Box<dyn Future<Output = Result<OwnedSemaphorePermit, AcquireError>> + Send>>;

/// Why [`Metered`] stopped reading: the error inside the `io::Error` it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadLimit {
    /// The budget had no room for this connection's next bytes for the budget wait.
    Stalled(Duration),
    /// The connection read more than its cap without delivering a message.
    OverCap(usize),
}

impl fmt::Display for ReadLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stalled(d) => write!(f, "no buffer budget for a message being read for {d:?}"),
            Self::OverCap(n) => write!(f, "more than {n} bytes read without a complete message"),
        }
    }
}

impl std::error::Error for ReadLimit {}

impl ReadLimit {
    /// The [`ReadLimit`] inside a read error, if that is what it is.
    pub(crate) fn of(e: &io::Error) -> Option<Self> {
        e.get_ref()?.downcast_ref::<Self>().copied()
    }
}

/// A byte stream whose reads hold the server's buffer budget (see the module docs). Writes
/// pass straight through.
pub(crate) struct Metered<S> {
    inner: S,
    budget: Arc<Semaphore>,
    /// The bytes read since the last delivery (`None`: nothing).
    held: Option<OwnedSemaphorePermit>,
    /// Most bytes held at once (a message of the max size with its frame headers, plus the
    /// read-ahead).
    cap: usize,
    /// How long a read may wait for room before it fails with [`ReadLimit::Stalled`].
    wait_limit: Duration,
    /// Waiting for one unit of the budget, and until when while this connection holds part
    /// of a message.
    waiting: Option<(Acquire, Option<Pin<Box<Sleep>>>)>,
    /// Metering ended (the connection is being closed and its bytes discarded).
    off: bool,
}

impl<S> fmt::Debug for Metered<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metered")
            .field("held", &self.held_bytes())
            .field("cap", &self.cap)
            .field("waiting", &self.waiting.is_some())
            .field("off", &self.off)
            .finish()
    }
}

impl<S> Metered<S> {
    pub(crate) fn new(inner: S, budget: Arc<Semaphore>, cap: usize, wait_limit: Duration) -> Self {
        Metered {
            inner,
            budget,
            held: None,
            cap,
            wait_limit,
            waiting: None,
            off: false,
        }
    }

    /// Bytes read since the last delivery, held from the budget.
    pub(crate) fn held_bytes(&self) -> usize {
        self.held
            .as_ref()
            .map_or(0, OwnedSemaphorePermit::num_permits)
    }

    /// A data message was delivered: hands over everything held (the driver keeps the
    /// message's share of it while the message waits for the handler).
    pub(crate) fn take_held(&mut self) -> Option<OwnedSemaphorePermit> {
        self.held.take()
    }

    /// A control frame with `payload` bytes was delivered: gives back its bytes on the wire
    /// (a masked client frame: 2 bytes of header and 4 of mask), the rest stays held for the
    /// message it may have interrupted.
    pub(crate) fn credit_control(&mut self, payload: usize) {
        let wire = payload + 6;
        if let Some(held) = self.held.as_mut() {
            if held.num_permits() <= wire {
                self.held = None;
            } else {
                drop(held.split(wire));
            }
        }
    }

    /// Ends metering: gives back everything held; later reads pass straight through (for
    /// discarding what the peer still sends while the connection closes).
    pub(crate) fn stop(&mut self) {
        self.off = true;
        self.held = None;
        self.waiting = None;
    }

    fn fail(&mut self, limit: ReadLimit) -> Poll<io::Result<()>> {
        self.stop();
        Poll::Ready(Err(io::Error::other(limit)))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.off || out.remaining() == 0 {
            return Pin::new(&mut this.inner).poll_read(cx, out);
        }
        let room = this.cap.saturating_sub(this.held_bytes());
        if room == 0 {
            return this.fail(ReadLimit::OverCap(this.cap));
        }
        let want = out.remaining().min(room);
        // The share of the budget this read may fill: at least one byte, at most `want`.
        let mut grant: Option<OwnedSemaphorePermit> = None;
        loop {
            if let Some((acquire, since)) = this.waiting.as_mut() {
                match acquire.as_mut().poll(cx) {
                    Poll::Ready(Ok(permit)) => {
                        this.waiting = None;
                        grant = Some(permit);
                    }
                    Poll::Ready(Err(_)) => {
                        // The semaphore is never closed; if it were, nothing could be read.
                        return this.fail(ReadLimit::Stalled(this.wait_limit));
                    }
                    Poll::Pending => {
                        // Only a connection holding part of a message can keep others
                        // waiting: an idle one waits for room as long as it takes.
                        let holding = this.held.is_some();
                        let wait_limit = this.wait_limit;
                        if !holding {
                            *since = None;
                        } else {
                            let since = since
                                .get_or_insert_with(|| Box::pin(tokio::time::sleep(wait_limit)));
                            if since.as_mut().poll(cx).is_ready() {
                                return this.fail(ReadLimit::Stalled(wait_limit));
                            }
                        }
                        return Poll::Pending;
                    }
                }
            }
            let have = grant.as_ref().map_or(0, OwnedSemaphorePermit::num_permits);
            let free = this.budget.available_permits().min(want - have);
            if free > 0 {
                let n = u32::try_from(free).unwrap_or(u32::MAX);
                if let Ok(more) = this.budget.clone().try_acquire_many_owned(n) {
                    match grant.as_mut() {
                        Some(g) => g.merge(more),
                        None => grant = Some(more),
                    }
                }
            }
            if grant.is_some() {
                break;
            }
            // No room: wait for one unit (a small request, so waiting readers do not hoard
            // what others free).
            let acquire: Acquire = Box::pin(this.budget.clone().acquire_owned());
            this.waiting = Some((acquire, None));
        }
        let Some(mut grant) = grant else {
            return Poll::Pending; // unreachable: the loop leaves only with a grant
        };
        let allowed = grant.num_permits().min(out.remaining());
        let mut limited = ReadBuf::new(out.initialize_unfilled_to(allowed));
        let result = Pin::new(&mut this.inner).poll_read(cx, &mut limited);
        let got = limited.filled().len();
        out.advance(got);
        if got == 0 {
            // Nothing read (no data yet, end of stream or an error): an idle connection
            // holds nothing.
            return result;
        }
        if got < grant.num_permits() {
            drop(grant.split(grant.num_permits() - got));
        }
        match this.held.as_mut() {
            Some(held) => held.merge(grant),
            None => this.held = Some(grant),
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn metered(
        budget: &Arc<Semaphore>,
        cap: usize,
    ) -> (Metered<tokio::io::DuplexStream>, tokio::io::DuplexStream) {
        let (a, b) = tokio::io::duplex(1 << 20);
        (
            Metered::new(a, budget.clone(), cap, Duration::from_secs(10)),
            b,
        )
    }

    fn in_use(budget: &Semaphore, total: usize) -> usize {
        total - budget.available_permits()
    }

    #[tokio::test]
    async fn reads_hold_the_budget_until_delivered_and_idle_holds_nothing() {
        let budget = Arc::new(Semaphore::new(1000));
        let (mut m, mut peer) = metered(&budget, 10_000);
        peer.write_all(&[1u8; 300]).await.unwrap();
        let mut buf = [0u8; 4096];
        let n = m.read(&mut buf).await.unwrap();
        assert_eq!(n, 300);
        assert_eq!((m.held_bytes(), in_use(&budget, 1000)), (300, 300));
        // Nothing waiting: a read that finds no data gives its share back.
        let idle = tokio::time::timeout(Duration::from_millis(1), m.read(&mut buf)).await;
        assert!(idle.is_err());
        assert_eq!(in_use(&budget, 1000), 300);
        m.credit_control(4); // a 4-byte ping: 10 bytes on the wire
        assert_eq!(m.held_bytes(), 290);
        let taken = m.take_held().unwrap();
        assert_eq!((taken.num_permits(), m.held_bytes()), (290, 0));
        drop(taken);
        assert_eq!(in_use(&budget, 1000), 0);
    }

    #[tokio::test]
    async fn a_read_takes_at_most_what_the_budget_has_and_dropping_gives_it_back() {
        let budget = Arc::new(Semaphore::new(100));
        let (mut m, mut peer) = metered(&budget, 10_000);
        peer.write_all(&[1u8; 300]).await.unwrap();
        let mut buf = [0u8; 4096];
        assert_eq!(m.read(&mut buf).await.unwrap(), 100);
        assert_eq!(in_use(&budget, 100), 100);
        drop(m);
        assert_eq!(in_use(&budget, 100), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn no_room_waits_for_freed_budget_then_fails_after_the_wait_limit() {
        let budget = Arc::new(Semaphore::new(100));
        let (mut a, mut pa) = metered(&budget, 10_000);
        let (mut b, mut pb) = metered(&budget, 10_000);
        pa.write_all(&[1u8; 100]).await.unwrap();
        pb.write_all(&[2u8; 50]).await.unwrap();
        let mut buf = [0u8; 4096];
        assert_eq!(a.read(&mut buf).await.unwrap(), 100);
        // b waits; freeing a's bytes wakes it.
        let (got, ()) = tokio::join!(b.read(&mut buf), async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            drop(a.take_held());
        });
        assert_eq!(got.unwrap(), 50);
        // Now b holds 50 and a reads 50 more; b's next bytes find no room for 10 s.
        pa.write_all(&[1u8; 60]).await.unwrap();
        assert_eq!(a.read(&mut buf).await.unwrap(), 50);
        pb.write_all(&[2u8; 10]).await.unwrap();
        let started = tokio::time::Instant::now();
        let err = b.read(&mut buf).await.unwrap_err();
        assert_eq!(
            ReadLimit::of(&err),
            Some(ReadLimit::Stalled(Duration::from_secs(10)))
        );
        assert!(started.elapsed() >= Duration::from_secs(10));
        // b gave back what it held and reads on unmetered (discarding while it closes).
        assert_eq!(in_use(&budget, 100), 50);
        assert_eq!(b.read(&mut buf).await.unwrap(), 10);
        assert_eq!(in_use(&budget, 100), 50);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_holding_nothing_waits_for_room_without_a_limit() {
        let budget = Arc::new(Semaphore::new(100));
        let (mut a, mut pa) = metered(&budget, 10_000);
        let (mut b, _pb) = metered(&budget, 10_000);
        pa.write_all(&[1u8; 100]).await.unwrap();
        let mut buf = [0u8; 4096];
        assert_eq!(a.read(&mut buf).await.unwrap(), 100);
        // b (idle, holding nothing) is still waiting well past the wait limit.
        let waited = tokio::time::timeout(Duration::from_secs(60), b.read(&mut buf)).await;
        assert!(waited.is_err());
        assert_eq!(b.held_bytes(), 0);
    }

    #[tokio::test]
    async fn more_than_the_cap_without_a_delivery_fails() {
        let budget = Arc::new(Semaphore::new(1000));
        let (mut m, mut peer) = metered(&budget, 100);
        peer.write_all(&[1u8; 300]).await.unwrap();
        let mut buf = [0u8; 4096];
        assert_eq!(m.read(&mut buf).await.unwrap(), 100);
        let err = m.read(&mut buf).await.unwrap_err();
        assert_eq!(ReadLimit::of(&err), Some(ReadLimit::OverCap(100)));
        assert_eq!(in_use(&budget, 1000), 0);
    }
}
