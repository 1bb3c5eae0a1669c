//! Every failure path of REST over a Tether connection (`tether_tokio::rest`), over real
//! loopback sockets and in both directions (the client calling the server, and the server
//! calling the client), each with its exact typed outcome: timeouts that travel and stop
//! the handler, callers that give up, bodies dropped or failing mid-stream, lost and
//! reconnecting connections, panicking and failing services, no service, unknown and
//! departed peers, stream limits and queue bounds.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use http::{Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, StreamBody};
use tether_proto::backoff::{BackoffConfig, Jitter};
use tether_proto::connection::Config;
use tether_proto::streams::StreamsConfig;
use tether_proto::{Initiator, ResetCode};
use tether_tokio::client::{Client, ClientConfig, ClientEvent};
#[path = "../src/bin/cmd/relay.rs"]
mod relay;
use relay::Relay;
use tether_tokio::rest::{Body, BodyError, BoxError, Peer, RequestError, Timeout};
use tether_tokio::server::{Server, ServerConfig, ServerEvent};
use tether_tokio::EventStream;
use tokio::sync::{mpsc, oneshot, Semaphore};
use uuid::Uuid;

mod common;

/// A failure guard only: every wait ends as soon as what it waits for happens.
const GUARD: Duration = Duration::from_secs(5);

/// Size of the chunks of the endless response body.
const CHUNK: usize = 16 * 1024;

async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(GUARD, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

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

/// Polls a future once (it must not need waking: the test polls it again later).
fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    Pin::new(fut).poll(&mut Context::from_waker(Waker::noop()))
}

// ---- what the handlers tell the test

/// Shared by a service and its test: the handlers note what they do (start, get
/// dropped, …) and count what matters.
#[derive(Clone)]
struct Probe {
    notes: mpsc::UnboundedSender<String>,
    body_errors: mpsc::UnboundedSender<BodyError>,
    /// `/gate` handlers wait for a permit.
    gate: Arc<Semaphore>,
    /// `/slow` handlers running now, and the most at once.
    active: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    /// Bytes the endless body produced.
    produced: Arc<AtomicUsize>,
}

struct Notes {
    notes: mpsc::UnboundedReceiver<String>,
    body_errors: mpsc::UnboundedReceiver<BodyError>,
}

impl Probe {
    fn new() -> (Probe, Notes) {
        let (notes, notes_rx) = mpsc::unbounded_channel();
        let (body_errors, body_errors_rx) = mpsc::unbounded_channel();
        let probe = Probe {
            notes,
            body_errors,
            gate: Arc::new(Semaphore::new(0)),
            active: Arc::default(),
            peak: Arc::default(),
            produced: Arc::default(),
        };
        let notes = Notes {
            notes: notes_rx,
            body_errors: body_errors_rx,
        };
        (probe, notes)
    }

    fn note(&self, note: impl Into<String>) {
        let _ = self.notes.send(note.into());
    }

    /// Notes `what` when dropped: put one in a handler or a body to see it cancelled.
    fn guard(&self, what: &'static str) -> DropGuard {
        DropGuard {
            notes: self.notes.clone(),
            what,
        }
    }
}

struct DropGuard {
    notes: mpsc::UnboundedSender<String>,
    what: &'static str,
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        let _ = self.notes.send(self.what.to_owned());
    }
}

impl Notes {
    async fn next(&mut self) -> String {
        within("a note", self.notes.recv())
            .await
            .expect("the service is gone")
    }

    async fn expect(&mut self, want: &str) {
        let got = within(want, self.notes.recv()).await;
        assert_eq!(got.as_deref(), Some(want));
    }

    async fn body_error(&mut self) -> BodyError {
        within("a body error", self.body_errors.recv())
            .await
            .expect("the service is gone")
    }

    fn drain(&mut self) -> Vec<String> {
        let mut all = Vec::new();
        while let Ok(note) = self.notes.try_recv() {
            all.push(note);
        }
        all
    }
}

// ---- the service under test (served by either end)

type ApiBody = UnsyncBoxBody<Bytes, BoxError>;

