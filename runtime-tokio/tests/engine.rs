//! The client engine and the request helper against the demo server over real sockets,
//! including the server restarting under the engine.

use std::time::Duration;

use serde_json::json;
use tether_proto::backoff::{BackoffConfig, Jitter};
use tether_tokio::compat::demo_server::{DemoServer, DemoServerConfig};
use tether_tokio::compat::engine::{
    CloseInfo, CloseInitiator, Control, Engine, EngineConfig, EngineConnection, EngineError,
    Handler, Message, WsError,
};
use tether_tokio::compat::request::{RequestClient, RequestClientError};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// Failure guard only.
const GUARD: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq)]
enum Event {
    Open {
        restarting: bool,
    },
    Message(String),
    ReadError,
    Close {
        initiator: CloseInitiator,
        code: Option<u16>,
    },
    CloseError,
    RestartError {
        attempt: u32,
    },
}

/// Records every callback; exits on a message containing "exit", restarts on "restart".
struct Recorder(mpsc::UnboundedSender<Event>);

impl Handler for Recorder {
    fn on_open(&mut self, _: &EngineConnection, restarting: bool) -> Result<(), String> {
        let _ = self.0.send(Event::Open { restarting });
        Ok(())
    }
    fn on_message(&mut self, _: &EngineConnection, message: Message) -> Control {
        let text = message
            .into_text()
            .map(|t| t.to_string())
            .unwrap_or_default();
        let control = if text.contains("\"exit\"") {
            Control::Exit
        } else if text.contains("restart") {
            Control::Restart
        } else {
            Control::Continue
        };
        let _ = self.0.send(Event::Message(text));
        control
    }
    fn on_read_error(&mut self, _: &EngineConnection, _: &WsError) -> Control {
        let _ = self.0.send(Event::ReadError);
        Control::Restart
    }
    fn on_close(&mut self, _: &EngineConnection, info: &CloseInfo) -> Option<CloseFrame> {
        let _ = self.0.send(Event::Close {
            initiator: info.initiator,
            code: info.frame.as_ref().map(|f| u16::from(f.code)),
        });
        Some(CloseFrame {
            code: CloseCode::Library(4001),
            reason: "recorder".into(),
        })
    }
    fn on_close_error(&mut self, _: &WsError) {
        let _ = self.0.send(Event::CloseError);
    }
    fn on_restart_error(&mut self, _: &EngineError, attempt: u32) -> Control {
        let _ = self.0.send(Event::RestartError { attempt });
        Control::Continue
    }
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Event>) -> Event {
    tokio::time::timeout(GUARD, rx.recv())
        .await
        .expect("event in time")
        .expect("handler alive")
}

/// Next event that is not a heartbeat or other message.
async fn next_lifecycle(rx: &mut mpsc::UnboundedReceiver<Event>) -> Event {
    loop {
        match next(rx).await {
            Event::Message(_) => continue,
            e => return e,
        }
    }
}

fn fast_backoff() -> BackoffConfig {
    BackoffConfig {
        initial: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
        jitter: Jitter::Proportional(0.5),
        ..BackoffConfig::default()
    }
}

