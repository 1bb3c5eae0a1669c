//! The accept loop of every listener in this crate (the Tether server, the HTTP gateway, the
//! demo server and the channel-bindings server under the echo server): one task per
//! connection, a backoff when accepting fails (out of file descriptors), a
//! broadcast "close your clients" command, and a graceful stop with a timeout.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// A command to every connection task. Each change of the watched value is acted on once by the
/// connections alive when it was sent.
#[derive(Debug, Clone, Default)]
pub(crate) struct Command {
    /// Close frame to send to every current client.
    pub(crate) close: Option<(u16, String)>,
    /// The server is stopping: the accept loop ends.
    pub(crate) stopping: bool,
}

impl Command {
    pub(crate) fn close_frame(&self) -> Option<CloseFrame> {
        self.close.as_ref().map(|(code, reason)| CloseFrame {
            code: CloseCode::from(*code),
            reason: reason.as_str().into(),
        })
    }
}

/// Counts live WebSocket connections; decrements on drop.
#[derive(Debug)]
pub(crate) struct LiveGuard(Arc<AtomicUsize>);

impl LiveGuard {
    pub(crate) fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count.clone())
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Error of a graceful stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StopError {
    /// Some connections had not finished their closing handshake within the timeout; they were
    /// dropped.
    #[error("{0} connection(s) still open after the stop timeout were aborted")]
    Timeout(usize),
}

/// Where the accept loop takes connections from: a [`TcpListener`] (or, in tests, a fake
/// that fails).
pub(crate) trait Listener: Send + 'static {
    /// As [`TcpListener::poll_accept`].
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>>;
}

impl Listener for TcpListener {
    fn poll_accept(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        TcpListener::poll_accept(self, cx)
    }
}

