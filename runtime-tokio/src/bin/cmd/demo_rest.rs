//! The REST part of `tether demo`: the small HTTP API each side serves (plain
//! `tower::service_fn`s, no web framework) and the exchanges the demo makes over the one
//! connection, each checked (status and body).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use tether_tokio::rest::{Body, BoxError, ConnectionInfo, Peer};
use tokio::task::JoinSet;

/// Every exchange must finish within this (a failure guard, not a benchmark limit).
const GUARD: Duration = Duration::from_secs(10);
/// The largest body any check reads into memory (JSON answers, small echoes).
const SMALL: usize = 64 * 1024;
/// The streamed bodies repeat bytes 0, 1, …, 250: a period that no power-of-two chunk or
/// frame size divides, so a lost, repeated or reordered chunk shows.
const PERIOD: usize = 251;
/// One chunk of a streamed body: 256 periods (62.75 KiB), sent as clones of one `Bytes`.
const CHUNK: usize = PERIOD * 256;

/// What `Client::serve` and `Server::serve` take, as the demo's APIs are.
pub(crate) trait Api:
    tower::Service<
        Request<Body>,
        Response = Response<Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> Api for S where
    S: tower::Service<
            Request<Body>,
            Response = Response<Body>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// The device's API (served by the client): `GET /status` and `POST /echo`.
pub(crate) fn client_api(device: &'static str) -> impl Api {
    let started = Instant::now();
    tower::service_fn(move |request: Request<Body>| async move {
        let response = match (request.method(), request.uri().path()) {
            (&Method::GET, "/status") => json(&serde_json::json!({
                "device": device,
                "uptime_ms": started.elapsed().as_millis() as u64,
            })),
            (&Method::POST, "/echo") => {
                // The request body goes straight back as the response body: it streams
                // through, chunk by chunk, under flow control in both directions.
                let (parts, body) = request.into_parts();
                let mut response = Response::new(body);
                for name in [header::CONTENT_TYPE, header::CONTENT_LENGTH] {
                    if let Some(value) = parts.headers.get(&name) {
                        response.headers_mut().insert(name, value.clone());
                    }
                }
                response
            }
            (_, "/status" | "/echo") => {
                text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
            }
            _ => text(StatusCode::NOT_FOUND, "no such route\n"),
        };
        Ok::<_, Infallible>(response)
    })
}

/// The server's API (served to every client): `GET /time` and `POST /upload`.
pub(crate) fn server_api() -> impl Api {
    tower::service_fn(|request: Request<Body>| async move {
        let response = match (request.method(), request.uri().path()) {
            (&Method::GET, "/time") => {
                // Every request carries who the connection is.
                let connection = request
                    .extensions()
                    .get::<ConnectionInfo>()
                    .map(|c| c.id.to_string());
                json(&serde_json::json!({ "unix_ms": unix_ms(), "connection": connection }))
            }
            (&Method::POST, "/upload") => {
                // Counts the bytes as they stream in (and sums them, so the caller can
                // tell that they are the bytes it sent); nothing is buffered.
                let mut body = request.into_body();
                let (mut bytes, mut sum) = (0u64, 0u64);
                loop {
                    match body.frame().await {
                        None => break json(&serde_json::json!({ "bytes": bytes, "sum": sum })),
                        Some(Ok(frame)) => {
                            if let Some(data) = frame.data_ref() {
                                bytes += data.len() as u64;
                                sum = data.iter().fold(sum, |s, &b| s.wrapping_add(u64::from(b)));
                            }
                        }
                        Some(Err(e)) => {
                            break text(StatusCode::BAD_REQUEST, format!("upload failed: {e}\n"))
                        }
                    }
                }
            }
            (_, "/time" | "/upload") => {
                text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
            }
            _ => text(StatusCode::NOT_FOUND, "no such route\n"),
        };
        Ok::<_, Infallible>(response)
    })
}