fn text(s: &'static str) -> Response<ApiBody> {
    Response::new(
        http_body_util::Full::new(Bytes::from_static(s.as_bytes()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    )
}

fn streaming<S>(chunks: S) -> Response<ApiBody>
where
    S: futures_util::Stream<Item = Result<Frame<Bytes>, BoxError>> + Send + 'static,
{
    Response::new(StreamBody::new(chunks).boxed_unsync())
}

fn first_chunk() -> impl futures_util::Stream<Item = Result<Frame<Bytes>, BoxError>> + Send {
    stream::once(async { Ok(Frame::data(Bytes::from_static(b"first"))) })
}

async fn handle(p: Probe, req: Request<Body>) -> Result<Response<ApiBody>, BoxError> {
    match req.uri().path() {
        "/ok" => Ok(text("ok")),
        // Never answers; notes its start (with the deadline it was given) and its drop.
        "/hang" => {
            // The deadline comes as a typed `Timeout`, not as the wire's field.
            assert!(req.headers().get("tether-timeout").is_none());
            let deadline = req.extensions().get::<Timeout>().map(|t| t.0.as_millis());
            let _guard = p.guard("hang dropped");
            p.note(format!("hang started, timeout {deadline:?}"));
            std::future::pending::<()>().await;
            unreachable!()
        }
        // A response body without end.
        "/endless" => {
            let guard = p.guard("endless dropped");
            let produced = p.produced.clone();
            Ok(streaming(stream::unfold(guard, move |guard| {
                produced.fetch_add(CHUNK, Ordering::SeqCst);
                let chunk = Bytes::from(vec![7u8; CHUNK]);
                async move { Some((Ok(Frame::data(chunk)), guard)) }
            })))
        }
        // One chunk, then nothing more.
        "/one-then-hang" => {
            let guard = p.guard("one-then-hang dropped");
            Ok(streaming(first_chunk().chain(stream::once(async move {
                let _guard = guard;
                std::future::pending::<()>().await;
                unreachable!()
            }))))
        }
        "/panic" => panic!("handler panics (on purpose)"),
        "/error" => Err("the service failed (on purpose)".into()),
        // The failure comes a moment after the first chunk, as an upstream's would: a
        // reset discards what its stream still had queued (as RST_STREAM does in HTTP/2),
        // so a failure in the same poll as the chunk before it may overtake that chunk.
        "/body-error" => Ok(streaming(first_chunk().chain(stream::once(async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Err("the response body failed (on purpose)".into())
        })))),
        "/body-panic" => Ok(streaming(first_chunk().chain(stream::once(async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            panic!("the response body panics (on purpose)")
        })))),
        "/slow" => {
            let now = p.active.fetch_add(1, Ordering::SeqCst) + 1;
            p.peak.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            p.active.fetch_sub(1, Ordering::SeqCst);
            Ok(text("slow"))
        }
        "/gate" => {
            p.note("gate started");
            p.gate.acquire().await?.forget();
            Ok(text("gate"))
        }
        // Hands the request body to a task of its own, which reports what it reads.
        "/upload" => {
            let reader = p.clone();
            let mut body = req.into_body();
            tokio::spawn(async move {
                while let Some(frame) = body.frame().await {
                    match frame {
                        Ok(frame) => {
                            let n = frame.data_ref().map_or(0, Bytes::len);
                            reader.note(format!("upload got {n} bytes"));
                        }
                        Err(e) => {
                            let _ = reader.body_errors.send(e);
                            return;
                        }
                    }
                }
                reader.note("upload body ended");
            });
            let _guard = p.guard("upload dropped");
            std::future::pending::<()>().await;
            unreachable!()
        }
        _ => Ok(text("unknown path")),
    }
}

