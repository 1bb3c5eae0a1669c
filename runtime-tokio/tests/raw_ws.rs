//! WebSocket spoken by hand over a `TcpStream`: what a Tether server (and client) answers to
//! messages over the size limit and to RFC 6455 framing violations (spec/protocol.md §2.3),
//! and to upgrade requests that break RFC 6455 §4.2.1.
//!
//! Each test writes handcrafted bytes and reads the raw bytes back, so it sees exactly
//! what is on the wire: the Close frame and its code, then the end of the TCP stream.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use common::GUARD;
use tether_proto::connection::{Config, Connection, Event, WsMessage};
use tether_proto::{CloseCode, Initiator, Resume};
use tether_tokio::client::{Client, ClientConfig, ClientError, ClientEvent};
use tether_tokio::server::{Server, ServerConfig, ServerEvent};
use tether_tokio::EventStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

const BINARY: u8 = 0x2;
const CONTINUATION: u8 = 0x0;
const PING: u8 = 0x9;
const CLOSE: u8 = 0x8;

/// One WebSocket frame as read off the wire.
#[derive(Debug)]
struct RawFrame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
}

/// A hand-driven WebSocket endpoint over TCP.
struct Raw {
    rd: OwnedReadHalf,
    /// Taken by a test that writes a large message from another task.
    wr: Option<OwnedWriteHalf>,
    /// Whether frames we send are masked (a client's are).
    masked: bool,
}

