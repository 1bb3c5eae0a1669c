//! Load run: what a peer that grants no credit costs a `tether server --upstream`
//! (issue 9 item 2, spec/protocol.md §10.3, §10.8).
//!
//! `zero_window TETHER_BIN CONNECTIONS [STREAMS] [SECONDS]` starts a local upstream whose
//! `/big` answers 50 MB, spawns `TETHER_BIN server --upstream` on it as a child process,
//! and opens CONNECTIONS hand-driven Tether clients that announce INITIAL_STREAM_WINDOW = 0
//! and INITIAL_CONNECTION_WINDOW = 0, open STREAMS (default 128) `GET /big` each, answer
//! heartbeats and never read. It prints the child's resident set (VmRSS of
//! `/proc/<pid>/status`) before the attack and every second for SECONDS (default 10; keep
//! it below the server's stall timeout, 30 s by default, to see the pinned state), and the
//! growth per connection. Extra arguments after `--` go to `tether server`.
//!
//! With `ZERO_WINDOW_MODE=noread` the clients announce the default windows instead and,
//! once their requests are out, never read their socket again (the other variant of the
//! attack: the server can only notice at its heartbeat timeout).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::builder::RangedU64ValueParser;
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, Response, Uri};
use http_body::Frame;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tether_proto::connection::{Config, Event};
use tether_proto::streams::{StreamEvent, StreamsConfig};
use tether_proto::{Connection, RequestHead, WsMessage};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// The size of one upstream answer.
const ANSWER: usize = 50_000_000;

/// A 50 MB body, generated as fast as it is read.
struct Big {
    left: usize,
    chunk: Bytes,
}

impl http_body::Body for Big {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(self.chunk.len());
        self.left -= n;
        Poll::Ready(Some(Ok(Frame::data(self.chunk.slice(..n)))))
    }
}

async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let chunk = chunk.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_: Request<Incoming>| {
                    let body = Big {
                        left: ANSWER,
                        chunk: chunk.clone(),
                    };
                    async move {
                        let mut response = Response::new(body);
                        response
                            .headers_mut()
                            .insert("content-length", ANSWER.into());
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// Resident set of `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("procfs");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

/// One attacking connection: zero windows, `streams` GETs, reads (so tungstenite answers
/// pings) and never grants credit. Counts response heads, streams that ended (the server
/// reset them) and connections that completed the handshake.
async fn attack(addr: SocketAddr, streams: usize, counts: Arc<[AtomicUsize; 3]>) {
    let mut request = format!("ws://{addr}/").into_client_request().expect("url");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "tether.v1".parse().expect("value"),
    );
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (mut ws, _) = tokio_tungstenite::client_async(request, tcp)
        .await
        .expect("upgrade");
    let no_read = std::env::var("ZERO_WINDOW_MODE").is_ok_and(|m| m == "noread");
    let windows = if no_read {
        StreamsConfig::default()
    } else {
        StreamsConfig {
            initial_stream_window: 0,
            initial_connection_window: 0,
            ..StreamsConfig::default()
        }
    };
    let config = Config::builder().streams(windows).build().expect("config");
    let mut conn =
        Connection::client(Arc::new(config), Bytes::new(), None, Instant::now()).expect("client");
    let mut opened = false;
    loop {
        if conn.is_established() && !opened {
            opened = true;
            counts[2].fetch_add(1, Ordering::Relaxed);
            for _ in 0..streams {
                let head = RequestHead::new(Method::GET, Uri::from_static("/big"));
                if conn.open(head, true, None, Instant::now()).is_err() {
                    break;
                }
            }
        }
        while let Some(msg) = conn.poll_transmit().map(tether_proto::WsMessage::from) {
            if let WsMessage::Binary(b) = msg {
                if ws.send(Message::Binary(b)).await.is_err() {
                    return;
                }
            }
        }
        if no_read && opened {
            // Hold the socket open, never read it again.
            std::future::pending::<()>().await;
        }
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Stream(StreamEvent::Response { .. }) => {
                    counts[0].fetch_add(1, Ordering::Relaxed);
                }
                Event::Stream(StreamEvent::Closed { .. }) => {
                    counts[1].fetch_add(1, Ordering::Relaxed);
                }
                _ => {}
            }
        }
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => {
                conn.handle_message(WsMessage::Binary(b), Instant::now())
            }
            Some(Ok(_)) => {}
            _ => return,
        }
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What a peer that grants no credit costs a `tether server --upstream`: its resident set,
/// per attacking connection.
///
/// Starts a local upstream whose `/big` answers 50 MB and `TETHER_BIN server --upstream` on
/// it, then opens CONNECTIONS clients that announce zero windows, open STREAMS `GET /big`
/// each and never read. Prints the server's VmRSS before and every second. With
/// `ZERO_WINDOW_MODE=noread` the clients announce the default windows and stop reading
/// their socket instead.
#[derive(Parser)]
#[command(name = "zero_window")]
struct Args {
    /// The `tether` binary to attack: run as `TETHER_BIN server --listen ADDR --upstream URL`.
    #[arg(value_name = "TETHER_BIN")]
    bin: PathBuf,
    /// Attacking connections, each a hand-driven Tether client (at least 1).
    #[arg(value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    connections: usize,
    /// `GET /big` streams each connection opens.
    #[arg(default_value_t = 128)]
    streams: usize,
    /// How long to watch the server's memory, in seconds (keep it below the server's stall
    /// timeout, 30 s by default, to see the pinned state).
    #[arg(default_value_t = 10)]
    seconds: u64,
    /// More arguments for `tether server`, after `--`.
    #[arg(last = true, value_name = "SERVER_ARG")]
    server_args: Vec<String>,
}

