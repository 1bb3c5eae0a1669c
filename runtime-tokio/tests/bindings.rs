//! Channel bindings over real sockets: codecs, close handle, limits, ping/pong, origin and
//! method checks, zero-sized buffers.

use std::future::Future;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tether_tokio::compat::bindings::{
    Binding, BindingConfig, BindingError, BindingServer, Codec, Disconnect, Json, Text,
};
use tether_tokio::transport::upgrade::AllowedOrigins;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const GUARD: Duration = Duration::from_secs(10);

/// Starts a server whose handler runs `handler` and then reports how the connection ended.
async fn serve<C, F, Fut>(
    config: BindingConfig,
    handler: F,
) -> (BindingServer, mpsc::UnboundedReceiver<Disconnect>)
where
    C: Codec,
    F: Fn(Binding<C>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let handler = std::sync::Arc::new(handler);
    let server = BindingServer::bind::<C, _, _>(
        "127.0.0.1:0".parse().unwrap(),
        config,
        move |binding: Binding<C>| {
            let tx = tx.clone();
            let handle = binding.handle.clone();
            let work = handler(binding);
            async move {
                work.await;
                let _ = tx.send(handle.closed().await);
            }
        },
    )
    .await
    .unwrap();
    (server, rx)
}

async fn connect(server: &BindingServer) -> Ws {
    connect_async(format!("ws://{}/", server.local_addr()))
        .await
        .unwrap()
        .0
}

async fn recv(ws: &mut Ws) -> Message {
    loop {
        match tokio::time::timeout(GUARD, ws.next())
            .await
            .expect("in time")
        {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(m)) => return m,
            other => panic!("{other:?}"),
        }
    }
}

/// Receives the server's close frame and completes the closing handshake.
async fn close_code(ws: &mut Ws) -> (u16, String) {
    let got = match recv(ws).await {
        Message::Close(Some(f)) => (u16::from(f.code), f.reason.to_string()),
        other => panic!("expected close, got {other:?}"),
    };
    // Reading on sends tungstenite's queued reply; then the stream ends.
    while let Ok(Some(Ok(_))) = tokio::time::timeout(GUARD, ws.next()).await {}
    got
}

async fn outcome(rx: &mut mpsc::UnboundedReceiver<Disconnect>) -> Disconnect {
    tokio::time::timeout(GUARD, rx.recv())
        .await
        .unwrap()
        .unwrap()
}

