//! A Tether client over real sockets: dials `ws://` or `wss://`, runs the handshake and
//! heartbeat, and reconnects with back-off, resuming its session, until closed.
//!
//! One task owns the [`Connection`] machine of the current transport and loops like the
//! server's (see [`crate::server`]). When a connection ends, the close code decides
//! ([`RetryPolicy::for_close_code`]): a fatal one (a rejected HELLO, 4003; a normal close,
//! 1000; …) ends the client, anything else waits for the next [`Backoff`] delay and dials
//! again, presenting the resume ticket of the last session. The [`Client`] handle stays
//! valid across reconnects.
//!
//! The stream layer (spec/protocol.md §10) runs inside each connection's machine from the
//! handshake on: [`Client::peer`] calls the server's HTTP API and [`Client::serve`] serves
//! one to it, over every connection of the client (see [`crate::rest`]). Only while no
//! service is attached is a request from the server answered at once with
//! `501 Not Implemented` (and its body consumed) rather than left to time out.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use tether_tokio::client::{Client, ClientConfig, ClientEvent};
//!
//! let config = ClientConfig::new(r#"{"device":"sensor-7"}"#);
//! let (client, mut events) = Client::connect("ws://127.0.0.1:9000/", config)?;
//! while let Some(event) = events.recv().await {
//!     match event {
//!         ClientEvent::Connected { id, .. } => {
//!             println!("connected {id}");
//!             break;
//!         }
//!         ClientEvent::Reconnecting { attempt, delay } => println!("retry {attempt} in {delay:?}"),
//!         other => println!("{other:?}"),
//!     }
//! }
//! client.close().await;
//! # Ok(()) }
//! ```

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tether_proto::backoff::{parse_retry_after, Backoff, BackoffConfig, RetryPolicy};
use tether_proto::connection::{
    Config, ConfigError, Connection, ConnectionError, Event, Initiator,
};
use tether_proto::Resume;
use tether_proto::{CloseCode, Settings};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tracing::Instrument;
use uuid::Uuid;

use crate::conn::{self as link, Ending, Input};
use crate::events::{EventStream, Publisher, Subscriber, DEFAULT_CLIENT_EVENT_CAPACITY};
use crate::rest::{
    BoxError, ClientLink, ClientLinkOwner, ConnectionInfo, Driver, LinkHandle, Peer, RestConfig,
    SharedService,
};
use crate::transport::client_upgrade::{self, ClientStream, UpgradeError};
use crate::transport::queue;
use crate::transport::reconnect::{self, Wait};
use std::sync::atomic::AtomicUsize;
use tether_proto::Side;

/// Configuration of a [`Client`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Metadata sent in every HELLO: one JSON value, or empty.
    pub metadata: Bytes,
    /// Connection settings: handshake timeout, proposed heartbeat, limits.
    pub connection: Arc<Config>,
    /// Reconnect delays (default [`BackoffConfig::default`]).
    pub backoff: BackoffConfig,
    /// Reconnect when a connection ends with a retryable code (default true).
    pub reconnect: bool,
    /// TLS for `wss://` URLs (see [`crate::transport::tls::client_config`]); required for them.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Time for TCP connect, TLS and the HTTP upgrade of one attempt (default 10 s).
    pub connect_timeout: Duration,
    /// Time one burst of writes may take before the transport counts as lost (10 s).
    pub write_timeout: Duration,
    /// Events an [`EventStream`] holds for a slow consumer (default 64; the ring is
    /// allocated up front, so this is memory per client).
    pub event_capacity: usize,
    /// How requests to the server behave (timeouts, waiting while reconnecting, queue
    /// bound): see [`Client::peer`].
    pub rest: RestConfig,
    /// Where the client records its metrics (see [`crate::metrics`]); `None` (the
    /// default): none are kept.
    pub metrics: Option<crate::metrics::Metrics>,
}

impl ClientConfig {
    /// Defaults, with `metadata` (a JSON text, or empty).
    pub fn new(metadata: impl Into<Bytes>) -> Self {
        Self {
            metadata: metadata.into(),
            connection: Arc::new(Config::default()),
            backoff: BackoffConfig::default(),
            reconnect: true,
            tls: None,
            connect_timeout: Duration::from_secs(10),
            write_timeout: link::WRITE_TIMEOUT,
            event_capacity: DEFAULT_CLIENT_EVENT_CAPACITY,
            rest: RestConfig::default(),
            metrics: None,
        }
    }
}

