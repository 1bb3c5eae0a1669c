//! The byte stream under a WebSocket of this crate.
//!
//! The opening handshake runs on hyper's HTTP/1 connection ([`upgrade`](super::upgrade) on
//! the server, [`client_upgrade`](super::client_upgrade) on the client), which hands the
//! socket on as its `Upgraded`: the socket in a box behind hyper's own I/O traits, with the
//! bytes hyper read past the handshake in front. Every read and write of the WebSocket then
//! went through two adapters and a virtual call (tokio's traits to hyper's, hyper's box,
//! hyper's traits back to tokio's): 219 instructions of a small request one at a time at
//! the two ends (benches/RESULTS.md, twenty-second pass). Over plain TCP the socket is
//! taken back out of the box ([`Upgraded::downcast`]) and used directly, its left-over bytes
//! read first; any other stream (TLS) stays in hyper's box.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The byte stream of an upgraded connection (see the module docs).
#[derive(Debug)]
pub(crate) enum Socket {
    /// A plain TCP connection, taken back from hyper.
    Tcp {
        tcp: TcpStream,
        /// What hyper had read past the handshake: read before the socket.
        rewind: Bytes,
    },
    /// Any other stream (TLS), in hyper's box.
    Upgraded(TokioIo<Upgraded>),
}

impl Socket {
    /// The stream `upgraded` was made from, when it is a TCP socket wrapped as the
    /// handshakes wrap it (`TokioIo<TcpStream>`); else `upgraded` itself.
    ///
    /// The bytes hyper read past the handshake are a view of its whole read buffer (8 KiB
    /// or more), even when there are none: they are copied out, so that the buffer goes
    /// now and not with the connection (an idle connection would keep it for its life).
    pub(crate) fn new(upgraded: Upgraded) -> Self {
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => Socket::Tcp {
                tcp: parts.io.into_inner(),
                rewind: if parts.read_buf.is_empty() {
                    Bytes::new()
                } else {
                    Bytes::copy_from_slice(&parts.read_buf)
                },
            },
            Err(upgraded) => Socket::Upgraded(TokioIo::new(upgraded)),
        }
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp { tcp, rewind } => {
                if rewind.is_empty() {
                    return Pin::new(tcp).poll_read(cx, buf);
                }
                let n = rewind.len().min(buf.remaining());
                buf.put_slice(&rewind[..n]);
                rewind.advance(n);
                if rewind.is_empty() {
                    *rewind = Bytes::new(); // its allocation goes
                }
                Poll::Ready(Ok(()))
            }
            Socket::Upgraded(io) => Pin::new(io).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Tcp { tcp, .. } => Pin::new(tcp).poll_write(cx, buf),
            Socket::Upgraded(io) => Pin::new(io).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Tcp { tcp, .. } => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Socket::Upgraded(io) => Pin::new(io).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Socket::Tcp { tcp, .. } => tcp.is_write_vectored(),
            Socket::Upgraded(io) => io.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp { tcp, .. } => Pin::new(tcp).poll_flush(cx),
            Socket::Upgraded(io) => Pin::new(io).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp { tcp, .. } => Pin::new(tcp).poll_shutdown(cx),
            Socket::Upgraded(io) => Pin::new(io).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
    use tokio_tungstenite::tungstenite::Message;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    type Ws = tokio_tungstenite::WebSocketStream<super::super::read_ahead::ReadAhead<Socket>>;

    /// Accepts the WebSocket handshake of `tcp` as the Tether server does.
    async fn accept(tcp: TcpStream) -> Ws {
        let peer = tcp.peer_addr().unwrap();
        let policy = super::super::upgrade::AcceptPolicy {
            origins: Default::default(),
            handshake_timeout: std::time::Duration::from_secs(10),
            ws_config: WebSocketConfig::default(),
            subprotocol: Some("tether.v1"),
        };
        super::super::upgrade::accept(tcp, peer, &policy)
            .await
            .unwrap()
            .0
    }

