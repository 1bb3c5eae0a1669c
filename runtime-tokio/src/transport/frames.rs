//! Binary WebSocket messages framed here and written past tungstenite, with at most one
//! copy per byte (the [write burst](super::burst) decides which messages go this way).
//!
//! tungstenite takes a message as one buffer and copies it into its write buffer; a Tether
//! DATA frame comes from the machine as an 8-byte header plus the application's payload
//! [`Bytes`](bytes::Bytes) ([`Transmit::Data`](tether_proto::connection::Transmit)). This
//! module frames such a message itself (RFC 6455 §5.2: one unfragmented binary frame) and
//! writes it to the byte stream under the WebSocket:
//!
//! - server side (unmasked frames): the WebSocket header and the Tether header are copied
//!   into a small buffer, a payload of at least [`COPY_BELOW`] bytes is not copied at all
//!   but written from its own memory with a vectored write; smaller payloads are copied
//!   into the buffer so that a burst of small frames leaves in one system call (and so is
//!   every payload when the stream has no vectored writes: TCP, TLS and hyper's upgraded
//!   connections all have them);
//! - client side (RFC 6455 §5.3: every frame masked with a fresh key): the payload is
//!   copied into the buffer and masked there, in chunks of at most [`WRITE_AT`] bytes, so
//!   the buffer stays small whatever the message size. The key comes from the thread's
//!   CSPRNG, seeded from the OS (`rand::random`, what tungstenite itself uses).
//!
//! The burst keeps tungstenite's view consistent: whatever tungstenite has buffered is
//! flushed before the first raw byte, and everything raw is written before tungstenite
//! writes again, so neither ever sees a partial frame of the other.

use std::io::{self, IoSlice};
use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;

/// A payload at least this large is written from its own memory (server side), not copied.
pub(crate) const COPY_BELOW: usize = 4096;

/// Queued bytes at which the writer writes out before taking more (also the masking chunk).
pub(crate) const WRITE_AT: usize = 256 * 1024;

/// Most slices handed to one vectored write (Linux's `IOV_MAX` is 1024).
const MAX_SLICES: usize = 64;

/// A buffer with more capacity than this is not kept after a burst.
const KEEP: usize = 2 * WRITE_AT;

/// The opcode byte of a final binary frame (RFC 6455 §5.2: FIN, opcode 0x2).
const FIN_BINARY: u8 = 0x82;

/// Appends the header of one final, unfragmented binary frame of `len` payload bytes
/// (RFC 6455 §5.2), with the masking key when there is one.
pub(crate) fn put_header(dst: &mut Vec<u8>, len: usize, mask: Option<[u8; 4]>) {
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    dst.push(FIN_BINARY);
    // §5.2 "Payload length": 7 bits, or 126 + 16 bits, or 127 + 64 bits (most significant
    // bit 0); the minimal form is used.
    if len < 126 {
        dst.push(mask_bit | len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        dst.push(mask_bit | 126);
        dst.extend_from_slice(&len.to_be_bytes());
    } else {
        dst.push(mask_bit | 127);
        dst.extend_from_slice(&(len as u64).to_be_bytes());
    }
    if let Some(key) = mask {
        dst.extend_from_slice(&key);
    }
}

/// XORs `data` with `key` (RFC 6455 §5.3), `data[0]` being byte `phase` of the payload.
pub(crate) fn apply_mask(data: &mut [u8], key: [u8; 4], phase: usize) {
    let k: [u8; 4] = std::array::from_fn(|i| key[(phase + i) % 4]);
    let wide = u64::from_ne_bytes([k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3]]);
    let mut words = data.chunks_exact_mut(8);
    for w in &mut words {
        let v = u64::from_ne_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]) ^ wide;
        w.copy_from_slice(&v.to_ne_bytes());
    }
    // A whole number of 8-byte words was masked, so the remainder starts at phase 0 of k.
    for (i, b) in words.into_remainder().iter_mut().enumerate() {
        *b ^= k[i % 4];
    }
}

/// What is queued to be written, in order.
#[derive(Debug)]
enum Part {
    /// A range of the writer's buffer (frame headers, small or masked payloads).
    Buf(Range<usize>),
    /// A payload written from its own memory.
    Payload(Bytes),
}

