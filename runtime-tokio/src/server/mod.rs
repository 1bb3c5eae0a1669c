//! A Tether server over real sockets: WebSocket upgrade (optionally over TLS), the
//! handshake with an accept/reject hook, heartbeat, session resume, a registry of live
//! connections and a bounded event stream.
//!
//! Each accepted socket gets one task that owns its
//! [`Connection`](tether_proto::connection::Connection) machine and loops:
//! wait for a message, the machine's deadline or a command → hand it to the machine →
//! drain its events (asking the [`HelloHook`] when a HELLO arrives) → feed every queued
//! message to the socket and flush once. The runtime holds no protocol rule.
//!
//! The stream layer (spec/protocol.md §10) runs inside each connection's machine from the
//! handshake on: [`Server::peer`] calls one client's HTTP API and [`Server::serve`] serves
//! one to every client (see [`crate::rest`]). Only while no service is attached is a
//! request from a client answered at once with `501 Not Implemented` (and its body
//! consumed) rather than left to time out.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use tether_tokio::server::{Decision, Server, ServerConfig, ServerEvent};
//! use tether_proto::CloseCode;
//!
//! let config = ServerConfig::new("127.0.0.1:9000".parse()?);
//! let (server, mut events) = Server::bind_with_hook(config, |req: tether_tokio::server::HelloRequest| async move {
//!     // Authenticate here: `req.hello.metadata_json()`, `req.remote_addr`, `req.headers`.
//!     if req.hello.metadata_json()["token"] == "secret" {
//!         Decision::Accept
//!     } else {
//!         Decision::reject(CloseCode::REJECTED, "bad token")
//!     }
//! })
//! .await?;
//! while let Some(event) = events.recv().await {
//!     match event {
//!         ServerEvent::Received { id, .. } => println!("received {id}"),
//!         ServerEvent::Closed { id, code, .. } => println!("closed {id} {code}"),
//!         _ => {}
//!     }
//! }
//! server.shutdown(std::time::Duration::from_secs(5)).await?;
//! # Ok(()) }
//! ```

pub(crate) mod conn;
pub(crate) mod registry;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Uri};
use tether_proto::abuse::{AbuseTable, CooldownConfig};
use tether_proto::connection::{Config, ConnectionError, HelloInfo, Initiator, SessionStore};
use tether_proto::CloseCode;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::events::{EventStream, Publisher, DEFAULT_EVENT_CAPACITY};
use crate::metrics::Metrics;
use crate::rest::{BoxError, Peer, RestConfig, SharedService};
use crate::transport::acceptor::{Running, StopError};
use crate::transport::upgrade::{AcceptPolicy, AllowedOrigins};
use registry::{Command, Registry};

/// Close code sent to every client by [`Server::shutdown`].
pub const SHUTDOWN_CODE: CloseCode = CloseCode::GOING_AWAY;

/// Configuration of a [`Server`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Address to listen on; every path accepts WebSocket upgrades.
    pub listen: SocketAddr,
    /// The connection settings: limits, handshake timeout, heartbeat (imposed on clients).
    pub connection: Arc<Config>,
    /// How long a failed connection's session stays resumable (default 30 s; zero turns
    /// resume off).
    pub resume_window: Duration,
    /// Detached sessions kept for resume at most (default 10 000). While that many are
    /// held, a HELLO that needs a new session is closed with 4007 ENHANCE_YOUR_CALM and a
    /// failing connection's session is not kept; held sessions are never evicted
    /// (spec/protocol.md §9.1). Each costs its metadata plus about 200 bytes.
    pub max_detached_sessions: usize,
    /// Which `Origin`s may connect; others get 403 (default: any).
    pub allowed_origins: AllowedOrigins,
    /// TLS: serve `wss://` (see [`crate::transport::tls`]).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Time for the TLS handshake and the HTTP upgrade together (default 10 s).
    pub upgrade_timeout: Duration,
    /// Time one burst of writes may take before the transport counts as lost (10 s).
    pub write_timeout: Duration,
    /// Events an [`EventStream`] holds for a slow consumer (default 1024).
    pub event_capacity: usize,
    /// How requests to clients behave (timeouts, queue bound): see [`Server::peer`].
    pub rest: RestConfig,
    /// Where the server records its metrics (see [`crate::metrics`]); `None` (the default):
    /// a registry of its own, from [`Server::metrics`]. Give each server its own registry:
    /// the detached-sessions gauge is one server's.
    pub metrics: Option<Metrics>,
    /// Cool-down of addresses whose connections this server closed for abuse (4007 for
    /// stream churn, a probe flood or unread replies): a new connection from such an
    /// address is answered `429 Too Many Requests` with `Retry-After` before the upgrade
    /// (spec/protocol.md §10.8 "Reconnecting abusers"). Default: 1 s, doubling per repeat
    /// up to 60 s, forgotten after 5 min of quiet, 10 000 addresses at most; `None` turns
    /// it off (behind a proxy or NAT that shares one address among many clients).
    pub abuse_cooldown: Option<CooldownConfig>,
}

