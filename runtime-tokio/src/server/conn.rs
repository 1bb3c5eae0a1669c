//! One server connection: TLS, upgrade, then the run loop around its machine.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Instant;

use tether_proto::connection::{Connection, ConnectionError, Event, Initiator, StoreError};
use tether_proto::CloseCode;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::Instrument;
use uuid::Uuid;

use super::registry::Command;
use super::{Decision, HelloHook, HelloRequest, ServerEvent, Shared};
use crate::conn::{self as link, Ending, Input};
use crate::metrics::Meter;
use crate::rest::{ConnectionInfo, Driver, LinkHandle};
use crate::transport::acceptor::{Command as Broadcast, LiveGuard};
use crate::transport::upgrade::{self, RequestInfo, ServerStream};
use crate::transport::{queue, OsRandom};
use tether_proto::Side;

pub(super) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    hook: Arc<dyn HelloHook>,
    broadcast: watch::Receiver<Broadcast>,
    live: Arc<AtomicUsize>,
) {
    let span = tracing::info_span!("tether_conn", %peer, id = tracing::field::Empty);
    async move {
        // Boxed: the TLS handshake and hyper's upgrade are large futures (several KiB)
        // that live only until the WebSocket is open; inline, every idle connection's task
        // would keep room for them (issue 11 goal 5).
        let Some(upgraded) = Box::pin(handshake(stream, peer, &shared)).await else {
            return;
        };
        tracing::debug!(path = %upgraded.1.uri, "WebSocket open");
        let _live = LiveGuard::new(&live);
        let run = std::pin::pin!(run(upgraded, &shared, hook.as_ref(), broadcast));
        link::counted(run).await;
    }
    .instrument(span)
    .await
}

/// Admission, TLS and the WebSocket upgrade of one accepted socket; `None` when the
/// connection ended there (refused, failed or timed out; logged).
async fn handshake(
    stream: TcpStream,
    peer: SocketAddr,
    shared: &Shared,
) -> Option<Box<(ServerStream, RequestInfo)>> {
    // spec/protocol.md §10.8 "Reconnecting abusers": an address in cool-down is
    // answered 429 before any WebSocket or Tether state exists.
    if let Err(wait) = shared.admit_address(peer.ip(), Instant::now()) {
        tracing::debug!(
            retry_after = wait.seconds(),
            "address in abuse cool-down: 429"
        );
        let policy = &shared.policy;
        match &shared.tls {
            Some(tls) => {
                let timeout = shared.config.upgrade_timeout;
                if let Ok(Ok(stream)) = tokio::time::timeout(timeout, tls.accept(stream)).await {
                    upgrade::refuse(stream, policy, wait.seconds()).await;
                }
            }
            None => upgrade::refuse(stream, policy, wait.seconds()).await,
        }
        return None;
    }
    let upgraded = match &shared.tls {
        Some(tls) => {
            let timeout = shared.config.upgrade_timeout;
            match tokio::time::timeout(timeout, tls.accept(stream)).await {
                Ok(Ok(stream)) => upgrade::accept(stream, peer, &shared.policy).await,
                Ok(Err(e)) => {
                    tracing::debug!("TLS handshake failed: {e}");
                    return None;
                }
                Err(_) => {
                    tracing::debug!("TLS handshake timed out");
                    return None;
                }
            }
        }
        None => upgrade::accept(stream, peer, &shared.policy).await,
    };
    match upgraded {
        Ok(ok) => Some(Box::new(ok)),
        Err(e) => {
            tracing::debug!("upgrade failed: {e}");
            None
        }
    }
}

/// The per-connection state the run loop keeps beside the machine.
struct Task<'a> {
    shared: &'a Shared,
    /// The peer's address.
    peer: SocketAddr,
    /// The upgrade request's target and headers, for the HELLO's hook (one HELLO per
    /// connection, spec/protocol.md §7.1, §7.2): boxed and dropped there, so that an
    /// established connection's task keeps no room for them (176 bytes, issue 11 goal 5).
    upgrade_request: Option<Box<(http::Uri, http::HeaderMap)>>,
    serial: u64,
    commands: queue::Sender<Command>,
    /// Whether this connection's admission took its session over from a connection still
    /// open (spec/protocol.md §9.3): that one is told when this one is established.
    replaces: bool,
    id: Option<Uuid>,
    failed: bool,
}

