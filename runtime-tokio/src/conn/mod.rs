//! The glue between one tungstenite WebSocket and one [`Connection`] machine, shared by the
//! [server](crate::server) and the [client](crate::client): message conversion, the wait for
//! the next input, and the write burst (every queued message written, one flush; see
//! [`burst`](crate::transport::burst)).
//!
//! Nothing here knows a protocol rule: the machine decides, this module only carries. The
//! run loops follow the embedding contract written in
//! [`tether_proto::connection`](tether_proto::connection#the-contract).

use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tether_proto::connection::{CloseFrame, Connection, Transmit, WebSocketError, WsMessage};
use tether_proto::CloseCode;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame as WsCloseFrame;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::rest::Driver;
use crate::transport::burst::{self, Outgoing};
use crate::transport::closing;
use crate::transport::frames::FrameWriter;
use crate::transport::read_ahead::{poll_message, ReadAhead};

mod wake;

/// Most commands of the HTTP side handled in one go (one input of a [`Turn`]); the same
/// bound as the turn's inputs, for the same reason (see [`TURN_INPUTS`]).
const COMMAND_BATCH: usize = 32;

/// Hands one command of the HTTP side to the driver, and then those already waiting (up
/// to [`COMMAND_BATCH`]), so that their frames leave in one write burst.
pub(crate) fn on_stream_commands(
    driver: &mut Driver,
    conn: &mut Connection,
    first: crate::rest::driver::Command,
    now: Instant,
) {
    driver.on_command(conn, first, now);
    for _ in 1..COMMAND_BATCH {
        match driver.try_recv() {
            Some(cmd) => driver.on_command(conn, cmd, now),
            None => break,
        }
    }
}

/// The WebSocket subprotocol of Tether v1 (spec/protocol.md §2.1), offered by the client
/// and selected by the server.
pub use tether_proto::SUBPROTOCOL;

/// Default time one burst of writes may take before the transport is declared lost.
pub(crate) const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The WebSocket config of a Tether connection: small buffers (they grow for a large
/// message and shrink back) and one Tether frame per message, at most the frame header
/// (8 bytes) plus the largest payload the machine accepts.
pub(crate) fn ws_config(conn_config: &tether_proto::connection::Config) -> WebSocketConfig {
    let max = 8 + conn_config.limits().max_frame_payload as usize;
    crate::transport::ws_config(max)
}

thread_local! {
    /// What the last read of the WebSocket found in the current poll of a run loop's task (set
    /// by [`counted`] for the length of each poll; 0 outside one). The run loop reads its
    /// WebSocket without waiting after every input and before every wait, and most of those
    /// reads find nothing (seven of ten per small request one at a time, each through
    /// tungstenite's read path and the adapters below it down to the runtime's readiness check,
    /// about 850 instructions; benches/RESULTS.md, "Empty reads skipped").
    ///
    /// A read that found the socket empty left the task's waker with the socket, so until the
    /// task's poll ends, another read can find nothing the first would not have woken the task
    /// for: a byte that arrives in between wakes the task, which the runtime then polls again
    /// as soon as this poll ends. So a read made again in the same poll of the task is skipped
    /// (at most [`MAX_SKIPS`] times in a row, so that a burst of commands cannot hold the
    /// socket back for long). Nothing is put between the socket and the task's waker, and
    /// nothing is kept in the task: a poll runs on one thread, and [`counted`] starts every
    /// poll of the run loop afresh and clears the state when it returns, so what one poll
    /// found never reaches another poll, of this task or any other. A run loop not wrapped in
    /// [`counted`] never skips.
    static DRY: std::cell::Cell<u8> = const { std::cell::Cell::new(0) };
}

/// [`DRY`]: the current poll is a run loop's, wrapped in [`counted`].
const COUNTED: u8 = 0x80;

/// Most reads skipped after one that found the socket empty (see [`DRY`]): the reads a turn
/// makes after its last input and before its wait, and the one after a command. The bits of
/// [`DRY`] below [`COUNTED`] hold the skips left.
const MAX_SKIPS: u8 = 2;

/// Whether a read now may be skipped: one found the socket empty earlier in this poll of
/// the task, and the skips are not used up.
fn skip_read() -> bool {
    let state = DRY.get();
    if state & !COUNTED == 0 {
        return false;
    }
    DRY.set(state - 1);
    true
}

/// Records what a read found: nothing (`Pending`), or something.
fn record_read(empty: bool) {
    let counted = DRY.get() & COUNTED;
    let skips = if empty && counted != 0 { MAX_SKIPS } else { 0 };
    DRY.set(counted | skips);
}

/// Polls `fut`, a run loop, starting each of its polls with nothing known of its WebSocket
/// and forgetting it again when the poll returns (see [`DRY`]). The run loop is pinned
/// where it is (an `async fn` taking it by value would keep room for it twice in the
/// task).
pub(crate) fn counted<F: std::future::Future + ?Sized>(
    mut fut: std::pin::Pin<&mut F>,
) -> impl std::future::Future<Output = F::Output> + '_ {
    /// Clears the state when the poll ends, even by a panic.
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            DRY.set(0);
        }
    }
    std::future::poll_fn(move |cx| {
        DRY.set(COUNTED);
        let _clear = Clear;
        fut.as_mut().poll(cx)
    })
}

