//! The gateway's keep-alive connections to its upstream HTTP server, bounded (issue 9
//! item 5): one [`Upstream`](crate::gateway::Upstream) holds at most `max` TCP
//! connections, however many streams and Tether connections send requests through it.
//!
//! A request first takes one of `max` *slots*, waiting for it until its deadline (then it
//! is [`Busy`](PoolError::Busy): 503). With a slot it takes an idle connection, or opens
//! one. Connections are only ever in use (one per slot) or idle, and a connection goes
//! back to the idle list *before* its slot is released (at the end of the response body),
//! so with a slot in hand there is either an idle connection or room for a new one: the
//! number of connections never exceeds `max`, and sequential requests reuse one
//! connection. A response body dropped before its end closes its connection (HTTP/1.1
//! cannot reuse it); so does any error.
//!
//! hyper-util's legacy client pools connections too, but has no bound: while a request
//! waits for an idle connection it also starts a new one and finishes it in the
//! background, so a capped connector would only move the pile-up into background tasks.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::rest::BoxError;

/// The body the pool sends upstream.
pub(crate) type OutBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// Why a request got no response head from the upstream.
#[derive(Debug)]
pub(crate) enum PoolError {
    /// Every connection stayed in use until the request's deadline.
    Busy,
    /// A new connection could not be opened.
    Connect(std::io::Error),
    /// The deadline passed while connecting or waiting for the response head.
    TimedOut,
    /// The upstream failed (the connection broke, a malformed response).
    Failed(hyper::Error),
}

/// A bounded set of HTTP/1.1 connections to one upstream address.
#[derive(Debug)]
pub(crate) struct Pool {
    /// `host:port` to connect to.
    addr: String,
    max: usize,
    slots: Arc<Semaphore>,
    idle: Mutex<VecDeque<http1::SendRequest<OutBody>>>,
    connect_timeout: Duration,
}

impl Pool {
    pub(crate) fn new(addr: String, max: usize, connect_timeout: Duration) -> Arc<Pool> {
        let max = max.max(1);
        Arc::new(Pool {
            addr,
            max,
            slots: Arc::new(Semaphore::new(max)),
            idle: Mutex::new(VecDeque::new()),
            connect_timeout,
        })
    }

    /// The bound on connections.
    pub(crate) fn max_connections(&self) -> usize {
        self.max
    }

    /// Idle connections held now (some may have been closed by the upstream since).
    #[cfg(test)]
    fn idle_len(&self) -> usize {
        self.idle_list().len()
    }

    fn idle_list(&self) -> std::sync::MutexGuard<'_, VecDeque<http1::SendRequest<OutBody>>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `request` on a pooled connection; waits for a slot, a connection and the
    /// response head until `deadline` (none: no limit).
    pub(crate) async fn send(
        self: &Arc<Self>,
        mut request: Request<OutBody>,
        deadline: Option<Instant>,
    ) -> Result<Response<PooledBody>, PoolError> {
        let slot = match deadline {
            Some(at) => tokio::time::timeout_at(at, self.slots.clone().acquire_owned())
                .await
                .map_err(|_| PoolError::Busy)?,
            None => self.slots.clone().acquire_owned().await,
        }
        .map_err(|_| PoolError::Busy)?; // the semaphore is never closed
        loop {
            let (mut sender, reused) = match self.take_idle() {
                Some(sender) => (sender, true),
                None => (within(deadline, self.connect()).await?, false),
            };
            // A reused connection is ready once it has finished the previous exchange.
            if within(deadline, async { Ok(sender.ready().await) })
                .await?
                .is_err()
            {
                continue; // closed by the upstream meanwhile: the next one
            }
            let result = within(deadline, async {
                Ok(sender.try_send_request(request).await)
            })
            .await?;
            match result {
                Ok(response) => {
                    let pool = self.clone();
                    return Ok(response.map(|body| PooledBody {
                        body,
                        held: Some(Held {
                            sender,
                            pool,
                            _slot: slot,
                        }),
                    }));
                }
                Err(mut e) => match e.take_message() {
                    // Not sent: the connection closed as we picked it. Once more.
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(PoolError::Failed(e.into_error())),
                },
            }
        }
    }

    fn take_idle(&self) -> Option<http1::SendRequest<OutBody>> {
        let mut idle = self.idle_list();
        while let Some(sender) = idle.pop_back() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    async fn connect(&self) -> Result<http1::SendRequest<OutBody>, PoolError> {
        let connect = TcpStream::connect(self.addr.as_str());
        let stream = match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(PoolError::Connect(e)),
            Err(_) => {
                return Err(PoolError::Connect(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                )))
            }
        };
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(PoolError::Failed)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}

