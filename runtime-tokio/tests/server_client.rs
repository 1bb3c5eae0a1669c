//! The Tether server and client over loopback sockets: handshake and events, rejection,
//! half-open detection, reconnect after a restart, resume after a TCP cut, close codes,
//! registry lookups, HTTP-level rejections and wss.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tether_proto::backoff::{BackoffConfig, Jitter};
use tether_proto::connection::{Config, ConnectionError};
use tether_proto::{CloseCode, Initiator};
use tether_tokio::client::{Client, ClientConfig, ClientError, ClientEvent};
#[path = "../src/bin/cmd/relay.rs"]
mod relay;
use relay::Relay;
use tether_tokio::server::{sync_hook, Decision, HelloRequest, Server, ServerConfig, ServerEvent};
use tether_tokio::transport::upgrade::AllowedOrigins;
use tether_tokio::EventStream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A failure guard only: every wait ends as soon as its event arrives.
const GUARD: Duration = Duration::from_secs(10);

fn server_config() -> ServerConfig {
    ServerConfig::new("127.0.0.1:0".parse().unwrap())
}

fn fast_backoff() -> BackoffConfig {
    BackoffConfig {
        initial: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        jitter: Jitter::None,
        ..BackoffConfig::default()
    }
}

fn client_config(metadata: &str) -> ClientConfig {
    let mut config = ClientConfig::new(metadata.to_owned());
    config.backoff = fast_backoff();
    config
}

