//! The demo WebSocket server: [`tether_proto::demo`] over real sockets, wire-compatible with the
//! Go demowsserver (spec/demo.md).
//!
//! Every path serves the schema. Each connection is one task that owns a
//! [`DemoSession`] and loops: read a message → feed the session → drain its answers (feed all,
//! flush once) → sleep until the session's next heartbeat or the next message.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use tether_tokio::compat::demo_server::{DemoServer, DemoServerConfig};
//!
//! let server = DemoServer::start(DemoServerConfig::default()).await?;
//! println!("demo server on ws://{}", server.local_addr());
//! // ... later:
//! server.shutdown(Duration::from_secs(5)).await?;
//! # Ok(()) }
//! ```

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::{SinkExt, StreamExt};
use tether_proto::connection::ProbeLimit;
use tether_proto::demo::{DemoConfig, DemoSession, DEFAULT_HEARTBEAT_INTERVAL};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

use crate::transport::acceptor::{Command, LiveGuard, Running, StopError};
use crate::transport::burst::{self, BurstError};
use crate::transport::closing;
use crate::transport::upgrade::{self, AcceptPolicy, AllowedOrigins};

/// Default maximum size of one incoming message: 1 MiB.
pub const DEFAULT_DEMO_MAX_MESSAGE_SIZE: usize = 1024 * 1024;

/// Close code sent to every client when the server shuts down (RFC 6455 "going away").
pub const DEMO_SHUTDOWN_CODE: u16 = 1001;

/// Close reason sent to every client when the server shuts down.
pub const SHUTDOWN_REASON: &str = "server shutdown";

/// Default pong wait: a client from which nothing (no message, no pong) arrives for this long
/// is dropped (macaron sockets' `PongWait`, spec/demo.md §1).
pub const DEFAULT_PONG_WAIT: Duration = Duration::from_secs(60);

/// Default ping period: 8/10 of the pong wait (macaron sockets' `PingPeriod`).
pub const DEFAULT_PING_PERIOD: Duration = Duration::from_secs(48);

/// Default limit on pings a client may send per 10 s (spec/demo.md §1); one more closes the
/// connection with [`PING_FLOOD_CODE`].
pub const DEFAULT_MAX_PINGS: u32 = 1_000;

/// Close code for a client that sends pings faster than allowed: 1008, policy violation.
pub const PING_FLOOD_CODE: u16 = 1008;

/// Configuration of a [`DemoServer`].
#[derive(Debug, Clone)]
pub struct DemoServerConfig {
    /// Address to listen on (default `127.0.0.1:8080`, the Go server's default).
    pub listen: SocketAddr,
    /// Time between heartbeats of a subscribed connection (default 5 s).
    pub heartbeat_interval: Duration,
    /// Largest incoming message; a larger one closes that connection with 1009 (default 1 MiB).
    pub max_message_size: usize,
    /// Time a client has to complete the HTTP upgrade (default 10 s).
    pub handshake_timeout: Duration,
    /// Time one burst of writes may take before the connection is dropped (default 10 s).
    pub write_timeout: Duration,
    /// Longest silence (no message, no pong) before a client is dropped (default 60 s).
    pub pong_wait: Duration,
    /// Time between the server's pings (default 48 s). A value that is zero or not shorter than
    /// `pong_wait` is replaced by 8/10 of `pong_wait`.
    pub ping_period: Duration,
    /// Most pings a client may send per 10 s; one more closes with 1008 (default 1,000).
    pub max_pings_per_window: u32,
}

impl DemoServerConfig {
    /// The ping period in force: `ping_period`, or 8/10 of `pong_wait` when that is not
    /// shorter than the pong wait.
    pub fn effective_ping_period(&self) -> Duration {
        if self.ping_period.is_zero() || self.ping_period >= self.pong_wait {
            (self.pong_wait * 8 / 10).max(Duration::from_millis(1))
        } else {
            self.ping_period
        }
    }
}

impl Default for DemoServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            heartbeat_interval: DEFAULT_HEARTBEAT_INTERVAL,
            max_message_size: DEFAULT_DEMO_MAX_MESSAGE_SIZE,
            handshake_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            pong_wait: DEFAULT_PONG_WAIT,
            ping_period: DEFAULT_PING_PERIOD,
            max_pings_per_window: DEFAULT_MAX_PINGS,
        }
    }
}

/// A running demo server. Dropping it without [`shutdown`](Self::shutdown) stops it abruptly:
/// the accept loop ends and clients get a close frame without code.
#[derive(Debug)]
pub struct DemoServer {
    running: Running,
}

impl DemoServer {
    /// Binds `config.listen` and starts accepting.
    pub async fn start(config: DemoServerConfig) -> io::Result<Self> {
        let listener = TcpListener::bind(config.listen).await?;
        Self::from_listener(listener, config)
    }

