//! Channel bindings for server-side WebSocket handlers (what macaron sockets offers).
//!
//! A [`BindingServer`] accepts connections (GET only: 405 otherwise; origin checked: 403), and
//! hands each handler a [`Binding`]: a bounded receive channel, a bounded send channel, typed by a
//! [`Codec`] ([`Json`], [`Text`], [`Binary`] or [`Raw`]), a [`CloseHandle`] to disconnect with a
//! close code and to learn how the connection ended, and the [`RequestInfo`] of the upgrade.
//! A driver task per connection pings every `ping_period`, drops a peer silent for `pong_wait`,
//! bounds every write by `write_timeout`, closes with 1009 a message over
//! `max_message_size` and with 1008 a client that sends more than `max_pings_per_window` pings
//! per 10 s. Bytes being written toward clients are bounded per connection
//! (`max_buffered_bytes` per write burst), and together with received messages the handler
//! has not taken yet and the bytes of messages still being read, across the server
//! (`buffer_budget`): a message that finds no room in the budget closes its connection with
//! 1013, a connection reading a message stops reading while the budget is full and is
//! closed with 1013 after `budget_wait` without room; a client that does not read is
//! dropped when its write times out (a close frame cannot overtake the bytes it does not
//! read).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use tether_tokio::compat::bindings::{Binding, BindingConfig, BindingServer, Json};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Chat { text: String }
//!
//! let config = BindingConfig::builder().build()?;
//! let server = BindingServer::bind::<Json<Chat>, _, _>(
//!     "127.0.0.1:0".parse()?,
//!     config,
//!     |mut binding: Binding<Json<Chat>>| async move {
//!         while let Some(msg) = binding.receiver.recv().await {
//!             if binding.sender.send(msg).await.is_err() {
//!                 break;
//!             }
//!         }
//!     },
//! )
//! .await?;
//! println!("listening on {}", server.local_addr());
//! # Ok(()) }
//! ```

mod codec;
mod config;
mod driver;
mod metered;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Error as WsError;

pub use codec::{Binary, BindingData, Codec, Json, Raw, Text};
pub use config::{
    BindingConfig, BindingConfigBuilder, BindingsConfigError, DEFAULT_BUDGET_WAIT,
    DEFAULT_BUFFER_BUDGET, DEFAULT_MAX_BUFFERED_BYTES, MAX_BUFFER_BUDGET,
};

use crate::transport::acceptor::{LiveGuard, Running, StopError};
use crate::transport::upgrade::{self, AcceptPolicy, RequestInfo};

/// One connection, as channels.
#[derive(Debug)]
pub struct Binding<C: Codec> {
    /// Items received from the client; ends (`None`) when the connection ends.
    pub receiver: mpsc::Receiver<C::In>,
    /// Items to send to the client; fails once the connection has ended.
    pub sender: mpsc::Sender<C::Out>,
    /// Disconnect, or learn why the connection ended.
    pub handle: CloseHandle,
    /// The upgrade request.
    pub request: RequestInfo,
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Disconnect {
    /// The client closed (with its close frame, if any) or went away.
    Peer(Option<CloseFrame>),
    /// The server closed with this frame ([`CloseHandle::close`], server stop, or every
    /// channel and handle of the binding dropped: 1000).
    Local(CloseFrame),
    /// An error ended it (the close frame sent, if any, is in the error).
    Error(BindingError),
}

/// The errors that end a binding (macaron's error channel).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BindingError {
    /// Nothing (no message, no pong) from the client for the pong wait.
    #[error("no message or pong from the client for {0:?}")]
    PongTimeout(Duration),
    /// A write did not complete within the write timeout.
    #[error("write timed out after {0:?}")]
    WriteTimeout(Duration),
    /// A message exceeded the max message size; closed with 1009.
    #[error("message too big; closed with 1009")]
    TooBig,
    /// Invalid UTF-8 in a text message; closed with 1007.
    #[error("invalid UTF-8 in a text message; closed with 1007")]
    InvalidUtf8,
    /// The client broke RFC 6455; closed with 1002.
    #[error("protocol violation: {0}; closed with 1002")]
    Protocol(String),
    /// A message did not decode; closed with the codec's frame.
    #[error("message did not decode; closed with {}", u16::from(.0.code))]
    Decode(CloseFrame),
    /// An item did not encode; closed with the codec's frame.
    #[error("item did not encode; closed with {}", u16::from(.0.code))]
    Encode(CloseFrame),
    /// The server's buffer budget had no room for a complete message, or, for the budget
    /// wait, for the next bytes of a message being read; closed with 1013 (try again later).
    #[error("buffer budget exhausted; closed with 1013")]
    Overloaded,
    /// The client sent more pings per 10 s than allowed; closed with 1008.
    #[error("more than {0} pings in 10 s; closed with 1008")]
    PingFlood(u32),
    /// Transport failure.
    #[error("connection failed: {0}")]
    Io(String),
}

impl BindingError {
    fn from_ws(e: WsError, sent: Option<CloseFrame>) -> Self {
        match (e, sent.map(|f| f.code)) {
            (_, Some(CloseCode::Size)) => Self::TooBig,
            (_, Some(CloseCode::Invalid)) => Self::InvalidUtf8,
            (WsError::Protocol(p), _) => Self::Protocol(p.to_string()),
            (other, _) => Self::Io(other.to_string()),
        }
    }
}

