//! One write burst: feed every message a source yields into the WebSocket, flush once, all of
//! it bounded by one write timeout. Small messages queued together leave in one system call,
//! and a peer that stops reading costs at most the timeout.
//!
//! Used by the demo server, the compat engine and the channel bindings; the source is a
//! closure, so it can drain a machine's output queue, a channel or anything else that yields
//! messages, and stop early by returning `None`.

use std::time::Duration;

use futures_util::SinkExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

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

/// Feeds the messages `next` yields until it returns `None`, then flushes once (no flush
/// when it yielded nothing). The whole burst may take `timeout`. Returns how many messages
/// were written.
pub(crate) async fn write<S, F>(
    ws: &mut WebSocketStream<S>,
    timeout: Duration,
    mut next: F,
) -> Result<usize, BurstError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnMut() -> Option<Message>,
{
    let burst = async {
        let mut fed = 0usize;
        while let Some(message) = next() {
            ws.feed(message).await?;
            fed += 1;
        }
        if fed > 0 {
            ws.flush().await?;
        }
        Ok(fed)
    };
    match tokio::time::timeout(timeout, burst).await {
        Ok(Ok(fed)) => Ok(fed),
        Ok(Err(e)) => Err(BurstError::Write(e)),
        Err(_) => Err(BurstError::TimedOut),
    }
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
