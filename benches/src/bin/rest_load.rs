//! Load run: REST over one Tether connection, next to plain HTTP/1.1 on the same machine, in
//! the same run, over real loopback sockets. Both ends of both run in this one process on
//! one tokio runtime (two worker threads), so each measurement pays for both ends.
//!
//! ```text
//! rest_load [--concurrency C] [--requests N] [--body-mib M] [--rounds R] [--window-kib W]
//!           [--only small|large|tether-large|http1-large]
//! ```
//!
//! Defaults: C = 64, N = 20,000, M = 64, R = 3, and Tether's default configuration.
//! `--window-kib W` sets Tether's stream window and send buffer to W KiB and its
//! connection window to 4 W KiB on both ends (default 256 KiB, 256 KiB and 1 MiB), to see
//! how much of the large-body rate is flow control. `--only` runs one part: `small`, `large`
//! (the three large-body measurements), `tether-large` (only Tether's two large-body
//! transfers, e.g. under a profiler) or `http1-large` (only the HTTP/1.1 one).
//!
//! Measured, each round, in this order:
//!
//! - **small requests, Tether**: `C` callers, each sending `N / C` requests one after the
//!   other (`GET /small`, a 60-byte answer, status and length checked), all over the one
//!   Tether connection, once server → client (`Server::peer`) and once client → server
//!   (`Client::peer`): requests per second.
//! - **small requests, HTTP/1.1 baseline**: the same requests to a hyper HTTP/1.1 server,
//!   `C` callers each on its own keep-alive TCP connection (HTTP/1.1 runs one request at a
//!   time per connection, so this is the same concurrency).
//! - **one large body**: `M` MiB streamed in 64 KiB chunks to `POST /sink`, which counts the
//!   bytes as they arrive and answers the count (checked): Tether both ways, and HTTP/1.1
//!   on one keep-alive connection. MiB per second, from the request to the answer.
//!
//! A warm-up round (a tenth of the requests, a quarter of the body) comes first and is not
//! reported. Results and the commands that produced them: benches/RESULTS.md.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tether_proto::connection::Config;
use tether_proto::streams::StreamsConfig;
use tether_tokio::client::{Client, ClientConfig};
use tether_tokio::rest::{Body, Peer};
use tether_tokio::server::{Server, ServerConfig, ServerEvent};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// The answer of `GET /small`.
const SMALL: &[u8] = b"{\"ok\":true,\"pad\":\"0123456789abcdef0123456789abcdef0123456\"}\n";
/// Chunk size of the large body, on both transports.
const CHUNK: usize = 64 * 1024;

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    concurrency: usize,
    requests: usize,
    body_mib: u64,
    rounds: usize,
    window_kib: Option<u32>,
    only: Only,
}

/// Which measurements run (`--only`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Only {
    All,
    Small,
    Large,
    TetherLarge,
    Http1Large,
}