/// The run loop's next WebSocket message ([`poll_message`]), or `Pending` without a read
/// when one found the socket empty earlier in this poll of the task ([`DRY`]).
fn poll_ws<S>(
    ws: &mut WebSocketStream<ReadAhead<S>>,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Message, WsError>>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if skip_read() {
        return Poll::Pending;
    }
    let polled = poll_message(ws, cx);
    record_read(polled.is_pending());
    polled
}

/// What woke the run loop.
#[derive(Debug)]
pub(crate) enum Input<C> {
    /// A message from the peer.
    Message(WsMessage),
    /// The machine's deadline passed (checked against the clock, not trusted from the timer).
    Timeout,
    /// The socket ended or failed without a close frame.
    TransportLost(Option<WsError>),
    /// The WebSocket layer refused what the peer sent (the machine picks the close code).
    Violation(WebSocketError, WsError),
    /// A command from the embedder (close, shutdown).
    Command(C),
    /// A command from the connection's HTTP side (a request to open, body bytes, …).
    Stream(crate::rest::driver::Command),
}

/// Converts a tungstenite message; `None` for a raw frame, which a reader never yields.
pub(crate) fn from_ws(msg: Message) -> Option<WsMessage> {
    Some(match msg {
        Message::Binary(b) => WsMessage::Binary(b),
        Message::Text(t) => WsMessage::Text(t.into()),
        Message::Ping(p) => WsMessage::Ping(p),
        Message::Pong(p) => WsMessage::Pong(p),
        Message::Close(frame) => WsMessage::Close(
            frame.map(|f| CloseFrame::new(CloseCode::from_u(u16::from(f.code)), f.reason.as_str())),
        ),
        Message::Frame(_) => return None,
    })
}

/// Converts a machine message for tungstenite.
pub(crate) fn to_ws(msg: WsMessage) -> Option<Message> {
    Some(match msg {
        WsMessage::Binary(b) => Message::Binary(b),
        WsMessage::Ping(p) => Message::Ping(p),
        WsMessage::Pong(p) => Message::Pong(p),
        WsMessage::Close(frame) => Message::Close(frame.map(|f| WsCloseFrame {
            code: WsCloseCode::from(f.code.value()),
            reason: f.reason.into(),
        })),
        // The machine never sends text; anything new is skipped rather than guessed.
        _ => return None,
    })
}

/// The timer of a run loop: one per connection for its whole life, moved to the next wake
/// by [`next_input`] only when that changes.
pub(crate) type Timer = tokio::time::Sleep;

/// A run loop's [`Timer`], not armed yet (it is first polled with a deadline set by
/// [`next_input`]).
pub(crate) fn timer() -> Timer {
    tokio::time::sleep(Duration::ZERO)
}