/// What the handshake settled, reported with [`ClientEvent::Connected`] and
/// [`ClientEvent::Resumed`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Handshake {
    /// The protocol version spoken.
    pub version: Option<u16>,
    /// The heartbeat in force, `(interval, timeout)`.
    pub heartbeat: Option<(Duration, Duration)>,
    /// How long the server keeps the session resumable after a drop.
    pub resume_window: Duration,
    /// The settings the server announced in WELCOME.
    pub server_settings: Settings,
}

/// What happens to a [`Client`]. After a `Closed` or `Failure`, either a `Reconnecting`
/// follows or the client is done (the stream then ends).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ClientEvent {
    /// A new session is established.
    Connected {
        /// The connection id.
        id: Uuid,
        /// The negotiated values.
        handshake: Handshake,
    },
    /// The previous session was resumed on a new transport: same id.
    Resumed {
        /// The connection id.
        id: Uuid,
        /// The negotiated values.
        handshake: Handshake,
    },
    /// A heartbeat round trip completed.
    Rtt {
        /// The sample.
        rtt: Duration,
        /// The smoothed RTT after it.
        smoothed: Option<Duration>,
    },
    /// The next attempt is in `delay`.
    Reconnecting {
        /// Attempt number since the last stable connection, from 1.
        attempt: u32,
        /// The wait before it.
        delay: Duration,
    },
    /// The connection ended in an orderly way.
    Closed {
        /// The connection id, when the handshake had completed.
        id: Option<Uuid>,
        /// The close code.
        code: CloseCode,
        /// The close reason.
        reason: String,
        /// Who closed.
        initiator: Initiator,
    },
    /// A connection attempt or a connection failed.
    Failure {
        /// The connection id, when the handshake had completed.
        id: Option<Uuid>,
        /// What went wrong.
        error: ClientError,
    },
}

/// Why a client could not connect or stay connected.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL is not a `ws://` or `wss://` URL with a host.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// A `wss://` URL without [`ClientConfig::tls`], or a TLS failure.
    #[error("TLS: {0}")]
    Tls(String),
    /// The configuration or metadata is unusable.
    #[error("configuration: {0}")]
    Config(#[from] ConfigError),
    /// TCP connect or the WebSocket upgrade failed.
    #[error("connect failed: {0}")]
    Connect(String),
    /// The server refused the upgrade with `429 Too Many Requests` (its per-address
    /// cool-down, spec/protocol.md §10.8): the next attempt waits at least `retry_after`
    /// when the server sent one.
    #[error("refused by the server (429 Too Many Requests){}", .retry_after.map(|d| format!(", retry after {d:?}")).unwrap_or_default())]
    TooManyRequests {
        /// The server's `Retry-After`, when it sent one in seconds.
        retry_after: Option<Duration>,
    },
    /// The server did not select the `tether.v1` subprotocol: the upgrade failed, and the
    /// attempt counts as ended with 1002 for the retry decision (spec/protocol.md §2.1).
    #[error("server did not select the tether.v1 subprotocol")]
    Subprotocol,
    /// TCP connect, TLS and upgrade did not complete in time.
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    /// The connection failed (the machine's verdict, with its close code).
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// The back-off's limits were reached.
    #[error("gave up reconnecting")]
    GaveUp,
}

impl ClientError {
    /// The close code behind the error, when there is one.
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            ClientError::Connection(e) => e.close_code(),
            ClientError::Subprotocol => Some(CloseCode::WEBSOCKET_PROTOCOL_ERROR),
            _ => None,
        }
    }
}

#[derive(Debug)]
enum Command {
    /// Boxed: one pointer per slot of the client task's command queue.
    Close(Box<(CloseCode, String)>),
}

