//! [`ReadAhead`]: fewer read system calls for large WebSocket messages, without a large
//! buffer on idle connections.
//!
//! tungstenite reads a message at most `read_buffer_size` bytes per call (1 KiB here, see
//! [`ws_config`](crate::transport::ws_config), kept small so that 10,000 idle connections stay
//! cheap). A 64 KiB DATA frame then costs 64 or more `recv` calls, each a system call and a
//! trip through the runtime's I/O driver: most of the cost of a large body on loopback.
//!
//! [`ReadAhead`] sits between tungstenite and the socket. While reads are small it passes
//! them straight through (no copy, no buffer). When a read fills the caller's buffer
//! completely, more is probably waiting, so it switches to reading [`CHUNK`] bytes at a
//! time into its own buffer and hands them out from there: one system call per chunk
//! instead of one per 1 KiB, for one extra copy within the process (much cheaper than the
//! system calls it saves). The buffer is freed when the socket runs dry twice without a
//! large read in between (the traffic is no longer bulk), so an idle connection holds none:
//! at the latest its next heartbeat frees it. Keeping it across the short gaps of a bulk
//! transfer matters: freeing and allocating it per gap costs page faults.
//!
//! It also knows when a read would find nothing ([`ReadAhead::idle`]): its last read found
//! the socket empty, and the socket has not woken the reader since. A run loop polls its
//! WebSocket after every input it handles and before every wait, most often for nothing;
//! each such poll goes through tungstenite's read path and five layers of adapters down to
//! the runtime's readiness check (about 600 instructions, four times per request of a
//! connection that carries one request at a time). Asking [`ReadAhead::idle`] first costs
//! one atomic load.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::task::{waker_ref, ArcWake, AtomicWaker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes asked of the socket in one read while in read-ahead mode.
pub(crate) const CHUNK: usize = 128 * 1024;

/// A read at least this large counts as bulk traffic and keeps the buffer for the next
/// time the socket runs dry.
const LARGE_READ: usize = CHUNK / 8;

/// A byte stream that reads ahead in [`CHUNK`]s while data is streaming in (see the module
/// docs). Writes pass straight through. Every WebSocket of a Tether connection, client and
/// server side, runs over one.
#[derive(Debug)]
pub(crate) struct ReadAhead<S> {
    inner: S,
    /// Empty outside read-ahead mode; otherwise `CHUNK` bytes, of which `pos..end` are
    /// read from the socket and not yet handed out (`end` is the size of the last read).
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// Whether a large read happened since the socket last ran dry.
    bulk: bool,
    /// The waker every read of `inner` registers (see [`ReadWake`]).
    wake: Arc<ReadWake>,
}

/// Between the socket and its reader: remembers whether the socket woke the reader since
/// the last read found it empty, then passes the wake on.
#[derive(Debug, Default)]
struct ReadWake {
    /// The last read of the socket found it empty, and the socket has not woken since.
    idle: AtomicBool,
    /// The waker of the last read.
    reader: AtomicWaker,
}

impl ArcWake for ReadWake {
    fn wake_by_ref(arc_self: &Arc<Self>) {
        arc_self.idle.store(false, Ordering::SeqCst);
        arc_self.reader.wake();
    }
}

impl<S> ReadAhead<S> {
    pub(crate) fn new(inner: S) -> Self {
        ReadAhead {
            inner,
            buf: Vec::new(),
            pos: 0,
            end: 0,
            bulk: false,
            wake: Arc::default(),
        }
    }

    /// Whether a read now would find nothing: the last read of the socket found it empty
    /// (`Pending`), and the socket has not woken the reader since. Nothing is buffered here
    /// then either, and a reader above (tungstenite) that got `Pending` from that read had
    /// no whole message left in its own buffer. A reader that skips its read while this is
    /// `true` still gets woken, through the waker of the read that found the socket empty.
    pub(crate) fn idle(&self) -> bool {
        self.wake.idle.load(Ordering::SeqCst)
    }