/// Accepts until told to stop, one task per connection; after an accept error it waits as
/// [`AcceptBackoff`] says, while connections already accepted go on, and a stop command
/// is still heard.
async fn accept_loop<L, F, Fut>(
    mut listener: L,
    serve: F,
    mut rx: watch::Receiver<Command>,
    live: Arc<AtomicUsize>,
) where
    L: Listener,
    F: Fn(TcpStream, SocketAddr, watch::Receiver<Command>, Arc<AtomicUsize>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut conns = JoinSet::new();
    let mut backoff = AcceptBackoff::default();
    let mut paused_until: Option<Instant> = None;
    loop {
        tokio::select! {
            accepted = std::future::poll_fn(|cx| listener.poll_accept(cx)), if paused_until.is_none() => {
                match accepted {
                    Ok((stream, peer)) => {
                        backoff.on_success();
                        let _ = stream.set_nodelay(true);
                        conns.spawn(serve(stream, peer, rx.clone(), live.clone()));
                    }
                    Err(e) => {
                        if let Some(wait) = backoff.on_error(&e) {
                            paused_until = Some(Instant::now() + wait);
                        }
                    }
                }
            }
            () = tokio::time::sleep_until(paused_until.unwrap_or_else(Instant::now)), if paused_until.is_some() => {
                paused_until = None;
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            changed = rx.changed() => {
                if changed.is_err() || rx.borrow_and_update().stopping {
                    break;
                }
            }
        }
    }
    drop(listener);
    while conns.join_next().await.is_some() {}
}

/// What the accept loop does after an accept error (issue 9 item 5). An error that
/// concerns only the connection being accepted (it was reset or aborted in the backlog)
/// is skipped at once. Any other (EMFILE and ENFILE: out of file descriptors; ENOBUFS,
/// ENOMEM) would fail again at once: the loop waits, 10 ms after the first, doubling up
/// to 1 s, so it does not spin on a full descriptor table while the connections it serves
/// go on (and free descriptors). It logs the first failure of a run at `warn`, the others
/// at `debug`, and the recovery once.
#[derive(Debug, Default)]
pub(crate) struct AcceptBackoff {
    /// Failures since the last successful accept.
    failures: u64,
    /// The wait after the latest failure.
    delay: Duration,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    /// An accept failed with `error`: how long to wait before the next (`None`: at once).
    pub(crate) fn on_error(&mut self, error: &io::Error) -> Option<Duration> {
        use io::ErrorKind::*;
        if matches!(
            error.kind(),
            ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock
        ) {
            tracing::debug!("accept: skipping a failed connection: {error}");
            return None;
        }
        self.failures += 1;
        self.delay = if self.failures == 1 {
            Self::FIRST
        } else {
            (self.delay * 2).min(Self::MAX)
        };
        if self.failures == 1 {
            tracing::warn!(
                "accept failed: {error}; retrying with a backoff of up to {:?} \
                 (logged once until an accept succeeds)",
                Self::MAX
            );
        } else {
            tracing::debug!(failures = self.failures, delay = ?self.delay, "accept failed again: {error}");
        }
        Some(self.delay)
    }

    /// An accept succeeded: the next failure starts a new run.
    pub(crate) fn on_success(&mut self) {
        if self.failures > 0 {
            tracing::info!(failures = self.failures, "accepting again");
            self.failures = 0;
        }
    }

    /// Failures since the last successful accept.
    #[cfg(test)]
    fn failures(&self) -> u64 {
        self.failures
    }
}

/// A running accept loop.
#[derive(Debug)]
pub(crate) struct Running {
    local_addr: SocketAddr,
    commands: watch::Sender<Command>,
    live: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Running {
    /// Spawns the accept loop; `serve` runs each accepted connection in its own task.
    pub(crate) fn spawn<F, Fut>(listener: TcpListener, serve: F) -> io::Result<Self>
    where
        F: Fn(TcpStream, SocketAddr, watch::Receiver<Command>, Arc<AtomicUsize>) -> Fut
            + Send
            + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let local_addr = listener.local_addr()?;
        let (commands, rx) = watch::channel(Command::default());
        let live = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(accept_loop(listener, serve, rx, live.clone()));
        Ok(Self {
            local_addr,
            commands,
            live,
            task,
        })
    }

    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub(crate) fn connection_count(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    pub(crate) fn close_clients(&self, code: u16, reason: &str) {
        self.commands
            .send_modify(|c| c.close = Some((code, reason.to_owned())));
    }

    /// Stops accepting, sends `code`/`reason` to every client and waits up to `timeout` for the
    /// closing handshakes; connections still open then are aborted.
    pub(crate) async fn stop(
        self,
        code: u16,
        reason: &str,
        timeout: Duration,
    ) -> Result<(), StopError> {
        self.commands.send_modify(|c| {
            c.close = Some((code, reason.to_owned()));
            c.stopping = true;
        });
        let mut task = self.task;
        match tokio::time::timeout(timeout, &mut task).await {
            Ok(_) => Ok(()),
            Err(_) => {
                let left = self.live.load(Ordering::Relaxed);
                task.abort();
                let _ = task.await;
                Err(StopError::Timeout(left))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os_error(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    const EMFILE: i32 = 24;
    const ENFILE: i32 = 23;
    const ECONNABORTED: i32 = 103;

    #[test]
    fn running_out_of_descriptors_backs_off_and_a_lost_connection_does_not() {
        let mut backoff = AcceptBackoff::default();
        assert_eq!(backoff.on_error(&os_error(ECONNABORTED)), None);
        assert_eq!(backoff.failures(), 0);
        let waits: Vec<_> = (0..10)
            .map(|i| backoff.on_error(&os_error(if i % 2 == 0 { EMFILE } else { ENFILE })))
            .collect();
        let ms = |n| Some(Duration::from_millis(n));
        assert_eq!(
            waits,
            [
                ms(10),
                ms(20),
                ms(40),
                ms(80),
                ms(160),
                ms(320),
                ms(640),
                ms(1000),
                ms(1000),
                ms(1000)
            ]
        );
        backoff.on_success();
        assert_eq!(backoff.failures(), 0);
        assert_eq!(backoff.on_error(&os_error(EMFILE)), ms(10), "a new run");
    }

    /// A listener whose every accept fails with EMFILE, counting the attempts.
    struct Exhausted(Arc<AtomicUsize>);

    impl Listener for Exhausted {
        fn poll_accept(
            &mut self,
            _: &mut Context<'_>,
        ) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Poll::Ready(Err(os_error(EMFILE)))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_accept_loop_does_not_spin_on_emfile_and_still_stops() {
        let attempts = Arc::new(AtomicUsize::new(0));
        let (commands, rx) = watch::channel(Command::default());
        let task = tokio::spawn(accept_loop(
            Exhausted(attempts.clone()),
            |_, _, _, _| async {},
            rx,
            Arc::new(AtomicUsize::new(0)),
        ));
        // Ten seconds of (virtual) time: 10 + 20 + ... + 640 ms, then once a second.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let n = attempts.load(Ordering::SeqCst);
        assert!((8..=20).contains(&n), "{n} accept attempts in 10 s");
        // A stop is heard during a pause.
        commands.send_modify(|c| c.stopping = true);
        tokio::time::timeout(Duration::from_millis(10), task)
            .await
            .expect("stopped without waiting out the pause")
            .unwrap();
    }
}
