//! Load-run helper: the floor of a TCP tunnel carried over one WebSocket with
//! tokio-tungstenite (run by `benches/tunnel_vs_rathole.sh` as the `floor` target).
//!
//! ```text
//! ws_relay_floor gateway  --listen ADDR --ws-listen WSADDR
//! ws_relay_floor upstream --ws URL --connect HOST:PORT
//!
//! visitor -> ADDR [gateway] == one WebSocket (WSADDR) == [upstream] -> HOST:PORT
//! ```
//!
//! The gateway waits for one WebSocket connection on WSADDR (the first whose handshake
//! succeeds), then accepts TCP visitors on ADDR one at a time: the next visitor is
//! accepted once the previous one is over. The upstream dials the WebSocket and, for each
//! visitor, opens one TCP connection to HOST:PORT.
//!
//! # What it measures, and why it is a floor
//!
//! The question: can *any* tunnel built on tokio-tungstenite reach a raw TCP tunnel's
//! (rathole's) requests per second at one connection? This program does the least work a
//! real WebSocket tunnel between two processes can do per byte, so a design that carries
//! more (Tether: stream ids, flow control, heartbeats, many visitors at once) cannot be
//! expected to go faster than this on the same machine. What it leaves out on purpose:
//!
//! - no multiplexing: one visitor at a time, so the messages carry no stream id and no
//!   header of their own;
//! - no flow control, heartbeat, handshake of its own, reconnection or limits;
//! - no queue or channel between tasks: for each visitor ONE task owns both the WebSocket
//!   and the TCP socket and `select!`s between `tcp.read_buf` and `ws.next()`. A read from
//!   TCP becomes one binary message, sent with `ws.send` (which flushes); a message from
//!   the WebSocket is written to TCP with `write_all`.
//!
//! What it keeps, so that it is still a fair floor: two processes over loopback, a real
//! WebSocket (HTTP upgrade, framing, masking from the client side) through
//! tokio-tungstenite with the read and write buffers Tether's WebSocket uses ([`config`]),
//! `TCP_NODELAY` on every socket, and the same
//! runtime as the `tether` CLI (tokio's multi-threaded runtime with its default number of
//! worker threads, i.e. one per core).
//!
//! # Protocol
//!
//! WebSocket binary messages only. A non-empty message is bytes of the current visitor's
//! connection. An empty message means "my TCP side of this visitor ended" (EOF or error);
//! each side sends exactly one per visitor, and a visitor is over for a side once it has
//! both sent and received one, so that a byte of one visitor can never reach the next.
//! The gateway sends its empty message when the visitor closes; the upstream, on receiving
//! it, closes its connection to HOST:PORT (and answers with its own empty message), then
//! waits for the next non-empty message to open a new one. Pings are answered by
//! tungstenite; text messages are ignored; a close, an error or the end of the WebSocket
//! ends the process with status 1.

use std::net::SocketAddr;
use std::process::ExitCode;

use bytes::{Bytes, BytesMut};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The WebSocket, over a plain TCP stream on both sides.
type Ws = WebSocketStream<TcpStream>;

/// Any error, for this program's few fallible steps.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How much one read from a TCP socket may take, and so the largest message sent.
const READ_SIZE: usize = 64 * 1024;

/// The floor of a TCP tunnel over one WebSocket with tokio-tungstenite: one visitor at a
/// time, no header, no flow control.
///
/// visitor -> ADDR [gateway] == one WebSocket (WSADDR) == [upstream] -> HOST:PORT
#[derive(Parser)]
#[command(name = "ws_relay_floor")]
enum Mode {
    /// Accept the WebSocket on WSADDR (the first whose handshake succeeds), then TCP
    /// visitors on ADDR, one at a time.
    Gateway {
        /// Where visitors connect (TCP), e.g. 127.0.0.1:8080.
        #[arg(long, value_name = "ADDR")]
        listen: SocketAddr,
        /// Where the upstream's WebSocket connects, e.g. 127.0.0.1:9000.
        #[arg(long, value_name = "WSADDR")]
        ws_listen: SocketAddr,
    },
    /// Dial the gateway's WebSocket, then open one TCP connection to HOST:PORT for each
    /// visitor.
    Upstream {
        /// The gateway's WebSocket, e.g. ws://127.0.0.1:9000/.
        #[arg(long, value_name = "URL")]
        ws: String,
        /// Where each visitor's bytes go, e.g. 127.0.0.1:80.
        #[arg(long, value_name = "HOST:PORT")]
        connect: String,
    },
}

// The same runtime as the `tether` CLI (runtime-tokio/src/bin/cmd/common.rs `block_on`):
// multi-threaded, the default number of workers (one per core: 2 on the bench machine).
#[tokio::main]
async fn main() -> ExitCode {
    let result = match Mode::parse() {
        Mode::Gateway { listen, ws_listen } => gateway(listen, ws_listen).await,
        Mode::Upstream { ws, connect } => upstream(&ws, &connect).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ws_relay_floor: {e}");
            ExitCode::FAILURE
        }
    }
}

/// tokio-tungstenite's configuration, with the read and write buffers of Tether's
/// WebSocket (`tether_tokio::transport::ws_config`): a 1 KiB read buffer and a 16 KiB
/// write buffer. The default read buffer (128 KiB) is zero-filled up to its size before
/// every read, which costs a small message more than the rest of its way through
/// tungstenite (benches/RESULTS.md, "One at a time: the floor was tungstenite's
/// configuration"); until 2026-12-04 this floor ran with it.
fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(16 * 1024)
}

