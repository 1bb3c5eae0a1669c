//! Issue 9 item 5 as an operator would see it: `tether server --upstream` in a process
//! limited to 128 file descriptors (`ulimit -n 128`), attacked by Tether clients that keep
//! 200 slow requests open toward its upstream. With one upstream connection per stream the
//! process ran out of descriptors: legitimate gateway requests and new Tether connections
//! failed. With the bounded pool (`--upstream-max-connections 16`), a legitimate request
//! through `--gateway` is answered and a new client completes its handshake while the
//! attack runs, and the attack's requests all complete once the upstream answers.
#![cfg(unix)]

mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Empty;
use tether_tokio::client::{Client, ClientConfig, ClientEvent};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::{Notify, Semaphore};

use common::GUARD;

const LIMIT: u32 = 128;
const CAP: usize = 16;
const ATTACKERS: usize = 2;
const SLOW_PER_ATTACKER: usize = 100;

#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    requests: AtomicUsize,
    arrived: Notify,
}

/// A keep-alive HTTP/1.1 upstream answering `ok` to each request once `gate` allows.
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
                    buf.drain(..end);
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

/// `tether ARGS` with its descriptors limited to `limit`.
fn limited_tether(limit: u32, args: &[&str]) -> Child {
    Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_tether"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn sh")
}

async fn line_with(lines: &mut tokio::io::Lines<BufReader<ChildStdout>>, prefix: &str) -> String {
    loop {
        let line = tokio::time::timeout(GUARD, lines.next_line())
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

async fn connect(url: &str) -> Client {
    let (client, mut events) = Client::connect(url, ClientConfig::new("{}")).unwrap();
    tokio::time::timeout(GUARD, async {
        loop {
            match events.recv().await {
                Some(ClientEvent::Connected { .. }) => return,
                Some(_) => {}
                None => panic!("client ended before connecting"),
            }
        }
    })
    .await
    .expect("the handshake completes in time");
    client
}

#[tokio::test]
async fn slow_streams_do_not_exhaust_the_descriptors_of_a_limited_server() {
    let slow_gate = Arc::new(Semaphore::new(0));
    let (slow, seen) = upstream(slow_gate.clone()).await;
    let (fast, _) = upstream(Arc::new(Semaphore::new(1 << 20))).await;

    let slow_url = format!("http://{slow}/");
    let cap = CAP.to_string();
    let mut server = limited_tether(
        LIMIT,
        &[
            "server",
            "--listen",
            "127.0.0.1:0",
            "--gateway",
            "127.0.0.1:0",
            "--upstream",
            &slow_url,
            "--upstream-max-connections",
            &cap,
            "--upstream-timeout",
            "120s",
        ],
    );
    let mut slines = BufReader::new(server.stdout.take().unwrap()).lines();
    let url = line_with(&mut slines, "listening ")
        .await
        .trim_start_matches("listening ")
        .to_owned();
    let gateway = line_with(&mut slines, "gateway ")
        .await
        .trim_start_matches("gateway http://")
        .trim_end_matches('/')
        .to_owned();

    // The device whose web server the gateway reaches.
    let fast_url = format!("http://{fast}/");
    let mut device = common::tether(&["client", &url, "--upstream", &fast_url], Stdio::inherit());
    let mut dlines = BufReader::new(device.stdout.take().unwrap()).lines();
    let device_id = line_with(&mut dlines, "connected ")
        .await
        .trim_start_matches("connected ")
        .to_owned();
    line_with(&mut slines, &format!("received {device_id}")).await;

    // The attack: slow requests toward the server's upstream, more than its descriptors.
    let mut attackers = Vec::new();
    let mut calls = Vec::new();
    for _ in 0..ATTACKERS {
        let client = connect(&url).await;
        for n in 0..SLOW_PER_ATTACKER {
            let peer = client.peer();
            calls.push(tokio::spawn(async move {
                let request = Request::get(format!("/slow/{n}"))
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                let response = peer.request(request).await.expect("answered");
                let status = response.status();
                let body = response.into_body().collect_limited(4096).await.unwrap();
                (status, body)
            }));
        }
        attackers.push(client);
    }
    tokio::time::timeout(GUARD, async {
        while seen.requests.load(Ordering::SeqCst) < CAP {
            seen.arrived.notified().await;
        }
    })
    .await
    .expect("the slow requests reach the upstream");

    // While they wait: a legitimate request through the gateway is answered...
    let mut tcp = tokio::net::TcpStream::connect(&gateway).await.unwrap();
    let head = format!(
        "GET /legit HTTP/1.1\r\nHost: {gateway}\r\nTether-Connection: {device_id}\r\n\
         Connection: close\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(GUARD, tcp.read_to_string(&mut answer))
        .await
        .expect("the gateway answers in time")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok"), "{answer}");
    // ...and a new client completes its handshake.
    let newcomer = connect(&url).await;
    assert!(seen.connections.load(Ordering::SeqCst) <= CAP);

    // The upstream answers: every slow request completes, over at most CAP connections.
    slow_gate.add_permits(1 << 20);
    for call in calls {
        let (status, body) = tokio::time::timeout(GUARD, call).await.unwrap().unwrap();
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok"[..]));
    }
    assert_eq!(
        seen.requests.load(Ordering::SeqCst),
        ATTACKERS * SLOW_PER_ATTACKER
    );
    assert!(seen.connections.load(Ordering::SeqCst) <= CAP);

    newcomer.close().await;
    for client in attackers {
        client.close().await;
    }
    common::sigterm(&device);
    common::sigterm(&server);
    let _ = tokio::time::timeout(GUARD, device.wait()).await;
    let _ = tokio::time::timeout(GUARD, server.wait()).await;
}