/// Waits for the next input: a message, the machine's deadline, or a command.
///
/// The timer only wakes the loop; whether the deadline passed is checked against the
/// clock, so a late or early wake-up can neither starve nor fire a timer twice
/// (the house style's rule on timer starvation). A far deadline is slept to a little
/// after it, on a boundary shared with the other connections ([`wake`]), so that idle
/// connections' heartbeats wake the runtime together. The timer is the connection's own
/// ([`timer`]) and is moved only when its wake no longer serves the deadline
/// ([`wake::keeps`]): a far wake stays on its boundary for many turns while the heartbeat's
/// deadline creeps later, and a new timer per turn would enter and leave the runtime's timer
/// wheel (a lock each) every turn.
pub(crate) async fn next_input<S, C>(
    ws: &mut WebSocketStream<ReadAhead<S>>,
    conn: &Connection,
    commands: &mut crate::transport::queue::Receiver<C>,
    driver: &mut Driver,
    mut timer: std::pin::Pin<&mut Timer>,
) -> Input<C>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut commands_open = true;
    // No stream open: no body will arrive soon, so the socket's allocations kept for
    // reuse go (transport::read_ahead, "Allocations reused"). The HTTP side's command queue
    // keeps a few slots for the next request, and the socket the allocation its small
    // reads go into ("Small reads kept"), until a deadline finds the connection with
    // nothing open (its heartbeat, after an interval of quiet).
    match conn.streams() {
        // What the peer may have in flight, grown with the window (§10.3.1).
        Some(s) if s.open_streams() > 0 => {
            let socket = ws.get_mut();
            socket.set_pool_limit(s.connection_window_size());
            socket.keep_small_reads();
            driver.keep_slots(usize::MAX);
        }
        _ => {
            ws.get_mut().shed_pool();
            driver.between_requests();
        }
    }
    loop {
        let now = Instant::now();
        let deadline = conn.poll_timeout();
        if matches!(deadline, Some(d) if now >= d) {
            if !matches!(conn.streams(), Some(s) if s.open_streams() > 0) {
                driver.quiet();
                ws.get_mut().quiet();
            }
            return Input::Timeout;
        }
        if let Some(deadline) = deadline {
            let armed = timer.deadline().into_std();
            if timer.is_elapsed() || !wake::keeps(armed, deadline, now) {
                let wake = tokio::time::Instant::from_std(wake::wake_at(deadline, now));
                if timer.deadline() != wake || timer.is_elapsed() {
                    timer.as_mut().reset(wake);
                }
            }
        }
        // In a fixed order (a random start costs a thread-local lookup per poll): the
        // embedder's rare commands first; a busy socket cannot starve the HTTP side's
        // commands, because the turn that follows alternates between the two ([`Turn`]),
        // nor the deadline, which is checked above.
        tokio::select! {
            biased;
            cmd = commands.recv(), if commands_open => match cmd {
                Some(cmd) => return Input::Command(cmd),
                // Every handle is gone: nobody can ask anything any more; keep serving.
                None => commands_open = false,
            },
            msg = std::future::poll_fn(|cx| poll_ws(ws, cx)) => match message_input(msg) {
                Some(input) => return input,
                None => continue,
            },
            cmd = driver.recv() => return Input::Stream(cmd),
            () = timer.as_mut(), if deadline.is_some() => continue,
        }
    }
}

/// What a read of the WebSocket yielded, as an input; `None` for a raw frame (skipped).
fn message_input<C>(msg: Option<Result<Message, WsError>>) -> Option<Input<C>> {
    Some(match msg {
        Some(Ok(msg)) => Input::Message(from_ws(msg)?),
        Some(Err(e)) => match violation(&e) {
            Some(kind) => Input::Violation(kind, e),
            None => Input::TransportLost(Some(e)),
        },
        None => Input::TransportLost(None),
    })
}

/// Most inputs one loop turn handles before its write burst (a command input drains up to
/// [`COMMAND_BATCH`] commands).
///
/// Enough that a burst of small requests or responses leaves in a few writes instead of
/// one each, few enough that a busy peer cannot hold the burst, and with it our control
/// frames, back for long (spec/protocol.md §10.3: they go first in the burst). And a
/// fraction of what is usually in flight: a turn that took everything ready (256 here
/// before) makes the two ends of a busy connection take turns, each idle while the other
/// works through the whole window; batches of 32 keep both ends, and both cores, busy
/// at once. Measured with `rest_load --only small --concurrency 128` on an idle 2-core
/// machine: 1.04–1.14× h2 with 256, 1.5–1.6× with 24, 32 or 48, 1.35–1.46× with only the
/// turn bounded (benches/RESULTS.md, "Small requests, fourth pass").
const TURN_INPUTS: usize = 32;

/// Most times one loop turn lets the tasks it handed work to run before it writes.
const TURN_YIELDS: usize = 4;