    /// The wrapped stream.
    pub(crate) fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Bytes held in this wrapper's own buffer (0 when idle), for tests.
    #[cfg(test)]
    fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pos < this.end {
            let n = (this.end - this.pos).min(out.remaining());
            out.put_slice(&this.buf[this.pos..this.pos + n]);
            this.pos += n;
            return Poll::Ready(Ok(()));
        }
        if this.buf.is_empty() || out.remaining() >= CHUNK {
            // Pass-through: small traffic, or a reader with a large buffer of its own.
            let wanted = out.remaining();
            let before = out.filled().len();
            let result = poll_socket(&mut this.inner, &this.wake, cx, out);
            if let Poll::Ready(Ok(())) = result {
                let got = out.filled().len() - before;
                if wanted > 0 && got == wanted && wanted < CHUNK {
                    // The caller's buffer was too small for what is waiting: read ahead.
                    this.buf = vec![0; CHUNK];
                    this.bulk = true;
                }
            }
            return result;
        }
        let mut ahead = ReadBuf::new(&mut this.buf);
        let result = poll_socket(&mut this.inner, &this.wake, cx, &mut ahead);
        let got = ahead.filled().len();
        match result {
            Poll::Pending => {
                if !std::mem::take(&mut this.bulk) {
                    this.buf = Vec::new();
                    this.pos = 0;
                    this.end = 0;
                }
                Poll::Pending
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {
                this.bulk |= got >= LARGE_READ;
                let n = got.min(out.remaining());
                out.put_slice(&this.buf[..n]);
                this.pos = n;
                this.end = got;
                Poll::Ready(Ok(()))
            }
        }
    }
}

