//! Load run: REST over one Tether connection, next to hyper's HTTP/1.1 and HTTP/2 on the same
//! machine, in the same run, over real loopback sockets, with a raw WebSocket ping-pong as
//! the floor of one round trip. Both ends of everything run in this one process on one tokio
//! runtime (two worker threads), so each measurement pays for both ends.
//!
//! ```text
//! rest_load [--json] [--split] [--concurrency C[,C...]] [--requests N] [--body-mib M] [--rounds R]
//!           [--window-kib W] [--frame-kib F] [--chunk-kib K]
//!           [--only small|tether-small|h2-small|http1-small|large|tether-large|http1-large|h2-large|hol|floor]
//! ```
//!
//! Defaults: C = 1,128 (each listed concurrency is measured), N = 20,000, M = 256, R = 5, and
//! Tether's default configuration. `--window-kib W` sets Tether's stream window and send
//! buffer to W KiB and its connection window to 4 W KiB on both ends (default 256 KiB,
//! 256 KiB and 1 MiB), to see how much of the large-body rate is flow control.
//! `--frame-kib F` sets Tether's largest frame payload to F KiB on both ends (default 64),
//! and `--chunk-kib K` the large bodies' chunk size for every protocol (default 64; a DATA
//! frame is never larger than its chunk): together they show what frame size does
//! (RESULTS.md, "Allocations reused"). `--only` runs
//! one part: `small`, `tether-small` (only Tether's, e.g. under a profiler), `h2-small`
//! (only h2's, the same under a profiler, to compare), `http1-small`, `large` (the
//! four large-body measurements and the large floor), `tether-large` (only
//! Tether's two large-body transfers, e.g. under a profiler), `http1-large`, `h2-large`,
//! `hol` or `floor` (both floors). `--json` prints one JSON object on stdout (the human text goes to
//! stderr then); a measurement that did not run is `null` in it.
//!
//! By default every end runs in one tokio runtime of two worker threads, so the two ends
//! of a connection compete for the same two workers. `--split` runs the server ends
//! (Tether's server, the HTTP/1.1, h2 and echo servers) in a runtime of one worker of
//! their own and the client ends in another of one worker, the way two processes would
//! each have their own core: the same two threads, but no end can run on the other's.
//!
//! Measured, each round, in this order:
//!
//! - **small requests**, for each concurrency C: C callers, each sending its share of N
//!   requests one after the other (`GET /small`, a 60-byte answer, status and length
//!   checked), timing each request. Tether: all C over the one connection, once
//!   server → client (`Server::peer`) and once client → server (`Client::peer`). HTTP/1.1:
//!   one keep-alive TCP connection per caller (HTTP/1.1 runs one request at a time per
//!   connection, so this is the same concurrency). HTTP/2: all C callers as concurrent
//!   streams on ONE h2c connection (prior knowledge, no upgrade), like Tether. Requests per
//!   second, and the p50 / p99 of the requests' latencies.
//! - **one large body**: M MiB streamed in 64 KiB chunks (`--chunk-kib`) to `POST /sink`, which counts the
//!   bytes as they arrive and answers the count (checked): Tether both ways, HTTP/1.1 on one
//!   keep-alive connection, HTTP/2 on the h2 connection. MiB per second, from the request to
//!   the answer.
//! - **head-of-line**: while one M MiB body streams client → server on the Tether
//!   connection, `GET /small` requests client → server on the SAME connection, one at a
//!   time, from when the first MiB of the body has been handed over until its answer
//!   arrives: their p50 / p99 latency and how many fitted. The same on the h2 connection,
//!   for comparison.
//! - **floor**: N round trips of one 64-byte binary message echoed over one raw
//!   tokio-tungstenite WebSocket on loopback (one message at a time, `TCP_NODELAY`): the
//!   least one request over a WebSocket can take, in µs (mean, p50, p99). And one M MiB
//!   body client → server over the same WebSocket as 64 KiB binary messages (`--chunk-kib`), written as one
//!   stream and counted by the echo server: the least a body over tokio-tungstenite can take
//!   (its default 128 KiB read buffer, no framing or flow control of ours, but the masking
//!   RFC 6455 §5.3 requires), in MiB per second (`floor_large_mibps`; `large_vs_floor` is
//!   Tether client → server against it, `floor_large_vs_http1` the floor against HTTP/1.1).
//!   Two more floors of the same two measurements:
//!   - over tokio-tungstenite configured as Tether's WebSocket is (`floor_ws1k_rtt_us`): a
//!     1 KiB read buffer, where the default one (above) is 128 KiB and tungstenite
//!     zero-fills it up to its size before every read;
//!   - with the WebSocket frames written and read by hand over a plain tokio `TcpStream`
//!     (`floor_frames_rtt_us`, `floor_frames_large_mibps`): what a round trip or a masked
//!     body costs with no WebSocket library's work per message.
//!
//!   `floor_ws_vs_http1`, `floor_ws1k_vs_http1` and `floor_frames_vs_http1` are each
//!   floor's round trips per second against HTTP/1.1 one request at a time, and
//!   `small_c1_vs_floor_ws`, `…_ws1k`, `…_frames` Tether's one at a time against each;
//!   `floor_frames_large_vs_http1` and `large_vs_floor_frames` the same for the body.
//!
//! The JSON also names the kernel's TCP congestion control (`tcp_congestion_control`): with
//! BBR, a long-lived connection's bulk rate on loopback depends on what the connection
//! carried before (RESULTS.md, "The large body after the 128-in-flight phase").
//!
//! A warm-up round (a tenth of the requests, a quarter of the body) comes first and is not
//! reported. Rates and latencies are medians over the rounds. A ratio is Tether / peer: the
//! median of each round's own ratio, since the two are measured seconds apart and the
//! machine's load moves both. The unprefixed ratio keys (`small_c1_vs_http1`,
//! `small_c128_vs_h2`, `large_vs_http1`, `large_vs_h2`) use Tether client → server: the
//! same direction as the peers (the side that connected sends the request and the body, and
//! a WebSocket client masks what it sends); the `_s2c_` keys are the other direction.
//! hyper runs with its defaults (h2: 16 KiB frames; stream / connection windows 1 MiB /
//! 1 MiB on the server, 2 MiB / 5 MiB on the client; at most 200 concurrent streams).
//!
//! Results and the commands that produced them: benches/RESULTS.md.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::num::ParseIntError;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::error::ErrorKind;
use clap::{value_parser, ArgAction, CommandFactory, Parser, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::client::conn::http2::SendRequest as H2SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tether_proto::connection::Config;
use tether_proto::streams::StreamsConfig;
use tether_proto::Limits;
use tether_tokio::client::{Client, ClientConfig};
use tether_tokio::rest::{Body, Peer};
use tether_tokio::server::{Server, ServerConfig, ServerEvent};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// The answer of `GET /small`.
const SMALL: &[u8] = b"{\"ok\":true,\"pad\":\"0123456789abcdef0123456789abcdef0123456\"}\n";
/// Default chunk size of the large body, on every transport (`--chunk-kib`).
const CHUNK: usize = 64 * 1024;
/// Largest chunk `--chunk-kib` allows.
const MAX_CHUNK: usize = 1 << 20;
/// The bytes every large body is made of (sliced, never copied on the sending side).
static CHUNK_DATA: [u8; MAX_CHUNK] = [0x5a; MAX_CHUNK];
/// The large body's chunk size of this run, set once from `--chunk-kib`.
static CHUNK_LEN: OnceLock<usize> = OnceLock::new();

/// The large body's chunk size of this run.
fn chunk_len() -> usize {
    CHUNK_LEN.get().copied().unwrap_or(CHUNK)
}

/// The frames floor's body frames, and what its server reads at once: Tether's client
/// writer masks and writes in chunks of this size too (`transport::frames::WRITE_AT`).
const FLOOR_FRAME: usize = 256 * 1024;
/// The size of the floor's message.
const PING: usize = 64;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// With `--json`, the human text goes to stderr.
static JSON: AtomicBool = AtomicBool::new(false);

macro_rules! say {
    ($($t:tt)*) => {
        if JSON.load(Ordering::Relaxed) {
            eprintln!($($t)*)
        } else {
            println!($($t)*)
        }
    };
}

/// REST over one Tether connection, next to hyper's HTTP/1.1 and HTTP/2 and a raw WebSocket
/// floor, with both ends of everything in this process, over loopback.
///
/// A warm-up round (a tenth of the requests, a quarter of the body) comes first and is not
/// reported; rates and latencies are medians over the rounds after it. What each
/// measurement does and what each JSON key means: the docs at the top of
/// benches/src/bin/rest_load.rs.
#[derive(Parser)]
// An option given twice counts once, with its last value (`--concurrency` too).
#[command(name = "rest_load", args_override_self = true)]
struct Args {
    /// Print one JSON object on stdout (the human text goes to stderr then); a measurement
    /// that did not run is null in it.
    #[arg(long)]
    json: bool,
    /// Run the server ends (Tether's server, the HTTP/1.1, h2 and echo servers) in a tokio
    /// runtime of one worker of their own and the client ends in another of one worker, as
    /// two processes on two cores would. Without it every end shares one runtime of two
    /// workers.
    #[arg(long)]
    split: bool,
    /// Callers at once in the small-request measurements, as a comma-separated list: each
    /// concurrency listed is measured. Each must be at most --requests.
    #[arg(
        long,
        value_name = "C[,C...]",
        value_delimiter = ',',
        action = ArgAction::Set,
        default_value = "1,128",
        value_parser = positive::<usize>,
    )]
    concurrency: Vec<usize>,
    /// Small requests (`GET /small`) per measurement and round, shared among the callers;
    /// also the number of round trips each floor times.
    #[arg(long, value_name = "N", default_value_t = 20_000, value_parser = positive::<usize>)]
    requests: usize,
    /// Size of the large body, in MiB (sent in chunks of --chunk-kib).
    #[arg(long, value_name = "M", default_value_t = 256, value_parser = positive::<u64>)]
    body_mib: u64,
    /// Measured rounds, after the warm-up round.
    #[arg(long, value_name = "R", default_value_t = 5, value_parser = positive::<usize>)]
    rounds: usize,
    /// Tether's stream window and send buffer, in KiB (1 to 1048576), on both ends; its
    /// connection window becomes 4 W KiB. Without it, Tether's defaults: 256 KiB, 256 KiB
    /// and 1 MiB.
    #[arg(long, value_name = "W", value_parser = value_parser!(u32).range(1..=1 << 20))]
    window_kib: Option<u32>,
    /// Tether's largest frame payload (`Limits::max_frame_payload`, announced as
    /// MAX_FRAME_PAYLOAD) on both ends, in KiB (1 to 16384). Without it, 64 KiB. A DATA
    /// frame is never larger than the body's chunk, so a larger frame needs --chunk-kib too.
    #[arg(long, value_name = "F", value_parser = value_parser!(u32).range(1..=16384))]
    frame_kib: Option<u32>,
    /// Chunk size of the large bodies, in KiB (1 to 1024), for every protocol and floor
    /// alike (the frames floor keeps its 256 KiB frames).
    #[arg(long, value_name = "K", default_value_t = 64, value_parser = value_parser!(u32).range(1..=1024))]
    chunk_kib: u32,
    /// Run only one part of the measurements.
    #[arg(long, value_enum, default_value_t = Only::All)]
    only: Only,
}

