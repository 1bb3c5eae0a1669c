//! [`ReadAhead`]: fewer read system calls and fewer copies for large WebSocket messages,
//! without a large buffer on idle connections.
//!
//! tungstenite reads a message at most `read_buffer_size` bytes per call (1 KiB here, see
//! [`ws_config`](crate::transport::ws_config), kept small so that 10,000 idle connections stay
//! cheap). A 64 KiB DATA frame then costs 64 or more `recv` calls, each a system call and a
//! trip through the runtime's I/O driver: most of the cost of a large body on loopback.
//!
//! [`ReadAhead`] sits between tungstenite and the socket. While reads are small it passes
//! them straight through (no copy, no buffer), or reads them for [`poll_message`] itself
//! (below, "Binary frames read whole"). When a read fills the caller's buffer
//! completely, more is probably waiting, so it switches to reading [`CHUNK`] bytes at a
//! time into its own buffer and hands them out from there: one system call per chunk
//! instead of one per 1 KiB. The buffer is freed when the socket runs dry twice without a
//! large read in between (the traffic is no longer bulk), so an idle connection holds none:
//! at the latest its next heartbeat frees it. Keeping it across the short gaps of a bulk
//! transfer matters: freeing and allocating it per gap costs page faults.
//!
//! # Binary frames read whole
//!
//! Handing a frame out 1 KiB at a time still costs tungstenite's work per piece (it
//! zero-fills its buffer before every read) and one copy into its buffer. So while
//! [`poll_message`] reads a Tether connection's next message, read-ahead mode reads a final
//! binary frame itself, whole, and returns its payload as the message: a frame of at least
//! [`OWN_ALLOCATION`] bytes is read straight into an allocation made for it and its
//! payload is split off without a copy; a smaller one is copied out of the read-ahead
//! buffer.
//!
//! An own allocation has room for the frames that most likely follow: up to
//! [`OWN_FRAMES`] frames of the size of the one it is made for (a body's DATA frames mostly
//! have one size, the peer's MAX_FRAME_PAYLOAD), [`OWN_AHEAD`] bytes at most, and [`TAIL`]
//! bytes more, which bring the next header along. One read fills it up to the end of the
//! last whole frame of that size that fits, so four 64 KiB frames cost one system call
//! instead of four (benches/RESULTS.md, "Four frames to a read"); a frame that then lies
//! at the allocation's end only in part goes to the next allocation with what of it came.
//! The frames of one allocation share it: each payload split off holds the whole
//! allocation for as long as its reader keeps it (or any slice of it). That is at most
//! [`MAX_HELD`] times the payload's own frame: a frame smaller than that share of its
//! allocation is copied out instead. A reader that drops its payloads in turn, as a body's
//! reader does, frees each allocation with its last frame; one that keeps some of them and
//! drops others holds up to that many times the bytes it keeps.
//!
//! Small traffic is read past tungstenite as well. Outside read-ahead mode, at a boundary
//! where a frame may be taken whole (below), [`poll_message`] reads the socket itself,
//! [`SMALL_READ`] bytes at most, into a buffer on the stack: before asking tungstenite
//! when tungstenite holds no byte (it asked for bytes at a boundary and was handed none
//! since; a pass-through read may have handed it several frames, and those come first),
//! else when tungstenite asks. A final binary frame that is all the read brought is copied
//! out of it as its payload: one allocation, the message's, and nothing kept (but see
//! "Small reads kept" below, for a connection that carries requests). Several
//! frames that came together are kept in the buffer, exactly as many bytes as came (one
//! allocation, made for that read), and split off it one per message without a copy, so a
//! payload holds at most [`SMALL_READ`] bytes of memory; a frame not to take (a ping, a
//! part of a frame) goes from there to tungstenite as any buffered bytes do, and the
//! buffer is freed once empty. tungstenite's read path (its frame parser, the zero-filling
//! of its buffer, the adapters between it and the socket) then runs only for what it alone
//! handles: it cost about a tenth of a small request's instructions (benches/RESULTS.md,
//! "Small frames read past tungstenite"). A read that fills the stack buffer switches to
//! read-ahead mode, as one that fills tungstenite's buffer does. One thing tungstenite did
//! at the start of each read no longer happens at every message: writing a pong it could
//! not write when it answered a ping (the socket's send buffer was full). Such a pong goes
//! out with the next write burst, which flushes tungstenite first (the heartbeat makes one
//! at least every interval); a pong that could be written went out at once, as before.
//!
//! # Small reads kept
//!
//! Once the connection has had a stream open ([`ReadAhead::keep_small_reads`], from the
//! run loop), a small read is not given an allocation of its own: its bytes go into one
//! allocation of [`SMALL_READ`] bytes kept from one read to the next, after what the reads
//! before it left there, and its frames are split off it. When the room is used up and no
//! payload split off it is held any more, the allocation is taken back from its start;
//! with one still held, a new one is made (the payload is never written over) and the old
//! one goes with its last payload. So one request or response at a time costs no
//! allocation to read, where each of its messages took two (one for the bytes, one for the
//! count of the handles sharing them), and a payload still holds at most [`SMALL_READ`]
//! bytes of memory. The allocation is kept between requests, and goes when a deadline finds
//! the connection with no stream open ([`ReadAhead::quiet`], the connection's heartbeat
//! after an interval of quiet), so that an idle connection holds none; a connection without
//! a heartbeat or any other deadline keeps it for its life once it carried a request.
//!
//! # Allocations reused
//!
//! An allocation made for frames read whole is kept, once the reading moves on to the
//! next one, in a small pool of the connection ([`Pool`]), and taken again for later
//! frames as soon as every payload split off it has been dropped (the pool holds an empty
//! handle of it, which [`BytesMut::try_reclaim`] turns back into the whole allocation
//! only when no other handle is left: a payload still held is never written over). A
//! body streaming in at the speed its reader takes it so cycles through the same few
//! allocations, as many as its frames in flight take, instead of one `malloc` and `free`
//! per read. That matters once more than about a megabyte is in flight (windows larger than
//! the defaults, spec/protocol.md §10.3): the allocator then gave the top of its heap back
//! to the kernel and took it again, over and over, and each page came back through a page
//! fault, about one per 4 KiB received, which halved the rate of a body
//! (benches/RESULTS.md, "Allocations reused"). The pool holds the allocations of at most
//! the connection's receive window and a quarter (for rounding and headers), and one
//! allocation more, counting those still holding payloads. So what a connection may be
//! made to hold stays of the order its window allows: in the worst case, payloads a slow
//! reader keeps outside the pool plus a pool of free allocations, about twice the window.
//! It is freed when the connection has no stream open ([`ReadAhead::shed_pool`], from the
//! run loop), and with the buffer when the traffic is no longer bulk, so an idle
//! connection holds none.
//!
//! It may do so only where tungstenite would make the same message of the same bytes, and
//! holds none of them itself:
//! - at a frame boundary ([`Boundaries`], which follows every byte handed to tungstenite):
//!   a reader asks for bytes only when its buffer holds no whole frame, and the bytes it
//!   was handed end with a whole frame, so its buffer is empty;
//! - outside a fragmented message and before any close frame;
//! - for a frame tungstenite would accept: final, binary, no reserved bit, masked exactly
//!   when this is the server, no larger than its frame and message limits.
//!
//! Any other frame is handed to tungstenite as before, one frame at a time (a read never
//! goes past the end of the current frame, so that every frame starts at a boundary), and
//! tungstenite keeps every rule, error and control frame it handles. A frame read only in
//! part when the connection stops taking frames (the closing handshake reads through
//! tungstenite alone) is still raw bytes in the buffer, and tungstenite gets it as it came.
//!
//! It registers the caller's waker with the socket as it is, and keeps no waker of its own.
//! An earlier version put its own waker between the two, to know without a read when the
//! socket was empty (and skip tungstenite's read path then): under 1 MiB bodies on eight
//! streams the connection's task then sometimes slept for seconds with its socket readable
//! (benches/RESULTS.md, "Binary frames read whole"), and with the caller's waker it does not.

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::boundaries::{self, Boundaries, Header, Peek, MAX_HEADER};
use super::frames::apply_mask;

/// Bytes asked of the socket in one read while in read-ahead mode.
pub(crate) const CHUNK: usize = 128 * 1024;

/// A read at least this large counts as bulk traffic and keeps the buffer for the next
/// time the socket runs dry.
const LARGE_READ: usize = CHUNK / 8;

/// A binary frame taken whole of at least this many bytes (header and payload) is read
/// into an own allocation (with the frames after it) and its payload split off without a
/// copy; a smaller one is copied out (see the module docs).
pub(crate) const OWN_ALLOCATION: usize = 16 * 1024;

/// Bytes asked of the socket in one read outside read-ahead mode while [`poll_message`]
/// reads (into a buffer on the stack), as many as tungstenite's own read buffer holds
/// ([`READ_BUFFER`](super::READ_BUFFER)).
const SMALL_READ: usize = super::READ_BUFFER;

/// Bytes read past the end of a frame read into its own allocation: the next frame's
/// header comes with the same system call.
pub(crate) const TAIL: usize = 16;

/// Own allocations are made in multiples of this many bytes, so that frames of nearly the
/// same size (a body's last, shorter frame, a different header form) can take each
/// other's allocations from the [`Pool`].
const OWN_ROUNDING: usize = 4096;

