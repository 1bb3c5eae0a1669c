//! REST over real sockets: an axum `Router` served on each end and called from the other
//! through the tower `Service`, many requests at once in both directions, and 100 MiB
//! streamed each way with bounded memory.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body as AxumBody;
use axum::extract::Path;
use axum::routing::{get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use tether_proto::connection::Config;
use tether_tokio::client::{Client, ClientConfig, ClientEvent};
use tether_tokio::events::EventStream;
use tether_tokio::rest::{Body, ConnectionInfo, Peer};
use tether_tokio::server::{Server, ServerConfig, ServerEvent};
use tokio::sync::Semaphore;
use tower::{Service, ServiceExt};

mod common;

const GUARD: Duration = Duration::from_secs(30);

async fn connected(events: &mut EventStream<ClientEvent>) -> uuid::Uuid {
    loop {
        match tokio::time::timeout(GUARD, events.recv()).await {
            Ok(Some(ClientEvent::Connected { id, .. })) => return id,
            Ok(Some(_)) => continue,
            other => panic!("no Connected event: {other:?}"),
        }
    }
}

/// A server and a connected client, each serving `router`-like APIs set by the caller.
async fn pair(
    server_api: Router,
    client_api: Router,
    metadata: &str,
) -> (Server, Client, uuid::Uuid) {
    pair_with(server_api, client_api, metadata, Arc::default()).await
}

/// [`pair`] with `connection` as the protocol configuration of both ends.
async fn pair_with(
    server_api: Router,
    client_api: Router,
    metadata: &str,
    connection: Arc<Config>,
) -> (Server, Client, uuid::Uuid) {
    let mut server_config = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    server_config.connection = connection.clone();
    let (server, mut server_events) = Server::bind(server_config).await.unwrap();
    server.serve(server_api);
    let url = format!("ws://{}/", server.local_addr());
    let mut client_config = ClientConfig::new(metadata.to_owned());
    client_config.connection = connection;
    let (client, mut events) = Client::connect(&url, client_config).unwrap();
    client.serve(client_api);
    let id = connected(&mut events).await;
    // The server registers the connection when it sees it established.
    match tokio::time::timeout(GUARD, server_events.recv()).await {
        Ok(Some(ServerEvent::Received { id: seen, .. })) => assert_eq!(seen, id),
        other => panic!("no Received event: {other:?}"),
    }
    (server, client, id)
}

/// The API both ends serve in these tests: who is calling, an echo, a counter of bytes.
fn api(name: &'static str) -> Router {
    Router::new()
        .route(
            "/who",
            get(
                move |Extension(conn): Extension<ConnectionInfo>| async move {
                    format!(
                        "{name} {} {:?} {}",
                        conn.id,
                        conn.side,
                        String::from_utf8_lossy(&conn.metadata)
                    )
                },
            ),
        )
        .route(
            "/echo",
            post(|body: AxumBody| async move { AxumBody::new(body) }),
        )
        // Reads the whole request body before answering.
        .route("/collect", post(|body: Bytes| async move { body }))
        .route(
            "/items/{n}",
            get(|Path(n): Path<u32>| async move {
                (
                    StatusCode::CREATED,
                    [("x-item", n.to_string())],
                    format!("item {n}"),
                )
            }),
        )
}

async fn text(response: http::Response<Body>) -> String {
    let bytes = response.into_body().collect_limited(1 << 20).await.unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn an_axum_router_on_each_end_is_called_from_the_other() {
    let (server, client, id) = pair(api("server"), api("client"), r#"{"device":"d-7"}"#).await;
    let device: Peer = server.peer(&id).expect("connected");
    assert_eq!(device.connection_id(), Some(id));

    // The server calls the client's API, through tower's `Service` interface.
    let mut svc = device.clone();
    let response = ServiceExt::<Request<Body>>::ready(&mut svc)
        .await
        .unwrap()
        .call(Request::get("/who").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        text(response).await,
        format!(r#"client {id} Client {{"device":"d-7"}}"#)
    );

    // And the client calls the server's, on the same connection.
    let response = client
        .peer()
        .oneshot(Request::get("/who").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let info = response
        .extensions()
        .get::<ConnectionInfo>()
        .cloned()
        .unwrap();
    assert_eq!(info.id, id);
    assert_eq!(
        text(response).await,
        format!(r#"server {id} Server {{"device":"d-7"}}"#)
    );

    // Status, headers and body pass through; unknown routes are the router's 404.
    let response = device
        .request(Request::get("/items/42").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["x-item"], "42");
    assert_eq!(text(response).await, "item 42");
    let response = client
        .peer()
        .request(Request::get("/nope").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // HEAD: the headers of the GET, content-length included, and no body (§10.4).
    let response = device
        .request(Request::head("/items/7").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["content-length"], "6");
    assert_eq!(text(response).await, "");

    // A request body of any `http_body::Body` type (here axum's) is echoed back.
    let response = device
        .request(Request::post("/echo").body(AxumBody::from("ping")).unwrap())
        .await
        .unwrap();
    assert_eq!(text(response).await, "ping");

    client.close().await;
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn many_requests_at_once_in_both_directions() {
    const N: usize = 500;
    let (server, client, id) = pair(api("server"), api("client"), "{}").await;
    let device = server.peer(&id).unwrap();
    let to_server = client.peer();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..N {
        let (peer, who) = if i % 2 == 0 {
            (device.clone(), "client")
        } else {
            (to_server.clone(), "server")
        };
        calls.spawn(async move {
            let body = format!("{who} {i} ").repeat(i % 50 + 1);
            let response = peer
                .request(
                    Request::post("/echo")
                        .body(Body::from(body.clone()))
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(text(response).await, body);
        });
    }
    let mut done = 0;
    while let Some(result) = tokio::time::timeout(GUARD, calls.join_next())
        .await
        .unwrap()
    {
        result.unwrap();
        done += 1;
    }
    assert_eq!(done, N);
    client.close().await;
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// A body of `remaining` bytes made of one repeated 64 KiB chunk: nothing is allocated
/// per chunk, so the test measures what Tether buffers, not what the producer holds.
struct Repeat {
    chunk: Bytes,
    remaining: u64,
    produced: Arc<AtomicU64>,
    /// Dropped with the body: its receiver hears that the body can produce no more.
    _dropped: Option<tokio::sync::oneshot::Sender<()>>,
}

impl http_body::Body for Repeat {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(self.chunk.len() as u64) as usize;
        self.remaining -= n as u64;
        self.produced.fetch_add(n as u64, Ordering::Relaxed);
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }
}

/// The size of a [`Repeat`] body's chunks.
const CHUNK: usize = 64 * 1024;

fn repeat(len: u64, produced: Arc<AtomicU64>) -> Repeat {
    Repeat {
        chunk: Bytes::from(vec![0x5a; CHUNK]),
        remaining: len,
        produced,
        _dropped: None,
    }
}

/// Reads a body slowly (a pause every MiB), checking that the producer never runs more
/// than `max_ahead` bytes ahead of the reader. Returns the bytes read.
async fn read_slowly<B>(body: B, produced: &AtomicU64, max_ahead: u64) -> u64
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Debug,
{
    let mut body = body;
    let mut read = 0u64;
    let mut next_pause = 1 << 20;
    let mut worst = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.unwrap();
        if let Some(data) = frame.data_ref() {
            assert!(data.iter().all(|&b| b == 0x5a));
            read += data.len() as u64;
        }
        let ahead = produced.load(Ordering::Relaxed).saturating_sub(read);
        worst = worst.max(ahead);
        assert!(
            ahead <= max_ahead,
            "the writer ran {ahead} bytes ahead of the reader"
        );
        if read >= next_pause {
            next_pause += 1 << 20;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    eprintln!("read {read} bytes; the writer was at most {worst} bytes ahead");
    read
}

/// Peak resident memory of this process (see [`common::in_a_process_of_its_own`]).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// 100 MiB each way, read slowly on the receiving end: the flow-control windows hold the
/// writer back (at most a window, a send buffer and two chunks ahead), and the process never
/// holds more than a few MiB of it. Peak memory is a property of the whole process, so the
/// transfer runs in a process of its own (under `cargo test` as under `cargo nextest`).
#[test]
fn a_100_mib_body_each_way_with_bounded_memory() {
    if common::in_a_process_of_its_own("a_100_mib_body_each_way_with_bounded_memory") {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(move_100_mib_each_way_with_bounded_memory());
    }
}

async fn move_100_mib_each_way_with_bounded_memory() {
    const LEN: u64 = 100 << 20;
    // Fixed windows (CI once saw a grown 512 KiB stream window and 1,114,112 bytes ahead).
    let (connection, max_ahead) = common::fixed_windows(CHUNK);
    let uploaded = Arc::new(AtomicU64::new(0));
    let produced_up = Arc::new(AtomicU64::new(0));
    let server_api = {
        let uploaded = uploaded.clone();
        let produced_up = produced_up.clone();
        Router::new().route(
            "/upload",
            post(move |body: AxumBody| async move {
                let n = read_slowly(body, &produced_up, max_ahead).await;
                uploaded.store(n, Ordering::Relaxed);
                n.to_string()
            }),
        )
    };
    let produced_down = Arc::new(AtomicU64::new(0));
    let client_api = {
        let produced_down = produced_down.clone();
        Router::new().route(
            "/download",
            get(move || async move { AxumBody::new(repeat(LEN, produced_down)) }),
        )
    };
    let (server, client, id) = pair_with(server_api, client_api, "{}", connection).await;
    let baseline = peak_rss();

    // Client → server upload.
    let response = client
        .peer()
        .with_timeout(Some(Duration::from_secs(120)))
        .request(
            Request::post("/upload")
                .body(repeat(LEN, produced_up))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(text(response).await, LEN.to_string());
    assert_eq!(uploaded.load(Ordering::Relaxed), LEN);

    // Server ← client download (the server calls the client).
    let response = server
        .peer(&id)
        .unwrap()
        .with_timeout(Some(Duration::from_secs(120)))
        .request(Request::get("/download").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let read = read_slowly(response.into_body(), &produced_down, max_ahead).await;
    assert_eq!(read, LEN);

    let grown = peak_rss().saturating_sub(baseline);
    eprintln!("peak resident memory grew by {} KiB", grown / 1024);
    assert!(
        grown < 16 << 20,
        "moving 200 MiB grew peak memory by {} MiB",
        grown >> 20
    );
    client.close().await;
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// A handler held until the test lets it answer: `arrived` counts the requests that reached
/// it, `release` lets them answer "done".
#[derive(Clone)]
struct Held {
    arrived: Arc<Semaphore>,
    release: Arc<Semaphore>,
}

impl Held {
    fn new() -> Self {
        Held {
            arrived: Arc::new(Semaphore::new(0)),
            release: Arc::new(Semaphore::new(0)),
        }
    }

    fn route(&self) -> axum::routing::MethodRouter {
        let held = self.clone();
        get(move || async move {
            held.arrived.add_permits(1);
            held.release.acquire().await.unwrap().forget();
            "done"
        })
    }

    /// Waits until `n` requests are in the handler.
    async fn arrivals(&self, n: u32) {
        tokio::time::timeout(GUARD, self.arrived.acquire_many(n))
            .await
            .expect("the requests reach the handler")
            .unwrap()
            .forget();
    }
}

/// Waits until the server's connection has sent or received GOAWAY: a new request of the
/// server's is then not sent (`NotConnected`, once this end sent GOAWAY) or refused
/// (`Refused`, once the peer did), while before it is answered.
async fn wait_for_goaway(device: &Peer) {
    let started = std::time::Instant::now();
    loop {
        match device
            .request(Request::get("/quick").body(Body::empty()).unwrap())
            .await
        {
            Ok(response) => assert_eq!(text(response).await, "quick"),
            Err(
                tether_tokio::rest::RequestError::NotConnected
                | tether_tokio::rest::RequestError::Refused,
            ) => return,
            Err(other) => panic!("{other:?}"),
        }
        assert!(started.elapsed() < GUARD, "no GOAWAY");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A server shutting down sends GOAWAY and lets the requests in flight finish, both the
/// ones it serves and the ones it made, before it closes with 1001.
#[tokio::test]
async fn shutdown_lets_requests_in_flight_finish() {
    let held = Held::new();
    let (server, client, id) = pair(
        Router::new().route("/slow", held.route()),
        Router::new()
            .route("/slow", held.route())
            .route("/quick", get(|| async { "quick" })),
        "{}",
    )
    .await;
    let mut events = client.events();
    let to_server = client.peer();
    let up = tokio::spawn(async move {
        to_server
            .request(Request::get("/slow").body(Body::empty()).unwrap())
            .await
    });
    let device = server.peer(&id).unwrap();
    let probe = device.clone();
    let down = tokio::spawn(async move {
        device
            .request(Request::get("/slow").body(Body::empty()).unwrap())
            .await
    });
    // Both requests are in their handlers, which answer only when released.
    held.arrivals(2).await;
    let stopping = tokio::spawn(server.shutdown(Duration::from_secs(5)));
    // The shutdown has begun (GOAWAY), and waits for the two held requests.
    wait_for_goaway(&probe).await;
    assert!(!stopping.is_finished(), "shutdown did not wait");
    held.release.add_permits(2);
    for call in [up, down] {
        let response = call.await.unwrap().expect("a request in flight completes");
        assert_eq!(text(response).await, "done");
    }
    tokio::time::timeout(GUARD, stopping)
        .await
        .expect("shutdown ends once the requests are done")
        .unwrap()
        .unwrap();
    loop {
        match tokio::time::timeout(GUARD, events.recv()).await.unwrap() {
            Some(ClientEvent::Closed { code, .. }) => {
                assert_eq!(code, tether_proto::CloseCode::GOING_AWAY);
                break;
            }
            Some(_) => continue,
            None => panic!("no Closed event"),
        }
    }
    client.close().await;
}

/// A request that never finishes does not hold a shutdown beyond the drain time: the
/// machine's drain timer closes with 1001 (spec/protocol.md §10.7) and the request fails.
#[tokio::test]
async fn shutdown_closes_when_the_drain_time_is_up() {
    let held = Held::new();
    let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    config.rest.drain_timeout = Duration::from_millis(300);
    let (server, _server_events) = Server::bind(config).await.unwrap();
    server.serve(Router::new().route("/slow", held.route()));
    let url = format!("ws://{}/", server.local_addr());
    let (client, mut events) = Client::connect(&url, ClientConfig::new("{}".to_owned())).unwrap();
    connected(&mut events).await;
    let to_server = client.peer();
    let call = tokio::spawn(async move {
        to_server
            .request(Request::get("/slow").body(Body::empty()).unwrap())
            .await
    });
    held.arrivals(1).await;
    let started = std::time::Instant::now();
    tokio::time::timeout(GUARD, server.shutdown(Duration::from_secs(20)))
        .await
        .expect("the drain time bounds the shutdown")
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "it drained first"
    );
    loop {
        match tokio::time::timeout(GUARD, events.recv()).await.unwrap() {
            Some(ClientEvent::Closed { code, .. }) => {
                assert_eq!(code, tether_proto::CloseCode::GOING_AWAY);
                break;
            }
            Some(_) => continue,
            None => panic!("no Closed event"),
        }
    }
    let result = tokio::time::timeout(GUARD, call).await.unwrap().unwrap();
    assert!(
        result.is_err(),
        "the request in flight ends with the connection"
    );
    client.close().await;
}

/// `Client::close` with a request of the server in flight: it completes, then the client
/// closes with 1000.
#[tokio::test]
async fn client_close_lets_the_servers_request_finish() {
    let held = Held::new();
    let (server, client, id) = pair(
        Router::new(),
        Router::new()
            .route("/slow", held.route())
            .route("/quick", get(|| async { "quick" })),
        "{}",
    )
    .await;
    let mut server_events = server.events();
    let device = server.peer(&id).unwrap();
    let probe = device.clone();
    let call = tokio::spawn(async move {
        device
            .request(Request::get("/slow").body(Body::empty()).unwrap())
            .await
    });
    held.arrivals(1).await;
    let closed = std::sync::atomic::AtomicBool::new(false);
    tokio::join!(
        async {
            client.close().await;
            closed.store(true, Ordering::SeqCst);
        },
        async {
            // The client has begun to close (its GOAWAY reached the server) and waits
            // for the held request.
            wait_for_goaway(&probe).await;
            assert!(!closed.load(Ordering::SeqCst), "the close did not wait");
            held.release.add_permits(1);
        }
    );
    let response = call
        .await
        .unwrap()
        .expect("the request in flight completes");
    assert_eq!(text(response).await, "done");
    match tokio::time::timeout(GUARD, server_events.recv())
        .await
        .unwrap()
    {
        Some(ServerEvent::Closed { code, .. }) => assert_eq!(code, tether_proto::CloseCode::NORMAL),
        other => panic!("expected Closed, got {other:?}"),
    }
    // After the close, the client's requests fail at once, and say so.
    let error = client
        .peer()
        .request(Request::get("/x").body(Body::empty()).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(error, tether_tokio::rest::RequestError::Closed),
        "{error:?}"
    );
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// A handler that answers without reading the request body (413 for a 1 GiB upload): the
/// caller gets the whole response and its upload stops soon after (RESET NO_ERROR once the
/// response is complete), rather than pushing the whole GiB through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unread_upload_stops_once_the_response_is_complete() {
    let server_api = Router::new().route(
        "/upload",
        post(|| async { (StatusCode::PAYLOAD_TOO_LARGE, "too large") }),
    );
    let (server, client, _id) = pair(server_api, Router::new(), "{}").await;
    let produced = Arc::new(AtomicU64::new(0));
    let (dropped, body_gone) = tokio::sync::oneshot::channel();
    let upload = Repeat {
        _dropped: Some(dropped),
        ..repeat(1 << 30, produced.clone())
    };
    let response = client
        .peer()
        .request(Request::post("/upload").body(upload).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(text(response).await, "too large");
    // The upload stops: the request body is dropped (so it cannot produce any more), long
    // before all of it was sent.
    let _ = tokio::time::timeout(GUARD, body_gone)
        .await
        .expect("the unread upload goes on");
    let sent = produced.load(Ordering::Relaxed);
    assert!(sent < 64 << 20, "{sent} bytes uploaded for nothing");
    // The connection is fine for the next request.
    let response = client
        .peer()
        .request(Request::post("/upload").body(Body::from("x")).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    client.close().await;
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// A head larger than the peer accepts fails that one request (before anything is sent)
/// or resets that one response; the connection and every other request carry on.
#[tokio::test]
async fn an_oversized_head_costs_one_request_not_the_connection() {
    let big = "v".repeat(20 * 1024); // over the default MAX_HEAD_SIZE of 16 KiB
    let server_api = {
        let big = big.clone();
        Router::new().route("/small", get(|| async { "ok" })).route(
            "/big",
            get(move || async move { ([("x-big", big)], "never") }),
        )
    };
    let (server, client, _id) = pair(server_api, Router::new(), "{}").await;
    let peer = client.peer();
    let error = peer
        .request(
            Request::get("/small")
                .header("x-big", big.as_str())
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, tether_tokio::rest::RequestError::HeadTooLarge { bytes, .. } if bytes > 20 * 1024),
        "{error:?}"
    );
    let error = peer
        .request(Request::get("/big").body(Body::empty()).unwrap())
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            tether_tokio::rest::RequestError::Reset {
                code: tether_proto::ResetCode::INTERNAL_ERROR,
                ..
            }
        ),
        "{error:?}"
    );
    let response = peer
        .request(Request::get("/small").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(text(response).await, "ok");
    client.close().await;
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// A request body that panics while it is being sent resets the stream at once: the caller
/// hears of it in well under its 30 s timeout, and the connection carries on.
#[tokio::test]
async fn a_request_body_that_panics_resets_the_stream_at_once() {
    struct Panics(bool);
    impl http_body::Body for Panics {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            if self.0 {
                panic!("body panics (expected by the test)");
            }
            self.0 = true;
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"first")))))
        }
    }
    let (server, client, _id) = pair(api("server"), Router::new(), "{}").await;
    let response = client
        .peer()
        .request(
            Request::post("/collect")
                .body(Body::from("before"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(text(response).await, "before");
    let started = std::time::Instant::now();
    let error = client
        .peer()
        .request(Request::post("/collect").body(Panics(false)).unwrap())
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(
            error,
            tether_tokio::rest::RequestError::Reset {
                code: tether_proto::ResetCode::CANCEL,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(!error.is_safe_to_retry());
    let response = client
        .peer()
        .request(Request::post("/collect").body(Body::from("again")).unwrap())
        .await
        .unwrap();
    assert_eq!(text(response).await, "again");
    client.close().await;
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// A service handed to `bind_serving` / `connect_serving` answers the very first request,
/// made the moment the other end hears of the connection: there is no window in which the
/// machine answers `501` because the service was attached after the handshake (the
/// conformance runner met that 501 from `tether client --upstream` on a loaded machine,
/// where `serve` came after `connect`).
#[tokio::test]
async fn services_given_at_the_start_answer_the_first_request() {
    let (server, mut server_events) = Server::bind_serving(
        ServerConfig::new("127.0.0.1:0".parse().unwrap()),
        api("server"),
    )
    .await
    .unwrap();
    let url = format!("ws://{}/", server.local_addr());
    let (client, mut events) =
        Client::connect_serving(&url, ClientConfig::new("null".to_owned()), api("device")).unwrap();
    let id = match tokio::time::timeout(GUARD, server_events.recv()).await {
        Ok(Some(ServerEvent::Received { id, .. })) => id,
        other => panic!("no Received event: {other:?}"),
    };
    // At once, from both ends.
    let device = server.peer(&id).expect("registered");
    let to_device = device.request(Request::get("/items/1").body(Body::empty()).unwrap());
    connected(&mut events).await;
    let to_server = client
        .peer()
        .request(Request::get("/items/2").body(Body::empty()).unwrap());
    let (a, b) = tokio::join!(to_device, to_server);
    assert_eq!(a.unwrap().status(), StatusCode::CREATED);
    assert_eq!(b.unwrap().status(), StatusCode::CREATED);

    // Without a service, the machine's 501 (what the race produced).
    let (bare, mut bare_events) =
        Client::connect(&url, ClientConfig::new("null".to_owned())).unwrap();
    let bare_id = connected(&mut bare_events).await;
    loop {
        match tokio::time::timeout(GUARD, server_events.recv()).await {
            Ok(Some(ServerEvent::Received { id, .. })) if id == bare_id => break,
            Ok(Some(_)) => continue,
            other => panic!("no Received event: {other:?}"),
        }
    }
    let response = server
        .peer(&bare_id)
        .expect("registered")
        .request(Request::get("/items/3").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_IMPLEMENTED);
    bare.close().await;
    client.close().await;
}

/// A service set again on a live connection answers that connection's next request: each
/// connection keeps its own clone of the service and takes the new one when it changes.
#[tokio::test]
async fn a_service_set_again_answers_the_next_request() {
    let (server, client, _id) = pair(api("first"), Router::new(), "{}").await;
    let who = || Request::get("/who").body(Body::empty()).unwrap();
    let response = client.peer().request(who()).await.unwrap();
    assert!(text(response).await.starts_with("first "));
    server.serve(api("second"));
    for _ in 0..3 {
        let response = client.peer().request(who()).await.unwrap();
        assert!(text(response).await.starts_with("second "));
    }
    client.close().await;
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// A service that is not always ready at once, or whose readiness fails, as tower allows:
/// every other `poll_ready` of a clone answers `Pending` (and wakes its task), and a clone
/// whose readiness failed stays failed.
#[derive(Clone)]
struct Moody {
    polls: Arc<AtomicU64>,
    pending: Arc<AtomicU64>,
    /// The next `poll_ready` of any clone fails.
    fail_next: Arc<std::sync::atomic::AtomicBool>,
    /// This clone failed: it fails every `poll_ready` from now on.
    broken: bool,
}

impl Service<Request<Body>> for Moody {
    type Response = http::Response<Body>;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        if self.broken || self.fail_next.swap(false, Ordering::SeqCst) {
            self.broken = true;
            return Poll::Ready(Err(std::io::Error::other("not ready, ever")));
        }
        if self.polls.fetch_add(1, Ordering::SeqCst) % 2 == 0 {
            self.pending.fetch_add(1, Ordering::SeqCst);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        std::future::ready(Ok(http::Response::new(Body::from(
            request.uri().path().to_owned(),
        ))))
    }
}

/// A service that makes its caller wait for readiness is called once ready (a clone of it
/// waits with the request, as `oneshot` does); one whose readiness fails answers that
/// request with 500, and the next request finds the handle's service again, not the failed
/// clone.
#[tokio::test]
async fn services_not_ready_at_once_or_failing_their_readiness_are_handled() {
    let moody = Moody {
        polls: Arc::default(),
        pending: Arc::default(),
        fail_next: Arc::default(),
        broken: false,
    };
    let (server, client, _id) = pair(Router::new(), Router::new(), "{}").await;
    server.serve(moody.clone());
    for n in 0..6 {
        let path = format!("/n/{n}");
        let response = client
            .peer()
            .request(Request::get(&path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(text(response).await, path);
    }
    assert!(moody.pending.load(Ordering::SeqCst) >= 3);

    moody.fail_next.store(true, Ordering::SeqCst);
    let response = client
        .peer()
        .request(Request::get("/failed").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    for n in 0..3 {
        let path = format!("/again/{n}");
        let response = client
            .peer()
            .request(Request::get(&path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert_eq!(text(response).await, path);
    }
    client.close().await;
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}