/// Which measurements run (`--only`).
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Only {
    /// Everything.
    All,
    /// The small requests: Tether's, HTTP/1.1's and h2's.
    Small,
    /// Only Tether's small requests (e.g. under a profiler).
    TetherSmall,
    /// Only h2's small requests (the same under a profiler, to compare).
    H2Small,
    /// Only HTTP/1.1's small requests (the same under a profiler, to compare).
    Http1Small,
    /// The four large-body transfers and the large floors.
    Large,
    /// Only Tether's two large-body transfers (e.g. under a profiler).
    TetherLarge,
    /// Only HTTP/1.1's large body.
    Http1Large,
    /// Only h2's large body.
    H2Large,
    /// The head-of-line measurements, Tether's and h2's.
    Hol,
    /// The floors: their round trips and their large bodies.
    Floor,
}

impl Only {
    fn small(self) -> bool {
        matches!(
            self,
            Only::All | Only::Small | Only::TetherSmall | Only::H2Small | Only::Http1Small
        )
    }
    fn tether_small(self) -> bool {
        matches!(self, Only::All | Only::Small | Only::TetherSmall)
    }
    fn http1_small(self) -> bool {
        matches!(self, Only::All | Only::Small | Only::Http1Small)
    }
    fn h2_small(self) -> bool {
        matches!(self, Only::All | Only::Small | Only::H2Small)
    }
    fn tether_large(self) -> bool {
        matches!(self, Only::All | Only::Large | Only::TetherLarge)
    }
    fn http1_large(self) -> bool {
        matches!(self, Only::All | Only::Large | Only::Http1Large)
    }
    fn h2_large(self) -> bool {
        matches!(self, Only::All | Only::Large | Only::H2Large)
    }
    fn hol(self) -> bool {
        matches!(self, Only::All | Only::Hol)
    }
    fn floor(self) -> bool {
        matches!(self, Only::All | Only::Floor)
    }
    fn floor_large(self) -> bool {
        matches!(self, Only::All | Only::Large | Only::Floor)
    }
}