/// An own allocation holds up to this many frames of the size of the one it is made for
/// (fewer when they would take more than [`OWN_AHEAD`]), read with one system call: a
/// body's frames come one after another, mostly of one size.
const OWN_FRAMES: usize = 4;

/// Bytes of the frames an own allocation is made for, at most (at least one frame): four
/// DATA frames of the default MAX_FRAME_PAYLOAD, 64 KiB (spec/protocol.md §5), with their
/// headers, WebSocket's and Tether's.
const OWN_AHEAD: usize = 260 * 1024;

/// A frame is split off an own allocation, its payload holding the whole allocation,
/// only when the allocation is at most this many times the frame: [`OWN_FRAMES`] frames
/// of the size it was made for, taken again from the [`Pool`] at up to twice its size,
/// and the rounding. A smaller one is copied out.
const MAX_HELD: usize = 2 * OWN_FRAMES + 1;

/// The size of an own allocation for frames of `total` bytes (header and payload): as
/// many as [`OWN_FRAMES`] and [`OWN_AHEAD`] allow, and [`TAIL`] bytes more, rounded up to
/// [`OWN_ROUNDING`].
fn own_size(total: usize) -> usize {
    let frames = (OWN_AHEAD / total.max(1)).clamp(1, OWN_FRAMES);
    (frames * total + TAIL).div_ceil(OWN_ROUNDING) * OWN_ROUNDING
}

/// Allocations of frames read whole, kept for reuse once every payload split off them
/// is dropped (see the module docs). Exists only while frames are read whole.
#[derive(Debug, Default)]
struct Pool {
    /// Empty handles of retired allocations with their sizes, oldest first.
    spares: std::collections::VecDeque<(BytesMut, usize)>,
    /// The sum of the sizes in `spares`.
    bytes: usize,
    /// The size of the allocation `buf` is in, when it is an own allocation (else 0).
    current: usize,
    /// The size (header and payload) of the frames the current own allocation was made
    /// for, which the frames after them most likely have too.
    frame: usize,
}

impl Pool {
    /// An allocation of at least `size` bytes (already rounded): the oldest retired one
    /// when nothing points into it any more and it is not more than twice too large (a
    /// payload holds its whole allocation), else a new one.
    ///
    /// Payloads are mostly dropped in the order they arrived, so the oldest is the one to
    /// try; one its reader still holds goes to the back, and the next is tried, so that a
    /// payload kept for long does not stop the reuse of the others.
    fn take(&mut self, size: usize) -> (BytesMut, usize) {
        for _ in 0..2 {
            let Some((spare, cap)) = self.spares.front_mut() else {
                break;
            };
            let fits = *cap >= size && *cap <= 2 * size;
            if fits && spare.try_reclaim(*cap) {
                let (spare, cap) = self.spares.pop_front().expect("front exists");
                self.bytes -= cap;
                #[cfg(test)]
                tests::REUSED.with(|n| n.set(n.get() + 1));
                return (spare, cap);
            }
            let (spare, cap) = self.spares.pop_front().expect("front exists");
            if fits {
                self.spares.push_back((spare, cap));
            } else {
                // Never taken again: let it go (its memory is freed with its last payload).
                self.bytes -= cap;
            }
        }
        #[cfg(test)]
        tests::MADE.with(|n| n.set(n.get() + 1));
        (BytesMut::with_capacity(size), size)
    }

    /// Keeps the allocation `old` (of `cap` bytes) is in for a later frame, within `limit`
    /// bytes: the oldest go first.
    fn retire(&mut self, mut old: BytesMut, cap: usize, limit: usize) {
        old.clear();
        self.spares.push_back((old, cap));
        self.bytes += cap;
        while self.bytes > limit {
            let Some((_, cap)) = self.spares.pop_front() else {
                break;
            };
            self.bytes -= cap;
        }
    }
}

/// What `buf` holds for [`poll_message`] to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ready {
    /// Nothing.
    No,
    /// A whole binary frame to take, at its start, with the size of its header: parsed
    /// when the frame was found whole, not again when it is taken (see [`Whole`]).
    Frame(u8),
    /// Only the payload of a binary frame read whole from one small read, unmasked.
    Payload,
}

/// What [`ReadAhead::take_frame`] needs of the header of a whole frame to take at the
/// start of `buf`, found by [`boundaries::peek`] and [`ReadAhead::takeable`]: the header's
/// size, which is all [`Ready::Frame`] keeps (one byte more of every connection). The
/// payload's length and masking key are where RFC 6455 §5.2 puts them for a header of that
/// size, read again from `buf` without parsing the header twice.
#[derive(Debug, Clone, Copy)]
struct Whole {
    /// The header's size in bytes.
    size: usize,
    /// The payload's length.
    payload: usize,
    /// The masking key (the header's last four bytes), on the server side.
    mask: Option<[u8; 4]>,
}

impl Whole {
    /// The header at the start of `buf`, of `size` bytes, masked on the server side
    /// (`server`); `None` if `buf` does not hold that (it always does for a frame
    /// [`ReadAhead::takeable`] found whole).
    fn read(buf: &[u8], size: u8, server: bool) -> Option<Self> {
        let size = usize::from(size);
        let key = if server { 4 } else { 0 };
        let head = buf.get(..size)?;
        let payload = match size.checked_sub(key)? {
            2 => usize::from(head[1] & 0x7F),
            4 => usize::from(u16::from_be_bytes([head[2], head[3]])),
            10 => usize::try_from(u64::from_be_bytes(head[2..10].try_into().ok()?)).ok()?,
            _ => return None,
        };
        let mask = if server {
            Some(head[size - 4..].try_into().ok()?)
        } else {
            None
        };
        Some(Whole {
            size,
            payload,
            mask,
        })
    }
}

/// What [`ReadAhead::poll_small`] did with what the socket had.
enum Small {
    /// A message is ready for [`poll_message`].
    Taken,
    /// Bytes for tungstenite wait in `buf`.
    Buffered,
    /// The stream ended.
    Ended,
}

/// A byte stream that reads ahead in [`CHUNK`]s while data is streaming in, and reads
/// binary frames whole for [`poll_message`] (see the module docs). Writes pass straight
/// through. Every WebSocket of a Tether connection, client and server side, runs over one.
#[derive(Debug)]
pub(crate) struct ReadAhead<S> {
    inner: S,
    /// Read from the socket, not handed out yet: empty outside read-ahead mode.
    buf: BytesMut,
    /// Read-ahead mode: reads go through `buf`.
    ahead: bool,
    /// Whether a large read happened since the socket last ran dry.
    bulk: bool,
    /// Whether any bytes came since the socket last ran dry.
    fed: bool,
    /// The server side: frames from the peer are masked (RFC 6455 §5.3).
    server: bool,
    /// Whether a message waits in `buf` for [`poll_message`] to take, and in which form.
    ready: Ready,
    /// tungstenite holds no byte: it asked for bytes at a boundary (so its buffer held no
    /// frame), and none were handed to it since. Only then may [`poll_message`] read
    /// before asking tungstenite: a frame it still holds must come first.
    reader_empty: bool,
    /// Nonzero while [`poll_message`] reads: binary frames up to this payload length may
    /// be taken whole (tungstenite's frame and message limits, at most `u32::MAX`).
    take_max: u32,
    /// The frame structure of the bytes handed out.
    bounds: Boundaries,
    /// Payload bytes whose allocations the [`Pool`] keeps (the connection's receive
    /// window, [`set_pool_limit`](Self::set_pool_limit)); 0 until set: one allocation.
    pool_limit: u32,
    /// Allocations of frames read whole, for reuse (while frames are read whole).
    pool: Option<Box<Pool>>,
    /// Small reads go into one allocation kept in `buf` from one read to the next
    /// ([`keep_small_reads`](Self::keep_small_reads)), not one each.
    keep_small: bool,
}

impl<S> ReadAhead<S> {
    /// Wraps `inner`, the socket of a WebSocket on the `role` side.
    pub(crate) fn new(inner: S, role: Role) -> Self {
        ReadAhead {
            inner,
            buf: BytesMut::new(),
            ahead: false,
            bulk: false,
            fed: false,
            server: role == Role::Server,
            ready: Ready::No,
            reader_empty: false,
            take_max: 0,
            bounds: Boundaries::default(),
            pool_limit: 0,
            pool: None,
            keep_small: false,
        }
    }

    /// Lets the [`Pool`] keep the allocations of up to `window` payload bytes, the
    /// connection's receive window (what the peer may have in flight).
    pub(crate) fn set_pool_limit(&mut self, window: u32) {
        self.pool_limit = window;
    }

    /// Frees the allocations kept for reuse: the connection has no stream a body could
    /// still arrive on, so none will be taken again soon (without this they would stay
    /// until the traffic is seen to be small, which on a connection without heartbeat
    /// may be never). Those still holding payloads go when their payloads do.
    pub(crate) fn shed_pool(&mut self) {
        self.pool = None;
    }

    /// Keeps the allocation small reads are copied into from one read to the next, until
    /// [`quiet`](Self::quiet): the connection carries requests, and small frames then
    /// cost no allocation each (module docs, "Small reads kept").
    pub(crate) fn keep_small_reads(&mut self) {
        self.keep_small = true;
    }

