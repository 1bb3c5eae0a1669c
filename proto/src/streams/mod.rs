//! Streams: many HTTP exchanges at once over one connection (spec/protocol.md §10).
//!
//! [`Streams`] is the sans-IO machine for everything that happens on streams once a
//! connection is established: opening requests, answering them, body data under flow
//! control, trailers, resets, deadlines, GOAWAY, and the limits that keep a hostile peer
//! from exhausting memory. The connection machine owns one and routes HEADERS, DATA,
//! RESET, WINDOW_UPDATE and GOAWAY frames to it; it can also be driven on its own.
//!
//! Driven on its own it follows [the contract](crate::connection#the-contract) of the
//! connection machine: `handle_*` inputs and the local API ([`Streams::open`],
//! [`Streams::stream`] and its [`StreamMut`] view, …), then [`Streams::poll_event`] and
//! [`Streams::poll_transmit`] until both are empty, then [`Streams::poll_timeout`]. Inside
//! a [`Connection`](crate::Connection) its inputs are not reachable: the connection feeds
//! it, and the embedder reaches streams through
//! [`Connection::open`](crate::Connection::open) and
//! [`Connection::stream`](crate::Connection::stream). The defaults described there (capacity
//! released for every DATA, requests answered 501 unless [`StreamsConfig::serve_requests`])
//! are the same here.
//!
//! Costs: stream lookup is a hash-map access (with a fast keyed hasher, [`StreamIdHasher`]); timers live in one binary heap; sending picks
//! the next stream from a ready list (round-robin, one frame per turn, so one large body
//! cannot starve the others); no call walks every open stream, except GOAWAY and
//! connection loss, which end many streams at once by nature.
//!
//! ```
//! use std::time::Instant;
//! use http::{Method, Uri};
//! use tether_proto::streams::{Side, Streams, StreamsConfig, PeerLimits, StreamEvent};
//! use tether_proto::{Frame, RequestHead};
//!
//! let now = Instant::now(); // the caller's clock; the machine never reads one
//! let mut client = Streams::new(Side::Client, StreamsConfig::default(), PeerLimits::default())?;
//! let serving = StreamsConfig { serve_requests: true, ..StreamsConfig::default() };
//! let mut server = Streams::new(Side::Server, serving, PeerLimits::default())?;
//!
//! let id = client.open(RequestHead::new(Method::GET, Uri::from_static("/")), true, None, now)?;
//! while let Some(frame) = client.poll_transmit() {
//!     server.handle_frame(frame, now).expect("valid frame");
//! }
//! match server.poll_event() {
//!     Some(StreamEvent::Request { id: got, head, end_stream }) => {
//!         assert_eq!((got, head.uri.path(), end_stream), (id, "/", true));
//!     }
//!     other => panic!("{other:?}"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod budget;
mod growth;
mod hasher;
mod stream;
#[cfg(test)]
mod tests;
mod view;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use self::growth::Growth;
use self::stream::{Recv, Send, Stream};
use crate::frame::MAX_INCREMENT;
use crate::head::{self, EncodedSize, RequestHead, ResponseHead};
use crate::{
    CloseCode, Data, Frame, FrameType, GoAway, Head, Headers, Reset, ResetCode, StreamId,
    WindowUpdate,
};

/// The longest GOAWAY reason this end sends, in bytes (spec/protocol.md §3.4.8): a longer
/// one given to [`Streams::go_away`] is cut at a character boundary.
pub const MAX_GOAWAY_REASON: usize = 256;

pub use crate::head::TIMEOUT_HEADER;
use crate::head::{MAX_TIMEOUT_MS, TIMEOUT_NAME};

pub use self::budget::{RecvBudget, SendBudget};
pub use self::hasher::StreamIdHasher;
pub use self::view::{StreamError, StreamMut};
pub use crate::{Initiator, Side};

/// How often a machine whose streams wait for the process-wide [`SendBudget`] looks again
/// (budget freed by other connections reaches it no other way).
pub const BUDGET_RETRY: Duration = Duration::from_millis(20);

/// Local limits and policies of the stream layer (spec/protocol.md §10.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamsConfig {
    /// Most streams the peer may have open toward us; more are refused with
    /// REFUSED_STREAM. Announced as MAX_CONCURRENT_STREAMS. Default 128.
    pub max_concurrent_streams: u32,
    /// Receive window granted to each stream. Announced as INITIAL_STREAM_WINDOW.
    /// Default 256 KiB.
    pub initial_stream_window: u32,
    /// Receive window of the whole connection. Announced as INITIAL_CONNECTION_WINDOW.
    /// Default 1 MiB.
    pub initial_connection_window: u32,
    /// Largest size a stream's receive window grows to when it, and not the reader,
    /// limits the rate (spec/protocol.md §10.3.1); at or below `initial_stream_window`
    /// stream windows never grow, and above 2,147,483,647 (the largest window, §10.3) it
    /// counts as that. Default 16 MiB.
    pub max_stream_window: u32,
    /// Largest size the connection's receive window grows to (§10.3.1), each growth taken
    /// from `recv_budget`; at or below `initial_connection_window` it never grows, above
    /// 2,147,483,647 it counts as that, and it bounds the body bytes the peer can make this
    /// connection hold. Default 16 MiB.
    pub max_connection_window: u32,
    /// The process-wide budget of connection-window growth, shared by every connection
    /// whose config holds a clone of it. Default: a fresh budget of 256 MiB (§10.3.1).
    pub recv_budget: RecvBudget,
    /// Body bytes that may wait in one stream's send queue before `send_data` pushes back.
    /// Default 256 KiB. Whatever this allows, a stream takes more only while its queue is
    /// below the peer's window for it, or one chunk when the queue is empty (§10.3).
    pub max_send_buffer: usize,
    /// Body bytes that may wait in the send queues of all streams of the connection
    /// together; beyond it `send_data` pushes back. Default 1 MiB (§10.8).
    pub max_connection_send_buffer: usize,
    /// The process-wide budget of queued body bytes, shared by every connection whose
    /// config holds a clone of it. Default: a fresh budget of 64 MiB (§10.8).
    pub send_budget: SendBudget,
    /// A stream whose queued bytes the peer takes none of for this long is reset with
    /// ENHANCE_YOUR_CALM (checked once per period, so the reset comes between one and two
    /// periods after the data stopped moving). A stream with nothing queued is never
    /// stalled. Default 30 s (§10.8).
    pub stall_timeout: Duration,
    /// Largest request or response body accepted (`None` = no limit). Default `None`.
    pub max_body_size: Option<u64>,
    /// Most churn events tolerated from the peer per `churn_window` before the
    /// connection is closed with 4007 (spec/protocol.md §10.8): streams we refused,
    /// RESETs we sent because the peer broke a stream rule ("MadeYouReset"), and peer
    /// streams that were thrown away younger than `churn_min_lifetime` (the HTTP/2
    /// "rapid reset"). Default 200.
    pub max_churn: u32,
    /// The window over which churn is counted. Default 10 s.
    pub churn_window: Duration,
    /// A stream the peer opened and that ends by a RESET (the peer's, or ours when its
    /// deadline passes) at least this long after its request head arrived is ordinary
    /// cancellation and is not counted as churn: at most MAX_CONCURRENT_STREAMS such
    /// streams can end per `churn_min_lifetime`. Default 100 ms.
    pub churn_min_lifetime: Duration,
    /// Most frames that the peer's behaviour makes us queue (RESET and WINDOW_UPDATE
    /// replies) before they are written; beyond it the connection is closed with 4007.
    /// Default 1,024.
    pub max_queued_replies: usize,
    /// Whether the embedder gives received body bytes back to the peer itself, with
    /// [`StreamMut::release_capacity`] as it consumes them (spec/protocol.md §10.3). By
    /// default (`false`) the machine releases every [`StreamEvent::Data`] as it reports
    /// it, so an embedder that does not think about flow control never stalls a peer; an
    /// embedder that buffers bodies for a slow reader opts in to keep the peer's window as
    /// its backpressure.
    pub manual_release: bool,
    /// Whether the embedder answers the requests the peer opens. By default (`false`) the
    /// machine answers each one itself with `501 Not Implemented` and a short text body,
    /// releases and then stops the request body (RESET NO_ERROR once the 501 is out, or
    /// INTERNAL_ERROR when not even that body can be queued), and reports nothing about
    /// such streams: an end that only sends requests has nothing to do. An embedder with a
    /// handler sets it (or calls [`Streams::set_serve_requests`]) and receives
    /// [`StreamEvent::Request`].
    pub serve_requests: bool,
}

impl Default for StreamsConfig {
    fn default() -> Self {
        StreamsConfig {
            max_concurrent_streams: 128,
            initial_stream_window: 256 * 1024,
            initial_connection_window: 1024 * 1024,
            max_stream_window: 16 * 1024 * 1024,
            max_connection_window: 16 * 1024 * 1024,
            recv_budget: RecvBudget::default(),
            max_send_buffer: 256 * 1024,
            max_connection_send_buffer: 1024 * 1024,
            send_budget: SendBudget::default(),
            stall_timeout: Duration::from_secs(30),
            max_body_size: None,
            max_churn: 200,
            churn_window: Duration::from_secs(10),
            churn_min_lifetime: Duration::from_millis(100),
            max_queued_replies: 1024,
            manual_release: false,
            serve_requests: false,
        }
    }
}