/// Parses a count that must be above zero (`--concurrency`, `--requests`, `--body-mib`,
/// `--rounds`).
fn positive<T>(value: &str) -> Result<T, String>
where
    T: FromStr<Err = ParseIntError> + From<u8> + PartialEq,
{
    match value.parse() {
        Ok(n) if n == T::from(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("{e}")),
    }
}

/// Everything measured, started once.
struct Rig {
    tether: Tether,
    http1: Http1,
    h2: H2SendRequest<Chunks>,
    h2_base: String,
    floor: Floor,
    /// The same echo with the read and write buffers Tether's WebSocket uses.
    floor_1k: Floor,
    frames: FramesFloor,
}

/// One round's figures by name (see `round`); NaN when not measured.
type Row = BTreeMap<String, f64>;

/// With `--split`: the runtime the server ends run in (see the module docs).
static SERVERS: OnceLock<tokio::runtime::Handle> = OnceLock::new();

/// Runs `f` where the server ends run: on the servers' runtime with `--split` (what it
/// spawns is spawned there, and the sockets it opens are that runtime's), else here.
async fn on_servers<T: Send + 'static>(f: impl Future<Output = T> + Send + 'static) -> T {
    match SERVERS.get() {
        Some(servers) => servers.spawn(f).await.expect("the servers' task"),
        None => f.await,
    }
}

fn main() -> Result<(), Error> {
    let args = Args::parse();
    if args.concurrency.iter().any(|&c| args.requests < c) {
        Args::command()
            .error(
                ErrorKind::ArgumentConflict,
                "--requests must be at least every --concurrency",
            )
            .exit();
    }
    JSON.store(args.json, Ordering::Relaxed);
    let runtime = |workers: usize, name: &str| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name(name)
            .enable_all()
            .build()
    };
    let clients = if args.split {
        // Kept for the whole run: the servers live until the process ends.
        let servers: &'static tokio::runtime::Runtime = Box::leak(Box::new(runtime(1, "servers")?));
        let _ = SERVERS.set(servers.handle().clone());
        runtime(1, "clients")?
    } else {
        runtime(2, "tokio-runtime-worker")?
    };
    // Everything runs in a spawned task, on the runtime's worker threads: the main thread
    // (where `main`'s own future runs) would add a cross-thread wake-up to every step the
    // measuring loop takes itself (the floor, the head-of-line requests).
    clients.block_on(async { tokio::spawn(run(args)).await? })
}

async fn run(args: Args) -> Result<(), Error> {
    let _ = CHUNK_LEN.set(args.chunk_kib as usize * 1024);
    let max_c = args.concurrency.iter().copied().max().unwrap_or(1);
    let (h2, h2_base) = h2_start().await?;
    let mut rig = Rig {
        tether: Tether::start(args.window_kib, args.frame_kib).await?,
        http1: Http1::start(max_c).await?,
        h2,
        h2_base,
        floor: Floor::start(None).await?,
        floor_1k: Floor::start(Some(tether_ws_config())).await?,
        frames: FramesFloor::start().await?,
    };
    let (n, mib) = (args.requests, args.body_mib);
    say!(
        "rest_load: concurrency {:?}, {n} small requests per measurement, {mib} MiB body in {} KiB chunks; {} rounds after a warm-up; tether windows: {}; tether frames: {}; {}",
        args.concurrency,
        args.chunk_kib,
        args.rounds,
        args.window_kib.map_or("default".into(), |w| format!("stream {w} KiB, connection {} KiB", 4 * w)),
        args.frame_kib.map_or("default".into(), |f| format!("{f} KiB")),
        if args.split {
            "servers and clients on one worker each (--split)"
        } else {
            "one runtime of two workers"
        }
    );

    // The kernel's congestion control decides the large-body rates on loopback: with BBR,
    // its pacing can hold a long-lived connection's bulk transfer at half the rate it
    // reaches under CUBIC (RESULTS.md, "The large body after the 128-in-flight phase").
    let congestion = congestion_control();
    say!(
        "rest_load: TCP congestion control {}",
        congestion.as_deref().unwrap_or("unknown")
    );

    // Warm-up: connections, allocator, caches.
    let warm = (n / 10).max(max_c);
    round(&mut rig, &args, warm, (mib << 20) / 4).await?;

    let mut rows: Vec<Row> = Vec::new();
    for r in 1..=args.rounds {
        let row = round(&mut rig, &args, n, mib << 20).await?;
        say!("round {r}:");
        print_row(&row, &args);
        rows.push(row);
    }
    let keys: Vec<String> = rows[0].keys().cloned().collect();
    let mut out: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let mut medians = Row::new();
    for k in &keys {
        let m = median(rows.iter().map(|r| r[k]));
        medians.insert(k.clone(), m);
        out.insert(k.clone(), m.into());
    }
    // Ratios: Tether / peer, the median of the rounds' own ratios.
    let ratio = |a: &str, b: &str| {
        if rows[0].contains_key(a) && rows[0].contains_key(b) {
            median(rows.iter().map(|r| r[a] / r[b]))
        } else {
            f64::NAN
        }
    };
    let mut ratios = BTreeMap::new();
    for &c in &args.concurrency {
        for (dir, tag) in [("c2s", ""), ("s2c", "_s2c")] {
            for peer in ["http1", "h2"] {
                ratios.insert(
                    format!("small_c{c}{tag}_vs_{peer}"),
                    ratio(
                        &format!("small_c{c}_tether_{dir}_rps"),
                        &format!("small_c{c}_{peer}_rps"),
                    ),
                );
            }
        }
    }
    for (dir, tag) in [("c2s", ""), ("s2c", "_s2c")] {
        for peer in ["http1", "h2"] {
            ratios.insert(
                format!("large{tag}_vs_{peer}"),
                ratio(
                    &format!("large_tether_{dir}_mibps"),
                    &format!("large_{peer}_mibps"),
                ),
            );
        }
    }
    // How close the large body is to its floor, and how close the floor is to HTTP/1.1.
    ratios.insert(
        "large_vs_floor".into(),
        ratio("large_tether_c2s_mibps", "floor_large_mibps"),
    );
    ratios.insert(
        "floor_large_vs_http1".into(),
        ratio("floor_large_mibps", "large_http1_mibps"),
    );
    ratios.insert(
        "large_vs_floor_frames".into(),
        ratio("large_tether_c2s_mibps", "floor_frames_large_mibps"),
    );
    ratios.insert(
        "floor_frames_large_vs_http1".into(),
        ratio("floor_frames_large_mibps", "large_http1_mibps"),
    );
    // One round trip at a time: each floor's rate (1 / its mean round trip) against
    // HTTP/1.1's one request at a time, and Tether's against each floor.
    let per_round = |f: &dyn Fn(&Row) -> Option<f64>| {
        if rows.iter().all(|r| f(r).is_some()) {
            median(rows.iter().map(|r| f(r).unwrap_or(f64::NAN)))
        } else {
            f64::NAN
        }
    };
    for floor in ["ws", "ws1k", "frames"] {
        let key = format!("floor_{floor}_rtt_us");
        ratios.insert(
            format!("floor_{floor}_vs_http1"),
            per_round(&|r: &Row| Some(1e6 / r.get(&key)? / r.get("small_c1_http1_rps")?)),
        );
        ratios.insert(
            format!("small_c1_vs_floor_{floor}"),
            per_round(&|r: &Row| Some(r.get("small_c1_tether_c2s_rps")? * r.get(&key)? / 1e6)),
        );
    }
    // The keys the issue asks for are there even when a measurement did not run (null).
    for key in [
        "small_c1_vs_http1",
        "small_c128_vs_h2",
        "large_vs_http1",
        "large_vs_h2",
    ] {
        ratios.entry(key.to_owned()).or_insert(f64::NAN);
    }
    say!(
        "median of {} rounds (ratios: median of the rounds' own tether / peer; unprefixed = tether client->server):",
        rows.len()
    );
    print_row(&medians, &args);
    for (k, v) in &ratios {
        say!("  {k} = {v:.3}");
        out.insert(k.clone(), (*v).into());
    }
    out.entry("hol_p99_ms".into())
        .or_insert(serde_json::Value::Null);
    out.insert("rounds".into(), rows.len().into());
    out.insert("requests".into(), n.into());
    out.insert("body_mib".into(), mib.into());
    out.insert("concurrency".into(), args.concurrency.clone().into());
    out.insert("split".into(), args.split.into());
    out.insert(
        "tcp_congestion_control".into(),
        congestion.map_or(serde_json::Value::Null, Into::into),
    );
    out.insert(
        "tether_window_kib".into(),
        args.window_kib.map_or(serde_json::Value::Null, Into::into),
    );
    out.insert(
        "tether_frame_kib".into(),
        args.frame_kib.map_or(serde_json::Value::Null, Into::into),
    );
    out.insert("chunk_kib".into(), args.chunk_kib.into());
    if args.json {
        println!("{}", serde_json::to_string(&out)?);
    }
    rig.tether.client.close().await;
    rig.tether.server.shutdown(Duration::from_secs(5)).await?;
    Ok(())
}

