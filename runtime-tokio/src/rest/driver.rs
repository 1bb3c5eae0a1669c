//! The HTTP side of one connection task: turns the stream layer's events into requests
//! for the local service and responses for waiting callers, and the commands of bodies,
//! handlers and callers into calls on the connection's streams
//! ([`Connection::open`], [`Connection::stream`]), in the contract of
//! [`tether_proto::connection`].
//!
//! Of the duties the machine takes on by default, this side takes two back: it releases
//! flow-control capacity as the body's consumer reads ([`Driver::attach`] turns on manual
//! release, so the peer's window is the consumer's backpressure), and it serves requests
//! once a service is attached ([`Driver::sync_serving`]); until then the machine answers
//! them `501` by itself.
//!
//! Everything reaches the task through one queue of [`Command`]s
//! ([`queue`](crate::transport::queue): no memory while it is empty). It is unbounded, but
//! every kind of command is bounded by something else: opens by
//! [`RestConfig::max_queued_requests`] and the peer's stream limit, wake-ups of the bodies
//! we send by one per stream (see below), releases by the bytes the flow-control windows
//! let in, resets and drops by the number of streams.
//!
//! The bodies this end sends (our requests' bodies, the responses' of requests we serve)
//! are polled here, in the connection task, and only while their stream has room
//! ([`StreamMut::poll_writable`](tether_proto::streams::StreamMut::poll_writable): the
//! peer's credit, the connection's cap and the process-wide budget, spec/protocol.md §10.3,
//! §10.8), so an unread body waits in its source, never in this runtime, and a chunk goes
//! from its source into the machine without a hand-off between tasks. A body that is not
//! ready registers a waker of its stream ([`BodyWaker`]), which queues one
//! [`Command::BodyReady`] when it fires; a stream that is not writable is polled again on
//! its [`StreamEvent::Writable`]. So a body that is always ready (bytes in memory, a file)
//! fills the stream's share of the write burst in one go, and the burst leaves in one
//! `writev`, as an HTTP/1.1 connection writes its body (issue 11).
//!
//! The other way round, a received body handed to a socket ([`Body::into_socket`], the
//! tunnels of spec/protocol.md §10.9) is written here too: each DATA chunk goes from the
//! message to the socket as it arrives, and its credit goes back as the socket takes it
//! ([`super::sink`]).
//!
//! A response to our request reaches its caller at the end of the turn its head arrived
//! in, or earlier: when the DATA that ends its stream comes in the same turn (a small
//! response, whose frames one read brings together), the caller gets the whole body with
//! the head, and no queue is made between this task and the caller for it
//! ([`Driver::end_turn`]; with the configuration shared by a side's connections, 869
//! instructions of a small request one at a time, benches/RESULTS.md, twenty-second
//! pass).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use tether_proto::connection::Connection;
use tether_proto::streams::{OpenError, SendError, StreamEvent, StreamIdHasher};
use tether_proto::{RequestHead, ResponseHead, StreamId};
use tokio::sync::oneshot;
use tokio::task::AbortHandle;
use tower::{Service, ServiceExt};

use super::body::{body_queue, BodyTx};
use super::sink::Sink;
use super::{
    AnyBody, Body, BoxError, BoxService, ConnectionInfo, RequestError, RestConfig, ServiceSlot,
    Timeout,
};
use crate::transport::queue;

/// The slots of the command queue kept between requests: a request one at a time takes
/// one or two commands (its `Open`, the `Release` of its response's body), which would
/// otherwise allocate the queue's slots and free them again each time (with a stream's
/// send queue, 427 instructions of a small request at the two ends, benches/RESULTS.md,
/// twenty-second pass). At most 8 × 56 bytes: a connection keeps them until its next
/// deadline (its heartbeat) finds it with no stream open, or for its life if it has none.
pub(crate) const IDLE_SLOTS: usize = 8;

/// Room for held response heads kept between requests (see [`Driver::between_requests`]).
const IDLE_HELD: usize = 4;

/// The sending half of a connection task's command channel.
pub(crate) type CommandSender = queue::Sender<Command>;

/// What bodies, handlers and callers ask of a connection task. Large payloads are boxed:
/// a burst of commands (128 requests at a time) waits in the queue's slots.
#[derive(Debug)]
pub(crate) enum Command {
    /// Open a stream for a request (queued while the peer's stream limit is reached).
    Open(Box<Open>),
    /// A body we send on this stream has more to give (its [`BodyWaker`] fired): poll it
    /// again. At most one is queued per stream.
    BodyReady { id: StreamId },
    /// Send the response head of a request we serve; a small body that was ready at once
    /// comes with it (`body`, then `end` ends the stream after it), so a short answer
    /// costs one command. Otherwise the rest of the body comes too, for this task to send
    /// (`rest`: a frame already read, then the body).
    Respond {
        id: StreamId,
        head: Box<(ResponseHead, Option<RestOfBody>)>,
        body: Bytes,
        end: bool,
    },
    /// The application read `n` bytes of a received body.
    Release { id: StreamId, n: u32 },
    /// A received body was dropped before its end.
    BodyDropped { id: StreamId },
    /// Write the received body of this stream to a socket from now on
    /// ([`Body::into_socket`]); the body still holds what arrived before.
    Sink {
        id: StreamId,
        body: Box<(
            Body,
            tokio::net::tcp::OwnedWriteHalf,
            Option<super::sink::Hold>,
        )>,
    },
    /// A [`Sink`]'s socket can take more: write again. At most one is queued per stream.
    SinkReady { id: StreamId },
    /// A caller gave up before its response head: the streams (and queued requests)
    /// whose callers are gone are reset (dropped), each with the code the spec gives
    /// ([`StreamMut::abandon`]). At most one per caller; each looks at every stream
    /// still waiting for its head.
    ///
    /// [`StreamMut::abandon`]: tether_proto::streams::StreamMut::abandon
    CallerGone,
    /// This end gave up on a stream (a caller went away, a handler or a body panicked):
    /// the machine resets it with the code the spec gives ([`StreamMut::abandon`]).
    ///
    /// [`StreamMut::abandon`]: tether_proto::streams::StreamMut::abandon
    Abandon { id: StreamId },
}

/// A body not sent with its head: a frame already read (sent first), then the body.
pub(crate) type RestOfBody = (Option<BodyFrame>, AnyBody);

/// A request waiting to be opened.
#[derive(Debug)]
pub(crate) struct Open {
    pub(crate) request: Request<AnyBody>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) reply: oneshot::Sender<Result<Response<Body>, Failed>>,
}

/// Why an [`Open`] got no response.
#[derive(Debug)]
pub(crate) enum Failed {
    /// It was never sent (the connection ended or went away first): the request is handed
    /// back so the caller can send it on the next connection.
    Unsent(Box<Request<AnyBody>>),
    /// It failed.
    Error(RequestError),
}

/// What the task keeps for one open stream.
#[derive(Default)]
struct Slot {
    /// Where the received body goes (the response body of our request, or the request
    /// body of a request we serve).
    body: Option<BodyTx>,
    /// The caller waiting for the response head.
    reply: Option<oneshot::Sender<Result<Response<Body>, Failed>>>,
    /// The timeout of our request, for its error.
    timeout: Option<Duration>,
    /// A chunk the machine refused (its send queue was full), sent again on `Writable`.
    pending: Option<(Bytes, bool)>,
    /// The body we send on this stream, until its end is in the machine (boxed: a slot
    /// without one stays small).
    sending: Option<Box<Sending>>,
    /// The service call working for this stream in a task of its own.
    task: Option<AbortHandle>,
    /// Why our request body failed, for the caller (the stream is being reset).
    body_error: Option<BoxError>,
    /// The socket the received body is written to, instead of `body` (boxed: a slot
    /// without one stays small).
    sink: Option<Box<Sink>>,
}

/// Most frames one call of [`Driver::pump`] takes from a body. The stream's room bounds the
/// bytes; this bounds the work for a body of many tiny frames (a body of 64 KiB chunks
/// never comes near it: the stream's room ends first).
const PUMP_POLLS: usize = 64;

/// A body this end sends on a stream, polled by the connection task (see the module docs).
struct Sending {
    body: AnyBody,
    /// A frame read before the body came here (looking for a small body to send with the
    /// response head), sent first.
    prefix: Option<BodyFrame>,
    /// The body's waker, and the flag that keeps its wake-ups to one queued command.
    waker: Waker,
    woken: Arc<BodyWaker>,
    /// The stream no longer takes data (it ended or was reset): the body waits for the
    /// stream's `Closed` event, which decides whether it is drained ([`linger`]) or dropped.
    stopped: bool,
}