async fn echo<C: Codec<In = T, Out = T>, T>(mut b: Binding<C>) {
    while let Some(item) = b.receiver.recv().await {
        if b.sender.send(item).await.is_err() {
            break;
        }
    }
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Chat {
    user: String,
    text: String,
}

#[tokio::test]
async fn json_binding_round_trip_and_bad_json_closes_1007() {
    let config = BindingConfig::builder().build().unwrap();
    let (server, mut outcomes) = serve::<Json<Chat>, _, _>(config, echo).await;
    let mut ws = connect(&server).await;
    ws.send(Message::text(r#"{"user":"a","text":"hi"}"#))
        .await
        .unwrap();
    let Message::Text(t) = recv(&mut ws).await else {
        panic!()
    };
    let chat: Chat = serde_json::from_str(&t).unwrap();
    assert_eq!(
        chat,
        Chat {
            user: "a".into(),
            text: "hi".into()
        }
    );
    ws.send(Message::text(r#"{"user":1}"#)).await.unwrap();
    assert_eq!(close_code(&mut ws).await.0, 1007);
    assert!(matches!(
        outcome(&mut outcomes).await,
        Disconnect::Error(BindingError::Decode(_))
    ));
}

#[tokio::test]
async fn text_binding_rejects_binary_with_1003() {
    let config = BindingConfig::builder().build().unwrap();
    let (server, _) = serve::<Text, _, _>(config, echo).await;
    let mut ws = connect(&server).await;
    ws.send(Message::text("plain")).await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::text("plain"));
    ws.send(Message::binary(vec![1u8])).await.unwrap();
    assert_eq!(close_code(&mut ws).await.0, 1003);
}

#[tokio::test]
async fn max_message_size_closes_1009() {
    let config = BindingConfig::builder()
        .max_message_size(100)
        .build()
        .unwrap();
    let (server, mut outcomes) = serve::<Text, _, _>(config, echo).await;
    let mut ws = connect(&server).await;
    ws.send(Message::text("x".repeat(100))).await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::text("x".repeat(100)));
    ws.send(Message::text("x".repeat(101))).await.unwrap();
    assert_eq!(close_code(&mut ws).await.0, 1009);
    assert_eq!(
        outcome(&mut outcomes).await,
        Disconnect::Error(BindingError::TooBig)
    );
}

#[tokio::test]
async fn close_handle_sends_its_code() {
    let config = BindingConfig::builder().build().unwrap();
    let (server, mut outcomes) = serve::<Text, _, _>(config, |mut b: Binding<Text>| async move {
        if let Some(msg) = b.receiver.recv().await {
            b.handle.close(4002, &format!("bye {msg}"));
        }
        // The receiver ends once the connection has ended.
        while b.receiver.recv().await.is_some() {}
    })
    .await;
    let mut ws = connect(&server).await;
    ws.send(Message::text("alice")).await.unwrap();
    assert_eq!(close_code(&mut ws).await, (4002, "bye alice".into()));
    assert!(
        matches!(outcome(&mut outcomes).await, Disconnect::Local(f) if u16::from(f.code) == 4002)
    );
}

#[tokio::test]
async fn dropping_the_whole_binding_closes_1000() {
    let config = BindingConfig::builder().build().unwrap();
    // Not through `serve`, which keeps a clone of the close handle.
    let server = BindingServer::bind::<Text, _, _>(
        "127.0.0.1:0".parse().unwrap(),
        config,
        |b: Binding<Text>| async move { drop(b) },
    )
    .await
    .unwrap();
    let mut ws = connect(&server).await;
    assert_eq!(close_code(&mut ws).await.0, 1000);
}

#[tokio::test]
async fn client_close_is_reported() {
    let config = BindingConfig::builder().build().unwrap();
    let (server, mut outcomes) = serve::<Text, _, _>(config, echo).await;
    let mut ws = connect(&server).await;
    ws.send(Message::text("x")).await.unwrap();
    recv(&mut ws).await;
    ws.close(None).await.unwrap();
    assert_eq!(outcome(&mut outcomes).await, Disconnect::Peer(None));
}

#[tokio::test]
async fn silent_peer_times_out_and_live_peer_does_not() {
    // A pong wait a healthy peer meets on a loaded machine too.
    const PONG_WAIT: Duration = Duration::from_secs(1);
    let config = BindingConfig::builder()
        .pong_wait(PONG_WAIT)
        .ping_period(PONG_WAIT / 4)
        .build()
        .unwrap();
    let (server, mut outcomes) = serve::<Text, _, _>(config, echo).await;

    // A client that never reads never answers: dropped after the pong wait...
    let silent = connect(&server).await;
    // ...while a client that reads (and so answers pings) outlives several pong waits:
    // it reads for three pong waits and at least three pings (counted as they come, so a
    // loaded machine only makes this slower).
    let mut live = connect(&server).await;
    let mut pings = 0;
    let start = tokio::time::Instant::now();
    let until = start + PONG_WAIT * 3;
    loop {
        let now = tokio::time::Instant::now();
        if pings >= 3 && now >= until {
            break;
        }
        assert!(
            now < start + GUARD,
            "server pings every period, got {pings}"
        );
        let wait = if pings >= 3 { until } else { start + GUARD };
        match tokio::time::timeout_at(wait, live.next()).await {
            Ok(Some(Ok(Message::Ping(_)))) => pings += 1,
            Ok(Some(Ok(_))) | Err(_) => {}
            Ok(other) => panic!("the live peer was dropped: {other:?}"),
        }
    }
    assert_eq!(
        outcome(&mut outcomes).await,
        Disconnect::Error(BindingError::PongTimeout(PONG_WAIT))
    );
    live.send(Message::text("still here")).await.unwrap();
    assert_eq!(recv(&mut live).await, Message::text("still here"));
    assert!(outcomes.try_recv().is_err(), "the live peer was dropped");
    drop(silent);
}

#[tokio::test]
async fn zero_buffers_work_as_rendezvous() {
    let config = BindingConfig::builder()
        .send_buffer(0)
        .recv_buffer(0)
        .build()
        .unwrap();
    let (server, _) = serve::<Text, _, _>(config, echo).await;
    let mut ws = connect(&server).await;
    for i in 0..20 {
        ws.send(Message::text(format!("m{i}"))).await.unwrap();
    }
    for i in 0..20 {
        assert_eq!(recv(&mut ws).await, Message::text(format!("m{i}")));
    }
}

#[tokio::test]
async fn origin_check_answers_403() {
    let config = BindingConfig::builder().build().unwrap(); // SameHost
    let (server, _) = serve::<Text, _, _>(config, echo).await;
    let addr = server.local_addr();
    let with_origin = |origin: &str| {
        let mut req = format!("ws://{addr}/").into_client_request().unwrap();
        req.headers_mut().insert("origin", origin.parse().unwrap());
        req
    };
    match connect_async(with_origin("http://evil.example")).await {
        Err(WsError::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("expected 403, got {other:?}"),
    }
    let same = format!("http://{addr}");
    assert!(connect_async(with_origin(&same)).await.is_ok());

    let listed = BindingConfig::builder()
        .allowed_origins(AllowedOrigins::List(vec!["https://app.example".into()]))
        .build()
        .unwrap();
    let (server, _) = serve::<Text, _, _>(listed, echo).await;
    let addr = server.local_addr();
    let mut req = format!("ws://{addr}/").into_client_request().unwrap();
    req.headers_mut()
        .insert("origin", "https://app.example".parse().unwrap());
    assert!(connect_async(req).await.is_ok());
    let mut req = format!("ws://{addr}/").into_client_request().unwrap();
    req.headers_mut()
        .insert("origin", format!("http://{addr}").parse().unwrap());
    assert!(matches!(connect_async(req).await, Err(WsError::Http(r)) if r.status() == 403));
}

#[tokio::test]
async fn only_get_upgrades_405_and_bad_version_426() {
    let config = BindingConfig::builder().build().unwrap();
    let (server, _) = serve::<Text, _, _>(config, echo).await;
    let raw = |request: String| {
        let addr = server.local_addr();
        async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(request.as_bytes()).await.unwrap();
            let mut out = Vec::new();
            tokio::time::timeout(GUARD, s.read_to_end(&mut out))
                .await
                .unwrap()
                .unwrap();
            String::from_utf8_lossy(&out).into_owned()
        }
    };
    let upgrade = "Host: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let post = raw(format!(
        "POST / HTTP/1.1\r\n{upgrade}Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n"
    ))
    .await;
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    assert!(post.to_ascii_lowercase().contains("allow: get"), "{post}");
    let v8 = raw(format!(
        "GET / HTTP/1.1\r\n{upgrade}Sec-WebSocket-Version: 8\r\n\r\n"
    ))
    .await;
    assert!(v8.starts_with("HTTP/1.1 426"), "{v8}");
    let ok = raw(format!(
        "GET / HTTP/1.1\r\n{upgrade}Sec-WebSocket-Version: 13\r\n\r\n"
    ));
    // A valid upgrade switches protocols (the connection then stays open: only read the head).
    let addr = server.local_addr();
    drop(ok);
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET / HTTP/1.1\r\n{upgrade}Sec-WebSocket-Version: 13\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = [0u8; 12];
    tokio::time::timeout(GUARD, s.read_exact(&mut head))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
}

#[tokio::test]
async fn shutdown_closes_bindings_with_1001() {
    let config = BindingConfig::builder().build().unwrap();
    let (server, _) = serve::<Text, _, _>(config, echo).await;
    let mut ws = connect(&server).await;
    ws.send(Message::text("x")).await.unwrap();
    recv(&mut ws).await;
    let client = tokio::spawn(async move { close_code(&mut ws).await });
    server.shutdown(GUARD).await.unwrap();
    assert_eq!(client.await.unwrap(), (1001, "server shutdown".into()));
}

#[tokio::test]
async fn write_timeout_drops_a_client_that_does_not_read() {
    let config = BindingConfig::builder()
        .write_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let (server, mut outcomes) = serve::<Text, _, _>(config, |b: Binding<Text>| async move {
        // Flood until the socket buffers are full and a write times out.
        let chunk = "x".repeat(60 * 1024);
        while b.sender.send(chunk.clone()).await.is_ok() {}
    })
    .await;
    let not_reading = connect(&server).await;
    assert_eq!(
        outcome(&mut outcomes).await,
        Disconnect::Error(BindingError::WriteTimeout(Duration::from_millis(300)))
    );
    drop(not_reading);
}
