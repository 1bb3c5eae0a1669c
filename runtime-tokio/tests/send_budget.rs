//! A peer that grants no credit cannot pin the server's memory (spec/protocol.md §10.3,
//! §10.8): a hand-driven client announces zero windows, opens many GETs of endless (or
//! 50 MB) bodies and never reads. The server holds at most the per-connection cap (and the
//! process-wide budget) of their bytes, resets each stalled stream after the stall timeout
//! with ENHANCE_YOUR_CALM, and leaves a long poll that has nothing to send alone.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body as AxumBody;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Method, StatusCode, Uri};
use tether_proto::connection::{Config, Event};
use tether_proto::streams::{SendBudget, StreamEvent, StreamsConfig};
use tether_proto::{Connection, RequestHead, ResetCode, StreamId, WsMessage};
use tether_tokio::gateway::Upstream;
use tether_tokio::server::{Server, ServerConfig};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A failure guard only: every wait ends as soon as what it waits for happens.
const GUARD: Duration = Duration::from_secs(30);
/// The per-connection cap on queued bytes under test.
const CAP: usize = 1024 * 1024;
/// The shortened stall timeout.
const STALL: Duration = Duration::from_millis(400);
/// Size of the chunks of the generated bodies.
const CHUNK: usize = 16 * 1024;
/// Streams of the attack (plus one long poll, within MAX_CONCURRENT_STREAMS = 128).
const STREAMS: usize = 100;

/// What the served bodies look like: endless, generated as fast as they are read.
fn endless() -> AxumBody {
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    AxumBody::from_stream(futures_util::stream::repeat_with(move || {
        Ok::<_, std::io::Error>(chunk.clone())
    }))
}

/// `/big`: an endless body. `/poll`: a long poll, answered (204, no body) once `gate`
/// is notified.
fn app(gate: Arc<Notify>) -> Router {
    Router::new()
        .route("/big", get(|| async { endless() }))
        .route(
            "/poll",
            get(move || async move {
                gate.notified().await;
                StatusCode::NO_CONTENT
            }),
        )
}

async fn server(budget: &SendBudget) -> Server {
    let connection = Config::builder()
        .streams(StreamsConfig {
            max_connection_send_buffer: CAP,
            send_budget: budget.clone(),
            stall_timeout: STALL,
            ..StreamsConfig::default()
        })
        .build()
        .unwrap();
    let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    config.connection = Arc::new(connection);
    Server::bind(config).await.unwrap().0
}

/// A client machine over tungstenite that grants no credit at all.
struct Attacker {
    ws: WebSocketStream<TcpStream>,
    conn: Connection,
}

impl Attacker {
    async fn connect(addr: SocketAddr) -> Attacker {
        let mut request = format!("ws://{addr}/").into_client_request().unwrap();
        request
            .headers_mut()
            .insert("sec-websocket-protocol", "tether.v1".parse().unwrap());
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (ws, _) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
        let config = Config::builder()
            .streams(StreamsConfig {
                initial_stream_window: 0,
                initial_connection_window: 0,
                ..StreamsConfig::default()
            })
            .build()
            .unwrap();
        let conn =
            Connection::client(Arc::new(config), Bytes::new(), None, Instant::now()).unwrap();
        let mut a = Attacker { ws, conn };
        a.flush().await;
        while !a.conn.is_established() {
            a.read().await;
        }
        a
    }

    async fn flush(&mut self) {
        while let Some(msg) = self.conn.poll_transmit().map(tether_proto::WsMessage::from) {
            if let WsMessage::Binary(b) = msg {
                self.ws.send(Message::Binary(b)).await.unwrap();
            }
        }
    }

    /// Reads one message into the machine (tungstenite answers the server's pings).
    async fn read(&mut self) {
        match self.ws.next().await {
            Some(Ok(Message::Binary(b))) => self
                .conn
                .handle_message(WsMessage::Binary(b), Instant::now()),
            Some(Ok(_)) => {}
            other => panic!("connection ended: {other:?}"),
        }
        self.flush().await;
    }

    fn get(&mut self, path: &'static str) -> StreamId {
        let head = RequestHead::new(Method::GET, Uri::from_static(path));
        self.conn.open(head, true, None, Instant::now()).unwrap()
    }

    /// The next stream event.
    async fn event(&mut self) -> StreamEvent {
        loop {
            while let Some(event) = self.conn.poll_event() {
                if let Event::Stream(e) = event {
                    return e;
                }
            }
            self.read().await;
        }
    }
}

/// What the attack saw.
struct Seen {
    /// The most the server's budget held while the attack ran.
    peak: usize,
    /// Streams reset with ENHANCE_YOUR_CALM.
    stalled: usize,
}