/// What the peer announced in the handshake that the stream layer must respect (§7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerLimits {
    /// Largest DATA payload the peer accepts.
    pub max_frame_payload: u32,
    /// Most streams we may have open toward the peer.
    pub max_concurrent_streams: u32,
    /// The peer's receive window per stream.
    pub initial_stream_window: u32,
    /// The peer's connection receive window.
    pub initial_connection_window: u32,
    /// Largest head (request, response or trailers) the peer accepts, in bytes.
    pub max_head_size: u32,
    /// Most field lines per head the peer accepts.
    pub max_header_count: u16,
}

impl Default for PeerLimits {
    /// The values a peer that sent no setting is assumed to have (spec/protocol.md §10.8).
    fn default() -> Self {
        let c = StreamsConfig::default();
        PeerLimits {
            max_frame_payload: crate::Limits::default().max_frame_payload,
            max_concurrent_streams: c.max_concurrent_streams,
            initial_stream_window: c.initial_stream_window,
            initial_connection_window: c.initial_connection_window,
            max_head_size: crate::Limits::default().max_head_size,
            max_header_count: crate::Limits::default().max_header_count,
        }
    }
}

/// [`PeerLimits`] no stream layer can work with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerLimitsError {
    /// `max_frame_payload` is zero: no DATA frame could carry a byte, and a sender would
    /// emit empty DATA without end (the MAX_FRAME_PAYLOAD setting is at least 1,024,
    /// spec/protocol.md §3.6).
    #[error("the peer's max_frame_payload must not be zero")]
    ZeroFramePayload,
}

impl PeerLimits {
    /// Checks that a stream layer can send within these limits.
    pub fn validate(&self) -> Result<(), PeerLimitsError> {
        if self.max_frame_payload == 0 {
            return Err(PeerLimitsError::ZeroFramePayload);
        }
        Ok(())
    }
}

/// How a stream ended. Every stream ends exactly once, with a
/// [`StreamEvent::Closed`] carrying one of these, on each side.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Both directions completed.
    Finished,
    /// The peer refused the stream before processing it (REFUSED_STREAM, or above a
    /// GOAWAY's last stream id): the request is safe to retry.
    Refused,
    /// One side reset the stream. The request may or may not have been processed.
    Reset {
        /// The reset code.
        code: ResetCode,
        /// Who reset it.
        initiator: Initiator,
    },
    /// The stream's deadline passed; a RESET with TIMEOUT was sent.
    TimedOut,
    /// The connection was lost with the stream open: the request may or may not have
    /// been processed.
    ConnectionLost,
}

/// Something the application needs to know about (drain with [`Streams::poll_event`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamEvent {
    /// The peer opened a stream with a request. Only when this side serves requests
    /// ([`StreamsConfig::serve_requests`]); otherwise the machine answers it `501` by
    /// itself and reports nothing.
    Request {
        /// The new stream.
        id: StreamId,
        /// The request head.
        head: RequestHead,
        /// No body follows.
        end_stream: bool,
    },
    /// A response head arrived on a stream we opened (1xx heads are informational and
    /// are followed by another).
    Response {
        /// The stream.
        id: StreamId,
        /// The response head.
        head: ResponseHead,
        /// No body follows.
        end_stream: bool,
    },
    /// Body bytes arrived. The machine gives them back to the peer's window at once,
    /// unless the embedder opted into [`StreamsConfig::manual_release`]: then it calls
    /// [`StreamMut::release_capacity`] once they are consumed, or the peer runs out of
    /// window.
    Data {
        /// The stream.
        id: StreamId,
        /// The bytes (a slice of the received message).
        data: Bytes,
        /// The body is complete.
        end_stream: bool,
    },
    /// Trailers arrived; the peer's direction is complete.
    Trailers {
        /// The stream.
        id: StreamId,
        /// The trailer fields.
        trailers: HeaderMap,
    },
    /// A stream whose `send_data` was refused can take more data.
    Writable {
        /// The stream.
        id: StreamId,
    },
    /// A stream slot became free after the peer's MAX_CONCURRENT_STREAMS was reached
    /// (`open` or `can_open` may have said [`OpenError::Blocked`]).
    CanOpen,
    /// The peer is shutting down: no new streams; ours above `last_stream_id` were refused.
    GoAway {
        /// The last of our streams the peer may still process.
        last_stream_id: StreamId,
        /// Its code.
        code: ResetCode,
        /// Its reason.
        reason: String,
    },
    /// A stream ended; its state is gone.
    Closed {
        /// The stream.
        id: StreamId,
        /// How.
        outcome: Outcome,
    },
}

/// Why `open` could not open a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The peer's MAX_CONCURRENT_STREAMS is reached; wait for [`StreamEvent::CanOpen`].
    #[error("the peer's limit of concurrent streams is reached")]
    Blocked,
    /// A GOAWAY was sent or received: this connection takes no new streams.
    #[error("the connection is going away")]
    GoingAway,
    /// Stream ids of this side are used up: reconnect.
    #[error("stream identifiers are exhausted")]
    Exhausted,
    /// The connection has no stream layer: its handshake is not complete, or it is over
    /// (from [`Connection::open`](crate::Connection::open)).
    #[error("the connection is not established")]
    NotEstablished,
    /// The request head is larger than the peer accepts (its MAX_HEAD_SIZE or
    /// MAX_HEADER_COUNT, §4.5): nothing was sent.
    #[error("head of {} bytes and {} fields exceeds the peer's limits", .0.bytes, .0.fields)]
    HeadTooLarge(EncodedSize),
    /// The method and request-target do not go together, or the target holds a byte
    /// §4.1 refuses (the peer would reset the stream, `invalid_uri`): nothing was sent.
    #[error("the request-target does not follow spec/protocol.md §4.1 for this method")]
    InvalidTarget,
}

/// Why a send on a stream was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// No such open stream (never opened, or already closed).
    #[error("stream {0} is not open")]
    UnknownStream(StreamId),
    /// The call does not fit the stream's state (e.g. data before the response head,
    /// anything after END_STREAM, a response on a stream we opened).
    #[error("stream {0} is not in a state that allows this")]
    InvalidState(StreamId),
    /// A response head or trailers larger than the peer accepts (its MAX_HEAD_SIZE or
    /// MAX_HEADER_COUNT): the head was not sent, and the machine has already reset the
    /// stream with INTERNAL_ERROR, as spec/protocol.md §5 requires of a responder (its
    /// RESET is queued and [`StreamEvent::Closed`] reports
    /// [`Outcome::Reset`] with [`Initiator::Local`]). The embedder has nothing more to do;
    /// the error is for its logs. (A request head that does not fit is refused by
    /// [`Streams::open`] with [`OpenError::HeadTooLarge`] instead, before any stream
    /// exists.)
    #[error("stream {id}: head of {} bytes and {} fields exceeds the peer's limits; stream reset", .size.bytes, .size.fields)]
    HeadTooLarge {
        /// The stream.
        id: StreamId,
        /// The head's size.
        size: EncodedSize,
    },
    /// The send queue is full: the data is handed back; retry after
    /// [`StreamEvent::Writable`].
    #[error("stream {id} send buffer is full")]
    Blocked {
        /// The stream.
        id: StreamId,
        /// The data that was not queued.
        data: Bytes,
    },
}

/// A rule broken badly enough that the whole connection must close; the connection
/// machine closes with [`close_code`](Self::close_code) (spec/protocol.md §10).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StreamsError {
    /// A frame for a stream that never existed (§10.1): HEADERS for an id of ours we
    /// never used, DATA, RESET or WINDOW_UPDATE for an id nobody opened.
    #[error("{frame} on stream {id}, which was never opened")]
    NeverOpened {
        /// The frame's type.
        frame: FrameType,
        /// The stream it named.
        id: StreamId,
    },
    /// The peer opened a stream with something other than a request head (§10.1).
    #[error("the peer opened stream {id} without a request head")]
    NotARequest {
        /// The stream.
        id: StreamId,
    },
    /// DATA beyond what the connection's receive window allows (§10.3).
    #[error("DATA beyond the connection window")]
    ConnectionWindowExceeded,
    /// A WINDOW_UPDATE took the connection's send window above 2^31-1 (§10.3).
    #[error("connection window above 2^31-1")]
    ConnectionWindowOverflow,
    /// More frames that the peer's behaviour made us queue (RESET and WINDOW_UPDATE
    /// replies) than [`StreamsConfig::max_queued_replies`] (§10.8).
    #[error("more than {limit} replies queued for a peer that does not read")]
    TooManyReplies {
        /// The limit in force.
        limit: usize,
    },
    /// More churn (streams refused, reset for the peer's errors, or thrown away young)
    /// than [`StreamsConfig::max_churn`] per window (§10.8).
    #[error(
        "more than {limit} streams refused, reset for errors or thrown away young in {window:?}"
    )]
    Churn {
        /// The limit in force.
        limit: u32,
        /// The window it counts over.
        window: Duration,
    },
    /// The peer's settings leave no room for DATA (unreachable with settings that passed
    /// decoding, §3.6).
    #[error("unusable peer settings: {0}")]
    PeerLimits(PeerLimitsError),
}

impl StreamsError {
    /// The close code the connection closes with.
    pub fn close_code(&self) -> CloseCode {
        match self {
            StreamsError::NeverOpened { .. }
            | StreamsError::NotARequest { .. }
            | StreamsError::PeerLimits(_) => CloseCode::PROTOCOL_ERROR,
            StreamsError::ConnectionWindowExceeded | StreamsError::ConnectionWindowOverflow => {
                CloseCode::FLOW_CONTROL_ERROR
            }
            StreamsError::TooManyReplies { .. } | StreamsError::Churn { .. } => {
                CloseCode::ENHANCE_YOUR_CALM
            }
        }
    }
}