impl Sending {
    fn new(id: StreamId, prefix: Option<BodyFrame>, body: AnyBody, tx: &CommandSender) -> Self {
        let woken = Arc::new(BodyWaker {
            id,
            tx: tx.clone(),
            queued: AtomicBool::new(false),
        });
        Sending {
            body,
            prefix,
            waker: Waker::from(woken.clone()),
            woken,
            stopped: false,
        }
    }

    /// The body, for [`linger`].
    fn into_body(mut self) -> AnyBody {
        std::mem::replace(&mut self.body, AnyBody::empty())
    }
}

impl Drop for Sending {
    fn drop(&mut self) {
        // The body is the application's: a drop that panics must not take the connection
        // task with it (a body in a task of its own would only have ended that task).
        let body = std::mem::replace(&mut self.body, AnyBody::empty());
        if std::panic::catch_unwind(AssertUnwindSafe(move || drop(body))).is_err() {
            tracing::warn!("a response or request body panicked when dropped");
        }
    }
}

/// The waker of a body this end sends: queues one [`Command::BodyReady`] for its stream,
/// and no more until the connection task polled the body again.
struct BodyWaker {
    id: StreamId,
    tx: CommandSender,
    queued: AtomicBool,
}

impl std::task::Wake for BodyWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            // A connection that is gone has nothing to poll.
            let _ = self.tx.send(Command::BodyReady { id: self.id });
        }
    }
}

/// The HTTP side of one connection task (see the module docs).
pub(crate) struct Driver {
    tx: CommandSender,
    rx: queue::Receiver<Command>,
    slots: HashMap<StreamId, Slot, StreamIdHasher>,
    queued: VecDeque<Box<Open>>,
    config: Arc<RestConfig>,
    service: Arc<ServiceSlot>,
    /// This connection's clone of the handle's service, and the slot's generation it was
    /// taken at: taken again only when the handle's service changed (or this one failed).
    own: Option<(u64, BoxService)>,
    info: Option<ConnectionInfo>,
    metrics: Option<crate::metrics::Metrics>,
    /// The machine was told that this side serves requests (a service is attached).
    serving: bool,
    /// Whether to poll the service in the connection task first (see [`Driver::serve`]).
    inline: InlineServe,
    /// Since [`Driver::begin_turn`]: requests handed to a handler task and responses
    /// handed to a waiting caller, each of which usually answers with a command soon
    /// (`Respond`, or the caller's next `Open`)...
    handed: u32,
    /// ...and those answers received.
    answered: u32,
    /// Final response heads of our requests not handed to their callers yet: each goes
    /// with its whole body when the DATA that ends the stream follows in the same turn, or
    /// with a streaming body at the end of the turn (see [`Driver::end_turn`]).
    held: Vec<(StreamId, ResponseHead)>,
}

impl Driver {
    pub(crate) fn new(config: Arc<RestConfig>, service: Arc<ServiceSlot>) -> Self {
        let (tx, rx) = queue::unbounded();
        Driver {
            tx,
            rx,
            slots: HashMap::default(),
            queued: VecDeque::new(),
            config,
            service,
            own: None,
            info: None,
            metrics: None,
            serving: false,
            inline: InlineServe::default(),
            handed: 0,
            answered: 0,
            held: Vec::new(),
        }
    }

    /// Sets up `conn` for this HTTP side, before its first input: received bodies are
    /// released as their consumer reads them, and requests are served if a service is
    /// attached already.
    pub(crate) fn attach(&mut self, conn: &mut Connection) {
        conn.set_manual_release(true);
        // This side decides, whatever the connection config says.
        self.serving = self.service.is_set();
        conn.set_serve_requests(self.serving);
    }

    /// Tells the machine that this side serves requests once a service is attached
    /// (call before each inbound message; the slot is never emptied again).
    pub(crate) fn sync_serving(&mut self, conn: &mut Connection) {
        if !self.serving && self.service.is_set() {
            self.serving = true;
            conn.set_serve_requests(true);
        }
    }

    /// Where served requests are counted (by status class).
    pub(crate) fn set_metrics(&mut self, metrics: crate::metrics::Metrics) {
        self.metrics = Some(metrics);
    }

    /// A sender for callers of this connection.
    pub(crate) fn sender(&self) -> CommandSender {
        self.tx.clone()
    }

    /// The handshake completed: who the connection is, for served requests.
    pub(crate) fn set_info(&mut self, info: ConnectionInfo) {
        self.info = Some(info);
    }

    /// The next command (never ends: the driver holds a sender itself).
    pub(crate) async fn recv(&mut self) -> Command {
        match self.rx.recv().await {
            Some(cmd) => cmd,
            None => std::future::pending().await,
        }
    }

    /// A command that is already waiting, to batch a burst before writing.
    pub(crate) fn try_recv(&mut self) -> Option<Command> {
        self.rx.try_recv()
    }

    /// How many of its slots the command queue keeps when it runs empty (see
    /// [`queue::Receiver::keep_slots`]): all while streams are open, when more commands are
    /// coming; a few between requests ([`IDLE_SLOTS`]); none once the connection is quiet.
    pub(crate) fn keep_slots(&mut self, slots: usize) {
        self.rx.keep_slots(slots);
    }

    /// No stream is open: the command queue keeps only a few slots for the next request,
    /// and the list of held heads only room for a few (one turn of many responses grew
    /// it), so that a connection without a heartbeat, which is never
    /// [`quiet`](Self::quiet), does not keep a burst's room for its life.
    pub(crate) fn between_requests(&mut self) {
        self.rx.keep_slots(IDLE_SLOTS);
        if self.held.capacity() > IDLE_HELD {
            self.held = Vec::new();
        }
    }

    /// The connection is quiet (a deadline found it with no stream open): what is kept
    /// for the next request goes, the command queue's slots and the list of held heads.
    pub(crate) fn quiet(&mut self) {
        self.rx.keep_slots(0);
        self.held = Vec::new();
    }

    /// The command queue's slots allocated now.
    #[cfg(test)]
    pub(crate) fn command_slots(&self) -> usize {
        self.rx.capacity()
    }

    /// A loop turn starts: forget what earlier turns handed to other tasks.
    pub(crate) fn begin_turn(&mut self) {
        self.handed = 0;
        self.answered = 0;
    }

    /// Whether this turn handed requests or responses to other tasks (handlers, callers)
    /// of which at least two have not answered yet: their commands would leave in this turn's write burst
    /// if the connection task let them run first (see `conn::Turn`).
    ///
    /// One alone is not waited for: its answer wakes the connection task anyway, and
    /// there is nothing to batch it with (yielding would only let the other worker take
    /// the connection task away from the one running the handler).
    pub(crate) fn awaits_answers(&self) -> bool {
        self.handed.saturating_sub(self.answered) >= 2
    }

    // ---- commands

    pub(crate) fn on_command(&mut self, conn: &mut Connection, cmd: Command, now: Instant) {
        if matches!(
            cmd,
            Command::Open(_)
                | Command::Respond { .. }
                | Command::Abandon { .. }
                | Command::Sink { .. }
        ) {
            self.answered = self.answered.saturating_add(1);
        }
        match cmd {
            Command::Open(open) => {
                if self.queued.len() >= self.config.max_queued_requests {
                    // Callers that gave up while they waited hold no place in the queue
                    // (amortised: only when it is full).
                    self.queued.retain(|o| !o.reply.is_closed());
                }
                if self.queued.is_empty() {
                    self.open(conn, open, now);
                } else if self.queued.len() >= self.config.max_queued_requests {
                    let _ = open.reply.send(Err(Failed::Error(RequestError::QueueFull)));
                } else {
                    self.queued.push_back(open);
                }
            }
            Command::BodyReady { id } => self.pump(conn, id, now),
            Command::Respond {
                id,
                head,
                body,
                end,
            } => {
                let (head, rest) = *head;
                self.respond(conn, id, head, body, end);
                if let Some((prefix, rest)) = rest {
                    self.send_body(conn, id, prefix, rest, now);
                }
            }
            Command::Release { id, n } => {
                if let Ok(mut stream) = conn.stream(id) {
                    stream.release_capacity_at(n, now);
                }
            }
            Command::BodyDropped { id } => {
                let Some(slot) = self.slots.get_mut(&id) else {
                    return;
                };
                slot.body = None;
                // The machine releases what was never read, picks CANCEL (our request) or
                // NO_ERROR after the response (the peer's), and reports no more of it.
                if let Ok(mut stream) = conn.stream(id) {
                    stream.discard_body(now);
                }
            }
            Command::Abandon { id } => {
                if let Ok(mut stream) = conn.stream(id) {
                    stream.abandon(now);
                }
            }
            Command::CallerGone => {
                // A request not opened yet is dropped when its turn comes (`open`); these
                // give their place in the queue back now.
                self.queued.retain(|o| !o.reply.is_closed());
                for (id, slot) in &self.slots {
                    if slot.reply.as_ref().is_some_and(|r| r.is_closed()) {
                        if let Ok(mut stream) = conn.stream(*id) {
                            stream.abandon(now);
                        }
                    }
                }
            }
            Command::Sink { id, body } => self.adopt_sink(conn, id, *body, now),
            Command::SinkReady { id } => self.write_sink(conn, id, now),
        }
    }