/// Reads the socket with [`ReadWake`] as the waker (see [`ReadAhead::idle`]).
fn poll_socket<S: AsyncRead + Unpin>(
    socket: &mut S,
    wake: &Arc<ReadWake>,
    cx: &mut Context<'_>,
    out: &mut ReadBuf<'_>,
) -> Poll<io::Result<()>> {
    wake.reader.register(cx.waker());
    // Before the read: a wake that comes while it runs clears it again.
    wake.idle.store(true, Ordering::SeqCst);
    // The same waker every time, borrowed (no reference count touched per read); the
    // runtime recognizes it and keeps the clone it took the first time.
    let waker = waker_ref(wake);
    let result = Pin::new(socket).poll_read(&mut Context::from_waker(&waker), out);
    if result.is_ready() {
        wake.idle.store(false, Ordering::SeqCst);
    }
    result
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
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
    use std::collections::VecDeque;
    use std::task::{Wake, Waker};
    use tokio::io::AsyncReadExt;

    /// A socket that delivers queued bursts (as much of one as the reader asks for per
    /// read, like a stream socket), then is empty (`Pending`); counts the reads.
    #[derive(Default)]
    struct Bursts {
        queue: VecDeque<Vec<u8>>,
        reads: usize,
    }

    impl AsyncRead for Bursts {
        fn poll_read(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            out: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            this.reads += 1;
            let Some(front) = this.queue.front_mut() else {
                return Poll::Pending;
            };
            let n = front.len().min(out.remaining());
            out.put_slice(&front[..n]);
            front.drain(..n);
            if front.is_empty() {
                this.queue.pop_front();
            }
            Poll::Ready(Ok(()))
        }
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    /// Reads 4 KiB at a time (like tungstenite with its 4 KiB read buffer) until the
    /// socket is empty; returns what was read.
    fn drain_small(r: &mut ReadAhead<Bursts>) -> Vec<u8> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut all = Vec::new();
        loop {
            let mut space = [0u8; 4096];
            let mut out = ReadBuf::new(&mut space);
            match Pin::new(&mut *r).poll_read(&mut cx, &mut out) {
                Poll::Ready(Ok(())) => all.extend_from_slice(out.filled()),
                Poll::Ready(Err(e)) => panic!("read failed: {e}"),
                Poll::Pending => return all,
            }
        }
    }

    #[test]
    fn a_large_burst_takes_few_reads_and_arrives_intact() {
        let data = pattern(1 << 20, 7);
        let mut r = ReadAhead::new(Bursts {
            queue: VecDeque::from([data.clone()]),
            reads: 0,
        });
        assert_eq!(drain_small(&mut r), data);
        // One 4 KiB read, then 1 MiB in 128 KiB chunks, then the empty socket: instead of
        // 256 reads of 4 KiB.
        let reads = r.inner.reads;
        assert!(reads <= 2 + (1 << 20) / CHUNK + 1, "{reads} reads");
        // The last read was large: the buffer stays for the next burst.
        assert_eq!(r.buffer_capacity(), CHUNK);
    }

    #[test]
    fn small_traffic_passes_through_and_frees_the_buffer() {
        let mut r = ReadAhead::new(Bursts::default());
        // Small messages: no buffer is ever allocated.
        for seed in 0..10 {
            r.inner.queue.push_back(pattern(300, seed));
            assert_eq!(drain_small(&mut r), pattern(300, seed));
            assert_eq!(r.buffer_capacity(), 0);
        }
        // A bulk burst allocates it and keeps it while the socket is dry; a small message
        // after it (the heartbeat of an idle connection) frees it again.
        r.inner.queue.push_back(pattern(CHUNK * 3 + 5, 1));
        assert_eq!(drain_small(&mut r), pattern(CHUNK * 3 + 5, 1));
        assert_eq!(r.buffer_capacity(), CHUNK);
        r.inner.queue.push_back(pattern(40, 2));
        assert_eq!(drain_small(&mut r), pattern(40, 2));
        assert_eq!(r.buffer_capacity(), 0);
    }

    /// Counts its wakes.
    #[derive(Default)]
    struct Wakes(std::sync::atomic::AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// `idle` is true from a read that found the socket empty until the socket wakes the
    /// reader, whose waker still gets the wake; a read that gets bytes clears it.
    #[tokio::test]
    async fn idle_from_an_empty_read_until_the_socket_wakes_the_reader() {
        let (mut tx, rx) = tokio::io::duplex(1024);
        let mut r = ReadAhead::new(rx);
        assert!(!r.idle(), "nothing was read yet");
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(wakes.clone());
        let mut cx = Context::from_waker(&waker);
        let mut space = [0u8; 64];
        let mut out = ReadBuf::new(&mut space);
        assert!(Pin::new(&mut r).poll_read(&mut cx, &mut out).is_pending());
        assert!(r.idle());
        assert!(r.idle(), "asking does not change it");

        tokio::io::AsyncWriteExt::write_all(&mut tx, b"hello")
            .await
            .unwrap();
        assert!(!r.idle(), "the socket woke the reader");
        assert_eq!(
            wakes.0.load(Ordering::SeqCst),
            1,
            "and the reader's waker got it"
        );
        let mut out = ReadBuf::new(&mut space);
        assert!(Pin::new(&mut r).poll_read(&mut cx, &mut out).is_ready());
        assert_eq!(out.filled(), b"hello");
        assert!(!r.idle(), "a read that got bytes may be followed by more");

        let mut out = ReadBuf::new(&mut space);
        assert!(Pin::new(&mut r).poll_read(&mut cx, &mut out).is_pending());
        assert!(r.idle());
        drop(tx);
        assert!(!r.idle(), "the end of the stream wakes the reader too");
    }

    #[tokio::test]
    async fn end_of_stream_and_large_readers_pass_through() {
        let data = pattern(300_000, 3);
        let (mut tx, rx) = tokio::io::duplex(64 * 1024);
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            tokio::io::AsyncWriteExt::write_all(&mut tx, &sent)
                .await
                .unwrap();
        });
        let mut r = ReadAhead::new(rx);
        let mut got = Vec::new();
        // read_to_end asks for large reads once its buffer grows: both paths run.
        r.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        assert_eq!(got, data);
    }
}
