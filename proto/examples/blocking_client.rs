//! A Tether client with no async runtime: one thread, a blocking `std::net::TcpStream` and
//! tungstenite's blocking WebSocket API around tether-proto's sans-IO [`Connection`].
//!
//! It shows everything an embedder supplies, and nothing more: bytes (the socket), time
//! (`Instant::now()`, passed to the machine as `now`), randomness (reconnect jitter) and the
//! application (what to request, how to answer). Every protocol rule (handshake, heartbeat,
//! flow control, stream deadlines, close codes) is the machine's.
//!
//! ```text
//! blocking_client ws://127.0.0.1:9000/ /hello   # GET /hello; print the status, then the body
//! blocking_client ws://127.0.0.1:9000/ --serve  # answer every request: 200, body = its path
//! ```
//!
//! The run loop of one connection ([`run_connection`]):
//!
//! 1. drain the machine ([`pump`]): `poll_event` until empty (handling an event may queue
//!    frames), then `poll_transmit` until empty, writing each message; writing can raise
//!    new events (`Connection::has_events`), so repeat until both are empty; flush once;
//! 2. wait for input, but no longer than `poll_timeout()`: the socket's read timeout;
//! 3. feed what happened: `handle_message(msg, now)`, or `handle_timeout(now)` when the
//!    read timed out, or `handle_websocket_error` / `handle_transport_lost` when it failed;
//!    back to 1, until the machine is closed.

