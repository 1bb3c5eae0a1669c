//! Receive windows grow over a long path (spec/protocol.md §10.3.1), end to end over real
//! sockets: a client reaches the server through a relay that holds every byte 25 ms each
//! way, and posts a 16 MiB body. With fixed windows (256 KiB per stream) that takes at
//! least 64 round trips, 3.2 s, whatever the machine; with the default, growing windows
//! the window doubles about every round trip and the body takes a fraction of that.
//! The server's metrics show the growth taken from its receive budget while the
//! connection lasts, and none once it has ended.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use tether_proto::connection::Config;
use tether_proto::streams::StreamsConfig;
use tether_tokio::client::{Client, ClientConfig, ClientEvent};
use tether_tokio::rest::Body;
use tether_tokio::server::{Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ONE_WAY: Duration = Duration::from_millis(25);
const BODY: usize = 16 * 1024 * 1024;
/// A failure guard only.
const GUARD: Duration = Duration::from_secs(60);

/// Relays one connection at a time to `target`, each chunk written `ONE_WAY` after it was
/// read (the relay itself buffers without bound: it is the path, not a peer under test).
async fn delay_relay(target: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let outbound = TcpStream::connect(target).await.unwrap();
            let (ir, iw) = inbound.into_split();
            let (or, ow) = outbound.into_split();
            tokio::spawn(one_way(ir, ow));
            tokio::spawn(one_way(or, iw));
        }
    });
    addr
}

async fn one_way(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    tokio::spawn(async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    loop {
        let mut buf = vec![0; 64 * 1024];
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                buf.truncate(n);
                if tx
                    .send((tokio::time::Instant::now() + ONE_WAY, buf))
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

fn config(streams: StreamsConfig) -> Arc<Config> {
    Arc::new(Config::builder().streams(streams).build().unwrap())
}

/// The value of `tether_budget_used_bytes{budget="receive"}` in `metrics`.
fn receive_budget_used(metrics: &tether_tokio::metrics::Metrics) -> i64 {
    let text = metrics.encode();
    let line = text
        .lines()
        .find(|l| l.starts_with("tether_budget_used_bytes{budget=\"receive\"}"))
        .unwrap_or_else(|| panic!("no receive budget gauge in:\n{text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// What one post through the long path showed.
struct Post {
    /// The time the body took.
    took: Duration,
    /// The server's receive budget in use after the body, with the connection still open.
    budget_held: i64,
}

/// Posts the body through the long path with `streams` on both ends.
async fn post_through_long_path(streams: StreamsConfig) -> Post {
    let mut server_config = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    server_config.connection = config(streams.clone());
    let (server, _events) = Server::bind(server_config).await.unwrap();
    server.serve(
        Router::new()
            .route(
                "/sink",
                post(|body: Bytes| async move { body.len().to_string() }),
            )
            .layer(axum::extract::DefaultBodyLimit::disable()),
    );
    let relay = delay_relay(server.local_addr()).await;
    let mut client_config = ClientConfig::new("{}");
    client_config.connection = config(streams);
    let (client, mut events) = Client::connect(&format!("ws://{relay}/"), client_config).unwrap();
    loop {
        match tokio::time::timeout(GUARD, events.recv()).await.unwrap() {
            Some(ClientEvent::Connected { .. }) => break,
            Some(_) => {}
            None => panic!("the client ended before it connected"),
        }
    }
    let body = Bytes::from(vec![b'x'; BODY]);
    let start = Instant::now();
    let request = http::Request::post("/sink").body(Body::from(body)).unwrap();
    let response = tokio::time::timeout(GUARD, client.peer().request(request))
        .await
        .unwrap()
        .unwrap();
    let got = response.into_body().collect_limited(64).await.unwrap();
    let took = start.elapsed();
    assert_eq!(got, BODY.to_string());
    let budget_held = receive_budget_used(&server.metrics());
    client.close().await;
    // The connection's end gives its growth back.
    let deadline = Instant::now() + GUARD;
    while receive_budget_used(&server.metrics()) != 0 {
        assert!(Instant::now() < deadline, "the growth was never given back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.shutdown(Duration::from_secs(1)).await.unwrap();
    Post { took, budget_held }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_grow_over_a_long_path() {
    let fixed = post_through_long_path(StreamsConfig {
        max_stream_window: 0,
        max_connection_window: 0,
        ..StreamsConfig::default()
    })
    .await;
    assert_eq!(fixed.budget_held, 0, "fixed windows take no budget");
    let grown = post_through_long_path(StreamsConfig::default()).await;
    let limit = i64::try_from(tether_proto::streams::RecvBudget::default().limit()).unwrap();
    assert!(
        grown.budget_held > 0 && grown.budget_held <= limit,
        "growth held: {}",
        grown.budget_held
    );
    let (fixed, grown) = (fixed.took, grown.took);
    // 16 MiB in 256 KiB windows is 64 round trips of 50 ms at the least.
    assert!(
        fixed >= Duration::from_millis(3200),
        "fixed windows: {fixed:?}"
    );
    assert!(
        grown * 2 < fixed,
        "grown windows {grown:?}, fixed {fixed:?}"
    );
    eprintln!("16 MiB over a 50 ms round trip: fixed windows {fixed:?}, grown {grown:?}");
}
