//! Raw TCP through the Tether connection (spec/protocol.md §10.9): `TcpGateway` on the
//! server, `TcpUpstream` on the client, and on both outer sides plain blocking sockets of
//! the standard library (threads, no tokio), the way a TCP client and service that know
//! nothing of Tether use the tunnel.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use http_body_util::Empty;
use tether_proto::connection::Config;
use tether_tokio::client::{Client, ClientConfig, ClientEvent};
use tether_tokio::gateway::{Target, TcpGateway, TcpUpstream};
use tether_tokio::server::{Server, ServerConfig};

/// Far above what a healthy test needs, far below "never".
const GUARD: Duration = Duration::from_secs(30);

/// `n` bytes of a recognisable pattern (period 251, so a shifted or lost chunk shows).
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// A server and a client with the heartbeat off (nothing but the data path moves bytes),
/// the client serving `upstream`.
async fn pair(upstream: TcpUpstream) -> (Server, Client) {
    let quiet = Arc::new(Config::builder().heartbeat_disabled().build().unwrap());
    let mut server_config = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    server_config.connection = quiet.clone();
    let (server, _events) = Server::bind(server_config).await.unwrap();
    let mut client_config = ClientConfig::new("{}");
    client_config.connection = quiet;
    let url = format!("ws://{}/", server.local_addr());
    let (client, mut events) = Client::connect_serving(&url, client_config, upstream).unwrap();
    let id = loop {
        match tokio::time::timeout(GUARD, events.recv()).await {
            Ok(Some(ClientEvent::Connected { id, .. })) => break id,
            Ok(Some(_)) => {}
            other => panic!("no Connected event: {other:?}"),
        }
    };
    let started = Instant::now();
    while !server.contains(&id) {
        assert!(started.elapsed() < GUARD, "server never registered {id}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (server, client)
}

/// A blocking TCP service on its own thread that runs `serve` for each connection it
/// accepts; returns its address and the number of connections it accepted so far.
fn service(serve: fn(TcpStream)) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    thread::spawn(move || {
        for socket in listener.incoming() {
            let Ok(socket) = socket else { return };
            count.fetch_add(1, Ordering::SeqCst);
            thread::spawn(move || serve(socket));
        }
    });
    (addr, accepted)
}

/// Echoes every byte until the peer's FIN, then sends its own.
fn echo(mut socket: TcpStream) {
    let mut buf = [0u8; 16384];
    loop {
        match socket.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if socket.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
    let _ = socket.shutdown(Shutdown::Write);
}

/// Runs blocking socket work off the runtime, bounded by the guard.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::time::timeout(GUARD, tokio::task::spawn_blocking(work))
        .await
        .expect("the socket work hung")
        .unwrap()
}

async fn gateway(server: &Server, destination: SocketAddr) -> TcpGateway {
    TcpGateway::bind(
        "127.0.0.1:0".parse().unwrap(),
        &destination.to_string(),
        Target::Server(server.connections()),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn bytes_cross_both_ways_and_each_half_close_arrives() {
    let (echo_addr, _) = service(echo);
    let (server, client) = pair(TcpUpstream::new([echo_addr.to_string().as_str()]).unwrap()).await;
    let gateway = gateway(&server, echo_addr).await;
    let at = gateway.local_addr();

    // 8 MiB up while reading the echo back on another thread; the visitor's FIN must reach
    // the echo service (or it never ends its side) and the echo's FIN the visitor (or
    // `read_to_end` never returns).
    let size = 8 << 20;
    let echoed = blocking(move || {
        let socket = TcpStream::connect(at).unwrap();
        let mut reader = socket.try_clone().unwrap();
        let back = thread::spawn(move || {
            let mut got = Vec::new();
            reader.read_to_end(&mut got).unwrap();
            got
        });
        let mut writer = socket;
        for chunk in pattern(size).chunks(100_000) {
            writer.write_all(chunk).unwrap();
        }
        writer.shutdown(Shutdown::Write).unwrap();
        back.join().unwrap()
    })
    .await;
    assert_eq!(echoed.len(), size);
    assert!(echoed == pattern(size), "the bytes came back changed");

    // Many short tunnels at once, each its own stream.
    let handles: Vec<_> = (0..32u8)
        .map(|i| {
            tokio::task::spawn_blocking(move || {
                let mut socket = TcpStream::connect(at).unwrap();
                let message = vec![i; 1000 + usize::from(i)];
                socket.write_all(&message).unwrap();
                socket.shutdown(Shutdown::Write).unwrap();
                let mut got = Vec::new();
                socket.read_to_end(&mut got).unwrap();
                assert_eq!(got, message, "tunnel {i}");
            })
        })
        .collect();
    for handle in handles {
        tokio::time::timeout(GUARD, handle).await.unwrap().unwrap();
    }
    // Every tunnel ended, in both directions: none is counted any more.
    let started = Instant::now();
    while gateway.tunnel_count() > 0 {
        assert!(
            started.elapsed() < GUARD,
            "{} tunnels left",
            gateway.tunnel_count()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    gateway.shutdown(Duration::from_secs(5)).await.unwrap();
    client.close().await;
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// spec/protocol.md §10.9 [10.9-1]: the responder opens only the destinations it was
/// given; a peer that names another gets 403 and no connection is made.
#[tokio::test]
async fn a_tcp_upstream_refuses_a_destination_it_was_not_given() {
    let (allowed, _) = service(echo);
    let (other, other_accepted) = service(echo);
    let (server, client) = pair(TcpUpstream::new([allowed.to_string().as_str()]).unwrap()).await;
    let peer = server.peer(&server.ids()[0]).unwrap();

    let ask = |destination: String| {
        let peer = peer.clone();
        async move {
            let request = http::Request::connect(destination)
                .body(Empty::<bytes::Bytes>::new())
                .unwrap();
            peer.request(request).await.unwrap()
        }
    };
    assert_eq!(ask(other.to_string()).await.status(), 403);
    // Another name for the same port is another destination too.
    assert_eq!(
        ask(format!("localhost:{}", allowed.port())).await.status(),
        403
    );
    let opened = ask(allowed.to_string()).await;
    assert_eq!(opened.status(), 200);
    // [10.9-2]: no content-length on the 2xx answer to CONNECT.
    assert!(opened.headers().get(http::header::CONTENT_LENGTH).is_none());
    drop(opened);

    // Through a gateway the refusal closes the visitor's connection.
    let gateway = gateway(&server, other).await;
    let at = gateway.local_addr();
    let result = blocking(move || {
        let mut socket = TcpStream::connect(at).unwrap();
        let _ = socket.write_all(b"hello");
        let mut buf = [0u8; 16];
        socket.read(&mut buf)
    })
    .await;
    assert!(matches!(result, Ok(0) | Err(_)), "{result:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        other_accepted.load(Ordering::SeqCst),
        0,
        "a refused destination was opened"
    );

    gateway.shutdown(Duration::from_secs(5)).await.unwrap();
    client.close().await;
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// [10.9-2], [10.9-3]: the gateway's CONNECT carries neither `content-length` nor a
/// deadline (`tether-timeout`), even on a peer whose requests have a timeout.
#[tokio::test]
async fn the_gateways_connect_head_has_no_length_and_no_deadline() {
    let (heads_tx, heads_rx) = mpsc::channel::<http::request::Parts>();
    let heads_tx = Arc::new(std::sync::Mutex::new(heads_tx));
    let quiet = Arc::new(Config::builder().heartbeat_disabled().build().unwrap());
    let mut server_config = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    server_config.connection = quiet.clone();
    server_config.rest.request_timeout = Some(Duration::from_secs(7));
    let (server, _events) = Server::bind(server_config).await.unwrap();
    let mut client_config = ClientConfig::new("{}");
    client_config.connection = quiet;
    let recorder = tower::service_fn(move |request: http::Request<tether_tokio::rest::Body>| {
        let (parts, _body) = request.into_parts();
        heads_tx.lock().unwrap().send(parts).unwrap();
        async {
            Ok::<_, std::convert::Infallible>(
                http::Response::builder()
                    .status(403)
                    .body(tether_tokio::rest::Body::empty())
                    .unwrap(),
            )
        }
    });
    let url = format!("ws://{}/", server.local_addr());
    let (client, mut events) = Client::connect_serving(&url, client_config, recorder).unwrap();
    while !matches!(
        tokio::time::timeout(GUARD, events.recv()).await.unwrap(),
        Some(ClientEvent::Connected { .. })
    ) {}
    let started = Instant::now();
    while server.ids().is_empty() {
        assert!(started.elapsed() < GUARD);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let gateway = TcpGateway::bind(
        "127.0.0.1:0".parse().unwrap(),
        "db.internal:5432",
        Target::Server(server.connections()),
    )
    .await
    .unwrap();
    let at = gateway.local_addr();
    blocking(move || {
        let mut socket = TcpStream::connect(at).unwrap();
        let mut buf = [0u8; 16];
        let _ = socket.read(&mut buf);
    })
    .await;
    let head = heads_rx.recv_timeout(GUARD).unwrap();
    assert_eq!(head.method, http::Method::CONNECT);
    assert_eq!(head.uri.to_string(), "db.internal:5432");
    assert!(
        head.headers.get(http::header::CONTENT_LENGTH).is_none(),
        "{head:?}"
    );
    assert!(head.headers.get("tether-timeout").is_none(), "{head:?}");

    gateway.shutdown(Duration::from_secs(5)).await.unwrap();
    client.close().await;
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// §10.9: a side that fails resets the stream, and the other side is aborted (a TCP
/// reset), not closed as if every byte had arrived.
#[tokio::test]
async fn a_destination_that_resets_aborts_the_visitor() {
    // Reads, answers a little, then closes with SO_LINGER 0: an RST.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dest = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 64];
        let _ = socket.read(&mut buf).await;
        let _ = socket.write_all(b"partial").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        socket.set_zero_linger().unwrap();
    });
    let (server, client) = pair(TcpUpstream::new([dest.to_string().as_str()]).unwrap()).await;
    let gateway = gateway(&server, dest).await;
    let at = gateway.local_addr();
    let (got, end) = blocking(move || {
        let mut socket = TcpStream::connect(at).unwrap();
        socket.write_all(b"hello").unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            match socket.read(&mut buf) {
                Ok(0) => return (got, Ok(())),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => return (got, Err(e.kind())),
            }
        }
    })
    .await;
    assert_eq!(got, b"partial");
    assert_eq!(
        end,
        Err(ErrorKind::ConnectionReset),
        "a reset must not look like a FIN"
    );

    gateway.shutdown(Duration::from_secs(5)).await.unwrap();
    client.close().await;
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// §10.3 through a tunnel: a visitor that does not read stops the destination's writes
/// after a window and the sockets' buffers; the tunnel does not read the rest into memory,
/// and everything arrives once the visitor reads.
#[tokio::test]
async fn a_visitor_that_does_not_read_stops_the_destination() {
    const TOTAL: usize = 96 << 20;
    static WRITTEN: AtomicUsize = AtomicUsize::new(0);
    fn firehose(mut socket: TcpStream) {
        let chunk = vec![7u8; 64 * 1024];
        while socket.write_all(&chunk).is_ok() {
            WRITTEN.fetch_add(chunk.len(), Ordering::SeqCst);
            if WRITTEN.load(Ordering::SeqCst) >= TOTAL {
                return; // and the FIN
            }
        }
    }
    let (dest, _) = service(firehose);
    let (server, client) = pair(TcpUpstream::new([dest.to_string().as_str()]).unwrap()).await;
    let gateway = gateway(&server, dest).await;
    let socket = TcpStream::connect(gateway.local_addr()).unwrap();
    // Let it run until the writes stop moving.
    let mut last = usize::MAX;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = WRITTEN.load(Ordering::SeqCst);
        if now == last {
            break;
        }
        last = now;
    }
    let written = WRITTEN.load(Ordering::SeqCst);
    // Established and stalled, the tunnel is open and counted.
    assert_eq!(gateway.tunnel_count(), 1);
    // The loopback sockets' buffers (a few MiB each way, autotuned) plus one stream
    // window; without credit-driven reads it would be all 96 MiB.
    assert!(
        written < 48 << 20,
        "{} MiB written to a visitor that does not read",
        written >> 20
    );
    // Once the visitor reads, the rest follows (the full sockets' wake-ups resume the
    // stream), every byte, then the FIN.
    let got = blocking(move || {
        let mut socket = socket;
        let mut got = 0usize;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match socket.read(&mut buf).unwrap() {
                0 => return got,
                n => {
                    assert!(buf[..n].iter().all(|&b| b == 7));
                    got += n;
                }
            }
        }
    })
    .await;
    assert_eq!(got, TOTAL);

    gateway.shutdown(Duration::from_secs(5)).await.unwrap();
    client.close().await;
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// Every open destination holds a descriptor: `TcpUpstream` bounds them for all peers
/// together (503 beyond), and a tunnel that ends gives its place back.
#[tokio::test]
async fn a_tcp_upstream_bounds_the_destinations_it_holds_open() {
    let (dest, _) = service(echo);
    let upstream = TcpUpstream::new([dest.to_string().as_str()])
        .unwrap()
        .with_max_open(1);
    let (server, client) = pair(upstream).await;
    let peer = server.peer(&server.ids()[0]).unwrap();
    // A request body that never ends keeps the tunnel's upstream direction open.
    struct Silent;
    impl http_body::Body for Silent {
        type Data = bytes::Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
            std::task::Poll::Pending
        }
    }
    let connect = || {
        http::Request::connect(dest.to_string())
            .body(Silent)
            .unwrap()
    };
    let first = peer.request(connect()).await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(peer.request(connect()).await.unwrap().status(), 503);
    // The first tunnel ends (its answer is dropped: the stream is cancelled)...
    drop(first);
    // ...and its place is free again.
    let started = Instant::now();
    loop {
        let status = peer.request(connect()).await.unwrap().status();
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        assert!(started.elapsed() < GUARD, "the place never came back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    client.close().await;
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}
