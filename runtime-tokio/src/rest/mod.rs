//! REST over the connection, in both directions: call the peer's HTTP API with a [`Peer`]
//! (a [`tower::Service`]), and serve yours with `serve` on the [`Client`] or the
//! [`Server`]. Any `tower::Service<http::Request<Body>>` serves, an axum `Router` as it is.
//!
//! Each request is one stream of the connection (spec/protocol.md §10): many run at once,
//! bodies stream both ways in DATA frames under flow control (a slow reader slows the
//! writer; nothing buffers without bound), and the heartbeat is never stuck behind them.
//!
//! **How a request is served.** The connection's task polls the service once as the
//! request arrives. A handler that answers at once (nothing it awaits has to wait, as with
//! most small GETs) is answered right there: no task, no hand-off, and its response leaves
//! in the same write as the others of that moment. A handler that has to wait goes on in a
//! task of its own, so a slow handler holds up no other stream. So, as everywhere in async
//! Rust, a handler must not block its thread (long CPU work, blocking I/O) before its first
//! `.await`: in that first poll it would hold up its whole connection for that time; use
//! `tokio::task::spawn_blocking` for such work.
//!
//! Each connection calls its own clone of the service, taken at its first request and
//! again after `serve` replaced the service (so a new service answers each connection's
//! next request). Its readiness (`poll_ready`) is asked in the connection's task, once per
//! request: a service that is not ready at once (a concurrency limit, say) gets a clone
//! that waits for readiness with the request in a task of its own, and a clone whose
//! readiness fails answers that request `500` and is dropped for a new one.
//!
//! The bodies a connection sends (request bodies of its calls, response bodies of the
//! requests it serves) are polled by the connection's task too, and only while the peer's
//! flow-control credit has room for more, so a body is read from its source no faster than
//! the peer reads it. The same rule holds for a body: its `poll_frame` must not block.
//! A body that produces its chunks with heavy work belongs behind a channel fed by a task
//! of its own (`http_body_util::StreamBody` over a `tokio::sync::mpsc` receiver, say).
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use axum::{routing::get, Extension, Router};
//! use tether_tokio::client::{Client, ClientConfig, ClientEvent};
//! use tether_tokio::rest::{Body, ConnectionInfo};
//! use tether_tokio::server::{Server, ServerConfig, ServerEvent};
//!
//! // The server serves an API to its clients...
//! let (server, mut server_events) = Server::bind(ServerConfig::new("127.0.0.1:0".parse()?)).await?;
//! server.serve(Router::new().route(
//!     "/whoami",
//!     get(|Extension(conn): Extension<ConnectionInfo>| async move { conn.id.to_string() }),
//! ));
//! // ...and the client, behind its NAT, serves one to the server.
//! let url = format!("ws://{}/", server.local_addr());
//! let (client, mut events) = Client::connect(&url, ClientConfig::new(r#"{"device":"d-7"}"#))?;
//! client.serve(Router::new().route("/temperature", get(|| async { "21.5" })));
//!
//! let Some(ServerEvent::Received { id, .. }) = server_events.recv().await else { panic!() };
//! // The server calls the device...
//! let device = server.peer(&id).expect("connected");
//! let response = device.request(http::Request::get("/temperature").body(Body::empty())?).await?;
//! assert_eq!(response.into_body().collect_limited(1024).await?, "21.5");
//! // ...and the device calls the server, over the same connection.
//! let response = client.peer().request(http::Request::get("/whoami").body(Body::empty())?).await?;
//! assert_eq!(response.into_body().collect_limited(1024).await?, id.to_string());
//!
//! client.close().await;
//! server.shutdown(std::time::Duration::from_secs(5)).await?;
//! # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//! # }).unwrap();
//! ```
//!
//! [`Client`]: crate::client::Client
//! [`Server`]: crate::server::Server

mod body;
pub(crate) mod driver;
mod error;
mod peer;
pub(crate) mod sink;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{Request, Response};
use http_body_util::BodyExt;
use tether_proto::Side;
use tower::util::BoxCloneSyncService;
use uuid::Uuid;

pub use body::{Body, BodyError};
pub use error::RequestError;
pub(crate) use peer::Links;
pub use peer::{Peer, ResponseFuture};