/// The bytes of one frame: FIN, RSV1 and the opcode as given, the payload masked if `mask`.
/// `announced` is the payload length written in the header (it may exceed `payload`).
fn frame(fin: bool, rsv1: bool, opcode: u8, mask: bool, payload: &[u8], announced: u64) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | (u8::from(rsv1) << 6) | opcode];
    let m = if mask { 0x80 } else { 0 };
    if announced < 126 {
        out.push(m | announced as u8);
    } else if announced <= u64::from(u16::MAX) {
        out.push(m | 126);
        out.extend_from_slice(&(announced as u16).to_be_bytes());
    } else {
        out.push(m | 127);
        out.extend_from_slice(&announced.to_be_bytes());
    }
    if mask {
        let key = [0x12, 0x34, 0x56, 0x78];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

impl Raw {
    fn new(tcp: TcpStream, masked: bool) -> Raw {
        let (rd, wr) = tcp.into_split();
        Raw {
            rd,
            wr: Some(wr),
            masked,
        }
    }

    /// Connects and upgrades with the tether.v1 subprotocol.
    async fn connect(addr: SocketAddr) -> Raw {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut raw = Raw::new(tcp, true);
        raw.writer()
            .write_all(
                b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
                  Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                  Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: tether.v1\r\n\r\n",
            )
            .await
            .unwrap();
        let head = raw.read_head().await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        raw
    }

    /// Reads an HTTP head up to the empty line, byte by byte (nothing after it is consumed).
    async fn read_head(&mut self) -> String {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let b = self.rd.read_u8().await.expect("head");
            head.push(b);
            assert!(head.len() < 16 * 1024, "head too long");
        }
        String::from_utf8(head).unwrap()
    }

    async fn send(&mut self, fin: bool, rsv1: bool, opcode: u8, payload: &[u8]) {
        let bytes = frame(
            fin,
            rsv1,
            opcode,
            self.masked,
            payload,
            payload.len() as u64,
        );
        self.writer().write_all(&bytes).await.unwrap();
    }

    fn writer(&mut self) -> &mut OwnedWriteHalf {
        self.wr.as_mut().expect("write half")
    }

    /// Writes `bytes` from another task: the server may close before it has read them all,
    /// and the rest may then fail to go out.
    fn send_in_background(&mut self, bytes: Vec<u8>) -> tokio::task::JoinHandle<()> {
        let mut wr = self.wr.take().expect("write half");
        tokio::spawn(async move {
            let _ = wr.write_all(&bytes).await;
            // Keep the write half (and so the socket) open until the reader is done.
            std::future::pending::<()>().await;
        })
    }

    /// The next frame, or `None` at the end of the stream (EOF or reset).
    async fn read_frame(&mut self) -> Option<RawFrame> {
        let mut h = [0u8; 2];
        self.rd.read_exact(&mut h).await.ok()?;
        assert_eq!(h[0] & 0x70, 0, "reserved bits set");
        let opcode = h[0] & 0x0f;
        let mut len = u64::from(h[1] & 0x7f);
        if len == 126 {
            len = u64::from(self.rd.read_u16().await.ok()?);
        } else if len == 127 {
            len = self.rd.read_u64().await.ok()?;
        }
        let mut key = [0u8; 4];
        if h[1] & 0x80 != 0 {
            self.rd.read_exact(&mut key).await.ok()?;
        }
        assert!(len <= 1 << 20, "frame of {len} bytes");
        let mut payload = vec![0; len as usize];
        self.rd.read_exact(&mut payload).await.ok()?;
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
        Some(RawFrame {
            fin: h[0] & 0x80 != 0,
            opcode,
            payload,
        })
    }

    /// Reads until a Close frame (skipping data and control frames) and returns its code;
    /// then checks that the TCP stream ends. Panics if the stream ends first.
    async fn expect_close(&mut self) -> u16 {
        let code = tokio::time::timeout(GUARD, async {
            loop {
                match self.read_frame().await {
                    Some(f) if f.opcode == CLOSE => {
                        assert!(f.payload.len() >= 2, "close without a code");
                        break u16::from_be_bytes([f.payload[0], f.payload[1]]);
                    }
                    Some(_) => continue,
                    None => panic!("TCP ended without a Close frame"),
                }
            }
        })
        .await
        .expect("no Close frame in time");
        self.expect_end().await;
        code
    }

    /// The TCP stream ends (EOF or reset) without further frames.
    async fn expect_end(&mut self) {
        let mut rest = [0u8; 64];
        let n = tokio::time::timeout(GUARD, self.rd.read(&mut rest))
            .await
            .expect("TCP not closed after the Close frame");
        assert!(matches!(n, Ok(0) | Err(_)), "bytes after the Close frame");
    }

    /// Runs the Tether handshake as a client (the machine of tether-proto makes the frames;
    /// this only carries them) and returns the machine once established, with whether the
    /// server resumed the session.
    async fn handshake(&mut self, resume: Option<Resume>) -> (Connection, bool) {
        let now = Instant::now();
        let mut conn =
            Connection::client(Arc::new(Config::default()), Bytes::new(), resume, now).unwrap();
        let resumed = tokio::time::timeout(GUARD, async {
            loop {
                while let Some(msg) = conn.poll_transmit().map(tether_proto::WsMessage::from) {
                    if let WsMessage::Binary(b) = msg {
                        self.send(true, false, BINARY, &b).await;
                    }
                }
                while let Some(event) = conn.poll_event() {
                    match event {
                        Event::Established { resumed, .. } => {
                            while let Some(WsMessage::Binary(b)) =
                                conn.poll_transmit().map(tether_proto::WsMessage::from)
                            {
                                self.send(true, false, BINARY, &b).await;
                            }
                            return resumed;
                        }
                        Event::Failure { error } => panic!("handshake failed: {error}"),
                        _ => {}
                    }
                }
                let f = self.read_frame().await.expect("server ended the handshake");
                if f.opcode == BINARY {
                    conn.handle_message(WsMessage::Binary(f.payload.into()), Instant::now());
                }
            }
        })
        .await
        .expect("handshake in time");
        (conn, resumed)
    }
}

async fn server() -> (Server, EventStream<ServerEvent>) {
    Server::bind(ServerConfig::new(SocketAddr::from(([127, 0, 0, 1], 0))))
        .await
        .unwrap()
}

async fn received(events: &mut EventStream<ServerEvent>) -> Uuid {
    loop {
        match tokio::time::timeout(GUARD, events.recv()).await.unwrap() {
            Some(ServerEvent::Received { id, .. }) | Some(ServerEvent::Resumed { id, .. }) => {
                return id
            }
            Some(_) => continue,
            None => panic!("server events ended"),
        }
    }
}