    /// Starts accepting on an already bound listener (`config.listen` is ignored).
    pub fn from_listener(listener: TcpListener, config: DemoServerConfig) -> io::Result<Self> {
        let config = Arc::new(config);
        let policy = Arc::new(AcceptPolicy {
            origins: AllowedOrigins::Any,
            handshake_timeout: config.handshake_timeout,
            ws_config: crate::transport::ws_config(config.max_message_size),
            subprotocol: None,
        });
        let running = Running::spawn(listener, move |stream, peer, commands, live| {
            serve(stream, peer, config.clone(), policy.clone(), commands, live)
        })?;
        Ok(Self { running })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.running.local_addr()
    }

    /// Number of open WebSocket connections.
    pub fn connection_count(&self) -> usize {
        self.running.connection_count()
    }

    /// Sends a close frame with `code` and `reason` to every connected client and ends those
    /// connections; the server keeps accepting new ones (the Go `CloseClientConnections`).
    pub fn close_client_connections(&self, code: u16, reason: &str) {
        self.running.close_clients(code, reason);
    }

    /// Stops accepting, closes every client with 1001 "server shutdown", and waits up to
    /// `timeout` for the closing handshakes; connections still open then are dropped.
    pub async fn shutdown(self, timeout: Duration) -> Result<(), StopError> {
        self.running
            .stop(DEMO_SHUTDOWN_CODE, SHUTDOWN_REASON, timeout)
            .await
    }
}

async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    config: Arc<DemoServerConfig>,
    policy: Arc<AcceptPolicy>,
    mut commands: watch::Receiver<Command>,
    live: Arc<AtomicUsize>,
) {
    let mut ws = match upgrade::accept(stream, peer, &policy).await {
        Ok((ws, _info)) => ws,
        Err(e) => {
            tracing::debug!(%peer, "demo handshake failed: {e}");
            return;
        }
    };
    let _live = LiveGuard::new(&live);
    let mut session = DemoSession::new(
        DemoConfig {
            heartbeat_interval: config.heartbeat_interval,
        },
        Instant::now(),
        SystemTime::now(),
    );
    // spec/demo.md §1: a ping every ping period; nothing heard for the pong wait drops the
    // client; a ping flood closes with 1008.
    let ping_period = config.effective_ping_period();
    // A period or wait beyond what the clock can represent is no deadline (never a panic).
    let mut next_ping = Instant::now().checked_add(ping_period);
    let mut read_deadline = Instant::now().checked_add(config.pong_wait);
    let mut pings = ProbeLimit::default();
    loop {
        let now = Instant::now();
        if read_deadline.is_some_and(|d| now >= d) {
            // The client is gone or does not answer: no closing handshake to wait for.
            tracing::debug!(%peer, "demo client silent for {:?}: dropped", config.pong_wait);
            return;
        }
        if next_ping.is_some_and(|d| now >= d) {
            next_ping = now.checked_add(ping_period);
            let sent = tokio::time::timeout(
                config.write_timeout,
                ws.send(Message::Ping(Default::default())),
            )
            .await;
            if !matches!(sent, Ok(Ok(()))) {
                tracing::debug!(%peer, "demo ping failed");
                return;
            }
        }
        let deadline = [session.poll_timeout(), next_ping, read_deadline]
            .into_iter()
            .flatten()
            .min();
        tokio::select! {
            message = ws.next() => {
                let now = Instant::now();
                read_deadline = now.checked_add(config.pong_wait);
                match message {
                    Some(Ok(Message::Text(text))) => session.handle_message(text.as_bytes(), now),
                    Some(Ok(Message::Binary(bytes))) => session.handle_message(&bytes, now),
                    Some(Ok(Message::Ping(_))) if !pings.record(config.max_pings_per_window, now) => {
                        tracing::debug!(%peer, "demo client flooded pings: closed with 1008");
                        let frame = CloseFrame {
                            code: CloseCode::from(PING_FLOOD_CODE),
                            reason: "too many pings".into(),
                        };
                        closing::close_and_discard(&mut ws, frame).await;
                        return;
                    }
                    // Pings are answered by tungstenite; a peer's close is answered by it too, and the
                    // stream then ends.
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::debug!(%peer, "demo read error: {e}");
                        if let Some(frame) = closing::close_frame_for(&e) {
                            closing::close(&mut ws, Some(frame)).await;
                        }
                        return;
                    }
                    None => return,
                }
            },
            () = sleep_until(deadline), if deadline.is_some() => {
                // The session checks the deadline itself: an early wake-up is a no-op.
                session.handle_timeout(Instant::now());
            }
            changed = commands.changed() => {
                let frame = match changed {
                    Ok(()) => commands.borrow_and_update().close_frame(),
                    Err(_) => None,
                };
                closing::close(&mut ws, frame).await;
                return;
            }
        }
        let next = || session.poll_message().map(Message::text);
        match burst::write(&mut ws, config.write_timeout, next).await {
            Ok(_) => {}
            Err(BurstError::Write(e)) => {
                tracing::debug!(%peer, "demo write error: {e}");
                return;
            }
            Err(BurstError::TimedOut) => {
                tracing::debug!(%peer, "demo write timed out");
                return;
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