/// The gateway: one WebSocket, then visitors one at a time, each relayed by its own task.
async fn gateway(listen: SocketAddr, ws_listen: SocketAddr) -> Result<(), BoxError> {
    // Both bound first, so that a port that is taken fails at once; visitors that come
    // before the WebSocket wait in the backlog.
    let ws_listener = TcpListener::bind(ws_listen).await?;
    let listener = TcpListener::bind(listen).await?;
    // The first connection whose handshake succeeds is the WebSocket; one that fails (a
    // port probe that connects and closes, say) is dropped.
    let mut ws = loop {
        let (stream, peer) = ws_listener.accept().await?;
        stream.set_nodelay(true)?;
        match tokio_tungstenite::accept_async_with_config(stream, Some(config())).await {
            Ok(ws) => break ws,
            Err(e) => eprintln!("ws_relay_floor: WebSocket handshake from {peer} failed: {e}"),
        }
    };
    drop(ws_listener);
    loop {
        let (visitor, _) = listener.accept().await?;
        let _ = visitor.set_nodelay(true);
        ws = tokio::spawn(relay(ws, Some(visitor), None)).await??;
    }
}

/// The upstream: dials the WebSocket, then opens one connection to `connect` per visitor
/// (on the first message of each), each relayed by its own task.
async fn upstream(url: &str, connect: &str) -> Result<(), BoxError> {
    let request = url.into_client_request()?;
    let uri = request.uri();
    let host = uri.host().ok_or("the WebSocket URL has no host")?;
    let addr = format!("{}:{}", host, uri.port_u16().unwrap_or(80));
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(request, stream, Some(config())).await?;
    loop {
        let first = match ws.next().await {
            Some(Ok(Message::Binary(bytes))) => bytes,
            Some(Ok(Message::Close(_))) | None => return Err("the WebSocket closed".into()),
            Some(Ok(_)) => continue, // ping, pong, text
            Some(Err(e)) => return Err(e.into()),
        };
        if first.is_empty() {
            // A visitor that closed before sending a byte: no connection to open, only
            // the visitor's end to answer.
            ws.send(Message::Binary(Bytes::new())).await?;
            continue;
        }
        // A connection that fails is a TCP side that ended at once: `relay` says so.
        let tcp = match TcpStream::connect(connect).await {
            Ok(tcp) => {
                let _ = tcp.set_nodelay(true);
                Some(tcp)
            }
            Err(e) => {
                eprintln!("ws_relay_floor: cannot connect to {connect}: {e}");
                None
            }
        };
        ws = tokio::spawn(relay(ws, tcp, Some(first))).await??;
    }
}

/// Relays one visitor's bytes between `tcp` and `ws` until both ends have said they are
/// over (one empty message each way), then closes `tcp` and hands the WebSocket back.
/// `tcp` is `None` when the connection could not be made; `first` is a message already
/// received for this visitor, to write before anything else.
async fn relay(
    mut ws: Ws,
    mut tcp: Option<TcpStream>,
    first: Option<Bytes>,
) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut buf = BytesMut::with_capacity(READ_SIZE);
    // Once our TCP side has ended (EOF, read or write error) we send our empty message
    // and stop reading it; later messages for this visitor are written if they can be.
    let mut sent_end = false;
    if let Some(bytes) = first {
        if !write(&mut tcp, &bytes).await {
            ws.send(Message::Binary(Bytes::new())).await?;
            sent_end = true;
        }
    }
    loop {
        tokio::select! {
            // `tcp` is `None` only once `sent_end` is set, so this branch is off by then.
            read = async {
                match tcp.as_mut() {
                    Some(stream) => stream.read_buf(&mut buf).await,
                    None => Ok(0),
                }
            }, if !sent_end => {
                match read {
                    Ok(n) if n > 0 => {
                        // No copy: the bytes read leave as they are, and once tungstenite
                        // has written them the reserve below takes the same memory back.
                        ws.send(Message::Binary(buf.split().freeze())).await?;
                        buf.reserve(READ_SIZE);
                    }
                    _ => {
                        ws.send(Message::Binary(Bytes::new())).await?;
                        sent_end = true;
                    }
                }
            }
            message = ws.next() => match message {
                Some(Ok(Message::Binary(bytes))) if bytes.is_empty() => {
                    // The other end is over: so is this visitor once ours is said too.
                    if !sent_end {
                        ws.send(Message::Binary(Bytes::new())).await?;
                    }
                    return Ok(ws); // drops (closes) the TCP connection
                }
                Some(Ok(Message::Binary(bytes))) => {
                    if !write(&mut tcp, &bytes).await && !sent_end {
                        ws.send(Message::Binary(Bytes::new())).await?;
                        sent_end = true;
                    }
                }
                Some(Ok(Message::Close(_))) | None => {
                    return Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed)
                }
                Some(Ok(_)) => {} // ping (answered by tungstenite), pong, text
                Some(Err(e)) => return Err(e),
            },
        }
    }
}

/// Writes `bytes` to `tcp`; on failure drops the socket and returns false.
async fn write(tcp: &mut Option<TcpStream>, bytes: &[u8]) -> bool {
    let Some(stream) = tcp.as_mut() else {
        return false;
    };
    if stream.write_all(bytes).await.is_ok() {
        return true;
    }
    *tcp = None;
    false
}