impl ServerConfig {
    /// Defaults, listening on `listen`.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            connection: Arc::new(Config::default()),
            resume_window: Duration::from_secs(30),
            max_detached_sessions: 10_000,
            allowed_origins: AllowedOrigins::Any,
            tls: None,
            upgrade_timeout: Duration::from_secs(10),
            write_timeout: crate::conn::WRITE_TIMEOUT,
            event_capacity: DEFAULT_EVENT_CAPACITY,
            rest: RestConfig::default(),
            metrics: None,
            abuse_cooldown: Some(CooldownConfig::default()),
        }
    }
}

/// What the [`HelloHook`] decides about a HELLO.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Accept: the server sends WELCOME (a resumed session keeps its id).
    Accept,
    /// Refuse with this close code (usually [`CloseCode::REJECTED`], 4003) and reason.
    Reject {
        /// The close code.
        code: CloseCode,
        /// The reason (cut to 123 bytes).
        reason: String,
    },
}

impl Decision {
    /// A rejection.
    pub fn reject(code: CloseCode, reason: impl Into<String>) -> Self {
        Decision::Reject {
            code,
            reason: reason.into(),
        }
    }
}

/// A HELLO to decide on, with where it came from.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HelloRequest {
    /// The HELLO: metadata, resume ticket, client settings.
    pub hello: HelloInfo,
    /// The client's address.
    pub remote_addr: SocketAddr,
    /// The upgrade request's target.
    pub uri: Uri,
    /// The upgrade request's headers (cookies, authorization…).
    pub headers: HeaderMap,
}

/// A boxed decision future.
pub type DecisionFuture = Pin<Box<dyn Future<Output = Decision> + Send>>;

/// Decides on every HELLO. Any `Fn(HelloRequest) -> impl Future<Output = Decision>` is one;
/// a synchronous check returns `std::future::ready(decision)`. It must answer before the
/// handshake timeout, or the connection closes with HANDSHAKE_TIMEOUT (4002).
pub trait HelloHook: Send + Sync + 'static {
    /// The decision for `request`.
    fn decide(&self, request: HelloRequest) -> DecisionFuture;
}

impl<F, Fut> HelloHook for F
where
    F: Fn(HelloRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Decision> + Send + 'static,
{
    fn decide(&self, request: HelloRequest) -> DecisionFuture {
        Box::pin(self(request))
    }
}

/// A [`HelloHook`] from a synchronous check.
///
/// ```
/// use tether_proto::CloseCode;
/// use tether_tokio::server::{sync_hook, Decision};
///
/// let hook = sync_hook(|req| match req.hello.metadata_json()["token"].as_str() {
///     Some("secret") => Decision::Accept,
///     _ => Decision::reject(CloseCode::REJECTED, "bad token"),
/// });
/// # let _ = hook;
/// ```
pub fn sync_hook<F>(check: F) -> impl HelloHook
where
    F: Fn(&HelloRequest) -> Decision + Send + Sync + 'static,
{
    move |request: HelloRequest| std::future::ready(check(&request))
}

/// What happens to the server's connections. Only connections that completed the
/// handshake have events; failed upgrades and handshakes are traced at `debug`. When a
/// session resumes on a new transport while the old one is still open (the server had not
/// noticed the drop), the old one is closed with SESSION_REPLACED (4009) and its end is
/// *not* reported: the session lives on, as the `Resumed` event said.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ServerEvent {
    /// A new session is established.
    Received {
        /// The connection id.
        id: Uuid,
        /// The client's metadata (JSON, or empty).
        metadata: Bytes,
        /// The client's address.
        remote_addr: SocketAddr,
    },
    /// A session was resumed on a new transport: same id as before the drop.
    Resumed {
        /// The connection id.
        id: Uuid,
        /// The client's metadata, from its latest HELLO.
        metadata: Bytes,
        /// The client's new address.
        remote_addr: SocketAddr,
    },
    /// The connection ended in an orderly way; its session is forgotten.
    Closed {
        /// The connection id.
        id: Uuid,
        /// The close code.
        code: CloseCode,
        /// The close reason.
        reason: String,
        /// Who closed.
        initiator: Initiator,
    },
    /// The connection failed; its session stays resumable for the resume window, unless
    /// the close code tells the client not to retry
    /// ([`ConnectionError::keeps_session`], spec/protocol.md §9.1), or the session store
    /// was full (then [`Expired`](ServerEvent::Expired) follows at once).
    Failure {
        /// The connection id.
        id: Uuid,
        /// What went wrong.
        error: ConnectionError,
    },
    /// A detached session can no longer be resumed: its resume window ended (reported
    /// when it ends, without waiting for another handshake), or it failed while the
    /// session store was full (spec/protocol.md §9.1).
    Expired {
        /// The session's (and its last connection's) id.
        id: Uuid,
    },
}

