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
use std::pin::Pin;
use std::task::{Context, Poll};
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
    write_framed_from(ws, timeout, masked, None, next).await
}

/// [`write_framed`], going on from a writer that holds frames already queued (and
/// perhaps partly written) after tungstenite was flushed: what [`write_now`] could not
/// finish. Its frames go first, then what `next` yields.
pub(crate) async fn write_framed_from<S, F>(
    ws: &mut WebSocketStream<S>,
    timeout: Duration,
    masked: bool,
    queued: Option<FrameWriter>,
    next: F,
) -> Result<Written, BurstError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnMut() -> Option<Outgoing>,
{
    let mut burst = std::pin::pin!(burst(ws, masked, queued, next));
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

/// What [`write_now`] did.
#[derive(Debug)]
pub(crate) enum Now {
    /// `next` yielded nothing: nothing was written or flushed.
    Empty,
    /// Everything `next` yielded is written and flushed.
    Written,
    /// Writing failed.
    Failed(std::io::Error),
    /// The rest needs waiting: the message it stopped at (not queued), and the writer
    /// with what it queued, perhaps partly written, for [`write_framed_from`].
    Later(Option<Outgoing>, Option<FrameWriter>),
}

/// The burst of [`write_framed`] done in the caller's poll, without a future: most bursts
/// are a few binary frames of a Tether connection that the socket takes at once. Frames
/// are queued in a [`FrameWriter`] while they fit in it without a write (those of one
/// small request or response do), written with one (vectored) system call, and the socket
/// flushed. Anything else goes on in [`write_framed_from`] ([`Now::Later`]): a message for
/// tungstenite (its bytes are written after the frames before it), a frame that needs the
/// queue written first, a socket that is full, or tungstenite holding bytes a read left
/// behind. A burst's future is about 1 KiB, boxed to keep it out of idle connections'
/// tasks: one allocation and one copy of it at each end of every small request
/// (benches/RESULTS.md, twenty-second pass).
pub(crate) fn write_now<S, F>(
    ws: &mut WebSocketStream<S>,
    masked: bool,
    mut next: F,
    cx: &mut Context<'_>,
) -> Now
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnMut() -> Option<Outgoing>,
{
    let Some(first) = next() else {
        return Now::Empty;
    };
    // A message for tungstenite first: the burst's future feeds it (a pong the machine
    // queues replaces the automatic one tungstenite may hold, so tungstenite is not
    // flushed before it).
    if !matches!(first, Outgoing::Binary { .. }) {
        return Now::Later(Some(first), None);
    }
    // What a read left in tungstenite's buffer (an automatic pong, a close reply) goes
    // before the first raw byte; if it cannot go now, the burst waits in its future.
    match futures_util::Sink::<Message>::poll_flush(Pin::new(&mut *ws), cx) {
        Poll::Ready(Ok(())) => {}
        _ => return Now::Later(Some(first), None),
    }
    let vectored = ws.get_ref().is_write_vectored();
    let mut raw = FrameWriter::new(masked);
    let mut out = Some(first);
    while let Some(o) = out.take().or_else(&mut next) {
        if let Outgoing::Binary { header, payload } = &o {
            let header = header.as_ref().map_or(&[][..], |h| &h[..]);
            if raw.try_push(header, payload, vectored) {
                continue;
            }
        }
        return Now::Later(Some(o), Some(raw));
    }
    match raw.poll_write_all(ws.get_mut(), cx) {
        Poll::Ready(Ok(())) => {}
        Poll::Ready(Err(e)) => return Now::Failed(e),
        Poll::Pending => return Now::Later(None, Some(raw)),
    }
    match Pin::new(ws.get_mut()).poll_flush(cx) {
        Poll::Ready(Ok(())) => Now::Written,
        Poll::Ready(Err(e)) => Now::Failed(e),
        Poll::Pending => Now::Later(None, Some(raw)),
    }
}

async fn burst<S, F>(
    ws: &mut WebSocketStream<S>,
    masked: bool,
    queued: Option<FrameWriter>,
    mut next: F,
) -> Result<Written, BurstError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnMut() -> Option<Outgoing>,
{
    let write_err = BurstError::Write;
    // Whether tungstenite may hold bytes not yet written: at first, whatever a read left
    // behind (unless it was flushed before `queued` was filled); then what this burst fed
    // it. It is flushed before the next raw byte, not earlier, so that a pong a machine
    // queues still replaces tungstenite's automatic one.
    let (mut raw, mut first, mut dirty) = match queued {
        Some(raw) => (raw, None, false),
        None => {
            let Some(first) = next() else {
                return Ok(Written {
                    messages: 0,
                    closed: false,
                });
            };
            (FrameWriter::new(masked), Some(first), true)
        }
    };
    let mut written = Written {
        messages: 0,
        closed: false,
    };
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
    async fn burst_is_read_by_tungstenite(masked: bool, as_run_loop: bool) {
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
        if as_run_loop {
            let (later, written) = write_as_run_loop(&mut ws, masked, || queue.pop_front()).await;
            assert!(later, "a 16 MiB message cannot be written in one poll");
            assert!(written.unwrap().closed);
        } else {
            let written = write_framed(&mut ws, TIMEOUT, masked, || queue.pop_front())
                .await
                .unwrap();
            assert!(written.closed);
            assert_eq!(written.messages, expected.len() + 1);
        }
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
        burst_is_read_by_tungstenite(false, false).await;
        burst_is_read_by_tungstenite(false, true).await;
    }

    #[tokio::test]
    async fn client_frames_are_masked_and_read_by_tungstenite_as_the_server() {
        burst_is_read_by_tungstenite(true, false).await;
        burst_is_read_by_tungstenite(true, true).await;
    }

    /// Our WebSocket over a [`Chop`] that takes `max` bytes a write (the client's when
    /// `masked`) and the peer's, over a duplex of `buffer` bytes.
    async fn chopped(
        buffer: usize,
        max: usize,
        masked: bool,
    ) -> (
        WebSocketStream<Chop>,
        WebSocketStream<tokio::io::DuplexStream>,
    ) {
        let (a, b) = tokio::io::duplex(buffer);
        let chop = Chop {
            inner: a,
            max,
            writes: 0,
        };
        let (ours, theirs) = if masked {
            (Role::Client, Role::Server)
        } else {
            (Role::Server, Role::Client)
        };
        let ws = WebSocketStream::from_raw_socket(chop, ours, None).await;
        let peer = WebSocketStream::from_raw_socket(b, theirs, None).await;
        (ws, peer)
    }

    /// Writes a burst as a connection's run loop does: what [`write_now`] writes in one
    /// poll, then the rest in [`write_framed_from`]. Returns whether there was a rest, and
    /// what the burst's future wrote (`None` when there was no rest).
    async fn write_as_run_loop<S, F>(
        ws: &mut WebSocketStream<S>,
        masked: bool,
        mut next: F,
    ) -> (bool, Option<Written>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
        F: FnMut() -> Option<Outgoing>,
    {
        let now =
            std::future::poll_fn(|cx| Poll::Ready(write_now(ws, masked, &mut next, cx))).await;
        match now {
            Now::Empty | Now::Written => (false, None),
            Now::Failed(e) => panic!("{e}"),
            Now::Later(first, queued) => {
                let mut first = first;
                let next = || first.take().or_else(&mut next);
                let written = write_framed_from(ws, TIMEOUT, masked, queued, next).await;
                (true, Some(written.unwrap()))
            }
        }
    }

    /// A burst of small frames is written in the poll that takes it, in one write, with
    /// no future of its own; the bytes are the frames, in order. A burst that starts with a
    /// message for tungstenite is left to the future, untouched (a pong the machine queues
    /// must replace tungstenite's automatic one, which a flush would send), and so is
    /// nothing at all.
    #[tokio::test]
    async fn small_frames_are_written_in_the_poll_that_takes_them() {
        for masked in [false, true] {
            let (mut ws, mut peer) = chopped(1 << 20, usize::MAX, masked).await;
            let frames = |n: u8| -> std::collections::VecDeque<Outgoing> {
                (0..n)
                    .map(|i| Outgoing::Binary {
                        header: Some([5, 0, 0, 0, 0, 0, 0, i]),
                        payload: Bytes::from(vec![i; 100 + usize::from(i)]),
                    })
                    .collect()
            };
            let mut queue = frames(20);
            let (later, _) = write_as_run_loop(&mut ws, masked, || queue.pop_front()).await;
            assert!(!later, "written in the poll");
            assert_eq!(ws.get_ref().writes, 1, "in one write");
            for i in 0..20u8 {
                let Message::Binary(got) = peer.next().await.unwrap().unwrap() else {
                    panic!("not binary");
                };
                assert_eq!(got[..8], [5, 0, 0, 0, 0, 0, 0, i]);
                assert_eq!(got[8..], vec![i; 100 + usize::from(i)][..]);
            }

            let mut queue = std::collections::VecDeque::from([Outgoing::Message(Message::Pong(
                Bytes::from_static(b"machine"),
            ))]);
            queue.extend(frames(2));
            let writes = ws.get_ref().writes;
            let now = std::future::poll_fn(|cx| {
                Poll::Ready(write_now(&mut ws, masked, || queue.pop_front(), cx))
            })
            .await;
            assert!(
                matches!(now, Now::Later(Some(Outgoing::Message(_)), None)),
                "{now:?}"
            );
            assert_eq!(ws.get_ref().writes, writes, "nothing written");
            let now =
                std::future::poll_fn(|cx| Poll::Ready(write_now(&mut ws, masked, || None, cx)))
                    .await;
            assert!(matches!(now, Now::Empty));
        }
    }

    /// A socket that takes part of a burst and then is full: the poll writes what it
    /// takes, and the burst's future goes on from the byte where it stopped.
    #[tokio::test]
    async fn a_burst_the_socket_cannot_take_at_once_goes_on_where_it_stopped() {
        for masked in [false, true] {
            let (mut ws, mut peer) = chopped(4096, 1000, masked).await;
            let mut queue: std::collections::VecDeque<Outgoing> = (0..40u8)
                .map(|i| Outgoing::Binary {
                    header: None,
                    payload: Bytes::from(vec![i; 999]),
                })
                .collect();
            let reader = tokio::spawn(async move {
                for i in 0..40u8 {
                    let Message::Binary(got) = peer.next().await.unwrap().unwrap() else {
                        panic!("not binary");
                    };
                    assert_eq!(got, vec![i; 999], "message {i}");
                }
            });
            let (later, _) = write_as_run_loop(&mut ws, masked, || queue.pop_front()).await;
            assert!(later, "the socket was full");
            reader.await.unwrap();
        }
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