/// What an entry of the timer heap is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// The stream's deadline (§10.6).
    Deadline,
    /// The stream's stall check (§10.8).
    Stall,
    /// The RESET of a cancelled stream that was too young to reset at once (§10.8).
    Cancel,
}

/// The connection's share of window growth (spec/protocol.md §10.3.1). Its growth beyond
/// `initial_connection_window` is what it holds of `config.recv_budget`.
#[derive(Debug)]
struct Tuning {
    /// The size of the connection's receive window and how it grows.
    conn: Growth,
    /// The smallest round trip measured from our grants, on any window.
    rtt_min: Option<Duration>,
}

impl Tuning {
    /// The tuning in `slot`, made on first use (an idle connection carries none).
    fn of(slot: &mut Option<Box<Tuning>>, initial_connection_window: u32) -> &mut Tuning {
        slot.get_or_insert_with(|| {
            Box::new(Tuning {
                conn: Growth::new(initial_connection_window),
                rtt_min: None,
            })
        })
    }

    fn sample_rtt(&mut self, rtt: Duration) {
        self.rtt_min = Some(self.rtt_min.map_or(rtt, |min| min.min(rtt)));
    }

    /// Doubles the connection window toward `max` (at most 2^31-1) if `budget` has the
    /// room for all of it; how much it grew (0 if it did not).
    fn grow_connection(&mut self, max: u32, budget: &RecvBudget) -> u32 {
        let extra = self.conn.headroom(max.min(MAX_INCREMENT));
        if extra == 0 || !budget.try_acquire(extra as usize) {
            return 0;
        }
        self.conn.grow(extra);
        tracing::debug!(
            window = self.conn.size(),
            rtt = ?self.rtt_min,
            "connection receive window grew"
        );
        extra
    }
}

/// The stream layer of one connection (spec/protocol.md §10).
#[derive(Debug)]
pub struct Streams {
    side: Side,
    config: StreamsConfig,
    peer: PeerLimits,
    streams: HashMap<StreamId, Stream, StreamIdHasher>,
    /// The id our next stream gets; `None` once exhausted.
    next_local: Option<u32>,
    /// The highest id the peer has opened (processed or refused).
    last_peer: u32,
    local_open: u32,
    peer_open: u32,
    conn_send_window: i64,
    conn_recv_window: u32,
    conn_release_pending: u32,
    /// Window growth (§10.3.1): allocated by the first grant of the connection window or
    /// the first round trip measured, so an idle connection does not carry it.
    tuning: Option<Box<Tuning>>,
    /// Frames that go before any DATA: heads, resets, window updates, GOAWAY.
    control: VecDeque<Frame>,
    /// Streams with something to send, in turn order.
    ready: VecDeque<StreamId>,
    events: VecDeque<StreamEvent>,
    /// Stream deadlines and stall checks; an entry whose stream is gone or has another
    /// deadline (or check) is stale and skipped when it comes up.
    timers: BinaryHeap<Reverse<(Instant, StreamId, Timer)>>,
    /// Entries of `timers` that still belong to an open stream.
    live_timers: usize,
    /// Body bytes queued on all streams (each also held in `config.send_budget`).
    conn_queued: usize,
    /// Streams refused for lack of connection or process-wide room, woken in turn.
    parked: VecDeque<StreamId>,
    /// The latest `now` any input brought (for the budget retry and stall checks armed by
    /// calls that carry no time).
    clock: Option<Instant>,
    sent_goaway: Option<StreamId>,
    recv_goaway: Option<StreamId>,
    churn: u32,
    churn_since: Option<Instant>,
    /// The churn limit was exceeded by something that cannot fail at once (a deadline
    /// in `handle_timeout`): reported by the next `handle_frame`.
    churn_exceeded: Option<StreamsError>,
    /// Our streams cancelled younger than the minimum lifetime: closed for the
    /// application, but their RESET (this code) waits until the stream is that old, and
    /// their slot stays taken until then (spec/protocol.md §10.8).
    deferred_cancels: HashMap<StreamId, (Instant, ResetCode), StreamIdHasher>,
}

impl Streams {
    /// A stream layer for `side`, with our `config` and what the `peer` announced;
    /// `Err` when the peer's limits leave nothing that can be sent
    /// ([`PeerLimits::validate`]).
    pub fn new(
        side: Side,
        config: StreamsConfig,
        peer: PeerLimits,
    ) -> Result<Self, PeerLimitsError> {
        peer.validate()?;
        Ok(Streams {
            side,
            next_local: Some(match side {
                Side::Client => 1,
                Side::Server => 2,
            }),
            last_peer: 0,
            local_open: 0,
            peer_open: 0,
            conn_send_window: i64::from(peer.initial_connection_window),
            conn_recv_window: config.initial_connection_window,
            conn_release_pending: 0,
            tuning: None,
            control: VecDeque::new(),
            ready: VecDeque::new(),
            events: VecDeque::new(),
            timers: BinaryHeap::new(),
            live_timers: 0,
            conn_queued: 0,
            parked: VecDeque::new(),
            clock: None,
            sent_goaway: None,
            recv_goaway: None,
            churn: 0,
            churn_since: None,
            churn_exceeded: None,
            deferred_cancels: HashMap::default(),
            streams: HashMap::default(),
            config,
            peer,
        })
    }

    // ---- getters

