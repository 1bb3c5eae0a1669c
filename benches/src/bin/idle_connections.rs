//! Load run: resident memory and CPU per idle connection, over real loopback sockets.
//!
//! ```text
//! idle_connections [--json] tcp|tether|clients|serve [N]
//! idle_connections [--json] [--cpu-window SECONDS] N
//! ```
//!
//! One measurement per process:
//!
//! - `tcp N` opens N plain TCP connection pairs (both ends in this process): the floor any
//!   transport pays.
//! - `tether N` opens N Tether connections (server and client side both in this process,
//!   handshake done, heartbeat running) through `tether-tokio`.
//! - `clients N` opens only the client side of N Tether connections to the server at
//!   `IDLE_URL` (another process, e.g. `tether server` or `idle_connections serve`).
//! - `serve` binds a Tether server on `127.0.0.1:0`, prints its URL on one line and holds
//!   it until its standard input closes (nothing else).
//!
//! Each of the first three prints the growth of its resident set (`VmRSS`), measured 2 s
//! after the last connection came up, divided by N. Run them as separate processes so that
//! one's freed memory does not hide the other's; compare them as a ratio.
//!
//! **The summary, `idle_connections N`** (`--json`: one JSON object on stdout, the human
//! text on stderr) runs each measurement in a child process of its own (this same binary):
//!
//! - `server_kib_per_conn`, the server side alone: a `serve` child holds the server; a
//!   `clients N` child connects N clients to it. The server child's resident set is read
//!   from `/proc/<pid>/status` once it is listening and before any client connects, and
//!   again after the clients child reports (all N up, then its 2 s of idling, connections
//!   still open: it holds them until the summary closes its standard input). The growth
//!   divided by N is what one accepted connection costs a server process, heartbeat
//!   running, with no client-side memory in the same process to confuse it.
//! - `client_kib_per_conn`: the clients child's own growth divided by N, in the same run.
//! - `kib_per_pair`: the sum of the two, what one connection costs both ends together.
//! - `one_process_kib_per_pair` and `tcp_kib_per_pair`: `tether` and `tcp` children (both
//!   ends in one process, the method of the earlier runs in benches/RESULTS.md, and its
//!   floor). A process holding both ends needs two descriptors per connection, so these two
//!   run with N capped by the open-files limit (`one_process_connections` says how many).
//!
//! **Idle CPU** (issue 11 goal 5: 10,000 idle connections with a 10 s heartbeat cost the
//! server under 2 % of one core). Every connection here has the heartbeat set explicitly
//! to the spec's defaults (interval 10 s, timeout 30 s, spec/protocol.md §8.4), announced in
//! HELLO and WELCOME. In the same summary run, over a window of `--cpu-window SECONDS`
//! (default 60: six heartbeat intervals, and past the 30 s timeout; 0 skips this part):
//!
//! - `server_cpu_percent_of_core_no_connections`, the floor: the `serve` child's CPU time
//!   (user + system, `/proc/<pid>/stat`, all threads) over one window, listening, before
//!   any client connects;
//! - `server_cpu_percent_of_core`: the same, over one window after the clients child has
//!   reported (all N connections up, 2 s settled), connections idle;
//!   `client_cpu_percent_of_core`: the clients child over the same window;
//! - that the heartbeat ran: the server's counters (its metrics, asked for on the `serve`
//!   child's standard input with a line `stats`) before and after the window give
//!   `server_probes_in_window` (its probes: idle, every message it sends is one, 8 payload
//!   bytes each; its answers to Pings go out through the WebSocket layer and are not counted),
//!   `server_probes_answered_in_window` (RTT samples), `client_probes_in_window`
//!   (Pings it received: payload received / 8 − answers), `probes_per_connection_and_interval`
//!   (one: the client's, spec/protocol.md §8.2 and §8.3; one or two from a server that
//!   probes after the interval too), and `handshakes_in_window`, `closes_in_window`
//!   (0: no connection was lost and re-made) and `connections_after_window` (N).
//!
//! Results and the commands that produced them: benches/RESULTS.md.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand};
use tether_proto::connection::Config;
use tether_tokio::client::{Client, ClientConfig, ClientEvent};
use tether_tokio::server::{Server, ServerConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream};

