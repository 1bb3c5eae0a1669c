//! Raw TCP through a Tether connection: one CONNECT stream per forwarded TCP connection
//! (spec/protocol.md §10.9), the way rathole or `ssh -R` forward a port, over the
//! connection a device dialled out on.
//!
//! - [`TcpGateway`] listens for TCP on one end. Each connection it accepts becomes a
//!   CONNECT stream to the peer, for the destination the gateway was given
//!   (`host:port`), and its bytes flow as the stream's DATA in both directions.
//! - [`TcpUpstream`] is the service on the other end: it opens a CONNECT stream's
//!   destination when it is on its allow-list (403 otherwise: a peer never picks where this
//!   end connects to), answers 200 and forwards bytes both ways. Every other request goes
//!   to an HTTP [`Upstream`] when one is given (501 without).
//!
//! Half-closes travel (END_STREAM is a TCP FIN, §10.9), a failure on either side resets
//! the stream and aborts the other side, and each direction reads from its socket only as
//! fast as the peer's credit lets the bytes go out (§10.3): a reader that stops stops the
//! writer at the other end, with at most one stream window in between. An idle tunnel
//! holds no read buffer.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! use tether_tokio::client::{Client, ClientConfig, ClientEvent};
//! use tether_tokio::gateway::{Target, TcpGateway, TcpUpstream};
//! use tether_tokio::server::{Server, ServerConfig};
//!
//! // A TCP service on the device's loopback (here: it answers "hello" and closes)...
//! let service = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let destination = service.local_addr()?.to_string();
//! tokio::spawn(async move {
//!     let (mut socket, _) = service.accept().await?;
//!     socket.write_all(b"hello").await?;
//!     socket.shutdown().await
//! });
//!
//! // ...that the device's client lets the server reach...
//! let (server, _) = Server::bind(ServerConfig::new("127.0.0.1:0".parse()?)).await?;
//! let (client, mut events) =
//!     Client::connect(&format!("ws://{}/", server.local_addr()), ClientConfig::new("{}"))?;
//! client.serve(TcpUpstream::new([destination.as_str()])?);
//! let Some(ClientEvent::Connected { id, .. }) = events.recv().await else { panic!() };
//! # while !server.contains(&id) { tokio::time::sleep(std::time::Duration::from_millis(5)).await }
//!
//! // ...through a port the server listens on.
//! let gateway = TcpGateway::bind(
//!     "127.0.0.1:0".parse()?,
//!     &destination,
//!     Target::Server(server.connections()),
//! )
//! .await?;
//! let mut socket = tokio::net::TcpStream::connect(gateway.local_addr()).await?;
//! let mut answer = String::new();
//! socket.read_to_string(&mut answer).await?;
//! assert_eq!(answer, "hello");
//! drop(socket); // the tunnel ends when both sides have
//!
//! gateway.shutdown(std::time::Duration::from_secs(1)).await?;
//! client.close().await;
//! server.shutdown(std::time::Duration::from_secs(5)).await?;
//! # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//! # }).unwrap();
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::uri::Authority;
use http::{HeaderMap, Method, Request, Response};
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use tokio::io::Interest;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::sync::{oneshot, Semaphore};

use super::{GatewayError, Target, Upstream, UpstreamBody};
use crate::rest::sink::Hold;
use crate::rest::{Body, BoxError};
use crate::transport::acceptor::{Command, LiveGuard, Running, StopError};

/// The first read of a burst takes up to this many bytes; a read that fills its buffer
/// doubles the next one, up to [`MAX_READ`].
const FIRST_READ: usize = 16 * 1024;
/// The largest read: the largest chunk a stream queues (spec/protocol.md §10.3, one
/// default stream window), sent as DATA frames of the peer's MAX_FRAME_PAYLOAD, slices of
/// the one buffer. Bulk transfers read in 256 KiB steps (1 MiB files at 8 connections:
/// +20–30 % against 64 KiB steps, benches/RESULTS.md).
const MAX_READ: usize = 256 * 1024;

/// A TCP connection's incoming bytes as a body: each read becomes one DATA chunk, with no
/// copy. It reads only when polled (the connection polls a body only while the stream has
/// credit, spec/protocol.md §10.3), and holds no buffer while the socket has nothing to
/// read, so an idle tunnel costs no buffer memory.
#[derive(Debug)]
pub struct TcpBody {
    read: OwnedReadHalf,
    /// Kept while the tunnel lives (with its other direction's socket): the count of open
    /// tunnels or destinations.
    hold: Option<Hold>,
    buf: BytesMut,
    next: usize,
    done: bool,
}