/// The connection's run loop. The WebSocket and the request come in one box: an async
/// fn keeps room for its arguments beside the locals they are moved into, so passing the
/// two (≈ 600 bytes) by value would cost that much more in every idle connection's task
/// (issue 11 goal 5).
async fn run(
    upgraded: Box<(ServerStream, RequestInfo)>,
    shared: &Shared,
    hook: &dyn HelloHook,
    broadcast: watch::Receiver<Broadcast>,
) {
    let (mut ws, RequestInfo { peer, uri, headers }) = *upgraded;
    // Received frames' allocations are reused within what the peer may have in flight.
    let window = shared.config.connection.streams().initial_connection_window;
    ws.get_mut().set_pool_limit(window);
    let mut conn = Connection::server(shared.config.connection.clone(), Instant::now());
    let (tx, mut rx) = queue::bounded(4);
    let mut task = Task {
        shared,
        peer,
        upgrade_request: Some(Box::new((uri, headers))),
        serial: shared.serial.fetch_add(1, Ordering::Relaxed),
        commands: tx,
        replaces: false,
        id: None,
        failed: false,
    };
    let mut driver = Driver::new(shared.rest.clone(), shared.service.clone());
    driver.set_metrics(shared.metrics.clone());
    driver.attach(&mut conn);
    let mut meter = Meter::new(Some(shared.metrics.clone()));
    let mut linger = false;
    let mut lost = false;
    let mut violated = false;
    // The wait for the server's broadcast and the machine's timer last across turns (see
    // `broadcast_changed` and `link::next_input`); the wait is polled only when it may
    // be ready (see `BroadcastPeek`).
    let mut peek = BroadcastPeek::new(&broadcast);
    let mut broadcast = std::pin::pin!(broadcast_changed(broadcast));
    let mut broadcast_open = true;
    let mut timer = std::pin::pin!(link::timer());
    loop {
        let input = tokio::select! {
            biased; // the broadcast first: it is rare, and a close must not wait for a lull
            (mut receiver, open) = peek.wait(broadcast.as_mut()), if broadcast_open => {
                let (code, reason) = if open {
                    receiver
                        .borrow_and_update()
                        .close
                        .clone()
                        .map(|(code, reason)| (CloseCode::from_u(code), reason))
                        .unwrap_or((super::SHUTDOWN_CODE, String::new()))
                } else {
                    (super::SHUTDOWN_CODE, "server stopped".to_owned())
                };
                broadcast_open = open;
                peek.seen();
                broadcast.set(broadcast_changed(receiver));
                Input::Command(Command::Close(Box::new((code, reason))))
            }
            input = link::next_input(&mut ws, &conn, &mut rx, &mut driver, timer.as_mut()) => input,
        };
        // One turn: this input, then every input that is ready without waiting (bounded,
        // see `link::Turn`), each with its events handled, then one write burst for all.
        let mut turn = link::Turn::new(&mut driver);
        let mut input = Some(input);
        let mut now = Instant::now();
        // One clock read per input (and one per write burst that leaves events): the
        // handlers of its events use it.
        while let Some(next) = input.take() {
            match next {
                Input::Message(msg) => {
                    driver.sync_serving(&mut conn); // a service attached since
                    conn.handle_message(msg, now)
                }
                Input::Timeout => conn.handle_timeout(now),
                Input::TransportLost(error) => {
                    tracing::debug!(?error, "transport lost");
                    lost = true;
                    conn.handle_transport_lost(now);
                }
                Input::Violation(kind, error) => {
                    tracing::debug!(%error, "WebSocket violation");
                    violated = true;
                    conn.handle_websocket_error(kind, now);
                }
                Input::Command(Command::Close(close)) => {
                    let (code, reason) = *close;
                    tracing::debug!(%code, %reason, "closing on request");
                    // spec/protocol.md §10.7: the machine drains what is in flight first.
                    let drain = shared.config.rest.drain_timeout;
                    conn.close_gracefully(code, &reason, drain, now);
                }
                Input::Command(Command::Replaced) => {
                    tracing::debug!("session resumed on a new connection");
                    conn.replaced(now); // spec/protocol.md §9.3
                }
                Input::Stream(cmd) => link::on_stream_commands(&mut driver, &mut conn, cmd, now),
            }
            while let Some(event) = conn.poll_event() {
                // A plain function; only the HELLO's decision is awaited (see below).
                if let Some(hello) =
                    task.on_event(&mut conn, &mut driver, &mut meter, &mut linger, event, now)
                {
                    Box::pin(task.on_hello(&mut conn, hello, hook)).await;
                }
            }
            if conn.is_closed() || lost || violated {
                break;
            }
            input = turn.next(&mut ws, &mut driver).await;
            if input.is_none() {
                break;
            }
            now = Instant::now();
        }
        loop {
            // Events raised outside an input (by a write burst: a stream writable again, the
            // transport lost) get a clock read of their own, taken only when there are some.
            if conn.has_events() {
                now = Instant::now();
                while let Some(event) = conn.poll_event() {
                    // The event is handled by a plain function, and only the HELLO's
                    // decision is awaited (boxed: it is the largest state of this future and
                    // happens once per connection): an event held across an await, or
                    // borrowed before one, would keep ≈ 0.2 KiB (an `Event`), or three
                    // copies of it, in every idle connection's task (issue 11 goal 5).
                    if let Some(hello) =
                        task.on_event(&mut conn, &mut driver, &mut meter, &mut linger, event, now)
                    {
                        Box::pin(task.on_hello(&mut conn, hello, hook)).await;
                    }
                }
            }
            // Response heads held for their bodies go to their callers before the write.
            driver.end_turn();
            let again =
                link::write_step(&mut ws, &mut conn, shared.config.write_timeout, &mut lost).await;
            meter.update(&mut conn);
            if !again {
                break;
            }
        }
        if conn.is_closed() {
            break;
        }
    }
    driver.finish();
    // Our close frame must reach a peer that may still be sending (a broken frame, a ping
    // flood, §2.3, §8.5): the ending discards its input instead of resetting it.
    link::finish(&mut ws, Ending::of(lost, task.failed, violated || linger)).await;
    if let Some(id) = task.id {
        shared.registry.remove(id, task.serial);
    }
    tracing::debug!("connection task done");
}