struct Shared {
    config: ServerConfig,
    /// `config.rest`, shared by every connection's HTTP side and every [`Peer`].
    rest: Arc<RestConfig>,
    policy: AcceptPolicy,
    registry: Registry,
    store: Mutex<SessionStore>,
    /// Wakes the store's one expiry timer task after every change to the store.
    store_changed: Arc<Notify>,
    events: Publisher<ServerEvent>,
    serial: AtomicU64,
    tls: Option<tokio_rustls::TlsAcceptor>,
    service: SharedService,
    metrics: Metrics,
    /// Addresses in abuse cool-down (spec/protocol.md §10.8); `None` when turned off.
    abuse: Option<Mutex<AbuseTable>>,
}

impl Shared {
    /// Runs `f` on the session store, then lets the expiry task re-arm its timer and
    /// report what expired.
    fn sessions<R>(&self, f: impl FnOnce(&mut SessionStore) -> R) -> R {
        let result = f(&mut self.store.lock().unwrap_or_else(|e| e.into_inner()));
        self.store_changed.notify_one();
        result
    }

    /// Whether a new connection from `addr` may go on to the upgrade at `now`
    /// (spec/protocol.md §10.8 "Reconnecting abusers").
    fn admit_address(
        &self,
        addr: std::net::IpAddr,
        now: std::time::Instant,
    ) -> Result<(), tether_proto::abuse::RetryAfter> {
        match &self.abuse {
            Some(table) => table
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .check(addr, now),
            None => Ok(()),
        }
    }

    /// This server closed a connection from `addr` for abuse at `now`.
    fn record_abuse(&self, addr: std::net::IpAddr, now: std::time::Instant) {
        if let Some(table) = &self.abuse {
            let cooldown = table
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .record(addr, now);
            tracing::info!(%addr, ?cooldown, "abuse close: address in cool-down");
        }
    }

    /// Expires what is due at `now`, reports it, and returns the next deadline.
    fn expire_sessions(&self, now: std::time::Instant) -> Option<std::time::Instant> {
        let mut expired = Vec::new();
        let next = {
            let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
            store.handle_timeout(now);
            while let Some(id) = store.poll_expired() {
                expired.push(id);
            }
            store.poll_timeout()
        };
        for id in expired {
            tracing::info!(%id, "session expired");
            self.events.publish(ServerEvent::Expired { id });
        }
        next
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The expiry task holds only a weak reference: wake it to find the server gone.
        self.store_changed.notify_one();
    }
}