/// One turn of a run loop: after the input it woke for, the inputs that are ready without
/// waiting (messages already read or readable, commands already queued), so that one write
/// burst carries everything ready rather than one burst per message.
///
/// The handlers a turn starts and the callers it answers run as tasks of their own and
/// answer with commands (`Respond`, the next `Open`). Each of them would wake the
/// connection task, which tokio runs next on the same worker (the task a running task wakes
/// goes first), and which would write that one answer before the next handler ran: one
/// write per response. So while this turn's handlers and callers have not all answered,
/// the turn yields (at most [`TURN_YIELDS`] times, and only while each yield brought
/// something): the connection task goes to the back of its worker's queue, behind the
/// tasks it woke, and their answers leave together.
pub(crate) struct Turn {
    inputs: usize,
    yields: usize,
    /// Commands first on the next call (alternates with the socket, for fairness).
    commands_first: bool,
}

impl Turn {
    /// A new turn; the driver forgets what it handed out before.
    pub(crate) fn new(driver: &mut Driver) -> Self {
        driver.begin_turn();
        Turn {
            inputs: 0,
            yields: 0,
            commands_first: false,
        }
    }

    /// The next input that is ready without waiting, `None` when there is none (or the
    /// turn has handled its share): then the caller writes.
    pub(crate) async fn next<S, C>(
        &mut self,
        ws: &mut WebSocketStream<ReadAhead<S>>,
        driver: &mut Driver,
    ) -> Option<Input<C>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if self.inputs >= TURN_INPUTS {
            return None;
        }
        self.inputs += 1;
        let mut yielded = false;
        loop {
            self.commands_first = !self.commands_first;
            if self.commands_first {
                if let Some(cmd) = driver.try_recv() {
                    return Some(Input::Stream(cmd));
                }
            }
            if let Some(input) = ready_message(ws).await {
                return Some(input);
            }
            if let Some(cmd) = driver.try_recv() {
                return Some(Input::Stream(cmd));
            }
            // Nothing came while the others ran (a slow handler, a caller done): write.
            if yielded || self.yields >= TURN_YIELDS || !driver.awaits_answers() {
                return None;
            }
            self.yields += 1;
            yielded = true;
            requeue().await;
        }
    }
}

/// Lets the worker's other ready tasks run, then continues: the task wakes itself, which
/// tokio treats as a yield (to the back of the worker's queue, not the slot it runs next).
/// `tokio::task::yield_now` would wait until the worker ran dry and polled the I/O driver
/// (one more `epoll_wait`, and a wake-up of the other worker, each time).
async fn requeue() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return std::task::Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await
}

/// A message that is already buffered or readable, without waiting for one (the read
/// registers the task's waker as a blocking read would, so no wake-up is lost).
async fn ready_message<S, C>(ws: &mut WebSocketStream<ReadAhead<S>>) -> Option<Input<C>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        let msg = std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match poll_ws(ws, cx) {
                std::task::Poll::Ready(msg) => Some(msg),
                std::task::Poll::Pending => None,
            })
        })
        .await?;
        if let Some(input) = message_input(msg) {
            return Some(input);
        }
    }
}

/// The peer's fault behind a read error of tungstenite, if it is one (the socket is then
/// still there and can carry our close frame); `None` when the transport itself is gone.
pub(crate) fn violation(err: &WsError) -> Option<WebSocketError> {
    match err {
        WsError::Capacity(_) => Some(WebSocketError::MessageTooBig),
        WsError::Utf8(_) => Some(WebSocketError::InvalidText),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        WsError::Protocol(_) => Some(WebSocketError::Protocol),
        _ => None,
    }
}

/// The machine's next transmit as a message of a write burst: every Tether frame is a
/// binary message framed by the burst itself (a DATA frame's payload leaves without a copy
/// on the server side and with the masking copy only on the client side); control frames
/// and the close frame go through tungstenite, in the machine's order. A kind of output
/// this runtime does not know is skipped, not guessed.
fn next_outgoing(conn: &mut Connection) -> Option<Outgoing> {
    loop {
        return Some(match conn.poll_transmit()? {
            Transmit::Data { header, payload } => Outgoing::Binary {
                header: Some(header),
                payload,
            },
            Transmit::Message(WsMessage::Binary(payload)) => Outgoing::Binary {
                header: None,
                payload,
            },
            Transmit::Message(msg) => match to_ws(msg) {
                Some(msg) => Outgoing::Message(msg),
                None => continue,
            },
            _ => continue,
        });
    }
}

