//! The stream churn limit over real sockets (spec/protocol.md §10.8): a peer that makes the
//! server start requests and throw them away by its own errors ("MadeYouReset") is closed
//! with 4007 after a bounded number of handler starts, while a caller that cancels its own
//! requests, many and often, at the concurrency limit, is normal traffic: the callee stays
//! connected, with the same session.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tether_proto::connection::{Config, Connection, Event, WsMessage};
use tether_proto::CloseCode;
use tether_tokio::client::{Client, ClientConfig, ClientEvent};
use tether_tokio::rest::{Body, Timeout};
use tether_tokio::server::{Server, ServerConfig, ServerEvent};
use tether_tokio::EventStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// A failure guard only: every wait ends as soon as what it waits for happens.
const GUARD: Duration = Duration::from_secs(10);

async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(GUARD, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A service whose `/slow` handler notes its start and never answers (it runs until its
/// stream is reset); `/` answers 200 at once.
fn slow_api(
    started: mpsc::UnboundedSender<()>,
    count: Arc<AtomicUsize>,
) -> impl tower::Service<
    Request<Body>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send,
> + Clone
       + Send
       + Sync
       + 'static {
    tower::service_fn(move |req: Request<Body>| {
        let started = started.clone();
        let count = count.clone();
        async move {
            if req.uri().path() == "/slow" {
                count.fetch_add(1, Ordering::SeqCst);
                let _ = started.send(());
                std::future::pending::<()>().await;
            }
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        }
    })
}

// ---- MadeYouReset

/// One Tether frame (spec/protocol.md §3.1): type, flags, 16 reserved bits, stream id.
fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Message {
    let mut b = BytesMut::with_capacity(8 + payload.len());
    b.put_u8(ty);
    b.put_u8(flags);
    b.put_u16(0);
    b.put_u32(stream);
    b.put_slice(payload);
    Message::Binary(b.freeze())
}

const HEADERS: u8 = 0x04;
const DATA: u8 = 0x05;
const WINDOW_UPDATE: u8 = 0x07;
const END_STREAM: u8 = 0x01;

/// How the attacker makes the server reset each request it opened.
#[derive(Clone, Copy, Debug)]
enum Provocation {
    /// WINDOW_UPDATE(stream, 0): a stream-level decode error (§3.5).
    ZeroWindowUpdate,
    /// DATA beyond the request's content-length (§10.4).
    DataBeyondLength,
}

/// A client that completes the handshake with the reference machine, then writes raw
/// frames: request after request to `/slow`, each followed, once its handler has started,
/// by the provocation; at most `MAX_ATTEMPTS` of them. Returns how many it wrote before the
/// server closed the connection.
async fn made_you_reset(
    addr: std::net::SocketAddr,
    how: Provocation,
    starts: &mut mpsc::UnboundedReceiver<()>,
) -> u32 {
    let mut request = format!("ws://{addr}/").into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        tether_proto::SUBPROTOCOL.parse().unwrap(),
    );
    let (ws, _) = within(
        "connect",
        tokio_tungstenite::connect_async_with_config(request, None, true),
    )
    .await
    .unwrap();
    let (mut sink, mut stream) = ws.split();
    // The handshake, by the machine.
    let config = Arc::new(Config::builder().build().unwrap());
    let mut conn = Connection::client(config, Bytes::new(), None, Instant::now()).unwrap();
    let mut established = false;
    while !established {
        while let Some(m) = conn.poll_transmit().map(tether_proto::WsMessage::from) {
            if let WsMessage::Binary(b) = m {
                sink.send(Message::Binary(b)).await.unwrap();
            }
        }
        while let Some(e) = conn.poll_event() {
            established |= matches!(e, Event::Established { .. });
        }
        if established {
            break;
        }
        match within("WELCOME", stream.next()).await {
            Some(Ok(Message::Binary(b))) => {
                conn.handle_message(WsMessage::Binary(b), Instant::now())
            }
            other => panic!("handshake: {other:?}"),
        }
    }
    // Read until the server closes, while the writer provokes.
    let (closed_tx, mut closed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            if let Message::Close(_) = msg {
                break;
            }
        }
        let _ = closed_tx.send(());
    });
    let mut written = 0;
    for i in 0..MAX_ATTEMPTS {
        let id = 2 * i + 1;
        let (head, provocation) = match how {
            Provocation::ZeroWindowUpdate => (
                frame(HEADERS, END_STREAM, id, b"GET /slow HTTP/1.1\r\n\r\n"),
                frame(WINDOW_UPDATE, 0, id, &0u32.to_be_bytes()),
            ),
            Provocation::DataBeyondLength => (
                frame(
                    HEADERS,
                    0,
                    id,
                    b"POST /slow HTTP/1.1\r\ncontent-length: 1\r\n\r\n",
                ),
                frame(DATA, 0, id, b"xy"),
            ),
        };
        if sink.send(head).await.is_err() {
            break;
        }
        tokio::select! {
            started = starts.recv() => started.expect("the service is alive"),
            _ = &mut closed => break,
            () = tokio::time::sleep(GUARD) => panic!("request {id} never reached its handler"),
        }
        if sink.send(provocation).await.is_err() {
            break;
        }
        written += 1;
    }
    written
}