    /// Takes over writing the received body of stream `id` to `socket` (see
    /// [`super::sink`]): what the body's queue holds is written first.
    fn adopt_sink(
        &mut self,
        conn: &mut Connection,
        id: StreamId,
        (mut body, socket, hold): (
            Body,
            tokio::net::tcp::OwnedWriteHalf,
            Option<super::sink::Hold>,
        ),
        now: Instant,
    ) {
        let slot = match self.slots.get_mut(&id) {
            Some(slot) if slot.sink.is_none() && slot.body.is_some() => slot,
            // The stream is done with (closed, or its body ended before the last chunk
            // was read): a task writes what the body still holds.
            _ => return drop(tokio::spawn(super::sink::write_body(body, socket, hold))),
        };
        let Some(mut rx) = body.take_incoming() else {
            return drop(tokio::spawn(super::sink::write_body(body, socket, hold)));
        };
        let mut sink = Box::new(Sink::new(id, socket, hold, &self.tx));
        while let Some(chunk) = rx.try_recv() {
            match chunk.item {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        sink.push(data);
                    }
                }
                Err(_) => return sink.abort(), // a Closed event follows
            }
        }
        slot.body = None;
        slot.sink = Some(sink);
        flush_sink(slot, conn, id, now);
    }

    /// The socket of stream `id`'s [`Sink`] can take more ([`Command::SinkReady`]).
    fn write_sink(&mut self, conn: &mut Connection, id: StreamId, now: Instant) {
        if let Some(slot) = self.slots.get_mut(&id) {
            flush_sink(slot, conn, id, now);
        }
    }

    /// Sends the response head of a request we serve, with a small body that was ready at
    /// once (`body`; `end` ends the stream after it).
    fn respond(
        &mut self,
        conn: &mut Connection,
        id: StreamId,
        head: ResponseHead,
        body: Bytes,
        end: bool,
    ) {
        let Ok(mut stream) = conn.stream(id) else {
            return;
        };
        if let Some(m) = &self.metrics {
            if head.status.as_u16() >= 200 {
                m.request(crate::metrics::RequestDirection::Served, head.status);
            }
        }
        let inline = !body.is_empty();
        match stream.send_response(head, end && !inline) {
            // Nothing of the stream is queued yet, so it takes the chunk whatever
            // the peer's window (spec/protocol.md §10.3); the machine sends it as
            // the window allows.
            Ok(()) if inline => self.send_data(conn, id, body, end),
            Ok(()) => {}
            // The machine already reset the stream (spec/protocol.md §5).
            Err(e @ SendError::HeadTooLarge { .. }) => tracing::warn!(%id, "{e}"),
            Err(e) => tracing::debug!(%id, "response not sent: {e}"),
        }
    }

    fn open(&mut self, conn: &mut Connection, open: Box<Open>, now: Instant) {
        if open.reply.is_closed() {
            return; // the caller gave up while it waited
        }
        match conn.can_open() {
            Ok(()) => {}
            Err(OpenError::Blocked) => {
                self.queued.push_front(open);
                return;
            }
            Err(OpenError::GoingAway | OpenError::NotEstablished) => {
                let _ = open.reply.send(Err(Failed::Unsent(Box::new(open.request))));
                return;
            }
            Err(_) => {
                let _ = open.reply.send(Err(Failed::Error(RequestError::Refused)));
                return;
            }
        }
        let Open {
            request,
            timeout,
            reply,
        } = *open;
        let (parts, body) = request.into_parts();
        let end = body.is_end_stream();
        let head = RequestHead::from_parts(parts);
        let id = match conn.open(head, end, timeout, now) {
            Ok(id) => id,
            Err(e) => {
                // can_open said yes: only the head can refuse it now, by its size (§5) or
                // a request-target §4.1 refuses (InvalidTarget, reported as InvalidRequest).
                let error = match e {
                    OpenError::HeadTooLarge(size) => RequestError::HeadTooLarge {
                        bytes: size.bytes,
                        fields: size.fields,
                    },
                    other => RequestError::InvalidRequest(other.to_string()),
                };
                let _ = reply.send(Err(Failed::Error(error)));
                return;
            }
        };
        let slot = Slot {
            reply: Some(reply),
            timeout,
            ..Slot::default()
        };
        self.slots.insert(id, slot);
        if !end {
            self.send_body(conn, id, None, body, now);
        }
    }

    fn open_queued(&mut self, conn: &mut Connection, now: Instant) {
        while let Some(open) = self.queued.pop_front() {
            let before = self.queued.len();
            self.open(conn, open, now);
            if self.queued.len() > before {
                return; // blocked again: it went back to the front
            }
        }
    }

    /// Queues a chunk of the body we send on stream `id`; a chunk the machine has no room
    /// for waits in the slot for the stream's `Writable` event.
    fn send_data(&mut self, conn: &mut Connection, id: StreamId, chunk: Bytes, end: bool) {
        let result = match conn.stream(id) {
            Ok(mut stream) => stream.send_data(chunk, end),
            Err(_) => Err(SendError::UnknownStream(id)),
        };
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        match result {
            Ok(()) => {}
            Err(SendError::Blocked { data, .. }) => slot.pending = Some((data, end)),
            // The stream ended meanwhile: its body is read no further.
            Err(e) => {
                tracing::trace!(%id, "data not sent: {e}");
                if let Some(sending) = &mut slot.sending {
                    sending.stopped = true;
                }
            }
        }
    }

    /// Starts sending `body` on stream `id` (after `prefix`, a frame already read).
    fn send_body(
        &mut self,
        conn: &mut Connection,
        id: StreamId,
        prefix: Option<BodyFrame>,
        body: AnyBody,
        now: Instant,
    ) {
        let sending = Box::new(Sending::new(id, prefix, body, &self.tx));
        let Some(slot) = self.slots.get_mut(&id) else {
            return; // the stream is gone: the body is dropped
        };
        slot.sending = Some(sending);
        self.pump(conn, id, now);
    }

    /// Moves the body we send on stream `id` into the machine, chunk by chunk, for as long
    /// as the stream has room and the body has a chunk ready (see the module docs). Each
    /// chunk is read only once the stream has room for it (spec/protocol.md §10.3): what
    /// the body gives is in the machine, never held here, except a chunk larger than the
    /// room left (it waits in the slot for `Writable`). Bounded by the stream's room.
    fn pump(&mut self, conn: &mut Connection, id: StreamId, now: Instant) {
        for polls in 0.. {
            let Some(slot) = self.slots.get_mut(&id) else {
                return;
            };
            let Some(sending) = slot.sending.as_mut() else {
                return;
            };
            if sending.stopped || slot.pending.is_some() {
                return;
            }
            if polls == PUMP_POLLS {
                // A body of many tiny (or empty) frames: the rest waits for a later turn,
                // behind this turn's write and the other streams.
                sending.waker.wake_by_ref();
                return;
            }
            let writable = match conn.stream(id) {
                Ok(mut stream) => stream.poll_writable(),
                Err(_) => false,
            };
            if !writable {
                return; // polled again on `Writable` (or dropped on `Closed`)
            }
            // Cleared before the poll: a wake-up during or after it queues a command.
            sending.woken.queued.store(false, Ordering::Release);
            let prefix = sending.prefix.take();
            let body = &mut sending.body;
            let mut cx = Context::from_waker(&sending.waker);
            // The body is the application's: a panic in it fails this stream, not the task.
            // Polled outside tokio's cooperative budget, which this task's own reads and
            // writes spend: a body on a tokio channel would otherwise answer `Pending` and
            // wake itself at once, over and over, until the turn ends. The stream's room and
            // `PUMP_POLLS` bound the work here instead.
            let polled = std::panic::catch_unwind(AssertUnwindSafe(|| {
                let next = match prefix {
                    Some(frame) => Poll::Ready(Some(frame)),
                    None => {
                        let frame = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx));
                        Pin::new(&mut tokio::task::unconstrained(frame)).poll(&mut cx)
                    }
                };
                next.map(|frame| frame.map(|frame| (frame, body.is_end_stream())))
            }));
            let (frame, end) = match polled {
                Ok(Poll::Pending) => return, // its waker queues `BodyReady`
                Ok(Poll::Ready(Some(next))) => next,
                Ok(Poll::Ready(None)) => {
                    slot.sending = None;
                    return self.send_data(conn, id, Bytes::new(), true);
                }
                Err(_) => {
                    // The body panicked: the stream is reset so the other end hears of it
                    // at once (the machine picks the code).
                    tracing::warn!(%id, "body panicked");
                    slot.sending = None;
                    if let Ok(mut stream) = conn.stream(id) {
                        stream.abandon(now);
                    }
                    return;
                }
            };
            match frame {
                Ok(frame) => match frame.into_data() {
                    Ok(mut chunk) => {
                        if !chunk.has_remaining() && !end {
                            continue;
                        }
                        let chunk = chunk.copy_to_bytes(chunk.remaining());
                        if end {
                            slot.sending = None;
                        }
                        self.send_data(conn, id, chunk, end);
                        if end {
                            return;
                        }
                    }
                    Err(frame) => {
                        slot.sending = None;
                        let Ok(trailers) = frame.into_trailers() else {
                            return; // a frame kind http-body may add: not ours to guess
                        };
                        let Ok(mut stream) = conn.stream(id) else {
                            return;
                        };
                        match stream.send_trailers(trailers) {
                            Ok(()) => {}
                            // The machine already reset the stream (spec/protocol.md §5).
                            Err(e @ SendError::HeadTooLarge { .. }) => tracing::warn!(%id, "{e}"),
                            Err(e) => tracing::debug!(%id, "trailers not sent: {e}"),
                        }
                        return;
                    }
                },
                Err(error) => {
                    // The caller still waiting for the response head hears why.
                    tracing::debug!(%id, "body failed: {error}");
                    slot.sending = None;
                    slot.body_error = Some(error);
                    if let Ok(mut stream) = conn.stream(id) {
                        stream.abandon(now);
                    }
                    return;
                }
            }
        }
    }

    // ---- events of the stream layer

    pub(crate) fn on_event(&mut self, conn: &mut Connection, event: StreamEvent, now: Instant) {
        match event {
            StreamEvent::Request {
                id,
                head,
                end_stream,
            } => self.serve(conn, id, head, end_stream, now),
            StreamEvent::Response {
                id,
                head,
                end_stream,
            } => {
                if head.status.is_informational() {
                    return; // a final head follows
                }
                if end_stream {
                    self.hand(id, head, Some(Bytes::new()));
                } else {
                    // Its body may be complete before the turn ends (a small response's
                    // DATA follows its head in the same read): then it goes whole, with no
                    // queue between this task and the caller (`end_turn`). A head without
                    // a caller is dropped when it is handed.
                    self.held.push((id, head));
                }
            }
            StreamEvent::Data {
                id,
                data,
                end_stream,
            } => {
                if let Some(head) = self.unhold(id) {
                    // The stream closed with this DATA: the machine credited its bytes
                    // back already (spec/protocol.md §10.3), so the whole body goes with
                    // the head. Otherwise (our request body still going), it streams.
                    if end_stream && conn.stream(id).is_err() {
                        return self.hand(id, head, Some(data));
                    }
                    self.hand(id, head, None);
                }
                let n = u32::try_from(data.len()).unwrap_or(u32::MAX);
                let mut delivered = false;
                if let Some(slot) = self.slots.get_mut(&id) {
                    if let Some(sink) = slot.sink.as_mut() {
                        sink.push(data);
                        if end_stream {
                            sink.end();
                        }
                        return flush_sink(slot, conn, id, now);
                    }
                    if let (Some(tx), true) = (&slot.body, n > 0) {
                        // Only the last DATA can close the stream; if it did, the machine
                        // credited its bytes back already (spec/protocol.md §10.3).
                        delivered = if end_stream && conn.stream(id).is_err() {
                            tx.send_credited(data)
                        } else {
                            tx.send(Ok(http_body::Frame::data(data)))
                        };
                    }
                    if end_stream {
                        slot.body = None; // the body ends
                    }
                }
                // Nobody reads it (its body was dropped and the machine has not heard yet):
                // the window goes back now.
                if !delivered && n > 0 {
                    if let Ok(mut stream) = conn.stream(id) {
                        stream.release_capacity_at(n, now);
                    }
                }
            }
            StreamEvent::Trailers { id, trailers } => {
                self.release_held(id);
                if let Some(slot) = self.slots.get_mut(&id) {
                    if let Some(sink) = slot.sink.as_mut() {
                        // A byte stream has no trailers; they end it all the same.
                        sink.end();
                        return flush_sink(slot, conn, id, now);
                    }
                }
                if let Some(tx) = self.slots.get_mut(&id).and_then(|s| s.body.take()) {
                    let _ = tx.send(Ok(http_body::Frame::trailers(trailers)));
                }
            }
            StreamEvent::Writable { id } => {
                let Some(slot) = self.slots.get_mut(&id) else {
                    return;
                };
                if let Some((data, end)) = slot.pending.take() {
                    self.send_data(conn, id, data, end);
                }
                self.pump(conn, id, now);
            }
            StreamEvent::CanOpen => self.open_queued(conn, now),
            // No new streams on this connection: what waits goes back to its caller.
            StreamEvent::GoAway { .. } => self.going_away(),
            StreamEvent::Closed { id, outcome } => {
                self.release_held(id);
                let Some(mut slot) = self.slots.remove(&id) else {
                    return;
                };
                // A finished exchange leaves nothing to stop, except a request body the
                // peer answered before reading it all: its source is drained for a bounded
                // time (see `linger`). Any other end stops the body and the service call
                // at once.
                if matches!(outcome, tether_proto::streams::Outcome::Finished) {
                    if let Some(sending) = slot.sending.take() {
                        tokio::spawn(linger(sending.into_body()));
                    }
                    if let Some(sink) = slot.sink.take() {
                        sink.finish_later();
                    }
                } else {
                    if let Some(task) = slot.task.take() {
                        task.abort();
                    }
                    if let Some(sink) = slot.sink.take() {
                        sink.abort();
                    }
                }
                if let Some(error) = super::BodyError::from_outcome(&outcome) {
                    if let Some(tx) = slot.body.take() {
                        let _ = tx.send(Err(error));
                    }
                }
                if let Some(reply) = slot.reply.take() {
                    let error = match slot.body_error.take() {
                        Some(error) => RequestError::Body(error),
                        None => RequestError::from_outcome(outcome, slot.timeout),
                    };
                    let _ = reply.send(Err(Failed::Error(error)));
                }
            }
            other => tracing::trace!(?other, "stream event"),
        }
    }

    /// Hands the final response head of our request `id` to its caller, with the whole
    /// body (`full`) or, for `None`, a body that streams what is still to come.
    fn hand(&mut self, id: StreamId, head: ResponseHead, full: Option<Bytes>) {
        let Some(slot) = self.slots.get_mut(&id) else {
            return;
        };
        let Some(reply) = slot.reply.take() else {
            return;
        };
        let body = match full {
            Some(data) => Body::from(data),
            None => incoming(slot, id, false, &head.headers, &self.tx),
        };
        let mut response = Response::new(body);
        *response.status_mut() = head.status;
        *response.headers_mut() = head.headers;
        *response.version_mut() = Version::HTTP_11;
        if let Some(info) = &self.info {
            response.extensions_mut().insert(info.clone());
        }
        self.handed = self.handed.saturating_add(1);
        if reply.send(Ok(response)).is_err() {
            // The caller is gone; the body it never saw is dropped with the response and
            // cancels the stream (or, whole, had nothing left to cancel).
            tracing::trace!(%id, "response for a caller that gave up");
        }
    }

    /// The held response head of stream `id`, no longer held.
    fn unhold(&mut self, id: StreamId) -> Option<ResponseHead> {
        if self.held.is_empty() {
            return None;
        }
        let i = self.held.iter().position(|(held, _)| *held == id)?;
        Some(self.held.remove(i).1)
    }

    /// Hands the held response head of stream `id`, if any, with a streaming body: what
    /// comes next on the stream is not the DATA that ends it.
    fn release_held(&mut self, id: StreamId) {
        if let Some(head) = self.unhold(id) {
            self.hand(id, head, None);
        }
    }

    /// The turn's inputs are handled: the response heads still held go to their callers,
    /// with bodies that stream the rest. Call before each write burst (a head is never
    /// held past the turn it arrived in) and before [`finish`](Self::finish).
    #[inline]
    pub(crate) fn end_turn(&mut self) {
        if !self.held.is_empty() {
            self.hand_held();
        }
    }

    fn hand_held(&mut self) {
        // Its allocation stays for the next turn's ([`quiet`](Self::quiet) frees it).
        let mut held = std::mem::take(&mut self.held);
        for (id, head) in held.drain(..) {
            self.hand(id, head, None);
        }
        self.held = held;
    }

    /// A request from the peer: hand it to the service (or answer 501 without one).
    fn serve(
        &mut self,
        conn: &mut Connection,
        id: StreamId,
        head: RequestHead,
        end_stream: bool,
        now: Instant,
    ) {
        let generation = self.service.generation();
        if self.own.as_ref().is_none_or(|(own, _)| *own != generation) {
            self.own = self.service.get();
        }
        let Some((_, service)) = self.own.as_mut() else {
            // Unreachable: the machine delivers requests only after `sync_serving` saw a
            // service, and the slot is never emptied. Treated as a failed handler.
            tracing::error!(%id, "request delivered without a service");
            if let Ok(mut stream) = conn.stream(id) {
                stream.abandon(now);
            }
            return;
        };
        let mut slot = Slot::default();
        let body = incoming(&mut slot, id, end_stream, &head.headers, &self.tx);
        let mut request = Request::new(body);
        *request.method_mut() = head.method;
        *request.uri_mut() = head.uri;
        *request.headers_mut() = head.headers;
        *request.version_mut() = Version::HTTP_11;
        if let Some(info) = &self.info {
            request.extensions_mut().insert(info.clone());
        }
        // The caller's deadline (spec/protocol.md §10.6), which the machine runs too: the
        // time the caller had left when the head arrived.
        if let Some(ms) = head.timeout_ms {
            request
                .extensions_mut()
                .insert(Timeout(Duration::from_millis(ms)));
        }
        self.slots.insert(id, slot);
        // The connection's own service is called when it is ready at once (a router always
        // is). One that is not gets a clone that waits for its readiness with the call,
        // as `ServiceExt::oneshot` does; one that failed or panicked is dropped, and the
        // next request takes the handle's service again.
        let called = poll_once(|cx| match service.poll_ready(cx) {
            Poll::Ready(Ok(())) => Called::Now(service.call(request)),
            Poll::Ready(Err(e)) => Called::Failed(e),
            Poll::Pending => Called::Now(Box::pin(service.clone().oneshot(request))),
        });
        let mut call: Call = match called {
            Ok(Called::Now(call)) => call,
            Ok(Called::Failed(e)) => {
                self.own = None;
                Box::pin(std::future::ready(Err(e)))
            }
            Err(()) => {
                self.own = None;
                tracing::warn!(%id, "service panicked");
                if let Ok(mut stream) = conn.stream(id) {
                    stream.abandon(now);
                }
                return;
            }
        };
        // The service is polled once here, in the connection task: a handler that answers
        // at once, with a body that is ready (or small and complete), costs no task, no
        // command and no wake-up (issue 11). Anything else goes on in a task of its own.
        // A service whose calls keep having to wait (a proxy) is not polled here: that
        // first poll would only be done twice (see `InlineServe`).
        if !self.inline.try_now() {
            return self.serve_later(id, call);
        }
        let answered = match poll_once(|cx| call.as_mut().poll(cx)) {
            Ok(Poll::Ready(result)) => {
                self.inline.answered(true);
                let (head, mut body) = response_parts(id, result);
                poll_once(|cx| ready_body_now(&mut body, cx)).map(|ready| (head, body, ready))
            }
            Ok(Poll::Pending) => {
                self.inline.answered(false);
                return self.serve_later(id, call);
            }
            Err(()) => Err(()),
        };
        match answered {
            Ok((head, _, (first, true, _))) => self.respond(conn, id, head, first, true),
            Ok((head, body, (first, false, prefix))) => {
                self.respond(conn, id, head, first, false);
                self.send_body(conn, id, prefix, body, now);
            }
            // The service or its response body panicked: the stream is reset so the caller
            // hears of it at once (as a panicking handler task does, see `ResetOnDrop`).
            Err(()) => {
                tracing::warn!(%id, "service panicked");
                if let Ok(mut stream) = conn.stream(id) {
                    stream.abandon(now);
                }
            }
        }
    }

    /// The service did not answer at once: the call goes on in a task, which sends the
    /// response with [`Command::Respond`], with the body for this task to send unless it
    /// was small and ready at once.
    fn serve_later(&mut self, id: StreamId, call: Call) {
        self.handed = self.handed.saturating_add(1);
        let tx = self.tx.clone();
        let task = tokio::spawn(async move {
            // If the service or its response body panics (or this task is aborted), the
            // guard resets the stream so the caller hears of it at once.
            let guard = ResetOnDrop {
                id,
                tx: tx.clone(),
                armed: true,
            };
            let (head, mut body) = response_parts(id, call.await);
            let (first, end, prefix) = ready_body(&mut body).await;
            let rest = (!end).then_some((prefix, body));
            let _ = tx.send(Command::Respond {
                id,
                head: Box::new((head, rest)),
                body: first,
                end,
            });
            guard.disarm();
        });
        if let Some(slot) = self.slots.get_mut(&id) {
            slot.task = Some(task.abort_handle());
        }
    }

    /// This end sent GOAWAY: requests still waiting for a stream go back to their callers
    /// (a client's are sent again on its next connection).
    pub(crate) fn going_away(&mut self) {
        for open in self.queued.drain(..) {
            let _ = open.reply.send(Err(Failed::Unsent(Box::new(open.request))));
        }
    }

    /// The connection is over: every caller still waiting hears of it, and every body and
    /// handler of this connection stops. Requests never sent are handed back.
    pub(crate) fn finish(&mut self) {
        self.end_turn();
        self.rx.close();
        while let Some(cmd) = self.rx.try_recv() {
            if let Command::Open(open) = cmd {
                self.queued.push_back(open);
            }
        }
        for open in self.queued.drain(..) {
            let _ = open.reply.send(Err(Failed::Unsent(Box::new(open.request))));
        }
        for (_, mut slot) in self.slots.drain() {
            if let Some(task) = slot.task.take() {
                task.abort();
            }
            if let Some(tx) = slot.body.take() {
                let _ = tx.send(Err(super::BodyError::ConnectionLost));
            }
            if let Some(reply) = slot.reply.take() {
                let _ = reply.send(Err(Failed::Error(RequestError::ConnectionLost)));
            }
        }
    }
}