#[tokio::main]
async fn main() {
    let Args {
        bin,
        connections,
        streams,
        seconds,
        server_args: extra,
    } = Args::parse();

    let up = upstream().await;
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let listen: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let child = Command::new(&bin)
        .args(["server", "--listen", &listen.to_string(), "--upstream"])
        .arg(format!("http://{up}/"))
        .args(&extra)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn tether server");
    let server = Killed(child);
    let pid = server.0.id();
    for _ in 0..100 {
        if TcpStream::connect(listen).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline = rss_kib(pid);
    println!("tether server pid {pid}: baseline VmRSS {baseline} KiB");
    let counts = Arc::new([
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    ]);
    for _ in 0..connections {
        tokio::spawn(attack(listen, streams, counts.clone()));
    }
    let started = Instant::now();
    let mut peak = baseline;
    for s in 1..=seconds {
        tokio::time::sleep_until((started + Duration::from_secs(s)).into()).await;
        let rss = rss_kib(pid);
        peak = peak.max(rss);
        println!(
            "t={s:>3}s  VmRSS {rss:>8} KiB  (+{:>7} KiB, {:>6} KiB per connection)  connected {}  heads {}  ended {}",
            rss.saturating_sub(baseline),
            rss.saturating_sub(baseline) / connections as u64,
            counts[2].load(Ordering::Relaxed),
            counts[0].load(Ordering::Relaxed),
            counts[1].load(Ordering::Relaxed)
        );
    }
    let grown = peak.saturating_sub(baseline);
    println!(
        "{connections} connection(s) x {streams} streams: peak growth {grown} KiB = {:.1} MiB per connection",
        grown as f64 / 1024.0 / connections as f64
    );
}

#[cfg(test)]
mod tests {
    use super::Args;
    use clap::Parser;

    #[test]
    fn connections_below_one_or_not_a_number_are_refused() {
        for bad in ["0", "-1", "many", ""] {
            assert!(
                Args::try_parse_from(["zero_window", "tether", bad]).is_err(),
                "{bad:?} was accepted"
            );
        }
        let args = Args::try_parse_from(["zero_window", "tether", "1"]).unwrap();
        assert_eq!((args.connections, args.streams, args.seconds), (1, 128, 10));
    }
}
