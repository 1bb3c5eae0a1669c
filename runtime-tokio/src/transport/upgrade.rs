//! Server side of the WebSocket opening handshake, with the HTTP-level checks that must answer
//! before the upgrade: method (405), origin (403), malformed upgrade (400), version (426).
//!
//! The handshake runs on hyper's HTTP/1 server, so every rejection is a real HTTP response with a
//! status and a short text body, which tungstenite's own `accept` cannot give for a wrong method.
//! One request per connection: a rejected client gets its answer with `Connection: close` and the
//! socket is closed.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use crate::transport::read_ahead::ReadAhead;
use crate::transport::socket::Socket;

/// The WebSocket stream of an accepted server connection (reading ahead while a large
/// message streams in, see [`ReadAhead`]).
pub(crate) type ServerStream = WebSocketStream<ReadAhead<Socket>>;

/// Which `Origin` headers may open a WebSocket. A request without `Origin` (a non-browser
/// client) is always allowed: the check protects browsers' users from cross-site pages.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AllowedOrigins {
    /// Any origin.
    Any,
    /// Only an origin whose host (and port) equals the request's `Host` header, over http or
    /// https: the same-origin rule of macaron sockets' default `https?://{{host}}$`.
    #[default]
    SameHost,
    /// Exactly these origins (`scheme://host[:port]`, compared ASCII case-insensitively).
    List(Vec<String>),
}

impl AllowedOrigins {
    /// Whether a request with these headers passes.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return true;
        };
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        match self {
            AllowedOrigins::Any => true,
            AllowedOrigins::List(list) => list.iter().any(|o| o.eq_ignore_ascii_case(origin)),
            AllowedOrigins::SameHost => {
                let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
                let authority = origin
                    .strip_prefix("http://")
                    .or_else(|| origin.strip_prefix("https://"));
                matches!((host, authority), (Some(h), Some(a)) if h.eq_ignore_ascii_case(a))
            }
        }
    }
}

/// What the server learned from the upgrade request.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// The peer's address.
    pub peer: SocketAddr,
    /// The request target (path and query).
    pub uri: Uri,
    /// The request headers.
    pub headers: HeaderMap,
}

/// Why a connection did not become a WebSocket.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcceptError {
    /// The request was answered with this HTTP status (405, 403, 400, 426) and closed.
    #[error("upgrade rejected with HTTP {0}")]
    Rejected(StatusCode),
    /// No complete upgrade within the handshake timeout.
    #[error("handshake timed out")]
    Timeout,
    /// The HTTP exchange failed (malformed request, I/O error, peer went away).
    #[error("HTTP error during the handshake: {0}")]
    Http(#[from] hyper::Error),
}

/// Handshake policy of a server.
#[derive(Debug, Clone)]
pub(crate) struct AcceptPolicy {
    pub(crate) origins: AllowedOrigins,
    pub(crate) handshake_timeout: Duration,
    pub(crate) ws_config: WebSocketConfig,
    /// The subprotocol to select; a request that does not offer it gets 400.
    pub(crate) subprotocol: Option<&'static str>,
}

type Pending = Arc<Mutex<Option<(OnUpgrade, RequestInfo)>>>;

/// Runs the HTTP/1 handshake on `stream` and returns the WebSocket, or the reason it failed.
pub(crate) async fn accept<S>(
    stream: S,
    peer: SocketAddr,
    policy: &AcceptPolicy,
) -> Result<(ServerStream, RequestInfo), AcceptError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    accept_with(stream, peer, policy, |io| io).await
}