/// A connected (or reconnecting) client; see the [module docs](self).
#[derive(Debug)]
pub struct Client {
    commands: queue::Sender<Command>,
    current: CurrentId,
    link: Arc<ClientLink>,
    service: SharedService,
    rest: Arc<RestConfig>,
    waiting: Arc<AtomicUsize>,
    events: Subscriber<ClientEvent>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Client {
    /// Starts connecting to `url` (`ws://` or `wss://`) and returns at once with the
    /// handle and the event stream. Must be called inside a tokio runtime.
    pub fn connect(
        url: &str,
        config: ClientConfig,
    ) -> Result<(Client, EventStream<ClientEvent>), ClientError> {
        Self::start(url, config, SharedService::default())
    }

    /// [`connect`](Self::connect), serving the server's requests with `service` from the
    /// first connection on (see [`serve`](Self::serve)): no request can meet the `501` of
    /// a client whose service is not attached yet, however fast the handshake completes.
    pub fn connect_serving<S, B>(
        url: &str,
        config: ClientConfig,
        service: S,
    ) -> Result<(Client, EventStream<ClientEvent>), ClientError>
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
        let slot = SharedService::default();
        slot.set(service);
        Self::start(url, config, slot)
    }

    fn start(
        url: &str,
        config: ClientConfig,
        service: SharedService,
    ) -> Result<(Client, EventStream<ClientEvent>), ClientError> {
        let target = Target::parse(url, &config)?;
        // Checks the metadata now rather than on every attempt.
        Connection::client(
            config.connection.clone(),
            config.metadata.clone(),
            None,
            Instant::now(),
        )?;
        if let Some(m) = &config.metrics {
            m.report_budgets(&config.connection);
        }
        let (events, stream) = Publisher::new(config.event_capacity);
        let (commands, rx) = queue::bounded(4);
        let current = CurrentId::default();
        let link = Arc::new(ClientLink::default());
        let rest = Arc::new(config.rest.clone());
        let span = tracing::info_span!("tether_client", url = %url, id = tracing::field::Empty);
        let task = tokio::spawn(
            Runner {
                target,
                config,
                events: events.clone(),
                commands: rx,
                current: current.clone(),
                ticket: None,
                link: ClientLinkOwner(link.clone()),
                service: service.clone(),
                rest: rest.clone(),
                sessions: 0,
            }
            .run()
            .instrument(span),
        );
        Ok((
            Client {
                commands,
                current,
                link,
                service,
                rest,
                waiting: Arc::default(),
                events: events.subscriber(),
                task: Mutex::new(Some(task)),
            },
            stream,
        ))
    }

    /// The id of the established connection, `None` while (re)connecting or after the end.
    pub fn connection_id(&self) -> Option<Uuid> {
        *self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Calls the server's HTTP API (see [`Peer`]). The peer outlives reconnects: requests
    /// made while the client reconnects wait for the connection, for at most
    /// [`RestConfig::connect_wait`](crate::rest::RestConfig::connect_wait).
    pub fn peer(&self) -> Peer {
        Peer::client(self.link.clone(), self.rest.clone(), self.waiting.clone())
    }

    /// Serves the server's requests with `service` (an axum `Router` works as it is), on
    /// this and every later connection; it replaces any earlier service. Each request
    /// carries a [`ConnectionInfo`] in its extensions. Until a service is set, requests are
    /// answered `501 Not Implemented`: to serve from the first request on, pass the service
    /// to [`connect_serving`](Self::connect_serving) instead. See [`crate::rest`].
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
        self.service.set(service);
    }

    /// Another stream of events, from now on. Every stream ends when the client is done
    /// (closed, or a fatal close code, or the back-off gave up).
    pub fn events(&self) -> EventStream<ClientEvent> {
        self.events.subscribe()
    }

    /// Closes with 1000 and stops reconnecting. Requests in flight (both ways) may finish
    /// first, for at most [`RestConfig::drain_timeout`]; then waits (at most a few
    /// seconds) for the closing handshake.
    pub async fn close(&self) {
        self.close_with(CloseCode::NORMAL, "client closed").await;
    }

    /// Closes with `code` and `reason` and stops reconnecting.
    pub async fn close_with(&self, code: CloseCode, reason: &str) {
        // A full queue means closes are already pending: the first of them wins.
        let _ = self
            .commands
            .send(Command::Close(Box::new((code, reason.to_owned()))));
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut task) = task {
            let limit = crate::transport::closing::CLOSE_TIMEOUT + Duration::from_secs(1);
            if tokio::time::timeout(limit, &mut task).await.is_err() {
                task.abort();
            }
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(task) = self.task.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
    }
}

