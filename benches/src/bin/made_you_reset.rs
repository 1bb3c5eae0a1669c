//! Load run: "MadeYouReset" against a `tether server --upstream` (issue 9 item 3,
//! spec/protocol.md §10.8 "Stream churn").
//!
//! `made_you_reset TETHER_BIN [SECONDS] [ATTACKERS] [BATCH] [-- server args]` starts a local
//! upstream HTTP server with two endpoints, `/slow` (answers after 1 s) and `/fast` (answers
//! at once), which counts the requests it starts; spawns `TETHER_BIN server --upstream` on it
//! as a child process; and runs, for SECONDS (default 10):
//!
//! - ATTACKERS (default 1) attacking Tether connections, hand-driven over tokio-tungstenite.
//!   Each opens BATCH (default 100, below MAX_CONCURRENT_STREAMS) `GET /slow` streams, waits
//!   until the upstream has started them (at most 100 ms: the strongest attacker, each reset
//!   it provokes throws away work already begun), then sends for each stream a frame that
//!   makes the server reset it, waits for the resets, and starts over. A connection the
//!   server closes is replaced at once by a new one (a reconnecting attacker). The frame is
//!   WINDOW_UPDATE(stream, 0), a stream-level decode error (§3.5); with
//!   `MYR_PROVOCATION=data` it is `POST /slow` with `content-length: 1` followed by two bytes
//!   of DATA (§10.4). Every request carries `x-myr-conn: N` so the upstream counts the work
//!   each attacking connection started.
//! - One legitimate caller on another Tether connection (`tether_tokio::client::Client`,
//!   `peer()`), calling `GET /fast` at a steady 20 requests per second (each call on its own
//!   task, 10 s timeout), 2 s alone first (the quiet baseline), then during the attack.
//!
//! It prints each attacking connection (upstream requests started, resets provoked, how it
//! ended: close code or end of the run), the totals per 10 s, and the legitimate caller's
//! p50/p99/max and errors, quiet and under attack. Loopback only, bounded in time.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tether_proto::connection::{Config, Event};
use tether_proto::streams::StreamEvent;
use tether_proto::{Connection, RequestHead, WsMessage};
use tether_tokio::client::{Client, ClientConfig, ClientEvent};
use tether_tokio::rest::Body;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

/// The header that names the attacking connection a request came from.
const CONN_HEADER: &str = "x-myr-conn";
/// How long `/slow` takes to answer.
const SLOW: Duration = Duration::from_secs(1);
/// The legitimate caller's rate.
const LEGIT_PER_SECOND: u64 = 20;
/// The legitimate caller's time alone before the attack.
const QUIET: Duration = Duration::from_secs(2);
/// The most an attacker waits for the upstream to start a batch.
const START_WAIT: Duration = Duration::from_millis(100);
/// The most an attacker waits for the resets of a batch.
const RESET_WAIT: Duration = Duration::from_secs(2);

/// Requests the upstream started: `/slow` per attacking connection, `/fast` in all.
#[derive(Default)]
struct Started {
    slow: Mutex<HashMap<u64, Arc<AtomicUsize>>>,
    /// `/slow` handlers that ran their full second (their caller did not go away).
    slow_done: AtomicUsize,
    fast: AtomicUsize,
}

impl Started {
    fn counter(&self, conn: u64) -> Arc<AtomicUsize> {
        self.slow
            .lock()
            .expect("lock")
            .entry(conn)
            .or_default()
            .clone()
    }
}