/// `fut`, cut at `deadline` ([`PoolError::TimedOut`]).
async fn within<T>(
    deadline: Option<Instant>,
    fut: impl std::future::Future<Output = Result<T, PoolError>>,
) -> Result<T, PoolError> {
    match deadline {
        Some(at) => tokio::time::timeout_at(at, fut)
            .await
            .map_err(|_| PoolError::TimedOut)?,
        None => fut.await,
    }
}

/// What a response body holds until its end: the connection and the slot.
#[derive(Debug)]
struct Held {
    sender: http1::SendRequest<OutBody>,
    pool: Arc<Pool>,
    _slot: OwnedSemaphorePermit,
}

/// An upstream response body. At its end (its last frame, or `None`) the connection goes
/// back to the pool and then the slot is released; dropped before its end, both are
/// dropped (the connection closes).
#[derive(Debug)]
pub(crate) struct PooledBody {
    body: Incoming,
    held: Option<Held>,
}

impl PooledBody {
    fn finish(&mut self) {
        if let Some(held) = self.held.take() {
            if !held.sender.is_closed() {
                held.pool.idle_list().push_back(held.sender);
            }
            // `held._slot` is released here, after the connection is back.
        }
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // Dropped at its end (a reader that did not ask past the last byte): reusable.
        if self.body.is_end_stream() {
            self.finish();
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.finish(),
            Poll::Ready(Some(Err(_))) => this.held = None,
            // A reader that knows the length stops at the last byte: that is the end too.
            Poll::Ready(Some(Ok(_))) if this.body.is_end_stream() => this.finish(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Empty};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A keep-alive HTTP/1.1 upstream that counts the connections it accepts and answers
    /// every request `ok` after `gate` lets it (one permit per response).
    async fn upstream(gate: Arc<Semaphore>) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let gate = gate.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    loop {
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                        buf.drain(..end);
                        gate.acquire().await.unwrap().forget();
                        let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if stream.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    fn get() -> Request<OutBody> {
        Request::get("/")
            .header("host", "upstream")
            .body(Empty::new().map_err(|never| match never {}).boxed_unsync())
            .unwrap()
    }

    #[tokio::test]
    async fn sequential_requests_reuse_one_connection() {
        let (addr, accepted) = upstream(Arc::new(Semaphore::new(1_000))).await;
        let pool = Pool::new(addr, 16, Duration::from_secs(10));
        for _ in 0..10 {
            let response = pool.send(get(), None).await.unwrap();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            assert_eq!(&body[..], b"ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(pool.idle_len(), 1);
    }

    #[tokio::test]
    async fn concurrent_requests_beyond_the_cap_wait_for_a_connection() {
        const CAP: usize = 3;
        const REQUESTS: usize = 12;
        let gate = Arc::new(Semaphore::new(0));
        let (addr, accepted) = upstream(gate.clone()).await;
        let pool = Pool::new(addr, CAP, Duration::from_secs(10));
        let calls: Vec<_> = (0..REQUESTS)
            .map(|_| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    let response = pool.send(get(), None).await.unwrap();
                    response.into_body().collect().await.unwrap().to_bytes()
                })
            })
            .collect();
        // The first CAP requests hold every slot (the upstream holds their answers); the
        // others wait for a slot.
        tokio::time::timeout(Duration::from_secs(10), async {
            while pool.slots.available_permits() > 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        gate.add_permits(REQUESTS);
        for call in calls {
            assert_eq!(&call.await.unwrap()[..], b"ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), CAP);
        assert_eq!(pool.idle_len(), CAP);
    }

    #[tokio::test]
    async fn a_request_that_finds_no_slot_by_its_deadline_is_busy() {
        let (addr, _) = upstream(Arc::new(Semaphore::new(0))).await;
        let pool = Pool::new(addr, 1, Duration::from_secs(10));
        let first = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.send(get(), None).await.map(|_| ()) })
        };
        // The first request holds the only slot: its head never comes.
        while pool.slots.available_permits() > 0 {
            tokio::task::yield_now().await;
        }
        let second = pool
            .send(get(), Some(Instant::now() + Duration::from_millis(100)))
            .await;
        assert!(matches!(second, Err(PoolError::Busy)), "{second:?}");
        first.abort();
    }
}