/// Where to dial.
#[derive(Clone)]
struct Target {
    /// The URL; the upgrade request is built from it for each dial (kept, it was 0.7 KiB
    /// of every client: issue 11 goal 5).
    uri: http::Uri,
    host: String,
    port: u16,
    tls: Option<(
        tokio_rustls::TlsConnector,
        rustls_pki_types::ServerName<'static>,
    )>,
}

impl Target {
    fn parse(url: &str, config: &ClientConfig) -> Result<Self, ClientError> {
        let request = url
            .into_client_request()
            .map_err(|e| ClientError::InvalidUrl(format!("{url}: {e}")))?;
        let uri = request.uri().clone();
        let secure = match uri.scheme_str() {
            Some("ws") => false,
            Some("wss") => true,
            _ => {
                return Err(ClientError::InvalidUrl(format!(
                    "{url}: expected ws:// or wss://"
                )))
            }
        };
        let host = uri
            .host()
            .ok_or_else(|| ClientError::InvalidUrl(format!("{url}: no host")))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
        let tls = if secure {
            let tls = config
                .tls
                .clone()
                .ok_or_else(|| ClientError::Tls("wss:// needs ClientConfig::tls".into()))?;
            let name = rustls_pki_types::ServerName::try_from(host.clone())
                .map_err(|e| ClientError::Tls(format!("server name {host}: {e}")))?;
            Some((tokio_rustls::TlsConnector::from(tls), name))
        } else {
            None
        };
        Ok(Target {
            uri,
            host,
            port,
            tls,
        })
    }

    async fn dial(&self, config: &ClientConfig) -> Result<Box<ClientStream>, ClientError> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| ClientError::Connect(format!("{}:{}: {e}", self.host, self.port)))?;
        let _ = tcp.set_nodelay(true);
        let ws_config = link::ws_config(&config.connection);
        // spec/protocol.md §2.1: the upgrade fails when the server selects no subprotocol
        // or another one (RFC 6455 §4.1), before any frame. The stream is handed to the
        // upgrade as what it is (hyper boxes it once, in its `Upgraded`).
        let upgraded = match &self.tls {
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| ClientError::Tls(e.to_string()))?;
                client_upgrade::connect(tls, &self.uri, link::SUBPROTOCOL, ws_config).await
            }
            None => client_upgrade::connect(tcp, &self.uri, link::SUBPROTOCOL, ws_config).await,
        };
        // The WebSocket comes boxed: the result of the dial is a local of the client task
        // while its session runs; boxed, it is a pointer there, not ≈ 300 bytes of every
        // client (issue 11 goal 5).
        upgraded.map(Box::new).map_err(|e| match e {
            UpgradeError::Subprotocol => ClientError::Subprotocol,
            UpgradeError::Refused {
                status: http::StatusCode::TOO_MANY_REQUESTS,
                retry_after,
            } => ClientError::TooManyRequests {
                retry_after: retry_after.and_then(|v| parse_retry_after(v.as_bytes())),
            },
            e => ClientError::Connect(e.to_string()),
        })
    }
}

/// How one session ended.
struct SessionEnd {
    /// The close code that decides about reconnecting (`None`: transport lost).
    code: Option<CloseCode>,
    /// The embedder closed: do not reconnect.
    local: bool,
    /// The connection failed (rather than closed in an orderly way).
    failed: bool,
}

struct Runner {
    target: Target,
    config: ClientConfig,
    events: Publisher<ClientEvent>,
    commands: queue::Receiver<Command>,
    current: CurrentId,
    ticket: Option<Resume>,
    /// Where callers find the current connection.
    link: ClientLinkOwner,
    service: SharedService,
    /// Sessions started, to tell a caller's connection from the next one.
    /// `config.rest`, shared with the client's peers.
    rest: Arc<RestConfig>,
    sessions: u64,
}

/// The id of the established connection, for [`Client::connection_id`]: a shared cell,
/// not a `watch` channel, since nobody waits for it to change (a `watch` channel was
/// 0.35 KiB of every client; issue 11 goal 5).
type CurrentId = Arc<Mutex<Option<Uuid>>>;