    /// The connection went quiet (a deadline found no stream open): the allocation kept
    /// for small reads goes (once nothing waits in it), and each small read gets one of
    /// its own again, so that an idle connection holds none.
    pub(crate) fn quiet(&mut self) {
        self.keep_small = false;
        self.release_small();
    }

    /// The wrapped stream.
    pub(crate) fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped stream, for tests.
    #[cfg(test)]
    pub(crate) fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Whether allocations are kept for reuse, for tests.
    #[cfg(test)]
    pub(crate) fn has_pool(&self) -> bool {
        self.pool.is_some()
    }

    /// Bytes held in this wrapper's own buffer (0 when idle), for tests.
    #[cfg(test)]
    pub(crate) fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Whether small reads keep their allocation ([`keep_small_reads`](Self::keep_small_reads)), for tests.
    #[cfg(test)]
    pub(crate) fn keeps_small_reads(&self) -> bool {
        self.keep_small
    }

    /// Hands out buffered bytes, up to the end of the current frame.
    fn hand_out(&mut self, out: &mut ReadBuf<'_>) {
        let n = self.bounds.frame_rest(&self.buf).min(out.remaining());
        out.put_slice(&self.buf[..n]);
        self.bounds.pass(&self.buf[..n]);
        self.buf.advance(n);
        self.reader_empty = false;
        self.release_small();
    }

    /// Outside read-ahead mode `buf` holds only what is left of one small read: its
    /// allocation goes as soon as it is empty, so that an idle connection holds none,
    /// unless it is kept for the next small read ([`keep_small_reads`](Self::keep_small_reads)).
    fn release_small(&mut self) {
        if !self.ahead && self.buf.is_empty() && !self.keep_small {
            self.buf = BytesMut::new();
        }
    }