/// One round of every measurement `--only` allows: `n` small requests per measurement,
/// bodies of `len` bytes.
async fn round(rig: &mut Rig, args: &Args, n: usize, len: u64) -> Result<Row, Error> {
    let mut row = Row::new();
    let only = args.only;
    let mib = len as f64 / (1 << 20) as f64;
    if only.small() {
        for &c in &args.concurrency {
            let mut runs = Vec::new();
            if only.tether_small() {
                runs.push(("tether_s2c", tether_small(&rig.tether.device, c, n).await?));
                runs.push((
                    "tether_c2s",
                    tether_small(&rig.tether.upstream, c, n).await?,
                ));
            }
            if only.http1_small() {
                runs.push(("http1", http1_small(&mut rig.http1.conns, c, n).await?));
            }
            if only.h2_small() {
                runs.push(("h2", h2_small(&rig.h2, &rig.h2_base, c, n).await?));
            }
            for (name, (took, mut lat)) in runs {
                row.insert(format!("small_c{c}_{name}_rps"), rate(n as f64, took));
                row.insert(format!("small_c{c}_{name}_p50_ms"), ms(pct(&mut lat, 0.50)));
                row.insert(format!("small_c{c}_{name}_p99_ms"), ms(pct(&mut lat, 0.99)));
            }
        }
    }
    if only.tether_large() {
        let took = tether_large(&rig.tether.upstream, len, None).await?;
        row.insert("large_tether_c2s_mibps".into(), rate(mib, took));
        let took = tether_large(&rig.tether.device, len, None).await?;
        row.insert("large_tether_s2c_mibps".into(), rate(mib, took));
    }
    if only.floor_large() {
        let took = rig.floor.large(len).await?;
        row.insert("floor_large_mibps".into(), rate(mib, took));
        let took = rig.frames.large(len).await?;
        row.insert("floor_frames_large_mibps".into(), rate(mib, took));
    }
    if only.http1_large() {
        let took = http1_large(&mut rig.http1.large, len).await?;
        row.insert("large_http1_mibps".into(), rate(mib, took));
    }
    if only.h2_large() {
        let took = h2_large(rig.h2.clone(), rig.h2_base.clone(), len, None).await?;
        row.insert("large_h2_mibps".into(), rate(mib, took));
    }
    if only.hol() {
        let (took, mut lat) = tether_hol(&rig.tether.upstream, len).await?;
        row.insert("hol_body_mibps".into(), rate(mib, took));
        row.insert("hol_requests".into(), lat.len() as f64);
        row.insert("hol_p50_ms".into(), ms(pct(&mut lat, 0.50)));
        row.insert("hol_p99_ms".into(), ms(pct(&mut lat, 0.99)));
        let (took, mut lat) = h2_hol(&rig.h2, &rig.h2_base, len).await?;
        row.insert("hol_h2_body_mibps".into(), rate(mib, took));
        row.insert("hol_h2_requests".into(), lat.len() as f64);
        row.insert("hol_h2_p50_ms".into(), ms(pct(&mut lat, 0.50)));
        row.insert("hol_h2_p99_ms".into(), ms(pct(&mut lat, 0.99)));
    }
    if only.floor() {
        let (took, mut lat) = rig.floor.run(n).await?;
        row.insert(
            "floor_ws_rtt_us".into(),
            took.as_secs_f64() * 1e6 / n as f64,
        );
        row.insert("floor_ws_rtt_p50_us".into(), us(pct(&mut lat, 0.50)));
        row.insert("floor_ws_rtt_p99_us".into(), us(pct(&mut lat, 0.99)));
        let (took, mut lat) = rig.floor_1k.run(n).await?;
        row.insert(
            "floor_ws1k_rtt_us".into(),
            took.as_secs_f64() * 1e6 / n as f64,
        );
        row.insert("floor_ws1k_rtt_p50_us".into(), us(pct(&mut lat, 0.50)));
        row.insert("floor_ws1k_rtt_p99_us".into(), us(pct(&mut lat, 0.99)));
        let (took, mut lat) = rig.frames.run(n).await?;
        row.insert(
            "floor_frames_rtt_us".into(),
            took.as_secs_f64() * 1e6 / n as f64,
        );
        row.insert("floor_frames_rtt_p50_us".into(), us(pct(&mut lat, 0.50)));
        row.insert("floor_frames_rtt_p99_us".into(), us(pct(&mut lat, 0.99)));
    }
    Ok(row)
}

