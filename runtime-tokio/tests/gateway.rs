//! The HTTP tunnel over real sockets: a plain HTTP client (hyper-util's) calls a Tether
//! [`Gateway`] on one end, and an [`Upstream`] on the other end forwards to a real HTTP
//! server (axum). Both directions, streamed bodies of some MiB, hop-by-hop fields, target
//! selection and every error status; then the `tether` binary doing the same.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body as AxumBody;
use axum::extract::{Path, Request as AxumRequest};
use axum::http::HeaderMap;
use axum::routing::{any, get, post};
use axum::Router;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use tether_tokio::client::{Client, ClientConfig, ClientEvent};
use tether_tokio::gateway::{Gateway, Target, Upstream};
#[path = "../src/bin/cmd/relay.rs"]
mod relay;
use relay::Relay;
use tether_tokio::rest::BoxError;
use tether_tokio::server::{Server, ServerConfig};
use tokio::sync::Notify;
use uuid::Uuid;

const GUARD: Duration = Duration::from_secs(30);

type ReqBody = UnsyncBoxBody<Bytes, BoxError>;

/// A plain HTTP/1.1 client, as curl would be.
fn http() -> HttpClient<HttpConnector, ReqBody> {
    HttpClient::builder(TokioExecutor::new()).build_http()
}

fn full(bytes: impl Into<Bytes>) -> ReqBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// What the tests' upstream shares with them.
#[derive(Default)]
struct Shared {
    /// `/gated`: the second chunk goes out after this.
    release: Notify,
    /// `/slow`: a request arrived.
    arrived: Notify,
}