/// The body arriving on stream `id` (request or response alike): empty after
/// END_STREAM, else fed through `slot` as DATA frames arrive.
fn incoming(
    slot: &mut Slot,
    id: StreamId,
    end_stream: bool,
    headers: &HeaderMap,
    commands: &CommandSender,
) -> Body {
    if end_stream {
        return Body::empty();
    }
    let (tx, rx) = body_queue();
    slot.body = Some(tx);
    let content_length = tether_proto::head::content_length(headers);
    Body::incoming(id, rx, commands.clone(), content_length)
}

/// Writes what the [`Sink`] of `slot` holds as far as its socket takes it, releases that
/// much credit, and half-closes the socket once the body ended and everything is written
/// (see [`Driver::write_sink`]).
fn flush_sink(slot: &mut Slot, conn: &mut Connection, id: StreamId, now: Instant) {
    let Some(sink) = slot.sink.as_mut() else {
        return;
    };
    match sink.write_ready() {
        Ok(n) => {
            if n > 0 {
                if let Ok(mut stream) = conn.stream(id) {
                    stream.release_capacity_at(u32::try_from(n).unwrap_or(u32::MAX), now);
                }
            }
            if sink.is_done() {
                slot.sink = None; // dropping the write half sends the FIN
            }
        }
        Err(e) => {
            tracing::debug!(%id, "tunnel socket write failed: {e}");
            if let Some(sink) = slot.sink.take() {
                sink.abort();
            }
            // Nobody takes the rest: the stream is reset (CANCEL for our request,
            // INTERNAL_ERROR for one we serve) and the machine releases its window.
            if let Ok(mut stream) = conn.stream(id) {
                stream.abandon(now);
            }
        }
    }
}

