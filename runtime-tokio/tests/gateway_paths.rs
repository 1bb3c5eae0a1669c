//! `--upstream http://HOST/BASE`: no request through the tunnel reaches the upstream
//! outside its base path (issue 9). The caller speaks raw HTTP to the server's gateway (so
//! nothing on the way normalises the path for us) and the upstream is a raw TCP server
//! that answers with the request target it received.

use std::net::SocketAddr;
use std::time::Duration;

use tether_tokio::client::{Client, ClientConfig, ClientEvent};
use tether_tokio::gateway::{Gateway, Target, Upstream};
use tether_tokio::server::{Server, ServerConfig, ServerEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const GUARD: Duration = Duration::from_secs(30);

/// An HTTP upstream that answers every request with 200 and the request target it saw.
async fn recording_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let head = read_head(&mut tcp).await;
                let target = head.split(' ').nth(1).unwrap_or("").to_owned();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{target}",
                    target.len()
                );
                let _ = tcp.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

async fn read_head(tcp: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        match tcp.read_u8().await {
            Ok(b) => head.push(b),
            Err(_) => break,
        }
        assert!(head.len() < 64 * 1024);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// `GET {target}` to the gateway, raw; returns the status code and the body.
async fn get_raw(gateway: SocketAddr, target: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(gateway).await.unwrap();
    let request = format!("GET {target} HTTP/1.1\r\nhost: gw\r\nconnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(GUARD, tcp.read_to_end(&mut answer))
        .await
        .expect("answer in time")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

#[tokio::test]
async fn dot_segments_do_not_leave_the_upstreams_base_path() {
    let up = recording_upstream().await;
    let (server, mut server_events) =
        Server::bind(ServerConfig::new("127.0.0.1:0".parse().unwrap()))
            .await
            .unwrap();
    let gateway = Gateway::bind(
        "127.0.0.1:0".parse().unwrap(),
        Target::Server(server.connections()),
    )
    .await
    .unwrap();
    let (client, mut events) = Client::connect(
        &format!("ws://{}/", server.local_addr()),
        ClientConfig::new(""),
    )
    .unwrap();
    client.serve(Upstream::new(&format!("http://{up}/api")).unwrap());
    loop {
        match tokio::time::timeout(GUARD, events.recv()).await.unwrap() {
            Some(ClientEvent::Connected { .. }) => break,
            Some(_) => {}
            None => panic!("client ended"),
        }
    }
    loop {
        match tokio::time::timeout(GUARD, server_events.recv())
            .await
            .unwrap()
        {
            Some(ServerEvent::Received { .. }) => break,
            Some(_) => {}
            None => panic!("server ended"),
        }
    }
    let gw = gateway.local_addr();

    for (target, seen) in [
        ("/ok", "/api/ok"),
        ("/../secret", "/api/secret"),
        ("/%2e%2e/secret", "/api/secret"),
        ("/%2E%2E/%2e%2E/secret?q=1", "/api/secret?q=1"),
        ("/a/../../secret", "/api/secret"),
        ("/a/./b/../c", "/api/a/c"),
    ] {
        assert_eq!(
            get_raw(gw, target).await,
            (200, seen.to_owned()),
            "{target}"
        );
    }
    for hidden in ["/..%2fsecret", "/%2e%2e%5csecret"] {
        let (status, body) = get_raw(gw, hidden).await;
        assert_eq!(status, 400, "{hidden}: {body}");
        assert!(body.contains("dot segment"), "{hidden}: {body}");
    }
}