/// The server's report of the end: a failure it initiated, with `code`.
async fn local_failure(events: &mut EventStream<ServerEvent>, id: Uuid, code: u16) {
    loop {
        match tokio::time::timeout(GUARD, events.recv()).await.unwrap() {
            Some(ServerEvent::Failure { id: got, error }) if got == id => {
                assert_eq!(error.initiator(), Initiator::Local, "{error}");
                assert_eq!(error.close_code(), Some(CloseCode::from_u(code)), "{error}");
                return;
            }
            Some(ServerEvent::Closed { code, .. }) => panic!("closed with {code}, not failed"),
            Some(_) => continue,
            None => panic!("server events ended"),
        }
    }
}

/// An established raw client sends `bad` (raw bytes): the server answers with a Close
/// `code` before ending TCP, reports a failure it initiated with that code, and a resume
/// with the old ticket continues the session exactly when the code is retryable (§9.1).
async fn established_then(bad: Vec<u8>, code: u16) {
    let (server, mut events) = server().await;
    let mut raw = Raw::connect(server.local_addr()).await;
    let (conn, _) = raw.handshake(None).await;
    let ticket = conn.resume_ticket().expect("ticket");
    let id = received(&mut events).await;
    let writer = raw.send_in_background(bad);
    assert_eq!(raw.expect_close().await, code);
    writer.abort();
    local_failure(&mut events, id, code).await;

    let mut again = Raw::connect(server.local_addr()).await;
    let (_, resumed) = again.handshake(Some(ticket)).await;
    let retryable = code != 1009;
    assert_eq!(resumed, retryable, "session resumable after {code}");
}

fn masked(fin: bool, rsv1: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame(fin, rsv1, opcode, true, payload, payload.len() as u64)
}

/// A DATA frame (stream 1) with `len` payload bytes.
fn data_frame(len: usize) -> Vec<u8> {
    let mut f = vec![0x05, 0x00, 0, 0, 0, 0, 0, 1];
    f.resize(8 + len, b'x');
    f
}

// ---- the server ----

#[tokio::test]
async fn server_closes_1009_on_a_1_mib_data_message() {
    established_then(masked(true, false, BINARY, &data_frame(1 << 20)), 1009).await;
}

#[tokio::test]
async fn server_closes_1009_on_a_64_mb_message_announced() {
    // Only the header and the first 64 KiB: the announced size alone is refused.
    let payload = data_frame(64 * 1024);
    let bad = frame(true, false, BINARY, true, &payload, 64_000_000);
    established_then(bad, 1009).await;
}

#[tokio::test]
async fn server_closes_1009_on_a_fragmented_message_over_the_limit() {
    let mut bad = masked(false, false, BINARY, &data_frame(40 * 1024));
    bad.extend(masked(true, false, CONTINUATION, &[b'y'; 40 * 1024]));
    established_then(bad, 1009).await;
}

#[tokio::test]
async fn server_closes_1002_on_rsv1() {
    established_then(masked(true, true, BINARY, &data_frame(4)), 1002).await;
}

#[tokio::test]
async fn server_closes_1002_on_an_unmasked_client_frame() {
    let bad = frame(true, false, BINARY, false, &data_frame(4), 12);
    established_then(bad, 1002).await;
}

#[tokio::test]
async fn server_closes_1002_on_a_reserved_data_opcode() {
    established_then(masked(true, false, 0x3, b"abc"), 1002).await;
}

#[tokio::test]
async fn server_closes_1002_on_a_reserved_control_opcode() {
    established_then(masked(true, false, 0xb, b"abc"), 1002).await;
}

#[tokio::test]
async fn server_closes_1002_on_a_fragmented_control_frame() {
    established_then(masked(false, false, PING, b"abc"), 1002).await;
}

#[tokio::test]
async fn server_closes_1009_on_a_1_mib_hello() {
    let (server, _events) = server().await;
    let mut raw = Raw::connect(server.local_addr()).await;
    // A HELLO (version 1, no settings) whose metadata is 1 MiB of JSON string.
    let mut hello = vec![0x01, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0];
    hello.push(b'"');
    hello.resize(hello.len() + (1 << 20), b'a');
    hello.push(b'"');
    let bad = masked(true, false, BINARY, &hello);
    let writer = raw.send_in_background(bad);
    assert_eq!(raw.expect_close().await, 1009);
    writer.abort();
}