impl TcpBody {
    /// The body of the bytes `read` receives, until its end of stream (a FIN).
    pub fn new(read: OwnedReadHalf) -> Self {
        TcpBody {
            read,
            hold: None,
            buf: BytesMut::new(),
            next: FIRST_READ,
            done: false,
        }
    }
}

impl http_body::Body for TcpBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            if let Err(e) = ready!(this.read.as_ref().poll_read_ready(cx)) {
                this.done = true;
                return Poll::Ready(Some(Err(e)));
            }
            if this.buf.capacity() < this.next / 4 {
                // Reuses the allocation when every chunk cut from it has been sent.
                this.buf.reserve(this.next);
            }
            let room = this.buf.capacity() - this.buf.len();
            match read_some(this.read.as_ref(), &mut this.buf) {
                Ok(0) => {
                    this.done = true;
                    this.buf = BytesMut::new();
                    return Poll::Ready(None);
                }
                Ok(n) => {
                    if n == room {
                        this.next = (this.next * 2).min(MAX_READ);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(this.buf.split().freeze()))));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Nothing to read: wait without a buffer (the chunks already cut keep
                    // theirs until they are sent).
                    this.buf = BytesMut::new();
                    this.next = FIRST_READ;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// Reads what `socket` has into `buf`. A read that leaves room in the buffer found the
/// socket empty at that moment, so it also clears the socket's readiness: the next poll
/// waits for the next readiness event instead of making a read that can only say
/// `WouldBlock` (one system call fewer per burst; a burst is one request in request-response
/// traffic). An event that arrived after the read keeps the socket ready (tokio clears only
/// the readiness it saw before the call).
fn read_some(socket: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    let room = buf.capacity() - buf.len();
    let mut short = None;
    let result = socket.try_io(Interest::READABLE, || {
        let n = socket.try_read_buf(buf)?;
        if n > 0 && n < room {
            short = Some(n);
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match (result, short) {
        (_, Some(n)) => Ok(n),
        (result, None) => result,
    }
}

/// Listens for TCP and forwards every accepted connection through a CONNECT stream to
/// one destination at the other end (see the [module docs](self)).
/// [`shutdown`](Self::shutdown) stops accepting and gives the open tunnels a bounded time
/// to end.
#[derive(Debug)]
pub struct TcpGateway {
    running: Running,
    destination: Authority,
}

impl TcpGateway {
    /// At most this many tunnels at once by default; a connection beyond it is closed as
    /// soon as it is accepted (see [`with_max_tunnels`](Self::from_listener)).
    pub const DEFAULT_MAX_TUNNELS: usize = 1024;

    /// Listens on `addr` and forwards each connection to `destination` (`host:port`) at
    /// the other end of `target`.
    pub async fn bind(addr: SocketAddr, destination: &str, target: Target) -> io::Result<Self> {
        let destination = parse_destination(destination)?;
        Self::start(
            TcpListener::bind(addr).await?,
            destination,
            target,
            Self::DEFAULT_MAX_TUNNELS,
        )
    }

    /// Forwards the connections of an already bound listener, at most `max_tunnels` at
    /// once.
    pub fn from_listener(
        listener: TcpListener,
        destination: &str,
        target: Target,
        max_tunnels: usize,
    ) -> io::Result<Self> {
        Self::start(
            listener,
            parse_destination(destination)?,
            target,
            max_tunnels,
        )
    }

    fn start(
        listener: TcpListener,
        destination: Authority,
        target: Target,
        max_tunnels: usize,
    ) -> io::Result<Self> {
        let to = destination.clone();
        let running = Running::spawn(listener, move |stream, remote, commands, live| {
            tunnel(
                stream,
                remote,
                to.clone(),
                target.clone(),
                commands,
                live,
                max_tunnels,
            )
        })?;
        tracing::info!(addr = %running.local_addr(), %destination, "tether tcp gateway listening");
        Ok(TcpGateway {
            running,
            destination,
        })
    }

    /// The address the gateway listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.running.local_addr()
    }

    /// The destination every tunnel asks for.
    pub fn destination(&self) -> &str {
        self.destination.as_str()
    }

    /// Number of open tunnels: accepted connections whose two directions are not both
    /// done with yet.
    pub fn tunnel_count(&self) -> usize {
        self.running.connection_count()
    }

    /// Stops accepting and waits up to `timeout` for the open tunnels to end. Tunnels
    /// still open then are left to end by themselves, or with their Tether connection
    /// (whose close aborts them).
    pub async fn shutdown(self, timeout: Duration) -> Result<(), StopError> {
        self.running.stop(1001, "gateway shutdown", timeout).await
    }
}

fn parse_destination(destination: &str) -> io::Result<Authority> {
    match destination.parse::<Authority>() {
        Ok(a) if a.port_u16().is_some() && !a.host().is_empty() && !destination.contains('@') => {
            Ok(a)
        }
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("expected a destination as HOST:PORT, not {destination:?}"),
        )),
    }
}

async fn tunnel(
    visitor: TcpStream,
    remote: SocketAddr,
    destination: Authority,
    target: Target,
    _commands: watch::Receiver<Command>,
    live: Arc<AtomicUsize>,
    max_tunnels: usize,
) {
    // The tunnel counts as open (and this task waits) until both of its sockets are done
    // with: the visitor's bytes (the request body, polled by the connection task) and the
    // answer's (written by the connection task).
    let (ended, tunnel_ended) = oneshot::channel::<()>();
    let hold: Hold = Arc::new((LiveGuard::new(&live), ended));
    if live.load(Ordering::Relaxed) > max_tunnels {
        tracing::warn!(%remote, max_tunnels, "tcp gateway: too many tunnels, connection closed");
        return;
    }
    // A tunnel lives as long as its two sides: no request timeout (§10.9).
    let peer = match target.select(&HeaderMap::new()) {
        Ok(peer) => peer.with_timeout(None),
        Err(e) => {
            tracing::info!(%remote, error = %e, "tcp gateway: connection closed");
            return;
        }
    };
    let (read, write) = visitor.into_split();
    let mut body = TcpBody::new(read);
    body.hold = Some(hold.clone());
    let request = Request::builder()
        .method(Method::CONNECT)
        .uri(destination.as_str())
        .body(body)
        .expect("a valid authority-form request");
    match peer.request(request).await {
        Ok(response) if response.status().is_success() => {
            // The connection task writes the answer's DATA to the socket as it arrives.
            response.into_body().into_socket(write, Some(hold));
            // Waits for the tunnel's end, so that a shutdown waits for it too.
            let _ = tunnel_ended.await;
        }
        Ok(response) => {
            tracing::info!(%remote, %destination, status = %response.status(),
                "tcp gateway: the other end refused the tunnel");
            crate::rest::sink::abort(write);
        }
        Err(e) => {
            tracing::info!(%remote, %destination, error = %e, "tcp gateway: tunnel failed");
            crate::rest::sink::abort(write);
        }
    }
}

/// The service that opens CONNECT streams' destinations from an allow-list (see the
/// [module docs](self)), with an optional HTTP [`Upstream`] for every other request.
#[derive(Debug, Clone)]
pub struct TcpUpstream {
    allowed: Arc<[Authority]>,
    /// Destinations open at once, for every peer together.
    open: Arc<Semaphore>,
    max_open: usize,
    connect_timeout: Duration,
    http: Option<Upstream>,
}

impl TcpUpstream {
    /// Destinations open at once by default, for every peer and connection together;
    /// a tunnel beyond it is refused with 503.
    pub const DEFAULT_MAX_OPEN: usize = 1024;

    /// The time allowed to connect to a destination by default (then 504).
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

    /// Opens the destinations in `allowed` (`host:port` each, compared without regard to
    /// case) and no other; with none, CONNECT is answered 501 as by an HTTP [`Upstream`].
    pub fn new<'a>(allowed: impl IntoIterator<Item = &'a str>) -> io::Result<Self> {
        let allowed = allowed
            .into_iter()
            .map(parse_destination)
            .collect::<io::Result<Arc<[Authority]>>>()?;
        Ok(TcpUpstream {
            allowed,
            open: Arc::new(Semaphore::new(Self::DEFAULT_MAX_OPEN)),
            max_open: Self::DEFAULT_MAX_OPEN,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            http: None,
        })
    }

    /// The same service with another connect timeout.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The same service with another bound on the destinations open at once (at least
    /// 1), shared by its clones.
    pub fn with_max_open(mut self, max_open: usize) -> Self {
        let max_open = max_open.clamp(1, Semaphore::MAX_PERMITS);
        self.open = Arc::new(Semaphore::new(max_open));
        self.max_open = max_open;
        self
    }

    /// The same service, sending every request but CONNECT to `http`.
    pub fn with_http(mut self, http: Option<Upstream>) -> Self {
        self.http = http;
        self
    }

    /// The destinations this service opens.
    pub fn allowed(&self) -> impl Iterator<Item = &str> {
        self.allowed.iter().map(Authority::as_str)
    }

    async fn open(&self, request: Request<Body>) -> Result<Response<UpstreamBody>, GatewayError> {
        let (parts, body) = request.into_parts();
        let destination = match parts.uri.authority() {
            Some(a) if parts.uri.scheme().is_none() && parts.uri.path_and_query().is_none() => a,
            _ => return Err(GatewayError::UnsupportedTarget(parts.uri.to_string())),
        };
        if self.allowed.is_empty() {
            return Err(GatewayError::UnsupportedMethod(Method::CONNECT));
        }
        // `Authority` compares without regard to case.
        if !self.allowed.iter().any(|a| a == destination) {
            return Err(GatewayError::DestinationNotAllowed(destination.to_string()));
        }
        let url = format!("tcp://{destination}");
        // Each open destination holds a descriptor: a process-wide bound, whatever the
        // number of peers (each of which may hold MAX_CONCURRENT_STREAMS tunnels).
        let Ok(permit) = self.open.clone().try_acquire_owned() else {
            return Err(GatewayError::UpstreamBusy {
                url,
                max_connections: self.max_open,
            });
        };
        let socket = match tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect(destination.as_str()),
        )
        .await
        {
            Ok(Ok(socket)) => socket,
            Ok(Err(e)) => {
                return Err(GatewayError::UpstreamUnreachable {
                    url,
                    reason: e.to_string(),
                })
            }
            Err(_) => {
                return Err(GatewayError::UpstreamTimedOut {
                    url,
                    timeout: self.connect_timeout,
                })
            }
        };
        let _ = socket.set_nodelay(true);
        let (read, write) = socket.into_split();
        // The connection task writes the request's DATA to the socket as it arrives. The
        // destination counts as open until both directions are done with.
        let hold: Hold = Arc::new(permit);
        body.into_socket(write, Some(hold.clone()));
        let mut response_body = TcpBody::new(read);
        response_body.hold = Some(hold);
        Ok(Response::new(
            response_body.map_err(BoxError::from).boxed_unsync(),
        ))
    }
}