async fn next<T: Clone + std::fmt::Debug>(
    events: &mut EventStream<T>,
    what: &str,
    mut pick: impl FnMut(&T) -> bool,
) -> T {
    tokio::time::timeout(GUARD, async {
        loop {
            match events.recv().await {
                Some(event) if pick(&event) => return event,
                Some(other) => eprintln!("({what}) skipping {other:?}"),
                None => panic!("event stream ended while waiting for {what}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

async fn connected(events: &mut EventStream<ClientEvent>) -> uuid::Uuid {
    match next(events, "Connected", |e| {
        matches!(e, ClientEvent::Connected { .. })
    })
    .await
    {
        ClientEvent::Connected { id, .. } => id,
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn connect_events_registry_and_close_by_id() {
    let (server, mut sev) = Server::bind(server_config()).await.unwrap();
    let url = format!("ws://{}/any/path", server.local_addr());
    let (client, mut cev) = Client::connect(&url, client_config(r#"{"user":"ada"}"#)).unwrap();
    let id = connected(&mut cev).await;
    let ev = next(&mut sev, "Received", |e| {
        matches!(e, ServerEvent::Received { .. })
    })
    .await;
    let ServerEvent::Received {
        id: sid,
        metadata,
        remote_addr,
    } = ev
    else {
        unreachable!()
    };
    assert_eq!(sid, id);
    assert_eq!(&metadata[..], br#"{"user":"ada"}"#);
    assert_eq!(client.connection_id(), Some(id));

    // Registry.
    assert_eq!(server.ids(), vec![id]);
    assert_eq!(server.connection_count(), 1);
    assert!(server.contains(&id));
    assert_eq!(
        server.metadata(&id).as_deref(),
        Some(&br#"{"user":"ada"}"#[..])
    );
    assert_eq!(server.remote_addr(&id), Some(remote_addr));
    assert_eq!(server.find(|m| m["user"] == "ada"), vec![id]);
    assert!(server.find(|m| m["user"] == "bob").is_empty());
    let unknown = uuid::Uuid::from_u128(7);
    assert_eq!(server.metadata(&unknown), None);
    assert_eq!(server.remote_addr(&unknown), None);
    assert!(!server.close(&unknown, CloseCode::NORMAL, "x"));

    // close(id) delivers the code and reason to the client.
    let code = CloseCode::from_u(4501);
    assert!(server.close(&id, code, "kicked"));
    let ev = next(&mut cev, "Closed", |e| {
        matches!(e, ClientEvent::Closed { .. })
    })
    .await;
    let ClientEvent::Closed {
        id: cid,
        code: got,
        reason,
        ..
    } = ev
    else {
        unreachable!()
    };
    assert_eq!((cid, got, reason.as_str()), (Some(id), code, "kicked"));
    let ev = next(&mut sev, "server Closed", |e| {
        matches!(e, ServerEvent::Closed { .. })
    })
    .await;
    assert!(matches!(ev, ServerEvent::Closed { id: s, code: c, .. } if s == id && c == code));

    // An application code is retryable: the client comes back with a fresh session.
    let again = connected(&mut cev).await;
    assert_ne!(again, id);
    client.close().await;
    let ev = next(&mut sev, "client close", |e| {
        matches!(e, ServerEvent::Closed { .. })
    })
    .await;
    assert!(matches!(ev, ServerEvent::Closed { id: s, code: CloseCode::NORMAL, .. } if s == again));
    assert!(
        tokio::time::timeout(GUARD, async { while cev.recv().await.is_some() {} })
            .await
            .is_ok()
    );
    server.shutdown(GUARD).await.unwrap();
}

#[tokio::test]
async fn rejected_hello_is_fatal_for_the_client() {
    let hook = sync_hook(|req: &HelloRequest| {
        if req.hello.metadata_json()["token"] == "good" {
            Decision::Accept
        } else {
            Decision::reject(CloseCode::REJECTED, "bad token")
        }
    });
    let (server, _sev) = Server::bind_with_hook(server_config(), hook).await.unwrap();
    let url = format!("ws://{}/", server.local_addr());
    let (_client, mut cev) = Client::connect(&url, client_config(r#"{"token":"bad"}"#)).unwrap();
    let ev = next(&mut cev, "Failure", |e| {
        matches!(e, ClientEvent::Failure { .. })
    })
    .await;
    let ClientEvent::Failure { id: None, error } = ev else {
        panic!("{ev:?}")
    };
    assert_eq!(error.close_code(), Some(CloseCode::REJECTED));
    // No retry: the stream ends without a Reconnecting.
    let rest = tokio::time::timeout(GUARD, async {
        let mut rest = Vec::new();
        while let Some(e) = cev.recv().await {
            rest.push(e);
        }
        rest
    })
    .await
    .unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    let (_ok, mut okev) = Client::connect(&url, client_config(r#"{"token":"good"}"#)).unwrap();
    connected(&mut okev).await;
    server.shutdown(GUARD).await.unwrap();
}

/// The hook sees the upgrade request as the client sent it: its target and its headers
/// (the server keeps them only until the HELLO).
#[tokio::test]
async fn the_hook_sees_the_upgrade_requests_target_and_headers() {
    let seen = Arc::new(std::sync::Mutex::new(None));
    let record = seen.clone();
    let hook = sync_hook(move |req: &HelloRequest| {
        let protocol = req.headers.get("sec-websocket-protocol").cloned();
        *record.lock().unwrap() = Some((req.uri.clone(), protocol, req.remote_addr));
        Decision::Accept
    });
    let (server, _sev) = Server::bind_with_hook(server_config(), hook).await.unwrap();
    let url = format!("ws://{}/devices/7?fleet=north", server.local_addr());
    let (_client, mut cev) = Client::connect(&url, client_config("{}")).unwrap();
    connected(&mut cev).await;
    let (uri, protocol, remote) = seen.lock().unwrap().take().expect("the hook ran");
    assert_eq!(uri.path(), "/devices/7");
    assert_eq!(uri.query(), Some("fleet=north"));
    assert_eq!(
        protocol.as_ref().and_then(|p| p.to_str().ok()),
        Some("tether.v1")
    );
    assert!(remote.ip().is_loopback(), "{remote}");
    server.shutdown(GUARD).await.unwrap();
}

#[tokio::test]
async fn a_hook_that_does_not_answer_ends_in_handshake_timeout() {
    let mut config = server_config();
    config.connection = Arc::new(
        Config::builder()
            .handshake_timeout(Duration::from_millis(300))
            .build()
            .unwrap(),
    );
    let hook = |_req: HelloRequest| std::future::pending::<Decision>();
    let (server, mut sev) = Server::bind_with_hook(config, hook).await.unwrap();
    let mut cconfig = client_config("");
    cconfig.reconnect = false;
    let (_client, mut cev) =
        Client::connect(&format!("ws://{}/", server.local_addr()), cconfig).unwrap();
    let ev = next(&mut cev, "Failure", |e| {
        matches!(e, ClientEvent::Failure { .. })
    })
    .await;
    let ClientEvent::Failure { error, .. } = ev else {
        unreachable!()
    };
    assert_eq!(
        error.close_code(),
        Some(CloseCode::HANDSHAKE_TIMEOUT),
        "{error:?}"
    );
    // No id was ever given: the server reports nothing and registers nothing.
    assert!(sev.try_recv().is_none());
    assert_eq!(server.connection_count(), 0);
    server.shutdown(GUARD).await.unwrap();
}

fn heartbeat_config(interval_ms: u64, timeout_ms: u64) -> Arc<Config> {
    Arc::new(
        Config::builder()
            .heartbeat(
                Duration::from_millis(interval_ms),
                Duration::from_millis(timeout_ms),
            )
            .build()
            .unwrap(),
    )
}

#[tokio::test]
async fn half_open_connection_is_detected_by_heartbeat() {
    let mut config = server_config();
    config.connection = heartbeat_config(100, 300);
    let (server, _sev) = Server::bind(config).await.unwrap();
    let relay = Relay::start(server.local_addr()).await.unwrap();
    let mut cconfig = client_config("");
    cconfig.connection = heartbeat_config(100, 300);
    let (client, mut cev) =
        Client::connect(&format!("ws://{}/", relay.local_addr()), cconfig).unwrap();
    let id = connected(&mut cev).await;
    // A few heartbeats prove the healthy path first.
    next(&mut cev, "Rtt", |e| matches!(e, ClientEvent::Rtt { .. })).await;
    relay.stall_downstream(true);
    let stalled = Instant::now();
    let ev = next(&mut cev, "Failure", |e| {
        matches!(e, ClientEvent::Failure { .. })
    })
    .await;
    let elapsed = stalled.elapsed();
    let ClientEvent::Failure { id: fid, error } = ev else {
        unreachable!()
    };
    assert_eq!(fid, Some(id));
    assert!(
        matches!(
            error,
            ClientError::Connection(ConnectionError::HeartbeatTimeout(_))
        ),
        "{error:?}"
    );
    assert_eq!(error.close_code(), Some(CloseCode::HEARTBEAT_TIMEOUT));
    // The configured timer (interval 100 ms + timeout 300 ms), not the default one: well
    // before the default heartbeat interval (10 s), with room for a loaded machine.
    assert!(
        elapsed < Config::DEFAULT_HEARTBEAT_INTERVAL / 2,
        "detected after {elapsed:?}"
    );
    // 4005 is retryable.
    next(&mut cev, "Reconnecting", |e| {
        matches!(e, ClientEvent::Reconnecting { .. })
    })
    .await;
    drop(client);
    relay.cut();
    server.shutdown(GUARD).await.unwrap();
}

#[tokio::test]
async fn server_detects_a_client_that_went_silent() {
    let mut config = server_config();
    config.connection = heartbeat_config(100, 300);
    let (server, mut sev) = Server::bind(config).await.unwrap();
    let relay = Relay::start(server.local_addr()).await.unwrap();
    let mut cconfig = client_config("");
    cconfig.reconnect = false;
    let (client, mut cev) =
        Client::connect(&format!("ws://{}/", relay.local_addr()), cconfig).unwrap();
    let id = connected(&mut cev).await;
    next(&mut sev, "Received", |e| {
        matches!(e, ServerEvent::Received { .. })
    })
    .await;
    relay.stall_upstream(true);
    let stalled = Instant::now();
    let ev = next(&mut sev, "Failure", |e| {
        matches!(e, ServerEvent::Failure { .. })
    })
    .await;
    let elapsed = stalled.elapsed();
    let ServerEvent::Failure { id: fid, error } = ev else {
        unreachable!()
    };
    assert_eq!(fid, id);
    assert!(
        matches!(error, ConnectionError::HeartbeatTimeout(_)),
        "{error:?}"
    );
    // The configured timer, not the default one (see above).
    assert!(
        elapsed < Config::DEFAULT_HEARTBEAT_INTERVAL / 2,
        "detected after {elapsed:?}"
    );
    // The failed session stays resumable, but is no longer a live connection.
    assert!(!server.contains(&id));
    drop(client);
    relay.cut();
    server.shutdown(GUARD).await.unwrap();
}

#[tokio::test]
async fn client_reconnects_after_server_restart_on_the_same_port() {
    let (server, _sev) = Server::bind(server_config()).await.unwrap();
    let addr = server.local_addr();
    let (client, mut cev) = Client::connect(&format!("ws://{addr}/"), client_config("")).unwrap();
    let first = connected(&mut cev).await;
    server.shutdown(GUARD).await.unwrap();
    let ev = next(&mut cev, "Closed", |e| {
        matches!(e, ClientEvent::Closed { .. })
    })
    .await;
    assert!(
        matches!(
            ev,
            ClientEvent::Closed {
                code: CloseCode::GOING_AWAY,
                ..
            }
        ),
        "{ev:?}"
    );
    next(&mut cev, "Reconnecting", |e| {
        matches!(e, ClientEvent::Reconnecting { .. })
    })
    .await;
    let mut config = server_config();
    config.listen = addr;
    let (server, mut sev) = Server::bind(config).await.unwrap();
    let second = connected(&mut cev).await;
    assert_ne!(first, second, "a restarted server has no session to resume");
    next(
        &mut sev,
        "Received",
        |e| matches!(e, ServerEvent::Received { id, .. } if *id == second),
    )
    .await;
    client.close().await;
    server.shutdown(GUARD).await.unwrap();
}

#[tokio::test]
async fn session_resumes_after_the_tcp_connection_is_cut() {
    let (server, mut sev) = Server::bind(server_config()).await.unwrap();
    let relay = Relay::start(server.local_addr()).await.unwrap();
    let (client, mut cev) = Client::connect(
        &format!("ws://{}/", relay.local_addr()),
        client_config(r#"{"n":1}"#),
    )
    .unwrap();
    let id = connected(&mut cev).await;
    next(&mut sev, "Received", |e| {
        matches!(e, ServerEvent::Received { .. })
    })
    .await;
    relay.cut();
    let ev = next(&mut cev, "Resumed", |e| {
        matches!(
            e,
            ClientEvent::Resumed { .. } | ClientEvent::Connected { .. }
        )
    })
    .await;
    assert!(
        matches!(ev, ClientEvent::Resumed { id: r, .. } if r == id),
        "{ev:?}"
    );
    let ev = next(&mut sev, "server Resumed", |e| {
        matches!(
            e,
            ServerEvent::Resumed { .. } | ServerEvent::Received { .. }
        )
    })
    .await;
    assert!(
        matches!(ev, ServerEvent::Resumed { id: r, .. } if r == id),
        "{ev:?}"
    );
    assert_eq!(client.connection_id(), Some(id));
    assert_eq!(server.ids(), vec![id]);
    client.close().await;
    server.shutdown(GUARD).await.unwrap();
}

async fn raw_status(addr: std::net::SocketAddr, request: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(GUARD, async {
        let mut buf = [0u8; 1024];
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            response.extend_from_slice(&buf[..n]);
            // A 101 keeps the socket open for the WebSocket; a rejection closes it.
            let switched = response.starts_with(b"HTTP/1.1 101")
                && response.windows(4).any(|w| w == b"\r\n\r\n");
            if n == 0 || switched {
                break;
            }
        }
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test]
async fn http_level_rejections_have_status_codes() {
    let mut config = server_config();
    config.allowed_origins = AllowedOrigins::List(vec!["https://ok.example".into()]);
    let (server, _sev) = Server::bind(config).await.unwrap();
    let addr = server.local_addr();
    let upgrade = |method: &str, origin: &str| {
        format!(
            "{method} / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Protocol: tether.v1\r\nOrigin: {origin}\r\n\r\n"
        )
    };
    let (status, text) = raw_status(addr, &upgrade("GET", "https://evil.example")).await;
    assert_eq!(status, 403, "{text}");
    let (status, _) = raw_status(addr, &upgrade("POST", "https://ok.example")).await;
    assert_eq!(status, 405);
    let (status, text) = raw_status(addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, 400);
    assert!(text.contains("WebSocket"), "{text}");
    let (status, _) = raw_status(
        addr,
        &upgrade("GET", "https://ok.example").replace("Sec-WebSocket-Protocol: tether.v1\r\n", ""),
    )
    .await;
    assert_eq!(status, 400, "no tether.v1 subprotocol offered");
    let (status, text) = raw_status(addr, &upgrade("GET", "https://ok.example")).await;
    assert_eq!(status, 101, "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("sec-websocket-protocol: tether.v1"),
        "{text}"
    );
    server.shutdown(GUARD).await.unwrap();
}

#[tokio::test]
async fn wss_with_a_self_signed_certificate() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_pem = cert.cert.pem();
    let key_pem = cert.key_pair.serialize_pem();
    let mut config = server_config();
    config.tls = Some(
        tether_tokio::transport::tls::server_config_from_pem(
            cert_pem.as_bytes(),
            key_pem.as_bytes(),
        )
        .unwrap(),
    );
    let (server, mut sev) = Server::bind(config).await.unwrap();
    let url = format!("wss://localhost:{}/", server.local_addr().port());

    let mut cconfig = client_config(r#"{"tls":true}"#);
    let roots = tether_tokio::transport::tls::roots_from_pem(cert_pem.as_bytes()).unwrap();
    cconfig.tls = Some(tether_tokio::transport::tls::client_config(roots).unwrap());
    let (client, mut cev) = Client::connect(&url, cconfig).unwrap();
    let id = connected(&mut cev).await;
    next(
        &mut sev,
        "Received",
        |e| matches!(e, ServerEvent::Received { id: s, .. } if *s == id),
    )
    .await;
    client.close().await;

    // wss without roots is a configuration error, not a hang.
    let err = Client::connect(&url, client_config("")).unwrap_err();
    assert!(matches!(err, ClientError::Tls(_)), "{err:?}");
    server.shutdown(GUARD).await.unwrap();
}

#[tokio::test]
async fn a_server_that_does_not_speak_tether_v1_is_refused() {
    // The plain-WebSocket demo server selects no subprotocol.
    let config = tether_tokio::compat::demo_server::DemoServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    let server = tether_tokio::compat::demo_server::DemoServer::start(config)
        .await
        .unwrap();
    let mut cconfig = client_config("");
    cconfig.reconnect = false;
    let (_client, mut cev) =
        Client::connect(&format!("ws://{}/", server.local_addr()), cconfig).unwrap();
    let ev = next(&mut cev, "Failure", |e| {
        matches!(e, ClientEvent::Failure { .. })
    })
    .await;
    let ClientEvent::Failure { id: None, error } = ev else {
        panic!("{ev:?}")
    };
    // spec/protocol.md §2.1: the upgrade fails (RFC 6455 §4.1) and counts as 1002.
    assert!(matches!(error, ClientError::Subprotocol), "{error:?}");
    assert_eq!(
        error.close_code(),
        Some(tether_proto::CloseCode::WEBSOCKET_PROTOCOL_ERROR)
    );
    assert!(tokio::time::timeout(GUARD, cev.recv())
        .await
        .unwrap()
        .is_none());
    server.shutdown(GUARD).await.unwrap();
}

/// A hand-driven client machine over tungstenite, to present a chosen resume ticket.
async fn raw_client(
    addr: std::net::SocketAddr,
    resume: Option<tether_proto::Resume>,
) -> (
    tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    tether_proto::Connection,
) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;

    let mut request = format!("ws://{addr}/").into_client_request().unwrap();
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "tether.v1".parse().unwrap());
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(request, tcp).await.unwrap();
    let config = Arc::new(Config::default());
    let mut conn =
        tether_proto::Connection::client(config, bytes::Bytes::new(), resume, Instant::now())
            .unwrap();
    tokio::time::timeout(GUARD, async {
        while !conn.is_established() {
            while let Some(tether_proto::WsMessage::Binary(b)) =
                conn.poll_transmit().map(tether_proto::WsMessage::from)
            {
                ws.send(Message::Binary(b)).await.unwrap();
            }
            match ws.next().await {
                Some(Ok(Message::Binary(b))) => {
                    conn.handle_message(tether_proto::WsMessage::Binary(b), Instant::now())
                }
                Some(Ok(_)) => {}
                other => panic!("handshake: {other:?}"),
            }
            while let Some(tether_proto::WsMessage::Binary(b)) =
                conn.poll_transmit().map(tether_proto::WsMessage::from)
            {
                ws.send(Message::Binary(b)).await.unwrap();
            }
        }
    })
    .await
    .unwrap();
    (ws, conn)
}

#[tokio::test]
async fn resuming_a_live_session_replaces_the_old_connection() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;

    let (server, mut sev) = Server::bind(server_config()).await.unwrap();
    let (mut old_ws, old) = raw_client(server.local_addr(), None).await;
    let id = old.connection_id().unwrap();
    next(&mut sev, "Received", |e| {
        matches!(e, ServerEvent::Received { .. })
    })
    .await;
    let ticket = old.resume_ticket().expect("resumable");

    let (new_ws, new) = raw_client(server.local_addr(), Some(ticket)).await;
    assert_eq!(new.connection_id(), Some(id));
    next(
        &mut sev,
        "Resumed",
        |e| matches!(e, ServerEvent::Resumed { id: r, .. } if *r == id),
    )
    .await;
    // The old transport is closed with SESSION_REPLACED.
    let close = tokio::time::timeout(GUARD, async {
        loop {
            match old_ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => {}
                other => panic!("{other:?}"),
            }
        }
    })
    .await
    .unwrap()
    .expect("a close frame");
    assert_eq!(u16::from(close.code), CloseCode::SESSION_REPLACED.value());
    // The registry names the new transport: the id is still live.
    assert_eq!(server.ids(), vec![id]);
    // The stale transport's end is not reported; the live one's is.
    drop(old_ws);
    let mut new_ws = new_ws;
    let _ = new_ws
        .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: 1000.into(),
            reason: "bye".into(),
        }))
        .await;
    let ev = next(&mut sev, "Closed", |e| {
        matches!(e, ServerEvent::Closed { .. } | ServerEvent::Failure { .. })
    })
    .await;
    assert!(
        matches!(ev, ServerEvent::Closed { id: c, code: CloseCode::NORMAL, .. } if c == id),
        "{ev:?}"
    );
    drop(new_ws);
    server.shutdown(GUARD).await.unwrap();
}

#[tokio::test]
async fn close_while_reconnecting_still_reports_closed() {
    // Nothing listens on this port: every dial fails and the client keeps retrying.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (client, mut events) =
        Client::connect(&format!("ws://{addr}/"), client_config("{}")).unwrap();
    next(&mut events, "a reconnect attempt", |e| {
        matches!(e, ClientEvent::Reconnecting { .. })
    })
    .await;
    client.close_with(CloseCode::from_u(4501), "bye").await;
    let closed = next(&mut events, "closed", |e| {
        matches!(e, ClientEvent::Closed { .. })
    })
    .await;
    let ClientEvent::Closed {
        id,
        code,
        initiator,
        ..
    } = closed
    else {
        unreachable!()
    };
    assert_eq!(
        (id, code, initiator),
        (None, CloseCode::from_u(4501), Initiator::Local)
    );
    // Exactly once, and the stream then ends.
    let rest: Vec<ClientEvent> = tokio::time::timeout(GUARD, async {
        let mut rest = vec![];
        while let Some(e) = events.recv().await {
            rest.push(e);
        }
        rest
    })
    .await
    .expect("the event stream ends with the client");
    assert!(
        !rest.iter().any(|e| matches!(e, ClientEvent::Closed { .. })),
        "{rest:?}"
    );
}