impl Runner {
    fn set_current(&self, id: Option<Uuid>) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = id;
    }

    async fn run(mut self) {
        let mut backoff = Backoff::new(self.config.backoff.clone());
        loop {
            tracing::debug!(resume = self.ticket.is_some(), "dialing");
            let timeout = self.config.connect_timeout;
            // Boxed: the dial (TCP, TLS, the HTTP upgrade) is a large future that lives only
            // until the WebSocket is open; inline, the client task would keep room for it
            // for as long as the connection is up (issue 11 goal 5).
            let dial = Box::pin(self.target.dial(&self.config));
            let dialed = tokio::select! {
                dialed = tokio::time::timeout(timeout, dial) => dialed,
                cmd = self.commands.recv() => {
                    tracing::info!(?cmd, "closed while connecting");
                    return self.closed_while_idle(cmd);
                }
            };
            let end = match dialed {
                Ok(Ok(ws)) => {
                    let session = std::pin::pin!(self.session(ws, &mut backoff));
                    link::counted(session).await
                }
                Ok(Err(error)) => {
                    tracing::info!(%error, "connect failed");
                    if let ClientError::TooManyRequests {
                        retry_after: Some(wait),
                    } = error
                    {
                        // spec/protocol.md §10.8 [10.8-5]: not before Retry-After.
                        backoff.handle_retry_after(wait);
                    }
                    let code = error.close_code();
                    self.events
                        .publish(ClientEvent::Failure { id: None, error });
                    SessionEnd {
                        code,
                        local: false,
                        failed: true,
                    }
                }
                Err(_) => {
                    tracing::info!("connect timed out");
                    self.events.publish(ClientEvent::Failure {
                        id: None,
                        error: ClientError::ConnectTimeout(timeout),
                    });
                    SessionEnd {
                        code: None,
                        local: false,
                        failed: true,
                    }
                }
            };
            if end.local || !self.config.reconnect {
                return;
            }
            let policy = RetryPolicy::for_close_code(end.code);
            if policy == RetryPolicy::Fatal {
                tracing::info!(code = ?end.code, "fatal close code: not reconnecting");
                return;
            }
            // spec/protocol.md §9.5: the longest delay after 4007, capped (like every
            // delay) so that a resumable session is not lost to our own wait.
            let events = &self.events;
            let waited = reconnect::wait(
                &mut backoff,
                policy,
                self.commands.recv(),
                |attempt, delay| {
                    tracing::info!(attempt, ?delay, "reconnecting");
                    events.publish(ClientEvent::Reconnecting { attempt, delay });
                },
            )
            .await;
            match waited {
                Wait::Elapsed => {}
                Wait::GaveUp => {
                    tracing::info!("back-off exhausted: giving up");
                    self.events.publish(ClientEvent::Failure {
                        id: None,
                        error: ClientError::GaveUp,
                    });
                    return;
                }
                Wait::Interrupted(cmd) => return self.closed_while_idle(cmd),
            }
        }
    }

    /// `close()` while no connection is up (dialing, or waiting to reconnect): there is
    /// no peer to tell, but the application still hears that the client ended, once.
    fn closed_while_idle(&self, cmd: Option<Command>) {
        if let Some(Command::Close(close)) = cmd {
            let (code, reason) = *close;
            self.events.publish(ClientEvent::Closed {
                id: None,
                code,
                reason,
                initiator: Initiator::Local,
            });
        }
    }

    /// One connection's run loop. The WebSocket comes boxed and stays in its box: an async
    /// fn keeps room for its arguments beside the locals they are moved into, so by value
    /// it would take twice its size in the client task for as long as the connection is
    /// up, and moved out of the box (`*ws`) it took its size in the task while the box's
    /// memory stayed allocated until the session ended (issue 11 goal 5).
    async fn session(&mut self, mut ws: Box<ClientStream>, backoff: &mut Backoff) -> SessionEnd {
        let ws = &mut *ws;
        // Received frames' allocations are reused within what the peer may have in flight.
        let window = self.config.connection.streams().initial_connection_window;
        ws.get_mut().set_pool_limit(window);
        let now = Instant::now();
        let mut conn = match Connection::client(
            self.config.connection.clone(),
            self.config.metadata.clone(),
            self.ticket,
            now,
        ) {
            Ok(conn) => conn,
            Err(e) => {
                // Checked in `connect`; unreachable unless the config changed.
                self.events.publish(ClientEvent::Failure {
                    id: None,
                    error: e.into(),
                });
                return SessionEnd {
                    code: None,
                    local: true,
                    failed: true,
                };
            }
        };
        let mut id = None;
        let mut end = SessionEnd {
            code: None,
            local: false,
            failed: false,
        };
        self.sessions += 1;
        let mut driver = Driver::new(self.rest.clone(), self.service.clone());
        if let Some(m) = &self.config.metrics {
            driver.set_metrics(m.clone());
        }
        driver.attach(&mut conn);
        let mut meter = crate::metrics::Meter::new(self.config.metrics.clone());
        let mut lost = false;
        let mut violated = false;
        let mut input = None;
        let mut timer = std::pin::pin!(link::timer());
        loop {
            // One turn: this input, then every input that is ready without waiting (bounded,
            // see `link::Turn`), each with its events handled, then one write burst for all.
            // One clock read per input (and one per write burst that leaves events): the
            // handlers of its events use it.
            let mut now = Instant::now();
            let mut turn = link::Turn::new(&mut driver);
            loop {
                match input.take() {
                    None => {} // the HELLO is already queued
                    Some(Input::Message(msg)) => {
                        driver.sync_serving(&mut conn); // a service attached since
                        conn.handle_message(msg, now)
                    }
                    Some(Input::Timeout) => conn.handle_timeout(now),
                    Some(Input::TransportLost(error)) => {
                        tracing::debug!(?error, "transport lost");
                        lost = true;
                        conn.handle_transport_lost(now);
                    }
                    Some(Input::Violation(kind, error)) => {
                        tracing::debug!(%error, "WebSocket violation");
                        violated = true;
                        conn.handle_websocket_error(kind, now);
                    }
                    Some(Input::Command(Command::Close(close))) => {
                        let (code, reason) = *close;
                        end.local = true;
                        // Callers wait for the next connection (there is none: they fail).
                        self.link.0.set(None);
                        // spec/protocol.md §10.7: the machine drains what is in flight first.
                        let drain = self.config.rest.drain_timeout;
                        conn.close_gracefully(code, &reason, drain, now);
                    }
                    Some(Input::Stream(cmd)) => {
                        link::on_stream_commands(&mut driver, &mut conn, cmd, now);
                    }
                }
                while let Some(event) = conn.poll_event() {
                    meter.on_event(&event);
                    match event {
                        // The stream layer's events use this input's clock read.
                        Event::Stream(event) => driver.on_event(&mut conn, event, now),
                        event => {
                            self.on_event(&mut conn, &mut driver, event, &mut id, &mut end, backoff)
                        }
                    }
                }
                if conn.is_closed() || lost || violated {
                    break;
                }
                input = turn.next(ws, &mut driver).await;
                if input.is_none() {
                    break;
                }
                now = Instant::now();
            }
            loop {
                // Events raised outside an input (by a write burst: a stream writable again,
                // the transport lost) get a clock read of their own, taken only when there
                // are some.
                if conn.has_events() {
                    now = Instant::now();
                    while let Some(event) = conn.poll_event() {
                        meter.on_event(&event);
                        match event {
                            Event::Stream(event) => driver.on_event(&mut conn, event, now),
                            event => self.on_event(
                                &mut conn,
                                &mut driver,
                                event,
                                &mut id,
                                &mut end,
                                backoff,
                            ),
                        }
                    }
                }
                // Response heads held for their bodies go to their callers before the write.
                driver.end_turn();
                let again =
                    link::write_step(ws, &mut conn, self.config.write_timeout, &mut lost).await;
                meter.update(&mut conn);
                if !again {
                    break;
                }
            }
            if conn.is_closed() {
                break;
            }
            let timer = timer.as_mut();
            let commands = &mut self.commands;
            input = Some(link::next_input(ws, &conn, commands, &mut driver, timer).await);
        }
        // Callers wait for the next connection from now on; what this one still holds is
        // answered (requests never sent go back to their callers, to be sent again).
        self.link.0.set(None);
        driver.finish();
        link::finish(ws, Ending::of(lost, end.failed, violated)).await;
        if id.is_some() {
            backoff.handle_disconnected(Instant::now());
        }
        // spec/protocol.md §9.2: resumed only after an end the client retries after; an
        // orderly close (1001 from a server that shuts down, say) starts a new session.
        self.ticket = conn.resume_ticket();
        if self.ticket.is_some() {
            // spec/protocol.md §9.5: the window runs from about now on the server.
            backoff.handle_resumable(Instant::now(), conn.resume_window());
        }
        self.set_current(None);
        end
    }

    fn on_event(
        &mut self,
        conn: &mut Connection,
        driver: &mut Driver,
        event: Event,
        id: &mut Option<Uuid>,
        end: &mut SessionEnd,
        backoff: &mut Backoff,
    ) {
        match event {
            Event::Established { id: new, resumed } => {
                tracing::Span::current().record("id", tracing::field::display(new));
                tracing::info!(id = %new, resumed, "established");
                *id = Some(new);
                self.ticket = conn.resume_ticket();
                backoff.handle_connected(Instant::now());
                self.set_current(Some(new));
                driver.set_info(ConnectionInfo {
                    id: new,
                    side: Side::Client,
                    metadata: self.config.metadata.clone(),
                    remote_addr: None,
                });
                self.link.0.set(Some(LinkHandle {
                    id: new,
                    serial: self.sessions,
                    commands: driver.sender(),
                }));
                let handshake = Handshake {
                    version: conn.version(),
                    heartbeat: conn.heartbeat(),
                    resume_window: conn.resume_window(),
                    server_settings: *conn.peer_settings(),
                };
                self.events.publish(if resumed {
                    ClientEvent::Resumed { id: new, handshake }
                } else {
                    ClientEvent::Connected { id: new, handshake }
                });
            }
            Event::PongReceived { rtt: Some(rtt), .. } => {
                tracing::trace!(?rtt, "heartbeat");
                self.events.publish(ClientEvent::Rtt {
                    rtt,
                    smoothed: conn.rtt(),
                });
            }
            Event::PongReceived { .. } | Event::PingReceived { .. } => {}
            Event::Stream(event) => driver.on_event(conn, event, Instant::now()),
            // This side sent GOAWAY: requests waiting for a stream go to the next connection.
            Event::Draining => driver.going_away(),
            Event::Closed {
                code,
                reason,
                initiator,
            } => {
                tracing::info!(%code, %reason, ?initiator, "closed");
                end.code = Some(code);
                self.events.publish(ClientEvent::Closed {
                    id: *id,
                    code,
                    reason,
                    initiator,
                });
            }
            Event::Failure { error } => {
                tracing::info!(%error, "failed");
                end.code = error.close_code();
                // A peer that sent a close frame is alive: let tungstenite echo it.
                end.failed = error.initiator() == Initiator::Local;
                self.events.publish(ClientEvent::Failure {
                    id: *id,
                    error: error.into(),
                });
            }
            other => tracing::debug!(event = ?other, "unhandled event"),
        }
    }
}