// ---- the client ----

/// A fake server: upgrades one connection by hand (selecting tether.v1), reads the
/// client's HELLO, and returns the raw endpoint.
async fn fake_server_accept(listener: &TcpListener) -> Raw {
    let (tcp, _) = tokio::time::timeout(GUARD, listener.accept())
        .await
        .unwrap()
        .unwrap();
    let mut raw = Raw::new(tcp, false);
    let head = raw.read_head().await;
    let key = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_owned())
        })
        .expect("key");
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: tether.v1\r\n\r\n"
    );
    raw.writer().write_all(response.as_bytes()).await.unwrap();
    let hello = raw.read_frame().await.expect("HELLO");
    assert_eq!((hello.opcode, hello.payload.first()), (BINARY, Some(&0x01)));
    raw
}

/// A client whose server sends `bad` after the HELLO closes with `code` before ending TCP,
/// reports a failure it initiated with that code, and reconnects exactly when the code is
/// retryable.
async fn client_gets(bad: Vec<u8>, code: u16) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let (_client, mut events) = Client::connect(&url, ClientConfig::new("")).unwrap();
    let mut raw = fake_server_accept(&listener).await;
    let writer = raw.send_in_background(bad);
    assert_eq!(raw.expect_close().await, code);
    writer.abort();
    match tokio::time::timeout(GUARD, events.recv()).await.unwrap() {
        Some(ClientEvent::Failure {
            error: ClientError::Connection(error),
            ..
        }) => {
            assert_eq!(error.initiator(), Initiator::Local, "{error}");
            assert_eq!(error.close_code(), Some(CloseCode::from_u(code)), "{error}");
        }
        other => panic!("unexpected {other:?}"),
    }
    let next = tokio::time::timeout(GUARD, events.recv()).await.unwrap();
    match next {
        Some(ClientEvent::Reconnecting { .. }) => assert_ne!(code, 1009, "retried after 1009"),
        None => assert_eq!(code, 1009, "gave up after {code}"),
        Some(other) => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn client_closes_1009_on_a_1_mib_message() {
    let payload = vec![0x02; 1 << 20];
    client_gets(
        frame(true, false, BINARY, false, &payload, payload.len() as u64),
        1009,
    )
    .await;
}

#[tokio::test]
async fn client_closes_1002_on_rsv1() {
    client_gets(frame(true, true, BINARY, false, b"abcdefgh", 8), 1002).await;
}

#[tokio::test]
async fn client_closes_1002_on_a_masked_server_frame() {
    client_gets(frame(true, false, BINARY, true, b"abcdefgh", 8), 1002).await;
}

#[tokio::test]
async fn client_closes_1002_on_a_reserved_opcode() {
    client_gets(frame(true, false, 0x3, false, b"abc", 3), 1002).await;
}

#[tokio::test]
async fn client_closes_1002_on_a_fragmented_control_frame() {
    client_gets(frame(false, false, PING, false, b"abc", 3), 1002).await;
}

// ---- the upgrade (RFC 6455 §4.2.1) ----

/// Sends an upgrade request (request line `GET / {version}`, then `keys` as
/// Sec-WebSocket-Key lines) and returns the status line of the answer.
async fn upgrade_status(addr: SocketAddr, version: &str, keys: &[&str]) -> String {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "GET / {version}\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: tether.v1\r\n"
    );
    for key in keys {
        req.push_str(&format!("Sec-WebSocket-Key: {key}\r\n"));
    }
    req.push_str("\r\n");
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Raw::new(tcp, true);
    let head = tokio::time::timeout(GUARD, raw.read_head()).await.unwrap();
    head.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn upgrade_with_a_bad_key_or_http_1_0_is_400() {
    let (server, _events) = server().await;
    let addr = server.local_addr();
    let good = "dGhlIHNhbXBsZSBub25jZQ==";
    assert!(upgrade_status(addr, "HTTP/1.1", &[good])
        .await
        .starts_with("HTTP/1.1 101"));
    let long = "A".repeat(1000);
    for keys in [
        vec!["abc"],
        vec!["!!!!!!!!!!!!!!!!!!!!!!=="],
        vec!["dGhlIHNhbXBsZSBub25jZQ"],
        vec![long.as_str()],
        vec![good, good],
        vec![],
    ] {
        let status = upgrade_status(addr, "HTTP/1.1", &keys).await;
        assert!(status.starts_with("HTTP/1.1 400"), "{keys:?}: {status}");
    }
    let status = upgrade_status(addr, "HTTP/1.0", &[good]).await;
    assert!(status.contains(" 400 "), "HTTP/1.0: {status}");
}

/// The server writes Tether frames past tungstenite (runtime-tokio's transport/burst.rs):
/// this hand parser reads them off the wire. A response body in chunks of 100, 5,000 and
/// 200,000 bytes leaves in DATA frames of all three RFC 6455 length forms (the 64 KiB frames
/// need the 64-bit one), each a final, unmasked binary frame, and arrives intact.
#[tokio::test]
async fn a_response_body_written_past_tungstenite_is_read_off_the_wire_by_hand() {
    use tether_proto::streams::StreamEvent;
    use tether_proto::RequestHead;

    fn pattern(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(13) ^ seed ^ (i >> 9) as u8)
            .collect()
    }
    const SIZES: [usize; 3] = [100, 5_000, 200_000];
    let sizes = SIZES;
    let expected: Vec<u8> = sizes
        .iter()
        .enumerate()
        .flat_map(|(i, &n)| pattern(n, i as u8))
        .collect();
    let (server, _events) = server().await;
    server.serve(axum::Router::new().route(
        "/big",
        axum::routing::get(move || async move {
            let chunks = SIZES
                .iter()
                .enumerate()
                .map(|(i, &n)| Ok::<_, std::convert::Infallible>(Bytes::from(pattern(n, i as u8))));
            axum::body::Body::from_stream(futures_util::stream::iter(chunks))
        }),
    ));
    let mut raw = Raw::connect(server.local_addr()).await;
    let (mut conn, _) = raw.handshake(None).await;
    let head = RequestHead::new(http::Method::GET, http::Uri::from_static("/big"));
    let id = conn.open(head, true, None, Instant::now()).unwrap();
    let (mut body, mut lengths) = (Vec::new(), Vec::new());
    tokio::time::timeout(GUARD, async {
        loop {
            while let Some(msg) = conn.poll_transmit().map(WsMessage::from) {
                if let WsMessage::Binary(b) = msg {
                    raw.send(true, false, BINARY, &b).await;
                }
            }
            let mut done = false;
            while let Some(event) = conn.poll_event() {
                if let Event::Stream(StreamEvent::Data {
                    id: i,
                    data,
                    end_stream,
                }) = event
                {
                    assert_eq!(i, id);
                    // The machine gives the bytes back to the server's window itself.
                    body.extend_from_slice(&data);
                    done |= end_stream;
                }
            }
            if done {
                return;
            }
            let f = raw
                .read_frame()
                .await
                .expect("the server ended the connection");
            assert!(f.fin, "one unfragmented frame per message");
            if f.opcode == BINARY {
                lengths.push(f.payload.len());
                conn.handle_message(WsMessage::Binary(f.payload.into()), Instant::now());
            }
        }
    })
    .await
    .expect("the body in time");
    assert!(body == expected, "the body differs ({} bytes)", body.len());
    // 7-bit (heads, the 100-byte chunk), 16-bit (the 5,000-byte one) and 64-bit lengths
    // (a 64 KiB DATA payload plus its 8-byte header).
    assert!(lengths.iter().any(|&n| n < 126), "{lengths:?}");
    assert!(lengths.contains(&(5_000 + 8)), "{lengths:?}");
    assert!(lengths.contains(&(65_536 + 8)), "{lengths:?}");
}

