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

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

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
}

impl<S> ReadAhead<S> {
    pub(crate) fn new(inner: S) -> Self {
        ReadAhead {
            inner,
            buf: Vec::new(),
            pos: 0,
            end: 0,
            bulk: false,
        }
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
            let result = Pin::new(&mut this.inner).poll_read(cx, out);
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
        match Pin::new(&mut this.inner).poll_read(cx, &mut ahead) {
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
                let got = ahead.filled().len();
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
