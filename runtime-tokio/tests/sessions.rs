//! Detached sessions over real sockets (spec/protocol.md §9.1, issue 9 item 8): they expire
//! on time with no other handshake, and a flood of throwaway handshakes beyond the store's
//! bound does not take an earlier client's session.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tether_proto::connection::{Config, Event};
use tether_proto::{CloseCode, Connection, Resume, WsMessage};
#[path = "../src/bin/cmd/relay.rs"]
mod relay;
use relay::Relay;
use tether_tokio::server::{Server, ServerConfig, ServerEvent};
use tether_tokio::EventStream;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use uuid::Uuid;

/// A failure guard only: every wait ends as soon as its event arrives.
const GUARD: Duration = Duration::from_secs(10);

async fn next_server_event(
    events: &mut EventStream<ServerEvent>,
    what: &str,
    mut pick: impl FnMut(&ServerEvent) -> bool,
) -> ServerEvent {
    tokio::time::timeout(GUARD, async {
        loop {
            match events.recv().await {
                Some(event) if pick(&event) => return event,
                Some(_) => {}
                None => panic!("event stream ended while waiting for {what}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// How a hand-driven handshake ended.
#[derive(Debug)]
enum Handshake {
    /// Established: the socket and the client machine (WELCOME's id, ticket, RESUMED).
    Established(Box<WebSocketStream<TcpStream>>, Box<Connection>, bool),
    /// The server closed with this code before WELCOME.
    Refused(u16),
}

/// One client handshake driven by hand over tungstenite, presenting `resume`.
async fn handshake(addr: std::net::SocketAddr, resume: Option<Resume>) -> Handshake {
    let mut request = format!("ws://{addr}/").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "tether.v1".parse().unwrap());
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
    let config = Arc::new(Config::default());
    let mut conn = Connection::client(config, bytes::Bytes::new(), resume, Instant::now()).unwrap();
    let mut resumed = false;
    tokio::time::timeout(GUARD, async {
        loop {
            while let Some(WsMessage::Binary(b)) = conn.poll_transmit() {
                ws.send(Message::Binary(b)).await.unwrap();
            }
            while let Some(event) = conn.poll_event() {
                resumed |= matches!(event, Event::Established { resumed: true, .. });
            }
            if conn.is_established() {
                return Handshake::Established(Box::new(ws), Box::new(conn), resumed);
            }
            match ws.next().await {
                Some(Ok(Message::Binary(b))) => {
                    conn.handle_message(WsMessage::Binary(b), Instant::now())
                }
                Some(Ok(Message::Close(frame))) => {
                    return Handshake::Refused(frame.map_or(1005, |f| u16::from(f.code)));
                }
                Some(Ok(_)) => {}
                other => panic!("handshake: {other:?}"),
            }
        }
    })
    .await
    .expect("handshake in time")
}

async fn established(addr: std::net::SocketAddr, resume: Option<Resume>) -> (Uuid, Resume, bool) {
    match handshake(addr, resume).await {
        Handshake::Established(ws, conn, resumed) => {
            let id = conn.connection_id().unwrap();
            let ticket = conn.resume_ticket().expect("resumable");
            // Keep the socket open while the caller works: leak nothing, just hold it.
            tokio::spawn(async move {
                let mut ws = ws;
                while let Some(Ok(_)) = ws.next().await {}
            });
            (id, ticket, resumed)
        }
        Handshake::Refused(code) => panic!("refused with {code}"),
    }
}

#[tokio::test]
async fn a_detached_session_expires_after_its_window_without_another_handshake() {
    let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    config.resume_window = Duration::from_millis(300);
    let (server, mut events) = Server::bind(config).await.unwrap();
    let relay = Relay::start(server.local_addr()).await.unwrap();
    let (id, _, _) = established(relay.local_addr(), None).await;
    next_server_event(
        &mut events,
        "Received",
        |e| matches!(e, ServerEvent::Received { id: r, .. } if *r == id),
    )
    .await;
    // The session is detached after the cut, so it cannot expire before cut + window.
    let cut = Instant::now();
    relay.cut(); // the transport is lost without a Close frame: the session is detached
    next_server_event(
        &mut events,
        "Failure",
        |e| matches!(e, ServerEvent::Failure { id: r, .. } if *r == id),
    )
    .await;
    // Nothing else connects: only the store's timer can report this.
    next_server_event(
        &mut events,
        "Expired",
        |e| matches!(e, ServerEvent::Expired { id: r } if *r == id),
    )
    .await;
    assert!(
        cut.elapsed() >= Duration::from_millis(300),
        "not before the window ends"
    );
    server.shutdown(GUARD).await.unwrap();
}

#[tokio::test]
async fn a_flood_of_throwaway_handshakes_does_not_take_an_earlier_session() {
    const CAP: usize = 8;
    let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    config.max_detached_sessions = CAP;
    let (server, mut events) = Server::bind(config).await.unwrap();
    let relay = Relay::start(server.local_addr()).await.unwrap();
    let (id, ticket, _) = established(relay.local_addr(), None).await;
    next_server_event(
        &mut events,
        "Received",
        |e| matches!(e, ServerEvent::Received { id: r, .. } if *r == id),
    )
    .await;
    relay.cut();
    next_server_event(
        &mut events,
        "the real client's Failure",
        |e| matches!(e, ServerEvent::Failure { id: r, .. } if *r == id),
    )
    .await;
    // Strangers: handshake, then drop the TCP connection without a Close frame.
    let (mut detached, mut refused) = (0, 0);
    for _ in 0..3 * CAP {
        match handshake(server.local_addr(), None).await {
            Handshake::Established(ws, conn, _) => {
                let stranger = conn.connection_id().unwrap();
                next_server_event(
                    &mut events,
                    "a stranger's Received",
                    |e| matches!(e, ServerEvent::Received { id: r, .. } if *r == stranger),
                )
                .await;
                drop(ws);
                next_server_event(
                    &mut events,
                    "a stranger's Failure",
                    |e| matches!(e, ServerEvent::Failure { id: r, .. } if *r == stranger),
                )
                .await;
                detached += 1;
            }
            Handshake::Refused(code) => {
                assert_eq!(code, CloseCode::ENHANCE_YOUR_CALM.value());
                refused += 1;
            }
        }
    }
    assert_eq!((detached, refused), (CAP - 1, 2 * CAP + 1));
    // The real client comes back: same id, resumed.
    let (back, _, resumed) = established(server.local_addr(), Some(ticket)).await;
    assert_eq!(back, id);
    assert!(resumed);
    next_server_event(
        &mut events,
        "Resumed",
        |e| matches!(e, ServerEvent::Resumed { id: r, .. } if *r == id),
    )
    .await;
    server.shutdown(GUARD).await.unwrap();
}