async fn upstream(started: Arc<Started>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let started = started.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let started = started.clone();
                    async move {
                        if req.uri().path() == "/slow" {
                            let conn = req
                                .headers()
                                .get(CONN_HEADER)
                                .and_then(|v| v.to_str().ok())
                                .and_then(|v| v.parse().ok())
                                .unwrap_or(u64::MAX);
                            started.counter(conn).fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(SLOW).await;
                            started.slow_done.fetch_add(1, Ordering::Relaxed);
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                                b"slow",
                            ))))
                        } else {
                            started.fast.fetch_add(1, Ordering::Relaxed);
                            Ok(Response::new(Full::new(Bytes::from_static(b"fast"))))
                        }
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// One Tether frame (spec/protocol.md §3.1): type, flags, 16 reserved bits, stream id.
fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Message {
    let mut b = BytesMut::with_capacity(8 + payload.len());
    b.put_u8(ty);
    b.put_u8(flags);
    b.put_u16(0);
    b.put_u32(stream);
    b.put_slice(payload);
    Message::Binary(b.freeze())
}

const DATA: u8 = 0x05;
const WINDOW_UPDATE: u8 = 0x07;

/// What became of one attacking connection.
#[derive(Debug, Default)]
struct ConnReport {
    index: u64,
    lived: Duration,
    heads: usize,
    provoked: usize,
    resets_seen: usize,
    started: usize,
    /// The server's Close code, if it closed the connection with one.
    close: Option<u16>,
    /// Why it ended otherwise.
    end: &'static str,
}

/// Sends everything the machine has queued.
async fn flush(ws: &mut Ws, conn: &mut Connection) -> bool {
    while let Some(msg) = conn.poll_transmit().map(tether_proto::WsMessage::from) {
        if let WsMessage::Binary(b) = msg {
            if ws.feed(Message::Binary(b)).await.is_err() {
                return false;
            }
        }
    }
    ws.flush().await.is_ok()
}

/// What one message from the server did.
enum Read {
    Ok,
    Closed(Option<u16>),
}

fn handle(ws_msg: Option<Result<Message, impl std::fmt::Debug>>, conn: &mut Connection) -> Read {
    match ws_msg {
        Some(Ok(Message::Binary(b))) => {
            conn.handle_message(WsMessage::Binary(b), Instant::now());
            Read::Ok
        }
        Some(Ok(Message::Close(frame))) => Read::Closed(frame.map(|f| u16::from(f.code))),
        Some(Ok(_)) => Read::Ok,
        _ => Read::Closed(None),
    }
}

/// After a failed write: look for the server's Close frame for a moment.
async fn close_code(ws: &mut Ws) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => {}
            _ => return None,
        }
    }
}