/// Disconnects a binding (macaron's disconnect channel) and reports how it ended (its done and
/// error channels). Cheap to clone.
#[derive(Debug, Clone)]
pub struct CloseHandle {
    close: mpsc::Sender<CloseFrame>,
    done: watch::Receiver<Option<Disconnect>>,
}

impl CloseHandle {
    /// Closes the connection with `code` (RFC 6455 §7.4) and `reason` (at most 123 bytes are
    /// sent). Does nothing if the connection already ended.
    pub fn close(&self, code: u16, reason: &str) {
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason[..end].into(),
        };
        let _ = self.close.try_send(frame);
    }

    /// Waits until the connection has ended and says how.
    pub async fn closed(&self) -> Disconnect {
        let mut done = self.done.clone();
        loop {
            if let Some(d) = done.borrow_and_update().clone() {
                return d;
            }
            if done.changed().await.is_err() {
                // The driver ended without reporting: only if its task was aborted.
                return Disconnect::Error(BindingError::Io("driver aborted".into()));
            }
        }
    }

    /// How the connection ended, if it has.
    pub fn outcome(&self) -> Option<Disconnect> {
        self.done.borrow().clone()
    }
}

/// A WebSocket server whose handler gets a [`Binding`] per connection.
#[derive(Debug)]
pub struct BindingServer {
    running: Running,
    budget: Arc<Semaphore>,
    budget_total: usize,
}

impl BindingServer {
    /// Binds `addr` and serves every connection with `handler`.
    pub async fn bind<C, F, Fut>(
        addr: SocketAddr,
        config: BindingConfig,
        handler: F,
    ) -> io::Result<Self>
    where
        C: Codec,
        F: Fn(Binding<C>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind(addr).await?;
        Self::from_listener(listener, config, handler)
    }

    /// Serves an already bound listener.
    pub fn from_listener<C, F, Fut>(
        listener: TcpListener,
        config: BindingConfig,
        handler: F,
    ) -> io::Result<Self>
    where
        C: Codec,
        F: Fn(Binding<C>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let policy = Arc::new(AcceptPolicy {
            origins: config.allowed_origins.clone(),
            handshake_timeout: config.handshake_timeout,
            ws_config: crate::transport::ws_config(config.max_message_size),
            subprotocol: None,
        });
        // One budget for every connection of this server: bytes being written to clients,
        // received messages not yet taken, bytes of messages being read.
        let budget = Arc::new(Semaphore::new(config.buffer_budget));
        let budget_total = config.buffer_budget;
        let server_budget = budget.clone();
        // A connection reads at most a message of the max size with its frame headers (at
        // least 6 bytes per fragment: twice the payload for fragments of 6 bytes or more)
        // and one read-ahead before it delivers something.
        let read_cap = config
            .max_message_size
            .saturating_mul(2)
            .saturating_add(crate::transport::read_ahead::CHUNK);
        let config = Arc::new(config);
        let handler = Arc::new(handler);
        let running = Running::spawn(listener, move |stream, peer, commands, live| {
            let policy = policy.clone();
            let config = config.clone();
            let handler = handler.clone();
            let budget = budget.clone();
            async move {
                let metered =
                    |io| metered::Metered::new(io, budget.clone(), read_cap, config.budget_wait);
                let accepted = upgrade::accept_with(stream, peer, &policy, metered).await;
                let (ws, request) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::debug!(%peer, "binding handshake failed: {e}");
                        return;
                    }
                };
                let _live = LiveGuard::new(&live);
                let (in_tx, receiver) = mpsc::channel(config.recv_buffer.max(1));
                let (sender, out_rx) = mpsc::channel(config.send_buffer.max(1));
                let (close, close_rx) = mpsc::channel(1);
                let (done, done_rx) = watch::channel(None);
                let driver = driver::Driver::<C> {
                    ws,
                    config: (*config).clone(),
                    in_tx,
                    out_rx,
                    close_rx,
                    done,
                    server: Some(commands),
                    budget,
                };
                let binding = Binding {
                    receiver,
                    sender,
                    handle: CloseHandle {
                        close,
                        done: done_rx,
                    },
                    request,
                };
                tokio::join!(driver.run(), handler(binding));
            }
        })?;
        Ok(Self {
            running,
            budget: server_budget,
            budget_total,
        })
    }

    /// Bytes of the buffer budget in use now, over every connection: messages being
    /// written, received messages the handler has not taken, bytes of messages being read.
    /// Never more than [`BindingConfig::buffer_budget`].
    pub fn buffer_budget_in_use(&self) -> usize {
        self.budget_total
            .saturating_sub(self.budget.available_permits())
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.running.local_addr()
    }

    /// Number of open WebSocket connections.
    pub fn connection_count(&self) -> usize {
        self.running.connection_count()
    }

    /// Closes every current connection with `code` and `reason`; keeps accepting.
    pub fn close_client_connections(&self, code: u16, reason: &str) {
        self.running.close_clients(code, reason);
    }

    /// Stops accepting, closes every connection with 1001 "server shutdown" and waits up to
    /// `timeout` for connections and handlers to finish.
    pub async fn shutdown(self, timeout: Duration) -> Result<(), StopError> {
        self.running.stop(1001, "server shutdown", timeout).await
    }
}
