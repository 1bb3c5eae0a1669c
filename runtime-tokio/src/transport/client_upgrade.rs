//! The client's HTTP/1 upgrade to WebSocket (RFC 6455 §4.1), on hyper's HTTP/1 client as
//! the server's is on hyper's server ([`upgrade`](super::upgrade)), rather than by
//! tungstenite's client handshake: tungstenite reads the server's answer into a buffer of
//! a fixed 4 KiB and hands that buffer to the connection as its read buffer for good, a
//! quarter of what an idle client cost (issue 11 goal 5). hyper reads the answer into a
//! buffer of its own, which the connection lets go once the bytes that came behind the
//! answer (if any) are read, and the WebSocket starts with the configured read buffer
//! (1 KiB, [`ws_config`](super::ws_config)), as the server's does.
//!
//! The request is tungstenite's own ([`IntoClientRequest`]: `Host`, `Upgrade`,
//! `Connection`, `Sec-WebSocket-Version: 13` and a fresh key from its `generate_key`) plus
//! the subprotocol offered; the answer gets tungstenite's checks, in its order: the status,
//! `Upgrade`, `Connection`, `Sec-WebSocket-Accept` (its [`derive_accept_key`]), then the
//! subprotocol (the server must select the one offered).

use http::{header, HeaderMap, Response};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use super::read_ahead::ReadAhead;
use super::socket::Socket;
use super::upgrade::ServerStream;

/// The WebSocket stream of a client connection: the same as a server's (reading ahead
/// while a large message streams in, see [`ReadAhead`]).
pub(crate) type ClientStream = ServerStream;

/// Bytes the server's answer may take before it counts as malformed (hyper's read buffer
/// limit; it cannot be less than 8 KiB).
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// Why the upgrade failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpgradeError {
    /// The HTTP exchange failed: the socket failed or closed, or the answer is not
    /// HTTP/1 or too large.
    #[error("HTTP error during the upgrade: {0}")]
    Http(#[from] hyper::Error),
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
pub(crate) async fn connect<S>(
    io: S,
    uri: &http::Uri,
    subprotocol: &'static str,
    config: WebSocketConfig,
) -> Result<ClientStream, UpgradeError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let invalid = |e: &dyn std::fmt::Display| UpgradeError::Invalid(e.to_string());
    let mut request = uri.into_client_request().map_err(|e| invalid(&e))?;
    let accept = match request.headers().get(header::SEC_WEBSOCKET_KEY) {
        Some(key) => derive_accept_key(key.as_bytes()),
        None => return Err(invalid(&"no Sec-WebSocket-Key")),
    };
    request.headers_mut().insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        http::HeaderValue::from_static(subprotocol),
    );
    // hyper's connection writes the target as given: the origin form (RFC 9112 §3.2.1).
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    *request.uri_mut() = target.parse().map_err(|e| invalid(&e))?;
    let request = request.map(|()| Empty::<Bytes>::new());

    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .max_buf_size(MAX_RESPONSE_HEAD)
        .handshake(TokioIo::new(io))
        .await?;
    let exchange = async {
        let response = sender.send_request(request).await?;
        check(&response, &accept, subprotocol)?;
        Ok::<_, UpgradeError>(hyper::upgrade::on(response).await?)
    };
    // The connection is driven beside the exchange, in this task: it ends once it has
    // handed the socket to the upgrade the exchange awaits, and its failure ends both.
    let drive = async {
        if let Err(e) = conn.with_upgrades().await {
            return e;
        }
        std::future::pending().await
    };
    let upgraded = tokio::select! {
        biased;
        upgraded = exchange => upgraded?,
        e = drive => return Err(e.into()),
    };
    let ws = WebSocketStream::from_raw_socket(
        ReadAhead::new(Socket::new(upgraded), Role::Client),
        Role::Client,
        Some(config),
    )
    .await;
    Ok(ws)
}

/// RFC 6455 §4.1's checks of the server's answer, in tungstenite's order.
fn check(
    response: &Response<Incoming>,
    accept: &str,
    subprotocol: &str,
) -> Result<(), UpgradeError> {
    let headers = response.headers();
    if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        return Err(UpgradeError::Refused {
            status: response.status(),
            retry_after: headers.get(header::RETRY_AFTER).cloned(),
        });
    }
    if !has_token(headers, header::UPGRADE, "websocket") {
        return Err(UpgradeError::Invalid("no Upgrade: websocket".into()));
    }
    if !has_token(headers, header::CONNECTION, "upgrade") {
        return Err(UpgradeError::Invalid("no Connection: Upgrade".into()));
    }
    if headers
        .get(header::SEC_WEBSOCKET_ACCEPT)
        .map(|v| v.as_bytes())
        != Some(accept.as_bytes())
    {
        return Err(UpgradeError::Invalid(
            "Sec-WebSocket-Accept mismatch".into(),
        ));
    }
    match headers.get(header::SEC_WEBSOCKET_PROTOCOL) {
        Some(selected) if selected == subprotocol => Ok(()),
        _ => Err(UpgradeError::Subprotocol),
    }
}

/// Whether header `name` lists `token` (ASCII case-insensitive).
fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::{SinkExt, StreamExt};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::Message;

    fn config() -> WebSocketConfig {
        super::super::ws_config(64 * 1024)
    }

    /// Reads the request head from the other end and answers with `answer(key)` (a write
    /// that fails, the client having given up on a long answer, is not an error here).
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
        let lower = head.to_ascii_lowercase();
        assert!(lower.starts_with("get /x?y http/1.1\r\n"), "{head}");
        for field in [
            "host: example.test",
            "upgrade: websocket",
            "connection: upgrade",
            "sec-websocket-version: 13",
            "sec-websocket-protocol: tether.v1",
        ] {
            assert!(lower.contains(&format!("\r\n{field}")), "{field}: {head}");
        }
        let key = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| value.trim())
            })
            .unwrap();
        let _ = peer
            .write_all(&answer(&derive_accept_key(key.as_bytes())))
            .await;
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
        let cases: [Case; 6] = [
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
                |e| matches!(e, UpgradeError::Invalid(m) if m.contains("Accept")),
            ),
            (
                |accept| {
                    format!(
                        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\
                         sec-websocket-accept: {accept}\r\nsec-websocket-protocol: tether.v1\r\n\r\n"
                    )
                    .into()
                },
                |e| matches!(e, UpgradeError::Invalid(m) if m.contains("Connection")),
            ),
            // A response head past the limit (here 20 KiB of one field) is refused
            // before it is all read.
            (
                |accept| {
                    let mut answer = upgrade(accept, "sec-websocket-protocol: tether.v1\r\n");
                    let filler = format!("x-filler: {}\r\n", "a".repeat(20 * 1024));
                    let at = answer.len() - 2;
                    answer.splice(at..at, filler.into_bytes());
                    answer
                },
                |e| matches!(e, UpgradeError::Http(e) if e.is_parse_too_large()),
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