/// One attacking connection, until the server closes it or `end`.
async fn attack_once(
    addr: SocketAddr,
    index: u64,
    batch: usize,
    data_mode: bool,
    started: Arc<Started>,
    end: Instant,
) -> ConnReport {
    let t0 = Instant::now();
    let counter = started.counter(index);
    let mut report = ConnReport {
        index,
        ..ConnReport::default()
    };
    let finish = |mut r: ConnReport| {
        r.lived = t0.elapsed();
        r.started = counter.load(Ordering::Relaxed);
        r
    };
    let mut request = format!("ws://{addr}/").into_client_request().expect("url");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        tether_proto::SUBPROTOCOL.parse().expect("value"),
    );
    let Ok(tcp) = TcpStream::connect(addr).await else {
        report.end = "connect failed";
        return finish(report);
    };
    let Ok((mut ws, _)) = tokio_tungstenite::client_async(request, tcp).await else {
        report.end = "upgrade failed";
        return finish(report);
    };
    let config = Arc::new(Config::builder().build().expect("config"));
    let mut conn = Connection::client(config, Bytes::new(), None, Instant::now()).expect("client");
    // The handshake, by the machine.
    while !conn.is_established() {
        if !flush(&mut ws, &mut conn).await {
            report.end = "handshake write failed";
            return finish(report);
        }
        while conn.poll_event().is_some() {}
        if conn.is_established() {
            break;
        }
        let next = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
        match next.map(|m| handle(m, &mut conn)) {
            Ok(Read::Ok) => {}
            Ok(Read::Closed(code)) => {
                report.close = code;
                report.end = "closed in handshake";
                return finish(report);
            }
            Err(_) => {
                report.end = "handshake timed out";
                return finish(report);
            }
        }
    }
    while Instant::now() < end {
        // A batch of requests, by the machine (ids, concurrency).
        let mut open: Vec<u32> = Vec::with_capacity(batch);
        {
            for _ in 0..batch {
                let method = if data_mode { Method::POST } else { Method::GET };
                let mut head = RequestHead::new(method, Uri::from_static("/slow"));
                head.headers
                    .insert(CONN_HEADER, index.to_string().parse().expect("value"));
                if data_mode {
                    head.headers
                        .insert(http::header::CONTENT_LENGTH, "1".parse().expect("value"));
                }
                match conn.open(head, !data_mode, None, Instant::now()) {
                    Ok(id) => open.push(id.value()),
                    Err(_) => break,
                }
            }
        }
        if !flush(&mut ws, &mut conn).await {
            report.close = close_code(&mut ws).await;
            report.end = "write failed";
            return finish(report);
        }
        report.heads += open.len();
        // Let the upstream start them (the attacker that does most harm per reset).
        let wait_until = Instant::now() + START_WAIT;
        while counter.load(Ordering::Relaxed) < report.heads && Instant::now() < wait_until {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // The provocations.
        for &id in &open {
            let msg = if data_mode {
                frame(DATA, 0, id, b"xy")
            } else {
                frame(WINDOW_UPDATE, 0, id, &0u32.to_be_bytes())
            };
            if ws.feed(msg).await.is_err() {
                break;
            }
            report.provoked += 1;
        }
        if ws.flush().await.is_err() {
            report.close = close_code(&mut ws).await;
            report.end = "write failed";
            return finish(report);
        }
        // Wait for the resets (the machine frees the streams).
        let reset_deadline = (Instant::now() + RESET_WAIT).min(end);
        let mut left = open.len();
        while left > 0 {
            let next = tokio::time::timeout_at(reset_deadline.into(), ws.next()).await;
            match next.map(|m| handle(m, &mut conn)) {
                Ok(Read::Ok) => {}
                Ok(Read::Closed(code)) => {
                    report.close = code;
                    report.end = "closed by the server";
                    return finish(report);
                }
                Err(_) => break,
            }
            while let Some(event) = conn.poll_event() {
                if let Event::Stream(StreamEvent::Closed { id, .. }) = event {
                    if open.contains(&id.value()) {
                        left -= 1;
                        report.resets_seen += 1;
                    }
                }
            }
            if !flush(&mut ws, &mut conn).await {
                report.close = close_code(&mut ws).await;
                report.end = "write failed";
                return finish(report);
            }
        }
    }
    report.end = "end of run";
    let _ = ws.close(None).await;
    finish(report)
}

