//! The transport under every product of this crate: TCP accept, the HTTP/1 upgrade to
//! WebSocket, read-ahead (with binary frames read whole at frame boundaries), TLS, the
//! bounded closing handshake, the write burst, the reconnect loop, the connection tasks'
//! command queues and the operating system's random source.
//!
//! Nothing here knows the Tether protocol: the Tether server and client use these pieces as
//! the demo, echo and bindings servers and the compat engine (crate::compat) do.

pub(crate) mod acceptor;
pub(crate) mod boundaries;
pub(crate) mod burst;
pub(crate) mod client_upgrade;
pub(crate) mod closing;
pub(crate) mod frames;
pub(crate) mod queue;
pub(crate) mod read_ahead;
pub(crate) mod reconnect;
pub(crate) mod socket;
pub mod tls;
pub mod upgrade;

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// The operating system's CSPRNG: connection ids, resume tokens and reconnect jitter, for the
/// server, the client and the compat engine alike. If it fails, the HELLO that needed it is
/// rejected with 4008 (and jitter falls back to the nominal delay): never a panic.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct OsRandom;

impl tether_proto::RandomSource for OsRandom {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), tether_proto::RandomError> {
        getrandom::fill(buf).map_err(|e| tether_proto::RandomError(e.to_string()))
    }
}

/// Writes `slices` to `io`: one slice as a plain write, more as one vectored write.
///
/// On a TCP socket a plain write is `send(2)`, a vectored one `writev(2)`, which goes
/// through the kernel's file layer (the file position, the permission hooks, the iovec
/// import) before the socket's. Per small request each end writes one slice twice: at the
/// TCP tunnel's server, `writev`'s layers above the socket took 3.3 % of the process's CPU
/// samples, `send`'s 1.8 % (perf, benches/RESULTS.md, nineteenth pass).
pub(crate) fn poll_write_slices<W>(
    io: Pin<&mut W>,
    cx: &mut Context<'_>,
    slices: &[IoSlice<'_>],
) -> Poll<io::Result<usize>>
where
    W: AsyncWrite + ?Sized,
{
    match slices {
        [one] => io.poll_write(cx, one),
        _ => io.poll_write_vectored(cx, slices),
    }
}

/// [`poll_write_slices`] without a task context: what the socket takes now.
pub(crate) fn try_write_slices(socket: &TcpStream, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    match slices {
        [one] => socket.try_write(one),
        _ => socket.try_write_vectored(slices),
    }
}

/// tungstenite's read buffer, and the most it reads in one call (see [`ws_config`]).
pub(crate) const READ_BUFFER: usize = 1024;

/// A WebSocket config sized for many connections: small read/write buffers, and
/// `max_message_size` as both message and frame limit.
///
/// tungstenite (0.30) grows both buffers to hold a large message and never shrinks them:
/// a connection that once carried a 64 KiB frame keeps about that much on each side until
/// it closes (an idle connection that never did stays small). The read buffer is 1 KiB, what
/// an idle connection holds on either side (issue 11 goal 5: it was 4 KiB, a sixth of a
/// server's memory per idle connection; the client gets the same since it does its own
/// upgrade, [`client_upgrade`], instead of tungstenite's client handshake, whose 4 KiB
/// buffer became the connection's). It also caps each read at 1 KiB;
/// [`ReadAhead`](read_ahead::ReadAhead) takes the system calls that would cost off the hot
/// path, and on a Tether connection reads binary frames whole, past tungstenite: large
/// ones (benches/RESULTS.md, ninth pass) and small ones that arrive whole (fourteenth).
pub(crate) fn ws_config(max_message_size: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(16 * 1024)
        .max_write_buffer_size(max_message_size.saturating_mul(2).max(64 * 1024))
        .max_message_size(Some(max_message_size))
        .max_frame_size(Some(max_message_size))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records which kind of write it was asked for and takes every byte.
    #[derive(Default)]
    struct Recording {
        plain: usize,
        vectored: usize,
        bytes: Vec<u8>,
    }

    impl AsyncWrite for Recording {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.plain += 1;
            self.bytes.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            self.vectored += 1;
            let mut n = 0;
            for b in bufs {
                self.bytes.extend_from_slice(b);
                n += b.len();
            }
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn one_slice_is_a_plain_write_and_more_are_one_vectored_write() {
        let mut io = Recording::default();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let one = [IoSlice::new(b"head+payload")];
        assert!(matches!(
            poll_write_slices(Pin::new(&mut io), &mut cx, &one),
            Poll::Ready(Ok(12))
        ));
        assert_eq!((io.plain, io.vectored), (1, 0));
        let two = [IoSlice::new(b"head"), IoSlice::new(b"payload")];
        assert!(matches!(
            poll_write_slices(Pin::new(&mut io), &mut cx, &two),
            Poll::Ready(Ok(11))
        ));
        assert_eq!((io.plain, io.vectored), (1, 1));
        assert_eq!(io.bytes, b"head+payloadheadpayload");
    }

    #[tokio::test]
    async fn try_write_slices_puts_every_slice_on_the_socket_in_order() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let writer = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut reader, _) = listener.accept().await.unwrap();
        writer.writable().await.unwrap();
        let one = [IoSlice::new(b"one|")];
        assert_eq!(try_write_slices(&writer, &one).unwrap(), 4);
        let three = [IoSlice::new(b"a"), IoSlice::new(b""), IoSlice::new(b"bc")];
        assert_eq!(try_write_slices(&writer, &three).unwrap(), 3);
        drop(writer);
        let mut got = Vec::new();
        reader.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"one|abc");
    }
}