/// Writes `first` and what `queued` holds, then every message the machine queued after
/// them, as one burst, and flushes once ([`burst::write_framed_from`]). Returns whether a
/// close frame was among them.
pub(crate) async fn flush<S>(
    ws: &mut WebSocketStream<S>,
    conn: &mut Connection,
    first: Option<Outgoing>,
    queued: Option<FrameWriter>,
    write_timeout: Duration,
) -> Result<bool, WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let masked = conn.side() == tether_proto::Side::Client;
    let mut first = first;
    let next = || first.take().or_else(|| next_outgoing(conn));
    match burst::write_framed_from(ws, write_timeout, masked, queued, next).await {
        Ok(written) => Ok(written.closed),
        Err(e) => Err(e.into_ws()),
    }
}

/// What writing one burst did, from [`write_burst`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Burst {
    /// Everything queued was written and flushed.
    Written,
    /// The write failed: the transport is lost. If the machine was still open it has been
    /// told, and has new events to drain (then the caller writes again).
    Lost { more_events: bool },
}

/// Writes one burst ([`flush`]); a failure is the loss of the transport, which the machine
/// is told of (unless it has closed already).
async fn write_burst<S>(
    ws: &mut WebSocketStream<S>,
    conn: &mut Connection,
    first: Option<Outgoing>,
    queued: Option<FrameWriter>,
    write_timeout: Duration,
) -> Burst
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match flush(ws, conn, first, queued, write_timeout).await {
        Ok(_) => Burst::Written,
        Err(e) => lost(conn, &e),
    }
}

/// A write failed with `error`: the transport is lost.
fn lost(conn: &mut Connection, error: &dyn std::fmt::Display) -> Burst {
    tracing::debug!("write failed: {error}");
    let open = !conn.is_closed();
    if open {
        conn.handle_transport_lost(std::time::Instant::now());
    }
    Burst::Lost { more_events: open }
}

/// One write step of a run loop: writes the burst ([`write_burst`]). Returns whether the
/// machine has new events to handle before the loop writes again: the loss of the
/// transport, or what the burst itself raised (a stream whose send queue drained is
/// writable again: its sender must hear of it now, not at the next unrelated input; a
/// draining connection whose last stream went out closed itself). A failed write sets
/// `lost`.
pub(crate) async fn write_step<S>(
    ws: &mut WebSocketStream<S>,
    conn: &mut Connection,
    write_timeout: Duration,
    lost: &mut bool,
) -> bool
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Most bursts are written in this poll, with no future of their own
    // ([`burst::write_now`]); what has to wait goes on in one. Nothing queued: no burst.
    let masked = conn.side() == tether_proto::Side::Client;
    let now = std::future::poll_fn(|cx| {
        Poll::Ready(burst::write_now(ws, masked, || next_outgoing(conn), cx))
    })
    .await;
    let burst = match now {
        burst::Now::Empty | burst::Now::Written => Burst::Written,
        burst::Now::Failed(e) => self::lost(conn, &e),
        // Boxed: the burst (its timeout's timer, the frame writer, tungstenite's feed and
        // flush futures) is the largest state of a run loop, ≈ 0.9 KiB, and lives only
        // while writing; inline, every idle connection's task would keep room for it
        // (issue 11 goal 5).
        burst::Now::Later(first, queued) => {
            Box::pin(write_burst(ws, conn, first, queued, write_timeout)).await
        }
    };
    match burst {
        Burst::Written => conn.has_events(),
        Burst::Lost { more_events } => {
            *lost = true;
            more_events
        }
    }
}

/// How a connection's transport ended, for [`finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// An orderly close, or the peer's close frame: complete the closing handshake
    /// (bounded).
    Orderly,
    /// This side detected a failure (heartbeat timeout, bad frame): its close frame is
    /// flushed, and a peer presumed dead or broken is not waited for.
    Failed,
    /// The peer broke the WebSocket layer (an oversized message, a framing violation), or
    /// misbehaved while it may still be sending (a ping flood): our close frame is
    /// flushed, then the write side is shut and what the peer still
    /// sends is discarded for a bounded time, so that closing a socket with unread bytes
    /// (which resets the connection) cannot destroy the close frame in flight.
    Violation,
    /// The socket is gone.
    Lost,
}