/// One attacker: a connection after another until `end`.
async fn attacker(
    addr: SocketAddr,
    first_index: u64,
    stride: u64,
    batch: usize,
    data_mode: bool,
    started: Arc<Started>,
    end: Instant,
) -> Vec<ConnReport> {
    let mut reports = Vec::new();
    let mut index = first_index;
    // Bounded: the run's end, and a cap on reconnects.
    while Instant::now() < end && reports.len() < 10_000 {
        let report = attack_once(addr, index, batch, data_mode, started.clone(), end).await;
        let failed = report.heads == 0;
        reports.push(report);
        index += stride;
        if failed {
            // Do not spin on a server that refuses us.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    reports
}

/// The legitimate caller's record: latencies of successful calls, errors.
#[derive(Default)]
struct Calls {
    quiet: Vec<Duration>,
    attack: Vec<Duration>,
    quiet_errors: usize,
    attack_errors: usize,
    first_error: Option<String>,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary(what: &str, lat: &mut [Duration], errors: usize) {
    lat.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "legitimate caller, {what}: {} ok, {errors} errors; p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
        lat.len(),
        ms(percentile(lat, 50.0)),
        ms(percentile(lat, 99.0)),
        ms(lat.last().copied().unwrap_or_default()),
    );
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// "MadeYouReset" against a `tether server --upstream`: attackers that make the server reset
/// every stream they open, next to one legitimate caller.
///
/// Starts a local upstream (`/slow` answers after 1 s, `/fast` at once) and `TETHER_BIN
/// server --upstream` on it; attacks for SECONDS while the legitimate caller calls `GET
/// /fast` 20 times a second. Prints each attacking connection's upstream work and resets
/// and the caller's latencies, quiet and under attack. With `MYR_PROVOCATION=data` a reset
/// is provoked by DATA beyond a `POST /slow`'s content-length instead of by
/// WINDOW_UPDATE(stream, 0).
#[derive(Parser)]
#[command(name = "made_you_reset")]
struct Args {
    /// The `tether` binary to attack: run as `TETHER_BIN server --listen ADDR --upstream URL`.
    #[arg(value_name = "TETHER_BIN")]
    bin: PathBuf,
    /// How long the attack runs, in seconds (after 2 s of the legitimate caller alone).
    #[arg(default_value_t = 10)]
    seconds: u64,
    /// Attacking Tether connections at once (one that the server closes is replaced).
    #[arg(default_value_t = 1)]
    attackers: u64,
    /// `GET /slow` streams an attacker opens, and has reset, per batch (below the server's
    /// MAX_CONCURRENT_STREAMS).
    #[arg(default_value_t = 100)]
    batch: usize,
    /// More arguments for `tether server`, after `--`.
    #[arg(last = true, value_name = "SERVER_ARG")]
    server_args: Vec<String>,
}

#[tokio::main]
async fn main() {
    let Args {
        bin,
        seconds,
        attackers,
        batch,
        server_args: extra,
    } = Args::parse();
    let data_mode = std::env::var("MYR_PROVOCATION").is_ok_and(|m| m == "data");

    let started = Arc::new(Started::default());
    let up = upstream(started.clone()).await;
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let listen: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let child = Command::new(&bin)
        .args(["server", "--listen", &listen.to_string(), "--upstream"])
        .arg(format!("http://{up}/"))
        .args(&extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tether server");
    let _server = Killed(child);
    for _ in 0..100 {
        if TcpStream::connect(listen).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The legitimate caller.
    let url = format!("ws://{listen}/");
    let (client, mut events) = Client::connect(&url, ClientConfig::new("{}")).expect("client");
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
            Ok(Some(ClientEvent::Connected { .. })) => break,
            Ok(Some(_)) => {}
            other => panic!("the legitimate client did not connect: {other:?}"),
        }
    }
    let peer = client.peer();
    let calls = Arc::new(Mutex::new(Calls::default()));
    let attacking = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let attack_start = t0 + QUIET;
    let end = attack_start + Duration::from_secs(seconds);
    let legit = {
        let calls = calls.clone();
        let attacking = attacking.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1000 / LEGIT_PER_SECOND));
            let mut inflight = JoinSet::new();
            while Instant::now() < end {
                tick.tick().await;
                let peer = peer.clone();
                let calls = calls.clone();
                let under_attack = attacking.load(Ordering::Relaxed);
                inflight.spawn(async move {
                    let t = Instant::now();
                    let result = tokio::time::timeout(Duration::from_secs(10), async {
                        let request = Request::get("/fast").body(Body::empty())?;
                        let response = peer.request(request).await?;
                        let status = response.status();
                        let body = response.into_body().collect().await?.to_bytes();
                        if status != StatusCode::OK || &body[..] != b"fast" {
                            return Err(format!("{status} {body:?}").into());
                        }
                        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
                    })
                    .await;
                    let elapsed = t.elapsed();
                    let mut c = calls.lock().expect("lock");
                    let error = match result {
                        Ok(Ok(())) => None,
                        Ok(Err(e)) => Some(e.to_string()),
                        Err(_) => Some("timed out after 10 s".to_owned()),
                    };
                    match (error, under_attack) {
                        (None, false) => c.quiet.push(elapsed),
                        (None, true) => c.attack.push(elapsed),
                        (Some(e), attack) => {
                            if attack {
                                c.attack_errors += 1;
                            } else {
                                c.quiet_errors += 1;
                            }
                            c.first_error.get_or_insert(e);
                        }
                    }
                });
            }
            while inflight.join_next().await.is_some() {}
        })
    };

    tokio::time::sleep_until(attack_start.into()).await;
    attacking.store(true, Ordering::Relaxed);
    println!(
        "attack: {attackers} attacker(s), batches of {batch}, {} for {seconds} s; legitimate caller {LEGIT_PER_SECOND}/s",
        if data_mode {
            "POST /slow content-length 1 + 2 bytes of DATA"
        } else {
            "GET /slow + WINDOW_UPDATE(stream, 0)"
        }
    );
    let mut tasks = JoinSet::new();
    for a in 0..attackers {
        tasks.spawn(attacker(
            listen,
            a,
            attackers,
            batch,
            data_mode,
            started.clone(),
            end,
        ));
    }
    let mut reports = Vec::new();
    while let Some(done) = tasks.join_next().await {
        reports.extend(done.expect("attacker"));
    }
    let attack_time = attack_start.elapsed();
    legit.await.expect("legitimate caller");
    reports.sort_by_key(|r| r.index);
    // Requests a connection sent that reached the upstream after it ended (they waited for
    // an upstream connection) count for it too: read the counters again once all is quiet.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for r in &mut reports {
        r.started = started.counter(r.index).load(Ordering::Relaxed);
    }

    println!("conn  lived(s)  heads  provoked  resets  upstream-started  end");
    let shown = 20;
    for r in reports.iter().take(shown) {
        println!(
            "{:>4}  {:>8.2}  {:>5}  {:>8}  {:>6}  {:>16}  {}{}",
            r.index,
            r.lived.as_secs_f64(),
            r.heads,
            r.provoked,
            r.resets_seen,
            r.started,
            r.end,
            r.close.map(|c| format!(" (close {c})")).unwrap_or_default()
        );
    }
    if reports.len() > shown {
        println!("  … {} more connections", reports.len() - shown);
    }
    let total: usize = reports.iter().map(|r| r.started).sum();
    let max_per_conn = reports.iter().map(|r| r.started).max().unwrap_or(0);
    let closes_4007 = reports.iter().filter(|r| r.close == Some(4007)).count();
    let per_10s = |n: usize| n as f64 * 10.0 / attack_time.as_secs_f64();
    println!(
        "attacking connections: {} ({} closed with 4007); upstream requests started by them: {total} in {:.1} s = {:.0} per 10 s; most by one connection: {max_per_conn}; mean per connection {:.0}",
        reports.len(),
        closes_4007,
        attack_time.as_secs_f64(),
        per_10s(total),
        total as f64 / reports.len().max(1) as f64,
    );
    let refused = reports.iter().filter(|r| r.end == "upgrade failed").count();
    println!(
        "of these, upgrades refused (HTTP 429 in abuse cool-down, spec §10.8): {refused}; connections that sent requests: {}",
        reports.iter().filter(|r| r.heads > 0 || r.close.is_some()).count()
    );
    let unattributed = started.counter(u64::MAX).load(Ordering::Relaxed);
    if unattributed > 0 {
        println!("(/slow requests without {CONN_HEADER}: {unattributed})");
    }
    println!(
        "upstream /slow handlers that ran their full second: {}; /fast requests started: {}",
        started.slow_done.load(Ordering::Relaxed),
        started.fast.load(Ordering::Relaxed)
    );
    let mut c = calls.lock().expect("lock");
    let (qe, ae) = (c.quiet_errors, c.attack_errors);
    summary("quiet (2 s before the attack)", &mut c.quiet, qe);
    summary("under attack", &mut c.attack, ae);
    if let Some(e) = &c.first_error {
        println!("first error: {e}");
    }
}