macro_rules! api {
    ($probe:expr) => {{
        let probe = $probe.clone();
        tower::service_fn(move |req| handle(probe.clone(), req))
    }};
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

/// A request that must succeed with 200 and `want` as its body.
async fn expect_ok(peer: &Peer, path: &str, want: &str) {
    let response = within(path, peer.request(get(path)))
        .await
        .unwrap_or_else(|e| panic!("{path}: {e:?}"));
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    let body = within(path, response.into_body().collect_limited(1 << 20))
        .await
        .unwrap();
    assert_eq!(body, want.as_bytes(), "{path}");
}

// ---- one server, one client

fn server_config() -> ServerConfig {
    ServerConfig::new("127.0.0.1:0".parse().unwrap())
}

fn client_config() -> ClientConfig {
    let mut config = ClientConfig::new("");
    config.backoff = backoff(Duration::from_millis(20));
    config
}

/// Reconnect delays of exactly `delay`.
fn backoff(delay: Duration) -> BackoffConfig {
    BackoffConfig {
        initial: delay,
        multiplier: 1.0,
        max_delay: delay,
        jitter: Jitter::None,
        ..BackoffConfig::default()
    }
}

fn stream_limit(n: u32) -> Arc<Config> {
    let streams = StreamsConfig {
        max_concurrent_streams: n,
        ..StreamsConfig::default()
    };
    Arc::new(Config::builder().streams(streams).build().unwrap())
}

/// Who calls whom.
#[derive(Debug, Clone, Copy)]
enum Dir {
    /// The client calls the server's API.
    ToServer,
    /// The server calls the client's API.
    ToClient,
}

struct Setup {
    server: Server,
    sev: EventStream<ServerEvent>,
    client: Client,
    cev: EventStream<ClientEvent>,
    id: Uuid,
    /// Between the client and the server, when asked for.
    relay: Option<Relay>,
}

async fn setup(server: ServerConfig, client: ClientConfig, relay: bool) -> Setup {
    let (server, mut sev) = Server::bind(server).await.unwrap();
    let relay = match relay {
        true => Some(Relay::start(server.local_addr()).await.unwrap()),
        false => None,
    };
    let addr = relay
        .as_ref()
        .map_or(server.local_addr(), Relay::local_addr);
    let (client, mut cev) = Client::connect(&format!("ws://{addr}/"), client).unwrap();
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
    Setup {
        server,
        sev,
        client,
        cev,
        id,
        relay,
    }
}

impl Setup {
    /// The callee of `dir` serves the test API; returns the caller's peer.
    fn serve(&self, dir: Dir, probe: &Probe) -> Peer {
        match dir {
            Dir::ToServer => {
                self.server.serve(api!(probe));
                self.client.peer()
            }
            Dir::ToClient => {
                self.client.serve(api!(probe));
                self.server.peer(&self.id).expect("connected")
            }
        }
    }

    fn relay(&self) -> &Relay {
        self.relay.as_ref().expect("set up with a relay")
    }

    /// Both ends report the session resumed after a cut.
    async fn resumed(&mut self) {
        let id = self.id;
        next(
            &mut self.cev,
            "client Resumed",
            |e| matches!(e, ClientEvent::Resumed { id: r, .. } if *r == id),
        )
        .await;
        next(
            &mut self.sev,
            "server Resumed",
            |e| matches!(e, ServerEvent::Resumed { id: r, .. } if *r == id),
        )
        .await;
    }

    async fn finish(self) {
        self.client.close().await;
        self.server.shutdown(GUARD).await.unwrap();
    }
}

// ---- 1. timeouts

/// The caller's timeout travels in `tether-timeout`: with every byte between the two ends
/// held back once the handler runs, the caller still times out on its own clock, and
/// the callee still stops the handler on its own (the caller's RESET cannot reach it).
async fn timeout_travels_and_stops_the_handler(dir: Dir) {
    let s = setup(server_config(), client_config(), true).await;
    let (probe, mut notes) = Probe::new();
    let limit = Duration::from_millis(800);
    let peer = s.serve(dir, &probe);
    let (peer, request) = match dir {
        // Per request, in the extensions...
        Dir::ToServer => {
            let mut request = get("/hang");
            request.extensions_mut().insert(Timeout(limit));
            (peer, request)
        }
        // ...or for every request of a peer.
        Dir::ToClient => (peer.with_timeout(Some(limit)), get("/hang")),
    };
    let sent = Instant::now();
    let call = tokio::spawn(peer.request(request));
    let started = notes.next().await;
    let ms: u128 = started
        .strip_prefix("hang started, timeout Some(")
        .and_then(|rest| rest.strip_suffix(")"))
        .unwrap_or_else(|| panic!("{started}"))
        .parse()
        .unwrap();
    assert!(ms > 0 && ms <= limit.as_millis(), "{started}");
    s.relay().stall_upstream(true);
    s.relay().stall_downstream(true);

    let error = within("the timeout", call).await.unwrap().unwrap_err();
    assert!(
        matches!(error, RequestError::TimedOut(d) if d == limit),
        "{error:?}"
    );
    assert!(!error.is_safe_to_retry());
    assert!(sent.elapsed() >= limit);
    notes.expect("hang dropped").await;

    // The crossing RESETs are for closed streams: the connection carries on.
    s.relay().stall_upstream(false);
    s.relay().stall_downstream(false);
    expect_ok(&peer, "/ok", "ok").await;
    assert_eq!(peer.connection_id(), Some(s.id));
    s.finish().await;
}

#[tokio::test]
async fn timeout_travels_and_stops_the_handler_client_calls_server() {
    timeout_travels_and_stops_the_handler(Dir::ToServer).await;
}

#[tokio::test]
async fn timeout_travels_and_stops_the_handler_server_calls_client() {
    timeout_travels_and_stops_the_handler(Dir::ToClient).await;
}

// ---- 2. the caller gives up

async fn caller_gives_up_and_the_handler_is_cancelled(dir: Dir) {
    let s = setup(server_config(), client_config(), false).await;
    let (probe, mut notes) = Probe::new();
    let peer = s.serve(dir, &probe).with_timeout(None);
    let mut call = Box::pin(peer.request(get("/hang")));
    tokio::select! {
        response = &mut call => panic!("answered: {response:?}"),
        note = notes.next() => assert_eq!(note, "hang started, timeout None"),
    }
    drop(call);
    notes.expect("hang dropped").await;
    expect_ok(&peer, "/ok", "ok").await;

    // The same with a timer around the call (no deadline on the wire: only the CANCEL
    // stops the handler).
    let given_up = tokio::time::timeout(Duration::from_secs(1), async {
        let call = peer.request(get("/hang"));
        tokio::pin!(call);
        let response = (&mut call).await;
        panic!("answered: {response:?}")
    });
    let ((), note) = tokio::join!(async { assert!(given_up.await.is_err()) }, notes.next());
    assert_eq!(note, "hang started, timeout None");
    notes.expect("hang dropped").await;
    expect_ok(&peer, "/ok", "ok").await;
    s.finish().await;
}

#[tokio::test]
async fn caller_gives_up_client_calls_server() {
    caller_gives_up_and_the_handler_is_cancelled(Dir::ToServer).await;
}

#[tokio::test]
async fn caller_gives_up_server_calls_client() {
    caller_gives_up_and_the_handler_is_cancelled(Dir::ToClient).await;
}

// ---- 3. the caller drops the response body mid-stream

async fn dropped_response_body_stops_the_pump(dir: Dir) {
    // Fixed windows, for an exact bound below.
    let (connection, max_ahead) = common::fixed_windows(CHUNK);
    let (mut server, mut client) = (server_config(), client_config());
    server.connection = connection.clone();
    client.connection = connection;
    let s = setup(server, client, false).await;
    let (probe, mut notes) = Probe::new();
    let peer = s.serve(dir, &probe);
    let response = within("/endless", peer.request(get("/endless")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut read = 0;
    while read < 512 * 1024 {
        let frame = within("a chunk", body.frame()).await.unwrap().unwrap();
        read += frame.into_data().unwrap().len();
    }
    drop(body);
    notes.expect("endless dropped").await;
    // Flow control held the producer back.
    let produced = probe.produced.load(Ordering::SeqCst);
    assert!(
        produced as u64 <= read as u64 + max_ahead,
        "read {read}, produced {produced}"
    );
    expect_ok(&peer, "/ok", "ok").await;
    s.finish().await;
}

#[tokio::test]
async fn dropped_response_body_client_calls_server() {
    dropped_response_body_stops_the_pump(Dir::ToServer).await;
}

#[tokio::test]
async fn dropped_response_body_server_calls_client() {
    dropped_response_body_stops_the_pump(Dir::ToClient).await;
}

// ---- 4. the connection is lost mid-request

async fn connection_lost_mid_request(dir: Dir) {
    let mut s = setup(server_config(), client_config(), true).await;
    let (probe, mut notes) = Probe::new();
    let peer = s.serve(dir, &probe);

    // Waiting for the response head.
    let call = tokio::spawn(peer.request(get("/hang")));
    assert!(notes.next().await.starts_with("hang started"));
    s.relay().cut();
    let error = within("the loss", call).await.unwrap().unwrap_err();
    assert!(matches!(error, RequestError::ConnectionLost), "{error:?}");
    assert!(!error.is_safe_to_retry());
    notes.expect("hang dropped").await;
    s.resumed().await;

    // Reading a streaming response body. The same peer follows the resumed session.
    let response = within("/one-then-hang", peer.request(get("/one-then-hang")))
        .await
        .unwrap();
    let mut body = response.into_body();
    let first = within("a chunk", body.frame()).await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "first");
    s.relay().cut();
    let error = within("the loss", body.frame()).await.unwrap().unwrap_err();
    assert_eq!(error, BodyError::ConnectionLost);
    notes.expect("one-then-hang dropped").await;
    s.resumed().await;
    expect_ok(&peer, "/ok", "ok").await;
    s.finish().await;
}

#[tokio::test]
async fn connection_lost_mid_request_client_calls_server() {
    connection_lost_mid_request(Dir::ToServer).await;
}

#[tokio::test]
async fn connection_lost_mid_request_server_calls_client() {
    connection_lost_mid_request(Dir::ToClient).await;
}

// ---- 5. requests while the client is away, and after it closed

const GAP: Duration = Duration::from_millis(1500);

/// A client whose reconnects wait `GAP`, cut off: returns once it is waiting.
async fn in_the_gap(client: ClientConfig) -> (Setup, Probe, Notes) {
    let mut client = client;
    client.backoff = backoff(GAP);
    let mut s = setup(server_config(), client, true).await;
    let (probe, notes) = Probe::new();
    s.server.serve(api!(probe));
    expect_ok(&s.client.peer(), "/ok", "ok").await;
    s.relay().cut();
    next(&mut s.cev, "Reconnecting", |e| {
        matches!(e, ClientEvent::Reconnecting { .. })
    })
    .await;
    assert_eq!(s.client.peer().connection_id(), None);
    (s, probe, notes)
}

#[tokio::test]
async fn request_while_reconnecting_waits_for_the_connection() {
    let mut config = client_config();
    config.rest.max_queued_requests = 2;
    let (mut s, _probe, _notes) = in_the_gap(config).await;
    let peer = s.client.peer();
    let asked = Instant::now();
    let mut first = Box::pin(peer.request(get("/ok")));
    let mut second = Box::pin(peer.request(get("/slow")));
    assert!(poll_once(&mut first).is_pending());
    assert!(poll_once(&mut second).is_pending());
    // Two wait already: the bound is reached.
    let mut third = Box::pin(peer.request(get("/ok")));
    match poll_once(&mut third) {
        Poll::Ready(Err(error @ RequestError::QueueFull)) => assert!(error.is_safe_to_retry()),
        other => panic!("{other:?}"),
    }
    s.resumed().await;
    let first = within("first", first).await.unwrap();
    let second = within("second", second).await.unwrap();
    assert_eq!(first.into_body().collect_limited(64).await.unwrap(), "ok");
    assert_eq!(
        second.into_body().collect_limited(64).await.unwrap(),
        "slow"
    );
    assert!(asked.elapsed() < GAP + GUARD);
    assert_eq!(peer.connection_id(), Some(s.id));
    s.finish().await;
}

#[tokio::test]
async fn request_while_reconnecting_gives_up_after_connect_wait() {
    let mut config = client_config();
    config.rest.connect_wait = Duration::from_millis(100);
    let (s, _probe, _notes) = in_the_gap(config).await;
    let peer = s.client.peer();
    let asked = Instant::now();
    let error = within("NotConnected", peer.request(get("/ok")))
        .await
        .unwrap_err();
    assert!(matches!(error, RequestError::NotConnected), "{error:?}");
    assert!(error.is_safe_to_retry());
    assert!(asked.elapsed() >= Duration::from_millis(100));
    // A request timeout shorter than the wait ends it first.
    let mut request = get("/ok");
    let short = Duration::from_millis(30);
    request.extensions_mut().insert(Timeout(short));
    let error = within("TimedOut", peer.request(request)).await.unwrap_err();
    assert!(
        matches!(error, RequestError::TimedOut(d) if d == short),
        "{error:?}"
    );
    s.finish().await;
}

#[tokio::test]
async fn requests_fail_with_closed_once_the_client_is_closed() {
    let (s, _probe, _notes) = in_the_gap(client_config()).await;
    let peer = s.client.peer();
    // One waits for the connection when the client is closed...
    let waiting = tokio::spawn(peer.request(get("/ok")));
    tokio::task::yield_now().await;
    s.client.close().await;
    let error = within("Closed", waiting).await.unwrap().unwrap_err();
    assert!(matches!(error, RequestError::Closed), "{error:?}");
    // ...and the later ones fail at once.
    let error = within("Closed", peer.request(get("/ok")))
        .await
        .unwrap_err();
    assert!(matches!(error, RequestError::Closed), "{error:?}");
    assert!(error.is_safe_to_retry());
    let error = within("Closed", s.client.peer().request(get("/ok")))
        .await
        .unwrap_err();
    assert!(matches!(error, RequestError::Closed), "{error:?}");
    s.server.shutdown(GUARD).await.unwrap();
}

#[tokio::test]
async fn requests_fail_with_closed_after_close_while_connected() {
    let s = setup(server_config(), client_config(), false).await;
    let (probe, _notes) = Probe::new();
    let peer = s.serve(Dir::ToServer, &probe);
    expect_ok(&peer, "/ok", "ok").await;
    s.client.close().await;
    let error = within("Closed", peer.request(get("/ok")))
        .await
        .unwrap_err();
    assert!(matches!(error, RequestError::Closed), "{error:?}");
    s.server.shutdown(GUARD).await.unwrap();
}

// ---- 6. the service panics or fails

async fn service_panics_and_failures(dir: Dir) {
    let s = setup(server_config(), client_config(), false).await;
    let (probe, _notes) = Probe::new();
    let peer = s.serve(dir, &probe);

    let error = within("/panic", peer.request(get("/panic")))
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            RequestError::Reset {
                code: ResetCode::INTERNAL_ERROR,
                initiator: Initiator::Peer
            }
        ),
        "{error:?}"
    );
    assert!(!error.is_safe_to_retry());

    let response = within("/error", peer.request(get("/error"))).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = response.into_body().collect_limited(1024).await.unwrap();
    assert_eq!(body, "service failed\n");

    // A response body that fails, or panics, after its head went out.
    for path in ["/body-error", "/body-panic"] {
        let response = within(path, peer.request(get(path))).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let mut body = response.into_body();
        let first = within(path, body.frame()).await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "first");
        let error = within(path, body.frame()).await.unwrap().unwrap_err();
        assert_eq!(
            error,
            BodyError::Reset {
                code: ResetCode::INTERNAL_ERROR,
                initiator: Initiator::Peer
            },
            "{path}"
        );
    }
    expect_ok(&peer, "/ok", "ok").await;
    s.finish().await;
}