/// The environment variable that makes a measurement hold its connections, after printing
/// its result, until its standard input closes (set by the summary for its children).
const HOLD: &str = "IDLE_HOLD_STDIN";

/// Resident set size of a process, in KiB (Linux `/proc/<pid>/status`; `self` for this one).
fn rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("procfs");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

/// The soft limit on open files of this process (`/proc/self/limits`).
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}
async fn tcp(n: usize) -> (Vec<TcpStream>, Vec<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accept = tokio::spawn(async move {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(listener.accept().await.expect("accept").0);
        }
        v
    });
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        clients.push(TcpStream::connect(addr).await.expect("connect"));
    }
    (clients, accept.await.expect("acceptor"))
}

async fn tether(n: usize) -> (Server, Vec<Client>) {
    let (server, _events) = Server::bind(server_config()).await.expect("bind");
    let url = format!("ws://{}/", server.local_addr());
    (server, clients(&url, n).await)
}

/// `n` clients of the server at `url` (which may be another process).
async fn clients(url: &str, n: usize) -> Vec<Client> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        let mut config = ClientConfig::new("{}");
        config.connection = connection_config();
        if let Some(cap) = std::env::var("IDLE_EVENT_CAPACITY")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            config.event_capacity = cap;
        }
        let (client, mut events) = Client::connect(url, config).expect("connect");
        loop {
            match tokio::time::timeout(Duration::from_secs(10), events.recv()).await {
                Ok(Some(ClientEvent::Connected { .. })) => break,
                Ok(Some(_)) => continue,
                other => panic!("no connection: {other:?}"),
            }
        }
        clients.push(client);
    }
    clients
}

/// The heartbeat of every connection here, set explicitly: the spec's defaults
/// (spec/protocol.md §8.4), interval 10 s, timeout 30 s, announced in HELLO and WELCOME.
fn connection_config() -> Arc<Config> {
    Arc::new(
        Config::builder()
            .heartbeat(HEARTBEAT_INTERVAL, HEARTBEAT_TIMEOUT)
            .build()
            .expect("heartbeat config"),
    )
}

const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(30);

fn server_config() -> ServerConfig {
    let mut config = ServerConfig::new("127.0.0.1:0".parse().expect("addr"));
    config.connection = connection_config();
    config
}

/// Binds a server, prints its URL and holds it until standard input closes; answers each
/// line `stats` on standard input with one JSON line of its counters ([`server_stats`]).
async fn serve() {
    let (server, _events) = Server::bind(server_config()).await.expect("bind");
    println!("ws://{}/", server.local_addr());
    std::io::stdout().flush().expect("stdout");
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim() == "stats" {
            println!("{}", server_stats(&server));
            std::io::stdout().flush().expect("stdout");
        }
    }
    drop(server);
}

/// The server's counters that show the heartbeat running: connections established now,
/// heartbeat round trips completed (RTT samples), handshakes and closes so far, and the
/// WebSocket payload bytes the connections sent (its own messages: the server's probes
/// while idle; the transport's Pongs are not counted) and received (Pings and Pongs).
fn server_stats(server: &Server) -> serde_json::Value {
    let text = server.metrics().encode();
    // Sum of the samples of one metric (all its label sets), from the OpenMetrics text.
    let sum = |name: &str| -> f64 {
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let sum_labelled = |name: &str, label: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(name) && l.contains(&format!("\"{label}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    serde_json::json!({
        "connections": server.connection_count(),
        "rtt_samples": sum("tether_heartbeat_rtt_seconds_count"),
        "handshakes": sum("tether_handshakes_total"),
        "closes": sum("tether_closes_total"),
        "bytes_sent": sum_labelled("tether_bytes_total", "sent"),
        "bytes_received": sum_labelled("tether_bytes_total", "received"),
    })
}

async fn wait_for_stdin_close() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
}

