//! The echo server over real sockets: echo by type, reassembly of fragments, and the RFC 6455
//! close codes for invalid UTF-8, protocol violations and oversize messages.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tether_tokio::compat::bindings::BindingServer;
use tether_tokio::compat::echo_server;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const GUARD: Duration = Duration::from_secs(10);

async fn start(max: usize) -> (BindingServer, Ws) {
    let config = echo_server::config(max).unwrap();
    let server = echo_server::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    let (ws, _) = connect_async(format!("ws://{}/", server.local_addr()))
        .await
        .unwrap();
    (server, ws)
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

async fn close_code(ws: &mut Ws) -> CloseCode {
    match recv(ws).await {
        Message::Close(Some(frame)) => frame.code,
        other => panic!("expected close, got {other:?}"),
    }
}

#[tokio::test]
async fn echoes_text_as_text_and_binary_as_binary() {
    let (server, mut ws) = start(echo_server::DEFAULT_ECHO_MAX_MESSAGE_SIZE).await;
    ws.send(Message::text("héllo")).await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::text("héllo"));
    ws.send(Message::binary(vec![0u8, 159, 146, 150]))
        .await
        .unwrap();
    assert_eq!(
        recv(&mut ws).await,
        Message::binary(vec![0u8, 159, 146, 150])
    );
    ws.send(Message::text("")).await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::text(""));
    ws.close(None).await.unwrap();
    server.shutdown(GUARD).await.unwrap();
}

#[tokio::test]
async fn reassembles_fragmented_messages() {
    let (_server, mut ws) = start(echo_server::DEFAULT_ECHO_MAX_MESSAGE_SIZE).await;
    let parts = [("frag", false), ("men", false), ("ted", true)];
    for (i, (part, fin)) in parts.iter().enumerate() {
        let opcode = if i == 0 { Data::Text } else { Data::Continue };
        let frame = Frame::message(part.as_bytes().to_vec(), OpCode::Data(opcode), *fin);
        ws.send(Message::Frame(frame)).await.unwrap();
        if i == 0 {
            // A control frame between fragments is allowed (RFC 6455 §5.4).
            ws.send(Message::Ping(b"mid".to_vec().into()))
                .await
                .unwrap();
        }
    }
    assert_eq!(recv(&mut ws).await, Message::text("fragmented"));
    let frame = Frame::message(vec![1u8, 2], OpCode::Data(Data::Binary), false);
    ws.send(Message::Frame(frame)).await.unwrap();
    let frame = Frame::message(vec![3u8], OpCode::Data(Data::Continue), true);
    ws.send(Message::Frame(frame)).await.unwrap();
    assert_eq!(recv(&mut ws).await, Message::binary(vec![1u8, 2, 3]));
}

#[tokio::test]
async fn invalid_utf8_closes_with_1007() {
    let (_server, mut ws) = start(echo_server::DEFAULT_ECHO_MAX_MESSAGE_SIZE).await;
    let frame = Frame::message(vec![b'o', b'k', 0xff, 0xfe], OpCode::Data(Data::Text), true);
    ws.send(Message::Frame(frame)).await.unwrap();
    assert_eq!(close_code(&mut ws).await, CloseCode::Invalid);
}

#[tokio::test]
async fn invalid_utf8_split_across_fragments_closes_with_1007() {
    let (_server, mut ws) = start(echo_server::DEFAULT_ECHO_MAX_MESSAGE_SIZE).await;
    // "é" is C3 A9: a valid start, then a byte that cannot continue it.
    let frame = Frame::message(vec![0xc3], OpCode::Data(Data::Text), false);
    ws.send(Message::Frame(frame)).await.unwrap();
    let frame = Frame::message(vec![0x41], OpCode::Data(Data::Continue), true);
    ws.send(Message::Frame(frame)).await.unwrap();
    assert_eq!(close_code(&mut ws).await, CloseCode::Invalid);
}

#[tokio::test]
async fn continuation_without_start_closes_with_1002() {
    let (_server, mut ws) = start(echo_server::DEFAULT_ECHO_MAX_MESSAGE_SIZE).await;
    let frame = Frame::message(b"orphan".to_vec(), OpCode::Data(Data::Continue), true);
    ws.send(Message::Frame(frame)).await.unwrap();
    assert_eq!(close_code(&mut ws).await, CloseCode::Protocol);
}

#[tokio::test]
async fn reserved_bits_close_with_1002() {
    let (_server, mut ws) = start(echo_server::DEFAULT_ECHO_MAX_MESSAGE_SIZE).await;
    let mut frame = Frame::message(b"x".to_vec(), OpCode::Data(Data::Text), true);
    frame.header_mut().rsv1 = true;
    ws.send(Message::Frame(frame)).await.unwrap();
    assert_eq!(close_code(&mut ws).await, CloseCode::Protocol);
}

#[tokio::test]
async fn oversize_closes_with_1009_and_server_stays_up() {
    let (server, mut ws) = start(1000).await;
    ws.send(Message::binary(vec![7u8; 1001])).await.unwrap();
    assert_eq!(close_code(&mut ws).await, CloseCode::Size);
    let (mut again, _) = connect_async(format!("ws://{}/", server.local_addr()))
        .await
        .unwrap();
    again.send(Message::binary(vec![7u8; 1000])).await.unwrap();
    assert_eq!(recv(&mut again).await, Message::binary(vec![7u8; 1000]));
}