use std::io::{ErrorKind, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{header, HeaderValue, Method, StatusCode, Uri};
use tether_proto::backoff::{Backoff, BackoffConfig, RetryPolicy};
use tether_proto::connection::{
    CloseFrame, Config, Connection, Event, Transmit, WebSocketError, WsMessage,
};
use tether_proto::streams::{Outcome, StreamEvent};
use tether_proto::{CloseCode, RequestHead, ResetCode, ResponseHead, Resume, StreamId};
use tungstenite::client::{client_with_config, IntoClientRequest};
use tungstenite::error::ProtocolError;
use tungstenite::protocol::{CloseFrame as WsCloseFrame, WebSocketConfig};
use tungstenite::{Error as WsError, HandshakeError, Message, WebSocket};

/// Time allowed for the TCP connect and the WebSocket upgrade; also the write timeout.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Request mode: the request's deadline (the machine resets the stream with TIMEOUT).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // One configuration for every connection: receive limits, heartbeat proposal, windows.
    let config = Arc::new(Config::default());
    let (url, path) = match args.as_slice() {
        [url, flag] if flag == "--serve" => return serve(url, &config),
        [url, path] if path.starts_with('/') => (url, path),
        _ => return fail("usage: blocking_client WS-URL (/PATH | --serve)"),
    };
    let fetch = match path.parse::<Uri>() {
        Ok(uri) => Some(uri),
        Err(e) => return fail(&format!("invalid path {path}: {e}")),
    };
    let mut app = App {
        fetch,
        ..App::default()
    };
    match run_connection(url, &config, None, &mut app).map(|_| app.fetched) {
        Ok(Some(Ok(()))) => ExitCode::SUCCESS,
        Ok(Some(Err(e))) | Err(e) => fail(&e),
        Ok(None) => fail(&app.end),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

/// `--serve`: stay connected; after each end, reconnect after a back-off delay unless the
/// close code says that retrying is pointless (spec/protocol.md §6.2, §9.5).
fn serve(url: &str, config: &Arc<Config>) -> ExitCode {
    let mut backoff = Backoff::new(BackoffConfig {
        max_delay: Duration::from_secs(5), // an interactive tool: come back quickly
        ..BackoffConfig::default()
    });
    // Jitter needs no cryptographic quality: xorshift, seeded from the clock. (The machine
    // never reads a clock; this program is the runtime, so it may.)
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH);
    let mut state = nanos.map_or(1, |d| d.as_nanos() as u64) | 1;
    let mut rng = move |buf: &mut [u8]| {
        for byte in buf {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *byte = (state >> 32) as u8;
        }
    };
    let mut resume = None;
    loop {
        let mut app = App {
            serving: true,
            ..App::default()
        };
        let code = match run_connection(url, config, resume, &mut app) {
            Ok(conn) => {
                resume = conn.resume_ticket(); // to resume the session next time (§9.2)
                if let Some(at) = app.connected_at {
                    backoff.handle_connected(at);
                }
                eprintln!("ended: {}", app.end);
                app.close_code
            }
            Err(e) => {
                eprintln!("connect failed: {e}");
                None // like a lost transport: retried
            }
        };
        let now = Instant::now();
        backoff.handle_disconnected(now); // resets the delays if the connection lasted
        let delay = match RetryPolicy::for_close_code(code) {
            RetryPolicy::Fatal => return fail("the close code forbids reconnecting"),
            RetryPolicy::RetrySlowly => Some(backoff.config().max_delay),
            _ => backoff.next_delay(now, &mut rng),
        };
        let Some(delay) = delay else {
            return fail("giving up reconnecting");
        };
        eprintln!("reconnecting in {delay:?} (attempt {})", backoff.attempt());
        std::thread::sleep(delay);
    }
}

/// The application: what it asked for, what it received, and how the connection ended.
#[derive(Default)]
struct App {
    /// `--serve`: answer the server's requests (in request mode the machine answers them
    /// 501 by itself).
    serving: bool,
    /// Request mode: the path to GET (taken when the request is sent), the request's
    /// stream, its response so far, and the result once that stream has ended.
    fetch: Option<Uri>,
    request: Option<StreamId>,
    status: Option<StatusCode>,
    body: Vec<u8>,
    fetched: Option<Result<(), String>>,
    connected_at: Option<Instant>,
    /// How the connection ended, and its close code (`None`: the transport was lost).
    end: String,
    close_code: Option<CloseCode>,
}

impl App {
    /// One event of the machine. Streams are reached through `conn.open` and `conn.stream(id)`.
    fn on_event(&mut self, conn: &mut Connection, event: Event, now: Instant) {
        match event {
            Event::Established { id, resumed } => {
                eprintln!("connected {id}{}", if resumed { " (resumed)" } else { "" });
                self.connected_at = Some(now);
                let Some(path) = self.fetch.take() else {
                    return;
                };
                let head = RequestHead::new(Method::GET, path);
                match conn.open(head, true, Some(REQUEST_TIMEOUT), now) {
                    Ok(id) => self.request = Some(id),
                    Err(e) => self.finish(conn, Err(format!("cannot send the request: {e}")), now),
                }
            }
            Event::Stream(event) => self.on_stream(conn, event, now),
            Event::Closed { code, reason, .. } => {
                self.end = format!("closed with {code} {reason:?}");
                self.close_code = Some(code);
            }
            Event::Failure { error } => {
                self.end = format!("connection failed: {error}");
                self.close_code = error.close_code();
            }
            _ => {} // heartbeat pings and pongs (the enum is non-exhaustive)
        }
    }

    fn on_stream(&mut self, conn: &mut Connection, event: StreamEvent, now: Instant) {
        match event {
            // Only with `--serve`: otherwise the machine answers 501 by itself.
            StreamEvent::Request { id, head, .. } => answer(conn, id, &head, now),
            // A final response (1xx heads are informational: another follows).
            StreamEvent::Response { id, head, .. }
                if Some(id) == self.request && !head.status.is_informational() =>
            {
                self.status = Some(head.status)
            }
            // The machine gives the flow-control window back by itself (spec/protocol.md
            // §10.3): the bytes are ours to keep.
            StreamEvent::Data { id, data, .. } if Some(id) == self.request => {
                self.body.extend_from_slice(&data);
            }
            StreamEvent::Closed { id, outcome } if Some(id) == self.request => {
                let result = match (outcome, self.status) {
                    (Outcome::Finished, Some(status)) => {
                        println!("{}", status.as_u16());
                        let mut out = std::io::stdout().lock();
                        let written = out.write_all(&self.body).and_then(|()| out.flush());
                        written.map_err(|e| format!("stdout: {e}"))
                    }
                    (Outcome::Reset { code, initiator }, _) => {
                        Err(format!("the request was reset ({code}, by {initiator:?})"))
                    }
                    (Outcome::TimedOut, _) => Err(format!("no response in {REQUEST_TIMEOUT:?}")),
                    (outcome, _) => Err(format!("the request ended: {outcome:?}")),
                };
                self.finish(conn, result, now);
            }
            StreamEvent::GoAway { code, reason, .. } => eprintln!("going away: {code} {reason:?}"),
            _ => {}
        }
    }

    /// Request mode is over: close the connection normally (1000).
    fn finish(&mut self, conn: &mut Connection, result: Result<(), String>, now: Instant) {
        self.fetched = Some(result);
        conn.close(CloseCode::NORMAL, "done", now);
    }
}

/// `--serve`: answers a request from the server with 200 and the request's path; a
/// request body is not wanted (`discard_body`: the machine stops it once the answer is out).
fn answer(conn: &mut Connection, id: StreamId, head: &RequestHead, now: Instant) {
    let body = Bytes::from(head.uri.path().to_owned());
    let mut response = ResponseHead::new(StatusCode::OK);
    let fields = &mut response.headers;
    fields.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    fields.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let no_body = head.method == Method::HEAD;
    let Ok(mut stream) = conn.stream(id) else {
        return; // it ended meanwhile (reset by the server)
    };
    // An empty send queue always takes the first chunk: no `Blocked` to handle here.
    let sent = stream
        .send_response(response, no_body)
        .and_then(|()| match no_body {
            true => Ok(()),
            false => stream.send_data(body, true),
        });
    match sent {
        Ok(()) => stream.discard_body(now),
        Err(e) => {
            eprintln!("cannot answer stream {id}: {e}");
            stream.reset(ResetCode::INTERNAL_ERROR);
        }
    }
}

/// Dials `url` and runs one connection until its machine is closed; `Err` when no
/// WebSocket came up at all.
fn run_connection(
    url: &str,
    config: &Arc<Config>,
    resume: Option<Resume>,
    app: &mut App,
) -> Result<Connection, String> {
    let mut ws = dial(url, config)?;
    let metadata = Bytes::new(); // no HELLO metadata: the server's application sees `null`
    let mut conn = Connection::client(config.clone(), metadata, resume, Instant::now())
        .map_err(|e| e.to_string())?; // its HELLO is queued: step 1 sends it
    conn.set_serve_requests(app.serving); // else the machine answers requests 501
    let mut broken = false;
    loop {
        // 1. Drain every output.
        broken = pump(&mut ws, &mut conn, app, broken);
        if conn.is_closed() {
            break;
        }
        // 2. Wait for input until the machine's next deadline; none: block until input.
        let now = Instant::now();
        let wait = match conn.poll_timeout() {
            Some(deadline) if deadline <= now => {
                conn.handle_timeout(now);
                continue;
            }
            // std refuses a zero read timeout: round up to 1 ms.
            deadline => deadline.map(|d| (d - now).max(Duration::from_millis(1))),
        };
        // 3. Feed the machine what happened.
        let result = ws.get_ref().set_read_timeout(wait).map_err(WsError::Io);
        let result = result.and_then(|()| ws.read());
        let now = Instant::now();
        match result {
            Ok(msg) => match from_ws(msg) {
                Some(msg) => conn.handle_message(msg, now),
                None => continue,
            },
            Err(WsError::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                conn.handle_timeout(now) // the read timed out (Unix: WouldBlock)
            }
            Err(e) => match violation(&e) {
                // The peer broke the WebSocket layer: the machine picks the close code.
                Some(v) => conn.handle_websocket_error(v, now),
                None => conn.handle_transport_lost(now),
            },
        }
    }
    if !broken {
        linger(&mut ws);
    }
    Ok(conn)
}

/// Step 1: events, then transmits, until both are empty; then one flush. Returns whether
/// the socket is broken (the machine is told; what it still queues is dropped).
fn pump(ws: &mut WebSocket<TcpStream>, conn: &mut Connection, app: &mut App, broken: bool) -> bool {
    let (mut broken, mut wrote) = (broken, false);
    loop {
        while let Some(event) = conn.poll_event() {
            app.on_event(conn, event, Instant::now());
        }
        while let Some(msg) = conn.poll_transmit() {
            match to_ws(msg).filter(|_| !broken).map(|msg| ws.write(msg)) {
                Some(Ok(())) => wrote = true,
                Some(Err(e)) => broken = lost(conn, e),
                None => {}
            }
        }
        // Writing may have made a stream writable again: drain events once more.
        if !conn.has_events() {
            break;
        }
    }
    if wrote && !broken {
        if let Err(e) = ws.flush() {
            lost(conn, e);
            return pump(ws, conn, app, true); // report the failure's events
        }
    }
    broken
}

/// A write failed: the transport is gone, and the machine reports the failure as an event.
fn lost(conn: &mut Connection, error: WsError) -> bool {
    eprintln!("write failed: {error}");
    conn.handle_transport_lost(Instant::now());
    true
}

/// After our close frame or the peer's: read and drop until the close handshake completes
/// or 2 s pass, so that unread bytes do not make TCP reset the connection under our close
/// frame (spec/protocol.md §2.3).
fn linger(ws: &mut WebSocket<TcpStream>) {
    let until = Instant::now() + Duration::from_secs(2);
    let _ = ws.flush();
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        let _ = ws
            .get_ref()
            .set_read_timeout(Some(left.max(Duration::from_millis(1))));
        if ws.read().is_err() {
            break; // closed, or the time is up
        }
    }
}

