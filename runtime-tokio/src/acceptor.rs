//! The accept loop shared by the demo and echo servers: one task per connection, a broadcast
//! "close your clients" command, and a graceful stop with a timeout.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
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
        let (commands, mut rx) = watch::channel(Command::default());
        let live = Arc::new(AtomicUsize::new(0));
        let live2 = live.clone();
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, peer)) => {
                            let _ = stream.set_nodelay(true);
                            conns.spawn(serve(stream, peer, rx.clone(), live2.clone()));
                        }
                        Err(e) => {
                            // EMFILE and friends: back off instead of spinning.
                            tracing::warn!("accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    },
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
        });
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