/// [`accept`], with the upgraded byte stream wrapped by `wrap` under the read-ahead.
pub(crate) async fn accept_with<S, T>(
    stream: S,
    peer: SocketAddr,
    policy: &AcceptPolicy,
    wrap: impl FnOnce(Socket) -> T,
) -> Result<(WebSocketStream<ReadAhead<T>>, RequestInfo), AcceptError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: AsyncRead + AsyncWrite + Unpin,
{
    let pending: Pending = Arc::new(Mutex::new(None));
    let rejected: Arc<Mutex<Option<StatusCode>>> = Arc::new(Mutex::new(None));
    let service = {
        let pending = pending.clone();
        let rejected = rejected.clone();
        let origins = policy.origins.clone();
        let subprotocol = policy.subprotocol;
        hyper::service::service_fn(move |mut req: Request<Incoming>| {
            let response = match check(&req, &origins, subprotocol) {
                Ok(accept_key) => {
                    let info = RequestInfo {
                        peer,
                        uri: req.uri().clone(),
                        headers: std::mem::take(req.headers_mut()),
                    };
                    let on_upgrade = hyper::upgrade::on(&mut req);
                    if let Ok(mut slot) = pending.lock() {
                        *slot = Some((on_upgrade, info));
                    }
                    switching(accept_key, subprotocol)
                }
                Err((status, body)) => {
                    if let Ok(mut slot) = rejected.lock() {
                        *slot = Some(status);
                    }
                    reject(status, body)
                }
            };
            std::future::ready(Ok::<_, std::convert::Infallible>(response))
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(policy.handshake_timeout)
        .max_buf_size(16 * 1024);
    let conn = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    match tokio::time::timeout(policy.handshake_timeout, conn).await {
        Err(_) => return Err(AcceptError::Timeout),
        Ok(result) => result?,
    }
    let taken = pending.lock().ok().and_then(|mut slot| slot.take());
    let Some((on_upgrade, info)) = taken else {
        let status = rejected.lock().ok().and_then(|s| *s);
        return Err(AcceptError::Rejected(
            status.unwrap_or(StatusCode::BAD_REQUEST),
        ));
    };
    let upgraded = match tokio::time::timeout(policy.handshake_timeout, on_upgrade).await {
        Err(_) => return Err(AcceptError::Timeout),
        Ok(result) => result?,
    };
    let ws = WebSocketStream::from_raw_socket(
        ReadAhead::new(wrap(Socket::new(upgraded)), Role::Server),
        Role::Server,
        Some(policy.ws_config),
    )
    .await;
    Ok((ws, info))
}

/// Answers the one request on `stream` with `429 Too Many Requests` and `Retry-After:
/// retry_after` (seconds), then closes: the address is in abuse cool-down
/// (spec/protocol.md §10.8). The request head is read first (within the handshake
/// timeout) so the answer is not lost to a reset for unread bytes.
pub(crate) async fn refuse<S>(stream: S, policy: &AcceptPolicy, retry_after: u64)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |_req: Request<Incoming>| {
        let mut response = reject(
            StatusCode::TOO_MANY_REQUESTS,
            "too many abusive connections from this address; retry later\n",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        std::future::ready(Ok::<_, std::convert::Infallible>(response))
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(policy.handshake_timeout)
        .max_buf_size(16 * 1024);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let _ = tokio::time::timeout(policy.handshake_timeout, conn).await;
}

/// RFC 6455 §4.2.1 checks, in the order a client can best act on. Returns the accept key.
/// Pure (it reads only the request head), so the fuzz target `ws_upgrade` can call it
/// through [`crate::fuzzing`].
pub(crate) fn check<B>(
    req: &Request<B>,
    origins: &AllowedOrigins,
    subprotocol: Option<&'static str>,
) -> Result<String, (StatusCode, &'static str)> {
    let headers = req.headers();
    if req.method() != Method::GET {
        return Err((
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET can open a WebSocket\n",
        ));
    }
    if !origins.allows(headers) {
        return Err((StatusCode::FORBIDDEN, "origin not allowed\n"));
    }
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
                .unwrap_or(false)
        })
    };
    // RFC 6455 §4.1, §4.2.1: an HTTP/1.1 (or later) GET.
    if req.version() < http::Version::HTTP_11 {
        return Err((
            StatusCode::BAD_REQUEST,
            "a WebSocket upgrade needs HTTP/1.1\n",
        ));
    }
    if !has_token(header::UPGRADE, "websocket") || !has_token(header::CONNECTION, "upgrade") {
        return Err((
            StatusCode::BAD_REQUEST,
            "expected a WebSocket upgrade request\n",
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err((
            StatusCode::UPGRADE_REQUIRED,
            "only WebSocket version 13 is supported\n",
        ));
    }
    if let Some(protocol) = subprotocol {
        // spec/protocol.md §2.1: a Tether client offers the subprotocol.
        if !has_token(header::SEC_WEBSOCKET_PROTOCOL, protocol) {
            return Err((
                StatusCode::BAD_REQUEST,
                "this endpoint speaks the tether.v1 WebSocket subprotocol\n",
            ));
        }
    }
    let mut keys = headers.get_all(header::SEC_WEBSOCKET_KEY).iter();
    match (keys.next(), keys.next()) {
        (Some(key), None) if is_websocket_key(key.as_bytes()) => {
            Ok(derive_accept_key(key.as_bytes()))
        }
        _ => Err((
            StatusCode::BAD_REQUEST,
            "expected one Sec-WebSocket-Key: 16 bytes in base64\n",
        )),
    }
}

/// RFC 6455 §4.2.1 item 5: the key is the base64 encoding (RFC 4648 §4, padded) of 16
/// bytes: 22 characters of the alphabet, then `==`.
fn is_websocket_key(key: &[u8]) -> bool {
    let is_b64 = |b: &u8| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/';
    matches!(key.split_at_checked(22), Some((data, b"==")) if data.iter().all(is_b64))
}

fn switching(accept_key: String, subprotocol: Option<&'static str>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept_key) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(protocol) = subprotocol {
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(protocol),
        );
    }
    response
}

fn reject(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    // One request per connection: hyper closes after a response marked so.
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            h.insert(header::ALLOW, HeaderValue::from_static("GET"));
        }
        StatusCode::UPGRADE_REQUIRED => {
            h.insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
        }
        _ => {}
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn websocket_keys() {
        assert!(is_websocket_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(is_websocket_key(b"AAAAAAAAAAAAAAAAAAAA+/=="));
        for bad in [
            &b""[..],
            b"abc",
            b"dGhlIHNhbXBsZSBub25jZQ=",
            b"dGhlIHNhbXBsZSBub25jZQ===",
            b"dGhlIHNhbXBsZSBub25jZQAA",
            b"dGhlIHNhbXBsZSBub25j!Q==",
            b"dGhlIHNhbXBsZSBub25jZ-==",
            b"dGhlIHNhbXBsZSBub25jZQ==dGhlIHNhbXBsZSBub25jZQ==",
        ] {
            assert!(!is_websocket_key(bad), "{bad:?}");
        }
        assert!(!is_websocket_key(&[b'A'; 1000]));
    }

    #[test]
    fn origin_rules() {
        let none = headers(&[("host", "a.example:8080")]);
        let same = headers(&[
            ("host", "a.example:8080"),
            ("origin", "https://A.example:8080"),
        ]);
        let other = headers(&[
            ("host", "a.example:8080"),
            ("origin", "http://evil.example"),
        ]);
        assert!(AllowedOrigins::SameHost.allows(&none));
        assert!(AllowedOrigins::SameHost.allows(&same));
        assert!(!AllowedOrigins::SameHost.allows(&other));
        assert!(AllowedOrigins::Any.allows(&other));
        let list = AllowedOrigins::List(vec!["http://evil.example".into()]);
        assert!(list.allows(&other));
        assert!(!list.allows(&same));
    }
}