/// A short `text/plain` response.
pub(crate) fn text_response(status: StatusCode, text: &'static str) -> Response<AnyBody> {
    let mut response = Response::new(AnyBody::Tether(Body::from(text)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A call of the service, going on.
type Call = Pin<Box<dyn Future<Output = Result<Response<AnyBody>, BoxError>> + Send>>;

/// What asking the connection's own service for its readiness gave (`Driver::serve`).
enum Called {
    /// Ready: called; or not ready yet: a clone of it waits with the request.
    Now(Call),
    /// Failed: the request is answered as by a failed call.
    Failed(BoxError),
}

/// A service's answer as a response head and body (a failed service answers 500).
fn response_parts(
    id: StreamId,
    result: Result<Response<AnyBody>, BoxError>,
) -> (ResponseHead, AnyBody) {
    let response = result.unwrap_or_else(|e| {
        tracing::warn!(%id, "service failed: {e}");
        text_response(StatusCode::INTERNAL_SERVER_ERROR, "service failed\n")
    });
    let (parts, body) = response.into_parts();
    let head = ResponseHead {
        status: parts.status,
        headers: parts.headers,
    };
    (head, body)
}

/// Whether a connection polls its service in its own task before handing the call to a
/// task of its own (`Driver::serve`), learnt from the service's answers.
///
/// Serving in the connection task pays when handlers answer at once (no task, no
/// hand-off: 128 small requests at a time went from 1.06× to 1.59× of h2 with the
/// batched turn). A service that has to wait for something, such as the CLI's upstream
/// proxy, gains nothing from it and loses: its first poll runs twice, and the tasks it
/// wakes queue behind the connection task (the CLI tunnel at one connection went from
/// 3,600–3,900 to 3,000–3,500 requests a second, benches/RESULTS.md "fourth pass"). So
/// after [`INLINE_MISSES`] calls in a row that had to wait, the connection stops polling
/// inline, and tries again once every [`INLINE_RETRY`] requests; one call answered at
/// once turns it back on.
#[derive(Debug, Default)]
struct InlineServe {
    /// Calls in a row that did not answer at once (saturating).
    misses: u8,
    /// Requests spawned without trying since the last try.
    skipped: u8,
}

/// Calls in a row that had to wait before a connection stops polling its service inline.
const INLINE_MISSES: u8 = 4;

/// While it does not, one request in this many is still tried inline.
const INLINE_RETRY: u8 = 32;

impl InlineServe {
    /// Whether to poll this request's call in the connection task.
    fn try_now(&mut self) -> bool {
        if self.misses < INLINE_MISSES {
            return true;
        }
        self.skipped += 1;
        if self.skipped >= INLINE_RETRY {
            self.skipped = 0;
            return true;
        }
        false
    }

    /// What the inline poll gave: an answer at once, or a call that has to wait.
    fn answered(&mut self, at_once: bool) {
        self.misses = if at_once {
            0
        } else {
            self.misses.saturating_add(1)
        };
    }
}

/// Polls `f` once without a task to wake (whoever goes on polling it later registers its
/// own waker); `Err` if it panicked.
fn poll_once<T>(f: impl FnOnce(&mut Context<'_>) -> T) -> Result<T, ()> {
    let mut cx = Context::from_waker(Waker::noop());
    std::panic::catch_unwind(AssertUnwindSafe(|| f(&mut cx))).map_err(|_| ())
}

/// Resets its stream when dropped armed (the handler panicked or was aborted).
struct ResetOnDrop {
    id: StreamId,
    tx: CommandSender,
    armed: bool,
}

impl ResetOnDrop {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for ResetOnDrop {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.tx.send(Command::Abandon { id: self.id });
        }
    }
}

/// One item of a body: a frame or its error.
pub(crate) type BodyFrame = Result<http_body::Frame<Bytes>, BoxError>;

/// Response bodies up to this size that are ready at once go out with their head.
const INLINE_BODY: u64 = 16 * 1024;

/// Looks at a response body once, without waiting: a small body (exact size at most
/// [`INLINE_BODY`]) whose one data frame is ready and ends it is returned whole, to go with
/// the head (`(bytes, true, None)`); a body already at its end gives `(empty, true, None)`.
/// Anything else was not consumed, except a frame that could not go with the head (a data
/// frame that does not end the body, trailers, an error), returned for the pump to send
/// first.
async fn ready_body(body: &mut AnyBody) -> (Bytes, bool, Option<BodyFrame>) {
    std::future::poll_fn(|cx| Poll::Ready(ready_body_now(body, cx))).await
}

/// [`ready_body`] with the caller's context.
fn ready_body_now(body: &mut AnyBody, cx: &mut Context<'_>) -> (Bytes, bool, Option<BodyFrame>) {
    if body.is_end_stream() {
        return (Bytes::new(), true, None);
    }
    if body.size_hint().exact().is_none_or(|n| n > INLINE_BODY) {
        return (Bytes::new(), false, None);
    }
    match Pin::new(&mut *body).poll_frame(cx) {
        Poll::Pending => (Bytes::new(), false, None),
        Poll::Ready(None) => (Bytes::new(), true, None),
        Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
            Ok(mut data) if body.is_end_stream() && data.has_remaining() => {
                (data.copy_to_bytes(data.remaining()), true, None)
            }
            Ok(data) => (Bytes::new(), false, Some(Ok(http_body::Frame::data(data)))),
            Err(frame) => (Bytes::new(), false, Some(Ok(frame))),
        },
        Poll::Ready(Some(Err(e))) => (Bytes::new(), false, Some(Err(e))),
    }
}

/// How long, and how many bytes, a request body the peer no longer wants is still read
/// and thrown away (see [`linger`]).
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 16 * 1024 * 1024;

/// The stream ended while its body source still had bytes: when the peer answered without
/// reading the whole request (an early 200, a 413), the source is usually an HTTP/1.1
/// client still uploading through the gateway. Dropping its body at once makes hyper close
/// a socket with unread bytes, which resets the connection and can destroy the response on
/// its way to the client (curl: "Send failure: Broken pipe"). So the rest is read and
/// discarded, as an HTTP server's lingering close does, for at most [`LINGER_TIME`] and
/// [`LINGER_BYTES`]; then the body is dropped. (A stream that was reset or lost has its
/// body dropped instead and never gets here.)
async fn linger(mut body: AnyBody) {
    let drained = async {
        let mut seen = 0usize;
        while seen < LINGER_BYTES {
            match body.frame().await {
                Some(Ok(frame)) => {
                    seen = seen.saturating_add(frame.data_ref().map_or(0, |d| d.remaining()))
                }
                _ => return,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drained).await;
}

#[cfg(test)]
mod tests {
    /// Between requests a connection keeps room for a few held heads, not a burst's.
    #[test]
    fn between_requests_the_room_of_a_burst_goes() {
        let mut driver = super::Driver::new(Default::default(), Default::default());
        driver.held = Vec::with_capacity(64);
        driver.between_requests();
        assert_eq!(driver.held.capacity(), 0);
        driver.held = Vec::with_capacity(super::IDLE_HELD);
        driver.between_requests();
        assert_eq!(driver.held.capacity(), super::IDLE_HELD, "a few are kept");
        driver.quiet();
        assert_eq!(driver.held.capacity(), 0);
    }

    /// A burst of commands waits in the queue's slots (freed when it drains): keep a
    /// command small.
    #[test]
    fn commands_stay_small() {
        assert!(std::mem::size_of::<super::Command>() <= 56);
    }

    /// A service that keeps waiting stops being polled inline after `INLINE_MISSES` calls,
    /// is tried again once every `INLINE_RETRY` requests, and one answer at once turns
    /// inline serving back on.
    #[test]
    fn inline_serving_follows_the_services_answers() {
        let mut inline = super::InlineServe::default();
        for _ in 0..super::INLINE_MISSES {
            assert!(inline.try_now());
            inline.answered(false);
        }
        let tries =
            |inline: &mut super::InlineServe, n: usize| (0..n).filter(|_| inline.try_now()).count();
        // Skipped, except one try in INLINE_RETRY (which keeps waiting here).
        let n = 10 * super::INLINE_RETRY as usize;
        assert_eq!(tries(&mut inline, n), 10);
        // A retry that answers at once: every request is tried again.
        while !inline.try_now() {}
        inline.answered(true);
        assert_eq!(tries(&mut inline, 100), 100);
        // A miss now and then (fewer than INLINE_MISSES in a row) changes nothing.
        for _ in 0..100 {
            assert!(inline.try_now());
            inline.answered(false);
            assert!(inline.try_now());
            inline.answered(true);
        }
    }

    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tether_proto::connection::{Admission, Config, Event};

    const CHUNK: usize = 64 * 1024;

    /// Moves messages both ways and hands the client's stream events to its driver; the
    /// server releases no capacity, so the client's body stops at the peer's window. Returns
    /// the body bytes the server received.
    pub(super) fn exchange(
        client: &mut Connection,
        server: &mut Connection,
        driver: &mut Driver,
    ) -> usize {
        let now = Instant::now();
        let mut received = 0;
        loop {
            let mut moved = false;
            while let Some(cmd) = driver.try_recv() {
                driver.on_command(client, cmd, now);
                moved = true;
            }
            while let Some(m) = client.poll_transmit() {
                server.handle_message(m, now);
                moved = true;
            }
            while let Some(m) = server.poll_transmit() {
                client.handle_message(m, now);
                moved = true;
            }
            while let Some(e) = server.poll_event() {
                if let Event::Stream(StreamEvent::Data { data, .. }) = e {
                    received += data.len();
                }
                moved = true;
            }
            while let Some(e) = client.poll_event() {
                if let Event::Stream(e) = e {
                    driver.on_event(client, e, now);
                }
                moved = true;
            }
            driver.end_turn();
            if !moved {
                return received;
            }
        }
    }

    /// spec/protocol.md §10.3: a body is read from its source only as fast as the peer's
    /// credit lets it leave. Every chunk pulled from the body is in the machine (sent or
    /// queued), none waits in the runtime: the body is polled only while the stream is
    /// writable.
    #[tokio::test]
    async fn a_body_is_pulled_only_as_far_as_the_peer_grants_credit() {
        let config = Arc::new(Config::builder().heartbeat_disabled().build().unwrap());
        let now = Instant::now();
        let mut client = Connection::client(config.clone(), Bytes::new(), None, now).unwrap();
        let mut server = Connection::server(config, now);
        // The server takes the request and never reads its body: only the initial
        // windows are ever granted.
        server.set_serve_requests(true);
        server.set_manual_release(true);
        let mut driver = Driver::new(Arc::default(), Arc::default());
        exchange(&mut client, &mut server, &mut driver);
        let mut rng = |b: &mut [u8]| b.fill(7);
        server
            .accept(Admission::fresh(&mut rng).unwrap(), now)
            .unwrap();
        exchange(&mut client, &mut server, &mut driver);
        assert!(client.is_established());

        // An endless body that counts the chunks pulled from it.
        let pulled = Arc::new(AtomicUsize::new(0));
        let counter = pulled.clone();
        let source = futures_util::stream::repeat_with(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok::<_, BoxError>(http_body::Frame::data(Bytes::from(vec![1u8; CHUNK])))
        });
        let body = AnyBody::from(http_body_util::StreamBody::new(source).boxed_unsync());
        let (reply, _response) = oneshot::channel();
        let open = Open {
            request: Request::post("/sink").body(body).unwrap(),
            timeout: None,
            reply,
        };
        driver.on_command(&mut client, Command::Open(Box::new(open)), now);
        // Move what it sends until the window stops it.
        let mut received = 0;
        for _ in 0..200 {
            tokio::task::yield_now().await;
            received += exchange(&mut client, &mut server, &mut driver);
        }
        let id = StreamId::new(1);
        let queued = client.streams().unwrap().queued_bytes(id);
        let pulled = pulled.load(Ordering::SeqCst);
        assert!(received > 0, "the body started");
        assert!(
            !client.streams().unwrap().is_writable(id),
            "stopped by the window"
        );
        assert_eq!(
            pulled * CHUNK,
            received + queued,
            "a chunk was read ahead of credit"
        );
    }
}

#[cfg(test)]
pub(crate) mod sending_tests {
    use super::tests::exchange;
    use super::*;
    use tether_proto::connection::{Admission, Config};

    pub(crate) fn established() -> (Connection, Connection, Driver) {
        let config = Arc::new(Config::builder().heartbeat_disabled().build().unwrap());
        let now = Instant::now();
        let mut client = Connection::client(config.clone(), Bytes::new(), None, now).unwrap();
        let mut server = Connection::server(config, now);
        server.set_serve_requests(true);
        let mut driver = Driver::new(Arc::default(), Arc::default());
        exchange(&mut client, &mut server, &mut driver);
        let mut rng = |b: &mut [u8]| b.fill(7);
        server
            .accept(Admission::fresh(&mut rng).unwrap(), now)
            .unwrap();
        exchange(&mut client, &mut server, &mut driver);
        assert!(client.is_established());
        (client, server, driver)
    }

    /// A body that is not ready is polled again when its waker fires, through one
    /// `BodyReady` command however often it fires; a body of many tiny frames is taken a
    /// bounded number of frames per call, and the rest follows. The body here is a tokio
    /// channel, all 200 frames received in one poll of the test's task: more than tokio's
    /// cooperative budget (128), which the driver's polls must not be held to.
    #[tokio::test]
    async fn a_waiting_body_is_woken_once_and_a_chatty_one_in_bounded_steps() {
        let (mut client, mut server, mut driver) = established();
        let now = Instant::now();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        let frames = futures_util::stream::unfold(rx, |mut rx| async move {
            let chunk = rx.recv().await?;
            Some((Ok::<_, BoxError>(http_body::Frame::data(chunk)), rx))
        });
        let body = AnyBody::from(http_body_util::StreamBody::new(frames).boxed_unsync());
        let (reply, _response) = oneshot::channel();
        let open = Open {
            request: Request::post("/sink").body(body).unwrap(),
            timeout: None,
            reply,
        };
        driver.on_command(&mut client, Command::Open(Box::new(open)), now);
        assert_eq!(exchange(&mut client, &mut server, &mut driver), 0);

        // The body's waker fires three times: one command.
        let id = StreamId::new(1);
        let waker = driver.slots[&id].sending.as_ref().unwrap().waker.clone();
        waker.wake_by_ref();
        waker.wake_by_ref();
        waker.wake();
        assert!(matches!(driver.try_recv(), Some(Command::BodyReady { id: i }) if i == id));
        assert!(driver.try_recv().is_none(), "one command per stream");
        driver.on_command(&mut client, Command::BodyReady { id }, now);

        // 200 one-byte chunks, ready at once: one call takes PUMP_POLLS of them and queues
        // the next step; all of them arrive.
        for _ in 0..200 {
            tx.send(Bytes::from_static(b"x")).unwrap();
        }
        let Some(cmd @ Command::BodyReady { .. }) = driver.try_recv() else {
            panic!("the channel woke the body");
        };
        driver.on_command(&mut client, cmd, now);
        let queued = client.streams().unwrap().queued_bytes(id);
        assert_eq!(queued, PUMP_POLLS, "one step");
        assert!(matches!(driver.try_recv(), Some(Command::BodyReady { .. })));
        driver.on_command(&mut client, Command::BodyReady { id }, now);
        let received = exchange(&mut client, &mut server, &mut driver);
        assert_eq!(received, 200);
    }

    /// One turn of the client's run loop: each message the server sent, with the events it
    /// raises handed to the driver, then the end of the turn.
    fn turn(client: &mut Connection, server: &mut Connection, driver: &mut Driver) {
        let now = Instant::now();
        while let Some(m) = server.poll_transmit() {
            client.handle_message(m, now);
            while let Some(e) = client.poll_event() {
                if let tether_proto::connection::Event::Stream(e) = e {
                    driver.on_event(client, e, now);
                }
            }
        }
        driver.end_turn();
    }

    /// Opens a request on the client's driver; the receiver of its response.
    fn call(
        client: &mut Connection,
        driver: &mut Driver,
        request: Request<AnyBody>,
    ) -> oneshot::Receiver<Result<Response<Body>, Failed>> {
        let (reply, response) = oneshot::channel();
        let open = Open {
            request,
            timeout: None,
            reply,
        };
        driver.on_command(client, Command::Open(Box::new(open)), Instant::now());
        response
    }

    /// A caller that gives up before its response head has its stream reset, and only
    /// it: the connection task hears that a caller is gone and finds whose.
    #[tokio::test]
    async fn a_caller_that_gives_up_has_its_stream_reset_and_no_other() {
        let (mut client, mut server, mut driver) = established();
        driver.attach(&mut client);
        let get = || Request::get("/a").body(AnyBody::empty()).unwrap();
        let gone = call(&mut client, &mut driver, get());
        let waiting = call(&mut client, &mut driver, get());
        exchange(&mut client, &mut server, &mut driver);
        assert_eq!(client.streams().unwrap().open_streams(), 2);
        drop(gone);
        driver.on_command(&mut client, Command::CallerGone, Instant::now());
        assert_eq!(client.streams().unwrap().open_streams(), 1);
        // (Its RESET may wait for the stream's minimum lifetime, spec/protocol.md §10.8.)
        exchange(&mut client, &mut server, &mut driver);
        server
            .stream(StreamId::new(3))
            .unwrap()
            .send_response(ResponseHead::new(StatusCode::OK), true)
            .unwrap();
        turn(&mut client, &mut server, &mut driver);
        let response = waiting.await.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    /// A response whose body ends in the turn its head arrived in (a small response: one
    /// read brings both) reaches its caller whole: no queue between the connection task and
    /// the caller, and reading it owes the connection nothing. A response whose body is
    /// still to come streams it, and so does one whose stream stays open for our request
    /// body, whose bytes are given back as they are read (spec/protocol.md §10.3).
    #[tokio::test]
    async fn a_response_complete_in_its_turn_goes_whole_and_any_other_streams() {
        let (mut client, mut server, mut driver) = established();
        driver.attach(&mut client);
        let now = Instant::now();
        let respond = |server: &mut Connection, id: u32, body: Option<&'static [u8]>| {
            let mut stream = server.stream(StreamId::new(id)).unwrap();
            stream
                .send_response(ResponseHead::new(StatusCode::OK), false)
                .unwrap();
            if let Some(body) = body {
                stream.send_data(Bytes::from_static(body), true).unwrap();
            }
        };

        // Head and whole body in one turn.
        let get = || Request::get("/a").body(AnyBody::empty()).unwrap();
        let response = call(&mut client, &mut driver, get());
        exchange(&mut client, &mut server, &mut driver);
        respond(&mut server, 1, Some(b"hello"));
        turn(&mut client, &mut server, &mut driver);
        let body = response.await.unwrap().unwrap().into_body();
        assert_eq!(body.size_hint().exact(), Some(5), "whole");
        assert_eq!(body.collect().await.unwrap().to_bytes(), "hello");
        assert!(driver.try_recv().is_none(), "nothing owed");
        assert_eq!(client.streams().unwrap().open_streams(), 0);

        // The head in one turn, the body in the next: it streams.
        let response = call(&mut client, &mut driver, get());
        exchange(&mut client, &mut server, &mut driver);
        respond(&mut server, 3, None);
        turn(&mut client, &mut server, &mut driver);
        let mut body = response.await.unwrap().unwrap().into_body();
        assert_eq!(body.size_hint().exact(), None, "streams");
        server
            .stream(StreamId::new(3))
            .unwrap()
            .send_data(Bytes::from_static(b"late"), true)
            .unwrap();
        turn(&mut client, &mut server, &mut driver);
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "late");
        assert!(body.frame().await.is_none());
        assert!(
            driver.try_recv().is_none(),
            "the last DATA closed the stream"
        );

        // Our request body still going: the response's stream stays open, so its body
        // streams and each chunk read gives the connection its bytes back.
        let pending = futures_util::stream::pending::<Result<http_body::Frame<Bytes>, BoxError>>();
        let post = Request::post("/b")
            .body(AnyBody::from(
                http_body_util::StreamBody::new(pending).boxed_unsync(),
            ))
            .unwrap();
        let response = call(&mut client, &mut driver, post);
        exchange(&mut client, &mut server, &mut driver);
        respond(&mut server, 5, Some(b"xyz"));
        turn(&mut client, &mut server, &mut driver);
        assert_eq!(client.streams().unwrap().open_streams(), 1);
        let mut body = response.await.unwrap().unwrap().into_body();
        assert_eq!(body.size_hint().exact(), None, "streams");
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "xyz");
        assert!(matches!(
            driver.try_recv(),
            Some(Command::Release { n: 3, .. })
        ));
        let _ = now;
    }
}

#[cfg(test)]
mod receiving_tests {
    use super::sending_tests::established;
    use super::tests::exchange;
    use super::*;
    use tether_proto::ResponseHead;

    /// Opens `request` from the client's driver; the server answers it with a head and
    /// `body` in one DATA frame that ends its side. Returns the response the caller got.
    fn answered(request: Request<AnyBody>, body: &'static [u8]) -> (Response<Body>, Driver) {
        let (mut client, mut server, mut driver) = established();
        let now = Instant::now();
        let (reply, mut response) = oneshot::channel();
        let open = Open {
            request,
            timeout: None,
            reply,
        };
        driver.on_command(&mut client, Command::Open(Box::new(open)), now);
        exchange(&mut client, &mut server, &mut driver);
        let mut stream = server.stream(StreamId::new(1)).unwrap();
        stream
            .send_response(ResponseHead::new(StatusCode::OK), false)
            .unwrap();
        stream.send_data(Bytes::from_static(body), true).unwrap();
        exchange(&mut client, &mut server, &mut driver);
        let Ok(Ok(response)) = response.try_recv() else {
            panic!("no response");
        };
        (response, driver)
    }

    fn read_frame(
        body: &mut Body,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, crate::rest::BodyError>>> {
        let mut cx = Context::from_waker(Waker::noop());
        Pin::new(body).poll_frame(&mut cx)
    }

    /// A response whose stream closed with its last DATA (the request had ended) had its
    /// bytes credited back by the machine (spec/protocol.md §10.3): reading them, or
    /// dropping the body once read, sends the connection task nothing, where a command
    /// would cost it a turn that does nothing (issue 11).
    #[test]
    fn a_response_read_whole_after_its_stream_closed_costs_no_command() {
        let get = Request::get("/small").body(AnyBody::empty()).unwrap();
        let (response, mut driver) = answered(get, b"hello");
        let mut body = response.into_body();
        let Poll::Ready(Some(Ok(frame))) = read_frame(&mut body) else {
            panic!("the data");
        };
        assert_eq!(frame.into_data().unwrap(), &b"hello"[..]);
        assert!(http_body::Body::is_end_stream(&body));
        drop(body); // read to its end, though its end was never polled
        assert!(driver.try_recv().is_none(), "a command for a closed stream");
    }

    /// While the request still sends, the stream stays open after the response's last
    /// DATA: reading it gives the credit back with a command, as any chunk does.
    #[test]
    fn a_response_read_while_its_stream_is_open_gives_credit_back() {
        let pending = http_body_util::StreamBody::new(futures_util::stream::pending::<
            Result<http_body::Frame<Bytes>, BoxError>,
        >());
        let post = Request::post("/upload")
            .body(AnyBody::from(pending.boxed_unsync()))
            .unwrap();
        let (response, mut driver) = answered(post, b"early");
        let mut body = response.into_body();
        assert!(matches!(read_frame(&mut body), Poll::Ready(Some(Ok(_)))));
        assert!(matches!(
            driver.try_recv(),
            Some(Command::Release { n: 5, .. })
        ));
        assert!(matches!(read_frame(&mut body), Poll::Ready(None)));
        drop(body);
        assert!(driver.try_recv().is_none());
    }
}

#[cfg(test)]
mod ready_body_tests {
    use super::*;

    fn full(n: usize) -> AnyBody {
        http_body_util::Full::new(Bytes::from(vec![3u8; n]))
            .map_err(|never| match never {})
            .boxed_unsync()
            .into()
    }

    /// This crate's own body, which is not boxed, is read the same way.
    #[tokio::test]
    async fn a_tether_body_goes_with_the_head_as_a_boxed_one_does() {
        let ours = |n: usize| crate::rest::any_body(Body::from(vec![3u8; n]));
        assert!(matches!(ours(1), AnyBody::Tether(_)));
        let (bytes, end, prefix) = ready_body(&mut ours(100)).await;
        assert_eq!((bytes.len(), end, prefix.is_none()), (100, true, true));
        let (bytes, end, prefix) = ready_body(&mut AnyBody::empty()).await;
        assert_eq!((bytes.len(), end, prefix.is_none()), (0, true, true));
        let mut large = ours(INLINE_BODY as usize + 1);
        let (bytes, end, prefix) = ready_body(&mut large).await;
        assert_eq!((bytes.len(), end, prefix.is_none()), (0, false, true));
        let rest = large.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(rest.len(), INLINE_BODY as usize + 1);
    }

    /// A small body that is ready goes with the head; a large one, or one that is not
    /// ready, is left to the pump untouched; a frame read that cannot go with the head is
    /// handed to the pump, not lost.
    #[tokio::test]
    async fn only_a_small_ready_body_goes_with_the_head() {
        let mut small = full(100);
        let (bytes, end, prefix) = ready_body(&mut small).await;
        assert_eq!((bytes.len(), end, prefix.is_none()), (100, true, true));

        let mut empty = full(0);
        let (bytes, end, prefix) = ready_body(&mut empty).await;
        assert_eq!((bytes.len(), end, prefix.is_none()), (0, true, true));

        let mut large = full(INLINE_BODY as usize + 1);
        let (bytes, end, prefix) = ready_body(&mut large).await;
        assert_eq!((bytes.len(), end, prefix.is_none()), (0, false, true));
        assert_eq!(
            large
                .frame()
                .await
                .unwrap()
                .unwrap()
                .into_data()
                .unwrap()
                .len(),
            INLINE_BODY as usize + 1,
            "a large body is left whole to the pump"
        );

        // Two ready chunks whose total is known and small: the first is read but does not
        // end the body, so it comes back for the pump.
        let chunks = futures_util::stream::iter([
            Ok::<_, BoxError>(http_body::Frame::data(Bytes::from_static(b"ab"))),
            Ok(http_body::Frame::data(Bytes::from_static(b"cd"))),
        ]);
        let mut two = AnyBody::from(http_body_util::StreamBody::new(chunks).boxed_unsync());
        let (bytes, end, prefix) = ready_body(&mut two).await;
        assert!(bytes.is_empty() && !end);
        // StreamBody gives no exact size: nothing is read at all.
        assert!(prefix.is_none());
        let (bytes, end, prefix) =
            ready_body(&mut http_body_util::BodyExt::boxed_unsync(WithLen(two, 2)).into()).await;
        assert!(bytes.is_empty() && !end);
        let frame = prefix.expect("the frame read is handed on").unwrap();
        assert_eq!(frame.into_data().unwrap(), Bytes::from_static(b"ab"));
    }

    /// A body with an exact size hint that it does not end after one frame.
    struct WithLen(AnyBody, u64);

    impl http_body::Body for WithLen {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
            std::pin::Pin::new(&mut self.0).poll_frame(cx)
        }
        fn size_hint(&self) -> http_body::SizeHint {
            http_body::SizeHint::with_exact(self.1)
        }
    }
}