/// Opens a long poll and `STREAMS` GETs of `path` on `a`, and reads until every `/big`
/// stream has ended; returns the budget's peak meanwhile. The long poll must still be
/// open (the caller answers it).
async fn attack(a: &mut Attacker, budget: &SendBudget, path: &'static str) -> (Seen, StreamId) {
    let poll = a.get("/poll");
    let big: Vec<StreamId> = (0..STREAMS).map(|_| a.get(path)).collect();
    a.flush().await;
    let mut seen = Seen {
        peak: 0,
        stalled: 0,
    };
    let mut open = big.len();
    while open > 0 {
        let event = a.event().await;
        seen.peak = seen.peak.max(budget.used());
        match event {
            StreamEvent::Closed { id, outcome } => {
                assert_ne!(id, poll, "the long poll was cut: {outcome:?}");
                assert!(big.contains(&id));
                let want = tether_proto::streams::Outcome::Reset {
                    code: ResetCode::ENHANCE_YOUR_CALM,
                    initiator: tether_proto::Initiator::Peer,
                };
                assert_eq!(outcome, want, "stream {id}");
                seen.stalled += 1;
                open -= 1;
            }
            StreamEvent::Data { .. } => panic!("DATA without credit"),
            _ => {}
        }
    }
    (seen, poll)
}

/// The long poll, with nothing ever queued, is answered after the whole attack.
async fn answer_long_poll(a: &mut Attacker, poll: StreamId, gate: &Notify) {
    gate.notify_waiters();
    loop {
        match a.event().await {
            StreamEvent::Response {
                id,
                head,
                end_stream,
            } if id == poll => {
                assert_eq!(head.status, StatusCode::NO_CONTENT);
                assert!(end_stream);
            }
            StreamEvent::Closed { id, outcome } if id == poll => {
                assert_eq!(outcome, tether_proto::streams::Outcome::Finished);
                return;
            }
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_window_peer_pins_at_most_the_connection_cap_and_stalled_streams_are_reset() {
    let budget = SendBudget::new(64 << 20);
    let server = server(&budget).await;
    let gate = Arc::new(Notify::new());
    server.serve(app(gate.clone()));
    let mut a = Attacker::connect(server.local_addr()).await;
    let started = Instant::now();
    let (seen, poll) = tokio::time::timeout(GUARD, attack(&mut a, &budget, "/big"))
        .await
        .expect("every stalled stream is reset");
    eprintln!(
        "peak held {} KiB; {} streams reset after {:?}",
        seen.peak / 1024,
        seen.stalled,
        started.elapsed()
    );
    assert!(seen.peak > 0, "the server did queue something");
    assert!(seen.peak <= CAP + CHUNK, "held {} bytes", seen.peak);
    assert!(started.elapsed() >= STALL, "reset before the stall timeout");
    assert_eq!(budget.used(), 0, "the resets free what was queued");
    tokio::time::timeout(GUARD, answer_long_poll(&mut a, poll, &gate))
        .await
        .expect("the long poll is answered");
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_share_the_process_budget() {
    // Two attackers, a budget smaller than two connections' caps.
    let budget = SendBudget::new(CAP + CAP / 2);
    let server = server(&budget).await;
    let gate = Arc::new(Notify::new());
    server.serve(app(gate.clone()));
    let mut a = Attacker::connect(server.local_addr()).await;
    let mut b = Attacker::connect(server.local_addr()).await;
    let ((sa, pa), (sb, pb)) = tokio::time::timeout(GUARD, async {
        tokio::join!(
            attack(&mut a, &budget, "/big"),
            attack(&mut b, &budget, "/big")
        )
    })
    .await
    .expect("every stalled stream is reset");
    let peak = sa.peak.max(sb.peak);
    eprintln!("peak held {} KiB by two connections", peak / 1024);
    assert!(peak <= budget.limit() + CHUNK, "held {peak} bytes");
    assert_eq!(budget.used(), 0);
    for (a, poll) in [(&mut a, pa), (&mut b, pb)] {
        tokio::time::timeout(GUARD, answer_long_poll(a, poll, &gate))
            .await
            .expect("the long poll is answered");
    }
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// The same through the HTTP gateway (`tether server --upstream`), with a real upstream
/// whose 50 MB answers wait in the upstream and the kernel, not in Tether.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_answer_waits_in_the_upstream_not_in_tether() {
    let gate = Arc::new(Notify::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    let upstream_app = app(gate.clone()).route(
        "/fifty",
        get(|| async {
            let chunk = Bytes::from(vec![b'y'; CHUNK]);
            let n = 50_000_000 / CHUNK;
            AxumBody::from_stream(futures_util::stream::iter(
                (0..n).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
            ))
        }),
    );
    tokio::spawn(async move { axum::serve(listener, upstream_app).await });
    let budget = SendBudget::new(64 << 20);
    let server = server(&budget).await;
    server.serve(Upstream::new(&format!("http://{up}/")).unwrap());
    let mut a = Attacker::connect(server.local_addr()).await;
    let (seen, poll) = tokio::time::timeout(GUARD, attack(&mut a, &budget, "/fifty"))
        .await
        .expect("every stalled stream is reset");
    eprintln!("gateway: peak held {} KiB", seen.peak / 1024);
    // The upstream's chunks are whatever its reads return: allow one large read.
    assert!(seen.peak <= CAP + 512 * 1024, "held {} bytes", seen.peak);
    assert_eq!(budget.used(), 0);
    tokio::time::timeout(GUARD, answer_long_poll(&mut a, poll, &gate))
        .await
        .expect("the long poll is answered");
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}