/// Frames binary messages and writes them with at most one copy per byte (see the module
/// docs). One per write burst; its buffer is reused within the burst and kept (up to a
/// bound) for the thread's next burst, so an idle connection holds none.
#[derive(Debug)]
pub(crate) struct FrameWriter {
    /// Client side: mask every frame (RFC 6455 §5.3).
    masked: bool,
    buf: Vec<u8>,
    parts: Vec<Part>,
    /// Bytes in `parts`.
    queued: usize,
    /// How much of `buf` is recorded in `parts`.
    marked: usize,
    /// How far the write in progress got: whole parts, and bytes of the next.
    written_parts: usize,
    written_bytes: usize,
}

thread_local! {
    /// The buffer of the last burst that ran on this thread, for the next one.
    static SPARE: std::cell::Cell<(Vec<u8>, Vec<Part>)> =
        const { std::cell::Cell::new((Vec::new(), Vec::new())) };
}

impl FrameWriter {
    /// A writer for one burst; `masked` on the client side.
    pub(crate) fn new(masked: bool) -> Self {
        let (buf, parts) = SPARE.with(|s| s.take());
        FrameWriter {
            masked,
            buf,
            parts,
            queued: 0,
            marked: 0,
            written_parts: 0,
            written_bytes: 0,
        }
    }

    /// Queues one binary message whose payload is `head` followed by `payload` without
    /// writing, if it fits in what is queued before a write ([`WRITE_AT`] bytes,
    /// [`MAX_SLICES`] slices); `false`, with nothing queued, if it does not. `vectored`:
    /// whether the stream written to has vectored writes. What it queues is what
    /// [`push`](Self::push) would, without the write that push makes when the queue is full.
    pub(crate) fn try_push(&mut self, head: &[u8], payload: &Bytes, vectored: bool) -> bool {
        /// The longest frame header with its masking key (RFC 6455 §5.2).
        const MAX_HEADER: usize = 14;
        let len = head.len() + payload.len();
        let pending = self.queued + (self.buf.len() - self.marked);
        if pending + len + MAX_HEADER >= WRITE_AT || self.parts.len() + 2 >= MAX_SLICES {
            return false;
        }
        if !self.masked {
            self.queue_unmasked(head, payload, vectored);
            return true;
        }
        let key: [u8; 4] = rand::random();
        put_header(&mut self.buf, len, Some(key));
        let at = self.buf.len();
        self.buf.extend_from_slice(head);
        self.buf.extend_from_slice(payload);
        apply_mask(&mut self.buf[at..], key, 0);
        self.mark();
        true
    }

    /// Queues one binary message whose payload is `head` followed by `payload`, writing
    /// to `io` whenever [`WRITE_AT`] bytes are queued.
    pub(crate) async fn push<W>(
        &mut self,
        io: &mut W,
        head: &[u8],
        payload: &Bytes,
    ) -> io::Result<()>
    where
        W: AsyncWrite + Unpin,
    {
        let len = head.len() + payload.len();
        if !self.masked {
            self.queue_unmasked(head, payload, io.is_write_vectored());
            return self.write_if_full(io).await;
        }
        let key: [u8; 4] = rand::random();
        put_header(&mut self.buf, len, Some(key));
        let mut phase = 0;
        for src in [head, &payload[..]] {
            let mut rest = src;
            while !rest.is_empty() {
                let pending = self.queued + (self.buf.len() - self.marked);
                let room = WRITE_AT.saturating_sub(pending).max(COPY_BELOW);
                let (now, later) = rest.split_at(rest.len().min(room));
                let at = self.buf.len();
                // The one copy: into the buffer, then masked there while it is in cache.
                self.buf.extend_from_slice(now);
                apply_mask(&mut self.buf[at..], key, phase);
                phase += now.len();
                rest = later;
                if !rest.is_empty() {
                    self.mark();
                    self.write_all(io).await?;
                }
            }
        }
        self.mark();
        self.write_if_full(io).await
    }

    /// Queues one unmasked binary message (server side): its header and `head` copied, the
    /// payload copied too when it is small or the stream has no vectored writes (which
    /// would take the parts one system call, or one TLS record, each), else written from
    /// its own memory.
    fn queue_unmasked(&mut self, head: &[u8], payload: &Bytes, vectored: bool) {
        put_header(&mut self.buf, head.len() + payload.len(), None);
        self.buf.extend_from_slice(head);
        if payload.len() < COPY_BELOW || !vectored {
            self.buf.extend_from_slice(payload);
            self.mark();
        } else {
            self.mark();
            self.queued += payload.len();
            self.parts.push(Part::Payload(payload.clone()));
        }
    }