#[cfg(test)]
mod task_size_tests {
    use super::*;

    fn future_size<F: FnOnce(Runner) -> Fut, Fut>(_: &F) -> usize {
        std::mem::size_of::<Fut>()
    }

    /// Issue 11 goal 5: the client task's future is what an idle client costs beyond its
    /// buffers. Its once-per-connection parts (the dial, the closing handshake) and the
    /// write burst are boxed, and so is the dialed WebSocket; inline they made it 8,344
    /// bytes (debug build). 3,360 bytes now: the session keeps the dialed WebSocket in its
    /// box (3,728 when it moved it out, the box's memory staying allocated beside it; that
    /// size held hyper's `Upgraded` and the read-ahead inline, 80 bytes that used to be
    /// on the heap). 4,664 with the write burst inline and the dialed WebSocket by value
    /// (3,872 with only the burst boxed). 3,376 since the heartbeat keeps its side's probe
    /// delay (spec/protocol.md §8.2: a `Duration` in the machine, which the task holds).
    /// 3,408 since a loop turn batches its inputs (`conn::Turn`, held across the wait for
    /// the next input, and the driver's count of answers outstanding). 3,416 since receive
    /// windows grow (spec/protocol.md §10.3.1: a pointer to the growth state, which exists
    /// only once the connection window was granted again). 3,424 since reads of the
    /// WebSocket that would find nothing are skipped (`link::counted`, as on the server).
    #[test]
    fn the_client_task_stays_small() {
        let size = future_size(&Runner::run);
        assert!(size <= 3424, "client task future: {size} bytes");
    }
}