async fn demo(listen: &str) -> DemoServer {
    DemoServer::start(DemoServerConfig {
        listen: listen.parse().unwrap(),
        heartbeat_interval: Duration::from_millis(50),
        ..DemoServerConfig::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn reconnects_after_demo_server_restart() {
    let server = demo("127.0.0.1:0").await;
    let addr = server.local_addr();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let config = EngineConfig {
        backoff: fast_backoff(),
        ..EngineConfig::new(format!("ws://{addr}/"))
    };
    let client = RequestClient::start(config, Recorder(tx)).await.unwrap();
    assert_eq!(next(&mut rx).await, Event::Open { restarting: false });

    // Request/response by reqId while heartbeats flow to the handler.
    let sub = client
        .request(
            &json!({"type": "subscribe_request", "topic": "heartbeat"}),
            GUARD,
        )
        .await
        .unwrap();
    assert_eq!(sub["status"], "OK");
    let Event::Message(hb) = next(&mut rx).await else {
        panic!("expected the heartbeat")
    };
    assert!(hb.contains("\"heartbeat\""), "{hb}");
    let echo = client
        .request(&json!({"type": "echo_request", "echo": "one"}), GUARD)
        .await
        .unwrap();
    assert_eq!(echo["data"]["echo"], "one");
    assert_eq!(client.pending(), 0);

    // Restart the server under the engine.
    server.shutdown(GUARD).await.unwrap();
    assert_eq!(
        next_lifecycle(&mut rx).await,
        Event::Close {
            initiator: CloseInitiator::Server,
            code: Some(1001)
        }
    );
    // While the server is down, attempts fail and the handler hears about each.
    let Event::RestartError { attempt } = next_lifecycle(&mut rx).await else {
        panic!("expected a failed attempt")
    };
    assert!(attempt >= 1);
    assert!(!client.connection().is_connected());
    let server = demo(&addr.to_string()).await;
    loop {
        match next_lifecycle(&mut rx).await {
            Event::RestartError { .. } => continue,
            e => {
                assert_eq!(e, Event::Open { restarting: true });
                break;
            }
        }
    }
    let echo = client
        .request(&json!({"type": "echo_request", "echo": "two"}), GUARD)
        .await
        .unwrap();
    assert_eq!(echo["data"]["echo"], "two");

    client.stop(GUARD).await.unwrap();
    assert_eq!(
        next_lifecycle(&mut rx).await,
        Event::Close {
            initiator: CloseInitiator::Client,
            code: None
        }
    );
    server.shutdown(GUARD).await.unwrap();
}

#[tokio::test]
async fn handler_exit_ends_the_engine_with_its_close_frame() {
    // A raw server that reports the close frame it receives.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        use futures_util::{SinkExt, StreamExt};
        let (s, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(s).await.unwrap();
        ws.send(tokio_tungstenite::tungstenite::Message::text(
            r#"{"type":"exit"}"#,
        ))
        .await
        .unwrap();
        loop {
            match ws.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(f))) => return f,
                Some(Ok(_)) => continue,
                other => panic!("{other:?}"),
            }
        }
    });
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut engine = Engine::start(EngineConfig::new(format!("ws://{addr}/")), Recorder(tx))
        .await
        .unwrap();
    assert_eq!(next(&mut rx).await, Event::Open { restarting: false });
    assert!(matches!(next(&mut rx).await, Event::Message(_)));
    tokio::time::timeout(GUARD, engine.closed()).await.unwrap();
    assert!(engine.is_finished());
    let frame = server.await.unwrap().expect("close frame");
    assert_eq!(
        (u16::from(frame.code), frame.reason.as_str()),
        (4001, "recorder")
    );
}

#[tokio::test]
async fn start_fails_on_refused_and_on_open_timeout() {
    // Refused: bind then drop to get a closed port.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let (tx, _rx) = mpsc::unbounded_channel();
    let err = Engine::start(EngineConfig::new(format!("ws://{closed}/")), Recorder(tx))
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::Connect(_)), "{err:?}");

    // A server that accepts TCP but never answers the handshake.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let conn = silent.accept().await;
        std::future::pending::<()>().await;
        drop(conn);
    });
    let (tx, _rx) = mpsc::unbounded_channel();
    let config = EngineConfig {
        open_timeout: Duration::from_millis(200),
        ..EngineConfig::new(format!("ws://{addr}/"))
    };
    let err = Engine::start(config, Recorder(tx)).await.unwrap_err();
    assert!(matches!(err, EngineError::OpenTimeout(_)), "{err:?}");
    hold.abort();
}

