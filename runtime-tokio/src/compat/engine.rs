//! A resilient WebSocket client engine: callbacks, auto-reconnect with jittered back-off.
//!
//! The engine owns one task. It dials, calls [`Handler::on_open`], then feeds every message to
//! [`Handler::on_message`] and writes what the application queued on the [`EngineConnection`] handle
//! (many messages fed, one flush). When the connection ends — the server closed it, a read
//! failed, or the handler asked for a restart — it calls [`Handler::on_close`] and reconnects
//! after a delay from [`tether_proto::backoff::Backoff`], calling [`Handler::on_restart_error`]
//! for every failed attempt, until a connection opens ([`Handler::on_open`] with
//! `restarting = true`), the handler asks to exit, or [`Engine::stop`] is called.
//!
//! ```text
//!  start ──dial+on_open──> open ──message──> on_message ─┬─ Continue ──> open
//!    │ (open_timeout)        │                           ├─ Restart ──┐
//!    ▼ error                 │ server close / read error  └─ Exit ───┐ │
//!  Err(EngineError)          ▼                                      │ │
//!                     on_close ──> (Exit: done) ──> wait backoff <──┘─┘
//!                                                     │  dial fails: on_restart_error(attempt)
//!                                                     ▼
//!                                         dial+on_open(restarting = true) ──> open
//! ```
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use tether_tokio::compat::engine::{EngineConnection, Control, Engine, EngineConfig, Handler, Message};
//!
//! struct Printer;
//! impl Handler for Printer {
//!     fn on_open(&mut self, conn: &EngineConnection, restarting: bool) -> Result<(), String> {
//!         println!("open (restarting: {restarting})");
//!         conn.send(Message::text(r#"{"type":"subscribe_request","topic":"heartbeat"}"#))
//!             .map_err(|e| e.to_string())
//!     }
//!     fn on_message(&mut self, _conn: &EngineConnection, message: Message) -> Control {
//!         println!("{message}");
//!         Control::Continue
//!     }
//! }
//!
//! let engine = Engine::start(EngineConfig::new("ws://127.0.0.1:8080/"), Printer).await?;
//! engine.stop(Duration::from_secs(5)).await?;
//! # Ok(()) }
//! ```

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tether_proto::backoff::{Backoff, BackoffConfig, RetryPolicy};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
pub use tokio_tungstenite::tungstenite::Error as WsError;
pub use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::transport::burst;
use crate::transport::closing;
use crate::transport::reconnect::{self, Wait};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the handler wants the engine to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Control {
    /// Go on (after a failed restart attempt: keep trying).
    Continue,
    /// Close this connection and open a new one (after the back-off delay).
    Restart,
    /// Close the connection and end the engine.
    Exit,
}

/// Who ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseInitiator {
    /// The server sent a close frame.
    Server,
    /// The client: the handler asked to restart or exit, or [`Engine::stop`] was called.
    Client,
    /// A read or write error (the handler's `on_read_error` was called first).
    Error,
}

/// Why [`Handler::on_close`] is called.
#[derive(Debug, Clone)]
pub struct CloseInfo {
    /// Who ended the connection.
    pub initiator: CloseInitiator,
    /// The server's close frame, when it sent one.
    pub frame: Option<CloseFrame>,
}

/// The application's callbacks. They run on the engine's task: keep them short, and hand long
/// work to another task (the [`EngineConnection`] handle is `Clone + Send`).
pub trait Handler: Send + 'static {
    /// A connection is open. `restarting` is false for the first connection of [`Engine::start`]
    /// and true for every reconnection. An error closes the connection: at start,
    /// `start` fails; on a restart, it counts as a failed attempt.
    fn on_open(&mut self, conn: &EngineConnection, restarting: bool) -> Result<(), String> {
        let _ = (conn, restarting);
        Ok(())
    }

    /// A text or binary message arrived.
    fn on_message(&mut self, conn: &EngineConnection, message: Message) -> Control;

    /// Reading failed (the connection is unusable). Default: restart.
    fn on_read_error(&mut self, conn: &EngineConnection, error: &WsError) -> Control {
        let _ = (conn, error);
        Control::Restart
    }

    /// The connection is ending; called exactly once for every opened connection. When the
    /// client ends it, the returned frame is sent (default: 1000 normal closure). When the server
    /// sent a close frame, tungstenite has already echoed its code (RFC 6455 §5.5.1) and the
    /// returned value is ignored.
    fn on_close(&mut self, conn: &EngineConnection, info: &CloseInfo) -> Option<CloseFrame> {
        let _ = (conn, info);
        None
    }

    /// The closing handshake failed.
    fn on_close_error(&mut self, error: &WsError) {
        let _ = error;
    }

    /// Reconnect attempt number `attempt` (1-based since the last stable connection) failed.
    /// [`Control::Exit`] gives up; anything else keeps trying. Also called with
    /// [`EngineError::GaveUp`] when the back-off's limits are reached (the engine then exits).
    fn on_restart_error(&mut self, error: &EngineError, attempt: u32) -> Control {
        let _ = (error, attempt);
        Control::Continue
    }
}

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// Dialing or the WebSocket handshake failed.
    #[error("connect failed: {0}")]
    Connect(#[source] WsError),
    /// Dial + handshake did not complete within the open timeout.
    #[error("open timed out after {0:?}")]
    OpenTimeout(Duration),
    /// The handler's `on_open` refused the connection.
    #[error("on_open failed: {0}")]
    OnOpen(String),
    /// The back-off's `max_attempts` or `max_elapsed` was reached.
    #[error("gave up reconnecting")]
    GaveUp,
    /// The engine did not stop within the stop timeout and was aborted.
    #[error("stop timed out; the engine task was aborted")]
    StopTimeout,
}

