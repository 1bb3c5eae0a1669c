//! [`Peer`]: calling the other end's HTTP API.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Buf;
use http::{Request, Response};
use tokio::sync::oneshot;
use tokio::time::Instant;
use uuid::Uuid;

use super::driver::{Command, CommandSender, Failed, Open};
use super::{any_body, AnyBody, Body, BoxError, LinkHandle, RequestError, RestConfig, Timeout};

/// Where a server's [`Peer`] finds the current connection of a client id (the server's
/// registry): the REST layer depends on this, and the server implements it, not both ways.
pub(crate) trait Links: Send + Sync {
    /// The way in for requests to the connection `id`, if it is live.
    fn link(&self, id: &Uuid) -> Option<LinkHandle>;
}

/// The future of a [`Peer`] call.
pub type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<Response<Body>, RequestError>> + Send + 'static>>;

/// Calls the HTTP API of the other end of a connection: from a client, the server's; from
/// the server, one client's. Get one from [`Client::peer`] or [`Server::peer`]; it is
/// cheap to clone, and it is a [`tower::Service`], so tower's middleware (retry,
/// concurrency limits, …) stacks on it.
///
/// - Every request is a stream: any number run at once, up to the peer's concurrency
///   limit; more wait in a bounded queue.
/// - The response comes back as soon as its head arrives; its [`Body`] streams.
/// - A client's peer outlives reconnects: a request made while the client reconnects
///   waits for the connection (at most [`RestConfig::connect_wait`]), and one that was
///   queued but not yet sent when a connection ended goes out on the next one. A server's
///   peer is bound to one connection id (it follows the session across a resume).
/// - Errors say whether the peer may have processed the request
///   ([`RequestError::is_safe_to_retry`]).
///
/// [`Client::peer`]: crate::client::Client::peer
/// [`Server::peer`]: crate::server::Server::peer
#[derive(Clone)]
pub struct Peer {
    route: Route,
    config: Arc<RestConfig>,
    timeout: Option<Duration>,
}