/// One measurement in this process: `tcp`, `tether` or `clients`.
async fn measure(kind: &str, n: usize, json: bool) {
    let before = rss_kib("self");
    let start = Instant::now();
    let keep: Box<dyn std::any::Any> = match kind {
        "tcp" => Box::new(tcp(n).await),
        "tether" => Box::new(tether(n).await),
        // Only the client side here; the server is another process (e.g. `tether server`).
        "clients" => Box::new(clients(&std::env::var("IDLE_URL").expect("IDLE_URL"), n).await),
        other => unreachable!("not a measurement: {other}"),
    };
    let took = start.elapsed();
    // Let the connections settle (heartbeats, buffers) before measuring.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let grown = rss_kib("self").saturating_sub(before);
    let per = grown as f64 / n as f64;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "mode": kind,
                "connections": n,
                "setup_s": took.as_secs_f64(),
                "rss_growth_kib": grown,
                "kib_per_conn": per,
            })
        );
    } else {
        println!(
            "{kind}: {n} connections in {took:.2?}; resident set grew {grown} KiB = {per:.1} KiB per connection"
        );
    }
    std::io::stdout().flush().expect("stdout");
    if std::env::var_os("IDLE_SMAPS").is_some() {
        print_top_mappings();
    }
    if std::env::var_os(HOLD).is_some() {
        wait_for_stdin_close().await;
    }
    drop(keep);
}

/// Resident memory and CPU per idle connection, over real loopback sockets.
///
/// With N alone, the summary: each measurement in a child process of its own (this same
/// binary), the server's and the clients' memory and idle CPU apart, and both ends in one
/// process next to plain TCP. With a measurement instead, that one measurement in this
/// process: it prints the growth of its resident set, 2 s after the last connection came
/// up, divided by N. Without either: `tether 2000`. The docs at the top of
/// benches/src/bin/idle_connections.rs say what each figure is.
#[derive(Parser)]
#[command(
    name = "idle_connections",
    override_usage = "idle_connections [--json] [--cpu-window SECONDS] N\n       \
                      idle_connections [--json] tcp|tether|clients|serve [N]",
    // An option given twice counts once, with its last value.
    args_override_self = true,
    disable_help_subcommand = true
)]
struct Cli {
    /// Print one JSON object on stdout; the human text goes to stderr.
    #[arg(long, global = true)]
    json: bool,
    /// The summary's idle-CPU window, in seconds (fractions allowed; 0 skips the CPU part).
    /// The default, 60 s, is six heartbeat intervals and past the heartbeat timeout (30 s),
    /// so connections whose heartbeat failed would be gone by its end.
    #[arg(long, value_name = "SECONDS", default_value = "60", value_parser = seconds)]
    cpu_window: Duration,
    /// Run the summary with N idle connections (at least 1).
    #[arg(value_name = "N")]
    n: Option<usize>,
    #[command(subcommand)]
    measurement: Option<Measurement>,
}

/// One measurement in this process.
#[derive(Subcommand)]
enum Measurement {
    /// N plain TCP connection pairs, both ends in this process: the floor any transport
    /// pays.
    Tcp(Count),
    /// N Tether connections, server and client side both in this process (handshake done,
    /// heartbeat running).
    Tether(Count),
    /// Only the client side of N Tether connections, to the server at the URL in IDLE_URL
    /// (another process, e.g. `tether server` or `idle_connections serve`).
    Clients(Count),
    /// Bind a Tether server on 127.0.0.1:0, print its URL on one line and hold it until
    /// standard input closes; answer each line `stats` on it with the server's counters.
    Serve {
        /// Ignored: `serve N` has always been accepted.
        #[arg(hide = true)]
        _n: Option<usize>,
    },
}