    /// Dials the WebSocket handshake over `tcp` as the Tether client does.
    async fn connect(tcp: TcpStream) -> Ws {
        let uri: http::Uri = format!("ws://{}/", tcp.peer_addr().unwrap())
            .parse()
            .unwrap();
        super::super::client_upgrade::connect(tcp, &uri, "tether.v1", WebSocketConfig::default())
            .await
            .unwrap()
    }

    /// The first message of `ws`, which the peer sent with its side of the handshake; the
    /// socket it came from is the TCP socket, and holds no memory of hyper's after.
    async fn first_message(ws: &mut Ws) -> Message {
        assert!(matches!(ws.get_ref().get_ref(), Socket::Tcp { .. }));
        let msg = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("the frame sent with the handshake is read")
            .unwrap()
            .unwrap();
        assert_released(ws);
        msg
    }

    /// Once read, the bytes that followed the handshake hold no memory: hyper's read
    /// buffer, of which they were a view, is not kept for the connection's life
    /// (`idle_connections`: 24.0 KiB a pair when it was, 15.7 without).
    fn assert_released(
        ws: &tokio_tungstenite::WebSocketStream<super::super::read_ahead::ReadAhead<Socket>>,
    ) {
        let Socket::Tcp { rewind, .. } = ws.get_ref().get_ref() else {
            panic!("not the TCP socket");
        };
        assert!(rewind.is_empty());
        assert_eq!(
            rewind.as_ptr(),
            Bytes::new().as_ptr(),
            "a view of another buffer"
        );
    }

    /// Reads from `tcp` up to the end of an HTTP head; returns it.
    async fn read_head(tcp: &mut TcpStream) -> String {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            tcp.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        String::from_utf8(head).unwrap()
    }

    /// Server side, over plain TCP: the socket comes back out of hyper, and a frame the
    /// client sent in the same write as its upgrade request (which hyper read with the
    /// request) is the first message read.
    #[tokio::test]
    async fn a_server_gets_the_tcp_socket_back_and_what_followed_the_request_first() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut tcp = TcpStream::connect(addr).await.unwrap();
            let mut bytes = format!(
                "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n\
                 Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: tether.v1\r\n\r\n"
            )
            .into_bytes();
            // A masked binary frame (RFC 6455 §5.3): "hi".
            bytes.extend_from_slice(&[0x82, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2]);
            tcp.write_all(&bytes).await.unwrap();
            let head = read_head(&mut tcp).await;
            assert!(head.starts_with("HTTP/1.1 101"), "{head}");
            tcp
        });
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = accept(tcp).await;
        assert_eq!(first_message(&mut ws).await, Message::binary(&b"hi"[..]));
        drop(client.await.unwrap());
    }

    /// Client side, over plain TCP: the same, for a frame the server sent in the same write
    /// as its 101 response.
    #[tokio::test]
    async fn a_client_gets_the_tcp_socket_back_and_what_followed_the_response_first() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let head = read_head(&mut tcp).await;
            let key = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .starts_with("sec-websocket-key:")
                        .then(|| l.split_once(':').unwrap().1.trim().to_owned())
                })
                .unwrap();
            let mut bytes = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\
                 Sec-WebSocket-Protocol: tether.v1\r\n\r\n",
                derive_accept_key(key.as_bytes())
            )
            .into_bytes();
            bytes.extend_from_slice(&[0x82, 0x02, b'y', b'o']);
            tcp.write_all(&bytes).await.unwrap();
            tcp
        });
        let mut ws = connect(TcpStream::connect(addr).await.unwrap()).await;
        assert_eq!(first_message(&mut ws).await, Message::binary(&b"yo"[..]));
        drop(server.await.unwrap());
    }

    /// Both ends of a handshake with nothing behind it hold no view of hyper's buffer.
    #[tokio::test]
    async fn nothing_behind_the_handshake_holds_no_memory() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { accept(listener.accept().await.unwrap().0).await });
        let client = connect(TcpStream::connect(addr).await.unwrap()).await;
        let server = server.await.unwrap();
        assert_released(&client);
        assert_released(&server);
    }
}
