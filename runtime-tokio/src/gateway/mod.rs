//! A reverse tunnel for plain HTTP: the two halves that put an ordinary HTTP server on one
//! end of a Tether connection within reach of ordinary HTTP clients on the other end.
//!
//! - [`Upstream`] is a [`tower::Service`] to give to `serve` ([`Client::serve`] or
//!   [`Server::serve`]): every request that arrives from the peer is sent on to a local
//!   HTTP server (`http://127.0.0.1:8080/api` …) and its response streamed back.
//! - [`Gateway`] is a local HTTP/1.1 listener: every request it accepts is sent to the
//!   peer through a [`Peer`] and the peer's response streamed back. On a server, the
//!   request header `Tether-Connection: <id>` picks the client (or the only connected
//!   one is used); see [`Target`].
//!
//! - [`TcpGateway`] and [`TcpUpstream`] do the same for raw TCP: one CONNECT stream per
//!   TCP connection (spec/protocol.md §10.9), to destinations the other end allows; see
//!   the [`tcp`] module.
//!
//! Together, a device behind NAT that runs `tether client … --upstream http://127.0.0.1:80`
//! is reachable as `http://gateway-host:8080/` on the server that runs
//! `tether server … --gateway 0.0.0.0:8080`, and the same works the other way round.
//!
//! Both halves behave as an HTTP gateway should (RFC 9110 §7.6): bodies stream in both
//! directions without being buffered whole, the hop-by-hop fields are removed
//! ([`strip_hop_by_hop`]), the upstream gets its own `Host`, and every failure becomes one
//! status with a one-line `text/plain` body ([`GatewayError`]): 502 when the peer or the
//! upstream cannot be reached or is lost mid-request, 503 when there is no connection to
//! send on, 504 when the answer takes too long, 400/404 when the target is unclear.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use axum::{routing::get, Router};
//! use http_body_util::{BodyExt, Empty};
//! use hyper_util::client::legacy::Client as HttpClient;
//! use hyper_util::rt::TokioExecutor;
//! use tether_tokio::client::{Client, ClientConfig, ClientEvent};
//! use tether_tokio::gateway::{Gateway, Target, Upstream};
//! use tether_tokio::server::{Server, ServerConfig};
//!
//! // A device's local web app, reachable only on its loopback...
//! let app = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let app_url = format!("http://{}/app", app.local_addr()?);
//! tokio::spawn(async move {
//!     let router = Router::new().route("/app/status", get(|| async { "all good" }));
//!     axum::serve(app, router).await
//! });
//!
//! // ...is served to the Tether server by the device's client...
//! let (server, _) = Server::bind(ServerConfig::new("127.0.0.1:0".parse()?)).await?;
//! let (client, mut events) =
//!     Client::connect(&format!("ws://{}/", server.local_addr()), ClientConfig::new("{}"))?;
//! client.serve(Upstream::new(&app_url)?);
//! let Some(ClientEvent::Connected { id, .. }) = events.recv().await else { panic!() };
//! # while !server.contains(&id) { tokio::time::sleep(std::time::Duration::from_millis(5)).await }
//!
//! // ...and the server opens a local HTTP gateway to it.
//! let gateway = Gateway::bind("127.0.0.1:0".parse()?, Target::Server(server.connections())).await?;
//! let http = HttpClient::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
//! let uri = format!("http://{}/status", gateway.local_addr()).parse()?;
//! let response = http.get(uri).await?;
//! assert_eq!(response.status(), 200);
//! assert_eq!(response.headers()["tether-connection"], id.to_string());
//! assert_eq!(response.into_body().collect().await?.to_bytes(), "all good");
//!
//! gateway.shutdown(std::time::Duration::from_secs(5)).await?;
//! client.close().await;
//! server.shutdown(std::time::Duration::from_secs(5)).await?;
//! # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//! # }).unwrap();
//! ```
//!
//! [`Client::serve`]: crate::client::Client::serve
//! [`Server::serve`]: crate::server::Server::serve

pub(crate) mod proxy;
pub mod tcp;
mod upstream;
pub(crate) mod upstream_pool;

pub use proxy::strip_hop_by_hop;
use proxy::{origin_form, strip_request_hops};
pub use tcp::{TcpBody, TcpGateway, TcpUpstream};
pub use upstream::{Upstream, UpstreamBody, UpstreamUrlError};

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Extensions, Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tether_proto::streams::TIMEOUT_HEADER;
use tether_proto::ResetCode;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use uuid::Uuid;