#[derive(Args)]
struct Count {
    /// Connections to open.
    #[arg(default_value_t = DEFAULT_CONNECTIONS)]
    n: usize,
}

/// A measurement's connections when none are given.
const DEFAULT_CONNECTIONS: usize = 2000;

/// Parses a number of seconds (`--cpu-window`).
fn seconds(value: &str) -> Result<Duration, String> {
    let secs: f64 = value.parse().map_err(|e| format!("{e}"))?;
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{e}"))
}

fn main() {
    let cli = Cli::parse();
    if cli.n.is_some() && cli.measurement.is_some() {
        Cli::command()
            .error(
                ErrorKind::ArgumentConflict,
                "N alone runs the summary; a measurement takes its N after its name",
            )
            .exit();
    }
    if let Some(n) = cli.n {
        return summary(n.max(1), cli.json, cli.cpu_window);
    }
    let measurement = cli.measurement.unwrap_or(Measurement::Tether(Count {
        n: DEFAULT_CONNECTIONS,
    }));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (kind, count) = match measurement {
        Measurement::Serve { .. } => return runtime.block_on(serve()),
        Measurement::Tcp(count) => ("tcp", count),
        Measurement::Tether(count) => ("tether", count),
        Measurement::Clients(count) => ("clients", count),
    };
    runtime.block_on(measure(kind, count.n, cli.json))
}

