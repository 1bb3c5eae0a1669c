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