    /// Records the bytes appended to the buffer since the last call as queued.
    fn mark(&mut self) {
        let (from, end) = (self.marked, self.buf.len());
        if from == end {
            return;
        }
        self.queued += end - from;
        self.marked = end;
        match self.parts.last_mut() {
            Some(Part::Buf(r)) if r.end == from => r.end = end,
            _ => self.parts.push(Part::Buf(from..end)),
        }
    }

    async fn write_if_full<W>(&mut self, io: &mut W) -> io::Result<()>
    where
        W: AsyncWrite + Unpin,
    {
        if self.queued >= WRITE_AT || self.parts.len() >= MAX_SLICES {
            self.write_all(io).await?;
        }
        Ok(())
    }

    /// Writes everything queued (vectored writes; partial writes are resumed where they
    /// stopped). Does not flush `io`.
    pub(crate) async fn write_all<W>(&mut self, io: &mut W) -> io::Result<()>
    where
        W: AsyncWrite + Unpin,
    {
        std::future::poll_fn(|cx| self.poll_write_all(io, cx)).await
    }

    /// [`write_all`](Self::write_all) as a poll: `Pending` keeps how far it got, and the
    /// next call (or `write_all`) goes on from there.
    pub(crate) fn poll_write_all<W>(
        &mut self,
        io: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>>
    where
        W: AsyncWrite + Unpin,
    {
        while self.written_parts < self.parts.len() {
            let (part, offset) = (self.written_parts, self.written_bytes);
            // The slices are built for each write, not kept: an array of MAX_SLICES of
            // them (1 KiB) would otherwise be part of every connection task's future, idle
            // or not (issue 11 goal 5).
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let mut count = 0;
            for (i, p) in self.parts[part..].iter().take(MAX_SLICES).enumerate() {
                let bytes = match p {
                    Part::Buf(r) => &self.buf[r.clone()],
                    Part::Payload(b) => &b[..],
                };
                slices[i] = IoSlice::new(if i == 0 { &bytes[offset..] } else { bytes });
                count = i + 1;
            }
            let n = match super::poll_write_slices(Pin::new(&mut *io), cx, &slices[..count]) {
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            // Advance past what was written.
            let mut left = n;
            while left > 0 {
                let len = match &self.parts[self.written_parts] {
                    Part::Buf(r) => r.len(),
                    Part::Payload(b) => b.len(),
                } - self.written_bytes;
                if left >= len {
                    left -= len;
                    self.written_parts += 1;
                    self.written_bytes = 0;
                } else {
                    self.written_bytes += left;
                    left = 0;
                }
            }
        }
        self.parts.clear();
        self.buf.clear();
        self.queued = 0;
        self.marked = 0;
        self.written_parts = 0;
        self.written_bytes = 0;
        Poll::Ready(Ok(()))
    }
}

impl Drop for FrameWriter {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        let mut parts = std::mem::take(&mut self.parts);
        if buf.capacity() > KEEP {
            buf = Vec::new();
        }
        if parts.capacity() > MAX_SLICES {
            parts = Vec::new();
        }
        buf.clear();
        parts.clear();
        // Another burst on this thread may have left a spare meanwhile (bursts of
        // different connections interleave at their awaits): keep the larger buffer.
        SPARE.with(|s| {
            let spare = s.take();
            s.set(if spare.0.capacity() > buf.capacity() {
                spare
            } else {
                (buf, parts)
            });
        });
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn pattern(n: usize, seed: u8) -> Bytes {
        (0..n)
            .map(|i| {
                (i as u8)
                    .wrapping_mul(31)
                    .wrapping_add(seed ^ (i >> 8) as u8)
            })
            .collect()
    }

    #[test]
    fn headers_use_the_minimal_length_form() {
        // RFC 6455 §5.2: 7-bit length up to 125, then 126 + 16 bits, then 127 + 64 bits.
        let cases: [(usize, &[u8]); 5] = [
            (0, &[0x82, 0]),
            (125, &[0x82, 125]),
            (126, &[0x82, 126, 0, 126]),
            (65535, &[0x82, 126, 0xff, 0xff]),
            (65536, &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]),
        ];
        for (len, expected) in cases {
            let mut h = Vec::new();
            put_header(&mut h, len, None);
            assert_eq!(h, expected, "length {len}");
            let mut m = Vec::new();
            put_header(&mut m, len, Some([1, 2, 3, 4]));
            assert_eq!(m[1], expected[1] | 0x80, "mask bit, length {len}");
            assert_eq!(&m[expected.len()..], &[1, 2, 3, 4]);
        }
    }

    #[test]
    fn masking_matches_the_bytewise_definition_at_every_phase() {
        let data = pattern(1000, 9);
        let key = [0x12, 0x34, 0x56, 0x78];
        for phase in 0..4 {
            for len in [0, 1, 7, 8, 9, 15, 16, 17, 999] {
                let mut masked = data[..len].to_vec();
                apply_mask(&mut masked, key, phase);
                // RFC 6455 §5.3: octet i of the payload XOR octet i MOD 4 of the key.
                let expected: Vec<u8> = (0..len).map(|i| data[i] ^ key[(phase + i) % 4]).collect();
                assert_eq!(masked, expected, "phase {phase}, length {len}");
            }
        }
    }

    /// Parses one masked frame of `wire`, returning its key and unmasked payload and the
    /// rest of `wire`.
    fn unmask_one(wire: &[u8]) -> ([u8; 4], Vec<u8>, &[u8]) {
        assert_eq!(wire[0], 0x82);
        assert_eq!(wire[1] & 0x80, 0x80, "client frames are masked");
        let (len, at) = match wire[1] & 0x7f {
            126 => (u16::from_be_bytes([wire[2], wire[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(wire[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        let key: [u8; 4] = wire[at..at + 4].try_into().unwrap();
        let body = &wire[at + 4..at + 4 + len];
        let plain = body
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4])
            .collect();
        (key, plain, &wire[at + 4 + len..])
    }

    #[tokio::test]
    async fn client_frames_have_fresh_keys_and_are_masked_in_chunks() {
        let big = pattern(WRITE_AT * 2 + 5, 3);
        let mut w = FrameWriter::new(true);
        let mut wire = Vec::new();
        w.push(&mut wire, b"12345678", &big).await.unwrap();
        w.push(&mut wire, b"abcdefgh", &Bytes::from_static(b"tail"))
            .await
            .unwrap();
        w.write_all(&mut wire).await.unwrap();
        // The buffer never held the whole message: it was masked and written in chunks.
        assert!(
            w.buf.capacity() < WRITE_AT + 2 * COPY_BELOW,
            "{}",
            w.buf.capacity()
        );
        let (k1, p1, rest) = unmask_one(&wire);
        let (k2, p2, rest) = unmask_one(rest);
        assert!(rest.is_empty());
        assert_eq!(p1, [&b"12345678"[..], &big].concat());
        assert_eq!(p2, b"abcdefghtail");
        // Fresh keys (equal with probability 2^-32).
        assert_ne!(k1, k2);
    }

    #[tokio::test]
    async fn server_payloads_are_written_from_their_own_memory() {
        let big = pattern(COPY_BELOW, 1);
        let small = pattern(COPY_BELOW - 1, 2);
        let mut w = FrameWriter::new(false);
        let mut sink = Vec::new();
        w.push(&mut sink, b"HHHHHHHH", &big).await.unwrap();
        w.push(&mut sink, b"hhhhhhhh", &small).await.unwrap();
        // The large payload is queued as the caller's own bytes (same memory: no copy);
        // the small one is copied next to the headers.
        let own: Vec<*const u8> = w
            .parts
            .iter()
            .filter_map(|p| match p {
                Part::Payload(b) => Some(b.as_ptr()),
                Part::Buf(_) => None,
            })
            .collect();
        assert_eq!(own, vec![big.as_ptr()]);
        w.write_all(&mut sink).await.unwrap();
        let mut expected = Vec::new();
        put_header(&mut expected, 8 + big.len(), None);
        expected.extend_from_slice(b"HHHHHHHH");
        expected.extend_from_slice(&big);
        put_header(&mut expected, 8 + small.len(), None);
        expected.extend_from_slice(b"hhhhhhhh");
        expected.extend_from_slice(&small);
        assert_eq!(sink, expected);
    }
}