/// Starts a measurement child (`--json KIND N`) and reads its result; the child holds its
/// connections until the returned guard is dropped.
fn spawn_measure(kind: &str, n: usize, url: Option<&str>) -> (ChildGuard, serde_json::Value) {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args(["--json", kind, &n.to_string()])
        .env(HOLD, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    if let Some(url) = url {
        cmd.env("IDLE_URL", url);
    }
    let mut child = ChildGuard(cmd.spawn().expect("spawn a measurement"));
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the result");
    let value = serde_json::from_str(&line)
        .unwrap_or_else(|e| panic!("{kind} {n}: not a result ({e}): {line:?}"));
    (child, value)
}

/// A child process that is ended (its standard input closed, then waited for) when dropped.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

fn per_conn(v: &serde_json::Value) -> f64 {
    v["kib_per_conn"].as_f64().expect("kib_per_conn")
}

/// The summary: each measurement in a child process (see the module docs).
fn summary(n: usize, json: bool, cpu_window: Duration) {
    let limit = open_files_limit().unwrap_or(1024);
    // Both ends in one process: two descriptors per connection, plus some for the runtime.
    let n_one = n.min(limit.saturating_sub(200) / 2).max(1);
    let say = |s: String| {
        if json {
            eprintln!("{s}")
        } else {
            println!("{s}")
        }
    };
    say(format!(
        "idle_connections: {n} connections (open-files limit {limit}; both ends in one process: {n_one})"
    ));

    let (child, tcp) = spawn_measure("tcp", n_one, None);
    drop(child);
    say(format!(
        "  tcp pairs, one process: {:.1} KiB per pair",
        per_conn(&tcp)
    ));
    let (child, one) = spawn_measure("tether", n_one, None);
    drop(child);
    say(format!(
        "  tether pairs, one process: {:.1} KiB per pair",
        per_conn(&one)
    ));

    // The server alone, and the clients alone, in two processes.
    let exe = std::env::current_exe().expect("current_exe");
    let mut server = ChildGuard(
        Command::new(exe)
            .arg("serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the server"),
    );
    let pid = server.0.id().to_string();
    // Kept open: the server answers `stats` on it.
    let mut server_out = BufReader::new(server.0.stdout.take().expect("stdout"));
    let mut url = String::new();
    server_out.read_line(&mut url).expect("the server's URL");
    let url = url.trim().to_owned();
    let server_before = rss_kib(&pid);
    // The floor: the same server process, listening, no connection.
    let floor = (!cpu_window.is_zero()).then(|| cpu_over(&[&pid], cpu_window)[0]);
    let (clients, clients_result) = spawn_measure("clients", n, Some(&url));
    // Read while the clients still hold their connections open.
    let server_after = rss_kib(&pid);
    let mut stats = |server: &mut ChildGuard| -> serde_json::Value {
        let stdin = server.0.stdin.as_mut().expect("the server's stdin");
        stdin.write_all(b"stats\n").expect("ask the server");
        stdin.flush().expect("ask the server");
        let mut line = String::new();
        server_out.read_line(&mut line).expect("the server's stats");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not stats ({e}): {line:?}"))
    };
    let idle = (!cpu_window.is_zero()).then(|| {
        let before = stats(&mut server);
        let clients_pid = clients.0.id().to_string();
        let cpu = cpu_over(&[&pid, &clients_pid], cpu_window);
        let after = stats(&mut server);
        let delta = |k: &str| after[k].as_f64().unwrap_or(0.0) - before[k].as_f64().unwrap_or(0.0);
        IdleCpu {
            server: cpu[0],
            client: cpu[1],
            rtt_samples: delta("rtt_samples"),
            handshakes: delta("handshakes"),
            closes: delta("closes"),
            connections_after: after["connections"].as_u64().unwrap_or(0),
            // Idle, every message is a probe or an answer with an 8-byte payload (the
            // sequence number, no application data: spec/protocol.md §8.2).
            server_probes: delta("bytes_sent") / PROBE_LEN,
            client_probes: (delta("bytes_received") / PROBE_LEN - delta("rtt_samples")).max(0.0),
        }
    });
    drop(clients);
    drop(server);
    let server_per = server_after.saturating_sub(server_before) as f64 / n as f64;
    let client_per = per_conn(&clients_result);
    say(format!(
        "  tether, two processes: server {server_per:.1} KiB per connection (resident {server_before} -> {server_after} KiB), client {client_per:.1} KiB per connection; {:.1} KiB per pair",
        server_per + client_per
    ));
    if let (Some(floor), Some(idle)) = (floor, &idle) {
        let w = cpu_window.as_secs_f64();
        say(format!(
            "  idle CPU over {w:.0} s, heartbeat every {} s: server {:.3} % of one core with {n} connections ({floor:.3} % with none), clients process {:.3} %",
            HEARTBEAT_INTERVAL.as_secs(),
            idle.server,
            idle.client,
        ));
        say(format!(
            "    heartbeat in the window: {:.0} probes from the server ({:.0} answered) and {:.0} from the clients, {:.2} per connection and heartbeat interval (one: spec/protocol.md §8.2, §8.3); {} handshakes, {} closes, {} connections at the end",
            idle.server_probes,
            idle.rtt_samples,
            idle.client_probes,
            (idle.server_probes + idle.client_probes) / n as f64 / (w / HEARTBEAT_INTERVAL.as_secs_f64()),
            idle.handshakes,
            idle.closes,
            idle.connections_after,
        ));
    }
    if json {
        let mut result = serde_json::json!({
            "kib_per_pair": server_per + client_per,
            "server_kib_per_conn": server_per,
            "client_kib_per_conn": client_per,
            "connections": n,
            "server_rss_before_kib": server_before,
            "server_rss_after_kib": server_after,
            "one_process_kib_per_pair": per_conn(&one),
            "tcp_kib_per_pair": per_conn(&tcp),
            "one_process_connections": n_one,
        });
        if let (Some(floor), Some(idle)) = (floor, idle) {
            let extra = serde_json::json!({
                "cpu_window_s": cpu_window.as_secs_f64(),
                "heartbeat_interval_s": HEARTBEAT_INTERVAL.as_secs_f64(),
                "server_cpu_percent_of_core": idle.server,
                "server_cpu_percent_of_core_no_connections": floor,
                "client_cpu_percent_of_core": idle.client,
                "server_probes_in_window": idle.server_probes,
                "server_probes_answered_in_window": idle.rtt_samples,
                "client_probes_in_window": idle.client_probes,
                "probes_per_connection_and_interval": (idle.server_probes + idle.client_probes)
                    / n as f64
                    / (cpu_window.as_secs_f64() / HEARTBEAT_INTERVAL.as_secs_f64()),
                "handshakes_in_window": idle.handshakes,
                "closes_in_window": idle.closes,
                "connections_after_window": idle.connections_after,
            });
            for (k, v) in extra.as_object().expect("object") {
                result[k] = v.clone();
            }
        }
        println!("{result}");
    }
}

/// What the server and the clients cost while idle, over the CPU window.
struct IdleCpu {
    /// The server process's CPU time over the window, in % of one core.
    server: f64,
    /// The clients process's, the same way.
    client: f64,
    /// Heartbeat round trips the server completed in the window (RTT samples).
    rtt_samples: f64,
    /// Handshakes and closes in the window (a connection lost and re-established).
    handshakes: f64,
    closes: f64,
    /// The server's established connections at the end of the window.
    connections_after: u64,
    /// Probes the server sent, and probes the clients sent (received by the server).
    server_probes: f64,
    client_probes: f64,
}

/// CPU time (user + system) of processes, in clock ticks (`/proc/<pid>/stat` fields 14
/// and 15, all threads).
fn cpu_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("procfs");
    // Fields after the command name, which is in parentheses and may hold spaces: the
    // first is field 3 (state), so utime (14) and stime (15) are the 12th and 13th.
    let rest = &stat[stat.rfind(')').expect("stat") + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> u64 { fields[i].parse().expect("a tick count") };
    field(11) + field(12)
}

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux).
const TICKS_PER_S: f64 = 100.0;

