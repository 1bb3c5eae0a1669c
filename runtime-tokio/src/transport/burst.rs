//! One write burst: write every message a source yields, in order, flush once, all of it
//! bounded by one write timeout. Small messages queued together leave in one system call,
//! and a peer that stops reading costs at most the timeout.
//!
//! Used by the Tether connection (server and client), the demo server, the compat engine and
//! the channel bindings; the source is a closure, so it can drain a machine's output queue, a
//! channel or anything else that yields messages, and stop early by returning `None`.
//!
//! A message is either handed to tungstenite ([`Outgoing::Message`]: control frames, the
//! close frame, and every message of the products that do not frame their own) or framed
//! here and written to the byte stream under tungstenite ([`Outgoing::Binary`], every Tether
//! frame), with at most one copy per byte ([`frames`](super::frames)): a DATA payload is
//! written from the application's own memory on the server side, and masked into a reusable
//! buffer on the client side. Order is the source's: raw bytes queued before a tungstenite
//! message are written first, and tungstenite is flushed before the next raw byte,
//! including the burst's first (a read may have left an automatic pong or close reply half
//! written in its buffer), so neither ever sees a partial frame of the other; tungstenite
//! keeps the closing handshake.

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures_util::SinkExt;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::frames::FrameWriter;

/// Why a burst failed.
#[derive(Debug)]
pub(crate) enum BurstError {
    /// Writing to the WebSocket failed.
    Write(WsError),
    /// The burst took longer than its write timeout (the peer does not read).
    TimedOut,
}

impl BurstError {
    /// The failure as a tungstenite error (a timeout becomes `TimedOut` I/O).
    pub(crate) fn into_ws(self) -> WsError {
        match self {
            BurstError::Write(e) => e,
            BurstError::TimedOut => WsError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "write timed out",
            )),
        }
    }
}

impl From<std::io::Error> for BurstError {
    fn from(e: std::io::Error) -> Self {
        BurstError::Write(WsError::Io(e))
    }
}

/// One message of a burst.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// Written by tungstenite.
    Message(Message),
    /// One binary message whose payload is `header` (if any) followed by `payload`, framed
    /// here and written past tungstenite (see the module docs).
    Binary {
        /// The first bytes of the message (a Tether frame header).
        header: Option<[u8; 8]>,
        /// The rest, written from its own memory when it is large (server side).
        payload: Bytes,
    },
}

/// What a burst wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Written {
    /// How many messages.
    pub(crate) messages: usize,
    /// Whether a close frame was among them.
    pub(crate) closed: bool,
}

/// Writes the messages `next` yields until it returns `None`, then flushes once (no flush
/// when it yielded nothing), every message through tungstenite. The whole burst may take
/// `timeout`. Returns how many messages were written.
pub(crate) async fn write<S, F>(
    ws: &mut WebSocketStream<S>,
    timeout: Duration,
    mut next: F,
) -> Result<usize, BurstError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnMut() -> Option<Message>,
{
    let written = write_framed(ws, timeout, false, || next().map(Outgoing::Message)).await?;
    Ok(written.messages)
}

/// Writes the messages `next` yields until it returns `None`, then flushes once (no flush
/// when it yielded nothing): [`Outgoing::Binary`] framed here (masked when `masked`, the
/// client side, RFC 6455 §5.3), the others through tungstenite, in order (see the module
/// docs). The whole burst may take `timeout` from its first wait for the socket.
pub(crate) async fn write_framed<S, F>(
    ws: &mut WebSocketStream<S>,
    timeout: Duration,
    masked: bool,
    next: F,
) -> Result<Written, BurstError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnMut() -> Option<Outgoing>,
{
    let mut burst = std::pin::pin!(burst(ws, masked, next));
    // Most bursts are written whole in their first poll (the socket has room): they need
    // no timer, whose creation, clock read and handle lookup would be most of a small
    // burst's cost in user space. The timeout counts from the first wait.
    if let Poll::Ready(result) =
        std::future::poll_fn(|cx| Poll::Ready(burst.as_mut().poll(cx))).await
    {
        return result;
    }
    match tokio::time::timeout(timeout, burst).await {
        Ok(result) => result,
        Err(_) => Err(BurstError::TimedOut),
    }
}

