//! How a WebSocket connection ends, on either side (the Tether server and client through
//! crate::conn, the compat engine, the demo server and the channel bindings): the RFC 6455
//! close code for each read error, and a bounded closing handshake.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// How long a closing handshake may take before the socket is simply dropped.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The close frame a server sends after this read error, or `None` when the connection is gone
/// and nothing can be sent.
pub(crate) fn close_frame_for(err: &WsError) -> Option<CloseFrame> {
    let (code, reason) = match err {
        WsError::Capacity(_) => (CloseCode::Size, "message too big"),
        WsError::Utf8(_) => (CloseCode::Invalid, "invalid UTF-8 in text message"),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => return None,
        WsError::Protocol(_) => (CloseCode::Protocol, "protocol error"),
        _ => return None,
    };
    Some(CloseFrame {
        code,
        reason: reason.into(),
    })
}

/// Sends `frame` (if the connection can still take it) and waits, at most [`CLOSE_TIMEOUT`], for
/// the peer to answer the close, discarding data messages that arrive meanwhile.
pub(crate) async fn close<S>(ws: &mut WebSocketStream<S>, frame: Option<CloseFrame>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let handshake = async {
        if ws.send(Message::Close(frame)).await.is_err() {
            return;
        }
        while let Some(Ok(_)) = ws.next().await {}
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, handshake).await;
}

/// After the peer's close frame: lets tungstenite send its queued echo and waits, at most
/// [`CLOSE_TIMEOUT`], for the stream to end.
pub(crate) async fn close_reply<S>(ws: &mut WebSocketStream<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// After a close frame this side sent because the peer misbehaved (the frame is flushed):
/// shuts the write side and discards what the peer still sends, at most [`CLOSE_TIMEOUT`].
/// Dropping a socket whose receive buffer holds unread bytes resets the connection, and a
/// reset can destroy the close frame before the peer reads it (a peer flooding pings always
/// has bytes in flight).
pub(crate) async fn linger<S>(ws: &mut WebSocketStream<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Raw bytes, not messages: the peer's framing may be what is broken.
    let io = ws.get_mut();
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        let _ = io.shutdown().await;
        let mut sink = [0u8; 4096];
        while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// Closes a peer that misbehaves while it may still be sending (a ping flood, an exhausted
/// budget): sends `frame`, then [`linger`]s instead of reading its messages until its close.
pub(crate) async fn close_and_discard<S>(ws: &mut WebSocketStream<S>, frame: CloseFrame)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.send(Message::Close(Some(frame)))).await;
    linger(ws).await;
}