#[tokio::test]
async fn service_panics_and_failures_client_calls_server() {
    service_panics_and_failures(Dir::ToServer).await;
}

#[tokio::test]
async fn service_panics_and_failures_server_calls_client() {
    service_panics_and_failures(Dir::ToClient).await;
}

// ---- 7. no service

#[tokio::test]
async fn no_service_answers_501_both_ways() {
    let s = setup(server_config(), client_config(), false).await;
    let peers = [s.client.peer(), s.server.peer(&s.id).expect("connected")];
    for peer in &peers {
        for request in [
            get("/anything"),
            Request::post("/upload")
                .body(Body::from(vec![1u8; 300 * 1024]))
                .unwrap(),
        ] {
            let response = within("501", peer.request(request)).await.unwrap();
            assert_eq!(response.status(), StatusCode::NOT_IMPLEMENTED);
            let body = response.into_body().collect_limited(1024).await.unwrap();
            assert!(
                String::from_utf8_lossy(&body).contains("no HTTP service"),
                "{body:?}"
            );
        }
    }
    // Serving from now on works on the same connection.
    let (probe, _notes) = Probe::new();
    s.server.serve(api!(probe));
    s.client.serve(api!(probe));
    for peer in &peers {
        expect_ok(peer, "/ok", "ok").await;
    }
    s.finish().await;
}