/// The one timer of the session store (spec/protocol.md §9.1): sleeps until the store's
/// earliest deadline or its next change, expires what is due and reports it. One task
/// for all sessions; it ends when the server's state is dropped.
async fn expire_sessions(shared: Weak<Shared>, changed: Arc<Notify>) {
    loop {
        let next = match shared.upgrade() {
            Some(shared) => shared.expire_sessions(std::time::Instant::now()),
            None => return,
        };
        match next {
            Some(deadline) => tokio::select! {
                () = tokio::time::sleep_until(deadline.into()) => {}
                () = changed.notified() => {}
            },
            None => changed.notified().await,
        }
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The established connections of a [`Server`], as a cheap, cloneable handle that stays
/// valid while the server runs (see [`Server::connections`]). Once the server is shut
/// down it lists none.
///
/// ```no_run
/// # fn f(server: &tether_tokio::server::Server) {
/// let connections = server.connections();
/// tokio::spawn(async move {
///     for id in connections.ids() {
///         if let Some(peer) = connections.peer(&id) {
///             let _ = peer; // call the client's API
///         }
///     }
/// });
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Connections {
    registry: Registry,
    rest: Arc<RestConfig>,
}

impl Connections {
    /// Ids of the established connections.
    pub fn ids(&self) -> Vec<Uuid> {
        self.registry.ids()
    }

    /// Number of established connections.
    pub fn len(&self) -> usize {
        self.registry.len()
    }

    /// The one established connection, or how many there are when not exactly one.
    pub(crate) fn sole(&self) -> Result<Uuid, usize> {
        self.registry.sole()
    }

    /// Whether no connection is established.
    pub fn is_empty(&self) -> bool {
        self.registry.len() == 0
    }

    /// Whether `id` is an established connection.
    pub fn contains(&self, id: &Uuid) -> bool {
        self.registry.contains(id)
    }

    /// Calls the HTTP API of client `id`, as [`Server::peer`] does.
    pub fn peer(&self, id: &Uuid) -> Option<Peer> {
        self.registry
            .contains(id)
            .then(|| Peer::server(self.registry.links(), *id, self.rest.clone()))
    }
}

/// A running Tether server (see the [module docs](self)). Dropping it without
/// [`shutdown`](Self::shutdown) stops accepting and closes every connection with 1001.
pub struct Server {
    running: Running,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.running.local_addr())
            .field("connections", &self.shared.registry.len())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Binds `config.listen` and accepts every HELLO.
    pub async fn bind(config: ServerConfig) -> io::Result<(Server, EventStream<ServerEvent>)> {
        Self::bind_with_hook(config, |_req: HelloRequest| {
            std::future::ready(Decision::Accept)
        })
        .await
    }

    /// [`bind`](Self::bind), serving the clients' requests with `service` from the first
    /// connection on (see [`serve`](Self::serve)): no client can meet the `501` of a server
    /// whose service is not attached yet.
    pub async fn bind_serving<S, B>(
        config: ServerConfig,
        service: S,
    ) -> io::Result<(Server, EventStream<ServerEvent>)>
    where
        S: tower::Service<http::Request<crate::rest::Body>, Response = http::Response<B>>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body + Send + 'static,
        B::Data: bytes::Buf + Send,
        B::Error: Into<BoxError>,
    {
        let listener = TcpListener::bind(config.listen).await?;
        let slot = SharedService::default();
        slot.set(service);
        let accept_all = |_req: HelloRequest| std::future::ready(Decision::Accept);
        Self::start(listener, config, accept_all, slot)
    }

    /// Binds `config.listen`; `hook` decides on every HELLO. Returns the server and a
    /// stream of its events (more with [`events`](Self::events)).
    pub async fn bind_with_hook(
        config: ServerConfig,
        hook: impl HelloHook,
    ) -> io::Result<(Server, EventStream<ServerEvent>)> {
        let listener = TcpListener::bind(config.listen).await?;
        Self::from_listener(listener, config, hook)
    }

    /// Starts on an already bound listener (`config.listen` is ignored).
    pub fn from_listener(
        listener: TcpListener,
        config: ServerConfig,
        hook: impl HelloHook,
    ) -> io::Result<(Server, EventStream<ServerEvent>)> {
        Self::start(listener, config, hook, SharedService::default())
    }

    fn start(
        listener: TcpListener,
        config: ServerConfig,
        hook: impl HelloHook,
        service: SharedService,
    ) -> io::Result<(Server, EventStream<ServerEvent>)> {
        let (events, stream) = Publisher::new(config.event_capacity);
        let policy = AcceptPolicy {
            origins: config.allowed_origins.clone(),
            handshake_timeout: config.upgrade_timeout,
            ws_config: crate::conn::ws_config(&config.connection),
            subprotocol: Some(crate::conn::SUBPROTOCOL),
        };
        let metrics = config.metrics.clone().unwrap_or_default();
        metrics.report_budgets(&config.connection);
        let store = SessionStore::new(config.resume_window)
            .with_max_detached(config.max_detached_sessions.max(1));
        let store_changed = Arc::new(Notify::new());
        let abuse = config
            .abuse_cooldown
            .map(|c| Mutex::new(AbuseTable::new(c)));
        let shared = Arc::new(Shared {
            abuse,
            store_changed: store_changed.clone(),
            tls: config.tls.clone().map(tokio_rustls::TlsAcceptor::from),
            rest: Arc::new(config.rest.clone()),
            config,
            policy,
            registry: Registry::default(),
            store: Mutex::new(store),
            events,
            serial: AtomicU64::new(0),
            service,
            metrics,
        });
        let weak = Arc::downgrade(&shared);
        shared.metrics.on_scrape(move |m| {
            if let Some(shared) = weak.upgrade() {
                let store = shared.store.lock().unwrap_or_else(|e| e.into_inner());
                m.set_detached_sessions(store.detached_len());
            }
        });
        tokio::spawn(expire_sessions(Arc::downgrade(&shared), store_changed));
        let hook: Arc<dyn HelloHook> = Arc::new(hook);
        let running = {
            let shared = shared.clone();
            Running::spawn(listener, move |stream, peer, commands, live| {
                conn::serve(stream, peer, shared.clone(), hook.clone(), commands, live)
            })?
        };
        tracing::info!(addr = %running.local_addr(), tls = shared.tls.is_some(), "tether server listening");
        Ok((Server { running, shared }, stream))
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.running.local_addr()
    }

    /// The server's metrics (see [`crate::metrics`]): serve them with
    /// [`MetricsServer`](crate::metrics::MetricsServer) or [`Metrics::encode`].
    pub fn metrics(&self) -> Metrics {
        self.shared.metrics.clone()
    }

    /// Another stream of events, from now on.
    pub fn events(&self) -> EventStream<ServerEvent> {
        self.shared.events.subscribe()
    }

    /// Ids of the established connections.
    pub fn ids(&self) -> Vec<Uuid> {
        self.shared.registry.ids()
    }

    /// Number of established connections.
    pub fn connection_count(&self) -> usize {
        self.shared.registry.len()
    }

    /// Whether `id` is an established connection.
    pub fn contains(&self, id: &Uuid) -> bool {
        self.shared.registry.contains(id)
    }

    /// The metadata of connection `id` (`None` for an unknown id).
    pub fn metadata(&self, id: &Uuid) -> Option<Bytes> {
        self.shared.registry.metadata(id)
    }

    /// The remote address of connection `id` (`None` for an unknown id).
    pub fn remote_addr(&self, id: &Uuid) -> Option<SocketAddr> {
        self.shared.registry.remote_addr(id)
    }

    /// Ids of the connections whose metadata (parsed as JSON; `Null` when empty) matches.
    ///
    /// ```no_run
    /// # fn f(server: &tether_tokio::server::Server) {
    /// let adas = server.find(|meta| meta["user"] == "ada");
    /// # }
    /// ```
    pub fn find(&self, pred: impl FnMut(&serde_json::Value) -> bool) -> Vec<Uuid> {
        self.shared.registry.find(pred)
    }

    /// Calls the HTTP API of client `id` (see [`Peer`]); `None` for an id that is not
    /// connected now. The peer stays bound to the id: if the client drops and resumes its
    /// session, requests go to the new transport; while it is away they fail with
    /// [`RequestError::NotConnected`](crate::rest::RequestError::NotConnected).
    pub fn peer(&self, id: &Uuid) -> Option<Peer> {
        self.connections().peer(id)
    }

    /// A cheap, cloneable handle on the established connections, for tasks that call
    /// clients without holding the `Server` (such as an HTTP [gateway](crate::gateway)).
    pub fn connections(&self) -> Connections {
        Connections {
            registry: self.shared.registry.clone(),
            rest: self.shared.rest.clone(),
        }
    }

    /// Serves the clients' requests with `service` (an axum `Router` works as it is), on
    /// every connection, from now on; it replaces any earlier service. Each request carries
    /// a [`ConnectionInfo`](crate::rest::ConnectionInfo) (id, HELLO metadata, address) in
    /// its extensions. Until a service is set, requests are answered
    /// `501 Not Implemented`. See [`crate::rest`].
    pub fn serve<S, B>(&self, service: S)
    where
        S: tower::Service<http::Request<crate::rest::Body>, Response = http::Response<B>>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body + Send + 'static,
        B::Data: bytes::Buf + Send,
        B::Error: Into<BoxError>,
    {
        self.shared.service.set(service);
    }

    /// Closes connection `id` with `code` and `reason`; false for an unknown id.
    pub fn close(&self, id: &Uuid, code: CloseCode, reason: &str) -> bool {
        self.shared
            .registry
            .send(id, Command::Close(Box::new((code, reason.to_owned()))))
    }

    /// Closes every established connection; returns how many. New ones are still accepted.
    pub fn close_all(&self, code: CloseCode, reason: &str) -> usize {
        self.shared
            .registry
            .send_all(&Command::Close(Box::new((code, reason.to_owned()))))
    }

    /// Stops accepting, closes every connection with 1001 "server shutdown" and waits up
    /// to `timeout` for the closing handshakes; connections still open then are dropped.
    /// A connection with requests in flight first drains them (GOAWAY, for at most
    /// [`RestConfig::drain_timeout`]): give `timeout` room for that.
    pub async fn shutdown(self, timeout: Duration) -> Result<(), StopError> {
        tracing::info!(addr = %self.local_addr(), "tether server shutting down");
        self.running
            .stop(SHUTDOWN_CODE.value(), "server shutdown", timeout)
            .await
    }
}
