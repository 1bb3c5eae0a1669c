//! The client's HTTP/1 upgrade to WebSocket (RFC 6455 §4.1), done here rather than by
//! tungstenite's client handshake: tungstenite reads the server's answer into a buffer of
//! a fixed 4 KiB and hands that buffer to the connection as its read buffer for good, a
//! quarter of what an idle client cost (issue 11 goal 5). Here the answer is read into a
//! buffer of its own, dropped once parsed, and the WebSocket starts with the configured
//! read buffer (1 KiB, [`ws_config`](super::ws_config)), as the server's does.
//!
//! The request is tungstenite's own ([`generate_request`]); the answer gets tungstenite's
//! checks, in its order: the status, `Upgrade`, `Connection`, `Sec-WebSocket-Accept`, then
//! the subprotocol (the server must select the one offered).

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::generate_request;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use crate::conn::Io;

/// Bytes the server's answer may take before it counts as malformed.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// Header fields the server's answer may have.
const MAX_HEADERS: usize = 64;

/// Why the upgrade failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpgradeError {
    /// The socket failed or closed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The server answered with another status than 101.
    #[error("HTTP error: {status}")]
    Refused {
        /// Its status.
        status: http::StatusCode,
        /// Its `Retry-After`, if any.
        retry_after: Option<http::HeaderValue>,
    },
    /// The server selected no subprotocol, or another than the one offered.
    #[error("the server did not select the subprotocol")]
    Subprotocol,
    /// The request could not be built, or the answer is not a valid upgrade.
    #[error("{0}")]
    Invalid(String),
}

/// Sends the upgrade request for `uri` (offering `subprotocol`) on `io`, reads and checks
/// the answer, and returns the client's WebSocket; bytes that came after the answer are
/// its first input.
pub(crate) async fn connect<S: Io>(
    mut io: S,
    uri: &http::Uri,
    subprotocol: &'static str,
    config: WebSocketConfig,
) -> Result<WebSocketStream<S>, UpgradeError> {
    let mut request = uri
        .into_client_request()
        .map_err(|e| UpgradeError::Invalid(e.to_string()))?;
    request.headers_mut().insert(
        http::header::SEC_WEBSOCKET_PROTOCOL,
        http::HeaderValue::from_static(subprotocol),
    );
    let (bytes, key) =
        generate_request(request).map_err(|e| UpgradeError::Invalid(e.to_string()))?;
    io.write_all(&bytes).await?;
    io.flush().await?;
    drop(bytes);
    let accept = derive_accept_key(key.as_bytes());
    let mut buf = Vec::with_capacity(1024);
    loop {
        if buf.len() == buf.capacity() {
            if buf.len() >= MAX_RESPONSE_HEAD {
                return Err(UpgradeError::Invalid("response head too large".into()));
            }
            buf.reserve(buf.len());
        }
        if io.read_buf(&mut buf).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed during the upgrade",
            )
            .into());
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf) {
            Ok(httparse::Status::Partial) => continue,
            Ok(httparse::Status::Complete(len)) => {
                check(&response, &accept, subprotocol)?;
                let tail = buf[len..].to_vec();
                drop(buf);
                let ws = WebSocketStream::from_partially_read(io, tail, Role::Client, Some(config))
                    .await;
                return Ok(ws);
            }
            Err(e) => return Err(UpgradeError::Invalid(format!("bad response: {e}"))),
        }
    }
}

/// The value of header `name`, if present once or more (the first).
fn header<'a>(response: &'a httparse::Response<'_, '_>, name: &str) -> Option<&'a [u8]> {
    response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
}