/// Why an [`EngineConnection::send`] failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// No connection is open right now (the engine is reconnecting or stopped).
    #[error("not connected")]
    NotConnected,
    /// The send queue is full (see [`EngineConfig::send_buffer`]).
    #[error("send queue full")]
    Full,
}

/// Configuration of an [`Engine`].
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// `ws://` URL to dial (`wss://` needs a TLS feature of tokio-tungstenite, not enabled).
    pub url: String,
    /// Extra headers of the upgrade request (authorization, origin, sub-protocols...).
    pub headers: http::HeaderMap,
    /// Dial + handshake + `on_open` of one attempt (default 10 s).
    pub open_timeout: Duration,
    /// One burst of writes (default 10 s); a timeout restarts the connection.
    pub write_timeout: Duration,
    /// Reconnect delays (default [`BackoffConfig::default`]).
    pub backoff: BackoffConfig,
    /// Reconnect when a connection ends (default true); false makes the engine exit instead.
    pub auto_reconnect: bool,
    /// Largest incoming message (default 16 MiB); larger closes with 1009 and restarts.
    pub max_message_size: usize,
    /// Messages the [`EngineConnection`] queue holds before `send` says [`SendError::Full`]
    /// (default 256, at least 1).
    pub send_buffer: usize,
}

impl EngineConfig {
    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            headers: http::HeaderMap::new(),
            open_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            backoff: BackoffConfig::default(),
            auto_reconnect: true,
            max_message_size: 16 * 1024 * 1024,
            send_buffer: 256,
        }
    }
}

/// Handle to send on the engine's current connection. Cheap to clone; valid across reconnects
/// (sends fail with [`SendError::NotConnected`] between connections).
#[derive(Debug, Clone, Default)]
pub struct EngineConnection {
    tx: Arc<Mutex<Option<mpsc::Sender<Message>>>>,
}

impl EngineConnection {
    /// Queues a message without waiting.
    pub fn send(&self, message: Message) -> Result<(), SendError> {
        let tx = self.sender()?;
        tx.try_send(message).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SendError::Full,
            mpsc::error::TrySendError::Closed(_) => SendError::NotConnected,
        })
    }

    /// Queues a message, waiting for room in the queue.
    pub async fn send_async(&self, message: Message) -> Result<(), SendError> {
        let tx = self.sender()?;
        tx.send(message).await.map_err(|_| SendError::NotConnected)
    }

    /// Queues a text message.
    pub fn send_text(&self, text: impl Into<String>) -> Result<(), SendError> {
        self.send(Message::text(text.into()))
    }

    /// Whether a connection is open.
    pub fn is_connected(&self) -> bool {
        self.sender().is_ok()
    }

    fn sender(&self) -> Result<mpsc::Sender<Message>, SendError> {
        let guard = self.tx.lock().map_err(|_| SendError::NotConnected)?;
        guard.clone().ok_or(SendError::NotConnected)
    }

    fn set(&self, tx: Option<mpsc::Sender<Message>>) {
        if let Ok(mut guard) = self.tx.lock() {
            *guard = tx;
        }
    }
}