    /// The open stream `id`, to act on it; [`StreamError::Closed`] once it has ended,
    /// [`StreamError::Unknown`] for an id never opened.
    pub fn stream(&mut self, id: StreamId) -> Result<StreamMut<'_>, StreamError> {
        if self.streams.contains_key(&id) {
            Ok(StreamMut { streams: self, id })
        } else if self.was_ever_opened(id) {
            Err(StreamError::Closed(id))
        } else {
            Err(StreamError::Unknown(id))
        }
    }

    /// Whether `id` is an open stream.
    pub fn is_open(&self, id: StreamId) -> bool {
        self.streams.contains_key(&id)
    }

    /// Streams currently open (both directions' openers).
    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// Bytes we may still send on the connection before the peer grants more.
    pub fn connection_send_window(&self) -> i64 {
        self.conn_send_window
    }

    /// The size of the connection's receive window: `initial_connection_window`, or more
    /// once it grew (spec/protocol.md §10.3.1). The body bytes the peer can make the
    /// connection hold are at most this.
    pub fn connection_window_size(&self) -> u32 {
        self.tuning
            .as_ref()
            .map_or(self.config.initial_connection_window, |t| t.conn.size())
    }

    /// The size of stream `id`'s receive window (`None` for a stream not open).
    pub fn stream_window_size(&self, id: StreamId) -> Option<u32> {
        self.streams.get(&id).map(|s| s.growth.size())
    }

    /// The smallest round trip measured from the window updates we sent (§10.3.1).
    pub fn window_rtt(&self) -> Option<Duration> {
        self.tuning.as_ref().and_then(|t| t.rtt_min)
    }

    /// Bytes queued for sending on `id` (0 for an unknown stream).
    pub fn queued_bytes(&self, id: StreamId) -> usize {
        self.streams.get(&id).map_or(0, |s| s.queued_bytes)
    }

    /// Body bytes queued for sending on all streams together (at most
    /// `max_connection_send_buffer` plus one chunk, §10.8).
    pub fn buffered_bytes(&self) -> usize {
        self.conn_queued
    }

    /// Whether `id` takes more data now. After a `send_data` that is accepted but leaves
    /// the stream without room (its queue reached the peer's window for it, or the
    /// connection's or the process's limit), this is `false` and a
    /// [`StreamEvent::Writable`] follows when there is room again: a sender that waits for
    /// it before reading its next chunk keeps the body where it is (the upstream, the
    /// kernel) while the peer grants no credit (§10.3).
    pub fn is_writable(&self, id: StreamId) -> bool {
        self.streams
            .get(&id)
            .is_some_and(|s| s.send == Send::Open && !s.blocked)
    }

    /// Whether [`open`](Self::open) would open a stream now (given a head that fits);
    /// `Err` says why not. Lets a caller keep a request queued without building its head
    /// first: after [`OpenError::Blocked`] a [`StreamEvent::CanOpen`] follows when a
    /// stream frees up.
    pub fn can_open(&self) -> Result<(), OpenError> {
        if self.sent_goaway.is_some() || self.recv_goaway.is_some() {
            Err(OpenError::GoingAway)
        } else if self.next_local.is_none() {
            Err(OpenError::Exhausted)
        } else if self.local_open >= self.peer.max_concurrent_streams {
            Err(OpenError::Blocked)
        } else {
            Ok(())
        }
    }

    /// Whether a GOAWAY was sent or received and no stream is left: the connection can
    /// be closed with 1000.
    pub fn is_drained(&self) -> bool {
        (self.sent_goaway.is_some() || self.recv_goaway.is_some()) && self.streams.is_empty()
    }

    fn is_local(&self, id: StreamId) -> bool {
        id.is_local(self.side)
    }

    /// Whether `id` belongs to a stream that existed at some point (opened by us, or by the
    /// peer at or below the highest id it used): frames for it may still be in flight
    /// after it closed (§10.2).
    fn was_ever_opened(&self, id: StreamId) -> bool {
        if self.is_local(id) {
            self.was_opened_locally(id)
        } else {
            id.value() <= self.last_peer
        }
    }

    /// A frame for a stream that is not open: ignored if the stream existed (§10.2),
    /// a connection error if it never did (§10.1).
    fn ignore_if_closed(&self, id: StreamId, frame: FrameType) -> Result<(), StreamsError> {
        if self.was_ever_opened(id) {
            Ok(())
        } else {
            Err(StreamsError::NeverOpened { frame, id })
        }
    }

    /// Whether a local id was handed out by `open` (so a frame for it is about a stream
    /// that existed).
    fn was_opened_locally(&self, id: StreamId) -> bool {
        let first = match self.side {
            Side::Client => 1,
            Side::Server => 2,
        };
        id.value() >= first && self.next_local.is_none_or(|next| id.value() < next)
    }

    // ---- inputs from the peer

    /// Takes one received stream-layer frame (HEADERS, DATA, RESET, WINDOW_UPDATE,
    /// GOAWAY); other frames are ignored. `Err` means the connection must close with the
    /// given code; stream-level problems are handled here (RESET queued, event emitted).
    pub fn handle_frame(&mut self, frame: Frame, now: Instant) -> Result<(), StreamsError> {
        self.clock = Some(now);
        if let Some(e) = self.churn_exceeded.take() {
            return Err(e);
        }
        match frame {
            Frame::Headers(h) => self.recv_headers(h, now),
            Frame::Data(d) => self.recv_data(d, now),
            Frame::Reset(r) => self.recv_reset(r, now),
            Frame::WindowUpdate(w) => self.recv_window_update(w, now),
            Frame::GoAway(g) => {
                self.recv_goaway(g);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Applies a decode error confined to one stream (a [`crate::Reaction::Reset`]) that
    /// came in a `frame` of this type (spec/protocol.md §3.5): the stream is reset with
    /// `code` whether it is open or closed; a HEADERS on a new peer id uses up that id and
    /// resets it. A stream that was never opened otherwise is a connection error, as for a
    /// well-formed frame (§10.1): `Err(NeverOpened)`.
    pub fn handle_stream_error(
        &mut self,
        id: StreamId,
        frame: FrameType,
        code: ResetCode,
        now: Instant,
    ) -> Result<(), StreamsError> {
        self.clock = Some(now);
        if let Some(e) = self.churn_exceeded.take() {
            return Err(e);
        }
        // The peer's error made us reset: churn (spec/protocol.md §10.8).
        if self.streams.contains_key(&id) {
            return self.reset_for_peer_error(id, code, now);
        }
        if !self.was_ever_opened(id) {
            if self.is_local(id) || frame != FrameType::Headers {
                return Err(StreamsError::NeverOpened { frame, id });
            }
            // A request we could not parse still uses up its id.
            self.last_peer = id.value();
        }
        self.reply_reset_for_peer_error(id, code, now)
    }

    fn recv_headers(&mut self, h: Headers, now: Instant) -> Result<(), StreamsError> {
        let id = h.stream_id;
        if self.streams.contains_key(&id) {
            return self.recv_headers_on_open(h, now);
        }
        if self.is_local(id) {
            if self.was_opened_locally(id) {
                return Ok(()); // a late answer on a stream we already closed
            }
            return Err(StreamsError::NeverOpened {
                frame: FrameType::Headers,
                id,
            });
        }
        if id.value() <= self.last_peer {
            return self.reply_reset_for_peer_error(id, ResetCode::STREAM_CLOSED, now);
        }
        let Head::Request(head) = h.head else {
            return Err(StreamsError::NotARequest { id });
        };
        self.last_peer = id.value();
        let refused =
            self.sent_goaway.is_some() || self.peer_open >= self.config.max_concurrent_streams;
        if refused {
            self.count_churn(now)?;
            return self.reply(Frame::Reset(Reset {
                stream_id: id,
                code: ResetCode::REFUSED_STREAM,
            }));
        }
        let recv = if h.end_stream { Recv::Done } else { Recv::Open };
        let mut stream = Stream::new(
            Send::Idle,
            recv,
            self.peer.initial_stream_window,
            self.config.initial_stream_window,
        );
        stream.expected_len = head::content_length(&head.headers);
        // Checked as the head was decoded (§4.5, §10.6).
        let deadline = head.timeout_ms.map(Duration::from_millis);
        if h.end_stream && stream.expected_len.is_some_and(|n| n != 0) {
            return self.reply_reset_for_peer_error(id, ResetCode::PROTOCOL_ERROR, now);
        }
        stream.peer_opened_at = Some(now);
        // A deadline too far to represent is never reached: no timer (spec/protocol.md §5).
        if let Some(at) = deadline.and_then(|after| now.checked_add(after)) {
            stream.deadline = Some(at);
            self.timers.push(Reverse((at, id, Timer::Deadline)));
            self.live_timers += 1;
        }
        stream.unserved = !self.config.serve_requests;
        self.streams.insert(id, stream);
        self.peer_open += 1;
        if !self.config.serve_requests {
            self.answer_unserved(id, &head);
            return Ok(());
        }
        self.events.push_back(StreamEvent::Request {
            id,
            head,
            end_stream: h.end_stream,
        });
        Ok(())
    }

    /// Answers a request the embedder does not serve ([`StreamsConfig::serve_requests`]
    /// is off): `501 Not Implemented` with a short body, then the rest of the request body
    /// is refused with NO_ERROR (spec/protocol.md §6.1); INTERNAL_ERROR when not even that
    /// body can be queued (the send budget is used up), rather than a head without its
    /// body. What arrives meanwhile is released at once (`recv_data`).
    fn answer_unserved(&mut self, id: StreamId, head: &RequestHead) {
        tracing::debug!(%id, method = %head.method, uri = %head.uri, "request not served: 501");
        let mut res = ResponseHead::new(http::StatusCode::NOT_IMPLEMENTED);
        res.headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        res.headers.insert(
            http::header::CONTENT_LENGTH,
            HeaderValue::from(UNSERVED_BODY.len()),
        );
        let sent = self
            .send_response(id, res, false)
            .and_then(|()| self.send_data(id, Bytes::from_static(UNSERVED_BODY), true));
        match sent {
            Ok(()) => self.stop_receiving(id, ResetCode::NO_ERROR),
            Err(SendError::Blocked { .. }) => self.reset(id, ResetCode::INTERNAL_ERROR),
            // Reset already (a head the peer's limits refuse), or gone.
            Err(_) => {}
        }
    }

    fn recv_headers_on_open(&mut self, h: Headers, now: Instant) -> Result<(), StreamsError> {
        let id = h.stream_id;
        let local = self.is_local(id);
        let Some(s) = self.streams.get_mut(&id) else {
            return Ok(());
        };
        let code = match (h.head, s.recv) {
            (Head::Response(head), Recv::AwaitHead) if local => {
                if head.status.is_informational() {
                    if h.end_stream || head.status == http::StatusCode::SWITCHING_PROTOCOLS {
                        ResetCode::PROTOCOL_ERROR
                    } else {
                        self.events.push_back(StreamEvent::Response {
                            id,
                            head,
                            end_stream: false,
                        });
                        return Ok(());
                    }
                } else {
                    // A response to HEAD, and a 204 or 304, has no content: its
                    // content-length describes the resource, not DATA (§10.4).
                    let no_content = s.head_request
                        || head.status == http::StatusCode::NO_CONTENT
                        || head.status == http::StatusCode::NOT_MODIFIED;
                    s.expected_len = if no_content {
                        Some(0)
                    } else {
                        head::content_length(&head.headers)
                    };
                    if h.end_stream && s.expected_len.is_some_and(|n| n != 0) {
                        ResetCode::PROTOCOL_ERROR
                    } else {
                        s.recv = if h.end_stream { Recv::Done } else { Recv::Open };
                        self.events.push_back(StreamEvent::Response {
                            id,
                            head,
                            end_stream: h.end_stream,
                        });
                        self.maybe_finish(id);
                        return Ok(());
                    }
                }
            }
            (Head::Trailers(trailers), Recv::Open) => {
                if s.expected_len.is_some_and(|n| n != s.recv_bytes) {
                    ResetCode::PROTOCOL_ERROR
                } else {
                    s.recv = Recv::Done;
                    if !s.unserved && !s.discarded {
                        self.events
                            .push_back(StreamEvent::Trailers { id, trailers });
                    }
                    self.maybe_finish(id);
                    return Ok(());
                }
            }
            (_, Recv::Done) => ResetCode::STREAM_CLOSED,
            _ => ResetCode::PROTOCOL_ERROR,
        };
        self.reset_for_peer_error(id, code, now)
    }

    fn recv_data(&mut self, d: Data, now: Instant) -> Result<(), StreamsError> {
        let id = d.stream_id;
        // Bounded by max_frame_payload (<= 16 MiB), so it fits.
        let len = d.payload.len() as u32;
        if len > self.conn_recv_window {
            return Err(StreamsError::ConnectionWindowExceeded);
        }
        self.conn_recv_window -= len;
        if let Some(t) = self.tuning.as_mut() {
            if let Some(rtt) = t.conn.on_data(len, self.clock) {
                t.sample_rtt(rtt);
            }
        }
        let max_body = self.config.max_body_size;
        let Some(s) = self.streams.get_mut(&id) else {
            let seen = self.was_ever_opened(id);
            if !seen {
                return Err(StreamsError::NeverOpened {
                    frame: FrameType::Data,
                    id,
                });
            }
            // Late data for a closed stream: its bytes still count for the connection.
            return self.release_connection(len, true);
        };
        let code = if s.recv != Recv::Open {
            if s.recv == Recv::Done {
                ResetCode::STREAM_CLOSED
            } else {
                ResetCode::PROTOCOL_ERROR
            }
        } else if len > s.recv_window {
            ResetCode::FLOW_CONTROL_ERROR
        } else {
            s.recv_window -= len;
            s.unreleased += len;
            s.recv_bytes += u64::from(len);
            if let Some(rtt) = s.growth.on_data(len, self.clock) {
                Tuning::of(&mut self.tuning, self.config.initial_connection_window).sample_rtt(rtt);
            }
            let over_length = s
                .expected_len
                .is_some_and(|n| s.recv_bytes > n || (d.end_stream && s.recv_bytes != n));
            if over_length {
                ResetCode::PROTOCOL_ERROR
            } else if max_body.is_some_and(|max| s.recv_bytes > max) {
                ResetCode::BODY_TOO_LARGE
            } else {
                if d.end_stream {
                    s.recv = Recv::Done;
                }
                // Released at once unless the embedder releases as it consumes; a request
                // the machine answers itself is never reported (§10.3).
                let auto_release = s.unserved || s.discarded || !self.config.manual_release;
                if !s.unserved && !s.discarded {
                    self.events.push_back(StreamEvent::Data {
                        id,
                        data: d.payload,
                        end_stream: d.end_stream,
                    });
                }
                if auto_release {
                    self.release_capacity(id, len);
                }
                self.maybe_finish(id);
                return Ok(());
            }
        };
        if code == ResetCode::FLOW_CONTROL_ERROR || s.recv != Recv::Open {
            // These bytes were never accounted to the stream: give them back here.
            self.release_connection(len, false)?;
        }
        self.reset_for_peer_error(id, code, now)
    }

    fn recv_reset(&mut self, r: Reset, now: Instant) -> Result<(), StreamsError> {
        let id = r.stream_id;
        let Some(s) = self.streams.get(&id) else {
            return self.ignore_if_closed(id, FrameType::Reset);
        };
        let thrown_away = self.is_thrown_away_young(s, now);
        let outcome = if r.code == ResetCode::REFUSED_STREAM && self.is_local(id) {
            Outcome::Refused
        } else if r.code == ResetCode::NO_ERROR && s.recv == Recv::Done {
            // The peer has answered completely and needs no more of our body.
            Outcome::Finished
        } else if r.code == ResetCode::TIMEOUT && s.deadline.is_some() {
            // Both ends run the deadline (§10.6): whichever copy fired first, it passed.
            Outcome::TimedOut
        } else {
            Outcome::Reset {
                code: r.code,
                initiator: Initiator::Peer,
            }
        };
        self.close(id, outcome);
        if thrown_away {
            self.count_churn(now)?;
        }
        Ok(())
    }

    fn recv_window_update(&mut self, w: WindowUpdate, now: Instant) -> Result<(), StreamsError> {
        let inc = i64::from(w.increment);
        if w.stream_id.is_zero() {
            self.conn_send_window += inc;
            if self.conn_send_window > i64::from(MAX_INCREMENT) {
                return Err(StreamsError::ConnectionWindowOverflow);
            }
            return Ok(());
        }
        let id = w.stream_id;
        let Some(s) = self.streams.get_mut(&id) else {
            return self.ignore_if_closed(id, FrameType::WindowUpdate);
        };
        s.send_window += inc;
        if s.send_window > i64::from(MAX_INCREMENT) {
            return self.reset_for_peer_error(id, ResetCode::FLOW_CONTROL_ERROR, now);
        }
        self.make_ready(id);
        self.wake(id);
        Ok(())
    }

    fn recv_goaway(&mut self, g: GoAway) {
        let last = self
            .recv_goaway
            .map_or(g.last_stream_id, |prev| prev.min(g.last_stream_id));
        self.recv_goaway = Some(last);
        let refused: Vec<StreamId> = self
            .streams
            .keys()
            .copied()
            .filter(|&id| self.is_local(id) && id > last)
            .collect();
        for id in refused {
            self.close(id, Outcome::Refused);
        }
        self.events.push_back(StreamEvent::GoAway {
            last_stream_id: last,
            code: g.code,
            reason: g.reason,
        });
    }

    /// Advances time: streams whose deadline passed are reset with TIMEOUT; streams whose
    /// queued data did not move for a whole stall period are reset with
    /// ENHANCE_YOUR_CALM (§10.8); streams waiting for the process-wide budget look again.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.clock = Some(now);
        while let Some(&Reverse((at, id, timer))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            if timer == Timer::Cancel {
                if self
                    .deferred_cancels
                    .get(&id)
                    .is_some_and(|&(due, _)| due == at)
                {
                    // A cancelled stream is now old enough for its RESET (§10.8).
                    if let Some((_, code)) = self.deferred_cancels.remove(&id) {
                        self.control.push_back(Frame::Reset(Reset {
                            stream_id: id,
                            code,
                        }));
                        self.release_local_slot();
                    }
                }
                continue;
            }
            let Some(s) = self.streams.get(&id) else {
                continue;
            };
            match timer {
                Timer::Deadline if s.deadline == Some(at) => {
                    // A deadline shorter than the minimum lifetime throws the peer's stream
                    // away as surely as a RESET would (spec/protocol.md §10.8).
                    let thrown_away = self.is_thrown_away_young(s, now);
                    let code = ResetCode::TIMEOUT;
                    self.reset_stream(id, code, Outcome::TimedOut);
                    if thrown_away && self.churn_exceeded.is_none() {
                        self.churn_exceeded = self.count_churn(now).err();
                    }
                }
                Timer::Stall if s.stall_check == Some(at) => {
                    if s.queued_bytes == 0 {
                        // Nothing waits for the peer: not stalled (a long poll, an idle
                        // event stream). The next queued chunk arms a new check.
                        if let Some(s) = self.streams.get_mut(&id) {
                            s.stall_check = None;
                            s.stalled = false;
                        }
                        self.live_timers -= 1;
                    } else if s.stalled {
                        // Queued at the last check too, and not a byte sent since.
                        self.reset_locally(id, ResetCode::ENHANCE_YOUR_CALM);
                    } else {
                        // A fixed schedule, however late this call: a check that is
                        // already due again is handled in this same loop.
                        // A next check too far to represent never comes: stop checking.
                        let next = at.checked_add(self.config.stall_timeout);
                        if let Some(s) = self.streams.get_mut(&id) {
                            s.stalled = next.is_some();
                            s.stall_check = next;
                        }
                        match next {
                            Some(next) => self.timers.push(Reverse((next, id, Timer::Stall))),
                            None => self.live_timers -= 1,
                        }
                    }
                }
                _ => {} // stale
            }
        }
        self.wake_parked();
    }

    /// The transport is gone: every open stream ends with [`Outcome::ConnectionLost`].
    pub fn handle_connection_lost(&mut self) {
        let ids: Vec<StreamId> = self.streams.keys().copied().collect();
        for id in ids {
            self.close(id, Outcome::ConnectionLost);
        }
        self.control.clear();
        self.ready.clear();
        self.parked.clear();
        self.timers.clear();
        self.live_timers = 0;
        // Their outcome was reported when they were cancelled.
        self.local_open -= self.deferred_cancels.len() as u32;
        self.deferred_cancels.clear();
    }

    // ---- local API

    /// Whether the embedder answers the requests the peer opens from now on
    /// ([`StreamsConfig::serve_requests`]); requests the machine already answered stay
    /// answered.
    pub fn set_serve_requests(&mut self, serve: bool) {
        self.config.serve_requests = serve;
    }

    /// Whether the embedder releases received body bytes itself from now on
    /// ([`StreamsConfig::manual_release`]).
    pub fn set_manual_release(&mut self, manual: bool) {
        self.config.manual_release = manual;
    }

    /// Opens a stream with a request head. With `end_stream` the request has no body.
    /// With a `timeout`, the request carries it (§10.6, as [`RequestHead::timeout_ms`]
    /// unless the head has a deadline of its own, which is sent as it is) and the stream is
    /// reset with TIMEOUT when it passes; a timeout above the header's 9,999,999,999 ms is
    /// cut to it, and one whose deadline the clock cannot represent never passes (§5).
    pub fn open(
        &mut self,
        mut head: RequestHead,
        end_stream: bool,
        timeout: Option<Duration>,
        now: Instant,
    ) -> Result<StreamId, OpenError> {
        self.clock = Some(now);
        if self.sent_goaway.is_some() || self.recv_goaway.is_some() {
            return Err(OpenError::GoingAway);
        }
        if self.local_open >= self.peer.max_concurrent_streams {
            return Err(OpenError::Blocked);
        }
        let id = StreamId::new(self.next_local.ok_or(OpenError::Exhausted)?);
        // The deadline goes with the head, cut to what the field carries, unless the head
        // has its own (sent as it is). Its size counts (§5).
        if let Some(t) = timeout {
            if head.timeout_ms.is_none() && !head.headers.contains_key(&TIMEOUT_NAME) {
                head.timeout_ms = Some(t.as_millis().clamp(1, u128::from(MAX_TIMEOUT_MS)) as u64);
            }
        }
        let size = head.encoded_size();
        if !size.fits(&peer_head_limits(&self.peer)) {
            return Err(OpenError::HeadTooLarge(size));
        }
        // spec/protocol.md §4.1: a sender does not send a target the peer refuses.
        if head.check_target().is_err() {
            return Err(OpenError::InvalidTarget);
        }
        self.next_local = id.value().checked_add(2);
        let mut stream = Stream::new(
            if end_stream { Send::Done } else { Send::Open },
            Recv::AwaitHead,
            self.peer.initial_stream_window,
            self.config.initial_stream_window,
        );
        stream.head_request = head.method == http::Method::HEAD;
        stream.local_opened_at = Some(now);
        if let Some(t) = timeout {
            // The field carries at most MAX_TIMEOUT_MS, and both ends run the same
            // deadline: a longer timeout is cut to it here too (spec/protocol.md §10.6).
            let t = t.min(Duration::from_millis(MAX_TIMEOUT_MS));
            // A deadline too far to represent is never reached: no timer (§5).
            if let Some(at) = now.checked_add(t) {
                stream.deadline = Some(at);
                self.timers.push(Reverse((at, id, Timer::Deadline)));
                self.live_timers += 1;
            }
        }
        self.streams.insert(id, stream);
        self.local_open += 1;
        self.control.push_back(Frame::Headers(Headers {
            stream_id: id,
            end_stream,
            head: Head::Request(head),
        }));
        Ok(id)
    }

    /// Sends the response head on a stream the peer opened. A 1xx head may be sent any
    /// number of times before the final one.
    ///
    /// A head larger than the peer's limits is not sent: the stream is reset with
    /// INTERNAL_ERROR (spec/protocol.md §5) and [`SendError::HeadTooLarge`] says so.
    pub fn send_response(
        &mut self,
        id: StreamId,
        head: ResponseHead,
        end_stream: bool,
    ) -> Result<(), SendError> {
        if self.is_local(id) {
            return Err(SendError::InvalidState(id));
        }
        let s = self
            .streams
            .get_mut(&id)
            .ok_or(SendError::UnknownStream(id))?;
        if s.send != Send::Idle {
            return Err(SendError::InvalidState(id));
        }
        let size = head.encoded_size();
        if !size.fits(&peer_head_limits(&self.peer)) {
            // spec/protocol.md §5: a responder whose head does not fit resets the stream
            // with INTERNAL_ERROR; a single oversized head never costs the connection.
            self.reset_locally(id, ResetCode::INTERNAL_ERROR);
            return Err(SendError::HeadTooLarge { id, size });
        }
        if head.status.is_informational() {
            if end_stream || head.status == http::StatusCode::SWITCHING_PROTOCOLS {
                return Err(SendError::InvalidState(id));
            }
        } else {
            s.send = if end_stream { Send::Done } else { Send::Open };
        }
        self.control.push_back(Frame::Headers(Headers {
            stream_id: id,
            end_stream,
            head: Head::Response(head),
        }));
        self.maybe_finish(id);
        Ok(())
    }

    /// Queues body bytes (and with `end_stream`, the end of the body). The bytes are sent
    /// as windows allow, in frames of at most the peer's `max_frame_payload`, taking turns
    /// with other streams.
    ///
    /// The peer's credit drives how much is taken (spec/protocol.md §10.3, §10.8): a
    /// stream takes a chunk when its queue is empty, or while what is queued is below the
    /// peer's window for it and within `max_send_buffer`; and only while the connection's
    /// queues are below `max_connection_send_buffer` and the process-wide
    /// [`SendBudget`] has room. Otherwise the data is handed back in
    /// [`SendError::Blocked`] and a [`StreamEvent::Writable`] follows when there is room.
    /// See also [`is_writable`](Self::is_writable).
    pub fn send_data(
        &mut self,
        id: StreamId,
        data: Bytes,
        end_stream: bool,
    ) -> Result<(), SendError> {
        let max = self.config.max_send_buffer;
        let Some(s) = self.streams.get_mut(&id) else {
            return Err(SendError::UnknownStream(id));
        };
        if s.send != Send::Open {
            return Err(SendError::InvalidState(id));
        }
        if !data.is_empty() {
            let stream_room = s.queued_bytes == 0
                || (window_left(s) > s.queued_bytes && s.queued_bytes + data.len() <= max);
            if !stream_room {
                s.blocked = true;
                return Err(SendError::Blocked { id, data });
            }
            let shared_room = self.conn_queued < self.config.max_connection_send_buffer
                && self.config.send_budget.try_acquire(data.len());
            if !shared_room {
                s.blocked = true;
                self.park(id);
                return Err(SendError::Blocked { id, data });
            }
            self.conn_queued += data.len();
            s.queued_bytes += data.len();
            s.queue.push_back(data);
            if s.stall_check.is_none() {
                // A check too far to represent never comes: none is armed (§5).
                if let Some(at) = self
                    .clock
                    .and_then(|clock| clock.checked_add(self.config.stall_timeout))
                {
                    s.stall_check = Some(at);
                    s.stalled = false;
                    self.timers.push(Reverse((at, id, Timer::Stall)));
                    self.live_timers += 1;
                }
            }
        }
        if end_stream {
            s.send = Send::Ending;
        } else if !self.has_room(id) {
            // Accepted, but no room for the next chunk: the sender hears when there is.
            if let Some(s) = self.streams.get_mut(&id) {
                s.blocked = true;
            }
            if stream_has_room(&self.streams[&id], max) {
                self.park(id);
            }
        }
        self.make_ready(id);
        self.wake_parked();
        Ok(())
    }

    /// Queues trailers after the queued data; they end our direction of the stream.
    ///
    /// Trailers larger than the peer's limits are not sent: the stream is reset with
    /// INTERNAL_ERROR (spec/protocol.md §5) and [`SendError::HeadTooLarge`] says so.
    pub fn send_trailers(&mut self, id: StreamId, trailers: HeaderMap) -> Result<(), SendError> {
        let s = self
            .streams
            .get_mut(&id)
            .ok_or(SendError::UnknownStream(id))?;
        if s.send != Send::Open {
            return Err(SendError::InvalidState(id));
        }
        let size = head::trailers_encoded_size(&trailers);
        if !size.fits(&peer_head_limits(&self.peer)) {
            // spec/protocol.md §5: as for a response head, reset rather than send what the
            // peer refuses (or cut the message short without a word).
            self.reset_locally(id, ResetCode::INTERNAL_ERROR);
            return Err(SendError::HeadTooLarge { id, size });
        }
        s.trailers = Some(trailers);
        s.send = Send::Ending;
        self.make_ready(id);
        Ok(())
    }

    /// Resets a stream (the caller gave up, the handler failed). Unknown streams are
    /// ignored: the stream may have ended meanwhile.
    pub fn reset(&mut self, id: StreamId, code: ResetCode) {
        if self.streams.contains_key(&id) {
            self.reset_locally(id, code);
        }
    }

    /// This end can no longer complete its part of stream `id`: the caller gave up on its
    /// request, a request or response body failed, a handler crashed. The machine picks
    /// the reset (spec/protocol.md §6.1, §10.5): on a stream this end opened, CANCEL (held
    /// back for a very young stream, as [`cancel`](Self::cancel) does, §10.8); on the
    /// peer's stream, INTERNAL_ERROR. Does nothing for a stream that is not open.
    pub fn abandon(&mut self, id: StreamId, now: Instant) {
        if self.is_local(id) {
            self.cancel(id, ResetCode::CANCEL, now);
        } else {
            self.reset(id, ResetCode::INTERNAL_ERROR);
        }
    }

    /// The requester gives up on a stream it opened (`code`: usually CANCEL); for a stream
    /// the peer opened this is [`reset`](Self::reset). The stream ends for the application
    /// at once ([`Outcome::Reset`], local). If it is younger than twice the minimum
    /// lifetime (`churn_min_lifetime`), its RESET goes out only once it is that old, and its slot
    /// stays taken until then, so that cancelling does not look like a rapid reset to the
    /// peer (spec/protocol.md §10.8); what arrives for it meanwhile is discarded.
    pub fn cancel(&mut self, id: StreamId, code: ResetCode, now: Instant) {
        let Some(s) = self.streams.get(&id) else {
            return;
        };
        // Twice the minimum lifetime: the peer measures the age from the head's arrival,
        // which may come later than our opening (queues on both sides).
        let hold = self.config.churn_min_lifetime.saturating_mul(2);
        let at = s
            .local_opened_at
            .and_then(|opened| opened.checked_add(hold));
        match at {
            Some(at) if at > now && self.is_local(id) => {
                self.deferred_cancels.insert(id, (at, code));
                self.timers.push(Reverse((at, id, Timer::Cancel)));
                let outcome = Outcome::Reset {
                    code,
                    initiator: Initiator::Local,
                };
                self.close_keeping_slot(id, outcome, true);
            }
            _ => self.reset_locally(id, code),
        }
    }

    /// [`release_capacity`](Self::release_capacity), with the time of the release: window
    /// growth (spec/protocol.md §10.3.1) times each grant, and `release_capacity` uses the
    /// `now` of the latest input for it. An embedder that releases bytes in turns with no
    /// other input (its reader consumed them later) passes the time here.
    pub fn release_capacity_at(&mut self, id: StreamId, n: u32, now: Instant) {
        if self.clock.is_none_or(|clock| clock < now) {
            self.clock = Some(now);
        }
        self.release_capacity(id, n);
    }

    /// The application consumed `n` received bytes of stream `id`: the window is given
    /// back to the peer (batched: a WINDOW_UPDATE goes out once half a window is due, and
    /// never with an increment of 0, spec/protocol.md §3.4.7). A window used up within two
    /// round trips grows (§10.3.1); the grant is timed with the `now` of the latest input
    /// ([`release_capacity_at`](Self::release_capacity_at) passes one).
    pub fn release_capacity(&mut self, id: StreamId, n: u32) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        let n = n.min(s.unreleased);
        if n == 0 {
            return;
        }
        s.unreleased -= n;
        let mut grew_to = None;
        if s.recv == Recv::Open {
            s.release_pending += n;
            // Never an increment of 0, which the peer treats as an error (§3.4.7).
            if s.release_pending >= s.growth.size() / 2 && s.release_pending > 0 {
                let mut inc = std::mem::take(&mut s.release_pending);
                // §10.3.1: a window used up within two round trips grows.
                let rtt = self.tuning.as_ref().and_then(|t| t.rtt_min);
                if s.growth.on_grant(inc, s.recv_window, self.clock, rtt) {
                    let extra = s
                        .growth
                        .headroom(self.config.max_stream_window.min(MAX_INCREMENT));
                    s.growth.grow(extra);
                    inc += extra;
                    grew_to = Some(s.growth.size());
                    tracing::debug!(%id, window = s.growth.size(), ?rtt, "stream receive window grew");
                }
                s.recv_window += inc;
                self.control.push_back(Frame::WindowUpdate(WindowUpdate {
                    stream_id: id,
                    increment: inc,
                }));
            }
        }
        // Only the peer can make this fail, through replies; a release is ours.
        let _ = self.release_connection(n, false);
        // The connection window stays at least twice the stream windows that grew, so
        // that it is not what holds a growing stream back (§10.3.1).
        if grew_to
            .is_some_and(|size| u64::from(size) * 2 > u64::from(self.connection_window_size()))
        {
            self.grow_connection();
        }
    }

    /// Doubles the connection window (within its maximum and the process-wide budget) and
    /// grants the growth at once, with what is due anyway (§10.3.1).
    fn grow_connection(&mut self) {
        let extra = Tuning::of(&mut self.tuning, self.config.initial_connection_window)
            .grow_connection(self.config.max_connection_window, &self.config.recv_budget);
        if extra == 0 {
            return;
        }
        let inc = extra + std::mem::take(&mut self.conn_release_pending);
        self.conn_recv_window += inc;
        self.control.push_back(Frame::WindowUpdate(WindowUpdate {
            stream_id: StreamId::ZERO,
            increment: inc,
        }));
    }

    /// No more of the peer's data is wanted on `id` (behind `discard_body` and the 501 the
    /// machine answers by itself; the machine picks `code`). Once our own direction has
    /// been sent in full, the stream is reset with `code` (NO_ERROR for a complete
    /// response, spec/protocol.md §6.1), which tells the peer to stop sending; at once if
    /// it already has been. Nothing happens if the peer's direction is already complete,
    /// or for an unknown stream.
    pub(crate) fn stop_receiving(&mut self, id: StreamId, code: ResetCode) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if s.recv == Recv::Done {
            return;
        }
        s.stop_after_send = Some(code);
        self.maybe_finish(id);
    }

    /// The application no longer wants the body it is receiving on `id` (it dropped it
    /// unread): the documented way to say so. The machine picks the reaction the spec
    /// gives for whose stream it is:
    ///
    /// - **Our own request** (the response body is unwanted): the exchange is abandoned, so
    ///   the stream is cancelled with CANCEL (spec/protocol.md §6.1, §10.5), through
    ///   [`cancel`](Self::cancel), so a very young stream's RESET is held as §10.8 asks.
    /// - **The peer's request** (a handler answered without reading the whole request
    ///   body): the response still goes out in full, then the stream is reset with
    ///   NO_ERROR so the peer stops sending (§6.1: "the response is complete and the rest
    ///   of the request body is not wanted").
    ///
    /// Either way what was received and not yet released goes back to the peer's windows
    /// now, and what still arrives is released as it comes and not reported (no more
    /// [`StreamEvent::Data`] or [`StreamEvent::Trailers`] for it; its
    /// [`StreamEvent::Closed`] still comes). Nothing happens for an unknown stream; if the
    /// peer's direction is already complete, only the release.
    pub fn discard_body(&mut self, id: StreamId, now: Instant) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        s.discarded = true;
        let (unread, complete) = (s.unreleased, s.recv == Recv::Done);
        self.release_capacity(id, unread);
        if complete {
            return; // nothing more is coming: nothing to stop
        }
        if self.is_local(id) {
            self.cancel(id, ResetCode::CANCEL, now);
        } else {
            self.stop_receiving(id, ResetCode::NO_ERROR);
        }
    }

    /// Starts a graceful shutdown: GOAWAY tells the peer the last of its streams we will
    /// process; later ones are refused. Streams already open run to completion. A reason
    /// over [`MAX_GOAWAY_REASON`] bytes is cut.
    pub fn go_away(&mut self, code: ResetCode, reason: &str) {
        let last = StreamId::new(self.last_peer);
        self.sent_goaway = Some(last);
        // spec/protocol.md §3.4.8 [3.4.8-1]: at most 256 bytes, cut at a character boundary.
        let mut end = reason.len().min(MAX_GOAWAY_REASON);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        self.control.push_back(Frame::GoAway(GoAway {
            last_stream_id: last,
            code,
            reason: reason[..end].to_owned(),
        }));
    }

    /// Whether `id` takes data now, like [`is_writable`](Self::is_writable); if it does
    /// not, a [`StreamEvent::Writable`] follows when it does. A sender asks before reading
    /// its first chunk from the body's source, so that even that chunk is not read ahead
    /// of the peer's credit and the shared limits (§10.3, §10.8).
    pub fn poll_writable(&mut self, id: StreamId) -> bool {
        let Some(s) = self.streams.get(&id) else {
            return false;
        };
        if s.send != Send::Open {
            return false;
        }
        if self.has_room(id) {
            return true;
        }
        let stream_room = stream_has_room(s, self.config.max_send_buffer);
        if let Some(s) = self.streams.get_mut(&id) {
            s.blocked = true;
        }
        if stream_room {
            self.park(id);
        }
        false
    }

    // ---- outputs

    /// The next frame to send, or `None`. Control frames go first, then DATA from the
    /// ready streams in turn, as the windows allow.
    pub fn poll_transmit(&mut self) -> Option<Frame> {
        if let Some(frame) = self.control.pop_front() {
            return Some(frame);
        }
        while let Some(id) = self.ready.pop_front() {
            let Some(s) = self.streams.get_mut(&id) else {
                continue;
            };
            s.in_ready = false;
            if s.queue.is_empty() {
                if !s.has_windowless_frame() {
                    continue;
                }
                s.send = Send::Done;
                let frame = match s.trailers.take() {
                    Some(t) => Frame::Headers(Headers {
                        stream_id: id,
                        end_stream: true,
                        head: Head::Trailers(t),
                    }),
                    None => Frame::Data(Data {
                        stream_id: id,
                        end_stream: true,
                        payload: Bytes::new(),
                    }),
                };
                self.maybe_finish(id);
                return Some(frame);
            }
            if s.send_window <= 0 {
                continue; // back in the ready list when the peer grants window
            }
            if self.conn_send_window <= 0 {
                s.in_ready = true;
                self.ready.push_front(id);
                return None;
            }
            let allowed = s
                .send_window
                .min(self.conn_send_window)
                .min(i64::from(self.peer.max_frame_payload));
            let front = s.queue.front_mut().expect("queue is not empty");
            let n = front.len().min(allowed as usize);
            let payload = if n == front.len() {
                s.queue.pop_front().expect("front exists")
            } else {
                front.split_to(n)
            };
            s.send_window -= n as i64;
            self.conn_send_window -= n as i64;
            s.queued_bytes -= n;
            s.stalled = false; // the data moved
            self.conn_queued -= n;
            self.config.send_budget.release(n);
            let end_stream = s.queue.is_empty() && s.send == Send::Ending && s.trailers.is_none();
            if end_stream {
                s.send = Send::Done;
            }
            if s.has_pending_send() {
                s.in_ready = true;
                self.ready.push_back(id);
            }
            if end_stream {
                self.maybe_finish(id);
            } else {
                self.wake(id);
            }
            self.wake_parked();
            return Some(Frame::Data(Data {
                stream_id: id,
                end_stream,
                payload,
            }));
        }
        None
    }

    /// Whether [`poll_event`](Self::poll_event) has something. [`poll_transmit`](Self::poll_transmit)
    /// can queue events too (a stream whose send queue drained becomes
    /// [`Writable`](StreamEvent::Writable)), so a driver drains events again after
    /// transmitting, until both are empty.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// The next event, or `None`.
    pub fn poll_event(&mut self) -> Option<StreamEvent> {
        self.events.pop_front()
    }

    /// The earliest stream deadline, if any (it may belong to a stream that has since
    /// ended; the resulting `handle_timeout` is then a no-op).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timer = self.timers.peek().map(|Reverse((at, _, _))| *at);
        // Streams parked while the connection has room wait for the process-wide budget,
        // which other connections free: look again soon.
        let retry = if !self.parked.is_empty()
            && self.conn_queued < self.config.max_connection_send_buffer
        {
            self.clock.and_then(|c| c.checked_add(BUDGET_RETRY))
        } else {
            None
        };
        match (timer, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    // ---- internals

    fn make_ready(&mut self, id: StreamId) {
        if let Some(s) = self.streams.get_mut(&id) {
            let sendable = s.has_windowless_frame() || (!s.queue.is_empty() && s.send_window > 0);
            if sendable && !s.in_ready {
                s.in_ready = true;
                self.ready.push_back(id);
            }
        }
    }

    /// Queues a frame the peer's behaviour made necessary, within the reply budget.
    fn reply(&mut self, frame: Frame) -> Result<(), StreamsError> {
        if self.control.len() >= self.config.max_queued_replies {
            return Err(StreamsError::TooManyReplies {
                limit: self.config.max_queued_replies,
            });
        }
        self.control.push_back(frame);
        Ok(())
    }

    /// Whether `s`, ending now, is a peer stream thrown away young (spec/protocol.md
    /// §10.8): opened by the peer less than `churn_min_lifetime` ago and our response not
    /// yet sent in full.
    fn is_thrown_away_young(&self, s: &Stream, now: Instant) -> bool {
        s.send != Send::Done
            && s.peer_opened_at.is_some_and(|at| {
                now.saturating_duration_since(at) < self.config.churn_min_lifetime
            })
    }

    /// Resets an open stream because the peer broke a stream rule: churn (§10.8).
    fn reset_for_peer_error(
        &mut self,
        id: StreamId,
        code: ResetCode,
        now: Instant,
    ) -> Result<(), StreamsError> {
        self.reset_locally(id, code);
        self.count_churn(now)
    }

    /// Answers a frame for a stream that is not open with RESET because the peer broke a
    /// stream rule: churn (§10.8), and a reply within the reply budget.
    fn reply_reset_for_peer_error(
        &mut self,
        id: StreamId,
        code: ResetCode,
        now: Instant,
    ) -> Result<(), StreamsError> {
        self.count_churn(now)?;
        self.reply(Frame::Reset(Reset {
            stream_id: id,
            code,
        }))
    }

    fn count_churn(&mut self, now: Instant) -> Result<(), StreamsError> {
        let fresh = self
            .churn_since
            .is_none_or(|since| now.saturating_duration_since(since) >= self.config.churn_window);
        if fresh {
            self.churn_since = Some(now);
            self.churn = 0;
        }
        self.churn = self.churn.saturating_add(1);
        if self.churn > self.config.max_churn {
            return Err(StreamsError::Churn {
                limit: self.config.max_churn,
                window: self.config.churn_window,
            });
        }
        Ok(())
    }

    /// One of our streams no longer counts against the peer's MAX_CONCURRENT_STREAMS.
    fn release_local_slot(&mut self) {
        // A slot freed while all were taken: whoever was refused may open now.
        if self.local_open >= self.peer.max_concurrent_streams {
            self.events.push_back(StreamEvent::CanOpen);
        }
        self.local_open -= 1;
    }

    /// Gives `n` received connection-window bytes back to the peer (batched).
    fn release_connection(&mut self, n: u32, is_reply: bool) -> Result<(), StreamsError> {
        self.conn_release_pending += n;
        if self.conn_release_pending >= self.connection_window_size() / 2
            && self.conn_release_pending > 0
        {
            let mut inc = std::mem::take(&mut self.conn_release_pending);
            // §10.3.1: a window used up within two round trips grows, as far as the
            // process-wide budget allows.
            let t = Tuning::of(&mut self.tuning, self.config.initial_connection_window);
            if t.conn
                .on_grant(inc, self.conn_recv_window, self.clock, t.rtt_min)
            {
                inc +=
                    t.grow_connection(self.config.max_connection_window, &self.config.recv_budget);
            }
            self.conn_recv_window += inc;
            let frame = Frame::WindowUpdate(WindowUpdate {
                stream_id: StreamId::ZERO,
                increment: inc,
            });
            if is_reply {
                return self.reply(frame);
            }
            self.control.push_back(frame);
        }
        Ok(())
    }

    /// Resets a stream on our own initiative (a local decision or a rule the peer broke).
    fn reset_locally(&mut self, id: StreamId, code: ResetCode) {
        self.reset_stream(
            id,
            code,
            Outcome::Reset {
                code,
                initiator: Initiator::Local,
            },
        );
    }

    fn reset_stream(&mut self, id: StreamId, code: ResetCode, outcome: Outcome) {
        self.control.push_back(Frame::Reset(Reset {
            stream_id: id,
            code,
        }));
        self.close(id, outcome);
    }

    fn maybe_finish(&mut self, id: StreamId) {
        let Some(s) = self.streams.get(&id) else {
            return;
        };
        if s.is_finished() {
            self.close(id, Outcome::Finished);
        } else if let (Send::Done, Some(code)) = (s.send, s.stop_after_send) {
            // Our direction is complete and the rest of the peer's is unwanted.
            self.reset_locally(id, code);
        }
    }

    /// Removes a stream and reports its one outcome.
    fn close(&mut self, id: StreamId, outcome: Outcome) {
        self.close_keeping_slot(id, outcome, false);
    }

    /// [`close`](Self::close); with `keep_slot` a local stream still counts against the
    /// peer's MAX_CONCURRENT_STREAMS (a deferred cancel, §10.8).
    fn close_keeping_slot(&mut self, id: StreamId, outcome: Outcome, keep_slot: bool) {
        let Some(s) = self.streams.remove(&id) else {
            return;
        };
        let timers = usize::from(s.deadline.is_some()) + usize::from(s.stall_check.is_some());
        if timers > 0 {
            self.live_timers -= timers;
            // Timers of finished streams stay in the heap until they come up; once they
            // are the majority, drop them (amortised O(1) per stream).
            let live = self.live_timers + self.deferred_cancels.len();
            if self.timers.len() > 64 && self.timers.len() > 2 * live {
                let streams = &self.streams;
                let deferred = &self.deferred_cancels;
                self.timers.retain(|Reverse((at, id, timer))| match timer {
                    Timer::Deadline => streams.get(id).is_some_and(|s| s.deadline == Some(*at)),
                    Timer::Stall => streams.get(id).is_some_and(|s| s.stall_check == Some(*at)),
                    Timer::Cancel => deferred.get(id).is_some_and(|&(due, _)| due == *at),
                });
            }
        }
        if s.queued_bytes > 0 {
            // Queued data that will never be sent gives its room back.
            self.conn_queued -= s.queued_bytes;
            self.config.send_budget.release(s.queued_bytes);
        }
        if self.is_local(id) {
            if !keep_slot {
                self.release_local_slot();
            }
        } else {
            self.peer_open -= 1;
        }
        // Received bytes the application never released still belong to the connection
        // window; queued data that will never be sent is simply dropped.
        let _ = self.release_connection(s.unreleased, false);
        if !s.unserved {
            self.events.push_back(StreamEvent::Closed { id, outcome });
        }
        self.wake_parked();
    }

    /// Whether the connection and the process-wide budget have room for another chunk.
    fn shared_room(&self) -> bool {
        self.conn_queued < self.config.max_connection_send_buffer
            && self.config.send_budget.has_room()
    }

    /// Whether `id` could take another chunk now.
    fn has_room(&self, id: StreamId) -> bool {
        self.streams
            .get(&id)
            .is_some_and(|s| stream_has_room(s, self.config.max_send_buffer) && self.shared_room())
    }

    /// Something changed for `id` (data sent, window granted): a blocked stream with room
    /// again becomes writable; one that waits only for shared room joins the parked ones.
    fn wake(&mut self, id: StreamId) {
        let shared = self.shared_room();
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if !s.blocked || !stream_has_room(s, self.config.max_send_buffer) {
            return;
        }
        if shared {
            s.blocked = false;
            self.events.push_back(StreamEvent::Writable { id });
        } else {
            self.park(id);
        }
    }

    /// `id` waits for room on the connection or in the process-wide budget.
    fn park(&mut self, id: StreamId) {
        let Some(s) = self.streams.get_mut(&id) else {
            return;
        };
        if s.parked {
            return;
        }
        s.parked = true;
        // Closed streams leave stale entries: drop them once they are the majority.
        if self.parked.len() >= 2 * self.streams.len() + 16 {
            let streams = &self.streams;
            self.parked
                .retain(|id| streams.get(id).is_some_and(|s| s.parked));
        }
        self.parked.push_back(id);
    }

    /// Room was freed (data sent, a stream closed, time passed for the shared budget):
    /// the first parked stream that can take a chunk becomes writable. One at a time, so
    /// the connection's limit is overshot by at most one chunk; the next is woken when
    /// that one has queued its chunk, or when more room is freed.
    fn wake_parked(&mut self) {
        while let Some(&id) = self.parked.front() {
            if !self.shared_room() {
                return;
            }
            self.parked.pop_front();
            let max = self.config.max_send_buffer;
            let Some(s) = self.streams.get_mut(&id) else {
                continue;
            };
            s.parked = false;
            if s.blocked && stream_has_room(s, max) {
                s.blocked = false;
                self.events.push_back(StreamEvent::Writable { id });
                return;
            }
            // Not blocked any more, or waiting for its own window (woken by `wake`).
        }
    }
}