impl Ending {
    /// From what the run loop saw: a lost transport wins over a failure, a WebSocket
    /// violation over any other failure.
    pub(crate) fn of(lost: bool, failed: bool, violated: bool) -> Self {
        match (lost, failed, violated) {
            (true, _, _) => Ending::Lost,
            (false, _, true) => Ending::Violation,
            (false, true, false) => Ending::Failed,
            (false, false, false) => Ending::Orderly,
        }
    }
}

/// Ends the WebSocket after the machine closed. After an orderly close it waits (at most
/// [`closing::CLOSE_TIMEOUT`]) for the peer's answer to our close frame, or lets
/// tungstenite send its echo of the peer's; after a failure it drops the socket at once,
/// so a client reconnects without waiting on a dead peer.
pub(crate) async fn finish<S>(ws: &mut WebSocketStream<S>, ending: Ending)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Boxed: these futures are large (a few KiB: timeouts around tungstenite's close) and
    // live once per connection, at its end; inline they would make every connection
    // task's future, and so its idle memory, that much larger (issue 11 goal 5).
    match ending {
        Ending::Orderly => Box::pin(closing::close_reply(ws)).await,
        Ending::Violation => Box::pin(closing::linger(ws)).await,
        Ending::Failed | Ending::Lost => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::protocol::Role;

    /// A turn takes what is ready, in order, without waiting, and at most its share.
    #[tokio::test]
    async fn a_turn_takes_what_is_ready_and_no_more() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut ours =
            WebSocketStream::from_raw_socket(ReadAhead::new(a, Role::Server), Role::Server, None)
                .await;
        let mut peer = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        let mut driver = Driver::new(Default::default(), Default::default());

        // Nothing ready: the turn ends at once (no wait, no yield: nothing was handed out).
        let mut turn = Turn::new(&mut driver);
        assert!(turn.next::<_, ()>(&mut ours, &mut driver).await.is_none());

        for i in 0..TURN_INPUTS + 3 {
            peer.feed(Message::binary(vec![i as u8])).await.unwrap();
        }
        peer.flush().await.unwrap();
        let mut turn = Turn::new(&mut driver);
        let mut got = Vec::new();
        while let Some(input) = turn.next::<_, ()>(&mut ours, &mut driver).await {
            match input {
                Input::Message(WsMessage::Binary(b)) => got.push(b[0]),
                other => panic!("{other:?}"),
            }
        }
        let expected: Vec<u8> = (0..TURN_INPUTS).map(|i| i as u8).collect();
        assert_eq!(got, expected, "in order, and at most TURN_INPUTS");
        // The rest is for the next turn.
        let mut turn = Turn::new(&mut driver);
        let mut rest = 0;
        while turn.next::<_, ()>(&mut ours, &mut driver).await.is_some() {
            rest += 1;
        }
        assert_eq!(rest, 3);
    }

    /// A connection waiting for its next input with no stream open sheds its socket's
    /// allocations kept for reuse (transport::read_ahead, "Allocations reused"): on a
    /// connection without heartbeat nothing else would free them.
    #[tokio::test]
    async fn waiting_with_no_stream_open_sheds_the_read_pool() {
        let (a, b) = tokio::io::duplex(1 << 20);
        let config = Some(crate::transport::ws_config(1 << 20));
        let mut ours =
            WebSocketStream::from_raw_socket(ReadAhead::new(a, Role::Server), Role::Server, config)
                .await;
        let mut peer = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        // A body of large frames: read whole, their allocations kept.
        for i in 0..8 {
            peer.feed(Message::binary(vec![i; 64 * 1024]))
                .await
                .unwrap();
        }
        peer.flush().await.unwrap();
        for _ in 0..8 {
            let msg = std::future::poll_fn(|cx| poll_message(&mut ours, cx)).await;
            assert!(matches!(msg, Some(Ok(Message::Binary(_)))), "{msg:?}");
        }
        assert!(ours.get_ref().has_pool());
        // The run loop waits on a connection with no stream; a message ends the wait.
        let conn = Connection::server(Default::default(), Instant::now());
        let (_tx, mut commands) = crate::transport::queue::bounded::<()>(1);
        let mut driver = Driver::new(Default::default(), Default::default());
        let mut timer = std::pin::pin!(timer());
        peer.send(Message::binary(vec![1])).await.unwrap();
        let input = next_input(&mut ours, &conn, &mut commands, &mut driver, timer.as_mut()).await;
        assert!(matches!(input, Input::Message(_)), "{input:?}");
        assert!(!ours.get_ref().has_pool());
    }

    /// Between requests a connection keeps a few slots of its HTTP side's command queue
    /// (one at a time, each request would allocate and free them), and frees them when a
    /// deadline finds it with no stream open: at rest it holds none.
    #[tokio::test]
    async fn command_slots_are_kept_between_requests_and_freed_when_quiet() {
        let (a, _b) = tokio::io::duplex(1 << 16);
        let mut ours =
            WebSocketStream::from_raw_socket(ReadAhead::new(a, Role::Server), Role::Server, None)
                .await;
        let (_tx, mut commands) = crate::transport::queue::bounded::<()>(1);
        let mut driver = Driver::new(Default::default(), Default::default());
        let mut timer = std::pin::pin!(timer());
        let id = tether_proto::StreamId::new(1);
        // A connection whose deadlines are far off, then one whose have passed.
        let busy = Connection::server(Default::default(), Instant::now());
        for _ in 0..3 {
            driver
                .sender()
                .send(crate::rest::driver::Command::BodyDropped { id })
                .unwrap();
            let input =
                next_input(&mut ours, &busy, &mut commands, &mut driver, timer.as_mut()).await;
            assert!(matches!(input, Input::Stream(_)), "{input:?}");
            let kept = driver.command_slots();
            assert!(
                (1..=crate::rest::driver::IDLE_SLOTS).contains(&kept),
                "{kept}"
            );
        }
        wait_quiet(&mut ours, &mut commands, &mut driver, timer.as_mut()).await;
        assert_eq!(driver.command_slots(), 0);
    }

    /// The run loop's wait on a connection whose deadlines passed an hour ago, with no
    /// stream open: it ends at once with `Input::Timeout`, the connection found quiet.
    async fn wait_quiet(
        ours: &mut WebSocketStream<ReadAhead<tokio::io::DuplexStream>>,
        commands: &mut crate::transport::queue::Receiver<()>,
        driver: &mut Driver,
        timer: std::pin::Pin<&mut Timer>,
    ) {
        let quiet = Connection::server(
            Default::default(),
            Instant::now() - Duration::from_secs(3600),
        );
        let input = next_input(ours, &quiet, commands, driver, timer).await;
        assert!(matches!(input, Input::Timeout), "{input:?}");
    }

    /// While a stream is open the socket keeps the allocation small reads go into from one
    /// read to the next (transport::read_ahead, "Small reads kept"), between requests too;
    /// a deadline that finds no stream open frees it.
    #[tokio::test]
    async fn small_reads_are_kept_from_a_stream_on_until_quiet() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let mut ours =
            WebSocketStream::from_raw_socket(ReadAhead::new(a, Role::Client), Role::Client, None)
                .await;
        let mut peer = WebSocketStream::from_raw_socket(b, Role::Server, None).await;
        let (_tx, mut commands) = crate::transport::queue::bounded::<()>(1);
        let (mut client, _server, mut driver) = crate::rest::driver::sending_tests::established();
        let mut timer = std::pin::pin!(timer());
        // A small message from the peer, through the run loop's wait.
        macro_rules! message {
            ($conn:expr) => {
                peer.send(Message::binary(vec![1; 40])).await.unwrap();
                let input =
                    next_input(&mut ours, $conn, &mut commands, &mut driver, timer.as_mut()).await;
                assert!(matches!(input, Input::Message(_)), "{input:?}");
            };
        }
        // No stream yet: each small read has its own allocation, gone with its message.
        message!(&client);
        assert!(!ours.get_ref().keeps_small_reads());
        assert_eq!(ours.get_ref().buffer_capacity(), 0);
        let head = tether_proto::head::RequestHead::new(http::Method::GET, "/".parse().unwrap());
        client.open(head, true, None, Instant::now()).unwrap();
        message!(&client);
        assert!(ours.get_ref().keeps_small_reads());
        assert!(ours.get_ref().buffer_capacity() > 0);
        // Between requests (no stream open) it stays; a passed deadline frees it.
        let idle = Connection::server(Default::default(), Instant::now());
        message!(&idle);
        assert!(ours.get_ref().buffer_capacity() > 0);
        wait_quiet(&mut ours, &mut commands, &mut driver, timer.as_mut()).await;
        assert!(!ours.get_ref().keeps_small_reads());
        assert_eq!(ours.get_ref().buffer_capacity(), 0);
    }

    /// A read made again in the same poll of the task after one found the socket empty is
    /// skipped, at most `MAX_SKIPS` times, and loses nothing: a message that arrives in
    /// between has woken the task, whose next poll reads it. Outside a poll of `counted`
    /// nothing is skipped, and nothing is kept after one.
    #[tokio::test]
    async fn reads_skipped_in_one_poll_lose_nothing() {
        use crate::transport::read_ahead::differential::Woken;
        use std::future::Future;
        let (a, b) = tokio::io::duplex(1 << 20);
        let mut ours =
            WebSocketStream::from_raw_socket(ReadAhead::new(a, Role::Server), Role::Server, None)
                .await;
        let mut peer = WebSocketStream::from_raw_socket(b, Role::Client, None).await;
        let woken = std::sync::Arc::new(Woken::default());
        let waker = std::task::Waker::from(woken.clone());
        // What one read without waiting found: a message's first byte, or nothing.
        async fn read<S: AsyncRead + AsyncWrite + Unpin>(
            ws: &mut WebSocketStream<ReadAhead<S>>,
        ) -> Option<u8> {
            std::future::poll_fn(|cx| {
                Poll::Ready(match poll_ws(ws, cx) {
                    Poll::Ready(Some(Ok(Message::Binary(b)))) => Some(b[0]),
                    Poll::Pending => None,
                    other => panic!("{other:?}"),
                })
            })
            .await
        }
        // Runs `run` as one poll of a counted run loop (it never waits: the duplex has room).
        let one_poll = |run: std::pin::Pin<&mut dyn Future<Output = Vec<Option<u8>>>>| {
            let mut cx = Context::from_waker(&waker);
            match std::pin::pin!(counted(run)).poll(&mut cx) {
                Poll::Ready(found) => found,
                Poll::Pending => panic!("the poll waited"),
            }
        };

        // Empty; a message arrives and wakes the task; the read made again is skipped. The
        // next poll reads the message.
        let found = one_poll(std::pin::pin!(async {
            let empty = read(&mut ours).await;
            peer.send(Message::binary(vec![1])).await.unwrap();
            vec![empty, read(&mut ours).await]
        }));
        assert_eq!(found, [None, None], "empty, then skipped");
        assert!(woken.is_set(), "the message woke the task");
        assert_eq!(DRY.get(), 0, "nothing is kept after the poll");
        let found = one_poll(std::pin::pin!(async { vec![read(&mut ours).await] }));
        assert_eq!(found, [Some(1)], "the next poll reads it");

        // Skips are bounded: the read after MAX_SKIPS of them is made.
        let found = one_poll(std::pin::pin!(async {
            let mut found = vec![read(&mut ours).await];
            peer.send(Message::binary(vec![2])).await.unwrap();
            for _ in 0..=MAX_SKIPS {
                found.push(read(&mut ours).await);
            }
            found
        }));
        let mut expected = vec![None; 1 + usize::from(MAX_SKIPS)];
        expected.push(Some(2));
        assert_eq!(found, expected);

        // Not counted: every read is made.
        assert_eq!(read(&mut ours).await, None, "empty");
        peer.send(Message::binary(vec![3])).await.unwrap();
        assert_eq!(read(&mut ours).await, Some(3));
    }

    #[test]
    fn messages_round_trip() {
        let close = WsMessage::Close(Some(CloseFrame::new(CloseCode::REJECTED, "no")));
        for msg in [
            WsMessage::Binary(Bytes::from_static(b"\x01\x02")),
            WsMessage::Ping(Bytes::from_static(b"p")),
            WsMessage::Pong(Bytes::from_static(b"q")),
            WsMessage::Close(None),
            close,
        ] {
            let back = from_ws(to_ws(msg.clone()).unwrap()).unwrap();
            assert_eq!(back, msg);
        }
        assert_eq!(to_ws(WsMessage::Text(Bytes::from_static(b"x"))), None);
    }
}