/// A running client engine.
#[derive(Debug)]
pub struct Engine {
    conn: EngineConnection,
    stop: mpsc::Sender<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Engine {
    /// Dials `config.url` and calls `on_open(restarting = false)`, all within
    /// `config.open_timeout`, then runs the engine in its own task.
    pub async fn start<H: Handler>(
        config: EngineConfig,
        mut handler: H,
    ) -> Result<Self, EngineError> {
        let conn = EngineConnection::default();
        let (ws, out_rx) = open(&config, &mut handler, &conn, false).await?;
        let (stop, stop_rx) = mpsc::channel(1);
        let mut backoff = Backoff::new(config.backoff.clone());
        backoff.handle_connected(Instant::now());
        let runner = Runner {
            config,
            handler,
            conn: conn.clone(),
            backoff,
            stop: stop_rx,
        };
        let task = tokio::spawn(runner.run(ws, out_rx));
        Ok(Self { conn, stop, task })
    }

    /// The send handle.
    pub fn connection(&self) -> EngineConnection {
        self.conn.clone()
    }

    /// Whether the engine has ended (the handler asked to exit, or it gave up reconnecting).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits until the engine ends by itself.
    pub async fn closed(&mut self) {
        let _ = (&mut self.task).await;
    }

    /// Closes the connection (the handler's `on_close` chooses the frame, default 1000) and ends
    /// the engine, waiting at most `timeout`; past it the task is aborted.
    pub async fn stop(self, timeout: Duration) -> Result<(), EngineError> {
        let (done_tx, done_rx) = oneshot::channel();
        let _ = self.stop.send(done_tx).await;
        let mut task = self.task;
        let waited = tokio::time::timeout(timeout, async {
            let _ = done_rx.await;
            let _ = (&mut task).await;
        })
        .await;
        match waited {
            Ok(()) => Ok(()),
            Err(_) => {
                task.abort();
                Err(EngineError::StopTimeout)
            }
        }
    }
}

async fn open<H: Handler>(
    config: &EngineConfig,
    handler: &mut H,
    conn: &EngineConnection,
    restarting: bool,
) -> Result<(Ws, mpsc::Receiver<Message>), EngineError> {
    let ws_config = crate::transport::ws_config(config.max_message_size);
    let mut request = config
        .url
        .as_str()
        .into_client_request()
        .map_err(EngineError::Connect)?;
    for (name, value) in &config.headers {
        request.headers_mut().append(name, value.clone());
    }
    let dial = tokio_tungstenite::connect_async_with_config(request, Some(ws_config), true);
    let mut ws = match tokio::time::timeout(config.open_timeout, dial).await {
        Err(_) => return Err(EngineError::OpenTimeout(config.open_timeout)),
        Ok(Err(e)) => return Err(EngineError::Connect(e)),
        Ok(Ok((ws, _response))) => ws,
    };
    let (tx, rx) = mpsc::channel(config.send_buffer.max(1));
    conn.set(Some(tx));
    if let Err(e) = handler.on_open(conn, restarting) {
        conn.set(None);
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "client refused the connection".into(),
        };
        closing::close(&mut ws, Some(frame)).await;
        return Err(EngineError::OnOpen(e));
    }
    Ok((ws, rx))
}

/// Why a connection ended, as decided by the handler or the engine.
enum Next {
    Restart,
    Exit,
    Stop(oneshot::Sender<()>),
}

struct Runner<H> {
    config: EngineConfig,
    handler: H,
    conn: EngineConnection,
    backoff: Backoff,
    stop: mpsc::Receiver<oneshot::Sender<()>>,
}