fn print_row(row: &Row, args: &Args) {
    let g = |k: String| row.get(&k).copied().unwrap_or(f64::NAN);
    for &c in &args.concurrency {
        if !row.contains_key(&format!("small_c{c}_tether_c2s_rps"))
            && !row.contains_key(&format!("small_c{c}_h2_rps"))
        {
            continue;
        }
        let mut line = format!("  small, {c} at a time (req/s, p50/p99 ms):");
        for (name, label) in [
            ("tether_s2c", "tether s->c"),
            ("tether_c2s", "tether c->s"),
            ("http1", "http/1.1"),
            ("h2", "h2"),
        ] {
            line += &format!(
                "  {label} {:.0} ({:.3}/{:.3})",
                g(format!("small_c{c}_{name}_rps")),
                g(format!("small_c{c}_{name}_p50_ms")),
                g(format!("small_c{c}_{name}_p99_ms")),
            );
        }
        say!("{line}");
    }
    say!(
        "  large body MiB/s: tether c->s {:.0}  tether s->c {:.0}  http/1.1 {:.0}  h2 {:.0}  floor (raw websocket c->s) {:.0}",
        g("large_tether_c2s_mibps".into()),
        g("large_tether_s2c_mibps".into()),
        g("large_http1_mibps".into()),
        g("large_h2_mibps".into()),
        g("floor_large_mibps".into()),
    );
    say!(
        "  large body floor, websocket frames by hand (c->s, masked): {:.0} MiB/s",
        g("floor_frames_large_mibps".into()),
    );
    say!(
        "  head-of-line (small c->s during a body c->s): tether p50/p99 {:.3}/{:.3} ms over {:.0} requests (body {:.0} MiB/s); h2 {:.3}/{:.3} ms over {:.0} (body {:.0} MiB/s)",
        g("hol_p50_ms".into()),
        g("hol_p99_ms".into()),
        g("hol_requests".into()),
        g("hol_body_mibps".into()),
        g("hol_h2_p50_ms".into()),
        g("hol_h2_p99_ms".into()),
        g("hol_h2_requests".into()),
        g("hol_h2_body_mibps".into()),
    );
    say!(
        "  floor (64-byte websocket ping-pong): {:.1} us per round trip, p50/p99 {:.1}/{:.1} us",
        g("floor_ws_rtt_us".into()),
        g("floor_ws_rtt_p50_us".into()),
        g("floor_ws_rtt_p99_us".into()),
    );
    say!(
        "  floor (the same, 1 KiB read buffer as Tether's): {:.1} us per round trip, p50/p99 {:.1}/{:.1} us",
        g("floor_ws1k_rtt_us".into()),
        g("floor_ws1k_rtt_p50_us".into()),
        g("floor_ws1k_rtt_p99_us".into()),
    );
    say!(
        "  floor (64-byte websocket frames by hand, no library): {:.1} us per round trip, p50/p99 {:.1}/{:.1} us",
        g("floor_frames_rtt_us".into()),
        g("floor_frames_rtt_p50_us".into()),
        g("floor_frames_rtt_p99_us".into()),
    );
}

/// The kernel's default TCP congestion control (Linux), which every socket here uses.
fn congestion_control() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_congestion_control").ok()?;
    Some(name.trim().to_owned())
}

fn rate(amount: f64, took: Duration) -> f64 {
    amount / took.as_secs_f64()
}