/// The next change of the server's broadcast (a close for every connection), and whether
/// the server is still there. The wait owns its receiver so that a run loop keeps one wait
/// for as long as nothing changes: a new `changed()` per turn would enter and leave the
/// channel's waiter list (a lock each) every turn.
async fn broadcast_changed(
    mut receiver: watch::Receiver<Broadcast>,
) -> (watch::Receiver<Broadcast>, bool) {
    let open = receiver.changed().await.is_ok();
    (receiver, open)
}

/// What lets a run loop skip polling the wait for the server's broadcast, which it does
/// first at every wake of its task (`biased`) and which would take the channel's lock each
/// time (3.9 % of the server's instructions for a small request through the TCP tunnel).
/// The wait stays in the channel's waiter list between polls, with the waker it was last
/// polled with; so it needs a poll only when the broadcast changed (or the server is
/// gone), which a second receiver tells with one atomic load, or when the task's waker
/// is not that one (the `Future` contract: only the latest waker counts).
struct BroadcastPeek {
    receiver: watch::Receiver<Broadcast>,
    /// The waker the wait was last polled with, while it is pending.
    waker: Option<Waker>,
}

impl BroadcastPeek {
    fn new(receiver: &watch::Receiver<Broadcast>) -> Self {
        Self {
            receiver: receiver.clone(),
            waker: None,
        }
    }

    /// `wait`, polled only when it may be ready or was last polled with another waker.
    fn wait<'a, F: Future>(
        &'a mut self,
        mut wait: Pin<&'a mut F>,
    ) -> impl Future<Output = F::Output> + 'a {
        std::future::poll_fn(move |cx| {
            let registered = self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
            if registered && matches!(self.receiver.has_changed(), Ok(false)) {
                return Poll::Pending;
            }
            let poll = wait.as_mut().poll(cx);
            self.waker = poll.is_pending().then(|| cx.waker().clone());
            poll
        })
    }

    /// The change the wait returned is handled. A change after it is not lost: the wait
    /// that follows is polled at once (it has no waker yet), and its receiver sees it.
    fn seen(&mut self) {
        self.receiver.mark_unchanged();
    }
}

/// Whether this side failed the connection while the peer may still be sending: then
/// closing the socket with unread bytes would reset it and could destroy our close frame.
/// A peer silent for a timeout has nothing in flight.
fn peer_may_be_sending(error: &ConnectionError) -> bool {
    error.initiator() == Initiator::Local
        && !matches!(
            error,
            ConnectionError::HeartbeatTimeout(_) | ConnectionError::HandshakeTimeout(_)
        )
}