fn json(value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Body::from(value.to_string()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut response = Response::new(Body::from(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Sends `request`, checks the status, and reads the (small) body.
async fn call(peer: &Peer, request: Request<Body>, what: &str) -> Result<Bytes, String> {
    let answer = tokio::time::timeout(GUARD, async {
        let response = peer
            .request(request)
            .await
            .map_err(|e| format!("{what}: {e}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect_limited(SMALL)
            .await
            .map_err(|e| format!("{what}: response body: {e}"))?;
        if status != StatusCode::OK {
            return Err(format!(
                "{what}: status {status}, body {:?}",
                String::from_utf8_lossy(&body)
            ));
        }
        Ok(body)
    })
    .await;
    answer.unwrap_or_else(|_| Err(format!("{what}: no answer within {GUARD:?}")))
}

fn get(path: &'static str) -> Request<Body> {
    let mut request = Request::new(Body::empty());
    *request.uri_mut() = http::Uri::from_static(path);
    request
}

fn post(path: &'static str, body: Body) -> Request<Body> {
    let mut request = Request::new(body);
    *request.method_mut() = Method::POST;
    *request.uri_mut() = http::Uri::from_static(path);
    request
}

fn parse(body: &[u8], what: &str) -> Result<serde_json::Value, String> {
    serde_json::from_slice(body).map_err(|_| {
        format!(
            "{what}: not JSON: {:?}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )
    })
}

/// `GET /status` on the device; checks the answer and returns it as text.
pub(crate) async fn status(device: &Peer, name: &str) -> Result<String, String> {
    let body = call(device, get("/status"), "GET /status").await?;
    let value = parse(&body, "GET /status")?;
    if value["device"] != name || !value["uptime_ms"].is_u64() {
        return Err(format!("GET /status: unexpected answer {value}"));
    }
    Ok(value.to_string())
}

/// `GET /time` on the server; checks that the clock is sane and that the server saw the
/// request on connection `id`. Returns the answer as text.
pub(crate) async fn time(server: &Peer, id: uuid::Uuid) -> Result<String, String> {
    let body = call(server, get("/time"), "GET /time").await?;
    let value = parse(&body, "GET /time")?;
    let skew = value["unix_ms"]
        .as_u64()
        .map(|t| t.abs_diff(unix_ms()))
        .unwrap_or(u64::MAX);
    if skew > 60_000 || value["connection"] != id.to_string() {
        return Err(format!("GET /time: unexpected answer {value}"));
    }
    Ok(value.to_string())
}

/// `n` concurrent `POST /echo` calls on the device, each with its own body; every answer
/// must be its own body back. Returns how long they took together.
pub(crate) async fn echoes(device: &Peer, n: usize) -> Result<Duration, String> {
    let started = Instant::now();
    let mut calls = JoinSet::new();
    for i in 0..n {
        let device = device.clone();
        calls.spawn(async move {
            let sent = format!("echo #{i} from the server");
            let back = call(
                &device,
                post("/echo", Body::from(sent.clone())),
                "POST /echo",
            )
            .await?;
            if back != sent.as_bytes() {
                return Err(format!(
                    "POST /echo #{i}: sent {sent:?}, got back {:?}",
                    String::from_utf8_lossy(&back)
                ));
            }
            Ok(())
        });
    }
    join(calls).await?;
    Ok(started.elapsed())
}

/// `n` concurrent `POST /upload` calls on the server with bodies of 0 to 2,047 bytes;
/// every answer must count and sum that body. Returns how long they took together.
pub(crate) async fn uploads(server: &Peer, n: usize) -> Result<Duration, String> {
    let started = Instant::now();
    let chunk = pattern();
    let mut calls = JoinSet::new();
    for i in 0..n {
        let server = server.clone();
        let body = chunk.slice(..i % 2048);
        calls.spawn(
            async move { upload(&server, Body::from(body.clone()), body.len() as u64).await },
        );
    }
    join(calls).await?;
    Ok(started.elapsed())
}

async fn join(mut calls: JoinSet<Result<(), String>>) -> Result<(), String> {
    while let Some(done) = calls.join_next().await {
        done.map_err(|e| format!("a request task failed: {e}"))??;
    }
    Ok(())
}

/// `POST /upload` of a body that is a prefix of the pattern, `len` bytes long; checks the
/// server's count and sum.
async fn upload<B>(server: &Peer, body: B, len: u64) -> Result<(), String>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let mut request = Request::new(body);
    *request.method_mut() = Method::POST;
    *request.uri_mut() = http::Uri::from_static("/upload");
    request.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    let answer = tokio::time::timeout(GUARD, async {
        let response = server
            .request(request)
            .await
            .map_err(|e| format!("POST /upload: {e}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect_limited(SMALL)
            .await
            .map_err(|e| format!("POST /upload: response body: {e}"))?;
        Ok::<_, String>((status, body))
    })
    .await
    .unwrap_or_else(|_| Err(format!("POST /upload: no answer within {GUARD:?}")))?;
    let (status, body) = answer;
    let value = parse(&body, "POST /upload")?;
    if status != StatusCode::OK || value["bytes"] != len || value["sum"] != pattern_sum(len) {
        return Err(format!(
            "POST /upload of {len} bytes (sum {}): status {status}, answer {value}",
            pattern_sum(len)
        ));
    }
    Ok(())
}

/// Streams `len` bytes to the device's `POST /echo` and checks every byte that comes
/// back, as it comes. Returns the time from the request to the last byte.
pub(crate) async fn stream_echo(device: &Peer, len: u64) -> Result<Duration, String> {
    let started = Instant::now();
    let request = post("/echo", Body::empty()).map(|_| PatternBody::new(len));
    let exchange = async {
        let response = device
            .request(request)
            .await
            .map_err(|e| format!("POST /echo (streamed): {e}"))?;
        if response.status() != StatusCode::OK {
            return Err(format!(
                "POST /echo (streamed): status {}",
                response.status()
            ));
        }
        let mut body = response.into_body();
        let (pattern, mut received) = (pattern(), 0u64);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                format!("POST /echo (streamed): response body after {received} bytes: {e}")
            })?;
            if let Some(data) = frame.data_ref() {
                if !matches_pattern(&pattern, received, data) {
                    return Err(format!(
                        "POST /echo (streamed): wrong bytes at offset {received}"
                    ));
                }
                received += data.len() as u64;
            }
        }
        if received != len {
            return Err(format!(
                "POST /echo (streamed): sent {len} bytes, got {received} back"
            ));
        }
        Ok(())
    };
    tokio::time::timeout(GUARD, exchange)
        .await
        .unwrap_or_else(|_| Err(format!("POST /echo (streamed): not done within {GUARD:?}")))?;
    Ok(started.elapsed())
}

/// Streams `len` bytes to the server's `POST /upload`; checks its count and sum. Returns
/// the time from the request to the answer.
pub(crate) async fn stream_upload(server: &Peer, len: u64) -> Result<Duration, String> {
    let started = Instant::now();
    upload(server, PatternBody::new(len), len).await?;
    Ok(started.elapsed())
}

/// One chunk of the pattern: byte `k` is `k % 251`.
fn pattern() -> Bytes {
    (0..CHUNK).map(|k| (k % PERIOD) as u8).collect()
}

/// Whether `data`, found at `offset` of a streamed body, is the pattern there.
fn matches_pattern(pattern: &Bytes, offset: u64, data: &[u8]) -> bool {
    let mut at = (offset % PERIOD as u64) as usize;
    let mut rest = data;
    while !rest.is_empty() {
        let n = rest.len().min(pattern.len() - at);
        if rest[..n] != pattern[at..at + n] {
            return false;
        }
        rest = &rest[n..];
        at = (at + n) % PERIOD;
    }
    true
}

/// The sum of the first `len` bytes of the pattern.
fn pattern_sum(len: u64) -> u64 {
    let period = PERIOD as u64;
    let (full, rest) = (len / period, len % period);
    full * (period * (period - 1) / 2) + rest * rest.saturating_sub(1) / 2
}

/// A request body of `len` pattern bytes, produced as it is sent (never held whole): each
/// frame is a slice of one shared chunk, so no byte is copied on this side.
struct PatternBody {
    chunk: Bytes,
    remaining: u64,
}

impl PatternBody {
    fn new(len: u64) -> Self {
        PatternBody {
            chunk: pattern(),
            remaining: len,
        }
    }
}

impl http_body::Body for PatternBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(CHUNK as u64);
        self.remaining -= n;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n as usize)))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_tokio::client::{Client, ClientConfig};
    use tether_tokio::server::{Server, ServerConfig, ServerEvent};

    /// Every check fails on a wrong answer: a device and a server that answer every
    /// request with 200 and a wrong body.
    #[tokio::test]
    async fn every_check_rejects_a_wrong_answer() {
        let wrong = || {
            tower::service_fn(|request: Request<Body>| async move {
                drop(request);
                let answer = r#"{"device":"other","bytes":1,"sum":0,"unix_ms":0}"#;
                Ok::<_, Infallible>(Response::new(Body::from(answer)))
            })
        };
        let (server, mut events) = Server::bind(ServerConfig::new(([127, 0, 0, 1], 0).into()))
            .await
            .unwrap();
        server.serve(wrong());
        let url = format!("ws://{}/", server.local_addr());
        let (client, _events) = Client::connect(&url, ClientConfig::new("{}")).unwrap();
        client.serve(wrong());
        // Registered on the server (its ACK arrived), so `server.peer` finds it.
        let id = loop {
            match events.recv().await {
                Some(ServerEvent::Received { id, .. }) => break id,
                Some(_) => {}
                None => panic!("server ended"),
            }
        };
        let device = server.peer(&id).unwrap();
        let upstream = client.peer();
        assert!(status(&device, "demo-sensor").await.is_err());
        assert!(time(&upstream, id).await.is_err());
        assert!(echoes(&device, 3).await.is_err());
        assert!(uploads(&upstream, 3).await.is_err());
        assert!(stream_echo(&device, 1 << 20).await.is_err());
        assert!(stream_upload(&upstream, 1 << 20).await.is_err());

        // The real APIs pass the same checks.
        server.serve(server_api());
        client.serve(client_api("demo-sensor"));
        status(&device, "demo-sensor").await.unwrap();
        time(&upstream, id).await.unwrap();
        echoes(&device, 3).await.unwrap();
        uploads(&upstream, 3).await.unwrap();
        stream_echo(&device, 1 << 20).await.unwrap();
        stream_upload(&upstream, 1 << 20).await.unwrap();
        // And answer what they do not serve with 404 or 405.
        let answer = device.request(get("/nope")).await.unwrap();
        assert_eq!(answer.status(), StatusCode::NOT_FOUND);
        let answer = upstream
            .request(post("/time", Body::empty()))
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::METHOD_NOT_ALLOWED);
        client.close().await;
    }

    #[test]
    fn pattern_checks_and_sums() {
        let p = pattern();
        assert_eq!(p.len() % PERIOD, 0);
        assert!(matches_pattern(&p, 0, &p[..1000]));
        assert!(matches_pattern(&p, 250, &[250, 0, 1]));
        assert!(matches_pattern(&p, CHUNK as u64 + 5, &p[5..p.len()]));
        assert!(!matches_pattern(&p, 1, &p[..10]));
        let brute = |len: usize| (0..len).map(|k| (k % PERIOD) as u64).sum::<u64>();
        for len in [0, 1, 2, 250, 251, 252, 1000, CHUNK + 17] {
            assert_eq!(pattern_sum(len as u64), brute(len), "{len}");
        }
    }
}
