//! The HTTP tunnel with a *plain* upstream and a *plain* caller, the way users first run
//! it (`python3 -m http.server` behind `--upstream`, curl in front of `--gateway`):
//! neither end is hyper. The upstream answers HTTP/1.0 with one `write_all` of the whole
//! body, so the tunnel's sender is handed the body as fast as the socket gives it; the
//! caller is a raw TCP socket reading to EOF.
//!
//! Regression for issue 9 item 1: a sender stopped while it still had credit. A write
//! burst made a stream writable again, but the run loop waited for the next input before
//! handing its sender that news, so bodies over ~2 MB stalled until the next heartbeat
//! (10 s a step). The heartbeat is switched off here, so a lost wake-up hangs for good and
//! the guard below fails the test instead of letting the heartbeat hide it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tether_proto::connection::Config;
use tether_tokio::client::{Client, ClientConfig, ClientEvent};
use tether_tokio::gateway::{Gateway, Target, Upstream};
use tether_tokio::server::{Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Far above what a healthy transfer needs (well under a second), far below "never".
const GUARD: Duration = Duration::from_secs(60);

/// `n` bytes of a recognisable pattern (period 251, so a shifted or lost chunk shows).
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// No heartbeat: nothing but the data path itself may move a body along.
fn quiet() -> Arc<Config> {
    Arc::new(Config::builder().heartbeat_disabled().build().unwrap())
}

/// Reads a request head (up to the blank line) and returns it with whatever body bytes
/// came along with it.
async fn read_head(sock: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = sock.read(&mut chunk).await.unwrap();
        assert!(n > 0, "EOF inside a request head");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(buf[..at].to_vec()).unwrap();
            return (head, buf[at + 4..].to_vec());
        }
    }
}

fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .unwrap_or(0)
}

/// An HTTP/1.0 server in the manner of `python3 -m http.server`: one request per
/// connection; `GET /file` answers `size` bytes of the pattern in one `write_all`,
/// `POST /echo` reads the whole body and writes it back; then it closes.
async fn plain_upstream(size: usize) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let file = Arc::new(pattern(size));
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let file = file.clone();
            tokio::spawn(async move {
                let (head, mut body) = read_head(&mut sock).await;
                let reply: &[u8] = if head.starts_with("POST ") {
                    let want = content_length(&head);
                    while body.len() < want {
                        let mut chunk = vec![0u8; 64 * 1024];
                        let n = sock.read(&mut chunk).await.unwrap();
                        assert!(n > 0, "EOF inside a request body");
                        body.extend_from_slice(&chunk[..n]);
                    }
                    &body
                } else {
                    &file
                };
                let head = format!(
                    "HTTP/1.0 200 OK\r\nServer: plain\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                    reply.len()
                );
                sock.write_all(head.as_bytes()).await.unwrap();
                sock.write_all(reply).await.unwrap();
                let _ = sock.shutdown().await;
            });
        }
    });
    addr
}

/// A raw HTTP/1.1 request with `Connection: close`, as curl sends it; returns the status
/// line and the body (read to EOF).
async fn raw_request(
    gateway: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> (String, Vec<u8>) {
    let mut sock = TcpStream::connect(gateway).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {gateway}\r\nUser-Agent: raw\r\nAccept: */*\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let write = async {
        sock.write_all(head.as_bytes()).await.unwrap();
        sock.write_all(body).await.unwrap();
    };
    tokio::time::timeout(GUARD, write)
        .await
        .expect("request not taken in time");
    let mut response = Vec::new();
    tokio::time::timeout(GUARD, sock.read_to_end(&mut response))
        .await
        .expect("the body stalled")
        .unwrap();
    let at = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8(response[..at].to_vec()).unwrap();
    let status = head.lines().next().unwrap().to_owned();
    let body = response.split_off(at + 4);
    if let Some(len) = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().unwrap())
    }) {
        assert_eq!(body.len(), len, "body shorter than its content-length");
    }
    (status, body)
}

/// A server and a client with the heartbeat off, connected.
async fn pair() -> (Server, Client) {
    let mut server_config = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    server_config.connection = quiet();
    let (server, _events) = Server::bind(server_config).await.unwrap();
    let mut client_config = ClientConfig::new("{}");
    client_config.connection = quiet();
    let url = format!("ws://{}/", server.local_addr());
    let (client, mut events) = Client::connect(&url, client_config).unwrap();
    loop {
        match tokio::time::timeout(GUARD, events.recv()).await {
            Ok(Some(ClientEvent::Connected { .. })) => break,
            Ok(Some(_)) => {}
            other => panic!("no Connected event: {other:?}"),
        }
    }
    (server, client)
}

const SIZE: usize = 24 << 20;

#[tokio::test]
async fn a_large_file_through_the_servers_gateway_from_a_plain_upstream() {
    let up = plain_upstream(SIZE).await;
    let (server, client) = pair().await;
    client.serve(Upstream::new(&format!("http://{up}")).unwrap());
    let gateway = Gateway::bind(
        "127.0.0.1:0".parse().unwrap(),
        Target::Server(server.connections()),
    )
    .await
    .unwrap();

    let (status, body) = raw_request(gateway.local_addr(), "GET", "/file", b"").await;
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(body.len(), SIZE);
    assert!(body == pattern(SIZE), "downloaded bytes differ");

    let upload = pattern(SIZE);
    let (status, echoed) = raw_request(gateway.local_addr(), "POST", "/echo", &upload).await;
    assert!(status.contains(" 200 "), "{status}");
    assert!(echoed == upload, "echoed bytes differ");
}

#[tokio::test]
async fn a_large_file_through_the_clients_gateway_from_a_plain_upstream() {
    let up = plain_upstream(SIZE).await;
    let (server, client) = pair().await;
    server.serve(Upstream::new(&format!("http://{up}")).unwrap());
    let gateway = Gateway::bind("127.0.0.1:0".parse().unwrap(), Target::Peer(client.peer()))
        .await
        .unwrap();

    let (status, body) = raw_request(gateway.local_addr(), "GET", "/file", b"").await;
    assert!(status.contains(" 200 "), "{status}");
    assert!(body == pattern(SIZE), "downloaded bytes differ");

    let upload = pattern(SIZE);
    let (status, echoed) = raw_request(gateway.local_addr(), "POST", "/echo", &upload).await;
    assert!(status.contains(" 200 "), "{status}");
    assert!(echoed == upload, "echoed bytes differ");
}