impl Only {
    fn small(self) -> bool {
        matches!(self, Only::All | Only::Small)
    }
    fn large(self) -> bool {
        matches!(self, Only::All | Only::Large | Only::TetherLarge)
    }
    fn http1_large(self) -> bool {
        matches!(self, Only::All | Only::Large | Only::Http1Large)
    }
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        concurrency: 64,
        requests: 20_000,
        body_mib: 64,
        rounds: 3,
        window_kib: None,
        only: Only::All,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        if flag == "--only" {
            a.only = match value.as_str() {
                "small" => Only::Small,
                "large" => Only::Large,
                "tether-large" => Only::TetherLarge,
                "http1-large" => Only::Http1Large,
                other => {
                    return Err(format!(
                        "--only: small, large, tether-large or http1-large, not {other}"
                    ))
                }
            };
            continue;
        }
        let n: usize = value
            .parse()
            .ok()
            .filter(|&n| n > 0)
            .ok_or(format!("{flag}: not a positive number: {value}"))?;
        match flag.as_str() {
            "--concurrency" => a.concurrency = n,
            "--requests" => a.requests = n,
            "--body-mib" => a.body_mib = n as u64,
            "--rounds" => a.rounds = n,
            "--window-kib" => {
                a.window_kib = Some(
                    u32::try_from(n)
                        .ok()
                        .filter(|&w| w <= 1 << 20)
                        .ok_or("--window-kib: at most 1048576")?,
                )
            }
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.requests < a.concurrency {
        return Err("--requests must be at least --concurrency".into());
    }
    Ok(a)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let args = args().map_err(|e| {
        format!(
            "{e}\nusage: rest_load [--concurrency C] [--requests N] [--body-mib M] [--rounds R] [--window-kib W] [--only small|large|tether-large|http1-large]"
        )
    })?;
    let (c, n, mib) = (args.concurrency, args.requests, args.body_mib);
    let tether = Tether::start(args.window_kib).await?;
    let mut http1 = Http1::start(c).await?;
    println!(
        "rest_load: {c} concurrent callers, {n} small requests per measurement, {mib} MiB body; {} rounds after a warm-up; tether windows: {}",
        args.rounds,
        args.window_kib.map_or("default".into(), |w| format!("stream {w} KiB, connection {} KiB", 4 * w))
    );

    // Warm-up: connections, allocator, caches.
    let only = args.only;
    let warm = (n / 10).max(c);
    if only.small() {
        tether_small(&tether.device, c, warm).await?;
        tether_small(&tether.upstream, c, warm).await?;
        http1_small(&mut http1.conns, warm).await?;
    }
    if only.large() {
        tether_large(&tether.upstream, (mib << 20) / 4).await?;
    }
    if only.http1_large() {
        http1_large(&mut http1.large, (mib << 20) / 4).await?;
    }

    // A measurement left out by `--only` is NaN, printed as such.
    let mut rows: Vec<[f64; 6]> = Vec::new();
    for round in 1..=args.rounds {
        let mut row = [f64::NAN; 6];
        if only.small() {
            row[0] = rate(n as f64, tether_small(&tether.device, c, n).await?);
            row[1] = rate(n as f64, tether_small(&tether.upstream, c, n).await?);
            row[2] = rate(n as f64, http1_small(&mut http1.conns, n).await?);
        }
        if only.large() {
            row[3] = rate(mib as f64, tether_large(&tether.upstream, mib << 20).await?);
            row[4] = rate(mib as f64, tether_large(&tether.device, mib << 20).await?);
        }
        if only.http1_large() {
            row[5] = rate(mib as f64, http1_large(&mut http1.large, mib << 20).await?);
        }
        let [s2c, c2s, h, big_c2s, big_s2c, big_h] = row;
        println!(
            "round {round}: small req/s  tether s->c {s2c:.0}  tether c->s {c2s:.0}  http/1.1 {h:.0}   |   {mib} MiB body MiB/s  tether c->s {big_c2s:.0}  tether s->c {big_s2c:.0}  http/1.1 {big_h:.0}"
        );
        rows.push(row);
    }
    // Rates are medians over the rounds; ratios are medians of each round's own ratio
    // (the two transports measured seconds apart), which the machine's load moves less.
    let m: Vec<f64> = (0..6).map(|i| median(rows.iter().map(|r| r[i]))).collect();
    let ratio = |i: usize, base: usize| median(rows.iter().map(|r| r[i] / r[base]));
    println!(
        "median of {} rounds (ratio: median of the rounds' tether / http/1.1):",
        rows.len()
    );
    println!(
        "  small requests, {c} at a time: tether server->client {:.0} req/s ({:.2}x), client->server {:.0} req/s ({:.2}x); http/1.1 over {c} keep-alive connections {:.0} req/s",
        m[0],
        ratio(0, 2),
        m[1],
        ratio(1, 2),
        m[2]
    );
    println!(
        "  one {mib} MiB body: tether client->server {:.0} MiB/s ({:.2}x), server->client {:.0} MiB/s ({:.2}x); http/1.1 {:.0} MiB/s",
        m[3],
        ratio(3, 5),
        m[4],
        ratio(4, 5),
        m[5]
    );
    tether.client.close().await;
    tether.server.shutdown(Duration::from_secs(5)).await?;
    Ok(())
}

fn rate(amount: f64, took: Duration) -> f64 {
    amount / took.as_secs_f64()
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

// ---- the API both transports serve: GET /small, POST /sink

/// What a request asks for.
enum Route {
    Small,
    Sink,
    Other,
}

fn route<B>(request: &Request<B>) -> Route {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/small") => Route::Small,
        (&Method::POST, "/sink") => Route::Sink,
        _ => Route::Other,
    }
}

/// Reads a body to its end, counting its bytes.
async fn count<B: http_body::Body + Unpin>(mut body: B) -> Result<u64, B::Error>
where
    B::Data: bytes::Buf,
{
    let mut n = 0;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            n += bytes::Buf::remaining(data) as u64;
        }
    }
    Ok(n)
}