/// TCP connect and WebSocket upgrade, each bounded by [`IO_TIMEOUT`].
fn dial(url: &str, config: &Config) -> Result<WebSocket<TcpStream>, String> {
    let mut request = url
        .into_client_request()
        .map_err(|e| format!("{url}: {e}"))?;
    let uri = request.uri();
    if uri.scheme_str() != Some("ws") {
        return Err(format!("{url}: only ws:// (this example has no TLS)"));
    }
    let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
    let target = (host, uri.port_u16().unwrap_or(80));
    let addr = target.to_socket_addrs().ok().and_then(|mut a| a.next());
    let addr = addr.ok_or(format!("cannot resolve {url}"))?;
    let tcp = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let timeouts = tcp.set_read_timeout(Some(IO_TIMEOUT));
    timeouts
        .and(tcp.set_write_timeout(Some(IO_TIMEOUT)))
        .map_err(|e| e.to_string())?;
    // spec/protocol.md §2.1: offer the subprotocol. §2.3: a message over 8 bytes of frame
    // header plus our max_frame_payload is refused by the WebSocket layer (1009).
    let subprotocol = HeaderValue::from_static(tether_proto::SUBPROTOCOL);
    request
        .headers_mut()
        .insert("sec-websocket-protocol", subprotocol);
    let max = 8 + config.limits().max_frame_payload as usize;
    let ws_config = WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    // tungstenite checks the server's choice of subprotocol (§2.1); it then drops the TCP
    // connection without the 1002 close frame the spec asks for.
    match client_with_config(request, tcp, Some(ws_config)) {
        Ok((ws, _response)) => Ok(ws),
        Err(HandshakeError::Failure(WsError::Protocol(
            ProtocolError::SecWebSocketSubProtocolError(e),
        ))) => Err(format!(
            "the server did not select the tether.v1 subprotocol: {e}"
        )),
        Err(HandshakeError::Failure(WsError::Http(r))) => {
            Err(format!("WebSocket upgrade refused: HTTP {}", r.status()))
        }
        Err(HandshakeError::Failure(e)) => Err(format!("WebSocket upgrade: {e}")),
        Err(HandshakeError::Interrupted(_)) => Err("WebSocket upgrade timed out".into()),
    }
}

