//! The gateway's connections to its upstream over real sockets (issue 9 item 5): kept alive
//! and reused, and bounded however many requests arrive at once. A raw HTTP/1.1 upstream
//! counts the TCP connections it accepts; requests come through a server's `Gateway`, the
//! Tether connection and the client's `Upstream`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use tether_tokio::client::{Client, ClientConfig};
use tether_tokio::gateway::{Gateway, Target, Upstream};
use tether_tokio::server::{Server, ServerConfig, ServerEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};

/// A failure guard only: every wait ends as soon as its event arrives.
const GUARD: Duration = Duration::from_secs(30);

/// What the upstream tells the test.
#[derive(Default)]
struct Seen {
    /// TCP connections accepted.
    connections: AtomicUsize,
    /// Request heads read.
    requests: AtomicUsize,
    /// Signalled at each request head.
    arrived: Notify,
}

/// A keep-alive HTTP/1.1 upstream: answers `ok` to each request once `gate` gives a permit.
async fn upstream(gate: Arc<Semaphore>) -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let shared = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            shared.connections.fetch_add(1, Ordering::SeqCst);
            let (gate, seen) = (gate.clone(), shared.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    buf.drain(..end); // GET requests: no body
                    seen.requests.fetch_add(1, Ordering::SeqCst);
                    seen.arrived.notify_one();
                    gate.acquire().await.unwrap().forget();
                    let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if stream.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// A server with a gateway, and a client serving `upstream` through it.
async fn tunnel(upstream: Upstream) -> (Server, Client, Gateway) {
    let (server, mut events) = Server::bind(ServerConfig::new("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let gateway = Gateway::bind(
        "127.0.0.1:0".parse().unwrap(),
        Target::Server(server.connections()),
    )
    .await
    .unwrap();
    let (client, _) = Client::connect(
        &format!("ws://{}/", server.local_addr()),
        ClientConfig::new("{}"),
    )
    .unwrap();
    client.serve(upstream);
    tokio::time::timeout(GUARD, async {
        while !matches!(events.recv().await, Some(ServerEvent::Received { .. })) {}
    })
    .await
    .expect("the client connects");
    (server, client, gateway)
}

async fn get(gateway: &Gateway, n: usize) -> (StatusCode, Bytes) {
    let http = HttpClient::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri = format!("http://{}/item/{n}", gateway.local_addr());
    let call = async {
        let response = http
            .request(Request::get(uri).body(Empty::new()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        (
            status,
            response.into_body().collect().await.unwrap().to_bytes(),
        )
    };
    tokio::time::timeout(GUARD, call)
        .await
        .expect("an answer in time")
}

#[tokio::test]
async fn sequential_requests_share_one_upstream_connection() {
    let (addr, seen) = upstream(Arc::new(Semaphore::new(1_000))).await;
    let (server, client, gateway) =
        tunnel(Upstream::new(&format!("http://{addr}/")).unwrap()).await;
    for n in 0..10 {
        let (status, body) = get(&gateway, n).await;
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok"[..]));
    }
    assert_eq!(seen.requests.load(Ordering::SeqCst), 10);
    assert_eq!(
        seen.connections.load(Ordering::SeqCst),
        1,
        "kept alive and reused"
    );
    client.close().await;
    server.shutdown(GUARD).await.unwrap();
}

#[tokio::test]
async fn concurrent_slow_requests_use_at_most_the_cap_and_all_complete() {
    const CAP: usize = 3;
    const REQUESTS: usize = 16;
    let gate = Arc::new(Semaphore::new(0));
    let (addr, seen) = upstream(gate.clone()).await;
    let upstream = Upstream::new(&format!("http://{addr}/"))
        .unwrap()
        .with_max_connections(CAP);
    let (server, client, gateway) = tunnel(upstream).await;
    let gateway = Arc::new(gateway);
    let calls: Vec<_> = (0..REQUESTS)
        .map(|n| {
            let gateway = gateway.clone();
            tokio::spawn(async move { get(&gateway, n).await })
        })
        .collect();
    // CAP requests reach the upstream, which holds their answers.
    tokio::time::timeout(GUARD, async {
        while seen.requests.load(Ordering::SeqCst) < CAP {
            seen.arrived.notified().await;
        }
    })
    .await
    .expect("CAP requests arrive");
    // Now let every answer go; the waiting requests take the freed connections.
    gate.add_permits(REQUESTS);
    for call in calls {
        let (status, body) = call.await.unwrap();
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok"[..]));
    }
    assert_eq!(seen.requests.load(Ordering::SeqCst), REQUESTS);
    assert_eq!(seen.connections.load(Ordering::SeqCst), CAP);
    client.close().await;
    server.shutdown(GUARD).await.unwrap();
}
