//! Request/response over a JSON WebSocket protocol with request ids (the pattern of the
//! gowsclient README): [`RequestClient::request`] adds a generated `reqId` to a JSON object,
//! sends it and waits for the message carrying the same `reqId`; every other message
//! (publications, answers nobody waits for any more) goes to the application's [`Handler`].
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use tether_tokio::compat::engine::{EngineConnection, Control, EngineConfig, Handler, Message};
//! use tether_tokio::compat::request::RequestClient;
//!
//! struct Publications;
//! impl Handler for Publications {
//!     fn on_message(&mut self, _: &EngineConnection, message: Message) -> Control {
//!         println!("publication: {message}");
//!         Control::Continue
//!     }
//! }
//!
//! let client = RequestClient::start(EngineConfig::new("ws://127.0.0.1:8080/"), Publications).await?;
//! let answer = client
//!     .request(&serde_json::json!({"type": "echo_request", "echo": "hi"}), Duration::from_secs(5))
//!     .await?;
//! assert_eq!(answer["data"]["echo"], "hi");
//! # Ok(()) }
//! ```

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use crate::compat::engine::{
    CloseInfo, Control, Engine, EngineConfig, EngineConnection, EngineError, Handler, Message,
    SendError, WsError,
};

/// The JSON field that carries the request id.
pub const REQ_ID_FIELD: &str = "reqId";

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestClientError {
    /// The request does not serialize to a JSON object (a `reqId` cannot be added).
    #[error("request must serialize to a JSON object")]
    NotAnObject,
    /// The request did not serialize.
    #[error("request did not serialize: {0}")]
    Serialize(#[from] serde_json::Error),
    /// The request could not be queued.
    #[error("send failed: {0}")]
    Send(#[from] SendError),
    /// No answer within the timeout.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The connection ended before the answer came.
    #[error("connection lost before the response")]
    Disconnected,
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Value>>>>;

/// An [`Engine`] with request/response matching by `reqId`.
#[derive(Debug)]
pub struct RequestClient {
    engine: Engine,
    pending: Pending,
    next_id: AtomicU64,
}

impl RequestClient {
    /// Starts an engine whose unmatched messages go to `handler`.
    pub async fn start<H: Handler>(config: EngineConfig, handler: H) -> Result<Self, EngineError> {
        let pending = Pending::default();
        let router = Router {
            inner: handler,
            pending: pending.clone(),
        };
        let engine = Engine::start(config, router).await?;
        Ok(Self {
            engine,
            pending,
            next_id: AtomicU64::new(1),
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The send handle (for messages that expect no answer).
    pub fn connection(&self) -> EngineConnection {
        self.engine.connection()
    }

    /// Sends `request` with a fresh `reqId` and returns the message that carries it back.
    pub async fn request<T: Serialize>(
        &self,
        request: &T,
        timeout: Duration,
    ) -> Result<Value, RequestClientError> {
        let Value::Object(mut object) = serde_json::to_value(request)? else {
            return Err(RequestClientError::NotAnObject);
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed).to_string();
        object.insert(REQ_ID_FIELD.to_owned(), Value::String(id.clone()));
        let text = serde_json::to_string(&object)?;
        let (tx, rx) = oneshot::channel();
        self.lock().insert(id.clone(), tx);
        let _forget = Forget {
            pending: &self.pending,
            id: &id,
        };
        self.engine.connection().send(Message::text(text))?;
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(RequestClientError::Disconnected),
            Err(_) => Err(RequestClientError::Timeout(timeout)),
        }
    }

    /// Like [`request`](Self::request), deserializing the answer into `R`.
    pub async fn request_as<T: Serialize, R: for<'de> Deserialize<'de>>(
        &self,
        request: &T,
        timeout: Duration,
    ) -> Result<R, RequestClientError> {
        let answer = self.request(request, timeout).await?;
        Ok(serde_json::from_value(answer)?)
    }

    /// Number of requests waiting for an answer.
    pub fn pending(&self) -> usize {
        self.lock().len()
    }

    /// Stops the engine (see [`Engine::stop`]).
    pub async fn stop(self, timeout: Duration) -> Result<(), EngineError> {
        self.engine.stop(timeout).await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Value>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Removes a request's slot however its wait ends (answer, timeout, cancellation).
struct Forget<'a> {
    pending: &'a Pending,
    id: &'a str,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        if let Ok(mut map) = self.pending.lock() {
            map.remove(self.id);
        }
    }
}

/// Only the id, borrowed: matching does not build a full JSON tree of every publication.
#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(rename = "reqId", borrow, default)]
    req_id: Option<Cow<'a, str>>,
}

struct Router<H> {
    inner: H,
    pending: Pending,
}

impl<H> Router<H> {
    /// The waiter for this message, if it answers a pending request.
    fn waiter(&self, bytes: &[u8]) -> Option<oneshot::Sender<Value>> {
        let probe: Probe<'_> = serde_json::from_slice(bytes).ok()?;
        let id = probe.req_id?;
        self.pending.lock().ok()?.remove(id.as_ref())
    }

    fn fail_all(&self) {
        if let Ok(mut map) = self.pending.lock() {
            map.clear(); // dropping the senders wakes the waiters with Disconnected
        }
    }
}

impl<H: Handler> Handler for Router<H> {
    fn on_open(&mut self, conn: &EngineConnection, restarting: bool) -> Result<(), String> {
        self.inner.on_open(conn, restarting)
    }

    fn on_message(&mut self, conn: &EngineConnection, message: Message) -> Control {
        let bytes: &[u8] = match &message {
            Message::Text(t) => t.as_bytes(),
            Message::Binary(b) => b,
            _ => &[],
        };
        if let Some(waiter) = self.waiter(bytes) {
            if let Ok(value) = serde_json::from_slice::<Value>(bytes) {
                let _ = waiter.send(value);
                return Control::Continue;
            }
        }
        self.inner.on_message(conn, message)
    }

    fn on_read_error(&mut self, conn: &EngineConnection, error: &WsError) -> Control {
        self.inner.on_read_error(conn, error)
    }

    fn on_close(&mut self, conn: &EngineConnection, info: &CloseInfo) -> Option<CloseFrame> {
        self.fail_all();
        self.inner.on_close(conn, info)
    }

    fn on_close_error(&mut self, error: &WsError) {
        self.inner.on_close_error(error)
    }

    fn on_restart_error(&mut self, error: &EngineError, attempt: u32) -> Control {
        self.inner.on_restart_error(error, attempt)
    }
}