fn answer<B: From<Bytes>>(status: StatusCode, body: Bytes) -> Response<B> {
    let mut response = Response::new(B::from(body));
    *response.status_mut() = status;
    response
}

/// Checks a response to `GET /small`.
async fn check_small<B>(response: Response<B>) -> Result<(), Error>
where
    B: http_body::Body + Unpin,
    B::Data: bytes::Buf,
    B::Error: Into<Error>,
{
    let status = response.status();
    let n = count(response.into_body()).await.map_err(Into::into)?;
    if status != StatusCode::OK || n != SMALL.len() as u64 {
        return Err(format!("GET /small: {status}, {n} bytes").into());
    }
    Ok(())
}

/// Checks a response to `POST /sink` of `len` bytes.
async fn check_sink<B>(response: Response<B>, len: u64) -> Result<(), Error>
where
    B: http_body::Body + Unpin,
    B::Error: Into<Error>,
{
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(Into::into)?
        .to_bytes();
    if status != StatusCode::OK || body != len.to_string().as_bytes() {
        return Err(format!("POST /sink of {len} bytes: {status} {body:?}").into());
    }
    Ok(())
}

/// `len` bytes in `CHUNK`-sized slices of one shared buffer (no copy on the sending side).
struct Chunks {
    chunk: Bytes,
    remaining: u64,
}

impl Chunks {
    fn new(len: u64) -> Self {
        Chunks {
            chunk: Bytes::from(vec![0x5a; CHUNK]),
            remaining: len,
        }
    }
}

impl http_body::Body for Chunks {
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

// ---- Tether

struct Tether {
    server: Server,
    client: Client,
    /// The server's peer: calls the client's API.
    device: Peer,
    /// The client's peer: calls the server's API.
    upstream: Peer,
}

impl Tether {
    async fn start(window_kib: Option<u32>) -> Result<Self, Error> {
        let mut sconfig = ServerConfig::new(([127, 0, 0, 1], 0).into());
        let mut cconfig = ClientConfig::new("{}");
        if let Some(w) = window_kib {
            let streams = StreamsConfig {
                initial_stream_window: w * 1024,
                initial_connection_window: 4 * w * 1024,
                max_send_buffer: w as usize * 1024,
                ..StreamsConfig::default()
            };
            let connection = Arc::new(Config::builder().streams(streams).build()?);
            sconfig.connection = connection.clone();
            cconfig.connection = connection;
        }
        let (server, mut events) = Server::bind(sconfig).await?;
        server.serve(tower::service_fn(tether_api));
        let url = format!("ws://{}/", server.local_addr());
        let (client, _client_events) = Client::connect(&url, cconfig)?;
        client.serve(tower::service_fn(tether_api));
        let id = loop {
            match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
                Ok(Some(ServerEvent::Received { id, .. })) => break id,
                Ok(Some(_)) => {}
                other => return Err(format!("no connection: {other:?}").into()),
            }
        };
        let device = server.peer(&id).ok_or("connection gone")?;
        let upstream = client.peer();
        Ok(Tether {
            server,
            client,
            device,
            upstream,
        })
    }
}