fn ms(d: Option<Duration>) -> f64 {
    d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

fn us(d: Option<Duration>) -> f64 {
    d.map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
}

/// The `p` quantile of `v` (nearest rank), `None` when empty.
fn pct(v: &mut [Duration], p: f64) -> Option<Duration> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

// ---- the API every transport serves: GET /small, POST /sink

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

/// `len` bytes in `CHUNK`-sized slices of one static buffer (no copy, no allocation on the
/// sending side); `sent`, when given, counts the bytes handed over.
struct Chunks {
    remaining: u64,
    sent: Option<Arc<AtomicU64>>,
}

impl Chunks {
    fn new(len: u64, sent: Option<Arc<AtomicU64>>) -> Self {
        Chunks {
            remaining: len,
            sent,
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
        let n = self.remaining.min(chunk_len() as u64);
        self.remaining -= n;
        if let Some(sent) = &self.sent {
            sent.fetch_add(n, Ordering::Relaxed);
        }
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
            &CHUNK_DATA[..n as usize],
        )))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Small requests one at a time until `body` finishes, starting once the body has handed
/// over its first MiB (`sent`); returns the body's time and the requests' latencies.
async fn during_body<F, R>(
    body: tokio::task::JoinHandle<Result<Duration, Error>>,
    sent: &AtomicU64,
    mut small: F,
) -> Result<(Duration, Vec<Duration>), Error>
where
    F: FnMut() -> R,
    R: std::future::Future<Output = Result<(), Error>>,
{
    while sent.load(Ordering::Relaxed) < 1 << 20 && !body.is_finished() {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut lat = Vec::new();
    while !body.is_finished() {
        let t = Instant::now();
        small().await?;
        lat.push(t.elapsed());
    }
    Ok((body.await??, lat))
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
    async fn start(window_kib: Option<u32>, frame_kib: Option<u32>) -> Result<Self, Error> {
        let mut sconfig = ServerConfig::new(([127, 0, 0, 1], 0).into());
        let mut cconfig = ClientConfig::new("{}");
        if window_kib.is_some() || frame_kib.is_some() {
            let mut builder = Config::builder();
            if let Some(w) = window_kib {
                builder = builder.streams(StreamsConfig {
                    initial_stream_window: w * 1024,
                    initial_connection_window: 4 * w * 1024,
                    max_send_buffer: w as usize * 1024,
                    ..StreamsConfig::default()
                });
            }
            if let Some(f) = frame_kib {
                // The head and metadata limits may not exceed the frame payload (spec §5).
                let d = Limits::default();
                let frame = f * 1024;
                builder = builder.limits(Limits {
                    max_frame_payload: frame,
                    max_head_size: d.max_head_size.min(frame),
                    max_metadata_size: d.max_metadata_size.min(frame),
                    ..d
                });
            }
            let connection = Arc::new(builder.build()?);
            sconfig.connection = connection.clone();
            cconfig.connection = connection;
        }
        let (server, mut events) = on_servers(Server::bind(sconfig)).await?;
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

async fn tether_one_small(peer: &Peer) -> Result<(), Error> {
    let request = Request::get("/small").body(Body::empty())?;
    check_small(peer.request(request).await?).await
}

/// `n` small requests by `c` callers over one Tether connection: the time, and each
/// request's latency.
async fn tether_small(peer: &Peer, c: usize, n: usize) -> Result<(Duration, Vec<Duration>), Error> {
    let started = Instant::now();
    let mut callers = JoinSet::new();
    for i in 0..c {
        let peer = peer.clone();
        let mine = n / c + usize::from(i < n % c);
        callers.spawn(async move {
            let mut lat = Vec::with_capacity(mine);
            for _ in 0..mine {
                let t = Instant::now();
                tether_one_small(&peer).await?;
                lat.push(t.elapsed());
            }
            Ok::<_, Error>(lat)
        });
    }
    let mut lat = Vec::with_capacity(n);
    while let Some(done) = callers.join_next().await {
        lat.extend(done??);
    }
    Ok((started.elapsed(), lat))
}

/// One body of `len` bytes over the Tether connection.
async fn tether_large(
    peer: &Peer,
    len: u64,
    sent: Option<Arc<AtomicU64>>,
) -> Result<Duration, Error> {
    let started = Instant::now();
    let request = Request::post("/sink").body(Chunks::new(len, sent))?;
    check_sink(peer.request(request).await?, len).await?;
    Ok(started.elapsed())
}

/// Head-of-line: small requests on `peer` while a body of `len` bytes goes the same way.
async fn tether_hol(peer: &Peer, len: u64) -> Result<(Duration, Vec<Duration>), Error> {
    let sent = Arc::new(AtomicU64::new(0));
    let body = tokio::spawn({
        let (peer, sent) = (peer.clone(), sent.clone());
        async move { tether_large(&peer, len, Some(sent)).await }
    });
    during_body(body, &sent, || tether_one_small(peer)).await
}

// ---- HTTP/1.1 with hyper, the first baseline

struct Http1 {
    /// One keep-alive connection per caller, for the small requests.
    conns: Vec<SendRequest<Empty<Bytes>>>,
    /// One keep-alive connection for the large body.
    large: SendRequest<Chunks>,
}

impl Http1 {
    async fn start(c: usize) -> Result<Self, Error> {
        let addr = on_servers(async {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(
                        TokioIo::new(stream),
                        hyper::service::service_fn(hyper_api),
                    ));
                }
            });
            Ok::<_, Error>(addr)
        })
        .await?;
        let mut conns = Vec::with_capacity(c);
        for _ in 0..c {
            conns.push(http1_connect(addr).await?);
        }
        let large = http1_connect(addr).await?;
        Ok(Http1 { conns, large })
    }
}

async fn http1_connect<B>(addr: SocketAddr) -> Result<SendRequest<B>, Error>
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

/// The API for hyper's servers, HTTP/1.1 and HTTP/2.
async fn hyper_api(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(match route(&request) {
        Route::Small => answer(StatusCode::OK, Bytes::from_static(SMALL)),
        Route::Sink => match count(request.into_body()).await {
            Ok(n) => answer(StatusCode::OK, Bytes::from(n.to_string())),
            Err(e) => answer(StatusCode::BAD_REQUEST, Bytes::from(e.to_string())),
        },
        Route::Other => answer(StatusCode::NOT_FOUND, Bytes::new()),
    })
}

/// `n` small requests by `c` callers, each on a connection of its own (borrowed from
/// `conns` for the run and handed back): the time, and each request's latency.
async fn http1_small(
    conns: &mut Vec<SendRequest<Empty<Bytes>>>,
    c: usize,
    n: usize,
) -> Result<(Duration, Vec<Duration>), Error> {
    let started = Instant::now();
    let mut callers = JoinSet::new();
    for (i, mut conn) in conns.drain(..c).enumerate() {
        let mine = n / c + usize::from(i < n % c);
        callers.spawn(async move {
            let mut lat = Vec::with_capacity(mine);
            for _ in 0..mine {
                let t = Instant::now();
                conn.ready().await?;
                let request = Request::get("/small")
                    .header(http::header::HOST, "127.0.0.1")
                    .body(Empty::new())?;
                check_small(conn.send_request(request).await?).await?;
                lat.push(t.elapsed());
            }
            Ok::<_, Error>((conn, lat))
        });
    }
    let mut lat = Vec::with_capacity(n);
    while let Some(done) = callers.join_next().await {
        let (conn, l) = done??;
        conns.push(conn);
        lat.extend(l);
    }
    Ok((started.elapsed(), lat))
}

/// One body of `len` bytes over one HTTP/1.1 connection.
async fn http1_large(conn: &mut SendRequest<Chunks>, len: u64) -> Result<Duration, Error> {
    let started = Instant::now();
    conn.ready().await?;
    let request = Request::post("/sink")
        .header(http::header::HOST, "127.0.0.1")
        .header(http::header::CONTENT_LENGTH, len)
        .body(Chunks::new(len, None))?;
    check_sink(conn.send_request(request).await?, len).await?;
    Ok(started.elapsed())
}

// ---- HTTP/2 with hyper (h2c, prior knowledge), the second baseline: ONE connection

/// Starts an h2c server and opens one connection to it: its sender (cloned per caller) and
/// the `http://addr` the requests' URIs start with.
async fn h2_start() -> Result<(H2SendRequest<Chunks>, String), Error> {
    let addr = on_servers(async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(
                    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(
                            TokioIo::new(stream),
                            hyper::service::service_fn(hyper_api),
                        ),
                );
            }
        });
        Ok::<_, Error>(addr)
    })
    .await?;
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok((sender, format!("http://{addr}")))
}

async fn h2_one_small(conn: &mut H2SendRequest<Chunks>, base: &str) -> Result<(), Error> {
    conn.ready().await?;
    let request = Request::get(format!("{base}/small")).body(Chunks::new(0, None))?;
    check_small(conn.send_request(request).await?).await
}