    /// Puts what one small read brought into the empty `buf`: after what earlier small
    /// reads left in the kept allocation while one is kept (that allocation taken back
    /// whole once no payload split off it is held, else a new one made), else into an
    /// allocation made for it.
    fn fill_small(&mut self, bytes: &[u8]) {
        debug_assert!(
            self.buf.is_empty(),
            "a small read goes into an empty buffer"
        );
        if !self.keep_small {
            self.buf = BytesMut::from(bytes);
            return;
        }
        if self.buf.capacity() < bytes.len() {
            // `bytes` is at most SMALL_READ long. `reserve` takes the allocation back
            // only when this handle is its last; with a payload still in it, a new one.
            self.buf.reserve(SMALL_READ);
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The socket ran dry: leaves read-ahead mode unless a large read came since the last
    /// time (and nothing is buffered). A socket polled again before anything came (the
    /// task was woken for something else, such as its reader releasing credit) is the same
    /// gap, not a second one: counting it freed the buffers in the middle of a body.
    fn on_dry(&mut self) {
        if !std::mem::take(&mut self.fed) {
            return;
        }
        if !std::mem::take(&mut self.bulk) && self.buf.is_empty() {
            self.ahead = false;
            self.buf = BytesMut::new();
            self.pool = None;
        }
    }

    /// Replaces `buf` with `fresh` (which holds what `buf` held), keeping `buf`'s
    /// allocation in the pool when it is an own allocation.
    fn replace_buf(&mut self, fresh: BytesMut, fresh_own: usize) {
        let old = std::mem::replace(&mut self.buf, fresh);
        if let Some(pool) = self.pool.as_deref_mut() {
            let cap = std::mem::replace(&mut pool.current, fresh_own);
            if cap > 0 {
                // The window counts payload bytes; allocations are larger by their
                // rounding and headers (about 6 % for 64 KiB frames): a quarter more.
                let window = self.pool_limit as usize;
                let limit = window.saturating_add(window / 4).saturating_add(cap);
                pool.retire(old, cap, limit);
            }
        }
    }

    /// The size of the own allocation `buf` lies in (0 when it lies in none): frames at
    /// its start are split off it (see [`take_frame`](Self::take_frame)).
    fn own(&self) -> usize {
        self.pool.as_deref().map_or(0, |pool| pool.current)
    }

    /// Moves what `buf` holds (the start of a frame of `total` bytes) into a new own
    /// allocation, with room for as many whole frames of that size as [`own_size`] gives.
    fn new_own(&mut self, total: usize) {
        let pool = self.pool.get_or_insert_with(Box::default);
        let (mut own, cap) = pool.take(own_size(total));
        pool.frame = total;
        own.extend_from_slice(&self.buf);
        self.replace_buf(own, cap);
    }

    /// How much to read into an own allocation when `buf` holds the start of a frame of
    /// `total` bytes: the rest of it, as many whole frames of the same size after it as
    /// the allocation has room for, and [`TAIL`] bytes more, so that a read of frames of
    /// one size ends where the next one's header does (its payload goes to the next
    /// allocation without a copy).
    fn own_read(&self, total: usize) -> usize {
        let room = self.buf.capacity() - self.buf.len();
        let rest = total.saturating_sub(self.buf.len());
        let Some(after) = room.checked_sub(rest) else {
            return room;
        };
        let more = after / total.max(1) * total;
        (rest + more + TAIL).min(room)
    }

    /// Whether tungstenite would make a binary message of this frame as it is: then the
    /// frame's size in bytes, header and payload, with room for [`TAIL`] more.
    fn takeable(&self, h: &Header) -> Option<usize> {
        let hd = &h.header;
        let ours = hd.is_final
            && matches!(hd.opcode, OpCode::Data(Data::Binary))
            && !(hd.rsv1 || hd.rsv2 || hd.rsv3)
            && hd.mask.is_some() == self.server
            && h.payload <= u64::from(self.take_max);
        let total = usize::try_from(h.payload).ok()?.checked_add(h.size)?;
        (ours && total.checked_add(TAIL).is_some()).then_some(total)
    }

    /// Makes room for `wanted` more bytes in `buf` (an allocation of up to [`CHUNK`],
    /// shared by the frames read into it); returns how many the next read may bring.
    fn room(&mut self, wanted: usize) -> usize {
        if self.buf.capacity() - self.buf.len() < wanted {
            let mut fresh = BytesMut::with_capacity(CHUNK.max(self.buf.len() + wanted));
            fresh.extend_from_slice(&self.buf);
            self.replace_buf(fresh, 0);
        }
        self.buf.capacity() - self.buf.len()
    }

    /// The message [`poll_read`](AsyncRead::poll_read) found ready (`ready`): a frame's
    /// payload, unmasked. Split off without a copy from an own allocation (or from the
    /// buffer of one small read), copied out of a shared one or when too small for its own
    /// allocation ([`MAX_HELD`]), or `buf` itself when it holds only the payload.
    fn take_frame(&mut self) -> Option<bytes::Bytes> {
        let h = match std::mem::replace(&mut self.ready, Ready::No) {
            Ready::No => return None,
            Ready::Payload => {
                #[cfg(test)]
                tests::TAKEN.with(|taken| taken.set(taken.get() + 1));
                // A kept allocation stays, with the room after the payload.
                let payload = if self.keep_small {
                    self.buf.split()
                } else {
                    std::mem::take(&mut self.buf)
                };
                return Some(payload.freeze());
            }
            Ready::Frame(size) => size,
        };
        let Some(Whole {
            size,
            payload,
            mask,
        }) = Whole::read(&self.buf, h, self.server)
        else {
            unreachable!("a ready frame starts with a whole header");
        };
        // Its size was checked by `takeable`, and all of it is in `buf`.
        let total = size + payload;
        // Outside read-ahead mode `buf` only ever holds what is left of one small read, in
        // an allocation made for it of at most SMALL_READ bytes (read-ahead mode ends only
        // with `buf` empty, `on_dry`): its frames share it. In an own allocation, a frame
        // large enough that its payload may hold the whole allocation does.
        let own = self.own();
        let split = !self.ahead || (own > 0 && total >= OWN_ALLOCATION && total * MAX_HELD >= own);
        let mut payload = if split {
            let mut frame = self.buf.split_to(total);
            frame.advance(size);
            frame
        } else {
            let payload = BytesMut::from(&self.buf[size..total]);
            self.buf.advance(total);
            payload
        };
        if let Some(key) = mask {
            apply_mask(&mut payload, key, 0);
        }
        self.release_small();
        #[cfg(test)]
        tests::TAKEN.with(|taken| taken.set(taken.get() + 1));
        Some(payload.freeze())
    }

    /// Whether [`poll_message`] takes the next message itself, before asking tungstenite:
    /// tungstenite holds no byte, outside read-ahead mode, at a boundary where a frame may
    /// be taken whole. It then reads the socket if nothing is buffered here, or takes a
    /// whole frame left of a small read.
    fn takes_first(&self) -> bool {
        self.take_max > 0
            && self.reader_empty
            && !self.ahead
            && self.ready == Ready::No
            && self.bounds.may_take()
    }

    /// The size of the header of the whole frame to take at the start of `buf`, if there
    /// is one.
    fn whole_in_buf(&self) -> Option<u8> {
        match boundaries::peek(&self.buf) {
            Peek::Header(h) => self
                .takeable(&h)
                .filter(|&total| total <= self.buf.len())
                .map(|_| header_size(&h)),
            _ => None,
        }
    }
}

/// The size of a parsed header, at most [`MAX_HEADER`] (14) bytes.
fn header_size(h: &Header) -> u8 {
    u8::try_from(h.size).unwrap_or(u8::MAX)
}

impl<S: AsyncRead + Unpin> ReadAhead<S> {
    /// At a boundary, outside read-ahead mode, while [`poll_message`] reads and `buf` is
    /// empty (before tungstenite when it holds no byte, else when it asks): one read of up
    /// to [`SMALL_READ`] bytes into a buffer on the stack. A whole frame to take that is
    /// all the read brought becomes `buf`, payload only (one allocation, the message's);
    /// one followed by more bytes is taken out of `buf`, which then holds the read.
    /// Anything else waits in `buf` for tungstenite. A read that fills the stack buffer
    /// switches to read-ahead mode, as a pass-through read that fills tungstenite's buffer
    /// does.
    fn poll_small(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Small>> {
        let mut stack = [std::mem::MaybeUninit::<u8>::uninit(); SMALL_READ];
        let mut read = ReadBuf::uninit(&mut stack);
        match Pin::new(&mut self.inner).poll_read(cx, &mut read) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {}
        }
        let got = read.filled();
        if got.is_empty() {
            return Poll::Ready(Ok(Small::Ended));
        }
        if got.len() == SMALL_READ {
            self.ahead = true;
            self.bulk = true;
            self.fed = true;
        }
        if let Peek::Header(h) = boundaries::peek(got) {
            match self.takeable(&h) {
                Some(total) if total == got.len() => {
                    self.fill_small(&got[h.size..]);
                    if let Some(key) = h.header.mask {
                        apply_mask(&mut self.buf, key, 0);
                    }
                    self.ready = Ready::Payload;
                    return Poll::Ready(Ok(Small::Taken));
                }
                Some(total) if total < got.len() => {
                    self.fill_small(got);
                    self.ready = Ready::Frame(header_size(&h));
                    return Poll::Ready(Ok(Small::Taken));
                }
                _ => {}
            }
        }
        self.fill_small(got);
        Poll::Ready(Ok(Small::Buffered))
    }

    /// At a boundary, in read-ahead mode, while [`poll_message`] reads: reads the next
    /// frame whole if it is one to take. `Ready(Ok(true))` when it is at the start of
    /// `buf` (`ready`), `Ready(Ok(false))` when the next frame is tungstenite's (or
    /// the stream ended), `Pending` when the socket is empty before the frame is whole.
    fn poll_take(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        loop {
            let wanted = match boundaries::peek(&self.buf) {
                Peek::Invalid => return Poll::Ready(Ok(false)),
                Peek::Header(h) => {
                    let Some(total) = self.takeable(&h) else {
                        return Poll::Ready(Ok(false));
                    };
                    if self.buf.len() >= total {
                        self.ready = Ready::Frame(header_size(&h));
                        return Poll::Ready(Ok(true));
                    }
                    if total >= OWN_ALLOCATION {
                        // Into an own allocation, with the frames that follow it as far as
                        // the allocation goes.
                        if self.own() == 0 || self.buf.capacity() < total + TAIL {
                            self.new_own(total);
                        }
                        self.own_read(total)
                    } else {
                        self.room(total - self.buf.len())
                    }
                }
                // A header's worth only: the frame's size decides where the rest goes.
                Peek::Incomplete => {
                    let wanted = MAX_HEADER - self.buf.len();
                    // The frames of a body come one after another, mostly of one size:
                    // after an own allocation, the next ones go into one made alike.
                    let frame = self.pool.as_deref().map_or(0, |p| p.frame);
                    let own = self.own() > 0;
                    if self.buf.capacity() - self.buf.len() < wanted {
                        if own {
                            self.new_own(frame);
                        } else {
                            let mut fresh = BytesMut::with_capacity(4 * MAX_HEADER);
                            fresh.extend_from_slice(&self.buf);
                            self.replace_buf(fresh, 0);
                        }
                    }
                    if own {
                        self.own_read(frame)
                    } else {
                        wanted
                    }
                }
            };
            match poll_socket_buf(&mut self.inner, cx, &mut self.buf, wanted) {
                Poll::Pending => {
                    self.on_dry();
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                // The stream ended inside the frame: tungstenite gets what came.
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(false)),
                Poll::Ready(Ok(got)) => {
                    self.fed = true;
                    self.bulk |= got >= LARGE_READ;
                }
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.ready != Ready::No {
            // A message waits for poll_message; tungstenite, whose buffer is empty, waits.
            return Poll::Pending;
        }
        if this.bounds.at_boundary() {
            this.reader_empty = true;
        }
        if this.take_max > 0 && this.bounds.may_take() {
            if this.ahead {
                match this.poll_take(cx) {
                    // The frame is for poll_message; tungstenite waits.
                    Poll::Ready(Ok(true)) | Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(false)) => {}
                }
            } else if !this.buf.is_empty() {
                if let Some(size) = this.whole_in_buf() {
                    // Left of a small read: taken out of `buf`.
                    this.ready = Ready::Frame(size);
                    return Poll::Pending;
                }
            } else if out.remaining() < CHUNK {
                match this.poll_small(cx) {
                    Poll::Ready(Ok(Small::Taken)) | Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(Small::Ended)) => return Poll::Ready(Ok(())),
                    Poll::Ready(Ok(Small::Buffered)) => {}
                }
            }
        }
        if !this.buf.is_empty() {
            this.hand_out(out);
            return Poll::Ready(Ok(()));
        }
        if !this.ahead || out.remaining() >= CHUNK {
            // Pass-through: small traffic, or a reader with a large buffer of its own.
            let wanted = out.remaining();
            let before = out.filled().len();
            let result = Pin::new(&mut this.inner).poll_read(cx, out);
            if let Poll::Ready(Ok(())) = result {
                let got = &out.filled()[before..];
                this.bounds.pass(got);
                this.reader_empty &= got.is_empty();
                if wanted > 0 && got.len() == wanted && wanted < CHUNK {
                    // The caller's buffer was too small for what is waiting: read ahead.
                    this.ahead = true;
                    this.bulk = true;
                    this.fed = true;
                }
            }
            return result;
        }
        // An empty buffer whose allocation is no one else's is reused where it is; one
        // made for a frame goes back to the pool.
        if this.pool.as_ref().is_some_and(|pool| pool.current > 0) {
            this.replace_buf(BytesMut::new(), 0);
        }
        this.buf.reserve(CHUNK);
        match poll_socket_buf(&mut this.inner, cx, &mut this.buf, CHUNK) {
            Poll::Pending => {
                this.on_dry();
                Poll::Pending
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Ready(Ok(got)) => {
                this.fed = true;
                this.bulk |= got >= LARGE_READ;
                this.hand_out(out);
                Poll::Ready(Ok(()))
            }
        }
    }
}

/// The next message of a Tether connection's WebSocket: a final binary frame read whole by
/// its [`ReadAhead`] when that may be (see the module docs), otherwise tungstenite's next
/// message.
pub(crate) fn poll_message<S>(
    ws: &mut WebSocketStream<ReadAhead<S>>,
    cx: &mut Context<'_>,
) -> Poll<Option<Result<Message, WsError>>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = ws.get_config();
    // No frame is taken whole without a limit to check it against.
    let max = match (config.max_frame_size, config.max_message_size) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => 0,
    };
    let ahead = ws.get_mut();
    ahead.take_max = u32::try_from(max).unwrap_or(u32::MAX);
    if ahead.takes_first() {
        let taken = if !ahead.buf.is_empty() {
            // Left of a small read, with nothing before it in tungstenite.
            if let Some(size) = ahead.whole_in_buf() {
                ahead.ready = Ready::Frame(size);
            }
            ahead.take_frame()
        } else {
            // tungstenite holds no byte and would only pass its read through: read past it.
            match ahead.poll_small(cx) {
                Poll::Pending => {
                    ahead.take_max = 0;
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => {
                    ahead.take_max = 0;
                    return Poll::Ready(Some(Err(WsError::Io(e))));
                }
                // `Taken` made a message ready. After `Buffered` or `Ended` none is: what
                // came is tungstenite's, or the stream ended (a socket says so again).
                Poll::Ready(Ok(_)) => ahead.take_frame(),
            }
        };
        if let Some(payload) = taken {
            ahead.take_max = 0;
            return Poll::Ready(Some(Ok(Message::Binary(payload))));
        }
    }
    let polled = ws.poll_next_unpin(cx);
    let ahead = ws.get_mut();
    ahead.take_max = 0;
    match ahead.take_frame() {
        Some(payload) => {
            debug_assert!(polled.is_pending(), "tungstenite waited for the frame");
            Poll::Ready(Some(Ok(Message::Binary(payload))))
        }
        None => polled,
    }
}

/// Reads the socket into the spare capacity of `buf`, at most `limit` bytes (none of it
/// zero-filled first); the number of bytes read, 0 at the end of the stream.
fn poll_socket_buf<S: AsyncRead + Unpin>(
    socket: &mut S,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
    limit: usize,
) -> Poll<io::Result<usize>> {
    let mut limited = BufMut::limit(&mut *buf, limit);
    pin!(socket.read_buf(&mut limited)).poll(cx)
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The same bytes read by [`poll_message`] over a [`ReadAhead`] and by tungstenite alone,
/// for the tests and the `ws_read` fuzz target (through `crate::fuzzing`).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod differential {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::task::{Wake, Waker};

    /// A socket the test feeds: hands out what was pushed (at most `max_read` bytes per
    /// read), then is empty (`Pending`) until the next push, or ended; writes vanish.
    pub(crate) struct Fed {
        data: VecDeque<u8>,
        max_read: usize,
        ended: bool,
        waker: Option<Waker>,
        /// Reads that returned bytes.
        pub(crate) reads: usize,
    }

    impl Fed {
        pub(crate) fn new(max_read: usize) -> Self {
            Fed {
                data: VecDeque::new(),
                max_read,
                ended: false,
                waker: None,
                reads: 0,
            }
        }

        pub(crate) fn push(&mut self, bytes: &[u8]) {
            self.data.extend(bytes);
            if let Some(w) = self.waker.take() {
                w.wake();
            }
        }

        pub(crate) fn end(&mut self) {
            self.ended = true;
            if let Some(w) = self.waker.take() {
                w.wake();
            }
        }
    }

    impl AsyncRead for Fed {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            out: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            if this.data.is_empty() {
                if this.ended {
                    return Poll::Ready(Ok(()));
                }
                this.waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let n = this.data.len().min(out.remaining()).min(this.max_read);
            let (a, b) = this.data.as_slices();
            let from_a = n.min(a.len());
            out.put_slice(&a[..from_a]);
            out.put_slice(&b[..n - from_a]);
            this.data.drain(..n);
            this.reads += 1;
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Fed {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A waker that remembers whether it was woken.
    #[derive(Default)]
    pub(crate) struct Woken(AtomicBool);

    impl Woken {
        pub(crate) fn is_set(&self) -> bool {
            self.0.load(Ordering::SeqCst)
        }
    }

    impl Wake for Woken {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// A blocking stream over bytes, for tungstenite's own reading (writes vanish).
    struct Wire(std::io::Cursor<Vec<u8>>);

    impl std::io::Read for Wire {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            std::io::Read::read(&mut self.0, buf)
        }
    }

    impl std::io::Write for Wire {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// What a reader made of a wire: its messages, then how it ended.
    #[derive(Debug, PartialEq)]
    pub(crate) enum Outcome {
        Message(Message),
        /// The stream ended after the closing handshake.
        End,
        Error(String),
    }

    /// The largest message of these connections.
    pub(crate) const MAX: usize = 65_536 + 8;

    pub(crate) fn config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
        crate::transport::ws_config(MAX)
    }

    /// tungstenite alone, reading `wire` as the `role` side.
    pub(crate) fn tungstenite_reads(wire: &[u8], role: Role) -> Vec<Outcome> {
        use tokio_tungstenite::tungstenite::protocol::WebSocket;
        let mut ws = WebSocket::from_raw_socket(
            Wire(std::io::Cursor::new(wire.to_vec())),
            role,
            Some(config()),
        );
        let mut seen = Vec::new();
        loop {
            match ws.read() {
                Ok(m) => seen.push(Outcome::Message(m)),
                Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {
                    seen.push(Outcome::End);
                    return seen;
                }
                Err(e) => {
                    seen.push(Outcome::Error(e.to_string()));
                    return seen;
                }
            }
        }
    }

    /// [`poll_message`] over [`ReadAhead`], reading `wire` as the `role` side, fed to the
    /// socket in bursts of the given sizes (the rest in one), the socket handing out at
    /// most `max_read` bytes per read; what it read, and how many reads of the socket
    /// returned bytes. Panics on a lost wake-up: a `Pending` with bytes still readable and
    /// no wake-up, or bytes arriving that do not wake the poll that returned `Pending` (a
    /// task that would sleep with its socket readable).
    ///
    /// With `keep_small` the reader keeps its small-read allocation
    /// ([`ReadAhead::keep_small_reads`]), as a connection carrying requests does, and every
    /// other payload is dropped as soon as it is read (a copy of it is compared), so that
    /// the allocation is taken back while the payloads kept must stay intact.
    pub(crate) fn we_read(
        wire: &[u8],
        role: Role,
        bursts: &[usize],
        max_read: usize,
        keep_small: bool,
    ) -> (Vec<Outcome>, usize) {
        use futures_util::FutureExt;
        let mut socket = ReadAhead::new(Fed::new(max_read), role);
        if keep_small {
            socket.keep_small_reads();
        }
        let mut ws = WebSocketStream::from_raw_socket(socket, role, Some(config()))
            .now_or_never()
            .unwrap();
        let mut seen = Vec::new();
        let mut at = 0;
        let mut bursts = bursts.iter();
        let mut self_wakes = 0;
        loop {
            // Every poll gets a waker of its own, so that a wake-up meant for an earlier
            // poll does not count for this one.
            let woken = Arc::new(Woken::default());
            let waker = Waker::from(woken.clone());
            let mut cx = Context::from_waker(&waker);
            match poll_message(&mut ws, &mut cx) {
                Poll::Ready(Some(Ok(Message::Binary(payload))))
                    if keep_small && seen.len() % 2 == 1 =>
                {
                    let copy = bytes::Bytes::copy_from_slice(&payload);
                    drop(payload);
                    seen.push(Outcome::Message(Message::Binary(copy)));
                }
                Poll::Ready(Some(Ok(m))) => seen.push(Outcome::Message(m)),
                Poll::Ready(None) => {
                    seen.push(Outcome::End);
                    return (seen, ws.get_mut().get_mut().reads);
                }
                Poll::Ready(Some(Err(e))) => {
                    seen.push(Outcome::Error(e.to_string()));
                    return (seen, ws.get_mut().get_mut().reads);
                }
                Poll::Pending => {
                    let fed = ws.get_mut().get_mut();
                    // A reader that returns `Pending` with bytes still unread in the
                    // socket, and has not woken itself, sleeps until some other event.
                    assert!(
                        fed.data.is_empty() || woken.is_set(),
                        "pending with {} bytes readable and no wake-up",
                        fed.data.len()
                    );
                    if woken.is_set() {
                        // Woken before returning (a yield): poll again, but not forever.
                        self_wakes += 1;
                        assert!(self_wakes < 1_000_000, "the reader keeps waking itself");
                        continue;
                    }
                    if at == wire.len() {
                        assert!(!fed.ended, "pending after the end of the stream");
                        fed.end();
                    } else {
                        let n = bursts
                            .next()
                            .copied()
                            .unwrap_or(wire.len())
                            .clamp(1, wire.len() - at);
                        fed.push(&wire[at..at + n]);
                        at += n;
                    }
                    // What the socket got must wake the task that waits for it: the waker
                    // of the poll that returned `Pending`, not one from before.
                    assert!(woken.is_set(), "the socket became readable and nobody woke");
                }
            }
        }
    }

    /// Sizes of the bursts the socket gets, chosen by the input's bytes.
    const BURSTS: [usize; 16] = [
        1, 2, 7, 13, 14, 15, 100, 1000, 1024, 1025, 4096, 5000, 16_384, 16_400, 70_000, 300_000,
    ];
    /// The socket's largest read, chosen by the input.
    const MAX_READS: [usize; 8] = [1, 7, 100, 1024, 4096, 16_384, 65_536, usize::MAX];

    /// Reads `data` both ways; the first difference, if any. Input: byte 0 bit 0 the side
    /// that reads (0 the server, 1 the client), bits 1 to 3 the socket's largest read, bit
    /// 4 whether small reads keep their allocation (see [`we_read`]); byte 1 the
    /// number of bursts (modulo 32), then a byte per burst choosing its size; then the
    /// bytes of the stream.
    pub(crate) fn compare(data: &[u8]) -> Result<(), String> {
        let Some((&first, rest)) = data.split_first() else {
            return Ok(());
        };
        let role = if first & 1 == 0 {
            Role::Server
        } else {
            Role::Client
        };
        let max_read = MAX_READS[usize::from(first >> 1) % MAX_READS.len()];
        let keep_small = first & 0x10 != 0;
        let (count, rest) = rest
            .split_first()
            .map_or((0, rest), |(&n, r)| (usize::from(n % 32), r));
        let count = count.min(rest.len());
        let bursts: Vec<usize> = rest[..count]
            .iter()
            .map(|&b| BURSTS[usize::from(b) % BURSTS.len()])
            .collect();
        let wire = &rest[count..];
        if wire.is_empty() {
            return Ok(());
        }
        let expected = tungstenite_reads(wire, role);
        let (got, _) = we_read(wire, role, &bursts, max_read, keep_small);
        if got == expected {
            Ok(())
        } else {
            Err(format!(
                "{role:?} side, bursts {bursts:?}, max read {max_read}, small reads kept {keep_small}: read whole {got:?}, tungstenite {expected:?}"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::differential::*;
    use super::*;
    use std::collections::VecDeque;
    use std::task::Waker;
    use tokio::io::AsyncReadExt;

    /// A socket that delivers queued bursts (as much of one as the reader asks for per
    /// read, like a stream socket), then is empty (`Pending`); counts the reads.
    #[derive(Default)]
    struct Bursts {
        queue: VecDeque<Vec<u8>>,
        reads: usize,
    }

    impl AsyncRead for Bursts {
        fn poll_read(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            out: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            this.reads += 1;
            let Some(front) = this.queue.front_mut() else {
                return Poll::Pending;
            };
            let n = front.len().min(out.remaining());
            out.put_slice(&front[..n]);
            front.drain(..n);
            if front.is_empty() {
                this.queue.pop_front();
            }
            Poll::Ready(Ok(()))
        }
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    /// Reads 4 KiB at a time (like tungstenite with its 4 KiB read buffer) until the
    /// socket is empty; returns what was read.
    fn drain_small(r: &mut ReadAhead<Bursts>) -> Vec<u8> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut all = Vec::new();
        loop {
            let mut space = [0u8; 4096];
            let mut out = ReadBuf::new(&mut space);
            match Pin::new(&mut *r).poll_read(&mut cx, &mut out) {
                Poll::Ready(Ok(())) => all.extend_from_slice(out.filled()),
                Poll::Ready(Err(e)) => panic!("read failed: {e}"),
                Poll::Pending => return all,
            }
        }
    }

    #[test]
    fn a_large_burst_takes_few_reads_and_arrives_intact() {
        let data = pattern(1 << 20, 7);
        let mut r = ReadAhead::new(
            Bursts {
                queue: VecDeque::from([data.clone()]),
                reads: 0,
            },
            Role::Server,
        );
        assert_eq!(drain_small(&mut r), data);
        // One 4 KiB read, then 1 MiB in 128 KiB chunks, then the empty socket: instead of
        // 256 reads of 4 KiB.
        let reads = r.inner.reads;
        assert!(reads <= 2 + (1 << 20) / CHUNK + 1, "{reads} reads");
        // The last read was large: the buffer stays for the next burst.
        assert_eq!(r.buffer_capacity(), CHUNK);
    }

    #[test]
    fn small_traffic_passes_through_and_frees_the_buffer() {
        let mut r = ReadAhead::new(Bursts::default(), Role::Server);
        // Small messages: no buffer is ever allocated.
        for seed in 0..10 {
            r.inner.queue.push_back(pattern(300, seed));
            assert_eq!(drain_small(&mut r), pattern(300, seed));
            assert_eq!(r.buffer_capacity(), 0);
        }
        // A bulk burst allocates it and keeps it while the socket is dry; a small message
        // after it (the heartbeat of an idle connection) frees it again.
        r.inner.queue.push_back(pattern(CHUNK * 3 + 5, 1));
        assert_eq!(drain_small(&mut r), pattern(CHUNK * 3 + 5, 1));
        assert_eq!(r.buffer_capacity(), CHUNK);
        r.inner.queue.push_back(pattern(40, 2));
        assert_eq!(drain_small(&mut r), pattern(40, 2));
        assert_eq!(r.buffer_capacity(), 0);
    }

    #[tokio::test]
    async fn end_of_stream_and_large_readers_pass_through() {
        let data = pattern(300_000, 3);
        let (mut tx, rx) = tokio::io::duplex(64 * 1024);
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            tokio::io::AsyncWriteExt::write_all(&mut tx, &sent)
                .await
                .unwrap();
        });
        let mut r = ReadAhead::new(rx, Role::Server);
        let mut got = Vec::new();
        // read_to_end asks for large reads once its buffer grows: both paths run.
        r.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        assert_eq!(got, data);
    }

    thread_local! {
        /// Frames taken whole on this thread.
        pub(super) static TAKEN: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
        /// Allocations taken again from a pool on this thread.
        pub(super) static REUSED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
        /// Own allocations made new on this thread.
        pub(super) static MADE: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// A frame as RFC 6455 §5.2 lays it out: `long` sends the length in the 8-byte form
    /// whatever it is (allowed, and tungstenite accepts it).
    fn encode(first: u8, payload: &[u8], mask: Option<[u8; 4]>, long: bool) -> Vec<u8> {
        let mut out = vec![first];
        let m = if mask.is_some() { 0x80 } else { 0 };
        let len = payload.len();
        if long {
            out.push(m | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        } else if len < 126 {
            out.push(m | len as u8);
        } else if len <= 0xFFFF {
            out.push(m | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(m | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let mut body = payload.to_vec();
        if let Some(key) = mask {
            out.extend_from_slice(&key);
            apply_mask(&mut body, key, 0);
        }
        out.extend_from_slice(&body);
        out
    }

    /// What a ready frame keeps of its header (its size) is enough to read its payload
    /// length and masking key again: the same as tungstenite's parse for every length form
    /// (minimal or not), masked and not; a buffer too short, or a size no header has, is
    /// `None`.
    #[test]
    fn a_ready_frame_reads_its_header_again_as_tungstenite_parsed_it() {
        for len in [0, 1, 125, 126, 127, 300, 65_535, 65_536, 70_000] {
            for long in [false, true] {
                for mask in [None, Some([1, 2, 3, 4])] {
                    let wire = encode(0x82, &vec![7; len], mask, long);
                    let Peek::Header(h) = boundaries::peek(&wire) else {
                        panic!("{len} {long} {mask:?}");
                    };
                    let server = mask.is_some();
                    let size = header_size(&h);
                    let whole = Whole::read(&wire, size, server).expect("a whole header");
                    assert_eq!(
                        (whole.size, whole.payload, whole.mask),
                        (h.size, len, h.header.mask),
                        "{len} {long} {mask:?}"
                    );
                    assert!(Whole::read(&wire[..h.size - 1], size, server).is_none());
                }
            }
        }
        for size in [0, 1, 3, 5, 14, 15, 255] {
            assert!(Whole::read(&[0x82; 300], size, false).is_none(), "{size}");
        }
        assert!(Whole::read(&[0x82; 300], 3, true).is_none());
    }

    /// A small deterministic generator (xorshift64*).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        fn pick<T: Copy>(&mut self, from: &[T]) -> T {
            from[self.below(from.len())]
        }
    }

    /// A random wire from the peer of `role`: binary frames of every size class, control
    /// frames, text, fragmented messages with control frames inside, long length forms;
    /// with `garbage`, sometimes a frame tungstenite refuses (each where a binary frame
    /// would be taken whole if it were valid); a close frame or nothing at the end.
    fn random_wire(rng: &mut Rng, role: Role, garbage: bool) -> Vec<u8> {
        let server = role == Role::Server;
        let key = |rng: &mut Rng| server.then(|| (rng.next() as u32).to_be_bytes());
        let sizes = [
            0,
            1,
            13,
            125,
            126,
            1000,
            OWN_ALLOCATION - 20,
            OWN_ALLOCATION,
            40_000,
            MAX,
        ];
        let mut wire = Vec::new();
        for _ in 0..rng.below(12) + 1 {
            let payload: Vec<u8> = (0..rng.pick(&sizes)).map(|i| (i * 7) as u8).collect();
            match rng.below(if garbage { 9 } else { 6 }) {
                0..=2 => {
                    let k = key(rng);
                    wire.extend(encode(0x82, &payload, k, rng.below(8) == 0));
                }
                3 => {
                    let k = key(rng);
                    wire.extend(encode(0x89, b"ping", k, false));
                }
                4 => {
                    let k = key(rng);
                    wire.extend(encode(0x81, b"text", k, false));
                }
                5 => {
                    // A fragmented binary message with a ping between its frames.
                    let (a, b) = payload.split_at(payload.len() / 2);
                    let k = key(rng);
                    wire.extend(encode(0x02, a, k, false));
                    let k = key(rng);
                    wire.extend(encode(0x89, b"", k, false));
                    let k = key(rng);
                    wire.extend(encode(0x80, b, k, false));
                }
                _ => {
                    let bad = match rng.below(7) {
                        // A reserved bit.
                        0 => encode(0xC2, &payload, key(rng), false),
                        // The wrong masking for the side.
                        1 => encode(0x82, &payload, (!server).then_some([1, 2, 3, 4]), false),
                        // Beyond the limits.
                        2 => encode(0x82, &vec![0; MAX + 1], key(rng), false),
                        // A reserved opcode.
                        3 => encode(0x83, &payload, key(rng), false),
                        // A continuation with nothing to continue.
                        4 => encode(0x80, &payload, key(rng), false),
                        // A binary frame inside a fragmented message.
                        5 => [
                            encode(0x02, b"a", key(rng), false),
                            encode(0x82, &payload, key(rng), false),
                        ]
                        .concat(),
                        // A binary frame after the close frame.
                        _ => [
                            encode(0x88, &[0x03, 0xE8], key(rng), false),
                            encode(0x82, &payload, key(rng), false),
                        ]
                        .concat(),
                    };
                    wire.extend(bad);
                }
            }
        }
        if rng.below(2) == 0 {
            let k = key(rng);
            wire.extend(encode(0x88, &[0x03, 0xE8], k, false));
        }
        wire
    }

    /// Reading binary frames whole changes nothing tungstenite would make of the same
    /// bytes: the same messages, the same end, the same error, for any way the bytes
    /// arrive, both sides, valid wires and wires with frames tungstenite refuses.
    #[test]
    fn the_same_messages_and_errors_as_tungstenite_for_any_arrival() {
        let mut rng = Rng(0x7E7E_4E11_0000_0001);
        let taken_before = TAKEN.with(|t| t.get());
        let mut refused = 0;
        for case in 0..400 {
            let role = if case % 2 == 0 {
                Role::Server
            } else {
                Role::Client
            };
            let wire = random_wire(&mut rng, role, case % 4 >= 2);
            let expected = tungstenite_reads(&wire, role);
            if matches!(expected.last(), Some(Outcome::Error(e)) if !e.contains("without closing handshake"))
            {
                refused += 1;
            }
            let bursts: Vec<usize> = (0..rng.below(40))
                .map(|_| {
                    rng.pick(&[
                        1, 2, 7, 14, 15, 100, 1024, 1025, 5000, 16_384, 70_000, 300_000,
                    ])
                })
                .collect();
            let max_read = rng.pick(&[1, 1024, 4096, 65_536, usize::MAX]);
            let keep_small = case % 3 == 0;
            let (got, _) = we_read(&wire, role, &bursts, max_read, keep_small);
            assert_eq!(
                got, expected,
                "case {case}: bursts {bursts:?}, max read {max_read}, small reads kept {keep_small}"
            );
        }
        let taken = TAKEN.with(|t| t.get()) - taken_before;
        assert!(taken > 200, "frames taken whole: {taken}");
        assert!(refused > 50, "wires tungstenite refused: {refused}");
    }

    /// A stream of large binary frames, as a body streams in: after the first frame every
    /// one is taken whole, four frames of 64 KiB to a read (OWN_FRAMES).
    #[test]
    fn a_body_of_large_frames_is_taken_whole_four_frames_to_a_read() {
        let frames = 50;
        let mut wire = Vec::new();
        for i in 0..frames {
            let payload: Vec<u8> = (0..65_536).map(|j| (i * 3 + j) as u8).collect();
            wire.extend(encode(0x82, &payload, Some([9, 8, 7, i as u8]), false));
        }
        let taken_before = TAKEN.with(|t| t.get());
        let (got, reads) = we_read(&wire, Role::Server, &[wire.len()], usize::MAX, false);
        assert_eq!(got, tungstenite_reads(&wire, Role::Server));
        let taken = TAKEN.with(|t| t.get()) - taken_before;
        assert!(taken >= frames - 2, "taken whole: {taken} of {frames}");
        // The first frame through tungstenite (1 KiB, then a chunk), then four a read.
        assert!(
            reads <= frames / OWN_FRAMES + 3,
            "{reads} reads for {frames} frames"
        );
    }

    /// Frames that came in one read into an own allocation are split off it without a
    /// copy, each payload right after the last one's frame; a frame too small to hold the
    /// whole allocation (MAX_HELD) is copied out, and the frames after it are split off as
    /// before.
    #[test]
    fn frames_of_one_read_share_their_allocation_unless_too_small() {
        let sizes = [65_536, 65_536, 20_000, 65_536];
        let frames: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|j| (i * 5 + j) as u8).collect())
            .collect();
        let mut ws = fed_server();
        ws.get_mut().get_mut().push(&body_wire(0..2));
        let mut wire = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            wire.extend(encode(0x82, f, Some([4, 3, 2, i as u8]), false));
        }
        ws.get_mut().get_mut().push(&wire);
        // Two body frames first, so that the four above start in read-ahead mode.
        for i in 0..2 {
            expect_body_frame(&mut ws, i);
        }
        let mut cx = Context::from_waker(Waker::noop());
        let mut got = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            match poll_message(&mut ws, &mut cx) {
                Poll::Ready(Some(Ok(Message::Binary(p)))) => {
                    assert!(p[..] == f[..], "frame {i} differs");
                    got.push(p);
                }
                other => panic!("frame {i}: {other:?}"),
            }
        }
        let at = |p: &bytes::Bytes| p.as_ptr() as usize;
        // A masked frame of 64 KiB has a 14-byte header (2 + 8 + the key).
        assert_eq!(at(&got[1]), at(&got[0]) + got[0].len() + 14, "split off");
        let copied = at(&got[2]);
        assert!(
            copied < at(&got[0]) || copied > at(&got[3]),
            "the small payload does not hold the allocation"
        );
        // The third frame's header is 2 + 2 + 4 bytes.
        assert_eq!(
            at(&got[3]),
            at(&got[1]) + got[1].len() + 8 + got[2].len() + 14,
            "split off after it"
        );
    }

    /// A server-side WebSocket over a [`Fed`] socket, as the run loop reads it.
    fn fed_server() -> WebSocketStream<ReadAhead<Fed>> {
        use futures_util::FutureExt;
        let mut socket = ReadAhead::new(Fed::new(usize::MAX), Role::Server);
        socket.set_pool_limit(1024 * 1024);
        WebSocketStream::from_raw_socket(socket, Role::Server, Some(config()))
            .now_or_never()
            .unwrap()
    }

    /// The payload of frame `i` of a body: about 64 KiB, some a little shorter.
    fn body_frame(i: usize) -> Vec<u8> {
        (0..65_536 - (i % 3) * 1000)
            .map(|j| (i * 7 + j) as u8)
            .collect()
    }

    /// The wire of `frames` body frames, masked as a client sends them.
    fn body_wire(frames: std::ops::Range<usize>) -> Vec<u8> {
        frames
            .flat_map(|i| encode(0x82, &body_frame(i), Some([1, 2, 3, i as u8]), false))
            .collect()
    }

    /// The next message, which must be frame `i` of [`body_frame`].
    fn expect_body_frame(ws: &mut WebSocketStream<ReadAhead<Fed>>, i: usize) -> bytes::Bytes {
        let mut cx = Context::from_waker(Waker::noop());
        match poll_message(ws, &mut cx) {
            Poll::Ready(Some(Ok(Message::Binary(got)))) => {
                assert!(got[..] == body_frame(i)[..], "frame {i} differs");
                got
            }
            other => panic!("frame {i}: {other:?}"),
        }
    }

    /// A body whose reader drops each payload as it takes it cycles through a few
    /// allocations instead of one per read (module docs, "Allocations reused"); payloads
    /// the reader keeps are never written over, and hold back the reuse of their own
    /// allocations only.
    #[test]
    fn allocations_of_frames_taken_whole_are_reused_once_dropped() {
        let frames = 60;
        let counts = || (MADE.with(|n| n.get()), REUSED.with(|n| n.get()));
        for keep_every in [None, Some(8)] {
            let mut ws = fed_server();
            ws.get_mut().get_mut().push(&body_wire(0..frames));
            let (made_before, reused_before) = counts();
            let mut kept = Vec::new();
            for i in 0..frames {
                let payload = expect_body_frame(&mut ws, i);
                if keep_every.is_some_and(|k| i % k == 0) {
                    kept.push((i, payload));
                }
            }
            let (made, reused) = counts();
            let (made, reused) = (made - made_before, reused - reused_before);
            // Four frames to an allocation: 15 of them, or a few more where the frames'
            // sizes (which differ a little) leave a spare too small for the next ones.
            assert!((15..=18).contains(&(made + reused)), "{made} + {reused}");
            // New ones only at first (sizes differ), and for every allocation a kept
            // payload still holds.
            assert!(made <= 4 + kept.len(), "made {made}, kept {}", kept.len());
            for (i, payload) in kept {
                assert!(
                    payload[..] == body_frame(i)[..],
                    "kept frame {i} was written over"
                );
            }
        }
    }

    /// The pool keeps no more than the connection's window allows (with a quarter for
    /// the allocations' overhead, and one allocation), however many payloads are held.
    #[test]
    fn the_pool_stays_within_the_window() {
        let frames = 40;
        let window = 256 * 1024;
        let mut ws = fed_server();
        ws.get_mut().set_pool_limit(window);
        ws.get_mut().get_mut().push(&body_wire(0..frames));
        let mut held = Vec::new();
        let mut largest = 0;
        for i in 0..frames {
            held.push(expect_body_frame(&mut ws, i));
            let pool = ws.get_ref().pool.as_deref().map_or(0, |p| p.bytes);
            largest = largest.max(pool);
        }
        let bound = window as usize + window as usize / 4 + own_size(65_536 + MAX_HEADER);
        assert!(
            largest > window as usize / 2,
            "the pool was used: {largest}"
        );
        assert!(largest <= bound, "pool {largest} bytes, bound {bound}");
    }

    /// Shedding the pool (the run loop does when no stream is open) frees it at once and
    /// costs nothing else: the next body reads as before and builds a pool again.
    #[test]
    fn a_shed_pool_is_gone_and_the_next_body_reads_as_before() {
        let mut ws = fed_server();
        ws.get_mut().get_mut().push(&body_wire(0..12));
        for i in 0..12 {
            expect_body_frame(&mut ws, i);
        }
        assert!(ws.get_ref().pool.as_deref().is_some_and(|p| p.bytes > 0));
        ws.get_mut().shed_pool();
        assert!(ws.get_ref().pool.is_none());
        ws.get_mut().get_mut().push(&body_wire(12..24));
        for i in 12..24 {
            expect_body_frame(&mut ws, i);
        }
        assert!(ws.get_ref().pool.as_deref().is_some_and(|p| p.bytes > 0));
    }

    /// Small traffic: a final binary frame that is all one read brought is taken whole,
    /// past tungstenite, and so are frames that came together in one read (a ping among
    /// them goes through tungstenite); once they are taken no buffer is left.
    #[test]
    fn small_frames_are_taken_whole_and_leave_no_buffer() {
        let mut ws = fed_server();
        let mut cx = Context::from_waker(Waker::noop());
        let key = Some([9, 8, 7, 6]);
        let mut expect =
            |ws: &mut WebSocketStream<ReadAhead<Fed>>, want: &[u8]| match poll_message(ws, &mut cx)
            {
                Poll::Ready(Some(Ok(Message::Binary(got)))) => assert_eq!(&got[..], want),
                Poll::Ready(Some(Ok(Message::Ping(got)))) => assert_eq!(b"ping", &got[..]),
                other => panic!("{other:?}"),
            };
        let taken_before = TAKEN.with(|t| t.get());

        ws.get_mut()
            .get_mut()
            .push(&encode(0x82, b"alone", key, false));
        expect(&mut ws, b"alone");
        assert_eq!(TAKEN.with(|t| t.get()) - taken_before, 1);
        assert_eq!(ws.get_ref().buffer_capacity(), 0);

        let mut wire = encode(0x82, b"first", key, false);
        wire.extend(encode(0x89, b"ping", key, false));
        wire.extend(encode(0x82, &[5; 200], key, false));
        wire.extend(encode(0x82, b"third", key, false));
        ws.get_mut().get_mut().push(&wire);
        expect(&mut ws, b"first");
        expect(&mut ws, b"ping");
        expect(&mut ws, &[5; 200]);
        expect(&mut ws, b"third");
        assert_eq!(TAKEN.with(|t| t.get()) - taken_before, 4);
        assert_eq!(ws.get_ref().buffer_capacity(), 0);
        assert!(poll_message(&mut ws, &mut cx).is_pending());
        assert_eq!(ws.get_mut().get_mut().reads, 2, "one read per arrival");
    }

    /// Frames that came in one small read are split off its allocation, not copied: the
    /// second payload lies right after the first frame, in the same memory.
    #[test]
    fn frames_of_one_small_read_share_its_allocation() {
        let mut ws = fed_server();
        let mut cx = Context::from_waker(Waker::noop());
        let key = Some([4, 3, 2, 1]);
        let mut wire = encode(0x82, b"one", key, false);
        let second_at = wire.len() + 6; // its 2-byte header and 4-byte key
        wire.extend(encode(0x82, b"two", key, false));
        ws.get_mut().get_mut().push(&wire);
        let mut payloads = Vec::new();
        for want in [&b"one"[..], b"two"] {
            match poll_message(&mut ws, &mut cx) {
                Poll::Ready(Some(Ok(Message::Binary(got)))) => {
                    assert_eq!(&got[..], want);
                    payloads.push(got);
                }
                other => panic!("{other:?}"),
            }
        }
        let first_at = 6;
        assert_eq!(
            payloads[1].as_ptr() as usize - payloads[0].as_ptr() as usize,
            second_at - first_at,
            "split off one allocation"
        );
        assert_eq!(ws.get_ref().buffer_capacity(), 0);
        assert!(poll_message(&mut ws, &mut cx).is_pending());
    }

    /// While the connection carries requests ([`ReadAhead::keep_small_reads`]) small reads
    /// share one allocation, kept from read to read: payloads of reads that follow each
    /// other lie in it one after another, it is taken back from its start once they are
    /// dropped, a payload still held is never written over (the reads go on in a new
    /// allocation), and [`ReadAhead::quiet`] frees it.
    #[test]
    fn small_reads_share_a_kept_allocation_until_quiet() {
        let mut ws = fed_server();
        ws.get_mut().keep_small_reads();
        let mut cx = Context::from_waker(Waker::noop());
        let mut next = |ws: &mut WebSocketStream<ReadAhead<Fed>>, payload: &[u8]| {
            let wire = encode(0x82, payload, Some([1, 2, 3, 4]), false);
            ws.get_mut().get_mut().push(&wire);
            match poll_message(ws, &mut cx) {
                Poll::Ready(Some(Ok(Message::Binary(got)))) => {
                    assert_eq!(&got[..], payload);
                    got
                }
                other => panic!("{other:?}"),
            }
        };
        let first = next(&mut ws, &[1; 100]);
        let start = first.as_ptr() as usize;
        let second = next(&mut ws, &[2; 100]);
        assert_eq!(
            second.as_ptr() as usize,
            start + 100,
            "in the same allocation"
        );
        drop((first, second));
        let mut used = 200;
        while used + 100 <= SMALL_READ {
            drop(next(&mut ws, &[3; 100]));
            used += 100;
        }
        let again = next(&mut ws, &[4; 100]);
        assert_eq!(again.as_ptr() as usize, start, "taken back from its start");
        let mut held = vec![again];
        for i in 0..30 {
            held.push(next(&mut ws, &[i; 100]));
        }
        assert_eq!(
            &held[0][..],
            &[4; 100][..],
            "a held payload was written over"
        );
        for (i, payload) in held[1..].iter().enumerate() {
            assert_eq!(&payload[..], &[i as u8; 100][..]);
        }
        assert!(ws.get_ref().buffer_capacity() > 0, "kept between reads");
        ws.get_mut().quiet();
        assert_eq!(ws.get_ref().buffer_capacity(), 0);
        drop(next(&mut ws, &[5; 100]));
        assert_eq!(
            ws.get_ref().buffer_capacity(),
            0,
            "one allocation per read again"
        );
    }

    /// Frames a pass-through read handed tungstenite come before any read past it: here a
    /// read brings the rest of a text frame and a whole binary frame into tungstenite's
    /// buffer, and the binary frame that comes after must not overtake it (the fuzz target
    /// `ws_read` found this order broken in a first version).
    #[test]
    fn frames_tungstenite_holds_come_before_a_read_past_it() {
        let mut ws = fed_server();
        let mut cx = Context::from_waker(Waker::noop());
        let key = Some([1, 2, 3, 4]);
        let text = encode(0x81, b"text", key, false);
        ws.get_mut().get_mut().push(&text[..1]);
        assert!(poll_message(&mut ws, &mut cx).is_pending());
        let mut rest = text[1..].to_vec();
        rest.extend(encode(0x82, b"held", key, false));
        ws.get_mut().get_mut().push(&rest);
        match poll_message(&mut ws, &mut cx) {
            Poll::Ready(Some(Ok(Message::Text(got)))) => assert_eq!(got.as_str(), "text"),
            other => panic!("{other:?}"),
        }
        ws.get_mut()
            .get_mut()
            .push(&encode(0x82, b"after", key, false));
        for want in [&b"held"[..], b"after"] {
            match poll_message(&mut ws, &mut cx) {
                Poll::Ready(Some(Ok(Message::Binary(got)))) => assert_eq!(&got[..], want),
                other => panic!("{other:?}"),
            }
        }
    }

    /// A socket polled again before anything came is the same gap: a body's buffers stay
    /// through it (the task is woken for other things in the middle of a body). A small
    /// message after a gap (an idle connection's heartbeat) still frees them.
    #[test]
    fn buffers_stay_through_one_gap_and_go_once_the_traffic_is_small() {
        let mut ws = fed_server();
        ws.get_mut().get_mut().push(&body_wire(0..6));
        for i in 0..6 {
            expect_body_frame(&mut ws, i);
        }
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..3 {
            assert!(poll_message(&mut ws, &mut cx).is_pending());
            assert!(ws.get_ref().pool.is_some(), "the pool went in a gap");
        }
        // The body goes on after the gap.
        ws.get_mut().get_mut().push(&body_wire(6..12));
        for i in 6..12 {
            expect_body_frame(&mut ws, i);
        }
        assert!(poll_message(&mut ws, &mut cx).is_pending());
        // A heartbeat-sized message, then the socket runs dry: the buffers go.
        ws.get_mut()
            .get_mut()
            .push(&encode(0x82, b"ping", Some([4, 3, 2, 1]), false));
        match poll_message(&mut ws, &mut cx) {
            Poll::Ready(Some(Ok(Message::Binary(got)))) => assert_eq!(&got[..], b"ping"),
            other => panic!("{other:?}"),
        }
        assert!(poll_message(&mut ws, &mut cx).is_pending());
        assert!(ws.get_ref().pool.is_none());
        assert_eq!(ws.get_ref().buffer_capacity(), 0);
    }

    /// A frame read only in part when the connection stops taking frames (the closing
    /// handshake reads through tungstenite alone) reaches tungstenite as it came.
    #[test]
    fn a_frame_half_read_whole_reaches_tungstenite_intact() {
        use futures_util::FutureExt;
        let payload: Vec<u8> = (0..40_000).map(|j| j as u8).collect();
        let wire = [
            encode(0x82, &payload, Some([1, 2, 3, 4]), false),
            encode(0x82, &payload[..30_000], Some([5, 6, 7, 8]), false),
            encode(0x88, &[0x03, 0xE8], Some([5, 6, 7, 8]), false),
        ]
        .concat();
        let first = wire.len() - 20_000;
        let socket = ReadAhead::new(Fed::new(usize::MAX), Role::Server);
        let mut ws = WebSocketStream::from_raw_socket(socket, Role::Server, Some(config()))
            .now_or_never()
            .unwrap();
        let mut cx = Context::from_waker(Waker::noop());
        ws.get_mut().get_mut().push(&wire[..first]);
        let mut got = Vec::new();
        while let Poll::Ready(Some(m)) = poll_message(&mut ws, &mut cx) {
            got.push(m.unwrap());
        }
        assert_eq!(got, [Message::binary(payload.clone())]);
        assert!(
            !ws.get_ref().buf.is_empty(),
            "the second frame is half read"
        );
        // From here on tungstenite reads alone.
        ws.get_mut().get_mut().push(&wire[first..]);
        let mut rest = Vec::new();
        while let Poll::Ready(Some(m)) = ws.poll_next_unpin(&mut cx) {
            rest.push(m.unwrap());
        }
        assert_eq!(rest[0], Message::binary(payload[..30_000].to_vec()));
        assert!(matches!(rest[1], Message::Close(_)));
    }
}