/// RFC 6455 §4.1's checks of the server's answer, in tungstenite's order.
fn check(
    response: &httparse::Response<'_, '_>,
    accept: &str,
    subprotocol: &str,
) -> Result<(), UpgradeError> {
    let status = response.code.unwrap_or_default();
    if status != 101 {
        let status = http::StatusCode::from_u16(status)
            .map_err(|_| UpgradeError::Invalid(format!("bad status {status}")))?;
        let retry_after =
            header(response, "Retry-After").and_then(|v| http::HeaderValue::from_bytes(v).ok());
        return Err(UpgradeError::Refused {
            status,
            retry_after,
        });
    }
    let is = |name: &str, want: &str| {
        header(response, name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case(want))
    };
    if !is("Upgrade", "websocket") {
        return Err(UpgradeError::Invalid("no Upgrade: websocket".into()));
    }
    if !is("Connection", "Upgrade") {
        return Err(UpgradeError::Invalid("no Connection: Upgrade".into()));
    }
    if header(response, "Sec-WebSocket-Accept") != Some(accept.as_bytes()) {
        return Err(UpgradeError::Invalid(
            "Sec-WebSocket-Accept mismatch".into(),
        ));
    }
    match header(response, "Sec-WebSocket-Protocol") {
        Some(selected) if selected == subprotocol.as_bytes() => Ok(()),
        _ => Err(UpgradeError::Subprotocol),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::AsyncWriteExt;
    use tokio_tungstenite::tungstenite::Message;

    fn config() -> WebSocketConfig {
        super::super::ws_config(64 * 1024)
    }

    /// Reads the request head from the other end and answers with `answer(key)`.
    async fn serve(
        mut peer: tokio::io::DuplexStream,
        answer: impl FnOnce(&str) -> Vec<u8>,
    ) -> tokio::io::DuplexStream {
        let mut buf = Vec::new();
        while !buf.ends_with(b"\r\n\r\n") {
            let mut byte = [0];
            peer.read_exact(&mut byte).await.unwrap();
            buf.push(byte[0]);
        }
        let head = String::from_utf8(buf).unwrap();
        assert!(head.starts_with("GET /x?y HTTP/1.1\r\n"), "{head}");
        assert!(
            head.contains("Sec-WebSocket-Protocol: tether.v1\r\n"),
            "{head}"
        );
        let key = head
            .lines()
            .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
            .unwrap();
        peer.write_all(&answer(&derive_accept_key(key.as_bytes())))
            .await
            .unwrap();
        peer
    }

    fn upgrade(accept: &str, protocol: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\
             sec-websocket-accept: {accept}\r\n{protocol}\r\n"
        )
        .into_bytes()
    }

    #[tokio::test]
    async fn upgrades_and_keeps_the_bytes_after_the_answer() {
        let (a, b) = tokio::io::duplex(4096);
        let uri: http::Uri = "ws://example.test:9/x?y".parse().unwrap();
        let server = tokio::spawn(async move {
            let peer = serve(b, |accept| {
                // A frame right behind the answer: a binary message "hi", unmasked.
                let mut answer = upgrade(accept, "sec-websocket-protocol: tether.v1\r\n");
                answer.extend_from_slice(&[0x82, 2, b'h', b'i']);
                answer
            })
            .await;
            WebSocketStream::from_raw_socket(peer, Role::Server, None).await
        });
        let mut ws = connect(a, &uri, "tether.v1", config()).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::binary(&b"hi"[..])
        );
        let mut server = server.await.unwrap();
        ws.send(Message::binary(&b"back"[..])).await.unwrap();
        assert_eq!(
            server.next().await.unwrap().unwrap(),
            Message::binary(&b"back"[..])
        );
    }

    #[tokio::test]
    async fn refusals_and_bad_answers_are_errors() {
        let uri: http::Uri = "ws://example.test/x?y".parse().unwrap();
        /// An answer (from the accept key) and a check of the error it causes.
        type Case = (fn(&str) -> Vec<u8>, fn(&UpgradeError) -> bool);
        let cases: [Case; 4] = [
            (
                |_| {
                    "HTTP/1.1 429 Too Many Requests\r\nretry-after: 7\r\ncontent-length: 0\r\n\r\n"
                        .into()
                },
                |e| {
                    matches!(e, UpgradeError::Refused { status, retry_after: Some(v) }
                        if *status == 429 && v == "7")
                },
            ),
            (
                |accept| upgrade(accept, ""),
                |e| matches!(e, UpgradeError::Subprotocol),
            ),
            (
                |accept| upgrade(accept, "sec-websocket-protocol: other\r\n"),
                |e| matches!(e, UpgradeError::Subprotocol),
            ),
            (
                |_| upgrade("wrong", "sec-websocket-protocol: tether.v1\r\n"),
                |e| matches!(e, UpgradeError::Invalid(_)),
            ),
        ];
        for (answer, expected) in cases {
            let (a, b) = tokio::io::duplex(4096);
            let server = tokio::spawn(serve(b, answer));
            let error = connect(a, &uri, "tether.v1", config()).await.unwrap_err();
            assert!(expected(&error), "{error:?}");
            drop(server.await.unwrap());
        }
    }
}
