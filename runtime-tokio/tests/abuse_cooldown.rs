//! The abuse cool-down over real sockets (spec/protocol.md §10.8 "Reconnecting abusers"):
//! after the server closes a connection with 4007 for abuse (here a ping flood, §8.5), a
//! new connection from the same address is answered HTTP 429 with `Retry-After` before the
//! upgrade, and accepted once that time has passed; another address is not affected.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tether_proto::connection::{Config, Connection, Event, WsMessage};
use tether_proto::CloseCode;
use tether_tokio::server::{Server, ServerConfig, ServerEvent};
use tether_tokio::EventStream;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

/// A failure guard only: every wait ends as soon as what it waits for happens.
const GUARD: Duration = Duration::from_secs(10);

async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(GUARD, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A TCP connection to `server` from the loopback address `source`.
async fn dial_from(source: IpAddr, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    within("TCP connect", socket.connect(server)).await.unwrap()
}

/// The WebSocket upgrade from `source`: the socket, or the HTTP error response.
async fn upgrade_from(
    source: IpAddr,
    server: SocketAddr,
) -> Result<WebSocketStream<TcpStream>, tungstenite::Error> {
    let stream = dial_from(source, server).await;
    let mut request = format!("ws://{server}/").into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        tether_proto::SUBPROTOCOL.parse().unwrap(),
    );
    within(
        "upgrade",
        tokio_tungstenite::client_async_with_config(request, stream, None),
    )
    .await
    .map(|(ws, _)| ws)
}

/// Completes the Tether handshake with the reference machine.
async fn handshake(ws: &mut WebSocketStream<TcpStream>) {
    let config = Arc::new(Config::builder().build().unwrap());
    let mut conn = Connection::client(config, Bytes::new(), None, Instant::now()).unwrap();
    loop {
        while let Some(m) = conn.poll_transmit().map(tether_proto::WsMessage::from) {
            if let WsMessage::Binary(b) = m {
                ws.send(Message::Binary(b)).await.unwrap();
            }
        }
        while let Some(e) = conn.poll_event() {
            if matches!(e, Event::Established { .. }) {
                return;
            }
        }
        match within("WELCOME", ws.next()).await {
            Some(Ok(Message::Binary(b))) => {
                conn.handle_message(WsMessage::Binary(b), Instant::now())
            }
            other => panic!("handshake: {other:?}"),
        }
    }
}

/// Connects from `source`, completes the handshake and floods WebSocket Pings until the
/// server closes the connection (§8.5: more than 1,000 per 10 s is 4007).
async fn ping_flood_from(source: IpAddr, server: SocketAddr) {
    let mut ws = upgrade_from(source, server)
        .await
        .expect("first connection");
    handshake(&mut ws).await;
    let (mut sink, mut stream) = ws.split();
    let reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            if let Message::Close(frame) = msg {
                return frame.map(|f| u16::from(f.code));
            }
        }
        None
    });
    for _ in 0..5_000 {
        if sink.send(Message::Ping(Bytes::new())).await.is_err() {
            break;
        }
        if reader.is_finished() {
            break;
        }
    }
    let _ = sink.close().await;
    let _ = within("the server's close", reader).await;
}

/// Waits for the server's report that it failed a connection with 4007.
async fn abuse_failure(events: &mut EventStream<ServerEvent>) {
    within("the 4007 failure", async {
        loop {
            match events.recv().await {
                Some(ServerEvent::Failure { error, .. }) => {
                    assert_eq!(error.close_code(), Some(CloseCode::ENHANCE_YOUR_CALM));
                    return;
                }
                Some(_) => {}
                None => panic!("event stream ended"),
            }
        }
    })
    .await
}

const HOST_A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
const HOST_B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

#[tokio::test]
async fn an_address_closed_for_abuse_is_refused_with_429_until_its_cooldown_ends() {
    let (server, mut events) = Server::bind(ServerConfig::new("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let addr = server.local_addr();
    ping_flood_from(HOST_A, addr).await;
    abuse_failure(&mut events).await;

    // At once from the same address: 429 with Retry-After, before any upgrade.
    let retry_after = match upgrade_from(HOST_A, addr).await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), http::StatusCode::TOO_MANY_REQUESTS);
            let value = response
                .headers()
                .get(http::header::RETRY_AFTER)
                .expect("Retry-After")
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap();
            // The first cool-down is 1 s (rounded up to whole seconds).
            assert_eq!(value, 1);
            Duration::from_secs(value)
        }
        Ok(_) => panic!("the abuser's address was accepted at once"),
        Err(e) => panic!("unexpected upgrade error: {e}"),
    };

    // Another address is not affected.
    let mut other = upgrade_from(HOST_B, addr)
        .await
        .expect("another address is accepted");
    handshake(&mut other).await;

    // After the announced time, the address is accepted again.
    tokio::time::sleep(retry_after).await;
    let mut again = upgrade_from(HOST_A, addr)
        .await
        .expect("accepted after the cool-down");
    handshake(&mut again).await;
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn the_cooldown_can_be_turned_off() {
    let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    config.abuse_cooldown = None;
    let (server, mut events) = Server::bind(config).await.unwrap();
    let addr = server.local_addr();
    ping_flood_from(HOST_A, addr).await;
    abuse_failure(&mut events).await;
    let mut ws = upgrade_from(HOST_A, addr)
        .await
        .expect("accepted at once without a cool-down");
    handshake(&mut ws).await;
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// spec/protocol.md §10.8 [10.8-5]: a Tether client refused with 429 reports it, and does
/// not dial again before the server's `Retry-After`, although its own backoff would.
#[tokio::test]
async fn a_client_refused_with_429_waits_for_retry_after() {
    use tether_proto::backoff::{BackoffConfig, Jitter};
    use tether_tokio::client::{Client, ClientConfig, ClientError, ClientEvent};

    let (server, mut events) = Server::bind(ServerConfig::new("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let addr = server.local_addr();
    ping_flood_from(HOST_A, addr).await;
    abuse_failure(&mut events).await;

    let mut config = ClientConfig::new("");
    // Its own backoff alone would dial again after 10 ms.
    config.backoff = BackoffConfig {
        initial: Duration::from_millis(10),
        max_delay: Duration::from_millis(10),
        jitter: Jitter::None,
        ..BackoffConfig::default()
    };
    let (client, mut cev) = Client::connect(&format!("ws://{addr}/"), config).unwrap();
    let refused = within("the 429", cev.recv()).await;
    let Some(ClientEvent::Failure {
        id: None,
        error: ClientError::TooManyRequests { retry_after },
    }) = refused
    else {
        panic!("{refused:?}")
    };
    assert_eq!(retry_after, Some(Duration::from_secs(1)));
    let next = within("the reconnect delay", cev.recv()).await;
    let Some(ClientEvent::Reconnecting { delay, .. }) = next else {
        panic!("{next:?}")
    };
    assert!(delay >= Duration::from_secs(1), "{delay:?}");
    // And then it gets in.
    let connected = within("the connection", async {
        loop {
            match cev.recv().await {
                Some(ClientEvent::Connected { .. }) => return true,
                Some(_) => {}
                None => return false,
            }
        }
    })
    .await;
    assert!(connected);
    client.close().await;
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}