#[derive(Clone)]
enum Route {
    /// A client's current connection, `None` while it (re)connects; the sender is gone
    /// once the client is done. `waiting` counts the requests of the client's peers
    /// waiting for a connection.
    Client {
        link: Arc<super::ClientLink>,
        waiting: Arc<AtomicUsize>,
    },
    /// One connection of a server.
    Server { registry: Arc<dyn Links>, id: Uuid },
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("connection_id", &self.connection_id())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Peer {
    pub(crate) fn client(
        link: Arc<super::ClientLink>,
        config: Arc<RestConfig>,
        waiting: Arc<AtomicUsize>,
    ) -> Self {
        Peer {
            timeout: config.request_timeout,
            route: Route::Client { link, waiting },
            config,
        }
    }

    pub(crate) fn server(registry: Arc<dyn Links>, id: Uuid, config: Arc<RestConfig>) -> Self {
        Peer {
            timeout: config.request_timeout,
            route: Route::Server { registry, id },
            config,
        }
    }

    /// The id of the connection requests go to now (`None` while a client reconnects).
    pub fn connection_id(&self) -> Option<Uuid> {
        match &self.route {
            Route::Client { link, .. } => link.get().map(|l| l.id),
            Route::Server { registry, id } => registry.link(id).map(|l| l.id),
        }
    }

    /// The same peer with another default timeout for its requests (`None`: no limit).
    /// A [`Timeout`] in a request's extensions still wins.
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends `request` and waits for the response head; the body streams from the
    /// returned response. A relative URI (`/path?query`) is the usual form; the service
    /// at the other end sees it as is.
    ///
    /// ```no_run
    /// # async fn f(peer: tether_tokio::rest::Peer) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// use tether_tokio::rest::Body;
    /// let request = http::Request::post("/jobs")
    ///     .header("content-type", "application/json")
    ///     .body(Body::from(r#"{"run":"backup"}"#))?;
    /// let response = peer.request(request).await?;
    /// println!("{}", response.status());
    /// let body = response.into_body().collect_limited(1 << 20).await?;
    /// # let _ = body; Ok(()) }
    /// ```
    pub fn request<B>(
        &self,
        request: Request<B>,
    ) -> impl Future<Output = Result<Response<Body>, RequestError>> + Send + 'static
    where
        B: http_body::Body + Send + 'static,
        B::Data: Buf + Send,
        B::Error: Into<BoxError>,
    {
        // `send` owns its peer: its future is the call's, with no wrapper to move it into.
        self.clone().send(request.map(any_body))
    }

    async fn send(self, mut request: Request<AnyBody>) -> Result<Response<Body>, RequestError> {
        let timeout = request
            .extensions()
            .get::<Timeout>()
            .map(|t| t.0)
            .or(self.timeout);
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut last_serial = None;
        loop {
            let (link, waited) = self.link(deadline, last_serial, timeout).await?;
            // What is left of the timeout: all of it when the connection was there at once
            // (the usual case, without a second clock read), else what the clock says.
            let first = last_serial.is_none() && !waited;
            last_serial = Some(link.serial);
            let remaining = match (deadline, timeout) {
                (Some(_), Some(t)) if first && !t.is_zero() => Some(t),
                (Some(d), _) => match d.checked_duration_since(Instant::now()) {
                    Some(r) if !r.is_zero() => Some(r),
                    _ => return Err(RequestError::TimedOut(timeout.unwrap_or_default())),
                },
                (None, _) => None,
            };
            let (reply, response) = oneshot::channel();
            let open = Open {
                request,
                timeout: remaining,
                reply,
            };
            if let Err(e) = link.commands.send(Command::Open(Box::new(open))) {
                // The connection task just ended: try the next connection.
                let Command::Open(open) = e.into_inner() else {
                    unreachable!("the command sent was an Open")
                };
                request = open.request;
                continue;
            }
            let guard = CancelOnDrop {
                commands: &link.commands,
                armed: true,
            };
            // The stream carries the deadline and is reset when it passes; this timer
            // is only a backstop in case the connection task cannot answer.
            let answer = match deadline {
                Some(d) => tokio::time::timeout_at(d + Duration::from_millis(250), response)
                    .await
                    .map_err(|_| RequestError::TimedOut(timeout.unwrap_or_default()))?,
                None => response.await,
            };
            match answer {
                Ok(Ok(response)) => {
                    guard.disarm();
                    return Ok(response);
                }
                Ok(Err(Failed::Error(e))) => {
                    guard.disarm();
                    // The stream was opened with what was left of the timeout; the error
                    // reports the request's own.
                    if let RequestError::TimedOut(_) = e {
                        return Err(RequestError::TimedOut(timeout.unwrap_or_default()));
                    }
                    return Err(e);
                }
                Ok(Err(Failed::Unsent(back))) => {
                    guard.disarm();
                    if matches!(self.route, Route::Server { .. }) {
                        return Err(RequestError::NotConnected);
                    }
                    request = *back;
                }
                Err(_) => return Err(RequestError::ConnectionLost),
            }
        }
    }

    /// The connection to send on: for a client, waits (bounded) for one other than
    /// `not` (the one that just handed the request back). `true` with it when it waited.
    async fn link(
        &self,
        deadline: Option<Instant>,
        not: Option<u64>,
        timeout: Option<Duration>,
    ) -> Result<(LinkHandle, bool), RequestError> {
        let (link, waiting) = match &self.route {
            Route::Server { registry, id } => {
                return match registry.link(id) {
                    Some(link) if Some(link.serial) != not => Ok((link, false)),
                    _ => Err(RequestError::NotConnected),
                }
            }
            Route::Client { link, waiting } => (link, waiting),
        };
        let usable = |l: &Option<LinkHandle>| l.as_ref().is_some_and(|l| Some(l.serial) != not);
        let current = link.get();
        if let (true, Some(l)) = (usable(&current), current) {
            return Ok((l, false));
        }
        // Wait, counted against the queue bound.
        let _count = Waiting(waiting);
        if waiting.fetch_add(1, Ordering::AcqRel) >= self.config.max_queued_requests {
            return Err(RequestError::QueueFull);
        }
        let wait_until = Instant::now() + self.config.connect_wait;
        let (until, timed_out) = match deadline {
            Some(d) if d < wait_until => (d, true),
            _ => (wait_until, false),
        };
        let waited = tokio::time::timeout_at(until, async {
            link.wait_for(usable).await.ok_or(RequestError::Closed)
        })
        .await;
        match waited {
            Ok(result) => result.map(|link| (link, true)),
            Err(_) if timed_out => Err(RequestError::TimedOut(timeout.unwrap_or_default())),
            Err(_) => Err(RequestError::NotConnected),
        }
    }
}

/// Counts a request waiting for a connection.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Cancels the stream of a call whose caller went away before the response head: the
/// connection task hears that a caller is gone and resets the streams whose callers are
/// ([`Command::CallerGone`]). The caller does not know its stream (a shared cell for it
/// was an allocation and four atomic operations per request).
struct CancelOnDrop<'a> {
    /// Borrowed from the link the request went to: a clone and its drop were two counts
    /// changed and changed back for every request.
    commands: &'a CommandSender,
    armed: bool,
}

impl CancelOnDrop<'_> {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.commands.send(Command::CallerGone);
        }
    }
}

impl<B> tower::Service<Request<B>> for Peer
where
    B: http_body::Body + Send + 'static,
    B::Data: Buf + Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = RequestError;
    type Future = ResponseFuture;

    /// Always ready: requests queue (boundedly) inside the connection.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), RequestError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> ResponseFuture {
        Box::pin(self.request(request))
    }
}