/// `n` bytes of a recognisable pattern.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// A real HTTP server on loopback, mounted under `/app`.
async fn upstream() -> (SocketAddr, Arc<Shared>) {
    let shared = Arc::new(Shared::default());
    let (s1, s2) = (shared.clone(), shared.clone());
    let app = Router::new()
        // What the upstream saw, and a response with its own hop-by-hop field.
        .route(
            "/app/seen",
            any(|request: AxumRequest| async move {
                let h = request.headers();
                let get = |name: &str| {
                    h.get(name)
                        .map_or("-".to_owned(), |v| v.to_str().unwrap().to_owned())
                };
                let seen = serde_json::json!({
                    "method": request.method().as_str(),
                    "uri": request.uri().to_string(),
                    "host": get("host"),
                    "x-hop": get("x-hop"),
                    "x-keep": get("x-keep"),
                    "connection": get("connection"),
                    "keep-alive": get("keep-alive"),
                    "proxy-authorization": get("proxy-authorization"),
                    "tether-connection": get("tether-connection"),
                    "tether-timeout": get("tether-timeout"),
                    "via": get("via"),
                });
                Response::builder()
                    .status(StatusCode::ACCEPTED)
                    .header("connection", "x-resp-hop")
                    .header("x-resp-hop", "secret")
                    .header("x-resp-keep", "kept")
                    .body(AxumBody::from(seen.to_string()))
                    .unwrap()
            }),
        )
        .route(
            "/app/status/{code}",
            get(|Path(code): Path<u16>| async move {
                (
                    StatusCode::from_u16(code).unwrap(),
                    format!("status {code}"),
                )
            }),
        )
        // Echoes the request body as it arrives, with the request's content-type.
        .route(
            "/app/echo",
            post(|headers: HeaderMap, body: AxumBody| async move {
                let mut response = Response::new(AxumBody::new(body));
                if let Some(ct) = headers.get("content-type") {
                    response.headers_mut().insert("content-type", ct.clone());
                }
                *response.status_mut() = StatusCode::CREATED;
                response
            }),
        )
        // `n` bytes of the pattern in 64 KiB chunks, streamed.
        .route(
            "/app/big/{n}",
            get(|Path(n): Path<usize>| async move {
                let data = Bytes::from(pattern(n));
                let chunks = (0..n)
                    .step_by(64 * 1024)
                    .map(move |at| Ok::<_, Infallible>(data.slice(at..n.min(at + 64 * 1024))));
                AxumBody::from_stream(futures_util::stream::iter(chunks))
            }),
        )
        // "first", then (once the test releases it) "second".
        .route(
            "/app/gated",
            get(move || async move {
                let shared = s1.clone();
                let stream = futures_util::stream::unfold(0, move |step| {
                    let shared = shared.clone();
                    async move {
                        match step {
                            0 => Some((Ok::<_, Infallible>(Bytes::from("first")), 1)),
                            1 => {
                                shared.release.notified().await;
                                Some((Ok(Bytes::from("second")), 2))
                            }
                            _ => None,
                        }
                    }
                });
                AxumBody::from_stream(stream)
            }),
        )
        // Answers after 10 s.
        .route(
            "/app/slow",
            get(move || async move {
                s2.arrived.notify_one();
                tokio::time::sleep(Duration::from_secs(10)).await;
                "late"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, shared)
}

async fn connected(client: &Client, server: &Server) -> Uuid {
    let mut events = client.events();
    let id = match client.connection_id() {
        Some(id) => id,
        None => loop {
            match tokio::time::timeout(GUARD, events.recv()).await {
                Ok(Some(ClientEvent::Connected { id, .. })) => break id,
                Ok(Some(_)) => {}
                other => panic!("no Connected event: {other:?}"),
            }
        },
    };
    let started = Instant::now();
    while !server.contains(&id) {
        assert!(started.elapsed() < GUARD, "server never registered {id}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    id
}

async fn server(config: ServerConfig) -> Server {
    Server::bind(config).await.unwrap().0
}

fn server_config() -> ServerConfig {
    ServerConfig::new("127.0.0.1:0".parse().unwrap())
}

fn client_to(addr: SocketAddr) -> Client {
    Client::connect(&format!("ws://{addr}/"), ClientConfig::new("{}"))
        .unwrap()
        .0
}

fn uri(gateway: &Gateway, path: &str) -> http::Uri {
    format!("http://{}{path}", gateway.local_addr())
        .parse()
        .unwrap()
}

async fn send(request: Request<ReqBody>) -> Response<hyper::body::Incoming> {
    tokio::time::timeout(GUARD, http().request(request))
        .await
        .expect("no response in time")
        .expect("HTTP request failed")
}

async fn body_text(response: Response<hyper::body::Incoming>) -> String {
    let bytes = tokio::time::timeout(GUARD, response.into_body().collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

async fn get_text(gateway: &Gateway, path: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
    let mut request = Request::get(uri(gateway, path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = send(request.body(full("")).unwrap()).await;
    let status = response.status();
    (status, body_text(response).await)
}

/// Asserts the gateway's own error format: `text/plain`, one line starting with the code.
async fn assert_error(response: Response<hyper::body::Incoming>, status: u16, needle: &str) {
    let got = response.status();
    let content_type = response.headers().get("content-type").cloned();
    let text = body_text(response).await;
    assert_eq!(got, status, "{text}");
    assert_eq!(content_type.unwrap(), "text/plain; charset=utf-8");
    assert!(text.starts_with(&format!("{status} ")), "{text}");
    assert!(text.contains(needle), "{needle:?} not in {text:?}");
    assert_eq!(text.lines().count(), 1, "{text:?}");
}

async fn error_of(
    gateway: &Gateway,
    path: &str,
    headers: &[(&str, &str)],
) -> Response<hyper::body::Incoming> {
    let mut request = Request::get(uri(gateway, path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(request.body(full("")).unwrap()).await
}

/// Sends `total` bytes of the pattern to `/echo` as a streamed request body and checks
/// that the same bytes come back.
async fn echo_streamed(gateway: &Gateway, total: usize) {
    let data = Bytes::from(pattern(total));
    let chunks: Vec<Result<Frame<Bytes>, BoxError>> = (0..total)
        .step_by(100_000)
        .map(|at| Ok(Frame::data(data.slice(at..total.min(at + 100_000)))))
        .collect();
    let body = StreamBody::new(futures_util::stream::iter(chunks)).boxed_unsync();
    let request = Request::post(uri(gateway, "/echo"))
        .header("content-type", "application/x-pattern")
        .body(body)
        .unwrap();
    let response = send(request).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["content-type"], "application/x-pattern");
    let got = tokio::time::timeout(GUARD, response.into_body().collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    assert_eq!(got.len(), total);
    assert!(got == data, "echoed bytes differ");
}

/// Downloads `/big/n` and checks the bytes, chunk by chunk (never holding them twice).
async fn download(gateway: &Gateway, n: usize) {
    let response = send(
        Request::get(uri(gateway, &format!("/big/{n}")))
            .body(full(""))
            .unwrap(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut at = 0usize;
    while let Some(frame) = tokio::time::timeout(GUARD, body.frame()).await.unwrap() {
        if let Ok(data) = frame.unwrap().into_data() {
            for (i, b) in data.iter().enumerate() {
                assert_eq!(*b, ((at + i) % 251) as u8, "byte {}", at + i);
            }
            at += data.len();
        }
    }
    assert_eq!(at, n);
}

#[tokio::test]
async fn the_servers_gateway_reaches_the_clients_upstream() {
    let (up, shared) = upstream().await;
    let server = server(server_config()).await;
    let gateway = Gateway::bind(
        "127.0.0.1:0".parse().unwrap(),
        Target::Server(server.connections()),
    )
    .await
    .unwrap();
    let client = client_to(server.local_addr());
    client.serve(Upstream::new(&format!("http://{up}/app")).unwrap());
    let id = connected(&client, &server).await;

    // Headers: hop-by-hop ones (and those Connection names) stop at the gateway, the
    // others pass; the upstream gets its own Host, the base path and the query.
    let response = send(
        Request::put(uri(&gateway, "/seen?a=1&b=%20x"))
            .header("connection", "x-hop")
            .header("x-hop", "secret")
            .header("keep-alive", "timeout=5")
            .header("proxy-authorization", "Basic Zm9vOmJhcg==")
            .header("x-keep", "kept")
            .body(full(""))
            .unwrap(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.headers()["tether-connection"], id.to_string());
    assert_eq!(response.headers()["x-resp-keep"], "kept");
    assert!(response.headers().get("x-resp-hop").is_none());
    assert!(response
        .headers()
        .get_all("connection")
        .iter()
        .all(|v| !v.to_str().unwrap().contains("x-resp-hop")));
    let seen: serde_json::Value = serde_json::from_str(&body_text(response).await).unwrap();
    assert_eq!(seen["method"], "PUT");
    assert_eq!(seen["uri"], "/app/seen?a=1&b=%20x");
    assert_eq!(seen["host"], up.to_string());
    assert_eq!(seen["x-hop"], "-");
    assert_eq!(seen["keep-alive"], "-");
    assert_eq!(seen["proxy-authorization"], "-");
    assert_eq!(seen["x-keep"], "kept");
    assert_eq!(seen["tether-connection"], "-");
    assert_eq!(seen["tether-timeout"], "-");
    assert_eq!(seen["via"], "1.1 tether");

    // The header may name the client explicitly.
    let (status, text) = get_text(
        &gateway,
        "/status/418",
        &[("tether-connection", &id.to_string())],
    )
    .await;
    assert_eq!((status.as_u16(), text.as_str()), (418, "status 418"));

    // Bodies stream: 8 MiB up and back, 16 MiB down.
    echo_streamed(&gateway, 8 << 20).await;
    download(&gateway, 16 << 20).await;

    // Nothing is held back: the first chunk arrives while the upstream still waits.
    let response = send(
        Request::get(uri(&gateway, "/gated"))
            .body(full(""))
            .unwrap(),
    )
    .await;
    let mut body = response.into_body();
    let first = tokio::time::timeout(GUARD, body.frame())
        .await
        .expect("first chunk held back");
    assert_eq!(first.unwrap().unwrap().into_data().unwrap(), "first");
    shared.release.notify_one();
    let rest = tokio::time::timeout(GUARD, body.collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    assert_eq!(rest, "second");

    gateway.shutdown(Duration::from_secs(5)).await.unwrap();
    client.close().await;
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// The upstream's own handling, without Tether in between (whose head encoder drops
/// some of these fields too): hop-by-hop fields go both ways, Host is the upstream's.
#[tokio::test]
async fn the_upstream_alone_strips_hop_by_hop_fields_both_ways() {
    let (up, _) = upstream().await;
    let upstream = Upstream::new(&format!("http://{up}/app")).unwrap();
    let request = Request::post("/seen?z")
        .header("host", "device.example")
        .header("connection", "x-hop, keep-alive")
        .header("x-hop", "secret")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers, deflate")
        .header("x-keep", "kept")
        .header("tether-timeout", "1000")
        .body(tether_tokio::rest::Body::from("abc"))
        .unwrap();
    let response = tokio::time::timeout(GUARD, upstream.proxy(request))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.headers()["x-resp-keep"], "kept");
    assert!(response.headers().get("x-resp-hop").is_none());
    assert!(response.headers().get("connection").is_none());
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let seen: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["uri"], "/app/seen?z");
    assert_eq!(seen["host"], up.to_string());
    assert_eq!(seen["x-hop"], "-");
    assert_eq!(seen["keep-alive"], "-");
    assert_eq!(seen["x-keep"], "kept");
    assert_eq!(seen["tether-timeout"], "-");
}

#[tokio::test]
async fn the_clients_gateway_reaches_the_servers_upstream() {
    let (up, _) = upstream().await;
    let server = server(server_config()).await;
    server.serve(Upstream::new(&format!("http://{up}/app/")).unwrap());
    let client = client_to(server.local_addr());
    let id = connected(&client, &server).await;
    let gateway = Gateway::bind("127.0.0.1:0".parse().unwrap(), Target::Peer(client.peer()))
        .await
        .unwrap();

    let response = send(
        Request::get(uri(&gateway, "/seen?q"))
            .header("connection", "x-hop, keep-alive")
            .header("x-hop", "secret")
            .header("x-keep", "kept")
            .body(full(""))
            .unwrap(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.headers()["tether-connection"], id.to_string());
    assert!(response.headers().get("x-resp-hop").is_none());
    let seen: serde_json::Value = serde_json::from_str(&body_text(response).await).unwrap();
    assert_eq!(seen["uri"], "/app/seen?q");
    assert_eq!(seen["host"], up.to_string());
    assert_eq!(seen["x-hop"], "-");
    assert_eq!(seen["x-keep"], "kept");

    let (status, _) = get_text(&gateway, "/status/404", &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    echo_streamed(&gateway, 4 << 20).await;
    download(&gateway, 4 << 20).await;

    gateway.shutdown(Duration::from_secs(5)).await.unwrap();
    client.close().await;
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn choosing_the_client() {
    let (up, _) = upstream().await;
    let server = server(server_config()).await;
    let gateway = Gateway::bind(
        "127.0.0.1:0".parse().unwrap(),
        Target::Server(server.connections()),
    )
    .await
    .unwrap();

    // No client: 503 at once.
    let started = Instant::now();
    assert_error(
        error_of(&gateway, "/seen", &[]).await,
        503,
        "no Tether client is connected",
    )
    .await;
    // At once: not after waiting for a client (RestConfig::connect_wait, 10 s).
    assert!(started.elapsed() < Duration::from_secs(5));

    let upstream = Upstream::new(&format!("http://{up}/app")).unwrap();
    let a = client_to(server.local_addr());
    a.serve(upstream.clone());
    let b = client_to(server.local_addr());
    b.serve(upstream);
    let (ida, idb) = (connected(&a, &server).await, connected(&b, &server).await);

    // Several clients and no header: 400 saying how to choose.
    assert_error(
        error_of(&gateway, "/seen", &[]).await,
        400,
        "Tether-Connection: <id>",
    )
    .await;
    // Malformed id: 400; unknown id: 404.
    assert_error(
        error_of(&gateway, "/seen", &[("tether-connection", "device-7")]).await,
        400,
        "malformed Tether-Connection",
    )
    .await;
    let stranger = Uuid::from_u128(0x1234);
    assert_error(
        error_of(
            &gateway,
            "/seen",
            &[("tether-connection", &stranger.to_string())],
        )
        .await,
        404,
        &stranger.to_string(),
    )
    .await;
    // Each id reaches its client.
    for id in [ida, idb] {
        let response = error_of(
            &gateway,
            "/status/200",
            &[("tether-connection", &id.to_string())],
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["tether-connection"], id.to_string());
    }

    // A head larger than the peer accepts (16 KiB by default) is refused before sending,
    // and the connection carries on.
    let big = "x".repeat(20 * 1024);
    assert_error(
        error_of(
            &gateway,
            "/seen",
            &[("tether-connection", &ida.to_string()), ("x-big", &big)],
        )
        .await,
        431,
        "request head of",
    )
    .await;

    // A client that left is unknown.
    b.close().await;
    let started = Instant::now();
    while server.contains(&idb) {
        assert!(started.elapsed() < GUARD);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_error(
        error_of(
            &gateway,
            "/seen",
            &[("tether-connection", &idb.to_string())],
        )
        .await,
        404,
        &idb.to_string(),
    )
    .await;
    // One client left: no header needed.
    let (status, _) = get_text(&gateway, "/status/204", &[]).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    gateway.shutdown(Duration::from_secs(5)).await.unwrap();
    a.close().await;
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn a_client_lost_mid_request_is_502() {
    let (up, shared) = upstream().await;
    let server = server(server_config()).await;
    let gateway = Gateway::bind(
        "127.0.0.1:0".parse().unwrap(),
        Target::Server(server.connections()),
    )
    .await
    .unwrap();
    let relay = Relay::start(server.local_addr()).await.unwrap();
    let client = client_to(relay.local_addr());
    client.serve(Upstream::new(&format!("http://{up}/app")).unwrap());
    connected(&client, &server).await;

    let request = tokio::spawn(send(
        Request::get(uri(&gateway, "/slow")).body(full("")).unwrap(),
    ));
    tokio::time::timeout(GUARD, shared.arrived.notified())
        .await
        .unwrap();
    relay.cut();
    let response = tokio::time::timeout(Duration::from_secs(5), request)
        .await
        .expect("the loss was not noticed")
        .unwrap();
    assert_error(response, 502, "connection lost").await;

    client.close().await;
    gateway.shutdown(Duration::from_secs(5)).await.unwrap();
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn timeouts_are_504() {
    let (up, _) = upstream().await;
    // The request through the tunnel times out...
    let mut config = server_config();
    config.rest.request_timeout = Some(Duration::from_millis(500));
    let server = server(config).await;
    let gateway = Gateway::bind(
        "127.0.0.1:0".parse().unwrap(),
        Target::Server(server.connections()),
    )
    .await
    .unwrap();
    let client = client_to(server.local_addr());
    client.serve(Upstream::new(&format!("http://{up}/app")).unwrap());
    connected(&client, &server).await;
    let started = Instant::now();
    // (The caller's timer or the callee's copy of the deadline, whichever fires first.)
    assert_error(
        error_of(&gateway, "/slow", &[]).await,
        504,
        "Tether request failed",
    )
    .await;
    // By the 500 ms timeout: well before the upstream's answer (10 s).
    assert!(started.elapsed() < Duration::from_secs(5));

    // ...and so does the upstream, by its own timeout, when it is the shorter.
    client.serve(
        Upstream::new(&format!("http://{up}/app"))
            .unwrap()
            .with_timeout(Some(Duration::from_millis(200))),
    );
    assert_error(
        error_of(&gateway, "/slow", &[]).await,
        504,
        "did not answer within 200ms",
    )
    .await;

    gateway.shutdown(Duration::from_secs(5)).await.unwrap();
    client.close().await;
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn an_unreachable_upstream_is_502_and_a_client_not_connected_503() {
    // A port nobody listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let server = server(server_config()).await;
    let gateway = Gateway::bind(
        "127.0.0.1:0".parse().unwrap(),
        Target::Server(server.connections()),
    )
    .await
    .unwrap();
    let client = client_to(server.local_addr());
    client.serve(Upstream::new(&format!("http://{closed}/")).unwrap());
    connected(&client, &server).await;
    assert_error(error_of(&gateway, "/x", &[]).await, 502, "unreachable").await;

    // A client whose server is gone: its gateway answers 503 after the connect wait.
    let mut config = ClientConfig::new("{}");
    config.rest.connect_wait = Duration::from_millis(300);
    let (lonely, _) = Client::connect(&format!("ws://{closed}/"), config).unwrap();
    let client_gateway = Gateway::bind("127.0.0.1:0".parse().unwrap(), Target::Peer(lonely.peer()))
        .await
        .unwrap();
    assert_error(
        error_of(&client_gateway, "/x", &[]).await,
        503,
        "not connected",
    )
    .await;

    client_gateway
        .shutdown(Duration::from_secs(5))
        .await
        .unwrap();
    lonely.close().await;
    gateway.shutdown(Duration::from_secs(5)).await.unwrap();
    client.close().await;
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn shutdown_lets_a_request_in_flight_finish() {
    let (up, shared) = upstream().await;
    let server = server(server_config()).await;
    let gateway = Gateway::bind(
        "127.0.0.1:0".parse().unwrap(),
        Target::Server(server.connections()),
    )
    .await
    .unwrap();
    let addr = gateway.local_addr();
    let client = client_to(server.local_addr());
    client.serve(Upstream::new(&format!("http://{up}/app")).unwrap());
    connected(&client, &server).await;

    let response = send(
        Request::get(uri(&gateway, "/gated"))
            .body(full(""))
            .unwrap(),
    )
    .await;
    let stopping = tokio::spawn(gateway.shutdown(Duration::from_secs(10)));
    // No new connection is accepted...
    let started = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(started.elapsed() < GUARD, "still accepting");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // ...but the response in flight completes.
    shared.release.notify_one();
    assert_eq!(body_text(response).await, "firstsecond");
    tokio::time::timeout(GUARD, stopping)
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    client.close().await;
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// The next line of a process's output that starts with `prefix`.
#[cfg(unix)]
async fn line_with(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    prefix: &str,
) -> String {
    loop {
        let line = tokio::time::timeout(common::GUARD, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no line starting with {prefix:?}"))
            .unwrap();
        match line {
            Some(line) if line.starts_with(prefix) => return line,
            Some(_) => {}
            None => panic!("output ended before a line starting with {prefix:?}"),
        }
    }
}

/// `tether server --gateway` and `tether client --upstream` as processes.
#[cfg(unix)]
#[tokio::test]
async fn the_cli_tunnels_a_plain_http_request() {
    use std::process::Stdio;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    let (up, _) = upstream().await;
    let mut server = common::tether(
        &[
            "server",
            "--listen",
            "127.0.0.1:0",
            "--gateway",
            "127.0.0.1:0",
        ],
        Stdio::inherit(),
    );
    let mut slines = BufReader::new(server.stdout.take().unwrap()).lines();
    let listening = line_with(&mut slines, "listening ").await;
    let url = listening.trim_start_matches("listening ").to_owned();
    let gateway = line_with(&mut slines, "gateway ").await;
    let gateway_addr = gateway
        .trim_start_matches("gateway http://")
        .trim_end_matches('/')
        .to_owned();

    let upstream_url = format!("http://{up}/app");
    let mut client = common::tether(
        &["client", &url, "--upstream", &upstream_url],
        Stdio::inherit(),
    );
    let mut clines = BufReader::new(client.stdout.take().unwrap()).lines();
    let connected = line_with(&mut clines, "connected ").await;
    let id = connected.trim_start_matches("connected ").to_owned();
    line_with(&mut slines, &format!("received {id}")).await;

    // A plain HTTP/1.0-style exchange, as `curl` or `nc` would do it.
    let mut tcp = tokio::net::TcpStream::connect(&gateway_addr).await.unwrap();
    tcp.write_all(
        format!(
            "GET /status/202?x=1 HTTP/1.1\r\nHost: {gateway_addr}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(common::GUARD, tcp.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 202 Accepted\r\n"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains(&format!("tether-connection: {id}\r\n")),
        "{answer}"
    );
    assert!(answer.ends_with("\r\n\r\nstatus 202"), "{answer}");

    common::sigterm(&client);
    assert!(tokio::time::timeout(common::GUARD, client.wait())
        .await
        .unwrap()
        .unwrap()
        .success());
    // The client is gone: the gateway says so.
    let started = Instant::now();
    loop {
        let response = http()
            .request(
                Request::get(format!("http://{gateway_addr}/status/200"))
                    .body(full(""))
                    .unwrap(),
            )
            .await
            .unwrap();
        if response.status() == 503 {
            break;
        }
        assert!(
            started.elapsed() < common::GUARD,
            "still {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    common::sigterm(&server);
    assert!(tokio::time::timeout(common::GUARD, server.wait())
        .await
        .unwrap()
        .unwrap()
        .success());
}

/// An upstream that answers before it reads the request body (an early 200, a 413) must
/// not make the gateway reset the caller's connection while the caller is still uploading:
/// a client that writes its whole body before reading (as curl does) got "Send failure:
/// Broken pipe" instead of the response. The gateway reads and discards the rest (bounded)
/// so the response arrives.
#[tokio::test]
async fn an_early_answer_reaches_a_caller_still_uploading() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let server = server(server_config()).await;
    // The handler never looks at the body.
    server.serve(Router::new().route("/early", post(|| async { "early" })));
    let client = client_to(server.local_addr());
    connected(&client, &server).await;
    let gateway = Gateway::bind("127.0.0.1:0".parse().unwrap(), Target::Peer(client.peer()))
        .await
        .unwrap();

    const UPLOAD: usize = 8 << 20;
    let mut tcp = tokio::net::TcpStream::connect(gateway.local_addr())
        .await
        .unwrap();
    let head = format!("POST /early HTTP/1.1\r\nhost: gateway\r\ncontent-length: {UPLOAD}\r\n\r\n");
    tokio::time::timeout(GUARD, async {
        tcp.write_all(head.as_bytes()).await.unwrap();
        let chunk = vec![0x61u8; 64 * 1024];
        for sent in (0..UPLOAD).step_by(chunk.len()) {
            tcp.write_all(&chunk)
                .await
                .unwrap_or_else(|e| panic!("upload cut after {sent} bytes: {e}"));
        }
        let mut response = Vec::new();
        let mut buf = [0u8; 4096];
        while !response.ends_with(b"early") {
            match tcp.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => response.extend_from_slice(&buf[..n]),
                Err(e) => panic!("reading the response: {e}"),
            }
        }
        let text = String::from_utf8_lossy(&response);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.ends_with("early"), "{text}");
    })
    .await
    .expect("the exchange did not finish in time");

    gateway.shutdown(Duration::from_secs(5)).await.unwrap();
    client.close().await;
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}