/// A boxed error, as services and bodies return them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body of any type, as a request or response body becomes on its way out: this crate's
/// [`Body`] as it is, any other boxed.
#[derive(Debug)]
pub(crate) enum AnyBody {
    /// [`Body`]: the usual case (`Body::from`, `Body::empty`, a body received and passed
    /// on), kept out of a box: no allocation and no dynamic call per poll.
    Tether(Body),
    /// Any other body, boxed.
    Boxed(http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>),
}

impl AnyBody {
    /// A body with no bytes.
    pub(crate) fn empty() -> Self {
        AnyBody::Tether(Body::empty())
    }
}

impl From<http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>> for AnyBody {
    fn from(boxed: http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>) -> Self {
        AnyBody::Boxed(boxed)
    }
}

impl http_body::Body for AnyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            AnyBody::Tether(body) => std::pin::Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|r| r.map_err(Into::into))),
            AnyBody::Boxed(body) => std::pin::Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            AnyBody::Tether(body) => body.is_end_stream(),
            AnyBody::Boxed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            AnyBody::Tether(body) => body.size_hint(),
            AnyBody::Boxed(body) => body.size_hint(),
        }
    }
}

/// Boxes any body whose chunks are a `Buf` (a `Bytes` passes through without a copy).
pub(crate) fn box_body<B>(body: B) -> http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>
where
    B: http_body::Body + Send + 'static,
    B::Data: Buf + Send,
    B::Error: Into<BoxError>,
{
    BytesBody { inner: body }.boxed_unsync()
}

/// Any body whose chunks are a `Buf`, as an [`AnyBody`]: a [`Body`] as it is, any other
/// boxed (a `Bytes` chunk passes through without a copy).
pub(crate) fn any_body<B>(body: B) -> AnyBody
where
    B: http_body::Body + Send + 'static,
    B::Data: Buf + Send,
    B::Error: Into<BoxError>,
{
    let mut slot = Some(body);
    let ours = (&mut slot as &mut dyn std::any::Any)
        .downcast_mut::<Option<Body>>()
        .and_then(Option::take);
    match (ours, slot) {
        (Some(body), _) => AnyBody::Tether(body),
        (None, Some(inner)) => AnyBody::Boxed(box_body(inner)),
        // Only a `Body` is taken out of the slot, and then it is the first arm.
        (None, None) => AnyBody::empty(),
    }
}

pin_project_lite::pin_project! {
    /// A body with its data as [`Bytes`] (`copy_to_bytes`, which is free for `Bytes`) and
    /// its errors boxed. Unlike `map_frame`, it keeps the body's size hint, which the
    /// length is unchanged by: a small response whose size is known goes out with its head
    /// ([`driver`]).
    struct BytesBody<B> {
        #[pin]
        inner: B,
    }
}

impl<B> http_body::Body for BytesBody<B>
where
    B: http_body::Body,
    B::Data: Buf,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        self.project().inner.poll_frame(cx).map(|frame| {
            frame.map(|r| {
                r.map(|f| f.map_data(|mut d| d.copy_to_bytes(d.remaining())))
                    .map_err(Into::into)
            })
        })
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Who the connection is. Every request a service receives carries one in its
/// extensions (with axum: `Extension<ConnectionInfo>`), and so does every response a
/// [`Peer`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// The connection id (the same on both ends, and across resumes).
    pub id: Uuid,
    /// Which end this is.
    pub side: Side,
    /// The client's HELLO metadata (a JSON text, or empty).
    pub metadata: Bytes,
    /// The other end's address, when known.
    pub remote_addr: Option<SocketAddr>,
}

/// A per-request timeout, overriding [`RestConfig::request_timeout`]: put it in the
/// request's extensions.
///
/// A request a service receives carries one when its caller gave it a deadline (the
/// `tether-timeout` field, spec/protocol.md §10.6, which is not among its headers): the
/// time the caller had left when the head arrived. The handler is stopped when it passes;
/// a request passed on as it is to a [`Peer`] takes it along.
///
/// ```
/// use std::time::Duration;
/// let mut request = http::Request::get("/slow").body(tether_tokio::rest::Body::empty()).unwrap();
/// request.extensions_mut().insert(tether_tokio::rest::Timeout(Duration::from_secs(120)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout(pub Duration);