impl Drop for Streams {
    fn drop(&mut self) {
        // The shared budgets outlive this connection: give back what it still holds.
        self.config.send_budget.release(self.conn_queued);
        let grown = self.connection_window_size() - self.config.initial_connection_window;
        self.config.recv_budget.release(grown as usize);
    }
}

/// Bytes the peer's window for `s` still allows (0 when it is used up).
fn window_left(s: &Stream) -> usize {
    usize::try_from(s.send_window.max(0)).unwrap_or(usize::MAX)
}

/// Whether `s` itself takes another chunk now (spec/protocol.md §10.3): its queue is
/// empty, or below the peer's window for it and at most half of `max_send_buffer` (so a
/// sender woken for it is not refused again at once).
fn stream_has_room(s: &Stream, max_send_buffer: usize) -> bool {
    s.queued_bytes == 0
        || (window_left(s) > s.queued_bytes && s.queued_bytes <= max_send_buffer / 2)
}

/// The body of the 501 the machine answers requests with when the embedder serves none.
const UNSERVED_BODY: &[u8] = b"no HTTP service is attached to this end of the Tether connection\n";

/// The peer's head limits, as [`crate::Limits`] for [`EncodedSize::fits`].
fn peer_head_limits(peer: &PeerLimits) -> crate::Limits {
    crate::Limits {
        max_head_size: peer.max_head_size,
        max_header_count: peer.max_header_count,
        ..crate::Limits::default()
    }
}