use crate::rest::{Body, BoxError, ConnectionInfo, Peer, RequestError};
use crate::server::Connections;
use crate::transport::acceptor::{Command, LiveGuard, Running, StopError};

/// `Tether-Connection`: on a request to a server's gateway, the id of the client to send
/// it to (removed before forwarding); on every response from a gateway, the id of the
/// connection that answered.
pub const CONNECTION_HEADER: HeaderName = HeaderName::from_static("tether-connection");

/// Why a gateway answered the request itself instead of forwarding the answer. Each
/// becomes a response with [`status`](Self::status) and the message as a one-line
/// `text/plain` body.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// A server's gateway, no client connected (503).
    #[error("no Tether client is connected")]
    NoClient,
    /// A server's gateway, `Tether-Connection` names a client that is not connected (404).
    #[error("no Tether client is connected with id {0}")]
    UnknownConnection(Uuid),
    /// `Tether-Connection` is not one connection id (400).
    #[error("malformed Tether-Connection header: expected one connection id (a UUID)")]
    MalformedConnectionId,
    /// A server's gateway, several clients connected and no `Tether-Connection` (400).
    #[error(
        "{0} Tether clients are connected: choose one with the request header \
         `Tether-Connection: <id>` (`tether server` prints each id on its `received` line)"
    )]
    Ambiguous(usize),
    /// The method cannot be carried (501): CONNECT sent to an HTTP [`Gateway`] or
    /// [`Upstream`] (raw TCP goes through a [`TcpGateway`] to a [`TcpUpstream`]), or any
    /// method but CONNECT to a [`TcpUpstream`] without an HTTP upstream.
    #[error("{0} is not supported through a Tether gateway")]
    UnsupportedMethod(Method),
    /// A CONNECT stream asked for a destination that is not on the allow-list of the
    /// [`TcpUpstream`] (403, spec/protocol.md §10.9).
    #[error("the destination {0} is not one this end opens")]
    DestinationNotAllowed(String),
    /// The request target is not origin-form (`/path?query`) (400).
    #[error("the request target must be a path (origin-form), not {0:?}")]
    UnsupportedTarget(String),
    /// The path hides a dot segment behind an encoded or back slash (`..%2f`, `%2e%2e%5c`,
    /// `..\`), which an upstream may read as a step out of the base path (400).
    #[error("the request path hides a dot segment: {0:?}")]
    HiddenDotSegment(String),
    /// The call to the peer failed (see [`RequestError`]): 503 when it was never sent
    /// (not connected, refused, queue full), 504 on its timeout (or a reset with
    /// TIMEOUT), 502 when the connection
    /// was lost or the stream reset mid-request, 400 when the request itself was at fault.
    #[error("Tether request failed: {0}")]
    Request(#[from] RequestError),
    /// The upstream HTTP server could not be reached (502).
    #[error("upstream {url} unreachable: {reason}")]
    UpstreamUnreachable {
        /// The upstream URL.
        url: String,
        /// Why (the connect error).
        reason: String,
    },
    /// The upstream HTTP server failed to answer (502).
    #[error("upstream {url} failed: {reason}")]
    UpstreamFailed {
        /// The upstream URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// Every connection to the upstream HTTP server stayed in use until the request's
    /// deadline (503; see [`Upstream::with_max_connections`]).
    #[error("upstream {url} busy: all {max_connections} connections stayed in use")]
    UpstreamBusy {
        /// The upstream URL.
        url: String,
        /// The bound on connections to it.
        max_connections: usize,
    },
    /// The upstream HTTP server did not send its response head in time (504).
    #[error("upstream {url} did not answer within {}", humantime::format_duration(*timeout))]
    UpstreamTimedOut {
        /// The upstream URL.
        url: String,
        /// The timeout that passed.
        timeout: Duration,
    },
}

impl GatewayError {
    /// The status of the response that reports this error.
    ///
    /// ```
    /// use tether_tokio::gateway::GatewayError;
    /// use tether_tokio::rest::RequestError;
    /// assert_eq!(GatewayError::NoClient.status(), 503);
    /// assert_eq!(GatewayError::Request(RequestError::ConnectionLost).status(), 502);
    /// ```
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::NoClient => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::UnknownConnection(_) => StatusCode::NOT_FOUND,
            GatewayError::MalformedConnectionId
            | GatewayError::Ambiguous(_)
            | GatewayError::UnsupportedTarget(_)
            | GatewayError::HiddenDotSegment(_) => StatusCode::BAD_REQUEST,
            GatewayError::UnsupportedMethod(_) => StatusCode::NOT_IMPLEMENTED,
            GatewayError::DestinationNotAllowed(_) => StatusCode::FORBIDDEN,
            GatewayError::Request(e) => match e {
                RequestError::NotConnected
                | RequestError::Closed
                | RequestError::QueueFull
                | RequestError::Refused => StatusCode::SERVICE_UNAVAILABLE,
                // The callee's copy of the deadline may pass first: it resets with TIMEOUT.
                RequestError::TimedOut(_) => StatusCode::GATEWAY_TIMEOUT,
                RequestError::Reset { code, .. } if *code == ResetCode::TIMEOUT => {
                    StatusCode::GATEWAY_TIMEOUT
                }
                RequestError::HeadTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                RequestError::InvalidRequest(_) | RequestError::Body(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::BAD_GATEWAY,
            },
            GatewayError::UpstreamUnreachable { .. } | GatewayError::UpstreamFailed { .. } => {
                StatusCode::BAD_GATEWAY
            }
            GatewayError::UpstreamBusy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::UpstreamTimedOut { .. } => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The response that reports this error: [`status`](Self::status), `text/plain`,
    /// one line (`"<code> <reason>: <message>\n"`).
    ///
    /// ```
    /// use tether_tokio::gateway::GatewayError;
    /// let response = GatewayError::Ambiguous(2).to_response::<String>();
    /// assert_eq!(response.status(), 400);
    /// assert!(response.body().starts_with("400 Bad Request: 2 Tether clients are connected"));
    /// assert_eq!(response.body().lines().count(), 1);
    /// ```
    pub fn to_response<B: From<String>>(&self) -> Response<B> {
        let status = self.status();
        // Messages are one line; a reason from a lower layer could hold a line break.
        let message = self.to_string().replace(['\r', '\n'], " ");
        let text = format!(
            "{} {}: {message}\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        );
        let mut response = Response::new(B::from(text));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        response
    }
}

/// The way requests are sent to the peer: a [`Peer`] to use for every request, or a
/// server's connections from which each request picks one. It is the part of a
/// [`Gateway`] that differs between the two ends; it is also a [`tower::Service`] (each
/// call forwards one request, and failures become error responses, so it never fails).
///
/// On a server ([`Target::Server`]), per request:
///
/// | request | goes to / answer |
/// |---|---|
/// | `Tether-Connection: <id>`, connected | client `<id>` (the header is removed) |
/// | `Tether-Connection: <id>`, not connected | 404 |
/// | `Tether-Connection` not one UUID | 400 |
/// | no `Tether-Connection`, one client connected | that client |
/// | no `Tether-Connection`, none connected | 503 |
/// | no `Tether-Connection`, several connected | 400, saying how to choose |
///
/// ```
/// use tether_tokio::gateway::{GatewayError, Target};
/// # async fn f(server: tether_tokio::server::Server) {
/// let target = Target::Server(server.connections());
/// let mut headers = http::HeaderMap::new();
/// headers.insert("tether-connection", "not-a-uuid".parse().unwrap());
/// assert!(matches!(target.select(&headers), Err(GatewayError::MalformedConnectionId)));
/// # }
/// ```
#[derive(Debug, Clone)]
pub enum Target {
    /// Always this peer; on a client, [`Client::peer`](crate::client::Client::peer)
    /// (a request waits for a reconnection up to `RestConfig::connect_wait`, then 503).
    /// A `Tether-Connection` request field is removed and otherwise ignored.
    Peer(Peer),
    /// One of a server's clients, chosen per request as in the table above.
    Server(Connections),
}

impl Target {
    /// The peer a request with these `headers` goes to.
    pub fn select(&self, headers: &HeaderMap) -> Result<Peer, GatewayError> {
        let connections = match self {
            Target::Peer(peer) => return Ok(peer.clone()),
            Target::Server(connections) => connections,
        };
        let mut named = headers.get_all(CONNECTION_HEADER).iter();
        match (named.next(), named.next()) {
            (Some(value), None) => {
                let id = value
                    .to_str()
                    .ok()
                    .and_then(|s| Uuid::try_parse(s.trim()).ok())
                    .ok_or(GatewayError::MalformedConnectionId)?;
                connections
                    .peer(&id)
                    .ok_or(GatewayError::UnknownConnection(id))
            }
            (Some(_), Some(_)) => Err(GatewayError::MalformedConnectionId),
            (None, _) => match connections.sole() {
                // It may leave between the two calls.
                Ok(id) => connections.peer(&id).ok_or(GatewayError::NoClient),
                Err(0) => Err(GatewayError::NoClient),
                Err(n) => Err(GatewayError::Ambiguous(n)),
            },
        }
    }

    /// Forwards one request to the peer it selects and returns the peer's response (its
    /// body streaming), or the error response of a [`GatewayError`].
    ///
    /// On the way: `Tether-Connection`, `tether-timeout` and the hop-by-hop fields are
    /// removed from the request and `Via: 1.1 tether` is added; the request target
    /// becomes origin-form. The hop-by-hop fields are removed from the response and
    /// `Tether-Connection: <id>` tells which connection answered.
    pub async fn forward<B>(&self, request: Request<B>) -> Response<Body>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Buf + Send,
        B::Error: Into<BoxError>,
    {
        match self.try_forward(request).await {
            Ok(response) => response,
            Err(e) => {
                tracing::debug!(error = %e, "gateway request failed");
                e.to_response()
            }
        }
    }

    async fn try_forward<B>(&self, request: Request<B>) -> Result<Response<Body>, GatewayError>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Buf + Send,
        B::Error: Into<BoxError>,
    {
        let (mut parts, body) = request.into_parts();
        if parts.method == Method::CONNECT {
            return Err(GatewayError::UnsupportedMethod(parts.method));
        }
        let peer = self.select(&parts.headers)?;
        parts.uri = origin_form(&parts.uri)?;
        parts.headers.remove(CONNECTION_HEADER);
        parts.headers.remove(TIMEOUT_HEADER);
        strip_request_hops(&mut parts.headers);
        parts
            .headers
            .append(header::VIA, HeaderValue::from_static("1.1 tether"));
        parts.version = Version::HTTP_11;
        parts.extensions = Extensions::new();
        let mut response = peer.request(Request::from_parts(parts, body)).await?;
        strip_hop_by_hop(response.headers_mut());
        let answered = response
            .extensions()
            .get::<ConnectionInfo>()
            .map(|info| info.id)
            .or_else(|| peer.connection_id());
        if let Some(id) = answered {
            response
                .headers_mut()
                .insert(CONNECTION_HEADER, connection_value(id));
        }
        Ok(response)
    }
}

/// The `Tether-Connection` value naming `id`, kept (one per thread) for the next response
/// from the same connection: the id written out and checked as a field value was two
/// allocations for every response (issue 11, benches/RESULTS.md, twenty-fourth pass).
fn connection_value(id: Uuid) -> HeaderValue {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(Uuid, HeaderValue)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| match last {
        Some((kept, value)) if *kept == id => value.clone(),
        _ => {
            let mut text = Uuid::encode_buffer();
            let value = HeaderValue::from_str(id.hyphenated().encode_lower(&mut text))
                .expect("a UUID is a field value");
            *last = Some((id, value.clone()));
            value
        }
    })
}

impl<B> tower::Service<Request<B>> for Target
where
    B: http_body::Body + Send + 'static,
    B::Data: Buf + Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let target = self.clone();
        Box::pin(async move { Ok(target.forward(request).await) })
    }
}