impl<H: Handler> Runner<H> {
    async fn run(mut self, mut ws: Ws, mut out_rx: mpsc::Receiver<Message>) {
        loop {
            let next = self.drive(&mut ws, &mut out_rx).await;
            self.conn.set(None);
            self.backoff.handle_disconnected(Instant::now());
            match next {
                Next::Exit => return,
                Next::Stop(done) => {
                    let _ = done.send(());
                    return;
                }
                Next::Restart if !self.config.auto_reconnect => return,
                Next::Restart => {}
            }
            // Reconnect until a connection opens, the handler exits, or stop is called.
            loop {
                let retry = RetryPolicy::Retry;
                match reconnect::wait(&mut self.backoff, retry, self.stop.recv(), |_, _| {}).await {
                    Wait::Elapsed => {}
                    Wait::GaveUp => {
                        let attempt = self.backoff.attempt();
                        self.handler.on_restart_error(&EngineError::GaveUp, attempt);
                        return;
                    }
                    Wait::Interrupted(done) => {
                        if let Some(done) = done {
                            let _ = done.send(());
                        }
                        return;
                    }
                }
                let attempt = self.backoff.attempt();
                let opened = tokio::select! {
                    opened = open(&self.config, &mut self.handler, &self.conn, true) => opened,
                    done = self.stop.recv() => {
                        if let Some(done) = done {
                            let _ = done.send(());
                        }
                        return;
                    }
                };
                match opened {
                    Ok((new_ws, new_rx)) => {
                        self.backoff.handle_connected(Instant::now());
                        ws = new_ws;
                        out_rx = new_rx;
                        break;
                    }
                    Err(e) => {
                        tracing::debug!("reconnect attempt {attempt} failed: {e}");
                        if self.handler.on_restart_error(&e, attempt) == Control::Exit {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Runs one open connection until it ends; calls `on_close` exactly once.
    async fn drive(&mut self, ws: &mut Ws, out_rx: &mut mpsc::Receiver<Message>) -> Next {
        // The EngineConnection handle holds the sender while the connection is up, so the queue only
        // closes after this function; the flag keeps a closed queue from spinning the loop.
        let mut outbound_open = true;
        loop {
            tokio::select! {
                message = ws.next() => match message {
                    Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                        match self.handler.on_message(&self.conn, m) {
                            Control::Continue => {}
                            Control::Restart => return self.close_by_us(ws, CloseInitiator::Client, Next::Restart).await,
                            Control::Exit => return self.close_by_us(ws, CloseInitiator::Client, Next::Exit).await,
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        let info = CloseInfo { initiator: CloseInitiator::Server, frame: frame.clone() };
                        self.handler.on_close(&self.conn, &info);
                        // tungstenite queued the echo of the close; drive it out.
                        let _ = tokio::time::timeout(closing::CLOSE_TIMEOUT, async {
                            while let Some(Ok(_)) = ws.next().await {}
                        })
                        .await;
                        return Next::Restart;
                    }
                    Some(Ok(_)) => {} // ping/pong are answered by tungstenite
                    Some(Err(e)) => {
                        let next = match self.handler.on_read_error(&self.conn, &e) {
                            Control::Exit => Next::Exit,
                            _ => Next::Restart,
                        };
                        let info = CloseInfo { initiator: CloseInitiator::Error, frame: None };
                        let frame = self.handler.on_close(&self.conn, &info);
                        if let Some(frame) = frame.or_else(|| closing::close_frame_for(&e)) {
                            closing::close(ws, Some(frame)).await;
                        }
                        return next;
                    }
                    None => {
                        let info = CloseInfo { initiator: CloseInitiator::Server, frame: None };
                        self.handler.on_close(&self.conn, &info);
                        return Next::Restart;
                    }
                },
                out = out_rx.recv(), if outbound_open => {
                    let Some(first) = out else {
                        outbound_open = false;
                        continue;
                    };
                    let mut first = Some(first);
                    let next = || first.take().or_else(|| out_rx.try_recv().ok());
                    let error = match burst::write(ws, self.config.write_timeout, next).await {
                        Ok(_) => continue,
                        Err(e) => e.into_ws(),
                    };
                    let next = match self.handler.on_read_error(&self.conn, &error) {
                        Control::Exit => Next::Exit,
                        _ => Next::Restart,
                    };
                    let info = CloseInfo { initiator: CloseInitiator::Error, frame: None };
                    self.handler.on_close(&self.conn, &info);
                    return next;
                }
                done = self.stop.recv() => {
                    let next = match done {
                        Some(done) => Next::Stop(done),
                        None => Next::Exit,
                    };
                    return self.close_by_us(ws, CloseInitiator::Client, next).await;
                }
            }
        }
    }

    async fn close_by_us(&mut self, ws: &mut Ws, initiator: CloseInitiator, next: Next) -> Next {
        self.conn.set(None);
        let info = CloseInfo {
            initiator,
            frame: None,
        };
        let frame = self
            .handler
            .on_close(&self.conn, &info)
            .unwrap_or(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            });
        let handshake = async {
            ws.close(Some(frame)).await?;
            while let Some(m) = ws.next().await {
                m?;
            }
            Ok::<_, WsError>(())
        };
        match tokio::time::timeout(closing::CLOSE_TIMEOUT, handshake).await {
            Ok(Ok(())) | Ok(Err(WsError::ConnectionClosed)) => {}
            Ok(Err(e)) => self.handler.on_close_error(&e),
            Err(_) => self
                .handler
                .on_close_error(&WsError::Io(std::io::ErrorKind::TimedOut.into())),
        }
        next
    }
}