impl Task<'_> {
    /// The HELLO: the hook decides, then the session is admitted (or the HELLO rejected).
    async fn on_hello(
        &mut self,
        conn: &mut Connection,
        hello: tether_proto::connection::HelloInfo,
        hook: &dyn HelloHook,
    ) {
        let shared = self.shared;
        tracing::debug!(
            version = hello.version,
            resume = hello.resume.is_some(),
            "HELLO"
        );
        // Moved, not cloned: hyper parsed them as views into its 8 KiB read buffer,
        // which they would otherwise keep alive for the connection's lifetime (issue 11
        // goal 5: idle memory). One HELLO per connection (spec/protocol.md §7.1, §7.2),
        // so nothing needs them afterwards.
        let (uri, headers) = self.upgrade_request.take().map(|r| *r).unwrap_or_default();
        let request = HelloRequest {
            hello: hello.clone(),
            remote_addr: self.peer,
            uri,
            headers,
        };
        let decision = hook.decide(request);
        let decision = match conn.poll_timeout() {
            Some(deadline) => tokio::time::timeout_at(deadline.into(), decision)
                .await
                .ok(),
            None => Some(decision.await),
        };
        let now = Instant::now();
        match decision {
            None => conn.handle_timeout(now),
            Some(Decision::Reject { code, reason }) => {
                tracing::info!(%code, %reason, "HELLO rejected");
                conn.reject(code, &reason, now);
            }
            Some(Decision::Accept) => {
                let admission = shared.sessions(|store| {
                    store.admit(hello.resume.as_ref(), hello.metadata, &mut OsRandom, now)
                });
                match &admission {
                    Ok(admission) => self.replaces = admission.replaces().is_some(),
                    Err(e @ StoreError::Full(_)) => tracing::info!("HELLO refused: {e}"),
                    Err(e) => tracing::error!("no session: {e}"),
                }
                // The machine closes with the code the spec gives a store error
                // (4007 full, 4008 for a failed random source, §7.3, §9.1).
                if let Err(e) = conn.admit(admission, now) {
                    tracing::warn!("admit: {e}");
                }
            }
        }
    }

    /// Handles one event of the machine; a HELLO is handed back, for the caller to await
    /// [`on_hello`](Self::on_hello).
    fn on_event(
        &mut self,
        conn: &mut Connection,
        driver: &mut Driver,
        meter: &mut Meter,
        linger: &mut bool,
        event: Event,
        now: Instant,
    ) -> Option<tether_proto::connection::HelloInfo> {
        let shared = self.shared;
        meter.on_event(&event);
        if let Event::Failure { error } = &event {
            *linger = peer_may_be_sending(error);
        }
        match event {
            Event::HelloReceived(hello) => return Some(hello),
            Event::Received { id, metadata } => self.established(driver, id, metadata, false),
            Event::Resumed { id, metadata } => self.established(driver, id, metadata, true),
            Event::Stream(event) => driver.on_event(conn, event, now),
            // This side sent GOAWAY: requests waiting for a stream fail (safe to retry).
            Event::Draining => driver.going_away(),
            Event::PingReceived { .. } => tracing::trace!("ping"),
            Event::PongReceived { rtt, .. } => tracing::trace!(?rtt, "pong"),
            Event::Closed {
                code,
                reason,
                initiator,
            } => {
                tracing::info!(%code, %reason, ?initiator, "closed");
                self.connection_ended(conn);
                if let Some(id) = self.live_id() {
                    shared.events.publish(ServerEvent::Closed {
                        id,
                        code,
                        reason,
                        initiator,
                    });
                }
            }
            Event::Failure { error } => {
                tracing::info!(%error, "failed");
                // A peer that sent a close frame is alive: let tungstenite echo it.
                self.failed = error.initiator() == tether_proto::connection::Initiator::Local;
                if tether_proto::abuse::is_abuse_close(&error) {
                    // spec/protocol.md §10.8 "Reconnecting abusers".
                    shared.record_abuse(self.peer.ip(), Instant::now());
                }
                self.connection_ended(conn);
                if let Some(id) = self.live_id() {
                    shared.events.publish(ServerEvent::Failure { id, error });
                }
            }
            other => tracing::debug!(event = ?other, "unhandled event"),
        }
        None
    }

    /// The connection ended: the store applies what the machine decided for its session
    /// (detach or end, spec/protocol.md §9.1). Expiry is the store's timer task's job
    /// (server/mod.rs).
    fn connection_ended(&self, conn: &Connection) {
        let outcome = self
            .shared
            .sessions(|store| store.connection_ended(conn, Instant::now()));
        tracing::debug!(?outcome, "session");
    }

    /// At the end: takes the connection out of the registry (before anyone hears of the
    /// end) and returns its id, or `None` when there is nothing to report: no handshake, or
    /// the session already resumed on a newer transport (its consumer saw `Resumed`; a
    /// `Closed` for the stale transport would read as the session's end).
    fn live_id(&self) -> Option<Uuid> {
        let id = self.id?;
        if self.shared.registry.remove(id, self.serial) {
            Some(id)
        } else {
            tracing::debug!("stale transport of a resumed session ended");
            None
        }
    }

    /// The handshake completed: register the connection and report it.
    fn established(
        &mut self,
        driver: &mut Driver,
        id: Uuid,
        metadata: bytes::Bytes,
        resumed: bool,
    ) {
        tracing::Span::current().record("id", tracing::field::display(id));
        tracing::info!(resumed, "established");
        self.id = Some(id);
        let remote_addr = self.peer;
        driver.set_info(ConnectionInfo {
            id,
            side: Side::Server,
            metadata: metadata.clone(),
            remote_addr: Some(remote_addr),
        });
        let link = LinkHandle {
            id,
            serial: self.serial,
            commands: driver.sender(),
        };
        let replaced = self.shared.registry.insert(
            id,
            self.serial,
            metadata.clone(),
            remote_addr,
            self.commands.clone(),
            link,
        );
        // spec/protocol.md §9.3: the store said this admission took the session over from
        // a connection still open; the registry knows its task, whose machine closes it.
        if let (true, Some(old)) = (self.replaces, replaced) {
            let _ = old.send(Command::Replaced);
        }
        let event = if resumed {
            ServerEvent::Resumed {
                id,
                metadata,
                remote_addr,
            }
        } else {
            ServerEvent::Received {
                id,
                metadata,
                remote_addr,
            }
        };
        self.shared.events.publish(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `f` returns, without calling it.
    fn future_size<F, Fut>(_: &F) -> usize
    where
        F: FnOnce(
            TcpStream,
            SocketAddr,
            Arc<Shared>,
            Arc<dyn HelloHook>,
            watch::Receiver<Broadcast>,
            Arc<AtomicUsize>,
        ) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// A future that counts its polls.
    struct Counting<'a, F> {
        inner: Pin<Box<F>>,
        polls: &'a std::cell::Cell<u32>,
    }

    impl<F: Future> Future for Counting<'_, F> {
        type Output = F::Output;
        fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<F::Output> {
            self.polls.set(self.polls.get() + 1);
            self.inner.as_mut().poll(cx)
        }
    }

    /// The broadcast's wait is skipped only while it holds the task's latest waker and
    /// nothing changed: polled with another waker it is polled through (so that the
    /// channel wakes that one), and a change makes it ready.
    #[test]
    fn the_broadcast_wait_follows_the_latest_waker_and_the_change() {
        use std::task::Context;
        let (tx, rx) = watch::channel(Broadcast::default());
        let mut peek = BroadcastPeek::new(&rx);
        let mut wait = std::pin::pin!(broadcast_changed(rx));
        let (a, a_woken) = crate::test_util::counting_waker();
        let (b, b_woken) = crate::test_util::counting_waker();
        let receiver = {
            let mut poll = std::pin::pin!(peek.wait(wait.as_mut()));
            assert!(poll
                .as_mut()
                .poll(&mut Context::from_waker(&a))
                .is_pending());
            assert!(poll
                .as_mut()
                .poll(&mut Context::from_waker(&a))
                .is_pending());
            assert!(poll
                .as_mut()
                .poll(&mut Context::from_waker(&b))
                .is_pending());
            tx.send_modify(|_| {});
            assert_eq!(
                b_woken.load(Ordering::SeqCst),
                1,
                "the latest waker is woken"
            );
            assert_eq!(a_woken.load(Ordering::SeqCst), 0, "not the one before");
            let Poll::Ready((receiver, open)) = poll.as_mut().poll(&mut Context::from_waker(&b))
            else {
                panic!("a change makes the wait ready");
            };
            assert!(open);
            receiver
        };
        peek.seen();
        // The next wait is polled once, then skipped while nothing changes.
        let polls = std::cell::Cell::new(0);
        let mut wait = std::pin::pin!(Counting {
            inner: Box::pin(broadcast_changed(receiver)),
            polls: &polls,
        });
        let mut poll = std::pin::pin!(peek.wait(wait.as_mut()));
        assert!(poll
            .as_mut()
            .poll(&mut Context::from_waker(&b))
            .is_pending());
        assert!(poll
            .as_mut()
            .poll(&mut Context::from_waker(&b))
            .is_pending());
        assert_eq!(polls.get(), 1, "skipped while nothing changed");
        drop(tx);
        let Poll::Ready((_, open)) = poll.as_mut().poll(&mut Context::from_waker(&b)) else {
            panic!("the server gone makes the wait ready");
        };
        assert!(!open);
    }

    /// Issue 11 goal 5: the connection task's future is what an idle connection costs the
    /// server beyond its buffers. Its once-per-connection parts (TLS and the upgrade, the
    /// HELLO decision, the closing handshake, the write burst) are boxed, and so are the
    /// run loop's arguments, and no event is held across an await; inline they made it
    /// 10,872 bytes (debug build), 11 KiB of every idle connection. 3,288 bytes now (3,240
    /// before the loop kept one clock read per turn); with the events handled in an async
    /// fn (an `Event` kept three times) it is 3,656, with the arguments by value 4,744.
    /// 3,304 since the heartbeat keeps its side's probe delay (spec/protocol.md §8.2: a
    /// `Duration` in the machine, which the task holds). 3,432 (debug; 3,416 in a release
    /// build) since a loop turn batches its inputs (`conn::Turn` and its `next` future,
    /// held across the wait for the next input: about 112 bytes of every idle connection,
    /// against the write burst per input it saves a busy one). 3,528 (debug) since the wait
    /// for the server's broadcast lasts across turns (`broadcast_changed`: its receiver
    /// and its waiter, 96 bytes here against a waiter entered and left every turn, 7 % of
    /// the instructions of a turn that carries one small frame; boxed it took as much on
    /// the heap). 3,544 since the socket's `ReadAhead` follows the frame boundaries of
    /// what it hands to tungstenite, to read large binary frames whole (24 bytes: the
    /// header of a frame passed in part, the length left, three flags), and keeps no waker
    /// of its own (8 bytes less). 3,552 since it keeps the allocations of frames read
    /// whole for reuse (a pointer to a pool that exists only during bulk traffic; the
    /// pool's limit and one more flag fit in padding). 3,576 since receive windows grow
    /// (spec/protocol.md §10.3.1): the stream layer's config holds the windows' maxima and
    /// the process-wide receive budget (16 bytes), and the stream layer a pointer to the
    /// growth state, which exists only once the connection window was granted again.
    /// 3,584 since reads of the WebSocket that would find nothing are skipped
    /// (`link::counted`: the pointer to the pinned run loop; its state is a thread-local of
    /// the poll, none of it in the task). 3,632 since the broadcast's wait is polled only
    /// when it may be ready (`BroadcastPeek`: a second receiver and the wait's waker, 32
    /// bytes, and the select's poll of the wait 16 more; 3.9 % of the server's instructions
    /// for a small request through the TCP tunnel), which took the task's allocation past
    /// a step of 128 bytes (tokio aligns a task's cell to 128 on x86_64): 0.13 KiB more
    /// per idle connection. 3,456 (3,440 in a release build) since the upgrade request's
    /// target and headers, which only the HELLO's hook reads, are boxed until then and
    /// dropped (176 bytes of every established connection's task). 3,472 (3,456) since a
    /// request head carries its deadline as a field of its own (`RequestHead::timeout_ms`,
    /// 16 bytes) rather than in its header map: the task's allocation stays in its step
    /// (`idle_connections`, benches/RESULTS.md, twenty-first pass). 3,496 since each
    /// connection keeps its own clone of the service and the generation it is of (24
    /// bytes, `rest::Driver`), instead of taking a clone out of the handle's lock for every
    /// request: still in the same step (10,000 idle connections, server side, 6.661 KiB
    /// each before and 6.675 after, twenty-fifth pass).
    #[test]
    fn the_connection_task_stays_small() {
        let size = future_size(&serve);
        assert!(size <= 3496, "serve future: {size} bytes");
    }
}