// ---- 8. unknown and departed clients

#[tokio::test]
async fn server_peer_of_unknown_or_departed_client() {
    let mut s = setup(server_config(), client_config(), false).await;
    assert!(s.server.peer(&Uuid::from_u128(7)).is_none());
    let (probe, _notes) = Probe::new();
    let peer = s.serve(Dir::ToClient, &probe);
    assert_eq!(peer.connection_id(), Some(s.id));
    expect_ok(&peer, "/ok", "ok").await;

    s.client.close().await;
    let id = s.id;
    next(
        &mut s.sev,
        "server Closed",
        |e| matches!(e, ServerEvent::Closed { id: r, .. } if *r == id),
    )
    .await;
    assert!(s.server.peer(&s.id).is_none());
    assert_eq!(peer.connection_id(), None);
    let error = within("NotConnected", peer.request(get("/ok")))
        .await
        .unwrap_err();
    assert!(matches!(error, RequestError::NotConnected), "{error:?}");
    assert!(error.is_safe_to_retry());
    s.server.shutdown(GUARD).await.unwrap();
}

// ---- 9. stream limits and the queue bound

#[tokio::test]
async fn requests_beyond_the_stream_limit_queue_and_all_succeed() {
    let mut server = server_config();
    server.connection = stream_limit(2);
    let mut client = client_config();
    client.connection = stream_limit(2);
    let s = setup(server, client, false).await;
    for dir in [Dir::ToServer, Dir::ToClient] {
        let (probe, _notes) = Probe::new();
        let peer = s.serve(dir, &probe);
        let calls: Vec<_> = (0..16)
            .map(|_| tokio::spawn(peer.request(get("/slow"))))
            .collect();
        for call in calls {
            let response = within("/slow", call).await.unwrap().unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let body = response.into_body().collect_limited(64).await.unwrap();
            assert_eq!(body, "slow");
        }
        let peak = probe.peak.load(Ordering::SeqCst);
        assert!((1..=2).contains(&peak), "{dir:?}: {peak} at once");
    }
    s.finish().await;
}