impl tower::Service<Request<Body>> for TcpUpstream {
    type Response = Response<UpstreamBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<UpstreamBody>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            if request.method() != Method::CONNECT {
                return Ok(match &this.http {
                    Some(http) => http.proxy(request).await,
                    None => {
                        error_response(&GatewayError::UnsupportedMethod(request.method().clone()))
                    }
                });
            }
            Ok(match this.open(request).await {
                Ok(response) => response,
                Err(e) => {
                    tracing::debug!(error = %e, "tunnel not opened");
                    error_response(&e)
                }
            })
        })
    }
}

fn error_response(error: &GatewayError) -> Response<UpstreamBody> {
    error
        .to_response::<Full<Bytes>>()
        .map(|body| body.map_err(|never| match never {}).boxed_unsync())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_are_host_and_port_and_anything_else_is_a_typed_error() {
        for good in [
            "h:1",
            "db.internal:5432",
            "127.0.0.1:80",
            "[::1]:22",
            "DB:65535",
        ] {
            let parsed = parse_destination(good).unwrap_or_else(|e| panic!("{good}: {e}"));
            assert_eq!(parsed.as_str(), good);
        }
        for bad in [
            "",
            "h",
            "h:",
            ":80",
            "h:port",
            "h:65536",
            "h:99999999999",
            "u@h:1",
            "h:1/x",
            "h:1?q",
            "[::1:22",
            "http://h:1",
            "h :1",
            "h:1:2",
            "\0:1",
            "é:1",
        ] {
            let e = parse_destination(bad).expect_err(bad);
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad}");
        }
        // Arbitrary strings: an error or a destination, never a panic.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let len = (x % 24) as usize;
            let s: String = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let alphabet = b":[]@/.0123456789abcdefhxyz%?# \x7f";
                    char::from(alphabet[(x % alphabet.len() as u64) as usize])
                })
                .collect();
            if let Ok(a) = parse_destination(&s) {
                assert!(a.port_u16().is_some() && !a.host().is_empty(), "{s:?}");
            }
        }
    }
}
