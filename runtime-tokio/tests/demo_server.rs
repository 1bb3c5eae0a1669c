//! The demo server over real sockets (spec/demo.md): every answer of the golden session vectors,
//! heartbeats, limits, close commands, shutdown and 200 concurrent clients.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tether_tokio::compat::demo_server::{DemoServer, DemoServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Failure guard only: every wait below ends as soon as its event happens.
const GUARD: Duration = Duration::from_secs(10);

async fn server(config: DemoServerConfig) -> DemoServer {
    DemoServer::start(DemoServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..config
    })
    .await
    .unwrap()
}

async fn connect(server: &DemoServer, path: &str) -> Ws {
    let url = format!("ws://{}{}", server.local_addr(), path);
    tokio::time::timeout(GUARD, connect_async(url))
        .await
        .expect("connect in time")
        .expect("connect")
        .0
}

/// Next message, which must be text.
async fn recv_text(ws: &mut Ws) -> String {
    loop {
        match tokio::time::timeout(GUARD, ws.next())
            .await
            .expect("message in time")
        {
            Some(Ok(Message::Text(t))) => return t.to_string(),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

async fn recv_json(ws: &mut Ws) -> Value {
    serde_json::from_str(&recv_text(ws).await).unwrap()
}

/// Waits for the server's close frame and returns its code and reason.
async fn recv_close(ws: &mut Ws) -> (CloseCode, String) {
    loop {
        match tokio::time::timeout(GUARD, ws.next())
            .await
            .expect("close in time")
        {
            Some(Ok(Message::Close(Some(frame)))) => return (frame.code, frame.reason.to_string()),
            Some(Ok(Message::Close(None))) => panic!("close without code"),
            Some(Ok(_)) => continue,
            other => panic!("expected close, got {other:?}"),
        }
    }
}

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../spec/vectors/demo/session.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[tokio::test]
async fn golden_echo_and_error_sessions_over_a_socket() {
    let server = server(DemoServerConfig::default()).await;
    let v = vectors();
    for session in v["sessions"].as_array().unwrap() {
        let name = session["name"].as_str().unwrap();
        if name == "subscription" {
            continue; // timing-dependent: covered by heartbeats_and_resubscribe
        }
        let mut ws = connect(&server, "/any/path").await;
        for step in session["steps"].as_array().unwrap() {
            if let Some(text) = step.get("send").and_then(Value::as_str) {
                ws.send(Message::text(text)).await.unwrap();
            } else if let Some(hex) = step.get("send_hex").and_then(Value::as_str) {
                // Invalid UTF-8 can only travel as a binary message; the answer is still text.
                ws.send(Message::binary(hex::decode(hex).unwrap()))
                    .await
                    .unwrap();
            }
            for want in step["expect"].as_array().unwrap() {
                assert_eq!(recv_text(&mut ws).await, want.as_str().unwrap(), "{name}");
            }
        }
    }
    server.shutdown(GUARD).await.unwrap();
}

#[tokio::test]
async fn binary_requests_get_text_answers() {
    let server = server(DemoServerConfig::default()).await;
    let mut ws = connect(&server, "/").await;
    let req = br#"{"type":"echo_request","reqId":"b","echo":"bin"}"#;
    ws.send(Message::binary(req.to_vec())).await.unwrap();
    assert_eq!(
        recv_text(&mut ws).await,
        r#"{"type":"echo_response","reqId":"b","status":"OK","data":{"echo":"bin"}}"#
    );
}

#[tokio::test]
async fn heartbeats_and_resubscribe() {
    let interval = Duration::from_millis(50);
    let server = server(DemoServerConfig {
        heartbeat_interval: interval,
        ..DemoServerConfig::default()
    })
    .await;
    let mut ws = connect(&server, "/").await;
    let sub = r#"{"type":"subscribe_request","reqId":"s","topic":"heartbeat"}"#;
    ws.send(Message::text(sub)).await.unwrap();
    let resp = recv_json(&mut ws).await;
    assert_eq!(resp["status"], "OK");
    for _ in 0..3 {
        let hb = recv_json(&mut ws).await;
        assert_eq!(hb["type"], "heartbeat");
        let ts = hb["timestamp"].as_str().unwrap();
        assert!(humantime::parse_rfc3339(ts).is_ok(), "{ts}");
        assert!(hb["uptime_seconds"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .is_ok());
    }
    ws.send(Message::text(
        r#"{"type":"unsubscribe_request","reqId":"u","topic":"heartbeat"}"#,
    ))
    .await
    .unwrap();
    // Heartbeats already in flight may precede the response.
    let resp = loop {
        let m = recv_json(&mut ws).await;
        if m["type"] != "heartbeat" {
            break m;
        }
    };
    assert_eq!(resp["type"], "unsubscribe_response");
    assert_eq!(resp["status"], "OK");
    // After unsubscribing, nothing but our echo for several intervals: a second subscriber
    // counts the intervals (the server's own clock, however loaded the machine), instead
    // of a fixed sleep.
    let mut witness = connect(&server, "/").await;
    witness.send(Message::text(sub)).await.unwrap();
    assert_eq!(recv_json(&mut witness).await["status"], "OK");
    for _ in 0..4 {
        assert_eq!(recv_json(&mut witness).await["type"], "heartbeat");
    }
    ws.send(Message::text(r#"{"type":"echo_request","echo":"x"}"#))
        .await
        .unwrap();
    assert_eq!(recv_json(&mut ws).await["type"], "echo_response");
    // The Go server never reset its flag; here a new subscribe succeeds.
    ws.send(Message::text(sub)).await.unwrap();
    assert_eq!(recv_json(&mut ws).await["status"], "OK");
    assert_eq!(recv_json(&mut ws).await["type"], "heartbeat");
}

#[tokio::test]
async fn oversize_message_closes_that_connection_with_1009() {
    let server = server(DemoServerConfig {
        max_message_size: 1024,
        ..DemoServerConfig::default()
    })
    .await;
    let mut victim = connect(&server, "/").await;
    let mut bystander = connect(&server, "/").await;
    let big = format!(r#"{{"type":"echo_request","echo":"{}"}}"#, "x".repeat(2000));
    victim.send(Message::text(big)).await.unwrap();
    let (code, _) = recv_close(&mut victim).await;
    assert_eq!(code, CloseCode::Size);
    // The server and the other connection are fine.
    bystander
        .send(Message::text(r#"{"type":"echo_request","echo":"ok"}"#))
        .await
        .unwrap();
    assert_eq!(recv_json(&mut bystander).await["data"]["echo"], "ok");
    let mut late = connect(&server, "/").await;
    late.send(Message::text(r#"{"type":"echo_request","echo":"ok"}"#))
        .await
        .unwrap();
    assert_eq!(recv_json(&mut late).await["status"], "OK");
}

#[tokio::test]
async fn close_client_connections_then_keep_serving() {
    let server = server(DemoServerConfig::default()).await;
    let mut a = connect(&server, "/").await;
    let mut b = connect(&server, "/").await;
    // Make sure both are fully served before the command.
    for ws in [&mut a, &mut b] {
        ws.send(Message::text(r#"{"type":"echo_request","echo":"x"}"#))
            .await
            .unwrap();
        recv_json(ws).await;
    }
    server.close_client_connections(4000, "maintenance");
    for ws in [&mut a, &mut b] {
        let (code, reason) = recv_close(ws).await;
        assert_eq!((u16::from(code), reason.as_str()), (4000, "maintenance"));
    }
    let mut c = connect(&server, "/").await;
    c.send(Message::text(r#"{"type":"echo_request","echo":"after"}"#))
        .await
        .unwrap();
    assert_eq!(recv_json(&mut c).await["data"]["echo"], "after");
}

#[tokio::test]
async fn shutdown_closes_clients_with_1001() {
    let server = server(DemoServerConfig::default()).await;
    let addr = server.local_addr();
    let mut ws = connect(&server, "/").await;
    ws.send(Message::text(r#"{"type":"echo_request","echo":"x"}"#))
        .await
        .unwrap();
    recv_json(&mut ws).await;
    let client = tokio::spawn(async move { recv_close(&mut ws).await });
    server.shutdown(GUARD).await.unwrap();
    let (code, reason) = client.await.unwrap();
    assert_eq!(
        (code, reason.as_str()),
        (CloseCode::Away, "server shutdown")
    );
    assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
}

#[tokio::test]
async fn two_hundred_concurrent_clients() {
    let server = server(DemoServerConfig::default()).await;
    let addr = server.local_addr();
    let clients: Vec<_> = (0..200)
        .map(|i| {
            tokio::spawn(async move {
                let (mut ws, _) = connect_async(format!("ws://{addr}/c{i}")).await.unwrap();
                for j in 0..3 {
                    let id = format!("{i}-{j}");
                    let req = format!(r#"{{"type":"echo_request","reqId":"{id}","echo":"m{i}"}}"#);
                    ws.send(Message::text(req)).await.unwrap();
                    let v = recv_json(&mut ws).await;
                    assert_eq!(v["reqId"], id.as_str());
                    assert_eq!(v["data"]["echo"], format!("m{i}").as_str());
                }
                ws
            })
        })
        .collect();
    let mut open = Vec::new();
    for c in clients {
        open.push(tokio::time::timeout(GUARD * 3, c).await.unwrap().unwrap());
    }
    assert_eq!(server.connection_count(), 200);
    drop(open);
    server.shutdown(GUARD).await.unwrap();
}

async fn raw_http(server: &DemoServer, request: &str) -> String {
    let mut s = TcpStream::connect(server.local_addr()).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(GUARD, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn non_websocket_requests_get_http_errors() {
    let server = server(DemoServerConfig::default()).await;
    let post = raw_http(
        &server,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    let plain = raw_http(&server, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(plain.starts_with("HTTP/1.1 400"), "{plain}");
    let garbage = raw_http(&server, "\x00\x01garbage\r\n\r\n").await;
    assert!(
        garbage.is_empty() || garbage.starts_with("HTTP/1.1 400"),
        "{garbage}"
    );
}