async fn queue_bound(dir: Dir) {
    let mut server = server_config();
    server.connection = stream_limit(1);
    server.rest.max_queued_requests = 3;
    let mut client = client_config();
    client.connection = stream_limit(1);
    client.rest.max_queued_requests = 3;
    let s = setup(server, client, false).await;
    let (probe, mut notes) = Probe::new();
    let peer = s.serve(dir, &probe);

    // One runs (the peer's limit is one stream)...
    let running = tokio::spawn(peer.request(get("/gate")));
    notes.expect("gate started").await;
    // ...three wait for a stream...
    let mut queued: Vec<_> = (0..3)
        .map(|_| Box::pin(peer.request(get("/gate"))))
        .collect();
    for call in &mut queued {
        assert!(poll_once(call).is_pending());
    }
    // ...and one more is refused.
    let error = within("QueueFull", peer.request(get("/gate")))
        .await
        .unwrap_err();
    assert!(matches!(error, RequestError::QueueFull), "{error:?}");
    assert!(error.is_safe_to_retry());

    // A queued request whose caller gives up is never sent.
    drop(queued.remove(1));
    probe.gate.add_permits(100);
    let response = within("running", running).await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    for call in queued {
        let response = within("queued", call).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    expect_ok(&peer, "/ok", "ok").await;
    let notes = notes.drain();
    assert_eq!(notes, ["gate started", "gate started"], "{notes:?}");
    s.finish().await;
}

#[tokio::test]
async fn queue_bound_client_calls_server() {
    queue_bound(Dir::ToServer).await;
}

#[tokio::test]
async fn queue_bound_server_calls_client() {
    queue_bound(Dir::ToClient).await;
}

// ---- 10. the request body fails

async fn request_body_fails(dir: Dir) {
    let s = setup(server_config(), client_config(), false).await;
    let (probe, mut notes) = Probe::new();
    let peer = s.serve(dir, &probe);
    let (go, fail) = oneshot::channel::<()>();
    let chunks =
        stream::once(async { Ok::<_, BoxError>(Frame::data(Bytes::from_static(b"first"))) }).chain(
            stream::once(async move {
                let _ = fail.await;
                Err::<Frame<Bytes>, BoxError>("disk on fire".into())
            }),
        );
    let request = Request::post("/upload")
        .body(StreamBody::new(chunks))
        .unwrap();
    let call = tokio::spawn(peer.request(request));
    notes.expect("upload got 5 bytes").await;
    go.send(()).unwrap();

    // The callee's request body ends in an error, and its handler is stopped.
    let error = notes.body_error().await;
    assert_eq!(
        error,
        BodyError::Reset {
            code: ResetCode::CANCEL,
            initiator: Initiator::Peer
        }
    );
    notes.expect("upload dropped").await;
    // The caller hears why.
    let error = within("the failure", call).await.unwrap().unwrap_err();
    match &error {
        RequestError::Body(e) => assert_eq!(e.to_string(), "disk on fire"),
        other => panic!("{other:?}"),
    }
    assert!(!error.is_safe_to_retry());
    expect_ok(&peer, "/ok", "ok").await;
    s.finish().await;
}

#[tokio::test]
async fn request_body_fails_client_calls_server() {
    request_body_fails(Dir::ToServer).await;
}

#[tokio::test]
async fn request_body_fails_server_calls_client() {
    request_body_fails(Dir::ToClient).await;
}