/// `n` small requests by `c` callers as concurrent streams on the one h2 connection.
async fn h2_small(
    conn: &H2SendRequest<Chunks>,
    base: &str,
    c: usize,
    n: usize,
) -> Result<(Duration, Vec<Duration>), Error> {
    let started = Instant::now();
    let mut callers = JoinSet::new();
    for i in 0..c {
        let (mut conn, base) = (conn.clone(), base.to_owned());
        let mine = n / c + usize::from(i < n % c);
        callers.spawn(async move {
            let mut lat = Vec::with_capacity(mine);
            for _ in 0..mine {
                let t = Instant::now();
                h2_one_small(&mut conn, &base).await?;
                lat.push(t.elapsed());
            }
            Ok::<_, Error>(lat)
        });
    }
    let mut lat = Vec::with_capacity(n);
    while let Some(done) = callers.join_next().await {
        lat.extend(done??);
    }
    Ok((started.elapsed(), lat))
}

/// One body of `len` bytes on the h2 connection.
async fn h2_large(
    mut conn: H2SendRequest<Chunks>,
    base: String,
    len: u64,
    sent: Option<Arc<AtomicU64>>,
) -> Result<Duration, Error> {
    let started = Instant::now();
    conn.ready().await?;
    let request = Request::post(format!("{base}/sink"))
        .header(http::header::CONTENT_LENGTH, len)
        .body(Chunks::new(len, sent))?;
    check_sink(conn.send_request(request).await?, len).await?;
    Ok(started.elapsed())
}

/// Head-of-line on the h2 connection, as `tether_hol`.
async fn h2_hol(
    conn: &H2SendRequest<Chunks>,
    base: &str,
    len: u64,
) -> Result<(Duration, Vec<Duration>), Error> {
    let sent = Arc::new(AtomicU64::new(0));
    let body = tokio::spawn(h2_large(
        conn.clone(),
        base.to_owned(),
        len,
        Some(sent.clone()),
    ));
    during_body(body, &sent, || {
        let (mut conn, base) = (conn.clone(), base.to_owned());
        async move { h2_one_small(&mut conn, &base).await }
    })
    .await
}

/// The WebSocket configuration of Tether's transport (`tether_tokio::transport::ws_config`
/// for 64 KiB messages): a 1 KiB read buffer, a 16 KiB write buffer.
fn tether_ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(16 * 1024)
        .max_write_buffer_size(128 * 1024)
        .max_message_size(Some(64 * 1024 + 64))
        .max_frame_size(Some(64 * 1024 + 64))
}

// ---- the frames floor: the same ping-pong, WebSocket frames written and read by hand

/// The echo of [`Floor::run`] without a WebSocket library: a 64-byte binary frame, masked
/// (RFC 6455 §5.2, §5.3) and written with one `write_all`, read back unmasked. The echo
/// server reads what the socket has, answers every whole frame in it, and writes the
/// answers with one `write_all`. No opening handshake (its cost is once per connection) and
/// only the frames this ping-pong sends are understood: it is a measuring instrument for
/// what a WebSocket round trip costs over tokio with no library's work per message, not a
/// WebSocket. Against it, [`Floor`] shows what tokio-tungstenite adds.
struct FramesFloor {
    stream: TcpStream,
    /// The frame written, then what was read back.
    buf: bytes::BytesMut,
    /// The state of the masking keys' generator (xorshift; the keys of a floor need not be
    /// unpredictable, only different).
    key: u32,
}

impl FramesFloor {
    async fn start() -> Result<Self, Error> {
        use bytes::BytesMut;
        let addr = on_servers(async {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(frames_server(stream));
                }
            });
            Ok::<_, Error>(addr)
        })
        .await?;
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(FramesFloor {
            stream,
            buf: BytesMut::with_capacity(4096),
            key: 0x9e37_79b9,
        })
    }

    /// The next masking key.
    fn next_key(&mut self) -> [u8; 4] {
        self.key ^= self.key << 13;
        self.key ^= self.key >> 17;
        self.key ^= self.key << 5;
        self.key.to_be_bytes()
    }

    /// One body of `len` bytes client → server as binary frames of [`FLOOR_FRAME`] bytes,
    /// each masked (copied into a buffer, then masked in place, as a WebSocket client's
    /// writer does) and written with one `write_all`; then an empty frame, which the server
    /// answers with the count of payload bytes it unmasked (checked). The least a body over
    /// a WebSocket can take: masking and unmasking are all it does per byte beyond what
    /// HTTP/1.1 does.
    async fn large(&mut self, len: u64) -> Result<Duration, Error> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let started = Instant::now();
        let mut frame = Vec::with_capacity(14 + FLOOR_FRAME);
        let mut left = len;
        while left > 0 {
            let n = FLOOR_FRAME.min(usize::try_from(left).unwrap_or(FLOOR_FRAME));
            let key = self.next_key();
            frame.clear();
            frame.extend_from_slice(&[0x82, 0x80 | 127]);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
            frame.extend_from_slice(&key);
            let mut fill = n;
            while fill > 0 {
                let k = fill.min(CHUNK);
                frame.extend_from_slice(&CHUNK_DATA[..k]);
                fill -= k;
            }
            mask(&mut frame[14..], key, 0);
            self.stream.write_all(&frame).await?;
            left -= n as u64;
        }
        let key = self.next_key();
        self.stream
            .write_all(&[0x82, 0x80, key[0], key[1], key[2], key[3]])
            .await?;
        let mut answer = [0u8; 10];
        self.stream.read_exact(&mut answer).await?;
        if answer[..2] != [0x82, 8] || answer[2..] != len.to_be_bytes() {
            return Err(format!("frames floor: large body counted as {answer:?}").into());
        }
        Ok(started.elapsed())
    }

    /// `n` round trips of a 64-byte message, one at a time.
    async fn run(&mut self, n: usize) -> Result<(Duration, Vec<Duration>), Error> {
        use bytes::BufMut;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let ping = &CHUNK_DATA[..PING];
        let mut lat = Vec::with_capacity(n);
        let started = Instant::now();
        for _ in 0..n {
            let t = Instant::now();
            let key = self.next_key();
            self.buf.clear();
            self.buf.put_slice(&[0x82, 0x80 | PING as u8]);
            self.buf.put_slice(&key);
            self.buf
                .extend(ping.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
            self.stream.write_all(&self.buf).await?;
            self.buf.clear();
            while self.buf.len() < 2 + PING {
                if self.stream.read_buf(&mut self.buf).await? == 0 {
                    return Err("frames floor: the echo server closed".into());
                }
            }
            if self.buf[..2] != [0x82, PING as u8] || &self.buf[2..] != ping {
                return Err("frames floor: a wrong echo".into());
            }
            lat.push(t.elapsed());
        }
        Ok((started.elapsed(), lat))
    }
}