/// How long a gateway connection may take to send a request head (slow clients are cut).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A local HTTP/1.1 listener that forwards every request to the peer chosen by its
/// [`Target`] and streams the answer back (see the [module docs](self)). One task per TCP
/// connection, keep-alive, a 30 s limit on reading a request head.
/// [`shutdown`](Self::shutdown) stops accepting, lets requests in flight finish and
/// closes idle connections.
#[derive(Debug)]
pub struct Gateway {
    running: Running,
}

impl Gateway {
    /// Listens on `addr` and forwards to `target`.
    pub async fn bind(addr: SocketAddr, target: Target) -> io::Result<Gateway> {
        Self::from_listener(TcpListener::bind(addr).await?, target)
    }

    /// Forwards the requests of an already bound listener to `target`.
    pub fn from_listener(listener: TcpListener, target: Target) -> io::Result<Gateway> {
        let running = Running::spawn(listener, move |stream, remote, commands, live| {
            serve_connection(stream, remote, target.clone(), commands, live)
        })?;
        tracing::info!(addr = %running.local_addr(), "tether gateway listening");
        Ok(Gateway { running })
    }

    /// The address the gateway listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.running.local_addr()
    }

    /// Number of open HTTP connections.
    pub fn connection_count(&self) -> usize {
        self.running.connection_count()
    }

    /// Stops accepting, lets the requests in flight finish (their responses included) and
    /// closes every connection; after `timeout` the ones still open are dropped.
    pub async fn shutdown(self, timeout: Duration) -> Result<(), StopError> {
        // The close code and reason are for WebSocket connections; HTTP ones just stop.
        self.running.stop(1001, "gateway shutdown", timeout).await
    }
}