async fn tether_api(request: Request<Body>) -> Result<Response<Body>, Infallible> {
    Ok(match route(&request) {
        Route::Small => answer(StatusCode::OK, Bytes::from_static(SMALL)),
        Route::Sink => match count(request.into_body()).await {
            Ok(n) => answer(StatusCode::OK, Bytes::from(n.to_string())),
            Err(e) => answer(StatusCode::BAD_REQUEST, Bytes::from(e.to_string())),
        },
        Route::Other => answer(StatusCode::NOT_FOUND, Bytes::new()),
    })
}

/// `n` small requests by `c` callers over one Tether connection.
async fn tether_small(peer: &Peer, c: usize, n: usize) -> Result<Duration, Error> {
    let started = Instant::now();
    let mut callers = JoinSet::new();
    for i in 0..c {
        let peer = peer.clone();
        let mine = n / c + usize::from(i < n % c);
        callers.spawn(async move {
            for _ in 0..mine {
                let request = Request::get("/small").body(Body::empty())?;
                check_small(peer.request(request).await?).await?;
            }
            Ok::<_, Error>(())
        });
    }
    while let Some(done) = callers.join_next().await {
        done??;
    }
    Ok(started.elapsed())
}

/// One body of `len` bytes over the Tether connection.
async fn tether_large(peer: &Peer, len: u64) -> Result<Duration, Error> {
    let started = Instant::now();
    let request = Request::post("/sink").body(Chunks::new(len))?;
    check_sink(peer.request(request).await?, len).await?;
    Ok(started.elapsed())
}

// ---- HTTP/1.1 with hyper, the baseline

struct Http1 {
    /// One keep-alive connection per caller, for the small requests.
    conns: Vec<SendRequest<Empty<Bytes>>>,
    /// One keep-alive connection for the large body.
    large: SendRequest<Chunks>,
}

impl Http1 {
    async fn start(c: usize) -> Result<Self, Error> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new().serve_connection(
                        TokioIo::new(stream),
                        hyper::service::service_fn(http1_api),
                    ),
                );
            }
        });
        let mut conns = Vec::with_capacity(c);
        for _ in 0..c {
            conns.push(http1_connect(addr).await?);
        }
        let large = http1_connect(addr).await?;
        Ok(Http1 { conns, large })
    }
}

async fn http1_connect<B>(addr: std::net::SocketAddr) -> Result<SendRequest<B>, Error>
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Error>,
{
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn http1_api(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match route(&request) {
        Route::Small => answer(StatusCode::OK, Bytes::from_static(SMALL)),
        Route::Sink => match count(request.into_body()).await {
            Ok(n) => answer(StatusCode::OK, Bytes::from(n.to_string())),
            Err(e) => answer(StatusCode::BAD_REQUEST, Bytes::from(e.to_string())),
        },
        Route::Other => answer(StatusCode::NOT_FOUND, Bytes::new()),
    })
}

/// `n` small requests by one caller per connection (each caller borrows its connection
/// for the run and hands it back).
async fn http1_small(
    conns: &mut Vec<SendRequest<Empty<Bytes>>>,
    n: usize,
) -> Result<Duration, Error> {
    let started = Instant::now();
    let c = conns.len();
    let mut callers = JoinSet::new();
    for (i, mut conn) in conns.drain(..).enumerate() {
        let mine = n / c + usize::from(i < n % c);
        callers.spawn(async move {
            for _ in 0..mine {
                conn.ready().await?;
                let request = Request::get("/small")
                    .header(http::header::HOST, "127.0.0.1")
                    .body(Empty::new())?;
                check_small(conn.send_request(request).await?).await?;
            }
            Ok::<_, Error>(conn)
        });
    }
    while let Some(done) = callers.join_next().await {
        conns.push(done??);
    }
    Ok(started.elapsed())
}

/// One body of `len` bytes over one HTTP/1.1 connection.
async fn http1_large(conn: &mut SendRequest<Chunks>, len: u64) -> Result<Duration, Error> {
    let started = Instant::now();
    conn.ready().await?;
    let request = Request::post("/sink")
        .header(http::header::HOST, "127.0.0.1")
        .header(http::header::CONTENT_LENGTH, len)
        .body(Chunks::new(len))?;
    check_sink(conn.send_request(request).await?, len).await?;
    Ok(started.elapsed())
}