/// XORs `data` with the masking `key`, `data[0]` at the key's byte `phase` (RFC 6455
/// §5.3), eight bytes at a time.
fn mask(data: &mut [u8], key: [u8; 4], phase: usize) {
    let k: [u8; 4] = std::array::from_fn(|i| key[(phase + i) % 4]);
    let wide = u64::from_ne_bytes([k[0], k[1], k[2], k[3], k[0], k[1], k[2], k[3]]);
    let mut words = data.chunks_exact_mut(8);
    for w in &mut words {
        let v = u64::from_ne_bytes(w.try_into().expect("8 bytes")) ^ wide;
        w.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in words.into_remainder().iter_mut().enumerate() {
        *b ^= k[i % 4];
    }
}

/// The frames floor's server: reads what the socket has, and for every frame in it (FIN +
/// binary, masked) either echoes it (a payload of 1 to 125 bytes: a ping of
/// [`FramesFloor::run`]), unmasks it in place and counts it (a larger one: a chunk of
/// [`FramesFloor::large`]'s body), or answers the count so far (an empty one); then writes
/// what it answered with one `write_all`.
async fn frames_server(mut stream: TcpStream) -> Result<(), Error> {
    use bytes::{Buf, BytesMut};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut inbox, mut out) = (BytesMut::with_capacity(FLOOR_FRAME), Vec::new());
    // The large frame being read: its payload bytes still to come, its key, the key's
    // phase at the next byte; and the body's bytes so far.
    let (mut left, mut key, mut phase, mut sunk) = (0u64, [0u8; 4], 0usize, 0u64);
    loop {
        inbox.reserve(FLOOR_FRAME);
        if stream.read_buf(&mut inbox).await? == 0 {
            return Ok(());
        }
        loop {
            if left > 0 {
                let k = inbox.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                if k == 0 {
                    break;
                }
                mask(&mut inbox[..k], key, phase);
                (phase, left, sunk) = ((phase + k) % 4, left - k as u64, sunk + k as u64);
                inbox.advance(k);
                continue;
            }
            if inbox.len() < 2 {
                break;
            }
            let (head, short) = (inbox[0], inbox[1] & 0x7f);
            if head != 0x82 || inbox[1] & 0x80 == 0 {
                return Err("frames floor: not a frame of this floor".into());
            }
            let extra = match short {
                126 => 2,
                127 => 8,
                _ => 0,
            };
            if inbox.len() < 6 + extra {
                break;
            }
            let len = match extra {
                0 => u64::from(short),
                2 => u64::from(u16::from_be_bytes([inbox[2], inbox[3]])),
                _ => u64::from_be_bytes(inbox[2..10].try_into()?),
            };
            key = inbox[2 + extra..6 + extra].try_into()?;
            match len {
                0 => {
                    inbox.advance(6 + extra);
                    out.extend_from_slice(&[0x82, 8]);
                    out.extend_from_slice(&sunk.to_be_bytes());
                    sunk = 0;
                }
                1..=125 if extra == 0 => {
                    let n = len as usize;
                    if inbox.len() < 6 + n {
                        break;
                    }
                    out.extend_from_slice(&[0x82, n as u8]);
                    let at = out.len();
                    out.extend_from_slice(&inbox[6..6 + n]);
                    mask(&mut out[at..], key, 0);
                    inbox.advance(6 + n);
                }
                _ => {
                    inbox.advance(6 + extra);
                    (left, phase) = (len, 0);
                }
            }
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
    }
}

// ---- the floor: a raw WebSocket ping-pong with tokio-tungstenite

struct Floor {
    ws: tokio_tungstenite::WebSocketStream<TcpStream>,
}

impl Floor {
    /// An echo server and one connection to it.
    /// With tokio-tungstenite's default configuration (a 128 KiB read buffer, which it
    /// zero-fills up to its size before every read) or `config`.
    async fn start(config: Option<WebSocketConfig>) -> Result<Self, Error> {
        let addr = on_servers(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(async move {
                        let mut ws =
                            tokio_tungstenite::accept_async_with_config(stream, config).await?;
                        // Bytes of the large body so far, while one comes (`Floor::large`:
                        // a text message begins it, another ends it and is answered).
                        let mut sunk: Option<u64> = None;
                        while let Some(message) = ws.next().await {
                            match message? {
                                Message::Binary(b) if sunk.is_some() => {
                                    sunk = sunk.map(|n| n + b.len() as u64)
                                }
                                m @ Message::Binary(_) => ws.send(m).await?,
                                Message::Text(_) => match sunk.take() {
                                    None => sunk = Some(0),
                                    Some(n) => ws.send(Message::Text(n.to_string().into())).await?,
                                },
                                Message::Close(_) => break,
                                _ => {}
                            }
                        }
                        Ok::<_, Error>(())
                    });
                }
            });
            Ok::<_, Error>(addr)
        })
        .await?;
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (ws, _) =
            tokio_tungstenite::client_async_with_config(format!("ws://{addr}/"), stream, config)
                .await?;
        Ok(Floor { ws })
    }

    /// `n` round trips of a 64-byte message, one at a time.
    async fn run(&mut self, n: usize) -> Result<(Duration, Vec<Duration>), Error> {
        let ping = Bytes::from_static(&CHUNK_DATA[..PING]);
        let mut lat = Vec::with_capacity(n);
        let started = Instant::now();
        for _ in 0..n {
            let t = Instant::now();
            self.ws.send(Message::Binary(ping.clone())).await?;
            match self.ws.next().await {
                Some(Ok(Message::Binary(b))) if b.len() == PING => {}
                other => return Err(format!("floor: echo {other:?}").into()),
            }
            lat.push(t.elapsed());
        }
        Ok((started.elapsed(), lat))
    }

    /// One body of `len` bytes client → server as binary messages of the chunk size
    /// (`--chunk-kib`, 64 KiB by default), written as one
    /// stream (flushed once, at the end) between two text messages, counted by the server,
    /// which answers the count (checked) at the second: the least a body over a WebSocket of
    /// tokio-tungstenite can take (its default 128 KiB read buffer, no framing of ours,
    /// no flow control, but the client's masking and the server's unmasking, which
    /// RFC 6455 §5.3 requires).
    async fn large(&mut self, len: u64) -> Result<Duration, Error> {
        let started = Instant::now();
        self.ws.feed(Message::Text("begin".into())).await?;
        let mut left = len;
        while left > 0 {
            let n = chunk_len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let chunk = Bytes::from_static(&CHUNK_DATA[..n]);
            self.ws.feed(Message::Binary(chunk)).await?;
            left -= n as u64;
        }
        self.ws.send(Message::Text("end".into())).await?;
        match self.ws.next().await {
            Some(Ok(Message::Text(t))) if t.as_str() == len.to_string() => {}
            other => return Err(format!("floor: large body counted as {other:?}").into()),
        }
        Ok(started.elapsed())
    }
}