async fn serve_connection(
    stream: TcpStream,
    remote: SocketAddr,
    target: Target,
    mut commands: watch::Receiver<Command>,
    live: Arc<AtomicUsize>,
) {
    let _live = LiveGuard::new(&live);
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let target = target.clone();
        async move { Ok::<_, Infallible>(target.forward(request).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let stopping = async {
        loop {
            if commands.changed().await.is_err() || commands.borrow_and_update().stopping {
                return;
            }
        }
    };
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stopping => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%remote, error = %e, "gateway connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kept value is the one of the id asked for, whichever was asked before.
    #[test]
    fn the_connection_value_names_the_id_asked_for() {
        let (a, b) = (Uuid::from_u128(0xA1), Uuid::from_u128(u128::MAX - 7));
        for id in [a, a, b, a, b, b] {
            assert_eq!(connection_value(id), id.to_string().as_str());
        }
    }

    #[test]
    fn error_statuses_and_bodies() {
        use RequestError as R;
        let cases: Vec<(GatewayError, u16)> = vec![
            (GatewayError::NoClient, 503),
            (GatewayError::UnknownConnection(Uuid::nil()), 404),
            (GatewayError::MalformedConnectionId, 400),
            (GatewayError::Ambiguous(3), 400),
            (GatewayError::UnsupportedMethod(Method::CONNECT), 501),
            (GatewayError::DestinationNotAllowed("h:1".into()), 403),
            (GatewayError::UnsupportedTarget("*".into()), 400),
            (GatewayError::HiddenDotSegment("/..%2f".into()), 400),
            (R::NotConnected.into(), 503),
            (R::Closed.into(), 503),
            (R::QueueFull.into(), 503),
            (R::Refused.into(), 503),
            (R::TimedOut(Duration::from_secs(1)).into(), 504),
            (R::ConnectionLost.into(), 502),
            (
                R::Reset {
                    code: ResetCode::TIMEOUT,
                    initiator: tether_proto::Initiator::Peer,
                }
                .into(),
                504,
            ),
            (
                R::Reset {
                    code: tether_proto::ResetCode::INTERNAL_ERROR,
                    initiator: tether_proto::Initiator::Peer,
                }
                .into(),
                502,
            ),
            (R::InvalidRequest("x".into()).into(), 400),
            (
                R::HeadTooLarge {
                    bytes: 20_000,
                    fields: 3,
                }
                .into(),
                431,
            ),
            (
                GatewayError::UpstreamUnreachable {
                    url: "http://h/".into(),
                    reason: "refused\nsecond line".into(),
                },
                502,
            ),
            (
                GatewayError::UpstreamFailed {
                    url: "http://h/".into(),
                    reason: "x".into(),
                },
                502,
            ),
            (
                GatewayError::UpstreamTimedOut {
                    url: "http://h/".into(),
                    timeout: Duration::from_millis(1500),
                },
                504,
            ),
        ];
        for (error, status) in cases {
            assert_eq!(error.status(), status, "{error}");
            let response = error.to_response::<String>();
            assert_eq!(response.status(), status);
            assert_eq!(
                response.headers()[header::CONTENT_TYPE],
                "text/plain; charset=utf-8"
            );
            let body = response.body();
            assert!(body.starts_with(&format!("{status} ")), "{body}");
            assert!(body.ends_with('\n'));
            assert_eq!(body.matches('\n').count(), 1, "{body:?}");
        }
        let timed_out = GatewayError::UpstreamTimedOut {
            url: "http://h/".into(),
            timeout: Duration::from_millis(1500),
        };
        assert_eq!(
            timed_out.to_string(),
            "upstream http://h/ did not answer within 1s 500ms"
        );
    }
}