/// tungstenite's message to the machine's (`None`: a raw frame, which `read` never returns).
fn from_ws(msg: Message) -> Option<WsMessage> {
    Some(match msg {
        Message::Binary(bytes) => WsMessage::Binary(bytes),
        Message::Text(text) => WsMessage::Text(text.into()),
        Message::Ping(payload) => WsMessage::Ping(payload),
        Message::Pong(payload) => WsMessage::Pong(payload),
        Message::Close(frame) => WsMessage::Close(
            frame.map(|f| CloseFrame::new(CloseCode::from_u(f.code.into()), &f.reason)),
        ),
        Message::Frame(_) => return None,
    })
}

/// The machine's message to tungstenite's (the machine never sends text). tungstenite
/// takes a message as one buffer, so a DATA frame's header and payload are joined here
/// (`Transmit::into_message`, one copy); a writer of its own WebSocket frames could send
/// the parts with a vectored write instead.
fn to_ws(msg: Transmit) -> Option<Message> {
    Some(match msg.into_message() {
        WsMessage::Binary(bytes) => Message::Binary(bytes),
        WsMessage::Ping(payload) => Message::Ping(payload),
        WsMessage::Pong(payload) => Message::Pong(payload),
        WsMessage::Close(frame) => Message::Close(frame.map(|f| WsCloseFrame {
            code: f.code.value().into(),
            reason: f.reason.into(),
        })),
        _ => return None,
    })
}

/// The peer's fault behind a tungstenite read error, if it is one; `None` when the
/// transport itself is gone (reset, end of stream, close handshake complete).
fn violation(e: &WsError) -> Option<WebSocketError> {
    match e {
        WsError::Capacity(_) => Some(WebSocketError::MessageTooBig),
        WsError::Utf8(_) => Some(WebSocketError::InvalidText),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        WsError::Protocol(_) => Some(WebSocketError::Protocol),
        _ => None,
    }
}