/// Every tracing event and span field of the code under test, formatted as text: what any
/// log subscriber an embedder installs could print.
#[derive(Clone, Default)]
struct CapturedLog(Arc<std::sync::Mutex<String>>);

impl CapturedLog {
    fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }
}

impl tracing::field::Visit for CapturedLog {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let mut s = self.0.lock().unwrap();
        s.push_str(&format!("{}={value:?} ", field.name()));
    }
}

impl tracing::Subscriber for CapturedLog {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        span.record(&mut self.clone());
        self.0.lock().unwrap().push('\n');
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        values.record(&mut self.clone());
        self.0.lock().unwrap().push('\n');
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        event.record(&mut self.clone());
        self.0.lock().unwrap().push('\n');
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// The ways a 16-byte secret could show up in text: hex either case, `Debug` of the bytes,
/// base64 (standard and URL-safe, padded or not).
fn renderings(secret: &[u8; 16]) -> Vec<String> {
    const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let mut b64 = String::new();
    for chunk in secret.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            b64.push(STD[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    let url = b64.replace('+', "-").replace('/', "_");
    // A prefix is enough to count as a leak, and survives any line wrapping.
    vec![
        hex.clone(),
        hex.to_uppercase(),
        format!("{secret:?}"),
        format!("{:?}", &secret[..8]),
        b64[..16].to_string(),
        url[..16].to_string(),
    ]
}

/// The resume token is a bearer secret that MUST NOT be logged (spec/protocol.md §11
/// [11-1]): a whole session's life on the server (HELLO, a transport loss, a resume with
/// a wrong token, the resume with the right one, an orderly close), traced at every level,
/// and the server's events, show no rendering of it.
#[tokio::test]
async fn the_resume_token_is_in_no_log_line_and_no_event() {
    let log = CapturedLog::default();
    // The process-wide subscriber, not a thread's default: the other tests of this binary
    // run the same code on other threads at the same time, and a callsite they reach
    // first while only a thread-local subscriber exists elsewhere can have its interest
    // cached as "never", so its events would be missed here (the capture check below
    // failed that way in one run in a few). The other tests' lines land in the capture
    // too; their tokens are their own. Only this test of the binary sets a subscriber.
    tracing::subscriber::set_global_default(log.clone()).expect("no other subscriber");
    tracing::callsite::rebuild_interest_cache();
    let (server, mut events) = server().await;
    let mut seen_events = String::new();

    let mut raw = Raw::connect(server.local_addr()).await;
    let (conn, _) = raw.handshake(None).await;
    let ticket = conn.resume_ticket().expect("ticket");
    let id = received(&mut events).await;
    drop(raw); // TCP ends without a Close: the session is kept (§9.1).

    let wrong = Resume {
        connection_id: ticket.connection_id,
        token: tether_proto::ResumeToken::from_bytes(
            ticket.token.as_bytes().map(|b| b.wrapping_add(1)),
        ),
    };
    let mut guess = Raw::connect(server.local_addr()).await;
    let (_, resumed) = guess.handshake(Some(wrong)).await;
    assert!(!resumed, "a wrong token resumed the session");

    let mut again = Raw::connect(server.local_addr()).await;
    let (mut conn, resumed) = again.handshake(Some(ticket)).await;
    assert!(resumed, "the right token did not resume");
    conn.close(CloseCode::NORMAL, "done", Instant::now());
    while let Some(WsMessage::Binary(b)) = conn.poll_transmit().map(WsMessage::from) {
        again.send(true, false, BINARY, &b).await;
    }
    again.send(true, false, CLOSE, &1000u16.to_be_bytes()).await;
    assert_eq!(again.expect_close().await, 1000);

    // Everything the server reported, up to the end of that session.
    loop {
        let e = tokio::time::timeout(GUARD, events.recv())
            .await
            .unwrap()
            .unwrap();
        seen_events.push_str(&format!("{e:?}\n"));
        if matches!(&e, ServerEvent::Closed { id: got, .. } if *got == id) {
            break;
        }
    }

    let text = log.text();
    // The capture works: the connection id, which is not secret, is in it.
    assert!(text.contains(&id.to_string()), "nothing captured:\n{text}");
    for secret in [*ticket.token.as_bytes(), *wrong.token.as_bytes()] {
        for r in renderings(&secret) {
            assert!(!text.contains(&r), "token logged as {r}:\n{text}");
            assert!(
                !seen_events.contains(&r),
                "token in an event as {r}:\n{seen_events}"
            );
        }
    }
}