/// How requests to the peer behave.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestConfig {
    /// Time a whole exchange may take (waiting for a connection, the response head and
    /// both bodies). It travels with the request (`tether-timeout`, spec/protocol.md
    /// §10.6) so the callee stops working when the caller stops waiting. `None`: no limit.
    /// Default 30 s.
    pub request_timeout: Option<Duration>,
    /// How long a client's request waits for a connection while it (re)connects before it
    /// fails with [`RequestError::NotConnected`]. Default 10 s.
    pub connect_wait: Duration,
    /// Requests that may wait (for a connection, or for a free stream when the peer's
    /// concurrency limit is reached) before more fail with [`RequestError::QueueFull`].
    /// Default 1024.
    pub max_queued_requests: usize,
    /// On a graceful close ([`Client::close`], [`Server::shutdown`], [`Server::close`]
    /// with 1000 or 1001), how long requests in flight may still take: GOAWAY tells the
    /// peer to open no new stream, and the connection closes when the last one is done or
    /// this time is up. Zero closes at once. Default 5 s.
    ///
    /// [`Client::close`]: crate::client::Client::close
    /// [`Server::shutdown`]: crate::server::Server::shutdown
    /// [`Server::close`]: crate::server::Server::close
    pub drain_timeout: Duration,
}

impl Default for RestConfig {
    fn default() -> Self {
        RestConfig {
            request_timeout: Some(Duration::from_secs(30)),
            connect_wait: Duration::from_secs(10),
            max_queued_requests: 1024,
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// The service the peer's requests go to, once there is one.
pub(crate) type BoxService = BoxCloneSyncService<Request<Body>, Response<AnyBody>, BoxError>;

/// Where a handle keeps its service for its connection tasks. Once set it stays set
/// (`set` replaces it, nothing removes it), so a connection that told its machine it
/// serves requests always finds a service here.
///
/// Each `set` bumps a generation, so that a connection keeps its own clone of the service
/// and takes a new one only when the handle's has changed ([`Driver`]'s `serve`): no lock
/// and no clone of the boxed service per request (issue 11).
#[derive(Default)]
pub(crate) struct ServiceSlot {
    service: RwLock<Option<BoxService>>,
    /// How many times a service was set: 0 while there is none.
    generation: AtomicU64,
}

impl std::fmt::Debug for ServiceSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceSlot")
            .field("generation", &self.generation())
            .finish()
    }
}

impl ServiceSlot {
    pub(crate) fn set<S, B>(&self, service: S)
    where
        S: tower::Service<Request<Body>, Response = Response<B>> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body + Send + 'static,
        B::Data: Buf + Send,
        B::Error: Into<BoxError>,
    {
        use tower::ServiceExt;
        let service = service
            .map_response(|response: Response<B>| response.map(any_body))
            .map_err(Into::into);
        let boxed = BoxCloneSyncService::new(service);
        let mut slot = self.service.write().unwrap_or_else(|e| e.into_inner());
        *slot = Some(boxed);
        // Under the lock: `get` reads the service and its generation together.
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether a service is set (cheap: checked before every inbound message).
    pub(crate) fn is_set(&self) -> bool {
        self.generation() != 0
    }

    /// Which service is set: changes with every `set`, 0 before the first.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A clone of the service, and its generation.
    pub(crate) fn get(&self) -> Option<(u64, BoxService)> {
        let slot = self.service.read().unwrap_or_else(|e| e.into_inner());
        let generation = self.generation();
        slot.clone().map(|service| (generation, service))
    }
}

/// One connection's way in for callers: its command channel, and which connection of
/// the handle it is (a client's sessions come and go).
#[derive(Debug, Clone)]
pub(crate) struct LinkHandle {
    pub(crate) id: Uuid,
    pub(crate) serial: u64,
    pub(crate) commands: driver::CommandSender,
}

pub(crate) use driver::Driver;

/// Where a client's callers find its current connection: the client's task sets it, and
/// callers read it or wait for one they can use. A mutex and one `Notify`, about 0.1 KiB:
/// the `watch` channel it replaces was 0.35 KiB of every client (issue 11 goal 5).
#[derive(Debug, Default)]
pub(crate) struct ClientLink {
    current: std::sync::Mutex<Option<LinkHandle>>,
    /// The client's task is gone: nothing will be set any more.
    closed: std::sync::atomic::AtomicBool,
    changed: tokio::sync::Notify,
}

impl ClientLink {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<LinkHandle>> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The connection now, `None` while the client (re)connects.
    pub(crate) fn get(&self) -> Option<LinkHandle> {
        self.lock().clone()
    }

    /// Sets the connection and wakes every waiter.
    pub(crate) fn set(&self, link: Option<LinkHandle>) {
        *self.lock() = link;
        self.changed.notify_waiters();
    }