/// The attack's length when nothing stops it.
const MAX_ATTEMPTS: u32 = 1_000;

async fn made_you_reset_is_closed_after_a_bounded_number_of_starts(how: Provocation) {
    let (server, mut sev) = Server::bind(ServerConfig::new("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let (started, mut starts) = mpsc::unbounded_channel();
    let count = Arc::new(AtomicUsize::new(0));
    server.serve(slow_api(started, count.clone()));
    let t0 = Instant::now();
    let provoked = made_you_reset(server.local_addr(), how, &mut starts).await;
    let handlers = count.load(Ordering::SeqCst);
    eprintln!(
        "{how:?}: {handlers} handlers started and {provoked} resets provoked in {:?}",
        t0.elapsed()
    );
    assert!(provoked < MAX_ATTEMPTS, "{how:?}: never closed");
    // The server's own account (the attacker, which keeps writing, may see the TCP reset
    // before the Close frame).
    let failure = next(&mut sev, "the server's failure", |e| {
        matches!(e, ServerEvent::Failure { .. })
    })
    .await;
    let ServerEvent::Failure { error, .. } = failure else {
        unreachable!()
    };
    assert_eq!(
        error.close_code(),
        Some(CloseCode::ENHANCE_YOUR_CALM),
        "{how:?}: {error}"
    );
    // §10.8: 200 churn events per 10 s; the 201st closes.
    assert!(handlers <= 201, "{how:?}: {handlers} handlers started");
    server.shutdown(GUARD).await.unwrap();
}

/// Before the fix the server reset each stream and went on: 5,000 requests, 5,000 handler
/// starts, no close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_window_update_after_each_request_is_closed_with_4007() {
    made_you_reset_is_closed_after_a_bounded_number_of_starts(Provocation::ZeroWindowUpdate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_beyond_content_length_after_each_request_is_closed_with_4007() {
    made_you_reset_is_closed_after_a_bounded_number_of_starts(Provocation::DataBeyondLength).await;
}

// ---- legitimate cancellation

async fn next<T: Clone + std::fmt::Debug>(
    events: &mut EventStream<T>,
    what: &str,
    mut pick: impl FnMut(&T) -> bool,
) -> T {
    within(what, async {
        loop {
            match events.recv().await {
                Some(event) if pick(&event) => return event,
                Some(_) => {}
                None => panic!("event stream ended while waiting for {what}"),
            }
        }
    })
    .await
}

/// A server and a client serving [`slow_api`], connected: what the cancellation tests share.
struct Device {
    server: Server,
    sev: EventStream<ServerEvent>,
    client: Client,
    cev: EventStream<ClientEvent>,
    id: uuid::Uuid,
    /// One message per handler start.
    starts: mpsc::UnboundedReceiver<()>,
    /// Handlers started.
    count: Arc<AtomicUsize>,
}

async fn device() -> Device {
    let (server, mut sev) = Server::bind(ServerConfig::new("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let addr = server.local_addr();
    let (client, mut cev) =
        Client::connect(&format!("ws://{addr}/"), ClientConfig::new("")).unwrap();
    let id = match next(&mut cev, "Connected", |e| {
        matches!(e, ClientEvent::Connected { .. })
    })
    .await
    {
        ClientEvent::Connected { id, .. } => id,
        _ => unreachable!(),
    };
    next(
        &mut sev,
        "Received",
        |e| matches!(e, ServerEvent::Received { id: r, .. } if *r == id),
    )
    .await;
    let (started, starts) = mpsc::unbounded_channel();
    let count = Arc::new(AtomicUsize::new(0));
    client.serve(slow_api(started, count.clone()));
    Device {
        server,
        sev,
        client,
        cev,
        id,
        starts,
        count,
    }
}

/// The client still has its session `id`, and its connection never ended meanwhile.
fn assert_still_connected(client: &Client, cev: &mut EventStream<ClientEvent>, id: uuid::Uuid) {
    assert_eq!(client.connection_id(), Some(id), "the same session");
    while let Some(event) = cev.try_recv() {
        assert!(
            !matches!(
                event,
                ClientEvent::Closed { .. }
                    | ClientEvent::Failure { .. }
                    | ClientEvent::Reconnecting { .. }
            ),
            "the client's connection ended: {event:?}"
        );
    }
}

/// The server calls the client's API with 1,024 callers that all give up (half by dropping
/// the call, half by the request's own timeout), 128 at a time, the client's concurrency
/// limit: 1,024 resets toward the client in a few seconds. Before the fix the client closed
/// with 4007 at the 201st and waited 30 s, the whole resume window, to come back (a new
/// session); now it stays connected and the next call is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_that_give_up_leave_the_device_connected() {
    let Device {
        server,
        sev: _sev,
        client,
        mut cev,
        id,
        mut starts,
        count,
    } = device().await;
    let peer = server.peer(&id).expect("connected");
    let concurrency = 128; // the client's MAX_CONCURRENT_STREAMS
    let give_up = Duration::from_millis(400);
    for round in 0..8 {
        let by_timeout = round % 2 == 1;
        let callers: Vec<_> = (0..concurrency)
            .map(|_| {
                let mut req = Request::get("/slow").body(Body::empty()).unwrap();
                if by_timeout {
                    // The request's own deadline: RESET TIMEOUT when it passes.
                    req.extensions_mut().insert(Timeout(give_up));
                }
                let call = peer.request(req);
                tokio::spawn(async move {
                    // The caller gives up: its future is dropped (RESET CANCEL).
                    tokio::time::timeout(give_up, call).await.map(|r| r.is_ok())
                })
            })
            .collect();
        for _ in 0..concurrency {
            within("a handler start", starts.recv()).await.unwrap();
        }
        for caller in callers {
            let answered = within("a caller", caller).await.unwrap();
            assert!(
                !matches!(answered, Ok(true)),
                "the slow handler never answers"
            );
        }
    }
    assert_eq!(count.load(Ordering::SeqCst), 8 * concurrency);
    // Still the same connection: the next call is answered, and neither side saw an end.
    let response = within(
        "the next call",
        peer.request(Request::get("/").body(Body::empty()).unwrap()),
    )
    .await
    .expect("answered");
    assert_eq!(response.status(), StatusCode::OK);
    let body = within("body", response.into_body().collect())
        .await
        .unwrap();
    assert_eq!(body.to_bytes(), Bytes::from_static(b"ok"));
    assert_still_connected(&client, &mut cev, id);
    client.close().await;
    server.shutdown(GUARD).await.unwrap();
}

/// 1,000 callers at once against the client's limit of 128 concurrent streams, all giving
/// up together: the 872 that waited in the queue must not become 872 streams opened and
/// cancelled at once (young, so churn) while the callers' drops race the openings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_callers_giving_up_together_leave_the_device_connected() {
    let Device {
        server,
        mut sev,
        client,
        mut cev,
        id,
        mut starts,
        count,
    } = device().await;
    let peer = server.peer(&id).expect("connected");
    let give_up = Duration::from_millis(400);
    for _ in 0..3 {
        let callers: Vec<_> = (0..1000)
            .map(|_| {
                let call = peer.request(Request::get("/slow").body(Body::empty()).unwrap());
                tokio::spawn(async move {
                    match tokio::time::timeout(give_up, call).await {
                        Err(_) => None, // gave up
                        Ok(r) => Some(format!("{r:?}")),
                    }
                })
            })
            .collect();
        for _ in 0..128 {
            within("a handler start", starts.recv()).await.unwrap();
        }
        for caller in callers {
            let got = within("a caller", caller).await.unwrap();
            if got.is_some() {
                while let Some(e) = cev.try_recv() {
                    eprintln!("client: {e:?}");
                }
                while let Some(e) = sev.try_recv() {
                    eprintln!("server: {e:?}");
                }
            }
            assert_eq!(got, None, "the slow handler never answers");
        }
    }
    eprintln!("{} handlers started", count.load(Ordering::SeqCst));
    let response = within(
        "the next call",
        peer.request(Request::get("/").body(Body::empty()).unwrap()),
    )
    .await
    .expect("answered");
    assert_eq!(response.status(), StatusCode::OK);
    assert_still_connected(&client, &mut cev, id);
    client.close().await;
    server.shutdown(GUARD).await.unwrap();
}

/// spec/protocol.md §9.5: after 4007 the client waits "the longest delay" (30 s by
/// default), but never past its session's resume window. A server whose application sends
/// bodies longer than their content-length to the client (each stream reset by the
/// client: churn) makes the client close with 4007; with the server's resume window at 2 s
/// the client comes back after at most 1.5 s and resumes the same session. Before, it
/// waited the full 30 s and lost it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_4007_the_client_comes_back_within_the_resume_window() {
    let mut config = ServerConfig::new("127.0.0.1:0".parse().unwrap());
    config.resume_window = Duration::from_secs(2);
    let (server, mut sev) = Server::bind(config).await.unwrap();
    let addr = server.local_addr();
    let (client, mut cev) =
        Client::connect(&format!("ws://{addr}/"), ClientConfig::new("")).unwrap();
    let id = match next(&mut cev, "Connected", |e| {
        matches!(e, ClientEvent::Connected { .. })
    })
    .await
    {
        ClientEvent::Connected { id, .. } => id,
        _ => unreachable!(),
    };
    next(
        &mut sev,
        "Received",
        |e| matches!(e, ServerEvent::Received { id: r, .. } if *r == id),
    )
    .await;
    let (started, _starts) = mpsc::unbounded_channel();
    client.serve(slow_api(started, Arc::new(AtomicUsize::new(0))));
    let peer = server.peer(&id).expect("connected");
    let calls: Vec<_> = (0..300)
        .map(|_| {
            let req = Request::post("/slow")
                .header("content-length", "1")
                .body(Body::from(Bytes::from_static(b"xy")))
                .unwrap();
            tokio::spawn(peer.request(req))
        })
        .collect();
    let failure = next(&mut cev, "the client's failure", |e| {
        matches!(e, ClientEvent::Failure { .. })
    })
    .await;
    let ClientEvent::Failure { error, .. } = failure else {
        unreachable!()
    };
    assert_eq!(
        error.close_code(),
        Some(CloseCode::ENHANCE_YOUR_CALM),
        "{error}"
    );
    let delay = match next(&mut cev, "Reconnecting", |e| {
        matches!(e, ClientEvent::Reconnecting { .. })
    })
    .await
    {
        ClientEvent::Reconnecting { delay, .. } => delay,
        _ => unreachable!(),
    };
    assert!(delay <= Duration::from_millis(1500), "{delay:?}");
    next(
        &mut cev,
        "Resumed",
        |e| matches!(e, ClientEvent::Resumed { id: r, .. } if *r == id),
    )
    .await;
    for call in calls {
        call.abort();
    }
    client.close().await;
    server.shutdown(GUARD).await.unwrap();
}