#[tokio::test]
async fn request_timeout_and_unmatched_messages() {
    // A server that answers every request with a wrong reqId, then never.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use futures_util::{SinkExt, StreamExt};
        let (s, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(s).await.unwrap();
        while let Some(Ok(m)) = ws.next().await {
            if m.is_text() {
                let reply = tokio_tungstenite::tungstenite::Message::text(r#"{"reqId":"nobody"}"#);
                ws.send(reply).await.unwrap();
            }
        }
    });
    let (tx, mut rx) = mpsc::unbounded_channel();
    let client = RequestClient::start(EngineConfig::new(format!("ws://{addr}/")), Recorder(tx))
        .await
        .unwrap();
    assert_eq!(next(&mut rx).await, Event::Open { restarting: false });
    let err = client
        .request(&json!({"type": "x"}), Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(err, RequestClientError::Timeout(_)), "{err:?}");
    assert_eq!(client.pending(), 0, "a timed-out request leaves no slot");
    assert_eq!(
        next(&mut rx).await,
        Event::Message(r#"{"reqId":"nobody"}"#.into())
    );
    let err = client.request(&json!([1, 2]), GUARD).await.unwrap_err();
    assert!(matches!(err, RequestClientError::NotAnObject));
    client.stop(GUARD).await.unwrap();
}

#[tokio::test]
async fn gives_up_after_max_attempts_and_ends() {
    let server = demo("127.0.0.1:0").await;
    let addr = server.local_addr();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let config = EngineConfig {
        backoff: BackoffConfig {
            max_attempts: Some(2),
            ..fast_backoff()
        },
        ..EngineConfig::new(format!("ws://{addr}/"))
    };
    let mut engine = Engine::start(config, Recorder(tx)).await.unwrap();
    assert_eq!(next(&mut rx).await, Event::Open { restarting: false });
    server.shutdown(GUARD).await.unwrap();
    assert!(matches!(
        next_lifecycle(&mut rx).await,
        Event::Close {
            initiator: CloseInitiator::Server,
            ..
        }
    ));
    assert_eq!(
        next_lifecycle(&mut rx).await,
        Event::RestartError { attempt: 1 }
    );
    assert_eq!(
        next_lifecycle(&mut rx).await,
        Event::RestartError { attempt: 2 }
    );
    // The back-off's limit: reported once more (GaveUp), then the engine ends.
    assert_eq!(
        next_lifecycle(&mut rx).await,
        Event::RestartError { attempt: 2 }
    );
    tokio::time::timeout(GUARD, engine.closed()).await.unwrap();
    let err = engine.connection().send(Message::text("late")).unwrap_err();
    assert_eq!(err, tether_tokio::compat::engine::SendError::NotConnected);
}

#[tokio::test]
async fn extra_headers_reach_the_server() {
    use tether_tokio::compat::bindings::{Binding, BindingConfig, BindingServer, Text};
    use tether_tokio::transport::upgrade::AllowedOrigins;
    let config = BindingConfig::builder()
        .allowed_origins(AllowedOrigins::List(vec!["https://app.example".into()]))
        .build()
        .unwrap();
    let server = BindingServer::bind::<Text, _, _>(
        "127.0.0.1:0".parse().unwrap(),
        config,
        |mut b: Binding<Text>| async move {
            let origin = b.request.headers.get("origin").cloned();
            let _ = b.sender.send(format!("{origin:?}")).await;
            while b.receiver.recv().await.is_some() {}
        },
    )
    .await
    .unwrap();
    let url = format!("ws://{}/", server.local_addr());

    let (tx, _rx) = mpsc::unbounded_channel();
    let mut wrong = EngineConfig::new(url.clone());
    wrong
        .headers
        .insert("origin", "https://evil.example".parse().unwrap());
    match Engine::start(wrong, Recorder(tx)).await {
        Err(EngineError::Connect(WsError::Http(resp))) => assert_eq!(resp.status(), 403),
        other => panic!("expected 403, got {other:?}"),
    }

    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut right = EngineConfig::new(url);
    right
        .headers
        .insert("origin", "https://app.example".parse().unwrap());
    let engine = Engine::start(right, Recorder(tx)).await.unwrap();
    assert_eq!(next(&mut rx).await, Event::Open { restarting: false });
    assert_eq!(
        next(&mut rx).await,
        Event::Message(r#"Some("https://app.example")"#.into())
    );
    engine.stop(GUARD).await.unwrap();
}

#[tokio::test]
async fn handler_restart_reconnects_with_restarting_true() {
    let server = demo("127.0.0.1:0").await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let config = EngineConfig {
        backoff: fast_backoff(),
        ..EngineConfig::new(format!("ws://{}/", server.local_addr()))
    };
    let engine = Engine::start(config, Recorder(tx)).await.unwrap();
    assert_eq!(next(&mut rx).await, Event::Open { restarting: false });
    engine
        .connection()
        .send_text(r#"{"type":"echo_request","echo":"please restart"}"#)
        .unwrap();
    assert!(matches!(next(&mut rx).await, Event::Message(m) if m.contains("please restart")));
    assert_eq!(
        next(&mut rx).await,
        Event::Close {
            initiator: CloseInitiator::Client,
            code: None
        }
    );
    assert_eq!(
        next_lifecycle(&mut rx).await,
        Event::Open { restarting: true }
    );
    engine.stop(GUARD).await.unwrap();
    server.shutdown(GUARD).await.unwrap();
}

#[tokio::test]
async fn pending_request_fails_fast_when_the_connection_drops() {
    // A server that reads one message and then drops the TCP connection.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use futures_util::StreamExt;
        let (s, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(s).await.unwrap();
        let _ = ws.next().await;
        drop(ws);
        // Refuse reconnections quietly: keep the listener closed.
        drop(listener);
    });
    let (tx, mut rx) = mpsc::unbounded_channel();
    let config = EngineConfig {
        backoff: fast_backoff(),
        ..EngineConfig::new(format!("ws://{addr}/"))
    };
    let client = RequestClient::start(config, Recorder(tx)).await.unwrap();
    assert_eq!(next(&mut rx).await, Event::Open { restarting: false });
    let started = std::time::Instant::now();
    let err = client
        .request(&json!({"type": "never answered"}), GUARD)
        .await
        .unwrap_err();
    assert!(matches!(err, RequestClientError::Disconnected), "{err:?}");
    assert!(started.elapsed() < GUARD / 2, "failed fast, not by timeout");
    assert!(matches!(
        next_lifecycle(&mut rx).await,
        Event::ReadError | Event::Close { .. }
    ));
    client.stop(GUARD).await.unwrap();
}