    /// The client's task ended: waiters stop waiting (see [`ClientLinkOwner`]).
    fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// Waits for a connection `usable` accepts; `None` once the client's task is gone and
    /// the connection now is not one.
    pub(crate) async fn wait_for(
        &self,
        usable: impl Fn(&Option<LinkHandle>) -> bool,
    ) -> Option<LinkHandle> {
        loop {
            // Registered before the check, so a change between the two is not missed.
            let mut notified = std::pin::pin!(self.changed.notified());
            notified.as_mut().enable();
            {
                let current = self.lock();
                if usable(&current) {
                    return current.clone();
                }
            }
            if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
                return None;
            }
            notified.await;
        }
    }
}

/// The client task's hold on its [`ClientLink`]: dropped with the task (however it ends),
/// it closes the link, so that no caller waits for a connection that cannot come.
#[derive(Debug)]
pub(crate) struct ClientLinkOwner(pub(crate) Arc<ClientLink>);

impl Drop for ClientLinkOwner {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// A shared, cheaply cloned [`ServiceSlot`].
pub(crate) type SharedService = Arc<ServiceSlot>;

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;

    /// Boxing keeps what the driver decides on: the exact size and the end.
    #[test]
    fn a_boxed_body_keeps_its_size_hint() {
        let boxed = any_body(http_body_util::Full::new(Bytes::from_static(b"sixty")));
        assert!(matches!(boxed, AnyBody::Boxed(_)));
        assert_eq!(boxed.size_hint().exact(), Some(5));
        assert!(!boxed.is_end_stream());
        let empty = any_body(http_body_util::Empty::<Bytes>::new());
        assert!(empty.is_end_stream());
    }

    /// This crate's own body is not boxed, and reads the same.
    #[test]
    fn a_tether_body_is_kept_as_it_is() {
        let body = any_body(Body::from("sixty"));
        assert!(matches!(body, AnyBody::Tether(_)));
        assert_eq!(body.size_hint().exact(), Some(5));
        assert!(!body.is_end_stream());
        let bytes = collect_ready(body);
        assert_eq!(&bytes[..], b"sixty");
        assert!(any_body(Body::empty()).is_end_stream());
    }

    /// Collects a body that is ready (no waker needed).
    fn collect_ready(mut body: AnyBody) -> Vec<u8> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut out = Vec::new();
        while let std::task::Poll::Ready(Some(frame)) =
            std::pin::Pin::new(&mut body).poll_frame(&mut cx)
        {
            if let Ok(data) = frame.expect("a body that does not fail").into_data() {
                out.extend_from_slice(&data);
            }
        }
        out
    }

    /// Callers of a client wait for a usable connection, see each new one, and stop
    /// waiting when the client's task is gone.
    #[tokio::test]
    async fn callers_wait_for_the_clients_connection_until_its_task_is_gone() {
        let driver = Driver::new(Default::default(), Default::default());
        let handle = |serial: u64| LinkHandle {
            id: Uuid::from_u128(serial.into()),
            serial,
            commands: driver.sender(),
        };
        let link = Arc::new(ClientLink::default());
        let owner = ClientLinkOwner(link.clone());
        assert!(link.get().is_none());

        // A waiter sees the connection set after it started waiting, and only a usable one.
        let waiter = tokio::spawn({
            let link = link.clone();
            async move {
                link.wait_for(|l| l.as_ref().is_some_and(|l| l.serial == 2))
                    .await
            }
        });
        tokio::task::yield_now().await;
        owner.0.set(Some(handle(1)));
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "serial 1 is not usable for it");
        owner.0.set(Some(handle(2)));
        let within = |f| tokio::time::timeout(std::time::Duration::from_secs(5), f);
        let got = within(waiter)
            .await
            .expect("woken")
            .unwrap()
            .expect("the second connection");
        assert_eq!(got.serial, 2);
        assert_eq!(link.get().map(|l| l.id), Some(Uuid::from_u128(2)));

        // The client's task ends: a waiter for a connection that cannot come stops.
        owner.0.set(None);
        let waiter = tokio::spawn({
            let link = link.clone();
            async move { link.wait_for(|l| l.is_some()).await }
        });
        tokio::task::yield_now().await;
        drop(owner);
        assert!(within(waiter).await.expect("woken").unwrap().is_none());
        // And one that starts afterwards does not wait at all.
        assert!(link.wait_for(|l| l.is_some()).await.is_none());
    }
}