async fn burst<S, F>(
    ws: &mut WebSocketStream<S>,
    masked: bool,
    mut next: F,
) -> Result<Written, BurstError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnMut() -> Option<Outgoing>,
{
    let Some(first) = next() else {
        return Ok(Written {
            messages: 0,
            closed: false,
        });
    };
    let write_err = BurstError::Write;
    let mut raw = FrameWriter::new(masked);
    let mut first = Some(first);
    let mut written = Written {
        messages: 0,
        closed: false,
    };
    // Whether tungstenite may hold bytes not yet written: at first, whatever a read left
    // behind; then what this burst fed it. It is flushed before the next raw byte, not
    // earlier, so that a pong a machine queues still replaces tungstenite's automatic one.
    let mut dirty = true;
    let mut fed = false;
    while let Some(out) = first.take().or_else(&mut next) {
        written.messages += 1;
        let (header, payload) = match out {
            Outgoing::Binary { header, payload } => (header, payload),
            Outgoing::Message(msg) => {
                raw.write_all(ws.get_mut()).await?;
                written.closed |= matches!(msg, Message::Close(_));
                ws.feed(msg).await.map_err(write_err)?;
                (dirty, fed) = (true, true);
                continue;
            }
        };
        if written.closed {
            // What tungstenite says to a data message after the close frame.
            return Err(BurstError::Write(WsError::Protocol(
                ProtocolError::SendAfterClosing,
            )));
        }
        if std::mem::take(&mut dirty) {
            ws.flush().await.map_err(write_err)?;
            fed = false;
        }
        let header = header.as_ref().map_or(&[][..], |h| &h[..]);
        raw.push(ws.get_mut(), header, &payload).await?;
    }
    raw.write_all(ws.get_mut()).await?;
    if fed {
        ws.flush().await.map_err(write_err)?;
    } else {
        ws.get_mut().flush().await?;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::protocol::Role;

    async fn pair(
        buffer: usize,
    ) -> (
        WebSocketStream<tokio::io::DuplexStream>,
        WebSocketStream<tokio::io::DuplexStream>,
    ) {
        let (a, b) = tokio::io::duplex(buffer);
        let server = WebSocketStream::from_raw_socket(a, Role::Server, None).await;
        let client = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        (server, client)
    }

    #[tokio::test]
    async fn every_message_of_the_source_arrives_in_order() {
        let (mut server, mut client) = pair(64 * 1024).await;
        let mut queue: Vec<Message> = (0..3).map(|i| Message::text(i.to_string())).collect();
        queue.reverse();
        let fed = write(&mut server, Duration::from_secs(5), || queue.pop())
            .await
            .unwrap();
        assert_eq!(fed, 3);
        for i in 0..3 {
            let got = client.next().await.unwrap().unwrap();
            assert_eq!(got, Message::text(i.to_string()));
        }
        let nothing = write(&mut server, Duration::from_secs(5), || None)
            .await
            .unwrap();
        assert_eq!(nothing, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_does_not_read_costs_the_timeout() {
        let (mut server, _client) = pair(1024).await;
        let mut one = Some(Message::binary(vec![0u8; 64 * 1024]));
        let err = write(&mut server, Duration::from_secs(3), || one.take())
            .await
            .unwrap_err();
        assert!(matches!(err, BurstError::TimedOut), "{err:?}");
        assert!(
            matches!(err.into_ws(), WsError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut)
        );
    }
}

#[cfg(test)]
mod framed_tests {
    use super::super::frames::tests::pattern;
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use std::io::{self, IoSlice};

    use futures_util::StreamExt;
    use tokio::io::{AsyncReadExt, DuplexStream, ReadBuf};
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

    const TIMEOUT: Duration = Duration::from_secs(60);

    /// A byte stream that takes at most `max` bytes per write (across the slices of a
    /// vectored one), so every write of the writer is partial, and counts the writes.
    struct Chop {
        inner: DuplexStream,
        max: usize,
        writes: usize,
    }

    impl AsyncRead for Chop {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Chop {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.poll_write_vectored(cx, &[IoSlice::new(buf)])
        }

        fn poll_write_vectored(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            let mut joined = Vec::new();
            for b in bufs {
                joined.extend_from_slice(&b[..b.len().min(this.max - joined.len())]);
            }
            let r = Pin::new(&mut this.inner).poll_write(cx, &joined);
            if matches!(r, Poll::Ready(Ok(_))) {
                this.writes += 1;
            }
            r
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().inner).poll_flush(cx)
        }

        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
        }
    }

    fn config() -> WebSocketConfig {
        WebSocketConfig::default()
            .max_frame_size(Some(64 << 20))
            .max_message_size(Some(64 << 20))
    }

    /// The binary messages of the test burst, with the message each must arrive as.
    fn messages() -> Vec<(Outgoing, Message)> {
        let mut out = Vec::new();
        for (i, n) in [
            0,
            1,
            8,
            125,
            126,
            127,
            4095 + 8,
            4096 + 8,
            65535,
            65536,
            (16 << 20) + 3,
        ]
        .into_iter()
        .enumerate()
        {
            let whole = pattern(n, i as u8);
            if n >= 8 {
                let header: [u8; 8] = whole[..8].try_into().unwrap();
                let payload = whole.slice(8..);
                out.push((
                    Outgoing::Binary {
                        header: Some(header),
                        payload,
                    },
                    Message::Binary(whole.clone()),
                ));
            }
            let t = Outgoing::Binary {
                header: None,
                payload: whole.clone(),
            };
            out.push((t, Message::Binary(whole)));
        }
        out
    }

    /// A burst of every size (RFC 6455 §5.2's three length forms and their edges, a
    /// message over 16 MiB), both whole and in parts, interleaved with a ping and ended by
    /// a close frame, written through a stream that takes at most 1000 bytes per write:
    /// tungstenite, as the peer, reads every message intact and in order, rejects nothing
    /// (a server reading unmasked or a client reading masked frames would fail), and the
    /// closing handshake still completes on the writer's tungstenite.
    async fn burst_is_read_by_tungstenite(masked: bool) {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let chop = Chop {
            inner: a,
            max: 1000,
            writes: 0,
        };
        let (ours, theirs) = if masked {
            (Role::Client, Role::Server)
        } else {
            (Role::Server, Role::Client)
        };
        let mut ws = WebSocketStream::from_raw_socket(chop, ours, Some(config())).await;
        let mut peer = WebSocketStream::from_raw_socket(b, theirs, Some(config())).await;

        // The peer pings first: our tungstenite answers it by itself, around our frames.
        peer.send(Message::Ping(Bytes::from_static(b"hi")))
            .await
            .unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::Ping(Bytes::from_static(b"hi"))
        );

        let mut script: Vec<(Outgoing, Message)> = messages();
        let half = script.len() / 2;
        let ping = Message::Ping(Bytes::from_static(b"p1"));
        script.insert(
            half,
            (
                Outgoing::Message(ping),
                Message::Ping(Bytes::from_static(b"p1")),
            ),
        );
        let close = Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        }));
        let expected: Vec<Message> = script.iter().map(|(_, m)| m.clone()).collect();
        let mut queue: std::collections::VecDeque<Outgoing> =
            script.into_iter().map(|(t, _)| t).collect();
        queue.push_back(Outgoing::Message(close));

        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(msg) = peer.next().await {
                match msg.unwrap() {
                    Message::Close(frame) => {
                        assert_eq!(frame.unwrap().reason.as_str(), "bye");
                        // Answer the close (tungstenite queued the echo) and end.
                        peer.flush().await.unwrap();
                        break;
                    }
                    Message::Pong(p) => assert_eq!(&p[..], b"hi"),
                    m => got.push(m),
                }
            }
            got
        });
        let written = write_framed(&mut ws, TIMEOUT, masked, || queue.pop_front())
            .await
            .unwrap();
        assert!(written.closed);
        assert_eq!(written.messages, expected.len() + 1);
        assert!(ws.get_ref().writes > 16 * 1024, "every write was partial");
        // Our tungstenite still runs the closing handshake: the peer's pong, then its
        // echo of our close, then the end.
        let mut rest = Vec::new();
        while let Some(Ok(m)) = ws.next().await {
            rest.push(m);
        }
        assert!(matches!(rest.last(), Some(Message::Close(_))), "{rest:?}");
        let got = reader.await.unwrap();
        assert_eq!(got.len(), expected.len());
        for (g, e) in got.iter().zip(&expected) {
            assert!(g == e, "message of {} bytes differs", e.len());
        }
    }

    #[tokio::test]
    async fn server_frames_are_read_by_tungstenite_as_the_client() {
        burst_is_read_by_tungstenite(false).await;
    }

    #[tokio::test]
    async fn client_frames_are_masked_and_read_by_tungstenite_as_the_server() {
        burst_is_read_by_tungstenite(true).await;
    }

    #[tokio::test]
    async fn a_burst_of_small_frames_leaves_in_one_write() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let chop = Chop {
            inner: a,
            max: usize::MAX,
            writes: 0,
        };
        let mut ws = WebSocketStream::from_raw_socket(chop, Role::Server, None).await;
        let mut queue: std::collections::VecDeque<Outgoing> = (0..50u8)
            .map(|i| Outgoing::Binary {
                header: Some([5, 0, 0, 0, 0, 0, 0, 1]),
                payload: Bytes::from(vec![i; 100]),
            })
            .collect();
        write_framed(&mut ws, TIMEOUT, false, || queue.pop_front())
            .await
            .unwrap();
        assert_eq!(ws.get_ref().writes, 1);
        let mut got = vec![0u8; 50 * (2 + 108)];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..10], &[0x82, 108, 5, 0, 0, 0, 0, 0, 0, 1]);
    }
}