/// The CPU each process used over `window` of wall time, in % of one core.
fn cpu_over(pids: &[&str], window: Duration) -> Vec<f64> {
    let start = Instant::now();
    let before: Vec<u64> = pids.iter().map(|p| cpu_ticks(p)).collect();
    std::thread::sleep(window);
    let after: Vec<u64> = pids.iter().map(|p| cpu_ticks(p)).collect();
    let wall = start.elapsed().as_secs_f64();
    before
        .iter()
        .zip(after)
        .map(|(b, a)| a.saturating_sub(*b) as f64 / TICKS_PER_S / wall * 100.0)
        .collect()
}

/// The payload of a probe here: its sequence number alone.
const PROBE_LEN: f64 = 8.0;

/// The mappings holding the most resident memory (diagnostics, with IDLE_SMAPS=1).
fn print_top_mappings() {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("procfs");
    let mut maps: Vec<(u64, String)> = vec![];
    let mut name = String::new();
    for line in smaps.lines() {
        if let Some(rss) = line.strip_prefix("Rss:") {
            let kib = rss
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .unwrap_or(0);
            maps.push((kib, name.clone()));
        } else if is_mapping_header(line) {
            name = line.to_owned();
        }
    }
    maps.sort_by_key(|m| std::cmp::Reverse(m.0));
    let threads = std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0);
    println!("threads: {threads}");
    let anon: u64 = maps
        .iter()
        .filter(|(_, n)| n.split_whitespace().count() < 6)
        .map(|m| m.0)
        .sum();
    println!(
        "anonymous mappings: {anon} KiB in {} mappings",
        maps.iter()
            .filter(|(_, n)| n.split_whitespace().count() < 6)
            .count()
    );
    for (kib, name) in maps.iter().take(6) {
        println!("{kib:>8} KiB  {name}");
    }
}

/// A mapping's first line in smaps starts with its address range, `start-end`.
fn is_mapping_header(line: &str) -> bool {
    line.split_whitespace()
        .next()
        .and_then(|range| range.split_once('-'))
        .is_some_and(|(a, b)| {
            !a.is_empty() && a.chars().chain(b.chars()).all(|c| c.is_ascii_hexdigit())
        })
}
